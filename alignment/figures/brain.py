"""Brain figures: the cortical surface (3D) and the clickable flat map (2D).

:func:`surface_scene` places the hemispheres and gives every vertex one ``uint8`` colour code
(a :class:`SurfaceScene`); the app draws it with WebGL (``ui/surface.js``), the exports with
plotly: :func:`surface_figure` = :func:`scene_figure` of :func:`surface_scene`.

:func:`scene_figure` (3D ``Mesh3d``, one per hemisphere) keeps its JSON small: the colour of
every vertex is one ``uint8`` code into a single composite colorscale (network outline colour,
a grey ramp for sulcal depth, then the data colormap), so nothing is sent per vertex but the
coordinates (uint16, 0.1 mm), the faces (uint16), that code and (optionally) the float32 value
for the hover label; the colourbar with the real value range comes from an invisible helper
trace. Faces that mix data and background vertices are drawn as
background (through a few duplicated boundary vertices) so that interpolating the codes never
runs through unrelated colours. plotly sends numpy arrays as base64 typed arrays, so the dtype,
not rounding, decides the size (and negative integers are avoided: their 0xFF bytes become '/'
in base64, which plotly's JSON escapes as 6 characters). A click on a 3D mesh returns nothing in
Streamlit (DESIGN §8): the clickable view is :func:`flat_map_figure` (2D ``Scattergl``, one
point per cortex vertex, the grayordinate index in ``customdata``).

Meshes, sulcal depth and the grayordinate ↔ vertex maps come from :mod:`alignment.spaces`.

Shapes: V = grayordinates / vertices of a space (91282, 59412 for cortex-only fsLR32k arrays,
or 20484); N = vertices of one hemisphere mesh (32492 or 10242).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

from alignment.conventions import check_choice
from alignment.figures.theme import (
    apply_theme,
    color_limits,
    colorscale,
    colorscale_fn,
    hex_color,
    stepped_colorscale,
)
from alignment.spaces import (
    HEMISPHERES,
    MESH_SIZES,
    N_CORTEX,
    N_GRAYORDINATES,
    SPACE_SIZES,
    SURFACES,
    hemisphere_values,
    infer_space,
    load_mesh,
    sulcal_depth,
    vertex_grayordinates,
)

__all__ = [
    "CAMERAS",
    "SurfaceScene",
    "boundary_mask",
    "flat_map_figure",
    "flat_map_points",
    "scene_figure",
    "surface_figure",
    "surface_scene",
]

#: directions a 3D surface figure can be seen from
CAMERAS = ("lateral", "medial", "dorsal", "ventral", "anterior", "posterior")


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------------------------
# labels and their borders
# --------------------------------------------------------------------------------------------
def boundary_mask(labels, faces) -> np.ndarray:
    """Vertices on a boundary between two different non-zero labels (one side of it).

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Label per mesh vertex; 0 = unlabelled (no border is drawn against it).
    faces : ndarray of int, shape (F, 3)

    Returns
    -------
    ndarray of bool, shape (N,)
        For every mesh edge joining labels a ≠ b (both > 0), the vertex with the larger label
        is marked, which draws a line one vertex wide.
    """
    labels = np.asarray(labels)
    faces = np.asarray(faces)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    la, lb = labels[e[:, 0]], labels[e[:, 1]]
    m = (la != lb) & (la > 0) & (lb > 0)
    out = np.zeros(len(labels), bool)
    out[np.where(la[m] > lb[m], e[m, 0], e[m, 1])] = True
    return out


def _labels_of(obj, n_expected: int, what: str) -> tuple[np.ndarray, dict[int, str]]:
    """(labels (V,), names) from an Atlas-like object, a (labels, names) pair or an array."""
    names: dict[int, str] = {}
    if hasattr(obj, "labels") and not isinstance(obj, np.ndarray):
        labels, names = obj.labels, dict(getattr(obj, "names", {}) or {})
    elif isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], Mapping):
        labels, names = obj
    else:
        labels = obj
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"{what} must be a 1-D int array (or an Atlas); got {labels.dtype} "
                         f"{labels.shape}")
    cortex_only = n_expected == N_GRAYORDINATES and labels.shape[0] == N_CORTEX
    if labels.shape[0] != n_expected and not cortex_only:
        raise ValueError(f"{what} have {labels.shape[0]} entries; the values have {n_expected}")
    return labels.astype(np.int64), {int(k): str(v) for k, v in names.items()}


# --------------------------------------------------------------------------------------------
# colour codes of the 3D surface
# --------------------------------------------------------------------------------------------
# composite uint8 code layout of surface_figure: each segment has a guard code of the same
# colour on either side, so that neither texture sampling nor the colormap quantisation of
# plotly's WebGL mesh (256 shades, rounded stop positions) mixes two segments.
_OUTLINE_CODE = 1  # codes 0..2: outline colour
_GREY_LO, _GREY_HI = 4, 35  # 32 grey levels, guards 3 and 36
_DATA_LO, _DATA_HI = 39, 253  # 215 data levels, guards 38 and 254..255
_GREY_LIGHT, _GREY_DARK = 0.82, 0.42
_COORD_PER_MM = 10  # surface_figure coordinates: int16 in 0.1 mm
_BG_FLAT = 0.70  # background grey without sulcal depth


def _sulc_grey(sulc: np.ndarray | None, n: int) -> np.ndarray:
    """Grey level in [0, 1] per vertex (0 = light gyri, 1 = dark sulci)."""
    if sulc is None:
        return np.full(n, (_GREY_LIGHT - _BG_FLAT) / (_GREY_LIGHT - _GREY_DARK))
    s = np.asarray(sulc, float)
    scale = float(np.percentile(np.abs(s[s != 0]), 95)) if np.any(s != 0) else 1.0
    return np.clip(0.5 + 0.5 * s / (scale or 1.0), 0, 1)


def _composite_colorscale(scale: list[list], outline_color: str) -> list[list]:
    f = colorscale_fn(scale)
    out = [[0.0, outline_color], [2 / 255, outline_color]]
    g_light = hex_color([_GREY_LIGHT] * 3)
    g_dark = hex_color([_GREY_DARK] * 3)
    out += [[3 / 255, g_light], [_GREY_LO / 255, g_light], [_GREY_HI / 255, g_dark],
            [(_GREY_HI + 1) / 255, g_dark]]
    out.append([(_DATA_LO - 1) / 255, hex_color(f(0.0))])
    for t in np.linspace(0, 1, 33):
        out.append([(_DATA_LO + t * (_DATA_HI - _DATA_LO)) / 255, hex_color(f(t))])
    out.append([1.0, hex_color(f(1.0))])
    return [[round(p, 6), c] for p, c in out]


def _code_kind(codes: np.ndarray) -> np.ndarray:
    """0 outline, 1 background, 2 data: the segment of each colour code."""
    return np.where(codes < _GREY_LO - 1, 0, np.where(codes <= _GREY_HI + 1, 1, 2)).astype(np.int8)


def _grey_codes(grey01: np.ndarray) -> np.ndarray:
    return (_GREY_LO + np.round(grey01 * (_GREY_HI - _GREY_LO))).astype(np.uint8)


def _data_codes(v: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    t = np.clip((v - vmin) / (vmax - vmin), 0, 1)
    t = np.where(np.isfinite(t), t, 0)
    return (_DATA_LO + np.round(t * (_DATA_HI - _DATA_LO))).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# 3D surfaces
# --------------------------------------------------------------------------------------------
def _rot180z(c: np.ndarray) -> np.ndarray:
    out = c.copy()
    out[:, 0] *= -1
    out[:, 1] *= -1
    return out


def _arrange(coords: dict[str, np.ndarray], used: dict[str, np.ndarray], surface: str,
             camera: str, gap: float) -> tuple[dict[str, np.ndarray], dict]:
    """Place the hemispheres side by side for a view; returns coords and a plotly camera."""
    out = {}
    if surface == "flat":
        for h, c in coords.items():
            c = c.copy()
            u = c[used[h]]
            c[:, 1] -= (u[:, 1].min() + u[:, 1].max()) / 2
            c[:, 0] -= (u[:, 0].max() + gap / 2) if h == "left" else (u[:, 0].min() - gap / 2)
            out[h] = c
        cam = dict(eye=dict(x=0, y=0, z=1.6), up=dict(x=0, y=1, z=0), center=dict(x=0, y=0, z=0))
        return out, cam
    if camera in ("lateral", "medial"):
        rotate = "right" if camera == "lateral" else "left"
        for h, c in coords.items():
            c = _rot180z(c) if h == rotate else c.copy()
            u = c[used[h]]
            c[:, 0] -= (u[:, 0].min() + u[:, 0].max()) / 2
            # camera at -x: screen right is -y, so the left hemisphere gets the larger y
            c[:, 1] -= (u[:, 1].min() - gap / 2) if h == "left" else (u[:, 1].max() + gap / 2)
            out[h] = c
        if len(coords) == 1:
            (h, c), = out.items()
            c[:, 1] -= (c[used[h], 1].min() + c[used[h], 1].max()) / 2
        cam = dict(eye=dict(x=-1.6, y=0, z=0), up=dict(x=0, y=0, z=1))
        return out, cam
    for h, c in coords.items():
        c = c.copy()
        u = c[used[h]]
        if len(coords) == 2:
            c[:, 0] -= (u[:, 0].max() + gap / 2) if h == "left" else (u[:, 0].min() - gap / 2)
        out[h] = c
    eyes = {"dorsal": ((0, 0, 1.6), (0, 1, 0)), "ventral": ((0, 0, -1.6), (0, 1, 0)),
            "anterior": ((0, 1.6, 0), (0, 0, 1)), "posterior": ((0, -1.6, 0), (0, 0, 1))}
    (ex, ey, ez), (ux, uy, uz) = eyes[camera]
    cam = dict(eye=dict(x=ex, y=ey, z=ez), up=dict(x=ux, y=uy, z=uz))
    return out, cam


def _hemis(hemispheres) -> tuple[str, ...]:
    if isinstance(hemispheres, str):
        hemispheres = ("left", "right") if hemispheres in ("both", "lr") else (hemispheres,)
    hs = tuple(hemispheres)
    if not hs or any(h not in HEMISPHERES for h in hs) or len(set(hs)) != len(hs):
        raise ValueError(
            f"hemispheres must be a non-empty subset of {HEMISPHERES}; got {hemispheres!r}")
    return tuple(h for h in HEMISPHERES if h in hs)


def _prepare_values(values, space):
    """(space, n_values, {hemi: values on the mesh}) with NaN where no data."""
    if values is None:
        space = space or "fsLR32k"
        check_choice("space", space, SPACE_SIZES)
        n = SPACE_SIZES[space]
        return space, n, {h: np.full(MESH_SIZES[space], np.nan) for h in HEMISPHERES}
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-D (one value per grayordinate/vertex); got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"values must be numeric, got dtype {arr.dtype}")
    space = infer_space(arr.shape[0], space)
    left, right = hemisphere_values(arr.astype(np.float64), space)
    return space, arr.shape[0], {"left": left, "right": right}


def _data_mask(v: np.ndarray, threshold) -> np.ndarray:
    m = np.isfinite(v)
    if threshold is not None:
        thr = float(threshold)
        with np.errstate(invalid="ignore"):
            m &= np.abs(v) >= thr
    return m


@dataclass(frozen=True, eq=False)
class SurfaceScene:
    """A cortical map ready to draw: the placed hemispheres and one colour code per vertex.

    Built by :func:`surface_scene`; drawn by :func:`scene_figure` (plotly, for exports) and by the
    app's WebGL view. Per hemisphere h (N = its mesh vertices, F = faces):

    - ``xyz[h]`` uint16 (N, 3): position as placed for the view (hemispheres moved apart, one
      rotated for lateral/medial) = ``xyz`` × ``unit_mm`` + ``origin_mm``;
    - ``faces[h]`` int64 (F, 3);
    - ``codes[h]`` uint8 (N,): index into ``composite`` (outline colour, sulcal grey ramp, then
      the data colormap from ``vmin`` to ``vmax``);
    - ``background[h]`` uint8 (N,): the code the vertex has without data (grey, or the
      outline's);
    - ``values[h]`` float32 (N,): the value shown on hover (rounded to ``decimals``), or no
      entry when hover is off.

    ``view`` is the camera in plotly's terms (``eye``, ``up``, orthographic), ``aspect`` the
    scene's aspect ratio (x, y, z) that fits the brain into ``height`` × ``width``.
    """

    space: str
    surface: str
    camera: str
    hemispheres: tuple[str, ...]
    xyz: dict
    faces: dict
    codes: dict
    background: dict
    values: dict
    composite: list
    scale: list
    vmin: float
    vmax: float
    has_data: bool
    view: dict
    aspect: tuple[float, float, float]
    title: str
    colorbar_title: str
    decimals: int
    height: int
    width: int | None
    unit_mm: float
    origin_mm: tuple[float, float, float]

    @property
    def colorbar_decimals(self) -> int:
        """Digits of the colour bar's tick labels (trailing zeros dropped)."""
        return min(self.decimals, 3)


def surface_scene(
    values=None,
    surface: str = "inflated",
    hemispheres: Sequence[str] | str = ("left", "right"),
    cmap="RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
    symmetric: bool = True,
    threshold: float | None = None,
    title: str = "",
    outlines=None,
    bg: str | None = "sulc",
    decimals: int = 3,
    camera: str = "lateral",
    *,
    space: str | None = None,
    colorbar_title: str = "",
    outline_color: str = "#262626",
    hover: bool = True,
    zoom: float | None = None,
    height: int = 420,
    width: int | None = None,
) -> SurfaceScene:
    """A cortical map on both hemispheres, side by side, as a :class:`SurfaceScene`.

    Parameters
    ----------
    values : array-like, shape (V,), optional
        V = 91282 or 59412 (fsLR32k grayordinates / cortex) or 20484 (fsaverage5). NaN (and
        ``|value| < threshold``) shows the background. None: anatomy only.
    surface : str
        ``inflated`` (default), ``very_inflated`` (fsLR32k only), ``flat``, ``midthickness``
        (fsLR32k), ``pial``, ``white``, ``sphere``.
    hemispheres : sequence of {"left", "right"}
    cmap : str or plotly colorscale
        matplotlib colormap name (default ``RdBu_r``) or a plotly ``[[pos, colour], ...]`` list.
    vmin, vmax : float, optional
        Colour limits; default from the finite values (``±max|v|`` when ``symmetric``).
    symmetric : bool
        Limits symmetric around 0.
    threshold : float, optional
        Values with ``|v| < threshold`` show the background.
    title : str
    outlines : array of int, shape (V,) or Atlas-like, optional
        Labels (e.g. networks, 0 = none); vertices on a border between two labels are drawn in
        ``outline_color``.
    bg : {"sulc", None}
        Background: sulcal depth in greys (sulci dark), or flat grey.
    decimals : int
        Digits of the values shown on hover and stored (values are float32).
    camera : {"lateral", "medial", "dorsal", "ventral", "anterior", "posterior"}
        ``lateral`` / ``medial`` rotate one hemisphere by 180° so both show that side (left
        hemisphere on the left). Flat surfaces are always seen from above.
    space : {"fsLR32k", "fsaverage5"}, optional
        Inferred from the length of ``values``.
    hover : bool
        Keep per-vertex values for the hover label (float32, about 0.13 MB per fsLR32k
        hemisphere); off makes the figure smaller.
    zoom : float, optional
        Size of the brain in the scene (the aspect ratio of the data times ``zoom``; the
        orthographic camera ignores the eye distance). Default: fit the view into a plot of
        ``height`` and ``width`` (or about 1.8 × ``height`` wide when ``width`` is None).
    """
    hemis = _hemis(hemispheres)
    hover = bool(hover) and values is not None  # nothing to show on bare anatomy
    space, n_values, vals = _prepare_values(values, space)
    check_choice("surface", surface, SURFACES[space])
    check_choice("camera", camera, CAMERAS)
    check_choice("bg", bg, ("sulc", None))
    decimals = int(decimals)
    scale = colorscale(cmap)
    shown = np.concatenate([vals[h] for h in hemis])
    if threshold is not None and not np.isfinite(float(threshold)):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    vmin, vmax = color_limits(shown, vmin, vmax, symmetric)

    outline_lab = None
    if outlines is not None:
        lab, _ = _labels_of(outlines, n_values, "outlines")
        outline_lab = dict(zip(HEMISPHERES, hemisphere_values(lab, space, fill=0)))

    meshes = {h: load_mesh(surface, h, space) for h in hemis}
    used = {}
    for h, m in meshes.items():
        u = np.zeros(len(m.coords), bool)
        u[m.faces.ravel()] = True
        used[h] = u
    placed, cam = _arrange({h: m.coords for h, m in meshes.items()}, used, surface, camera,
                           gap=20.0 if surface == "flat" else 8.0)
    for h in hemis:  # vertices in no face (flat-map cuts) must not stretch the scene's box
        if not used[h].all():
            placed[h][~used[h]] = placed[h][np.flatnonzero(used[h])[0]]

    origin = np.floor(np.min([placed[h].min(axis=0) for h in hemis], axis=0) * _COORD_PER_MM)
    if np.max([placed[h].max(axis=0) for h in hemis]) * _COORD_PER_MM - origin.min() > 65535:
        raise ValueError("mesh too large for 0.1 mm uint16 coordinates")  # pragma: no cover
    unit = 1.0 / _COORD_PER_MM

    xyz, faces, codes, background, hover_values = {}, {}, {}, {}, {}
    for h in hemis:
        n = len(meshes[h].coords)
        v = vals[h]
        data = _data_mask(v, threshold)
        grey = _grey_codes(_sulc_grey(sulcal_depth(h, space) if bg == "sulc" else None, n))
        code = np.where(data, _data_codes(v, vmin, vmax), grey).astype(np.uint8)
        if outline_lab is not None:
            topo = load_mesh("sphere" if surface == "flat" else surface, h, space).faces
            border = boundary_mask(outline_lab[h].astype(np.int64), topo)
            code[border] = _OUTLINE_CODE
            grey = np.where(border, _OUTLINE_CODE, grey).astype(np.uint8)
        # uint16 in 0.1 mm from a common origin: half the bytes of float32, invisible on
        # screen, and no negative numbers, whose 0xFF bytes turn into '/' in base64, which
        # plotly's JSON writes as the 6-character escape \u002f
        xyz[h] = (np.round(placed[h] * _COORD_PER_MM) - origin).astype(np.uint16)
        faces[h] = meshes[h].faces.astype(np.int64)
        codes[h], background[h] = code, grey
        if hover:
            hover_values[h] = np.round(v, decimals).astype(np.float32)

    # aspectmode "data" draws small under an orthographic camera: scale the true aspect ratio
    allxyz = np.concatenate([placed[h][used[h]] for h in hemis])
    extent = np.ptp(allxyz, axis=0)
    extent = np.where(extent > 0, extent, 1e-3 * extent.max())
    ratio = extent / extent.max()
    if zoom is None:
        # measured (plotly 7 / kaleido): under the orthographic camera one aspect-ratio unit
        # spans 0.46 × the figure height in pixels, whatever the width
        screen_axes = {"lateral": (1, 2), "medial": (1, 2), "dorsal": (0, 1), "ventral": (0, 1),
                       "anterior": (0, 2), "posterior": (0, 2)}
        h_ax, v_ax = screen_axes[camera if surface != "flat" else "dorsal"]
        aspect = (width / height) if width else 1.8
        plot_h = (height - 10 - (40 if title else 10)) / height  # share left by the margins
        zoom = min(0.9 * plot_h / 0.46 / ratio[v_ax], 0.8 * aspect / 0.46 / ratio[h_ax])
    ratio = ratio * float(zoom)
    return SurfaceScene(
        space=space, surface=surface, camera=camera, hemispheres=hemis, xyz=xyz, faces=faces,
        codes=codes, background=background, values=hover_values,
        composite=_composite_colorscale(scale, outline_color), scale=scale, vmin=vmin, vmax=vmax,
        has_data=bool(np.isfinite(shown).any()), view=cam, aspect=tuple(ratio), title=title,
        colorbar_title=colorbar_title, decimals=decimals, height=int(height), width=width, unit_mm=unit,
        origin_mm=tuple(float(x) for x in origin * unit))


def scene_figure(scene: SurfaceScene):
    """The plotly figure of a :class:`SurfaceScene` (what the exports write).

    Returns
    -------
    plotly.graph_objects.Figure
        Traces: one ``Mesh3d`` per hemisphere (``name`` = hemisphere, ``meta`` =
        ``{"hemisphere", "n_mesh_vertices", "space", "surface", "coord_unit_mm",
        "coord_origin_mm"}``; its first ``n_mesh_vertices`` vertices are the mesh's, the rest
        duplicates of boundary vertices), then an invisible ``Scatter3d`` carrying the
        colourbar. x/y/z are uint16: position (mm, as placed for the view: hemispheres moved
        apart, one rotated for lateral/medial) = value × ``coord_unit_mm`` (0.1) +
        ``coord_origin_mm``; anything added to the scene must use the same units.
    """
    import plotly.graph_objects as go

    origin = list(scene.origin_mm)
    traces = []
    for h in scene.hemispheres:
        xyz, code, n = scene.xyz[h], scene.codes[h], len(scene.xyz[h])
        kind = _code_kind(code)
        # faces take the lowest kind of their vertices; corners of a higher kind get a
        # duplicate vertex with the face's code, so no face interpolates across segments
        corner = scene.faces[h].ravel()
        fc = np.repeat(kind[scene.faces[h]].min(axis=1), 3)
        need = kind[corner] > fc
        uniq, inv = np.unique(corner[need] * 3 + fc[need], return_inverse=True)
        dup_v, dup_c = uniq // 3, uniq % 3
        corner = corner.copy()
        corner[need] = n + inv
        faces = corner.reshape(-1, 3)
        dup_code = np.where(dup_c == 0, _OUTLINE_CODE, scene.background[h][dup_v]).astype(np.uint8)
        xyz = np.concatenate([xyz, xyz[dup_v]])
        fdtype = np.uint16 if len(xyz) <= np.iinfo(np.uint16).max else np.int32
        kw: dict[str, Any] = {}
        if h in scene.values:
            v = scene.values[h]
            kw.update(customdata=np.concatenate([v, v[dup_v]]),
                      hovertemplate=f"%{{customdata:.{scene.decimals}f}}<extra>{h}</extra>")
        else:
            kw.update(hoverinfo="skip")
        traces.append(go.Mesh3d(
            x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2],
            i=faces[:, 0].astype(fdtype), j=faces[:, 1].astype(fdtype),
            k=faces[:, 2].astype(fdtype),
            intensity=np.concatenate([code, dup_code]), intensitymode="vertex",
            colorscale=scene.composite, cmin=0, cmax=255,
            showscale=False, name=h, showlegend=False, flatshading=False,
            lighting=dict(ambient=0.8, diffuse=0.5, specular=0.0, roughness=1.0, fresnel=0.0),
            meta=dict(hemisphere=h, n_mesh_vertices=n, space=scene.space, surface=scene.surface,
                      coord_unit_mm=scene.unit_mm, coord_origin_mm=origin),
            **kw,
        ))
    traces.append(go.Scatter3d(
        x=[None], y=[None], z=[None], mode="markers", hoverinfo="skip", showlegend=False,
        name="colorbar",
        marker=dict(size=0.1, color=[scene.vmin], cmin=scene.vmin, cmax=scene.vmax, colorscale=scene.scale,
                    showscale=scene.has_data,
                    colorbar=dict(title=dict(text=scene.colorbar_title), thickness=14, len=0.7,
                                  tickformat=f".{scene.colorbar_decimals}~f")),
    ))
    fig = go.Figure(traces)
    axis = dict(visible=False, showspikes=False)
    x, y, z = scene.aspect
    fig.update_layout(
        title=dict(text=scene.title),
        scene=dict(xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="manual",
                   aspectratio=dict(x=x, y=y, z=z), bgcolor="white",
                   camera=dict(**scene.view, projection=dict(type="orthographic")),
                   dragmode="orbit" if scene.surface != "flat" else "pan"),
        margin=dict(l=0, r=0, t=40 if scene.title else 10, b=0),
        height=scene.height, width=scene.width,
        meta=dict(space=scene.space, surface=scene.surface, vmin=scene.vmin, vmax=scene.vmax,
                  camera=scene.camera, coord_unit_mm=scene.unit_mm, coord_origin_mm=origin),
    )
    return apply_theme(fig)


