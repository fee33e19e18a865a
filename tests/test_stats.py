"""Statistics against scipy / statsmodels, and calibration of the prediction-accuracy nulls."""

import numpy as np
import pytest
from scipy import stats

from alignment.encoding import fit_ridge
from alignment.stats import (
    block_permutation_null,
    bootstrap_ci,
    circular_shift_null,
    fdr_bh,
    fisher_z,
    group_ttest,
    noise_ceiling,
    pearson_r,
    simes,
)


# ---------------------------------------------------------------------------------------------
# FDR, correlation, t-test
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fdr_bh_matches_scipy_and_statsmodels(seed):
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=300), rng.uniform(0, 1e-3, size=40)])
    p[5] = p[6]  # ties
    reject, q = fdr_bh(p, q=0.05)
    np.testing.assert_allclose(q, stats.false_discovery_control(p, method="bh"), rtol=1e-12)
    sm_reject, sm_q, _, _ = multipletests(p, alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose(q, sm_q, rtol=1e-12)
    np.testing.assert_array_equal(reject, sm_reject)
    assert reject.sum() >= 30


def test_fdr_bh_shapes_and_nans():
    p = np.array([[0.001, 0.5], [np.nan, 0.01]])
    reject, q = fdr_bh(p, q=0.05)
    assert reject.shape == q.shape == (2, 2)
    assert np.isnan(q[1, 0]) and not reject[1, 0]
    finite = ~np.isnan(p)
    np.testing.assert_allclose(q[finite], stats.false_discovery_control(p[finite]))
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        fdr_bh([0.2, 1.5])
    with pytest.raises(ValueError, match="q must be"):
        fdr_bh([0.2], q=0)


def test_simes_is_each_familys_smallest_bh_adjusted_p():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=(7, 60)) ** 2
    p[2, 3] = np.nan  # left out of its family
    p[:, 5] = np.nan  # an empty family
    got = simes(p)
    for v in range(p.shape[1]):
        family = p[:, v][np.isfinite(p[:, v])]
        want = stats.false_discovery_control(family).min() if family.size else np.nan
        np.testing.assert_allclose(got[v], want, equal_nan=True)
    np.testing.assert_array_equal(simes(p.T, axis=1), got)
    np.testing.assert_array_equal(simes(p[::-1]), got)  # blind to the order of the family
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        simes(np.array([0.5, 1.5]))


def _layered_p(rng, n_layers, n_voxels, signal_voxels, shift):
    """One-sided p (K, V) of K layers' maps: z correlated across layers by their distance
    (AR(0.6) over the layer index: positive, not exchangeable), with ``shift`` added in 3
    adjacent layers at the signal voxels (neighbouring layers carry the same information)."""
    z = np.empty((n_layers, n_voxels))
    z[0] = rng.standard_normal(n_voxels)
    for k in range(1, n_layers):
        z[k] = 0.6 * z[k - 1] + 0.8 * rng.standard_normal(n_voxels)
    first = rng.integers(0, n_layers - 2, n_voxels)
    for k in range(3):
        z[first[signal_voxels] + k, signal_voxels] += shift
    return stats.norm.sf(z)


def test_simes_family_over_layers_holds_fdr_where_the_union_of_layer_maps_does_not():
    """Voxels declared "predicted by some layer": BH over voxels of the Simes p over layers
    keeps the false discovery rate at q under positive dependence between layers; declaring a
    voxel wherever some layer's own BH map does is liberal (every map adds its false
    discoveries, the true ones are shared); the family still finds the planted voxels, and on
    pure noise declares nothing in most datasets."""
    rng = np.random.default_rng(0)
    n_layers, n_voxels, q = 8, 4000, 0.05
    fdp_family, fdp_union, power = [], [], []
    for _ in range(40):
        signal = np.zeros(n_voxels, bool)
        signal[rng.choice(n_voxels, 200, replace=False)] = True
        p = _layered_p(rng, n_layers, n_voxels, signal, shift=4.0)
        family = fdr_bh(simes(p), q)[0]
        union = np.any([fdr_bh(layer, q)[0] for layer in p], axis=0)
        fdp_family.append((family & ~signal).sum() / max(family.sum(), 1))
        fdp_union.append((union & ~signal).sum() / max(union.sum(), 1))
        power.append((family & signal).sum() / signal.sum())
    assert np.mean(fdp_family) <= q
    assert np.mean(fdp_union) > 1.5 * q
    assert np.mean(power) > 0.8
    empty = [not fdr_bh(simes(_layered_p(rng, n_layers, n_voxels, np.zeros(n_voxels, bool), 0.0)), q)[0].any()
             for _ in range(40)]
    assert np.mean(empty) >= 0.9


