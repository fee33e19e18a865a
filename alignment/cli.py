"""Command line: ``python -m alignment <command>``."""

from __future__ import annotations

import argparse
import os
import sys

from alignment.conventions import AN_KINDS, CONDITIONS, GROUP, MAP_METRICS, parse_layers
from alignment.models.base import POOLINGS


def cmd_models(args) -> int:
    from alignment.models import ARCHITECTURES

    rows = [("architecture", "branches", "layers (default size)", "weights")]
    for arch in ARCHITECTURES.values():
        rows.append((arch.name, ",".join(arch.branches), arch.layers, arch.weights))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
    print("\nPrefix any spec with 'random:' for random initialisation (e.g. random:clip:ViT-B-32, random:meter:tiny).")
    print("AN kinds: attn (default), qk, mlp, hidden (layer 0 = embeddings). "
          "Pooling: mean over real tokens (default) or cls (causal LMs: the last token).")
    return 0


def cmd_extract(args) -> int:
    from alignment.cache import Cache
    from alignment.data import load_dataset
    from alignment.features import FeatureRequest, an_timeseries

    dataset = load_dataset(args.dataset)
    cache = Cache(args.cache)
    layers = parse_layers(args.layers)
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
    from alignment.config import RunConfig
    from alignment.executor import PlanFailed
    from alignment.plan import run_config

    _use_scheduler(args.scheduler)
    config = RunConfig.load(args.config)
    try:
        plan = run_config(config, args.cache, progress=True, scheduler=args.scheduler)
    except PlanFailed as failed:
        return _report_failures(failed)
    print(f"{len(plan.requested)} analysis units up to date in {args.cache or 'cache'}")
    return 0


def _use_scheduler(scheduler: str):
    """Check ``--scheduler`` before anything is built or computed (a bad value: one line), and
    keep Dask's warnings only (it logs workers started, stopped, restarted at INFO)."""
    from alignment.executor import parse_scheduler

    parse_scheduler(scheduler)
    if scheduler != "sync":
        import logging

        logging.getLogger("distributed").setLevel(logging.WARNING)


def _report_failures(failed) -> int:
    """One line per failed unit on stderr; exit status 1 (the other units are stored)."""
    print(failed.text(), file=sys.stderr)
    print(f"{len(failed.failures)} unit(s) failed; the others are in the cache and a rerun computes only what is missing",
          file=sys.stderr)
    return 1


def cmd_demo(args) -> int:
    import time

    from alignment.demo import concept_demo_root, run_demo
    from alignment.executor import PlanFailed

    _use_scheduler(args.scheduler)
    start = time.perf_counter()
    if args.background:
        from alignment.background import run_background_demo

        defaults = vars(build_parser().parse_args(["demo"]))  # the options' own defaults, one home
        if any(getattr(args, name) != defaults[name] for name in defaults
               if name not in ("small", "cache", "background", "scheduler", "command", "func")):
            raise ValueError("--background builds the demo the app shows: only --small, --cache and --scheduler "
                             "go with it")
        status = run_background_demo(args.cache, small=args.small, scheduler=args.scheduler)
        print(status.text())
        return 0
    try:
        study = run_demo(args.cache, seed=args.seed, snr=args.snr, small=args.small, full=args.full,
                         n_subjects=args.subjects, space=args.space, n_trs=args.trs, scheduler=args.scheduler)
    except PlanFailed as failed:
        return _report_failures(failed)
    concepts = concept_demo_root(study.cache, args.seed, args.snr, args.small)
    print(f"demo ready in {time.perf_counter() - start:.1f} s: dataset {study.dataset.root}, concept dataset "
          f"{concepts}, results in {study.cache.root}")
    return 0


def cmd_validate(args) -> int:
    import json

    if args.dataset != "demo":
        return _validate_folder(args.dataset, args.json)
    from alignment.demo import concept_demo_study, concept_rsa_plan, run_demo, validation_plans
    from alignment.executor import PlanFailed
    from alignment.rsa_summary import plan_results
    from alignment.validation import Validation, validate_concept_demo, validate_demo

    _use_scheduler(args.scheduler)
    try:
        study = run_demo(args.cache, seed=args.seed, snr=args.snr, small=args.small, progress=not args.json,
                         plans=validation_plans(args.full), n_subjects=args.subjects, space=args.space,
                         n_trs=args.trs, scheduler=args.scheduler)
    except PlanFailed as failed:
        return _report_failures(failed)
    concepts = concept_demo_study(study.cache, args.seed, args.snr, args.small, read_only=True)
    results, _ = plan_results(concepts, concept_rsa_plan(args.small))
    result = Validation.combine(validate_demo(study), validate_concept_demo(concepts, results))
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(result.text())
    return 0 if result.passed else 1


