"""A simulated Pereira-like concept dataset with a planted ground truth.

:func:`build_concept_dataset` writes, atomically (a temporary folder renamed at the end), a
folder that :func:`alignment.data.load_dataset` opens as the ``pereira2018`` kind::

    ROOT/pereira2018.toml                      the pointer: root ".", the stimulus files
    ROOT/M01/data_180concepts_{pictures,sentences,wordclouds}.mat   MATLAB v5, Pereira's layout
    ROOT/M02/...                               one folder per participant
    ROOT/stimuli/sentences.tsv                 concept, sentence (SENTENCES_PER_CONCEPT each)
    ROOT/stimuli/wordclouds.tsv                concept, words (comma-separated)
    ROOT/stimuli/categories.tsv                concept, category
    ROOT/stimuli/pictures/<concept>/<k>.png    PICTURES_PER_CONCEPT drawings per concept
    ROOT/ground_truth.json                     what was planted where, SNR, seed

It is built in two steps, so that a caller can compute model features from the stimuli
before the brain responses are made from them: :func:`write_concept_stimuli` (the 180 concepts
of :data:`CATEGORIES`, their sentences, pictures and word clouds) and
:func:`plant_concept_responses` (the ``.mat`` files, the pointer and the ground truth).
:func:`build_concept_dataset` runs both in a temporary folder.

Stimuli
-------
180 plain English nouns, 20 in each of the 9 categories of :data:`CATEGORIES`; ``keyConcept``
lists them alphabetically. Every concept has sentences containing its word (templates filled
with words of its category), pictures drawn with Pillow (a category-specific figure, in a
colour and size of the concept, moved and varied between the pictures of a concept) and a word
cloud (its category's name and attributes, and category mates). The concepts are fixed; which
templates, words and picture variations a concept gets depends on the seed.

Brain responses
---------------
Each participant (``M01`` ...) has its own voxel count (``n_voxels`` ± 20 %), voxel positions in
a volume of :data:`VOLUME_DIMS`, and networks (:data:`NETWORK_SHARES`: ``languageLH``,
``languageRH``, ``visual`` and ``dmn``, each a share of the voxels split into ROIs; the other
voxels belong to no network). In a paradigm p, the responses of network n's V_n voxels are::

    Y (C, V_n) = gain_s · snr · scaled(F_p @ W) + noise

- ``F_p`` (C, N): the features of the (source, layer) planted in network n and paradigm p
  (:class:`ConceptPlant`), as the caller supplies them, not centred (a random projection
  keeps their inner products, so the network's cosine RDM follows the layer's cosine RDM);
- ``W`` (N, V_n): Gaussian, drawn per participant, network and paradigm (each participant's
  voxels mix the features differently), ``scaled`` brings the mean over voxels of the
  column std to 1, so ``snr`` is the signal std / noise std of a voxel;
- ``gain_s``: a participant's signal gain, log-normal (sd :data:`PARTICIPANT_GAIN_SD` in log
  units), so participants differ in how much signal they carry;
- noise: unit variance per voxel, independent Gaussian plus a share :data:`SHARED_NOISE_SHARE`
  from :data:`SHARED_NOISE_RANK` concept factors loading on all voxels of a participant and
  paradigm (structure shared between networks that no model explains, different in every
  participant).

Networks and paradigms not planted, and every network at ``snr = 0``, are noise only.
Everything is a deterministic function of ``seed`` (and the features).

>>> stim = write_concept_stimuli("concepts", seed=0)                    # doctest: +SKIP
>>> feats = {("model", 3): X}                                           # doctest: +SKIP
>>> plant = [ConceptPlant("languageLH", "model", 3)]                    # doctest: +SKIP
>>> root = build_concept_dataset("concepts", feats, plant, snr=0.3)     # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from alignment.data import GROUND_TRUTH_FILE
from alignment.data.pereira import (FILE_PATTERN, N_CONCEPTS, PARADIGMS, POINTER_FILE, PereiraStimuli,
                                    pereira_contents, write_pereira_mat)
from alignment.simulation.experiment import CLIP_SPEC, _replace_folder

__all__ = [
    "CATEGORIES",
    "CONCEPT_NETWORKS",
    "DEFAULT_CONCEPT_SNR",
    "ConceptPlant",
    "ConceptStimuli",
    "CONCEPT_DEMO_MODELS",
    "CONCEPT_DEMO_PLANTING",
    "build_concept_dataset",
    "build_concept_demo",
    "concept_source",
    "load_concept_ground_truth",
    "plant_concept_responses",
    "write_concept_stimuli",
]

CONCEPT_DEMO_VERSION = 1
#: 9 categories × 20 concepts = N_CONCEPTS
CATEGORIES: dict[str, tuple[str, ...]] = {
    "animal": ("bear", "bird", "cat", "cow", "deer", "dog", "duck", "fish", "fox", "frog", "goat",
               "horse", "lion", "monkey", "mouse", "owl", "pig", "rabbit", "sheep", "snake"),
    "body part": ("arm", "back", "ear", "elbow", "eye", "face", "finger", "foot", "hair", "hand",
                  "head", "heart", "knee", "leg", "lip", "mouth", "neck", "nose", "shoulder", "tooth"),
    "building": ("barn", "bridge", "castle", "church", "factory", "garage", "hospital", "hotel",
                 "house", "hut", "library", "museum", "office", "prison", "school", "shop",
                 "stadium", "temple", "tower", "tent"),
    "clothing": ("belt", "boot", "cap", "coat", "dress", "glove", "hat", "jacket", "jeans", "scarf",
                 "shirt", "shoe", "skirt", "sock", "suit", "sweater", "tie", "uniform", "vest", "sandal"),
    "food": ("apple", "bread", "butter", "cake", "carrot", "cheese", "cookie", "corn", "egg", "grape",
             "lemon", "meat", "onion", "orange", "pasta", "pear", "pizza", "potato", "rice", "soup"),
    "furniture": ("bed", "bench", "cabinet", "chair", "couch", "crib", "cupboard", "desk", "drawer",
                  "dresser", "lamp", "mirror", "shelf", "sofa", "stool", "table", "wardrobe", "rug",
                  "bookcase", "armchair"),
    "tool": ("axe", "brush", "chisel", "drill", "clamp", "hammer", "hoe", "knife", "ladder", "nail",
             "needle", "pliers", "rake", "saw", "scissors", "screwdriver", "shovel", "spade", "wrench",
             "broom"),
    "vehicle": ("airplane", "ambulance", "bicycle", "boat", "bus", "canoe", "car", "helicopter", "jeep",
                "motorcycle", "rocket", "ship", "sled", "submarine", "taxi", "tractor", "train", "truck",
                "van", "wagon"),
    "nature": ("beach", "cave", "cliff", "cloud", "desert", "field", "forest", "hill", "island", "lake",
               "meadow", "mountain", "ocean", "river", "rock", "sky", "snow", "storm", "valley", "volcano"),
}
#: words that go with each category: sentence fillers and word-cloud words
_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "animal": ("fur", "wild", "farm", "tail", "run", "eat", "zoo", "legs"),
    "body part": ("skin", "pain", "move", "touch", "bone", "muscle", "doctor", "body"),
    "building": ("wall", "roof", "door", "city", "floor", "stone", "window", "build"),
    "clothing": ("wear", "cloth", "warm", "size", "fashion", "cotton", "color", "dress up"),
    "food": ("eat", "taste", "cook", "kitchen", "sweet", "dinner", "fresh", "hungry"),
    "furniture": ("room", "wood", "sit", "home", "heavy", "corner", "comfortable", "move"),
    "tool": ("work", "metal", "handle", "cut", "repair", "garden", "sharp", "use"),
    "vehicle": ("drive", "road", "wheel", "fast", "travel", "engine", "ride", "passenger"),
    "nature": ("water", "wind", "green", "land", "weather", "wide", "cold", "walk"),
}
_TEMPLATES = (
    "The {w} is a kind of {c}.",
    "I saw a {w} near the {a}.",
    "A {w} is often {a}.",
    "People think of {a} when they see a {w}.",
    "Every {w} has something to do with {a}.",
    "She told me about the {w} and the {m}.",
    "The {w} was next to a {m}.",
    "There is a {w} in the picture.",
)
SENTENCES_PER_CONCEPT = 4
PICTURES_PER_CONCEPT = 3
PICTURE_SIZE = 48  # pixels, square
WORDCLOUD_MATES = 4  # category mates in a word cloud
WORDCLOUD_ATTRIBUTES = 3

#: networks (atlases of ``meta``) and the share of a participant's voxels in each, with the
#: number of ROIs it is split into; the remaining voxels belong to no network
NETWORK_SHARES: dict[str, tuple[float, int]] = {
    "languageLH": (0.2, 3), "languageRH": (0.15, 2), "visual": (0.2, 3), "dmn": (0.15, 2)}
CONCEPT_NETWORKS = tuple(NETWORK_SHARES)
VOLUME_DIMS = (32, 32, 24)
DEFAULT_N_VOXELS = 600  # per participant, ± VOXEL_COUNT_SPREAD
VOXEL_COUNT_SPREAD = 0.2
DEFAULT_N_PARTICIPANTS = 4
#: signal std / noise std per planted voxel (module docstring)
DEFAULT_CONCEPT_SNR = 0.3
PARTICIPANT_GAIN_SD = 0.3  # log units
SHARED_NOISE_SHARE = 0.2
SHARED_NOISE_RANK = 3
STIMULI_DIR = "stimuli"


# ==========================================================================================
# stimuli
# ==========================================================================================
@dataclass(frozen=True)
class ConceptStimuli:
    """What :func:`write_concept_stimuli` wrote: the concepts (alphabetical, ``keyConcept``'s
    order), each one's category, and the stimulus paths (absolute)."""

    root: Path
    concepts: tuple[str, ...]
    categories: dict[str, str] = field(repr=False)
    sentences: Path = field(repr=False)
    wordclouds: Path = field(repr=False)
    category_table: Path = field(repr=False)
    pictures: Path = field(repr=False)

    def view(self) -> PereiraStimuli:
        """The stimuli as :func:`alignment.concepts.concept_features` reads a dataset's."""
        return PereiraStimuli(self.root, self.concepts, pictures=self.pictures, sentences=self.sentences,
                              wordclouds=self.wordclouds, categories=self.category_table)

    def category_index(self) -> np.ndarray:
        """(C,) int: each concept's category, as its position in :data:`CATEGORIES`."""
        names = list(CATEGORIES)
        return np.array([names.index(self.categories[c]) for c in self.concepts])


