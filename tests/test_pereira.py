"""The Pereira 2018 loader: synthetic ``.mat`` files in Pereira's structure, written as MATLAB v5
(scipy) and v7.3 (HDF5 in MATLAB's layout), read back through the dataset protocol."""

import os
import shutil

import h5py
import numpy as np
import pytest

from alignment.data import Dataset, DatasetError, load_dataset
from alignment.data.pereira import (PARADIGMS, PereiraDataset, mat_cell, pereira_contents, read_mat,
                                    write_pereira_mat)

C, V = 180, 40
DIMS = (4, 5, 3)
ATLASES = {"languageLH": [[1, 2, 3, 4, 5], [6, 7, 8]], "languageRH": [[9]], "visual": [[20, 21, 22, 23]]}
CONCEPTS = [f"concept{i:03d}" for i in range(C)]


# --------------------------------------------------------------------------------------------
# writers: MATLAB v5 (scipy) and v7.3 (HDF5 in MATLAB's layout)
# --------------------------------------------------------------------------------------------
_cell = mat_cell


def _contents(examples, concepts=CONCEPTS, atlases=ATLASES, n_voxels=None):
    """The variables of a Pereira file: examples (C, V), keyConcept (C × 1 cell), meta
    (describing ``n_voxels`` columns, default those of ``examples``)."""
    v = examples.shape[1] if n_voxels is None else n_voxels
    coords = np.array(list(np.ndindex(*DIMS)))[:v] + 1  # 1-based positions
    contents = pereira_contents(np.zeros((examples.shape[0], v)), concepts, atlases, coords, DIMS)
    contents["examples"] = examples
    return contents


write_v5 = write_pereira_mat


_MAT73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2026 HDF5 schema 1.00 ."


def write_v73(path, contents):
    """MATLAB's v7.3 layout: a 512-byte user block with the MAT header, every array stored
    transposed with a MATLAB_class attribute, chars as uint16, cells as object references into
    ``#refs#``, structs as groups."""
    counter = [0]
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def put(group, name, value):
            if isinstance(value, dict):
                g = group.create_group(name)
                g.attrs["MATLAB_class"] = np.bytes_("struct")
                for k, v in value.items():
                    put(g, k, v)
                return g
            if isinstance(value, str):
                codes = np.array([[ord(ch) for ch in value]], dtype=np.uint16)  # MATLAB 1 × n
                ds = group.create_dataset(name, data=codes.T)
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
                return ds
            value = np.asarray(value) if not isinstance(value, np.ndarray) else value
            if value.dtype == object:
                ref_arr = np.empty(value.shape, dtype=h5py.ref_dtype)
                for idx in np.ndindex(value.shape):
                    counter[0] += 1
                    ref_arr[idx] = put(refs, f"r{counter[0]}", value[idx]).ref
                ds = group.create_dataset(name, data=ref_arr.T, dtype=h5py.ref_dtype)
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
                return ds
            value = np.atleast_2d(np.asarray(value, dtype=np.float64))
            ds = group.create_dataset(name, data=value.T)
            ds.attrs["MATLAB_class"] = np.bytes_("double")
            return ds

        for k, v in contents.items():
            put(f, k, np.asarray(v, dtype=np.float64) if isinstance(v, float) else v)
    header = _MAT73_HEADER.ljust(116) + b"\0" * 8 + b"\x00\x02IM"
    with open(path, "r+b") as fh:
        fh.write(header)


WRITERS = {"v5": write_v5, "v73": write_v73}


