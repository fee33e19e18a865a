"""Pereira et al. 2018, Experiment 1: concept fMRI, read from the released ``.mat`` files
(dataset kind ``pereira2018``).

Samples are concepts, not TRs (``sample_unit == "concept"``): one response map per concept and
paradigm. Shapes: C concepts (180), V_s voxels of participant s (counts differ between
participants), A atlases of the participant's metadata.

What is read from where
-----------------------
One folder per participant (``M01`` ... ``M17``, ``P01``) under the dataset root, each with
one file per paradigm::

    <root>/<participant>/data_180concepts_pictures.mat
    <root>/<participant>/data_180concepts_sentences.mat
    <root>/<participant>/data_180concepts_wordclouds.mat

Each file holds (MATLAB v5 files are read with ``scipy.io.loadmat``, v7.3 / HDF5 files with
h5py, whichever the file is):

- ``examples``: C × V_s, the response of every voxel to every concept;
- ``keyConcept``: C × 1 cell of the concept words, in the row order of ``examples``;
- ``meta``: a struct in the CMU IDM layout: ``nvoxels``; ``dimx``, ``dimy``, ``dimz`` (the
  imaging volume); ``colToCoord`` (V_s × 3, 1-based voxel coordinates of every column);
  ``coordToCol`` (dimx × dimy × dimz, the 1-based column of every voxel, 0 outside the mask);
  ``atlases`` (1 × A cell of atlas names, among which the networks ``languageLH``,
  ``languageRH``, ``visual``, ...); ``rois`` (1 × A cell, each an R × 1 cell of ROI names);
  ``roiColumns`` (1 × A cell, each an R × 1 cell of 1-based column indices of an ROI);
  ``roiMultimask`` (1 × A cell, each V_s × 1: the 1-based ROI of every column, 0 for none).

A *network* is an atlas of ``meta.atlases``; its columns are the union of its ROIs'
``roiColumns`` (:meth:`PereiraDataset.network_columns`), sorted, each column once.

Stimuli, all optional (what model features are computed from):

- the concept word: ``keyConcept``;
- sentences: a table (``sentences``; TSV, or CSV by extension) with columns ``concept`` and
  ``sentence``, one row per sentence;
- pictures: a folder (``pictures``) with one sub-folder per concept holding its images
  (``<pictures>/<concept>/*.jpg``); concept names match case-insensitively;
- word clouds: a table (``wordclouds``) with columns ``concept`` and ``words`` (the words of
  the cloud, comma-separated), or a folder of images laid out as ``pictures`` is;
- categories: a table (``categories``) with columns ``concept`` and ``category``, for ordering
  and labelling concepts (:meth:`PereiraDataset.categories`); not a stimulus, so not part of
  the fingerprint.

Verified from public sources, and what is not
---------------------------------------------
- The file names ``data_180concepts_{pictures,sentences,wordclouds}.mat`` in one folder per
  participant, the participant ids (M01-M10, M13-M17, P01), and the variables ``examples``
  (180 × voxels), ``keyConcept`` (a 180 × 1 cell, read by public code as
  ``keyConcept[i][0][0]``), ``meta.atlases`` (a 1 × A cell of names including ``languageLH``
  and ``visual``), ``meta.roiColumns`` (a 1 × A cell of cells of 1-based column vectors; a
  network's voxels are the concatenation of its ROIs' columns), ``meta.roiMultimask`` and
  ``meta.rois`` (per atlas, the ROI index of every column and the ROI names): public analysis
  code reading the released files with ``scipy.io.loadmat`` (the companion VLM-RSA study's code
  among it).
- ``nvoxels``, ``dimx/dimy/dimz``, ``colToCoord``, ``coordToCol``: the CMU IDM ``meta``
  format these files follow (public descriptions of that format). That every file has all of
  them is not verified: only ``examples``, ``keyConcept`` and ``meta.atlases`` /
  ``meta.roiColumns`` are required; the others are checked when present.
- v7.3 (HDF5) copies of these files: MATLAB's documented v7.3 layout (datasets stored
  transposed, ``MATLAB_class`` attributes, cells as object references into ``#refs#``). Which
  copies circulate in that format is not known; both are read.
- The stimulus files' layout (sentence and word-cloud tables, picture folders per concept) is
  an assumption (the release's own stimulus files were not inspected); they are options.
- The space of the volume (participant-native or MNI) is not verified: :attr:`space` is
  ``"volume"`` and no surface map is drawn from these data.

Pointing the tool at the data
-----------------------------
``load_dataset(path)`` opens ``pereira2018`` when ``path`` is a ``pereira2018.toml`` file (or
a folder holding one)::

    [pereira2018]
    root = "/data/Pereira2018/exp1"        # relative paths: from the file's folder
    # optional: name, participants = ["M01", "P01"], pictures = "stimuli/pictures",
    # sentences = "stimuli/sentences.tsv", wordclouds = "stimuli/wordclouds.tsv",
    # categories = "stimuli/categories.tsv", n_concepts = 180

or when ``path`` is a folder whose sub-folders hold ``data_180concepts_*.mat`` files.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
import tomllib
from collections import OrderedDict
from typing import ClassVar

import numpy as np
from pydantic import Field, PositiveInt

from alignment.data.protocol import DatasetError, pointer_file, register_dataset_kind
from alignment.schema import ConfigError, Table, check

__all__ = ["CONCEPT", "N_CONCEPTS", "PARADIGMS", "POINTER_FILE", "PereiraDataset", "PereiraStimuli", "mat_cell",
           "pereira_contents", "read_mat", "write_pereira_mat"]

KIND = "pereira2018"
#: ``sample_unit`` of concept-wise datasets
CONCEPT = "concept"
#: the pointer file :func:`~alignment.data.load_dataset` recognises
POINTER_FILE = "pereira2018.toml"
#: the three paradigms of Experiment 1, in the order they are listed
PARADIGMS = ("pictures", "sentences", "wordclouds")
#: concepts of Experiment 1
N_CONCEPTS = 180
FILE_PATTERN = "data_180concepts_{paradigm}.mat"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_FINGERPRINT_VERSION = b"alignment-pereira2018-fingerprint-v1"


# --------------------------------------------------------------------------------------------
# MATLAB files, v5 and v7.3
# --------------------------------------------------------------------------------------------
def read_mat(path, variables=None) -> dict:
    """The variables of a MATLAB file, v5 (scipy) or v7.3 (HDF5, h5py), as plain Python.

    Both formats give the same values: numeric arrays in MATLAB's shape (a C × V matrix is a
    (C, V) array), char arrays as ``str``, cell arrays as object arrays in MATLAB's shape, and
    structs (1 × 1) as dicts.

    Parameters
    ----------
    path : str or PathLike
    variables : list of str, optional
        Only these variables (default: all).

    Raises
    ------
    DatasetError
        The file is missing or not a MATLAB file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found", path)
    import h5py

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                names = [k for k in f.keys() if not k.startswith("#")]
                return {k: _from_h5(f, f[k]) for k in names if variables is None or k in variables}
        from scipy.io import loadmat

        raw = loadmat(path, squeeze_me=False, struct_as_record=True, chars_as_strings=True,
                      variable_names=variables)
    except DatasetError:
        raise
    except Exception as exc:  # scipy / h5py raise many kinds on a broken file
        raise DatasetError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})", path) from None
    return {k: _from_v5(v) for k, v in raw.items() if not k.startswith("__")}


