"""Layers: mean encoding r per network across layers, every model overlaid, CI across subjects."""

import numpy as np
import pandas as pd
import streamlit as st

from alignment.conventions import subjects_of
from alignment.figures import layer_curve_figure
import ui as S

state = S.page("Layers", caption="Mean encoding r per network at every layer the cache holds; one curve per "
                                 "model branch and AN kind; band: 95 % CI across subjects.",
               methods_of=('Encoding maps', 'Group maps', 'Networks'))
study, avail = S.open_or_stop(state)

series_all = avail.series("encoding", condition=state.condition)
if not series_all:
    st.info(f"No encoding results under the condition {state.condition!r}.")
    st.stop()

c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
chosen = c1.multiselect("Curves (model · branch · AN kind)", series_all, default=series_all,
                        format_func=S.set_label, key="ly_series")
level = c2.radio("Networks", ("groups", "all networks"), key="ly_level",
                 help="groups: the paper's vision / language / attention / default mode (+ other)")
y = c3.radio("Value", ("mean r", "fraction significant"), key="ly_value")
x = c4.radio("x axis", ("layer", "relative depth"), key="ly_x",
             help="relative depth: layer / last layer in the cache, to compare models of different depth")
band = c4.radio("CI", ("t", "bootstrap"), key="ly_ci", horizontal=True)

if not chosen:
    st.info("Choose at least one curve.")
    st.stop()


@st.fragment
def curves():
    with S.guard(state) as g:
        df = S.summary("layer_curves", state, tuple(chosen), atlas=state.atlas, with_avail=True,
                       subjects=tuple(subjects_of(study, state.subject)), condition=state.condition, fdr_q=state.fdr_q,
                       level="group" if level == "groups" else "network")
    if g.failed:
        return
    ycol = "mean_r" if y == "mean r" else "frac_significant"
    xcol = "layer" if x == "layer" else "depth"
    n_subj = df.subject.nunique()
    data, error = df, "ci"
    if band == "bootstrap" and n_subj > 1:
        from alignment.stats import bootstrap_ci

        rows = []
        for keys, part in df.groupby(["network", "series", xcol], sort=False):
            vals = part[ycol].to_numpy(float)
            lo, hi = bootstrap_ci(vals, n_boot=2000) if np.isfinite(vals).all() else (np.nan, np.nan)
            rows.append(dict(zip(["network", "series", xcol], keys), **{ycol: np.nanmean(vals), "lo": lo, "hi": hi}))
        data, error = pd.DataFrame(rows), ("lo", "hi")
    fig = layer_curve_figure(data, x=xcol, y=ycol, color="series", facet="network", error=error,
                             title=f"{y} per layer — {state.condition} — "
                                   f"{'group, ' + str(n_subj) + ' subjects' if state.is_group else 'sub-' + state.subject}",
                             x_title=xcol, y_title=y, facet_wrap=3 if level == "groups" else 4)
    S.plot(fig, key="ly-curves")
    if n_subj < 2:
        st.caption("One subject: no confidence band (choose the group in the sidebar).")
    S.export_buttons(fig, f"layers_{y.replace(' ', '_')}", table=df)


curves()
