"""The HCP 7T movie release, read as HCP distributes it (dataset kind ``hcp7t``).

What is read from where
-----------------------
BOLD, per subject and run, from an HCP tree (``hcp_root``)::

    <hcp_root>/<subject>/MNINonLinear/Results/tfMRI_MOVIE1_7T_AP/
        tfMRI_MOVIE1_7T_AP_Atlas_MSMAll_hp2000_clean.dtseries.nii

CIFTI-2 dense time series on the 91282 fsLR32k grayordinates (2 mm), FIX-cleaned, TR 1 s. The
four runs are MOVIE1_AP, MOVIE2_PA, MOVIE3_PA and MOVIE4_AP, of 921, 918, 915 and 901 TRs
(:data:`HCP_RUNS`). The 1.6 mm CIFTI (``..._Atlas_1.6mm_MSMAll_hp2000_clean.dtseries.nii``,
170494 grayordinates) and the volume files (``..._hp2000_clean.nii.gz``) are refused with a
message naming the file to use.

Stimuli, from the movie stimulus folder (``stimuli``; files may also sit one folder down, e.g.
in HCP's ``Post_20140821_version/``)::

    7T_MOVIE1_CC1_v2.mp4 ... 7T_MOVIE4_HO2_v2.mp4   movies shown from 2014-08-22 on
    7T_MOVIE1_CC1.mp4    ... 7T_MOVIE4_HO2.mp4      the earlier versions (Pre_20140821_version/)
    HCP_7T_Movie_Clip_Timing.csv                     start and stop of every clip and REST block
    WordNetFeatures.hdf5                             WordNet labels of every second

Per TR t (the second [t, t+1) of the run):

- **segment**: the clip of the timing sheet that holds the TR's midpoint, ``"<movie>_clip<k>"``
  (k-th clip of the run, e.g. ``MOVIE1_CC1_clip2``); ``rest`` for REST blocks and TRs outside
  every clip; the last clip of every run, the test-retest montage shown identically in all four
  runs, is labelled :data:`REPEAT_LABEL` in every run (so the analyses keep it out of training
  folds).
- **frame** (clip TRs only; rest TRs have none): the movie frame shown at the middle of the
  second, or ``frames_per_tr`` = k frames at the midpoints of k equal parts of the second,
  averaged. Frame i of a movie is shown during [i, i+1)/fps; the frame at time s is
  floor(s·fps). A frame reference is ``"<movie file>#f=<i>[,<i>...]"`` (path relative to the
  stimulus folder); :meth:`HCPMovieDataset.load_frame` decodes it with PyAV (no system ffmpeg;
  :mod:`alignment.data.video`, shared with the other movie readers).
- **caption**: the WordNet labels of that second: nouns first, then verbs, then other parts
  of speech, each in the file's column order; a synset name becomes its lemma
  (``dog.n.01`` → ``dog``, ``ice_cream.n.01`` → ``ice cream``), a repeated word is kept once,
  words are joined by ``", "``. The file already marks the superordinate categories of every
  label (WordNet hypernyms); ``hypernyms=False`` drops a label when another label of the same
  part of speech, active in the same second, occurs only where it occurs (at strictly fewer
  seconds, over all four movies): an approximation of the hierarchy from the data, as no WordNet
  database is read (two labels tagged by hand that always occur nested are taken for a label and
  its hypernym).

Verified from public sources, and what is not
---------------------------------------------
- Run names, phase-encoding directions, TR counts (921/918/915/901), TR = 1 s, the CIFTI file
  names with ``_Atlas_MSMAll_hp2000_clean`` and the 1.6 mm / volume variants: the HCP S1200
  reference manual as quoted by papers using the data (e.g. Communications Biology 2026 on
  hippocampal representations of the HCP movies) and public analysis code reading these files.
- Movie file names and the two versions: ``7T_MOVIE{1..4}_{CC1,HO1,CC2,HO2}_v2.mp4`` in
  ``Post_20140821_version/`` and the same names without ``_v2`` in ``Pre_20140821_version/``
  (public feature-extraction code for the HCP movies, e.g. scripts built on pliers); the HCP wiki
  page "7T Movie watching task clip info, timing, versions shown per individual subject" lists the
  147 subjects shown version 1 (scanned before 2014-08-22). Which version a subject saw is not
  read from the data: a dataset uses one version (``stimulus_version``); open the two groups as
  two datasets if needed.
- 24 frames per second: the HCP protocol; the reader uses the rate the mp4 declares.
- ``WordNetFeatures.hdf5`` (in HCP's ``7T_movie_resources``): one 2-D dataset per movie named
  ``MOVIE1_CC1``, ``MOVIE2_HO1``, ``MOVIE3_CC2``, ``MOVIE4_HO2`` read by h5py as (seconds ×
  categories) with 0/1 values, 859 categories; ``synsets``, the category names (WordNet synset
  names such as ``plant.n.02``, bytes or str); ``<movie>_est`` and ``<movie>_val`` per-second
  indicator vectors (estimation / validation seconds). Sources: public analysis code reading the
  file with h5py and MATLAB ``h5read`` (e.g. ISC and individual-differences studies of the HCP
  movies) and the eLife 2025 paper by Fu et al. (859 features, superordinate categories added as
  in Huth et al. 2012). Not verified: that the per-movie datasets have exactly one row per TR of
  the run; the loader requires it and says so when it does not hold.
- ``HCP_7T_Movie_Clip_Timing.csv``: the name is the HCP wiki's; the layout is taken from a public
  parser of the file: one section per movie, opened by a line whose first field starts with
  ``7T_MOVIE<n>``, then rows of block label, start, stop and duration in run-local seconds
  (label ``0`` = a 20 s REST block, ``N.M`` = clip M of run N), possibly ``\\r``-terminated. The
  exact header words were not verified: a header row naming ``start`` and ``stop``/``end``
  columns is used when present, otherwise columns 2 and 3 are start and stop.
- The test-retest clip: each run ends with the same montage of short clips, identical in all four
  runs (HCP 7T protocol overview; Communications Biology 2026, above); the loader takes the last
  clip of each run in the timing sheet for it.
- Movie time equals run-local time (the movie, REST cards included, starts with the first TR):
  the public code that parses the sheet cuts the clips out of the full movies at the sheet's
  run-local times, and the first clip starts after a 20 s REST block as the runs do. Not
  confirmed by HCP's documentation: ``movie_start_s`` shifts it.

Pointing the tool at the data
-----------------------------
``load_dataset(path)`` opens ``hcp7t`` when ``path`` is an ``hcp7t.toml`` file (or a folder
holding one)::

    [hcp7t]
    hcp_root = "/data/HCP_1200"              # relative paths: from the file's folder
    stimuli = "/data/7T_movie_resources"
    # optional: name, subjects = ["100610"], frames_per_tr = 1, hypernyms = true,
    # stimulus_version = "auto" | "post" | "pre", movie_start_s = 0.0, strict_trs = false

or when ``path`` is an HCP tree that holds the stimulus folder (a folder with
``WordNetFeatures.hdf5``) at most two levels down.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import tomllib
import warnings
from typing import ClassVar, Iterable, Literal, NamedTuple

import numpy as np
from pydantic import Field, PositiveInt

from alignment.data.dataset import NAN_POLICIES, _open_cifti, _read_cifti_data, check_fslr_cortex
from alignment.data.protocol import TR, DatasetError, pointer_file, register_dataset_kind
from alignment.data.video import MovieFrames, frame_indices, frame_ref
from alignment.schema import ConfigError, Table, check
from alignment.spaces import SPACE_SIZES
from alignment.timing import REST, Timeline

__all__ = [
    "HCP_RUNS",
    "HCPMovieDataset",
    "POINTER_FILE",
    "REPEAT_LABEL",
    "HCPRun",
    "clip_timing",
    "wordnet_caption",
]

KIND = "hcp7t"
#: the pointer file :func:`~alignment.data.load_dataset` recognises
POINTER_FILE = "hcp7t.toml"
#: segment label of the test-retest montage that closes every run
REPEAT_LABEL = "testretest"
HCP_TR = 1.0
N_GRAYORDINATES_1P6MM = 170494
TIMING_FILE = "HCP_7T_Movie_Clip_Timing.csv"
WORDNET_FILE = "WordNetFeatures.hdf5"
STIMULUS_VERSIONS = ("auto", "post", "pre")
_FINGERPRINT_VERSION = b"alignment-hcp7t-fingerprint-v1"
# (path, size, mtime) -> ((T, V), step) of the dtseries headers read
_HEADERS: dict[tuple, tuple[tuple[int, ...], float]] = {}
# caption order of the parts of speech (WordNet: n, v; a, s, r after them)
_POS_ORDER = {"n": 0, "v": 1}


class HCPRun(NamedTuple):
    """One HCP 7T movie run."""

    id: str  #: run id used by the library, e.g. ``MOVIE1_AP``
    scan: str  #: HCP scan folder, e.g. ``tfMRI_MOVIE1_7T_AP``
    movie: str  #: movie name (WordNet key, mp4 stem without ``7T_``/``_v2``), e.g. ``MOVIE1_CC1``
    n_trs: int  #: TRs of the full run


#: the four runs, in acquisition order
HCP_RUNS = (
    HCPRun("MOVIE1_AP", "tfMRI_MOVIE1_7T_AP", "MOVIE1_CC1", 921),
    HCPRun("MOVIE2_PA", "tfMRI_MOVIE2_7T_PA", "MOVIE2_HO1", 918),
    HCPRun("MOVIE3_PA", "tfMRI_MOVIE3_7T_PA", "MOVIE3_CC2", 915),
    HCPRun("MOVIE4_AP", "tfMRI_MOVIE4_7T_AP", "MOVIE4_HO2", 901),
)


def _bold_name(scan: str) -> str:
    return f"{scan}_Atlas_MSMAll_hp2000_clean.dtseries.nii"


# --------------------------------------------------------------------------------------------
# timing sheet
# --------------------------------------------------------------------------------------------
class Block(NamedTuple):
    label: str  #: as in the sheet: "0" for REST, "N.M" for clip M of run N
    start: float  #: run-local seconds
    stop: float

    @property
    def is_rest(self) -> bool:
        try:
            return float(self.label) == 0.0
        except ValueError:
            return self.label.strip().lower() == REST


def _fields(line: str) -> list[str]:
    return [f.strip().strip('"').strip() for f in line.split(",")]


def clip_timing(path) -> dict[int, list[Block]]:
    """Parse ``HCP_7T_Movie_Clip_Timing.csv`` (layout: module docstring).

    Returns
    -------
    dict of int to list of Block
        Movie number (1..4) → its blocks sorted by start.

    Raises
    ------
    DatasetError
        Unreadable file, no ``7T_MOVIE<n>`` section, or a row whose times are not numbers.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            text = f.read()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the clip timing sheet ({exc})", path) from exc
    out: dict[int, list[Block]] = {}
    movie, cols = None, (0, 1, 2)
    for k, line in enumerate(text.splitlines(), start=1):  # \r, \n and \r\n rows alike
        fields = _fields(line)
        if not any(fields):
            continue
        m = re.match(r"^7T_MOVIE(\d)", fields[0], re.IGNORECASE)
        if m:
            movie, cols = int(m.group(1)), (0, 1, 2)
            out.setdefault(movie, [])
            continue
        low = [f.lower() for f in fields]
        start_col = next((i for i, f in enumerate(low) if "start" in f), None)
        stop_col = next((i for i, f in enumerate(low) if "stop" in f or "end" in f), None)
        if start_col is not None and stop_col is not None:  # a header row
            cols = (0, start_col, stop_col)
            continue
        if movie is None:
            continue  # text before the first section
        try:
            label, start, stop = fields[cols[0]], float(fields[cols[1]]), float(fields[cols[2]])
        except (IndexError, ValueError):
            if re.match(r"^\d+(\.\d+)?$", fields[0]):  # a block row with bad times
                raise DatasetError(f"{path} line {k}: block {fields[0]!r} needs numeric start and "
                                   f"stop seconds, got {line.strip()!r}", path) from None
            continue  # another header or note line
        if not stop > start:
            raise DatasetError(f"{path} line {k}: block {label!r} stops ({stop:g} s) before it "
                               f"starts ({start:g} s)", path)
        out[movie].append(Block(label, start, stop))
    out = {m: sorted(b, key=lambda b: b.start) for m, b in out.items() if b}
    if not out:
        raise DatasetError(f"{path}: no 7T_MOVIE<n> section with block rows (label, start, stop, "
                           "duration) found; is this HCP_7T_Movie_Clip_Timing.csv?", path)
    return out


