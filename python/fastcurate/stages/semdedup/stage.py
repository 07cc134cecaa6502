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

``clusters="input"`` skips the k-means: the rows' ``cluster`` and ``cos_to_centroid`` columns, as
``fastcurate cluster`` wrote them, are the clustering (and ``centroids.npy`` beside the input
shards, when there, lets the kernel skip tiles; it computes its own angles, so that is exact).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_write_npy
from ...io.discover import ShardRef
from ...runner.stage import Batch, Context, Result, Stage
from .._embeddings import BAD_CODES, load_all, scan_embeddings, space_columns
from .._rowstore import decided_results, lookup_strings, read_strings, write_strings
from ..cluster.stage import _hash_sample, _usable_view

if TYPE_CHECKING:

    from ...kernels.semdedup import CompareTo, Keep

__all__ = ["SemDedupStage"]

CODES = BAD_CODES + ("semantic_duplicate",)
CLUSTER_SOURCES = ("kmeans", "input")
# the columns `fastcurate cluster` adds (stages/cluster/stage.py), read with clusters="input"
INPUT_COLUMNS = ("cluster", "cos_to_centroid")


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
        clusters: "kmeans" (run spherical k-means here) or "input" (use the rows' ``cluster`` and
            ``cos_to_centroid`` columns from ``fastcurate cluster`` run with the cosine metric on
            the same space; ``k``, ``train_size`` and ``niter`` then do not apply).
    """

    name = "semdedup"
    version = 2  # 2: clusters="input"
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
                 eps_report: Sequence[float] = (), clusters: str = "kmeans"):
        if not 0.0 <= float(eps) < 1.0:
            raise InputError(f"eps must be in [0, 1), got {eps}")
        if keep not in ("hard", "easy", "random"):
            raise InputError(f"keep must be 'hard', 'easy' or 'random', got {keep!r}")
        if compare_to not in ("all", "kept"):
            raise InputError(f"compare_to must be 'all' or 'kept', got {compare_to!r}")
        if int(k) < 1:
            raise InputError(f"k must be >= 1, got {k}")
        if clusters not in CLUSTER_SOURCES:
            raise InputError(f"clusters must be one of {CLUSTER_SOURCES}, got {clusters!r}")
        self.clusters = clusters
        space_columns(space)
        self.eps, self.k = float(eps), int(k)
        self.keep = cast("Keep", keep)  # checked above
        self.compare_to = cast("CompareTo", compare_to)
        self.space, self.seed, self.niter = space, int(seed), int(niter)
        self.train_size = None if train_size is None else int(train_size)
        self.eps_report = sorted({float(e) for e in eps_report} | {self.eps})
        for e in self.eps_report:
            if not 0.0 <= e < 1.0:
                raise InputError(f"eps_report values must be in [0, 1), got {e}")
        self.consumes = space_columns(space) + (INPUT_COLUMNS if clusters == "input" else ())

    def config(self) -> Dict[str, Any]:
        return {"eps": self.eps, "k": self.k, "keep": self.keep, "compare_to": self.compare_to, "space": self.space,
                "seed": self.seed, "train_size": self.train_size, "niter": self.niter, "eps_report": self.eps_report,
                "clusters": self.clusters}

    def extra_columns(self) -> Sequence[str]:
        return space_columns(self.space) + (INPUT_COLUMNS if self.clusters == "input" else ())

    def scan_roles(self) -> Sequence[str]:
        return ()

    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        if self.clusters == "kmeans":
            return scan_embeddings(ctx, shard, batches, self.space, True)
        _check_input_clustering(ctx, self.space)  # before reading: a mismatch is the likelier mistake
        labels: List[np.ndarray] = []
        cos: List[np.ndarray] = []

        def keep_assignment(bs: Iterator[Batch]) -> Iterator[Batch]:
            for b in bs:
                lab, c = _input_assignment(b)
                labels.append(lab)
                cos.append(c)
                yield b

        summary = scan_embeddings(ctx, shard, keep_assignment(batches), self.space, True)
        d = ctx.shard_work(shard)
        atomic_write_npy(d / "labels.npy", np.concatenate(labels) if labels else np.zeros(0, np.int64))
        atomic_write_npy(d / "cos.npy", np.concatenate(cos) if cos else np.zeros(0, np.float32))
        return summary

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        from ...kernels.kmeans import KMeans
        from ...kernels.semdedup import semdedup

        shards, starts, dim = load_all(ctx, summaries)
        usable = [np.flatnonzero(s.code == 0) for s in shards]
        n_ok = int(sum(len(u) for u in usable))
        views = [_usable_view(s, u) for s, u in zip(shards, usable) if len(u)]
        if self.clusters == "input":
            if n_ok == 0:
                raise InputError(f"no row of the input has a usable {self.space} embedding; pick another --space")
            labels = np.concatenate([np.load(s.work / "labels.npy")[u] for s, u in zip(shards, usable)]) \
                if usable else np.zeros(0, np.int64)
            cos = np.concatenate([np.load(s.work / "cos.npy")[u] for s, u in zip(shards, usable)]) \
                if usable else np.zeros(0, np.float32)
            centroids = _input_centroids(ctx, labels, dim)
            k = int(len(np.unique(labels[labels >= 0])))
        else:
            if n_ok < self.k:
                raise InputError(f"k={self.k} clusters but only {n_ok} rows have a usable {self.space} embedding; lower --k")
            size = min(n_ok, self.train_size if self.train_size is not None else 256 * self.k)
            km = KMeans(self.k, metric="cosine", niter=self.niter, seed=self.seed, threads=ctx.threads, init="k-means++")
            km.fit(_hash_sample(shards, usable, size, self.seed))
            a = km.assign(views)
            labels, cos, centroids, k = a.labels, a.cos, km.centroids_, self.k
        # the global row (over all valid rows, shard after shard) of each usable row
        rows = np.concatenate([starts[i] + u for i, u in enumerate(usable)]) if usable else np.zeros(0, np.int64)
        tiebreak = np.concatenate([s.uid_hash[u] for s, u in zip(shards, usable)]) if usable else None
        r = semdedup(views, labels, cos, eps=self.eps_report, keep=self.keep, compare_to=self.compare_to,
                     centroids=centroids, seed=self.seed, threads=ctx.threads, tiebreak=tiebreak)
        (ctx.work / "centroids.npy").unlink(missing_ok=True)  # from an earlier try of this run
        if centroids is not None:
            atomic_write_npy(ctx.work / "centroids.npy", centroids)
        twin, sim = r.twins(self.eps)
        drop = twin >= 0
        twin_uid = lookup_strings(ctx, [s.shard for s in shards], starts, rows[twin[drop]])
        detail = np.full(n_ok, None, dtype=object)
        for i, tu, c in zip(np.flatnonzero(drop).tolist(), twin_uid, sim[drop].tolist()):
            detail[i] = f"{tu} cos={c:.4f}"
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
                "clusters": k, "centroids": centroids is not None, "tiles_skipped": int(r.stats.get("tiles_skipped", 0)),
                "tiles_total": int(r.stats.get("tiles_total", 0))}

    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        w = ctx.shard_work(shard)
        return decided_results(batches, np.load(w / "decision.npy"), read_strings(w / "detail.parquet").to_pylist(), CODES)

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        assert state is not None
        # the clustering the decisions were made in, so that they can be checked or reproduced
        if state.get("centroids", True):
            atomic_write_npy(ctx.out / "centroids.npy", np.load(ctx.work / "centroids.npy"))
        return {**self.config(), "k": state["clusters"], "rows_clustered": state["rows"], "dim": state["dim"],
                "removed": state["removed"],
                "removed_share_by_eps": state["removed_share_by_eps"],
                "tiles_skipped": state["tiles_skipped"], "tiles_total": state["tiles_total"]}


def _input_assignment(b: Batch) -> Tuple[np.ndarray, np.ndarray]:
    """The batch's ``cluster`` (int64, -1 where null) and ``cos_to_centroid`` (float32) columns."""
    missing = [c for c in INPUT_COLUMNS if c not in b.data.schema.names]
    if missing:
        raise InputError(f"{b.shard.path}: no {', '.join(missing)} column; --clusters input reads the output of "
                         "`fastcurate cluster` (or use --clusters kmeans)")
    lab_col, cos_col = b.data.column("cluster"), b.data.column("cos_to_centroid")
    import pyarrow as pa

    if not pa.types.is_integer(lab_col.type) or not pa.types.is_floating(cos_col.type):
        raise InputError(f"{b.shard.path}: cluster must be integers and cos_to_centroid floats, got "
                         f"{lab_col.type} and {cos_col.type}")
    lab = lab_col.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    cos = cos_col.to_numpy(zero_copy_only=False).astype(np.float32)
    bad = (lab >= 0) & ~np.isfinite(cos)
    if bad.any():
        raise InputError(f"{b.shard.path}: row {b.offset + int(np.flatnonzero(bad)[0])} has a cluster but no finite "
                         "cos_to_centroid")
    return lab, cos


