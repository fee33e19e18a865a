"""Studies, availability, atlases and summaries of the app, memoised across reruns.

Everything the pages read goes through here: the study of the view's dataset (the demo is built
first, with a progress bar, when the cache lacks it), what its cache holds, atlases, and
``alignment.summaries`` calls memoised with ``st.cache_data``.

Environment: ``ALIGNMENT_CACHE`` (cache folder, default ``./cache``; the demo lives inside it),
``ALIGNMENT_DEMO_SMALL=1`` (use the small demo, for tests), ``ALIGNMENT_DATA_ROOTS`` (the folders
under which the app may open datasets, separated by ``os.pathsep``; see :func:`dataset_refusal`).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from ui.view import ViewState

__all__ = [
    "DATA_ROOTS_ENV",
    "cache_root",
    "check_dataset_folder",
    "dataset_refusal",
    "clear_caches",
    "demo_small",
    "atlas_choices",
    "build_status",
    "get_atlas",
    "get_available",
    "get_study",
    "link_table",
    "study_key",
    "summary",
]


def cache_root() -> str:
    """Cache folder: ``$ALIGNMENT_CACHE`` or ``./cache`` (absolute path)."""
    return str(Path(os.environ.get("ALIGNMENT_CACHE") or "cache").expanduser().absolute())


def demo_small() -> bool:
    """``ALIGNMENT_DEMO_SMALL=1``: the app uses the small demo."""
    return os.environ.get("ALIGNMENT_DEMO_SMALL", "").strip().lower() in ("1", "true", "yes")


#: the setting that lists the folders under which the app may open datasets
DATA_ROOTS_ENV = "ALIGNMENT_DATA_ROOTS"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def dataset_refusal(folder: str, roots: str | None, address: str | None) -> str | None:
    """Why the app must not open ``folder``, or None when it may.

    The dataset field (and the ``dataset`` URL parameter) names a folder of the server. With
    ``roots`` set (``$ALIGNMENT_DATA_ROOTS``), only folders inside one of them open, links
    resolved. Without it, any folder opens while the server listens on a loopback ``address``
    only (the default); a server shared on a network opens the demo alone.
    """
    real = os.path.realpath(folder)
    allowed = [os.path.realpath(r) for r in (roots or "").split(os.pathsep) if r.strip()]
    if allowed:
        if any(os.path.commonpath([real, r]) == r for r in allowed):
            return None
        return (f"{folder} is outside the data folders this app may open ({DATA_ROOTS_ENV}: "
                f"{os.pathsep.join(allowed)})")
    if (address or "").strip() in _LOOPBACK:
        return None
    return (f"this app is shared on the network (server.address {address or 'all interfaces'}): it opens "
            f"only the demo until {DATA_ROOTS_ENV} lists the folders that hold datasets")


def check_dataset_folder(folder: str) -> None:
    """Raise :class:`alignment.data.DatasetError` when this server may not open ``folder``."""
    refusal = dataset_refusal(folder, os.environ.get(DATA_ROOTS_ENV), st.get_option("server.address"))
    if refusal:
        from alignment.data import DatasetError

        raise DatasetError(refusal, folder)


def study_key(state: ViewState) -> tuple[str, str, bool]:
    """(dataset, cache folder, small) — identifies a study in memoisation keys."""
    named = state.is_demo or state.is_concept_demo
    ds = state.dataset if named else str(Path(state.dataset.strip()).expanduser().absolute())
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


def _atlas_context(sk: tuple) -> tuple[str, str]:
    """(space, dataset folder) of the study ``sk``: where its atlases come from."""
    dataset = _open_study(*sk).dataset
    return dataset.space, str(dataset.root)


@st.cache_resource(show_spinner=False, max_entries=16)
def _atlas(name: str, space: str, root: str):
    from alignment.atlases import open_atlas

    return open_atlas(name, space, root)


def _ensure_demo(root: str, small: bool) -> None:
    """Make sure the demo is complete or being computed in the background.

    A complete demo is opened at once. Otherwise the background build is started (or found
    running, from another session): once the dataset exists the pages show what is cached and a
    progress indicator for the rest (:func:`build_status`); before that, this run stops with a
    message and the sidebar's watcher reruns the app when the dataset is there.
    """
    from alignment import background, summaries

    if (root, small) in _READY:
        return
    from ui.progress import watch_build

    status = background.read_status(root, small)
    if not (status and status.active) and summaries.demo_ready(root, small=small):
        _READY.add((root, small))
        return
    if status is not None and status.state == "failed":  # not restarted by itself: it would fail again
        st.error(f"{status.text()}. The log is `{background.status_path(root, small).with_suffix('.log')}`.",
                 icon=":material/error:")
        if st.button("Start the demo build again"):
            background.start_demo_build(root, small)
            st.rerun()
    elif not (status and status.active):
        background.start_demo_build(root, small)
    if not _demo_dataset_built(root, small):
        st.info("Preparing the simulated demo in the background (first start only): building the dataset, "
                "then computing every analysis into the cache "
                f"`{root}`. The first map shows here as soon as it is stored (about a minute on two cores: its r "
                "first, its significance after); "
                "the rest computes while you look (`python -m alignment demo` prepares it all from a terminal).")
        watch_build(root, small, dataset_ready=False)
        st.stop()


def _ensure_concept_demo(root: str, small: bool) -> None:
    """While the background build has not made the concept demo yet: say so, watch, stop."""
    from alignment import background, summaries
    from ui.progress import watch_build

    status = background.read_status(root, small)
    if status is not None and status.active and not summaries.concept_demo_built(root, small):
        st.info("The simulated concept demo is built after the movie demo's analyses; it shows here when it is "
                f"ready ({status.text()}).", icon=":material/hourglass_top:")
        watch_build(root, small, dataset_ready=False)
        st.stop()


def _demo_dataset_built(root: str, small: bool) -> bool:
    from alignment.cache import Cache
    from alignment.data import GROUND_TRUTH_FILE
    from alignment.demo import demo_root

    folder = demo_root(Cache(root), small=small)
    return (folder / "dataset.toml").is_file() and (folder / GROUND_TRUTH_FILE).is_file()


def build_status(state: ViewState):
    """The background demo build's :class:`~alignment.background.BuildStatus` while it runs
    (the demo only); None when none runs."""
    if not (state.is_demo or state.is_concept_demo):
        return None
    from alignment.background import read_status

    _, root, small = study_key(state)
    status = read_status(root, small)
    return status if status is not None and status.active else None


def get_study(state: ViewState):
    """The read-only :class:`~alignment.pipeline.Study` of ``state.dataset``.

    For the demo, builds it first (with a progress bar) when the cache lacks it. Raises
    :class:`alignment.data.DatasetError` for a folder that is not a dataset (use :func:`guard`).
    """
    ds, root, small = study_key(state)
    if state.is_demo:
        _ensure_demo(root, small)
    elif state.is_concept_demo:  # built by the same background build, after the movie demo
        _ensure_demo(root, small)
        _ensure_concept_demo(root, small)
    else:
        check_dataset_folder(ds)
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
        kwargs["atlas"] = _atlas(atlas, *_atlas_context(sk))
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


def get_atlas(state: ViewState, name: str | None = None):
    """The :class:`alignment.atlases.Atlas` ``name`` (default ``state.atlas``) of the state's
    dataset (memoised); the study must be open."""
    return _atlas(state.atlas if name is None else name, *_atlas_context(study_key(state)))


def atlas_choices(state: ViewState) -> dict[str, str]:
    """name → label of the atlases the state's dataset offers (:func:`alignment.atlases.atlas_choices`)."""
    from alignment.atlases import atlas_choices as choices

    return choices(*_atlas_context(study_key(state)))


def clear_caches() -> None:
    """Forget memoised studies, availability lists and summaries (after compute / delete)."""
    _open_study.clear()
    _available.clear()
    st.cache_data.clear()
    _READY.clear()


@st.cache_resource(show_spinner="Building the AN ↔ voxel link table …", max_entries=4)
def link_table(_study, study_ident: str, subject: str, kind: str, condition: str, keys: tuple):
    """The inspectors' AN ↔ voxel LinkTable, built once per (study, subject, kind, condition)."""
    from alignment import inspector as insp

    return insp.build_link_table(_study, subject, kind, condition, keys=list(keys))
