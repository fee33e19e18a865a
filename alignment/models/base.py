"""The one interface every model adapter implements, and the hooks that read artificial neurons.

An adapter wraps a torch model and names its **branches** (``image``, ``text``, ``cross_image``,
``cross_text``) and, per branch, the **taps** of every layer: where the attention output, the
query/key projections and the feed-forward intermediate can be read. Extraction registers forward
hooks on those taps (:func:`capture`), runs the adapter's forward pass, and pools each tap over the
tokens the batch marks as real (padding excluded), so only (batch, units) arrays are kept.
"""

from __future__ import annotations

import contextlib
import functools
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from alignment.conventions import AN_KINDS
POOLINGS = ("mean", "cls")


class ModelError(ValueError):
    """A model spec that cannot be honoured: unknown name, missing or unreadable weights."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec string ``[random:]ARCH[:WHERE][@WEIGHTS][?key=value&...]``.

    ``clip:ViT-B-32@openai`` (open_clip name and pretrained tag or local file),
    ``hf-clip:/path/or/hub-id``, ``meter:/path/meter.ckpt``, ``random:meter:tiny?seed=1``.
    ``where`` is the variant (open_clip name, named config) or the weights location, as the
    architecture defines it.
    """

    raw: str
    arch: str
    where: str | None = None
    weights: str | None = None
    random: bool = False
    options: dict = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def parse(cls, spec: str) -> "ModelSpec":
        text = spec.strip()
        if not text:
            raise ModelError("empty model spec")
        options: dict[str, str] = {}
        if "?" in text:
            text, query = text.split("?", 1)
            for item in filter(None, query.split("&")):
                if "=" not in item:
                    raise ModelError(f"model spec option {item!r} in {spec!r} is not key=value")
                key, value = item.split("=", 1)
                options[key] = value
        random = text.startswith("random:")
        if random:
            text = text[len("random:"):]
        weights = None
        # '@' separates weights for open_clip names; a path may contain '@' only after the arch
        match = re.match(r"^([A-Za-z0-9_-]+)(?::([^@]*))?(?:@(.+))?$", text)
        if not match:
            raise ModelError(f"cannot parse model spec {spec!r}; expected [random:]ARCH[:WHERE][@WEIGHTS]")
        arch, where, weights = match.group(1).lower(), match.group(2) or None, match.group(3)
        return cls(raw=spec, arch=arch, where=where, weights=weights, random=random, options=options)

    def seed(self) -> int:
        return int(self.options.get("seed", 0))


@dataclass(frozen=True)
class Tap:
    """Where a tensor is read: the output of ``module`` (element ``index`` if a tuple) or its input."""

    module: nn.Module
    source: str = "output"  # "output" | "input"
    index: int = 0  # which element of a tuple output (a two-stream layer returns both streams)


@dataclass(frozen=True)
class PackedQK:
    """Query and key of an ``nn.MultiheadAttention`` with packed ``in_proj`` weights.

    The module computes q and k inside one fused call, so while they are captured its forward is
    replaced by :func:`_self_attention_with_qk` (same result, q ⊙ k taken on the way); other
    calls (cross-attention, attention weights requested) recompute q and k from the inputs.
    """

    module: nn.MultiheadAttention


@dataclass(frozen=True)
class LayerTaps:
    """The hook points of one transformer layer.

    attn : attention output after the output projection, before the residual add.
    q, k : query and key projections (or ``packed`` for a packed multi-head attention).
    mlp : a tap whose tensor is the feed-forward intermediate after the activation
          (usually the *input* of the second linear layer).
    """

    attn: Tap
    mlp: Tap
    q: Tap | None = None
    k: Tap | None = None
    packed: PackedQK | None = None


