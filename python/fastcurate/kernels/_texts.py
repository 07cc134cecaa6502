"""Normalises the many shapes of "a column of texts" into what the C++ kernels read in place.

Arrow arrays cross without a copy: their validity, offsets and data buffers are handed to C++ as
buffer-protocol objects (honouring the slice offset, nulls, and 32- or 64-bit offsets). Python
lists cross as views of each ``str``'s UTF-8 bytes. Only numpy fixed-width unicode arrays need a
conversion (they hold UCS-4, not UTF-8), which goes through Arrow once.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa

from ..errors import InputTypeError

ArrowChunkSpec = Tuple[Any, Any, Any, int, int, bool]
TextsLike = Union[Sequence[str], "pa.Array", "pa.ChunkedArray", "np.ndarray"]

_STRING_TYPES = (pa.string(), pa.large_string())


def _as_string_array(arr: pa.Array) -> pa.Array:
    """The array as string / large_string, without copying the bytes where the layout allows."""
    t = arr.type
    if t in _STRING_TYPES:
        return arr
    if pa.types.is_binary(t):
        return arr.view(pa.string())  # same layout; bytes are matched as they are (invalid UTF-8 too)
    if pa.types.is_large_binary(t):
        return arr.view(pa.large_string())
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        return arr.cast(pa.string())  # views have no contiguous offsets buffer: one conversion
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_dictionary(t) and t.value_type in _STRING_TYPES:
        return arr.dictionary_decode()
    raise InputTypeError(
        f"texts is an Arrow array of type {t}, expected string or large_string; cast it with arr.cast(pyarrow.string())"
    )


def _chunk_spec(arr: pa.Array) -> ArrowChunkSpec:
    arr = _as_string_array(arr)
    validity, offsets, data = arr.buffers()[:3]
    if arr.null_count == 0:
        validity = None  # an all-valid array may still carry a bitmap; skip the per-row test
    return (validity, offsets, data, arr.offset, len(arr), arr.type == pa.large_string())


def to_columns(texts: Any) -> Tuple[str, Any, int]:
    """Returns ``(kind, payload, n_rows)`` for the C++ matcher (kind is "arrow" or "list")."""
    if isinstance(texts, pa.ChunkedArray):
        specs: List[ArrowChunkSpec] = [_chunk_spec(c) for c in texts.chunks]
        return "arrow", specs, len(texts)
    if isinstance(texts, pa.Array):
        return "arrow", [_chunk_spec(texts)], len(texts)
    if hasattr(texts, "__arrow_c_array__") or hasattr(texts, "__arrow_c_stream__"):
        # Any Arrow producer (polars, nanoarrow, duckdb, ...): imported without a copy.
        return to_columns(pa.array(texts) if hasattr(texts, "__arrow_c_array__") else pa.chunked_array(texts))
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise InputTypeError(f"texts must be one-dimensional, got a numpy array of shape {texts.shape}")
        if texts.dtype.kind == "U":
            return to_columns(pa.array(texts, type=pa.string()))
        if texts.dtype.kind == "O":
            return "list", texts.tolist(), len(texts)
        raise InputTypeError(f"texts is a numpy array of dtype {texts.dtype}, expected str (U) or object")
    if isinstance(texts, (str, bytes)):
        raise InputTypeError("texts must be a sequence of strings, not a single string; wrap it in a list")
    if isinstance(texts, (list, tuple)):
        return "list", texts, len(texts)
    try:
        seq = list(texts)
    except TypeError:
        raise InputTypeError(
            f"texts is a {type(texts).__name__}; expected a list of str, a pyarrow string array or a numpy str array"
        ) from None
    return "list", seq, len(seq)
