"""What one full HCP 7T subject costs to fit: one unit of each analysis, timed on HCP's run
lengths at reduced numbers of grayordinates, extrapolated to 91282.

    python benchmarks/bench_hcp_subject.py [--vertices 2048 8192] [--ans 768] [--device cpu]

An in-memory dataset with HCP's four runs (921, 918, 915, 901 TRs at TR 1 s, a 20 s rest at
the start, the test-retest montage of 84 s closing every run) and random BOLD on V
grayordinates; the model ANs are random (T, N) arrays (N = 768, the width of a base model's
layer), so no model runs: feature extraction is measured by ``bench_extract.py``. Each stage's
compute function runs once per V with the default options; the time of a unit at 91282
grayordinates is extrapolated from a straight line through the measured V's (the fits cost
a + b·V: the ANs' decompositions do not grow with V, the per-voxel work does). Printed: seconds
per unit at each V and at 91282, and the total for the units per subject of
``configs/seed_paper.toml`` (counted by tests/test_seed_config.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alignment.data.hcp import HCP_RUNS  # noqa: E402
from alignment.keys import Baselines, BandsKey, IntegrationKey, LayerKey, LesionKey, Options  # noqa: E402
from alignment.pipeline import Study  # noqa: E402
from alignment.spaces import SPACE_SIZES  # noqa: E402
from alignment.stages import STAGES, Unit  # noqa: E402
from alignment.timing import REST, Timeline  # noqa: E402

#: units per subject of configs/seed_paper.toml, by analysis (tests/test_seed_config.py)
SEED_UNITS = {"encoding": 107, "neuron_mapping": 83, "lesion": 59, "ceiling": 1, "variance_partition": 12,
              "specialization": 12, "integration": 12, "crossmodal": 12}
REST_S, REPEAT_S = 20, 84


class SyntheticHCP:
    """HCP's runs and timing with random BOLD on ``n_vertices`` grayordinates (in memory)."""

    kind, name, space, sample_unit, tr = "synthetic", "synthetic HCP", "fsLR32k", "TR", 1.0
    root = "<memory>"

    def __init__(self, n_vertices: int):
        self.n_vertices = n_vertices
        self.runs = [r.id for r in HCP_RUNS]
        self.n_trs = {r.id: r.n_trs for r in HCP_RUNS}
        self.subjects = ["01"]

    def timeline(self, run):
        n = self.n_trs[run]
        seg = [REST if t < REST_S else "testretest" if t >= n - REPEAT_S else f"{run}_clip" for t in range(n)]
        return Timeline(run, self.tr, [None] * n, [f"{run} {t}" if s != REST else "" for t, s in enumerate(seg)], seg)

    def timelines(self):
        return [self.timeline(r) for r in self.runs]

    def run_index(self):
        return np.repeat(np.arange(len(self.runs)), [self.n_trs[r] for r in self.runs])

    def bold(self, subject, run, nan_policy="raise"):
        seed = self.runs.index(run)
        return np.random.default_rng(seed).standard_normal((self.n_trs[run], self.n_vertices)).astype(np.float32)

    def bold_all(self, subject, runs=None, nan_policy="raise"):
        runs = self.runs if runs is None else list(runs)
        return np.concatenate([self.bold(subject, r) for r in runs]), self.run_index()

    def fingerprint(self, subjects=None, *, include_bold=True, content=False):
        return f"{self.n_vertices:064d}"

    def validate(self, subjects=None):
        return []

    def load_frame(self, ref):
        raise NotImplementedError


def _peak_memory() -> str:
    """Peak resident memory of this process so far (and of the GPU, when one is used)."""
    import resource

    text = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.1f} GB"
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated():
        text += f", peak GPU {torch.cuda.max_memory_allocated() / 2 ** 30:.1f} GB"
    return text


def time_units(n_vertices: int, n_ans: int, device: str, cache: str, only=None) -> dict[str, float]:
    """Seconds of one unit of each analysis (or of those in ``only``) at ``n_vertices``."""
    study = Study(SyntheticHCP(n_vertices), cache, Options(), device=device)
    T = int(study.runs.size)
    rng = np.random.default_rng(0)
    ans = {}

    def raw_ans(key):  # random ANs per (model, branch, layer, condition)
        if key not in ans:
            ans[key] = rng.standard_normal((T, n_ans)).astype(np.float32)
        return ans[key]

    study.raw_ans = raw_ans
    study.bold("01")  # loaded once, as in a plan (one subject's BOLD in memory)
    vlm = LayerKey("vlm", "cross_image", 0)
    bands = BandsKey("clip", ("image", "text"), 0)
    times = {}

    def run(name, stage, target, inputs):
        if only and name not in only:
            return None
        start = time.perf_counter()
        arrays, _ = STAGES[stage].compute(study, Unit(stage, target, "01"), inputs)
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
        print(f"  V={n_vertices} {stage}: {time.perf_counter() - start:.1f} s, {_peak_memory()}", flush=True)
        return arrays

    enc = run("encoding", "encoding", vlm, {})
    atoms = run("neuron_mapping", "atoms", vlm, {})
    if atoms is not None:
        run("neuron_mapping", "glm", vlm, {"atoms": atoms})
    if enc is not None:
        run("lesion", "lesion", LesionKey(vlm), {"encoding": enc})
    run("ceiling", "ceiling", None, {})
    run("variance_partition", "variance", bands, {})
    run("specialization", "specialization", bands, {})
    run("crossmodal", "crossmodal", vlm, {})
    fixed = Baselines("vit", "roberta", image_layer=0, text_layer=0)
    meta = {"image_ans": SimpleNamespace(meta={"branches": {"image": [0]}}),
            "text_ans": SimpleNamespace(meta={"branches": {"text": [0]}})}
    run("integration", "integration", IntegrationKey(vlm, fixed), meta)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vertices", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--ans", type=int, default=768, help="ANs per layer (768: a base model)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (torch ridge fits)")
    ap.add_argument("--only", nargs="+", choices=tuple(SEED_UNITS), help="time these analyses only")
    args = ap.parse_args(argv)
    import alignment.stages  # noqa: F401 - registers every stage

    full = SPACE_SIZES["fsLR32k"]
    with tempfile.TemporaryDirectory() as cache:
        runs = {v: time_units(v, args.ans, args.device, cache, args.only) for v in args.vertices}
    vs = np.array(args.vertices, float)
    print(f"one HCP subject: {sum(r.n_trs for r in HCP_RUNS)} TRs, {args.ans} ANs per layer, device {args.device}")
    print(f"{'analysis':20s}" + "".join(f"{f'V={v}':>10s}" for v in args.vertices) + f"{'V=' + str(full):>12s}"
          + f"{'units':>7s}{'hours':>8s}")
    total = 0.0
    print("\n".join(f"(not timed: {name})" for name in SEED_UNITS if name not in runs[args.vertices[0]]))
    for name in runs[args.vertices[0]]:
        t = np.array([runs[v][name] for v in args.vertices])
        if len(vs) > 1:
            slope, icpt = np.polyfit(vs, t, 1)
            at_full = max(icpt, 0.0) + max(slope, 0.0) * full
        else:
            at_full = t[0] * full / vs[0]  # proportional: an upper bound
        hours = at_full * SEED_UNITS[name] / 3600
        total += hours
        print(f"{name:20s}" + "".join(f"{x:10.1f}" for x in t) + f"{at_full:12.1f}{SEED_UNITS[name]:7d}{hours:8.1f}")
    print(f"configs/seed_paper.toml, one subject, fits of the analyses timed: {total:.1f} hours")


if __name__ == "__main__":
    main()
