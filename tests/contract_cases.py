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
             after: Optional[Callable[[str, int], None]] = None, stage: Any = None, **kw: Any) -> Dict[str, Any]:
    """Run the case's stage (or ``stage``) over ``src``; ``kw`` goes to run_stage (``engine``,
    ``ray_address``)."""
    from fastcurate.runner.local import run_stage

    c = CASES[name]()
    return run_stage(stage if stage is not None else c.make_stage(), [src], out, columns=c.columns,
                     batch_size=c.batch_size, threads=threads, on_error=on_error, progress=False,
                     _after_shard=after, **kw)


def filter_table(n: int, seed: int = 0) -> pa.Table:
    """Real-looking captions (English, French, file names, URLs, too short), original sizes (some
    null, small or elongated) and CLIP scores (some null)."""
    rng = np.random.default_rng(seed)
    pool = ["a brown dog runs along the beach at sunset", "two children playing football in a park",
            "un chien brun court sur la plage au coucher du soleil", "IMG_0042.JPG", "DSC01234",
            "http://example.com/images/photo.jpg", "click here", "cat", "red car parked on a city street",
            "a bowl of fresh fruit on a wooden table", None, "stock photo", "mountain lake with snowy peaks",
            "IMG_0042.JPG DSC_0043.JPG P1010001.JPG", "IMG 20190704 153012"]
    caps = [pool[int(rng.integers(0, len(pool)))] for _ in range(n)]
    caps = [c if c is None else f"{c} {i}" if rng.random() < 0.5 and " " in c else c for i, c in enumerate(caps)]
    w = rng.integers(50, 1200, size=n)
    h = (w * rng.choice([0.25, 0.75, 1.0, 1.5, 4.0], size=n)).astype(np.int64)
    wn = [None if i % 37 == 3 else int(v) for i, v in enumerate(w)]
    score = [None if i % 41 == 6 else float(s) for i, s in enumerate(rng.normal(0.3, 0.05, size=n))]
    uids = [None if i % 97 == 5 else f"f{i:05d}" for i in range(n)]
    return pa.table({"uid": pa.array(uids, pa.string()), "caption": pa.array(caps, pa.string()),
                     "original_width": pa.array(wn, pa.int64()), "original_height": pa.array(h, pa.int64()),
                     "clip_score": pa.array(score, pa.float32())})


def _filter() -> Any:
    from fastcurate.stages.filter.stage import FilterStage

    return FilterStage(clip_score_top=0.5)


CASES["filter"] = lambda: Case(filter_table(900), _filter)


