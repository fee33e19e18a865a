"""Stages ``crossmodal`` and ``specialization``: tested modality contrasts (DESIGN §5.5).

``crossmodal`` (a fusion layer under the three stimulus conditions): held-out predictions of
the layer's ANs under ``image+text``, ``image`` and ``text``, of the additive model (a banded
ridge over the image- and text-condition ANs together) and of the full model (the same plus the
image+text ANs), compared over time blocks by
:func:`alignment.analyses.modality.crossmodal_tests`: cross-modal gain > 0, and "unified" (the
image+text ANs add to the additive model).

``specialization`` (a model's branches at one depth, e.g. a dual encoder's image and text
towers): the joint banded ridge and the model without each band, compared over time blocks:
unique variance of each band > 0 and, for an image and a text band, the specialization
contrast r_image ≠ r_text (the single-band models are the models without the other band).

Everything tested is cross-validated (leave-one-run-out predictions); nothing is in-sample.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from alignment.conventions import CONDITIONS
from alignment.keys import BandsKey, LayerKey
from alignment.stages.base import Stage, Unit, register
from alignment.stages.encoding import repeat_exclusion
from alignment.stages.features import ans_unit
from alignment.stages.variance import plan_bands

#: the condition a ``crossmodal`` target names (its other two are the single modalities)
BOTH = CONDITIONS[0]
#: the bands of a dual encoder whose contrast is the specialization index
SI_BANDS = ("image", "text")


def _condition_key(key: LayerKey, condition: str) -> LayerKey:
    return LayerKey(key.model, key.branch, key.layer, key.kind, condition)


def crossmodal_inputs(study, unit: Unit, resolve) -> dict:
    key = unit.target
    if key.condition != BOTH:
        raise ValueError(f"{key.label()}: a cross-modal test names the {BOTH!r} condition, got {key.condition!r}")
    return {f"{c}_ans": ans_unit(key.model, key.kind, c) for c in CONDITIONS}


def crossmodal_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    return {**study.bold_params(unit.subject), **{role: entry.key for role, entry in inputs.items()},
            "layer": asdict(unit.target), "hrf": o.hrf, "alphas": list(o.alphas), "banded_iter": o.banded_iter,
            "seed": o.seed, "block_len": o.block_len, "block_inflation": o.block_inflation}


def crossmodal_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Ridge of the layer's ANs under each condition; the additive model (banded ridge over the
    image- and text-condition ANs, one band each) and the full model (the same plus, as a third
    band, the image+text ANs' part those do not predict); all leave-one-run-out, compared over time blocks of
    ``options.block_len`` TRs (:func:`alignment.analyses.modality.crossmodal_tests`).

    Arrays (V,): ``r_both``, ``r_image``, ``r_text``, ``r_additive``, ``r_full`` (held-out r),
    ``gain`` = r_both − max(r_image, r_text), ``p_gain`` / ``q_gain`` (one-sided, gain > 0;
    BH), ``dz_unified`` (within-block Fisher-z difference full − additive, mean over blocks), ``p_unified`` /
    ``q_unified`` (one-sided; BH). Meta ``inflation``: λ of each block test."""
    from alignment.analyses.modality import beyond_single_modalities, crossmodal_tests
    from alignment.encoding import fit_banded_ridge, fit_ridge
    from alignment.stats import fdr_bh

    o, key = study.options, unit.target
    Y = study.bold(unit.subject)
    alphas = np.asarray(o.alphas)
    X = {c: study.design(_condition_key(key, c)) for c in CONDITIONS}
    exclude = repeat_exclusion(study)
    preds = {c: fit_ridge(X[c], Y, study.runs, alphas=alphas, return_predictions=True, exclude=exclude,
                          **study.fit_backend).predictions
             for c in CONDITIONS}

    def banded(bands):
        return fit_banded_ridge(list(bands.values()), Y, study.runs, alphas=alphas, n_iter=o.banded_iter,
                                band_names=list(bands), random_state=o.seed, compute_unique=False,
                                return_predictions=True, exclude=exclude, **study.fit_backend).predictions

    single = {c: X[c] for c in CONDITIONS[1:]}
    beyond = beyond_single_modalities(X[BOTH], *single.values(), study.runs, alphas).astype(X[BOTH].dtype)
    res = crossmodal_tests(Y, preds[BOTH], preds["image"], preds["text"], banded({BOTH: beyond, **single}),
                           banded(single), study.runs, block_len=o.block_len, inflation=o.block_inflation)
    arrays = {name: getattr(res, name) for name in
              ("r_both", "r_image", "r_text", "r_additive", "r_full", "gain", "p_gain", "dz_unified", "p_unified")}
    arrays["q_gain"] = fdr_bh(res.p_gain)[1]
    arrays["q_unified"] = fdr_bh(res.p_unified)[1]
    return ({k: np.asarray(v, np.float32) for k, v in arrays.items()},
            {"description": f"crossmodal {key.label()} sub-{unit.subject}", "n_blocks": int(res.n_blocks),
             "inflation": res.inflation})


