"""Summaries the app draws: maps, layer curves, polarity, modality, redundancy, comparisons.

Library code (no Streamlit). Every function reads cached pipeline results through a
:class:`~alignment.pipeline.Study`; the app opens its studies with :func:`open_study`,
*read-only*: a result that is not in the cache raises :class:`NotCached` instead of being
computed (computations are launched explicitly, from the Compute page or the CLI, through
:func:`alignment.plan.compute`). :func:`available` lists what the cache holds for a dataset
(from :mod:`alignment.catalog`), so views only offer what exists.

Shapes: V voxels (91282 grayordinates for fsLR32k), S subjects, K atoms, N ANs of a layer,
L layers.

A *subject* argument is a subject id (``"01"``) or ``"group"`` (all subjects of the dataset:
per-subject maps, Fisher z, one-sample t test across subjects, BH-FDR over voxels).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from alignment.cache import Cache
from alignment.catalog import Catalog
from alignment.conventions import GROUP, MAP_METRICS, nearest_layer, subjects_of
from alignment.demo import CONCEPT_DEMO, demo_options  # the options the demo is computed (and read) with
from alignment.keys import LesionKey
from alignment.pipeline import Baselines, BandsKey, IntegrationKey, LayerKey, NotCached, Options, Study

__all__ = [
    "Availability",
    "NotCached",
    "MapResult",
    "GroupMap",
    "open_study",
    "cached_options",
    "demo_study",
    "demo_options",
    "demo_ready",
    "available",
    "encoding_maps",
    "group_map",
    "metric_map",
    "encoding_notes",
    "best_layer_map",
    "opening_view",
    "network_table",
    "layer_curves",
    "polarity_tables",
    "polarity_seeds",
    "polarity_stability",
    "dual_modality",
    "fusion_modality",
    "variance_maps",
    "an_group_map",
    "integration_group",
    "integration_maps",
    "redundancy",
    "redundancy_across_subjects",
    "lesion",
    "compare_maps",
    "study_id",
]


# ==========================================================================================
# read-only access to the cache
# ==========================================================================================
def study_id(study: Study) -> str:
    """A string identifying (dataset folder, cache folder) — for memoisation keys."""
    return f"{study.dataset.root}|{study.cache.root}"


def _cache_root(cache_root=None) -> Path:
    return Cache(cache_root).root


def open_study(dataset: str, cache_root=None, *, demo_small: bool = False, options: Options | None = None) -> Study:
    """Open a read-only study: a missing result raises :class:`NotCached` unless asked to compute.

    Parameters
    ----------
    dataset : str
        ``"demo"`` (the simulated demo inside the cache folder, seed 0), ``"demo-concepts"`` (its
        concept demo, :data:`alignment.demo.CONCEPT_DEMO`) or a dataset folder.
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
    if dataset == CONCEPT_DEMO:
        from alignment.data import DatasetError
        from alignment.demo import concept_demo_study

        if not concept_demo_built(cache_root, demo_small):
            raise DatasetError("the concept demo is not built yet: `python -m alignment demo` builds it after the "
                               "movie demo's analyses (so does the app's background build)")
        return concept_demo_study(cache_root, small=demo_small, read_only=True)
    path = os.path.expanduser(str(dataset).strip())
    if not path:
        from alignment.data import DatasetError

        raise DatasetError("no dataset folder given")
    ds = load_dataset(path)
    cache = Cache(cache_root)
    return Study(ds, cache, options or cached_options(ds, cache) or Options(), device="cpu", read_only=True)


def cached_options(dataset, cache: Cache) -> Options | None:
    """The analysis options ``dataset``'s results in ``cache`` were computed with.

    A run config may set any options, and they are part of every result's cache key, so a
    dataset folder is read with the options its results were computed with
    (:meth:`alignment.catalog.Catalog.options`). None when the cache holds no encoding result
    of the dataset.
    """
    study = Study(dataset, cache)
    return Catalog(cache).options(_fingerprints(study))


def _fingerprints(study: Study) -> dict[str, str]:
    """BOLD fingerprint → subject id, for every subject of the study's dataset."""
    return {study.bold_params(s)["bold"]: s for s in study.dataset.subjects}


def demo_study(cache_root=None, small: bool = False, seed: int = 0) -> Study:
    """The demo's read-only study; the dataset folder must exist."""
    from alignment.data import load_dataset
    from alignment.demo import demo_root

    cache = Cache(cache_root)
    root = demo_root(cache, seed=seed, small=small)
    return Study(load_dataset(root), cache, demo_options(seed), device="cpu", read_only=True)


def concept_demo_built(cache_root=None, small: bool = False, seed: int = 0) -> bool:
    """Whether the concept demo's dataset exists (its results may still be computing)."""
    from alignment.data import GROUND_TRUTH_FILE
    from alignment.demo import concept_demo_root

    return (concept_demo_root(Cache(cache_root), seed, small=small) / GROUND_TRUTH_FILE).is_file()


def demo_ready(cache_root=None, small: bool = False, seed: int = 0) -> bool:
    """Whether the demo dataset and every result of :func:`alignment.demo.demo_plans` exist.

    Checks existence only (no verification, no computation): a few ms per result.
    """
    from alignment.data import GROUND_TRUTH_FILE
    from alignment.simulation import load_ground_truth
    from alignment.demo import INTEGRATION_BASELINES, demo_plans, demo_root
    from alignment.plan import plan_units

    root = demo_root(Cache(cache_root), seed=seed, small=small)
    if not (root / "dataset.toml").is_file() or not (root / GROUND_TRUTH_FILE).is_file():
        return False
    try:
        study = demo_study(cache_root, small=small, seed=seed)
        load_ground_truth(root)
        return all(study.has(stage, target, subject)
                   for plan in demo_plans()
                   for stage, target in plan_units(study, plan, baselines=INTEGRATION_BASELINES)
                   for subject in study.dataset.subjects)
    except Exception:  # noqa: BLE001 - anything missing or unreadable: not ready
        return False


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


#: the stages whose results the app's views offer
VIEW_STAGES = ("encoding", "glm", "variance", "integration")


