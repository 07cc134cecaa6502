"""The runner: runs one stage over its inputs (docs/runner.md).

It owns, for every stage and every engine: the output directory's life cycle (new, resumed,
finished, refused), the manifest, the global pass and its per-shard markers, the reduce, the
per-shard pass, the error policy, the progress bars, the accounting and ``stats.json``. Where the
per-shard work runs is the executor's business (:mod:`.executor`): by default here, shards one
after another, the stage's kernels using the threads (memory: about one batch per shard in
flight); with ``engine="ray"`` in Ray actors (:mod:`.ray`, docs/scale.md).

Output directory::

    DIR/part-NNNNN.parquet        kept rows: uid + input columns + the stage's columns
    DIR/drops/part-NNNNN.parquet  dropped rows: uid, stage, reason, detail
    DIR/stats.json                accounting, the manifest, the stage's statistics (written last)
    DIR/timings.json              wall time per phase (not part of the byte-identical result)
    DIR/<stage files>             e.g. entry_counts.npy, clusters.parquet
    DIR/_work/                    resume state while running; removed when the run finishes
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from ..errors import FastcurateError, InputError
from ..io.atomic import atomic_write_json, read_json, remove_stale_temps
from ..io.columns import ROLE_FLAGS, ROLES
from ..io.discover import ShardRef, discover_shards, is_stage_output
from ..io.memory_pool import prefer_jemalloc
from .executor import Executor, LocalExecutor, LockedBar
from .shard import done_marker, known_rows, scan_marker
from .stage import RUNNER_REASONS, Context, Stage

__all__ = ["run_stage", "ON_ERROR", "ENGINES", "given_columns", "make_manifest", "OutputState", "output_state"]

PathLike = Union[str, "os.PathLike[str]"]
ON_ERROR = ("fail", "skip")
ENGINES = ("local", "ray")
_WORK = "_work"
_FORMAT = 2  # the layout of a stage output directory


def _log_to_stderr(stage: str) -> Callable[[str], None]:
    def log(msg: str) -> None:
        print(f"fastcurate {stage}: {msg}", file=sys.stderr, flush=True)

    return log


def _fingerprint(shards: List[ShardRef]) -> List[Dict[str, Any]]:
    out = []
    for s in shards:
        st = s.path.stat()
        out.append({"file": str(s.path), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def _diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> List[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def given_columns(columns: Optional[Mapping[str, Optional[str]]]) -> Dict[str, Optional[str]]:
    """The user's column name per role (None: the role's default names), checked."""
    given: Dict[str, Optional[str]] = {r: None for r in ROLES}
    for role, name in (columns or {}).items():
        if role not in ROLE_FLAGS:
            raise InputError(f"unknown column role {role!r}; the roles are {list(ROLES)}")
        given[role] = name
    return given


def make_manifest(stage: Stage, shards: List[ShardRef], given: Mapping[str, Optional[str]],
                  batch_size: int) -> Dict[str, Any]:
    """What identifies a run (docs/runner.md): the stage, its version and ``config()``, the column
    names given, the batch size and the inputs' fingerprint. Another manifest is another run."""
    import json

    manifest = {"format": _FORMAT, "stage": stage.name, "version": stage.version, "config": stage.config(),
                "columns": {k: v for k, v in given.items() if v is not None}, "batch_size": batch_size,
                "inputs": _fingerprint(shards)}
    # Round-trip through JSON so that tuples/lists and int/float keys compare as they are stored.
    return json.loads(json.dumps(manifest))


@dataclass
class OutputState:
    """What an output directory holds with respect to a planned run (see :func:`output_state`).

    ``kind``: ``"new"`` (absent or empty), ``"done"`` (this run, finished: nothing to do),
    ``"resume"`` (this run, unfinished: it resumes), ``"changed"`` (a finished run of other inputs
    or options: ``differs`` names the manifest keys), ``"stale"`` (an unfinished run of other
    inputs or options: discarded when the run starts), ``"foreign"`` (files that are not a
    fastcurate run). ``shards_done``: shards of an unfinished run already processed."""

    kind: str
    differs: List[str] = field(default_factory=list)
    shards_done: int = 0
    shards: int = 0


