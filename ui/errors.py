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
            return
    st.error(message(exc), icon=":material/error:")

    if isinstance(exc, summaries.NotCached):
        st.caption("Go to the **Compute** page to compute missing results, or pick another "
                   "model / layer / condition in the sidebar.")


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
