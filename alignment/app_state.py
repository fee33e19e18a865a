"""Shared state and helpers of the Streamlit app (the contract between app.py and the pages).

The view state
--------------
:class:`ViewState` (frozen) holds everything that defines a view: dataset, subject (or
``"group"``), model, branch, layer, condition, AN kind, atlas, FDR threshold, surface, metric,
selected voxel / AN, presentation mode. It round-trips through the URL query string
(:meth:`ViewState.to_query` / :meth:`ViewState.from_query`), so a pasted link restores the view.

How pages use it::

    from alignment import app_state as S

    state = S.current()              # the ViewState app.py's sidebar built for this run
    S.demo_banner(state)             # says plainly when the simulated demo is shown
    with S.guard():                  # library errors -> readable st.error, no traceback
        study = S.get_study(state)
        avail = S.get_available(state)
        ...
        S.plot(fig, key="overview-map")
        S.export_buttons(fig, "overview_map", table=df, map_values=values)

``app.py`` calls :func:`sidebar` once per run, before ``st.navigation(...).run()``; the widgets
live in the entry script, so their values survive page switches. :func:`sidebar` called again in
the same run returns the state it built (no duplicate widgets). To change the view from a page
(e.g. a click on a voxel) call :func:`set_view` (``set_view(voxel=1234)``) from a widget
callback, or call it and then ``st.rerun()``.

Environment: ``ALIGNMENT_CACHE`` (cache folder, default ``./cache``; the demo lives inside it),
``ALIGNMENT_DEMO_SMALL=1`` (use the small demo, for tests).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import streamlit as st

from alignment.conventions import AN_KINDS, CONDITIONS, GROUP, MAP_METRICS, nearest_layer

__all__ = [
    "ATLASES",
    "PAGES",
    "SURFACES",
    "ViewState",
    "parse_query",
    "sidebar",
    "page_menu",
    "current",
    "set_view",
    "get_study",
    "get_available",
    "cache_root",
    "demo_small",
    "demo_banner",
    "show_error",
    "guard",
    "export_buttons",
    "plot",
    "page",
    "describe",
    "open_or_stop",
    "brain_figure",
    "presentation_css",
    "get_atlas",
    "summary",
    "clear_caches",
    "study_key",
]

ATLASES = ("ca", "yeo7", "yeo17")
ATLAS_NAMES = {"ca": "Cole-Anticevic (12)", "yeo7": "Yeo 7", "yeo17": "Yeo 17"}
SURFACES = ("inflated", "very_inflated", "flat")
#: the app's pages by menu section: (script, title, icon); the first one is the default page
PAGES = {
    "Explore": (("pages/overview.py", "Overview", ":material/neurology:"),
                ("pages/layers.py", "Layers", ":material/stacked_line_chart:"),
                ("pages/polarity.py", "Polarity", ":material/exposure:"),
                ("pages/modality.py", "Modality", ":material/image:"),
                ("pages/redundancy.py", "Redundancy", ":material/join_inner:"),
                ("pages/integration.py", "Integration sites", ":material/merge:"),
                ("pages/compare.py", "Compare", ":material/compare:")),
    "Inspect": (("pages/voxel_inspector.py", "Voxel inspector", ":material/my_location:"),
                ("pages/neuron_inspector.py", "Neuron inspector", ":material/hub:")),
    "Run": (("pages/compute.py", "Compute & cache", ":material/settings:"),),
}

_PREFIX = "vs_"  # session-state keys of the sidebar widgets: vs_<field>


# ==========================================================================================
# the view state
# ==========================================================================================
@dataclass(frozen=True)
class ViewState:
    """Everything that defines a view. All fields travel in the URL query string.

    ``model`` / ``branch`` empty: the first available. ``voxel`` (grayordinate index) and
    ``an`` (AN index within the layer) are None when nothing is selected.
    """

    dataset: str = "demo"
    subject: str = GROUP
    model: str = ""
    branch: str = ""
    layer: int = 0
    condition: str = "image+text"
    kind: str = "attn"
    atlas: str = "ca"
    fdr_q: float = 0.05
    surface: str = "inflated"
    metric: str = "r"
    voxel: int | None = None
    an: int | None = None
    presentation: bool = False

    # -------------------------------------------------------------------- URL
    def to_query(self) -> dict[str, str]:
        """Query-string parameters (str → str); None fields are left out."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, bool):
                v = "1" if v else "0"
            elif isinstance(v, float):
                v = f"{v:g}"
            out[f.name] = str(v)
        return out

    @classmethod
    def from_query(cls, params: Mapping[str, Any]) -> "ViewState":
        """Parse query parameters; invalid values fall back to defaults (see :func:`parse_query`)."""
        return parse_query(params)[0]

    @property
    def is_demo(self) -> bool:
        return self.dataset == "demo"

    @property
    def is_group(self) -> bool:
        return self.subject == GROUP

    def layer_key(self):
        """The :class:`~alignment.pipeline.LayerKey` of (model, branch, layer, kind, condition)."""
        from alignment.pipeline import LayerKey

        return LayerKey(self.model, self.branch, int(self.layer), self.kind, self.condition)