def output_state(out: PathLike, manifest: Mapping[str, Any]) -> OutputState:
    """Where a run with ``manifest`` (:func:`make_manifest`) would start in ``out``, without
    touching it: the same decision :func:`run_stage` makes."""
    out = Path(out)
    n = len(manifest.get("inputs", []))
    if not out.is_dir() or not any(out.iterdir()):
        return OutputState("new", shards=n)
    stats_path = out / "stats.json"
    mpath = out / _WORK / "manifest.json"
    if stats_path.is_file():
        try:
            old = read_json(stats_path).get("manifest", {})
        except ValueError:
            old = {}
        if old == manifest:
            return OutputState("done", shards_done=n, shards=n)
        return OutputState("changed", _diff(old, dict(manifest)) or ["format"], shards=n)
    if mpath.is_file():
        try:
            old = read_json(mpath)
        except ValueError:
            old = {}
        if old == manifest:
            d = out / _WORK / "done"
            done = sum(1 for f in d.glob("*.json") if f.stem.isdigit()) if d.is_dir() else 0
            return OutputState("resume", shards_done=done, shards=n)
        return OutputState("stale", _diff(old, dict(manifest)) or ["format"], shards=n)
    if _only_start_debris(out):
        return OutputState("new", shards=n)
    return OutputState("foreign", shards=n)


def _clear(out: Path) -> None:
    """Remove a fastcurate run's files from ``out`` (and nothing else)."""
    shutil.rmtree(out / _WORK, ignore_errors=True)
    shutil.rmtree(out / "drops", ignore_errors=True)
    for f in out.glob("part-*.parquet"):
        f.unlink()
    for name in ("stats.json", "timings.json"):
        (out / name).unlink(missing_ok=True)


def _progress(total: Optional[int], desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, disable=not enabled, dynamic_ncols=True,
                leave=False)


