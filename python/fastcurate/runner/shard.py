"""The work on one shard, the same under every executor: read it, give its valid rows to the stage,
write what comes back. The local runner calls these functions in a loop; the Ray runner calls them
in tasks. Each function writes its outputs atomically and its done marker last (the local runner:
once the outputs are on disk, in the background, runner/commit.py), so a killed call is simply
redone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import FastcurateError, FormatError, InputError
from ..io.arrays import bool_array, from_numpy, null_mask, repeat_string, string_array
from ..io.atomic import atomic_write_json, deferred_fsync
from ..io.columns import UID, Roles, resolve_roles
from ..io.discover import ShardRef
from ..io.readers import ShardReader, open_shard
from ..io.writer import AtomicParquetWriter
from .commit import MarkerCommitter
from .stage import Batch, Context, Result, Stage

if TYPE_CHECKING:
    import pyarrow as pa

    from .lookahead import Lookahead

__all__ = ["ShardReadError", "Opened", "open_and_resolve", "open_for", "scan_shard", "process_shard", "drop_schema", "scan_marker",
           "done_marker", "role_batches"]


class ShardReadError(FormatError):
    """A shard's data could not be read (raised through the stage's batch iterator, recognised by
    the runner as a bad shard, not as a stage failure)."""


def drop_schema() -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([("uid", pa.string()), ("stage", pa.string()), ("reason", pa.string()), ("detail", pa.string())])



def scan_marker(ctx: Context, shard: ShardRef) -> Path:
    return ctx.work / "scan" / f"{shard.index:05d}.json"


def done_marker(ctx: Context, shard: ShardRef) -> Path:
    return ctx.work / "done" / f"{shard.index:05d}.json"


def open_and_resolve(shard: ShardRef, stage: Stage, given: Mapping[str, Optional[str]],
                     batch_size: int) -> Tuple[ShardReader, Roles]:
    reader = open_shard(shard, batch_size)
    roles = resolve_roles(reader.schema, given, stage.needs, stage.wants, str(shard.path))
    return reader, roles


def _as_string(arr: "pa.Array") -> "pa.Array":
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_string(t):
        return arr
    if pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_null(t) or "view" in str(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.array([None if v is None else v.hex() for v in arr.to_pylist()], pa.string())
    raise InputError(f"cannot make ids from a column of type {t}")


def make_uid(data: "pa.RecordBatch", roles: Roles, shard: ShardRef, start_row: int) -> "pa.Array":
    """The ``uid`` of each row (docs/runner.md): the id column, else the URL, else ``stem:row``."""
    import pyarrow as pa

    if roles.id_source == "row":
        stem = shard.path.name.split(".")[0]
        return pa.array([f"{stem}:{i}" for i in range(start_row, start_row + data.num_rows)], pa.string())
    return _as_string(data.column(roles.columns["id"]))


@dataclass
class Opened:
    """A shard opened for one phase: its reader, its roles and its raw batches of the columns the
    phase reads (possibly already being read ahead, runner/lookahead.py)."""

    reader: ShardReader
    roles: Roles
    raw: Iterator["pa.RecordBatch"]
    close: Callable[[], None] = lambda: None  # stops a read that will not be consumed
    with_uid: bool = True  # False: a scan that does not read the ids (Stage.scan_uses_uid)
    columns: Optional[List[str]] = None  # the columns read (None: all of them)


def open_for(phase: str, stage: Stage, shard: ShardRef, given: Mapping[str, Optional[str]], batch_size: int) -> Opened:
    """Open ``shard`` for ``phase`` (``"scan"`` or ``"process"``): resolve its roles and start
    iterating the columns the phase reads. Raises what opening raises (an unreadable file, a
    missing column); read errors come from ``raw``."""
    reader, roles = open_and_resolve(shard, stage, given, batch_size)
    role_list = stage.scan_roles() if phase == "scan" else stage.process_roles()
    # The ids are read to make each row's uid and to leave out rows without one; a scan that uses
    # no uid skips them where no row can lack one (generated ids, or a footer that proves it).
    with_uid = not (phase == "scan" and not stage.scan_uses_uid and role_list is not None
                    and (roles.id_source == "row" or reader.never_null(roles.columns["id"])))
    columns = _read_columns(reader, roles, role_list, stage.extra_columns(), with_id=with_uid)
    gen = reader.batches(columns)
    return Opened(reader, roles, gen, getattr(gen, "close", lambda: None), with_uid, columns)


def _read_columns(reader: ShardReader, roles: Roles, role_list: Optional[Sequence[str]],
                  extra: Sequence[str] = (), with_id: bool = True) -> Optional[List[str]]:
    """The columns to read: the id's (unless not ``with_id``), the roles', and the ``extra``
    names the shard has; None (every column) when ``role_list`` is None."""
    if role_list is None:
        return None
    cols = [roles.columns[r] for r in (("id",) if with_id else ()) + tuple(role_list) if r in roles.columns]
    cols += [c for c in extra if c in reader.schema.names]
    return list(dict.fromkeys(cols))


def _valid_batches(raw_batches: Iterable["pa.RecordBatch"], roles: Roles, shard: ShardRef,
                   on_null: Callable[["pa.Array", np.ndarray], None], with_uid: bool = True) -> Iterator[Batch]:
    """The shard's batches (``raw_batches``, as its reader gives them) with ``uid`` first and the
    rows without an id taken out (``on_null`` gets their physical row numbers); ``offset`` counts
    valid rows. Not ``with_uid``: the ids were not read because no row lacks one (open_for), and
    the batches are passed on as they are, without a uid column."""
    import pyarrow as pa

    physical = 0
    valid = 0
    try:
        for raw in raw_batches:
            if not with_uid:
                if raw.num_rows:
                    yield Batch(shard, valid, raw, roles, has_uid=False)
                    valid += raw.num_rows
                continue
            uid = make_uid(raw, roles, shard, physical)
            names = [n for n in raw.schema.names if n != UID]
            data = pa.RecordBatch.from_arrays([uid] + [raw.column(n) for n in names], names=[UID] + names)
            if uid.null_count:
                ok = ~null_mask(uid)
                on_null(data.filter(bool_array(~ok)).column(0), physical + np.flatnonzero(~ok))
                data = data.filter(bool_array(ok))
            physical += raw.num_rows
            if data.num_rows:
                yield Batch(shard, valid, data, roles)
                valid += data.num_rows
    except FormatError as e:
        if isinstance(e, ShardReadError):
            raise
        raise ShardReadError(str(e)) from None


def role_batches(shards: Sequence[ShardRef], roles: Sequence[str], columns: Mapping[str, Optional[str]],
                 batch_size: int = 65536, limit_rows: Optional[int] = None) -> Iterator[Batch]:
    """The valid rows (with an id) of ``shards``, in order, as batches holding ``uid`` and the
    columns of ``roles`` (all needed: a missing one is an error naming the file and the flag);
    stops after about ``limit_rows`` rows. For looks at the input before a run
    (:meth:`Stage.estimate`): nothing is written."""
    seen = 0
    for shard in shards:
        reader = open_shard(shard, batch_size)
        r = resolve_roles(reader.schema, columns, tuple(roles), (), str(shard.path))
        for b in _valid_batches(reader.batches(_read_columns(reader, r, roles)), r, shard, lambda _u, _r: None):
            if limit_rows is not None and seen + len(b) > limit_rows:
                b = Batch(b.shard, b.offset, b.data.slice(0, limit_rows - seen), b.roles)
            seen += len(b)
            if len(b):
                yield b
            if limit_rows is not None and seen >= limit_rows:
                return


def scan_shard(stage: Stage, ctx: Context, shard: ShardRef, given: Mapping[str, Optional[str]],
               batch_size: int, bar: Any = None, commit: Optional[MarkerCommitter] = None,
               ahead: Optional["Lookahead"] = None) -> Dict[str, Any]:
    """The global pass over one shard; writes and returns its marker ``{rows, null_id, summary}``
    (with ``commit``: hands it to ``commit`` with the files the shard wrote, see runner/commit.py;
    with ``ahead``: takes the shard from it, opened ahead, see runner/lookahead.py)."""
    op = ahead.open(shard) if ahead is not None else open_for("scan", stage, shard, given, batch_size)
    return _with_marker(op, commit, scan_marker(ctx, shard), lambda: _scan(stage, ctx, shard, op, bar))


def _with_marker(op: Opened, commit: Optional[MarkerCommitter], marker_path: Path,
                 work: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """Run a shard's ``work`` and write the marker it returns to ``marker_path``: in line, or with
    ``commit`` once the files the work wrote are on disk (runner/commit.py)."""
    try:
        if commit is None:
            marker = work()
            atomic_write_json(marker_path, marker)
            return marker
        with deferred_fsync() as files:
            marker = work()
    finally:
        op.close()  # a stage that stopped early leaves no read running
    commit.submit(files, marker_path, marker)
    return marker


def _scan(stage: Stage, ctx: Context, shard: ShardRef, op: Opened, bar: Any) -> Dict[str, Any]:
    counts = {"rows": 0, "null_id": 0}

    def on_null(_uids: "pa.Array", rows: np.ndarray) -> None:
        counts["null_id"] += len(rows)
        counts["rows"] += len(rows)
        if bar is not None:
            bar.update(len(rows))

    def batches() -> Iterator[Batch]:
        for b in _valid_batches(op.raw, op.roles, shard, on_null, op.with_uid):
            counts["rows"] += len(b)
            if bar is not None:
                bar.update(len(b))
            yield b

    summary = stage.scan(ctx, shard, batches())
    return {"file": str(shard.path), "rows": counts["rows"], "null_id": counts["null_id"], "bad": False,
            "summary": summary}


def output_schema(stage: Stage, reader: ShardReader, roles: Roles) -> Tuple["pa.Schema", List[str], List["pa.Field"]]:
    """``uid`` + the input columns (less an input ``uid`` and any column the stage replaces) + the
    stage's columns. Returns the schema, the input columns kept, and the stage's fields."""
    import pyarrow as pa

    added = stage.output_fields(reader.schema, roles)
    added_names = {f.name for f in added}
    if UID in added_names:
        raise InputError(f"stage {stage.name} may not write a column named {UID!r}")
    wanted = _read_columns(reader, roles, stage.process_roles(), stage.extra_columns())
    kept = [f for f in reader.schema if f.name != UID and f.name not in added_names
            and (wanted is None or f.name in wanted and f.name != roles.columns.get("id"))]
    return pa.schema([pa.field(UID, pa.string())] + kept + added), [f.name for f in kept], added


def _to_arrow(values: Any, f: "pa.Field") -> "pa.Array":
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == f.type else values.cast(f.type)
    if isinstance(values, np.ndarray) and values.ndim == 1:  # pa.array would import pandas (io/arrays.py)
        try:
            return from_numpy(values, f.type)
        except TypeError:  # not numbers or bools, or no same-kind cast to the field's type
            pass
    return pa.array(values, type=f.type)


def _reasons(stage: Stage, res: Result, keep: np.ndarray, nd: int) -> Tuple["pa.Array", Dict[str, int]]:
    """The dropped rows' reasons as a string column, and the count per reason."""
    import pyarrow as pa

    if res.codes is not None:
        names = list(res.code_names or [])
        c = np.asarray(res.codes)[~keep]
        if len(c) and (int(c.min()) < 1 or int(c.max()) >= len(names)):
            raise FastcurateError(f"stage {stage.name}: drop codes outside 1..{len(names) - 1}")
        counts = np.bincount(c, minlength=len(names))
        uniq = {names[i]: int(n) for i, n in enumerate(counts) if n}
        arr = pa.DictionaryArray.from_arrays(from_numpy(c, pa.int32()), string_array(names))
        return arr.cast(pa.string()), uniq
    reason = res.reason
    if reason is None:
        raise FastcurateError(f"stage {stage.name} dropped rows without a reason")
    if isinstance(reason, str):
        return repeat_string(reason, nd), {reason: nd}
    r_np = np.asarray(reason, dtype=object)
    if len(r_np) != nd:
        raise FastcurateError(f"stage {stage.name}: {len(r_np)} reasons for {nd} dropped rows")
    u, cnt = np.unique(r_np.astype(str), return_counts=True)
    return pa.array(r_np.tolist(), pa.string()), dict(zip(u.tolist(), (int(x) for x in cnt)))


