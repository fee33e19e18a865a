"""Stage ``encoding``: the ridge prediction map of one layer (DESIGN §5.1)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from alignment.keys import LayerKey
from alignment.stages.base import Stage, Unit, register
from alignment.stages.features import ans_unit


def layer_inputs(study, unit: Unit, resolve) -> dict:
    """A layer stage reads its model's ANs."""
    key = unit.target
    return {"ans": ans_unit(key.model, key.kind, key.condition)}


def encoding_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    return {**study.bold_params(unit.subject), "ans": inputs["ans"].key, "layer": asdict(unit.target),
            "hrf": o.hrf, "alphas": list(o.alphas), "null": o.null, "n_null": o.n_null, "null_tail": o.null_tail,
            "seed": o.seed}


def encoding_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Arrays (V,): ``scores`` held-out r (mean over leave-one-run-out folds), ``alphas`` the
    per-voxel ridge penalty, ``p`` from the autocorrelation-aware null, ``q`` BH-FDR."""
    from alignment.encoding import fit_ridge
    from alignment.stats import block_permutation_null, circular_shift_null, fdr_bh

    o = study.options
    Y = study.bold(unit.subject)
    fit = fit_ridge(study.design(unit.target), Y, study.runs, alphas=np.asarray(o.alphas), return_predictions=True,
                    **study.fit_backend)
    if o.null == "circular":
        p = circular_shift_null(Y, fit.predictions, study.runs, n_shifts=o.n_null, seed=o.seed, tail=o.null_tail)
    else:
        p = block_permutation_null(Y, fit.predictions, study.runs, n_perms=o.n_null, seed=o.seed, tail=o.null_tail)
    _, q = fdr_bh(p, o.fdr_q)
    arrays = {"scores": fit.scores, "alphas": fit.best_alphas, "p": p, "q": q}
    return ({k: np.asarray(v, np.float32) for k, v in arrays.items()},
            {"description": f"encoding {unit.target.label()} sub-{unit.subject}"})


register(Stage(
    name="encoding", version=1, target=LayerKey, inputs=layer_inputs, params=encoding_params,
    compute=encoding_compute, options=("hrf", "alphas", "null", "n_null", "null_tail", "seed"),
    analysis="encoding", default=True, expand=lambda keys, plan, baselines: list(keys),
    doc="ridge prediction map: scores (r), alphas, p, q (V,)",
))
