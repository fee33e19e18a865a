"""Tests of the custom dataset folder format and the CIFTI-2 dtseries helpers."""

import json
import os
import shutil

import numpy as np
import pytest

from alignment.data import DatasetError, FolderDataset, TimeSeriesDataset, load_dataset
from alignment.data.dataset import read_cifti_dtseries, write_cifti_dtseries
from alignment.spaces import HCP_STRUCTURES, fslr32k_brain_models
from alignment.timing import Timeline

V5 = 20484
V32 = 91282
RUNS = {"r1": 5, "r2": 4}


def _toml(name="tiny", tr=1.5, space="fsaverage5", runs=RUNS):
    lines = ["[dataset]", f'name = "{name}"', f"tr = {tr}", f'space = "{space}"', ""]
    for rid, n in runs.items():
        lines += ["[[runs]]", f'id = "{rid}"', f"n_trs = {n}", ""]
    return "\n".join(lines)


TSV = {
    "r1": [
        ("0", "frames/a.png", "a red square", "clip1"),
        ("1", "frames/a.png", "a red square", "clip1"),
        ("2", "", "", "rest"),
        ("3", "frames/b.png", "a blue \"circle\"", "clip2"),
        ("4", "", "", ""),  # empty segment on a rest row reads as "rest"
    ],
    "r2": [
        ("0", "frames/b.png", "", "test"),
        ("1", "frames/sub/c.png", "a green thing", "test"),
        ("2", "", "only text", "clip3"),
        ("3", "", "", "rest"),
    ],
}


def _write_tsv(path, rows, header=("tr", "frame", "caption", "segment")):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


def make_dataset(root, space="fsaverage5", fmt="npy", subjects=("01", "02"), seed=0):
    """Tiny dataset: 2 runs (5 + 4 TRs), 3 frames, BOLD as npy (fsaverage5) or CIFTI."""
    from PIL import Image

    root = str(root)
    os.makedirs(os.path.join(root, "stimuli"))
    os.makedirs(os.path.join(root, "frames", "sub"))
    with open(os.path.join(root, "dataset.toml"), "w") as f:
        f.write(_toml(space=space))
    for run, rows in TSV.items():
        _write_tsv(os.path.join(root, "stimuli", f"{run}.tsv"), rows)
    Image.new("RGB", (8, 6), (255, 0, 0)).save(os.path.join(root, "frames", "a.png"))
    Image.new("L", (5, 5), 128).save(os.path.join(root, "frames", "b.png"))
    Image.new("P", (4, 4)).save(os.path.join(root, "frames", "sub", "c.png"))
    rng = np.random.default_rng(seed)
    V = V5 if space == "fsaverage5" else V32
    for sid in subjects:
        d = os.path.join(root, f"sub-{sid}")
        os.makedirs(d)
        for run, n in RUNS.items():
            data = rng.standard_normal((n, V)).astype(np.float32)
            if fmt == "npy":
                np.save(os.path.join(d, f"{run}.npy"), data)
            else:
                write_cifti_dtseries(os.path.join(d, f"{run}.dtseries.nii"), data, tr=1.5)
    return root


@pytest.fixture
def ds_root(tmp_path):
    return make_dataset(tmp_path / "ds")


@pytest.fixture(scope="module")
def _cifti_template(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("cifti") / "ds", space="fsLR32k", fmt="cifti",
                        subjects=("01",))


@pytest.fixture
def cifti_root(_cifti_template, tmp_path):
    """fsLR32k dataset with CIFTI BOLD (one subject); a fresh copy per test (writing is slow)."""
    return str(shutil.copytree(_cifti_template, tmp_path / "ds"))


def _raises(root, match):
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(root)
    return info.value


