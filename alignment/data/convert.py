"""Write any time-series dataset the registry opens in the custom folder format.

``python -m alignment convert SOURCE OUT`` (:func:`convert`) opens SOURCE with
:func:`~alignment.data.load_dataset` (an HCP tree or ``hcp7t.toml``, a movie folder, another
folder, any registered kind) and writes what the models and analyses will read::

    OUT/dataset.toml                 name, tr, space and the runs with their TR counts
    OUT/stimuli/<run>.tsv            tr, frame, caption, segment of every TR (verbatim fields)
    OUT/frames/<run>/<tr>.png        the image of every TR that shows one (as the dataset gives it
                                     to a model: decoded, averaged when the source averages)
    OUT/sub-<id>/<run>.dtseries.nii  BOLD as read (fsLR32k; NaN kept), or <run>.npy (fsaverage5)

A frame shown at several TRs is written once (at its first TR) and referenced by each. PNG is
lossless, so the folder gives the models the same pixels as the source; ``frame_format="jpg"``
(quality 95) is several times smaller and not pixel-exact.

Everything is written into a hidden folder beside OUT and renamed to OUT at the end: a failure
or an interruption leaves OUT as it was. OUT must not exist or be empty unless ``force``; a
forced OUT may not contain, or lie inside, the source.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import numpy as np

from alignment.data.dataset import SAFE_ID, TSV_COLUMNS, FolderDataset, tsv_field, write_cifti_dtseries
from alignment.data.protocol import DatasetError, TimeSeriesDataset, load_dataset

__all__ = ["FRAME_FORMATS", "convert"]

#: image formats of the written frames: file extension → Pillow save options
FRAME_FORMATS = {"png": {"compress_level": 3}, "jpg": {"quality": 95}}
#: what the converter records beside the data (the folder format ignores it)
PROVENANCE_FILE = "conversion.json"


def convert(source, out, *, kind: str | None = None, subjects=None, frame_format: str = "png",
            force: bool = False, progress: bool = True) -> str:
    """Write the dataset at ``source`` into the folder format at ``out``.

    Parameters
    ----------
    source : str or PathLike
        Anything :func:`~alignment.data.load_dataset` opens as a time-series dataset.
    out : str or PathLike
        The folder to write (its parent must exist).
    kind : str, optional
        The source's registered kind (default: detected).
    subjects : list of str, optional
        Subjects to write (default all; ids with or without ``sub-``).
    frame_format : {"png", "jpg"}
        Image format of the frames.
    force : bool
        Replace a non-empty ``out``.
    progress : bool
        Show a progress bar (one step per frame and per BOLD file).

    Returns
    -------
    str
        The absolute path of the written folder.

    Raises
    ------
    DatasetError
        The source cannot be read or written in the format; ``out`` is refused.
    """
    if frame_format not in FRAME_FORMATS:
        raise DatasetError(f"unknown frame format {frame_format!r}; known: {', '.join(FRAME_FORMATS)}")
    out = os.path.abspath(os.fspath(out))
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise DatasetError(f"{parent}: folder not found (the parent of the output must exist)", parent)
    if os.path.exists(out) and not os.path.isdir(out):
        raise DatasetError(f"{out} exists and is not a folder", out)
    if _nonempty(out) and not force:
        raise DatasetError(f"{out} exists and is not empty; choose a new folder or pass --force to replace it", out)
    dataset = load_dataset(source, kind)
    try:
        if not isinstance(dataset, TimeSeriesDataset):
            raise DatasetError(f"{dataset.root}: a {dataset.kind} dataset has one sample per "
                               f"{dataset.sample_unit}, not TRs of runs; the folder format holds movie runs")
        if _nonempty(out):
            _refuse_overlap(out, dataset)
        subs = _subjects(dataset, subjects)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private; OUT is an ordinary folder
            _write(dataset, tmp, subs, frame_format, progress)
            FolderDataset(tmp).timelines()  # the written tables and frames read back
            _replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        if hasattr(dataset, "close"):
            dataset.close()
    return out


def _nonempty(path: str) -> bool:
    return os.path.isdir(path) and any(os.scandir(path))


def _refuse_overlap(out: str, dataset) -> None:
    """A forced ``out`` is deleted: it may not hold, or be part of, the source's folders."""
    real = os.path.realpath(out)
    for folder in {dataset.root, getattr(dataset, "stimuli", dataset.root)}:
        src = os.path.realpath(folder)
        if os.path.commonpath([real, src]) in (real, src):
            raise DatasetError(f"{out} overlaps the source folder {folder}; --force would delete source "
                               "files: choose another output folder", out)


