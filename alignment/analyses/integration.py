"""Multimodal integration sites (DESIGN §5.7).

A voxel is an integration site when a VLM layer predicts it significantly better than a *joint*
image+text baseline: one banded ridge over a vision model's features (for the images) and a
language model's features (for the text) together, each band with its own weight. Beating each
unimodal baseline separately is not evidence of integration: a voxel that sums an image-driven
and a text-driven response is predicted by any model that carries both kinds of features, and a
VLM layer does (measured: a "VLM" made of the two baselines' features side by side is declared
better than each baseline at 69 % of such additive voxels; better than the joint baseline at
0 %). The inputs are held-out predictions of the same BOLD (e.g.
``fit_ridge(..., return_predictions=True).predictions`` for the VLM layer and
``fit_banded_ridge([X_image, X_text], ..., return_predictions=True).predictions`` for the joint
baseline): everything tested is cross-validated (leave-one-run-out); nothing is in-sample.

Test (per voxel). Time is cut into contiguous blocks of about ``block_len`` TRs that never
straddle a run boundary. Data and predictions are centered within each block (what is slow
enough to differ between blocks, drift and long-memory noise, drops out) and scaled over the
run; their mean product over a run is the run's *within-block r*. Each TR's first-order
contribution to the Fisher z of that r (the delta method) is averaged over each block, and the
paired differences ``d_b`` (VLM − joint baseline; their mean over a run's blocks is
``z(r_vlm) − z(r_joint)`` of its within-block r) are tested for a positive mean across blocks
(one-sided). The block's own r, used before, gets its scale from the block's few TRs: of one demo
subject's 317 unified voxels 34 % reached p < .001 with it, 47 % with the contributions (its
unplanted voxels: 2.4 % and 3.0 % at p < .05). The run's r without the centering gained
power elsewhere but lost the level: 10-13 % at two-sided p < .05 on pure 1/f noise (two
simulations of 120 voxels).

- ``test="t"`` (default): the mean over its standard error, with a lag-1 HAC (Bartlett)
  variance ``γ0 + max(γ1, 0)``, γ1 the lag-1 autocovariance of neighbouring blocks of the same
  run: slow noise makes neighbouring blocks alike, and an i.i.d. standard error then makes the
  test liberal (measured on independent smooth predictions of AR(1) φ = 0.5 noise, 20-TR
  blocks: 6.2 % at p < .05 with the i.i.d. error, 5.9 % with the HAC variance); p from
  Student's t with B − 1 dof. Continuous p values, so FDR over 91282 voxels works.
- ``test="signflip"``: one-sided sign-flip permutation of the mean difference (equivalently
  of the i.i.d. t statistic). Signs are flipped per *pair* of neighbouring blocks of a run,
  which keeps their lag-1 dependence (measured level 5.8 % in the setting above, 6.5 % with
  one sign per block); the same ``n_perm`` patterns serve every voxel (all 2^U when
  2^U <= n_perm, U = number of pairs). Assumes only that each pair's difference is symmetric
  about 0 under the null.
  p = (1 + #{null >= observed}) / (1 + n_perm) can be no smaller than 1 / (1 + n_perm): with
  few true sites among many voxels, BH may then reject nothing — raise ``n_perm`` or use "t".

Cross-fitting. Leave-one-run-out predictions couple the runs: the data of run j trains the
models that predict run k and vice versa, so under noise the block differences of different
runs are positively correlated and the block variance underestimates the variance of their mean
(measured on pure noise, 4 runs, ridge and banded ridge predictions: the uncorrected test
rejects at 8.4-9.7 % instead of 5 % with white, 1/f or AR(1)+AR(0.9) noise). With
``cross_fitted`` (default) the t statistics are divided by the square root of an inflation
factor λ of their null variance, and p comes from Student's t with B − 1 dof:

- ``inflation="estimated"`` (default, ``test="t"``, at least :data:`INFLATION_MIN_VOXELS`
  voxels): λ = median(t²) / median(T²) over the map's voxels, T ~ Student's t with B − 1 dof,
  at least 1 (the *genomic control* of Devlin & Roeder, 1999, Biometrics 55:997; the
  empirical null of Efron, 2004, JASA 99:96). It assumes that the coupling inflates every
  voxel's null variance by a similar factor and that most voxels of a map do not differ
  between the two models; voxels that do differ (either way) only raise the median, which
  makes the test more conservative, never less. Student's t, not the normal: with few blocks
  the statistic is heavy-tailed (12 blocks: the normal gave 2.2-3.6 times the nominal rate at
  p < .001). Measured on pure noise (4 runs, 20000 voxels, models of 8 and 32 features per
  band; white, 1/f and AR(1) + AR(0.9) noise), as multiples of the nominal rate at p < .05,
  .01 and .001: 150-TR runs (32 blocks, λ 1.56-1.81) 0.76-0.96, 0.53-0.78, 0.20-0.80;
  64-TR runs (12 blocks, λ 1.68-1.99) 0.84-0.91, 0.61-0.82, 0.45-0.85. The nested contrast
  of :func:`alignment.analyses.modality.crossmodal_tests` (a model against itself less a
  band), 150-TR runs: 0.63-0.70 at each level.
- ``inflation="bound"`` (a study's option ``block_inflation``), and with fewer voxels:
  Var(a + b) <= 2 Var(a) + 2 Var(b) (the coupling of runs j and k enters twice, once in each
  run's score), λ = 2: a bound, not an estimate, so the test is conservative (150-TR runs:
  0.55-0.62, 0.27-0.42 and 0-0.25 times the nominal rate at the same levels). It is used
  where the estimate exceeds it (λ is kept within [1, 2]), and the ``signflip`` test always
  uses it (the observed sum is divided by √2).

Pass ``cross_fitted=False`` for predictions of data that trained none of the models (λ = 1,
Student's t).

Blocks should be several autocorrelation lengths long (default 20 TRs at TR = 1 s); with
fewer than ~10 blocks neither test has much power.

Benjamini-Hochberg over voxels gives q; sites are q <= ``q`` with a positive difference
r_vlm − r_joint. Given the two unimodal baselines' own predictions, the old criterion ("better
than the image baseline AND better than the text baseline", the larger of the two one-sided p
values) is reported as ``p_each``: descriptive only, never the sites.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IntegrationResult", "cross_fitting_inflation", "integration_sites", "time_blocks"]

#: Voxels a map needs for the cross-fitting inflation to be estimated from it; with fewer, the
#: bound. The median of t² over n null voxels has a relative standard error of about 2.3 / √n
#: (7 % at 1000: about ±0.1 on a quantile of 3).
INFLATION_MIN_VOXELS = 1000
#: The cross-fitting bound on the inflation of the null variance (module docstring).
INFLATION_BOUND = 2.0
#: how :func:`integration_sites` sets λ (the option ``block_inflation`` of a study)
INFLATIONS = ("estimated", "bound")
#: what the VLM is compared with in :func:`integration_sites`, in the order of its p values
CONTRASTS = ("joint", "image", "text")


@dataclass(frozen=True, eq=False)
class IntegrationResult:
    """Per-voxel integration-site statistics (all from held-out predictions).

    Attributes
    ----------
    r_vlm, r_joint : ndarray, shape (V,)
        Prediction accuracy of the VLM layer and of the joint image+text baseline (Pearson r
        within each run, averaged over runs).
    diff : ndarray, shape (V,)
        ``r_vlm − r_joint``.
    mean_dz : ndarray, shape (V,)
        Mean over blocks of the block differences ``d_b`` (module docstring): about the mean
        over runs of the within-block Fisher-z difference VLM − joint baseline.
    p : ndarray, shape (V,)
        One-sided p of the VLM beating the joint baseline.
    q : ndarray, shape (V,)
        Benjamini-Hochberg q of ``p`` over voxels.
    sites : ndarray of bool, shape (V,)
        ``q <= q_level`` and ``diff > 0``.
    r_image, r_text, p_image, p_text, p_each : ndarray, shape (V,), or None
        Descriptive, only when the unimodal baselines' predictions are given: their r, the
        one-sided p of the VLM beating each, and ``max(p_image, p_text)`` (better than each
        baseline separately — also true of additive voxels, so not a test of integration).
    n_blocks : int
    test : str
    """

    r_vlm: np.ndarray
    r_joint: np.ndarray
    diff: np.ndarray
    mean_dz: np.ndarray
    p: np.ndarray
    q: np.ndarray
    sites: np.ndarray
    n_blocks: int
    test: str
    inflation: dict
    inflation_estimated: bool
    r_image: np.ndarray | None = None
    r_text: np.ndarray | None = None
    p_image: np.ndarray | None = None
    p_text: np.ndarray | None = None
    p_each: np.ndarray | None = None


def time_blocks(runs, block_len: int = 20) -> list[np.ndarray]:
    """Contiguous time blocks within runs.

    Parameters
    ----------
    runs : ndarray, shape (T,)
        Run label per time point.
    block_len : int
        Target block length; each run is split into ``max(1, round(T_run / block_len))``
        nearly equal blocks, so no time point is dropped.

    Returns
    -------
    list of ndarray of int
        Time indices of each block.
    """
    runs = np.asarray(runs)
    if block_len < 3:
        raise ValueError(f"block_len must be >= 3 (a correlation per block), got {block_len}")
    blocks = []
    _, first = np.unique(runs, return_index=True)
    for r in runs[np.sort(first)]:  # runs in order of appearance
        idx = np.flatnonzero(runs == r)
        n = max(1, int(round(idx.size / block_len)))
        blocks.extend(b for b in np.array_split(idx, n) if b.size >= 3)
    return blocks


def _corr(a, b):
    """Column-wise Pearson r of (t, c) arrays; 0 where either is constant."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1.0), 0.0)


