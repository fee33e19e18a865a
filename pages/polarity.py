"""Polarity: positive vs negative BNs per layer and network; the mirrored-trend index."""

import pandas as pd
import streamlit as st

from alignment.conventions import subjects_of
from alignment.figures import bar_figure, layer_curve_figure
import ui as S

state = S.page("Polarity", caption="A BN (voxel) is positive (negative) for an atom when its GLM t is significantly "
                                   "> 0 (< 0). Mirrored trend: correlation across layers between the positive and "
                                   "the negative curve (negative r = mirrored), 95 % BCa bootstrap CI over layers.")
study, avail = S.open_or_stop(state)

layers = avail.layers(state.model, state.branch, state.kind, state.condition, stage="glm")
if not layers:
    mapped = sorted({f"{k.model} · {k.branch} · {k.kind} · {k.condition}" for k in avail.keys("glm")})
    st.info(f"No neuron-level mapping (GLM) results for {state.model} · {state.branch} · {state.kind} · "
            f"{state.condition}. Mapped in this cache: " + ("; ".join(mapped) or "nothing") + ".")
    st.stop()

c1, c2, c3 = st.columns(3)
unit = c1.radio("Count", ("BNs (voxels)", "links (atom, voxel)"), key="po_unit")
norm = c2.toggle("Fraction of the network's voxels", key="po_norm")
level = c3.radio("Networks", ("groups", "all networks"), key="po_level")
lvl = "group" if level == "groups" else "network"


@st.fragment
def view():
    with S.guard(state) as g:
        curves, trends = S.summary("polarity_tables", state, state.model, state.branch, state.kind, tuple(layers),
                                   atlas=state.atlas, subjects=tuple(subjects_of(study, state.subject)),
                                   condition=state.condition, fdr_q=state.fdr_q,
                                   unit="bn" if unit.startswith("BN") else "links", normalize=norm)
    if g.failed:
        return
    sel = curves[curves.level == lvl]
    long = pd.concat([sel.assign(polarity="positive", value=sel.positive),
                      sel.assign(polarity="negative", value=sel.negative)], ignore_index=True)
    ylab = ("fraction of voxels" if norm else ("BNs" if unit.startswith("BN") else "links"))
    fig = layer_curve_figure(long, x="layer", y="value", color="polarity", facet="name", error="ci",
                             colors={"positive": "#c44e52", "negative": "#4c72b0"},
                             title=f"Positive and negative BNs per layer — {S.describe(state, layer=False)}",
                             y_title=ylab, facet_wrap=3 if lvl == "group" else 4)
    S.plot(fig, key="po-curves")
    S.export_buttons(fig, f"polarity_{state.model}_{state.branch}", table=curves)

    st.subheader("Mirrored trend")
    if trends is None:
        st.info(f"The mirrored-trend index needs at least 4 mapped layers; this branch has {len(layers)} "
                f"({', '.join(map(str, layers))}).")
        return
    t = trends[trends.level == lvl].copy()
    if t.empty:
        st.info("No network has BNs that vary across layers.")
        return
    c1, c2 = st.columns([3, 2])
    tfig = bar_figure(t, x="name", y="r", error=("ci_low", "ci_high"), x_title="", y_title="r (positive vs negative)",
                      title="Mirrored-trend index (95 % CI)", height=360)
    with c1:
        S.plot(tfig, key="po-trend")
    with c2:
        st.dataframe(t.drop(columns=["level"]).round(3), hide_index=True, width="stretch")
        S.export_buttons(tfig, f"polarity_trend_{state.model}_{state.branch}", table=t)
    st.caption(f"Layers {', '.join(map(str, layers))}; curves averaged over "
               f"{curves.subject.nunique()} subject(s) before the correlation. Adjacent layers are not independent: "
               "read the interval as descriptive.")


view()