def _subjects(dataset, subjects) -> list[str]:
    have = list(dataset.subjects)
    subs = have if subjects is None else [str(s).removeprefix("sub-") for s in subjects]
    unknown = [s for s in subs if s not in have]
    if unknown:
        raise DatasetError(f"unknown subject(s) {', '.join(unknown)}; {dataset.root} has {', '.join(have) or 'none'}")
    if not subs:
        raise DatasetError(f"{dataset.root}: no subjects to convert")
    for what, names in (("run id", dataset.runs), ("subject id", subs)):
        bad = [n for n in names if not re.match(SAFE_ID, str(n))]
        if bad:
            raise DatasetError(f"{what} {bad[0]!r} cannot name a file of the folder format (letters, digits, "
                               "'.', '_', '+', '-')")
    return subs


def _toml_str(text: str) -> str:
    # a JSON string without ASCII escapes is a TOML basic string
    return json.dumps(str(text), ensure_ascii=False)


def _write(dataset, folder: str, subjects: list[str], frame_format: str, progress: bool) -> None:
    from tqdm.auto import tqdm

    timelines = dataset.timelines()
    lines = ["[dataset]", f"name = {_toml_str(dataset.name)}", f"tr = {float(dataset.tr)!r}",
             f"space = {_toml_str(dataset.space)}"]
    for tl in timelines:
        lines += ["", "[[runs]]", f"id = {_toml_str(tl.run)}", f"n_trs = {len(tl)}"]
    with open(os.path.join(folder, "dataset.toml"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    refs = {ref: None for tl in timelines for ref in tl.frame if ref}
    n_bold = len(subjects) * len(dataset.runs)
    with tqdm(total=len(refs) + n_bold, unit="file", desc="converting", disable=not progress) as bar:
        os.makedirs(os.path.join(folder, "stimuli"))
        for tl in timelines:
            os.makedirs(os.path.join(folder, "frames", tl.run))
            rows = ["\t".join(TSV_COLUMNS)]
            for t, (ref, caption, segment) in enumerate(zip(tl.frame, tl.caption, tl.segment)):
                if ref and refs[ref] is None:
                    rel = f"frames/{tl.run}/{t:05d}.{frame_format}"
                    image = dataset.load_frame(ref)  # RGB, as the models receive it
                    image.save(os.path.join(folder, rel), **FRAME_FORMATS[frame_format])
                    refs[ref] = rel
                    bar.update(1)
                try:
                    fields = [str(t), refs[ref] if ref else "", tsv_field(caption), tsv_field(segment)]
                except ValueError as exc:
                    raise DatasetError(f"run {tl.run} TR {t}: {exc}") from None
                rows.append("\t".join(fields))
            with open(os.path.join(folder, "stimuli", f"{tl.run}.tsv"), "w", encoding="utf-8", newline="") as f:
                f.write("\n".join(rows) + "\n")
        for sid in subjects:
            os.makedirs(os.path.join(folder, f"sub-{sid}"))
            for run in dataset.runs:
                bar.set_description(f"sub-{sid} {run}")
                data = dataset.bold(sid, run, nan_policy="keep")  # (T_r, V) float32, as read
                path = os.path.join(folder, f"sub-{sid}", run)
                if dataset.space == "fsLR32k":
                    write_cifti_dtseries(path + ".dtseries.nii", data, tr=dataset.tr)
                else:
                    np.save(path + ".npy", np.asarray(data, np.float32), allow_pickle=False)
                bar.update(1)
    with open(os.path.join(folder, PROVENANCE_FILE), "w", encoding="utf-8") as f:
        json.dump({"source": dataset.root, "kind": dataset.kind, "subjects": subjects,
                   "frame_format": frame_format}, f, indent=2)


def _replace(tmp: str, out: str) -> None:
    """Rename the written folder to ``out``; an existing ``out`` goes only once the new one is there."""
    old = None
    if os.path.isdir(out):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
        os.rename(out, os.path.join(old, "out"))
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:  # put the old folder back
            os.rename(os.path.join(old, "out"), out)
            os.rmdir(old)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
