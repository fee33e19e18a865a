"""The study: a dataset, a cache and analysis options, through which every result is read or computed.

Each analysis is a registered stage (:mod:`alignment.stages`: name, version, key parameters,
inputs, compute). ``Study.get(stage, target, subject)`` resolves a unit through the registry: it
reads the result from the cache (see :mod:`alignment.cache`), or computes it and its inputs and
stores them under a key that hashes everything they depend on, so the CLI
(``python -m alignment run``), the demo and the app share results and never recompute. A run
config expands into units and their dependencies in :mod:`alignment.plan`; the catalog of what
the cache holds is :mod:`alignment.catalog`.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from alignment.cache import Cache, Entry
from alignment.features import array_name, design_matrix
# the value objects are re-exported: a study is used with them
from alignment.keys import Baselines, BandsKey, IntegrationKey, LayerKey, ModelPlan, Options
from alignment.stages import Unit, stage as stage_of, target_dict
from alignment.stages.features import ans_unit
from alignment.timing import zscore_runs

log = logging.getLogger(__name__)

__all__ = ["Baselines", "BandsKey", "IntegrationKey", "LayerKey", "ModelPlan",
           "NotCached", "Options", "Study"]


class NotCached(LookupError):
    """A result asked for without computing is not in the cache (absent, or damaged and moved aside).

    ``missing``: the input that lacks, when it is not the result itself (its stage and description).
    """

    def __init__(self, stage: str, description: str = "", missing: tuple[str, str] | None = None):
        self.stage = stage
        self.description = description
        self.missing = missing
        what = f"The {stage} result" + (f" ({description})" if description else "")
        if missing:
            what += f" cannot be read: its input, the {missing[0]} result ({missing[1]}),"
        super().__init__(
            f"{what} is not in the cache (never computed, deleted, or found damaged and moved "
            "aside). Compute it on the Compute page or with `python -m alignment run`."
        )


_COMPUTE, _READ, _PROBE = "compute", "read", "probe"


class Study:
    """A dataset + cache + options: reads, or computes and caches, any registered stage.

    ``Study.get(stage, target, subject)`` is the one way to a result (see
    :mod:`alignment.stages`). ``read_only``: ``get`` raises :class:`NotCached` for a missing
    result unless asked to compute (the app opens its studies so). A study is picklable (its
    in-memory memos are dropped), so an executor can rebuild it in another process.
    """

    def __init__(self, dataset, cache: Cache | str | None = None, options: Options | None = None,
                 device: str = "auto", progress: bool | Callable = False, read_only: bool = False,
                 voxel_chunk: int | None = None):
        self.dataset = dataset
        self.cache = cache if isinstance(cache, Cache) else Cache(cache)
        self.options = options or Options()
        self.device = device
        # voxels per fit chunk (memory ~ a few (T, voxel_chunk) arrays; None: the fits' default).
        # How a unit is computed, not what: results do not depend on it and it keys nothing
        self.voxel_chunk = voxel_chunk
        self.progress = progress
        self.read_only = read_only
        self._memo()

    def _memo(self):
        self._bold: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # Y, runs, masked
        self._entries: dict[tuple[str, str], Entry] = {}  # verified entries, by (stage, key)
        self._fingerprints: dict = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in ("_bold", "_entries", "_fingerprints"):
            state.pop(name)
        state.pop("runs", None)
        state.pop("fit_backend", None)
        state["progress"] = False
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._memo()

    # ------------------------------------------------------------------ results
    def get(self, stage: str, target, subject: str | None = None, *, compute: bool | None = None) -> Entry:
        """The result of one unit: read from the cache, or computed (with its inputs) and stored.

        Parameters
        ----------
        stage : str
            A registered stage (:data:`alignment.stages.STAGES`).
        target : object
            The stage's target (e.g. a :class:`LayerKey`).
        subject : str, optional
            For stages that read BOLD.
        compute : bool, optional
            False: raise :class:`NotCached` when the result (or an input) is missing; default:
            compute unless the study is read-only.
        """
        if compute is None:
            compute = not self.read_only
        unit = self.unit(stage, target, subject)
        try:
            return self._resolve(unit, _COMPUTE if compute else _READ)
        except NotCached as exc:  # name the result asked for, and the input that lacks
            if exc.stage == unit.stage and exc.description == _description(unit):
                raise
            raise NotCached(unit.stage, _description(unit), (exc.stage, exc.description)) from None

    def has(self, stage: str, target, subject: str | None = None) -> bool:
        """Whether the unit's result is in the cache (its metadata exists; nothing is verified or computed)."""
        try:
            self._resolve(self.unit(stage, target, subject), _PROBE)
        except NotCached:
            return False
        return True

    def inputs(self, unit: Unit, compute: bool = True) -> dict[str, Unit]:
        """The units ``unit`` reads (role → Unit)."""
        mode = _COMPUTE if compute else _READ
        return dict(stage_of(unit.stage).inputs(self, unit, lambda u: self._resolve(u, mode)))

    def unit(self, stage: str, target, subject: str | None = None) -> Unit:
        """The unit of a stage, target and subject (the subject checked against the stage)."""
        spec = stage_of(stage)
        if spec.per_subject and subject is None:
            raise ValueError(f"stage {stage!r} is per subject: name one")
        return Unit(stage, target, str(subject) if spec.per_subject else None)

    def key(self, stage: str, target, subject: str | None = None) -> str:
        """The cache key of a unit (its inputs must be cached; nothing is verified or computed)."""
        return self._key(self.unit(stage, target, subject), _PROBE)[1]

    def _key(self, unit: Unit, mode: str) -> tuple[dict, str, dict]:
        """(params, key, inputs: role → Entry) of a unit, its inputs resolved in ``mode``."""
        spec = stage_of(unit.stage)
        inputs = {role: self._resolve(u, mode)
                  for role, u in spec.inputs(self, unit, lambda u: self._resolve(u, mode)).items()}
        params = spec.params(self, unit, inputs)
        return params, self.cache.key(unit.stage, params, spec.version), inputs

    def _resolve(self, unit: Unit, mode: str) -> Entry:
        spec = stage_of(unit.stage)
        params, key, inputs = self._key(unit, mode)
        entry = self._entries.get((unit.stage, key))
        if entry is not None and entry.path.is_dir():
            return entry
        if mode == _PROBE:
            entry = self.cache.peek(unit.stage, key)
        elif mode == _READ:
            entry = self.cache.get(unit.stage, key)
        else:
            entry = self.cache.get_or_compute(unit.stage, params, lambda: spec.compute(self, unit, inputs),
                                              version=spec.version, meta=self._meta(unit, spec, inputs))
        if entry is None:
            raise NotCached(unit.stage, _description(unit))
        if mode != _PROBE:
            self._entries[(unit.stage, key)] = entry
        return entry

    def _meta(self, unit: Unit, spec, inputs) -> dict:
        """What the catalog reads: the unit, and the options that keyed it and its inputs."""
        options = {}
        for entry in inputs.values():
            options.update(entry.meta.get("options") or {})
        options.update({name: _plain(getattr(self.options, name)) for name in spec.options})
        meta = {"unit": {"stage": unit.stage, "target_type": type(unit.target).__name__,
                         "target": target_dict(unit.target), "subject": unit.subject},
                "options": options}
        if unit.subject is not None:
            meta["bold"] = self.bold_params(unit.subject)["bold"]
        return meta

    # ------------------------------------------------------------------ inputs
    @cached_property
    def runs(self) -> np.ndarray:
        """Run index of every TR, (T,)."""
        return self.dataset.run_index()

    @property
    def stimuli_fingerprint(self) -> str:
        """Fingerprint of the dataset's stimuli (what model features depend on), memoised."""
        if None not in self._fingerprints:
            self._fingerprints[None] = self.dataset.fingerprint(include_bold=False)
        return self._fingerprints[None]

    def bold_params(self, subject: str) -> dict:
        """What keys a subject's BOLD: its fingerprint (memoised) and id."""
        if subject not in self._fingerprints:
            self._fingerprints[subject] = self.dataset.fingerprint(subjects=[subject])
        return {"bold": self._fingerprints[subject], "subject": subject}

    def features(self, key: LayerKey) -> Entry:
        """The ``ans`` entry holding every layer of every branch of ``key``'s model/kind/condition."""
        return self.get("ans", ans_unit(key.model, key.kind, key.condition).target)

    @cached_property
    def fit_backend(self) -> dict:
        """``backend``/``device`` of the ridge fits and the atom GLM (torch on the GPU when the
        study's device is, or resolves to, cuda; numpy otherwise) and their ``voxel_chunk`` when
        the study sets one."""
        chunk = {} if self.voxel_chunk is None else {"voxel_chunk": int(self.voxel_chunk)}
        if self.device == "cpu":
            return {"backend": "numpy", "device": "cpu", **chunk}
        import torch

        cuda = torch.cuda.is_available()
        if self.device == "cuda" and not cuda:
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
        return {"backend": "torch", "device": "cuda", **chunk} if cuda else {"backend": "numpy", "device": "cpu", **chunk}

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
        """Ridge regressors of one layer (:func:`alignment.features.design_matrix` with the
        study's ``hrf``): z-scored, HRF-convolved ANs (T, N), or for ``hrf="fir"`` the
        z-scored ANs at every FIR delay (T, N·D)."""
        return design_matrix(self.raw_ans(key), self.runs, self.dataset.tr, self.options.hrf)

    def bold(self, subject: str) -> np.ndarray:
        """BOLD of one subject, z-scored within run, (T, V) float32 (kept in memory, one subject).

        Masked voxels (:meth:`masked_voxels`) are 0 at every TR: they score 0 and are never
        significant, and nothing non-finite reaches an analysis.
        """
        if subject not in self._bold:
            self._bold.clear()
            Y, runs = self.dataset.bold_all(subject, nan_policy="mask")
            masked = np.zeros(Y.shape[1], dtype=bool)
            for r in np.unique(runs):
                block = Y[runs == r]
                masked |= (block == block[0]).all(axis=0)
            Y = zscore_runs(Y, runs).astype(np.float32, copy=False)
            Y[:, masked] = 0.0
            if masked.any():
                log.warning("sub-%s: %d of %d voxels masked (NaN/infinite or constant BOLD in some run)",
                            subject, int(masked.sum()), masked.size)
            self._bold[subject] = (Y, runs, masked)
        return self._bold[subject][0]

    def masked_voxels(self, subject: str) -> np.ndarray:
        """(V,) bool: voxels with NaN / infinite values or constant BOLD in some run, left out of
        every analysis (set to 0) for the whole subject."""
        self.bold(subject)
        return self._bold[subject][2]

    def link_table(self, subject: str, keys: Sequence[LayerKey], q: float | None = None):
        """AN↔BN links of ``keys`` (one kind and condition) for a subject, for fast lookups.

        Significant (atom, voxel) pairs are those with GLM q < ``q`` (default ``fdr_q``).
        """
        from alignment.analyses.lookup import LayerLinks, LinkTable

        q = self.options.fdr_q if q is None else q
        layers = []
        for key in keys:
            glm = self.get("glm", key, subject)
            layers.append(LayerLinks(key.model, key.branch, key.layer, np.asarray(self.get("atoms", key)["codes"]),
                                     np.asarray(glm["t"]), np.asarray(glm["q"]) < q))
        return LinkTable(layers)


def _description(unit: Unit) -> str:
    return unit.label().removeprefix(unit.stage).strip()


def _plain(value):
    """An option value as JSON has it (tuples as lists of floats for alphas)."""
    return [float(v) for v in value] if isinstance(value, tuple) else value
