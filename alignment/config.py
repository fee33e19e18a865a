"""Run configs and ``dataset.toml`` files, each checked against one declared schema.

``python -m alignment run CONFIG.toml`` reads a run config (format in the README) into a
:class:`RunConfig`; :class:`~alignment.data.Dataset` checks its ``dataset.toml`` with
:func:`check_dataset_toml`. The schemas (pydantic models below) declare every table and key,
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

import difflib
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import (AfterValidator, AllowInfNan, BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt,
                      StringConstraints, ValidationError, field_validator)

from alignment.spaces import SPACE_SIZES
from alignment.extract import CONDITIONS
from alignment.models.base import AN_KINDS
from alignment.keys import Baselines, ModelPlan, Options
from alignment.stages import analyses as registered_analyses, default_analyses

__all__ = ["DEVICES", "ConfigError", "DatasetToml", "RunConfig", "RunConfigToml", "check_dataset_toml",
           "options_from_dict"]

# closed choices of the run config (the code that reads each option tests for these values)
DEVICES = ("auto", "cpu", "cuda")
HRFS = ("spm", "fir", "none")  # SPM canonical HRF, FIR delays (ridge designs only), or the ANs unconvolved
NULLS = ("circular", "block")  # circular shifts within run, or block permutation
NULL_TAILS = ("normal", "empirical")  # see stats._p_from_null
GLMS = ("separate", "joint")
#: run ids name files (stimuli/<run>.tsv, sub-<id>/<run>.npy)
SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"


class ConfigError(ValueError):
    """A config file (or an options dict) breaks its schema; the message is one line.

    Attributes
    ----------
    path : str or None
        The offending file, when there is one.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


# ---------------------------------------------------------------------- schemas
class _Table(BaseModel):
    """A TOML table: strict types, no keys beyond the declared ones."""

    model_config = ConfigDict(strict=True, extra="forbid")
    #: what error messages call the keys of this table
    noun: ClassVar[str] = "keys"


NonEmpty = MinLen(1)
Probability = Annotated[float, Gt(0), Lt(1)]
PositiveNumber = Annotated[float, Gt(0), AllowInfNan(False)]


def _known_analyses(names):
    """Analysis names (a list, or the keys of the [analyses] table) must be registered ones."""
    known = tuple(registered_analyses())  # read now: the registry may have grown since import
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown analyses {unknown}{_did_you_mean(unknown, known)}; known: {', '.join(known)}")
    return names


class StudyTable(_Table):
    dataset: str = Field(description="a dataset folder")
    subjects: Annotated[list[str | int], NonEmpty] | None = Field(None, description="a non-empty list of subject ids")
    device: Literal[DEVICES] | None = None


class ModelTable(_Table):
    spec: str = Field(description="a model spec (see `python -m alignment models`)")
    branches: Annotated[list[str], NonEmpty] | None = None
    layers: Literal["all"] | Annotated[list[NonNegativeInt], NonEmpty] | None = Field(
        None, description="\"all\" or a list of layer indices")
    kinds: Annotated[list[Literal[AN_KINDS]], NonEmpty] | None = None
    conditions: Annotated[list[Literal[CONDITIONS]], NonEmpty] | None = None
    analyses: Annotated[list[str], NonEmpty, AfterValidator(_known_analyses)] | None = Field(
        None, description="a list of analysis names")


class IntegrationTable(_Table):
    image_baseline: str = Field(description="an image model spec")
    text_baseline: str = Field(description="a text model spec")
    image_layer: Literal["best"] | NonNegativeInt | None = Field(None, description="a layer index or \"best\"")
    text_layer: Literal["best"] | NonNegativeInt | None = Field(None, description="a layer index or \"best\"")


class OptionsTable(_Table):
    """One key per field of :class:`~alignment.keys.Options` (whose defaults apply)."""

    noun: ClassVar[str] = "analysis options"
    hrf: Literal[HRFS] | None = None
    alphas: Annotated[list[PositiveNumber], NonEmpty] | None = None
    null: Literal[NULLS] | None = None
    n_null: PositiveInt | None = None
    null_tail: Literal[NULL_TAILS] | None = None
    n_atoms: PositiveInt | None = None
    glm: Literal[GLMS] | None = None
    sparsity: PositiveNumber | None = None
    seed: NonNegativeInt | None = None
    fdr_q: Probability | None = None
    banded_iter: PositiveInt | None = None
    block_len: PositiveInt | None = None