def _first(v):
    if isinstance(v, (list, tuple)):
        return v[-1] if v else ""
    return v


def parse_query(params: Mapping[str, Any]) -> tuple[ViewState, list[str]]:
    """Parse query parameters into a :class:`ViewState` and a list of warnings.

    Unknown keys are ignored; values that do not parse (a layer that is not an integer, an
    unknown condition, a threshold outside (0, 1), ...) take the default and add a warning.
    Whether a model / branch / layer exists in the cache is checked later, by :func:`sidebar`.
    """
    d = ViewState()
    vals: dict[str, Any] = {}
    warns: list[str] = []
    p = {k: _first(v) for k, v in dict(params).items()}

    def bad(name, raw, why=""):
        warns.append(f"URL parameter {name}={raw!r} is not valid{(' (' + why + ')') if why else ''}; "
                     f"using {getattr(d, name)!r}")

    for name in ("dataset", "subject", "model", "branch"):
        if name in p:
            raw = str(p[name]).strip()
            if raw or name in ("model", "branch"):
                vals[name] = raw
            else:
                bad(name, p[name])
    for name, allowed in (("condition", CONDITIONS), ("kind", AN_KINDS), ("atlas", ATLASES),
                          ("surface", SURFACES), ("metric", MAP_METRICS)):
        if name in p:
            raw = str(p[name]).strip()
            if raw in allowed:
                vals[name] = raw
            else:
                bad(name, p[name], "expected one of " + ", ".join(allowed))
    for name in ("layer", "voxel", "an"):
        if name in p and str(p[name]).strip() != "":
            raw = str(p[name]).strip()
            try:
                v = int(raw)
                if v < 0:
                    raise ValueError
                vals[name] = v
            except ValueError:
                bad(name, p[name], "expected a non-negative integer")
    if "fdr_q" in p:
        try:
            v = float(p["fdr_q"])
            if not (math.isfinite(v) and 0 < v <= 0.5):
                raise ValueError
            vals["fdr_q"] = v
        except (TypeError, ValueError):
            bad("fdr_q", p["fdr_q"], "expected a number in (0, 0.5]")
    if "presentation" in p:
        raw = str(p["presentation"]).strip().lower()
        if raw in ("1", "true", "yes", "on"):
            vals["presentation"] = True
        elif raw in ("0", "false", "no", "off", ""):
            vals["presentation"] = False
        else:
            bad("presentation", p["presentation"], "expected 1 or 0")
    return replace(d, **vals), warns


# ==========================================================================================
# environment, studies, atlases
# ==========================================================================================
def cache_root() -> str:
    """Cache folder: ``$ALIGNMENT_CACHE`` or ``./cache`` (absolute path)."""
    return str(Path(os.environ.get("ALIGNMENT_CACHE") or "cache").expanduser().absolute())


def demo_small() -> bool:
    """``ALIGNMENT_DEMO_SMALL=1``: the app uses the small demo."""
    return os.environ.get("ALIGNMENT_DEMO_SMALL", "").strip().lower() in ("1", "true", "yes")


def study_key(state: ViewState) -> tuple[str, str, bool]:
    """(dataset, cache folder, small) — identifies a study in memoisation keys."""
    ds = state.dataset if state.is_demo else str(Path(state.dataset.strip()).expanduser().absolute())
    return ds, cache_root(), demo_small()


_READY: set = set()  # (cache root, small) of demos known to be complete in this process


@st.cache_resource(show_spinner=False, max_entries=8)
def _open_study(dataset: str, root: str, small: bool):
    from alignment import summaries

    return summaries.open_study(dataset, root, demo_small=small)


@st.cache_resource(show_spinner=False, max_entries=8)
def _available(dataset: str, root: str, small: bool):
    from alignment import summaries

    return summaries.available(_open_study(dataset, root, small), demo=dataset == "demo")


@st.cache_resource(show_spinner=False)
def _atlas(name: str):
    from alignment.atlases import load_atlas

    return load_atlas(name)


