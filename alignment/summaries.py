"""Summaries the app draws: maps, layer curves, polarity, modality, redundancy, comparisons.

Library code (no Streamlit). Every function reads cached pipeline results through a
:class:`~alignment.pipeline.Study`; the app opens its studies with :func:`open_study`, whose
cache is *read-only* (:class:`ReadOnlyCache`): a result that is not in the cache raises
:class:`NotCached` instead of being computed (computations are launched explicitly, from the
Compute page or the CLI, through :func:`alignment.pipeline.compute`). :func:`available` lists
what the cache holds for a dataset, so views only offer what exists.

Shapes: V voxels (91282 grayordinates for fsLR32k), S subjects, K atoms, N ANs of a layer,
L layers.

A *subject* argument is a subject id (``"01"``) or ``"group"`` (all subjects of the dataset:
per-subject maps, Fisher z, one-sample t test across subjects, BH-FDR over voxels).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from alignment.cache import Cache, Entry
from alignment.demo import demo_options  # the options the demo is computed (and read) with
from alignment.pipeline import Baselines, BandsKey, IntegrationKey, LayerKey, Options, Study

__all__ = [
    "GROUP",
    "MAP_METRICS",
    "Availability",
    "NotCached",
    "ReadOnlyCache",
    "ProbeCache",
    "AppStudy",
    "MapResult",
    "GroupMap",
    "open_study",
    "cached_options",
    "demo_study",
    "demo_options",
    "demo_ready",
    "available",
    "subject_list",
    "encoding_maps",
    "group_map",
    "metric_map",
    "best_layer_map",
    "network_table",
    "layer_curves",
    "polarity_tables",
    "dual_modality",
    "fusion_modality",
    "variance_maps",
    "integration_maps",
    "redundancy",
    "lesion",
    "compare_maps",
    "study_id",
]

GROUP = "group"
#: map metrics the Overview / Compare pages offer (see :func:`metric_map`)
MAP_METRICS = ("r", "significant r", "-log10 q", "best layer", "SI", "cross-modal gain")


# ==========================================================================================
# read-only access to the cache
# ==========================================================================================
class NotCached(LookupError):
    """A result the app asked for is not in the cache (absent, or damaged and moved aside)."""

    def __init__(self, stage: str, description: str = ""):
        self.stage = stage
        self.description = description
        what = f"{stage} result" + (f" ({description})" if description else "")
        super().__init__(
            f"The {what} is not in the cache (never computed, deleted, or found damaged and moved "
            "aside). Compute it on the Compute page or with `python -m alignment run`."
        )


class ReadOnlyCache(Cache):
    """A :class:`~alignment.cache.Cache` that never computes: a miss raises :class:`NotCached`.

    Verified entries are remembered (one sha256 check per entry and process).
    """

    def __init__(self, root=None):
        super().__init__(root)
        self._seen: dict[tuple[str, str], Entry] = {}

    def writable(self) -> Cache:
        """A normal cache on the same folder (for explicit computations)."""
        return Cache(self.root)

    def get_or_compute(self, stage, params, compute, version=1, meta=None) -> Entry:
        key = self.key(stage, params, version)
        hit = self._seen.get((stage, key))
        if hit is not None and hit.path.is_dir():
            return hit
        entry = self.get(stage, key)
        if entry is None:
            layer = params.get("layer") if isinstance(params, dict) else None
            desc = ""
            if isinstance(layer, dict):
                desc = LayerKey(**layer).label()
            if isinstance(params, dict) and "subject" in params:
                desc = f"{desc} sub-{params['subject']}".strip()
            if not desc and isinstance(params, dict) and "model" in params:
                desc = f"{params.get('model')} {params.get('kind', '')} {params.get('condition', '')}".strip()
            raise NotCached(stage, desc)
        self._seen[(stage, key)] = entry
        return entry


class ProbeCache(ReadOnlyCache):
    """Existence check only: entries are not verified (cheap completeness checks)."""

    def get_or_compute(self, stage, params, compute, version=1, meta=None) -> Entry:
        key = self.key(stage, params, version)
        path = self.entry_path(stage, key)
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise NotCached(stage)
        try:
            meta_d = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise NotCached(stage) from None
        return Entry(stage, key, path, meta_d)


class AppStudy(Study):
    """A :class:`Study` that remembers feature entries and BOLD fingerprints.

    The base class fingerprints the dataset and verifies the ``ans`` entry at every stage
    call; the app calls stages many times per view, so both are memoised for the life of the
    object (the app reopens the study when the user reloads).
    """

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._features: dict = {}
        self._fp: dict = {}

    def features(self, key: LayerKey) -> Entry:
        k = (key.model, key.kind, key.condition)
        if k not in self._features:
            self._features[k] = super().features(key)
        return self._features[k]

    def _bold_params(self, subject: str) -> dict:
        if subject not in self._fp:
            self._fp[subject] = super()._bold_params(subject)
        return self._fp[subject]

    def encoding(self, subject: str, key: LayerKey) -> Entry:
        try:
            return super().encoding(subject, key)
        except NotCached as exc:
            raise NotCached(exc.stage, f"{key.label()} sub-{subject}") from None

    def atoms(self, key: LayerKey) -> Entry:
        try:
            return super().atoms(key)
        except NotCached as exc:
            raise NotCached(exc.stage, key.label()) from None

    def glm(self, subject: str, key: LayerKey) -> Entry:
        try:
            return super().glm(subject, key)
        except NotCached as exc:
            raise NotCached(exc.stage, f"{key.label()} sub-{subject}") from None

    def variance(self, subject: str, bands: BandsKey) -> Entry:
        try:
            return super().variance(subject, bands)
        except NotCached as exc:
            raise NotCached(exc.stage, f"{bands.label()} sub-{subject}") from None

    def integration(self, subject: str, key: IntegrationKey) -> Entry:
        try:
            return super().integration(subject, key)
        except NotCached as exc:
            raise NotCached(exc.stage, f"{key.label()} sub-{subject}") from None

    @property
    def writable(self) -> Study:
        """The same dataset and options on a writable cache (explicit computations)."""
        cache = self.cache.writable() if isinstance(self.cache, ReadOnlyCache) else self.cache
        return Study(self.dataset, cache, self.options, device=self.device)


def study_id(study: Study) -> str:
    """A string identifying (dataset folder, cache folder) — for memoisation keys."""
    return f"{study.dataset.root}|{study.cache.root}"


def _cache_root(cache_root=None) -> Path:
    return Cache(cache_root).root


def open_study(dataset: str, cache_root=None, *, demo_small: bool = False, options: Options | None = None) -> AppStudy:
    """Open a study on a read-only cache.

    Parameters
    ----------
    dataset : str
        ``"demo"`` (the simulated demo inside the cache folder, seed 0) or a dataset folder.
    cache_root : path, optional
        Default ``$ALIGNMENT_CACHE`` or ``./cache``.
    demo_small : bool
        The small demo (tests).

    Raises
    ------
    alignment.data.DatasetError
        Not a dataset folder. The demo must have been built (:func:`demo_ready`).
    """
    from alignment.data import load_dataset

    if dataset == "demo":
        return demo_study(cache_root, small=demo_small)
    path = os.path.expanduser(str(dataset).strip())
    if not path:
        from alignment.data import DatasetError

        raise DatasetError("no dataset folder given")
    ds = load_dataset(path)
    cache = ReadOnlyCache(cache_root)
    return AppStudy(ds, cache, options or cached_options(ds, cache) or Options(), device="cpu")


def cached_options(dataset, cache: Cache) -> Options | None:
    """The analysis options ``dataset``'s results in ``cache`` were computed with.

    A run config may set any options, and they are part of every result's cache key, so a
    dataset folder is read with the options found in the metadata of its encoding entries
    (the most frequent set; atoms, GLM, variance-partition and integration options likewise
    among entries with those). None when the cache holds no encoding result of the dataset.
    """
    from collections import Counter

    fps = {dataset.fingerprint(subjects=[s]) for s in dataset.subjects}
    enc: Counter = Counter()
    for info in _stage_entries(cache, "encoding"):
        p = _read_params(info.path)
        if p and p.get("bold") in fps:
            try:
                enc[(p["hrf"], tuple(float(a) for a in p["alphas"]), p["null"], int(p["n_null"]),
                     p["null_tail"], int(p["seed"]))] += 1
            except (KeyError, TypeError, ValueError):
                continue
    if not enc:
        return None
    hrf, alphas, null, n_null, null_tail, seed = enc.most_common(1)[0][0]
    found = {"hrf": hrf, "alphas": alphas, "null": null, "n_null": n_null, "null_tail": null_tail, "seed": seed}
    atoms: Counter = Counter()
    atom_keys: dict[tuple, set] = {}
    for info in _stage_entries(cache, "atoms"):
        p = _read_params(info.path)
        if p and p.get("hrf") == hrf and p.get("seed") == seed and "n_atoms" in p and "sparsity" in p:
            atoms[(p["n_atoms"], p["sparsity"])] += 1
            atom_keys.setdefault((p["n_atoms"], p["sparsity"]), set()).add(info.key)
    if atoms:
        (n_atoms, sparsity), _ = atoms.most_common(1)[0]
        found.update(n_atoms=int(n_atoms), sparsity=float(sparsity))
        modes = Counter(p.get("glm") for info in _stage_entries(cache, "glm")
                        if (p := _read_params(info.path)) and p.get("bold") in fps
                        and p.get("atoms") in atom_keys[(n_atoms, sparsity)])
        modes.pop(None, None)
        if modes:
            found["glm"] = modes.most_common(1)[0][0]
    for stage, name in (("variance", "banded_iter"), ("integration", "block_len"), ("integration", "fdr_q")):
        values = Counter(p.get(name) for info in _stage_entries(cache, stage)
                         if (p := _read_params(info.path)) and p.get("bold") in fps and p.get("hrf") == hrf
                         and [float(a) for a in p.get("alphas", [])] == list(alphas))
        values.pop(None, None)
        if values:
            found[name] = values.most_common(1)[0][0]
    return Options(**found)


def _stage_entries(cache: Cache, stage: str):
    return cache.entries(stage) if (cache.root / stage).is_dir() else []


def demo_study(cache_root=None, small: bool = False, seed: int = 0) -> AppStudy:
    """The demo's study (read-only cache); the dataset folder must exist."""
    from alignment.data import load_dataset
    from alignment.demo import demo_root

    cache = ReadOnlyCache(cache_root)
    root = demo_root(cache, seed=seed, small=small)
    return AppStudy(load_dataset(root), cache, demo_options(seed), device="cpu")


