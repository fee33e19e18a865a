"""Command line: ``python -m alignment <command>``."""

from __future__ import annotations

import argparse
import os
import sys

from alignment.models.base import AN_KINDS, POOLINGS, ModelError

CONDITIONS = ("image+text", "image", "text")


def _parse_layers(text: str | None):
    if text in (None, "", "all"):
        return None
    layers = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            layers += list(range(int(lo), int(hi) + 1))
        else:
            layers.append(int(part))
    return layers


def cmd_models(args) -> int:
    from alignment.models import ARCHITECTURES

    rows = [("architecture", "branches", "layers (default size)", "weights")]
    for arch in ARCHITECTURES.values():
        rows.append((arch.name, ",".join(arch.branches), arch.layers, arch.weights))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
    print("\nPrefix any spec with 'random:' for random initialisation (e.g. random:clip:ViT-B-32, random:meter:tiny).")
    print("AN kinds: attn (default), qk, mlp. Pooling: mean over real tokens (default) or cls.")
    return 0


def cmd_extract(args) -> int:
    from alignment.cache import Cache
    from alignment.data import load_dataset
    from alignment.features import FeatureRequest, an_timeseries

    dataset = load_dataset(args.dataset)
    cache = Cache(args.cache)
    layers = _parse_layers(args.layers)
    for spec in args.model:
        targets = None
        if args.branches or layers is not None:
            from alignment.models import ARCHITECTURES, ModelSpec

            arch = ARCHITECTURES.get(ModelSpec.parse(spec).arch)
            branches = args.branches.split(",") if args.branches else list(arch.branches if arch else [])
            targets = {b: layers for b in branches}
        for condition in args.condition or ["image+text"]:
            request = FeatureRequest.make(
                spec, targets, kind=args.kind, condition=condition, pooling=args.pooling, blank=args.blank
            )
            entry = an_timeseries(dataset, request, cache, device=args.device, batch_size=args.batch_size, progress=True)
            shapes = {name: entry.arrays[name].shape for name in entry.arrays if name != "runs"}
            first = next(iter(shapes.values())) if shapes else ()
            print(f"{spec} [{args.kind}, {condition}]: {len(shapes)} layer arrays of shape {first} -> {entry.path}")
    return 0


def cmd_run(args) -> int:
    from alignment.pipeline import RunConfig, run_config

    config = RunConfig.load(args.config)
    done = run_config(config, args.cache, progress=True)
    print(f"{len(done)} analysis units up to date in {args.cache or 'cache'}")
    return 0


def cmd_demo(args) -> int:
    import time

    from alignment.demo import run_demo

    start = time.perf_counter()
    study = run_demo(args.cache, seed=args.seed, snr=args.snr, small=args.small)
    print(f"demo ready in {time.perf_counter() - start:.1f} s: dataset {study.dataset.root}, results in {study.cache.root}")
    return 0


def cmd_validate(args) -> int:
    import json

    from alignment.demo import run_demo, validate_demo

    study = run_demo(args.cache, seed=args.seed, snr=args.snr, small=args.small, progress=not args.json)
    result = validate_demo(study, small=args.small)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        for name, (op, limit) in result.thresholds.items():
            value = result.metrics[name]
            print(f"{name:26s} {value:7.3f}   (needs {op} {limit})")
        print("PASSED" if result.passed else "FAILED")
    return 0 if result.passed else 1


def _demo_options(p) -> None:
    from alignment.data.demo import DEFAULT_SNR

    p.add_argument("--seed", type=int, default=0, help="seed of the simulated experiment (default 0)")
    p.add_argument("--snr", type=float, default=DEFAULT_SNR, help=f"signal-to-noise of planted voxels (default {DEFAULT_SNR}; 0 plants nothing)")
    p.add_argument("--small", action="store_true", help="a small, fast configuration (fewer TRs and subjects, planted models only)")


def _not_yet(name: str, issue: str):
    def handler(args) -> int:
        print(f"'{name}' is not available yet: {issue}", file=sys.stderr)
        return 2
    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alignment",
        description="Neuron-level alignment of vision-language models with fMRI during movie watching.",
    )
    parser.add_argument("--cache", default=os.environ.get("ALIGNMENT_CACHE"),
                        help="cache folder (default: $ALIGNMENT_CACHE or ./cache)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("models", help="list model architectures, their branches, layers and how to give weights")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("extract", help="extract AN time series for a dataset into the cache")
    p.add_argument("--dataset", required=True, help="dataset folder (see README: custom dataset format)")
    p.add_argument("--model", action="append", required=True, help="model spec, repeatable (e.g. clip:ViT-B-32@openai)")
    p.add_argument("--branches", help="comma-separated branches (default: all)")
    p.add_argument("--layers", help="layers: all | 0,3,5 | 2-7 (default: all)")
    p.add_argument("--kind", choices=AN_KINDS, default="attn")
    p.add_argument("--condition", action="append", choices=CONDITIONS, help="stimulus condition, repeatable (default image+text)")
    p.add_argument("--pooling", choices=POOLINGS, default="mean")
    p.add_argument("--blank", choices=("grey", "noise"), default="grey", help="image shown when the image is removed")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("run", help="compute every analysis a TOML config names into the cache")
    p.add_argument("config", help="TOML file: [study], [[models]], [analyses], [options] (see README)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="build the simulated demo experiment and analyse it")
    _demo_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("validate", help="compare computed demo results with the planted ground truth")
    _demo_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("export", help="export maps (CIFTI dscalar, GIfTI) and tables (CSV)")
    p.set_defaults(func=_not_yet("export", "needs the analyses pipeline"))

    from alignment.cache import add_cli

    add_cli(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ModelError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished results stay in the cache and a rerun resumes", file=sys.stderr)
        return 130
