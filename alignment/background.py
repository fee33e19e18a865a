"""The demo computed in a background process that any number of app sessions watch.

The app never blocks on the whole demo. :func:`start_demo_build` launches ``python -m alignment
demo --background`` in a process session of its own, so closing the browser tab, or ending the
Streamlit session (or server) that started it, does not stop it. That process holds a lock on
the cache for its lifetime (:func:`run_background_demo`): a second start, from another browser
session or another app, finds the build running and only watches it. The build computes the
demo plan in order, the Overview's default maps first (:func:`alignment.demo.run_demo`), and
after every unit rewrites a small status file that the pages read (:func:`read_status`): what is
cached shows at once, what is still coming shows as progress. A page whose result is still
coming asks for it (:func:`ask_first`): before each unit the build runs the units of the view
last asked for first (:func:`asked_first`).

It computes here, serially, unless :data:`SCHEDULER_ENV` names a Dask scheduler (as
``--scheduler`` does: ``local:N`` or an address), e.g. a lab's cluster; pages then cannot
reorder it.

``python -m alignment demo`` (without ``--background``) stays the terminal way to build it all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from alignment.cache import Cache
from alignment.executor import SYNC, SerialExecutor

__all__ = ["BuildStatus", "SCHEDULER_ENV", "VIEW_FIELDS", "ask_first", "asked_first", "read_status", "read_wish",
           "run_background_demo", "start_demo_build", "status_path"]

#: environment variable naming where the app's background build computes (a ``--scheduler`` value)
SCHEDULER_ENV = "ALIGNMENT_SCHEDULER"
#: states of a build: launched (the process is starting), computing, finished, stopped by an error
STATES = ("starting", "running", "done", "failed")


@dataclass(frozen=True)
class BuildStatus:
    """What a background demo build has done. ``done`` of ``total`` units; ``label`` the unit
    being computed (or the phase, e.g. building the dataset); ``pid`` the builder's process."""

    state: str
    done: int = 0
    total: int = 0
    label: str = ""
    pid: int = 0
    error: str = ""
    updated: float = 0.0

    @property
    def active(self) -> bool:
        """Starting or running, in a process that still exists."""
        return self.state in ("starting", "running") and _alive(self.pid)

    def text(self) -> str:
        """One line for the app, e.g. ``"computing the demo: 12 of 105 units (encoding …)"``."""
        if self.state == "failed":
            return f"the background demo build stopped: {self.error}"
        if self.state == "done":
            return "the demo is computed"
        if not self.total:
            return f"preparing the demo: {self.label or 'starting'}"
        return f"computing the demo: {self.done} of {self.total} units ({self.label})"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _name(small: bool) -> str:
    return ".demo-build" + ("-small" if small else "")


def status_path(cache_root, small: bool = False) -> Path:
    """The status file of the demo build of a cache folder (beside the stage folders)."""
    return Cache(cache_root).root / f"{_name(small)}.json"


def read_status(cache_root, small: bool = False) -> BuildStatus | None:
    """The last status a build wrote, or None when no build ever ran (or the file is unreadable)."""
    try:
        raw = json.loads(status_path(cache_root, small).read_text(encoding="utf-8"))
        return BuildStatus(**{k: raw[k] for k in BuildStatus.__dataclass_fields__ if k in raw})
    except (OSError, ValueError, TypeError):
        return None


def _write_status(path: Path, status: BuildStatus) -> None:
    _write_json(path, asdict(status))


