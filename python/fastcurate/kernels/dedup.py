"""Duplicate detection kernels: exact (128-bit content hashes) and near-duplicate images (perceptual
hashes within a Hamming radius), grouped by union-find with one deterministic keep rule.

* :func:`content_hashes` / :func:`text_hashes`: XXH3-128 (the ``xxhash`` package, the reference
  xxHash library) of each image's bytes, caption or URL; :func:`exact_duplicates` groups rows whose
  keys are all equal (one key, or several for "same image and same caption").
* :func:`hamming_pairs`: every pair of 64-bit hashes within a radius, exactly (identical to a
  brute-force popcount over all pairs) but without comparing every pair: multi-index hashing in
  C++, threads, GIL released (docs/dedup.md).
* :func:`near_duplicates`: pHash within ``radius`` (default 10, imagededup's
  ``max_distance_threshold``) and, by default, dHash within ``dhash_radius`` too; groups are the
  connected components of that graph (union-find).

The keep rule, everywhere: in each group keep the row with the highest resolution (``width *
height``, when given), then the smallest ``tiebreak`` value (e.g. the uid; when given), then the
smallest row index. Every other row is dropped and names its kept twin (``twin[i]``), the kept
row of its group, which may be a transitive rather than a direct neighbour.

Thread safety: every function here is safe to call from several threads at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
import pyarrow as pa

from .. import _core
from ..errors import InputError, InputTypeError
from ._emb import threads_or_all
from ._blobs import blob_rows

__all__ = [
    "DEFAULT_RADIUS",
    "DEFAULT_DHASH_RADIUS",
    "DEFAULT_MAX_PAIRS",
    "Pairs",
    "hamming_pairs",
    "search_plan",
    "connected_components",
    "keep_rank",
    "DedupResult",
    "keep_one_per_group",
    "near_duplicates",
    "ContentHashes",
    "content_hashes",
    "text_hashes",
    "exact_duplicates",
]

#: imagededup's default for hash methods: ``find_duplicates(max_distance_threshold=10)`` (<= 10 bits).
DEFAULT_RADIUS = 10
#: The dHash confirmation radius: with pHash <= 10 alone, 8 % of reported pairs were different
#: photos on the shared-backdrop clothing set; requiring dHash <= 10 as well brings that under 2 %
#: at a cost of 0.4 points of recall (benchmarks/RESULTS.md, "Near-duplicate quality").
DEFAULT_DHASH_RADIUS = 10
#: A guard against degenerate inputs: 50M pairs take about 1 GB while they are gathered.
DEFAULT_MAX_PAIRS = 50_000_000


def _radius(r: Any, what: str) -> int:
    if not isinstance(r, (int, np.integer)) or isinstance(r, bool) or not 0 <= r <= 64:
        raise InputError(f"{what} must be an int in [0, 64], got {r!r}")
    return int(r)


def _hash_array(h: Any, what: str) -> np.ndarray:
    """A 1-D uint64 array; other integer dtypes are refused rather than silently reinterpreted."""
    a = np.asarray(h)
    if a.ndim != 1:
        raise InputError(f"{what} must be 1-D (one 64-bit hash per row), got shape {a.shape}")
    if a.dtype != np.uint64:
        if a.dtype.kind in "iu" and a.size and a.min() >= 0:
            a = a.astype(np.uint64)
        elif a.size == 0:
            a = a.astype(np.uint64)
        else:
            raise InputError(f"{what} must have dtype uint64, got {a.dtype}; convert it with np.asarray({what}, dtype=np.uint64)")
    return np.ascontiguousarray(a)


@dataclass(frozen=True)
class Pairs:
    """Pairs (i < j) sorted by (i, j); ``distance`` and ``distance2`` (second hash) are uint8."""

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray
    distance2: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.i)


def hamming_pairs(
    hashes: Any,
    radius: int = DEFAULT_RADIUS,
    *,
    second: Any = None,
    second_radius: int = DEFAULT_DHASH_RADIUS,
    threads: Optional[int] = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    method: str = "mih",
    blocks: Optional[int] = None,
) -> Pairs:
    """Every pair of rows with ``popcount(hashes[i] ^ hashes[j]) <= radius`` (and, with ``second``,
    ``popcount(second[i] ^ second[j]) <= second_radius``).

    ``method="mih"`` (multi-index hashing) and ``method="brute"`` (every pair) return identical
    results; raises InputError when more than ``max_pairs`` pairs qualify. ``blocks`` forces the
    number of MIH blocks (None: the cost model's choice, see :func:`search_plan`); the result is the
    same for every value, only the speed differs.
    """
    h = _hash_array(hashes, "hashes")
    s = None if second is None else _hash_array(second, "second")
    if s is not None and len(s) != len(h):
        raise InputError(f"second has {len(s)} hashes but hashes has {len(h)}; pass one per row")
    if method not in ("mih", "brute"):
        raise InputError(f"method must be 'mih' or 'brute', got {method!r}")
    i, j, d, d2 = _core.hamming_pairs(
        h, _radius(radius, "radius"), s, _radius(second_radius, "second_radius"), int(max_pairs), threads_or_all(threads), method,
        int(blocks or 0),
    )
    return Pairs(i=i, j=j, distance=d, distance2=d2)


def search_plan(n: int, radius: int = DEFAULT_RADIUS, blocks: Optional[int] = None) -> dict:
    """The block split :func:`hamming_pairs` uses for ``n`` hashes (blocks, bits, per-block radii and
    the expected comparisons and look-ups for uniformly random hashes)."""
    return dict(_core.plan_search(int(n), _radius(radius, "radius"), int(blocks or 0)))


def connected_components(n: int, i: Any, j: Any) -> np.ndarray:
    """Union-find over ``n`` rows and the edges ``(i[k], j[k])``: each row's label is the smallest
    row of its component (int64)."""
    a = np.ascontiguousarray(i, dtype=np.int64)
    b = np.ascontiguousarray(j, dtype=np.int64)
    return _core.connected_components(int(n), a, b)


def _tiebreak_keys(tiebreak: Any, n: int) -> np.ndarray:
    """A sortable numpy array equivalent to ``tiebreak`` (ascending order = preference)."""
    if isinstance(tiebreak, (pa.Array, pa.ChunkedArray)):
        if tiebreak.null_count:
            raise InputError("tiebreak has nulls; every row needs a key (e.g. its uid)")
        import pyarrow.compute as pc

        return np.asarray(pc.rank(tiebreak, sort_keys="ascending", tiebreaker="dense"), dtype=np.int64)
    a = np.asarray(tiebreak)
    if a.ndim != 1:
        raise InputError(f"tiebreak must be 1-D, got shape {a.shape}")
    if a.dtype.kind == "O":
        if any(v is None for v in a.tolist()):
            raise InputError("tiebreak has None values; every row needs a key (e.g. its uid)")
        a = np.asarray(a.tolist())
        if a.dtype.kind == "O":
            raise InputTypeError("tiebreak must hold numbers or strings of one kind")
    if a.dtype.kind not in "iufUSb":
        raise InputTypeError(f"tiebreak has dtype {a.dtype}; pass numbers or strings (e.g. the uid column)")
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise InputError("tiebreak has NaN values")
    return a


def keep_rank(n: int, *, resolution: Any = None, tiebreak: Any = None) -> np.ndarray:
    """The preference order of the keep rule as a permutation rank (int64, 0 = most preferred):
    highest ``resolution`` first, then smallest ``tiebreak``, then smallest row index."""
    keys: List[np.ndarray] = [np.arange(n, dtype=np.int64)]  # np.lexsort: the last key is primary
    if tiebreak is not None:
        t = _tiebreak_keys(tiebreak, n)
        if len(t) != n:
            raise InputError(f"tiebreak has {len(t)} values for {n} rows")
        keys.append(t)
    if resolution is not None:
        r = np.asarray(resolution)
        if r.shape != (n,):
            raise InputError(f"resolution must have one value per row ({n}), got shape {r.shape}")
        if r.dtype.kind not in "iuf":
            raise InputTypeError(f"resolution must be numeric (width * height), got dtype {r.dtype}")
        if r.dtype.kind == "f" and np.isnan(r).any():
            raise InputError("resolution has NaN values; use 0 for unknown sizes")
        keys.append(-r.astype(np.float64) if r.dtype.kind == "f" else -r.astype(np.int64))
    order = np.lexsort(keys)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    return rank


@dataclass(frozen=True)
class DedupResult:
    """Per-row outcome of a dedup.

    ``keep``: bool; ``twin``: int64, the row kept for this row's group (``twin[i] == i`` for kept
    rows); ``group``: int64, the smallest row of the group (rows not compared, e.g. ``valid=False``,
    are groups of one); ``n_pairs``: qualifying pairs found (between distinct keys).
    """

    keep: np.ndarray
    twin: np.ndarray
    group: np.ndarray
    n_pairs: int = 0

    def __len__(self) -> int:
        return len(self.keep)

    @property
    def dropped(self) -> np.ndarray:
        """Row indices of the dropped rows (ascending)."""
        return np.flatnonzero(~self.keep)

    @property
    def n_groups(self) -> int:
        """Number of groups with more than one row."""
        sizes = np.bincount(self.group, minlength=len(self.group)) if len(self.group) else np.zeros(0, np.int64)
        return int((sizes > 1).sum())


def keep_one_per_group(labels: Any, *, resolution: Any = None, tiebreak: Any = None, n_pairs: int = 0) -> DedupResult:
    """Applies the keep rule to rows labelled by group (labels are row indices, e.g. from
    :func:`connected_components`)."""
    lab = np.ascontiguousarray(labels, dtype=np.int64)
    n = len(lab)
    rank = keep_rank(n, resolution=resolution, tiebreak=tiebreak)
    twin = _core.best_of_groups(lab, rank)
    return DedupResult(keep=twin == np.arange(n), twin=twin, group=lab, n_pairs=n_pairs)


def _valid_mask(valid: Any, n: int) -> np.ndarray:
    if valid is None:
        return np.ones(n, dtype=bool)
    v = np.asarray(valid)
    if v.shape != (n,) or v.dtype != bool:
        raise InputError(f"valid must be a bool array of one value per row ({n}), got {v.dtype} of shape {v.shape}")
    return v


def near_duplicates(
    phash: Any,
    *,
    dhash: Any = None,
    radius: int = DEFAULT_RADIUS,
    dhash_radius: int = DEFAULT_DHASH_RADIUS,
    valid: Any = None,
    resolution: Any = None,
    tiebreak: Any = None,
    threads: Optional[int] = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> DedupResult:
    """Near-duplicate groups: rows are linked when their pHashes differ in at most ``radius`` bits
    and (when ``dhash`` is given) their dHashes in at most ``dhash_radius`` bits; groups are the
    connected components; the keep rule picks one row per group (module docstring).

    Rows with identical hashes are collapsed before the search, so thousands of copies of one
    image cost one search entry. Rows with ``valid=False`` (no hash) are never grouped.
    """
    ph = _hash_array(phash, "phash")
    n = len(ph)
    dh = None if dhash is None else _hash_array(dhash, "dhash")
    if dh is not None and len(dh) != n:
        raise InputError(f"dhash has {len(dh)} hashes but phash has {n}; pass one per row")
    ok = _valid_mask(valid, n)
    rows = np.flatnonzero(ok)
    p = ph[rows]
    d = dh[rows] if dh is not None else np.zeros(len(rows), dtype=np.uint64)
    order = np.lexsort((d, p))
    sp, sd = p[order], d[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (sp[1:] != sp[:-1]) | (sd[1:] != sd[:-1])
    first = np.flatnonzero(new)
    unique_of_sorted = np.cumsum(new) - 1
    rep_row = rows[order[first]]  # one row per distinct (phash, dhash)
    pairs = hamming_pairs(
        sp[first],
        radius,
        second=sd[first] if dh is not None else None,
        second_radius=dhash_radius,
        threads=threads,
        max_pairs=max_pairs,
    )
    a = np.concatenate([rep_row[unique_of_sorted[~new]], rep_row[pairs.i]])
    b = np.concatenate([rows[order[~new]], rep_row[pairs.j]])
    labels = connected_components(n, a, b)
    return keep_one_per_group(labels, resolution=resolution, tiebreak=tiebreak, n_pairs=len(pairs))


# ---------------------------------------------------------------------------------------------
# Exact duplicates


@dataclass(frozen=True)
class ContentHashes:
    """XXH3-128 digests: ``digest[i] = (high 64 bits, low 64 bits)`` (uint64, shape (n, 2)), zero
    where ``valid[i]`` is False (null row)."""

    digest: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.valid)


def _xxh3_128() -> Any:
    try:
        import xxhash
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("content hashes need the xxhash package: pip install 'fastcurate[images]'") from e
    return xxhash.xxh3_128_intdigest


def _digests(n: int, fetch: Any) -> ContentHashes:
    h128 = _xxh3_128()
    mask = (1 << 64) - 1
    his: List[int] = []
    los: List[int] = []
    valid: List[bool] = []
    step = 65536  # rows fetched at a time: bounded memory for the views, few Python calls
    for lo in range(0, n, step):
        for b in fetch(lo, min(n, lo + step)):
            if b is None:
                his.append(0)
                los.append(0)
                valid.append(False)
            else:
                d = h128(b)
                his.append(d >> 64)
                los.append(d & mask)
                valid.append(True)
    digest = np.empty((n, 2), dtype=np.uint64)
    digest[:, 0] = np.array(his, dtype=np.uint64)
    digest[:, 1] = np.array(los, dtype=np.uint64)
    return ContentHashes(digest=digest, valid=np.array(valid, dtype=bool))


def content_hashes(blobs: Any) -> ContentHashes:
    """XXH3-128 of every row's bytes (images, or any binary column); null rows are ``valid=False``.

    ``blobs``: a pyarrow binary / large_binary Array or ChunkedArray (read in place) or a list of
    ``bytes`` / None. One ``xxhash`` call per row (measured in benchmarks/RESULTS.md: the per-call
    cost is small next to hashing an image's tens of kilobytes).
    """
    n, fetch = blob_rows(blobs)
    return _digests(n, fetch)


def text_hashes(texts: Any) -> ContentHashes:
    """XXH3-128 of every string's UTF-8 bytes, exactly as stored (no case or space folding):
    captions or URLs. Accepts a pyarrow string / large_string array or a list of str / None."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        t = texts.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            target = pa.large_binary() if pa.types.is_large_string(t) else pa.binary()
            texts = texts.cast(target) if isinstance(texts, pa.ChunkedArray) else texts.view(target)
        return content_hashes(texts)
    if isinstance(texts, (str, bytes)):
        raise InputTypeError("texts must be a sequence of strings, not a single string; wrap it in a list")
    seq = list(texts)
    enc: List[Optional[bytes]] = []
    for k, s in enumerate(seq):
        if s is None:
            enc.append(None)
        elif isinstance(s, str):
            enc.append(s.encode("utf-8", "surrogatepass"))
        else:
            raise InputTypeError(f"texts[{k}] is a {type(s).__name__}, expected str or None")
    return content_hashes(enc)


def exact_duplicates(
    *keys: ContentHashes,
    resolution: Any = None,
    tiebreak: Any = None,
    valid: Any = None,
) -> DedupResult:
    """Groups rows whose keys are all equal (e.g. ``exact_duplicates(image_hashes)`` or
    ``exact_duplicates(image_hashes, caption_hashes)`` for identical (image, caption) pairs) and
    applies the keep rule. Rows with a null key (or ``valid=False``) are never grouped."""
    if not keys:
        raise InputError("exact_duplicates needs at least one ContentHashes key")
    n = len(keys[0])
    ok = _valid_mask(valid, n).copy()
    cols: List[np.ndarray] = []
    for k, key in enumerate(keys):
        if not isinstance(key, ContentHashes):
            raise InputTypeError(f"keys[{k}] is a {type(key).__name__}; pass the ContentHashes of content_hashes()")
        if len(key) != n:
            raise InputError(f"keys[{k}] has {len(key)} rows, keys[0] has {n}")
        ok &= key.valid
        cols += [key.digest[:, 0], key.digest[:, 1]]
    rows = np.flatnonzero(ok)
    labels = np.arange(n, dtype=np.int64)
    if len(rows):
        sub = [c[rows] for c in cols]
        order = np.lexsort(sub[::-1])  # primary: the first key's high word
        same = np.ones(len(order) - 1, dtype=bool) if len(order) > 1 else np.zeros(0, dtype=bool)
        for c in sub:
            sc = c[order]
            same &= sc[1:] == sc[:-1]
        new = np.concatenate([[True], ~same])
        run = np.cumsum(new) - 1
        # The label of a run is its smallest row (lexsort is stable, so rows ascend within a run).
        first_row = rows[order[np.flatnonzero(new)]]
        labels[rows[order]] = first_row[run]
        n_pairs = int(np.sum(np.bincount(run) * (np.bincount(run) - 1) // 2))
    else:
        n_pairs = 0
    return keep_one_per_group(labels, resolution=resolution, tiebreak=tiebreak, n_pairs=n_pairs)
