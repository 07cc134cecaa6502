"""``fastcurate match``: the matcher alone, as a stage."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, run_from_args

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "match",
        help="add the ids of the metadata entries each caption contains (MetaCLIP substr_matching)",
        description="Match every caption against the metadata entries and write each row with its entry_ids "
        "(no row is dropped), plus entry_counts.npy. See docs/curate.md.",
    )
    add_runner_args(p, roles=("text",))
    s = p.add_argument_group("matching")
    s.add_argument("--metadata", default=None, metavar="FILE",
                   help="metadata.json (a JSON list) or a text file, one entry per line "
                        "(default: the shipped WordNet 3.0 metadata)")
    s.add_argument("--mode", choices=["metaclip", "substring"], default="metaclip",
                   help="metaclip: MetaCLIP's spaced-token semantics (default); substring: plain substrings")
    s.add_argument("--ignore-case", action="store_true", help="ASCII case-insensitive matching")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    return [f"entries matched: {s['entries_matched']:,} of {s['n_entries']:,}; matches: {s['matches']:,}"]


def _run(args: argparse.Namespace) -> int:
    from .stage import MatchStage

    return run_from_args(args, MatchStage(args.metadata, mode=args.mode, case_sensitive=not args.ignore_case),
                         _describe)
