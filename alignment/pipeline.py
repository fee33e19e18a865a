"""The analysis pipeline: cached stages from AN time series to voxel maps.

A :class:`Study` binds a dataset, a cache and analysis options. Each stage is a pure function of
its inputs and options, stored under a key that hashes them (see :mod:`alignment.cache`), so the
CLI (``python -m alignment run``), the demo and the app share results and never recompute.

Stages (one entry per subject where BOLD is involved):

===============  ==========================================================================
``ans``          raw pooled ANs at every TR (:mod:`alignment.features`)
``encoding``     ridge prediction map of one layer: ``scores``, ``alphas``, ``p``, ``q`` (V,)
``atoms``        sparse dictionary of one layer's ANs: ``codes`` (N, K), ``atoms`` (K, T),
                 ``regressors`` (T, K) HRF-convolved atoms
``glm``          voxel-wise AR(1) GLM of the atoms: ``t``, ``beta``, ``q`` (K, V)
``variance``     banded ridge with one band per branch at one depth: ``r2`` (V,), ``unique``
                 and ``r2_without`` (B, V), ``shared`` (V,)
``integration``  a VLM layer against an image and a text baseline: ``r_vlm``,
                 ``r_image``, ``r_text``, ``diff``, ``p``, ``q``, ``sites`` (V,)
===============  ==========================================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from alignment.cache import Cache, Entry
from alignment.features import FeatureRequest, an_timeseries, array_name, design_matrix
from alignment.timing import spm_hrf_convolve, zscore_runs

if TYPE_CHECKING:
    from alignment.config import RunConfig

ENCODING_VERSION = 1
ATOMS_VERSION = 1
GLM_VERSION = 2
VARIANCE_VERSION = 1
INTEGRATION_VERSION = 1


@dataclass(frozen=True)
class Options:
    """Analysis options; every field is part of the cache keys of the stages that use it."""

    hrf: str = "spm"
    alphas: tuple = tuple(np.logspace(-1, 5, 13).round(6))
    null: str = "circular"  # autocorrelation-aware null of the encoding r
    n_null: int = 200
    null_tail: str = "normal"  # p from a normal fitted to the null draws (see stats._p_from_null)
    n_atoms: int = 64
    glm: str = "separate"  # one GLM per atom ("separate") or all atoms jointly ("joint")
    sparsity: float = 1.0
    seed: int = 0
    fdr_q: float = 0.05
    banded_iter: int = 20  # band-weight samples of the banded ridge's random search
    block_len: int = 20  # TRs per time block of the integration-site test

    @classmethod
    def from_dict(cls, values: dict) -> "Options":
        """Options from a dict as an ``[options]`` table holds them, checked by its schema
        (:mod:`alignment.config`); raises a one-line ``ValueError``."""
        from alignment.config import options_from_dict

        return options_from_dict(values)


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
        return f"{self.vlm.label()} vs {_short_spec(self.baselines.image)} & {_short_spec(self.baselines.text)}"


def _short_spec(spec: str) -> str:
    return spec.removeprefix("random:").split("?")[0]


class Study:
    """A dataset + cache + options; computes each stage on demand and caches it."""

    def __init__(self, dataset, cache: Cache | str | None = None, options: Options | None = None,
                 device: str = "auto", progress: bool | Callable = False):
        self.dataset = dataset
        self.cache = cache if isinstance(cache, Cache) else Cache(cache)
        self.options = options or Options()
        self.device = device
        self.progress = progress
        self._bold: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ inputs
    @cached_property
    def runs(self) -> np.ndarray:
        """Run index of every TR, (T,)."""
        return self.dataset.run_index()

    def features(self, key: LayerKey) -> Entry:
        """The ``ans`` entry holding every layer of every branch of ``key``'s model/kind/condition."""
        request = FeatureRequest.make(key.model, None, kind=key.kind, condition=key.condition)
        return an_timeseries(self.dataset, request, self.cache, device=self.device, progress=self.progress)

    @cached_property
    def fit_backend(self) -> dict:
        """``backend``/``device`` of the ridge fits: torch on the GPU when the study's device is
        (or resolves to) cuda, numpy otherwise."""
        if self.device == "cpu":
            return {"backend": "numpy", "device": "cpu"}
        import torch

        cuda = torch.cuda.is_available()
        if self.device == "cuda" and not cuda:
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
        return {"backend": "torch", "device": "cuda"} if cuda else {"backend": "numpy", "device": "cpu"}

    def branches(self, spec: str, kind: str = "attn", condition: str = "image+text") -> dict[str, list[int]]:
        """A model's branches and their layers, as its extracted ANs hold them."""
        return self.features(LayerKey(spec, "", 0, kind, condition)).meta["branches"]

    def raw_ans(self, key: LayerKey) -> np.ndarray:
        """Raw pooled ANs of one layer at every TR, (T, N)."""
        entry = self.features(key)
        name = array_name(key.branch, key.layer)
        if name not in entry:
            raise ValueError(f"{key.label()}: no such branch/layer in the extracted ANs")
        return np.asarray(entry[name])

    def design(self, key: LayerKey) -> np.ndarray:
        """Encoding regressors of one layer: z-scored, HRF-convolved ANs, (T, N)."""
        return design_matrix(self.raw_ans(key), self.runs, self.dataset.tr, self.options.hrf)

    def bold(self, subject: str) -> np.ndarray:
        """BOLD of one subject, z-scored within run, (T, V) float32 (kept in memory, one subject)."""
        if subject not in self._bold:
            self._bold.clear()
            Y, runs = self.dataset.bold_all(subject)
            self._bold[subject] = (zscore_runs(Y, runs).astype(np.float32, copy=False), runs)
        return self._bold[subject][0]

    def _bold_params(self, subject: str) -> dict:
        return {"bold": self.dataset.fingerprint(subjects=[subject]), "subject": subject}

    # ------------------------------------------------------------------ stages
    def encoding(self, subject: str, key: LayerKey) -> Entry:
        """Ridge prediction map: ``scores`` r, ``alphas``, ``p`` (null), ``q`` (BH-FDR), all (V,)."""
        o = self.options
        features = self.features(key)
        params = {**self._bold_params(subject), "ans": features.key, "layer": asdict(key),
                  "hrf": o.hrf, "alphas": list(o.alphas), "null": o.null, "n_null": o.n_null, "null_tail": o.null_tail, "seed": o.seed}

        def compute():
            from alignment.encoding import fit_ridge
            from alignment.stats import block_permutation_null, circular_shift_null, fdr_bh

            Y = self.bold(subject)
            fit = fit_ridge(self.design(key), Y, self.runs, alphas=np.asarray(o.alphas), return_predictions=True,
                            **self.fit_backend)
            if o.null == "circular":
                p = circular_shift_null(Y, fit.predictions, self.runs, n_shifts=o.n_null, seed=o.seed, tail=o.null_tail)
            else:
                p = block_permutation_null(Y, fit.predictions, self.runs, n_perms=o.n_null, seed=o.seed, tail=o.null_tail)
            _, q = fdr_bh(p, o.fdr_q)
            arrays = {"scores": fit.scores, "alphas": fit.best_alphas, "p": p, "q": q}
            return {k: np.asarray(v, np.float32) for k, v in arrays.items()}, {"description": f"encoding {key.label()} sub-{subject}"}

        return self.cache.get_or_compute("encoding", params, compute, version=ENCODING_VERSION)

    def atoms(self, key: LayerKey) -> Entry:
        """Sparse dictionary of one layer: ``codes`` (N, K), ``atoms`` (K, T), ``regressors`` (T, K)."""
        o = self.options
        features = self.features(key)
        params = {"ans": features.key, "layer": asdict(key), "n_atoms": o.n_atoms, "sparsity": o.sparsity,
                  "seed": o.seed, "hrf": o.hrf}

        def compute():
            from alignment.dictionary import learn_atoms

            A = zscore_runs(self.raw_ans(key), self.runs)
            k = min(o.n_atoms, A.shape[1])
            learned = learn_atoms(A, n_atoms=k, alpha=o.sparsity, seed=o.seed)
            atoms = np.asarray(learned.atoms, np.float32)  # (K, T)
            regressors = atoms.T
            if o.hrf == "spm":
                regressors = spm_hrf_convolve(zscore_runs(regressors, self.runs), self.dataset.tr, runs=self.runs)
            regressors = zscore_runs(regressors, self.runs)
            return {"codes": np.asarray(learned.codes, np.float32), "atoms": atoms,
                    "regressors": np.asarray(regressors, np.float32)}, {"description": f"atoms {key.label()}"}

        return self.cache.get_or_compute("atoms", params, compute, version=ATOMS_VERSION)

    def glm(self, subject: str, key: LayerKey) -> Entry:
        """Voxel-wise AR(1) GLM of the HRF-convolved atoms: ``t``, ``beta``, ``q`` (K, V).

        With ``glm="separate"`` (default) each atom is tested in its own GLM with the nuisance
        regressors: HRF-smoothed atoms are collinear, and a joint model splits a voxel's
        response among them until no single atom is significant.
        ``q`` is BH-FDR across voxels within each atom (significant BNs of atom k: q < fdr_q).
        """
        atoms = self.atoms(key)
        params = {**self._bold_params(subject), "atoms": atoms.key, "glm": self.options.glm}

        def compute():
            from alignment.encoding import fit_atoms_glm
            from alignment.stats import fdr_bh

            fit = fit_atoms_glm(np.asarray(atoms["regressors"]), self.bold(subject), self.runs, tr=self.dataset.tr,
                                p_cutoff=0.25, separate=self.options.glm == "separate")
            q = np.stack([fdr_bh(p_k, self.options.fdr_q)[1] for p_k in np.asarray(fit.p)])
            return ({"t": np.asarray(fit.t, np.float32), "beta": np.asarray(fit.beta, np.float32),
                     "q": q.astype(np.float32)}, {"description": f"glm {key.label()} sub-{subject}"})

        return self.cache.get_or_compute("glm", params, compute, version=GLM_VERSION)

    def variance(self, subject: str, bands: BandsKey) -> Entry:
        """Unique and shared variance of a model's branches at one depth (DESIGN §5.5).

        One banded ridge (himalaya's random search over band weights, leave-one-run-out) with one
        band per branch, refit without each band. Arrays: ``r2`` (V,) joint held-out R²,
        ``r2_split`` (B, V), ``r2_without`` (B, V), ``unique`` (B, V) = r2 − r2_without,
        ``shared`` (V,) = r2 − Σ unique; bands in the order of ``bands.branches``.
        """
        if len(bands.branches) < 2:
            raise ValueError(f"{bands.label()}: a variance partition needs at least two branches")
        o = self.options
        features = self.features(bands.band(bands.branches[0]))
        params = {**self._bold_params(subject), "ans": features.key, "bands": asdict(bands),
                  "hrf": o.hrf, "alphas": list(o.alphas), "banded_iter": o.banded_iter, "seed": o.seed}

        def compute():
            from alignment.encoding import fit_banded_ridge

            Xs = [self.design(bands.band(b)) for b in bands.branches]
            fit = fit_banded_ridge(Xs, self.bold(subject), self.runs, alphas=np.asarray(o.alphas),
                                   n_iter=o.banded_iter, band_names=bands.branches, random_state=o.seed,
                                   dtype="float32", **self.fit_backend)
            arrays = {"r2": fit.r2, "r2_split": fit.r2_split, "r2_without": fit.r2_without,
                      "unique": fit.unique, "shared": fit.shared, "scores": fit.scores}
            return ({k: np.asarray(v, np.float32) for k, v in arrays.items()},
                    {"description": f"variance {bands.label()} sub-{subject}"})

        return self.cache.get_or_compute("variance", params, compute, version=VARIANCE_VERSION)

    def best_layer(self, subject: str, spec: str, kind: str = "attn", condition: str = "image+text") -> LayerKey:
        """The layer of a (one-branch) baseline model with the highest mean encoding r over voxels.

        Computes the encoding maps of every layer it lacks. A model with several branches uses
        its first branch.
        """
        branch, layers = next(iter(self.branches(spec, kind, condition).items()))
        keys = [LayerKey(spec, branch, int(layer), kind, condition) for layer in layers]
        means = [float(np.nanmean(np.asarray(self.encoding(subject, k)["scores"]))) for k in keys]
        return keys[int(np.argmax(means))]

    def _baseline(self, subject: str, spec: str, layer: int | None) -> LayerKey:
        if layer is None:
            return self.best_layer(subject, spec)
        branch = next(iter(self.branches(spec)))
        return LayerKey(spec, branch, int(layer))

    def integration(self, subject: str, key: IntegrationKey) -> Entry:
        """Integration sites of a VLM layer against an image and a text baseline (DESIGN §5.7).

        Held-out ridge predictions (leave-one-run-out) of the VLM layer and of each baseline
        layer, compared by :func:`alignment.analyses.integration.integration_sites` over time
        blocks of ``options.block_len`` TRs. Arrays (V,): ``r_vlm``, ``r_image``, ``r_text``,
        ``diff`` = r_vlm − max(baselines), ``p_image``, ``p_text``, ``p``, ``q`` (BH-FDR),
        ``sites`` (1 where q < fdr_q and diff > 0). Meta ``baselines``: the layers compared.
        """
        o = self.options
        image = self._baseline(subject, key.baselines.image, key.baselines.image_layer)
        text = self._baseline(subject, key.baselines.text, key.baselines.text_layer)
        keys = {"vlm": key.vlm, "image": image, "text": text}
        params = {**self._bold_params(subject), **{f"{k}_ans": self.features(v).key for k, v in keys.items()},
                  **{k: asdict(v) for k, v in keys.items()}, "hrf": o.hrf, "alphas": list(o.alphas),
                  "block_len": o.block_len, "fdr_q": o.fdr_q}

        def compute():
            from alignment.analyses.integration import integration_sites
            from alignment.encoding import fit_ridge

            Y = self.bold(subject)
            preds = [fit_ridge(self.design(k), Y, self.runs, alphas=np.asarray(o.alphas), return_predictions=True,
                               **self.fit_backend).predictions for k in keys.values()]
            res = integration_sites(Y, *preds, runs=self.runs, block_len=o.block_len, q=o.fdr_q)
            arrays = {name: getattr(res, name) for name in
                      ("r_vlm", "r_image", "r_text", "diff", "p_image", "p_text", "p", "q")}
            arrays = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
            arrays["sites"] = res.sites.astype(np.uint8)
            return arrays, {"description": f"integration {key.vlm.label()} sub-{subject}",
                            "baselines": {"image": asdict(image), "text": asdict(text)}}

        return self.cache.get_or_compute("integration", params, compute, version=INTEGRATION_VERSION)

    def link_table(self, subject: str, keys: Sequence[LayerKey], q: float | None = None):
        """AN↔BN links of ``keys`` (one kind and condition) for a subject, for fast lookups.

        Significant (atom, voxel) pairs are those with GLM q < ``q`` (default ``fdr_q``).
        """
        from alignment.analyses.lookup import LayerLinks, LinkTable

        q = self.options.fdr_q if q is None else q
        layers = []
        for key in keys:
            glm = self.glm(subject, key)
            layers.append(LayerLinks(key.model, key.branch, key.layer, np.asarray(self.atoms(key)["codes"]),
                                     np.asarray(glm["t"]), np.asarray(glm["q"]) < q))
        return LinkTable(layers)