# ------------------------------------------------------------------------------ loading
def test_load_good_dataset(ds_root):
    ds = load_dataset(ds_root)
    assert isinstance(ds, FolderDataset) and isinstance(ds, TimeSeriesDataset)
    assert ds.name == "tiny" and ds.tr == 1.5 and ds.space == "fsaverage5"
    assert ds.runs == ["r1", "r2"] and ds.n_trs == RUNS
    assert ds.subjects == ["01", "02"]
    assert ds.n_vertices == V5
    assert load_dataset(os.path.join(ds_root, "dataset.toml")).root == ds.root
    assert "tiny" in repr(ds)


def test_timeline(ds_root):
    ds = load_dataset(ds_root)
    tl = ds.timeline("r1")
    assert isinstance(tl, Timeline) and tl.run == "r1" and tl.tr == 1.5 and tl.n_trs == 5
    assert tl.frame[0] == os.path.join(ds.root, "frames", "a.png")
    assert os.path.isabs(tl.frame[3]) and tl.frame[2] is None and tl.frame[4] is None
    assert tl.caption == ("a red square", "a red square", "", 'a blue "circle"', "")
    assert tl.segment == ("clip1", "clip1", "rest", "clip2", "rest")
    keys, index = tl.unique_stimuli()
    assert len(keys) == 2 and index.tolist() == [0, 0, -1, 1, -1]
    tls = ds.timelines()
    assert [t.run for t in tls] == ["r1", "r2"]
    assert tls[1].caption[2] == "only text" and tls[1].frame[2] is None
    assert tls[1].segments() == [("test", 0, 2), ("clip3", 2, 3), ("rest", 3, 4)]


def test_tsv_written_by_pandas_with_crlf(ds_root):
    import pandas as pd

    df = pd.DataFrame({
        "tr": range(4),
        "frame": ["frames/b.png", None, None, "frames/a.png"],
        "caption": ['say "hi"\tthere', "text only", None, ""],
        "segment": ["c", "c", "rest", "c"],
        "extra": [1, 2, 3, 4],  # additional columns are ignored
    })
    df.to_csv(os.path.join(ds_root, "stimuli", "r2.tsv"), sep="\t", index=False,
              lineterminator="\r\n")
    tl = load_dataset(ds_root).timeline("r2")
    assert tl.caption == ('say "hi"\tthere', "text only", "", "")
    assert tl.frame[1] is None and tl.frame[3].endswith("a.png")
    assert tl.segment == ("c", "c", "rest", "c")


def test_frames(ds_root):
    ds = load_dataset(ds_root)
    assert ds.frame_path("frames/a.png") == os.path.join(ds.root, "frames", "a.png")
    for rel in ("frames/a.png", "frames/b.png", "frames/sub/c.png"):
        im = ds.load_frame(rel)
        assert im.mode == "RGB"
    # the absolute paths in a timeline work as well
    im = ds.load_frame(ds.timeline("r1").frame[0])
    assert im.size == (8, 6) and im.getpixel((0, 0)) == (255, 0, 0)
    with pytest.raises(DatasetError, match="not found"):
        ds.load_frame("frames/zzz.png")
    with open(os.path.join(ds_root, "frames", "bad.png"), "wb") as f:
        f.write(b"not an image")
    with pytest.raises(DatasetError, match="bad.png"):
        ds.load_frame("frames/bad.png")


def test_bold(ds_root):
    ds = load_dataset(ds_root)
    Y = ds.bold("01", "r1")
    assert Y.shape == (5, V5) and Y.dtype == np.float32
    np.testing.assert_array_equal(Y, np.load(os.path.join(ds_root, "sub-01", "r1.npy")))
    np.testing.assert_array_equal(ds.bold("sub-01", "r1"), Y)
    Yall, runs = ds.bold_all("02")
    assert Yall.shape == (9, V5) and Yall.dtype == np.float32
    assert runs.tolist() == [0] * 5 + [1] * 4
    np.testing.assert_array_equal(Yall[5:], ds.bold("02", "r2"))
    np.testing.assert_array_equal(ds.run_index(), runs)
    Y2, runs2 = ds.bold_all("02", runs=["r2"])
    assert Y2.shape == (4, V5) and runs2.tolist() == [1] * 4
    assert ds.validate() == []


