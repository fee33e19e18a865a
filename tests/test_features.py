"""AN time series of a dataset: TR expansion, caching, the `extract` command."""

import numpy as np
import pytest
from test_dataset import make_dataset

import alignment.extract
from alignment.cache import Cache
from alignment.cli import main
from alignment.data import load_dataset
from alignment.extract import extract_ans
from alignment.features import FeatureRequest, an_timeseries, array_name, design_matrix
from alignment.models import load_model
from alignment.timing import spm_hrf_convolve, zscore_runs

SPEC = "random:clip:demo-tiny"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return load_dataset(make_dataset(tmp_path_factory.mktemp("features") / "ds"))


@pytest.fixture(scope="module")
def clip():
    return load_model(SPEC)


def test_timeseries_match_direct_extraction(dataset, clip, tmp_path):
    request = FeatureRequest.make(SPEC, {"image": [0, 2], "text": [1]})
    entry = an_timeseries(dataset, request, Cache(tmp_path), adapter=clip)
    timelines = dataset.timelines()
    frames = [None if f is None else dataset.load_frame(f) for tl in timelines for f in tl.frame]
    captions = [c for tl in timelines for c in tl.caption]
    direct = extract_ans(clip, frames, captions, {"image": [0, 2], "text": [1]})
    assert sorted(entry.keys()) == sorted([array_name("image", 0), array_name("image", 2), array_name("text", 1), "runs"])
    for (branch, layer), values in direct.items():
        np.testing.assert_allclose(entry[array_name(branch, layer)], values, atol=1e-5)
    np.testing.assert_array_equal(entry["runs"], dataset.run_index())
    # r1 TR 0 and 1 show the same frame and caption: one extraction, identical rows
    np.testing.assert_array_equal(entry[array_name("image", 0)][0], entry[array_name("image", 0)][1])
    assert entry.meta["n_stimuli"] < sum(dataset.n_trs.values())


def test_second_request_is_served_from_cache(dataset, clip, tmp_path, monkeypatch):
    request = FeatureRequest.make(SPEC, {"text": [0]}, condition="image")
    first = an_timeseries(dataset, request, Cache(tmp_path), adapter=clip)

    def fail(*a, **k):
        raise AssertionError("recomputed a cached result")

    monkeypatch.setattr(alignment.extract, "extract_ans", fail)
    second = an_timeseries(dataset, request, Cache(tmp_path), adapter=clip)
    assert second.key == first.key
    np.testing.assert_array_equal(first[array_name("text", 0)], second[array_name("text", 0)])


def test_condition_and_kind_are_part_of_the_key(dataset, clip, tmp_path):
    cache = Cache(tmp_path)
    keys = {an_timeseries(dataset, FeatureRequest.make(SPEC, {"image": [0]}, kind=k, condition=c), cache, adapter=clip).key
            for k in ("attn", "mlp") for c in ("image+text", "text")}
    assert len(keys) == 4


def test_design_matrix_is_zscored_hrf_convolution(dataset):
    rng = np.random.default_rng(0)
    runs = dataset.run_index()
    A = rng.standard_normal((len(runs), 5))
    X = design_matrix(A, runs, dataset.tr)
    expected = zscore_runs(spm_hrf_convolve(zscore_runs(A, runs), dataset.tr, runs=runs), runs)
    np.testing.assert_allclose(X, expected, atol=1e-5)


def test_extract_command(dataset, tmp_path, capsys):
    code = main(["--cache", str(tmp_path), "extract", "--dataset", str(dataset.root), "--model", SPEC,
                 "--branches", "text", "--layers", "0-1", "--condition", "image"])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 layer arrays of shape (9, 64)" in out
    assert Cache(tmp_path).entries(stage="ans")


def test_extract_command_reports_bad_input(tmp_path, capsys):
    assert main(["--cache", str(tmp_path), "extract", "--dataset", str(tmp_path / "nope"), "--model", SPEC]) == 1
    assert "error:" in capsys.readouterr().err


def test_extract_command_hidden_kind(dataset, tmp_path, capsys):
    code = main(["--cache", str(tmp_path), "extract", "--dataset", str(dataset.root), "--model", "random:roberta:tiny",
                 "--kind", "hidden", "--condition", "text"])
    assert code == 0
    assert "4 layer arrays of shape (9, 64)" in capsys.readouterr().out  # embeddings + 3 blocks
    # METER has no hidden taps: one clear line, nothing cached
    assert main(["--cache", str(tmp_path / "c2"), "extract", "--dataset", str(dataset.root), "--model", "random:meter:tiny",
                 "--kind", "hidden"]) == 1
    assert "no 'hidden' ANs" in capsys.readouterr().err
    assert not Cache(tmp_path / "c2").entries(stage="ans")


def test_region_features_found_through_the_dataset(dataset, tmp_path):
    frames = sorted({frame for run in dataset.runs for frame, _ in dataset.timeline(run).stimulus_keys() if frame})
    rng = np.random.RandomState(0)
    regions = tmp_path / "regions.npz"
    np.savez(regions, keys=np.array(frames), features=rng.randn(len(frames), 4, 16).astype(np.float32),
             boxes=rng.rand(len(frames), 4, 4).astype(np.float32))
    spec = f"random:visualbert:tiny?regions={regions}"
    entry = an_timeseries(dataset, FeatureRequest.make(spec, kind="hidden"), Cache(tmp_path), device="cpu")
    image = entry.arrays[array_name("cross_image", 1)]
    assert image.shape[1] == 64 and np.isfinite(image).all() and image.std() > 0