def _concepts() -> tuple[list[str], dict[str, str]]:
    category = {w: c for c, words in CATEGORIES.items() for w in words}
    assert len(category) == N_CONCEPTS  # every word once
    return sorted(category), category


def write_concept_stimuli(root, seed: int = 0) -> ConceptStimuli:
    """Write the stimuli of the simulated concept dataset under ``root/stimuli`` (module
    docstring) and return where they are.

    Parameters
    ----------
    root : str or PathLike
        The dataset folder (created if missing); an existing ``stimuli`` folder in it is
        replaced.
    seed : int
        Chooses sentence templates, word-cloud words and picture variations.
    """
    from PIL import Image, ImageDraw

    root = Path(root).expanduser().resolve()
    folder = root / STIMULI_DIR
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "pictures").mkdir(parents=True)
    concepts, category = _concepts()
    rng = np.random.default_rng([int(seed), 11])
    sentences, clouds = [], []
    for word in concepts:
        cat = category[word]
        attrs, mates = _ATTRIBUTES[cat], [w for w in CATEGORIES[cat] if w != word]
        for t in rng.choice(len(_TEMPLATES), SENTENCES_PER_CONCEPT, replace=False):
            sentences.append((word, _TEMPLATES[t].format(w=word, c=cat, a=rng.choice(attrs), m=rng.choice(mates))))
        cloud = [cat, *rng.choice(attrs, WORDCLOUD_ATTRIBUTES, replace=False),
                 *rng.choice(mates, WORDCLOUD_MATES, replace=False)]
        clouds.append((word, ", ".join(str(w) for w in cloud)))
    _write_tsv(folder / "sentences.tsv", ("concept", "sentence"), sentences)
    _write_tsv(folder / "wordclouds.tsv", ("concept", "words"), clouds)
    _write_tsv(folder / "categories.tsv", ("concept", "category"), [(w, category[w]) for w in concepts])

    for i, word in enumerate(concepts):
        sub = folder / "pictures" / word
        sub.mkdir()
        look = np.random.default_rng([int(seed), 12, i])
        colour = tuple(int(x) for x in look.integers(30, 226, 3))  # the concept's colour
        scale = look.uniform(0.5, 0.9)  # and size
        for k in range(PICTURES_PER_CONCEPT):
            vary = np.random.default_rng([int(seed), 13, i, k])
            background = int(vary.integers(200, 256))
            im = Image.new("RGB", (PICTURE_SIZE, PICTURE_SIZE), (background,) * 3)
            _draw_figure(ImageDraw.Draw(im), category[word], colour, scale * vary.uniform(0.85, 1.15),
                         vary.uniform(-0.12, 0.12, 2) * PICTURE_SIZE)
            im.save(sub / f"{k + 1}.png")
    return ConceptStimuli(root, tuple(concepts), category, folder / "sentences.tsv",
                          folder / "wordclouds.tsv", folder / "categories.tsv", folder / "pictures")


