"""The FIR design (``hrf="fir"``): delays, no leakage across runs, recovery of a response the
SPM HRF does not model, null level of FIR encoding under noise it does not assume."""

import numpy as np
import pytest
from scipy.stats import gamma, zscore

from alignment.config import options_from_dict
from alignment.encoding import fit_ridge
from alignment.features import design_an_index, design_matrix
from alignment.keys import Options
from alignment.stages.mapping import atom_regressors
from alignment.stats import circular_shift_null
from alignment.timing import fir_delay_trs

N_RUNS, RUN_LEN = 4, 150
RUNS = np.repeat(np.arange(N_RUNS), RUN_LEN)
T = RUNS.size


def _stimulus_features(rng, n):
    """(T, n) movie-like ANs: a new random value every 1-4 TRs (shots of different lengths)."""
    A = np.zeros((T, n))
    t = 0
    while t < T:
        d = int(rng.integers(1, 5))
        A[t:t + d] = rng.normal(size=n)
        t += d
    return A


def _convolve_runs(A, kernel):
    out = np.zeros_like(A)
    for r in range(N_RUNS):
        rows = slice(r * RUN_LEN, (r + 1) * RUN_LEN)
        for j in range(A.shape[1]):
            out[rows, j] = np.convolve(A[rows, j], kernel)[:RUN_LEN]
    return out


def _ar(rng, n, v, phi):
    e = rng.normal(size=(n, v))
    for t in range(1, n):
        e[t] = phi * e[t - 1] + np.sqrt(1 - phi ** 2) * e[t]
    return e


def _one_over_f(rng, n, v):
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    spec = (rng.normal(size=(f.size, v)) + 1j * rng.normal(size=(f.size, v))) * f[:, None] ** -0.5
    x = np.fft.irfft(spec, n=n, axis=0)
    return x / x.std(0)


def _noise(kind, rng, v):
    """(T, v) noise of each run, none of it the AR(1) the null or the ridge could assume."""
    runs = []
    for _ in range(N_RUNS):
        if kind == "1/f":
            x = _one_over_f(rng, RUN_LEN, v)
        elif kind == "drift":  # random-walk drift on white noise
            x = 0.15 * np.cumsum(rng.normal(size=(RUN_LEN, v)), 0) + rng.normal(size=(RUN_LEN, v))
        elif kind == "ar1+ar0.9":
            x = _ar(rng, RUN_LEN, v, 0.3) + _ar(rng, RUN_LEN, v, 0.9)
        else:  # "hrf mismatch": responses to other stimuli, through a late, biphasic kernel
            t = np.arange(20.0)
            kernel = gamma.pdf(t, 9) - 0.3 * gamma.pdf(t, 3)
            B = np.zeros((RUN_LEN, 8))
            s = 0
            while s < RUN_LEN:
                d = int(rng.integers(1, 5))
                B[s:s + d] = rng.normal(size=8)
                s += d
            S = np.stack([np.convolve(B[:, j], kernel)[:RUN_LEN] for j in range(8)], 1) @ rng.normal(size=(8, v))
            x = S / S.std(0) + _ar(rng, RUN_LEN, v, 0.5)
        runs.append(x)
    return np.concatenate(runs)


def test_fir_delays_are_seconds_converted_to_trs():
    assert fir_delay_trs(1.0) == (1, 2, 3, 4, 5, 6)
    assert fir_delay_trs(2.0) == (1, 2, 3)  # 2, 4, 6 s
    assert fir_delay_trs(0.72) == (2, 3, 4, 5, 6, 7, 8)  # 1.44 .. 5.76 s
    assert fir_delay_trs(1.5) == (1, 2, 3, 4)
    assert fir_delay_trs(10.0) == (1,)
    with pytest.raises(ValueError):
        fir_delay_trs(0.0)


