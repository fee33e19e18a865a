"""The stage registry: each analysis declared as data.

A :class:`Stage` names a cached computation: its code version, the parameters that key it, the
other units it reads (its inputs) and the function that computes it. A :class:`Unit` is one
stage applied to one target (and one subject where BOLD is involved). ``Study.get`` resolves a
unit through the registry, the plan expands a config into units and their inputs (a DAG), and
the catalog lists the units the cache holds: a stage registered here is seen by all three.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Callable, Mapping

#: name → Stage, in registration order
STAGES: dict[str, "Stage"] = {}


@dataclass(frozen=True)
class Unit:
    """One stage of one target for one subject (``subject`` None: the stage reads no BOLD).

    ``target`` is a frozen dataclass of plain values (e.g. :class:`alignment.keys.LayerKey`):
    a unit is hashable and picklable, so an executor can ship it to another process.
    """

    stage: str
    target: Any
    subject: str | None = None

    def label(self) -> str:
        what = self.target.label() if hasattr(self.target, "label") else str(self.target)
        return f"{self.stage} {what}" + (f" sub-{self.subject}" if self.subject is not None else "")


#: ``inputs(study, unit, resolve) → {role: Unit}``; ``resolve(unit) → Entry`` reads an input
#: that decides which inputs exist (e.g. a model's layers), in the caller's mode
Inputs = Callable[[Any, Unit, Callable[[Unit], Any]], Mapping[str, Unit]]
#: ``params(study, unit, inputs) → dict``: what keys the result (inputs: role → Entry)
Params = Callable[[Any, Unit, Mapping[str, Any]], dict]
#: ``compute(study, unit, inputs) → (arrays, meta)``
Compute = Callable[[Any, Unit, Mapping[str, Any]], tuple[dict, dict]]
#: ``expand(layer_keys, plan, baselines) → [target]``: the targets a run config's model plan
#: gives this analysis
Expand = Callable[[list, Any, Any], list]


def _no_inputs(study, unit, resolve) -> dict:
    return {}


@dataclass(frozen=True)
class Stage:
    """A registered, cached computation.

    Attributes
    ----------
    name : str
        Cache stage name (a folder of the cache).
    version : int
        Code version: bump it when the computation changes, so old results are not read.
    target : type
        The class of the units' targets.
    params, compute, inputs : callables
        See :data:`Params`, :data:`Compute`, :data:`Inputs`.
    options : tuple of str
        The :class:`~alignment.keys.Options` fields the stage's params read (recorded in the
        result's metadata, with those of its inputs, so the catalog knows what computed it).
    per_subject : bool
        Whether a unit names a subject (reads BOLD).
    analysis : str or None
        The name a run config uses for it (``[analyses]``); None: computed only as an input.
    default : bool
        Whether a run config computes it when ``[analyses]`` does not name it.
    expand : callable or None
        See :data:`Expand`; needed when ``analysis`` is set.
    gpu : bool
        Whether it runs on the GPU when the study's device is cuda (a model's forward pass, the
        ridge fits): a Dask executor sends its units to workers that offer a ``GPU`` resource.
    """

    name: str
    version: int
    target: type
    params: Params
    compute: Compute
    inputs: Inputs = _no_inputs
    options: tuple = ()
    per_subject: bool = True
    analysis: str | None = None
    default: bool = False
    expand: Expand | None = None
    gpu: bool = False
    doc: str = field(default="", compare=False)


def register(stage: Stage) -> Stage:
    """Add ``stage`` to :data:`STAGES` (a name registered again is replaced: reloading a module)."""
    if stage.analysis is not None and stage.expand is None:
        raise ValueError(f"stage {stage.name!r}: an analysis needs an expand function")
    STAGES[stage.name] = stage
    return stage


def stage(name: str) -> Stage:
    """The registered stage ``name``; ValueError naming the known ones otherwise."""
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; known: {', '.join(STAGES)}") from None


def analyses() -> dict[str, Stage]:
    """Analysis name (as a run config writes it) → its stage."""
    return {s.analysis: s for s in STAGES.values() if s.analysis is not None}


def default_analyses() -> tuple[str, ...]:
    """The analyses a run config computes unless ``[analyses]`` says otherwise."""
    return tuple(name for name, s in analyses().items() if s.default)


def target_dict(target) -> dict:
    """A target as plain JSON-ready values (recorded in the cache metadata)."""
    return asdict(target) if is_dataclass(target) else {"value": target}