def _write_tsv(path: Path, header: tuple[str, ...], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, delimiter="\t", lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)


def _draw_figure(draw, category: str, colour, scale: float, shift) -> None:
    """A category's figure (a fixed composition of shapes) in ``colour``, scaled and moved."""
    n = PICTURE_SIZE
    cx, cy = n / 2 + shift[0], n / 2 + shift[1]
    r = scale * n / 2
    dark = tuple(c // 2 for c in colour)

    def box(x0, y0, x1, y1):  # in units of r around the centre
        return [cx + x0 * r, cy + y0 * r, cx + x1 * r, cy + y1 * r]

    if category == "animal":  # body, head, legs
        draw.ellipse(box(-0.8, -0.3, 0.5, 0.4), fill=colour)
        draw.ellipse(box(0.3, -0.7, 0.9, -0.1), fill=colour)
        for x in (-0.6, 0.2):
            draw.rectangle(box(x, 0.3, x + 0.15, 0.8), fill=dark)
    elif category == "body part":  # a rounded limb with a joint
        draw.rounded_rectangle(box(-0.3, -0.9, 0.3, 0.9), radius=0.3 * r, fill=colour)
        draw.ellipse(box(-0.35, -0.2, 0.35, 0.2), fill=dark)
    elif category == "building":  # walls, roof, door
        draw.rectangle(box(-0.7, -0.2, 0.7, 0.9), fill=colour)
        draw.polygon([tuple(box(-0.85, -0.2, 0, 0)[:2]), tuple(box(0, -0.9, 0, 0)[:2]),
                      tuple(box(0.85, -0.2, 0, 0)[:2])], fill=dark)
        draw.rectangle(box(-0.15, 0.4, 0.15, 0.9), fill=(40, 40, 40))
    elif category == "clothing":  # a shirt-like trapezoid with sleeves
        draw.polygon([tuple(box(-0.5, -0.7, 0, 0)[:2]), tuple(box(0.5, -0.7, 0, 0)[:2]),
                      tuple(box(0.6, 0.9, 0, 0)[:2]), tuple(box(-0.6, 0.9, 0, 0)[:2])], fill=colour)
        draw.rectangle(box(-0.95, -0.7, -0.5, -0.3), fill=dark)
        draw.rectangle(box(0.5, -0.7, 0.95, -0.3), fill=dark)
    elif category == "food":  # a round fruit with a leaf
        draw.ellipse(box(-0.7, -0.6, 0.7, 0.8), fill=colour)
        draw.ellipse(box(0.0, -0.95, 0.35, -0.55), fill=(60, 150, 60))
    elif category == "furniture":  # a seat or top on legs
        draw.rectangle(box(-0.8, -0.2, 0.8, 0.1), fill=colour)
        draw.rectangle(box(-0.8, -0.9, -0.6, -0.2), fill=colour)
        for x in (-0.75, 0.6):
            draw.rectangle(box(x, 0.1, x + 0.15, 0.9), fill=dark)
    elif category == "tool":  # a long handle and a head
        draw.line([tuple(box(-0.8, 0.8, 0, 0)[:2]), tuple(box(0.5, -0.5, 0, 0)[:2])], fill=dark,
                  width=max(2, int(0.15 * r)))
        draw.rectangle(box(0.2, -0.9, 0.9, -0.4), fill=colour)
    elif category == "vehicle":  # a body on two wheels
        draw.rectangle(box(-0.9, -0.3, 0.9, 0.4), fill=colour)
        draw.rectangle(box(-0.4, -0.7, 0.5, -0.3), fill=colour)
        for x in (-0.6, 0.5):
            draw.ellipse(box(x - 0.25, 0.25, x + 0.25, 0.75), fill=(30, 30, 30))
    elif category == "nature":  # a horizon: ground in the colour under a sky band
        draw.rectangle([0, 0, n, cy], fill=(150, 190, 235))
        draw.polygon([(0, n), (cx - r, cy), (cx, cy - 0.6 * r), (cx + r, cy), (n, n)], fill=colour)
    else:  # pragma: no cover - CATEGORIES and this function are kept in step
        raise ValueError(f"no figure for category {category!r}")


# ==========================================================================================
# brain responses
# ==========================================================================================
@dataclass(frozen=True)
class ConceptPlant:
    """One planted coupling: the features of ``(source, layer)`` make the response patterns of
    ``network`` in each of ``paradigms``."""

    network: str
    source: str
    layer: int | str
    paradigms: tuple[str, ...] = PARADIGMS


FeatureMap = Mapping[tuple[str, object], np.ndarray]


def _paradigm_features(features, paradigm: str) -> FeatureMap:
    """The {(source, layer): (C, N)} map of one paradigm: ``features`` is either such a map
    (the same for every paradigm) or {paradigm: map}."""
    if set(features) <= set(PARADIGMS) and features:
        if paradigm not in features:
            raise ValueError(f"features has no entry for paradigm {paradigm!r}")
        return features[paradigm]
    return features


def _check_planting(planting: Sequence[ConceptPlant], features) -> dict[tuple[str, str], ConceptPlant]:
    table = {}
    for plant in planting:
        if not isinstance(plant, ConceptPlant):
            raise ValueError(f"planting holds {plant!r}, not a ConceptPlant")
        if plant.network not in CONCEPT_NETWORKS:
            raise ValueError(f"unknown network {plant.network!r}; the simulated networks are "
                             f"{', '.join(CONCEPT_NETWORKS)}")
        for paradigm in plant.paradigms:
            if paradigm not in PARADIGMS:
                raise ValueError(f"unknown paradigm {paradigm!r}; Pereira's are {', '.join(PARADIGMS)}")
            if (plant.network, paradigm) in table:
                raise ValueError(f"network {plant.network!r} is planted twice in paradigm {paradigm!r}")
            key = (plant.source, plant.layer)
            X = _paradigm_features(features, paradigm).get(key)
            if X is None:
                raise ValueError(f"features has no {key!r} for paradigm {paradigm!r}")
            X = np.asarray(X)
            if X.ndim != 2 or X.shape[0] != N_CONCEPTS or not np.all(np.isfinite(X)):
                raise ValueError(f"features {key!r} of paradigm {paradigm!r} must be a finite "
                                 f"({N_CONCEPTS}, N) array, got shape {X.shape}")
            table[(plant.network, paradigm)] = plant
    return table


def _layout(n_voxels: int, rng) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """A participant's voxel coordinates (V, 3), 1-based, in MATLAB column-major order, and
    each network's ROIs as 0-based column arrays."""
    volume = np.prod(VOLUME_DIMS)
    flat = np.sort(rng.choice(volume, n_voxels, replace=False))
    coords = np.stack(np.unravel_index(flat, VOLUME_DIMS, order="F"), axis=1) + 1
    order = rng.permutation(n_voxels)
    atlases, start = {}, 0
    for name, (share, n_rois) in NETWORK_SHARES.items():
        cols = np.sort(order[start:start + int(round(share * n_voxels))])
        start += cols.size
        atlases[name] = [np.sort(part) for part in np.array_split(rng.permutation(cols), n_rois)]
    return coords, atlases


def _voxel_counts(n_participants: int, n_voxels: int, rng) -> list[int]:
    counts: list[int] = []
    for _ in range(n_participants):
        v = int(round(n_voxels * rng.uniform(1 - VOXEL_COUNT_SPREAD, 1 + VOXEL_COUNT_SPREAD)))
        while v in counts:  # every participant its own count
            v += 1
        counts.append(v)
    return counts


def plant_concept_responses(root, features, planting: Sequence[ConceptPlant], snr: float = DEFAULT_CONCEPT_SNR,
                            seed: int = 0, n_participants: int = DEFAULT_N_PARTICIPANTS,
                            n_voxels: int = DEFAULT_N_VOXELS) -> dict:
    """Write the participants' ``.mat`` files, ``pereira2018.toml`` and ``ground_truth.json``
    into ``root``, which holds the stimuli of :func:`write_concept_stimuli` (module docstring).

    Writes in place, into a folder without participant folders yet:
    :func:`build_concept_dataset` calls it on a temporary folder.

    Parameters
    ----------
    root : str or PathLike
    features : mapping
        {(source, layer): (C, N) array} used in every paradigm, or {paradigm: that mapping}:
        concept features in the row order of the concepts (alphabetical). Only the planted
        (source, layer)s are read.
    planting : sequence of ConceptPlant
        At most one per network and paradigm; networks of :data:`CONCEPT_NETWORKS`.
    snr : float
        Signal std / noise std per voxel of a planted network (0: noise only).
    seed : int
        Voxel layouts, projections, gains and noise.
    n_participants : int
        ``M01`` ... (at least 3).
    n_voxels : int
        Mean voxel count per participant (each ± 20 %, all different).

    Returns
    -------
    dict
        The ground truth written to ``ground_truth.json``.
    """
    root = Path(root).expanduser().resolve()
    snr, seed, n_participants, n_voxels = float(snr), int(seed), int(n_participants), int(n_voxels)
    if not (np.isfinite(snr) and snr >= 0):
        raise ValueError(f"snr must be a finite number >= 0, got {snr}")
    if n_participants < 3 or n_participants > 99:
        raise ValueError(f"n_participants must be in 3..99, got {n_participants}")
    if not 50 <= n_voxels <= np.prod(VOLUME_DIMS) // 2:
        raise ValueError(f"n_voxels must be in 50..{np.prod(VOLUME_DIMS) // 2}, got {n_voxels}")
    if not (root / STIMULI_DIR / "categories.tsv").is_file():
        raise ValueError(f"{root}: no stimuli; write them first with write_concept_stimuli")
    table = _check_planting(planting, features)
    concepts, _ = _concepts()
    participants = [f"M{s + 1:02d}" for s in range(n_participants)]
    counts = _voxel_counts(n_participants, n_voxels, np.random.default_rng([seed, 20]))
    gains = np.exp(np.random.default_rng([seed, 21]).normal(0, PARTICIPANT_GAIN_SD, n_participants))
    for s, sid in enumerate(participants):
        coords, atlases = _layout(counts[s], np.random.default_rng([seed, 22, s]))
        (root / sid).mkdir()
        for p, paradigm in enumerate(PARADIGMS):
            rng = np.random.default_rng([seed, 23, s, p])
            Y = _noise(counts[s], rng)
            for k, network in enumerate(CONCEPT_NETWORKS):
                plant = table.get((network, paradigm))
                if plant is None or snr == 0:
                    continue
                X = np.asarray(_paradigm_features(features, paradigm)[(plant.source, plant.layer)], dtype=np.float64)
                cols = np.concatenate(atlases[network])
                W = np.random.default_rng([seed, 24, s, p, k]).standard_normal((X.shape[1], cols.size))
                signal = X @ W
                signal /= np.mean(signal.std(axis=0)) or 1.0
                Y[:, cols] += gains[s] * snr * signal
            contents = pereira_contents(Y, concepts, {n: [c + 1 for c in rois] for n, rois in atlases.items()},
                                        coords, VOLUME_DIMS)
            write_pereira_mat(root / sid / FILE_PATTERN.format(paradigm=paradigm), contents)
    (root / POINTER_FILE).write_text(
        "# A simulated Pereira-like concept dataset; ground_truth.json says what was planted where.\n"
        '[pereira2018]\nroot = "."\n'
        f'name = "Simulated concepts (seed {seed}, SNR {snr:g})"\n'
        f'sentences = "{STIMULI_DIR}/sentences.tsv"\nwordclouds = "{STIMULI_DIR}/wordclouds.tsv"\n'
        f'pictures = "{STIMULI_DIR}/pictures"\ncategories = "{STIMULI_DIR}/categories.tsv"\n',
        encoding="utf-8")
    truth = {
        "kind": "pereira2018-simulated", "version": CONCEPT_DEMO_VERSION, "seed": seed, "snr": snr,
        "n_voxels": n_voxels, "features_sha256": _features_digest(features, table),
        "participants": dict(zip(participants, counts)),
        "participant_gain": dict(zip(participants, [round(float(g), 6) for g in gains])),
        "networks": list(CONCEPT_NETWORKS),
        "planted": [{"network": n, "paradigm": p, "source": pl.source, "layer": pl.layer}
                    for (n, p), pl in sorted(table.items(), key=lambda kv: (CONCEPT_NETWORKS.index(kv[0][0]),
                                                                         PARADIGMS.index(kv[0][1])))
                    ] if snr > 0 else [],
        "requested_planting": _planting_record(planting),
        "noise": {"shared_share": SHARED_NOISE_SHARE, "shared_rank": SHARED_NOISE_RANK,
                  "participant_gain_sd": PARTICIPANT_GAIN_SD},
    }
    # written last: its presence marks a complete dataset
    (root / GROUND_TRUTH_FILE).write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return truth


def _planting_record(planting: Sequence[ConceptPlant]) -> list[dict]:
    """The planting as ``ground_truth.json`` records it (``requested_planting``)."""
    return [{"network": p.network, "source": p.source, "layer": p.layer, "paradigms": list(p.paradigms)}
            for p in planting]


def _features_digest(features, table) -> str:
    """SHA-256 of the planted features (each planted (source, layer) per paradigm, in the
    order of the table), so a build can tell whether an existing dataset has them."""
    h = hashlib.sha256()
    for (network, paradigm), plant in sorted(table.items()):
        X = np.ascontiguousarray(_paradigm_features(features, paradigm)[(plant.source, plant.layer)], dtype=np.float64)
        h.update(f"\0{network}\0{paradigm}\0{plant.source}\0{plant.layer}\0{X.shape}\0".encode())
        h.update(X.tobytes())
    return h.hexdigest()


def _noise(n_voxels: int, rng) -> np.ndarray:
    """(C, V) unit-variance noise: independent plus a low-rank concept part shared by all voxels."""
    own = rng.standard_normal((N_CONCEPTS, n_voxels))
    shared = rng.standard_normal((N_CONCEPTS, SHARED_NOISE_RANK)) @ rng.standard_normal((SHARED_NOISE_RANK, n_voxels))
    shared /= np.sqrt(SHARED_NOISE_RANK)
    return np.sqrt(1 - SHARED_NOISE_SHARE) * own + np.sqrt(SHARED_NOISE_SHARE) * shared


# ==========================================================================================
# the whole dataset, atomically
# ==========================================================================================
def build_concept_dataset(root, features: FeatureMap | Callable[[ConceptStimuli], FeatureMap],
                          planting: Sequence[ConceptPlant], snr: float = DEFAULT_CONCEPT_SNR, seed: int = 0,
                          n_participants: int = DEFAULT_N_PARTICIPANTS, n_voxels: int = DEFAULT_N_VOXELS,
                          overwrite: bool = False) -> Path:
    """Write the simulated concept dataset (module docstring) at ``root`` and return it.

    Stimuli and responses are written to a temporary folder next to ``root``, renamed to
    ``root`` at the end. A simulated dataset already at ``root`` that was built with the same
    parameters and planted features is kept as it is (unless ``overwrite``); a different one
    is replaced.

    Parameters
    ----------
    features : mapping or callable
        The mapping of :func:`plant_concept_responses`, or a callable given the written
        :class:`ConceptStimuli` (in the temporary folder) that returns it: the caller computes
        the features from the stimuli.
    planting, snr, seed, n_participants, n_voxels
        As :func:`plant_concept_responses`.

    Raises
    ------
    FileExistsError
        ``root`` exists and is not a simulated concept dataset (nor an empty folder).
    """
    root = Path(root).expanduser().resolve()
    existing = None
    if root.exists():
        if not root.is_dir() or (any(root.iterdir()) and not (root / GROUND_TRUTH_FILE).is_file()):
            raise FileExistsError(f"{root} exists and is not a simulated dataset; choose another folder")
        try:
            existing = load_concept_ground_truth(root)
        except ValueError:
            if any(root.iterdir()):
                raise FileExistsError(f"{root} holds another kind of dataset; choose another folder") from None
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        stimuli = write_concept_stimuli(tmp, seed)
        feats = features(stimuli) if callable(features) else features
        truth = plant_concept_responses(tmp, feats, planting, snr, seed, n_participants, n_voxels)
        if existing == truth and not overwrite:  # the same build: keep the files (and their times)
            return root
        _replace_folder(tmp, root)
        return root
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_concept_ground_truth(root) -> dict:
    """The ``ground_truth.json`` of a simulated concept dataset (a dict; ``planted``: one
    {network, paradigm, source, layer} per planted network and paradigm)."""
    path = Path(root).expanduser() / GROUND_TRUTH_FILE
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: no readable ground truth ({exc})") from None
    if truth.get("kind") != "pereira2018-simulated":
        raise ValueError(f"{path}: not the ground truth of a simulated concept dataset")
    return truth


# ==========================================================================================
# the embedded concept demo
# ==========================================================================================
def concept_source(spec: str, branch: str) -> str:
    """The ``source`` of a :class:`ConceptPlant` planted from a model's branch: "<spec> <branch>"."""
    return f"{spec} {branch}"


#: the models whose layers the concept demo plants (and :mod:`alignment.demo` compares): a
#: language model and the dual encoder
CONCEPT_DEMO_MODELS = ("minilm", CLIP_SPEC)
#: the concept demo's planting: the left language network from MiniLM's middle layer in the
#: verbal paradigms, the visual network from the dual encoder's image tower under pictures;
#: ``languageRH`` and ``dmn`` carry noise only (what no model should explain)
CONCEPT_DEMO_PLANTING = (
    ConceptPlant("languageLH", concept_source(CONCEPT_DEMO_MODELS[0], "text"), 3, ("sentences", "wordclouds")),
    ConceptPlant("visual", concept_source(CONCEPT_DEMO_MODELS[1], "image"), 4, ("pictures",)),
)
#: (participants, mean voxels per participant) of the small concept demo (tests)
SMALL_CONCEPT_DEMO = (3, 200)


def build_concept_demo(root, seed: int = 0, snr: float = DEFAULT_CONCEPT_SNR, small: bool = False) -> Path:
    """The embedded concept demo at ``root``: :func:`build_concept_dataset` with
    :data:`CONCEPT_DEMO_PLANTING`, its features the planted layers' hidden states of the demo
    models on the dataset's own stimuli (the mean over a concept's stimuli, as the RSA stages
    compute them). ``small``: :data:`SMALL_CONCEPT_DEMO` participants and voxels."""
    from alignment.concepts import concept_features
    from alignment.models import load_model

    def features(stimuli: ConceptStimuli) -> dict:
        view, out = stimuli.view(), {p: {} for p in PARADIGMS}
        wanted: dict[str, set] = {}
        for plant in CONCEPT_DEMO_PLANTING:
            wanted.setdefault(plant.source.rsplit(" ", 1)[0], set()).update(plant.paradigms)
        for spec, paradigms in wanted.items():
            adapter = load_model(spec)
            for paradigm in sorted(paradigms):
                for (branch, layer), X in concept_features(adapter, view, paradigm).items():
                    out[paradigm][(concept_source(spec, branch), layer)] = X
        return out

    size = dict(zip(("n_participants", "n_voxels"), SMALL_CONCEPT_DEMO)) if small else {}
    if _is_concept_demo(root, seed, snr, **size):  # built: no model runs again
        return Path(root).expanduser().resolve()
    return build_concept_dataset(root, features, CONCEPT_DEMO_PLANTING, snr=snr, seed=seed, **size)


def _is_concept_demo(root, seed: int, snr: float, n_participants: int = DEFAULT_N_PARTICIPANTS,
                     n_voxels: int = DEFAULT_N_VOXELS) -> bool:
    """Whether ``root`` holds the concept demo of these parameters (its ground truth says so)."""
    try:
        truth = load_concept_ground_truth(root)
    except ValueError:
        return False
    return (truth.get("version") == CONCEPT_DEMO_VERSION and truth.get("seed") == int(seed)
            and truth.get("snr") == float(snr) and len(truth.get("participants", ())) == n_participants
            and truth.get("n_voxels") == n_voxels and truth.get("requested_planting") == _planting_record(CONCEPT_DEMO_PLANTING))