# --------------------------------------------------------------------------------------------
# WordNet labels
# --------------------------------------------------------------------------------------------
def _synset_pos(name: str) -> str:
    """Part of speech of a synset name (``n``, ``v``, ``a``, ``s``, ``r``); ``n`` without one."""
    parts = name.strip().split(".")
    return parts[-2] if len(parts) >= 3 else "n"


def _synset_word(name: str) -> tuple[int, str]:
    """(part-of-speech rank, word) of a synset name like ``ice_cream.n.01``."""
    parts = name.strip().split(".")
    word = ".".join(parts[:-2]) if len(parts) >= 3 else parts[0]
    return _POS_ORDER.get(_synset_pos(name), 2), word.replace("_", " ").strip()


def wordnet_caption(active: np.ndarray, synsets: list[str]) -> str:
    """Caption of one second from its active WordNet columns.

    Parameters
    ----------
    active : ndarray of int, shape (A,)
        Column indices of the labels present, in any order.
    synsets : list of str, length S
        Synset names of all columns.

    Returns
    -------
    str
        Nouns, then verbs, then other parts of speech (each in column order), as words, each
        word once, joined by ``", "``; ``""`` when none.
    """
    ranked = sorted((_synset_word(synsets[i])[0], int(i)) for i in active)
    words = []
    for _, i in ranked:
        w = _synset_word(synsets[i])[1]
        if w and w not in words:
            words.append(w)
    return ", ".join(words)


