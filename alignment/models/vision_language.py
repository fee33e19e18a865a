"""Vision-language models of the concept-RSA study: ALIGN and the region-feature models VisualBERT
and LXMERT.

``lxmert`` is two-stream: branch ``text`` is the language stream (hidden layer 0 the word
embeddings, then the language layers, then the language side of every cross-modality layer),
``image`` the object stream (0: the projected region features and boxes, then the relational
layers, then the vision side of the cross-modality layers); ``hidden`` only. transformers'
``output_hidden_states`` of LXMERT leaves the embeddings out: its i-th entry is hidden layer i + 1.

``align`` is transformers' ``AlignModel``: a BERT text tower (branch ``text``: ``attn``, ``qk``,
``mlp``, ``hidden``) and an EfficientNet image tower (branch ``image``: ``hidden`` only, the
output of every block averaged over positions; widths differ by block).

VisualBERT and LXMERT read images as detector region features, and no detector ships with
transformers, so the features come from a file the user makes (``?regions=/path/regions.npz``),
in this format:

``keys``     (n,) str: the image of each row, as a path relative to the image folder
             (``airplane/3.jpg``) or a file name; a frame matches the key that ends its path
             (the longest such key).
``features`` (n, R, D) float: R region features per image (D = the model's visual feature
             size, 2048 for the Faster R-CNN features both models were trained on).
``boxes``    (n, R, 4) float: x1, y1, x2, y2 of each region divided by the image width / height
             (in [0, 1]); LXMERT needs them, VisualBERT does not read them.
``counts``   (n,) int, optional: real regions per image (rows after them are padding); default R.

Frames are matched through the file path a dataset records when it loads an image
(``frame.info["source"]``). The ``text`` condition gives a model no regions.

``visualbert`` is single-stream (text tokens and regions in one sequence): branch
``cross_text`` pools its layers over the text tokens, ``cross_image`` over the regions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from alignment.models.base import Batch, Branch, ModelError, ModelSpec, Tap, hidden_taps
from alignment.models.hf import (HALF, _bert_branch, _bert_text, _check_layout, _HFAdapter, _image_processor_config, _local_example,
                                 _max_length, _tokenize, _tokenizer)

# ---------------------------------------------------------------------------------------------
# ALIGN


def _align_configs() -> dict[str, Callable]:
    from transformers import AlignConfig

    return {
        "tiny": lambda: AlignConfig(
            text_config=_bert_text(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4),
            vision_config=dict(image_size=32, width_coefficient=0.1, depth_coefficient=0.2, hidden_dim=64),
            projection_dim=64,
        ),
        "base": lambda: AlignConfig(text_config=_bert_text(), vision_config={}),  # kakaobrain/align-base
    }


#: ALIGN's image processor: 289 px centre crop (unless its preprocessor config says otherwise),
#: pixels scaled to [-1, 1]
ALIGN_IMAGE_SIZE = 289


class AlignAdapter(_HFAdapter):
    """transformers ``AlignModel``: branches ``text`` (BERT) and ``image`` (EfficientNet, ``hidden`` only).

    e.g. ``align:kakaobrain/align-base``. ``image`` hidden layer 0 is the stem's output, layer i
    the output of block i, each averaged over its H × W positions.
    """

    kind = "dual"
    arch = "align"
    model_types = ("align",)
    configs = staticmethod(_align_configs)
    default_mean = HALF
    default_std = HALF

    def _model_class(self):
        from transformers import AlignModel

        return AlignModel

    def __init__(self, spec: ModelSpec):
        example = _local_example("align", " and tokenizer")
        model = self._build(spec, example).eval()
        self.model = model
        _check_layout(model, self.arch, ["text_model.encoder.layer", "vision_model.encoder.blocks"])
        text_cfg = model.config.text_config
        self.tokenizer = _tokenizer(spec, self.where, self.local, example, text_cfg.vocab_size)
        self.max_length = _max_length(self.tokenizer, text_cfg.max_position_embeddings)
        crop = _image_processor_config(self.where, self.local).get("crop_size")
        crop = crop.get("height") if isinstance(crop, dict) else crop
        size = model.config.vision_config.image_size if spec.random else int(crop or ALIGN_IMAGE_SIZE)
        self._set_image(size)
        blocks = list(model.vision_model.encoder.blocks)
        widths = self._block_widths(model)
        self.branches = {
            "text": _bert_branch("text", model.text_model.encoder.layer, hidden=True),
            "image": Branch("image", (), {"hidden": widths}, hidden=hidden_taps(blocks)),
        }

    @staticmethod
    def _block_widths(model) -> tuple[int, ...]:
        """Channels of the stem and of every block's output (one dry run on a small image)."""
        widths = []
        hooks = [model.vision_model.encoder.blocks[0].register_forward_pre_hook(lambda m, a: widths.append(a[0].shape[1]))]
        hooks += [b.register_forward_hook(lambda m, a, o: widths.append(o.shape[1])) for b in model.vision_model.encoder.blocks]
        try:
            with torch.no_grad():
                model.vision_model(pixel_values=torch.zeros(1, 3, 32, 32, device=next(model.parameters()).device))
        finally:
            for h in hooks:
                h.remove()
        return tuple(widths)

    def prepare(self, images, texts, branches) -> Batch:
        inputs, masks, cls = {}, {}, {}
        n = 0
        if "image" in branches:
            if images is None:
                raise ModelError("the image branch needs images")
            inputs["pixel_values"], n = images, len(images)
        if "text" in branches:
            texts = list(texts) if texts is not None else [""] * n
            enc = _tokenize(self.tokenizer, texts, self.max_length)
            inputs.update(enc)
            n = len(texts)
            masks["text"], cls["text"] = enc["attention_mask"].bool(), torch.zeros(n, dtype=torch.long)
        return Batch(inputs, n, masks, cls)

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        device = self.device()
        if "pixel_values" in batch.inputs and "image" in branches:
            self.model.vision_model(pixel_values=batch.inputs["pixel_values"].to(device))
        if "input_ids" in batch.inputs and "text" in branches:
            self.model.text_model(input_ids=batch.inputs["input_ids"].to(device),
                                  attention_mask=batch.inputs["attention_mask"].to(device))