def make_dataset(root, fmt="v5", participants=("M01", "P01"), seed=0, **overrides):
    """A Pereira tree; returns {participant: {paradigm: examples}}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for sid in participants:
        os.makedirs(root / sid, exist_ok=True)
        truth[sid] = {}
        for paradigm in PARADIGMS:
            Y = rng.standard_normal((C, V))
            truth[sid][paradigm] = Y
            contents = _contents(Y)
            contents.update(overrides)
            WRITERS[fmt](str(root / sid / f"data_180concepts_{paradigm}.mat"), contents)
    return truth


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["v5", "v73"])
def test_read_mat_round_trip(tmp_path, fmt):
    Y = np.arange(C * V, dtype=np.float64).reshape(C, V)
    path = tmp_path / "x.mat"
    WRITERS[fmt](str(path), _contents(Y))
    if fmt == "v73":
        assert h5py.is_hdf5(path) and path.read_bytes()[:10] == b"MATLAB 7.3"
    out = read_mat(path)
    np.testing.assert_array_equal(out["examples"], Y)
    assert out["keyConcept"].shape == (C, 1) and out["keyConcept"][5, 0] == "concept005"
    meta = out["meta"]
    assert list(meta["atlases"].ravel()) == list(ATLASES)
    assert meta["roiColumns"].shape == (1, 3) and meta["roiColumns"][0, 0].shape == (2, 1)
    np.testing.assert_array_equal(meta["roiColumns"][0, 0][1, 0].ravel(), [6, 7, 8])
    assert meta["rois"][0, 2][0, 0] == "visual_roi0"
    assert meta["coordToCol"].shape == DIMS and meta["colToCoord"].shape == (V, 3)


@pytest.mark.parametrize("fmt", ["v5", "v73"])
def test_dataset_round_trip(tmp_path, fmt):
    truth = make_dataset(tmp_path, fmt)
    ds = load_dataset(tmp_path)
    assert isinstance(ds, Dataset) and ds.kind == "pereira2018" and ds.sample_unit == "concept"
    assert ds.subjects == ["M01", "P01"] and ds.concepts == CONCEPTS
    assert ds.n_vertices == V and ds.n_voxels("P01") == V
    assert ds.networks() == ["languageLH", "languageRH", "visual"]
    np.testing.assert_array_equal(ds.network_columns("M01", "languageLH"), np.arange(8))
    np.testing.assert_array_equal(ds.network_columns("M01", "languageRH"), [8])
    for paradigm in PARADIGMS:
        Y, groups = ds.bold_all("P01", paradigm)
        assert Y.dtype == np.float32 and Y.shape == (C, V)
        np.testing.assert_allclose(Y, truth["P01"][paradigm], rtol=1e-6)
        np.testing.assert_array_equal(groups, np.arange(C))
    Yv = ds.responses("M01", "sentences", network="visual")
    np.testing.assert_allclose(Yv, truth["M01"]["sentences"][:, 19:23], rtol=1e-6)
    avg = ds.responses("M01", "average")
    np.testing.assert_allclose(avg, np.mean([truth["M01"][p] for p in PARADIGMS], axis=0), atol=1e-6)
    meta = ds.meta("M01")
    assert meta.dims == DIMS and meta.roi_names[0] == ["languageLH_roi0", "languageLH_roi1"]
    np.testing.assert_array_equal(meta.multimask[2][19:23], 1)
    assert ds.validate() == []
    with pytest.raises(DatasetError, match="unknown network 'dmn'.*languageLH"):
        ds.network_columns("M01", "dmn")


def test_both_formats_read_alike(tmp_path):
    make_dataset(tmp_path / "a", "v5", seed=3)
    make_dataset(tmp_path / "b", "v73", seed=3)
    a, b = PereiraDataset(tmp_path / "a"), PereiraDataset(tmp_path / "b")
    for sid in a.subjects:
        np.testing.assert_array_equal(a.responses(sid, "wordclouds"), b.responses(sid, "wordclouds"))
        np.testing.assert_array_equal(a.network_columns(sid, "visual"), b.network_columns(sid, "visual"))
    # the fingerprint does not depend on where the data lie, and changes with the data
    assert a.fingerprint(content=True) != b.fingerprint(content=True)
    # without the brain data: the concept words only, whatever the format
    assert PereiraDataset(tmp_path / "a").fingerprint(include_bold=False) == \
        PereiraDataset(tmp_path / "b").fingerprint(include_bold=False)
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    assert PereiraDataset(tmp_path / "c").fingerprint(content=True) == a.fingerprint(content=True)
    assert PereiraDataset(tmp_path / "c").fingerprint(include_bold=False) == a.fingerprint(include_bold=False)


def test_stimuli(tmp_path):
    make_dataset(tmp_path, participants=("M01",))
    stim = tmp_path / "stimuli"
    (stim / "pictures" / "Concept001").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 6), (200, 10, 10)).save(stim / "pictures" / "Concept001" / "a.png")
    (stim / "sentences.tsv").write_text("concept\tsentence\nconcept001\tA first sentence.\n"
                                        "concept001\tA second one.\nconcept002\tOther.\n")
    (stim / "clouds.csv").write_text('concept,words\nconcept001,"red, apple ,fruit"\n')
    (tmp_path / "pereira2018.toml").write_text(
        '[pereira2018]\nroot = "."\npictures = "stimuli/pictures"\n'
        'sentences = "stimuli/sentences.tsv"\nwordclouds = "stimuli/clouds.csv"\n')
    ds = load_dataset(tmp_path / "pereira2018.toml")
    assert ds.stimuli("concept001", "sentences") == {"word": "concept001",
                                                     "sentences": ["A first sentence.", "A second one."]}
    assert ds.stimuli("concept001", "wordclouds")["wordcloud"] == ["red", "apple", "fruit"]
    refs = ds.stimuli("concept001", "pictures")["pictures"]
    assert refs == ["pictures:Concept001/a.png"]
    assert ds.load_frame(refs[0]).size == (8, 6)
    assert ds.stimuli("concept002", "pictures")["pictures"] == []
    assert ds.validate() == []
    with pytest.raises(DatasetError, match="unknown concept 'zebra'"):
        ds.sentences("zebra")


def test_categories(tmp_path):
    make_dataset(tmp_path, participants=("M01",))
    (tmp_path / "categories.tsv").write_text("concept\tcategory\nConcept001\tfruit\nconcept002\ttool\n")
    (tmp_path / "pereira2018.toml").write_text('[pereira2018]\nroot = "."\ncategories = "categories.tsv"\n')
    ds = load_dataset(tmp_path)
    assert ds.categories() == {"concept001": "fruit", "concept002": "tool"}  # case-insensitive match
    assert ds.validate() == []
    assert PereiraDataset(tmp_path).categories() == {}  # without the option
    # a category table is no stimulus: the fingerprint ignores it
    assert ds.fingerprint() == PereiraDataset(tmp_path).fingerprint()
    (tmp_path / "categories.tsv").write_text("concept\tcategory\nzebra\tanimal\n")
    assert any("1 unknown concepts, e.g. 'zebra'" in p for p in ds.validate())
    (tmp_path / "categories.tsv").write_text("concept\tkind\nconcept001\tfruit\n")
    with pytest.raises(DatasetError, match="needs the columns concept, category; missing category"):
        ds.categories()


# --------------------------------------------------------------------------------------------
# bad input: one clear line
# --------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    make_dataset(tmp_path, participants=("M01",))
    os.remove(tmp_path / "M01" / "data_180concepts_sentences.mat")
    with pytest.raises(DatasetError, match=r"data_180concepts_sentences\.mat: file not found \(participant M01"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no participant folder"):
        PereiraDataset(tmp_path / "M01")


@pytest.mark.parametrize("fmt", ["v5", "v73"])
def test_wrong_concept_count(tmp_path, fmt):
    Y = np.zeros((179, V))
    make_dataset(tmp_path, fmt, participants=("M01",), examples=Y, keyConcept=_cell(CONCEPTS[:179], (179, 1)))
    ds = load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="examples has 179 concepts .*expected 180"):
        ds.bold_all("M01")
    assert any("179 concepts" in p for p in ds.validate())


@pytest.mark.parametrize("fmt", ["v5", "v73"])
def test_inconsistent_voxel_counts(tmp_path, fmt):
    # meta describes 40 voxels, examples has 39 columns
    make_dataset(tmp_path, fmt, participants=("M01",), examples=np.zeros((C, V - 1)))
    ds = load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="inconsistent voxel counts"):
        ds.bold_all("M01")


def test_paradigms_disagree(tmp_path):
    make_dataset(tmp_path, participants=("M01",))
    # another paradigm's file of the same participant with fewer voxels
    contents = _contents(np.zeros((C, V - 5)), atlases={"visual": [[1, 2]]})
    write_v5(str(tmp_path / "M01" / "data_180concepts_sentences.mat"), contents)
    ds = PereiraDataset(tmp_path)
    ds.bold_all("M01", "pictures")
    with pytest.raises(DatasetError, match="35 voxels, the participant's other paradigms have 40"):
        ds.bold_all("M01", "sentences")
    # concepts in another order
    write_v5(str(tmp_path / "M01" / "data_180concepts_wordclouds.mat"),
             _contents(np.zeros((C, V)), concepts=CONCEPTS[::-1]))
    with pytest.raises(DatasetError, match="another order"):
        ds.bold_all("M01", "wordclouds")


def test_not_a_mat_file(tmp_path):
    make_dataset(tmp_path, participants=("M01",))
    (tmp_path / "M01" / "data_180concepts_pictures.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DatasetError, match="not a readable MATLAB file"):
        PereiraDataset(tmp_path).bold_all("M01")
