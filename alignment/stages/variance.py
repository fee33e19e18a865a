"""Stage ``variance``: unique and shared variance of a model's branches at one depth (DESIGN §5.5)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

import numpy as np

from alignment.keys import BandsKey, LayerKey
from alignment.stages.base import Stage, Unit, register
from alignment.stages.encoding import repeat_exclusion
from alignment.stages.features import ans_unit


def plan_bands(keys: Sequence[LayerKey]) -> list[BandsKey]:
    """The variance-partition targets of a plan's keys: per (layer, kind, condition), the
    branches that have that layer, when there are at least two."""
    groups: dict[tuple, list[str]] = {}
    for k in keys:
        groups.setdefault((k.model, k.layer, k.kind, k.condition), []).append(k.branch)
    return [BandsKey(model, tuple(dict.fromkeys(branches)), layer, kind, condition)
            for (model, layer, kind, condition), branches in groups.items() if len(set(branches)) >= 2]


def variance_inputs(study, unit: Unit, resolve) -> dict:
    bands = unit.target
    if len(bands.branches) < 2:
        raise ValueError(f"{bands.label()}: a variance partition needs at least two branches")
    return {"ans": ans_unit(bands.model, bands.kind, bands.condition)}


def variance_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    return {**study.bold_params(unit.subject), "ans": inputs["ans"].key, "bands": asdict(unit.target),
            "hrf": o.hrf, "alphas": list(o.alphas), "banded_iter": o.banded_iter, "seed": o.seed}


def variance_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """One banded ridge (himalaya's random search over band weights, leave-one-run-out) with
    one band per branch, refit without each band. Arrays: ``r2`` (V,) joint held-out R²,
    ``r2_split`` (B, V), ``r2_without`` (B, V), ``unique`` (B, V) = r2 − r2_without,
    ``shared`` (V,) = r2 − Σ unique, ``scores`` (V,); bands in the order of the target's
    branches."""
    from alignment.encoding import fit_banded_ridge

    o, bands = study.options, unit.target
    Xs = [study.design(bands.band(b)) for b in bands.branches]
    fit = fit_banded_ridge(Xs, study.bold(unit.subject), study.runs, alphas=np.asarray(o.alphas),
                           n_iter=o.banded_iter, band_names=bands.branches, random_state=o.seed,
                           dtype="float32", exclude=repeat_exclusion(study), **study.fit_backend)
    arrays = {"r2": fit.r2, "r2_split": fit.r2_split, "r2_without": fit.r2_without,
              "unique": fit.unique, "shared": fit.shared, "scores": fit.scores}
    return ({k: np.asarray(v, np.float32) for k, v in arrays.items()},
            {"description": f"variance {bands.label()} sub-{unit.subject}"})


register(Stage(
    name="variance", gpu=True, version=2, target=BandsKey, inputs=variance_inputs, params=variance_params,
    compute=variance_compute, options=("hrf", "alphas", "banded_iter", "seed"),
    analysis="variance_partition", expand=lambda keys, plan, baselines: plan_bands(keys),
    doc="banded ridge, one band per branch: r2, shared (V,), unique, r2_without (B, V)",
))
