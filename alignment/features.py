"""AN time series of a dataset: extract once per unique stimulus, expand to TRs, cache.

One cache entry of stage ``ans`` holds, for one (dataset, model spec, AN kind, pooling,
condition, blank image) and the requested branches/layers, the raw pooled ANs at every TR of
every run (runs concatenated in dataset order): arrays ``<branch>.L<layer>`` of shape (T, N)
and ``runs`` (T,) with the run index. z-scoring and HRF convolution are cheap and applied by
the analyses (:func:`design_matrix`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from alignment.cache import Cache, Entry
from alignment.timing import fir_delay_trs, fir_delays, spm_hrf_convolve, zscore_runs

STAGE = "ans"
#: 2: frames resized and cropped as torchvision does (the long side truncated, not rounded)
STAGE_VERSION = 2


@dataclass(frozen=True)
class FeatureRequest:
    """What to extract. ``targets``: branch → layers (None = every branch, every layer)."""

    model: str
    kind: str = "attn"
    condition: str = "image+text"
    pooling: str = "mean"
    blank: str = "grey"
    targets: tuple | None = None  # ((branch, (layers...)), ...), canonical form of the dict

    @staticmethod
    def make(model: str, targets: dict[str, Sequence[int] | None] | None = None, **kw) -> "FeatureRequest":
        canon = None if targets is None else tuple(sorted((b, None if ls is None else tuple(sorted(ls))) for b, ls in targets.items()))
        return FeatureRequest(model=model, targets=canon, **kw)

    def label(self) -> str:
        return f"{self.model} {self.kind} [{self.condition}]"

    def params(self) -> dict:
        return {
            "model": self.model, "kind": self.kind, "condition": self.condition, "pooling": self.pooling,
            "blank": self.blank, "targets": self.targets,
        }


def array_name(branch: str, layer: int) -> str:
    return f"{branch}.L{layer:02d}"


def feature_params(dataset, request: FeatureRequest, stimuli: str | None = None) -> dict:
    """What keys an ``ans`` entry: the dataset's stimuli (``stimuli``: their fingerprint, when
    the caller has it) and the request."""
    return {"stimuli": stimuli or dataset.fingerprint(include_bold=False), **request.params()}


def extract_features(dataset, request: FeatureRequest, *, device: str = "auto", batch_size: int = 32,
                     progress: bool | Callable[[int, int], None] = False, adapter=None) -> tuple[dict, dict]:
    """Extract ``request`` on every unique stimulus of ``dataset`` and expand to TRs.

    Returns (arrays, meta): arrays ``<branch>.L<layer>`` (T, N) float32 and ``runs`` (T,);
    meta ``branches`` (branch → layers), ``n_stimuli``, ``run_ids``.
    """
    from alignment.extract import extract_ans
    from alignment.models import load_model

    model = adapter or load_model(request.model, device=device)
    targets = None if request.targets is None else {b: (None if ls is None else list(ls)) for b, ls in request.targets}
    keys, index, runs = [], [], []
    lookup: dict = {}
    for r, run in enumerate(dataset.runs):
        for key in dataset.timeline(run).stimulus_keys():
            if key not in lookup:
                lookup[key] = len(keys)
                keys.append(key)
            index.append(lookup[key])
            runs.append(r)
    frames = _LazyFrames(dataset, [frame for frame, _ in keys])
    captions = [caption for _, caption in keys]
    values = extract_ans(
        model, frames, captions, targets, kind=request.kind, pooling=request.pooling,
        condition=request.condition, blank=request.blank, batch_size=batch_size, progress=progress,
    )
    index = np.asarray(index)
    arrays = {array_name(b, layer): v[index] for (b, layer), v in values.items()}
    arrays["runs"] = np.asarray(runs, dtype=np.int32)
    layers = sorted({(b, layer) for b, layer in values})
    meta = {
        "description": f"{request.model} {request.kind} {request.condition} on {dataset.name}",
        "branches": {b: [layer for bb, layer in layers if bb == b] for b in dict.fromkeys(b for b, _ in layers)},
        "n_stimuli": len(keys),
        "run_ids": list(dataset.runs),
    }
    return arrays, meta


def an_timeseries(
    dataset,
    request: FeatureRequest,
    cache: Cache,
    *,
    device: str = "auto",
    batch_size: int = 32,
    progress: bool | Callable[[int, int], None] = False,
    adapter=None,
) -> Entry:
    """The cached ``ans`` entry for ``request`` on ``dataset``, extracting it if absent.

    Returns an Entry whose arrays are ``<branch>.L<layer>`` (T, N) float32 and ``runs`` (T,).
    """
    return cache.get_or_compute(
        STAGE, feature_params(dataset, request),
        lambda: extract_features(dataset, request, device=device, batch_size=batch_size, progress=progress,
                                 adapter=adapter),
        version=STAGE_VERSION)


class _LazyFrames(Sequence):
    """Frames loaded on access, so only one batch of images is in memory at a time."""

    def __init__(self, dataset, paths: list):
        self.dataset, self.paths = dataset, paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        path = self.paths[i]
        return None if path is None else self.dataset.load_frame(path)


def design_matrix(A: np.ndarray, runs: np.ndarray, tr: float, hrf: str = "spm") -> np.ndarray:
    """Regressors from raw per-TR ANs: z-score within run, then model the haemodynamic delay.

    Parameters
    ----------
    A : ndarray, shape (T, N)
        Raw ANs at every TR.
    runs : ndarray, shape (T,)
        Run label of every TR.
    tr : float
        Repetition time in seconds.
    hrf : {"spm", "fir", "none"}
        ``"spm"``: convolve with the SPM canonical HRF within run, then z-score again (N
        regressors). ``"fir"``: finite impulse response, the z-scored ANs delayed by every
        delay of :func:`alignment.timing.fir_delay_trs` (1..6 s, in whole TRs of ``tr``),
        within run (a run's first TRs get 0, nothing carries across runs), N·D regressors
        ordered by delay (columns ``k*N:(k+1)*N`` are the ANs delayed by the k-th delay; see
        :func:`design_an_index`). ``"none"``: only z-scored (N regressors).

    Returns
    -------
    X : ndarray, shape (T, N) or (T, N·D), float32
    """
    X = zscore_runs(A, runs)
    if hrf == "spm":
        X = zscore_runs(spm_hrf_convolve(X, tr, runs=runs), runs)
    elif hrf == "fir":
        X = fir_delays(X, runs, fir_delay_trs(tr))
    elif hrf != "none":
        raise ValueError(f"unknown hrf {hrf!r}; choose 'spm', 'fir' or 'none'")
    return X.astype(np.float32, copy=False)


def design_an_index(n_ans: int, n_columns: int) -> np.ndarray:
    """The AN of every column of a :func:`design_matrix` of ``n_ans`` ANs, shape (n_columns,).

    ``arange(N)`` for one column per AN; for an FIR design (N·D columns ordered by delay) the
    same AN indices repeated D times, so removing an AN removes all its delayed copies.
    """
    if n_ans < 1 or n_columns % n_ans:
        raise ValueError(f"a design of {n_ans} ANs has a multiple of {n_ans} columns, got {n_columns}")
    return np.tile(np.arange(n_ans), n_columns // n_ans)