def _prepare_out(out: Path, manifest: Dict[str, Any], stage: Stage, overwrite: bool,
                 log: Callable[[str], None]) -> Optional[Dict[str, Any]]:
    """Make ``out`` ready. Returns the stats of a finished identical run (nothing to do), else None."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a directory; give a directory path")
    if not out.exists() or not any(out.iterdir()):
        return None
    stats_path = out / "stats.json"
    mpath = out / _WORK / "manifest.json"
    if stats_path.is_file():
        try:
            prev = read_json(stats_path)
        except ValueError:
            prev = {}
        old = prev.get("manifest", {})
        if old == manifest:
            # Finished before; a kill may have come before the clean-up: finish it.
            shutil.rmtree(out / _WORK, ignore_errors=True)
            log(f"{out} already holds this finished run; nothing to do (use --overwrite to redo it)")
            return prev
        if overwrite:
            log(f"--overwrite: removing the finished {old.get('stage', '?')} run in {out}")
            _clear(out)
            return None
        what = (f"a finished {old.get('stage')} run" if old.get("stage") != stage.name
                else f"a finished {stage.name} run with other inputs or options (differs in: "
                     f"{', '.join(_diff(old, manifest)) or 'format'})")
        raise InputError(f"{out} holds {what}; use another --out, or --overwrite to replace it")
    if mpath.is_file():
        try:
            old = read_json(mpath)
        except ValueError:
            old = {}
        if old == manifest:
            return None  # resume
        # An unfinished run of other inputs or options cannot be resumed and holds no result.
        log(f"discarding the unfinished {old.get('stage', '?')} run in {out} (other inputs or options: "
            f"{', '.join(_diff(old, manifest)) or 'format'})")
        _clear(out)
        return None
    if _only_start_debris(out):
        _clear(out)  # a run killed while starting: nothing was written yet
        return None
    raise InputError(f"{out} exists and holds files that are not a fastcurate run; use an empty or new --out")


def _only_start_debris(out: Path) -> bool:
    """True when ``out`` holds only what a run killed before writing its manifest can leave: the
    empty ``_work``/``drops`` directories and unfinished temp files."""
    for p in out.iterdir():
        if p.is_dir() and p.name in (_WORK, "drops"):
            if any(f.is_file() and not f.name.endswith(".tmp") for f in p.rglob("*")):
                return False
        elif not (p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp")):
            return False
    return True


def run_stage(
    stage: Stage,
    inputs: Union[PathLike, Sequence[PathLike]],
    out: PathLike,
    *,
    columns: Optional[Mapping[str, Optional[str]]] = None,
    on_error: str = "fail",
    overwrite: bool = False,
    threads: Optional[int] = None,
    batch_size: Optional[int] = None,
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
    engine: Union[str, Executor] = "local",
    ray_address: Optional[str] = None,
    _after_shard: Optional[Callable[[str, int], None]] = None,
) -> Dict[str, Any]:
    """Run ``stage`` over ``inputs`` into ``out``; returns the content of ``stats.json``.

    Args:
        inputs: files, directories (searched recursively; a stage output directory gives its
            ``part-*.parquet``) and globs of Parquet, WebDataset ``.tar``, CSV/TSV and JSONL shards.
        out: the output directory. A run killed at any point resumes here from its finished shards
            and gives byte-identical outputs; a finished identical run is not redone.
        columns: the column per role (``id``, ``text``, ``image``, ``url``, ``width``, ``height``);
            None or a missing role: the role's default names (fastcurate.io.columns).
        on_error: ``"fail"`` (or ``"raise"``) stops at an unreadable shard or one without a needed
            column; ``"skip"`` records it in ``stats["bad_shards"]`` and goes on.
        overwrite: replace a finished run of other inputs or options found in ``out``.
        threads: threads for the stage's kernels (None: all cores). Results do not depend on it.
        batch_size: rows per batch (and per output row group); None: the stage's default.
        engine: where the per-shard work runs: ``"local"`` (this process, shard after shard),
            ``"ray"`` (Ray actors; :class:`fastcurate.runner.ray.RayExecutor` with its defaults
            and ``ray_address``), or an :class:`~fastcurate.runner.executor.Executor`. The
            outputs are byte-identical for every engine, and a run killed under one engine
            resumes under another (docs/scale.md).
        ray_address: with ``engine="ray"``: the cluster to join (``host:port``, ``ray://...``,
            ``auto``); None: ``RAY_ADDRESS``, else a new local Ray. A process that has already
            joined Ray uses that one.
    """
    if on_error == "raise":
        on_error = "fail"
    if on_error not in ON_ERROR:
        raise InputError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if batch_size is None:
        batch_size = int(stage.batch_size)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    given = given_columns(columns)
    log = log or _log_to_stderr(stage.name)
    executor = _executor(engine, ray_address, log)
    stage.check_requires()
    t_start = time.perf_counter()

    out = Path(out)
    shards = discover_shards(inputs, exclude=[out])
    input_dirs = sorted({s.path.parent for s in shards if is_stage_output(s.path.parent)})
    manifest = make_manifest(stage, shards, given, batch_size)
    done_stats = _prepare_out(out, manifest, stage, overwrite, log)
    if done_stats is not None:
        return done_stats
    t0 = time.perf_counter()
    executor.connect()  # before the run writes anything: a cluster that is down changes nothing here
    connect_s = time.perf_counter() - t0
    work = out / _WORK
    stale = remove_stale_temps(out, out / "drops", work, work / "scan", work / "done",
                               *[p for p in (work / "shards").glob("*") if p.is_dir()])
    atomic_write_json(work / "manifest.json", manifest)  # first: from here on the directory is a run
    for d in (work / "scan", work / "done", out / "drops"):
        d.mkdir(parents=True, exist_ok=True)
    ctx = Context(stage=stage.name, out=out, work=work, inputs=shards, input_dirs=input_dirs, threads=threads,
                  progress=progress, log=log)
    n_scanned = sum(scan_marker(ctx, s).is_file() for s in shards)
    n_done = sum(done_marker(ctx, s).is_file() for s in shards)
    if n_scanned or n_done:
        log(f"resuming in {out}: " + (f"{n_scanned} of {len(shards)} shards scanned, " if stage.scans else "")
            + f"{n_done} of {len(shards)} processed" + (f"; removed {stale} unfinished temp files" if stale else ""))

    bad: Dict[int, Dict[str, Any]] = {}

    def fail_or_skip(shard: ShardRef, e: BaseException, phase: str, rows: int) -> None:
        if on_error == "fail":
            msg = str(e)
            raise type(e)(f"{msg} (or pass --on-error skip to skip such shards and record them)") from None
        log(f"skipping bad shard {shard.path}: {e}")
        bad[shard.index] = {"file": str(shard.path), "rows": rows, "error": str(e), "phase": phase, "bad": True}

    timings: Dict[str, Any] = {"connect_s": connect_s}
    arrow_pool = prefer_jemalloc()  # docs/curate.md "Speed": faster and smaller than mimalloc here
    state: Optional[Dict[str, Any]] = None
    scan_rows: Dict[int, int] = {}
    good: List[Dict[str, Any]] = []
    set_up = False
    executor.start(stage, ctx, given, batch_size)
    try:
        # ---- the global pass
        if stage.scans:
            t0 = time.perf_counter()
            summaries: List[Optional[Dict[str, Any]]] = []
            with _progress(_known_total(shards), f"{stage.name}: scan", progress) as raw_bar:
                bar = LockedBar(raw_bar)  # shards may be scanned at once, on threads
                todo = [s for s in shards if not scan_marker(ctx, s).is_file()]
                to_scan = {s.index for s in todo}
                computed = executor.map("scan", todo, None, bar)
                for s in shards:
                    m = scan_marker(ctx, s)
                    if s.index in to_scan:
                        s2, rec = next(computed)
                        assert s2.index == s.index, "an executor must yield the shards in order"
                        if isinstance(rec, BaseException):
                            e = rec
                            rec = {"file": str(s.path), "rows": known_rows(s), "error": str(e), "bad": True}
                            fail_or_skip(s, e, "scan", rec["rows"])
                            atomic_write_json(m, rec)
                        if _after_shard is not None:
                            _after_shard("scan", s.index)
                    else:
                        rec = read_json(m)
                        bar.update(rec["rows"])
                    if rec.get("bad"):
                        bad[s.index] = dict(rec, phase="scan")
                        summaries.append(None)
                    else:
                        scan_rows[s.index] = int(rec["rows"])
                        summaries.append(rec["summary"])
            _all_bad_check(shards, bad)
            timings["scan_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            rpath = work / "reduce.json"
            if rpath.is_file():
                state = read_json(rpath)
            else:
                state = stage.reduce(ctx, summaries)
                atomic_write_json(rpath, state)
            timings["reduce_s"] = time.perf_counter() - t0

        # ---- the per-shard pass
        t0 = time.perf_counter()
        records: Dict[int, Dict[str, Any]] = {}
        todo = [s for s in shards if s.index not in bad]
        set_up = True
        executor.setup(state)
        with _progress(_known_total(todo), f"{stage.name}", progress) as bar:
            pending = [s for s in todo if not done_marker(ctx, s).is_file() and not _bad_marker(ctx, s).is_file()]
            to_process = {s.index for s in pending}
            computed = executor.map("process", pending, state, bar)
            for s in todo:
                m = done_marker(ctx, s)
                bad_m = _bad_marker(ctx, s)
                if s.index in to_process:
                    s2, rec = next(computed)
                    assert s2.index == s.index, "an executor must yield the shards in order"
                    if isinstance(rec, BaseException):
                        # Damage in columns the global pass did not read: the shard's part in the
                        # global state stays (finished shards depend on it); its rows are dropped.
                        e = rec
                        rows = scan_rows.get(s.index, 0) or known_rows(s)
                        rec = {"file": str(s.path), "rows": rows, "error": str(e), "bad": True}
                        fail_or_skip(s, e, "process", rows)
                        atomic_write_json(bad_m, rec)
                    if _after_shard is not None:
                        _after_shard("process", s.index)
                elif m.is_file():
                    rec = read_json(m)
                    bar.update(rec["rows"])
                else:
                    rec = read_json(bad_m)
                if rec.get("bad"):
                    bad[s.index] = dict(rec, phase="process")
                else:
                    records[s.index] = rec
        if not stage.scans:
            _all_bad_check(shards, bad)
        timings["process_s"] = time.perf_counter() - t0

        # ---- accounting, stage outputs, stats.json (last: it marks the run finished)
        t0 = time.perf_counter()
        good = [records[i] for i in sorted(records)]
        executor.before_finalize(state)
        stage_stats = stage.finalize(ctx, good, state)
        timings["finalize_s"] = time.perf_counter() - t0
    finally:
        try:
            if set_up:
                stage.teardown()
        finally:
            executor.close()

    dropped = {r: 0 for r in list(RUNNER_REASONS) + list(stage.reasons)}
    for rec in good:
        for k, v in rec["dropped"].items():
            dropped[k] = dropped.get(k, 0) + int(v)
    dropped["bad_shard"] += sum(int(b["rows"]) for b in bad.values())
    rows_in = sum(int(r["rows"]) for r in good) + sum(int(b["rows"]) for b in bad.values())
    rows_kept = sum(int(r["kept"]) for r in good)
    if rows_in != rows_kept + sum(dropped.values()):
        raise FastcurateError(f"row accounting is off: rows_in={rows_in}, kept={rows_kept}, dropped={dropped}")
    warnings = _warnings(stage, good, rows_in, rows_kept, dropped)
    for w in warnings:
        log(f"warning: {w}")
    first = good[0] if good else {}
    stats: Dict[str, Any] = {
        "stage": stage.name,
        "rows_in": rows_in,
        "rows_kept": rows_kept,
        "rows_dropped": dropped,
        "reasons": {**RUNNER_REASONS, **stage.reasons},
        "shards_in": len(shards),
        "shards_out": len(good),
        "bad_shards": [{"file": b["file"], "rows": int(b["rows"]), "error": b["error"], "phase": b["phase"]}
                       for _, b in sorted(bad.items())],
        "outputs": [s.part_name for s in shards if s.index in records],
        "columns": first.get("roles", {}),
        "id_source": first.get("id_source"),
        "warnings": warnings,
        stage.name: stage_stats,
        "manifest": manifest,
    }
    for s in shards:  # a shard that failed in the process pass may have left no part; make sure
        if s.index not in records:
            (out / s.part_name).unlink(missing_ok=True)
            (out / "drops" / s.part_name).unlink(missing_ok=True)
    # A worker that died while writing (and whose shard was redone) left its temp files: every
    # writer has finished now, so any temp file left is garbage.
    remove_stale_temps(out, out / "drops")
    timings["total_s"] = time.perf_counter() - t_start
    timings = {k: round(v, 3) for k, v in timings.items()}
    timings["rows_per_s"] = round(rows_in / timings["total_s"], 1) if timings["total_s"] > 0 else 0.0
    timings["resumed"] = bool(n_scanned or n_done)
    timings["engine"] = executor.name
    timings["arrow_memory_pool"] = arrow_pool
    timings.update(executor.timings())
    if ctx.timings:
        timings[stage.name] = ctx.timings
    atomic_write_json(out / "timings.json", timings)
    atomic_write_json(out / "stats.json", stats)
    shutil.rmtree(work, ignore_errors=True)
    return stats


def _executor(engine: Union[str, Executor], ray_address: Optional[str],
              log: Callable[[str], None]) -> Executor:
    if isinstance(engine, Executor):
        if ray_address is not None:
            raise InputError("ray_address goes with engine='ray'; give it to the executor you pass instead")
        return engine
    if engine == "local":
        if ray_address is not None:
            raise InputError("ray_address is given but the engine is local: add engine='ray' (--engine ray)")
        return LocalExecutor()
    if engine == "ray":
        # Imported only here: the local engine never imports ray.
        from .ray import RayExecutor

        return RayExecutor(address=ray_address, log=log)
    raise InputError(f"unknown engine {engine!r}; the engines are {list(ENGINES)}")


def _bad_marker(ctx: Context, shard: ShardRef) -> Path:
    return ctx.work / "done" / f"{shard.index:05d}.bad.json"


def _known_total(shards: List[ShardRef]) -> Optional[int]:
    """Total rows for the progress bar when every shard's footer tells it (Parquet), else None."""
    if not shards or any(s.format != "parquet" for s in shards):
        return None
    import pyarrow.parquet as pq

    total = 0
    for s in shards:
        try:
            total += pq.ParquetFile(s.path).metadata.num_rows
        except Exception:
            return None
    return total


