"""``fastcurate annotate``: content labels per image (caption entries, ImageNet classes, zero-shot CLIP)."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, fraction, run_from_args

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "annotate",
        help="content labels per image: caption entries (MetaCLIP), ImageNet classes, zero-shot CLIP labels",
        description="Add a labels column ([{label, source, score}]) to every row: the metadata entries its caption "
        "matches (source metaclip, scored by their normalised IDF over the input), the top ImageNet classes of its "
        "image from an image bundle such as EfficientNet-Lite0 (source imagenet, softmax probability), and "
        "zero-shot CLIP labels over a label list (source clip). No row is dropped. See docs/pairs.md.",
    )
    add_runner_args(p, roles=("text", "image"))
    t = p.add_argument_group("caption labels (MetaCLIP entries)")
    t.add_argument("--metadata", default=None, metavar="FILE",
                   help="entries to match (.json list or one per line; default: the shipped WordNet 3.0 list)")
    t.add_argument("--text-labels", type=int, default=5, metavar="K", help="at most K caption labels per row (0: none)")
    t.add_argument("--min-text-score", type=float, default=0.3, metavar="S",
                   help="minimum normalised IDF of a caption label, 0..1 (default 0.3)")
    t.add_argument("--case-sensitive", action="store_true", help="match case-sensitively (MetaCLIP's default)")
    i = p.add_argument_group("image labels")
    i.add_argument("--image-bundle", default=None, metavar="DIR",
                   help="an image bundle (fastcurate export --image-model efficientnet-lite0): its top ImageNet "
                        "classes (default: the image_labels column of `fastcurate embed --labels K`, if present)")
    i.add_argument("--image-labels", type=int, default=3, metavar="K", help="at most K ImageNet labels per row")
    i.add_argument("--min-image-score", type=fraction, default=0.1, metavar="P", help="minimum probability (0.1)")
    i.add_argument("--clip-bundle", default=None, metavar="DIR", help="a CLIP bundle for zero-shot labels")
    i.add_argument("--label-list", default=None, metavar="FILE", help="zero-shot labels, one per line")
    i.add_argument("--clip-labels", type=int, default=3, metavar="K", help="at most K zero-shot labels per row")
    i.add_argument("--min-clip-score", type=fraction, default=0.1, metavar="P", help="minimum probability (0.1)")
    i.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the bundles run")
    i.add_argument("--model-batch-size", type=int, default=32, metavar="N", help="images per model call")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    return ["labels: " + ", ".join(f"{k} {v:,} on {s['rows_with_labels'][k]:,} rows" for k, v in s["labels"].items())]


def _run(a: argparse.Namespace) -> int:
    from .stage import AnnotateStage

    stage = AnnotateStage(metadata=a.metadata, text_labels=a.text_labels, min_text_score=a.min_text_score,
                          case_sensitive=a.case_sensitive, image_bundle=a.image_bundle, image_labels=a.image_labels,
                          min_image_score=a.min_image_score, clip_bundle=a.clip_bundle, label_list=a.label_list,
                          clip_labels=a.clip_labels, min_clip_score=a.min_clip_score, device=a.device,
                          model_batch_size=a.model_batch_size)
    return run_from_args(a, stage, _describe)
