"""Executors: who runs a plan's units.

:class:`SerialExecutor` (scheduler ``sync``, the default) runs them here, one after the other
(:func:`alignment.plan.run_plan`). :class:`DaskExecutor` hands them to a Dask cluster: a
``distributed.LocalCluster`` (``local:N``), a running scheduler (``tcp://host:8786``) or any
cluster object, e.g. a ``dask_jobqueue.SLURMCluster`` (:func:`open_executor`).

How the Dask executor runs a plan:

- a unit already in the cache is never submitted; every other one is submitted with the units it
  reads (``plan.needs``) as dependencies, so it starts only once they are stored;
- the cache is the one store: a worker rebuilds the study from its pickle (once per process) and
  reads its inputs from the cache, which must therefore live on a filesystem every worker sees,
  with working file locks; what travels through the scheduler is the study, the unit and, back,
  the result's cache key;
- a worker lost mid-unit leaves at most an abandoned ``.tmp-*`` folder (never served; the cache
  writes atomically) and the scheduler runs the unit again on another worker, up to
  ``distributed.scheduler.allowed-failures`` times; a unit that raises is run again
  ``retries`` times;
- a unit that still fails is reported (:class:`PlanFailed`: one line per failed unit, with the
  reason); the units that do not read it go on, those that do are not run;
- when the study computes on a GPU, units of stages marked ``gpu`` ask for a ``GPU`` worker
  resource (``dask-worker --resources GPU=1``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import pickle
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from alignment.stages import Unit, stage as stage_of

#: the in-process serial scheduler (the default)
SYNC = "sync"
#: ``local:N``: a LocalCluster of N single-threaded worker processes
LOCAL_PREFIX = "local:"
#: how often the Dask executor refreshes its progress display (seconds)
POLL_S = 0.2
#: how many times a unit that raised is run again (a lost worker is handled by the scheduler)
RETRIES = 1
#: the worker resource GPU units ask for
GPU_RESOURCE = "GPU"


@dataclass(frozen=True)
class UnitFailure:
    """A unit that failed, and why (one line)."""

    unit: Unit
    reason: str

    def line(self) -> str:
        return f"{self.unit.label()}: {self.reason}"


class PlanFailed(RuntimeError):
    """Some units of a plan failed; the others were stored. ``failures``: the units that failed,
    ``skipped``: the units not run because an input failed."""

    def __init__(self, failures: Sequence[UnitFailure], skipped: Sequence[Unit] = ()):
        self.failures = tuple(failures)
        self.skipped = tuple(skipped)
        super().__init__(self.text())

    def text(self) -> str:
        lines = [f"failed: {f.line()}" for f in self.failures]
        if self.skipped:
            lines.append(f"not run: {len(self.skipped)} unit(s) that read a failed unit")
        return "\n".join(lines)


class UnitError(Exception):
    """Raised on a worker for a unit that failed: its label and the reason, on one line each
    (picklable, so the scheduler hands it to the units that read it too)."""

    def __init__(self, label: str, reason: str):
        super().__init__(label, reason)
        self.label = label
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


@dataclass
class RunStatus:
    """Where a plan's run stands (what a progress display shows).

    ``cached``: units found in the cache (not submitted); ``done``/``running``/``failed``/
    ``skipped``: among the submitted ones; ``workers``: worker address → units running there.
    """

    total: int
    cached: int = 0
    done: int = 0
    running: int = 0
    failed: int = 0
    skipped: int = 0
    workers: dict = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.cached + self.done + self.failed + self.skipped

    def text(self) -> str:
        busy = " ".join(f"{addr.rsplit(':', 1)[-1]}:{n}" for addr, n in sorted(self.workers.items()) if n)
        return (f"{self.done + self.cached} done, {self.running} running, {self.failed} failed"
                + (f", {self.skipped} not run" if self.skipped else "") + (f" [{busy}]" if busy else ""))


#: ``(done, total, label)``, as :func:`alignment.plan.run_plan` calls it
Progress = Callable[[int, int, str], None]
#: called with a :class:`RunStatus` whenever the status changes
StatusCallback = Callable[[RunStatus], None]


@dataclass(frozen=True)
class RunReport:
    """What a run did: units computed here or on workers, and units found in the cache."""

    computed: tuple
    cached: tuple


class SerialExecutor:
    """Runs a plan's units here, in order (the default; a unit that raises stops the run).

    ``prioritize``: reorders the units still to run before each one
    (:func:`alignment.plan.run_plan`), e.g. the app's background build putting first what a
    page waits for.
    """

    name = SYNC

    def __init__(self, prioritize=None):
        self.prioritize = prioritize

    def run(self, study, plan, progress: bool | Progress = True,
            on_status: StatusCallback | None = None) -> RunReport:
        from alignment.plan import run_plan

        cached = tuple(u for u in plan.units if study.has(u.stage, u.target, u.subject))

        def report(done, total, label):
            if callable(progress):
                progress(done, total, label)
            if on_status is not None:  # a cached unit passes as done
                on_status(RunStatus(total, done=done, running=int(label != "done")))

        run_plan(study, plan, report if (callable(progress) or on_status) else progress, self.prioritize)
        stored = set(cached)
        return RunReport(tuple(u for u in plan.units if u not in stored), cached)


def uses_gpu(study) -> bool:
    """Whether ``study`` computes on a GPU: device cuda, or auto with a GPU seen here."""
    if study.device == "cuda":
        return True
    if study.device != "auto":
        return False
    import torch

    return bool(torch.cuda.is_available())


def unit_resources(unit: Unit, gpu: bool) -> dict | None:
    """The worker resources ``unit`` asks for: the GPU when the study computes on one
    (``gpu``) and the unit's stage runs there."""
    return {GPU_RESOURCE: 1} if gpu and stage_of(unit.stage).gpu else None