def _ensure_demo(root: str, small: bool) -> None:
    """Build the demo (dataset + every analysis) with a visible progress bar if incomplete."""
    from alignment import summaries

    if (root, small) in _READY:
        return
    if not summaries.demo_ready(root, small=small):
        from alignment.cache import Cache
        from alignment.demo import run_demo

        box = st.empty()
        with box.container():
            st.info("Preparing the simulated demo (first start only): building the dataset, extracting the "
                    "demo models' ANs and computing every analysis into the cache "
                    f"`{root}` — about 12 minutes on 2 CPU cores. Later starts read the cache; "
                    "`python -m alignment demo` prepares it from a terminal.")
            bar = st.progress(0.0, text="building the simulated dataset …")

            def progress(done: int, total: int, label: str) -> None:
                frac = done / total if total else 1.0
                bar.progress(min(1.0, frac), text=f"{label} — unit {min(done + 1, total)} of {total} "
                                                  f"({100 * frac:.0f} %)")

            run_demo(Cache(root), small=small, progress=progress)
        box.empty()
        _open_study.clear()
        _available.clear()
    _READY.add((root, small))


def get_study(state: ViewState):
    """The :class:`~alignment.summaries.AppStudy` of ``state.dataset`` (read-only cache).

    For the demo, builds it first (with a progress bar) when the cache lacks it. Raises
    :class:`alignment.data.DatasetError` for a folder that is not a dataset (use :func:`guard`).
    """
    ds, root, small = study_key(state)
    if state.is_demo:
        _ensure_demo(root, small)
    return _open_study(ds, root, small)


def get_available(state: ViewState):
    """:class:`~alignment.summaries.Availability` of the state's dataset (memoised)."""
    get_study(state)
    return _available(*study_key(state))


@st.cache_data(show_spinner="Reading results from the cache …", max_entries=128)
def _summary(name: str, sk: tuple, args: tuple, kw: tuple, atlas: str | None, with_avail: bool):
    from alignment import summaries

    study = _open_study(*sk)
    kwargs = dict(kw)
    if atlas is not None:
        kwargs["atlas"] = _atlas(atlas)
    if with_avail:
        kwargs["avail"] = _available(*sk)
    return getattr(summaries, name)(study, *args, **kwargs)


def summary(name: str, state: ViewState, *args, atlas: str | None = None, with_avail: bool = False, **kwargs):
    """Call ``alignment.summaries.<name>(study, *args, **kwargs)`` through ``st.cache_data``.

    ``atlas``: an atlas name, passed as ``atlas=Atlas``; ``with_avail``: pass ``avail=`` the
    dataset's :class:`~alignment.summaries.Availability`. Arguments must be hashable by
    ``st.cache_data`` (str, numbers, tuples, LayerKey). The study must be open (call
    :func:`get_study` first). Exceptions propagate (not cached).
    """
    return _summary(name, study_key(state), tuple(args), tuple(sorted(kwargs.items())), atlas, with_avail)


def get_atlas(name: str = "ca"):
    """:class:`alignment.atlases.Atlas` (memoised)."""
    return _atlas(name)


def clear_caches() -> None:
    """Forget memoised studies, availability lists and summaries (after compute / delete)."""
    _open_study.clear()
    _available.clear()
    st.cache_data.clear()
    _READY.clear()


# ==========================================================================================
# sidebar
# ==========================================================================================
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
                  help="`demo` (the simulated experiment) or the path of a dataset folder "
                       "(dataset.toml, stimuli/, sub-*/)")
    dataset = (ss[_PREFIX + "dataset"] or "demo").strip() or "demo"
    base = replace(ViewState(), dataset=dataset)

    avail = None
    try:
        avail = get_available(base)
    except Exception as exc:  # noqa: BLE001 - shown, the pages show it again in their guard
        sb.error(_message(exc))

    values: dict[str, Any] = {"dataset": dataset}
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
    _choose(_PREFIX + "atlas", list(ATLASES), from_url=False, what="atlas", warns=warns)
    sb.selectbox("Atlas", ATLASES, key=_PREFIX + "atlas", format_func=lambda a: ATLAS_NAMES.get(a, a))
    fq = ss.get(_PREFIX + "fdr_q")
    if not isinstance(fq, (int, float)) or not (0 < float(fq) < 1):
        ss[_PREFIX + "fdr_q"] = 0.05
    else:
        ss[_PREFIX + "fdr_q"] = float(min(max(fq, 0.0001), 0.5))
    sb.number_input("FDR threshold q", min_value=0.0001, max_value=0.5, step=0.01, format="%.4f",
                    key=_PREFIX + "fdr_q", help="Benjamini-Hochberg q below which a voxel counts as significant")
    _choose(_PREFIX + "surface", list(SURFACES), from_url=False, what="surface", warns=warns)
    sb.selectbox("Surface", SURFACES, key=_PREFIX + "surface", format_func=lambda s: s.replace("_", " "))
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


