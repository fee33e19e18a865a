"""Concept-RSA results as tables, RDMs and figures, read from the cache (never computed here):
what ``python -m alignment export-rsa`` writes and the RSA page shows.

Shapes: C concepts, P = C (C − 1) / 2 pairs, L layers, S participants, N networks.
"""

from __future__ import annotations

import os
import re
from itertools import combinations
from typing import Sequence

import numpy as np

from alignment.keys import BrainRDMKey, ModelRDMKey, RSACompareKey, RSAKey, RSAPlan, short_spec
from alignment.stats import fdr_bh

__all__ = ["DIFFERENCE_COLUMNS", "LAYER_COLUMNS", "brain_rdms", "cached_rsa", "category_order", "concept_categories",
           "difference_table", "export_rsa", "is_simulated", "layer_table", "model_rdms", "plan_results", "rsa_layer_figure"]

#: the columns of :func:`layer_table` (the CSV export), in order
LAYER_COLUMNS = ("model", "branch", "layer", "layer_name", "network", "paradigm", "ablation", "rho", "ci_low",
                 "ci_high", "ci_participants_low", "ci_participants_high", "p", "q", "q_all", "ceiling_low",
                 "ceiling_high", "rho_subjects_mean", "partial_rho", "best_in_sample", "best_held_out")
#: the columns of :func:`difference_table`
DIFFERENCE_COLUMNS = ("model_a", "model_b", "layer_a", "layer_b", "network", "paradigm", "ablation", "delta_rho",
                      "ci_low", "ci_high", "p", "q")


def plan_results(study, plan: RSAPlan, subjects: Sequence[str] = ()) -> tuple[list, list]:
    """The cached ``rsa`` and ``rsa_compare`` entries of a config's ``[rsa]``:
    ([(RSAKey, Entry)], [(RSACompareKey, Entry)]). Raises
    :class:`~alignment.pipeline.NotCached` when one is missing (run the config first)."""
    from alignment.stages.rsa import rsa_targets

    results, compares = [], []
    for stage, target in rsa_targets(study, plan, tuple(subjects)):
        entry = study.get(stage, target, compute=False)
        (results if stage == "rsa" else compares).append((target, entry))
    return results, compares


def model_label(key: RSAKey) -> str:
    """A model branch as tables and legends name it."""
    return f"{short_spec(key.model)} {key.branch}"


def layer_table(results):
    """One row per (model branch, layer, network) of ``rsa`` results: :data:`LAYER_COLUMNS`.

    ``rho``: ρ with the group RDM, CI ``ci_low``/``ci_high`` over concepts and
    ``ci_participants_*`` over participants; ``p``: concept-label permutation; ``q``: BH-FDR over
    the result's layers × networks; ``q_all``: BH-FDR over every row of this table (every result
    given: on the page the models of one paradigm and ablation, in the export every result of the
    config), for claims across models; ``ceiling_*``: the network's noise ceiling, which bounds
    ``rho_subjects_mean`` (the mean per-participant ρ), not ``rho``; ``partial_rho``: NaN
    without a control model; ``best_*``: whether the layer is the network's best in sample /
    the one most often chosen out of sample.
    """
    import pandas as pd

    rows = []
    for key, e in results:
        layers, names, networks = e.meta["layers"], e.meta["layer_names"], e.meta["networks"]
        rho, p, q = np.asarray(e["rho"]), np.asarray(e["p"]), np.asarray(e["q"])
        cc, cp, ceil = np.asarray(e["ci_concepts"]), np.asarray(e["ci_participants"]), np.asarray(e["ceiling"])
        subj = np.asarray(e["rho_subjects"]).mean(axis=0)
        partial = np.asarray(e["partial_rho"]) if "partial_rho" in e else np.full(rho.shape, np.nan)
        best_in, best_out = np.asarray(e["best_in_sample"]), np.asarray(e["best_held_out"])
        for i, (layer, name) in enumerate(zip(layers, names)):
            for j, network in enumerate(networks):
                rows.append((model_label(key), key.branch, int(layer), name, network, key.paradigm, key.ablation,
                             rho[i, j], cc[0, i, j], cc[1, i, j], cp[0, i, j], cp[1, i, j], p[i, j], q[i, j],
                             np.nan, ceil[0, j], ceil[1, j], subj[i, j], partial[i, j], bool(best_in[j] == i),
                             bool(best_out[j] == i)))
    frame = pd.DataFrame(rows, columns=list(LAYER_COLUMNS))
    if len(frame):
        frame["q_all"] = fdr_bh(frame["p"].to_numpy(np.float64))[1]
    return frame


