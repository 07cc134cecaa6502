"""Pair mining within groups (MagicLens-style; docs/pairs.md): the candidate pairs of each group,
capped per group by a priority that is a pure function of the two uids and a seed, and their
scores (image-image, text-text and cross image-text cosines, label overlap).

* :func:`mine_pairs`: the C++ kernel (threads, GIL released);
* :func:`mine_pairs_reference`: the same definition as a straightforward per-group numpy loop
  (the tests' and the benchmark's reference: same pairs, same order, scores within float32
  rounding);
* :func:`group_rows`: sorts rows into contiguous groups (the order both take);
* :func:`label_csr`: label lists as sorted, unique 64-bit ids per row;
* :func:`pair_priority`: the priority, in numpy.

Definitions: rows are sorted by (group hash, uid hash, input position); a group's candidate pairs
are its unordered pairs {i, j} (positions i < j in the group); ``priority = pair_priority(uid_hash[i],
uid_hash[j], seed)``; the group keeps its ``min(cap, m(m-1)/2)`` pairs of lowest (priority, i, j),
in that order; the query is the row with the larger uid hash when the priority's top bit is set,
else the one with the smaller (the earlier row on equal hashes); the target is the other.

Thread safety: every function here may be called from several threads at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from ..errors import InputError
from ._emb import threads_or_all

__all__ = ["PairScores", "mine_pairs", "mine_pairs_reference", "pairs_of_group", "group_rows", "label_csr", "label_csr_arrow",
           "label_strings", "vectors", "pair_priority", "splitmix64", "SCORE_NAMES"]

#: the score arrays of :class:`PairScores`, in column order
SCORE_NAMES = ("image_sim", "text_sim", "query_image_target_text", "query_text_target_image", "label_overlap")

_M = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass
class PairScores:
    """The mined pairs: row indices (into the sorted rows), their group index, priority and scores
    (float32, NaN where a score does not exist: no vector, no labels). ``possible``: the number
    of pairs before the cap, sum over groups of m(m-1)/2."""

    query: np.ndarray
    target: np.ndarray
    group: np.ndarray
    priority: np.ndarray
    image_sim: np.ndarray
    text_sim: np.ndarray
    query_image_target_text: np.ndarray
    query_text_target_image: np.ndarray
    label_overlap: np.ndarray
    possible: int

    def __len__(self) -> int:
        return len(self.query)

    def take(self, idx: np.ndarray) -> "PairScores":
        return PairScores(**{f: getattr(self, f)[idx] for f in ("query", "target", "group", "priority", *SCORE_NAMES)},
                          possible=self.possible)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (np.asarray(x, np.uint64) + np.uint64(0x9E3779B97F4A7C15)) & _M
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M
        return z ^ (z >> np.uint64(31))


def pair_priority(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """``splitmix64(splitmix64(min(a, b) ^ splitmix64(seed)) ^ max(a, b))``: symmetric in a and b."""
    a = np.asarray(a, np.uint64)
    b = np.asarray(b, np.uint64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    s = splitmix64(np.array([_seed(seed)], np.uint64))[0]
    return splitmix64(splitmix64(lo ^ s) ^ hi)


def _seed(seed: Any) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= int(seed) < 1 << 64:
        raise InputError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return int(seed)


def group_rows(group_hash: np.ndarray, uid_hash: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The order that makes groups contiguous (sorted by group hash, then uid hash, then input
    position) and the group starts (``n_groups + 1`` offsets into that order)."""
    g = np.asarray(group_hash, np.uint64)
    u = np.asarray(uid_hash, np.uint64)
    if g.shape != u.shape or g.ndim != 1:
        raise InputError(f"group_hash and uid_hash must be 1-D of one length, got {g.shape} and {u.shape}")
    order = np.lexsort((np.arange(len(g)), u, g))
    gs = g[order]
    cut = np.flatnonzero(gs[1:] != gs[:-1]) + 1 if len(gs) else np.zeros(0, np.int64)
    starts = np.concatenate([[0], cut, [len(gs)]]).astype(np.int64) if len(gs) else np.zeros(1, np.int64)
    return order.astype(np.int64), starts


