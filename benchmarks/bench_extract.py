"""AN extraction throughput against a bare forward pass of the same model.

    python benchmarks/bench_extract.py [--model random:clip:ViT-B-32] [--n 64] [--batch 16]

Both sides run the same prepared batches through the same adapter forward; the hooked side
registers pooling hooks on every layer of every branch. Figures are samples/s (median of
repeats) and the overhead ratio hooked / bare, measured in one process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alignment.extract import extract_ans, image_tensor
from alignment.models import load_model
from alignment.models.base import capture


def _stimuli(n):
    rng = np.random.RandomState(0)
    frames = [Image.fromarray(rng.randint(0, 255, (240, 320, 3), dtype=np.uint8)) for _ in range(n)]
    words = "a red ball dog runs city street night car blue sky tree".split()
    captions = [" ".join(rng.choice(words, size=rng.randint(4, 16))) for _ in range(n)]
    return frames, captions


def _timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:clip:ViT-B-32")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kinds", default="attn,qk,mlp")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    adapter = load_model(args.model)
    frames, captions = _stimuli(args.n)
    branches = list(adapter.branches)
    batches = []
    for start in range(0, args.n, args.batch):
        idx = list(range(start, min(args.n, start + args.batch)))
        images = image_tensor(adapter, frames, idx) if adapter.needs_images else None
        batches.append(adapter.prepare(images, [captions[i] for i in idx], branches))

    def bare():
        for batch in batches:
            adapter.forward(batch, branches)

    def hooked(kind):
        with capture(adapter, {b: None for b in branches}, kind) as store:
            for batch in batches:
                store.batch = batch
                adapter.forward(batch, branches)

    kinds = args.kinds.split(",")
    bare()  # warm-up
    # interleaved repeats, so load on the machine hits both sides alike
    times = {"bare": [], **{k: [] for k in kinds}}
    for _ in range(args.repeats):
        times["bare"].append(_timed(bare, 1))
        for kind in kinds:
            times[kind].append(_timed(lambda: hooked(kind), 1))
    t_bare = statistics.median(times["bare"])
    print(f"model {args.model}: {args.n} stimuli, batch {args.batch}, all layers of {branches}")
    print(f"bare forward          {args.n / t_bare:8.1f} samples/s")
    for kind in kinds:
        ratios = [h / b for h, b in zip(times[kind], times["bare"])]
        print(f"hooked forward ({kind:4}) {args.n / statistics.median(times[kind]):8.1f} samples/s   "
              f"overhead {statistics.median(ratios) - 1:+.1%} (median of paired ratios)")
    t_full = _timed(lambda: extract_ans(adapter, frames, captions, batch_size=args.batch), max(1, args.repeats // 2))
    print(f"extract_ans (attn, incl. image preprocessing) {args.n / t_full:8.1f} samples/s "
          f"({t_full / t_bare:.2f}x bare forward time)")


if __name__ == "__main__":
    main()
