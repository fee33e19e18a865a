"""Group (random-effects) inference across subjects (DESIGN §5, "Group level").

Every per-subject map that claims significance gets a group test: one value per subject and
voxel (a Fisher-z difference, a unique R², a coupling), a one-sample t test across subjects
(the subjects' spread is the error term, so noise the per-subject test mis-models — long
memory, drift — does not make the group test liberal as long as subjects are independent),
and Benjamini-Hochberg FDR over voxels (:func:`group_contrast`).

Neuron mapping. The AN→BN coupling of one AN n in subject s is

    c_s(n, v) = Σ_k S[n, k] · t_s[k, v]

(codes S (N, K) of the layer's dictionary, GLM t of each atom in subject s). It is an AN-level
quantity: flipping an atom and its codes, or reordering atoms, leaves it unchanged, and it is
defined whatever dictionary each subject has, so the maps of different subjects are in one
space (same ANs, same grayordinates) while the atoms need not be. The group map tests
c_s(n, v) across subjects (:func:`coupling_group`). The per-subject link score of the app
masks t by the subject's own FDR; the group test uses the unmasked coupling: a per-subject
threshold would make the subject values zero-inflated and dependent on each subject's power.
The coupling is in-sample within a subject (dictionary and GLM on all runs); the group test
treats subjects as the independent units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GroupContrast", "group_contrast", "an_coupling", "coupling_group"]


@dataclass(frozen=True, eq=False)
class GroupContrast:
    """One-sample t test across subjects per voxel, with BH-FDR.

    Attributes
    ----------
    mean, t, p, q : ndarray, shape (V,)
        Mean across subjects, t, p of the chosen alternative, BH q (p NaN → 1).
    significant : ndarray of bool, shape (V,)
        ``q < fdr_q`` (and the mean on the side of a one-sided alternative).
    n_subjects : int
    """

    mean: np.ndarray
    t: np.ndarray
    p: np.ndarray
    q: np.ndarray
    significant: np.ndarray
    n_subjects: int


def group_contrast(values, alternative: str = "two-sided", fdr_q: float = 0.05) -> GroupContrast:
    """One-sample t test of per-subject values against 0, then BH-FDR over voxels.

    Parameters
    ----------
    values : ndarray, shape (S, V)
        One map per subject (S >= 2), e.g. ``fisher_z(r_a) − fisher_z(r_b)``.
    alternative : {"two-sided", "greater", "less"}
    fdr_q : float

    Returns
    -------
    GroupContrast
    """
    from alignment.stats import fdr_bh, group_ttest

    values = np.asarray(values, np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (S, V), got {values.shape}")
    res = group_ttest(values, alternative=alternative)
    p = np.where(np.isfinite(res.p), res.p, 1.0)
    reject, q = fdr_bh(p, fdr_q)
    if alternative == "greater":
        reject &= res.mean > 0
    elif alternative == "less":
        reject &= res.mean < 0
    return GroupContrast(np.asarray(res.mean), np.asarray(res.t), p, np.asarray(q), reject, values.shape[0])


def an_coupling(codes, t, an) -> np.ndarray:
    """Coupling of one AN with every voxel: ``codes[an] @ t`` (no significance mask).

    Parameters
    ----------
    codes : ndarray, shape (N, K)
    t : ndarray, shape (K, V)
        GLM t per atom and voxel.
    an : int

    Returns
    -------
    ndarray, shape (V,)
    """
    codes = np.asarray(codes, np.float64)
    t = np.asarray(t, np.float64)
    if codes.ndim != 2 or t.ndim != 2 or codes.shape[1] != t.shape[0]:
        raise ValueError(f"codes (N, K) and t (K, V) do not match: {codes.shape} vs {t.shape}")
    if not 0 <= int(an) < codes.shape[0]:
        raise IndexError(f"AN {an} out of range [0, {codes.shape[0]})")
    return codes[int(an)] @ t


def coupling_group(codes, ts, an, fdr_q: float = 0.05) -> GroupContrast:
    """Group test of one AN's coupling map across subjects (two-sided).

    Parameters
    ----------
    codes : ndarray, shape (N, K), or list of S such arrays
        The layer's codes (one array when the subjects share the dictionary).
    ts : list of S ndarrays, shape (K_s, V)
        Each subject's GLM t maps.
    an : int
    fdr_q : float

    Returns
    -------
    GroupContrast
        Over the S per-subject couplings :func:`an_coupling`.
    """
    ts = list(ts)
    codes = list(codes) if isinstance(codes, (list, tuple)) else [codes] * len(ts)
    if len(codes) != len(ts):
        raise ValueError(f"{len(codes)} code arrays for {len(ts)} subjects")
    return group_contrast(np.stack([an_coupling(c, t, an) for c, t in zip(codes, ts)]), "two-sided", fdr_q)
