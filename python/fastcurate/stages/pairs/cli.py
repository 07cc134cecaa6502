"""``fastcurate pairs``: mine, score, filter and balance image pairs within groups."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, run_from_args

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "pairs",
        help="mine image pairs within groups, score them, keep a relevance band, balance pair types (MagicLens)",
        description="Enumerate the pairs of rows within each group (the output of `fastcurate group`), at most "
        "--max-pairs-per-group per group chosen by a priority that is a pure function of the two uids and --seed; "
        "score them from embed's image_emb / text_emb (cosines, cross image-text when CLIP) and annotate's labels "
        "(Jaccard); keep pairs whose relevance is in the band (related, not near duplicates); balance same-entity "
        "and different-entity pairs. Writes pairs.parquet; an image row is kept when it is in a kept pair. "
        "See docs/pairs.md.",
    )
    add_runner_args(p, roles=())
    g = p.add_argument_group("pairs")
    g.add_argument("--max-pairs-per-group", type=int, default=10, metavar="N",
                   help="candidate pairs per group (default 10; 0: every pair)")
    g.add_argument("--seed", type=int, default=0, help="seed of the pair priority (default 0)")
    g.add_argument("--relevance", choices=("auto", "image", "text", "mean"), default="auto",
                   help="the score the band applies to (auto: image when there are image embeddings, else text)")
    g.add_argument("--min-relevance", type=float, default=None, metavar="X",
                   help="pairs below X are unrelated (default: calibrated, the --unrelated-quantile of random "
                        "cross-group pairs)")
    g.add_argument("--unrelated-quantile", type=float, default=0.9, metavar="Q",
                   help="the quantile of random cross-group pairs' relevance used as the minimum (default 0.9)")
    g.add_argument("--max-relevance", type=float, default=0.95, metavar="X",
                   help="pairs above X are near duplicates (default 0.95)")
    b = p.add_argument_group("balancing")
    b.add_argument("--no-balance", action="store_true", help="keep every in-band pair")
    b.add_argument("--same-entity-overlap", type=float, default=0.5, metavar="J",
                   help="label Jaccard index from which a pair is same-entity (default 0.5)")
    b.add_argument("--max-type-ratio", type=float, default=3.0, metavar="R",
                   help="keep at most R pairs of the larger type (same- or different-entity) per pair of the "
                        "smaller (default 3)")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    p = s["pairs"]
    band = s["band"]
    return [f"pairs: {p['possible']:,} possible -> {p['candidates']:,} candidates (cap) -> {p['in_band']:,} in the "
            f"{s['relevance']} band [{band['min']:.4g}, {band['max']:.4g}] ({p['near_duplicates']:,} near duplicates, "
            f"{p['unrelated']:,} unrelated) -> {p['kept']:,} kept after balancing",
            f"types before/after balancing: {s['distribution']['before_balancing']['types']} / "
            f"{s['distribution']['after_balancing']['types']}"]


def _run(a: argparse.Namespace) -> int:
    from .stage import PairsStage

    stage = PairsStage(max_pairs_per_group=a.max_pairs_per_group, seed=a.seed, relevance=a.relevance,
                       min_relevance=a.min_relevance, unrelated_quantile=a.unrelated_quantile,
                       max_relevance=a.max_relevance, balance=not a.no_balance,
                       same_entity_overlap=a.same_entity_overlap, max_type_ratio=a.max_type_ratio)
    return run_from_args(a, stage, _describe)