def _examples_shape(path: str) -> tuple[int, ...]:
    """MATLAB shape of ``examples`` without reading the data."""
    import h5py

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return tuple(reversed(f["examples"].shape))
        from scipy.io import whosmat

        shapes = {name: shape for name, shape, _ in whosmat(path)}
        return tuple(shapes["examples"])
    except KeyError:
        raise DatasetError(f"{path}: variable 'examples' is missing", path) from None
    except Exception as exc:
        raise DatasetError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})", path) from None


def _from_v5(x):
    if not isinstance(x, np.ndarray):
        return x
    if x.dtype.names:  # struct array
        items = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(x.shape):
            items[idx] = {name: _from_v5(x[idx][name]) for name in x.dtype.names}
        return items.flat[0] if x.size == 1 else items
    if x.dtype.kind == "U":  # chars_as_strings: one str per row
        rows = [str(s) for s in x.ravel()]
        return "" if not rows else rows[0] if len(rows) == 1 else rows
    if x.dtype == object:  # cell array
        out = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(x.shape):
            out[idx] = _from_v5(x[idx])
        return out
    return x


def _from_h5(f, obj):
    import h5py

    if isinstance(obj, h5py.Group):  # struct
        return {k: _from_h5(f, v) for k, v in obj.items()}
    cls = obj.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if obj.attrs.get("MATLAB_empty", 0):
        return "" if cls == "char" else np.empty((0, 0), dtype=object if cls == "cell" else float)
    data = obj[()]
    if cls == "cell" or data.dtype == h5py.ref_dtype:
        data = np.asarray(data).T  # stored transposed, like every MATLAB array
        out = np.empty(data.shape, dtype=object)
        for idx in np.ndindex(data.shape):
            out[idx] = _from_h5(f, f[data[idx]])
        return out
    data = np.asarray(data).T
    if cls == "char":  # uint16 code units, one row per string
        rows = ["".join(map(chr, row)) for row in np.atleast_2d(data)]
        return rows[0] if len(rows) == 1 else rows
    if cls == "logical":
        return data.astype(bool)
    return data