def difference_table(key: RSACompareKey, entry):
    """One row per (pair of models, network): Δρ = ρ(A) − ρ(B) at each model's out-of-sample
    layer, its paired-bootstrap CI, p and BH-FDR q over all pairs × networks."""
    import pandas as pd

    labels = [model_label(k) for k in key.results]
    pairs = list(combinations(range(len(labels)), 2))
    rows = []
    for i, (a, b) in enumerate(pairs):
        for j, network in enumerate(entry.meta["networks"]):
            rows.append((labels[a], labels[b], int(entry["layer_a"][i, j]), int(entry["layer_b"][i, j]), network,
                         key.results[0].paradigm, key.results[0].ablation, float(entry["delta"][i, j]),
                         float(entry["low"][i, j]), float(entry["high"][i, j]), float(entry["p"][i, j]),
                         float(entry["q"][i, j])))
    return pd.DataFrame(rows, columns=list(DIFFERENCE_COLUMNS))


def model_rdms(study, key: RSAKey, compute: bool = False) -> np.ndarray:
    """(L, P) the cached RDMs of the result's layers."""
    layers = study.get("concept_ans", key.features, compute=compute).meta["branches"][key.branch]
    return np.stack([np.asarray(study.get("model_rdm", ModelRDMKey(key.features, key.branch, int(layer), key.metric),
                                          compute=compute)["rdm"]) for layer in layers])


def brain_rdms(study, key: RSAKey, network: str, compute: bool = False) -> np.ndarray:
    """(S, P) the cached RDMs of a network for the result's participants."""
    from alignment.stages.rsa import rsa_subjects

    return np.stack([np.asarray(study.get("brain_rdm", BrainRDMKey(key.paradigm, network, key.metric), s,
                                          compute=compute)["rdm"]) for s in rsa_subjects(study, key)])


def concept_categories(dataset) -> list[str] | None:
    """The concepts' categories (C,) in concept order when the dataset knows them
    (``dataset.categories()``: concept → category, e.g. Pereira's optional categories table),
    else None. A concept the table leaves out gets ``""``."""
    cats = getattr(dataset, "categories", None)
    cats = cats() if callable(cats) else cats
    if not cats:
        return None
    return [str(cats.get(c, "")) for c in dataset.concepts]


def is_simulated(dataset) -> bool:
    """Whether a dataset is simulated: its folder holds the ground truth a simulation writes
    (:data:`alignment.data.GROUND_TRUTH_FILE`)."""
    from alignment.data import GROUND_TRUTH_FILE

    root = getattr(dataset, "root", None)
    return root is not None and os.path.isfile(os.path.join(os.fspath(root), GROUND_TRUTH_FILE))


def category_order(concepts: Sequence[str], categories: Sequence[str] | None = None) -> np.ndarray:
    """(C,) indices ordering the concepts by category, then by word (by word without categories)."""
    cats = [""] * len(concepts) if categories is None else list(categories)
    return np.array(sorted(range(len(concepts)), key=lambda i: (cats[i], str(concepts[i]))), dtype=int)


def rsa_layer_figure(table, network: str, title: str = ""):
    """ρ across layers for one network, one curve per model branch, with its concept-bootstrap
    CI band, the best layer in sample (open circle) and out of sample (diamond), and the
    network's noise ceiling (grey band: it bounds the mean per-participant ρ, drawn dotted).

    ``table``: :func:`layer_table` rows (one paradigm and ablation)."""
    import plotly.graph_objects as go

    from alignment.figures.theme import PALETTE, apply_theme, rgba

    part = table[table["network"] == network]
    fig = go.Figure()
    for k, (model, rows) in enumerate(part.groupby("model", sort=False)):
        col = PALETTE[k % len(PALETTE)]
        rows = rows.sort_values("layer")
        x = rows["layer"].to_numpy()
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                 y=np.concatenate([rows["ci_high"], rows["ci_low"][::-1]]), fill="toself",
                                 fillcolor=rgba(col, 0.18), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=model))
        fig.add_trace(go.Scatter(x=x, y=rows["rho"], mode="lines+markers", name=model, legendgroup=model,
                                 line=dict(color=col, width=2),
                                 customdata=np.stack([rows["layer_name"], rows["q"], rows["q_all"]], 1),
                                 hovertemplate=f"{model}<br>%{{customdata[0]}}: ρ %{{y:.3f}}, q %{{customdata[1]:.3g}} "
                                               "(over every model shown: %{customdata[2]:.3g})<extra></extra>"))
        for flag, symbol, label in (("best_in_sample", "circle-open", "best in sample"),
                                    ("best_held_out", "diamond", "best out of sample")):
            best = rows[rows[flag]]
            fig.add_trace(go.Scatter(x=best["layer"], y=best["rho"], mode="markers", name=f"{model}: {label}",
                                     legendgroup=model, showlegend=False,
                                     marker=dict(symbol=symbol, size=14, color=col, line=dict(width=2, color=col)),
                                     hovertemplate=f"{model} {label}: %{{x}}<extra></extra>"))
    if not part.empty:
        lo, hi = float(part["ceiling_low"].iloc[0]), float(part["ceiling_high"].iloc[0])
        fig.add_hrect(y0=lo, y1=hi, fillcolor="#b0b0b0", opacity=0.25, line_width=0)
        fig.add_hline(y=lo, line=dict(dash="dot", color="#606060", width=1),
                      annotation_text="noise ceiling (per-participant ρ)", annotation_position="bottom right")
    fig.update_xaxes(title_text="layer (0 = embeddings)")
    fig.update_yaxes(title_text="Spearman ρ with the group RDM")
    fig.update_layout(title=dict(text=title or network), height=420, hovermode="closest")
    return apply_theme(fig)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-")