def available(study: Study, demo: bool = False) -> Availability:
    """What the cache holds for ``study``'s dataset (no computation).

    From the catalog (:class:`alignment.catalog.Catalog`): results of the dataset's subjects
    computed with ``study.options``. For the demo (``demo``) the units of
    :func:`alignment.demo.demo_plans` are listed as well.
    """
    subjects = list(study.dataset.subjects)
    rows, integration, planned = [], {}, {}
    if demo:  # first: the demo plan's order is the order of the models offered
        from alignment.demo import INTEGRATION_BASELINES, demo_plans
        from alignment.plan import plan_units

        for plan in demo_plans():
            try:
                units = plan_units(study, plan, baselines=INTEGRATION_BASELINES)
            except NotCached:  # a demo still computing: the model's layers are not extracted yet
                continue
            for stage, target in units:
                rows += [(*_avail_row(target), s, stage) for s in subjects]
                if isinstance(target, IntegrationKey):
                    planned.update({(target.vlm, s): target.baselines for s in subjects})
    for record in Catalog(study.cache, VIEW_STAGES).of_subjects(_fingerprints(study), options=study.options):
        target = record.target
        if target is None:
            continue
        if isinstance(target, IntegrationKey):  # the baseline layers compared
            chosen = record.meta.get("baselines") or record.meta.get("params", {})
            try:
                target = IntegrationKey(target.vlm, Baselines(
                    target.baselines.image, target.baselines.text, int(chosen["image"]["layer"]),
                    int(chosen["text"]["layer"])))
            except (KeyError, TypeError, ValueError):
                continue
            integration[(target.vlm, record.subject)] = target.baselines
        rows.append((*_avail_row(target), record.subject, record.stage))
    integration.update(planned)  # the demo's units are keyed by the plan's baselines
    return Availability(_avail_frame(rows), subjects, integration)


def _avail_row(target) -> tuple:
    """(model, branch, layer, kind, condition) of a stage's target; a variance partition's
    branch is its bands joined by "+", an integration test's is the VLM layer's."""
    if isinstance(target, BandsKey):
        return target.model, "+".join(target.branches), target.layer, target.kind, target.condition
    if isinstance(target, IntegrationKey):
        target = target.vlm
    return target.model, target.branch, target.layer, target.kind, target.condition




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
        e = study.get("encoding", key, s)
        rs.append(np.asarray(e["scores"], np.float32))
        qs.append(np.asarray(e["q"], np.float32))
    return np.stack(rs), np.stack(qs)


def encoding_r(study: Study, subject: str, key: LayerKey) -> tuple[np.ndarray, np.ndarray | None]:
    """One subject's encoding r (V,) and q (V,), or r and None while only the map's fit is cached
    (the ``encoding_fit`` stage: the same r; the permutation null still computing). NotCached
    when neither is."""
    try:
        e = study.get("encoding", key, subject)
    except NotCached:
        return np.asarray(study.get("encoding_fit", key, subject)["scores"], np.float32), None
    return np.asarray(e["scores"], np.float32), np.asarray(e["q"], np.float32)


def group_map(study: Study, key: LayerKey, subjects: Sequence[str] | None = None) -> GroupMap:
    """Group map of one layer: mean Fisher-z r back-transformed, one-sample t → BH-FDR.

    Parameters
    ----------
    subjects : list of str, optional
        Default all subjects (at least 2).
    """
    from alignment.stats import fdr_bh, fisher_z, group_ttest

    subjects = list(subjects or study.dataset.subjects)
    r = np.stack([encoding_r(study, s, key)[0] for s in subjects])  # the group test needs no subject's null
    z = fisher_z(r)
    res = group_ttest(z)
    p = np.where(np.isfinite(res.p), res.p, 1.0)
    _, q = fdr_bh(p, study.options.fdr_q)
    return GroupMap(np.tanh(res.mean).astype(np.float32), np.asarray(res.t, np.float32),
                    p.astype(np.float32), np.asarray(q, np.float32), r)