class RunConfigToml(_Table):
    """A run config file: ``[study]``, ``[[models]]``, ``[analyses]``, ``[integration]``, ``[options]``."""

    noun: ClassVar[str] = "tables"
    study: StudyTable
    models: Annotated[list[ModelTable], NonEmpty]
    analyses: Annotated[dict[str, bool], AfterValidator(_known_analyses)] | None = Field(
        None, description="an [analyses] table of analysis = true/false (e.g. encoding = true)")
    integration: IntegrationTable | None = None
    options: OptionsTable | None = None


class DatasetTable(_Table):
    name: Annotated[str, StringConstraints(pattern=r"\S")] = Field(description="a non-empty string")
    tr: PositiveNumber = Field(description="a positive number of seconds")
    space: Literal[tuple(SPACE_SIZES)]


class RunTable(_Table):
    id: Annotated[str, StringConstraints(pattern=SAFE_ID)] | NonNegativeInt = Field(
        description="a run id usable as a file name (letters, digits, '.', '_', '+', '-')")
    n_trs: PositiveInt


class DatasetToml(_Table):
    """A dataset's ``dataset.toml``: ``[dataset]`` and one ``[[runs]]`` table per run."""

    noun: ClassVar[str] = "tables"
    dataset: DatasetTable
    runs: Annotated[list[RunTable], NonEmpty]

    @field_validator("runs")
    @classmethod
    def _unique_ids(cls, runs):
        seen = set()
        for run in runs:
            if str(run.id) in seen:
                raise ValueError(f"run id {str(run.id)!r} appears twice")
            seen.add(str(run.id))
        return runs


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
    baselines: Baselines | None = None  # [integration]: needed by the "integration" analysis

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
        _check(RunConfigToml, raw, path)
        return cls._build(raw, path)

    @classmethod
    def _build(cls, raw: dict, path: Path) -> "RunConfig":
        """The config of a checked file (values as written, defaults from the dataclasses)."""
        study = raw["study"]
        dataset = study["dataset"]
        if not Path(dataset).is_absolute():
            dataset = str((path.parent / dataset).resolve())
        models = tuple(_model_plan(m) for m in raw["models"])
        table = raw.get("analyses", {})
        chosen = tuple(name for name, stage in registered_analyses().items() if table.get(name, stage.default))
        baselines = _baselines(raw.get("integration"))
        wanted = set(chosen).union(*(m.analyses or () for m in models))
        if "integration" in wanted and baselines is None:
            raise ConfigError(f"{path}: the integration analysis needs an [integration] table with "
                              "image_baseline and text_baseline model specs", path)
        extra = {"device": study["device"]} if "device" in study else {}
        if "subjects" in study:
            extra["subjects"] = tuple(str(s) for s in study["subjects"])
        return cls(dataset=dataset, models=models, analyses=chosen, baselines=baselines,
                   options=_options(raw.get("options", {})), **extra)


def _model_plan(table: dict) -> ModelPlan:
    kwargs = {name: tuple(table[name]) for name in ("branches", "kinds", "conditions", "analyses") if name in table}
    if "layers" in table:
        kwargs["layers"] = None if table["layers"] == "all" else tuple(table["layers"])
    return ModelPlan(spec=table["spec"], **kwargs)


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
    _check(OptionsTable, values, None, root="[options]")
    return _options(values)


def check_dataset_toml(raw: dict, path: str | Path) -> DatasetToml:
    """Check a parsed ``dataset.toml`` against :class:`DatasetToml`; raises :class:`ConfigError`."""
    return _check(DatasetToml, raw, path)


# ---------------------------------------------------------------------- one-line errors
_MISSING = object()


