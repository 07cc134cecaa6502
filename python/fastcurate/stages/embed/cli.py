"""The ``fastcurate embed`` and ``fastcurate export`` subcommands.

The lead's ``fastcurate.cli`` calls :func:`add_subcommands` on its argparse subparsers; each
subcommand sets ``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional

__all__ = ["add_subcommands", "main"]


def _cmd_export(a: argparse.Namespace) -> int:
    if a.text_model:
        from ...models.export import export_text_model

        out = export_text_model(a.model, a.out, pooling=a.pooling, opset=a.opset, overwrite=a.overwrite)
    elif a.onnx:
        from ...models.export import make_text_bundle

        if not a.tokenizer:
            raise SystemExit("--onnx needs --tokenizer tokenizer.json")
        out = make_text_bundle(a.onnx, a.tokenizer, a.out, pooling=a.pooling, precision=a.precision,
                               overwrite=a.overwrite)
    else:
        from ...models.export import export_clip

        out = export_clip(a.model, a.out, precision=a.precision, pretrained=a.pretrained,
                          variants=a.variants, opset=a.opset, overwrite=a.overwrite,
                          text_variable_length=not a.fixed_text_length)
    m = json.loads((out / "manifest.json").read_text())
    print(json.dumps({"bundle": str(out), "embed_dim": m["embed_dim"], "variants": sorted(m["variants"]),
                      "parity": m.get("parity", {})}, indent=2))
    return 0


def _cmd_embed(a: argparse.Namespace) -> int:
    from .stage import embed_shards

    res = embed_shards(a.inputs, a.model, a.out, text_only=a.text_only, device=a.device,
                       precision=a.precision, batch_size=a.batch_size, fast_preprocess=a.fast,
                       image_col=a.image_col, text_col=a.text_col, uid_col=a.uid_col,
                       progress=not a.no_progress)
    tot = {k: sum(getattr(r, k) for r in res) for k in ("rows_in", "rows_kept", "rows_dropped")}
    tot["shards"] = len(res)
    tot["shards_resumed"] = sum(r.skipped for r in res)
    print(json.dumps(tot))
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Register ``embed`` and ``export`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser("export", help="export a CLIP (or text) model to an ONNX model bundle",
                              description="Export an open_clip / Hugging Face CLIP model, a Hugging Face "
                                          "text encoder, or wrap an existing ONNX text encoder, into a bundle.")
    p.add_argument("model", nargs="?", default=None,
                   help="open_clip model name (ViT-B-32, ...) or Hugging Face model directory")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--pretrained", default=None, help="local checkpoint path (default: random weights)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"], help="default precision")
    p.add_argument("--variants", nargs="*", default=None, help="precisions to write (default: fp32 fp16)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--fixed-text-length", action="store_true", help="export the text tower with 77 tokens fixed")
    p.add_argument("--text-model", action="store_true", help="MODEL is a Hugging Face text encoder (e.g. MiniLM)")
    p.add_argument("--onnx", default=None, help="wrap this ONNX text encoder instead of exporting")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json for --onnx")
    p.add_argument("--pooling", default="mean", choices=["mean", "cls", "none"], help="text-bundle pooling")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=_cmd_export)

    e = subparsers.add_parser("embed", help="embed WebDataset / Parquet shards with a model bundle",
                              description="Write per shard: uid, image and text embeddings (float16), "
                                          "CLIP score; plus the dropped rows with reasons. Resumable.")
    e.add_argument("inputs", nargs="+", help=".tar / .parquet shards or directories of them")
    e.add_argument("--model", required=True, help="bundle directory (from `fastcurate export`)")
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--text-only", action="store_true", help="embed captions only")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"])
    e.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"])
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--fast", action="store_true", help="JPEG draft decoding (approximate preprocessing)")
    e.add_argument("--image-col", default=None)
    e.add_argument("--text-col", default=None)
    e.add_argument("--uid-col", default=None)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_cmd_embed)


def main(argv: Optional[List[str]] = None) -> int:
    """Standalone entry point (``python -m fastcurate.embed.cli``) until the main CLI includes us."""
    from ...errors import FastcurateError

    ap = argparse.ArgumentParser(prog="fastcurate")
    sub = ap.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    a = ap.parse_args(argv)
    try:
        return int(a.func(a))
    except FastcurateError as exc:
        print(f"fastcurate {a.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
