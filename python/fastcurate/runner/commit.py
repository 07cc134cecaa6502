"""Shard markers written in the background, each once its shard's files are on disk.

A shard's marker (``_work/scan/NNNNN.json``, ``_work/done/NNNNN.json``) is what resume trusts: it
must exist only once every file the shard wrote is durable. Written in line, that means waiting
for fsync after every shard, with the CPU idle (about 7 % of ``curate``'s wall time on 10M rows,
benchmarks/RESULTS.md). The local runner instead lets the shard's atomic writes rename their files
at once (:func:`fastcurate.io.atomic.deferred_fsync`) and hands the list, with the marker, to one
background thread that fsyncs the files and then writes the marker, while the next shard runs.
The guarantee is unchanged: after a crash, a shard without a marker is redone, and a marker still
implies its files.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..io.atomic import atomic_write_json, fsync_files

__all__ = ["MarkerCommitter"]


class MarkerCommitter:
    """fsyncs each submitted shard's files, then writes its marker, on one background thread, in
    submission order. At most ``max_pending`` shards wait at a time, which bounds the data not yet
    on disk. An error (a failed fsync) is raised by the next :meth:`submit` or by :meth:`drain`."""

    def __init__(self, max_pending: int = 2):
        self.max_pending = max_pending
        self._ex: Optional[ThreadPoolExecutor] = None
        self._pending: List[Future] = []
        self._lock = threading.Lock()  # shards scanned at once submit from their own threads

    def submit(self, files: Sequence[Path], marker_path: Path, marker: Dict[str, Any]) -> None:
        with self._lock:
            if self._ex is None:
                self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastcurate-commit")
            self._pending.append(self._ex.submit(_commit, list(files), marker_path, marker))
            while len(self._pending) > self.max_pending:
                self._pending.pop(0).result()

    def drain(self) -> None:
        """Wait until every submitted marker is written; raise the first error."""
        with self._lock:
            pending, self._pending = self._pending, []
        first: Optional[BaseException] = None
        for f in pending:  # wait for all, even after an error: no marker is left half-done
            e = f.exception()
            if e is not None and first is None:
                first = e
        if first is not None:
            raise first

    def close(self) -> None:
        """Drain, then stop the thread. Used on the error path too, where a shard that finished
        before the error keeps its marker (as it would have written in line)."""
        try:
            self.drain()
        finally:
            if self._ex is not None:
                self._ex.shutdown(wait=True)
                self._ex = None


def _commit(files: List[Path], marker_path: Path, marker: Dict[str, Any]) -> None:
    fsync_files(files)
    # in a fresh context, so that the marker itself is fsynced before its rename whatever context
    # this thread was started with
    contextvars.Context().run(atomic_write_json, marker_path, marker)
