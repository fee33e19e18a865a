"""The neuron-mapping GLM: AR(p) noise model against nilearn, calibration under noise it does not
assume, joint links of one-atom voxels, and the atoms' collinearity against statsmodels."""

import numpy as np
import pytest

from alignment.analyses.redundancy import atom_collinearity, dice_overlap, links_per_voxel
from alignment.encoding import fit_atoms_glm, make_glm_design
from alignment.keys import Options
from alignment.stages.mapping import atoms_glm
from benchmarks.bench_glm_calibration import NOISES, simulate_atoms, simulate_noise


def _runs(n_runs=4, run_len=200):
    return np.repeat(np.arange(n_runs), run_len)


def test_ar3_matches_nilearn():
    """noise_model="ar3" with the joint model's residuals is nilearn's run_glm(noise_model="ar3")
    + compute_contrast: same k-means groups, same whitening, same t."""
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import run_glm

    rng = np.random.default_rng(0)
    runs = _runs(3, 100)
    atoms = simulate_atoms(rng, runs, n_atoms=4)
    Y = simulate_noise(rng, "white+slow", (runs.size, 80), runs)
    Y[:, :20] += atoms[:, :1] * 0.5
    res = fit_atoms_glm(atoms, Y, runs, noise_model="ar3", bins=15, ar_residuals="model")
    labels, results = run_glm(Y, res.design, noise_model="ar3", bins=15, random_state=0)
    assert res.rho.shape == (80, 3) and len(np.unique(res.rho, axis=0)) == 15
    for k in range(atoms.shape[1]):
        con = compute_contrast(labels, results, np.eye(res.design.shape[1])[k], stat_type="t")
        np.testing.assert_allclose(res.t[k], con.stat(), atol=1e-8)
        np.testing.assert_allclose(res.beta[k], con.effect_size(), atol=1e-10)
        assert res.dof == con.dof


@pytest.mark.parametrize("glm", ["separate", "joint"])
def test_torch_backend_equals_numpy(glm):
    """The GLM stage's fit (AR(5) from bias-corrected nuisance residuals, k-means AR groups,
    whitened refits) on torch tensors equals the numpy fit within 1e-4 (measured ~1e-13 in
    float64); an unknown backend is refused."""
    rng = np.random.default_rng(3)
    runs = _runs(3, 120)
    atoms = simulate_atoms(rng, runs, n_atoms=6)
    Y = simulate_noise(rng, "pink", (runs.size, 150), runs)
    Y[:, :40] += atoms[:, :2] @ rng.standard_normal((2, 40)) * 0.4
    Y[:, 7] = 2.0  # a constant voxel: degenerate on both
    options = Options(glm=glm)
    cpu, q_cpu = atoms_glm(atoms, Y, runs, 1.0, options, voxel_chunk=64)
    tch, q_tch = atoms_glm(atoms, Y, runs, 1.0, options, voxel_chunk=64, backend="torch", device="cpu")
    np.testing.assert_allclose(tch.t, cpu.t, atol=1e-4)
    np.testing.assert_allclose(tch.beta, cpu.beta, atol=1e-4)
    np.testing.assert_allclose(tch.rho, cpu.rho, atol=1e-4)
    np.testing.assert_allclose(q_tch, q_cpu, atol=1e-4)
    assert (cpu.t[:, 7] == 0).all() and (tch.t[:, 7] == 0).all() and (q_cpu[:, :40] < 0.05).any()
    with pytest.raises(ValueError, match="backend"):
        fit_atoms_glm(atoms, Y, runs, backend="jax")


def test_noise_model_errors():
    rng = np.random.default_rng(0)
    runs = _runs(2, 60)
    atoms = simulate_atoms(rng, runs, n_atoms=2)
    Y = rng.standard_normal((runs.size, 3))
    for bad in ("ar0", "ar", "arma", "AR3"):
        with pytest.raises(ValueError, match="noise_model"):
            fit_atoms_glm(atoms, Y, runs, noise_model=bad)
    with pytest.raises(ValueError, match="ar_residuals"):
        fit_atoms_glm(atoms, Y, runs, ar_residuals="full")


@pytest.mark.parametrize("noise", NOISES)
def test_default_glm_holds_its_level_under_noise_it_does_not_assume(noise):
    """Null voxels (BOLD independent of the atoms) under AR(1), AR(1) + slow AR(0.9),
    white + slow AR(0.9), 1/f and an unmodelled response through a late HRF, each with slow
    drift: the mapping's GLMs (marginal, the default, and joint; AR(5) from bias-corrected
    nuisance-only residuals) stay near their level, where nilearn's AR(1) does not under slow
    noise."""
    rng = np.random.default_rng(1)
    runs = _runs()
    atoms = simulate_atoms(rng, runs, n_atoms=16)
    Y = simulate_noise(rng, noise, (runs.size, 400), runs)
    for glm in ("separate", "joint"):
        fit, _ = atoms_glm(atoms, Y, runs, 1.0, Options(glm=glm))
        p = fit.p.ravel()
        # 6400 tests: binomial sd of the share at .05 is 0.003 (tests within a voxel correlate)
        assert 0.03 <= (p < 0.05).mean() <= 0.07, glm
        assert (p < 0.001).mean() <= 0.003, glm
    if noise in ("white+slow", "pink"):
        old = fit_atoms_glm(atoms, Y, runs, noise_model="ar1", ar_residuals="model")
        assert (old.p < 0.05).mean() > 0.09  # the test can fail: the nilearn AR(1) GLM does


