"""Encoding models against independent references on the same inputs.

- fit_ridge vs himalaya RidgeCV (run-wise splits, fit_intercept=True) and vs a brute-force
  scikit-learn Ridge CV loop; numpy vs torch backends.
- fit_banded_ridge vs himalaya's public BandedRidgeCV estimator and r2_score_split.
- fit_atoms_glm vs nilearn run_glm(noise_model="ar1") + compute_contrast.
"""

import warnings

import numpy as np
import pytest

from alignment.encoding import (
    DEFAULT_ALPHAS,
    fit_atoms_glm,
    fit_banded_ridge,
    fit_ridge,
    make_glm_design,
    predict_ridge,
)

ALPHAS = np.logspace(-2, 5, 15)


def _problem(seed=0, n_runs=4, run_len=60, n_features=20, n_voxels=30):
    """Voxels with graded signal strength, so that the chosen alphas differ across voxels."""
    rng = np.random.default_rng(seed)
    T = n_runs * run_len
    runs = np.repeat(np.arange(n_runs), run_len)
    X = rng.standard_normal((T, n_features)) + 2.0  # non-zero means: centering matters
    W = rng.standard_normal((n_features, n_voxels)) * np.linspace(0.0, 0.6, n_voxels)
    Y = X @ W + rng.standard_normal((T, n_voxels)) + 10.0
    return X, Y, runs


def _logo(runs):
    return [(np.flatnonzero(runs != r), np.flatnonzero(runs == r)) for r in np.unique(runs)]


