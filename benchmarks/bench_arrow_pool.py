"""Which allocator Arrow's buffers should come from during `curate`: mimalloc (pyarrow's default) vs
jemalloc (fastcurate's runner switches to it: fastcurate/io/memory_pool.py).

Every run is bench_curate.py's own child (a fresh process), with ``ARROW_DEFAULT_MEMORY_POOL``
naming the pool for pyarrow and for fastcurate alike, so the baselines get the same allocator as
fastcurate. Alternating: for each repetition, each pool runs the I/O floor, pyarrow's two-pass I/O,
and fastcurate in index and rows mode. Checked: both pools keep the same rows.

    python benchmarks/bench_arrow_pool.py --captions spliced     # 10M rows, ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_curate as bc  # noqa: E402

POOLS = ("mimalloc", "jemalloc")
MODES = (("floor", "pyarrow read of TEXT (floor)"), ("twopass_io", "pyarrow two-pass I/O"),
         ("fastcurate_index", "fastcurate --output index"), ("fastcurate", "fastcurate --output rows"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bc.add_pool_args(ap, captions="spliced")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    from fastcurate.io.memory_pool import jemalloc_pool

    if jemalloc_pool() is None:
        print("this pyarrow has no jemalloc: nothing to compare", file=sys.stderr)
        return 2
    t = bc.default_t(args.rows)
    files = bc.pool_files(args)
    load0 = os.getloadavg()
    res: dict = {}
    # the two-pass I/O keeps the share of rows curate keeps: from one untimed warm-up run
    warm = bc.run_child("fastcurate", files, bc.CACHE / "runs" / "pool_fastcurate", t, args.threads)
    keep_frac = warm["kept"] / warm["rows"]
    saved = os.environ.get("ARROW_DEFAULT_MEMORY_POOL")
    try:
        for rep in range(args.reps):
            for pool in POOLS:
                os.environ["ARROW_DEFAULT_MEMORY_POOL"] = pool  # run_child passes the environment on
                for mode, _ in MODES:
                    r = bc.run_child(mode, files, bc.CACHE / "runs" / f"pool_{mode}",
                                     keep_frac if mode == "twopass_io" else t, args.threads)
                    res.setdefault((pool, mode), []).append(r)
                print(f"  rep {rep + 1} {pool}: " + "  ".join(f"{m} {res[(pool, m)][-1]['wall_s']:.2f}s"
                                                          for m, _ in MODES), file=sys.stderr)
    finally:
        if saved is None:
            os.environ.pop("ARROW_DEFAULT_MEMORY_POOL", None)
        else:
            os.environ["ARROW_DEFAULT_MEMORY_POOL"] = saved
    kept = {warm["kept"]} | {r["kept"] for p in POOLS for m in ("fastcurate", "fastcurate_index") for r in res[(p, m)]}
    assert len(kept) == 1, f"the pools kept different rows: {kept}"
    med = {k: statistics.median(r["wall_s"] for r in v) for k, v in res.items()}
    rss = {k: max(r["peak_rss_mb"] for r in v) for k, v in res.items()}
    load1 = os.getloadavg()
    print(f"\n## Arrow memory pool: {args.rows:,} rows ({args.captions} captions), {args.threads} threads; medians of "
          f"{args.reps} alternating runs\nload average start {load0[0]:.2f}, end {load1[0]:.2f}; kept {kept.pop():,} rows "
          "under both pools\n")
    print("| run | mimalloc (s) | jemalloc (s) | jemalloc speed-up | peak RSS mimalloc / jemalloc (MB) |")
    print("|---|---:|---:|---:|---:|")
    for mode, label in MODES:
        a, b = med[("mimalloc", mode)], med[("jemalloc", mode)]
        print(f"| {label} | {a:.2f} | {b:.2f} | {a / b:.3f}x | {rss[('mimalloc', mode)]:.0f} / {rss[('jemalloc', mode)]:.0f} |")
    for pool in POOLS:
        print(f"\n{pool}: index {med[(pool, 'fastcurate_index')] / med[(pool, 'floor')]:.2f}x the floor, rows "
              f"{med[(pool, 'fastcurate')] / med[(pool, 'twopass_io')]:.2f}x pyarrow's two-pass I/O")
    return 0


if __name__ == "__main__":
    sys.exit(main())
