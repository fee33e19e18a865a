"""METER (Dou et al. 2022) rebuilt from open_clip and transformers parts.

METER is not in transformers. The official code (github.com/zdou0830/METER) builds, in
``meter/modules/meter_module.py`` (``METERTransformerSS``):

* ``vit_model``: its own CLIP wrapper (``meter/modules/clip_model.py``): an OpenAI-layout visual
  transformer ``vit_model.visual.*`` (``conv1``, ``class_embedding``, ``positional_embedding``,
  ``ln_pre``, ``transformer.resblocks.N.{ln_1,attn,ln_2,mlp.c_fc,mlp.c_proj}``, ``ln_post``; no
  ``proj``) that keeps only ``layers - 1`` residual blocks (11 for ViT-B/16) and returns every token
  after ``ln_post``. The wrapper also carries unused leftovers of the CLIP text side,
  ``vit_model.positional_embedding`` and ``vit_model.ln_final`` (and, in the first version of that
  file, ``vit_model.token_embedding``); they are kept here as inert parameters so every key matches.
* ``text_transformer``: ``RobertaModel`` (``BertModel`` for the BERT configs) with its pooler.
* ``cross_modal_text_transform`` / ``cross_modal_image_transform`` (Linear to the fusion width),
  ``token_type_embeddings`` (Embedding(2, hidden); 3 rows after NLVR2 fine-tuning).
* ``cross_modal_{image,text}_layers.N``: ``BertCrossLayer`` (``meter/modules/bert_model.py``):
  self-attention (``attention.self.{query,key,value}``, ``attention.output.{dense,LayerNorm}``),
  cross-attention (``crossattention.*``, same names), ``intermediate.dense`` (GELU) and
  ``output.{dense,LayerNorm}``; post-LayerNorm residuals, LayerNorm eps 1e-12 (the default of the
  ``RobertaConfig`` METER builds for them).
* ``cross_modal_{image,text}_pooler.dense`` and task heads (``meter/modules/heads.py``):
  ``mlm_score`` (``transform.dense``, ``transform.LayerNorm``, ``decoder`` without bias, ``bias``),
  ``itm_score.fc``, ``vqa_classifier`` / ``nlvr2_classifier`` / ``snli_classifier``
  (Linear, LayerNorm, GELU, Linear: keys ``.0``, ``.1``, ``.3``) and ``rank_output``.

Here the visual blocks are open_clip's ``Transformer`` (``nn.MultiheadAttention`` with the same
OpenAI parameter names, QuickGELU, fp32 LayerNorm), the text encoder is transformers'
``RobertaModel``/``BertModel`` (eager attention), and the co-attention layers are small modules in
this file with the official parameter names. The module tree mirrors the official one, so
``model.state_dict()`` *is* the official key layout, except for one buffer:

* ``text_transformer.embeddings.position_ids``: transformers 4.6 (METER's pin) saved it as a
  persistent buffer, so official checkpoints carry it; transformers 5 makes it non-persistent.
  It is accepted when it has the shape (1, positions) and is otherwise ignored (positions are
  recomputed from the token ids); :func:`official_state_dict` writes it back. The same holds for
  ``text_transformer.embeddings.token_type_ids`` written by newer transformers.
* Metric states of the Lightning module (``train_itm_accuracy.correct`` and the like, from
  ``meter_utils.set_metrics``) are not weights; if a checkpoint carries them they are ignored.

Every other key must match a parameter by name and shape, or loading fails with a
:class:`ModelError` listing missing and unexpected keys.

Forward (official ``infer``, inference only): text ids → text encoder (all layers) →
``cross_modal_text_transform``; image → visual tower → ``cross_modal_image_transform``; token type
0 added to text, 1 to image; the image mask is all ones; then per co-attention layer ``i`` the text
layer attends to the image states of layer ``i - 1`` and the image layer to the text states of
layer ``i - 1`` (padding tokens of the text are masked with -10000 as in transformers 4.6).
Task heads and poolers are loaded but not run: ANs do not need them.

Branches and taps (see DESIGN §4):

* ``image``: the visual blocks (batch-first, as open_clip runs them): ``attn`` = MHA output,
  ``qk`` = query ⊙ key of the packed ``in_proj``, ``mlp`` = input of ``c_proj``.
* ``text``: RoBERTa layers: ``attn`` = ``attention.output.dense`` output (after the output
  projection, before residual + LayerNorm), ``qk`` = ``attention.self.query`` ⊙
  ``attention.self.key``, ``mlp`` = input of ``output.dense`` (intermediate after GELU).
* ``cross_text``, ``cross_image``: the co-attention layers: ``attn`` = the *cross*-attention's
  output projection (``crossattention.output.dense``: the sublayer that mixes modalities),
  ``qk`` = the *self*-attention's query ⊙ key (query and key come from the same stream there, so
  their token counts match; in the cross-attention they do not), ``mlp`` = intermediate after GELU.

Text branches pool over the tokenizer attention mask (padding excluded; ``cls`` = token 0); image
branches pool over all tokens (class token included).

Specs:

* ``meter:/path/meter.ckpt[?tokenizer=/path/or/hub-id][&max_text_len=50][&image_size=384][&text=roberta|bert]``:
  real weights; the configuration is read from the checkpoint shapes (see :func:`infer_config`).
  The tokenizer defaults to ``roberta-base`` (``bert-base-uncased`` for a BERT text tower) from the
  hub; offline, pass ``?tokenizer=/local/roberta-base``. ``image_size`` resizes the positional
  embedding bicubically, as the official ``adapt_position_encoding`` does.
* ``random:meter:tiny`` (demo-sized: 64 px images, patch 16, widths 128 with two 64-wide heads,
  4 visual and 4 text layers, 2 co-attention layers, ITM head only) and ``random:meter:base`` (the
  official METER-CLIP16-RoBERTa sizes at 288 px: 11 ViT-B/16 blocks, 12 RoBERTa-base layers, 6
  co-attention layers of width 768, MLM + ITM heads). Both use the offline MiniLM WordPiece
  tokenizer with a 30522-token vocabulary, so ``random:meter:base`` is structure-only: its text
  tower is RoBERTa-shaped but has neither RoBERTa's vocabulary nor trained weights (seeded by
  ``?seed=``). ``?text=bert`` builds the METER-CLIP-BERT layout instead.

Head counts are not stored in a checkpoint; they are read back as ``width // 64`` (the official
rule for the CLIP ViT, and true of roberta/bert base and large and of METER's fusion layers), so
the random configs keep 64-wide heads too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from alignment.models.base import Adapter, Batch, Branch, LayerTaps, ModelError, ModelSpec, PackedQK, Tap

MAX_TEXT_LEN = 50  # the official pre-training / fine-tuning configs (task_*) tokenize to 50 tokens
MASK_VALUE = -10000.0  # transformers 4.6 extended attention mask, as METER used it
OPTIONS = ("tokenizer", "max_text_len", "image_size", "text", "seed", "attn_std")

# Task heads that official checkpoints may carry (loss_names of the config that trained them).
# Two-layer classifiers are nn.Sequential(Linear, LayerNorm, GELU, Linear): keys .0, .1, .3.
CLASSIFIER_HEADS = ("vqa_classifier", "nlvr2_classifier", "snli_classifier")
# Lightning metric states (meter_utils.set_metrics): not weights, ignored when present.
_METRIC_KEY = re.compile(r"^(train|val|dev|test)_[a-z0-9]+_(accuracy|loss|score)\.[A-Za-z_]+$")


@dataclass(frozen=True)
class MeterConfig:
    """Every size needed to rebuild a METER model (CLIP ViT + BERT/RoBERTa + co-attention)."""

    # visual tower (OpenAI CLIP layout)
    image_size: int = 288
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 11  # blocks kept: CLIP layers - 1 (the official wrapper drops the last)
    vision_heads: int = 12
    vision_mlp: int = 3072
    # unused CLIP text-side leftovers of the official wrapper (kept so every key matches)
    clip_context: int = 77
    clip_text_width: int = 512
    clip_token_vocab: int | None = None  # vit_model.token_embedding (first official version only)
    # text encoder
    text_family: str = "roberta"  # "roberta" | "bert"
    text_vocab: int = 50265
    text_hidden: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_intermediate: int = 3072
    text_positions: int = 514
    text_type_vocab: int = 1
    text_pooler: bool = True
    text_ln_eps: float = 1e-5  # roberta-base's config; BERT uses 1e-12
    pad_token_id: int = 1
    # co-attention fusion
    hidden: int = 768
    cross_layers: int = 6
    cross_heads: int = 12
    cross_intermediate: int = 3072
    token_types: int = 2
    # task heads: name -> shapes needed to build it
    heads: dict = field(default_factory=dict, hash=False, compare=False)


CONFIGS = {
    # Demo-sized; every tower keeps METER's 64-wide attention heads, because head counts are not
    # stored in a checkpoint and are read back as width // 64. Only the ITM head (no 30522-row MLM
    # decoder) to keep its checkpoints small.
    "tiny": MeterConfig(
        image_size=64, patch_size=16, vision_width=128, vision_layers=4, vision_heads=2, vision_mlp=512,
        clip_context=77, clip_text_width=64,
        text_vocab=30522, text_hidden=128, text_layers=4, text_heads=2, text_intermediate=512,
        text_positions=64, pad_token_id=0,
        hidden=128, cross_layers=2, cross_heads=2, cross_intermediate=512,
        heads={"itm_score": {"inputs": 256}},
    ),
    # METER-CLIP16-RoBERTa (clip16 text_roberta image_size=288) with the offline WordPiece vocab
    "base": MeterConfig(
        text_vocab=30522, pad_token_id=0,
        heads={"mlm_score": {"vocab": 30522}, "itm_score": {"inputs": 1536}},
    ),
}


# ----------------------------------------------------------------------------- modules


class ClipVisual(nn.Module):
    """The official ``VisualTransformer``: OpenAI parameter names, no projection, all tokens out."""

    def __init__(self, cfg: MeterConfig):
        super().__init__()
        from open_clip.transformer import LayerNormFp32, QuickGELU, Transformer

        width, grid = cfg.vision_width, cfg.image_size // cfg.patch_size
        self.patch_size = cfg.patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNormFp32(width)
        self.transformer = Transformer(
            width, cfg.vision_layers, cfg.vision_heads, mlp_ratio=cfg.vision_mlp / width,
            act_layer=QuickGELU, norm_layer=LayerNormFp32,
        )
        self.ln_post = LayerNormFp32(width)
        mlp = self.transformer.resblocks[0].mlp.c_fc.out_features if cfg.vision_layers else cfg.vision_mlp
        if mlp != cfg.vision_mlp:
            raise ModelError(f"cannot build a visual MLP of width {cfg.vision_mlp} for width {width}")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.conv1(image.to(self.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # (B, grid², width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x)  # open_clip blocks run batch-first
        return self.ln_post(x)


class ClipWrapper(nn.Module):
    """``vit_model``: the visual tower plus the unused CLIP text-side leftovers of the official wrapper."""

    def __init__(self, cfg: MeterConfig):
        super().__init__()
        from open_clip.transformer import LayerNormFp32

        self.visual = ClipVisual(cfg)
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.clip_context, cfg.clip_text_width))
        self.ln_final = LayerNormFp32(cfg.clip_text_width)
        if cfg.clip_token_vocab:
            self.token_embedding = nn.Embedding(cfg.clip_token_vocab, cfg.clip_text_width)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)


class _Projections(nn.Module):
    """``*.self``: the query/key/value projections of one BERT attention."""

    def __init__(self, hidden: int):
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)


class _DenseNorm(nn.Module):
    """``*.output``: dense, then LayerNorm of (dense + residual)."""

    def __init__(self, n_in: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(n_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertStyleAttention(nn.Module):
    """BERT multi-head attention (``self`` projections + ``output``); keys/values from ``context``."""

    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        if hidden % heads:
            raise ModelError(f"hidden size {hidden} is not a multiple of {heads} heads")
        self.heads = heads
        self.self = _Projections(hidden)
        self.output = _DenseNorm(hidden, hidden, eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        proj = self.self
        q = proj.query(x)  # query before key: the qk hook pairs them in this order
        k = proj.key(context)
        v = proj.value(context)
        b, n, d = q.shape
        h = self.heads

        def split(t):
            return t.view(t.shape[0], t.shape[1], h, d // h).transpose(1, 2)

        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // h)
        if bias is not None:
            scores = scores + bias.to(scores.dtype)
        ctx = (scores.softmax(dim=-1) @ split(v)).transpose(1, 2).reshape(b, n, d)
        return self.output(ctx, x)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.dense = nn.Linear(hidden, intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class CrossLayer(nn.Module):
    """The official ``BertCrossLayer``: self-attention, cross-attention, feed-forward (post-LN)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float = 1e-12):
        super().__init__()
        self.attention = BertStyleAttention(hidden, heads, eps)
        self.crossattention = BertStyleAttention(hidden, heads, eps)
        self.intermediate = _Intermediate(hidden, intermediate)
        self.output = _DenseNorm(intermediate, hidden, eps)

    def forward(self, x, context, self_bias=None, context_bias=None) -> torch.Tensor:
        x = self.attention(x, x, self_bias)
        x = self.crossattention(x, context, context_bias)
        return self.output(self.intermediate(x), x)


