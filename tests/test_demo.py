"""The demo end to end: build, analyse, and recover the planted ground truth (small configuration)."""

import json

import numpy as np
import pytest

from alignment.cache import Cache
from alignment.cli import main
from alignment.demo import noise_plans, run_demo, validation_plans
from alignment.validation import CONCEPT_THRESHOLDS, THRESHOLDS, validate_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Other seeds go to their own cache, so the shared one holds only the seed-0 demo."""
    return Cache(tmp_path_factory.mktemp("demo-seeds"))


#: checks the small demo fails today, measured on seed 0 (simulation v2: noise beyond AR(1),
#: per-voxel HRF, saturation; 4 runs x 64 TRs): the encoding maps are calibrated (unplanted p < .05
#: 0.029, false-discovery proportion 0.002, precision 0.99) but have little power: the null of a
#: voxel's held-out r has SD 0.14 on 64-TR runs (as wide after detrending each run), so planted
#: voxels with median r 0.49 reach p ~ .002 where BH over 91,282 voxels needs ~5e-5: sensitivity
#: 0.07, and with it the accuracies over all planted voxels (over the detected ones: top AN 0.84,
#: polarity 1.00, modality 1.00); no unified voxel reaches significance against the joint
#: baseline. The default demo (3 subjects x 4 x 150 TRs) has more power but fails as well: sensitivity
#: 0.70, modality on detected voxels 0.75, integration sensitivity 0.37 (polarity stability, 0.84 before
#: mixed BNs, is 0.99 since)
#: (README, "The simulated demo"). Remove the xfail markers when they pass.
KNOWN_FAILURES = "the small demo's encoding maps lack power (sensitivity 0.07) and no unified voxel is a site (see KNOWN_FAILURES)"


def _assert_passes(result: dict):
    for name, check in (THRESHOLDS | CONCEPT_THRESHOLDS).items():
        assert check.meets(result[name]), (name, result[name], check.text())
    assert result["passed"] is True and result["failed"] == []


@pytest.mark.xfail(reason=KNOWN_FAILURES, strict=False)
@pytest.mark.parametrize("seed", [0, 1])
def test_validate_passes_on_small_demo(cache, demo_cache, seed, capsys):
    # seed 0 is the shared, prebuilt demo; seed 1 (another stimulus set, planting and noise) has one
    # subject, which every check but the group maps needs (and validate reads no group map)
    root, subjects = (demo_cache, []) if seed == 0 else (str(cache.root), ["--subjects", "1"])
    code = main(["--cache", root, "validate", "--small", "--seed", str(seed), *subjects, "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    every = THRESHOLDS | CONCEPT_THRESHOLDS
    assert set(every) <= set(result) and set(result["thresholds"]) == set(every)
    _assert_passes(result)
    assert code == 0


def test_validate_prints_every_metric_with_its_rule(demo_cache, capsys):
    main(["--cache", demo_cache, "validate", "--small"])
    out = capsys.readouterr().out
    for name, check in (THRESHOLDS | CONCEPT_THRESHOLDS).items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert check.text() in line and check.doc[:30] in line
    assert out.strip().splitlines()[-1].startswith(("PASSED", "FAILED"))


def test_seeds_give_different_data(cache, demo_cache):
    """Seed 1 is the demo the seed-1 validation built (one build serves both checks)."""
    a = run_demo(Cache(demo_cache), seed=0, small=True, progress=False).dataset
    b = run_demo(cache, seed=1, small=True, progress=False, plans=validation_plans(), n_subjects=1).dataset
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


def test_the_first_maps_come_from_fits_before_any_null(tmp_path, monkeypatch):
    """On a fresh cache the demo first fits the opened view's layer for every subject (the app
    draws those r maps), then computes that layer's encoding maps with their nulls."""
    import alignment.demo

    calls = []

    class Stop(Exception):
        pass

    def record(study, plans, subjects, progress=True, units=(), executor=None, **kw):
        calls.append(([p.analyses for p in plans], [(u.stage, u.target, u.subject) for u in units]))
        if len(calls) == 2:
            raise Stop

    monkeypatch.setattr(alignment.demo, "compute", record)
    with pytest.raises(Stop):
        run_demo(Cache(tmp_path), small=True, progress=False)
    (first_plans, fits), (opening, _) = calls
    assert first_plans == [] and {stage for stage, _, _ in fits} == {"encoding_fit"}
    assert sorted(s for _, _, s in fits) == ["01", "02"] and len({t for _, t, _ in fits}) == 1
    assert opening == [("encoding",)]


