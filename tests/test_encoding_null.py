"""The encoding map's inference: the refit permutation null on pure noise under noise models it
does not assume, the repeated segment kept out of training, and the noise ceiling."""

import numpy as np
import pytest
from scipy import stats
from scipy.signal import lfilter

from alignment.timing import repeated_segments
from alignment.encoding import (_training_rows, fit_ridge, repeated_segment_exclusion,
                                ridge_null_p, ridge_permutation_null)
from alignment.stats import noise_ceiling, p_from_null, repeat_windows, run_permutations
from test_pipeline import planted  # noqa: F401 - the planted dataset fixture

ALPHAS = np.logspace(-1, 5, 13)


# ---------------------------------------------------------------------------------------------
# synthetic data
# ---------------------------------------------------------------------------------------------


def _hrf(tr=1.0):
    t = np.arange(0, 32, tr)
    h = stats.gamma.pdf(t, 6) - stats.gamma.pdf(t, 16) / 6
    return h / h.sum()


def _ar(rng, phi, T, V):
    e = rng.standard_normal((T + 200, V))
    return lfilter([1], [1, -phi], e, axis=0)[200:]


def _pink(rng, T, V):
    """1/f (long-memory) noise: spectrum with power ~ 1/f."""
    f = np.fft.rfftfreq(T)
    f[0] = f[1]
    spec = (rng.standard_normal((len(f), V)) + 1j * rng.standard_normal((len(f), V))) / np.sqrt(f)[:, None]
    return np.fft.irfft(spec, n=T, axis=0)


def _noise(rng, kind, n_runs, T, V):
    """Pure-noise BOLD (n_runs * T, V), z-scored within run, with a slow drift in every run."""
    out = []
    for _ in range(n_runs):
        if kind == "ar1":
            x = _ar(rng, 0.5, T, V)
        elif kind == "ar1+slow":
            x = _ar(rng, 0.4, T, V) / 1.1 + 0.7 * _ar(rng, 0.9, T, V) / 2.3
        else:
            x = _pink(rng, T, V)
        t = np.linspace(-1, 1, T)[:, None]
        x = x / x.std(0) + rng.normal(0, 0.5, (1, V)) * t + rng.normal(0, 0.3, (1, V)) * t ** 2
        out.append((x - x.mean(0)) / x.std(0))
    return np.concatenate(out)


def _features(rng, n_runs, T, N):
    """Autocorrelated, non-negative, HRF-convolved 'AN' regressors, z-scored within run."""
    out = []
    for _ in range(n_runs):
        a = np.abs(_ar(rng, 0.8, T, N)) ** 1.2
        x = lfilter(_hrf(), [1], a, axis=0)
        out.append((x - x.mean(0)) / x.std(0))
    return np.concatenate(out)


def _null_p(X, Y, runs, method="circular", n_null=200, seed=0, exclude=None, tail="normal"):
    """What the encoding stage computes: the fit and its two-step refit-null p values."""
    fit = fit_ridge(X, Y, runs, alphas=ALPHAS, exclude=exclude)
    perms = run_permutations(runs, n_null, method, seed=seed)
    return fit, ridge_null_p(X, Y, runs, fit, perms, exclude=exclude, tail=tail)


def _rate_bounds(n, level, alpha=1e-3):
    """Two-sided binomial acceptance band of the share of p < level among n null voxels."""
    return stats.binom.ppf(alpha / 2, n, level) / n, stats.binom.isf(alpha / 2, n, level) / n


# ---------------------------------------------------------------------------------------------
# the refit null
# ---------------------------------------------------------------------------------------------


