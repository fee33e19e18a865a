"""Polarity of BNs and ANs across layers, and the mirrored trend (DESIGN §5.4).

Why not the sign of an atom's t
-------------------------------
For one (model, branch, layer) the neuron-level mapping gives the AN codes ``S`` (N, K), the
GLM t map of each atom ``t`` (K, V) and its significance ``sig`` (K, V). A dictionary
factorisation ``Aᵀ ≈ S·D`` is unchanged when atom k and its codes flip sign together
(``S[:, k] → −S[:, k]``, ``D[k] → −D[k]``, hence ``t[k] → −t[k]``) and when the atoms are
reordered. Which sign and which order a solver returns depends on its seed, so the sign of
``t`` alone says nothing: on the same data two dictionary seeds can turn a balanced layer into
an almost all-negative one.

Definition used here
--------------------
Polarity belongs to the pairing of an AN and a BN, not to the atom in between. The AN→BN
coupling of the mapping (DESIGN §5.2)

    score(n, v) = Σ_k S[n, k] · t[k, v]   over significant (k, v)

is a sum of products in which a flipped atom flips both factors, and a permutation of the atoms
only permutes the terms: it depends on neither.

- *Link polarity* of (AN n, BN v): the sign of ``score(n, v)`` — whether the voxel's response
  rises (+1) or falls (−1) with the AN's activation (:func:`link_polarity`).
- *BN polarity* of voxel v in a layer: the sign of its couplings with the ANs, each weighted by
  its strength: ``sign(Σ_n score(n, v) · |score(n, v)|)`` — positive when the positive couplings
  carry more than half of the voxel's squared coupling (:func:`bn_polarity`). The weighting lets
  the strongest ANs decide without hanging on a single one.
- *Mixed* BNs. A layer often holds near-copies of an AN with the opposite sign (two ANs that
  follow one source with loadings of either sign). A voxel driven by that source then rises
  with one copy and falls with the other, its positive and negative squared couplings nearly
  cancel, and which sign wins is decided by small differences that change with the dictionary
  seed. Such a voxel has no polarity of its own: it is *mixed*. With the *dominance*
  ``d(v) = |Σ_n score·|score|| / Σ_n score²`` (1: every coupling has one sign; 0: the two signs
  carry equal squared coupling), a BN has a sign when ``d >= MIN_DOMINANCE = 1/2``, the middle
  of that range (the majority sign carries at least three quarters of the squared coupling),
  and is mixed otherwise. The cut-off is not fitted to any data. Blind to atom signs and order,
  like the coupling itself. Measured on the demo (three dictionary seeds, first subject, the
  planted layers): the BNs whose forced sign flipped had a median dominance of 0.01–0.06; with
  the mixed class, 97–100 % of the BNs some seed signs are given the opposite sign by no other
  seed (on the small demo 93–100 % with a cut-off of 1/4: the choice is not critical),
  against 61–100 % of all BNs when every BN is forced to a sign.
- *AN polarity*: an AN's counts of positive and negative links (:func:`an_polarity_counts`).
  Links are pairs, so they are never mixed.

This follows the neuron-level line of work that couples single units of language and
vision-language transformers (BERT, CLIP) with fMRI voxels through a sparse dictionary of
temporal atoms and a voxel-wise GLM: there a BN is called positive when it goes up with the
artificial neuron that drives it and negative when it goes down, i.e. the sign is read off the
product of an AN's loading and the atom's brain response, never off an atom on its own.

Each BN is attributed to its *dominant atom*: the atom contributing the largest term
``|S[n*, k] · t[k, v]|`` to its top AN's coupling. BNs with the same dominant atom share one
source of variation (one atom's map), so atoms are the resampling units of the mirrored trend.

Mirrored trend
--------------
With P_l positive and N_l negative BNs in layer l of a network (mixed BNs count in neither),
the correlation r(P, N) across layers mostly follows how the totals P_l + N_l vary (with a
constant total it is −1 by construction), and testing it against r = 0 by permuting layers
tests the wrong null. The statistic here is the Pearson correlation across layers between the *balance*
``b_l = P_l / (P_l + N_l)`` and the layer's depth (its layer index): a mirrored trend is a
balance that moves with depth (r > 0: positive BNs gain on negative ones in deeper layers).
It is blind to the totals by construction.

- Null (:func:`mirrored_trend`, ``p``): random atom-sign flips that keep every total — each
  layer's atoms independently swap their positive and negative BNs with probability 1/2 and the
  balances are re-derived; p = (1 + #|r*| ≥ |r|) / (1 + n_null).
- Interval: percentile bootstrap over atoms within each layer (an atom's BNs are resampled
  together, as they vary together).
- Group: the per-subject r are Fisher-z transformed and tested against 0 by a one-sample t test
  across subjects, with the t interval back-transformed (:func:`group_trend`); the subjects'
  variance is the error term.

What is in-sample: the dictionary is learned on all runs and the GLM t on all runs, so
polarities, balances and their trend are in-sample descriptions of the fitted mapping; nothing
here is cross-validated. The null and the interval treat layers as independent given their
atoms; adjacent layers of a real network are correlated, so read the interval as descriptive of
this set of layers.

Stability across dictionary seeds (:func:`polarity_stability`): among the voxels that are BNs
under every seed and signed under at least one, the share that no seed gives the opposite sign
(a seed may call it mixed: that withholds a sign, it does not contradict one); beside it, the
share of the BNs signed alike under every seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np

__all__ = [
    "BNPolarity",
    "bn_polarity",
    "link_polarity",
    "an_polarity_counts",
    "polarity_counts",
    "polarity_tallies",
    "polarity_curves",
    "curve_arrays",
    "MirroredTrend",
    "mirrored_trend",
    "mirrored_trends",
    "GroupTrend",
    "group_trend",
    "polarity_stability",
    "voxel_polarity",
    "SeedAgreement",
    "POLARITY_NAMES",
    "MIXED",
    "MIN_DOMINANCE",
    "MIN_LAYERS",
]

#: code of a BN whose positive and negative couplings nearly cancel (no polarity)
MIXED = 2
#: codes of a polarity
POLARITY_NAMES = {1: "positive", -1: "negative", MIXED: "mixed", 0: "none"}
#: the least dominance |Σ score·|score|| / Σ score² for a BN to have a sign (the middle of [0, 1])
MIN_DOMINANCE = 0.5
#: fewest layers with BNs for a mirrored trend
MIN_LAYERS = 4
_CHUNK = 8192  # voxels per coupling product: an (N, chunk) float64 block


def _masked(codes, t, sig):
    """(S (N, K), where(sig, t, 0) (K, V)) as float64, shapes checked."""
    S = np.asarray(codes, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    sig = np.asarray(sig, dtype=bool)
    if t.ndim != 2 or t.shape != sig.shape:
        raise ValueError(f"t and sig must have the same shape (K, V); got {t.shape} and {sig.shape}")
    if S.ndim != 2 or S.shape[1] != t.shape[0]:
        raise ValueError(f"codes must have shape (N, {t.shape[0]}), got {S.shape}")
    return S, np.where(sig & np.isfinite(t), t, 0.0)


@dataclass(frozen=True, eq=False)
class BNPolarity:
    """BN polarity of one layer (:func:`bn_polarity`).

    Attributes
    ----------
    polarity : ndarray of int8, shape (V,)
        +1 / −1: ``sign(Σ_n score(n, v) · |score(n, v)|)`` where the dominance reaches
        ``min_dominance``; :data:`MIXED` (2): a BN below it; 0: no significant atom (or no
        coupling), not a BN.
    dominance : ndarray of float64, shape (V,)
        ``|Σ_n score·|score|| / Σ_n score²`` in [0, 1] (0 where polarity is 0).
    top_an : ndarray of int64, shape (V,)
        The top AN (largest |score(n, v)|), −1 where polarity is 0.
    atom : ndarray of int64, shape (V,)
        Dominant atom (largest |S[top, k] · t[k, v]|), −1 where polarity is 0.
    score : ndarray of float64, shape (V,)
        The top AN's coupling ``score(top_an, v)`` (0 where polarity is 0).
    n_atoms : int
        K.
    """

    polarity: np.ndarray
    dominance: np.ndarray
    top_an: np.ndarray
    atom: np.ndarray
    score: np.ndarray
    n_atoms: int


def bn_polarity(codes, t, sig, *, min_dominance: float = MIN_DOMINANCE, chunk: int = _CHUNK) -> BNPolarity:
    """Polarity of every voxel of one layer from its strength-weighted couplings with the ANs:
    positive, negative or mixed (see the module docstring).

    Invariant to each atom's sign and to the atoms' order.

    Parameters
    ----------
    codes : ndarray, shape (N, K)
        AN codes S.
    t : ndarray, shape (K, V)
        GLM t per (atom, voxel).
    sig : ndarray of bool, shape (K, V)
        Significance per (atom, voxel).
    min_dominance : float
        The least dominance in [0, 1] for a sign (0: every BN gets one).
    chunk : int
        Voxels per coupling product (memory: 8 · N · chunk bytes).

    Returns
    -------
    BNPolarity
        ``polarity``, ``dominance``, ``top_an``, ``atom``, ``score`` (V,) each.
    """
    if not 0 <= min_dominance <= 1:
        raise ValueError(f"min_dominance must be in [0, 1], got {min_dominance}")
    S, tm = _masked(codes, t, sig)
    K, V = tm.shape
    pol = np.zeros(V, np.int8)
    dominance = np.zeros(V)
    top = np.full(V, -1, np.int64)
    atom = np.full(V, -1, np.int64)
    score = np.zeros(V)
    cols = np.flatnonzero((tm != 0).any(0))  # voxels with a significant atom
    for start in range(0, cols.size, max(1, int(chunk))):
        c = cols[start:start + chunk]
        sc = S @ tm[:, c]  # (N, c) couplings
        n = np.argmax(np.abs(sc), axis=0)  # top AN per voxel
        weighted = (sc * np.abs(sc)).sum(0)
        squared = (sc * sc).sum(0)
        ok = squared > 0
        d = np.abs(weighted) / np.where(ok, squared, 1.0)
        terms = S[n] * tm[:, c].T  # (c, K): each atom's term of the top AN's coupling
        signed = (d >= min_dominance) & (weighted != 0)
        pol[c] = np.where(~ok, 0, np.where(signed, np.sign(weighted), MIXED)).astype(np.int8)
        dominance[c] = np.where(ok, d, 0.0)
        top[c] = np.where(ok, n, -1)
        atom[c] = np.where(ok, np.argmax(np.abs(terms), axis=1), -1)
        score[c] = np.where(ok, sc[n, np.arange(c.size)], 0.0)
    return BNPolarity(pol, dominance, top, atom, score, int(K))


def link_polarity(codes, t, sig) -> np.ndarray:
    """Polarity of every (AN, BN) link of one layer: the sign of ``score(n, v)``.

    Parameters
    ----------
    codes : ndarray, shape (N, K)
    t, sig : ndarray, shape (K, V)

    Returns
    -------
    ndarray of int8, shape (N, V)
        +1 / −1, 0 where the AN reaches the voxel through no significant atom.
    """
    S, tm = _masked(codes, t, sig)
    return np.sign(S @ tm).astype(np.int8)


def an_polarity_counts(codes, t, sig, *, chunk: int = _CHUNK) -> dict:
    """Per-layer counts of ANs by the polarity of their links.

    Parameters
    ----------
    codes : ndarray, shape (N, K)
    t, sig : ndarray, shape (K, V)
    chunk : int
        Voxels per coupling product.

    Returns
    -------
    dict
        ``positive_an`` / ``negative_an``: ANs with >= 1 positive / negative link (an AN can be
        both); ``positive_only_an``, ``negative_only_an``, ``mixed_an``; ``positive_links`` /
        ``negative_links``: (AN, BN) pairs of each sign; ``n_ans``: N.
    """
    S, tm = _masked(codes, t, sig)
    N, V = S.shape[0], tm.shape[1]
    pos, neg = np.zeros(N, np.int64), np.zeros(N, np.int64)
    for start in range(0, V, max(1, int(chunk))):
        sc = S @ tm[:, start:start + chunk]
        pos += (sc > 0).sum(1)
        neg += (sc < 0).sum(1)
    p, n = pos > 0, neg > 0
    return dict(n_ans=int(N), positive_an=int(p.sum()), negative_an=int(n.sum()),
                positive_only_an=int((p & ~n).sum()), negative_only_an=int((n & ~p).sum()),
                mixed_an=int((p & n).sum()), positive_links=int(pos.sum()), negative_links=int(neg.sum()))


def _polarity_array(bn) -> np.ndarray:
    return np.asarray(bn.polarity if isinstance(bn, BNPolarity) else bn)


def _masks(atlas, groups, include_groups):
    """(level, name, mask (V,)) for every network, then every group."""
    from alignment.networks import group_masks

    out = [("network", name, atlas.labels == k) for k, name in atlas.names.items()]
    if include_groups:
        out += [("group", g, m) for g, m in group_masks(atlas, groups).items()]
    return out


def polarity_counts(bn, atlas, *, groups=None, include_groups: bool = True):
    """Counts of positive and negative BNs per network (and per group) for one layer.

    Parameters
    ----------
    bn : BNPolarity or ndarray of int, shape (V,)
        BN polarity (:func:`bn_polarity`).
    atlas : alignment.atlases.Atlas
        labels (V,).
    groups : dict, optional
        Group definition (default :data:`alignment.networks.GROUPS`).
    include_groups : bool
        Append one row per group.

    Returns
    -------
    pandas.DataFrame
        One row per network (``level="network"``) then per group (``level="group"``), columns
        ``level``, ``name``, ``n_voxels``, ``positive_bn``, ``negative_bn``, ``mixed_bn``,
        ``positive_frac``, ``negative_frac``, ``mixed_frac`` (``*_bn / n_voxels``), ``balance``
        (P / (P + N), NaN without signed BNs).
    """
    import pandas as pd

    pol = _polarity_array(bn)
    atlas.check(pol.shape[0], "polarity")
    rows = [(level, name, int(m.sum()), int((m & (pol == 1)).sum()), int((m & (pol == -1)).sum()),
             int((m & (pol == MIXED)).sum())) for level, name, m in _masks(atlas, groups, include_groups)]
    df = pd.DataFrame(rows, columns=["level", "name", "n_voxels", "positive_bn", "negative_bn", "mixed_bn"])
    for c in df.columns[2:]:
        df[c] = df[c].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = df.n_voxels.where(df.n_voxels > 0)
        df["positive_frac"] = df.positive_bn / n
        df["negative_frac"] = df.negative_bn / n
        df["mixed_frac"] = df.mixed_bn / n
        tot = df.positive_bn + df.negative_bn
        df["balance"] = df.positive_bn / tot.where(tot > 0)
    return df


def polarity_tallies(bn: BNPolarity, atlas, *, groups=None, include_groups: bool = True):
    """Positive and negative BNs of one layer per (network, dominant atom): the resampling
    units of :func:`mirrored_trend` (mixed BNs count in neither).

    Returns
    -------
    pandas.DataFrame
        ``level``, ``name``, ``atom``, ``positive``, ``negative``: one row per atom with BNs in
        the network.
    """
    import pandas as pd

    atlas.check(bn.polarity.shape[0], "polarity")
    K = bn.n_atoms
    frames = []
    for level, name, m in _masks(atlas, groups, include_groups):
        a = bn.atom[m]
        p = np.bincount(a[bn.polarity[m] == 1], minlength=K)
        n = np.bincount(a[bn.polarity[m] == -1], minlength=K)
        k = np.flatnonzero(p + n)
        frames.append(pd.DataFrame({"level": level, "name": name, "atom": k.astype(np.int64),
                                    "positive": p[k].astype(np.int64), "negative": n[k].astype(np.int64)}))
    return pd.concat(frames, ignore_index=True)


def polarity_curves(per_layer_counts, *, normalize: bool = False):
    """Stack per-layer polarity counts into layer curves.

    Parameters
    ----------
    per_layer_counts : Mapping[layer, DataFrame] or sequence of DataFrame or DataFrame
        Outputs of :func:`polarity_counts`, keyed by layer (a sequence is numbered 0..L-1), or
        one DataFrame already holding a ``layer`` column.
    normalize : bool
        Divide the counts by the network's voxel count.

    Returns
    -------
    pandas.DataFrame
        Long format, one row per (layer, level, name): ``layer``, ``level``, ``name``,
        ``positive``, ``negative``, ``mixed``, ``balance``, ``n_voxels``; sorted by level, name,
        layer. Use
        :func:`curve_arrays` to get the (L,) arrays of one network.
    """
    import pandas as pd

    if isinstance(per_layer_counts, pd.DataFrame):
        if "layer" not in per_layer_counts:
            raise ValueError("a single DataFrame must have a 'layer' column")
        df = per_layer_counts.copy()
    else:
        items = per_layer_counts.items() if isinstance(per_layer_counts, Mapping) \
            else enumerate(per_layer_counts)
        frames = [d.assign(layer=layer) for layer, d in items]
        if not frames:
            raise ValueError("no layers given")
        df = pd.concat(frames, ignore_index=True)
    out = pd.DataFrame({
        "layer": df["layer"], "level": df["level"], "name": df["name"],
        "positive": df["positive_bn"].astype(float), "negative": df["negative_bn"].astype(float),
        "mixed": df["mixed_bn"].astype(float), "balance": df["balance"].astype(float), "n_voxels": df["n_voxels"],
    })
    if normalize:
        denom = out.n_voxels.where(out.n_voxels > 0)
        out["positive"] = out.positive / denom
        out["negative"] = out.negative / denom
        out["mixed"] = out.mixed / denom
    order = {"network": 0, "group": 1}
    out = out.sort_values(["level", "name", "layer"], key=lambda s: s.map(order) if s.name == "level" else s,
                          kind="mergesort")
    return out.reset_index(drop=True)


def curve_arrays(curves, name: str, level: str | None = None):
    """Layers and positive / negative curves of one network or group.

    Parameters
    ----------
    curves : DataFrame
        Output of :func:`polarity_curves`.
    name : str
        Network or group name.
    level : {"network", "group"}, optional
        Needed only when a name is both.

    Returns
    -------
    layers, positive, negative : ndarray, shape (L,) each
    """
    sel = curves[curves.name == name]
    if level is not None:
        sel = sel[sel.level == level]
    if sel.empty:
        raise KeyError(f"no curve for {name!r}")
    if sel.level.nunique() > 1:
        raise ValueError(f"{name!r} is both a network and a group; pass level=")
    sel = sel.sort_values("layer")
    return sel.layer.to_numpy(), sel.positive.to_numpy(float), sel.negative.to_numpy(float)


# ---------------------------------------------------------------------------- mirrored trend
@dataclass(frozen=True)
class MirroredTrend:
    """Correlation across layers between the balance P / (P + N) and depth.

    Attributes
    ----------
    r : float
        Pearson r over the layers with BNs (NaN with fewer than :data:`MIN_LAYERS` or a constant
        balance).
    ci_low, ci_high : float
        Percentile bootstrap interval over atoms (level ``ci``).
    p : float
        Two-sided p value against random atom-sign flips that keep the totals.
    n_layers : int
        Layers with BNs.
    ci : float
    """

    r: float
    ci_low: float
    ci_high: float
    p: float
    n_layers: int
    ci: float


def _rows_corr(x, y):
    """Pearson r of each row of x (B, L) with y (L,) or (B, L) → (B,); NaN for constant rows."""
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    den = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(-1) / np.where(den > 0, den, 1), np.nan)


def mirrored_trend(positive: Sequence, negative: Sequence, depth=None, *, n_null: int = 2000,
                   n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> MirroredTrend:
    """Correlation across layers of the balance P / (P + N) with depth, with a totals-keeping null.

    Parameters
    ----------
    positive, negative : sequence of L arrays, shape (K_l,) each
        Per layer, the positive and negative BNs attributed to each atom (the ``positive`` /
        ``negative`` columns of :func:`polarity_tallies`); a scalar per layer is one atom.
    depth : ndarray, shape (L,), optional
        Depth of each layer (default 0..L-1).
    n_null : int
        Random atom-sign flips: each atom of each layer swaps its positive and negative BNs
        with probability 1/2, totals unchanged, balances re-derived.
    n_boot : int
        Bootstrap resamples of the atoms within each layer.
    seed : int
    ci : float
        Interval level.

    Returns
    -------
    MirroredTrend
        ``r``, ``ci_low``, ``ci_high``, ``p``, ``n_layers``, ``ci``. Layers without BNs are left
        out; with fewer than :data:`MIN_LAYERS` left every value is NaN.
    """
    if len(positive) != len(negative):
        raise ValueError(f"positive and negative must have one entry per layer; got {len(positive)} and "
                         f"{len(negative)}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    L = len(positive)
    depth = np.arange(L, dtype=np.float64) if depth is None else np.asarray(depth, dtype=np.float64)
    if depth.shape != (L,):
        raise ValueError(f"depth must have shape ({L},), got {depth.shape}")
    pos = [np.atleast_1d(np.asarray(p, dtype=np.float64)) for p in positive]
    neg = [np.atleast_1d(np.asarray(n, dtype=np.float64)) for n in negative]
    for p, n in zip(pos, neg):
        if p.shape != n.shape or p.ndim != 1 or (p < 0).any() or (n < 0).any():
            raise ValueError("each layer needs non-negative positive and negative counts of equal shape (K_l,)")
    keep = [i for i in range(L) if (pos[i] + neg[i]).sum() > 0]
    nan = MirroredTrend(np.nan, np.nan, np.nan, np.nan, len(keep), ci)
    if len(keep) < MIN_LAYERS:
        return nan
    pos, neg, depth = [pos[i] for i in keep], [neg[i] for i in keep], depth[keep]
    tot = [p + n for p, n in zip(pos, neg)]
    balance = np.array([p.sum() / t.sum() for p, t in zip(pos, tot)])
    r = float(_rows_corr(balance, depth))
    if not np.isfinite(r):
        return nan
    rng = np.random.default_rng(seed)
    # null: random atom-sign flips, totals kept
    flip = np.stack([(np.where(rng.random((n_null, p.size)) < 0.5, n, p)).sum(1) / t.sum()
                     for p, n, t in zip(pos, neg, tot)], axis=1)  # (n_null, L)
    null = _rows_corr(flip, depth)
    null = np.where(np.isfinite(null), null, 0.0)
    p_value = float((1 + np.sum(np.abs(null) >= abs(r) - 1e-12)) / (1 + n_null))
    # bootstrap over atoms within each layer
    boot_b = np.empty((n_boot, len(pos)))
    for j, (p, t) in enumerate(zip(pos, tot)):
        idx = rng.integers(0, p.size, size=(n_boot, p.size))
        boot_b[:, j] = p[idx].sum(1) / t[idx].sum(1)
    boot = _rows_corr(boot_b, depth)
    boot = boot[np.isfinite(boot)]
    alpha = 1 - ci
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2]) if boot.size >= 10 else (np.nan, np.nan)
    return MirroredTrend(r, float(lo), float(hi), p_value, len(pos), ci)


def mirrored_trends(tallies, depth: Mapping | None = None, **kw):
    """:func:`mirrored_trend` for every network and group of a tallies table.

    Parameters
    ----------
    tallies : DataFrame
        :func:`polarity_tallies` of several layers with a ``layer`` column (the layer is the
        depth unless ``depth`` maps layer → depth). Layers are those present in the table.
    depth : Mapping, optional
    **kw
        Passed to :func:`mirrored_trend`.

    Returns
    -------
    pandas.DataFrame
        Columns ``level``, ``name``, ``r``, ``ci_low``, ``ci_high``, ``p``, ``n_layers``.
    """
    import pandas as pd

    layers = sorted(tallies.layer.unique())
    rows = []
    for (level, name), sel in tallies.groupby(["level", "name"], sort=False):
        by = {lay: g for lay, g in sel.groupby("layer")}
        empty = np.zeros(0)
        pos = [by[lay].positive.to_numpy(float) if lay in by else empty for lay in layers]
        neg = [by[lay].negative.to_numpy(float) if lay in by else empty for lay in layers]
        d = [depth[lay] if depth is not None else lay for lay in layers]
        res = mirrored_trend(pos, neg, d, **kw)
        rows.append(dict(level=level, name=name, r=res.r, ci_low=res.ci_low, ci_high=res.ci_high,
                         p=res.p, n_layers=res.n_layers))
    return pd.DataFrame(rows, columns=["level", "name", "r", "ci_low", "ci_high", "p", "n_layers"])


@dataclass(frozen=True)
class GroupTrend:
    """Group-level mirrored trend: one-sample t test across subjects of Fisher-z r.

    Attributes
    ----------
    r : float
        tanh of the mean Fisher z.
    ci_low, ci_high : float
        t interval of the mean z, back-transformed.
    p : float
        Two-sided p of the t test (S − 1 dof).
    n_subjects : int
        Subjects with a finite r.
    """

    r: float
    ci_low: float
    ci_high: float
    p: float
    n_subjects: int


def group_trend(r_subjects, ci: float = 0.95) -> GroupTrend:
    """One-sample t test across subjects of the per-subject mirrored-trend r.

    Parameters
    ----------
    r_subjects : ndarray, shape (S,)
        :attr:`MirroredTrend.r` of each subject (NaN ones are left out; at least 2 needed).

    Returns
    -------
    GroupTrend
    """
    from scipy import stats

    r = np.asarray(r_subjects, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    if r.size < 2:
        return GroupTrend(np.nan, np.nan, np.nan, np.nan, int(r.size))
    z = np.arctanh(np.clip(r, -0.999999, 0.999999))
    m, se = z.mean(), z.std(ddof=1) / np.sqrt(z.size)
    if se == 0:
        return GroupTrend(float(np.tanh(m)), np.nan, np.nan, np.nan, int(r.size))
    half = stats.t.ppf(0.5 + ci / 2, z.size - 1) * se
    p = float(2 * stats.t.sf(abs(m / se), z.size - 1))
    return GroupTrend(float(np.tanh(m)), float(np.tanh(m - half)), float(np.tanh(m + half)), p, int(r.size))


class SeedAgreement(NamedTuple):
    """BN polarity under several dictionary seeds (:func:`polarity_stability`)."""

    share: float  #: of the BNs signed under some seed, those no seed gives the opposite sign
    n: int  #: voxels that are BNs under every seed and signed under at least one
    signed: float  #: of the voxels that are BNs under every seed, those with one sign under all
    n_bns: int  #: voxels that are BNs under every seed


def polarity_stability(polarities) -> SeedAgreement:
    """Agreement of the BN polarities of one layer and subject under several dictionary seeds.

    A seed that calls a BN mixed withholds a sign; only a positive BN that another seed calls
    negative is a contradiction.

    Parameters
    ----------
    polarities : sequence of ndarray, shape (V,) each (or BNPolarity)
        Polarity codes (+1, −1, :data:`MIXED`, 0) of the same voxels under >= 2 seeds.

    Returns
    -------
    SeedAgreement
        ``share`` (NaN when ``n`` is 0), ``n``, ``signed`` (NaN when ``n_bns`` is 0), ``n_bns``.
    """
    P = np.stack([_polarity_array(p) for p in polarities])
    if P.shape[0] < 2:
        raise ValueError("stability needs the polarities of at least 2 seeds")
    common = (P != 0).all(0)
    pos, neg = (P == 1).any(0), (P == -1).any(0)
    rated = common & (pos | neg)
    n = int(rated.sum())
    share = float((~(pos & neg))[rated].mean()) if n else float("nan")
    alike = (P == P[0]).all(0) & (np.abs(P[0]) == 1)
    signed = float(alike[common].mean()) if common.any() else float("nan")
    return SeedAgreement(share, n, signed, int(common.sum()))


def voxel_polarity(score, significant=None) -> np.ndarray:
    """Polarity code per voxel of one link-score map (e.g. an AN's brain map).

    Parameters
    ----------
    score : ndarray, shape (V,)
        A per-voxel coupling (e.g. row n of :func:`alignment.analyses.lookup.link_scores`).
    significant : ndarray of bool, shape (V,), optional
        Only significant entries count; default: every non-zero entry.

    Returns
    -------
    ndarray of int8, shape (V,)
        +1 positive, -1 negative, 0 none (names in :data:`POLARITY_NAMES`).
    """
    s = np.asarray(score, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"score must have shape (V,) (a coupling map, not per-atom t), got {s.shape}")
    sig = np.ones(s.shape, dtype=bool) if significant is None else np.asarray(significant, dtype=bool)
    if sig.shape != s.shape:
        raise ValueError(f"significant must have the shape of score {s.shape}, got {sig.shape}")
    return np.sign(np.where(sig & np.isfinite(s), s, 0.0)).astype(np.int8)
