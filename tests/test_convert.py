"""The movie folder kind and the `convert` command: round trips from the HCP 7T kind, a movie
folder and a custom folder to the custom folder format give the same frames, captions, segment
labels and BOLD; the output is written atomically and validates."""

import os
import shutil

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("h5py")

from test_dataset import make_dataset
from test_hcp import decode, encode, hcp, open_ds  # noqa: F401 - hcp is the HCP fixture

from alignment.cli import main
from alignment.data import DatasetError, FolderDataset, MovieFolderDataset, load_dataset
from alignment.data.convert import convert
from alignment.data.dataset import split_tsv_line, tsv_field

FPS = 24


def assert_same(src, dst_root, subjects=None, validates=True):
    """``dst_root`` (folder format) holds the same runs, stimuli and BOLD (of ``subjects``, default
    all) as dataset ``src``, and passes ``validate`` when ``validates``."""
    dst = load_dataset(dst_root)
    subjects = subjects or src.subjects
    assert isinstance(dst, FolderDataset) and dst.kind == "folder"
    assert (dst.name, dst.tr, dst.space, dst.runs, dst.n_trs) == (src.name, src.tr, src.space, src.runs, src.n_trs)
    assert dst.subjects == subjects
    for a, b in zip(src.timelines(), dst.timelines()):
        assert b.caption == a.caption and b.segment == a.segment
        assert [f is None for f in b.frame] == [f is None for f in a.frame]
        for fa, fb in zip(a.frame, b.frame):
            if fa is not None:
                np.testing.assert_array_equal(np.asarray(dst.load_frame(fb)), np.asarray(src.load_frame(fa)))
    for sid in subjects:
        for run in src.runs:
            np.testing.assert_array_equal(dst.bold(sid, run, nan_policy="keep"), src.bold(sid, run, nan_policy="keep"))
    assert (main(["validate", "--dataset", str(dst_root)]) == 0) == validates
    return dst


@pytest.mark.filterwarnings("ignore:run MOVIE")  # the test runs are shorter than HCP's
def test_hcp_round_trip(hcp, tmp_path):  # noqa: F811
    out = tmp_path / "converted"
    assert main(["convert", str(hcp[0]), str(out), "--kind", "hcp7t"]) == 1  # no stimuli in the HCP tree
    pointer = tmp_path / "hcp7t.toml"
    pointer.write_text(f'[hcp7t]\nhcp_root = "{hcp[0]}"\nstimuli = "{hcp[1]}"\nframes_per_tr = 2\n')
    assert main(["convert", str(pointer), str(out)]) == 0
    src = open_ds(hcp, frames_per_tr=2)
    dst = assert_same(src, out)
    tl = dst.timeline("MOVIE1_AP")
    assert tl.segment[4] == "testretest" and tl.frame[0] is None
    assert sorted(os.listdir(out)) == ["conversion.json", "dataset.toml", "frames", "stimuli", "sub-100610"]
    assert os.listdir(out / "sub-100610")[0].endswith(".dtseries.nii")
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # nothing left beside it


def test_folder_round_trip_keeps_quotes_tabs_and_nan(tmp_path):
    root = make_dataset(tmp_path / "ds")
    tsv = os.path.join(root, "stimuli", "r2.tsv")
    text = open(tsv).read().replace("only text", '"Stop!" she said').replace("a green thing", '"a\tb"')
    open(tsv, "w").write(text)
    bold = os.path.join(root, "sub-01", "r1.npy")
    data = np.load(bold)
    data[:, 7] = np.nan  # an all-NaN voxel travels as it is
    np.save(bold, data)
    out = tmp_path / "out"
    convert(root, out, progress=False)
    src = load_dataset(root)
    assert src.timeline("r2").caption[1:3] == ("a\tb", '"Stop!" she said')
    dst = assert_same(src, out, validates=False)
    np.testing.assert_array_equal(dst.bold("01", "r1", nan_policy="keep"), data)
    # the same problems (the NaN voxel, constant once NaN is set aside) are reported for both
    problems = [p.replace(str(out), "ROOT") for p in dst.validate(check_images=True)]
    assert problems == [p.replace(root, "ROOT") for p in src.validate(check_images=True)] and len(problems) == 2
    # a frame shown at two TRs is written once
    assert dst.timeline("r1").frame[0] == dst.timeline("r1").frame[1]
    assert sorted(os.listdir(out / "sub-01")) == ["r1.npy", "r2.npy"]


def test_tsv_fields_round_trip_and_line_breaks_are_refused():
    for text in ["plain", '"Stop!" she said', '"quoted"', "a\tb", '"unbalanced', 'x"y', ""]:
        assert split_tsv_line("\t".join(["0", tsv_field(text), "seg"])) == ["0", text, "seg"]
    for text in ["two\nlines", "cr\rhere", "vt\x0bhere"]:
        with pytest.raises(ValueError, match="line break"):
            tsv_field(text)