def _z(r):
    return np.arctanh(np.clip(r, -0.999999, 0.999999))


def _within_blocks(a, blocks, run_idx):
    """a (T, c) centered within each block and scaled to unit mean square over each run (0 at
    TRs of no block, and where a run's centered values are all 0)."""
    out = np.zeros_like(a)
    for b in blocks:
        out[b] = a[b] - a[b].mean(0)
    for idx in run_idx:
        scale = np.sqrt((out[idx] ** 2).mean(0))
        out[idx] = np.where(scale > 0, out[idx] / np.where(scale > 0, scale, 1.0), 0.0)
    return out


def _z_contributions(zy, zp, run_idx):
    """Each TR's contribution (T, c) to the Fisher z of its run's within-block r: with zy, zp
    from :func:`_within_blocks`, r = mean(zy zp) over the run, and TR t adds, to first order
    (the delta method), z(r) + (zy zp − r (zy² + zp²) / 2) / (1 − r²). Over a run they
    average to z(r) exactly."""
    out = np.zeros_like(zy)
    for idx in run_idx:
        y, p = zy[idx], zp[idx]
        r = np.clip((y * p).mean(0), -0.999999, 0.999999)
        out[idx] = _z(r) + (y * p - r / 2 * (y * y + p * p)) / (1 - r * r)
    return out


