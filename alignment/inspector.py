"""Single-voxel and single-AN inspection (the Voxel and Neuron inspector pages), no Streamlit.

"Which model neurons drive this voxel, and when?" and "where in the brain does this neuron map,
and which frames/captions drive it?" (DESIGN §1, §5.2). Everything reads cached results through
a :class:`~alignment.pipeline.Study`; the only fits done here are cheap single-voxel refits.

Shapes: T = TRs of all runs concatenated, V = voxels / grayordinates, N = ANs of one layer,
K = atoms of one layer's dictionary.

- :func:`mapped_layers` -- the LayerKeys of one AN kind and condition whose neuron mapping (atoms
  + GLM) the cache holds for a subject (or those a list of model plans names);
- :func:`build_link_table` -- the AN ↔ BN :class:`~alignment.analyses.lookup.LinkTable` over those
  layers (build once per (subject, kind, condition), reuse for every lookup);
- :func:`voxel_timecourse` / :func:`roi_timecourse` -- measured BOLD and its leave-one-run-out
  ridge prediction (the voxel's cached alpha) of one voxel / the mean over a selection;
- :func:`voxel_top_ans` -- a voxel's most strongly linked ANs over all layers and branches;
- :func:`peak_stimuli` -- frames and captions shown an HRF delay before a voxel's largest
  responses;
- :func:`an_profile` -- one AN: time course, top frames, atom loadings, polarity, brain map,
  top voxels and network counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence

import numpy as np

from alignment.conventions import GROUP, subjects_of
from alignment.encoding import predict_ridge
from alignment.pipeline import LayerKey, ModelPlan, Study
from alignment.plan import plan_layers
from alignment.stages.encoding import repeat_exclusion
from alignment.timing import zscore_runs

__all__ = [
    "ANProfile",
    "add_roi_trace",
    "an_timecourse",
    "loro_ridge_predict",
    "network_counts",
    "HRF_DELAY_S",
    "Stimulus",
    "Timecourse",
    "VoxelLinks",
    "an_brain_map",
    "an_profile",
    "build_link_table",
    "mapped_layers",
    "network_of",
    "peak_stimuli",
    "peak_voxel",
    "roi_timecourse",
    "run_segments",
    "run_window",
    "timecourse_by_run_figure",
    "voxel_top_ans",
    "voxel_timecourse",
    "voxels_from_selection",
]

#: seconds between a stimulus and the BOLD response it drives (peak of the canonical HRF ≈ 5 s)
HRF_DELAY_S = 5.0


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Timecourse:
    """Measured and predicted time course of a voxel or an ROI.

    Attributes
    ----------
    measured : ndarray, shape (T,)
        BOLD, z-scored within run (ROI: mean over its voxels).
    predicted : ndarray, shape (T,)
        Leave-one-run-out ridge prediction: the TRs of run r predicted by the model fitted on
        the other runs, with the voxel's cached alpha (ROI: mean of the voxels' predictions).
    voxels : ndarray of int, shape (M,)
        The voxel(s).
    alphas : ndarray, shape (M,)
        Ridge alpha of each voxel (from the cached encoding map).
    r : float
        Pearson r of measured vs predicted over all TRs.
    map_r : float
        The encoding map's score (mean over held-out runs; ROI: mean over voxels).
    segments : list of (label, start, stop)
        Stimulus blocks in TRs of the concatenated time axis (``stop`` exclusive).
    runs : list of (run id, start, stop)
        Run boundaries on the same axis.
    tr : float
        Seconds per TR.
    key : LayerKey
    subject : str
    """

    measured: np.ndarray
    predicted: np.ndarray
    voxels: np.ndarray
    alphas: np.ndarray
    r: float
    map_r: float
    segments: list
    runs: list
    tr: float
    key: LayerKey
    subject: str


@dataclass(frozen=True)
class Stimulus:
    """What was on screen at one TR.

    Attributes
    ----------
    frame : str or None
        The dataset's reference of the image (a file for a folder dataset, a movie frame for
        HCP data; None: none shown): ``dataset.load_frame(frame)`` opens it.
    caption : str
    run : str
        Run id.
    tr : int
        TR of the stimulus within its run (0-based).
    response_tr : int
        TR within the run of the response it is listed for (``tr`` + HRF delay for voxels;
        ``tr`` for ANs).
    value : float
        The response (voxel: z-scored BOLD at ``response_tr``; AN: its z-scored activation).
    segment : str
    """

    frame: str | None
    caption: str
    run: str
    tr: int
    response_tr: int
    value: float
    segment: str = ""


@dataclass(frozen=True, eq=False)
class VoxelLinks:
    """A voxel's top ANs.

    Attributes
    ----------
    voxel : int
    network : str
        The voxel's network ("unlabelled" when the atlas has none).
    table : pandas.DataFrame
        Columns ``model``, ``branch``, ``layer``, ``an``, ``score``, ``sign``, ``kind``,
        ``condition``; by |score| descending (``LinkTable.top_ans``).
    n_layers : int
        Number of layers searched.
    """

    voxel: int
    network: str
    table: object
    n_layers: int


@dataclass(frozen=True, eq=False)
class ANProfile:
    """One artificial neuron.

    Attributes
    ----------
    key : LayerKey
    an : int
    timecourse : ndarray, shape (T,)
        Raw AN activation z-scored within run.
    top_stimuli : list of Stimulus
        Distinct stimuli (frame, caption) of its largest activations, largest first.
    codes : ndarray, shape (K,), or None
        Its loadings on the layer's atoms (row of the sparse codes S); None without atoms.
    dominant_atom : int
        Atom with the largest |code| (-1 when all codes are 0).
    polarity : int
        Sign of the dominant code: +1 positive AN, -1 negative AN, 0 no code.
    subject : str or None
    brain_map : ndarray, shape (V,), or None
        Link score with every voxel (mean over subjects for ``"group"``).
    top_voxels : pandas.DataFrame or None
        Columns ``voxel``, ``score``, ``sign``, ``network``.
    network_counts : pandas.DataFrame or None
        Voxels with a non-zero link per network: columns ``network``, ``positive``,
        ``negative``, ``total``; by ``total`` descending (:func:`network_counts`; pass
        ``top=`` to it for the strongest voxels only).
    segments, runs, tr
        As in :class:`Timecourse`.
    """

    key: LayerKey
    an: int
    timecourse: np.ndarray
    top_stimuli: list
    codes: np.ndarray
    dominant_atom: int
    polarity: int
    subject: str | None = None
    brain_map: np.ndarray | None = None
    top_voxels: object = None
    network_counts: object = None
    segments: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    tr: float = 1.0


# --------------------------------------------------------------------------------------------
# which layers, which subjects
# --------------------------------------------------------------------------------------------
def _one_subject(study: Study, subject: str, what: str) -> str:
    if str(subject) == GROUP:
        raise ValueError(f"{what} are per subject: pick one subject, not 'group'")
    return subjects_of(study, subject)[0]


def mapped_layers(study: Study, subject: str, kind: str = "attn", condition: str = "image+text",
                  plans: Sequence[ModelPlan] | None = None) -> list[LayerKey]:
    """LayerKeys of one AN kind and condition whose neuron mapping is available for a subject.

    Parameters
    ----------
    study : Study
    subject : str
        Subject id (``"group"``: the layers mapped for every subject).
    kind, condition : str
    plans : sequence of ModelPlan, optional
        Take the layers these plans name with the ``neuron_mapping`` analysis (e.g.
        ``alignment.demo.demo_plans()``); default: the catalog's GLM results of this dataset's
        subject computed with the study's options from the ANs the study would read now
        (nothing is computed; results of older code versions are skipped).

    Returns
    -------
    list of LayerKey
        Sorted by (model, branch, layer).
    """
    subs = subjects_of(study, subject)
    if plans is not None:
        keys = []
        for plan in plans:
            if "neuron_mapping" not in (plan.analyses or ("encoding", "neuron_mapping")):
                continue
            if kind not in plan.kinds or condition not in plan.conditions:
                continue
            keys += [k for k in plan_layers(study, plan) if k.kind == kind and k.condition == condition]
        return sorted(dict.fromkeys(keys), key=lambda k: (k.model, k.branch, k.layer))
    from alignment.catalog import Catalog

    subjects = {study.bold_params(sid)["bold"]: sid for sid in subs}
    found: dict = {}
    for record in Catalog(study.cache, ("atoms", "glm")).of_subjects(subjects, ("glm",), study.options):
        key = record.target
        if isinstance(key, LayerKey) and key.kind == kind and key.condition == condition:
            found.setdefault(key, set()).add(record.subject)
    # a result of older ANs (e.g. re-extracted) or code versions is not what the study reads now
    keys = [k for k, have in found.items() if have == set(subs) and all(study.has("glm", k, s) for s in subs)]
    return sorted(keys, key=lambda k: (k.model, k.branch, k.layer))


def build_link_table(study: Study, subject: str, kind: str = "attn", condition: str = "image+text",
                     keys: Sequence[LayerKey] | None = None, plans: Sequence[ModelPlan] | None = None):
    """The AN ↔ BN link table of a subject over every mapped layer of one kind and condition.

    Parameters
    ----------
    keys : sequence of LayerKey, optional
        Default :func:`mapped_layers` (``plans`` passed on).

    Returns
    -------
    LinkTable
        Build it once per (subject, kind, condition) and reuse it for every voxel / AN lookup.

    Raises
    ------
    ValueError
        No layer of that kind and condition has been mapped for the subject.
    """
    if keys is None:
        keys = mapped_layers(study, subject, kind, condition, plans=plans)
    keys = [k for k in keys if k.kind == kind and k.condition == condition]
    if not keys:
        raise ValueError(
            f"no neuron mapping (atoms + GLM) of {kind} ANs under condition {condition!r} for "
            f"sub-{subject} in the cache {study.cache.root}; compute it with `python -m alignment run` "
            "(analyses: neuron_mapping) or pick another AN kind / condition")
    return study.link_table(subject, keys)


# --------------------------------------------------------------------------------------------
# time axis
# --------------------------------------------------------------------------------------------
def run_segments(study: Study) -> tuple[list, list]:
    """Stimulus segments and run boundaries on the concatenated time axis.

    Returns
    -------
    segments : list of (label, start, stop)
        Every run's :meth:`~alignment.timing.Timeline.segments`, shifted by the run's first TR.
    runs : list of (run id, start, stop)
    """
    segments, runs, start = [], [], 0
    for tl in study.dataset.timelines():
        segments += [(label, start + a, start + b) for label, a, b in tl.segments()]
        runs.append((tl.run, start, start + tl.n_trs))
        start += tl.n_trs
    return segments, runs


def run_window(segments, runs, run: str | None = None) -> tuple[slice, list]:
    """The TRs and segments of one run (run-local TRs), or of all runs.

    Parameters
    ----------
    segments, runs
        As returned by :func:`run_segments`.
    run : str, optional
        A run id; None: all runs.

    Returns
    -------
    slice
        Rows of the concatenated time axis.
    list of (label, start, stop)
        The segments inside it, relative to its first TR.
    """
    if run is None:
        return slice(0, runs[-1][2] if runs else 0), list(segments)
    for r, a, b in runs:
        if r == run:
            return slice(a, b), [(lab, s0 - a, s1 - a) for lab, s0, s1 in segments if a <= s0 and s1 <= b]
    raise ValueError(f"unknown run {run!r}; runs: {', '.join(r for r, _, _ in runs)}")


def timecourse_by_run_figure(measured, predicted, segments, runs, tr: float, run: str | None = None, **kw):
    """:func:`alignment.figures.timecourse_figure` of one run, or of all runs with run names.

    Parameters
    ----------
    measured : ndarray, shape (T,)
    predicted : ndarray, shape (T,), or None
    segments, runs
        As returned by :func:`run_segments` (concatenated time axis).
    tr : float
    run : str, optional
        Show only this run (its segments labelled, time from the run's start); None: every
        run, segments shaded but unlabelled, run boundaries drawn and named.
    **kw
        Passed to ``timecourse_figure`` (title, labels, y_title, height).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from alignment.figures import timecourse_figure

    rows, segs = run_window(segments, runs, run)
    m = np.asarray(measured)[rows]
    p = None if predicted is None else np.asarray(predicted)[rows]
    if run is None:
        segs = [(lab if lab == "rest" else "", a, b) for lab, a, b in segs]
    fig = timecourse_figure(m, p, segs, tr, **kw)
    if run is None:
        for r, a, b in runs:
            if a > 0:
                fig.add_vline(x=(a - 0.5) * tr, line=dict(color="#555555", width=1.5))
            fig.add_annotation(x=(a + b - 1) / 2 * tr, y=1.0, xref="x", yref="paper", text=str(r),
                               showarrow=False, yanchor="bottom", font=dict(color="#333333"))
    return fig


def _stimulus(study: Study, run_pos: int, tr: int, response_tr: int, value: float) -> Stimulus:
    tl = study.dataset.timeline(study.dataset.runs[run_pos])
    return Stimulus(tl.frame[tr], tl.caption[tr], tl.run, int(tr), int(response_tr), float(value),
                    tl.segment[tr])


# --------------------------------------------------------------------------------------------
# voxel time courses
# --------------------------------------------------------------------------------------------
def _check_voxels(study: Study, voxels) -> np.ndarray:
    v = np.atleast_1d(np.asarray(voxels))
    if v.size == 0:
        raise ValueError("no voxel selected")
    if not np.issubdtype(v.dtype, np.integer):
        if not np.all(np.mod(v, 1) == 0):
            raise ValueError(f"voxel indices must be integers, got {v[:5].tolist()}")
        v = v.astype(np.int64)
    n = study.dataset.n_vertices
    if v.min() < 0 or v.max() >= n:
        raise ValueError(f"voxel indices must be in 0..{n - 1}; got {int(v.min())}..{int(v.max())}")
    return np.unique(v.astype(np.int64).ravel())


def loro_ridge_predict(X, Y, runs, alphas, exclude=None) -> np.ndarray:
    """Leave-one-run-out ridge predictions with a fixed alpha per voxel, in float64.

    For every run r, X and Y are centered with the means of the other runs, the ridge weights
    ``(Xcᵀ Xc + α I)⁻¹ Xcᵀ Yc`` are fitted there, and run r is predicted as
    ``(X_r - mean_X) W + mean_Y`` (himalaya's ``RidgeCV(fit_intercept=True)`` convention):
    :func:`alignment.encoding.predict_ridge`, the solver of the encoding maps.

    Parameters
    ----------
    X : ndarray, shape (T, N)
    Y : ndarray, shape (T, M)
    runs : ndarray, shape (T,)
        Run label of every TR (at least two runs).
    alphas : ndarray, shape (M,)
        Alpha of every column of Y.
    exclude : ndarray of bool, shape (L, T), optional
        TRs that never train the model of a held-out run (the repeated segment, as the
        encoding stage leaves it out: :func:`alignment.stages.encoding.repeat_exclusion`).

    Returns
    -------
    ndarray of float64, shape (T, M)
    """
    runs = np.asarray(runs)
    if len(np.unique(runs)) < 2:
        raise ValueError("leave-one-run-out prediction needs at least two runs")
    return predict_ridge(X, Y, runs, alphas, dtype="float64", exclude=exclude)


def _pearson(a, b) -> float:
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def roi_timecourse(study: Study, subject: str, key: LayerKey, voxels) -> Timecourse:
    """Mean measured and predicted time course over a set of voxels (a box / lasso selection).

    Parameters
    ----------
    study : Study
    subject : str
        One subject id (time courses are per subject).
    key : LayerKey
        The layer whose encoding model predicts.
    voxels : int or sequence of int, shape (M,)
        Grayordinate / vertex indices (duplicates are dropped).

    Returns
    -------
    Timecourse
        ``measured`` and ``predicted`` (T,): means over the voxels of the z-scored BOLD and of
        each voxel's leave-one-run-out ridge prediction (its own cached alpha, refitted for
        these voxels only).
    """
    sid = _one_subject(study, subject, "time courses")
    vox = _check_voxels(study, voxels)
    enc = study.get("encoding", key, sid)
    alphas = np.asarray(enc["alphas"], np.float64)[vox]
    Y = study.bold(sid)[:, vox]
    pred = loro_ridge_predict(study.design(key), Y, study.runs, alphas, repeat_exclusion(study))
    measured = np.asarray(Y, np.float64).mean(1)
    predicted = pred.mean(1)
    segments, runs = run_segments(study)
    return Timecourse(measured, predicted, vox, alphas, _pearson(measured, predicted),
                      float(np.mean(np.asarray(enc["scores"])[vox])), segments, runs,
                      float(study.dataset.tr), key, sid)


def voxel_timecourse(study: Study, subject: str, key: LayerKey, voxel: int) -> Timecourse:
    """Measured BOLD of one voxel and its cross-validated prediction from one layer.

    Parameters
    ----------
    study : Study
    subject : str
    key : LayerKey
    voxel : int
        Grayordinate / vertex index.

    Returns
    -------
    Timecourse
        ``measured`` (T,) z-scored BOLD; ``predicted`` (T,) the leave-one-run-out ridge
        prediction with the voxel's alpha from ``study.get("encoding", key, subject)["alphas"]``
        (refitted for this voxel only: one small eigen-decomposition per run);
        ``segments`` / ``runs`` on the concatenated time axis.
    """
    if np.ndim(voxel) != 0:
        raise ValueError("voxel_timecourse takes one voxel; use roi_timecourse for a selection")
    return roi_timecourse(study, subject, key, [int(voxel)])


# --------------------------------------------------------------------------------------------
# voxel → ANs, stimuli
# --------------------------------------------------------------------------------------------
def _atlas(atlas, study: Study):
    from alignment.atlases import load_atlas

    if hasattr(atlas, "labels") and hasattr(atlas, "voxel_names"):  # an Atlas (duck-typed: survives reloads)
        return atlas
    return load_atlas(atlas or "ca", space=study.dataset.space)


def network_of(atlas, voxel: int) -> str:
    """Network name of a voxel (``"unlabelled"`` when it has none)."""
    return str(atlas.voxel_names("unlabelled")[int(voxel)])


def voxel_top_ans(study: Study, subject: str, voxel: int, kind: str = "attn",
                  condition: str = "image+text", n: int = 10, *, table=None, atlas="ca",
                  plans: Sequence[ModelPlan] | None = None) -> VoxelLinks:
    """The ANs most strongly linked to a voxel, over every mapped layer and branch.

    Parameters
    ----------
    study : Study
    subject : str
    voxel : int
    kind, condition : str
        AN kind and stimulus condition (the layers searched: :func:`mapped_layers`).
    n : int
        Rows.
    table : LinkTable, optional
        A prebuilt :func:`build_link_table` of this subject, kind and condition (fast path).
    atlas : str or Atlas
        For the voxel's network.
    plans : sequence of ModelPlan, optional
        Passed to :func:`mapped_layers` when ``table`` is None.

    Returns
    -------
    VoxelLinks
        ``table`` with columns model, branch, layer, an, score, sign, kind, condition.
    """
    sid = _one_subject(study, subject, "a voxel's top ANs")
    vox = int(_check_voxels(study, [voxel])[0])
    if table is None:
        table = build_link_table(study, sid, kind, condition, plans=plans)
    df = table.top_ans(vox, n=int(n))
    df["kind"] = kind
    df["condition"] = condition
    return VoxelLinks(vox, network_of(_atlas(atlas, study), vox), df, len(table.keys))


def peak_stimuli(study: Study, subject: str, voxel: int, n: int = 6, delay_s: float = HRF_DELAY_S,
                 min_separation: int | None = None, sign: int = 1) -> list[Stimulus]:
    """Frames and captions shown an HRF delay before a voxel's largest responses.

    The voxel's z-scored BOLD is ranked (``sign=-1``: most negative first); each peak TR
    ``t`` is attributed to the stimulus of TR ``t - round(delay_s / tr)`` of the same run.
    Peaks closer than ``min_separation`` TRs to a stronger one (default: the delay, at least 2
    TRs) and peaks whose stimulus TR shows nothing (rest) or precedes the run are skipped.

    Parameters
    ----------
    study : Study
    subject : str
    voxel : int
    n : int
        Stimuli to return (fewer if the voxel has fewer distinct peaks).
    delay_s : float
        Seconds from stimulus to response (≈ 5 s, the canonical HRF's peak).
    min_separation : int, optional
    sign : {1, -1}

    Returns
    -------
    list of Stimulus
        Largest response first; ``tr`` is the stimulus TR, ``response_tr`` the peak TR (within
        the run), ``value`` the z-scored BOLD at the peak.
    """
    sid = _one_subject(study, subject, "peak stimuli")
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign!r}")
    vox = int(_check_voxels(study, [voxel])[0])
    y = np.asarray(study.bold(sid)[:, vox], np.float64)
    tr = float(study.dataset.tr)
    lag = max(0, int(round(float(delay_s) / tr)))
    sep = max(2, lag) if min_separation is None else int(min_separation)
    runs = study.runs
    starts = {int(r): int(np.flatnonzero(runs == r)[0]) for r in np.unique(runs)}
    order = np.argsort(-sign * y, kind="stable")
    taken: list[int] = []
    out: list[Stimulus] = []
    for t in order:
        if len(out) >= int(n):
            break
        t = int(t)
        if not np.isfinite(y[t]) or any(abs(t - u) < sep and runs[t] == runs[u] for u in taken):
            continue
        r = int(runs[t])
        local = t - starts[r]
        stim_tr = local - lag
        if stim_tr < 0:
            continue
        s = _stimulus(study, r, stim_tr, local, y[t])
        if s.frame is None and not s.caption:
            continue
        taken.append(t)
        out.append(s)
    return out


