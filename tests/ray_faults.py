"""Fault injection for the Ray engine's tests (test_ray.py): a stage that kills the worker process
running it. Lives in its own module so that Ray workers can import it (conftest puts tests/ on
their PYTHONPATH)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from fastcurate.runner.stage import Batch, Context, Result, Stage

_FORWARDED = ("name", "version", "reasons", "needs", "wants", "requires", "scans", "batch_size")


class KillWorker(Stage):
    """Behaves as ``inner``, except that the process running ``phase`` of shard ``shard_index``
    SIGKILLs itself in the middle of the shard (``process``: after the first batch's result went to
    the writer, so a temp part file is open; ``scan``: when the second batch is asked for): once
    (``always=False``; the first kill writes ``marker``) or every time. Each kill appends the
    process id to ``marker``. It never kills ``driver_pid`` (the test process)."""

    def __init__(self, inner: Stage, marker: Path, *, phase: str = "process", shard_index: int = 1,
                 always: bool = False, driver_pid: Optional[int] = None):
        self.inner = inner
        for k in _FORWARDED:
            setattr(self, k, getattr(inner, k))
        self.marker = Path(marker)
        self.phase = phase
        self.shard_index = shard_index
        self.always = always
        self.driver_pid = driver_pid if driver_pid is not None else os.getpid()

    def _die(self) -> None:
        if not self.always and self.marker.exists():
            return
        if os.getpid() == self.driver_pid:
            raise RuntimeError("KillWorker runs in the driver: use it with engine='ray' only")
        with open(self.marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    def _hit(self, phase: str, shard: Any) -> bool:
        return phase == self.phase and shard.index == self.shard_index

    # ---- delegated
    def config(self) -> Dict[str, Any]:
        return self.inner.config()

    def output_fields(self, schema: Any, roles: Any) -> List[Any]:
        return self.inner.output_fields(schema, roles)

    def scan_roles(self) -> Any:
        return self.inner.scan_roles()

    def worker_resources(self) -> Dict[str, float]:
        return self.inner.worker_resources()

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        return self.inner.reduce(ctx, summaries)

    def setup(self, ctx: Context, state: Optional[Dict[str, Any]]) -> None:
        self.inner.setup(ctx, state)

    def shard_summary(self, ctx: Context, shard: Any) -> Dict[str, Any]:
        return self.inner.shard_summary(ctx, shard)

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        return self.inner.finalize(ctx, shards, state)

    def teardown(self) -> None:
        self.inner.teardown()

    # ---- with the fault
    def scan(self, ctx: Context, shard: Any, batches: Iterator[Batch]) -> Dict[str, Any]:
        if self._hit("scan", shard):
            return self.inner.scan(ctx, shard, self._dying(batches))
        return self.inner.scan(ctx, shard, batches)

    def _dying(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        for k, b in enumerate(batches):
            if k == 1:
                self._die()
            yield b

    def process(self, ctx: Context, shard: Any, batches: Iterator[Batch]) -> Iterator[Result]:
        for k, res in enumerate(self.inner.process(ctx, shard, batches)):
            yield res
            if k == 0 and self._hit("process", shard):
                self._die()