def test_pearson_r_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 6))
    b = a * 0.5 + rng.standard_normal((50, 6))
    ref = [stats.pearsonr(a[:, i], b[:, i])[0] for i in range(6)]
    np.testing.assert_allclose(pearson_r(a, b), ref, atol=1e-12)
    np.testing.assert_allclose(pearson_r(a.T, b.T, axis=1), ref, atol=1e-12)
    a[:, 0] = 1.0
    assert pearson_r(a, b)[0] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        pearson_r(a, b[:-1])


def test_fisher_z_and_group_ttest_match_scipy():
    rng = np.random.default_rng(1)
    r = np.clip(rng.normal(0.1, 0.1, size=(8, 40)), -0.99, 0.99)
    z = fisher_z(r)
    np.testing.assert_allclose(z, np.arctanh(r))
    assert np.isfinite(fisher_z(np.array([1.0, -1.0]))).all()
    for alt in ("two-sided", "greater", "less"):
        res = group_ttest(z, alternative=alt)
        ref = stats.ttest_1samp(z, 0.0, axis=0, alternative=alt)
        np.testing.assert_allclose(res.t, ref.statistic, rtol=1e-10)
        np.testing.assert_allclose(res.p, ref.pvalue, rtol=1e-10)
        assert res.dof == 7
    with pytest.raises(ValueError, match="at least 2 subjects"):
        group_ttest(z[:1])


# ---------------------------------------------------------------------------------------------
# Circular-shift and block-permutation nulls
# ---------------------------------------------------------------------------------------------


def _ar1(rng, shape, rho):
    e = rng.standard_normal(shape)
    out = np.empty(shape)
    out[0] = e[0] / np.sqrt(1 - rho ** 2)
    for t in range(1, shape[0]):
        out[t] = rho * out[t - 1] + e[t]
    return out


def _simulate(seed, n_signal=0, n_voxels=150, n_runs=4, run_len=100, n_features=10,
              rho=0.6, strength=0.8):
    """AR(1) features and AR(1) noise BOLD; the first n_signal voxels get a planted signal."""
    rng = np.random.default_rng(seed)
    runs = np.repeat(np.arange(n_runs), run_len)
    X = np.concatenate([_ar1(rng, (run_len, n_features), 0.7) for _ in range(n_runs)])
    Y = np.concatenate([_ar1(rng, (run_len, n_voxels), rho) for _ in range(n_runs)])
    if n_signal:
        W = rng.standard_normal((n_features, n_signal)) / np.sqrt(n_features)
        Y[:, :n_signal] += strength * (X @ W) / (X @ W).std(0)
    return X, Y, runs


