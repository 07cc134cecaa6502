"""Reference implementations of SemDeDup, for tests and benchmarks (slow on purpose).

* :func:`naive_numpy` -- the exact semantics of :func:`fastcurate.kernels.semdedup.semdedup`,
  written as plainly as possible: a full float64 similarity matrix per cluster and a Python loop
  over rows. Cosines are exact: a float64 matmul of float16 rows with |x_t| <= 1 and norm <= 4 is
  exact (products are multiples of 2^-48 and every partial sum stays below 2^5); otherwise each dot
  is summed with ``math.fsum`` (correctly rounded), exactly like the kernel.
* :func:`paper_loop_torch` -- a faithful port of the reference loop of facebookresearch/SemDeDup
  (``SemDeDupJob.semdedup`` + ``_process_shard``): per cluster, ``X @ X.T`` in the embeddings'
  dtype, ``fill_diagonal_(0)``, ``torch.triu(., diagonal=1)``, ``torch.max(., dim=0)``, drop where
  ``M > 1 - eps``; the argmax is the twin (NeMo Curator's ``max_id``). Rows are taken from the
  (memory-mapped) array per cluster, as the reference does.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .semdedup import keep_order

__all__ = ["naive_numpy", "paper_loop_torch"]


def _cosines(x: np.ndarray) -> np.ndarray:
    """Exact cosine matrix of the rows of x (float16 / float32), as the kernel defines it."""
    x64 = x.astype(np.float64)
    exact_matmul = x.dtype == np.float16 and np.abs(x64).max(initial=0.0) <= 1.0 and (x64 * x64).sum(1).max(initial=0.0) <= 16.0
    if exact_matmul:
        G = x64 @ x64.T
    else:
        m = len(x64)
        G = np.empty((m, m))
        for i in range(m):
            for j in range(i + 1):
                G[i, j] = G[j, i] = math.fsum((x64[i] * x64[j]).tolist())
    nr = np.diag(G).copy()
    return np.minimum(1.0, G / np.sqrt(nr[:, None] * nr[None, :]))


def naive_numpy(
    emb: np.ndarray, labels: np.ndarray, cos: np.ndarray, eps: float, keep: str = "hard", compare_to: str = "all",
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """(max_sim, twin) per row: the exact cosine to the twin and its row; NaN / -1 when kept."""
    n = len(emb)
    ms = np.full(n, np.nan)
    tw = np.full(n, -1, np.int64)
    order, offsets, _ = keep_order(labels, cos, keep, seed)  # type: ignore[arg-type]
    thr = 1.0 - eps
    for c in range(len(offsets) - 1):
        rows = order[offsets[c] : offsets[c + 1]]
        C = _cosines(np.asarray(emb[rows]))
        kept = np.ones(len(rows), bool)
        for i in range(1, len(rows)):
            cand = C[i, :i].copy()
            if compare_to == "kept":
                cand[~kept[:i]] = -np.inf
            j = int(np.argmax(cand))  # first maximum, as torch.max
            if cand[j] > thr:
                ms[rows[i]] = cand[j]
                tw[rows[i]] = rows[j]
                kept[i] = False
    return ms, tw


def paper_loop_torch(
    emb: Any, order: np.ndarray, offsets: np.ndarray, eps_list: Sequence[float], dtype: Any = None,
) -> Dict[str, Any]:
    """The reference per-cluster loop. ``emb`` rows are read as given (the reference stores
    L2-normalised float32 embeddings); ``order``/``offsets`` come from :func:`keep_order`.

    Returns {"M": max similarity per row (float of ``dtype``), "twin": argmax row (-1 for the first
    row of a cluster), "remove": {eps: bool mask}} over all rows (rows in no cluster: M = 0)."""
    import torch

    n = len(emb)
    M_all: Optional[np.ndarray] = None
    twin = np.full(n, -1, np.int64)
    for c in range(len(offsets) - 1):
        rows = order[offsets[c] : offsets[c + 1]]
        if len(rows) == 1:
            continue
        cluster_reps = torch.tensor(np.asarray(emb[rows]))
        if dtype is not None:
            cluster_reps = cluster_reps.to(dtype)
        pair_w_sim_matrix = cluster_reps @ (cluster_reps.T)
        pair_w_sim_matrix.fill_diagonal_(0.0)
        triu_sim_mat = torch.triu(pair_w_sim_matrix, diagonal=1)
        M, M1 = torch.max(triu_sim_mat, dim=0)
        Mn = M.numpy()
        if M_all is None:
            M_all = np.zeros(n, Mn.dtype)
        M_all[rows] = Mn
        t = rows[M1.numpy()]
        t[0] = -1
        twin[rows] = t
    if M_all is None:
        M_all = np.zeros(n, np.float32)
    # As the reference: a float32 tensor against a Python float compares in float32 (NEP 50 /
    # torch's scalar rules), i.e. against float32(1 - eps).
    remove = {float(e): M_all > 1 - float(e) for e in eps_list}
    return {"M": M_all, "twin": twin, "remove": remove}
