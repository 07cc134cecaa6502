"""Calibrate the offline judge's thresholds on labelled clusters built from real captions.

The template's five examples are the *check*, never the calibration data. Calibration data is built
here from a pool of real captions (and the real URLs they came with), each cluster labelled by how it
was built:

High Value
    ``varied``: random real captions from the whole pool; ``varied_source``: random captions of one
    source (e.g. only COCO, whose captions share a style); ``varied_some_junk``: random real captions
    with up to 20 % file names or URLs among them.
Low Value
    ``filenames``: 50-100 % of the samples are real file names (the last path segment of the real
    image URLs) or the URLs themselves, the rest real captions; ``camera``: camera/phone default
    file names (``IMG_4032.JPG``, ``DSC01234``, ``PXL_20210101_123456789.jpg``);
    ``templated``: 60-100 % of the samples are one real caption repeated through a numbering
    template (``Lot 12: ...``, ``... part 3``, ``... #245``, case changes), the rest real captions;
    ``topic_closest`` / ``topic_random``: the samples closest to the centroid of, or drawn at
    random from, one k-means cluster of the pool's MiniLM embeddings (a narrow topic, as the
    pipeline's ``cluster`` stage would give).

Each cluster has 5 or 10 samples (one side of the default prompt, or both sides). Train and test
clusters are built from disjoint halves of the pool. :func:`fit_thresholds` puts each rule's
threshold midway between the 99th percentile of the High train clusters and the 5th percentile of
the Low kinds the rule is for (mirrored for the rules that fire below a threshold), so each rule
drops at most about 1 % of real varied clusters; where the two quantiles cross, at the High
clusters' percentile itself (the 1 % false-drop budget wins over detection).
"""

from __future__ import annotations

import random
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .offline import OfflineJudge, OfflineThresholds
from .parse import HIGH, LOW

__all__ = ["LabelledCluster", "build_labelled_clusters", "cluster_features", "fit_thresholds", "evaluate", "url_file_names",
           "camera_names", "RULE_TARGETS"]

#: which Low kinds each rule is fitted against (the High kinds are always the other side)
RULE_TARGETS: Dict[str, Tuple[str, ...]] = {
    "junk_share": ("filenames", "camera"),
    "matched_share": ("filenames", "camera"),
    "dup_share": ("templated",),
    "vocab": ("templated",),
    "cohesion": ("topic_closest", "topic_random"),
}
#: rules that fire when the feature is BELOW the threshold
RULE_BELOW = ("vocab", "matched_share")
HIGH_KINDS = ("varied", "varied_source", "varied_some_junk")
LOW_KINDS = ("filenames", "camera", "templated", "topic_closest", "topic_random")


@dataclass
class LabelledCluster:
    captions: List[str]
    idx: List[int]  # pool index per caption, -1 for a caption made here (file names, templates)
    label: str
    kind: str


def url_file_names(urls: Sequence[Optional[str]]) -> List[str]:
    """The last path segment of each URL (percent-decoded), where it has one: real file names."""
    out = []
    for u in urls:
        if not u:
            continue
        seg = urllib.parse.unquote(urllib.parse.urlparse(u).path.rsplit("/", 1)[-1])
        if "." in seg and 3 <= len(seg) <= 120:
            out.append(seg)
    return out


def camera_names(rng: random.Random, n: int) -> List[str]:
    """Camera, phone and screenshot default names in their real formats."""
    def d(k: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(k))

    makers = [
        lambda: f"IMG_{d(4)}.JPG", lambda: f"IMG_{d(4)}.jpg", lambda: f"DSC_{d(4)}.JPG", lambda: f"DSC{d(5)}.JPG",
        lambda: f"DSCN{d(4)}.JPG", lambda: f"P{d(7)}.JPG", lambda: f"GOPR{d(4)}.JPG", lambda: f"IMG_{d(4)}",
        lambda: f"DSC{d(5)}", lambda: f"PXL_2021{d(4)}_{d(9)}.jpg", lambda: f"IMG-2019{d(4)}-WA{d(4)}.jpg",
        lambda: f"Screenshot_2020-{d(2)}-{d(2)}-{d(2)}-{d(2)}-{d(2)}.png", lambda: f"photo_{d(3)}.jpg",
        lambda: f"image{d(2)}.png", lambda: f"{d(8)}_{d(6)}.jpg",
    ]
    k = rng.randrange(len(makers))  # one camera per cluster, as in a real upload
    return [makers[k]() if rng.random() < 0.8 else rng.choice(makers)() for _ in range(n)]


_TEMPLATES = [
    lambda c, k: f"Lot {k}: {c}", lambda c, k: f"{c} part {k}", lambda c, k: f"{c} #{k}", lambda c, k: f"{c} ({k})",
    lambda c, k: f"{c} - {k}", lambda c, k: f"{k}. {c}", lambda c, k: f"{c} {k}", lambda c, k: f"Page {k} - {c}",
    lambda c, k: f"{c.upper()} {k}", lambda c, k: f"{c.lower()} no. {k}",
]


