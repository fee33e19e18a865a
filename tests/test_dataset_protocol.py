"""The dataset protocol and the registry of dataset kinds (alignment/data/protocol.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_dataset import RUNS, V5, make_dataset

from alignment.data import (
    GROUND_TRUTH_FILE,
    TR,
    Dataset,
    DatasetError,
    DemoDataset,
    FolderDataset,
    TimeSeriesDataset,
    dataset_kinds,
    detect_kind,
    load_dataset,
    register_dataset_kind,
)
from alignment.data import protocol

CONCEPTS = ("apple", "ball", "dog")


class ConceptDataset:
    """A toy condition-wise dataset: one response map per concept (no runs, no TR)."""

    kind = "toy-concepts"
    sample_unit = "concept"
    space = "fsaverage5"
    n_vertices = V5

    def __init__(self, path):
        with open(os.path.join(path, "concepts.json")) as f:
            spec = json.load(f)
        self.root = os.path.abspath(path)
        self.name = spec["name"]
        self.subjects = spec["subjects"]
        self.concepts = spec["concepts"]

    def bold_all(self, subject):
        rng = np.random.default_rng(int(subject))
        Y = rng.standard_normal((len(self.concepts), self.n_vertices)).astype(np.float32)
        return Y, np.zeros(len(self.concepts), dtype=np.int64)

    def fingerprint(self, subjects=None, *, include_bold=True, content=False):
        return "0" * 64

    def validate(self, subjects=None):
        return []

    def load_frame(self, ref):
        raise DatasetError(f"{ref}: no pictures in this toy dataset")


def _is_concepts(path):
    return os.path.isfile(os.path.join(path, "concepts.json"))


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry: kinds registered by a test vanish after it."""
    monkeypatch.setattr(protocol, "_KINDS", dict(protocol._KINDS))


@pytest.fixture
def concept_root(tmp_path):
    root = tmp_path / "concepts"
    root.mkdir()
    (root / "concepts.json").write_text(json.dumps({"name": "toy", "subjects": ["01", "02"],
                                                    "concepts": list(CONCEPTS)}))
    return str(root)


def test_folder_dataset_is_a_time_series_dataset(tmp_path):
    root = make_dataset(tmp_path / "ds")
    assert detect_kind(root) == "folder"
    ds = load_dataset(root)
    assert type(ds) is FolderDataset and ds.kind == "folder" and ds.sample_unit == TR
    assert isinstance(ds, Dataset) and isinstance(ds, TimeSeriesDataset)
    Y, groups = ds.bold_all("01")
    assert Y.shape == (sum(RUNS.values()), ds.n_vertices) and Y.dtype == np.float32
    np.testing.assert_array_equal(groups, ds.run_index())


def test_demo_kind_is_detected_by_its_ground_truth(tmp_path):
    root = make_dataset(tmp_path / "ds")
    open(os.path.join(root, GROUND_TRUTH_FILE), "w").write("{}")
    assert dataset_kinds().index("demo") < dataset_kinds().index("folder")
    assert detect_kind(root) == "demo"
    ds = load_dataset(os.path.join(root, "dataset.toml"))
    assert type(ds) is DemoDataset and ds.kind == "demo" and isinstance(ds, TimeSeriesDataset)
    assert ds.ground_truth_path == os.path.join(ds.root, GROUND_TRUTH_FILE)
    assert "DemoDataset" in repr(ds)
    # same files, same fingerprint: the kind is not part of any cache key
    folder = load_dataset(root, kind="folder")
    assert type(folder) is FolderDataset and folder.fingerprint() == ds.fingerprint()


def test_a_concept_dataset_satisfies_the_protocol_and_loads_by_kind(registry, concept_root):
    register_dataset_kind("toy-concepts", _is_concepts, ConceptDataset)
    assert dataset_kinds()[0] == "toy-concepts"  # newest first
    assert detect_kind(concept_root) == "toy-concepts"
    ds = load_dataset(concept_root)
    assert isinstance(ds, ConceptDataset) and ds.sample_unit == "concept"
    assert isinstance(ds, Dataset) and not isinstance(ds, TimeSeriesDataset)
    Y, groups = ds.bold_all(ds.subjects[0])
    assert Y.shape == (len(CONCEPTS), V5) and groups.shape == (len(CONCEPTS),)
    assert load_dataset(concept_root, kind="toy-concepts").name == "toy"


def test_registry_errors(registry, concept_root, tmp_path):
    with pytest.raises(ValueError, match="already registered"):
        register_dataset_kind("folder", _is_concepts, ConceptDataset)
    with pytest.raises(ValueError, match="callable"):
        register_dataset_kind("x", "not callable", ConceptDataset)
    with pytest.raises(DatasetError, match="unknown dataset kind 'nope'.*folder"):
        load_dataset(concept_root, kind="nope")

    class Incomplete:
        kind, name, sample_unit = "broken", "broken", "concept"

        def __init__(self, path):
            self.root = path

    register_dataset_kind("broken", _is_concepts, Incomplete)
    with pytest.raises(TypeError, match="kind 'broken'.*lacks .*bold_all.*subjects"):
        load_dataset(concept_root)
    # nothing recognises an empty folder: the folder format's loader says what is missing
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="dataset.toml not found"):
        load_dataset(tmp_path / "empty")


def test_data_imports_nothing_above_it():
    code = ("import json, sys, alignment.data; "
            "print(json.dumps([m for m in sys.modules if m.startswith('alignment.')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    loaded = set(json.loads(out.stdout))
    # below datasets: surface spaces, the shared vocabulary, the TOML schema machinery
    assert loaded <= {"alignment._compat", "alignment.timing", "alignment.conventions", "alignment.spaces",
                      "alignment.schema", "alignment.data", "alignment.data.dataset", "alignment.data.protocol",
                      "alignment.data.hcp", "alignment.data.movie", "alignment.data.video",
                      "alignment.data.pereira"}, loaded
    # the video and HDF5 readers load when an HCP, movie or Pereira dataset is opened, not with the package
    out = subprocess.run([sys.executable, "-c", "import sys, alignment.data; print('av' in sys.modules, "
                          "'h5py' in sys.modules)"], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.split() == ["False", "False"]