def test_bold_float64_npy_is_cast(ds_root):
    p = os.path.join(ds_root, "sub-01", "r2.npy")
    np.save(p, np.ones((4, V5), dtype=np.float64) * np.arange(4)[:, None])
    Y = load_dataset(ds_root).bold("01", "r2")
    assert Y.dtype == np.float32 and Y[3, 0] == 3


# ------------------------------------------------------------------------------ fingerprint
def test_fingerprint(ds_root, tmp_path):
    ds = load_dataset(ds_root)
    fp = ds.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert load_dataset(ds_root).fingerprint() == fp
    stim = ds.fingerprint(include_bold=False)
    sub1 = ds.fingerprint("01")
    # rewriting one BOLD file (new mtime) changes the full and that subject's keys only
    p = os.path.join(ds_root, "sub-02", "r1.npy")
    np.save(p, np.zeros((5, V5), np.float32))
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert ds.fingerprint() != fp
    assert ds.fingerprint(include_bold=False) == stim
    assert ds.fingerprint("01") == sub1 and ds.fingerprint(["sub-01"]) == sub1
    # editing a stimulus table changes every key
    _write_tsv(os.path.join(ds_root, "stimuli", "r2.tsv"),
               [r[:2] + ("changed",) + r[3:] for r in TSV["r2"]])
    assert ds.fingerprint(include_bold=False) != stim
    # a frame rewritten
    stim2 = ds.fingerprint(include_bold=False)
    fa = os.path.join(ds_root, "frames", "a.png")
    st = os.stat(fa)
    os.utime(fa, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert ds.fingerprint(include_bold=False) != stim2
    # content hashes do not depend on where the folder is or on mtimes
    copy = shutil.copytree(ds_root, tmp_path / "copy")
    for dirpath, _, files in os.walk(copy):
        for name in files:
            os.utime(os.path.join(dirpath, name), ns=(1, 10**9))
    assert load_dataset(copy).fingerprint(content=True) == ds.fingerprint(content=True)


# ------------------------------------------------------------------------------ CIFTI
def test_cifti_roundtrip(tmp_path):
    import nibabel as nib
    from nibabel.cifti2 import BrainModelAxis, SeriesAxis

    rng = np.random.default_rng(3)
    data = rng.standard_normal((4, V32)).astype(np.float32)
    path = write_cifti_dtseries(tmp_path / "x.dtseries.nii", data, tr=0.72)
    assert sorted(os.listdir(tmp_path)) == ["x.dtseries.nii"]  # no temporary left behind
    img = nib.load(path)
    assert isinstance(img, nib.Cifti2Image)
    assert img.nifti_header.get_intent()[0] == "ConnDenseSeries"
    assert img.shape == (4, V32)
    series, bm = img.header.get_axis(0), img.header.get_axis(1)
    assert isinstance(series, SeriesAxis) and isinstance(bm, BrainModelAxis)
    assert series.step == pytest.approx(0.72) and series.unit == "SECOND" and series.size == 4
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), data)
    names = [str(n) for n, _, _ in bm.iter_structures()]
    assert names == [n for n, _ in HCP_STRUCTURES]
    assert bm == fslr32k_brain_models()
    assert bm.volume_shape == (91, 109, 91) and int(bm.volume_mask.sum()) == V32 - 59412
    assert len(np.unique(bm.voxel[bm.volume_mask], axis=0)) == V32 - 59412
    r = read_cifti_dtseries(path)
    np.testing.assert_array_equal(r.data, data)
    assert r.tr == pytest.approx(0.72) and r.start == 0.0 and r.brain_models == bm
    # other grayordinates can be given explicitly
    small = BrainModelAxis.from_surface(np.arange(10), 20, "CortexLeft")
    path2 = write_cifti_dtseries(tmp_path / "y.dtseries.nii", data[:2, :10], 2.0,
                                 brain_models=small)
    r2 = read_cifti_dtseries(path2)
    assert r2.brain_models == small and r2.tr == 2.0 and r2.data.shape == (2, 10)


