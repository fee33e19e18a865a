"""The Streamlit shell of the app: the contract between ``app.py`` and ``pages/``.

The library (:mod:`alignment`) imports and runs without Streamlit; everything that needs it
lives here:

- :mod:`ui.view` -- :class:`ViewState`, everything that defines a view, and its URL form (no
  Streamlit);
- :mod:`ui.sidebar` -- the page menu and the global sidebar that build the view of each run;
- :mod:`ui.data` -- studies, availability, atlases and summaries, memoised across reruns;
- :mod:`ui.page` -- page header, demo banner, plots in the app's look, export buttons;
- :mod:`ui.errors` -- library errors as readable messages; :mod:`ui.style` -- presentation CSS.

How pages use it::

    import ui as S

    state = S.page("Overview")       # header + demo banner; the ViewState of this run
    with S.guard(state):             # library errors -> readable st.error, no traceback
        study = S.get_study(state)
        avail = S.get_available(state)
        ...
        S.plot(fig, key="overview-map")
        S.export_buttons(fig, "overview_map", table=df, map_values=values)
"""

from ui.data import (
    cache_root,
    check_dataset_folder,
    clear_caches,
    demo_small,
    get_atlas,
    get_available,
    get_study,
    link_table,
    study_key,
    summary,
)
from ui.errors import guard, show_error
from ui.page import brain_figure, demo_banner, export_buttons, methods, open_or_stop, page, plot
from ui.sidebar import apply_intent, current, page_menu, set_view, sidebar
from ui.style import presentation_css
from ui.view import PAGES, ViewState, describe, parse_query, set_label

__all__ = [
    "PAGES",
    "ViewState",
    "apply_intent",
    "brain_figure",
    "cache_root",
    "check_dataset_folder",
    "clear_caches",
    "current",
    "demo_banner",
    "demo_small",
    "describe",
    "export_buttons",
    "get_atlas",
    "get_available",
    "get_study",
    "guard",
    "link_table",
    "methods",
    "open_or_stop",
    "page",
    "page_menu",
    "parse_query",
    "plot",
    "presentation_css",
    "set_label",
    "set_view",
    "show_error",
    "sidebar",
    "study_key",
    "summary",
]
