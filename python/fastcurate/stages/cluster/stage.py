"""k-means clustering of `fastcurate embed`'s output as a stage (docs/cluster.md).

* global pass: each shard's embeddings of the chosen space go to its work directory (float16);
* reduce: spherical (cosine, default) or Euclidean k-means (faiss) trained on a sample of up to
  ``train_size`` rows chosen and ordered by a seeded hash of their uids (so the clustering does
  not depend on the shard layout), then every row assigned by streaming the memory-mapped
  embeddings; per cluster the ``samples`` closest and furthest rows; each row's rank in its
  cluster; the silhouette (exact up to ``silhouette_exact_max`` rows, else a sampled estimate
  with a confidence interval); a t-SNE map of up to ``tsne_rows`` rows;
* per-shard pass: each row gets ``cluster``, ``cos_to_centroid`` and ``rank_in_cluster``.

Stage files: ``centroids.npy``, ``clusters.parquet`` (what the judge reads: size, silhouette, the
closest and furthest samples' uids, captions, cosines and embeddings), ``tsne.parquet``,
``tsne.png`` (coloured by cluster) and ``tsne_thumbs.png`` (thumbnails, for image pools).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, cast

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_write_bytes, atomic_write_npy, atomic_write_table
from ...io.columns import Roles
from ...io.discover import ShardRef
from ...runner.stage import Batch, Context, Result, Stage
from .._embeddings import BAD_CODES, load_all, mix64, scan_embeddings, space_columns
from .._rowstore import lookup_strings

if TYPE_CHECKING:
    import pyarrow as pa

    from ...kernels.kmeans import Metric

__all__ = ["ClusterStage"]


class ClusterStage(Stage):
    """k-means over embeddings; per-row cluster, cosine and rank; per-cluster samples; silhouette; t-SNE.

    Args:
        k: the number of clusters.
        space: which embeddings: "image", "text" or "joint" (the normalised sum of both).
        metric: "cosine" (spherical k-means, default) or "euclidean".
        seed: fixes the training sample and faiss's initialisation.
        train_size: rows k-means trains on (default min(rows, 256 k), faiss's own cap).
        niter: Lloyd iterations.
        init: "k-means++" (default: spread-out seeds, as scikit-learn) or "random" (faiss's default).
        samples: the closest and furthest samples kept per cluster in clusters.parquet (the judge
            reads them; the template's examples use 5).
        silhouette_exact_max: up to this many rows the silhouette is exact, above a sampled
            estimate over that many rows with a 95 % confidence interval; 0 skips it.
        tsne_rows: rows in the t-SNE map (a seeded sample by uid); 0 skips the map.
    """

    name = "cluster"
    version = 1
    scans = True
    wants = ("text", "image")  # resolved for clusters.parquet's captions and the thumbnail map
    batch_size = 65536
    reasons = {
        "no_embedding": "the row has no embedding in the chosen space (null column: e.g. no caption for text)",
        "bad_embedding": "the embedding holds NaN/inf, or is all zeros under the cosine metric",
    }

    def __init__(self, *, k: int = 100, space: str = "image", metric: str = "cosine", seed: int = 0,
                 train_size: Optional[int] = None, niter: int = 20, init: str = "k-means++", samples: int = 10,
                 silhouette_exact_max: int = 50_000, tsne_rows: int = 5_000):
        if int(k) < 2:
            raise InputError(f"k must be >= 2, got {k}")
        if metric not in ("cosine", "euclidean"):
            raise InputError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
        space_columns(space)
        if int(samples) < 1 or int(niter) < 1:
            raise InputError("samples and niter must be >= 1")
        if train_size is not None and int(train_size) < int(k):
            raise InputError(f"train_size ({train_size}) must be at least k ({k})")
        if init not in ("k-means++", "random"):
            raise InputError(f"init must be 'k-means++' or 'random', got {init!r}")
        self.init = cast('Literal["random", "k-means++"]', init)  # checked above
        self.metric = cast("Metric", metric)
        self.k, self.space, self.seed = int(k), space, int(seed)
        self.train_size = None if train_size is None else int(train_size)
        self.niter, self.samples = int(niter), int(samples)
        self.silhouette_exact_max, self.tsne_rows = int(silhouette_exact_max), int(tsne_rows)
        self.consumes = space_columns(space)
        self.produces = ("cluster", "cos_to_centroid", "rank_in_cluster", "clusters.parquet", "centroids.npy")

    def config(self) -> Dict[str, Any]:
        return {"k": self.k, "space": self.space, "metric": self.metric, "seed": self.seed,
                "train_size": self.train_size, "niter": self.niter, "init": self.init, "samples": self.samples,
                "silhouette_exact_max": self.silhouette_exact_max, "tsne_rows": self.tsne_rows}

    def output_fields(self, schema: "pa.Schema", roles: Roles) -> List["pa.Field"]:
        import pyarrow as pa

        return [pa.field("cluster", pa.int32()), pa.field("cos_to_centroid", pa.float32()),
                pa.field("rank_in_cluster", pa.int32())]

    def extra_columns(self) -> Sequence[str]:
        return space_columns(self.space)

    def scan_roles(self) -> Sequence[str]:
        return ()

    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        return scan_embeddings(ctx, shard, batches, self.space, self.metric == "cosine")

    # ---- reduce: train, assign, rank, extremes, silhouette, map
    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        from ...kernels.cluster_rank import ClusterExtremes, ClusterRanker
        from ...kernels.kmeans import KMeans

        shards, starts, dim = load_all(ctx, summaries)
        usable = [np.flatnonzero(s.code == 0) for s in shards]
        n_ok = int(sum(len(u) for u in usable))
        if n_ok < self.k:
            raise InputError(f"k={self.k} clusters but only {n_ok} rows have a usable {self.space} embedding; lower --k")
        # The training sample: the rows whose seeded uid hash is smallest, in that order.
        size = min(n_ok, self.train_size if self.train_size is not None else 256 * self.k)
        sample = _hash_sample(shards, usable, size, self.seed)
        km = KMeans(self.k, metric=self.metric, niter=self.niter, seed=self.seed, threads=ctx.threads, init=self.init)
        km.fit(sample)
        del sample
        extremes = ClusterExtremes(self.k, self.samples)
        ranker = ClusterRanker(self.k, tmpdir=str(ctx.work))
        pieces: List[Tuple[int, int]] = []  # (shard index, rows)
        for si, s in enumerate(shards):
            lab = np.full(len(s.code), -1, np.int32)
            cos = np.full(len(s.code), np.nan, np.float32)
            sq = np.full(len(s.code), np.nan, np.float32)
            rows = usable[si]
            for lo in range(0, len(rows), 65536):
                r = rows[lo:lo + 65536]
                a = next(km.assign_chunks([np.asarray(s.emb[r])], start=int(starts[si] + r[0]) if len(r) else 0))
                lab[r], cos[r], sq[r] = a.labels, a.cos, a.sqdist
            key = -cos if self.metric == "cosine" else sq
            key = np.where(lab >= 0, key, 0).astype(np.float32)
            extremes.update(int(starts[si]), lab, key)
            ranker.add(lab, key)
            pieces.append((si, len(lab)))
            atomic_write_npy(s.work / "label.npy", lab)
            atomic_write_npy(s.work / "cos.npy", cos)
        for (si, _), ranks in zip(pieces, ranker.ranks()):
            atomic_write_npy(shards[si].work / "rank.npy", ranks.astype(np.int32))
        ext = extremes.result()
        assert km.centroids_ is not None  # fitted
        atomic_write_npy(ctx.work / "centroids.npy", km.centroids_)
        np.savez(ctx.work / "extremes.npz", closest=ext.closest, closest_key=ext.closest_key, furthest=ext.furthest,
                 furthest_key=ext.furthest_key, sizes=ext.sizes)
        sil = self._silhouette(ctx, shards, usable, n_ok)
        tsne = self._tsne(ctx, shards, usable, n_ok)
        return {"shards": [x.shard.index for x in shards], "starts": starts.tolist(),
                "rows": n_ok, "dim": dim, "objective": km.objective_[-1] if km.objective_ else None,
                "reseeded": int(km.n_reseeded_), "train_rows": int(size), "silhouette": sil, "tsne_rows": tsne}

    def _silhouette(self, ctx: Context, shards: list, usable: list, n_ok: int) -> Optional[Dict[str, Any]]:
        from ...kernels.silhouette import silhouette

        if self.silhouette_exact_max <= 0 or n_ok < 3:
            return None
        chunks = [_usable_view(s, u) for s, u in zip(shards, usable) if len(u)]
        labels = np.concatenate([np.load(s.work / "label.npy")[u] for s, u in zip(shards, usable) if len(u)])
        if len(np.unique(labels)) < 2:
            return None
        exact = n_ok <= self.silhouette_exact_max
        r = silhouette(chunks, labels, metric=self.metric, threads=ctx.threads, seed=self.seed,
                       sample_size=None if exact else self.silhouette_exact_max)
        per = {int(c): (None if not np.isfinite(v) else float(v)) for c, v in zip(r.labels, r.per_cluster)}
        atomic_write_bytes(ctx.work / "silhouette_per_cluster.json",
                           (__import__("json").dumps(per, sort_keys=True) + "\n").encode())
        rows = int(r.n) if r.sample_index is None else int(len(r.sample_index))
        return {"score": float(r.score), "exact": bool(r.exact), "rows": rows, "of_rows": int(r.n),
                "ci95": list(r.ci) if r.ci is not None else None}

    def _tsne(self, ctx: Context, shards: list, usable: list, n_ok: int) -> int:
        from ...kernels.tsne import tsne

        m = min(self.tsne_rows, n_ok)
        if m < 4:
            return 0
        glob = _hash_order(shards, usable, m, self.seed ^ 0x7453)
        if not glob:
            return 0
        x = np.concatenate([np.asarray(shards[si].emb[r:r + 1], dtype=np.float32) for si, r in glob])
        perplexity = min(30.0, (m - 1) / 3.0)
        y = tsne(x, seed=self.seed, perplexity=perplexity, threads=ctx.threads)
        si_arr = np.array([si for si, _ in glob], np.int64)
        r_arr = np.array([r for _, r in glob], np.int64)
        np.savez(ctx.work / "tsne.npz", shard=si_arr, row=r_arr, xy=np.asarray(y, np.float32))
        return m

    # ---- per-shard pass
    def setup(self, ctx: Context, state: Optional[Dict[str, Any]]) -> None:
        pass

    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        w = ctx.shard_work(shard)
        code = np.load(w / "code.npy")
        lab, cos, rank = np.load(w / "label.npy"), np.load(w / "cos.npy"), np.load(w / "rank.npy")
        for b in batches:
            lo, hi = b.offset, b.offset + len(b)
            yield Result.from_codes(code[lo:hi], BAD_CODES, columns={
                "cluster": lab[lo:hi], "cos_to_centroid": cos[lo:hi], "rank_in_cluster": rank[lo:hi]})

    # ---- stage files
    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        assert state is not None
        import json

        by_index = {s.index: s for s in ctx.inputs}
        good = [by_index[i] for i in state["shards"]]
        starts = np.asarray(state["starts"], np.int64)
        written = {r["file"] for r in shards}
        text_col = next((r["roles"].get("text") for r in shards if r.get("roles", {}).get("text")), None)
        img_col = next((r["roles"].get("image") for r in shards if r.get("roles", {}).get("image")), None)
        cent = np.load(ctx.work / "centroids.npy")
        atomic_write_npy(ctx.out / "centroids.npy", cent)
        ext = np.load(ctx.work / "extremes.npz")
        per_sil: Dict[str, Any] = {}
        if (ctx.work / "silhouette_per_cluster.json").is_file():
            per_sil = json.loads((ctx.work / "silhouette_per_cluster.json").read_text())
        table = _clusters_table(ctx, good, starts, ext, per_sil, text_col, written, self.metric)
        atomic_write_table(table, ctx.out / "clusters.parquet", compression="zstd")
        tsne_info = None
        if (ctx.work / "tsne.npz").is_file():
            tsne_info = _write_tsne(ctx, good, starts, img_col, written)
        sizes = ext["sizes"]
        return {**self.config(), "rows_clustered": state["rows"], "dim": state["dim"],
                "train_rows": state["train_rows"], "objective": state["objective"], "reseeded": state["reseeded"],
                "silhouette": state["silhouette"], "tsne_rows": state["tsne_rows"],
                "empty_clusters": int((sizes == 0).sum()), "largest_cluster": int(sizes.max()) if len(sizes) else 0,
                "smallest_cluster": int(sizes.min()) if len(sizes) else 0, "tsne": tsne_info}


def _hash_order(shards: list, usable: list, m: int, seed: int) -> List[Tuple[int, int]]:
    """The ``m`` usable rows of smallest seeded uid hash, as (shard, row), in hash order."""
    keys = []
    for si, (s, u) in enumerate(zip(shards, usable)):
        if len(u):
            keys.append((mix64(s.uid_hash[u], seed), np.full(len(u), si, np.int64), u.astype(np.int64)))
    if not keys:
        return []
    h = np.concatenate([k[0] for k in keys])
    shard_of = np.concatenate([k[1] for k in keys])
    row_of = np.concatenate([k[2] for k in keys])
    take = np.argpartition(h, m - 1)[:m] if m < len(h) else np.arange(len(h))
    take = take[np.lexsort((row_of[take], shard_of[take], h[take]))]  # hash order (ties: identical uids, by position)
    return list(zip(shard_of[take].tolist(), row_of[take].tolist()))


def _hash_sample(shards: list, usable: list, m: int, seed: int) -> np.ndarray:
    """The k-means training sample (float32, in seeded uid-hash order)."""
    order = _hash_order(shards, usable, m, seed)
    out = np.empty((len(order), shards[0].emb.shape[1] if shards else 0), np.float32)
    by_shard: Dict[int, List[int]] = {}
    for pos, (si, r) in enumerate(order):
        by_shard.setdefault(si, []).append(pos)
    for si, poss in by_shard.items():
        rows = np.array([order[p][1] for p in poss], np.int64)
        srt = np.argsort(rows)
        out[np.array(poss)[srt]] = np.asarray(shards[si].emb[rows[srt]], dtype=np.float32)
    return out


def _part_rows(ctx: Context, shard: ShardRef, rows: np.ndarray) -> np.ndarray:
    """Positions in the shard's output part of its valid rows ``rows`` (kept rows only)."""
    code = np.load(ctx.shard_work(shard) / "code.npy")
    kept_before = np.cumsum(code == 0) - 1
    return kept_before[rows]


def _captions(ctx: Context, good: List[ShardRef], starts: np.ndarray, rows: np.ndarray, text_col: Optional[str],
              written: set) -> List[Optional[str]]:
    import pyarrow.parquet as pq

    out: List[Optional[str]] = [None] * len(rows)
    if text_col is None or not len(rows):
        return out
    shard_of = np.searchsorted(starts, rows, side="right") - 1
    for k in np.unique(shard_of):
        s = good[int(k)]
        if str(s.path) not in written:
            continue
        sel = np.flatnonzero(shard_of == k)
        pos = _part_rows(ctx, s, rows[sel] - starts[k])
        col = pq.read_table(ctx.out / s.part_name, columns=[text_col]).column(0)
        for i, v in zip(sel.tolist(), col.take(pos).to_pylist()):
            out[i] = v
    return out


def _embs(ctx: Context, good: List[ShardRef], starts: np.ndarray, rows: np.ndarray, d: int) -> np.ndarray:
    out = np.zeros((len(rows), d), np.float32)
    shard_of = np.searchsorted(starts, rows, side="right") - 1
    for k in np.unique(shard_of):
        sel = np.flatnonzero(shard_of == k)
        e = np.load(ctx.shard_work(good[int(k)]) / "emb.npy", mmap_mode="r")
        out[sel] = np.asarray(e[rows[sel] - starts[k]], dtype=np.float32)
    return out


def _clusters_table(ctx: Context, good: List[ShardRef], starts: np.ndarray, ext: Any, per_sil: Dict[str, Any],
                    text_col: Optional[str], written: set, metric: str) -> "pa.Table":
    import pyarrow as pa

    k, n = ext["closest"].shape
    d = int(np.load(ctx.work / "centroids.npy").shape[1])
    cols: Dict[str, Any] = {"cluster": pa.array(np.arange(k, dtype=np.int32)),
                            "size": pa.array(ext["sizes"].astype(np.int64))}
    cols["silhouette"] = pa.array([per_sil.get(str(c)) for c in range(k)], pa.float64())
    for side in ("closest", "furthest"):
        rows = ext[side]
        keys = ext[f"{side}_key"]
        flat = rows[rows >= 0]
        uids = lookup_strings(ctx, good, starts, flat)
        caps = _captions(ctx, good, starts, flat, text_col, written)
        embs = _embs(ctx, good, starts, flat, d)
        uid_l, cap_l, cos_l, emb_l = [], [], [], []
        pos = 0
        for c in range(k):
            m = int((rows[c] >= 0).sum())
            uid_l.append(uids[pos:pos + m])
            cap_l.append(caps[pos:pos + m])
            kk = keys[c][:m].astype(np.float64)
            cos_l.append((-kk if metric == "cosine" else kk).astype(np.float32).tolist())
            emb_l.append(embs[pos:pos + m].tolist())
            pos += m
        cols[f"{side}_uid"] = pa.array(uid_l, pa.list_(pa.string()))
        cols[side] = pa.array(cap_l, pa.list_(pa.string()))
        cols[f"{side}_{'cos' if metric == 'cosine' else 'sqdist'}"] = pa.array(cos_l, pa.list_(pa.float32()))
        cols[f"{side}_emb"] = pa.array(emb_l, pa.list_(pa.list_(pa.float32(), d)))
    return pa.table(cols)


def _write_tsne(ctx: Context, good: List[ShardRef], starts: np.ndarray, img_col: Optional[str],
                written: set) -> Dict[str, Any]:
    import pyarrow as pa

    z = np.load(ctx.work / "tsne.npz")
    si, rows, xy = z["shard"], z["row"], z["xy"]
    glob = starts[si] + rows
    uids = lookup_strings(ctx, good, starts, glob)
    labels = np.concatenate([[np.load(ctx.shard_work(good[int(a)]) / "label.npy")[int(b)]] for a, b in zip(si, rows)]) \
        if len(si) else np.zeros(0, np.int32)
    t = pa.table({"uid": pa.array(uids, pa.string()), "x": pa.array(xy[:, 0]), "y": pa.array(xy[:, 1]),
                  "cluster": pa.array(labels.astype(np.int32))})
    atomic_write_table(t, ctx.out / "tsne.parquet", compression="zstd")
    from ...plots import plot_tsne, plot_tsne_thumbnails

    plot_tsne(xy, labels, ctx.out / "tsne.png")
    thumbs = _thumbnail_sources(ctx, good, si, rows, img_col, written) if img_col else None
    made = False
    if thumbs is not None:
        made = plot_tsne_thumbnails(xy, thumbs, ctx.out / "tsne_thumbs.png")
    return {"rows": int(len(xy)), "png": "tsne.png", "thumbnails": "tsne_thumbs.png" if made else None}


def _thumbnail_sources(ctx: Context, good: List[ShardRef], si: np.ndarray, rows: np.ndarray, img_col: str,
                       written: set) -> Optional[List[Any]]:
    """The image (bytes or path) of each mapped row, read from the output parts."""
    import pyarrow.parquet as pq

    from ...io.images import image_sources

    out: List[Any] = [None] * len(si)
    for k in np.unique(si):
        s = good[int(k)]
        if str(s.path) not in written:
            continue
        sel = np.flatnonzero(si == k)
        pos = _part_rows(ctx, s, rows[sel])
        pf = pq.ParquetFile(ctx.out / s.part_name)
        if img_col not in pf.schema_arrow.names:
            return None
        col = pf.read(columns=[img_col]).column(0).combine_chunks().take(pos)
        for i, v in zip(sel.tolist(), image_sources(col, s.path.parent)):
            out[i] = v
    return out


def _usable_view(s: Any, usable: np.ndarray) -> np.ndarray:
    """The shard's embeddings of its usable rows without holding them in memory: the stored
    memmap itself when every row is usable, else a compacted copy on disk, written in blocks."""
    if len(usable) == len(s.code):
        return s.emb
    path = s.work / "emb_usable.npy"
    if not path.is_file():
        tmp = s.work / ".emb_usable.npy.tmp"
        m = np.lib.format.open_memmap(tmp, mode="w+", dtype=s.emb.dtype, shape=(len(usable), s.emb.shape[1]))
        for lo in range(0, len(usable), 65536):
            m[lo:lo + 65536] = s.emb[usable[lo:lo + 65536]]
        m.flush()
        del m
        import os

        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")