def _validate_folder(path: str, as_json: bool) -> int:
    """Check a dataset folder (tables, frames as images, BOLD files) without computing anything."""
    import json

    from alignment.data import load_dataset

    dataset = load_dataset(path)  # an unreadable dataset.toml is one error line
    problems = dataset.validate(check_images=True)
    if as_json:
        print(json.dumps({"dataset": dataset.root, "problems": problems, "passed": not problems}))
    else:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s) in {dataset.root}" if problems else
              f"dataset OK: {dataset.root} ({len(dataset.subjects)} subjects, {len(dataset.runs)} runs)")
    return 1 if problems else 0


def cmd_convert(args) -> int:
    """Write a dataset (any registered kind) in the custom folder format."""
    from alignment.data.convert import convert

    subjects = [s for s in args.subjects.split(",") if s] if args.subjects else None
    out = convert(args.source, args.out, kind=args.kind, subjects=subjects, frame_format=args.frame_format,
                  force=args.force, progress=True)
    print(f"wrote {out}; check it with `python -m alignment validate --dataset {out}`")
    return 0


EXPORT_FORMATS = ("dscalar", "gifti", "csv", "png", "svg", "html")


def cmd_export(args) -> int:
    """Write one cached map (or its per-network table) to a file; never computes a result."""
    from alignment import summaries
    from alignment.data import DatasetError
    from alignment.export import StaticExportUnavailable, write_csv, write_dscalar, write_figure, write_gifti
    from alignment.pipeline import LayerKey

    # checked before anything is read, so a typo fails at once and in one line
    fmt = args.format.lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {args.format!r}; known: {', '.join(EXPORT_FORMATS)}")
    if args.metric not in MAP_METRICS:
        raise ValueError(f"unknown metric {args.metric!r}; known: {', '.join(MAP_METRICS)}")
    if not 0 < args.fdr_q < 1:
        raise ValueError(f"--fdr-q must be between 0 and 1, got {args.fdr_q:g}")
    if os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a folder; give a file path (gifti: a file name prefix)")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise ValueError(f"output folder {folder} does not exist")

    try:
        study = summaries.open_study(args.dataset, args.cache, demo_small=args.small)
    except DatasetError:
        if args.dataset != "demo":
            raise
        # the bare "folder not found" would name a folder inside the cache the user never chose
        what, flag = ("small demo", " --small") if args.small else ("demo", "")
        raise DatasetError(f"the {what} is not in the cache; build it with `python -m alignment demo{flag}`") from None
    subjects = list(study.dataset.subjects)
    subject = args.subject.removeprefix("sub-") if args.subject else (
        GROUP if len(subjects) >= 3 else subjects[0])
    if subject == GROUP and len(subjects) < 2:
        raise ValueError("a group map needs at least 2 subjects; give --subject")
    if subject != GROUP and subject not in subjects:
        raise ValueError(f"unknown subject {subject!r}; the dataset has {', '.join(subjects)} (or 'group')")

    key = LayerKey(args.model, args.branch, args.layer, args.kind, args.condition)
    # "best layer", "SI" and "cross-modal gain" look up which other layers / branches exist
    avail = summaries.available(study, demo=args.dataset == "demo")
    name = f"{args.metric} {key.label()} {'group' if subject == GROUP else 'sub-' + subject}"
    try:
        if fmt == "csv":
            atlas = _export_atlas(args.atlas, study.dataset)
            table = summaries.network_table(study, subject, key, args.metric, args.fdr_q, atlas, avail)
            written = [write_csv(args.out, table)]
        else:
            m = summaries.metric_map(study, subject, key, args.metric, args.fdr_q, avail, compute_ceiling=False)
            if fmt == "dscalar":
                written = [write_dscalar(args.out, m.values, [name])]
            elif fmt == "gifti":
                written = write_gifti(args.out, m.values, [name])
            else:
                from alignment.figures import surface_figure

                atlas = _export_atlas(args.atlas, study.dataset)
                fig = surface_figure(m.values, cmap=m.cmap, symmetric=m.symmetric, vmin=m.vmin, vmax=m.vmax,
                                     title=name, outlines=atlas.labels, colorbar_title=m.label)
                written = [write_figure(args.out, fig, fmt)]  # html: standalone, plotly.js embedded
    except (summaries.NotCached, StaticExportUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_export_rsa(args) -> int:
    """Write the concept-RSA results a run config computed; never computes one."""
    from alignment.config import RunConfig
    from alignment.data import load_dataset
    from alignment.pipeline import NotCached, Study
    from alignment.rsa_summary import export_rsa

    fmt = None if args.format == "none" else args.format
    config = RunConfig.load(args.config)
    if config.rsa is None:
        raise ValueError(f"{args.config}: no [rsa] table; nothing to export")
    if os.path.isfile(args.out):
        raise ValueError(f"--out {args.out} is a file; give a folder")
    study = Study(load_dataset(config.dataset), args.cache, config.options, read_only=True)
    try:
        written = export_rsa(study, config.rsa, args.out, fmt, config.subjects or ())
    except NotCached as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def _export_atlas(name: str | None, dataset):
    """The atlas ``name`` for a dataset: one it offers (:func:`alignment.atlases.atlas_choices`,
    the first by default), another built-in, or a file."""
    from alignment.atlases import atlas_choices, load_atlas, open_atlas

    choices = atlas_choices(dataset.space, dataset.root)
    name = next(iter(choices)) if name is None else name
    if name in choices:
        return open_atlas(name, dataset.space, dataset.root)
    return load_atlas(name, space=dataset.space)


def _demo_options(p) -> None:
    from alignment.simulation import DEFAULT_SNR, DEMO_SPACES

    p.add_argument("--seed", type=int, default=0, help="seed of the simulated experiment (default 0)")
    p.add_argument("--snr", type=float, default=DEFAULT_SNR, help=f"signal-to-noise of planted voxels (default {DEFAULT_SNR}; 0 plants nothing)")
    p.add_argument("--small", action="store_true", help="a small, fast dataset (fewer TRs and subjects; for tests)")
    p.add_argument("--subjects", type=int, default=None, help="number of simulated subjects (default 3; 2 with --small)")
    p.add_argument("--trs", type=int, default=None, metavar="N",
                   help="TRs per run (default 150; 64 with --small; at least 40)")
    p.add_argument("--space", choices=DEMO_SPACES, default=DEMO_SPACES[0],
                   help="surface space of the simulated BOLD (fsaverage5: GIfTI, with its network atlas in the "
                        "dataset folder)")
    p.add_argument("--full", action="store_true",
                   help="every layer of every demo model (several times longer; default: the planted layers, "
                        "a distractor layer and the baselines)")


def _scheduler_option(p: argparse.ArgumentParser):
    p.add_argument("--scheduler", default="sync", metavar="ADDRESS",
                   help="where the units run: sync (here, one after the other; default), local:N (a Dask "
                        "LocalCluster of N worker processes) or a Dask scheduler address (tcp://host:8786)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alignment",
        description="Neuron-level alignment of vision-language models with fMRI during movie watching.",
    )
    parser.add_argument("--cache", default=os.environ.get("ALIGNMENT_CACHE"),
                        help="cache folder (default: $ALIGNMENT_CACHE or ./cache)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        # also accepted after the command name (`demo --cache DIR`); overrides the global one
        sp.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="cache folder")
        return sp

    p = command("models", "list model architectures, their branches, layers and how to give weights")
    p.set_defaults(func=cmd_models)

    p = command("extract", "extract AN time series for a dataset into the cache")
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

    p = command("run", "compute every analysis a TOML config names into the cache")
    p.add_argument("config", help="TOML file: [study], [[models]], [analyses], [options] (see README)")
    _scheduler_option(p)
    p.set_defaults(func=cmd_run)

    p = command("demo", "build the simulated demo experiment and analyse it")
    _demo_options(p)
    _scheduler_option(p)
    p.add_argument("--background", action="store_true",
                   help="as the app runs it: report progress to a status file in the cache that the app reads, "
                        "and exit at once if another process is building this demo")
    p.set_defaults(func=cmd_demo)

    p = command("validate", "compute what the check reads (if missing) and compare the demo results with the planted "
                            "ground truth; or, with --dataset FOLDER, check a dataset folder without computing anything")
    p.add_argument("--dataset", default="demo",
                   help="'demo' (default) or a dataset folder to check: tables, frames, BOLD files")
    _demo_options(p)
    _scheduler_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=cmd_validate)

    p = command("convert", "write a dataset (HCP 7T tree, movie folder, any registered kind) in the custom folder "
                           "format, to inspect what the models will see")
    p.add_argument("source", help="the dataset: an HCP tree or hcp7t.toml, a movie folder (movie.toml), a folder, ...")
    p.add_argument("out", help="the folder to write (must not exist or be empty, unless --force)")
    p.add_argument("--kind", help="the source's registered kind: hcp7t, movie, folder, ... (default: detected)")
    p.add_argument("--subjects", help="comma-separated subject ids (default: all)")
    p.add_argument("--frame-format", default="png",
                   help="image format of the frames: png (lossless, default) or jpg (smaller)")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(func=cmd_convert)

    p = command("export", "export a cached map (CIFTI dscalar, GIfTI, PNG/SVG/HTML) or its network table (CSV)")
    p.add_argument("--dataset", default="demo",
                   help="'demo' (the simulated demo in the cache, default) or a dataset folder")
    p.add_argument("--small", action="store_true", help="the small demo (built by `demo --small`)")
    p.add_argument("--model", required=True, help="model spec as computed (e.g. clip:ViT-B-32@openai)")
    p.add_argument("--branch", required=True, help="branch (see `models`)")
    p.add_argument("--layer", type=int, required=True, help="layer index")
    p.add_argument("--kind", choices=AN_KINDS, default="attn")
    p.add_argument("--condition", choices=CONDITIONS, default="image+text")
    p.add_argument("--subject",
                   help="subject id or 'group' (default: group with >= 3 subjects, else the first subject)")
    p.add_argument("--metric", default="r", help=f"one of: {', '.join(repr(m) for m in MAP_METRICS)} (default r)")
    p.add_argument("--fdr-q", type=float, default=0.05, help="FDR level for significance (default 0.05)")
    p.add_argument("--atlas", default=None,
                   help="networks of the csv table and figure outlines: ca, yeo7, yeo17, mmp (HCP-MMP1.0 parcels; "
                        "fsLR32k), an atlas of the dataset's atlases/ folder, none (whole brain) or a file "
                        "(default: ca, or the dataset's first atlas)")
    p.add_argument("--format", required=True, help=f"one of: {', '.join(EXPORT_FORMATS)}")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="output file, replaced if it exists (gifti: prefix of PATH.L.func.gii and PATH.R.func.gii)")
    p.set_defaults(func=cmd_export)

    p = command("export-rsa", "export the concept-RSA results of a run config: RDMs (.npy), rho tables (CSV), "
                              "layer-curve figures")
    p.add_argument("config", help="the TOML run config with an [rsa] table that was run")
    p.add_argument("--out", required=True, metavar="FOLDER", help="output folder (created; files replaced)")
    p.add_argument("--format", choices=("png", "svg", "html", "none"), default="png",
                   help="figures: png (default), svg, html, or none")
    p.set_defaults(func=cmd_export_rsa)

    from alignment.cli_cache import add_cli

    add_cli(sub)
    return parser


def _one_line(err: BaseException) -> str:
    """The message of an expected error, on one line."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        # "[Errno 30] Read-only file system: 'cache/ans'" reads better as "cache/ans: Read-only file system"
        names = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        text = f"{names}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Expected errors (bad input: configs, datasets, model specs, options; files that cannot be
    # read or written) end in one line and exit status 1; anything else is a bug and keeps its
    # traceback. ModelError, DatasetError and ConfigError are ValueErrors; KeyboardInterrupt exits 130.
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished results stay in the cache and a rerun resumes", file=sys.stderr)
        return 130
