"""``fastcurate noise-study``: inject noise at several rates, re-embed, re-cluster, measure.

A study, not a per-row stage: it reads a set of clean images or captions, writes one table, a plot,
the injected items and a JSON summary (docs/cluster.md, "Noise study").
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

from ...errors import InputError

__all__ = ["register", "load_images", "load_texts"]

_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _csv_list(s: str) -> List[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def _rates(s: str) -> List[float]:
    out = []
    for p in _csv_list(s):
        try:
            out.append(float(p))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{p!r} is not a number (rates are e.g. 0,0.05,0.1,0.2,0.3)") from None
    return out


def register(sub: Any) -> None:
    from .noise import DEFAULT_RATES, IMAGE_KINDS, TEXT_KINDS

    p = sub.add_parser(
        "noise-study",
        help="how injected duplicates, blank / random images and file-name captions change a k-means clustering",
        description="Injects noise into a clean set of images or captions at several rates (exact and near "
        f"duplicates, blank and random-noise images, file-name captions), re-embeds it with the same model "
        "bundle, clusters clean and noisy sets with the same seeded k-means and reports, per (kind, rate), the "
        "silhouette, the ARI / NMI of the clean rows against the clean clustering (refit, and warm-started from "
        "the clean centroids) and against true classes, and where the injected rows land. Writes "
        "noise_study.parquet, noise_study.png, injected.parquet and noise_study.json to --out. "
        f"Image kinds: {', '.join(IMAGE_KINDS)}; text kinds: {', '.join(TEXT_KINDS)}. See docs/cluster.md.",
    )
    src = p.add_argument_group("input (images or captions)")
    src.add_argument("--images", metavar="DIR", help="a directory of images (searched recursively, sorted by path)")
    src.add_argument("--labels", metavar="CSV", help="a CSV naming the images (--path-column, relative to --images "
                     "or else to the CSV's directory) and their true class (--label-column)")
    src.add_argument("--path-column", default="path", help="path column of --labels (default path)")
    src.add_argument("--label-column", default="class", help="class column of --labels (default class)")
    src.add_argument("--texts", metavar="FILE", help="captions: .parquet (--text-column), .txt (one per line), "
                     ".tsv (first field) or .csv (--text-column)")
    src.add_argument("--text-column", default=None, help="caption column (default: text, TEXT or caption)")
    src.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N rows only")
    src.add_argument("--per-class", type=int, default=None, metavar="N",
                     help="with --labels: the first N rows of each class")
    st = p.add_argument_group("study")
    st.add_argument("--bundle", required=True, metavar="DIR",
                    help="model bundle from `fastcurate export` (image or CLIP bundle for images; text or CLIP for captions)")
    st.add_argument("--kinds", type=_csv_list, default=None, metavar="K1,K2",
                    help="noise kinds (default: every kind of the modality)")
    st.add_argument("--rates", type=_rates, default=list(DEFAULT_RATES), metavar="R1,R2",
                    help="injected rows as a share of the clean rows, each in [0, 1) (default 0,0.05,0.1,0.2,0.3)")
    st.add_argument("--k", type=int, default=10, help="clusters (default 10)")
    st.add_argument("--seed", type=int, default=0, help="seed of the injection and of k-means (default 0)")
    st.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine", help="k-means metric (default cosine)")
    st.add_argument("--niter", type=int, default=50, help="Lloyd iterations (default 50)")
    st.add_argument("--reseeds", type=int, default=4, help="other seeds for the no-noise baseline (default 4)")
    st.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    st.add_argument("--batch-size", type=int, default=None, help="encoder batch size")
    st.add_argument("--threads", type=int, default=None, help="encoder and faiss threads (default: all cores)")
    st.add_argument("--progress", action="store_true", help="progress bars while embedding")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=_run)


def load_images(images: Optional[str], labels_csv: Optional[str], path_column: str = "path",
                label_column: str = "class") -> Tuple[List[Path], Optional[List[str]]]:
    """The image paths (and true classes, from a labels CSV) the CLI studies."""
    if labels_csv:
        f = Path(labels_csv)
        if not f.is_file():
            raise InputError(f"--labels {f}: no such file")
        root = Path(images) if images else f.parent
        with open(f, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            for c in (path_column, label_column):
                if c not in cols:
                    raise InputError(f"--labels {f} has no column {c!r} (columns: {', '.join(cols)}); "
                                     "set --path-column / --label-column")
            paths, labels = [], []
            for i, r in enumerate(reader):
                if not r[path_column] or r[label_column] is None:
                    raise InputError(f"--labels {f}: row {i + 1} has an empty {path_column!r} or {label_column!r}")
                paths.append(root / r[path_column])
                labels.append(r[label_column])
        return paths, labels
    if not images:
        raise InputError("give the clean rows: --images DIR, --labels CSV or --texts FILE")
    d = Path(images)
    if not d.is_dir():
        raise InputError(f"--images {d}: not a directory")
    paths = sorted((p for p in d.rglob("*") if p.suffix.lower() in _IMAGE_EXT and p.is_file()),
                   key=lambda p: p.relative_to(d).as_posix())
    if not paths:
        raise InputError(f"--images {d}: no image files ({', '.join(_IMAGE_EXT)}) under it")
    return paths, None


def load_texts(path: str, column: Optional[str] = None) -> Tuple[List[Optional[str]], str]:
    """The captions of a .parquet / .txt / .tsv / .csv file, and the column they came from."""
    f = Path(path)
    if not f.is_file():
        raise InputError(f"--texts {f}: no such file")
    suffix = f.suffix.lower()
    lines: List[Optional[str]]
    if suffix == ".txt":
        lines = list(f.read_text(encoding="utf-8").splitlines())
        return lines, "line"
    if suffix == ".tsv" and column is None:
        with open(f, encoding="utf-8", newline="") as fh:
            lines = [row[0] if row else "" for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]
        return lines, "field 1"
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(f).names
    elif suffix in (".csv", ".tsv"):
        with open(f, newline="", encoding="utf-8") as fh:
            names = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",").fieldnames or [])
    else:
        raise InputError(f"--texts {f}: unsupported file type {suffix!r} (use .parquet, .txt, .tsv or .csv)")
    if column is None:
        found = [c for c in ("text", "TEXT", "caption") if c in names]
        if not found:
            raise InputError(f"--texts {f}: no text, TEXT or caption column (columns: {', '.join(names)}); "
                             "set --text-column")
        column = found[0]
    elif column not in names:
        raise InputError(f"--texts {f} has no column {column!r} (columns: {', '.join(names)})")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(f, columns=[column]).column(column).to_pylist(), column
    with open(f, newline="", encoding="utf-8") as fh:
        return [r[column] for r in csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")], column


def _first_per_class(items: List[Any], labels: List[str], n: int) -> Tuple[List[Any], List[str]]:
    seen: dict = {}
    keep = []
    for i, c in enumerate(labels):
        if seen.get(c, 0) < n:
            seen[c] = seen.get(c, 0) + 1
            keep.append(i)
    return [items[i] for i in keep], [labels[i] for i in keep]


def _run(a: argparse.Namespace) -> int:
    from .noise import noise_study

    def log(s: str) -> None:
        print(f"noise-study: {s}", file=sys.stderr, flush=True)

    if a.texts and (a.images or a.labels):
        raise InputError("--texts studies captions; --images / --labels study images: give one or the other")
    if a.limit is not None and a.limit < 1:
        raise InputError(f"--limit must be >= 1, got {a.limit}")
    labels: Optional[List[str]] = None
    if a.texts:
        modality = "text"
        raw, col = load_texts(a.texts, a.text_column)
        items: List[Any] = [t for t in raw if t is not None]
        if len(items) < len(raw):
            log(f"skipped {len(raw) - len(items):,} null captions of {len(raw):,} ({col})")
        if a.per_class is not None:
            raise InputError("--per-class needs --labels (image classes)")
    else:
        modality = "image"
        paths, labels = load_images(a.images, a.labels, a.path_column, a.label_column)
        items = list(paths)
        if a.per_class is not None:
            if labels is None:
                raise InputError("--per-class needs --labels (a CSV of classes)")
            if a.per_class < 1:
                raise InputError(f"--per-class must be >= 1, got {a.per_class}")
            items, labels = _first_per_class(items, labels, a.per_class)
    if a.limit is not None:
        items = items[: a.limit]
        labels = labels[: a.limit] if labels is not None else None
    res = noise_study(items, modality=modality, bundle=a.bundle, labels=labels, kinds=a.kinds, rates=a.rates,
                      k=a.k, seed=a.seed, metric=a.metric, niter=a.niter, reseeds=a.reseeds, out_dir=a.out,
                      device=a.device, batch_size=a.batch_size, threads=a.threads, progress=a.progress, log=log)
    s = res.summary
    print(res.format_table())
    c = s["clean"]
    line = f"clean: {s['n_clean']:,} {modality} rows, {s['dim']}-d, k={s['k']}, silhouette {c['silhouette']:.4f}"
    if c["ari_truth"] is not None:
        line += f", ARI vs {c['truth_classes']} true classes {c['ari_truth']:.3f}, NMI {c['nmi_truth']:.3f}"
    print(line)
    r = s["reseed"]
    if r["runs"]:
        print(f"no noise, other seeds: ARI vs seed {s['seed']} {r['ari_min']:.3f}..{r['ari_max']:.3f} "
              f"(mean {r['ari_mean']:.3f}) over {len(r['runs'])} seeds")
    t = s["timings"]
    print(f"took {t['total_s']:.1f} s (embedding the clean rows {t['embed_clean_s']:.1f} s, clustering "
          f"{t['cluster_s']:.1f} s); wrote {', '.join(str(p) for p in res.paths.values())}")
    return 0