@pytest.fixture(scope="module")
def pure_noise(cache):
    """Validation of the pure-noise small demo (seed 2, one subject): only the checks that need
    no planting apply (calibration of the uncorrected p, false discoveries), read from the
    encoding maps (no mapping needed)."""
    study = run_demo(cache, seed=2, snr=0.0, small=True, progress=False, plans=noise_plans(), n_subjects=1)
    return validate_demo(study)


def test_pure_noise_demo_declares_nothing(pure_noise):
    """Measured: no map declares a voxel (false-discovery check 0), p < .05 on 3.4 % of voxels."""
    assert not pure_noise.planted and pure_noise.metrics["encoded_layers"] > 0
    assert set(pure_noise.checks()) == {k for k, c in THRESHOLDS.items() if not c.planted}
    for name in ("null_false_positive_rate", "calibration_p05"):
        assert THRESHOLDS[name].meets(pure_noise.metrics[name]), (name, pure_noise.metrics[name])


@pytest.mark.xfail(reason="measured: p < .01 on 0.34 % of the pure-noise voxels, below the check's 0.4 %: the "
                          "encoding null is slightly conservative on 64-TR runs of AR(1) + 1/f + drift noise",
                   strict=False)
def test_pure_noise_demo_passes_validate(pure_noise):
    assert pure_noise.passed, pure_noise.failed()


# ------------------------------------------------------------------ validate can fail
class _Patched:
    """An entry whose arrays ``changes`` replaces (name -> function of the stored array)."""

    def __init__(self, entry, changes):
        self.entry, self.changes = entry, changes

    def __getitem__(self, name):
        value = self.entry[name]
        return self.changes[name](np.asarray(value)) if name in self.changes else value

    def __getattr__(self, name):
        return getattr(self.entry, name)


def _read_with(monkeypatch, stage: str, changes: dict):
    """Make every ``Study.get`` of ``stage`` return the entry with ``changes`` applied."""
    from alignment.pipeline import Study

    get = Study.get

    def patched(self, name, *args, **kwargs):
        entry = get(self, name, *args, **kwargs)
        return _Patched(entry, changes) if name == stage else entry

    monkeypatch.setattr(Study, "get", patched)


@pytest.fixture(scope="module")
def seed0(demo_cache):
    from alignment.summaries import demo_study

    return demo_study(demo_cache, small=True)  # read-only: the shared demo computed what validate reads


def test_validate_fails_when_encoding_p_values_are_too_small(seed0, monkeypatch):
    """p values 4x too small (q left as it is): calibration fails."""
    right = validate_demo(seed0).metrics["calibration_p05"]
    _read_with(monkeypatch, "encoding", {"p": lambda p: p / 4})
    result = validate_demo(seed0)
    assert {"calibration_p05", "calibration_p01"} <= set(result.failed()) and not result.passed
    assert result.metrics["calibration_p05"] > 2 * right


def test_validate_fails_when_everything_is_declared(seed0, monkeypatch):
    """An encoding that declares every voxel: precision and the false-discovery check fail."""
    _read_with(monkeypatch, "encoding", {"q": np.zeros_like})
    result = validate_demo(seed0)
    assert {"precision", "null_false_positive_rate"} <= set(result.failed())


def test_polarity_is_blind_to_atom_signs_and_a_sign_arbitrary_polarity_fails(seed0, monkeypatch):
    """Flipping every atom (codes and t) is the same factorisation: the link polarity keeps its
    accuracy. Polarity from the sign of t alone (|codes|) flips with the atoms, so validate
    fails on the stored or on the flipped dictionary (on the detected voxels, which pass today)."""
    stored = validate_demo(seed0)
    right = stored.metrics["polarity_accuracy"]
    assert "polarity_accuracy_detected" not in stored.failed()
    _read_with(monkeypatch, "atoms", {"codes": lambda c: -c})
    _read_with(monkeypatch, "glm", {"t": lambda t: -t})
    assert validate_demo(seed0).metrics["polarity_accuracy"] == pytest.approx(right)
    monkeypatch.undo()
    _read_with(monkeypatch, "atoms", {"codes": np.abs})
    broken = validate_demo(seed0)
    _read_with(monkeypatch, "glm", {"t": lambda t: -t})  # on top of |codes|
    broken_flipped = validate_demo(seed0)
    assert "polarity_accuracy_detected" in broken.failed() or "polarity_accuracy_detected" in broken_flipped.failed()


