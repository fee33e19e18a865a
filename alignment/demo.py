"""The embedded default: build the simulated experiment, analyse it, check the ground truth.

``python -m alignment demo`` = :func:`run_demo`; ``python -m alignment validate`` =
:func:`validate_demo`. The dataset itself is made by :mod:`alignment.simulation`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from alignment.cache import Cache
from alignment.pipeline import Baselines, LayerKey, ModelPlan, Options, Study
from alignment.plan import compute
from alignment.simulation import CLIP_SPEC, DEFAULT_SNR, METER_SPEC, PLANTING, build_demo, load_ground_truth

BASELINES = ("random:vit:tiny", "random:roberta:tiny", "minilm")
#: the unimodal models integration sites are tested against (ViT for images, RoBERTa for text)
INTEGRATION_BASELINES = Baselines("random:vit:tiny", "random:roberta:tiny")
# one ridge penalty per decade: the planted effects are not subtle, and the alpha search is
# the largest cost of a whole-brain fit
DEMO_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)
MAPPING = ("encoding", "neuron_mapping")
CROSS = ("cross_image", "cross_text")


#: MiniLM layers of the core plan: its first and last (its curve's ends)
MINILM_CORE_LAYERS = (0, 5)


def demo_plans(full: bool = False) -> tuple[ModelPlan, ...]:
    """What the demo computes: every view of the app for every demo model.

    The core plan (default) covers the layers the ground truth was planted in plus layer 0 of
    each planted branch as a distractor: encoding and neuron mapping (Overview, Layers,
    Polarity, Redundancy, inspectors), the fusion model's planted cross-modal layers also under
    the single-modality conditions (Modality), one variance partition of the dual encoder at
    its planted depth and the integration test of the fusion layer against
    :data:`INTEGRATION_BASELINES`; the baselines ViT and RoBERTa at every layer (integration
    compares with their best) and MiniLM at :data:`MINILM_CORE_LAYERS`.

    ``full`` computes every layer of every model and kind the demo offers (several times the
    core plan's cost); what the app finds in the cache, it shows.
    """
    if full:
        return (
            ModelPlan(CLIP_SPEC, analyses=MAPPING),
            ModelPlan(METER_SPEC, analyses=MAPPING),
            ModelPlan(METER_SPEC, branches=CROSS, kinds=("mlp",), analyses=MAPPING),
            ModelPlan(METER_SPEC, branches=CROSS, kinds=("attn", "mlp"), conditions=("image", "text"),
                      analyses=("encoding",)),
            *(ModelPlan(spec, analyses=MAPPING) for spec in BASELINES),
            ModelPlan(CLIP_SPEC, analyses=("variance_partition",)),
            ModelPlan(METER_SPEC, branches=CROSS, analyses=("integration",)),
        )
    layers: dict = {}
    for p in PLANTING:
        layers.setdefault((p.model, p.branch, p.kind), {0}).add(p.layer)
    plans = [ModelPlan(model, (branch,), tuple(sorted(ls)), (kind,), analyses=MAPPING)
             for (model, branch, kind), ls in layers.items()]
    plans += [ModelPlan(model, (branch,), tuple(sorted(ls)), (kind,), ("image", "text"), analyses=("encoding",))
              for (model, branch, kind), ls in layers.items() if model == METER_SPEC]
    depth = min({p.layer for p in PLANTING if p.model == CLIP_SPEC and p.branch == "image"}
                & {p.layer for p in PLANTING if p.model == CLIP_SPEC and p.branch == "text"})
    fused = sorted({p.layer for p in PLANTING if p.model == METER_SPEC and p.branch == "cross_image"})
    plans += [ModelPlan(INTEGRATION_BASELINES.image, analyses=("encoding",)),
              ModelPlan(INTEGRATION_BASELINES.text, analyses=("encoding",)),
              ModelPlan("minilm", layers=MINILM_CORE_LAYERS, analyses=("encoding",)),
              ModelPlan(CLIP_SPEC, ("image", "text"), (depth,), analyses=("variance_partition",)),
              ModelPlan(METER_SPEC, ("cross_image",), tuple(fused), analyses=("integration",))]
    return tuple(plans)


def validation_plans(full: bool = False) -> tuple[ModelPlan, ...]:
    """The part of :func:`demo_plans` that :func:`validate_demo` reads: encoding and neuron
    mapping of the models the ground truth was planted from."""
    planted = {p.model for p in PLANTING}
    return tuple(replace(plan, analyses=tuple(a for a in plan.analyses if a in MAPPING))
                 for plan in demo_plans(full) if plan.spec in planted and set(plan.analyses) & set(MAPPING))


def demo_options(seed: int = 0) -> Options:
    """The analysis options the demo is computed with (the app reads with the same)."""
    return Options(seed=seed, alphas=DEMO_ALPHAS, banded_iter=5)


def demo_root(cache: Cache, seed: int = 0, snr: float = DEFAULT_SNR, small: bool = False) -> Path:
    """Folder of the demo dataset with these parameters, inside the cache folder."""
    return cache.root / "datasets" / f"demo_seed-{seed}_snr-{snr:g}{'_small' if small else ''}"


def run_demo(cache: Cache | str | None = None, seed: int = 0, snr: float = DEFAULT_SNR, small: bool = False,
             progress: bool | Callable[[int, int, str], None] = True, full: bool = False,
             plans: tuple[ModelPlan, ...] | None = None) -> Study:
    """Build the demo dataset (if absent; ``small``: test-sized) and compute ``plans`` (default
    the demo plan, :func:`demo_plans`; ``full``: every layer) into the cache."""
    from alignment.data import load_dataset

    cache = cache if isinstance(cache, Cache) else Cache(cache)
    root = build_demo(demo_root(cache, seed, snr, small), seed=seed, snr=snr, small=small)
    study = Study(load_dataset(root), cache, demo_options(seed), device="cpu",
                  progress=progress is True)
    compute(study, plans or demo_plans(full), study.dataset.subjects, progress=progress, baselines=INTEGRATION_BASELINES)
    return study


# ---------------------------------------------------------------------- validation
THRESHOLDS = {
    "voxel_auc": (">=", 0.95),
    "top_an_accuracy": (">=", 0.8),
    "network_accuracy": (">=", 0.9),
    "polarity_accuracy": (">=", 0.9),
    "modality_accuracy": (">=", 0.9),
    "null_false_positive_rate": ("<=", 0.05),
}


@dataclass
class Validation:
    metrics: dict
    thresholds: dict
    planted: bool

    @property
    def passed(self) -> bool:
        checks = {k: v for k, v in self.thresholds.items() if self.planted or k == "null_false_positive_rate"}
        return all(_meets(self.metrics[k], op, limit) for k, (op, limit) in checks.items())

    def as_dict(self) -> dict:
        """JSON-ready: metrics that do not apply (nothing planted) are None."""
        metrics = {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in self.metrics.items()}
        return {**metrics, "passed": self.passed,
                "thresholds": {k: f"{op} {v}" for k, (op, v) in self.thresholds.items()}}


def _meets(value, op, limit) -> bool:
    if value is None or not np.isfinite(value):
        return False
    return value >= limit if op == ">=" else value <= limit


def validate_demo(study: Study) -> Validation:
    """Compare the cached results with the planted ground truth (metrics averaged over subjects).

    Every layer of the planted models that the cache holds for every subject is checked (see
    :func:`_checked_layers`; ``run_demo(plans=validation_plans(full))`` computes them first).

    - ``voxel_auc``: planted vs unplanted voxels, scored by the best encoding r over the layers
      of the models planted from (image+text).
    The next three are over the *detected* planted voxels (significant in some encoded layer):
    what the tool says about the voxels it finds (detection itself is ``voxel_auc``).

    - ``top_an_accuracy``: voxels whose top-ranked AN (the Voxel inspector's ranking: link
      scores over all layers and branches of the planted kind) is the planted AN or has a time
      course correlating ≥ 0.95 with it.
    - ``polarity_accuracy``: voxels whose link polarity with their planted AN
      (:func:`alignment.analyses.polarity.voxel_polarity` of the AN's coupling map, codes × t:
      blind to the atoms' arbitrary signs) is the planted sign of the voxel's coupling.
    - ``modality_accuracy``: voxels labelled with the planted modality by
      :func:`alignment.analyses.modality.modality_labels` (image / text from the dual encoder's
      branches, unified from the fusion model's conditions).
    - ``network_accuracy``: patches whose planted AN's brain map (its top voxels, as many as the
      patch has) falls mostly in the planted network.
    - ``null_false_positive_rate``: unplanted voxels declared significant (encoding q < 0.05) by
      any analysed layer.
    """
    truth = load_ground_truth(study.dataset.root)
    patches = truth.patches
    planted_any = bool(len(patches)) and bool(np.asarray(truth["planted"]).any())
    encoded, mapped = _checked_layers(study)
    per_subject = [_subject_metrics(study, truth, s, encoded, mapped) for s in study.dataset.subjects]
    metrics = {k: float(np.nanmean([m[k] for m in per_subject])) if any(np.isfinite(m[k]) for m in per_subject) else float("nan")
               for k in THRESHOLDS}
    metrics["subjects"] = len(per_subject)
    return Validation(metrics, THRESHOLDS, planted_any)


def _checked_layers(study: Study) -> tuple[list[LayerKey], list[LayerKey]]:
    """The layers of the models the ground truth was planted from (image+text) whose encoding
    maps, and whose neuron mappings, the cache holds for every subject with the study's options
    (the catalog: at least :func:`validation_plans`' layers once :func:`run_demo` ran them)."""
    from alignment.catalog import Catalog

    planted_from = {(p.model, p.kind) for p in PLANTING}  # also with snr=0, when nothing is planted
    subjects = {study.bold_params(s)["bold"]: s for s in study.dataset.subjects}
    held: dict = {}
    for record in Catalog(study.cache, ("encoding", "atoms", "glm")).of_subjects(subjects, ("encoding", "glm"),
                                                                                  study.options):
        key = record.target
        if isinstance(key, LayerKey) and (key.model, key.kind) in planted_from and key.condition == "image+text":
            held.setdefault((record.stage, key), set()).add(record.subject)
    every = set(subjects.values())
    order = sorted({key for _, key in held}, key=lambda k: (k.model, k.branch, k.layer))
    encoded = [k for k in order if held.get(("encoding", k)) == every]
    mapped = [k for k in encoded if held.get(("glm", k)) == every]
    return encoded, mapped


def _subject_metrics(study: Study, truth, subject: str, keys: list[LayerKey], mapped: list[LayerKey]) -> dict:
    from sklearn.metrics import roc_auc_score

    from alignment.analyses.modality import modality_labels
    from alignment.analyses.polarity import voxel_polarity
    from alignment.atlases import load_atlas

    maps = truth.subject_maps(subject)
    planted = np.asarray(maps["planted"], bool)
    patch_of = np.asarray(maps["patch"])
    sign_of = np.asarray(maps["sign"])
    patches = truth.patches
    q_level = study.options.fdr_q

    # encoding maps of the models and kinds planted from (image+text)
    kinds = sorted({p["kind"] for p in patches})
    enc = {k: study.get("encoding", k, subject) for k in keys}
    best_r = np.max([np.asarray(e["scores"]) for e in enc.values()], axis=0)
    significant = np.any([np.asarray(e["q"]) < q_level for e in enc.values()], axis=0)
    out = {"null_false_positive_rate": float(significant[~planted].mean())}
    if not planted.any():
        return {**out, **{k: float("nan") for k in THRESHOLDS if k != "null_false_positive_rate"}}
    out["voxel_auc"] = float(roc_auc_score(planted, best_r))
    detected = planted & significant

    # links: the Voxel inspector's ranking over all layers and branches of one kind
    atlas = load_atlas("ca")
    top_hits, polarity_hits, network_hits, n_voxels = 0, 0, 0, 0
    for kind in kinds:
        kind_patches = [p for p in patches if p["kind"] == kind]
        table = study.link_table(subject, [k for k in mapped if k.kind == kind])
        timecourses: dict = {}
        for p in kind_patches:
            pid = int(p["patch"])
            voxels = np.flatnonzero((patch_of == pid) & detected)
            planted_tc = np.asarray(truth["an_timeseries"][pid], np.float64)
            for v in voxels:
                top = table.top_ans(int(v), n=1).iloc[0]
                top_an = (top["model"], top["branch"], int(top["layer"]), int(top["an"]))
                if top["score"] == 0:
                    continue
                if top_an == (p["model"], p["branch"], int(p["layer"]), int(p["an_index"])):
                    top_hits += 1
                    continue
                key = LayerKey(top_an[0], top_an[1], top_an[2], kind)
                if key not in timecourses:
                    timecourses[key] = study.raw_ans(key)
                top_hits += abs(np.corrcoef(timecourses[key][:, top_an[3]], planted_tc)[0, 1]) >= 0.95
            an_map = table.an_map(p["model"], p["branch"], int(p["layer"]), int(p["an_index"]))
            # link polarity (AN, BN): the sign of the coupling codes × t, blind to atom signs
            polarity_hits += int(np.sum(voxel_polarity(an_map[voxels]) == sign_of[voxels]))
            n_voxels += len(voxels)
            strongest = np.argsort(-np.abs(an_map))[: int(np.sum(patch_of == pid))]
            names = atlas.voxel_names()[strongest]
            values, counts = np.unique(names, return_counts=True)
            network_hits += values[np.argmax(counts)] == p["network"]
    out["top_an_accuracy"] = top_hits / max(n_voxels, 1)
    out["polarity_accuracy"] = polarity_hits / max(n_voxels, 1)
    out["network_accuracy"] = network_hits / len(patches)

    # modality: dual-encoder branches (image vs text); fusion conditions for unified patches
    clip_keys = [k for k in keys if k.model == CLIP_SPEC and k.kind == "attn"]
    r_img = np.max([np.asarray(enc[k]["scores"]) for k in clip_keys if k.branch == "image"], axis=0)
    r_txt = np.max([np.asarray(enc[k]["scores"]) for k in clip_keys if k.branch == "text"], axis=0)
    sig_img = np.any([np.asarray(enc[k]["q"]) < q_level for k in clip_keys if k.branch == "image"], axis=0)
    sig_txt = np.any([np.asarray(enc[k]["q"]) < q_level for k in clip_keys if k.branch == "text"], axis=0)
    dual = modality_labels(sig_img, sig_txt, r_image=r_img, r_text=r_txt)
    correct = 0
    for p in patches:
        voxels = (patch_of == int(p["patch"])) & detected
        if p["modality"] == "unified":
            fits = {c: study.get("encoding", LayerKey(p["model"], p["branch"], int(p["layer"]), p["kind"], c), subject)
                    for c in ("image+text", "image", "text")}
            sig = {c: np.asarray(e["q"]) < q_level for c, e in fits.items()}
            r = {c: np.asarray(e["scores"]) for c, e in fits.items()}
            fused = modality_labels(sig["image"], sig["text"], sig["image+text"],
                                    r_image=r["image"], r_text=r["text"], r_both=r["image+text"])
            correct += int(np.sum(fused[voxels] == "unified"))
        else:
            correct += int(np.sum(dual[voxels] == p["modality"]))
    out["modality_accuracy"] = correct / max(int(detected.sum()), 1)
    return out
