"""Statistics for encoding and mapping results.

- :func:`fdr_bh` -- Benjamini-Hochberg FDR (the q-values of
  ``scipy.stats.false_discovery_control``).
- :func:`simes` -- Simes' combined p of a family of tests (e.g. one voxel's layers).
- :func:`pearson_r`, :func:`fisher_z` -- correlation helpers.
- :func:`circular_shift_null`, :func:`block_permutation_null` -- per-voxel p values of the
  cross-validated Pearson r of held-out predictions, under nulls that keep the temporal
  autocorrelation of both series.
- :func:`group_ttest` -- one-sample t-test across subjects (as ``scipy.stats.ttest_1samp``).
- :func:`noise_ceiling` -- from repeated stimulus segments (signal-power or split-half method).
- :func:`bootstrap_ci` -- percentile bootstrap confidence interval.

The statistic tested by the two nulls is the one :func:`alignment.encoding.fit_ridge` reports:
the Pearson r computed within each run, averaged over runs. Each null draw moves the
predictions of every run against that run's data (one circular shift, or one permutation of
blocks, per run, the same for all voxels so that spatial correlation is preserved for
max-statistic corrections); p = (1 + #{null >= observed}) / (1 + n_draws), one-sided (the
alternative is "predicts better than chance").

Cross-validated predictions: coupling between folds
---------------------------------------------------
The encoding stage does not use these two functions: it tests with
:func:`alignment.encoding.ridge_permutation_null`, which redoes the whole cross-validation on
data permuted within runs (:func:`run_permutations`), so the coupling below is in every null
draw by construction. Moving only the held-out predictions and correcting by sqrt(2), as here,
was measured miscalibrated on short runs (4 runs x 36 TRs, pure noise: 17-20 % of voxels at
p < .05 under AR(1), AR(1) + slow AR(0.9) and 1/f noise) and mildly so on typical runs under
long-memory noise (7-8 % at 4 x 150 TRs).

Moving run r's prediction against run r's data is an exact null *for that run* (its prediction
was fit without its data), but the per-run scores of leave-one-run-out predictions are not
independent under H0: run s's data trains the model that predicts run r and vice versa, so
the same data pair (y_r, y_s) enters both scores through nearly the same bilinear form
(``y_r' X_r A X_s' y_s``). Each run score is a sum of L - 1 such pair terms, so two run scores
correlate by about 1 / (L - 1), and the variance of their average is about **twice** what
independent per-run draws give -- for any number of runs, and exactly so for strongly
regularised ridge (the case CV selects on noise voxels). Measured on pure AR(1) noise
(4 runs x 100 TRs): sd of observed scores / sd of the uncorrected null = 1.39-1.41
(sqrt(2) = 1.414); uncorrected, ~14 % of noise voxels had p < 0.05. By Cauchy-Schwarz the
factor 2 is an upper bound of this inflation (1.24 was measured with N > T_train and a tiny
alpha), so with ``coupled_folds=True`` (default) the null draws are spread by sqrt(2) about
their mean: valid, and calibrated in the usual regime. Pass ``coupled_folds=False`` when the
prediction of every run does not depend on the other runs' data (a fixed model, a separate
training set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats as _sps

__all__ = [
    "fdr_bh",
    "simes",
    "pearson_r",
    "fisher_z",
    "circular_shift_null",
    "block_permutation_null",
    "run_permutations",
    "p_from_null",
    "TTestResult",
    "group_ttest",
    "noise_ceiling",
    "repeat_windows",
    "bootstrap_ci",
]


# --------------------------------------------------------------------------------------------
# Multiple comparisons
# --------------------------------------------------------------------------------------------


def fdr_bh(p, q=0.05):
    """Benjamini-Hochberg false discovery rate control.

    Parameters
    ----------
    p : array_like, any shape
        p values in [0, 1]. NaNs are allowed: they are ignored (not counted in the number of
        tests), never rejected, and get a NaN q-value.
    q : float
        FDR level in (0, 1).

    Returns
    -------
    reject : ndarray of bool, same shape as p
        True where the null is rejected (``q_values <= q``).
    q_values : ndarray, same shape as p
        BH-adjusted p values: ``min(1, min_{j >= i} p_(j) m / j)``, equal to
        ``scipy.stats.false_discovery_control(p, method="bh")`` and statsmodels'
        ``multipletests(p, method="fdr_bh")[1]``.
    """
    p = np.asarray(p, dtype=np.float64)
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}.")
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p values must lie in [0, 1].")
    q_values = np.full(p.shape, np.nan)
    pv = p[finite]
    m = pv.size
    if m:
        order = np.argsort(pv, kind="mergesort")
        ranked = pv[order] * m / np.arange(1, m + 1)
        # step-up: running minimum from the largest p value down
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(ranked, 1.0)
        q_values[finite] = adjusted
    reject = np.zeros(p.shape, dtype=bool)
    reject[finite] = q_values[finite] <= q
    return reject, q_values


def simes(p, axis=0):
    """Simes' p of the intersection null "every test of the family is null", along ``axis``.

    p_S = min_i K p_(i) / i over the K finite p values of the family (sorted). It is the
    smallest BH-adjusted p within the family, and a valid p value when the family's tests are
    independent or positively dependent (Simes 1986; Sarkar 2008), as encoding maps of the
    layers of one model are. BH over voxels of each voxel's p_S controls the false discovery
    rate of the claim "some layer predicts this voxel", which declaring a voxel where any
    layer's own map is significant does not (the union of K maps, each at q, has false
    discoveries from every map but true ones shared among them).

    Parameters
    ----------
    p : array_like
        p values in [0, 1]; NaN entries are left out of their family.
    axis : int
        The axis that holds each family (e.g. layers of a (K, V) stack).

    Returns
    -------
    ndarray
        ``p`` without ``axis``; NaN where a family has no finite p.
    """
    p = np.moveaxis(np.asarray(p, dtype=np.float64), axis, 0)
    finite = np.isfinite(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p values must lie in [0, 1].")
    k = finite.sum(0)
    ranked = np.sort(np.where(finite, p, np.inf), axis=0)  # left-out entries last, never the minimum
    rank = np.arange(1, p.shape[0] + 1).reshape((-1,) + (1,) * (p.ndim - 1))
    combined = np.min(ranked * np.maximum(k, 1) / rank, axis=0)
    return np.where(k > 0, np.minimum(combined, 1.0), np.nan)


# --------------------------------------------------------------------------------------------
# Correlation helpers
# --------------------------------------------------------------------------------------------


def pearson_r(a, b, axis=0):
    """Pearson correlation along ``axis``, column by column.

    Parameters
    ----------
    a, b : ndarray, same shape, e.g. (T, V)
    axis : int
        Axis of the samples (time).

    Returns
    -------
    r : ndarray, shape of a without ``axis``, e.g. (V,)
        0 where either input is constant (as himalaya's ``correlation_score``).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}.")
    a = a - a.mean(axis, keepdims=True)
    b = b - b.mean(axis, keepdims=True)
    na = np.sqrt((a * a).sum(axis))
    nb = np.sqrt((b * b).sum(axis))
    denom = na * nb
    num = (a * b).sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), 0.0)
    return np.clip(r, -1.0, 1.0)