@dataclass(frozen=True)
class Branch:
    """One stream of a model: its modality, layer taps and unit counts per AN kind.

    hidden : the taps of the ``hidden`` kind, one more than ``layers``: tap 0 reads the input
        of the first block (the embeddings as the blocks receive them), tap i the output of
        block i, or whatever the model itself reports as ``output_hidden_states[i]`` (causal
        LMs report the last one after the final norm). None: the branch has no hidden kind.
    """

    name: str
    layers: tuple[LayerTaps, ...]
    sizes: dict  # kind -> ANs per layer
    seq_first: bool = False  # tensors laid out (tokens, batch, units)
    hidden: tuple[Tap, ...] | None = None

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def units(self, kind: str, layer: int) -> int:
        """ANs of one layer: ``sizes[kind]``, or its ``layer``-th entry where widths differ
        by layer (a convolutional tower's hidden states)."""
        size = self.sizes[kind]
        return int(size[layer]) if isinstance(size, (tuple, list)) else int(size)

    def layer_count(self, kind: str = "attn") -> int:
        """Layers of an AN kind: the blocks, or blocks + 1 for ``hidden`` (layer 0 = embeddings)."""
        if kind == "hidden":
            return 0 if self.hidden is None else len(self.hidden)
        return self.n_layers


def hidden_taps(blocks, last: nn.Module | None = None) -> tuple[Tap, ...]:
    """Hidden-state taps of a stack of blocks: the input of block 0, then every block's output.

    ``last``: a module whose output replaces the last block's (a final norm that the model
    reports as its last hidden state).
    """
    blocks = list(blocks)
    taps = [Tap(blocks[0], "input"), *(Tap(b) for b in blocks)]
    if last is not None:
        taps[-1] = Tap(last)
    return tuple(taps)


@dataclass
class Batch:
    """Model inputs for one batch plus, per branch, which tokens are pooled.

    token_mask : branch -> bool tensor (B, L); True for real tokens. Missing: all tokens.
    cls_index : branch -> long tensor (B,); the token used by ``pooling="cls"``.
    """

    inputs: dict
    size: int
    token_mask: dict = field(default_factory=dict)
    cls_index: dict = field(default_factory=dict)


class Adapter(ABC):
    """Base class of model adapters.

    Subclasses set ``spec``, ``model``, ``branches``, ``image_size``, ``image_mean``,
    ``image_std`` and implement :meth:`prepare` and :meth:`forward` (abstract: an adapter
    that lacks one fails when it is instantiated, not in the middle of an extraction).
    """

    spec: ModelSpec
    model: nn.Module
    branches: dict[str, Branch]
    kind: str = "dual"  # "dual" (independent towers), "fusion" (cross-modal layers), "image", "text"
    image_size: int | None = None
    #: the adapter takes the stimulus frames themselves (PIL images or None), not pixel tensors:
    #: models fed precomputed region features found by the frame's file
    needs_frames: bool = False
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @abstractmethod
    def prepare(self, images: torch.Tensor | None, texts: Sequence[str] | None, branches: Sequence[str]) -> Batch:
        """Tokenize ``texts`` and pack ``images`` (B, 3, H, W) for the branches asked for."""

    @abstractmethod
    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        """Run the parts of the model that the branches need (outputs are read by hooks)."""

    @property
    def needs_images(self) -> bool:
        return self.image_size is not None

    def describe(self) -> dict:
        return {
            "spec": self.spec.raw,
            "kind": self.kind,
            "branches": {
                name: {"layers": b.n_layers, **({"hidden_layers": b.layer_count("hidden")} if b.hidden else {}),
                       **{f"{k}_units": v for k, v in b.sizes.items()}}
                for name, b in self.branches.items()
            },
        }

    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def branch(self, name: str) -> Branch:
        if name not in self.branches:
            raise ModelError(
                f"model {self.spec.raw!r} has no branch {name!r}; branches: {', '.join(self.branches)}"
            )
        return self.branches[name]

    def check_layers(self, branch: str, layers: Sequence[int] | None, kind: str = "attn") -> list[int]:
        b = self.branch(branch)
        if kind not in b.sizes or b.layer_count(kind) == 0:
            raise ModelError(
                f"branch {branch!r} of {self.spec.raw!r} has no {kind!r} ANs; it offers {', '.join(b.sizes)}"
            )
        n = b.layer_count(kind)
        if layers is None:
            return list(range(n))
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad:
            raise ModelError(f"branch {branch!r} of {self.spec.raw!r} has {kind} layers 0..{n - 1}; got {bad}")
        return list(layers)


