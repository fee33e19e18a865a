"""Exports: CIFTI-2 dscalar and GIfTI maps, CSV tables, static and standalone figures.

Shapes: M maps; V grayordinates / vertices (fsLR32k: 91282, or 59412 cortex only;
fsaverage5: 20484, left hemisphere first).

- :func:`write_dscalar` writes ``.dscalar.nii`` files (ScalarAxis × BrainModelAxis) that
  Connectome Workbench opens next to the HCP S1200 surfaces.
- :func:`write_gifti` writes one ``.func.gii`` per hemisphere on the full meshes (32492 vertices
  for fsLR32k with NaN on the medial wall; 10242 for fsaverage5).
- :func:`write_csv` writes a table.
- :func:`figure_bytes` renders a plotly figure to PNG / SVG / PDF through kaleido with a local
  chromium (never downloading one), or to a standalone HTML file with plotly.js embedded.

Every file is written atomically (temporary file in the target folder, then renamed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from alignment.spaces import (
    N_CORTEX,
    SPACE_SIZES,
    fsaverage5_brain_models,
    fslr32k_brain_models,
    hemisphere_values,
    infer_space,
)

__all__ = [
    "DEFAULT_CHROMIUM",
    "StaticExportUnavailable",
    "figure_bytes",
    "find_chromium",
    "write_csv",
    "write_dscalar",
    "write_gifti",
    "write_label_gifti",
]

DEFAULT_CHROMIUM = "/usr/bin/chromium"
#: environment variables naming a chromium binary, checked in this order
CHROMIUM_ENV = ("ALIGNMENT_CHROMIUM", "BROWSER_PATH")
#: lengths of a map the writers accept: fsLR32k grayordinates, fsLR32k cortex, fsaverage5
_MAP_LENGTHS = (SPACE_SIZES["fsLR32k"], N_CORTEX, SPACE_SIZES["fsaverage5"])


class StaticExportUnavailable(RuntimeError):
    """No chromium for kaleido (PNG / SVG / PDF export); HTML export still works."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _atomic_write(path, write, suffix: str) -> str:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; exports are ordinary files
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_figure(path, fig, fmt: str = "png", **kwargs) -> str:
    """Write a figure as PNG, SVG or standalone HTML (:func:`figure_bytes`) atomically."""
    data = figure_bytes(fig, fmt, **kwargs)
    return _atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), "." + fmt)