def build_labelled_clusters(
    captions: Sequence[str],
    sources: Sequence[str],
    urls: Sequence[Optional[str]],
    embeddings: np.ndarray,
    pool_idx: Sequence[int],
    *,
    per_kind: int = 200,
    seed: int = 0,
    kmeans_k: Optional[int] = None,
) -> List[LabelledCluster]:
    """Labelled clusters (see the module docstring) drawn from the pool rows ``pool_idx``.

    ``embeddings`` are the pool's unit-norm caption embeddings (rows aligned with ``captions``);
    they give the k-means topics. ``per_kind`` clusters of each kind are built, half with 5 samples
    and half with 10."""
    rng = random.Random(seed)
    pool = [i for i in pool_idx if captions[i] and captions[i].strip()]
    by_source: Dict[str, List[int]] = {}
    for i in pool:
        by_source.setdefault(sources[i], []).append(i)
    fnames = url_file_names([urls[i] for i in pool])
    full_urls: List[str] = [str(urls[i]) for i in pool if urls[i]]
    out: List[LabelledCluster] = []

    def size(j: int) -> int:
        return 5 if j % 2 == 0 else 10

    def real(n: int, src: Optional[List[int]] = None) -> List[int]:
        return rng.sample(src or pool, n)

    for j in range(per_kind):
        n = size(j)
        ids = real(n)
        out.append(LabelledCluster([captions[i] for i in ids], ids, HIGH, "varied"))
        src = by_source[rng.choice(sorted(by_source))]
        ids = real(n, src)
        out.append(LabelledCluster([captions[i] for i in ids], ids, HIGH, "varied_source"))
        k = rng.randint(1, max(1, n // 5))  # up to 20 %
        ids = real(n - k)
        junk: List[str] = [rng.choice(fnames) if rng.random() < 0.7 else rng.choice(full_urls) for _ in range(k)]
        caps = [captions[i] for i in ids] + junk
        out.append(LabelledCluster(caps, ids + [-1] * k, HIGH, "varied_some_junk"))

        k = rng.randint((n + 1) // 2, n)  # 50-100 %
        ids = real(n - k)
        junk = [rng.choice(fnames) if rng.random() < 0.8 else rng.choice(full_urls) for _ in range(k)]
        out.append(LabelledCluster([captions[i] for i in ids] + junk, ids + [-1] * k, LOW, "filenames"))
        k = rng.randint((n + 1) // 2, n)
        ids = real(n - k)
        out.append(LabelledCluster([captions[i] for i in ids] + camera_names(rng, k), ids + [-1] * k, LOW, "camera"))
        k = rng.randint(max(2, (3 * n + 4) // 5), n)  # 60-100 %
        base = captions[rng.choice(pool)]
        t = rng.choice(_TEMPLATES)
        start = rng.randint(1, 500)
        ids = real(n - k)
        out.append(LabelledCluster([captions[i] for i in ids] + [t(base, start + q) for q in range(k)],
                                   ids + [-1] * k, LOW, "templated"))

    # narrow topics: k-means over the pool's embeddings (faiss if present, else a numpy Lloyd loop)
    P = np.asarray(pool)
    X = np.ascontiguousarray(embeddings[P], dtype=np.float32)
    k = kmeans_k or max(2, len(P) // 50)
    assign, cent = _kmeans(X, k, seed)
    members: Dict[int, np.ndarray] = {c: np.flatnonzero(assign == c) for c in range(k)}
    big = [c for c, m in members.items() if len(m) >= 12]
    for j in range(per_kind):
        n = size(j)
        c = rng.choice(big)
        m = members[c]
        dist = X[m] @ cent[c]
        near = m[np.argsort(-dist)[:n]]
        ids = [int(P[q]) for q in near]
        out.append(LabelledCluster([captions[i] for i in ids], ids, LOW, "topic_closest"))
        c = rng.choice(big)
        ids = [int(P[q]) for q in rng.sample(list(members[c]), n)]
        out.append(LabelledCluster([captions[i] for i in ids], ids, LOW, "topic_random"))
    return out


def _kmeans(X: np.ndarray, k: int, seed: int, iters: int = 20) -> Tuple[np.ndarray, np.ndarray]:
    try:
        import faiss

        km = faiss.Kmeans(X.shape[1], k, niter=iters, seed=seed, spherical=True, verbose=False)
        km.train(X)
        _, a = km.index.search(X, 1)
        c0 = np.asarray(km.centroids, dtype=np.float32)
        cent = c0 / np.maximum(np.linalg.norm(c0, axis=1, keepdims=True), 1e-12)
        return a[:, 0], cent
    except ImportError:
        rs = np.random.default_rng(seed)
        cent = X[rs.choice(len(X), k, replace=False)].copy()
        for _ in range(iters):
            a = np.argmax(X @ cent.T, axis=1)
            for c in range(k):
                m = a == c
                if m.any():
                    v = X[m].sum(0)
                    cent[c] = v / max(np.linalg.norm(v), 1e-12)
        return np.argmax(X @ cent.T, axis=1), cent


def cluster_features(judge: OfflineJudge, clusters: Sequence[LabelledCluster], pool_emb: np.ndarray,
                     encode: Any) -> Dict[str, np.ndarray]:
    """Features of the labelled clusters; each sample's embedding is the pool's row, or ``encode``
    of the made-up caption."""
    made = sorted({c for cl in clusters for c, i in zip(cl.captions, cl.idx) if i < 0})
    made_emb = dict(zip(made, np.asarray(encode(made), dtype=np.float32))) if made else {}
    embs = [np.stack([pool_emb[i] if i >= 0 else made_emb[c] for c, i in zip(cl.captions, cl.idx)])
            for cl in clusters]
    return judge.features([cl.captions for cl in clusters], None, embs)


def _margin_threshold(high: np.ndarray, low: np.ndarray, low_is_above: bool, alpha: float,
                      beta: float) -> Tuple[float, float]:
    """Midpoint between the High clusters' (1 - alpha) quantile and the Low clusters' beta quantile
    (mirrored for a "Low when below" rule). When those cross (the classes overlap there), the High
    quantile itself, so the rule still drops at most about ``alpha`` of the High clusters.
    Returns (t, balanced accuracy)."""
    high = high[np.isfinite(high)]
    low = low[np.isfinite(low)]
    if low_is_above:
        h, lo = float(np.quantile(high, 1 - alpha)), float(np.quantile(low, beta))
    else:
        h, lo = float(np.quantile(high, alpha)), float(np.quantile(low, 1 - beta))
    separable = lo > h if low_is_above else lo < h
    # overlapping classes: keep the false-drop budget, put the threshold at the High quantile itself
    t = 0.5 * (h + lo) if separable else h
    return t, _bacc(high, low, t, low_is_above)


def _bacc(high: np.ndarray, low: np.ndarray, t: float, low_is_above: bool) -> float:
    if low_is_above:
        return 0.5 * float(np.mean(high < t) + np.mean(low >= t))
    return 0.5 * float(np.mean(high >= t) + np.mean(low < t))


def fit_thresholds(features: Dict[str, np.ndarray], kinds: Sequence[str], *, alpha: float = 0.01,
                   beta: float = 0.05) -> Tuple[OfflineThresholds, Dict[str, Any]]:
    """Fit :class:`OfflineThresholds` on train clusters' features: each rule's threshold lies midway
    between the ``1 - alpha`` quantile of the High clusters and the ``beta`` quantile of the Low
    kinds the rule is for (:data:`RULE_TARGETS`), so that a rule fires on about ``alpha`` of real
    varied clusters at most. Returns the thresholds and a report per rule."""
    kinds_a = np.asarray(kinds)
    high = np.isin(kinds_a, HIGH_KINDS)
    vals: Dict[str, float] = {}
    report: Dict[str, Any] = {}
    for rule, targets in RULE_TARGETS.items():
        low = np.isin(kinds_a, targets)
        x = features[rule]
        above = rule not in RULE_BELOW
        t, acc = _margin_threshold(x[high], x[low], above, alpha, beta)
        vals[rule] = round(t, 3)
        fires = (x >= vals[rule]) if above else (x < vals[rule])
        report[rule] = {"threshold": vals[rule], "low_when": ">=" if above else "<", "against": list(targets),
                        "train_high_fire_rate": round(float(np.mean(fires[high])), 4),
                        "train_target_detection": round(float(np.mean(fires[low])), 4),
                        "train_balanced_accuracy": round(acc, 4)}
    return OfflineThresholds(**vals), report


def evaluate(judge: OfflineJudge, features: Dict[str, np.ndarray], kinds: Sequence[str],
             labels: Sequence[str]) -> Dict[str, Any]:
    """Accuracy of ``judge``'s rules on clusters' features: overall, balanced, and per kind."""
    pred, _ = judge._verdicts(features)
    pred_a, lab = np.asarray(pred), np.asarray(labels)
    kinds_a = np.asarray(kinds)
    per_kind = {k: round(float(np.mean(pred_a[kinds_a == k] == lab[kinds_a == k])), 4) for k in dict.fromkeys(kinds)}
    hi, lo = lab == HIGH, lab == LOW
    return {
        "clusters": len(lab),
        "accuracy": round(float(np.mean(pred_a == lab)), 4),
        "balanced_accuracy": round(0.5 * float(np.mean(pred_a[hi] == HIGH) + np.mean(pred_a[lo] == LOW)), 4),
        "per_kind": per_kind,
    }