def surface_figure(values=None, *args, **kwargs):
    """3D cortical surface map (one ``Mesh3d`` per hemisphere, side by side):
    ``scene_figure(surface_scene(values, ...))``; the parameters are :func:`surface_scene`'s and
    the figure is described in :func:`scene_figure`."""
    return scene_figure(surface_scene(values, *args, **kwargs))


# --------------------------------------------------------------------------------------------
# 2D clickable flat map
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _flat_points(space: str, hemisphere: str):
    """(grayordinate (P,), vertex (P,), xy (P, 2)) of the flat-map points of a hemisphere."""
    mesh = load_mesh("flat", hemisphere, space)
    used = np.zeros(len(mesh.coords), bool)
    used[mesh.faces.ravel()] = True
    g_of_v = vertex_grayordinates(space, hemisphere)
    vert = np.flatnonzero((g_of_v >= 0) & used)
    g = g_of_v[vert]
    order = np.argsort(g)
    vert, g = vert[order], g[order]
    return (_readonly(g), _readonly(vert),
            _readonly(np.ascontiguousarray(mesh.coords[vert, :2], np.float32)))


def flat_map_points(space: str = "fsLR32k", hemispheres=("left", "right"), gap: float = 20.0):
    """Points of the 2D flat map, as :func:`flat_map_figure` places them.

    Cortex vertices cut out of the flat maps (fs_LR: 4 left, 29 right; they are in no face)
    are dropped.

    Returns
    -------
    grayordinate : ndarray of int64, shape (P,)
        fsLR32k: 0..59411; fsaverage5: 0..20483.
    xy : ndarray of float32, shape (P, 2)
        Position (mm); the left hemisphere at negative x, the right at positive x; y >= 0.
    offsets : dict
        hemisphere → (dx, dy) added to the flat mesh's (x, y).
    """
    hemis = _hemis(hemispheres)
    check_choice("space", space, SPACE_SIZES)
    pts = {h: _flat_points(space, h) for h in hemis}
    # hemispheres centred on the same height, y >= 0 (see surface_figure on negative numbers)
    half = max((xy[:, 1].max() - xy[:, 1].min()) / 2 for _, _, xy in pts.values())
    gs, xys, offsets = [], [], {}
    for h in hemis:
        g, _, xy = pts[h]
        dy = half - (xy[:, 1].min() + xy[:, 1].max()) / 2
        dx = -(xy[:, 0].max() + gap / 2) if h == "left" else -(xy[:, 0].min() - gap / 2)
        dx, dy = float(np.float32(dx)), float(np.float32(dy))
        offsets[h] = (dx, dy)
        gs.append(g)
        xys.append(xy + np.array([dx, dy], np.float32))
    return np.concatenate(gs), np.concatenate(xys).astype(np.float32), offsets