# --------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------
class HCPMovieDataset:
    """The HCP 7T movie runs of an HCP tree, with the HCP movie stimuli; a
    :class:`~alignment.data.protocol.TimeSeriesDataset` of kind ``hcp7t`` (module docstring).

    Parameters
    ----------
    hcp_root : str or PathLike
        Folder holding ``<subject>/MNINonLinear/Results/tfMRI_MOVIE*_7T_*``.
    stimuli : str or PathLike
        The movie stimulus folder (mp4s, timing sheet, WordNet file; one level down allowed).
    name : str
        Display name.
    subjects : list of str, optional
        Subjects to use (default: every subject folder with at least one movie run).
    frames_per_tr : int
        k: frames averaged per TR, at the midpoints of k equal parts of the second (1: the
        middle frame).
    hypernyms : bool
        Keep the superordinate categories the WordNet file marks (True) or drop them (False;
        see the module docstring for the rule).
    stimulus_version : {"auto", "post", "pre"}
        Movie files of 2014-08-22 on (``_v2``) or before; ``auto``: post when present.
    movie_start_s : float
        Run time (s) at which the movie's first frame is shown.
    strict_trs : bool
        Refuse runs whose BOLD TR count differs from HCP's (921, 918, 915, 901); by default a
        warning, so shortened runs can be read.
    timing_file, wordnet_file : str
        File names looked for in the stimulus folder.
    """

    kind = KIND
    sample_unit = TR
    space = "fsLR32k"

    def __init__(self, hcp_root, stimuli, *, name: str = "HCP 7T movie", subjects=None,
                 frames_per_tr: int = 1, hypernyms: bool = True,
                 stimulus_version: str = "auto", movie_start_s: float = 0.0,
                 strict_trs: bool = False, timing_file: str = TIMING_FILE,
                 wordnet_file: str = WORDNET_FILE):
        self.root = os.path.abspath(os.fspath(hcp_root))
        self.stimuli = os.path.abspath(os.fspath(stimuli))
        for what, folder in (("HCP tree", self.root), ("stimulus folder", self.stimuli)):
            if not os.path.isdir(folder):
                raise DatasetError(f"{folder}: {what} not found", folder)
        if not (isinstance(frames_per_tr, int) and frames_per_tr >= 1):
            raise DatasetError(f"frames_per_tr must be a positive integer, got {frames_per_tr!r}")
        if stimulus_version not in STIMULUS_VERSIONS:
            raise DatasetError(f"stimulus_version must be one of {', '.join(STIMULUS_VERSIONS)}, "
                               f"got {stimulus_version!r}")
        self.name = name
        self.tr = HCP_TR
        self.frames_per_tr = frames_per_tr
        self.hypernyms = bool(hypernyms)
        self.stimulus_version = stimulus_version
        self.movie_start_s = float(movie_start_s)
        self.strict_trs = bool(strict_trs)
        self.timing_file, self.wordnet_file = timing_file, wordnet_file
        self._runs = {r.id: r for r in HCP_RUNS}
        self.runs = [r.id for r in HCP_RUNS]
        self._subjects = None if subjects is None else sorted(str(s) for s in subjects)
        self._frames = MovieFrames(self.stimuli)
        self._timelines: dict[str, Timeline] = {}
        self._wordnet = None
        self._implied_cache = None
        self._timing = None
        self.n_trs = self._run_lengths()

    def __repr__(self):
        return (f"HCPMovieDataset({self.name!r}, root={self.root!r}, stimuli={self.stimuli!r}, "
                f"subjects={self.subjects})")

    # ---------------------------------------------------------------- basics
    @property
    def n_vertices(self) -> int:
        return SPACE_SIZES[self.space]

    @property
    def subjects(self) -> list[str]:
        """Subject folders of the tree with at least one movie run folder, sorted."""
        if self._subjects is not None:
            return list(self._subjects)
        out = []
        for entry in sorted(os.listdir(self.root)):
            results = os.path.join(self.root, entry, "MNINonLinear", "Results")
            if os.path.isdir(results) and any(
                    os.path.isdir(os.path.join(results, r.scan)) for r in HCP_RUNS):
                out.append(entry)
        return out

    def _check_run(self, run) -> HCPRun:
        run = str(run)
        if run not in self._runs:
            raise DatasetError(f"unknown run {run!r}; the HCP 7T movie runs are {', '.join(self.runs)}")
        return self._runs[run]

    def _check_subject(self, subject) -> str:
        sid = str(subject)
        sid = sid[4:] if sid.startswith("sub-") else sid
        if not os.path.isdir(os.path.join(self.root, sid)):
            raise DatasetError(f"{os.path.join(self.root, sid)}: subject folder not found "
                               f"(subjects: {', '.join(self.subjects) or 'none'})")
        return sid

    # ---------------------------------------------------------------- BOLD
    def bold_path(self, subject, run) -> str:
        """The MSMAll 2 mm dtseries of a subject and run; refuses the 1.6 mm and volume files."""
        r = self._check_run(run)
        sid = self._check_subject(subject)
        folder = os.path.join(self.root, sid, "MNINonLinear", "Results", r.scan)
        path = os.path.join(folder, _bold_name(r.scan))
        if os.path.isfile(path):
            return path
        found = sorted(glob.glob(os.path.join(folder, f"{r.scan}*clean*.nii*")))
        if found:
            other = os.path.basename(found[0])
            what = ("the 1.6 mm CIFTI (170494 grayordinates)" if "_1.6mm_" in other else
                    "a volume file" if other.endswith((".nii.gz", ".nii")) and ".dtseries." not in other
                    else "another CIFTI variant")
            raise DatasetError(f"{os.path.join(folder, other)} is {what}; this tool reads the 2 mm "
                               f"fsLR32k CIFTI (91282 grayordinates): download {_bold_name(r.scan)} "
                               f"into {folder}", path)
        raise DatasetError(f"run {r.id} of subject {sid} is missing: expected {path}", path)

    @staticmethod
    def _header_shape(path) -> tuple[tuple[int, ...], float]:
        """(T, V) and series step of a dtseries, from its header; remembered while the file is
        unchanged (parsing the 91282-grayordinate header costs ~0.2 s)."""
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read ({exc})", path) from exc
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        if key not in _HEADERS:
            img, (step, _), _ = _open_cifti(path)
            _HEADERS[key] = (tuple(img.shape), step)
        return _HEADERS[key]

    def _check_shape(self, path, shape, r: HCPRun, sid: str, n_expected: int | None):
        if len(shape) != 2:
            raise DatasetError(f"{path}: BOLD must be T × V, got shape {tuple(shape)}", path)
        if shape[1] == N_GRAYORDINATES_1P6MM:
            raise DatasetError(f"{path} holds the 1.6 mm grayordinates (170494); this tool reads the "
                               f"2 mm fsLR32k CIFTI (91282): use {_bold_name(r.scan)} from HCP's "
                               "2 mm release", path)
        if shape[1] != self.n_vertices:
            raise DatasetError(f"{path}: {shape[1]} grayordinates, fsLR32k has {self.n_vertices}",
                               path)
        if n_expected is not None and shape[0] != n_expected:
            raise DatasetError(f"run {r.id} of subject {sid} has {shape[0]} TRs ({path}), the "
                               f"dataset's run has {n_expected} (first subject's BOLD and the "
                               "stimuli)", path)

    def _run_lengths(self) -> dict[str, int]:
        """T_r of every run: the BOLD of the first subject with a readable 2 mm file, else HCP's
        count."""
        n_trs = {}
        subjects = self.subjects
        for r in HCP_RUNS:
            n = None
            for sid in subjects:
                try:
                    path = self.bold_path(sid, r.id)
                    shape, _ = self._header_shape(path)
                    self._check_shape(path, shape, r, sid, None)
                except DatasetError:
                    continue  # bold() and validate() say what is wrong with it
                n = int(shape[0])
                break
            if n is None:
                n = r.n_trs
            elif n != r.n_trs:
                msg = f"run {r.id} has {n} TRs in {path}; the HCP release has {r.n_trs}"
                if self.strict_trs:
                    raise DatasetError(msg, path)
                warnings.warn(msg + " (reading it as it is)", stacklevel=3)
            n_trs[r.id] = n
        return n_trs

    def bold(self, subject, run, nan_policy: str = "raise") -> np.ndarray:
        """BOLD of one subject and run, (T_r, 91282) float32 (``nan_policy``: see
        :meth:`alignment.data.FolderDataset.bold`)."""
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {', '.join(NAN_POLICIES)}; got {nan_policy!r}")
        r = self._check_run(run)
        sid = self._check_subject(subject)
        path = self.bold_path(sid, r.id)
        data, _ = self._load_bold_raw(sid, r, path)
        bad = ~np.isfinite(data)
        if bad.any() and nan_policy != "keep":
            if nan_policy == "raise":
                raise DatasetError(f"{path}: {int(bad.sum())} NaN/infinite values in "
                                   f"{int(bad.any(axis=0).sum())} columns (run {r.id} of subject "
                                   f"{sid})", path)
            if nan_policy == "mask":
                data[:, bad.any(axis=0)] = 0.0
            data[bad] = 0.0
        return data

    def _load_bold_raw(self, sid: str, r: HCPRun, path: str) -> tuple[np.ndarray, float]:
        img, (step, _), index_map = _open_cifti(path)
        self._check_shape(path, img.shape, r, sid, self.n_trs[r.id])
        check_fslr_cortex(index_map, path)
        return _read_cifti_data(img, path), step

    def bold_all(self, subject, runs: Iterable[str] | None = None,
                 nan_policy: str = "raise") -> tuple[np.ndarray, np.ndarray]:
        """The runs (default all) concatenated: Y (T, 91282) float32 and run_index (T,)."""
        runs = self.runs if runs is None else [self._check_run(r).id for r in runs]
        Y = np.concatenate([self.bold(subject, r, nan_policy) for r in runs], axis=0)
        index = np.repeat([self.runs.index(r) for r in runs], [self.n_trs[r] for r in runs])
        return Y, index.astype(np.int64)

    def run_index(self) -> np.ndarray:
        """Run position of every TR of all runs concatenated, shape (T,)."""
        return np.repeat(np.arange(len(self.runs)), [self.n_trs[r] for r in self.runs])

    # ---------------------------------------------------------------- stimulus files
    def _find(self, name: str) -> str:
        for pattern in (name, os.path.join("*", name)):
            hits = sorted(glob.glob(os.path.join(glob.escape(self.stimuli), pattern)))
            if hits:
                return hits[0]
        raise DatasetError(f"{self.stimuli}: {name} not found (looked in the folder and one level "
                           "down)", self.stimuli)

    def movie_path(self, run) -> str:
        """The mp4 of a run, of the chosen stimulus version."""
        r = self._check_run(run)
        number = r.movie.split("_")[0][len("MOVIE"):]
        cands = sorted(glob.glob(os.path.join(glob.escape(self.stimuli), f"7T_MOVIE{number}_*.mp4"))
                       + glob.glob(os.path.join(glob.escape(self.stimuli), "*",
                                                f"7T_MOVIE{number}_*.mp4")))
        post = [c for c in cands if os.path.basename(c) == f"7T_{r.movie}_v2.mp4"]
        pre = [c for c in cands if os.path.basename(c) == f"7T_{r.movie}.mp4"]
        pick = {"post": post, "pre": pre, "auto": post or pre}[self.stimulus_version]
        if not pick:
            want = {"post": f"7T_{r.movie}_v2.mp4", "pre": f"7T_{r.movie}.mp4",
                    "auto": f"7T_{r.movie}_v2.mp4 or 7T_{r.movie}.mp4"}[self.stimulus_version]
            found = f" (found: {', '.join(os.path.basename(c) for c in cands)})" if cands else ""
            raise DatasetError(f"{self.stimuli}: movie of run {r.id} not found: expected {want}{found}",
                               self.stimuli)
        return pick[0]

    def _load_timing(self) -> dict[int, list[Block]]:
        if self._timing is None:
            self._timing = clip_timing(self._find(self.timing_file))
        return self._timing

    def _load_wordnet(self) -> tuple[dict[str, np.ndarray], list[str], str]:
        """Per-movie (seconds, S) bool label matrices, synset names and the file path."""
        if self._wordnet is not None:
            return self._wordnet
        import h5py

        path = self._find(self.wordnet_file)
        try:
            with h5py.File(path, "r") as f:
                if "synsets" not in f:
                    raise DatasetError(f"{path}: no 'synsets' dataset (keys: {', '.join(f.keys())})",
                                       path)
                synsets = [s.decode() if isinstance(s, bytes) else str(s)
                           for s in np.asarray(f["synsets"][()]).ravel()]
                labels = {}
                for r in HCP_RUNS:
                    if r.movie not in f:
                        raise DatasetError(f"{path}: no {r.movie!r} dataset (keys: "
                                           f"{', '.join(f.keys())})", path)
                    arr = np.asarray(f[r.movie][()])
                    if arr.ndim != 2 or arr.shape[1] != len(synsets):
                        raise DatasetError(f"{path}: {r.movie} has shape {arr.shape}, expected "
                                           f"(seconds, {len(synsets)} synsets)", path)
                    labels[r.movie] = arr > 0
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(f"{path}: cannot read the WordNet file ({type(exc).__name__}: {exc})",
                               path) from exc
        self._wordnet = (labels, synsets, path)
        return self._wordnet

    def _implied(self) -> np.ndarray:
        """implied[b, a]: labels a and b have the same part of speech (WordNet's hypernyms do) and
        a occurs wherever b does, at strictly more seconds; shape (S, S)."""
        if self._implied_cache is not None:
            return self._implied_cache
        labels, synsets, _ = self._load_wordnet()
        occ = np.concatenate([labels[r.movie] for r in HCP_RUNS]).astype(np.float32)
        inter = occ.T @ occ
        count = np.diag(inter)
        pos = np.array([_synset_pos(s) for s in synsets])
        self._implied_cache = ((inter == count[:, None]) & (count[None, :] > count[:, None])
                               & (count[:, None] > 0) & (pos[:, None] == pos[None, :]))
        return self._implied_cache

    # ---------------------------------------------------------------- timelines
    def frame_indices(self, t: int, fps: float) -> list[int]:
        """Movie frame indices averaged for TR ``t`` (``frames_per_tr`` of them)."""
        return frame_indices(t, self.tr, fps, self.frames_per_tr, self.movie_start_s)

    def timeline(self, run) -> Timeline:
        """Frame reference, caption and segment of every TR of a run (module docstring).

        Raises :class:`DatasetError` when the stimuli and the BOLD disagree on the run's length
        (WordNet rows, timing sheet, movie duration).
        """
        r = self._check_run(run)
        if r.id in self._timelines:
            return self._timelines[r.id]
        n = self.n_trs[r.id]
        number = int(r.movie.split("_")[0][len("MOVIE"):])
        timing = self._load_timing()
        if number not in timing:
            raise DatasetError(f"{self._find(self.timing_file)}: no 7T_MOVIE{number} section "
                               f"(run {r.id})")
        blocks = timing[number]
        labels, synsets, wn_path = self._load_wordnet()
        W = labels[r.movie]
        if W.shape[0] != n:
            raise DatasetError(f"{wn_path}: {r.movie} has {W.shape[0]} seconds of labels, the BOLD "
                               f"of run {r.id} has {n} TRs", wn_path)
        end = blocks[-1].stop
        if end > n * self.tr + 1.0:
            raise DatasetError(f"{self._find(self.timing_file)}: 7T_MOVIE{number} ends at {end:g} s, "
                               f"the BOLD of run {r.id} has {n} TRs ({n * self.tr:g} s)")
        movie_path = self.movie_path(r.id)
        rel = os.path.relpath(movie_path, self.stimuli).replace(os.sep, "/")
        movie = self._frames.movie(rel)
        clips = [b for b in blocks if not b.is_rest]
        last_clip = clips[-1] if clips else None
        last_frame_s = max((b.stop for b in clips), default=0.0) - self.movie_start_s
        if movie.duration + 1.0 / movie.fps < last_frame_s - 0.5:
            raise DatasetError(f"{movie_path} lasts {movie.duration:.2f} s; the timing sheet shows "
                               f"clips until {last_frame_s:g} s of run {r.id}", movie_path)
        implied = None if self.hypernyms else self._implied()
        frames, captions, segments = [], [], []
        for t in range(n):
            mid = (t + 0.5) * self.tr
            block = next((b for b in blocks if b.start <= mid < b.stop), None)
            if block is None or block.is_rest:
                frames.append(None)
                captions.append("")
                segments.append(REST)
                continue
            last = max(int(movie.duration * movie.fps) - 1, 0)
            idx = [min(max(i, 0), last) for i in self.frame_indices(t, movie.fps)]
            frames.append(frame_ref(rel, idx))
            active = np.flatnonzero(W[t])
            if implied is not None and active.size:
                active = active[~implied[np.ix_(active, active)].any(axis=0)]
            captions.append(wordnet_caption(active, synsets))
            segments.append(REPEAT_LABEL if block is last_clip
                            else f"{r.movie}_clip{clips.index(block) + 1}")
        tl = Timeline(run=r.id, tr=self.tr, frame=frames, caption=captions, segment=segments)
        self._timelines[r.id] = tl
        return tl

    def timelines(self) -> list[Timeline]:
        return [self.timeline(r) for r in self.runs]

    # ---------------------------------------------------------------- frames
    def load_frame(self, ref):
        """The RGB ``PIL.Image.Image`` of a frame reference ``"<movie>#f=<i>[,<i>...]"``
        (frames averaged when several; :mod:`alignment.data.video`)."""
        return self._frames.load(ref)

    def close(self):
        """Close the open movies."""
        self._frames.close()

    # ---------------------------------------------------------------- fingerprint
    def fingerprint(self, subjects=None, *, include_bold: bool = True, content: bool = False) -> str:
        """Hex SHA-256 of the options, the stimulus files and (``include_bold``) the BOLD files
        of ``subjects``: paths relative to the stimulus folder / HCP tree plus size and
        modification time, or the bytes with ``content=True``. Location-independent."""
        h = hashlib.sha256(_FINGERPRINT_VERSION)
        options = (self.frames_per_tr, self.hypernyms, self.stimulus_version, self.movie_start_s,
                   sorted(self.n_trs.items()))
        h.update(repr(options).encode())

        def add(path: str, base: str):
            rel = os.path.relpath(path, base)
            h.update(f"\0{rel}\0".encode())
            try:
                if content:
                    with open(path, "rb") as f:
                        for chunk in iter(lambda: f.read(1 << 20), b""):
                            h.update(chunk)
                else:
                    st = os.stat(path)
                    h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
            except OSError:
                h.update(b"<missing>")

        for name in (self.timing_file, self.wordnet_file):
            try:
                add(self._find(name), self.stimuli)
            except DatasetError:
                h.update(f"\0{name}\0<missing>".encode())
        for run in self.runs:
            try:
                add(self.movie_path(run), self.stimuli)
            except DatasetError:
                h.update(f"\0{run}\0<no movie>".encode())
        if include_bold:
            subs = self.subjects if subjects is None else \
                [subjects] if isinstance(subjects, str) else sorted(subjects)
            for sid in subs:
                for run in self.runs:
                    try:
                        add(self.bold_path(sid, run), self.root)
                    except DatasetError:
                        h.update(f"\0{sid}/{run}\0<missing>".encode())
        return h.hexdigest()

    # ---------------------------------------------------------------- validation
    def validate(self, subjects=None, *, check_bold: bool = True,
                 check_images: bool = False) -> list[str]:
        """Every problem found, one line each; computes nothing.

        Checks the stimulus files and their agreement with the BOLD (:meth:`timeline`: WordNet
        rows, timing sheet and movie length against each run's TRs), optionally decodes the
        first and last frame of every run (``check_images``: a sample, decoding all ~3600 would
        take minutes), and for every subject and run the BOLD file: present, 2 mm, T × V,
        fsLR32k layout, and with ``check_bold`` (reads every file) NaN/infinite values, constant
        columns and the series step."""
        problems: list[str] = []
        for run in self.runs:
            try:
                tl = self.timeline(run)
                if check_images:
                    refs = [f for f in tl.frame if f]
                    for ref in refs[:1] + refs[-1:]:
                        self.load_frame(ref)
            except DatasetError as exc:
                problems.append(str(exc))
        subs = self.subjects if subjects is None else [str(s) for s in subjects]
        if not subs:
            problems.append(f"{self.root}: no subject with a tfMRI_MOVIE run folder found")
        for sid in subs:
            for run in self.runs:
                try:
                    path = self.bold_path(sid, run)
                    if not check_bold:
                        shape, _ = self._header_shape(path)
                        self._check_shape(path, shape, self._runs[run], sid, self.n_trs[run])
                        continue
                    data, step = self._load_bold_raw(sid, self._runs[run], path)
                except DatasetError as exc:
                    problems.append(str(exc))
                    continue
                finite = np.isfinite(data)
                if not finite.all():
                    problems.append(f"{path}: {int((~finite).sum())} NaN/infinite values in "
                                    f"{int((~finite).any(axis=0).sum())} columns")
                    data = np.where(finite, data, 0.0)
                n_const = int((np.ptp(data, axis=0) == 0).sum()) if data.shape[0] > 1 else 0
                if n_const:
                    problems.append(f"{path}: {n_const} of {data.shape[1]} columns are constant "
                                    "over the run")
                if not np.isclose(step, self.tr, rtol=1e-3):
                    problems.append(f"{path}: CIFTI series step is {step:g} s, HCP's TR is "
                                    f"{self.tr:g} s")
        return problems