def fisher_z(r, eps=1e-7):
    """Fisher z transform ``arctanh(r)``, with r clipped to ``[-1 + eps, 1 - eps]``.

    Parameters
    ----------
    r : array_like, any shape
        Correlations.
    eps : float
        Clipping margin so that r = +-1 maps to a finite value (about +-8.4 for 1e-7).

    Returns
    -------
    z : ndarray, same shape as r (NaN stays NaN)
    """
    r = np.asarray(r, dtype=np.float64)
    return np.arctanh(np.clip(r, -1.0 + eps, 1.0 - eps))


# --------------------------------------------------------------------------------------------
# Nulls for cross-validated prediction accuracy
# --------------------------------------------------------------------------------------------


def _zscore_cols(a):
    a = a - a.mean(0)
    sd = np.sqrt((a * a).mean(0))
    sd[sd == 0] = 1.0
    return a / sd


def _check_null_inputs(y_true, y_pred, runs):
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if y_pred.ndim == 1:
        y_pred = y_pred[:, None]
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(f"y_true and y_pred must both be (T, V) with the same shape; got "
                         f"{y_true.shape} and {y_pred.shape}.")
    runs = np.asarray(runs)
    if runs.shape != (y_true.shape[0],):
        raise ValueError(f"runs must have one label per time point ({y_true.shape[0]}); got "
                         f"shape {runs.shape}.")
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("y_true and y_pred must not contain NaN or inf.")
    labels = np.unique(runs)
    return y_true, y_pred, [np.flatnonzero(runs == lab) for lab in labels]


