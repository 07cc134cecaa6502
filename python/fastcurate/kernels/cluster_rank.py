"""Per-cluster order of rows by distance to their centroid, in bounded memory.

Everything here takes streamed ``(labels, key)`` arrays, one piece of rows after another in row
order, where ``key`` is a *closeness key*: smaller means closer to the centroid (``-cos`` for the
cosine metric, the squared distance for Euclidean; :meth:`Assignment.closeness_key`). Rows with
label -1 (rejected rows) are ignored. The order within a cluster is by ``(key, row)``: ties go to
the earlier row, so every result is a pure function of the inputs.

* :class:`ClusterExtremes` keeps the N closest and N furthest rows of every cluster:
  memory O(k N) whatever the number of rows.
* :func:`rank_in_cluster` ranks rows held in memory (0 = closest).
* :class:`ClusterRanker` ranks any number of rows with memory bounded by ``memory_rows``: an
  external sort (sorted runs spilled to a temporary directory, then merged), and a second one by
  row number, so that ranks come back piece by piece in the input's row order.

float32 keys are compared exactly: they are mapped to order-preserving 32-bit integers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError

__all__ = ["ClusterExtremes", "Extremes", "rank_in_cluster", "ClusterRanker"]


def _key_bits(key: np.ndarray) -> np.ndarray:
    """float32 -> uint32 with the same order (NaN is rejected by the callers)."""
    k = np.ascontiguousarray(key, dtype=np.float32)
    if np.isnan(k).any():
        raise InputError("closeness keys hold NaN for rows with a cluster label; mark such rows with label -1")
    k = k + np.float32(0.0)  # -0.0 -> +0.0 so that both zeros compare equal
    b = k.view(np.uint32)
    neg = (b >> np.uint32(31)).astype(bool)
    return np.where(neg, ~b, b | np.uint32(0x80000000)).astype(np.uint32)


def _check_piece(labels: np.ndarray, key: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    key = np.asarray(key)
    if labels.ndim != 1 or key.shape != labels.shape:
        raise InputError(f"labels and key must be 1-D of the same length, got {labels.shape} and {key.shape}")
    if labels.size and (labels.min() < -1 or labels.max() >= k):
        raise InputError(f"labels must be in [0, {k}) (or -1 for rejected rows), got values in [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64, copy=False), key


def _composite(labels: np.ndarray, key: np.ndarray) -> np.ndarray:
    return (labels.astype(np.uint64) << np.uint64(32)) | _key_bits(key).astype(np.uint64)


@dataclass
class Extremes:
    """``closest[c, :]`` / ``furthest[c, :]``: row numbers (int64, -1 padded when the cluster has
    fewer rows), closest first / furthest first, with their keys; ``sizes[c]`` rows per cluster."""

    closest: np.ndarray
    closest_key: np.ndarray
    furthest: np.ndarray
    furthest_key: np.ndarray
    sizes: np.ndarray


class ClusterExtremes:
    """The N closest and N furthest rows of each of k clusters, over streamed pieces of rows.

    Memory O(k N) plus one piece. ``update`` pieces in any order (rows are numbered by the
    ``start`` given); the result does not depend on how rows are split into pieces.
    Not thread-safe (one accumulator per thread, or a lock).
    """

    def __init__(self, k: int, n: int) -> None:
        if int(k) < 1 or int(n) < 1:
            raise InputError(f"k and n must be >= 1, got k={k}, n={n}")
        self.k, self.n = int(k), int(n)
        self._near = self._empty()
        self._far = self._empty()
        self.sizes = np.zeros(self.k, np.int64)

    @staticmethod
    def _empty() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros(0, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.int64)

    def _best(self, lab: np.ndarray, bits: np.ndarray, rows: np.ndarray, far: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Sort by (label, key, row), or (label, -key, -row) for the furthest, and keep n per label.
        if far:
            order = np.lexsort((-rows, ~bits, lab))
        else:
            order = np.lexsort((rows, bits, lab))
        lab, bits, rows = lab[order], bits[order], rows[order]
        first = np.r_[True, lab[1:] != lab[:-1]]
        starts = np.flatnonzero(first)
        group_start = np.repeat(starts, np.diff(np.r_[starts, len(lab)]))
        keep = (np.arange(len(lab)) - group_start) < self.n
        return lab[keep], bits[keep], rows[keep]

    def update(self, start: int, labels: np.ndarray, key: np.ndarray) -> None:
        """Add rows ``start .. start + len(labels) - 1``."""
        labels, key = _check_piece(labels, key, self.k)
        valid = labels >= 0
        if not valid.any():
            return
        lab = labels[valid]
        bits = _key_bits(key[valid])
        rows = np.flatnonzero(valid).astype(np.int64) + int(start)
        self.sizes += np.bincount(lab, minlength=self.k)
        for far in (False, True):
            cur = self._far if far else self._near
            cand = self._best(lab, bits, rows, far)
            merged = tuple(np.concatenate([a, b]) for a, b in zip(cur, cand))
            new = self._best(merged[0], merged[1], merged[2], far)  # type: ignore[index]
            if far:
                self._far = new
            else:
                self._near = new

    def result(self) -> Extremes:
        def table(part: Tuple[np.ndarray, np.ndarray, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
            lab, bits, rows = part
            out = np.full((self.k, self.n), -1, np.int64)
            keys = np.full((self.k, self.n), np.nan, np.float32)
            if len(lab):
                first = np.r_[True, lab[1:] != lab[:-1]]
                starts = np.flatnonzero(first)
                pos = np.arange(len(lab)) - np.repeat(starts, np.diff(np.r_[starts, len(lab)]))
                out[lab, pos] = rows
                neg = (bits >> np.uint32(31)) == 0
                raw = np.where(neg, ~bits, bits & np.uint32(0x7FFFFFFF)).astype(np.uint32)
                keys[lab, pos] = raw.view(np.float32)
            return out, keys

        c, ck = table(self._near)
        f, fk = table(self._far)
        return Extremes(c, ck, f, fk, self.sizes.copy())


def rank_in_cluster(labels: np.ndarray, key: np.ndarray, k: Optional[int] = None) -> np.ndarray:
    """Rank (0 = closest) of every row among the rows of its cluster, by (key, row); -1 for label -1.
    In memory: O(n) extra. For more rows than fit, use :class:`ClusterRanker`."""
    labels = np.asarray(labels)
    kk = int(labels.max()) + 1 if k is None and labels.size else int(k or 1)
    labels, key = _check_piece(labels, key, kk)
    ranks = np.full(len(labels), -1, np.int64)
    valid = np.flatnonzero(labels >= 0)
    if len(valid) == 0:
        return ranks
    comp = _composite(labels[valid], key[valid])
    order = np.argsort(comp, kind="stable")  # stable: ties keep row order
    lab_sorted = labels[valid][order]
    first = np.r_[True, lab_sorted[1:] != lab_sorted[:-1]]
    starts = np.flatnonzero(first)
    pos = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    ranks[valid[order]] = pos
    return ranks


_REC = np.dtype([("a", "<u8"), ("b", "<i8")])  # sort key (a, b) lexicographic, both ascending


class ClusterRanker:
    """Ranks within clusters for any number of rows, with memory bounded by ``memory_rows``.

    Use::

        r = ClusterRanker(k, memory_rows=4_000_000)
        for a in assignments:            # pass 1: every piece, in row order
            r.add(a.labels, a.closeness_key(metric))
        for ranks in r.ranks():          # pass 2: one int64 array per piece added, same order
            ...

    Rows are numbered in the order they are added. Up to ``memory_rows`` rows are ranked in
    memory; beyond, sorted runs of 16 bytes a row go to ``tmpdir`` (deleted when done), so disk
    use is 32 bytes a row at most and memory about ``memory_rows * 48`` bytes.
    Not thread-safe.
    """

    def __init__(self, k: int, memory_rows: int = 4_000_000, tmpdir: Optional[str] = None) -> None:
        if int(k) < 1:
            raise InputError(f"k must be >= 1, got {k}")
        if int(memory_rows) < 1024:
            raise InputError(f"memory_rows must be >= 1024, got {memory_rows}")
        self.k = int(k)
        self.memory_rows = int(memory_rows)
        self._tmpdir_parent = tmpdir
        self._dir: Optional[str] = None
        self._buf: List[np.ndarray] = []
        self._buf_rows = 0
        self._runs: List[str] = []
        self._pieces: List[int] = []
        self._n = 0
        self._done = False

    # -- pass 1 ---------------------------------------------------------------------------------
    def add(self, labels: np.ndarray, key: np.ndarray) -> None:
        if self._done:
            raise InputError("ClusterRanker.ranks() was already called; create a new ranker")
        labels, key = _check_piece(labels, key, self.k)
        m = len(labels)
        rec = np.empty(m, _REC)
        valid = labels >= 0
        # label -1 sorts last (its own group, ranks discarded): label + 1 in the top bits.
        lab = np.where(valid, labels, self.k).astype(np.int64)
        keyv = np.where(valid, key, 0).astype(np.float32)
        rec["a"] = _composite(lab, keyv)
        rec["b"] = np.arange(self._n, self._n + m, dtype=np.int64)
        self._buf.append(rec)
        self._buf_rows += m
        self._pieces.append(m)
        self._n += m
        if self._buf_rows >= self.memory_rows:
            self._spill()

    def _tmp(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="fastcurate-rank-", dir=self._tmpdir_parent)
        return self._dir

    def _spill(self) -> None:
        if not self._buf_rows:
            return
        rec = np.concatenate(self._buf)
        rec = rec[np.argsort(rec["a"], kind="stable")]  # rows arrive in order: ties stay by row
        path = os.path.join(self._tmp(), f"a{len(self._runs)}.bin")
        rec.tofile(path)
        self._runs.append(path)
        self._buf, self._buf_rows = [], 0

    # -- pass 2 ---------------------------------------------------------------------------------
    def ranks(self) -> Iterator[np.ndarray]:
        """Ranks (int64, -1 for label -1) of each piece added, in the order added."""
        if self._done:
            raise InputError("ClusterRanker.ranks() can be called once")
        self._done = True
        try:
            if not self._runs:
                rec = np.concatenate(self._buf) if self._buf else np.zeros(0, _REC)
                self._buf = []
                labels = (rec["a"] >> np.uint64(32)).astype(np.int64)
                ranks = rank_in_cluster(np.where(labels >= self.k, -1, labels), _unbits(rec["a"]), self.k)
                yield from _split(ranks, self._pieces)
                return
            self._spill()
            yield from self._external()
        finally:
            self.close()

    def _external(self) -> Iterator[np.ndarray]:
        block = max(4096, self.memory_rows // (2 * max(1, len(self._runs))))
        seen = np.zeros(self.k + 1, np.int64)
        out_buf: List[np.ndarray] = []
        out_rows = 0
        runs_b: List[str] = []
        for batch in _merge(self._runs, block):
            lab = (batch["a"] >> np.uint64(32)).astype(np.int64)
            first = np.r_[True, lab[1:] != lab[:-1]]
            starts = np.flatnonzero(first)
            pos = np.arange(len(batch)) - np.repeat(starts, np.diff(np.r_[starts, len(batch)]))
            rank = seen[lab] + pos
            np.add.at(seen, lab[starts], np.diff(np.r_[starts, len(batch)]))
            rank[lab >= self.k] = -1
            rec = np.empty(len(batch), _REC)
            rec["a"] = batch["b"].astype(np.uint64)  # second sort: by row number
            rec["b"] = rank
            out_buf.append(rec)
            out_rows += len(rec)
            if out_rows >= self.memory_rows:
                runs_b.append(self._write_sorted(out_buf, f"b{len(runs_b)}.bin"))
                out_buf, out_rows = [], 0
        if out_buf:
            runs_b.append(self._write_sorted(out_buf, f"b{len(runs_b)}.bin"))
        for p in self._runs:
            os.remove(p)
        self._runs = []
        # Rows come back in row order; cut them into the pieces that were added.
        pieces = iter(self._pieces)
        want = next(pieces, None)
        acc: List[np.ndarray] = []
        have = 0
        block_b = max(4096, self.memory_rows // (2 * max(1, len(runs_b))))
        for batch in _merge(runs_b, block_b):
            r = batch["b"]
            while len(r):
                if want is None:
                    break
                take = min(want - have, len(r))
                acc.append(r[:take])
                have += take
                r = r[take:]
                if have == want:
                    yield np.concatenate(acc) if len(acc) != 1 else acc[0]
                    acc, have = [], 0
                    want = next(pieces, None)
        while want is not None:  # empty trailing pieces
            yield np.zeros(0, np.int64)
            want = next(pieces, None)

    def _write_sorted(self, parts: List[np.ndarray], name: str) -> str:
        rec = np.concatenate(parts)
        rec = rec[np.argsort(rec["a"], kind="stable")]
        path = os.path.join(self._tmp(), name)
        rec.tofile(path)
        return path

    def close(self) -> None:
        """Delete the temporary runs (also done when ranks() finishes)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def _unbits(a: np.ndarray) -> np.ndarray:
    bits = (a & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    neg = (bits >> np.uint32(31)) == 0
    raw = np.where(neg, ~bits, bits & np.uint32(0x7FFFFFFF)).astype(np.uint32)
    return raw.view(np.float32)


def _split(a: np.ndarray, pieces: Sequence[int]) -> Iterator[np.ndarray]:
    pos = 0
    for m in pieces:
        yield a[pos : pos + m]
        pos += m


def _count_le(buf: np.ndarray, a: np.uint64, b: np.int64) -> int:
    """Records of the sorted buffer whose key (a, b) is <= (a, b)."""
    lo = int(np.searchsorted(buf["a"], a, side="left"))
    hi = int(np.searchsorted(buf["a"], a, side="right"))
    return lo + int(np.searchsorted(buf["b"][lo:hi], b, side="right"))


def _merge(paths: Sequence[str], block: int) -> Iterator[np.ndarray]:
    """K-way merge of files of records sorted by (a, b), in sorted batches. Memory: one block per run.

    Each step takes, from every run's current block, the records up to the smallest "last key"
    among runs that still have data on disk: everything at or below it is final."""
    sizes = [os.path.getsize(p) // _REC.itemsize for p in paths]
    files = [open(p, "rb") for p in paths]
    try:
        read = [0] * len(paths)
        bufs: List[np.ndarray] = []
        for i, f in enumerate(files):
            b = np.fromfile(f, dtype=_REC, count=block)
            read[i] = len(b)
            bufs.append(b)
        while True:
            live = [i for i in range(len(paths)) if len(bufs[i])]
            if not live:
                return
            pending = [i for i in live if read[i] < sizes[i]]
            if pending:
                i_min = min(pending, key=lambda i: (int(bufs[i]["a"][-1]), int(bufs[i]["b"][-1])))
                ba, bb = bufs[i_min]["a"][-1], bufs[i_min]["b"][-1]
                cuts = {i: _count_le(bufs[i], ba, bb) for i in live}
            else:
                cuts = {i: len(bufs[i]) for i in live}
            out = np.concatenate([bufs[i][: cuts[i]] for i in live])
            out = out[np.lexsort((out["b"], out["a"]))]
            yield out
            for i in live:
                rest = bufs[i][cuts[i] :]
                if len(rest) == 0 and read[i] < sizes[i]:
                    rest = np.fromfile(files[i], dtype=_REC, count=block)
                    read[i] += len(rest)
                bufs[i] = rest
    finally:
        for f in files:
            f.close()
