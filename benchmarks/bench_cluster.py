"""Clustering benchmarks: k-means, exact silhouette, t-SNE, SemDeDup, streaming assignment memory.

Every part runs fastcurate and its peer side by side in one process on the same input,
alternating them (A B A B ...), checks that they agree (a mismatch fails the run), and reports
medians and ratios with the load average, because the machine is shared.

    python benchmarks/bench_cluster.py silhouette   # 50k x 512, k=100: vs sklearn.metrics.silhouette_score
    python benchmarks/bench_cluster.py semdedup     # 1M x 512 fp16, k=1000: vs the paper's torch loop
    python benchmarks/bench_cluster.py semdedup-real  # share removed per eps, real MiniLM caption embeddings
    python benchmarks/bench_cluster.py semdedup-reuse # the semdedup stage after cluster: own k-means vs --clusters input
    python benchmarks/bench_cluster.py kmeans       # 1M x 512 fp16, k=1000: vs sklearn.cluster.KMeans
    python benchmarks/bench_cluster.py tsne         # openTSNE vs sklearn.manifold.TSNE
    python benchmarks/bench_cluster.py assign-rss   # peak RSS of streaming assignment, 1M and 10M rows
    python benchmarks/bench_cluster.py cli-rss      # peak RSS of the `fastcurate cluster` stage, 1M and 10M rows

Inputs (benchmarks/_emb_pool.py): synthetic float16 unit rows (topics + near duplicates, said so
in every result) and the real MiniLM embeddings of the ~26k real captions of ../shared/data.
Results are printed as JSON lines; benchmarks/RESULTS.md records them.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
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

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("fastcurate") is None:  # a checkout run without installing the package
    sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import fastcurate  # noqa: E402
from _emb_pool import CACHE, real_caption_embeddings, synthetic_pool  # noqa: E402

from fastcurate import _core  # noqa: E402
from fastcurate.kernels.kmeans import KMeans  # noqa: E402
from fastcurate.kernels.semdedup import keep_order, semdedup  # noqa: E402
from fastcurate.kernels.silhouette import silhouette  # noqa: E402

# Child processes import the same fastcurate as this process (installed or checkout), never the
# checkout's python/ by assumption (an installed run would otherwise import a _core-less tree).
FASTCURATE_PATH = str(Path(fastcurate.__file__).resolve().parents[1])


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
        csk, cfc = (statistics.median(alternate.cpu[k]) for k in ("sklearn", "fastcurate"))  # type: ignore[attr-defined]
        emit({"part": "silhouette", "metric": metric, "sklearn_s": round(sk, 3), "fastcurate_s": round(fc, 4),
              "speedup": round(sk / fc, 1), "sklearn_cpu_s": round(csk, 2), "fastcurate_cpu_s": round(cfc, 3),
              "cpu_speedup": round(csk / cfc, 1), "score": ans["fastcurate"], "sklearn_score": ans["sklearn"],
              "abs_diff": diff})
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
    """fastcurate (faiss, sampled fit) against sklearn.cluster.KMeans (Lloyd, k-means++, all rows).

    A full sklearn run on 1M x 512 with k = 1000 takes hours on this shared 2-core machine, so:
      1. fastcurate at full scale, measured: fit + assignment of every row; inertia over all rows.
      2. sklearn's time per Lloyd iteration at full scale, measured (2 iterations from the same
         random rows as initial centroids).
      3. iterations-to-inertia on a problem of the same shape at 1/4 scale (250k rows, k = 250:
         1000 rows per cluster, d = 512): sklearn from k-means++ for up to `--sk-iters-small`
         iterations, its inertia after every iteration, against fastcurate's inertia on the same
         rows with the same settings scaled (train_size = 256 k, niter = 20).
      4. sklearn's estimated time to reach fastcurate's inertia at full scale: its k-means++ seeding
         (measured at 1/4 scale, times 16: it costs k * n * d) + the iterations found in 3 times the
         per-iteration time of 2.
    """
    path = synthetic_pool(args.pool)
    x16 = np.asarray(np.load(path, mmap_mode="r")[: args.n])
    k = args.k
    emit({"part": "kmeans", "n": len(x16), "k": k, "input": "synthetic float16 unit rows; Euclidean k-means (sklearn's objective)"})

    def ours(x: np.ndarray, kk: int, niter: int) -> Dict[str, Any]:
        c, t = cpu_seconds(), time.perf_counter()
        km = KMeans(kk, metric="euclidean", niter=niter, seed=0).fit(x)
        fit_s = time.perf_counter() - t
        a = km.assign(x)
        rec = {"seconds": time.perf_counter() - t, "cpu_s": cpu_seconds() - c, "fit_s": fit_s,
               "train_size": len(km.train_rows_), "niter": niter, "reseeded": km.n_reseeded_}
        rec["inertia"] = km.inertia(x)  # not timed: exact float64 sum over all rows
        rec["empty_clusters"] = int((np.bincount(a.labels, minlength=kk) == 0).sum())
        return rec

    steps = set(args.kmeans_steps.split(","))
    # 1. fastcurate, full scale
    if "full" in steps:
        full = ours(x16, k, args.niter)
        emit({"part": "kmeans-fastcurate", "scale": "full", **{kk: (round(v, 4) if isinstance(v, float) else v) for kk, v in full.items()}})
    if "per-iter" in steps:
        per_iter, per_iter_cpu = _sk_per_iter(x16, k)
    if "small" not in steps:
        return
    _kmeans_small(args, x16, k, ours, **({"full": full, "per_iter": per_iter, "per_iter_cpu": per_iter_cpu}
                                          if {"full", "per-iter"} <= steps else {}))


def _sk_per_iter(x16: np.ndarray, k: int) -> Tuple[float, float]:
    from sklearn.cluster import KMeans as SkKMeans

    # 2. sklearn per iteration, full scale
    x32 = x16.astype(np.float32)
    init = x32[np.random.default_rng(0).choice(len(x32), k, replace=False)]
    c, t = cpu_seconds(), time.perf_counter()
    m = SkKMeans(k, init=init, n_init=1, max_iter=2, tol=0.0, algorithm="lloyd").fit(x32)
    per_iter = (time.perf_counter() - t) / max(1, m.n_iter_)
    per_iter_cpu = (cpu_seconds() - c) / max(1, m.n_iter_)
    emit({"part": "kmeans-sklearn-per-iter", "scale": "full", "iterations": int(m.n_iter_),
          "seconds_per_iter": round(per_iter, 2), "cpu_s_per_iter": round(per_iter_cpu, 2)})
    del x32
    return per_iter, per_iter_cpu


def _kmeans_small(args: argparse.Namespace, x16: np.ndarray, k: int, ours: Callable[..., Dict[str, Any]],
                  full: Any = None, per_iter: float = 0.0, per_iter_cpu: float = 0.0) -> None:
    import contextlib
    import io

    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.cluster import kmeans_plusplus

    # 3. iterations-to-inertia at 1/4 scale
    ns, ks = len(x16) // 4, k // 4
    xs16 = x16[:ns]
    xs32 = xs16.astype(np.float32)
    small = ours(xs16, ks, args.niter)
    c, t = cpu_seconds(), time.perf_counter()
    centers, _ = kmeans_plusplus(xs32, ks, random_state=0)
    init_s, init_cpu = time.perf_counter() - t, cpu_seconds() - c
    buf = io.StringIO()
    c, t = cpu_seconds(), time.perf_counter()
    with contextlib.redirect_stdout(buf):
        sk = SkKMeans(ks, init=centers, n_init=1, max_iter=args.sk_iters_small, tol=0.0, algorithm="lloyd",
                      verbose=1).fit(xs32)
    lloyd_s, lloyd_cpu = time.perf_counter() - t, cpu_seconds() - c
    curve = [float(line.split("inertia")[1].strip(" .")) for line in buf.getvalue().splitlines() if line.startswith("Iteration")]
    final = float(sk.inertia_)
    reach = next((i + 1 for i, v in enumerate(curve) if v <= small["inertia"]), None)
    emit({"part": "kmeans-small", "n": ns, "k": ks, "fastcurate": small, "sklearn_kpp_init_s": round(init_s, 1),
          "sklearn_kpp_init_cpu_s": round(init_cpu, 1), "sklearn_lloyd_s": round(lloyd_s, 1),
          "sklearn_lloyd_cpu_s": round(lloyd_cpu, 1), "sklearn_iters": len(curve), "sklearn_final_inertia": final,
          "sklearn_inertia_curve": curve, "sklearn_iters_to_reach_fastcurate": reach,
          "fastcurate_vs_sklearn_final": round(small["inertia"] / final, 5)})

    # 4. estimate at full scale (when this run measured steps 1 and 2 as well)
    if full is None:
        return
    if reach is not None:
        est = 16 * init_s + reach * per_iter
        est_cpu = 16 * init_cpu + reach * per_iter_cpu
        emit({"part": "kmeans-estimate", "sklearn_estimated_s": round(est, 1), "sklearn_estimated_cpu_s": round(est_cpu, 1),
              "fastcurate_s": round(full["seconds"], 1), "fastcurate_cpu_s": round(full["cpu_s"], 1),
              "speedup": round(est / full["seconds"], 1), "cpu_speedup": round(est_cpu / full["cpu_s"], 1),
              "sklearn_lloyd_only_speedup": round(reach * per_iter / full["seconds"], 1)})
    else:
        emit({"part": "kmeans-estimate", "note": f"sklearn did not reach fastcurate's inertia in {len(curve)} iterations"})


# ---------------------------------------------------------------------------------------------------
def bench_tsne(args: argparse.Namespace) -> None:
    """openTSNE (what fastcurate's tsne runs) against sklearn.manifold.TSNE (Barnes-Hut) on the same
    PCA-50 input, both with their default schedules (250 exaggerated + 500 iterations -- sklearn's
    max_iter default is 1000, so both are set to 750 in total), side by side at the sizes where
    sklearn finishes in minutes; openTSNE alone at the larger sizes. sklearn's time at those sizes
    is an estimate, stated with its method (``tsne-estimate``): the measured time at the largest
    sklearn size scaled by n log n (Barnes-Hut's per-iteration cost; its exact neighbour search is
    worse than that, so this is a low estimate of sklearn's time), and a power law fitted to every
    measured sklearn size."""
    from sklearn.manifold import TSNE

    import openTSNE

    from fastcurate.kernels.tsne import pca_project

    x16 = np.load(synthetic_pool(args.pool), mmap_mode="r")
    nmax = max(max(args.sk_sizes), max(args.ot_sizes))
    x = np.asarray(x16[:nmax], dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    p = pca_project(x, 50).astype(np.float32)
    emit({"part": "tsne", "input": "synthetic unit rows -> PCA 50 (the same for both)", "perplexity": 30,
          "iterations": "250 early exaggeration (12) + 500"})

    def ours(n: int) -> float:
        e = openTSNE.TSNE(n_jobs=-1, random_state=0, negative_gradient_method="fft").fit(p[:n])
        return float(e.kl_divergence)

    def sk(n: int) -> float:
        m = TSNE(n_components=2, perplexity=30, init="pca", random_state=0, method="barnes_hut", n_jobs=-1,
                 max_iter=750)
        m.fit(p[:n])
        return float(m.kl_divergence_)

    measured: Dict[int, Tuple[float, float]] = {}
    ot_at: Dict[int, Tuple[float, float, float]] = {}
    for n in sorted(set(args.sk_sizes) | set(args.ot_sizes)):
        engines: Dict[str, Callable[[], Any]] = {}
        if n in args.sk_sizes:
            engines["sklearn"] = lambda n=n: sk(n)
        if n in args.ot_sizes:
            engines["openTSNE"] = lambda n=n: ours(n)
        rounds = args.rounds if len(engines) > 1 and n <= args.tsne_one_round_above else 1
        times, ans = alternate(engines, rounds)
        rec: Dict[str, Any] = {"part": "tsne", "n": n, "rounds": rounds}
        for k in engines:
            rec[f"{k}_s"] = round(statistics.median(times[k]), 1)
            rec[f"{k}_cpu_s"] = round(statistics.median(alternate.cpu[k]), 1)  # type: ignore[attr-defined]
            rec[f"{k}_kl"] = round(ans[k], 4)
        if "sklearn" in engines:
            measured[n] = (rec["sklearn_s"], rec["sklearn_cpu_s"])
        if "openTSNE" in engines:
            ot_at[n] = (rec["openTSNE_s"], rec["openTSNE_cpu_s"], rec["openTSNE_kl"])
        if len(engines) == 2:
            rec["speedup"] = round(rec["sklearn_s"] / rec["openTSNE_s"], 2)
            rec["cpu_speedup"] = round(rec["sklearn_cpu_s"] / rec["openTSNE_cpu_s"], 2)
        emit(rec)
    if not measured:
        return
    ns = sorted(measured)
    big = ns[-1]
    expo = cpu_expo = None
    if len(ns) >= 2:
        expo = float(np.polyfit(np.log(ns), np.log([measured[n][0] for n in ns]), 1)[0])
        cpu_expo = float(np.polyfit(np.log(ns), np.log([measured[n][1] for n in ns]), 1)[0])
    for n in sorted(ot_at):
        if n in measured:
            continue
        scale = n * math.log(n) / (big * math.log(big))
        est, est_cpu = measured[big][0] * scale, measured[big][1] * scale
        rec = {"part": "tsne-estimate", "n": n, "from_n": big, "openTSNE_s": ot_at[n][0], "openTSNE_cpu_s": ot_at[n][1],
               "openTSNE_kl": ot_at[n][2], "sklearn_est_nlogn_s": round(est, 1), "sklearn_est_nlogn_cpu_s": round(est_cpu, 1),
               "speedup_nlogn": round(est / ot_at[n][0], 2), "cpu_speedup_nlogn": round(est_cpu / ot_at[n][1], 2)}
        if expo is not None and cpu_expo is not None:
            fit, fit_cpu = measured[big][0] * (n / big) ** expo, measured[big][1] * (n / big) ** cpu_expo
            rec.update({"fitted_exponent": round(expo, 3), "fitted_cpu_exponent": round(cpu_expo, 3),
                        "sklearn_est_fit_s": round(fit, 1), "sklearn_est_fit_cpu_s": round(fit_cpu, 1),
                        "speedup_fit": round(fit / ot_at[n][0], 2), "cpu_speedup_fit": round(fit_cpu / ot_at[n][1], 2)})
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
    py = FASTCURATE_PATH
    for n in args.sizes:
        tiled = args.tile and n != args.pool
        path = (tiled_pool(src, n) if tiled else synthetic_pool(n)) if n != args.pool else src
        out = CACHE / f"assign_{n}.bin"
        code = ASSIGN_CHILD.format(py=py, path=str(path), cent=str(cent), tmp=str(CACHE), out=str(out))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        rec = json.loads(r.stdout.strip().splitlines()[-1])
        emit({"part": "assign-rss", "n": n, "k": args.k, "file_gb": round(os.path.getsize(path) / 1e9, 2),
              "input": f"the {args.pool:,}-row synthetic pool repeated" if tiled else "synthetic pool", **rec})
        out.unlink()
        if tiled and not args.keep:
            path.unlink()


def tiled_pool(src: Path, n: int) -> Path:
    """An (n, d) float16 .npy made of the rows of `src` repeated (a copy, written chunk by chunk).
    Memory use does not depend on the values; generating 10M fresh synthetic rows takes most of
    an hour on the shared 2-core machine, copying takes a minute."""
    x = np.load(src, mmap_mode="r")
    path = CACHE / f"tiled_{n}x{x.shape[1]}_from_{len(x)}.npy"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=x.dtype, shape=(n, x.shape[1]))
    s = 0
    while s < n:
        a = s % len(x)
        m = min(200_000, n - s, len(x) - a)
        out[s : s + m] = x[a : a + m]
        s += m
    out.flush()
    del out
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------------
def parquet_pool(n: int, d: int, shard_rows: int, seed: int = 0) -> Path:
    """A synthetic `fastcurate embed`-shaped Parquet pool: uid, caption and image_emb (fixed-size
    list of float16 unit rows around 4,096 topics), in shards of `shard_rows` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = CACHE / f"cli_pool_{n}x{d}_s{seed}"
    if (out / "_done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    topics = np.random.default_rng(seed).standard_normal((4096, d)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    for si, s in enumerate(range(0, n, shard_rows)):
        m = min(shard_rows, n - s)
        r = np.random.default_rng([seed, s])
        x = topics[r.integers(0, 4096, m)] + 0.8 * r.standard_normal((m, d), dtype=np.float32) / np.sqrt(d, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        emb = pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float16).reshape(-1), pa.float16()), d)
        ids = np.arange(s, s + m).astype(str)
        t = pa.table({"uid": pa.array(np.char.add("u", ids)), "caption": pa.array(np.char.add("synthetic caption ", ids)),
                      "image_emb": emb})
        pq.write_table(t, out / f"part-{si:05d}.parquet")
    (out / "_done").write_text("")
    return out


def _tree_mem(root: int) -> Dict[str, int]:
    """kB of RssAnon / RssFile / VmHWM summed over `root` and its descendants."""
    kids: Dict[int, List[int]] = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(e))
            except (OSError, IndexError, ValueError):
                pass
    tot = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0, "procs": 0}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    key = line.split(":", 1)[0]
                    if key in tot:
                        tot[key] += int(line.split()[1])
            tot["procs"] += 1
        except OSError:
            pass
    return tot


