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

from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

from ..errors import FormatError, InputError
from ..io.discover import ShardRef
from .commit import MarkerCommitter
from .lookahead import Lookahead
from .shard import ShardReadError, process_shard, scan_shard
from .stage import Context, Stage

__all__ = ["Executor", "LocalExecutor", "BAD_SHARD_ERRORS", "Outcome", "PHASES"]

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

    def close(self) -> None:
        if self._commit is not None:
            self._commit.close()
            self._commit = None


def run_phase_fn(phase: str) -> Any:
    """The per-shard function of ``phase``."""
    if phase == "scan":
        return scan_shard
    if phase == "process":
        return process_shard
    raise ValueError(f"unknown phase {phase!r}; the phases are {PHASES}")
