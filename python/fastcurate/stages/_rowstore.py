"""Per-shard string columns kept in a stage's work directory (the uids a global pass needs to name
a dropped row's twin, the details of its decisions), and lookups of global rows in them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from ..io.atomic import atomic_write_bytes
from ..io.discover import ShardRef
from ..runner.stage import Batch, Context, Result

__all__ = ["write_strings", "read_strings", "lookup_strings", "decided_results"]


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


def decided_results(batches: Iterator[Batch], code: np.ndarray, detail: Sequence[Optional[str]], names: Sequence[str],
                    columns: Optional[Mapping[str, np.ndarray]] = None,
                    batch_columns: Optional[Callable[[Batch], Dict[str, Any]]] = None) -> Iterator[Result]:
    """The per-shard pass of a stage whose global pass decided every row: ``code`` (one drop code
    per row of the shard, 0 = kept) and ``detail`` (one string or None per row) applied batch by
    batch. Output columns: those ``batch_columns`` computes from each batch, then ``columns``
    (per-row arrays of the shard, sliced to the batch)."""
    for b in batches:
        lo, hi = b.offset, b.offset + len(b)
        c = code[lo:hi]
        cols: Optional[Dict[str, Any]] = None
        if columns or batch_columns:
            cols = dict(batch_columns(b)) if batch_columns is not None else {}
            cols.update((k, v[lo:hi]) for k, v in (columns or {}).items())
        yield Result.from_codes(c, names, detail=[detail[lo + i] for i in np.flatnonzero(c)], columns=cols)
