"""Embedding inputs shared by the clustering kernels: one matrix or a list of chunks, validated.

An *embedding source* is a 2-D array (``np.memmap`` or ``np.load(..., mmap_mode="r")`` work: rows
are read chunk by chunk, never all at once) or a sequence of 2-D arrays with the same width (the
shards of a pool, in order). Row ``i`` of the source is row ``i - start`` of the chunk holding it.
float16, float32 and float64 are accepted.
"""

from __future__ import annotations

import mmap
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError, InputTypeError

__all__ = ["EmbeddingSource", "as_chunks", "iter_chunks", "total_rows", "take_rows", "threads_arg", "release_pages"]

EmbeddingSource = Union[np.ndarray, Sequence[np.ndarray]]

_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def threads_or_all(threads: Optional[int]) -> int:
    """``threads`` for the kernels that take 0 as "all cores" too (None also means all cores)."""
    if threads is None:
        return 0
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 0:
        raise InputError(f"threads must be None (all cores) or an int >= 0, got {threads!r}")
    return int(threads)


def threads_arg(threads: Optional[int]) -> int:
    """The C++ kernels' convention: 0 = all cores."""
    if threads is None:
        return 0
    if int(threads) < 1:
        raise InputError(f"threads must be >= 1 or None (all cores), got {threads!r}")
    return int(threads)


def as_chunks(emb: EmbeddingSource, what: str = "embeddings") -> List[np.ndarray]:
    """The source as a list of 2-D float arrays of one width (no copy)."""
    if isinstance(emb, np.ndarray):
        chunks = [emb]
    elif isinstance(emb, (list, tuple)):
        chunks = list(emb)
        if not chunks:
            raise InputError(f"{what}: the list of chunks is empty")
    else:
        raise InputTypeError(
            f"{what} must be a 2-D numpy array (np.memmap works) or a list of them, got {type(emb).__name__}"
        )
    d: Optional[int] = None
    start = 0
    for ci, c in enumerate(chunks):
        if not isinstance(c, np.ndarray):
            raise InputTypeError(f"{what} chunk {ci} is a {type(c).__name__}, expected a 2-D numpy array")
        if c.ndim != 2:
            raise InputError(
                f"{what} chunk {ci} (rows from {start}) has shape {c.shape}; expected 2-D (rows, dims): "
                "a ragged list of rows must be stacked first (np.stack)"
            )
        if c.dtype not in _FLOATS:
            raise InputTypeError(
                f"{what} chunk {ci} has dtype {c.dtype}; expected float16, float32 or float64 "
                "(convert with .astype(np.float32))"
            )
        if d is None:
            d = int(c.shape[1])
        elif int(c.shape[1]) != d:
            raise InputError(
                f"{what} chunk {ci} (rows {start}..{start + len(c) - 1}) has {c.shape[1]} dims but earlier rows "
                f"have {d}: mixed embedding widths (different encoders?); embed every shard with the same model"
            )
        start += len(c)
    return chunks


def release_pages(a: np.ndarray) -> None:
    """Drop the pages of a read-only memory-mapped array from this process's resident set.

    A file mapping keeps every page it touched resident (and counted in RSS) until it is unmapped,
    so streaming a 10 GB np.memmap would grow RSS to 10 GB even though the data are only read
    once. madvise(MADV_DONTNEED) on a read-only shared file mapping only unmaps the pages: they stay
    in the page cache and are read again if touched. Anything else (an in-memory array, a
    copy-on-write or writable map) is left alone; so are platforms without madvise.
    """
    if not isinstance(a, np.memmap) or getattr(a, "mode", None) != "r" or a.nbytes == 0:
        return
    mm = getattr(a, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
        lo = a.ctypes.data - base
        hi = lo + a.nbytes
        page = mmap.PAGESIZE
        lo = lo // page * page
        hi = min(len(mm), (hi + page - 1) // page * page)
        if hi > lo:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    except (ValueError, OSError, TypeError):  # pragma: no cover - best effort
        pass


def total_rows(chunks: Sequence[np.ndarray]) -> int:
    return int(sum(len(c) for c in chunks))


def iter_chunks(chunks: Sequence[np.ndarray], chunk_rows: int) -> Iterator[Tuple[int, np.ndarray]]:
    """(global start, rows) pieces of at most chunk_rows rows, in order; views, no copy."""
    if chunk_rows < 1:
        raise InputError(f"chunk_rows must be >= 1, got {chunk_rows}")
    start = 0
    for c in chunks:
        for s in range(0, len(c), chunk_rows):
            piece = c[s : s + chunk_rows]
            yield start + s, piece
            release_pages(piece)  # the consumer is done with it: keep RSS flat over a memmap
        start += len(c)


def take_rows(chunks: Sequence[np.ndarray], rows: np.ndarray, dtype: Optional[np.dtype] = None) -> np.ndarray:
    """Rows at sorted global indices ``rows`` gathered into one array (reads only those rows)."""
    rows = np.asarray(rows, dtype=np.int64)
    d = int(chunks[0].shape[1])
    out = np.empty((len(rows), d), dtype=dtype or chunks[0].dtype)
    start = 0
    lo = 0
    for c in chunks:
        hi = int(np.searchsorted(rows, start + len(c), side="left"))
        if hi > lo:
            out[lo:hi] = c[rows[lo:hi] - start]
            release_pages(c)
        lo = hi
        start += len(c)
    return out


def first_bad_row_message(x: np.ndarray, start: int, what: str, need_nonzero: bool) -> str:
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        col = int(np.flatnonzero(~np.isfinite(x[i]))[0])
        kind = "NaN" if np.isnan(x[i, col]) else "infinite"
        return (
            f"{what} row {start + i} column {col} is {kind}; drop or re-embed that row "
            "(np.isfinite(x).all(axis=1) finds every such row)"
        )
    i = int(np.flatnonzero(~np.any(x != 0, axis=1))[0])
    return (
        f"{what} row {start + i} is all zeros: it has no direction, so its cosine to a centroid is undefined; "
        "drop it (or use metric='euclidean')"
    )
