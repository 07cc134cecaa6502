"""Clustering benchmarks: k-means, exact silhouette, t-SNE, SemDeDup, streaming assignment memory.

Every part runs fastcurate and its peer side by side in one process on the same input,
alternating them (A B A B ...), checks that they agree (a mismatch fails the run), and reports
medians and ratios with the load average, because the machine is shared.

    python benchmarks/bench_cluster.py silhouette   # 50k x 512, k=100: vs sklearn.metrics.silhouette_score
    python benchmarks/bench_cluster.py semdedup     # 1M x 512 fp16, k=1000: vs the paper's torch loop
    python benchmarks/bench_cluster.py semdedup-real  # share removed per eps, real MiniLM caption embeddings
    python benchmarks/bench_cluster.py kmeans       # 1M x 512 fp16, k=1000: vs sklearn.cluster.KMeans
    python benchmarks/bench_cluster.py tsne         # openTSNE vs sklearn.manifold.TSNE
    python benchmarks/bench_cluster.py assign-rss   # peak RSS of streaming assignment, 1M and 10M rows

Inputs (benchmarks/_emb_pool.py): synthetic float16 unit rows (topics + near duplicates, said so
in every result) and the real MiniLM embeddings of the ~26k real captions of ../shared/data.
Results are printed as JSON lines; benchmarks/RESULTS.md records them.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _emb_pool import CACHE, real_caption_embeddings, synthetic_pool  # noqa: E402

from fastcurate import _core  # noqa: E402
from fastcurate.kernels.kmeans import KMeans  # noqa: E402
from fastcurate.kernels.semdedup import keep_order, semdedup  # noqa: E402
from fastcurate.kernels.silhouette import silhouette  # noqa: E402


def load() -> float:
    return round(os.getloadavg()[0], 2)


def emit(rec: Dict[str, Any]) -> None:
    rec = {"load": load(), **rec}
    print(json.dumps(rec), flush=True)


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    """CPU time of this process, all threads (less sensitive than wall time to other jobs)."""
    t = os.times()
    return t.user + t.system


def alternate(engines: Dict[str, Callable[[], Any]], rounds: int) -> Tuple[Dict[str, List[float]], Dict[str, Any]]:
    """Run engines in turn, `rounds` times; wall times (and CPU times in `alternate.cpu`) and the
    last answer of each."""
    times: Dict[str, List[float]] = {k: [] for k in engines}
    cpu: Dict[str, List[float]] = {k: [] for k in engines}
    answers: Dict[str, Any] = {}
    for r in range(rounds):
        for name, fn in engines.items():
            gc.collect()
            c = cpu_seconds()
            t = time.perf_counter()
            answers[name] = fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(cpu_seconds() - c)
            emit({"round": r, "engine": name, "seconds": round(times[name][-1], 3), "cpu_s": round(cpu[name][-1], 3)})
    alternate.cpu = cpu  # type: ignore[attr-defined]
    return times, answers


# ---------------------------------------------------------------------------------------------------
def bench_silhouette(args: argparse.Namespace) -> None:
    from sklearn.metrics import silhouette_score

    x = np.load(synthetic_pool(args.pool))[: args.n].astype(np.float32)
    labels = KMeans(args.k, seed=0).fit(x).assign(x).labels
    emit({"part": "silhouette", "n": len(x), "d": x.shape[1], "k": args.k, "isa": _core.dense_isa(),
          "input": "synthetic unit rows (float32), labels from fastcurate spherical k-means"})
    for metric in args.metrics:
        engines = {
            "sklearn": lambda: silhouette_score(x, labels, metric=metric),
            "fastcurate": lambda: silhouette(x, labels, metric=metric).score,
        }
        times, ans = alternate(engines, args.rounds)
        diff = abs(ans["sklearn"] - ans["fastcurate"])
        if diff > 1e-6:
            raise SystemExit(f"silhouette {metric}: fastcurate {ans['fastcurate']} != sklearn {ans['sklearn']}")
        sk, fc = statistics.median(times["sklearn"]), statistics.median(times["fastcurate"])
        emit({"part": "silhouette", "metric": metric, "sklearn_s": round(sk, 3), "fastcurate_s": round(fc, 4),
              "speedup": round(sk / fc, 1), "score": ans["fastcurate"], "abs_diff": diff})
    # the sampled estimate on the same data
    for metric in args.metrics:
        exact = silhouette(x, labels, metric=metric).score
        t = time.perf_counter()
        est = silhouette(x, labels, metric=metric, sample_size=2000, seed=1)
        emit({"part": "silhouette-sampled", "metric": metric, "m": 2000, "seconds": round(time.perf_counter() - t, 3),
              "estimate": est.score, "ci95": est.ci, "exact": exact, "covered": est.ci[0] <= exact <= est.ci[1]})


# ---------------------------------------------------------------------------------------------------
def cached_kmeans(path: Path, x16: np.ndarray, k: int) -> Tuple[KMeans, Any]:
    """Spherical k-means (seed 0) of the pool and its assignment, cached next to the pool (the
    fit of 1M x 512 with k = 1000 takes minutes on a loaded 2-core machine)."""
    from fastcurate.kernels.kmeans import Assignment

    stem = CACHE / f"{Path(path).stem}_n{len(x16)}_k{k}"
    files = [Path(f"{stem}_{name}.npy") for name in ("centroids", "labels", "cos", "sqdist")]
    if all(f.exists() for f in files):
        c, lab, cos, sq = (np.load(f) for f in files)
        return KMeans.from_centroids(c), Assignment(0, lab, cos, sq)
    km = KMeans(k, seed=0).fit(x16)
    a = km.assign(x16)
    for f, arr in zip(files, (km.centroids_, a.labels, a.cos, a.sqdist)):
        np.save(f, arr)
    return km, a


def _normalized_f32(x16: np.ndarray) -> np.ndarray:
    out = np.empty(x16.shape, np.float32)
    for s in range(0, len(x16), 100_000):
        c = x16[s : s + 100_000].astype(np.float64)
        out[s : s + 100_000] = c / np.linalg.norm(c, axis=1, keepdims=True)
    return out


def bench_semdedup(args: argparse.Namespace) -> None:
    import torch

    from fastcurate.kernels.semdedup_reference import paper_loop_torch

    path = synthetic_pool(args.pool)
    x16 = np.load(path, mmap_mode="r")[: args.n]
    t = time.perf_counter()
    km, a = cached_kmeans(path, x16, args.k)
    emit({"part": "semdedup-setup", "n": len(x16), "k": args.k, "kmeans_fit_assign_s": round(time.perf_counter() - t, 1),
          "largest_cluster": int(np.bincount(a.labels).max()), "torch_threads": torch.get_num_threads(),
          "input": "synthetic float16 unit rows with 25% near duplicates and 3% exact copies"})
    order, offsets, _ = keep_order(a.labels, a.cos, "hard")
    # Both engines read from RAM (no page-cache noise): fastcurate the float16 rows as stored, the
    # reference L2-normalised float32 rows, which is what its embedding memmap holds.
    x16 = np.array(x16)
    xn = _normalized_f32(x16)
    for eps_list in args.eps_sets:
        engines = {
            "paper_loop_torch": lambda: paper_loop_torch(xn, order, offsets, eps_list),
            "fastcurate": lambda: semdedup(x16, a.labels, a.cos, eps=eps_list, centroids=km.centroids_),
        }
        times, ans = alternate(engines, args.rounds)
        ref, res = ans["paper_loop_torch"], ans["fastcurate"]
        rows = []
        for e in eps_list:
            ours = ~res.keep(e)
            diff = ref["remove"][e] != ours
            margin = float(np.abs(ref["M"][diff].astype(np.float64) - (1 - e)).max()) if diff.any() else 0.0
            if margin > 1e-5:
                raise SystemExit(f"SemDeDup eps={e}: {int(diff.sum())} rows differ, by up to {margin} from 1 - eps")
            rows.append({"eps": e, "removed_share": round(float(ours.mean()), 4), "differ": int(diff.sum()),
                         "max_margin": margin})
        tp, tf = statistics.median(times["paper_loop_torch"]), statistics.median(times["fastcurate"])
        cp, cf = (statistics.median(alternate.cpu[k]) for k in ("paper_loop_torch", "fastcurate"))  # type: ignore[attr-defined]
        emit({"part": "semdedup", "eps": eps_list, "paper_loop_s": round(tp, 2), "fastcurate_s": round(tf, 2),
              "speedup": round(tp / tf, 2), "paper_loop_cpu_s": round(cp, 2), "fastcurate_cpu_s": round(cf, 2),
              "cpu_speedup": round(cp / cf, 2), "per_eps": rows, "stats": res.stats})


def bench_semdedup_real(args: argparse.Namespace) -> None:
    from fastcurate.kernels.semdedup_reference import naive_numpy

    emb, texts, src = real_caption_embeddings()
    eps_list = [0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
    for k in args.real_ks:
        km = KMeans(k, seed=0).fit(emb)
        a = km.assign(emb)
        t = time.perf_counter()
        res = semdedup(emb, a.labels, a.cos, eps=eps_list, centroids=km.centroids_)
        dt = time.perf_counter() - t
        table = []
        for e in eps_list:
            keep = res.keep(e)
            tw, ms = res.twins(e)
            drop = np.flatnonzero(~keep)
            same_text = int(sum(texts[i] == texts[tw[i]] for i in drop))
            by_src = {s: round(float((~keep)[np.array(src) == s].mean()), 4) for s in ("laion", "cc3m", "coco")}
            table.append({"eps": e, "removed": int(len(drop)), "share": round(float(1 - keep.mean()), 4),
                          "identical_text_pairs": same_text, "share_by_source": by_src})
        # exactness against the naive reference at two eps
        for e in (0.01, 0.1):
            ms, tw = naive_numpy(emb, a.labels, a.cos, e)
            if not np.array_equal(res.twins(e)[0], tw):
                raise SystemExit(f"real data eps={e}: kernel != naive reference")
        emit({"part": "semdedup-real", "n": len(emb), "k": k, "seconds": round(dt, 3), "table": table,
              "naive_equal": True, "examples": [
                  (texts[i], texts[res.twins(0.05)[0][i]], round(float(res.twins(0.05)[1][i]), 4))
                  for i in np.flatnonzero(~res.keep(0.05))[:: max(1, int((~res.keep(0.05)).sum()) // 6)][:6]]})


# ---------------------------------------------------------------------------------------------------
def bench_kmeans(args: argparse.Namespace) -> None:
    from sklearn.cluster import KMeans as SkKMeans

    path = synthetic_pool(args.pool)
    x16 = np.load(path, mmap_mode="r")[: args.n]
    emit({"part": "kmeans", "n": len(x16), "k": args.k, "sk_iters": args.sk_iters, "input": "synthetic float16 unit rows"})
    # sklearn gets the float32 matrix in memory (it cannot take float16 or stream); its time
    # excludes that conversion.
    x32 = np.asarray(x16, dtype=np.float32)
    results: Dict[str, Any] = {}

    def run_sklearn() -> float:
        t = time.perf_counter()
        m = SkKMeans(args.k, init="k-means++", n_init=1, max_iter=args.sk_iters, tol=0.0, random_state=0,
                     algorithm="lloyd").fit(x32)
        results["sklearn"] = {"seconds": time.perf_counter() - t, "inertia": float(m.inertia_), "iters": int(m.n_iter_)}
        return float(m.inertia_)

    def run_ours(niter: int, train: int) -> float:
        t = time.perf_counter()
        km = KMeans(args.k, metric="euclidean", niter=niter, train_size=train, seed=0).fit(x16)
        fit_s = time.perf_counter() - t
        inertia = km.inertia(x16)  # one streamed assignment pass over all rows
        results[f"fastcurate_{niter}_{train}"] = {"seconds": time.perf_counter() - t, "fit_s": fit_s,
                                                  "inertia": inertia, "reseeded": km.n_reseeded_}
        return inertia

    engines: Dict[str, Callable[[], Any]] = {"sklearn": run_sklearn}
    for niter, train in args.ours:
        engines[f"fastcurate niter={niter} train={train}"] = (lambda ni=niter, tr=train: run_ours(ni, tr))
    times, ans = alternate(engines, args.rounds)
    sk_inertia = ans["sklearn"]
    for name, ts in times.items():
        emit({"part": "kmeans", "engine": name, "median_s": round(statistics.median(ts), 1),
              "inertia": ans[name], "vs_sklearn_inertia": round(ans[name] / sk_inertia, 5),
              "speedup": round(statistics.median(times["sklearn"]) / statistics.median(ts), 2)})
    emit({"part": "kmeans-detail", **{k: v for k, v in results.items()}})
    # spherical (the default) on the same input: time only
    t = time.perf_counter()
    km = KMeans(args.k, seed=0).fit(x16)
    fit_s = time.perf_counter() - t
    a = km.assign(x16)
    emit({"part": "kmeans-spherical", "fit_s": round(fit_s, 1), "fit_assign_s": round(time.perf_counter() - t, 1),
          "mean_cos": float(a.cos.mean()), "empty_clusters": int((np.bincount(a.labels, minlength=args.k) == 0).sum())})


# ---------------------------------------------------------------------------------------------------
def bench_tsne(args: argparse.Namespace) -> None:
    from sklearn.manifold import TSNE

    import openTSNE

    from fastcurate.kernels.tsne import pca_project

    x16 = np.load(synthetic_pool(args.pool), mmap_mode="r")
    nmax = max(max(args.sk_sizes), max(args.ot_sizes))
    x = np.asarray(x16[:nmax], dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    p = pca_project(x, 50).astype(np.float32)
    emit({"part": "tsne", "input": "synthetic unit rows -> PCA 50 (the same for both)", "perplexity": 30})

    def ours(n: int) -> float:
        e = openTSNE.TSNE(n_jobs=-1, random_state=0, negative_gradient_method="fft").fit(p[:n])
        return float(e.kl_divergence)

    def sk(n: int) -> float:
        m = TSNE(n_components=2, perplexity=30, init="pca", random_state=0, method="barnes_hut", n_jobs=-1)
        m.fit(p[:n])
        return float(m.kl_divergence_)

    for n in sorted(set(args.sk_sizes) | set(args.ot_sizes)):
        engines: Dict[str, Callable[[], Any]] = {}
        if n in args.sk_sizes:
            engines["sklearn"] = lambda n=n: sk(n)
        if n in args.ot_sizes:
            engines["openTSNE"] = lambda n=n: ours(n)
        times, ans = alternate(engines, args.rounds if len(engines) > 1 else 1)
        rec: Dict[str, Any] = {"part": "tsne", "n": n}
        for k in engines:
            rec[f"{k}_s"] = round(statistics.median(times[k]), 1)
            rec[f"{k}_kl"] = round(ans[k], 4)
        if len(engines) == 2:
            rec["speedup"] = round(rec["sklearn_s"] / rec["openTSNE_s"], 2)
        emit(rec)


# ---------------------------------------------------------------------------------------------------
ASSIGN_CHILD = r"""
import json, sys, time, numpy as np
sys.path.insert(0, {py!r})
from fastcurate.kernels.kmeans import KMeans
from fastcurate.kernels.cluster_rank import ClusterExtremes, ClusterRanker
from fastcurate.kernels._emb import iter_chunks, as_chunks
x = np.load({path!r}, mmap_mode="r")
km = KMeans.from_centroids(np.load({cent!r}))
k = len(km.centroids_)
ex = ClusterExtremes(k, 10)
rk = ClusterRanker(k, memory_rows=2_000_000, tmpdir={tmp!r})
t = time.perf_counter()
n = 0
with open({out!r}, "wb") as f:
    for a in km.assign_chunks(c for _, c in iter_chunks(as_chunks(x), 65536)):
        f.write(a.labels.tobytes()); f.write(a.cos.tobytes())
        ex.update(a.start, a.labels, a.closeness_key("cosine"))
        rk.add(a.labels, a.closeness_key("cosine"))
        n += len(a)
