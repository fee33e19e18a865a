"""The ready config of the seed paper's setup (configs/seed_paper.toml) loads and expands to
every model, layer, condition and analysis, without loading a model."""

from collections import Counter
from pathlib import Path

import pytest

from alignment.config import RunConfig
from alignment.conventions import CONDITIONS
from alignment.keys import BandsKey, IntegrationKey, LayerKey, LesionKey
from alignment.models import ModelSpec, load_model
from alignment.plan import plan_units
from alignment.stages import analyses as registered_analyses

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "seed_paper.toml"
CLIP = "clip:ViT-B-32@openai"
METER = "meter:/models/meter_clip16_288_roberta_pretrain.ckpt?tokenizer=/models/roberta-base"
VIT = "vit:google/vit-base-patch16-224"
ROBERTA = "roberta:FacebookAI/roberta-base"
#: layers per branch of each architecture at the config's sizes (METER keeps 11 of CLIP-ViT-B/16's
#: 12 blocks, as the official code does); checked against the built models by the slow test below
LAYOUT = {
    "clip": {"image": 12, "text": 12},
    "meter": {"image": 11, "text": 12, "cross_image": 6, "cross_text": 6},
    "vit": {"image": 12},
    "roberta": {"text": 12},
}


class LayoutStudy:
    """What plan expansion asks of a study: a model's branches and layers (from :data:`LAYOUT`,
    where a real study reads them from the extracted ANs)."""

    def branches(self, spec, kind="attn", condition="image+text"):
        return {b: list(range(n)) for b, n in LAYOUT[ModelSpec.parse(spec).arch].items()}


@pytest.fixture(scope="module")
def units():
    config = RunConfig.load(CONFIG)
    study = LayoutStudy()
    analysis = {stage.name: name for name, stage in registered_analyses().items()}
    # (analysis, target) of every unit asked for, per subject
    return config, [(analysis[stage], target) for plan in config.models
                    for stage, target in plan_units(study, plan, config.analyses, config.baselines)]


def test_loads_and_points_at_an_hcp_pointer(units):
    config, _ = units
    assert config.dataset.endswith("hcp7t.toml")
    assert {m.spec for m in config.models} == {CLIP, METER, VIT, ROBERTA}
    assert (config.baselines.image, config.baselines.text) == (VIT, ROBERTA)
    assert config.baselines.image_layer is None and config.baselines.text_layer is None  # best layer
    for m in config.models:
        ModelSpec.parse(m.spec)  # every spec is well formed


def test_expands_to_every_model_layer_condition_and_analysis(units):
    _, pairs = units
    assert {stage for stage, _ in pairs} == set(registered_analyses())  # every analysis
    encoded = {t for stage, t in pairs if stage == "encoding"}
    for arch, spec in (("clip", CLIP), ("meter", METER), ("vit", VIT), ("roberta", ROBERTA)):
        for branch, n in LAYOUT[arch].items():
            for layer in range(n):  # every layer of every branch, mapped and encoded
                assert LayerKey(spec, branch, layer) in encoded
                assert ("neuron_mapping", LayerKey(spec, branch, layer)) in pairs
    # the fusion layers under the three conditions, with the tested contrasts
    for branch in ("cross_image", "cross_text"):
        for layer in range(6):
            for condition in CONDITIONS:
                assert LayerKey(METER, branch, layer, condition=condition) in encoded
            assert ("crossmodal", LayerKey(METER, branch, layer)) in pairs
    # the conditions change nothing for a dual encoder's towers or the unimodal baselines
    assert {t.condition for t in encoded if t.model != METER} == {"image+text"}
    assert {(t.model, t.branch) for t in encoded if t.condition != "image+text"} == \
        {(METER, "cross_image"), (METER, "cross_text")}
    # integration: every fusion layer (image+text) against the joint ViT + RoBERTa baseline
    sites = [t for stage, t in pairs if stage == "integration"]
    assert len(sites) == 12 and all(isinstance(t, IntegrationKey) and t.vlm.model == METER
                                    and t.vlm.branch.startswith("cross_") and t.vlm.condition == "image+text"
                                    for t in sites)
    # CLIP's two towers at each of its 12 depths: variance partition and specialization tests
    for stage in ("variance_partition", "specialization"):
        bands = [t for s, t in pairs if s == stage]
        assert sorted(b.layer for b in bands) == list(range(12))
        assert all(isinstance(b, BandsKey) and b.model == CLIP and b.branches == ("image", "text") for b in bands)
    lesions = {t.layer.model for s, t in pairs if s == "lesion" and isinstance(t, LesionKey)}
    assert lesions == {CLIP, METER}


def test_unit_counts(units):
    """The requested units per subject (the README quotes them)."""
    _, pairs = units
    counts = Counter(stage for stage, _ in dict.fromkeys(pairs))
    # CLIP 12 + 12 layers, METER 11 + 12 + 6 + 6, ViT 12, RoBERTa 12
    assert counts == {"encoding": 24 + 35 + 2 * 12 + 12 + 12, "neuron_mapping": 24 + 35 + 12 + 12,
                      "lesion": 24 + 35, "ceiling": 1, "variance_partition": 12, "specialization": 12,
                      "integration": 12, "crossmodal": 12}


@pytest.mark.slow
def test_layout_is_that_of_the_architectures():
    """:data:`LAYOUT` is what the adapters build (random weights: nothing is downloaded)."""
    for arch, spec in (("clip", "random:clip:ViT-B-32"), ("meter", "random:meter:base"),
                       ("vit", "random:vit:base"), ("roberta", "random:roberta:base")):
        adapter = load_model(spec)
        assert {b: br.n_layers for b, br in adapter.branches.items()} == LAYOUT[arch], spec