def demo_ready(cache_root=None, small: bool = False, seed: int = 0) -> bool:
    """Whether the demo dataset and every result of :func:`alignment.demo.demo_plans` exist.

    Checks existence only (no verification, no computation): a few ms per result.
    """
    from alignment.data import load_dataset
    from alignment.simulation import load_ground_truth
    from alignment.demo import INTEGRATION_BASELINES, demo_plans, demo_root
    from alignment.pipeline import STAGE_OF, plan_units

    cache = ProbeCache(cache_root)
    root = demo_root(cache, seed=seed, small=small)
    if not (root / "dataset.toml").is_file() or not (root / "ground_truth.json").is_file():
        return False
    try:
        ds = load_dataset(root)
        load_ground_truth(root)
        study = AppStudy(ds, cache, demo_options(seed), device="cpu")
        for plan in demo_plans():
            for analysis, target in plan_units(study, plan, baselines=INTEGRATION_BASELINES):
                for subject in ds.subjects:
                    getattr(study, STAGE_OF[analysis])(subject, target)
    except Exception:  # noqa: BLE001 - anything missing or unreadable: not ready
        return False
    return True


# ==========================================================================================
# what the cache holds
# ==========================================================================================
@dataclass(frozen=True, eq=False)
class Availability:
    """Results available for one dataset.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (model, branch, layer, kind, condition, subject, stage), stage in
        ``{"encoding", "glm", "variance", "integration"}`` (a variance partition's branch is
        its bands joined by "+").
    subjects : list of str
        The dataset's subjects.
    integration : dict
        ``(LayerKey, subject) → Baselines`` of the integration results.
    """

    table: Any
    subjects: list
    integration: dict = field(default_factory=dict)

    def baselines(self, key: LayerKey, subject: str) -> Baselines | None:
        """The baselines a VLM layer's integration result was computed against (any subject
        for the group)."""
        if subject == GROUP:
            found = [self.integration.get((key, s)) for s in self.subjects]
            return found[0] if found and all(b is not None for b in found) else None
        return self.integration.get((key, subject))

    def _sel(self, stage=None, subject=None, **eq):
        t = self.table
        if stage is not None:
            t = t[t.stage == stage]
        if subject == GROUP:  # results every subject has
            cols = ["model", "branch", "layer", "kind", "condition", "stage"]
            n = t.groupby(cols, sort=False).subject.transform("nunique") if not t.empty else t.subject
            t = t[n >= len(self.subjects)]
        elif subject is not None:
            t = t[t.subject == subject]
        for k, v in eq.items():
            if v is not None:
                t = t[t[k] == v]
        return t

    @staticmethod
    def _uniq(series) -> list:
        return list(dict.fromkeys(series.tolist()))

    def models(self, stage: str | None = "encoding", subject: str | None = None) -> list[str]:
        return self._uniq(self._sel(stage, subject).model)

    def branches(self, model: str, stage: str | None = "encoding", subject: str | None = None) -> list[str]:
        return self._uniq(self._sel(stage, subject, model=model).branch)

    def kinds(self, model: str, branch: str | None = None, stage: str | None = "encoding",
              subject: str | None = None) -> list[str]:
        return self._uniq(self._sel(stage, subject, model=model, branch=branch).kind)

    def conditions(self, model: str, branch: str | None = None, kind: str | None = None,
                   stage: str | None = "encoding", subject: str | None = None) -> list[str]:
        conds = self._uniq(self._sel(stage, subject, model=model, branch=branch, kind=kind).condition)
        order = ("image+text", "image", "text")
        return sorted(conds, key=lambda c: order.index(c) if c in order else 99)

    def layers(self, model: str, branch: str, kind: str | None = None, condition: str | None = None,
               stage: str | None = "encoding", subject: str | None = None) -> list[int]:
        t = self._sel(stage, subject, model=model, branch=branch, kind=kind, condition=condition)
        return sorted({int(x) for x in t.layer})

    def keys(self, stage: str | None = "encoding", **eq) -> list[LayerKey]:
        """Distinct LayerKeys (filtered by column equality, e.g. ``model=..., kind=...``)."""
        t = self._sel(stage, **eq)
        seen = dict.fromkeys(zip(t.model, t.branch, t.layer, t.kind, t.condition))
        return [LayerKey(m, b, int(lay), k, c) for m, b, lay, k, c in seen]

    def has(self, key: LayerKey, stage: str = "encoding", subject: str | None = None) -> bool:
        t = self._sel(stage, subject, model=key.model, branch=key.branch, kind=key.kind,
                      condition=key.condition)
        return bool((t.layer == key.layer).any())

    def series(self, stage: str = "encoding", condition: str | None = "image+text",
               subject: str | None = None) -> list[tuple]:
        """(model, branch, kind) triples with results under ``condition``."""
        t = self._sel(stage, subject, condition=condition)
        return list(dict.fromkeys(zip(t.model, t.branch, t.kind)))

    @property
    def empty(self) -> bool:
        return self.table.empty


