"""The embedded default: build the simulated experiment and analyse it.

``python -m alignment demo`` = :func:`run_demo`: what the demo computes (:func:`demo_plans`), with
which options (:func:`demo_options`) and where (:func:`demo_root`), then the concept demo
(:func:`run_concept_demo`: concept RSA on a simulated Pereira-like dataset). The datasets
themselves are made by :mod:`alignment.simulation`; :mod:`alignment.validation` checks the
results against their ground truth.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from alignment.cache import Cache
from alignment.data.pereira import PARADIGMS
from alignment.keys import RSAPlan
from alignment.pipeline import Baselines, ModelPlan, Options, Study
from alignment.plan import compute, plan_units
from alignment.simulation import (CLIP_SPEC, CONCEPT_DEMO_MODELS, DEFAULT_CONCEPT_SNR, DEFAULT_SNR, DEMO_SPACES,
                                  METER_SPEC, PLANTING, ROBERTA_SPEC, VIT_SPEC, build_concept_demo, build_demo)

BASELINES = (VIT_SPEC, ROBERTA_SPEC, "minilm")
#: the unimodal models integration sites are tested against (ViT for images, RoBERTa for text):
#: the additive patches are planted from them, so the joint baseline reaches those voxels
INTEGRATION_BASELINES = Baselines(VIT_SPEC, ROBERTA_SPEC)
#: the planted couplings of the VLMs (the additive ones come from the baselines)
VLM_PLANTING = tuple(p for p in PLANTING if p.modality != "additive")
# one ridge penalty per decade: the planted effects are not subtle, and the alpha search is
# the largest cost of a whole-brain fit
DEMO_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)
MAPPING = ("encoding", "neuron_mapping")
CROSS = ("cross_image", "cross_text")


#: MiniLM layers of the core plan: its first and last (its curve's ends)
MINILM_CORE_LAYERS = (0, 5)


def demo_plans(full: bool = False) -> tuple[ModelPlan, ...]:
    """What the demo computes: every view of the app for every demo model.

    The core plan (default) covers the layers the ground truth was planted in plus layer 0 of
    each planted branch as a distractor: encoding and neuron mapping (Overview, Layers,
    Polarity, Redundancy, inspectors), the fusion model's planted cross-modal layers also under
    the single-modality conditions with their tested contrasts (Modality: ``crossmodal``), one
    variance partition of the dual encoder at its planted depth with its tests
    (``specialization``) and the integration test of the fusion layer against
    :data:`INTEGRATION_BASELINES`; the baselines ViT and RoBERTa at every layer (integration
    compares with their best) and MiniLM at :data:`MINILM_CORE_LAYERS`.

    ``full`` computes every layer of every model and kind the demo offers (several times the
    core plan's cost); what the app finds in the cache, it shows.
    """
    if full:
        return (
            ModelPlan(CLIP_SPEC, analyses=MAPPING),
            ModelPlan(METER_SPEC, analyses=MAPPING),
            ModelPlan(METER_SPEC, branches=CROSS, kinds=("mlp",), analyses=MAPPING),
            ModelPlan(METER_SPEC, branches=CROSS, kinds=("attn", "mlp"), conditions=("image", "text"),
                      analyses=("encoding",)),
            *(ModelPlan(spec, analyses=MAPPING) for spec in BASELINES),
            ModelPlan(CLIP_SPEC, analyses=("variance_partition", "specialization")),
            ModelPlan(METER_SPEC, branches=CROSS, conditions=("image+text", "image", "text"), analyses=("crossmodal",)),
            ModelPlan(METER_SPEC, branches=CROSS, analyses=("integration",)),
        )
    layers: dict = {}
    for p in VLM_PLANTING:
        layers.setdefault((p.model, p.branch, p.kind), {0}).add(p.layer)
    plans = [ModelPlan(model, (branch,), tuple(sorted(ls)), (kind,), analyses=MAPPING)
             for (model, branch, kind), ls in layers.items()]
    plans += [ModelPlan(model, (branch,), tuple(sorted(ls)), (kind,), ("image", "text"), analyses=("encoding",))
              for (model, branch, kind), ls in layers.items() if model == METER_SPEC]
    # the tested contrasts of the Modality page (unified BNs, gain > 0) at the planted fusion layers
    plans += [ModelPlan(model, (branch,), tuple(sorted(ls - {0})), (kind,), ("image+text", "image", "text"),
                        analyses=("crossmodal",))
              for (model, branch, kind), ls in layers.items() if model == METER_SPEC and ls - {0}]
    depth = min({p.layer for p in VLM_PLANTING if p.model == CLIP_SPEC and p.branch == "image"}
                & {p.layer for p in VLM_PLANTING if p.model == CLIP_SPEC and p.branch == "text"})
    fused = sorted({p.layer for p in VLM_PLANTING if p.model == METER_SPEC and p.branch == "cross_image"})
    plans += [ModelPlan(INTEGRATION_BASELINES.image, analyses=("encoding",)),
              ModelPlan(INTEGRATION_BASELINES.text, analyses=("encoding",)),
              ModelPlan("minilm", layers=MINILM_CORE_LAYERS, analyses=("encoding",)),
              ModelPlan(CLIP_SPEC, ("image", "text"), (depth,), analyses=("variance_partition", "specialization")),
              ModelPlan(METER_SPEC, ("cross_image",), tuple(fused), analyses=("integration",))]
    return tuple(plans)


def validation_plans(full: bool = False) -> tuple[ModelPlan, ...]:
    """The part of :func:`demo_plans` that :func:`alignment.validation.validate_demo` reads: encoding and neuron
    mapping of the models the ground truth was planted from (the baselines, planted in the
    additive patches, are encoded at every layer) and the integration test of the fusion layer
    (:func:`run_demo` adds the mapping of the planted layers under :data:`STABILITY_SEEDS`)."""
    planted = {p.model for p in PLANTING} | {p.partner[0] for p in PLANTING if p.partner}
    keep = set(MAPPING) | {"integration", "crossmodal"}
    return tuple(replace(plan, analyses=tuple(a for a in plan.analyses if a in keep))
                 for plan in demo_plans(full) if plan.spec in planted and set(plan.analyses) & keep)


def noise_plans() -> tuple[ModelPlan, ...]:
    """What :func:`alignment.validation.validate_demo` needs on a pure-noise demo (``snr=0``: only the checks that
    need no planting apply, calibration and false discoveries of the encoding maps): the
    encoding maps of the VLMs' layers of :func:`validation_plans` under image+text."""
    vlms = {p.model for p in VLM_PLANTING}
    return tuple(replace(plan, analyses=("encoding",)) for plan in validation_plans()
                 if plan.spec in vlms and "encoding" in plan.analyses and plan.conditions == ("image+text",))


def demo_options(seed: int = 0) -> Options:
    """The analysis options the demo is computed with (the app reads with the same)."""
    return Options(seed=seed, alphas=DEMO_ALPHAS, banded_iter=5)


def demo_root(cache: Cache, seed: int = 0, snr: float = DEFAULT_SNR, small: bool = False,
              n_subjects: int | None = None, space: str = DEMO_SPACES[0], n_trs: int | None = None) -> Path:
    """Folder of the demo dataset with these parameters, inside the cache folder."""
    size = ("_small" if small else "") + ("" if n_subjects is None else f"_sub-{n_subjects}") \
        + ("" if n_trs is None else f"_trs-{n_trs}")
    in_space = "" if space == DEMO_SPACES[0] else f"_{space}"
    return cache.root / "datasets" / f"demo_seed-{seed}_snr-{snr:g}{size}{in_space}"


#: the concept demo's name where a dataset is chosen (the app's Dataset field, ``open_study``)
CONCEPT_DEMO = "demo-concepts"


def concept_demo_root(cache: Cache, seed: int = 0, snr: float = DEFAULT_SNR, small: bool = False) -> Path:
    """Folder of the concept demo (:func:`run_concept_demo`) that goes with the movie demo of
    these parameters, inside the cache folder."""
    return cache.root / "datasets" / f"concepts_seed-{seed}_snr-{snr:g}{'_small' if small else ''}"


def concept_snr(snr: float) -> float:
    """The concept demo's SNR for the movie demo's ``snr``: :data:`DEFAULT_CONCEPT_SNR` at the
    default, scaled with it (0 stays 0: the pure-noise check)."""
    return DEFAULT_CONCEPT_SNR * float(snr) / DEFAULT_SNR


#: permutations of the concept demo's RSA (p resolution 1/1001) and bootstrap draws of its CIs
#: (the small demo's: fewer, the bootstraps are most of the RSA's cost)
CONCEPT_DEMO_PERM = 1000
CONCEPT_DEMO_BOOT = 1000
SMALL_CONCEPT_DEMO_BOOT = 200


def concept_rsa_plan(small: bool = False) -> RSAPlan:
    """What the concept demo computes: RSA of every branch of :data:`CONCEPT_DEMO_MODELS` that sees
    the concepts, in every paradigm, against every network, and the models' differences."""
    return RSAPlan(models=CONCEPT_DEMO_MODELS, paradigms=PARADIGMS, n_perm=CONCEPT_DEMO_PERM,
                   n_boot=SMALL_CONCEPT_DEMO_BOOT if small else CONCEPT_DEMO_BOOT)


def concept_demo_study(cache: Cache | str | None = None, seed: int = 0, snr: float = DEFAULT_SNR,
                       small: bool = False, read_only: bool = False, progress: bool = False) -> Study:
    """The study of the concept demo (built: :func:`run_concept_demo`) with the demo's options."""
    from alignment.data import load_dataset

    cache = cache if isinstance(cache, Cache) else Cache(cache)
    return Study(load_dataset(concept_demo_root(cache, seed, snr, small)), cache, demo_options(seed), device="cpu",
                 progress=progress, read_only=read_only)


def run_concept_demo(cache: Cache | str | None = None, seed: int = 0, snr: float = DEFAULT_SNR, small: bool = False,
                     progress: bool | Callable[[int, int, str], None] = True, executor=None) -> Study:
    """Build the concept demo (if absent; :func:`alignment.simulation.build_concept_demo` at
    :func:`concept_snr` of ``snr``) and compute :func:`concept_rsa_plan` into the cache."""
    from alignment.stages.rsa import rsa_targets

    cache = cache if isinstance(cache, Cache) else Cache(cache)
    build_concept_demo(concept_demo_root(cache, seed, snr, small), seed=seed, snr=concept_snr(snr), small=small)
    study = concept_demo_study(cache, seed, snr, small, progress=progress is True)
    units = [study.unit(stage, target) for stage, target in rsa_targets(study, concept_rsa_plan(small))]
    compute(study, (), study.dataset.subjects, progress=progress, units=units, executor=executor)
    return study


def run_demo(cache: Cache | str | None = None, seed: int = 0, snr: float = DEFAULT_SNR, small: bool = False,
             progress: bool | Callable[[int, int, str], None] = True, full: bool = False,
             plans: tuple[ModelPlan, ...] | None = None, n_subjects: int | None = None,
             space: str = DEMO_SPACES[0], n_trs: int | None = None, scheduler=None) -> Study:
    """Build the demo dataset (if absent; ``small``: test-sized; ``n_subjects`` and ``n_trs`` per
    run: other than the default; ``space``: one of :data:`DEMO_SPACES`) and compute ``plans`` (default the demo plan, :func:`demo_plans`; ``full``:
    every layer) into the cache, and, when something is planted, the neuron mapping of the
    planted layers under the other :data:`STABILITY_SEEDS` for the first subject; and the
    concept demo (:func:`run_concept_demo`). ``scheduler``: where the
    units run (:func:`alignment.executor.open_executor`; default here, serially). Returns the
    movie demo's study."""
    from alignment.data import load_dataset
    from alignment.executor import open_executor

    cache = cache if isinstance(cache, Cache) else Cache(cache)
    # the executor first: a scheduler that cannot be reached fails before anything is built
    with open_executor(scheduler) as executor:  # the demo computes on the CPU
        root = build_demo(demo_root(cache, seed, snr, small, n_subjects, space, n_trs), seed=seed, snr=snr,
                          small=small, n_subjects=n_subjects, space=space, n_trs=n_trs)
        study = Study(load_dataset(root), cache, demo_options(seed), device="cpu", progress=progress is True)
        plans = plans or demo_plans(full)
        # first the maps the app opens on (the first model's first branch, every subject), so it
        # shows one while the rest computes; the same units, in another order
        first = plans[0]
        if "encoding" in (first.analyses or ()):
            opening = replace(first, branches=first.branches[:1] if first.branches else None, analyses=("encoding",))
            # its first layer's r maps before any null (a ridge fit each; the app draws them
            # while their significance computes)
            key = next(target for stage, target in plan_units(study, opening) if stage == "encoding")
            fits = [study.unit("encoding_fit", key, s) for s in study.dataset.subjects
                    if not study.has("encoding", key, s)]
            if fits:
                compute(study, (), study.dataset.subjects, progress=progress, executor=executor, units=fits)
            compute(study, (opening,), study.dataset.subjects, progress=progress, executor=executor)
        compute(study, plans, study.dataset.subjects, progress=progress, baselines=INTEGRATION_BASELINES,
                executor=executor)
        run_concept_demo(cache, seed, snr, small, progress, executor)
        if snr > 0:  # polarity stability: the planted layers under the other dictionary seeds (nothing to compare on noise)
            for other in STABILITY_SEEDS:
                if other != study.options.seed:
                    compute(Study(study.dataset, cache, replace(study.options, seed=other), device="cpu"),
                            stability_plans(), study.dataset.subjects[:STABILITY_SUBJECTS], progress=progress,
                            executor=executor)
    return study


#: dictionary seeds (``Options.seed``) the planted layers are mapped under for polarity stability,
#: for the first STABILITY_SUBJECTS subjects (each seed's mapping is a whole extra neuron mapping)
STABILITY_SEEDS = (0, 1, 2)
STABILITY_SUBJECTS = 1


def stability_plans() -> tuple[ModelPlan, ...]:
    """Neuron mapping of the planted layers of the VLMs: what polarity stability compares across
    :data:`STABILITY_SEEDS`."""
    layers: dict = {}
    for p in VLM_PLANTING:
        layers.setdefault((p.model, p.branch, p.kind), set()).add(p.layer)
    return tuple(ModelPlan(model, (branch,), tuple(sorted(ls)), (kind,), analyses=("neuron_mapping",))
                 for (model, branch, kind), ls in layers.items())
