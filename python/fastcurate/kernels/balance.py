"""MetaCLIP counting and balanced sampling (Python API over the C++ kernels).

A *match result* is CSR: ``r.offsets`` (int64, ``len(texts) + 1``) and ``r.ids`` (int32); the
entry ids of text ``i`` are ``r.ids[r.offsets[i]:r.offsets[i + 1]]``, sorted and unique. It is
what :meth:`fastcurate.Matcher.match` returns; a plain ``(offsets, ids)`` tuple works too.

The balancing draw
------------------
MetaCLIP keeps a text when *any* of its matched entries fires, each entry ``e`` independently with
probability ``p_e = min(1, t / count_e)``. The probability of that is ``1 - prod_e (1 - p_e)``.
fastcurate draws ONE uniform ``u`` per sample, a pure function of ``(seed, key)``, and keeps the
sample when ``u < 1 - prod_e (1 - p_e)``. For a single sample both rules are Bernoulli with the
same parameter, so the kept set has the same distribution as MetaCLIP's as long as the draws of
different samples are independent -- which the 64-bit hash of distinct keys provides (samples
sharing a key share a draw: they are kept or dropped together). What changes is only *which*
randomness is used: the result no longer depends on the order in which samples are seen, so the
subset is identical whatever the shard layout, order, thread count or restarts.

Thread safety: every function here is stateless and may be called from many threads.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Tuple, Union

import numpy as np

from .. import _core
from ..errors import InputError, InputTypeError

__all__ = [
    "count_entries",
    "string_buffers",
    "t_to_p",
    "p_to_t",
    "entry_probs",
    "balance",
    "keep_probabilities",
    "expected_size",
    "t_for_target_size",
    "hash_keys",
    "uniform_draws",
]

MatchLike = Any  # an object with .offsets/.ids, or an (offsets, ids) tuple


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return 0  # the kernels use the hardware concurrency
    if int(threads) < 1:
        raise InputError(f"threads must be >= 1 or None, got {threads!r}")
    return int(threads)


def _csr(r: MatchLike) -> Tuple[np.ndarray, np.ndarray]:
    if isinstance(r, tuple) and len(r) == 2:
        offsets, ids = r
    elif hasattr(r, "offsets") and hasattr(r, "ids"):
        offsets, ids = r.offsets, r.ids
    else:
        raise InputTypeError(
            f"expected a match result (with .offsets and .ids) or an (offsets, ids) tuple, got {type(r).__name__}"
        )
    offsets = _exact(offsets, np.int64, "offsets")
    ids = _exact(ids, np.int32, "ids")
    return offsets, ids


def _exact(a: Any, dtype: Any, what: str) -> np.ndarray:
    """Return `a` as a 1-D contiguous array of `dtype` without converting: converting a large
    buffer silently would hide a copy, so a wrong dtype is an error that says how to fix it."""
    if isinstance(a, (list, tuple)):
        # small hand-built inputs: converting a Python list is not a hidden copy of a buffer
        a = np.asarray(a, dtype=dtype)
    if not isinstance(a, np.ndarray):
        raise InputTypeError(f"{what} must be a numpy array of {np.dtype(dtype).name}, got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        raise InputTypeError(
            f"{what} must have dtype {np.dtype(dtype).name}, got {a.dtype}; "
            f"convert it with np.ascontiguousarray({what}, dtype=np.{np.dtype(dtype).name})"
        )
    if a.ndim != 1:
        raise InputError(f"{what} must be 1-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise InputError(f"{what} must be C-contiguous; pass np.ascontiguousarray({what})")
    return a


def _counts(counts: Any) -> np.ndarray:
    return _exact(counts, np.uint64, "counts")


def _call(fn, *args):  # type: ignore[no-untyped-def]
    # The bindings raise ValueError for a bad CSR or t; re-raise as our InputError (a ValueError too).
    try:
        return fn(*args)
    except ValueError as e:
        if isinstance(e, InputError):
            raise
        raise InputError(str(e)) from None


def count_entries(r: MatchLike, n_entries: int, out: Optional[np.ndarray] = None,
                  keep: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-entry number of texts that match it (MetaCLIP's ``entry_count``), as uint64.

    Counts add across shards: pass the running total as ``out`` (updated in place and returned),
    or sum the arrays. ``n_entries`` is ``len(matcher)``; an id outside ``[0, n_entries)`` raises.
    ``keep`` (one bool per text) counts only the texts it marks (a curated subset's counts).
    """
    offsets, ids = _csr(r)
    n_entries = int(len(n_entries)) if hasattr(n_entries, "__len__") else int(n_entries)
    if out is None:
        out = np.zeros(n_entries, dtype=np.uint64)
    else:
        out = _counts(out)
        if len(out) != n_entries:
            raise InputError(f"out has {len(out)} slots but n_entries={n_entries}")
    k = None
    if keep is not None:
        k = np.ascontiguousarray(keep, dtype=bool)
        if k.shape != (len(offsets) - 1,):
            raise InputError(f"keep has shape {k.shape} for {len(offsets) - 1} texts")
        k = k.view(np.uint8)
    _call(_core.count_entries_into, offsets, ids, out, k)
    return out