def _couple(null, n_runs, coupled):
    """Spread the null by sqrt(2) about its mean for leave-one-run-out predictions (see the
    module docstring); a single run has no coupling."""
    if not coupled or n_runs < 2:
        return null
    center = null.mean(0, keepdims=True)
    return center + np.sqrt(2.0) * (null - center)


def p_from_null(null, observed, tail="empirical"):
    """One-sided p value of ``observed`` (v,) against ``null`` (n, v).

    ``"empirical"``: Monte Carlo (1 + #null >= obs) / (1 + n), floored at 1 / (1 + n).
    ``"normal"``: the upper tail of a normal fitted to each voxel's null (its mean and sd); the
    null of an average of within-run correlations is close to normal in its bulk, and this
    resolves the small p values that FDR over ~10^5 voxels needs without 10^6 draws. Its tail
    is lighter than normal (on the default demo's unplanted voxels skew −0.2, excess kurtosis
    −0.3), so the smallest p are conservative there (p < .001 at 0.18× nominal). The mean and sd are
    estimated from the n draws, so the tail is the predictive one, Student t with n - 1 dof on
    ``(observed - mean) / (sd sqrt(1 + 1/n))`` (exact for a normal null; it matters below
    ~100 draws).
    """
    if tail == "normal":
        n = null.shape[0]
        if n < 3:
            raise ValueError(f"tail='normal' needs at least 3 null draws; got {n}.")
        sd = null.std(0, ddof=1) * np.sqrt(1.0 + 1.0 / n)
        z = (observed - null.mean(0)) / np.where(sd > 0, sd, np.inf)
        return _sps.t.sf(z, n - 1)
    if tail != "empirical":
        raise ValueError(f"tail must be 'empirical' or 'normal', got {tail!r}.")
    # tolerance so that float noise in FFT-based nulls does not break exact ties
    count = (null >= observed[None] - 1e-12).sum(0)
    return (1.0 + count) / (1.0 + null.shape[0])