def test_identity_permutation_reproduces_the_observed_scores():
    rng = np.random.default_rng(0)
    runs = np.repeat(np.arange(4), 40)
    X, Y = _features(rng, 4, 40, 6), _noise(rng, "ar1", 4, 40, 20)
    seg = np.array([f"clip{r}" for r in runs], dtype=object)
    seg[np.arange(160) % 40 >= 30] = "rep"
    exclude = repeated_segment_exclusion(seg, runs, 3)
    fit = fit_ridge(X, Y, runs, alphas=ALPHAS, exclude=exclude)
    null = ridge_permutation_null(X, Y, runs, fit.fold_alphas, np.arange(160)[None], exclude=exclude)
    np.testing.assert_allclose(null[0], fit.scores, atol=1e-10)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("form", ["factored", "direct"])
@pytest.mark.parametrize("n_features", [6, 200])
def test_null_draws_equal_refits_on_the_permuted_data(form, n_features, backend, monkeypatch):
    """Each draw equals scikit-learn ridges refit on the permuted data, fold by fold, with the
    fold's alphas and the repeats kept out of training; both orders of the product (fewer or
    more features than training TRs), on both backends."""
    from sklearn.linear_model import Ridge

    import alignment.encoding as encoding

    monkeypatch.setattr(encoding, "_NULL_FACTORED_GAIN", 1e9 if form == "factored" else 0)
    rng = np.random.default_rng(5)
    n_runs, T, V = 3, 50, 12
    runs = np.repeat(np.arange(n_runs), T)
    X, Y = _features(rng, n_runs, T, n_features), _noise(rng, "ar1", n_runs, T, V)
    Y[:, :6] += X[:, :2] @ rng.standard_normal((2, 6))
    seg = np.array([f"clip{r}" for r in runs], dtype=object)
    seg[np.arange(runs.size) % T >= 42] = "rep"
    exclude = repeated_segment_exclusion(seg, runs, 2)
    fit = fit_ridge(X, Y, runs, alphas=ALPHAS, exclude=exclude)
    perms = run_permutations(runs, 4, "block", block_size=7, seed=2)
    null = ridge_permutation_null(X, Y, runs, fit.fold_alphas, perms, exclude=exclude, backend=backend)
    for d, perm in enumerate(perms):
        Yp, r_sum = Y[perm], np.zeros(V)
        for r in range(n_runs):
            test, train = np.flatnonzero(runs == r), _training_rows([np.flatnonzero(runs == s) for s in range(n_runs)],
                                                                    (r,), exclude)
            pred = Ridge(alpha=fit.fold_alphas[r]).fit(X[train], Yp[train]).predict(X[test])
            r_sum += [stats.pearsonr(pred[:, v], Yp[test, v])[0] for v in range(V)]
        np.testing.assert_allclose(null[d], r_sum / n_runs, atol=1e-6)


def test_run_permutations_stay_within_runs():
    runs = np.repeat([0, 1, 2], [30, 41, 25])
    for method in ("circular", "block"):
        perms = run_permutations(runs, 50, method, min_shift=5, block_size=8, seed=1)
        assert (runs[perms] == runs[None]).all()
        assert all(np.array_equal(np.sort(p), np.arange(len(runs))) for p in perms)
    with pytest.raises(ValueError, match="circular shifts need"):
        run_permutations(runs, 5, "circular", min_shift=20)


def test_refit_null_finds_a_planted_effect():
    rng = np.random.default_rng(3)
    n_runs, T, V = 4, 80, 60
    runs = np.repeat(np.arange(n_runs), T)
    X = _features(rng, n_runs, T, 8)
    Y = _noise(rng, "ar1+slow", n_runs, T, V)
    Y[:, :30] += 1.0 * X @ rng.standard_normal((8, 30)) / np.sqrt(8)
    _, p = _null_p(X, Y, runs, n_null=100)
    assert np.mean(p[:30] < 0.05) > 0.9
    assert np.mean(p[30:] < 0.05) < 0.2


