"""Tests of alignment.timing: timelines, z-scoring, SPM HRF convolution (vs nilearn), FIR."""

import warnings

import numpy as np
import pytest

from alignment.timing import (
    Timeline,
    align_to_trs,
    fir_delays,
    hrf_matrix,
    run_slices,
    spm_hrf,
    spm_hrf_convolve,
    zscore_runs,
)


# ------------------------------------------------------------------------------ Timeline
def make_timeline():
    frame = ["a.png", "a.png", None, "b.png", "b.png", "a.png", None, "", "c.png"]
    caption = ["a dog", "a dog", "", "a cat", "a cat runs", "a dog", "", "", ""]
    segment = ["clip1", "clip1", "rest", "clip2", "clip2", "test", "rest", "rest", "clip1"]
    return Timeline(run="r1", tr=1, frame=frame, caption=caption, segment=segment)


def test_timeline_basics():
    tl = make_timeline()
    assert tl.n_trs == len(tl) == 9
    assert tl.tr == 1.0 and isinstance(tl.tr, float)
    assert tl.frame[7] is None  # "" means no frame
    np.testing.assert_allclose(tl.onsets, np.arange(9.0))
    assert tl.is_stimulus().tolist() == [True, True, False, True, True, True, False, False, True]
    with pytest.raises(Exception):
        tl.run = "x"  # frozen
    hash(tl)  # immutable sequences: hashable


def test_timeline_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        Timeline(run="r", tr=1.0, frame=[None, None], caption=["", ""], segment=["rest"])
    with pytest.raises(ValueError, match="tr"):
        Timeline(run="r", tr=0.0, frame=[None], caption=[""], segment=["rest"])


def test_stimulus_keys_and_unique():
    tl = make_timeline()
    keys = tl.stimulus_keys()
    assert len(keys) == 9
    assert keys[0] == keys[1] == keys[5] == ("a.png", "a dog")
    assert keys[3] != keys[4]  # same frame, different caption
    assert keys[2] == (None, "")
    uniq, index = tl.unique_stimuli()
    assert uniq == [("a.png", "a dog"), ("b.png", "a cat"), ("b.png", "a cat runs"),
                    ("c.png", "")]
    assert index.tolist() == [0, 0, -1, 1, 2, 0, -1, -1, 3]
    for t, i in enumerate(index):
        if i >= 0:
            assert uniq[i] == keys[t]


def test_segments():
    tl = make_timeline()
    assert tl.segments() == [("clip1", 0, 2), ("rest", 2, 3), ("clip2", 3, 5), ("test", 5, 6),
                             ("rest", 6, 8), ("clip1", 8, 9)]
    empty = Timeline(run="e", tr=1.0, frame=[], caption=[], segment=[])
    assert empty.segments() == []


# ------------------------------------------------------------------------------ z-scoring
def test_zscore_runs():
    rng = np.random.default_rng(0)
    runs = np.repeat([3, 1], [30, 20])  # any labels
    A = rng.normal(5, 3, size=(50, 4))
    A[:30, 2] = 7.0  # constant within run 3 only
    A[:, 3] = 1.0  # constant everywhere
    Z = zscore_runs(A, runs)
    assert Z.shape == A.shape and np.isfinite(Z).all()
    for r in (3, 1):
        m = runs == r
        np.testing.assert_allclose(Z[m][:, :2].mean(0), 0, atol=1e-12)
        np.testing.assert_allclose(Z[m][:, :2].std(0), 1, atol=1e-12)
    assert np.all(Z[:30, 2] == 0) and np.all(Z[:, 3] == 0)
    np.testing.assert_allclose(Z[30:, 2].std(), 1, atol=1e-12)
    # dtype and 1-D input
    assert zscore_runs(A.astype(np.float32), runs).dtype == np.float32
    z1 = zscore_runs(A[:, 0], runs)
    assert z1.shape == (50,)
    np.testing.assert_allclose(z1, Z[:, 0])


def test_run_slices_order_of_appearance():
    out = run_slices(np.array(["b", "b", "a", "a", "b"]))
    assert [r for r, _ in out] == ["b", "a"]
    assert out[0][1].tolist() == [0, 1, 4]


# ------------------------------------------------------------------------------ HRF
def test_spm_hrf_matches_nilearn():
    from nilearn.glm.first_level import spm_hrf as nl_spm_hrf

    for tr, over in [(1.0, 16), (0.72, 50), (2.0, 1)]:
        np.testing.assert_allclose(spm_hrf(tr, over), nl_spm_hrf(tr, over), rtol=0, atol=1e-14)


def _nilearn_reference(A, tr, lengths, oversampling, onset):
    from nilearn.glm.first_level import compute_regressor

    out = np.zeros_like(A, dtype=float)
    start = 0
    for n in lengths:
        frame_times = np.arange(n) * tr
        for j in range(A.shape[1]):
            cond = (frame_times + onset, np.full(n, tr), A[start:start + n, j])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reg, _ = compute_regressor(cond, "spm", frame_times, oversampling=oversampling)
            out[start:start + n, j] = reg[:, 0]
        start += n
    return out


