"""The run pipeline: TOML configs, cached stages, resuming, planted recovery end to end."""

import os
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import alignment.encoding
from alignment.cache import Cache
from alignment.cli import main
from alignment.config import RunConfig
from alignment.data import load_dataset
from alignment.pipeline import Baselines, BandsKey, IntegrationKey, LayerKey, ModelPlan, Options, Study
from alignment.plan import plan_units, run_config
from alignment.stages import Unit

SPEC = "random:clip:demo-tiny"
V = 20484  # fsaverage5
RUNS, N_TRS = ("r1", "r2", "r3"), 40


def _frame(rng, path):
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[:] = rng.integers(0, 255, 3)
    y, x = rng.integers(0, 24, 2)
    arr[y:y + 8, x:x + 8] = rng.integers(0, 255, 3)
    Image.fromarray(arr).save(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """fsaverage5 dataset whose first 200 voxels follow AN 3 of CLIP image layer 2 (HRF-convolved)."""
    from alignment.features import FeatureRequest, an_timeseries, array_name, design_matrix

    root = tmp_path_factory.mktemp("pipeline") / "ds"
    (root / "stimuli").mkdir(parents=True)
    (root / "frames").mkdir()
    rng = np.random.default_rng(0)
    toml = ['[dataset]', 'name = "planted"', "tr = 1.0", 'space = "fsaverage5"', ""]
    words = "red blue green ball dog car tree house".split()
    for run in RUNS:
        toml += ["[[runs]]", f'id = "{run}"', f"n_trs = {N_TRS}", ""]
        lines = ["tr\tframe\tcaption\tsegment"]
        for t in range(N_TRS):
            name = f"frames/{run}_{t}.png"
            _frame(rng, root / name)
            lines.append(f"{t}\t{name}\t{' '.join(rng.choice(words, 3))}\t{run}-clip{t // 10}")
        (root / "stimuli" / f"{run}.tsv").write_text("\n".join(lines) + "\n")
    (root / "dataset.toml").write_text("\n".join(toml))
    ds = load_dataset(root)
    cache = Cache(tmp_path_factory.mktemp("ans-cache"))
    entry = an_timeseries(ds, FeatureRequest.make(SPEC, None), cache)
    regressor = design_matrix(np.asarray(entry[array_name("image", 2)]), ds.run_index(), ds.tr)[:, 3]
    (root / "sub-01").mkdir()
    for i, run in enumerate(RUNS):
        sl = slice(i * N_TRS, (i + 1) * N_TRS)
        noise = rng.standard_normal((N_TRS, V)).astype(np.float32)
        noise[:, :200] += 1.5 * regressor[sl, None]
        np.save(root / "sub-01" / f"{run}.npy", noise)
    return root


def _config(tmp_path, dataset, extra=""):
    path = tmp_path / "run.toml"
    path.write_text(f"""
[study]
dataset = "{dataset}"
device = "cpu"

[[models]]
spec = "{SPEC}"
branches = ["image"]
layers = [1, 2]
kinds = ["attn"]
conditions = ["image+text"]
{extra}
[options]
n_atoms = 8
n_null = 100
""")
    return path


def test_run_computes_resumes_and_recovers_planted_voxels(planted, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    config = RunConfig.load(_config(tmp_path, planted))
    done = run_config(config, cache, progress=False)
    assert len(done.requested) == 5  # 2 layers × (encoding, neuron mapping) × 1 subject + its noise ceiling
    study = Study(load_dataset(planted), Cache(cache), config.options)
    enc = study.get("encoding", LayerKey(SPEC, "image", 2), "01")
    scores, q = np.asarray(enc["scores"]), np.asarray(enc["q"])
    assert scores[:200].mean() > 0.5 and abs(scores[200:].mean()) < 0.05
    assert (q[:200] < 0.05).mean() > 0.95 and (q[200:] < 0.05).mean() < 0.01
    table = study.link_table("01", [LayerKey(SPEC, "image", 1), LayerKey(SPEC, "image", 2)])
    planted_an = study.raw_ans(LayerKey(SPEC, "image", 2))[:, 3]
    for voxel in range(0, 200, 20):
        # the planted AN, or one whose time course is the same up to sign (|r| >= 0.95; the
        # link's sign then carries the polarity), as `validate` counts it
        top = table.top_ans(voxel, n=1).iloc[0]
        twin = study.raw_ans(LayerKey(SPEC, "image", int(top["layer"])))[:, int(top["an"])]
        assert (int(top["layer"]), int(top["an"])) == (2, 3) or abs(np.corrcoef(twin, planted_an)[0, 1]) >= 0.95

    # a second run computes nothing
    def fail(*a, **k):
        raise AssertionError("recomputed a cached stage")

    monkeypatch.setattr(alignment.encoding, "fit_ridge", fail)
    monkeypatch.setattr(alignment.encoding, "fit_atoms_glm", fail)
    assert len(run_config(config, cache, progress=False).requested) == 5


def test_nan_and_constant_voxels_are_masked_and_counted(planted, tmp_path, caplog):
    import shutil

    root = shutil.copytree(planted, tmp_path / "ds")
    for run, columns, value in (("r2", slice(0, 5), np.nan), ("r1", slice(300, 305), 3.0)):
        path = root / "sub-01" / f"{run}.npy"
        data = np.load(path)
        data[:, columns] = value
        data[7, 10] = np.inf  # one value suffices to mask a voxel
        np.save(path, data)
    study = Study(load_dataset(root), Cache(tmp_path / "cache"), Options(n_null=100))
    with caplog.at_level("WARNING"):
        enc = study.get("encoding", LayerKey(SPEC, "image", 2), "01")
    masked = study.masked_voxels("01")
    assert np.flatnonzero(masked).tolist() == [0, 1, 2, 3, 4, 10, 300, 301, 302, 303, 304]
    assert "11 of 20484 voxels masked" in caplog.text
    assert (study.bold("01")[:, masked] == 0).all() and np.isfinite(study.bold("01")).all()
    scores, q = np.asarray(enc["scores"]), np.asarray(enc["q"])
    assert (scores[masked] == 0).all() and not (q[masked] < 0.05).any()
    planted_left = np.setdiff1d(np.arange(200), np.flatnonzero(masked))
    assert (q[planted_left] < 0.05).mean() > 0.95  # the rest of the map is untouched
    # the result says so, and the app shows it beside the map
    from alignment.summaries import encoding_notes

    (note,) = encoding_notes(study, "01", LayerKey(SPEC, "image", 2))
    assert note.startswith("sub-01: 11 of 20,484 voxels masked")


def test_interrupted_run_resumes_where_it_stopped(planted, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    config = RunConfig.load(_config(tmp_path, planted))
    real = alignment.encoding.fit_ridge
    calls = []

    def crash_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(alignment.encoding, "fit_ridge", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_config(config, cache, progress=False)
    monkeypatch.setattr(alignment.encoding, "fit_ridge", real)
    counted = []
    monkeypatch.setattr(alignment.encoding, "fit_ridge", lambda *a, **k: counted.append(1) or real(*a, **k))
    run_config(config, cache, progress=False)
    assert len(counted) == 1  # only the unit that was interrupted


def test_options_change_the_key(planted, tmp_path):
    ds = load_dataset(planted)
    key = LayerKey(SPEC, "image", 1)
    a = Study(ds, Cache(tmp_path), Options(n_null=50)).get("encoding", key, "01")
    b = Study(ds, Cache(tmp_path), Options(n_null=60)).get("encoding", key, "01")
    assert a.key != b.key


def test_run_command(planted, tmp_path, capsys):
    assert main(["--cache", str(tmp_path / "c"), "run", str(_config(tmp_path, planted))]) == 0
    assert "5 analysis units up to date" in capsys.readouterr().out


def test_missing_subject_is_reported(planted, tmp_path):
    path = _config(tmp_path, planted)
    path.write_text(path.read_text().replace('device = "cpu"', 'device = "cpu"\nsubjects = ["09"]'))
    with pytest.raises(ValueError, match="not in"):
        run_config(RunConfig.load(path), tmp_path / "c", progress=False)


def test_relative_dataset_paths_resolve_against_the_config(planted, tmp_path):
    path = _config(tmp_path, os.path.relpath(planted, tmp_path))
    assert RunConfig.load(path).dataset == str(planted)


# ------------------------------------------------------------------ variance partition, integration
def test_variance_partition_stage_attributes_planted_voxels_to_their_branch(planted, tmp_path):
    config = _config(tmp_path, planted, extra='analyses = ["variance_partition"]\n')
    config.write_text(config.read_text().replace('branches = ["image"]', 'branches = ["image", "text"]')
                      .replace("layers = [1, 2]", "layers = [2]") + "banded_iter = 3\n")
    cfg = RunConfig.load(config)
    done = run_config(cfg, tmp_path / "cache", progress=False)
    bands = BandsKey(SPEC, ("image", "text"), 2)
    assert done.requested == {Unit("variance", bands, "01")}
    v = Study(load_dataset(planted), Cache(tmp_path / "cache"), cfg.options).get("variance", bands, "01")
    unique, r2, shared = np.asarray(v["unique"]), np.asarray(v["r2"]), np.asarray(v["shared"])
    # the first 200 voxels follow an image-branch AN: unique image variance, no unique text variance
    assert unique[0, :200].mean() > 0.4 and abs(unique[1, :200].mean()) < 0.05
    assert abs(unique[:, 200:].mean()) < 0.05 and r2[200:].mean() < 0.02
    np.testing.assert_allclose(r2, unique.sum(0) + shared, atol=1e-5)  # the partition identity


def test_integration_stage_equals_the_library_test_on_the_same_predictions(planted, tmp_path):
    """The stage = the VLM's fit_ridge prediction against the joint banded ridge over both
    baselines' designs → integration_sites, with the baselines' best layers chosen from their
    encoding maps."""
    from alignment.analyses.integration import integration_sites
    from alignment.encoding import fit_banded_ridge, fit_ridge
    from alignment.features import design_matrix

    baselines = Baselines("random:vit:tiny", "random:roberta:tiny")
    o = Options(n_null=20, block_len=10, banded_iter=3)
    study = Study(load_dataset(planted), Cache(tmp_path / "cache"), o)
    vlm = LayerKey(SPEC, "image", 2)
    entry = study.get("integration", IntegrationKey(vlm, baselines), "01")
    chosen = entry.meta["baselines"]
    keys = [vlm, LayerKey(**chosen["image"]), LayerKey(**chosen["text"])]
    for k, spec in zip(keys[1:], (baselines.image, baselines.text)):
        layers = study.branches(spec)[k.branch]
        means = [np.mean(np.asarray(study.get("encoding", LayerKey(spec, k.branch, lay), "01")["scores"])) for lay in layers]
        assert k.layer == layers[int(np.argmax(means))]  # the best baseline layer
    Y = study.bold("01")
    runs = study.runs
    X = [design_matrix(study.raw_ans(k), runs, 1.0) for k in keys]
    preds = [fit_ridge(x, Y, runs, alphas=np.asarray(o.alphas), return_predictions=True).predictions for x in X]
    joint = fit_banded_ridge(X[1:], Y, runs, alphas=np.asarray(o.alphas), n_iter=3, random_state=o.seed,
                             return_predictions=True).predictions
    ref = integration_sites(Y, preds[0], joint, runs=runs, block_len=10, pred_image=preds[1], pred_text=preds[2])
    for name in ("r_vlm", "r_joint", "r_image", "r_text", "diff", "p", "q", "p_each"):
        np.testing.assert_allclose(np.asarray(entry[name]), getattr(ref, name), atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(np.asarray(entry["sites"]).astype(bool), ref.sites)
    # the option that sets the block test's λ is part of the key
    bound = Study(load_dataset(planted), Cache(tmp_path / "cache"), replace(o, block_inflation="bound"))
    assert study.key("integration", IntegrationKey(vlm, baselines), "01") != \
        bound.key("integration", IntegrationKey(vlm, baselines), "01")
    # the baselines are not tested against themselves
    units = plan_units(study, ModelPlan(baselines.image, analyses=("integration",)), baselines=baselines)
    assert units == []


def test_ridge_fits_use_the_gpu_only_when_there_is_one(planted, tmp_path):
    import torch

    ds = load_dataset(planted)
    assert Study(ds, Cache(tmp_path), device="cpu").fit_backend == {"backend": "numpy", "device": "cpu"}
    auto = Study(ds, Cache(tmp_path), device="auto").fit_backend
    assert auto == ({"backend": "torch", "device": "cuda"} if torch.cuda.is_available()
                    else {"backend": "numpy", "device": "cpu"})
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Study(ds, Cache(tmp_path), device="cuda").fit_backend
    assert Study(ds, Cache(tmp_path), device="cpu", voxel_chunk=7).fit_backend["voxel_chunk"] == 7


def test_voxel_chunk_bounds_memory_and_changes_no_result(planted, tmp_path, monkeypatch):
    """A study's voxel_chunk reaches every fit and the GLM; the results equal the default's up to
    float32 rounding and share its cache entries (it keys nothing)."""
    import alignment.encoding as encoding

    ds = load_dataset(planted)
    key = LayerKey(SPEC, "image", 1)
    default = Study(ds, Cache(tmp_path / "a"), device="cpu")
    chunks = []
    for name in ("fit_ridge", "ridge_permutation_null", "fit_atoms_glm"):
        original = getattr(encoding, name)

        def spy(*args, _original=original, **kwargs):
            chunks.append(kwargs.get("voxel_chunk"))
            return _original(*args, **kwargs)
        monkeypatch.setattr(encoding, name, spy)
    small = Study(ds, Cache(tmp_path / "b"), device="cpu", voxel_chunk=13)
    for stage in ("encoding", "glm"):
        a, b = default.get(stage, key, "01", compute=True), small.get(stage, key, "01", compute=True)
        assert a.key == b.key
        for name in a.arrays:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-5, err_msg=f"{stage} {name}")  # float32 rounding
    assert chunks.count(13) >= 3 and set(chunks) <= {None, 13}


def test_an_r_map_is_drawn_from_its_fit_before_its_null(planted, tmp_path):
    """``encoding_fit`` is the encoding stage's fit without its null: the same r and alphas.
    While only the fit is cached, the r map comes from it with no significance (a note says it
    is computing) and what needs significance waits; then the encoding's q is used."""
    from alignment.pipeline import NotCached
    from alignment.summaries import PENDING_SIGNIFICANCE, metric_map, opening_view

    ds, cache = load_dataset(planted), Cache(tmp_path)
    key = LayerKey(SPEC, "image", 2)
    study = Study(ds, cache, Options(n_null=100), device="cpu")
    app = Study(ds, cache, Options(n_null=100), device="cpu", read_only=True)
    fit = study.get("encoding_fit", key, "01")
    early = metric_map(app, "01", key, "r")
    assert early.significant is None and early.note == PENDING_SIGNIFICANCE
    np.testing.assert_array_equal(early.values, fit["scores"])
    assert early.values[:200].mean() > 0.3  # the planted voxels already show
    for metric in ("significant r", "-log10 q"):
        with pytest.raises(NotCached, match="significance still computing"):
            metric_map(app, "01", key, metric)
    enc = study.get("encoding", key, "01")
    for name in ("scores", "alphas"):
        np.testing.assert_array_equal(enc[name], fit[name])
    later = metric_map(app, "01", key, "r")
    assert not later.note and later.significant[:200].mean() > 0.5 and later.significant[200:].mean() < 0.01
    assert opening_view(app)["layer"] == 2
