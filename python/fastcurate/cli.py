"""The ``fastcurate`` command-line tool.

Each stage module registers its own subcommands; this file only assembles them, so the tool
starts fast (heavy imports happen inside the subcommand that needs them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

from .errors import FastcurateError

__all__ = ["main", "build_parser"]


def _add_match(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "match",
        help="match captions against metadata entries (MetaCLIP substr_matching) and write the ids",
        description="Match the text column of Parquet files against metadata entries and write, per row, "
        "the ids of the entries it contains.",
    )
    p.add_argument("inputs", nargs="+", help="Parquet files")
    p.add_argument(
        "--metadata",
        default=None,
        help="metadata.json (JSON list) or a text file, one entry per line (default: the shipped WordNet 3.0 metadata)",
    )
    p.add_argument("--text-column", default=None, help="text column (default: TEXT, text, caption, ...)")
    p.add_argument("--mode", choices=["metaclip", "substring"], default="metaclip")
    p.add_argument("--ignore-case", action="store_true", help="ASCII case-insensitive matching")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--out", default=None, help="write a Parquet file with the matched ids per row")
    p.set_defaults(func=_run_match)


def _run_match(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .stages.curate.stage import TEXT_COLUMN_CANDIDATES
    from .kernels.matcher import Matcher
    from .io.atomic import pick_column

    t0 = time.perf_counter()
    from .metadata import load_metadata

    entries = load_metadata(args.metadata)  # None: the shipped WordNet 3.0 default
    m = Matcher(entries, mode=args.mode, case_sensitive=not args.ignore_case)
    t_build = time.perf_counter() - t0
    tables = []
    rows = matched_rows = pairs = 0
    t_match = 0.0
    for path in args.inputs:
        try:
            schema = pq.read_schema(path)
        except Exception as e:  # pyarrow raises several types for unreadable files
            raise FastcurateError(f"cannot read Parquet file {path}: {e}") from e
        col = pick_column(schema.names, args.text_column, TEXT_COLUMN_CANDIDATES, "text", path, "--text-column")
        texts = pq.read_table(path, columns=[col]).column(col)
        t1 = time.perf_counter()
        r = m.match(texts, threads=args.threads)
        t_match += time.perf_counter() - t1
        rows += len(r)
        matched_rows += int((r.counts() > 0).sum())
        pairs += len(r.ids)
        if args.out:
            tables.append(pa.table({"row": pa.array(range(len(r)), pa.int64()), "entry_ids": r.to_arrow()}))
    print(f"entries: {len(m):,} (built in {t_build:.2f}s)")
    print(f"rows: {rows:,}; rows with a match: {matched_rows:,} ({matched_rows / max(rows, 1):.1%}); matches: {pairs:,}")
    print(f"match time: {t_match:.3f}s ({rows / max(t_match, 1e-9):,.0f} rows/s)")
    if args.out:
        from .io.atomic import atomic_write_table

        atomic_write_table(pa.concat_tables(tables), Path(args.out))
        print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="fastcurate", description="Fast, exact curation of image-text pools.")
    parser.add_argument("--version", action="version", version=f"fastcurate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from .stages.curate import cli as curate_cli
    from .stages.embed import cli as embed_cli

    curate_cli.add_subcommands(sub)
    _add_match(sub)
    embed_cli.add_subcommands(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FastcurateError as e:
        print(f"fastcurate: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastcurate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
