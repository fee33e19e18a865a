"""Sparse dictionary learning of artificial-neuron time series (neuron-level mapping, step 1).

Each artificial neuron (AN) is a *sample* whose features are its T time points::

    A.T (N x T)  ~  S (N x K, sparse codes)  @  D (K x T, temporal atoms)

The atoms D are then HRF-convolved and used as GLM regressors
(:func:`alignment.encoding.fit_atoms_glm`); the codes S link ANs to atoms (and, through the GLM
t maps, to voxels).

Solver choice: ``sklearn.decomposition.DictionaryLearning`` with coordinate descent
(``fit_algorithm="cd"``, codes by ``lasso_cd``). With few samples (N ~ 10^3 ANs per layer) and
long feature vectors (T ~ 10^3 TRs) the full-batch solver is both faster and reaches a lower
objective than ``MiniBatchDictionaryLearning`` (measured at N=768, T=1200, K=64: ~6 s for 100
batch iterations vs ~29 s for 30 mini-batch epochs, explained variance 0.855 vs 0.848). LARS
was ~7x slower than CD for the same result. Deterministic for a given ``seed``.

Initialisation: the objective has many local minima that differ in the atoms' signs, order and
mixing, and a dictionary seed must be able to reach them, or the stability of anything derived
from the dictionary across seeds measures nothing. The default ``init="rotated-svd"`` starts from
the top-K right singular vectors of A.T (the best K-dimensional start) mixed by a random
orthogonal K x K rotation drawn from ``seed`` (Haar measure): every seed starts in the same
principal subspace, with a different basis of it, so seeds differ as much as the objective
allows and no seed starts worse than another.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["DictionaryResult", "learn_atoms"]


@dataclass(frozen=True, eq=False)
class DictionaryResult:
    """Result of :func:`learn_atoms`.

    Attributes
    ----------
    codes : ndarray, shape (N, K)
        Sparse codes S (signed: the sign of ``codes[n, k]`` is the polarity of AN n for atom k).
    atoms : ndarray, shape (K, T)
        Temporal atoms D, each of unit L2 norm (scikit-learn's constraint).
    explained_variance : float
        ``1 - ||A.T - S D||^2 / ||A.T||^2`` (sum of squares about zero: A is z-scored, so this
        is the fraction of the ANs' variance the sparse model reproduces).
    alpha : float
        L1 penalty used.
    n_iter : int
        Iterations run by the solver.
    """

    codes: np.ndarray
    atoms: np.ndarray
    explained_variance: float
    alpha: float
    n_iter: int


#: initial dictionaries of :func:`learn_atoms`
INITS = ("rotated-svd", "svd", "random")


def learn_atoms(A, n_atoms=64, alpha=1.0, seed=0, *, init="rotated-svd", max_iter=100, tol=1e-6,
                positive_code=False) -> DictionaryResult:
    """Learn K temporal atoms and sparse AN codes: A.T (N x T) ~ codes (N x K) @ atoms (K x T).

    Minimises ``0.5 ||A.T - S D||_F^2 + alpha ||S||_1`` with ``||D_k||_2 <= 1``
    (scikit-learn's ``DictionaryLearning`` objective, coordinate descent), then re-encodes A with
    the final dictionary so that codes and atoms are consistent.

    Parameters
    ----------
    A : ndarray, shape (T, N)
        AN time series, z-scored within run (time points x neurons).
    n_atoms : int
        Number of atoms K (default 64, the paper's value). Must be <= N.
    alpha : float
        L1 sparsity penalty (> 0). Larger -> sparser codes, lower explained variance.
    seed : int
        Seed of the initial dictionary (``"rotated-svd"``, ``"random"``) and random state of
        scikit-learn. Same seed and input -> same result.
    init : {"rotated-svd", "svd", "random"}
        Initial dictionary: ``"rotated-svd"`` (default; the top-K right singular vectors of A.T
        mixed by a random orthogonal rotation drawn from ``seed``: see the module docstring),
        ``"svd"`` (scikit-learn's default, the unrotated singular vectors; deterministic, so
        the result barely depends on ``seed``) or ``"random"`` (Gaussian unit-norm atoms drawn
        from ``seed``).
    max_iter : int
        Maximum number of outer iterations.
    tol : float
        Convergence tolerance on the objective.
    positive_code : bool
        Constrain codes to be non-negative (off by default: polarity needs signed codes).

    Returns
    -------
    DictionaryResult
        ``codes`` (N, K), ``atoms`` (K, T), ``explained_variance`` (float).

    Raises
    ------
    ValueError
        A not 2-D, NaN/inf in A, n_atoms < 1 or > N, alpha <= 0, or fewer than 2 time points.
    """
    from sklearn.decomposition import DictionaryLearning
    from sklearn.exceptions import ConvergenceWarning

    A = np.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D array (T time points x N neurons); got shape "
                         f"{A.shape}.")
    n_t, n_an = A.shape
    if n_t < 2:
        raise ValueError(f"A needs at least 2 time points; got {n_t}.")
    if not np.isfinite(A).all():
        raise ValueError("A contains NaN or inf values; z-score it over finite data first.")
    n_atoms = int(n_atoms)
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be >= 1, got {n_atoms}.")
    if n_atoms > n_an:
        raise ValueError(
            f"n_atoms={n_atoms} exceeds the number of artificial neurons N={n_an}: each AN is "
            "one sample, so at most N atoms can be learned. Lower n_atoms.")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}.")

    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}.")

    samples = np.ascontiguousarray(A.T, dtype=np.float64)  # (N, T): one row per AN
    dict_init = code_init = None
    rng = np.random.default_rng(seed)
    if init == "random":
        dict_init = rng.standard_normal((n_atoms, n_t))
        dict_init /= np.linalg.norm(dict_init, axis=1, keepdims=True)
        code_init = np.zeros((n_an, n_atoms))
    elif init == "rotated-svd":
        U, s, Vt = np.linalg.svd(samples, full_matrices=False)
        k = min(n_atoms, s.size)
        # Haar-random rotation: QR of a Gaussian matrix, signs fixed by R's diagonal
        q, r = np.linalg.qr(rng.standard_normal((k, k)))
        rot = q * np.sign(np.diag(r))[None]
        dict_init = np.zeros((n_atoms, n_t))
        dict_init[:k] = rot.T @ Vt[:k]
        # codes consistent with the rotated start (samples ~ U s Vt = (U s rot) (rot.T Vt))
        code_init = np.zeros((n_an, n_atoms))
        code_init[:, :k] = (U[:, :k] * s[:k]) @ rot
    est = DictionaryLearning(
        n_components=n_atoms, alpha=float(alpha), max_iter=int(max_iter), tol=float(tol),
        fit_algorithm="cd", transform_algorithm="lasso_cd", transform_alpha=float(alpha),
        positive_code=positive_code, random_state=int(seed), dict_init=dict_init,
        code_init=code_init)
    with warnings.catch_warnings():
        # lasso convergence chatter on near-degenerate atoms; the objective is still reported
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(samples)
        codes = est.transform(samples)
    atoms = est.components_
    resid = samples - codes @ atoms
    total = float((samples ** 2).sum())
    ev = 1.0 - float((resid ** 2).sum()) / total if total > 0 else 0.0
    return DictionaryResult(codes=codes, atoms=atoms, explained_variance=ev, alpha=float(alpha),
                            n_iter=int(est.n_iter_))
