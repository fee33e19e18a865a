"""The cortical surface in the browser: a WebGL view of a :class:`alignment.figures.SurfaceScene`.

plotly's ``mesh3d`` rebuilds its whole mesh on any change, so a new layer took as long to draw as
a new figure. Here the scene is drawn by a small WebGL component (``surface.js``) from two
elements:

- the **mesh** (hemispheres' placed coordinates and faces, about 1.2 MB for fsLR32k): identical
  bytes for every map on the same surface and camera, so Streamlit's message cache sends the
  browser a reference, not the bytes, once it holds them; one per page run and geometry;
- the **view** (per vertex: one uint8 colour code and the float32 hover value; the 256-colour
  table, title, colour bar, camera; about 0.33 MB): a new map sends only this.

The exports draw the same scene with plotly (:func:`alignment.figures.scene_figure`): the same
vertices, colour codes and colour table. The view orbits (drag), zooms (wheel), pans (shift-drag,
or drag on a flat map), resets (double click) and shows the value under the pointer.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import streamlit as st

from alignment.figures import SurfaceScene
from alignment.figures.theme import FONT, TEXT_COLOR, font_sizes

__all__ = ["show_surface", "surface_payloads", "unpack_payload"]

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


def _color_table(scale) -> np.ndarray:
    """(256, 3) uint8: the colour plotly gives intensity k of a colorscale on [0, 255]."""
    from alignment.figures.theme import colorscale_fn

    rgb = colorscale_fn([list(c) for c in scale])(np.arange(256) / 255.0)
    return np.round(np.clip(rgb.T, 0, 1) * 255).astype(np.uint8)


def surface_payloads(scene: SurfaceScene, presentation: bool = False) -> tuple[bytes, bytes, str]:
    """(mesh bytes, view bytes, mesh id) of a surface scene, as ``surface.js`` reads them.

    Mesh arrays per hemisphere h: ``{h}_xyz`` uint16 (N*3, 0.1 mm from the scene's origin),
    ``{h}_faces`` uint16/uint32 (F*3). View arrays: ``{h}_codes`` uint8 (N,), ``{h}_values``
    float32 (N,) when the scene has hover values, ``lut`` uint8 (256*3): the colour of every code.
    """
    mesh_arrays, view_arrays = {}, {}
    for h in scene.hemispheres:
        faces = scene.faces[h]
        mesh_arrays[f"{h}_xyz"] = scene.xyz[h]
        mesh_arrays[f"{h}_faces"] = faces.astype(np.uint16 if faces.max() <= np.iinfo(np.uint16).max else np.uint32)
        view_arrays[f"{h}_codes"] = scene.codes[h]
        if h in scene.values:
            view_arrays[f"{h}_values"] = scene.values[h]
    mesh_header = {"hemispheres": list(scene.hemispheres), "unit_mm": scene.unit_mm,
                   "origin_mm": list(scene.origin_mm), "flat": scene.surface == "flat"}
    mesh_id = hashlib.sha1(_pack(mesh_header, mesh_arrays)).hexdigest()[:16]
    mesh = _pack({**mesh_header, "id": mesh_id}, mesh_arrays)
    view_arrays["lut"] = _color_table(scene.composite).ravel()
    body, title = font_sizes(presentation, long_title=True)
    colorbar = None
    if scene.has_data:
        colorbar = {"title": scene.colorbar_title, "vmin": float(scene.vmin), "vmax": float(scene.vmax),
                    "scale": [list(c) for c in scene.scale], "decimals": scene.colorbar_decimals}
    view_header = {
        "mesh": mesh_id, "title": scene.title, "height": scene.height,
        "font": {"family": FONT, "size": body, "color": TEXT_COLOR, "title_size": title},
        "camera": {"eye": [scene.view["eye"][k] for k in "xyz"], "up": [scene.view["up"][k] for k in "xyz"]},
        "decimals": scene.decimals, "colorbar": colorbar, "space": scene.space, "surface": scene.surface,
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


def show_surface(scene: SurfaceScene, key: str, presentation: bool = False):
    """Draw a surface scene in the page with the WebGL view (its mesh sent once per page run
    and geometry, see the module's docstring)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    mesh_el, view_el = _components()
    mesh, view, mesh_id = surface_payloads(scene, presentation)
    mesh_key = f"surface-mesh-{mesh_id}"
    ctx = get_script_run_ctx()
    with st.container(gap=None):
        shown = getattr(getattr(ctx, "shared", ctx), "widget_user_keys_this_run", ())
        if mesh_key not in shown:
            mesh_el(data=mesh, key=mesh_key, height=0)
        return view_el(data=view, key=key, height=scene.height)
