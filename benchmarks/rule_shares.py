"""Share of real captions each text filter removes (LAION-10k and CC3M-val), with examples.

For each rule: the share of rows it flags on its own (rules overlap), and the share it removes as
the *first* failing reason in ``fastcurate filter``'s order (DataComp's word and character counts
first, then the rules, then language). Prints markdown tables and, with --examples N, N random
flagged captions per rule (the sample docs/filter.md lists).

    PYTHONPATH=python python benchmarks/rule_shares.py [--examples 8]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fastcurate.kernels.text_filter import TextFilter, TextFilterConfig
from fastcurate.kernels.text_rules import RULES, TextRules

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def datasets():
    laion = pq.read_table(SHARED / "captions" / "laion_10k.parquet", columns=["TEXT"]).column("TEXT").to_pylist()
    with open(SHARED / "captions" / "cc3m_val.tsv", encoding="utf-8", newline="") as f:
        cc3m = [r[0] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return {"LAION-10k": laion, "CC3M-val": cc3m}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=0)
    args = ap.parse_args()
    data = datasets()
    rules = TextRules()
    f = TextFilter(TextFilterConfig(language_all_rows=True))
    flagged, first, extra = {}, {}, {}
    for name, texts in data.items():
        arr = pa.array(texts)
        s = rules.run(arr)
        r = f.classify(arr)
        n = len(texts)
        flagged[name] = {rule: s.failed(rule).sum() / n for rule in RULES}
        c = np.bincount(r.codes, minlength=len(r.reasons)) / n
        first[name] = {r.reasons[i]: c[i] for i in range(len(r.reasons))}
        extra[name] = {
            "DataComp words <= 2": (s.words <= 2).mean(),
            "DataComp chars <= 5": (s.chars <= 5).mean(),
            "fastText top-1 not en": (~r.language.is_language("en")).mean(),
            "any rule": ((s.flags & 31) != 0).mean(),
        }
    names = list(data)
    print("| rule | " + " | ".join(f"{n} flagged | {n} removed first" for n in names) + " |")
    print("|---|" + "---|---|" * len(names))
    for rule in RULES:
        cells = []
        for n in names:
            cells += [f"{100 * flagged[n][rule]:.2f} %", f"{100 * first[n][rule]:.2f} %"]
        print(f"| {rule} | " + " | ".join(cells) + " |")
    print()
    print("| test | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for k in extra[names[0]]:
        print(f"| {k} | " + " | ".join(f"{100 * extra[n][k]:.2f} %" for n in names) + " |")
    print()
    print("| first reason (fastcurate filter order) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for reason in first[names[0]]:
        print(f"| {reason} | " + " | ".join(f"{100 * first[n][reason]:.2f} %" for n in names) + " |")
    if args.examples:
        rng = random.Random(0)
        for rule in RULES:
            print(f"\n{rule}:")
            for name, texts in data.items():
                s = rules.run(pa.array(texts))
                hits = [t for t, m in zip(texts, s.failed(rule)) if m]
                for t in rng.sample(hits, min(args.examples, len(hits))):
                    print(f"  [{name}] {t[:110]!r}")


if __name__ == "__main__":
    main()