# ---------------------------------------------------------------------------------------------
# region features


class RegionFeatures:
    """A region-features file (format in the module docstring), looked up by frame."""

    def __init__(self, path: str | Path, dim: int):
        path = Path(path).expanduser()
        if not path.is_file():
            raise ModelError(f"region features file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as err:
            raise ModelError(f"cannot read region features {path} (an .npz with keys, features, boxes): {err}") from None
        missing = [k for k in ("keys", "features", "boxes") if k not in arrays]
        if missing:
            raise ModelError(f"region features {path} lack {', '.join(missing)} (needs keys, features, boxes[, counts])")
        keys, features, boxes = arrays["keys"].astype(str), arrays["features"], arrays["boxes"]
        n = len(keys)
        if features.ndim != 3 or features.shape[0] != n or features.shape[2] != dim:
            raise ModelError(f"region features {path}: features must be ({n}, regions, {dim}); got {features.shape}")
        if boxes.shape != features.shape[:2] + (4,):
            raise ModelError(f"region features {path}: boxes must be {features.shape[:2] + (4,)}; got {boxes.shape}")
        if len(set(keys)) != n:
            raise ModelError(f"region features {path}: repeated keys")
        counts = arrays.get("counts", np.full(n, features.shape[1]))
        if counts.shape != (n,) or (counts < 0).any() or (counts > features.shape[1]).any():
            raise ModelError(f"region features {path}: counts must be ({n},) within 0..{features.shape[1]}")
        self.path, self.features, self.boxes, self.counts = path, features.astype(np.float32), boxes.astype(np.float32), counts
        self.index = {tuple(Path(k).parts): i for i, k in enumerate(keys)}

    def row(self, frame) -> int:
        """The row of a frame: the longest key that ends the frame's file path."""
        source = getattr(frame, "info", {}).get("source")
        if source is None:
            raise ModelError("region features are found by image file, and this image has no file path "
                             "(load frames through a dataset)")
        parts = Path(source).parts
        for start in range(len(parts)):
            row = self.index.get(parts[start:])
            if row is not None:
                return row
        raise ModelError(f"no region features for image {source} in {self.path}")

    def batch(self, frames: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features (B, R, D), boxes (B, R, 4) and mask (B, R) of frames (None: no regions)."""
        rows = [None if f is None else self.row(f) for f in frames]
        regions = max([1, *(int(self.counts[r]) for r in rows if r is not None)])
        features = torch.zeros(len(frames), regions, self.features.shape[2])
        boxes = torch.zeros(len(frames), regions, 4)
        mask = torch.zeros(len(frames), regions, dtype=torch.bool)
        for i, r in enumerate(rows):
            if r is None:
                continue
            c = int(self.counts[r])
            features[i, :c] = torch.from_numpy(self.features[r, :c])
            boxes[i, :c] = torch.from_numpy(self.boxes[r, :c])
            mask[i, :c] = True
        return features, boxes, mask


def _regions(spec: ModelSpec, dim: int, arch: str) -> RegionFeatures:
    path = spec.options.get("regions")
    if not path:
        raise ModelError(
            f"{arch} reads images as detector region features: pass a file with ?regions=/path/regions.npz "
            "(arrays keys, features (n, R, D), boxes (n, R, 4), optional counts; see the README)"
        )
    return RegionFeatures(path, dim)


def _wordpiece_spec(spec: ModelSpec) -> ModelSpec:
    """The spec with ``?tokenizer=wordpiece`` unless it names one (VisualBERT and LXMERT use
    bert-base-uncased's vocabulary, the offline WordPiece one; their hub folders carry none)."""
    if "tokenizer" in spec.options:
        return spec
    return ModelSpec(spec.raw, spec.arch, spec.where, spec.weights, spec.random, {**spec.options, "tokenizer": "wordpiece"})


# ---------------------------------------------------------------------------------------------
# VisualBERT


def _visualbert_configs() -> dict[str, Callable]:
    from transformers import VisualBertConfig

    return {
        "tiny": lambda: VisualBertConfig(**_bert_text(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                                      num_attention_heads=4, visual_embedding_dim=16)),
        "base": lambda: VisualBertConfig(**_bert_text()),  # uclanlp/visualbert-vqa-coco-pre
    }


class VisualBertAdapter(_HFAdapter):
    """transformers ``VisualBertModel`` on region features: branches ``cross_text`` and ``cross_image``.

    ``visualbert:uclanlp/visualbert-vqa-coco-pre?regions=/path/regions.npz``. Both branches are
    the same layers (one stream of text tokens then regions); ``cross_text`` pools the text
    tokens (``cls``: [CLS]), ``cross_image`` the regions (``cls``: the first region).
    """

    kind = "fusion"
    arch = "visualbert"
    model_types = ("visual_bert",)
    configs = staticmethod(_visualbert_configs)
    needs_frames = True

    def _model_class(self):
        from transformers import VisualBertModel

        return VisualBertModel

    def __init__(self, spec: ModelSpec):
        example = _local_example("visualbert")
        model = self._build(spec, example).eval()
        self.model = model
        self.spec = spec
        _check_layout(model, self.arch, ["encoder.layer", "embeddings"])
        cfg = model.config
        self.regions = _regions(spec, cfg.visual_embedding_dim, self.arch)
        self.tokenizer = _tokenizer(_wordpiece_spec(spec), self.where, self.local, example, cfg.vocab_size)
        self.max_length = _max_length(self.tokenizer, cfg.max_position_embeddings)
        layers = model.encoder.layer
        self.branches = {name: _bert_branch(name, layers, hidden=True) for name in ("cross_text", "cross_image")}

    def prepare(self, images, texts, branches) -> Batch:
        frames = list(images) if images is not None else [None] * len(texts)
        texts = list(texts) if texts is not None else [""] * len(frames)
        if len(frames) != len(texts):
            raise ValueError(f"{len(frames)} images but {len(texts)} texts")
        enc = _tokenize(self.tokenizer, texts, self.max_length)
        features, _, region_mask = self.regions.batch(frames)
        n, length = enc["input_ids"].shape
        inputs = {
            **enc,
            "token_type_ids": torch.zeros_like(enc["input_ids"]),
            "visual_embeds": features,
            "visual_attention_mask": region_mask.long(),
            "visual_token_type_ids": torch.ones(region_mask.shape, dtype=torch.long),
        }
        text_mask = torch.cat([enc["attention_mask"].bool(), torch.zeros_like(region_mask)], dim=1)
        image_mask = torch.cat([torch.zeros(n, length, dtype=torch.bool), region_mask], dim=1)
        masks = {"cross_text": text_mask, "cross_image": image_mask}
        cls = {"cross_text": torch.zeros(n, dtype=torch.long), "cross_image": torch.full((n,), length, dtype=torch.long)}
        return Batch(inputs, n, masks, cls)

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        device = self.device()
        self.model(**{k: v.to(device) for k, v in batch.inputs.items()})


# ---------------------------------------------------------------------------------------------
# LXMERT


def _lxmert_configs() -> dict[str, Callable]:
    from transformers import LxmertConfig

    return {
        "tiny": lambda: LxmertConfig(**_bert_text(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                                  l_layers=2, x_layers=2, r_layers=1, visual_feat_dim=16)),
        "base": lambda: LxmertConfig(**_bert_text()),  # unc-nlp/lxmert-base-uncased: 9 + 5 + 5 layers
    }


class LxmertAdapter(_HFAdapter):
    """transformers ``LxmertModel`` on region features (``?regions=``, boxes needed): ``hidden`` of
    branches ``text`` (pooled over real tokens; ``cls``: [CLS]) and ``image`` (over the regions)."""

    kind = "fusion"
    arch = "lxmert"
    model_types = ("lxmert",)
    configs = staticmethod(_lxmert_configs)
    needs_frames = True

    def _model_class(self):
        from transformers import LxmertModel

        return LxmertModel

    def __init__(self, spec: ModelSpec):
        example = _local_example("lxmert")
        model = self._build(spec, example).eval()
        self.model = model
        self.spec = spec
        _check_layout(model, self.arch, ["encoder.layer", "encoder.r_layers", "encoder.x_layers", "encoder.visn_fc"])
        cfg = model.config
        self.regions = _regions(spec, cfg.visual_feat_dim, self.arch)
        self.tokenizer = _tokenizer(_wordpiece_spec(spec), self.where, self.local, example, cfg.vocab_size)
        self.max_length = _max_length(self.tokenizer, cfg.max_position_embeddings)
        enc = model.encoder
        width = cfg.hidden_size
        text = (Tap(model.embeddings), *(Tap(l) for l in enc.layer), *(Tap(x, index=0) for x in enc.x_layers))
        image = (Tap(enc.visn_fc), *(Tap(r) for r in enc.r_layers), *(Tap(x, index=1) for x in enc.x_layers))
        self.branches = {
            "text": Branch("text", (), {"hidden": width}, hidden=text),
            "image": Branch("image", (), {"hidden": width}, hidden=image),
        }

    def prepare(self, images, texts, branches) -> Batch:
        frames = list(images) if images is not None else [None] * len(texts)
        texts = list(texts) if texts is not None else [""] * len(frames)
        if len(frames) != len(texts):
            raise ValueError(f"{len(frames)} images but {len(texts)} texts")
        enc = _tokenize(self.tokenizer, texts, self.max_length)
        features, boxes, region_mask = self.regions.batch(frames)
        n = len(texts)
        inputs = {**enc, "token_type_ids": torch.zeros_like(enc["input_ids"]), "visual_feats": features,
                  "visual_pos": boxes, "visual_attention_mask": region_mask.long()}
        zeros = torch.zeros(n, dtype=torch.long)
        return Batch(inputs, n, {"text": enc["attention_mask"].bool(), "image": region_mask}, {"text": zeros, "image": zeros})

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        device = self.device()
        self.model(**{k: v.to(device) for k, v in batch.inputs.items()})
