"""Stages ``atoms`` and ``glm``: neuron-level mapping by sparse dictionary + GLM (DESIGN §5.2)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from alignment.keys import LayerKey
from alignment.stages.base import Stage, Unit, register
from alignment.stages.encoding import layer_inputs
from alignment.timing import spm_hrf_convolve, zscore_runs


#: the HRF the atom GLM convolves its atoms with, per ``Options.hrf``: an FIR model would give D
#: t values per atom where the AN→BN score needs one, so "fir" (a ridge-design option) keeps the
#: canonical HRF here
GLM_HRF = {"spm": "spm", "fir": "spm", "none": "none"}


def atoms_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    return {"ans": inputs["ans"].key, "layer": asdict(unit.target), "n_atoms": o.n_atoms, "sparsity": o.sparsity,
            "seed": o.seed, "hrf": o.hrf}


def atom_regressors(atoms: np.ndarray, runs: np.ndarray, tr: float, hrf: str) -> np.ndarray:
    """GLM regressors of temporal atoms (K, T): convolved with the HRF of :data:`GLM_HRF`
    within run, z-scored within run. Returns (T, K) float32."""
    regressors = np.asarray(atoms).T
    if GLM_HRF[hrf] == "spm":
        regressors = spm_hrf_convolve(zscore_runs(regressors, runs), tr, runs=runs)
    return np.asarray(zscore_runs(regressors, runs), np.float32)


def learn_layer_atoms(A: np.ndarray, runs: np.ndarray, tr: float, options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse dictionary of raw ANs A (T, N), z-scored within run: ``codes`` (N, K), ``atoms``
    (K, T) and their GLM ``regressors`` (T, K), float32."""
    from alignment.dictionary import learn_atoms

    A = zscore_runs(A, runs)
    learned = learn_atoms(A, n_atoms=min(options.n_atoms, A.shape[1]), alpha=options.sparsity, seed=options.seed)
    atoms = np.asarray(learned.atoms, np.float32)
    return np.asarray(learned.codes, np.float32), atoms, atom_regressors(atoms, runs, tr, options.hrf)


def atoms_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Sparse dictionary of one layer (in-sample, all runs): ``codes`` (N, K), ``atoms``
    (K, T), ``regressors`` (T, K) the atoms convolved with the SPM HRF (for ``hrf`` "spm"
    and "fir", :data:`GLM_HRF`), z-scored within run."""
    codes, atoms, regressors = learn_layer_atoms(study.raw_ans(unit.target), study.runs, study.dataset.tr,
                                                 study.options)
    return ({"codes": codes, "atoms": atoms, "regressors": regressors}, {"description": f"atoms {unit.target.label()}"})


def glm_inputs(study, unit: Unit, resolve) -> dict:
    return {"atoms": Unit("atoms", unit.target)}


def glm_params(study, unit: Unit, inputs) -> dict:
    return {**study.bold_params(unit.subject), "atoms": inputs["atoms"].key, "glm": study.options.glm}


def atoms_glm(regressors: np.ndarray, Y: np.ndarray, runs: np.ndarray, tr: float, options):
    """The voxel-wise AR(1) GLM of atom regressors (T, K) on BOLD Y (T, V), and its BH-FDR
    ``q`` (K, V) across voxels within each atom. Returns (GLMResult, q)."""
    from alignment.encoding import fit_atoms_glm
    from alignment.stats import fdr_bh

    fit = fit_atoms_glm(regressors, Y, runs, tr=tr, p_cutoff=0.25, separate=options.glm == "separate")
    q = np.stack([fdr_bh(p_k, options.fdr_q)[1] for p_k in np.asarray(fit.p)])
    return fit, q


def glm_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Voxel-wise AR(1) GLM of the HRF-convolved atoms: ``t``, ``beta``, ``q`` (K, V).

    With ``glm="separate"`` (default) each atom is tested in its own GLM with the nuisance
    regressors: HRF-smoothed atoms are collinear, and a joint model splits a voxel's response
    among them until no single atom is significant. ``q`` is BH-FDR across voxels within each
    atom (significant BNs of atom k: q < fdr_q).
    """
    fit, q = atoms_glm(np.asarray(inputs["atoms"]["regressors"]), study.bold(unit.subject), study.runs,
                       study.dataset.tr, study.options)
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
