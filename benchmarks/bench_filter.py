"""Text filter speed: DataComp's caption filter + bad-alt-text rules + language ID, end to end
from Parquet, against the Parquet read floor of the text column, and against DataComp's own
per-row Python code.

Input: real captions (LAION-10k and CC3M-val from ../shared/data) resampled to --rows rows and
written once to .bench/filter_<rows>.parquet (snappy, pyarrow's default row groups).

Peers, run in one process on the same file, alternating, --rounds times (medians reported):

* ``read``: the floor -- stream the text column batch by batch (ParquetFile.iter_batches).
* ``rules``: the same stream + TextRules (DataComp counts and the five rules), all cores.
* ``filter``: the same stream + TextFilter.classify: counts, rules, then fastText language ID on
  the rows that pass (what ``fastcurate filter`` runs on text).
* ``filter-all-lang``: as ``filter`` but language ID on every row (DataComp computes it for all).

DataComp's reference (``baselines/apply_filter.py`` load_uids_with_basic_filter_helper, text part:
``df.text.apply(get_fasttext_language)``, ``len(x.split())``, ``len(x)``, with the fasttext
module and the same lid.176.ftz) runs on a --datacomp-rows sample and is extrapolated. Its
per-row decisions are checked against ours on that sample (the answer is checked, not just timed).

    PYTHONPATH=python python benchmarks/bench_filter.py [--rows 10000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import importlib.util
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
if importlib.util.find_spec("fastcurate") is None:  # a checkout run without installing the package
    sys.path.insert(0, str(ROOT / "python"))

from fastcurate.kernels.langid import bundled_model_path  # noqa: E402
from fastcurate.kernels.text_filter import TextFilter, TextFilterConfig  # noqa: E402
from fastcurate.kernels.text_rules import TextRules  # noqa: E402


def real_captions() -> List[str]:
    laion = pq.read_table(SHARED / "captions" / "laion_10k.parquet", columns=["TEXT"]).column("TEXT").to_pylist()
    with open(SHARED / "captions" / "cc3m_val.tsv", encoding="utf-8", newline="") as f:
        cc3m = [r[0] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return [t for t in laion if t is not None] + cc3m


def make_file(rows: int) -> Path:
    path = ROOT / ".bench" / f"filter_{rows}.parquet"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    pool = pa.array(real_captions())
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, pa.schema([("TEXT", pa.string())])) as w:
        step = 1_000_000
        for start in range(0, rows, step):
            idx = rng.integers(0, len(pool), size=min(step, rows - start))
            w.write_table(pa.table({"TEXT": pool.take(pa.array(idx))}))
    os.replace(tmp, path)
    return path


def stream(path: Path, batch_rows: int):
    return pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["TEXT"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=1 << 18)
    ap.add_argument("--datacomp-rows", type=int, default=100_000)
    args = ap.parse_args()

    t0 = time.perf_counter()
    path = make_file(args.rows)
    print(f"input {path.name}: {args.rows:,} rows, {path.stat().st_size / 1e6:.0f} MB on disk (ready in {time.perf_counter() - t0:.1f} s)")
    print(f"cpu cores {os.cpu_count()}, load average at start {os.getloadavg()}")

    tf = TextFilter()
    tf_all = TextFilter(TextFilterConfig(language_all_rows=True))
    rules = TextRules()
    results: Dict[str, Dict[str, int]] = {}

    def peer_read() -> int:
        n = 0
        for b in stream(path, args.batch_rows):
            n += len(b)
        return n

    def peer_rules() -> int:
        kept = 0
        for b in stream(path, args.batch_rows):
            s = rules.run(b.column(0))
            kept += int(((s.flags & 31) == 0).sum())
        return kept

    def make_filter(f: TextFilter, name: str) -> Callable[[], int]:
        def run() -> int:
            counts = np.zeros(len(f.reasons), dtype=np.int64)
            for b in stream(path, args.batch_rows):
                counts += np.bincount(f.classify(b.column(0)).codes, minlength=len(f.reasons))
            results[name] = {f.reasons[i]: int(c) for i, c in enumerate(counts) if c}
            return int(counts[0])

        return run

    peers = {"read": peer_read, "rules": peer_rules, "filter": make_filter(tf, "filter"), "filter-all-lang": make_filter(tf_all, "filter-all-lang")}
    times: Dict[str, List[float]] = {k: [] for k in peers}
    cpu: Dict[str, List[float]] = {k: [] for k in peers}
    answers: Dict[str, set] = {k: set() for k in peers}
    loads = []
    for r in range(args.rounds):
        order = list(peers) if r % 2 == 0 else list(reversed(peers))
        for name in order:
            loads.append(os.getloadavg()[0])
            t = time.perf_counter()
            c = time.process_time()
            answers[name].add(peers[name]())
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    for name, a in answers.items():
        assert len(a) == 1, f"{name} gave different answers in different rounds: {a}"
    assert answers["read"] == {args.rows}
    assert results["filter"] == results["filter-all-lang"], "language ID on every row changed the first reasons"

    floor = statistics.median(times["read"])
    cpu_floor = statistics.median(cpu["read"])
    print(f"\nrounds {args.rounds}, batch {args.batch_rows} rows, load average during runs: median {statistics.median(loads):.1f}, max {max(loads):.1f}")
    print("wall = elapsed seconds; cpu = CPU seconds of this process, all threads (less sensitive to the other load)")
    print(f"{'peer':18s} {'wall s':>8s} {'rows/s':>11s} {'x floor':>8s} {'cpu s':>8s} {'x floor':>8s}   wall, all rounds")
    for name in peers:
        m = statistics.median(times[name])
        mc = statistics.median(cpu[name])
        print(f"{name:18s} {m:8.2f} {args.rows / m:11,.0f} {m / floor:8.2f} {mc:8.2f} {mc / cpu_floor:8.2f}   {', '.join(f'{t:.2f}' for t in times[name])}")
    print("\nreasons (filter):", results["filter"])

    # DataComp's per-row Python on a sample, checked against our decisions on the same rows.
    import fasttext

    model = fasttext.load_model(str(bundled_model_path()))
    sample = pq.ParquetFile(path).read_row_group(0, columns=["TEXT"]).column(0)[: args.datacomp_rows]
    import pandas as pd

    df = pd.DataFrame({"text": sample.to_pylist()})

    def get_fasttext_language(text: str) -> str:  # DataComp's helper, verbatim semantics
        text = text.replace("\n", " ")
        return model.predict(text)[0][0].split("__label__")[1]

    t = time.perf_counter()
    lang = df.text.apply(get_fasttext_language)
    nwords = df.text.apply(lambda x: len(x.split()))
    nchars = df.text.apply(lambda x: len(x))
    dc_mask = ((lang == "en") & (nwords > 2) & (nchars > 5)).to_numpy()
    t_dc = time.perf_counter() - t
    nr = TextFilter(TextFilterConfig(rules=None))  # DataComp's text filter alone, for the answer check
    t = time.perf_counter()
    ours = nr.classify(sample).keep
    t_ours = time.perf_counter() - t
    assert np.array_equal(ours, dc_mask), f"{int((ours != dc_mask).sum())} rows differ from DataComp's Python"
    per_row_dc = t_dc / len(sample)
    print(f"\nDataComp per-row Python (pandas apply + fasttext module, same model) on {len(sample):,} rows: "
          f"{per_row_dc * 1e6:.2f} us/row -> {per_row_dc * args.rows:.1f} s extrapolated to {args.rows:,} rows; "
          f"same decisions as fastcurate (DataComp filter only: {t_ours / len(sample) * 1e6:.2f} us/row in-memory)")
    print(f"fastcurate filter (rules + language) vs DataComp per-row: {per_row_dc * args.rows / statistics.median(times['filter']):.1f}x faster "
          f"(DataComp's code does not include the bad-alt-text rules)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
