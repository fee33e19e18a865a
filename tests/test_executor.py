"""The Dask executor: same results as the in-process run, a lost worker survived, resuming,
failures reported by unit while the independent units finish."""

import time

import numpy as np
import pytest

import executor_stages  # noqa: F401 - registers the toy stages here; the workers import it too
from alignment.cache import Cache
from alignment.data import load_dataset
from alignment.executor import (DaskExecutor, PlanFailed, SerialExecutor, open_executor, parse_scheduler, unit_resources,
                                uses_gpu)
from alignment.keys import LayerKey, ModelPlan, Options
from alignment.pipeline import Study
from alignment.plan import Plan, expand, run_plan
from alignment.stages import Unit
from test_pipeline import SPEC, planted  # noqa: F401 - the planted dataset fixture

distributed = pytest.importorskip("distributed")

OPTIONS = Options(n_atoms=8, n_null=5, alphas=(1.0, 100.0))  # small: two fits of a whole brain
IMPORTS = ("executor_stages",)


@pytest.fixture(scope="module")
def client():
    """One LocalCluster of 2 single-threaded workers for the module (starting one takes seconds)."""
    with open_executor("local:2") as executor:
        yield executor.client


def toy_plan(*units: Unit) -> Plan:
    """A plan of toy units (each after the ``reads`` input it names)."""
    needs = {u: ((Unit(*u.target.split(":", 1)),) if u.stage == "reads" else ()) for u in units}
    return Plan(tuple(units), needs, frozenset(units))


def toy_study(root) -> Study:
    return Study(None, Cache(root), device="cpu")  # toy stages read no dataset


def calls(root) -> list[str]:
    path = root / "calls.log"
    return path.read_text().split() if path.exists() else []


def test_scheduler_values_are_checked():
    assert parse_scheduler("sync") == ("sync", None)
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad in ("local:0", "local:two", "cluster"):
        with pytest.raises(ValueError, match="--scheduler"):
            parse_scheduler(bad)
    with open_executor("sync") as executor:
        assert isinstance(executor, SerialExecutor)


def test_gpu_units_ask_for_a_gpu_worker_only_when_the_study_computes_on_a_gpu(tmp_path):
    layer = Unit("encoding", LayerKey(SPEC, "image", 1), "01")
    atoms = Unit("atoms", LayerKey(SPEC, "image", 1))
    assert uses_gpu(Study(None, Cache(tmp_path), device="cuda")) and not uses_gpu(toy_study(tmp_path))
    assert unit_resources(layer, gpu=True) == {"GPU": 1}
    assert unit_resources(atoms, gpu=True) is None  # the dictionary is learnt on the CPU
    assert unit_resources(layer, gpu=False) is None


def test_two_workers_store_what_the_in_process_run_stores(planted, tmp_path, client):
    from threadpoolctl import threadpool_limits

    plans = [ModelPlan(SPEC, ("image", "text"), (1, 2), analyses=("encoding",))]
    serial = Study(load_dataset(planted), Cache(tmp_path / "serial"), OPTIONS, device="cpu")
    plan = expand(serial, plans, ["01"])
    with threadpool_limits(1):  # as a worker runs (one thread): BLAS sums in the same order, to the last bit
        run_plan(serial, plan, progress=False)

    dask = Study(load_dataset(planted), Cache(tmp_path / "dask"), OPTIONS, device="cpu")
    statuses = []
    report = DaskExecutor(client).run(dask, expand(dask, plans, ["01"]), progress=False, on_status=statuses.append)
    assert [u.stage for u in report.computed] == ["encoding"] * 4
    assert report.cached == tuple(u for u in plan.units if u.stage == "ans")  # extracted while expanding
    assert statuses[-1].done + statuses[-1].cached == len(plan) and statuses[-1].failed == 0
    for unit in plan.units:
        a = serial.get(unit.stage, unit.target, unit.subject, compute=False)
        b = dask.get(unit.stage, unit.target, unit.subject, compute=False)
        assert a.key == b.key and set(a.keys()) == set(b.keys()), unit
        for name in a.keys():
            np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=f"{unit.label()} {name}")


