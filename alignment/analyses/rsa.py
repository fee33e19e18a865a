"""Concept representational similarity analysis (RSA): brain and model RDMs over concepts,
their Spearman correlation, and the statistics it needs.

Shapes: C concepts; F features (voxels of a network, or units of a model layer); P = C (C - 1) / 2
concept pairs; an RDM is stored *condensed*, as its upper triangle (P,) in the order of
``scipy.spatial.distance.pdist`` (row-major, ``np.triu_indices(C, 1)``); S participants, L
model RDMs (layers, or models), N networks.

- :func:`rdm`, :func:`square`, :func:`group_rdm` -- RDMs of (C, F) patterns: cosine (default),
  correlation, Euclidean distance.
- :func:`spearman` -- Spearman ρ over the upper triangle (ties averaged: scipy's and
  rsatoolbox's value).
- :func:`permutation_test` -- one-sided p of ρ against permutations of the concept labels of
  one RDM (its rows and columns together).
- :func:`bootstrap_concepts`, :func:`bootstrap_participants` -- percentile CIs resampling
  concepts (self-pairs of a concept drawn twice are dropped) or participants.
- :func:`best_layer` -- the best layer chosen on one part of the data and scored on the other
  (participants or concepts split), with the in-sample choice and value beside it.
- :func:`compare_models` -- ρ(brain, A) − ρ(brain, B) against the *same* brain RDM: paired
  bootstrap over concepts, or sign flips of the per-participant differences.
- :func:`noise_ceiling` -- lower (leave-one-participant-out) and upper bounds.
- :func:`partial_spearman` -- ρ of brain and model with another model's RDM partialled out.
- :func:`layer_network_rsa` -- ρ and permutation p for every layer × network, BH-FDR over all
  of them (:func:`alignment.stats.fdr_bh`).

Why not the p value of ``scipy.stats.spearmanr`` over the P pairs: the pairs are not
independent (concept i enters C - 1 of them), so that p value is far too small whenever both
RDMs have structure, even unrelated structure; the concept-label permutation keeps every RDM's
structure and breaks only their correspondence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.distance import pdist
from scipy.spatial.distance import squareform as _squareform
from scipy.stats import rankdata

from alignment.stats import fdr_bh, p_from_null

__all__ = [
    "METRICS",
    "BestLayer",
    "ConceptBootstrap",
    "LayerNetworkRSA",
    "ModelDifference",
    "NoiseCeiling",
    "PermutationResult",
    "best_layer",
    "bootstrap_concepts",
    "bootstrap_participants",
    "compare_models",
    "group_rdm",
    "layer_network_rsa",
    "n_concepts",
    "noise_ceiling",
    "partial_spearman",
    "permutation_test",
    "rdm",
    "spearman",
    "square",
]

#: RDM dissimilarities: name -> scipy ``pdist`` metric
METRICS = {"cosine": "cosine", "correlation": "correlation", "euclidean": "euclidean"}
#: float64 elements a batch of permuted / resampled RDMs may hold at once (memory)
_BATCH_ELEMENTS = 20_000_000


# --------------------------------------------------------------------------------------------
# RDMs
# --------------------------------------------------------------------------------------------
def rdm(X, metric: str = "cosine") -> np.ndarray:
    """Condensed RDM of concept patterns.

    Parameters
    ----------
    X : array_like, shape (C, F)
        One pattern per concept (a network's voxels, a layer's units).
    metric : {"cosine", "correlation", "euclidean"}
        1 − cosine similarity (the study's), 1 − Pearson r between patterns, or Euclidean
        distance.

    Returns
    -------
    ndarray, shape (P,)
        Upper triangle, row-major (``pdist`` order).

    Raises
    ------
    ValueError
        Unknown metric, fewer than 3 concepts, non-finite values, or a pattern for which the
        metric is undefined (all-zero for cosine, constant for correlation).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown RDM metric {metric!r}; choose one of {', '.join(METRICS)}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 3 or X.shape[1] < 1:
        raise ValueError(f"rdm needs a (concepts >= 3, features >= 1) matrix, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("rdm: the patterns hold NaN or infinite values")
    if metric == "cosine" and np.any(np.linalg.norm(X, axis=1) == 0):
        raise ValueError("rdm: an all-zero pattern has no cosine distance")
    if metric == "correlation" and np.any(np.ptp(X, axis=1) == 0):
        raise ValueError("rdm: a constant pattern has no correlation distance")
    return pdist(X, METRICS[metric])


def square(d) -> np.ndarray:
    """(C, C) symmetric matrix with a zero diagonal from a condensed RDM (P,)."""
    return _squareform(np.asarray(d, dtype=np.float64), checks=False)


def n_concepts(n_pairs: int) -> int:
    """C from P = C (C − 1) / 2; ValueError when P is not such a number."""
    c = int(round((1 + np.sqrt(1 + 8 * n_pairs)) / 2))
    if c * (c - 1) // 2 != n_pairs or c < 3:
        raise ValueError(f"{n_pairs} is not the length of a condensed RDM of 3 or more concepts")
    return c


def group_rdm(rdms) -> np.ndarray:
    """(P,) mean of the participants' RDMs (S, P) (the study's group RDM)."""
    rdms = _rdms(rdms, "rdms")
    return rdms.mean(axis=0)


def _rdms(x, name: str) -> np.ndarray:
    """(K, P) float64 from one RDM (P,) or several (K, P); checks P and finiteness."""
    x = np.asarray(x, dtype=np.float64)
    x = x[None] if x.ndim == 1 else x
    if x.ndim != 2:
        raise ValueError(f"{name}: expected condensed RDMs (P,) or (K, P), got shape {x.shape}")
    n_concepts(x.shape[1])
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: RDMs hold NaN or infinite values")
    return x


def _dot(A, v) -> np.ndarray:
    """A (..., P) · v (P,). einsum rather than ``@``: a matrix-vector product through a
    multithreaded BLAS can cost milliseconds on a busy machine, and these run per draw."""
    return np.einsum("...p,p->...", A, v)


def _zranks(x) -> np.ndarray:
    """Ranks (ties averaged) along the last axis, centred and scaled to unit norm: the dot
    product of two of them is Spearman's ρ. A constant RDM gives NaN."""
    r = rankdata(x, axis=-1)
    r = r - r.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(r, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return r / norm


def spearman(a, b) -> np.ndarray | float:
    """Spearman ρ between condensed RDMs.

    Parameters
    ----------
    a : array_like, shape (P,)
        E.g. the brain RDM.
    b : array_like, shape (P,) or (L, P)
        One or several model RDMs.

    Returns
    -------
    float, or ndarray (L,) when ``b`` is 2-D
        Equal to ``scipy.stats.spearmanr(a, b_l)[0]`` and to rsatoolbox's ``compare_spearman``.
    """
    A, B = _rdms(a, "a"), _rdms(b, "b")
    if A.shape[0] != 1 or A.shape[1] != B.shape[1]:
        raise ValueError(f"spearman: a must be one RDM of the length of b's, got {A.shape} and {B.shape}")
    rho = _dot(_zranks(B), _zranks(A[0]))
    return float(rho[0]) if np.ndim(b) == 1 else rho


# --------------------------------------------------------------------------------------------
# permutation of concept labels
# --------------------------------------------------------------------------------------------
@dataclass
class PermutationResult:
    """rho (L,), p (L,) one-sided (ρ larger than chance), null (n_perm, L) (the same
    permutations for every model, so maxima over models are valid nulls too)."""

    rho: np.ndarray
    p: np.ndarray
    null: np.ndarray = field(repr=False)


def _permuted_rho(brain_sq, model_z, perms) -> np.ndarray:
    """(n, L): ρ of the models' ranks (L, P) with the brain's rank matrix (C, C) relabelled by
    each permutation (n, C). Relabelling the brain is relabelling the models by the inverse
    permutation; ranks of a relabelled RDM are the relabelled ranks, so nothing is re-ranked."""
    C = brain_sq.shape[0]
    iu, ju = np.triu_indices(C, 1)
    batch = max(1, _BATCH_ELEMENTS // iu.size)
    out = [brain_sq[pb[:, iu], pb[:, ju]] @ model_z.T  # (n_b, P) @ (P, L)
           for pb in (perms[b0:b0 + batch] for b0 in range(0, len(perms), batch))]
    return np.concatenate(out, axis=0) if out else np.empty((0, model_z.shape[0]))


def permutation_test(brain, models, n_perm: int = 10_000, seed: int = 0) -> PermutationResult:
    """Spearman ρ of a brain RDM with model RDMs and its concept-label permutation p.

    Each draw relabels the concepts of one RDM (rows and columns together) by one random
    permutation, the same for all models; p = (1 + #{null ≥ ρ}) / (1 + n_perm), one-sided. Exact under the null that the
    concept labels are exchangeable between the two RDMs, whatever structure each RDM has.

    Parameters
    ----------
    brain : array_like, shape (P,)
    models : array_like, shape (P,) or (L, P)
    n_perm : int
    seed : int
    """
    brain_z = _zranks(_rdms(brain, "brain")[0])
    M = _rdms(models, "models")
    if M.shape[1] != brain_z.size:
        raise ValueError(f"brain and model RDMs differ in length: {brain_z.size} and {M.shape[1]}")
    model_z = _zranks(M)
    rho = _dot(model_z, brain_z)
    C = n_concepts(brain_z.size)
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((int(n_perm), C)), axis=1)
    null = _permuted_rho(square(brain_z), model_z, perms)
    return PermutationResult(rho, p_from_null(null, rho), null)


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------
@dataclass
class ConceptBootstrap:
    """estimate (L,), low (L,), high (L,), draws (n_boot, L): a percentile CI."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    draws: np.ndarray = field(repr=False)


def _pair_weights(idx, iu, ju, C) -> np.ndarray:
    """(P,) how often each pair of the original C concepts is a pair of the resample ``idx``
    (C,) (i < j in draw order), leaving out the pairs of a concept with a copy of itself: their
    dissimilarity is 0 by construction, not an observation."""
    i, j = idx[iu], idx[ju]
    keep = i != j
    lo, hi = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
    return np.bincount(lo * C - lo * (lo + 1) // 2 + hi - lo - 1, minlength=iu.size).astype(np.float64)


def _dense_ranks(x) -> np.ndarray:
    """(K, P) int: 0-based tie-group ids of each row's values, in value order."""
    return rankdata(np.atleast_2d(x), method="dense", axis=-1).astype(np.int64) - 1


def _weighted_zranks(dense, w) -> np.ndarray:
    """(K, P) rank scores of the multiset in which pair p occurs w_p times: average ranks (ties
    averaged) within the multiset, centred and scaled so that the dot product of two rows is the
    Pearson r of the ranks over the multiset, times sqrt(w) (so least squares on these rows is
    least squares on the multiset). Pairs with w_p = 0 get 0."""
    K, P = dense.shape
    G = int(dense.max()) + 1
    counts = np.bincount((dense + G * np.arange(K)[:, None]).ravel(), weights=np.tile(w, K),
                         minlength=K * G).reshape(K, G)
    # running totals per row from one flat cumsum (much faster than cumsum along axis 1)
    running = np.cumsum(counts.ravel()).reshape(K, G)
    running -= np.concatenate([[0.0], running[:-1, -1]])[:, None]
    group_rank = running - counts + (counts + 1) / 2
    r = np.take_along_axis(group_rank, dense, axis=1)
    total = w.sum()
    r = r - (_dot(r, w) / total)[:, None]
    r = r * np.sqrt(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return r / np.linalg.norm(r, axis=1, keepdims=True)


def _partial_from_z(brain_z, model_z, control_z):
    """Partial correlation of rank scores: residuals of brain (P,) and models (L, P) after
    least squares on the controls (K, P) (all centred, so no intercept is needed)."""
    Q, _ = np.linalg.qr(control_z.T)  # (P, K) orthonormal basis of the controls
    rb = brain_z - np.einsum("pk,k->p", Q, np.einsum("pk,p->k", Q, brain_z))
    rm = model_z - np.einsum("lk,pk->lp", np.einsum("lp,pk->lk", model_z, Q), Q)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _dot(rm, rb) / (np.linalg.norm(rm, axis=-1) * np.linalg.norm(rb))


def _statistic(brain, models, control):
    """ρ (L,), or partial ρ (L,) given controls, of condensed vectors."""
    bz, mz = _zranks(brain), _zranks(models)
    if control is None:
        return _dot(mz, bz)
    return _partial_from_z(bz, mz, _zranks(control))


def bootstrap_concepts(brain, models, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                       control=None) -> ConceptBootstrap:
    """Percentile bootstrap CI of ρ (or partial ρ) resampling concepts.

    Each draw takes C concepts with replacement and correlates the two RDMs over the pairs of
    the drawn concepts (i < j in draw order), leaving out every pair of a concept with a copy
    of itself; the other pairs of a duplicated concept are kept, as often as it was drawn.

    Parameters
    ----------
    brain : (P,)
    models : (P,) or (L, P)
    n_boot, ci, seed
    control : (P,) or (K, P), optional
        RDMs to partial out (:func:`partial_spearman`).
    """
    b = _rdms(brain, "brain")[0]
    M = _rdms(models, "models")
    K = None if control is None else _rdms(control, "control")
    if M.shape[1] != b.size or (K is not None and K.shape[1] != b.size):
        raise ValueError("bootstrap_concepts: brain, model and control RDMs differ in length")
    C = n_concepts(b.size)
    # ranks within a resample follow from the original order and each pair's multiplicity
    db, dm = _dense_ranks(b), _dense_ranks(M)
    dk = None if K is None else _dense_ranks(K)
    iu, ju = np.triu_indices(C, 1)
    rng = np.random.default_rng(seed)
    draws = np.empty((int(n_boot), M.shape[0]))
    for k in range(int(n_boot)):
        w = _pair_weights(rng.integers(0, C, C), iu, ju, C)
        bz, mz = _weighted_zranks(db, w)[0], _weighted_zranks(dm, w)
        draws[k] = _dot(mz, bz) if dk is None else _partial_from_z(bz, mz, _weighted_zranks(dk, w))
    estimate = _statistic(b, M, K)
    low, high = _percentiles(draws, ci)
    return ConceptBootstrap(estimate, low, high, draws)


def _percentiles(draws, ci):
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    alpha = (1.0 - ci) / 2.0
    low, high = np.nanquantile(draws, [alpha, 1.0 - alpha], axis=0)
    return low, high


def bootstrap_participants(subject_rdms, models, n_boot: int = 1000, ci: float = 0.95,
                           seed: int = 0) -> ConceptBootstrap:
    """Percentile bootstrap CI of ρ(group RDM, model) resampling participants.

    Each draw averages S participants' RDMs drawn with replacement into a group RDM and
    correlates it with every model RDM.

    Parameters
    ----------
    subject_rdms : (S, P), S >= 2
    models : (P,) or (L, P)
    """
    R = _rdms(subject_rdms, "subject_rdms")
    M = _rdms(models, "models")
    S = R.shape[0]
    if S < 2:
        raise ValueError("bootstrap_participants needs at least 2 participants")
    mz = _zranks(M)
    rng = np.random.default_rng(seed)
    draws = np.empty((int(n_boot), M.shape[0]))
    for k in range(int(n_boot)):
        draws[k] = _dot(mz, _zranks(R[rng.integers(0, S, S)].mean(axis=0)))
    low, high = _percentiles(draws, ci)
    return ConceptBootstrap(_dot(mz, _zranks(R.mean(axis=0))), low, high, draws)


# --------------------------------------------------------------------------------------------
# the best layer, out of sample
# --------------------------------------------------------------------------------------------
@dataclass
class BestLayer:
    """The best layer chosen in-sample and out of sample.

    in_sample_layer : int
        argmax over layers of ρ(group RDM of all participants, layer), all concepts: the
        study's choice.
    in_sample_rho : float
        Its ρ, on the data that chose it (optimistic: the maximum of L noisy values).
    chosen : ndarray of int, shape (F,)
        The layer chosen on the training part of each fold / split.
    train_rho : ndarray, shape (F,)
        The chosen layer's ρ on its training part (in-sample, per fold).
    held_out_rho : ndarray, shape (F,)
        The chosen layer's ρ on the held-out part (the out-of-sample value).
    selection_share : ndarray, shape (L,)
        How often each layer was chosen.
    split : str
        ``"participants"`` or ``"concepts"``.
    """

    in_sample_layer: int
    in_sample_rho: float
    chosen: np.ndarray
    train_rho: np.ndarray
    held_out_rho: np.ndarray
    selection_share: np.ndarray
    split: str

    @property
    def held_out(self) -> float:
        """Mean held-out ρ over folds / splits: the out-of-sample estimate."""
        return float(np.mean(self.held_out_rho))

    @property
    def modal_layer(self) -> int:
        """The layer chosen most often out of sample."""
        return int(np.argmax(self.selection_share))


def best_layer(subject_rdms, layer_rdms, split: str = "participants", n_folds: int | None = None,
               n_splits: int = 100, seed: int = 0) -> BestLayer:
    """Choose the best layer on part of the data and score it on the rest.

    ``split="participants"``: participants in ``n_folds`` folds (default: leave one out); the
    layer is chosen on the group RDM of the other participants and scored against the group
    RDM of the held-out fold (all concepts). A held-out RDM averages fewer participants, so its
    ρ is lower than a group ρ of the same layer: compare layers and models by the same split.

    ``split="concepts"``: ``n_splits`` random halves of the concepts; the layer is chosen on the
    pairs among the training concepts and scored on the pairs among the other concepts (pairs
    across the halves are not used, so the two parts share no concept), both with the group RDM
    of all participants.

    Parameters
    ----------
    subject_rdms : (S, P)
    layer_rdms : (L, P)
    split : {"participants", "concepts"}
    n_folds : int, optional
        Participant folds, 2..S.
    n_splits : int
        Concept splits.
    seed : int
    """
    R = _rdms(subject_rdms, "subject_rdms")
    M = _rdms(layer_rdms, "layer_rdms")
    if R.shape[1] != M.shape[1]:
        raise ValueError(f"subject and layer RDMs differ in length: {R.shape[1]} and {M.shape[1]}")
    S, L = R.shape[0], M.shape[0]
    rng = np.random.default_rng(seed)
    mz = _zranks(M)
    full = _dot(mz, _zranks(R.mean(axis=0)))
    chosen, train_rho, held = [], [], []
    if split == "participants":
        n_folds = S if n_folds is None else int(n_folds)
        if S < 2 or not 2 <= n_folds <= S:
            raise ValueError(f"a participant split needs 2 <= n_folds <= S participants; got "
                             f"n_folds={n_folds}, S={S}")
        for fold in np.array_split(rng.permutation(S), n_folds):
            train = np.setdiff1d(np.arange(S), fold)
            rho_train = _dot(mz, _zranks(R[train].mean(axis=0)))
            best = int(np.nanargmax(rho_train))
            chosen.append(best)
            train_rho.append(rho_train[best])
            held.append(float(_dot(mz[best], _zranks(R[fold].mean(axis=0)))))
    elif split == "concepts":
        C = n_concepts(R.shape[1])
        if C < 8:
            raise ValueError(f"a concept split needs at least 8 concepts, got {C}")
        g = square(R.mean(axis=0))
        msq = np.stack([square(m) for m in M])
        for _ in range(int(n_splits)):
            perm = rng.permutation(C)
            halves = perm[: C // 2], perm[C // 2:]
            scores = []
            for part in halves:
                iu, ju = np.triu_indices(part.size, 1)
                i, j = part[iu], part[ju]
                scores.append((g[i, j], msq[:, i, j]))
            rho_train = _dot(_zranks(scores[0][1]), _zranks(scores[0][0]))
            best = int(np.nanargmax(rho_train))
            chosen.append(best)
            train_rho.append(rho_train[best])
            held.append(float(_dot(_zranks(scores[1][1][best]), _zranks(scores[1][0]))))
    else:
        raise ValueError(f"split must be 'participants' or 'concepts', got {split!r}")
    chosen = np.asarray(chosen)
    share = np.bincount(chosen, minlength=L) / chosen.size
    best_all = int(np.nanargmax(full))
    return BestLayer(best_all, float(full[best_all]), chosen, np.asarray(train_rho),
                     np.asarray(held), share, split)


# --------------------------------------------------------------------------------------------
# model against model
# --------------------------------------------------------------------------------------------
@dataclass
class ModelDifference:
    """delta = ρ(brain, A) − ρ(brain, B); low, high: percentile CI (NaN for sign flips);
    p: two-sided; draws: the bootstrap or sign-flip distribution; method."""

    delta: float
    low: float
    high: float
    p: float
    draws: np.ndarray = field(repr=False)
    method: str


#: participants up to which all 2^S sign patterns are enumerated
_EXACT_FLIPS = 16


def compare_models(brain, model_a, model_b, method: str = "bootstrap", n_boot: int = 10_000,
                   ci: float = 0.95, seed: int = 0) -> ModelDifference:
    """Test ρ(brain, A) − ρ(brain, B), two models scored against the same brain RDM.

    The two correlations share the brain RDM and both models' noise, so they are not
    independent and a Fisher z-test that treats them so has the wrong level. Both methods here
    keep the pairing.

    ``method="bootstrap"``: ``brain`` is one RDM (P,), e.g. the group RDM. Each draw resamples
    concepts (as :func:`bootstrap_concepts`) and recomputes *both* correlations on the same
    draw; CI: percentiles of Δ*; p: two-sided, from the draws centred on the observed Δ,
    (1 + #{|Δ* − Δ| ≥ |Δ|}) / (1 + n_boot).

    ``method="participants"``: ``brain`` is the participants' RDMs (S, P). Δ_s = ρ(RDM_s, A) −
    ρ(RDM_s, B) per participant; the statistic is their mean; p from flipping the signs of
    the Δ_s (all 2^S patterns up to S = 16, else ``n_boot`` random ones), two-sided: exact when
    the Δ_s are symmetric about zero under the null. ``delta`` is then the mean per-participant
    difference, not the group-RDM difference.

    Parameters
    ----------
    brain : (P,) or (S, P)
    model_a, model_b : (P,)
    """
    A, B = _rdms(model_a, "model_a"), _rdms(model_b, "model_b")
    if A.shape[0] != 1 or B.shape[0] != 1:
        raise ValueError("compare_models compares two single RDMs")
    rng = np.random.default_rng(seed)
    if method == "bootstrap":
        b = _rdms(brain, "brain")
        if b.shape[0] != 1:
            raise ValueError("method='bootstrap' takes one brain RDM (P,); pass the participants' "
                             "RDMs with method='participants'")
        boot = bootstrap_concepts(b[0], np.concatenate([A, B]), n_boot=n_boot, ci=ci, seed=seed)
        delta = float(boot.estimate[0] - boot.estimate[1])
        draws = boot.draws[:, 0] - boot.draws[:, 1]
        low, high = _percentiles(draws[:, None], ci)
        p = (1.0 + np.sum(np.abs(draws - delta) >= abs(delta) - 1e-12)) / (1.0 + draws.size)
        return ModelDifference(delta, float(low[0]), float(high[0]), float(p), draws, method)
    if method == "participants":
        R = _rdms(brain, "brain")
        S = R.shape[0]
        if S < 2:
            raise ValueError("method='participants' needs the RDMs of at least 2 participants")
        rz = _zranks(R)
        d = _dot(rz, _zranks(A[0])) - _dot(rz, _zranks(B[0]))  # (S,)
        if S <= _EXACT_FLIPS:
            signs = 1 - 2 * ((np.arange(2 ** S)[:, None] >> np.arange(S)) & 1)
        else:
            signs = rng.choice([-1, 1], size=(int(n_boot), S))
            signs[0] = 1
        draws = (signs * d).mean(axis=1)
        delta = float(d.mean())
        p = np.mean(np.abs(draws) >= abs(delta) - 1e-12)
        return ModelDifference(delta, np.nan, np.nan, float(p), draws, method)
    raise ValueError(f"method must be 'bootstrap' or 'participants', got {method!r}")


# --------------------------------------------------------------------------------------------
# noise ceiling, partial correlation
# --------------------------------------------------------------------------------------------
@dataclass
class NoiseCeiling:
    """lower, upper: bounds of the mean over participants of ρ(model, participant RDM)."""

    lower: float
    upper: float


def noise_ceiling(subject_rdms, pool: str = "mean") -> NoiseCeiling:
    """Noise ceiling of a network's RDMs (Nili et al. 2014), for Spearman ρ.

    upper: mean over participants s of ρ(pooled RDM of all participants, RDM_s) (the pooled
    RDM overfits each participant: no model can score above it on average); lower: the same
    with the pooled RDM of the *other* participants (leave one out; a model as good as the
    others' average reaches it).

    These bound the mean per-participant ρ of a model. Its ρ with the group RDM is on another
    scale (the group RDM is less noisy) and may exceed both.

    Parameters
    ----------
    subject_rdms : (S, P), S >= 2
    pool : {"mean", "rank"}
        How participants' RDMs are pooled: their mean (the group RDM) or the mean of their
        ranks (rsatoolbox's pooling for Spearman).
    """
    R = _rdms(subject_rdms, "subject_rdms")
    S = R.shape[0]
    if S < 2:
        raise ValueError("a noise ceiling needs at least 2 participants")
    if pool not in ("mean", "rank"):
        raise ValueError(f"pool must be 'mean' or 'rank', got {pool!r}")
    X = rankdata(R, axis=1) if pool == "rank" else R
    rz = _zranks(R)
    total = X.sum(axis=0)
    upper = np.mean([_dot(rz[s], _zranks(total)) for s in range(S)])
    lower = np.mean([_dot(rz[s], _zranks(total - X[s])) for s in range(S)])
    return NoiseCeiling(float(lower), float(upper))


def partial_spearman(brain, models, control) -> np.ndarray | float:
    """Partial Spearman ρ of brain and model RDMs with control RDMs partialled out.

    The Pearson correlation of the residuals of rank(brain) and rank(model) after least-squares
    regression (with intercept) on the ranks of the controls (e.g. a language-only model's
    RDM): what the model shares with the brain beyond what the controls explain. With one
    control it equals (ρ_bm − ρ_bc ρ_mc) / sqrt((1 − ρ_bc²)(1 − ρ_mc²)).

    Parameters
    ----------
    brain : (P,)
    models : (P,) or (L, P)
    control : (P,) or (K, P)

    Returns
    -------
    float, or ndarray (L,) when ``models`` is 2-D

    A CI: :func:`bootstrap_concepts` with ``control``. No permutation p is offered: relabelling
    the model's concepts also breaks its relation to the control, so it would test "unrelated
    to the brain" rather than "nothing beyond the control".
    """
    b = _rdms(brain, "brain")
    M = _rdms(models, "models")
    K = _rdms(control, "control")
    if not b.shape[1] == M.shape[1] == K.shape[1]:
        raise ValueError("partial_spearman: brain, model and control RDMs differ in length")
    out = _statistic(b[0], M, K)
    return float(out[0]) if np.ndim(models) == 1 else out


# --------------------------------------------------------------------------------------------
# layers × networks
# --------------------------------------------------------------------------------------------
@dataclass
class LayerNetworkRSA:
    """rho, p, q (BH-FDR over all layers × networks), reject: all (L, N)."""

    rho: np.ndarray
    p: np.ndarray
    q: np.ndarray
    reject: np.ndarray


def layer_network_rsa(brain_rdms, layer_rdms, n_perm: int = 10_000, q: float = 0.05,
                      seed: int = 0) -> LayerNetworkRSA:
    """ρ and concept-permutation p of every layer with every network's brain RDM, and the
    Benjamini-Hochberg FDR over the L × N tests (:func:`alignment.stats.fdr_bh`).

    Parameters
    ----------
    brain_rdms : (N, P) or (P,)
        One (group) RDM per network.
    layer_rdms : (L, P)
    n_perm, q, seed
        Every network uses the same permutations (``seed``).
    """
    Bn = _rdms(brain_rdms, "brain_rdms")
    rho, p = [], []
    for b in Bn:
        res = permutation_test(b, layer_rdms, n_perm=n_perm, seed=seed)
        rho.append(res.rho)
        p.append(res.p)
    rho, p = np.stack(rho, axis=1), np.stack(p, axis=1)
    reject, qv = fdr_bh(p, q)
    return LayerNetworkRSA(rho, p, qv, reject)
