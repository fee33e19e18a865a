"""Plans: what to compute, as data, and the serial executor that computes it.

A run config (or the demo) names model plans and analyses; :func:`expand` turns them into a
:class:`Plan`: every unit (stage, target, subject) in dependency order, with the units each one
reads. Units and the :class:`~alignment.pipeline.Study` are picklable and self-contained, so
another executor (:mod:`alignment.executor`: Dask) runs :func:`run_unit` in other processes; :func:`run_plan` runs them here,
one after the other, subject by subject (one subject's BOLD in memory). Every unit is stored as
soon as it is done, so an interrupted plan resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from alignment.keys import Baselines, LayerKey, ModelPlan
from alignment.pipeline import Study
from alignment.stages import Unit, analyses as registered_analyses, default_analyses

Progress = Callable[[int, int, str], None]


def plan_layers(study: Study, plan: ModelPlan) -> list[LayerKey]:
    """Every LayerKey a model plan names (branches/layers resolved against the model's
    extracted ANs, which are computed here when missing)."""
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


def plan_units(study: Study, plan: ModelPlan, analyses: Sequence[str] | None = None,
               baselines: Baselines | None = None) -> list[tuple[str, object]]:
    """(stage, target) pairs one model plan asks for, per subject (before their inputs).

    ``analyses``: analysis names (as a run config writes them) for a plan that names none
    (default: :func:`alignment.stages.default_analyses`); ``baselines``: the models of the
    integration analysis.
    """
    known = registered_analyses()
    keys = plan_layers(study, plan)
    pairs: list[tuple[str, object]] = []
    for name in plan.analyses or analyses or default_analyses():
        if name not in known:
            raise ValueError(f"unknown analysis {name!r}; known: {', '.join(known)}")
        spec = known[name]
        pairs += [(spec.name, target) for target in spec.expand(keys, plan, baselines)]
    return pairs


@dataclass(frozen=True)
class Plan:
    """Units in dependency order (each after the units it reads) and what each one reads.

    ``requested``: the units the plan was asked for (the others are their inputs).
    """

    units: tuple[Unit, ...]
    needs: dict
    requested: frozenset

    def __len__(self) -> int:
        return len(self.units)


def expand(study: Study, plans: Sequence[ModelPlan], subjects: Sequence[str], analyses: Sequence[str] | None = None,
           baselines: Baselines | None = None, units: Sequence[Unit] = ()) -> Plan:
    """The plan of ``plans`` for every subject, and of ``units`` (e.g. concept RSA, which no
    model plan names): requested units and all their inputs.

    Order: subject by subject, each requested unit after its not yet listed inputs (depth
    first), so a serial run keeps one subject's BOLD in memory. Working out a unit's inputs
    may extract a model's ANs (its layers decide which inputs exist).
    """
    order: dict[Unit, None] = {}
    needs: dict[Unit, tuple[Unit, ...]] = {}

    def visit(unit: Unit):
        if unit in needs:
            return
        deps = tuple(study.inputs(unit).values())
        needs[unit] = deps
        for dep in deps:
            visit(dep)
        order[unit] = None

    requested = list(dict.fromkeys(  # a stage that reads no BOLD: one unit for all subjects
        study.unit(stage, target, subject)
        for subject in subjects for plan in plans
        for stage, target in plan_units(study, plan, analyses, baselines))) + list(units)
    for unit in requested:
        visit(unit)
    return Plan(tuple(order), needs, frozenset(requested))


def run_unit(study: Study, unit: Unit):
    """Compute (or find cached) one unit; its inputs are read or computed as needed."""
    return study.get(unit.stage, unit.target, unit.subject, compute=True)


def run_plan(study: Study, plan: Plan, progress: bool | Progress = True,
             prioritize: Callable[[list[Unit]], list[Unit]] | None = None) -> list[Unit]:
    """Run every unit of ``plan`` in order, here (the serial executor); returns them in the
    order they ran.

    ``progress``: True for a progress bar, or a callback ``(done, total, label)``.
    ``prioritize``: asked before each unit with the units still to run, returns them in the
    order to run them (e.g. what a page waits for first). Any order is correct: a unit whose
    inputs have not run yet computes them (:func:`run_unit`).
    """
    from tqdm.auto import tqdm

    total, remaining, ran = len(plan), list(plan.units), []
    with tqdm(total=total, unit="unit", disable=progress is not True) as bar:
        for i in range(total):
            if prioritize is not None:
                ordered = list(prioritize(remaining))
                if len(ordered) != len(remaining) or set(ordered) != set(remaining):
                    raise ValueError("prioritize must return the remaining units, reordered")
                remaining = ordered
            unit = remaining.pop(0)
            ran.append(unit)
            label = unit.label()
            bar.set_description(label[:60])
            if callable(progress):
                progress(i, total, label)
            run_unit(study, unit)
            bar.update(1)
    if callable(progress):
        progress(total, total, "done")
    return ran


def compute(study: Study, plans: Sequence[ModelPlan], subjects: Sequence[str], analyses: Sequence[str] | None = None,
            progress: bool | Progress = True, baselines: Baselines | None = None, units: Sequence[Unit] = (),
            executor=None) -> Plan:
    """Expand ``plans`` for ``subjects`` (and ``units``) and run the plan with ``executor``
    (default: here, serially; see :mod:`alignment.executor`); returns the plan."""
    plan = expand(study, plans, subjects, analyses, baselines, units)
    if executor is None:
        run_plan(study, plan, progress)
    else:
        executor.run(study, plan, progress)
    return plan


def run_config(config, cache=None, progress: bool = True, scheduler=None) -> Plan:
    """Compute everything a :class:`~alignment.pipeline.RunConfig` names into the cache.

    ``scheduler``: where the units run (:func:`alignment.executor.open_executor`: None or
    ``"sync"`` here, ``"local:N"``, a scheduler address, a ``distributed.Client`` or a cluster).
    """
    from alignment.data import load_dataset
    from alignment.executor import open_executor, uses_gpu

    dataset = load_dataset(config.dataset)
    study = Study(dataset, cache, config.options, device=config.device, progress=progress,
                  voxel_chunk=config.voxel_chunk)
    subjects = list(config.subjects or dataset.subjects)
    missing = set(subjects) - set(dataset.subjects)
    if missing:
        raise ValueError(f"subjects {sorted(missing)} not in {dataset.root}; found {dataset.subjects}")
    units = []
    if config.rsa is not None:  # concept RSA: the [rsa] table
        from alignment.stages.rsa import rsa_targets

        chosen = tuple(subjects) if config.subjects else ()
        units = [study.unit(stage, target) for stage, target in rsa_targets(study, config.rsa, chosen)]
    with open_executor(scheduler, gpu=scheduler is not None and uses_gpu(study)) as executor:
        return compute(study, config.models, subjects, config.analyses, progress, baselines=config.baselines,
                       units=units, executor=executor)