# --------------------------------------------------------------------------------------------
# pointer file and detection
# --------------------------------------------------------------------------------------------
class _PointerTable(Table):
    hcp_root: str = Field(description="the folder holding the HCP subject folders")
    stimuli: str = Field(description="the movie stimulus folder")
    name: str = "HCP 7T movie"
    subjects: list[str] | None = None
    frames_per_tr: PositiveInt = 1
    hypernyms: bool = True
    stimulus_version: Literal[STIMULUS_VERSIONS] = "auto"
    movie_start_s: float = 0.0
    strict_trs: bool = False


class _PointerToml(Table):
    noun: ClassVar[str] = "tables"
    hcp7t: _PointerTable


def _stimulus_folder(root: str) -> str | None:
    """A folder with the WordNet file inside the tree, at most two levels down."""
    for pattern in (WORDNET_FILE, os.path.join("*", WORDNET_FILE), os.path.join("*", "*", WORDNET_FILE)):
        hits = sorted(glob.glob(os.path.join(glob.escape(root), pattern)))
        if hits:
            return os.path.dirname(hits[0])
    return None


def _is_hcp_tree(path: str, limit: int = 50) -> bool:
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)[:limit]
    except OSError:
        return False
    return any(e.is_dir() and any(os.path.isdir(os.path.join(e.path, "MNINonLinear", "Results", r.scan))
                                  for r in HCP_RUNS) for e in entries)


