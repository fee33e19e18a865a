"""The ``hidden`` AN kind: every layer's hidden state equals the model's own ``output_hidden_states``.

Tiny random-weight configs built in the test; nothing is downloaded.
"""

import numpy as np
import pytest
import torch
from PIL import Image

import alignment  # noqa: F401  (makes torchvision importable before transformers)
from alignment.conventions import AN_KINDS, layer_name
from alignment.extract import extract_ans
from alignment.models import ModelError, load_model
from alignment.models.base import pool_tokens

CAPTIONS = ["a red ball on grass", "two dogs", "a woman rides a bicycle past a bakery"]


def _frames(n, seed=0):
    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 255, (70 + i, 90, 3), dtype=np.uint8)) for i in range(n)]


def _reference(adapter, frames, captions, branch, pooling):
    """Pooled ``output_hidden_states`` of the model itself, (L + 1) arrays (B, N)."""
    from alignment.extract import image_tensor

    images = image_tensor(adapter, frames, range(len(frames))) if adapter.needs_images else None
    batch = adapter.prepare(images, captions, [branch])
    with torch.no_grad():
        states = adapter.reference_hidden_states(batch, branch) if hasattr(adapter, "reference_hidden_states") \
            else _own_states(adapter, batch, branch)
    mask, cls = batch.token_mask.get(branch), batch.cls_index.get(branch)
    return [pool_tokens(h.float(), mask, cls, pooling).numpy() for h in states]


def _own_states(adapter, batch, branch):
    model, inputs = adapter.model, batch.inputs
    if adapter.spec.arch == "hf-clip":
        if branch == "image":
            return model.vision_model(pixel_values=inputs["pixel_values"], output_hidden_states=True).hidden_states
        return model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                output_hidden_states=True).hidden_states
    return model(**inputs, output_hidden_states=True).hidden_states


EXISTING = ["random:hf-clip:tiny", "random:vit:tiny", "random:roberta:tiny", "minilm"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("spec", EXISTING)
def test_hidden_equals_output_hidden_states(spec, pooling):
    adapter = load_model(spec)
    frames = _frames(3)
    out = extract_ans(adapter, frames, CAPTIONS, kind="hidden", pooling=pooling)
    for branch, b in adapter.branches.items():
        ref = _reference(adapter, frames, CAPTIONS, branch, pooling)
        assert b.layer_count("hidden") == b.n_layers + 1 == len(ref)
        for layer, expected in enumerate(ref):
            np.testing.assert_allclose(out[(branch, layer)], expected, rtol=1e-4, atol=1e-5)
        # the embeddings differ from the first block's output
        assert not np.allclose(out[(branch, 0)], out[(branch, 1)])


def test_hidden_is_an_an_kind_with_study_layer_names():
    assert "hidden" in AN_KINDS
    assert [layer_name("hidden", i) for i in range(3)] == ["emb", "L1", "L2"]
    assert layer_name("attn", 0) == "L1"


@pytest.mark.parametrize("spec", ["random:bridgetower:tiny", "random:meter:tiny", "random:clip:ViT-B-32"])
def test_hidden_refused_where_the_adapter_has_no_hidden_taps(spec):
    adapter = load_model(spec)
    with pytest.raises(ModelError, match="no 'hidden' ANs"):
        extract_ans(adapter, _frames(1), CAPTIONS[:1], kind="hidden")


def test_hidden_layer_range_checked():
    adapter = load_model("random:roberta:tiny")
    n = adapter.branches["text"].layer_count("hidden")
    extract_ans(adapter, [None], ["x"], {"text": [n - 1]}, kind="hidden")
    with pytest.raises(ModelError, match="hidden layers 0..3"):
        extract_ans(adapter, [None], ["x"], {"text": [n]}, kind="hidden")