def _corr(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


@pytest.fixture(scope="module")
def problem():
    X, Y, runs = _problem()
    res = fit_ridge(X, Y, runs, ALPHAS, return_predictions=True)
    return X, Y, runs, res


def test_ridge_matches_himalaya(problem):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import correlation_score

    X, Y, runs, res = problem
    set_backend("numpy")
    full = RidgeCV(alphas=ALPHAS, cv=_logo(runs), fit_intercept=True).fit(X, Y)
    # himalaya returns exp(-log(alpha)): equal up to rounding
    np.testing.assert_allclose(res.best_alphas, full.best_alphas_, rtol=1e-10)
    assert len(np.unique(res.best_alphas)) > 2, "test problem should select varied alphas"

    scores, fold_alphas = [], []
    for r in np.unique(runs):
        train, test = runs != r, runs == r
        inner = RidgeCV(alphas=ALPHAS, cv=_logo(runs[train]), fit_intercept=True)
        inner.fit(X[train], Y[train])
        pred = inner.predict(X[test])
        np.testing.assert_allclose(res.predictions[test], pred, atol=1e-8)
        scores.append(correlation_score(Y[test], pred))
        fold_alphas.append(inner.best_alphas_)
    np.testing.assert_allclose(res.fold_alphas, np.array(fold_alphas), rtol=1e-10)
    np.testing.assert_allclose(res.fold_scores, np.array(scores), atol=1e-8)
    np.testing.assert_allclose(res.scores, np.mean(scores, 0), atol=1e-8)


def test_ridge_matches_sklearn_bruteforce(problem):
    from sklearn.linear_model import Ridge

    X, Y, runs, res = problem
    n_voxels = Y.shape[1]

    def cv_alpha(Xt, Yt, rt):
        # mean validation MSE per (alpha, voxel) over leave-one-run-out splits
        loss = np.zeros((len(ALPHAS), n_voxels))
        for tr, va in _logo(rt):
            for a, alpha in enumerate(ALPHAS):
                m = Ridge(alpha=alpha, fit_intercept=True).fit(Xt[tr], Yt[tr])
                loss[a] += ((Yt[va] - m.predict(Xt[va])) ** 2).mean(0)
        return ALPHAS[np.argmin(loss, 0)]

    np.testing.assert_allclose(res.best_alphas, cv_alpha(X, Y, runs), rtol=1e-10)
    scores = []
    for r in np.unique(runs):
        train, test = runs != r, runs == r
        chosen = cv_alpha(X[train], Y[train], runs[train])
        pred = np.empty((test.sum(), n_voxels))
        for alpha in np.unique(chosen):
            m = Ridge(alpha=alpha, fit_intercept=True).fit(X[train], Y[train])
            cols = chosen == alpha
            pred[:, cols] = m.predict(X[test])[:, cols]
        scores.append(_corr(Y[test], pred))
    np.testing.assert_allclose(res.scores, np.mean(scores, 0), atol=1e-4)


def test_torch_backend_matches_numpy(problem):
    X, Y, runs, res = problem
    res_t = fit_ridge(X, Y, runs, ALPHAS, backend="torch", device="cpu", voxel_chunk=7,
                      return_predictions=True)
    np.testing.assert_allclose(res_t.scores, res.scores, atol=1e-10)
    np.testing.assert_array_equal(res_t.best_alphas, res.best_alphas)
    np.testing.assert_array_equal(res_t.fold_alphas, res.fold_alphas)
    np.testing.assert_allclose(res_t.predictions, res.predictions, atol=1e-8)


def test_chunking_and_float32(problem):
    X, Y, runs, res = problem
    res_c = fit_ridge(X, Y, runs, ALPHAS, voxel_chunk=4)
    np.testing.assert_allclose(res_c.scores, res.scores, atol=1e-12)
    res32 = fit_ridge(X.astype(np.float32), Y.astype(np.float32), runs, ALPHAS)
    assert res32.predictions is None
    np.testing.assert_allclose(res32.scores, res.scores, atol=1e-4)


def test_predictions_reproduce_scores(problem):
    X, Y, runs, res = problem
    per_run = [_corr(Y[runs == r], res.predictions[runs == r]) for r in np.unique(runs)]
    np.testing.assert_allclose(res.scores, np.mean(per_run, 0), atol=1e-10)
    assert res.scores.shape == (Y.shape[1],)
    assert res.fold_scores.shape == (4, Y.shape[1])
    # graded signal: the strongest voxels are predicted, the signal-free one is not
    assert res.scores[-5:].mean() > 0.5
    assert abs(res.scores[0]) < 0.3


def test_predict_ridge_equals_fit_ridge_predictions():
    # without inner CV every fold uses best_alphas: the predictions predict_ridge makes from them
    X, Y, runs = _problem(seed=3)
    res = fit_ridge(X, Y, runs, ALPHAS, inner_cv=False, return_predictions=True)
    assert len(np.unique(res.best_alphas)) > 1
    pred = predict_ridge(X, Y, runs, res.best_alphas, voxel_chunk=7)
    np.testing.assert_allclose(pred, res.predictions, rtol=1e-10, atol=1e-10)
    pred_t = predict_ridge(X, Y, runs, res.best_alphas, backend="torch", device="cpu")
    np.testing.assert_allclose(pred_t, res.predictions, atol=1e-8)
    # one alpha for every voxel, and a single 1-D target
    one = fit_ridge(X, Y[:, 0], runs, [10.0], return_predictions=True)
    np.testing.assert_allclose(predict_ridge(X, Y[:, 0], runs, 10.0), one.predictions, atol=1e-10)
    with pytest.raises(ValueError, match="one per column"):
        predict_ridge(X, Y, runs, res.best_alphas[:3])
    with pytest.raises(ValueError, match="positive"):
        predict_ridge(X, Y, runs, -1.0)


def test_no_inner_cv_uses_best_alphas():
    X, Y, runs = _problem(seed=1)
    res = fit_ridge(X, Y, runs, ALPHAS, inner_cv=False)
    np.testing.assert_array_equal(res.fold_alphas, np.broadcast_to(res.best_alphas,
                                                                   res.fold_alphas.shape))
    # two runs are enough without nested CV
    res2 = fit_ridge(X[:120], Y[:120], runs[:120], ALPHAS, inner_cv=False)
    assert np.isfinite(res2.scores).all()


def test_default_alphas_and_unsorted_runs():
    X, Y, runs = _problem(seed=2, n_voxels=5)
    res = fit_ridge(X, Y, runs)
    np.testing.assert_array_equal(res.alphas, DEFAULT_ALPHAS)
    # interleaved, string run labels give the same folds after relabelling
    labels = np.array(["b", "d", "a", "c"])[runs]
    perm = np.random.default_rng(0).permutation(len(runs))
    res_p = fit_ridge(X[perm], Y[perm], labels[perm])
    # sorted labels a, b, c, d are the original runs 2, 0, 3, 1
    np.testing.assert_allclose(res_p.fold_scores, res.fold_scores[[2, 0, 3, 1]], atol=1e-8)
    assert list(res_p.run_labels) == ["a", "b", "c", "d"]


def test_constant_voxels_score_zero():
    X, Y, runs = _problem(seed=3, n_voxels=6)
    Y[:, 0] = 3.0  # constant everywhere
    Y[runs == 1, 1] = -2.0  # constant in one held-out run only
    res = fit_ridge(X, Y, runs, ALPHAS, return_predictions=True)
    assert np.isfinite(res.scores).all()
    assert res.scores[0] == 0.0
    assert res.fold_scores[1, 1] == 0.0
    assert res.best_alphas[0] == ALPHAS.max()  # all alphas tie -> largest, as himalaya


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(Y_rows=100), "same length T"),
        (dict(runs_len=100), "same length T"),
        (dict(one_run=True), "at least 2 runs"),
        (dict(nan_x=True), "X contains NaN or inf"),
        (dict(inf_y=True), "Y contains NaN or inf"),
        (dict(two_runs=True), "at least 3 runs"),
        (dict(alphas=[-1.0, 1.0]), "positive"),
        (dict(backend="jax"), "backend must be"),
        (dict(backend="numpy", device="cuda"), "CPU only"),
    ],
)
def test_bad_input_raises(kwargs, match):
    X, Y, runs = _problem(seed=4, n_voxels=3)
    if kwargs.pop("Y_rows", None):
        Y = Y[:100]
    if kwargs.pop("runs_len", None):
        runs = runs[:100]
    if kwargs.pop("one_run", None):
        runs = np.zeros_like(runs)
    if kwargs.pop("nan_x", None):
        X[5, 2] = np.nan
    if kwargs.pop("inf_y", None):
        Y[7, 1] = np.inf
    if kwargs.pop("two_runs", None):
        runs = (runs >= 2).astype(int)
    with pytest.raises(ValueError, match=match):
        fit_ridge(X, Y, runs, **kwargs)