def _check_input_clustering(ctx: Context, space: str) -> None:
    """When the inputs are one `fastcurate cluster` output (its stats.json beside them), its
    clustering must be in the same space and cosine: SemDeDup's keep order is by cosine."""
    import json

    dirs = {s.path.parent for s in ctx.inputs}
    f = dirs.pop() / "stats.json" if len(dirs) == 1 else None
    if f is None or not f.is_file():
        return
    try:
        st = json.loads(f.read_text())
        cfg = st["manifest"]["config"] if st.get("stage") == "cluster" else None
    except (ValueError, KeyError, TypeError):
        return
    if cfg is None:
        return
    if cfg.get("space") != space:
        raise InputError(f"{f}: the clusters were made in the {cfg.get('space')!r} space, this run uses {space!r}; "
                         f"pass --space {cfg.get('space')} or re-run `fastcurate cluster --space {space}`")
    if cfg.get("metric", "cosine") != "cosine":
        raise InputError(f"{f}: the clusters were made with the {cfg.get('metric')!r} metric; SemDeDup orders by "
                         "cosine: re-run `fastcurate cluster --metric cosine` or use --clusters kmeans")


def _input_centroids(ctx: Context, labels: np.ndarray, dim: int) -> Optional[np.ndarray]:
    """``centroids.npy`` of the clustering the input came from (beside its shards), or None when
    it is not there or does not fit (then the kernel compares every pair: slower, same result)."""
    dirs = {s.path.parent for s in ctx.inputs}
    if len(dirs) != 1:
        return None
    f = dirs.pop() / "centroids.npy"
    if not f.is_file():
        return None
    c = np.load(f)
    if c.ndim != 2 or c.shape[1] != dim or (labels.size and int(labels.max()) >= len(c)):
        return None
    return c.astype(np.float32)