def export_rsa(study, plan: RSAPlan, out: str, fmt: str | None = "png", subjects: Sequence[str] = ()) -> list[str]:
    """Write a config's cached RSA results into the folder ``out`` (README, "Concept RSA"):
    ``rdms/*.npy`` + ``rdms/concepts.txt``, ``rsa_layers.csv``, ``rsa_differences.csv`` and,
    unless ``fmt`` is None, a layer-curve figure per paradigm × ablation × network. Returns the
    paths written. Raises :class:`~alignment.pipeline.NotCached` before writing anything when a
    result is missing."""
    import pandas as pd

    from alignment.export import write_csv, write_figure

    results, compares = plan_results(study, plan, subjects)
    rdm_dir = os.path.join(out, "rdms")
    os.makedirs(rdm_dir, exist_ok=True)
    written = []
    concepts = os.path.join(rdm_dir, "concepts.txt")
    with open(concepts, "w", encoding="utf-8") as f:
        f.write("\n".join(study.dataset.concepts) + "\n")
    written.append(concepts)
    brains = {}
    for key, entry in results:
        path = os.path.join(rdm_dir, _safe(f"{short_spec(key.model)}__{key.branch}__{key.paradigm}__{key.ablation}") + ".npy")
        np.save(path, model_rdms(study, key), allow_pickle=False)
        written.append(path)
        for network in entry.meta["networks"]:
            brains.setdefault((key.paradigm, network), key)
    for (paradigm, network), key in brains.items():
        path = os.path.join(rdm_dir, _safe(f"brain__{paradigm}__{network}") + ".npy")
        np.save(path, brain_rdms(study, key, network), allow_pickle=False)
        written.append(path)
    table = layer_table(results)
    written.append(write_csv(os.path.join(out, "rsa_layers.csv"), table))
    diffs = [difference_table(k, e) for k, e in compares]
    written.append(write_csv(os.path.join(out, "rsa_differences.csv"),
                             pd.concat(diffs, ignore_index=True) if diffs else
                             pd.DataFrame(columns=list(DIFFERENCE_COLUMNS))))
    if fmt is not None:
        for (paradigm, ablation), rows in table.groupby(["paradigm", "ablation"], sort=False):
            for network in dict.fromkeys(rows["network"]):
                name = _safe(f"layers__{paradigm}__{ablation}__{network}") + f".{fmt}"
                fig = rsa_layer_figure(rows, network, f"{network} · {paradigm} · {ablation}")
                written.append(write_figure(os.path.join(out, name), fig, fmt))
    return written


def cached_rsa(study) -> tuple[list, list]:
    """Every ``rsa`` and ``rsa_compare`` result the cache holds *for this study's dataset*:
    ([(RSAKey, Entry)], [(RSACompareKey, Entry)]); an entry counts when the key its unit has
    here (its inputs' keys, which hash the dataset's files) is the entry's own."""
    from alignment.catalog import build
    from alignment.pipeline import NotCached

    out = ([], [])
    for i, stage in enumerate(("rsa", "rsa_compare")):
        for info in study.cache.entries(stage):
            target = ((info.meta or {}).get("unit") or {}).get("target")
            if not target:
                continue
            try:
                key = build(RSAKey if stage == "rsa" else RSACompareKey, target)
                if study.key(stage, key) != info.key:
                    continue
                out[i].append((key, study.get(stage, key, compute=False)))
            except (NotCached, ValueError, TypeError, KeyError):
                continue  # another dataset's result, or one whose inputs are gone
    return out
