"""Stages ``atoms`` and ``glm``: neuron-level mapping by sparse dictionary + GLM (DESIGN §5.2)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from alignment.keys import LayerKey
from alignment.stages.base import Stage, Unit, register
from alignment.stages.encoding import layer_inputs
from alignment.timing import spm_hrf_convolve, zscore_runs


def atoms_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    return {"ans": inputs["ans"].key, "layer": asdict(unit.target), "n_atoms": o.n_atoms, "sparsity": o.sparsity,
            "seed": o.seed, "hrf": o.hrf}


def atoms_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Sparse dictionary of one layer (in-sample, all runs): ``codes`` (N, K), ``atoms``
    (K, T), ``regressors`` (T, K) the HRF-convolved atoms z-scored within run."""
    from alignment.dictionary import learn_atoms

    o, runs = study.options, study.runs
    A = zscore_runs(study.raw_ans(unit.target), runs)
    learned = learn_atoms(A, n_atoms=min(o.n_atoms, A.shape[1]), alpha=o.sparsity, seed=o.seed)
    atoms = np.asarray(learned.atoms, np.float32)  # (K, T)
    regressors = atoms.T
    if o.hrf == "spm":
        regressors = spm_hrf_convolve(zscore_runs(regressors, runs), study.dataset.tr, runs=runs)
    regressors = zscore_runs(regressors, runs)
    return ({"codes": np.asarray(learned.codes, np.float32), "atoms": atoms,
             "regressors": np.asarray(regressors, np.float32)}, {"description": f"atoms {unit.target.label()}"})


def glm_inputs(study, unit: Unit, resolve) -> dict:
    return {"atoms": Unit("atoms", unit.target)}


def glm_params(study, unit: Unit, inputs) -> dict:
    return {**study.bold_params(unit.subject), "atoms": inputs["atoms"].key, "glm": study.options.glm}


def glm_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Voxel-wise AR(1) GLM of the HRF-convolved atoms: ``t``, ``beta``, ``q`` (K, V).

    With ``glm="separate"`` (default) each atom is tested in its own GLM with the nuisance
    regressors: HRF-smoothed atoms are collinear, and a joint model splits a voxel's response
    among them until no single atom is significant. ``q`` is BH-FDR across voxels within each
    atom (significant BNs of atom k: q < fdr_q).
    """
    from alignment.encoding import fit_atoms_glm
    from alignment.stats import fdr_bh

    o = study.options
    fit = fit_atoms_glm(np.asarray(inputs["atoms"]["regressors"]), study.bold(unit.subject), study.runs,
                        tr=study.dataset.tr, p_cutoff=0.25, separate=o.glm == "separate")
    q = np.stack([fdr_bh(p_k, o.fdr_q)[1] for p_k in np.asarray(fit.p)])
    return ({"t": np.asarray(fit.t, np.float32), "beta": np.asarray(fit.beta, np.float32), "q": q.astype(np.float32)},
            {"description": f"glm {unit.target.label()} sub-{unit.subject}"})


register(Stage(
    name="atoms", version=1, target=LayerKey, per_subject=False, inputs=layer_inputs, params=atoms_params,
    compute=atoms_compute, options=("n_atoms", "sparsity", "seed", "hrf"),
    doc="sparse dictionary of a layer's ANs: codes (N, K), atoms (K, T), regressors (T, K)",
))
register(Stage(
    name="glm", version=2, target=LayerKey, inputs=glm_inputs, params=glm_params, compute=glm_compute,
    options=("glm",), analysis="neuron_mapping", default=True, expand=lambda keys, plan, baselines: list(keys),
    doc="voxel-wise AR(1) GLM of the atoms: t, beta, q (K, V)",
))