def _one_atom_voxels(seed=0, n_atoms=16, per_atom=12, n_null=200, amp=1.0):
    """Voxels driven by exactly one atom each (per_atom voxels per atom), then null voxels, in
    AR(1) + slow AR(0.9) noise with drift; atoms realistically collinear."""
    rng = np.random.default_rng(seed)
    runs = _runs()
    atoms = simulate_atoms(rng, runs, n_atoms=n_atoms)
    driver = np.repeat(np.arange(n_atoms), per_atom)
    Y = simulate_noise(rng, "ar1+slow", (runs.size, driver.size + n_null), runs)
    Y[:, :driver.size] += amp * atoms[:, driver] * rng.choice([-1, 1], driver.size)
    return atoms, Y, runs, driver


def test_one_atom_voxels_link_to_one_atom_in_the_joint_glm():
    atoms, Y, runs, driver = _one_atom_voxels()
    corr = np.abs(np.corrcoef(atoms.T))[np.triu_indices(atoms.shape[1], 1)]
    assert np.median(corr) > 0.25 and corr.max() > 0.7  # collinear like real atoms
    links, dice = {}, {}
    for glm in ("joint", "separate"):
        _, q = atoms_glm(atoms, Y, runs, 1.0, Options(glm=glm))
        sig = q < 0.05
        planted = sig[:, :driver.size]
        hit = planted[driver, np.arange(driver.size)]
        lpv = links_per_voxel(planted)
        links[glm] = lpv[hit].mean()
        d = dice_overlap(sig)
        dice[glm] = np.nanmean(d[~np.eye(d.shape[0], dtype=bool)])
        if glm == "joint":
            assert hit.mean() >= 0.9  # the driving atom is found
            assert links[glm] <= 1.2  # ... and (almost) alone
            assert dice[glm] <= 0.05  # unrelated atoms' BN maps do not overlap
            assert sig[:, driver.size:].any(0).mean() <= 0.05  # null voxels
    # marginal GLMs link every correlated atom: the test can fail
    assert links["separate"] >= 3.0 and dice["separate"] >= 0.2


def test_planted_effect_recovered_under_long_memory_noise():
    """A weak atom -> voxel effect in 1/f noise + drift is still found by the default GLM with the
    planted sign."""
    rng = np.random.default_rng(3)
    runs = _runs()
    atoms = simulate_atoms(rng, runs, n_atoms=8)
    Y = simulate_noise(rng, "pink", (runs.size, 120), runs)
    sign = rng.choice([-1, 1], 60)
    Y[:, :60] += 0.5 * atoms[:, [2]] * sign
    fit, q = atoms_glm(atoms, Y, runs, 1.0, Options())
    found = q[2, :60] < 0.05
    assert found.mean() >= 0.8
    assert (np.sign(fit.t[2, :60][found]) == sign[found]).all()
    assert (q[2, 60:] < 0.05).mean() <= 0.05


def test_collinearity_matches_statsmodels_vif_and_corrcoef():
    from statsmodels.stats.outliers_influence import variance_inflation_factor

    rng = np.random.default_rng(2)
    runs = _runs(3, 120)
    atoms = simulate_atoms(rng, runs, n_atoms=6)
    design, _ = make_glm_design(atoms, runs)
    max_corr, vif = atom_collinearity(design, 6)
    with np.errstate(all="ignore"), pytest.warns(UserWarning):  # statsmodels' implicit-constant check
        ref = [variance_inflation_factor(design, k) for k in range(6)]
    np.testing.assert_allclose(vif, ref, rtol=1e-8)
    c = np.abs(np.corrcoef(atoms.T))
    np.fill_diagonal(c, 0)
    np.testing.assert_allclose(max_corr, c.max(1), atol=1e-12)
    # an atom that is a mix of two others: infinite VIF; an orthogonal-ish pair: VIF near 1
    dup = np.column_stack([atoms[:, :2], atoms[:, 0] + atoms[:, 1]])
    assert np.isinf(atom_collinearity(make_glm_design(dup, runs)[0], 3)[1]).all()
    with pytest.raises(ValueError, match="atoms first"):
        atom_collinearity(design, design.shape[1] + 1)
