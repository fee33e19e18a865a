"""The page menu and the global sidebar: the view of every page, mirrored in the URL.

``app.py`` calls :func:`sidebar` once per run, before ``st.navigation(...).run()``; the widgets
live in the entry script, so their values survive page switches. :func:`sidebar` called again in
the same run returns the state it built (no duplicate widgets). To change the view from a page
(e.g. a click on a voxel) call :func:`set_view` (``set_view(voxel=1234)``) from a widget
callback, or call it and then ``st.rerun()``.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import streamlit as st

from alignment.background import VIEW_FIELDS  # the fields opening_view chooses
from alignment.conventions import GROUP, MAP_METRICS, nearest_layer
from ui.data import atlas_choices, build_status, get_atlas, get_available, get_study, study_key, summary
from ui.progress import FOLLOWING, watch_build
from ui.errors import message
from ui.style import presentation_css
from ui.view import PAGES, SURFACE_CHOICES, ViewState, parse_query

__all__ = ["SIDEBAR_FIELDS", "apply_intent", "current", "page_menu", "set_view", "sidebar"]

_PREFIX = "vs_"  # session-state keys of the sidebar widgets: vs_<field>


def _ss():
    return st.session_state


def _drawn_this_run() -> bool:
    """Whether the sidebar's widgets were already drawn in this script run, or this run reruns
    fragments only (the sidebar of the last full run still stands and must not be redrawn)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        return ctx is not None and (bool(ctx.fragment_ids_this_run)
                                    or (_PREFIX + "dataset") in ctx.shared.widget_user_keys_this_run)
    except Exception:  # pragma: no cover - streamlit internals moved
        return False


def _sync_query(state: ViewState) -> None:
    q = state.to_query()
    qp = st.query_params
    for k, v in q.items():
        if qp.get(k) != v:
            qp[k] = v
    for f in fields(ViewState):
        if f.name not in q and f.name in qp:
            del qp[f.name]


def _atlases_and_space(state: ViewState) -> tuple[dict[str, str], str]:
    """The atlases (name → label) the state's dataset offers, and its space."""
    return atlas_choices(state), get_study(state).dataset.space


def _readable_atlas(state: ViewState, atlases: dict, warns: list) -> None:
    """Fall back to the whole brain when the chosen atlas (a dataset's file) cannot be read."""
    from alignment.atlases import WHOLE_BRAIN, AtlasError

    ss = _ss()
    name = ss.get(_PREFIX + "atlas")
    if name not in atlases or name == WHOLE_BRAIN:
        return
    try:
        get_atlas(state, name)
    except AtlasError as exc:
        warns.append(f"atlas {name!r} cannot be used ({exc}); showing the whole brain")
        ss[_PREFIX + "atlas"] = WHOLE_BRAIN


def _choose(key: str, options: list, fallback=None, *, from_url: bool, what: str, warns: list) -> None:
    """Make ``session_state[key]`` one of ``options`` before its widget is drawn."""
    ss = _ss()
    if not options:
        return
    cur = ss.get(key)
    if cur in options:
        return
    if fallback is None or fallback not in options:
        fallback = options[0]
    if from_url and cur not in (None, ""):
        warns.append(f"{what} {cur!r} from the link is not available here; showing {fallback!r}")
    ss[key] = fallback


def _open_on_what_matters(base: ViewState, fdr_q: float, fresh: bool = False) -> None:
    """A first visit without a view in its link opens on the most informative cached view
    (:func:`alignment.summaries.opening_view`), not on layer 0 of the group. ``fresh``: read
    the cache again (a build has stored more since), not the memoised choice."""
    try:
        if fresh:
            from alignment import summaries

            opening = summaries.opening_view(get_study(base), fdr_q, get_available(base))
        else:
            get_study(base)
            opening = summary("opening_view", base, fdr_q, with_avail=True)
    except Exception:  # noqa: BLE001 - the default view then; the pages show the error
        return
    for name, value in (opening or {}).items():
        _ss()[_PREFIX + name] = value