# ------------------------------------------------------------------ the movie folder kind
def write_movie(path, seconds: float, size=16):
    """An mp4 whose frame i is a solid colour that encodes i (:func:`test_hcp.encode`)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        stream.options = {"crf": "0", "g": "12"}
        for i in range(int(seconds * FPS)):
            img = np.empty((size, size, 3), np.uint8)
            img[:] = encode(i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


MOVIE_TOML = """[dataset]
name = "movies"
tr = 1.5
space = "fsaverage5"

[movie]
start_s = 1.0

[[runs]]
id = "run-1"
n_trs = 6

[[runs]]
id = "run-2"
n_trs = 5
"""


def make_movie_folder(root, segments=True):
    """Two runs of 1.5 s TRs; each movie starts 1 s into the run and lasts 6 s (to 7 s)."""
    stim = root / "stimuli"
    stim.mkdir(parents=True)
    (root / "movie.toml").write_text(MOVIE_TOML)
    for run in ("run-1", "run-2"):
        write_movie(stim / f"{run}.mp4", 6)
    (stim / "run-1_captions.tsv").write_text(
        "onset\tduration\tcaption\textra\n"
        "1.0\t2.5\ta dog runs\tx\n"       # TRs 0-2 ([0, 1.5), [1.5, 3), [3, 4.5))
        "2.0\t0.5\ta ball\t\n"             # TR 1
        "4.5\t0\t\"Stop!\" she said\t\n"   # duration 0 at the start of TR 3
        "8.5\t1\tafter the movie\t\n")     # TR 5
    (stim / "run-2_captions.tsv").write_text("onset\tduration\tcaption\n0\t30\tall along\n")
    if segments:
        (stim / "run-1_segments.tsv").write_text("onset\tduration\tsegment\n1\t3.5\tclip1\n4.5\t4.5\trepeat\n")
        (stim / "run-2_segments.tsv").write_text("onset\tduration\tsegment\n0\t6\trepeat\n6\t1.5\trest\n")
    rng = np.random.default_rng(0)
    for sid in ("01", "02"):
        (root / f"sub-{sid}").mkdir()
        for run, n in (("run-1", 6), ("run-2", 5)):
            np.save(root / f"sub-{sid}" / f"{run}.npy", rng.standard_normal((n, 20484)).astype(np.float32))
    return root


def test_movie_folder_timeline(tmp_path):
    ds = load_dataset(make_movie_folder(tmp_path / "m"))
    assert isinstance(ds, MovieFolderDataset) and ds.kind == "movie" and ds.start_s == 1.0
    assert ds.subjects == ["01", "02"] and ds.n_trs == {"run-1": 6, "run-2": 5}
    tl = ds.timeline("run-1")
    # TR midpoints 0.75, 2.25, 3.75, 5.25, 6.75, 8.25 s; the movie plays from 1 s to 7 s
    assert tl.segment == ("rest", "clip1", "clip1", "repeat", "repeat", "repeat")
    assert tl.frame[0] is None and tl.frame[5] is None  # before the movie, after it
    for t in (1, 2, 3, 4):
        index = int(np.floor(((t + 0.5) * 1.5 - 1.0) * FPS))
        assert tl.frame[t] == f"run-1.mp4#f={index}"
        assert decode(np.asarray(ds.load_frame(tl.frame[t]))[8, 8]) == index
    assert tl.caption == ("", "a dog runs a ball", "a dog runs", '"Stop!" she said', "", "after the movie")
    tl2 = ds.timeline("run-2")
    assert tl2.segment == ("repeat",) * 4 + ("rest",) and tl2.caption[4] == "" and tl2.frame[4] is None
    assert ds.validate(check_images=True) == []


def test_movie_folder_fingerprint_follows_its_stimuli(tmp_path):
    root = make_movie_folder(tmp_path / "m")
    ds = load_dataset(root / "movie.toml")  # the file names its folder
    assert ds.root == str(root)
    stimuli = ds.fingerprint(include_bold=False)
    assert ds.fingerprint(include_bold=False) == stimuli
    with open(root / "stimuli" / "run-2_segments.tsv", "a") as f:
        f.write("9\t1\tlate\n")
    assert load_dataset(root).fingerprint(include_bold=False) != stimuli
    moved = shutil.copytree(root, tmp_path / "elsewhere", copy_function=shutil.copy2)
    assert load_dataset(moved).fingerprint(content=True) == load_dataset(root).fingerprint(content=True)
    write_movie(root / "stimuli" / "run-1.mp4", 5)
    assert load_dataset(root).fingerprint(include_bold=False, content=True) != \
        load_dataset(moved).fingerprint(include_bold=False, content=True)


def test_movie_folder_without_segments(tmp_path):
    ds = load_dataset(make_movie_folder(tmp_path / "m", segments=False))
    tl = ds.timeline("run-1")
    assert tl.segment == ("rest", "run-1", "run-1", "run-1", "run-1", "rest")
    assert tl.caption[0] == "" and tl.caption[5] == ""


def test_movie_folder_round_trip_and_cli(tmp_path, capsys):
    root = make_movie_folder(tmp_path / "m")
    out = tmp_path / "out"
    assert main(["convert", str(root), str(out), "--subjects", "sub-02"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert_same(load_dataset(root), out, subjects=["02"])


@pytest.mark.parametrize("edit, message", [
    (lambda r: (r / "stimuli" / "run-1.mp4").unlink(), "no movie for run 'run-1'"),
    (lambda r: shutil.copy(r / "stimuli" / "run-1.mp4", r / "stimuli" / "run-1.mkv"), "2 movies"),
    (lambda r: (r / "stimuli" / "run-1_captions.tsv").write_text("onset\tcaption\n0\tx\n"),
     "missing column.s. duration"),
    (lambda r: (r / "stimuli" / "run-1_captions.tsv").write_text("onset\tduration\tcaption\n0\tn/a\tx\n"),
     "line 2: duration must be a number"),
    (lambda r: (r / "stimuli" / "run-1_segments.tsv").write_text("onset\tduration\tsegment\n0\t3\t\n"),
     "empty label"),
    (lambda r: (r / "stimuli" / "run-2_captions.tsv").unlink(), "caption table for run 'run-2' not found"),
])
def test_movie_folder_errors(tmp_path, edit, message):
    root = make_movie_folder(tmp_path / "m")
    edit(root)
    problems = load_dataset(root).validate()
    assert len(problems) == 1 and __import__("re").search(message, problems[0]), problems


def test_movie_toml_is_checked(tmp_path):
    root = make_movie_folder(tmp_path / "m", segments=False)
    (root / "movie.toml").write_text(MOVIE_TOML.replace("start_s = 1.0", "start = 1.0"))
    with pytest.raises(DatasetError, match=r"movie.toml: \[movie\] has unknown keys \['start'\]"):
        load_dataset(root)


# ------------------------------------------------------------------ writing safely
def test_output_folder_rules(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    out.mkdir()
    convert(root, out, progress=False)  # an empty folder is fine
    (out / "mine.txt").write_text("keep me")
    stamp = sorted(os.listdir(out))
    assert main(["convert", root, str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and "--force" in err
    assert sorted(os.listdir(out)) == stamp
    assert main(["convert", root, str(out), "--force"]) == 0
    assert not (out / "mine.txt").exists() and (out / "dataset.toml").exists()
    for bad in (root, os.path.join(root, "stimuli"), str(tmp_path)):  # the source, inside it, around it
        assert main(["convert", root, bad, "--force"]) == 1
        assert "overlaps the source" in capsys.readouterr().err
    assert os.path.isfile(os.path.join(root, "dataset.toml"))
    assert main(["convert", root, str(tmp_path / "no" / "out")]) == 1
    assert "folder not found" in capsys.readouterr().err
    assert main(["convert", root, str(tmp_path / "x"), "--frame-format", "gif"]) == 1
    assert "unknown frame format" in capsys.readouterr().err
    assert main(["convert", root, str(tmp_path / "x"), "--subjects", "07"]) == 1
    assert "unknown subject(s) 07" in capsys.readouterr().err


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    root = make_dataset(tmp_path / "ds")
    os.remove(os.path.join(root, "sub-02", "r2.npy"))  # found only when its BOLD is read
    assert main(["convert", root, str(tmp_path / "out")]) == 1
    assert "no BOLD file for run 'r2' of sub-02" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["ds"]
    # an interruption while an existing output is being replaced keeps the old one
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    monkeypatch.setattr(FolderDataset, "load_frame", lambda self, ref: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        convert(root, out, force=True, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["ds", "out"] and os.listdir(out) == ["old.txt"]


def test_jpg_frames(tmp_path):
    root = make_dataset(tmp_path / "ds", subjects=("01",))
    convert(root, tmp_path / "out", frame_format="jpg", progress=False)
    dst = load_dataset(tmp_path / "out")
    assert dst.timeline("r1").frame[0].endswith(".jpg")
    src = np.asarray(load_dataset(root).load_frame(load_dataset(root).timeline("r1").frame[0]), float)
    assert np.abs(np.asarray(dst.load_frame(dst.timeline("r1").frame[0]), float) - src).max() < 8