def preprocess_images(images, size: int, mean, std) -> torch.Tensor:
    """PIL images → normalised float tensor (B, 3, size, size).

    torchvision's ``Resize(size, BICUBIC)`` then ``CenterCrop(size)``, the transform of CLIP
    (OpenAI, open_clip) and of METER's official code, to the pixel: the short side becomes
    ``size`` and the long side ``int(size · long / short)`` (truncated, not rounded: a 300 × 451
    frame at 288 is 288 × 432); the crop starts at ``int(round((side − size) / 2))``.
    """
    from PIL import Image

    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        image = image.convert("RGB")
        w, h = image.size
        short, long = min(w, h), max(w, h)
        new_long = int(size * long / short)
        image = image.resize((size, new_long) if w <= h else (new_long, size), Image.BICUBIC)
        w, h = image.size
        left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        image = image.crop((left, top, left + size, top + size))
        out[i] = (np.asarray(image, dtype=np.float32) / 255.0).transpose(2, 0, 1)
    out -= np.asarray(mean, dtype=np.float32)[None, :, None, None]
    out /= np.asarray(std, dtype=np.float32)[None, :, None, None]
    return torch.from_numpy(out)


def _to_batch_first(x: torch.Tensor, seq_first: bool) -> torch.Tensor:
    return x.transpose(0, 1) if seq_first else x


