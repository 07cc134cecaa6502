"""A/B: `curate` and `embed` on the shared stage runner vs before the move (issue 7's target: no slower).

"before" is a git revision (default b864402, the last commit before the stage contract) checked out
under .bench/ and built in place; "after" is this tree. Both run as the real CLI in fresh
subprocesses, alternating A/B/B/A, on the same inputs; wall time and peak RSS (from wait4) per run,
medians and the after/before ratio. Each side's answer is checked: the kept-row count of curate
must be equal (the draw is the same function of (seed, uid)) and embed must keep the same rows.

    python benchmarks/bench_runner_ab.py                 # 2M captions (curate), 1,000 photos (embed), 3 rounds
    python benchmarks/bench_runner_ab.py --rows 200000 --rounds 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / ".bench"
sys.path.insert(0, str(ROOT / "benchmarks"))


def build_before(rev: str) -> Path:
    d = CACHE / f"before-{rev}"
    if (d / "_BUILT").exists():
        return d
    if d.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(d)], check=False)
        shutil.rmtree(d, ignore_errors=True)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(d), rev], check=True)
    import pybind11

    b = d / "build" / "dev"
    subprocess.run(["cmake", "-S", str(d), "-B", str(b), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                    f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(b)], check=True, stdout=subprocess.DEVNULL)
    so = next(b.glob("_core*.so"))
    shutil.copy(so, d / "python" / "fastcurate" / so.name)
    (d / "_BUILT").write_text(rev)
    return d


# The CLI run through runpy, printing the process's own peak RSS (VmHWM) at exit: ru_maxrss from
# wait4 would carry the parent's peak across the exec.
WRAP = """
import atexit, resource, runpy, sys
def _hwm():
    with open("/proc/self/status") as f:
        kb = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    print(f"VMHWM_KB {kb}", file=sys.stderr)
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of the process
    print(f"CPU_S {r.ru_utime + r.ru_stime}", file=sys.stderr)
atexit.register(_hwm)
sys.argv = ["fastcurate"] + sys.argv[1:]
runpy.run_module("fastcurate", run_name="__main__")
"""


def run(args: List[str], pythonpath: Path) -> Dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WRAP, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(args)}\n{p.stderr[-3000:]}")
    kb = next(int(l.split()[1]) for l in p.stderr.splitlines() if l.startswith("VMHWM_KB"))
    cpu = next(float(l.split()[1]) for l in p.stderr.splitlines() if l.startswith("CPU_S"))
    return {"s": wall, "cpu_s": cpu, "rss_mb": kb / 1024.0}


def kept(out: Path) -> int:
    import pyarrow.parquet as pq

    files = sorted(out.glob("part-*.parquet")) or sorted(out.glob("*.emb.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def embed_inputs(n: int) -> Path:
    """A Parquet shard of n real photos (clothing + COCO, repeated) with captions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = CACHE / f"embed_pool_{n}"
    f = d / "photos.parquet"
    if f.exists():
        return f
    d.mkdir(parents=True, exist_ok=True)
    photos = sorted((SHARED / "images").rglob("*.jpg"))
    rows = [photos[i % len(photos)] for i in range(n)]
    t = pa.table({"uid": [f"p{i:06d}" for i in range(n)], "jpg": [p.read_bytes() for p in rows],
                  "caption": [f"a photo of {p.parent.name}" for p in rows]})
    pq.write_table(t, f, row_group_size=256)
    return f


def tiny_bundle() -> Path:
    d = CACHE / "bundle_tiny"
    if (d / "manifest.json").exists():
        return d
    from fastcurate.models.torch_compat import import_open_clip
    open_clip = import_open_clip()
    import torch

    sys.path.insert(0, str(ROOT / "python"))
    from fastcurate.models import export_clip

    torch.manual_seed(0)
    cfg = {"embed_dim": 64, "vision_cfg": {"image_size": 224, "layers": 2, "width": 128, "patch_size": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2}}
    export_clip(open_clip.CLIP(**cfg).eval(), d, variants=[])
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="b864402")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=str(CACHE / "runner_ab.json"))
    a = ap.parse_args()
    from bench_curate import build_pool

    before = build_before(a.before)
    after_pp, before_pp = ROOT / "python", before / "python"
    pool = build_pool(a.rows, a.shards, with_url=False)
    files = [str(f) for f in sorted(pool.glob("shard-*.parquet"))]
    photos = embed_inputs(a.photos)
    bundle = tiny_bundle()
    jobs = {
        "curate": lambda out: ["curate", *files, "--out", str(out), "--t", "2000",
                               "--no-progress", "--overwrite"],
        "embed": lambda out: ["embed", str(photos), "--model", str(bundle), "--out", str(out),
                              "--device", "cpu", "--no-progress"],
    }
    load0 = os.getloadavg()
    res: Dict[str, Dict[str, List[Dict[str, float]]]] = {j: {"before": [], "after": []} for j in jobs}
    counts: Dict[str, Dict[str, int]] = {j: {} for j in jobs}
    for r in range(a.rounds):
        for job, cmd in jobs.items():
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for side in order:
                out = CACHE / f"ab_{job}_{side}"
                shutil.rmtree(out, ignore_errors=True)
                m = run(cmd(out), before_pp if side == "before" else after_pp)
                res[job][side].append(m)
                counts[job][side] = kept(out)
                print(f"round {r + 1} {job:6s} {side:6s} {m['s']:7.2f} s  {m['cpu_s']:7.2f} CPU s  {m['rss_mb']:7.0f} MB  "
                      f"kept {counts[job][side]:,}  load {os.getloadavg()[0]:.1f}",
                      flush=True)
    load1 = os.getloadavg()
    summary = {"before": a.before, "rows": a.rows, "photos": a.photos, "rounds": a.rounds,
               "load_start": load0, "load_end": load1, "jobs": {}}
    print(f"\nload average: start {load0[0]:.2f}, end {load1[0]:.2f}")
    print("| job | before s (median) | after s (median) | after / before | before CPU s | after CPU s | after / before (CPU) "
          "| before peak RSS MB | after peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for job in jobs:
        if counts[job]["before"] != counts[job]["after"]:
            raise SystemExit(f"{job}: kept {counts[job]['before']} rows before and {counts[job]['after']} after")
        b = statistics.median(x["s"] for x in res[job]["before"])
        f = statistics.median(x["s"] for x in res[job]["after"])
        cb = statistics.median(x["cpu_s"] for x in res[job]["before"])
        cf = statistics.median(x["cpu_s"] for x in res[job]["after"])
        rb = max(x["rss_mb"] for x in res[job]["before"])
        rf = max(x["rss_mb"] for x in res[job]["after"])
        summary["jobs"][job] = {"before_s": b, "after_s": f, "ratio": f / b, "before_cpu_s": cb, "after_cpu_s": cf,
                                "cpu_ratio": cf / cb, "before_rss_mb": rb, "after_rss_mb": rf, "kept": counts[job]["after"],
                                "runs": res[job]}
        print(f"| {job} | {b:.2f} | {f:.2f} | {f / b:.2f} | {cb:.2f} | {cf:.2f} | {cf / cb:.2f} | {rb:.0f} | {rf:.0f} |")
    Path(a.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