# ---------------------------------------------------------------------- run configs
@dataclass(frozen=True)
class ModelPlan:
    spec: str
    branches: tuple | None = None
    layers: tuple | None = None
    kinds: tuple = ("attn",)
    conditions: tuple = ("image+text",)
    analyses: tuple | None = None  # None: the config's [analyses]


#: analysis name → the Study method (and cache stage) that computes one unit of it
STAGE_OF = {"encoding": "encoding", "neuron_mapping": "glm", "variance_partition": "variance",
            "integration": "integration"}
ANALYSES = tuple(STAGE_OF)
DEFAULT_ANALYSES = ("encoding", "neuron_mapping")  # the others cost more and need choices


def plan_layers(study: Study, plan: ModelPlan) -> list[LayerKey]:
    """Every LayerKey a model plan names (branches/layers resolved against the model)."""
    keys = []
    for kind in plan.kinds:
        for condition in plan.conditions:
            branches = study.branches(plan.spec, kind, condition)
            for branch in plan.branches or tuple(branches):
                if branch not in branches:
                    raise ValueError(f"{plan.spec} has no branch {branch!r}; branches: {', '.join(branches)}")
                for layer in plan.layers if plan.layers is not None else branches[branch]:
                    keys.append(LayerKey(plan.spec, branch, int(layer), kind, condition))
    return keys