def pool_tokens(x: torch.Tensor, mask: torch.Tensor | None, cls: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """Pool token activations (B, L, N) → (B, N): mean over real tokens, or the CLS token."""
    if pooling == "cls":
        if cls is None:
            return x[:, 0]
        return x[torch.arange(x.shape[0], device=x.device), cls.to(x.device)]
    if mask is None or mask.shape[1] != x.shape[1]:
        return x.mean(dim=1)
    m = mask.to(device=x.device, dtype=x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)


class _Store:
    """Pooled outputs of every hooked layer for the current batch."""

    def __init__(self, pooling: str):
        self.pooling = pooling
        self.batch: Batch | None = None
        self.values: dict[tuple[str, int], torch.Tensor] = {}
        self._pending: dict[tuple[str, int], torch.Tensor] = {}

    def pool(self, branch: Branch, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # a convolutional feature map (B, C, H, W): its positions are the tokens
            return x.float().flatten(2).mean(dim=2)
        x = _to_batch_first(x, branch.seq_first).float()
        mask = self.batch.token_mask.get(branch.name) if self.batch else None
        cls = self.batch.cls_index.get(branch.name) if self.batch else None
        return pool_tokens(x, mask, cls, self.pooling)

    def stash(self, key, tensor):
        self._pending[key] = tensor

    def take(self, key):
        return self._pending.pop(key, None)


def check_kind(kind: str, pooling: str = "mean") -> None:
    if kind not in AN_KINDS:
        raise ModelError(f"unknown AN kind {kind!r}; choose one of {', '.join(AN_KINDS)}")
    if pooling not in POOLINGS:
        raise ModelError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")


@contextlib.contextmanager
def capture(adapter: Adapter, targets: dict[str, Sequence[int]], kind: str = "attn", pooling: str = "mean") -> Iterator[_Store]:
    """Register pooling hooks on the taps of ``targets`` (branch → layers); remove them on exit.

    After each forward pass ``store.values[(branch, layer)]`` holds the pooled ANs, a float32
    tensor (B, N) with N = ``branch.sizes[kind]``. ``hidden`` layers count from 0 = embeddings.
    """
    check_kind(kind, pooling)
    store = _Store(pooling)
    handles = []
    try:
        for name, layers in targets.items():
            branch = adapter.branch(name)
            for layer in adapter.check_layers(name, layers, kind):
                handles += _register(store, branch, layer, kind)
        yield store
    finally:
        for handle in handles:
            handle.remove()


def _read(tap: Tap, args, output) -> torch.Tensor:
    if tap.source == "input":
        return args[0]
    return output[tap.index] if isinstance(output, (tuple, list)) else output


class _ReplacedForward:
    """A module's forward replaced until :meth:`remove` (a hook handle's interface)."""

    def __init__(self, module: nn.Module, forward: Callable):
        self.module, self.previous = module, module.__dict__.get("forward")
        module.forward = forward

    def remove(self) -> None:
        if self.previous is None:
            self.module.__dict__.pop("forward", None)
        else:
            self.module.forward = self.previous


def _additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """An ``nn.MultiheadAttention`` mask (bool: True = masked out, or float: added) as a float mask."""
    if mask is None or mask.is_floating_point():
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


def _self_attention_with_qk(mha: nn.MultiheadAttention, forward: Callable, on_qk: Callable, query, key, value,
                            key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True,
                            is_causal=False):
    """``mha.forward`` that hands q ⊙ k (in the layout of ``query``) to ``on_qk``.

    Self-attention without attention weights (how CLIP towers call it) runs from one input
    projection: (L, B, d) or (B, L, d) → q, k, v → scaled dot-product attention → out_proj.
    Anything else calls the original ``forward`` and recomputes q and k from its inputs.
    """
    d, heads = mha.embed_dim, mha.num_heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    fused = (query is key and key is value and not need_weights and mha._qkv_same_embed_dim
             and mha.bias_k is None and not mha.add_zero_attn and not (mha.training and mha.dropout > 0))
    if not fused:
        out = forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                      attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
        q = nn.functional.linear(query, w[:d], None if b is None else b[:d])
        k = nn.functional.linear(key, w[d:2 * d], None if b is None else b[d:2 * d])
        on_qk(q * k)
        return out
    q, k, v = nn.functional.linear(query, w, b).split(d, dim=-1)
    on_qk(q * k)
    swap = (lambda t: t) if mha.batch_first else (lambda t: t.transpose(0, 1))  # (L, B, d) ↔ (B, L, d)
    q, k, v = swap(q), swap(k), swap(v)
    n, length = q.shape[0], q.shape[1]
    q, k, v = (t.reshape(n, length, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    mask = _additive_mask(attn_mask, q.dtype)
    if mask is not None:
        mask = mask.reshape(n, heads, length, length) if mask.dim() == 3 else mask
    pad = _additive_mask(key_padding_mask, q.dtype)
    if pad is not None:
        pad = pad.reshape(n, 1, 1, length)
        mask = pad if mask is None else mask + pad
    out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                     is_causal=bool(is_causal) and mask is None)
    out = nn.functional.linear(out.transpose(1, 2).reshape(n, length, d), mha.out_proj.weight, mha.out_proj.bias)
    return swap(out), None


def _register(store: _Store, branch: Branch, layer: int, kind: str) -> list:
    key = (branch.name, layer)

    def on_tap(tap: Tap) -> Callable:
        def hook(module, args, output):
            store.values[key] = store.pool(branch, _read(tap, args, output))
        return hook

    if kind == "hidden":
        tap = branch.hidden[layer]
        if tap.source == "input":  # blocks may get their hidden states as a keyword
            def pre_hook(module, args, kwargs):
                x = args[0] if args else kwargs.get("hidden_states")
                store.values[key] = store.pool(branch, x)
            return [tap.module.register_forward_pre_hook(pre_hook, with_kwargs=True)]
        return [tap.module.register_forward_hook(on_tap(tap))]

    taps = branch.layers[layer]
    if kind == "attn":
        return [taps.attn.module.register_forward_hook(on_tap(taps.attn))]
    if kind == "mlp":
        return [taps.mlp.module.register_forward_hook(on_tap(taps.mlp))]

    # qk: elementwise query ⊙ key per token, pooled: heads × head_dim ANs
    if taps.packed is not None:
        mha = taps.packed.module

        def on_qk(qk):
            store.values[key] = store.pool(branch, qk)

        return [_ReplacedForward(mha, functools.partial(_self_attention_with_qk, mha, mha.forward, on_qk))]

    def q_hook(module, args, output):
        store.stash(key, _read(taps.q, args, output))

    def k_hook(module, args, output):
        q = store.take(key)
        k = _read(taps.k, args, output)
        if q is None or q.shape != k.shape:
            raise RuntimeError(f"query/key of {branch.name} layer {layer} did not line up")
        store.values[key] = store.pool(branch, q * k)

    return [taps.q.module.register_forward_hook(q_hook), taps.k.module.register_forward_hook(k_hook)]
