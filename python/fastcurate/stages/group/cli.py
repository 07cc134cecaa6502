"""``fastcurate group``: group rows by page (or image-URL directory) and clean each group."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, run_from_args
from ..filter.cli import add_test_args, name_list

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "group",
        help="group rows by web page (or image-URL directory) and clean each group (MagicLens step 1)",
        description="Give each row its group (a page URL, document id or group column; or with --group-by url-dir "
        "the image URL's host plus parent path), drop groups of one row and groups larger than --max-group-size, "
        "then clean each group with the filter stage's caption and image-size tests and the dedup stage's exact "
        "and near-duplicate search within the group. Kept rows get group and group_size (after cleaning). "
        "See docs/pairs.md.",
    )
    add_runner_args(p, roles=("text", "image", "url", "width", "height"))
    g = p.add_argument_group("groups")
    g.add_argument("--group-by", choices=("column", "url-dir"), default="column",
                   help="column: a key column (page URL, document id, group); url-dir: the image URL's host + "
                        "parent path (default: column)")
    g.add_argument("--key-column", default=None, metavar="NAME",
                   help="the group key column (default: the first present of group, page_url, page, document_id, "
                        "doc_id, source_url)")
    g.add_argument("--max-group-size", type=int, default=100, metavar="N",
                   help="drop groups of more than N rows (before cleaning): galleries and CDN directories, not "
                        "pages (default 100)")
    c = p.add_argument_group("cleaning: the filter stage's tests")
    c.add_argument("--no-alt-text", action="store_true", help="do not test captions")
    # the same flags and defaults as `fastcurate filter`, except that the language test is off unless
    # asked for, as GroupStage's default (docs/pairs.md, "Defaults")
    add_test_args(c, c, language=None)
    d = p.add_argument_group("cleaning: the dedup stage's search, within each group")
    d.add_argument("--dedup", default="image", metavar="KEYS",
                   help="exact-duplicate keys: image, caption, url, comma-separated, or 'none' (default: image; "
                        "text-only pools: caption)")
    d.add_argument("--no-near", action="store_true", help="skip near-duplicate images")
    d.add_argument("--radius", type=int, default=10, metavar="BITS", help="pHash Hamming radius (10)")
    d.add_argument("--dhash-radius", type=int, default=10, metavar="BITS", help="dHash radius (10; -1: pHash alone)")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    steps = s.get("steps", {})
    return [f"{name}: {v['rows']:,} rows in {v['groups']:,} groups of 2+, {v['pairs']:,} possible pairs"
            for name, v in steps.items()]


def _run(a: argparse.Namespace) -> int:
    from .stage import GroupStage

    stage = GroupStage(group_by=a.group_by, key_column=a.key_column, max_group_size=a.max_group_size,
                       alt_text=not a.no_alt_text, rules=name_list(a.rules), words_above=a.words_above,
                       chars_above=a.chars_above, language=None if a.language.lower() == "none" else a.language,
                       image_size=a.image_size, min_image_size=a.min_image_size, max_aspect_ratio=a.max_aspect_ratio,
                       dedup=name_list(a.dedup), near_duplicates=not a.no_near, radius=a.radius,
                       dhash_radius=None if a.dhash_radius < 0 else a.dhash_radius)
    return run_from_args(a, stage, _describe)
