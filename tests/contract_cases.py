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


def group_table(n: int, seed: int = 0) -> pa.Table:
    """Rows of web pages: a page URL per row (some null, one page too large, single-row pages),
    JPEGs with byte-identical and re-encoded copies inside a page and across pages, captions
    (some too short or file names), original sizes (some too small)."""
    from PIL import Image

    rng = np.random.default_rng(seed)

    def photo(k: int, q: int, size: int = 48) -> bytes:
        r = np.random.default_rng(2000 + k)
        base = r.normal(0, 1, (8, 8, 3))
        img = Image.fromarray(np.clip(128 + 60 * base, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        b = io.BytesIO()
        img.save(b, "JPEG", quality=q)
        return b.getvalue()

    pool = ["a red dress with long sleeves", "blue denim jacket on a hanger", "IMG_0042.JPG", "two", None,
            "black leather shoes with laces", "a straw hat for the summer"]
    pages, imgs, caps, w = [], [], [], []
    for i in range(n):
        p = int(rng.integers(0, n // 6))
        page = None if i % 31 == 7 else ("https://shop.example/big" if i % 5 == 0 else f"https://shop.example/p{p}")
        k = p * 3 + int(rng.integers(0, 3))  # a few distinct photos per page, so copies occur inside pages
        pages.append(page)
        imgs.append(photo(k, 90 if rng.random() < 0.6 else int(rng.integers(50, 95))))
        caps.append(pool[int(rng.integers(0, len(pool)))])
        w.append(int(rng.choice([120, 400, 640, 800])))
    return pa.table({"uid": pa.array([None if i % 43 == 11 else f"g{i:04d}" for i in range(n)], pa.string()),
                     "page_url": pa.array(pages, pa.string()),
                     "jpg": pa.array(imgs, pa.binary()), "caption": pa.array(caps, pa.string()),
                     "width": pa.array(w, pa.int64()), "height": pa.array(w, pa.int64())})


def _group() -> Any:
    from fastcurate.stages.group.stage import GroupStage

    return GroupStage(key_column="page_url", max_group_size=12)


CASES["group"] = lambda: Case(group_table(120), _group, batch_size=17)


ANNOTATE_ENTRIES = ["dress", "red dress", "red", "shoes", "leather", "hat", "straw hat", "summer", "photo", "a", "by",
                    "8", "blue", "jacket", "denim"]


def annotate_table(n: int, seed: int = 0) -> pa.Table:
    """Captions (some null or matching nothing), and embed's image_labels column for some rows."""
    rng = np.random.default_rng(seed)
    pool = ["a red dress by the sea", "Red Dress, Summer photo", "blue denim jacket", "leather shoes size 8",
            "a straw hat", "nothing to see here", None, "Photo by a friend"]
    caps = [pool[int(rng.integers(0, len(pool)))] for _ in range(n)]
    lab_t = pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float32())]))
    labs = [None if i % 7 == 3 else [{"label": "cardigan", "score": 0.6}, {"label": "sandal", "score": 0.05}]
            if i % 2 else [{"label": "cowboy hat", "score": 0.3}] for i in range(n)]
    return pa.table({"uid": pa.array([None if i % 41 == 9 else f"a{i:04d}" for i in range(n)], pa.string()),
                     "caption": pa.array(caps, pa.string()), "image_labels": pa.array(labs, lab_t)})


def _annotate() -> Any:
    from fastcurate.stages.annotate.stage import AnnotateStage

    return AnnotateStage(metadata=ANNOTATE_ENTRIES, min_text_score=0.05)


CASES["annotate"] = lambda: Case(annotate_table(300), _annotate)