def label_csr(labels: Sequence[Optional[Sequence[str]]]) -> Tuple[np.ndarray, np.ndarray]:
    """Label lists (None or empty: no labels) as (offsets int64 [n + 1], ids uint64): each row's ids
    are the sorted, unique 64-bit hashes of its labels, lower-cased and stripped (so "Dog" from
    one source and "dog" from another are one label)."""
    from .balance import hash_keys

    flat: List[str] = []
    rows: List[int] = []
    for r, ls in enumerate(labels):
        for s in ls or ():
            if s is None:
                continue
            k = str(s).strip().lower()
            if k:
                flat.append(k)
                rows.append(r)
    n = len(labels)
    if not flat:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.uint64)
    return _label_rows_csr(hash_keys(flat), np.asarray(rows, np.int64), n)


def _label_rows_csr(ids: np.ndarray, row: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """(row, label hash) pairs as a CSR over ``n`` rows: each row's distinct labels, sorted."""
    order = np.lexsort((ids, row))
    ids, row = ids[order], row[order]
    keep = np.ones(len(ids), bool)
    keep[1:] = (ids[1:] != ids[:-1]) | (row[1:] != row[:-1])
    ids, row = ids[keep], row[keep]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(row, minlength=n), out=offsets[1:])
    return offsets, ids


def label_strings(col: Any) -> Any:
    """A labels column as ``list<string>``: annotate's ``list<struct<label, ...>>`` gives its
    ``label`` field; a ``list<string>`` is taken as is; nulls become empty lists."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        raise InputError(f"labels must be a list of strings or of {{label, ...}} structs, got {t}")
    col = col.fill_null(pa.scalar([], t)) if col.null_count else col
    vt = t.value_type
    values = col.values.slice(int(col.offsets[0].as_py()), int(col.offsets[-1].as_py()) - int(col.offsets[0].as_py()))
    offsets = pc.subtract(col.offsets, col.offsets[0])
    if pa.types.is_struct(vt):
        if vt.get_field_index("label") < 0:
            raise InputError(f"labels structs need a 'label' field, got {vt}")
        values = values.field("label")
    elif not (pa.types.is_string(vt) or pa.types.is_large_string(vt)):
        raise InputError(f"labels must be a list of strings or of {{label, ...}} structs, got {t}")
    values = values.cast(pa.string())
    return pa.ListArray.from_arrays(offsets.cast(pa.int32()), values)


def label_csr_arrow(col: Any) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`label_csr` of an Arrow labels column (:func:`label_strings`), vectorised."""
    import pyarrow.compute as pc

    from .balance import hash_keys

    ls = label_strings(col)
    n = len(ls)
    off = np.asarray(ls.offsets.to_numpy(), np.int64)
    vals = pc.utf8_lower(pc.utf8_trim_whitespace(ls.values))
    row = np.repeat(np.arange(n, dtype=np.int64), np.diff(off))
    ok = np.asarray(pc.and_(pc.is_valid(vals), pc.greater(pc.utf8_length(vals.fill_null("")), 0)).to_numpy(
        zero_copy_only=False), bool)
    if not ok.any():
        return np.zeros(n + 1, np.int64), np.zeros(0, np.uint64)
    return _label_rows_csr(hash_keys(vals.filter(ok)), row[ok], n)