def peak_voxel(values, atlas, network: str) -> int:
    """Voxel of a network with the largest value (e.g. encoding r): a parcel's representative.

    Parameters
    ----------
    values : ndarray, shape (V,)
    atlas : Atlas
    network : str

    Returns
    -------
    int
    """
    v = np.asarray(values, np.float64)
    mask = atlas.mask(network) & np.isfinite(v)
    if not mask.any():
        raise ValueError(f"network {network!r} has no voxel with a value")
    idx = np.flatnonzero(mask)
    return int(idx[np.argmax(v[idx])])


# --------------------------------------------------------------------------------------------
# AN profile
# --------------------------------------------------------------------------------------------
def an_timecourse(study: Study, key: LayerKey, an: int) -> np.ndarray:
    """Raw activation of one AN at every TR, z-scored within run, shape (T,)."""
    A = study.raw_ans(key)
    a = int(an)
    if not 0 <= a < A.shape[1]:
        raise ValueError(f"AN {an} out of range: {key.label()} has {A.shape[1]} ANs")
    return zscore_runs(np.asarray(A[:, [a]], np.float64), study.runs)[:, 0]


def _top_an_stimuli(study: Study, x: np.ndarray, n: int) -> list[Stimulus]:
    """Distinct stimuli at the TRs of the largest values of x (T,)."""
    runs = study.runs
    starts = {int(r): int(np.flatnonzero(runs == r)[0]) for r in np.unique(runs)}
    seen: set = set()
    out = []
    for t in np.argsort(-x, kind="stable"):
        if len(out) >= n:
            break
        t = int(t)
        r = int(runs[t])
        s = _stimulus(study, r, t - starts[r], t - starts[r], x[t])
        if s.frame is None and not s.caption:
            continue
        if (s.frame, s.caption) in seen:
            continue
        seen.add((s.frame, s.caption))
        out.append(s)
    return out


