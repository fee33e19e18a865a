"""Movie frames decoded with PyAV (no system ffmpeg), for the dataset kinds that read movies.

A *frame reference* names one or more frames of a movie inside a stimulus folder::

    "<movie path relative to the folder>#f=<i>[,<i>...]"

Frame i of a movie is shown during [i, i+1)/fps seconds after the movie's start, so the frame on
screen at time s is floor(s·fps); several indices are averaged (:func:`frame_indices` gives the
frames of a TR). :class:`MovieFrames` opens the movies of a folder and decodes references,
keeping the last frames decoded, so frames asked for in time order decode in one pass.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict

import numpy as np

from alignment.data.protocol import DatasetError

__all__ = ["FALLBACK_FPS", "MOVIE_EXTENSIONS", "Movie", "MovieFrames", "frame_indices", "frame_ref"]

#: frame rate assumed when a file declares none (the HCP movies' rate)
FALLBACK_FPS = 24.0
#: movie containers the readers look for
MOVIE_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm")
_REF = re.compile(r"(.+)#f=(\d+(?:,\d+)*)")


def frame_indices(t: int, tr: float, fps: float, k: int = 1, start_s: float = 0.0) -> list[int]:
    """Movie frame indices of TR ``t``: the frames shown at the midpoints of ``k`` equal parts of
    the TR (k = 1: the TR's middle), with the movie starting ``start_s`` seconds into the run.

    Returns
    -------
    list of int
        Sorted, distinct; may hold negative indices or indices past the movie's end (the
        caller decides what a TR outside the movie shows).
    """
    times = t * tr + (np.arange(k) + 0.5) * tr / k - start_s
    return sorted({int(np.floor(s * fps + 1e-6)) for s in times})


def frame_ref(rel: str, indices) -> str:
    """The reference of frames ``indices`` of the movie at ``rel`` (relative to the folder)."""
    return f"{rel}#f={','.join(str(int(i)) for i in sorted(set(indices)))}"


class Movie:
    """An open movie file that decodes frames by index, forward without seeking when it can.

    Feature extraction asks for frames in time order, so one pass over the movie decodes each
    needed frame once; a jump backwards or far ahead seeks to the keyframe before it.
    """

    #: a jump ahead longer than this (seconds) seeks instead of decoding through
    SEEK_AHEAD_S = 4.0

    def __init__(self, path: str):
        import av

        self.path = path
        try:
            self.container = av.open(path)
            self.stream = self.container.streams.video[0]
        except Exception as exc:
            raise DatasetError(f"{path}: cannot open the movie ({type(exc).__name__}: {exc})",
                               path) from exc
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else FALLBACK_FPS
        self.time_base = float(self.stream.time_base)
        self.start = self.stream.start_time or 0
        self._frames = None  # decode iterator
        self._last: tuple[int, np.ndarray] | None = None
        self.lock = threading.Lock()

    @property
    def duration(self) -> float:
        """Seconds, from the container's metadata (no decoding)."""
        if self.stream.duration:
            return float(self.stream.duration * self.stream.time_base)
        if self.container.duration:
            return self.container.duration / 1e6
        return float(self.stream.frames) / self.fps

    def _index(self, frame) -> int:
        return int(round((frame.pts - self.start) * self.time_base * self.fps))

    def _seek(self, index: int):
        target = int(index / self.fps / self.time_base) + self.start
        self.container.seek(max(target, self.start), stream=self.stream, backward=True)
        self._frames = self.container.decode(self.stream)
        self._last = None

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB."""
        with self.lock:
            last = self._last[0] if self._last else None
            if last == index:
                return self._last[1]
            if self._frames is None or last is None or index < last or \
                    index - last > self.SEEK_AHEAD_S * self.fps:
                self._seek(index)
            for frame in self._frames:
                i = self._index(frame)
                if i < index:
                    continue
                self._last = (i, frame.to_ndarray(format="rgb24"))
                return self._last[1]  # i > index only when the file skips frames
            self._frames = None
            raise DatasetError(f"{self.path}: frame {index} ({index / self.fps:.2f} s) is beyond the "
                               f"end of the movie ({self.duration:.2f} s)", self.path)

    def close(self):
        self.container.close()


class MovieFrames:
    """The movies of a folder, decoded by frame reference (module docstring).

    Parameters
    ----------
    folder : str
        The folder references are relative to; a reference may not leave it.
    """

    #: decoded frames kept in memory (a run's unique frames are asked for in time order)
    FRAME_CACHE = 64

    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)
        self._movies: dict[str, Movie] = {}
        self._cache: OrderedDict[str, object] = OrderedDict()

    def movie(self, rel: str) -> Movie:
        """The open movie at ``rel`` (relative to the folder)."""
        # references name files inside the folder (links there are the user's choice)
        if os.path.isabs(rel) or os.path.normpath(rel).split(os.sep)[0] == "..":
            raise DatasetError(f"frame reference {rel!r} points outside the stimulus folder")
        path = os.path.normpath(os.path.join(self.folder, rel))
        if path not in self._movies:
            if not os.path.isfile(path):
                raise DatasetError(f"{path}: movie not found", path)
            self._movies[path] = Movie(path)
        return self._movies[path]

    def load(self, ref):
        """The RGB ``PIL.Image.Image`` of a frame reference (frames averaged when several)."""
        from PIL import Image

        ref = str(ref)
        if ref in self._cache:
            self._cache.move_to_end(ref)
            return self._cache[ref].copy()
        m = _REF.fullmatch(ref)
        if not m:
            raise DatasetError(f"frame reference {ref!r} is not '<movie>#f=<frame>[,<frame>...]'")
        movie = self.movie(m.group(1))
        frames = [movie.frame(int(i)) for i in m.group(2).split(",")]
        arr = frames[0] if len(frames) == 1 else \
            np.rint(np.mean(np.stack(frames).astype(np.float32), axis=0)).astype(np.uint8)
        image = Image.fromarray(arr, mode="RGB")
        self._cache[ref] = image
        if len(self._cache) > self.FRAME_CACHE:
            self._cache.popitem(last=False)
        return image.copy()

    def close(self):
        """Close the open movies."""
        for movie in self._movies.values():
            movie.close()
        self._movies.clear()
