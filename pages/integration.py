"""Integration sites: voxels where a VLM layer predicts better than a joint image+text baseline."""

import numpy as np
import streamlit as st

from alignment.conventions import nearest_layer
from alignment.figures import bar_figure, integration_scatter_figure
from alignment.pipeline import LayerKey
import ui as S

state = S.page("Integration sites",
               caption="Voxels where a VLM layer predicts the BOLD significantly better than a joint image+text "
                       "baseline (one banded ridge over an image model's and a text model's features together): "
                       "held-out predictions compared over time blocks (paired one-sided test on Fisher z per "
                       "block, BH-FDR over voxels; group: one-sample t across subjects). Beating each baseline "
                       "separately is not shown as integration: a voxel that only sums an image response and a "
                       "text response does that too.",
               methods_of=('Integration sites', 'Group maps'))
study, avail = S.open_or_stop(state)

sets = [(m, b, k, c) for m in avail.models("integration") for b in avail.branches(m, "integration")
        for k in avail.kinds(m, b, "integration") for c in avail.conditions(m, b, k, "integration")]
if not sets:
    st.info("The cache holds no integration-site results for this dataset. Name the `integration` analysis and "
            "an `[integration]` table (image and text baselines) in a run config, then `python -m alignment run`.")
    st.stop()


@st.fragment
def view():
    default = next((i for i, f in enumerate(sets) if f[:2] == (state.model, state.branch)), 0)
    c1, c2, c3 = st.columns([3, 1, 2])
    model, branch, kind, cond = c1.selectbox("VLM layer set (model · branch · kind · condition)", sets,
                                             index=default, format_func=S.set_label, key="in_set")
    layers = avail.layers(model, branch, kind, cond, "integration", subject=state.subject)
    if not layers:
        st.info("No integration result of this layer set for this subject.")
        return
    lay = c2.selectbox("Layer", layers, index=layers.index(nearest_layer(layers, state.layer)),
                       key="in_layer")
    key = LayerKey(model, branch, lay, kind, cond)
    baselines = avail.baselines(key, state.subject)
    if baselines is None:
        st.info("Not every subject has this integration result: choose a single subject in the sidebar.")
        return
    who = "group" if state.is_group else "sub-" + state.subject
    with S.guard(state) as g:
        d = S.summary("integration_maps", state, state.subject, key, baselines, fdr_q=state.fdr_q,
                      atlas=state.atlas)
    if g.failed:
        return
    # without any site, the difference map is the informative default
    only_sites = c3.toggle("Only integration sites", value=bool((d["sites"] > 0).any()), key="in_only_sites",
                           help="off: the accuracy difference at every voxel")
    with S.guard(state) as g:
        shown = np.where(d["sites"] > 0, d["diff"], np.nan) if only_sites else d["diff"]
        fig = S.brain_figure(shown, state, cmap="RdBu_r", label="Δr",
                             title=f"r(VLM) − r(joint image+text baseline): {model} {branch} L{lay} — {who}")
    if g.failed:
        return
    S.plot(fig, key="in-map")
    S.export_buttons(fig, f"integration_{model}_{branch}_L{lay}",
                     map_values=np.stack([d["diff"], d["sites"].astype(np.float32)]),
                     map_names=["r VLM - r joint baseline", "integration site"])
    compared = {s: f"{b['image'].model} L{b['image'].layer} · {b['text'].model} L{b['text'].layer}"
                for s, b in d["baselines"].items() if "image" in b and "text" in b}
    m1, m2, m3 = st.columns(3)
    m1.metric("integration sites" + (" (group test)" if state.is_group else ""), f"{int((d['sites'] > 0).sum()):,}")
    m2.metric("median Δr where the VLM is significant", _median_gain(d))
    m3.metric("subjects", len(d["baselines"]))
    st.caption("Joint baseline (image · text layers fitted together, best layer per subject unless the run config "
               "fixed one): "
               + "; ".join(f"sub-{s}: {v}" for s, v in compared.items()))
    st.caption("Variance factor λ of the block test (the coupling of leave-one-run-out folds; estimated from the "
               "map's voxels, or the conservative bound 2): "
               + "; ".join(f"sub-{s}: " + ("not recorded" if lam is None else
                                          f"{lam:.2f} ({'estimated' if estimated else 'bound'})")
                           for s, (lam, estimated) in d["inflation"].items()))
    if not (d["sites"] > 0).any():
        st.info("No voxel passes the test at this FDR level. With few time blocks (short runs) even large "
                "accuracy gains rarely survive correction over all voxels; the difference map (toggle off) still "
                "shows where the VLM is ahead of the joint baseline.")
    c1, c2 = st.columns(2)
    with c1:
        S.plot(integration_scatter_figure(d), key="in-scatter")
    per = d["per_network"]
    with c2:
        rows = per[per.level == "network"]
        bfig = bar_figure(rows.fillna(0), x="name", y="mean diff (VLM significant)", x_title="", y_title="mean Δr",
                          title="Mean Δr per network (voxels the VLM predicts significantly)", height=360)
        S.plot(bfig, key="in-networks")
    S.export_buttons(bfig, f"integration_networks_{model}_{branch}_L{lay}", table=per)


def _median_gain(d) -> str:
    sig = d["sig_vlm"]
    return f"{float(np.median(d['diff'][sig])):+.3f}" if sig.any() else "—"


view()
