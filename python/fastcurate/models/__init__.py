"""CLIP embedding and scoring through ONNX Runtime (issue 4).

Runtime names (no torch): :class:`ClipEncoder`, :class:`TextEncoder`, :class:`ImageEncoder`,
:func:`clip_score`, :class:`ClipTokenizer`, :class:`Preprocessor`, :func:`load_bundle`.
Export names (need the ``export`` extra, imported lazily): :func:`export_clip`,
:func:`export_text_model`, :func:`make_text_bundle`, :func:`export_image_model`.
"""

from __future__ import annotations

from .bundle import Bundle, load_bundle
from .encoder import ClipEncoder, ImageBatch, ImageClassification, ImageEncoder, TextEncoder
from .preprocess import ImageError, PreprocessSpec, Preprocessor, decode_image
from .score import clip_score, l2_normalize
from .tokenizer import ClipTokenizer, HFTokenizer

__all__ = [
    "Bundle", "load_bundle", "ClipEncoder", "TextEncoder", "ImageEncoder", "ImageBatch", "ImageClassification",
    "ImageError", "PreprocessSpec",
    "Preprocessor", "decode_image", "clip_score", "l2_normalize", "ClipTokenizer",
    "HFTokenizer", "export_clip", "export_text_model", "make_text_bundle", "export_image_model",
]

from .export import export_clip, export_text_model, make_text_bundle  # no torch at import time
from .export_image import export_image_model  # no torch at import time
