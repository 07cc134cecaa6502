"""SemDeDup (Abbas et al. 2023) as a stage (docs/semdedup.md): semantic near-duplicates removed
inside each k-means cluster.

* global pass: each shard's embeddings go to its work directory (as for `cluster`);
* reduce: spherical k-means on a uid-hash sample, every row assigned; per cluster the rows in keep
  order (``keep="hard"``, the paper's default: the row least similar to the centroid first; rows
  of equal cosine by uid hash, so the kept row does not depend on the shard layout); a row whose
  cosine to an earlier row exceeds ``1 - eps`` is dropped, naming that twin and the cosine;
* per-shard pass: the decisions are applied.

``eps_report`` adds the share that other eps values would remove (one pass answers every eps
below the largest), for choosing eps on one's own data. Stage file: ``centroids.npy`` (the
k-means centroids the decisions were made in).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_write_npy
from ...io.discover import ShardRef
from ...runner.stage import Batch, Context, Result, Stage
from .._embeddings import BAD_CODES, load_all, scan_embeddings, space_columns
from .._rowstore import decided_results, lookup_strings, read_strings, write_strings
from ..cluster.stage import _hash_sample, _usable_view

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SemDedupStage"]

CODES = BAD_CODES + ("semantic_duplicate",)


class SemDedupStage(Stage):
    """Drops semantic near-duplicates inside k-means clusters of the embeddings (SemDeDup).

    Args:
        eps: a row is a duplicate when its cosine to an earlier row of its cluster exceeds 1 - eps.
        k: the number of k-means clusters (the paper: about one per 10k rows at LAION scale).
        keep: which row of a duplicate group stays: "hard" (the paper's default: the one least
            similar to the centroid), "easy" (the most similar) or "random" (seeded).
        compare_to: "all" (the paper: any earlier row, even a dropped one) or "kept" (greedy).
        space: which embeddings: "image", "text" or "joint".
        seed: fixes the k-means sample, faiss's initialisation and keep="random".
        train_size: rows k-means trains on (default min(rows, 256 k)).
        niter: Lloyd iterations.
        eps_report: more eps values whose removed share is reported in stats (not applied).
    """

    name = "semdedup"
    version = 1
    scans = True
    produces = ("centroids.npy",)
    reasons = {
        "no_embedding": "the row has no embedding in the chosen space",
        "bad_embedding": "the embedding holds NaN/inf or is all zeros",
        "semantic_duplicate": "cosine to an earlier row of its k-means cluster above 1 - eps (detail: the twin "
                              "kept in its place and the cosine)",
    }

    def __init__(self, *, eps: float = 0.05, k: int = 100, keep: str = "hard", compare_to: str = "all",
                 space: str = "image", seed: int = 0, train_size: Optional[int] = None, niter: int = 20,
                 eps_report: Sequence[float] = ()):
        if not 0.0 <= float(eps) < 1.0:
            raise InputError(f"eps must be in [0, 1), got {eps}")
        if keep not in ("hard", "easy", "random"):
            raise InputError(f"keep must be 'hard', 'easy' or 'random', got {keep!r}")
        if compare_to not in ("all", "kept"):
            raise InputError(f"compare_to must be 'all' or 'kept', got {compare_to!r}")
        if int(k) < 1:
            raise InputError(f"k must be >= 1, got {k}")
        space_columns(space)
        self.eps, self.k, self.keep, self.compare_to = float(eps), int(k), keep, compare_to
        self.space, self.seed, self.niter = space, int(seed), int(niter)
        self.train_size = None if train_size is None else int(train_size)
        self.eps_report = sorted({float(e) for e in eps_report} | {self.eps})
        for e in self.eps_report:
            if not 0.0 <= e < 1.0:
                raise InputError(f"eps_report values must be in [0, 1), got {e}")
        self.consumes = space_columns(space)

    def config(self) -> Dict[str, Any]:
        return {"eps": self.eps, "k": self.k, "keep": self.keep, "compare_to": self.compare_to, "space": self.space,
                "seed": self.seed, "train_size": self.train_size, "niter": self.niter, "eps_report": self.eps_report}

    def extra_columns(self) -> Sequence[str]:
        return space_columns(self.space)

    def scan_roles(self) -> Sequence[str]:
        return ()

    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        return scan_embeddings(ctx, shard, batches, self.space, True)

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        from ...kernels.kmeans import KMeans
        from ...kernels.semdedup import semdedup

        shards, starts, dim = load_all(ctx, summaries)
        usable = [np.flatnonzero(s.code == 0) for s in shards]
        n_ok = int(sum(len(u) for u in usable))
        if n_ok < self.k:
            raise InputError(f"k={self.k} clusters but only {n_ok} rows have a usable {self.space} embedding; lower --k")
        size = min(n_ok, self.train_size if self.train_size is not None else 256 * self.k)
        km = KMeans(self.k, metric="cosine", niter=self.niter, seed=self.seed, threads=ctx.threads, init="k-means++")
        km.fit(_hash_sample(shards, usable, size, self.seed))
        views = [_usable_view(s, u) for s, u in zip(shards, usable) if len(u)]
        a = km.assign(views)
        # the global row (over all valid rows, shard after shard) of each usable row
        glob = np.concatenate([starts[i] + u for i, u in enumerate(usable)]) if usable else np.zeros(0, np.int64)
        tiebreak = np.concatenate([s.uid_hash[u] for s, u in zip(shards, usable)]) if usable else None
        r = semdedup(views, a.labels, a.cos, eps=self.eps_report, keep=self.keep, compare_to=self.compare_to,
                     centroids=km.centroids_, seed=self.seed, threads=ctx.threads, tiebreak=tiebreak)
        atomic_write_npy(ctx.work / "centroids.npy", km.centroids_)
        twin, sim = r.twins(self.eps)
        drop = twin >= 0
        twin_uid = lookup_strings(ctx, [s.shard for s in shards], starts, glob[twin[drop]])
        detail = np.full(n_ok, None, dtype=object)
        for i, u, c in zip(np.flatnonzero(drop).tolist(), twin_uid, sim[drop].tolist()):
            detail[i] = f"{u} cos={c:.4f}"
        pos = 0
        for s, u in zip(shards, usable):
            code = s.code.copy()
            det = np.full(len(code), None, dtype=object)
            d = drop[pos:pos + len(u)]
            code[u[d]] = 3
            det[u] = detail[pos:pos + len(u)]
            pos += len(u)
            atomic_write_npy(s.work / "decision.npy", code)
            write_strings(s.work / "detail.parquet", det.tolist())
        shares = {f"{e:g}": r.removed_share(e) for e in self.eps_report} if self.compare_to == "all" or \
            len(self.eps_report) == 1 else {f"{e:g}": float(1 - r.keep(e).mean()) for e in self.eps_report}
        return {"rows": n_ok, "dim": dim, "removed": int(drop.sum()), "removed_share_by_eps": shares,
                "clusters": self.k, "tiles_skipped": int(r.stats.get("tiles_skipped", 0)),
                "tiles_total": int(r.stats.get("tiles_total", 0))}

    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        w = ctx.shard_work(shard)
        return decided_results(batches, np.load(w / "decision.npy"), read_strings(w / "detail.parquet").to_pylist(), CODES)

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        assert state is not None
        # the clustering the decisions were made in, so that they can be checked or reproduced
        atomic_write_npy(ctx.out / "centroids.npy", np.load(ctx.work / "centroids.npy"))
        return {**self.config(), "rows_clustered": state["rows"], "dim": state["dim"], "removed": state["removed"],
                "removed_share_by_eps": state["removed_share_by_eps"],
                "tiles_skipped": state["tiles_skipped"], "tiles_total": state["tiles_total"]}