def dedup_table(n: int, seed: int = 0) -> pa.Table:
    """Small photos-like JPEGs: byte-identical copies, re-encoded copies (other bytes, same image),
    distinct images, a null and a garbage image; captions; original sizes for the keep rule."""
    from PIL import Image

    rng = np.random.default_rng(seed)

    def photo(k: int, q: int, size: int = 64) -> bytes:
        r = np.random.default_rng(1000 + k)  # image k: a smooth random field, so hashes are stable
        base = r.normal(0, 1, (8, 8, 3))
        img = Image.fromarray(np.clip(128 + 60 * base, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        b = io.BytesIO()
        img.save(b, "JPEG", quality=q)
        return b.getvalue()

    n_distinct = max(4, n // 4)
    imgs, caps, w = [], [], []
    for i in range(n):
        k = int(rng.integers(0, n_distinct))
        kind = rng.random()
        q = 90 if kind < 0.5 else int(rng.integers(40, 95))  # half exact copies of q=90, half re-encoded
        imgs.append(photo(k, q))
        caps.append(f"photo number {k}")
        w.append(int(rng.integers(100, 900)))
    imgs[1] = None
    imgs[3] = b"garbage bytes"
    return pa.table({"uid": pa.array([f"d{i:04d}" for i in range(n)]), "jpg": pa.array(imgs, pa.binary()),
                     "caption": caps, "width": pa.array(w, pa.int64()), "height": pa.array(w, pa.int64())})


def _dedup() -> Any:
    from fastcurate.stages.dedup.stage import DedupStage

    return DedupStage(exact=("image",), near=True)


CASES["dedup"] = lambda: Case(dedup_table(60), _dedup, batch_size=11)


def embedding_table(n: int, d: int = 16, k: int = 5, seed: int = 0) -> pa.Table:
    """Rows of `fastcurate embed`'s output: k well-separated directions plus noise (float16 lists),
    a few null and all-zero embeddings, captions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    lab = rng.integers(0, k, size=n)
    x = centres[lab] + 0.35 * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = x.astype(np.float16)
    x[4] = 0  # all zeros: no direction
    flat = pa.array(x.reshape(-1), pa.float16())
    mask = np.zeros(n, bool)
    mask[2] = True  # null embedding
    emb = pa.FixedSizeListArray.from_arrays(flat, d, mask=pa.array(mask))
    return pa.table({"uid": pa.array([f"e{i:04d}" for i in range(n)]), "caption": [f"topic {t} item {i}" for i, t in enumerate(lab)],
                     "image_emb": emb})


def _cluster() -> Any:
    from fastcurate.stages.cluster.stage import ClusterStage

    return ClusterStage(k=5, samples=3, tsne_rows=0)


CASES["cluster"] = lambda: Case(embedding_table(400), _cluster, float_columns=("cos_to_centroid",))


def near_duplicate_embeddings(n: int, d: int = 16, seed: int = 0) -> pa.Table:
    """embedding_table plus exact copies (equal embeddings under other uids: the kept one must not
    depend on the layout) and slightly perturbed copies."""
    t = embedding_table(n, d=d, k=4, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = t.column("image_emb").combine_chunks().values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, d)
    src = rng.choice(np.arange(10, n), size=n // 5, replace=False)
    y = x[src].copy()
    y[len(y) // 2:] += 0.01 * rng.normal(size=(len(y) - len(y) // 2, d))
    flat = pa.array(np.concatenate([x, y]).astype(np.float16).reshape(-1), pa.float16())
    mask = np.zeros(n + len(y), bool)
    mask[2] = True
    emb = pa.FixedSizeListArray.from_arrays(flat, d, mask=pa.array(mask))
    uids = t.column("uid").to_pylist() + [f"copy{i:04d}" for i in range(len(y))]
    caps = t.column("caption").to_pylist() + [f"copy of {t.column('uid')[int(s)].as_py()}" for s in src]
    return pa.table({"uid": uids, "caption": caps, "image_emb": emb})


def _semdedup() -> Any:
    from fastcurate.stages.semdedup.stage import SemDedupStage

    return SemDedupStage(eps=0.02, k=4, eps_report=(0.001, 0.1))


CASES["semdedup"] = lambda: Case(near_duplicate_embeddings(300), _semdedup)


# ---- judge: the output of `fastcurate cluster` (rows with a cluster column) and its clusters.parquet
_SUBJECTS = ["red fox", "old lighthouse", "wooden violin", "steam train", "bowl of ramen", "snowy owl", "city tram",
             "vintage typewriter", "sailing boat", "brown bear", "glass teapot", "mountain goat", "leather boots",
             "street musician", "paper lantern", "golden retriever", "stone bridge", "hot air balloon", "tabby cat",
             "fishing harbour", "desert cactus", "ceramic vase", "marching band", "rice terrace", "racing bicycle"]
_PLACES = ["in the snow", "at dusk", "on a wooden table", "near the river", "under a cloudy sky", "in a busy market",
           "by the sea", "in autumn light", "on a quiet street", "inside a museum"]
_FORMS = ["A {a} {p}", "{A} photographed {p}", "Close-up of a {a}", "Watercolor painting of a {a} {p}",
          "Two children looking at a {a}", "Map showing where to find the {a}", "The {a}, seen from above",
          "Black and white photo of a {a} {p}"]


def varied_caption(rng: np.random.Generator) -> str:
    a = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
    f = _FORMS[int(rng.integers(len(_FORMS)))]
    return f.format(a=a, A=a.capitalize(), p=_PLACES[int(rng.integers(len(_PLACES)))])


def judge_tables(n: int, k: int = 24, d: int = 16, seed: int = 0) -> "tuple[pa.Table, pa.Table]":
    """(rows, clusters): rows as `fastcurate cluster` writes them (uid, caption, cluster,
    cos_to_centroid; some null uids and some rows without a cluster) and the clusters table
    (clusters.parquet's columns) of k clusters: varied captions (the offline judge finds most High
    Value, a few Low Value for repetitive wording or a narrow topic), camera file names, a numbered
    template, and a last cluster with no samples (judged "error") that still has rows."""
    rng = np.random.default_rng(seed)
    caps: list = []
    for c in range(k):
        if c == k - 1:
            caps.append([])
        elif c == k - 2:
            caps.append([f"Lot {int(rng.integers(1, 300))}: oak dining chair" for _ in range(5)])
        elif c == k - 3:
            caps.append([f"IMG_{int(rng.integers(1000, 9999))}.JPG" for _ in range(5)])
        else:
            caps.append([varied_caption(rng) for _ in range(5)])
    lab = rng.integers(0, k, size=n)
    uids = [None if i % 89 == 3 else f"j{i:05d}" for i in range(n)]
    cluster = [None if i % 31 == 4 else int(c) for i, c in enumerate(lab)]
    text = [caps[c][int(rng.integers(len(caps[c])))] if caps[c] else varied_caption(rng) for c in lab]
    rows = pa.table({"uid": pa.array(uids, pa.string()), "caption": text, "cluster": pa.array(cluster, pa.int32()),
                     "cos_to_centroid": pa.array(rng.uniform(0.2, 0.9, n).astype(np.float32))})

    def embs(m: int) -> list:
        return rng.normal(size=(m, d)).astype(np.float32).tolist()

    members = [[u for u, c in zip(uids, cluster) if c == j and u is not None] for j in range(k)]
    clusters = pa.table({
        "cluster": pa.array(np.arange(k, dtype=np.int32)),
        "size": pa.array([int((lab == j).sum()) for j in range(k)], pa.int64()),
        "closest_uid": pa.array([m[:len(c)] for m, c in zip(members, caps)], pa.list_(pa.string())),
        "closest": pa.array(caps, pa.list_(pa.string())),
        "closest_emb": pa.array([embs(len(c)) for c in caps], pa.list_(pa.list_(pa.float32(), d))),
        "furthest_uid": pa.array([m[-2:] if c else [] for m, c in zip(members, caps)], pa.list_(pa.string())),
        "furthest": pa.array([[varied_caption(rng) for _ in range(2)] if c else [] for c in caps],
                             pa.list_(pa.string())),
        "furthest_emb": pa.array([embs(2 if c else 0) for c in caps], pa.list_(pa.list_(pa.float32(), d))),
    })
    return rows, clusters


def stage_file(table: pa.Table, name: str) -> Path:
    """``table`` as Parquet file ``name`` in a directory named by its content (so a case rebuilt in
    the kill tests' subprocess finds the same file, same mtime: the same manifest). Removed at exit
    by the process that wrote it."""
    import atexit
    import hashlib
    import shutil
    import tempfile

    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    data = buf.getvalue().to_pybytes()
    d = Path(tempfile.gettempdir()) / f"fastcurate-case-{hashlib.sha256(data).hexdigest()[:16]}"
    path = d / name
    if not path.is_file():
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
        atexit.register(shutil.rmtree, d, True)
    return path


def _judge_case() -> Case:
    from fastcurate.stages.judge.stage import JudgeStage

    rows, clusters = judge_tables(700)
    path = stage_file(clusters, "clusters.parquet")
    # drop_unjudged: every drop reason occurs (Low Value, the sample-less cluster, rows without a cluster)
    return Case(rows, lambda: JudgeStage(backend="offline", with_furthest=True, drop_unjudged=True,
                                         clusters_file=path))


CASES["judge"] = _judge_case