# ==========================================================================================
# banners, errors
# ==========================================================================================
def demo_banner(state: ViewState | None = None) -> None:
    """An ``st.info`` saying that the simulated demo is shown (every page calls it)."""
    state = state or current()
    if state.is_demo:
        st.info("**Simulated demo.** These results come from a simulated movie-fMRI experiment with "
                   "random-weight demo models and planted ground truth — not real brain data.",
                   icon=":material/science:")


def _message(exc: BaseException) -> str:
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
    """Show a library exception as a readable ``st.error`` (no traceback)."""
    st.error(_message(exc), icon=":material/error:")
    from alignment import summaries

    if isinstance(exc, summaries.NotCached):
        st.caption("Go to the **Compute** page to compute missing results, or pick another "
                   "model / layer / condition in the sidebar.")


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


# ==========================================================================================
# plots and exports
# ==========================================================================================
def presentation_css() -> str:
    """CSS that hides Streamlit's chrome (header, toolbar, menu, footer, sidebar collapse)."""
    return """<style>
header[data-testid="stHeader"], div[data-testid="stToolbar"], div[data-testid="stDecoration"],
div[data-testid="stStatusWidget"], #MainMenu, footer,
button[data-testid="stBaseButton-headerNoPadding"], div[data-testid="stSidebarCollapseButton"],
div[data-testid="stSidebarCollapsedControl"], div[data-testid="stAppDeployButton"] {display: none !important;}
.block-container, div[data-testid="stMainBlockContainer"] {padding-top: 1.2rem !important; max-width: 100% !important;}
html, body, [data-testid="stAppViewContainer"] {font-size: 19px;}
h1 {font-size: 2.6rem !important;} h2 {font-size: 2.0rem !important;} h3 {font-size: 1.6rem !important;}
</style>"""


def plot(fig, key: str, state: ViewState | None = None, **kwargs):
    """``st.plotly_chart(fig, theme=None, ...)`` with the presentation theme when it is on.

    ``kwargs`` go to ``st.plotly_chart`` (e.g. ``on_select="rerun"``, ``selection_mode``);
    default width ``"stretch"``. Returns what ``st.plotly_chart`` returns.
    """
    state = state or current()
    if state.presentation:
        import plotly.graph_objects as go

        from alignment.figures import apply_theme

        fig = apply_theme(go.Figure(fig), presentation=True)
        if any(tr.type == "mesh3d" for tr in fig.data):  # long map titles: keep them on the slide
            fig.update_layout(title_font_size=20)
    # error bands (fill="toself") draw as lines only: plotly's default mode for traces with
    # fewer than 20 points is "lines+markers", which scatters stray dots along the band edges
    fig.update_traces(mode="lines", selector=dict(type="scatter", fill="toself"))
    kwargs.setdefault("width", "stretch")
    kwargs.setdefault("config", {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}})
    return st.plotly_chart(fig, theme=None, key=key, **kwargs)


def set_label(parts: tuple) -> str:
    """A (model, branch, kind[, condition]) choice as the pickers show it."""
    return " · ".join([str(parts[0]).replace("random:", ""), *map(str, parts[1:])])


def describe(state: ViewState, key=None, subject: str | None = None, layer: bool = True) -> str:
    """One-line label of a view: model · branch · layer · kind · condition · subject."""
    k = key or state.layer_key()
    subj = subject or state.subject
    who = "group" if subj == GROUP else f"sub-{subj}"
    lay = f" · L{k.layer}" if layer else ""
    return f"{k.model} · {k.branch}{lay} · {k.kind} · {k.condition} · {who}"


def page(title: str, state: ViewState | None = None, caption: str | None = None) -> ViewState:
    """Page header: title, the demo banner, an optional caption. Returns the view state."""
    st.set_page_config(page_title=f"{title} · VLM ↔ brain alignment", page_icon="🧠", layout="wide")
    state = state or current()
    st.title(title)
    demo_banner(state)
    if caption:
        st.caption(caption)
    return state


def open_or_stop(state: ViewState):
    """(study, availability) of the view, or an ``st.error`` and ``st.stop()``."""
    with guard(state) as g:
        study = get_study(state)
        avail = get_available(state)
    if g.failed:
        st.stop()
    if not avail.models():
        st.info("The cache holds no encoding results for this dataset yet. Compute them on the **Compute** page.")
        st.stop()
    return study, avail


