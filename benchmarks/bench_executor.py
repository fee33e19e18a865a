"""The Dask executor's speed-up: the core plan of the small demo with 1 vs 2 local workers.

    python benchmarks/bench_executor.py [--cache DIR] [--workers 1,2] [--units N] [--full-size]

Builds the small demo dataset (``--full-size``: the default demo) in the cache, expands the
core demo plan (:func:`alignment.demo.demo_plans`; the models' ANs are extracted while
expanding, once, and are not timed), then for each worker count: removes every analysis result
(the dataset and the ANs stay), starts a ``LocalCluster`` of that many single-threaded workers
and times the executor running the whole plan (cluster start-up not included). Prints each time
and the speed-up of the last count over the first, measured in this one process run.
``--units N`` times only the first N analysis units of the plan (with their inputs: the plan
lists each unit after its inputs), for a quicker figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alignment.cache import Cache
from alignment.data import load_dataset
from alignment.demo import INTEGRATION_BASELINES, demo_options, demo_plans, demo_root
from alignment.executor import open_executor
from alignment.pipeline import Study
from alignment.plan import Plan, expand
from alignment.simulation import build_demo

#: what a timed run keeps in the cache: the dataset and the extracted ANs
KEPT = ("datasets", "ans")


def clear_results(cache: Cache):
    """Remove every analysis result, keeping :data:`KEPT`."""
    for path in cache.root.iterdir():
        if path.is_dir() and path.name not in KEPT:
            shutil.rmtree(path)


def first_units(plan: Plan, n: int) -> Plan:
    """The plan's first ``n`` units that are not AN extractions, with the extractions before them
    (a prefix of the plan holds every input of its units)."""
    analysis = [i for i, u in enumerate(plan.units) if u.stage != "ans"]
    units = plan.units[:analysis[n - 1] + 1] if n < len(analysis) else plan.units
    return Plan(units, {u: plan.needs[u] for u in units}, frozenset(units) & plan.requested)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", help="cache folder (default: a temporary one)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--units", type=int, help="time only the plan's first N analysis units (default: all)")
    parser.add_argument("--full-size", action="store_true", help="the default demo instead of the small one")
    args = parser.parse_args(argv)

    cache = Cache(args.cache or tempfile.mkdtemp(prefix="bench-executor-"))
    small = not args.full_size
    root = build_demo(demo_root(cache, small=small), small=small)
    study = Study(load_dataset(root), cache, demo_options(), device="cpu")
    plan = expand(study, demo_plans(), study.dataset.subjects, baselines=INTEGRATION_BASELINES)
    if args.units is not None:
        plan = first_units(plan, args.units)
    print(f"plan: {len(plan)} units ({sum(u.stage != 'ans' for u in plan.units)} timed), "
          f"{len(study.dataset.subjects)} subjects, {os.cpu_count()} CPUs")
    times = {}
    for n in (int(w) for w in args.workers.split(",")):
        clear_results(cache)
        with open_executor(f"local:{n}") as executor:
            start = time.perf_counter()
            executor.run(study, plan, progress=False)
            times[n] = time.perf_counter() - start
        print(f"{n} worker(s): {times[n]:.1f} s")
    first, last = list(times)[0], list(times)[-1]
    print(f"speed-up {last} vs {first} worker(s): {times[first] / times[last]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
