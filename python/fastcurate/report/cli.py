"""``fastcurate report``: the HTML report of a run directory or a stage output directory."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..runner.cli import positive_int

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write one static HTML report (funnel, drops, plots, clusters, pairs, timings) of a run directory",
        description="Write one self-contained HTML page (no server, no network: plots and thumbnails inline) for DIR, "
        "a `fastcurate run` directory or one stage's --out: the funnel with drop reasons, examples of dropped rows, "
        "each stage's plots and tables (long tail, CLIP-score histogram, t-SNE map, clusters and their judgments, "
        "duplicate groups, pairs and instructions), timings. See docs/report.md.",
    )
    p.add_argument("dir", metavar="DIR", help="a pipeline run directory or a stage output directory")
    p.add_argument("--out", default=None, metavar="FILE", help="the HTML file to write (default: DIR/report.html)")
    p.add_argument("--examples", type=positive_int, default=6, metavar="N",
                   help="dropped rows shown per drop reason (default 6)")
    p.add_argument("--thumb-px", type=positive_int, default=96, metavar="PX",
                   help="thumbnail size in pixels (default 96)")
    p.add_argument("--title", default=None, help="the page title (default: the pipeline's name)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .build import build_report

    build_report(args.dir, args.out, max_examples=args.examples, thumb_px=args.thumb_px, title=args.title,
                 progress=not args.no_progress, log=lambda m: print(m))
    sys.stdout.flush()
    return 0
