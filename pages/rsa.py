"""Concept RSA: ρ per layer and network for every cached model, RDMs side by side, model differences."""

import numpy as np
import streamlit as st

from alignment.analyses.rsa import square
from alignment.data.pereira import CONCEPT
from alignment.demo import CONCEPT_DEMO
from alignment.figures import heatmap_figure
from alignment.rsa_summary import (brain_rdms, cached_rsa, category_order, concept_categories, difference_table,
                                   is_simulated, layer_table, model_label, model_rdms, rsa_layer_figure)
import ui as S

state = S.page("Concept RSA", caption="Spearman ρ between each model layer's RDM and each network's group RDM "
                                      "over the concepts; band: 95 % concept-bootstrap CI; grey: noise ceiling.",
               methods_of=("Concept RSA",))
with S.guard(state) as g:
    study = S.get_study(state)
if g.failed:
    st.stop()
if getattr(study.dataset, "sample_unit", None) != CONCEPT:
    st.info("Concept RSA needs a concept-wise dataset (e.g. Pereira 2018, dataset kind `pereira2018`); "
            "this dataset's samples are time points. Choose a concept dataset in the sidebar, or open the "
            f"simulated one that comes with the demo (`{CONCEPT_DEMO}`).")
    st.button("Open the simulated concept demo", on_click=S.set_view, kwargs={"dataset": CONCEPT_DEMO})
    st.stop()
if is_simulated(study.dataset):
    st.info("**Simulated data.** These RDMs come from a simulated Pereira-like experiment with planted "
            "structure — not real brain data.", icon=":material/science:")

with S.guard(state) as g:
    results, compares = cached_rsa(study)
if g.failed:
    st.stop()
if not results:
    st.info("The cache holds no concept-RSA results for this dataset. Compute them with an `[rsa]` table in a "
            "run config: `python -m alignment run CONFIG.toml` (see the README).")
    st.stop()

c1, c2, c3 = st.columns([1, 1, 2])
paradigms = list(dict.fromkeys(k.paradigm for k, _ in results))
paradigm = c1.radio("Paradigm", paradigms, key="rsa_paradigm", horizontal=True)
ablations = list(dict.fromkeys(k.ablation for k, _ in results if k.paradigm == paradigm))
ablation = c2.radio("Image ablation", ablations, key="rsa_ablation", horizontal=True,
                    help="noise: every image replaced by a noise image (models that read images)")
shown = [(k, e) for k, e in results if k.paradigm == paradigm and k.ablation == ablation]
table = layer_table(shown)
networks = list(dict.fromkeys(table["network"]))
chosen = c3.multiselect("Networks", networks, default=networks[:4], key="rsa_networks")

for network in chosen:
    S.plot(rsa_layer_figure(table, network, f"{network} · {paradigm} · {ablation}"), key=f"rsa-curve-{network}")
st.caption("Open circle: best layer in sample (optimistic); diamond: layer chosen most often out of sample. "
           "The noise ceiling bounds the mean per-participant ρ (column rho_subjects_mean), not the group ρ. "
           "q: FDR over one model's layers × networks; q_all: over every model, layer and network shown "
           "(the one to use for a claim across models).")
st.dataframe(table, hide_index=True, width="stretch")


@st.fragment
def rdms():
    st.subheader("RDMs")
    labels = {model_label(k): (k, e) for k, e in shown}
    d1, d2, d3 = st.columns(3)
    network = d1.selectbox("Network", networks, key="rsa_rdm_network")
    name = d2.selectbox("Model", list(labels), key="rsa_rdm_model")
    key, entry = labels[name]
    names = entry.meta["layer_names"]
    layer = d3.selectbox("Layer", range(len(names)), format_func=lambda i: names[i], key="rsa_rdm_layer",
                         index=int(entry["best_held_out"][entry.meta["networks"].index(network)]))
    concepts = list(study.dataset.concepts)
    categories = concept_categories(study.dataset)
    order = category_order(concepts, categories)
    with S.guard(state) as g:
        brain = square(brain_rdms(study, key, network).mean(axis=0))[np.ix_(order, order)]
        model = square(model_rdms(study, key)[layer])[np.ix_(order, order)]
    if g.failed:
        return
    ordered = [concepts[i] for i in order]
    left, right = st.columns(2)
    with left:
        S.plot(heatmap_figure(brain, ordered, ordered, cmap="viridis", symmetric=False, decimals=3,
                              title=f"brain: {network} (group)", colorbar_title="dissimilarity"), key="rsa-rdm-brain")
    with right:
        S.plot(heatmap_figure(model, ordered, ordered, cmap="viridis", symmetric=False, decimals=3,
                              title=f"model: {name} {names[layer]}", colorbar_title="dissimilarity"),
               key="rsa-rdm-model")
    st.caption("Concepts ordered by category, then word" if categories is not None else
               "Concepts in alphabetical order (the dataset lists no categories)")


rdms()

st.subheader("Model × model")
diffs = [difference_table(k, e) for k, e in compares
         if k.results[0].paradigm == paradigm and k.results[0].ablation == ablation]
if diffs:
    import pandas as pd

    st.dataframe(pd.concat(diffs, ignore_index=True), hide_index=True, width="stretch")
    st.caption("Δρ = ρ(A) − ρ(B) against the same group RDM, each model at its layer chosen out of sample; "
               "paired concept bootstrap; q: BH-FDR over all pairs × networks.")
else:
    st.info("No model comparison cached for this paradigm and ablation (it needs two or more models in `[rsa]`).")
