"""Library errors shown as readable ``st.error`` messages, never a traceback."""

from __future__ import annotations

import streamlit as st

from ui.view import ViewState

__all__ = ["guard", "message", "show_error"]


def message(exc: BaseException) -> str:
    """The text shown for a library exception: its message, with the type where it helps."""
    from alignment import summaries

    name = type(exc).__name__
    text = str(exc).strip() or name
    if isinstance(exc, summaries.NotCached):
        return text
    if name in ("DatasetError", "AtlasError", "ModelError", "ValueError", "KeyError", "FileNotFoundError",
                "StaticExportUnavailable", "CacheCorruptionWarning"):
        return text
    return f"{name}: {text}"


def show_error(exc: BaseException, state: ViewState | None = None) -> None:
    """Show a library exception as a readable ``st.error`` (no traceback); a result the
    background demo build has not stored yet as progress, not as an error."""
    from alignment import summaries

    if isinstance(exc, summaries.NotCached) and state is not None:
        from ui.data import build_status
        from ui.progress import WAITING

        status = build_status(state)
        if status is not None:
            _ask_first(state)
            st.info(f"Still computing in the background, this view first: it shows as soon as its result is "
                    f"stored ({status.text()}).", icon=":material/hourglass_top:")
            st.session_state[WAITING] = True
            _prepare_drawing(state)
            return
    st.error(message(exc), icon=":material/error:")

    if isinstance(exc, summaries.NotCached):
        st.caption("Go to the **Compute** page to compute missing results, or pick another "
                   "model / layer / condition in the sidebar.")


#: session flag: drawing was prepared while a view waited (:func:`_prepare_drawing`)
_PREPARED = "_surface_prepared"
#: key of the out-of-sight container of :func:`_preload_plotly` (its CSS class: st-key-KEY)
_PRELOAD_KEY = "plotly-preload-box"


def _prepare_drawing(state: ViewState) -> None:
    """Once per session, while a view waits for the build: build an empty cortical map (not
    shown), which loads the surface meshes and atlas on the server, and preload plotly.js in the
    browser (the page's charts), so the awaited page is drawn soon after it arrives."""
    if st.session_state.get(_PREPARED):
        return
    st.session_state[_PREPARED] = True
    import numpy as np

    from ui.data import get_study
    from ui.page import brain_figure

    try:
        brain_figure(np.full(get_study(state).dataset.n_vertices, np.nan), state)
    except Exception:  # only a head start: the real drawing reports its own errors
        pass
    _preload_plotly()


def _preload_plotly() -> None:
    """A one-point plot out of sight: the browser loads and starts plotly.js now, not beside the
    awaited map (drawn with WebGL by ui/surface.js)."""
    import plotly.graph_objects as go

    with st.container(key=_PRELOAD_KEY):
        st.html(f"<style>.st-key-{_PRELOAD_KEY} {{position: absolute; left: -10000px; width: 320px;}}</style>")
        st.plotly_chart(go.Figure(go.Scatter(x=[0], y=[0]), layout=dict(width=300, height=200, meta=dict(preload=True))),
                        theme=None, key="plotly-preload")


def _ask_first(state: ViewState) -> None:
    """Ask the background build for the units of the view on screen next."""
    from alignment import background
    from ui.data import study_key

    _, root, small = study_key(state)
    try:
        background.ask_first(root, small, {name: getattr(state, name) for name in background.VIEW_FIELDS})
    except (OSError, ValueError, TypeError):  # a view without a layer: the build keeps its order
        pass


class _Guard:
    def __init__(self, state):
        self.state = state
        self.failed = False
        self.exc: BaseException | None = None

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        if exc is None:
            return False
        st_exc = _streamlit_control_flow()
        if isinstance(exc, st_exc):
            return False  # st.stop / st.rerun / page switch must propagate
        if not isinstance(exc, Exception):
            return False
        self.failed = True
        self.exc = exc
        show_error(exc, self.state)
        return True


def _streamlit_control_flow() -> tuple:
    kinds = []
    try:
        from streamlit.runtime.scriptrunner_utils.exceptions import RerunException, StopException

        kinds += [RerunException, StopException]
    except Exception:  # pragma: no cover
        pass
    return tuple(kinds) or (KeyboardInterrupt,)


def guard(state: ViewState | None = None) -> _Guard:
    """Context manager: an exception inside becomes an ``st.error`` and the block ends there.

    >>> with guard() as g:          # doctest: +SKIP
    ...     study = get_study(state)
    >>> if g.failed: st.stop()
    """
    return _Guard(state)
