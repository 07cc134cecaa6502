"""How a run maps the per-shard work over its shards (docs/runner.md, docs/scale.md).

The run's life cycle (the output directory, manifest, resume, error policy, the reduce of the
global pass, ``finalize``, the accounting and ``stats.json``) is one piece of code,
:func:`fastcurate.runner.local.run_stage`, for every engine. What differs between engines is only
*where* :func:`~fastcurate.runner.shard.scan_shard` and
:func:`~fastcurate.runner.shard.process_shard` run: an :class:`Executor` maps them over a list of
shards and hands back each shard's done record (or the error that makes it a bad shard) in shard
order. :class:`LocalExecutor` runs them here, one shard after another; the Ray executor
(:mod:`fastcurate.runner.ray`, imported only when asked for) runs them in Ray actors.

Both functions write their outputs atomically and their marker last, and the result of a shard
is a pure function of the shard, the stage and (for the per-shard pass) the reduced global
state, so an executor may run shards in any order, on any machine that sees the same files, and
redo a shard whose worker died: the bytes are the same.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

from ..errors import FormatError, InputError
from ..io.discover import ShardRef
from .commit import MarkerCommitter
from .lookahead import Lookahead
from .shard import ShardReadError, process_shard, scan_shard
from .stage import Context, Stage

__all__ = ["Executor", "LocalExecutor", "LockedBar", "BAD_SHARD_ERRORS", "Outcome", "PHASES"]

# The errors that make a shard a bad shard (--on-error decides); any other error stops the run.
BAD_SHARD_ERRORS = (ShardReadError, FormatError, InputError)
PHASES = ("scan", "process")

# A shard's done record (the marker's content), or the bad-shard error it raised.
Outcome = Union[Dict[str, Any], BaseException]


class Executor:
    """Maps the per-shard work over shards. One executor serves one run (not thread-safe).

    Call order (by the runner): :meth:`connect` (before anything is written), :meth:`start`,
    :meth:`map` for the global pass, :meth:`setup` with the reduced state, :meth:`map` for the
    per-shard pass, :meth:`before_finalize`, then :meth:`close` (always, also after an error).
    """

    name: str = "executor"

    def connect(self) -> None:
        """Reach the compute (a cluster); raise a FastcurateError that says how to fix it when it
        cannot be reached. Called before the run writes anything."""

    def start(self, stage: Stage, ctx: Context, given: Mapping[str, Optional[str]], batch_size: int) -> None:
        self.stage = stage
        self.ctx = ctx
        self.given = dict(given)
        self.batch_size = batch_size

    def setup(self, state: Optional[Dict[str, Any]]) -> None:
        """Before the per-shard pass, with the global state (None for a stage without a scan)."""

    def map(self, phase: str, shards: Sequence[ShardRef], state: Optional[Dict[str, Any]],
            bar: Any) -> Iterator[Tuple[ShardRef, Outcome]]:
        """Run ``phase`` (``"scan"`` or ``"process"``) on every shard of ``shards``; yield
        ``(shard, record)`` or ``(shard, error)`` (one of :data:`BAD_SHARD_ERRORS`) in the order
        of ``shards``. Any other error is raised. ``bar`` (a tqdm bar) counts the rows done."""
        raise NotImplementedError

    def before_finalize(self, state: Optional[Dict[str, Any]]) -> None:
        """Before :meth:`Stage.finalize`, which runs here, on the runner's stage instance: that
        instance must then be set up, as it is after a local per-shard pass."""

    def close(self) -> None:
        """Release workers (also after an error or an interrupt)."""

    def timings(self) -> Dict[str, Any]:
        """Extra entries for ``timings.json`` (not part of the byte-identical result)."""
        return {}


class LocalExecutor(Executor):
    """The shards one after another in this process; the stage's kernels use the threads. The
    stage is set up once, here, and used for the per-shard pass and ``finalize``."""

    name = "local"
    _commit: Optional[MarkerCommitter] = None

    def setup(self, state: Optional[Dict[str, Any]]) -> None:
        self.stage.setup(self.ctx, state)

    def map(self, phase: str, shards: Sequence[ShardRef], state: Optional[Dict[str, Any]],
            bar: Any) -> Iterator[Tuple[ShardRef, Outcome]]:
        # A shard's marker is written in the background once its files are on disk, while the next
        # shard runs (runner/commit.py); the phase ends when every marker is written.
        # The next shard is opened while the current one finishes (runner/lookahead.py).
        fn = run_phase_fn(phase)
        if self._commit is None:
            self._commit = MarkerCommitter()
        width = self.scan_width(len(shards)) if phase == "scan" else 1
        if width > 1:
            yield from self._map_at_once(fn, shards, bar, width)
            self._commit.drain()
            return
        ahead = Lookahead(phase, self.stage, self.given, self.batch_size, shards)
        try:
            for s in shards:
                out: Outcome
                try:
                    out = fn(self.stage, self.ctx, s, self.given, self.batch_size, bar, self._commit, ahead)
                except BAD_SHARD_ERRORS as e:
                    out = e
                yield s, out  # outside the try: an error of the caller is not the shard's
        finally:
            ahead.close()
        self._commit.drain()

    def scan_width(self, n_shards: int) -> int:
        """How many shards the global pass runs at once: 1 unless the stage allows it
        (``Stage.concurrent_scan``) and may use more than one thread; then half the cores, at
        least 2 (measured on 2 cores: docs/runner.md "Concurrent scans") and at most 8, which
        bounds the shards in memory."""
        cores = self._cores()
        if not getattr(self.stage, "concurrent_scan", False) or cores == 1 or n_shards < 2:
            return 1
        return min(n_shards, 8, max(2, cores // 2))

    def _cores(self) -> int:
        """The threads the run may use: ``--threads``, else the cores this process may run on."""
        return self.ctx.threads or _usable_cores()

    def _map_at_once(self, fn: Any, shards: Sequence[ShardRef], bar: Any,
                     width: int) -> Iterator[Tuple[ShardRef, Outcome]]:
        """``fn`` on up to ``width`` shards at a time, on threads; outcomes in shard order. The
        next shard starts as soon as one ends (not when the consumer gets to it), so the cores
        stay busy. An error that is not a bad shard's is raised at that shard's turn, after the
        shards before it; the shards still running then finish (their outputs are atomic and
        their markers valid) and those not started never start."""
        import collections
        import dataclasses
        from concurrent.futures import Future, ThreadPoolExecutor

        safe_bar = bar if bar is None or isinstance(bar, LockedBar) else LockedBar(bar)
        # The cores are shared between the shards in flight: each shard's kernels get their part,
        # not all of them each (64 cores, 8 shards: 8 threads per shard, not 64). Results do not
        # depend on the thread count.
        ctx = dataclasses.replace(self.ctx, threads=max(1, self._cores() // width))

        def one(s: ShardRef) -> Outcome:
            try:
                out: Outcome = fn(self.stage, ctx, s, self.given, self.batch_size, safe_bar, self._commit, None)
            except BAD_SHARD_ERRORS as e:
                out = e
            return out

        pending: "collections.deque[Tuple[ShardRef, Future[Outcome]]]" = collections.deque()
        todo = iter(shards)
        ex = ThreadPoolExecutor(max_workers=width, thread_name_prefix="fastcurate-scan")
        try:
            for s in todo:
                pending.append((s, ex.submit(one, s)))
                if len(pending) == width:
                    break
            while pending:
                s, fut = pending.popleft()
                out = fut.result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt, ex.submit(one, nxt)))
                yield s, out
        finally:
            for _, fut in pending:
                fut.cancel()
            ex.shutdown(wait=True)

    def close(self) -> None:
        if self._commit is not None:
            self._commit.close()
            self._commit = None


class LockedBar:
    """A progress bar updated from several threads: shards scanned at once, and the runner's own
    loop counting the shards a resumed run already scanned (tqdm's own counter is not atomic)."""

    def __init__(self, bar: Any):
        self._bar = bar
        self._lock = threading.Lock()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self._bar.update(n)


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under ``taskset`` or a container's
    cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def run_phase_fn(phase: str) -> Any:
    """The per-shard function of ``phase``."""
    if phase == "scan":
        return scan_shard
    if phase == "process":
        return process_shard
    raise ValueError(f"unknown phase {phase!r}; the phases are {PHASES}")
