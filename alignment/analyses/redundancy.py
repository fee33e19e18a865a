"""Redundancy of the AN → BN mapping (DESIGN §5.6).

How many atoms / ANs reach each voxel, how many voxels each AN reaches, how much the atoms'
brain maps overlap (Dice), and how encoding accuracy degrades when ANs are removed at random
versus top-ranked first (a lesion curve): a redundant code loses little when random ANs go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "links_per_voxel",
    "links_per_an",
    "ans_per_voxel",
    "dice_overlap",
    "atom_collinearity",
    "LesionCurve",
    "lesion_curve",
]

DEFAULT_FRACTIONS = tuple(np.round(np.arange(0, 1.0, 0.1), 2))


def _sig2d(sig):
    sig = np.asarray(sig, dtype=bool)
    if sig.ndim != 2:
        raise ValueError(f"sig must have shape (K, V), got {sig.shape}")
    return sig


def _active_codes(codes, K, threshold):
    S = np.asarray(codes)
    if S.ndim != 2 or S.shape[1] != K:
        raise ValueError(f"codes must have shape (N, {K}), got {S.shape}")
    return np.abs(S) > threshold


def links_per_voxel(sig) -> np.ndarray:
    """Number of atoms significantly linked to each voxel.

    Parameters
    ----------
    sig : ndarray of bool, shape (K, V)

    Returns
    -------
    ndarray of int, shape (V,)
    """
    return _sig2d(sig).sum(0).astype(np.int64)


def links_per_an(codes, sig, threshold: float = 0.0, *, chunk: int = 16384) -> np.ndarray:
    """Number of BNs significantly linked to each AN through its non-zero atoms.

    An AN n reaches voxel v when some atom k has ``|S[n, k]| > threshold`` and ``sig[k, v]``.

    Parameters
    ----------
    codes : ndarray, shape (N, K)
        Sparse codes S.
    sig : ndarray of bool, shape (K, V)
    threshold : float
        Codes with ``|S| <= threshold`` are no link.
    chunk : int
        Voxels per block (memory ~ N × chunk floats).

    Returns
    -------
    ndarray of int, shape (N,)
    """
    sig = _sig2d(sig)
    act = _active_codes(codes, sig.shape[0], threshold).astype(np.float32)
    out = np.zeros(act.shape[0], dtype=np.int64)
    for s in range(0, sig.shape[1], chunk):
        # (N, K) @ (K, c): number of linking atoms; > 0 means the AN reaches the voxel
        out += ((act @ sig[:, s:s + chunk].astype(np.float32)) > 0).sum(1)
    return out


def ans_per_voxel(codes, sig, threshold: float = 0.0, *, chunk: int = 16384) -> np.ndarray:
    """Number of ANs significantly linked to each voxel (through any significant atom).

    Parameters
    ----------
    codes : ndarray, shape (N, K)
    sig : ndarray of bool, shape (K, V)
    threshold : float
        Codes with ``|S| <= threshold`` are no link.
    chunk : int
        Voxels per block.

    Returns
    -------
    ndarray of int, shape (V,)
    """
    sig = _sig2d(sig)
    act = _active_codes(codes, sig.shape[0], threshold).astype(np.float32)
    out = np.zeros(sig.shape[1], dtype=np.int64)
    for s in range(0, sig.shape[1], chunk):
        out[s:s + chunk] = ((act @ sig[:, s:s + chunk].astype(np.float32)) > 0).sum(0)
    return out


def dice_overlap(sig) -> np.ndarray:
    """Dice overlap between the significant-BN maps of every pair of atoms.

    Parameters
    ----------
    sig : ndarray of bool, shape (K, V)

    Returns
    -------
    ndarray, shape (K, K)
        ``2 |A ∩ B| / (|A| + |B|)``; symmetric, 1 on the diagonal of non-empty maps, NaN where
        both maps are empty.
    """
    sig = _sig2d(sig)
    f = sig.astype(np.float32)
    inter = (f @ f.T).astype(np.float64)  # exact: counts < 2**24 per pair
    size = np.diag(inter).copy()
    den = size[:, None] + size[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2.0 * inter / np.where(den > 0, den, 1.0), np.nan)


def atom_collinearity(design, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """Collinearity of the atom regressors of a GLM design: how far the joint model can tell
    the atoms apart.

    Parameters
    ----------
    design : ndarray, shape (T, P)
        GLM design with the K atom regressors first (:func:`alignment.encoding.make_glm_design`:
        atoms, drift, run intercepts).
    n_atoms : int
        K.

    Returns
    -------
    max_corr : ndarray, shape (K,)
        Per atom, the largest |Pearson r| with another atom regressor (0 for a single atom).
    vif : ndarray, shape (K,)
        Variance inflation factor of each atom in the whole design, ``1 / (1 - R²)`` with R² of
        the atom regressed on every other column (centered R²: the run intercepts span the
        constant), as statsmodels' ``variance_inflation_factor``; inf for an atom in the span of
        the others.
    """
    X = np.asarray(design, dtype=np.float64)
    K = int(n_atoms)
    if X.ndim != 2 or not 1 <= K <= X.shape[1]:
        raise ValueError(f"design must be (T, P) with the {K} atoms first; got shape {X.shape}")
    atoms = X[:, :K]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(atoms.T).reshape(K, K) if K > 1 else np.ones((1, 1))
    corr = np.abs(np.nan_to_num(corr))
    np.fill_diagonal(corr, 0.0)
    vif = np.empty(K)
    for k in range(K):
        x = X[:, k]
        others = np.delete(X, k, axis=1)
        fitted = others @ np.linalg.lstsq(others, x, rcond=None)[0]
        rss = float(((x - fitted) ** 2).sum())
        tss = float(((x - x.mean()) ** 2).sum())
        vif[k] = np.inf if rss <= 1e-12 * max(tss, 1e-300) else tss / rss
    return corr.max(1), vif


@dataclass(frozen=True, eq=False)
class LesionCurve:
    """Encoding accuracy as ANs are removed.

    Attributes
    ----------
    fractions : ndarray, shape (F,)
        Fraction of ANs removed.
    n_removed : ndarray of int, shape (F,)
    mean_r : ndarray, shape (F,)
        Held-out encoding r averaged over the evaluated voxels and the folds (and over
        repeats for random order).
    sd_r : ndarray, shape (F,)
        SD of ``mean_r`` over repeats (0 for ranked order).
    repeats : ndarray, shape (n_repeats, F)
        Per-repeat mean r.
    order : str
    rankings : ndarray, shape (L, N), or None
        Ranked order: the importance scores each fold removed by (one row per held-out run,
        in the order of the sorted run labels); None for random order.
    """

    fractions: np.ndarray
    n_removed: np.ndarray
    mean_r: np.ndarray
    sd_r: np.ndarray
    repeats: np.ndarray
    order: str
    rankings: np.ndarray | None = None


def lesion_curve(X, Y, runs, order: str = "random", fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 ranking=None, seed: int = 0, fit: Callable | None = None, *, n_repeats: int = 5,
                 voxels=None, fit_kwargs: dict | None = None, an_index=None) -> LesionCurve:
    """Held-out encoding accuracy when a growing fraction of ANs is removed.

    Every point is cross-validated: for each held-out run, the ANs to remove are chosen, the
    model is fitted on the other runs without them and scored (Pearson r) on the held-out run;
    the voxels' mean r is averaged over the held-out runs.

    Parameters
    ----------
    X : ndarray, shape (T, P)
        Design (HRF-convolved or FIR-delayed, z-scored ANs); column j belongs to AN
        ``an_index[j]``.
    Y : ndarray, shape (T, V)
        BOLD.
    runs : ndarray, shape (T,)
        Run labels (cross-validation folds).
    order : {"random", "ranked"}
        ``"random"``: remove a random subset (nested: a larger fraction removes a superset of
        the smaller one's ANs, so each repeat is one random lesion order), the same in every
        fold, averaged over ``n_repeats`` orders. ``"ranked"``: remove the highest-``ranking``
        ANs first.
    fractions : sequence of float in [0, 1)
        Fractions of the N ANs to remove (``round(f · N)`` ANs; at least one AN is kept).
    ranking : ndarray, shape (N,), or callable
        Importance per AN (higher = removed first); required for ``"ranked"``. A callable
        ``ranking(train) -> (N,)`` is called once per held-out run with the boolean mask (T,)
        of that fold's training TRs, so the ranking can be learned on the training runs only
        (a fixed array is used in every fold: it must not come from the scored data, or the
        ranked curve is in-sample).
    seed : int
        Seed of the random orders.
    fit : callable, optional
        ``fit(X, Y, runs, **fit_kwargs)`` returning an object with ``.fold_scores`` (L, V),
        the held-out r of every run in the order of the sorted run labels (leave-one-run-out);
        default :func:`alignment.encoding.fit_ridge` (alpha per voxel by inner CV on the
        training runs).
    n_repeats : int
        Random orders averaged (``"random"`` only).
    voxels : ndarray of int or bool, optional
        Voxels to evaluate (e.g. those significant with all ANs); default all.
    fit_kwargs : dict, optional
        Extra arguments for ``fit``.
    an_index : ndarray of int, shape (P,), optional
        The AN of every column of X (:func:`alignment.features.design_an_index`: an FIR design
        has D columns per AN, all removed together); default ``arange(P)``.

    Returns
    -------
    LesionCurve
        ``fractions`` (F,), ``n_removed`` (F,), ``mean_r`` (F,), ``sd_r`` (F,), ``repeats``,
        ``rankings`` (L, N) for ranked order.
    """
    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X (T, P) and Y (T, V) must share T; got {X.shape} and {Y.shape}")
    if voxels is not None:
        Y = Y[:, np.asarray(voxels)]
    runs = np.asarray(runs)
    labels = np.unique(runs)
    an_index = np.arange(X.shape[1]) if an_index is None else np.asarray(an_index)
    if an_index.shape != (X.shape[1],):
        raise ValueError(f"an_index must have shape ({X.shape[1]},), got {an_index.shape}")
    N = int(an_index.max()) + 1
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or np.any((fr < 0) | (fr >= 1)):
        raise ValueError("fractions must be a non-empty sequence of values in [0, 1)")
    n_rm = np.minimum(np.round(fr * N).astype(int), N - 1)
    if fit is None:
        from alignment.encoding import fit_ridge as fit
    fit_kwargs = fit_kwargs or {}
    rankings = None
    if order == "ranked":
        if ranking is None:
            raise ValueError("order='ranked' needs ranking: (N,) importance scores or a callable of the training mask")
        per_fold = [ranking(runs != label) if callable(ranking) else ranking for label in labels]
        rankings = np.stack([np.asarray(r, dtype=np.float64) for r in per_fold])
        if rankings.shape != (labels.size, N):
            raise ValueError(f"ranking must give shape ({N},) per fold, got {rankings.shape[1:]}")
        # one order per fold, most important first
        orders = [np.stack([np.argsort(-rk, kind="stable") for rk in rankings])]
    elif order == "random":
        rng = np.random.default_rng(seed)
        orders = [np.tile(rng.permutation(N), (labels.size, 1)) for _ in range(max(1, int(n_repeats)))]
    else:
        raise ValueError(f"order must be 'random' or 'ranked', got {order!r}")
    reps = np.empty((len(orders), fr.size))
    cache: dict = {}  # kept ANs -> (L, V) held-out r; removing 0 ANs is the same fit for every order
    for i, fold_orders in enumerate(orders):
        for j, n in enumerate(n_rm):
            fold_means = []
            for f, perm in enumerate(fold_orders):
                keep = np.sort(perm[n:])
                key = keep.tobytes()
                if key not in cache:
                    cols = np.flatnonzero(np.isin(an_index, keep))
                    cache[key] = np.asarray(fit(X[:, cols], Y, runs, **fit_kwargs).fold_scores, dtype=np.float64)
                fold_means.append(np.nanmean(cache[key][f]))
            reps[i, j] = np.mean(fold_means)
    return LesionCurve(fr, n_rm, reps.mean(0), reps.std(0), reps, order, rankings)
