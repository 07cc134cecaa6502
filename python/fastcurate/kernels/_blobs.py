"""Normalises "a column of encoded images" (or any byte strings) for the C++ kernels and Python loops.

Arrow ``binary`` / ``large_binary`` arrays cross into C++ without a copy (validity, offsets and data
buffers, honouring the slice offset and nulls); a Python list crosses as views of its ``bytes``.
The same inputs can also be walked from Python in row ranges (:func:`blob_rows`) without turning
an Arrow array into a list of ``bytes`` first.
"""

from __future__ import annotations

import bisect

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa

from ..errors import InputTypeError

ArrowChunkSpec = Tuple[Any, Any, Any, int, int, bool]
BlobsLike = Union[Sequence[Optional[bytes]], "pa.Array", "pa.ChunkedArray", "np.ndarray"]


def _as_binary_array(arr: pa.Array, what: str) -> pa.Array:
    t = arr.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return arr
    if pa.types.is_binary_view(t):
        return arr.cast(pa.binary())  # views have no contiguous offsets buffer: one conversion
    if pa.types.is_fixed_size_binary(t):
        return arr.cast(pa.binary())
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.binary())
    raise InputTypeError(
        f"{what} is an Arrow array of type {t}, expected binary or large_binary (the encoded image files); "
        "cast it with arr.cast(pyarrow.binary())"
    )


def _chunk_spec(arr: pa.Array, what: str) -> ArrowChunkSpec:
    arr = _as_binary_array(arr, what)
    validity, offsets, data = arr.buffers()[:3]
    if arr.null_count == 0:
        validity = None
    return (validity, offsets, data, arr.offset, len(arr), pa.types.is_large_binary(arr.type))


def _arrow_chunks(blobs: Any) -> Optional[List[pa.Array]]:
    """The Arrow chunks of an Arrow input (any Arrow producer, imported without a copy), else None."""
    if isinstance(blobs, pa.ChunkedArray):
        return list(blobs.chunks)
    if isinstance(blobs, pa.Array):
        return [blobs]
    if hasattr(blobs, "__arrow_c_array__"):
        return [pa.array(blobs)]
    if hasattr(blobs, "__arrow_c_stream__"):
        return list(pa.chunked_array(blobs).chunks)
    return None


def _python_sequence(blobs: Any, what: str) -> Sequence[Any]:
    """A Python sequence of bytes / None from a list, tuple, numpy object array or iterable."""
    if isinstance(blobs, (bytes, bytearray, memoryview, str)):
        raise InputTypeError(f"{what} must be a sequence of encoded images, not a single {type(blobs).__name__}; wrap it in a list")
    if isinstance(blobs, np.ndarray):
        if blobs.ndim != 1:
            raise InputTypeError(f"{what} must be one-dimensional, got a numpy array of shape {blobs.shape}")
        if blobs.dtype.kind in ("O", "S"):
            return blobs.tolist()
        raise InputTypeError(f"{what} is a numpy array of dtype {blobs.dtype}, expected object (bytes) or S")
    if isinstance(blobs, (list, tuple)):
        return blobs
    try:
        return list(blobs)
    except TypeError:
        raise InputTypeError(
            f"{what} is a {type(blobs).__name__}; expected a list of bytes or a pyarrow binary array"
        ) from None


def to_blob_columns(blobs: Any, what: str = "blobs") -> Tuple[str, Any, int]:
    """``(kind, payload, n_rows)`` for the C++ kernels: kind "arrow" (chunk specs) or "list"."""
    chunks = _arrow_chunks(blobs)
    if chunks is not None:
        return "arrow", [_chunk_spec(c, what) for c in chunks], sum(len(c) for c in chunks)
    seq = _python_sequence(blobs, what)
    return "list", seq, len(seq)


def blob_rows(blobs: Any, what: str = "blobs") -> Tuple[int, Callable[[int, int], List[Optional[Union[bytes, memoryview]]]]]:
    """``(n, fetch)`` where ``fetch(lo, hi)`` returns rows lo..hi-1 as bytes (memoryviews of the
    data buffer for Arrow input, no copy) or None for nulls.

    Checks every item's type up front, so a bad row fails before any work starts.
    """
    kind, payload, n = to_blob_columns(blobs, what)
    if kind == "list":
        seq = payload
        for i, b in enumerate(seq):
            if b is not None and not isinstance(b, bytes):
                hint = "pass Path(p).read_bytes(), not the path" if isinstance(b, str) else "convert it with bytes(x)"
                raise InputTypeError(f"{what}[{i}] is a {type(b).__name__}, expected bytes or None; {hint}")
        return n, lambda lo, hi: list(seq[lo:hi])

    # Arrow: each row is a slice of its chunk's data buffer. Offsets and validity become Python
    # lists once per chunk, so fetching a row costs a list lookup and a memoryview slice.
    chunks: List[Tuple[int, List[int], Optional[List[bool]], memoryview]] = []
    row0 = 0
    for validity, offsets, data, offset, length, large in payload:
        if length == 0:
            continue
        off = np.frombuffer(offsets, dtype=np.int64 if large else np.int32)[offset : offset + length + 1].tolist()
        valid = None
        if validity is not None:
            bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
            valid = bits[offset : offset + length].astype(bool).tolist()
        chunks.append((row0, off, valid, memoryview(data) if data is not None else memoryview(b"")))
        row0 += length
    starts = [c[0] for c in chunks]

    def fetch(lo: int, hi: int) -> List[Optional[Union[bytes, memoryview]]]:
        out: List[Optional[Union[bytes, memoryview]]] = []
        c = max(0, bisect.bisect_right(starts, lo) - 1)
        i = lo
        while i < hi:
            first, off, valid, mv = chunks[c]
            end = min(hi, first + len(off) - 1)
            for k in range(i - first, end - first):
                out.append(None if valid is not None and not valid[k] else mv[off[k] : off[k + 1]])
            i = end
            c += 1
        return out

    return n, fetch
