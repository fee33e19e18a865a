"""``python -m alignment validate``: the demo's cached results against its planted ground truth.

:func:`validate_demo` reads the results :func:`alignment.demo.run_demo` computed (through the
stages and :mod:`alignment.summaries`) and scores them with :data:`THRESHOLDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alignment.demo import INTEGRATION_BASELINES, STABILITY_SEEDS, STABILITY_SUBJECTS, VLM_PLANTING, stability_plans
from alignment.pipeline import LayerKey, Study
from alignment.simulation import CLIP_SPEC, PLANTING, load_ground_truth

@dataclass(frozen=True)
class Check:
    """A validation metric's pass rule: ``op`` ">=", "<=" or "in" (``limit`` a (low, high)
    interval); ``doc`` says what the metric is; ``planted``: it needs a planted ground truth
    (it is not checked on a pure-noise demo)."""

    op: str
    limit: float | tuple[float, float]
    doc: str
    planted: bool = True

    def meets(self, value) -> bool:
        if value is None or not np.isfinite(value):
            return False
        if self.op == "in":
            return self.limit[0] <= value <= self.limit[1]
        return value >= self.limit if self.op == ">=" else value <= self.limit

    def text(self) -> str:
        return f"in [{self.limit[0]}, {self.limit[1]}]" if self.op == "in" else f"{self.op} {self.limit}"


#: every metric :func:`validate_demo` checks (means over subjects unless said otherwise). "Planted
#: voxels": every voxel of a subject's patches; "VLM voxels": those of the patches planted from
#: the VLMs' ANs (image, text, unified; the additive ones come from the baselines).
THRESHOLDS: dict[str, Check] = {
    "sensitivity": Check(">=", 0.8, "planted voxels declared (encoding q < fdr_q in some checked layer) / planted voxels"),
    "precision": Check(">=", 0.9, "planted voxels among the declared ones"),
    "voxel_auc": Check(">=", 0.95, "ROC AUC of planted vs unplanted voxels, scored by the best encoding r"),
    "top_an_accuracy": Check(">=", 0.7, "VLM voxels whose top-linked AN is the planted one (or |r| >= 0.95 with it); "
                                        "undetected voxels count as misses"),
    "top_an_accuracy_detected": Check(">=", 0.8, "the same over the detected VLM voxels only"),
    "polarity_accuracy": Check(">=", 0.8, "VLM voxels whose link polarity with the planted AN (codes x t) is the "
                                          "planted sign; undetected voxels count as misses"),
    "polarity_accuracy_detected": Check(">=", 0.9, "the same over the detected VLM voxels only"),
    "modality_accuracy": Check(">=", 0.7, "VLM voxels labelled with the planted modality; undetected count as misses"),
    "modality_accuracy_detected": Check(">=", 0.9, "the same over the detected VLM voxels only"),
    "unified_additive_false_positive_rate": Check("<=", 0.05, "additive image + text voxels labelled "
                                                              "unified by the fusion layers of the unified patches"),
    "network_accuracy": Check(">=", 0.9, "VLM patches whose planted AN's brain map falls mostly in the planted network"),
    "polarity_stability": Check(">=", 0.9, "BNs of the planted layers signed under some dictionary seed (0, 1, 2) "
                                           "that no seed gives the opposite sign (a mixed BN withholds a sign; "
                                           "pooled over layers; first subject)"),
    "integration_sensitivity": Check(">=", 0.5, "unified (interactive) voxels declared integration sites against "
                                                "the joint baseline"),
    "integration_additive_false_positive_rate": Check("<=", 0.05, "additive image + text voxels declared "
                                                                  "integration sites"),
    "integration_unplanted_false_positive_rate": Check("<=", 0.05, "unplanted voxels declared integration sites"),
    "calibration_p05": Check("in", (0.03, 0.07), "unplanted voxels with uncorrected encoding p < .05 (pooled over "
                                                 "checked layers)", planted=False),
    "calibration_p01": Check("in", (0.004, 0.02), "unplanted voxels with uncorrected encoding p < .01", planted=False),
    "null_false_positive_rate": Check("<=", 0.1, "mean over encoding maps (layer x subject) of the false discovery "
                                                 "proportion: unplanted among the voxels declared at q < fdr_q "
                                                 "(on pure noise: 1 for a map that declares anything); BH "
                                                 "keeps its expectation <= fdr_q", planted=False),
}
#: reported beside :data:`THRESHOLDS` (means over subjects), scored by none: where a failing
#: metric's misses lie, and the encoding p's calibration deeper in the tail (p < .001, where
#: a few thousand unplanted voxels per map give a rough share). Planted amplitude = the voxel's
#: signal std / noise std (mean 1 over a patch at the default SNR; the Gaussian falloff leaves
#: a patch's rim near 0.3).
DIAGNOSTICS = ("sensitivity_amplitude_below_0.5", "sensitivity_amplitude_0.5_to_1", "sensitivity_amplitude_above_1",
               "modality_accuracy_detected_image", "modality_accuracy_detected_text",
               "modality_accuracy_detected_unified", "integration_sensitivity_detected", "calibration_p001")


@dataclass
class Validation:
    metrics: dict
    thresholds: dict
    planted: bool

    @classmethod
    def combine(cls, *parts: "Validation") -> "Validation":
        """One validation of several (the movie demo's and the concept demo's): every metric and
        check; planted when any part is."""
        return cls({k: v for p in parts for k, v in p.metrics.items()},
                   {k: v for p in parts for k, v in p.thresholds.items()}, any(p.planted for p in parts))

    def checks(self) -> dict:
        """The checks that apply (those that need a planting only when something was planted)."""
        return {k: c for k, c in self.thresholds.items() if self.planted or not c.planted}

    @property
    def passed(self) -> bool:
        return all(c.meets(self.metrics.get(k)) for k, c in self.checks().items())

    def failed(self) -> list[str]:
        return [k for k, c in self.checks().items() if not c.meets(self.metrics.get(k))]

    def as_dict(self) -> dict:
        """JSON-ready: metrics that do not apply (nothing planted) or could not be measured are None."""
        metrics = {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in self.metrics.items()}
        return {**metrics, "passed": self.passed, "failed": self.failed(),
                "thresholds": {k: c.text() for k, c in self.thresholds.items()}}

    def text(self) -> str:
        """One line per metric: value, rule, whether it passed, what it is."""
        lines = []
        for name, c in self.thresholds.items():
            value = self.metrics.get(name)
            shown = "    n/a" if value is None or not np.isfinite(value) else f"{value:7.3f}"
            verdict = "ok" if c.meets(value) else ("FAIL" if name in self.checks() else "--")
            lines.append(f"{name:42s} {shown}   {c.text():16s} {verdict:4s}  {c.doc}")
        info = {k: v for k, v in self.metrics.items() if k not in self.thresholds}
        lines += [f"{k:42s} {v}" for k, v in info.items()]
        lines.append("PASSED" if self.passed else f"FAILED: {', '.join(self.failed())}")
        return "\n".join(lines)


def validate_demo(study: Study, subjects=None) -> Validation:
    """Compare the cached results with the planted ground truth (:data:`THRESHOLDS`).

    Reads through the stages (``study.get``), so what a stage computes is what is checked.
    Encoding: every layer of the models planted from (the VLMs and, for the additive patches,
    the baselines; image+text) that the cache holds for every subject (:func:`_checked_layers`;
    ``run_demo(plans=validation_plans(full))`` computes them first). Links (top AN, polarity,
    network) read the neuron mapping of the VLMs' layers; modality the dual encoder's branches
    and the fusion model's conditions; integration the fusion model's planted layers against
    :data:`INTEGRATION_BASELINES`; polarity stability the mapping of the planted layers under
    :data:`STABILITY_SEEDS`. Metrics that cannot be measured (results absent) are NaN and fail.
    ``subjects``: the subjects checked (default every subject of the dataset).
    """
    truth = load_ground_truth(study.dataset.root)
    planted_any = bool(len(truth.patches)) and bool(np.asarray(truth["planted"]).any())
    subjects = list(study.dataset.subjects if subjects is None else subjects)
    encoded, mapped = _checked_layers(study, subjects)
    per_subject = [_subject_metrics(study, truth, s, encoded, mapped) for s in subjects]
    metrics = {}
    for k in (*THRESHOLDS, *DIAGNOSTICS):
        values = [m.get(k, float("nan")) for m in per_subject]
        metrics[k] = float(np.nanmean(values)) if any(np.isfinite(values)) else float("nan")
    stability = _polarity_stability(study, subjects[:STABILITY_SUBJECTS]) if planted_any else None
    # polarity_signed_share, unscored: of the BNs found under every seed, those with one sign under all
    metrics["polarity_stability"], metrics["polarity_signed_share"], seeds_differ = \
        stability or (float("nan"), float("nan"), None)
    metrics["polarity_seeds_differ"] = seeds_differ  # False: the seeds gave one dictionary (stability says nothing)
    metrics["subjects"] = len(per_subject)
    metrics["encoded_layers"] = len(encoded)
    metrics["mapped_layers"] = len(mapped)
    return Validation(metrics, THRESHOLDS, planted_any)


def _planted_from() -> set:
    """(model, kind) of every model an AN was planted from (VLMs and additive partners)."""
    out = {(p.model, p.kind) for p in PLANTING}
    return out | {(p.partner[0], p.kind) for p in PLANTING if p.partner}


def _checked_layers(study: Study, subjects) -> tuple[list[LayerKey], list[LayerKey]]:
    """The layers of the models the ground truth was planted from (image+text) whose encoding
    maps, and whose neuron mappings, the cache holds for every subject with the study's options
    (the catalog: at least :func:`validation_plans`' layers once :func:`run_demo` ran them)."""
    from alignment.catalog import Catalog

    planted_from = _planted_from()  # also with snr=0, when nothing is planted
    subjects = {study.bold_params(s)["bold"]: s for s in subjects}
    held: dict = {}
    for record in Catalog(study.cache, ("encoding", "atoms", "glm")).of_subjects(subjects, ("encoding", "glm"),
                                                                                  study.options):
        key = record.target
        if isinstance(key, LayerKey) and (key.model, key.kind) in planted_from and key.condition == "image+text":
            held.setdefault((record.stage, key), set()).add(record.subject)
    every = set(subjects.values())
    order = sorted({key for _, key in held}, key=lambda k: (k.model, k.branch, k.layer))
    encoded = [k for k in order if held.get(("encoding", k)) == every]
    vlms = {p.model for p in VLM_PLANTING}
    mapped = [k for k in encoded if held.get(("glm", k)) == every and k.model in vlms]
    return encoded, mapped


def _polarity_stability(study: Study, subjects) -> tuple[float, float, bool | None]:
    """Agreement of the BN polarities of the planted layers under :data:`STABILITY_SEEDS`
    (:func:`alignment.summaries.polarity_stability`, pooled over the planted branches by BN
    count): (share no seed contradicts, share signed alike under every seed, whether the seeds'
    dictionaries differ); NaN when a seed's mapping is not cached."""
    from alignment.summaries import polarity_stability

    rows, differ = [], []
    for plan in stability_plans():
        try:
            res = polarity_stability(study, plan.spec, plan.branches[0], plan.kinds[0], plan.layers,
                                     subjects, fdr_q=study.options.fdr_q, seeds=STABILITY_SEEDS)
        except LookupError:  # a seed's mapping is not in the cache
            return float("nan"), float("nan"), None
        if res is None or not res["n_bns"]:
            continue
        rows.append((res["share"], res["n"], res["signed"], res["n_bns"]))
        differ.append(bool(res["dictionaries_differ"]))
    share, n, signed, n_bns = np.array(rows, dtype=np.float64).T if rows else np.zeros((4, 0))
    if not n.sum():
        return float("nan"), float("nan"), None
    return (float(np.average(np.nan_to_num(share), weights=n)), float(np.average(signed, weights=n_bns)),
            all(differ))


def integration_sites(entry) -> np.ndarray:
    """The integration sites (V,) bool of an ``integration`` result: the voxels where the VLM
    beats the joint baseline (the stage's ``sites``)."""
    return np.asarray(entry["sites"]).astype(bool)


def _encoding_metrics(enc: dict, planted: np.ndarray, q_level: float) -> dict:
    """Calibration and false discoveries of the encoding maps ``enc`` (LayerKey → entry)."""
    null = ~planted
    p = np.stack([np.asarray(e["p"], np.float64)[null] for e in enc.values()])
    fdp = []
    for e in enc.values():
        declared = np.asarray(e["q"]) < q_level
        fdp.append((declared & null).sum() / declared.sum() if declared.any() else 0.0)
    return {"calibration_p05": float(np.mean(p < 0.05)), "calibration_p01": float(np.mean(p < 0.01)),
            "calibration_p001": float(np.mean(p < 0.001)),
            "null_false_positive_rate": float(np.mean(fdp))}


def _subject_metrics(study: Study, truth, subject: str, keys: list[LayerKey], mapped: list[LayerKey]) -> dict:
    from sklearn.metrics import roc_auc_score

    maps = truth.subject_maps(subject)
    planted = np.asarray(maps["planted"], bool)
    patch_of = np.asarray(maps["patch"])
    patches = truth.patches
    q_level = study.options.fdr_q

    enc = {k: study.get("encoding", k, subject) for k in keys}
    if not enc:
        return {}
    out = _encoding_metrics(enc, planted, q_level)
    if not planted.any():
        return out
    best_r = np.max([np.asarray(e["scores"]) for e in enc.values()], axis=0)
    significant = np.any([np.asarray(e["q"]) < q_level for e in enc.values()], axis=0)
    out["voxel_auc"] = float(roc_auc_score(planted, best_r))
    out["sensitivity"] = float((significant & planted).sum() / planted.sum())
    out["precision"] = float((significant & planted).sum() / significant.sum()) if significant.any() else float("nan")
    detected = planted & significant
    amplitude = np.asarray(maps["amplitude"])
    for name, low, high in (("below_0.5", 0, 0.5), ("0.5_to_1", 0.5, 1), ("above_1", 1, np.inf)):
        stratum = planted & (amplitude >= low) & (amplitude < high)
        out[f"sensitivity_amplitude_{name}"] = float(detected[stratum].mean()) if stratum.any() else float("nan")
    vlm_patches = [p for p in patches if p["modality"] != "additive"]
    vlm_voxels = np.isin(patch_of, [int(p["patch"]) for p in vlm_patches])
    n_all, n_detected = int(vlm_voxels.sum()), int((vlm_voxels & detected).sum())

    def rates(name, hits):
        out[name] = hits / n_all if n_all else float("nan")
        out[f"{name}_detected"] = hits / n_detected if n_detected else float("nan")

    if mapped:
        top, polarity, network = _link_hits(study, truth, subject, vlm_patches, mapped, detected)
        rates("top_an_accuracy", top)
        rates("polarity_accuracy", polarity)
        out["network_accuracy"] = network / len(vlm_patches)
    hits = _modality_hits(study, subject, vlm_patches, patch_of, detected, enc)
    rates("modality_accuracy", sum(hits.values()))
    for modality in ("image", "text", "unified"):
        voxels = np.isin(patch_of, [int(p["patch"]) for p in vlm_patches if p["modality"] == modality]) & detected
        out[f"modality_accuracy_detected_{modality}"] = hits.get(modality, 0) / voxels.sum() if voxels.any() \
            else float("nan")
    out.update(_unified_additive_rate(study, subject, patches, patch_of))
    out.update(_integration_metrics(study, subject, patches, patch_of, planted, detected))
    return out


def _link_hits(study: Study, truth, subject: str, patches: list[dict], mapped: list[LayerKey],
               detected: np.ndarray) -> tuple[int, int, int]:
    """Detected VLM voxels with the right top AN, with the right link polarity, and patches whose
    AN's brain map falls mostly in their network (undetected voxels are not looked up)."""
    from alignment.analyses.polarity import voxel_polarity
    from alignment.atlases import open_atlas

    patch_of = np.asarray(truth.subject_maps(subject)["patch"])
    sign_of = np.asarray(truth.subject_maps(subject)["sign"])
    names = open_atlas("ca", study.dataset.space, study.dataset.root).voxel_names()
    top_hits, polarity_hits, network_hits = 0, 0, 0
    for kind in sorted({p["kind"] for p in patches}):
        # the Voxel inspector's ranking over all layers and branches of one kind
        table = study.link_table(subject, [k for k in mapped if k.kind == kind])
        timecourses: dict = {}
        for p in (p for p in patches if p["kind"] == kind):
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
            strongest = np.argsort(-np.abs(an_map))[: int(np.sum(patch_of == pid))]
            values, counts = np.unique(names[strongest], return_counts=True)
            network_hits += values[np.argmax(counts)] == p["network"]
    return top_hits, polarity_hits, network_hits


def unified_voxels(study: Study, key: LayerKey, subject: str) -> np.ndarray:
    """The tested "unified" label (V,) bool of a fusion layer: its image+text ANs add to the
    additive model of its single-modality passes where its image+text encoding map is
    significant (:func:`alignment.analyses.modality.unified_by_test` on ``crossmodal``)."""
    from alignment.analyses.modality import unified_by_test

    q_level = study.options.fdr_q
    both = np.asarray(study.get("encoding", key, subject)["q"]) < q_level
    cross = study.get("crossmodal", key, subject)
    return unified_by_test(np.asarray(cross["q_unified"]), np.asarray(cross["dz_unified"]), both, q_level)


def _modality_hits(study: Study, subject: str, patches: list[dict], patch_of: np.ndarray, detected: np.ndarray,
                   enc: dict) -> dict[str, int]:
    """Detected VLM voxels labelled with their planted modality, by planted modality: image /
    text from the dual encoder's branches; unified by the fusion layer's tested contrast
    (:func:`unified_voxels`)."""
    from alignment.analyses.modality import modality_labels

    q_level = study.options.fdr_q
    clip_keys = [k for k in enc if k.model == CLIP_SPEC and k.kind == "attn"]
    branch_maps = {b: [enc[k] for k in clip_keys if k.branch == b] for b in ("image", "text")}
    if not all(branch_maps.values()):
        return {}
    r = {b: np.max([np.asarray(e["scores"]) for e in es], axis=0) for b, es in branch_maps.items()}
    sig = {b: np.any([np.asarray(e["q"]) < q_level for e in es], axis=0) for b, es in branch_maps.items()}
    dual = modality_labels(sig["image"], sig["text"], r_image=r["image"], r_text=r["text"])
    correct: dict[str, int] = {}
    for p in patches:
        voxels = (patch_of == int(p["patch"])) & detected
        if p["modality"] == "unified":
            fused = unified_voxels(study, LayerKey(p["model"], p["branch"], int(p["layer"]), p["kind"]), subject)
            hits = int(np.sum(fused[voxels]))
        else:
            hits = int(np.sum(dual[voxels] == p["modality"]))
        correct[p["modality"]] = correct.get(p["modality"], 0) + hits
    return correct


def _fused_layers(patches: list[dict]) -> list[LayerKey]:
    """The fusion layers the unified patches were planted from, once each."""
    return [LayerKey(*f) for f in sorted({(p["model"], p["branch"], int(p["layer"]), p["kind"]) for p in patches
                                          if p["modality"] == "unified"})]


def _unified_additive_rate(study: Study, subject: str, patches: list[dict], patch_of: np.ndarray) -> dict:
    """Additive voxels that a fusion layer planted with unified patches labels unified (NaN
    when nothing additive or unified is planted)."""
    fused = _fused_layers(patches)
    additive = np.isin(patch_of, [int(p["patch"]) for p in patches if p["modality"] == "additive"])
    if not fused or not additive.any():
        return {}
    labelled = np.any([unified_voxels(study, key, subject) for key in fused], axis=0)
    return {"unified_additive_false_positive_rate": float(labelled[additive].mean())}


def _integration_metrics(study: Study, subject: str, patches: list[dict], patch_of: np.ndarray,
                         planted: np.ndarray, detected: np.ndarray) -> dict:
    """Integration sites of the fusion model's planted layers against :data:`INTEGRATION_BASELINES`
    on the unified (all, and those the encoding maps detect), the additive and the unplanted
    voxels (NaN when not cached)."""
    from alignment.pipeline import IntegrationKey, NotCached

    fused = _fused_layers(patches)
    modality = np.asarray([p["modality"] for p in patches])
    of_voxel = np.where(patch_of >= 0, modality[np.maximum(patch_of, 0)], "")
    if not fused:
        return {}
    try:
        sites = np.any([integration_sites(study.get("integration", IntegrationKey(f, INTEGRATION_BASELINES),
                                                     subject, compute=False)) for f in fused], axis=0)
    except NotCached:
        return {}

    def share(mask):
        return float(sites[mask].mean()) if mask.any() else float("nan")

    return {"integration_sensitivity": share(of_voxel == "unified"),
            "integration_sensitivity_detected": share((of_voxel == "unified") & detected),
            "integration_additive_false_positive_rate": share(of_voxel == "additive"),
            "integration_unplanted_false_positive_rate": share(~planted)}


# ==========================================================================================
# the concept demo
# ==========================================================================================
#: a planted layer is *identifiable* when its model RDM correlates (Spearman) below this with
#: every other layer of its branch: layers whose RDMs agree more cannot be told apart by any
#: brain RDM, so the best-layer check skips them (the dual encoder's random image tower: ~0.998)
IDENTIFIABLE_RDM_RHO = 0.98
#: what :func:`validate_concept_demo` checks. A planted coupling is a (network, paradigm) whose
#: responses were made from a model branch's layer; every other (network, paradigm) is noise.
CONCEPT_THRESHOLDS: dict[str, Check] = {
    "concept_detection": Check(">=", 1.0, "planted couplings whose RSA with the planted layer is significant "
                                          "(q < fdr_q over the result's layers x networks)"),
    "concept_best_layer": Check(">=", 1.0, "planted couplings with an identifiable layer whose layer chosen out of "
                                           "sample (modal over participant splits) is the planted one"),
    "concept_null_discoveries": Check("<=", 0, "cells (layer x network) of unplanted networks declared at q < fdr_q "
                                              "by BH over every such cell of every RSA result (model branch x "
                                              "paradigm) at once: a global null, so P(any) <= fdr_q",
                                      planted=False),
}


def validate_concept_demo(study: Study, results) -> Validation:
    """Compare the concept demo's RSA ``results`` ([(RSAKey, entry)], e.g.
    :func:`alignment.rsa_summary.plan_results` of :func:`alignment.demo.concept_rsa_plan`) with
    the ground truth of ``study``'s simulated concept dataset (:data:`CONCEPT_THRESHOLDS`).

    Everything is read, nothing computed: the layers' model RDMs (for identifiability) are the
    RSA results' own inputs. A planted coupling that no result reads counts as not detected;
    metrics that cannot be measured (nothing planted, no identifiable layer) are NaN: they fail
    where they apply."""
    from alignment.keys import ModelRDMKey
    from alignment.simulation import concept_source, load_concept_ground_truth

    truth = load_concept_ground_truth(study.dataset.root)
    planted = {(p["network"], p["paradigm"]): (p["source"], int(p["layer"])) for p in truth["planted"]}
    q_level = study.options.fdr_q
    detected, best, null_p, checked, shown = [], [], [], set(), 0
    for key, entry in results:
        networks, layers = entry.meta["networks"], [int(v) for v in entry["layers"]]
        declared = np.asarray(entry["q"]) < q_level  # (L, N)
        null = np.array([(n, key.paradigm) not in planted for n in networks])
        null_p.append(np.asarray(entry["p"])[:, null].ravel())
        shown += int(declared[:, null].sum())
        for j, network in enumerate(networks):
            source, layer = planted.get((network, key.paradigm), (None, None))
            if source != concept_source(key.model, key.branch) or layer not in layers:
                continue
            checked.add((network, key.paradigm))
            i = layers.index(layer)
            detected.append(bool(declared[i, j]))  # a coupling no result reads counts as missed (below)
            rdms = {v: np.asarray(study.get("model_rdm", ModelRDMKey(key.features, key.branch, v, key.metric),
                                            compute=False)["rdm"]) for v in layers}
            if _identifiable(rdms, layer):
                best.append(layers[int(entry["best_held_out"][j])] == layer)
    metrics = {
        "concept_detection": float(np.sum(detected) / len(planted)) if planted else float("nan"),
        "concept_best_layer": float(np.mean(best)) if best else float("nan"),
        "concept_null_discoveries": _null_discoveries(np.concatenate(null_p) if null_p else np.array([]), q_level),
        # what the RSA page declares in unplanted networks (each result's own FDR): reported, not scored
        "concept_null_cells_declared_by_results": shown,
        "concept_results": len(results),
        "concept_planted_checked": f"{len(checked)} of {len(planted)}",
        "concept_identifiable": len(best),
    }
    return Validation(metrics, CONCEPT_THRESHOLDS, bool(planted))


def _null_discoveries(p: np.ndarray, q_level: float) -> float:
    """How many of the p values ``p`` (all null) BH declares at ``q_level``; NaN without any."""
    from alignment.stats import fdr_bh

    if p.size == 0:
        return float("nan")
    return float(np.sum(fdr_bh(p, q_level)[1] < q_level))


def _identifiable(rdms: dict, layer: int) -> bool:
    """Whether ``layer``'s RDM correlates below :data:`IDENTIFIABLE_RDM_RHO` with every other
    layer's (``rdms``: layer → (P,) RDM)."""
    from alignment.analyses.rsa import spearman

    others = [v for v in rdms if v != layer]
    if not others:
        return False
    rho = spearman(rdms[layer], np.stack([rdms[v] for v in others]))
    return bool(np.all(np.asarray(rho) < IDENTIFIABLE_RDM_RHO))
