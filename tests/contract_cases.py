"""One small, realistic input per registered stage, for the stage-contract tests (test_contract.py).

A new stage registers in fastcurate.stages.STAGES and adds its case here: ``CASES[name]`` builds
the pool rows (a table with a ``uid`` column, including rows the stage drops) and the stage. The
kill tests rebuild the same case in a subprocess, so everything here is a pure function of its
arguments (the embed bundle's path comes through the environment).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ENTRIES = [f"w{k}" for k in range(60)] + ["new york", "york"]
BUNDLE_ENV = "FASTCURATE_TEST_BUNDLE"
# The embed case runs whatever bundle BUNDLE_ENV names: tests/test_embed_image.py reruns the
# contract with an image-classifier bundle and `labels` from this variable.
LABELS_ENV = "FASTCURATE_TEST_EMBED_LABELS"


@dataclass
class Case:
    table: pa.Table
    make_stage: Callable[[], Any]
    columns: Dict[str, Optional[str]] = field(default_factory=dict)
    batch_size: int = 97
    float_columns: tuple = ()  # added columns compared with a tolerance across layouts


def caption_table(n: int, seed: int = 0) -> pa.Table:
    """Zipf-distributed entry words (so balancing bites), punctuation, fillers, null and empty
    captions, null ids."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        words = [f"w{(int(z) - 1) % 60}" for z in rng.zipf(1.4, size=int(rng.integers(0, 5)))]
        words += ["filler"] * int(rng.integers(0, 3))
        if rng.random() < 0.05:
            words.append("new york,")
        rng.shuffle(words)
        texts.append(" ".join(words))
    texts = [None if i % 53 == 5 else ("" if i % 61 == 7 else t) for i, t in enumerate(texts)]
    uids = [None if i % 89 == 3 else f"{(i * 2654435761) % (1 << 64):016x}" for i in range(n)]
    return pa.table({"uid": pa.array(uids, pa.string()), "TEXT": pa.array(texts, pa.string()),
                     "n": pa.array(np.arange(n, dtype=np.int64))})


def _jpeg(rng: np.random.Generator, size: int = 48) -> bytes:
    from PIL import Image

    a = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    b = io.BytesIO()
    Image.fromarray(a).save(b, "JPEG", quality=80)
    return b.getvalue()


def image_table(n: int, seed: int = 0) -> pa.Table:
    """Small JPEGs with captions; a null image, garbage bytes, a truncated JPEG, a null caption."""
    rng = np.random.default_rng(seed)
    imgs: list = [_jpeg(rng) for _ in range(n)]
    imgs[2] = None
    imgs[5] = b"not an image at all"
    imgs[7] = imgs[8][: len(imgs[8]) // 3]
    caps = [f"a photo of w{i % 7}" if i != 4 else None for i in range(n)]
    return pa.table({"uid": pa.array([f"img{i:03d}" for i in range(n)]), "jpg": pa.array(imgs, pa.binary()),
                     "caption": pa.array(caps, pa.string())})


def _curate() -> Any:
    from fastcurate.stages.curate.stage import CurateStage

    return CurateStage(ENTRIES, t=12, seed=3, plot=False)


def _match() -> Any:
    from fastcurate.stages.match.stage import MatchStage

    return MatchStage(ENTRIES)


def _embed() -> Any:
    from fastcurate.stages.embed.stage import EmbedStage

    bundle = os.environ.get(BUNDLE_ENV)
    if not bundle:
        raise RuntimeError(f"set {BUNDLE_ENV} to a CLIP bundle (tests/embed_fixtures.tiny_bundle)")
    labels = int(os.environ.get(LABELS_ENV) or 0)
    return EmbedStage(bundle, device="cpu", model_batch_size=5, labels=labels)


CASES: Dict[str, Callable[[], Case]] = {
    "curate": lambda: Case(caption_table(1500), _curate),
    "match": lambda: Case(caption_table(700), _match),
    "embed": lambda: Case(image_table(24), _embed, batch_size=7, float_columns=("image_emb", "text_emb", "clip_score")),
}


def write_layout(table: pa.Table, d: Path, n_files: int, seed: int) -> Path:
    """The same rows split into ``n_files`` Parquet shards in a shuffled order."""
    d.mkdir(parents=True, exist_ok=True)
    perm = np.random.default_rng(seed).permutation(len(table))
    t = table.take(pa.array(perm))
    cuts = np.linspace(0, len(t), n_files + 1).astype(int)
    for j in range(n_files):
        pq.write_table(t.slice(cuts[j], cuts[j + 1] - cuts[j]), d / f"shard_{j:03d}.parquet",
                       row_group_size=max(1, (cuts[j + 1] - cuts[j]) // 2))
    return d


def run_case(name: str, src: Path, out: Path, *, threads: Optional[int] = None, on_error: str = "fail",
             after: Optional[Callable[[str, int], None]] = None) -> Dict[str, Any]:
    from fastcurate.runner.local import run_stage

    c = CASES[name]()
    return run_stage(c.make_stage(), [src], out, columns=c.columns, batch_size=c.batch_size, threads=threads,
                     on_error=on_error, progress=False, _after_shard=after)