def _detect(path: str) -> bool:
    try:
        return pointer_file(path, POINTER_FILE) is not None or (os.path.isdir(path) and _is_hcp_tree(path))
    except Exception:
        return False


def open_hcp7t(path) -> HCPMovieDataset:
    """Open an ``hcp7t.toml`` pointer (or its folder), or an HCP tree holding its stimuli."""
    path = os.path.abspath(os.fspath(path))
    pointer = pointer_file(path, POINTER_FILE)
    if pointer is None:
        if not _is_hcp_tree(path):
            raise DatasetError(f"{path}: neither an {POINTER_FILE} nor an HCP tree "
                               "(<subject>/MNINonLinear/Results/tfMRI_MOVIE*_7T_*)", path)
        stimuli = _stimulus_folder(path)
        if stimuli is None:
            raise DatasetError(f"{path}: HCP tree without the movie stimulus folder ({WORDNET_FILE} "
                               f"not found two levels down); write an {POINTER_FILE} with "
                               "[hcp7t] hcp_root and stimuli", path)
        return HCPMovieDataset(path, stimuli)
    try:
        with open(pointer, "rb") as f:
            raw = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{pointer}: invalid TOML ({exc})", pointer) from exc
    try:
        cfg = check(_PointerToml, raw, pointer).hcp7t
    except ConfigError as exc:
        raise DatasetError(str(exc), pointer) from None
    base = os.path.dirname(pointer)
    opts = cfg.model_dump()
    return HCPMovieDataset(os.path.join(base, os.path.expanduser(opts.pop("hcp_root"))),
                           os.path.join(base, os.path.expanduser(opts.pop("stimuli"))), **opts)


register_dataset_kind(KIND, _detect, open_hcp7t)