def test_an_untested_unified_label_fails_on_the_additive_voxels(seed0, monkeypatch):
    """"Unified" wherever the full model's mean block difference is positive (no test, no
    significant encoding map): 47-48 % of the additive ViT + RoBERTa voxels get it, and the
    additive check fails; the tested label passes it."""
    import alignment.analyses.modality

    result = validate_demo(seed0)
    assert "unified_additive_false_positive_rate" not in result.failed()
    monkeypatch.setattr(alignment.analyses.modality, "unified_by_test",
                        lambda q_unified, dz_unified, sig_both, fdr_q=0.05: np.asarray(dz_unified) > 0)
    broken = validate_demo(seed0)
    assert "unified_additive_false_positive_rate" in broken.failed()


@pytest.mark.xfail(reason="on the seed-0 small demo the fusion layer predicts the additive voxels worse than the "
                          "ViT baseline alone (mean r 0.31 vs 0.44), so even the each-baseline rule declares none",
                   strict=False)
def test_integration_against_each_baseline_separately_fails(seed0, monkeypatch):
    """Sites declared where the VLM beats the image and the text baseline each (BH over the
    stage's ``p_each``) include additive voxels: the additive false-positive check fails."""
    import alignment.validation
    from alignment.stats import fdr_bh

    result = validate_demo(seed0)
    assert not {"integration_sensitivity", "integration_additive_false_positive_rate"} & set(result.failed())
    q = seed0.options.fdr_q
    monkeypatch.setattr(alignment.validation, "integration_sites",
                        lambda entry: fdr_bh(np.asarray(entry["p_each"], np.float64), q)[0])
    broken = validate_demo(seed0)
    assert "integration_additive_false_positive_rate" in broken.failed()


def test_additive_voxels_are_reached_by_the_joint_baseline_and_are_not_sites(seed0):
    """The additive ViT + RoBERTa patches are within the joint baseline's reach: it predicts them
    as well as the better single baseline, up to the cost of a second band fitted on 64-TR runs
    with the repeat left out (measured: 0.014-0.018 r below the ViT baseline, on patches where the
    text component is weak), and better than the other one; and they are not integration sites."""
    from alignment.demo import INTEGRATION_BASELINES
    from alignment.pipeline import IntegrationKey, LayerKey
    from alignment.simulation import METER_SPEC, load_ground_truth

    truth = load_ground_truth(seed0.dataset.root)
    for i, subject in enumerate(seed0.dataset.subjects):
        patch = np.asarray(truth["subject_patch"])[i]
        additive = (patch >= 0) & (np.asarray(truth["patch_modality"])[np.maximum(patch, 0)] == "additive")
        assert additive.sum() > 100
        e = seed0.get("integration", IntegrationKey(LayerKey(METER_SPEC, "cross_image", 1), INTEGRATION_BASELINES), subject)
        r_joint = np.asarray(e["r_joint"])[additive].mean()
        r_single = sorted((np.asarray(e["r_image"])[additive].mean(), np.asarray(e["r_text"])[additive].mean()))
        assert r_single[1] - 0.03 < r_joint and r_joint > r_single[0] + 0.1, subject
        assert np.asarray(e["sites"])[additive].mean() <= 0.05, subject


@pytest.mark.xfail(reason=KNOWN_FAILURES, strict=False)
def test_variance_partition_and_integration_sites_follow_the_planting(demo_cache):
    """Image patches: unique image-branch variance; text patches: unique text-branch variance;
    the fusion model's unified patches: where it beats the joint ViT + RoBERTa baseline (per
    subject and in the group test across subjects); the additive ViT + RoBERTa patches: the joint
    baseline predicts them better than either baseline alone, and they are not sites."""
    import numpy as np

    from alignment.simulation import CLIP_SPEC, METER_SPEC, load_ground_truth
    from alignment.demo import INTEGRATION_BASELINES
    from alignment.pipeline import BandsKey, IntegrationKey, LayerKey
    from alignment.summaries import demo_study

    study = demo_study(demo_cache, small=True)  # read-only: the demo computed both
    truth = load_ground_truth(study.dataset.root)
    unified_all, unplanted_all, additive_all = True, True, True  # in every subject (the group test's voxels)
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
        additive = modality == "additive"
        r_joint = np.asarray(e["r_joint"])
        assert r_joint[additive].mean() > max(np.asarray(e["r_image"])[additive].mean(),
                                              np.asarray(e["r_text"])[additive].mean()) + 0.05, subject
        assert diff[additive].mean() < diff[unified].mean() - 0.05, subject
        assert sites[additive].mean() <= 0.05, subject
        unified_all, unplanted_all = unified_all & unified, unplanted_all & unplanted
        additive_all = additive_all & additive
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
    assert group["sites"][additive_all].mean() <= 0.05


