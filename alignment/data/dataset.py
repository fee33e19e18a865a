"""The custom dataset folder format (DESIGN §3) and CIFTI-2 dtseries helpers.

A dataset is a folder::

    DATASET/dataset.toml          [dataset] name, tr, space ("fsLR32k" | "fsaverage5")
                                  [[runs]] id, n_trs            (one table per run)
    DATASET/stimuli/<run>.tsv     columns: tr (0-based int), frame (path relative to DATASET,
                                  or empty), caption (text, or empty), segment (label)
    DATASET/frames/...            images referenced by the TSVs
    DATASET/sub-<id>/<run>.dtseries.nii   CIFTI-2 dtseries (fsLR32k), or <run>.npy (T × V),
                                  or <run>.L.func.gii + <run>.R.func.gii (fsaverage5: one
                                  data array per TR, 10242 vertices per hemisphere)

Example ``dataset.toml``::

    [dataset]
    name = "my-movies"
    tr = 1.0
    space = "fsLR32k"

    [[runs]]
    id = "MOVIE1"
    n_trs = 921

    [[runs]]
    id = "MOVIE2"
    n_trs = 918

The stimulus tables are read verbatim (:func:`split_tsv_line`): tab-separated, one row per
line; a field wholly enclosed in double quotes with inner quotes doubled (what pandas and
spreadsheets write for text with tabs or quotes) is unquoted, any other quote is text. Frames
must lie inside the dataset folder, links included.

Every problem with the files raises :class:`DatasetError` (a ``ValueError``) whose message
names the file and says what is wrong; :meth:`FolderDataset.validate` collects all problems
instead.

Two dataset kinds (:mod:`alignment.data.protocol`) read this format: ``folder``
(:class:`FolderDataset`, any folder with a ``dataset.toml``) and ``demo`` (:class:`DemoDataset`,
a folder that also holds the ground truth the simulated demo writes, :data:`GROUND_TRUTH_FILE`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import tomllib
from typing import Annotated, ClassVar, Iterable, Literal, NamedTuple

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt, StringConstraints, field_validator

from alignment.data.protocol import DEFAULT_KIND, TR, DatasetError, register_dataset_kind
from alignment.schema import ConfigError, NonEmpty, PositiveNumber, Table, check
from alignment.spaces import N_MESH_32K, SPACE_SIZES, cortex_vertices, fslr32k_brain_models
from alignment.timing import Timeline

__all__ = [
    "GROUND_TRUTH_FILE",
    "CiftiDtseries",
    "DemoDataset",
    "FolderDataset",
    "read_cifti_dtseries",
    "write_cifti_dtseries",
]

#: run ids name files (stimuli/<run>.tsv, sub-<id>/<run>.npy)
SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
#: the BOLD file of a run, by format: ``sub-<id>/<run><suffix>``; a GIfTI run is a pair of
#: files named by its left hemisphere (the right one ends in :data:`GIFTI_RIGHT`)
BOLD_SUFFIXES = (".dtseries.nii", ".npy", ".L.func.gii")
GIFTI_RIGHT = ".R.func.gii"


class DatasetTable(Table):
    name: Annotated[str, StringConstraints(pattern=r"\S")] = Field(description="a non-empty string")
    tr: PositiveNumber = Field(description="a positive number of seconds")
    space: Literal[tuple(SPACE_SIZES)]


class RunTable(Table):
    id: Annotated[str, StringConstraints(pattern=SAFE_ID)] | NonNegativeInt = Field(
        description="a run id usable as a file name (letters, digits, '.', '_', '+', '-')")
    n_trs: PositiveInt


class DatasetToml(Table):
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


def check_dataset_toml(raw: dict, path: str | os.PathLike) -> DatasetToml:
    """Check a parsed ``dataset.toml`` against :class:`DatasetToml`; raises :class:`ConfigError`."""
    return check(DatasetToml, raw, path)


TSV_COLUMNS = ("tr", "frame", "caption", "segment")
#: what :meth:`FolderDataset.bold` does with NaN / infinite values
NAN_POLICIES = ("raise", "zero", "mask", "keep")
# a field wholly enclosed in double quotes, inner quotes doubled (as pandas and spreadsheets write it)
_QUOTED_FIELD = re.compile(r'"((?:[^"]|"")*)"(?=\t|$)')


def split_tsv_line(line: str) -> list[str]:
    """The tab-separated fields of one line, read verbatim.

    A field wholly enclosed in double quotes with inner quotes doubled is unquoted (it may then
    hold tabs); any other quote is text: ``"Stop!" she said`` and ``"unbalanced`` stay as written.
    """
    fields, i, n = [], 0, len(line)
    while True:
        m = _QUOTED_FIELD.match(line, i) if line.startswith('"', i) else None
        if m:
            fields.append(m.group(1).replace('""', '"'))
            i = m.end()
        else:
            end = line.find("\t", i)
            end = n if end < 0 else end
            fields.append(line[i:end])
            i = end
        if i >= n:
            return fields
        i += 1  # the tab
        if i == n:
            fields.append("")
            return fields


def tsv_field(text: str) -> str:
    """``text`` as one field that :func:`split_tsv_line` reads back as written.

    Quoted (inner quotes doubled) when it holds a tab or starts with a double quote; a line
    break cannot be held by a field (the reader reads one row per line) and raises ValueError.
    """
    text = str(text)
    if len((text + ".").splitlines()) != 1:
        raise ValueError(f"{text[:40]!r}... holds a line break, which a stimulus table cannot hold")
    if "\t" in text or text.startswith('"'):
        return '"' + text.replace('"', '""') + '"'
    return text


_FINGERPRINT_VERSION = b"alignment-dataset-fingerprint-v1"
#: the simulated demo's ground truth beside its dataset.toml (what marks the ``demo`` kind)
GROUND_TRUTH_FILE = "ground_truth.json"


# --------------------------------------------------------------------------------------------
# CIFTI-2 dtseries
# --------------------------------------------------------------------------------------------
class CiftiDtseries(NamedTuple):
    """Content of a CIFTI-2 dense time series file."""

    data: np.ndarray  #: (T, V) float32
    tr: float  #: series step in seconds
    start: float  #: series start in seconds
    brain_models: object  #: nibabel BrainModelAxis of the V grayordinates


def write_cifti_dtseries(path, data, tr: float, brain_models=None, start: float = 0.0) -> str:
    """Write a CIFTI-2 dense time series (``.dtseries.nii``).

    Parameters
    ----------
    path : str or PathLike
        Output file; should end with ``.dtseries.nii``. Written atomically (temporary file
        in the same folder, then renamed).
    data : array-like, shape (T, V)
        Time series; stored as float32.
    tr : float
        Repetition time in seconds (the SeriesAxis step, unit SECOND).
    brain_models : nibabel BrainModelAxis, optional
        Grayordinates of the columns. Default: :func:`alignment.spaces.fslr32k_brain_models`
        (V must be 91282).
    start : float
        Time of the first sample in seconds.

    Returns
    -------
    str
        The path written.
    """
    import nibabel as nib
    from nibabel.cifti2 import SeriesAxis

    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"data must have shape (T, V), got {data.shape}")
    if brain_models is None:
        if data.shape[1] != SPACE_SIZES["fsLR32k"]:
            raise ValueError(
                f"data has {data.shape[1]} columns; the default fsLR32k grayordinates need "
                f"{SPACE_SIZES['fsLR32k']} (or pass brain_models)"
            )
        brain_models = fslr32k_brain_models()
    if len(brain_models) != data.shape[1]:
        raise ValueError(f"brain_models has {len(brain_models)} grayordinates, data {data.shape[1]}")
    if not (np.isfinite(tr) and tr > 0):
        raise ValueError(f"tr must be a positive number, got {tr!r}")
    series = SeriesAxis(start=float(start), step=float(tr), size=data.shape[0], unit="SECOND")
    img = nib.Cifti2Image(data, header=(series, brain_models))
    img.nifti_header.set_intent("ConnDenseSeries")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".dtseries.nii")
    os.close(fd)
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _open_cifti(path):
    """nibabel image, series (step s, start s) and brain-model index map of a dtseries.

    Raises DatasetError on anything unreadable. Works on the header's index maps rather than
    nibabel axes (building a 91282-element BrainModelAxis costs ~0.1 s each time).
    """
    import nibabel as nib

    try:
        img = nib.load(os.fspath(path))
    except Exception as exc:  # truncated / not NIfTI / bad XML
        raise DatasetError(
            f"{path}: cannot read CIFTI-2 file ({type(exc).__name__}: {exc})", path
        ) from exc
    if not isinstance(img, nib.Cifti2Image):
        raise DatasetError(
            f"{path}: not a CIFTI-2 file (nibabel read it as {type(img).__name__}, without a "
            "CIFTI-2 header extension)", path
        )
    try:
        maps = [img.header.get_index_map(i) for i in range(img.ndim)]
        kinds = [m.indices_map_to_data_type for m in maps]
    except Exception as exc:
        raise DatasetError(
            f"{path}: invalid CIFTI-2 header ({type(exc).__name__}: {exc})", path
        ) from exc
    if kinds != ["CIFTI_INDEX_TYPE_SERIES", "CIFTI_INDEX_TYPE_BRAIN_MODELS"]:
        got = " × ".join(k.removeprefix("CIFTI_INDEX_TYPE_").lower() for k in kinds)
        raise DatasetError(
            f"{path}: not a dense time series (expected series × brain models, got {got})", path
        )
    series = maps[0]
    scale = {"SECOND": 1.0, "MILLISECOND": 1e-3, "MICROSECOND": 1e-6}.get(
        str(series.series_unit).upper(), 1.0)
    step = float(series.series_step) * scale
    start = float(series.series_start or 0.0) * scale
    return img, (step, start), maps[1]


def _read_cifti_data(img, path) -> np.ndarray:
    try:
        data = img.get_fdata(dtype=np.float32)
    except Exception as exc:  # truncated data block
        raise DatasetError(
            f"{path}: cannot read the data of the CIFTI-2 file, it is probably truncated or "
            f"corrupt ({type(exc).__name__}: {exc})", path
        ) from exc
    return np.ascontiguousarray(data, dtype=np.float32)


class _CiftiLayout(NamedTuple):
    shape: tuple[int, int]  # (T, V)
    step: float  # series step, seconds
    index_map: object  # the brain-model index map
    offset: int  # of the data block


#: what nibabel read from a dtseries header (its bytes up to the data: NIfTI-2 header and CIFTI
#: XML) whose data block is plain little-endian float32; the runs of a dataset usually share
#: one header, and nibabel spends about a second parsing the XML of 91282 grayordinates
_CIFTI_LAYOUTS: dict[bytes, _CiftiLayout] = {}
_CIFTI_LAYOUTS_MAX = 16


def nifti2_header_bytes(path) -> bytes | None:
    """The bytes before a little-endian NIfTI-2 file's data block (header and extensions, e.g. a
    CIFTI-2 XML); None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(540)
            if len(head) < 540 or int(np.frombuffer(head[:4], "<i4")[0]) != 540:
                return None
            offset = int(np.frombuffer(head[168:176], "<i8")[0])
            if not 540 <= offset <= 1 << 28:
                return None
            return head + f.read(offset - 540)
    except OSError:
        return None


