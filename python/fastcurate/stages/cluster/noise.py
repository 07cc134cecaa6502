"""The noise study (docs/cluster.md, "Noise study"): how injected junk changes a k-means clustering.

The seed's step 6 ("introduce challenging data, e.g. noisy, and observe its impact on clustering"),
made measurable. For every noise *kind* and *rate* the study

1. injects ``round(rate * n)`` rows of that kind into the ``n`` clean rows (added, never replacing a
   clean row, so that the clean rows can be compared one for one);
2. embeds them with the same encoder as the clean rows;
3. clusters the noisy set with the same k-means (same k, metric, iterations, seed) as the clean set,
   twice: a *refit* (what rerunning the pipeline gives) and a *warm start* from the clean
   centroids (the injected rows' own pull, free of k-means's dependence on its initialisation);
4. measures the silhouette, the ARI / NMI of the clean rows' clusters against the clean clustering
   (and against ground-truth classes when the data has them), and where the injected rows land.

Kinds. Images: ``exact_dup`` (a copy of a clean image), ``near_dup`` (a crop, a resize and a JPEG
re-encode of a clean image), ``blank`` (one solid colour), ``random_noise`` (uniform random pixels).
Texts: ``exact_dup``, ``near_dup`` (one to three character edits: deletion, insertion, swap, case,
punctuation), ``filename`` (camera / phone / screenshot file names such as ``IMG_2041.JPG``).

Determinism: everything is a pure function of ``seed`` (and the data): the injected items of a kind
do not depend on the rates asked for (the rows injected at a rate are the first ``round(rate * n)``
of that kind's list, so a higher rate's set contains a lower rate's), nor on which other kinds run.

Thread safety: :func:`noise_study` holds no global state; concurrent calls are independent (each
opens its own encoder).
"""

from __future__ import annotations

import io
import math
import os
import time
import zlib
from collections.abc import Sequence as _SequenceABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import InputError, InputTypeError, ModelError

__all__ = [
    "IMAGE_KINDS",
    "TEXT_KINDS",
    "DEFAULT_RATES",
    "Injection",
    "NoiseStudyResult",
    "make_injection",
    "noise_study",
    "adjusted_rand_index",
    "normalized_mutual_info",
    "filename_caption",
    "edit_caption",
]

IMAGE_KINDS: Tuple[str, ...] = ("exact_dup", "near_dup", "blank", "random_noise")
TEXT_KINDS: Tuple[str, ...] = ("exact_dup", "near_dup", "filename")
DEFAULT_RATES: Tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3)
# kinds whose injected rows copy or alter one clean row (their "source")
_SOURCED = ("exact_dup", "near_dup")
# a cluster whose members are at least this share injected is a "noise cluster"
NOISE_CLUSTER_SHARE = 0.5

EmbedFn = Callable[[Sequence[Any]], np.ndarray]


# ---------------------------------------------------------------------------------------------
# clustering agreement: ARI and NMI (scikit-learn's definitions, checked against it in the tests)


