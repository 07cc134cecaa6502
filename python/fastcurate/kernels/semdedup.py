"""SemDeDup (Abbas et al. 2023): drop semantic near-duplicates inside each k-means cluster.

Semantics (facebookresearch/SemDeDup, ``clustering/sort_clusters.py`` and ``semdedup.py``):

1. Each cluster's rows are put in *keep order* by their cosine to the cluster centroid:

   * ``keep="hard"`` (the paper's default): ascending cosine, i.e. descending cosine distance,
     ties by row number (the reference's stable ``sorted(..., reverse=True)``). The first row -- the
     least typical one -- is always kept: "from each group of duplicates we keep the image with
     the lowest cosine similarity to the cluster centroid";
   * ``keep="easy"``: the exact reverse of the hard order (the reference reverses the list);
   * ``keep="random"``: a seeded permutation of each cluster (the reference shuffles with Python's
     ``random``; here ``numpy.random.default_rng(seed)``, cluster after cluster).

2. With ``compare_to="all"`` (the reference loop: ``torch.triu(X @ X.T, 1).max(dim=0)``), row i
   is a duplicate when ``max_{j before i} cos(i, j) > 1 - eps`` -- j may itself be a duplicate.
   With ``compare_to="kept"``, only kept earlier rows count (greedy; the twin is always kept, and
   a superset of the "all" kept set survives).

3. Each duplicate names its *twin*: the earlier row of largest cosine (the reference's argmax;
   ties go to the earliest, as ``torch.max``) and that cosine.

``cos`` is the exact cosine ``min(1, dot / sqrt(|x|^2 |y|^2))`` of the stored rows (float16 or
float32), each dot and squared norm summed exactly and rounded once: the result does not depend on
summation order, SIMD or threads, and a naive float64 numpy implementation gives the same kept set
bit for bit (:mod:`fastcurate.kernels.semdedup_reference`). The reference computes float32
cosines instead, so pairs within ~1e-7 of ``1 - eps`` can go either way there.

Differences from NeMo Curator: it removes ``cosine >= 1 - eps`` (the paper: ``> 1 - eps``).

Rows with label -1 (rejected by :class:`~fastcurate.kernels.kmeans.KMeans` with
``on_invalid="mark"``) are in no cluster: they are never compared and are reported as kept.

Memory: clusters are processed in batches of about ``batch_rows`` rows (a larger cluster alone),
gathered from the (memory-mapped) source; per batch the kernel holds the rows as float32.
Thread safety: stateless; the kernel releases the GIL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from ..errors import InputError
from ._emb import EmbeddingSource, as_chunks, first_bad_row_message, release_pages, take_rows, threads_arg, total_rows

__all__ = ["semdedup", "SemDedupResult", "keep_order"]

Keep = Literal["hard", "easy", "random"]
CompareTo = Literal["all", "kept"]


def keep_order(labels: np.ndarray, cos: np.ndarray, keep: Keep = "hard", seed: int = 0,
               tiebreak: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by cluster, each cluster in keep order.

    Returns ``(order, offsets, clusters)``: cluster ``clusters[c]`` is rows
    ``order[offsets[c]:offsets[c + 1]]``; rows with label -1 are left out. Rows of equal cosine
    (identical embeddings: the duplicates themselves) are ordered by ``tiebreak`` (e.g. a hash of
    their ids, so the kept one does not depend on where rows sit in the input), then by row.
    """
    labels = np.asarray(labels)
    cos = np.asarray(cos)
    if labels.ndim != 1 or cos.shape != labels.shape:
        raise InputError(f"labels and cos must be 1-D of the same length, got {labels.shape} and {cos.shape}")
    if keep not in ("hard", "easy", "random"):
        raise InputError(f"keep must be 'hard', 'easy' or 'random', got {keep!r}")
    valid = np.flatnonzero(labels >= 0)
    if np.isnan(cos[valid]).any():
        raise InputError(f"cosine to the centroid of row {int(valid[np.isnan(cos[valid])][0])} is NaN")
    lab = labels[valid].astype(np.int64)
    if lab.size and lab.max() >= 2**31:
        raise InputError("cluster labels must be < 2**31")
    # hard: by label, then cosine ascending, then row ascending. One stable sort of a 64-bit key
    # (label, order-preserving bits of the float32 cosine); stability orders ties by row.
    bits = np.ascontiguousarray(cos[valid], dtype=np.float32) + np.float32(0.0)  # -0.0 == 0.0
    u = bits.view(np.uint32)
    u = np.where(u >> np.uint32(31), ~u, u | np.uint32(0x80000000)).astype(np.uint64)
    primary = (lab.astype(np.uint64) << np.uint64(32)) | u
    if tiebreak is None:
        order = valid[np.argsort(primary, kind="stable")]
    else:
        tb = np.asarray(tiebreak)
        if tb.shape != labels.shape:
            raise InputError(f"tiebreak must have one value per row ({labels.shape}), got {tb.shape}")
        order = valid[np.lexsort((tb[valid], primary))]
    lab_sorted = labels[order]
    first = np.r_[True, lab_sorted[1:] != lab_sorted[:-1]] if len(order) else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    offsets = np.r_[starts, len(order)].astype(np.int64)
    clusters = lab_sorted[starts].astype(np.int64)
    if keep == "easy":
        for c in range(len(clusters)):
            a, b = offsets[c], offsets[c + 1]
            order[a:b] = order[a:b][::-1].copy()
    elif keep == "random":
        rng = np.random.default_rng(seed)
        for c in range(len(clusters)):
            a, b = offsets[c], offsets[c + 1]
            order[a:b] = order[a:b][rng.permutation(b - a)]
    return order, offsets, clusters