def _check(schema: type[BaseModel], raw: Any, path: str | Path | None, root: str = "") -> BaseModel:
    """Validate ``raw`` against ``schema``; on failure raise a :class:`ConfigError` whose message
    is the first problem (unknown keys first: they explain the missing ones) in one line.

    ``root``: how messages name the top level (``""`` for a file, ``"[options]"`` for a table).
    """
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        line = _line(schema, raw, errors[0], errors, root)
        raise ConfigError(f"{path}: {line}" if path is not None else line, path) from None


def _line(schema, raw, error: dict, errors: list[dict], root: str) -> str:
    """One readable line for one pydantic error."""
    kind = error["type"]
    loc, ann, meta, description = _locate(schema, tuple(error["loc"]))
    base = _strip(ann)
    if kind == "extra_forbidden":  # every unknown key of the same table, in one message
        names = [e["loc"][-1] for e in errors if e["type"] == kind and tuple(e["loc"][:-1]) == loc]
        where = _render(schema, loc, root, as_table=True)
        known = list(base.model_fields)
        return (f"{where + ' has ' if where else ''}unknown {base.noun} {names}{_did_you_mean(names, known)}; "
                f"known: {', '.join(known)}")
    if kind == "value_error":  # a validator's own sentence
        return f"{_render(schema, loc, root, as_table=True)}: {error['ctx']['error']}"
    tables = get_origin(base) is list and _is_model(get_args(base)[0])  # [[name]]: an array of tables
    if kind == "missing" or (tables and kind == "too_short"):
        where = _render(schema, loc, root, as_table=True)
        if _is_model(base):
            return f"missing {where} table (keys: {', '.join(base.model_fields)})"
        if tables:
            return f"no {where} tables; add at least one (keys: {', '.join(get_args(base)[0].model_fields)})"
        where = _render(schema, loc[:-1], root, as_table=True)
        return (f"{where + ' is' if where else 'the file is'} missing the key '{loc[-1]}' "
                f"(it needs a '{loc[-1]}': {description or _describe(ann, meta)})")
    value = _value(raw, loc)
    if get_origin(base) is Literal:
        return (f"{_render(schema, loc, root)}: unknown {loc[-1]} {_toml(value)}; expected one of "
                f"{', '.join(repr(c) for c in get_args(base))}")
    expected = description or (f"one or more [[{loc[-1]}]] tables" if tables else _describe(ann, meta))
    return f"{_render(schema, loc, root)} must be {expected}, got {_toml(value)}"


def _locate(schema, loc: tuple):
    """Follow ``loc`` through the schema down to the key it concerns.

    Returns (loc of that key, its annotation, its constraints, its description): the walk stops
    at a key whose value is not a table (a union's member tags and list positions inside a value
    are not keys), at an unknown key, or at the end of ``loc``.
    """
    ann, meta, description = schema, [], None
    for i, part in enumerate(loc):
        base = _strip(ann)
        if _is_model(base) and isinstance(part, str) and part in base.model_fields:
            info = base.model_fields[part]
            ann, meta, description = info.annotation, list(info.metadata), info.description
        elif get_origin(base) is list and _is_model(get_args(base)[0]) and isinstance(part, int):
            ann, meta, description = get_args(base)[0], [], None
        elif get_origin(base) is dict and isinstance(part, str):
            ann, meta, description = get_args(base)[1], [], None
        else:
            return loc[:i], ann, meta, description
    return loc, ann, meta, description


def _render(schema, loc: tuple, root: str, as_table: bool = False) -> str:
    """How a message names a key found by :func:`_locate`: ``[options] glm``,
    ``[[models]] #2 layers``, ``analyses``; with ``as_table``, a key holding a table is named by
    its header (``[analyses]``, ``[[models]]``). ``root`` names the top level."""
    header, dotted, ann = root, [], schema
    for i, part in enumerate(loc):
        base = _strip(ann)
        if isinstance(part, int):  # position in an array of tables
            header, ann = f"[[{'.'.join(dotted)}]] #{part + 1}", get_args(base)[0]
            continue
        ann = base.model_fields[part].annotation if _is_model(base) else get_args(base)[1]
        sub = _strip(ann)
        array = get_origin(sub) is list and _is_model(get_args(sub)[0])
        if i == len(loc) - 1 and not (as_table and (_is_table_type(sub) or array)):
            return f"{header} {part}".strip()
        dotted.append(part)
        header = f"[[{'.'.join(dotted)}]]" if array else f"[{'.'.join(dotted)}]"
    return header