def test_circular_shift_fft_equals_direct_roll():
    rng = np.random.default_rng(0)
    runs = np.repeat([0, 1], [40, 50])
    y = rng.standard_normal((90, 7))
    p = y * 0.3 + rng.standard_normal((90, 7))
    shifts = np.stack([rng.integers(5, 36, size=30), rng.integers(5, 46, size=30)], axis=1)
    pv, null = circular_shift_null(y, p, runs, shifts=shifts, coupled_folds=False,
                                   return_null=True)
    direct = np.zeros((30, 7))
    for j in range(30):
        for i, r in enumerate((0, 1)):
            m = runs == r
            direct[j] += pearson_r(y[m], np.roll(p[m], shifts[j, i], axis=0)) / 2
    np.testing.assert_allclose(null, direct, atol=1e-10)
    observed = np.mean([pearson_r(y[runs == r], p[runs == r]) for r in (0, 1)], axis=0)
    np.testing.assert_allclose(pv, (1 + (direct >= observed - 1e-12).sum(0)) / 31)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_circular_shift_null_controls_false_positives(seed):
    """Pure AR(1) noise: after BH at q = 0.05 at most 5 % of voxels are declared significant."""
    X, Y, runs = _simulate(seed)
    res = fit_ridge(X, Y, runs, np.logspace(-1, 4, 6), return_predictions=True)
    p = circular_shift_null(Y, res.predictions, runs, n_shifts=500, min_shift=10, seed=seed)
    np.testing.assert_allclose(
        np.mean([pearson_r(Y[runs == r], res.predictions[runs == r]) for r in range(4)], 0),
        res.scores, atol=1e-10)
    reject, _ = fdr_bh(p, q=0.05)
    assert reject.mean() <= 0.05
    # the null is calibrated, not just conservative: p roughly uniform
    assert 0.3 < np.median(p) < 0.7


def test_fold_coupling_correction():
    """Why coupled_folds exists: with leave-one-run-out predictions the plain per-run shift
    null is too narrow (run scores are positively correlated under H0); with a fixed model
    (prediction independent of all data) the plain null is calibrated."""
    X, Y, runs = _simulate(7, n_voxels=400)
    res = fit_ridge(X, Y, runs, np.logspace(-1, 4, 6), return_predictions=True)
    p_plain = circular_shift_null(Y, res.predictions, runs, n_shifts=300, seed=1,
                                  coupled_folds=False)
    p_corr = circular_shift_null(Y, res.predictions, runs, n_shifts=300, seed=1)
    assert (p_plain < 0.05).mean() > 0.09  # anticonservative
    assert (p_corr < 0.05).mean() < 0.07
    fixed = X @ np.random.default_rng(0).standard_normal((X.shape[1], Y.shape[1]))
    p_fixed = circular_shift_null(Y, fixed, runs, n_shifts=300, seed=1, coupled_folds=False)
    assert 0.02 < (p_fixed < 0.05).mean() < 0.08


def test_circular_shift_null_detects_planted_signal():
    X, Y, runs = _simulate(10, n_signal=50)
    res = fit_ridge(X, Y, runs, np.logspace(-1, 4, 6), return_predictions=True)
    p = circular_shift_null(Y, res.predictions, runs, n_shifts=500, seed=0)
    reject, _ = fdr_bh(p, q=0.05)
    assert reject[:50].mean() >= 0.9
    assert reject[50:].mean() <= 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normal_tail_controls_false_positives_and_resolves_small_p(seed):
    """The normal-tail p agrees with the Monte Carlo p where both resolve it, keeps BH false
    positives at ≤ 5 % on noise, and goes below 1 / (1 + n_shifts) for planted voxels."""
    X, Y, runs = _simulate(seed, n_signal=30, n_voxels=300)
    res = fit_ridge(X, Y, runs, np.logspace(-1, 4, 6), return_predictions=True)
    p_mc = circular_shift_null(Y, res.predictions, runs, n_shifts=500, seed=seed)
    p_normal = circular_shift_null(Y, res.predictions, runs, n_shifts=500, seed=seed, tail="normal")
    moderate = (p_mc > 0.05) & (p_mc < 0.95)
    assert np.abs(p_normal[moderate] - p_mc[moderate]).max() < 0.1
    assert np.median(p_normal[:30]) < 1 / 501
    reject, _ = fdr_bh(p_normal, q=0.05)
    assert reject[30:].mean() <= 0.05 and reject[:30].mean() >= 0.9
    with pytest.raises(ValueError, match="tail"):
        circular_shift_null(Y, res.predictions, runs, n_shifts=10, tail="exact")