def bench_cli_rss(args: argparse.Namespace) -> None:
    """Peak memory of the whole `fastcurate cluster` stage (scan, k-means, assignment, ranks,
    extremes, silhouette, t-SNE map, per-shard outputs) on synthetic Parquet pools, run as a child
    process whose /proc status (and its descendants') is sampled every 0.1 s. VmHWM counts the
    resident pages of memory-mapped files too (the stage reads its float16 work files through
    np.load(mmap_mode="r")), so RssAnon -- the process's own heap -- is reported as well."""
    import shutil

    for n in args.cli_sizes:
        t = time.perf_counter()
        pool = parquet_pool(n, args.cli_d, args.cli_shard_rows)
        gen_s = time.perf_counter() - t
        pool_gb = sum(f.stat().st_size for f in pool.glob("*.parquet")) / 1e9
        out = CACHE / f"cli_out_{n}"
        shutil.rmtree(out, ignore_errors=True)
        code = f"import sys; sys.path.insert(0, {FASTCURATE_PATH!r}); from fastcurate.cli import main; sys.exit(main())"
        cmd = [sys.executable, "-c", code, "cluster", str(pool), "--out", str(out), "--k", str(args.k),
               "--no-progress"] + (["--threads", str(args.cli_threads)] if args.cli_threads else [])
        c0 = os.times()
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        peak = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0, "RssAnonPlusFile": 0, "procs": 0}
        while proc.poll() is None:
            m = _tree_mem(proc.pid)
            for key in ("RssAnon", "RssFile", "VmHWM", "procs"):
                peak[key] = max(peak[key], m[key])
            peak["RssAnonPlusFile"] = max(peak["RssAnonPlusFile"], m["RssAnon"] + m["RssFile"])
            time.sleep(0.1)
        wall = time.perf_counter() - t
        c1 = os.times()
        log = proc.stdout.read() if proc.stdout else ""
        if proc.returncode != 0:
            raise SystemExit(f"fastcurate cluster failed ({proc.returncode}):\n{log[-3000:]}")
        out_gb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e9
        emit({"part": "cli-rss", "n": n, "d": args.cli_d, "k": args.k, "shard_rows": args.cli_shard_rows,
              "input": "synthetic Parquet pool (uid, caption, image_emb float16 unit rows)",
              "pool_gb": round(pool_gb, 2), "out_gb": round(out_gb, 2), "generate_s": round(gen_s, 1),
              "stage_s": round(wall, 1), "stage_cpu_s": round((c1.children_user + c1.children_system)
                                                               - (c0.children_user + c0.children_system), 1),
              "peak_rss_anon_mb": round(peak["RssAnon"] / 1024, 1), "peak_rss_file_mb": round(peak["RssFile"] / 1024, 1),
              "peak_vmhwm_mb": round(peak["VmHWM"] / 1024, 1),
              "peak_rss_anon_plus_file_mb": round(peak["RssAnonPlusFile"] / 1024, 1), "max_procs": peak["procs"],
              "summary": [line for line in log.splitlines() if "k=" in line][-1:]})
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(pool, ignore_errors=True)


