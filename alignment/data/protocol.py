"""What every dataset offers the library, and the registry that opens one by kind.

A dataset is any object with the members of :class:`Dataset`; one whose samples are the TRs of
fMRI runs also has those of :class:`TimeSeriesDataset`. Formats register a *kind*: a name, a
``detect(path)`` test and a ``loader(path)``; :func:`load_dataset` picks the kind that
recognises a path (or the one asked for) and checks that what the loader returns is a
:class:`Dataset`.

>>> from alignment.data import load_dataset, register_dataset_kind
>>> register_dataset_kind("mine", detect=is_mine, loader=MyDataset)     # doctest: +SKIP
>>> ds = load_dataset("path/to/data")                                  # doctest: +SKIP

Built-in kinds: ``folder``, the custom folder format, and ``demo``, the same format plus the
ground truth of the simulated demo (:mod:`alignment.data.dataset`); ``hcp7t``, the HCP 7T movie
release as HCP distributes it (:mod:`alignment.data.hcp`); ``movie``, a BIDS-like folder of
movies and caption tables (:mod:`alignment.data.movie`); ``pereira2018``, the concept data of
Pereira et al. 2018 (:mod:`alignment.data.pereira`; samples are concepts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

    from alignment.timing import Timeline

__all__ = [
    "DEFAULT_KIND",
    "TR",
    "Dataset",
    "DatasetError",
    "DatasetKind",
    "TimeSeriesDataset",
    "dataset_kinds",
    "detect_kind",
    "load_dataset",
    "pointer_file",
    "register_dataset_kind",
]

#: ``sample_unit`` of time-series datasets: one sample per TR
TR = "TR"
#: the kind assumed when no registered kind recognises a path: its loader says what is missing
DEFAULT_KIND = "folder"


class DatasetError(ValueError):
    """A dataset file is missing, malformed or inconsistent.

    Attributes
    ----------
    path : str or None
        The offending file, when there is one.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


# --------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------
@runtime_checkable
class Dataset(Protocol):
    """The members every dataset has, whatever its samples are.

    A *sample* is one row of a subject's brain data: a TR of a movie run for time-series
    datasets (``sample_unit == "TR"``, see :class:`TimeSeriesDataset`), a concept for
    condition-wise data such as Pereira 2018 (``sample_unit == "concept"``: one response map
    per concept and condition, no time axis). V is :attr:`n_vertices`, S the number of samples.

    A structural protocol rather than an abstract base class: a loader for another release
    (HCP 7T movie files, Pereira's ``.mat`` files) needs no inheritance from the folder format's
    class, a small class written for a test satisfies it, and ``isinstance(obj, Dataset)``
    (``runtime_checkable``) checks that every member is present — not their signatures — which
    :func:`load_dataset` does on what a loader returns.

    Attributes
    ----------
    kind : str
        The registered kind that opened it (``"folder"``, ``"demo"``, ...).
    name : str
        Display name.
    root : str
        Absolute path of the dataset (shown to users; never part of a cache key).
    space : str
        Surface space of the brain data: ``"fsLR32k"`` or ``"fsaverage5"``
        (:data:`alignment.spaces.SPACE_SIZES`).
    n_vertices : int
        V: grayordinates (91282, fsLR32k) or vertices (20484, fsaverage5).
    subjects : list of str
        Subject ids without the ``sub-`` prefix, sorted.
    sample_unit : str
        What a sample is: :data:`TR` (time series), or e.g. ``"concept"``.

    Methods
    -------
    bold_all(subject) -> (Y, groups)
        The subject's brain data, Y (S, V) float32, and groups (S,) int64 labelling the samples
        that cross-validation holds out together: for time series the position of each TR's
        run in ``runs`` (leave-one-run-out folds).
    fingerprint(subjects=None, *, include_bold=True, content=False) -> str
        64 hex characters identifying the content, for cache keys: the brain data of
        ``subjects`` (default all; a str or a list) unless ``include_bold`` is False, in which
        case only the stimuli (what model features depend on). ``content=True`` hashes file
        bytes instead of cheaper stand-ins (sizes, modification times). Must not depend on
        where the dataset lies.
    validate(subjects=None, **checks) -> list of str
        Every problem found, one readable sentence each; empty when the dataset is fine.
        ``checks`` are kind-specific switches (the folder format: ``check_bold``,
        ``check_images``).
    load_frame(ref) -> PIL.Image.Image
        An RGB stimulus image from the reference the dataset's stimulus listing gives (the
        timelines' ``frame`` entries for time series); raises :class:`DatasetError`.
    """

    kind: str
    name: str
    root: str
    space: str
    n_vertices: int
    subjects: list[str]
    sample_unit: str

    def bold_all(self, subject: str) -> tuple[np.ndarray, np.ndarray]: ...

    def fingerprint(self, subjects=None, *, include_bold: bool = True, content: bool = False) -> str: ...

    def validate(self, subjects=None) -> list[str]: ...

    def load_frame(self, ref) -> Image: ...