def t_to_p(counts: np.ndarray, t: float) -> float:
    """MetaCLIP's t -> p: the share of all matches that fall on tail entries, ``sum(c[c < t]) / sum(c)``."""
    return float(_call(_core.t_to_p, _counts(counts), float(t)))


def p_to_t(counts: np.ndarray, p: float) -> int:
    """MetaCLIP's p -> t: the count at which the sorted cumulative share of matches is closest to ``p``."""
    if not (0.0 <= float(p) <= 1.0):
        raise InputError(f"p must be in [0, 1], got {p!r}")
    return int(_call(_core.p_to_t, _counts(counts), float(p)))


def entry_probs(counts: np.ndarray, t: float) -> np.ndarray:
    """Per-entry sampling probability: 1 where ``count < t``, else ``t / count`` (float64)."""
    return _call(_core.entry_probs, _counts(counts), float(t))


def hash_keys(keys: Any) -> np.ndarray:
    """64-bit hash of each sample key (uint64), the input of the balancing draw.

    ``keys``: a pyarrow string/large_string/binary or integer Array/ChunkedArray (DataComp's ``uid``
    hex strings included), a numpy integer or string array, or a list of str/int. Strings hash their
    UTF-8 bytes, integers their int64 value: the hash is fixed across machines, runs and versions of
    numpy/pyarrow. Null keys raise (give each sample an id).
    """
    import pyarrow as pa

    if isinstance(keys, pa.ChunkedArray):
        parts = [hash_keys(c) for c in keys.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    if isinstance(keys, np.ndarray):
        if keys.dtype.kind in "iu":
            if keys.dtype == np.uint64 and len(keys) and int(keys.max()) > np.iinfo(np.int64).max:
                raise InputError("uint64 keys above 2**63 - 1 are not supported; use int64 or string keys")
            return _core.hash_int_keys(np.ascontiguousarray(keys, dtype=np.int64))
        if keys.dtype.kind in "USO":
            keys = pa.array(keys.tolist(), type=pa.large_string())
        else:
            raise InputTypeError(f"keys must be integers or strings, got numpy dtype {keys.dtype}")
    elif isinstance(keys, (list, tuple)):
        if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in keys):
            return _core.hash_int_keys(np.asarray(keys, dtype=np.int64))
        if not all(isinstance(k, str) for k in keys):
            raise InputTypeError("keys must all be str or all be int")
        keys = pa.array(keys, type=pa.large_string())
    if not isinstance(keys, pa.Array):
        raise InputTypeError(f"unsupported keys type {type(keys).__name__}")
    if keys.null_count:
        first = int(np.flatnonzero(keys.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"keys hold {keys.null_count} null value(s), the first at row {first}; every sample needs a key")
    t = keys.type
    if pa.types.is_dictionary(t):
        keys = keys.dictionary_decode()
        t = keys.type
    if pa.types.is_integer(t):
        if pa.types.is_uint64(t):
            return hash_keys(keys.to_numpy())
        return _core.hash_int_keys(keys.cast(pa.int64()).to_numpy())
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        return _call(_core.hash_string_keys, *string_buffers(keys))
    raise InputTypeError(f"keys must be a string or integer column, got Arrow type {t}")


def string_buffers(arr: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The offsets (int32, or int64 for the large types) and the data bytes of a string / binary
    pyarrow Array, as zero-copy views of its buffers: the C++ kernels' Arrow-layout input. The
    array's offset selects this slice's offsets; nulls are not looked at (the caller checks)."""
    import pyarrow as pa

    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    _, obuf, dbuf = arr.buffers()
    odt = np.dtype(np.int64 if wide else np.int32)
    offsets = np.frombuffer(obuf, dtype=odt, count=len(arr) + 1, offset=arr.offset * odt.itemsize)
    data = np.frombuffer(dbuf, dtype=np.uint8) if dbuf is not None else np.zeros(0, dtype=np.uint8)
    return offsets, data


def uniform_draws(keys: Any, seed: int = 0) -> np.ndarray:
    """The uniform in [0, 1) that decides each sample's fate for ``seed`` (for audits and tests)."""
    return _core.uniform_draws(hash_keys(keys), _seed(seed))


def _seed(seed: int) -> int:
    s = int(seed)
    if not (0 <= s < 2**64):
        raise InputError(f"seed must be in [0, 2**64), got {seed!r}")
    return s


def balance(
    r: MatchLike,
    probs: np.ndarray,
    keys: Any,
    seed: int = 0,
    threads: Optional[int] = None,
    *,
    key_hashes: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Balanced sampling: a bool mask, True for the texts kept.

    Text ``i`` with matched entries ``M`` is kept with probability ``1 - prod_{e in M}(1 - probs[e])``
    using one uniform per sample that is a pure function of ``(seed, keys[i])`` (see the module
    docstring for why this equals MetaCLIP's rule in distribution). Texts with no match are never
    kept. The result does not depend on ``threads``. ``key_hashes`` (from :func:`hash_keys`) may be
    passed instead of ``keys`` to skip re-hashing.
    """
    offsets, ids = _csr(r)
    probs = _exact(probs, np.float64, "probs")
    if key_hashes is None:
        key_hashes = hash_keys(keys)
    key_hashes = _exact(key_hashes, np.uint64, "key_hashes")
    keep, _ = _call(_core.balance, offsets, ids, probs, key_hashes, _seed(seed), _threads(threads))
    return keep.view(np.bool_)


def keep_probabilities(r: MatchLike, probs: np.ndarray) -> np.ndarray:
    """Per-text keep probability ``1 - prod(1 - probs[e])`` (0 for texts without matches)."""
    offsets, ids = _csr(r)
    probs = _exact(probs, np.float64, "probs")
    n = len(offsets) - 1
    out = np.zeros(n, dtype=np.float64)
    lens = np.diff(offsets)
    nz = lens > 0
    if nz.any():
        # log-sum over each row via reduceat; rows with probs == 1 give log(0) = -inf -> keep prob 1
        with np.errstate(divide="ignore"):
            logq = np.log1p(-probs[ids[offsets[0] : offsets[-1]]])
        starts = (offsets[:-1] - offsets[0])[nz]
        sums = np.add.reduceat(logq, starts) if len(logq) else np.zeros(0)
        out[nz] = -np.expm1(sums)
    return out


def _results(r: Union[MatchLike, Iterable[MatchLike]]) -> Iterable[MatchLike]:
    if isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], (np.ndarray, list)):
        return [r]
    if hasattr(r, "offsets"):
        return [r]
    if iter(r) is r:
        return list(r)  # a one-shot iterator: materialise it, the bisection iterates many times
    return r  # a re-iterable collection (e.g. shards loaded lazily one at a time): keep it lazy


def expected_size(
    r: Union[MatchLike, Iterable[MatchLike]],
    counts: np.ndarray,
    t: float,
    threads: Optional[int] = None,
) -> float:
    """Expected number of kept texts for threshold ``t``: ``sum_i 1 - prod_{e in M_i}(1 - p_e)``.

    ``r`` is one match result or a list of them (e.g. one per shard); ``counts`` the global entry
    counts. Needs only the counts pass (no draw), so users can size the output before selecting.
    """
    counts = _counts(counts)
    total = 0.0
    for one in _results(r):
        offsets, ids = _csr(one)
        total += float(_call(_core.expected_size_for_t, offsets, ids, counts, float(t), _threads(threads)))
    return total


def t_for_target_size(
    r: Union[MatchLike, Iterable[MatchLike]],
    counts: np.ndarray,
    target: float,
    threads: Optional[int] = None,
    rel_tol: float = 1e-9,
) -> float:
    """The threshold ``t`` whose :func:`expected_size` equals ``target``.

    ``expected_size`` is continuous and non-decreasing in ``t``, so a bracketing root finder is
    safe; the Illinois variant of regula falsi needs ~10 evaluations where bisection needs ~50, and
    each evaluation is a pass over every stored match result. Stops when the expected size is within
    ``rel_tol * target`` of the target (or the bracket has collapsed). Raises when the target
    exceeds the number of texts with at least one match (the most balancing can keep).
    """
    counts = _counts(counts)
    results = _results(r)
    target = float(target)
    if not (target > 0) or math.isinf(target):
        raise InputError(f"target size must be a positive number, got {target!r}")
    hi = float(counts.max()) + 1.0 if len(counts) else 1.0  # every p_e == 1 from here on
    f_hi = expected_size(results, counts, hi, threads) - target
    if f_hi < -1e-9 * target:
        raise InputError(
            f"target size {target:g} exceeds the {f_hi + target:.0f} texts that match at least one entry; "
            "no threshold keeps more"
        )
    lo, f_lo = 0.0, -target  # expected_size(0) = 0
    tol = rel_tol * target
    side = 0
    t = hi
    for _ in range(200):
        if f_hi <= tol and f_hi >= -tol:
            return hi
        if hi - lo <= 1e-15 * hi:
            return hi
        t = hi - f_hi * (hi - lo) / (f_hi - f_lo)  # secant through the bracket ends
        if not (lo < t < hi):
            t = 0.5 * (lo + hi)
        f = expected_size(results, counts, t, threads) - target
        if abs(f) <= tol:
            return t
        if f > 0:
            hi, f_hi = t, f
            if side == 1:
                f_lo *= 0.5  # Illinois: halve the stale end so the bracket shrinks from both sides
            side = 1
        else:
            lo, f_lo = t, f
            if side == -1:
                f_hi *= 0.5
            side = -1
    return t