def circular_shift_null(y_true, y_pred, runs, n_shifts=1000, min_shift=10, seed=0, *,
                        coupled_folds=True, voxel_chunk=2000, shifts=None, return_null=False,
                        tail="empirical"):
    """p values of held-out prediction accuracy against circularly shifted predictions.

    Within each run the prediction is rolled by a random lag ``s`` (``min_shift <= s <=
    T_r - min_shift``) against the data; this keeps the autocorrelation of both series (unlike
    shuffling time points) and breaks their alignment. The observed statistic is the mean over
    runs of the within-run Pearson r (``RidgeResult.scores``). All lags of a run are obtained
    at once by FFT cross-correlation, so the cost does not grow with ``n_shifts``.

    Parameters
    ----------
    y_true : ndarray, shape (T, V)
        Data.
    y_pred : ndarray, shape (T, V)
        Held-out predictions (``fit_ridge(..., return_predictions=True).predictions``).
    runs : ndarray, shape (T,)
        Run labels; shifts are circular within each run.
    n_shifts : int
        Number of null draws (one lag per run per draw, shared by all voxels).
    min_shift : int
        Smallest lag in TRs (excludes near-zero lags where the HRF and autocorrelation keep the
        series aligned). Every run needs ``T_r >= 2 * min_shift + 1``.
    seed : int
        Seed of the lag draws.
    coupled_folds : bool
        True (default) for leave-one-run-out predictions (``fit_ridge``): widen the null by
        sqrt(2) for the coupling between folds (module docstring). False when each run's
        prediction is independent of the other runs' data.
    voxel_chunk : int
        Voxels processed at once (memory ~ (T + n_shifts) x voxel_chunk floats).
    shifts : ndarray of int, shape (n_shifts, L), optional
        Explicit lags (run order = sorted labels), overriding the random draws.
    tail : {"empirical", "normal"}
        Monte Carlo p values, or the upper tail of a normal fitted to each voxel's null
        (resolves p values below 1 / (1 + n_draws); see ``p_from_null``).
    return_null : bool
        Also return the null distribution (n_shifts, V).

    Returns
    -------
    p : ndarray, shape (V,)
        One-sided p values, ``(1 + #{null >= observed}) / (1 + n_shifts)``.
    null : ndarray, shape (n_shifts, V)
        Only with ``return_null=True``.
    """
    y_true, y_pred, run_idx = _check_null_inputs(y_true, y_pred, runs)
    n_runs = len(run_idx)
    lengths = np.array([len(i) for i in run_idx])
    if shifts is None:
        min_shift = int(min_shift)
        if min_shift < 1:
            raise ValueError(f"min_shift must be >= 1, got {min_shift}.")
        if int(n_shifts) < 1:
            raise ValueError(f"n_shifts must be >= 1, got {n_shifts}.")
        if np.any(lengths < 2 * min_shift + 1):
            raise ValueError(
                f"Every run needs at least 2 * min_shift + 1 = {2 * min_shift + 1} time points "
                f"for circular shifts; the shortest has {lengths.min()}. Lower min_shift.")
        rng = np.random.default_rng(seed)
        shifts = np.stack([rng.integers(min_shift, n - min_shift + 1, size=int(n_shifts))
                           for n in lengths], axis=1)
    else:
        shifts = np.asarray(shifts, dtype=np.int64)
        if shifts.ndim != 2 or shifts.shape[1] != n_runs:
            raise ValueError(f"shifts must have shape (n_shifts, {n_runs}).")
        shifts = shifts % lengths[None]
    n_draws = shifts.shape[0]
    n_voxels = y_true.shape[1]
    p = np.empty(n_voxels)
    null_all = np.empty((n_draws, n_voxels)) if return_null else None
    for start in range(0, n_voxels, max(1, int(voxel_chunk))):
        cols = slice(start, min(start + int(voxel_chunk), n_voxels))
        observed = np.zeros(cols.stop - cols.start)
        null = np.zeros((n_draws, cols.stop - cols.start))
        for i, idx in enumerate(run_idx):
            zy = _zscore_cols(np.asarray(y_true[idx, cols], dtype=np.float64))
            zp = _zscore_cols(np.asarray(y_pred[idx, cols], dtype=np.float64))
            n = len(idx)
            # cc[s] = mean_t zy[t] * zp[t - s]: r between y and np.roll(pred, s) for every s
            cc = np.fft.irfft(np.fft.rfft(zy, axis=0) * np.conj(np.fft.rfft(zp, axis=0)),
                              n=n, axis=0) / n
            observed += (zy * zp).mean(0)
            null += cc[shifts[:, i]]
        observed /= n_runs
        null = _couple(null / n_runs, n_runs, coupled_folds)
        p[cols] = p_from_null(null, observed, tail)
        if return_null:
            null_all[:, cols] = null
    return (p, null_all) if return_null else p