def _cells(x) -> list:
    """The elements of a cell array (column-major, as MATLAB indexes it); a lone value is a
    one-element list (a squeezed 1 × 1 cell)."""
    if isinstance(x, np.ndarray) and x.dtype == object:
        return list(x.ravel(order="F"))
    if isinstance(x, list):
        return x
    return [x]


def _string(x) -> str:
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.flat[0]
    if isinstance(x, list) and len(x) == 1:
        x = x[0]
    if not isinstance(x, str):
        raise ValueError(f"expected a string, got {type(x).__name__}")
    return x


def _scalar(x) -> int:
    return int(np.asarray(x).ravel()[0])


# --------------------------------------------------------------------------------------------
# writing files in Pereira's structure (MATLAB v5), for simulated datasets and tests
# --------------------------------------------------------------------------------------------
def mat_cell(items, shape) -> np.ndarray:
    """A MATLAB cell array of ``shape`` (an object array) holding ``items`` in order."""
    out = np.empty(shape, dtype=object)
    for i, x in enumerate(items):
        out.flat[i] = x
    return out


def pereira_contents(examples, concepts, atlases, col_to_coord, dims) -> dict:
    """The variables of a participant's file, as :func:`read_mat` reads them back.

    Parameters
    ----------
    examples : (C, V) array
    concepts : list of str, length C (``keyConcept``)
    atlases : dict
        Network name -> list of its ROIs, each a sequence of 1-based columns.
    col_to_coord : (V, 3) int array
        1-based voxel coordinates of every column, inside ``dims``.
    dims : (dimx, dimy, dimz)

    Returns
    -------
    dict with ``examples``, ``keyConcept`` (C × 1 cell) and ``meta`` (module docstring; ROI
    names ``<network>_roi<k>``).
    """
    examples = np.asarray(examples)
    v = examples.shape[1]
    coords = np.asarray(col_to_coord, dtype=np.int64)
    coord_to_col = np.zeros(tuple(dims), dtype=np.float64)
    coord_to_col[tuple((coords - 1).T)] = np.arange(1, len(coords) + 1)
    names = list(atlases)
    masks = []
    for rois in atlases.values():
        m = np.zeros((v, 1))
        for r, cols in enumerate(rois):
            m[np.asarray(cols, dtype=np.int64) - 1] = r + 1
        masks.append(m)
    n = len(names)
    meta = {
        "nvoxels": float(v), "dimx": float(dims[0]), "dimy": float(dims[1]), "dimz": float(dims[2]),
        "colToCoord": coords.astype(np.float64), "coordToCol": coord_to_col,
        "atlases": mat_cell(names, (1, n)),
        "rois": mat_cell([mat_cell([f"{a}_roi{r}" for r in range(len(atlases[a]))], (len(atlases[a]), 1))
                          for a in names], (1, n)),
        "roiColumns": mat_cell([mat_cell([np.asarray(c, dtype=np.float64).reshape(-1, 1) for c in atlases[a]],
                                         (len(atlases[a]), 1)) for a in names], (1, n)),
        "roiMultimask": mat_cell(masks, (1, n)),
    }
    return {"examples": examples, "keyConcept": mat_cell(list(concepts), (len(concepts), 1)), "meta": meta}


def write_pereira_mat(path, contents: dict) -> None:
    """Write :func:`pereira_contents` (or any variables) as a MATLAB v5 file."""
    from scipy.io import savemat

    savemat(os.fspath(path), contents, do_compression=False)


