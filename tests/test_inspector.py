"""Voxel and neuron inspection (alignment.inspector) against the small demo's ground truth.

The demo is computed once per session into a temporary cache (``run_demo(..., small=True)``).
Set ``ALIGNMENT_TEST_DEMO_CACHE`` to a cache folder to reuse (or fill) a persistent one: the
cache is content-addressed, so a folder built by ``python -m alignment --cache DIR demo
--small`` gives exactly the same results without recomputation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alignment import inspector as insp
from alignment.stages.encoding import repeat_exclusion
from alignment.cache import Cache
from alignment.simulation import load_ground_truth
from alignment.demo import demo_plans, run_demo
from alignment.encoding import fit_ridge
from alignment.pipeline import LayerKey
from alignment.timing import zscore_runs

SUBJECT = "01"


@pytest.fixture(scope="session")
def demo_study(demo_cache):
    return run_demo(Cache(demo_cache), small=True, progress=False)  # cached: the shared fixture built it


@pytest.fixture(scope="session")
def truth(demo_study):
    return load_ground_truth(demo_study.dataset.root)


@pytest.fixture(scope="session")
def attn_table(demo_study):
    return insp.build_link_table(demo_study, SUBJECT, "attn", "image+text")


def _patch_key(p) -> LayerKey:
    return LayerKey(p["model"], p["branch"], int(p["layer"]), p["kind"], p.get("condition", "image+text"))


def _strongest_voxel(truth, patch_id: int) -> int:
    maps = truth.subject_maps(SUBJECT)
    amp = np.where(np.asarray(maps["patch"]) == patch_id, np.asarray(maps["amplitude"], float), -np.inf)
    return int(np.argmax(amp))


def _attn_patches(truth):
    """The dual encoder's planted patches (attn ANs of one branch: a clean one-AN ground truth).

    The fusion model's "unified" patches are left out: its cross-modal ANs share atoms, so which
    of them a voxel links to first is a property of the mapping (checked by
    ``alignment.validation.validate_demo`` with tolerances), not of these lookups.
    """
    patches = [p for p in truth.patches if p["kind"] == "attn" and p["modality"] in ("image", "text")]
    assert patches
    return patches


# --------------------------------------------------------------------------------------------
# ridge refit: pure arrays (no demo needed)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_features", [5, 40])  # primal (N < T_train) and dual (N > T_train)
def test_loro_ridge_matches_fit_ridge(n_features):
    rng = np.random.default_rng(0)
    runs = np.repeat(np.arange(3), 12)
    X = rng.standard_normal((36, n_features))
    Y = X[:, :3] @ rng.standard_normal((3, 4)) + rng.standard_normal((36, 4))
    alphas = np.array([0.1, 3.0, 3.0, 100.0])
    ours = insp.loro_ridge_predict(X, Y, runs, alphas)
    for j, a in enumerate(alphas):
        ref = fit_ridge(X, Y[:, [j]], runs, alphas=np.array([a]), inner_cv=False, return_predictions=True)
        np.testing.assert_allclose(ours[:, j], ref.predictions[:, 0], rtol=1e-8, atol=1e-8)


def test_loro_ridge_needs_two_runs():
    with pytest.raises(ValueError, match="two runs"):
        insp.loro_ridge_predict(np.ones((5, 2)), np.ones((5, 1)), np.zeros(5), [1.0])


# --------------------------------------------------------------------------------------------
# on the demo
# --------------------------------------------------------------------------------------------
def test_mapped_layers_scan_matches_the_demo_plans(demo_study):
    plans = demo_plans()
    kinds = {k for plan in plans if "neuron_mapping" in plan.analyses for k in plan.kinds}
    assert "attn" in kinds
    for kind in kinds:
        scanned = insp.mapped_layers(demo_study, SUBJECT, kind, "image+text")
        planned = insp.mapped_layers(demo_study, SUBJECT, kind, "image+text", plans=plans)
        assert scanned and scanned == planned
    assert insp.mapped_layers(demo_study, SUBJECT, "attn", "text") == []  # encoded only, not mapped
    with pytest.raises(ValueError, match="no neuron mapping"):
        insp.build_link_table(demo_study, SUBJECT, "qk", "image+text")


def test_predicted_timecourse_is_the_held_out_ridge_prediction(demo_study, truth):
    p = _attn_patches(truth)[0]
    key = _patch_key(p)
    voxel = _strongest_voxel(truth, int(p["patch"]))
    tc = insp.voxel_timecourse(demo_study, SUBJECT, key, voxel)

    Y = np.asarray(demo_study.bold(SUBJECT)[:, [voxel]], np.float64)
    X = np.asarray(demo_study.design(key), np.float64)
    # independent: fit_ridge's own alpha search over the study's grid, every fold with that alpha
    ref = fit_ridge(X, Y, demo_study.runs, alphas=np.asarray(demo_study.options.alphas),
                    inner_cv=False, return_predictions=True, exclude=repeat_exclusion(demo_study))
    cached_alpha = float(demo_study.get("encoding", key, SUBJECT)["alphas"][voxel])
    assert ref.best_alphas[0] == pytest.approx(cached_alpha, rel=1e-5)
    np.testing.assert_allclose(tc.predicted, ref.predictions[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tc.measured, Y[:, 0], rtol=1e-6, atol=1e-6)
    assert tc.measured.shape == tc.predicted.shape == (len(demo_study.runs),)
    assert tc.r > 0.3  # a planted voxel is predicted
    # the segments tile every run, the run boundaries tile the time axis
    T = len(demo_study.runs)
    covered = np.zeros(T, int)
    for _, a, b in tc.segments:
        covered[a:b] += 1
    assert (covered == 1).all()
    assert [r for r, _, _ in tc.runs] == list(demo_study.dataset.runs)
    assert tc.runs[0][1] == 0 and tc.runs[-1][2] == T


def test_roi_timecourse_is_the_mean_of_its_voxels(demo_study, truth):
    p = _attn_patches(truth)[0]
    key = _patch_key(p)
    voxels = np.flatnonzero(np.asarray(truth.subject_maps(SUBJECT)["patch"]) == int(p["patch"]))[:4]
    roi = insp.roi_timecourse(demo_study, SUBJECT, key, list(voxels) + [int(voxels[0])])  # duplicate dropped
    singles = [insp.voxel_timecourse(demo_study, SUBJECT, key, int(v)) for v in voxels]
    assert list(roi.voxels) == sorted(int(v) for v in voxels)
    np.testing.assert_allclose(roi.predicted, np.mean([s.predicted for s in singles], 0), atol=1e-9)
    np.testing.assert_allclose(roi.measured, np.mean([s.measured for s in singles], 0), atol=1e-6)
    with pytest.raises(ValueError, match="per subject"):
        insp.roi_timecourse(demo_study, "group", key, voxels)
    with pytest.raises(ValueError, match="voxel indices"):
        insp.voxel_timecourse(demo_study, SUBJECT, key, 10 ** 6)


def test_top_an_of_a_planted_voxel_is_the_planted_an(demo_study, truth, attn_table):
    from alignment.atlases import load_atlas

    atlas = load_atlas("ca")
    for p in _attn_patches(truth):
        voxel = _strongest_voxel(truth, int(p["patch"]))
        links = insp.voxel_top_ans(demo_study, SUBJECT, voxel, "attn", "image+text", n=5, table=attn_table,
                                   atlas=atlas)
        top = links.table.iloc[0]
        found = (top["model"], top["branch"], int(top["layer"]), int(top["an"]))
        assert found == (p["model"], p["branch"], int(p["layer"]), int(p["an_index"])), p
        assert np.sign(top["score"]) == int(p["sign"])
        assert links.network == p["network"]
        assert set(links.table["kind"]) == {"attn"} and len(links.table) == 5
        assert links.n_layers == len(attn_table.keys)
    # without a prebuilt table: the same answer from the cache scan
    p = _attn_patches(truth)[0]
    again = insp.voxel_top_ans(demo_study, SUBJECT, _strongest_voxel(truth, int(p["patch"])), n=1)
    assert int(again.table.iloc[0]["an"]) == int(p["an_index"])


def test_peak_stimuli_are_real_frames_shown_a_hrf_delay_earlier(demo_study, truth):
    ds = demo_study.dataset
    p = _attn_patches(truth)[0]
    voxel = _strongest_voxel(truth, int(p["patch"]))
    peaks = insp.peak_stimuli(demo_study, SUBJECT, voxel, n=6)
    assert len(peaks) == 6
    lag = round(insp.HRF_DELAY_S / ds.tr)
    values = [s.value for s in peaks]
    assert values == sorted(values, reverse=True) and values[0] > 1.0
    y = np.asarray(demo_study.bold(SUBJECT)[:, voxel])
    starts = dict(zip(ds.runs, np.cumsum([0] + [ds.n_trs[r] for r in ds.runs])))
    for s in peaks:
        tl = ds.timeline(s.run)
        assert s.frame is not None and Path(s.frame).is_file()
        assert s.frame == tl.frame[s.tr] and s.caption == tl.caption[s.tr]
        assert s.response_tr - s.tr == lag
        assert y[starts[s.run] + s.response_tr] == pytest.approx(s.value, abs=1e-6)
        assert ds.load_frame(s.frame).size[0] > 0  # a readable image
    assert len({(s.run, s.response_tr) for s in peaks}) == 6


def test_an_profile_brain_map_peaks_in_its_planted_patch(demo_study, truth, attn_table):
    maps = truth.subject_maps(SUBJECT)
    patch_of = np.asarray(maps["patch"])
    for p in _attn_patches(truth):
        key = _patch_key(p)
        an = int(p["an_index"])
        prof = insp.an_profile(demo_study, key, an, SUBJECT, tables={SUBJECT: attn_table}, n_voxels=10)
        assert prof.brain_map.shape == (demo_study.dataset.n_vertices,)
        peak = int(np.argmax(np.abs(prof.brain_map)))
        assert patch_of[peak] == int(p["patch"]), p
        assert int(prof.top_voxels["voxel"].iloc[0]) == peak
        assert prof.top_voxels["network"].iloc[0] == p["network"]
        # most of the patch is linked, and every linked patch voxel carries the planted sign
        on_patch = prof.brain_map[patch_of == int(p["patch"])]
        linked = on_patch != 0
        assert linked.mean() > 0.6
        assert np.mean(np.sign(on_patch[linked]) == int(p["sign"])) > 0.95
        assert prof.network_counts["total"].sum() == int(np.count_nonzero(prof.brain_map))
        # the time course is the planted AN's, z-scored within run
        planted = zscore_runs(np.asarray(truth["an_timeseries"][int(p["patch"])], float)[:, None],
                              demo_study.runs)[:, 0]
        np.testing.assert_allclose(prof.timecourse, planted, atol=1e-3)
        assert prof.codes.shape == (np.asarray(demo_study.get("atoms", key)["codes"]).shape[1],)
        assert prof.polarity in (-1, 1) and prof.polarity == np.sign(prof.codes[prof.dominant_atom])
        # top stimuli: distinct, real, largest activation first
        stims = prof.top_stimuli
        assert len(stims) == 6 and len({(s.frame, s.caption) for s in stims}) == 6
        assert [s.value for s in stims] == sorted((s.value for s in stims), reverse=True)
        assert all(s.frame is None or Path(s.frame).is_file() for s in stims)


def test_an_profile_without_subject_and_group_map(demo_study, truth, attn_table):
    p = _attn_patches(truth)[0]
    key, an = _patch_key(p), int(p["an_index"])
    bare = insp.an_profile(demo_study, key, an)
    assert bare.brain_map is None and bare.top_voxels is None and bare.timecourse.ndim == 1
    no_atoms = insp.an_profile(demo_study, key, an, atoms=False)  # a layer without neuron mapping
    assert no_atoms.codes is None and no_atoms.polarity == 0
    np.testing.assert_array_equal(no_atoms.timecourse, bare.timecourse)
    with pytest.raises(ValueError, match="neuron mapping"):
        insp.an_profile(demo_study, key, an, SUBJECT, atoms=False)
    group = insp.an_brain_map(demo_study, "group", key, an, tables={SUBJECT: attn_table})
    per = [insp.an_brain_map(demo_study, s, key, an, tables={SUBJECT: attn_table})
           for s in demo_study.dataset.subjects]
    np.testing.assert_allclose(group, np.mean(per, 0), atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        insp.an_profile(demo_study, key, 10 ** 5)


def test_peak_voxel_of_a_network(demo_study, truth):
    from alignment.atlases import load_atlas

    atlas = load_atlas("ca")
    p = _attn_patches(truth)[0]
    scores = np.asarray(demo_study.get("encoding", _patch_key(p), SUBJECT)["scores"])
    v = insp.peak_voxel(scores, atlas, p["network"])
    assert atlas.voxel_names()[v] == p["network"]
    assert scores[v] == scores[atlas.mask(p["network"])].max()


def test_voxels_from_selection():
    sel = {"points": [{"customdata": 12}, {"customdata": [3]}, {"customdata": 12.0}, {"x": 1},
                      {"customdata": "bad"}, {"customdata": -1}], "box": [], "lasso": []}
    assert insp.voxels_from_selection(sel).tolist() == [3, 12]
    assert insp.voxels_from_selection(None).size == 0
    assert insp.voxels_from_selection({"points": []}).size == 0


def test_network_counts_and_run_window():
    from alignment.atlases import Atlas

    atlas = Atlas("toy", np.array([1, 1, 2, 2, 0]), {1: "A", 2: "B"}, space="custom")
    values = np.array([3.0, -1.0, 0.0, -5.0, 0.5])
    df = insp.network_counts(values, atlas)
    assert df.to_dict("list") == {"network": ["A", "B", "unlabelled"], "positive": [1, 0, 1],
                                  "negative": [1, 1, 0], "total": [2, 1, 1]}
    top2 = insp.network_counts(values, atlas, top=2)  # |-5| and |3|
    assert sorted(top2["network"]) == ["A", "B"] and top2["total"].sum() == 2

    segments = [("rest", 0, 2), ("clip", 2, 5), ("rest", 5, 6), ("clip", 6, 8)]
    runs = [("R1", 0, 5), ("R2", 5, 8)]
    rows, segs = insp.run_window(segments, runs, "R2")
    assert rows == slice(5, 8) and segs == [("rest", 0, 1), ("clip", 1, 3)]
    assert insp.run_window(segments, runs)[0] == slice(0, 8)
    with pytest.raises(ValueError, match="unknown run"):
        insp.run_window(segments, runs, "R3")
    fig = insp.timecourse_by_run_figure(np.arange(8.0), np.arange(8.0), segments, runs, 1.0)
    assert [a.text for a in fig.layout.annotations][-2:] == ["R1", "R2"]
    assert len(insp.timecourse_by_run_figure(np.arange(8.0), None, segments, runs, 1.0, "R1").data[0].y) == 5


def test_add_roi_trace_outlines_the_selected_points():
    from alignment.figures import flat_map_figure, flat_map_points

    fig = flat_map_figure(np.zeros(91282))
    n = len(fig.data)
    g, xy_mm, _ = flat_map_points()
    left = g[xy_mm[:, 0] < 0][:50]
    insp.add_roi_trace(fig, list(left) + [70000])  # 70000: subcortex, not on the flat map
    assert len(fig.data) == n + 1
    roi = fig.data[-1]
    assert roi.name == "ROI" and roi.hoverinfo == "skip"
    x = np.array([v for v in roi.x if v is not None], float)
    y = np.array([v for v in roi.y if v is not None], float)
    pts = np.round(xy_mm[np.isin(g, left)] * 10)
    # a closed ring through selected points that encloses all of them (within the bounding box)
    assert (x[0], y[0]) == (x[-1], y[-1])
    assert set(zip(x, y)) <= set(map(tuple, pts))
    assert x.min() == pts[:, 0].min() and x.max() == pts[:, 0].max()
    assert y.min() == pts[:, 1].min() and y.max() == pts[:, 1].max()
