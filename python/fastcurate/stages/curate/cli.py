"""`fastcurate curate` and `fastcurate metadata build` (registered by fastcurate.cli).

Each subcommand sets ``func``: the caller runs ``sys.exit(args.func(args))``. Errors that
fastcurate raises on purpose print as one line ``fastcurate: error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional

__all__ = ["add_subcommands", "main", "format_summary"]


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {s}")
    return v


def add_subcommands(subparsers: Any) -> None:
    """Register ``curate`` and ``metadata build`` on an argparse subparsers object."""
    c = subparsers.add_parser(
        "curate",
        help="MetaCLIP curation of Parquet shards: match, count, balance, write the subset",
        description="Match every caption against the metadata, count entries over all shards, and keep a "
        "balanced subset (MetaCLIP). Two streaming passes; resumable; outputs in --out.",
    )
    c.add_argument("inputs", nargs="+", metavar="INPUT", help="Parquet files, directories or globs")
    c.add_argument("--out", required=True, help="output directory (resumes a killed run of the same command)")
    c.add_argument("--metadata", default=None, help="metadata.json or a text file, one entry per line "
                   "(default: the shipped WordNet 3.0 metadata)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--t", type=float, default=None, help="threshold t (default 20000)")
    g.add_argument("--p", type=float, default=None, help="tail portion p, converted to t as MetaCLIP does")
    g.add_argument("--target-size", type=float, default=None, help="pick t so that the expected output size is N")
    c.add_argument("--seed", type=int, default=0, help="seed of the per-sample draw (default 0)")
    c.add_argument("--text-column", default=None, help="caption column (default: TEXT, caption, text or txt)")
    c.add_argument("--id-column", default=None, help="sample id column (default: uid, key, URL or url)")
    c.add_argument("--threads", type=_positive_int, default=None, help="threads (default: all cores)")
    c.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="on a bad shard: stop (raise) or skip it and record it in stats.json")
    c.add_argument("--batch-size", type=_positive_int, default=131072, help="rows per record batch")
    c.add_argument("--overwrite", action="store_true", help="discard a different run found in --out")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.add_argument("--no-plot", action="store_true", help="skip long_tail.png")
    c.set_defaults(func=_run_curate)

    m = subparsers.add_parser("metadata", help="build or inspect MetaCLIP metadata")
    msub = m.add_subparsers(dest="metadata_command", metavar="COMMAND")
    msub.required = True
    b = msub.add_parser(
        "build",
        help="build metadata from WordNet, unigram/bigram counts or a corpus, and titles",
        description="Build MetaCLIP metadata: numbers 0-99, WordNet synsets, unigrams (count >= 100), "
        "bigrams (PMI >= 30), Wikipedia titles (views >= 70); first occurrence wins.",
    )
    b.add_argument("--out", required=True, help="output path: .json (MetaCLIP's format) or text; .gz allowed")
    b.add_argument("--wordnet", default="/usr/share/wordnet", help="WordNet 3.0 dict directory (data.noun ...)")
    b.add_argument("--no-wordnet", action="store_true", help="leave WordNet out")
    b.add_argument("--unigram-counts", default=None, help="'word count' or 'count<TAB>word' lines")
    b.add_argument("--bigram-counts", default=None, help="'count<TAB>w1<TAB>w2' or 'w1 w2 count' lines")
    b.add_argument("--corpus", nargs="+", default=None, help="text files to count unigrams and bigrams from")
    b.add_argument("--title-counts", default=None, help="title_counts.json or 'title<TAB>views' lines")
    b.add_argument("--min-count", type=int, default=100, help="unigram threshold (MetaCLIP: 100)")
    b.add_argument("--min-pmi", type=float, default=30.0, help="bigram PMI threshold (MetaCLIP: 30)")
    b.add_argument("--min-views", type=int, default=70, help="title views threshold (MetaCLIP: 70)")
    b.add_argument("--no-numbers", action="store_true", help="leave out MetaCLIP's seed entries 0..99")
    b.add_argument("--max-entries", type=int, default=None, help="stop at N entries (MetaCLIP: 500000)")
    b.set_defaults(func=_run_metadata_build)


def format_summary(stats: dict, out: str) -> str:
    rin = stats["rows_in"]
    lines = [
        f"curated {rin:,} rows -> {stats['rows_kept']:,} kept ({100.0 * stats['rows_kept'] / max(rin, 1):.1f}%)"
        f"  [t={stats['t']:,.6g}, p={stats['p'] if stats['p'] is None else round(stats['p'], 4)}, "
        f"expected {stats['expected_size']:,.0f}, seed {stats['seed']}]",
        "dropped: " + ", ".join(f"{k} {v:,}" for k, v in stats["rows_dropped"].items()),
        f"entries matched: {stats['entries_matched']:,} of {stats['n_entries']:,} before, "
        f"{stats['entries_matched_after']:,} after; columns text={stats['text_column']!r} id={stats['id_column']!r}",
        f"outputs: {out}/ ({len(stats['outputs'])} shard(s), stats.json, entry_counts.npy, metadata.json"
        + (f", {stats['plot']})" if stats.get("plot") else ")"),
    ]
    if stats["bad_shards"]:
        lines.append(f"bad shards skipped: {len(stats['bad_shards'])} (see stats.json)")
    return "\n".join(lines)


def _run_curate(args: argparse.Namespace) -> int:
    from .stage import curate
    from ...errors import FastcurateError

    try:
        stats = curate(
            args.inputs, args.out, metadata=args.metadata, t=args.t, p=args.p, target_size=args.target_size,
            seed=args.seed, text_column=args.text_column, id_column=args.id_column, threads=args.threads,
            on_error=args.on_error, batch_size=args.batch_size, progress=not args.no_progress,
            overwrite=args.overwrite, plot=not args.no_plot,
        )
    except FastcurateError as e:
        print(f"fastcurate: error: {e}", file=sys.stderr)
        return 2
    print(format_summary(stats, args.out))
    return 0


def _run_metadata_build(args: argparse.Namespace) -> int:
    from ...errors import FastcurateError
    from ...metadata import build_metadata, save_metadata

    try:
        entries = build_metadata(
            False if args.no_wordnet else args.wordnet,
            unigram_counts=args.unigram_counts, bigram_counts=args.bigram_counts, corpus=args.corpus,
            title_counts=args.title_counts, include_numbers=not args.no_numbers, min_count=args.min_count,
            min_pmi=args.min_pmi, min_views=args.min_views, max_entries=args.max_entries,
        )
        save_metadata(entries, args.out)
    except FastcurateError as e:
        print(f"fastcurate: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(entries):,} entries to {args.out}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Stand-alone entry point (``python -m fastcurate.curate_cli``) with just these subcommands."""
    p = argparse.ArgumentParser(prog="fastcurate")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_subcommands(sub)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