def test_write_cifti_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="91282"):
        write_cifti_dtseries(tmp_path / "x.dtseries.nii", np.zeros((3, 100)), 1.0)
    with pytest.raises(ValueError, match="tr"):
        write_cifti_dtseries(tmp_path / "x.dtseries.nii", np.zeros((3, V32)), 0.0)


def test_fslr_dataset_with_cifti(cifti_root):
    root = cifti_root
    ds = load_dataset(root)
    assert ds.n_vertices == V32
    Y = ds.bold("01", "r1")
    assert Y.shape == (5, V32) and Y.dtype == np.float32
    assert ds.validate() == []
    # a series step that disagrees with dataset.toml is reported
    p = os.path.join(root, "sub-01", "r2.dtseries.nii")
    write_cifti_dtseries(p, np.ones((4, V32)) * np.arange(4)[:, None], tr=2.0)
    problems = ds.validate()
    assert len(problems) == 1 and "2 s" in problems[0] and "r2.dtseries.nii" in problems[0]
    # a CIFTI file with the wrong cortex layout is refused
    from nibabel.cifti2 import BrainModelAxis

    bm = fslr32k_brain_models()
    vertex = bm.vertex.copy()
    vertex[:29696] = vertex[:29696][::-1]
    shuffled = BrainModelAxis(bm.name, voxel=bm.voxel, vertex=vertex,
                              affine=bm.affine, volume_shape=bm.volume_shape,
                              nvertices=bm.nvertices)
    write_cifti_dtseries(p, np.ones((4, V32)), tr=1.5, brain_models=shuffled)
    with pytest.raises(DatasetError, match="standard HCP fsLR32k"):
        ds.bold("01", "r2")


def test_cifti_header_read_once_per_distinct_header(cifti_root, monkeypatch):
    """Runs sharing a header: the second read skips nibabel's XML parse and gives nibabel's data
    bit for bit; a file whose data need scaling is never read that way."""
    import nibabel as nib

    from alignment.data import dataset as D

    parsed = []
    real = D._open_cifti
    monkeypatch.setattr(D, "_open_cifti", lambda path: parsed.append(os.path.basename(path)) or real(path))
    monkeypatch.setattr(D, "_CIFTI_LAYOUTS", {})
    ds = load_dataset(cifti_root)
    p = os.path.join(cifti_root, "sub-01", "r1.dtseries.nii")
    copy = os.path.join(cifti_root, "sub-01", "copy.dtseries.nii")
    shutil.copy(p, copy)
    with open(copy, "r+b") as f:  # same header, other data
        f.seek(-4 * V32 * 5, os.SEEK_END)
        f.write(np.arange(5 * V32, dtype="<f4").tobytes())
    for path in (p, p, copy):
        Y, step, _ = D._load_cifti_series(path)
        assert np.array_equal(Y, nib.load(path).get_fdata(dtype=np.float32)) and Y.flags.c_contiguous
        assert step == 1.5
    assert parsed == ["r1.dtseries.nii"]
    # the direct read is checked against nibabel's values, not only against the header
    Y = nib.load(p).get_fdata(dtype=np.float32)
    header = D.nifti2_header_bytes(p)
    assert D.holds_plain_float32(header, p, Y)
    assert not D.holds_plain_float32(header, p, np.ascontiguousarray(Y[::-1]))
    assert not D.holds_plain_float32(header + b"\0" * 4, p, Y)
    assert ds.bold("01", "r2").shape == (4, V32) and parsed[-1] == "r2.dtseries.nii"  # another header
    # scl_slope 2: nibabel scales the values, so the header is never taken as plain float32
    raw = bytearray(open(p, "rb").read())
    raw[176:184] = np.array([2.0], "<f8").tobytes()
    open(copy, "wb").write(bytes(raw))
    for _ in range(2):
        Y, _, _ = D._load_cifti_series(copy)
        assert np.array_equal(Y, 2 * nib.load(p).get_fdata(dtype=np.float32))
    assert parsed[-2:] == ["copy.dtseries.nii"] * 2