def _write_json(path: Path, value) -> None:
    """Write atomically: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, path)


#: what a page asks the build for: the fields of a layer and the subject (``"group"``: all)
VIEW_FIELDS = ("model", "branch", "layer", "kind", "condition", "subject")


def _wish_path(cache_root, small: bool) -> Path:
    return Cache(cache_root).root / f"{_name(small)}-wish.json"


def ask_first(cache_root, small: bool, view: dict) -> None:
    """Ask the running build to compute the units of ``view`` (:data:`VIEW_FIELDS`) next; the
    last request wins."""
    wish = {name: view[name] for name in VIEW_FIELDS}
    wish["layer"] = int(wish["layer"])
    _write_json(_wish_path(cache_root, small), wish)


def read_wish(cache_root, small: bool = False) -> dict | None:
    """The view last asked for (:func:`ask_first`), or None."""
    try:
        wish = json.loads(_wish_path(cache_root, small).read_text(encoding="utf-8"))
        return wish if isinstance(wish, dict) and set(VIEW_FIELDS) <= set(wish) else None
    except (OSError, ValueError):
        return None


def asked_first(cache_root, small: bool = False):
    """A ``prioritize`` for :func:`alignment.plan.run_plan`: the units of the view last asked for
    (a unit of its layer, for its subject or for every subject when it asked for the group)
    first, the others in their order."""
    from alignment.conventions import GROUP

    def shows(unit, wish) -> bool:
        key = _layer_of(unit.target)
        fields = ("model", "branch", "layer", "kind", "condition")
        if key is None or tuple(getattr(key, f) for f in fields) != tuple(wish[f] for f in fields):
            return False
        return unit.subject is None or wish["subject"] in (GROUP, unit.subject)

    def prioritize(units: list) -> list:
        wish = read_wish(cache_root, small)
        if wish is None:
            return units
        asked = [shows(u, wish) for u in units]
        return [u for u, a in zip(units, asked) if a] + [u for u, a in zip(units, asked) if not a]

    return prioritize


def _layer_of(target):
    """The layer a unit's target is about (a layer itself, a lesion's layer, an integration's
    VLM layer), or None."""
    from alignment.keys import LayerKey

    for key in (target, getattr(target, "vlm", None), getattr(target, "layer", None)):
        if isinstance(key, LayerKey):
            return key
    return None


def start_demo_build(cache_root, small: bool = False, scheduler: str | None = None) -> BuildStatus:
    """Start the background build of the demo in ``cache_root`` unless one is running.

    ``scheduler``: where its units run (as ``--scheduler``; default ``$ALIGNMENT_SCHEDULER``,
    :data:`SCHEDULER_ENV`, else here, serially). Returns the status the app should show (the
    running build's, or the new one's). The child writes its output to
    ``<cache>/.demo-build[-small].log``.
    """
    current = read_status(cache_root, small)
    if current is not None and current.active:
        return current
    root = Cache(cache_root).root
    root.mkdir(parents=True, exist_ok=True)  # a cache folder named but not made yet
    command = [sys.executable, "-m", "alignment", "demo", "--background", "--cache", str(root)]
    if small:
        command.append("--small")
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or SYNC
    if scheduler != SYNC:
        command += ["--scheduler", scheduler]
    with open(root / f"{_name(small)}.log", "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=str(Path(__file__).resolve().parents[1]))
    status = BuildStatus("starting", label="starting", pid=child.pid, updated=time.time())
    _write_status(status_path(cache_root, small), status)
    return status


def run_background_demo(cache_root, small: bool = False, scheduler: str | None = None,
                        **demo_kwargs) -> BuildStatus:
    """Build the demo here, reporting to the status file; the body of ``demo --background``.

    ``scheduler``: where the units run (:func:`alignment.executor.open_executor`); here, serially,
    by default, in the order the app's pages ask for (:func:`asked_first`); on Dask in the plan's
    order. Returns at once (the running build's status) when another process builds this demo.
    On an error the status says ``failed`` with its one-line message, and the error is raised.
    """
    from filelock import FileLock, Timeout

    from alignment.demo import run_demo
    cache = Cache(cache_root)
    path = status_path(cache.root, small)
    lock = FileLock(str(cache.root / f"{_name(small)}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return read_status(cache.root, small) or BuildStatus("running")
    pid = os.getpid()

    def report(done: int, total: int, label: str) -> None:  # once per unit
        _write_status(path, BuildStatus("running", done, total, label, pid, updated=time.time()))

    try:
        report(0, 0, "building the simulated dataset")
        if scheduler in (None, SYNC):
            scheduler = SerialExecutor(prioritize=asked_first(cache.root, small))
        run_demo(cache, small=small, progress=report, scheduler=scheduler, **demo_kwargs)
    except BaseException as exc:
        error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        done, total, label = _last_counts(path)
        _write_status(path, BuildStatus("failed", done, total, label, pid, error, time.time()))
        raise
    finally:
        lock.release()
    _, total, _ = _last_counts(path)
    status = BuildStatus("done", total, total, "", pid, updated=time.time())
    _write_status(path, status)
    return status


def _last_counts(path: Path) -> tuple[int, int, str]:
    """(done, total, label) of the status file at ``path`` ((0, 0, "") when unreadable)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return int(raw["done"]), int(raw["total"]), str(raw["label"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0, ""