def vectors(col: Any) -> Tuple[np.ndarray, np.ndarray]:
    """An embedding column (``fixed_size_list<float16|float32, d>`` as embed writes it, or lists of
    one length) as (``[n, d]`` float16/float32 array, valid mask); null rows are zeros."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = col.type
    n = len(col)
    valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool) if col.null_count else np.ones(n, bool)
    if pa.types.is_fixed_size_list(t):
        d = t.list_size
        flat = col.values.slice(col.offset * d, n * d)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        lens = np.asarray(col.value_lengths().fill_null(0).to_numpy(zero_copy_only=False), np.int64)
        ds = np.unique(lens[valid])
        if len(ds) > 1:
            raise InputError(f"embeddings of different lengths {ds.tolist()[:5]} in one column")
        d = int(ds[0]) if len(ds) else 0
        if not valid.all():  # null lists hold no values: give them zeros
            col = col.fill_null(pa.scalar([0.0] * d, t))
        flat = col.flatten()
    else:
        raise InputError(f"an embedding column must be a list of floats, got {t}")
    vt = flat.type
    if not (pa.types.is_float16(vt) or pa.types.is_float32(vt) or pa.types.is_float64(vt)):
        raise InputError(f"an embedding column must hold floats, got {vt}")
    a = flat.to_numpy(zero_copy_only=False)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    a = a.reshape(n, d)  # non-finite vectors stay: the kernel gives them NaN scores
    if not valid.all():
        a = a.copy()
        a[~valid] = 0
    return np.ascontiguousarray(a), valid


def _emb(e: Optional[np.ndarray], n: int, what: str) -> Optional[np.ndarray]:
    if e is None:
        return None
    a = np.asarray(e)
    if a.ndim != 2 or a.shape[0] != n:
        raise InputError(f"{what} must be (n, dim) with n = {n} rows, got shape {a.shape}")
    if a.dtype not in (np.float32, np.float16):
        raise InputError(f"{what} must be float32 or float16, got {a.dtype}; convert with .astype(np.float32)")
    return np.ascontiguousarray(a)


def mine_pairs(group_starts: np.ndarray, uid_hash: np.ndarray, *, seed: int = 0, max_pairs_per_group: int = 10,
               image: Optional[np.ndarray] = None, text: Optional[np.ndarray] = None, cross: bool = False,
               labels: Optional[Tuple[np.ndarray, np.ndarray]] = None, threads: Optional[int] = None) -> PairScores:
    """Mine and score pairs over rows already sorted into groups (:func:`group_rows`).

    Args:
        group_starts: int64 ``[n_groups + 1]`` offsets.
        uid_hash: uint64 per row (``fastcurate.kernels.balance.hash_keys`` of the uids).
        seed: the priority's seed.
        max_pairs_per_group: the cap; <= 0: every pair.
        image, text: ``[n, d]`` float32 or float16 vectors (normalised by the kernel), or None.
        cross: also score query image vs target text and query text vs target image (image and
            text in one space: a CLIP bundle).
        labels: ``(offsets, ids)`` from :func:`label_csr`, or None.
        threads: None = all cores.
    """
    uh = np.asarray(uid_hash)
    if uh.dtype != np.uint64 or uh.ndim != 1:
        raise InputError(f"uid_hash must be a 1-D uint64 array, got {uh.dtype} of shape {uh.shape}")
    n = len(uh)
    lo, lv = (None, None) if labels is None else labels
    gs = np.asarray(group_starts)
    if gs.dtype.kind in "iu":  # any integer offsets; the kernel checks their values
        gs = np.ascontiguousarray(gs, dtype=np.int64)
    d = _core.mine_pairs(gs, np.ascontiguousarray(uh), _seed(seed), int(max_pairs_per_group),
                         image=_emb(image, n, "image"), text=_emb(text, n, "text"), cross=bool(cross),
                         label_offsets=lo, labels=lv, threads=threads_or_all(threads))
    return PairScores(**{k: d[k] for k in ("query", "target", "group", "priority", *SCORE_NAMES)},
                      possible=int(d["possible"]))


def _normalise(e: np.ndarray) -> np.ndarray:
    x = e.astype(np.float32)
    nrm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=1))
    ok = (nrm > 0) & np.isfinite(nrm)
    out = np.full_like(x, np.nan)
    out[ok] = x[ok] * (1.0 / nrm[ok]).astype(np.float32)[:, None]
    return out


def pairs_of_group(uid_hash: np.ndarray, seed: int, cap: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One group's pairs as :func:`mine_pairs` picks and orients them, in plain numpy (the
    reference's and the benchmark's numpy peer's enumeration): ``(query, target, priority)``, rows
    numbered within the group, in priority order, at most ``cap`` of them (``cap <= 0``: all)."""
    h = uid_hash
    i, j = np.triu_indices(len(h), 1)
    prio = pair_priority(h[i], h[j], seed)
    order = np.lexsort((j, i, prio))
    if cap > 0:
        order = order[:cap]
    i, j, prio = i[order], j[order], prio[order]
    i_lo = h[i] <= h[j]
    lo, hi = np.where(i_lo, i, j), np.where(i_lo, j, i)
    top = (prio >> np.uint64(63)).astype(bool)
    return np.where(top, hi, lo), np.where(top, lo, hi), prio