def crossmodal_targets(keys, plan, baselines) -> list[LayerKey]:
    """The plan's layers, once, when it computes all three conditions."""
    if not set(CONDITIONS) <= set(plan.conditions):
        return []
    return [k for k in keys if k.condition == BOTH]


def specialization_inputs(study, unit: Unit, resolve) -> dict:
    bands = unit.target
    if len(bands.branches) < 2:
        raise ValueError(f"{bands.label()}: a specialization test needs at least two branches")
    return {"ans": ans_unit(bands.model, bands.kind, bands.condition)}


def specialization_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    return {**study.bold_params(unit.subject), "ans": inputs["ans"].key, "bands": asdict(unit.target),
            "hrf": o.hrf, "alphas": list(o.alphas), "banded_iter": o.banded_iter, "seed": o.seed,
            "block_len": o.block_len, "block_inflation": o.block_inflation}


def specialization_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Joint banded ridge (one band per branch) and the banded ridge without each band (the
    reduced models of the ``variance`` stage), leave-one-run-out, compared over time blocks.

    Arrays: ``dz_unique``, ``p_unique``, ``q_unique`` (B, V): joint better than without band b
    (one-sided; BH per band); bands in the order of the target's branches. With exactly an
    ``image`` and a ``text`` band also (V,): ``r_image``, ``r_text`` (held-out r of each branch
    alone), ``dz_si`` (within-block Fisher-z difference image − text, mean over blocks), ``p_si`` (two-sided),
    ``q_si`` (BH). Meta ``inflation``: λ of each block test."""
    from alignment.analyses.modality import paired_contrast, unique_variance_tests
    from alignment.encoding import fit_banded_ridge
    from alignment.stats import fdr_bh

    o, bands = study.options, unit.target
    Y = study.bold(unit.subject)
    Xs = [study.design(bands.band(b)) for b in bands.branches]
    exclude = repeat_exclusion(study)

    def predict(idx):
        return fit_banded_ridge([Xs[i] for i in idx], Y, study.runs, alphas=np.asarray(o.alphas),
                                n_iter=o.banded_iter, band_names=[bands.branches[i] for i in idx],
                                random_state=o.seed, compute_unique=False, return_predictions=True,
                                exclude=exclude, **study.fit_backend).predictions

    B = len(Xs)
    joint = predict(range(B))
    without = {b: predict([i for i in range(B) if i != j]) for j, b in enumerate(bands.branches)}
    tests = unique_variance_tests(Y, joint, without, study.runs, block_len=o.block_len, inflation=o.block_inflation)
    arrays = {"dz_unique": np.stack([tests[b].mean_dz for b in bands.branches]),
              "p_unique": np.stack([tests[b].p for b in bands.branches])}
    arrays["q_unique"] = np.stack([fdr_bh(p)[1] for p in arrays["p_unique"]])
    inflation = {f"unique_{b}": tests[b].inflation for b in bands.branches}
    if sorted(bands.branches) == sorted(SI_BANDS):
        # two bands: the model without the text band is the image band alone, and vice versa
        si = paired_contrast(Y, without["text"], without["image"], study.runs, block_len=o.block_len,
                             alternative="two-sided", inflation=o.block_inflation)
        arrays.update(r_image=si.r_a, r_text=si.r_b, dz_si=si.mean_dz, p_si=si.p, q_si=fdr_bh(si.p)[1])
        inflation["si"] = si.inflation
    return ({k: np.asarray(v, np.float32) for k, v in arrays.items()},
            {"description": f"specialization {bands.label()} sub-{unit.subject}", "inflation": inflation})


register(Stage(
    name="crossmodal", gpu=True, version=7, target=LayerKey, inputs=crossmodal_inputs, params=crossmodal_params,
    compute=crossmodal_compute, options=("hrf", "alphas", "banded_iter", "seed", "block_len", "block_inflation"),
    analysis="crossmodal", expand=lambda keys, plan, baselines: crossmodal_targets(keys, plan, baselines),
    doc="fusion layer, tested: r_both, r_image, r_text, r_additive, r_full, gain, p/q_gain, dz/p/q_unified (V,)",
))
register(Stage(
    name="specialization", gpu=True, version=5, target=BandsKey, inputs=specialization_inputs,
    params=specialization_params, compute=specialization_compute,
    options=("hrf", "alphas", "banded_iter", "seed", "block_len", "block_inflation"), analysis="specialization",
    expand=lambda keys, plan, baselines: plan_bands(keys),
    doc="branches at one depth, tested: dz/p/q_unique (B, V); image vs text: r_image, r_text, dz/p/q_si (V,)",
))