def an_brain_map(study: Study, subject: str, key: LayerKey, an: int, tables: Mapping | None = None) -> np.ndarray:
    """Link score of one AN with every voxel, shape (V,); ``"group"``: mean over subjects.

    ``tables``: subject → prebuilt LinkTable (of ``key``'s kind and condition); missing ones
    are built from :func:`mapped_layers`.
    """
    maps = []
    for sid in subjects_of(study, subject):
        table = (tables or {}).get(sid)
        if table is None:
            table = build_link_table(study, sid, key.kind, key.condition)
        maps.append(np.asarray(table.an_map(key.model, key.branch, key.layer, int(an)), np.float64))
    return np.mean(maps, axis=0)


def network_counts(values, atlas, top: int | None = None):
    """Voxels with a non-zero value per network, split by sign.

    Parameters
    ----------
    values : ndarray, shape (V,)
    atlas : Atlas
    top : int, optional
        Count only the ``top`` voxels with the largest |value| (default: every non-zero one).

    Returns
    -------
    pandas.DataFrame
        Columns ``network``, ``positive``, ``negative``, ``total``; networks with no such voxel
        are left out; by ``total`` descending.
    """
    import pandas as pd

    v = np.asarray(values, np.float64)
    atlas.check(v.size, "brain map")
    names = atlas.voxel_names("unlabelled")
    nz = np.isfinite(v) & (v != 0)
    if top is not None and int(top) < int(nz.sum()):
        keep = np.argsort(-np.where(nz, np.abs(v), -1.0), kind="stable")[: max(int(top), 0)]
        nz = np.zeros_like(nz)
        nz[keep] = True
    rows = []
    for name in dict.fromkeys(names[nz]):
        m = nz & (names == name)
        pos, neg = int((v[m] > 0).sum()), int((v[m] < 0).sum())
        rows.append({"network": str(name), "positive": pos, "negative": neg, "total": pos + neg})
    df = pd.DataFrame(rows, columns=["network", "positive", "negative", "total"])
    return df.sort_values(["total", "network"], ascending=[False, True], kind="stable").reset_index(drop=True)