def _hac_t(d, adj):
    """Studentized mean of block differences with a lag-1 (Bartlett) HAC variance.

    d (B, c) block differences; adj (B-1,) True where blocks b and b+1 are neighbours in the
    same run. Var = γ0 + max(γ1, 0): only positive lag-1 dependence (neighbouring blocks share
    slow noise) inflates it, so independent blocks lose almost nothing.
    """
    B = d.shape[0]
    m = d.mean(0)
    c = d - m
    g0 = (c * c).sum(0) / (B - 1)
    g1 = (c[:-1] * c[1:])[adj].sum(0) / (B - 1)
    var = g0 + np.maximum(g1, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, m / np.sqrt(var / B), 0.0)


def cross_fitting_inflation(t, n_blocks: int) -> float:
    """λ, the inflation of the null variance of a map's block t statistics (module docstring).

    Parameters
    ----------
    t : ndarray, shape (V,)
        Studentized mean block differences (lag-1 HAC) of one contrast over a map's voxels;
        exact zeros (no variance: masked voxels) are left out.
    n_blocks : int
        B, the time blocks each t was computed over (its reference is Student's t, B − 1 dof).

    Returns
    -------
    float
        median(t²) / median(T²), T ~ Student's t with B − 1 dof (T² ~ F(1, B − 1)), at least 1;
        NaN with fewer than :data:`INFLATION_MIN_VOXELS` voxels. (:func:`integration_sites`
        takes the bound where this exceeds it.)
    """
    from scipy import stats

    t = np.asarray(t, dtype=np.float64)
    t = t[np.isfinite(t) & (t != 0)]
    if t.size < INFLATION_MIN_VOXELS:
        return float("nan")
    return max(1.0, float(np.median(t * t) / stats.f.median(1, n_blocks - 1)))