# ------------------------------------------------------------------------------ bad dataset.toml
def test_missing_toml(tmp_path):
    e = _raises(tmp_path, "dataset.toml not found")
    assert e.path.endswith("dataset.toml")
    with pytest.raises(DatasetError, match="folder not found"):
        load_dataset(tmp_path / "nope")


@pytest.mark.parametrize(
    "text, match",
    [
        ("[dataset\nname = 1", "invalid TOML"),
        ('[[runs]]\nid = "r1"\nn_trs = 3\n', r"missing \[dataset\]"),
        ('[dataset]\nname = "x"\nspace = "fsaverage5"\n[[runs]]\nid = "r"\nn_trs = 3\n',
         "missing the key 'tr'"),
        ('[dataset]\nname = "x"\ntr = 1\nspace = "fsLR"\n[[runs]]\nid = "r"\nn_trs = 3\n',
         "unknown space 'fsLR'"),
        ('[dataset]\nname = "x"\ntr = -1\nspace = "fsLR32k"\n[[runs]]\nid = "r"\nn_trs = 3\n',
         "tr must be a positive"),
        ('[dataset]\nname = "x"\ntr = 1\nspace = "fsLR32k"\n', r"no \[\[runs\]\]"),
        ('[dataset]\nname = "x"\ntr = 1\nspace = "fsLR32k"\n[[runs]]\nid = "r"\n',
         "missing the key 'n_trs'"),
        ('[dataset]\nname = "x"\ntr = 1\nspace = "fsLR32k"\n[[runs]]\nid = "r"\nn_trs = 2.5\n',
         "n_trs must be a positive integer"),
        ('[dataset]\nname = "x"\ntr = 1\nspace = "fsLR32k"\n[[runs]]\nid = "r"\nn_trs = 2\n'
         '[[runs]]\nid = "r"\nn_trs = 2\n', "appears twice"),
        ('[dataset]\nname = "x"\ntr = 1\nspace = "fsLR32k"\n[[runs]]\nid = "../r"\nn_trs = 2\n',
         "file name"),
    ],
)
def test_bad_toml(tmp_path, text, match):
    (tmp_path / "dataset.toml").write_text(text)
    e = _raises(tmp_path, match)
    assert "dataset.toml" in str(e)


# ------------------------------------------------------------------------------ bad TSVs
def _tsv_error(root, run, match):
    ds = load_dataset(root)
    with pytest.raises(DatasetError, match=match) as info:
        ds.timeline(run)
    assert f"{run}.tsv" in str(info.value)
    assert any(f"{run}.tsv" in p for p in ds.validate())
    return info.value


def test_tsv_row_count(ds_root):
    _write_tsv(os.path.join(ds_root, "stimuli", "r1.tsv"), TSV["r1"][:4])
    _tsv_error(ds_root, "r1", "has 4 rows, dataset.toml says n_trs = 5")


def test_tsv_non_contiguous_tr(ds_root):
    rows = list(TSV["r1"])
    rows[2] = ("3",) + rows[2][1:]
    _write_tsv(os.path.join(ds_root, "stimuli", "r1.tsv"), rows)
    _tsv_error(ds_root, "r1", "line 4: the tr column must count 0, 1, 2")
    rows[2] = ("two",) + rows[2][1:]
    _write_tsv(os.path.join(ds_root, "stimuli", "r1.tsv"), rows)
    _tsv_error(ds_root, "r1", "tr must be an integer, got 'two'")


def test_tsv_missing_column(ds_root):
    _write_tsv(os.path.join(ds_root, "stimuli", "r2.tsv"), [r[:3] for r in TSV["r2"]],
               header=("tr", "frame", "caption"))
    _tsv_error(ds_root, "r2", "missing column.*segment")


def test_tsv_missing_file(ds_root):
    os.remove(os.path.join(ds_root, "stimuli", "r2.tsv"))
    _tsv_error(ds_root, "r2", "not found")


