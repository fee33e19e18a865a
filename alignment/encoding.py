"""Voxel-wise encoding models: ridge, banded ridge and the atom GLM.

Three entry points, all pure functions of arrays:

- :func:`fit_ridge` -- ridge regression from features ``X`` (T, N) to BOLD ``Y`` (T, V), one
  alpha per voxel, evaluated by leave-one-run-out cross-validation with the alpha of every
  outer fold chosen by an inner leave-one-run-out CV on the training runs (nested CV);
  :func:`predict_ridge` gives the same held-out predictions for alphas already chosen.
- :func:`fit_banded_ridge` -- a joint model with one ridge band per feature space (banded
  ridge: himalaya's random search over band weights, on the ridge solver below), with the
  split of the held-out R² over bands and, optionally, unique and shared variance from the
  reduced models.
- :func:`fit_atoms_glm` -- the voxel-wise GLM of the neuron-mapping analysis: HRF-convolved
  dictionary atoms + run intercepts + drift, with an AR(p) noise model that reproduces
  ``nilearn.glm.first_level.run_glm(noise_model="ar<p>")``.

Ridge solver
------------
For one training set the SVD ``Xc = U diag(s) Vt`` of the centered features (obtained from an
eigendecomposition of the smaller Gram matrix, in float64) gives the ridge predictions for
*all* alphas at once (the himalaya approach)::

    Yhat(alpha) = (Xtest - mean) @ Vt.T @ diag(s / (alpha + s**2)) @ U.T @ (Ytrain - mean)

so each training set is decomposed once and the alphas only rescale ``k = min(T_train, N)``
numbers. To choose alphas, a test design's QR factors ``P = Q R`` give the squared error in k
dimensions, ``||Q.T y - R w||^2`` plus a term no alpha changes (:func:`_alpha_losses`).
Voxels are processed in chunks of ``voxel_chunk``: the weights (N, V) are never formed, only
``U.T @ Ytrain`` (k, voxel_chunk) and one (T_test, voxel_chunk) prediction at a time.

With ``L`` runs the nested CV needs the training sets "all runs but r" (L of them: outer refits,
and also the folds of the all-runs CV that gives ``best_alphas``) and "all runs but r and s"
(L(L-1)/2: the inner folds; the set without {r, s} serves the inner fold "validate on s" of
outer fold r *and* "validate on r" of outer fold s). Each is decomposed exactly once
(:func:`_inner_losses`; the banded ridge's search reuses it for every band weighting).

Alpha selection is himalaya's: per voxel, the alpha maximising the negative mean squared error
averaged over validation runs, ties broken towards the larger alpha (``+ 1e-10 * log(alpha)``).
Centering follows ``himalaya.ridge.RidgeCV(fit_intercept=True)``: X and Y are centered with the
means of each training set, and those means are used for its validation/test rows.

Memory (HCP-size: T = 3655, V = 91282, N = 768, float32, 4 runs, 15 alphas): the inputs (X: 11 MB,
Y: 1.24 GB), optional predictions (1.24 GB), CV losses (L x n_alphas x V float64: 44 MB), the
L outer-fold decompositions (~45 MB) and, per chunk of 10000 voxels, the gathered training
block (T_train x 10000: 110 MB) with a few (T_test x 10000) buffers. Measured: peak RSS
3.24 GB for the whole process (1.70 GB above the loaded data, predictions included), 214 s on
2 shared CPU cores -- far inside 16 GB.

Backends
--------
``backend="numpy"`` (default), ``"torch"`` (same math on torch tensors; ``device="cuda"`` for a
GPU) or ``"auto"`` (torch on CUDA when available, else numpy). The backend is chosen in
:func:`_get_ops`, the only place that knows about array libraries. Computation runs in float32
when both X and Y are float32 and in float64 otherwise (override with ``dtype``).
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as _sps

from alignment.timing import repeated_segments

__all__ = [
    "DEFAULT_ALPHAS",
    "RidgeResult",
    "BandedRidgeResult",
    "GLMResult",
    "fit_ridge",
    "fit_banded_ridge",
    "fit_atoms_glm",
    "make_glm_design",
    "predict_ridge",
    "REPEAT_MARGIN_S",
    "repeated_segment_exclusion",
    "ridge_permutation_null",
    "ridge_null_p",
]

#: Default ridge grid: 15 values log-spaced from 1e-2 to 1e5. The upper end covers the
#: regime of z-scored features with T ~ 10^3 samples (squared singular values ~ T), the lower
#: end is close to OLS; extend it for N >> T.
DEFAULT_ALPHAS = np.logspace(-2, 5, 15)

_DEFAULT_VOXEL_CHUNK = 10_000


# --------------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RidgeResult:
    """Result of :func:`fit_ridge`.

    Attributes
    ----------
    scores : ndarray, shape (V,)
        Pearson r between held-out predictions and data, per run, averaged over the
        leave-one-run-out folds (himalaya's ``correlation_score``; 0 where either is constant).
    best_alphas : ndarray, shape (V,)
        Alpha per voxel chosen by leave-one-run-out CV over all runs (what
        ``himalaya.ridge.RidgeCV(cv=<run-wise splits>).best_alphas_`` reports).
    fold_scores : ndarray, shape (L, V)
        Pearson r on each held-out run (row order: ``run_labels``).
    fold_alphas : ndarray, shape (L, V)
        Alpha used in each outer fold, chosen by inner CV on that fold's training runs.
    alphas : ndarray, shape (n_alphas,)
        The alpha grid.
    run_labels : ndarray, shape (L,)
        Sorted unique run labels; fold ``i`` holds out ``run_labels[i]``.
    predictions : ndarray, shape (T, V), or None
        Held-out predictions (row ``t`` predicted by the model that did not see its run),
        intercept included; only with ``return_predictions=True``.
    """

    scores: np.ndarray
    best_alphas: np.ndarray
    fold_scores: np.ndarray
    fold_alphas: np.ndarray
    alphas: np.ndarray
    run_labels: np.ndarray
    predictions: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class BandedRidgeResult:
    """Result of :func:`fit_banded_ridge`. B bands, L runs, V voxels.

    All R² values are computed on each held-out run after removing that run's mean from the data
    and from each band's prediction, then averaged over the leave-one-run-out folds. With that
    convention ``r2 == r2_split.sum(0)`` exactly (himalaya's ``r2_score_split`` product measure).

    Attributes
    ----------
    scores : ndarray, shape (V,)
        Pearson r of the joint prediction, averaged over folds.
    r2 : ndarray, shape (V,)
        Held-out R² of the joint model.
    r2_split : ndarray, shape (B, V)
        Contribution of each band to ``r2`` (sums to ``r2`` over bands).
    fold_r2_split : ndarray, shape (L, B, V)
        The same per fold.
    r2_without : ndarray, shape (B, V), or None
        Held-out R² of the model refit without band b (``compute_unique=True``).
    unique : ndarray, shape (B, V), or None
        ``r2 - r2_without[b]``: variance only band b explains.
    shared : ndarray, shape (V,), or None
        ``r2 - unique.sum(0)``: variance explained jointly (for 2 bands:
        ``R2_A_only + R2_B_only - R2_joint``).
    band_names : tuple of str
    run_labels : ndarray, shape (L,)
    predictions : ndarray, shape (T, V), or None
        Held-out predictions of the joint model (row ``t`` predicted by the model that did not
        see its run; all bands summed, intercept included); only with ``return_predictions``.
    """

    scores: np.ndarray
    r2: np.ndarray
    r2_split: np.ndarray
    fold_r2_split: np.ndarray
    band_names: tuple
    run_labels: np.ndarray
    r2_without: np.ndarray | None = None
    unique: np.ndarray | None = None
    shared: np.ndarray | None = None
    predictions: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class GLMResult:
    """Result of :func:`fit_atoms_glm`. K atoms, V voxels, P design columns.

    Attributes
    ----------
    beta : ndarray, shape (K, V)
        Atom coefficients (of the whitened refit for an AR noise model).
    t : ndarray, shape (K, V)
        t statistic of each atom's coefficient (nilearn ``compute_contrast`` with a one-hot
        contrast). Degenerate voxels whose residuals vanish up to rounding error (e.g.
        constant voxels) get t = 0 and p = 1 instead of a ratio of rounding errors.
    p : ndarray, shape (K, V)
        Two-sided p values of ``t`` with ``dof`` degrees of freedom.
    dof : int
        Residual degrees of freedom, ``T - rank(design)``.
    rho : ndarray, shape (V,) or (V, p)
        AR coefficients used per voxel (binned / clustered as nilearn does): (V,) for AR(1),
        (V, p) for AR(p > 1), (V, 0) for ``"ols"``.
    design : ndarray, shape (T, P)
        The design matrix (atoms first).
    design_names : tuple of str, length P
    noise_model : str
    """

    beta: np.ndarray
    t: np.ndarray
    p: np.ndarray
    dof: int
    rho: np.ndarray
    design: np.ndarray
    design_names: tuple
    noise_model: str


# --------------------------------------------------------------------------------------------
# Backends: the one place that knows about numpy vs torch
# --------------------------------------------------------------------------------------------


class _NumpyOps:
    name = "numpy"

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def asarray(self, a):
        return np.asarray(a, dtype=self.dtype)

    def index(self, idx):
        return idx

    def to_numpy(self, a):
        return np.asarray(a)

    def eigh(self, A):
        return np.linalg.eigh(A)

    def qr(self, A):
        return np.linalg.qr(A)

    def to64(self, a):
        return np.asarray(a, dtype=np.float64)

    def cast(self, a):
        return np.asarray(a, dtype=self.dtype)


class _TorchOps:
    name = "torch"

    def __init__(self, dtype, device):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = {np.dtype(np.float32): torch.float32,
                      np.dtype(np.float64): torch.float64}[np.dtype(dtype)]

    def asarray(self, a):
        return self.torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def index(self, idx):
        return self.torch.as_tensor(idx, dtype=self.torch.long, device=self.device)

    def to_numpy(self, a):
        return a.detach().cpu().numpy()

    def eigh(self, A):
        return self.torch.linalg.eigh(A)

    def qr(self, A):
        return self.torch.linalg.qr(A)

    def to64(self, a):
        return a.to(self.torch.float64)

    def cast(self, a):
        return a.to(self.dtype)


def _get_ops(backend: str, device: str, dtype):
    """Return the array-operations object for ``backend`` ("numpy", "torch", "auto")."""
    if backend not in ("numpy", "torch", "auto"):
        raise ValueError(f"backend must be 'numpy', 'torch' or 'auto', got {backend!r}.")
    if backend == "auto":
        try:
            import torch

            if torch.cuda.is_available():
                return _TorchOps(dtype, "cuda" if device == "cpu" else device)
        except ImportError:
            pass
        return _NumpyOps(dtype)
    if backend == "numpy":
        if str(device) != "cpu":
            raise ValueError(
                f"backend='numpy' runs on the CPU only; got device={device!r}. "
                "Use backend='torch' for a GPU.")
        return _NumpyOps(dtype)
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise ValueError("backend='torch' needs PyTorch installed.") from exc
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available.")
    return _TorchOps(dtype, device)


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_finite_chunked(name, A, chunk=_DEFAULT_VOXEL_CHUNK):
    """Raise ValueError if A (T, M) holds NaN/inf; chunked so memmaps stay cheap."""
    for start in range(0, A.shape[1], chunk):
        block = np.asarray(A[:, start:start + chunk])
        if not np.isfinite(block).all():
            bad = ~np.isfinite(block)
            col = start + int(np.flatnonzero(bad.any(0))[0])
            n_bad = int(bad.sum())
            raise ValueError(
                f"{name} contains NaN or inf values (first in column {col}; at least {n_bad} "
                f"non-finite entries). Remove or impute them before fitting.")


def _as_2d(name, A):
    if not hasattr(A, "shape") or not hasattr(A, "dtype"):
        A = np.asarray(A)
    if A.ndim == 1:
        A = A[:, None]
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (time points x columns); "
                         f"got shape {A.shape}.")
    if not np.issubdtype(A.dtype, np.number) or np.iscomplexobj(A):
        raise ValueError(f"{name} must hold real numbers; got dtype {A.dtype}.")
    return A


def _check_runs(runs, n_samples, names="X, Y", min_runs=2, min_len=3):
    runs = np.asarray(runs)
    if runs.ndim != 1:
        raise ValueError(f"runs must be a 1-D array of run labels; got shape {runs.shape}.")
    if runs.shape[0] != n_samples:
        raise ValueError(
            f"runs has {runs.shape[0]} labels but {names} have {n_samples} time points: "
            "they must match.")
    labels = np.unique(runs)
    if len(labels) < min_runs:
        raise ValueError(
            f"Leave-one-run-out cross-validation needs at least {min_runs} runs; runs holds "
            f"{len(labels)} distinct label(s).")
    idx = [np.flatnonzero(runs == lab) for lab in labels]
    short = [str(lab) for lab, i in zip(labels, idx) if len(i) < min_len]
    if short:
        raise ValueError(f"Runs {short} have fewer than {min_len} time points.")
    return labels, idx


def _check_alphas(alphas):
    alphas = DEFAULT_ALPHAS if alphas is None else alphas
    alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if alphas.ndim != 1 or alphas.size == 0:
        raise ValueError("alphas must be a non-empty 1-D sequence of positive numbers.")
    if not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
        raise ValueError(f"alphas must be positive and finite; got {alphas}.")
    # sorted: ties are broken towards larger alphas, order must not matter
    return np.unique(alphas)


def _compute_dtype(dtype, *arrays):
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {dt}.")
        return dt
    if all(np.dtype(a.dtype) == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _check_xy(X, Y, runs):
    X = _as_2d("X", X)
    Y = _as_2d("Y", Y)
    if X.shape[0] != Y.shape[0] or X.shape[0] != np.shape(runs)[0]:
        raise ValueError(
            f"X has {X.shape[0]} time points, Y has {Y.shape[0]} and runs has "
            f"{np.shape(runs)[0]}: all three must have the same length T.")
    _check_finite_chunked("X", X)
    _check_finite_chunked("Y", Y)
    return X, Y


# --------------------------------------------------------------------------------------------
# Ridge solver core
# --------------------------------------------------------------------------------------------


def _eps(a):
    """Machine epsilon of a numpy array's or torch tensor's dtype."""
    if hasattr(a, "detach"):
        import torch

        return torch.finfo(a.dtype).eps
    return np.finfo(a.dtype).eps


def _constant_columns(a, centered):
    """Columns whose spread is at rounding level relative to their magnitude.

    Centering a constant column leaves ~1e-16 noise instead of zeros; without this test the
    correlation of such a column would be a correlation of rounding errors.
    """
    sd = (centered * centered).mean(0) ** 0.5
    rms = (a * a).mean(0) ** 0.5
    return sd <= 100 * _eps(a) * rms


def _correlation(y, p):
    """Pearson r per column of two (t, v) backend arrays, as himalaya's correlation_score.

    Constant columns get r = 0 (himalaya sets their std to 1 after centering, so their
    z-scores are 0); columns constant up to rounding error are treated as constant.
    """
    yc = y - y.mean(0)
    pc = p - p.mean(0)
    sy = (yc * yc).mean(0) ** 0.5
    sp = (pc * pc).mean(0) ** 0.5
    flat = _constant_columns(y, yc) | _constant_columns(p, pc)
    sy[flat] = 1
    sp[flat] = 1
    r = ((yc / sy) * (pc / sp)).mean(0)
    r[flat] = 0
    return r


class _Decomposition:
    """Spectral decomposition of one centered training set and the projected test sets.

    With Xc = X_train - mean = U diag(s) Vt (thin SVD, zero singular values dropped) and
    P_j = (X_test_j - mean) @ Vt.T, the ridge prediction of test set j for penalty alpha is
    P_j @ diag(s / (alpha + s^2)) @ U.T @ (Y_train - mean).

    The SVD is obtained from the eigendecomposition of the smaller Gram matrix (Xc.T Xc when
    T_train >= N, else Xc Xc.T), formed in float64: 3-5x faster than an SVD on CPU and as
    accurate in float64 (squared singular values keep ~1e-16 relative precision, far below
    what float32 data hold). Directions with s^2 <= max(s^2) * max(T, N) * eps are dropped
    (their ridge filter s / (alpha + s^2) is ~0 anyway).

    For the alpha search each P_j is also kept as its QR factors P_j = Q_j R_j: the squared
    error ||y - P_j w||^2 equals ||Q_j.T y - R_j w||^2 plus a term that does not depend on w,
    so losses are compared in k dimensions instead of T_test (see :func:`_alpha_losses`).
    """

    def __init__(self, ops, Xb, train, tests, alphas):
        Xtr = ops.to64(Xb[ops.index(train)])
        mean = Xtr.mean(0)
        Xc = Xtr - mean
        n_train, n_feat = Xc.shape
        small_side = n_train < n_feat
        gram = Xc @ Xc.T if small_side else Xc.T @ Xc
        lam, vec = ops.eigh(gram)
        keep = lam > lam.max() * max(n_train, n_feat) * np.finfo(np.float64).eps
        lam, vec = lam[keep], vec[:, keep]
        s = lam ** 0.5
        if small_side:  # vec = U (T_train x k); Vt = U.T Xc / s
            Ut = vec.T
            V = (Xc.T @ vec) / s
        else:  # vec = V (N x k); U = Xc V / s
            V = vec
            Ut = ((Xc @ vec) / s).T
        self.train = train
        self.tests = tests
        self.mean = ops.cast(mean)
        self.V = ops.cast(V)
        self.Ut = ops.cast(Ut)
        P64 = [(ops.to64(Xb[ops.index(te)]) - mean) @ V for te in tests]
        self.P = [ops.cast(P) for P in P64]
        qr = [ops.qr(P) for P in P64]
        self.Qt = [ops.cast(Q.T) for Q, _ in qr]
        self.R = [ops.cast(R) for _, R in qr]
        alphas_b = ops.to64(ops.asarray(alphas))
        # filter factors of every alpha at once: (n_alphas, k)
        self.filters = ops.cast(s[None, :] / (alphas_b[:, None] + lam[None, :]))


def _chunk_projection(ops, dec, Y, cols):
    """U.T @ (Y_train - mean) for a voxel chunk, and the training mean."""
    Ytr = ops.asarray(Y[dec.train, cols])
    ymean = Ytr.mean(0)
    Yc = Ytr - ymean
    # voxels constant over the training runs: exact zeros, so their prediction is exactly the
    # (constant) training mean rather than amplified rounding noise
    Yc[:, _constant_columns(Ytr, Yc)] = 0
    return dec.Ut @ Yc, ymean


def _alpha_losses(dec, j, Yte, UtY, exact=False):
    """Mean squared error of test set j for every alpha: a list of n_alphas arrays (Vc,).

    Without ``exact``, minus ||(I - Q Q.T) Yte||^2 / T_test, which no alpha changes: enough to
    choose alphas within one design (summed over folds, compared across alphas), and costs
    k x k instead of T_test x k per alpha. ``exact`` adds it back (to compare designs).
    """
    B = dec.Qt[j] @ Yte
    n_test = Yte.shape[0]
    outside = ((Yte * Yte).sum(0) - (B * B).sum(0)) / n_test if exact else 0
    losses = []
    for f in dec.filters:
        D = dec.R[j] @ (f[:, None] * UtY)
        D -= B
        losses.append((D * D).sum(0) / n_test + outside)
    return losses


def _training_rows(run_idx, held_out, exclude=None):
    """Rows that train the model predicting the runs ``held_out``: the other runs' TRs, minus
    those that ``exclude`` (L, T) bool marks for any held-out run."""
    rows = np.concatenate([run_idx[i] for i in range(len(run_idx)) if i not in held_out])
    if exclude is not None:
        rows = rows[~exclude[list(held_out)][:, rows].any(0)]
    if rows.size < 2:
        raise ValueError(f"Held out runs {list(held_out)}: fewer than 2 training time points are "
                         "left once the excluded (repeated-segment) TRs are dropped.")
    return rows


def _inner_losses(ops, Xb, Y, run_idx, alphas, chunks, exact=False, exclude=None):
    """Inner leave-one-run-out losses of every outer fold: (L, n_alphas, V).

    ``[r, a, v]`` sums, over the validation runs s != r, the MSE at ``alphas[a]`` of the model
    trained without runs {r, s}. One decomposition per pair {r, s} serves both outer folds r
    and s. ``exact``: as in :func:`_alpha_losses`; ``exclude``: as in :func:`fit_ridge` (the
    pair's training set leaves out what either run excludes).
    """
    n_runs = len(run_idx)
    losses = np.zeros((n_runs, len(alphas), Y.shape[1]))
    for r, s in itertools.combinations(range(n_runs), 2):
        others = _training_rows(run_idx, (r, s), exclude)
        dec = _Decomposition(ops, Xb, others, [run_idx[r], run_idx[s]], alphas)
        for cols in chunks:
            UtY, ymean = _chunk_projection(ops, dec, Y, cols)
            for j, outer in ((0, s), (1, r)):  # validating on r belongs to outer fold s
                Yte = ops.asarray(Y[dec.tests[j], cols]) - ymean
                for a, loss in enumerate(_alpha_losses(dec, j, Yte, UtY, exact)):
                    losses[outer, a, cols] += ops.to_numpy(loss)
            del UtY
        del dec
    return losses


def _fold_prediction(ops, dec, chosen, UtY):
    """Centered prediction of a decomposition's first test set with each voxel's own alpha.

    ``chosen`` (Vc,) indexes the alpha grid of ``dec``; one product for all voxels:
    P @ (F[:, alpha_v] * UtY).
    """
    return dec.P[0] @ (dec.filters[ops.index(chosen)].T * UtY)


def _select_alphas(mean_loss, alphas):
    """himalaya's rule: argmax of (-mean loss + 1e-10 log alpha) over axis 0 (alphas)."""
    score = -mean_loss + 1e-10 * np.log(alphas)[:, None]
    return np.argmax(score, axis=0)


def fit_ridge(X, Y, runs, alphas=None, *, backend="numpy", device="cpu",
              voxel_chunk=_DEFAULT_VOXEL_CHUNK, inner_cv=True, return_predictions=False,
              dtype=None, exclude=None) -> RidgeResult:
    """Voxel-wise ridge encoding model with nested leave-one-run-out cross-validation.

    For each run r (outer fold) the model is trained on the other runs with, for every voxel,
    the alpha that wins an inner leave-one-run-out CV on those training runs; it then predicts
    run r and is scored by Pearson r. ``best_alphas`` come from one leave-one-run-out CV over
    all runs (the choice ``himalaya.ridge.RidgeCV`` makes with run-wise splits).

    Parameters
    ----------
    X : ndarray, shape (T, N)
        Features (e.g. HRF-convolved AN time series).
    Y : ndarray, shape (T, V)
        BOLD. May be a memmap: it is read one voxel chunk at a time.
    runs : ndarray, shape (T,)
        Run label of every time point (any sortable labels; runs need not be contiguous).
    alphas : ndarray, shape (n_alphas,), optional
        Ridge penalties to search (objective ``||Y - X W||^2 + alpha ||W||^2``). Default
        :data:`DEFAULT_ALPHAS` = ``np.logspace(-2, 5, 15)``.
    backend : {"numpy", "torch", "auto"}
        Array library; "auto" picks torch on CUDA when available, else numpy.
    device : str
        Torch device ("cpu", "cuda", "cuda:1"); numpy needs "cpu".
    voxel_chunk : int
        Number of voxels processed at once (memory ~ a few (T, voxel_chunk) arrays).
    inner_cv : bool
        If True (default), outer-fold alphas come from inner CV on the training runs (nested,
        unbiased; needs >= 3 runs). If False, every outer fold uses ``best_alphas`` (cheaper,
        slightly optimistic since the held-out run took part in choosing alpha).
    return_predictions : bool
        Also return the held-out predictions (T, V), e.g. for permutation nulls.
    dtype : {None, "float32", "float64"}
        Computation dtype; default float32 if X and Y are both float32, else float64.
    exclude : ndarray of bool, shape (L, T), optional
        ``exclude[i, t]``: time point t never trains a model that predicts run ``run_labels[i]``
        (outer fold, inner alpha folds, and the all-runs CV of ``best_alphas``), e.g. the
        repeats of a segment shown in that run (:func:`repeated_segment_exclusion`). Every
        held-out run is still predicted and scored in full.

    Returns
    -------
    RidgeResult
        ``scores`` (V,), ``best_alphas`` (V,), ``fold_scores`` (L, V), ``fold_alphas`` (L, V),
        ``alphas``, ``run_labels`` (L,), ``predictions`` (T, V) or None.

    Raises
    ------
    ValueError
        Mismatched lengths of X, Y, runs; fewer than 2 runs (3 with ``inner_cv``); NaN or inf
        in X or Y; invalid alphas, backend or device.

    Notes
    -----
    Voxels that are constant (in the held-out run, or in the training runs so that the
    prediction is constant) get score 0, as in ``himalaya.scoring.correlation_score``.
    Their alpha is the largest of the grid (all alphas tie).
    """
    X, Y = _check_xy(X, Y, runs)
    labels, run_idx = _check_runs(runs, X.shape[0])
    alphas = _check_alphas(alphas)
    n_runs = len(labels)
    exclude = _check_exclude(exclude, n_runs, X.shape[0])
    if inner_cv and n_runs < 3 and len(alphas) > 1:
        raise ValueError(
            f"Nested CV (inner_cv=True) needs at least 3 runs to choose alphas on the training "
            f"runs; got {n_runs}. Pass inner_cv=False (alpha chosen by CV over all runs) or a "
            "single alpha.")
    voxel_chunk = int(voxel_chunk)
    if voxel_chunk < 1:
        raise ValueError(f"voxel_chunk must be a positive integer, got {voxel_chunk}.")
    ops = _get_ops(backend, device, _compute_dtype(dtype, X, Y))

    n_samples, n_voxels = Y.shape
    n_alphas = len(alphas)
    Xb = ops.asarray(X)
    chunks = [slice(s, min(s + voxel_chunk, n_voxels)) for s in range(0, n_voxels, voxel_chunk)]

    # ---- inner CV: leave one training run out, for every outer fold ------------------------
    fold_alpha_idx = np.full((n_runs, n_voxels), n_alphas - 1, dtype=np.int64)
    if inner_cv and n_alphas > 1:
        inner_loss = _inner_losses(ops, Xb, Y, run_idx, alphas, chunks, exclude=exclude)
        for r in range(n_runs):
            fold_alpha_idx[r] = _select_alphas(inner_loss[r] / (n_runs - 1), alphas)
        del inner_loss

    # ---- outer folds: one decomposition per held-out run, kept for all voxel chunks ----------
    # (L x (k x T_train + T_test x k) numbers: 45 MB for HCP in float32)
    decs = [_Decomposition(ops, Xb, _training_rows(run_idx, (r,), exclude), [run_idx[r]], alphas)
            for r in range(n_runs)]
    out_dtype = np.dtype(np.float32) if _is_float32(ops) else np.dtype(np.float64)
    preds = np.empty((n_samples, n_voxels), dtype=out_dtype) if return_predictions else None
    full_loss = np.zeros((n_alphas, n_voxels))
    fold_scores = np.zeros((n_runs, n_voxels))
    best_idx = np.zeros(n_voxels, dtype=np.int64)
    nested = inner_cv or n_alphas == 1

    def score_fold(r, cols, UtY, ymean, chosen):
        dec = decs[r]
        pred = _fold_prediction(ops, dec, chosen, UtY)
        Yte = ops.asarray(Y[dec.tests[0], cols]) - ymean
        fold_scores[r, cols] = ops.to_numpy(_correlation(Yte, pred))
        if preds is not None:
            preds[dec.tests[0], cols] = ops.to_numpy(pred + ymean)

    for cols in chunks:
        for r, dec in enumerate(decs):
            UtY, ymean = _chunk_projection(ops, dec, Y, cols)
            Yte = ops.asarray(Y[dec.tests[0], cols]) - ymean
            for a, loss in enumerate(_alpha_losses(dec, 0, Yte, UtY)):
                full_loss[a, cols] += ops.to_numpy(loss)
            if nested:
                score_fold(r, cols, UtY, ymean, fold_alpha_idx[r, cols])
            del UtY, Yte
        best_idx[cols] = _select_alphas(full_loss[:, cols] / n_runs, alphas)
        if not nested:
            # every fold uses the all-runs choice, known once this chunk's losses are complete
            for r, dec in enumerate(decs):
                UtY, ymean = _chunk_projection(ops, dec, Y, cols)
                score_fold(r, cols, UtY, ymean, best_idx[cols])
    if not nested:
        fold_alpha_idx = np.broadcast_to(best_idx, (n_runs, n_voxels))

    return RidgeResult(
        scores=fold_scores.mean(0),
        best_alphas=alphas[best_idx],
        fold_scores=fold_scores,
        fold_alphas=alphas[fold_alpha_idx],
        alphas=alphas,
        run_labels=labels,
        predictions=preds,
    )


def predict_ridge(X, Y, runs, alphas, *, backend="numpy", device="cpu",
                  voxel_chunk=_DEFAULT_VOXEL_CHUNK, dtype=None, exclude=None) -> np.ndarray:
    """Leave-one-run-out ridge predictions with a given alpha per voxel (no alpha search).

    For every run r the model is fitted on the other runs with voxel v's penalty ``alphas[v]``
    and predicts run r, intercept included: the ``predictions`` :func:`fit_ridge` returns when
    every outer fold uses those alphas, with one decomposition per fold whatever the number of
    distinct alphas.

    Parameters
    ----------
    X : ndarray, shape (T, N)
        Features.
    Y : ndarray, shape (T, V)
        Targets (BOLD); a 1-D array is one target.
    runs : ndarray, shape (T,)
        Run label of every time point (at least 2 runs).
    alphas : float or ndarray, shape (V,)
        Penalty of every target (e.g. a cached encoding result's alphas).
    backend, device, voxel_chunk, dtype, exclude
        As in :func:`fit_ridge`.

    Returns
    -------
    ndarray, shape (T, V)
        Held-out predictions; float32 when the computation runs in float32, else float64.
    """
    X, Y = _check_xy(X, Y, runs)
    labels, run_idx = _check_runs(runs, X.shape[0])
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim > 1 or (alphas.ndim == 1 and alphas.shape[0] != Y.shape[1]):
        raise ValueError(f"alphas must be one number or one per column of Y ({Y.shape[1]}); "
                         f"got shape {alphas.shape}.")
    grid, chosen = np.unique(np.broadcast_to(alphas, (Y.shape[1],)), return_inverse=True)
    _check_alphas(grid)
    voxel_chunk = int(voxel_chunk)
    if voxel_chunk < 1:
        raise ValueError(f"voxel_chunk must be a positive integer, got {voxel_chunk}.")
    ops = _get_ops(backend, device, _compute_dtype(dtype, X, Y))
    Xb = ops.asarray(X)
    n_runs, n_voxels = len(labels), Y.shape[1]
    exclude = _check_exclude(exclude, n_runs, X.shape[0])
    out_dtype = np.dtype(np.float32) if _is_float32(ops) else np.dtype(np.float64)
    preds = np.empty(Y.shape, dtype=out_dtype)
    for r in range(n_runs):
        dec = _Decomposition(ops, Xb, _training_rows(run_idx, (r,), exclude), [run_idx[r]], grid)
        for start in range(0, n_voxels, voxel_chunk):
            cols = slice(start, min(start + voxel_chunk, n_voxels))
            UtY, ymean = _chunk_projection(ops, dec, Y, cols)
            pred = _fold_prediction(ops, dec, chosen[cols], UtY)
            preds[dec.tests[0], cols] = ops.to_numpy(pred + ymean)
        del dec
    return preds


#: Seconds after the end of a repeated segment whose TRs are still dropped from training
#: (:func:`repeated_segment_exclusion`): the BOLD response to the segment and its HRF-convolved
#: features last that long (the canonical HRF's positive lobe ends ~12 s after onset, its
#: undershoot is a fraction of the peak).
REPEAT_MARGIN_S = 12.0

def repeated_segment_exclusion(segments, runs, margin=0) -> np.ndarray:
    """Training time points to drop for each held-out run so no repeated segment leaks.

    ``exclude[i, t]`` is True when TR t lies in another run, within a segment that is also
    shown in run ``i`` (a label in :func:`repeated_segments`), or within ``margin`` TRs after
    the end of such a segment (the delayed response: see :data:`REPEAT_MARGIN_S`). Pass it as
    ``fit_ridge(..., exclude=...)``.

    Parameters
    ----------
    segments : sequence of str, shape (T,)
    runs : ndarray, shape (T,)
    margin : int
        TRs after each repeated block that are dropped too (they stay in their run).

    Returns
    -------
    exclude : ndarray of bool, shape (L, T)
        Row order: sorted run labels (``RidgeResult.run_labels``). All False without repeats.
    """
    segments = np.asarray(segments, dtype=object)
    runs = np.asarray(runs)
    labels = np.unique(runs)
    repeated = repeated_segments(segments, runs)
    exclude = np.zeros((len(labels), len(runs)), dtype=bool)
    margin = int(margin)
    for lab in repeated:
        hit = segments == lab
        # extend each block by `margin` TRs within its run
        spread = hit.copy()
        for k in range(1, margin + 1):
            spread[k:] |= hit[:-k] & (runs[k:] == runs[:-k])
        for i, run in enumerate(labels):
            if hit[runs == run].any():
                exclude[i] |= spread & (runs != run)
    return exclude


def _check_exclude(exclude, n_runs, n_samples):
    if exclude is None:
        return None
    exclude = np.asarray(exclude, dtype=bool)
    if exclude.shape != (n_runs, n_samples):
        raise ValueError(f"exclude must be (n_runs, T) = ({n_runs}, {n_samples}); got {exclude.shape}.")
    return exclude if exclude.any() else None


def ridge_permutation_null(X, Y, runs, fold_alphas, perms, *, exclude=None, backend="numpy",
                           device="cpu", voxel_chunk=_DEFAULT_VOXEL_CHUNK, dtype=None) -> np.ndarray:
    """Null distribution of the leave-one-run-out ridge score, refitting on permuted data.

    Each draw permutes the time points of Y within runs (``perms``: circular shifts or block
    permutations, :func:`alignment.stats.run_permutations`), refits every outer fold on the
    permuted training runs with that fold's alphas, predicts the permuted held-out run and
    scores it as :func:`fit_ridge` does (within-run Pearson r, averaged over runs). The whole
    cross-validation is redone, so the coupling of the folds (run s trains the model that
    predicts run r and the other way round) is in every draw, as in the observed score; moving
    only the held-out predictions against the data misses it (their spread is about sqrt(2)
    too small). Permuting rows within a run leaves every training Gram matrix unchanged, so the
    decompositions of the observed fit serve all draws: a draw costs about two predictions.

    Alphas are held at the observed fit's (``fold_alphas``), not re-selected per draw.

    Parameters
    ----------
    X : ndarray, shape (T, N)
    Y : ndarray, shape (T, V)
    runs : ndarray, shape (T,)
    fold_alphas : ndarray, shape (L, V)
        ``RidgeResult.fold_alphas``.
    perms : ndarray of int, shape (n_draws, T)
        Row ``d``: the time index taken by each time point in draw d (``Y[perms[d]]``); must
        map every run onto itself. The identity gives ``RidgeResult.scores``.
    exclude : ndarray of bool, shape (L, T), optional
        As in :func:`fit_ridge` (positions, not moved by the permutations).
    backend, device, voxel_chunk, dtype
        As in :func:`fit_ridge`.

    Returns
    -------
    null : ndarray, shape (n_draws, V)
        Mean over runs of the within-run r of each draw.
    """
    X, Y = _check_xy(X, Y, runs)
    labels, run_idx = _check_runs(runs, X.shape[0])
    n_runs, (n_samples, n_voxels) = len(labels), Y.shape
    exclude = _check_exclude(exclude, n_runs, n_samples)
    fold_alphas = np.asarray(fold_alphas, dtype=np.float64)
    if fold_alphas.shape != (n_runs, n_voxels):
        raise ValueError(f"fold_alphas must be (n_runs, V) = ({n_runs}, {n_voxels}); got "
                         f"{fold_alphas.shape}.")
    grid, chosen = np.unique(fold_alphas, return_inverse=True)
    _check_alphas(grid)
    chosen = chosen.reshape(n_runs, n_voxels)
    perms = np.atleast_2d(np.asarray(perms, dtype=np.int64))
    runs_arr = np.asarray(runs)
    if perms.shape[1] != n_samples or perms.min() < 0 or perms.max() >= n_samples:
        raise ValueError(f"perms must be (n_draws, T={n_samples}) indices into the time points.")
    if (runs_arr[perms] != runs_arr[None]).any():
        raise ValueError("perms must permute time points within runs.")
    voxel_chunk = int(voxel_chunk)
    if voxel_chunk < 1:
        raise ValueError(f"voxel_chunk must be a positive integer, got {voxel_chunk}.")
    ops = _get_ops(backend, device, _compute_dtype(dtype, X, Y))
    Xb = ops.asarray(X)
    decs = [_Decomposition(ops, Xb, _training_rows(run_idx, (r,), exclude), [run_idx[r]], grid)
            for r in range(n_runs)]
    # With Xc = U S Vt the centered training features, U.T 1 = 0: the training mean of Y drops
    # out, and the held-out prediction, centered over the held-out rows, is
    # pred = Pc diag(f) U.T y_train (Pc: P centered over the held-out rows; f: the voxel's
    # alpha's filter). A draw takes y_train = S y (S: rows of the training runs) and the held-out
    # data D y_test (D: a permutation of the held-out rows); r is unchanged when pred's rows get
    # D's inverse instead, so the data are never gathered: with Pd = D.T Pc,
    # r = y_test.T Pd diag(f) Z / (||Pc diag(f) Z|| ||y_test||), Z = (U.T S) y.
    # - factored (few directions k): Z for every voxel and draw of a batch is one product
    #   (U.T S is U.T with its columns moved); so is W = Pd.T y_test; then
    #   num = sum_k f W Z and ||pred||^2 = (f Z).T (Pc.T Pc) (f Z), Pc.T Pc the same in every
    #   draw: k (T_source + T_r + k) multiply-adds per voxel and draw;
    # - direct: (D.T H_a) (S y) with H_a = Pc diag(f_a) U.T (T_r, T_train), per alpha:
    #   T_r T_train per voxel and draw.
    dt = np.float32 if _is_float32(ops) else np.float64
    null = np.zeros((len(perms), n_voxels))
    for start in range(0, n_voxels, voxel_chunk):
        cols = np.arange(start, min(start + voxel_chunk, n_voxels))
        Yc = np.asarray(Y[:, start:cols[-1] + 1], dtype=dt)
        Yb = ops.asarray(Yc)
        for r, dec in enumerate(decs):
            test = dec.tests[0]
            yte = Yc[test].astype(np.float64)
            ynorm = np.sqrt(((yte - yte.mean(0)) ** 2).sum(0))
            ynorm[_constant_columns(yte, yte - yte.mean(0))] = 0  # r = 0, as in fit_ridge
            source = np.concatenate([run_idx[i] for i in range(n_runs) if i != r])
            k = dec.Ut.shape[0]
            factored = k * (source.size + len(test) + k) < _NULL_FACTORED_GAIN * len(test) * len(dec.train)
            null_fold = _null_fold_factored if factored else _null_fold_direct
            rr = null_fold(ops, dec, Yb, ynorm, chosen[r, cols], perms, source, dt)
            null[:, cols] += np.where(np.isfinite(rr), rr, 0.0)
    return null / n_runs


def _unmoving(perms, test, n_samples):
    """(n_draws, T_r): per draw, the order of the held-out rows that puts a prediction in the
    order of the draw's held-out data (``Y[perms[d, test]]``)."""
    within = np.empty(n_samples, dtype=np.int64)
    within[test] = np.arange(len(test))
    return np.argsort(within[perms[:, test]], axis=1)


def _null_fold_factored(ops, dec, Yb, ynorm, chosen, perms, source, dt):
    """Null r (n_draws, V) of one held-out fold, factored form (see :func:`ridge_permutation_null`)."""
    test, train = dec.tests[0], dec.train
    n_draws, n_samples = perms.shape
    k = dec.Ut.shape[0]
    P = ops.to_numpy(ops.to64(dec.P[0]))
    Pc = P - P.mean(0)
    gram = ops.asarray(Pc.T @ Pc)
    Pc = Pc.astype(dt)
    Ut_t = ops.to_numpy(dec.Ut).astype(dt).T  # (T_train, k)
    Ysource, yte, norm = Yb[ops.index(source)], Yb[ops.index(test)], ops.asarray(ynorm)
    where = np.empty(n_samples, dtype=np.int64)
    where[source] = np.arange(source.size)
    f = dec.filters[ops.index(chosen)].T  # (k, V)
    out = np.empty((n_draws, Yb.shape[1]))
    for d0 in range(0, n_draws, _NULL_FACTORED_DRAWS):
        ds = perms[d0:d0 + _NULL_FACTORED_DRAWS]
        nb = len(ds)
        moved = np.zeros((nb, k, source.size), dtype=dt)  # U.T S per draw
        moved[np.arange(nb)[:, None], :, where[ds[:, train]]] = Ut_t
        moved = ops.asarray(moved.reshape(nb * k, -1))
        Pd = ops.asarray(Pc[_unmoving(ds, test, n_samples)].swapaxes(1, 2).reshape(nb * k, -1))  # (nb k, T_r)
        slab = max(1, _NULL_SLAB // (nb * k))
        for v0 in range(0, Yb.shape[1], slab):
            vs = slice(v0, v0 + slab)
            Z = (moved @ Ysource[:, vs]).reshape(nb, k, -1)
            Z *= f[:, vs]
            W = (Pd @ yte[:, vs]).reshape(nb, k, -1)
            num, den = (W * Z).sum(1), ((gram @ Z) * Z).sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[d0:d0 + nb, vs] = ops.to_numpy(num / (den ** 0.5 * norm[vs]))
    return out


def _null_fold_direct(ops, dec, Yb, ynorm, chosen, perms, source, dt):
    """Null r (n_draws, V) of one held-out fold, direct form (see :func:`ridge_permutation_null`)."""
    test, train = dec.tests[0], dec.train
    n_draws, n_samples = perms.shape
    P = ops.to64(dec.P[0])
    Pc = P - P.mean(0)
    yte = Yb[ops.index(test)]
    out = np.empty((n_draws, Yb.shape[1]))
    for a in np.unique(chosen):
        group = np.flatnonzero(chosen == a)
        Yg, yg, norm = Yb[:, ops.index(group)], yte[:, ops.index(group)], ops.asarray(ynorm[group])
        H = ops.cast((Pc * ops.to64(dec.filters[a])) @ ops.to64(dec.Ut))  # (T_r, T_train)
        batch = max(1, min(n_draws, _NULL_BUDGET // (len(train) * len(group))))
        for d0 in range(0, n_draws, batch):
            ds = perms[d0:d0 + batch]
            pred = H[ops.index(_unmoving(ds, test, n_samples))] @ Yg[ops.index(ds[:, train])]  # (batch, T_r, group)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[d0:d0 + len(ds), group] = ops.to_numpy((yg * pred).sum(1) / ((pred * pred).sum(1) ** 0.5 * norm))
    return out


#: Elements of the largest work array of :func:`ridge_permutation_null` (2^25: 128 MB in float32):
#: the direct form's gathered training rows of a batch of draws, (batch, T_train, voxels).
_NULL_BUDGET = 2 ** 25
#: The factored form of :func:`ridge_permutation_null` runs where its multiply-adds are fewer
#: than this many times the direct form's: its products are large matrix products, the direct
#: form's a batch of smaller ones on gathered rows (``benchmarks/bench_null.py``: per
#: multiply-add 2.5x faster with k 96, T_r 150, 1.45x with k 768, T_r 600).
_NULL_FACTORED_GAIN = 1.5
#: Draws per batch of the factored form, and elements of its (draws, k, voxels) work arrays:
#: small enough to stay in cache (measured 2.0-2.6x faster than the direct form on a demo
#: layer with these, 1.4-2.3x with 4x larger arrays or batches of every draw).
_NULL_FACTORED_DRAWS = 16
_NULL_SLAB = 2 ** 20

#: Draws every voxel gets in :func:`ridge_null_p` before the screen.
NULL_FIRST_DRAWS = 30
#: Voxels whose p after the first draws is below this get the remaining draws.
NULL_SCREEN_P = 0.1


def ridge_null_p(X, Y, runs, fit: RidgeResult, perms, *, exclude=None, tail="normal", **backend) -> np.ndarray:
    """p values (V,) of ``fit.scores`` against :func:`ridge_permutation_null`, drawn in two steps.

    Every voxel gets the first :data:`NULL_FIRST_DRAWS` draws of ``perms``; with
    ``tail="normal"`` only voxels whose p is then below :data:`NULL_SCREEN_P` get the others
    (their p comes from all draws): the refits cost ~n_draws predictions per voxel, and a voxel
    that far from significance gains nothing from a sharper tail. ``tail="empirical"`` uses
    every draw for every voxel. Tails: :func:`alignment.stats.p_from_null`.

    Parameters
    ----------
    X : ndarray, shape (T, N)
    Y : ndarray, shape (T, V)
    runs : ndarray, shape (T,)
    fit : RidgeResult
        ``fit_ridge(X, Y, runs, ..., exclude=exclude)``.
    perms : ndarray of int, shape (n_draws, T)
    exclude, backend
        As in :func:`ridge_permutation_null`.

    Returns
    -------
    p : ndarray, shape (V,)
    """
    from alignment.stats import p_from_null

    perms = np.atleast_2d(np.asarray(perms))
    first = perms if tail != "normal" else perms[:NULL_FIRST_DRAWS]
    null = ridge_permutation_null(X, Y, runs, fit.fold_alphas, first, exclude=exclude, **backend)
    p = p_from_null(null, fit.scores, tail)
    go = np.flatnonzero(p < NULL_SCREEN_P)
    if len(first) < len(perms) and go.size:
        Ysub = np.asarray(Y)[:, go] if np.ndim(Y) == 2 else np.asarray(Y)[:, None]
        rest = ridge_permutation_null(X, Ysub, runs, fit.fold_alphas[:, go], perms[len(first):],
                                      exclude=exclude, **backend)
        p[go] = p_from_null(np.concatenate([null[:, go], rest]), fit.scores[go], tail)
    return p


def _is_float32(ops):
    if isinstance(ops, _NumpyOps):
        return ops.dtype == np.float32
    return ops.dtype == ops.torch.float32


# --------------------------------------------------------------------------------------------
# Banded ridge
# --------------------------------------------------------------------------------------------


def _banded_outer(Xs, Y, run_idx, alphas, gammas, voxel_chunk, ops, joint=None, exclude=None):
    """Outer leave-one-run-out loop of a banded ridge; per fold per band held-out R² split
    (L, B, V) and joint Pearson r (L, V). ``joint`` (T, V), when given, receives the joint
    held-out prediction (bands summed, training mean of Y added). ``exclude`` (L, T): as in
    :func:`fit_ridge`.

    Per outer fold, every band weighting ``gammas[g]`` (features of band b scaled by
    sqrt(gamma_b)) and alpha is scored by leave-one-run-out CV on the training runs; each voxel
    keeps the first weighting whose mean validation MSE beats the best so far by more than the
    dtype's eps, with its best alpha (himalaya's ``solve_group_ridge_random_search`` rule,
    ``l2_neg_loss``, ``local_alpha``); the model refit on the training runs predicts the
    held-out run band by band.
    """
    n_runs, n_voxels = len(run_idx), Y.shape[1]
    widths = [x.shape[1] for x in Xs]
    edges = np.cumsum([0] + widths)
    X = np.concatenate([np.asarray(x, dtype=np.float64) for x in Xs], axis=1)
    slope = 1e-10 * np.log(alphas)[:, None]  # ties go to the larger alpha
    eps = np.finfo(np.float32 if _is_float32(ops) else np.float64).eps
    chunks = [slice(s, min(s + voxel_chunk, n_voxels)) for s in range(0, n_voxels, voxel_chunk)]
    fold_split = np.zeros((n_runs, len(Xs), n_voxels))
    fold_r = np.zeros((n_runs, n_voxels))

    # search: per band weighting, the inner CV losses of every outer fold at once
    best = np.full((n_runs, n_voxels), -np.inf)
    best_gamma = np.zeros((n_runs, n_voxels), dtype=np.int64)
    best_alpha = np.zeros((n_runs, n_voxels), dtype=np.int64)
    for g, gamma in enumerate(gammas):
        Xg = ops.asarray(X * np.repeat(np.sqrt(gamma), widths))
        loss = _inner_losses(ops, Xg, Y, run_idx, alphas, chunks, exact=True, exclude=exclude)
        for r in range(n_runs):
            score = -loss[r] / (n_runs - 1) + slope
            arg = np.argmax(score, axis=0)
            score = score[arg, np.arange(n_voxels)]
            better = score > best[r] + eps
            best[r, better], best_gamma[r, better], best_alpha[r, better] = score[better], g, arg[better]

    # refit on the training runs of each outer fold, predict the held-out run band by band
    for r in range(n_runs):
        test = run_idx[r]
        preds = np.zeros((len(Xs), len(test), n_voxels))
        for g, gamma in enumerate(gammas):
            chosen = np.flatnonzero(best_gamma[r] == g)
            if not len(chosen):
                continue
            Xg = ops.asarray(X * np.repeat(np.sqrt(gamma), widths))
            dec = _Decomposition(ops, Xg, _training_rows(run_idx, (r,), exclude), [test], alphas)
            Xte = Xg[ops.index(test)] - dec.mean
            for start in range(0, len(chosen), voxel_chunk):
                cols = chosen[start:start + voxel_chunk]
                UtY, ymean = _chunk_projection(ops, dec, np.asarray(Y[:, cols]), slice(None))
                W = dec.filters[ops.index(best_alpha[r, cols])].T * UtY  # (k, c)
                for b in range(len(Xs)):
                    band = slice(edges[b], edges[b + 1])
                    preds[b][:, cols] = ops.to_numpy(Xte[:, band] @ (dec.V[band] @ W))
                if joint is not None:
                    joint[np.ix_(test, cols)] = preds[:, :, cols].sum(0) + ops.to_numpy(ymean)
        preds -= preds.mean(1, keepdims=True)
        y_te = np.asarray(Y[test], dtype=np.float64)
        y_te = y_te - y_te.mean(0)
        fold_split[r] = _r2_split(y_te, preds)
        fold_r[r] = _correlation(y_te, preds.sum(0))
    return fold_split, fold_r


def _band_weightings(n_bands, n_iter, concentration, random_state):
    """Band weightings of the random search, (n_iter, n_bands): uniform first, then Dirichlet
    samples (himalaya's ``generate_dirichlet_samples``, as its random search draws them)."""
    if n_bands == 1:
        return np.ones((1, 1))
    from himalaya.backend import get_backend, set_backend
    from himalaya.kernel_ridge import generate_dirichlet_samples

    previous = get_backend().name
    set_backend("numpy")
    try:
        gammas = np.array(generate_dirichlet_samples(n_samples=int(n_iter), n_kernels=n_bands,
                                                     concentration=list(concentration),
                                                     random_state=random_state), dtype=np.float64)
    finally:
        set_backend(previous, on_error="warn")
    gammas[0] = 1.0 / n_bands
    return gammas


def _r2_split(y, preds):
    """Product-measure split of R² (himalaya.scoring.r2_score_split, include_correlation=True).

    y : (t, v) zero-mean; preds : (B, t, v). Returns (B, v); constant voxels get 0.
    """
    sst = (y ** 2).sum(0)
    sst = np.where(sst == 0, np.inf, sst)
    total = preds.sum(0)
    return ((2 * y[None] * preds - preds * total[None]).sum(1)) / sst


def fit_banded_ridge(Xs: Sequence, Y, runs, alphas=None, *, n_iter=20,
                     concentration=(0.1, 1.0), backend="numpy", device="cpu",
                     voxel_chunk=_DEFAULT_VOXEL_CHUNK, compute_unique=True, band_names=None,
                     random_state=0, dtype=None, return_predictions=False, exclude=None) -> BandedRidgeResult:
    """Joint banded ridge over several feature spaces with leave-one-run-out evaluation.

    Each outer fold fits a banded ridge as ``himalaya.ridge.BandedRidgeCV`` does (random
    search over band weights on the simplex x the alpha grid, one hyperparameter set per
    voxel, chosen by inner leave-one-run-out CV on the training runs, intercept fitted; same
    band weightings and selection rule, on this module's ridge solver) and predicts the
    held-out run band by band. With ``compute_unique`` the model is refit without each band to
    get unique and shared variance.

    Parameters
    ----------
    Xs : list of ndarray, each shape (T, N_b)
        One feature space per band (B >= 1 bands).
    Y : ndarray, shape (T, V)
        BOLD.
    runs : ndarray, shape (T,)
        Run labels (>= 3 runs: inner CV on the training runs).
    alphas : ndarray, shape (n_alphas,), optional
        Alpha grid, default :data:`DEFAULT_ALPHAS`.
    n_iter : int
        Number of band-weight samples of the random search (himalaya default is 100; each
        costs one SVD per inner split). The first sample is uniform weights.
    concentration : tuple of float
        Dirichlet concentrations cycled through by the random search.
    backend, device : str
        As in :func:`fit_ridge`.
    voxel_chunk : int
        Voxels processed at once.
    compute_unique : bool
        Also fit the B reduced models (without band b) and return ``r2_without``, ``unique``
        and ``shared``.
    band_names : sequence of str, optional
        Names of the bands; default "band0", "band1", ...
    random_state : int
        Seed of the random search (deterministic results).
    dtype : {None, "float32", "float64"}
        As in :func:`fit_ridge`.
    return_predictions : bool
        Also return the joint model's held-out predictions (T, V) (e.g. to compare it with
        another model over time blocks); the other results do not change.
    exclude : ndarray of bool, shape (L, T), optional
        As in :func:`fit_ridge`: ``exclude[i, t]`` never trains a model (outer refit, inner
        search folds, reduced models) that predicts run ``i``.

    Returns
    -------
    BandedRidgeResult
        ``scores`` (V,), ``r2`` (V,), ``r2_split`` (B, V), ``fold_r2_split`` (L, B, V) and,
        with ``compute_unique``, ``r2_without`` (B, V), ``unique`` (B, V), ``shared`` (V,);
        with ``return_predictions``, ``predictions`` (T, V).
    """
    if isinstance(Xs, np.ndarray) and Xs.ndim == 2:
        Xs = [Xs]
    if len(Xs) == 0:
        raise ValueError("Xs must be a non-empty list of (T, N_b) feature arrays.")
    Y = _as_2d("Y", Y)
    Xs = [_as_2d(f"Xs[{b}]", x) for b, x in enumerate(Xs)]
    lengths = {x.shape[0] for x in Xs}
    if len(lengths) != 1 or Y.shape[0] not in lengths or np.shape(runs)[0] != Y.shape[0]:
        raise ValueError(
            f"All feature spaces, Y and runs must have the same length T; got "
            f"Xs: {[x.shape[0] for x in Xs]}, Y: {Y.shape[0]}, runs: {np.shape(runs)[0]}.")
    for b, x in enumerate(Xs):
        _check_finite_chunked(f"Xs[{b}]", x)
    _check_finite_chunked("Y", Y)
    labels, run_idx = _check_runs(runs, Y.shape[0], names="Xs, Y", min_runs=3)
    alphas = _check_alphas(alphas)
    if band_names is None:
        band_names = tuple(f"band{b}" for b in range(len(Xs)))
    band_names = tuple(str(n) for n in band_names)
    if len(band_names) != len(Xs):
        raise ValueError(f"band_names has {len(band_names)} names for {len(Xs)} bands.")
    if int(n_iter) < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}.")
    dt = _compute_dtype(dtype, Y, *Xs)
    exclude = _check_exclude(exclude, len(labels), Y.shape[0])

    ops = _get_ops(backend, device, dt)

    def run(spaces, joint=None):
        gammas = _band_weightings(len(spaces), n_iter, concentration, random_state)
        return _banded_outer(spaces, Y, run_idx, alphas, gammas, int(voxel_chunk), ops, joint, exclude)

    out_dtype = np.dtype(np.float32) if _is_float32(ops) else np.dtype(np.float64)
    preds = np.zeros(Y.shape, dtype=out_dtype) if return_predictions else None
    fold_split, fold_r = run(Xs, preds)
    r2_split = fold_split.mean(0)
    r2 = r2_split.sum(0)
    r2_without = unique = shared = None
    if compute_unique and len(Xs) > 1:
        r2_without = np.stack([run([x for i, x in enumerate(Xs) if i != b])[0].sum(1).mean(0)
                               for b in range(len(Xs))])
        unique = r2[None] - r2_without
        shared = r2 - unique.sum(0)
    return BandedRidgeResult(
        scores=fold_r.mean(0), r2=r2, r2_split=r2_split, fold_r2_split=fold_split,
        band_names=band_names, run_labels=labels, r2_without=r2_without, unique=unique,
        shared=shared, predictions=preds)


# --------------------------------------------------------------------------------------------
# Atom GLM (nilearn-compatible AR(p))
# --------------------------------------------------------------------------------------------


def _cosine_drift(n_frames, tr, high_pass):
    """DCT-II drift regressors of nilearn (``nilearn.signal.create_cosine_drift``) without the
    constant: (n_frames, order), order = floor(2 * n_frames * high_pass * tr)."""
    order = min(n_frames - 1, int(np.floor(2 * n_frames * high_pass * tr)))
    n = np.arange(n_frames)
    k = np.arange(1, order + 1)
    return np.sqrt(2.0 / n_frames) * np.cos((np.pi / n_frames) * (n[:, None] + 0.5) * k[None])


def _poly_drift(n_frames, order):
    """Polynomials (t / t_max)^k, k = 1..order, orthogonalised against lower orders and the
    constant (Gram-Schmidt by QR, unit norm): (n_frames, order). Same span as nilearn's
    polynomial drift."""
    t = np.arange(n_frames, dtype=np.float64)
    tmax = t.max() if t.max() > 0 else 1.0
    pol = (t[:, None] / tmax) ** np.arange(order + 1)[None]
    q, r = np.linalg.qr(pol)
    q = q * np.sign(np.diag(r))[None]  # deterministic sign: positive leading coefficient
    return q[:, 1:]


def make_glm_design(atoms, runs, *, drift="cosine", tr=1.0, high_pass=0.01, drift_order=1):
    """Design matrix of the atom GLM.

    Columns, in order:

    1. the K atoms (as given, already HRF-convolved): ``atom0 .. atom{K-1}``;
    2. drift regressors, separately for each run (zero outside the run), named
       ``drift_<run>_<k>``: ``"cosine"`` -- nilearn's DCT high-pass basis for that run,
       ``floor(2 * T_r * high_pass * tr)`` cosines (128 s cut-off by default: high_pass =
       0.01 Hz); ``"polynomial"`` -- polynomials of degree 1..drift_order of (t / t_max),
       orthonormalised within the run; ``None`` -- no drift;
    3. one intercept per run, ``run_<run>`` (1 in the run, 0 elsewhere).

    Parameters
    ----------
    atoms : ndarray, shape (T, K)
        HRF-convolved atom time courses.
    runs : ndarray, shape (T,)
        Run label of every time point.
    drift : {"cosine", "polynomial", None}
    tr : float
        Repetition time in seconds (cosine drift).
    high_pass : float
        Cut-off frequency in Hz (cosine drift).
    drift_order : int
        Highest polynomial degree (polynomial drift).

    Returns
    -------
    design : ndarray, shape (T, P)
    names : list of str, length P
    """
    atoms = _as_2d("atoms", atoms)
    labels, run_idx = _check_runs(runs, atoms.shape[0], names="atoms", min_runs=1, min_len=2)
    if drift not in ("cosine", "polynomial", None):
        raise ValueError(f"drift must be 'cosine', 'polynomial' or None, got {drift!r}.")
    if tr <= 0 or high_pass < 0 or int(drift_order) < 0:
        raise ValueError("tr must be > 0, high_pass >= 0 and drift_order >= 0.")
    n_samples, n_atoms = atoms.shape
    cols = [np.asarray(atoms, dtype=np.float64)]
    names = [f"atom{k}" for k in range(n_atoms)]
    for lab, idx in zip(labels, run_idx):
        if drift == "cosine":
            d = _cosine_drift(len(idx), tr, high_pass)
        elif drift == "polynomial":
            d = _poly_drift(len(idx), int(drift_order))
        else:
            d = np.zeros((len(idx), 0))
        block = np.zeros((n_samples, d.shape[1]))
        block[idx] = d
        cols.append(block)
        names += [f"drift_{lab}_{k + 1}" for k in range(d.shape[1])]
    intercepts = np.zeros((n_samples, len(labels)))
    for i, idx in enumerate(run_idx):
        intercepts[idx, i] = 1.0
    cols.append(intercepts)
    names += [f"run_{lab}" for lab in labels]
    return np.hstack(cols), names


def _ar_whiten(A, coef):
    """nilearn's ARModel.whiten: w[t] = a[t] - sum_i coef[i] a[t-1-i] for t > i (over the whole
    concatenated series, run boundaries included, and the first rows only partly whitened, as
    nilearn does). A (T, m) float64 (a numpy array or a torch tensor), coef (p,)."""
    if not hasattr(A, "detach"):  # a torch tensor stays one
        A = np.asarray(A, dtype=np.float64)
    W = A * 1.0
    for i, c in enumerate(np.atleast_1d(coef)):
        W[i + 1:] -= float(c) * A[:-(i + 1)]
    return W


class _OLS:
    """OLS of many voxels on one (whitened) design Xw (T, P), as nilearn's OLSModel.fit +
    Tcontrast (pinv, dispersion = SSE / (T - P), t = effect / sqrt(max(var, 1e-50))). The
    design's algebra is done once in numpy; calling it on Yw (T, v), an array of ``ops``, gives
    beta (K, v), t (K, v) of the first K = n_atoms columns and the residuals (T, v)."""

    def __init__(self, Xw, n_atoms, ops):
        pinv = np.linalg.pinv(Xw)
        self.X, self.pinv = ops.asarray(Xw), ops.asarray(pinv)
        self.cov_diag = ops.asarray((pinv[:n_atoms] ** 2).sum(1)[:, None])  # diag of pinv @ pinv.T, (K, 1)
        self.dof, self.n_atoms = Xw.shape[0] - Xw.shape[1], n_atoms

    def __call__(self, Yw):
        beta = self.pinv @ Yw
        resid = Yw - self.X @ beta
        dispersion = (resid ** 2).sum(0) / self.dof
        var = self.cov_diag * dispersion[None]
        t = beta[:self.n_atoms] / var.clip(min=1e-50) ** 0.5
        return beta[:self.n_atoms], t, resid


class _SeparateOLS:
    """One GLM per atom: t of atom k in the model [atom k, nuisance columns]; also the
    residuals of the nuisance-only model (T, v).

    The nuisance columns (everything after the first n_atoms) are projected out once, then every
    single-atom fit is closed-form: beta_k = <x_k, y> / <x_k, x_k>, SSE_k = <y, y> − beta_k²
    <x_k, x_k>, dispersion = SSE_k / (T − P_nuisance − 1). Equals nilearn's OLSModel on each
    [atom k, nuisance] design. Called like :class:`_OLS`.
    """

    def __init__(self, Xw, n_atoms, ops):
        q, r = np.linalg.qr(Xw[:, n_atoms:])
        q = q[:, np.abs(np.diag(r)) > 1e-10 * max(1.0, np.abs(r).max())]
        x = Xw[:, :n_atoms] - q @ (q.T @ Xw[:, :n_atoms])
        xx = (x * x).sum(0)[:, None]  # (K, 1)
        self.q, self.x = ops.asarray(q), ops.asarray(x)
        self.xx = ops.asarray(np.where(xx > 0, xx, np.inf))
        self.dof = Xw.shape[0] - q.shape[1] - 1

    def __call__(self, Yw):
        y = Yw - self.q @ (self.q.T @ Yw)
        xy = self.x.T @ y  # (K, v)
        beta = xy / self.xx
        sse = ((y * y).sum(0)[None] - beta * xy).clip(min=0.0)
        t = beta / (sse / self.dof / self.xx).clip(min=1e-50) ** 0.5
        return beta, t, y


def _lag_sums(resid, order, ops):
    """Lag-k sums a_k = sum_t e_t e_{t+k}, k = 0..order, of the column-centred residuals (T, v)
    (an array of ``ops``), as a numpy (order + 1, v) array. nilearn subtracts the grand mean of
    all residuals; with run intercepts in the design each voxel's residuals already have zero
    mean, so the column mean (~1e-17) is used."""
    n = resid.shape[0]
    e = resid - resid.mean(0)
    return np.stack([ops.to_numpy((e[:n - k] * e[k:]).sum(0)) for k in range(order + 1)])


def _ar_coefs(lag_sums, n):
    """Yule-Walker AR(p) coefficients per voxel from its residuals' lag sums (p+1, v) over a
    series of n points, as nilearn's ``_yule_walker``: autocovariances r_k = a_k / (n - k), then
    the Toeplitz system R rho = r[1:]. Returns (v, p); voxels with no residual get 0."""
    order = lag_sums.shape[0] - 1
    r = (lag_sums / (n - np.arange(order + 1))[:, None]).T  # (v, p+1)
    live = r[:, 0] > 0
    coef = np.zeros((r.shape[0], order))
    if order == 1:
        coef[live, 0] = r[live, 1] / r[live, 0]
    elif live.any():
        idx = np.abs(np.arange(order)[:, None] - np.arange(order)[None])
        coef[live] = np.linalg.solve(r[live][:, idx], r[live, 1:, None])[..., 0]
    coef[~np.isfinite(coef).all(1)] = 0.0
    return coef


def _lag(X, k, transpose=False):
    """D_k X for the lag-k shift matrix D_k (ones at (t, t + k)): row t is X[t + k] (0 past the
    end); with ``transpose``, D_k.T X: row t is X[t - k] (0 before the start). X (T, m)."""
    out = np.zeros_like(X)
    if k == 0:
        out[:] = X
    elif transpose:
        out[k:] = X[:-k]
    else:
        out[:-k] = X[k:]
    return out


def _residual_lag_map(nuisance, order):
    """The (p+1, p+1) matrix M with E[a_k] = sum_j M[k, j] c_j, where a_k = sum_t e_t e_{t+k}
    are the lag-k sums of the residuals e = R y of a fit on ``nuisance`` (T, r)
    (R = I - Q Q.T) and c_j the autocovariances of y (Worsley et al. 2002, NeuroImage 15:1-15,
    section "Estimating the autocorrelation"): M[k, j] = tr(R D_k R S_j), S_0 = I,
    S_j = D_j + D_j.T. Never forms a T x T matrix."""
    T = nuisance.shape[0]
    q, r = np.linalg.qr(np.asarray(nuisance, dtype=np.float64))
    Q = q[:, np.abs(np.diag(r)) > 1e-10 * max(1.0, np.abs(r).max())]

    def S(j, X):
        return X if j == 0 else _lag(X, j) + _lag(X, j, transpose=True)

    M = np.zeros((order + 1, order + 1))
    QDQ = [Q.T @ _lag(Q, k) for k in range(order + 1)]  # Q.T D_k Q
    QSQ = [Q.T @ S(j, Q) for j in range(order + 1)]  # Q.T S_j Q
    for k in range(order + 1):
        for j in range(order + 1):
            plain = (T - k) * (k == j)  # tr(D_k S_j)
            M[k, j] = (plain - (Q * _lag(S(j, Q), k)).sum() - (Q * S(j, _lag(Q, k))).sum()
                       + np.trace(QDQ[k] @ QSQ[j]))
    return M


def _ar_coefs_unbiased(lag_sums, n, nuisance):
    """AR(p) coefficients per voxel from its residuals' lag sums (p+1, v) over n points,
    corrected for the residual-forming projection of ``nuisance`` (n, r)
    (:func:`_residual_lag_map`; autocovariances beyond lag p taken as 0), then Yule-Walker.
    Returns (v, p); voxels with no residual, or whose corrected autocovariances are not
    positive definite, fall back to the uncorrected :func:`_ar_coefs`."""
    order = lag_sums.shape[0] - 1
    c = np.linalg.solve(_residual_lag_map(nuisance, order), lag_sums)  # (p+1, v) autocovariances
    plain = _ar_coefs(lag_sums, n)
    idx = np.abs(np.arange(order)[:, None] - np.arange(order)[None])
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (c / c[0]).T  # (v, p+1) autocorrelations
    ok = np.isfinite(rho).all(1) & (c[0] > 0)
    toeplitz = rho[:, idx]  # (v, p, p)
    ok[ok] &= np.linalg.eigvalsh(toeplitz[ok]).min(1) > 1e-6
    coef = plain.copy()
    if ok.any():
        coef[ok] = np.linalg.solve(toeplitz[ok], rho[ok, 1:, None])[..., 0]
    return coef


def _parse_noise_model(noise_model):
    """AR order of ``"ols"`` (0) or ``"ar<p>"`` (p >= 1)."""
    if noise_model == "ols":
        return 0
    m = re.fullmatch(r"ar([1-9][0-9]*)", str(noise_model))
    if m is None:
        raise ValueError(f"noise_model must be 'ols' or 'ar<p>' (e.g. 'ar1', 'ar5'), got {noise_model!r}.")
    return int(m.group(1))


#: voxels the AR k-means is fitted on; more are assigned to the nearest centre (a whole-brain
#: fit on 91282 voxels costs ~20 s for clusters no better than a sample's)
AR_KMEANS_SAMPLE = 10_000


def _quantise_ar(coef, bins, seed=0):
    """Group voxels by AR coefficients (v, p) as nilearn's ``run_glm`` does: AR(1) truncated to
    ``1 / bins`` steps; AR(p > 1) replaced by the centre of its k-means cluster (``bins``
    clusters, ``n_init=10``, ``random_state=seed``). Returns (v, p). With more than
    :data:`AR_KMEANS_SAMPLE` voxels the clusters are fitted on a seeded random sample of that
    many and every voxel takes its nearest centre (up to that size, exactly nilearn's)."""
    if coef.shape[1] == 1:
        # nilearn: (rho * bins).astype(int) / bins, i.e. truncation towards zero
        return np.trunc(coef * bins) / bins
    from sklearn.cluster import KMeans

    n_clusters = min(int(bins), coef.shape[0])
    sample = coef
    if coef.shape[0] > AR_KMEANS_SAMPLE:
        rng = np.random.default_rng(seed)
        sample = coef[np.sort(rng.choice(coef.shape[0], AR_KMEANS_SAMPLE, replace=False))]
    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(sample)
    return km.cluster_centers_[km.labels_ if sample is coef else km.predict(coef)]


def _two_sided_p(tvals, dof, cutoff=None):
    """Two-sided t-test p values; with ``cutoff``, p > cutoff is reported as 1.

    The t CDF costs ~0.2 µs a value, a second per whole-brain map of 64 atoms; most voxels are
    far from significance. BH q-values below ``cutoff`` are unchanged by the capping (a q-value
    is a minimum over p-values of equal or larger rank, each scaled by m / rank ≥ 1).
    """
    abs_t = np.abs(tvals)
    if cutoff is None:
        return 2.0 * _sps.t.sf(abs_t, dof)
    p = np.ones_like(abs_t)
    small = abs_t > _sps.t.isf(cutoff / 2.0, dof)
    p[small] = 2.0 * _sps.t.sf(abs_t[small], dof)
    return p


def fit_atoms_glm(atoms, Y, runs, *, drift="cosine", noise_model="ar1", tr=1.0, high_pass=0.01,
                  drift_order=1, bins=100, voxel_chunk=10_000, p_cutoff=None,
                  separate=False, ar_seed=0, ar_residuals="model",
                  ar_bias=False, backend="numpy", device="cpu") -> GLMResult:
    """Voxel-wise GLM of HRF-convolved dictionary atoms with an AR(p) noise model.

    The design is :func:`make_glm_design` (atoms, per-run drift, per-run intercepts). With
    ``ar_residuals="model"`` the fit reproduces ``nilearn.glm.first_level.run_glm(Y, design,
    noise_model=noise_model, bins=bins, random_state=ar_seed)`` followed by
    ``compute_contrast`` with a one-hot contrast per atom:

    1. OLS fit; AR(p) coefficients of each voxel's residuals by Yule-Walker;
    2. coefficients grouped like nilearn: AR(1) truncated to ``1 / bins`` steps
       (``trunc(rho * bins) / bins``); AR(p > 1) replaced by the centre of its k-means cluster
       (``bins`` clusters);
    3. per group, the design and the voxels' data are AR(p)-whitened (``w[t] = a[t] -
       sum_i rho_i a[t-1-i]`` over the concatenated series) and refit by OLS; t = beta / sd
       with ``dispersion = SSE_w / (T - P)``.

    ``ar_residuals="nuisance"`` (what the ``glm`` stage uses) estimates the AR coefficients from
    the residuals of the nuisance-only model (drift and intercepts) instead: with many smooth,
    collinear atoms the full model fits away part of the slow noise and its residuals
    underestimate the autocorrelation, which inflates t (measured in
    ``benchmarks/bench_glm_calibration.py``). Under the null the two coincide in expectation
    except for that bias; a voxel with a strong atom response gets larger AR terms (a
    conservative error).

    ``ar_bias=True`` (also what the ``glm`` stage uses) corrects the residuals' lag sums for the
    projection that made them before the Yule-Walker step (Worsley et al. 2002, NeuroImage
    15:1-15): E[sum_t e_t e_{t+k}] = sum_j tr(R D_k R S_j) c_j for the residual-forming matrix R
    and lag matrices D_k, S_j (autocovariances c_j beyond lag p taken as 0); solving this
    (p+1) x (p+1) system gives the autocovariances of the data, not of its residuals, which the
    drift and intercepts (and, for the full model, the atoms) bias towards zero.

    Voxels are grouped by bin (one pseudo-inverse per bin) and processed in chunks.

    Parameters
    ----------
    atoms : ndarray, shape (T, K)
        HRF-convolved atoms (regressors of interest).
    Y : ndarray, shape (T, V)
        BOLD.
    runs : ndarray, shape (T,)
        Run labels.
    drift : {"cosine", "polynomial", None}
        Drift model per run, see :func:`make_glm_design`.
    noise_model : str
        ``"ols"`` or ``"ar<p>"`` (``"ar1"``, ``"ar3"``, ...): the order of the AR noise model.
    tr, high_pass, drift_order
        Drift parameters, see :func:`make_glm_design`.
    bins : int
        Number of AR bins per unit of rho (nilearn's ``bins``).
    voxel_chunk : int
        Voxels processed at once.
    p_cutoff : float, optional
        Report p values above this as 1 (saves the t CDF where nothing can be significant;
        BH q-values below the cutoff are exact).
    separate : bool
        False: one joint GLM of all atoms (t of each atom given the others). True: each atom
        in its own GLM with the nuisance regressors (t of atom k alone), the usual reading of
        "the BNs an atom drives" when HRF-smoothed atoms are collinear; the AR(1) coefficient
        of each voxel comes from the residuals of the nuisance-only model (binned as above).
    ar_seed : int
        ``random_state`` of the k-means grouping of AR(p > 1) coefficients.
    ar_residuals : {"model", "nuisance"}
        Residuals the AR coefficients of the joint model come from (see above); the separate
        GLMs always use the nuisance-only model.
    ar_bias : bool
        Correct the residuals' autocovariances for the fit's projection (see above); False
        reproduces nilearn.
    backend, device
        Where the voxels' products run (see "Backends"; always float64): torch on a GPU for
        ``backend="torch", device="cuda"``. The design's algebra (pseudo-inverses, QR), the AR
        grouping and the p values stay in numpy.

    Returns
    -------
    GLMResult
        ``beta`` (K, V), ``t`` (K, V), ``p`` (K, V) two-sided, ``dof`` = T - rank(design),
        ``rho`` (V,) for AR(1) or (V, p), ``design`` (T, P), ``design_names``.

    Raises
    ------
    ValueError
        Mismatched lengths, NaN/inf, unknown drift or noise model, or a design with more
        columns than time points.
    """
    atoms = _as_2d("atoms", atoms)
    Y = _as_2d("Y", Y)
    if atoms.shape[0] != Y.shape[0] or np.shape(runs)[0] != Y.shape[0]:
        raise ValueError(
            f"atoms has {atoms.shape[0]} time points, Y has {Y.shape[0]} and runs has "
            f"{np.shape(runs)[0]}: all three must have the same length T.")
    order = _parse_noise_model(noise_model)
    if ar_residuals not in ("model", "nuisance"):
        raise ValueError(f"ar_residuals must be 'model' or 'nuisance', got {ar_residuals!r}.")
    _check_finite_chunked("atoms", atoms)
    _check_finite_chunked("Y", Y)
    design, names = make_glm_design(atoms, runs, drift=drift, tr=tr, high_pass=high_pass,
                                    drift_order=drift_order)
    n_samples, n_cols = design.shape
    n_atoms, n_voxels = atoms.shape[1], Y.shape[1]
    if n_cols >= n_samples:
        raise ValueError(
            f"The design has {n_cols} columns for {n_samples} time points; reduce the atoms "
            "or the drift terms.")
    eps = np.abs(design).sum() * np.finfo(np.float64).eps
    rank = int(np.linalg.matrix_rank(design, eps))
    if rank < n_cols and not separate:
        warnings.warn(
            f"The GLM design is rank deficient (rank {rank} < {n_cols} columns): some atoms "
            "are collinear with each other or with drift/intercepts; their t values are not "
            "interpretable.", stacklevel=2)
    dof = n_samples - rank
    voxel_chunk = max(1, int(voxel_chunk))

    ops = _get_ops(backend, device, np.float64)
    beta = np.zeros((n_atoms, n_voxels))
    tvals = np.zeros((n_atoms, n_voxels))
    coef = np.zeros((n_voxels, order))
    degenerate = np.zeros(n_voxels, dtype=bool)
    model = _SeparateOLS if separate else _OLS
    from_nuisance = separate or ar_residuals == "nuisance"
    fit_ols = model(design, n_atoms, ops)
    # separate: the noise model comes from the nuisance-only fit (residuals of a model with the
    # slow, atom-like part of the noise fitted away underestimate the AR terms)
    nuisance_fit = _SeparateOLS(design, n_atoms, ops) if order and from_nuisance and not separate else None
    # pass 1: OLS (the final fit for "ols"; residuals -> AR coefficients otherwise)
    for start in range(0, n_voxels, voxel_chunk):
        cols = slice(start, min(start + voxel_chunk, n_voxels))
        Yc = ops.asarray(Y[:, cols])  # float64
        b, t, resid = fit_ols(Yc)
        if nuisance_fit is not None:
            resid = nuisance_fit(Yc)[2]
        # residuals at rounding level (constant voxels): t would be a ratio of rounding errors
        flat = (resid ** 2).sum(0) <= (100 * np.finfo(np.float64).eps) ** 2 * (Yc ** 2).sum(0)
        degenerate[cols] = ops.to_numpy(flat)
        beta[:, cols] = ops.to_numpy(b)
        if order == 0:
            tvals[:, cols] = ops.to_numpy(t)
        else:
            lag_sums = _lag_sums(resid, order, ops)
            if ar_bias:
                # Worsley's correction of the residuals' autocovariances for the fit's projection
                fitted = design[:, n_atoms:] if from_nuisance else design
                coef[cols] = _ar_coefs_unbiased(lag_sums, n_samples, fitted)
            else:
                coef[cols] = _ar_coefs(lag_sums, n_samples)
    coef[degenerate] = 0.0
    # pass 2 (AR): one whitened design per group of voxels with the same (binned) coefficients
    if order:
        live = np.flatnonzero(~degenerate)
        if live.size:
            coef[live] = _quantise_ar(coef[live], bins, seed=ar_seed)
        groups, group_of = np.unique(coef[live], axis=0, return_inverse=True)
        for g, value in enumerate(groups):
            vox = live[np.ravel(group_of) == g]
            fit_white = model(_ar_whiten(design, value), n_atoms, ops)
            for start in range(0, len(vox), voxel_chunk):
                sel = vox[start:start + voxel_chunk]
                Yw = _ar_whiten(ops.asarray(Y[:, sel]), value)
                b, t = fit_white(Yw)[:2]
                beta[:, sel], tvals[:, sel] = ops.to_numpy(b), ops.to_numpy(t)
    tvals[:, degenerate] = 0.0
    if separate:
        dof = n_samples - int(np.linalg.matrix_rank(design[:, n_atoms:], eps)) - 1
    p = _two_sided_p(tvals, dof, p_cutoff)
    rho = coef[:, 0] if order == 1 else coef
    return GLMResult(beta=beta, t=tvals, p=p, dof=dof, rho=rho, design=design,
                     design_names=tuple(names), noise_model=noise_model)