def an_profile(study: Study, key: LayerKey, an: int, subject: str | None = None, *,
               tables: Mapping | None = None, atlas="ca", n_stimuli: int = 6,
               n_voxels: int = 20, atoms: bool = True) -> ANProfile:
    """Everything the Neuron inspector shows about one AN.

    Parameters
    ----------
    study : Study
    key : LayerKey
    an : int
        AN index within the layer.
    subject : str, optional
        Subject id or ``"group"`` for the brain map, top voxels and network counts (None: no
        brain side; the AN's time course, stimuli and codes need no BOLD).
    tables : mapping subject → LinkTable, optional
        Prebuilt link tables (``key``'s kind and condition).
    atlas : str or Atlas
    n_stimuli, n_voxels : int
    atoms : bool
        Read the layer's dictionary (codes, polarity). False for a layer without neuron mapping
        (then ``subject`` must be None): ``codes`` is None, ``dominant_atom`` -1, ``polarity`` 0.

    Returns
    -------
    ANProfile
        ``timecourse`` (T,), ``top_stimuli``, ``codes`` (K,), ``polarity``, and with a subject
        ``brain_map`` (V,), ``top_voxels`` (the voxels with the largest |score|, with their
        network) and ``network_counts``.
    """
    import pandas as pd

    x = an_timecourse(study, key, an)
    if not atoms and subject is not None:
        raise ValueError("the brain map needs the neuron mapping: pass atoms=True with a subject")
    codes, dominant, polarity = None, -1, 0
    if atoms:
        codes = np.asarray(study.get("atoms", key)["codes"], np.float64)[int(an)]
        dominant = int(np.argmax(np.abs(codes))) if np.any(codes != 0) else -1
        polarity = int(np.sign(codes[dominant])) if dominant >= 0 else 0
    segments, runs = run_segments(study)
    brain = top = counts = None
    if subject is not None:
        at = _atlas(atlas, study)
        brain = an_brain_map(study, subject, key, an, tables)
        a = np.abs(brain)
        k = min(int(n_voxels), int((a > 0).sum()))
        idx = np.argsort(-a, kind="stable")[:k]
        names = at.voxel_names("unlabelled")
        top = pd.DataFrame({"voxel": idx.astype(np.int64), "score": brain[idx],
                            "sign": np.sign(brain[idx]).astype(np.int8),
                            "network": [str(names[i]) for i in idx]})
        counts = network_counts(brain, at)
    return ANProfile(key, int(an), x, _top_an_stimuli(study, x, int(n_stimuli)), codes, dominant,
                     polarity, subject, brain, top, counts, segments, runs, float(study.dataset.tr))


