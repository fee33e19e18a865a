"""Neuron inspector: where in the brain does this model neuron map, and what drives it?

Pick an AN (model, branch, layer and kind in the sidebar, the AN index here); see its time
course, the frames and captions of its largest activations, its atom loadings and polarity, its
brain map (surface and flat map), its top voxels (a click on a row opens the voxel in the Voxel
inspector) and their networks. The library side is :func:`alignment.inspector.an_profile`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from alignment import inspector as insp
from alignment.conventions import subjects_of
from alignment.figures import CAMERAS, bar_figure, flat_map_figure
from alignment.summaries import study_id
import ui as S

VOXEL_PAGE = "pages/voxel_inspector.py"
INTENT = "_ni_intent"  # what a widget callback asked for: {"view": {...}, "goto": page or None}
ss = st.session_state

state = S.page("Neuron inspector",
               caption="One artificial neuron: its time course, what drives it, its atoms and where it maps in "
                       "the brain. Model, branch, layer, AN kind and condition come from the sidebar.",
               methods_of=('Neuron-level mapping', 'Polarity', 'Group maps'))
state = S.apply_intent(state, INTENT)
study, avail = S.open_or_stop(state)
key = state.layer_key()
atlas = S.get_atlas(state)
sk = S.study_key(state)


def on_an() -> None:
    if ss.get("ni_an") is not None:
        ss[INTENT] = {"view": {"an": int(ss["ni_an"])}}


def on_top_voxel(table: pd.DataFrame) -> None:
    event = ss.get("ni-topvox")
    rows = getattr(getattr(event, "selection", None), "rows", None) or []
    if rows:
        ss[INTENT] = {"view": {"voxel": int(table.iloc[int(rows[0])]["voxel"])}, "goto": VOXEL_PAGE}


# ------------------------------------------------------------------------------ which AN
with S.guard(state) as g:
    n_ans = int(study.raw_ans(key).shape[1])
if g.failed:
    st.stop()
an = int(state.an) if state.an is not None and 0 <= int(state.an) < n_ans else 0
if state.an is not None and int(state.an) >= n_ans:
    st.warning(f"AN {state.an} does not exist in {key.label()} ({n_ans} ANs); showing AN 0.")
ss["ni_an"] = an
c1, c2 = st.columns([1, 3])
c1.number_input(f"AN (0 … {n_ans - 1})", min_value=0, max_value=n_ans - 1, step=1, key="ni_an", on_change=on_an)
c2.markdown(f"#### AN {an} · {S.describe(state, key)}")

subjects = subjects_of(study, state.subject)
mapped = all(avail.has(key, stage="glm", subject=s) for s in subjects)

with S.guard(state) as g:
    tables = None
    if mapped:
        tables = {s: S.link_table(study, study_id(study), s, key.kind, key.condition,
                                tuple(avail.keys(stage="glm", subject=s, kind=key.kind, condition=key.condition)))
                  for s in subjects}
    prof = insp.an_profile(study, key, an, state.subject if mapped else None, tables=tables, atlas=atlas,
                           n_stimuli=6, n_voxels=20, atoms=mapped)
if g.failed:
    st.stop()
if not mapped:
    whom = "every subject" if state.is_group else "sub-" + state.subject
    st.info(f"No neuron mapping (atoms + GLM) of {key.label()} for {whom} in the cache: the time course and "
            "top stimuli are shown; its atoms and brain map need the neuron mapping (Compute page, or "
            "`python -m alignment run`).")

who = "group (mean over subjects)" if state.is_group else f"sub-{state.subject}"
if mapped:
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Polarity", {1: "positive", -1: "negative", 0: "none"}[prof.polarity],
              help="sign of the AN's largest atom code")
    m2.metric("Dominant atom", str(prof.dominant_atom) if prof.dominant_atom >= 0 else "—")
    n_linked = int(np.count_nonzero(prof.brain_map))
    m3.metric("Linked voxels", f"{n_linked:,}", help=f"non-zero link score ({who})")
    top_nets = prof.top_voxels["network"].value_counts()
    m4.metric("Top network", top_nets.index[0] if len(top_nets) else "—",
              help=f"most frequent network among the AN's {len(prof.top_voxels)} strongest voxels")


# ------------------------------------------------------------------------------ time course
@st.fragment
def timecourse_view():
    st.subheader("Activation over the experiment")
    run = st.radio("Show", ["all runs"] + [r for r, _, _ in prof.runs], horizontal=True, key="ni_run")
    fig = insp.timecourse_by_run_figure(prof.timecourse, None, prof.segments, prof.runs, prof.tr,
                                        None if run == "all runs" else run,
                                        title=f"AN {an} — {key.label()} — {run}", labels=("activation", ""),
                                        y_title="activation (z, within run)", height=300)
    S.plot(fig, key="ni-timecourse", state=state)
    t = np.arange(len(prof.timecourse))
    S.export_buttons(fig, f"an_{an}_timecourse",
                     table=pd.DataFrame({"tr": t, "time_s": t * prof.tr, "activation": prof.timecourse}))


timecourse_view()

st.subheader("Largest activations")
st.caption("Distinct frames and captions at the TRs of the AN's largest activations (no HRF delay: the model "
           "sees the stimulus itself).")
cols = st.columns(max(len(prof.top_stimuli), 1))
for col, s in zip(cols, prof.top_stimuli):
    with col:
        if s.frame:
            with S.guard(state):  # a missing / unreadable frame: a readable error in its cell
                st.image(study.dataset.load_frame(s.frame), width="stretch")
        st.markdown(f"*{s.caption or '(no caption)'}*")
        st.caption(f"{s.run} · TR {s.tr} · z = {s.value:.2f}")

if not mapped:
    st.stop()


# ------------------------------------------------------------------------------ atoms
@st.fragment
def atoms_view():
    st.subheader("Atom loadings")
    codes = prof.codes
    df = pd.DataFrame({"atom": np.arange(len(codes)), "code": codes,
                       "sign": np.where(codes > 0, "positive", np.where(codes < 0, "negative", "zero"))})
    only = st.toggle("non-zero codes only", value=True, key="ni_nonzero")
    shown = df[df.code != 0] if only and (df.code != 0).any() else df
    fig = bar_figure(shown.assign(atom=shown.atom.astype(str)), x="atom", y="code", color="sign",
                     colors={"positive": "#c44e52", "negative": "#4c72b0", "zero": "#8c8c8c"},
                     title=f"Sparse codes of AN {an} (dominant atom {prof.dominant_atom})", x_title="atom",
                     y_title="code", height=320)
    fig.update_xaxes(type="category")
    S.plot(fig, key="ni-codes", state=state)
    st.caption("Aᵀ ≈ S·D: the AN's row of the sparse codes S over the layer's temporal atoms D. The polarity is "
               "the sign of the dominant code.")
    S.export_buttons(fig, f"an_{an}_codes", table=df)


atoms_view()


# ------------------------------------------------------------------------------ brain map
@st.fragment
def brain_view():
    st.subheader(f"Brain map — {who}")
    values = np.where(prof.brain_map != 0, prof.brain_map, np.nan)
    c1, c2 = st.columns([4, 1])
    view = c2.radio("View", ("surface", "flat map"), key="ni_view")
    camera = c2.selectbox("View from", CAMERAS,
                          key="ni_camera", disabled=view != "surface")
    title, label = f"AN {an} link score — {S.describe(state, key)}", "link score"
    tested = state.is_group and len(subjects) > 1 and c2.toggle(
        "group test", value=True, key="ni_group_test",
        help="one-sample t across subjects of the AN's coupling Σₖ S[n,k]·t[k,v] (unmasked), BH-FDR")
    with S.guard(state) as g:
        if tested:
            grp = S.summary("an_group_map", state, key, an, tuple(subjects), state.fdr_q)
            values = np.where(grp["significant"], grp["t"], np.nan)
            title, label = f"AN {an} coupling, group t (q < {state.fdr_q:g}) — {S.describe(state, key)}", "group t"
        if view == "surface":
            fig = S.brain_figure(values, state, title=title, label=label, camera=camera)
        else:
            fig = flat_map_figure(values, title=title, networks=atlas, outlines=atlas.labels,
                                  colorbar_title=label, value_label=label, height=460)
    if g.failed:
        return
    with c1:
        S.plot(fig, key="ni-brain", state=state)
    c2.caption(f"Group test: per subject the coupling Σₖ S[n,k]·t[k,v] over all atoms, one-sample t across the "
               f"{len(subjects)} subjects (two-sided), shown where BH q < {state.fdr_q:g}; blind to atom signs."
               if tested else
               "Σₖ S[n,k]·t[k,v] over atoms significant at the voxel (GLM q < FDR); blank: not linked.")
    with c2:
        S.export_buttons(fig, f"an_{an}_brain_map", table=prof.top_voxels,
                         map_values=np.nan_to_num(values) if tested else prof.brain_map,
                         map_names=[f"AN {an} {key.label()} {who}" + (" group t (significant)" if tested else "")])


brain_view()


# ------------------------------------------------------------------------------ top voxels
st.subheader("Top voxels and networks")
c1, c2 = st.columns([2, 3])
with c1:
    tv = prof.top_voxels
    st.caption("Click a row to open the voxel in the Voxel inspector.")
    st.dataframe(tv, key="ni-topvox", on_select=lambda: on_top_voxel(tv), selection_mode="single-row",
                 hide_index=True, width="stretch", height=360,
                 column_config={"score": st.column_config.NumberColumn(format="%.3f")})
with c2:
    n_top = st.select_slider("Count over the strongest", ["20", "100", "500", "all"], value="100",
                             key="ni_count_top",
                             format_func=lambda v: f"{v} voxels" if v != "all" else "all linked voxels")
    counts = insp.network_counts(prof.brain_map, atlas, top=None if n_top == "all" else int(n_top))
    long = counts.melt(id_vars="network", value_vars=["positive", "negative"], var_name="sign",
                       value_name="voxels")
    fig = bar_figure(long, x="network", y="voxels", color="sign", barmode="stack",
                     colors={"positive": "#c44e52", "negative": "#4c72b0"},
                     title=f"Linked voxels per network — {'all linked' if n_top == 'all' else 'strongest ' + n_top}"
                           f" ({who})", x_title="", y_title="voxels", height=360)
    S.plot(fig, key="ni-networks", state=state)
    S.export_buttons(fig, f"an_{an}_networks", table=counts)