# --------------------------------------------------------------------------------------------
# one participant's file
# --------------------------------------------------------------------------------------------
class _Meta:
    """What a participant's ``meta`` says: atlases, their ROIs and columns, the volume."""

    def __init__(self, meta: dict, n_voxels: int, path: str):
        def fail(what):
            raise DatasetError(f"{path}: meta.{what}", path)

        if not isinstance(meta, dict):
            fail("is missing or not a struct")
        self.n_voxels = n_voxels
        for field in ("atlases", "roiColumns"):
            if field not in meta:
                fail(f"{field} is missing")
        try:
            self.atlases = [_string(a) for a in _cells(meta["atlases"])]
        except ValueError:
            fail("atlases is not a cell array of names")
        columns = _cells(meta["roiColumns"])
        if len(columns) != len(self.atlases):
            fail(f"roiColumns has {len(columns)} atlases, meta.atlases {len(self.atlases)}")
        self.roi_columns: list[list[np.ndarray]] = []
        for name, rois in zip(self.atlases, columns):
            cols = [np.asarray(c, dtype=np.float64).ravel() for c in _cells(rois)]
            for c in cols:
                if c.size and (c.min() < 1 or c.max() > n_voxels or np.any(c != np.round(c))):
                    fail(f"roiColumns of atlas {name!r} holds columns outside 1..{n_voxels} "
                         "(inconsistent voxel counts)")
            self.roi_columns.append([c.astype(np.int64) - 1 for c in cols])
        self.roi_names: list[list[str]] = []
        rois = _cells(meta["rois"]) if "rois" in meta else [None] * len(self.atlases)
        for k, (names, cols) in enumerate(zip(rois, self.roi_columns)):
            try:
                listed = [_string(n) for n in _cells(names)] if names is not None else []
            except ValueError:
                listed = []
            self.roi_names.append(listed if len(listed) == len(cols)
                                  else [f"{self.atlases[k]}_{i + 1}" for i in range(len(cols))])
        self.multimask: list[np.ndarray | None] = [None] * len(self.atlases)
        if "roiMultimask" in meta:
            masks = _cells(meta["roiMultimask"])
            for k, m in enumerate(masks[:len(self.atlases)]):
                m = np.asarray(m).ravel()
                if m.size != n_voxels:
                    fail(f"roiMultimask of atlas {self.atlases[k]!r} has {m.size} entries, "
                         f"examples {n_voxels} columns (inconsistent voxel counts)")
                self.multimask[k] = m.astype(np.int64)
        if "nvoxels" in meta and _scalar(meta["nvoxels"]) != n_voxels:
            fail(f"nvoxels is {_scalar(meta['nvoxels'])}, examples has {n_voxels} columns "
                 "(inconsistent voxel counts)")
        self.dims = tuple(_scalar(meta[d]) for d in ("dimx", "dimy", "dimz")) \
            if all(d in meta for d in ("dimx", "dimy", "dimz")) else None
        self.col_to_coord = None
        if "colToCoord" in meta:
            c = np.asarray(meta["colToCoord"])
            if c.shape != (n_voxels, 3):
                fail(f"colToCoord is {c.shape}, expected ({n_voxels}, 3) (inconsistent voxel counts)")
            self.col_to_coord = c.astype(np.int64)
        self.coord_to_col = None
        if "coordToCol" in meta:
            c = np.asarray(meta["coordToCol"])
            if self.dims is not None and c.shape != self.dims:
                fail(f"coordToCol is {c.shape}, dimx/dimy/dimz say {self.dims}")
            if c.size and c.max() > n_voxels:
                fail(f"coordToCol points at column {int(c.max())}, examples has {n_voxels} "
                     "(inconsistent voxel counts)")
            self.coord_to_col = c.astype(np.int64)

    def network_columns(self, network: str) -> np.ndarray:
        if network not in self.atlases:
            raise DatasetError(f"unknown network {network!r}; the metadata lists "
                               f"{', '.join(self.atlases)}")
        cols = self.roi_columns[self.atlases.index(network)]
        return np.unique(np.concatenate(cols)) if cols else np.empty(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------
class PereiraStimuli:
    """What the models see of each concept (module docstring, *Stimuli*), without the fMRI files:
    the part of :class:`PereiraDataset` that :func:`alignment.concepts.concept_features` reads.

    A simulated dataset computes model features from its stimuli before it writes the brain
    responses (:mod:`alignment.simulation.concepts`); :class:`PereiraDataset` is this plus the
    participants' files.

    Parameters
    ----------
    root : str or PathLike
        Relative stimulus paths are taken from here.
    concepts : sequence of str
        The C concept words, in row order.
    pictures, sentences, wordclouds, categories : str or PathLike, optional
        As :class:`PereiraDataset`.
    """

    sample_unit = CONCEPT
    paradigms = PARADIGMS

    def __init__(self, root, concepts=(), *, pictures=None, sentences=None, wordclouds=None, categories=None):
        self.root = os.path.abspath(os.fspath(root))

        def resolve(p):
            return None if p is None else os.path.join(self.root, os.path.expanduser(os.fspath(p)))

        self.pictures, self.sentences_file, self.wordclouds, self.categories_file = \
            map(resolve, (pictures, sentences, wordclouds, categories))
        self._concepts: list[str] | None = [str(c) for c in concepts] or None

    @property
    def concepts(self) -> list[str]:
        """The C concept words, in row order."""
        return list(self._concepts or ())

    def _concept_key(self, concept) -> str:
        concept = str(concept)
        if concept not in self.concepts:
            raise DatasetError(f"unknown concept {concept!r}")
        return concept.lower()

    def sentences(self, concept) -> list[str]:
        """The sentences of a concept, from the ``sentences`` table (empty without one)."""
        key = self._concept_key(concept)
        if self.sentences_file is None:
            return []
        return [row["sentence"] for row in _read_table(self.sentences_file, ("concept", "sentence"))
                if row["concept"].strip().lower() == key]

    def wordcloud(self, concept) -> list[str]:
        """The words of a concept's cloud (a ``wordclouds`` table), or its image references
        (a ``wordclouds`` folder, for :meth:`load_frame`)."""
        key = self._concept_key(concept)
        if self.wordclouds is None:
            return []
        if os.path.isdir(self.wordclouds):
            return [f"wordclouds:{r}" for r in _images(self.wordclouds, key)]
        rows = _read_table(self.wordclouds, ("concept", "words"))
        return [w.strip() for row in rows if row["concept"].strip().lower() == key
                for w in row["words"].split(",") if w.strip()]

    def categories(self) -> dict[str, str]:
        """Concept word (as in :attr:`concepts`) -> its category, from the ``categories`` table
        (empty without one; concepts the table does not list are left out)."""
        if self.categories_file is None:
            return {}
        listed = {row["concept"].strip().lower(): row["category"].strip()
                  for row in _read_table(self.categories_file, ("concept", "category"))}
        return {c: listed[c.lower()] for c in self.concepts if c.lower() in listed}

    def pictures_of(self, concept) -> list[str]:
        """Image references (``"pictures:<concept>/<file>"``) of a concept, for :meth:`load_frame`."""
        key = self._concept_key(concept)
        return [] if self.pictures is None else [f"pictures:{r}" for r in _images(self.pictures, key)]

    def stimuli(self, concept, paradigm) -> dict:
        """What the models see of a concept in a paradigm: ``word`` always; ``sentences``
        (sentences), ``pictures`` (pictures: image references, and the word), ``wordcloud``
        (word clouds: the cloud's words or image references)."""
        out = {"word": str(concept)}
        if paradigm == "sentences":
            out["sentences"] = self.sentences(concept)
        elif paradigm == "pictures":
            out["pictures"] = self.pictures_of(concept)
        elif paradigm == "wordclouds":
            out["wordcloud"] = self.wordcloud(concept)
        else:
            raise DatasetError(f"unknown paradigm {paradigm!r}; Pereira's are {', '.join(PARADIGMS)}")
        return out

    def load_frame(self, ref):
        """The RGB ``PIL.Image.Image`` of a reference ``"pictures:<rel>"`` or ``"wordclouds:<rel>"``."""
        from PIL import Image

        where, _, rel = str(ref).partition(":")
        base = {"pictures": self.pictures, "wordclouds": self.wordclouds}.get(where)
        if base is None or not rel or not os.path.isdir(base):
            raise DatasetError(f"image reference {ref!r} is not 'pictures:<file>' or 'wordclouds:<file>' "
                               "of a configured image folder")
        path = os.path.join(base, rel)
        try:
            with Image.open(path) as im:
                frame = im.convert("RGB")
                frame.info["source"] = str(path)  # what region-feature files are keyed by
                return frame
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: unreadable image ({exc})", path) from None


class PereiraDataset(PereiraStimuli):
    """Pereira 2018 Experiment 1 concept data: a :class:`~alignment.data.protocol.Dataset`
    whose samples are the concepts (module docstring).

    Parameters
    ----------
    root : str or PathLike
        Folder with one sub-folder per participant.
    name : str
    participants : list of str, optional
        Default: every sub-folder holding a ``data_180concepts_*.mat`` file.
    pictures, sentences, wordclouds : str or PathLike, optional
        The stimulus files (module docstring); relative paths are taken from ``root``.
    categories : str or PathLike, optional
        A table of each concept's category (module docstring), relative to ``root`` as well.
    n_concepts : int
        Concepts every file must have (180 for Experiment 1).

    Raises
    ------
    DatasetError
        No participant, or a participant lacks a paradigm's file.
    """

    kind = KIND
    space = "volume"
    #: files held in memory at once: one participant's three paradigms (for their average)
    FILE_CACHE = 3

    def __init__(self, root, *, name: str = "Pereira 2018", participants=None, pictures=None,
                 sentences=None, wordclouds=None, categories=None, n_concepts: int = N_CONCEPTS):
        super().__init__(root, pictures=pictures, sentences=sentences, wordclouds=wordclouds, categories=categories)
        if not os.path.isdir(self.root):
            raise DatasetError(f"{self.root}: dataset folder not found", self.root)
        self.name = name
        self.n_concepts = int(n_concepts)
        found = sorted(e.name for e in os.scandir(self.root) if e.is_dir() and _has_files(e.path))
        self.subjects = found if participants is None else [str(p) for p in participants]
        if not self.subjects:
            raise DatasetError(f"{self.root}: no participant folder with {FILE_PATTERN.format(paradigm='*')} "
                               "files found", self.root)
        for sid in self.subjects:
            for paradigm in PARADIGMS:
                path = self.path(sid, paradigm)
                if not os.path.isfile(path):
                    raise DatasetError(f"{path}: file not found (participant {sid}, paradigm {paradigm})", path)
        self._files: OrderedDict[str, dict] = OrderedDict()
        self._meta: dict[str, _Meta] = {}

    def __repr__(self):
        return f"PereiraDataset({self.name!r}, root={self.root!r}, participants={self.subjects})"

    # ---------------------------------------------------------------- files
    def path(self, subject, paradigm) -> str:
        """The file of a participant and paradigm."""
        if paradigm not in PARADIGMS:
            raise DatasetError(f"unknown paradigm {paradigm!r}; Pereira's are {', '.join(PARADIGMS)}")
        return os.path.join(self.root, self._check_subject(subject), FILE_PATTERN.format(paradigm=paradigm))

    def _check_subject(self, subject) -> str:
        sid = str(subject)
        if sid not in self.subjects:
            raise DatasetError(f"unknown participant {sid!r}; participants: {', '.join(self.subjects)}")
        return sid

    def _file(self, subject, paradigm) -> dict:
        """examples (C, V_s) float32, concepts, meta of one file, checked."""
        path = self.path(subject, paradigm)
        if path in self._files:
            self._files.move_to_end(path)
            return self._files[path]
        raw = read_mat(path, ["examples", "keyConcept", "meta"])
        for var in ("examples", "keyConcept", "meta"):
            if var not in raw:
                raise DatasetError(f"{path}: variable {var!r} is missing", path)
        examples = np.asarray(raw["examples"])
        if examples.ndim != 2 or examples.dtype.kind not in "fiub":
            raise DatasetError(f"{path}: examples must be a numeric concepts × voxels matrix, "
                               f"got shape {examples.shape}", path)
        n, v = examples.shape
        if n != self.n_concepts:
            raise DatasetError(f"{path}: examples has {n} concepts (rows), expected {self.n_concepts}", path)
        try:
            concepts = [_string(c) for c in _cells(raw["keyConcept"])]
        except ValueError:
            raise DatasetError(f"{path}: keyConcept is not a cell array of words", path) from None
        if len(concepts) != n:
            raise DatasetError(f"{path}: keyConcept has {len(concepts)} concepts, examples {n} rows", path)
        if len(set(concepts)) != n:
            raise DatasetError(f"{path}: keyConcept repeats a concept", path)
        meta = _Meta(raw["meta"], v, path)
        sid = str(subject)
        if sid in self._meta and self._meta[sid].n_voxels != v:
            raise DatasetError(f"{path}: {v} voxels, the participant's other paradigms have "
                               f"{self._meta[sid].n_voxels} (inconsistent voxel counts)", path)
        self._meta.setdefault(sid, meta)
        if self._concepts is None:
            self._concepts = concepts
        elif concepts != self._concepts:
            raise DatasetError(f"{path}: keyConcept lists the concepts in another order or other "
                               "concepts than the other files", path)
        entry = {"examples": examples.astype(np.float32, copy=False), "concepts": concepts, "meta": meta}
        self._files[path] = entry
        if len(self._files) > self.FILE_CACHE:
            self._files.popitem(last=False)
        return entry

    # ---------------------------------------------------------------- the protocol
    @property
    def concepts(self) -> list[str]:
        """The C concept words, in the row order of every file (``keyConcept``)."""
        if self._concepts is None:
            self._file(self.subjects[0], PARADIGMS[0])
        return list(self._concepts)

    @property
    def n_vertices(self) -> int:
        """The largest voxel count over participants (each has its own: :meth:`n_voxels`),
        from the files' headers; 0 when none can be read (:meth:`validate` says why)."""
        counts = []
        for sid in self.subjects:
            try:
                counts.append(self.n_voxels(sid))
            except DatasetError:
                pass
        return max(counts, default=0)

    def n_voxels(self, subject) -> int:
        """V_s of a participant (the columns of ``examples`` in its first paradigm's file,
        read from the header)."""
        sid = self._check_subject(subject)
        if sid in self._meta:
            return self._meta[sid].n_voxels
        shape = _examples_shape(self.path(sid, PARADIGMS[0]))
        if len(shape) != 2:
            raise DatasetError(f"{self.path(sid, PARADIGMS[0])}: examples must be a concepts × voxels "
                               f"matrix, got shape {shape}")
        return int(shape[1])

    def networks(self, subject=None) -> list[str]:
        """The atlas names of ``meta.atlases`` (default: the first participant's)."""
        sid = self.subjects[0] if subject is None else self._check_subject(subject)
        if sid not in self._meta:
            self._file(sid, PARADIGMS[0])
        return list(self._meta[sid].atlases)

    def meta(self, subject) -> _Meta:
        """A participant's metadata: ``atlases``, ``roi_names``, ``roi_columns`` (0-based),
        ``multimask``, ``dims``, ``col_to_coord``, ``coord_to_col``, ``n_voxels``."""
        sid = self._check_subject(subject)
        if sid not in self._meta:
            self._file(sid, PARADIGMS[0])
        return self._meta[sid]

    def network_columns(self, subject, network) -> np.ndarray:
        """0-based columns (int64, sorted, unique) of a network's voxels for a participant."""
        return self.meta(subject).network_columns(network)

    def responses(self, subject, paradigm="pictures", network=None) -> np.ndarray:
        """(C, V) float32: a participant's concept responses in one paradigm, all voxels or one
        network's (``paradigm="average"``: the mean of the three paradigms, as Pereira's
        decoders used)."""
        if paradigm == "average":
            return np.mean([self.responses(subject, p, network) for p in PARADIGMS], axis=0)
        Y = self._file(subject, paradigm)["examples"]
        return Y if network is None else Y[:, self.network_columns(subject, network)]

    def bold_all(self, subject, paradigm="pictures", network=None):
        """(Y (C, V) float32, groups (C,) int64): the responses (:meth:`responses`) and one
        group per concept (concepts are the units held out together)."""
        Y = self.responses(subject, paradigm, network)
        return Y, np.arange(Y.shape[0], dtype=np.int64)

    # ---------------------------------------------------------------- stimuli
    # ---------------------------------------------------------------- fingerprint, validation
    def fingerprint(self, subjects=None, *, include_bold: bool = True, content: bool = False) -> str:
        """Hex SHA-256 of the options, the concept words, the stimulus files and
        (``include_bold``) the ``.mat`` files of ``subjects``: files by path relative to their
        folder plus size and modification time, or their bytes with ``content=True``.
        Location-independent."""
        h = hashlib.sha256(_FINGERPRINT_VERSION)
        h.update(repr(self.n_concepts).encode())

        def add(path: str, base: str):
            h.update(f"\0{os.path.relpath(path, base)}\0".encode())
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

        for label, p in (("sentences", self.sentences_file), ("wordclouds", self.wordclouds),
                         ("pictures", self.pictures)):
            h.update(f"\0[{label}]".encode())
            if p is None:
                continue
            files = sorted(glob.glob(os.path.join(glob.escape(p), "**", "*"), recursive=True)) \
                if os.path.isdir(p) else [p]
            for f in files:
                if os.path.isfile(f):
                    add(f, p if os.path.isdir(p) else os.path.dirname(p))
        # the concept words are stimuli too (read alone: cheap, and blind to the brain data)
        try:
            words = self.concepts if self._concepts is not None else \
                [_string(c) for c in _cells(read_mat(self.path(self.subjects[0], PARADIGMS[0]),
                                                     ["keyConcept"]).get("keyConcept", []))]
        except (DatasetError, ValueError):
            words = ["<unreadable>"]
        h.update(("\0[concepts]\0" + "\0".join(words)).encode())
        if include_bold:
            subs = self.subjects if subjects is None else [subjects] if isinstance(subjects, str) \
                else sorted(str(s) for s in subjects)
            for sid in subs:
                for paradigm in PARADIGMS:
                    add(self.path(sid, paradigm), self.root)
        return h.hexdigest()

    def validate(self, subjects=None) -> list[str]:
        """Every problem found, one line each: reads every file of ``subjects`` (default all)
        and checks its variables, concept count and order, voxel counts, NaN values, and that
        the stimulus files name known concepts."""
        problems = []
        subs = self.subjects if subjects is None else [str(s) for s in subjects]
        for sid in subs:
            for paradigm in PARADIGMS:
                try:
                    Y = self._file(sid, paradigm)["examples"]
                except DatasetError as exc:
                    problems.append(str(exc))
                    continue
                bad = ~np.isfinite(Y)
                if bad.any():
                    problems.append(f"{self.path(sid, paradigm)}: {int(bad.sum())} NaN/infinite values "
                                    f"in {int(bad.any(axis=0).sum())} voxels")
        if self._concepts is not None:
            known = {c.lower() for c in self._concepts}
            for path, column, cols in ((self.sentences_file, "concept", ("concept", "sentence")),
                                       (self.wordclouds, "concept", ("concept", "words")),
                                       (self.categories_file, "concept", ("concept", "category"))):
                if path is None or os.path.isdir(path):
                    continue
                try:
                    rows = _read_table(path, cols)
                except DatasetError as exc:
                    problems.append(str(exc))
                    continue
                unknown = sorted({r[column] for r in rows if r[column].strip().lower() not in known})
                if unknown:
                    problems.append(f"{path}: {len(unknown)} unknown concepts, e.g. {unknown[0]!r}")
        return problems


# --------------------------------------------------------------------------------------------
# stimulus files
# --------------------------------------------------------------------------------------------
def _read_table(path: str, columns: tuple[str, ...]) -> list[dict]:
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: stimulus table not found", path)
    delimiter = "," if path.lower().endswith(".csv") else "\t"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter=delimiter))
    header = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in header]
    if missing:
        raise DatasetError(f"{path}: needs the columns {', '.join(columns)}; missing {', '.join(missing)}", path)
    return [{c: (r[c] or "") for c in columns} for r in rows]


