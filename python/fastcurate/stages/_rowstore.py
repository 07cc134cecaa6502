"""Per-shard string columns kept in a stage's work directory (the uids a global pass needs to name
a dropped row's twin, the details of its decisions), and lookups of global rows in them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np

from ..io.atomic import atomic_write_bytes
from ..io.discover import ShardRef
from ..runner.stage import Context

__all__ = ["write_strings", "read_strings", "lookup_strings"]


def write_strings(path: Path, values: Any) -> None:
    """A string column (an Arrow array or a list with None) as a one-column Parquet file, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, pa.string())
    buf = io.BytesIO()
    pq.write_table(pa.table({"v": arr}), buf)
    atomic_write_bytes(path, buf.getvalue())


def read_strings(path: Path) -> "Any":
    """The column written by :func:`write_strings` (a pyarrow ChunkedArray)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).column(0)


def lookup_strings(ctx: Context, shards: Sequence[ShardRef], starts: np.ndarray, rows: np.ndarray,
                   name: str = "uids.parquet") -> List[Optional[str]]:
    """The strings of global rows ``rows`` (numbered over ``shards`` in order; ``starts`` holds
    each shard's first global row), each shard's file read once."""
    out: List[Optional[str]] = [None] * len(rows)
    if not len(rows):
        return out
    shard_of = np.searchsorted(starts, rows, side="right") - 1
    for k in np.unique(shard_of):
        sel = np.flatnonzero(shard_of == k)
        col = read_strings(ctx.shard_work(shards[int(k)]) / name)
        vals = col.take(rows[sel] - starts[k]).to_pylist()
        for i, v in zip(sel.tolist(), vals):
            out[i] = v
    return out