def block_permutation_null(y_true, y_pred, runs, block_size=20, n_perms=1000, seed=0, *,
                           coupled_folds=True, voxel_chunk=2000, return_null=False, tail="empirical"):
    """p values of held-out prediction accuracy against block-permuted predictions.

    Each run is cut into consecutive blocks of ``block_size`` TRs; the order of the
    prediction's blocks is permuted within the run (a leftover tail shorter than a block stays
    in place). Autocorrelation within blocks is kept. Computed through the block
    cross-product matrix ``G[i, j] = sum_tau zy[block i] * zp[block j]`` so a permutation costs
    O(n_blocks) per voxel.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (T, V)
    runs : ndarray, shape (T,)
    block_size : int
        Block length in TRs (choose beyond the autocorrelation length, e.g. 20 s).
    n_perms : int
        Number of null draws (one permutation per run per draw, shared by all voxels).
    seed : int
    coupled_folds : bool
        As in :func:`circular_shift_null`.
    voxel_chunk : int
    tail : {"empirical", "normal"}
        As in :func:`circular_shift_null`.
    return_null : bool
        Also return the null distribution (n_perms, V).

    Returns
    -------
    p : ndarray, shape (V,)
        One-sided p values.
    null : ndarray, shape (n_perms, V)
        Only with ``return_null=True``.
    """
    y_true, y_pred, run_idx = _check_null_inputs(y_true, y_pred, runs)
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}.")
    if int(n_perms) < 1:
        raise ValueError(f"n_perms must be >= 1, got {n_perms}.")
    n_blocks = [len(i) // block_size for i in run_idx]
    if max(n_blocks) < 2:
        raise ValueError(f"block_size={block_size} leaves fewer than 2 blocks in every run; "
                         "nothing to permute.")
    rng = np.random.default_rng(seed)
    perms = [np.stack([rng.permutation(nb) for _ in range(int(n_perms))]) if nb > 0
             else np.zeros((int(n_perms), 0), dtype=np.int64) for nb in n_blocks]
    n_runs = len(run_idx)
    n_voxels = y_true.shape[1]
    p = np.empty(n_voxels)
    null_all = np.empty((int(n_perms), n_voxels)) if return_null else None
    batch = 100
    for start in range(0, n_voxels, max(1, int(voxel_chunk))):
        cols = slice(start, min(start + int(voxel_chunk), n_voxels))
        vc = cols.stop - cols.start
        observed = np.zeros(vc)
        null = np.zeros((int(n_perms), vc))
        for i, idx in enumerate(run_idx):
            n, nb = len(idx), n_blocks[i]
            zy = _zscore_cols(np.asarray(y_true[idx, cols], dtype=np.float64))
            zp = _zscore_cols(np.asarray(y_pred[idx, cols], dtype=np.float64))
            observed += (zy * zp).mean(0)
            cut = nb * block_size
            rest = (zy[cut:] * zp[cut:]).sum(0)  # TRs after the last whole block stay in place
            by = zy[:cut].reshape(nb, block_size, vc)
            bp = zp[:cut].reshape(nb, block_size, vc)
            G = np.einsum("itv,jtv->vij", by, bp)  # (vc, nb, nb)
            rows = np.arange(nb)
            for b0 in range(0, int(n_perms), batch):
                pm = perms[i][b0:b0 + batch]  # (batch, nb)
                null[b0:b0 + batch] += (G[:, rows[None, :], pm].sum(-1).T + rest) / n
        observed /= n_runs
        null = _couple(null / n_runs, n_runs, coupled_folds)
        p[cols] = p_from_null(null, observed, tail)
        if return_null:
            null_all[:, cols] = null
    return (p, null_all) if return_null else p


def run_permutations(runs, n_draws, method="circular", *, min_shift=10, block_size=20, seed=0):
    """Random within-run permutations of the time points, for refit nulls
    (:func:`alignment.encoding.ridge_permutation_null`).

    ``"circular"``: each run is rolled by its own random lag ``s`` in
    ``[min_shift, T_r - min_shift]`` (``Y[perm]`` is ``np.roll(Y_r, s)`` within each run);
    ``"block"``: each run's consecutive blocks of ``block_size`` TRs are put in a random order
    (a leftover tail shorter than a block stays in place). Both keep the autocorrelation within
    a run (up to the wrap point / block edges) and break the alignment with the features.

    Parameters
    ----------
    runs : ndarray, shape (T,)
    n_draws : int
    method : {"circular", "block"}
    min_shift, block_size : int
    seed : int

    Returns
    -------
    perms : ndarray of int, shape (n_draws, T)
        ``perms[d, t]``: the time point that moves to t in draw d.
    """
    runs = np.asarray(runs)
    n_draws = int(n_draws)
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}.")
    rng = np.random.default_rng(seed)
    perms = np.tile(np.arange(len(runs)), (n_draws, 1))
    for lab in np.unique(runs):
        idx = np.flatnonzero(runs == lab)
        n = len(idx)
        if method == "circular":
            if n < 2 * int(min_shift) + 1:
                raise ValueError(f"Run {lab!r} has {n} time points; circular shifts need at least "
                                 f"2 * min_shift + 1 = {2 * int(min_shift) + 1}.")
            lags = rng.integers(int(min_shift), n - int(min_shift) + 1, size=n_draws)
            perms[:, idx] = idx[(np.arange(n)[None] - lags[:, None]) % n]
        elif method == "block":
            nb = n // int(block_size)
            if nb < 2:
                raise ValueError(f"Run {lab!r} has {n} time points: fewer than 2 blocks of "
                                 f"{block_size}; nothing to permute.")
            cut = nb * int(block_size)
            for d in range(n_draws):
                order = rng.permutation(nb)
                perms[d, idx[:cut]] = idx[:cut].reshape(nb, -1)[order].ravel()
        else:
            raise ValueError(f"method must be 'circular' or 'block', got {method!r}.")
    return perms


