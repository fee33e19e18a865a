"""The catalog: which units the cache holds, for which dataset and subject, computed with which options.

Every result written through ``Study.get`` records its unit (stage, target, subject), the
fingerprint of the subject's BOLD and the analysis options that keyed it and its inputs; the
catalog reads that metadata (never the arrays). Results written before units were recorded are
read from their key parameters (:func:`_legacy`). The app's menus, ``cache ls`` and the options
a dataset folder is opened with all come from here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Iterable, get_type_hints

from alignment.cache import Cache, EntryInfo
from alignment.keys import Baselines, BandsKey, IntegrationKey, LayerKey, Options
from alignment.stages import STAGES


@dataclass(frozen=True)
class Record:
    """One cached result.

    ``target``: the stage's target (None when it could not be read back); ``subject`` and
    ``bold`` (the subject's BOLD fingerprint) for per-subject stages; ``options``: option name →
    value as stored (alphas as a list); ``meta``: the whole metadata; ``info``: size, time.
    """

    stage: str
    key: str
    target: Any
    subject: str | None
    bold: str | None
    options: dict
    meta: dict
    info: EntryInfo

    def label(self) -> str:
        what = self.target.label() if hasattr(self.target, "label") else self.meta.get("description", "")
        return what + (f" sub-{self.subject}" if self.subject is not None else "")


class Catalog:
    """What ``cache`` holds (a snapshot taken when the catalog is made).

    Parameters
    ----------
    cache : Cache
    stages : iterable of str, optional
        Only these stages (default: every stage folder of the cache).
    """

    def __init__(self, cache: Cache, stages: Iterable[str] | None = None):
        self.cache = cache
        self.records: list[Record] = []
        by_key: dict[tuple[str, str], Record] = {}
        wanted = list(stages) if stages is not None else cache.stages()
        # atoms before glm: a legacy GLM entry's layer is its atoms entry's
        for stage in sorted(wanted, key=lambda s: s != "atoms"):
            for info in cache.entries(stage):  # checks the name; none for a stage never stored
                record = _record(info, by_key)
                if record is not None:
                    by_key[(stage, info.key)] = record
                    self.records.append(record)

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def of_subjects(self, fingerprints: dict[str, str], stages: Iterable[str] | None = None,
                    options: Options | None = None) -> list[Record]:
        """Records of per-subject stages whose BOLD is one of ``fingerprints`` (fingerprint →
        subject id), optionally of ``stages`` only and computed with ``options``."""
        stages = set(stages) if stages is not None else None
        return [r for r in self.records
                if r.bold in fingerprints and fingerprints[r.bold] == r.subject
                and (stages is None or r.stage in stages) and (options is None or matches(r, options))]

    def options(self, fingerprints: dict[str, str]) -> Options | None:
        """The analysis options a dataset's results were computed with: the most frequent set
        among its encoding results, completed stage by stage (in registry order) by the most
        frequent values among results that agree with what was found so far. None when the
        cache holds no encoding result of the dataset."""
        records = self.of_subjects(fingerprints)
        found: dict = {}
        for stage in ["encoding", *(s for s in STAGES if s != "encoding")]:
            sets = Counter(
                tuple(sorted((k, _hashable(v)) for k, v in r.options.items() if k not in found))
                for r in records if r.stage == stage
                and all(_same(v, found[k]) for k, v in r.options.items() if k in found))
            sets.pop((), None)
            if not sets:
                if stage == "encoding":
                    return None
                continue
            found.update(dict(sets.most_common(1)[0][0]))
        names = {f.name for f in fields(Options)}
        values = {k: (tuple(float(a) for a in v) if k == "alphas" else v) for k, v in found.items() if k in names}
        return Options(**values)


def matches(record: Record, options: Options) -> bool:
    """Whether ``record`` was computed with ``options`` (on every option it records)."""
    return all(hasattr(options, k) and _same(v, getattr(options, k)) for k, v in record.options.items())


def _same(a, b) -> bool:
    return _hashable(a) == _hashable(b)


def _hashable(v):
    if isinstance(v, (list, tuple)):
        return tuple(float(x) if isinstance(x, (int, float)) else x for x in v)
    return v


def _record(info: EntryInfo, by_key: dict) -> Record | None:
    meta = info.meta  # read once, by the listing
    if meta is None:
        return None
    unit = meta.get("unit")
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    if isinstance(unit, dict):
        spec = STAGES.get(info.stage)
        target = None
        if spec is not None:
            try:
                target = build(spec.target, unit.get("target") or {})
            except (TypeError, ValueError, KeyError):
                target = None
        subject = unit.get("subject")
        return Record(info.stage, info.key, target, subject, meta.get("bold"), dict(meta.get("options") or {}),
                      meta, info)
    try:
        target, options = _legacy(info.stage, params, by_key)
    except (KeyError, TypeError, ValueError):
        target, options = None, {}
    subject = params.get("subject")
    return Record(info.stage, info.key, target, None if subject is None else str(subject), params.get("bold"),
                  options, meta, info)


def build(cls, data: dict):
    """A target dataclass from its recorded dict (nested dataclasses rebuilt, lists as tuples)."""
    if not is_dataclass(cls):
        return data.get("value")
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value, kind = data[f.name], hints.get(f.name)
        if isinstance(value, dict) and is_dataclass(kind):
            value = build(kind, value)
        kwargs[f.name] = _tuples(value)
    return cls(**kwargs)


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


_LEGACY_OPTIONS = {
    "encoding": ("hrf", "alphas", "null", "n_null", "null_tail", "seed"),
    "atoms": ("n_atoms", "sparsity", "seed", "hrf"),
    "glm": ("glm",),
    "variance": ("hrf", "alphas", "banded_iter", "seed"),
    "integration": ("hrf", "alphas", "block_len", "fdr_q"),
}


def _legacy(stage: str, p: dict, by_key: dict) -> tuple[Any, dict]:
    """(target, options) of a result written before units were recorded in the metadata."""
    options = {k: p[k] for k in _LEGACY_OPTIONS.get(stage, ()) if k in p}
    if stage in ("encoding", "atoms"):
        return LayerKey(**p["layer"]), options
    if stage == "glm":
        atoms = by_key.get(("atoms", p["atoms"]))
        if atoms is None:
            return None, options
        return atoms.target, {**atoms.options, **options}
    if stage == "variance":
        return BandsKey(**{**p["bands"], "branches": tuple(p["bands"]["branches"])}), options
    if stage == "integration":
        baselines = Baselines(p["image"]["model"], p["text"]["model"], int(p["image"]["layer"]),
                              int(p["text"]["layer"]))
        return IntegrationKey(LayerKey(**p["vlm"]), baselines), options
    return None, options
