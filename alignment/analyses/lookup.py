"""AN ↔ BN link lookup for interactive views (DESIGN §5.2).

The link score of AN n and voxel v in one (model, branch, layer) is

    score(n, v) = Σ_k S[n, k] · t[k, v]   over significant (k, v),

with S (N, K) the AN codes, t (K, V) the atoms' GLM t maps and sig (K, V) their significance.
A voxel's top ANs rank this score by |score| over all layers and branches; an AN's brain map is
the score over voxels.

Speed: the masked t maps are precomputed once as float32, stored per layer voxel-major
(V, K), stacked over layers of equal shape. A voxel click reads K contiguous floats per layer
and does one (N, K) @ (K,) product per layer, batched into a single ``matmul`` per shape
group; an AN's map is one contiguous (V, K) @ (K,) product. Memory: 4 · V · ΣK bytes
(≈ 270 MiB for 91282 grayordinates × 12 layers × 64 atoms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["LayerLinks", "LinkTable", "link_scores"]


@dataclass(frozen=True, eq=False)
class LayerLinks:
    """Cached mapping results of one (model, branch, layer).

    Attributes
    ----------
    model, branch : str
    layer : int
    codes : ndarray, shape (N, K)
        AN codes S.
    t : ndarray, shape (K, V)
        GLM t per (atom, voxel).
    sig : ndarray of bool, shape (K, V)
        Significance per (atom, voxel).
    """

    model: str
    branch: str
    layer: int
    codes: np.ndarray
    t: np.ndarray
    sig: np.ndarray


def link_scores(codes, t, sig) -> np.ndarray:
    """Full AN × BN link-score matrix of one layer (reference implementation).

    Parameters
    ----------
    codes : ndarray, shape (N, K)
    t : ndarray, shape (K, V)
    sig : ndarray of bool, shape (K, V)

    Returns
    -------
    ndarray, shape (N, V)
        ``codes @ where(sig, t, 0)``.
    """
    return np.asarray(codes, dtype=np.float64) @ np.where(np.asarray(sig, bool), np.asarray(t, np.float64), 0.0)


def _as_layer(item) -> LayerLinks:
    if isinstance(item, LayerLinks):
        return item
    if isinstance(item, dict):
        missing = {"model", "branch", "layer", "codes", "t", "sig"} - set(item)
        if missing:
            raise ValueError(f"layer dict lacks {sorted(missing)}")
        return LayerLinks(item["model"], item["branch"], item["layer"], item["codes"], item["t"], item["sig"])
    if isinstance(item, (tuple, list)) and len(item) == 6:
        return LayerLinks(*item)
    raise TypeError("each layer must be a LayerLinks, a dict or a (model, branch, layer, codes, t, sig) tuple")


class LinkTable:
    """AN ↔ BN links of many layers, precomputed for fast voxel and AN lookups.

    Parameters
    ----------
    layers : iterable of LayerLinks, dict or tuple
        Each: model, branch, layer, codes (N, K), t (K, V), sig (K, V); V must be equal across
        layers, N and K may differ. The t and sig arrays are not kept (only the masked float32
        copy), so the caller may free them.

    Attributes
    ----------
    keys : list of (model, branch, layer)
    n_voxels : int
    """

    def __init__(self, layers: Iterable):
        layers = [_as_layer(x) for x in layers]
        if not layers:
            raise ValueError("LinkTable needs at least one layer")
        keys = [(str(x.model), str(x.branch), int(x.layer)) for x in layers]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate (model, branch, layer) in layers")
        V = None
        for x, key in zip(layers, keys):
            t, sig, S = np.asarray(x.t), np.asarray(x.sig), np.asarray(x.codes)
            if t.ndim != 2 or t.shape != sig.shape:
                raise ValueError(f"{key}: t and sig must have the same shape (K, V); got {t.shape}, {sig.shape}")
            if S.ndim != 2 or S.shape[1] != t.shape[0]:
                raise ValueError(f"{key}: codes must have shape (N, {t.shape[0]}), got {S.shape}")
            if V is None:
                V = t.shape[1]
            elif t.shape[1] != V:
                raise ValueError(f"{key}: {t.shape[1]} voxels, other layers have {V}")
        self.n_voxels = int(V)
        # group layers of equal (N, K) so that a voxel lookup is one batched matmul per group
        shapes: dict = {}
        for i, x in enumerate(layers):
            shapes.setdefault(np.shape(x.codes), []).append(i)
        order = [i for idx in shapes.values() for i in idx]
        self.keys = [keys[i] for i in order]
        self._index = {k: j for j, k in enumerate(self.keys)}
        self._groups = []  # (codes (G, N, K), masked t voxel-major (G, V, K))
        self._where = []  # layer j -> (group, position in group)
        for gi, ((N, K), idx) in enumerate(shapes.items()):
            codes = np.empty((len(idx), N, K), dtype=np.float32)
            tm = np.empty((len(idx), V, K), dtype=np.float32)
            for pos, i in enumerate(idx):
                x = layers[i]
                codes[pos] = np.asarray(x.codes, np.float32)
                # masked once here, stored (V, K) per layer: a voxel is K contiguous floats
                # per layer and an AN map is one contiguous (V, K) @ (K,) product
                tm[pos] = np.where(np.asarray(x.sig, bool), np.asarray(x.t, np.float32), np.float32(0)).T
                self._where.append((gi, pos))
            self._groups.append((codes, tm))
        # metadata of the concatenated AN axis (order of self.keys), for result tables
        sizes = [self._groups[g][0].shape[1] for g, _ in self._where]
        self._an_layer = np.repeat(np.arange(len(sizes)), sizes)
        self._an_index = np.concatenate([np.arange(n) for n in sizes])

    # ----------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Memory held by the precomputed arrays, in bytes."""
        return int(sum(c.nbytes + tm.nbytes for c, tm in self._groups))

    def _check_voxel(self, voxel) -> int:
        v = int(voxel)
        if not 0 <= v < self.n_voxels:
            raise IndexError(f"voxel {voxel} out of range [0, {self.n_voxels})")
        return v

    def _layer(self, model, branch, layer) -> int:
        key = (str(model), str(branch), int(layer))
        try:
            return self._index[key]
        except KeyError:
            raise KeyError(f"no layer {key}; have {self.keys}") from None

    def voxel_scores(self, voxel) -> np.ndarray:
        """Link score of every AN of every layer with one voxel.

        Parameters
        ----------
        voxel : int

        Returns
        -------
        ndarray of float32, shape (ΣN,)
            Concatenated over layers in the order of :attr:`keys`.
        """
        v = self._check_voxel(voxel)
        parts = []
        for codes, tm in self._groups:
            # (G, N, K) @ (G, K, 1): one (N, K) @ (K,) product per layer, one call per group
            parts.append(np.matmul(codes, tm[:, v, :, None]).reshape(-1))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def top_ans(self, voxel, n: int | None = 10):
        """ANs most strongly linked to a voxel, over all layers and branches.

        Parameters
        ----------
        voxel : int
            Voxel (grayordinate / vertex) index.
        n : int or None
            Number of rows; None for every AN.

        Returns
        -------
        pandas.DataFrame
            Columns ``model``, ``branch``, ``layer``, ``an`` (index within the layer),
            ``score``, ``sign`` (+1 / -1; 0 for a zero score); sorted by |score| descending.
        """
        import pandas as pd

        s = self.voxel_scores(voxel)
        a = np.abs(s)
        if n is None or n >= s.size:
            top = np.argsort(-a, kind="stable")
        else:
            top = np.argpartition(-a, n - 1)[:n]
            top = top[np.argsort(-a[top], kind="stable")]
        lay = self._an_layer[top]
        keys = self.keys
        return pd.DataFrame({
            "model": [keys[j][0] for j in lay],
            "branch": [keys[j][1] for j in lay],
            "layer": np.array([keys[j][2] for j in lay], dtype=np.int64),
            "an": self._an_index[top].astype(np.int64),
            "score": s[top].astype(np.float64),
            "sign": np.sign(s[top]).astype(np.int8),
        })

    def an_map(self, model, branch, layer, an) -> np.ndarray:
        """Brain map of one AN: its link score with every voxel.

        Parameters
        ----------
        model, branch : str
        layer : int
        an : int
            AN index within the layer.

        Returns
        -------
        ndarray of float32, shape (V,)
        """
        j = self._layer(model, branch, layer)
        g, pos = self._where[j]
        codes, tm = self._groups[g]
        a = int(an)
        if not 0 <= a < codes.shape[1]:
            raise IndexError(f"AN {an} out of range [0, {codes.shape[1]}) for {self.keys[j]}")
        return tm[pos] @ codes[pos, a]

    def top_voxels(self, model, branch, layer, an, n: int = 10, atlas=None):
        """Voxels most strongly linked to one AN.

        Parameters
        ----------
        model, branch : str
        layer, an : int
        n : int
            Number of rows.
        atlas : alignment.atlases.Atlas, optional
            Adds the voxel's ``network``.

        Returns
        -------
        pandas.DataFrame
            Columns ``voxel``, ``score``, ``sign`` (and ``network``), by |score| descending;
            voxels with score 0 are left out.
        """
        import pandas as pd

        m = self.an_map(model, branch, layer, an)
        a = np.abs(m)
        n = min(int(n), int((a > 0).sum()))
        top = np.argpartition(-a, n - 1)[:n] if 0 < n < a.size else np.flatnonzero(a > 0)
        top = top[np.argsort(-a[top], kind="stable")]
        df = pd.DataFrame({"voxel": top.astype(np.int64), "score": m[top].astype(np.float64),
                           "sign": np.sign(m[top]).astype(np.int8)})
        if atlas is not None:
            atlas.check(self.n_voxels, "link table")
            df["network"] = atlas.voxel_names("unlabelled")[top] if len(top) else []
        return df
