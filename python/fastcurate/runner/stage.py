"""The stage contract: what a stage supplies, and what it may rely on (docs/runner.md).

A stage is a small class. It says which column roles it reads (``needs``, ``wants``), which columns
it adds (:meth:`Stage.output_fields`), its drop reasons (short snake_case codes with a sentence
each), the options that change its result (:meth:`Stage.config`), and its logic:

* optionally a **global pass**: :meth:`Stage.scan` reads each shard once and returns a small JSON
  summary (and may store arrays under its shard work directory); :meth:`Stage.reduce` turns all
  summaries into the global state (entry counts, a threshold, a hash index, centroids ...);
* the **per-shard pass**: :meth:`Stage.process` gets a shard's batches and yields one
  :class:`Result` per batch: which rows to keep, why the others go, and the columns it adds;
* optionally :meth:`Stage.finalize`: stage-level outputs (plots, arrays) and stage statistics.

Everything else belongs to the runner, the same for every stage: input discovery, column roles and
the row id (``uid``), the manifest and per-shard done markers, atomic writes, temp clean-up, the
error policy for unreadable shards, progress bars, the drop files and the accounting
``rows_in == rows_kept + sum(rows_dropped)``. A stage never imports an executor: the local runner
(:mod:`fastcurate.runner.local`) and the Ray runner call the same methods.

Thread-safety: a stage instance is used by one runner at a time; ``process`` may be called for
different shards in different processes (each with its own instance, unpickled), never
concurrently on one instance.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np

from ..errors import FastcurateError, InputError
from ..io.columns import Roles
from ..io.discover import ShardRef

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Stage", "Batch", "Result", "Context", "Estimate", "RUNNER_REASONS", "MissingDependencyError"]

# Drop reasons the runner itself records, for every stage.
RUNNER_REASONS: Mapping[str, str] = {
    "null_id": "the row has no id (its id column is null), so no later stage could name it",
    "bad_shard": "the shard could not be read (--on-error skip); counted from what is known of it, not listed",
}


class MissingDependencyError(FastcurateError, ImportError):
    """An optional dependency a stage needs is not installed; the message gives the pip command."""


@dataclass
class Batch:
    """A batch of one shard's valid rows (rows with an id), as a stage sees it.

    ``data`` holds the columns read (all of them in :meth:`Stage.process`; those of the roles the
    stage reads in :meth:`Stage.scan`) with the string column ``uid`` first. ``offset`` is the
    index of the batch's first row among the shard's valid rows: the same in the scan and the
    process pass, so per-row state kept by ``scan`` is found again by ``offset``.
    """

    shard: ShardRef
    offset: int
    data: "pa.RecordBatch"
    roles: Roles
    # False in a scan that did not read the ids (Stage.scan_uses_uid): ``data`` has no uid column
    has_uid: bool = True

    def __len__(self) -> int:
        return self.data.num_rows

    @property
    def uid(self) -> "pa.Array":
        if not self.has_uid:
            raise FastcurateError(f"{self.shard.path}: this scan did not read the ids (the stage sets "
                                  "scan_uses_uid = False); set it to True to use Batch.uid in scan()")
        return self.data.column(0)

    def column(self, role: str) -> Optional["pa.Array"]:
        """The column playing ``role`` (dictionary-decoded), or None when the shard has none."""
        import pyarrow as pa

        name = self.roles.get(role)
        if name is None or name not in self.data.schema.names:
            return None
        arr = self.data.column(name)
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        return arr

    def require(self, role: str) -> "pa.Array":
        arr = self.column(role)
        if arr is None:  # resolve_roles already raised for a needed role; this is a stage bug
            raise InputError(f"{self.shard.path}: no {role} column")
        return arr


@dataclass
class Result:
    """What a stage decided for one batch.

    ``keep``: a bool per row (None keeps every row). ``reason``: the drop reason code of every
    dropped row, in row order, or one code for all of them. ``detail``: optional text per dropped
    row (for a duplicate: the uid it duplicates). ``columns``: the columns the stage adds, one value
    per row of the batch (the runner drops the values of dropped rows). :meth:`from_codes` is the
    fast form for many drops: small integer codes instead of strings.
    """

    keep: Optional[np.ndarray] = None
    reason: Union[None, str, Sequence[str], np.ndarray] = None
    detail: Optional[Sequence[Optional[str]]] = None
    columns: Dict[str, Any] = field(default_factory=dict)
    codes: Optional[np.ndarray] = None  # per row: 0 keep, c > 0 drop with code_names[c]
    code_names: Optional[Sequence[str]] = None

    @staticmethod
    def from_codes(codes: np.ndarray, names: Sequence[str], detail: Optional[Sequence[Optional[str]]] = None,
                   columns: Optional[Dict[str, Any]] = None) -> "Result":
        """Rows with code 0 are kept; code c > 0 drops the row with reason ``names[c]``
        (``names[0]`` is unused). ``detail``, when given, is per dropped row."""
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise TypeError(f"codes must be integers, got {codes.dtype}")
        return Result(keep=codes == 0, detail=detail, columns=dict(columns or {}), codes=codes,
                      code_names=list(names))


@dataclass
class Context:
    """What a stage may use while it runs: where to keep resume state, where stage-level outputs
    go, the run's inputs and its options. Plain paths and values, so it crosses to other
    processes (Ray workers) as is."""

    stage: str
    out: Path
    work: Path
    inputs: List[ShardRef]
    input_dirs: List[Path]
    threads: Optional[int] = None
    progress: bool = True
    log: Callable[[str], None] = print
    # Wall times and other run-dependent numbers (requests sent, cache hits) that a stage measured
    # in its driver-side phases (``reduce``, ``finalize``). The runner writes them to
    # ``timings.json`` under the stage's name; they must stay out of ``stats.json`` and the stage
    # files, which are byte-identical between runs. Values set in ``scan``/``process`` under a
    # cluster engine stay in the worker.
    timings: Dict[str, Any] = field(default_factory=dict)

    def shard_work(self, shard: ShardRef) -> Path:
        """A directory for ``shard``'s resume state (created on demand, removed with ``_work``)."""
        d = self.work / "shards" / f"{shard.index:05d}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def input_file(self, name: str) -> Optional[Path]:
        """``name`` (e.g. ``clusters.parquet``) from the input stage-output directories: the one
        file found, None when there is none; an error when several inputs hold one."""
        hits = [d / name for d in self.input_dirs if (d / name).is_file()]
        if len(hits) > 1:
            raise InputError(f"{len(hits)} input directories hold {name} ({', '.join(map(str, hits))}); "
                             "give one")
        return hits[0] if hits else None


