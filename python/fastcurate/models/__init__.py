"""CLIP embedding and scoring through ONNX Runtime (issue 4).

Runtime names (no torch): :class:`ClipEncoder`, :class:`TextEncoder`, :func:`clip_score`,
:class:`ClipTokenizer`, :class:`Preprocessor`, :func:`load_bundle`, :func:`embed_shards`.
Export names (need the ``export`` extra, imported lazily): :func:`export_clip`,
:func:`export_text_model`, :func:`make_text_bundle`.
"""

from __future__ import annotations

from .bundle import Bundle, load_bundle
from .encoder import ClipEncoder, ImageBatch, TextEncoder
from .preprocess import ImageError, PreprocessSpec, Preprocessor, decode_image
from .score import clip_score, l2_normalize
from .tokenizer import ClipTokenizer, HFTokenizer

__all__ = [
    "Bundle", "load_bundle", "ClipEncoder", "TextEncoder", "ImageBatch", "ImageError", "PreprocessSpec",
    "Preprocessor", "decode_image", "clip_score", "l2_normalize", "ClipTokenizer",
    "HFTokenizer", "export_clip", "export_text_model", "make_text_bundle",
]

from .export import export_clip, export_text_model, make_text_bundle  # no torch at import time
