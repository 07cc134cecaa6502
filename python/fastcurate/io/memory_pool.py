"""Which allocator Arrow's buffers come from during a run (docs/curate.md, "Speed").

pyarrow's wheels default to mimalloc. On a curate run (10M rows, 2 cores) jemalloc was faster and
smaller, alternating in one session: index mode 6.45-6.66 s against 6.64-7.36 s, rows mode
7.83-8.16 s against 7.97-8.63 s, peak RSS 324 / 409 MB against 429 / 505 MB, and 0.5-0.8 s less
kernel time: the Parquet reader grows its string buffers by ``realloc``, which jemalloc often
extends in place where mimalloc copies, and jemalloc reuses freed pages where mimalloc returns and
re-faults them. So a run switches Arrow's default pool to jemalloc, unless the user chose a pool.
"""

from __future__ import annotations

import os
from typing import Any, Optional

__all__ = ["jemalloc_pool", "prefer_jemalloc"]

_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def jemalloc_pool() -> Optional[Any]:
    """pyarrow's jemalloc pool, or None when this pyarrow is built without it."""
    import pyarrow as pa

    try:
        return pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowException, AttributeError):
        return None


def prefer_jemalloc() -> Optional[str]:
    """Make jemalloc Arrow's default memory pool for this process when nothing else was chosen.

    Left alone: a pool named in ``ARROW_DEFAULT_MEMORY_POOL`` (Arrow's own setting, which is also
    the way to opt out, e.g. ``ARROW_DEFAULT_MEMORY_POOL=mimalloc``), a default pool other than
    pyarrow's mimalloc (someone called ``pa.set_memory_pool``), and a pyarrow built without
    jemalloc (conda-forge's, Windows, macOS arm64). Buffers already allocated keep their own pool,
    so switching mid-process is safe. Returns the backend now in use.
    """
    import pyarrow as pa

    current = pa.default_memory_pool().backend_name
    if os.environ.get(_ENV) or current != "mimalloc":
        return current
    pool = jemalloc_pool()
    if pool is None:
        return current
    pa.set_memory_pool(pool)
    return pool.backend_name
