"""The image column of a batch, whatever it holds: bytes (a binary column, a WebDataset tar's
image member), Hugging Face ``{bytes, path}`` structs, or paths relative to the shard's file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["image_sources", "image_bytes"]


def image_sources(arr: "pa.Array", base: Path) -> List[Any]:
    """What the decoder takes, per row: bytes, or an absolute path (relative paths are taken from
    ``base``, the shard's directory), or None. Structs give their bytes, else their path."""
    import pyarrow as pa

    if pa.types.is_struct(arr.type):
        vals = [(r.get("bytes") or r.get("path")) if r else None for r in arr.to_pylist()]
    else:
        vals = arr.to_pylist()
    return [str(base / v) if isinstance(v, str) and not os.path.isabs(v) else v for v in vals]


def image_bytes(arr: "pa.Array", base: Path, max_bytes: Optional[int] = None) -> "pa.Array":
    """The image column as a binary array: a binary column as is (no copy); paths are read
    (``max_bytes``: at most that many bytes of each file, e.g. for a header); unreadable files and
    nulls are null."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return arr
    out: List[Optional[bytes]] = []
    for v in image_sources(arr, base):
        if isinstance(v, str):
            try:
                with open(v, "rb") as f:
                    v = f.read() if max_bytes is None else f.read(max_bytes)
            except OSError:
                v = None
        out.append(v)
    return pa.array(out, pa.binary())
