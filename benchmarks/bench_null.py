"""Benchmark the encoding map's refit permutation null against the fit it tests, in one process.

    python benchmarks/bench_null.py                    # a demo layer: T=600 (4 runs), N=96, V=20000
    python benchmarks/bench_null.py --N 768 --T 2400   # wider layer, longer runs

Times ``ridge_permutation_null`` on the first ``--draws`` draws (what every voxel gets before
the screen of ``ridge_null_p``) and, as the reference, ``fit_ridge`` (nested leave-one-run-out)
on the same arrays. Both are best of ``--repeat`` interleaved runs, so the ratio is comparable
across machines and loads. ``--form`` forces one order of the null's products (default: the one
``ridge_permutation_null`` picks per fold), to compare them on the same arrays.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import alignment.encoding as encoding  # noqa: E402
from alignment.stats import run_permutations  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=int, default=600, help="time points (split in --runs runs)")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--N", type=int, default=96, help="features")
    ap.add_argument("--V", type=int, default=20000, help="voxels")
    ap.add_argument("--draws", type=int, default=encoding.NULL_FIRST_DRAWS)
    ap.add_argument("--null", default="circular", choices=["circular", "block"])
    ap.add_argument("--form", default="auto", choices=["auto", "factored", "direct"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    if args.form != "auto":
        encoding._NULL_FACTORED_GAIN = np.inf if args.form == "factored" else 0
    rng = np.random.default_rng(0)
    runs = np.repeat(np.arange(args.runs), args.T // args.runs)
    T = len(runs)
    X = rng.standard_normal((T, args.N)).astype(np.float32)
    W = rng.standard_normal((args.N, args.V)) * (rng.random(args.V) < 0.1) / np.sqrt(args.N)
    Y = (X @ W + rng.standard_normal((T, args.V))).astype(np.float32)
    alphas = np.logspace(-1, 5, 13)
    perms = run_permutations(runs, args.draws, args.null, seed=0)
    print(f"T={T} ({args.runs} runs), N={args.N}, V={args.V}, {args.draws} {args.null} draws, "
          f"form {args.form}, cpus={os.cpu_count()}")

    fit = encoding.fit_ridge(X, Y, runs, alphas)
    jobs = {"fit_ridge": lambda: encoding.fit_ridge(X, Y, runs, alphas),
            "null": lambda: encoding.ridge_permutation_null(X, Y, runs, fit.fold_alphas, perms)}
    best = {k: np.inf for k in jobs}
    for _ in range(args.repeat):  # interleaved: a busy machine slows both alike
        for k, fn in jobs.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    ratio = best["null"] / best["fit_ridge"]
    print(f"fit_ridge {best['fit_ridge']:.2f} s   null ({args.draws} draws) {best['null']:.2f} s   "
          f"ratio null/fit {ratio:.2f}   per draw {ratio / args.draws:.3f} fits")


if __name__ == "__main__":
    main()