@pytest.mark.parametrize(
    "tr, oversampling, onset",
    [(1.0, 16, 0.0), (0.72, 16, 0.0), (2.0, 16, 0.0), (1.0, 50, -0.5), (0.72, 3, 0.25)],
)
def test_spm_hrf_convolve_equals_nilearn(tr, oversampling, onset):
    rng = np.random.default_rng(int(tr * 100) + oversampling)
    lengths = [41, 29]
    runs = np.repeat(["run-a", "run-b"], lengths)
    A = rng.standard_normal((sum(lengths), 3))
    A[5:9, 1] = 0.0  # a "rest" stretch
    X = spm_hrf_convolve(A, tr, runs, oversampling=oversampling, onset=onset)
    ref = _nilearn_reference(A, tr, lengths, oversampling, onset)
    assert X.shape == A.shape
    np.testing.assert_allclose(X, ref, rtol=0, atol=1e-6)
    assert np.abs(X - ref).max() < 1e-10  # in fact equal to rounding


def test_spm_hrf_convolve_no_bleed_across_runs():
    lengths = [30, 25]
    runs = np.repeat([0, 1], lengths)
    A = np.zeros((55, 2))
    A[29, 0] = 1.0  # impulse in the last TR of run 0
    A[40, 1] = 1.0
    X = spm_hrf_convolve(A, 1.0, runs)
    assert np.all(X[30:, 0] == 0)  # nothing leaks into run 1
    # each run equals a standalone convolution starting at t = 0
    np.testing.assert_allclose(X[30:, 1], spm_hrf_convolve(A[30:, 1], 1.0))
    np.testing.assert_allclose(X[:30], spm_hrf_convolve(A[:30], 1.0))
    # shape of the response: peaks ~5 s after the impulse, then undershoots
    resp = X[30:, 1]
    assert np.argmax(resp) - 10 in (4, 5, 6)
    assert resp.min() < 0


def test_spm_hrf_convolve_dtypes_and_shapes():
    A = np.random.default_rng(1).standard_normal((20, 3)).astype(np.float32)
    X = spm_hrf_convolve(A, 1.0)
    assert X.dtype == np.float32 and X.shape == (20, 3)
    x1 = spm_hrf_convolve(A[:, 0].astype(np.float64), 1.0)
    assert x1.shape == (20,)
    np.testing.assert_allclose(x1, X[:, 0], rtol=1e-5, atol=1e-6)
    # a single-TR run gives zeros, not an error
    runs = np.array([0] * 19 + [1])
    assert np.all(spm_hrf_convolve(A, 1.0, runs)[19] == 0)
    K = hrf_matrix(20, 1.0)
    assert K.shape == (20, 20) and not K.flags.writeable
    with pytest.raises(ValueError):
        spm_hrf_convolve(A, 1.0, runs=np.zeros(5))


# ------------------------------------------------------------------------------ FIR
def _fir_loop(A, runs, delays):
    T, N = A.shape
    out = np.zeros((T, N * len(delays)))
    for k, d in enumerate(delays):
        for t in range(T):
            s = t - d
            if 0 <= s < T and runs[s] == runs[t]:
                out[t, k * N:(k + 1) * N] = A[s]
    return out


def test_fir_delays_vs_loop_and_roll():
    rng = np.random.default_rng(2)
    runs = np.repeat([0, 1, 2], [12, 9, 4])
    A = rng.standard_normal((25, 3))
    delays = (1, 2, 3, 4, 5, 6)
    X = fir_delays(A, runs, delays)
    assert X.shape == (25, 18)
    np.testing.assert_array_equal(X, _fir_loop(A, runs, delays))
    # np.roll within each run, zeroing the wrapped samples
    for r in range(3):
        m = runs == r
        for k, d in enumerate(delays):
            rolled = np.roll(A[m], d, axis=0)
            rolled[:d] = 0
            np.testing.assert_array_equal(X[m][:, k * 3:(k + 1) * 3], rolled)
    # zeros at every run start
    starts = [0, 12, 21]
    assert np.all(X[starts][:, :3] == 0)
    # negative and zero delays
    Y = fir_delays(A, runs, delays=(0, -1))
    np.testing.assert_array_equal(Y, _fir_loop(A, runs, (0, -1)))
    np.testing.assert_array_equal(Y[:, :3], A)


def test_fir_default_single_run():
    A = np.arange(10.0)[:, None]
    X = fir_delays(A)
    assert X.shape == (10, 6)
    assert X[:, 0].tolist() == [0] + list(range(9))
    assert X[:, 5].tolist() == [0] * 6 + [0, 1, 2, 3]


# ------------------------------------------------------------------------------ alignment
def test_align_to_trs():
    vals = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    idx = np.array([0, 0, -1, 2, 1, -1])
    A = align_to_trs(vals, idx)
    assert A.shape == (6, 2) and A.dtype == np.float32
    np.testing.assert_array_equal(A, [[1, 2], [1, 2], [0, 0], [5, 6], [3, 4], [0, 0]])
    with pytest.raises(ValueError, match="index"):
        align_to_trs(vals, np.array([0, 3]))
    with pytest.raises(ValueError, match="index"):
        align_to_trs(vals, np.array([0.0, 1.0]))


def test_timeline_to_features_pipeline():
    tl = make_timeline()
    uniq, index = tl.unique_stimuli()
    feats = np.arange(len(uniq) * 2, dtype=float).reshape(len(uniq), 2) + 1
    A = align_to_trs(feats, index)
    assert np.all(A[~tl.is_stimulus()] == 0)
    np.testing.assert_array_equal(A[0], A[5])
