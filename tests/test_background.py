"""The demo built in a background process the app starts: one build per cache, whatever the
number of sessions; its status file; its failure reported and not restarted by itself."""

import json
import os
import subprocess
import sys

import pytest

from alignment import background
from alignment.background import BuildStatus, read_status, run_background_demo, start_demo_build, status_path


_POPEN = subprocess.Popen  # the real one (the fixture below replaces it)


class _FakePopen:
    """Records the commands started; the 'child' is this test process (alive)."""

    started: list = []

    def __init__(self, command, **kwargs):
        assert kwargs.get("start_new_session") is True  # survives the session that started it
        _FakePopen.started.append(command)
        self.pid = os.getpid()


def _dead_pid() -> int:
    child = _POPEN([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def fake_popen(monkeypatch):
    _FakePopen.started = []
    monkeypatch.setattr(background.subprocess, "Popen", _FakePopen)
    return _FakePopen.started


def test_a_build_is_started_once_while_it_runs(tmp_path, fake_popen):
    first = start_demo_build(tmp_path, small=True)
    assert first.state == "starting" and first.active
    assert fake_popen[0][-4:] == ["--background", "--cache", str(tmp_path), "--small"]
    again = start_demo_build(tmp_path, small=True)  # a second session: watches the same build
    assert len(fake_popen) == 1 and again == first
    # the full demo is another build
    start_demo_build(tmp_path, small=False)
    assert len(fake_popen) == 2
    # a builder that died without a word is replaced
    path = status_path(tmp_path, small=True)
    path.write_text(json.dumps({**json.loads(path.read_text()), "state": "running", "pid": _dead_pid()}))
    assert not read_status(tmp_path, small=True).active
    start_demo_build(tmp_path, small=True)
    assert len(fake_popen) == 3


def test_the_build_computes_where_the_environment_says(tmp_path, fake_popen, monkeypatch):
    """$ALIGNMENT_SCHEDULER sends the app's build to Dask (``--scheduler``); a bad value fails
    in the child before anything is built, like the CLI's; unset, it computes here."""
    import alignment.demo

    monkeypatch.setenv(background.SCHEDULER_ENV, "tcp://10.0.0.5:8786")
    start_demo_build(tmp_path, small=True)
    assert fake_popen[0][-2:] == ["--scheduler", "tcp://10.0.0.5:8786"]
    monkeypatch.delenv(background.SCHEDULER_ENV)
    start_demo_build(tmp_path, small=False)
    assert "--scheduler" not in fake_popen[1]
    used = []
    monkeypatch.setattr(alignment.demo, "run_demo", lambda cache, small, progress, scheduler: used.append(scheduler))
    run_background_demo(tmp_path / "a", small=True, scheduler="local:2")
    run_background_demo(tmp_path / "b", small=True)
    assert used[0] == "local:2" and used[1].prioritize is not None  # only the serial build takes a page's wish
    monkeypatch.setattr(background.subprocess, "Popen", _POPEN)
    bad = subprocess.run([sys.executable, "-m", "alignment", "demo", "--background", "--cache", str(tmp_path / "c"),
                          "--small", "--scheduler", "local:none"],
                         capture_output=True, text=True, cwd=_ROOT, timeout=300)
    assert bad.returncode != 0 and "scheduler" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_the_build_reports_each_unit_and_holds_the_cache_lock(tmp_path, monkeypatch):
    import alignment.demo

    seen = []

    def fake_run_demo(cache, small=False, progress=None, scheduler=None):
        assert scheduler.prioritize is not None  # the build puts first what a page asks for
        assert read_status(tmp_path, small).label == "building the simulated dataset"
        for done in range(3):
            progress(done, 3, f"unit {done}")
            seen.append(read_status(tmp_path, small))
        # another process finds the lock taken and leaves at once, without building
        other = subprocess.run([sys.executable, "-m", "alignment", "demo", "--background", "--cache",
                                str(tmp_path), "--small"], capture_output=True, text=True, cwd=_ROOT, timeout=300)
        assert other.returncode == 0, other.stderr
        assert "computing the demo: 2 of 3 units (unit 2)" in other.stdout
        progress(3, 3, "done")

    monkeypatch.setattr(alignment.demo, "run_demo", fake_run_demo)
    final = run_background_demo(tmp_path, small=True)
    assert [(s.state, s.done, s.total, s.label) for s in seen] == [
        ("running", d, 3, f"unit {d}") for d in range(3)]
    assert all(s.pid == os.getpid() and s.active for s in seen)
    assert (final.state, final.done, final.total) == ("done", 3, 3) and not final.active
    assert read_status(tmp_path, small=True) == final
    assert final.text() == "the demo is computed"


def test_a_failed_build_says_why_and_frees_the_lock(tmp_path, monkeypatch):
    import alignment.demo
    from filelock import FileLock

    def failing(cache, small=False, progress=None, scheduler=None):
        progress(1, 5, "encoding x")
        raise ValueError("the disk is full\nsecond line")

    monkeypatch.setattr(alignment.demo, "run_demo", failing)
    with pytest.raises(ValueError):
        run_background_demo(tmp_path)
    status = read_status(tmp_path)
    assert (status.state, status.done, status.total, status.error) == ("failed", 1, 5, "the disk is full")
    assert status.text() == "the background demo build stopped: the disk is full" and not status.active
    FileLock(str(tmp_path / ".demo-build.lock")).acquire(timeout=0)  # released


def test_status_file_unreadable_or_absent_is_no_build(tmp_path):
    assert read_status(tmp_path) is None
    status_path(tmp_path).write_text("{not json")
    assert read_status(tmp_path) is None
    assert BuildStatus("running", 0, 0, "building the simulated dataset").text() == \
        "preparing the demo: building the simulated dataset"


def test_background_takes_no_other_demo_option(tmp_path):
    out = subprocess.run([sys.executable, "-m", "alignment", "demo", "--background", "--seed", "3", "--cache",
                          str(tmp_path)], capture_output=True, text=True, cwd=_ROOT, timeout=300)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].endswith("only --small, --cache and --scheduler go with it")
    assert "Traceback" not in out.stderr


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ a page asks for its view first
def _units():
    from alignment.keys import Baselines, IntegrationKey, LayerKey, LesionKey
    from alignment.stages import Unit

    l1, l3 = (LayerKey("clip", "image", layer) for layer in (1, 3))
    return [Unit("encoding", l3, "01"), Unit("encoding", l3, "02"), Unit("atoms", l3),
            Unit("encoding", l1, "01"), Unit("encoding", l1, "02"), Unit("atoms", l1), Unit("glm", l1, "02"),
            Unit("lesion", LesionKey(l1), "02"), Unit("integration", IntegrationKey(l1, Baselines("vit", "bert")), "01")]


def _view(layer=1, subject="01"):
    return {"model": "clip", "branch": "image", "layer": str(layer), "kind": "attn", "condition": "image+text",
            "subject": subject}


def test_a_page_asks_for_its_view_first(tmp_path):
    units = _units()
    prioritize = background.asked_first(tmp_path)
    assert prioritize(units) == units  # nothing asked: the plan's order
    background.ask_first(tmp_path, False, _view(1, "02"))
    assert background.read_wish(tmp_path) == {**_view(1, "02"), "layer": 1}
    order = prioritize(units)
    assert order[:4] == [units[4], units[5], units[6], units[7]]  # layer 1: subject 02's units, its atoms
    assert order[4:] == [units[0], units[1], units[2], units[3], units[8]]  # the rest in their order
    background.ask_first(tmp_path, False, _view(1, "group"))  # the group: every subject's
    assert prioritize(units)[:6] == units[3:]
    background.ask_first(tmp_path, False, _view(5, "01"))  # nothing of that view left: the order stays
    assert prioritize(units) == units
    assert background.read_wish(tmp_path, small=True) is None  # the small demo's build asks its own
    (tmp_path / ".demo-build-wish.json").write_text("[1, 2]")
    assert background.read_wish(tmp_path) is None and prioritize(units) == units


def test_the_serial_run_follows_the_order_asked(tmp_path, monkeypatch):
    from alignment import plan as planning

    units = _units()
    ran = []
    monkeypatch.setattr(planning, "run_unit", lambda study, unit: ran.append(unit))
    plan = planning.Plan(tuple(units), {}, frozenset(units))
    background.ask_first(tmp_path, False, _view(3, "02"))
    assert planning.run_plan(None, plan, False, background.asked_first(tmp_path)) == ran
    assert ran[:2] == [units[1], units[2]] and sorted(map(str, ran)) == sorted(map(str, units))
    with pytest.raises(ValueError, match="reordered"):
        planning.run_plan(None, plan, False, lambda remaining: remaining[1:])
