"""Modality specialization of BNs (DESIGN §5.5).

Dual encoders (CLIP): each voxel has an encoding score from the image branch (``r_img``) and
from the text branch (``r_txt``) → :func:`specialization_index`; a joint banded ridge with one
band per branch gives unique and shared variance → :func:`variance_partition`.

Fusion models (METER, BridgeTower): cross-modal layers are scored under the stimulus conditions
``image+text``, ``image`` (caption removed) and ``text`` (image removed) →
:func:`cross_modal_gain` and the share of "unified" BNs, significant only when both modalities
are present → :func:`unified_share`.

:func:`modality_labels` turns significance masks (and optionally the scores) into one label per
voxel; that label is what the demo's ground-truth check compares with the planted modality.

Tested contrasts. A difference of significance ("significant under image+text, not under either
alone") is not a significant difference, so every contrast is tested on held-out predictions,
paired over time blocks with the block test of
:func:`alignment.analyses.integration.integration_sites` (:func:`paired_contrast`):

- SI: image-branch vs text-branch prediction, two-sided;
- cross-modal gain > 0: image+text beats each single condition (intersection-union,
  :func:`crossmodal_tests`) — true of additive voxels too;
- unified: the image+text ANs add to the additive model of the two single-modality passes
  (nested banded ridges, :func:`beyond_single_modalities`, :func:`crossmodal_tests`,
  :func:`unified_by_test`);
- unique variance of a band: the joint banded model beats the model without it
  (:func:`unique_variance_tests`).

Group level: :func:`alignment.analyses.group.group_contrast` across subjects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = [
    "MODALITY_LABELS",
    "specialization_index",
    "VariancePartition",
    "variance_partition",
    "cross_modal_gain",
    "UnifiedShare",
    "unified_share",
    "modality_labels",
    "modality_summary",
    "PairedContrast",
    "paired_contrast",
    "CrossModalTests",
    "crossmodal_tests",
    "unified_by_test",
    "unique_variance_tests",
]

#: the labels :func:`modality_labels` can return
MODALITY_LABELS = ("image", "text", "both", "unified", "none")


def _vec(name, a, n=None):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must have shape (V,), got {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} voxels, expected {n}")
    return a


def _mask(name, a, n):
    a = np.asarray(a, dtype=bool)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


def specialization_index(r_img, r_txt) -> np.ndarray:
    """Modality specialization index SI = (r_img − r_txt) / (|r_img| + |r_txt|).

    Parameters
    ----------
    r_img, r_txt : ndarray, shape (V,)
        Encoding scores of the image and the text branch.

    Returns
    -------
    ndarray, shape (V,)
        In [-1, 1]: +1 image only, -1 text only, 0 equal; 0 where both scores are 0; NaN
        where either input is NaN.
    """
    a, b = _vec("r_img", r_img), _vec("r_txt", r_txt)
    if a.shape != b.shape:
        raise ValueError(f"r_img and r_txt differ in shape: {a.shape} vs {b.shape}")
    den = np.abs(a) + np.abs(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        si = np.where(den > 0, (a - b) / np.where(den > 0, den, 1.0), 0.0)
    si[~(np.isfinite(a) & np.isfinite(b))] = np.nan
    return si


@dataclass(frozen=True, eq=False)
class VariancePartition:
    """Unique and shared explained variance of a banded model.

    Attributes
    ----------
    joint : ndarray, shape (V,)
        R² of the joint model.
    unique : dict[str, ndarray (V,)]
        ``joint − R²(model without band b)`` per band.
    shared : ndarray, shape (V,)
        ``joint − Σ_b unique[b]`` (for two bands: R²_a + R²_b − R²_joint).
    """

    joint: np.ndarray
    unique: dict
    shared: np.ndarray

    def to_frame(self):
        """pandas DataFrame (V rows): ``joint``, ``unique_<band>``..., ``shared``."""
        import pandas as pd

        cols = {"joint": self.joint, **{f"unique_{b}": u for b, u in self.unique.items()},
                "shared": self.shared}
        return pd.DataFrame(cols)


def variance_partition(joint_r2, r2_without_b: Mapping[str, np.ndarray], *, clip: bool = False) -> VariancePartition:
    """Unique variance per band and shared variance (set-theoretic partition).

    Parameters
    ----------
    joint_r2 : ndarray, shape (V,)
        Held-out R² of the model with all bands.
    r2_without_b : dict[str, ndarray (V,)]
        For each band b, held-out R² of the model refit *without* band b (for two bands:
        ``{"image": R²(text only), "text": R²(image only)}``).
    clip : bool
        Clip unique and shared parts at 0. Held-out R² are noisy and the parts can be
        slightly negative; the raw values (default) keep the identity
        ``joint = shared + Σ unique`` exact.

    Returns
    -------
    VariancePartition
        ``joint`` (V,), ``unique`` {band: (V,)}, ``shared`` (V,).

    Notes
    -----
    ``alignment.encoding.fit_banded_ridge(..., compute_unique=True)`` returns the same
    quantities for a fitted banded model; this function is the partition itself, for R² maps
    from anywhere (e.g. group averages).
    """
    joint = _vec("joint_r2", joint_r2)
    if not r2_without_b:
        raise ValueError("r2_without_b needs at least one band")
    unique = {str(b): joint - _vec(f"r2_without_b[{b!r}]", v, joint.size) for b, v in r2_without_b.items()}
    shared = joint - np.sum(list(unique.values()), axis=0)
    if clip:
        unique = {b: np.maximum(u, 0.0) for b, u in unique.items()}
        shared = np.maximum(shared, 0.0)
    return VariancePartition(joint, unique, shared)


def cross_modal_gain(r_both, r_image_only, r_text_only) -> np.ndarray:
    """Cross-modal gain of a fusion layer: r_both − max(r_image_only, r_text_only).

    Parameters
    ----------
    r_both : ndarray, shape (V,)
        Score under the ``image+text`` condition.
    r_image_only, r_text_only : ndarray, shape (V,)
        Scores under the ``image`` and ``text`` conditions.

    Returns
    -------
    ndarray, shape (V,)
        > 0 where seeing both modalities predicts better than the best single one.
    """
    b = _vec("r_both", r_both)
    i = _vec("r_image_only", r_image_only, b.size)
    t = _vec("r_text_only", r_text_only, b.size)
    return b - np.maximum(i, t)


@dataclass(frozen=True, eq=False)
class UnifiedShare:
    """BNs significant only when both modalities are present.

    Attributes
    ----------
    mask : ndarray of bool, shape (V,)
        Unified BNs: significant under ``image+text`` and under neither single condition.
    share : float
        ``n_unified / n_significant_both`` (NaN when nothing is significant under both).
    n_unified, n_significant_both : int
    per_network : pandas.DataFrame or None
        With an atlas: per network and group, ``n_voxels``, ``n_significant_both``,
        ``n_unified``, ``share`` (unified / significant under both in that network).
    """

    mask: np.ndarray
    share: float
    n_unified: int
    n_significant_both: int
    per_network: object = None


def unified_share(sig_both, sig_image, sig_text, atlas=None, *, groups=None, unified=None) -> UnifiedShare:
    """Share of BNs driven only by both modalities together ("unified" BNs).

    Parameters
    ----------
    sig_both : ndarray of bool, shape (V,)
        Significant under the ``image+text`` condition.
    sig_image, sig_text : ndarray of bool, shape (V,)
        Significant under the ``image`` / ``text`` condition.
    atlas : alignment.atlases.Atlas, optional
        Adds a per-network (and per-group) table.
    groups : dict, optional
        Group definition for the table (default :data:`alignment.networks.GROUPS`).
    unified : ndarray of bool, shape (V,), optional
        The unified BNs by test (:func:`unified_by_test`). Without it they are the BNs
        significant under image+text and under neither single condition: a difference of
        significance, not a significant difference (descriptive only).

    Returns
    -------
    UnifiedShare
        ``mask`` (V,), ``share`` = #unified / #significant under image+text, counts, and
        ``per_network`` (DataFrame) when an atlas is given.
    """
    sb = np.asarray(sig_both, dtype=bool)
    if sb.ndim != 1:
        raise ValueError(f"sig_both must have shape (V,), got {sb.shape}")
    V = sb.size
    si, st = _mask("sig_image", sig_image, V), _mask("sig_text", sig_text, V)
    unified = sb & ~si & ~st if unified is None else _mask("unified", unified, V)
    n_u, n_b = int(unified.sum()), int(sb.sum())
    table = None
    if atlas is not None:
        import pandas as pd

        from alignment.networks import group_masks

        atlas.check(V, "masks")
        rows = [("network", name, atlas.labels == k) for k, name in atlas.names.items()]
        rows += [("group", g, m) for g, m in group_masks(atlas, groups).items()]
        recs = []
        for level, name, m in rows:
            nb, nu = int((sb & m).sum()), int((unified & m).sum())
            recs.append(dict(level=level, name=name, n_voxels=int(m.sum()), n_significant_both=nb,
                             n_unified=nu, share=nu / nb if nb else np.nan))
        table = pd.DataFrame(recs)
    return UnifiedShare(unified, n_u / n_b if n_b else float("nan"), n_u, n_b, table)


def modality_labels(sig_image, sig_text, sig_both=None, *, r_image=None, r_text=None, r_both=None,
                    si_threshold: float | None = 1 / 3) -> np.ndarray:
    """One modality label per voxel from significance masks.

    Rule (in this order):

    1. ``"unified"`` — only with ``sig_both`` (fusion models): significant under
       ``image+text`` and under neither single-modality condition.
    2. ``"image"`` / ``"text"`` — significant for that modality only.
    3. significant for both modalities: ``"both"``, unless scores are given and one modality
       clearly dominates: with ``SI = specialization_index(r_image, r_text)``,
       ``SI >= si_threshold`` → ``"image"``, ``SI <= −si_threshold`` → ``"text"``. The default
       1/3 means one score at least twice the other; image and text features of a movie are
       correlated, so a voxel driven by one modality often reaches significance for the other
       branch too, at a clearly lower r. ``si_threshold=None`` disables the refinement.
       With ``r_both`` (fusion), a voxel significant under ``image+text`` whose r there clearly
       beats the best single-modality r (SI of ``r_both`` vs ``max(r_image, r_text)`` ≥
       ``si_threshold``) is ``"unified"`` too, even when a single modality reaches significance.
    4. ``"none"`` — nothing significant (a voxel significant only under ``image+text`` without
       ``sig_both`` given cannot arise).

    Parameters
    ----------
    sig_image, sig_text : ndarray of bool, shape (V,)
        Significance of the image (branch or condition) and text scores.
    sig_both : ndarray of bool, shape (V,), optional
        Significance under ``image+text`` (fusion models); enables ``"unified"``.
    r_image, r_text : ndarray, shape (V,), optional
        Scores for the dominance refinement of rule 3 (both or neither).
    si_threshold : float or None
        |SI| above which a doubly significant voxel takes the dominant modality.

    Returns
    -------
    ndarray of str (dtype ``<U7``), shape (V,)
        Values in :data:`MODALITY_LABELS`.
    """
    si_ = np.asarray(sig_image, dtype=bool)
    if si_.ndim != 1:
        raise ValueError(f"sig_image must have shape (V,), got {si_.shape}")
    V = si_.size
    st = _mask("sig_text", sig_text, V)
    out = np.full(V, "none", dtype="<U7")
    out[si_ & ~st] = "image"
    out[st & ~si_] = "text"
    both = si_ & st
    out[both] = "both"
    if (r_image is None) != (r_text is None):
        raise ValueError("pass both r_image and r_text, or neither")
    if r_image is not None and si_threshold is not None:
        si = specialization_index(_vec("r_image", r_image, V), _vec("r_text", r_text, V))
        out[both & (si >= si_threshold)] = "image"
        out[both & (si <= -si_threshold)] = "text"
    if sig_both is not None:
        sb = _mask("sig_both", sig_both, V)
        unified = sb & ~si_ & ~st
        if r_both is not None and r_image is not None and si_threshold is not None:
            # the fusion analogue of rule 3: image+text clearly beats the best single modality
            single = np.maximum(_vec("r_image", r_image, V), _vec("r_text", r_text, V))
            unified |= sb & (specialization_index(_vec("r_both", r_both, V), single) >= si_threshold)
        out[unified] = "unified"
    return out


def modality_summary(labels, atlas, *, groups=None):
    """Count of each modality label per network and group.

    Parameters
    ----------
    labels : ndarray of str, shape (V,)
        Output of :func:`modality_labels`.
    atlas : alignment.atlases.Atlas

    Returns
    -------
    pandas.DataFrame
        Columns ``level``, ``name``, ``n_voxels`` and one count column per label in
        :data:`MODALITY_LABELS`.
    """
    import pandas as pd

    from alignment.networks import group_masks

    labels = np.asarray(labels)
    atlas.check(labels.shape[0], "labels")
    rows = [("network", name, atlas.labels == k) for k, name in atlas.names.items()]
    rows += [("group", g, m) for g, m in group_masks(atlas, groups).items()]
    recs = []
    for level, name, m in rows:
        sub = labels[m]
        recs.append(dict(level=level, name=name, n_voxels=int(m.sum()),
                         **{lab: int((sub == lab).sum()) for lab in MODALITY_LABELS}))
    return pd.DataFrame(recs)


# ------------------------------------------------------------------------------------------
# tested contrasts (held-out predictions compared over time blocks)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PairedContrast:
    """A paired block test of two held-out predictions of the same BOLD, per voxel.

    Attributes
    ----------
    r_a, r_b : ndarray, shape (V,)
        Held-out r of each prediction (within run, averaged over runs).
    mean_dz : ndarray, shape (V,)
        Mean over time blocks of the paired block differences a − b: about the mean over runs
        of the within-block Fisher-z difference (:mod:`alignment.analyses.integration`).
    p : ndarray, shape (V,)
        p of the alternative asked for (``"greater"``: a better than b; ``"two-sided"``).
    n_blocks : int
    inflation : float
        λ, the cross-fitting inflation of the t statistics' null variance
        (:mod:`alignment.analyses.integration`).
    """

    r_a: np.ndarray
    r_b: np.ndarray
    mean_dz: np.ndarray
    p: np.ndarray
    n_blocks: int
    inflation: float


def paired_contrast(y, pred_a, pred_b, runs=None, *, block_len: int = 20,
                    alternative: str = "greater", inflation: str = "estimated") -> PairedContrast:
    """Does prediction ``a`` predict held-out BOLD better than prediction ``b``?

    The paired block test of :func:`alignment.analyses.integration.integration_sites` (block
    means of each TR's contribution to the within-block Fisher-z difference, lag-1 HAC t over
    blocks, its null variance scaled by the cross-fitting inflation of leave-one-run-out
    predictions), used for any two held-out predictions.

    Parameters
    ----------
    y : ndarray, shape (T, V)
        BOLD.
    pred_a, pred_b : ndarray, shape (T, V)
        Held-out (leave-one-run-out) predictions.
    runs : ndarray, shape (T,), optional
    block_len : int
        TRs per time block.
    alternative : {"greater", "two-sided"}
        ``"two-sided"``: p = 2 · min(p_greater, 1 − p_greater) (the t test is symmetric).
    inflation : {"estimated", "bound"}
        How λ is set (:func:`alignment.analyses.integration.integration_sites`).

    Returns
    -------
    PairedContrast
    """
    from alignment.analyses.integration import integration_sites

    if alternative not in ("greater", "two-sided"):
        raise ValueError(f"alternative must be 'greater' or 'two-sided', got {alternative!r}")
    res = integration_sites(y, pred_a, pred_b, runs=runs, block_len=block_len, test="t", inflation=inflation)
    p = res.p if alternative == "greater" else np.minimum(1.0, 2.0 * np.minimum(res.p, 1.0 - res.p))
    return PairedContrast(res.r_vlm, res.r_joint, res.mean_dz, p, res.n_blocks, res.inflation["joint"])


def beyond_single_modalities(x_both, x_image, x_text, runs, alphas=None) -> np.ndarray:
    """The image+text ANs' part that the single-condition ANs do not predict: the full model's
    third band (:func:`crossmodal_tests`).

    Ridge residual of ``x_both`` on ``[x_image, x_text]``, all centered within run (one
    intercept per run), each column with the alpha that predicts it best in leave-one-run-out
    cross-validation over ``alphas``; the residual itself is in-sample, over all TRs. Features
    only, no BOLD, so nothing of the response crosses folds. The residual is a fixed linear
    map of the image+text and single-condition ANs, so the full model spans the same space as
    with ``x_both`` itself; its extra band's prior reaches what the single conditions do not
    predict. With ``x_both`` as it is, that band re-penalizes directions the additive model
    already has, a different prior that predicts additive voxels slightly better (measured in
    the simulation of ``tests/test_modality_tests.py``, 3 seeds × 1/f and AR(1) + AR(0.9)
    noise: mean block z difference +0.003 to +0.011, p < .05 at 3-7 % of additive voxels; with
    the residual −0.004 to −0.007 and 0-1.3 %, at a cost in power: 73-83 % instead of 85-96 %
    of interactive voxels at p < .001). A least-squares residual is not enough: where the
    single-condition ANs are as many as the distinct stimuli it fits everything in-sample and
    leaves ~0 (the default demo's fusion layer: 5e-4 of the planted unified ANs' variance,
    whose held-out r from the single-condition ANs is 0.18-0.30; the ridge residual keeps
    75-97 % of it).

    Parameters
    ----------
    x_both, x_image, x_text : ndarray, shape (T, N_both), (T, N_image), (T, N_text)
    runs : ndarray, shape (T,)
        At least 2 runs (the cross-validation folds).
    alphas : ndarray, shape (n_alphas,), optional
        Ridge penalties to choose from; default :data:`alignment.encoding.DEFAULT_ALPHAS`.

    Returns
    -------
    ndarray, shape (T, N_both), float64
    """
    from alignment.encoding import DEFAULT_ALPHAS, fit_ridge

    x_both = np.asarray(x_both, dtype=np.float64)
    T = x_both.shape[0]
    runs = np.asarray(runs)
    if x_both.ndim != 2 or np.shape(x_image)[0] != T or np.shape(x_text)[0] != T or runs.shape != (T,):
        raise ValueError(f"x_both, x_image, x_text and runs must share their {T} time points")
    one_hot = (runs[:, None] == np.unique(runs)[None]).astype(np.float64)

    def within_run(a):  # centered within run: the per-run intercepts
        return a - one_hot @ (one_hot.T @ a / one_hot.sum(0)[:, None])

    design = within_run(np.hstack([np.asarray(x_image, np.float64), np.asarray(x_text, np.float64)]))
    target = within_run(x_both)
    chosen = fit_ridge(design, target, runs, DEFAULT_ALPHAS if alphas is None else alphas,
                       inner_cv=False).best_alphas
    U, s, _ = np.linalg.svd(design, full_matrices=False)
    Ut_target = U.T @ target
    resid = np.empty_like(target)
    for alpha in np.unique(chosen):
        cols = chosen == alpha
        resid[:, cols] = target[:, cols] - U @ ((s**2 / (s**2 + alpha))[:, None] * Ut_target[:, cols])
    return resid


@dataclass(frozen=True, eq=False)
class CrossModalTests:
    """Tested cross-modal gain and unified BNs of one fusion layer (per voxel, shape (V,)).

    Attributes
    ----------
    r_both, r_image, r_text : ndarray
        Held-out r of ridge models of the layer's ANs under each stimulus condition.
    r_additive, r_full : ndarray
        Held-out r of the *additive* model, a banded ridge over the ``image``-condition and the
        ``text``-condition ANs (one band each), and of the *full* model, the same with the
        ``image+text`` ANs' part beyond them as a third band.
    gain : ndarray
        ``r_both − max(r_image, r_text)``.
    p_gain : ndarray
        One-sided p of gain > 0: the larger of the paired block p of image+text beating the
        image condition and beating the text condition (an intersection-union test: gain > 0
        means beating both).
    dz_unified, p_unified : ndarray
        Mean block Fisher-z difference and one-sided p of the full model beating the additive
        one (the image+text ANs add to the two single-modality passes).
    n_blocks : int
    inflation : dict[str, float]
        λ of each block test (:mod:`alignment.analyses.integration`): ``"unified"``, and
        ``"gain_image"``, ``"gain_text"`` (image+text against each single condition).
    """

    r_both: np.ndarray
    r_image: np.ndarray
    r_text: np.ndarray
    r_additive: np.ndarray
    r_full: np.ndarray
    gain: np.ndarray
    p_gain: np.ndarray
    dz_unified: np.ndarray
    p_unified: np.ndarray
    n_blocks: int
    inflation: dict


def crossmodal_tests(y, pred_both, pred_image, pred_text, pred_full, pred_additive, runs=None, *,
                     block_len: int = 20, inflation: str = "estimated") -> CrossModalTests:
    """Per-voxel tests of cross-modal gain and of "unified" responses of a fusion layer.

    Two contrasts, both paired over time blocks of held-out predictions (leave-one-run-out
    ridge; nothing is in-sample):

    - *gain > 0*: the image+text prediction beats the image-only prediction AND the text-only
      one; p = max of the two one-sided block p (intersection-union: level α without a
      correction). A voxel that adds an image-driven and a text-driven response has gain > 0
      too — both modalities predict more than one — so gain is not evidence of integration.
    - *unified*: the image+text ANs add to the two single-modality passes. The *additive* model
      is a banded ridge over the image-condition and the text-condition ANs (one band each);
      the *full* model adds, as a third band, the image+text ANs' part those do not predict
      (:func:`beyond_single_modalities`). An additive voxel is predicted by the additive model
      as well as by the full one; only a response to the combination (an interaction the
      fused layer carries and the single-modality passes do not) makes the full model better.
      The models are nested and the extra band's prior reaches what the additive one lacks,
      so at an additive voxel it mostly costs the full model (shrinkage, a larger search).
      Comparing the image+text ridge with the additive model directly is not nested, and the
      better-fitting basis wins: measured 5-25 % of purely additive voxels declared unified,
      depending on how much unrelated variance the single-condition passes carry.

    Parameters
    ----------
    y : ndarray, shape (T, V)
        BOLD.
    pred_both, pred_image, pred_text : ndarray, shape (T, V)
        Held-out predictions from the layer's ANs under each condition.
    pred_full, pred_additive : ndarray, shape (T, V)
        Held-out predictions of the full and the additive banded ridge.
    runs : ndarray, shape (T,), optional
    block_len : int
    inflation : {"estimated", "bound"}
        How λ is set (:func:`alignment.analyses.integration.integration_sites`).

    Returns
    -------
    CrossModalTests
    """
    from alignment.analyses.integration import integration_sites

    # gain: image+text vs each single condition (p_each is the intersection-union p)
    gain = integration_sites(y, pred_both, pred_image, runs=runs, block_len=block_len, test="t",
                             pred_image=pred_image, pred_text=pred_text, inflation=inflation)
    unified = integration_sites(y, pred_full, pred_additive, runs=runs, block_len=block_len, test="t",
                                inflation=inflation)
    return CrossModalTests(r_both=gain.r_vlm, r_image=gain.r_image, r_text=gain.r_text,
                           r_additive=unified.r_joint, r_full=unified.r_vlm,
                           gain=cross_modal_gain(gain.r_vlm, gain.r_image, gain.r_text), p_gain=gain.p_each,
                           dz_unified=unified.mean_dz, p_unified=unified.p, n_blocks=unified.n_blocks,
                           inflation={"unified": unified.inflation["joint"], "gain_image": gain.inflation["image"],
                                      "gain_text": gain.inflation["text"]})


def unified_by_test(q_unified, dz_unified, sig_both, fdr_q: float = 0.05) -> np.ndarray:
    """Unified BNs by test: the image+text ANs add to the single-modality passes (BH q <
    ``fdr_q``, positive difference) where the image+text encoding map is significant.

    Parameters
    ----------
    q_unified, dz_unified : ndarray, shape (V,)
        BH q and mean Fisher-z difference of :func:`crossmodal_tests`' unified contrast.
    sig_both : ndarray of bool, shape (V,)
        Significance of the image+text encoding map.

    Returns
    -------
    ndarray of bool, shape (V,)
    """
    q = _vec("q_unified", q_unified)
    return (q < fdr_q) & (_vec("dz_unified", dz_unified, q.size) > 0) & _mask("sig_both", sig_both, q.size)


def unique_variance_tests(y, pred_joint, preds_without: Mapping[str, np.ndarray], runs=None, *,
                          block_len: int = 20, inflation: str = "estimated") -> dict:
    """Per-voxel test of each band's unique variance: does the joint banded model predict
    held-out BOLD better than the model refit without that band? (Unique R² > 0 means exactly
    that; the test compares the two predictions' r over time blocks.)

    Parameters
    ----------
    y, pred_joint : ndarray, shape (T, V)
    preds_without : dict[str, ndarray (T, V)]
        Held-out prediction of the model without each band.
    runs : ndarray, shape (T,), optional
    block_len : int
    inflation : {"estimated", "bound"}
        How λ is set (:func:`alignment.analyses.integration.integration_sites`).

    Returns
    -------
    dict[str, PairedContrast]
        One-sided (joint better) per band.
    """
    return {b: paired_contrast(y, pred_joint, p, runs, block_len=block_len, inflation=inflation)
            for b, p in preds_without.items()}