# one study per worker process, rebuilt from its pickle once (its memos, e.g. a subject's BOLD,
# then serve the next units of the same study)
_WORKER_STUDY: dict = {}


def _run_on_worker(blob: bytes, digest: str, unit: Unit, imports: tuple, *inputs_stored) -> str:
    """Compute (or find cached) ``unit`` in a worker; its inputs are in the cache. Returns its key."""
    from alignment.plan import run_unit

    try:
        for name in imports:
            importlib.import_module(name)
        study = _WORKER_STUDY.get(digest)
        if study is None:
            _WORKER_STUDY.clear()
            study = _WORKER_STUDY[digest] = pickle.loads(blob)
        return run_unit(study, unit).path.name
    except Exception as exc:
        raise UnitError(unit.label(), _one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class DaskExecutor:
    """Runs a plan's units on a Dask cluster through ``client`` (a ``distributed.Client``).

    ``retries``: how many times a unit that raised is run again; ``imports``: modules that
    register extra stages, imported on the workers before a unit runs.
    """

    name = "dask"

    def __init__(self, client, retries: int = RETRIES, imports: Sequence[str] = ()):
        self.client = client
        self.retries = retries
        self.imports = tuple(imports)

    def run(self, study, plan, progress: bool | Progress = True,
            on_status: StatusCallback | None = None) -> RunReport:
        """Run ``plan`` (its cached units are skipped); raises :class:`PlanFailed` when a unit fails."""
        from distributed import Future
        from tqdm.auto import tqdm

        cached = tuple(u for u in plan.units if study.has(u.stage, u.target, u.subject))
        stored = set(cached)
        todo = [u for u in plan.units if u not in stored]
        status = RunStatus(len(plan), cached=len(cached))
        blob = pickle.dumps(study)
        digest = hashlib.sha256(blob).hexdigest()
        gpu = uses_gpu(study)
        if gpu and todo:
            self._warn_without_gpu_workers()
        run_id = uuid.uuid4().hex[:8]
        futures: dict[Unit, Future] = {}
        for i, unit in enumerate(todo):  # plan order: every unit after its inputs
            deps = [futures[d] for d in plan.needs[unit] if d in futures]
            futures[unit] = self.client.submit(
                _run_on_worker, blob, digest, unit, self.imports, *deps, key=f"{unit.stage}-{i}-{run_id}",
                retries=self.retries, resources=unit_resources(unit, gpu), pure=False)
        owner = {f.key: u for u, f in futures.items()}

        failures: list[UnitFailure] = []
        skipped: list[Unit] = []
        seen: set = set()
        try:
            with tqdm(total=len(plan), initial=len(cached), unit="unit", disable=progress is not True) as bar:
                while True:
                    for unit, future in futures.items():
                        if unit in seen or future.status not in ("finished", "error", "cancelled"):
                            continue
                        seen.add(unit)
                        if future.status == "finished":
                            status.done += 1
                        else:
                            failure = _failure(unit, future)
                            if failure is None:
                                skipped.append(unit)
                                status.skipped += 1
                            else:
                                failures.append(failure)
                                status.failed += 1
                        bar.update(1)
                        if callable(progress):
                            progress(status.finished, status.total, unit.label())
                    running = {addr: sum(1 for k in keys if k in owner)
                               for addr, keys in self.client.processing().items()} if futures else {}
                    status.workers = running
                    status.running = sum(running.values())
                    bar.set_postfix_str(status.text(), refresh=False)
                    if on_status is not None:
                        on_status(status)
                    if len(seen) == len(futures):
                        break
                    time.sleep(POLL_S)
        except BaseException:  # interrupted: what is stored stays; nothing keeps running for us
            self.client.cancel(list(futures.values()))
            raise
        if callable(progress):
            progress(status.total, status.total, "done")
        if failures:
            raise PlanFailed(failures, skipped)
        return RunReport(tuple(todo), cached)

    def _warn_without_gpu_workers(self):
        workers = self.client.scheduler_info().get("workers", {})
        if workers and not any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers.values()):
            warnings.warn(f"the study computes on a GPU but no worker offers the {GPU_RESOURCE} resource: its "
                          f"GPU units wait for one (start workers with --resources {GPU_RESOURCE}=1)",
                          stacklevel=3)