# --------------------------------------------------------------------------------------------
# Group level
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TTestResult:
    """One-sample t-test across subjects.

    Attributes
    ----------
    t : ndarray, shape (V,)
    p : ndarray, shape (V,)
    dof : int
        S - 1.
    mean : ndarray, shape (V,)
        Mean across subjects.
    """

    t: np.ndarray
    p: np.ndarray
    dof: int
    mean: np.ndarray


def group_ttest(z_maps, popmean=0.0, alternative="two-sided") -> TTestResult:
    """One-sample t-test across subjects, voxel by voxel (``scipy.stats.ttest_1samp``).

    Parameters
    ----------
    z_maps : ndarray, shape (S, V)
        One map per subject, e.g. ``fisher_z(scores)``.
    popmean : float
        Mean under the null.
    alternative : {"two-sided", "greater", "less"}

    Returns
    -------
    TTestResult
        ``t`` (V,), ``p`` (V,), ``dof`` = S - 1, ``mean`` (V,). Voxels with zero variance
        across subjects get t = +-inf (or NaN if their mean equals popmean), as scipy.
    """
    z = np.asarray(z_maps, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2:
        raise ValueError(f"z_maps must be (S, V); got shape {z.shape}.")
    if z.shape[0] < 2:
        raise ValueError(f"A group t-test needs at least 2 subjects; got {z.shape[0]}.")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got "
                         f"{alternative!r}.")
    n = z.shape[0]
    mean = z.mean(0)
    se = z.std(0, ddof=1) / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean - popmean) / se
    dof = n - 1
    if alternative == "two-sided":
        p = 2.0 * _sps.t.sf(np.abs(t), dof)
    elif alternative == "greater":
        p = _sps.t.sf(t, dof)
    else:
        p = _sps.t.cdf(t, dof)
    return TTestResult(t=t, p=p, dof=dof, mean=mean)


# --------------------------------------------------------------------------------------------
# Noise ceiling and bootstrap
# --------------------------------------------------------------------------------------------


