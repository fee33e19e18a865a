"""Benchmark a cold ``python -m alignment demo``: total time and where it goes.

    python benchmarks/bench_demo.py            # the default demo (3 subjects x 600 TRs)
    python benchmarks/bench_demo.py --small    # the test-sized demo
    python benchmarks/bench_demo.py --full     # every layer of every model

Builds the demo into a fresh temporary cache, times every unit of the plan (one stage for one
subject and one layer; a unit's time includes the ANs it extracts first), then runs the demo
again on the same cache (the idempotent re-run) and reports its time as a ratio of the cold one.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alignment.cache import Cache  # noqa: E402
from alignment.demo import run_demo  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="the test-sized demo")
    ap.add_argument("--full", action="store_true", help="every layer of every demo model")
    ap.add_argument("--slowest", type=int, default=8, help="list this many slowest units")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as root:
        marks: list[tuple[float, str]] = []
        start = time.perf_counter()

        def progress(done, total, label):
            marks.append((time.perf_counter() - start, label))

        run_demo(Cache(root), small=args.small, full=args.full, progress=progress)
        cold = time.perf_counter() - start
        warm_start = time.perf_counter()
        run_demo(Cache(root), small=args.small, full=args.full, progress=False)
        warm = time.perf_counter() - warm_start

    units = [(t1 - t0, label) for (t0, label), (t1, _) in zip(marks, marks[1:])]
    by_stage: dict[str, list[float]] = collections.defaultdict(list)
    for seconds, label in units:
        by_stage[label.split()[0]].append(seconds)
    print(f"cold demo: {cold:.1f} s ({len(units)} units; dataset build and set-up {marks[0][0]:.1f} s)")
    for stage, times in by_stage.items():
        print(f"  {stage:20s} {sum(times):7.1f} s  {len(times):4d} units  {sum(times) / len(times):5.1f} s/unit")
    print(f"re-run on the filled cache: {warm:.1f} s = {warm / cold:.3f} x cold")
    print("slowest units:")
    for seconds, label in sorted(units, reverse=True)[:args.slowest]:
        print(f"  {seconds:6.1f} s  {label}")


if __name__ == "__main__":
    main()
