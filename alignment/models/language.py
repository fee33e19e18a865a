"""Language-only models of the concept-RSA study: BERT, causal LMs (Llama, Mistral, ...) and GloVe.

``bert`` is a transformers ``BertModel`` (taps as RoBERTa's). ``causal-lm`` (and the narrower
``llama``, ``mistral``) loads any ``AutoModelForCausalLM`` of a folder or hub id and runs its base
model (no vocabulary projection); its blocks offer ``hidden``, ``attn`` (``self_attn.o_proj``
output) and ``mlp`` (input of ``mlp.down_proj``); ``qk`` only without grouped key/value heads.
``glove`` reads a GloVe vectors text file; its one ``hidden`` layer is the mean of the word
vectors of a text (out-of-vocabulary words are left out and reported).

Pooling of causal LMs: ``mean`` averages the real tokens except a leading BOS token (its
hidden state is the same for every text: it sees only itself), ``cls`` takes the last real
token, the one that has read the whole text.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from alignment.models.base import Adapter, Batch, Branch, LayerTaps, ModelError, ModelSpec, Tap, hidden_taps
from alignment.models.hf import _bert_text, _HFAdapter, _check_layout, _local_example, _max_length, _TextAdapter, _tokenize, _tokenizer
from alignment.models.tokenizers import MINILM_VOCAB_SIZE

#: torch dtypes a ``?dtype=`` option may name (large models in half precision)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _bert_configs() -> dict[str, Callable]:
    from transformers import BertConfig

    return {
        "tiny": lambda: BertConfig(**_bert_text(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4)),
        "base": lambda: BertConfig(**_bert_text()),  # bert-base-uncased
    }


class BertAdapter(_TextAdapter):
    """transformers ``BertModel``: branch ``text`` (CLS = token 0), e.g. ``bert:google-bert/bert-base-uncased``."""

    arch = "bert"
    model_types = ("bert",)
    configs = staticmethod(_bert_configs)

    def _model_class(self):
        from transformers import BertModel

        return BertModel

    def __init__(self, spec: ModelSpec):
        example = _local_example("bert", " and tokenizer")
        self._text_setup(self._build(spec, example), example, 0)


# ---------------------------------------------------------------------------------------------
# causal LMs


def _lm_text(**kw) -> dict:
    # random configs use the offline WordPiece tokenizer: [CLS] (101) plays the BOS token
    return dict(vocab_size=MINILM_VOCAB_SIZE, pad_token_id=0, bos_token_id=101, eos_token_id=102, max_position_embeddings=512, **kw)


def _causal_configs() -> dict[str, Callable]:
    from transformers import LlamaConfig, MistralConfig

    tiny = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2)
    return {
        "tiny": lambda: LlamaConfig(**_lm_text(**tiny)),
        "tiny-mha": lambda: LlamaConfig(**_lm_text(**{**tiny, "num_key_value_heads": 4})),
        "tiny-mistral": lambda: MistralConfig(**_lm_text(**tiny, sliding_window=16)),
    }


def _llama_configs() -> dict[str, Callable]:
    return {"tiny": _causal_configs()["tiny"]}


def _mistral_configs() -> dict[str, Callable]:
    return {"tiny": _causal_configs()["tiny-mistral"]}


def _quantization(spec: ModelSpec) -> dict:
    """from_pretrained arguments of ``?quantize=4bit`` (bitsandbytes on a CUDA GPU) and ``?dtype=``."""
    kwargs: dict = {}
    dtype = spec.options.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r} in {spec.raw!r}; choose one of {', '.join(DTYPES)}")
    kwargs["dtype"] = DTYPES[dtype]
    quantize = spec.options.get("quantize")
    if quantize is None:
        return kwargs
    if quantize != "4bit":
        raise ModelError(f"unknown quantization {quantize!r} in {spec.raw!r}; the one offered is quantize=4bit")
    if spec.random:
        raise ModelError("quantize=4bit loads pretrained weights; it does not apply to random:… models")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError("quantize=4bit needs the bitsandbytes package (pip install bitsandbytes)") from None
    if not torch.cuda.is_available():
        raise ModelError("quantize=4bit needs a CUDA GPU (bitsandbytes 4-bit layers run on the GPU); drop ?quantize=4bit")
    from transformers import BitsAndBytesConfig

    kwargs["dtype"] = torch.float16 if dtype == "float32" else DTYPES[dtype]
    kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=kwargs["dtype"])
    kwargs["device_map"] = {"": 0}
    return kwargs


def decoder_branch(name: str, base: nn.Module, arch: str) -> Branch:
    """The blocks of a decoder (``base.layers``, final ``base.norm``) as a branch.

    ``hidden`` follows transformers: ``output_hidden_states[-1]`` of a causal LM is the
    *normed* last state, so the last hidden tap reads ``base.norm``.
    """
    try:
        _check_layout(base, arch, ["layers", "norm"])
        _check_layout(base.layers[0], arch, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.o_proj", "mlp.down_proj"])
    except ModelError:
        raise ModelError(
            f"{arch}: {type(base).__name__} is not laid out as the decoders this adapter reads (Llama, Mistral, Qwen2, "
            "Gemma, ...: layers[i].self_attn.q_proj/k_proj/o_proj, layers[i].mlp.down_proj, a final norm)"
        ) from None
    layers = list(base.layers)
    first = layers[0]
    sizes = {"attn": first.self_attn.o_proj.out_features, "mlp": first.mlp.down_proj.in_features,
             "hidden": first.self_attn.o_proj.out_features}
    same_qk = first.self_attn.q_proj.out_features == first.self_attn.k_proj.out_features
    if same_qk:  # grouped key/value heads have fewer keys than queries: no elementwise q ⊙ k
        sizes["qk"] = first.self_attn.q_proj.out_features
    taps = tuple(
        LayerTaps(attn=Tap(l.self_attn.o_proj), mlp=Tap(l.mlp.down_proj, "input"),
                  q=Tap(l.self_attn.q_proj) if same_qk else None, k=Tap(l.self_attn.k_proj) if same_qk else None)
        for l in layers
    )
    return Branch(name, taps, sizes, hidden=hidden_taps(layers, last=base.norm))


def text_pooling_masks(input_ids: torch.Tensor, attention_mask: torch.Tensor, bos_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pooling mask (B, L) of a causal LM's tokens (real tokens, a leading BOS left out
    unless it is the only token) and the index (B,) of the last real token."""
    mask = attention_mask.bool().clone()
    last = mask.shape[1] - 1 - mask.flip(1).long().argmax(dim=1)  # padding may sit left or right
    if bos_id is not None:
        first = mask.long().argmax(dim=1)
        rows = torch.arange(mask.shape[0])
        is_bos = (input_ids[rows, first] == bos_id) & (mask.sum(dim=1) > 1)
        mask[rows[is_bos], first[is_bos]] = False
    return mask, last


