"""Stage ``lesion``: lesion curves of one layer (DESIGN §5.6)."""

from __future__ import annotations

import numpy as np

from alignment.keys import LesionKey
from alignment.stages.base import Stage, Unit, register


def lesion_inputs(study, unit: Unit, resolve) -> dict:
    layer = unit.target.layer
    return {"encoding": Unit("encoding", layer, unit.subject), "glm": Unit("glm", layer, unit.subject),
            "atoms": Unit("atoms", layer)}


def lesion_params(study, unit: Unit, inputs) -> dict:
    t = unit.target
    return {"encoding": inputs["encoding"].key, "glm": inputs["glm"].key, "fdr_q": float(t.fdr_q),
            "fractions": [float(f) for f in t.fractions], "n_repeats": int(t.n_repeats),
            "max_voxels": int(t.max_voxels), "seed": study.options.seed}


def lesion_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Encoding r of the layer's significant voxels (q < fdr_q; at most ``max_voxels``, the
    best by r; the best 50 when none is significant) as ANs are removed at random or by
    their number of linked BNs (:func:`alignment.analyses.redundancy.links_per_an`), most
    linked first. Arrays: ``fractions``, ``random_mean``, ``random_sd``, ``ranked`` (F,),
    ``n_voxels`` (scalar). The ranking reads the GLM of all runs: in-sample."""
    from alignment.analyses.redundancy import lesion_curve, links_per_an

    t, o = unit.target, study.options
    enc, glm = inputs["encoding"], inputs["glm"]
    r = np.asarray(enc["scores"])
    vox = np.flatnonzero(np.asarray(enc["q"]) < t.fdr_q)
    if vox.size == 0:
        vox = np.argsort(-r)[:50]
    vox = vox[np.argsort(-r[vox])][:t.max_voxels]
    X = study.design(t.layer)
    Y = study.bold(unit.subject)[:, vox]
    ranking = links_per_an(np.asarray(inputs["atoms"]["codes"]), np.asarray(glm["q"]) < t.fdr_q).astype(float)
    alphas = np.asarray(o.alphas)
    rnd = lesion_curve(X, Y, study.runs, "random", t.fractions, seed=o.seed, n_repeats=t.n_repeats,
                       fit_kwargs={"alphas": alphas})
    rk = lesion_curve(X, Y, study.runs, "ranked", t.fractions, ranking=ranking, fit_kwargs={"alphas": alphas})
    return ({"fractions": np.asarray(t.fractions, np.float64), "random_mean": rnd.mean_r, "random_sd": rnd.sd_r,
             "ranked": rk.mean_r, "n_voxels": np.asarray(vox.size)},
            {"description": f"lesion {t.layer.label()} sub-{unit.subject}"})


register(Stage(
    name="lesion", version=1, target=LesionKey, inputs=lesion_inputs, params=lesion_params,
    compute=lesion_compute, options=("seed",), analysis="lesion",
    expand=lambda keys, plan, baselines: [LesionKey(k) for k in keys],
    doc="lesion curves: fractions, random_mean, random_sd, ranked (F,), n_voxels",
))