def noise_ceiling(Y_repeats, method="signal_power", n_average=1, n_splits=100, seed=0):
    """Noise ceiling from repeated presentations of the same stimulus segment.

    Returned in correlation units: the expected Pearson r between the noise-free response and
    the data averaged over ``n_average`` repeats -- the best r an encoding model can reach when
    scored on such data (``n_average=1``: single-presentation data, as in :func:`fit_ridge`).
    With signal power SP and noise power NP per presentation::

        ceiling = sqrt(SP / (SP + NP / n_average))

    Two estimators:

    ``"signal_power"`` (Sahani & Linden 2003; Hsu et al. 2004; Schoppe et al. 2016): with R
    repeats ``y_1..y_R`` (raw, not z-scored: z-scoring each repeat would distort the powers)
    and ``Var`` the variance over time,
    ``SP = (Var(sum_r y_r) - sum_r Var(y_r)) / (R (R - 1))`` (unbiased),
    ``NP = mean_r Var(y_r) - SP``.

    ``"split_half"``: the repeats are split into two halves (all balanced splits if there are
    at most ``n_splits``, else ``n_splits`` random ones), the correlation of the half means is
    averaged, stepped down with Spearman-Brown to the single-presentation reliability
    ``rho_1 = r_h / (k - (k - 1) r_h)`` (k = R / 2), and stepped up to ``n_average``:
    ``rho_n = n rho_1 / (1 + (n - 1) rho_1)``; ceiling = ``sqrt(rho_n)``. Needs even R >= 2.

    Negative signal-power or reliability estimates (no reliable signal) give 0.

    Parameters
    ----------
    Y_repeats : ndarray, shape (R, T_seg, V)
        R >= 2 presentations of the segment (each demeaned over time internally).
    method : {"signal_power", "split_half"}
    n_average : int
        Number of presentations averaged in the data the model is scored on.
    n_splits : int
        Maximum number of half splits ("split_half").
    seed : int
        Seed for random half splits.

    Returns
    -------
    ceiling : ndarray, shape (V,)
        In [0, 1].
    """
    Yr = np.asarray(Y_repeats, dtype=np.float64)
    if Yr.ndim == 2:
        Yr = Yr[:, :, None]
    if Yr.ndim != 3:
        raise ValueError(f"Y_repeats must be (R, T_seg, V); got shape {Yr.shape}.")
    n_rep, n_t = Yr.shape[:2]
    if n_rep < 2:
        raise ValueError(f"A noise ceiling needs at least 2 repeats; got {n_rep}.")
    if n_t < 3:
        raise ValueError(f"Repeated segments need at least 3 time points; got {n_t}.")
    if not np.isfinite(Yr).all():
        raise ValueError("Y_repeats must not contain NaN or inf.")
    n_average = int(n_average)
    if n_average < 1:
        raise ValueError(f"n_average must be >= 1, got {n_average}.")
    Yr = Yr - Yr.mean(1, keepdims=True)
    if method == "signal_power":
        var_each = Yr.var(1)  # (R, V)
        var_sum = Yr.sum(0).var(0)
        sp = (var_sum - var_each.sum(0)) / (n_rep * (n_rep - 1))
        tp = var_each.mean(0)
        npow = tp - sp
        with np.errstate(invalid="ignore", divide="ignore"):
            c2 = sp / (sp + npow / n_average)
        c2 = np.where((sp > 0) & np.isfinite(c2), c2, 0.0)
        return np.sqrt(np.clip(c2, 0.0, 1.0))
    if method == "split_half":
        if n_rep % 2:
            raise ValueError(f"method='split_half' needs an even number of repeats; got {n_rep}.")
        k = n_rep // 2
        from itertools import combinations

        rest = list(range(1, n_rep))
        # repeat 0 always in the first half: each split counted once
        all_splits = [(0,) + c for c in combinations(rest, k - 1)]
        if len(all_splits) > n_splits:
            rng = np.random.default_rng(seed)
            all_splits = [all_splits[i] for i in rng.choice(len(all_splits), n_splits,
                                                            replace=False)]
        rh = np.zeros(Yr.shape[2])
        for half in all_splits:
            mask = np.zeros(n_rep, dtype=bool)
            mask[list(half)] = True
            rh += pearson_r(Yr[mask].mean(0), Yr[~mask].mean(0))
        rh /= len(all_splits)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho1 = rh / (k - (k - 1) * rh)
            rhon = n_average * rho1 / (1 + (n_average - 1) * rho1)
        rhon = np.where((rh > 0) & np.isfinite(rhon), rhon, 0.0)
        return np.sqrt(np.clip(rhon, 0.0, 1.0))
    raise ValueError(f"method must be 'signal_power' or 'split_half', got {method!r}.")