def test_a_worker_lost_mid_unit_is_survived_without_a_partial_entry(tmp_path, client):
    units = [Unit("dies_once", "a"), Unit("reads", "dies_once:a"), Unit("toy", "b"), Unit("toy", "c")]
    study = toy_study(tmp_path)
    report = DaskExecutor(client, imports=IMPORTS).run(study, toy_plan(*units), progress=False)
    assert set(report.computed) == set(units)
    assert (tmp_path / "died-a").exists()  # it did kill its worker once
    assert sorted(calls(tmp_path)) == ["a", "b", "c"]
    np.testing.assert_array_equal(np.asarray(study.get("reads", "dies_once:a", compute=False)["value"]),
                                  2 * executor_stages._value("a"))
    for info in study.cache.entries():  # every stored entry reads whole; no write is left half done
        study.cache.get(info.stage, info.key).load()
    assert not list(tmp_path.rglob(".tmp-*"))
    assert sorted(e.stage for e in study.cache.entries()) == ["dies_once", "reads", "toy", "toy"]


def test_a_failing_unit_is_reported_by_name_and_the_independent_units_finish(tmp_path, client):
    units = [Unit("broken", "x"), Unit("reads", "broken:x"), Unit("toy", "y"), Unit("reads", "toy:y")]
    study = toy_study(tmp_path)
    with pytest.raises(PlanFailed) as failed:
        DaskExecutor(client, retries=0, imports=IMPORTS).run(study, toy_plan(*units), progress=False)
    assert [f.unit for f in failed.value.failures] == [Unit("broken", "x")]
    assert "broken x: ValueError: planted failure of x" in failed.value.text()
    assert failed.value.skipped == (Unit("reads", "broken:x"),)
    assert study.has("reads", "toy:y") and not study.has("reads", "broken:x")
    assert calls(tmp_path) == ["y"]


def test_a_run_interrupted_resumes_with_only_what_is_missing(tmp_path, client):
    names = [f"slow{i}" for i in range(8)]
    units = [Unit("toy", name) for name in names]
    study = toy_study(tmp_path)
    executor = DaskExecutor(client, imports=IMPORTS)

    def interrupt(done, total, label):
        if label != "done":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        executor.run(study, toy_plan(*units), progress=interrupt)
    first = calls(tmp_path)
    time.sleep(1.5)  # units that were already running when the run stopped finish and are stored
    assert 1 <= len(first) < len(units)
    report = executor.run(study, toy_plan(*units), progress=False)
    assert len(report.cached) >= len(first) and len(report.computed) < len(units)
    assert sorted(calls(tmp_path)) == sorted(names)  # nothing computed twice


def test_a_client_or_a_cluster_object_serves_as_the_scheduler(tmp_path, client):
    units = [Unit("toy", "p"), Unit("reads", "toy:p")]
    with open_executor(client) as executor:  # used as is, left open
        assert executor.client is client
    with open_executor(client.cluster, imports=IMPORTS) as executor:  # e.g. a dask_jobqueue.SLURMCluster
        executor.run(toy_study(tmp_path), toy_plan(*units), progress=False)
    assert client.status == "running"
    assert toy_study(tmp_path).has("reads", "toy:p")


def test_the_serial_executor_reports_what_it_computed_and_what_was_cached(tmp_path):
    units = [Unit("toy", "s"), Unit("reads", "toy:s"), Unit("toy", "t")]
    study = toy_study(tmp_path)
    study.get("toy", "t")
    statuses = []
    report = SerialExecutor().run(study, toy_plan(*units), progress=False, on_status=statuses.append)
    assert report.cached == (Unit("toy", "t"),) and report.computed == tuple(units[:2])
    assert (statuses[-1].done, statuses[-1].running, statuses[-1].total) == (3, 0, 3)
    assert calls(tmp_path) == ["t", "s"]


def test_the_cli_checks_the_scheduler_before_computing(tmp_path, capsys):
    from alignment.cli import main

    for command in ("demo", "validate"):
        assert main(["--cache", str(tmp_path), command, "--small", "--scheduler", "local:none"]) == 1
        assert "local:N needs a worker count" in capsys.readouterr().err
        assert not list(tmp_path.iterdir())  # nothing built