def plan_bands(keys: Sequence[LayerKey]) -> list[BandsKey]:
    """The variance-partition units of a plan's keys: per (layer, kind, condition), the branches
    that have that layer, when there are at least two."""
    groups: dict[tuple, list[str]] = {}
    for k in keys:
        groups.setdefault((k.model, k.layer, k.kind, k.condition), []).append(k.branch)
    return [BandsKey(model, tuple(dict.fromkeys(branches)), layer, kind, condition)
            for (model, layer, kind, condition), branches in groups.items() if len(set(branches)) >= 2]


def plan_units(study: Study, plan: ModelPlan, analyses: Sequence[str] = DEFAULT_ANALYSES,
               baselines: Baselines | None = None) -> list[tuple[str, object]]:
    """(stage, target) pairs of one plan, for one subject.

    Targets: a :class:`LayerKey` for ``encoding`` and ``neuron_mapping``, a :class:`BandsKey`
    for ``variance_partition``, an :class:`IntegrationKey` for ``integration`` (the baseline
    models themselves are not tested against each other).
    """
    keys = plan_layers(study, plan)
    units: list[tuple[str, object]] = []
    for stage in plan.analyses or analyses:
        if stage in ("encoding", "neuron_mapping"):
            units += [(stage, k) for k in keys]
        elif stage == "variance_partition":
            units += [(stage, b) for b in plan_bands(keys)]
        elif stage == "integration":
            if baselines is None:
                raise ValueError("the integration analysis needs baselines (an image and a text model)")
            if plan.spec not in (baselines.image, baselines.text):
                units += [(stage, IntegrationKey(k, baselines)) for k in keys]
        else:
            raise ValueError(f"unknown analysis {stage!r}; known: {', '.join(ANALYSES)}")
    return units


