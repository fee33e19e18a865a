"""Concept features: a model's hidden states for the concepts of a concept-wise dataset
(Pereira 2018), one (C, N) matrix per layer, for concept RSA (:mod:`alignment.analyses.rsa`).

What each paradigm feeds a model (one *stimulus* = one image and one text):

===============  ====================================  =======================================
paradigm         vision-language models                text-only models (BERT, LMs, GloVe)
===============  ====================================  =======================================
``sentences``    each of the concept's sentences, with  each sentence
                 no image (the model's blank image) or,
                 with ``ablation="noise"``, a seeded
                 noise image (:func:`~alignment.extract.noise_image`)
``pictures``     each of the concept's pictures with    the concept word
                 the concept word as its text; with
                 ``ablation="noise"`` each picture is
                 replaced by the noise image
``wordclouds``   the cloud's words (comma-separated)    the cloud's words, as a text
                 as the text (a cloud given as images:
                 each image with the concept word)
===============  ====================================  =======================================

Every branch of a model sees the same stimuli: a dual encoder's text tower reads the text, its
image tower the image (they are not summed: each branch is its own set of layers). Pooling: a
stimulus' hidden state is its tokens' mean (``pooling="mean"``, padding left out; ``"cls"``: the
model's summary token), and a concept's features are the **mean over its stimuli** (its six
sentences, its pictures). A concept the paradigm has no stimulus for is an error, not a gap.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from alignment.data.pereira import CONCEPT
from alignment.data.protocol import DatasetError

__all__ = ["ABLATIONS", "concept_features", "concept_stimuli", "require_concepts"]

#: the image ablation: ``none`` (the paradigm's own images) or ``noise`` (a noise image instead)
ABLATIONS = ("none", "noise")
#: seed of the ablation's noise image (one image for every stimulus: only the text varies)
NOISE_SEED = 0


def require_concepts(dataset) -> None:
    """ValueError unless ``dataset`` is concept-wise (``sample_unit == "concept"``)."""
    if getattr(dataset, "sample_unit", None) != CONCEPT:
        raise ValueError(f"concept RSA needs a concept-wise dataset (e.g. pereira2018); "
                         f"{getattr(dataset, 'name', dataset)!r} has samples of another kind")


def concept_stimuli(dataset, concept: str, paradigm: str, takes_images: bool) -> list[tuple[object, str]]:
    """The (image, text) stimuli of one concept in one paradigm (module table).

    Image: an image reference of the dataset (``"pictures:<file>"``), or None for no image.
    ``takes_images``: whether the model reads images (text-only models get the word for pictures).

    Raises
    ------
    DatasetError
        The paradigm has no stimulus for the concept (no sentences table, picture folder, ...).
    """
    stim = dataset.stimuli(concept, paradigm)
    word = stim["word"]
    if paradigm == "sentences":
        out = [(None, s) for s in stim["sentences"]]
    elif paradigm == "pictures":
        out = [(ref, word) for ref in stim["pictures"]]
        if out and not takes_images:
            out = [(None, word)]
    else:  # wordclouds: a word list, or images of the clouds
        cloud = stim["wordcloud"]
        images = [c for c in cloud if ":" in c and c.split(":", 1)[0] == "wordclouds"]
        out = [(ref, word) for ref in images] if images else ([(None, ", ".join(cloud))] if cloud else [])
        if images and not takes_images:
            out = [(None, word)]
    if not out:
        raise DatasetError(f"concept {concept!r} has no {paradigm} stimuli; point the dataset's "
                           f"{paradigm} option at them")
    return out


def concept_features(adapter, dataset, paradigm: str, *, ablation: str = "none", kind: str = "hidden",
                     pooling: str = "mean", batch_size: int = 32,
                     progress: bool | Callable[[int, int], None] = False) -> dict[tuple[str, int], np.ndarray]:
    """A model's layers for every concept of a concept-wise dataset under one paradigm.

    Parameters
    ----------
    adapter : alignment.models.Adapter
        A loaded model (:func:`alignment.models.load_model`).
    dataset : concept-wise dataset (``sample_unit == "concept"``, ``concepts``, ``stimuli``,
        ``load_frame``), e.g. :class:`~alignment.data.pereira.PereiraDataset`.
    paradigm : {"sentences", "pictures", "wordclouds"}
    ablation : {"none", "noise"}
        ``noise``: a seeded noise image replaces every image (models that read no image: an error).
    kind, pooling : AN kind (``hidden`` by default: layer 0 the embeddings) and token pooling.

    Returns
    -------
    dict (branch, layer) → float32 array (C, N): the mean over the concept's stimuli of each
    stimulus' pooled ANs, rows in ``dataset.concepts`` order.
    """
    from alignment.extract import extract_ans, noise_image

    require_concepts(dataset)
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}")
    takes_images = bool(adapter.needs_images or adapter.needs_frames)
    if ablation == "noise" and not adapter.needs_images:
        raise ValueError(f"model {adapter.spec.raw!r} takes no images: the noise-image ablation does not apply")
    noise = noise_image(adapter, NOISE_SEED) if ablation == "noise" else None
    concepts = dataset.concepts
    frames, texts, owner = [], [], []
    for c, concept in enumerate(concepts):
        for ref, text in concept_stimuli(dataset, concept, paradigm, takes_images):
            if noise is not None:
                frames.append(noise)
            else:
                frames.append(dataset.load_frame(ref) if ref is not None and takes_images else None)
            texts.append(text)
            owner.append(c)
    out = extract_ans(adapter, frames, texts, kind=kind, pooling=pooling, condition="image+text",
                      batch_size=batch_size, progress=progress)
    owner = np.asarray(owner)
    counts = np.bincount(owner, minlength=len(concepts)).astype(np.float64)[:, None]
    pooled = {}
    for key, X in out.items():  # X (S, N) → (C, N): mean over each concept's stimuli
        sums = np.zeros((len(concepts), X.shape[1]))
        np.add.at(sums, owner, X.astype(np.float64))
        pooled[key] = (sums / counts).astype(np.float32)
    return pooled
