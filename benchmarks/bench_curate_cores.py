"""How `curate` and its baselines scale with cores: each run pinned (``taskset``) to the first 1, 2,
... N cores, with ``threads`` = that count, alternating. Reports wall time, CPU time (user +
system, from the child's rusage) and the speed-up over one core. The read floor decodes one column
on one thread, so it does not scale; curate's two passes do (by rows in the scan, by shard in the
per-shard pass): what a target set as a ratio to the floor needs in cores follows from this.

    python benchmarks/bench_curate_cores.py --captions spliced    # 10M rows, ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_curate as bc  # noqa: E402

MODES = (("floor", "pyarrow read of TEXT (floor)"), ("fastcurate_index", "fastcurate --output index"),
         ("fastcurate", "fastcurate --output rows"), ("twopass_io", "pyarrow two-pass I/O"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bc.add_pool_args(ap, captions="spliced")
    ap.add_argument("--max-cores", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    if shutil.which("taskset") is None:
        print("taskset (util-linux) is needed to pin the runs", file=sys.stderr)
        return 2
    t = bc.default_t(args.rows)
    files = bc.pool_files(args)
    core_counts = list(range(1, args.max_cores + 1))
    load0 = os.getloadavg()
    res: dict = {}
    for rep in range(args.reps):
        for cores in core_counts:
            for mode, _ in MODES:  # the two-pass I/O keeps the share of rows that rows mode just kept
                arg = res[("fastcurate", cores)][-1]["kept"] / args.rows if mode == "twopass_io" else t
                r = bc.run_child(mode, files, bc.CACHE / "runs" / f"cores_{mode}", arg, cores,
                                 prefix=("taskset", "-c", f"0-{cores - 1}"))
                res.setdefault((mode, cores), []).append(r)
            print(f"  rep {rep + 1}, {cores} core(s): " + "  ".join(
                f"{m} {res[(m, cores)][-1]['wall_s']:.2f}s" for m, _ in MODES), file=sys.stderr)
    kept = {r["kept"] for (m, _), v in res.items() if m.startswith("fastcurate") for r in v}
    assert len(kept) == 1, f"runs on different core counts kept different rows: {kept}"
    load1 = os.getloadavg()
    print(f"\n## curate by cores: {args.rows:,} rows ({args.captions} captions); medians of {args.reps} alternating "
          f"runs\nload average start {load0[0]:.2f}, end {load1[0]:.2f}; kept {kept.pop():,} rows on every core count\n")
    print("| run | cores | wall (s) | CPU (s) | cores busy | speed-up over 1 core | vs floor on 1 core |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    floor1 = statistics.median(r["wall_s"] for r in res[("floor", 1)])
    for mode, label in MODES:
        one = statistics.median(r["wall_s"] for r in res[(mode, 1)])
        for cores in core_counts:
            w = statistics.median(r["wall_s"] for r in res[(mode, cores)])
            c = statistics.median(r["cpu_s"] for r in res[(mode, cores)])
            print(f"| {label} | {cores} | {w:.2f} | {c:.2f} | {c / w:.2f} | {one / w:.2f}x | {w / floor1:.2f}x |")
    print()
    for cores in core_counts:
        def med(m: str) -> float:
            return statistics.median(r["wall_s"] for r in res[(m, cores)])
        print(f"{cores} core(s): index {med('fastcurate_index') / med('floor'):.2f}x the floor, rows "
              f"{med('fastcurate') / med('twopass_io'):.2f}x pyarrow's two-pass I/O")
    return 0


if __name__ == "__main__":
    sys.exit(main())
