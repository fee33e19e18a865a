"""METER adapter: official key layout, checkpoint loading, branches, conditions (tiny random, no downloads)."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from alignment.extract import extract_ans, image_tensor
from alignment.models import ModelError, load_model
from alignment.models.meter import CONFIGS, MeterModel, official_state_dict, save_official_checkpoint
from alignment.models.tokenizers import minilm_dir

BRANCHES = ("image", "text", "cross_image", "cross_text")
CAPTIONS = ["a red ball on grass", "two dogs", "", "a very long caption about a city street at night with many cars"]

# Representative keys of an official METER-CLIP-RoBERTa checkpoint, read from zdou0830/METER:
# meter/modules/meter_module.py (METERTransformerSS attributes), meter/modules/clip_model.py
# (CLIP / VisualTransformer / ResidualAttentionBlock names, no visual.proj, text-side leftovers
# positional_embedding + ln_final), meter/modules/bert_model.py (BertCrossLayer: attention,
# crossattention, intermediate, output), meter/modules/heads.py (Pooler, ITMHead, MLMHead), and
# transformers 4.6's RobertaModel (persistent embeddings.position_ids, pooler).
OFFICIAL_KEYS = [
    "vit_model.visual.conv1.weight",
    "vit_model.visual.class_embedding",
    "vit_model.visual.positional_embedding",
    "vit_model.visual.ln_pre.weight",
    "vit_model.visual.ln_pre.bias",
    "vit_model.visual.transformer.resblocks.0.attn.in_proj_weight",
    "vit_model.visual.transformer.resblocks.0.attn.in_proj_bias",
    "vit_model.visual.transformer.resblocks.0.attn.out_proj.weight",
    "vit_model.visual.transformer.resblocks.0.attn.out_proj.bias",
    "vit_model.visual.transformer.resblocks.0.ln_1.weight",
    "vit_model.visual.transformer.resblocks.0.mlp.c_fc.weight",
    "vit_model.visual.transformer.resblocks.0.mlp.c_proj.bias",
    "vit_model.visual.transformer.resblocks.3.ln_2.bias",
    "vit_model.visual.ln_post.weight",
    "vit_model.visual.ln_post.bias",
    "vit_model.positional_embedding",
    "vit_model.ln_final.weight",
    "text_transformer.embeddings.word_embeddings.weight",
    "text_transformer.embeddings.position_embeddings.weight",
    "text_transformer.embeddings.token_type_embeddings.weight",
    "text_transformer.embeddings.LayerNorm.weight",
    "text_transformer.embeddings.position_ids",
    "text_transformer.encoder.layer.0.attention.self.query.weight",
    "text_transformer.encoder.layer.0.attention.self.key.bias",
    "text_transformer.encoder.layer.0.attention.self.value.weight",
    "text_transformer.encoder.layer.0.attention.output.dense.weight",
    "text_transformer.encoder.layer.0.attention.output.LayerNorm.weight",
    "text_transformer.encoder.layer.0.intermediate.dense.weight",
    "text_transformer.encoder.layer.0.output.dense.weight",
    "text_transformer.encoder.layer.3.output.LayerNorm.bias",
    "text_transformer.pooler.dense.weight",
    "cross_modal_text_transform.weight",
    "cross_modal_text_transform.bias",
    "cross_modal_image_transform.weight",
    "token_type_embeddings.weight",
    "cross_modal_image_layers.0.attention.self.query.weight",
    "cross_modal_image_layers.0.attention.output.dense.weight",
    "cross_modal_image_layers.0.attention.output.LayerNorm.bias",
    "cross_modal_image_layers.0.crossattention.self.key.weight",
    "cross_modal_image_layers.0.crossattention.self.value.bias",
    "cross_modal_image_layers.0.crossattention.output.dense.weight",
    "cross_modal_image_layers.0.crossattention.output.LayerNorm.weight",
    "cross_modal_image_layers.0.intermediate.dense.weight",
    "cross_modal_image_layers.0.output.dense.weight",
    "cross_modal_image_layers.0.output.LayerNorm.weight",
    "cross_modal_text_layers.1.crossattention.self.query.weight",
    "cross_modal_text_layers.1.intermediate.dense.bias",
    "cross_modal_image_pooler.dense.weight",
    "cross_modal_text_pooler.dense.bias",
    "mlm_score.transform.dense.weight",
    "mlm_score.transform.LayerNorm.weight",
    "mlm_score.decoder.weight",
    "mlm_score.bias",
    "itm_score.fc.weight",
    "itm_score.fc.bias",
]


@pytest.fixture(scope="module")
def meter():
    return load_model("random:meter:tiny")


@pytest.fixture(scope="module")
def ckpt(meter, tmp_path_factory):
    return save_official_checkpoint(meter, tmp_path_factory.mktemp("meter") / "meter.ckpt")


def _frames(n, seed=0):
    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 255, (70 + i, 90, 3), dtype=np.uint8)) for i in range(n)]


def _spec(path):
    return f"meter:{path}?tokenizer={minilm_dir()}"


@pytest.mark.parametrize("kind", ["attn", "qk", "mlp"])
def test_shapes_every_branch(meter, kind):
    out = extract_ans(meter, _frames(4), CAPTIONS, kind=kind)
    cfg = CONFIGS["tiny"]
    m = meter.model
    widths = {
        "image": (cfg.vision_width, cfg.vision_mlp, len(m.vit_model.visual.transformer.resblocks), 4),
        "text": (cfg.text_hidden, cfg.text_intermediate, len(m.text_transformer.encoder.layer), 4),
        "cross_image": (cfg.hidden, cfg.cross_intermediate, len(m.cross_modal_image_layers), 2),
        "cross_text": (cfg.hidden, cfg.cross_intermediate, len(m.cross_modal_text_layers), 2),
    }
    for branch, (hidden, inter, n_layers, expected_layers) in widths.items():
        assert n_layers == expected_layers == meter.branches[branch].n_layers
        assert {layer for b, layer in out if b == branch} == set(range(n_layers))
        units = {"attn": hidden, "qk": hidden, "mlp": inter}[kind]  # qk: heads × head_dim = hidden
        for layer in range(n_layers):
            arr = out[(branch, layer)]
            assert arr.shape == (4, units) and arr.dtype == np.float32
            assert np.isfinite(arr).all() and arr.std() > 0


def test_official_key_layout(meter):
    """The official keys are all present (base: full official heads; tiny: all but the MLM head)."""
    with torch.device("meta"):
        base = official_state_dict(MeterModel(CONFIGS["base"]))
    missing = [k for k in OFFICIAL_KEYS if k not in base]
    assert not missing, missing
    tiny = official_state_dict(meter)
    missing = [k for k in OFFICIAL_KEYS if k not in tiny and not k.startswith("mlm_score.")]
    assert not missing, missing
    for state in (base, tiny):
        assert "vit_model.visual.proj" not in state  # METER's VisualTransformer has no projection
        allowed = ("vit_model.", "text_transformer.", "cross_modal_", "token_type_embeddings.", "mlm_score.", "itm_score.")
        assert all(k.startswith(allowed) for k in state), [k for k in state if not k.startswith(allowed)]
    # positional embedding rows = (image / patch)² + 1
    assert tiny["vit_model.visual.positional_embedding"].shape == ((64 // 16) ** 2 + 1, 128)
    assert tiny["token_type_embeddings.weight"].shape == (2, 128)
    assert tiny["itm_score.fc.weight"].shape == (2, 256)  # ITM on [text cls, image cls]
    assert base["mlm_score.decoder.weight"].shape == (30522, 768)


def test_checkpoint_roundtrip_identical_ans(meter, ckpt):
    loaded = load_model(_spec(ckpt))
    assert loaded.describe()["branches"] == meter.describe()["branches"]
    assert loaded.image_size == meter.image_size
    ref, new = meter.model.state_dict(), loaded.model.state_dict()
    assert ref.keys() == new.keys()
    assert all(torch.equal(ref[k], new[k]) for k in ref)
    frames = _frames(3)
    for kind in ("attn", "qk", "mlp"):
        a = extract_ans(meter, frames, CAPTIONS[:3], kind=kind)
        b = extract_ans(loaded, frames, CAPTIONS[:3], kind=kind)
        assert a.keys() == b.keys() and {k[0] for k in a} == set(BRANCHES)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


class FakeCallback:
    """Lightning pickles callbacks keyed by their class: a global weights_only refuses."""


def test_checkpoint_with_finetune_heads_and_lightning_extras(meter, tmp_path):
    """Fine-tuned checkpoints carry other heads and Lightning objects; all are matched or tolerated."""
    state = official_state_dict(meter)
    for key in [k for k in state if k.startswith("itm_score.")]:
        del state[key]
    h = 128
    state.update({
        "vqa_classifier.0.weight": torch.randn(2 * h, 2 * h), "vqa_classifier.0.bias": torch.zeros(2 * h),
        "vqa_classifier.1.weight": torch.ones(2 * h), "vqa_classifier.1.bias": torch.zeros(2 * h),
        "vqa_classifier.3.weight": torch.randn(11, 2 * h), "vqa_classifier.3.bias": torch.zeros(11),
        "rank_output.weight": torch.randn(1, h), "rank_output.bias": torch.zeros(1),
        # first version of the official clip_model.py kept CLIP's (unused) token embedding
        "vit_model.token_embedding.weight": torch.randn(100, 64),
        "text_transformer.embeddings.token_type_ids": torch.zeros(1, 64, dtype=torch.long),
        "train_vqa_score.score": torch.tensor(0.0),
    })
    # NLVR2 fine-tuning grows the token-type table to 3 rows (row 2 = a copy of the image row)
    types = state["token_type_embeddings.weight"]
    state["token_type_embeddings.weight"] = torch.cat([types, types[1:]])

    torch.save({"state_dict": state, "callbacks": {FakeCallback: {"best_model_score": torch.tensor(1.0)}},
                "hyper_parameters": {"config": {"vit": "ViT-B/16"}}}, tmp_path / "vqa.ckpt")
    loaded = load_model(_spec(tmp_path / "vqa.ckpt"))
    assert torch.equal(loaded.model.vqa_classifier[3].weight, state["vqa_classifier.3.weight"])
    assert not hasattr(loaded.model, "itm_score")
    assert loaded.model.token_type_embeddings.weight.shape == (3, h)
    out = extract_ans(loaded, _frames(2), CAPTIONS[:2], {"cross_text": [1]})
    ref = extract_ans(meter, _frames(2), CAPTIONS[:2], {"cross_text": [1]})
    np.testing.assert_array_equal(out[("cross_text", 1)], ref[("cross_text", 1)])


def test_checkpoint_key_errors(meter, tmp_path):
    state = official_state_dict(meter)
    missing = dict(state)
    del missing["cross_modal_text_layers.1.crossattention.output.dense.weight"]
    torch.save({"state_dict": missing}, tmp_path / "missing.ckpt")
    with pytest.raises(ModelError, match=r"1 missing keys.*crossattention\.output\.dense\.weight.*0 unexpected"):
        load_model(_spec(tmp_path / "missing.ckpt"))

    extra = {**state, "cross_modal_extra.weight": torch.zeros(3)}
    torch.save({"state_dict": extra}, tmp_path / "extra.ckpt")
    with pytest.raises(ModelError, match=r"0 missing keys.*1 unexpected keys.*cross_modal_extra\.weight"):
        load_model(_spec(tmp_path / "extra.ckpt"))

    bad_shape = {**state, "itm_score.fc.weight": torch.zeros(3, 256)}
    torch.save({"state_dict": bad_shape}, tmp_path / "shape.ckpt")
    with pytest.raises(ModelError, match="shape mismatch"):
        load_model(_spec(tmp_path / "shape.ckpt"))

    not_meter = {k: v for k, v in state.items() if not k.startswith("vit_model.")}
    torch.save({"state_dict": not_meter}, tmp_path / "other.ckpt")
    with pytest.raises(ModelError, match="vit_model.visual.conv1.weight"):
        load_model(_spec(tmp_path / "other.ckpt"))


def test_missing_file_and_bad_specs(tmp_path):
    path = tmp_path / "nope.ckpt"
    with pytest.raises(ModelError, match=str(path)):
        load_model(f"meter:{path}")
    with pytest.raises(ModelError, match="random:meter"):
        load_model("meter")
    with pytest.raises(ModelError, match="unknown METER config"):
        load_model("random:meter:huge")
    with pytest.raises(ModelError, match="unknown option"):
        load_model("random:meter:tiny?tokeniser=x")


def test_bert_text_tower_roundtrip(tmp_path):
    """METER-CLIP-BERT layout: a two-row token-type table makes the loader build a BertModel."""
    bert = load_model("random:meter:tiny?text=bert&seed=3")
    assert type(bert.model.text_transformer).__name__ == "BertModel"
    path = save_official_checkpoint(bert, tmp_path / "bert.ckpt")
    loaded = load_model(_spec(path))
    assert type(loaded.model.text_transformer).__name__ == "BertModel"
    a = extract_ans(bert, _frames(2), CAPTIONS[:2], {"text": [0, 3], "cross_text": [1]})
    b = extract_ans(loaded, _frames(2), CAPTIONS[:2], {"text": [0, 3], "cross_text": [1]})
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_offline_default_tokenizer_error_is_one_clear_line(ckpt):
    code = (
        "import alignment\n"
        "from alignment.models import load_model, ModelError\n"
        f"try:\n    load_model({f'meter:{ckpt}'!r})\n"
        "except ModelError as err:\n    print('ERR', err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("ERR")]
    assert len(lines) == 1, out.stdout + out.stderr[-2000:]
    assert "?tokenizer=/local/roberta-base" in lines[0]


def test_missing_tokenizer_folder(ckpt, tmp_path):
    with pytest.raises(ModelError, match="tokenizer folder not found"):
        load_model(f"meter:{ckpt}?tokenizer={tmp_path}/no-roberta")


def test_image_size_option_resizes_positions(ckpt):
    loaded = load_model(_spec(ckpt) + "&image_size=96")
    assert loaded.image_size == 96
    assert loaded.model.vit_model.visual.positional_embedding.shape == ((96 // 16) ** 2 + 1, 128)
    out = extract_ans(loaded, _frames(1), ["x"], {"image": [0]})
    assert np.isfinite(out[("image", 0)]).all()


def _changed(a, b):
    """Relative change well above float noise (random cross-attention is near-uniform, so the
    querying stream moves the attn output only a little: ~1e-3 relative)."""
    return np.abs(a - b).max() > 1e-4 * np.abs(a).max()


def test_conditions_change_cross_modal_ans(meter):
    frames, captions = _frames(3), CAPTIONS[:3]
    both = extract_ans(meter, frames, captions)
    no_image = extract_ans(meter, frames, captions, condition="text")
    no_text = extract_ans(meter, frames, captions, condition="image")
    for layer in range(4):  # towers see only their own modality
        np.testing.assert_array_equal(both[("text", layer)], no_image[("text", layer)])
        np.testing.assert_array_equal(both[("image", layer)], no_text[("image", layer)])
        assert _changed(both[("image", layer)], no_image[("image", layer)])
        assert _changed(both[("text", layer)], no_text[("text", layer)])
    for layer in range(2):
        for branch in ("cross_text", "cross_image"):
            assert _changed(both[(branch, layer)], no_image[(branch, layer)]), (branch, layer)
            assert _changed(both[(branch, layer)], no_text[(branch, layer)]), (branch, layer)


def test_coattention_wiring(meter):
    """Layer i's self-attention sees the other modality only through layer i - 1's cross-attention."""
    frames, captions = _frames(3), CAPTIONS[:3]
    both = extract_ans(meter, frames, captions, kind="qk")
    no_image = extract_ans(meter, frames, captions, kind="qk", condition="text")
    no_text = extract_ans(meter, frames, captions, kind="qk", condition="image")
    np.testing.assert_array_equal(both[("cross_text", 0)], no_image[("cross_text", 0)])
    np.testing.assert_array_equal(both[("cross_image", 0)], no_text[("cross_image", 0)])
    assert _changed(both[("cross_text", 1)], no_image[("cross_text", 1)])
    assert _changed(both[("cross_image", 1)], no_text[("cross_image", 1)])


@pytest.mark.parametrize("kind", ["attn", "qk", "mlp"])
def test_padding_invariance(meter, kind):
    caption = "a red ball on grass"
    frames = _frames(1)
    targets = {"text": None, "cross_text": None, "cross_image": None}
    alone = extract_ans(meter, frames, [caption], targets, kind=kind)
    batch = meter.prepare(image_tensor(meter, frames * 2, [0, 1]), [caption, CAPTIONS[3]], list(targets))
    assert not batch.token_mask["text"][0].all()  # the short caption really is padded
    padded = extract_ans(meter, frames * 2, [caption, CAPTIONS[3]], targets, kind=kind)
    for key in alone:
        np.testing.assert_allclose(alone[key][0], padded[key][0], atol=1e-5, err_msg=str(key))


def _reference_infer(state, image, ids, mask, vision_heads, text_model, heads):
    """METER's ``infer`` written out functionally from an official-layout state dict.

    Vision runs sequence-first with ``F.multi_head_attention_forward`` as the official CLIP code
    does; the text encoder is a separate transformers model fed the official weights; the
    co-attention layers follow ``BertCrossLayer`` (post-LayerNorm, eps 1e-12).
    """
    s = {k: v.float() for k, v in state.items() if v.is_floating_point()}
    p = "vit_model.visual."
    x = F.conv2d(image, s[p + "conv1.weight"], stride=s[p + "conv1.weight"].shape[-1]).flatten(2).transpose(1, 2)
    cls = s[p + "class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + s[p + "positional_embedding"]
    ln = lambda t, q, eps=1e-5: F.layer_norm(t, t.shape[-1:], s[q + ".weight"], s[q + ".bias"], eps)  # noqa: E731
    x = ln(x, p + "ln_pre").permute(1, 0, 2)
    n_blocks = len({k.split(".")[4] for k in s if k.startswith(p + "transformer.resblocks.")})
    for i in range(n_blocks):
        b = f"{p}transformer.resblocks.{i}."
        h = ln(x, b + "ln_1")
        a = F.multi_head_attention_forward(
            h, h, h, h.shape[-1], vision_heads, s[b + "attn.in_proj_weight"], s[b + "attn.in_proj_bias"],
            None, None, False, 0.0, s[b + "attn.out_proj.weight"], s[b + "attn.out_proj.bias"], need_weights=False,
        )[0]
        x = x + a
        h = F.linear(ln(x, b + "ln_2"), s[b + "mlp.c_fc.weight"], s[b + "mlp.c_fc.bias"])
        x = x + F.linear(h * torch.sigmoid(1.702 * h), s[b + "mlp.c_proj.weight"], s[b + "mlp.c_proj.bias"])
    image_embeds = ln(x.permute(1, 0, 2), p + "ln_post")

    text_sd = {k[len("text_transformer."):]: v for k, v in state.items() if k.startswith("text_transformer.")}
    text_model.load_state_dict(text_sd, strict=False)
    text_embeds = text_model(input_ids=ids, attention_mask=mask.long()).last_hidden_state

    lin = lambda t, q: F.linear(t, s[q + ".weight"], s[q + ".bias"])  # noqa: E731
    x = lin(text_embeds, "cross_modal_text_transform") + s["token_type_embeddings.weight"][0]
    y = lin(image_embeds, "cross_modal_image_transform") + s["token_type_embeddings.weight"][1]
    text_bias = (1.0 - mask[:, None, None, :].float()) * -10000.0

    def attention(q_in, kv_in, bias, pre):
        q, k, v = lin(q_in, pre + ".self.query"), lin(kv_in, pre + ".self.key"), lin(kv_in, pre + ".self.value")
        split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(q.shape[-1] // heads)
        probs = (scores + (0 if bias is None else bias)).softmax(-1)
        ctx = (probs @ split(v)).transpose(1, 2).reshape(q.shape)
        return ln(lin(ctx, pre + ".output.dense") + q_in, pre + ".output.LayerNorm", 1e-12)

    def layer(h, ctx, bias, ctx_bias, pre):
        h = attention(h, h, bias, pre + ".attention")
        h = attention(h, ctx, ctx_bias, pre + ".crossattention")
        inter = F.gelu(lin(h, pre + ".intermediate.dense"))
        return ln(lin(inter, pre + ".output.dense") + h, pre + ".output.LayerNorm", 1e-12)

    n_cross = len({k.split(".")[1] for k in s if k.startswith("cross_modal_text_layers.")})
    for i in range(n_cross):
        x, y = (layer(x, y, text_bias, None, f"cross_modal_text_layers.{i}"),
                layer(y, x, None, text_bias, f"cross_modal_image_layers.{i}"))
    return x, y


def test_forward_matches_functional_reference_of_official_infer(meter):
    from transformers import RobertaConfig, RobertaModel

    cfg = CONFIGS["tiny"]
    frames, captions = _frames(2), CAPTIONS[:2]
    batch = meter.prepare(image_tensor(meter, frames, [0, 1]), captions, list(BRANCHES))
    ids, mask, image = batch.inputs["text_ids"], batch.inputs["text_mask"], batch.inputs["image"]
    text_model = RobertaModel(RobertaConfig(
        vocab_size=cfg.text_vocab, hidden_size=cfg.text_hidden, num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads, intermediate_size=cfg.text_intermediate,
        max_position_embeddings=cfg.text_positions, type_vocab_size=1, pad_token_id=meter.tokenizer.pad_token_id,
        layer_norm_eps=1e-5,
    )).eval()
    with torch.no_grad():
        x, y = meter.model(image, ids, mask)
        rx, ry = _reference_infer(official_state_dict(meter), image, ids, mask, cfg.vision_heads, text_model, cfg.cross_heads)
    real = mask[..., None]
    torch.testing.assert_close(x * real, rx * real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, ry, atol=1e-5, rtol=1e-5)
