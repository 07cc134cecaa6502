"""Embed WebDataset tars and Parquet files shard by shard: atomic, resumable, no row ever lost.

For every input shard ``NAME`` (``NAME.tar`` or ``NAME.parquet``) the output directory gets:

* ``NAME.emb.parquet``   uid, image_emb / text_emb (float16 fixed-size lists), clip_score (float32)
* ``NAME.drops.parquet`` uid, reason - every input row that is not in the embeddings file
* ``NAME.done.json``     counts and the fingerprint of input and model; written last

All three are written to a temporary name and ``os.replace``d into place, ``done.json`` last, so a
shard is either complete or redone; an interrupted run restarted with the same arguments skips the
finished shards and gives the same files. ``rows_in == rows_kept + rows_dropped`` is checked before
``done.json`` is written.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import FormatError, InputError
from ...io.atomic import atomic_write_bytes, atomic_write_table, pick_column

__all__ = ["Sample", "iter_webdataset", "iter_parquet", "embed_shards", "ShardResult"]

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
TEXT_COLS = ("caption", "text", "TEXT", "txt")
IMAGE_COLS = ("jpg", "image", "image_bytes", "img", "png", "webp")
PATH_COLS = ("image_path", "path", "filepath", "file")
UID_COLS = ("uid", "key", "__key__", "id")


@dataclass
class Sample:
    uid: str
    image: Any  # bytes, a path, or None
    text: Optional[str]
    problem: Optional[str] = None  # a reason to drop found while reading (e.g. no image in the sample)


def _split_key(name: str) -> Tuple[str, str]:
    # WebDataset convention: the key is everything before the first dot of the basename.
    d, base = os.path.split(name)
    if "." not in base:
        return name, ""
    stem, ext = base.split(".", 1)
    return (os.path.join(d, stem) if d else stem), ext.lower()


def _text_from_json(data: bytes) -> Tuple[Optional[str], Optional[str]]:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    text = next((obj[k] for k in ("caption", "text", "TEXT", "txt") if isinstance(obj.get(k), str)), None)
    uid = next((str(obj[k]) for k in ("uid", "key") if obj.get(k) is not None), None)
    return text, uid


def iter_webdataset(path: Union[str, Path]) -> Iterator[Sample]:
    """Samples of a WebDataset tar, in file order. Needs the members of a sample to be adjacent."""
    path = Path(path)
    try:
        tf = tarfile.open(path, "r|*")  # streaming: memory does not grow with the shard
    except (tarfile.TarError, OSError) as e:
        raise FormatError(f"{path}: not a readable tar file ({e}); check the shard or remove it") from None
    cur_key: Optional[str] = None
    parts: Dict[str, bytes] = {}

    def emit() -> Sample:
        img_ext = next((e for e in IMAGE_EXTS if e in parts), None)
        text = None
        uid = None
        if "txt" in parts:
            try:
                text = parts["txt"].decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if "json" in parts:
            jt, uid = _text_from_json(parts["json"])
            text = text if text is not None else jt
        problem = None if img_ext is not None else "no_image: sample has no jpg/png/webp member"
        return Sample(uid or cur_key, parts.get(img_ext) if img_ext else None, text, problem)

    try:
        for m in tf:
            if not m.isfile():
                continue
            key, ext = _split_key(m.name)
            if key != cur_key and cur_key is not None:
                yield emit()
                parts = {}
            cur_key = key
            f = tf.extractfile(m)
            parts[ext] = f.read() if f is not None else b""
        if cur_key is not None:
            yield emit()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise FormatError(f"{path}: corrupt or truncated tar ({e})") from None
    finally:
        tf.close()


def iter_parquet(path: Union[str, Path], image_col: Optional[str] = None, text_col: Optional[str] = None,
                 uid_col: Optional[str] = None, need_image: bool = True) -> Iterator[Sample]:
    """Samples of a Parquet file, batch by batch. Images are bytes (binary column, or a struct with
    ``bytes``/``path`` as Hugging Face datasets write) or paths (string column, relative to the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise FormatError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    icol = None
    if need_image:
        icol = pick_column(names, image_col, IMAGE_COLS + PATH_COLS, "image", path, "--image-col")
    tcol = pick_column(names, text_col, TEXT_COLS, "text", path, "--text-col", required=not need_image)
    ucol = pick_column(names, uid_col, UID_COLS, "uid", path, "--uid-col", required=False)
    cols = [c for c in dict.fromkeys([icol, tcol, ucol]) if c is not None]
    row = 0
    for rb in pf.iter_batches(batch_size=1024, columns=cols):
        n = rb.num_rows
        imgs: List[Any] = [None] * n
        if icol is not None:
            arr = rb.column(cols.index(icol))
            if pa.types.is_struct(arr.type):
                raw = arr.to_pylist()
                imgs = [(r.get("bytes") or r.get("path")) if r else None for r in raw]
            else:
                imgs = arr.to_pylist()
            imgs = [(str((path.parent / x)) if isinstance(x, str) and not os.path.isabs(x) else x) for x in imgs]
        texts = rb.column(cols.index(tcol)).to_pylist() if tcol else [None] * n
        uids = rb.column(cols.index(ucol)).to_pylist() if ucol else [f"{path.stem}:{row + i}" for i in range(n)]
        for i in range(n):
            t = texts[i]
            yield Sample(str(uids[i]), imgs[i], t if isinstance(t, str) else None)
        row += n


@dataclass
class ShardResult:
    shard: str
    rows_in: int
    rows_kept: int
    rows_dropped: int
    skipped: bool  # True when resumed (already done)
    seconds: float


def _fingerprint(path: Path, bundle_manifest: Dict[str, Any], opts: Dict[str, Any]) -> Dict[str, Any]:
    st = path.stat()
    return {"input": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "model_files": bundle_manifest.get("files", {}), "options": opts}


def _f16_list(emb: np.ndarray, valid: Optional[np.ndarray] = None):
    import pyarrow as pa

    d = emb.shape[1] if emb.ndim == 2 else 0
    flat = pa.array(emb.astype(np.float16).reshape(-1), type=pa.float16())
    if valid is None or valid.all():
        return pa.FixedSizeListArray.from_arrays(flat, d)
    return pa.FixedSizeListArray.from_arrays(flat, d, mask=pa.array(~valid))


def _shard_name(p: Path) -> str:
    name = p.name
    for suf in (".tar", ".parquet"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return p.stem


def embed_shards(
    inputs: Sequence[Union[str, Path]],
    bundle: Union[str, Path],
    out_dir: Union[str, Path],
    *,
    text_only: bool = False,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 32,
    fast_preprocess: bool = False,
    image_col: Optional[str] = None,
    text_col: Optional[str] = None,
    uid_col: Optional[str] = None,
    progress: bool = True,
) -> List[ShardResult]:
    """Embed every shard of ``inputs`` (tar / parquet files or directories of them) into ``out_dir``.

    With a "text" bundle, or ``text_only=True``, only texts are embedded (rows without text are
    dropped). Returns one :class:`ShardResult` per shard; finished shards are skipped on re-runs.
    """
    import pyarrow as pa
    from tqdm import tqdm

    from ...models.bundle import load_bundle
    from ...models.encoder import ClipEncoder, TextEncoder
    from ...models.score import clip_score

    files: List[Path] = []
    for x in inputs:
        p = Path(x)
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.suffix in (".tar", ".parquet"))
        elif p.is_file():
            if p.suffix not in (".tar", ".parquet"):
                raise InputError(f"{p}: expected a .tar (WebDataset) or .parquet file")
            files.append(p)
        else:
            raise InputError(f"{p} does not exist")
    if not files:
        raise InputError(f"no .tar or .parquet shards in {list(map(str, inputs))}")
    names = [_shard_name(f) for f in files]
    if len(set(names)) != len(names):
        raise InputError("two input shards have the same name; outputs would collide: " + ", ".join(names))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    b = load_bundle(bundle)
    text_only = text_only or b.kind == "text"
    opts = {"text_only": text_only, "precision": precision, "fast_preprocess": fast_preprocess,
            "image_col": image_col, "text_col": text_col, "uid_col": uid_col}
    enc: Any = None
    results: List[ShardResult] = []
    bar = tqdm(total=len(files), unit="shard", disable=not progress, dynamic_ncols=True)
    for f, name in zip(files, names):
        t0 = time.perf_counter()
        done = out / f"{name}.done.json"
        fp = _fingerprint(f, b.manifest, opts)
        if done.is_file():
            try:
                prev = json.loads(done.read_text())
            except ValueError:
                prev = {}
            if prev.get("fingerprint") == fp:
                results.append(ShardResult(name, prev["rows_in"], prev["rows_kept"], prev["rows_dropped"], True, 0.0))
                bar.update(1)
                continue
        if enc is None:
            enc = (TextEncoder(b, device=device, precision=precision) if text_only else
                   ClipEncoder(b, device=device, precision=precision, batch_size=batch_size,
                               fast_preprocess=fast_preprocess))
        if f.suffix == ".tar":
            samples = iter_webdataset(f)
        else:
            samples = iter_parquet(f, image_col, text_col, uid_col, need_image=not text_only)
        uids: List[str] = []
        texts: List[Optional[str]] = []
        problems: List[Optional[str]] = []
        if text_only:
            for s in samples:
                uids.append(s.uid)
                texts.append(s.text)
                problems.append(None)
            img_ok = np.ones(len(uids), dtype=bool)
            img_emb = None
        else:
            def images() -> Iterator[Any]:
                # Side effect on purpose: uids/texts are recorded in the order the pipeline pulls.
                for s in samples:
                    uids.append(s.uid)
                    texts.append(s.text)
                    problems.append(s.problem)
                    yield s.image

            emb_parts, ok_parts = [], []
            for batch in enc.iter_image_batches(images(), names=_names(f, uids)):
                emb_parts.append(batch.embeddings)
                ok_parts.append(batch.ok)
                for i, r in enumerate(batch.reasons):
                    j = batch.start + i
                    if r is not None and problems[j] is None:
                        problems[j] = r
            img_emb = np.concatenate(emb_parts) if emb_parts else np.zeros((0, b.embed_dim), np.float32)
            img_ok = np.concatenate(ok_parts) if ok_parts else np.zeros(0, bool)
        n = len(uids)
        reasons: List[Optional[str]] = list(problems)
        for i in range(n):
            if reasons[i] is None and not img_ok[i]:
                reasons[i] = "undecodable"
            # Image+text pools keep an image without caption (text_emb and clip_score null);
            # a text-only run has nothing to embed for it.
            if text_only and reasons[i] is None and texts[i] is None:
                reasons[i] = "missing_text: no caption for this sample"
        keep = np.array([r is None for r in reasons], dtype=bool)
        kept_idx = np.flatnonzero(keep)
        has_text = np.array([texts[i] is not None for i in kept_idx], dtype=bool)
        txt_emb = np.zeros((len(kept_idx), b.embed_dim), np.float32)
        if has_text.any():
            txt_emb[has_text] = enc.encode_texts([texts[i] for i in kept_idx[has_text]])
        cols = {"uid": pa.array([uids[i] for i in kept_idx], type=pa.string())}
        if img_emb is not None:
            ie = img_emb[kept_idx]
            cols["image_emb"] = _f16_list(ie)
        cols["text_emb"] = _f16_list(txt_emb, valid=has_text)
        if img_emb is not None:
            score = clip_score(ie, txt_emb) if len(kept_idx) else np.zeros(0, np.float32)
            cols["clip_score"] = pa.array(score, type=pa.float32(), mask=~has_text)
        table = pa.table(cols)
        drop_idx = np.flatnonzero(~keep)
        drops = pa.table({"uid": pa.array([uids[i] for i in drop_idx], type=pa.string()),
                          "reason": pa.array([reasons[i] for i in drop_idx], type=pa.string())})
        if table.num_rows + drops.num_rows != n:  # the invariant the whole project relies on
            raise RuntimeError(f"{f}: rows in {n} != kept {table.num_rows} + dropped {drops.num_rows}")
        atomic_write_table(table, out / f"{name}.emb.parquet")
        atomic_write_table(drops, out / f"{name}.drops.parquet")
        secs = time.perf_counter() - t0
        rec = {"rows_in": n, "rows_kept": int(table.num_rows), "rows_dropped": int(drops.num_rows),
               "fingerprint": fp, "seconds": round(secs, 3),
               "providers": enc.providers, "precision": enc.precision}
        atomic_write_bytes(done, (json.dumps(rec, indent=2) + "\n").encode("utf-8"))
        results.append(ShardResult(name, n, int(table.num_rows), int(drops.num_rows), False, secs))
        bar.update(1)
        bar.set_postfix(rows=sum(r.rows_in for r in results))
    bar.close()
    if enc is not None and hasattr(enc, "close"):
        enc.close()
    return results


def _names(f: Path, uids: List[str]) -> Iterator[str]:
    # Names for error messages: computed lazily, after the sample has been pulled (uids is filled
    # by the images() generator before the pipeline asks for the name).
    i = 0
    while True:
        yield f"{f.name}:{uids[i] if i < len(uids) else i}"
        i += 1
