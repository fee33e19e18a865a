"""Modality: specialization index and variance partition of dual encoders; cross-modal gain and unified BNs
of fusion models."""

import numpy as np
import streamlit as st

from alignment.analyses.modality import MODALITY_LABELS
from alignment.conventions import nearest_layer
from alignment.figures import bar_figure, histogram_figure
import ui as S

state = S.page("Modality", caption="Dual encoders: SI = (r_img − r_txt) / (|r_img| + |r_txt|) per voxel, shown where "
                                   "a test says the branches differ. Fusion models: cross-modal gain = "
                                   "r(image+text) − max(r(image), r(text)), tested > 0; unified BNs: the image+text "
                                   "ANs predict beyond the additive model of the image-only and text-only passes "
                                   "(paired test over time blocks; group: t test across subjects).",
               methods_of=('Modality specialization', 'Group maps'))
study, avail = S.open_or_stop(state)

dual = [m for m in avail.models() if {"image", "text"} <= set(avail.branches(m))]
fusion = [(m, b, k) for m in avail.models() for b in avail.branches(m) for k in avail.kinds(m, b)
          if {"image+text", "image", "text"} <= set(avail.conditions(m, b, k))]
banded = [(m, b, k) for m in avail.models("variance") for b in avail.branches(m, "variance")
          for k in avail.kinds(m, b, "variance")]

tab_names = []
if dual:
    tab_names.append("Dual encoders (SI)")
if banded:
    tab_names.append("Variance partition")
if fusion:
    tab_names.append("Fusion models (cross-modal gain)")
if not tab_names:
    st.info("Nothing to show: the cache holds neither a dual encoder with image and text branches nor a fusion "
            "layer computed under the image+text, image and text conditions.")
    st.stop()
# the sidebar's model first
if fusion and any(f[0] == state.model for f in fusion) and state.model not in dual:
    tab_names = tab_names[::-1]
tabs = dict(zip(tab_names, st.tabs(tab_names)))


@st.fragment
def dual_view():
    c1, c2, c3, c4 = st.columns(4)
    model = c1.selectbox("Dual encoder", dual, index=dual.index(state.model) if state.model in dual else 0,
                         key="mo_dual_model")
    kinds = [k for k in avail.kinds(model, "image") if k in avail.kinds(model, "text")]
    kind = c2.selectbox("AN kind", kinds, index=kinds.index(state.kind) if state.kind in kinds else 0,
                        key="mo_dual_kind")
    li = avail.layers(model, "image", kind, "image+text")
    lt = avail.layers(model, "text", kind, "image+text")
    if not li or not lt:
        st.info("Both branches need image+text encoding results.")
        return
    layer_i = c3.selectbox("Image-branch layer", li, index=li.index(nearest_layer(li, state.layer)), key="mo_li")
    layer_t = c4.selectbox("Text-branch layer", lt, index=lt.index(nearest_layer(lt, state.layer)), key="mo_lt")
    with S.guard(state) as g:
        d = S.summary("dual_modality", state, state.subject, model, layer_i, layer_t, kind=kind,
                      fdr_q=state.fdr_q, atlas=state.atlas)
        si = d["si_tested"] if d["tested"] else d["si"]
        fig = S.brain_figure(si, state, cmap="PuOr", vmin=-1, vmax=1, label="SI",
                             title=f"SI: {model} image L{layer_i} vs text L{layer_t} ({kind}) — "
                                   f"{'group' if state.is_group else 'sub-' + state.subject} — "
                                   f"{'branches differ (tested)' if d['tested'] else 'UNTESTED'}")
    if g.failed:
        return
    if not d["tested"]:
        st.warning("SI untested: no test of image vs text for this choice. A subject's test is the "
                   "`specialization` analysis (same layer for both branches; Compute page or a run config); the "
                   "group test needs no extra computation. Shown: SI wherever either branch is significant.")
    if not np.isfinite(si).any():
        st.info(f"No voxel is significant for either branch at q < {state.fdr_q:g}"
                + (" (group t test across subjects; choose a single subject in the sidebar, or raise the "
                   "threshold)." if state.is_group else "."))
    S.plot(fig, key="mo-si-map")
    S.export_buttons(fig, f"modality_SI_{model}_L{layer_i}_L{layer_t}", map_values=np.stack([d["si"], d["si_tested"]]),
                     map_names=[f"SI image L{layer_i} vs text L{layer_t}", "SI where the branches differ (tested)"])
    test = ("one-sample t across subjects of z(r_image) − z(r_text)" if state.is_group else
            "paired test of the two branches' held-out predictions over time blocks")
    st.caption(f"Voxels significant for either branch (q < {state.fdr_q:g})"
               + (f" where the branches differ ({test}, two-sided, BH q < {state.fdr_q:g})" if d["tested"] else "")
               + "; purple: image, orange: text.")
    c1, c2 = st.columns(2)
    with c1:
        hfig = histogram_figure(d["si"], "SI of significant voxels", "SI (image − text)")
        S.plot(hfig, key="mo-si-hist")
    summ = d["summary"]
    rows = summ[summ.level == "network"]
    long = rows.melt(id_vars=["name"], value_vars=[c for c in MODALITY_LABELS if c not in ("unified", "none")],
                     var_name="label", value_name="voxels")
    with c2:
        bfig = bar_figure(long, x="name", y="voxels", color="label", barmode="stack", x_title="",
                          colors={"image": "#8172b3", "text": "#dd8452", "both": "#8c8c8c"},
                          title="Voxels per modality label and network", height=340)
        S.plot(bfig, key="mo-labels")
    S.export_buttons(bfig, f"modality_labels_{model}", table=summ)


