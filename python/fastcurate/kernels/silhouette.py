"""Exact silhouette scores (sklearn's definition) for cosine and Euclidean distances, plus a
sampled estimate with a confidence interval for pools too large for the exact value.

Exact values follow ``sklearn.metrics.silhouette_samples`` / ``silhouette_score`` to the last
digits (tested within 1e-12 on float64 input; sklearn itself computes float32 input in float32):

* labels are encoded like ``LabelEncoder`` (sorted distinct values); 2 <= #labels <= n - 1;
* a(i) = mean distance to the other rows of its cluster, b(i) = smallest mean distance to
  another cluster, s(i) = (b - a) / max(a, b); 0 for a row alone in its cluster and when
  a = b = 0; the score is the mean of s(i);
* cosine distance = 1 - cos of the rows, an all-zero row being at distance 1 from every row
  (itself included), as sklearn's ``normalize`` leaves it zero.

How (see docs/cluster.md):

* cosine: with L2-normalised rows the distance is linear, so the sum of distances from x to a
  cluster C is |C| - x . S_C with S_C the sum of C's rows: two streaming passes (cluster sums, then
  one k-column product per row), O(n k d) time and O(k d) memory, no pairwise distance at all;
* Euclidean: every pair is needed (the square root breaks linearity): tiles of a symmetric
  distance matrix in float64, never more than a tile per thread, each unordered pair once.

Sampled estimate (``sample_size=m``): m rows drawn uniformly without replacement (seeded); each
one's s(i) is computed *exactly against all n rows*, so the estimate is the mean of a simple random
sample of the n values s(i) -- unbiased, with the normal-approximation interval
``mean +- z * sd / sqrt(m) * sqrt((n - m) / (n - 1))`` (finite-population correction; s(i) lies in
[-1, 1], so the CLT is accurate from a few hundred rows). This differs from sklearn's
``sample_size``, which computes the silhouette *of the sub-sample* (distances to sampled rows only).

Thread safety: stateless functions; the kernels release the GIL.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Literal, Optional, Tuple

import numpy as np

from .. import _core
from ..errors import InputError
from ._emb import EmbeddingSource, as_chunks, iter_chunks, take_rows, threads_arg, total_rows

__all__ = ["silhouette", "SilhouetteResult"]

SilMetric = Literal["cosine", "euclidean"]


@dataclass
class SilhouetteResult:
    """Silhouette of a clustering.

    ``score``: the silhouette score (exact, or the estimate when ``exact`` is False).
    ``samples``: s(i) of every row (or of the sampled rows ``sample_index``), float64.
    ``a`` / ``b``: the mean intra-cluster and nearest-other-cluster distances of those rows.
    ``labels``: the distinct labels, sorted; cluster j of the per-cluster arrays is ``labels[j]``.
    ``per_cluster``: mean s(i) over the cluster's (sampled) rows, NaN if none was sampled.
    ``cluster_sizes``: rows per cluster in the whole input.
    ``ci``: (low, high) interval for the score at ``confidence`` (sampled estimates only).
    """

    score: float
    samples: np.ndarray
    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray
    per_cluster: np.ndarray
    cluster_sizes: np.ndarray
    metric: str
    exact: bool
    n: int
    sample_index: Optional[np.ndarray] = None
    stderr: Optional[float] = None
    ci: Optional[Tuple[float, float]] = None
    confidence: Optional[float] = None


def _encode(labels: Any, n: int) -> Tuple[np.ndarray, np.ndarray]:
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n:
        raise InputError(f"labels must be 1-D with one label per row ({n}), got shape {lab.shape}")
    if lab.dtype.kind == "f" and not np.isfinite(lab).all():
        raise InputError(f"label of row {int(np.flatnonzero(~np.isfinite(lab))[0])} is not finite")
    uniq, enc = np.unique(lab, return_inverse=True)
    return uniq, enc.astype(np.int32).reshape(-1)


def _per_cluster(samples: np.ndarray, enc: np.ndarray, k: int) -> np.ndarray:
    cnt = np.bincount(enc, minlength=k)
    tot = np.bincount(enc, weights=samples, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def silhouette(
    emb: EmbeddingSource,
    labels: Any,
    metric: SilMetric = "cosine",
    sample_size: Optional[int] = None,
    threads: Optional[int] = None,
    seed: int = 0,
    confidence: float = 0.95,
    chunk_rows: int = 65536,
) -> SilhouetteResult:
    """Silhouette of ``labels`` over the rows of ``emb`` (2-D float16/32/64 array, memmap, or a
    list of such chunks): exact by default, a sampled estimate with ``sample_size=m < n``.

    Raises :class:`~fastcurate.errors.InputError` for NaN / infinite rows (naming the row), fewer
    than 2 or more than n - 1 distinct labels, or a label count that does not match the rows.
    """
    if metric not in ("cosine", "euclidean"):
        raise InputError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    chunks = as_chunks(emb)
    n = total_rows(chunks)
    uniq, enc = _encode(labels, n)
    k = len(uniq)
    if not 1 < k < n:
        raise InputError(f"the silhouette needs 2 <= number of labels <= n_samples - 1; got {k} labels for {n} rows")
    th = threads_arg(threads)
    counts = np.bincount(enc, minlength=k).astype(np.int64)
    d = int(chunks[0].shape[1])

    exact = sample_size is None or int(sample_size) >= n
    if exact:
        idx = None
    else:
        m = int(sample_size)  # type: ignore[arg-type]
        if m < 2:
            raise InputError(f"sample_size must be >= 2, got {sample_size}")
        idx = np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False)).astype(np.int64)

    if metric == "cosine":
        sums = np.zeros((k, d), np.float64)
        cnt = np.zeros(k, np.int64)
        for start, x in iter_chunks(chunks, chunk_rows):
            _core.cosine_cluster_sums(x, enc[start : start + len(x)], sums, cnt, th, start)
        if idx is None:
            parts = [
                _core.silhouette_cosine_rows(x, enc[start : start + len(x)], sums, cnt, th, start)
                for start, x in iter_chunks(chunks, chunk_rows)
            ]
            s, a, b = (np.concatenate([p[j] for p in parts]) for j in range(3))
        else:
            q = take_rows(chunks, idx)
            s, a, b = _core.silhouette_cosine_rows(q, np.ascontiguousarray(enc[idx]), sums, cnt, th, 0)
    else:
        if idx is None and len(chunks) == 1:
            s, a, b = _core.silhouette_euclidean_full(chunks[0], enc, k, th)
        else:
            # Query rows against every chunk of reference rows: memory = queries x k sums.
            rows = idx if idx is not None else np.arange(n, dtype=np.int64)
            s_parts, a_parts, b_parts = [], [], []
            q_block = max(1024, min(len(rows), (256 << 20) // (8 * k)))
            for q0 in range(0, len(rows), q_block):
                qi = rows[q0 : q0 + q_block]
                q = take_rows(chunks, qi)
                acc = np.zeros((len(qi), k), np.float64)
                for start, x in iter_chunks(chunks, chunk_rows):
                    _core.euclidean_distance_sums_add(q, qi, x, start, enc[start : start + len(x)], acc, th)
                ps, pa, pb = _core.silhouette_from_sums(acc, np.ascontiguousarray(enc[qi]), counts)
                s_parts.append(ps)
                a_parts.append(pa)
                b_parts.append(pb)
            s, a, b = np.concatenate(s_parts), np.concatenate(a_parts), np.concatenate(b_parts)

    sample_enc = enc if idx is None else enc[idx]
    per_cluster = _per_cluster(s, sample_enc, k)
    score = float(np.mean(s))
    if idx is None:
        return SilhouetteResult(score, s, a, b, uniq, per_cluster, counts, metric, True, n)
    m = len(idx)
    sd = float(np.std(s, ddof=1))
    fpc = math.sqrt((n - m) / (n - 1)) if n > 1 else 0.0
    se = sd / math.sqrt(m) * fpc
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)
    return SilhouetteResult(
        score, s, a, b, uniq, per_cluster, counts, metric, False, n,
        sample_index=idx, stderr=se, ci=(score - z * se, score + z * se), confidence=confidence,
    )
