"""numpy -> Arrow for the runner's and the stages' hot paths, without ``pa.array``.

``pa.array(ndarray)`` asks pyarrow's pandas shim whether the input is a pandas object, and that
imports pandas (0.15-0.25 s of a cold run, more than a 1M-row curate spends on balancing) in every
process that has pandas installed, though nothing here uses it. These wrap the numpy buffer as it
is (numbers: zero copy) or pack it (booleans: one bit per row, as Arrow stores them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["from_numpy", "bool_array", "string_array", "repeat_string", "null_mask"]


def bool_array(mask: Any) -> "pa.BooleanArray":
    """A bool per row (anything ``np.asarray`` turns into a 1-D bool array) as an Arrow
    BooleanArray without nulls: a filter mask."""
    import pyarrow as pa

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 1:
        raise ValueError(f"a mask must be 1-D, got shape {m.shape}")
    bits = np.packbits(m, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(m), [None, pa.py_buffer(bits)])


def from_numpy(values: np.ndarray, type: Optional["pa.DataType"] = None) -> "pa.Array":
    """A 1-D numeric or bool numpy array as an Arrow array without nulls, converted to ``type``
    (numpy's casting rules: ``same_kind``) when given. Numbers are wrapped without a copy when
    they are contiguous and already of that type. Raises TypeError for other dtypes (strings,
    objects): use ``pa.array`` for those."""
    import pyarrow as pa

    a = np.asarray(values)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {a.shape}")
    if a.dtype == np.bool_ and (type is None or type == pa.bool_()):
        return bool_array(a)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"from_numpy takes numbers or bools, got {a.dtype}")
    if type is not None:
        a = a.astype(_numpy_dtype(type), casting="same_kind", copy=False)
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("="))
    return pa.Array.from_buffers(pa.from_numpy_dtype(a.dtype), len(a), [None, pa.py_buffer(a)])


def _numpy_dtype(t: "pa.DataType") -> np.dtype:
    """numpy's dtype for an Arrow integer or floating-point type (``DataType.to_pandas_dtype``
    would do, but may import pandas)."""
    import pyarrow as pa

    if pa.types.is_floating(t):
        return np.dtype(f"f{t.bit_width // 8}")
    if pa.types.is_integer(t):
        return np.dtype(f"{'i' if pa.types.is_signed_integer(t) else 'u'}{t.bit_width // 8}")
    raise TypeError(f"from_numpy makes integer or floating-point arrays, not {t}")


def string_array(values: Sequence[str]) -> "pa.StringArray":
    """Python strings (no None) as an Arrow string array, built from its buffers."""
    import pyarrow as pa

    raw = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(raw) + 1, dtype=np.int32)
    lengths = np.fromiter((len(r) for r in raw), dtype=np.int64, count=len(raw))
    if int(lengths.sum()) >= 2**31:
        raise ValueError("the strings hold 2 GiB or more: too many for one string array")
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(raw), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(raw))])


def repeat_string(value: str, n: int) -> "pa.StringArray":
    """``value`` ``n`` times as an Arrow string array (``pa.repeat(pa.scalar(...))`` without its
    pandas import)."""
    import pyarrow as pa

    raw = value.encode("utf-8")
    offsets = np.arange(n + 1, dtype=np.int64) * len(raw)
    if offsets[-1] >= 2**31:
        raise ValueError(f"{n} copies of a {len(raw)}-byte string overflow a string array")
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(raw * n)])


def _bits(buf: "pa.Buffer", offset: int, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little", count=offset + n)[offset:].astype(bool)


def null_mask(arr: "pa.Array") -> np.ndarray:
    """A bool per element of ``arr``: True where it is null (``arr.is_null().to_numpy()``, which
    imports pandas, from the validity bitmap instead)."""
    import pyarrow as pa

    n = len(arr)
    if arr.null_count == 0:
        return np.zeros(n, dtype=bool)
    if arr.null_count == n or pa.types.is_null(arr.type):
        return np.ones(n, dtype=bool)
    validity = arr.buffers()[0]
    if validity is None:  # unions and run-end arrays keep no validity bitmap of their own
        return np.asarray(arr.is_null().to_pylist(), dtype=bool)
    return ~_bits(validity, arr.offset, n)