def _sign_flips(first, n_perm, seed):
    """Sign patterns (n_flips, B) flipped per pair of neighbouring blocks of a run, and whether
    they are all 2^U patterns (exact). ``first`` (B,): the run of each block."""
    B = len(first)
    unit = np.empty(B, dtype=np.int64)
    u, prev, j = -1, None, 0
    for bi, r in enumerate(first):
        j = j + 1 if r == prev else 0
        prev = r
        if j % 2 == 0:
            u += 1
        unit[bi] = u
    U = u + 1
    if 2 ** U <= n_perm:  # exact: every sign pattern (identity included)
        fu = 1 - 2 * ((np.arange(2 ** U)[:, None] >> np.arange(U)) & 1).astype(np.float32)
        return fu[:, unit], True
    fu = np.random.default_rng(seed).choice(np.float32([-1, 1]), size=(n_perm, U))
    return fu[:, unit], False


def integration_sites(y, pred_vlm, pred_joint, runs=None, block_len: int = 20, n_perm: int = 1000,
                      seed: int = 0, *, pred_image=None, pred_text=None, q: float = 0.05,
                      test: str = "t", cross_fitted: bool = True, inflation: str = "estimated",
                      chunk: int = 2048) -> IntegrationResult:
    """Voxels where a VLM layer predicts better than the joint image+text baseline.

    Parameters
    ----------
    y : ndarray, shape (T, V)
        BOLD.
    pred_vlm, pred_joint : ndarray, shape (T, V)
        Held-out predictions of the VLM layer and of the joint (banded ridge) image+text
        baseline.
    runs : ndarray, shape (T,), optional
        Run labels; blocks never cross runs and the reported r is averaged over runs. Default:
        one run.
    block_len : int
        Target block length in TRs (use several HRF lengths, e.g. 20 at TR = 1 s, so blocks
        are close to independent).
    n_perm : int
        Sign flips for ``test="signflip"``.
    seed : int
        Seed of the sign flips.
    pred_image, pred_text : ndarray, shape (T, V), optional
        Held-out predictions of each unimodal baseline alone: adds the descriptive ``r_image``,
        ``r_text``, ``p_image``, ``p_text``, ``p_each`` (both or neither).
    q : float
        FDR level for ``sites``.
    test : {"t", "signflip"}
        Test across blocks (see the module docstring).
    cross_fitted : bool
        The predictions are leave-one-run-out (each run's data trained the models that predict
        the other runs): the null variance of the t statistics is inflated (module docstring).
    inflation : {"estimated", "bound"}
        With ``cross_fitted``: λ estimated from the voxels (``test="t"``, at least
        :data:`INFLATION_MIN_VOXELS` voxels) or the bound λ = 2; one λ per contrast.
    chunk : int
        Voxels processed at once.

    Returns
    -------
    IntegrationResult
        Per voxel (V,): ``r_vlm``, ``r_joint``, ``diff``, ``mean_dz``, ``p``, ``q``, ``sites``
        and, with the unimodal predictions, ``r_image``, ``r_text``, ``p_image``, ``p_text``,
        ``p_each``.
    """
    from scipy import stats

    from alignment.stats import fdr_bh

    if (pred_image is None) != (pred_text is None):
        raise ValueError("give both unimodal predictions (pred_image and pred_text) or neither")
    named = {"pred_vlm": pred_vlm, "pred_joint": pred_joint}
    if pred_image is not None:
        named.update(pred_image=pred_image, pred_text=pred_text)
    y = np.asarray(y)
    preds = [np.asarray(p) for p in named.values()]
    if y.ndim != 2:
        raise ValueError(f"y must have shape (T, V), got {y.shape}")
    for name, p in zip(named, preds):
        if p.shape != y.shape:
            raise ValueError(f"{name} has shape {p.shape}, y has {y.shape}")
    T, V = y.shape
    runs = np.zeros(T, dtype=int) if runs is None else np.asarray(runs)
    if runs.shape != (T,):
        raise ValueError(f"runs must have shape ({T},), got {runs.shape}")
    if test not in ("t", "signflip"):
        raise ValueError(f"test must be 't' or 'signflip', got {test!r}")
    if inflation not in INFLATIONS:
        raise ValueError(f"inflation must be one of {INFLATIONS}, got {inflation!r}")
    blocks = time_blocks(runs, block_len)
    B = len(blocks)
    if B < 3:
        raise ValueError(f"only {B} time blocks of ~{block_len} TRs; need >= 3 (shorten block_len)")
    run_idx = [np.flatnonzero(runs == r) for r in np.unique(runs)]
    first = np.array([runs[b[0]] for b in blocks])
    adj = first[:-1] == first[1:]  # neighbouring blocks of the same run
    # signs are flipped per pair of neighbouring blocks of a run: the pair keeps its lag-1
    # dependence, which independent flips would break (measured 5.4 % → 5.0 % level)
    flips, exact = _sign_flips(first, n_perm, seed) if test == "signflip" else (None, False)

    fixed = INFLATION_BOUND if cross_fitted else 1.0  # λ where it is not estimated

    def signflip_p(d):
        """One-sided p of a positive mean of the block differences d (B, c), sign flips."""
        # sum of flipped differences: Σ d² is flip-invariant, so ranking by the sum equals
        # ranking by the (i.i.d.) t statistic
        obs = d.sum(0) / np.sqrt(fixed)
        null = flips @ d.astype(np.float32)  # (n_flips, c)
        # float32 round-off: the identity flip must count as >= observed
        ge = (null >= obs - 1e-5 * np.abs(d).sum(0) - 1e-12).sum(0)
        return ge / flips.shape[0] if exact else (1 + ge) / (1 + flips.shape[0])

    def t_p(t):
        """One-sided p of each contrast's t (V,), and its λ and whether it was estimated."""
        lam = cross_fitting_inflation(t, B) if cross_fitted and inflation == "estimated" else float("nan")
        estimated = bool(lam < INFLATION_BOUND)  # False where NaN (not estimated) or above the bound
        lam = lam if estimated else fixed
        return stats.t.sf(t / np.sqrt(lam), B - 1), (lam, estimated)

    contrasts = ("p", "p_image", "p_text")[:len(preds) - 1]
    names = ("r_vlm", "r_joint", "r_image", "r_text")[:len(preds)]
    out = {k: np.empty(V) for k in (*names, "dz", *contrasts)}
    for s in range(0, V, chunk):
        sl = slice(s, min(V, s + chunk))
        yc = y[:, sl].astype(np.float64)
        pc = [p[:, sl].astype(np.float64) for p in preds]
        for key, p in zip(names, pc):
            out[key][sl] = np.mean([_corr(yc[i], p[i]) for i in run_idx], axis=0)
        # (n_models, B, c) block means of each TR's contribution to its run's within-block z
        yw = _within_blocks(yc, blocks, run_idx)
        zb = np.stack([np.stack([c[b].mean(0) for b in blocks])
                       for c in (_z_contributions(yw, _within_blocks(p, blocks, run_idx), run_idx) for p in pc)])
        out["dz"][sl] = (zb[0] - zb[1]).mean(0)
        # the VLM against the joint baseline, then against each unimodal baseline
        for key, other in zip(contrasts, (1, 2, 3)):
            d = zb[0] - zb[other]
            out[key][sl] = signflip_p(d) if test == "signflip" else _hac_t(d, adj)
    inflations = {key: (fixed, False) for key in contrasts}
    if test == "t":  # every voxel's t is in: their p, one λ per contrast
        for key in contrasts:
            out[key], inflations[key] = t_p(out[key])
    diff = out["r_vlm"] - out["r_joint"]
    reject, qv = fdr_bh(out["p"], q=q)
    each = {}
    if pred_image is not None:
        each = dict(r_image=out["r_image"], r_text=out["r_text"], p_image=out["p_image"],
                    p_text=out["p_text"], p_each=np.maximum(out["p_image"], out["p_text"]))
    return IntegrationResult(r_vlm=out["r_vlm"], r_joint=out["r_joint"], diff=diff, mean_dz=out["dz"],
                             p=out["p"], q=qv, sites=reject & (diff > 0), n_blocks=B, test=test,
                             inflation={name: float(inflations[key][0]) for key, name in zip(contrasts, CONTRASTS)},
                             inflation_estimated=bool(inflations["p"][1]), **each)
