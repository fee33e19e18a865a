"""Stage ``integration``: a VLM layer against a joint image+text baseline (DESIGN §5.7)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from alignment.keys import IntegrationKey, LayerKey
from alignment.stages.base import Stage, Unit, register
from alignment.stages.encoding import repeat_exclusion
from alignment.stages.features import ans_unit

BASELINE_ROLES = ("image", "text")


def _baseline_spec(unit: Unit, role: str) -> tuple[str, int | None]:
    b = unit.target.baselines
    return (b.image, b.image_layer) if role == "image" else (b.text, b.text_layer)


def _baseline_layers(resolve, spec: str) -> list[LayerKey]:
    """Every layer of a baseline's first branch (as its extracted ANs hold them)."""
    branch, layers = next(iter(resolve(ans_unit(spec)).meta["branches"].items()))
    return [LayerKey(spec, branch, int(layer)) for layer in layers]


def integration_inputs(study, unit: Unit, resolve) -> dict:
    """The three models' ANs, and, for a baseline whose layer is "best", the encoding map of
    each of its layers (the best one is chosen by mean r)."""
    vlm = unit.target.vlm
    inputs = {"vlm_ans": ans_unit(vlm.model, vlm.kind, vlm.condition)}
    for role in BASELINE_ROLES:
        spec, layer = _baseline_spec(unit, role)
        inputs[f"{role}_ans"] = ans_unit(spec)
        if layer is None:
            inputs.update({f"{role}_L{k.layer}": Unit("encoding", k, unit.subject) for k in _baseline_layers(resolve, spec)})
    return inputs


def baseline_layer(unit: Unit, inputs, role: str) -> LayerKey:
    """The baseline layer compared: the fixed one, or the highest mean encoding r over voxels."""
    spec, layer = _baseline_spec(unit, role)
    if layer is not None:
        branch = next(iter(inputs[f"{role}_ans"].meta["branches"]))
        return LayerKey(spec, branch, int(layer))
    prefix = f"{role}_L"
    candidates = [(name, entry) for name, entry in inputs.items() if name.startswith(prefix)]
    means = [float(np.nanmean(np.asarray(entry["scores"]))) for _, entry in candidates]
    return LayerKey(**candidates[int(np.argmax(means))][1].params["layer"])


def integration_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    keys = {"vlm": unit.target.vlm, **{role: baseline_layer(unit, inputs, role) for role in BASELINE_ROLES}}
    return {**study.bold_params(unit.subject), **{f"{k}_ans": inputs[f"{k}_ans"].key for k in keys},
            **{k: asdict(v) for k, v in keys.items()}, "hrf": o.hrf, "alphas": list(o.alphas),
            "banded_iter": o.banded_iter, "seed": o.seed, "block_len": o.block_len,
            "block_inflation": o.block_inflation, "fdr_q": o.fdr_q}


def integration_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """The VLM layer's held-out ridge prediction against the joint baseline's: one banded ridge
    over the image baseline layer's and the text baseline layer's features (one band each,
    himalaya's random search over band weights, alpha per voxel), both leave-one-run-out,
    compared by :func:`alignment.analyses.integration.integration_sites` over time blocks of
    ``options.block_len`` TRs. Everything is cross-validated; nothing is in-sample; the repeated
    segment never trains a model that scores it (:func:`alignment.stages.encoding.repeat_exclusion`).

    Arrays (V,): ``r_vlm``, ``r_joint`` (held-out r), ``diff`` = r_vlm − r_joint, ``p``
    (one-sided, VLM better than the joint baseline), ``q`` (BH-FDR), ``sites`` (1 where
    q < fdr_q and diff > 0); descriptive: ``r_image``, ``r_text`` (each baseline alone, ridge)
    and ``p_each`` (better than each baseline separately — also true of additive voxels, never
    the sites). Meta ``baselines``: the layers compared; ``inflation``: λ of each block test
    (the cross-fitting inflation of its null variance, estimated from the voxels or bounded:
    ``inflation_estimated``)."""
    from alignment.analyses.integration import integration_sites
    from alignment.encoding import fit_banded_ridge, fit_ridge

    o = study.options
    image, text = (baseline_layer(unit, inputs, role) for role in BASELINE_ROLES)
    Y = study.bold(unit.subject)
    alphas = np.asarray(o.alphas)
    designs = {"vlm": study.design(unit.target.vlm), "image": study.design(image), "text": study.design(text)}
    exclude = repeat_exclusion(study)
    preds = {k: fit_ridge(X, Y, study.runs, alphas=alphas, return_predictions=True, exclude=exclude,
                          **study.fit_backend).predictions
             for k, X in designs.items()}
    joint = fit_banded_ridge([designs["image"], designs["text"]], Y, study.runs, alphas=alphas, n_iter=o.banded_iter,
                             band_names=BASELINE_ROLES, random_state=o.seed, compute_unique=False,
                             return_predictions=True, exclude=exclude, **study.fit_backend).predictions
    res = integration_sites(Y, preds["vlm"], joint, runs=study.runs, block_len=o.block_len, q=o.fdr_q,
                            pred_image=preds["image"], pred_text=preds["text"], inflation=o.block_inflation)
    arrays = {name: np.asarray(getattr(res, name), np.float32)
              for name in ("r_vlm", "r_joint", "r_image", "r_text", "diff", "p", "q", "p_each")}
    arrays["sites"] = res.sites.astype(np.uint8)
    return arrays, {"description": f"integration {unit.target.vlm.label()} sub-{unit.subject}",
                    "baselines": {"image": asdict(image), "text": asdict(text)},
                    "inflation": res.inflation, "inflation_estimated": res.inflation_estimated}


def integration_targets(keys, plan, baselines) -> list[IntegrationKey]:
    """Every layer of a plan against the baselines (the baseline models are not tested)."""
    if baselines is None:
        raise ValueError("the integration analysis needs baselines (an image and a text model)")
    if plan.spec in (baselines.image, baselines.text):
        return []
    return [IntegrationKey(k, baselines) for k in keys]


register(Stage(
    name="integration", gpu=True, version=6, target=IntegrationKey, inputs=integration_inputs,
    params=integration_params,
    compute=integration_compute,
    options=("hrf", "alphas", "banded_iter", "seed", "block_len", "block_inflation", "fdr_q"),
    analysis="integration", expand=integration_targets,
    doc="integration sites vs a joint image+text baseline: r_vlm, r_joint, diff, p, q, sites (V,)",
))