@pytest.mark.parametrize("tr", [1.0, 2.0])
def test_fir_design_is_a_lagged_zscored_matrix_without_leakage_across_runs(tr):
    rng = np.random.default_rng(0)
    runs = np.repeat([0, 1, 2], [40, 25, 33])
    A = rng.normal(size=(runs.size, 5)) * rng.uniform(0.5, 3, 5) + rng.normal(size=5)
    X = design_matrix(A, runs, tr, "fir")
    delays = fir_delay_trs(tr)
    N = A.shape[1]
    assert X.shape == (runs.size, N * len(delays)) and X.dtype == np.float32
    # reference: scipy's z-score within run, then a lag loop that only looks back inside the run
    expected = np.zeros(X.shape)
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        Z = zscore(A[idx], axis=0)
        for k, d in enumerate(delays):
            for i, t in enumerate(idx):
                if i - d >= 0:
                    expected[t, k * N:(k + 1) * N] = Z[i - d]
    np.testing.assert_allclose(X, expected, atol=1e-5)
    # a run's first rows hold nothing of the previous run
    first = np.flatnonzero(runs == 1)[0]
    assert np.all(X[first, :] == 0)
    np.testing.assert_array_equal(design_an_index(N, X.shape[1]), np.tile(np.arange(N), len(delays)))


def _planted(rng, kernel, n=16, v=40, noise=2.0):
    A = _stimulus_features(rng, n)
    S = _convolve_runs(A, kernel) @ rng.normal(size=(n, v))
    return A, S / S.std(0) + noise * rng.normal(size=(T, v))


def _held_out_r(A, Y, hrf):
    return fit_ridge(design_matrix(A, RUNS, 1.0, hrf), Y, RUNS, alphas=np.asarray(Options().alphas)).scores


def test_fir_recovers_a_response_shape_the_spm_hrf_does_not_model():
    """A fast biphasic response (peak 3 s, undershoot 6 s; not SPM's 5 s peak and 16 s
    undershoot) is predicted better on held-out runs with FIR delays than with the SPM HRF."""
    rng = np.random.default_rng(1)
    t = np.arange(20.0)
    kernel = gamma.pdf(t, 4) - 0.35 * gamma.pdf(t, 7)
    A, Y = _planted(rng, kernel)
    r_fir, r_spm = _held_out_r(A, Y, "fir"), _held_out_r(A, Y, "spm")
    assert r_fir.mean() > r_spm.mean() + 0.1
    assert np.mean(r_fir > r_spm) > 0.9
    # the canonical response itself is still found by FIR (at a cost: 6 x more regressors)
    A, Y = _planted(rng, gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6)
    r_fir, r_spm = _held_out_r(A, Y, "fir"), _held_out_r(A, Y, "spm")
    assert r_fir.mean() > 0.2 and r_spm.mean() > r_fir.mean()


def test_fir_encoding_is_blind_to_an_ans_sign():
    rng = np.random.default_rng(2)
    A, Y = _planted(rng, gamma.pdf(np.arange(20.0), 4), v=10)
    flipped = A.copy()
    flipped[:, 3] *= -1
    np.testing.assert_allclose(_held_out_r(flipped, Y, "fir"), _held_out_r(A, Y, "fir"), atol=1e-6)


@pytest.mark.parametrize("kind", ["1/f", "drift", "ar1+ar0.9", "hrf mismatch"])
def test_fir_encoding_holds_its_level_on_noise(kind):
    """Pure noise (no AN drives it): the share of voxels with p < .05 (circular-shift null,
    the encoding stage's defaults) stays near 5 %. Two data sets of 150 voxels each (voxels
    of one data set share the null's shifts, so the share varies by data set)."""
    o = Options()
    shares = []
    for seed in (11, 12):
        rng = np.random.default_rng(seed)
        X = design_matrix(_stimulus_features(rng, 16), RUNS, 1.0, "fir")
        Y = _noise(kind, rng, 150)
        fit = fit_ridge(X, Y, RUNS, alphas=np.asarray(o.alphas), return_predictions=True)
        p = circular_shift_null(Y, fit.predictions, RUNS, n_shifts=o.n_null, seed=seed, tail=o.null_tail)
        shares.append(np.mean(p < 0.05))
    assert 0.01 < np.mean(shares) < 0.10, shares


def test_fir_is_an_option_and_the_atom_glm_keeps_the_canonical_hrf():
    assert options_from_dict({"hrf": "fir"}).hrf == "fir"
    rng = np.random.default_rng(3)
    runs = np.repeat([0, 1], 50)
    atoms = rng.normal(size=(4, runs.size))
    np.testing.assert_array_equal(atom_regressors(atoms, runs, 1.0, "fir"), atom_regressors(atoms, runs, 1.0, "spm"))
    assert not np.allclose(atom_regressors(atoms, runs, 1.0, "none"), atom_regressors(atoms, runs, 1.0, "spm"))
    with pytest.raises(ValueError, match="unknown hrf"):
        design_matrix(atoms.T, runs, 1.0, "glover")
