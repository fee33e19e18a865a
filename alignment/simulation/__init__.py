"""The simulated demo experiment: procedural stimuli, planted artificial neurons, BOLD with a
known ground truth (:mod:`alignment.simulation.experiment`, stimuli from
:mod:`alignment.simulation.scenes`).

It sits above the datasets, models and features it uses: it draws stimuli, extracts the
planted models' ANs and writes a dataset in the custom folder format, which
:func:`alignment.data.load_dataset` opens as the ``demo`` kind. Running and validating the demo
analyses is :mod:`alignment.demo`.

>>> from alignment.simulation import build_demo, load_ground_truth
>>> root = build_demo("demo", small=True)          # doctest: +SKIP
>>> truth = load_ground_truth(root)                # doctest: +SKIP

:mod:`alignment.simulation.concepts` writes a simulated Pereira-like concept dataset (kind
``pereira2018``) whose network RDMs are planted from chosen model layers
(:func:`build_concept_dataset`).
"""

from alignment.simulation.concepts import (
    CATEGORIES,
    CONCEPT_DEMO_MODELS,
    CONCEPT_DEMO_PLANTING,
    CONCEPT_NETWORKS,
    DEFAULT_CONCEPT_SNR,
    ConceptPlant,
    ConceptStimuli,
    build_concept_dataset,
    build_concept_demo,
    concept_source,
    load_concept_ground_truth,
    plant_concept_responses,
    write_concept_stimuli,
)
from alignment.simulation.experiment import (
    CLIP_SPEC,
    DEFAULT_DRIFT,
    DEFAULT_LONG_MEMORY,
    DEFAULT_RHO,
    DEFAULT_SNR,
    DEMO_MODELS,
    DEMO_SPACES,
    DEMO_VERSION,
    METER_SPEC,
    PLANTING,
    GroundTruth,
    ROBERTA_SPEC,
    VIT_SPEC,
    PlantSpec,
    build_demo,
    default_demo_root,
    load_ground_truth,
)

__all__ = [
    "CATEGORIES",
    "CONCEPT_DEMO_MODELS",
    "CONCEPT_DEMO_PLANTING",
    "CONCEPT_NETWORKS",
    "DEFAULT_CONCEPT_SNR",
    "ConceptPlant",
    "ConceptStimuli",
    "build_concept_dataset",
    "build_concept_demo",
    "concept_source",
    "load_concept_ground_truth",
    "plant_concept_responses",
    "write_concept_stimuli",
    "CLIP_SPEC",
    "DEFAULT_DRIFT",
    "DEFAULT_LONG_MEMORY",
    "DEFAULT_RHO",
    "DEFAULT_SNR",
    "DEMO_MODELS",
    "DEMO_SPACES",
    "DEMO_VERSION",
    "METER_SPEC",
    "PLANTING",
    "GroundTruth",
    "ROBERTA_SPEC",
    "VIT_SPEC",
    "PlantSpec",
    "build_demo",
    "default_demo_root",
    "load_ground_truth",
]
