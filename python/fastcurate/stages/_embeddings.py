"""The embeddings of `fastcurate embed`'s output, as the cluster and semdedup stages read them.

A scan stores, per shard, the embedding matrix of the chosen space (float16, memory-mapped later),
which rows have a usable one, the 64-bit hash of every uid (for layout-independent sampling and
tie-breaking) and the uids (to name twins). Spaces: ``image`` (``image_emb``), ``text``
(``text_emb``) and ``joint``: the L2-normalised sum of the two normalised embeddings, defined only
where a row has both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_write_npy
from ..io.discover import ShardRef
from ..runner.stage import Batch, Context
from ._rowstore import write_strings

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SPACES", "space_columns", "scan_embeddings", "ShardEmbeddings", "load_all", "mix64", "BAD_CODES"]

SPACES = ("image", "text", "joint")
# per-row status: 0 usable; the others are drop reasons of the stages that read embeddings
BAD_CODES = ("", "no_embedding", "bad_embedding")


def space_columns(space: str) -> Tuple[str, ...]:
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, got {space!r}")
    return {"image": ("image_emb",), "text": ("text_emb",), "joint": ("image_emb", "text_emb")}[space]


def _matrix(arr: "pa.Array", where: str) -> Tuple[np.ndarray, np.ndarray]:
    """A fixed-size-list (or list) column as (n, d) float32 and a validity mask."""
    import pyarrow as pa

    t = arr.type
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, bool)
    if pa.types.is_fixed_size_list(t):
        d = t.list_size
        vals = arr.values.slice(arr.offset * d, n * d) if arr.offset else arr.values
        x = vals.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, d)
        return x, valid
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lens = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
        ds = set(lens[valid].tolist())
        if len(ds) > 1:
            raise InputError(f"{where}: embeddings of different widths {sorted(ds)[:5]}; one encoder per column")
        d = ds.pop() if ds else 0
        x = np.zeros((n, d), np.float32)
        if d:
            flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            x[valid] = flat.reshape(-1, d)
        return x, valid
    raise InputError(f"{where}: embedding column of type {t}; expected a list of floats (fastcurate embed's output)")


def read_space(b: Batch, space: str, cosine: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 embeddings of the batch in ``space`` and a per-row code (BAD_CODES)."""
    cols = space_columns(space)
    where = str(b.shard.path)
    missing = [c for c in cols if c not in b.data.schema.names]
    if missing:
        raise InputError(f"{where}: no {', '.join(missing)} column; run `fastcurate embed` first (or pick another "
                         f"--space: this pool has {[c for c in ('image_emb', 'text_emb') if c in b.data.schema.names]})")
    mats = [_matrix(b.data.column(c), where) for c in cols]
    valid = np.logical_and.reduce([v for _, v in mats])
    if space == "joint":
        if mats[0][0].shape[1] != mats[1][0].shape[1]:
            raise InputError(f"{where}: image and text embeddings have different widths; joint needs one CLIP model")
        a, t = mats[0][0], mats[1][0]
        with np.errstate(invalid="ignore", divide="ignore"):
            x = a / np.linalg.norm(a, axis=1, keepdims=True) + t / np.linalg.norm(t, axis=1, keepdims=True)
    else:
        x = mats[0][0]
    code = np.where(valid, 0, 1).astype(np.uint8)
    finite = np.isfinite(x).all(axis=1)
    bad = valid & ~finite
    if cosine:
        bad |= valid & finite & ~np.any(x != 0, axis=1)
    code[bad] = 2
    x[code != 0] = 0
    return x, code


def scan_embeddings(ctx: Context, shard: ShardRef, batches: Iterator[Batch], space: str, cosine: bool) -> Dict[str, int]:
    """Store the shard's embeddings (``emb.npy``, float16), codes, uid hashes and uids."""
    import pyarrow as pa

    from ..kernels.balance import hash_keys

    xs: List[np.ndarray] = []
    codes: List[np.ndarray] = []
    hashes: List[np.ndarray] = []
    uids: List["pa.Array"] = []
    dim = None
    for b in batches:
        x, code = read_space(b, space, cosine)
        if dim is not None and x.shape[1] != dim and len(x):
            raise InputError(f"{shard.path}: embeddings of width {x.shape[1]} after width {dim}; one encoder per pool")
        if len(x):
            dim = x.shape[1]
        xs.append(x.astype(np.float16))
        codes.append(code)
        hashes.append(hash_keys(b.uid))
        uids.append(b.uid)
    d = ctx.shard_work(shard)
    emb = np.concatenate(xs) if xs else np.zeros((0, dim or 0), np.float16)
    atomic_write_npy(d / "emb.npy", emb)
    code = np.concatenate(codes) if codes else np.zeros(0, np.uint8)
    atomic_write_npy(d / "code.npy", code)
    atomic_write_npy(d / "uid_hash.npy", np.concatenate(hashes) if hashes else np.zeros(0, np.uint64))
    write_strings(d / "uids.parquet", pa.concat_arrays(uids) if uids else pa.array([], pa.string()))
    return {"rows": int(len(code)), "dim": int(emb.shape[1]) if emb.ndim == 2 else 0,
            "no_embedding": int((code == 1).sum()), "bad_embedding": int((code == 2).sum())}


@dataclass
class ShardEmbeddings:
    shard: ShardRef
    work: Path
    emb: np.ndarray  # memory-mapped float16 (n, d)
    code: np.ndarray
    uid_hash: np.ndarray


def load_all(ctx: Context, summaries: Sequence[object]) -> Tuple[List[ShardEmbeddings], np.ndarray, int]:
    """Every good shard's stored embeddings (memory-mapped), the global row start of each shard,
    and the width (an error when shards disagree)."""
    out: List[ShardEmbeddings] = []
    dims = set()
    for s, m in zip(ctx.inputs, summaries):
        if m is None:
            continue
        w = ctx.shard_work(s)
        e = np.load(w / "emb.npy", mmap_mode="r")
        if len(e):
            dims.add(int(e.shape[1]))
        out.append(ShardEmbeddings(s, w, e, np.load(w / "code.npy"), np.load(w / "uid_hash.npy")))
    if len(dims) > 1:
        raise InputError(f"the shards hold embeddings of different widths {sorted(dims)}: mixed encoders; embed the "
                         "pool with one model")
    starts = np.concatenate([[0], np.cumsum([len(x.code) for x in out])]).astype(np.int64)
    return out, starts, dims.pop() if dims else 0


def mix64(h: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of ``h ^ seed``: a seeded order of rows by uid, independent of their layout."""
    with np.errstate(over="ignore"):
        z = (h.astype(np.uint64) ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF)) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