def run_config(config: RunConfig, cache: Cache | str | None = None, progress: bool = True) -> list[tuple]:
    """Compute everything ``config`` names; returns the (stage, subject, LayerKey) units done.

    Each unit is cached as soon as it finishes, so an interrupted run resumes where it stopped.
    """
    from alignment.data import load_dataset

    dataset = load_dataset(config.dataset)
    study = Study(dataset, cache, config.options, device=config.device, progress=progress)
    subjects = list(config.subjects or dataset.subjects)
    missing = set(subjects) - set(dataset.subjects)
    if missing:
        raise ValueError(f"subjects {sorted(missing)} not in {dataset.root}; found {dataset.subjects}")
    return compute(study, config.models, subjects, config.analyses, progress, baselines=config.baselines)


def compute(study: Study, plans: Sequence[ModelPlan], subjects: Sequence[str],
            analyses: Sequence[str] = DEFAULT_ANALYSES, progress: bool | Callable[[int, int, str], None] = True,
            baselines: Baselines | None = None) -> list[tuple]:
    """Compute the stages of every plan for every subject (subject by subject: one BOLD in memory).

    ``analyses``: stages of plans that name none; ``baselines``: the models of ``integration``.
    ``progress``: True for a progress bar, or a callback ``(done, total, label)``.
    Returns the (stage, subject, target) units (see :func:`plan_units`).
    """
    units = list(dict.fromkeys(
        (stage, subject, target)
        for subject in subjects
        for plan in plans
        for stage, target in plan_units(study, plan, analyses, baselines)
    ))
    bar = _bar(len(units), progress is True)
    try:
        for i, (stage, subject, target) in enumerate(units):
            label = f"{stage} sub-{subject} {target.label()}"
            bar.set_description(label[:60])
            if callable(progress):
                progress(i, len(units), label)
            getattr(study, STAGE_OF[stage])(subject, target)
            bar.update(1)
    finally:  # also on an error or Ctrl-C: the CLI's one-line message then starts on a clean line
        bar.close()
    if callable(progress):
        progress(len(units), len(units), "done")
    return units


def _bar(total: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="unit", disable=not show)