def _value(raw, loc: tuple):
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return raw


def _unwrap(ann) -> tuple[Any, list]:
    """``ann`` without ``| None`` (TOML has no null: None only means "left out") and without
    ``Annotated``, and the constraints ``Annotated`` carried."""
    meta = []
    while True:
        if get_origin(ann) is Annotated:
            ann, *extra = get_args(ann)
            meta += extra
        elif get_origin(ann) in (Union, types.UnionType) and type(None) in get_args(ann):
            args = [a for a in get_args(ann) if a is not type(None)]
            ann = args[0] if len(args) == 1 else Union[tuple(args)]
        else:
            return ann, meta


def _strip(ann):
    return _unwrap(ann)[0]


def _is_model(ann) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _is_table_type(ann) -> bool:
    base = _strip(ann)
    return _is_model(base) or get_origin(base) is dict


def _describe(ann, meta=(), plural: bool = False) -> str:
    """What a key of type ``ann`` (with constraints ``meta``) accepts, in words."""
    origin = get_origin(ann)
    if origin is Annotated:
        base, *extra = get_args(ann)
        return _describe(base, [*meta, *extra], plural)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a, meta, plural) for a in get_args(ann) if a is not type(None))
    if origin is Literal:
        values = get_args(ann)
        if len(values) == 1:
            return _toml(values[0])
        return ("values from " if plural else "one of ") + ", ".join(repr(v) for v in values)
    if origin is list:
        non_empty = any(isinstance(m, MinLen) and m.min_length > 0 for m in meta)
        what = ("non-empty lists" if non_empty else "lists") if plural else \
            ("a non-empty list" if non_empty else "a list")
        return f"{what} of {_describe(get_args(ann)[0], (), plural=True)}"
    if origin is dict:
        return ("tables" if plural else "a table") + " of " + _describe(get_args(ann)[1], (), plural=True)
    if _is_model(ann):
        return "tables" if plural else "a table"
    if ann is bool:
        return "true/false values" if plural else "true or false"
    noun = {int: "integer", float: "number", str: "string"}.get(ann, getattr(ann, "__name__", str(ann)))
    lo = next((m for m in meta if isinstance(m, (Gt, Ge))), None)
    hi = next((m for m in meta if isinstance(m, (Lt, Le))), None)
    bound = ""
    if hi is not None and lo is not None:
        bound = (f" in {'(' if isinstance(lo, Gt) else '['}{_bound(lo)}, "
                 f"{_bound(hi)}{')' if isinstance(hi, Lt) else ']'}")
    elif lo is not None:
        positive = (isinstance(lo, Gt) and _bound(lo) == 0) or (isinstance(lo, Ge) and _bound(lo) == 1 and ann is int)
        if positive or (isinstance(lo, Ge) and _bound(lo) == 0):
            noun = ("positive " if positive else "non-negative ") + noun
        else:
            bound = f" {'>' if isinstance(lo, Gt) else '>='} {_bound(lo)}"
    elif hi is not None:
        bound = f" {'<' if isinstance(hi, Lt) else '<='} {_bound(hi)}"
    if plural:
        return noun + "s" + bound
    return ("an " if noun[0] in "aeiou" else "a ") + noun + bound


def _bound(m):
    for name in ("gt", "ge", "lt", "le"):
        if hasattr(m, name):
            return getattr(m, name)


def _toml(value) -> str:
    """A value as TOML writes it (for "got ..." in messages)."""
    if value is _MISSING:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _did_you_mean(names, known) -> str:
    lower = {k.lower(): k for k in known}  # a wrong case (TR for tr) is the likeliest slip
    close = [lower[m] for n in names for m in difflib.get_close_matches(str(n).lower(), list(lower), n=1)]
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