def _avail_frame(rows: Iterable[tuple]):
    import pandas as pd

    cols = ["model", "branch", "layer", "kind", "condition", "subject", "stage"]
    df = pd.DataFrame(list(dict.fromkeys(rows)), columns=cols)
    if not df.empty:
        df["layer"] = df["layer"].astype(int)
    return df


def available(study: Study, demo: bool = False) -> Availability:
    """What the cache holds for ``study``'s dataset (no computation).

    For the demo (``demo``) the list comes from
    :func:`alignment.demo.demo_plans`, plus what the cache scan finds; for other datasets from
    the cache scan: the cache entries' metadata (``params``) of encoding and GLM entries whose
    BOLD fingerprint matches a subject of the dataset and whose options match
    ``study.options``.
    """
    subjects = list(study.dataset.subjects)
    if demo:
        from alignment.demo import INTEGRATION_BASELINES, demo_plans
        from alignment.pipeline import STAGE_OF, plan_units

        rows, integration = _scan_cache(study)
        for plan in demo_plans():
            for analysis, target in plan_units(study, plan, baselines=INTEGRATION_BASELINES):
                rows += [(*_avail_row(target), s, STAGE_OF[analysis]) for s in subjects]
                if isinstance(target, IntegrationKey):
                    integration.update({(target.vlm, s): target.baselines for s in subjects})
        return Availability(_avail_frame(rows), subjects, integration)
    rows, integration = _scan_cache(study)
    return Availability(_avail_frame(rows), subjects, integration)


def _avail_row(target) -> tuple:
    """(model, branch, layer, kind, condition) of a stage's target; a variance partition's
    branch is its bands joined by "+", an integration test's is the VLM layer's."""
    if isinstance(target, BandsKey):
        return target.model, "+".join(target.branches), target.layer, target.kind, target.condition
    if isinstance(target, IntegrationKey):
        target = target.vlm
    return target.model, target.branch, target.layer, target.kind, target.condition


