"""Every shape of text input the matcher accepts, built from one list, for parametrised tests."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pyarrow as pa


def _sliced(texts: List[Optional[str]], large: bool) -> pa.Array:
    # Pad on both sides and slice back, so the array has a non-zero offset into its buffers.
    typ = pa.large_string() if large else pa.string()
    padded = pa.array(["PAD cat", None] + list(texts) + ["tail"], type=typ)
    return padded.slice(2, len(texts))


def _chunked(texts: List[Optional[str]]) -> pa.ChunkedArray:
    mid = len(texts) // 2
    return pa.chunked_array([pa.array(texts[:mid], type=pa.string()), _sliced(texts[mid:], large=True).cast(pa.string())],
                            type=pa.string())


INPUT_KINDS: Dict[str, Callable[[List[Optional[str]]], Any]] = {
    "list": lambda t: list(t),
    "tuple": lambda t: tuple(t),
    "arrow_string": lambda t: pa.array(t, type=pa.string()),
    "arrow_large_string": lambda t: pa.array(t, type=pa.large_string()),
    "arrow_sliced": lambda t: _sliced(t, large=False),
    "arrow_large_sliced": lambda t: _sliced(t, large=True),
    "chunked": _chunked,
    "numpy_object": lambda t: np.array(t, dtype=object),
}
