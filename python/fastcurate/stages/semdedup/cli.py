"""``fastcurate semdedup``: SemDeDup, semantic near-duplicates removed inside k-means clusters."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, positive_int, run_from_args

__all__ = ["register"]


def _floats(s: str) -> List[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "semdedup",
        help="SemDeDup: drop semantic near-duplicates inside k-means clusters of the embeddings",
        description="Cluster the embeddings (spherical k-means), order each cluster by cosine to its centroid "
        "(--keep hard: the paper's default, the least typical row first) and drop every row whose cosine to an "
        "earlier row of its cluster exceeds 1 - eps, naming that twin. See docs/semdedup.md.",
    )
    add_runner_args(p, roles=())
    c = p.add_argument_group("SemDeDup")
    c.add_argument("--eps", type=float, default=0.05, help="duplicate when cosine > 1 - eps (default 0.05)")
    c.add_argument("--k", type=positive_int, default=100, help="k-means clusters (default 100)")
    c.add_argument("--keep", choices=("hard", "easy", "random"), default="hard",
                   help="which row of a duplicate group stays: hard (the paper's default), easy or random")
    c.add_argument("--compare-to", choices=("all", "kept"), default="all",
                   help="all: any earlier row, as the paper (default); kept: only rows kept so far")
    c.add_argument("--space", choices=("image", "text", "joint"), default="image", help="which embeddings (default image)")
    c.add_argument("--seed", type=int, default=0, help="seed of the k-means sample, faiss and --keep random")
    c.add_argument("--train-size", type=positive_int, default=None, metavar="N", help="k-means training rows")
    c.add_argument("--niter", type=positive_int, default=20, help="Lloyd iterations (default 20)")
    c.add_argument("--eps-report", type=_floats, default=[], metavar="E1,E2,...",
                   help="also report the share other eps values would remove")
    c.add_argument("--clusters", choices=("kmeans", "input"), default="kmeans",
                   help="kmeans: cluster here (default); input: use the rows' cluster and cos_to_centroid columns "
                   "from `fastcurate cluster` (cosine metric, same --space), and its centroids.npy beside them")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    shares = ", ".join(f"eps {e}: {100 * v:.2f}%" for e, v in s["removed_share_by_eps"].items())
    return [f"{s['removed']:,} semantic duplicates among {s['rows_clustered']:,} rows in {s['k']} clusters; "
            f"removed share by eps: {shares}"]


def _run(a: argparse.Namespace) -> int:
    from .stage import SemDedupStage

    stage = SemDedupStage(eps=a.eps, k=a.k, keep=a.keep, compare_to=a.compare_to, space=a.space, seed=a.seed,
                          train_size=a.train_size, niter=a.niter, eps_report=a.eps_report,
                          clusters=a.clusters)
    return run_from_args(a, stage, _describe)