def bench_semdedup_reuse(args: argparse.Namespace) -> None:
    """The `semdedup` stage after `cluster`: its own k-means (--clusters kmeans) vs the cluster
    step's assignment (--clusters input), alternating, on a synthetic Parquet pool of --n rows.
    Checked: input mode's drops equal a run without the cluster step's centroids.npy (the tile
    pruning is exact), and every drop's twin cosine is above 1 - eps."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fastcurate.runner.local import run_stage
    from fastcurate.stages.cluster.stage import ClusterStage
    from fastcurate.stages.semdedup.stage import SemDedupStage

    pool = parquet_pool(args.n, args.cli_d, args.cli_shard_rows)
    work = CACHE / f"semdedup_reuse_{args.n}"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    run_stage(ClusterStage(k=args.k, seed=0), [pool], work / "cluster", progress=False)
    emit({"step": "cluster stage (once)", "seconds": round(time.perf_counter() - t0, 2)})
    eps = args.eps_sets[0][0]

    def run(mode: str, src: Path, out: Path) -> Dict[str, Any]:
        shutil.rmtree(out, ignore_errors=True)
        return run_stage(SemDedupStage(eps=eps, k=args.k, clusters=mode), [src], out, progress=False)

    times, ans = alternate({"own k-means": lambda: run("kmeans", work / "cluster", work / "sd_kmeans"),
                            "cluster step's assignment": lambda: run("input", work / "cluster", work / "sd_input")},
                           args.rounds)
    bare = work / "bare"
    bare.mkdir()
    for f in (work / "cluster").glob("part-*.parquet"):
        os.link(f, bare / f.name)
    run("input", bare, work / "sd_nocent")  # its drops are compared below

    def drops(out: Path) -> Dict[str, str]:
        t = pa.concat_tables([pq.read_table(f) for f in sorted((out / "drops").glob("*.parquet"))])
        return dict(zip(t.column("uid").to_pylist(), t.column("detail").to_pylist()))

    d_in, d_nc = drops(work / "sd_input"), drops(work / "sd_nocent")
    assert d_in == d_nc, "pruning with the cluster step's centroids changed the decisions"
    assert all(float(v.split(" cos=")[1]) >= 1 - eps - 5e-5 for v in d_in.values())  # the detail rounds to 4 places
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in alternate.cpu.items()}  # type: ignore[attr-defined]
    emit({"rows": args.n, "k": args.k, "eps": eps, "median_s": med, "median_cpu_s": cpu,
          "speedup_wall": round(med["own k-means"] / med["cluster step's assignment"], 2),
          "speedup_cpu": round(cpu["own k-means"] / cpu["cluster step's assignment"], 2),
          "removed": {k: v["semdedup"]["removed"] for k, v in ans.items()},
          "tiles_skipped": ans["cluster step's assignment"]["semdedup"]["tiles_skipped"],
          "tiles_total": ans["cluster step's assignment"]["semdedup"]["tiles_total"],
          "no_centroids_same_decisions": True})
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["silhouette", "semdedup", "semdedup-real", "semdedup-reuse", "kmeans", "tsne", "assign-rss",
                                     "cli-rss"])
    ap.add_argument("--pool", type=int, default=1_000_000, help="synthetic pool size")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--metrics", nargs="*", default=["cosine", "euclidean"])
    ap.add_argument("--eps-sets", type=lambda s: [float(v) for v in s.split(",")], nargs="*",
                    default=[[0.01], [0.001, 0.005, 0.01, 0.02, 0.05, 0.1]])
    ap.add_argument("--real-ks", type=int, nargs="*", default=[100])
    ap.add_argument("--niter", type=int, default=20, help="fastcurate k-means iterations")
    ap.add_argument("--sk-iters-small", type=int, default=60, help="sklearn iterations at 1/4 scale")
    ap.add_argument("--kmeans-steps", default="full,per-iter,small",
                    help="k-means: which steps to run (full: fastcurate at full scale; per-iter: sklearn's time per "
                         "iteration at full scale; small: iterations-to-inertia at 1/4 scale); the estimate needs all")
    ap.add_argument("--sk-sizes", type=int, nargs="*", default=[5000, 10000, 20000])
    ap.add_argument("--ot-sizes", type=int, nargs="*", default=[5000, 10000, 20000, 100000])
    ap.add_argument("--tsne-one-round-above", type=int, default=10_000,
                    help="t-SNE sizes above this run once (sklearn takes minutes a run)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    ap.add_argument("--cli-sizes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    ap.add_argument("--cli-d", type=int, default=64, help="embedding width of the cli-rss Parquet pools")
    ap.add_argument("--cli-shard-rows", type=int, default=250_000)
    ap.add_argument("--cli-threads", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="cli-rss / assign-rss: keep the synthetic pools and outputs")
    ap.add_argument("--tile", action="store_true",
                    help="assign-rss: build pools larger than --pool by repeating its rows instead of generating them")
    args = ap.parse_args()
    defaults = {"silhouette": (50_000, 100), "semdedup": (1_000_000, 1000), "kmeans": (1_000_000, 1000),
                "assign-rss": (None, 1000), "cli-rss": (None, 1000), "semdedup-real": (None, None), "tsne": (None, None),
                "semdedup-reuse": (1_000_000, 1000)}[args.part]
    args.n = args.n or defaults[0]
    args.k = args.k or defaults[1]
    emit({"bench": args.part, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
          "isa": _core.dense_isa(), "args": {k: v for k, v in vars(args).items()}})
    {"silhouette": bench_silhouette, "semdedup": bench_semdedup, "semdedup-real": bench_semdedup_real,
     "kmeans": bench_kmeans, "tsne": bench_tsne, "assign-rss": bench_assign_rss, "cli-rss": bench_cli_rss,
     "semdedup-reuse": bench_semdedup_reuse}[args.part](args)
    emit({"done": args.part, "peak_rss_mb": round(peak_rss_mb(), 1)})


if __name__ == "__main__":
    main()
