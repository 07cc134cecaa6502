"""MetaCLIP curation of a pool of Parquet shards, end to end, in bounded memory.

Two streaming passes over the shards:

1. **count**: read the text and id columns batch by batch, match every text against the metadata,
   and store the shard's match result (CSR), key hashes and row statistics under ``DIR/_work``.
   The global entry counts are the sum over shards.
2. **select**: turn the counts into a threshold ``t`` (given, from ``p``, or from a target size),
   draw the balanced subset (a pure function of ``(seed, uid)``), and stream each shard again,
   writing the kept rows plus their matched entry ids to ``DIR/part-NNNNN.parquet``.

Memory holds one shard's match result and one record batch at a time (plus the entry counts),
whatever the pool size. Every file is written to a temp name and renamed, and each shard's work is
marked done only once written, so a run killed at any point resumes from finished shards and gives
byte-identical outputs (Parquet writer options are pinned; no output carries a timestamp).

Every input row is accounted for in ``stats.json``: ``rows_in == rows_kept + sum(rows_dropped)``,
with drop reasons ``null text``, ``null id``, ``no match``, ``not sampled`` and ``bad shard``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...kernels.balance import count_entries, entry_probs, hash_keys, p_to_t, t_for_target_size, t_to_p, expected_size
from ...kernels.balance import balance as _balance
from ...errors import FastcurateError, FormatError, InputError, InputTypeError
from ...metadata import load_metadata, save_metadata
from ...io.atomic import atomic_path, atomic_write_bytes, discover_inputs, pick_column

__all__ = ["curate", "DEFAULT_T", "TEXT_COLUMN_CANDIDATES", "ID_COLUMN_CANDIDATES", "ENTRY_IDS_COLUMN"]

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_T = 20000  # MetaCLIP's (and OpenAI CLIP's) t for 400M pairs
# Column names tried when the user names none: ours/LAION ("TEXT"), img2dataset ("caption"),
# MetaCLIP / DataComp style ("text", "uid"), img2dataset's "key", then the URL.
TEXT_COLUMN_CANDIDATES = ("TEXT", "caption", "text", "txt")
ID_COLUMN_CANDIDATES = ("uid", "key", "URL", "url")
ENTRY_IDS_COLUMN = "entry_ids"
REASONS = ("null text", "null id", "no match", "not sampled", "bad shard")
_WORK = "_work"
_FORMAT_VERSION = 1

# Pinned writer options: the same input gives the same bytes (with the same pyarrow version).
# zstd level 1 and no dictionary for string/binary columns: captions, URLs and uids are nearly all
# distinct, so dictionary attempts only cost time; level 1 writes ~1.7x faster than level 3 for
# ~20% larger files. Other columns keep dictionary encoding (see _writer_options).
_PARQUET_OPTIONS = dict(
    compression="zstd",
    compression_level=1,
    write_statistics=True,
    data_page_size=1 << 20,
    version="2.6",
)


def _writer_options(schema: Any) -> Dict[str, Any]:
    import pyarrow as pa

    dict_cols = [f.name for f in schema if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                                                or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
                                                or pa.types.is_list(f.type))]
    return dict(_PARQUET_OPTIONS, use_dictionary=dict_cols)


def _prefetch(it: Any, depth: int = 2) -> Any:
    """Iterate `it` in a background thread, `depth` items ahead: Parquet decoding (which releases
    the GIL) then overlaps matching and writing. Exceptions are re-raised in the consumer."""
    import queue
    import threading

    q: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
    stop = threading.Event()
    _END = object()

    def run() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((None, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((None, _END))
        except BaseException as e:  # handed to the consumer
            q.put((e, None))

    th = threading.Thread(target=run, name="fastcurate-prefetch", daemon=True)
    th.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        th.join()


@dataclass
class _Columns:
    text: str
    key: str


def _progress(total: int, desc: str, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, disable=not enabled, dynamic_ncols=True)


def _default_matcher(entries: List[str]) -> Any:
    """fastcurate.Matcher in MetaCLIP mode (case-sensitive, spacing semantics of DESIGN.md)."""
    try:
        import fastcurate

        M = getattr(fastcurate, "Matcher", None)
        if M is None:
            from fastcurate._core import Matcher as M  # type: ignore[no-redef]
    except ImportError as e:  # pragma: no cover - only without the compiled matcher
        raise FastcurateError(f"fastcurate.Matcher is not available ({e}); reinstall fastcurate") from None
    return M(entries, mode="metaclip", case_sensitive=True)


def _open_parquet(path: Path):  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise FormatError(f"{path}: unreadable or truncated Parquet file ({e}); re-download it or pass --on-error skip") from None


def _resolve_columns(pf: Any, path: Path, text_column: Optional[str], id_column: Optional[str]) -> _Columns:
    names = pf.schema_arrow.names
    return _Columns(pick_column(names, text_column, TEXT_COLUMN_CANDIDATES, "text", path, "--text-column"),
                    pick_column(names, id_column, ID_COLUMN_CANDIDATES, "id", path, "--id-column"))


def _check_types(pf: Any, path: Path, cols: _Columns) -> None:
    import pyarrow as pa

    schema = pf.schema_arrow
    for name in (cols.text, cols.key):
        if name not in schema.names:
            raise InputError(f"{path}: no column {name!r}; the columns are {list(schema.names)}")
    t = schema.field(cols.text).type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise InputTypeError(
            f"{path}: text column {cols.text!r} has type {t}, not string; pick the caption column with --text-column"
        )
    k = schema.field(cols.key).type
    if pa.types.is_dictionary(k):
        k = k.value_type
    if not (pa.types.is_string(k) or pa.types.is_large_string(k) or pa.types.is_binary(k)
            or pa.types.is_large_binary(k) or pa.types.is_integer(k)):
        raise InputTypeError(f"{path}: id column {cols.key!r} has type {k}; it must hold strings or integers")
    if cols.text == ENTRY_IDS_COLUMN or ENTRY_IDS_COLUMN in schema.names:
        raise InputError(f"{path}: already has a column {ENTRY_IDS_COLUMN!r} (curated output as input?); drop or rename it")


def _decode(arr: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_dictionary(arr.type):
        return arr.dictionary_decode()
    return arr


# ---------------------------------------------------------------- work files (pass 1 results)

def _shard_dir(out: Path, i: int) -> Path:
    return out / _WORK / f"shard-{i:05d}"


def _save_npy(path: Path, a: np.ndarray) -> None:
    atomic_write_bytes(path, _npy_bytes(a))


def _load_shard_csr(d: Path, mmap: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    mode = "r" if mmap else None
    return (np.load(d / "offsets.npy", mmap_mode=mode), np.load(d / "ids.npy", mmap_mode=mode),
            np.load(d / "keys.npy", mmap_mode=mode))


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


# ---------------------------------------------------------------- pass 1

def _count_shard(
    path: Path, i: int, out: Path, cols: _Columns, matcher: Any, n_entries: int, threads: Optional[int],
    batch_size: int, bar: Any,
) -> Dict[str, Any]:
    """Match one shard; store its CSR (rows with a null id emptied), key hashes and row stats."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pf = _open_parquet(path)
    _check_types(pf, path, cols)
    offs: List[np.ndarray] = []
    idss: List[np.ndarray] = []
    keys: List[np.ndarray] = []
    rows = null_text = null_id = 0
    base = 0
    try:
        batches = _prefetch(pf.iter_batches(batch_size=batch_size, columns=[cols.text, cols.key], use_threads=True))
        for batch in batches:
            text = _decode(batch.column(0))
            key = _decode(batch.column(1))
            n = len(batch)
            r = matcher.match(text, threads=threads)
            o = np.asarray(r.offsets, dtype=np.int64)
            ids = np.asarray(r.ids, dtype=np.int32)
            text_null = text.is_null().to_numpy(zero_copy_only=False) if text.null_count else None
            key_null = key.is_null().to_numpy(zero_copy_only=False) if key.null_count else None
            nt = int(text_null.sum()) if text_null is not None else 0
            nk = 0
            if key_null is not None:
                # A row without an id cannot get a reproducible draw: drop it ("null id") before
                # counting, like MetaCLIP drops rows outside its valid uuids. Null text takes precedence.
                drop = key_null & ~text_null if text_null is not None else key_null
                nk = int(drop.sum())
                if key_null.any():
                    lens = np.diff(o)
                    keep_ids = np.repeat(~key_null, lens)
                    ids = ids[keep_ids]
                    lens[key_null] = 0
                    o = np.zeros(n + 1, dtype=np.int64)
                    np.cumsum(lens, out=o[1:])
                key = pc.fill_null(key, "" if (pa.types.is_string(key.type) or pa.types.is_large_string(key.type)
                                              or pa.types.is_binary(key.type) or pa.types.is_large_binary(key.type)) else 0)
            kh = hash_keys(key)
            offs.append(o[1:] - o[0] + base)
            base += int(o[-1] - o[0])
            idss.append(ids)
            keys.append(kh)
            rows += n
            null_text += nt
            null_id += nk
            bar.update(n)
    except FastcurateError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise FormatError(f"{path}: unreadable or truncated Parquet data after {rows} rows ({e}); "
                          "re-download it or pass --on-error skip") from None
    if rows != pf.metadata.num_rows:
        raise FormatError(f"{path}: read {rows} rows but the footer says {pf.metadata.num_rows}")
    offsets = np.concatenate([np.zeros(1, dtype=np.int64)] + offs)
    ids_all = np.concatenate(idss) if idss else np.zeros(0, dtype=np.int32)
    keys_all = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
    d = _shard_dir(out, i)
    d.mkdir(parents=True, exist_ok=True)
    _save_npy(d / "offsets.npy", offsets)
    _save_npy(d / "ids.npy", ids_all)
    _save_npy(d / "keys.npy", keys_all)
    matched = int(np.count_nonzero(np.diff(offsets)))
    info = {"file": str(path), "rows": rows, "null_text": null_text, "null_id": null_id,
            "no_match": rows - null_text - null_id - matched, "matched": matched, "bad": False}
    _write_json(d / "done.json", info)  # written last: marks the shard's pass 1 as finished
    return info


