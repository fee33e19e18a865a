"""Value objects that name a computation: the analysis options and the targets of stages.

All are frozen dataclasses of plain values: hashable (plans deduplicate units with them),
picklable (an executor ships them to another process) and recorded in the cache metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Options:
    """Analysis options; every field is part of the cache keys of the stages that use it."""

    hrf: str = "spm"
    alphas: tuple = tuple(np.logspace(-1, 5, 13).round(6))
    null: str = "circular"  # autocorrelation-aware null of the encoding r
    n_null: int = 200
    null_tail: str = "normal"  # p from a normal fitted to the null draws (see stats.p_from_null)
    n_atoms: int = 64
    # one GLM per atom ("separate", shown as "marginal": which ANs' time courses a voxel follows,
    # the ranking of the inspectors) or all atoms in one GLM ("joint": each atom's effect given
    # the others, the honest count of redundant links; under collinear atoms it splits an AN's
    # effect over its atoms and loses the AN ranking, see docs/methods.md)
    glm: str = "separate"
    glm_noise: str = "ar5"  # noise model of the atom GLM: "ols" or "ar<p>" (see stages.mapping)
    sparsity: float = 1.0
    seed: int = 0
    fdr_q: float = 0.05
    banded_iter: int = 20  # band-weight samples of the banded ridge's random search
    block_len: int = 20  # TRs per time block of the integration-site test
    # λ of the paired block tests (integration, cross-modal, specialization): estimated from the
    # map's voxels, or the bound 2 everywhere (see analyses.integration)
    block_inflation: str = "estimated"


@dataclass(frozen=True)
class LayerKey:
    """One layer's ANs: (model spec, branch, layer, AN kind, stimulus condition)."""

    model: str
    branch: str
    layer: int
    kind: str = "attn"
    condition: str = "image+text"

    def label(self) -> str:
        return f"{self.model} {self.branch} L{self.layer} {self.kind} [{self.condition}]"


@dataclass(frozen=True)
class BandsKey:
    """Branches of one model at the same depth, fitted jointly as the bands of a banded ridge."""

    model: str
    branches: tuple
    layer: int
    kind: str = "attn"
    condition: str = "image+text"

    def band(self, branch: str) -> LayerKey:
        return LayerKey(self.model, branch, self.layer, self.kind, self.condition)

    def label(self) -> str:
        return f"{self.model} {'+'.join(self.branches)} L{self.layer} {self.kind} [{self.condition}]"


@dataclass(frozen=True)
class Baselines:
    """The unimodal baselines of integration sites: an image model and a text model.

    ``image_layer`` / ``text_layer``: a layer index, or None for the baseline's best layer (the
    highest mean encoding r over voxels, per subject).
    """

    image: str
    text: str
    image_layer: int | None = None
    text_layer: int | None = None


@dataclass(frozen=True)
class IntegrationKey:
    """A VLM layer tested against the unimodal baselines."""

    vlm: LayerKey
    baselines: Baselines

    def label(self) -> str:
        return f"{self.vlm.label()} vs {short_spec(self.baselines.image)} & {short_spec(self.baselines.text)}"


#: the lesion curve's defaults (:class:`LesionKey`)
LESION_FRACTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9)


@dataclass(frozen=True)
class LesionKey:
    """Lesion curves of one layer: encoding r as random vs top-ranked ANs are removed.

    ``fdr_q``: voxels significant for the full layer are scored; ``fractions``: shares of the
    layer's ANs removed; ``n_repeats``: random draws per fraction; ``max_voxels``: at most this
    many voxels (the best by r).
    """

    layer: LayerKey
    fdr_q: float = 0.05
    fractions: tuple = LESION_FRACTIONS
    n_repeats: int = 3
    max_voxels: int = 2000

    def label(self) -> str:
        return f"{self.layer.label()} lesion"


def short_spec(spec: str) -> str:
    """A model spec without ``random:`` and query options, for labels."""
    return spec.removeprefix("random:").split("?")[0]


