"""``validate``'s concept checks (alignment.validation.validate_concept_demo) on simulated
concept datasets planted from a tiny random-weight language model: they pass where the planting
is recovered, they fail where the ground truth claims a coupling the data lack, and at SNR 0
nothing is declared. Nothing is downloaded."""

import json

import numpy as np
import pytest

import alignment  # noqa: F401  (makes torchvision importable before transformers)
from alignment.concepts import concept_features
from alignment.data import GROUND_TRUTH_FILE, load_dataset
from alignment.keys import RSAKey
from alignment.models import load_model
from alignment.pipeline import Study
from alignment.simulation import ConceptPlant, build_concept_dataset, concept_source
from alignment.validation import CONCEPT_THRESHOLDS, Validation, validate_concept_demo

MODEL = "random:bert:tiny"
LAYER = 1
SMALL = dict(n_participants=3, n_voxels=200, seed=0)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """The tiny model's concept features under sentences, on the simulated stimuli."""
    root = tmp_path_factory.mktemp("stimuli")

    def extract(stimuli):
        feats = concept_features(load_model(MODEL), stimuli.view(), "sentences")
        extract.out = {(concept_source(MODEL, "text"), layer): X for (_, layer), X in feats.items()}
        return extract.out

    dummy = {("x", 0): np.random.default_rng(0).standard_normal((180, 4))}
    build_concept_dataset(root / "probe", lambda st: extract(st) | dummy, [ConceptPlant("dmn", "x", 0)], **SMALL)
    return extract.out


def _validate(root, cache, truth_edit=None) -> Validation:
    if truth_edit is not None:
        path = root / GROUND_TRUTH_FILE
        path.write_text(json.dumps(truth_edit(json.loads(path.read_text()))))
    study = Study(load_dataset(root), cache, device="cpu")
    key = RSAKey(MODEL, "text", "sentences", n_perm=499, n_boot=50)
    return validate_concept_demo(study, [(key, study.get("rsa", key))])


PLANT = [ConceptPlant("languageLH", concept_source(MODEL, "text"), LAYER, ("sentences",))]


def test_planted_coupling_passes(features, tmp_path):
    root = build_concept_dataset(tmp_path / "planted", features, PLANT, snr=1.0, **SMALL)
    v = _validate(root, tmp_path / "cache")
    assert v.metrics["concept_detection"] == 1.0
    assert v.metrics["concept_null_discoveries"] == 0
    assert v.metrics["concept_planted_checked"] == "1 of 1"
    assert set(v.checks()) == set(CONCEPT_THRESHOLDS)


def test_a_coupling_the_data_lack_fails(features, tmp_path):
    """The ground truth claims the visual network was planted as well: nothing is there, so
    detection fails (and so does the best layer when the layer is identifiable)."""
    root = build_concept_dataset(tmp_path / "planted", features, PLANT, snr=1.0, **SMALL)

    def claim(truth):
        truth["planted"].append({"network": "visual", "paradigm": "sentences",
                                 "source": concept_source(MODEL, "text"), "layer": LAYER})
        return truth

    v = _validate(root, tmp_path / "cache", claim)
    assert v.metrics["concept_detection"] == 0.5
    assert not v.passed and "concept_detection" in v.failed()


def test_nothing_declared_at_snr_zero(features, tmp_path):
    root = build_concept_dataset(tmp_path / "null", features, PLANT, snr=0.0, **SMALL)
    v = _validate(root, tmp_path / "cache")
    assert not v.planted and set(v.checks()) == {"concept_null_discoveries"}
    assert v.metrics["concept_null_discoveries"] == 0 and v.passed


def test_a_planted_coupling_no_result_reads_is_missed(features, tmp_path):
    root = build_concept_dataset(tmp_path / "planted", features, PLANT, snr=1.0, **SMALL)
    study = Study(load_dataset(root), tmp_path / "cache", device="cpu")
    v = validate_concept_demo(study, [])
    assert v.metrics["concept_detection"] == 0.0 and v.metrics["concept_planted_checked"] == "0 of 1"
    assert not v.passed


def test_a_built_concept_demo_is_not_built_again(tmp_path, monkeypatch):
    """The concept demo's dataset is kept when its ground truth has the demo's parameters: no
    model runs again (``demo`` and ``validate`` call it every time)."""
    import alignment.concepts
    from alignment.simulation import CONCEPT_DEMO_PLANTING, build_concept_demo
    from alignment.simulation.concepts import SMALL_CONCEPT_DEMO

    rng = np.random.default_rng(0)
    features = {(p.source, p.layer): rng.standard_normal((180, 6)) for p in CONCEPT_DEMO_PLANTING}
    size = dict(zip(("n_participants", "n_voxels"), SMALL_CONCEPT_DEMO))
    root = build_concept_dataset(tmp_path / "demo", features, CONCEPT_DEMO_PLANTING, snr=0.3, seed=0, **size)

    def refuse(*args, **kwargs):
        raise AssertionError("a model ran again")

    monkeypatch.setattr(alignment.concepts, "concept_features", refuse)
    assert build_concept_demo(root, seed=0, snr=0.3, small=True) == root
    with pytest.raises(AssertionError, match="ran again"):  # another seed: built anew
        build_concept_demo(root, seed=1, snr=0.3, small=True)