def holds_plain_float32(header: bytes, path, data: np.ndarray, probe: int = 4096) -> bool:
    """Whether the NIfTI-2 file ``path``, whose bytes before the data are ``header``
    (:func:`nifti2_header_bytes`), stores ``data`` (T, V) as plain little-endian float32, TRs
    fastest: the header says float32, unscaled; the file's size fits; and three stretches of
    ``probe`` values (start, middle, end) read directly equal ``data``."""
    datatype = int(np.frombuffer(header[12:14], "<i2")[0])
    slope, inter = np.frombuffer(header[176:192], "<f8")
    if datatype != 16 or slope not in (0.0, 1.0) or inter != 0.0:  # slope 0: unscaled
        return False
    offset = len(header)
    try:
        if os.path.getsize(path) != offset + 4 * data.size:
            return False
        n = data.shape[0]
        for start in {0, max(0, data.size // 2 - probe // 2), max(0, data.size - probe)}:
            raw = np.fromfile(path, dtype="<f4", count=min(probe, data.size - start), offset=offset + 4 * start)
            v, t = np.divmod(np.arange(start, start + raw.size), n)
            if not np.array_equal(raw, data[t, v], equal_nan=True):
                return False
    except OSError:
        return False
    return True


def _load_cifti_series(path) -> tuple[np.ndarray, float, object]:
    """(T, V) float32 data, series step (s) and brain-model index map of a dtseries.

    A header read before (same bytes) is not parsed again: the data block is read directly in
    the layout nibabel was seen to read it in. Raises DatasetError as :func:`_open_cifti` does.
    """
    header = nifti2_header_bytes(path)
    key = hashlib.sha256(header).digest() if header is not None else None
    layout = _CIFTI_LAYOUTS.get(key) if key is not None else None
    if layout is None:
        img, (step, _), index_map = _open_cifti(path)
        data = _read_cifti_data(img, path)
        if key is not None and img.ndim == 2 and holds_plain_float32(header, path, data):
            if len(_CIFTI_LAYOUTS) >= _CIFTI_LAYOUTS_MAX:
                _CIFTI_LAYOUTS.pop(next(iter(_CIFTI_LAYOUTS)))
            _CIFTI_LAYOUTS[key] = _CiftiLayout(data.shape, step, index_map, len(header))
        return data, step, index_map
    n, v = layout.shape
    body = np.fromfile(path, dtype="<f4", count=n * v, offset=layout.offset)
    if body.size != n * v:
        raise DatasetError(
            f"{path}: cannot read the data of the CIFTI-2 file, it is probably truncated or corrupt "
            f"({body.size} of {n * v} values)", path)
    # NIfTI stores the first axis (TRs) fastest
    return np.ascontiguousarray(body.reshape(v, n).T, dtype=np.float32), layout.step, layout.index_map


def _read_gifti_series(path: str) -> np.ndarray:
    """Time series of one hemisphere's ``.func.gii`` (one data array per TR), shape (T, n)."""
    import nibabel as nib

    if not os.path.isfile(path):
        raise DatasetError(f"{path}: missing (a GIfTI run needs both hemispheres' files)", path)
    try:
        arrays = [np.asarray(d.data, dtype=np.float32) for d in nib.load(path).darrays]
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read the GIfTI file ({type(exc).__name__}: {exc})", path) from exc
    if not arrays or any(a.ndim != 1 or a.shape != arrays[0].shape for a in arrays):
        raise DatasetError(f"{path}: expected one 1-D data array of vertex values per TR", path)
    return np.stack(arrays)


def read_cifti_dtseries(path) -> CiftiDtseries:
    """Read a CIFTI-2 dense time series.

    Parameters
    ----------
    path : str or PathLike
        A ``.dtseries.nii`` file.

    Returns
    -------
    CiftiDtseries
        ``data`` (T, V) float32, ``tr`` (series step in seconds), ``start`` and
        ``brain_models`` (the file's BrainModelAxis).

    Raises
    ------
    DatasetError
        The file is unreadable, truncated, or not a dtseries.
    """
    img, (step, start), _ = _open_cifti(path)
    data = _read_cifti_data(img, path)
    return CiftiDtseries(data, step, start, img.header.get_axis(1))


# --------------------------------------------------------------------------------------------
# dataset folder
# --------------------------------------------------------------------------------------------
def _strip_sub(subject: str) -> str:
    subject = str(subject)
    return subject[4:] if subject.startswith("sub-") else subject


def _folder_root(path, toml_file: str = "dataset.toml") -> str:
    """The dataset folder of ``path``: the folder itself, or the folder of its ``toml_file``."""
    path = os.fspath(path)
    if os.path.basename(path) == toml_file and os.path.isfile(path):
        path = os.path.dirname(path)
    return os.path.abspath(path)


def check_fslr_cortex(index_map, path) -> None:
    """The first 59412 grayordinates of a CIFTI brain-model axis must be the HCP cortex vertices,
    in HCP order; otherwise a :class:`DatasetError` naming ``path``."""
    grayl, grayr = cortex_vertices()
    ok = False
    try:
        bms = list(index_map.brain_models)[:2]
        expected = [("CIFTI_STRUCTURE_CORTEX_LEFT", 0, grayl),
                    ("CIFTI_STRUCTURE_CORTEX_RIGHT", len(grayl), grayr)]
        ok = len(bms) == 2 and all(
            b.brain_structure == name and int(b.index_offset) == offset
            and int(b.surface_number_of_vertices) == N_MESH_32K
            and np.array_equal(np.asarray(b.vertex_indices), vert)
            for b, (name, offset, vert) in zip(bms, expected)
        )
    except Exception:
        ok = False
    if not ok:
        raise DatasetError(
            f"{path}: the grayordinates are not the standard HCP fsLR32k layout (the first "
            "59412 must be the left and right cortex vertices of the 32k meshes, medial wall "
            "excluded, in HCP order)", path
        )


class FolderDataset:
    """A dataset in the custom folder format (see module docstring); a
    :class:`~alignment.data.protocol.TimeSeriesDataset`.

    Parameters
    ----------
    root : str or PathLike
        The dataset folder (or its ``dataset.toml``).

    Attributes
    ----------
    root : str
        Absolute path of the folder.
    name : str
    tr : float
        Repetition time in seconds.
    space : str
        ``"fsLR32k"`` or ``"fsaverage5"``.
    runs : list of str
        Run ids in ``dataset.toml`` order.
    n_trs : dict of str to int
        TRs per run.
    """

    kind = DEFAULT_KIND  # the format users bring their own data in
    sample_unit = TR
    #: the folder's description file and its schema (a format built on this one declares its own)
    TOML_FILE: ClassVar[str] = "dataset.toml"
    SCHEMA: ClassVar[type] = DatasetToml

    def __init__(self, root):
        self.root = _folder_root(root, self.TOML_FILE)
        if not os.path.isdir(self.root):
            raise DatasetError(f"{self.root}: dataset folder not found", self.root)
        self.toml_path = os.path.join(self.root, self.TOML_FILE)
        self._parse_toml()
        self._timelines: dict[str, tuple[tuple[int, int], Timeline]] = {}

    # ---------------------------------------------------------------- dataset.toml
    def _parse_toml(self):
        path = self.toml_path
        if not os.path.isfile(path):
            raise DatasetError(
                f"{path}: dataset.toml not found; a dataset folder needs a dataset.toml with a "
                "[dataset] table (name, tr, space) and one [[runs]] table (id, n_trs) per run",
                path,
            )
        try:
            with open(path, "rb") as f:
                cfg = tomllib.load(f)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: invalid TOML ({exc})", path) from exc
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read ({exc})", path) from exc


        try:
            self.config = check(self.SCHEMA, cfg, path)
        except ConfigError as exc:
            raise DatasetError(str(exc), path) from None
        ds = cfg["dataset"]
        self.name = ds["name"]
        self.tr = float(ds["tr"])
        self.space = ds["space"]
        self.runs = [str(run["id"]) for run in cfg["runs"]]
        self.n_trs = {rid: run["n_trs"] for rid, run in zip(self.runs, cfg["runs"])}

    def __repr__(self):
        return (f"{type(self).__name__}({self.name!r}, space={self.space}, tr={self.tr}, runs={self.runs}, "
                f"subjects={self.subjects})")

    # ---------------------------------------------------------------- basic properties
    @property
    def n_vertices(self) -> int:
        """V: 91282 grayordinates for fsLR32k, 20484 vertices for fsaverage5."""
        return SPACE_SIZES[self.space]

    @property
    def subjects(self) -> list[str]:
        """Subject ids (without the ``sub-`` prefix) of the ``sub-*`` folders, sorted."""
        out = []
        for entry in os.listdir(self.root):
            if entry.startswith("sub-") and len(entry) > 4 and \
                    os.path.isdir(os.path.join(self.root, entry)):
                out.append(entry[4:])
        return sorted(out)

    def _check_run(self, run) -> str:
        run = str(run)
        if run not in self.n_trs:
            raise DatasetError(f"unknown run {run!r}; {self.toml_path} lists {self.runs}",
                               self.toml_path)
        return run

    # ---------------------------------------------------------------- stimuli
    def stimulus_path(self, run) -> str:
        """Path of ``stimuli/<run>.tsv``."""
        return os.path.join(self.root, "stimuli", f"{self._check_run(run)}.tsv")

    def frame_path(self, rel) -> str:
        """Absolute path of a frame given relative to the dataset folder (absolute paths pass)."""
        return os.path.normpath(os.path.join(self.root, os.fspath(rel)))

    def load_frame(self, rel):
        """Load a frame as an RGB ``PIL.Image.Image`` (path relative to the folder, or absolute)."""
        from PIL import Image

        path = self.frame_path(rel)
        if not os.path.isfile(path):
            raise DatasetError(f"{path}: frame image not found", path)
        try:
            with Image.open(path) as im:
                im.load()
                frame = im.convert("RGB")
                frame.info["source"] = str(path)  # what region-feature files are keyed by
                return frame
        except Exception as exc:
            raise DatasetError(
                f"{path}: cannot read image ({type(exc).__name__}: {exc})", path
            ) from exc

    def _read_tsv(self, run: str) -> list[dict]:
        path = self.stimulus_path(run)
        if not os.path.isfile(path):
            raise DatasetError(f"{path}: stimulus table for run {run!r} not found", path)
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                text = f.read()
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}: not UTF-8 text ({exc})", path) from exc
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read ({exc})", path) from exc
        lines = text.splitlines()
        header = [h.strip() for h in split_tsv_line(lines[0])] if lines else []
        missing = [c for c in TSV_COLUMNS if c not in header]
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)}; the tab-separated header must "
                f"contain {', '.join(TSV_COLUMNS)} (found: {', '.join(header) or 'nothing'})",
                path,
            )
        rows = [dict(zip(header, split_tsv_line(line) + [""] * len(header))) for line in lines[1:]]
        return [r for r in rows if any(v.strip() for v in r.values())]

    def timeline(self, run, check_frames: bool = True) -> Timeline:
        """Stimulus timeline of one run.

        Parameters
        ----------
        run : str
            Run id.
        check_frames : bool
            Check that every referenced frame file exists.

        Returns
        -------
        Timeline
            ``frame`` holds absolute paths (or None), ``caption`` the text ("" if none),
            ``segment`` the labels; an empty segment on a row without frame and caption
            reads as ``"rest"``.
        """
        run = self._check_run(run)
        path = self.stimulus_path(run)
        try:
            st = os.stat(path)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        cached = self._timelines.get(run)
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1]
        rows = self._read_tsv(run)
        n = self.n_trs[run]
        if len(rows) != n:
            raise DatasetError(
                f"{path} has {len(rows)} rows, dataset.toml says n_trs = {n} for run {run!r}",
                path,
            )
        frames, captions, segments = [], [], []
        for k, row in enumerate(rows):
            line = k + 2  # header is line 1
            raw_tr = (row.get("tr") or "").strip()
            try:
                t = int(raw_tr)
            except ValueError:
                raise DatasetError(
                    f"{path} line {line}: tr must be an integer, got {raw_tr!r}", path
                ) from None
            if t != k:
                raise DatasetError(
                    f"{path} line {line}: the tr column must count 0, 1, 2, ... without gaps; "
                    f"found tr = {t} where {k} was expected", path
                )
            frame = (row.get("frame") or "").strip()
            caption = (row.get("caption") or "").strip()
            segment = (row.get("segment") or "").strip()
            if frame:
                if os.path.isabs(frame) or os.path.normpath(frame).split(os.sep)[0] == "..":
                    raise DatasetError(
                        f"{path} line {line}: frame path {frame!r} must be relative to the "
                        f"dataset folder and stay inside it", path
                    )
                full = self.frame_path(frame)
                real = os.path.realpath(full)
                if os.path.commonpath([real, os.path.realpath(self.root)]) != os.path.realpath(self.root):
                    raise DatasetError(
                        f"{path} line {line} (tr {t}): frame {frame!r} is a link to {real}, outside "
                        "the dataset folder; copy the frame into the folder", path
                    )
                if check_frames and not os.path.isfile(full):
                    raise DatasetError(
                        f"{path} line {line} (tr {t}): frame {frame!r} not found "
                        f"(looked for {full})", path
                    )
                frames.append(full)
            else:
                frames.append(None)
            if not segment:
                if frame or caption:
                    raise DatasetError(
                        f"{path} line {line} (tr {t}): empty segment label on a stimulus row; "
                        "give the clip name (or 'rest')", path
                    )
                segment = "rest"
            captions.append(caption)
            segments.append(segment)
        tl = Timeline(run=run, tr=self.tr, frame=frames, caption=captions, segment=segments)
        if check_frames and stamp is not None:
            self._timelines[run] = (stamp, tl)  # reused while the TSV is unchanged
        return tl

    def timelines(self) -> list[Timeline]:
        """Timelines of all runs, in run order."""
        return [self.timeline(r) for r in self.runs]

    # ---------------------------------------------------------------- BOLD
    def _subject_dir(self, subject) -> tuple[str, str]:
        sid = _strip_sub(subject)
        folder = os.path.join(self.root, f"sub-{sid}")
        if not os.path.isdir(folder):
            raise DatasetError(
                f"{folder}: subject folder not found (subjects: {self.subjects})", folder
            )
        return sid, folder

    def bold_path(self, subject, run) -> str:
        """Path of the BOLD file of a subject and run (``.dtseries.nii``, ``.npy``, or the left
        file of a ``.L.func.gii`` / ``.R.func.gii`` pair)."""
        run = self._check_run(run)
        sid, folder = self._subject_dir(subject)
        cands = [os.path.join(folder, f"{run}{ext}") for ext in BOLD_SUFFIXES]
        found = [c for c in cands if os.path.isfile(c)]
        right = os.path.join(folder, f"{run}{GIFTI_RIGHT}")
        if not found and os.path.isfile(right):
            raise DatasetError(f"{right}: its left hemisphere {cands[2]} is missing", folder)
        if not found:
            raise DatasetError(
                f"no BOLD file for run {run!r} of sub-{sid}: expected {cands[0]}, {cands[1]} or "
                f"{cands[2]} with {os.path.basename(right)}", folder,
            )
        if len(found) > 1:
            raise DatasetError(
                f"both {found[0]} and {found[1]} exist for run {run!r} of sub-{sid}; keep one",
                folder,
            )
        return found[0]

    @staticmethod
    def bold_files(path: str) -> list[str]:
        """The files of the BOLD at ``path`` (:meth:`bold_path`): itself, or a GIfTI pair."""
        if path.endswith(BOLD_SUFFIXES[2]):
            return [path, path[: -len(BOLD_SUFFIXES[2])] + GIFTI_RIGHT]
        return [path]

    def _bold_shape_check(self, sid, run, path, shape):
        T_expected, V_expected = self.n_trs[run], self.n_vertices
        if len(shape) != 2:
            raise DatasetError(
                f"{path}: BOLD must be a 2-D array (T × V), got shape {tuple(shape)}", path
            )
        if shape[0] != T_expected:
            hint = " (the array looks transposed: it must be T × V)" \
                if shape[1] == T_expected and shape[0] == V_expected else ""
            raise DatasetError(
                f"run {run} of sub-{sid} has {shape[0]} TRs, {self.TOML_FILE} says {T_expected} "
                f"({path}){hint}", path
            )
        if shape[1] != V_expected:
            raise DatasetError(
                f"{path}: {shape[1]} columns, but space {self.space} has {V_expected} "
                f"{'grayordinates' if self.space == 'fsLR32k' else 'vertices'}", path
            )

    def _load_bold_raw(self, sid: str, run: str, path: str) -> tuple[np.ndarray, float | None]:
        if path.endswith(".npy"):
            try:
                arr = np.load(path, allow_pickle=False, mmap_mode="r")
                shape = arr.shape
            except Exception as exc:
                raise DatasetError(
                    f"{path}: cannot read .npy file, it is probably truncated or not a numeric "
                    f"array ({type(exc).__name__}: {exc})", path
                ) from exc
            if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
                raise DatasetError(f"{path}: BOLD must be a real numeric array, got {arr.dtype}",
                                   path)
            self._bold_shape_check(sid, run, path, shape)
            try:
                data = np.array(arr, dtype=np.float32, order="C")
            except Exception as exc:
                raise DatasetError(
                    f"{path}: cannot read .npy data ({type(exc).__name__}: {exc})", path
                ) from exc
            return data, None
        if path.endswith(BOLD_SUFFIXES[2]):
            if self.space != "fsaverage5":
                raise DatasetError(f"{path}: GIfTI BOLD is read for space fsaverage5, this dataset is "
                                   f"{self.space} (use a .dtseries.nii)", path)
            data = np.concatenate([_read_gifti_series(p) for p in self.bold_files(path)], axis=1)
            self._bold_shape_check(sid, run, path, data.shape)
            return data, None
        data, step, index_map = _load_cifti_series(path)
        self._bold_shape_check(sid, run, path, data.shape)
        if self.space == "fsLR32k":
            check_fslr_cortex(index_map, path)
        return data, step

    def bold(self, subject, run, nan_policy: str = "raise") -> np.ndarray:
        """BOLD time series of one subject and run.

        Parameters
        ----------
        subject : str
            Subject id, with or without ``sub-``.
        run : str
            Run id.
        nan_policy : {"raise", "zero", "mask", "keep"}
            What to do with NaN / infinite values: raise a :class:`DatasetError` that
            reports how many there are, replace them by 0 ("zero"), set every voxel that
            has one to 0 for the whole run ("mask": a constant voxel, which no analysis can
            find significant), or return them as read ("keep": for copying the data).

        Returns
        -------
        Y : ndarray of float32, shape (T, V)
            T = ``n_trs[run]``, V = :attr:`n_vertices`.
        """
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {', '.join(NAN_POLICIES)}; got {nan_policy!r}")
        run = self._check_run(run)
        path = self.bold_path(subject, run)
        sid = _strip_sub(subject)
        data, _ = self._load_bold_raw(sid, run, path)
        bad = ~np.isfinite(data)
        n_bad = int(bad.sum())
        if n_bad and nan_policy != "keep":
            if nan_policy == "raise":
                n_col = int(bad.any(axis=0).sum())
                raise DatasetError(
                    f"{path}: {n_bad} NaN/infinite values in {n_col} of {data.shape[1]} "
                    f"columns (run {run} of sub-{sid}); fix the file, or analyse it as it is: the "
                    "analyses mask such voxels", path
                )
            if nan_policy == "mask":
                data[:, bad.any(axis=0)] = 0.0
            data[bad] = 0.0
        return data

    def bold_all(self, subject, runs: Iterable[str] | None = None,
                 nan_policy: str = "raise") -> tuple[np.ndarray, np.ndarray]:
        """BOLD of all runs of a subject, concatenated.

        Parameters
        ----------
        subject : str
        runs : iterable of str, optional
            Runs to load (default: all, in dataset order).
        nan_policy : {"raise", "zero", "mask", "keep"}
            See :meth:`bold`.

        Returns
        -------
        Y : ndarray of float32, shape (T_total, V)
        run_index : ndarray of int, shape (T_total,)
            Position of each TR's run in :attr:`runs` (0, 1, ...).
        """
        runs = self.runs if runs is None else [self._check_run(r) for r in runs]
        total = sum(self.n_trs[r] for r in runs)
        Y = np.empty((total, self.n_vertices), dtype=np.float32)
        index = np.empty(total, dtype=np.int64)
        s = 0
        for r in runs:
            n = self.n_trs[r]
            Y[s:s + n] = self.bold(subject, r, nan_policy=nan_policy)
            index[s:s + n] = self.runs.index(r)
            s += n
        return Y, index

    def run_index(self) -> np.ndarray:
        """Run position (0, 1, ...) of every TR of all runs concatenated, shape (T_total,)."""
        return np.repeat(np.arange(len(self.runs)), [self.n_trs[r] for r in self.runs])

    # ---------------------------------------------------------------- fingerprint
    def fingerprint(self, subjects=None, *, include_bold: bool = True,
                    content: bool = False) -> str:
        """Hex SHA-256 identifying the dataset's content, for cache keys.

        Hashes the bytes of ``dataset.toml`` and of every ``stimuli/<run>.tsv``; for every
        referenced frame and every BOLD file (of ``subjects``, default all) the path relative to
        the folder plus, by default, its size and modification time (``st_mtime_ns``): cheap,
        and any rewrite of a file changes it (copying the folder elsewhere without preserving
        mtimes does too, which costs a recomputation but is never wrong). With
        ``content=True`` the files' bytes are hashed instead (slow for large BOLD files;
        stable across copies). The folder's own location is not part of the key.

        Parameters
        ----------
        subjects : str or list of str, optional
            Restrict the BOLD part to these subjects (so adding a subject does not invalidate
            another subject's results).
        include_bold : bool
            False: fingerprint of the stimuli only (what model features depend on).
        content : bool
            Hash file contents instead of size + mtime.

        Returns
        -------
        str
            64 hex characters.
        """
        h = hashlib.sha256()
        h.update(_FINGERPRINT_VERSION)

        def add_bytes(tag: str, path: str):
            h.update(b"\0" + tag.encode() + b"\0")
            try:
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:
                h.update(b"<missing>")

        def add_file(path: str):
            rel = os.path.relpath(path, self.root)
            if content:
                add_bytes(rel, path)
                return
            try:
                st = os.stat(path)
                h.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"\0{rel}\0<missing>".encode())

        for path in self._stimulus_tables():
            add_bytes(os.path.relpath(path, self.root), path)
        for path in self._stimulus_media():
            add_file(path)
        if include_bold:
            if subjects is None:
                subs = self.subjects
            elif isinstance(subjects, str):
                subs = [_strip_sub(subjects)]
            else:
                subs = sorted(_strip_sub(s) for s in subjects)
            for sid in subs:
                for run in self.runs:
                    for ext in (*BOLD_SUFFIXES, GIFTI_RIGHT):
                        p = os.path.join(self.root, f"sub-{sid}", f"{run}{ext}")
                        if os.path.exists(p):
                            add_file(p)
        return h.hexdigest()

    def _stimulus_tables(self) -> list[str]:
        """The small files that describe the stimuli (fingerprinted by their bytes)."""
        return [self.toml_path] + [self.stimulus_path(run) for run in self.runs]

    def _stimulus_media(self) -> list[str]:
        """The images or movies the stimuli show (fingerprinted by size and mtime), sorted."""
        frames: set[str] = set()
        for run in self.runs:
            try:
                frames.update(f for f in self.timeline(run, check_frames=False).frame if f)
            except DatasetError:
                pass
        return sorted(frames)

    # ---------------------------------------------------------------- validation
    def validate(self, subjects=None, *, check_bold: bool = True,
                 check_images: bool = False) -> list[str]:
        """Check the whole dataset and list every problem found.

        Checks the stimulus tables (columns, row count, ``tr`` column, segment labels,
        referenced frames exist), optionally that frames open as images, that subjects exist,
        and for every subject and run the BOLD file: present, readable, T × V matching
        ``dataset.toml`` and the space, standard fsLR32k cortex layout, NaN / infinite values,
        grayordinates constant over the whole run, CIFTI series step vs ``tr``, files in the
        subject folder that match no run.

        Parameters
        ----------
        subjects : list of str, optional
            Subjects to check (default all).
        check_bold : bool
            Load and check BOLD files (reads every file once).
        check_images : bool
            Open every referenced frame with Pillow.

        Returns
        -------
        list of str
            Human-readable problems; empty when the dataset is fine.
        """
        problems: list[str] = []
        frames: set[str] = set()
        for run in self.runs:
            try:
                frames.update(f for f in self.timeline(run).frame if f)
            except DatasetError as exc:
                problems.append(str(exc))
        if check_images:
            for f in sorted(frames):
                try:
                    self.load_frame(f)
                except DatasetError as exc:
                    problems.append(str(exc))
        subs = self.subjects if subjects is None else [_strip_sub(s) for s in subjects]
        if not subs:
            problems.append(f"{self.root}: no subject folders (sub-<id>/) found")
        for sid in subs:
            folder = os.path.join(self.root, f"sub-{sid}")
            if not os.path.isdir(folder):
                problems.append(f"{folder}: subject folder not found")
                continue
            suffixes = (*BOLD_SUFFIXES, GIFTI_RIGHT)
            known = {f"{r}{ext}" for r in self.runs for ext in suffixes}
            for entry in sorted(os.listdir(folder)):
                if entry.endswith(suffixes) and entry not in known:
                    problems.append(
                        f"{os.path.join(folder, entry)}: matches no run of {self.TOML_FILE} "
                        f"({', '.join(self.runs)})"
                    )
            if not check_bold:
                for run in self.runs:
                    try:
                        self.bold_path(sid, run)
                    except DatasetError as exc:
                        problems.append(str(exc))
                continue
            for run in self.runs:
                try:
                    path = self.bold_path(sid, run)
                    data, step = self._load_bold_raw(sid, run, path)
                except DatasetError as exc:
                    problems.append(str(exc))
                    continue
                finite = np.isfinite(data)
                n_bad = int(data.size - finite.sum())
                if n_bad:
                    problems.append(
                        f"{path}: {n_bad} NaN/infinite values in "
                        f"{int((~finite).any(axis=0).sum())} columns (run {run} of sub-{sid}); "
                        "the analyses mask these voxels (they score 0)"
                    )
                    data = np.where(finite, data, 0.0)
                if data.shape[0] > 1:
                    n_const = int((np.ptp(data, axis=0) == 0).sum())
                    if n_const:
                        problems.append(
                            f"{path}: {n_const} of {data.shape[1]} columns are constant over "
                            f"the run (no signal; their encoding scores will be 0)"
                        )
                if step is not None and not np.isclose(step, self.tr, rtol=1e-3, atol=1e-6):
                    problems.append(
                        f"{path}: CIFTI series step is {step:g} s, {self.TOML_FILE} says tr = "
                        f"{self.tr:g} s"
                    )
        return problems


class DemoDataset(FolderDataset):
    """The simulated demo (:mod:`alignment.simulation`): a folder dataset with its ground truth
    (:data:`GROUND_TRUTH_FILE`, read by :func:`alignment.simulation.load_ground_truth`)."""

    kind = "demo"

    @property
    def ground_truth_path(self) -> str:
        return os.path.join(self.root, GROUND_TRUTH_FILE)


def _is_folder_dataset(path: str) -> bool:
    return os.path.isfile(os.path.join(_folder_root(path), "dataset.toml"))


def _is_demo(path: str) -> bool:
    return _is_folder_dataset(path) and os.path.isfile(os.path.join(_folder_root(path), GROUND_TRUTH_FILE))


# registered after the folder kind, the demo kind is tried first
register_dataset_kind(FolderDataset.kind, _is_folder_dataset, FolderDataset)
register_dataset_kind(DemoDataset.kind, _is_demo, DemoDataset)