def test_tsv_missing_frame(ds_root):
    os.remove(os.path.join(ds_root, "frames", "sub", "c.png"))
    e = _tsv_error(ds_root, "r2", "frame 'frames/sub/c.png' not found")
    assert "line 3" in str(e)


def test_tsv_frame_outside_dataset(ds_root):
    rows = list(TSV["r2"])
    rows[0] = ("0", "../secret.png", "", "test")
    _write_tsv(os.path.join(ds_root, "stimuli", "r2.tsv"), rows)
    _tsv_error(ds_root, "r2", "must be relative to the dataset folder")


def test_tsv_frame_linked_outside_dataset(ds_root, tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"not for this dataset")
    os.symlink(outside, os.path.join(ds_root, "frames", "link.png"))
    rows = list(TSV["r2"])
    rows[0] = ("0", "frames/link.png", "", "test")
    _write_tsv(os.path.join(ds_root, "stimuli", "r2.tsv"), rows)
    e = _tsv_error(ds_root, "r2", "is a link to .*outside the dataset folder")
    assert "line 2" in str(e)


def test_tsv_captions_are_read_verbatim(ds_root):
    captions = ['"Stop!" she said', '"an unbalanced quote', "it's 'single'", '"""whole"" quoted"']
    rows = [(str(t), "frames/a.png", c, "clip") for t, c in enumerate(captions)]
    _write_tsv(os.path.join(ds_root, "stimuli", "r2.tsv"), rows)
    tl = load_dataset(ds_root).timeline("r2")
    assert tl.caption == ('"Stop!" she said', '"an unbalanced quote', "it's 'single'", '"whole" quoted')


def test_tsv_empty_segment_on_stimulus(ds_root):
    rows = list(TSV["r2"])
    rows[1] = ("1", "frames/b.png", "x", "")
    _write_tsv(os.path.join(ds_root, "stimuli", "r2.tsv"), rows)
    _tsv_error(ds_root, "r2", "empty segment label")


def test_unknown_run(ds_root):
    ds = load_dataset(ds_root)
    with pytest.raises(DatasetError, match="unknown run 'r9'"):
        ds.timeline("r9")
    with pytest.raises(DatasetError, match="unknown run"):
        ds.bold("01", "r9")


# ------------------------------------------------------------------------------ bad BOLD
def test_bold_wrong_n_trs(ds_root):
    np.save(os.path.join(ds_root, "sub-01", "r1.npy"), np.zeros((4, V5), np.float32))
    ds = load_dataset(ds_root)
    with pytest.raises(DatasetError, match="run r1 of sub-01 has 4 TRs, dataset.toml says 5"):
        ds.bold("01", "r1")
    with pytest.raises(DatasetError, match="has 4 TRs"):
        ds.bold_all("01")
    assert any("has 4 TRs" in p for p in ds.validate())


def test_bold_transposed(ds_root):
    np.save(os.path.join(ds_root, "sub-01", "r1.npy"), np.zeros((V5, 5), np.float32))
    with pytest.raises(DatasetError, match="transposed"):
        load_dataset(ds_root).bold("01", "r1")


def test_bold_wrong_n_vertices(ds_root):
    np.save(os.path.join(ds_root, "sub-02", "r2.npy"), np.zeros((4, 100), np.float32))
    with pytest.raises(DatasetError, match="r2.npy: 100 columns, but space fsaverage5 has 20484"):
        load_dataset(ds_root).bold("02", "r2")


