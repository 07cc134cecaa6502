"""``fastcurate curate`` and ``fastcurate metadata build``."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, positive_int, run_from_args

__all__ = ["register", "describe"]


def register(sub: Any) -> None:
    """Add ``curate`` and ``metadata`` to the CLI's subparsers."""
    c = sub.add_parser(
        "curate",
        help="MetaCLIP curation: match captions to metadata entries, count, keep a balanced subset",
        description="Match every caption against the metadata entries, count entries over all shards, and keep a "
        "balanced subset (MetaCLIP): a caption is kept with probability 1 - prod(1 - min(1, t/count_e)) over its "
        "matched entries, drawn as a pure function of (seed, uid). Two streaming passes; resumable. "
        "See docs/curate.md.",
    )
    add_runner_args(c, roles=("text",))
    s = c.add_argument_group("curation")
    s.add_argument("--metadata", default=None, metavar="FILE",
                   help="metadata.json (a JSON list) or a text file, one entry per line "
                        "(default: the shipped WordNet 3.0 metadata)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--t", type=float, default=None, help="threshold t: entries counted more often are sampled "
                   "down to about t captions (default 20000, MetaCLIP's for 400M pairs)")
    g.add_argument("--p", type=float, default=None, help="tail portion p in (0, 1], converted to t as MetaCLIP does")
    g.add_argument("--target-size", type=float, default=None, metavar="N",
                   help="pick t so that the expected output size is N rows")
    s.add_argument("--seed", type=int, default=0, help="seed of the per-row draw (default 0)")
    s.add_argument("--output", choices=("rows", "index"), default="rows",
                   help="rows: the kept rows with all their columns (default; feeds the next stage); index: only "
                        "uid, entry_ids and the draw, without a second read of the shards, plus DataComp's "
                        "subset.npy when uids are 128-bit hex")
    s.add_argument("--no-plot", action="store_true", help="do not write long_tail.png")
    c.set_defaults(func=_run_curate)

    m = sub.add_parser("metadata", help="build MetaCLIP metadata (the entries captions are matched against)",
                       description="Build MetaCLIP metadata entries. Subcommand: build.")
    msub = m.add_subparsers(dest="metadata_command", metavar="COMMAND")
    msub.required = True
    b = msub.add_parser(
        "build",
        help="build metadata from WordNet, unigram/bigram counts or a corpus, and titles",
        description="Build MetaCLIP metadata: numbers 0-99, WordNet synsets, unigrams (count >= 100), "
        "bigrams (PMI >= 30), Wikipedia titles (views >= 70); the first occurrence of an entry wins.",
    )
    b.add_argument("--out", required=True, help="output path: .json (MetaCLIP's format) or text; .gz allowed")
    b.add_argument("--wordnet", default="/usr/share/wordnet", help="WordNet 3.0 dict directory (data.noun ...)")
    b.add_argument("--no-wordnet", action="store_true", help="leave WordNet out")
    b.add_argument("--unigram-counts", default=None, help="'word count' or 'count<TAB>word' lines")
    b.add_argument("--bigram-counts", default=None, help="'count<TAB>w1<TAB>w2' or 'w1 w2 count' lines")
    b.add_argument("--corpus", nargs="+", default=None, help="text files to count unigrams and bigrams from")
    b.add_argument("--title-counts", default=None, help="title_counts.json or 'title<TAB>views' lines")
    b.add_argument("--min-count", type=positive_int, default=100, help="unigram threshold (MetaCLIP: 100)")
    b.add_argument("--min-pmi", type=float, default=30.0, help="bigram PMI threshold (MetaCLIP: 30)")
    b.add_argument("--min-views", type=positive_int, default=70, help="title views threshold (MetaCLIP: 70)")
    b.add_argument("--no-numbers", action="store_true", help="leave out MetaCLIP's seed entries 0..99")
    b.add_argument("--max-entries", type=positive_int, default=None, help="stop at N entries (MetaCLIP: 500000)")
    b.set_defaults(func=_run_metadata_build)


def describe(s: Dict[str, Any]) -> List[str]:
    p = s.get("p")
    return [
        f"t={s['t']:,.6g} (from {s['threshold_from']}), p={'n/a' if p is None else round(p, 4)}, "
        f"expected size {s['expected_size']:,.0f}, seed {s['seed']}",
        f"entries matched: {s['entries_matched']:,} of {s['n_entries']:,} before balancing, "
        f"{s['entries_matched_after']:,} after (metadata: {s['metadata']})",
    ]


def _run_curate(args: argparse.Namespace) -> int:
    from .stage import CurateStage

    stage = CurateStage(args.metadata, t=args.t, p=args.p, target_size=args.target_size, seed=args.seed,
                        plot=not args.no_plot, output=args.output)
    return run_from_args(args, stage, describe)


def _run_metadata_build(args: argparse.Namespace) -> int:
    from ...metadata import build_metadata, save_metadata

    entries = build_metadata(
        False if args.no_wordnet else args.wordnet,
        unigram_counts=args.unigram_counts, bigram_counts=args.bigram_counts, corpus=args.corpus,
        title_counts=args.title_counts, include_numbers=not args.no_numbers, min_count=args.min_count,
        min_pmi=args.min_pmi, min_views=args.min_views, max_entries=args.max_entries,
    )
    save_metadata(entries, args.out)
    print(f"wrote {len(entries):,} entries to {args.out}")
    return 0
