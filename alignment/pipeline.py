"""The analysis pipeline: cached stages from AN time series to voxel maps.

A :class:`Study` binds a dataset, a cache and analysis options. Each stage is a pure function of
its inputs and options, stored under a key that hashes them (see :mod:`alignment.cache`), so the
CLI (``python -m alignment run``), the demo and the app share results and never recompute.

Stages (one entry per subject where BOLD is involved):

=============  ==========================================================================
``ans``        raw pooled ANs at every TR (:mod:`alignment.features`)
``encoding``   ridge prediction map of one layer: ``scores``, ``alphas``, ``p``, ``q`` (V,)
``atoms``      sparse dictionary of one layer's ANs: ``codes`` (N, K), ``atoms`` (K, T),
               ``regressors`` (T, K) HRF-convolved atoms
``glm``        voxel-wise AR(1) GLM of the atoms: ``t``, ``beta``, ``q`` (K, V)
=============  ==========================================================================
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from alignment.cache import Cache, Entry
from alignment.features import FeatureRequest, an_timeseries, array_name, design_matrix
from alignment.timing import spm_hrf_convolve, zscore_runs

ENCODING_VERSION = 1
ATOMS_VERSION = 1
GLM_VERSION = 2


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

    @classmethod
    def from_dict(cls, values: dict) -> "Options":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown analysis options {sorted(unknown)}; known: {sorted(known)}")
        if "alphas" in values:
            values = {**values, "alphas": tuple(float(a) for a in values["alphas"])}
        return cls(**values)


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
            fit = fit_ridge(self.design(key), Y, self.runs, alphas=np.asarray(o.alphas), return_predictions=True)
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


ANALYSES = ("encoding", "neuron_mapping")


@dataclass(frozen=True)
class RunConfig:
    """What ``python -m alignment run CONFIG.toml`` computes (see the README for the format)."""

    dataset: str
    subjects: tuple | None = None
    models: tuple = ()
    analyses: tuple = ("encoding", "neuron_mapping")
    options: Options = field(default_factory=Options)
    device: str = "auto"

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML: {err}") from None
        study = raw.get("study", {})
        if "dataset" not in study:
            raise ValueError(f"{path}: [study] needs a 'dataset' (a dataset folder)")
        dataset = study["dataset"]
        if not Path(dataset).is_absolute():
            dataset = str((path.parent / dataset).resolve())
        models = []
        for m in raw.get("models", []):
            if "spec" not in m:
                raise ValueError(f"{path}: every [[models]] table needs a 'spec'")
            layers = m.get("layers", "all")
            models.append(ModelPlan(
                spec=m["spec"],
                branches=tuple(m["branches"]) if "branches" in m else None,
                layers=None if layers == "all" else tuple(int(x) for x in layers),
                kinds=tuple(m.get("kinds", ["attn"])),
                conditions=tuple(m.get("conditions", ["image+text"])),
                analyses=_analyses(m["analyses"], path) if "analyses" in m else None,
            ))
        if not models:
            raise ValueError(f"{path}: name at least one [[models]] table with a spec")
        analyses = raw.get("analyses", {})
        _analyses([name for name in analyses], path)
        chosen = tuple(name for name in ANALYSES if analyses.get(name, True))
        subjects = study.get("subjects")
        return cls(dataset=dataset, subjects=None if subjects is None else tuple(str(s) for s in subjects),
                   models=tuple(models), analyses=chosen, options=Options.from_dict(raw.get("options", {})),
                   device=study.get("device", "auto"))


def _analyses(names, path) -> tuple:
    unknown = set(names) - set(ANALYSES)
    if unknown:
        raise ValueError(f"{path}: unknown analyses {sorted(unknown)}; known: {', '.join(ANALYSES)}")
    return tuple(names)


def plan_layers(study: Study, plan: ModelPlan) -> list[LayerKey]:
    """Every LayerKey a model plan names (branches/layers resolved against the model)."""
    keys = []
    for kind in plan.kinds:
        for condition in plan.conditions:
            entry = study.features(LayerKey(plan.spec, "", 0, kind, condition))
            branches = entry.meta["branches"]
            for branch in plan.branches or tuple(branches):
                if branch not in branches:
                    raise ValueError(f"{plan.spec} has no branch {branch!r}; branches: {', '.join(branches)}")
                for layer in plan.layers if plan.layers is not None else branches[branch]:
                    keys.append(LayerKey(plan.spec, branch, int(layer), kind, condition))
    return keys


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
    return compute(study, config.models, subjects, config.analyses, progress)


def compute(study: Study, plans: Sequence[ModelPlan], subjects: Sequence[str],
            analyses: Sequence[str] = ANALYSES, progress: bool | Callable[[int, int, str], None] = True) -> list[tuple]:
    """Compute the stages of every plan for every subject (subject by subject: one BOLD in memory).

    ``progress``: True for a progress bar, or a callback ``(done, total, label)``.
    """
    units = list(dict.fromkeys(
        (stage, subject, key)
        for subject in subjects
        for plan in plans
        for key in plan_layers(study, plan)
        for stage in (plan.analyses or analyses)
    ))
    bar = _bar(len(units), progress is True)
    for i, (stage, subject, key) in enumerate(units):
        label = f"{stage} sub-{subject} {key.label()}"
        bar.set_description(label[:60])
        if callable(progress):
            progress(i, len(units), label)
        if stage == "encoding":
            study.encoding(subject, key)
        else:
            study.glm(subject, key)
        bar.update(1)
    bar.close()
    if callable(progress):
        progress(len(units), len(units), "done")
    return units


def _bar(total: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="unit", disable=not show)