def repeat_windows(Y, segments, runs, margin=0):
    """Cut the repeated segment out of every run that shows it, for :func:`noise_ceiling`.

    The repeated labels are those of :func:`alignment.timing.repeated_segments` (shown in
    more than one run, ``rest``/empty excluded). Each window runs from a segment's first TR to
    ``margin`` TRs after its last one (the delayed BOLD response; stopped at the run's end) and
    all windows are cut to the shortest. Labels shown in the same runs as the most repeated one
    are concatenated in time (in label order); other repeated labels are left out.

    Parameters
    ----------
    Y : ndarray, shape (T, V)
    segments : sequence of str, shape (T,)
    runs : ndarray, shape (T,)
    margin : int

    Returns
    -------
    windows : ndarray, shape (R, T_w, V)
        One window per run showing the segments (first occurrence in each run).
    labels : list of str
        The labels used.

    Raises
    ------
    ValueError
        When no segment is repeated across runs.
    """
    from alignment.timing import repeated_segments

    Y = np.asarray(Y)
    segments = np.asarray(segments, dtype=object)
    runs = np.asarray(runs)
    labels = repeated_segments(segments, runs)
    if not labels:
        raise ValueError("No segment is shown in more than one run (segment labels): the data have no "
                         "repeats to compute a noise ceiling from.")
    shown = {lab: tuple(np.unique(runs[segments == lab])) for lab in labels}
    main = max(labels, key=lambda lab: len(shown[lab]))
    labels = [lab for lab in labels if shown[lab] == shown[main]]
    parts = []
    for lab in labels:
        cuts = []
        for run in shown[main]:
            idx = np.flatnonzero(runs == run)
            hit = np.flatnonzero(segments[idx] == lab)
            # first block of the label in this run
            stop = hit[0] + 1
            while stop < len(idx) and segments[idx[stop]] == lab:
                stop += 1
            cuts.append(idx[hit[0]:min(stop + int(margin), len(idx))])
        n = min(len(c) for c in cuts)
        parts.append(np.stack([Y[c[:n]] for c in cuts]))
    return np.concatenate(parts, axis=1), labels


def bootstrap_ci(values, statistic: Callable = np.mean, n_boot=10_000, ci=0.95, seed=0,
                 axis=0, batch=1000):
    """Percentile bootstrap confidence interval, resampling along ``axis``.

    Parameters
    ----------
    values : ndarray, shape (S, ...) (samples along ``axis``)
        E.g. per-subject scores (S,) or (S, V).
    statistic : callable
        ``statistic(sample, axis=...)`` reducing the sample axis (np.mean, np.median, ...).
    n_boot : int
        Number of bootstrap resamples.
    ci : float
        Confidence level in (0, 1).
    seed : int
    axis : int
        Axis of the samples.
    batch : int
        Resamples evaluated at once (memory).

    Returns
    -------
    low, high : ndarray or float, shape of ``values`` without ``axis``
    """
    x = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"bootstrap_ci needs at least 2 samples; got {n}.")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}.")
    rng = np.random.default_rng(seed)
    boots = []
    for b0 in range(0, int(n_boot), batch):
        nb = min(batch, int(n_boot) - b0)
        idx = rng.integers(0, n, size=(nb, n))
        boots.append(np.asarray(statistic(x[idx], axis=1)))
    boots = np.concatenate(boots, axis=0)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(boots, [alpha, 1.0 - alpha], axis=0)
    return low, high
