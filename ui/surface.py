"""The cortical surface in the browser: a WebGL view of a :func:`alignment.figures.surface_figure`.

plotly's ``mesh3d`` rebuilds its whole mesh on any change, so a new layer took as long to draw as
a new figure. Here the figure is drawn by a small WebGL component (``surface.js``) from two
elements:

- the **mesh** (hemispheres' placed coordinates and faces, about 1.2 MB for fsLR32k): identical
  bytes for every map on the same surface and camera, so Streamlit's message cache sends the
  browser a reference, not the bytes, once it holds them; one per page run and geometry;
- the **view** (per vertex: one uint8 colour code and the float32 hover value; the 256-colour
  table, title, colour bar, camera; about 0.33 MB): a new map sends only this.

The figure stays the one description of the map: the view reads it (the first
``n_mesh_vertices`` vertices of each ``Mesh3d`` and their codes; the hemisphere's faces from the
mesh store), and exports keep the plotly figure. The view orbits (drag), zooms (wheel), pans
(shift-drag, or drag on a flat map), resets (double click) and shows the value under the pointer.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import streamlit as st

__all__ = ["is_surface_figure", "show_surface", "surface_payloads", "unpack_payload"]

_JS = Path(__file__).with_name("surface.js")
_CSS = """
.surface { position: relative; font-family: var(--surface-font); color: var(--surface-color); }
.surface canvas.gl { position: absolute; left: 0; cursor: grab; }
.surface canvas.gl:active { cursor: grabbing; }
.surface .title { position: absolute; left: 1%; top: 6px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; max-width: 98%; }
.surface canvas.colorbar { position: absolute; right: 0; }
.surface .hover { position: absolute; pointer-events: none; display: none; padding: 2px 6px;
  background: rgba(255,255,255,0.92); border: 1px solid #999; border-radius: 3px; white-space: nowrap; }
.surface .reset { position: absolute; right: 4px; top: 4px; border: 1px solid #ccc; background: white;
  border-radius: 3px; cursor: pointer; font-size: 12px; padding: 1px 6px; color: #555; }
.surface .nogl { padding: 1em; }
"""
_DTYPES = {np.dtype(np.uint8): "u1", np.dtype(np.uint16): "u2", np.dtype(np.uint32): "u4",
           np.dtype(np.float32): "f4"}


def is_surface_figure(fig) -> bool:
    """Whether a plotly figure is a :func:`~alignment.figures.surface_figure` (its layout meta
    names the space and it holds ``Mesh3d`` traces)."""
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    return "space" in meta and any(t.type == "mesh3d" for t in fig.data)


def _pack(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """``uint32 header length | header JSON | arrays``, each array at a multiple of 4 bytes from
    the start of the arrays; the header's ``arrays`` gives name → [offset, dtype, length]."""
    blobs, index, offset = [], {}, 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        index[name] = [offset, _DTYPES[a.dtype], int(a.size)]
        pad = -len(b) % 4
        blobs.append(b + b"\0" * pad)
        offset += len(b) + pad
    head = json.dumps({**header, "arrays": index}, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 4)
    return len(head).to_bytes(4, "little") + head + b"".join(blobs)


def unpack_payload(payload: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a payload: the inverse of :func:`_pack`, as ``surface.js`` reads it."""
    n = int.from_bytes(payload[:4], "little")
    header = json.loads(payload[4:4 + n])
    start = 4 + n
    names = {v: k for k, v in _DTYPES.items()}
    arrays = {name: np.frombuffer(payload, names[dtype].newbyteorder("<"), length, start + offset)
              for name, (offset, dtype, length) in header.pop("arrays").items()}
    return header, arrays


@lru_cache(maxsize=8)
def _faces(surface: str, hemisphere: str, space: str) -> np.ndarray:
    from alignment.spaces import load_mesh

    faces = load_mesh(surface, hemisphere, space).faces
    return faces.astype(np.uint16 if faces.max() <= np.iinfo(np.uint16).max else np.uint32)


def _color_table(scale) -> np.ndarray:
    """(256, 3) uint8: the colour plotly gives intensity k of a colorscale on [0, 255]."""
    from alignment.figures.theme import colorscale_fn

    rgb = colorscale_fn([list(s) for s in scale])(np.arange(256) / 255.0)
    return np.round(np.clip(rgb.T, 0, 1) * 255).astype(np.uint8)


def _digits(fmt: str | None, default: int = 3) -> int:
    """Decimals of a d3 number format such as ``.3~f`` or ``%{customdata:.2f}``."""
    found = re.search(r"\.(\d+)~?f", fmt or "")
    return int(found.group(1)) if found else default


def _font(fig) -> dict:
    tpl = fig.layout.template.layout
    title = fig.layout.title.font.size or tpl.title.font.size or 17
    return {"family": fig.layout.font.family or tpl.font.family or "sans-serif",
            "size": fig.layout.font.size or tpl.font.size or 13,
            "color": fig.layout.font.color or tpl.font.color or "#222222", "title_size": title}


def surface_payloads(fig) -> tuple[bytes, bytes, str]:
    """(mesh bytes, view bytes, mesh id) of a surface figure, as ``surface.js`` reads them.

    Mesh arrays per hemisphere h: ``{h}_xyz`` uint16 (N*3, the figure's 0.1 mm units from its
    origin), ``{h}_faces`` uint16/uint32 (F*3). View arrays: ``{h}_codes`` uint8 (N,), optional
    ``{h}_values`` float32 (N,) for the hover label, ``lut`` uint8 (256*3).
    """
    meta = fig.layout.meta
    meshes = [t for t in fig.data if t.type == "mesh3d"]
    bar = next((t for t in fig.data if t.type == "scatter3d" and t.name == "colorbar"), None)
    mesh_arrays, view_arrays, hemis = {}, {}, []
    for t in meshes:
        h, n = t.meta["hemisphere"], int(t.meta["n_mesh_vertices"])
        xyz = np.stack([np.asarray(t.x)[:n], np.asarray(t.y)[:n], np.asarray(t.z)[:n]], axis=1)
        mesh_arrays[f"{h}_xyz"] = xyz.astype(np.uint16)
        mesh_arrays[f"{h}_faces"] = _faces(meta["surface"], h, meta["space"])
        view_arrays[f"{h}_codes"] = np.asarray(t.intensity)[:n].astype(np.uint8)
        if t.customdata is not None:
            view_arrays[f"{h}_values"] = np.asarray(t.customdata)[:n].astype(np.float32)
        hemis.append(h)
    mesh_header = {"hemispheres": hemis, "unit_mm": meta["coord_unit_mm"],
                   "origin_mm": list(meta["coord_origin_mm"]), "flat": meta["surface"] == "flat"}
    mesh_id = hashlib.sha1(_pack(mesh_header, mesh_arrays)).hexdigest()[:16]
    mesh = _pack({**mesh_header, "id": mesh_id}, mesh_arrays)
    view_arrays["lut"] = _color_table(meshes[0].colorscale).ravel()
    cam = fig.layout.scene.camera
    colorbar = None
    if bar is not None and bar.marker.showscale:
        colorbar = {"title": bar.marker.colorbar.title.text or "", "vmin": float(bar.marker.cmin),
                    "vmax": float(bar.marker.cmax), "scale": [list(s) for s in bar.marker.colorscale],
                    "decimals": _digits(bar.marker.colorbar.tickformat)}
    view_header = {
        "mesh": mesh_id, "title": fig.layout.title.text or "", "height": int(fig.layout.height or 420),
        "font": _font(fig),
        "camera": {"eye": [cam.eye.x, cam.eye.y, cam.eye.z], "up": [cam.up.x, cam.up.y, cam.up.z]},
        "decimals": _digits(meshes[0].hovertemplate),
        "colorbar": colorbar, "space": meta["space"], "surface": meta["surface"], "camera_name": meta["camera"],
    }
    return mesh, _pack(view_header, view_arrays), mesh_id


@lru_cache(maxsize=1)
def _js() -> str:
    return _JS.read_text()


def _components():
    """The two components, registered with the running app (again for each app: an identical
    definition is kept as it is)."""
    return (st.components.v2.component("alignment.surface_mesh", js=_js(), css=_CSS),
            st.components.v2.component("alignment.surface_view", js=_js(), css=_CSS))


def show_surface(fig, key: str):
    """Draw a surface figure in the page with the WebGL view (its mesh sent once per page run
    and geometry, see the module's docstring)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    mesh_el, view_el = _components()
    mesh, view, mesh_id = surface_payloads(fig)
    mesh_key = f"surface-mesh-{mesh_id}"
    ctx = get_script_run_ctx()
    with st.container(gap=None):
        shown = getattr(getattr(ctx, "shared", ctx), "widget_user_keys_this_run", ())
        if mesh_key not in shown:
            mesh_el(data=mesh, key=mesh_key, height=0)
        return view_el(data=view, key=key, height=int(fig.layout.height or 420))
