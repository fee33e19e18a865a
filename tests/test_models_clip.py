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


def _image_block_input(clip, frames, layer: int) -> torch.Tensor:
    """The normalised input of the attention of image block ``layer`` (B, L, d), from a plain forward."""
    from alignment.extract import image_tensor

    seen = {}
    handle = clip.model.visual.transformer.resblocks[layer].ln_1.register_forward_hook(
        lambda m, a, o: seen.__setitem__("x", o))
    try:
        with torch.no_grad():
            clip.model.visual(image_tensor(clip, frames, list(range(len(frames)))))
    finally:
        handle.remove()
    return seen["x"]


def test_attn_hook_equals_manual_attention_output(clip):
    """The attn AN of layer 0 equals the MHA output recomputed by hand from the block input."""
    frames = _frames(2)
    out = extract_ans(clip, frames, ["x", "y"], {"image": [0]}, pooling="mean")
    x = _image_block_input(clip, frames, 0)
    with torch.no_grad():
        manual = clip.model.visual.transformer.resblocks[0].attn(x, x, x, need_weights=False)[0].mean(dim=1)
    np.testing.assert_allclose(out[("image", 0)], manual.numpy(), atol=1e-5)


def test_qk_capture_keeps_every_attention_output(clip):
    """While qk is captured the towers' attention runs from one input projection: every layer's
    attention output (image, and text with its causal mask and padding) stays what it was."""
    plain = extract_ans(clip, _frames(3), CAPTIONS[1:], kind="attn")
    with capture(clip, {"image": None, "text": None}, "qk"):
        during = extract_ans(clip, _frames(3), CAPTIONS[1:], kind="attn")
    assert plain.keys() == during.keys()
    for key in plain:
        np.testing.assert_allclose(during[key], plain[key], atol=1e-5, err_msg=str(key))


def test_qk_equals_query_times_key_recomputed_by_hand(clip):
    frames = _frames(2)
    out = extract_ans(clip, frames, ["x", "y"], {"image": [1]}, kind="qk")
    x = _image_block_input(clip, frames, 1)
    attn = clip.model.visual.transformer.resblocks[1].attn
    d, w, b = attn.embed_dim, attn.in_proj_weight, attn.in_proj_bias
    with torch.no_grad():
        manual = torch.nn.functional.linear(x, w[:d], b[:d]) * torch.nn.functional.linear(x, w[d:2 * d], b[d:2 * d])
    np.testing.assert_allclose(out[("image", 1)], manual.mean(dim=1).numpy(), atol=1e-5)


def test_cross_attention_qk_is_recomputed_from_its_inputs():
    """A packed MHA called with a separate key (cross-attention) keeps its own forward."""
    from alignment.models.base import _self_attention_with_qk

    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    q_in, kv_in = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    got = {}
    with torch.no_grad():
        out, _ = _self_attention_with_qk(mha, mha.forward, lambda t: got.__setitem__("qk", t), q_in, kv_in, kv_in,
                                         need_weights=False)
        ref, _ = mha(q_in, kv_in, kv_in, need_weights=False)
        w, b = mha.in_proj_weight, mha.in_proj_bias
        manual = torch.nn.functional.linear(q_in, w[:8], b[:8]) * torch.nn.functional.linear(kv_in, w[8:16], b[8:16])
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(got["qk"], manual)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "padding"])
def test_fused_self_attention_equals_multihead_attention(batch_first, masks):
    from alignment.models.base import _self_attention_with_qk

    torch.manual_seed(1)
    n, length, d, heads = 3, 6, 16, 4
    mha = torch.nn.MultiheadAttention(d, heads, batch_first=batch_first).eval()
    x = torch.randn(n, length, d) if batch_first else torch.randn(length, n, d)
    kw = {}
    if masks == "bool":
        kw["attn_mask"] = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
    elif masks == "float":
        kw["attn_mask"] = torch.randn(n * heads, length, length)
    elif masks == "padding":
        pad = torch.zeros(n, length, dtype=torch.bool)
        pad[0, 4:] = True
        kw["key_padding_mask"] = pad
    with torch.no_grad():
        ref, _ = mha(x, x, x, need_weights=False, **kw)
        out, _ = _self_attention_with_qk(mha, mha.forward, lambda t: None, x, x, x, need_weights=False, **kw)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_hooks_removed_after_capture(clip):
    module = clip.model.visual.transformer.resblocks[0].attn
    before = len(module._forward_hooks)
    with capture(clip, {"image": [0, 1]}, "attn"):
        assert len(module._forward_hooks) == before + 1
    assert len(module._forward_hooks) == before
    with capture(clip, {"image": [0, 1]}, "qk"):
        assert "forward" in module.__dict__
    assert "forward" not in module.__dict__


@pytest.mark.parametrize("kind", ["attn", "qk", "mlp"])
def test_padding_invariance(clip, kind):
    caption = "a red ball on grass"
    alone = extract_ans(clip, _frames(1), [caption], {"text": None}, kind=kind)
    padded = extract_ans(clip, _frames(2), [caption, CAPTIONS[3] * 2], {"text": None}, kind=kind)
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