def mine_pairs_reference(group_starts: np.ndarray, uid_hash: np.ndarray, *, seed: int = 0,
                         max_pairs_per_group: int = 10, image: Optional[np.ndarray] = None,
                         text: Optional[np.ndarray] = None, cross: bool = False,
                         labels: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> PairScores:
    """:func:`mine_pairs` as a straightforward per-group numpy loop (the reference)."""
    starts = np.asarray(group_starts, np.int64)
    uh = np.asarray(uid_hash, np.uint64)
    cap = int(max_pairs_per_group)
    img = _normalise(image) if image is not None else None
    txt = _normalise(text) if text is not None else None
    out: Dict[str, List[np.ndarray]] = {k: [] for k in ("query", "target", "group", "priority", *SCORE_NAMES)}
    possible = 0
    for g in range(len(starts) - 1):
        s, e = int(starts[g]), int(starts[g + 1])
        m = e - s
        if m < 2:
            continue
        possible += m * (m - 1) // 2
        q, t, prio = pairs_of_group(uh[s:e], seed, cap)
        q, t = q + s, t + s
        out["query"].append(q)
        out["target"].append(t)
        out["group"].append(np.full(len(q), g, np.int64))
        out["priority"].append(prio)
        nan = np.full(len(q), np.nan, np.float32)
        out["image_sim"].append(np.einsum("ij,ij->i", img[q], img[t]) if img is not None else nan)
        out["text_sim"].append(np.einsum("ij,ij->i", txt[q], txt[t]) if txt is not None else nan)
        out["query_image_target_text"].append(np.einsum("ij,ij->i", img[q], txt[t]) if cross and img is not None
                                              and txt is not None else nan)
        out["query_text_target_image"].append(np.einsum("ij,ij->i", txt[q], img[t]) if cross and img is not None
                                              and txt is not None else nan)
        if labels is not None:
            off, ids = labels
            ov = np.empty(len(q), np.float32)
            for k in range(len(q)):
                a = ids[off[q[k]]:off[q[k] + 1]]
                b = ids[off[t[k]]:off[t[k] + 1]]
                if len(a) == 0 or len(b) == 0:
                    ov[k] = np.nan
                else:
                    both = len(np.intersect1d(a, b, assume_unique=True))
                    ov[k] = both / (len(a) + len(b) - both)
            out["label_overlap"].append(ov)
        else:
            out["label_overlap"].append(nan)
    cat = {k: (np.concatenate(v) if v else np.zeros(0, np.uint64 if k == "priority" else
                                                     np.int64 if k in ("query", "target", "group") else np.float32))
           for k, v in out.items()}
    for name in SCORE_NAMES:
        cat[name] = cat[name].astype(np.float32)
    return PairScores(**cat, possible=possible)
