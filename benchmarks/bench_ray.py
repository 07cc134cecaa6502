"""Benchmark: the Ray engine's overhead against the local engine, `fastcurate curate` end to end.

Pool: bench_curate.py's (real captions from ../shared/data resampled into ``--rows`` rows over
``--shards`` Parquet shards with a 128-bit hex ``uid``; cached under .bench/). Stage: the shipped
WordNet metadata, ``t`` = bench_curate's (20000 scaled to the pool, x10, so balancing bites),
seed 0, with the long-tail plot, as ``fastcurate curate`` runs by default.

One process, alternating: local engine (shards one after another, the matcher and the draw on
``--threads`` threads) and Ray engine (a local Ray started once with ``--cpus`` CPUs; one worker
per CPU, one kernel thread each; the workers are started by each run, so their start-up is in
its time). Reported: medians, the ratio ray / local, the Ray start-up (``ray.init``) apart, the
driver's peak RSS and the workers' peak summed RSS (sampled), the machine load. Checked: every
run's output files (timings.json aside) have the same SHA-256 as the first local run's.

``--probe`` adds the measurement behind the engine's design (runner/ray.py): 20 calls of 0.1 s
each as Ray Data ``map_batches`` over 20 one-row blocks, and as plain Ray calls.

    python benchmarks/bench_ray.py                 # 10M rows, 20 shards, 3 alternations, 2 CPUs
    python benchmarks/bench_ray.py --rows 2000000 --reps 2 --probe
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import shutil
import statistics
import importlib.util
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("fastcurate") is None:  # a checkout run without installing the package
    sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "benchmarks"))
CACHE = ROOT / ".bench"


def digest(out: Path) -> Dict[str, str]:
    res = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "timings.json":
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            res[str(p.relative_to(out))] = h.hexdigest()
    return res


class WorkerRSS:
    """Samples the summed RSS of the Ray worker processes (names start with ``ray::``) every 0.2 s."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in self.psutil.process_iter(["name", "cmdline"]):
                try:
                    cmd = " ".join(p.info["cmdline"] or [])
                    if (p.info["name"] or "").startswith("ray::ShardWorker") or cmd.startswith("ray::ShardWorker"):
                        total += p.memory_info().rss
                except Exception:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def run_once(engine: str, files: List[Path], out: Path, t: float, threads: int) -> Dict[str, Any]:
    from fastcurate.runner.local import run_stage
    from fastcurate.stages.curate.stage import CurateStage

    shutil.rmtree(out, ignore_errors=True)
    sampler = WorkerRSS() if engine == "ray" else None
    t0 = time.perf_counter()
    stats = run_stage(CurateStage(None, t=t, seed=0), files, out, threads=threads if engine == "local" else None,
                      progress=False, engine=engine)
    wall = time.perf_counter() - t0
    workers_rss = sampler.stop() if sampler else 0
    timings = json.loads((out / "timings.json").read_text())
    return {"engine": engine, "wall_s": wall, "rows": stats["rows_in"], "kept": stats["rows_kept"],
            "timings": timings, "workers_peak_rss_mb": workers_rss / 2**20, "digest": digest(out),
            "load": os.getloadavg()[0]}


def probe(ray: Any) -> Dict[str, float]:
    import numpy as np
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False

    def sleepy(batch: Dict[str, Any]) -> Dict[str, Any]:
        time.sleep(0.1)
        return {"index": np.asarray(batch["index"])}

    @ray.remote(num_cpus=1)
    def call(i: int) -> int:
        time.sleep(0.1)
        return i

    res: Dict[str, List[float]] = {"ray_data_map_batches_s": [], "ray_calls_s": []}
    for rep in range(3):  # the first round warms both up; medians of the other two
        t0 = time.perf_counter()
        ds = ray.data.from_items([{"index": i} for i in range(20)], override_num_blocks=20)
        n = sum(1 for _ in ds.map_batches(sleepy, batch_size=1, num_cpus=1, batch_format="numpy").iter_rows())
        assert n == 20
        if rep:
            res["ray_data_map_batches_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert sorted(ray.get([call.remote(i) for i in range(20)])) == list(range(20))
        if rep:
            res["ray_calls_s"].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in res.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3, help="alternations of local and ray")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (and threads of the local engine)")
    ap.add_argument("--probe", action="store_true", help="also time Ray Data map_batches against plain Ray calls")
    ap.add_argument("--json", default=str(CACHE / "bench_ray.json"))
    args = ap.parse_args()
    from bench_curate import SHARED, build_pool

    if not (SHARED / "captions" / "laion_10k.parquet").exists():
        print(f"real captions not found under {SHARED}", file=sys.stderr)
        return 2
    t = max(20.0, 20000.0 * args.rows / 400e6 * 10)
    print(f"building / reusing the pool: {args.rows:,} rows, {args.shards} shards", file=sys.stderr)
    files = sorted(build_pool(args.rows, args.shards, False).glob("shard-*.parquet"))
    result: Dict[str, Any] = {"rows": args.rows, "shards": args.shards, "t": t, "cpus": args.cpus,
                              "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg()}

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
    result["ray_init_s"] = time.perf_counter() - t0
    print(f"ray.init: {result['ray_init_s']:.1f} s", file=sys.stderr)

    work = CACHE / "ray_runs"
    runs: Dict[str, List[Dict[str, Any]]] = {"local": [], "ray": []}
    ref = None
    for rep in range(args.reps):
        for engine in ("local", "ray"):
            r = run_once(engine, files, work / engine, t, args.cpus)
            if ref is None:
                ref = r["digest"]
            assert r["digest"] == ref, f"{engine} run {rep + 1}: output bytes differ from the first local run"
            assert r["rows"] == args.rows
            runs[engine].append(r)
            print(f"  rep {rep + 1} {engine:5s}: {r['wall_s']:6.2f} s  (scan {r['timings'].get('scan_s', 0):.2f}, "
                  f"process {r['timings']['process_s']:.2f}; load {r['load']:.1f})", file=sys.stderr)
    for engine, rs in runs.items():
        result[f"{engine}_s"] = statistics.median(r["wall_s"] for r in rs)
        result[f"{engine}_runs_s"] = [round(r["wall_s"], 2) for r in rs]
        for phase in ("scan_s", "reduce_s", "process_s", "finalize_s"):
            result[f"{engine}_{phase}"] = statistics.median(r["timings"].get(phase, 0.0) for r in rs)
    result["ray_over_local"] = result["ray_s"] / result["local_s"]
    result["ray_plus_init_over_local"] = (result["ray_s"] + result["ray_init_s"]) / result["local_s"]
    result["kept"] = runs["local"][0]["kept"]
    result["identical_bytes"] = True
    result["output_files"] = len(ref or {})
    result["ray_workers"] = runs["ray"][0]["timings"].get("ray_workers")
    result["ray_workers_peak_rss_mb"] = max(r["workers_peak_rss_mb"] for r in runs["ray"])
    result["driver_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.probe:
        result["probe"] = probe(ray)
    ray.shutdown()
    result["loadavg_end"] = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_runs_s")}, indent=2))
    print(f"\nlocal {result['local_s']:.2f} s, ray {result['ray_s']:.2f} s: ray/local = {result['ray_over_local']:.2f}x "
          f"(with ray.init {result['ray_plus_init_over_local']:.2f}x); identical bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