def _follow_the_build(base: ViewState, avail) -> None:
    """Open on what matters once per session; while the background build runs and the user has
    not changed the opened view, move to the most informative view as results arrive."""
    ss = _ss()
    if avail is None or ss.get("_vs_link_names_view"):
        ss["_vs_opened"] = ss.get("_vs_opened") or avail is not None
        return
    followed = ss.get(FOLLOWING)
    untouched = followed is not None and all(ss.get(_PREFIX + k) == v for k, v in followed.items())
    if not ss.get("_vs_opened"):
        _open_on_what_matters(base, ss[_PREFIX + "fdr_q"])
    elif untouched and build_status(base) is not None:
        _open_on_what_matters(base, ss[_PREFIX + "fdr_q"], fresh=True)
    elif not untouched:
        ss[FOLLOWING] = None  # the user chose a view: it stays
        ss["_vs_opened"] = True
        return
    ss["_vs_opened"] = True
    ss[FOLLOWING] = {}  # the view's final fields are recorded at the end of this run


def page_menu() -> None:
    """The page links of :data:`PAGES` at the top of the sidebar.

    Drawn here rather than by ``st.navigation`` (app.py hides its menu, and
    ``client.showSidebarNavigation = false`` hides Streamlit's own): until app.py has run once in
    a server process, a page URL runs the page script alone, and Streamlit would list the
    ``pages/`` files by name instead of this menu.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not (Path(ctx.main_script_path).parent / "pages").is_dir():
        return  # a script outside this app (tests) has no pages to link to
    with st.sidebar:
        for section, pages in PAGES.items():
            st.caption(section)
            for script, title, icon in pages:
                st.page_link(script, label=title, icon=icon, width="stretch")


def sidebar() -> ViewState:
    """Render the page menu and the global sidebar; return the view state.

    Initial values come from ``st.query_params`` (first run of a session); every change is
    written back to the query string. Only combinations that exist in the cache are offered.
    Invalid or unavailable values from a link fall back to defaults with a visible warning.
    """
    ss = st.session_state
    if "_view_state" in ss and _drawn_this_run():
        return ss["_view_state"]

    page_menu()
    first = not ss.get("_vs_init", False)
    warns: list[str] = []
    url_keys: set = set()
    if first:
        url_keys = set(st.query_params.keys())
        ss["_vs_link_names_view"] = bool(url_keys & set(SIDEBAR_FIELDS))
        parsed, warns = parse_query(st.query_params.to_dict())
        for f in fields(ViewState):
            ss[_PREFIX + f.name] = getattr(parsed, f.name)
        if "subject" not in url_keys:  # the default depends on the dataset (group from 3 subjects on)
            ss[_PREFIX + "subject"] = None
        ss["_vs_init"] = True
    else:
        # a page switch in pages/-folder mode draws the sidebar from another script, whose
        # widgets are new ones: values set here (not by a widget) carry over to them
        for f in fields(ViewState):
            if _PREFIX + f.name in ss:
                ss[_PREFIX + f.name] = ss[_PREFIX + f.name]

    for k, v in ss.pop("_vs_pending", {}).items():  # set_view() calls made after the widgets were drawn
        ss[_PREFIX + k] = v

    def from_link(name: str) -> bool:
        return first and name in url_keys

    sb = st.sidebar
    sb.markdown("### View")
    ss.setdefault(_PREFIX + "dataset", "demo")
    sb.text_input("Dataset", key=_PREFIX + "dataset",
                  help="`demo` (the simulated movie experiment), `demo-concepts` (its simulated concept "
                       "experiment, for Concept RSA) or the path of a dataset folder (dataset.toml, stimuli/, "
                       "sub-*/; pereira2018.toml)")
    dataset = (ss[_PREFIX + "dataset"] or "demo").strip() or "demo"
    base = replace(ViewState(), dataset=dataset)

    avail = None
    try:
        avail = get_available(base)
    except Exception as exc:  # noqa: BLE001 - shown, the pages show it again in their guard
        sb.error(message(exc))

    values: dict[str, Any] = {"dataset": dataset}
    _follow_the_build(base, avail)
    if build_status(base) is not None:
        with sb:
            watch_build(*study_key(base)[1:])
    if avail is not None and avail.models():  # some subject has encoding maps
        subjects = [s for s in avail.subjects if avail.models(subject=s)]
        group_ok = len(avail.subjects) > 1 and bool(avail.models(subject=GROUP))
        subj_opts = ([GROUP] if group_ok else []) + subjects
        # the group by default from 3 subjects on (with 2, the t test across subjects has 1 dof)
        _choose(_PREFIX + "subject", subj_opts, GROUP if group_ok and len(subjects) >= 3 else subjects[0],
                from_url=from_link("subject"),
                what="subject", warns=warns)
        sb.selectbox("Subject", subj_opts, key=_PREFIX + "subject",
                     format_func=lambda s: "group (all subjects)" if s == GROUP else f"sub-{s}")
        subj = ss[_PREFIX + "subject"]
        models = avail.models(subject=subj)
        if not models:  # e.g. the group while one subject is still missing results
            models = avail.models()
            subj = None
        _choose(_PREFIX + "model", models, from_url=from_link("model"), what="model", warns=warns)
        sb.selectbox("Model", models, key=_PREFIX + "model")
        model = ss[_PREFIX + "model"]
        branches = avail.branches(model, subject=subj)
        _choose(_PREFIX + "branch", branches, from_url=from_link("branch"), what="branch", warns=warns)
        sb.selectbox("Branch", branches, key=_PREFIX + "branch")
        branch = ss[_PREFIX + "branch"]
        kinds = avail.kinds(model, branch, subject=subj)
        _choose(_PREFIX + "kind", kinds, from_url=from_link("kind"), what="AN kind", warns=warns)
        sb.selectbox("AN kind", kinds, key=_PREFIX + "kind",
                     help="attn: attention output; qk: query ⊙ key; mlp: feed-forward units")
        kind = ss[_PREFIX + "kind"]
        conds = avail.conditions(model, branch, kind, subject=subj)
        _choose(_PREFIX + "condition", conds, from_url=from_link("condition"), what="condition", warns=warns)
        sb.selectbox("Condition", conds, key=_PREFIX + "condition",
                     help="what the model saw: image+text, image only (empty caption), text only (grey image)")
        cond = ss[_PREFIX + "condition"]
        layers = avail.layers(model, branch, kind, cond, subject=subj)
        cur = ss.get(_PREFIX + "layer")
        near = nearest_layer(layers, cur) if isinstance(cur, int) and layers else None
        _choose(_PREFIX + "layer", layers, None if from_link("layer") else near, from_url=from_link("layer"),
                what="layer", warns=warns)
        sb.selectbox("Layer", layers, key=_PREFIX + "layer")
        values.update(subject=ss[_PREFIX + "subject"], model=model, branch=branch, kind=kind, condition=cond,
                      layer=int(ss[_PREFIX + "layer"]))
    elif avail is not None:
        sb.warning("The cache holds no encoding results for this dataset yet: compute them on the Compute page "
                   "or with `python -m alignment run CONFIG.toml`.")
        for name in ("subject", "model", "branch", "kind", "condition", "layer"):
            values[name] = ss.get(_PREFIX + name, getattr(ViewState(), name))
    else:
        for name in ("subject", "model", "branch", "kind", "condition", "layer"):
            values[name] = ss.get(_PREFIX + name, getattr(ViewState(), name))

    sb.markdown("### Display")
    _choose(_PREFIX + "metric", list(MAP_METRICS), from_url=False, what="metric", warns=warns)
    sb.selectbox("Map metric", MAP_METRICS, key=_PREFIX + "metric",
                 help="r: encoding accuracy; significant r: r where q < FDR; best layer: layer with the "
                      "highest r; SI: image vs text branch; cross-modal gain: fusion layers")
    atlases, space = ({"ca": "ca"}, "fsLR32k")
    if avail is not None:  # the dataset opened
        atlases, space = _atlases_and_space(base)
        _readable_atlas(base, atlases, warns)
    _choose(_PREFIX + "atlas", list(atlases), from_url=from_link("atlas"), what="atlas", warns=warns)
    sb.selectbox("Atlas", list(atlases), key=_PREFIX + "atlas", format_func=lambda a: atlases.get(a, a),
                 help="network atlas of the summaries and map outlines; a dataset folder's own atlases "
                      "(atlases/*.annot, *.label.gii, *.dlabel.nii) are listed too")
    fq = ss.get(_PREFIX + "fdr_q")
    if not isinstance(fq, (int, float)) or not (0 < float(fq) < 1):
        ss[_PREFIX + "fdr_q"] = 0.05
    else:
        ss[_PREFIX + "fdr_q"] = float(min(max(fq, 0.0001), 0.5))
    sb.number_input("FDR threshold q", min_value=0.0001, max_value=0.5, step=0.01, format="%.4f",
                    key=_PREFIX + "fdr_q", help="Benjamini-Hochberg q below which a voxel counts as significant")
    surfaces = list(SURFACE_CHOICES.get(space, ()))
    if surfaces:
        _choose(_PREFIX + "surface", surfaces, from_url=from_link("surface"), what="surface", warns=warns)
        sb.selectbox("Surface", surfaces, key=_PREFIX + "surface", format_func=lambda s: s.replace("_", " "))
    else:  # a volume dataset (Pereira 2018) has no surface to draw on
        ss.setdefault(_PREFIX + "surface", ViewState().surface)
    ss.setdefault(_PREFIX + "presentation", False)
    sb.toggle("Presentation mode", key=_PREFIX + "presentation",
              help="large fonts, no Streamlit chrome: for projecting at lab meetings")

    values.update(metric=ss[_PREFIX + "metric"], atlas=ss[_PREFIX + "atlas"], fdr_q=float(ss[_PREFIX + "fdr_q"]),
                  surface=ss[_PREFIX + "surface"], presentation=bool(ss[_PREFIX + "presentation"]),
                  voxel=ss.get(_PREFIX + "voxel"), an=ss.get(_PREFIX + "an"))
    state = ViewState(**values)
    for w in warns:  # shown on the run that read the link
        st.warning(w, icon=":material/link_off:")
    _sync_query(state)
    if state.presentation:
        st.markdown(presentation_css(), unsafe_allow_html=True)
    if ss.get(FOLLOWING) is not None:  # what the user would change to stop following
        ss[FOLLOWING] = {k: ss.get(_PREFIX + k) for k in VIEW_FIELDS} if build_status(base) is not None else None
    ss["_view_state"] = state
    return state


def current() -> ViewState:
    """The view state of this run (built by :func:`sidebar`, which it calls if app.py did not)."""
    ss = _ss()
    if "_view_state" not in ss or not _drawn_this_run():
        # a page run without app.py (Streamlit's pages/-folder mode: AppTest reruns, or the first
        # request of a server process on a page URL) draws the sidebar itself
        return sidebar()
    return ss["_view_state"]


def set_view(**changes) -> ViewState:
    """Change fields of the view (e.g. ``set_view(voxel=123)``); updates the URL.

    Call it from a widget callback (``on_change`` / ``on_select``), or call it and then
    ``st.rerun()``: sidebar widgets already drawn in this run cannot change until the next run.
    """
    ss = _ss()
    names = {f.name for f in fields(ViewState)}
    unknown = set(changes) - names
    if unknown:
        raise ValueError(f"unknown view fields {sorted(unknown)}")
    # in a callback nothing is drawn yet: the last run's state, not a fresh sidebar
    base = ss["_view_state"] if "_view_state" in ss else current()
    state = replace(base, **changes)
    from streamlit.errors import StreamlitAPIException

    pending = ss.get("_vs_pending", {})
    for k, v in changes.items():
        try:
            ss[_PREFIX + k] = v
        except StreamlitAPIException:  # its widget is already drawn in this run: next run
            pending[k] = v
    if pending:
        ss["_vs_pending"] = pending
    ss["_view_state"] = state
    _sync_query(state)
    return state


# ---------------------------------------------------------------------- page intents
SIDEBAR_FIELDS = ("subject", "model", "branch", "layer", "kind", "condition")


def apply_intent(state: ViewState, intent_key: str) -> ViewState:
    """Apply what a widget callback recorded under ``intent_key``: ``{"view": {...}, "goto": page}``.

    Callbacks only record; this runs in the page body after the sidebar is drawn (set_view needs
    the run's view state, which callbacks and fragment reruns lack). Before a page switch the
    sidebar fields are re-asserted: a widget drawn before st.switch_page can come back at its
    default on the new page (seen with the int-valued Layer selectbox).
    """
    intent = st.session_state.pop(intent_key, None)
    if not intent:
        return state
    view = dict(intent["view"])
    if intent.get("goto"):
        view = {**{f: getattr(state, f) for f in SIDEBAR_FIELDS}, **view}
    state = set_view(**view)
    if intent.get("goto"):
        st.switch_page(intent["goto"])
    return state
