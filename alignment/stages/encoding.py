"""Stage ``encoding``: the ridge prediction map of one layer (DESIGN §5.1)."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from alignment.keys import LayerKey
from alignment.stages.base import Stage, Unit, register
from alignment.stages.features import ans_unit

#: Shortest run (TRs) for which the encoding null was measured calibrated (README, "Encoding
#: null calibration"); shorter runs get a warning in the result's metadata.
MIN_CALIBRATED_RUN = 36


def layer_inputs(study, unit: Unit, resolve) -> dict:
    """A layer stage reads its model's ANs."""
    key = unit.target
    return {"ans": ans_unit(key.model, key.kind, key.condition)}


def fit_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    return {**study.bold_params(unit.subject), "ans": inputs["ans"].key, "layer": asdict(unit.target),
            "hrf": o.hrf, "alphas": list(o.alphas)}


def encoding_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    return {**fit_params(study, unit, inputs), "null": o.null, "n_null": o.n_null, "null_tail": o.null_tail,
            "seed": o.seed}


def segment_labels(study) -> np.ndarray:
    """Segment label of every TR of the study's runs, concatenated in run order, (T,)."""
    return np.concatenate([np.asarray(tl.segment, dtype=object) for tl in study.dataset.timelines()])


def repeat_exclusion(study) -> np.ndarray:
    """(L, T) bool: the TRs kept out of training when each run is held out -- every repeat of a
    segment that run also shows, plus ``REPEAT_MARGIN_S`` after it
    (:func:`alignment.encoding.repeated_segment_exclusion`)."""
    from alignment.encoding import REPEAT_MARGIN_S, repeated_segment_exclusion

    margin = math.ceil(REPEAT_MARGIN_S / study.dataset.tr)
    return repeated_segment_exclusion(segment_labels(study), study.runs, margin)


def null_warning(runs) -> str:
    """One line when the shortest run is below :data:`MIN_CALIBRATED_RUN` TRs, else ''."""
    shortest = int(np.bincount(np.unique(np.asarray(runs), return_inverse=True)[1]).min())
    if shortest >= MIN_CALIBRATED_RUN:
        return ""
    return (f"encoding p values: runs as short as {shortest} TRs (< {MIN_CALIBRATED_RUN}); the shift null "
            "was not shown to be calibrated there -- treat p and q as approximate")


def masked_note(masked: np.ndarray) -> str:
    """One line when some voxels (V,) bool are masked (NaN / infinite or constant BOLD), else ''."""
    n = int(np.count_nonzero(masked))
    if not n:
        return ""
    return (f"{n:,} of {masked.size:,} voxels masked (NaN/infinite or constant BOLD in some run): they score 0 "
            "and are never significant")


def _fit(study, unit: Unit):
    """(X, Y, runs, exclude, RidgeResult) of a layer's encoding fit for one subject."""
    from alignment.encoding import fit_ridge

    Y = study.bold(unit.subject)
    X = study.design(unit.target)
    exclude = repeat_exclusion(study)
    fit = fit_ridge(X, Y, study.runs, alphas=np.asarray(study.options.alphas), exclude=exclude, **study.fit_backend)
    return X, Y, study.runs, exclude, fit


def fit_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Arrays (V,): ``scores`` and ``alphas`` of the ``encoding`` stage, without its
    permutation null (the same fit, so the same numbers): a layer's r map seconds after its
    features, which the app shows while the null computes (a minute or more per map)."""
    fit = _fit(study, unit)[-1]
    return ({"scores": np.asarray(fit.scores, np.float32), "alphas": np.asarray(fit.best_alphas, np.float32)},
            {"description": f"encoding fit {unit.target.label()} sub-{unit.subject}"})


def encoding_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Arrays (V,): ``scores`` held-out r (mean over leave-one-run-out folds; the repeated
    segments of the held-out run never train its model), ``alphas`` the per-voxel ridge
    penalty, ``p`` from the refit permutation null (the whole cross-validation redone on data
    circularly shifted or block-permuted within runs), ``q`` BH-FDR."""
    import warnings

    from alignment.encoding import ridge_null_p
    from alignment.stats import fdr_bh, run_permutations

    o = study.options
    X, Y, runs, exclude, fit = _fit(study, unit)
    perms = run_permutations(runs, o.n_null, o.null, seed=o.seed)
    p = ridge_null_p(X, Y, runs, fit, perms, exclude=exclude, tail=o.null_tail, **study.fit_backend)
    _, q = fdr_bh(p, o.fdr_q)
    arrays = {"scores": fit.scores, "alphas": fit.best_alphas, "p": p, "q": q}
    meta = {"description": f"encoding {unit.target.label()} sub-{unit.subject}",
            "repeat_excluded_trs": int(exclude.any(0).sum())}
    notes = [note for note in (null_warning(runs), masked_note(study.masked_voxels(unit.subject))) if note]
    for note in notes:
        warnings.warn(note, stacklevel=2)
    if notes:
        meta["warnings"] = notes
    return {k: np.asarray(v, np.float32) for k, v in arrays.items()}, meta


register(Stage(
    name="encoding_fit", gpu=True, version=1, target=LayerKey, inputs=layer_inputs, params=fit_params,
    compute=fit_compute, options=("hrf", "alphas"),
    doc="the encoding map's ridge fit without its null: scores (r), alphas (V,); the app's first look at a map",
))
register(Stage(
    name="encoding", gpu=True, version=3, target=LayerKey, inputs=layer_inputs, params=encoding_params,
    compute=encoding_compute, options=("hrf", "alphas", "null", "n_null", "null_tail", "seed"),
    analysis="encoding", default=True, expand=lambda keys, plan, baselines: list(keys),
    doc="ridge prediction map: scores (r), alphas, p, q (V,)",
))