@st.fragment
def variance_view():
    default = next((i for i, f in enumerate(banded) if f[0] == state.model), 0)
    c1, c2, c3 = st.columns([3, 1, 2])
    model, bands, kind = c1.selectbox("Model · bands · kind", banded, index=default, format_func=S.set_label,
                                      key="mo_var_set")
    conds = avail.conditions(model, bands, kind, "variance")
    layers = avail.layers(model, bands, kind, conds[0], "variance", subject=state.subject)
    if not layers:
        st.info("No variance partition of this model for this subject.")
        return
    lay = c2.selectbox("Layer", layers, index=layers.index(nearest_layer(layers, state.layer)),
                       key="mo_var_layer")
    branches = tuple(bands.split("+"))
    parts = [f"unique {b}" for b in branches] + ["shared", "joint R²"]
    part = c3.radio("Map", parts, horizontal=True, key="mo_var_part")
    from alignment.pipeline import BandsKey

    key = BandsKey(model, branches, lay, kind, conds[0])
    with S.guard(state) as g:
        v = S.summary("variance_maps", state, state.subject, key, fdr_q=state.fdr_q, atlas=state.atlas)
        values = {**{f"unique {b}": u for b, u in v["unique"].items()}, "shared": v["shared"], "joint R²": v["r2"]}
        tested = v["unique_q"] is not None and part.startswith("unique ")
        keep = v["predicted"] & (v["unique_q"][part.removeprefix("unique ")] < state.fdr_q) if tested \
            else v["predicted"]
        shown = np.where(keep, values[part], np.nan)
        top = float(np.nanpercentile(np.abs(shown), 99)) if np.isfinite(shown).any() else 1.0
        fig = S.brain_figure(shown, state, cmap="RdBu_r", label="R²", vmin=-top, vmax=top,
                             title=f"{part}: {model} {bands} L{lay} ({kind}) — "
                                   f"{'group mean' if state.is_group else 'sub-' + state.subject}"
                                   + (" — unique > 0 (tested)" if tested else ""))
    if g.failed:
        return
    S.plot(fig, key="mo-var-map")
    S.export_buttons(fig, f"variance_{model}_L{lay}", map_values=np.stack(list(values.values())),
                     map_names=list(values))
    st.caption("Banded ridge with one band per branch (held-out R², leave-one-run-out); unique = R²(joint) − "
               "R²(without that band), shared = R²(joint) − Σ unique. Shown, and averaged per network, where "
               f"some branch's encoding map is significant (q < {state.fdr_q:g})"
               + (f"; unique maps only where the unique variance is > 0 by test (BH q < {state.fdr_q:g}: "
                  + ("one-sample t across subjects of the unique R²" if state.is_group else
                     "joint vs without-that-band held-out predictions, paired over time blocks") + ")."
                  if v["unique_q"] is not None else "; unique variance untested for this subject (the "
                  "`specialization` analysis tests it)."))
    per = v["per_network"]
    rows = per[per.level == "network"].melt(id_vars=["name"], value_vars=[p for p in parts if p != "joint R²"],
                                            var_name="part", value_name="mean R²")
    bfig = bar_figure(rows, x="name", y="mean R²", color="part", barmode="group", x_title="",
                      title="Mean unique and shared variance per network", height=340)
    S.plot(bfig, key="mo-var-bars")
    S.export_buttons(bfig, f"variance_networks_{model}_L{lay}", table=per)


