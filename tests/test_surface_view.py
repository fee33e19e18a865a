"""The WebGL surface view's payloads (ui/surface.py): the browser draws what the exports draw.

The view and the exported plotly figure are both drawn from one
:class:`alignment.figures.SurfaceScene`; these tests check the view's two payloads against that
figure, the mesh store and plotly's own colour interpolation. The drawing itself is checked in a
real browser (tests/test_browser.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from plotly.colors import sample_colorscale, unlabel_rgb

from alignment.figures import scene_figure, surface_scene
from alignment.spaces import load_mesh
from ui.surface import surface_payloads, unpack_payload


def _map(seed: int, n: int = 91282) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.full(n, np.nan)
    idx = rng.choice(n, n // 3, replace=False)
    v[idx] = rng.normal(size=idx.size)
    return v


OUTLINES = (np.arange(91282) // 5000) + 1


@pytest.fixture(scope="module")
def scene():
    return surface_scene(_map(0), title="r · L3", colorbar_title="r", outlines=OUTLINES)


def test_the_view_carries_the_exported_figures_vertices_codes_and_hover_values(scene):
    figure = scene_figure(scene)
    mesh, view, mesh_id = surface_payloads(scene)
    mesh_header, geometry = unpack_payload(mesh)
    header, arrays = unpack_payload(view)
    assert header["mesh"] == mesh_header["id"] == mesh_id
    assert header["title"] == "r · L3" and header["height"] == figure.layout.height
    for trace in (t for t in figure.data if t.type == "mesh3d"):
        h, n = trace.meta["hemisphere"], trace.meta["n_mesh_vertices"]
        xyz = geometry[f"{h}_xyz"].reshape(-1, 3)
        assert np.array_equal(xyz, np.stack([trace.x[:n], trace.y[:n], trace.z[:n]], axis=1))
        # the vertices in millimetres are the mesh's, moved as the figure placed them
        assert np.array_equal(geometry[f"{h}_faces"].reshape(-1, 3), load_mesh("inflated", h, "fsLR32k").faces)
        assert np.array_equal(arrays[f"{h}_codes"], np.asarray(trace.intensity)[:n])
        assert np.array_equal(arrays[f"{h}_values"], np.asarray(trace.customdata)[:n].astype(np.float32), equal_nan=True)
    assert header["colorbar"]["vmin"] == figure.layout.meta["vmin"]
    assert header["colorbar"]["vmax"] == figure.layout.meta["vmax"]
    assert header["colorbar"]["title"] == "r"


def test_the_colour_table_is_plotlys_colour_of_every_code(scene):
    """Code k is drawn in the colour plotly gives intensity k on [0, 255] of the exported
    figure's composite colorscale (plotly's own interpolation as the reference)."""
    _, arrays = unpack_payload(surface_payloads(scene)[1])
    lut = arrays["lut"].reshape(256, 3).astype(int)
    scale = [list(s) for s in scene_figure(scene).data[0].colorscale]
    expected = np.array([unlabel_rgb(c) for c in sample_colorscale(scale, list(np.arange(256) / 255),
                                                                    colortype="rgb")])
    assert np.abs(lut - expected).max() <= 1


def test_maps_on_one_geometry_share_one_mesh_payload(scene):
    """The mesh's bytes depend on the surface and camera only: Streamlit's message cache then
    sends a reference for it, and a new map costs its view payload alone."""
    mesh, view, mesh_id = surface_payloads(scene)
    other = surface_scene(_map(1), title="r · L5", colorbar_title="r", outlines=OUTLINES)
    mesh2, view2, mesh_id2 = surface_payloads(other)
    assert mesh2 == mesh and mesh_id2 == mesh_id and view2 != view
    medial = surface_payloads(surface_scene(_map(1), camera="medial"))
    flat = surface_payloads(surface_scene(_map(1), surface="flat"))
    assert len({mesh_id, medial[2], flat[2]}) == 3
    # both hemispheres of fsLR32k: the first map ≤ 2 MB, each further map about a third of a MB
    assert len(mesh) + len(view) <= 2e6 and len(view2) < 0.4e6


def test_hover_off_sends_no_values_and_anatomy_no_colour_bar():
    _, arrays = unpack_payload(surface_payloads(surface_scene(_map(2), hover=False))[1])
    assert not any(name.endswith("_values") for name in arrays)
    header, _ = unpack_payload(surface_payloads(surface_scene(None))[1])
    assert header["colorbar"] is None


def test_fsaverage5_one_hemisphere_and_presentation_fonts():
    scene = surface_scene(_map(3, 20484), hemispheres=("right",), title="t")
    mesh_header, geometry = unpack_payload(surface_payloads(scene)[0])
    assert mesh_header["hemispheres"] == ["right"] and set(geometry) == {"right_xyz", "right_faces"}
    assert geometry["right_xyz"].size == 3 * 10242
    normal, _ = unpack_payload(surface_payloads(scene)[1])
    slides, _ = unpack_payload(surface_payloads(scene, presentation=True)[1])
    assert (normal["font"]["size"], normal["font"]["title_size"]) == (13, 17)
    assert (slides["font"]["size"], slides["font"]["title_size"]) == (20, 20)


def test_the_export_of_a_shown_map_is_its_scene_drawn_by_plotly(scene):
    from ui.page import _figure_bytes

    html = _figure_bytes(scene, "html").decode()
    assert '"type":"mesh3d"' in html and "r · L3" in html