def _maps_2d(maps, allowed: Sequence[int], what: str = "maps") -> tuple[np.ndarray, bool]:
    """(M, V) float32 array and whether the input was 1-D."""
    arr = np.asarray(maps)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{what} must be numeric; got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"{what} must have shape (V,) or (M, V); got {arr.shape}")
    one = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.shape[1] not in allowed:
        raise ValueError(
            f"{what} have {arr.shape[1]} values per map; expected "
            f"{' or '.join(str(a) for a in allowed)} (got shape {np.shape(maps)})"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{what} contain no map")
    return arr.astype(np.float32), one


def _names(names, m: int) -> list[str]:
    if names is None:
        return [f"map_{i}" for i in range(m)] if m > 1 else ["map"]
    if isinstance(names, str):
        names = [names]
    names = [str(n) for n in names]
    if len(names) != m:
        raise ValueError(f"{len(names)} names for {m} maps")
    return names


# --------------------------------------------------------------------------------------------
# neuroimaging files
# --------------------------------------------------------------------------------------------
def write_dscalar(path, maps, names=None, brain_models=None) -> str:
    """Write maps as a CIFTI-2 dense scalar file (``.dscalar.nii``).

    Parameters
    ----------
    path : str or PathLike
        Output file; should end with ``.dscalar.nii``.
    maps : array-like, shape (V,) or (M, V)
        V = 91282 (fsLR32k grayordinates), 59412 (fsLR32k cortex only: a cortex-only file) or
        20484 (fsaverage5). Stored as float32; NaN allowed.
    names : sequence of M str, optional
        Map names (ScalarAxis); default ``map`` / ``map_0``, ``map_1``, ...
    brain_models : nibabel BrainModelAxis, optional
        Grayordinates of the columns (e.g. the axis of the subject's own dtseries). Default:
        the HCP fsLR32k axis (:func:`alignment.spaces.fslr32k_brain_models`), its
        59412-vertex cortex part, or the full fsaverage5 meshes.

    Returns
    -------
    str
        The path written.
    """
    import nibabel as nib
    from nibabel.cifti2 import ScalarAxis

    data, _ = _maps_2d(maps, _MAP_LENGTHS if brain_models is None else (len(brain_models),))
    labels = _names(names, data.shape[0])
    if brain_models is None:
        v = data.shape[1]
        if v == SPACE_SIZES["fsaverage5"]:
            brain_models = fsaverage5_brain_models()
        else:
            brain_models = fslr32k_brain_models()
            if v == N_CORTEX:
                brain_models = brain_models[:N_CORTEX]
    img = nib.Cifti2Image(data, header=(ScalarAxis(labels), brain_models))
    img.nifti_header.set_intent("ConnDenseScalar")
    return _atomic_write(path, lambda tmp: nib.save(img, tmp), ".dscalar.nii")


def write_gifti(path_prefix, values, names=None, space: str | None = None) -> list[str]:
    """Write per-hemisphere GIfTI functional files (``.func.gii``).

    Parameters
    ----------
    path_prefix : str or PathLike
        Files ``{path_prefix}.L.func.gii`` and ``{path_prefix}.R.func.gii`` (HCP naming).
    values : array-like, shape (V,) or (M, V)
        V = 91282 or 59412 (fsLR32k: mapped to the 32492-vertex fs_LR meshes through the HCP
        vertex lists, NaN on the medial wall; subcortical values are not written) or 20484
        (fsaverage5: 10242 vertices per hemisphere, left first).
    names : sequence of M str, optional
        Name of every map (data-array metadata ``Name``).
    space : {"fsLR32k", "fsaverage5"}, optional
        Checked against V when given.

    Returns
    -------
    list of str
        ``[left, right]`` paths. Each file holds M float32 data arrays (intent NONE) and names
        its structure (``CortexLeft`` / ``CortexRight``).
    """
    import nibabel as nib
    from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

    data, _ = _maps_2d(values, _MAP_LENGTHS, "values")
    space = infer_space(data.shape[1], space)
    labels = _names(names, data.shape[0])
    left, right = hemisphere_values(data, space)
    prefix = os.fspath(path_prefix)
    for suffix in (".func.gii", ".gii"):
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
    out = []
    for hemi, arr, structure in (("L", left, "CortexLeft"), ("R", right, "CortexRight")):
        darrays = [
            GiftiDataArray(np.ascontiguousarray(row, np.float32), intent="NIFTI_INTENT_NONE",
                           datatype="NIFTI_TYPE_FLOAT32",
                           meta=GiftiMetaData({"Name": name}))
            for row, name in zip(arr, labels)
        ]
        img = GiftiImage(darrays=darrays,
                         meta=GiftiMetaData({"AnatomicalStructurePrimary": structure}))
        path = f"{prefix}.{hemi}.func.gii"
        out.append(_atomic_write(path, lambda tmp, img=img: nib.save(img, tmp), ".func.gii"))
    return out


def write_label_gifti(path_prefix, atlas) -> list[str]:
    """Write an fsaverage5 atlas as per-hemisphere GIfTI label files (``.label.gii``), which
    :func:`alignment.atlases.load_atlas` reads back.

    Parameters
    ----------
    path_prefix : str or PathLike
        Files ``{path_prefix}.L.label.gii`` and ``{path_prefix}.R.label.gii``.
    atlas : alignment.atlases.Atlas
        Space fsaverage5 (``labels`` of shape (20484,)).

    Returns
    -------
    list of str
        ``[left, right]`` paths.
    """
    import nibabel as nib
    from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiLabel, GiftiLabelTable, GiftiMetaData

    if atlas.space != "fsaverage5":
        raise ValueError(f"label GIfTI files are written for fsaverage5 atlases, not {atlas.space}")
    table = GiftiLabelTable()
    for key, name, color in [(0, "???", "#000000")] + [(k, n, atlas.colors[k]) for k, n in atlas.names.items()]:
        rgb = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        label = GiftiLabel(key=key, red=rgb[0], green=rgb[1], blue=rgb[2], alpha=float(key > 0))
        label.label = name
        table.labels.append(label)
    left, right = hemisphere_values(atlas.labels, "fsaverage5", fill=0)
    out = []
    for hemi, arr, structure in (("L", left, "CortexLeft"), ("R", right, "CortexRight")):
        img = GiftiImage(labeltable=table, meta=GiftiMetaData({"AnatomicalStructurePrimary": structure}),
                         darrays=[GiftiDataArray(np.asarray(arr, np.int32), intent="NIFTI_INTENT_LABEL",
                                                 datatype="NIFTI_TYPE_INT32")])
        path = f"{os.fspath(path_prefix)}.{hemi}.label.gii"
        out.append(_atomic_write(path, lambda tmp, img=img: nib.save(img, tmp), ".label.gii"))
    return out


def write_csv(path, dataframe, index: bool = False) -> str:
    """Write a table as UTF-8 CSV (atomically).

    Parameters
    ----------
    dataframe : pandas.DataFrame (or anything ``pandas.DataFrame`` accepts)
    index : bool
        Write the index as a column.

    Returns
    -------
    str
        The path written.
    """
    import pandas as pd

    df = dataframe if isinstance(dataframe, pd.DataFrame) else pd.DataFrame(dataframe)
    return _atomic_write(path, lambda tmp: df.to_csv(tmp, index=index, encoding="utf-8"), ".csv")


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def find_chromium(path: str | None = None) -> str | None:
    """Path of a chromium binary for kaleido, or None.

    Checked in order: ``path`` (when given, only it); the environment variables
    ``ALIGNMENT_CHROMIUM`` and ``BROWSER_PATH``; ``/usr/bin/chromium`` (Debian package
    ``chromium``); ``chromium``, ``chromium-browser``, ``google-chrome`` on the PATH.
    """
    def ok(p):
        return bool(p) and os.path.isfile(p) and os.access(p, os.X_OK)

    if path:  # an explicit path: that one or nothing, no guessing another browser
        return os.fspath(path) if ok(os.fspath(path)) else None
    for cand in [*(os.environ.get(k) for k in CHROMIUM_ENV), DEFAULT_CHROMIUM]:
        if ok(cand):
            return cand
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


_STATIC = ("png", "svg", "pdf", "jpeg", "webp")


def figure_bytes(fig, fmt: str = "png", scale: float = 2, width: int | None = None,
                 height: int | None = None, chromium: str | None = None,
                 timeout: float = 120) -> bytes:
    """Render a plotly figure to bytes.

    Parameters
    ----------
    fig : plotly.graph_objects.Figure or dict
    fmt : {"png", "svg", "html", "pdf", "jpeg", "webp"}
        ``html``: a standalone page with plotly.js embedded (works offline, no browser needed).
        The others go through kaleido 1.x and a local chromium (see :func:`find_chromium`);
        kaleido is given that path directly and MathJax is switched off, so nothing is
        downloaded.
    scale : float
        Pixel density for raster formats (2 = sharp on slides).
    width, height : int, optional
        Size in CSS pixels; default the figure's layout size, else 1000 × 600.
    chromium : str, optional
        Browser binary; default :func:`find_chromium`.
    timeout : float
        Seconds allowed for one render.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        Unknown format or a non-positive scale.
    StaticExportUnavailable
        Static format requested and no chromium found.
    """
    fmt = str(fmt).lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in (*_STATIC, "html"):
        raise ValueError(f"fmt must be one of png, svg, html, pdf, jpeg, webp; got {fmt!r}")
    import plotly.graph_objects as go

    if isinstance(fig, dict):
        fig = go.Figure(fig)
    if fmt == "html":
        html = fig.to_html(include_plotlyjs=True, full_html=True,
                           config={"displaylogo": False, "responsive": True})
        return html.encode("utf-8")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive, got {scale!r}")
    browser = find_chromium(chromium)
    if browser is None:
        where = chromium or DEFAULT_CHROMIUM
        raise StaticExportUnavailable(
            f"static {fmt.upper()} export needs chromium (none at {where}; install the Debian "
            "package `chromium` or set ALIGNMENT_CHROMIUM); HTML export works without it"
        )
    import kaleido

    w = int(width or fig.layout.width or 1000)
    h = int(height or fig.layout.height or 600)
    opts = dict(format=fmt, width=w, height=h, scale=float(scale))
    kopts = dict(path=browser, mathjax=False, timeout=timeout)
    return kaleido.calc_fig_sync(fig, opts=opts, kopts=kopts)