@runtime_checkable
class TimeSeriesDataset(Dataset, Protocol):
    """A dataset whose samples are TRs of runs (``sample_unit == "TR"``): movie fMRI.

    Only these datasets have runs, a TR, stimulus timelines and per-run BOLD; what the encoding,
    neuron-mapping, integration and inspector analyses read (HRF convolution, leave-one-run-out
    folds, the frame and caption at every TR). T_r is the length of run r, T = Σ T_r.

    Attributes
    ----------
    tr : float
        Repetition time in seconds.
    runs : list of str
        Run ids, in acquisition order (the order of every concatenation).
    n_trs : dict of str to int
        T_r of every run.

    Methods
    -------
    timeline(run) -> Timeline
        Frame, caption and segment label of every TR of one run (length T_r).
    timelines() -> list of Timeline
        All runs, in run order.
    run_index() -> ndarray of int, shape (T,)
        Position in :attr:`runs` of every TR of all runs concatenated.
    bold(subject, run, nan_policy="raise") -> ndarray of float32, shape (T_r, V)
        One run; ``nan_policy`` ``"raise"`` (a :class:`DatasetError`), ``"zero"`` (NaN / inf
        values become 0), ``"mask"`` (a voxel with one becomes 0 for the whole run) or
        ``"keep"`` (values as read: what a copy of the data needs).
    bold_all(subject, runs=None, nan_policy="raise") -> (Y (T, V) float32, run_index (T,))
        The runs (default all) concatenated in run order.
    """

    tr: float
    runs: list[str]
    n_trs: dict[str, int]

    def timeline(self, run: str) -> Timeline: ...

    def timelines(self) -> list[Timeline]: ...

    def run_index(self) -> np.ndarray: ...

    def bold(self, subject: str, run: str, nan_policy: str = "raise") -> np.ndarray: ...

    def bold_all(self, subject: str, runs: Iterable[str] | None = None,
                 nan_policy: str = "raise") -> tuple[np.ndarray, np.ndarray]: ...


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetKind:
    """A registered dataset format.

    detect : callable(path: str) -> bool
        Whether ``path`` holds a dataset of this kind; cheap (a few file tests), never raises.
    loader : callable(path: str) -> Dataset
        Opens it; raises :class:`DatasetError` for anything wrong with the files.
    """

    name: str
    detect: Callable[[str], bool]
    loader: Callable[[str], Dataset]


_KINDS: dict[str, DatasetKind] = {}


def pointer_file(path: str, name: str) -> str | None:
    """The pointer file ``name`` a dataset kind is opened with: ``path`` itself when it is that
    file, else ``path/name`` when it exists; None otherwise."""
    if os.path.basename(path) == name and os.path.isfile(path):
        return path
    candidate = os.path.join(path, name)
    return candidate if os.path.isfile(candidate) else None


def register_dataset_kind(name: str, detect: Callable[[str], bool], loader: Callable[[str], Dataset],
                          *, replace: bool = False) -> None:
    """Make :func:`load_dataset` open a format.

    Kinds are tried newest first, so a kind registered later wins over the ones it refines
    (``demo`` over ``folder``; a user's format over both).

    Parameters
    ----------
    name : str
        The kind's name (what ``load_dataset(path, kind=name)`` asks for).
    detect, loader : callable
        See :class:`DatasetKind`.
    replace : bool
        Allow replacing a kind of the same name (it keeps its place in the order).

    Raises
    ------
    ValueError
        ``name`` is taken (and not ``replace``), or ``detect``/``loader`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a dataset kind needs a non-empty name, got {name!r}")
    if not (callable(detect) and callable(loader)):
        raise ValueError(f"dataset kind {name!r}: detect and loader must be callables")
    if name in _KINDS and not replace:
        raise ValueError(f"dataset kind {name!r} is already registered (pass replace=True)")
    _KINDS[name] = DatasetKind(name, detect, loader)


def dataset_kinds() -> list[str]:
    """Names of the registered kinds, in the order :func:`detect_kind` tries them."""
    return list(reversed(_KINDS))


def detect_kind(path) -> str | None:
    """The first registered kind (newest first) that recognises ``path``, or None."""
    path = os.fspath(path)
    for name in dataset_kinds():
        if _KINDS[name].detect(path):
            return name
    return None


def load_dataset(path, kind: str | None = None) -> Dataset:
    """Open a dataset.

    Parameters
    ----------
    path : str or PathLike
        The dataset (a folder, or a file the kind accepts, e.g. a folder's ``dataset.toml``).
    kind : str, optional
        A registered kind; default: the one that recognises ``path`` (:func:`detect_kind`),
        else :data:`DEFAULT_KIND`, whose loader then says what the path lacks.

    Returns
    -------
    Dataset
        A :class:`TimeSeriesDataset` for the built-in kinds.

    Raises
    ------
    DatasetError
        Unknown kind, or the files are missing, malformed or inconsistent.
    TypeError
        The kind's loader returned an object without every member of :class:`Dataset`.
    """
    path = os.fspath(path)
    if kind is None:
        kind = detect_kind(path) or DEFAULT_KIND
    if kind not in _KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; registered kinds: {', '.join(dataset_kinds())}")
    dataset = _KINDS[kind].loader(path)
    if not isinstance(dataset, Dataset):
        missing = [m for m in _protocol_members(Dataset) if not hasattr(dataset, m)]
        raise TypeError(f"the loader of dataset kind {kind!r} returned a {type(dataset).__name__}, "
                        f"which lacks {', '.join(missing)} (see alignment.data.Dataset)")
    return dataset


def _protocol_members(proto) -> list[str]:
    names = set(getattr(proto, "__annotations__", {}))
    names |= {n for n, v in vars(proto).items() if callable(v) and not n.startswith("_")}
    return sorted(names)
