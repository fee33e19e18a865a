"""Integration sites against a joint image+text baseline, on fitted models (DESIGN §5.7).

Simulated stimulus features: an image model's (X_img), a text model's (X_txt), features no
voxel follows (X_other) and conjunction features X_img[:, k] * X_txt[:, k] that only the VLM has.
The VLM's held-out prediction is a ridge over its features, the joint baseline's a banded ridge
over X_img and X_txt, both leave-one-run-out, as the integration stage computes them. Noise is
not the white or AR(1) noise the block test's variance assumes: 1/f (long memory) or
AR(1) φ = 0.5 + AR(1) φ = 0.9.
"""

import numpy as np
from synthetic_noise import ar1 as _ar1, noise as _noise
import pytest
from scipy import stats

from alignment.analyses.integration import integration_sites
from alignment.encoding import fit_banded_ridge, fit_ridge

ALPHAS = np.logspace(-1, 4, 8)
N_RUNS, RUN_LEN, N_FEAT = 4, 150, 8


def _z(x):
    return (x - x.mean(0)) / x.std(0)


def _world(seed):
    """runs (T,), X_img, X_txt, X_other (T, 8), conjunctions (T, 4)."""
    rng = np.random.default_rng(seed)
    T = N_RUNS * RUN_LEN
    runs = np.repeat(np.arange(N_RUNS), RUN_LEN)
    x_img, x_txt, x_other = (_z(_ar1(rng, (T, N_FEAT), 0.7)) for _ in range(3))
    conj = _z(x_img[:, :4] * x_txt[:, :4])
    return rng, runs, x_img, x_txt, x_other, conj


def _unit(a):
    return a / a.std(0)


def _sites(Y, runs, vlm, x_img, x_txt, **kwargs):
    """The integration stage's computation on arrays: VLM ridge vs joint banded ridge, plus the
    unimodal ridges (descriptive p_each)."""
    def ridge(X):
        return fit_ridge(X, Y, runs, ALPHAS, return_predictions=True).predictions

    joint = fit_banded_ridge([x_img, x_txt], Y, runs, ALPHAS, n_iter=5, compute_unique=False,
                             return_predictions=True).predictions
    return integration_sites(Y, ridge(vlm), joint, runs=runs, block_len=20, pred_image=ridge(x_img),
                             pred_text=ridge(x_txt), **kwargs)


@pytest.mark.parametrize("noise", ["1/f", "ar1+ar0.9"])
def test_additive_voxels_are_not_sites_conjunction_voxels_are(noise):
    """Additive voxels (image-driven + text-driven) beat each unimodal baseline but are not
    integration sites; voxels that also follow a conjunction only the VLM has are found."""
    rng, runs, x_img, x_txt, x_other, conj = _world(1)
    V = 150
    additive = _unit(_unit(x_img @ rng.standard_normal((N_FEAT, 2 * V)))
                     + _unit(x_txt @ rng.standard_normal((N_FEAT, 2 * V))))
    inter = _unit(additive[:, V:] + _unit(conj @ rng.standard_normal((4, V))))
    signal = np.hstack([additive[:, :V], inter])
    Y = 0.8 * signal + _noise(rng, noise, signal.shape, runs)
    vlm = np.hstack([x_img, x_txt, x_other, conj])
    res = _sites(Y, runs, vlm, x_img, x_txt)
    add, found = res.sites[:V], res.sites[V:]
    assert add.mean() <= 0.05
    assert (res.p[:V] < 0.05).mean() <= 0.05
    # better than each baseline separately: true of most additive voxels, hence not the test
    assert (res.p_each[:V] < 0.05).mean() > 0.5
    assert found.mean() >= 0.5
    assert res.diff[V:].mean() > 0.1 > res.diff[:V].mean()


def test_a_vlm_made_of_both_baselines_has_no_sites():
    """The "VLM" is the two baselines' features side by side plus features nothing follows."""
    rng, runs, x_img, x_txt, x_other, _ = _world(2)
    V = 200
    signal = _unit(_unit(x_img @ rng.standard_normal((N_FEAT, V))) + _unit(x_txt @ rng.standard_normal((N_FEAT, V))))
    Y = 0.8 * signal + _noise(rng, "ar1+ar0.9", signal.shape, runs)
    res = _sites(Y, runs, np.hstack([x_img, x_txt, x_other]), x_img, x_txt)
    assert res.sites.mean() <= 0.05
    assert (res.p_each < 0.05).mean() > 0.5