def _images(folder: str, key: str) -> list[str]:
    """Image files of a concept in ``folder/<concept>/`` (case-insensitive), relative to ``folder``."""
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: image folder not found", folder)
    subs = [e.name for e in os.scandir(folder) if e.is_dir() and e.name.lower() == key]
    out = []
    for sub in subs:
        for f in sorted(os.listdir(os.path.join(folder, sub))):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                out.append(f"{sub}/{f}")
    return out


def _has_files(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, FILE_PATTERN.format(paradigm=p))) for p in PARADIGMS)


# --------------------------------------------------------------------------------------------
# pointer file and detection
# --------------------------------------------------------------------------------------------
class _PointerTable(Table):
    root: str = Field(description="the folder with one sub-folder per participant")
    name: str = "Pereira 2018"
    participants: list[str] | None = None
    pictures: str | None = None
    sentences: str | None = None
    wordclouds: str | None = None
    categories: str | None = None
    n_concepts: PositiveInt = N_CONCEPTS


class _PointerToml(Table):
    noun: ClassVar[str] = "tables"
    pereira2018: _PointerTable


def _is_pereira_tree(path: str, limit: int = 50) -> bool:
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)[:limit]
    except OSError:
        return False
    return any(e.is_dir() and _has_files(e.path) for e in entries)


