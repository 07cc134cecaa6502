"""``fastcurate dedup``: exact and near-duplicate images (and captions, URLs)."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, run_from_args

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dedup",
        help="drop exact duplicates (content hash) and near-duplicate images (perceptual hash)",
        description="Group rows whose chosen keys are byte-identical (XXH3-128 of the image bytes, and/or the "
        "caption or URL), then images whose pHash and dHash are within a few bits (multi-index hashing over all "
        "shards, union-find); keep one per group (highest resolution, then the lowest uid hash) and drop the "
        "others, each naming its kept twin. See docs/dedup.md.",
    )
    add_runner_args(p, roles=("image", "text", "url", "width", "height"))
    d = p.add_argument_group("duplicates")
    d.add_argument("--exact", default="image", metavar="KEYS",
                   help="comma-separated keys that must all be equal for an exact duplicate: image, caption, url "
                        "(default: image; 'image,caption' for identical pairs; 'none' skips the exact step)")
    d.add_argument("--no-near", action="store_true", help="skip the near-duplicate image step")
    d.add_argument("--radius", type=int, default=10, metavar="BITS",
                   help="pHash Hamming radius (default 10, imagededup's max_distance_threshold)")
    d.add_argument("--dhash-radius", type=int, default=10, metavar="BITS",
                   help="dHash radius a near pair must also meet (default 10; -1: pHash alone)")
    d.add_argument("--within", default=None, metavar="COLUMN",
                   help="compare only rows with the same value of COLUMN (e.g. group)")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    return [f"groups: {s['exact_groups']:,} exact, {s['near_groups']:,} near ({s['near_pairs']:,} near pairs)"]


def _run(a: argparse.Namespace) -> int:
    from .stage import DedupStage

    exact = () if a.exact.strip().lower() in ("", "none") else tuple(k.strip() for k in a.exact.split(",") if k.strip())
    stage = DedupStage(exact=exact, near=not a.no_near, radius=a.radius,
                       dhash_radius=None if a.dhash_radius < 0 else a.dhash_radius, within=a.within)
    return run_from_args(a, stage, _describe)