def pairs_table(n: int, seed: int = 0) -> pa.Table:
    """Grouped rows with image and text embeddings (f16, some null), annotate-style labels and a
    clip_score: groups of 1 to 9 rows and one large group (the cap bites), null groups; inside a
    group some near duplicates, related and unrelated rows."""
    rng = np.random.default_rng(seed)
    d = 16
    groups, img, txt, labels = [], [], [], []
    centers = rng.normal(size=(n // 4 + 2, d))
    words = ["dress", "shoe", "hat", "red", "blue", "cotton", "wool", "bag"]
    lab_t = pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("source", pa.string()),
                                pa.field("score", pa.float32())]))
    for i in range(n):
        g = 0 if i % 6 == 0 else int(rng.integers(1, n // 5))
        groups.append(None if i % 29 == 4 else f"page{g}")
        c = centers[g]
        kind = rng.random()
        v = c + (0.05 if kind < 0.2 else 0.8 if kind < 0.7 else 3.0) * rng.normal(size=d)
        img.append(v)
        txt.append(c + rng.normal(size=d))
        ls = sorted(set(words[int(k)] for k in rng.integers(0, len(words), size=int(rng.integers(0, 4)))))
        labels.append([{"label": w, "source": "metaclip", "score": 0.5} for w in ls])
    img_a = np.asarray(img, np.float16)
    txt_a = np.asarray(txt, np.float16)
    img_mask = np.array([i % 23 == 5 for i in range(n)])

    def f16(a: np.ndarray, mask: Optional[np.ndarray] = None) -> pa.Array:
        flat = pa.array(a.reshape(-1), pa.float16())
        return pa.FixedSizeListArray.from_arrays(flat, d, mask=None if mask is None else pa.array(mask))

    return pa.table({"uid": pa.array([None if i % 53 == 7 else f"p{i:04d}" for i in range(n)], pa.string()),
                     "group": pa.array(groups, pa.string()), "image_emb": f16(img_a, img_mask),
                     "text_emb": f16(txt_a), "clip_score": pa.array(rng.random(n).astype(np.float32)),
                     "labels": pa.array(labels, lab_t)})


def _pairs() -> Any:
    from fastcurate.stages.pairs.stage import PairsStage

    return PairsStage(max_pairs_per_group=4, calibration_pairs=500, max_type_ratio=1.5)


CASES["pairs"] = lambda: Case(pairs_table(400), _pairs, batch_size=37, float_columns=("image_emb", "text_emb"))


def instruct_table(n: int, seed: int = 0) -> pa.Table:
    """Rows with captions and labels; the pairs file names most of them (and a few uids that are
    not in the table)."""
    rng = np.random.default_rng(seed)
    words = ["dress", "shoe", "hat", "red", "blue", "cotton", "wool", "bag", "leather"]
    lab_t = pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("source", pa.string()),
                                pa.field("score", pa.float32())]))
    labels = [[{"label": words[int(k)], "source": "metaclip", "score": 0.5}
               for k in sorted(set(rng.integers(0, len(words), size=int(rng.integers(0, 4)))))] for _ in range(n)]
    return pa.table({"uid": pa.array([None if i % 37 == 2 else f"t{i:04d}" for i in range(n)], pa.string()),
                     "caption": pa.array([f"item {i} in {words[i % len(words)]}" for i in range(n)], pa.string()),
                     "labels": pa.array(labels, lab_t)})


def instruct_pairs_file(n: int, seed: int = 0) -> Path:
    """A deterministic pairs.parquet over instruct_table(n)'s uids, in the temp directory (written
    once; its name holds its content's hash, so every process builds the same stage)."""
    import hashlib
    import tempfile

    rng = np.random.default_rng(seed + 1)
    q = [f"t{int(i):04d}" for i in rng.integers(0, n + 5, size=n // 2)]
    t = [f"t{int(i):04d}" for i in rng.integers(0, n + 5, size=n // 2)]
    keep = [a != b for a, b in zip(q, t)]
    tab = pa.table({"query_uid": pa.array([a for a, k in zip(q, keep) if k], pa.string()),
                    "target_uid": pa.array([b for b, k in zip(t, keep) if k], pa.string()),
                    "group": pa.array([f"page{i % 7}" for i, k in enumerate(keep) if k], pa.string())})
    buf = io.BytesIO()
    pq.write_table(tab, buf)
    data = buf.getvalue()
    path = Path(tempfile.gettempdir()) / f"fastcurate-contract-pairs-{hashlib.sha256(data).hexdigest()[:16]}.parquet"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def _instruct() -> Any:
    from fastcurate.stages.instruct.stage import InstructStage

    return InstructStage(backend="offline", pairs=instruct_pairs_file(200))


CASES["instruct"] = lambda: Case(instruct_table(200), _instruct, batch_size=31)