@dataclass
class Estimate:
    """What :meth:`Stage.estimate` knows of a stage's result before it runs (``fastcurate run
    --dry-run``). ``rows_out``: the expected number of kept rows (None: unknown); ``exact``: True
    when it is the number the run will give (or its exact expectation, as MetaCLIP's expected
    size), False when extrapolated from a sample; ``notes``: lines for the plan (the threshold
    used, how the number was obtained)."""

    rows_out: Optional[float] = None
    exact: bool = False
    rows_in: Optional[int] = None
    notes: List[str] = field(default_factory=list)


class Stage:
    """Base class of every stage; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    reasons: ClassVar[Mapping[str, str]] = {}
    needs: Tuple[str, ...] = ()
    wants: Tuple[str, ...] = ()
    # import name -> the pip command that installs it (checked when the stage is built)
    requires: ClassVar[Mapping[str, str]] = {}
    scans: bool = False
    # False: scan() never reads ``Batch.uid``. Where a shard's own metadata proves that its id column
    # holds no null (Parquet statistics), the global pass then does not read the id column at all
    # (for DataComp's 32-byte uids, about a third of what curate's scan would decode otherwise).
    scan_uses_uid: ClassVar[bool] = True
    # True: scan() may run on several shards at once, on different threads (it keeps no state on
    # the instance between shards, or guards what it keeps). The local runner then scans a few
    # shards at a time, so that each shard's decoding, one thread per shard, runs beside the
    # others' work instead of bounding the pass (docs/runner.md, "Concurrent scans").
    concurrent_scan: ClassVar[bool] = False
    # rows per batch when the user gives none: stages that carry image bytes use fewer
    batch_size: int = 65536
    # What the stage reads from earlier stages and adds for later ones, for the pipeline's order
    # check (docs/pipeline.md). Each item is a column name, or a file name (it has a suffix, like
    # ``clusters.parquet``) that must be in the stage's input directory; ``"a|b"`` means either.
    # An instance may narrow them in ``__init__`` (e.g. a text-only embedding produces text_emb),
    # as it may its needs, wants, scans and batch size: these are instance attributes with class
    # defaults, not ClassVars.
    consumes: Tuple[str, ...] = ()
    produces: Tuple[str, ...] = ()

    def check_requires(self) -> None:
        """Raise :class:`MissingDependencyError` with the install command for a missing module."""
        for mod, hint in self.requires.items():
            if importlib.util.find_spec(mod) is None:
                raise MissingDependencyError(f"the {self.name} stage needs {mod!r}, which is not installed: {hint}")

    # ---- declarations
    def config(self) -> Dict[str, Any]:
        """The options that change this stage's result (JSON-able). They go into the manifest: a
        rerun with other options does not resume the old run."""
        return {}

    def output_fields(self, schema: "pa.Schema", roles: Roles) -> List["pa.Field"]:
        """The columns this stage adds to its input's (same types for every batch)."""
        return []

    def process_roles(self) -> Optional[Sequence[str]]:
        """The roles the per-shard pass reads. None (the default): every column, all passed on to
        the output. A tuple: only those roles' columns (and the id) are read, and the output holds
        only ``uid``, those columns and the stage's (an index-style output that needs no second
        full read of the shards)."""
        return None

    def worker_resources(self) -> Dict[str, float]:
        """What one worker of this stage would like on a cluster engine, e.g. ``{"GPU": 1}`` for a
        stage whose models run on a GPU when there is one. The Ray engine gives it GPU workers
        when the cluster has GPUs and CPU workers otherwise; the local engine ignores it."""
        return {}

    def extra_columns(self) -> Sequence[str]:
        """Columns by name (not roles) that the global pass and a restricted per-shard pass also
        read when a shard has them (e.g. ``clip_score`` written by embed)."""
        return ()

    def scan_roles(self) -> Sequence[str]:
        """The roles :meth:`scan` reads (only those columns are read in the global pass)."""
        return tuple(self.needs) + tuple(self.wants)

    def estimate(self, shards: List[ShardRef], columns: Mapping[str, Optional[str]],
                 threads: Optional[int] = None) -> Optional[Estimate]:
        """A cheap look at the result before running, for ``fastcurate run --dry-run``: the
        expected number of kept rows of these input ``shards`` (``columns``: the user's column
        names per role). None (the default): not knowable without running. May read the inputs
        (use :func:`fastcurate.runner.shard.role_batches`), never writes anything."""
        return None

    # ---- the global pass
    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        """Read one shard; return a JSON-able summary. Arrays go to ``ctx.shard_work(shard)``,
        written atomically. Called once per shard (again only if the run was killed meanwhile)."""
        raise NotImplementedError

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        """All shards' summaries (None for bad shards) -> the global state (JSON-able; arrays in
        ``ctx.work``). Must be deterministic: a resumed run may call it again."""
        return {}

    # ---- the per-shard pass
    def setup(self, ctx: Context, state: Optional[Dict[str, Any]]) -> None:
        """Before the first shard is processed (in each worker): load models, the global state."""

    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        """Yield one :class:`Result` per batch, in order. Default: :meth:`process_batch` each."""
        for b in batches:
            yield self.process_batch(ctx, b)

    def process_batch(self, ctx: Context, batch: Batch) -> Result:
        raise NotImplementedError

    def shard_summary(self, ctx: Context, shard: ShardRef) -> Dict[str, Any]:
        """Extra JSON-able statistics of a processed shard, handed to :meth:`finalize`."""
        return {}

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """After every shard: write stage-level outputs to ``ctx.out`` (atomically) and return the
        stage's statistics for ``stats.json``. ``shards``: each processed shard's done record
        (``rows``, ``kept``, ``dropped``, ``summary``), bad shards excluded."""
        return {}

    def teardown(self) -> None:
        """Release models, sessions, servers."""