def _median(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def _r_q(study: Study, subject: str, key: LayerKey) -> tuple[np.ndarray, np.ndarray | None]:
    """(r, q) maps (V,) of one subject (q None while its null computes: :func:`encoding_r`), or
    the group's (r back-transformed, group q)."""
    if subject == GROUP:
        g = group_map(study, key)
        return g.r, g.q
    return encoding_r(study, subject, key)


def _with_q(study: Study, subject: str, key: LayerKey) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_r_q` for what needs significance: NotCached until the subject's null is."""
    r, q = _r_q(study, subject, key)
    if q is None:
        raise NotCached(f"encoding {key.label()} sub-{subject}: significance still computing")
    return r, q


def encoding_notes(study: Study, subject: str, key: LayerKey) -> list[str]:
    """What the ``encoding`` stage warned about for the subjects of a view (runs too short for
    a calibrated null; masked voxels), each line once with the subjects it concerns. Cached
    results only; a subject without one adds nothing."""
    by_text: dict[str, list[str]] = {}
    for sub in subjects_of(study, subject):
        try:
            entry = study.get("encoding", key, sub, compute=False)
        except NotCached:
            continue
        for note in entry.meta.get("warnings") or []:
            by_text.setdefault(note, []).append(f"sub-{sub}")
    return [f"{', '.join(subs)}: {note}" for note, subs in by_text.items()]


#: Noise ceilings below this are not divided by (r / ceiling would amplify noise without bound).
CEILING_FLOOR = 0.1


def ceiling_map(study: Study, subject: str, compute: bool = True) -> tuple[np.ndarray, str]:
    """Noise ceiling (V,) of one subject (the ``ceiling`` stage: expected r of a perfect model on
    single-presentation data) or, for the group, the mean over subjects; with a one-line note
    (the stage's warning when the data have no repeats: then the map is all NaN).

    ``compute``: compute (and cache) a missing ceiling -- seconds per subject -- even in a
    read-only study; False raises :class:`NotCached`."""
    from alignment.stages.ceiling import CEILING_TARGET

    maps, notes = [], []
    for sub in subjects_of(study, subject):
        e = study.get("ceiling", CEILING_TARGET, sub, compute=compute)
        maps.append(np.asarray(e["ceiling"], np.float64))
        notes += e.meta.get("warnings") or []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no repeats: all NaN
        ceiling = np.nanmean(maps, axis=0) if len(maps) > 1 else maps[0]
    return ceiling.astype(np.float32), (notes[0] if notes else "")


def r_over_ceiling(r, ceiling) -> np.ndarray:
    """r / ceiling (V,), NaN where the ceiling is below :data:`CEILING_FLOOR` or unknown."""
    r, c = np.asarray(r, np.float64), np.asarray(ceiling, np.float64)
    ok = np.isfinite(c) & (c >= CEILING_FLOOR)
    out = np.full(r.shape, np.nan)
    out[ok] = r[ok] / c[ok]
    return out.astype(np.float32)


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
    """Layer with the highest r per voxel among ``layers`` of ``key``'s model/branch/kind/condition,
    where some of these layers predicts the voxel.

    Significance is one family over the layers: each voxel's Simes p over its layers' encoding p
    (:func:`alignment.stats.simes`), then BH over voxels at ``fdr_q``; so the map's voxels are
    declared with a false discovery rate of ``fdr_q`` for "some layer predicts this voxel". (A
    voxel whose best layer's own map is significant would not be: the union of the layers' maps
    collects every map's false discoveries.) The layer shown is the argmax of the layers'
    cross-validated r: a choice made on the same data, descriptive.

    Returns
    -------
    best : ndarray, shape (V,)
        Layer index (float; NaN where the voxel is not significant).
    r_best : ndarray, shape (V,)
    significant : ndarray of bool, shape (V,)
    """
    from alignment.stats import fdr_bh, simes

    layers = sorted(int(x) for x in layers)
    if not layers:
        raise ValueError(f"no layers of {key.model} {key.branch} available")
    rs, ps = zip(*(_r_p(study, subject, LayerKey(key.model, key.branch, lay, key.kind, key.condition))
                   for lay in layers))
    r = np.stack(rs)
    idx = np.nanargmax(np.where(np.isfinite(r), r, -np.inf), axis=0)
    r_best = r[idx, np.arange(r.shape[1])]
    sig, _ = fdr_bh(simes(np.stack(ps)), fdr_q)
    best = np.asarray(layers, np.float32)[idx]
    return np.where(sig, best, np.nan).astype(np.float32), r_best, sig


def _r_p(study: Study, subject: str, key: LayerKey) -> tuple[np.ndarray, np.ndarray]:
    """One layer's encoding r (V,) and uncorrected p (V,): the subject's null, or the group's t
    test. NotCached until the subject's null is."""
    if subject == GROUP:
        g = group_map(study, key)
        return g.r, g.p
    e = study.get("encoding", key, subject)
    return np.asarray(e["scores"], np.float32), np.asarray(e["p"], np.float64)


def opening_view(study: Study, fdr_q: float = 0.05, avail: Availability | None = None) -> dict | None:
    """The view the app opens on when a link names none: the most informative one cached.

    The first model, its first branch and AN kind, under ``image+text`` when offered; the first
    level at which some cached layer has voxels with q < ``fdr_q`` (the group from 3 subjects
    on, then each subject: the group t test of 3 subjects has 2 dof and often finds nothing);
    at that level the layer with the most such voxels (ties: the higher mean r). When nothing
    cached is significant: the first level with a cached layer, at its highest mean r; when
    nothing is cached yet (a demo still computing): the first subject's first layer, which the
    demo computes first.

    Returns
    -------
    dict or None
        ``subject``, ``model``, ``branch``, ``kind``, ``condition``, ``layer`` (the sidebar's
        fields); None when no encoding map is offered.
    """
    avail = available(study) if avail is None else avail
    models = avail.models()
    if not models:
        return None
    model = models[0]
    branch = avail.branches(model)[0]
    kind = avail.kinds(model, branch)[0]
    conditions = avail.conditions(model, branch, kind)
    condition = "image+text" if "image+text" in conditions else conditions[0]
    view = {"model": model, "branch": branch, "kind": kind, "condition": condition}
    subjects = [s for s in avail.subjects if avail.layers(model, branch, kind, condition, subject=s)]
    if not subjects:
        return None
    group = len(subjects) >= 3 and bool(avail.layers(model, branch, kind, condition, subject=GROUP))
    fallback = None
    for level in ([GROUP] if group else []) + subjects:
        scores = {}
        for layer in avail.layers(model, branch, kind, condition, subject=level):
            try:
                r, q = _r_q(study, level, LayerKey(model, branch, int(layer), kind, condition))
            except NotCached:  # offered by a demo still computing
                continue
            scores[int(layer)] = (0 if q is None else int(np.sum(q < fdr_q)), _mean(r))
        if not scores:
            continue
        best = max(scores, key=scores.get)
        if scores[best][0] > 0:
            return {**view, "subject": level, "layer": best}
        fallback = fallback or {**view, "subject": level, "layer": max(scores, key=lambda layer: scores[layer][1])}
    return fallback or {**view, "subject": subjects[0],
                        "layer": avail.layers(model, branch, kind, condition, subject=subjects[0])[0]}


def _mean(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else -np.inf


#: the note of an r map drawn before its permutation null is computed
PENDING_SIGNIFICANCE = ("held-out r of the ridge fit; its significance (a permutation null, a minute or more "
                        "per map) is still computing")


def metric_map(study: Study, subject: str, key: LayerKey, metric: str = "r", fdr_q: float = 0.05,
               avail: Availability | None = None, compute_ceiling: bool = True) -> MapResult:
    """The map of one metric for a view.

    Metrics (:data:`MAP_METRICS`):

    - ``"r"``: encoding r (group: tanh of the mean Fisher z);
    - ``"significant r"``: r where q < ``fdr_q`` (group: q of the one-sample t across subjects);
    - ``"-log10 q"``;
    - ``"best layer"``: the layer (of ``key``'s model, branch, kind, condition; all layers in the
      cache) with the highest r, where some layer predicts the voxel (one family over the layers:
      :func:`best_layer_map`);
    - ``"SI"``: modality specialization index of a dual encoder, (r_img − r_txt) /
      (|r_img| + |r_txt|), image branch vs text branch at ``key.layer`` (the nearest available
      layer for a branch that lacks it), shown where either is significant;
    - ``"cross-modal gain"``: fusion layer r_image+text − max(r_image, r_text) (conditions);
    - ``"noise ceiling"``: the subject's noise ceiling (group: mean over subjects);
    - ``"r / ceiling"``: encoding r divided by the ceiling where it is ≥ :data:`CEILING_FLOOR`.

    Parameters
    ----------
    subject : str
        Subject id or ``"group"``.
    avail : Availability, optional
        Needed for "best layer", "SI" (which layers exist); default :func:`available` from the
        cache scan.
    compute_ceiling : bool
        Compute a missing noise ceiling (see :func:`ceiling_map`).

    Returns
    -------
    MapResult
        ``values`` (V,) etc.
    """
    if metric == "r":
        r, q = _r_q(study, subject, key)
        if q is None:
            return MapResult(r, "r", r=r, note=PENDING_SIGNIFICANCE)
        return MapResult(r, "r", significant=q < fdr_q, r=r)
    if metric in ("significant r", "-log10 q"):
        r, q = _with_q(study, subject, key)
        sig = q < fdr_q
        if metric == "significant r":
            return MapResult(np.where(sig, r, np.nan).astype(np.float32), f"r (q<{fdr_q:g})",
                             significant=sig, r=r, note=f"{int(sig.sum())} voxels with q < {fdr_q:g}")
        with np.errstate(divide="ignore"):
            v = -np.log10(np.clip(q.astype(np.float64), 1e-300, 1))
        return MapResult(v.astype(np.float32), "-log10 q", cmap="viridis", symmetric=False,
                         significant=sig, r=r, vmin=0.0)
    if metric in ("noise ceiling", "r / ceiling"):
        ceiling, note = ceiling_map(study, subject, compute_ceiling)
        if metric == "noise ceiling":
            return MapResult(ceiling, "noise ceiling (r)", cmap="viridis", symmetric=False, vmin=0.0, vmax=1.0,
                             note=note or "expected r of a perfect model on one run's data, from the repeated "
                                          "segment (signal-power estimate)")
        r, q = _with_q(study, subject, key)
        sig = q < fdr_q
        ratio = r_over_ceiling(r, ceiling)
        return MapResult(ratio, "r / ceiling", cmap="RdBu_r", significant=sig, r=r, vmin=-1.0, vmax=1.0,
                         note=note or f"encoding r / noise ceiling where the ceiling ≥ {CEILING_FLOOR:g}; median over "
                                      f"significant voxels {_median(ratio[sig]):.2f}")
    avail = avail or available(study)
    if metric == "best layer":
        layers = avail.layers(key.model, key.branch, key.kind, key.condition)
        best, r_best, sig = best_layer_map(study, subject, key, layers, fdr_q)
        return MapResult(best, "best layer", cmap="viridis", symmetric=False, significant=sig, r=r_best,
                         note=f"layer with the highest r among layers {layers}, where some layer predicts the "
                              f"voxel (Simes over the layers, BH over voxels, q < {fdr_q:g}); {int(sig.sum())} voxels",
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
            chosen[b] = nearest_layer(layers, key.layer)
        d = dual_modality(study, subject, key.model, chosen["image"], chosen["text"], key.kind, key.condition, fdr_q)
        sig = d["sig_image"] | d["sig_text"]
        what = (f"where the branches differ by test (q < {fdr_q:g})" if d["tested"] else
                "UNTESTED: the branches' difference is not tested here (the specialization analysis, same layer)")
        return MapResult(d["si_tested"] if d["tested"] else d["si"], "SI (image − text)", cmap="PuOr",
                         significant=sig, r=np.maximum(d["r_image"], d["r_text"]),
                         note=f"image layer {chosen['image']} vs text layer {chosen['text']}; voxels significant "
                              f"for either branch (q < {fdr_q:g}) {what}", vmin=-1.0, vmax=1.0)
    if metric == "cross-modal gain":
        conds = avail.conditions(key.model, key.branch, key.kind)
        if not {"image+text", "image", "text"} <= set(conds):
            raise ValueError(f"cross-modal gain needs the image+text, image and text conditions of "
                             f"{key.model} {key.branch} [{key.kind}]; the cache has {conds}")
        f = fusion_modality(study, subject, key, fdr_q)
        tested = bool(np.isfinite(f["q_gain"]).any())
        shown = f["gain_significant"] if tested else f["sig_any"]
        return MapResult(np.where(shown, f["gain"], np.nan).astype(np.float32), "cross-modal gain",
                         significant=f["sig_both"], r=f["r_both"],
                         note="r(image+text) − max(r(image), r(text)); "
                              + (f"where gain > 0 by test (q < {fdr_q:g}; additive voxels have gain too)" if tested
                                 else f"UNTESTED, voxels significant in any condition (q < {fdr_q:g})"))
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
    from alignment.atlases import load_atlas
    from alignment.networks import network_summary

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
    atlas : alignment.atlases.Atlas
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
def _bn_polarity(study: Study, key: LayerKey, subject: str, fdr_q: float):
    """:func:`alignment.analyses.polarity.bn_polarity` of one layer and subject (cached results)."""
    from alignment.analyses.polarity import bn_polarity

    glm = study.get("glm", key, subject)
    return bn_polarity(np.asarray(study.get("atoms", key)["codes"]), np.asarray(glm["t"]),
                       np.asarray(glm["q"]) < fdr_q)


def polarity_tables(study: Study, model: str, branch: str, kind: str, layers: Sequence[int], atlas,
                    subjects: Sequence[str], condition: str = "image+text", fdr_q: float = 0.05,
                    normalize: bool = False, n_boot: int = 2000, n_null: int = 2000):
    """Positive / negative / mixed BN counts per layer and network, and the mirrored trend.

    Per subject and layer: codes (N, K), GLM t and q (K, V) →
    :func:`alignment.analyses.polarity.bn_polarity` (the sign of the voxel's strength-weighted
    AN→BN couplings, or mixed where they nearly cancel: blind to the atoms' signs and order) →
    counts per network. In-sample (the dictionary and the GLM use every run).

    Returns
    -------
    curves : pandas.DataFrame
        ``layer``, ``level``, ``name``, ``subject``, ``positive``, ``negative``, ``mixed``, ``balance``
        (P / (P + N)), ``n_voxels`` (one row per subject; counts or fractions).
    trends : pandas.DataFrame or None
        Mirrored trend (correlation across layers of the balance with the layer index, null:
        atom-sign flips keeping the totals, CI: bootstrap over atoms) per subject, and with >= 2
        subjects a ``subject="group"`` row per network (one-sample t test across subjects of the
        Fisher-z r): ``level``, ``name``, ``subject``, ``r``, ``ci_low``, ``ci_high``, ``p``,
        ``n`` (layers for a subject, subjects for the group). None with fewer than
        :data:`alignment.analyses.polarity.MIN_LAYERS` layers.
    """
    import pandas as pd

    from alignment.analyses.polarity import (MIN_LAYERS, group_trend, mirrored_trends, polarity_counts,
                                             polarity_curves, polarity_tallies)

    frames, trend_rows = [], []
    for s in subjects:
        per_layer, tallies = {}, []
        for lay in layers:
            bn = _bn_polarity(study, LayerKey(model, branch, int(lay), kind, condition), s, fdr_q)
            per_layer[int(lay)] = polarity_counts(bn, atlas)
            tallies.append(polarity_tallies(bn, atlas).assign(layer=int(lay)))
        frames.append(polarity_curves(per_layer, normalize=normalize).assign(subject=s))
        if len(layers) >= MIN_LAYERS:
            t = mirrored_trends(pd.concat(tallies, ignore_index=True), n_boot=n_boot, n_null=n_null)
            trend_rows.append(t.rename(columns={"n_layers": "n"}).assign(subject=s))
    curves = pd.concat(frames, ignore_index=True)
    if not trend_rows:
        return curves, None
    trends = pd.concat(trend_rows, ignore_index=True)
    if len(subjects) >= 2:
        group = []
        for (level, name), sel in trends.groupby(["level", "name"], sort=False):
            g = group_trend(sel.r.to_numpy())
            group.append(dict(level=level, name=name, subject=GROUP, r=g.r, ci_low=g.ci_low, ci_high=g.ci_high,
                              p=g.p, n=g.n_subjects))
        trends = pd.concat([trends, pd.DataFrame(group)], ignore_index=True)
    cols = ["level", "name", "subject", "r", "ci_low", "ci_high", "p", "n"]
    return curves, trends[cols]


def polarity_seeds(study: Study, keys: Sequence[LayerKey], subjects: Sequence[str]) -> list[int]:
    """Dictionary seeds (``Options.seed``) under which the cache holds the neuron mapping of
    every layer in ``keys`` for every subject, with the study's other options (no computation).

    The study's own seed comes first. Another seed's results are computed by a run config with
    another ``seed`` (``[options] seed = 1``), or ``Study(..., replace(options, seed=1))``.
    """
    from dataclasses import replace

    found = {study.options.seed}
    for record in Catalog(study.cache, ("atoms",)):
        o = record.options
        if record.target in keys and "seed" in o and all(
                k == "seed" or not hasattr(study.options, k) or _same_option(v, getattr(study.options, k))
                for k, v in o.items()):
            found.add(int(o["seed"]))
    seeds = [study.options.seed] + sorted(found - {study.options.seed})
    out = []
    for seed in seeds:
        other = Study(study.dataset, study.cache, replace(study.options, seed=seed), device="cpu", read_only=True)
        if all(other.has("glm", k, s) for k in keys for s in subjects):
            out.append(seed)
    return out


def _same_option(a, b) -> bool:
    norm = (lambda v: tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else v)
    return norm(a) == norm(b)


def polarity_stability(study: Study, model: str, branch: str, kind: str, layers: Sequence[int],
                       subjects: Sequence[str], condition: str = "image+text", fdr_q: float = 0.05,
                       seeds: Sequence[int] | None = None):
    """Stability of the BN polarity across dictionary seeds (reads the cache only).

    Parameters
    ----------
    seeds : sequence of int, optional
        Default: every seed the cache holds the mapping under (:func:`polarity_seeds`) for
        every layer of ``layers`` that has at least two such seeds; the other layers are left
        out (their rows are absent from ``table``).

    Returns
    -------
    dict or None
        None with fewer than 2 seeds cached. Otherwise, pooled over layers and subjects
        (:func:`alignment.analyses.polarity.polarity_stability`): ``seeds`` (list), ``share``
        (float: of the BNs signed under some seed, those no seed gives the opposite sign), ``n``
        (those voxels), ``signed`` (of the voxels that are BNs under every seed, those with one
        sign under all), ``n_bns`` (those voxels), ``table`` (DataFrame: ``layer``, ``subject``,
        ``share``, ``n``, ``signed``, ``n_bns``), ``dictionaries_differ`` (bool: False when the
        seeds gave the same dictionary — a deterministic initialisation — and the share then
        says nothing).
    """
    import pandas as pd
    from dataclasses import replace

    from alignment.analyses.polarity import polarity_stability as stability

    keys = [LayerKey(model, branch, int(lay), kind, condition) for lay in layers]
    if seeds is None:  # the layers mapped under other seeds too (the demo: its planted layers)
        per_layer = {k: polarity_seeds(study, [k], subjects) for k in keys}
        keys = [k for k in keys if len(per_layer[k]) >= 2]
        seeds = [x for x in per_layer[keys[0]] if all(x in per_layer[k] for k in keys)] if keys else []
    seeds = list(seeds)
    if len(seeds) < 2:
        return None
    studies = [Study(study.dataset, study.cache, replace(study.options, seed=int(seed)), device="cpu",
                     read_only=True) for seed in seeds]
    first = [np.asarray(st.get("atoms", keys[0])["codes"]) for st in studies]
    differ = any(c.shape != first[0].shape or not np.array_equal(c, first[0]) for c in first[1:])
    rows = []
    for key in keys:
        for s in subjects:
            agree = stability([_bn_polarity(st, key, s, fdr_q).polarity for st in studies])
            rows.append(dict(layer=key.layer, subject=s, share=agree.share, n=agree.n, signed=agree.signed,
                             n_bns=agree.n_bns))
    table = pd.DataFrame(rows)
    n, n_bns = int(table.n.sum()), int(table.n_bns.sum())
    share = float((table.share.fillna(0) * table.n).sum() / n) if n else float("nan")
    signed = float((table.signed.fillna(0) * table.n_bns).sum() / n_bns) if n_bns else float("nan")
    return dict(seeds=[int(x) for x in seeds], share=share, n=n, signed=signed, n_bns=n_bns, table=table,
                dictionaries_differ=differ)


# ==========================================================================================
# modality
# ==========================================================================================
def _get_all(study: Study, stage: str, target, subjects: Sequence[str]):
    """The entries of one stage and target for every subject, or None when one is not cached."""
    try:
        return [study.get(stage, target, s) for s in subjects]
    except NotCached:
        return None


def _specialization(study: Study, subjects: Sequence[str], bands: BandsKey):
    """The ``specialization`` entries of a dual encoder's image and text branches (either band
    order), or None."""
    for branches in (bands.branches, bands.branches[::-1]):
        entries = _get_all(study, "specialization", BandsKey(bands.model, branches, bands.layer, bands.kind,
                                                             bands.condition), subjects)
        if entries is not None:
            return entries, branches
    return None, bands.branches


def dual_modality(study: Study, subject: str, model: str, layer_image: int, layer_text: int,
                  kind: str = "attn", condition: str = "image+text", fdr_q: float = 0.05, atlas=None) -> dict:
    """Modality specialization of a dual encoder: image branch vs text branch.

    SI is shown only where a test says the branches differ. One subject: the ``specialization``
    stage's paired block test of the two branches' held-out predictions (two-sided, BH; needs
    the same layer for both branches). The group: one-sample t across subjects of
    ``z(r_image) − z(r_text)`` (Fisher z of each subject's encoding r; two-sided, BH).

    Returns
    -------
    dict
        ``r_image``, ``r_text`` (V,); ``sig_image``, ``sig_text`` (V,) bool; ``si`` (V,) (NaN
        where neither branch is significant); ``tested`` (bool: a test of image vs text is
        available); ``q_si`` (V,) its q (NaN untested); ``si_tested`` (V,): SI where the test
        is significant (q < ``fdr_q``) and either branch is, NaN elsewhere (all NaN untested);
        ``labels`` (V,) str (:func:`alignment.analyses.modality_labels`), ``summary``
        (DataFrame per network, with an atlas).
    """
    from alignment.analyses.group import group_contrast
    from alignment.analyses.modality import modality_labels, modality_summary, specialization_index
    from alignment.stats import fisher_z

    key_i = LayerKey(model, "image", int(layer_image), kind, condition)
    key_t = LayerKey(model, "text", int(layer_text), kind, condition)
    r_i, q_i = _with_q(study, subject, key_i)
    r_t, q_t = _with_q(study, subject, key_t)
    sig_i, sig_t = q_i < fdr_q, q_t < fdr_q
    si = specialization_index(r_i, r_t)
    q_si = np.full(si.shape, np.nan, np.float32)
    subjects = subjects_of(study, subject)
    if subject == GROUP:
        (ri, _), (rt, _) = encoding_maps(study, subjects, key_i), encoding_maps(study, subjects, key_t)
        q_si = group_contrast(fisher_z(ri) - fisher_z(rt), "two-sided", fdr_q).q
    elif int(layer_image) == int(layer_text):
        entries, _ = _specialization(study, subjects, BandsKey(model, ("image", "text"), int(layer_image), kind,
                                                                condition))
        if entries is not None:
            q_si = np.asarray(entries[0]["q_si"], np.float32)
    tested = bool(np.isfinite(q_si).any())
    shown = (sig_i | sig_t) & (np.nan_to_num(q_si, nan=1.0) < fdr_q)
    labels = modality_labels(sig_i, sig_t, r_image=r_i, r_text=r_t)
    out = dict(r_image=r_i, r_text=r_t, sig_image=sig_i, sig_text=sig_t,
               si=np.where(sig_i | sig_t, si, np.nan).astype(np.float32), tested=tested,
               q_si=np.asarray(q_si, np.float32), si_tested=np.where(shown, si, np.nan).astype(np.float32),
               labels=labels)
    if atlas is not None:
        out["summary"] = modality_summary(labels, atlas)
    return out


def fusion_modality(study: Study, subject: str, key: LayerKey, fdr_q: float = 0.05, atlas=None) -> dict:
    """Cross-modal gain and unified BNs of a fusion layer (conditions image+text / image / text).

    Gain > 0 and "unified" are tested contrasts. One subject: the ``crossmodal`` stage's paired
    block tests (gain: image+text beats each single condition; unified: the image+text ANs add
    to the additive model of the two single-modality passes), BH over voxels. The group:
    one-sample t across subjects (one-sided, BH) of the Fisher-z gain
    ``z(r_both) − max(z(r_image), z(r_text))`` (from the encoding maps) and, when the stage is
    cached for every subject, of ``z(r_full) − z(r_additive)`` for unified. Unified BNs are
    where the unified test is significant and the image+text map is.

    Returns
    -------
    dict
        ``r_both``, ``r_image``, ``r_text``, ``gain`` (V,); ``sig_both``, ``sig_image``,
        ``sig_text``, ``sig_any`` (V,) bool; ``q_gain`` (V,) (NaN untested), ``gain_significant``
        (V,) bool; ``tested`` (bool: the unified test is available), ``q_unified`` (V,) (NaN
        untested), ``unified`` (V,) bool (all False untested); ``share``, ``n_unified``,
        ``n_significant_both``; ``per_network`` (DataFrame, with an atlas).
    """
    from alignment.analyses.group import group_contrast
    from alignment.analyses.modality import cross_modal_gain, unified_by_test, unified_share
    from alignment.stats import fisher_z

    r, q = {}, {}
    keys = {c: LayerKey(key.model, key.branch, key.layer, key.kind, c) for c in ("image+text", "image", "text")}
    for c, k in keys.items():
        r[c], q[c] = _with_q(study, subject, k)
    sig = {c: q[c] < fdr_q for c in r}
    gain = cross_modal_gain(r["image+text"], r["image"], r["text"])
    subjects = subjects_of(study, subject)
    both = keys["image+text"]
    entries = _get_all(study, "crossmodal", both, subjects)
    V = gain.shape[0]
    q_gain = q_unified = np.full(V, np.nan)
    dz_unified = np.zeros(V)
    if subject == GROUP:
        z = {c: fisher_z(encoding_maps(study, subjects, k)[0]) for c, k in keys.items()}
        q_gain = group_contrast(z["image+text"] - np.maximum(z["image"], z["text"]), "greater", fdr_q).q
        if entries is not None:
            d = np.stack([fisher_z(np.asarray(e["r_full"], np.float64)) - fisher_z(np.asarray(e["r_additive"], np.float64))
                          for e in entries])
            g = group_contrast(d, "greater", fdr_q)
            q_unified, dz_unified = g.q, g.mean
    elif entries is not None:
        e = entries[0]
        q_gain, q_unified = np.asarray(e["q_gain"]), np.asarray(e["q_unified"])
        dz_unified = np.asarray(e["dz_unified"])
    tested = entries is not None
    unified = unified_by_test(np.nan_to_num(q_unified, nan=1.0), dz_unified, sig["image+text"], fdr_q)
    u = unified_share(sig["image+text"], sig["image"], sig["text"], atlas, unified=unified)
    return dict(r_both=r["image+text"], r_image=r["image"], r_text=r["text"], gain=gain.astype(np.float32),
                sig_both=sig["image+text"], sig_image=sig["image"], sig_text=sig["text"],
                sig_any=sig["image+text"] | sig["image"] | sig["text"], q_gain=np.asarray(q_gain, np.float32),
                gain_significant=(np.nan_to_num(q_gain, nan=1.0) < fdr_q) & (gain > 0), tested=tested,
                q_unified=np.asarray(q_unified, np.float32), unified=u.mask, share=u.share,
                n_unified=u.n_unified, n_significant_both=u.n_significant_both, per_network=u.per_network)


def variance_maps(study: Study, subject: str, bands: BandsKey, fdr_q: float = 0.05, atlas=None) -> dict:
    """Unique and shared variance of a model's branches at one depth (banded ridge).

    Unique variance is tested per band. One subject: the ``specialization`` stage's paired
    block test of the joint model against the model without that band (one-sided, BH), when
    cached. The group: one-sample t across subjects of the per-subject unique R² (one-sided,
    BH).

    Returns
    -------
    dict
        ``r2`` (V,) joint held-out R², ``unique`` {branch: (V,)}, ``shared`` (V,) — means over
        subjects for the group — ``predicted`` (V,) bool: some branch's encoding map is
        significant (q < ``fdr_q``; where no encoding map is cached, joint R² > 0),
        ``unique_q`` {branch: (V,)} the q of each band's unique-variance test or None when
        untested, and with an atlas ``per_network`` (:func:`alignment.networks.network_summary`
        of the joint R² with the predicted voxels as significant, plus one column per part: its
        mean over the predicted voxels, per network and group; over all voxels noise would
        dominate).
    """
    from alignment.analyses.group import group_contrast

    subjects = subjects_of(study, subject)
    entries = [study.get("variance", bands, s) for s in subjects]
    r2 = np.mean([np.asarray(e["r2"]) for e in entries], axis=0).astype(np.float32)
    uniques = np.stack([np.asarray(e["unique"], np.float64) for e in entries])  # (S, B, V)
    unique = uniques.mean(0).astype(np.float32)  # (B, V)
    shared = np.mean([np.asarray(e["shared"]) for e in entries], axis=0).astype(np.float32)
    try:
        predicted = np.any([_with_q(study, subject, bands.band(b))[1] < fdr_q for b in bands.branches], axis=0)
    except NotCached:
        predicted = r2 > 0
    unique_q = None
    if subject == GROUP:
        unique_q = {b: np.asarray(group_contrast(uniques[:, j], "greater", fdr_q).q, np.float32)
                    for j, b in enumerate(bands.branches)}
    else:
        tests, order = _specialization(study, subjects, bands)
        if tests is not None:
            q = np.asarray(tests[0]["q_unique"], np.float32)
            unique_q = {b: q[order.index(b)] for b in bands.branches}
    out = dict(r2=r2, unique=dict(zip(bands.branches, unique)), shared=shared, predicted=predicted,
               unique_q=unique_q)
    if atlas is not None:
        parts = {"joint R²": r2, **{f"unique {b}": u for b, u in zip(bands.branches, unique)}, "shared": shared}
        from alignment.networks import network_summary

        out["per_network"] = per = network_summary(r2, predicted, atlas)
        for name, values in parts.items():
            per[name] = network_summary(values, predicted, atlas).mean_r_significant.to_numpy()
    return out


def an_group_map(study: Study, key: LayerKey, an: int, subjects: Sequence[str] | None = None,
                 fdr_q: float | None = None) -> dict:
    """Group test of one AN's brain map (neuron mapping; :mod:`alignment.analyses.group`).

    Per subject the AN's coupling ``c_s(v) = Σ_k S[n, k] · t_s[k, v]`` (codes of the layer's
    dictionary, the subject's GLM t; no per-subject significance mask), one-sample t across
    subjects (two-sided), BH over voxels. Invariant to the sign and order of atoms.

    Returns
    -------
    dict
        ``mean``, ``t``, ``p``, ``q`` (V,), ``significant`` (V,) bool, ``n_subjects``.
    """
    from alignment.analyses.group import coupling_group

    subjects = list(subjects or study.dataset.subjects)
    fdr_q = study.options.fdr_q if fdr_q is None else fdr_q
    codes = np.asarray(study.get("atoms", key)["codes"])
    ts = [np.asarray(study.get("glm", key, s)["t"]) for s in subjects]
    g = coupling_group(codes, ts, int(an), fdr_q)
    return dict(mean=np.asarray(g.mean, np.float32), t=np.asarray(g.t, np.float32), p=np.asarray(g.p, np.float32),
                q=np.asarray(g.q, np.float32), significant=g.significant, n_subjects=g.n_subjects)


def integration_group(study: Study, key: LayerKey, baselines: Baselines, subjects: Sequence[str] | None = None,
                      fdr_q: float | None = None) -> dict:
    """Group test of integration sites: does the VLM layer predict better than the joint
    image+text baseline across subjects?

    Per subject d = z(r_vlm) − z(r_joint) (Fisher z of the held-out r of each, both
    cross-validated), one-sample t across subjects (one-sided: d > 0), BH-FDR over voxels.

    Parameters
    ----------
    subjects : list of str, optional
        Default all subjects of the dataset (at least 2).
    fdr_q : float, optional
        Default the study's ``fdr_q``.

    Returns
    -------
    dict
        ``dz`` (S, V) the per-subject differences, ``mean_dz``, ``t``, ``p``, ``q`` (V,) and
        ``sites`` (V,) bool: q < ``fdr_q`` and a positive mean difference.
    """
    from alignment.stats import fdr_bh, fisher_z, group_ttest

    subjects = list(subjects or study.dataset.subjects)
    fdr_q = study.options.fdr_q if fdr_q is None else fdr_q
    entries = [study.get("integration", IntegrationKey(key, baselines), s) for s in subjects]
    dz = np.stack([fisher_z(np.asarray(e["r_vlm"], np.float64)) - fisher_z(np.asarray(e["r_joint"], np.float64))
                   for e in entries])
    res = group_ttest(dz, alternative="greater")
    p = np.where(np.isfinite(res.p), res.p, 1.0)
    reject, q = fdr_bh(p, fdr_q)
    return dict(dz=dz.astype(np.float32), mean_dz=np.asarray(res.mean, np.float32), t=np.asarray(res.t, np.float32),
                p=p.astype(np.float32), q=np.asarray(q, np.float32), sites=reject & (res.mean > 0))


def integration_maps(study: Study, subject: str, key: LayerKey, baselines: Baselines, fdr_q: float = 0.05,
                     atlas=None) -> dict:
    """Integration sites of a VLM layer: where it beats the joint image+text baseline.

    One subject: the block test of the ``integration`` stage. The group: the one-sample t
    across subjects of :func:`integration_group`.

    Returns
    -------
    dict
        ``diff`` (V,) r_vlm − r_joint, ``r_vlm``, ``r_joint``, ``r_image``, ``r_text`` (means
        over subjects for the group), ``q`` (V,) (the subject's block test, or the group test),
        ``sites`` (V,) 0/1 (the subject's, or the group test's), ``site_share`` (V,) share of
        subjects where the voxel is a site, ``baselines`` {subject: {"image": LayerKey,
        "text": LayerKey}} the layers compared, ``inflation`` {subject: (λ, estimated)} the
        block test's cross-fitting variance factor and whether it was estimated from the
        voxels (:mod:`alignment.analyses.integration`), ``sig_vlm`` (V,) bool: the VLM layer's own
        encoding map is significant (q < ``fdr_q``), and with an atlas ``per_network``
        (:func:`alignment.networks.network_summary` of ``diff`` over those voxels, plus
        ``mean diff (VLM significant)`` and ``share of sites`` per network and group).
    """
    subjects = subjects_of(study, subject)
    entries = [study.get("integration", IntegrationKey(key, baselines), s) for s in subjects]

    def mean(name):
        return np.mean([np.asarray(e[name], np.float32) for e in entries], axis=0)

    out = dict(diff=mean("diff"), r_vlm=mean("r_vlm"), r_joint=mean("r_joint"), r_image=mean("r_image"),
               r_text=mean("r_text"), site_share=mean("sites"),
               baselines={s: {k: LayerKey(**v) for k, v in e.meta.get("baselines", {}).items()}
                          for s, e in zip(subjects, entries)},
               inflation={s: (e.meta.get("inflation", {}).get("joint"), e.meta.get("inflation_estimated"))
                          for s, e in zip(subjects, entries)})
    if subject == GROUP:
        g = integration_group(study, key, baselines, subjects, fdr_q)
        out.update(q=g["q"], sites=g["sites"].astype(np.float32))
    else:
        out.update(q=np.asarray(entries[0]["q"], np.float32), sites=out["site_share"])
    out["sig_vlm"] = _with_q(study, subject, key)[1] < fdr_q
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
        maps; ``atom_sizes`` (K,) significant BNs per atom; the atoms' collinearity in the GLM
        design, ``max_corr`` (K,) max |corr| with another atom and ``vif`` (K,) (NaN for a
        cached dictionary without them); ``marginal_links_per_voxel`` (V,) the atoms significant per
        voxel in the marginal GLMs (one per atom; None when the mapping GLM is the joint one).

    All counts come from the joint GLM (every atom in one model): a voxel driven by one atom is
    linked to that atom, not to every atom correlated with it as in the marginal GLMs.
    """
    from alignment.analyses.redundancy import ans_per_voxel, dice_overlap, links_per_an, links_per_voxel

    glm = study.get("glm", key, subject)
    sig = np.asarray(glm["q_joint"]) < fdr_q
    marginal = links_per_voxel(np.asarray(glm["q"]) < fdr_q) if study.options.glm == "separate" else None
    atoms = study.get("atoms", key)
    codes = np.asarray(atoms["codes"])
    missing = np.full(codes.shape[1], np.nan)
    return dict(links_per_voxel=links_per_voxel(sig), ans_per_voxel=ans_per_voxel(codes, sig),
                links_per_an=links_per_an(codes, sig), dice=dice_overlap(sig), atom_sizes=sig.sum(1),
                max_corr=np.asarray(atoms["max_corr"]) if "max_corr" in atoms else missing,
                vif=np.asarray(atoms["vif"]) if "vif" in atoms else missing,
                marginal_links_per_voxel=marginal)


def redundancy_across_subjects(study: Study, subject: str, key: LayerKey, fdr_q: float = 0.05) -> dict:
    """:func:`redundancy` of every subject a view covers, pooled.

    Parameters
    ----------
    subject : str
        Subject id or ``"group"`` (every subject of the dataset).

    Returns
    -------
    dict
        ``links_per_voxel`` (V,) mean over subjects of the atoms significant per voxel;
        ``links_per_an`` (S·N,) BNs reached per AN, every subject's, concatenated; ``dice``
        (K, K) mean over subjects of the atoms' BN-map overlap (NaN left out: a pair of atoms
        without BNs in a subject); ``atom_sizes`` (K,) mean over subjects of the significant BNs
        per atom; ``max_corr`` and ``vif`` (K,) the atoms' collinearity (one dictionary for
        every subject); ``marginal_links_per_voxel`` (V,) mean over subjects, or None;
        ``n_subjects`` (S).
    """
    per = [redundancy(study, s, key, fdr_q) for s in subjects_of(study, subject)]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # atom pairs without BNs in every subject: all NaN
        dice = np.nanmean([p["dice"] for p in per], axis=0)
    return dict(links_per_voxel=np.mean([p["links_per_voxel"] for p in per], axis=0),
                links_per_an=np.concatenate([p["links_per_an"] for p in per]), dice=dice,
                atom_sizes=np.mean([p["atom_sizes"] for p in per], axis=0), max_corr=per[0]["max_corr"],
                vif=per[0]["vif"], n_subjects=len(per),
                marginal_links_per_voxel=None if per[0]["marginal_links_per_voxel"] is None
                else np.mean([p["marginal_links_per_voxel"] for p in per], axis=0))


def lesion(study: Study, subject: str, key: LayerKey, fdr_q: float = 0.05, *, compute: bool = False,
           **curve) -> dict | None:
    """Lesion curves of one layer (stage ``lesion``, :mod:`alignment.stages.lesion`).

    Parameters
    ----------
    compute : bool
        False: return the cached result or None. True: compute when absent (per run, a
        dictionary and a whole-brain GLM of the other runs; ridge fits:
        ``len(fractions) × (n_repeats + number of runs)``).
    **curve
        ``fractions``, ``n_repeats``, ``max_voxels`` of :class:`alignment.keys.LesionKey`.

    Returns
    -------
    dict or None
        ``fractions`` (F,), ``random_mean`` (F,), ``random_sd`` (F,), ``ranked`` (F,),
        ``n_voxels`` (int).
    """
    target = LesionKey(key, float(fdr_q), **curve)
    try:
        entry = study.get("lesion", target, subject, compute=compute)
    except NotCached:
        if compute:
            raise
        return None
    out = {name: np.asarray(entry[name]) for name in ("fractions", "random_mean", "random_sd", "ranked")}
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
