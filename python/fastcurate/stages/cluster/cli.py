"""``fastcurate cluster``: k-means over embeddings, per-cluster samples, silhouette, t-SNE map."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, positive_int, run_from_args

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cluster",
        help="k-means over the embeddings: cluster per row, closest/furthest samples, silhouette, t-SNE map",
        description="Spherical (cosine) or Euclidean k-means (faiss) trained on a seeded sample, every row assigned "
        "by streaming; each row gets cluster, cos_to_centroid and rank_in_cluster; clusters.parquet holds each "
        "cluster's closest and furthest samples (what `fastcurate judge` reads); the silhouette (exact or a "
        "sampled estimate with a 95%% interval) and a t-SNE map (tsne.parquet, tsne.png, tsne_thumbs.png). "
        "See docs/cluster.md.",
    )
    add_runner_args(p, roles=("text", "image"))
    c = p.add_argument_group("clustering")
    c.add_argument("--k", type=positive_int, default=100, help="number of clusters (default 100)")
    c.add_argument("--space", choices=("image", "text", "joint"), default="image",
                   help="which embeddings: image_emb, text_emb, or joint (normalised sum of both); default image")
    c.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine",
                   help="cosine: spherical k-means (default); euclidean")
    c.add_argument("--seed", type=int, default=0, help="seed of the training sample and of faiss (default 0)")
    c.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                   help="rows k-means trains on (default min(rows, 256 k))")
    c.add_argument("--niter", type=positive_int, default=20, help="Lloyd iterations (default 20)")
    c.add_argument("--init", choices=("k-means++", "random"), default="k-means++",
                   help="seeding: k-means++ (default, as scikit-learn) or random (faiss's default)")
    c.add_argument("--samples", type=positive_int, default=10, metavar="N",
                   help="closest and furthest samples per cluster in clusters.parquet (default 10)")
    c.add_argument("--silhouette-exact-max", type=int, default=50_000, metavar="N",
                   help="exact silhouette up to N rows, else a sampled estimate over N rows (default 50000; 0: skip)")
    c.add_argument("--tsne-rows", type=int, default=5_000, metavar="N",
                   help="rows in the t-SNE map, a seeded sample (default 5000; 0: no map)")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    sil = s.get("silhouette")
    sil_txt = "skipped" if not sil else (f"{sil['score']:.4f} (exact)" if sil["exact"] else
                                         f"{sil['score']:.4f}, 95% CI [{sil['ci95'][0]:.4f}, {sil['ci95'][1]:.4f}] "
                                         f"over {sil['rows']:,} sampled rows")
    return [f"k={s['k']} on {s['rows_clustered']:,} {s['space']} embeddings ({s['dim']}-d, {s['metric']}); "
            f"clusters of {s['smallest_cluster']:,} to {s['largest_cluster']:,} rows; silhouette {sil_txt}"]


def _run(a: argparse.Namespace) -> int:
    from .stage import ClusterStage

    stage = ClusterStage(k=a.k, space=a.space, metric=a.metric, seed=a.seed, train_size=a.train_size,
                         niter=a.niter, init=a.init, samples=a.samples, silhouette_exact_max=a.silhouette_exact_max,
                         tsne_rows=a.tsne_rows)
    return run_from_args(a, stage, _describe)
