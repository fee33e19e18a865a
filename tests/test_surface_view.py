"""The WebGL surface view's payloads (ui/surface.py): what the browser draws is the figure's map.

The view reads a :func:`alignment.figures.surface_figure`; these tests check its two payloads
against the figure, the mesh store and plotly's own colour interpolation. The drawing itself is
checked in a real browser (tests/test_browser.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from plotly.colors import sample_colorscale, unlabel_rgb

from alignment.figures import apply_theme, surface_figure
from alignment.spaces import load_mesh
from ui.surface import is_surface_figure, surface_payloads, unpack_payload


def _map(seed: int, n: int = 91282) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.full(n, np.nan)
    idx = rng.choice(n, n // 3, replace=False)
    v[idx] = rng.normal(size=idx.size)
    return v


@pytest.fixture(scope="module")
def figure():
    return surface_figure(_map(0), title="r · L3", colorbar_title="r", outlines=(np.arange(91282) // 5000) + 1)


def test_the_view_carries_the_figures_vertices_codes_and_hover_values(figure):
    mesh, view, mesh_id = surface_payloads(figure)
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


def test_the_colour_table_is_plotlys_colour_of_every_code(figure):
    """Code k is drawn in the colour plotly gives intensity k on [0, 255] of the figure's
    composite colorscale (plotly's own interpolation as the reference)."""
    _, arrays = unpack_payload(surface_payloads(figure)[1])
    lut = arrays["lut"].reshape(256, 3).astype(int)
    scale = [list(s) for s in figure.data[0].colorscale]
    expected = np.array([unlabel_rgb(c) for c in sample_colorscale(scale, list(np.arange(256) / 255),
                                                                    colortype="rgb")])
    assert np.abs(lut - expected).max() <= 1


def test_maps_on_one_geometry_share_one_mesh_payload(figure):
    """The mesh's bytes depend on the surface and camera only: Streamlit's message cache then
    sends a reference for it, and a new map costs its view payload alone."""
    mesh, view, mesh_id = surface_payloads(figure)
    other = surface_figure(_map(1), title="r · L5", colorbar_title="r", outlines=(np.arange(91282) // 5000) + 1)
    mesh2, view2, mesh_id2 = surface_payloads(other)
    assert mesh2 == mesh and mesh_id2 == mesh_id and view2 != view
    medial = surface_payloads(surface_figure(_map(1), camera="medial"))
    flat = surface_payloads(surface_figure(_map(1), surface="flat"))
    assert len({mesh_id, medial[2], flat[2]}) == 3
    # both hemispheres of fsLR32k: the first map ≤ 2 MB, each further map about a third of a MB
    assert len(mesh) + len(view) <= 2e6 and len(view2) < 0.4e6


def test_hover_off_sends_no_values_and_anatomy_no_colour_bar():
    _, arrays = unpack_payload(surface_payloads(surface_figure(_map(2), hover=False))[1])
    assert not any(name.endswith("_values") for name in arrays)
    header, _ = unpack_payload(surface_payloads(surface_figure(None))[1])
    assert header["colorbar"] is None


def test_fsaverage5_one_hemisphere_and_presentation_fonts():
    fig = surface_figure(_map(3, 20484), hemispheres=("right",), title="t")
    mesh_header, geometry = unpack_payload(surface_payloads(fig)[0])
    assert mesh_header["hemispheres"] == ["right"] and set(geometry) == {"right_xyz", "right_faces"}
    assert geometry["right_xyz"].size == 3 * 10242
    header, _ = unpack_payload(surface_payloads(apply_theme(fig, presentation=True))[1])
    assert header["font"]["size"] == 20 and header["font"]["title_size"] == 28


def test_only_surface_figures_go_to_the_view(figure):
    from alignment.figures import bar_figure
    import pandas as pd

    assert is_surface_figure(figure)
    assert not is_surface_figure(bar_figure(pd.DataFrame({"x": ["a"], "y": [1.0]}), x="x", y="y"))
