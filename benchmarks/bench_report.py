"""How long `fastcurate report` takes and how much it weighs on a 10M-row run.

The run is synthetic (tests/report_fixtures.py: every stage's file layout, 10M rows through 8
stages, the images paths to the real photos in ../shared/data/images); the report reads it as it
would a real one: stats, the stages' small files, sampled drops, the rows behind the sampled uids
(their row groups only), the clip_score column of every kept row. Targets: <= 10 s, <= 20 MB.

    PYTHONPATH=python python benchmarks/bench_report.py [--rows 10000000] [--dir /tmp/fc-report-10M] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=20)
    ap.add_argument("--dir", default="/tmp/fc-report-10M")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from report_fixtures import make_run

    from fastcurate.report import build_report

    root = Path(a.dir)
    if not (root / "pipeline.json").is_file():
        t0 = time.perf_counter()
        make_run(root, a.rows, a.shards, k=1000, tsne_max=200_000)
        print(f"made the synthetic run in {time.perf_counter() - t0:.0f} s")
    import json

    first = json.loads((root / "01-curate" / "stats.json").read_text())
    assert first["rows_in"] == a.rows, first["rows_in"]
    times, cpus, sizes = [], [], []
    for i in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = build_report(root, root / f"report-{i}.html", progress=False)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)  # CPU seconds: what a busy shared machine does not inflate
        sizes.append(out.stat().st_size)
        html = out.read_text()
        # the answer: every section is there, and the funnel's first number is the run's
        for must in (f"{a.rows:,}", "The long tail", "CLIP score", "t-SNE map", "Clusters with their judgment",
                     "Duplicate groups", "Instructions", "Timings and throughput", "Dropped rows, by reason"):
            assert must in html, must
        assert 'src="http' not in html and "<link rel=\"stylesheet\"" not in html
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    on_disk = sum(f.stat().st_size for f in root.rglob("*.parquet")) / 1e9
    print(f"rows {a.rows:,} in {a.shards} shards x 8 stages ({on_disk:.2f} GB of Parquet); load {os.getloadavg()}")
    print(f"report build: median {statistics.median(times):.2f} s wall (runs {', '.join(f'{t:.2f}' for t in times)}), "
          f"median {statistics.median(cpus):.2f} s CPU (runs {', '.join(f'{t:.2f}' for t in cpus)}), "
          f"size {statistics.median(sizes) / 1e6:.2f} MB, peak RSS {rss:.0f} MB")
    print(f"targets: <= 10 s wall: {'met' if statistics.median(times) <= 10 else 'NOT met'} "
          f"(CPU {'<=' if statistics.median(cpus) <= 10 else '>'} 10 s); <= 20 MB: "
          f"{'met' if max(sizes) <= 20e6 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
