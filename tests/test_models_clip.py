"""open_clip adapter, hooks and extraction core (tiny random CLIP, no downloads)."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from alignment.extract import extract_ans
from alignment.models import ModelError, ModelSpec, load_model
from alignment.models.base import capture


@pytest.fixture(scope="module")
def clip():
    return load_model("random:clip:demo-tiny")


def _frames(n, seed=0):
    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 255, (70 + i, 90, 3), dtype=np.uint8)) for i in range(n)]


CAPTIONS = ["a red ball on grass", "two dogs", "", "a very long caption about a city street at night with cars"]


def test_torchvision_imports_with_cpu_torch():
    code = "import alignment, torchvision, open_clip; from transformers import CLIPModel; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("kind", ["attn", "qk", "mlp"])
def test_shapes_every_branch(clip, kind):
    out = extract_ans(clip, _frames(4), CAPTIONS, kind=kind)
    visual = clip.model.visual.transformer.resblocks[0]
    text = clip.model.transformer.resblocks[0]
    expected = {
        "image": {"attn": visual.attn.embed_dim, "qk": visual.attn.num_heads * visual.attn.head_dim, "mlp": visual.mlp.c_fc.out_features},
        "text": {"attn": text.attn.embed_dim, "qk": text.attn.num_heads * text.attn.head_dim, "mlp": text.mlp.c_fc.out_features},
    }
    for branch in ("image", "text"):
        n_layers = len(clip.model.visual.transformer.resblocks if branch == "image" else clip.model.transformer.resblocks)
        assert {layer for b, layer in out if b == branch} == set(range(n_layers))
        for layer in range(n_layers):
            arr = out[(branch, layer)]
            assert arr.shape == (4, expected[branch][kind]) and arr.dtype == np.float32
            assert np.isfinite(arr).all()


def test_attn_hook_equals_manual_attention_output(clip):
    """The attn AN of layer 0 equals the MHA output recomputed by hand from the block input."""
    frames = _frames(2)
    out = extract_ans(clip, frames, ["x", "y"], {"image": [0]}, pooling="mean")
    block = clip.model.visual.transformer.resblocks[0]
    seen = {}
    handle = block.ln_1.register_forward_hook(lambda m, a, o: seen.__setitem__("x", o))
    from alignment.extract import image_tensor

    with torch.no_grad():
        clip.model.visual(image_tensor(clip, frames, [0, 1]))
        handle.remove()
        x = seen["x"]
        manual = block.attn(x, x, x, need_weights=False)[0].mean(dim=1)
    np.testing.assert_allclose(out[("image", 0)], manual.numpy(), atol=1e-5)


def test_hooks_removed_after_capture(clip):
    module = clip.model.visual.transformer.resblocks[0].attn
    before = len(module._forward_hooks)
    with capture(clip, {"image": [0, 1]}, "attn"):
        assert len(module._forward_hooks) == before + 1
    assert len(module._forward_hooks) == before


def test_padding_invariance(clip):
    caption = "a red ball on grass"
    alone = extract_ans(clip, _frames(1), [caption], {"text": None})
    padded = extract_ans(clip, _frames(2), [caption, CAPTIONS[3] * 2], {"text": None})
    for key in alone:
        np.testing.assert_allclose(alone[key][0], padded[key][0], atol=1e-5)


def test_cls_pooling_reads_eot_token(clip):
    mean = extract_ans(clip, _frames(2), CAPTIONS[:2], {"text": [2]})
    cls = extract_ans(clip, _frames(2), CAPTIONS[:2], {"text": [2]}, pooling="cls")
    assert not np.allclose(mean[("text", 2)], cls[("text", 2)])


def test_dual_encoder_text_branch_ignores_image(clip):
    both = extract_ans(clip, _frames(3), CAPTIONS[:3], condition="image+text")
    text_only = extract_ans(clip, _frames(3), CAPTIONS[:3], condition="text")
    image_only = extract_ans(clip, _frames(3), CAPTIONS[:3], condition="image")
    for (branch, layer), arr in both.items():
        if branch == "text":
            np.testing.assert_array_equal(arr, text_only[(branch, layer)])
            assert not np.allclose(arr[:2], image_only[(branch, layer)][:2])
        else:
            np.testing.assert_array_equal(arr, image_only[(branch, layer)])
            assert not np.allclose(arr, text_only[(branch, layer)])


def test_noise_blank_is_deterministic_and_differs_from_grey(clip):
    a = extract_ans(clip, _frames(2), CAPTIONS[:2], {"image": [0]}, condition="text", blank="noise")
    b = extract_ans(clip, _frames(2), CAPTIONS[:2], {"image": [0]}, condition="text", blank="noise")
    grey = extract_ans(clip, _frames(2), CAPTIONS[:2], {"image": [0]}, condition="text")
    np.testing.assert_array_equal(a[("image", 0)], b[("image", 0)])
    assert not np.allclose(a[("image", 0)], grey[("image", 0)])


def test_batching_does_not_change_results(clip):
    full = extract_ans(clip, _frames(4), CAPTIONS, batch_size=4)
    small = extract_ans(clip, _frames(4), CAPTIONS, batch_size=1)
    for key in full:
        np.testing.assert_allclose(full[key], small[key], atol=1e-5)


def test_local_checkpoint_round_trip(clip, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": clip.model.state_dict()}, path)
    other = load_model(f"clip:demo-tiny@{path}")
    a = extract_ans(clip, _frames(2), CAPTIONS[:2], {"image": [1], "text": [1]})
    b = extract_ans(other, _frames(2), CAPTIONS[:2], {"image": [1], "text": [1]})
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_checkpoint_with_wrong_keys_is_refused(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": {"nonsense.weight": torch.zeros(2)}}, path)
    with pytest.raises(ModelError, match="missing keys"):
        load_model(f"clip:demo-tiny@{path}")


def test_pickled_checkpoint_is_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": ModelSpec.parse("clip")}, path)
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        load_model(f"clip:demo-tiny@{path}")


def test_offline_hub_weight_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        load_model("clip:ViT-B-32@openai")
    message = str(err.value)
    assert "\n" not in message and "local path" in message and "clip:ViT-B-32@/path" in message


@pytest.mark.parametrize(
    "spec, match",
    [
        ("nosuchmodel:x", "unknown model architecture"),
        ("clip:NoSuchNet", "unknown open_clip architecture"),
        ("clip:ViT-B-32", "names no weights"),
        ("clip:ViT-B-32@/no/such/file.pt", "not found"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ModelError, match=match):
        load_model(spec)


def test_spec_parsing():
    s = ModelSpec.parse("random:meter:tiny?seed=3")
    assert (s.arch, s.where, s.random, s.seed()) == ("meter", "tiny", True, 3)
    s = ModelSpec.parse("clip:ViT-B-32@/data/x@y.pt")
    assert (s.where, s.weights) == ("ViT-B-32", "/data/x@y.pt")


def test_unknown_kind_and_condition(clip):
    with pytest.raises(ModelError, match="AN kind"):
        extract_ans(clip, _frames(1), ["x"], kind="values")
    with pytest.raises(ModelError, match="condition"):
        extract_ans(clip, _frames(1), ["x"], condition="audio")
    with pytest.raises(ModelError, match="layers 0..5"):
        extract_ans(clip, _frames(1), ["x"], {"image": [9]})