@pytest.mark.parametrize("noise", ["1/f", "ar1+ar0.9"])
def test_uncorrected_p_holds_its_level_on_noise(noise):
    """Pure noise: the one-sided p < .05 at about 5 % of voxels or fewer (the cross-fitting
    bound makes the test conservative: measured 1.8-3.5 %), sites at almost none."""
    rng, runs, x_img, x_txt, x_other, conj = _world(3)
    Y = _noise(rng, noise, (runs.size, 1500), runs)
    res = _sites(Y, runs, np.hstack([x_img, x_txt, x_other, conj]), x_img, x_txt)
    share = (res.p < 0.05).mean()
    assert 0.01 <= share <= 0.08, share
    assert res.sites.mean() <= 0.01


@pytest.mark.parametrize("noise", ["1/f", "ar1+ar0.9"])
def test_estimated_inflation_holds_the_level_finds_more_sites_and_true_effects_only_raise_it(noise):
    """A brain-like map (6 % of voxels carry signal): λ estimated from the voxels (median of
    t²) agrees with the variance of the noise voxels' t (moments: an independent estimate),
    holds the level at noise and additive voxels, and finds more interactive voxels than the
    bound λ = 2; voxels where the models truly differ only raise λ (more conservative)."""
    from alignment.analyses.integration import INFLATION_BOUND

    rng, runs, x_img, x_txt, x_other, conj = _world(5)
    V, n_noise = 150, 4500
    additive = _unit(_unit(x_img @ rng.standard_normal((N_FEAT, 2 * V)))
                     + _unit(x_txt @ rng.standard_normal((N_FEAT, 2 * V))))
    inter = _unit(additive[:, V:] + _unit(conj @ rng.standard_normal((4, V))))
    signal = np.hstack([additive[:, :V], inter])
    Y = np.hstack([0.8 * signal + _noise(rng, noise, signal.shape, runs),
                   _noise(rng, noise, (runs.size, n_noise), runs)])
    vlm = np.hstack([x_img, x_txt, x_other, conj])
    est = _sites(Y, runs, vlm, x_img, x_txt)
    bound = _sites(Y, runs, vlm, x_img, x_txt, inflation="bound")
    assert est.inflation_estimated and not bound.inflation_estimated
    assert bound.inflation == {"joint": INFLATION_BOUND, "image": INFLATION_BOUND, "text": INFLATION_BOUND}
    lam = est.inflation["joint"]
    assert 1.2 < lam < INFLATION_BOUND  # the cross-fitting coupling is real, and below the bound
    noise_voxels = slice(2 * V, None)
    B = est.n_blocks
    t_noise = stats.t.isf(est.p[noise_voxels], B - 1) * np.sqrt(lam)  # the uncorrected t
    assert np.var(t_noise) == pytest.approx(lam * (B - 1) / (B - 3), rel=0.2)  # λ times Var(Student's t)
    # at the level, and nearer to it than the bound (the signal voxels raise λ a little)
    assert 0.02 <= (est.p[noise_voxels] < 0.05).mean() <= 0.07
    assert (est.p[noise_voxels] < 0.05).mean() > (bound.p[noise_voxels] < 0.05).mean()
    assert est.sites[noise_voxels].mean() <= 0.002
    assert est.sites[:V].mean() <= 0.05 and (est.p[:V] < 0.05).mean() <= 0.08
    assert est.sites[V:2 * V].sum() > bound.sites[V:2 * V].sum()
    assert est.sites[V:2 * V].mean() >= 0.8
    # the signal voxels differ between the models: leaving them out can only lower λ
    assert _sites(Y[:, noise_voxels], runs, vlm, x_img, x_txt).inflation["joint"] < lam


