"""Cross-validated lesion curves: the ranking a fold removes by is learned on its training runs."""

import numpy as np
import pytest

from alignment.analyses.redundancy import lesion_curve
from alignment.features import design_an_index, design_matrix
from alignment.keys import Options
from alignment.stages.lesion import train_ranking
from test_fir import _one_over_f

N_RUNS, RUN_LEN, N, V_SIGNAL, V_NOISE = 4, 80, 12, 30, 90
RUNS = np.repeat(np.arange(N_RUNS), RUN_LEN)
OPTIONS = Options(n_atoms=N, n_null=20)
FRACTIONS = (0.0, 0.25, 0.5)


def _ar(rng, shape, phi):
    e = rng.normal(size=shape)
    for t in range(1, shape[0]):
        e[t] = phi * e[t - 1] + np.sqrt(1 - phi ** 2) * e[t]
    return e


def _planted(seed=0, drivers=(0, 1, 2)):
    """Raw ANs A (T, N) and BOLD Y (T, V): the first V_SIGNAL voxels are driven by ``drivers``
    (HRF-convolved, random positive and negative weights), the rest are noise; AR(0.5) noise
    plus a slow AR(0.95) component everywhere."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(RUNS.size, N))
    X = design_matrix(A, RUNS, 1.0, "spm")
    W = np.zeros((N, V_SIGNAL + V_NOISE))
    W[list(drivers), :V_SIGNAL] = rng.choice([-1.0, 1.0], (len(drivers), V_SIGNAL)) * rng.uniform(0.6, 1.0, (len(drivers), V_SIGNAL))
    noise = _ar(rng, (RUNS.size, W.shape[1]), 0.5) + 0.5 * _ar(rng, (RUNS.size, W.shape[1]), 0.95)
    return A, (X @ W + noise).astype(np.float32)


def _ranking(A, Y, seen=None):
    def rank(train):
        if seen is not None:
            seen.append(train.copy())
        return train_ranking(A[train], Y[train], RUNS[train], 1.0, OPTIONS, OPTIONS.fdr_q)
    return rank


def test_the_ranking_of_a_fold_never_reads_its_held_out_run():
    A, Y = _planted()
    X = design_matrix(A, RUNS, 1.0, "spm")
    seen = []
    curve = lesion_curve(X, Y[:, :V_SIGNAL], RUNS, "ranked", FRACTIONS, ranking=_ranking(A, Y, seen))
    assert [np.flatnonzero(~m).tolist() for m in seen] == [np.flatnonzero(RUNS == r).tolist() for r in range(N_RUNS)]
    # scramble the held-out run 0 (BOLD and ANs): fold 0's ranking is unchanged, the others see it
    rng = np.random.default_rng(5)
    A2, Y2 = A.copy(), Y.copy()
    A2[RUNS == 0] = rng.normal(size=(RUN_LEN, N))
    Y2[RUNS == 0] = rng.normal(size=(RUN_LEN, Y.shape[1]))
    X2 = design_matrix(A2, RUNS, 1.0, "spm")
    curve2 = lesion_curve(X2, Y2[:, :V_SIGNAL], RUNS, "ranked", FRACTIONS, ranking=_ranking(A2, Y2))
    np.testing.assert_array_equal(curve2.rankings[0], curve.rankings[0])
    assert not np.array_equal(curve2.rankings[1:], curve.rankings[1:])


def test_removing_the_driving_ans_first_drops_held_out_r_more_than_random():
    A, Y = _planted(seed=1)
    X = design_matrix(A, RUNS, 1.0, "spm")
    ranked = lesion_curve(X, Y[:, :V_SIGNAL], RUNS, "ranked", FRACTIONS, ranking=_ranking(A, Y))
    rand = lesion_curve(X, Y[:, :V_SIGNAL], RUNS, "random", FRACTIONS, seed=0, n_repeats=3)
    # every fold's training runs rank the three drivers first
    assert all(set(np.argsort(-rk, kind="stable")[:3]) == {0, 1, 2} for rk in ranked.rankings)
    assert ranked.mean_r[0] == pytest.approx(rand.mean_r[0])  # nothing removed: the same fit
    assert ranked.mean_r[0] > 0.4
    assert ranked.mean_r[1] < 0.1 < rand.mean_r[1] - 0.2  # 3 of 12 ANs: the drivers vs a random quarter
    assert np.all(ranked.mean_r[1:] < rand.mean_r[1:])


def test_the_ranking_is_blind_to_an_ans_sign_and_the_dictionary_seed():
    A, Y = _planted(seed=2)
    train = RUNS != 0
    base = train_ranking(A[train], Y[train], RUNS[train], 1.0, OPTIONS, 0.05)
    flipped = A.copy()
    flipped[:, 1] *= -1
    np.testing.assert_array_equal(train_ranking(flipped[train], Y[train], RUNS[train], 1.0, OPTIONS, 0.05), base)
    other_seed = Options(n_atoms=N, seed=7)  # the SVD start makes the dictionary seed-free; checked, not assumed
    np.testing.assert_array_equal(train_ranking(A[train], Y[train], RUNS[train], 1.0, other_seed, 0.05), base)


def test_an_fir_lesion_removes_every_delayed_copy_of_an_an():
    A, Y = _planted(seed=3)
    X = design_matrix(A, RUNS, 1.0, "fir")
    widths = []

    def fit(Xk, Yk, runs):
        widths.append(Xk.shape[1])
        from types import SimpleNamespace
        return SimpleNamespace(fold_scores=np.zeros((N_RUNS, Yk.shape[1])))

    lesion_curve(X, Y, RUNS, "ranked", (0.0, 0.25), ranking=np.arange(N)[::-1].astype(float), fit=fit,
                 an_index=design_an_index(N, X.shape[1]))
    D = X.shape[1] // N
    assert widths == [N * D, (N - 3) * D]
    with pytest.raises(ValueError, match="an_index"):
        lesion_curve(X, Y, RUNS, "random", (0.0,), fit=fit, an_index=np.arange(N))


def test_on_bold_without_an_effect_ranked_removal_is_no_worse_than_random():
    """Long-memory (1/f) BOLD that no AN drives: the cross-validated ranked curve stays on the
    random one (an in-sample ranking would pick the ANs that fit this noise, held-out run
    included, and show a spurious drop)."""
    diffs = []
    for seed in (50, 51):
        rng = np.random.default_rng(seed)
        A = rng.normal(size=(RUNS.size, N))
        A = 0.3 * np.cumsum(A, 0) + A  # slow ANs, like the noise
        Y = np.concatenate([_one_over_f(rng, RUN_LEN, 120) for _ in range(N_RUNS)]).astype(np.float32)
        X = design_matrix(A, RUNS, 1.0, "spm")
        ranked = lesion_curve(X, Y, RUNS, "ranked", FRACTIONS, ranking=_ranking(A, Y))
        rand = lesion_curve(X, Y, RUNS, "random", FRACTIONS, seed=seed, n_repeats=3)
        diffs.append(ranked.mean_r[1:] - rand.mean_r[1:])
    assert np.all(np.abs(np.mean(diffs, 0)) < 0.03), diffs
