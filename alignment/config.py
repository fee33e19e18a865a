"""Run configs, checked against one declared schema (:mod:`alignment.schema`).

``python -m alignment run CONFIG.toml`` reads a run config (format in the README) into a
:class:`RunConfig`. The schema (pydantic models below) declares every table and key,
its type and its allowed values: unknown keys, wrong types (no ``"20"`` for 20, no ``"no"`` for
false) and values out of range or outside a closed set are refused with a :class:`ConfigError`
of one line that names the file, the key and what it accepts, e.g.::

    run.toml: [options] glm: unknown glm 'seperate'; expected one of 'separate', 'joint'

Values are checked, not converted: :class:`RunConfig` is built from the values as written (a
TOML ``1`` stays an int where a float is allowed), so the cache keys of a config are what they
always were. The defaults live on the dataclasses a config builds (:class:`Options`,
:class:`ModelPlan`, :class:`Baselines`, :class:`RunConfig`); a key a file leaves out is left
out of the dataclass' arguments, never filled in here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, NonNegativeInt, PositiveInt

from alignment.analyses.integration import INFLATIONS
from alignment.analyses.rsa import METRICS as RDM_METRICS
from alignment.concepts import ABLATIONS
from alignment.conventions import AN_KINDS, CONDITIONS
from alignment.data.pereira import PARADIGMS
from alignment.keys import Baselines, ModelPlan, Options, RSAPlan
from alignment.schema import (ConfigError, NonEmpty, PositiveNumber, Probability, Table, check,  # noqa: F401
                              did_you_mean)
from alignment.stages import analyses as registered_analyses, default_analyses

__all__ = ["DEVICES", "ConfigError", "RunConfig", "RunConfigToml", "options_from_dict"]

# closed choices of the run config (the code that reads each option tests for these values)
DEVICES = ("auto", "cpu", "cuda")
HRFS = ("spm", "fir", "none")  # SPM canonical HRF, FIR delays (ridge designs only), or the ANs unconvolved
NULLS = ("circular", "block")  # circular shifts within run, or block permutation
NULL_TAILS = ("normal", "empirical")  # see stats.p_from_null
GLMS = ("separate", "joint")  # one (marginal) GLM per atom, or all atoms in one GLM (default)
BEST_LAYER_SPLITS = ("participants", "concepts")  # see analyses.rsa.best_layer
GLM_NOISES = ("ols",) + tuple(f"ar{p}" for p in range(1, 11))  # noise model of the atom GLM


# ---------------------------------------------------------------------- schemas
def _known_analyses(names):
    """Analysis names (a list, or the keys of the [analyses] table) must be registered ones."""
    known = tuple(registered_analyses())  # read now: the registry may have grown since import
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown analyses {unknown}{did_you_mean(unknown, known)}; known: {', '.join(known)}")
    return names


class StudyTable(Table):
    dataset: str = Field(description="a dataset folder")
    subjects: Annotated[list[str | int], NonEmpty] | None = Field(None, description="a non-empty list of subject ids")
    device: Literal[DEVICES] | None = None
    voxel_chunk: PositiveInt | None = Field(None, description="a positive number of voxels")


class ModelTable(Table):
    spec: str = Field(description="a model spec (see `python -m alignment models`)")
    branches: Annotated[list[str], NonEmpty] | None = None
    layers: Literal["all"] | Annotated[list[NonNegativeInt], NonEmpty] | None = Field(
        None, description="\"all\" or a list of layer indices")
    kinds: Annotated[list[Literal[AN_KINDS]], NonEmpty] | None = None
    conditions: Annotated[list[Literal[CONDITIONS]], NonEmpty] | None = None
    analyses: Annotated[list[str], NonEmpty, AfterValidator(_known_analyses)] | None = Field(
        None, description="a list of analysis names")


class IntegrationTable(Table):
    image_baseline: str = Field(description="an image model spec")
    text_baseline: str = Field(description="a text model spec")
    image_layer: Literal["best"] | NonNegativeInt | None = Field(None, description="a layer index or \"best\"")
    text_layer: Literal["best"] | NonNegativeInt | None = Field(None, description="a layer index or \"best\"")


class OptionsTable(Table):
    """One key per field of :class:`~alignment.keys.Options` (whose defaults apply)."""

    noun: ClassVar[str] = "analysis options"
    hrf: Literal[HRFS] | None = None
    alphas: Annotated[list[PositiveNumber], NonEmpty] | None = None
    null: Literal[NULLS] | None = None
    n_null: PositiveInt | None = None
    null_tail: Literal[NULL_TAILS] | None = None
    n_atoms: PositiveInt | None = None
    glm: Literal[GLMS] | None = None
    glm_noise: Literal[GLM_NOISES] | None = None
    sparsity: PositiveNumber | None = None
    seed: NonNegativeInt | None = None
    fdr_q: Probability | None = None
    banded_iter: PositiveInt | None = None
    block_len: PositiveInt | None = None
    block_inflation: Literal[INFLATIONS] | None = None


class RSATable(Table):
    """Concept RSA on a concept-wise dataset (:mod:`alignment.stages.rsa`); defaults: :class:`RSAPlan`."""

    models: Annotated[list[str], NonEmpty] = Field(description="a non-empty list of model specs")
    paradigms: Annotated[list[Literal[PARADIGMS]], NonEmpty] | None = None
    networks: Annotated[list[str], NonEmpty] | None = Field(None, description="a non-empty list of network names")
    branches: Annotated[list[str], NonEmpty] | None = None
    metric: Literal[tuple(RDM_METRICS)] | None = None
    ablations: Annotated[list[Literal[ABLATIONS]], NonEmpty] | None = None
    control: str | None = Field(None, description="a language-only model spec")
    n_perm: PositiveInt | None = None
    n_boot: PositiveInt | None = None
    split: Literal[BEST_LAYER_SPLITS] | None = None
    seed: NonNegativeInt | None = None


class RunConfigToml(Table):
    """A run config file: ``[study]``, ``[[models]]``, ``[analyses]``, ``[integration]``,
    ``[options]``, ``[rsa]`` (``[[models]]`` may be left out when ``[rsa]`` is there)."""

    noun: ClassVar[str] = "tables"
    study: StudyTable
    models: Annotated[list[ModelTable], NonEmpty] | None = None
    analyses: Annotated[dict[str, bool], AfterValidator(_known_analyses)] | None = Field(
        None, description="an [analyses] table of analysis = true/false (e.g. encoding = true)")
    integration: IntegrationTable | None = None
    options: OptionsTable | None = None
    rsa: RSATable | None = None


# ---------------------------------------------------------------------- run configs
@dataclass(frozen=True)
class RunConfig:
    """What ``python -m alignment run CONFIG.toml`` computes (see the README for the format)."""

    dataset: str
    subjects: tuple | None = None
    models: tuple = ()
    analyses: tuple = field(default_factory=default_analyses)
    options: Options = field(default_factory=Options)
    device: str = "auto"
    voxel_chunk: int | None = None  # voxels per fit chunk: bounds a unit's memory, changes no result
    baselines: Baselines | None = None  # [integration]: needed by the "integration" analysis
    rsa: RSAPlan | None = None  # [rsa]: concept RSA

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Read and check a run config file; raises :class:`ConfigError` (one line) on any mistake."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}", path) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid TOML: {err}", path) from None
        check(RunConfigToml, raw, path)
        return cls._build(raw, path)

    @classmethod
    def _build(cls, raw: dict, path: Path) -> "RunConfig":
        """The config of a checked file (values as written, defaults from the dataclasses)."""
        study = raw["study"]
        dataset = study["dataset"]
        if not Path(dataset).is_absolute():
            dataset = str((path.parent / dataset).resolve())
        if "models" not in raw and "rsa" not in raw:
            raise ConfigError(f"{path}: no [[models]] tables; add at least one (keys: "
                              f"{', '.join(ModelTable.model_fields)}), or an [rsa] table", path)
        models = tuple(_model_plan(m) for m in raw.get("models", ()))
        table = raw.get("analyses", {})
        chosen = tuple(name for name, stage in registered_analyses().items() if table.get(name, stage.default))
        baselines = _baselines(raw.get("integration"))
        wanted = set(chosen).union(*(m.analyses or () for m in models))
        if "integration" in wanted and baselines is None:
            raise ConfigError(f"{path}: the integration analysis needs an [integration] table with "
                              "image_baseline and text_baseline model specs", path)
        extra = {name: study[name] for name in ("device", "voxel_chunk") if name in study}
        if "subjects" in study:
            extra["subjects"] = tuple(str(s) for s in study["subjects"])
        if "rsa" in raw:
            extra["rsa"] = _rsa_plan(raw["rsa"])
        return cls(dataset=dataset, models=models, analyses=chosen, baselines=baselines,
                   options=_options(raw.get("options", {})), **extra)


def _model_plan(table: dict) -> ModelPlan:
    kwargs = {name: tuple(table[name]) for name in ("branches", "kinds", "conditions", "analyses") if name in table}
    if "layers" in table:
        kwargs["layers"] = None if table["layers"] == "all" else tuple(table["layers"])
    return ModelPlan(spec=table["spec"], **kwargs)


def _rsa_plan(table: dict) -> RSAPlan:
    lists = ("models", "paradigms", "networks", "branches", "ablations")
    return RSAPlan(**{name: tuple(value) if name in lists else value for name, value in table.items()})


def _baselines(table: dict | None) -> Baselines | None:
    if table is None:
        return None
    # "best" is the dataclass' None: the best layer per subject
    layers = {k: table[k] for k in ("image_layer", "text_layer") if k in table and table[k] != "best"}
    return Baselines(table["image_baseline"], table["text_baseline"], **layers)


def _options(values: dict) -> Options:
    if "alphas" in values:
        values = {**values, "alphas": tuple(float(a) for a in values["alphas"])}
    return Options(**values)


def options_from_dict(values: dict) -> Options:
    """:class:`Options` from a dict of option values, checked as an ``[options]`` table is."""
    check(OptionsTable, values, None, root="[options]")
    return _options(values)
