"""The names every part of the tool shares, and the rules a view follows to pick from them.

One home for the vocabulary the library, the CLI and the app all speak (DESIGN §7): stimulus
conditions, AN kinds, the ``"group"`` subject, the map metrics; how a view expands its subject
into subjects, falls back to the nearest available layer, and how a typed layer list reads.
No heavy imports: the app shell and the CLI import this module for their choices.
"""

from __future__ import annotations

from typing import Iterable, Sequence

__all__ = [
    "AN_KINDS",
    "CONDITIONS",
    "GROUP",
    "MAP_METRICS",
    "check_choice",
    "layer_name",
    "nearest_layer",
    "parse_layers",
    "subjects_of",
]

#: stimulus conditions: what a model sees (image+text, image with an empty caption, text with a
#: blank image)
CONDITIONS = ("image+text", "image", "text")
#: AN kinds of a layer: attention output, query ⊙ key, feed-forward units, and the hidden state
#: (the residual stream: layer 0 is the embeddings, layer i the output of block i)
AN_KINDS = ("attn", "qk", "mlp", "hidden")
#: the subject of a view over all subjects (Fisher z, one-sample t test across subjects)
GROUP = "group"
#: map metrics (see :func:`alignment.summaries.metric_map`)
MAP_METRICS = ("r", "significant r", "-log10 q", "best layer", "SI", "cross-modal gain", "noise ceiling",
               "r / ceiling")


def check_choice(name: str, value, allowed: Iterable):
    """``value`` if it is one of ``allowed``, else a ValueError naming the choices."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def layer_name(kind: str, layer: int) -> str:
    """A layer index as shown to people, in the 1-based block numbering of the literature.

    ``hidden`` layers: 0 is ``"emb"`` (the embeddings) and i is ``"L{i}"``, the output of the
    i-th block (the index of ``output_hidden_states``). Other kinds index blocks from 0, so
    block ``layer`` is ``"L{layer + 1}"``: ``attn`` layer 0 and ``hidden`` layer 1 are both ``L1``.
    """
    if kind == "hidden":
        return "emb" if layer == 0 else f"L{layer}"
    return f"L{layer + 1}"


def subjects_of(study, subject: str) -> list[str]:
    """The subjects a view covers.

    Parameters
    ----------
    study : Study
        Anything with ``dataset.subjects`` (and ``dataset.root``): a
        :class:`~alignment.pipeline.Study`.
    subject : str
        A subject id (``"01"``, or ``"sub-01"``) or :data:`GROUP`.

    Returns
    -------
    list of str
        Every subject of the dataset for the group, else ``[subject]`` (without a ``sub-``
        prefix).
    """
    subs = list(study.dataset.subjects)
    if str(subject) == GROUP:
        if not subs:
            raise ValueError(f"{study.dataset.root}: no subjects")
        return subs
    sid = str(subject).removeprefix("sub-")
    if sid not in subs:
        raise ValueError(f"unknown subject {subject!r}; subjects: {', '.join(subs)}")
    return [sid]


def nearest_layer(layers: Sequence[int], layer: int) -> int:
    """The layer of ``layers`` closest to ``layer`` (the lower one on a tie).

    What a view shows when the layer it asks for is not available (a branch computed at other
    depths, a layer picker after a change of model).
    """
    if not layers:
        raise ValueError("no layers to choose from")
    return min(layers, key=lambda x: (abs(x - layer), x))


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """A layer list as people type it: ``all`` (or nothing), ``0,3,5``, ``2-7``, ``0-5, 8``.

    Returns
    -------
    tuple of int or None
        The layers in the order given (ranges inclusive; repeats kept); None for every layer.
    """
    text = (text or "").strip()
    if text in ("", "all"):
        return None
    out: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part:
                lo, hi = part.split("-", 1)
                out += list(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise ValueError(f"layers must be 'all' or a list such as 0,3,5-8; got {text!r}") from None
    return tuple(out)