def brain_figure(values, state: ViewState, *, title: str = "", cmap="RdBu_r", symmetric: bool = True,
                 vmin=None, vmax=None, label: str = "", height: int = 430, hover: bool = True,
                 camera: str = "lateral", surface: str | None = None, outlines: bool = True):
    """:func:`alignment.figures.surface_figure` of a (V,) map on the view's surface and atlas outlines."""
    from alignment.figures import surface_figure

    lab = get_atlas(state.atlas).labels if outlines else None
    return surface_figure(values, surface or state.surface, cmap=cmap, symmetric=symmetric, vmin=vmin, vmax=vmax,
                          title=title, outlines=lab, colorbar_title=label, height=height, hover=hover,
                          camera=camera)


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
    return keep.strip("_") or "figure"


def _dscalar_bytes(values, names) -> bytes:
    from alignment.export import write_dscalar

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "map.dscalar.nii")
        write_dscalar(path, values, names=names)
        return Path(path).read_bytes()


def _gifti_zip(values, names, base: str) -> bytes:
    from alignment.export import write_gifti

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_gifti(os.path.join(tmp, base), values, names=names)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in paths:
                z.write(p, os.path.basename(p))
        return buf.getvalue()


def _figure_bytes(fig, fmt: str) -> bytes:
    from alignment.export import figure_bytes

    state = _ss().get("_view_state")
    if state is not None and state.presentation:
        import plotly.graph_objects as go

        from alignment.figures import apply_theme

        fig = apply_theme(go.Figure(fig), presentation=True)
    return figure_bytes(fig, fmt)


def export_buttons(fig=None, name: str = "figure", table=None, map_values=None, map_names=None) -> None:
    """Download buttons for a view, in an "Export" popover.

    Parameters
    ----------
    fig : plotly Figure, optional
        PNG and SVG (kaleido + local chromium; a readable note when there is none), standalone
        HTML. Files are produced only when the button is clicked.
    name : str
        Base file name.
    table : pandas.DataFrame, optional
        CSV.
    map_values : ndarray, shape (V,) or (M, V), optional
        CIFTI dscalar (.dscalar.nii) and GIfTI (.func.gii, both hemispheres, zipped).
    map_names : sequence of str, optional
        Names of the maps inside the files.
    """
    from alignment.export import find_chromium

    base = _safe_name(name)
    pop = st.popover("Export", icon=":material/download:")
    with pop:
        if fig is not None:
            if find_chromium() is None:
                st.caption("PNG / SVG export needs a local chromium (Debian package `chromium`, or set "
                           "ALIGNMENT_CHROMIUM); HTML export works without it.")
            else:
                st.download_button("PNG (static image)", lambda f=fig: _figure_bytes(f, "png"),
                                   file_name=f"{base}.png", mime="image/png", key=f"dl-{base}-png",
                                   on_click="ignore")
                st.download_button("SVG (vector)", lambda f=fig: _figure_bytes(f, "svg"),
                                   file_name=f"{base}.svg", mime="image/svg+xml", key=f"dl-{base}-svg",
                                   on_click="ignore")
            st.download_button("HTML (interactive, standalone)", lambda f=fig: _figure_bytes(f, "html"),
                               file_name=f"{base}.html", mime="text/html", key=f"dl-{base}-html",
                               on_click="ignore")
        if table is not None:
            st.download_button("CSV (table)", lambda t=table: t.to_csv(index=False).encode("utf-8"),
                               file_name=f"{base}.csv", mime="text/csv", key=f"dl-{base}-csv", on_click="ignore")
        if map_values is not None:
            import numpy as np

            vals = np.asarray(map_values, np.float32)
            names = list(map_names) if map_names is not None else None
            st.download_button("CIFTI dscalar (Workbench)", lambda: _dscalar_bytes(vals, names),
                               file_name=f"{base}.dscalar.nii", mime="application/octet-stream",
                               key=f"dl-{base}-dscalar", on_click="ignore")
            st.download_button("GIfTI (.func.gii, L + R, zip)", lambda: _gifti_zip(vals, names, base),
                               file_name=f"{base}_gifti.zip", mime="application/zip", key=f"dl-{base}-gifti",
                               on_click="ignore")


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


@st.cache_resource(show_spinner="Building the AN ↔ voxel link table …", max_entries=4)
def link_table(_study, study_ident: str, subject: str, kind: str, condition: str, keys: tuple):
    """The inspectors' AN ↔ voxel LinkTable, built once per (study, subject, kind, condition)."""
    from alignment import inspect as insp

    return insp.build_link_table(_study, subject, kind, condition, keys=list(keys))