def test_core_plan_covers_the_planting_and_full_plan_every_layer(demo_cache):
    """The default plan holds every planted layer (plus a distractor) with the analyses that
    read it, and the baselines integration compares with; ``full`` adds every other layer."""
    from alignment.simulation import DEMO_MODELS
    from alignment.data import load_dataset
    from alignment.demo import INTEGRATION_BASELINES, VLM_PLANTING, demo_options, demo_plans, demo_root
    from alignment.pipeline import Study
    from alignment.plan import plan_units

    cache = Cache(demo_cache)  # listing the full plan's layers extracts the ANs it lacks
    study = Study(load_dataset(demo_root(cache, small=True)), cache, demo_options(), device="cpu")

    def units(plans):
        return {(stage, target) for plan in plans
                for stage, target in plan_units(study, plan, baselines=INTEGRATION_BASELINES)}

    core, full = units(demo_plans()), units(demo_plans(full=True))
    mapped = {(t.model, t.branch, t.layer) for stage, t in core if stage == "glm"}
    for p in VLM_PLANTING:  # the additive patches' baselines are encoded, not mapped
        assert {(p.model, p.branch, p.layer), (p.model, p.branch, 0)} <= mapped
    stages = {stage for stage, _ in core}
    assert stages == {"encoding", "glm", "variance", "integration", "crossmodal", "specialization"}
    assert {t.model for stage, t in core if stage == "encoding"} == set(DEMO_MODELS)
    assert core < full
    for spec in DEMO_MODELS:
        for branch, layers in study.branches(spec).items():
            assert {t.layer for stage, t in full if stage == "encoding" and t.model == spec and t.branch == branch
                    and t.condition == "image+text"} == set(layers)


# ------------------------------------------------------------------ the concept demo
def _concept_validation(cache_root, seed: int = 0, snr: float | None = None):
    from alignment.demo import concept_demo_study, concept_rsa_plan
    from alignment.rsa_summary import plan_results
    from alignment.validation import validate_concept_demo

    study = concept_demo_study(cache_root, seed, small=True, read_only=True,
                               **({} if snr is None else {"snr": snr}))
    return validate_concept_demo(study, plan_results(study, concept_rsa_plan(small=True))[0])


def test_demo_builds_the_concept_demo_and_it_recovers_the_planting(demo_cache):
    """Every planted coupling of the small concept demo is detected at its planted layer, and no
    unplanted network is declared (BH over all of them at once)."""
    v = _concept_validation(demo_cache)
    assert v.planted and v.metrics["concept_planted_checked"] == "3 of 3"
    assert v.metrics["concept_results"] == 7  # MiniLM and the dual encoder's text tower x 3 paradigms, its image tower
    for name in ("concept_detection", "concept_null_discoveries"):
        assert CONCEPT_THRESHOLDS[name].meets(v.metrics[name]), (name, v.metrics[name])


@pytest.mark.xfail(reason="measured: with 3 participants (200 voxels) the leave-one-participant-out choice picks "
                          "MiniLM's last layer for the sentences (planted: layer 3; in sample: 3); the default "
                          "concept demo (4 participants) recovers both identifiable plantings", strict=False)
def test_small_concept_demo_recovers_the_planted_layer_out_of_sample(demo_cache):
    assert _concept_validation(demo_cache).metrics["concept_best_layer"] == 1.0


def test_pure_noise_concept_demo_declares_nothing(pure_noise, cache):
    v = _concept_validation(cache.root, seed=2, snr=0.0)
    assert not v.planted and v.metrics["concept_results"] == 7
    assert v.passed, (v.failed(), v.metrics)
