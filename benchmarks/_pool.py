"""Benchmark inputs built from the real captions in ../shared/data: a metadata of ~500k entries
made the MetaCLIP way, and a pool of captions resampled from the real ones."""

from __future__ import annotations

import collections
import csv
import math
import random
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def real_captions() -> List[str]:
    laion = pq.read_table(SHARED / "captions" / "laion_10k.parquet", columns=["TEXT"]).column("TEXT").to_pylist()
    with open(SHARED / "captions" / "cc3m_val.tsv", encoding="utf-8", newline="") as f:
        cc3m = [row[0] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return [t for t in laion if t] + cc3m


def wordnet_lemmas(wordnet_dir: str = "/usr/share/wordnet") -> Tuple[List[str], List[str]]:
    """(first lemma of every synset, every other lemma), '_' -> ' ', in file order."""
    first, other = [], []
    for name in ("data.noun", "data.verb", "data.adj", "data.adv"):
        with open(Path(wordnet_dir) / name, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                parts = line.split(" ")
                n = int(parts[3], 16)
                lemmas = [parts[4 + 2 * k].split("(")[0].replace("_", " ") for k in range(n)]
                first.append(lemmas[0])
                other.extend(lemmas[1:])
    return first, other


def build_metadata(captions: List[str], size: int = 500_000, seed: int = 0) -> List[str]:
    """MetaCLIP's recipe at this corpus's scale: WordNet synsets, then unigrams by count and
    bigrams by PMI mined from the captions (thresholds scaled down from Wikipedia's), then the
    other WordNet lemmas, then lemma bigrams as the long tail of rarely-matching entries (MetaCLIP's
    500k entries are mostly rare: its Wikipedia titles and bigrams), up to `size` entries."""
    first, other = wordnet_lemmas()
    uni: collections.Counter = collections.Counter()
    bi: collections.Counter = collections.Counter()
    for t in captions:
        toks = [w for w in t.split(" ") if w]
        uni.update(toks)
        bi.update(zip(toks, toks[1:]))
    total = sum(uni.values())
    unigrams = [w for w, c in uni.most_common() if c >= 3]
    pmi = []
    for (a, b), c in bi.items():
        if c >= 3:
            pmi.append((math.log(c * total / (uni[a] * uni[b])), f"{a} {b}"))
    pmi.sort(reverse=True)
    bigrams = [b for score, b in pmi if score >= 3.0]
    out = list(dict.fromkeys(first + unigrams + bigrams + other))
    rng = random.Random(seed)
    seen = set(out)
    lemmas = first + other
    while len(out) < size:
        e = f"{rng.choice(lemmas)} {rng.choice(lemmas)}"
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out[:size]


def caption_pool(captions: List[str], n: int, seed: int = 0) -> pa.Array:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(captions), n)
    return pa.array([captions[i] for i in idx], type=pa.string())