def test_bold_nan(ds_root):
    p = os.path.join(ds_root, "sub-01", "r2.npy")
    data = np.load(p)
    data[1, :3] = np.nan
    data[2, 0] = np.inf
    np.save(p, data)
    ds = load_dataset(ds_root)
    with pytest.raises(DatasetError, match=r"4 NaN/infinite values in 3 of 20484 columns"):
        ds.bold("01", "r2")
    Y = ds.bold("01", "r2", nan_policy="zero")
    assert np.isfinite(Y).all() and Y[1, 0] == 0 and Y[2, 0] == 0 and Y[3, 0] == data[3, 0]
    M = ds.bold("01", "r2", nan_policy="mask")  # the whole voxel, for the run
    assert (M[:, :3] == 0).all() and (M[:, 3:] == data[:, 3:]).all()
    with pytest.raises(ValueError, match="nan_policy"):
        ds.bold("01", "r2", nan_policy="drop")
    assert any("4 NaN/infinite" in p for p in ds.validate())


def test_bold_truncated_npy(ds_root):
    p = os.path.join(ds_root, "sub-01", "r1.npy")
    with open(p, "rb") as f:
        raw = f.read()
    with open(p, "wb") as f:
        f.write(raw[: len(raw) // 2])
    ds = load_dataset(ds_root)
    with pytest.raises(DatasetError, match="r1.npy: cannot read .npy"):
        ds.bold("01", "r1")
    with open(p, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(DatasetError, match="cannot read .npy"):
        ds.bold("01", "r1")
    np.save(p, np.array([{"a": 1}], dtype=object))  # pickled objects are refused
    with pytest.raises(DatasetError, match="cannot read .npy"):
        ds.bold("01", "r1")


def test_bold_truncated_cifti(cifti_root):
    root = cifti_root
    ds = load_dataset(root)
    p = os.path.join(root, "sub-01", "r1.dtseries.nii")
    with open(p, "rb") as f:
        raw = f.read()
    with open(p, "wb") as f:  # header intact, data cut
        f.write(raw[: len(raw) - 100_000])
    with pytest.raises(DatasetError, match="r1.dtseries.nii: cannot read"):
        ds.bold("01", "r1")
    with open(p, "wb") as f:  # header cut
        f.write(raw[:200])
    with pytest.raises(DatasetError, match="r1.dtseries.nii: cannot read"):
        ds.bold("01", "r1")
    with open(p, "wb") as f:
        f.write(b"\0" * 50)
    with pytest.raises(DatasetError, match="r1.dtseries.nii"):
        ds.bold("01", "r1")
    problems = ds.validate()
    assert len(problems) == 1 and "r1.dtseries.nii" in problems[0]


def test_bold_missing_or_ambiguous(ds_root):
    ds = load_dataset(ds_root)
    os.remove(os.path.join(ds_root, "sub-02", "r2.npy"))
    with pytest.raises(DatasetError, match="no BOLD file for run 'r2' of sub-02"):
        ds.bold("02", "r2")
    with pytest.raises(DatasetError, match="subject folder not found"):
        ds.bold("07", "r1")
    open(os.path.join(ds_root, "sub-01", "r1.dtseries.nii"), "wb").close()
    with pytest.raises(DatasetError, match="keep one"):
        ds.bold("01", "r1")


def test_validate_collects_problems(ds_root):
    ds = load_dataset(ds_root)
    p = os.path.join(ds_root, "sub-01", "r1.npy")
    data = np.load(p)
    data[:, :7] = 3.0  # seven constant vertices
    np.save(p, data)
    np.save(os.path.join(ds_root, "sub-01", "r3.npy"), data)  # no such run
    os.remove(os.path.join(ds_root, "sub-02", "r2.npy"))
    _write_tsv(os.path.join(ds_root, "stimuli", "r2.tsv"), TSV["r2"][:3])
    problems = ds.validate()
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "7 of 20484 columns are constant" in text
    assert "r3.npy: matches no run" in text
    assert "no BOLD file for run 'r2' of sub-02" in text
    assert "r2.tsv has 3 rows" in text
    assert len(ds.validate(check_bold=False)) == 3  # constant columns need the data
    assert ds.validate(subjects=["01"], check_bold=False) == [
        p for p in problems if "r3.npy" in p or "r2.tsv" in p
    ]


def test_cli_validate_checks_a_dataset_folder_without_computing(ds_root, tmp_path, capsys):
    from alignment.cli import main

    cache = tmp_path / "cache"
    assert main(["--cache", str(cache), "validate", "--dataset", ds_root]) == 0
    assert "dataset OK" in capsys.readouterr().out
    with open(os.path.join(ds_root, "frames", "b.png"), "wb") as f:
        f.write(b"xx")
    os.remove(os.path.join(ds_root, "sub-02", "r2.npy"))
    assert main(["--cache", str(cache), "validate", "--dataset", ds_root, "--json"]) == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["passed"] is False and len(report["problems"]) == 2
    assert not cache.exists() or not any(cache.rglob("*.npy"))  # nothing computed
    assert main(["validate", "--dataset", str(tmp_path / "nowhere")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]


def test_validate_images(ds_root):
    with open(os.path.join(ds_root, "frames", "b.png"), "wb") as f:
        f.write(b"xx")
    ds = load_dataset(ds_root)
    assert ds.validate() == []  # existence only by default
    problems = ds.validate(check_images=True)
    assert len(problems) == 1 and "b.png: cannot read image" in problems[0]


def test_no_subjects(tmp_path):
    root = make_dataset(tmp_path / "ds", subjects=())
    ds = load_dataset(root)
    assert ds.subjects == []
    assert ds.validate() == [f"{ds.root}: no subject folders (sub-<id>/) found"]


# ------------------------------------------------------------------------------ GIfTI BOLD
def test_gifti_bold_pair_reads_as_the_npy_it_was_written_from(ds_root):
    """fsaverage5 BOLD as a per-hemisphere .func.gii pair (the export's writer, read back through
    nibabel by the dataset) gives the same (T, 20484) array, left hemisphere first."""
    from alignment.export import write_gifti

    folder = os.path.join(ds_root, "sub-01")
    Y = np.load(os.path.join(folder, "r1.npy"))
    fp_npy = load_dataset(ds_root).fingerprint("01")
    os.remove(os.path.join(folder, "r1.npy"))
    left, right = write_gifti(os.path.join(folder, "r1"), Y)
    assert (left, right) == (os.path.join(folder, "r1.L.func.gii"), os.path.join(folder, "r1.R.func.gii"))
    ds = load_dataset(ds_root)
    assert ds.bold_path("01", "r1") == left
    np.testing.assert_array_equal(ds.bold("01", "r1"), Y)
    assert ds.validate(["01"]) == []
    fp = ds.fingerprint("01")
    assert fp != fp_npy
    os.utime(right, ns=(1, 1))  # the right hemisphere is part of the BOLD's fingerprint
    assert load_dataset(ds_root).fingerprint("01") != fp


def test_gifti_bold_problems_are_one_line_each(ds_root):
    from alignment.export import write_gifti

    folder = os.path.join(ds_root, "sub-01")
    Y = np.load(os.path.join(folder, "r1.npy"))
    os.remove(os.path.join(folder, "r1.npy"))
    left, right = write_gifti(os.path.join(folder, "r1"), Y)
    os.remove(right)
    ds = load_dataset(ds_root)
    with pytest.raises(DatasetError, match=r"r1.R.func.gii: missing \(a GIfTI run needs both"):
        ds.bold("01", "r1")
    os.remove(left)
    write_gifti(os.path.join(folder, "r1"), Y)
    os.remove(left)
    with pytest.raises(DatasetError, match=r"its left hemisphere .*r1.L.func.gii is missing"):
        ds.bold_path("01", "r1")
    write_gifti(os.path.join(folder, "r1"), Y[:3])
    assert any("run r1 of sub-01 has 3 TRs, dataset.toml says 5" in p for p in ds.validate(["01"]))
    np.save(os.path.join(folder, "r1.npy"), Y)
    with pytest.raises(DatasetError, match="both .*r1.npy and .*r1.L.func.gii exist"):
        ds.bold_path("01", "r1")
    write_gifti(os.path.join(folder, "stray"), Y)
    assert any("stray.L.func.gii: matches no run" in p for p in ds.validate(["01"]))
