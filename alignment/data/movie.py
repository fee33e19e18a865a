"""A BIDS-like movie folder: one movie and one caption table per run (dataset kind ``movie``).

The shape a lab's own movie fMRI usually has before anyone cuts frames: the movie files as
shown, timed captions, and BOLD per subject and run::

    MOVIES/movie.toml                  [dataset] name, tr, space; [[runs]] id, n_trs (as in
                                       dataset.toml); optional [movie] start_s
    MOVIES/stimuli/<run>.mp4           the movie of each run (.mp4, .mkv, .mov, .avi or .webm)
    MOVIES/stimuli/<run>_captions.tsv  columns onset, duration, caption (seconds from the run's
                                       first TR, as in BIDS events files; more columns ignored)
    MOVIES/stimuli/<run>_segments.tsv  optional: columns onset, duration, segment
    MOVIES/sub-<id>/<run>.dtseries.nii CIFTI-2 dtseries (fsLR32k), or <run>.npy (T × V float32)

Example ``movie.toml``::

    [dataset]
    name = "my-movies"
    tr = 1.5
    space = "fsaverage5"

    [movie]
    start_s = 0.0          # run time (s) at which every movie's first frame is shown

    [[runs]]
    id = "run-1"
    n_trs = 400

Per TR t (the interval [t·tr, (t+1)·tr) of the run):

- **segment**: the label of the segments-table row whose interval [onset, onset + duration)
  holds the TR's midpoint, ``rest`` when none does; without a segments table, the run id while
  the movie plays at the TR's midpoint and ``rest`` before and after it. Label the same material
  alike in several runs to mark a test-retest segment.
- **frame**: the movie frame on screen at the TR's midpoint (frame i is shown during
  [i, i+1)/fps after ``start_s``; :mod:`alignment.data.video`, decoded with PyAV); none when
  the midpoint falls before the movie's start or after its end, or in a ``rest`` segment.
- **caption**: the captions of every row whose interval overlaps the TR (a row of duration 0
  counts when its onset lies in the TR), in onset order, each distinct caption once, joined
  with a space; ``""`` in ``rest`` segments.

The tables are read verbatim, as the folder format's (:func:`alignment.data.dataset.split_tsv_line`).
BOLD is read exactly as the folder format reads it (:class:`~alignment.data.dataset.FolderDataset`).
``python -m alignment convert MOVIES OUT`` writes the folder format from it.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, ClassVar

from pydantic import AllowInfNan

from alignment.data.dataset import DatasetToml, FolderDataset, _folder_root, split_tsv_line
from alignment.data.protocol import DatasetError, register_dataset_kind
from alignment.data.video import MOVIE_EXTENSIONS, MovieFrames, frame_indices, frame_ref
from alignment.schema import Table
from alignment.timing import REST, Timeline

__all__ = ["MOVIE_TOML", "MovieFolderDataset"]

KIND = "movie"
#: the file that marks a movie folder
MOVIE_TOML = "movie.toml"
CAPTIONS_SUFFIX = "_captions.tsv"
SEGMENTS_SUFFIX = "_segments.tsv"
CAPTION_COLUMNS = ("onset", "duration", "caption")
SEGMENT_COLUMNS = ("onset", "duration", "segment")


class MovieTable(Table):
    start_s: Annotated[float, AllowInfNan(False)] = 0.0


class MovieToml(DatasetToml):
    """A movie folder's ``movie.toml``: ``[dataset]``, ``[[runs]]`` and an optional ``[movie]``."""

    movie: MovieTable = MovieTable()