def _encode(labels: Any, what: str) -> np.ndarray:
    """Any hashable labels -> int64 codes 0..c-1 (first-appearance order; the scores do not depend on it)."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        _, inv = np.unique(labels, return_inverse=True)
        return inv.astype(np.int64).ravel()
    codes: Dict[Any, int] = {}
    out = np.empty(len(labels), np.int64)
    for i, v in enumerate(labels):
        try:
            out[i] = codes.setdefault(v, len(codes))
        except TypeError:
            raise InputTypeError(f"{what}: label {i} ({v!r}) is not hashable") from None
    return out


def _contingency(a: Any, b: Any) -> np.ndarray:
    x, y = _encode(a, "labels_a"), _encode(b, "labels_b")
    if len(x) != len(y):
        raise InputError(f"the two labelings have different lengths ({len(x)} and {len(y)})")
    if len(x) == 0:
        return np.zeros((0, 0), np.int64)
    c = np.zeros((int(x.max()) + 1, int(y.max()) + 1), np.int64)
    np.add.at(c, (x, y), 1)
    return c


def adjusted_rand_index(a: Any, b: Any) -> float:
    """Adjusted Rand index of two labelings of the same rows (Hubert & Arabie; scikit-learn's
    ``adjusted_rand_score``: 1.0 for identical partitions up to renaming, ~0 for independent ones,
    1.0 when both put every row in one cluster or every row alone). Pair counts in exact integers."""
    c = _contingency(a, b)
    n = int(c.sum())
    if n == 0:
        return 1.0
    ss = int((c.astype(object) ** 2).sum()) if c.size else 0
    rows = c.sum(axis=1).astype(object)
    cols = c.sum(axis=0).astype(object)
    # pair confusion (ordered pairs): tp same/same, fp/fn split, tn apart/apart
    tp = ss - n
    fp = int((c.astype(object) @ cols).sum()) - ss
    fn = int((c.T.astype(object) @ rows).sum()) - ss
    tn = n * n - fp - fn - ss
    if fn == 0 and fp == 0:
        return 1.0
    return float(2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)))


def normalized_mutual_info(a: Any, b: Any) -> float:
    """Normalised mutual information, arithmetic-mean normalisation (scikit-learn's
    ``normalized_mutual_info_score`` default): MI / ((H(a) + H(b)) / 2); 1.0 when both labelings
    have a single cluster, 0.0 when the mutual information is 0."""
    c = _contingency(a, b)
    n = float(c.sum())
    if c.shape[0] == c.shape[1] and c.shape[0] <= 1:
        return 1.0
    if ((c > 0).sum(axis=0) == 1).all() and ((c > 0).sum(axis=1) == 1).all():
        return 1.0  # the same partition up to renaming: MI = H(a) = H(b) exactly (no rounding)
    nz = c[c > 0].astype(np.float64)
    ri, ci = np.nonzero(c)
    pi = c.sum(axis=1).astype(np.float64)
    pj = c.sum(axis=0).astype(np.float64)
    mi = float(np.sum(nz / n * (np.log(nz * n) - np.log(pi[ri]) - np.log(pj[ci]))))
    if mi <= 1e-15:  # rounding of an exact zero (independent labelings)
        return 0.0

    def h(p: np.ndarray) -> float:
        p = p[p > 0] / n
        return float(-(p * np.log(p)).sum())

    return float(mi / max((h(pi) + h(pj)) / 2.0, np.finfo(np.float64).eps))


# ---------------------------------------------------------------------------------------------
# injected items


def _kind_code(kind: str) -> int:
    # per-kind stream of random numbers, independent of which other kinds run
    return zlib.crc32(kind.encode("utf-8"))


class _Lazy(_SequenceABC):
    """A read-only sequence whose items are built on access: a few hundred random-noise images would
    otherwise sit in memory at once. Iterating builds them one at a time."""

    def __init__(self, n: int, build: Callable[[int], Any]) -> None:
        self._n = int(n)
        self._build = build

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._build(i)

    def __iter__(self) -> Iterator[Any]:
        for i in range(self._n):
            yield self._build(i)


@dataclass
class Injection:
    """The rows of one noise kind, for the largest rate: ``items[:m]`` are injected at a rate with
    ``round(rate * n) == m``. ``items`` holds what the encoder reads (image bytes / PIL images, or
    strings); ``source[i]`` is the clean row an item copies or alters (-1: none);
    ``description[i]`` says how it was made."""

    kind: str
    items: Sequence[Any]
    source: np.ndarray
    description: List[str]


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _load_rgb(src: Any, row: int) -> Any:
    from ...models.preprocess import ImageError, decode_image

    try:
        img = decode_image(src, name=f"image row {row}")
    except ImageError as e:
        raise InputError(f"cannot make a near duplicate of image row {row}: {e}") from None
    return img.convert("RGB")


def _near_dup_image(src: Any, row: int, p: Dict[str, float]) -> bytes:
    """Crop (keeping p['cw'] x p['ch'] of the sides at a random offset), resize by p['scale'],
    re-encode as JPEG at p['quality']: what a re-upload of the same photo looks like."""
    from PIL import Image

    img = _load_rgb(src, row)
    w, h = img.size
    cw, ch = max(1, int(round(w * p["cw"]))), max(1, int(round(h * p["ch"])))
    x0, y0 = int(round((w - cw) * p["ox"])), int(round((h - ch) * p["oy"]))
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    nw, nh = max(1, int(round(cw * p["scale"]))), max(1, int(round(ch * p["scale"])))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(p["quality"]))
    return buf.getvalue()


_FILENAME_TEMPLATES = (
    lambda r: f"IMG_{r.integers(0, 10000):04d}.JPG",
    lambda r: f"IMG_{r.integers(0, 10000):04d}.jpg",
    lambda r: f"DSC{r.integers(0, 100000):05d}.jpg",
    lambda r: f"DSC_{r.integers(0, 10000):04d}.JPG",
    lambda r: f"P{r.integers(1000000, 10000000)}.JPG",
    lambda r: f"PXL_{_date(r, '')}_{r.integers(0, 10**9):09d}.jpg",
    lambda r: f"{_date(r, '')}_{r.integers(0, 24):02d}{r.integers(0, 60):02d}{r.integers(0, 60):02d}.jpg",
    lambda r: f"Screenshot {_date(r, '-')} at {r.integers(0, 24):02d}.{r.integers(0, 60):02d}.{r.integers(0, 60):02d}.png",
    lambda r: f"image{r.integers(0, 1000)}.png",
    lambda r: f"photo_{r.integers(0, 100000)}.jpeg",
    lambda r: f"{r.integers(0, 2**32):08x}-{r.integers(0, 2**16):04x}.jpg",
    lambda r: f"WhatsApp Image {_date(r, '-')} at {r.integers(1, 13)}.{r.integers(0, 60):02d}.{r.integers(0, 60):02d} PM.jpeg",
)


def _date(r: np.random.Generator, sep: str) -> str:
    return f"{r.integers(2010, 2025)}{sep}{r.integers(1, 13):02d}{sep}{r.integers(1, 29):02d}"


def filename_caption(rng: np.random.Generator) -> str:
    """A camera / phone / screenshot file name used as a caption (``IMG_2041.JPG``, ``DSC00123.jpg``,
    ``PXL_20210314_123456789.jpg``, ...), drawn with ``rng``."""
    return str(_FILENAME_TEMPLATES[int(rng.integers(0, len(_FILENAME_TEMPLATES)))](rng))


_PUNCT = ".,!?;:-"


def edit_caption(text: str, rng: np.random.Generator) -> Tuple[str, str]:
    """One to three small edits of ``text`` (delete / insert / duplicate / swap a character, change
    the case of a word, add punctuation): a near duplicate. Returns (new text, what was done); the
    new text always differs from ``text``."""
    s = list(text)
    done: List[str] = []
    for _ in range(int(rng.integers(1, 4))):
        op = ("delete", "insert", "duplicate", "swap", "case", "punct")[int(rng.integers(0, 6))]
        if op in ("delete", "duplicate", "swap", "case") and not s:
            op = "insert"
        if op == "swap" and len(s) < 2:
            op = "insert"
        if op == "delete":
            i = int(rng.integers(0, len(s)))
            del s[i]
        elif op == "insert":
            i = int(rng.integers(0, len(s) + 1))
            s.insert(i, "abcdefghijklmnopqrstuvwxyz "[int(rng.integers(0, 27))])
        elif op == "duplicate":
            i = int(rng.integers(0, len(s)))
            s.insert(i, s[i])
        elif op == "swap":
            i = int(rng.integers(0, len(s) - 1))
            s[i], s[i + 1] = s[i + 1], s[i]
        elif op == "case":
            t = "".join(s)
            s = list(t.upper() if rng.random() < 0.3 else (t.lower() if t != t.lower() else t.capitalize()))
        else:
            s.append(_PUNCT[int(rng.integers(0, len(_PUNCT)))])
        done.append(op)
    out = "".join(s)
    if out == text:  # e.g. a case change of a caption without letters: append a mark instead
        out = text + "!"
        done.append("punct")
    return out, "edit " + "+".join(done)


def make_injection(kind: str, data: Sequence[Any], modality: str, m: int, seed: int = 0) -> Injection:
    """The first ``m`` injected rows of ``kind`` for the clean rows ``data`` (images: paths, bytes or
    PIL images; texts: strings). Rows with a source draw it from a seeded permutation of the clean
    rows (no row twice while m <= n); item i's parameters come from its own generator seeded by
    (seed, kind, i), so the first items do not depend on ``m``."""
    _check_kinds([kind], modality)
    n = len(data)
    if m < 0 or (kind in _SOURCED and m > n):
        raise InputError(f"cannot inject {m} {kind} rows into {n} clean rows")
    code = _kind_code(kind)
    perm = np.random.default_rng([seed, code]).permutation(n)[:m] if kind in _SOURCED else np.full(m, -1)
    source = np.asarray(perm, np.int64)

    def rng(i: int) -> np.random.Generator:
        return np.random.default_rng([seed, code, 1, i])

    if modality == "text":
        if kind == "exact_dup":
            texts = [str(data[int(s)]) for s in source]
            desc = [f"copy of row {int(s)}" for s in source]
        elif kind == "near_dup":
            texts, desc = [], []
            for i, s in enumerate(source):
                t, d = edit_caption(str(data[int(s)]), rng(i))
                texts.append(t)
                desc.append(f"{d} of row {int(s)}")
        else:  # filename
            texts = [filename_caption(rng(i)) for i in range(m)]
            desc = ["file name" for _ in range(m)]
        return Injection(kind, texts, source, desc)

    if kind == "exact_dup":
        src_items = [data[int(s)] for s in source]
        return Injection(kind, src_items, source, [f"copy of row {int(s)}" for s in source])
    if kind == "near_dup":
        params = []
        for i in range(m):
            r = rng(i)
            params.append({"cw": float(r.uniform(0.8, 0.95)), "ch": float(r.uniform(0.8, 0.95)),
                           "ox": float(r.random()), "oy": float(r.random()), "scale": float(r.uniform(0.5, 0.9)),
                           "quality": int(r.integers(25, 76))})
        desc = [f"crop {p['cw']:.2f}x{p['ch']:.2f}, resize x{p['scale']:.2f}, JPEG q{p['quality']} of row {int(s)}"
                for p, s in zip(params, source)]
        return Injection(kind, _Lazy(m, lambda i: _near_dup_image(data[int(source[i])], int(source[i]), params[i])),
                         source, desc)
    if kind == "blank":
        spec = []
        for i in range(m):
            r = rng(i)
            spec.append((tuple(int(v) for v in r.integers(0, 256, 3)), int(r.integers(256, 801)),
                         int(r.integers(256, 801))))
        desc = [f"solid rgb{c} {w}x{h}" for c, w, h in spec]

        def blank(i: int) -> Any:
            from PIL import Image

            c, w, h = spec[i]
            return Image.new("RGB", (w, h), c)

        return Injection(kind, _Lazy(m, blank), source, desc)
    # random_noise
    sizes = []
    for i in range(m):
        r = rng(i)
        sizes.append((int(r.integers(224, 641)), int(r.integers(224, 641))))
    desc = [f"uniform random pixels {w}x{h}" for w, h in sizes]

    def noise(i: int) -> Any:
        from PIL import Image

        w, h = sizes[i]
        px = np.random.default_rng([seed, code, 2, i]).integers(0, 256, (h, w, 3), dtype=np.uint8)
        return Image.fromarray(px, "RGB")

    return Injection(kind, _Lazy(m, noise), source, desc)


# ---------------------------------------------------------------------------------------------
# validation


def _check_kinds(kinds: Sequence[str], modality: str) -> None:
    valid = IMAGE_KINDS if modality == "image" else TEXT_KINDS
    for k in kinds:
        if k not in valid:
            other = TEXT_KINDS if modality == "image" else IMAGE_KINDS
            hint = f" ({k!r} is {'a text' if modality == 'image' else 'an image'} kind)" if k in other else ""
            raise InputError(f"unknown noise kind {k!r} for {modality} data{hint}; the {modality} kinds are "
                             f"{', '.join(valid)}")


def _check_rates(rates: Sequence[Any]) -> List[float]:
    if isinstance(rates, (str, bytes)) or not hasattr(rates, "__iter__"):
        raise InputTypeError(f"rates must be a list of numbers in [0, 1), got {rates!r}")
    out: List[float] = []
    for r in rates:
        try:
            v = float(r)
        except (TypeError, ValueError):
            raise InputError(f"rate {r!r} is not a number; rates are shares of the clean rows in [0, 1)") from None
        if not (math.isfinite(v) and 0.0 <= v < 1.0):
            raise InputError(f"rate {r!r} is outside [0, 1): a rate is the number of injected rows as a share of "
                             "the clean rows (0.2 adds one injected row per five clean rows)")
        if v in out:
            raise InputError(f"rate {v} is given twice")
        out.append(v)
    if not out:
        raise InputError("no rates: pass at least one rate in [0, 1), e.g. 0, 0.1, 0.2")
    return sorted(out)


def _check_data(data: Any, modality: str) -> List[Any]:
    if modality not in ("image", "text"):
        raise InputError(f"modality must be 'image' or 'text', got {modality!r}")
    if isinstance(data, (str, bytes, os.PathLike)):
        raise InputTypeError(f"data must be a sequence of {'images' if modality == 'image' else 'captions'}, "
                             "not a single one: wrap it in a list")
    items = list(data)
    if not items:
        raise InputError(f"no {'images' if modality == 'image' else 'captions'} to study: the input is empty")
    if modality == "text":
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise InputTypeError(f"caption row {i} is {'null' if t is None else type(t).__name__}, not a "
                                     "string: drop or fill the null captions first")
    else:
        missing = [i for i, x in enumerate(items) if _is_path(x) and not Path(x).is_file()]
        if missing:
            i = missing[0]
            raise InputError(f"image row {i}: {os.fspath(items[i])} does not exist or is not a file "
                             f"({len(missing)} of the {len(items)} image paths are missing)")
    return items


def _checked_embeddings(e: Any, n: int, what: str, dim: Optional[int] = None) -> np.ndarray:
    a = np.asarray(e)
    if a.ndim != 2 or len(a) != n:
        raise ModelError(f"{what}: the encoder returned shape {a.shape}, expected ({n}, d)")
    if dim is not None and a.shape[1] != dim:
        raise ModelError(f"{what}: {a.shape[1]}-d embeddings, but the clean rows have {dim}: use the same encoder")
    a = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise ModelError(f"{what}: row {int(np.flatnonzero(bad)[0])} of the embeddings is NaN or infinite "
                         f"({int(bad.sum())} such rows)")
    return a


# ---------------------------------------------------------------------------------------------
# encoders from a bundle


class _BundleEmbed:
    """``embed(items)`` with the encoder a bundle calls for; opened once, closed by :meth:`close`."""

    def __init__(self, bundle: Any, modality: str, device: str, batch_size: Optional[int],
                 threads: Optional[int]) -> None:
        from ...models import ClipEncoder, ImageEncoder, TextEncoder, load_bundle

        b = load_bundle(bundle)
        self.bundle = b
        self.modality = modality
        self.batch_size = batch_size
        if modality == "text":
            self.enc: Any = TextEncoder(b, device=device, intra_op_threads=threads)
        elif b.kind == "image":
            self.enc = ImageEncoder(b, device=device, intra_op_threads=threads, decode_threads=threads)
        elif b.kind == "clip":
            self.enc = ClipEncoder(b, device=device, intra_op_threads=threads, decode_threads=threads)
        else:
            raise ModelError(f"{b.root} is a {b.kind!r} bundle: it cannot embed images (export one with "
                             "`fastcurate export --image-model efficientnet-lite0` or a CLIP model)")

    def __call__(self, items: Sequence[Any], progress: bool = False) -> np.ndarray:
        if self.modality == "text":
            return self.enc.encode_texts(list(items), batch_size=self.batch_size, progress=progress)
        return self.enc.encode_images(items, batch_size=self.batch_size, on_error="raise", progress=progress)

    def close(self) -> None:
        close = getattr(self.enc, "close", None)
        if close is not None:
            close()


# ---------------------------------------------------------------------------------------------
# the study


@dataclass
class NoiseStudyResult:
    """What :func:`noise_study` returns.

    ``table``: one row per (kind, rate), the columns of docs/cluster.md ("Noise study").
    ``summary``: the parameters, the clean clustering (its silhouette, its agreement with the
    ground truth, the reseed baseline), timings and the machine load.
    ``injected``: one row per injected item (kind, index, source row, description, text).
    ``paths``: the files written (empty without ``out_dir``).
    """

    table: Any  # pyarrow.Table
    summary: Dict[str, Any]
    injected: Any  # pyarrow.Table
    paths: Dict[str, Path] = field(default_factory=dict)

    def rows(self) -> List[Dict[str, Any]]:
        return self.table.to_pylist()

    def format_table(self, markdown: bool = False) -> str:
        """The table as aligned text (or a Markdown table): the columns a reader compares."""
        return format_rows(self.rows(), markdown=markdown, truth=self.summary.get("has_truth", False))


_COLUMNS: List[Tuple[str, str, str]] = [
    # (column, header, format)
    ("kind", "kind", "s"),
    ("rate", "rate", ".2f"),
    ("n_injected", "injected", "d"),
    ("silhouette", "silhouette", ".4f"),
    ("ari_clean", "ARI clean", ".3f"),
    ("nmi_clean", "NMI clean", ".3f"),
    ("ari_clean_warm", "ARI warm", ".3f"),
    ("ari_truth", "ARI truth", ".3f"),
    ("nmi_truth", "NMI truth", ".3f"),
    ("clusters_with_noise", "clusters hit", "d"),
    ("noise_clusters", "noise clusters", "d"),
    ("noise_in_noise_clusters", "in own", ".2f"),
    ("noise_top_cluster_share", "top share", ".2f"),
    ("noise_with_source", "with source", ".2f"),
]


def format_rows(rows: List[Dict[str, Any]], markdown: bool = False, truth: bool = True) -> str:
    cols = [c for c in _COLUMNS if truth or not c[0].endswith("_truth")]
    cells = [[h for _, h, _ in cols]]
    for r in rows:
        line = []
        for name, _, fmt in cols:
            v = r.get(name)
            line.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt))
        cells.append(line)
    if markdown:
        out = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
        out += ["| " + " | ".join(c) + " |" for c in cells[1:]]
        return "\n".join(out)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in cells)


def _fit_labels(x: np.ndarray, k: int, metric: str, niter: int, seed: int, threads: Optional[int],
                init: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    from ...kernels.kmeans import KMeans

    # k-means++ seeding, as the cluster stage's default; trained on every row (no sample: a sample
    # would mix the sampling's randomness into the comparison). CPU faiss: bit-reproducible.
    if threads is None and len(x) * k * x.shape[1] < 2**27:
        # faiss's OpenMP start-up costs more than a small problem's work: measured 10x faster on one
        # thread for 1,300 x 1,280-d, k=10 on a loaded 2-core box. Results do not depend on it.
        threads = 1
    km = KMeans(k, metric=metric, niter=niter, seed=seed, init="k-means++", threads=threads,  # type: ignore[arg-type]
                gpu=False, train_size=len(x))
    km.fit(x, init_centroids=init)
    assert km.centroids_ is not None
    return km.assign(x).labels.astype(np.int64), km.centroids_


def _silhouette(x: np.ndarray, labels: np.ndarray, metric: str) -> Optional[np.ndarray]:
    from ...kernels.silhouette import silhouette

    if not 1 < len(np.unique(labels)) < len(labels):
        return None  # undefined: one cluster, or every row alone
    return silhouette(x, labels, metric=metric).samples  # type: ignore[arg-type]


def _mean_or_none(a: Optional[np.ndarray]) -> Optional[float]:
    return None if a is None or len(a) == 0 else float(np.mean(a))


def _landing(labels: np.ndarray, n: int, source: np.ndarray, kind: str) -> Dict[str, Any]:
    """Where the injected rows (labels[n:]) land in the clustering of all rows."""
    m = len(labels) - n
    if m == 0:
        return {"clusters_with_noise": 0, "noise_clusters": 0, "noise_in_noise_clusters": None,
                "noise_top_cluster_share": None, "noise_with_source": None}
    k = int(labels.max()) + 1
    total = np.bincount(labels, minlength=k)
    noisy = np.bincount(labels[n:], minlength=k)
    own = (noisy > 0) & (noisy >= NOISE_CLUSTER_SHARE * total)
    with_source = None
    if kind in _SOURCED:
        with_source = float(np.mean(labels[n:] == labels[source[:m]]))
    return {
        "clusters_with_noise": int((noisy > 0).sum()),
        "noise_clusters": int(own.sum()),
        "noise_in_noise_clusters": float(noisy[own].sum() / m),
        "noise_top_cluster_share": float(noisy.max() / m),
        "noise_with_source": with_source,
    }


def noise_study(
    data: Sequence[Any],
    *,
    modality: str = "image",
    bundle: Union[str, os.PathLike, Any, None] = None,
    embed: Optional[EmbedFn] = None,
    labels: Optional[Sequence[Any]] = None,
    kinds: Optional[Sequence[str]] = None,
    rates: Sequence[float] = DEFAULT_RATES,
    k: int = 10,
    seed: int = 0,
    metric: str = "cosine",
    niter: int = 50,
    reseeds: int = 4,
    clean_embeddings: Optional[np.ndarray] = None,
    out_dir: Union[str, os.PathLike, None] = None,
    device: str = "auto",
    batch_size: Optional[int] = None,
    threads: Optional[int] = None,
    progress: bool = False,
    log: Optional[Callable[[str], None]] = None,
) -> NoiseStudyResult:
    """Inject noise into ``data`` at each rate, re-embed, re-cluster, and measure the damage.

    Args:
        data: the clean rows: images (paths, bytes or PIL images) or captions (strings).
        modality: ``"image"`` or ``"text"``: which kinds apply and which encoder tower is used.
        bundle: a model bundle (``fastcurate export``): an image or CLIP bundle for images, a text or
            CLIP bundle for captions. Or pass ``embed``.
        embed: instead of a bundle, a callable mapping a sequence of items (as ``data``'s, or the
            injected ones: JPEG bytes and PIL images for images, strings for texts) to a float array
            ``[len(items), d]``. It must be deterministic and embed every item independently.
        labels: ground-truth classes of the clean rows (optional): adds ARI / NMI against them.
        kinds: noise kinds (default: all of the modality; :data:`IMAGE_KINDS`, :data:`TEXT_KINDS`).
        rates: injected rows as a share of the clean rows, each in [0, 1); ``round(rate * n)`` rows
            (Python's rounding) are added at a rate.
        k, seed, metric, niter: the k-means (:class:`fastcurate.KMeans`, k-means++ seeding, trained
            on every row) used for the clean and every noisy set.
        reseeds: how many other seeds the clean set is also clustered with (the reseed baseline:
            how much the clustering changes with no noise at all); 0 to skip.
        clean_embeddings: the clean rows' embeddings if already computed with the same encoder.
        out_dir: write ``noise_study.parquet``, ``noise_study.json``, ``noise_study.png`` and
            ``injected.parquet`` there (each atomically).
        device, batch_size, threads: for the bundle's encoder (threads also caps faiss).
        progress: progress bars while embedding. log: called with one line per phase.

    Returns: a :class:`NoiseStudyResult`.

    Raises: :class:`~fastcurate.errors.InputError` for empty input, a rate outside [0, 1), an unknown
    kind, missing image files, labels of the wrong length or a k that does not fit;
    :class:`~fastcurate.errors.ModelError` for a bundle that cannot embed this modality.
    """
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    say = log or (lambda s: None)
    items = _check_data(data, modality)
    n = len(items)
    if isinstance(kinds, str):
        kinds = [kinds]
    kinds_l = list(kinds) if kinds is not None else list(IMAGE_KINDS if modality == "image" else TEXT_KINDS)
    if not kinds_l:
        raise InputError("no noise kinds: pass at least one")
    if len(set(kinds_l)) != len(kinds_l):
        raise InputError(f"a noise kind is given twice: {kinds_l}")
    _check_kinds(kinds_l, modality)
    rates_l = _check_rates(rates)
    if metric not in ("cosine", "euclidean"):
        raise InputError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if not 2 <= int(k) <= n - 1:
        raise InputError(f"k={k} does not fit {n} clean rows: the study needs 2 <= k <= n - 1 (a silhouette needs "
                         "two clusters and a row that is not alone)")
    if int(niter) < 1 or int(reseeds) < 0:
        raise InputError("niter must be >= 1 and reseeds >= 0")
    truth = None
    if labels is not None:
        truth = list(labels)
        if len(truth) != n:
            raise InputError(f"labels has {len(truth)} entries for {n} clean rows: give one class per row")
    if (bundle is None) == (embed is None):
        raise InputError("pass exactly one of bundle= (a model bundle directory) or embed= (a callable)")

    enc: Optional[_BundleEmbed] = None
    timings: Dict[str, float] = {}
    try:
        if bundle is not None:
            enc = _BundleEmbed(bundle, modality, device, batch_size, threads)
            fn: Callable[..., np.ndarray] = enc
        else:
            assert embed is not None
            user_fn = embed
            fn = lambda xs, progress=False: user_fn(xs)  # noqa: E731

        # clean rows
        t = time.perf_counter()
        if clean_embeddings is not None:
            clean = _checked_embeddings(clean_embeddings, n, "clean_embeddings")
            timings["embed_clean_s"] = 0.0
        else:
            say(f"embedding {n:,} clean {modality} rows")
            clean = _checked_embeddings(fn(items, progress=progress), n, "clean rows")
            timings["embed_clean_s"] = time.perf_counter() - t
        d = clean.shape[1]

        # injected rows: each kind's list once, for the largest rate; a rate takes a prefix
        m_max = round(max(rates_l) * n)
        injections: Dict[str, Injection] = {}
        inj_emb: Dict[str, np.ndarray] = {}
        for kind in kinds_l:
            t = time.perf_counter()
            inj = make_injection(kind, items, modality, m_max, seed)
            injections[kind] = inj
            if m_max:
                say(f"embedding {m_max:,} {kind} rows")
                inj_emb[kind] = _checked_embeddings(fn(inj.items, progress=progress), m_max, f"{kind} rows", d)
            else:
                inj_emb[kind] = np.zeros((0, d), np.float32)
            timings[f"embed_{kind}_s"] = time.perf_counter() - t
    finally:
        if enc is not None:
            enc.close()

    # the clean clustering, its warm-start fixed point, and the reseed baseline
    t = time.perf_counter()
    say(f"clustering: k={k}, {metric}, {niter} iterations, seed {seed}")
    lab0, c0 = _fit_labels(clean, k, metric, niter, seed, threads)
    labw0, _ = _fit_labels(clean, k, metric, niter, seed, threads, init=c0)
    sil0 = _silhouette(clean, lab0, metric)
    reseed = []
    for r in range(1, int(reseeds) + 1):
        lab_r, _ = _fit_labels(clean, k, metric, niter, seed + r, threads)
        reseed.append({"seed": seed + r, "ari": adjusted_rand_index(lab0, lab_r),
                       "nmi": normalized_mutual_info(lab0, lab_r)})

    rows: List[Dict[str, Any]] = []
    for kind in kinds_l:
        for rate in rates_l:
            m = round(rate * n)
            x = np.concatenate([clean, inj_emb[kind][:m]]) if m else clean
            lab, _ = _fit_labels(x, k, metric, niter, seed, threads)
            labw, _ = _fit_labels(x, k, metric, niter, seed, threads, init=c0)
            s = _silhouette(x, lab, metric)
            row: Dict[str, Any] = {
                "kind": kind,
                "rate": float(rate),
                "n_clean": n,
                "n_injected": int(m),
                "noise_share": float(m / (n + m)),
                "k": int(k),
                "clusters_used": int(len(np.unique(lab))),
                "silhouette": _mean_or_none(s),
                "silhouette_clean": _mean_or_none(None if s is None else s[:n]),
                "silhouette_noise": _mean_or_none(None if s is None else s[n:]),
                "ari_clean": adjusted_rand_index(lab0, lab[:n]),
                "nmi_clean": normalized_mutual_info(lab0, lab[:n]),
                "ari_clean_warm": adjusted_rand_index(labw0, labw[:n]),
                "nmi_clean_warm": normalized_mutual_info(labw0, labw[:n]),
                "ari_truth": None if truth is None else adjusted_rand_index(truth, lab[:n]),
                "nmi_truth": None if truth is None else normalized_mutual_info(truth, lab[:n]),
            }
            row.update(_landing(lab, n, injections[kind].source, kind))
            wl = _landing(labw, n, injections[kind].source, kind)
            row["noise_in_noise_clusters_warm"] = wl["noise_in_noise_clusters"]
            row["clusters_with_noise_warm"] = wl["clusters_with_noise"]
            rows.append(row)
    timings["cluster_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start

    import pyarrow as pa

    table = pa.Table.from_pylist(rows, schema=_schema())
    inj_rows = []
    for kind in kinds_l:
        inj = injections[kind]
        for i in range(m_max):
            inj_rows.append({"kind": kind, "index": i, "source_row": None if inj.source[i] < 0 else int(inj.source[i]),
                             "description": inj.description[i],
                             "text": inj.items[i] if modality == "text" else None})
    injected = pa.Table.from_pylist(inj_rows, schema=pa.schema([
        ("kind", pa.string()), ("index", pa.int64()), ("source_row", pa.int64()), ("description", pa.string()),
        ("text", pa.string())]))

    summary: Dict[str, Any] = {
        "modality": modality,
        "n_clean": n,
        "dim": int(d),
        "kinds": kinds_l,
        "rates": rates_l,
        "injected_per_rate": {str(r): round(r * n) for r in rates_l},
        "k": int(k),
        "metric": metric,
        "niter": int(niter),
        "seed": int(seed),
        "init": "k-means++",
        "bundle": None if bundle is None else str(enc.bundle.root if enc is not None else bundle),
        "has_truth": truth is not None,
        "clean": {
            "silhouette": _mean_or_none(sil0),
            "clusters_used": int(len(np.unique(lab0))),
            "cluster_sizes": np.bincount(lab0, minlength=k).tolist(),
            "ari_truth": None if truth is None else adjusted_rand_index(truth, lab0),
            "nmi_truth": None if truth is None else normalized_mutual_info(truth, lab0),
            "truth_classes": None if truth is None else len(set(truth)),
        },
        "reseed": {
            "runs": reseed,
            "ari_mean": None if not reseed else float(np.mean([r["ari"] for r in reseed])),
            "ari_min": None if not reseed else float(min(r["ari"] for r in reseed)),
            "ari_max": None if not reseed else float(max(r["ari"] for r in reseed)),
            "nmi_mean": None if not reseed else float(np.mean([r["nmi"] for r in reseed])),
        },
        "timings": {key: round(v, 3) for key, v in timings.items()},
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(v, 2) for v in load_start],
                    "loadavg_end": [round(v, 2) for v in os.getloadavg()]},
        "rows": rows,
    }
    result = NoiseStudyResult(table, summary, injected)
    if out_dir is not None:
        result.paths = write_outputs(result, Path(out_dir))
    return result


def _schema() -> Any:
    import pyarrow as pa

    f64, i64 = pa.float64(), pa.int64()
    return pa.schema([
        ("kind", pa.string()), ("rate", f64), ("n_clean", i64), ("n_injected", i64), ("noise_share", f64),
        ("k", i64), ("clusters_used", i64),
        ("silhouette", f64), ("silhouette_clean", f64), ("silhouette_noise", f64),
        ("ari_clean", f64), ("nmi_clean", f64), ("ari_clean_warm", f64), ("nmi_clean_warm", f64),
        ("ari_truth", f64), ("nmi_truth", f64),
        ("clusters_with_noise", i64), ("noise_clusters", i64), ("noise_in_noise_clusters", f64),
        ("noise_top_cluster_share", f64), ("noise_with_source", f64),
        ("noise_in_noise_clusters_warm", f64), ("clusters_with_noise_warm", i64),
    ])


def write_outputs(result: NoiseStudyResult, out: Path) -> Dict[str, Path]:
    """Write the table, the injected items, the plot, then the JSON summary (last: its presence
    means the rest is complete). Every file is written atomically."""
    from ...io.atomic import atomic_write_json, atomic_write_table

    out.mkdir(parents=True, exist_ok=True)
    paths = {"table": out / "noise_study.parquet", "injected": out / "injected.parquet",
             "plot": out / "noise_study.png", "summary": out / "noise_study.json"}
    atomic_write_table(result.table, paths["table"])
    atomic_write_table(result.injected, paths["injected"])
    plot_study(result.rows(), result.summary, paths["plot"])
    atomic_write_json(paths["summary"], result.summary)
    return paths


_PLOTS = [
    ("ari_clean", "ARI of clean rows vs clean clustering (refit)"),
    ("ari_clean_warm", "ARI vs clean clustering (warm start)"),
    ("silhouette", "silhouette (all rows, cosine)" ),
    ("ari_truth", "ARI of clean rows vs true classes"),
    ("noise_in_noise_clusters", "share of injected rows in noise clusters"),
    ("clusters_with_noise", "clusters holding injected rows"),
]


def plot_study(rows: List[Dict[str, Any]], summary: Dict[str, Any], path: Path) -> Path:
    """Metric against rate, one line per kind, one panel per metric; the reseed baseline's range is
    the grey band of the ARI panel. Atomic; no timestamp in the PNG (same input, same bytes)."""
    from matplotlib.figure import Figure

    from ...io.atomic import atomic_write_bytes

    panels = [p for p in _PLOTS if summary.get("has_truth") or not p[0].endswith("_truth")]
    if len(panels) < 6:
        panels.insert(3, ("nmi_clean", "NMI of clean rows vs clean clustering (refit)"))
    fig = Figure(figsize=(13, 7.5), dpi=100)
    axes = fig.subplots(2, 3).ravel()
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    rates = sorted({r["rate"] for r in rows})
    span = max(rates[-1] - rates[0], 0.01)
    # distinct markers and dashes: kinds that land alike draw on top of each other
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-")]
    for ax, (col, title) in zip(axes, panels):
        for j, kind in enumerate(kinds):
            colour = f"C{j}"
            marker, dash = styles[j % len(styles)]
            pts = [(r["rate"], r[col]) for r in rows if r["kind"] == kind and r[col] is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker=marker, ls=dash, lw=1.5, ms=5, color=colour, label=kind, alpha=0.9)
            if col == "silhouette":  # the clean rows' own mean s(i), thin: the noise may lift the total alone
                pts = [(r["rate"], r["silhouette_clean"]) for r in rows
                       if r["kind"] == kind and r["silhouette_clean"] is not None]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, ls=":", lw=1, color=colour, alpha=0.8)
        ax.set_xlim(rates[0] - 0.04 * span, rates[-1] + 0.04 * span)
        if col == "silhouette":
            title += "; dotted: clean rows only"
        rs = summary.get("reseed", {})
        if col == "ari_clean" and rs.get("ari_min") is not None:
            ax.axhspan(rs["ari_min"], rs["ari_max"], color="0.85", zorder=0,
                       label=f"other seeds, no noise ({rs['ari_min']:.2f}-{rs['ari_max']:.2f})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("rate (injected / clean rows)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        if col in ("ari_clean", "ari_clean_warm", "ari_truth", "noise_in_noise_clusters"):
            ax.set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.text(0.5, 0.975, f"Noise study: {summary['n_clean']:,} clean {summary['modality']} rows, k={summary['k']}, "
             f"{summary['metric']} k-means, seed {summary['seed']}", ha="center", va="center", fontsize=12)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.92, bottom=0.07, hspace=0.35, wspace=0.22)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
    return path