def test_too_few_voxels_fall_back_to_the_bound():
    """Below INFLATION_MIN_VOXELS the median of t² is too noisy: λ = 2 and Student's t; λ
    stays within [1, 2]."""
    from alignment.analyses.integration import INFLATION_MIN_VOXELS, cross_fitting_inflation

    rng, runs, x_img, x_txt, x_other, conj = _world(6)
    Y = _noise(rng, "1/f", (runs.size, 300), runs)
    res = _sites(Y, runs, np.hstack([x_img, x_txt, x_other]), x_img, x_txt)
    assert not res.inflation_estimated and res.inflation["joint"] == 2.0
    assert np.isnan(cross_fitting_inflation(rng.standard_normal(INFLATION_MIN_VOXELS - 1), 30))
    # no inflation estimated below 1 (a map more alike than noise is not made more liberal)
    assert cross_fitting_inflation(0.5 * rng.standard_normal(INFLATION_MIN_VOXELS), 30) == 1.0
    # masked voxels (t exactly 0) are left out
    t = 1.5 * rng.standard_normal(2 * INFLATION_MIN_VOXELS)
    assert cross_fitting_inflation(np.r_[t, np.zeros(5000)], 30) == cross_fitting_inflation(t, 30)
    # the reference is Student's t with B - 1 dof: t statistics drawn from it have λ ≈ 1
    assert cross_fitting_inflation(stats.t.rvs(11, size=20000, random_state=1), 12) == pytest.approx(1.0, abs=0.06)
    # a map where most voxels differ between the models: the estimate exceeds the bound, and the
    # bound's test is used
    s = rng.standard_normal((runs.size, INFLATION_MIN_VOXELS))
    y = s + rng.standard_normal(s.shape)
    most = integration_sites(y, s + 0.5 * rng.standard_normal(s.shape), rng.standard_normal(s.shape), runs=runs)
    assert not most.inflation_estimated and most.inflation["joint"] == 2.0
    with pytest.raises(ValueError, match="inflation"):
        integration_sites(Y, Y, Y, runs=runs, inflation="fitted")


def test_sites_are_blind_to_the_sign_of_features():
    """A feature's sign is arbitrary (an AN, an atom): flipping some changes nothing, the
    estimated inflation included (a map large enough to estimate it)."""
    from alignment.analyses.integration import INFLATION_MIN_VOXELS

    rng, runs, x_img, x_txt, x_other, conj = _world(4)
    V = 40
    signal = 0.8 * _unit(conj @ rng.standard_normal((4, V))) + _noise(rng, "ar1+ar0.9", (runs.size, V), runs)
    Y = np.hstack([signal, _noise(rng, "ar1+ar0.9", (runs.size, INFLATION_MIN_VOXELS), runs)])
    vlm = np.hstack([x_img, x_txt, x_other, conj])
    signs = np.where(rng.random(vlm.shape[1]) < 0.5, -1.0, 1.0)
    a = _sites(Y, runs, vlm, x_img, x_txt)
    b = _sites(Y, runs, vlm * signs, -x_img, x_txt)
    assert a.inflation_estimated
    assert b.inflation == pytest.approx(a.inflation, rel=1e-8)
    np.testing.assert_allclose(b.p, a.p, atol=1e-8)
    np.testing.assert_allclose(b.diff, a.diff, atol=1e-10)


def test_block_values_average_to_the_within_block_z_and_match_its_jackknife():
    """Per run, the block means of the TR contributions average to the Fisher z of the
    within-block r (block-centered data, one r over the run), computed here directly; and each
    is close to that z's leave-one-block-out jackknife pseudo-value (the delta method is the
    jackknife's first-order form)."""
    from alignment.analyses.integration import _within_blocks, _z_contributions, time_blocks

    rng = np.random.default_rng(7)
    runs = np.repeat([0, 1], [200, 160])
    slow = rng.standard_normal((runs.size, 4)).cumsum(0) * 0.1
    y = slow + rng.standard_normal(slow.shape)
    pred = 0.7 * slow + rng.standard_normal(slow.shape)
    blocks = time_blocks(runs, 20)
    run_idx = [np.flatnonzero(runs == r) for r in (0, 1)]
    contrib = _z_contributions(_within_blocks(y, blocks, run_idx), _within_blocks(pred, blocks, run_idx), run_idx)

    def z_within(bs):
        yc = np.concatenate([y[b] - y[b].mean(0) for b in bs])
        pc = np.concatenate([pred[b] - pred[b].mean(0) for b in bs])
        return np.arctanh((yc * pc).sum(0) / np.sqrt((yc ** 2).sum(0) * (pc ** 2).sum(0)))

    for r in (0, 1):
        bs = [b for b in blocks if runs[b[0]] == r]
        means = np.stack([contrib[b].mean(0) for b in bs])
        z = z_within(bs)
        np.testing.assert_allclose(means.mean(0), z, atol=1e-12)
        pseudo = np.stack([len(bs) * z - (len(bs) - 1) * z_within(bs[:k] + bs[k + 1:]) for k in range(len(bs))])
        assert (np.abs(means - pseudo).max(0) < 0.15 * pseudo.std(0)).all()
