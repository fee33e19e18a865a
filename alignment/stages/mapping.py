"""Stages ``atoms`` and ``glm``: neuron-level mapping by sparse dictionary + GLM (DESIGN §5.2)."""

from __future__ import annotations

from dataclasses import asdict, replace

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


def regressor_collinearity(regressors: np.ndarray, runs: np.ndarray, tr: float) -> tuple[np.ndarray, np.ndarray]:
    """Collinearity of atom regressors (T, K) in the GLM design the ``glm`` stage fits (with its
    drift and run intercepts): per atom, max |corr| with another atom and the VIF, each (K,)
    float32 (:func:`alignment.analyses.redundancy.atom_collinearity`)."""
    from alignment.analyses.redundancy import atom_collinearity
    from alignment.encoding import make_glm_design

    design, _ = make_glm_design(regressors, runs, tr=tr)
    max_corr, vif = atom_collinearity(design, regressors.shape[1])
    return max_corr.astype(np.float32), vif.astype(np.float32)


def atoms_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Sparse dictionary of one layer (in-sample, all runs): ``codes`` (N, K), ``atoms``
    (K, T), ``regressors`` (T, K) the atoms convolved with the SPM HRF (for ``hrf`` "spm"
    and "fir", :data:`GLM_HRF`), z-scored within run; the regressors' collinearity in the GLM
    design: ``max_corr`` (K,) and ``vif`` (K,)."""
    codes, atoms, regressors = learn_layer_atoms(study.raw_ans(unit.target), study.runs, study.dataset.tr,
                                                 study.options)
    max_corr, vif = regressor_collinearity(regressors, study.runs, study.dataset.tr)
    return ({"codes": codes, "atoms": atoms, "regressors": regressors, "max_corr": max_corr, "vif": vif},
            {"description": f"atoms {unit.target.label()}"})


def glm_inputs(study, unit: Unit, resolve) -> dict:
    return {"atoms": Unit("atoms", unit.target)}


def glm_params(study, unit: Unit, inputs) -> dict:
    o = study.options
    return {**study.bold_params(unit.subject), "atoms": inputs["atoms"].key, "glm": o.glm, "glm_noise": o.glm_noise}


#: what the two GLM options are called wherever they are shown
GLM_LABELS = {"joint": "joint", "separate": "marginal"}


def atoms_glm(regressors: np.ndarray, Y: np.ndarray, runs: np.ndarray, tr: float, options,
              voxel_chunk: int | None = None, *, backend: str = "numpy", device: str = "cpu"):
    """The voxel-wise GLM of atom regressors (T, K) on BOLD Y (T, V) with the noise model
    ``options.glm_noise``, and its BH-FDR ``q`` (K, V) across voxels within each atom.
    Returns (GLMResult, q). ``backend``/``device``: where the voxels' products run
    (``Study.fit_backend``: torch on the GPU when the study's device is cuda).

    The AR coefficients come from the residuals of the nuisance-only model (drift and run
    intercepts), with their autocovariances corrected for that model's projection (Worsley et
    al. 2002): the joint model's residuals have part of the slow noise fitted away by the smooth
    atoms, the drift terms remove more, and an AR model fitted to what is left under-whitens, which
    inflates t (``benchmarks/bench_glm_calibration.py``)."""
    from alignment.encoding import fit_atoms_glm
    from alignment.stats import fdr_bh

    fit = fit_atoms_glm(regressors, Y, runs, tr=tr, noise_model=options.glm_noise, p_cutoff=0.25,
                        separate=options.glm == "separate", ar_residuals="nuisance", ar_bias=True,
                        backend=backend, device=device,
                        **({} if voxel_chunk is None else {"voxel_chunk": voxel_chunk}))
    q = np.stack([fdr_bh(p_k, options.fdr_q)[1] for p_k in np.asarray(fit.p)])
    return fit, q


def glm_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Voxel-wise AR(p) GLM of the HRF-convolved atoms: ``t``, ``beta``, ``q`` (K, V) of the
    GLM the mapping reads (``options.glm``), and ``t_joint``, ``q_joint`` (K, V) of the joint
    GLM, which the redundancy counts read.

    ``glm="separate"`` (default, shown as "marginal") tests each atom in its own GLM with the
    nuisance regressors: t of atom k is its effect alone, which ranks the ANs that drive a voxel
    even when HRF-smoothed atoms are collinear. ``glm="joint"`` puts all atoms in one model: t of
    atom k is its effect given the other atoms, so a voxel driven by one atom is linked to that
    atom and not to every atom correlated with it; the links per voxel and the Dice overlap are
    counted from this model whatever ``glm`` is (the atoms' collinearity, ``max_corr`` and
    ``vif`` of the ``atoms`` stage, says how well it can tell them apart). ``q`` is BH-FDR
    across voxels within each atom (significant BNs of atom k: q < fdr_q).
    """
    o = study.options
    regressors, Y = np.asarray(inputs["atoms"]["regressors"]), study.bold(unit.subject)
    backend = study.fit_backend  # backend, device and the study's voxel_chunk
    fit, q = atoms_glm(regressors, Y, study.runs, study.dataset.tr, o, **backend)
    out = {"t": np.asarray(fit.t, np.float32), "beta": np.asarray(fit.beta, np.float32), "q": q.astype(np.float32)}
    if o.glm == "joint":
        out.update(t_joint=out["t"], q_joint=out["q"])
    else:
        joint, q_joint = atoms_glm(regressors, Y, study.runs, study.dataset.tr, replace(o, glm="joint"), **backend)
        out.update(t_joint=np.asarray(joint.t, np.float32), q_joint=q_joint.astype(np.float32))
    return out, {"description": f"glm ({GLM_LABELS[o.glm]}, {o.glm_noise}) {unit.target.label()} sub-{unit.subject}"}


register(Stage(
    name="atoms", version=2, target=LayerKey, per_subject=False, inputs=layer_inputs, params=atoms_params,
    compute=atoms_compute, options=("n_atoms", "sparsity", "seed", "hrf"),
    doc="sparse dictionary of a layer's ANs: codes (N, K), atoms (K, T), regressors (T, K), max_corr and vif (K,)",
))
register(Stage(
    name="glm", gpu=True, version=5, target=LayerKey, inputs=glm_inputs, params=glm_params, compute=glm_compute,
    options=("glm", "glm_noise"), analysis="neuron_mapping", default=True,
    expand=lambda keys, plan, baselines: list(keys),
    doc="voxel-wise AR(p) GLM of the atoms (marginal: one GLM per atom, or joint): t, beta, q (K, V); "
        "the joint GLM's t_joint, q_joint (K, V)",
))
