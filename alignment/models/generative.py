"""Generative vision-language models of the concept-RSA study: LLaVA-NeXT and IDEFICS2.

Each runs its own processor on the frames (PIL images) and a prompt, then its language model
over the merged sequence of image tokens and text tokens (no vocabulary projection). Both
branches are the language model's blocks (as :func:`~alignment.models.language.decoder_branch`:
``hidden``, ``attn``, ``mlp``; the last hidden state after the final norm, as transformers
reports it): ``cross_text`` pools the text tokens (a leading BOS and the image tokens left out;
``cls``: the last token), ``cross_image`` the image tokens (``cls``: the first one).

The prompt is ``?prompt=`` with ``{image}`` and ``{text}`` (default ``{image}\\n{text}``; a typed
``\\n`` is a newline); a
stimulus without an image (the ``text`` condition) is its text alone. ``?dtype=`` and
``?quantize=4bit`` work as for causal LMs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from alignment.models.base import Batch, ModelError, ModelSpec
from alignment.models.hf import _check_layout, _HFAdapter, _hub_offline, _local_example, _reason
from alignment.models.language import _quantization, _right_padded, decoder_branch, text_pooling_masks
from alignment.models.weights import hub_error

DEFAULT_PROMPT = "{image}\n{text}"
_TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                  pad_token_id=0, bos_token_id=101, eos_token_id=102, max_position_embeddings=512)
_TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=16)
_TINY_GRID = [[32, 32], [32, 64], [64, 32]]


def _offline_tokenizer(extra: Sequence[str]):
    """The offline WordPiece tokenizer with a VLM's special tokens added (random configs)."""
    import copy

    from alignment.models.tokenizers import offline_wordpiece

    tok = copy.deepcopy(offline_wordpiece())  # the shared one stays as it is
    tok.add_special_tokens({"additional_special_tokens": list(extra)})
    return tok


class _GenerativeAdapter(_HFAdapter):
    kind = "fusion"
    needs_frames = True
    placed = False
    language_attr = "language_model"
    image_tokens: tuple[str, ...] = ("<image>",)  # tokens of an image, left out of the text pooling

    def _tiny(self):
        """(config, processor) of ``random:<arch>:tiny``."""
        raise NotImplementedError

    def configs(self) -> dict[str, Callable]:
        return {"tiny": lambda: self._tiny()[0]}

    def _processor(self, spec: ModelSpec, example: str):
        from transformers import AutoProcessor

        if spec.random:
            return self._tiny()[1]
        choice = spec.options.get("processor", self.where)
        local = Path(choice).expanduser().exists()
        try:
            return AutoProcessor.from_pretrained(str(Path(choice).expanduser()) if local else choice,
                                                 local_files_only=local or _hub_offline())
        except Exception as err:
            if local:
                raise ModelError(f"cannot load a processor from folder {choice} ({_reason(err)}); save it next to "
                                 f"the model (processor.save_pretrained(folder)) or name one with ?processor=/path") from None
            raise hub_error(spec, example, err) from None

    def __init__(self, spec: ModelSpec):
        example = _local_example(self.arch, ", tokenizer and processor")
        kwargs = _quantization(spec)
        self.placed = "device_map" in kwargs
        model = self._build(spec, example, **kwargs).eval()
        self.model = model
        _check_layout(model, self.arch, [f"model.{self.language_attr}"])
        self.processor = self._processor(spec, example)
        tok = self.processor.tokenizer = _right_padded(self.processor.tokenizer)
        self.image_token = getattr(self.processor, "image_token", None) or "<image>"
        self.image_ids = torch.tensor([tok.convert_tokens_to_ids(t) for t in self.image_tokens])
        self.image_token_id = int(tok.convert_tokens_to_ids(self.image_token))
        self.prompt = spec.options.get("prompt", DEFAULT_PROMPT).replace("\\n", "\n")  # a typed \n is a newline
        if "{text}" not in self.prompt:
            raise ModelError(f"prompt {self.prompt!r} of {spec.raw!r} has no {{text}}")
        self.bos_id = getattr(model.config.get_text_config(), "bos_token_id", None)
        self.image_size = self._input_size()
        language = getattr(model.model, self.language_attr)
        self.branches = {name: decoder_branch(name, language, self.arch) for name in ("cross_text", "cross_image")}

    @property
    def needs_images(self) -> bool:  # frames go to the model's own processor
        return False

    def _input_size(self) -> int:
        size = getattr(self.processor.image_processor, "crop_size", None) or getattr(self.processor.image_processor, "size", {})
        for key in ("height", "shortest_edge", "longest_edge"):
            if isinstance(size, dict) and size.get(key):
                return int(size[key])
        return int(self.model.config.vision_config.image_size)

    def _images(self, frames: list) -> list | None:
        present = [f for f in frames if f is not None]
        return present or None

    def prepare(self, images, texts, branches) -> Batch:
        frames = list(images) if images is not None else [None] * len(texts)
        texts = ["" if t is None else str(t) for t in (texts if texts is not None else [""] * len(frames))]
        if len(frames) != len(texts):
            raise ValueError(f"{len(frames)} images but {len(texts)} texts")
        prompts = [self.prompt.replace("{image}", self.image_token).replace("{text}", t) if f is not None else t
                   for f, t in zip(frames, texts)]
        pictures = self._images(frames)
        enc = self.processor(text=prompts, images=pictures, padding=True, return_tensors="pt")
        enc.pop("token_type_ids", None)
        ids, attention = enc["input_ids"], enc["attention_mask"]
        text_mask, last = text_pooling_masks(ids, attention, self.bos_id)
        is_image = torch.isin(ids, self.image_ids)
        text_mask &= ~is_image
        image_mask = (ids == self.image_token_id) & attention.bool()
        first_image = image_mask.long().argmax(dim=1)
        return Batch(dict(enc), len(texts), {"cross_text": text_mask, "cross_image": image_mask},
                     {"cross_text": last, "cross_image": first_image})

    def forward(self, batch: Batch, branches: Sequence[str]) -> None:
        device = self.device()
        dtype = next(p.dtype for p in self.model.parameters() if p.is_floating_point())
        inputs = {k: (v.to(device, dtype) if k == "pixel_values" else v.to(device)) for k, v in batch.inputs.items()}
        self.model.model(**inputs, use_cache=False)


