"""Benchmark inputs built from the real captions in ../shared/data: a metadata of ~500k entries
made the MetaCLIP way, and a pool of captions resampled from the real ones."""

from __future__ import annotations

import collections
import csv
import json
import math
import random
import re
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def real_captions() -> List[str]:
    laion = pq.read_table(SHARED / "captions" / "laion_10k.parquet", columns=["TEXT"]).column("TEXT").to_pylist()
    return [t for t in laion if t] + cc3m_captions()


def cc3m_captions() -> List[str]:
    with open(SHARED / "captions" / "cc3m_val.tsv", encoding="utf-8", newline="") as f:
        return [row[0] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def coco_captions() -> List[str]:
    with open(SHARED / "images" / "coco_mini_val" / "captions.json", encoding="utf-8") as f:
        return [a["caption"] for a in json.load(f)["annotations"]]


def human_captions() -> List[str]:
    """Dense human-written captions: CC3M's validation captions and COCO's 395 (five per image)."""
    return cc3m_captions() + coco_captions()


def wordnet_lemmas(wordnet_dir: str = "/usr/share/wordnet") -> Tuple[List[str], List[str]]:
    """(first lemma of every synset, every other lemma), '_' -> ' ', in file order. Reads the WordNet
    3.0 database files of Debian's ``wordnet-base`` package."""
    if not (Path(wordnet_dir) / "data.noun").is_file():
        raise SystemExit(f"{wordnet_dir}/data.noun not found: the benchmark metadata is built from WordNet 3.0's "
                         "database files; install them with `apt-get install wordnet-base` (Debian/Ubuntu)")
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


_WORD_SPLIT = re.compile(r"[\s,.;:?!`\"()]+")


def build_dense_metadata(corpus: List[str], size: int = 500_000, seed: int = 0) -> List[str]:
    """A metadata in which human captions match many entries, as they do against MetaCLIP's own
    500k entries (about 20 per COCO caption): MetaCLIP's unigrams are every Wikipedia word seen
    100 times, stop words included, and its bigrams and titles cover common phrases. Here, mined
    from `corpus` (the real captions) with the thresholds scaled down: the WordNet synsets, every
    word seen twice (words cut at whitespace and punctuation, case kept), bigrams seen twice with
    PMI >= 1, trigrams seen twice (the titles' stand-in), the other WordNet lemmas, then lemma
    bigrams as the rare tail, up to `size` entries."""
    first, other = wordnet_lemmas()
    uni: collections.Counter = collections.Counter()
    bi: collections.Counter = collections.Counter()
    tri: collections.Counter = collections.Counter()
    for t in corpus:
        w = [x for x in _WORD_SPLIT.split(t) if x]
        uni.update(w)
        bi.update(zip(w, w[1:]))
        tri.update(zip(w, w[1:], w[2:]))
    total = sum(uni.values())
    unigrams = [w for w, c in uni.most_common() if c >= 2]
    bigrams = [f"{a} {b}" for (a, b), c in bi.items() if c >= 2 and math.log(c * total / (uni[a] * uni[b])) >= 1.0]
    trigrams = [" ".join(k) for k, c in tri.items() if c >= 2]
    out = list(dict.fromkeys(first + unigrams + bigrams + trigrams + other))
    rng = random.Random(seed)
    seen = set(out)
    lemmas = first + other
    while len(out) < size:
        e = f"{rng.choice(lemmas)} {rng.choice(lemmas)}"
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out[:size]


def pool_inputs(kind: str, n_captions: int, n_entries: int) -> Tuple[List[str], pa.Array, str]:
    """(metadata, caption pool, description) of a benchmark pool: "laion" (web alt-texts, LAION +
    CC3M, against build_metadata) or "dense" (human captions, CC3M + COCO, against
    build_dense_metadata mined from all the real captions)."""
    if kind == "laion":
        caps = real_captions()
        return build_metadata(caps, n_entries), caption_pool(caps, n_captions), "LAION + CC3M captions"
    if kind == "dense":
        corpus = real_captions() + coco_captions()  # every real caption once
        return build_dense_metadata(corpus, n_entries), caption_pool(human_captions(), n_captions), "dense human captions (CC3M + COCO)"
    raise ValueError(f"unknown pool {kind!r}: use 'laion' or 'dense'")


def caption_pool(captions: List[str], n: int, seed: int = 0) -> pa.Array:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(captions), n)
    return pa.array([captions[i] for i in idx], type=pa.string())
