"""Exact and near-duplicate removal as a stage (docs/dedup.md).

* global pass, per shard: the keys of every row (XXH3-128 of the image bytes and, as asked, of the
  caption or the URL; the 64-bit pHash and dHash of the image from a small decode; the image's
  resolution; the 64-bit hash of the uid) go to the shard's work directory;
* reduce, over all shards at once: exact groups (all chosen keys equal), then near-duplicate
  groups among the rest (pHash within ``radius`` bits and dHash within ``dhash_radius`` bits,
  found by multi-index hashing, grouped by union-find); in each group the row with the highest
  resolution is kept, then the one whose uid hashes lowest (a rule that does not depend on the
  shard layout), and every other row is dropped naming that kept twin;
* per-shard pass: the decisions are applied; nothing is re-read but the ids.

With ``within`` (a column, e.g. the ``group`` of page grouping) rows are compared only with rows
of the same value: duplicates across groups are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_write_bytes, atomic_write_npy
from ...io.discover import ShardRef
from ...runner.stage import Batch, Context, Result, Stage
from .._rowstore import decided_results, lookup_strings, read_strings, write_strings

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DedupStage", "DedupDecision", "EXACT_KEYS", "CODES"]

EXACT_KEYS = ("image", "caption", "url")
_KEY_ROLE = {"image": "image", "caption": "text", "url": "url"}
CODES = ("", "duplicate", "near_duplicate")


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **cast(Dict[str, Any], arrays))  # (numpy's stub matches ** against allow_pickle)
    return buf.getvalue()


class DedupStage(Stage):
    """Drops exact duplicates (same image bytes, and/or caption, URL) and near-duplicate images.

    Args:
        exact: the keys that make rows exact duplicates when all are equal: any of "image",
            "caption", "url" (e.g. ["image", "caption"] for identical pairs); empty: no exact step.
        near: drop near-duplicate images (perceptual hashes within the radii).
        radius: the pHash Hamming radius in bits (imagededup's default: 10).
        dhash_radius: the dHash radius a near pair must also meet (default 10; None: pHash alone).
        within: a column whose value rows must share to be compared (e.g. "group"); None: all rows.
    """

    name = "dedup"
    version = 1
    scans = True
    wants = ("width", "height")
    batch_size = 2048  # image bytes travel with the rows
    reasons = {
        "duplicate": "same content as the kept row named in detail (XXH3-128 of the chosen keys)",
        "near_duplicate": "the same image as the kept row named in detail (perceptual hashes within the radii)",
    }

    def __init__(self, *, exact: Sequence[str] = ("image",), near: bool = True, radius: int = 10,
                 dhash_radius: Optional[int] = 10, within: Optional[str] = None):
        exact = tuple(dict.fromkeys(exact or ()))
        bad = [k for k in exact if k not in EXACT_KEYS]
        if bad:
            raise InputError(f"unknown exact keys {bad}; choose among {list(EXACT_KEYS)}")
        if not exact and not near:
            raise InputError("nothing to do: give exact keys or near=True")
        if not (0 <= int(radius) <= 64) or (dhash_radius is not None and not 0 <= int(dhash_radius) <= 64):
            raise InputError("radii must be between 0 and 64 bits")
        self.exact = exact
        self.near = bool(near)
        self.radius = int(radius)
        self.dhash_radius = None if dhash_radius is None else int(dhash_radius)
        self.within = within
        needs = [_KEY_ROLE[k] for k in exact]
        if near:
            needs.append("image")
        self.needs = tuple(dict.fromkeys(needs))
        self.produces = ()

    def config(self) -> Dict[str, Any]:
        return {"exact": list(self.exact), "near": self.near, "radius": self.radius,
                "dhash_radius": self.dhash_radius, "within": self.within}

    def extra_columns(self) -> Sequence[str]:
        return (self.within,) if self.within else ()

    def process_roles(self) -> Optional[Sequence[str]]:
        return None  # rows keep every column (the decisions come from the work files)

    # ---- global pass
    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        from ...kernels.balance import hash_keys
        from ...kernels.dedup import content_hashes, text_hashes
        from ...kernels.images import image_sizes, perceptual_hashes
        from ...io.images import image_bytes

        parts: Dict[str, List[np.ndarray]] = {k: [] for k in ("uid_hash", "res", "phash", "dhash", "hash_ok",
                                                               "within")}
        digests: Dict[str, List[np.ndarray]] = {k: [] for k in self.exact}
        valid: Dict[str, List[np.ndarray]] = {k: [] for k in self.exact}
        errors: Dict[str, int] = {}
        uids: List["pa.Array"] = []
        for b in batches:
            n = len(b)
            uids.append(b.uid)
            parts["uid_hash"].append(hash_keys(b.uid))
            img = b.column("image")
            blobs = image_bytes(img, b.shard.path.parent) if img is not None else None
            for k in self.exact:
                if k == "image":
                    h = content_hashes(blobs)
                else:
                    h = text_hashes(b.require(_KEY_ROLE[k]))
                digests[k].append(h.digest)
                valid[k].append(h.valid)
            res = np.zeros(n, dtype=np.int64)
            w, hcol = b.column("width"), b.column("height")
            if w is not None and hcol is not None:
                wv = w.to_numpy(zero_copy_only=False).astype(np.float64)
                hv = hcol.to_numpy(zero_copy_only=False).astype(np.float64)
                ok = ~(np.isnan(wv) | np.isnan(hv))
                res[ok] = (wv[ok] * hv[ok]).astype(np.int64)
            if blobs is not None and not res.all():
                sz = image_sizes(blobs, threads=ctx.threads)
                fill = (res == 0) & sz.ok
                res[fill] = sz.width[fill].astype(np.int64) * sz.height[fill].astype(np.int64)
            parts["res"].append(res)
            if self.near:
                ph = perceptual_hashes(blobs, threads=ctx.threads)
                parts["phash"].append(ph.phash)
                parts["dhash"].append(ph.dhash)
                parts["hash_ok"].append(ph.ok)
                for why in ph.errors.values():
                    key = why.split(":")[0]
                    errors[key] = errors.get(key, 0) + 1
            if self.within:
                col = b.data.column(self.within) if self.within in b.data.schema.names else None
                if col is None:
                    raise InputError(f"{b.shard.path}: no column {self.within!r} to compare within; the columns are "
                                     f"{b.data.schema.names}")
                parts["within"].append(hash_keys(_as_key(col)))
        arrays: Dict[str, np.ndarray] = {}
        for k, v in parts.items():
            if v:
                arrays[k] = np.concatenate(v)
        for k in self.exact:
            arrays[f"digest_{k}"] = np.concatenate(digests[k]) if digests[k] else np.zeros((0, 2), np.uint64)
            arrays[f"valid_{k}"] = np.concatenate(valid[k]) if valid[k] else np.zeros(0, bool)
        atomic_write_bytes(ctx.shard_work(shard) / "keys.npz", _npz_bytes(**arrays))
        # the uids themselves: a dropped row's detail names its twin's uid
        import pyarrow as pa

        write_strings(ctx.shard_work(shard) / "uids.parquet",
                       pa.concat_arrays(uids) if uids else pa.array([], pa.string()))
        return {"unhashable": errors}

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        d = self.decide(ctx, summaries)
        for s, lo, hi in zip(d.shards, d.starts[:-1], d.starts[1:]):
            atomic_write_npy(ctx.shard_work(s) / "code.npy", d.code[lo:hi])
            write_strings(ctx.shard_work(s) / "detail.parquet", d.detail[lo:hi].tolist())
        return d.stats

    def decide(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]], *, within: Optional[np.ndarray] = None,
               eligible: Optional[np.ndarray] = None) -> "DedupDecision":
        """The decisions over every scanned row (the good shards' rows, in shard order): a code
        per row (0 keep, 1 duplicate, 2 near duplicate) and, for dropped rows, a detail naming the
        kept twin. Other stages compose dedup through this (the group stage cleans within groups):
        ``within`` (uint64 per row) replaces the scanned ``within`` column as the value rows must
        share to be compared; ``eligible`` (bool per row) restricts the comparison to those rows
        (the others are kept here and never named as a twin)."""
        from ...kernels.dedup import ContentHashes, connected_components, exact_duplicates, hamming_pairs, keep_one_per_group

        good = [s for s, m in zip(ctx.inputs, summaries) if m is not None]
        loaded = [np.load(ctx.shard_work(s) / "keys.npz") for s in good]
        sizes = [len(z["uid_hash"]) for z in loaded]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(starts[-1])

        def cat(key: str, dtype: Any, shape: Tuple[int, ...] = ()) -> np.ndarray:
            parts = [z[key] for z in loaded if key in z.files]
            return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)

        uid_hash = cat("uid_hash", np.uint64)
        res = cat("res", np.int64)
        if within is None and self.within:
            within = cat("within", np.uint64)
        if within is not None and len(within) != n:
            raise InputError(f"within has {len(within)} values for {n} scanned rows")
        elig = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool)
        if len(elig) != n:
            raise InputError(f"eligible has {len(elig)} values for {n} scanned rows")
        code = np.zeros(n, dtype=np.uint8)
        twin = np.arange(n, dtype=np.int64)
        dist = np.full(n, -1, dtype=np.int16)
        n_exact_groups = 0
        if self.exact:
            keys = [ContentHashes(cat(f"digest_{k}", np.uint64, (2,)), cat(f"valid_{k}", bool)) for k in self.exact]
            if within is not None:  # the group value is one more key: no duplicate across groups
                w = np.zeros((n, 2), np.uint64)
                w[:, 0] = within
                keys.append(ContentHashes(w, np.ones(n, bool)))
            r = exact_duplicates(*keys, resolution=res, tiebreak=uid_hash, valid=elig)
            drop = ~r.keep & elig
            code[drop] = 1
            twin[drop] = r.twin[drop]
            n_exact_groups = r.n_groups
        n_near_groups = n_pairs = 0
        if self.near:
            ph, dh, ok = cat("phash", np.uint64), cat("dhash", np.uint64), cat("hash_ok", bool)
            cand = ok & (code == 0) & elig  # exact duplicates are already gone
            rows = np.flatnonzero(cand)
            pairs = hamming_pairs(ph[rows], self.radius,
                                  second=dh[rows] if self.dhash_radius is not None else None,
                                  second_radius=self.dhash_radius if self.dhash_radius is not None else 64,
                                  threads=ctx.threads)
            a, b = rows[pairs.i], rows[pairs.j]
            if within is not None:
                same = within[a] == within[b]
                a, b = a[same], b[same]
            n_pairs = len(a)
            labels = connected_components(n, a, b)
            r = keep_one_per_group(labels, resolution=res, tiebreak=uid_hash, n_pairs=n_pairs)
            drop = ~r.keep & cand
            code[drop] = 2
            twin[drop] = r.twin[drop]
            dist[drop] = _popcount(ph[drop] ^ ph[r.twin[drop]])
            n_near_groups = r.n_groups
        # for dropped rows, their twin's uid (and pHash distance)
        twin_uid = lookup_strings(ctx, good, starts, twin[code > 0])
        detail = np.full(n, None, dtype=object)
        dropped = np.flatnonzero(code > 0)
        for row, u, c, d in zip(dropped.tolist(), twin_uid, code[dropped].tolist(), dist[dropped].tolist()):
            detail[row] = u if c == 1 else f"{u} phash_distance={d}"
        stats = {"rows": n, "exact_groups": int(n_exact_groups), "near_groups": int(n_near_groups),
                 "near_pairs": int(n_pairs), "duplicate": int((code == 1).sum()), "near_duplicate": int((code == 2).sum())}
        return DedupDecision(good, starts, code, detail, stats)

    # ---- per-shard pass
    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        d = ctx.shard_work(shard)
        return decided_results(batches, np.load(d / "code.npy"), read_strings(d / "detail.parquet").to_pylist(), CODES)

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        assert state is not None
        return {**self.config(), "exact_groups": state["exact_groups"], "near_groups": state["near_groups"],
                "near_pairs": state["near_pairs"]}


@dataclass
class DedupDecision:
    """:meth:`DedupStage.decide`'s result over the scanned rows of the good ``shards`` (shard k's
    rows are ``starts[k]:starts[k+1]``): ``code`` per row (0 keep, 1 duplicate, 2 near duplicate),
    ``detail`` per row (the kept twin's uid for a dropped row, else None) and the statistics."""

    shards: List[ShardRef]
    starts: np.ndarray
    code: np.ndarray
    detail: np.ndarray
    stats: Dict[str, Any]


def _as_key(col: "pa.Array") -> "pa.Array":
    import pyarrow as pa

    t = col.type
    if pa.types.is_dictionary(t):
        col = col.dictionary_decode()
        t = col.type
    if pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
        return col.fill_null("") if not pa.types.is_integer(t) else col.fill_null(-1)
    return col.cast(pa.string()).fill_null("")


def _popcount(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    c = np.zeros(len(x), dtype=np.int16)
    for k in range(64):
        c += ((x >> np.uint64(k)) & np.uint64(1)).astype(np.int16)
    return c
