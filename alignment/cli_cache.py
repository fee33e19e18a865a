"""``python -m alignment cache ls|du|rm``: the command line of the result cache.

The store itself (:class:`alignment.cache.Cache`) prints nothing; this module formats its
listings and disk usage and parses the ``cache`` subcommand.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from typing import Any

from alignment.cache import ENV_VAR, STALE_SECONDS, Cache, EntryInfo
from alignment.catalog import Catalog

__all__ = [
    "add_cli",
    "format_du",
    "format_entries",
    "format_size",
    "main",
    "parse_duration",
    "run_cli",
]




def format_size(n: int) -> str:
    """Human-readable size with decimal units: ``512 B``, ``1.2 MB``, ``340 GB``."""
    n = int(n)
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000.0
        if value < 999.95 or unit == "PB":
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n} B"  # pragma: no cover


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_entries(entries: list[EntryInfo], *, full_keys: bool = False) -> str:
    """Table of entries for ``cache ls`` (stage, key, size, created in local time, description).

    Parameters
    ----------
    entries : list of EntryInfo
    full_keys : bool
        Show the full 64-character keys instead of their first 16 characters.
    """
    if not entries:
        return "(no cache entries)"
    rows = [
        [
            e.stage,
            e.key if full_keys else e.key[:16],
            format_size(e.size),
            e.created.astimezone().strftime("%Y-%m-%d %H:%M"),
            e.description,
        ]
        for e in entries
    ]
    total = sum(e.size for e in entries)
    table = _table(["STAGE", "KEY", "SIZE", "CREATED", "DESCRIPTION"], rows, right={2})
    return f"{table}\n{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {format_size(total)}"


def format_records(records: list, *, full_keys: bool = False) -> str:
    """Table of the catalog for ``cache ls``: stage, key, subject, size, created (local time),
    what the result is (its unit, or its description); ``full_keys`` also shows full keys and
    the options each result was computed with."""
    if not records:
        return "(no cache entries)"
    rows = []
    for r in records:
        row = [r.stage, r.key if full_keys else r.key[:16], r.subject or "", format_size(r.info.size),
               r.info.created.astimezone().strftime("%Y-%m-%d %H:%M"), r.label() or r.info.description]
        if full_keys:
            row.append(", ".join(f"{k}={v}" for k, v in sorted(r.options.items())))
        rows.append(row)
    header = ["STAGE", "KEY", "SUBJECT", "SIZE", "CREATED", "WHAT"] + (["OPTIONS"] if full_keys else [])
    total = sum(r.info.size for r in records)
    table = _table(header, rows, right={3})
    return f"{table}\n{len(records)} entr{'y' if len(records) == 1 else 'ies'}, {format_size(total)}"


def format_du(usage: Mapping[str, int]) -> str:
    """Table of :meth:`Cache.disk_usage` for ``cache du`` (stages, then the total)."""
    rows = [[st, format_size(b)] for st, b in sorted(usage.items()) if st != "total"]
    rows.append(["total", format_size(usage.get("total", sum(b for s, b in usage.items() if s != "total")))])
    return _table(["STAGE", "SIZE"], rows, right={1})


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> float:
    """Parse ``90``, ``90s``, ``30m``, ``12h``, ``7d`` or ``2w`` into seconds."""
    m = _DURATION_RE.match(str(text).lower())
    if m is None:
        raise ValueError(f"invalid duration {text!r}: use e.g. 90s, 30m, 12h, 7d, 2w")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return float(m.group(1)) * unit


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``cache`` subcommand (``ls``, ``du``, ``rm``) on an argparse subparsers object.

    The handler is set as the parser default ``func`` (call ``args.func(args)``); it is also
    available as :func:`run_cli`. The cache root comes from ``args.cache`` when set (a global
    ``--cache DIR`` option; the subcommand accepts ``--cache DIR`` too), else the default root.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The object returned by ``parser.add_subparsers()``.

    Returns
    -------
    argparse.ArgumentParser
        The ``cache`` parser.
    """
    p = subparsers.add_parser(
        "cache",
        help="list, measure and clean cached results",
        description="Inspect and clean the content-addressed result cache.",
    )
    # --cache is accepted at every level; SUPPRESS keeps a level that does not get it from
    # overwriting one that did (e.g. a global --cache given before the subcommand).
    root_opt = argparse.ArgumentParser(add_help=False)
    root_opt.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS,
                          help=f"cache folder (default: ${ENV_VAR}, else ./cache)")
    p.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS,
                   help=f"cache folder (default: ${ENV_VAR}, else ./cache)")
    sub = p.add_subparsers(dest="cache_command", metavar="{ls,du,rm}")
    sub.required = True

    ls = sub.add_parser("ls", parents=[root_opt], help="list entries", description="List cache entries.")
    ls.add_argument("--stage", help="only this stage")
    ls.add_argument("-l", "--long", action="store_true", help="show full keys")

    sub.add_parser("du", parents=[root_opt], help="disk usage per stage", description="Disk usage per stage.")

    rm = sub.add_parser(
        "rm",
        parents=[root_opt],
        help="remove entries",
        description="Remove cache entries matching all given selectors. With no selector, "
        "nothing is removed unless --all is given.",
    )
    rm.add_argument("--stage", help="entries of this stage")
    rm.add_argument("--key", metavar="PREFIX", help="entries whose key starts with PREFIX")
    rm.add_argument("--older-than", metavar="AGE", help="entries created more than AGE ago (30m, 12h, 7d)")
    rm.add_argument("--stale", action="store_true",
                    help="only leftovers: abandoned temporary writes, corrupt entries moved aside")
    rm.add_argument("--all", action="store_true", help="allow removing everything (no selector)")
    rm.add_argument("-n", "--dry-run", action="store_true", help="show what would be removed")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Handler of the ``cache`` subcommand; prints to stdout, errors to stderr.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a usage error (e.g. ``rm`` without selector or ``--all``).
    """
    cache = Cache(getattr(args, "cache", None) or None)
    cmd = getattr(args, "cache_command", None)
    try:
        if cmd == "ls":
            catalog = Catalog(cache, None if args.stage is None else [args.stage])
            print(format_records(catalog.records, full_keys=args.long))
            return 0
        if cmd == "du":
            print(f"cache: {cache.root}")
            print(format_du(cache.disk_usage()))
            return 0
        if cmd == "rm":
            return _run_rm(cache, args)
        print("error: expected one of: cache ls, cache du, cache rm", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_rm(cache: Cache, args: argparse.Namespace) -> int:
    older = parse_duration(args.older_than) if args.older_than else None
    has_selector = bool(args.stage or args.key or older is not None or args.stale)
    if not has_selector and not args.all:
        print(
            "error: refusing to remove the whole cache: select with --stage, --key, --older-than "
            "or --stale, or pass --all",
            file=sys.stderr,
        )
        return 2
    if args.stale and args.key:
        print("error: --stale removes leftovers, which have no key; drop --key", file=sys.stderr)
        return 2
    removed_entries = removed_stale = 0
    if not args.stale:  # --stale alone means leftovers only
        if args.dry_run:
            selected = cache.entries(args.stage, args.key, older)
            print(format_entries(selected))
            print(f"would remove {len(selected)} entr{'y' if len(selected) == 1 else 'ies'} (dry run)")
            return 0
        removed_entries = cache.remove(args.stage, args.key, older)
    if args.stale or args.all:
        if args.dry_run:
            print("would remove stale leftovers (dry run)")
            return 0
        stale_age = older if (args.stale and older is not None) else STALE_SECONDS
        removed_stale = cache.remove_stale(args.stage, stale_age)
    print(f"removed {removed_entries} entr{'y' if removed_entries == 1 else 'ies'}"
          + (f" and {removed_stale} stale leftover(s)" if (args.stale or args.all) else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m alignment.cli_cache ls|du|rm ...``."""
    parser = argparse.ArgumentParser(prog="python -m alignment.cli_cache")
    parser.add_argument("--cache", metavar="DIR", default=None, help="cache folder")
    add_cli(parser.add_subparsers(dest="command", required=True))
    # Accept `python -m alignment.cli_cache ls` as well as `... cache ls`.
    argv = list(sys.argv[1:] if argv is None else argv)
    if "cache" not in argv:
        i = next((j for j, a in enumerate(argv) if a in ("ls", "du", "rm")), len(argv))
        argv.insert(i, "cache")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