@dataclass(frozen=True)
class ModelPlan:
    """What a run config asks of one model: branches, layers (None: all), AN kinds, stimulus
    conditions and analyses (None: the config's ``[analyses]``)."""

    spec: str
    branches: tuple | None = None
    layers: tuple | None = None
    kinds: tuple = ("attn",)
    conditions: tuple = ("image+text",)
    analyses: tuple | None = None


# ---------------------------------------------------------------------------- concept RSA
#: defaults of the concept-RSA statistics (:class:`RSAKey`, the run config's ``[rsa]``)
RSA_N_PERM = 10_000
RSA_N_BOOT = 1000
RSA_METRIC = "cosine"
RSA_SPLIT = "participants"


@dataclass(frozen=True)
class ConceptFeatureKey:
    """A model's ``hidden`` layers for every concept under one paradigm and image ablation
    (:func:`alignment.concepts.concept_features`)."""

    model: str
    paradigm: str
    ablation: str = "none"
    pooling: str = "mean"

    def label(self) -> str:
        ablation = "" if self.ablation == "none" else f" +{self.ablation} image"
        return f"{short_spec(self.model)} [{self.paradigm}{ablation}]"


@dataclass(frozen=True)
class ModelRDMKey:
    """The RDM (P,) of one layer of one branch over the concepts."""

    features: ConceptFeatureKey
    branch: str
    layer: int
    metric: str = RSA_METRIC

    def label(self) -> str:
        return f"{self.features.label()} {self.branch} layer {self.layer} {self.metric}"


@dataclass(frozen=True)
class BrainRDMKey:
    """A participant's RDM (P,) of one network's voxels under one paradigm."""

    paradigm: str
    network: str
    metric: str = RSA_METRIC

    def label(self) -> str:
        return f"{self.network} [{self.paradigm}] {self.metric}"


@dataclass(frozen=True)
class RSAKey:
    """Concept RSA of every layer of one model branch against the group RDMs of networks.

    ``networks`` and ``subjects``: names (empty: all the dataset has); ``control``: a
    language-only model spec whose RDM is partialled out (its ``text`` branch), or None;
    ``split``: how the best layer is chosen out of sample (:func:`alignment.analyses.rsa.best_layer`).
    """

    model: str
    branch: str
    paradigm: str
    ablation: str = "none"
    networks: tuple = ()
    metric: str = RSA_METRIC
    control: str | None = None
    subjects: tuple = ()
    n_perm: int = RSA_N_PERM
    n_boot: int = RSA_N_BOOT
    split: str = RSA_SPLIT
    seed: int = 0

    @property
    def features(self) -> ConceptFeatureKey:
        return ConceptFeatureKey(self.model, self.paradigm, self.ablation)

    def label(self) -> str:
        return f"{self.features.label()} {self.branch} RSA"


@dataclass(frozen=True)
class RSACompareKey:
    """Every pair of the RSA results ``results`` (same paradigm, networks, participants),
    compared network by network."""

    results: tuple  # of RSAKey

    def __post_init__(self):
        # rebuilt from recorded metadata (the catalog), the results are dicts of plain values
        keys = tuple(RSAKey(**{k: tuple(v) if isinstance(v, list) else v for k, v in r.items()})
                     if isinstance(r, dict) else r for r in self.results)
        object.__setattr__(self, "results", keys)

    def label(self) -> str:
        return " vs ".join(f"{short_spec(k.model)} {k.branch}" for k in self.results)


@dataclass(frozen=True)
class RSAPlan:
    """What a run config's ``[rsa]`` table asks: RSA of every model (every branch with hidden
    states, or ``branches``) × paradigm × ablation, and their pairwise differences."""

    models: tuple
    paradigms: tuple = ("sentences",)
    networks: tuple = ()
    branches: tuple | None = None
    metric: str = RSA_METRIC
    ablations: tuple = ("none",)
    control: str | None = None
    n_perm: int = RSA_N_PERM
    n_boot: int = RSA_N_BOOT
    split: str = RSA_SPLIT
    seed: int = 0
