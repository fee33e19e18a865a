"""transformers adapters (HF CLIP, BridgeTower, ViT, RoBERTa, MiniLM): tiny random configs, no downloads."""

import numpy as np
import pytest
import torch
from PIL import Image

import alignment  # noqa: F401  (makes torchvision importable before transformers)
from alignment.extract import extract_ans
from alignment.models import ModelError, load_model

TINY = {
    "hf-clip": "random:hf-clip:tiny",
    "bridgetower": "random:bridgetower:tiny",
    "vit": "random:vit:tiny",
    "roberta": "random:roberta:tiny",
}
CAPTIONS = ["a red ball on grass", "two dogs", "", "a woman rides a bicycle past a bakery"]
LONG = " ".join(["a very long caption about a crowded city street at night with cars and lights"] * 4)


@pytest.fixture(scope="module")
def adapters():
    out = {name: load_model(spec) for name, spec in TINY.items()}
    out["minilm"] = load_model("minilm")
    return out


def _frames(n, seed=0):
    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 255, (70 + i, 90, 3), dtype=np.uint8)) for i in range(n)]


def _expected_sizes(name, model):
    """Units per AN kind and layer count of every branch, read from the model config."""
    cfg = model.config
    if name == "hf-clip":
        return {
            b: ({"attn": c.hidden_size, "qk": c.num_attention_heads * (c.hidden_size // c.num_attention_heads), "mlp": c.intermediate_size}, c.num_hidden_layers)
            for b, c in (("image", cfg.vision_config), ("text", cfg.text_config))
        }
    if name == "vit":
        return {"image": ({"attn": cfg.hidden_size, "qk": cfg.hidden_size, "mlp": cfg.intermediate_size}, cfg.num_hidden_layers)}
    if name in ("roberta", "minilm"):
        return {"text": ({"attn": cfg.hidden_size, "qk": cfg.hidden_size, "mlp": cfg.intermediate_size}, cfg.num_hidden_layers)}
    t, v = cfg.text_config, cfg.vision_config
    text = {"attn": t.hidden_size, "qk": t.num_attention_heads * (t.hidden_size // t.num_attention_heads), "mlp": t.intermediate_size}
    return {
        # the model runs as many vision blocks as text layers; vision MLP is 4x wide
        "image": ({"attn": v.hidden_size, "qk": v.hidden_size, "mlp": 4 * v.hidden_size}, t.num_hidden_layers),
        "text": (text, t.num_hidden_layers),
        "cross_image": (text, cfg.num_hidden_layers),
        "cross_text": (text, cfg.num_hidden_layers),
    }


@pytest.mark.parametrize("name", [*TINY, "minilm"])
@pytest.mark.parametrize("kind", ["attn", "qk", "mlp"])
def test_shapes_every_branch_and_layer(adapters, name, kind):
    adapter = adapters[name]
    out = extract_ans(adapter, _frames(3), CAPTIONS[:3], kind=kind)
    expected = _expected_sizes(name, adapter.model)
    assert set(adapter.branches) == set(expected)
    for branch, (sizes, n_layers) in expected.items():
        assert adapter.branches[branch].n_layers == n_layers
        assert {layer for b, layer in out if b == branch} == set(range(n_layers))
        for layer in range(n_layers):
            arr = out[(branch, layer)]
            assert arr.shape == (3, sizes[kind]) and arr.dtype == np.float32
            assert np.isfinite(arr).all()
            assert arr.std() > 0


def test_adapter_kinds_and_image_settings(adapters):
    assert {n: a.kind for n, a in adapters.items()} == {
        "hf-clip": "dual", "bridgetower": "fusion", "vit": "image", "roberta": "text", "minilm": "text",
    }
    assert adapters["roberta"].image_size is None and adapters["minilm"].image_size is None
    assert not adapters["roberta"].needs_images
    assert adapters["vit"].image_size == adapters["vit"].model.config.image_size
    assert adapters["vit"].image_mean == (0.5, 0.5, 0.5)
    assert adapters["hf-clip"].image_size == adapters["hf-clip"].model.config.vision_config.image_size
    assert adapters["bridgetower"].image_size == adapters["bridgetower"].model.config.vision_config.image_size


def test_bridgetower_vision_blocks_are_sequence_first(adapters):
    bt = adapters["bridgetower"]
    assert bt.branches["image"].seq_first
    assert not any(bt.branches[b].seq_first for b in ("text", "cross_image", "cross_text"))
    seen = {}
    block = bt.model.vision_model.visual.transformer.resblocks[0]
    handle = block.register_forward_hook(lambda m, a, o: seen.__setitem__("shape", tuple(o.shape)))
    try:
        extract_ans(bt, _frames(2), CAPTIONS[:2], {"image": [0]})
    finally:
        handle.remove()
    n_tokens = (bt.image_size // bt.model.config.vision_config.patch_size) ** 2 + 1
    assert seen["shape"][:2] == (n_tokens, 2)  # (tokens, batch, units)


@pytest.mark.parametrize("kind", ["attn", "qk", "mlp"])
def test_image_branches_independent_of_batch_mates(adapters, kind):
    """Pooling over the right axis: an image's ANs do not depend on the other images in its batch."""
    frames = _frames(3)
    # BridgeTower's tokens-first vision tower is the case that matters; the others on attn only
    for name in ("bridgetower", "hf-clip", "vit") if kind == "attn" else ("bridgetower",):
        adapter = adapters[name]
        alone = extract_ans(adapter, frames[:1], CAPTIONS[:1], {"image": None}, kind=kind)
        batch = extract_ans(adapter, frames, CAPTIONS[:1] * 3, {"image": None}, kind=kind)
        for key in alone:
            np.testing.assert_allclose(alone[key][0], batch[key][0], atol=1e-5, err_msg=f"{name} {key}")


def test_qk_capture_keeps_bridgetower_outputs(adapters):
    """BridgeTower's image tower is a packed nn.MultiheadAttention: capturing qk replaces its
    forward, and every AN of every branch must stay what it was."""
    from alignment.models.base import capture

    bt = adapters["bridgetower"]
    captions = ["a dog on grass", "two red cars in a long street at night"]
    plain = extract_ans(bt, _frames(2), captions, kind="attn")
    with capture(bt, {"image": None}, "qk"):
        during = extract_ans(bt, _frames(2), captions, kind="attn")
    for key in plain:
        np.testing.assert_allclose(during[key], plain[key], atol=1e-5, err_msg=str(key))


def test_attn_tap_matches_manual_mha(adapters):
    """BridgeTower image attn AN (tokens-first MHA output) equals the block's attention recomputed by hand."""
    bt = adapters["bridgetower"]
    frames = _frames(2)
    out = extract_ans(bt, frames, CAPTIONS[:2], {"image": [1]})
    block = bt.model.vision_model.visual.transformer.resblocks[1]
    seen = {}
    handle = block.ln_1.register_forward_hook(lambda m, a, o: seen.__setitem__("x", o))
    from alignment.extract import image_tensor

    try:
        with torch.no_grad():
            batch = bt.prepare(image_tensor(bt, frames, [0, 1]), CAPTIONS[:2], ["image"])
            bt.forward(batch, ["image"])
    finally:
        handle.remove()
    x = seen["x"]  # (L, B, D)
    with torch.no_grad():
        manual = block.attn(x, x, x, need_weights=False)[0].mean(dim=0)
    np.testing.assert_allclose(out[("image", 1)], manual.numpy(), atol=1e-5)


TEXT_BRANCHES = {
    "hf-clip": ["text"],
    "bridgetower": ["text", "cross_text", "cross_image"],
    "roberta": ["text"],
    "minilm": ["text"],
}


@pytest.mark.parametrize("name", list(TEXT_BRANCHES))
@pytest.mark.parametrize("kind", ["attn", "qk", "mlp"])
def test_padding_invariance(adapters, name, kind):
    adapter = adapters[name]
    frames = _frames(1) * 2
    targets = {b: None for b in TEXT_BRANCHES[name]}
    caption = "a red ball on grass"
    for pooling in ("mean", "cls"):
        alone = extract_ans(adapter, frames[:1], [caption], targets, kind=kind, pooling=pooling)
        padded = extract_ans(adapter, frames, [caption, LONG], targets, kind=kind, pooling=pooling)
        for key in alone:
            np.testing.assert_allclose(alone[key][0], padded[key][0], atol=1e-5, err_msg=f"{name} {key} {pooling}")


def test_clip_text_batch_is_trimmed_and_cls_is_eot(adapters):
    clip = adapters["hf-clip"]
    batch = clip.prepare(None, ["a cat", "a dog on a mat"], ["text"])
    ids = batch.inputs["input_ids"]
    eot = batch.cls_index["text"]
    assert ids.shape[1] == int(eot.max()) + 1 < clip.max_length
    assert (ids[torch.arange(2), eot] == 49407).all() and (ids[:, 0] == 49406).all()
    assert batch.token_mask["text"].sum(1).tolist() == (eot + 1).tolist()
    # truncation at the model's context length
    long = clip.prepare(None, [LONG * 3], ["text"])
    assert long.inputs["input_ids"].shape[1] == clip.max_length


def test_bert_style_truncation_and_mask(adapters):
    rob = adapters["roberta"]
    batch = rob.prepare(None, ["hello", LONG * 40], ["text"])
    assert batch.inputs["input_ids"].shape[1] == rob.max_length <= 512
    assert batch.token_mask["text"].dtype == torch.bool
    assert batch.token_mask["text"][0].sum() == 3  # [CLS] hello [SEP]
    assert batch.cls_index["text"].tolist() == [0, 0]


def test_bridgetower_condition_changes_cross_layers_not_text(adapters):
    bt = adapters["bridgetower"]
    frames, caps = _frames(3), CAPTIONS[:3]
    both = extract_ans(bt, frames, caps, condition="image+text")
    text_only = extract_ans(bt, frames, caps, condition="text")
    for (branch, layer), arr in both.items():
        other = text_only[(branch, layer)]
        if branch == "text":
            np.testing.assert_array_equal(arr, other)
        else:  # image tower sees the grey image; cross layers see it through the bridges
            assert not np.allclose(arr, other, atol=1e-4), (branch, layer)
    # removing the text changes the cross-modal layers too, never the image tower
    image_only = extract_ans(bt, frames, ["a", "b", "c"], condition="image")
    for (branch, layer), arr in both.items():
        if branch == "image":
            np.testing.assert_array_equal(arr, image_only[(branch, layer)])
        elif branch.startswith("cross"):
            assert not np.allclose(arr[:2], image_only[(branch, layer)][:2], atol=1e-4), (branch, layer)


def test_hf_clip_is_dual_text_ignores_image(adapters):
    clip = adapters["hf-clip"]
    frames, caps = _frames(3), CAPTIONS[:3]
    both = extract_ans(clip, frames, caps, condition="image+text")
    text_only = extract_ans(clip, frames, caps, condition="text")
    other_images = extract_ans(clip, _frames(3, seed=5), caps, condition="image+text")
    for (branch, layer), arr in both.items():
        if branch == "text":
            np.testing.assert_array_equal(arr, text_only[(branch, layer)])
            np.testing.assert_array_equal(arr, other_images[(branch, layer)])
        else:
            assert not np.allclose(arr, text_only[(branch, layer)])


def test_dual_encoder_runs_only_the_towers_asked(adapters):
    clip = adapters["hf-clip"]
    calls = []
    handle = clip.model.vision_model.register_forward_hook(lambda *a: calls.append("image"))
    try:
        out = extract_ans(clip, _frames(2), CAPTIONS[:2], {"text": None})
    finally:
        handle.remove()
    assert calls == [] and {b for b, _ in out} == {"text"}


def test_minilm_pretrained_offline(adapters):
    from transformers import BertModel

    from alignment.models.tokenizers import minilm_dir

    mini = adapters["minilm"]
    assert mini.branches["text"].n_layers == 6 and mini.branches["text"].sizes == {"attn": 384, "qk": 384, "mlp": 1536, "hidden": 384}
    reference = BertModel.from_pretrained(str(minilm_dir()), local_files_only=True)
    for (name, p), (_, q) in zip(mini.model.named_parameters(), reference.named_parameters()):
        assert torch.equal(p, q), name  # the shipped pretrained weights, not a random init
    out = extract_ans(mini, [None, None], ["a dog runs on the beach", "the stock market fell sharply"], kind="attn")
    for key, arr in out.items():
        assert np.isfinite(arr).all()
        assert not np.allclose(arr[0], arr[1], atol=1e-3), key


def test_random_minilm_has_same_shapes_other_weights(adapters):
    rand = load_model("random:minilm?seed=3")
    assert rand.branches["text"].sizes == adapters["minilm"].branches["text"].sizes
    a = extract_ans(rand, [None], ["hello"], {"text": [0]})
    b = extract_ans(adapters["minilm"], [None], ["hello"], {"text": [0]})
    assert not np.allclose(a[("text", 0)], b[("text", 0)])


def test_random_weights_are_seeded():
    a = load_model("random:vit:tiny?seed=1").model.state_dict()
    b = load_model("random:vit:tiny?seed=1").model.state_dict()
    c = load_model("random:vit:tiny?seed=2").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("spec", ["vit:google/vit-base-patch16-224", "roberta:FacebookAI/roberta-base", "bridgetower:BridgeTower/bridgetower-base"])
def test_hub_id_offline_names_local_folder(monkeypatch, spec):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as info:
        load_model(spec)
    message = str(info.value)
    arch = spec.split(":")[0]
    assert spec in message
    assert f"{arch}:/path/to/model-folder" in message and "local" in message


def test_missing_local_folder_names_it(tmp_path):
    missing = tmp_path / "no-such-model"
    for arch in ("vit", "roberta", "hf-clip", "bridgetower"):
        with pytest.raises(ModelError, match="not found") as info:
            load_model(f"{arch}:{missing}")
        assert str(missing) in str(info.value)


def test_spec_errors(tmp_path):
    with pytest.raises(ModelError, match="names no weights"):
        load_model("vit")
    with pytest.raises(ModelError, match="tiny, base"):
        load_model("random:roberta:huge")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config"):
        load_model(f"vit:{tmp_path / 'empty'}")


def test_wrong_model_type_in_folder(adapters, tmp_path):
    adapters["vit"].model.save_pretrained(tmp_path / "vit")
    with pytest.raises(ModelError, match="'vit' model"):
        load_model(f"roberta:{tmp_path / 'vit'}")


def test_folder_without_tokenizer_is_explained(adapters, tmp_path):
    adapters["roberta"].model.save_pretrained(tmp_path / "rob")
    with pytest.raises(ModelError, match="tokenizer"):
        load_model(f"roberta:{tmp_path / 'rob'}")
    # the offline WordPiece can be named explicitly
    loaded = load_model(f"roberta:{tmp_path / 'rob'}?tokenizer=wordpiece")
    assert loaded.branches["text"].n_layers == adapters["roberta"].branches["text"].n_layers


@pytest.mark.parametrize("name", list(TINY))
def test_save_pretrained_round_trip(adapters, name, tmp_path):
    adapter = adapters[name]
    folder = tmp_path / name
    adapter.model.save_pretrained(folder)
    if name in ("roberta", "bridgetower"):
        adapter.tokenizer.save_pretrained(folder)
    loaded = load_model(f"{name}:{folder}")
    assert loaded.spec.random is False and loaded.kind == adapter.kind
    frames, caps = _frames(2), CAPTIONS[:2]
    for kind in ("attn", "mlp"):
        a = extract_ans(adapter, frames, caps, kind=kind)
        b = extract_ans(loaded, frames, caps, kind=kind)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key} {kind}")


def test_image_normalisation_from_processor_config(adapters, tmp_path):
    import json

    folder = tmp_path / "vit"
    adapters["vit"].model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.9, 0.8, 0.7]}))
    loaded = load_model(f"vit:{folder}")
    assert loaded.image_mean == (0.1, 0.2, 0.3) and loaded.image_std == (0.9, 0.8, 0.7)


@pytest.mark.parametrize("size_wh", [(300, 451), (451, 300), (97, 64), (64, 64), (640, 360)])
def test_frames_are_resized_and_cropped_as_torchvision_does(size_wh):
    """The frame every model sees is torchvision's Resize(size, BICUBIC) + CenterCrop(size) (CLIP's
    and METER's official transform) to the pixel: the long side is truncated, not rounded."""
    from PIL import Image
    from torchvision import transforms as T

    from alignment.models.base import preprocess_images

    rng = np.random.default_rng(sum(size_wh))
    image = Image.fromarray(rng.integers(0, 256, (size_wh[1], size_wh[0], 3), dtype=np.uint8))
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    size = 288 if max(size_wh) > 200 else 32
    reference = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                           T.ToTensor(), T.Normalize(mean, std)])(image)
    ours = preprocess_images([image], size, mean, std)[0]
    assert ours.shape == reference.shape == (3, size, size)
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5)
    if size_wh == (300, 451):  # torchvision's resize gives 432 rows here, where rounding gives 433
        assert T.Resize(size)(image).size == (288, 432)