def flat_map_figure(
    values=None,
    cmap="RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
    symmetric: bool = True,
    threshold: float | None = None,
    title: str = "",
    selected=None,
    outlines=None,
    networks=None,
    *,
    hemispheres: Sequence[str] | str = ("left", "right"),
    space: str | None = None,
    bg: str | None = "sulc",
    decimals: int = 3,
    dragmode: str = "zoom",
    marker_size: float = 3.0,
    colorbar_title: str = "",
    value_label: str = "value",
    outline_color: str = "#262626",
    height: int = 460,
    width: int | None = None,
):
    """Clickable 2D flat map: one ``Scattergl`` point per cortex vertex.

    Parameters
    ----------
    values : array-like, shape (V,), optional
        V = 91282 / 59412 (fsLR32k) or 20484 (fsaverage5). NaN and ``|v| < threshold`` show
        the sulcal-depth background (those points stay clickable).
    cmap, vmin, vmax, symmetric, threshold, title, decimals, bg
        As in :func:`surface_figure`.
    selected : int or sequence of int, optional
        Grayordinate(s) to highlight with a ring (a layout shape of fixed pixel size, so it is
        never hovered or selected); indices that are not on the flat map (subcortex, the cut
        vertices) are skipped (``layout.meta["selected_shown"]`` lists the ones drawn).
    outlines : array of int, shape (V,) or Atlas-like, optional
        Labels whose borders are drawn: the border points take ``outline_color`` (they stay
        clickable, with their own traces, ``meta["kind"] == "outline"``).
    networks : Atlas-like (``.labels`` (V,), ``.names``) or (labels, names), optional
        Network of every point for the hover label; the points are grouped into one trace pair
        (data, background) per network, named after it.
    dragmode : {"zoom", "pan", "lasso", "select"}
        ``lasso`` / ``select`` start in box/lasso selection.
    marker_size : float
        Point diameter in px.

    Returns
    -------
    plotly.graph_objects.Figure
        Every point's ``customdata`` is its grayordinate index (fsLR32k: 0..59411), so a click
        or a selection maps back to a voxel; each flat-map vertex is in exactly one trace
        (``meta = {"kind": "background" | "data" | "outline", "network": name}``). x/y are
        int16 in units of ``layout.meta["coord_unit_mm"]`` = 0.1 mm, left hemisphere at
        negative x, y >= 0: (x, y) × 0.1 = the flat mesh's (x, y) +
        ``layout.meta["offsets"][hemisphere]`` (mm; see :func:`flat_map_points`).
    """
    import plotly.graph_objects as go

    hemis = _hemis(hemispheres)
    space, n_values, vals = _prepare_values(values, space)
    check_choice("dragmode", dragmode, ("zoom", "pan", "lasso", "select"))
    check_choice("bg", bg, ("sulc", None))
    decimals = int(decimals)
    scale = colorscale(cmap)
    shown = np.concatenate([vals[h] for h in hemis])
    vmin, vmax = color_limits(shown, vmin, vmax, symmetric)

    g, xy_mm, offsets = flat_map_points(space, hemis)
    # int16 in 0.1 mm (half the bytes of float32); the figure's x/y unit is 0.1 mm
    xy = np.round(xy_mm * _COORD_PER_MM).astype(np.int16)
    # values, sulc, labels per point (grayordinate order within hemisphere)
    v = np.empty(len(g))
    grey = np.empty(len(g))
    start = 0
    for h in hemis:
        gh, vert, _ = _flat_points(space, h)
        sl = slice(start, start + len(gh))
        v[sl] = vals[h][vert]
        s = sulcal_depth(h, space) if bg == "sulc" else None
        grey[sl] = _sulc_grey(s, len(sulcal_depth(h, space)))[vert]
        start += len(gh)
    data = _data_mask(v, threshold)

    net = np.zeros(len(g), np.int64)
    names: dict[int, str] = {}
    if networks is not None:
        lab, names = _labels_of(networks, n_values, "networks")
        net = lab[g]
    gtype = np.uint16 if g.max(initial=0) <= np.iinfo(np.uint16).max else np.int32
    fmt = f".{decimals}f"
    grey_scale = stepped_colorscale([[0, hex_color([_GREY_LIGHT] * 3)], [1, hex_color([_GREY_DARK] * 3)]], 32)

    border = np.zeros(len(g), bool)
    if outlines is not None:
        lab, _ = _labels_of(outlines, n_values, "outlines")
        lab_h = dict(zip(HEMISPHERES, hemisphere_values(lab, space, fill=0)))
        parts = []
        for h in hemis:
            topo = load_mesh("sphere", h, space).faces  # full topology (the flat map is cut)
            parts.append(boundary_mask(lab_h[h].astype(np.int64), topo)[_flat_points(space, h)[1]])
        border = np.concatenate(parts)

    # every point is in exactly one trace (a selection never returns a grayordinate twice):
    # background, data, then border points drawn in the outline colour
    traces = []
    groups = np.unique(net)
    for kind in ("background", "data", "outline"):
        for k in groups:
            if kind == "outline":
                m = (net == k) & border
            else:
                m = (net == k) & ~border & (data if kind == "data" else ~data)
            if not m.any():
                continue
            name = names.get(int(k), "") if k > 0 else ("" if not names else "unlabelled")
            head = f"<b>{name}</b><br>" if name else ""
            common = dict(x=xy[m, 0], y=xy[m, 1], customdata=g[m].astype(gtype), mode="markers",
                          name=name or kind, showlegend=False,
                          meta=dict(kind=kind, network=name))
            tail = "<br>grayordinate %{customdata}<extra></extra>"
            if kind == "data":
                traces.append(go.Scattergl(
                    **common,
                    marker=dict(color=np.round(v[m], decimals).astype(np.float32),
                                coloraxis="coloraxis", size=marker_size),
                    hovertemplate=f"{head}{value_label} %{{marker.color:{fmt}}}{tail}",
                ))
            elif kind == "background":
                vv = v[m]
                what = "no data" if not np.isfinite(vv).any() else (
                    "below threshold" if np.isfinite(vv).all() else "no data / below threshold")
                traces.append(go.Scattergl(
                    **common,
                    # float32, not uint8: WebGL scatter reads a Uint8Array colour as packed RGBA
                    marker=dict(color=grey[m].astype(np.float32), cmin=0, cmax=1,
                                colorscale=grey_scale, showscale=False, size=marker_size),
                    hovertemplate=f"{head}{what}{tail}",
                ))
            else:
                traces.append(go.Scattergl(
                    **common, marker=dict(color=outline_color, size=marker_size),
                    hovertemplate=f"{head}border{tail}",
                ))
    shown_sel: list[int] = []
    shapes = []
    if selected is not None:
        sel = np.atleast_1d(np.asarray(selected))
        if sel.size and not np.issubdtype(sel.dtype, np.integer):
            raise ValueError(f"selected must be grayordinate indices (int); got {sel.dtype}")
        if sel.size and (sel.min() < 0 or sel.max() >= n_values):
            raise ValueError(
                f"selected grayordinates must be in 0..{n_values - 1}; got {sel.tolist()}")
        pos = {int(x): i for i, x in enumerate(g)}
        idx = [pos[int(s)] for s in sel.ravel() if int(s) in pos]
        shown_sel = [int(g[i]) for i in idx]
        # a ring of fixed pixel size: a layout shape, so it is neither hovered nor selected
        r = max(2.5 * marker_size, 7)
        for i in idx:
            shapes.append(dict(type="circle", xref="x", yref="y", xsizemode="pixel",
                               ysizemode="pixel", xanchor=int(xy[i, 0]), yanchor=int(xy[i, 1]),
                               x0=-r, x1=r, y0=-r, y1=r, line=dict(color="#000000", width=2.5),
                               fillcolor="rgba(0,0,0,0)", layer="above"))
    fig = go.Figure(traces)
    fig.update_layout(
        title=dict(text=title),
        xaxis=dict(visible=False, showgrid=False, zeroline=False),
        yaxis=dict(visible=False, showgrid=False, zeroline=False, scaleanchor="x", scaleratio=1),
        coloraxis=dict(colorscale=stepped_colorscale(scale, 256), cmin=vmin, cmax=vmax,
                       showscale=bool(data.any()),
                       colorbar=dict(title=dict(text=colorbar_title), thickness=14, len=0.7,
                                     tickformat=f".{min(decimals, 3)}~f")),
        dragmode=dragmode, hovermode="closest", clickmode="event+select",
        plot_bgcolor="white", paper_bgcolor="white",
        margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        height=height, width=width,
        shapes=shapes,
        meta=dict(space=space, vmin=vmin, vmax=vmax, offsets=offsets, selected_shown=shown_sel,
                  coord_unit_mm=1.0 / _COORD_PER_MM),
    )
    return apply_theme(fig)