def _read_params(path: Path) -> dict | None:
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    p = meta.get("params")
    return p if isinstance(p, dict) else None


def _scan_cache(study: Study) -> tuple[list[tuple], dict]:
    """(availability rows, {(VLM LayerKey, subject): Baselines}) of the results in the cache."""
    o = study.options
    cache = study.cache
    fps = {}
    for s in study.dataset.subjects:
        fps[study._bold_params(s)["bold"]] = s  # memoised by AppStudy
    rows = []
    integration = {}
    atoms_layer: dict[str, dict] = {}
    for info in _stage_entries(cache, "atoms"):
        p = _read_params(info.path)
        if p and p.get("n_atoms") == o.n_atoms and p.get("sparsity") == o.sparsity and p.get("seed") == o.seed \
                and p.get("hrf") == o.hrf and isinstance(p.get("layer"), dict):
            atoms_layer[info.key] = p["layer"]
    def same_alphas(p):
        return [float(a) for a in p.get("alphas", [])] == [float(a) for a in o.alphas]

    for stage in ("encoding", "glm", "variance", "integration"):
        for info in _stage_entries(cache, stage):
            p = _read_params(info.path)
            if not p or p.get("bold") not in fps:
                continue
            try:
                if stage == "encoding":
                    if (p.get("hrf") != o.hrf or p.get("null") != o.null or p.get("n_null") != o.n_null
                            or p.get("seed") != o.seed or p.get("null_tail") != o.null_tail or not same_alphas(p)):
                        continue
                    target = LayerKey(**p["layer"])
                elif stage == "glm":
                    if p.get("glm") != o.glm or p.get("atoms") not in atoms_layer:
                        continue
                    target = LayerKey(**atoms_layer[p["atoms"]])
                elif stage == "variance":
                    if (p.get("hrf") != o.hrf or p.get("banded_iter") != o.banded_iter or p.get("seed") != o.seed
                            or not same_alphas(p)):
                        continue
                    target = BandsKey(**{**p["bands"], "branches": tuple(p["bands"]["branches"])})
                else:
                    if (p.get("hrf") != o.hrf or p.get("block_len") != o.block_len or p.get("fdr_q") != o.fdr_q
                            or not same_alphas(p)):
                        continue
                    target = LayerKey(**p["vlm"])
                    integration[(target, fps[p["bold"]])] = Baselines(
                        p["image"]["model"], p["text"]["model"], int(p["image"]["layer"]), int(p["text"]["layer"]))
            except (KeyError, TypeError, ValueError):
                continue
            rows.append((*_avail_row(target), fps[p["bold"]], stage))
    return rows, integration


def subject_list(study: Study, subject: str) -> list[str]:
    """Subjects a view aggregates: ``[subject]``, or every subject for ``"group"``."""
    return list(study.dataset.subjects) if subject == GROUP else [subject]


# ==========================================================================================
# maps
# ==========================================================================================
@dataclass(frozen=True, eq=False)
class GroupMap:
    """Group-level encoding map.

    Attributes
    ----------
    r : ndarray, shape (V,)
        tanh of the mean Fisher z across subjects.
    t, p, q : ndarray, shape (V,)
        One-sample t across subjects (two-sided p; q BH-FDR over voxels).
    r_subjects : ndarray, shape (S, V)
    """

    r: np.ndarray
    t: np.ndarray
    p: np.ndarray
    q: np.ndarray
    r_subjects: np.ndarray


def encoding_maps(study: Study, subjects: Sequence[str], key: LayerKey) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject encoding r and q.

    Returns
    -------
    r, q : ndarray, shape (S, V) each
    """
    rs, qs = [], []
    for s in subjects:
        e = study.encoding(s, key)
        rs.append(np.asarray(e["scores"], np.float32))
        qs.append(np.asarray(e["q"], np.float32))
    return np.stack(rs), np.stack(qs)


def group_map(study: Study, key: LayerKey, subjects: Sequence[str] | None = None) -> GroupMap:
    """Group map of one layer: mean Fisher-z r back-transformed, one-sample t → BH-FDR.

    Parameters
    ----------
    subjects : list of str, optional
        Default all subjects (at least 2).
    """
    from alignment.stats import fdr_bh, fisher_z, group_ttest

    subjects = list(subjects or study.dataset.subjects)
    r, _ = encoding_maps(study, subjects, key)
    z = fisher_z(r)
    res = group_ttest(z)
    p = np.where(np.isfinite(res.p), res.p, 1.0)
    _, q = fdr_bh(p, study.options.fdr_q)
    return GroupMap(np.tanh(res.mean).astype(np.float32), np.asarray(res.t, np.float32),
                    p.astype(np.float32), np.asarray(q, np.float32), r)


def _r_q(study: Study, subject: str, key: LayerKey) -> tuple[np.ndarray, np.ndarray]:
    """(r, q) maps (V,) of one subject, or the group's (r back-transformed, group q)."""
    if subject == GROUP:
        g = group_map(study, key)
        return g.r, g.q
    e = study.encoding(subject, key)
    return np.asarray(e["scores"], np.float32), np.asarray(e["q"], np.float32)


@dataclass(frozen=True, eq=False)
class MapResult:
    """A per-voxel map ready to draw.

    Attributes
    ----------
    values : ndarray, shape (V,)
        NaN where nothing is shown.
    label : str
        Colour-bar title.
    cmap : str
    symmetric : bool
        Colour limits symmetric around 0.
    significant : ndarray of bool, shape (V,) or None
        Voxels passing the FDR threshold (for network summaries).
    r : ndarray, shape (V,) or None
        The underlying r map (network summaries of mean r).
    note : str
        Caption (what was computed, e.g. which layers).
    vmin, vmax : float or None
    """

    values: np.ndarray
    label: str
    cmap: str = "RdBu_r"
    symmetric: bool = True
    significant: np.ndarray | None = None
    r: np.ndarray | None = None
    note: str = ""
    vmin: float | None = None
    vmax: float | None = None


