"""CLIP score: the cosine between paired image and text embeddings."""

from __future__ import annotations

import numpy as np

from ..errors import InputError, InputTypeError

__all__ = ["clip_score", "l2_normalize"]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32 (F.normalize semantics: divide by max(norm, eps))."""
    x = np.asarray(x, dtype=np.float32)
    n = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    return x / np.maximum(n, np.float32(eps))[:, None]


def clip_score(img_emb: np.ndarray, txt_emb: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of paired embeddings, ``float32 [n]``.

    This is DataComp's ``clip_*_similarity_score``: both sides are L2-normalised (again, so
    unnormalised or float16 inputs are fine) and the dot product of each pair is taken. Rows with a
    NaN (e.g. an image that failed to decode) give NaN.
    """
    for name, a in (("img_emb", img_emb), ("txt_emb", txt_emb)):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise InputTypeError(f"{name} must be a numpy array, got {type(a).__name__}")
        if a.ndim != 2:
            raise InputError(f"{name} must be 2-D [n, d], got shape {a.shape}")
        if a.dtype.kind != "f":
            raise InputTypeError(f"{name} must be floating point, got {a.dtype}")
    if img_emb.shape != txt_emb.shape:
        raise InputError(
            f"img_emb {img_emb.shape} and txt_emb {txt_emb.shape} must have the same shape "
            "(one image and one text embedding per pair, same model)"
        )
    a = l2_normalize(img_emb)
    b = l2_normalize(txt_emb)
    return np.einsum("ij,ij->i", a, b, dtype=np.float32)
