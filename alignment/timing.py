"""Time alignment of stimulus features with fMRI acquisitions.

Everything here works on arrays whose first axis is time in TRs:

- :class:`Timeline` describes, for one run, what was on screen at every TR (frame, caption,
  segment label) and lets feature extraction deduplicate identical stimuli;
- :func:`align_to_trs` expands per-stimulus features back to one row per TR;
- :func:`zscore_runs` standardises within run;
- :func:`spm_hrf_convolve` convolves with the SPM canonical HRF exactly as nilearn's
  ``compute_regressor(..., hrf_model="spm")`` does, run by run;
- :func:`fir_delays` builds delayed copies (finite impulse response) within run, as the
  ``Delayer`` of the himalaya / voxelwise-tutorials examples; :func:`fir_delay_trs` gives the
  delays of the FIR design (:data:`FIR_WINDOW_S`) in TRs of a dataset's TR.

Shapes use T (TRs, all runs concatenated), N (features / artificial neurons) and S (unique
stimuli).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Hashable, Sequence

import numpy as np

__all__ = [
    "Timeline",
    "align_to_trs",
    "FIR_WINDOW_S",
    "fir_delay_trs",
    "fir_delays",
    "hrf_matrix",
    "repeated_segments",
    "run_slices",
    "spm_hrf",
    "spm_hrf_convolve",
    "zscore_runs",
]

REST = "rest"


# --------------------------------------------------------------------------------------------
# Timeline
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timeline:
    """What the participant saw at every TR of one run.

    Parameters
    ----------
    run : str
        Run identifier.
    tr : float
        Repetition time in seconds.
    frame : sequence of (str or None), length T
        Image shown during each TR (a path; datasets loaded by
        :func:`alignment.data.load_dataset` give absolute paths), ``None`` when no image is
        shown (rest).
    caption : sequence of str, length T
        Text describing each TR; ``""`` when there is none.
    segment : sequence of str, length T
        Block label of each TR: a clip name, ``"rest"``, or a repeat label for test-retest
        segments.

    Notes
    -----
    The three per-TR sequences are stored as tuples so the object is immutable and hashable.
    """

    run: str
    tr: float
    frame: tuple
    caption: tuple
    segment: tuple

    def __post_init__(self):
        frame = tuple(None if (f is None or f == "") else str(f) for f in self.frame)
        caption = tuple("" if c is None else str(c) for c in self.caption)
        segment = tuple(str(s) for s in self.segment)
        if not (len(frame) == len(caption) == len(segment)):
            raise ValueError(
                f"Timeline {self.run!r}: frame, caption and segment must have the same length "
                f"(got {len(frame)}, {len(caption)}, {len(segment)})"
            )
        tr = float(self.tr)
        if not np.isfinite(tr) or tr <= 0:
            raise ValueError(f"Timeline {self.run!r}: tr must be a positive number, got {self.tr!r}")
        object.__setattr__(self, "run", str(self.run))
        object.__setattr__(self, "tr", tr)
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "caption", caption)
        object.__setattr__(self, "segment", segment)

    @property
    def n_trs(self) -> int:
        """Number of TRs T of the run."""
        return len(self.segment)

    def __len__(self) -> int:
        return self.n_trs

    @property
    def onsets(self) -> np.ndarray:
        """Onset time of every TR in seconds from the run start, shape (T,)."""
        return np.arange(self.n_trs) * self.tr

    def is_stimulus(self) -> np.ndarray:
        """Boolean mask, shape (T,): True where a frame or a non-empty caption is shown."""
        return np.array(
            [f is not None or c != "" for f, c in zip(self.frame, self.caption)], dtype=bool
        )

    def stimulus_keys(self) -> list[tuple[str | None, str]]:
        """Per-TR stimulus key ``(frame, caption)``, length T.

        Two TRs with equal keys show the same stimulus, so a model needs to see it only once.
        A TR with no stimulus has the key ``(None, "")``.
        """
        return list(zip(self.frame, self.caption))

    def unique_stimuli(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        """Deduplicated stimuli and the TR → stimulus index.

        Returns
        -------
        keys : list of (frame, caption), length S
            Unique stimulus keys in order of first appearance; TRs without any stimulus
            (``frame is None`` and ``caption == ""``) are not included.
        index : ndarray of int, shape (T,)
            For every TR, the position of its key in ``keys``, or -1 for no stimulus. Feed
            features computed for ``keys`` (S, N) and this index to :func:`align_to_trs`.
        """
        keys: list[tuple[str, str]] = []
        where: dict[tuple, int] = {}
        index = np.full(self.n_trs, -1, dtype=np.int64)
        for t, key in enumerate(zip(self.frame, self.caption)):
            if key[0] is None and key[1] == "":
                continue
            if key not in where:
                where[key] = len(keys)
                keys.append(key)
            index[t] = where[key]
        return keys, index

    def segments(self) -> list[tuple[str, int, int]]:
        """Blocks of consecutive TRs with the same segment label.

        Returns
        -------
        list of (label, start, stop)
            ``stop`` is exclusive, so ``range(start, stop)`` are the block's TRs. A label that
            occurs twice (e.g. a repeated test clip) gives two blocks.
        """
        out: list[tuple[str, int, int]] = []
        start = 0
        for t in range(1, self.n_trs + 1):
            if t == self.n_trs or self.segment[t] != self.segment[start]:
                out.append((self.segment[start], start, t))
                start = t
        return out


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _as_2d(A, name="A") -> np.ndarray:
    A = np.asarray(A)
    if A.ndim == 1:
        A = A[:, None]
    if A.ndim != 2:
        raise ValueError(f"{name} must have shape (T, N), got {A.shape}")
    return A


def _check_runs(runs, n: int) -> np.ndarray:
    if runs is None:
        return np.zeros(n, dtype=np.int64)
    runs = np.asarray(runs)
    if runs.ndim != 1 or runs.shape[0] != n:
        raise ValueError(f"runs must have shape ({n},), got {runs.shape}")
    return runs


def run_slices(runs) -> list[tuple[Hashable, np.ndarray]]:
    """Indices of each run, in order of first appearance.

    Parameters
    ----------
    runs : array-like, shape (T,)
        Run label of every TR (any hashable labels; runs need not be contiguous).

    Returns
    -------
    list of (label, indices)
        ``indices`` is an int array of the TRs of that run, increasing.
    """
    runs = np.asarray(runs)
    _, first, inverse = np.unique(runs, return_index=True, return_inverse=True)
    out = []
    for u in np.argsort(first):
        out.append((runs[first[u]], np.flatnonzero(inverse == u)))
    return out


def _float_dtype(A) -> np.dtype:
    return A.dtype if np.issubdtype(A.dtype, np.floating) else np.dtype(np.float64)


# --------------------------------------------------------------------------------------------
# z-scoring and alignment
# --------------------------------------------------------------------------------------------
def zscore_runs(A, runs) -> np.ndarray:
    """Z-score every column within each run.

    Parameters
    ----------
    A : array-like, shape (T, N) or (T,)
        Time series.
    runs : array-like, shape (T,)
        Run label of every TR.

    Returns
    -------
    Z : ndarray, shape like ``A``
        Zero mean and unit standard deviation (ddof=0) within each run; a column that is
        constant within a run is 0 there (never NaN). Floating inputs keep their dtype,
        others become float64.
    """
    A_in = np.asarray(A)
    A2 = _as_2d(A_in)
    runs = _check_runs(runs, A2.shape[0])
    dtype = _float_dtype(A2)
    out = np.zeros(A2.shape, dtype=dtype)
    slices = run_slices(runs)
    # float64 work space reused by every run (fresh large arrays cost page faults)
    work = np.empty((2, max((len(idx) for _, idx in slices), default=0), A2.shape[1]))
    for _, idx in slices:
        contiguous = len(idx) and idx[-1] - idx[0] + 1 == len(idx)
        rows = slice(idx[0], idx[-1] + 1) if contiguous else idx
        block, squares = work[0, :len(idx)], work[1, :len(idx)]
        np.copyto(block, A2[rows])
        # max |x| (constant columns: below); taken before centring in place
        scale = np.maximum(block.max(axis=0), -block.min(axis=0)) if block.size else np.zeros(block.shape[1])
        block -= block.mean(axis=0)
        std = np.sqrt(np.square(block, out=squares).mean(axis=0))
        # constant (up to rounding) columns -> 0
        ok = std > 1e-12 * np.maximum(scale, 1e-300)
        if contiguous:  # divided straight into the output (0 stays where not ok)
            np.divide(block, std, out=out[rows], where=ok[None, :])
        else:
            out[rows] = np.divide(block, std, out=np.zeros_like(block), where=ok[None, :])
    return out.reshape(A_in.shape)


def align_to_trs(stimulus_values, index) -> np.ndarray:
    """Expand per-stimulus features to one row per TR.

    Parameters
    ----------
    stimulus_values : array-like, shape (S, N)
        Features of S unique stimuli (e.g. from :meth:`Timeline.unique_stimuli`).
    index : array-like of int, shape (T,)
        For every TR, the row of ``stimulus_values`` shown then, or -1 for "no stimulus".

    Returns
    -------
    A : ndarray, shape (T, N)
        ``A[t] = stimulus_values[index[t]]``; rows with ``index == -1`` (rest, no stimulus)
        are 0, i.e. the feature's baseline before z-scoring. Floating inputs keep their dtype.
    """
    V = _as_2d(stimulus_values, "stimulus_values")
    index = np.asarray(index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"index must be a 1-D integer array, got {index.dtype} {index.shape}")
    if index.size and (index.min() < -1 or index.max() >= V.shape[0]):
        raise ValueError(
            f"index values must be in [-1, {V.shape[0] - 1}], got range "
            f"[{index.min()}, {index.max()}]"
        )
    out = np.zeros((index.shape[0], V.shape[1]), dtype=_float_dtype(V))
    ok = index >= 0
    out[ok] = V[index[ok]]
    return out


# --------------------------------------------------------------------------------------------
# FIR delays
# --------------------------------------------------------------------------------------------
#: seconds after a stimulus that the FIR design covers (delays 1..6 TRs at TR = 1 s): the rise,
#: peak and fall of a typical haemodynamic response, whatever its exact shape
FIR_WINDOW_S = (1.0, 6.0)


def fir_delay_trs(tr: float, window: tuple[float, float] = FIR_WINDOW_S) -> tuple[int, ...]:
    """Delays, in TRs, of the FIR design at repetition time ``tr``.

    Every whole number of TRs ``d >= 1`` whose delay ``d * tr`` falls within ``window``
    (seconds, both ends included, up to rounding): 1..6 at TR = 1 s, 1..3 (2, 4, 6 s) at
    TR = 2 s, 2..8 (1.44..5.76 s) at TR = 0.72 s. When no multiple of the TR falls inside
    (a TR longer than the window), the single delay of 1 TR.

    Returns
    -------
    tuple of int, length D
    """
    tr = float(tr)
    if not np.isfinite(tr) or tr <= 0:
        raise ValueError(f"tr must be a positive number, got {tr!r}")
    lo, hi = (float(w) / tr for w in window)
    eps = 1e-9
    first = max(1, int(np.ceil(lo - eps)))
    last = int(np.floor(hi + eps))
    return tuple(range(first, last + 1)) or (1,)


def fir_delays(A, runs=None, delays: Sequence[int] = (1, 2, 3, 4, 5, 6)) -> np.ndarray:
    """Delayed copies of every column, within run (finite impulse response design).

    Parameters
    ----------
    A : array-like, shape (T, N)
        Time series.
    runs : array-like, shape (T,), optional
        Run label of every TR; delays never carry values across runs. ``None``: one run.
    delays : sequence of int, length D
        Delays in TRs. ``d > 0`` shifts forward (``out[t] = A[t - d]``), ``d < 0`` backward,
        ``0`` copies. Samples shifted in from outside the run are 0.

    Returns
    -------
    X : ndarray, shape (T, N * D)
        Column blocks ordered by delay, as himalaya's example ``Delayer``:
        ``X[:, k*N:(k+1)*N]`` is ``A`` delayed by ``delays[k]``.
    """
    A = _as_2d(A)
    T, N = A.shape
    runs = _check_runs(runs, T)
    delays = [int(d) for d in delays]
    out = np.zeros((T, N * len(delays)), dtype=_float_dtype(A))
    for _, idx in run_slices(runs):
        block = A[idx]
        n = len(idx)
        for k, d in enumerate(delays):
            cols = slice(k * N, (k + 1) * N)
            if abs(d) >= n:
                continue
            if d > 0:
                out[idx[d:], cols] = block[: n - d]
            elif d < 0:
                out[idx[: n + d], cols] = block[-d:]
            else:
                out[idx, cols] = block
    return out


# --------------------------------------------------------------------------------------------
# SPM HRF, as nilearn computes regressors
# --------------------------------------------------------------------------------------------
def spm_hrf(tr: float, oversampling: int = 16, time_length: float = 32.0) -> np.ndarray:
    """SPM canonical HRF on the oversampled grid, as ``nilearn.glm.first_level.spm_hrf``.

    Parameters
    ----------
    tr : float
        Repetition time in seconds.
    oversampling : int
        Samples per TR.
    time_length : float
        Kernel length in seconds.

    Returns
    -------
    h : ndarray, shape (round(time_length / (tr / oversampling)),)
        Difference of gammas (peak 6 s, undershoot 16 s, ratio 0.167), normalised to sum 1.
    """
    from scipy.stats import gamma

    dt = tr / oversampling
    time_stamps = np.linspace(0, time_length, np.rint(float(time_length) / dt).astype(int))
    peak = gamma.pdf(time_stamps, 6.0, loc=dt, scale=1.0)
    undershoot = gamma.pdf(time_stamps, 16.0, loc=dt, scale=1.0)
    h = peak - 0.167 * undershoot
    return h / h.sum()


@lru_cache(maxsize=64)
def _hrf_matrix_cached(n_trs: int, tr: float, oversampling: int, onset: float,
                       min_onset: float) -> np.ndarray:
    T = n_trs
    frame_times = np.arange(T) * tr
    if T < 2:
        # nilearn's grid is undefined for a single frame; the response at t=0 is 0 anyway
        K = np.zeros((T, T))
        K.setflags(write=False)
        return K
    # --- nilearn._sample_condition: oversampled grid -------------------------------------
    n_frames = frame_times.size
    mini, maxi = np.min(frame_times), np.max(frame_times)
    n_hr = (n_frames - 1) * 1.0 / (maxi - mini)
    n_hr *= (maxi * (1 + 1.0 / (n_frames - 1)) - mini - min_onset) * oversampling
    n_hr = n_hr + 1
    grid = np.linspace(
        frame_times.min() + min_onset,
        frame_times.max() * (1 + 1.0 / (n_frames - 1)),
        np.rint(n_hr).astype(int),
    )
    tmax = len(grid)
    # events: one boxcar of duration tr per TR
    onsets = frame_times + onset
    durations = np.full(T, tr)
    a = np.minimum(np.searchsorted(grid, onsets), tmax - 1)
    b = np.minimum(np.searchsorted(grid, onsets + durations), tmax - 1)
    bump = (b < tmax - 1) & (b == a)
    b = b + bump
    # --- nilearn._hrf_kernel ('spm') with the run's minimal TR -----------------------------
    t_r = float(np.min(np.diff(frame_times)))
    h = spm_hrf(t_r, oversampling)
    H = np.cumsum(h)  # H[m] = sum(h[:m+1]); 0 for m < 0, H[-1] for m >= len(h)

    def cum(m):
        m = np.asarray(m)
        out = H[np.clip(m, 0, len(H) - 1)]
        return np.where(m < 0, 0.0, out)

    # convolved boxcar [a, b) at grid index n:  sum_{k=a}^{b-1} h[n-k] = H[n-a] - H[n-b]
    # --- nilearn._resample_regressor: scipy interp1d (linear) at frame_times -------------
    idx = np.searchsorted(grid, frame_times).clip(1, tmax - 1)
    lo, hi = idx - 1, idx
    w = (frame_times - grid[lo]) / (grid[hi] - grid[lo])
    y_lo = cum(lo[:, None] - a[None, :]) - cum(lo[:, None] - b[None, :])
    y_hi = cum(hi[:, None] - a[None, :]) - cum(hi[:, None] - b[None, :])
    K = (y_hi - y_lo) * w[:, None] + y_lo
    K.setflags(write=False)
    return K


def hrf_matrix(n_trs: int, tr: float, oversampling: int = 16, onset: float = 0.0,
               min_onset: float = -24.0) -> np.ndarray:
    """Linear operator of :func:`spm_hrf_convolve` for one run.

    Parameters
    ----------
    n_trs : int
        Number of TRs T of the run.
    tr, oversampling, onset, min_onset
        As in :func:`spm_hrf_convolve`.

    Returns
    -------
    K : ndarray, shape (T, T), read-only
        ``K @ a`` is the nilearn SPM regressor of the TR-wise boxcar amplitudes ``a`` (T,);
        column ``i`` is the response to a unit boxcar during TR ``i``. Lower triangular up to
        the kernel's sub-TR spill-over. Cached per argument set.
    """
    return _hrf_matrix_cached(int(n_trs), float(tr), int(oversampling), float(onset),
                              float(min_onset))


def spm_hrf_convolve(A, tr: float, runs=None, oversampling: int = 16, onset: float = 0.0,
                     min_onset: float = -24.0) -> np.ndarray:
    """Convolve every column with the SPM canonical HRF, run by run, exactly as nilearn.

    Each TR's value is the amplitude of a boxcar lasting ``tr`` seconds from that TR's onset
    (plus ``onset``). The result equals, column by column, ::

        frame_times = np.arange(T_r) * tr
        nilearn.glm.first_level.compute_regressor(
            (frame_times + onset, np.full(T_r, tr), A[run_r, j]), "spm", frame_times,
            oversampling=oversampling, min_onset=min_onset)[0][:, 0]

    for every run r: the same oversampled grid (``_sample_condition``), SPM kernel
    (``_hrf_kernel``/``spm_hrf`` at the run's TR), truncated ``np.convolve`` and linear
    interpolation back to the frame times (``_resample_regressor``). It is computed as one
    (T_r, T_r) matrix per run (:func:`hrf_matrix`, cached) applied to all columns at once, so
    results agree with nilearn to rounding (~1e-12).

    Parameters
    ----------
    A : array-like, shape (T, N) or (T,)
        TR-wise amplitudes (e.g. z-scored AN activations), runs concatenated.
    tr : float
        Repetition time in seconds.
    runs : array-like, shape (T,), optional
        Run label of every TR; each run is convolved separately and starts at time 0, so
        nothing bleeds across runs. ``None``: one run.
    oversampling : int
        Temporal oversampling of the convolution (nilearn's ``oversampling``).
    onset : float
        Shift in seconds of the stimulus boxcars relative to the acquisition times
        (e.g. ``-tr / 2`` if frame times are mid-volume).
    min_onset : float
        nilearn's ``min_onset`` (start of the oversampled grid relative to the first frame).

    Returns
    -------
    X : ndarray, shape like ``A``
        HRF-convolved time series (float64; float32 input stays float32). A run with a single
        TR gives 0 (nilearn cannot build its grid there; the response at t = 0 is 0).
    """
    A_in = np.asarray(A)
    A2 = _as_2d(A_in)
    T = A2.shape[0]
    runs = _check_runs(runs, T)
    if not (np.isfinite(tr) and tr > 0):
        raise ValueError(f"tr must be a positive number, got {tr!r}")
    out = np.zeros(A2.shape, dtype=_float_dtype(A2))
    for _, idx in run_slices(runs):
        K = hrf_matrix(len(idx), tr, oversampling, onset, min_onset)
        out[idx] = K @ A2[idx].astype(np.float64)
    return out.reshape(A_in.shape)


#: Segment labels that never count as a repeat (no stimulus).
NON_STIMULUS_SEGMENTS = ("", REST)


def repeated_segments(segments, runs) -> list:
    """Segment labels shown in more than one run (test-retest clips), sorted.

    Parameters
    ----------
    segments : sequence of str, shape (T,)
        Segment label of every TR (``Timeline.segment`` of the runs, concatenated).
    runs : ndarray, shape (T,)
        Run label of every TR.
    """
    segments = np.asarray(segments, dtype=object)
    runs = np.asarray(runs)
    if segments.shape != runs.shape:
        raise ValueError(f"segments ({segments.shape}) and runs ({runs.shape}) must both have one "
                         "entry per time point.")
    seen: dict = {}
    for lab, run in zip(segments, runs):
        if lab not in NON_STIMULUS_SEGMENTS:
            seen.setdefault(lab, set()).add(run)
    return sorted(lab for lab, rs in seen.items() if len(rs) > 1)