def _bad_shard(path: Path, i: int, out: Path, err: Exception) -> Dict[str, Any]:
    rows = 0
    try:  # the footer may still tell how many rows were lost
        import pyarrow.parquet as pq

        rows = int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:
        rows = 0
    info = {"file": str(path), "rows": rows, "bad": True, "error": str(err),
            "null_text": 0, "null_id": 0, "no_match": 0, "matched": 0}
    d = _shard_dir(out, i)
    d.mkdir(parents=True, exist_ok=True)
    _write_json(d / "done.json", info)
    return info


# ---------------------------------------------------------------- pass 2

def _select_shard(
    path: Path, i: int, out: Path, cols: _Columns, keep: np.ndarray, offsets: np.ndarray, ids: np.ndarray,
    batch_size: int, bar: Any,
) -> None:
    """Stream the shard again and write its kept rows + entry ids to part-NNNNN.parquet (atomic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    final = out / f"part-{i:05d}.parquet"
    pf = _open_parquet(path)
    schema = pf.schema_arrow
    out_schema = schema.append(pa.field(ENTRY_IDS_COLUMN, pa.list_(pa.int32())))
    tmp = atomic_path(final)
    row = 0
    try:
        # Encoding + compression run on one background thread (in order; pyarrow releases the GIL),
        # overlapping the decoding of the next batch. At most 2 writes in flight bounds memory.
        from concurrent.futures import ThreadPoolExecutor

        pending: List[Any] = []
        with pq.ParquetWriter(tmp, out_schema, **_writer_options(out_schema)) as w, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastcurate-write") as ex:
            for batch in _prefetch(pf.iter_batches(batch_size=batch_size, use_threads=True)):
                n = len(batch)
                if row + n > len(keep):
                    raise FormatError(f"{path}: has more rows now than in the counting pass; "
                                      "the input changed during the run: start again with a fresh --out")
                k = keep[row:row + n]
                if k.any():
                    # The batch's CSR as an Arrow list column (zero-copy views), filtered together
                    # with the batch by Arrow's C++ filter.
                    o = offsets[row:row + n + 1]
                    lo = (o - o[0]).astype(np.int32)
                    vals = np.ascontiguousarray(ids[o[0]:o[-1]], dtype=np.int32)
                    ent = pa.ListArray.from_arrays(pa.array(lo), pa.array(vals, type=pa.int32()))
                    full = pa.RecordBatch.from_arrays(list(batch.columns) + [ent], schema=out_schema)
                    kept = full.filter(pa.array(k))
                    pending.append(ex.submit(w.write_table, pa.Table.from_batches([kept]),
                                             row_group_size=max(1, len(kept))))
                    while len(pending) > 2:
                        pending.pop(0).result()
                row += n
                bar.update(n)
            for f in pending:
                f.result()  # re-raises a write error
            # A shard with nothing kept still gets a (schema-only) file: the layout stays one-to-one
            # and the file's existence marks the shard as finished.
        if row != len(keep):
            raise FormatError(f"{path}: has {row} rows now but {len(keep)} in the counting pass; "
                              "the input changed during the run: start again with a fresh --out")
        os.replace(tmp, final)
    except (pa.ArrowException, OSError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, FastcurateError):
            raise
        raise FormatError(f"{path}: unreadable Parquet data after {row} rows in the select pass ({e}); "
                          "re-download it or pass --on-error skip") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _kept_csr(offsets: np.ndarray, ids: np.ndarray, keep: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    lens = np.diff(offsets)
    sel_ids = np.repeat(keep, lens)
    new_lens = np.where(keep, lens, 0)
    o = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(new_lens, out=o[1:])
    return o, np.ascontiguousarray(ids[sel_ids])


# ---------------------------------------------------------------- the pipeline

def _input_fingerprint(files: List[Path]) -> List[Dict[str, Any]]:
    out = []
    for f in files:
        st = f.stat()
        out.append({"file": str(f), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


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
    on_error: str = "raise",
    batch_size: int = 131072,
    progress: bool = True,
    overwrite: bool = False,
    plot: bool = True,
    matcher: Any = None,
    _after_shard: Optional[Callable[[str, int], None]] = None,
) -> Dict[str, Any]:
    """Curate Parquet shards the MetaCLIP way; returns the ``stats.json`` content.

    Args:
        inputs: Parquet files, directories (searched recursively) or globs.
        out: output directory: ``part-NNNNN.parquet`` (input columns + ``entry_ids``, one file per
            input shard), ``entry_counts.npy`` (before balancing), ``entry_counts_curated.npy``,
            ``metadata.json``, ``stats.json`` and ``long_tail.png``.
        metadata: a metadata file (``.json`` or text), a list of entries, or None for the shipped
            WordNet 3.0 default.
        t, p, target_size: at most one: the threshold, the tail portion (``p_to_t``), or the
            expected output size (``t_for_target_size``). Default: ``t = 20000``.
        seed: the draw for a row is a pure function of ``(seed, id)``.
        text_column, id_column: default: the first present of ``TEXT, caption, text, txt`` and
            ``uid, key, URL, url``. Ids may be strings or integers; rows sharing an id share a draw.
        threads: matcher and balancing threads (None: all cores).
        on_error: ``"raise"`` or ``"skip"``: a bad shard (unreadable, truncated, missing column,
            non-string text) is then skipped and recorded in ``stats["bad_shards"]`` with its row
            count (0 when even the footer is gone). A shard damaged only in columns the counting
            pass does not read fails in the select pass (``"stage": "select"``): its matches stay
            in the entry counts, its rows are dropped as ``bad shard``.
        overwrite: discard an unfinished or finished run of different inputs/config in ``out``.
            Without it, a run over the same inputs and config resumes; a different one raises.
        matcher: an object with ``match(texts, threads=...)`` returning a CSR match result (default:
            ``fastcurate.Matcher(entries, mode="metaclip")``).
    """
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    given = [name for name, v in (("t", t), ("p", p), ("target_size", target_size)) if v is not None]
    if len(given) > 1:
        raise InputError(f"give at most one of t, p, target_size (got {', '.join(given)})")
    if t is not None and not (float(t) > 0):
        raise InputError(f"t must be > 0, got {t!r}")
    if p is not None and not (0.0 < float(p) <= 1.0):
        raise InputError(f"p must be in (0, 1], got {p!r}")
    if target_size is not None and not (float(target_size) > 0):
        raise InputError(f"target_size must be > 0, got {target_size!r}")
    if batch_size < 1:
        raise InputError("batch_size must be >= 1")
    mode = given[0] if given else "t"
    if not given:
        t = DEFAULT_T

    files = discover_inputs(inputs if not isinstance(inputs, (str, os.PathLike)) else [inputs])
    out = Path(out)
    # An output directory inside an input directory must not feed its own shards back in.
    out_abs = out.resolve()
    files = [f for f in files if out_abs not in f.parents]
    if not files:
        raise InputError(f"no input files outside the output directory {out}")
    if isinstance(metadata, (list, tuple)):
        entries = list(metadata)
        meta_name = "<list>"
    else:
        entries = load_metadata(metadata)
        meta_name = "default (WordNet 3.0)" if metadata is None else str(metadata)
    if not entries:
        raise InputError(f"metadata {meta_name} holds no entries")
    meta_sha = hashlib.sha256(json.dumps(entries, ensure_ascii=False).encode("utf-8")).hexdigest()

    config = {"format": _FORMAT_VERSION, "metadata_sha256": meta_sha, "mode": mode, "t": t, "p": p,
              "target_size": target_size, "seed": int(seed), "text_column": text_column, "id_column": id_column,
              "on_error": on_error}
    manifest = {"config": config, "inputs": _input_fingerprint(files)}
    work = out / _WORK
    if out.exists() and any(out.iterdir()):
        mpath = work / "manifest.json"
        if overwrite:
            _clear_outputs(out)
        elif not mpath.exists():
            raise InputError(f"{out}: exists and is not a fastcurate curate output; use an empty --out or --overwrite")
        elif _read_json(mpath) != json.loads(json.dumps(manifest)):
            raise InputError(f"{out}: holds a run over different inputs or options; use a new --out or --overwrite "
                             "(or restore the original inputs to resume)")
        elif (out / "stats.json").exists():
            return _read_json(out / "stats.json")  # the same run finished already: nothing to redo
    work.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    _write_json(work / "manifest.json", manifest)

    if matcher is None:
        matcher = _default_matcher(entries)
    n_entries = len(entries)

    # Resolve column names once, from the first shard whose schema can be read.
    cols: Optional[_Columns] = None
    for f in files:
        try:
            cols = _resolve_columns(_open_parquet(f), f, text_column, id_column)
            break
        except FastcurateError:
            if on_error == "raise":
                raise
    if cols is None:
        raise InputError(f"no readable input shard among {len(files)} file(s); see the errors above or the first file {files[0]}")

    total_rows = 0
    for f in files:
        try:
            total_rows += _open_parquet(f).metadata.num_rows
        except FormatError:
            pass

    # ---- pass 1: count
    infos: List[Dict[str, Any]] = []
    with _progress(total_rows, "count", progress) as bar:
        for i, f in enumerate(files):
            done = _shard_dir(out, i) / "done.json"
            if done.exists():
                info = _read_json(done)
                bar.update(info["rows"])
            else:
                try:
                    info = _count_shard(f, i, out, cols, matcher, n_entries, threads, batch_size, bar)
                except FastcurateError as e:
                    if on_error == "raise":
                        raise
                    print(f"fastcurate: skipping bad shard: {e}", file=sys.stderr)
                    info = _bad_shard(f, i, out, e)
                if _after_shard is not None:
                    _after_shard("count", i)
            infos.append(info)

    rows_in = sum(int(x["rows"]) for x in infos)
    if rows_in == 0:
        raise InputError(f"the input holds no rows ({len(files)} file(s), first {files[0]})")
    good = [i for i, x in enumerate(infos) if not x["bad"]]
    counts = np.zeros(n_entries, dtype=np.uint64)
    for i in good:
        o, ids, _ = _load_shard_csr(_shard_dir(out, i))
        count_entries((np.ascontiguousarray(o), np.ascontiguousarray(ids)), n_entries, out=counts)
        del o, ids

    # ---- threshold
    if mode == "p":
        t_val = float(p_to_t(counts, float(p)))  # type: ignore[arg-type]
    elif mode == "target_size":
        t_val = t_for_target_size(_ShardResults(out, good), counts, float(target_size), threads)  # type: ignore[arg-type]
    else:
        t_val = float(t)  # type: ignore[arg-type]
    probs = entry_probs(counts, t_val)
    exp_size = expected_size(_ShardResults(out, good), counts, t_val, threads)

    # ---- pass 2: select
    counts_after = np.zeros(n_entries, dtype=np.uint64)
    kept_total = 0
    per_shard_kept: Dict[int, int] = {}
    with _progress(sum(int(infos[i]["rows"]) for i in good), "select", progress) as bar:
        for i in good:
            o, ids, kh = _load_shard_csr(_shard_dir(out, i), mmap=False)
            keep = _balance((o, ids), probs, None, seed=int(seed), threads=threads, key_hashes=kh)
            final = out / f"part-{i:05d}.parquet"
            select_bad = _shard_dir(out, i) / "select_failed.json"
            if not final.exists() and not select_bad.exists():
                try:
                    _select_shard(files[i], i, out, cols, keep, o, ids, batch_size, bar)
                except FastcurateError as e:
                    # Damage in a column the counting pass did not read (it reads only the text and
                    # id columns). The shard's matches are already in the counts, which must not
                    # change (finished shards depend on them), so the shard is only left unwritten.
                    if on_error == "raise":
                        raise
                    print(f"fastcurate: skipping bad shard: {e}", file=sys.stderr)
                    _write_json(select_bad, {"error": str(e)})
                if _after_shard is not None:
                    _after_shard("select", i)
            else:
                bar.update(int(infos[i]["rows"]))  # finished before an interruption
            if select_bad.exists():
                err = _read_json(select_bad)["error"]
                infos[i] = dict(infos[i], bad=True, error=err, stage="select")
                del o, ids, kh, keep
                continue
            k_o, k_ids = _kept_csr(o, ids, keep)
            count_entries((k_o, k_ids), n_entries, out=counts_after)
            n_kept = int(keep.sum())
            kept_total += n_kept
            per_shard_kept[i] = n_kept
            del o, ids, kh, keep, k_o, k_ids
    written = [i for i in good if not infos[i]["bad"]]

    dropped = {r: 0 for r in REASONS}
    for i, x in enumerate(infos):
        if x["bad"]:
            dropped["bad shard"] += int(x["rows"])
            continue
        dropped["null text"] += int(x["null_text"])
        dropped["null id"] += int(x["null_id"])
        dropped["no match"] += int(x["no_match"])
        dropped["not sampled"] += int(x["matched"]) - per_shard_kept[i]
    if rows_in != kept_total + sum(dropped.values()):  # an internal invariant: fail loudly, never report wrong stats
        raise FastcurateError(f"row accounting is off: rows_in={rows_in}, kept={kept_total}, dropped={dropped}")

    stats: Dict[str, Any] = {
        "rows_in": rows_in,
        "rows_kept": kept_total,
        "rows_dropped": dropped,
        "t": t_val,
        "p": t_to_p(counts, t_val) if counts.any() else None,
        "threshold_from": mode,
        "target_size": target_size,
        "expected_size": exp_size,
        "seed": int(seed),
        "metadata": meta_name,
        "n_entries": n_entries,
        "entries_matched": int(np.count_nonzero(counts)),
        "entries_matched_after": int(np.count_nonzero(counts_after)),
        "matches_before": int(counts.sum()),
        "matches_after": int(counts_after.sum()),
        "text_column": cols.text,
        "id_column": cols.key,
        "shards_in": len(files),
        "shards_out": len(written),
        # stage "count": unreadable before counting, its rows are in no count; stage "select": failed
        # while writing, its matches are in entry_counts.npy but none of its rows is in the output.
        "bad_shards": [{"file": x["file"], "rows": x["rows"], "error": x["error"], "stage": x.get("stage", "count")}
                       for x in infos if x["bad"]],
        "outputs": [f"part-{i:05d}.parquet" for i in written],
        "plot": "long_tail.png" if plot else None,
    }
    # Shared outputs last, each atomic; stats.json goes last of all and marks the run complete.
    atomic_write_bytes(out / "entry_counts.npy", _npy_bytes(counts))
    atomic_write_bytes(out / "entry_counts_curated.npy", _npy_bytes(counts_after))
    save_metadata(entries, out / "metadata.json")
    if plot:
        from ...plots import plot_long_tail

        plot_long_tail(counts, counts_after, t_val, out / "long_tail.png")
    _write_json(out / "stats.json", stats)
    # The per-shard match results are only needed to resume; keep the manifest (so a rerun of the
    # same command finds a finished run) and drop the bulky arrays.
    for i in range(len(files)):
        d = _shard_dir(out, i)
        for name in ("offsets.npy", "ids.npy", "keys.npy"):
            (d / name).unlink(missing_ok=True)
    return stats


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _remove_stale_temps(out: Path) -> None:
    """A killed run leaves its half-written temp files (".NAME.XXXX.tmp", see shards.atomic_path)
    behind; they were never renamed, so they are garbage. Remove them before resuming."""
    for d in (out, out / _WORK, *(out / _WORK).glob("shard-*")):
        if d.is_dir():
            for f in d.glob(".*.tmp"):
                f.unlink(missing_ok=True)


def _clear_outputs(out: Path) -> None:
    shutil.rmtree(out / _WORK, ignore_errors=True)
    for f in out.glob("part-*.parquet"):
        f.unlink()
    for name in ("entry_counts.npy", "entry_counts_curated.npy", "metadata.json", "stats.json", "long_tail.png"):
        (out / name).unlink(missing_ok=True)


class _ShardResults:
    """The stored per-shard match results as an iterable of (offsets, ids), one shard in memory
    (memory-mapped) at a time: lets expected_size / t_for_target_size run over the whole pool."""

    def __init__(self, out: Path, shards: List[int]):
        self.out = out
        self.shards = shards

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in self.shards:
            o, ids, _ = _load_shard_csr(_shard_dir(self.out, i))
            yield (o, ids)