t_assign = time.perf_counter() - t
m = 0
for r in rk.ranks():
    m += len(r)
t_rank = time.perf_counter() - t - t_assign
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024
print(json.dumps({{"rows": n, "ranked": m, "assign_s": round(t_assign, 1), "rank_s": round(t_rank, 1), "peak_rss_mb": round(hwm, 1)}}))
"""


def bench_assign_rss(args: argparse.Namespace) -> None:
    src = synthetic_pool(args.pool)
    x16 = np.load(src, mmap_mode="r")
    km = KMeans(args.k, seed=0).fit(x16)
    cent = CACHE / f"centroids_k{args.k}.npy"
    np.save(cent, km.centroids_)
    py = str(Path(__file__).resolve().parents[1] / "python")
    for n in args.sizes:
        path = synthetic_pool(n) if n != args.pool else src
        out = CACHE / f"assign_{n}.bin"
        code = ASSIGN_CHILD.format(py=py, path=str(path), cent=str(cent), tmp=str(CACHE), out=str(out))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        rec = json.loads(r.stdout.strip().splitlines()[-1])
        emit({"part": "assign-rss", "n": n, "k": args.k, "file_gb": round(os.path.getsize(path) / 1e9, 2), **rec})
        out.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["silhouette", "semdedup", "semdedup-real", "kmeans", "tsne", "assign-rss"])
    ap.add_argument("--pool", type=int, default=1_000_000, help="synthetic pool size")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--metrics", nargs="*", default=["cosine", "euclidean"])
    ap.add_argument("--eps-sets", type=lambda s: [float(v) for v in s.split(",")], nargs="*",
                    default=[[0.01], [0.001, 0.005, 0.01, 0.02, 0.05, 0.1]])
    ap.add_argument("--real-ks", type=int, nargs="*", default=[100])
    ap.add_argument("--sk-iters", type=int, default=10)
    ap.add_argument("--ours", type=lambda s: tuple(int(v) for v in s.split(",")), nargs="*", default=[(20, 256000)],
                    help="niter,train_size pairs for fastcurate")
    ap.add_argument("--sk-sizes", type=int, nargs="*", default=[5000, 10000, 20000])
    ap.add_argument("--ot-sizes", type=int, nargs="*", default=[5000, 10000, 20000, 100000])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    args = ap.parse_args()
    defaults = {"silhouette": (50_000, 100), "semdedup": (1_000_000, 1000), "kmeans": (1_000_000, 1000),
                "assign-rss": (None, 1000), "semdedup-real": (None, None), "tsne": (None, None)}[args.part]
    args.n = args.n or defaults[0]
    args.k = args.k or defaults[1]
    emit({"bench": args.part, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
          "isa": _core.dense_isa(), "args": {k: v for k, v in vars(args).items()}})
    {"silhouette": bench_silhouette, "semdedup": bench_semdedup, "semdedup-real": bench_semdedup_real,
     "kmeans": bench_kmeans, "tsne": bench_tsne, "assign-rss": bench_assign_rss}[args.part](args)
    emit({"done": args.part, "peak_rss_mb": round(peak_rss_mb(), 1)})


if __name__ == "__main__":
    main()