# --------------------------------------------------------------------------------------------
# flat-map selections
# --------------------------------------------------------------------------------------------
def voxels_from_selection(selection) -> np.ndarray:
    """Grayordinates of the points of a plotly selection event on :func:`flat_map_figure`.

    Parameters
    ----------
    selection : mapping or None
        Streamlit's ``event.selection`` (or plotly's event data): ``points`` is a list of dicts
        whose ``customdata`` is the grayordinate (a number, or a one-element list).

    Returns
    -------
    ndarray of int64, shape (M,)
        Sorted, unique; empty when nothing is selected.
    """
    points = (selection or {}).get("points") or []
    out = []
    for pt in points:
        cd = pt.get("customdata") if isinstance(pt, Mapping) else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is None:
            continue
        try:
            value = float(cd)
        except (TypeError, ValueError):
            continue
        if np.isfinite(value) and value >= 0 and value == int(value):
            out.append(int(value))
    return np.unique(np.asarray(out, np.int64))


def add_roi_trace(fig, voxels, space: str = "fsLR32k", hemispheres=("left", "right"),
                  color: str = "#111111"):
    """Outline a set of voxels on a :func:`~alignment.figures.flat_map_figure` (in place).

    Draws the convex hull of the selected flat-map points of each hemisphere as a dotted line
    (a ``Scattergl`` line named ``"ROI"``, ``meta = {"kind": "roi"}``, not hoverable, so clicks
    still land on the map's points). Hemispheres with fewer than 3 selected points get markers.

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
        A flat map (its ``layout.meta["coord_unit_mm"]`` gives the coordinate unit).
    voxels : sequence of int, shape (M,)
    space, hemispheres
        As given to ``flat_map_figure``.
    color : str

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go
    from scipy.spatial import ConvexHull, QhullError

    from alignment.figures import flat_map_points

    g, xy_mm, _ = flat_map_points(space, hemispheres)
    unit = float((fig.layout.meta or {}).get("coord_unit_mm", 0.1))
    m = np.isin(g, np.asarray(voxels, np.int64))
    xy = np.round(xy_mm[m] / unit)
    xs: list = []
    ys: list = []
    for side in (xy[:, 0] < 0, xy[:, 0] >= 0):  # left hemisphere at negative x
        pts = xy[side]
        if len(pts) == 0:
            continue
        try:
            ring = pts[ConvexHull(pts).vertices] if len(pts) >= 3 else pts
        except QhullError:  # collinear points
            ring = pts
        ring = np.vstack([ring, ring[:1]])
        xs += ring[:, 0].tolist() + [None]
        ys += ring[:, 1].tolist() + [None]
    # Scattergl: an SVG trace would sit under the WebGL canvas of the map's points
    fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines+markers" if m.sum() < 3 else "lines", name="ROI",
                             showlegend=False, hoverinfo="skip", meta={"kind": "roi"},
                             line=dict(color=color, width=2, dash="dot"), marker=dict(size=6, color=color)))
    return fig
