"""The HCP 7T movie kind on small files written in HCP's formats: CIFTI-2 dtseries with the HCP
brain-model axes under HCP's names, mp4s written with PyAV whose frames encode their index, a
WordNetFeatures.hdf5 laid out as HCP's, and the clip timing sheet."""

import os
import warnings

import numpy as np
import pytest

av = pytest.importorskip("av")
h5py = pytest.importorskip("h5py")

from alignment.data import DatasetError, TimeSeriesDataset, load_dataset, write_cifti_dtseries
from alignment.data.hcp import (HCP_RUNS, POINTER_FILE, REPEAT_LABEL, HCPMovieDataset, clip_timing,
                                wordnet_caption)
from alignment.timing import repeated_segments
from alignment.spaces import N_GRAYORDINATES

FPS = 24
N_TRS = {"MOVIE1_AP": 8, "MOVIE2_PA": 7, "MOVIE3_PA": 7, "MOVIE4_AP": 6}
SYNSETS = ["dog.n.01", "canine.n.02", "animal.n.01", "run.v.01", "ice_cream.n.01", "red.s.01"]


def encode(i: int) -> tuple[int, int, int]:
    """A solid colour that encodes frame index i (two base-16 digits, robust to YUV rounding)."""
    return (i % 16) * 16 + 8, (i // 16) * 16 + 8, 128


def decode(rgb) -> int:
    """The frame index a decoded colour encodes (inverse of :func:`encode`)."""
    r, g = float(rgb[0]), float(rgb[1])
    return round((g - 8) / 16) * 16 + round((r - 8) / 16)


def write_movie(path, seconds: int):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        stream.options = {"crf": "0", "g": "12"}  # keyframes every 0.5 s: seeking is exercised
        for i in range(seconds * FPS):
            img = np.empty((16, 16, 3), np.uint8)
            img[:] = encode(i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def blocks(m: int, n: int):
    """REST 0-1 s, clip m.1 1-3 s, REST 3-4 s, clip m.2 (the repeat) 4 s to n-1, REST to n."""
    return [("0", 0, 1), (f"{m}.1", 1, 3), ("0", 3, 4), (f"{m}.2", 4, n - 1), ("0", n - 1, n)]


def write_timing(path, header=True, n_trs=N_TRS):
    rows = []
    for m, r in enumerate(HCP_RUNS, start=1):
        rows.append(f"7T_{r.movie}_v2,,,")
        if header:
            rows.append("movie.block,start.time,stop.time,duration")
        rows += [f"{lab},{a:.2f},{b:.2f},{b - a:.2f}" for lab, a, b in blocks(m, n_trs[r.id])]
    path.write_bytes("\r".join(rows).encode() + b"\r")  # the sheet's \r-terminated rows


def labels_for(n: int) -> np.ndarray:
    """(n, 6) 0/1 labels: dog (+ its hypernyms canine, animal) at TR 1, animal and run at 2,
    ice cream and red from TR 4 on, a canine (not a dog) at TR 5; nothing during rest."""
    W = np.zeros((n, len(SYNSETS)), np.uint8)
    W[1, :3] = 1
    W[5, 1:3] = 1
    W[2, 3] = 1
    W[2, 2] = 1
    W[4:n - 1, 4:] = 1
    return W


def write_wordnet(path, n_trs=N_TRS):
    with h5py.File(path, "w") as f:
        f["synsets"] = np.array([s.encode() for s in SYNSETS])
        for r in HCP_RUNS:
            n = n_trs[r.id]
            f[r.movie] = labels_for(n)
            f[r.movie + "_est"] = np.r_[0, np.ones(n - 2), 0].astype(np.uint8)
            f[r.movie + "_val"] = np.zeros(n, np.uint8)


def bold_folder(root, sid, scan):
    folder = root / sid / "MNINonLinear" / "Results" / scan
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_bold(root, sid, r, n, seed=0, name=None):
    data = np.random.default_rng(seed).standard_normal((n, N_GRAYORDINATES)).astype(np.float32)
    path = bold_folder(root, sid, r.scan) / (name or f"{r.scan}_Atlas_MSMAll_hp2000_clean.dtseries.nii")
    write_cifti_dtseries(path, data, tr=1.0)
    return data


@pytest.fixture(scope="module")
def hcp(tmp_path_factory):
    base = tmp_path_factory.mktemp("hcp")
    root, stim = base / "HCP_1200", base / "7T_movie_resources"
    post = stim / "Post_20140821_version"
    post.mkdir(parents=True)
    (stim / "Pre_20140821_version").mkdir()
    bolds = {}
    for k, r in enumerate(HCP_RUNS):
        write_movie(post / f"7T_{r.movie}_v2.mp4", N_TRS[r.id])
        bolds[r.id] = write_bold(root, "100610", r, N_TRS[r.id], seed=k)
    write_movie(stim / "Pre_20140821_version" / "7T_MOVIE1_CC1.mp4", N_TRS["MOVIE1_AP"])
    write_timing(stim / "HCP_7T_Movie_Clip_Timing.csv")
    write_wordnet(stim / "WordNetFeatures.hdf5")
    return root, stim, bolds


def open_ds(hcp, **kw):
    root, stim, _ = hcp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short runs warn
        return HCPMovieDataset(root, stim, **kw)


def test_protocol_runs_and_bold_round_trip(hcp):
    ds = open_ds(hcp)
    assert isinstance(ds, TimeSeriesDataset)
    assert ds.kind == "hcp7t" and ds.space == "fsLR32k" and ds.n_vertices == 91282 and ds.tr == 1.0
    assert ds.runs == ["MOVIE1_AP", "MOVIE2_PA", "MOVIE3_PA", "MOVIE4_AP"]
    assert ds.subjects == ["100610"] and ds.n_trs == N_TRS
    np.testing.assert_array_equal(ds.bold("100610", "MOVIE2_PA"), hcp[2]["MOVIE2_PA"])
    Y, idx = ds.bold_all("100610")
    assert Y.shape == (sum(N_TRS.values()), N_GRAYORDINATES)
    np.testing.assert_array_equal(idx, ds.run_index())
    assert ds.validate() == []


def test_short_runs_warn_and_strict_refuses(hcp):
    root, stim, _ = hcp
    with pytest.warns(UserWarning, match="MOVIE1_AP has 8 TRs.*HCP release has 921"):
        HCPMovieDataset(root, stim)
    with pytest.raises(DatasetError, match="HCP release has 921"):
        HCPMovieDataset(root, stim, strict_trs=True)


def test_timeline_segments_captions_and_repeat(hcp):
    ds = open_ds(hcp)
    tl = ds.timeline("MOVIE1_AP")
    assert len(tl) == 8
    assert tl.segment == ("rest", "MOVIE1_CC1_clip1", "MOVIE1_CC1_clip1", "rest",
                          REPEAT_LABEL, REPEAT_LABEL, REPEAT_LABEL, "rest")
    assert tl.frame[0] is None and tl.frame[3] is None and tl.frame[7] is None
    assert tl.caption[1] == "dog, canine, animal"  # the file's superordinates kept by default
    assert tl.caption[2] == "animal, run"  # nouns before verbs
    assert tl.caption[4] == "ice cream, red" and tl.caption[0] == ""
    # the test-retest montage is one label in every run, so it counts as repeated
    segs = [s for t in ds.timelines() for s in t.segment]
    runs = np.repeat(np.arange(4), [N_TRS[r] for r in ds.runs])
    assert repeated_segments(segs, runs) == [REPEAT_LABEL]
    assert ds.timeline("MOVIE3_PA").segment[1] == "MOVIE3_CC2_clip1"


def test_hypernyms_dropped_on_request(hcp):
    ds = open_ds(hcp, hypernyms=False)
    tl = ds.timeline("MOVIE1_AP")
    assert tl.caption[1] == "dog"  # canine and animal occur wherever dog does, and more often
    assert tl.caption[2] == "animal, run"  # nothing more specific is present at TR 2
    assert tl.caption[4] == "ice cream, red"  # always together: neither implies the other


def test_caption_rule():
    assert wordnet_caption(np.array([3, 0, 5]), SYNSETS) == "dog, run, red"
    assert wordnet_caption(np.array([], int), SYNSETS) == ""
    assert wordnet_caption(np.array([0, 1]), ["plant.n.01", "plant.n.02"]) == "plant"


@pytest.mark.parametrize("k", [1, 2, 3])
def test_frame_picked_for_each_tr(hcp, k):
    ds = open_ds(hcp, frames_per_tr=k)
    tl = ds.timeline("MOVIE1_AP")
    for t in (5, 1, 6, 2):  # out of order: seeks back and forth
        ref = tl.frame[t]
        idx = [int(np.floor((t + (j + 0.5) / k) * FPS)) for j in range(k)]
        assert ref == "Post_20140821_version/7T_MOVIE1_CC1_v2.mp4#f=" + ",".join(map(str, idx))
        img = np.asarray(ds.load_frame(ref))
        assert img.shape == (16, 16, 3)
        want = np.mean([encode(i) for i in idx], axis=0)
        np.testing.assert_allclose(img[8, 8, :2], want[:2], atol=3)
        if k == 1:
            assert decode(img[8, 8]) == idx[0]
    ds.close()


def test_pre_version_and_missing_movie(hcp):
    ds = open_ds(hcp, stimulus_version="pre")
    assert ds.movie_path("MOVIE1_AP").endswith(os.path.join("Pre_20140821_version", "7T_MOVIE1_CC1.mp4"))
    with pytest.raises(DatasetError, match=r"movie of run MOVIE2_PA not found: expected 7T_MOVIE2_HO1\.mp4 "
                                           r"\(found: 7T_MOVIE2_HO1_v2\.mp4\)"):
        ds.timeline("MOVIE2_PA")


def test_fingerprint(hcp):
    a, b = open_ds(hcp), open_ds(hcp)
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 64
    assert a.fingerprint(include_bold=False) != a.fingerprint()
    assert open_ds(hcp, frames_per_tr=3).fingerprint(include_bold=False) != a.fingerprint(include_bold=False)
    assert open_ds(hcp, hypernyms=False).fingerprint(include_bold=False) != a.fingerprint(include_bold=False)
    assert a.fingerprint(content=True) == b.fingerprint(content=True)


def test_load_dataset_pointer_and_tree(hcp, tmp_path):
    root, stim, _ = hcp
    (tmp_path / POINTER_FILE).write_text(
        f'[hcp7t]\nhcp_root = "{root}"\nstimuli = "{stim}"\nframes_per_tr = 2\nhypernyms = false\n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset(tmp_path)
        assert ds.kind == "hcp7t" and ds.frames_per_tr == 2 and not ds.hypernyms
        assert load_dataset(tmp_path / POINTER_FILE).stimuli == str(stim)
        (tmp_path / POINTER_FILE).write_text(f'[hcp7t]\nhcp_root = "{root}"\nstimuli = "{stim}"\nTR = 2.0\n')
        with pytest.raises(DatasetError, match=r"unknown keys \['TR'\]") as err:
            load_dataset(tmp_path)
        assert "\n" not in str(err.value)
        # an HCP tree with its stimulus folder inside opens without a pointer
        tree = tmp_path / "tree"
        tree.mkdir()
        os.symlink(root / "100610", tree / "100610")
        os.symlink(stim, tree / "7T_movie_resources")
        ds = load_dataset(tree)
        assert ds.kind == "hcp7t" and ds.stimuli == str(tree / "7T_movie_resources")


def one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def make_tree(tmp_path, hcp, runs, n_trs=N_TRS):
    """A fresh tree: subject 200311 with BOLD for ``runs`` (the module's stimuli serve it)."""
    root = tmp_path / "hcp"
    for k, r in enumerate(runs):
        write_bold(root, "200311", r, n_trs[r.id], seed=k)
    return root


def test_refuses_1p6mm_and_volume_files(hcp, tmp_path):
    root = tmp_path / "hcp"
    r = HCP_RUNS[0]
    folder = bold_folder(root, "200311", r.scan)
    (folder / f"{r.scan}_Atlas_1.6mm_MSMAll_hp2000_clean.dtseries.nii").write_bytes(b"")
    ds = HCPMovieDataset(root, hcp[1])
    with pytest.raises(DatasetError) as err:
        ds.bold("200311", "MOVIE1_AP")
    msg = one_line(err)
    assert "1.6 mm CIFTI (170494 grayordinates)" in msg
    assert "tfMRI_MOVIE1_7T_AP_Atlas_MSMAll_hp2000_clean.dtseries.nii" in msg
    os.remove(folder / f"{r.scan}_Atlas_1.6mm_MSMAll_hp2000_clean.dtseries.nii")
    (folder / f"{r.scan}_hp2000_clean.nii.gz").write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        ds.bold("200311", "MOVIE1_AP")
    msg = one_line(err)
    assert "tfMRI_MOVIE1_7T_AP_hp2000_clean.nii.gz is a volume file" in msg
    assert "download tfMRI_MOVIE1_7T_AP_Atlas_MSMAll_hp2000_clean.dtseries.nii" in msg


def test_refuses_1p6mm_grayordinates_under_the_2mm_name(hcp, tmp_path):
    from nibabel.cifti2 import BrainModelAxis

    root = tmp_path / "hcp"
    r = HCP_RUNS[0]
    n = 170494
    axis = BrainModelAxis(np.full(n, "CIFTI_STRUCTURE_CORTEX_LEFT", object), vertex=np.arange(n),
                          nvertices={"CIFTI_STRUCTURE_CORTEX_LEFT": n})
    path = bold_folder(root, "200311", r.scan) / f"{r.scan}_Atlas_MSMAll_hp2000_clean.dtseries.nii"
    write_cifti_dtseries(path, np.zeros((8, n), np.float32), tr=1.0, brain_models=axis)
    ds = HCPMovieDataset(root, hcp[1])
    assert ds.n_trs["MOVIE1_AP"] == 921  # nothing readable: HCP's count
    with pytest.raises(DatasetError) as err:
        ds.bold("200311", "MOVIE1_AP")
    assert "1.6 mm grayordinates (170494)" in one_line(err)
    assert any("1.6 mm grayordinates" in p for p in ds.validate(check_bold=False))


def test_missing_run_and_tr_mismatch(hcp, tmp_path):
    root = make_tree(tmp_path, hcp, runs=HCP_RUNS[1:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = HCPMovieDataset(root, hcp[1])
    with pytest.raises(DatasetError) as err:
        ds.bold("200311", "MOVIE1_AP")
    assert "run MOVIE1_AP of subject 200311 is missing: expected" in one_line(err)
    problems = ds.validate()
    assert any("MOVIE1_AP of subject 200311 is missing" in p for p in problems)
    assert all("\n" not in p for p in problems)
    # BOLD one TR longer than the stimuli (WordNet rows, timing sheet)
    write_bold(root, "200311", HCP_RUNS[0], N_TRS["MOVIE1_AP"] + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = HCPMovieDataset(root, hcp[1])
    with pytest.raises(DatasetError) as err:
        ds.timeline("MOVIE1_AP")
    assert "MOVIE1_CC1 has 8 seconds of labels, the BOLD of run MOVIE1_AP has 9 TRs" in one_line(err)
    # a second subject whose run is shorter than the first subject's
    write_bold(root, "300618", HCP_RUNS[1], N_TRS["MOVIE2_PA"] - 1)
    with pytest.raises(DatasetError) as err:
        ds.bold("300618", "MOVIE2_PA")
    assert "run MOVIE2_PA of subject 300618 has 6 TRs" in one_line(err)


def test_timing_sheet_longer_than_bold_and_unknown_run(hcp, tmp_path):
    stim = tmp_path / "stim"
    stim.mkdir()
    for r in HCP_RUNS:
        os.symlink(hcp[1] / "Post_20140821_version" / f"7T_{r.movie}_v2.mp4", stim / f"7T_{r.movie}_v2.mp4")
    os.symlink(hcp[1] / "WordNetFeatures.hdf5", stim / "WordNetFeatures.hdf5")
    write_timing(stim / "HCP_7T_Movie_Clip_Timing.csv", header=False,
                 n_trs={**N_TRS, "MOVIE4_AP": 12})
    ds = open_ds((hcp[0], stim, None))
    assert ds.timeline("MOVIE1_AP").segment[1] == "MOVIE1_CC1_clip1"  # positional columns
    with pytest.raises(DatasetError) as err:
        ds.timeline("MOVIE4_AP")
    assert "7T_MOVIE4 ends at 12 s, the BOLD of run MOVIE4_AP has 6 TRs" in one_line(err)
    with pytest.raises(DatasetError, match="unknown run 'MOVIE5'"):
        ds.timeline("MOVIE5")


def test_timing_parser(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("7T_MOVIE2_HO1_v2\nblock,start,stop,duration\n0,0,20,20\n2.1,20,264.04,244.04\n")
    t = clip_timing(p)
    assert [b.label for b in t[2]] == ["0", "2.1"] and t[2][1].stop == 264.04 and t[2][0].is_rest
    p.write_text("7T_MOVIE1\n1.1,abc,3,3\n")
    with pytest.raises(DatasetError, match="line 2: block '1.1' needs numeric start"):
        clip_timing(p)
    p.write_text("nothing here\n")
    with pytest.raises(DatasetError, match="no 7T_MOVIE<n> section"):
        clip_timing(p)


def test_cli_validate(hcp, tmp_path, capsys):
    from alignment.cli import main

    root, stim, _ = hcp
    (tmp_path / POINTER_FILE).write_text(f'[hcp7t]\nhcp_root = "{root}"\nstimuli = "{stim}"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["validate", "--dataset", str(tmp_path / POINTER_FILE)]) == 0
        assert "dataset OK" in capsys.readouterr().out
        (tmp_path / POINTER_FILE).write_text(f'[hcp7t]\nhcp_root = "{root}"\nstimuli = "{stim}"\n'
                                             'stimulus_version = "pre"\n')
        assert main(["validate", "--dataset", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any("movie of run MOVIE2_PA not found" in line for line in out)


def test_nan_policies_and_validate_report(hcp, tmp_path):
    root = tmp_path / "hcp"
    data = write_bold(root, "200311", HCP_RUNS[3], N_TRS["MOVIE4_AP"])
    data[2, 5] = np.nan
    data[:, 7] = 1.0
    path = bold_folder(root, "200311", HCP_RUNS[3].scan) / f"{HCP_RUNS[3].scan}_Atlas_MSMAll_hp2000_clean.dtseries.nii"
    write_cifti_dtseries(path, data, tr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = HCPMovieDataset(root, hcp[1])
    with pytest.raises(DatasetError) as err:
        ds.bold("200311", "MOVIE4_AP")
    assert "1 NaN/infinite values in 1 columns" in one_line(err)
    Y = ds.bold("200311", "MOVIE4_AP", nan_policy="mask")
    assert np.all(Y[:, 5] == 0) and np.isfinite(Y).all()
    problems = [p for p in ds.validate() if "tfMRI_MOVIE4_7T_AP" in p]
    assert any("NaN" in p for p in problems) and any("1 of 91282 columns are constant" in p for p in problems)


def test_model_features_from_hcp_stimuli(hcp, tmp_path):
    """The feature stage reads frames and captions through the protocol: one row per TR."""
    from alignment.cache import Cache
    from alignment.features import FeatureRequest, an_timeseries, array_name
    from alignment.models import load_model

    ds = open_ds(hcp)
    spec = "random:clip:demo-tiny"
    request = FeatureRequest.make(spec, {"image": [0], "text": [0]})
    entry = an_timeseries(ds, request, Cache(tmp_path), adapter=load_model(spec))
    image, text = entry[array_name("image", 0)], entry[array_name("text", 0)]
    assert image.shape[0] == text.shape[0] == sum(N_TRS.values()) and np.isfinite(image).all()
    np.testing.assert_array_equal(entry["runs"], ds.run_index())
    tl = ds.timeline("MOVIE1_AP")  # TRs 4 and 6 show different frames with the same caption
    assert tl.caption[4] == tl.caption[6] and tl.frame[4] != tl.frame[6]
    assert not np.allclose(image[4], image[6])
    np.testing.assert_array_equal(text[4], text[6])
