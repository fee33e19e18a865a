"""CLIP through open_clip: any open_clip architecture, weights by pretrained tag or local file."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from alignment.models.base import Adapter, Batch, Branch, LayerTaps, ModelError, ModelSpec, PackedQK, Tap, hidden_taps
from alignment.models.weights import hub_error, load_state_dict

# Demo-sized towers with the same code paths as ViT-B-32 (registered with open_clip on import).
DEMO_CONFIGS = {
    "demo-tiny": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 6, "width": 96, "patch_size": 16, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 6},
    },
}


def _open_clip():
    import open_clip

    from open_clip import factory

    for name, cfg in DEMO_CONFIGS.items():
        # open_clip only reads configs from JSON files; its registry is a plain dict
        factory._MODEL_CONFIGS.setdefault(name, cfg)
    return open_clip


def _block_taps(block) -> LayerTaps:
    return LayerTaps(
        attn=Tap(block.attn),
        mlp=Tap(block.mlp.c_proj, "input"),
        packed=PackedQK(block.attn) if isinstance(block.attn, torch.nn.MultiheadAttention) else None,
    )


def _branch(name: str, transformer) -> Branch:
    blocks = list(transformer.resblocks)
    first = blocks[0]
    if not isinstance(first.attn, torch.nn.MultiheadAttention):
        raise ModelError(f"open_clip tower {name!r} uses a custom attention module; only nn.MultiheadAttention towers are supported")
    width = first.attn.embed_dim
    sizes = {"attn": width, "qk": width, "mlp": first.mlp.c_fc.out_features, "hidden": width}
    # hidden: the input of the first block (after ln_pre in the image tower), then every block's
    # output, before the final layer norm (open_clip's forward_intermediates)
    return Branch(name, tuple(_block_taps(b) for b in blocks), sizes, seq_first=not getattr(transformer, "batch_first", True),
                  hidden=hidden_taps(blocks))


class OpenClipAdapter(Adapter):
    """open_clip CLIP: branches ``image`` (visual tower) and ``text`` (text tower)."""

    kind = "dual"

    def __init__(self, spec: ModelSpec):
        open_clip = _open_clip()
        self.spec = spec
        name = spec.where or "ViT-B-32"
        if name not in open_clip.list_models():
            raise ModelError(f"unknown open_clip architecture {name!r}; see open_clip.list_models() (e.g. ViT-B-32, ViT-B-16, ViT-L-14)")
        if spec.random or not spec.weights:
            if not spec.random:
                raise ModelError(
                    f"{spec.raw!r} names no weights: add @<pretrained tag> (e.g. clip:{name}@openai), "
                    f"@/path/to/checkpoint, or use random:clip:{name}"
                )
            torch.manual_seed(spec.seed())
            model = open_clip.create_model(name, pretrained=None)
        elif Path(spec.weights).expanduser().exists():
            model = open_clip.create_model(name, pretrained=None)
            state = load_state_dict(Path(spec.weights).expanduser())
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ModelError(
                    f"checkpoint {spec.weights} does not fit open_clip {name}: "
                    f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
                )
        else:
            if spec.weights not in open_clip.list_pretrained_tags_by_model(name) and ("/" in spec.weights or "." in spec.weights):
                raise ModelError(f"weights file not found: {spec.weights}")
            try:
                model = open_clip.create_model(name, pretrained=spec.weights, require_pretrained=True)
            except Exception as err:  # network/hub errors come in many types
                raise hub_error(spec, f"clip:{name}@/path/to/open_clip_model.safetensors", err) from None
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        visual = model.visual
        size = visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        pre = getattr(visual, "preprocess_cfg", None) or {}
        self.image_mean = tuple(pre.get("mean", self.image_mean))
        self.image_std = tuple(pre.get("std", self.image_std))
        text_transformer = model.transformer if hasattr(model, "transformer") else model.text.transformer
        self.branches = {"image": _branch("image", visual.transformer), "text": _branch("text", text_transformer)}

    def prepare(self, images, texts, branches) -> Batch:
        inputs, masks, cls = {}, {}, {}
        n = 0
        if "image" in branches:
            inputs["image"] = images
            n = len(images)
        if "text" in branches:
            tokens = self.tokenizer(list(texts))
            # the end-of-text token has the highest id; trim the batch to its longest caption
            eot = tokens.argmax(dim=-1)
            length = int(eot.max()) + 1
            tokens = tokens[:, :length]
            inputs["text"] = tokens
            masks["text"] = torch.arange(length)[None, :] <= eot[:, None]
            cls["text"] = eot
            n = len(texts)
        return Batch(inputs, n, masks, cls)

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        device = self.device()
        if "image" in batch.inputs:
            self.model.visual(batch.inputs["image"].to(device))
        if "text" in batch.inputs:
            self._encode_text(batch.inputs["text"].to(device))

    def _encode_text(self, tokens: torch.Tensor) -> None:
        # open_clip adds the full 77-position embedding; slicing it lets short batches run
        # through exactly the computation the first L positions get in a padded batch.
        m = self.model
        text = m.text if hasattr(m, "text") else m
        length = tokens.shape[1]
        x = text.token_embedding(tokens) + text.positional_embedding[:length].to(text.token_embedding.weight.dtype)
        mask = text.attn_mask[:length, :length] if text.attn_mask is not None else None
        text.transformer(x, attn_mask=mask)
