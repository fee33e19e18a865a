"""Stage ``lesion``: cross-validated lesion curves of one layer (DESIGN §5.6)."""

from __future__ import annotations

import numpy as np

from alignment.keys import LesionKey
from alignment.stages.base import Stage, Unit, register
from alignment.stages.encoding import repeat_exclusion


def lesion_inputs(study, unit: Unit, resolve) -> dict:
    return {"encoding": Unit("encoding", unit.target.layer, unit.subject)}


def lesion_params(study, unit: Unit, inputs) -> dict:
    t, o = unit.target, study.options
    return {"encoding": inputs["encoding"].key, "fdr_q": float(t.fdr_q),
            "fractions": [float(f) for f in t.fractions], "n_repeats": int(t.n_repeats),
            "max_voxels": int(t.max_voxels), "seed": o.seed, "hrf": o.hrf, "n_atoms": o.n_atoms,
            "sparsity": o.sparsity, "glm": o.glm, "glm_noise": o.glm_noise}


def train_ranking(A, Y, runs, tr: float, options, fdr_q: float, **backend) -> np.ndarray:
    """Importance of every AN learned from the given (training) TRs only: its number of
    linked BNs (:func:`alignment.analyses.redundancy.links_per_an`) in the neuron mapping
    of these TRs, i.e. a sparse dictionary of A and the AR(1) GLM of its atoms on Y, with
    significant (atom, voxel) pairs at BH q < ``fdr_q`` (as the ``atoms`` and ``glm`` stages,
    on fewer runs).

    Parameters
    ----------
    A : ndarray, shape (T_train, N)
        Raw ANs of the training TRs.
    Y : ndarray, shape (T_train, V)
        BOLD of the training TRs (all voxels: a BN count is over the whole brain).
    runs : ndarray, shape (T_train,)
    backend
        ``backend``, ``device``, ``voxel_chunk`` of the GLM (``Study.fit_backend``).

    Returns
    -------
    ndarray, shape (N,), float
    """
    from alignment.analyses.redundancy import links_per_an
    from alignment.stages.mapping import atoms_glm, learn_layer_atoms

    codes, _, regressors = learn_layer_atoms(A, runs, tr, options)
    _, q = atoms_glm(regressors, Y, runs, tr, options, **backend)
    return links_per_an(codes, q < fdr_q).astype(np.float64)


def lesion_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Held-out encoding r of the layer's significant voxels (q < fdr_q in its encoding map; at
    most ``max_voxels``, the best by r; the best 50 when none is significant) as ANs are
    removed at random or most-linked first, leave-one-run-out.

    Cross-validated: for each held-out run the ANs are ranked by their number of linked BNs in
    a dictionary + GLM computed on the training runs only (:func:`train_ranking`), the
    top-ranked ones are removed, the ridge is fitted on the training runs (alpha by inner CV
    there) and scored on the held-out run; the curve averages the folds. The random curve,
    the reference, removes the same random ANs in every fold. The scored voxels come from the
    layer's encoding map (all folds), the same voxels for both curves. With ``hrf="fir"`` an AN
    removed takes all its delayed columns with it.

    Arrays: ``fractions``, ``random_mean``, ``random_sd``, ``ranked`` (F,), ``rankings`` (L, N)
    the per-fold importance scores, ``n_voxels`` (scalar).
    """
    from alignment.analyses.redundancy import lesion_curve
    from alignment.features import design_an_index

    t, o = unit.target, study.options
    enc = inputs["encoding"]
    r = np.asarray(enc["scores"])
    vox = np.flatnonzero(np.asarray(enc["q"]) < t.fdr_q)
    if vox.size == 0:
        vox = np.argsort(-r)[:50]
    vox = vox[np.argsort(-r[vox])][:t.max_voxels]
    A = study.raw_ans(t.layer)
    X = study.design(t.layer)
    Y_all = study.bold(unit.subject)
    runs, tr = study.runs, study.dataset.tr

    def ranking(train):  # reads the training TRs only
        return train_ranking(A[train], Y_all[train], runs[train], tr, o, t.fdr_q, **study.fit_backend)

    Y = Y_all[:, vox]
    common = dict(an_index=design_an_index(A.shape[1], X.shape[1]),
                  fit_kwargs={"alphas": np.asarray(o.alphas), "exclude": repeat_exclusion(study), **study.fit_backend})
    rnd = lesion_curve(X, Y, runs, "random", t.fractions, seed=o.seed, n_repeats=t.n_repeats, **common)
    rk = lesion_curve(X, Y, runs, "ranked", t.fractions, ranking=ranking, **common)
    return ({"fractions": np.asarray(t.fractions, np.float64), "random_mean": rnd.mean_r, "random_sd": rnd.sd_r,
             "ranked": rk.mean_r, "rankings": rk.rankings, "n_voxels": np.asarray(vox.size)},
            {"description": f"lesion {t.layer.label()} sub-{unit.subject}"})


register(Stage(
    name="lesion", gpu=True, version=5, target=LesionKey, inputs=lesion_inputs, params=lesion_params,
    compute=lesion_compute, options=("seed", "hrf", "n_atoms", "sparsity", "glm", "glm_noise"), analysis="lesion",
    expand=lambda keys, plan, baselines: [LesionKey(k) for k in keys],
    doc="cross-validated lesion curves: fractions, random_mean, random_sd, ranked (F,), rankings (L, N), n_voxels",
))