def process_shard(stage: Stage, ctx: Context, shard: ShardRef, given: Mapping[str, Optional[str]],
                  batch_size: int, bar: Any = None, commit: Optional[MarkerCommitter] = None,
                  ahead: Optional["Lookahead"] = None) -> Dict[str, Any]:
    """The per-shard pass: writes ``part-NNNNN.parquet`` (kept rows), ``drops/part-NNNNN.parquet``
    (dropped rows) and then the done marker ``{rows, kept, dropped, nulls, summary}``, which it
    returns (``commit``, ``ahead``: as for :func:`scan_shard`)."""
    t0 = time.perf_counter()
    op = ahead.open(shard) if ahead is not None else open_for("process", stage, shard, given, batch_size)
    return _with_marker(op, commit, done_marker(ctx, shard), lambda: _process(stage, ctx, shard, op, bar, t0))


def _process(stage: Stage, ctx: Context, shard: ShardRef, op: Opened, bar: Any, t0: float) -> Dict[str, Any]:
    import pyarrow as pa

    reader, roles = op.reader, op.roles
    schema, in_cols, added = output_schema(stage, reader, roles)
    rows = 0
    kept = 0
    dropped: Dict[str, int] = {}
    read = op.columns
    nulls = {r: 0 for r in stage.needs if r in roles and (read is None or roles.columns[r] in read)}
    dschema = drop_schema()
    reasons = set(stage.reasons)
    part = AtomicParquetWriter(ctx.out / shard.part_name, schema)
    # stage and reason hold a few distinct strings: dictionary pages instead of the strings
    # compressed again for every dropped row (a third less for zstd in curate's per-shard pass)
    drops = AtomicParquetWriter(ctx.out / "drops" / shard.part_name, dschema, dictionary=("stage", "reason"))
    try:
        def on_null(uids: "pa.Array", phys: np.ndarray) -> None:
            nonlocal rows
            detail = string_array([f"{shard.path.name}:{int(r)}" for r in phys])
            n = len(phys)
            drops.write(pa.RecordBatch.from_arrays(
                [uids, repeat_string(stage.name, n), repeat_string("null_id", n), detail],
                schema=dschema))
            dropped["null_id"] = dropped.get("null_id", 0) + n
            rows += n
            if bar is not None:
                bar.update(n)

        pending: List[Batch] = []

        def batches() -> Iterator[Batch]:
            for b in _valid_batches(op.raw, roles, shard, on_null):
                for r in nulls:
                    col = b.column(r)  # absent when the stage's process pass does not read it
                    if col is not None:
                        nulls[r] += col.null_count
                pending.append(b)
                yield b

        for res in stage.process(ctx, shard, batches()):
            if not pending:
                raise FastcurateError(f"stage {stage.name} yielded more results than batches for {shard.path}")
            b = pending.pop(0)
            n = len(b)
            out_cols = [b.data.column(0)] + [b.data.column(c) for c in in_cols]
            for f in added:
                if f.name not in res.columns:
                    raise FastcurateError(f"stage {stage.name} did not return its column {f.name!r}")
                arr = _to_arrow(res.columns[f.name], f)
                if len(arr) != n:
                    raise FastcurateError(f"stage {stage.name}: column {f.name!r} has {len(arr)} values for {n} rows")
                out_cols.append(arr)
            full = pa.RecordBatch.from_arrays(out_cols, schema=schema)
            if res.keep is None:
                part.write(full)
                kept += n
            else:
                keep = np.asarray(res.keep, dtype=bool)
                if keep.shape != (n,):
                    raise FastcurateError(f"stage {stage.name}: keep mask of shape {keep.shape} for {n} rows")
                nk = int(keep.sum())
                if nk:
                    part.write(full.filter(bool_array(keep)))
                kept += nk
                nd = n - nk
                if nd:
                    reason_arr, uniq = _reasons(stage, res, keep, nd)
                    unknown = set(uniq) - reasons
                    if unknown:
                        raise FastcurateError(f"stage {stage.name} used undeclared drop reasons {sorted(unknown)}")
                    for k, v in uniq.items():
                        dropped[k] = dropped.get(k, 0) + int(v)
                    detail = (pa.array(list(res.detail), pa.string()) if res.detail is not None
                              else pa.nulls(nd, pa.string()))
                    if len(detail) != nd:
                        raise FastcurateError(f"stage {stage.name}: {len(detail)} details for {nd} dropped rows")
                    drops.write(pa.RecordBatch.from_arrays(
                        [b.uid.filter(bool_array(~keep)), repeat_string(stage.name, nd), reason_arr, detail],
                        schema=dschema))
            rows += n
            if bar is not None:
                bar.update(n)
        if pending:
            raise FastcurateError(f"stage {stage.name} yielded fewer results than batches for {shard.path}")
        part.commit()
        drops.commit()
    except BaseException:
        part.abort()
        drops.abort()
        raise
    marker = {"file": str(shard.path), "rows": rows, "kept": kept, "dropped": dropped, "bad": False,
              "nulls": nulls, "roles": roles.columns, "id_source": roles.id_source,
              "summary": stage.shard_summary(ctx, shard), "seconds": round(time.perf_counter() - t0, 3)}
    if rows != kept + sum(dropped.values()):  # an internal invariant: fail loudly, never write wrong stats
        raise FastcurateError(f"{shard.path}: row accounting is off: rows {rows}, kept {kept}, dropped {dropped}")
    return marker


def known_rows(shard: ShardRef) -> int:
    """What is known of an unreadable shard's size: the Parquet footer's row count, else 0."""
    if shard.format != "parquet":
        return 0
    try:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(shard.path).metadata.num_rows)
    except Exception:  # the footer is gone too
        return 0
