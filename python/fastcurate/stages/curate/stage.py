"""MetaCLIP curation as a stage (docs/curate.md): match, count, balance, keep the subset.

* global pass: :meth:`CurateStage.scan` matches every caption of a shard against the metadata and
  stores the shard's match result (CSR) and the 64-bit hashes of its uids under the shard's work
  directory; :meth:`CurateStage.reduce` sums the entry counts over all shards and turns them into
  the threshold ``t`` (given, from ``p``, or from a target size) and the expected output size;
* per-shard pass: the balanced draw over the stored match result (a pure function of
  ``(seed, uid)``) decides which rows stay; kept rows get their ``entry_ids``.

Drop reasons: ``null_text``, ``no_match``, ``not_sampled`` (plus the runner's ``null_id`` and
``bad_shard``). Stage outputs: ``entry_counts.npy`` (before balancing), ``entry_counts_curated.npy``,
``metadata.json`` and ``long_tail.png``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ... import _core
from ...errors import FastcurateError, InputError
from ...io.arrays import from_numpy, null_mask
from ...io.atomic import atomic_write_npy
from ...io.columns import Roles
from ...io.discover import ShardRef
from ...kernels.balance import (balance, count_entries, entry_probs, expected_size, hash_keys, p_to_t,
                                string_buffers, t_for_target_size, t_to_p)
from ...metadata import entries_of, save_metadata
from ...runner.stage import Batch, Context, Estimate, Result, Stage

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CurateStage", "curate", "DEFAULT_T", "ENTRY_IDS_COLUMN"]

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_T = 20000  # MetaCLIP's (and OpenAI CLIP's) t for 400M pairs
ENTRY_IDS_COLUMN = "entry_ids"
DRAW_COLUMN = "draw"
# rows: the kept rows with every input column; index: uid, entry_ids and the draw only (no second
# read of the shards' other columns), plus DataComp's subset file when uids are 128-bit hex.
OUTPUTS = ("rows", "index")
SUBSET_FILE = "subset.npy"
SUBSET_PAIRS = "subset_pairs.npy"  # per shard, in its work directory
_PAIR = np.dtype("u8,u8")
_MATCHER_BUILD = threading.Lock()
_CODE_NAMES = ("", "null_text", "no_match", "not_sampled")


def _load_csr(d: Path, mmap: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    mode: Optional[Literal["r"]] = "r" if mmap else None
    return np.load(d / "offsets.npy", mmap_mode=mode), np.load(d / "ids.npy", mmap_mode=mode)


class _ShardResults:
    """The stored per-shard match results as a re-iterable of (offsets, ids), one shard in memory
    (memory-mapped: measured faster than reading into reused buffers) at a time: lets
    expected_size / t_for_target_size run over the whole pool."""

    def __init__(self, dirs: List[Path]):
        self.dirs = dirs

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        for d in self.dirs:
            yield _load_csr(d)


class CurateStage(Stage):
    """MetaCLIP's curation: substring matching against metadata entries, then balanced sampling
    with ``p_e = min(1, t / count_e)``. Thread-safety: one run at a time per instance."""

    name = "curate"
    # 3: index output's subset pairs are built in the per-shard pass; 4: the scan stores no uid
    # hashes (the per-shard pass hashes the uids it reads anyway)
    version = 4
    needs = ("text",)
    scans = True
    concurrent_scan = True  # scan() keeps nothing between shards; the matcher is built once (a lock)
    scan_uses_uid = False  # the scan matches captions; the uids are hashed in the per-shard pass
    batch_size = 131072  # measured before the move: fewer, larger batches for the matcher's threads
    produces = (ENTRY_IDS_COLUMN, "entry_counts.npy", "entry_counts_curated.npy", "metadata.json")
    reasons = {
        "null_text": "the caption is null",
        "no_match": "the caption matches no metadata entry (MetaCLIP drops it)",
        "not_sampled": "balancing did not draw it: every matched entry is over the threshold t and the draw missed",
    }

    def __init__(
        self,
        metadata: Optional[Union[PathLike, Sequence[str]]] = None,
        *,
        t: Optional[float] = None,
        p: Optional[float] = None,
        target_size: Optional[float] = None,
        seed: int = 0,
        plot: bool = True,
        matcher: Any = None,
        output: str = "rows",
    ):
        """
        Args:
            metadata: a metadata file (MetaCLIP's ``.json`` list, or text with one entry per
                line), a list of entries, or None for the shipped WordNet 3.0 metadata.
            t: the balancing threshold: entries matched more often are sampled down to about
                ``t`` captions (default 20000, MetaCLIP's for 400M pairs).
            p: the tail portion in (0, 1], turned into ``t`` as MetaCLIP does.
            target_size: pick ``t`` so that the expected output size is this many rows.
            seed: seed of the per-row draw, a pure function of ``(seed, uid)``.
            plot: write ``long_tail.png``.
            matcher: a matcher object (Python only; default: the C++ MetaCLIP matcher).
            output: ``rows`` (the kept rows with every input column) or ``index`` (per kept row
                only its uid, entry_ids and draw, plus DataComp's ``subset.npy``).
        """
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        given = [name for name, v in (("t", t), ("p", p), ("target_size", target_size)) if v is not None]
        if len(given) > 1:
            raise InputError(f"give at most one of t, p, target_size (got {', '.join(given)})")
        if t is not None and not (float(t) > 0):
            raise InputError(f"t must be > 0, got {t!r}")
        if p is not None and not (0.0 < float(p) <= 1.0):
            raise InputError(f"p must be in (0, 1], got {p!r}")
        if target_size is not None and not (float(target_size) > 0):
            raise InputError(f"target_size must be > 0, got {target_size!r}")
        if not (0 <= int(seed) < 2**64):
            raise InputError(f"seed must be in [0, 2**64), got {seed!r}")
        self.mode = given[0] if given else "t"
        self.t = float(t) if t is not None else (None if given else float(DEFAULT_T))
        self.p = None if p is None else float(p)
        self.target_size = None if target_size is None else float(target_size)
        self.seed = int(seed)
        self.plot = plot
        self.entries = entries_of(metadata)
        self.metadata_name = ("default (WordNet 3.0)" if metadata is None else
                              str(metadata) if isinstance(metadata, (str, os.PathLike)) else "<list>")
        if not self.entries:
            raise InputError(f"metadata {self.metadata_name} holds no entries")
        self.meta_sha = hashlib.sha256(json.dumps(self.entries, ensure_ascii=False).encode("utf-8")).hexdigest()
        self._matcher = matcher
        self._matcher_given = matcher is not None
        self._probs: Optional[np.ndarray] = None

    def __getstate__(self) -> Dict[str, Any]:
        # The default compiled matcher is rebuilt where it is needed (a Ray worker); a matcher the
        # caller gave travels as it is (it must pickle), so workers match as the driver would.
        d = dict(self.__dict__)
        if not self._matcher_given:
            d["_matcher"] = None
        return d

    @property
    def matcher(self) -> Any:
        if self._matcher is None:
            with _MATCHER_BUILD:  # shards scanned at once (concurrent_scan) build it once
                if self._matcher is None:
                    from ...kernels.matcher import Matcher

                    self._matcher = Matcher(self.entries, mode="metaclip", case_sensitive=True)
        return self._matcher

    def config(self) -> Dict[str, Any]:
        return {"metadata_sha256": self.meta_sha, "mode": self.mode, "t": self.t, "p": self.p,
                "target_size": self.target_size, "seed": self.seed, "output": self.output}

    def output_fields(self, schema: "pa.Schema", roles: Roles) -> List["pa.Field"]:
        import pyarrow as pa

        fields = [pa.field(ENTRY_IDS_COLUMN, pa.list_(pa.int32()))]
        if self.output == "index":
            fields.append(pa.field(DRAW_COLUMN, pa.float64()))
        return fields

    def process_roles(self) -> Optional[Sequence[str]]:
        # index output: the per-shard pass reads only the ids; everything else is in the work files
        return () if self.output == "index" else None

    def estimate(self, shards: List[ShardRef], columns: Mapping[str, Optional[str]],
                 threads: Optional[int] = None, max_rows: int = 2_000_000) -> Estimate:
        """MetaCLIP's expected output size for this threshold: the counting pass (matching) over
        the inputs, without the draw. Exact (the expectation of the run's size) when the inputs
        hold at most ``max_rows`` rows; otherwise counted over the first ``max_rows`` rows and
        scaled to the known row count (Parquet footers), with ``t`` scaled alike."""
        from ...runner.shard import role_batches

        total = _footer_rows(shards)
        n = len(self.entries)
        counts = np.zeros(n, dtype=np.uint64)
        results: List[Tuple[np.ndarray, np.ndarray]] = []
        seen = 0
        for b in role_batches(shards, ("text",), columns, limit_rows=max_rows):
            r = self.matcher.match(b.require("text"), threads=threads)
            o = np.asarray(r.offsets, dtype=np.int64)
            ids = np.ascontiguousarray(np.asarray(r.ids, dtype=np.int32)[o[0]:o[-1]])
            o = np.ascontiguousarray(o - o[0])
            results.append((o, ids))
            count_entries((o, ids), n, out=counts)
            seen += len(b)
        if seen == 0:
            return Estimate(rows_out=0.0, exact=True, rows_in=total, notes=["the input holds no rows with an id"])
        # sampled: the row limit stopped the count (rows without id are not counted, as in the run)
        sampled = seen >= max_rows and total is not None and total > seen
        f = (total / seen) if sampled else 1.0  # type: ignore[operator]
        notes = []
        if self.mode == "p":
            t_sample = float(p_to_t(counts, float(self.p)))  # type: ignore[arg-type]
        elif self.mode == "target_size":
            t_sample = float(t_for_target_size(results, counts, float(self.target_size) / f, threads))  # type: ignore[arg-type]
        else:
            t_sample = float(self.t) / f  # type: ignore[arg-type]
        exp = expected_size(results, counts, t_sample, threads) * f
        t_full = t_sample * f
        notes.append(f"t = {t_full:,.6g} ({self.mode}), entries matched {int(np.count_nonzero(counts)):,} of {n:,}")
        if sampled:
            notes.append(f"counted over the first {seen:,} of {total:,} rows and scaled (approximate)")
        elif total is None:
            notes.append(f"counted over all {seen:,} rows")
        return Estimate(rows_out=exp, exact=not sampled, rows_in=total if total is not None else seen, notes=notes)

    # ---- global pass
    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        offs: List[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        idss: List[np.ndarray] = []
        nulls: List[np.ndarray] = []
        base = 0
        for b in batches:
            text = b.require("text")
            if text.null_count:
                nulls.append(b.offset + np.flatnonzero(null_mask(text)))
            r = self.matcher.match(text, threads=ctx.threads)
            o = np.asarray(r.offsets, dtype=np.int64)
            offs.append(o[1:] - o[0] + base)
            base += int(o[-1] - o[0])
            idss.append(np.asarray(r.ids, dtype=np.int32))
        d = ctx.shard_work(shard)
        offsets = np.concatenate(offs)
        atomic_write_npy(d / "offsets.npy", offsets)
        atomic_write_npy(d / "ids.npy", np.concatenate(idss) if idss else np.zeros(0, np.int32))
        # rows whose caption is null (the process pass may not read the captions again)
        atomic_write_npy(d / "null_text.npy", np.concatenate(nulls) if nulls else np.zeros(0, np.int64))
        return {"matched": int(np.count_nonzero(np.diff(offsets)))}

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        import time

        t0 = time.perf_counter()
        dirs = [ctx.shard_work(s) for s, m in zip(ctx.inputs, summaries) if m is not None]
        counts = _count_shards(dirs, len(self.entries), ctx.threads)
        atomic_write_npy(ctx.work / "entry_counts.npy", counts)
        ctx.timings["reduce_count_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        if self.mode == "p":
            t_val = float(p_to_t(counts, float(self.p)))  # type: ignore[arg-type]
        elif self.mode == "target_size":
            t_val = t_for_target_size(_ShardResults(dirs), counts, float(self.target_size),  # type: ignore[arg-type]
                                      ctx.threads)
        else:
            t_val = float(self.t)  # type: ignore[arg-type]
        exp = expected_size(_ShardResults(dirs), counts, t_val, ctx.threads)
        ctx.timings["reduce_threshold_s"] = round(time.perf_counter() - t0, 3)
        if self.plot:
            # The driver draws long_tail.png at the end: import matplotlib meanwhile, from here on
            # (the per-shard pass leaves part of a core idle; the counting above uses all of them).
            from ...plots import preload

            preload()
        return {"t": t_val, "expected_size": exp}

    # ---- per-shard pass
    def setup(self, ctx: Context, state: Optional[Dict[str, Any]]) -> None:
        assert state is not None
        counts = np.load(ctx.work / "entry_counts.npy")
        self._probs = entry_probs(counts, float(state["t"]))

    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        import pyarrow as pa

        assert self._probs is not None
        d = ctx.shard_work(shard)
        offsets, ids = _load_csr(d, mmap=False)
        n_rows = len(offsets) - 1
        kept_counts = np.zeros(len(self.entries), dtype=np.uint64)
        # DataComp's subset pairs of the kept uids, built here from the uids this pass reads anyway
        # (finalize then only merges them; None once a kept uid is not 32 hex digits)
        pairs: Optional[List[np.ndarray]] = [] if self.output == "index" else None
        seen = 0
        for b in batches:
            n = len(b)
            lo, hi = b.offset, b.offset + n
            if hi > n_rows:
                raise FastcurateError(f"{shard.path}: has more rows now than in the counting pass; the input "
                                      "changed during the run: start again with a fresh --out")
            seen = hi
            o = offsets[lo:hi + 1]
            # the draw is a pure function of (seed, uid): hashed from the uids read here, not
            # stored by the scan (8 bytes per row written, synced and read back for nothing)
            kh = hash_keys(b.uid)
            k = balance((o, ids), self._probs, None, seed=self.seed, threads=ctx.threads, key_hashes=kh)
            count_entries((o, ids), len(self.entries), out=kept_counts, keep=k)  # entry counts after
            rel = (o - o[0]).astype(np.int32)
            vals = np.ascontiguousarray(ids[o[0]:o[-1]], dtype=np.int32)
            ent = pa.ListArray.from_arrays(from_numpy(rel), from_numpy(vals))
            lens = np.diff(o)
            # drop codes, the later assignment winning: null caption > no match > not drawn
            codes = np.where(k, np.uint8(0), np.uint8(3))
            codes[lens == 0] = 2
            codes[_null_text(d, lo, hi)] = 1
            cols: Dict[str, Any] = {ENTRY_IDS_COLUMN: ent}
            if self.output == "index":
                cols[DRAW_COLUMN] = _core.uniform_draws(kh, self.seed)
            if pairs is not None:
                pairs = _append_subset_pairs(pairs, b.uid, k)
            yield Result.from_codes(codes, _CODE_NAMES, columns=cols)
        if seen != n_rows:  # fewer rows with an id than the scan counted: rows would pair with others' matches
            raise FastcurateError(f"{shard.path}: has {seen:,} rows with an id now but {n_rows:,} in the counting pass; "
                                  "the input changed during the run (or its statistics count no null id where there "
                                  "is one): start again with a fresh --out")
        atomic_write_npy(d / "kept_counts.npy", kept_counts)
        if self.output == "index":
            f = d / SUBSET_PAIRS
            if pairs is None:
                f.unlink(missing_ok=True)
            else:
                atomic_write_npy(f, _sort_pairs(np.concatenate(pairs)) if pairs else np.zeros(0, _PAIR))

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        assert state is not None
        from ...io.atomic import atomic_write_bytes, npy_bytes

        counts = np.load(ctx.work / "entry_counts.npy")
        after = np.zeros(len(self.entries), dtype=np.uint64)
        written = {r["file"] for r in shards}  # shards that failed in this pass are not in the output
        for s in ctx.inputs:
            f = ctx.work / "shards" / f"{s.index:05d}" / "kept_counts.npy"
            if str(s.path) in written and f.is_file():
                after += np.load(f)
        t_val = float(state["t"])
        atomic_write_bytes(ctx.out / "entry_counts.npy", npy_bytes(counts))
        atomic_write_bytes(ctx.out / "entry_counts_curated.npy", npy_bytes(after))
        save_metadata(self.entries, ctx.out / "metadata.json")
        plotting = None
        if self.plot:  # drawn on a thread while the subset merges (its reads and sorts release the GIL)
            from concurrent.futures import ThreadPoolExecutor

            from ...plots import plot_long_tail

            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastcurate-plot")
            plotting = pool.submit(plot_long_tail, counts, after, t_val, ctx.out / "long_tail.png")
            pool.shutdown(wait=False)
        try:
            subset = _write_datacomp_subset(ctx, shards) if self.output == "index" else None
        except BaseException:
            if plotting is not None:
                plotting.exception()  # wait for it; the merge's error is the one raised
            raise
        if plotting is not None:
            plotting.result()  # its error, if any, is the run's error
        return {
            "output": self.output,
            "subset_file": subset,
            "t": t_val,
            "p": t_to_p(counts, t_val) if counts.any() else None,
            "threshold_from": self.mode,
            "target_size": self.target_size,
            "expected_size": float(state["expected_size"]),
            "seed": self.seed,
            "metadata": self.metadata_name,
            "n_entries": len(self.entries),
            "entries_matched": int(np.count_nonzero(counts)),
            "entries_matched_after": int(np.count_nonzero(after)),
            "matches_before": int(counts.sum()),
            "matches_after": int(after.sum()),
            "plot": "long_tail.png" if self.plot else None,
        }


def _count_shards(dirs: Sequence[Path], n_entries: int, threads: Optional[int]) -> np.ndarray:
    """The entry counts summed over the shards' stored match results. The counting kernel is one
    thread (a scatter into one array); here each thread counts its own shards into its own array
    and the arrays are added (integers: the same sum in any order)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(len(dirs), threads or os.cpu_count() or 1))
    parts = [np.zeros(n_entries, dtype=np.uint64) for _ in range(workers)]

    def count(w: int) -> None:
        for d in dirs[w::workers]:
            count_entries(_load_csr(d), n_entries, out=parts[w])

    if workers == 1:
        count(0)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastcurate-count") as pool:
            list(pool.map(count, range(workers)))  # list(): a worker's error is raised here
    for p in parts[1:]:
        parts[0] += p
    return parts[0]


def _append_subset_pairs(pairs: List[np.ndarray], uid: "pa.Array", keep: np.ndarray) -> Optional[List[np.ndarray]]:
    """``pairs`` plus the DataComp pairs of the kept ``uid``s, or None when one of them is not
    32 hex digits (then the run writes no subset file)."""
    try:
        p = hex128_pairs(uid, keep)
    except InputError:
        return None  # not 32 hex digits: not DataComp uids
    if len(p):
        pairs.append(p)
    return pairs


def _sort_pairs(p: np.ndarray) -> np.ndarray:
    """``(u8, u8)`` pairs in DataComp's order (f0, then f1). numpy sorts a structured dtype through a
    generic comparison and lexsort through a stable merge sort; an unstable sort of f0 (vectorised
    for 64-bit keys) is several times faster and leaves only equal-f0 runs to order by f1, which
    for random 128-bit uids almost never happens. The keys are sorted from a contiguous copy
    (through the structured stride, argsort took 0.32 s instead of 0.19 s for 7.2M keys) and the
    pairs gathered as 16-byte complex numbers: numpy gathers a structured dtype field by field
    through a generic copy (0.27 s against 0.03 s)."""
    if len(p) < 2:
        return p
    p = np.ascontiguousarray(p)
    s = p.view(np.complex128)[np.argsort(np.ascontiguousarray(p["f0"]))].view(_PAIR)
    f0 = s["f0"]
    if bool((f0[1:] == f0[:-1]).any()):
        s = s[np.lexsort((s["f1"], f0))]
    return s


def _write_datacomp_subset(ctx: Context, shards: List[Dict[str, Any]]) -> Optional[str]:
    """DataComp's subset file (``baselines``: a sorted ``.npy`` of ``(u8, u8)`` pairs, the two
    halves of each 128-bit hex uid) when every kept uid is 32 hex digits; else None. Merges the
    per-shard sorted pairs that the per-shard pass stored, in bounded memory."""
    written = {r["file"] for r in shards}
    parts: List[Path] = []
    for s in ctx.inputs:
        if str(s.path) not in written:
            continue
        f = ctx.shard_work(s) / SUBSET_PAIRS
        if not f.is_file():
            return None  # a kept uid of this shard is not a DataComp uid
        parts.append(f)
    if not parts or all(np.load(f, mmap_mode="r").shape[0] == 0 for f in parts):
        return None
    from ...io.atomic import atomic_open

    with atomic_open(ctx.out / SUBSET_FILE) as fh:
        merge_sorted_pairs(parts, fh, threads=ctx.threads)
    return SUBSET_FILE


def _pos_le(a: np.ndarray, b0: int, b1: int) -> int:
    """The number of leading rows of ``a`` (sorted by (f0, f1)) that are <= ``(b0, b1)``."""
    f0 = a["f0"]
    i = int(np.searchsorted(f0, np.uint64(b0), side="left"))
    j = int(np.searchsorted(f0, np.uint64(b0), side="right"))
    if i == j:
        return i
    return i + int(np.searchsorted(a["f1"][i:j], np.uint64(b1), side="right"))


class _PairFile:
    """A sorted ``(u8, u8)`` ``.npy`` read forward in windows (plain reads, no memory map: the
    pages of a mapped file would count towards the process's resident memory as it is walked)."""

    def __init__(self, path: Path):
        self.fh = open(path, "rb")
        version = np.lib.format.read_magic(self.fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(self.fh)
        if dtype != _PAIR or fortran or len(shape) != 1:
            raise FastcurateError(f"{path}: not a 1-D (u8, u8) array (the run's work files changed)")
        self.left = int(shape[0])  # rows not read yet
        self.buf = np.zeros(0, _PAIR)

    def fill(self, rows: int) -> None:
        k = min(rows - len(self.buf), self.left)
        if k > 0:
            raw = self.fh.read(k * _PAIR.itemsize)
            if len(raw) != k * _PAIR.itemsize:
                raise FastcurateError(f"{self.fh.name}: truncated (the run's work files changed)")
            self.buf = np.concatenate([self.buf, np.frombuffer(raw, dtype=_PAIR)])
            self.left -= k

    def close(self) -> None:
        self.fh.close()


def merge_sorted_pairs(paths: Sequence[PathLike], fh: Any, budget_rows: int = 1 << 20,
                       threads: Optional[int] = None) -> int:
    """Write the sorted ``(u8, u8)`` ``.npy`` files ``paths`` (the per-shard pairs) to the open
    file ``fh`` as one sorted ``.npy``, holding about ``budget_rows`` rows in memory whatever the
    total or the number of files (a DataComp-scale subset is billions of rows over thousands of
    shards). Returns the row count.

    Each file is read in windows of ``budget_rows / len(paths)`` rows. Each round takes, from every
    window, the rows up to a bound: the smallest last row of the windows of files not yet read to
    their end. The window that set the bound is taken whole, so every round makes progress, and
    every row not taken is >= the bound >= every row taken. The rows taken, one sorted run per
    file, are merged by the C++ kernel (``_core.merge_pair_runs``, on ``threads`` threads; None:
    all cores) into buffers reused across rounds: re-sorting them with numpy took 3-4x as long, a
    third of it in the page faults of fresh arrays every round."""
    from concurrent.futures import Future, ThreadPoolExecutor

    files = [_PairFile(Path(p)) for p in paths]
    writer: Optional[ThreadPoolExecutor] = None
    pending: Optional["Future[Any]"] = None
    try:
        total = sum(f.left for f in files)
        window = max(1, budget_rows // max(1, len(files)))
        cap = min(total, window * len(files))  # the most rows one round can take
        # Two output buffers: a round's rows are written (a background thread: writing to a fresh
        # file costs page-cache allocation, 0.29 s of the 0.51 s merge of 7.2M pairs here) while
        # the next round merges into the other.
        outs = [np.empty((cap, 2), dtype=np.uint64) for _ in range(2)]
        scratch = np.empty((cap, 2), dtype=np.uint64)
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastcurate-subset")
        rounds = 0
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(_PAIR),
                                                  "fortran_order": False, "shape": (total,)})
        written = 0
        while written < total:
            bound: Optional[Tuple[int, int]] = None
            for f in files:
                f.fill(window)
                if f.left and len(f.buf):  # rows remain beyond this window: it bounds the round
                    last = (int(f.buf["f0"][-1]), int(f.buf["f1"][-1]))
                    bound = last if bound is None or last < bound else bound
            taken: List[np.ndarray] = []
            for f in files:
                j = len(f.buf) if bound is None else _pos_le(f.buf, *bound)
                if j:
                    taken.append(f.buf[:j])
                    f.buf = f.buf[j:]
            out = outs[rounds % 2]  # not the buffer the pending write reads
            n = _core.merge_pair_runs([t.view(np.uint64).reshape(-1, 2) for t in taken], out, scratch,
                                      threads=threads or 0)
            if pending is not None:
                pending.result()
            pending = writer.submit(fh.write, out[:n].data)
            written += n
            rounds += 1
        if pending is not None:
            pending.result()
        return written
    finally:
        if pending is not None:
            pending.exception()  # wait for it (the error raised is the one already in flight)
        if writer is not None:
            writer.shutdown(wait=True)
        for f in files:
            f.close()


def hex128_pairs(uid: "pa.Array", keep: Optional[np.ndarray] = None) -> np.ndarray:
    """32-hex-digit strings (a string Array, each exactly 32 characters, either case) as DataComp's
    ``(u8, u8)`` pairs: ``(int(uid[:16], 16), int(uid[16:], 16))``, of every row or of the rows
    ``keep`` marks (one bool per row; no filtered copy of the strings is made). Parsed by the C++
    kernel over the Arrow buffers. Raises InputError, naming the row, otherwise (a null uid too)."""
    n = len(uid)
    if keep is not None:
        k = np.ascontiguousarray(keep, dtype=bool)
        if k.shape != (n,):
            raise InputError(f"keep has shape {k.shape} for {n} uids")
    if uid.null_count:
        nulls = null_mask(uid)
        if keep is not None:
            nulls &= k
        if nulls.any():
            raise InputError(f"uid at row {int(np.flatnonzero(nulls)[0])} is null")
    if n == 0:
        return np.empty(0, dtype=_PAIR)
    offsets, data = string_buffers(uid)
    out = _core.hex128_pairs(offsets, data, None if keep is None else k.view(np.uint8))
    return out.view(_PAIR).reshape(-1)


def _null_text(d: Path, lo: int, hi: int) -> np.ndarray:
    """A bool per row in [lo, hi): the caption is null (from the scan's record)."""
    rows = np.load(d / "null_text.npy", mmap_mode="r")
    out = np.zeros(hi - lo, dtype=bool)
    sel = rows[(rows >= lo) & (rows < hi)]
    out[sel - lo] = True
    return out


def _footer_rows(shards: List[ShardRef]) -> Optional[int]:
    """The rows of ``shards`` from their Parquet footers; None when one is not Parquet."""
    import pyarrow.parquet as pq

    if any(s.format != "parquet" for s in shards):
        return None
    return sum(pq.ParquetFile(s.path).metadata.num_rows for s in shards)


def curate(
    inputs: Union[PathLike, Sequence[PathLike]],
    out: PathLike,
    *,
    metadata: Optional[Union[PathLike, Sequence[str]]] = None,
    t: Optional[float] = None,
    p: Optional[float] = None,
    target_size: Optional[float] = None,
    seed: int = 0,
    text_column: Optional[str] = None,
    id_column: Optional[str] = None,
    threads: Optional[int] = None,
    on_error: str = "fail",
    batch_size: Optional[int] = None,
    progress: bool = True,
    overwrite: bool = False,
    plot: bool = True,
    matcher: Any = None,
    output: str = "rows",
    _after_shard: Optional[Callable[[str, int], None]] = None,
) -> Dict[str, Any]:
    """Curate a pool the MetaCLIP way; returns the ``stats.json`` content (curation statistics
    under ``stats["curate"]``).

    Args:
        inputs: shard files (Parquet, WebDataset tar, CSV/TSV, JSONL), directories or globs.
        out: output directory (see :func:`fastcurate.runner.run_stage` for its layout): the kept rows
            with their ``entry_ids``, ``drops/``, ``entry_counts.npy`` (before balancing),
            ``entry_counts_curated.npy``, ``metadata.json``, ``stats.json``, ``long_tail.png``.
        metadata: a metadata file (``.json`` or text), a list of entries, or None for the shipped
            WordNet 3.0 default.
        t, p, target_size: at most one: the threshold, the tail portion (``p_to_t``), or the
            expected output size (``t_for_target_size``). Default: ``t = 20000``.
        seed: the draw for a row is a pure function of ``(seed, uid)``.
        text_column, id_column: the caption and id columns (default: the usual names, see
            fastcurate.io.columns). Rows sharing an id share a draw.
        threads: matcher and balancing threads (None: all cores). The result does not depend on it.
        on_error: ``"fail"`` or ``"skip"``: a bad shard (unreadable, truncated, missing column,
            non-string text) is then skipped and recorded in ``stats["bad_shards"]``.
        overwrite: replace a finished run of other inputs or options in ``out``.
        matcher: an object with ``match(texts, threads=...)`` returning a CSR match result (default:
            ``fastcurate.Matcher(entries, mode="metaclip")``).
        output: ``"rows"`` (the kept rows with all their columns) or ``"index"`` (``uid``,
            ``entry_ids`` and the ``draw`` of each kept row, without re-reading the other columns,
            plus DataComp's ``subset.npy`` when every uid is 32 hex digits).
    """
    from ...runner.local import run_stage

    stage = CurateStage(metadata, t=t, p=p, target_size=target_size, seed=seed, plot=plot, matcher=matcher,
                        output=output)
    return run_stage(stage, inputs, out, columns={"text": text_column, "id": id_column}, on_error=on_error,
                     overwrite=overwrite, threads=threads, batch_size=batch_size, progress=progress,
                     _after_shard=_after_shard)