def _right_padded(tokenizer):
    """The tokenizer, or a copy of it (tokenizers may be shared), that pads on the right with a
    pad token (its EOS token if it has none): real tokens keep positions 0..n-1 and, in a causal
    model, never see the padding."""
    if tokenizer.pad_token is not None and tokenizer.padding_side == "right":
        return tokenizer
    import copy

    tokenizer = copy.deepcopy(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


class CausalLMAdapter(_HFAdapter):
    """Any ``AutoModelForCausalLM`` (Llama, Mistral, Qwen, ...): branch ``text``.

    ``?dtype=bfloat16`` loads large models in half precision; ``?quantize=4bit`` in 4 bits
    (bitsandbytes, CUDA only). Tokenizers without a pad token pad with their EOS token (masked).
    """

    kind = "text"
    image_size = None
    arch = "causal-lm"
    model_types: tuple[str, ...] = ()  # any causal LM
    configs = staticmethod(_causal_configs)
    placed = False

    def _model_class(self):
        from transformers import AutoModelForCausalLM

        class _Auto:  # random configs: the causal LM class of the config
            from_pretrained = AutoModelForCausalLM.from_pretrained

            def __new__(cls, config):
                return AutoModelForCausalLM.from_config(config)

        return _Auto

    def __init__(self, spec: ModelSpec):
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        example = _local_example(self.arch, " and tokenizer")
        self.model_types = self.model_types or tuple(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        kwargs = _quantization(spec)
        self.placed = "device_map" in kwargs
        model = self._build(spec, example, **kwargs).eval()
        self.model = model
        base = model.base_model
        cfg = model.config
        self.tokenizer = _right_padded(_tokenizer(spec, self.where, self.local, example, cfg.vocab_size))
        self.max_length = _max_length(self.tokenizer, int(getattr(cfg, "max_position_embeddings", 2048) or 2048))
        self.bos_id = getattr(cfg, "bos_token_id", None)
        self.base = base
        self.branches = {"text": decoder_branch("text", base, self.arch)}

    def prepare(self, images, texts, branches) -> Batch:
        texts = list(texts) if texts is not None else []
        inputs = _tokenize(self.tokenizer, texts, self.max_length)
        mask, last = text_pooling_masks(inputs["input_ids"], inputs["attention_mask"], self.bos_id)
        return Batch(inputs, len(texts), {"text": mask}, {"text": last})

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        device = self.device()
        self.base(**{k: v.to(device) for k, v in batch.inputs.items()}, use_cache=False)


class LlamaAdapter(CausalLMAdapter):
    arch = "llama"
    model_types = ("llama",)
    configs = staticmethod(_llama_configs)


class MistralAdapter(CausalLMAdapter):
    arch = "mistral"
    model_types = ("mistral",)
    configs = staticmethod(_mistral_configs)


# ---------------------------------------------------------------------------------------------
# GloVe

#: words as GloVe's vocabularies split them ("it's" → "it", "'s"); punctuation is left out
_WORD = re.compile(r"\w+(?:-\w+)*|'\w+")


def read_glove(path: str | Path) -> tuple[dict[str, int], np.ndarray]:
    """Vocabulary (word → row) and vectors (V, D) float32 of a GloVe text file (``word v1 … vD``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"GloVe vectors file not found: {path}")
    words: dict[str, int] = {}
    rows: list[np.ndarray] = []
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            # some files (840B) hold words with spaces: the vector is the last `dim` fields
            word, values = " ".join(parts[:-dim]), parts[-dim:]
            if len(parts) - 1 < dim or not word:
                raise ModelError(f"{path}:{number}: not a GloVe line ('word' then {dim} numbers)")
            try:
                vector = np.asarray(values, dtype=np.float32)
            except ValueError:
                raise ModelError(f"{path}:{number}: not a GloVe line ('word' then {dim} numbers)") from None
            if word not in words:
                words[word] = len(rows)
                rows.append(vector)
    if not rows:
        raise ModelError(f"{path}: no word vectors")
    return words, np.stack(rows)


class _GloveModel(nn.Module):
    """Word vectors as a module: ids (B, L) → vectors (B, L, D), read by a tap on ``out``."""

    def __init__(self, vectors: np.ndarray):
        super().__init__()
        self.vectors = nn.Embedding.from_pretrained(torch.from_numpy(vectors), freeze=True)
        self.out = nn.Identity()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.vectors(ids))


class GloveAdapter(Adapter):
    """GloVe word vectors from a text file: ``glove:/path/glove.840B.300d.txt``.

    Branch ``text`` with one ``hidden`` layer (0): the mean of the vectors of the text's words
    (``cls``: its first known word). Words are lower-cased unless ``?case=keep`` (the 840B and
    42B vocabularies are cased). Words without a vector are left out and counted in
    :attr:`oov` (word → occurrences), and a warning names them; a text without any known word
    gets the zero vector.
    """

    kind = "text"
    image_size = None

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        where = (f"{spec.where}@{spec.weights}" if spec.where and spec.weights else spec.where or spec.weights)
        if spec.random:
            dim, size = int(spec.options.get("dim", 50)), 1000
            torch.manual_seed(spec.seed())
            self.words = {f"w{i}": i for i in range(size)}
            vectors = torch.randn(size, dim).numpy()
        else:
            if not where:
                raise ModelError(f"{spec.raw!r} names no vectors file: use glove:/path/glove.6B.300d.txt")
            self.words, vectors = read_glove(where)
        self.lower = spec.options.get("case", "lower") != "keep"
        self.oov: Counter = Counter()
        self.model = _GloveModel(vectors)
        self.branches = {"text": Branch("text", (), {"hidden": vectors.shape[1]}, hidden=(Tap(self.model.out),))}

    def tokens(self, text: str) -> list[str]:
        return _WORD.findall(text.lower() if self.lower else text)

    def prepare(self, images, texts, branches) -> Batch:
        texts = ["" if t is None else str(t) for t in (texts or [])]
        ids = [[self.words[w] for w in self.tokens(t) if w in self.words] for t in texts]
        missing = Counter(w for t in texts for w in self.tokens(t) if w not in self.words)
        if missing:
            new = sorted(set(missing) - set(self.oov))
            self.oov.update(missing)
            if new:
                warnings.warn(f"{self.spec.raw}: {len(new)} words without a GloVe vector are left out: "
                              f"{', '.join(new[:20])}{' …' if len(new) > 20 else ''}", stacklevel=2)
        length = max([1, *map(len, ids)])
        batch = torch.zeros(len(ids), length, dtype=torch.long)
        mask = torch.zeros(len(ids), length, dtype=torch.bool)
        for i, row in enumerate(ids):
            batch[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = True
        return Batch({"ids": batch}, len(ids), {"text": mask}, {"text": torch.zeros(len(ids), dtype=torch.long)})

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        self.model(batch.inputs["ids"].to(self.device()))