def _detect(path: str) -> bool:
    try:
        return pointer_file(path, POINTER_FILE) is not None or (os.path.isdir(path) and _is_pereira_tree(path))
    except Exception:
        return False


def open_pereira2018(path) -> PereiraDataset:
    """Open a ``pereira2018.toml`` pointer (or its folder), or a folder of participant folders."""
    path = os.path.abspath(os.fspath(path))
    pointer = pointer_file(path, POINTER_FILE)
    if pointer is None:
        if not _is_pereira_tree(path):
            raise DatasetError(f"{path}: neither a {POINTER_FILE} nor a folder of participant folders "
                               f"with {FILE_PATTERN.format(paradigm='*')} files", path)
        return PereiraDataset(path)
    try:
        with open(pointer, "rb") as f:
            raw = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{pointer}: invalid TOML ({exc})", pointer) from exc
    try:
        cfg = check(_PointerToml, raw, pointer).pereira2018
    except ConfigError as exc:
        raise DatasetError(str(exc), pointer) from None
    base = os.path.dirname(pointer)
    opts = cfg.model_dump()
    root = os.path.join(base, os.path.expanduser(opts.pop("root")))
    # stimulus paths in the pointer are relative to the pointer's folder, like root
    for key in ("pictures", "sentences", "wordclouds", "categories"):
        if opts[key] is not None:
            opts[key] = os.path.abspath(os.path.join(base, os.path.expanduser(opts[key])))
    return PereiraDataset(root, **opts)


register_dataset_kind(KIND, _detect, open_pereira2018)
