"""Open the next shard while the current one finishes.

Within a shard, reading runs a batch or two ahead of the stage (io/prefetch.py). Between shards it
did not: each new shard waited for its footer and its first batch (about 25 ms for a 500k-row
Parquet shard here) with the stage idle, twice per shard in a two-pass stage. The local runner
therefore hands each shard function a :class:`Lookahead`: as soon as a shard's reading ends, the
next shard of the phase is opened and its first batch decoded on a background thread, while the
stage still works on the last batches of the current one. Reads stay in order and bounded (one
shard ahead, its first batch plus the prefetch depth). An error opening or reading the next shard
is raised when that shard's turn comes, as if it had been opened then, so a bad shard is still
that shard's error (``--on-error`` applies to it, not to the shard before).
"""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from ..io.discover import ShardRef
from .shard import Opened, open_for
from .stage import Stage

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Lookahead"]


class Lookahead:
    """Shards of one phase (``"scan"`` or ``"process"``), in the order the runner takes them,
    each opened ahead once the previous one's reading has ended. Not thread-safe: one runner loop
    uses it."""

    def __init__(self, phase: str, stage: Stage, given: Mapping[str, Optional[str]], batch_size: int,
                 shards: Sequence[ShardRef]):
        self.phase = phase
        self.stage = stage
        self.given = dict(given)
        self.batch_size = batch_size
        self._next: Dict[int, ShardRef] = {a.index: b for a, b in zip(shards, shards[1:])}
        self._ex: Optional[ThreadPoolExecutor] = None
        self._pending: Optional[Tuple[int, "Future[Opened]"]] = None

    def open(self, shard: ShardRef) -> Opened:
        """``shard`` opened for the phase: the one opened ahead if it is this shard, else opened
        now. Raises what opening it raised."""
        op: Optional[Opened] = None
        if self._pending is not None and self._pending[0] == shard.index:
            fut = self._pending[1]
            self._pending = None
            op = fut.result()
        else:
            self._discard()
            op = open_for(self.phase, self.stage, shard, self.given, self.batch_size)
        nxt = self._next.get(shard.index)
        if nxt is not None:
            op.raw = self._then_open(op.raw, nxt)
        return op

    def close(self) -> None:
        """Stop any read ahead and the thread (after the phase, or on an error)."""
        self._discard()
        if self._ex is not None:
            self._ex.shutdown(wait=True)
            self._ex = None

    def _then_open(self, raw: Iterator["pa.RecordBatch"], nxt: ShardRef) -> Iterator["pa.RecordBatch"]:
        yield from raw
        # this shard is read to its end (a read error would have stopped before): open the next
        if self._ex is None:
            self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastcurate-lookahead")
        self._discard()
        self._pending = (nxt.index, self._ex.submit(self._open_started, nxt))

    def _open_started(self, shard: ShardRef) -> Opened:
        op = open_for(self.phase, self.stage, shard, self.given, self.batch_size)
        try:
            first = next(op.raw)
        except StopIteration:
            op.raw = iter(())
        except BaseException as e:  # raised at the shard's turn, by its batch iterator
            op.raw = _raise(e)
        else:
            op.raw = itertools.chain([first], op.raw)
        return op

    def _discard(self) -> None:
        if self._pending is None:
            return
        fut = self._pending[1]
        self._pending = None
        try:
            op = fut.result()
        except BaseException:  # the open failed: nothing is running
            return
        op.close()


def _raise(e: BaseException) -> Iterator["pa.RecordBatch"]:
    raise e
    yield  # pragma: no cover  (makes this a generator: the error comes at the first next())
