"""Voxel inspector: which model neurons drive this voxel, and when?

Pick a voxel by clicking the flat map (box / lasso: an ROI), by its index or as the peak of a
network, or take a parcel (HCP-MMP1.0) as the ROI; see its measured and predicted time course,
its top ANs over every mapped layer and branch (a click on a row opens the AN in the Neuron
inspector) and the frames shown before its largest responses. The library side is
:mod:`alignment.inspector`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from alignment import inspector as insp
from alignment.figures import flat_map_figure
from alignment.stages.ceiling import CEILING_TARGET
from alignment.summaries import CEILING_FLOOR, study_id
import ui as S

NEURON_PAGE = "pages/neuron_inspector.py"
INTENT = "_vi_intent"  # what a widget callback asked for: {"view": {...}, "goto": page or None}
ss = st.session_state

state = S.page("Voxel inspector",
               caption="Click a vertex on the flat map (or drag a box / lasso for an ROI), type a voxel "
                       "index, jump to a network's best-predicted voxel, or take a parcel as the ROI.",
               methods_of=('Encoding maps', 'Noise ceiling', 'Neuron-level mapping'))
state = S.apply_intent(state, INTENT)
study, avail = S.open_or_stop(state)
key = state.layer_key()
atlas = S.get_atlas(state)
parcels = S.get_atlas(state, "mmp") if study.dataset.space == "fsLR32k" else None  # HCP-MMP1.0
sk = S.study_key(state)


# ------------------------------------------------------------------------------ cached reads
@st.cache_data(show_spinner="Fitting the voxel's ridge model (leave one run out) …", max_entries=64)
def timecourse(sk_: tuple, subject: str, key_, voxels: tuple):
    return insp.roi_timecourse(study, subject, key_, list(voxels))


@st.cache_data(show_spinner=False, max_entries=64)
def peaks(sk_: tuple, subject: str, voxel: int, n: int):
    return insp.peak_stimuli(study, subject, voxel, n=n)


def mapped_keys(subject: str) -> tuple:
    return tuple(avail.keys(stage="glm", subject=subject, kind=state.kind, condition=state.condition))


# ------------------------------------------------------------------------------ callbacks
def _set_roi(voxels, name: str | None = None) -> None:
    ss["vi_roi"], ss["vi_roi_name"] = [int(v) for v in voxels], name


def _set_voxel(v) -> None:
    ss.pop("vi_roi", None)
    ss[INTENT] = {"view": {"voxel": int(v)}}


def on_map_select() -> None:
    event = ss.get("vi-flatmap")
    selection = getattr(event, "selection", None) or (event or {}).get("selection")
    voxels = insp.voxels_from_selection(selection)
    if voxels.size == 1:
        _set_voxel(voxels[0])
    elif voxels.size > 1:
        _set_roi(voxels)


def on_index() -> None:
    if ss.get("vi_index") is not None:
        _set_voxel(ss["vi_index"])


def on_network(scores) -> None:
    name = ss.get("vi_network")
    if name and name != "—":
        _set_voxel(insp.peak_voxel(scores, atlas, name))
        ss["vi_network"] = "—"  # ready for the next pick


def on_parcel() -> None:
    name = ss.get("vi_parcel")
    if name and name != "—":
        _set_roi(np.flatnonzero(parcels.mask(name)), name)
        ss["vi_parcel"] = "—"  # ready for the next pick


def on_top_an(table: pd.DataFrame) -> None:
    event = ss.get("vi-topans")
    rows = getattr(getattr(event, "selection", None), "rows", None) or []
    if not rows:
        return
    row = table.iloc[int(rows[0])]
    ss[INTENT] = {"view": dict(model=str(row["model"]), branch=str(row["branch"]), layer=int(row["layer"]),
                               an=int(row["an"]), kind=str(row["kind"]), condition=str(row["condition"])),
                  "goto": NEURON_PAGE}


# ------------------------------------------------------------------------------ subject
if state.is_group:
    subjects = list(study.dataset.subjects)
    sid = st.selectbox("Subject (time courses and links are per subject)", subjects, key="vi_subject",
                       format_func=lambda s: f"sub-{s}")
else:
    sid = state.subject

with S.guard(state) as g:
    enc = study.get("encoding", key, sid)
    scores = np.asarray(enc["scores"], np.float64)
    qvals = np.asarray(enc["q"], np.float64)
if g.failed:
    st.stop()
# the subject's noise ceiling (computed on demand: seconds), NaN without repeated segments
with S.guard(state) as g:
    ceiling = np.asarray(study.get("ceiling", CEILING_TARGET, sid, compute=True)["ceiling"], np.float64)
if g.failed:
    ceiling = None

n_vox = study.dataset.n_vertices
voxel_sel = state.voxel
if voxel_sel is not None and voxel_sel >= n_vox:
    st.error(f"Voxel {voxel_sel} does not exist: this dataset has {n_vox} voxels (0 … {n_vox - 1}).")
    voxel_sel = None

# ------------------------------------------------------------------------------ picking
pick, info = st.columns([3, 1])
with pick:
    c1, c2 = st.columns([2, 3])
    only_sig = c1.toggle(f"only q < {state.fdr_q:g}", value=True, key="vi_only_sig",
                         help="colour only significantly predicted voxels (the others stay clickable)")
    mode = c2.radio("Select with", ("click", "box", "lasso"), horizontal=True, key="vi_mode",
                    help="click: one vertex; box / lasso: the mean over an ROI")
    values = np.where(qvals < state.fdr_q, scores, np.nan) if only_sig else scores
    roi = ss.get("vi_roi")
    # a ring for a single voxel; an ROI gets its outline (below)
    selected = None if roi or voxel_sel is None else [voxel_sel]
    with S.guard(state) as g:
        fig_map = flat_map_figure(values, cmap="RdBu_r", symmetric=True, title="", selected=selected,
                                  networks=atlas, colorbar_title="r", value_label="r",
                                  dragmode={"click": "zoom", "box": "select", "lasso": "lasso"}[mode],
                                  height=480)
        fig_map.update_traces(unselected=dict(marker=dict(opacity=1.0)))
        if roi:
            insp.add_roi_trace(fig_map, roi, space=study.dataset.space)
        S.plot(fig_map, key="vi-flatmap", state=state, on_select=on_map_select,
               selection_mode=("points", "box", "lasso"))
        st.caption(f"Encoding r of {S.describe(state, key, sid)}; a ring (an ROI: a dotted outline) marks "
                   "the selection.")
with info:
    ss["vi_index"] = voxel_sel
    st.number_input("Voxel (grayordinate index)", min_value=0, max_value=n_vox - 1, step=1,
                    key="vi_index", on_change=on_index, placeholder="type an index")
    names = ["—"] + [atlas.names[i] for i in atlas.ids]
    st.selectbox("…or the best-predicted voxel of a network", names, key="vi_network",
                 on_change=on_network, args=(scores,))
    if parcels is not None:
        st.selectbox("…or a parcel as the ROI (HCP-MMP1.0)", ["—"] + [parcels.names[i] for i in parcels.ids],
                     key="vi_parcel", on_change=on_parcel)
    if roi:
        st.metric(f"ROI {ss.get('vi_roi_name') or ''}", f"{len(roi)} voxels")
        if st.button("Clear ROI", key="vi_clear_roi"):
            ss.pop("vi_roi", None)
            st.rerun()
    elif voxel_sel is not None:
        st.metric("Voxel", f"{voxel_sel}")
        st.markdown(f"**Network:** {insp.network_of(atlas, voxel_sel)}")
        st.metric("Encoding r", f"{scores[voxel_sel]:.3f}", help=f"q (FDR) = {qvals[voxel_sel]:.3g}")
        st.caption(f"q (FDR) = {qvals[voxel_sel]:.2g}")
        if ceiling is not None and np.isfinite(ceiling[voxel_sel]):
            c = ceiling[voxel_sel]
            st.metric("Noise ceiling", f"{c:.3f}", help="expected r of a perfect model on one run's data, from the "
                                                      "repeated segment")
            st.metric("r / ceiling", f"{scores[voxel_sel] / c:.2f}" if c >= CEILING_FLOOR else "—",
                      help=f"not shown where the ceiling is below {CEILING_FLOOR:g}")
        elif ceiling is not None:
            st.caption("No noise ceiling: the data have no segment repeated across runs.")

if not roi and voxel_sel is None:
    st.info("No voxel selected yet: click the flat map, type an index or pick a network.")
    st.stop()

voxels = tuple(int(v) for v in (roi or [voxel_sel]))
if not roi:
    what = f"voxel {voxels[0]}"
elif ss.get("vi_roi_name"):
    what = f"ROI {ss['vi_roi_name']} ({len(voxels)} voxels)"
else:
    what = f"ROI of {len(voxels)} voxels"


# ------------------------------------------------------------------------------ time course
@st.fragment
def timecourse_view():
    st.subheader(f"Time course — {what}")
    with S.guard(state) as g:
        tc = timecourse(sk, sid, key, voxels)
    if g.failed:
        return
    run = st.radio("Show", ["all runs"] + [r for r, _, _ in tc.runs], horizontal=True, key="vi_run")
    fig = insp.timecourse_by_run_figure(
        tc.measured, tc.predicted, tc.segments, tc.runs, tc.tr, None if run == "all runs" else run,
        title=f"{what}: measured vs predicted — {run} ({S.describe(state, key, sid)})",
        labels=("measured", "predicted (held-out run)"))
    S.plot(fig, key="vi-timecourse", state=state)
    st.caption(f"Predicted: ridge from the layer's HRF-convolved ANs, each run predicted by the model fitted on "
               f"the other runs (alpha {', '.join(f'{a:g}' for a in np.unique(tc.alphas)[:4])}"
               f"{' …' if len(np.unique(tc.alphas)) > 4 else ''}). r over all TRs {tc.r:.3f}; "
               f"map score (mean over held-out runs) {tc.map_r:.3f}. Shading: stimulus segments (white: rest).")
    t = np.arange(len(tc.measured))
    S.export_buttons(fig, f"voxel_{'roi' if roi else voxels[0]}_timecourse",
                     table=pd.DataFrame({"tr": t, "time_s": t * tc.tr, "measured": tc.measured,
                                         "predicted": tc.predicted}))


timecourse_view()

if roi:
    st.info("Top ANs and peak stimuli are shown for single voxels: click one vertex.")
    st.stop()

voxel = voxels[0]


# ------------------------------------------------------------------------------ top ANs
@st.fragment
def top_ans_view():
    if INTENT in ss:  # a row click reruns only this fragment: act on it in a full run
        st.rerun(scope="app")
    st.subheader("Top artificial neurons")
    keys = mapped_keys(sid)
    if not keys:
        st.info(f"No neuron mapping (atoms + GLM) of {state.kind} ANs under {state.condition!r} for sub-{sid} in the "
                "cache: pick another AN kind / condition, or compute it on the Compute page.")
        return
    n = st.slider("ANs", 5, 50, 10, key="vi_n_ans")
    with S.guard(state) as g:
        table = S.link_table(study, study_id(study), sid, state.kind, state.condition, keys)
        links = insp.voxel_top_ans(study, sid, voxel, state.kind, state.condition, n=n, table=table, atlas=atlas)
    if g.failed:
        return
    df = links.table
    st.caption(f"Link score Σₖ S[n,k]·t[k,v] over significant atoms, {links.n_layers} layers of {state.kind} ANs "
               f"({state.condition}); voxel {voxel} is in **{links.network}**. Click a row to open the AN in the "
               "Neuron inspector.")
    if not np.any(df["score"].to_numpy() != 0):
        st.info("No atom is significantly linked to this voxel (all link scores are 0).")
    shown = df[["model", "branch", "layer", "an", "score", "sign"]].copy()
    shown["sign"] = np.where(shown["sign"] > 0, "+", np.where(shown["sign"] < 0, "−", "0"))
    st.dataframe(shown, key="vi-topans", on_select=lambda: on_top_an(df), selection_mode="single-row",
                 hide_index=True, width="stretch",
                 column_config={"score": st.column_config.NumberColumn(format="%.3f")})
    S.export_buttons(None, f"voxel_{voxel}_top_ans", table=df)


top_ans_view()


# ------------------------------------------------------------------------------ peak stimuli
@st.fragment
def peaks_view():
    st.subheader("What it responds to")
    n = st.slider("Peaks", 3, 12, 6, key="vi_n_peaks")
    with S.guard(state) as g:
        stims = peaks(sk, sid, voxel, n)
    if g.failed:
        return
    st.caption(f"Frames and captions shown {insp.HRF_DELAY_S:g} s (the HRF delay) before the voxel's {len(stims)} "
               "largest responses (z-scored BOLD), strongest first.")
    if not stims:
        st.info("No stimulus precedes this voxel's peaks.")
        return
    per_row = 6
    for i in range(0, len(stims), per_row):
        cols = st.columns(per_row)
        for col, s in zip(cols, stims[i:i + per_row]):
            with col:
                label = f"{s.run} · TR {s.tr} → peak z = {s.value:.2f}"
                if s.frame:
                    with S.guard(state):  # a missing / unreadable frame: a readable error
                        st.image(study.dataset.load_frame(s.frame), width="stretch")
                st.markdown(f"*{s.caption or '(no caption)'}*")
                st.caption(label)


peaks_view()