class LlavaNextAdapter(_GenerativeAdapter):
    """transformers ``LlavaNextForConditionalGeneration``, e.g.
    ``llava-next:llava-hf/llama3-llava-next-8b-hf?dtype=bfloat16`` (or ``&quantize=4bit``)."""

    arch = "llava-next"
    model_types = ("llava_next",)

    def _model_class(self):
        from transformers import LlavaNextForConditionalGeneration

        return LlavaNextForConditionalGeneration

    def _tiny(self):
        from transformers import LlavaNextConfig, LlavaNextImageProcessor, LlavaNextProcessor

        tok = _offline_tokenizer(["<image>"])
        image = LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                        image_grid_pinpoints=_TINY_GRID)
        processor = LlavaNextProcessor(image_processor=image, tokenizer=tok, patch_size=16, image_token="<image>",
                                       vision_feature_select_strategy="default", num_additional_image_tokens=1)
        config = LlavaNextConfig(
            vision_config=dict(model_type="clip_vision_model", **_TINY_VISION),
            text_config=dict(model_type="llama", vocab_size=len(tok), **_TINY_TEXT),
            image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=_TINY_GRID,
            vision_feature_select_strategy="default", vision_feature_layer=-1,
        )
        return config, processor


class Idefics2Adapter(_GenerativeAdapter):
    """transformers ``Idefics2ForConditionalGeneration``, e.g.
    ``idefics2:HuggingFaceM4/idefics2-8b?dtype=bfloat16`` (or ``&quantize=4bit``)."""

    arch = "idefics2"
    model_types = ("idefics2",)
    language_attr = "text_model"
    image_tokens = ("<image>", "<fake_token_around_image>")

    def _model_class(self):
        from transformers import Idefics2ForConditionalGeneration

        return Idefics2ForConditionalGeneration

    def _images(self, frames: list) -> list | None:
        # one list of images per prompt
        return [[f] if f is not None else [] for f in frames] if any(f is not None for f in frames) else None

    def _tiny(self):
        from transformers import Idefics2Config, Idefics2ImageProcessor, Idefics2Processor

        tok = _offline_tokenizer(["<image>", "<fake_token_around_image>", "<end_of_utterance>"])
        image = Idefics2ImageProcessor(do_image_splitting=False, size={"shortest_edge": 32, "longest_edge": 32})
        processor = Idefics2Processor(image_processor=image, tokenizer=tok, image_seq_len=4)
        config = Idefics2Config(
            vision_config=_TINY_VISION,
            perceiver_config=dict(hidden_act="silu", resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                                  resampler_head_dim=8, num_key_value_heads=1, hidden_size=64),
            text_config=dict(model_type="mistral", vocab_size=len(tok), **_TINY_TEXT),
            image_token_id=tok.convert_tokens_to_ids("<image>"),
        )
        return config, processor
