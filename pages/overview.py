"""Overview: the chosen metric on the fs_LR 32k surface, with a per-network summary."""

import numpy as np
import streamlit as st

from alignment.figures import CAMERAS, bar_figure
import ui as S

state = S.page("Overview", caption="Encoding accuracy of one model layer on the cortex, and per network.",
               methods_of=('Encoding maps', 'Noise ceiling', 'Group maps', 'Networks'))
study, avail = S.open_or_stop(state)
key = state.layer_key()


@st.fragment
def surface_view():
    c1, c2 = st.columns([4, 1])
    camera = c2.selectbox("View from", CAMERAS,
                          key="ov_camera")
    with S.guard(state) as g:
        m = S.summary("metric_map", state, state.subject, key, state.metric, state.fdr_q, with_avail=True)
        fig = S.brain_figure(m.values, state, cmap=m.cmap, symmetric=m.symmetric, vmin=m.vmin, vmax=m.vmax,
                             label=m.label, camera=camera,
                             title=f"{state.metric} — {S.describe(state)}")
    with S.guard(state):  # notes about the data: shown even without a map
        for note in S.summary("encoding_notes", state, state.subject, key):
            c2.warning(note)
    if g.failed:
        return
    with c1:
        S.plot(fig, key="ov-surface")
    if m.note:
        c2.caption(m.note)
    if state.is_group and m.significant is not None and not np.asarray(m.significant).any():
        c2.caption(f"Nothing reaches q < {state.fdr_q:g} in the group t test across "
                   f"{len(study.dataset.subjects)} subjects ({len(study.dataset.subjects) - 1} dof); "
                   "single subjects are in the sidebar.")
    shown = np.isfinite(m.values)
    c2.metric("voxels shown", f"{int(shown.sum()):,}")
    if m.significant is not None:
        c2.metric(f"significant (q < {state.fdr_q:g})", f"{int(np.asarray(m.significant).sum()):,}")
    if state.metric == "r / ceiling":
        ratio = np.asarray(m.values)[np.asarray(m.significant) & shown]
        c2.metric("median r / ceiling (significant)", f"{np.median(ratio):.2f}" if ratio.size else "—")
    with c2:
        S.export_buttons(fig, f"overview_{state.metric}_{state.model}_{state.branch}_L{state.layer}",
                         map_values=m.values, map_names=[f"{state.metric} {S.describe(state)}"])


surface_view()

st.subheader("Networks")
with S.guard(state) as g:
    table = S.summary("network_table", state, state.subject, key, state.metric, state.fdr_q, atlas=state.atlas,
                      with_avail=True)
if not g.failed:
    c1, c2 = st.columns([3, 2])
    with c2:
        level = st.radio("Rows", ("networks", "network groups"), horizontal=True, key="ov_level")
        options = ["mean_r", "frac_significant", "mean_r_significant",
                   *[c for c in table.columns if c.startswith("mean ")]]
        ycol = st.selectbox("Bar height", options, key="ov_bar",
                            format_func=lambda c: {"mean_r": "mean r", "frac_significant": "fraction significant",
                                                   "mean_r_significant": "mean r of significant voxels"}.get(c, c))
    rows = table[table.level == ("network" if level == "networks" else "group")]
    label = ycol.replace("_", " ").replace("frac", "fraction")
    fig = bar_figure(rows, x="name", y=ycol, title=f"{label} per {'network' if level == 'networks' else 'group'}",
                     x_title="", y_title=label, height=380)
    with c1:
        S.plot(fig, key="ov-bars")
    with c2:
        st.dataframe(rows.drop(columns=["level", "id", "color"], errors="ignore"), hide_index=True,
                     width="stretch", height=300)
        S.export_buttons(fig, f"overview_networks_{state.model}_{state.branch}_L{state.layer}", table=rows)