def _all_bad_check(shards: List[ShardRef], bad: Dict[int, Dict[str, Any]]) -> None:
    if shards and len(bad) == len(shards):
        lines = "; ".join(f"{b['file']}: {b['error']}" for _, b in sorted(bad.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise InputError(f"no input shard could be read ({len(shards)} skipped): {lines}{more}")


def _warnings(stage: Stage, good: List[Dict[str, Any]], rows_in: int, rows_kept: int,
              dropped: Dict[str, int]) -> List[str]:
    out = []
    # A needed column that is null in every row is almost always the wrong column.
    for role in stage.needs:
        total_null = sum(int(r.get("nulls", {}).get(role, 0)) for r in good)
        seen = sum(int(r["rows"]) - int(r["dropped"].get("null_id", 0)) for r in good if role in r.get("nulls", {}))
        if seen and total_null == seen:
            col = next((r["roles"].get(role) for r in good if r.get("roles", {}).get(role)), role)
            out.append(f"the {role} column {col!r} is null in all {seen:,} rows; "
                       f"pick the right column with {ROLE_FLAGS[role]} NAME")
    if good and good[0].get("id_source") == "row":
        out.append("the input has no id column and no URL: rows are named <file>:<row>, which does not "
                   "survive re-sharding; give an id column with --id-column")
    if rows_in == 0:
        out.append("the input holds no rows")
    elif rows_kept == 0:
        top = max(dropped.items(), key=lambda kv: kv[1])
        out.append(f"no row was kept: {top[1]:,} of {rows_in:,} dropped as {top[0]!r}")
    return out