def best_layer_map(study: Study, subject: str, key: LayerKey, layers: Sequence[int], fdr_q: float = 0.05
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer with the highest r per voxel among ``layers`` of ``key``'s model/branch/kind/condition.

    Returns
    -------
    best : ndarray, shape (V,)
        Layer index (float; NaN where that layer's r is not significant, q >= fdr_q).
    r_best : ndarray, shape (V,)
    significant : ndarray of bool, shape (V,)
    """
    layers = sorted(int(x) for x in layers)
    if not layers:
        raise ValueError(f"no layers of {key.model} {key.branch} available")
    rs, qs = zip(*(_r_q(study, subject, LayerKey(key.model, key.branch, lay, key.kind, key.condition))
                   for lay in layers))
    r = np.stack(rs)
    q = np.stack(qs)
    idx = np.nanargmax(np.where(np.isfinite(r), r, -np.inf), axis=0)
    cols = np.arange(r.shape[1])
    r_best = r[idx, cols]
    sig = q[idx, cols] < fdr_q
    best = np.asarray(layers, np.float32)[idx]
    return np.where(sig, best, np.nan).astype(np.float32), r_best, sig


def _nearest(layers: Sequence[int], layer: int) -> int:
    return min(layers, key=lambda x: (abs(x - layer), x))


def metric_map(study: Study, subject: str, key: LayerKey, metric: str = "r", fdr_q: float = 0.05,
               avail: Availability | None = None) -> MapResult:
    """The map of one metric for a view.

    Metrics (:data:`MAP_METRICS`):

    - ``"r"``: encoding r (group: tanh of the mean Fisher z);
    - ``"significant r"``: r where q < ``fdr_q`` (group: q of the one-sample t across subjects);
    - ``"-log10 q"``;
    - ``"best layer"``: the layer (of ``key``'s model, branch, kind, condition; all layers in the
      cache) with the highest r, where that r is significant;
    - ``"SI"``: modality specialization index of a dual encoder, (r_img − r_txt) /
      (|r_img| + |r_txt|), image branch vs text branch at ``key.layer`` (the nearest available
      layer for a branch that lacks it), shown where either is significant;
    - ``"cross-modal gain"``: fusion layer r_image+text − max(r_image, r_text) (conditions).

    Parameters
    ----------
    subject : str
        Subject id or ``"group"``.
    avail : Availability, optional
        Needed for "best layer", "SI" (which layers exist); default :func:`available` from the
        cache scan.

    Returns
    -------
    MapResult
        ``values`` (V,) etc.
    """
    if metric in ("r", "significant r", "-log10 q"):
        r, q = _r_q(study, subject, key)
        sig = q < fdr_q
        if metric == "r":
            return MapResult(r, "r", significant=sig, r=r)
        if metric == "significant r":
            return MapResult(np.where(sig, r, np.nan).astype(np.float32), f"r (q<{fdr_q:g})",
                             significant=sig, r=r, note=f"{int(sig.sum())} voxels with q < {fdr_q:g}")
        with np.errstate(divide="ignore"):
            v = -np.log10(np.clip(q.astype(np.float64), 1e-300, 1))
        return MapResult(v.astype(np.float32), "-log10 q", cmap="viridis", symmetric=False,
                         significant=sig, r=r, vmin=0.0)
    avail = avail or available(study)
    if metric == "best layer":
        layers = avail.layers(key.model, key.branch, key.kind, key.condition)
        best, r_best, sig = best_layer_map(study, subject, key, layers, fdr_q)
        return MapResult(best, "best layer", cmap="viridis", symmetric=False, significant=sig, r=r_best,
                         note=f"layer with the highest r among layers {layers} (significant voxels only)",
                         vmin=float(min(layers)), vmax=float(max(layers)))
    if metric == "SI":
        branches = avail.branches(key.model)
        if not {"image", "text"} <= set(branches):
            raise ValueError(f"SI needs a dual encoder with image and text branches; {key.model} has {branches}")
        chosen = {}
        for b in ("image", "text"):
            layers = avail.layers(key.model, b, key.kind, key.condition)
            if not layers:
                raise ValueError(f"no {b}-branch results of {key.model} [{key.kind}, {key.condition}]")
            chosen[b] = _nearest(layers, key.layer)
        r_i, q_i = _r_q(study, subject, LayerKey(key.model, "image", chosen["image"], key.kind, key.condition))
        r_t, q_t = _r_q(study, subject, LayerKey(key.model, "text", chosen["text"], key.kind, key.condition))
        from alignment.analyses.modality import specialization_index

        sig = (q_i < fdr_q) | (q_t < fdr_q)
        si = specialization_index(r_i, r_t)
        return MapResult(np.where(sig, si, np.nan).astype(np.float32), "SI (image − text)", cmap="PuOr",
                         significant=sig, r=np.maximum(r_i, r_t),
                         note=f"image layer {chosen['image']} vs text layer {chosen['text']}; voxels significant "
                              f"for either branch (q < {fdr_q:g})", vmin=-1.0, vmax=1.0)
    if metric == "cross-modal gain":
        conds = avail.conditions(key.model, key.branch, key.kind)
        if not {"image+text", "image", "text"} <= set(conds):
            raise ValueError(f"cross-modal gain needs the image+text, image and text conditions of "
                             f"{key.model} {key.branch} [{key.kind}]; the cache has {conds}")
        f = fusion_modality(study, subject, key, fdr_q)
        return MapResult(np.where(f["sig_any"], f["gain"], np.nan).astype(np.float32), "cross-modal gain",
                         significant=f["sig_both"], r=f["r_both"],
                         note=f"r(image+text) − max(r(image), r(text)); voxels significant in any condition "
                              f"(q < {fdr_q:g})")
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(MAP_METRICS)}")


def network_table(study: Study, subject: str, key: LayerKey, metric: str = "r", fdr_q: float = 0.05,
                  atlas=None, avail: Availability | None = None):
    """Per-network summary of a view (:func:`alignment.networks.network_summary`).

    Returns
    -------
    pandas.DataFrame
        One row per network then per group: ``level``, ``id``, ``name``, ``group``, ``color``,
        ``n_voxels``, ``n_significant``, ``frac_significant``, ``mean_r``,
        ``mean_r_significant``, ``share_of_significant``; plus ``mean <metric>`` (over the
        voxels shown) for metrics other than r.
    """
    from alignment.networks import load_atlas, network_summary

    atlas = atlas if atlas is not None else load_atlas("ca")
    m = metric_map(study, subject, key, metric, fdr_q, avail)
    table = network_summary(m.r if m.r is not None else m.values, m.significant, atlas)
    if metric not in ("r", "significant r"):
        extra = network_summary(m.values, None, atlas)
        table[f"mean {metric}"] = extra["mean_r"].to_numpy()
    return table


# ==========================================================================================
# layer curves
# ==========================================================================================
def layer_curves(study: Study, series: Sequence[tuple], avail: Availability, atlas, subjects: Sequence[str],
                 condition: str = "image+text", fdr_q: float = 0.05, level: str = "group"):
    """Mean encoding r per network per layer, one row per subject (for a CI across subjects).

    Parameters
    ----------
    series : sequence of (model, branch, kind)
        Curves to compute (every available layer of each).
    atlas : alignment.networks.Atlas
    level : {"group", "network"}
        The paper's four groups (+ other), or every network of the atlas.

    Returns
    -------
    pandas.DataFrame
        Columns ``series`` ("model · branch · kind"), ``model``, ``branch``, ``kind``, ``layer``,
        ``depth`` (layer / last available layer, 0..1), ``network``, ``subject``, ``mean_r``,
        ``frac_significant``.
    """
    import pandas as pd

    from alignment.networks import network_summary

    rows = []
    for model, branch, kind in series:
        layers = avail.layers(model, branch, kind, condition)
        top = max(layers) if layers else 1
        for lay in layers:
            key = LayerKey(model, branch, lay, kind, condition)
            r, q = encoding_maps(study, subjects, key)
            for s, rs, qs in zip(subjects, r, q):
                tab = network_summary(rs, qs < fdr_q, atlas)
                tab = tab[tab.level == level]
                for name, mr, fs in zip(tab.name, tab.mean_r, tab.frac_significant):
                    rows.append(dict(series=f"{_short(model)} · {branch} · {kind}", model=model, branch=branch,
                                     kind=kind, layer=int(lay), depth=lay / top if top else 0.0, network=name,
                                     subject=s, mean_r=float(mr), frac_significant=float(fs)))
    return pd.DataFrame(rows)


def _short(model: str) -> str:
    return model.replace("random:", "")


# ==========================================================================================
# polarity
# ==========================================================================================
def polarity_tables(study: Study, model: str, branch: str, kind: str, layers: Sequence[int], atlas,
                    subjects: Sequence[str], condition: str = "image+text", fdr_q: float = 0.05,
                    unit: str = "bn", normalize: bool = False, n_boot: int = 2000):
    """Positive / negative BN counts per layer and network, and the mirrored-trend index.

    Per subject and layer: GLM t and q (K, V) → :func:`alignment.analyses.polarity_counts`.

    Returns
    -------
    curves : pandas.DataFrame
        ``layer``, ``level``, ``name``, ``subject``, ``positive``, ``negative``, ``n_voxels``
        (one row per subject; counts or fractions).
    trends : pandas.DataFrame or None
        :func:`alignment.analyses.mirrored_trends` of the subject-mean curves (needs >= 4
        layers; None otherwise): ``level``, ``name``, ``r``, ``ci_low``, ``ci_high``, ``p``,
        ``n_layers``.
    """
    import pandas as pd

    from alignment.analyses.polarity import mirrored_trends, polarity_counts, polarity_curves

    frames = []
    for s in subjects:
        per_layer = {}
        for lay in layers:
            glm = study.glm(s, LayerKey(model, branch, int(lay), kind, condition))
            t = np.asarray(glm["t"])
            per_layer[int(lay)] = polarity_counts(t, np.asarray(glm["q"]) < fdr_q, atlas)
        frames.append(polarity_curves(per_layer, unit=unit, normalize=normalize).assign(subject=s))
    curves = pd.concat(frames, ignore_index=True)
    trends = None
    if len(layers) >= 4:
        mean = curves.groupby(["layer", "level", "name"], sort=False, as_index=False)[["positive", "negative"]].mean()
        mean = mean[(mean.groupby(["level", "name"]).positive.transform("std") > 0)
                    | (mean.groupby(["level", "name"]).negative.transform("std") > 0)]
        if not mean.empty:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trends = mirrored_trends(mean, n_boot=n_boot)
    return curves, trends


# ==========================================================================================
# modality
# ==========================================================================================
def dual_modality(study: Study, subject: str, model: str, layer_image: int, layer_text: int,
                  kind: str = "attn", condition: str = "image+text", fdr_q: float = 0.05, atlas=None) -> dict:
    """Modality specialization of a dual encoder: image branch vs text branch.

    Returns
    -------
    dict
        ``r_image``, ``r_text``, ``si`` (V,) (NaN where neither branch is significant),
        ``labels`` (V,) str (:func:`alignment.analyses.modality_labels`), ``summary``
        (DataFrame per network, with an atlas).
    """
    from alignment.analyses.modality import modality_labels, modality_summary, specialization_index

    r_i, q_i = _r_q(study, subject, LayerKey(model, "image", int(layer_image), kind, condition))
    r_t, q_t = _r_q(study, subject, LayerKey(model, "text", int(layer_text), kind, condition))
    sig_i, sig_t = q_i < fdr_q, q_t < fdr_q
    si = specialization_index(r_i, r_t)
    labels = modality_labels(sig_i, sig_t, r_image=r_i, r_text=r_t)
    out = dict(r_image=r_i, r_text=r_t, sig_image=sig_i, sig_text=sig_t,
               si=np.where(sig_i | sig_t, si, np.nan).astype(np.float32), labels=labels)
    if atlas is not None:
        out["summary"] = modality_summary(labels, atlas)
    return out


def fusion_modality(study: Study, subject: str, key: LayerKey, fdr_q: float = 0.05, atlas=None) -> dict:
    """Cross-modal gain and unified BNs of a fusion layer (conditions image+text / image / text).

    Returns
    -------
    dict
        ``r_both``, ``r_image``, ``r_text``, ``gain`` (V,); ``sig_both``, ``sig_image``,
        ``sig_text``, ``sig_any``, ``unified`` (V,) bool; ``share`` (float); ``per_network``
        (DataFrame, with an atlas).
    """
    from alignment.analyses.modality import cross_modal_gain, unified_share

    r, q = {}, {}
    for c in ("image+text", "image", "text"):
        r[c], q[c] = _r_q(study, subject, LayerKey(key.model, key.branch, key.layer, key.kind, c))
    sig = {c: q[c] < fdr_q for c in r}
    gain = cross_modal_gain(r["image+text"], r["image"], r["text"])
    u = unified_share(sig["image+text"], sig["image"], sig["text"], atlas)
    return dict(r_both=r["image+text"], r_image=r["image"], r_text=r["text"], gain=gain.astype(np.float32),
                sig_both=sig["image+text"], sig_image=sig["image"], sig_text=sig["text"],
                sig_any=sig["image+text"] | sig["image"] | sig["text"], unified=u.mask, share=u.share,
                n_unified=u.n_unified, n_significant_both=u.n_significant_both, per_network=u.per_network)


def variance_maps(study: Study, subject: str, bands: BandsKey, fdr_q: float = 0.05, atlas=None) -> dict:
    """Unique and shared variance of a model's branches at one depth (banded ridge).

    Returns
    -------
    dict
        ``r2`` (V,) joint held-out R², ``unique`` {branch: (V,)}, ``shared`` (V,) — means over
        subjects for the group — ``predicted`` (V,) bool: some branch's encoding map is
        significant (q < ``fdr_q``; where no encoding map is cached, joint R² > 0), and with an
        atlas ``per_network`` (:func:`alignment.networks.network_summary` of the joint R² with
        the predicted voxels as significant, plus one column per part: its mean over the
        predicted voxels, per network and group; over all voxels noise would dominate).
    """
    entries = [study.variance(s, bands) for s in subject_list(study, subject)]
    r2 = np.mean([np.asarray(e["r2"]) for e in entries], axis=0).astype(np.float32)
    unique = np.mean([np.asarray(e["unique"]) for e in entries], axis=0).astype(np.float32)  # (B, V)
    shared = np.mean([np.asarray(e["shared"]) for e in entries], axis=0).astype(np.float32)
    try:
        predicted = np.any([_r_q(study, subject, bands.band(b))[1] < fdr_q for b in bands.branches], axis=0)
    except NotCached:
        predicted = r2 > 0
    out = dict(r2=r2, unique=dict(zip(bands.branches, unique)), shared=shared, predicted=predicted)
    if atlas is not None:
        parts = {"joint R²": r2, **{f"unique {b}": u for b, u in zip(bands.branches, unique)}, "shared": shared}
        from alignment.networks import network_summary

        out["per_network"] = per = network_summary(r2, predicted, atlas)
        for name, values in parts.items():
            per[name] = network_summary(values, predicted, atlas).mean_r_significant.to_numpy()
    return out


def integration_maps(study: Study, subject: str, key: LayerKey, baselines: Baselines, fdr_q: float = 0.05,
                     atlas=None) -> dict:
    """Integration sites of a VLM layer: where it beats both unimodal baselines.

    Returns
    -------
    dict
        ``diff`` (V,) r_vlm − max(r_image, r_text), ``r_vlm``, ``r_image``, ``r_text``,
        ``q`` (V,) (one subject; the largest over subjects for the group), ``sites`` (V,)
        share of subjects where the voxel is a site (0/1 for one subject), ``baselines``
        {subject: {"image": LayerKey, "text": LayerKey}} the layers compared, ``sig_vlm`` (V,)
        bool: the VLM layer's own encoding map is significant (q < ``fdr_q``), and with an atlas
        ``per_network`` (:func:`alignment.networks.network_summary` of ``diff`` over those
        voxels, plus ``mean diff (VLM significant)`` and ``share of sites`` per network and
        group). Over all voxels the mean diff is negative by construction (the larger of
        two noisy baseline r's), hence the restriction.
    """
    subjects = subject_list(study, subject)
    entries = [study.integration(s, IntegrationKey(key, baselines)) for s in subjects]

    def mean(name):
        return np.mean([np.asarray(e[name], np.float32) for e in entries], axis=0)

    out = dict(diff=mean("diff"), r_vlm=mean("r_vlm"), r_image=mean("r_image"), r_text=mean("r_text"),
               q=np.max([np.asarray(e["q"], np.float32) for e in entries], axis=0), sites=mean("sites"),
               baselines={s: {k: LayerKey(**v) for k, v in e.meta.get("baselines", {}).items()}
                          for s, e in zip(subjects, entries)})
    out["sig_vlm"] = _r_q(study, subject, key)[1] < fdr_q
    if atlas is not None:
        from alignment.networks import network_summary

        out["per_network"] = per = network_summary(out["diff"], out["sig_vlm"], atlas)
        per["mean diff (VLM significant)"] = per.mean_r_significant
        per["share of sites"] = network_summary(out["sites"], None, atlas).mean_r.to_numpy()
    return out


# ==========================================================================================
# redundancy
# ==========================================================================================
def redundancy(study: Study, subject: str, key: LayerKey, fdr_q: float = 0.05) -> dict:
    """Redundancy of one layer's neuron-level mapping.

    Parameters
    ----------
    subject : str
        Subject id (a group view uses the first subject... call per subject and average).

    Returns
    -------
    dict
        ``links_per_voxel`` (V,) atoms significant per voxel; ``ans_per_voxel`` (V,);
        ``links_per_an`` (N,) BNs reached per AN; ``dice`` (K, K) overlap of the atoms' BN
        maps; ``atom_sizes`` (K,) significant BNs per atom.
    """
    from alignment.analyses.redundancy import ans_per_voxel, dice_overlap, links_per_an, links_per_voxel

    glm = study.glm(subject, key)
    sig = np.asarray(glm["q"]) < fdr_q
    codes = np.asarray(study.atoms(key)["codes"])
    return dict(links_per_voxel=links_per_voxel(sig), ans_per_voxel=ans_per_voxel(codes, sig),
                links_per_an=links_per_an(codes, sig), dice=dice_overlap(sig), atom_sizes=sig.sum(1))


LESION_VERSION = 1


def lesion(study: Study, subject: str, key: LayerKey, fdr_q: float = 0.05, *, compute: bool = False,
           fractions: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9), n_repeats: int = 3,
           max_voxels: int = 2000, progress=None) -> dict | None:
    """Lesion curves of one layer: encoding r as random vs top-ranked ANs are removed.

    Evaluated on the voxels significant for the full layer (q < ``fdr_q``; at most
    ``max_voxels``, the best by r). ANs are ranked by their number of linked BNs
    (:func:`alignment.analyses.links_per_an`). Cached as stage ``lesion``.

    Parameters
    ----------
    compute : bool
        False: return the cached result or None. True: compute when absent (ridge fits:
        ``len(fractions) × (n_repeats + 1)`` fits).

    Returns
    -------
    dict or None
        ``fractions`` (F,), ``random_mean`` (F,), ``random_sd`` (F,), ``ranked`` (F,),
        ``n_voxels`` (int).
    """
    enc = study.encoding(subject, key)
    glm = study.glm(subject, key)
    params = {"encoding": enc.key, "glm": glm.key, "fdr_q": float(fdr_q), "fractions": [float(f) for f in fractions],
              "n_repeats": int(n_repeats), "max_voxels": int(max_voxels), "seed": study.options.seed}
    cache = study.cache.writable() if isinstance(study.cache, ReadOnlyCache) else study.cache
    k = cache.key("lesion", params, LESION_VERSION)
    entry = cache.get("lesion", k)
    if entry is None and not compute:
        return None

    def run():
        from alignment.analyses.redundancy import lesion_curve, links_per_an

        r = np.asarray(enc["scores"])
        sig = np.asarray(enc["q"]) < fdr_q
        vox = np.flatnonzero(sig)
        if vox.size == 0:
            vox = np.argsort(-r)[:50]
        vox = vox[np.argsort(-r[vox])][:max_voxels]
        X = study.design(key)
        Y = study.bold(subject)[:, vox]
        ranking = links_per_an(np.asarray(study.atoms(key)["codes"]), np.asarray(glm["q"]) < fdr_q).astype(float)
        alphas = np.asarray(study.options.alphas)
        rnd = lesion_curve(X, Y, study.runs, "random", fractions, seed=study.options.seed, n_repeats=n_repeats,
                           fit_kwargs={"alphas": alphas})
        rk = lesion_curve(X, Y, study.runs, "ranked", fractions, ranking=ranking, fit_kwargs={"alphas": alphas})
        return ({"fractions": np.asarray(fractions, np.float64), "random_mean": rnd.mean_r, "random_sd": rnd.sd_r,
                 "ranked": rk.mean_r, "n_voxels": np.asarray(vox.size)},
                {"description": f"lesion {key.label()} sub-{subject}"})

    if entry is None:
        entry = cache.get_or_compute("lesion", params, run, version=LESION_VERSION)
    out = {k2: np.asarray(entry[k2]) for k2 in ("fractions", "random_mean", "random_sd", "ranked")}
    out["n_voxels"] = int(np.asarray(entry["n_voxels"]))
    return out


# ==========================================================================================
# compare
# ==========================================================================================
def compare_maps(study: Study, a: tuple, b: tuple, metric: str = "r", fdr_q: float = 0.05,
                 avail: Availability | None = None) -> tuple[MapResult, MapResult, np.ndarray]:
    """Two views' maps and their difference.

    Parameters
    ----------
    a, b : (subject, LayerKey)
        The two views.
    metric : str
        "r", "significant r" or "-log10 q" (see :func:`metric_map`).

    Returns
    -------
    map_a, map_b : MapResult
    diff : ndarray, shape (V,)
        ``map_a.values − map_b.values`` (NaN where either is NaN; for "significant r" the
        difference of r where either is significant).
    """
    ma = metric_map(study, a[0], a[1], metric, fdr_q, avail)
    mb = metric_map(study, b[0], b[1], metric, fdr_q, avail)
    if metric == "significant r" and ma.r is not None and mb.r is not None:
        either = ma.significant | mb.significant
        diff = np.where(either, ma.r - mb.r, np.nan)
    else:
        diff = ma.values.astype(np.float64) - mb.values.astype(np.float64)
    return ma, mb, diff.astype(np.float32)