@pytest.mark.parametrize("kind", ["ar1", "ar1+slow", "pink"])
def test_refit_null_is_calibrated_on_short_runs(kind):
    """4 runs x 36 TRs: the case where moving only the held-out predictions gave ~18 % at p < .05."""
    rng = np.random.default_rng({"ar1": 10, "ar1+slow": 11, "pink": 12}[kind])
    n_runs, T, V = 4, 36, 400
    runs = np.repeat(np.arange(n_runs), T)
    _, p = _null_p(_features(rng, n_runs, T, 16), _noise(rng, kind, n_runs, T, V), runs)
    lo, hi = _rate_bounds(V, 0.05)
    assert lo <= np.mean(p < 0.05) <= hi
    assert np.mean(p < 0.01) <= _rate_bounds(V, 0.01)[1]
    assert np.mean(p < 0.001) <= _rate_bounds(V, 0.001)[1]


@pytest.mark.parametrize("kind", ["ar1", "ar1+slow", "pink"])
@pytest.mark.parametrize("method", ["circular", "block"])
def test_refit_null_is_calibrated_on_typical_runs(kind, method):
    rng = np.random.default_rng({"ar1": 20, "ar1+slow": 21, "pink": 22}[kind])
    n_runs, T, V = 4, 150, 300
    runs = np.repeat(np.arange(n_runs), T)
    _, p = _null_p(_features(rng, n_runs, T, 16), _noise(rng, kind, n_runs, T, V), runs, method)
    lo, hi = _rate_bounds(V, 0.05)
    assert lo <= np.mean(p < 0.05) <= hi
    assert np.mean(p < 0.01) <= _rate_bounds(V, 0.01)[1]
    assert np.mean(p < 0.001) <= _rate_bounds(V, 0.001)[1]


