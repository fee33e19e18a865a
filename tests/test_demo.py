"""The demo end to end: build, analyse, and recover the planted ground truth (small configuration)."""

import json

import pytest

from alignment.cache import Cache
from alignment.cli import main
from alignment.demo import THRESHOLDS, run_demo, validate_demo, validation_plans

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Other seeds go to their own cache, so the shared one holds only the seed-0 demo."""
    return Cache(tmp_path_factory.mktemp("demo-seeds"))


@pytest.mark.parametrize("seed", [0, 1])
def test_validate_passes_on_small_demo(cache, demo_cache, seed, capsys):
    root = demo_cache if seed == 0 else str(cache.root)  # seed 0 is the shared, prebuilt demo
    assert main(["--cache", root, "validate", "--small", "--seed", str(seed), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name, (op, limit) in THRESHOLDS.items():
        assert result[name] >= limit if op == ">=" else result[name] <= limit, (name, result[name])
    assert result["passed"] is True


def test_seeds_give_different_data(cache, demo_cache):
    a = run_demo(Cache(demo_cache), seed=0, small=True, progress=False).dataset
    b = run_demo(cache, seed=1, small=True, progress=False, plans=validation_plans()).dataset
    assert a.root != b.root
    assert (a.bold("01", a.runs[0]) != b.bold("01", b.runs[0])).any()
    assert a.timeline(a.runs[0]).caption != b.timeline(b.runs[0]).caption


def test_second_demo_run_computes_nothing(demo_cache, monkeypatch):
    cache = Cache(demo_cache)
    run_demo(cache, seed=0, small=True, progress=False)
    import alignment.encoding

    def fail(*a, **k):
        raise AssertionError("recomputed a cached result")

    monkeypatch.setattr(alignment.encoding, "fit_ridge", fail)
    monkeypatch.setattr(alignment.encoding, "fit_atoms_glm", fail)
    run_demo(cache, seed=0, small=True, progress=False)


def test_pure_noise_demo_declares_almost_nothing(cache):
    study = run_demo(cache, seed=2, snr=0.0, small=True, progress=False, plans=validation_plans())
    result = validate_demo(study)
    assert result.metrics["null_false_positive_rate"] <= 0.05
    assert result.passed


def test_variance_partition_and_integration_sites_follow_the_planting(demo_cache):
    """Image patches: unique image-branch variance; text patches: unique text-branch variance;
    the fusion model's unified patches: where it beats the joint ViT + RoBERTa baseline (per
    subject and in the group test across subjects)."""
    import numpy as np

    from alignment.simulation import CLIP_SPEC, METER_SPEC, load_ground_truth
    from alignment.demo import INTEGRATION_BASELINES
    from alignment.pipeline import BandsKey, IntegrationKey, LayerKey
    from alignment.summaries import demo_study

    study = demo_study(demo_cache, small=True)  # read-only: the demo computed both
    truth = load_ground_truth(study.dataset.root)
    unified_all, unplanted_all = True, True  # in every subject (the group test's voxels)
    for i, subject in enumerate(study.dataset.subjects):
        patch = np.asarray(truth["subject_patch"])[i]
        modality = np.where(patch >= 0, np.asarray(truth["patch_modality"])[np.maximum(patch, 0)], "")
        unplanted = patch < 0
        unique = np.asarray(study.get("variance", BandsKey(CLIP_SPEC, ("image", "text"), 1), subject)["unique"])
        img, txt = modality == "image", modality == "text"
        assert unique[0, img].mean() > unique[1, img].mean() + 0.1, subject
        assert unique[1, txt].mean() > unique[0, txt].mean() + 0.1, subject
        assert abs(unique[:, unplanted].mean()) < 0.02
        e = study.get("integration", IntegrationKey(LayerKey(METER_SPEC, "cross_image", 1), INTEGRATION_BASELINES), subject)
        diff, sites = np.asarray(e["diff"]), np.asarray(e["sites"]).astype(bool)
        unified = modality == "unified"
        assert diff[unified].mean() > 0.05, subject
        assert diff[unified].mean() > max(diff[img].mean(), diff[txt].mean()) + 0.1, subject
        assert sites[unplanted].mean() <= 0.05
        unified_all, unplanted_all = unified_all & unified, unplanted_all & unplanted
    from scipy import stats

    from alignment.stats import fisher_z
    from alignment.summaries import integration_group

    key = LayerKey(METER_SPEC, "cross_image", 1)
    group = integration_group(study, key, INTEGRATION_BASELINES)
    entries = [study.get("integration", IntegrationKey(key, INTEGRATION_BASELINES), s) for s in study.dataset.subjects]
    dz = [fisher_z(np.asarray(e["r_vlm"], np.float64)) - fisher_z(np.asarray(e["r_joint"], np.float64)) for e in entries]
    ref = stats.ttest_1samp(np.stack(dz), 0.0, alternative="greater")
    np.testing.assert_allclose(group["p"], np.where(np.isfinite(ref.pvalue), ref.pvalue, 1.0), rtol=1e-4, atol=1e-6)
    assert group["mean_dz"][unified_all].mean() > 0.05
    assert group["sites"][unplanted_all].mean() <= 0.05


def test_core_plan_covers_the_planting_and_full_plan_every_layer(demo_cache):
    """The default plan holds every planted layer (plus a distractor) with the analyses that
    read it, and the baselines integration compares with; ``full`` adds every other layer."""
    from alignment.simulation import DEMO_MODELS, PLANTING
    from alignment.data import load_dataset
    from alignment.demo import INTEGRATION_BASELINES, demo_options, demo_plans, demo_root
    from alignment.pipeline import Study
    from alignment.plan import plan_units

    cache = Cache(demo_cache)  # listing the full plan's layers extracts the ANs it lacks
    study = Study(load_dataset(demo_root(cache, small=True)), cache, demo_options(), device="cpu")

    def units(plans):
        return {(stage, target) for plan in plans
                for stage, target in plan_units(study, plan, baselines=INTEGRATION_BASELINES)}

    core, full = units(demo_plans()), units(demo_plans(full=True))
    mapped = {(t.model, t.branch, t.layer) for stage, t in core if stage == "glm"}
    for p in PLANTING:
        assert {(p.model, p.branch, p.layer), (p.model, p.branch, 0)} <= mapped
    stages = {stage for stage, _ in core}
    assert stages == {"encoding", "glm", "variance", "integration"}
    assert {t.model for stage, t in core if stage == "encoding"} == set(DEMO_MODELS)
    assert core < full
    for spec in DEMO_MODELS:
        for branch, layers in study.branches(spec).items():
            assert {t.layer for stage, t in full if stage == "encoding" and t.model == spec and t.branch == branch
                    and t.condition == "image+text"} == set(layers)