# ---------------------------------------------------------------------------------------------
# Banded ridge
# ---------------------------------------------------------------------------------------------


def _banded_problem(seed=0):
    rng = np.random.default_rng(seed)
    n_runs, run_len = 3, 60
    T = n_runs * run_len
    runs = np.repeat(np.arange(n_runs), run_len)
    XA = rng.standard_normal((T, 8))
    XB = rng.standard_normal((T, 6))
    V = 12
    Y = rng.standard_normal((T, V))
    Y[:, :4] += XA @ rng.standard_normal((8, 4)) * 0.6  # A only
    Y[:, 4:8] += XB @ rng.standard_normal((6, 4)) * 0.6  # B only
    Y[:, 8:] += (XA @ rng.standard_normal((8, 4)) + XB @ rng.standard_normal((6, 4))) * 0.4
    return [XA, XB], Y, runs


def test_banded_ridge_matches_himalaya_estimator():
    from himalaya.backend import set_backend
    from himalaya.ridge import BandedRidgeCV
    from himalaya.scoring import r2_score_split

    Xs, Y, runs = _banded_problem()
    alphas = np.logspace(-1, 4, 6)
    res = fit_banded_ridge(Xs, Y, runs, alphas, n_iter=5, compute_unique=True,
                           band_names=["A", "B"], random_state=0, return_predictions=True)
    set_backend("numpy")
    folds, joint_r, joint_pred = [], [], np.zeros_like(Y)
    for r in np.unique(runs):
        tr, te = runs != r, runs == r
        model = BandedRidgeCV(groups="input", fit_intercept=True, cv=_logo(runs[tr]),
                              random_state=0,
                              solver_params=dict(alphas=alphas, n_iter=5, progress_bar=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model.fit([x[tr] for x in Xs], Y[tr])
        # per-band predictions from the band's slice of the weights (centered features),
        # demeaned within the held-out run as documented
        widths = np.cumsum([0] + [x.shape[1] for x in Xs])
        preds = []
        for b, x in enumerate(Xs):
            p = (x[te] - x[tr].mean(0)) @ model.coef_[widths[b]:widths[b + 1]]
            preds.append(p - p.mean(0))
        y = Y[te] - Y[te].mean(0)
        folds.append(r2_score_split(y, np.stack(preds)))
        joint_pred[te] = model.predict([x[te] for x in Xs])
        joint_r.append(_corr(Y[te], joint_pred[te]))
    np.testing.assert_allclose(res.fold_r2_split, np.stack(folds), atol=1e-8)
    np.testing.assert_allclose(res.predictions, joint_pred, atol=1e-8)  # held-out, intercept included
    np.testing.assert_allclose(res.scores, np.mean(joint_r, 0), atol=1e-8)
    np.testing.assert_allclose(res.r2, res.r2_split.sum(0), atol=1e-12)
    # planted structure: unique variance of A is large only where A drives the voxel
    assert res.unique[0, :4].mean() > 0.2 and res.unique[0, 4:8].mean() < 0.05
    assert res.unique[1, 4:8].mean() > 0.2 and res.unique[1, :4].mean() < 0.05
    np.testing.assert_allclose(res.shared, res.r2 - res.unique.sum(0), atol=1e-12)
    assert res.band_names == ("A", "B")


def test_banded_reduced_models_match_himalaya_ridge():
    """r2_without of a two-band model: the other band alone, fitted per outer fold by himalaya's
    RidgeCV with inner leave-one-run-out splits."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import r2_score_split

    Xs, Y, runs = _banded_problem(seed=3)
    alphas = np.logspace(-1, 4, 6)
    res = fit_banded_ridge(Xs, Y, runs, alphas, n_iter=3)
    set_backend("numpy")
    for b, other in ((0, 1), (1, 0)):
        folds = []
        for r in np.unique(runs):
            tr, te = runs != r, runs == r
            model = RidgeCV(alphas=alphas, cv=_logo(runs[tr]), fit_intercept=True).fit(Xs[other][tr], Y[tr])
            p = model.predict(Xs[other][te])
            y = Y[te] - Y[te].mean(0)
            folds.append(r2_score_split(y, (p - p.mean(0))[None])[0])
        np.testing.assert_allclose(res.r2_without[b], np.mean(folds, 0), atol=1e-8)


def test_banded_single_band_equals_ridge_r2():
    Xs, Y, runs = _banded_problem(seed=1)
    alphas = np.logspace(-1, 4, 6)
    res_b = fit_banded_ridge(Xs[:1], Y, runs, alphas)
    res_r = fit_ridge(Xs[0], Y, runs, alphas, return_predictions=True)
    np.testing.assert_allclose(res_b.scores, res_r.scores, atol=1e-8)
    assert res_b.unique is None and res_b.predictions is None
    with_preds = fit_banded_ridge(Xs[:1], Y, runs, alphas, return_predictions=True)
    np.testing.assert_allclose(with_preds.predictions, res_r.predictions, atol=1e-8)
    np.testing.assert_array_equal(with_preds.r2, res_b.r2)  # asking for predictions changes nothing else


def test_banded_torch_backend_matches_numpy_and_restores_backend():
    from himalaya.backend import get_backend, set_backend

    set_backend("numpy")
    Xs, Y, runs = _banded_problem(seed=2)
    alphas = np.logspace(-1, 4, 6)
    a = fit_banded_ridge(Xs, Y, runs, alphas, n_iter=4, return_predictions=True)
    b = fit_banded_ridge(Xs, Y, runs, alphas, n_iter=4, backend="torch", return_predictions=True)
    np.testing.assert_allclose(b.r2_split, a.r2_split, atol=1e-10)
    np.testing.assert_allclose(b.predictions, a.predictions, atol=1e-10)
    np.testing.assert_allclose(b.unique, a.unique, atol=1e-10)
    assert get_backend().name == "numpy"


def test_banded_bad_input():
    Xs, Y, runs = _banded_problem()
    with pytest.raises(ValueError, match="same length T"):
        fit_banded_ridge([Xs[0], Xs[1][:-1]], Y, runs)
    with pytest.raises(ValueError, match="at least 3 runs"):
        fit_banded_ridge(Xs, Y, (runs > 0).astype(int))
    with pytest.raises(ValueError, match="non-empty"):
        fit_banded_ridge([], Y, runs)


# ---------------------------------------------------------------------------------------------
# Atom GLM vs nilearn
# ---------------------------------------------------------------------------------------------


def _glm_problem(seed=1, n_runs=3, run_len=80, n_atoms=3, n_voxels=60):
    rng = np.random.default_rng(seed)
    T = n_runs * run_len
    runs = np.repeat(np.arange(n_runs), run_len)
    atoms = np.cumsum(rng.standard_normal((T, n_atoms)), 0) * 0.1 + rng.standard_normal(
        (T, n_atoms))
    # AR(1) noise with rho spread over many nilearn bins
    rhos = np.linspace(-0.3, 0.85, n_voxels)
    e = rng.standard_normal((T, n_voxels))
    noise = np.zeros((T, n_voxels))
    for t in range(T):
        noise[t] = (rhos * noise[t - 1] if t else 0) + e[t]
    B = rng.standard_normal((n_atoms, n_voxels)) * (rng.random((n_atoms, n_voxels)) < 0.5)
    Y = atoms @ B * 0.3 + noise + 5.0 + np.linspace(0, 1, T)[:, None]  # offset and drift
    return atoms, Y, runs


@pytest.mark.parametrize("drift", ["cosine", "polynomial"])
@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_glm_matches_nilearn(drift, noise_model):
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import run_glm

    atoms, Y, runs = _glm_problem()
    res = fit_atoms_glm(atoms, Y, runs, drift=drift, noise_model=noise_model, drift_order=2,
                        tr=1.0, high_pass=0.02, voxel_chunk=17)
    labels, results = run_glm(Y, res.design, noise_model=noise_model)
    K = atoms.shape[1]
    for k in range(K):
        con_val = np.zeros(res.design.shape[1])
        con_val[k] = 1.0
        con = compute_contrast(labels, results, con_val, stat_type="t")
        np.testing.assert_allclose(res.t[k], con.stat(), atol=1e-4)
        np.testing.assert_allclose(res.beta[k], con.effect_size(), atol=1e-6)
        assert res.dof == con.dof
    if noise_model == "ar1":
        assert len(np.unique(res.rho)) > 20  # many bins were exercised
        nilearn_rho = np.array([float(lab) for lab in labels])
        np.testing.assert_allclose(res.rho, nilearn_rho, atol=1e-12)
    from scipy import stats

    np.testing.assert_allclose(res.p, 2 * stats.t.sf(np.abs(res.t), res.dof), rtol=1e-12)


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_separate_glms_match_nilearn_single_atom_models(noise_model):
    """separate=True: atom k's t equals nilearn's model [atom k, nuisance] (OLS), or nilearn's
    ARModel on that design with the voxel's AR(1) coefficient (from the nuisance-only model)."""
    from nilearn.glm.regression import ARModel, OLSModel

    atoms, Y, runs = _glm_problem(n_voxels=25)
    res = fit_atoms_glm(atoms, Y, runs, noise_model=noise_model, separate=True, p_cutoff=0.3)
    K = atoms.shape[1]
    nuisance = res.design[:, K:]
    for k in range(K):
        design = np.column_stack([res.design[:, k], nuisance])
        contrast = np.eye(design.shape[1])[0]
        for v in range(Y.shape[1]):
            model = OLSModel(design) if noise_model == "ols" else ARModel(design, res.rho[v])
            fit = model.fit(Y[:, v])
            np.testing.assert_allclose(res.t[k, v], fit.Tcontrast(contrast).t, atol=1e-6)
            np.testing.assert_allclose(res.beta[k, v], fit.theta[0], atol=1e-8)
            assert res.dof == fit.df_residuals
    from scipy import stats

    p = 2 * stats.t.sf(np.abs(res.t), res.dof)
    np.testing.assert_allclose(res.p[p <= 0.3], p[p <= 0.3], rtol=1e-12)
    assert (res.p[p > 0.3] == 1).all()


@pytest.mark.parametrize("drift", ["cosine", "polynomial"])
def test_glm_design_drift_spans_nilearn(drift):
    """Per run, the drift + intercept columns span the same space as nilearn's drift model."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    atoms, _, runs = _glm_problem(n_runs=2, run_len=150)
    design, names = make_glm_design(atoms, runs, drift=drift, tr=2.0, high_pass=0.01,
                                    drift_order=3)
    assert names[:3] == ["atom0", "atom1", "atom2"]
    assert names[-2:] == ["run_0", "run_1"]
    for r in (0, 1):
        rows = runs == r
        ours = design[rows][:, [i for i, n in enumerate(names)
                                if n.startswith(f"drift_{r}_") or n == f"run_{r}"]]
        ref = make_first_level_design_matrix(np.arange(rows.sum()) * 2.0, drift_model=drift,
                                             high_pass=0.01, drift_order=3).to_numpy()
        assert ours.shape == ref.shape
        # same column space: projecting one onto the other leaves nothing
        q, _ = np.linalg.qr(ours)
        np.testing.assert_allclose(ref - q @ (q.T @ ref), 0.0, atol=1e-8)
        # and zero outside the run
        other = design[~rows][:, [i for i, n in enumerate(names) if n.startswith(f"drift_{r}_")]]
        assert np.all(other == 0)


def test_glm_constant_voxel_and_errors():
    atoms, Y, runs = _glm_problem(n_voxels=5)
    Y[:, 0] = 4.0
    res = fit_atoms_glm(atoms, Y, runs)
    assert np.all(res.t[:, 0] == 0) and np.all(res.p[:, 0] == 1)
    assert res.t.shape == res.beta.shape == res.p.shape == (3, 5)
    with pytest.raises(ValueError, match="same length T"):
        fit_atoms_glm(atoms[:-1], Y, runs)
    with pytest.raises(ValueError, match="noise_model"):
        fit_atoms_glm(atoms, Y, runs, noise_model="arma")
    with pytest.raises(ValueError, match="drift"):
        fit_atoms_glm(atoms, Y, runs, drift="spline")
    Y[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_atoms_glm(atoms, Y, runs)


@pytest.mark.parametrize("seed", [0, 1])
def test_separate_glm_is_calibrated_on_autocorrelated_noise(seed):
    """Many smooth (HRF-convolved) atoms and AR(1) noise: the noise model must not be estimated
    from a model that fits the slow noise away, or t is inflated. p < 0.05 in ~5 % of tests."""
    from alignment.timing import spm_hrf_convolve

    rng = np.random.default_rng(seed)
    runs = np.repeat(np.arange(4), 64)
    atoms = spm_hrf_convolve(rng.standard_normal((256, 48)), 1.0, runs=runs)
    e = rng.standard_normal((256, 400))
    noise = np.zeros_like(e)
    for t in range(256):
        noise[t] = (0.4 * noise[t - 1] if t and runs[t] == runs[t - 1] else 0) + e[t]
    res = fit_atoms_glm(atoms, noise, runs, separate=True)
    assert (res.p < 0.05).mean() < 0.07
