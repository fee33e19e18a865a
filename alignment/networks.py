"""Network groups and per-network summaries of voxel maps.

The paper's four groups (DESIGN §5.3) are in :data:`GROUPS`; :func:`group_labels` maps voxels
to them and :func:`network_summary` tabulates mean r, fraction significant and counts per
network and per group. The atlases themselves (labels, names, colours) come from
:func:`alignment.atlases.load_atlas`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from alignment.atlases import Atlas, name_key

__all__ = [
    "GROUPS",
    "GROUP_ORDER",
    "group_labels",
    "group_masks",
    "network_summary",
    "count_by_network",
]

#: the paper's four network groups, by Cole-Anticevic network name
GROUPS: dict[str, list[str]] = {
    "vision": ["Visual1", "Visual2"],
    "language": ["Language"],
    "attention": ["Dorsal-attention"],
    "default mode": ["Default"],
}
#: group names in display order; voxels in no group are "other"
GROUP_ORDER = (*GROUPS, "other")
# extra names that count for a group in other atlases (Yeo: a single "Visual" network);
# compared after normalisation (lower case, letters and digits only)
_GROUP_ALIASES = {"vision": ["Visual"], "attention": ["Dorsal Attention", "DorsAttn"]}


# --------------------------------------------------------------------------------------------
# groups and summaries
# --------------------------------------------------------------------------------------------
def _group_of_network(atlas: Atlas, groups: Mapping[str, Sequence[str]]) -> dict[int, str]:
    """network id → group name (networks in no group are left out)."""
    out = {}
    for g, members in groups.items():
        keys = {name_key(m) for m in members}
        if groups is GROUPS:
            keys |= {name_key(m) for m in _GROUP_ALIASES.get(g, [])}
        for k, nm in atlas.names.items():
            if name_key(nm) in keys and k not in out:
                out[k] = g
    return out


def group_labels(atlas: Atlas, groups: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
    """Group name of every voxel.

    Parameters
    ----------
    atlas : Atlas
        labels (V,).
    groups : dict[str, list[str]], optional
        group → network names. Default :data:`GROUPS` (vision = Visual1 + Visual2, language,
        attention = Dorsal-attention, default mode = Default); names are matched ignoring case
        and punctuation, and Yeo's single "Visual" / "Dorsal Attention" networks count too.

    Returns
    -------
    ndarray of object, shape (V,)
        Group name per voxel; ``"other"`` for voxels in no group (including unlabelled).
    """
    groups = GROUPS if groups is None else groups
    lut = np.full(max(atlas.names, default=0) + 1, "other", dtype=object)
    for k, g in _group_of_network(atlas, groups).items():
        lut[k] = g
    return lut[atlas.labels]


def group_masks(atlas: Atlas, groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, np.ndarray]:
    """Boolean mask (V,) per group (in :data:`GROUP_ORDER` order, ``"other"`` last)."""
    g = group_labels(atlas, groups)
    names = list(GROUPS if groups is None else groups) + ["other"]
    return {n: g == n for n in names}


def count_by_network(mask: np.ndarray, atlas: Atlas) -> np.ndarray:
    """Number of True voxels per network id.

    Parameters
    ----------
    mask : ndarray of bool, shape (V,) or (K, V)
        With (K, V), counts (atom, voxel) pairs summed over K.
    atlas : Atlas

    Returns
    -------
    ndarray of int, shape (max_id + 1,)
        Index = network id (0 = unlabelled).
    """
    mask = np.asarray(mask, dtype=bool)
    atlas.check(mask.shape[-1], "mask")
    per_voxel = mask.sum(0) if mask.ndim == 2 else mask
    return np.bincount(atlas.labels, weights=per_voxel, minlength=max(atlas.names, default=0) + 1).astype(np.int64)


def network_summary(
    values: np.ndarray | None,
    significant: np.ndarray | None,
    atlas: Atlas,
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    include_groups: bool = True,
):
    """Mean value, fraction significant and counts per network and per group.

    Parameters
    ----------
    values : ndarray, shape (V,), or None
        Per-voxel score (e.g. encoding r). NaNs are ignored in the means.
    significant : ndarray of bool, shape (V,), or None
        Significance mask (e.g. FDR q < 0.05). None: no voxel counts as significant.
    atlas : Atlas
        labels (V,).
    groups : dict, optional
        Group definition for the group rows (default :data:`GROUPS`).
    include_groups : bool
        Append one row per group (and "other").

    Returns
    -------
    pandas.DataFrame
        One row per network (level ``"network"``, ids ascending), then per group (level
        ``"group"``). Columns: ``level``, ``id`` (network id; -1 for groups), ``name``,
        ``group``, ``color``, ``n_voxels``, ``n_significant``, ``frac_significant``,
        ``mean_r`` (mean of ``values``; any per-voxel score, r by convention),
        ``mean_r_significant`` (mean over significant voxels), ``share_of_significant``
        (the network's share of all significant voxels). Unlabelled voxels (id 0) are left out
        of the network rows and fall in the "other" group.
    """
    import pandas as pd

    V = atlas.n_voxels
    vals = None if values is None else np.asarray(values, dtype=np.float64)
    if vals is not None:
        atlas.check(vals.shape[0], "values")
        if vals.ndim != 1:
            raise ValueError(f"values must have shape (V,), got {vals.shape}")
    sig = np.zeros(V, dtype=bool) if significant is None else np.asarray(significant, dtype=bool)
    atlas.check(sig.shape[0], "significant")
    total_sig = int(sig.sum())
    gmap = _group_of_network(atlas, GROUPS if groups is None else groups)

    def row(level, k, name, group, color, m):
        n = int(m.sum())
        ns = int((m & sig).sum())
        mean = meansig = np.nan
        if vals is not None:
            v = vals[m]
            v = v[np.isfinite(v)]
            mean = float(v.mean()) if v.size else np.nan
            vs = vals[m & sig]
            vs = vs[np.isfinite(vs)]
            meansig = float(vs.mean()) if vs.size else np.nan
        return dict(level=level, id=k, name=name, group=group, color=color, n_voxels=n,
                    n_significant=ns, frac_significant=ns / n if n else np.nan, mean_r=mean,
                    mean_r_significant=meansig,
                    share_of_significant=ns / total_sig if total_sig else np.nan)

    rows = [row("network", k, nm, gmap.get(k, "other"), atlas.colors.get(k, ""), atlas.labels == k)
            for k, nm in atlas.names.items()]
    if include_groups:
        for g, m in group_masks(atlas, groups).items():
            rows.append(row("group", -1, g, g, "", m))
    return pd.DataFrame(rows)
