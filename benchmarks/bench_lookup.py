"""Speed of an AN ↔ BN lookup (a click in the app) on an HCP-size problem.

    python benchmarks/bench_lookup.py [--voxels 91282] [--layers 12] [--ans 768] [--atoms 64]

Builds a :class:`alignment.analyses.lookup.LinkTable` from random codes and t maps (about 10 %
of (atom, voxel) pairs significant), then times, in one process (median of repeats):

- ``top_ans``: a voxel's top 10 ANs over all layers, as a DataFrame;
- ``voxel_scores``: the same without the table (the numeric core);
- ``an_map`` / ``top_voxels``: one AN's brain map and its top voxels.

References measured in the same process:

- one dense float32 matrix-vector product of the lookup's total size, (L·N, K) @ (K,): the
  floor for the arithmetic of ``voxel_scores``;
- one dense (V, K) @ (K,) product: the floor for ``an_map``;
- a naive lookup that masks the unprocessed (K, V) t maps at click time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alignment.analyses.lookup import LinkTable


def _once(fn, inner):
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def _paired(fn, ref, repeats, inner=1):
    """Median time of fn and of ref, and the median of their per-repeat ratio.

    The two are timed alternately so that load from other processes on a shared machine hits
    both alike; the ratio is the figure to compare across machines.
    """
    fn(), ref()  # warm up
    a, b = [], []
    for _ in range(repeats):
        a.append(_once(fn, inner))
        b.append(_once(ref, inner))
    ratio = statistics.median(x / y for x, y in zip(a, b))
    return statistics.median(a), statistics.median(b), ratio


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voxels", type=int, default=91282)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--ans", type=int, default=768)
    ap.add_argument("--atoms", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="limit BLAS threads (threadpoolctl); on a loaded machine 1 is steadier")
    args = ap.parse_args(argv)
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
    V, L, N, K = args.voxels, args.layers, args.ans, args.atoms
    rng = np.random.default_rng(0)

    layers, raw = [], []
    t0 = time.perf_counter()
    for layer in range(L):
        codes = rng.standard_normal((N, K)).astype(np.float32)
        codes[rng.random((N, K)) > 0.1] = 0  # sparse codes
        t = rng.standard_normal((K, V)).astype(np.float32) * 2
        sig = np.abs(t) > 3.3  # ~10 % significant
        layers.append(dict(model="clip:ViT-B-32", branch="image", layer=layer, codes=codes, t=t, sig=sig))
        raw.append((codes, t, sig))  # kept for the naive comparison
    table = LinkTable(layers)
    build = time.perf_counter() - t0
    del layers

    voxels = rng.integers(0, V, size=64)
    it = iter(np.tile(voxels, 100_000))
    # references, same process and dtypes
    M = rng.standard_normal((L * N, K)).astype(np.float32)
    x = rng.standard_normal(K).astype(np.float32)
    D = rng.standard_normal((V, K)).astype(np.float32)
    R = args.repeats

    def ref_vox():
        return M @ x

    def ref_map():
        return D @ x

    def naive_vox():  # no precomputation: mask the raw (K, V) maps of every layer per click
        v = next(it)
        return [c @ np.where(s[:, v], t[:, v], 0) for c, t, s in raw]

    def naive_map():
        c, t, s = raw[5]
        return c[123] @ np.where(s, t, 0)

    core = _paired(lambda: table.voxel_scores(next(it)), ref_vox, R, inner=50)
    top = _paired(lambda: table.top_ans(next(it), n=10), ref_vox, R, inner=20)
    nai = _paired(naive_vox, ref_vox, R, inner=20)
    nai_map = _paired(naive_map, ref_map, R, inner=2)
    amap = _paired(lambda: table.an_map("clip:ViT-B-32", "image", 5, 123), ref_map, R, inner=5)
    topv = _paired(lambda: table.top_voxels("clip:ViT-B-32", "image", 5, 123, n=10), ref_map, R, inner=5)

    print(f"LinkTable: V={V} voxels, {L} layers x {N} ANs x {K} atoms; build {build:.2f} s, "
          f"{table.nbytes / 2**20:.0f} MiB")
    print("median times; ratio = median over repeats of (lookup / reference timed alternately)")
    print(f"reference A: one dense matvec ({L * N}x{K})@({K},): {core[1] * 1e6:9.1f} us")
    for name, (t, _, ratio) in (("voxel_scores(voxel)  [numeric core]", core),
                                ("top_ans(voxel, n=10) [DataFrame]", top),
                                ("naive: mask raw t maps per click", nai)):
        print(f"  {name:38s} {t * 1e6:9.1f} us = {ratio:6.2f} x A")
    print(f"reference B: one dense matvec ({V}x{K})@({K},): {amap[1] * 1e3:7.2f} ms")
    for name, (t, _, ratio) in (("an_map(...)", amap), ("top_voxels(..., n=10) [DataFrame]", topv),
                                ("naive: mask raw t map per AN map", nai_map)):
        print(f"  {name:38s} {t * 1e3:9.2f} ms = {ratio:6.2f} x B")

if __name__ == "__main__":
    main()