def test_refit_null_is_blind_to_feature_sign_and_scale():
    rng = np.random.default_rng(4)
    runs = np.repeat(np.arange(3), 40)
    X, Y = _features(rng, 3, 40, 5), _noise(rng, "pink", 3, 40, 30)
    _, p = _null_p(X, Y, runs, n_null=50)
    _, p_flip = _null_p(X * np.array([-1, 1, -1, 1, 1]), Y, runs, n_null=50)
    np.testing.assert_allclose(p_flip, p, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# the repeated segment never trains the model that scores it
# ---------------------------------------------------------------------------------------------


def _layout(n_runs=4, T=60, rep=(40, 48)):
    """Segment labels: run-specific clips, a test-retest clip 'repeat' at TRs rep[0]..rep[1]-1 of
    every run, rest after it."""
    seg = []
    for r in range(n_runs):
        lab = np.array([f"run{r}-clip{t // 8}" for t in range(T)], dtype=object)
        lab[rep[0]:rep[1]] = "repeat"
        lab[rep[1]:] = "rest"
        seg.append(lab)
    return np.concatenate(seg), np.repeat(np.arange(n_runs), T)


def test_repeated_segments_from_labels():
    seg, runs = _layout()
    assert repeated_segments(seg, runs) == ["repeat"]
    seg2 = seg.copy()
    seg2[runs == 0] = "rest"
    seg2[(runs == 0) & (np.arange(len(seg)) % 60 < 5)] = ""
    assert repeated_segments(seg2, runs) == ["repeat"]  # rest / empty never count


def test_training_folds_exclude_the_held_out_runs_repeats():
    seg, runs = _layout()
    margin = 5
    exclude = repeated_segment_exclusion(seg, runs, margin)
    run_idx = [np.flatnonzero(runs == r) for r in range(4)]
    rep_trs = np.flatnonzero(seg == "repeat")
    # the repeat and the `margin` TRs after it, in every run
    banned = np.union1d(rep_trs, np.concatenate([rep_trs + k for k in range(1, margin + 1)]))
    for held in [(r,) for r in range(4)] + [(r, s) for r in range(4) for s in range(r + 1, 4)]:
        rows = _training_rows(run_idx, held, exclude)
        assert not np.isin(rows, banned).any()
        assert not np.isin(rows, np.concatenate([run_idx[h] for h in held])).any()
        kept = np.setdiff1d(np.concatenate([run_idx[i] for i in range(4) if i not in held]), banned)
        np.testing.assert_array_equal(np.sort(rows), kept)  # nothing else is dropped
    assert not repeated_segment_exclusion(seg, runs, margin)[:, seg != "repeat"].all()


def test_repeat_alone_gives_no_significant_voxels():
    """Features unrelated to the response except through the repeated clip (the same features
    and the same response in every run): significant when the repeat trains the folds, not once
    it is kept out."""
    from alignment.stats import fdr_bh

    rng = np.random.default_rng(5)
    n_runs, T, V, N = 4, 60, 150, 10
    seg, runs = _layout(n_runs, T, (36, 48))
    X = _features(rng, n_runs, T, N)
    Y = _noise(rng, "ar1", n_runs, T, V)
    is_rep = seg == "repeat"
    clip_x = rng.standard_normal((12, N))
    clip_y = clip_x @ rng.standard_normal((N, V)) / np.sqrt(N)
    X[is_rep] = np.tile(clip_x, (n_runs, 1))
    Y[is_rep] += np.tile(clip_y, (n_runs, 1))
    fit_leak, p_leak = _null_p(X, Y, runs, n_null=100)
    fit, p = _null_p(X, Y, runs, n_null=100, exclude=repeated_segment_exclusion(seg, runs, 8))
    # the symptom without the exclusion
    assert fit_leak.scores.mean() > 0.1 and np.mean(p_leak < 0.05) > 0.2 and fdr_bh(p_leak)[0].any()
    assert abs(fit.scores.mean()) < 0.03
    assert np.mean(p < 0.05) <= _rate_bounds(V, 0.05)[1]
    assert not fdr_bh(p)[0].any()


def test_banded_ridge_and_fixed_alpha_predictions_keep_the_repeat_out_of_training():
    """The same leak through the banded ridge (variance, integration, modality stages) and the
    fixed-alpha predictions (the inspectors): held-out r well above 0 when the repeat trains
    the folds, near 0 once it is kept out."""
    from alignment.encoding import fit_banded_ridge, predict_ridge
    from alignment.stats import pearson_r

    rng = np.random.default_rng(6)
    n_runs, T, V, N = 4, 60, 60, 10
    seg, runs = _layout(n_runs, T, (36, 48))
    X = _features(rng, n_runs, T, N)
    Y = _noise(rng, "ar1", n_runs, T, V)
    is_rep = seg == "repeat"
    clip_x = rng.standard_normal((12, N))
    X[is_rep] = np.tile(clip_x, (n_runs, 1))
    Y[is_rep] += np.tile(clip_x @ rng.standard_normal((N, V)) / np.sqrt(N), (n_runs, 1))
    exclude = repeated_segment_exclusion(seg, runs, 8)
    bands = [X[:, :5], X[:, 5:]]
    for ex, low, high in ((None, 0.1, 1.0), (exclude, -0.03, 0.03)):
        banded = fit_banded_ridge(bands, Y, runs, n_iter=3, compute_unique=False, return_predictions=True,
                                  exclude=ex)
        fixed = predict_ridge(X, Y, runs, 10.0, exclude=ex)
        r_fixed = np.mean([pearson_r(fixed[runs == r], Y[runs == r]) for r in range(n_runs)], axis=0)
        assert low < banded.scores.mean() < high and low < r_fixed.mean() < high, ex is None


# ---------------------------------------------------------------------------------------------
# noise ceiling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["signal_power", "split_half"])
def test_noise_ceiling_closed_form_on_simulated_repeats(method):
    """Signal + independent noise of known SNR: ceiling = sqrt(var_s / (var_s + var_n)) for
    single-presentation data."""
    rng = np.random.default_rng(6)
    n_rep, n_t, V = 4, 400, 300
    var_s = np.linspace(0.05, 2.0, V)
    var_n = 1.0
    s = rng.standard_normal((n_t, V)) * np.sqrt(var_s)
    Yr = s[None] + np.sqrt(var_n) * _ar(rng, 0.3, n_rep * n_t, V).reshape(n_rep, n_t, V) * np.sqrt(1 - 0.09)
    c = noise_ceiling(Yr, method=method)
    expected = np.sqrt(var_s / (var_s + var_n))
    assert np.abs(c - expected).mean() < 0.03
    assert np.corrcoef(c, expected)[0, 1] > 0.95


def test_repeat_windows_cut_segment_plus_margin():
    seg, runs = _layout(3, 60, (40, 48))
    Y = np.arange(180, dtype=float)[:, None] * [1.0, -1.0]
    w, labels = repeat_windows(Y, seg, runs, margin=5)
    assert labels == ["repeat"] and w.shape == (3, 13, 2)
    np.testing.assert_array_equal(w[1, :, 0], np.arange(100, 113))


def test_no_repeats_gives_a_clear_message():
    runs = np.repeat(np.arange(3), 20)
    seg = np.array([f"clip{r}-{t // 5}" for r, t in zip(runs, np.arange(60) % 20)], dtype=object)
    with pytest.raises(ValueError, match="no repeats"):
        repeat_windows(np.zeros((60, 4)), seg, runs)
    assert not repeated_segment_exclusion(seg, runs, 4).any()


def test_normal_tail_is_exact_for_a_normal_null_with_few_draws():
    """The predictive t tail: with 20 draws of a normal null, p < .05 / .01 / .001 at their rates."""
    rng = np.random.default_rng(7)
    n, V = 20, 200_000
    null = rng.normal(0.3, 2.0, (n, V))
    p = p_from_null(null, rng.normal(0.3, 2.0, V), "normal")
    for level in (0.05, 0.01, 0.001):
        lo, hi = _rate_bounds(V, level)
        assert lo <= np.mean(p < level) <= hi


def test_two_step_null_matches_the_full_null_where_it_continues():
    from alignment.encoding import NULL_FIRST_DRAWS, NULL_SCREEN_P

    rng = np.random.default_rng(8)
    runs = np.repeat(np.arange(3), 40)
    X, Y = _features(rng, 3, 40, 5), _noise(rng, "ar1", 3, 40, 60)
    Y[:, :20] += X[:, :1]
    fit = fit_ridge(X, Y, runs, alphas=ALPHAS)
    perms = run_permutations(runs, 120, seed=2)
    p = ridge_null_p(X, Y, runs, fit, perms)
    null = ridge_permutation_null(X, Y, runs, fit.fold_alphas, perms)
    p_first = p_from_null(null[:NULL_FIRST_DRAWS], fit.scores, "normal")
    go = p_first < NULL_SCREEN_P
    assert go[:20].all() and not go.all()
    np.testing.assert_allclose(p[go], p_from_null(null, fit.scores, "normal")[go], rtol=1e-10)
    np.testing.assert_allclose(p[~go], p_first[~go], rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------


def test_short_runs_warn_in_one_line():
    from alignment.stages.encoding import MIN_CALIBRATED_RUN, null_warning

    assert null_warning(np.repeat([0, 1, 2], MIN_CALIBRATED_RUN)) == ""
    msg = null_warning(np.repeat([0, 1, 2], [MIN_CALIBRATED_RUN, MIN_CALIBRATED_RUN - 6, 50]))
    assert f"{MIN_CALIBRATED_RUN - 6} TRs" in msg and "\n" not in msg


def test_ceiling_stage_without_repeats_gives_a_message_not_a_crash(planted, tmp_path):
    from alignment.cache import Cache
    from alignment.data import load_dataset
    from alignment.keys import Options
    from alignment.pipeline import Study
    from alignment.stages.ceiling import CEILING_TARGET

    study = Study(load_dataset(planted), Cache(tmp_path), Options(n_null=20), device="cpu")
    e = study.get("ceiling", CEILING_TARGET, "01")
    assert np.isnan(np.asarray(e["ceiling"])).all()
    assert "no repeats" in e.meta["warnings"][0]