@st.fragment
def fusion_view():
    default = next((i for i, f in enumerate(fusion) if f[:2] == (state.model, state.branch)), 0)
    c1, c2 = st.columns([3, 1])
    choice = c1.selectbox("Fusion layer set (model · branch · kind)", fusion, index=default,
                          format_func=S.set_label, key="mo_fusion")
    model, branch, kind = choice
    layers = sorted(set.intersection(*(set(avail.layers(model, branch, kind, c))
                                       for c in ("image+text", "image", "text"))))
    if not layers:
        st.info("No layer has all three conditions.")
        return
    lay = c2.selectbox("Layer", layers, index=layers.index(nearest_layer(layers, state.layer)),
                       key="mo_fusion_layer")
    from alignment.pipeline import LayerKey

    key = LayerKey(model, branch, lay, kind, "image+text")
    with S.guard(state) as g:
        f = S.summary("fusion_modality", state, state.subject, key, state.fdr_q, atlas=state.atlas)
        gain_tested = bool(np.isfinite(f["q_gain"]).any())
        shown = np.where(f["gain_significant"] if gain_tested else f["sig_any"], f["gain"], np.nan)
        fig = S.brain_figure(shown, state, cmap="RdBu_r", label="gain",
                             title=f"Cross-modal gain: {model} {branch} L{lay} ({kind}) — "
                                   f"{'group' if state.is_group else 'sub-' + state.subject} — "
                                   f"{'gain > 0 (tested)' if gain_tested else 'UNTESTED'}")
    if g.failed:
        return
    st.caption((f"Voxels where gain > 0 by test (BH q < {state.fdr_q:g}; "
                + ("one-sample t across subjects of z(r_both) − max(z(r_image), z(r_text)))" if state.is_group else
                   "image+text beats each single condition, paired over time blocks)") if gain_tested else
                "Gain where any condition's map is significant; untested for this subject (the `crossmodal` "
                "analysis tests it).")
               + " Gain > 0 holds for additive voxels too (both modalities predict more than one): it is not "
                 "evidence of integration. Unified BNs are evidence that the layer's image+text pass carries "
                 "what its single passes do not; that the brain integrates is tested against unimodal "
                 "baselines (Integration sites page).")
    if not f["tested"]:
        st.warning("Unified BNs untested: the `crossmodal` analysis (Compute page or a run config) compares the "
                   "image+text ANs with the additive model of the image-only and text-only passes. None are shown.")
    S.plot(fig, key="mo-gain-map")
    S.export_buttons(fig, f"modality_gain_{model}_{branch}_L{lay}",
                     map_values=np.stack([shown, f["unified"].astype(np.float32)]),
                     map_names=["cross-modal gain", "unified BNs"])
    m1, m2, m3 = st.columns(3)
    m1.metric("significant with image+text", f"{f['n_significant_both']:,}")
    m2.metric("unified BNs (tested)", f"{f['n_unified']:,}" if f["tested"] else "untested",
              help="the image+text ANs predict held-out BOLD beyond the additive model (BH q < FDR) where the "
                   "image+text map is significant")
    m3.metric("unified share", "—" if not np.isfinite(f["share"]) else f"{100 * f['share']:.1f} %")
    per = f["per_network"]
    c1, c2 = st.columns(2)
    with c1:
        rows = per[(per.level == "network") & (per.n_significant_both > 0)]
        if rows.empty:
            st.info("No voxel is significant under image+text at this threshold.")
        else:
            sfig = bar_figure(rows.fillna(0), x="name", y="share", x_title="", y_title="unified / significant",
                              title="Unified share per network", height=340)
            S.plot(sfig, key="mo-unified")
            S.export_buttons(sfig, f"modality_unified_{model}_{branch}_L{lay}", table=per)
    with c2:
        gfig = histogram_figure(shown, "Cross-modal gain of significant voxels", "gain", value_range=None)
        S.plot(gfig, key="mo-gain-hist")


if "Dual encoders (SI)" in tabs:
    with tabs["Dual encoders (SI)"]:
        dual_view()
if "Variance partition" in tabs:
    with tabs["Variance partition"]:
        variance_view()
if "Fusion models (cross-modal gain)" in tabs:
    with tabs["Fusion models (cross-modal gain)"]:
        fusion_view()
