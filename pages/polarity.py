"""Polarity: positive, negative and mixed BNs per layer and network; the mirrored-trend index."""

import numpy as np
import pandas as pd
import streamlit as st

from alignment.conventions import GROUP, subjects_of
from alignment.figures import bar_figure, layer_curve_figure
import ui as S

state = S.page("Polarity", caption="A BN (voxel) is positive (negative) when it rises (falls) with the ANs that drive "
                                   "it: the sign of its AN→BN couplings (codes × t over significant atoms), each "
                                   "weighted by its strength — blind to the arbitrary sign and order of the atoms. "
                                   "Mixed: its positive and negative couplings nearly cancel (neither sign carries "
                                   "three quarters of the squared coupling), so it has no polarity. "
                                   "Mirrored trend: correlation across layers of the balance P / (P + N) (mixed BNs "
                                   "in neither) with the layer index, tested against random atom-sign flips that "
                                   "keep every layer's total.",
               methods_of=('Neuron-level mapping', 'Polarity'))
study, avail = S.open_or_stop(state)
subjects = tuple(subjects_of(study, state.subject))

layers = avail.layers(state.model, state.branch, state.kind, state.condition, stage="glm")
if not layers:
    mapped = sorted({f"{k.model} · {k.branch} · {k.kind} · {k.condition}" for k in avail.keys("glm")})
    st.info(f"No neuron-level mapping (GLM) results for {state.model} · {state.branch} · {state.kind} · "
            f"{state.condition}. Mapped in this cache: " + ("; ".join(mapped) or "nothing") + ".")
    st.stop()

c2, c3 = st.columns(2)
norm = c2.toggle("Fraction of the network's voxels", key="po_norm")
level = c3.radio("Networks", ("groups", "all networks"), key="po_level")
lvl = "group" if level == "groups" else "network"


@st.fragment
def view():
    with S.guard(state) as g:
        curves, trends = S.summary("polarity_tables", state, state.model, state.branch, state.kind, tuple(layers),
                                   atlas=state.atlas, subjects=subjects,
                                   condition=state.condition, fdr_q=state.fdr_q, normalize=norm)
    if g.failed:
        return
    sel = curves[curves.level == lvl]
    long = pd.concat([sel.assign(polarity=name, value=sel[name]) for name in ("positive", "negative", "mixed")],
                     ignore_index=True)
    ylab = "fraction of voxels" if norm else "BNs"
    fig = layer_curve_figure(long, x="layer", y="value", color="polarity", facet="name", error="ci",
                             colors={"positive": "#c44e52", "negative": "#4c72b0", "mixed": "#8c8c8c"},
                             title=f"Positive, negative and mixed BNs per layer — {S.describe(state, layer=False)}",
                             y_title=ylab, facet_wrap=3 if lvl == "group" else 4)
    S.plot(fig, key="po-curves")
    S.export_buttons(fig, f"polarity_{state.model}_{state.branch}", table=curves)

    st.subheader("Mirrored trend")
    if trends is None:
        st.info(f"The mirrored-trend index needs at least 4 mapped layers; this branch has {len(layers)} "
                f"({', '.join(map(str, layers))}).")
        return
    who = GROUP if len(subjects) > 1 else subjects[0]
    t = trends[(trends.level == lvl) & (trends.subject == who)].copy()
    t = t[np.isfinite(t.r)]
    if t.empty:
        st.info("No network has BNs in enough layers for a trend.")
        return
    c1, c2 = st.columns([3, 2])
    tfig = bar_figure(t, x="name", y="r", error=("ci_low", "ci_high"), x_title="", y_title="r (balance vs layer)",
                      title="Mirrored trend: balance P / (P + N) vs depth (95 % CI)", height=360)
    with c1:
        S.plot(tfig, key="po-trend")
    with c2:
        st.dataframe(t.drop(columns=["level"]).round(3), hide_index=True, width="stretch")
        S.export_buttons(tfig, f"polarity_trend_{state.model}_{state.branch}", table=trends)
    if who == GROUP:
        how = (f"group: one-sample t test across {len(subjects)} subjects of each subject's Fisher-z r "
               "(the interval is the t interval; the per-subject rows are in the exported table)")
    else:
        how = ("p: random atom-sign flips that keep each layer's total; interval: bootstrap over atoms within "
               "each layer")
    st.caption(f"Layers {', '.join(map(str, layers))}. r > 0: positive BNs gain on negative ones with depth; "
               f"{how}. In-sample (the dictionary and the GLM use every run); adjacent layers are not "
               "independent: read the interval as descriptive.")


@st.fragment
def stability_view():
    st.subheader("Stability across dictionary seeds")
    with S.guard(state) as g:
        stab = S.summary("polarity_stability", state, state.model, state.branch, state.kind, tuple(layers),
                         subjects=tuple(subjects), condition=state.condition, fdr_q=state.fdr_q)
    if g.failed:
        return
    if stab is None:
        st.info("Only one dictionary seed is cached for each of these layers. To measure how stable the polarities "
                "are, compute the neuron mapping again with other seeds (a run config with `[options] seed = 1`, then "
                "`seed = 2`, same layers); this page then reports how often the seeds agree on a BN's polarity.")
        return
    if not stab["dictionaries_differ"]:
        st.warning("These seeds gave the same dictionary (a deterministic initialisation), so their agreement "
                   "says nothing about stability.")
    c1, c2 = st.columns(2)
    c1.metric("Signed BNs that no seed contradicts", f"{stab['share']:.1%}",
              help=f"Seeds {', '.join(map(str, stab['seeds']))}: among the {stab['n']} (voxel, layer, subject) BNs "
                   "found under every seed and signed under at least one, the share that no seed gives the "
                   "opposite sign (a seed that calls one mixed withholds a sign).")
    c2.metric("BNs with one sign under every seed", f"{stab['signed']:.1%}",
              help=f"Among the {stab['n_bns']} BNs found under every seed, the share that every seed calls positive, "
                   "or every seed negative; the rest are mixed under some seed.")
    st.dataframe(stab["table"].round(3), hide_index=True, width="stretch")
    compared = ", ".join(map(str, sorted(set(stab["table"].layer))))
    st.caption(f"Layers mapped under every one of these seeds: {compared}.")

view()
stability_view()