class Pooler(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class _HeadTransform(nn.Module):
    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)


class MLMHead(nn.Module):
    """``mlm_score``: transform (dense, GELU, LayerNorm), decoder without bias, separate ``bias``."""

    def __init__(self, hidden: int, vocab: int, eps: float = 1e-12):
        super().__init__()
        self.transform = _HeadTransform(hidden, eps)
        self.decoder = nn.Linear(hidden, vocab, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.transform
        return self.decoder(t.LayerNorm(F.gelu(t.dense(x)))) + self.bias


class ITMHead(nn.Module):
    def __init__(self, inputs: int):
        super().__init__()
        self.fc = nn.Linear(inputs, 2)


def _classifier(inputs: int, width: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, width), nn.LayerNorm(width), nn.GELU(), nn.Linear(width, outputs))


def _init_weights(module: nn.Module) -> None:
    """METER's ``objectives.init_weights`` (normal 0.02, zero bias, unit LayerNorm)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


def _sharpen_cross_attention(model: nn.Module, std: float) -> None:
    """Redraw the co-attention layers' query/key weights with a larger std.

    With METER's 0.02 initialisation, random co-attention is nearly uniform, so every
    cross-modal AN follows one modality; larger query/key weights give peaked attention and
    cross-modal ANs that depend on both inputs (what a trained fusion model has). Random models
    only (``random:meter:tiny?attn_std=0.3``).
    """
    for layers in (model.cross_modal_image_layers, model.cross_modal_text_layers):
        for layer in layers:
            for attention in (layer.attention, layer.crossattention):
                for proj in (attention.self.query, attention.self.key):
                    proj.weight.data.normal_(mean=0.0, std=std)


def _text_encoder(cfg: MeterConfig) -> nn.Module:
    if cfg.text_family == "roberta":
        from transformers import RobertaConfig as Config, RobertaModel as Model
    elif cfg.text_family == "bert":
        from transformers import BertConfig as Config, BertModel as Model
    else:
        raise ModelError(f"unknown METER text encoder {cfg.text_family!r}; use text=roberta or text=bert")
    config = Config(
        vocab_size=cfg.text_vocab, hidden_size=cfg.text_hidden, num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads, intermediate_size=cfg.text_intermediate,
        max_position_embeddings=cfg.text_positions, type_vocab_size=cfg.text_type_vocab,
        layer_norm_eps=cfg.text_ln_eps, pad_token_id=cfg.pad_token_id, hidden_act="gelu",
    )
    config._attn_implementation = "eager"  # explicit additive mask, as METER's transformers 4.6
    return Model(config, add_pooling_layer=cfg.text_pooler)


class MeterModel(nn.Module):
    """METERTransformerSS for inference, with the official module names (so the official keys)."""

    def __init__(self, cfg: MeterConfig):
        super().__init__()
        self.config = cfg
        h = cfg.hidden
        self.vit_model = ClipWrapper(cfg)
        self.text_transformer = _text_encoder(cfg)
        self.cross_modal_text_transform = nn.Linear(cfg.text_hidden, h)
        self.cross_modal_image_transform = nn.Linear(cfg.vision_width, h)
        self.token_type_embeddings = nn.Embedding(cfg.token_types, h)
        self.cross_modal_image_layers = nn.ModuleList(
            [CrossLayer(h, cfg.cross_heads, cfg.cross_intermediate) for _ in range(cfg.cross_layers)]
        )
        self.cross_modal_text_layers = nn.ModuleList(
            [CrossLayer(h, cfg.cross_heads, cfg.cross_intermediate) for _ in range(cfg.cross_layers)]
        )
        self.cross_modal_image_pooler = Pooler(h)
        self.cross_modal_text_pooler = Pooler(h)
        for name, shape in cfg.heads.items():
            if name == "mlm_score":
                head = MLMHead(h, shape["vocab"])
            elif name == "itm_score":
                head = ITMHead(shape["inputs"])
            elif name == "rank_output":
                head = nn.Linear(shape["inputs"], shape["outputs"])
            elif name in CLASSIFIER_HEADS:
                head = _classifier(shape["inputs"], shape["width"], shape["outputs"])
            else:
                raise ModelError(f"unknown METER head {name!r}")
            setattr(self, name, head)
        for name, module in self.named_children():
            if name not in ("vit_model", "text_transformer"):
                module.apply(_init_weights)

    def forward(self, image: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor):
        text_bias = (1.0 - text_mask[:, None, None, :].float()) * MASK_VALUE
        enc = self.text_transformer
        x = enc.embeddings(input_ids=text_ids)
        for layer in enc.encoder.layer:
            x = layer(x, text_bias.to(x.dtype))
            x = x[0] if isinstance(x, tuple) else x
        x = self.cross_modal_text_transform(x)
        y = self.cross_modal_image_transform(self.vit_model(image))
        # token type 0 for text, 1 for the image; the image mask is all ones (no bias needed)
        types = self.token_type_embeddings.weight
        x = x + types[0].to(x.dtype)
        y = y + types[1].to(y.dtype)
        for text_layer, image_layer in zip(self.cross_modal_text_layers, self.cross_modal_image_layers):
            x, y = text_layer(x, y, text_bias, None), image_layer(y, x, None, text_bias)
        return x, y


# ----------------------------------------------------------------------------- checkpoints


def _layer_count(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def infer_config(state: dict, text_family: str | None = None) -> MeterConfig:
    """A :class:`MeterConfig` read from the shapes of an official METER state dict.

    Image resolution from ``vit_model.visual.positional_embedding`` (grid² + 1 rows) times the patch
    size of ``conv1``; widths from the weights; layer counts from the numbered keys; text vocabulary
    from the word embeddings; RoBERTa when the text token-type table has one row (roberta-base),
    else BERT (override with ``text_family``). Heads are not stored: ``width // 64`` for every
    tower (the official rule for the CLIP ViT; true of roberta/bert base and large and of METER's
    fusion layers). Task heads are built for the head keys present.
    """

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise ModelError(f"checkpoint is not an official METER (CLIP + RoBERTa/BERT) state dict: no key {key!r}")
        return state[key]

    conv = need("vit_model.visual.conv1.weight")
    width, patch = conv.shape[0], conv.shape[-1]
    n_pos = need("vit_model.visual.positional_embedding").shape[0]
    grid = round(math.sqrt(n_pos - 1))
    if grid * grid + 1 != n_pos:
        raise ModelError(f"vit_model.visual.positional_embedding has {n_pos} rows, not a square grid + 1")
    vision_layers = _layer_count(state, "vit_model.visual.transformer.resblocks.")
    words = need("text_transformer.embeddings.word_embeddings.weight")
    text_hidden = words.shape[1]
    type_vocab = need("text_transformer.embeddings.token_type_embeddings.weight").shape[0]
    family = text_family or ("roberta" if type_vocab == 1 else "bert")
    text_layers = _layer_count(state, "text_transformer.encoder.layer.")
    hidden, text_in = need("cross_modal_text_transform.weight").shape
    image_in = need("cross_modal_image_transform.weight").shape[1]
    if text_in != text_hidden or image_in != width:
        raise ModelError(
            f"checkpoint's cross-modal transforms take {text_in}/{image_in} inputs but the text/image towers are {text_hidden}/{width} wide"
        )
    n_image, n_text = _layer_count(state, "cross_modal_image_layers."), _layer_count(state, "cross_modal_text_layers.")
    if n_image != n_text or not n_image:
        raise ModelError(f"checkpoint has {n_image} cross-modal image layers and {n_text} text layers")
    clip_pos = need("vit_model.positional_embedding")
    token_emb = state.get("vit_model.token_embedding.weight")
    heads: dict = {}
    if "mlm_score.decoder.weight" in state:
        heads["mlm_score"] = {"vocab": state["mlm_score.decoder.weight"].shape[0]}
    if "itm_score.fc.weight" in state:
        heads["itm_score"] = {"inputs": state["itm_score.fc.weight"].shape[1]}
    if "rank_output.weight" in state:
        out, inp = state["rank_output.weight"].shape
        heads["rank_output"] = {"inputs": inp, "outputs": out}
    for name in CLASSIFIER_HEADS:
        if f"{name}.0.weight" in state and f"{name}.3.weight" in state:
            width_, inputs = state[f"{name}.0.weight"].shape
            heads[name] = {"inputs": inputs, "width": width_, "outputs": state[f"{name}.3.weight"].shape[0]}
    return MeterConfig(
        image_size=grid * patch, patch_size=patch, vision_width=width, vision_layers=vision_layers,
        vision_heads=max(1, width // 64),
        vision_mlp=need("vit_model.visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0] if vision_layers else 4 * width,
        clip_context=clip_pos.shape[0], clip_text_width=clip_pos.shape[1],
        clip_token_vocab=None if token_emb is None else token_emb.shape[0],
        text_family=family, text_vocab=words.shape[0], text_hidden=text_hidden, text_layers=text_layers,
        text_heads=max(1, text_hidden // 64),
        text_intermediate=need("text_transformer.encoder.layer.0.intermediate.dense.weight").shape[0],
        text_positions=need("text_transformer.embeddings.position_embeddings.weight").shape[0],
        text_type_vocab=type_vocab, text_pooler="text_transformer.pooler.dense.weight" in state,
        text_ln_eps=1e-5 if family == "roberta" else 1e-12,
        hidden=hidden, cross_layers=n_image, cross_heads=max(1, hidden // 64),
        cross_intermediate=need("cross_modal_image_layers.0.intermediate.dense.weight").shape[0],
        token_types=need("token_type_embeddings.weight").shape[0],
        heads=heads,
    )


def resize_positional_embedding(state: dict, patch_size: int, image_size: int) -> dict:
    """Bicubic resize of the visual positional embedding to ``image_size`` (official ``adapt_position_encoding``)."""
    key = "vit_model.visual.positional_embedding"
    pos = state[key]
    if image_size % patch_size:
        raise ModelError(f"image_size {image_size} is not a multiple of the patch size {patch_size}")
    before, after = round(math.sqrt(pos.shape[0] - 1)), image_size // patch_size
    if before == after:
        return state
    grid = pos[1:].float().reshape(before, before, -1).permute(2, 0, 1).unsqueeze(0)
    grid = F.interpolate(grid, size=(after, after), mode="bicubic")
    grid = grid.squeeze(0).permute(1, 2, 0).reshape(after * after, -1).to(pos.dtype)
    return {**state, key: torch.cat([pos[:1], grid], dim=0)}


def official_state_dict(adapter_or_model) -> dict[str, torch.Tensor]:
    """The model's weights in the official METER key layout (as a Lightning ``state_dict``).

    Adds ``text_transformer.embeddings.position_ids``, the persistent buffer transformers 4.6 saved.
    """
    model = getattr(adapter_or_model, "model", adapter_or_model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    positions = model.text_transformer.embeddings.position_embeddings.weight.shape[0]
    state["text_transformer.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    return state


def save_official_checkpoint(adapter_or_model, path) -> Path:
    """Write a Lightning-style checkpoint ``{"state_dict": ...}`` in the official key layout."""
    path = Path(path)
    torch.save({"state_dict": official_state_dict(adapter_or_model)}, path)
    return path


def _buffer_keys(state: dict, cfg: MeterConfig) -> dict:
    """Drop the tolerated non-weight keys (transformers buffers, Lightning metric states) after checking them."""
    out = dict(state)
    for name in ("position_ids", "token_type_ids"):
        key = f"text_transformer.embeddings.{name}"
        if key in out:
            value = out.pop(key)
            if tuple(value.shape) != (1, cfg.text_positions):
                raise ModelError(f"checkpoint key {key} has shape {tuple(value.shape)}, expected (1, {cfg.text_positions})")
    for key in [k for k in out if _METRIC_KEY.match(k)]:
        del out[key]
    return out


class _Inert:
    """Stand-in for a non-tensor object in a Lightning checkpoint (callbacks, hyper-parameters)."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a METER checkpoint, read with ``weights_only=True``.

    First through :func:`alignment.models.weights.load_state_dict`. Lightning checkpoints may also
    pickle objects of their training code (``callbacks`` keyed by class, hyper-parameters); those
    globals are then replaced by an inert stub through ``torch.serialization.safe_globals`` (no code
    of the checkpoint runs) and only the tensors of ``state_dict`` are kept.
    """
    from alignment.models.weights import load_state_dict

    try:
        return load_state_dict(path)
    except ModelError as err:
        if "Unsupported global" not in str(err):
            raise
    stubs: list = []
    for _ in range(64):
        try:
            with torch.serialization.safe_globals(stubs):
                raw = torch.load(path, map_location="cpu", weights_only=True)
            break
        except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError subclasses and others
            match = re.search(r"GLOBAL ([\w.]+) was not an allowed global", str(err))
            if not match:
                raise ModelError(f"cannot read checkpoint {path}: {type(err).__name__}: {str(err)[:300]}") from None
            name = match.group(1)
            stubs.append((type(name.rsplit(".", 1)[-1], (_Inert,), {}), name))
    else:
        raise ModelError(f"cannot read checkpoint {path}: too many non-tensor objects")
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {path} holds no state dict of tensors")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_official(model: MeterModel, state: dict, source: str) -> None:
    """Load an official-layout state dict; every key must match by name and shape."""
    state = _buffer_keys(state, model.config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise ModelError(
            f"checkpoint {source} does not fit METER: {len(lines)} shape mismatches, e.g. {lines[:3]}"
        ) from None
    if missing or unexpected:
        raise ModelError(
            f"checkpoint {source} does not match the official METER key layout: "
            f"{len(missing)} missing keys (e.g. {list(missing)[:5]}), "
            f"{len(unexpected)} unexpected keys (e.g. {list(unexpected)[:5]})"
        )


# ----------------------------------------------------------------------------- adapter


def _vision_branch(model: MeterModel) -> Branch:
    transformer = model.vit_model.visual.transformer
    blocks = list(transformer.resblocks)
    layers = tuple(
        LayerTaps(attn=Tap(b.attn), mlp=Tap(b.mlp.c_proj, "input"), packed=PackedQK(b.attn)) for b in blocks
    )
    width = model.config.vision_width
    sizes = {"attn": width, "qk": width, "mlp": model.config.vision_mlp}
    return Branch("image", layers, sizes, seq_first=not getattr(transformer, "batch_first", True))


def _bert_taps(layer, attn) -> LayerTaps:
    return LayerTaps(
        attn=Tap(attn.output.dense),
        mlp=Tap(layer.output.dense, "input"),
        q=Tap(layer.attention.self.query),
        k=Tap(layer.attention.self.key),
    )


def _text_branch(model: MeterModel) -> Branch:
    cfg = model.config
    layers = tuple(_bert_taps(layer, layer.attention) for layer in model.text_transformer.encoder.layer)
    return Branch("text", layers, {"attn": cfg.text_hidden, "qk": cfg.text_hidden, "mlp": cfg.text_intermediate})


def _cross_branch(name: str, layers) -> Branch:
    first = layers[0]
    hidden = first.attention.self.query.out_features
    taps = tuple(_bert_taps(layer, layer.crossattention) for layer in layers)
    return Branch(name, taps, {"attn": hidden, "qk": hidden, "mlp": first.intermediate.dense.out_features})


def _default_tokenizer(cfg: MeterConfig) -> str:
    if cfg.text_family == "bert":
        return "bert-base-uncased"
    return "roberta-large" if cfg.text_hidden == 1024 else "roberta-base"


class MeterAdapter(Adapter):
    """METER: branches ``image``, ``text``, ``cross_image``, ``cross_text`` (see module docs)."""

    kind = "fusion"

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        unknown = sorted(set(spec.options) - set(OPTIONS))
        if unknown:
            raise ModelError(f"unknown option(s) {unknown} in {spec.raw!r}; METER takes {', '.join(OPTIONS)}")
        opts = spec.options
        if spec.random:
            variant = spec.where or "tiny"
            if variant not in CONFIGS:
                raise ModelError(f"unknown METER config {variant!r} in {spec.raw!r}; use random:meter:{'|'.join(CONFIGS)}")
            from alignment.models.tokenizers import load_tokenizer, offline_wordpiece

            cfg = CONFIGS[variant]
            if "text" in opts:
                roberta = opts["text"] == "roberta"
                cfg = replace(
                    cfg, text_family=opts["text"], text_type_vocab=1 if roberta else 2, text_ln_eps=1e-5 if roberta else 1e-12
                )
            if "image_size" in opts:
                cfg = replace(cfg, image_size=self._int_option("image_size"))
            tokenizer = (
                load_tokenizer(opts["tokenizer"], spec.raw, f"random:meter:{variant}?tokenizer=/local/tokenizer")
                if "tokenizer" in opts else offline_wordpiece()
            )
            cfg = replace(cfg, pad_token_id=tokenizer.pad_token_id)
            torch.manual_seed(spec.seed())
            model = MeterModel(cfg)
            if "attn_std" in opts:
                _sharpen_cross_attention(model, self._float_option("attn_std"))
        else:
            if not spec.where:
                raise ModelError(
                    f"{spec.raw!r} names no checkpoint: use meter:/path/meter.ckpt (official METER Lightning "
                    f"checkpoint) or random:meter:tiny|base"
                )
            where = spec.where if spec.weights is None else f"{spec.where}@{spec.weights}"
            path = Path(where).expanduser()
            if not path.is_file():
                raise ModelError(f"METER checkpoint not found: {path}")
            state = read_checkpoint(path)
            cfg = infer_config(state, opts.get("text"))
            if "image_size" in opts:
                size = self._int_option("image_size")
                state = resize_positional_embedding(state, cfg.patch_size, size)
                cfg = replace(cfg, image_size=size)
            tokenizer = self._checkpoint_tokenizer(cfg, path)
            cfg = replace(cfg, pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else cfg.pad_token_id)
            model = MeterModel(cfg)
            load_official(model, state, str(path))
        n_tokens = len(tokenizer)
        if n_tokens > cfg.text_vocab:
            raise ModelError(
                f"tokenizer of {spec.raw!r} has {n_tokens} tokens but the text encoder only {cfg.text_vocab} embeddings; "
                f"pass the tokenizer the checkpoint was trained with (?tokenizer=/local/{_default_tokenizer(cfg)})"
            )
        self.tokenizer = tokenizer
        self.config = cfg
        self.model = model.eval()
        self.image_size = cfg.image_size
        # positions: RoBERTa numbers tokens from pad_token_id + 1
        room = cfg.text_positions - (cfg.pad_token_id + 1 if cfg.text_family == "roberta" else 0)
        self.max_text_len = min(self._int_option("max_text_len", MAX_TEXT_LEN), room)
        self.branches = {
            "image": _vision_branch(model),
            "text": _text_branch(model),
            "cross_image": _cross_branch("cross_image", model.cross_modal_image_layers),
            "cross_text": _cross_branch("cross_text", model.cross_modal_text_layers),
        }

    def _int_option(self, name: str, default: int | None = None) -> int:
        value = self.spec.options.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ModelError(f"option {name}={value!r} in {self.spec.raw!r} is not an integer") from None

    def _float_option(self, name: str) -> float:
        value = self.spec.options[name]
        try:
            return float(value)
        except ValueError:
            raise ModelError(f"option {name}={value!r} in {self.spec.raw!r} is not a number") from None

    def _checkpoint_tokenizer(self, cfg: MeterConfig, path: Path):
        from alignment.models.tokenizers import load_tokenizer

        default = _default_tokenizer(cfg)
        where = self.spec.options.get("tokenizer", default)
        if where.startswith(("/", "~", "./", "../")) and not Path(where).expanduser().exists():
            raise ModelError(f"tokenizer folder not found: {where}")
        return load_tokenizer(where, self.spec.raw, f"meter:{path}?tokenizer=/local/{default}")

    def prepare(self, images, texts, branches) -> Batch:
        n = len(texts) if texts is not None else len(images)
        texts = [""] * n if texts is None else ["" if t is None else str(t) for t in texts]
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_len,
            return_tensors="pt", padding_side="right",
        )
        ids, mask = enc["input_ids"], enc["attention_mask"].bool()
        if images is None:  # no image: the mean-grey image (zeros once normalised)
            images = torch.zeros(n, 3, self.image_size, self.image_size)
        zeros = torch.zeros(n, dtype=torch.long)
        return Batch(
            {"image": images, "text_ids": ids, "text_mask": mask}, n,
            token_mask={"text": mask, "cross_text": mask},
            cls_index={"text": zeros, "cross_text": zeros},
        )

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        # fusion: the cross-modal layers need both towers, whatever branches are asked for
        device = self.device()
        inputs = batch.inputs
        self.model(inputs["image"].to(device), inputs["text_ids"].to(device), inputs["text_mask"].to(device))
