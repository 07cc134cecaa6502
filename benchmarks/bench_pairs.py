"""Pair enumeration + scoring within groups: the C++ kernel (fastcurate.kernels.pairs.mine_pairs)
vs a straightforward per-group numpy loop, on the same input, in one process, alternating A and B.

Input: ~1M grouped rows whose group sizes are drawn from the real ones (the 280 LAION URL-directory
groups of two or more rows in ../shared/data/captions/laion_10k.parquet, sizes 2 to 151), 512-d
float16 image and text embeddings (as `fastcurate embed` writes them), 0-4 labels per row, the
pairs stage's default cap of 10 pairs per group; every score (image-image, text-text, both cross
image-text, label Jaccard). The loop is the natural numpy code: per group, the upper-triangle
indices, the priorities, a lexsort, the cap, then row-wise dot products and a per-group one-hot
label matrix. Both must give the same pairs in the same order (checked exactly) and the same
scores (within float32 rounding).

    PYTHONPATH=python python benchmarks/bench_pairs.py [--rows 1000000] [--reps 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from fastcurate.kernels.pairs import PairScores, SCORE_NAMES, group_rows, label_csr, mine_pairs, pairs_of_group

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "captions" / "laion_10k.parquet"


def real_group_sizes() -> np.ndarray:
    """Sizes of the LAION URL-directory groups of two or more rows (host + parent path)."""
    import pyarrow.parquet as pq

    from fastcurate.stages.group.stage import url_dir

    urls = pq.read_table(DATA, columns=["URL"]).column("URL").to_pylist()
    from collections import Counter

    c = Counter(url_dir(u) for u in urls if u)
    s = np.array(sorted(v for v in c.values() if v >= 2))
    assert len(s) == 280, len(s)
    return s


def make_input(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = real_group_sizes()
    drawn = []
    total = 0
    while total < rows:
        m = int(sizes[rng.integers(0, len(sizes))])
        drawn.append(m)
        total += m
    n = total
    gid = np.repeat(np.arange(len(drawn), dtype=np.uint64), drawn)
    uh = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    order, starts = group_rows(gid * np.uint64(0x9E3779B97F4A7C15), uh)
    uh = np.ascontiguousarray(uh[order])
    img = rng.standard_normal((n, 512), dtype=np.float32).astype(np.float16)
    txt = rng.standard_normal((n, 512), dtype=np.float32).astype(np.float16)
    words = [f"label{k}" for k in range(200)]
    labs = [[words[int(k)] for k in rng.integers(0, 200, size=int(rng.integers(0, 5)))] for _ in range(n)]
    return starts, uh, img, txt, label_csr(labs), np.array(drawn)


def numpy_loop(starts, uh, img, txt, labels, seed: int, cap: int) -> PairScores:
    """The straightforward per-group numpy loop (same definition as the kernel)."""
    off, ids = labels
    out = {k: [] for k in ("query", "target", "group", "priority", *SCORE_NAMES)}
    possible = 0
    for g in range(len(starts) - 1):
        s, e = int(starts[g]), int(starts[g + 1])
        m = e - s
        if m < 2:
            continue
        possible += m * (m - 1) // 2
        q, t, prio = pairs_of_group(uh[s:e], seed, cap)
        gi = img[s:e].astype(np.float32)
        gi /= np.linalg.norm(gi, axis=1, keepdims=True)
        gt = txt[s:e].astype(np.float32)
        gt /= np.linalg.norm(gt, axis=1, keepdims=True)
        out["image_sim"].append(np.einsum("ij,ij->i", gi[q], gi[t]))
        out["text_sim"].append(np.einsum("ij,ij->i", gt[q], gt[t]))
        out["query_image_target_text"].append(np.einsum("ij,ij->i", gi[q], gt[t]))
        out["query_text_target_image"].append(np.einsum("ij,ij->i", gt[q], gi[t]))
        # labels: a one-hot matrix of the group's labels
        a, b = off[s], off[e]
        lens = np.diff(off[s:e + 1])
        uniq, inv = np.unique(ids[a:b], return_inverse=True)
        onehot = np.zeros((m, len(uniq)), bool)
        onehot[np.repeat(np.arange(m), lens), inv] = True
        inter = (onehot[q] & onehot[t]).sum(axis=1)
        union = lens[q] + lens[t] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            ov = np.where((lens[q] > 0) & (lens[t] > 0), inter / np.maximum(union, 1), np.nan).astype(np.float32)
        out["label_overlap"].append(ov)
        out["query"].append(q + s)
        out["target"].append(t + s)
        out["group"].append(np.full(len(q), g, np.int64))
        out["priority"].append(prio)
    cat = {k: np.concatenate(v) for k, v in out.items()}
    return PairScores(**cat, possible=possible)


def same(a: PairScores, b: PairScores) -> float:
    for f in ("query", "target", "group", "priority"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f"different pairs: {f}"
    worst = 0.0
    for f in SCORE_NAMES:
        x, y = getattr(a, f), getattr(b, f)
        assert np.array_equal(np.isnan(x), np.isnan(y)), f
        d = float(np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if len(x) else 0.0
        assert d < 1e-4, (f, d)
        worst = max(worst, d)
    assert a.possible == b.possible
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cap", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    starts, uh, img, txt, labels, drawn = make_input(a.rows)
    n = len(uh)
    print(f"input: {n:,} rows in {len(drawn):,} groups (sizes {drawn.min()}-{drawn.max()}, mean {drawn.mean():.2f}), "
          f"512-d float16 image + text, {len(labels[1]):,} labels; built in {time.perf_counter() - t0:.1f}s",
          flush=True)
    kw = dict(seed=7, max_pairs_per_group=a.cap)
    times = {"kernel": [], "numpy": []}
    loads = []
    res = {}
    for rep in range(a.reps):
        for name in (("kernel", "numpy") if rep % 2 == 0 else ("numpy", "kernel")):
            loads.append(os.getloadavg()[0])
            t = time.perf_counter()
            if name == "kernel":
                r = mine_pairs(starts, uh, image=img, text=txt, cross=True, labels=labels, threads=a.threads, **kw)
            else:
                r = numpy_loop(starts, uh, img, txt, labels, kw["seed"], a.cap)
            times[name].append(time.perf_counter() - t)
            res[name] = r
            print(f"rep {rep} {name:6s} {times[name][-1]:8.3f}s  load {loads[-1]:.1f}", flush=True)
        worst = same(res["kernel"], res["numpy"])
    k, p = float(np.median(times["kernel"])), float(np.median(times["numpy"]))
    pairs = len(res["kernel"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pairs: {pairs:,} scored of {res['kernel'].possible:,} possible (cap {a.cap}); same pairs and order, "
          f"max score difference {worst:.2e}")
    print(f"median: kernel {k:.3f}s ({n / k / 1e6:.2f} M rows/s), numpy loop {p:.3f}s ({n / p / 1e6:.3f} M rows/s), "
          f"ratio {p / k:.1f}x; threads {a.threads or os.cpu_count()}; load {min(loads):.1f}-{max(loads):.1f}; "
          f"peak RSS {rss:,.0f} MB (input {(img.nbytes + txt.nbytes) / 2**20:,.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
