"""Benchmark: fastcurate's ClipTokenizer against open_clip's tokenizer on all real captions.

open_clip's side is ``open_clip.get_tokenizer("ViT-B-32")`` (SimpleTokenizer: ftfy, double HTML
unescape, whitespace collapse, lower case, regex split, BPE with its own cache). Both sides are
run in one process on the same list of str, alternating (A B A B ...), and the medians are
reported. "cold" builds a fresh tokenizer for every run (empty caches; building it, i.e. loading
the vocabulary, is not timed for either side); "warm" reuses one whose caches have seen the
captions. The ids are checked equal before anything is timed, and the load average is printed
before and after, since the development machines are shared.

Run from the repository root: ``python benchmarks/bench_tokenizer.py [--reps 7] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import importlib.util
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("fastcurate") is None:  # a checkout run without installing the package
    sys.path.insert(0, str(ROOT / "python"))
DATA = ROOT.parent / "shared" / "data"


def load_captions() -> List[str]:
    """The same 25,833 captions as bench_embed.py: LAION 10k and CC3M validation."""
    import pyarrow.parquet as pq

    texts = [t or "" for t in pq.read_table(DATA / "captions" / "laion_10k.parquet").column("TEXT").to_pylist()]
    with open(DATA / "captions" / "cc3m_val.tsv", encoding="utf-8") as f:
        texts += [line.split("\t")[0] for line in f.read().split("\n") if line]
    return texts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7, help="alternating runs per engine (median reported)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    a = ap.parse_args()

    from fastcurate.models.torch_compat import import_open_clip
    open_clip = import_open_clip()
    from open_clip.tokenizer import default_bpe

    from fastcurate.models.tokenizer import ClipTokenizer, build_clip_tokenizer_json

    if not DATA.exists():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    captions = load_captions()
    n = len(captions)
    tok_json = ROOT / ".bench" / "clip_tokenizer.json"
    tok_json.parent.mkdir(parents=True, exist_ok=True)
    build_clip_tokenizer_json(default_bpe(), tok_json)

    def oc_new():
        return open_clip.get_tokenizer("ViT-B-32")

    def ours_new():
        return ClipTokenizer(tok_json)

    # Answers first: identical ids on every caption.
    ours_w, oc_w = ours_new(), oc_new()
    assert np.array_equal(ours_w(captions), oc_w(captions).numpy()), "token ids differ from open_clip"
    # Which path each caption takes in the kernel (0 C++ only, 1 ftfy in Python, 3 ftfy skipped).
    out = np.zeros((n, ours_w.context_length), np.int64)
    _, status = ours_w._bpe.tokenize("list", captions, out, False)
    paths = {"cpp_ascii": int((status == 0).sum()), "python_ftfy": int((status == 1).sum()),
             "python_no_ftfy": int((status == 3).sum())}

    def cold(factory: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            tok = factory()
            t0 = time.perf_counter()
            tok(captions)  # type: ignore[operator]
            return time.perf_counter() - t0

        return run

    def warm(tok) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            tok(captions)
            return time.perf_counter() - t0

        return run

    runs: Dict[str, Callable[[], float]] = {
        "open_clip cold": cold(oc_new), "ours cold": cold(ours_new),
        "open_clip warm": warm(oc_w), "ours warm": warm(ours_w),
    }
    load0 = os.getloadavg()
    times: Dict[str, List[float]] = {k: [] for k in runs}
    for _ in range(a.reps):
        for k, f in runs.items():
            times[k].append(f())
    load1 = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: n / v for k, v in med.items()}
    res = {
        "captions": n, "reps": a.reps, "loadavg_before": load0, "loadavg_after": load1, "paths": paths,
        "seconds_median": med, "captions_per_s": rate,
        "ratio_cold": med["open_clip cold"] / med["ours cold"], "ratio_warm": med["open_clip warm"] / med["ours warm"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_count": os.cpu_count(),
    }
    print(f"# bench_tokenizer: {n} real captions, ids identical; {a.reps} alternating runs each; "
          f"loadavg {load0[0]:.2f} -> {load1[0]:.2f}")
    print(f"# kernel paths: {paths}")
    print("| cache | open_clip captions/s | fastcurate captions/s | ratio |\n|---|---|---|---|")
    for c in ("cold", "warm"):
        print(f"| {c} | {rate['open_clip ' + c]:,.0f} | {rate['ours ' + c]:,.0f} | {res['ratio_' + c]:.1f}x |")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