def test_block_permutation_null():
    X, Y, runs = _simulate(20, n_signal=40)
    res = fit_ridge(X, Y, runs, np.logspace(-1, 4, 6), return_predictions=True)
    p, null = block_permutation_null(Y, res.predictions, runs, block_size=10, n_perms=400,
                                     seed=0, return_null=True)
    assert null.shape == (400, Y.shape[1])
    reject, _ = fdr_bh(p, q=0.05)
    assert reject[:40].mean() >= 0.9
    assert reject[40:].mean() <= 0.05
    # null mean ~ 0 (the permuted prediction carries no aligned signal)
    assert abs(null.mean()) < 0.02
    # one draw rebuilt by hand: block-permuted prediction, r per run, averaged
    y, pr = Y[:, 60:63], res.predictions[:, 60:63]
    _, null1 = block_permutation_null(y, pr, runs, block_size=10, n_perms=1, seed=0,
                                      coupled_folds=False, return_null=True)
    # draws are made per run in order, one permutation per draw
    rng = np.random.default_rng(0)
    perms = [rng.permutation(10) for _ in range(4)]
    rebuilt = np.zeros(3)
    for i in range(4):
        m = runs == i
        idx = np.concatenate([np.arange(b * 10, b * 10 + 10) for b in perms[i]])
        rebuilt += pearson_r(y[m], pr[m][idx]) / 4
    np.testing.assert_allclose(null1[0], rebuilt, atol=1e-10)


def test_null_input_errors():
    y = np.zeros((30, 2))
    runs = np.repeat([0, 1], 15)
    with pytest.raises(ValueError, match="same shape"):
        circular_shift_null(y, y[:, :1], runs)
    with pytest.raises(ValueError, match="2 \\* min_shift"):
        circular_shift_null(y, y, runs, min_shift=10)
    with pytest.raises(ValueError, match="one label per time point"):
        circular_shift_null(y, y, runs[:-1])
    with pytest.raises(ValueError, match="fewer than 2 blocks"):
        block_permutation_null(y, y, runs, block_size=10)


# ---------------------------------------------------------------------------------------------
# Noise ceiling and bootstrap
# ---------------------------------------------------------------------------------------------


def test_noise_ceiling_recovers_known_snr():
    rng = np.random.default_rng(0)
    R, T, V = 4, 2000, 5
    signal_sd = np.ones(V)
    noise_sd = np.array([0.5, 1.0, 2.0, 3.0, 1e3])
    s = _ar1(rng, (T, V), 0.5)
    s = s / s.std(0) * signal_sd
    Yr = np.stack([s + rng.standard_normal((T, V)) * noise_sd + 7.0 for _ in range(R)])
    truth = np.sqrt(signal_sd ** 2 / (signal_sd ** 2 + noise_sd ** 2))
    for method in ("signal_power", "split_half"):
        nc = noise_ceiling(Yr, method=method)
        np.testing.assert_allclose(nc[:4], truth[:4], atol=0.04)
        assert nc[4] < 0.1
        # averaging n presentations raises the ceiling as Spearman-Brown says
        nc4 = noise_ceiling(Yr, method=method, n_average=4)
        t4 = np.sqrt(signal_sd ** 2 / (signal_sd ** 2 + noise_sd ** 2 / 4))
        np.testing.assert_allclose(nc4[:4], t4[:4], atol=0.04)
    with pytest.raises(ValueError, match="even number"):
        noise_ceiling(Yr[:3], method="split_half")
    with pytest.raises(ValueError, match="at least 2 repeats"):
        noise_ceiling(Yr[:1])


def test_bootstrap_ci_matches_scipy_percentile():
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, size=60)
    low, high = bootstrap_ci(x, n_boot=4000, seed=0)
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile",
                          random_state=0).confidence_interval
    assert abs(low - ref.low) < 0.1 and abs(high - ref.high) < 0.1
    assert low < x.mean() < high
    # vectorised over voxels
    lo, hi = bootstrap_ci(rng.normal(size=(30, 4)), n_boot=500)
    assert lo.shape == hi.shape == (4,) and np.all(lo < hi)