@dataclass
class SemDedupResult:
    """SemDeDup of n rows (arrays are per row, in input order).

    ``max_sim``: exact cosine to the twin, NaN when the row is kept at every eps evaluated.
    ``twin``: row number of the twin (the earlier row in keep order with the largest cosine),
    -1 when kept. With ``compare_to="all"`` one pass answers every eps <= ``max(eps)``
    (:meth:`keep`); with ``"kept"`` the twin depends on eps: ``per_eps[eps]`` holds each run.
    ``keep_rank``: position of the row in its cluster's keep order (-1 outside clusters).
    """

    eps: Tuple[float, ...]
    compare_to: str
    keep_how: str
    max_sim: np.ndarray
    twin: np.ndarray
    keep_rank: np.ndarray
    n_clustered: int
    stats: Dict[str, int] = field(default_factory=dict)
    per_eps: Dict[float, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def keep(self, eps: Optional[float] = None) -> np.ndarray:
        """Boolean keep mask for ``eps`` (default: the smallest evaluated)."""
        e = min(self.eps) if eps is None else float(eps)
        if self.compare_to == "kept":
            if e not in self.per_eps:
                raise InputError(f"eps={e} was not evaluated (greedy mode runs per eps): evaluated {list(self.eps)}")
            return self.per_eps[e][1] < 0
        if e > max(self.eps) + 1e-15:
            raise InputError(f"eps={e} is above the largest evaluated ({max(self.eps)}): rerun with it")
        return ~(self.max_sim > 1.0 - e)

    def twins(self, eps: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(twin row, cosine) per row for ``eps``; -1 / NaN for kept rows."""
        e = min(self.eps) if eps is None else float(eps)
        if self.compare_to == "kept":
            ms, tw = self.per_eps[e]
            return tw, ms
        drop = ~self.keep(e)
        return np.where(drop, self.twin, -1), np.where(drop, self.max_sim, np.nan)

    def removed_share(self, eps: Optional[float] = None) -> float:
        """Share of all rows removed at ``eps``."""
        k = self.keep(eps)
        return float(1.0 - k.mean()) if len(k) else 0.0


def _eps_list(eps: Union[float, Sequence[float]]) -> Tuple[float, ...]:
    vals = (float(eps),) if isinstance(eps, (int, float, np.floating, np.integer)) else tuple(float(e) for e in eps)
    if not vals:
        raise InputError("eps must be a number or a non-empty list of numbers")
    for e in vals:
        if not 0.0 <= e < 1.0:
            raise InputError(f"eps must be in [0, 1) (a duplicate has cosine > 1 - eps), got {e}")
    return tuple(sorted(set(vals)))


def semdedup(
    emb: EmbeddingSource,
    labels: Any,
    cos: Any,
    eps: Union[float, Sequence[float]] = 0.01,
    keep: Keep = "hard",
    compare_to: CompareTo = "all",
    centroids: Optional[np.ndarray] = None,
    seed: int = 0,
    threads: Optional[int] = None,
    batch_rows: int = 262144,
    tiebreak: Optional[np.ndarray] = None,
) -> SemDedupResult:
    """SemDeDup of the rows of ``emb`` (float16 / float32 array, memmap, or list of chunks).

    ``labels`` (cluster per row, -1 = no cluster) and ``cos`` (cosine to the cluster centroid)
    come from :meth:`KMeans.assign`; ``centroids`` (k x d, optional) lets the kernel skip tiles
    whose rows' angles to the centroid differ by more than arccos(1 - eps) (exact either way).
    ``tiebreak`` (one value per row, optional) orders rows of equal cosine within a cluster
    (:func:`keep_order`).
    """
    chunks = as_chunks(emb)
    n = total_rows(chunks)
    for c in chunks:
        if c.dtype == np.float64:
            raise InputError("SemDeDup works on float16 or float32 embeddings (as stored); convert with .astype(np.float32)")
    labels = np.asarray(labels)
    cos = np.asarray(cos)
    if labels.shape != (n,) or cos.shape != (n,):
        raise InputError(f"labels and cos must have one value per row ({n}), got {labels.shape} and {cos.shape}")
    if labels.dtype.kind not in "iu":
        raise InputError(f"labels must be integers (cluster ids, -1 for none), got {labels.dtype}")
    if compare_to not in ("all", "kept"):
        raise InputError(f"compare_to must be 'all' (the paper) or 'kept', got {compare_to!r}")
    eps_vals = _eps_list(eps)
    th = threads_arg(threads)
    d = int(chunks[0].shape[1])
    cent = None
    if centroids is not None:
        cent = np.ascontiguousarray(centroids, dtype=np.float32)
        if cent.ndim != 2 or cent.shape[1] != d:
            raise InputError(f"centroids must be (k, {d}), got {cent.shape}")
        if labels.size and labels.max() >= len(cent):
            raise InputError(f"label {int(labels.max())} has no centroid (only {len(cent)} given)")

    order, offsets, clusters = keep_order(labels, cos, keep, seed, tiebreak)
    keep_rank = np.full(n, -1, np.int64)
    if len(order):
        keep_rank[order] = np.arange(len(order)) - np.repeat(offsets[:-1], np.diff(offsets))

    # Batches of whole clusters, ~batch_rows rows each.
    batches: List[Tuple[int, int]] = []
    c0 = 0
    nc = len(clusters)
    while c0 < nc:
        c1 = c0 + 1
        while c1 < nc and offsets[c1 + 1] - offsets[c0] <= batch_rows:
            c1 += 1
        batches.append((c0, c1))
        c0 = c1

    runs = [max(eps_vals)] if compare_to == "all" else list(eps_vals)
    stats = {"tiles_total": 0, "tiles_skipped": 0, "exact_pairs": 0}
    results: Dict[float, Tuple[np.ndarray, np.ndarray]] = {}
    for b0, b1 in batches:
        rows = order[offsets[b0] : offsets[b1]]
        if len(chunks) == 1:
            x = chunks[0][rows]  # one gather, already in keep order
            release_pages(chunks[0])
        else:
            srt = np.argsort(rows, kind="stable")  # read the chunks in row order, then permute
            x_sorted = take_rows(chunks, rows[srt])
            x = np.empty_like(x_sorted)
            x[srt] = x_sorted
            del x_sorted
        local_off = (offsets[b0 : b1 + 1] - offsets[b0]).astype(np.int64)
        cb = cent[clusters[b0:b1]] if cent is not None else None
        for e in runs:
            try:
                ms, tw, st = _core.semdedup(x, local_off, cb, 1.0 - e, compare_to, th, 0)
            except InputError:
                # The kernel numbers rows in its batch; name the row of the caller's input.
                ok = np.isfinite(x).all(axis=1) & np.any(x != 0, axis=1)
                if ok.all():
                    raise
                i = int(np.flatnonzero(~ok)[0])
                raise InputError(
                    first_bad_row_message(x[i : i + 1].astype(np.float32), int(rows[i]), "embeddings", True)
                ) from None
            res_ms, res_tw = results.setdefault(e, (np.full(n, np.nan), np.full(n, -1, np.int64)))
            res_ms[rows] = ms
            hit = tw >= 0
            twg = np.full(len(rows), -1, np.int64)
            twg[hit] = rows[tw[hit]]
            res_tw[rows] = twg
            for key in stats:
                stats[key] += int(st[key])
    for e in runs:
        results.setdefault(e, (np.full(n, np.nan), np.full(n, -1, np.int64)))
    n_clustered = int(len(order))
    if compare_to == "all":
        ms, tw = results[runs[0]]
        return SemDedupResult(eps_vals, compare_to, keep, ms, tw, keep_rank, n_clustered, stats)
    e0 = eps_vals[0]
    return SemDedupResult(eps_vals, compare_to, keep, results[e0][0], results[e0][1], keep_rank, n_clustered, stats,
                          per_eps=results)