def read_events(path: str, columns: tuple[str, str, str]) -> list[tuple[float, float, str]]:
    """Rows (onset, duration, text) of an events table with ``columns`` (onset, duration and a
    text column), sorted by onset; raises :class:`DatasetError` naming the line."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})", path) from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc})", path) from exc
    header = [h.strip() for h in split_tsv_line(lines[0])] if lines else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; the tab-separated header must "
                           f"contain {', '.join(columns)} (found: {', '.join(header) or 'nothing'})", path)
    rows = []
    for k, line in enumerate(lines[1:], start=2):
        row = dict(zip(header, split_tsv_line(line)))
        if not any(v.strip() for v in row.values()):
            continue
        times = []
        for col in columns[:2]:
            raw = (row.get(col) or "").strip()
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < 0:
                raise DatasetError(f"{path} line {k}: {col} must be a number of seconds >= 0, got {raw!r}", path)
            times.append(value)
        rows.append((times[0], times[1], (row.get(columns[2]) or "").strip()))
    return sorted(rows, key=lambda r: r[0])


class MovieFolderDataset(FolderDataset):
    """A movie folder (module docstring); a :class:`~alignment.data.protocol.TimeSeriesDataset`
    of kind ``movie``. BOLD, subjects and their checks are the folder format's.

    Parameters
    ----------
    root : str or PathLike
        The folder (or its ``movie.toml``).
    """

    kind = KIND
    TOML_FILE: ClassVar[str] = MOVIE_TOML
    SCHEMA: ClassVar[type] = MovieToml

    def __init__(self, root):
        super().__init__(root)
        self.start_s = float(self.config.movie.start_s)
        self._frames = MovieFrames(os.path.join(self.root, "stimuli"))
        self._movie_timelines: dict[str, Timeline] = {}

    # ---------------------------------------------------------------- stimulus files
    def stimulus_path(self, run) -> str:
        """Path of ``stimuli/<run>_captions.tsv``."""
        return os.path.join(self.root, "stimuli", f"{self._check_run(run)}{CAPTIONS_SUFFIX}")

    def segments_path(self, run) -> str | None:
        """Path of ``stimuli/<run>_segments.tsv``, or None when the run has none."""
        path = os.path.join(self.root, "stimuli", f"{self._check_run(run)}{SEGMENTS_SUFFIX}")
        return path if os.path.isfile(path) else None

    def movie_path(self, run) -> str:
        """The movie file of a run: ``stimuli/<run>`` with one of the movie extensions."""
        run = self._check_run(run)
        found = [p for p in (os.path.join(self.root, "stimuli", run + ext) for ext in MOVIE_EXTENSIONS)
                 if os.path.isfile(p)]
        if len(found) != 1:
            what = "no movie" if not found else f"{len(found)} movies ({', '.join(map(os.path.basename, found))})"
            raise DatasetError(f"{os.path.join(self.root, 'stimuli')}: {what} for run {run!r}; expected one of "
                               f"{', '.join(run + ext for ext in MOVIE_EXTENSIONS)}", self.root)
        return found[0]

    def _stimulus_tables(self) -> list[str]:
        return [self.toml_path] + [p for run in self.runs
                                   for p in (self.stimulus_path(run), self.segments_path(run)) if p]

    def _stimulus_media(self) -> list[str]:
        out = []
        for run in self.runs:
            try:
                out.append(self.movie_path(run))
            except DatasetError:
                pass
        return sorted(out)

    # ---------------------------------------------------------------- timelines
    def timeline(self, run, check_frames: bool = True) -> Timeline:
        """Frame reference, caption and segment of every TR of a run (module docstring).

        ``check_frames`` is accepted for the folder format's signature; the movie is always
        opened (its frame rate and length decide the frames).
        """
        run = self._check_run(run)
        if run in self._movie_timelines:
            return self._movie_timelines[run]
        captions_path = self.stimulus_path(run)
        if not os.path.isfile(captions_path):
            raise DatasetError(f"{captions_path}: caption table for run {run!r} not found", captions_path)
        captions = read_events(captions_path, CAPTION_COLUMNS)
        seg_path = self.segments_path(run)
        segments = read_events(seg_path, SEGMENT_COLUMNS) if seg_path else None
        if segments:
            empty = next((s for s in segments if not s[2]), None)
            if empty:
                raise DatasetError(f"{seg_path}: the segment starting at {empty[0]:g} s has an empty label", seg_path)
        rel = os.path.basename(self.movie_path(run))
        movie = self._frames.movie(rel)
        n_frames = int(movie.duration * movie.fps + 1e-6)
        n, tr = self.n_trs[run], self.tr
        frames, texts, labels = [], [], []
        for t in range(n):
            mid = (t + 0.5) * tr
            (index,) = frame_indices(t, tr, movie.fps, 1, self.start_s)
            playing = 0 <= index < n_frames
            if segments is None:
                segment = run if playing else REST
            else:
                segment = next((s[2] for s in segments if s[0] <= mid < s[0] + s[1]), REST)
            if segment == REST:
                frames.append(None)
                texts.append("")
                labels.append(REST)
                continue
            frames.append(frame_ref(rel, [index]) if playing else None)
            start, stop = t * tr, (t + 1) * tr
            hits = [c for onset, dur, c in captions if c and (
                onset < stop and onset + dur > start if dur > 0 else start <= onset < stop)]
            texts.append(" ".join(dict.fromkeys(hits)))
            labels.append(segment)
        tl = Timeline(run=run, tr=tr, frame=frames, caption=texts, segment=labels)
        self._movie_timelines[run] = tl
        return tl

    # ---------------------------------------------------------------- frames
    def load_frame(self, ref):
        """The RGB ``PIL.Image.Image`` of a frame reference ``"<run movie>#f=<i>"``."""
        return self._frames.load(ref)

    def close(self):
        """Close the open movies."""
        self._frames.close()

    def validate(self, subjects=None, *, check_bold: bool = True, check_images: bool = False) -> list[str]:
        """The folder format's checks (tables, BOLD); ``check_images`` decodes the first and the
        last frame of every run (a sample: decoding every frame takes minutes)."""
        problems = super().validate(subjects, check_bold=check_bold, check_images=False)
        if check_images:
            for run in self.runs:
                try:
                    refs = [f for f in self.timeline(run).frame if f]
                    for ref in refs[:1] + refs[-1:]:
                        self.load_frame(ref)
                except DatasetError as exc:
                    if str(exc) not in problems:
                        problems.append(str(exc))
        return problems


def _is_movie_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(_folder_root(path, MOVIE_TOML), MOVIE_TOML))


register_dataset_kind(KIND, _is_movie_folder, MovieFolderDataset)
