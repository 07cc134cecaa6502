"""Matching benchmark: fastcurate against MetaCLIP's reference and the fastest exact peers.

Every engine gets the same captions and the same ~500k-entry metadata, computes MetaCLIP's
`substr_matching` result (the set of entry ids whose " entry " occurs in spacing(caption)) for
every caption, and must return exactly the same pairs as the reference; a mismatch fails the run.

Engines (the peers see the spaced text, which MetaCLIP's semantics require; its cost is theirs):
  reference     pyahocorasick exactly as MetaCLIP's substr_matching_ahocorasick.py uses it
  ahocorasick-rs  Rust aho-corasick, overlapping matches over the spaced str
  daachorse     Rust double-array Aho-Corasick over the spaced bytes (find_overlapping)
  hyperscan     Intel Hyperscan, literal mode, SINGLEMATCH, block scan of the spaced bytes
  fastcurate    fc.Matcher(mode="metaclip").match(pyarrow array)

Runs alternate engines within one process (A B C ... A B C ...) and report medians, because the
machines are shared and noisy. "All cores" runs the peers in a fork-based process pool (as
MetaCLIP's own scripts parallelise) and fastcurate with threads=0.

    python benchmarks/bench_match.py                 # 1M captions, 500k entries, 3 rounds
    python benchmarks/bench_match.py --quick         # 200k captions, 1 round
    python benchmarks/bench_match.py --pool dense    # dense human captions (CC3M + COCO), ~16 matches each

Pools (benchmarks/_pool.py): "laion" resamples the real LAION + CC3M captions against a metadata
made the MetaCLIP way from them (about 10 matched entries per caption); "dense" resamples the
human-written CC3M and COCO captions against a metadata in which, as against MetaCLIP's own,
they match many entries (stop words and common phrases included: about 16 per caption).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pool import pool_inputs  # noqa: E402

import fastcurate as fc  # noqa: E402
from fastcurate.kernels.reference import spacing  # noqa: E402

CSR = Tuple[np.ndarray, np.ndarray]


def to_csr(rows: List[List[int]]) -> CSR:
    lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    ids = np.fromiter((i for r in rows for i in r), dtype=np.int32, count=int(offsets[-1]))
    return offsets, ids


# -- engines ---------------------------------------------------------------------------------------
# Each builder returns a function texts(list[str]) -> list of sorted id lists (peers) or CSR.


def build_reference(entries: List[str]):
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for idx, entry in enumerate(entries):  # exactly MetaCLIP's construction
        key = f" {entry} "
        automaton.add_word(key, (idx, key))
    automaton.make_automaton()

    def run(texts: List[str]) -> List[List[int]]:
        out = []
        for text in texts:
            matched = set()
            for _end, (entry_id, _key) in automaton.iter(spacing(text)):
                matched.add(entry_id)
            out.append(sorted(matched))
        return out

    return run


def build_ahocorasick_rs(entries: List[str]):
    import ahocorasick_rs

    ac = ahocorasick_rs.AhoCorasick([f" {e} " for e in entries])

    def run(texts: List[str]) -> List[List[int]]:
        return [sorted({m[0] for m in ac.find_matches_as_indexes(spacing(t), overlapping=True)}) for t in texts]

    return run


def build_daachorse(entries: List[str]):
    import daachorse

    pma = daachorse.DoubleArrayAhoCorasick([f" {e} ".encode() for e in entries])

    def run(texts: List[str]) -> List[List[int]]:
        return [sorted({m[2] for m in pma.find_overlapping(spacing(t).encode())}) for t in texts]

    return run


def build_hyperscan(entries: List[str]):
    import hyperscan

    keys = [f" {e} ".encode() for e in entries]
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(
        expressions=keys, ids=list(range(len(keys))), elements=len(keys),
        flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(keys), literal=True,
    )
    scratch = hyperscan.Scratch(db)

    def on_match(id_, _from, _to, _flags, ctx):
        ctx.append(id_)

    def run(texts: List[str]) -> List[List[int]]:
        out = []
        for t in texts:
            got: List[int] = []
            db.scan(spacing(t).encode(), match_event_handler=on_match, context=got, scratch=scratch)
            got.sort()
            out.append(got)
        return out

    return run


def build_fastcurate(entries: List[str]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.MatcherWarning)
        m = fc.Matcher(entries, mode="metaclip")
    return m


PEERS: Dict[str, Callable] = {
    "reference": build_reference,
    "ahocorasick-rs": build_ahocorasick_rs,
    "daachorse": build_daachorse,
    "hyperscan": build_hyperscan,
}
ENGINES = ["fastcurate"] + list(PEERS)


# -- build cost, measured in a fresh process per engine ----------------------------------------------


def measure_build(engine: str, entries_path: str) -> Dict[str, float]:
    import psutil

    entries = json.loads(Path(entries_path).read_text())
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    obj = build_fastcurate(entries) if engine == "fastcurate" else PEERS[engine](entries)
    t1 = time.perf_counter()
    rss1 = proc.memory_info().rss
    info = {"build_s": t1 - t0, "rss_mb": (rss1 - rss0) / 1e6}
    if engine == "fastcurate":
        info["own_mb"] = obj.memory_bytes / 1e6
        with tempfile.TemporaryDirectory() as d:
            obj.save(Path(d) / "m.fcm")
            t2 = time.perf_counter()
            fc.Matcher.load(Path(d) / "m.fcm")
            info["load_s"] = time.perf_counter() - t2
    return info


# -- parallel peers: a fork pool whose workers inherit the automaton ---------------------------------

_G: Dict[str, object] = {}


def _pool_task(bounds: Tuple[int, int]) -> CSR:
    run = _G["run"]
    texts = _G["texts"]
    return to_csr(run(texts[bounds[0] : bounds[1]]))


def run_peer_parallel(pool: mp.pool.Pool, n: int, workers: int) -> CSR:
    step = max(1, n // (workers * 8))
    parts = pool.map(_pool_task, [(i, min(n, i + step)) for i in range(0, n, step)])
    offsets = [parts[0][0]]
    base = parts[0][0][-1]
    for o, _ in parts[1:]:
        offsets.append(o[1:] + base)
        base += o[-1]
    return np.concatenate(offsets), np.concatenate([i for _, i in parts])


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=1_000_000)
    ap.add_argument("--entries", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="200k captions, 1 round")
    ap.add_argument("--pool", choices=["laion", "dense"], default="laion", help="caption pool and metadata (see above)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--no-parallel", action="store_true", help="skip the all-cores runs")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--_build", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_entries", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._build:
        print(json.dumps(measure_build(args._build, args._entries)))
        return 0
    if args.quick:
        args.captions, args.rounds = 200_000, 1
    engines = [e for e in args.engines.split(",") if e]
    cores = os.cpu_count() or 1

    entries, pool_arr, pool_name = pool_inputs(args.pool, args.captions, args.entries)
    texts = pool_arr.to_pylist()
    text_mb = sum(len(t.encode()) for t in texts) / 1e6
    load_start = os.getloadavg()[0]
    print(f"# pool {args.pool}: {pool_name}; {len(entries):,} entries; {len(texts):,} captions ({text_mb:.1f} MB of text); "
          f"{cores} cores; {platform.processor() or platform.machine()}; load {load_start:.2f}")

    # Build cost in fresh processes.
    build: Dict[str, Dict[str, float]] = {}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(entries, f)
        entries_path = f.name
    try:
        for e in engines:
            out = subprocess.run([sys.executable, __file__, "--_build", e, "--_entries", entries_path],
                                 capture_output=True, text=True, check=True)
            build[e] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"build {e:15s} {build[e]['build_s']:7.2f} s  {build[e]['rss_mb']:8.1f} MB RSS", flush=True)
    finally:
        os.unlink(entries_path)

    # Build every engine here once, then alternate them.
    runners = {}
    for e in engines:
        runners[e] = build_fastcurate(entries) if e == "fastcurate" else PEERS[e](entries)

    def run_one(e: str, threads: int) -> CSR:
        if e == "fastcurate":
            r = runners[e].match(pool_arr, threads=threads)
            return r.offsets, r.ids
        return to_csr(runners[e](texts))

    times: Dict[Tuple[str, str], List[float]] = {}
    cpu_times: Dict[Tuple[str, str], List[float]] = {}
    expected: Optional[CSR] = None
    results: Dict[str, CSR] = {}
    for rnd in range(args.rounds):
        for e in engines:
            for threads in ([1, 0] if e == "fastcurate" else [1]):
                # Wall time and this process's CPU time (all its threads): on a shared machine the
                # wall clock also counts the time other processes held the cores.
                if e != "fastcurate":
                    # Peers produce Python lists; converting them to arrays is not timed.
                    t0, c0 = time.perf_counter(), time.process_time()
                    rows = runners[e](texts)
                    dt, dc = time.perf_counter() - t0, time.process_time() - c0
                    csr = to_csr(rows)
                else:
                    t0, c0 = time.perf_counter(), time.process_time()
                    csr = run_one(e, threads)
                    dt, dc = time.perf_counter() - t0, time.process_time() - c0
                mode = "1 thread" if threads == 1 else "all cores"
                times.setdefault((e, mode), []).append(dt)
                cpu_times.setdefault((e, mode), []).append(dc)
                results[e] = csr
                print(f"round {rnd} {e:15s} {mode:9s} {len(texts) / dt:12,.0f} captions/s  {len(texts) / dc:12,.0f} per CPU-s  "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
        # Answers are checked every round: every engine must return exactly the reference's pairs.
        ref_name = "reference" if "reference" in results else engines[0]
        expected = results[ref_name]
        for e, (o, i) in results.items():
            if not (np.array_equal(o, expected[0]) and np.array_equal(i, expected[1])):
                raise SystemExit(f"MISMATCH: {e} differs from {ref_name}")
    assert expected is not None
    n_pairs = len(expected[1])

    if not args.no_parallel and cores > 1:
        for e in engines:
            if e == "fastcurate":
                continue
            _G["run"], _G["texts"] = runners[e], texts
            with mp.get_context("fork").Pool(cores) as p:
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    o, i = run_peer_parallel(p, len(texts), cores)
                    dt = time.perf_counter() - t0
                    if not (np.array_equal(o, expected[0]) and np.array_equal(i, expected[1])):
                        raise SystemExit(f"MISMATCH: {e} (parallel)")
                    times.setdefault((e, "all cores"), []).append(dt)
                    print(f"parallel {e:15s} {len(texts) / dt:12,.0f} captions/s", flush=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu_times.items()}
    ref1 = med.get(("reference", "1 thread"))
    ref1_cpu = med_cpu.get(("reference", "1 thread"))
    best_peer1 = min((v for (e, m), v in med.items() if e not in ("fastcurate", "reference") and m == "1 thread"), default=None)
    print()
    print(f"Matched pairs: {n_pairs:,} ({n_pairs / len(texts):.2f} per caption); every engine returned exactly these.")
    print()
    print("| engine | threads | captions/s | MB/s | × reference (1 thread) | captions per CPU-s | × reference (CPU) | build s | build RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    table = []
    for (e, mode), t in sorted(med.items(), key=lambda kv: (ENGINES.index(kv[0][0]), kv[0][1] != "1 thread")):
        cps = len(texts) / t
        ratio = (ref1 / t) if ref1 else float("nan")
        b = build.get(e, {})
        tc = med_cpu.get((e, mode))
        cpu_cell, cpu_ratio_cell, cpu_ratio = "", "", float("nan")
        if tc is not None and mode == "1 thread":  # (the parallel peers' CPU time is in their workers)
            cpu_ratio = (ref1_cpu / tc) if ref1_cpu else float("nan")
            cpu_cell, cpu_ratio_cell = f"{len(texts) / tc:,.0f}", f"{cpu_ratio:.1f}×"
        row = (f"| {e} | {mode} | {cps:,.0f} | {text_mb / t:.1f} | {ratio:.1f}× | {cpu_cell} | {cpu_ratio_cell} | "
               f"{b.get('build_s', float('nan')):.2f} | {b.get('rss_mb', float('nan')):.0f} |")
        print(row)
        table.append({"engine": e, "mode": mode, "captions_per_s": cps, "mb_per_s": text_mb / t, "x_reference": ratio,
                      "x_reference_cpu": cpu_ratio})
    fc1 = med.get(("fastcurate", "1 thread"))
    fcn = med.get(("fastcurate", "all cores"))
    print()
    if fc1 and ref1:
        print(f"fastcurate vs reference, 1 thread: {ref1 / fc1:.1f}× wall time, "
              f"{ref1_cpu / med_cpu[('fastcurate', '1 thread')]:.1f}× CPU time")
    if fc1 and best_peer1:
        print(f"fastcurate vs fastest peer, 1 thread: {best_peer1 / fc1:.1f}×")
    if fc1 and fcn:
        print(f"fastcurate all cores vs 1 thread: {fc1 / fcn:.2f}×")
    if "fastcurate" in build:
        b = build["fastcurate"]
        print(f"fastcurate build: {b['build_s']:.2f} s, {b['rss_mb']:.0f} MB RSS ({b['own_mb']:.0f} MB in its tables), load from file {b['load_s']:.2f} s")
    load_end = os.getloadavg()[0]
    print(f"machine load average: {load_start:.2f} at the start, {load_end:.2f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps({"pool": args.pool, "table": table, "build": build, "pairs": n_pairs,
                                               "load": [load_start, load_end]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