def _failure(unit: Unit, future) -> UnitFailure | None:
    """Why ``unit`` failed; None when it was not run because an input failed."""
    if future.status == "cancelled":
        return UnitFailure(unit, "cancelled")
    exc = future.exception()
    if isinstance(exc, UnitError):
        return UnitFailure(unit, exc.reason) if exc.label == unit.label() else None
    name = type(exc).__name__
    if name == "KilledWorker":
        return UnitFailure(unit, "its worker died every time it ran it (KilledWorker)")
    return UnitFailure(unit, _one_line(exc))


def parse_scheduler(scheduler: str) -> tuple[str, object]:
    """``("sync", None)``, ``("local", N)`` or ``("address", ADDRESS)`` for a --scheduler value."""
    text = scheduler.strip()
    if text == SYNC:
        return "sync", None
    if text.startswith(LOCAL_PREFIX):
        count = text[len(LOCAL_PREFIX):]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--scheduler {scheduler!r}: local:N needs a worker count N >= 1, e.g. local:2")
        return "local", int(count)
    if "://" in text or (":" in text and text.rsplit(":", 1)[1].isdigit()):
        return "address", text
    raise ValueError(f"--scheduler {scheduler!r}: use sync, local:N or a scheduler address (tcp://host:8786)")


def local_cluster(n_workers: int, gpu: bool = False):
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded processes (its ports and
    dashboard on free ports; ``gpu``: each worker offers the ``GPU`` resource, sharing this
    machine's GPU)."""
    import logging

    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                        resources={GPU_RESOURCE: 1} if gpu else None, silence_logs=logging.ERROR)


@contextlib.contextmanager
def open_executor(scheduler=None, *, retries: int = RETRIES, imports: Sequence[str] = (),
                  gpu: bool = False) -> Iterator[SerialExecutor | DaskExecutor]:
    """The executor for ``scheduler``, closed (with what it started) on exit.

    ``scheduler``: None or ``"sync"`` (here, serially), a :class:`SerialExecutor` (used as is),
    ``"local:N"`` (a LocalCluster started here; ``gpu``: its workers offer the GPU resource), a
    scheduler address, a
    ``distributed.Client`` (used as is) or a cluster object such as a
    ``dask_jobqueue.SLURMCluster`` (a client is opened on it; the cluster stays up).
    """
    if isinstance(scheduler, SerialExecutor):
        yield scheduler
        return
    if scheduler is None or isinstance(scheduler, str) and parse_scheduler(scheduler)[0] == "sync":
        yield SerialExecutor()
        return
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if isinstance(scheduler, str):
            kind, value = parse_scheduler(scheduler)
            if kind == "local":
                cluster = stack.enter_context(local_cluster(value, gpu))
                client = stack.enter_context(Client(cluster))
            else:
                client = stack.enter_context(Client(value))
        elif isinstance(scheduler, Client):
            client = scheduler
        elif hasattr(scheduler, "scheduler_address"):
            client = stack.enter_context(Client(scheduler))
        else:
            raise ValueError(f"scheduler {scheduler!r}: expected sync, local:N, an address, a distributed.Client "
                             "or a cluster")
        yield DaskExecutor(client, retries=retries, imports=imports)
