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


@dataclass(frozen=True, eq=False)
class LesionCurve:
    """Encoding accuracy as ANs are removed.

    Attributes
    ----------
    fractions : ndarray, shape (F,)
        Fraction of ANs removed.
    n_removed : ndarray of int, shape (F,)
    mean_r : ndarray, shape (F,)
        Mean encoding r over the evaluated voxels (averaged over repeats for random order).
    sd_r : ndarray, shape (F,)
        SD of ``mean_r`` over repeats (0 for ranked order).
    repeats : ndarray, shape (n_repeats, F)
        Per-repeat mean r.
    order : str
    """

    fractions: np.ndarray
    n_removed: np.ndarray
    mean_r: np.ndarray
    sd_r: np.ndarray
    repeats: np.ndarray
    order: str


def lesion_curve(X, Y, runs, order: str = "random", fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 ranking=None, seed: int = 0, fit: Callable | None = None, *, n_repeats: int = 5,
                 voxels=None, fit_kwargs: dict | None = None) -> LesionCurve:
    """Encoding accuracy when a growing fraction of ANs is removed.

    Parameters
    ----------
    X : ndarray, shape (T, N)
        AN features (HRF-convolved, z-scored).
    Y : ndarray, shape (T, V)
        BOLD.
    runs : ndarray, shape (T,)
        Run labels (cross-validation folds).
    order : {"random", "ranked"}
        ``"random"``: remove a random subset (nested: a larger fraction removes a superset of
        the smaller one's ANs, so each repeat is one random lesion order), averaged over
        ``n_repeats`` orders. ``"ranked"``: remove the highest-``ranking`` ANs first.
    fractions : sequence of float in [0, 1)
        Fractions of the N ANs to remove (``round(f · N)`` ANs; at least one AN is kept).
    ranking : ndarray, shape (N,)
        Importance score per AN (higher = removed first); required for ``"ranked"``.
    seed : int
        Seed of the random orders.
    fit : callable, optional
        ``fit(X, Y, runs, **fit_kwargs)`` returning an object with ``.scores`` (V,); default
        :func:`alignment.encoding.fit_ridge`.
    n_repeats : int
        Random orders averaged (``"random"`` only).
    voxels : ndarray of int or bool, optional
        Voxels to evaluate (e.g. those significant with all ANs); default all.
    fit_kwargs : dict, optional
        Extra arguments for ``fit``.

    Returns
    -------
    LesionCurve
        ``fractions`` (F,), ``n_removed`` (F,), ``mean_r`` (F,), ``sd_r`` (F,), ``repeats``.
    """
    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X (T, N) and Y (T, V) must share T; got {X.shape} and {Y.shape}")
    if voxels is not None:
        Y = Y[:, np.asarray(voxels)]
    N = X.shape[1]
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or np.any((fr < 0) | (fr >= 1)):
        raise ValueError("fractions must be a non-empty sequence of values in [0, 1)")
    n_rm = np.minimum(np.round(fr * N).astype(int), N - 1)
    if fit is None:
        from alignment.encoding import fit_ridge as fit
    fit_kwargs = fit_kwargs or {}
    if order == "ranked":
        if ranking is None:
            raise ValueError("order='ranked' needs ranking (N,) importance scores")
        ranking = np.asarray(ranking, dtype=np.float64)
        if ranking.shape != (N,):
            raise ValueError(f"ranking must have shape ({N},), got {ranking.shape}")
        orders = [np.argsort(-ranking, kind="stable")]
    elif order == "random":
        rng = np.random.default_rng(seed)
        orders = [rng.permutation(N) for _ in range(max(1, int(n_repeats)))]
    else:
        raise ValueError(f"order must be 'random' or 'ranked', got {order!r}")
    reps = np.empty((len(orders), fr.size))
    cache: dict = {}
    for i, perm in enumerate(orders):
        for j, n in enumerate(n_rm):
            keep = np.sort(perm[n:])
            key = keep.tobytes()
            if key not in cache:  # removing 0 ANs is the same fit for every repeat
                scores = np.asarray(fit(X[:, keep], Y, runs, **fit_kwargs).scores, dtype=np.float64)
                cache[key] = float(np.nanmean(scores))
            reps[i, j] = cache[key]
    return LesionCurve(fr, n_rm, reps.mean(0), reps.std(0), reps, order)
