"""Artificial-neuron extraction: stimuli → pooled ANs per (branch, layer) under a stimulus condition."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from alignment.conventions import CONDITIONS
from alignment.models.base import Adapter, ModelError, capture, check_kind, preprocess_images
BLANKS = ("grey", "noise")


def condition_inputs(frames: Sequence, captions: Sequence, condition: str) -> tuple[list, list[str]]:
    """Apply a stimulus condition: ``image`` empties captions, ``text`` removes the frames.

    frames : S PIL images or None (no image: replaced by the blank image).
    captions : S strings or None.
    Returns (frames, captions) with None marking a blank image.
    """
    if condition not in CONDITIONS:
        raise ModelError(f"unknown stimulus condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    if len(frames) != len(captions):
        raise ValueError(f"{len(frames)} frames but {len(captions)} captions")
    frames = [None if condition == "text" else f for f in frames]
    captions = ["" if condition == "image" or c is None else str(c) for c in captions]
    return frames, captions


def image_tensor(adapter: Adapter, frames: Sequence, indices: Sequence[int], blank: str = "grey") -> torch.Tensor:
    """Preprocessed images (B, 3, H, W); None frames become the blank image.

    ``grey`` is the preprocessing mean colour (all zeros once normalised); ``noise`` is uniform
    pixel noise seeded by the stimulus index, so it is the same on every run.
    """
    if blank not in BLANKS:
        raise ModelError(f"unknown blank image {blank!r}; choose one of {', '.join(BLANKS)}")
    size = adapter.image_size
    out = torch.zeros(len(indices), 3, size, size)
    present = [j for j, i in enumerate(indices) if frames[i] is not None]
    if present:
        out[present] = preprocess_images([frames[indices[j]] for j in present], size, adapter.image_mean, adapter.image_std)
    if blank == "noise":
        mean = torch.tensor(adapter.image_mean)[:, None, None]
        std = torch.tensor(adapter.image_std)[:, None, None]
        for j, i in enumerate(indices):
            if frames[i] is None:
                gen = torch.Generator().manual_seed(int(i))
                out[j] = (torch.rand(3, size, size, generator=gen) - mean) / std
    return out


#: the noise image of the image ablation: pixel values N(NOISE_MEAN, NOISE_STD) on a 0..1 scale, clipped
NOISE_MEAN, NOISE_STD = 0.5, 0.25


def noise_image(adapter_or_size, seed: int = 0):
    """A seeded Gaussian-noise RGB image (PIL) of a model's input size: the image ablation's
    stand-in for a picture, shown with the sentence.

    ``adapter_or_size``: an adapter (its ``image_size``) or a size in pixels (int, or
    (width, height)). Pixels are ``NOISE_MEAN + NOISE_STD · N(0, 1)`` on a 0..1 scale, clipped,
    in 8 bits, drawn by ``numpy.random.default_rng(seed)``: the same seed gives the same image on
    every machine. At the model's size the preprocessing does not resample it.
    """
    from PIL import Image

    size = getattr(adapter_or_size, "image_size", adapter_or_size)
    if size is None:
        raise ModelError(f"model {adapter_or_size.spec.raw!r} takes no images; a noise image does not apply")
    width, height = (size, size) if isinstance(size, (int, np.integer)) else size
    if int(width) < 1 or int(height) < 1:
        raise ValueError(f"noise image size must be positive; got {size!r}")
    rng = np.random.default_rng(int(seed))
    pixels = NOISE_MEAN + NOISE_STD * rng.standard_normal((int(height), int(width), 3))
    return Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8), "RGB")


def extract_ans(
    adapter: Adapter,
    frames: Sequence,
    captions: Sequence,
    targets: dict[str, Sequence[int] | None] | None = None,
    *,
    kind: str = "attn",
    pooling: str = "mean",
    condition: str = "image+text",
    blank: str = "grey",
    batch_size: int = 32,
    progress: bool | Callable[[int, int], None] = False,
) -> dict[tuple[str, int], np.ndarray]:
    """Pooled ANs of every stimulus for the requested branches and layers.

    Parameters
    ----------
    frames : sequence of S PIL images or None (no image).
    captions : sequence of S strings or None.
    targets : branch → layer indices (None: all layers); default all branches, all layers.
    kind : "attn" | "qk" | "mlp" | "hidden" (see DESIGN §4); ``hidden`` layer 0 is the
        embeddings, layer i the output of block i.

    Returns
    -------
    dict mapping (branch, layer) → float32 array (S, N_kind).
    """
    check_kind(kind, pooling)
    if targets is None:  # every branch that has this kind of AN
        targets = {b: None for b, br in adapter.branches.items() if kind in br.sizes and br.layer_count(kind)}
        if not targets:
            raise ModelError(f"model {adapter.spec.raw!r} has no {kind!r} ANs in any branch")
    targets = dict(targets)
    targets = {b: adapter.check_layers(b, layers, kind) for b, layers in targets.items()}
    frames, captions = condition_inputs(frames, captions, condition)
    n = len(frames)
    out = {(b, layer): np.empty((n, adapter.branches[b].units(kind, layer)), np.float32) for b, ls in targets.items() for layer in ls}
    # on a GPU the model runs in its own precision (no autocast, no TF32 convolutions): the ANs
    # then equal the CPU's within 1e-4; half precision is a model spec's ``dtype`` option
    exact_convolutions = torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False)
    report = _progress(progress, n)
    try:
        with capture(adapter, targets, kind, pooling) as store, torch.inference_mode(), exact_convolutions:
            for start in range(0, n, batch_size):
                idx = list(range(start, min(n, start + batch_size)))
                if adapter.needs_images:
                    images = image_tensor(adapter, frames, idx, blank)
                else:  # region-feature models look their frames up; text-only models take none
                    images = [frames[i] for i in idx] if adapter.needs_frames else None
                batch = adapter.prepare(images, [captions[i] for i in idx], list(targets))
                store.batch = batch
                store.values.clear()
                adapter.forward(batch, list(targets))
                for key in out:
                    if key not in store.values:
                        raise RuntimeError(f"no activations were captured for {key}; the adapter did not run that layer")
                    out[key][start:start + len(idx)] = store.values[key].cpu().numpy()
                report(len(idx))
    finally:  # the bar is closed on an error or Ctrl-C too, before anything else is printed
        report(0, close=True)
    return out


def _progress(progress, total: int):
    """A callable ``report(n_done_now, close=False)`` for a bool (tqdm) or a user callback."""
    if callable(progress):
        done = [0]

        def report(n, close=False):
            if not close:
                done[0] += n
                progress(done[0], total)
        return report
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="stim", desc="extract")

        def report(n, close=False):
            bar.close() if close else bar.update(n)
        return report
    return lambda n, close=False: None
