"""CLIP-score thresholds: a fixed minimum, or DataComp's top fraction over all shards.

DataComp (``baselines/apply_filter.py``, ``get_threshold``) loads every score into one array and
takes::

    n = int(len(scores) * fraction)
    threshold = -np.sort(-scores)[n]          # the score at index n of the descending order
    keep = scores >= threshold

:func:`top_fraction_threshold` returns exactly that value without holding the scores in memory:
a radix select over the order-preserving bit pattern of the floats. Each pass reads every shard
once and histograms the next 16 bits of the scores that share the prefix found so far; as soon as
the candidates left fit in ``collect_limit`` values they are gathered and the exact one is picked
with ``np.partition``. Two passes usually suffice (float32: at most two; float64: at most four).
Memory: a 65,536-bin histogram plus at most ``collect_limit`` scores.

Edge cases, as in DataComp: ``fraction = 0`` gives the largest score (every row equal to it is
kept); ties at the threshold are all kept, so more than ``n`` rows may pass. NaN scores sort after
every number (as ``np.sort`` puts them) and count in ``len(scores)``; a threshold that would fall
among them (DataComp would keep nothing) is an error here, and so are ``fraction >= 1`` and an
empty input (DataComp raises IndexError on both).

Thread safety: stateless functions.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError, InputTypeError

__all__ = ["top_fraction_threshold", "keep_at_least", "order_keys"]

Shards = Union[Sequence[Any], Callable[[], Iterable[Any]]]

_DIGIT = 16
_BINS = 1 << _DIGIT


def order_keys(scores: np.ndarray) -> np.ndarray:
    """Unsigned integers that sort like the floats (``-inf < ... < -0.0 < +0.0 < ... < +inf``).

    float32 -> uint32, float64 -> uint64. NaNs get keys above +inf (callers drop them first)."""
    if scores.dtype == np.float32:
        u = scores.view(np.uint32)
        sign = np.uint32(0x80000000)
    elif scores.dtype == np.float64:
        u = scores.view(np.uint64)
        sign = np.uint64(0x8000000000000000)
    else:
        raise InputTypeError(f"scores must be float32 or float64, got {scores.dtype}")
    return np.where(u & sign, ~u, u | sign)


def _from_key(key: int, dtype: np.dtype) -> np.floating:
    if dtype == np.float32:
        k = np.uint32(key)
        u = np.where(k & np.uint32(0x80000000), k & np.uint32(0x7FFFFFFF), ~k)
        return np.array([u], dtype=np.uint32).view(np.float32)[0]
    k64 = np.uint64(key)
    u64 = np.where(k64 & np.uint64(0x8000000000000000), k64 & np.uint64(0x7FFFFFFFFFFFFFFF), ~k64)
    return np.array([u64], dtype=np.uint64).view(np.float64)[0]


def _passes(shards: Shards) -> Callable[[], Iterator[Any]]:
    """A function that starts a fresh pass over the shards."""
    if callable(shards):
        return lambda: iter(shards())  # type: ignore[operator]
    try:
        it = iter(shards)
    except TypeError:
        raise InputTypeError(
            f"shards must be a list of score arrays or a function returning an iterable of them, not {type(shards).__name__}"
        ) from None
    if it is shards:
        raise InputTypeError(
            "shards is a one-shot iterator, but the threshold needs two or more passes over the scores; pass a "
            "list of arrays or a function that returns a fresh iterator each time (e.g. lambda: (read(p) for p in paths))"
        )
    return lambda: iter(shards)


def _as_scores(x: Any, i: int, dtype: Optional[np.dtype]) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise InputError(f"scores of shard {i} must be one-dimensional, got shape {a.shape}")
    if a.dtype not in (np.float16, np.float32, np.float64):
        raise InputTypeError(f"scores of shard {i} have dtype {a.dtype}; CLIP scores must be float16/32/64")
    if dtype is not None and a.dtype != dtype:
        a = a.astype(dtype)  # exact: only ever widening (see _common_dtype)
    return a


def _common_dtype(dtypes: List[np.dtype]) -> np.dtype:
    # pandas' concat of shards widens to the widest float; float16 is compared as float32.
    if any(d == np.float64 for d in dtypes):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def top_fraction_threshold(
    shards: Shards, fraction: float, *, collect_limit: int = 1 << 24
) -> np.floating:
    """DataComp's ``-np.sort(-scores)[int(len(scores) * fraction)]`` over all shards, exactly.

    Args:
        shards: per-shard 1-D float arrays (float16/32/64), as a list, or a function that returns
            a fresh iterable of them for each pass (so shards can be re-read from disk).
        fraction: the share of rows to keep, in [0, 1).
        collect_limit: the most scores held in memory at once in the last pass.

    Returns the threshold as a numpy scalar of the scores' dtype (float64 if any shard is);
    keep a row when ``score >= threshold`` (:func:`keep_at_least`).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating, np.integer)):
        raise InputTypeError(f"fraction must be a number, got {type(fraction).__name__}")
    fraction = float(fraction)
    if not (0.0 <= fraction < 1.0):
        raise InputError(
            f"fraction must be in [0, 1), got {fraction}; DataComp's get_threshold fails for 1 (index out of range) "
            "and a fraction of 1 keeps everything, so drop the CLIP-score filter instead"
        )
    if collect_limit < 1:
        raise InputError(f"collect_limit must be >= 1, got {collect_limit}")
    start = _passes(shards)

    # Pass 1: sizes, dtypes, NaNs and the histogram of the top 16 bits.
    sizes: List[int] = []
    dtypes: List[np.dtype] = []
    for i, x in enumerate(start()):
        a = _as_scores(x, i, None)
        sizes.append(len(a))
        dtypes.append(a.dtype)
    total = sum(sizes)
    if total == 0:
        raise InputError("no CLIP scores at all (every shard is empty); the top-fraction threshold is undefined")
    dtype = _common_dtype(dtypes)
    bits = 32 if dtype == np.float32 else 64
    n = int(total * fraction)  # DataComp: n = int(len(df) * p)

    def shard_keys(pass_no: int) -> Iterator[Tuple[np.ndarray, int]]:
        count = 0
        for i, x in enumerate(start()):
            a = _as_scores(x, i, dtype)
            if i >= len(sizes) or len(a) != sizes[i]:
                raise InputError(
                    f"shard {i} changed between passes over the scores (pass {pass_no}); the shards must be the same each time"
                )
            count += 1
            nan = np.isnan(a)
            yield order_keys(a[~nan] if nan.any() else a), int(nan.sum())
        if count != len(sizes):
            raise InputError(f"the number of shards changed between passes ({len(sizes)}, then {count})")

    prefix = 0  # the key bits fixed so far (the top `done` bits)
    done = 0
    rank: Optional[int] = None  # rank of the threshold among the candidates, ascending
    candidates = 0
    pass_no = 1
    while True:
        shift = bits - done - _DIGIT
        hist = np.zeros(_BINS, dtype=np.int64)
        nans = 0
        for keys, k_nan in shard_keys(pass_no):
            nans += k_nan
            if done:
                keys = keys[(keys >> np.asarray(bits - done, dtype=keys.dtype)) == prefix]
            digit = (keys >> np.asarray(shift, dtype=keys.dtype)) & np.asarray(_BINS - 1, dtype=keys.dtype)
            hist += np.bincount(digit.astype(np.int64), minlength=_BINS)
        if rank is None:
            finite = total - nans
            if n >= finite:
                raise InputError(
                    f"the top-{fraction} threshold (index {n} of {total} scores sorted descending) falls among the "
                    f"{nans} NaN scores, which would keep no row; drop rows without a score first"
                )
            rank = finite - 1 - n  # the threshold is the rank-th smallest non-NaN score
        cum = np.cumsum(hist)
        b = int(np.searchsorted(cum, rank, side="right"))
        below = int(cum[b - 1]) if b > 0 else 0
        rank -= below
        prefix = (prefix << _DIGIT) | b
        done += _DIGIT
        candidates = int(hist[b])
        pass_no += 1
        if done == bits:
            return _from_key(prefix, dtype)
        if candidates <= collect_limit:
            break

    # Last pass: gather the candidates (the scores whose key starts with `prefix`) and pick one.
    got: List[np.ndarray] = []
    for keys, _ in shard_keys(pass_no):
        got.append(keys[(keys >> np.asarray(bits - done, dtype=keys.dtype)) == prefix])
    cand = np.concatenate(got) if got else np.zeros(0, dtype=np.uint32 if bits == 32 else np.uint64)
    if len(cand) != candidates:
        raise InputError("the scores changed between passes; the shards must be the same each time")
    return _from_key(int(np.partition(cand, rank)[rank]), dtype)


def keep_at_least(scores: Any, threshold: Union[float, np.floating]) -> np.ndarray:
    """``scores >= threshold`` compared in the scores' own dtype (as DataComp's pandas filter and
    ``--clip-score-min`` do); NaN scores are never kept."""
    a = np.asarray(scores)
    if a.dtype not in (np.float16, np.float32, np.float64):
        raise InputTypeError(f"scores must be float16/32/64, got {a.dtype}")
    t = float(threshold)
    if np.isnan(t):
        raise InputError("the threshold is NaN; it would keep no row")
    return a >= a.dtype.type(t)
