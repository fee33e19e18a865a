"""The background demo build as the app shows it: a compact progress line that keeps itself up
to date, and reruns the app when what a page waits for may have arrived."""

from __future__ import annotations

import streamlit as st

__all__ = ["FOLLOWING", "POLL_SECONDS", "WAITING", "watch_build"]

#: how often an open page looks at the build's status file
POLL_SECONDS = 1.0
#: session flag: a view of this run waits for a result the build has not stored yet
WAITING = "_waiting_for_build"
#: session value: the opened view's fields while the user has not changed them and the build
#: runs; the sidebar then moves to the most informative view as results arrive (ui.sidebar)
FOLLOWING = "_vs_following"
_SEEN = "_build_seen"


@st.fragment(run_every=POLL_SECONDS)
def watch_build(root: str, small: bool, dataset_ready: bool = True) -> None:
    """Show the build's progress; rerun the app when it moved on and this page waits for it
    (a view said "still computing", the dataset was still being built) or when it ended."""
    from alignment.background import read_status

    ss = st.session_state
    status = read_status(root, small)
    if status is None:
        return
    if status.state == "failed":
        st.error(status.text(), icon=":material/error:")
    elif status.active:
        st.progress(min(1.0, status.done / status.total) if status.total else 0.0, text=status.text())
    now = (status.state, status.done, status.active)
    seen = ss.get(_SEEN)
    ss[_SEEN] = now
    if seen is None or seen == now:
        return
    if ss.pop(WAITING, False) or not dataset_ready or not status.active or ss.get(FOLLOWING):
        st.rerun(scope="app")
