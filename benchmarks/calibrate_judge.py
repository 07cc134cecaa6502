"""Calibrate the offline judge's thresholds on labelled clusters built from the real captions in
../shared/data, evaluate them on held-out clusters, and check the template's five examples.

    PYTHONPATH=python python benchmarks/calibrate_judge.py [--per-kind 300] [--json out.json]

The pool: LAION-10k alt-texts (with their URLs), CC3M validation captions (with URLs), COCO captions.
It is split in two halves: train clusters come from one, test clusters from the other
(fastcurate.stages.judge.calibrate documents the kinds). MiniLM embeddings of the pool are cached
under $FASTCURATE_CACHE (default ~/.cache/fastcurate).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("fastcurate") is None:  # a checkout run without installing the package
    sys.path.insert(0, str(ROOT / "python"))

from fastcurate.stages.judge.calibrate import (  # noqa: E402
    build_labelled_clusters,
    cluster_features,
    evaluate,
    fit_thresholds,
)
from fastcurate.stages.judge.examples import TEMPLATE_EXAMPLES  # noqa: E402
from fastcurate.stages.judge.offline import OfflineJudge, minilm_encoder, _cache_dir  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def load_pool():
    import pyarrow.parquet as pq

    caps, srcs, urls = [], [], []
    t = pq.read_table(DATA / "captions" / "laion_10k.parquet", columns=["TEXT", "URL"]).to_pydict()
    for c, u in zip(t["TEXT"], t["URL"]):
        if c:
            caps.append(c), srcs.append("laion"), urls.append(u)
    with open(DATA / "captions" / "cc3m_val.tsv", encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            caps.append(row[0]), srcs.append("cc3m"), urls.append(row[1] if len(row) > 1 else None)
    cj = json.loads((DATA / "images" / "coco_mini_val" / "captions.json").read_text())
    for a in cj["annotations"]:
        caps.append(a["caption"].strip()), srcs.append("coco"), urls.append(None)
    return caps, srcs, urls


def pool_embeddings(caps):
    h = hashlib.sha256("\n".join(caps).encode()).hexdigest()[:16]
    path = _cache_dir() / f"calib_minilm_{h}.npy"
    if path.is_file():
        return np.load(path)
    t0 = time.perf_counter()
    e = np.asarray(minilm_encoder().encode_texts(caps, batch_size=64), dtype=np.float32)
    print(f"embedded {len(caps)} captions in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, e)
    return e


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-kind", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    caps, srcs, urls = load_pool()
    emb = pool_embeddings(caps)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    s = emb.sum(0, dtype=np.float64)
    n = len(emb)
    baseline = float((s @ s - n) / (n * (n - 1)))  # mean cosine over all pairs of distinct pool captions
    print(f"pool: {n} captions ({', '.join(f'{k}: {srcs.count(k)}' for k in sorted(set(srcs)))}); "
          f"MiniLM mean pairwise cosine (baseline) {baseline:.4f}")
    rng = np.random.default_rng(a.seed)
    perm = rng.permutation(n)
    half_a, half_b = perm[: n // 2].tolist(), perm[n // 2:].tolist()
    train = build_labelled_clusters(caps, srcs, urls, emb, half_a, per_kind=a.per_kind, seed=a.seed)
    test = build_labelled_clusters(caps, srcs, urls, emb, half_b, per_kind=a.per_kind, seed=a.seed + 1)
    judge0 = OfflineJudge(baseline=round(baseline, 4))
    enc = minilm_encoder().encode_texts
    f_train = cluster_features(judge0, train, emb, enc)
    f_test = cluster_features(judge0, test, emb, enc)
    th, fit = fit_thresholds(f_train, [c.kind for c in train])
    judge = OfflineJudge(th, baseline=round(baseline, 4))
    from fastcurate.stages.judge.offline import MINILM_BASELINE, OfflineThresholds

    res = {
        "baseline": round(baseline, 4),
        "thresholds": th.as_dict(),
        # the package ships these defaults: a recalibration that moves them must update offline.py
        "shipped_defaults_equal_fit": th == OfflineThresholds() and round(baseline, 4) == MINILM_BASELINE,
        "fit": fit,
        "train": evaluate(judge, f_train, [c.kind for c in train], [c.label for c in train]),
        "test": evaluate(judge, f_test, [c.kind for c in test], [c.label for c in test]),
    }
    # the check: the template's five examples, captions only (MiniLM, the calibrated baseline)
    ex = judge.judge([c for c, _ in TEMPLATE_EXAMPLES]).to_pylist()
    res["template_examples"] = [{"expected": lab, "got": r["label"], "reason": r["reason"]}
                                for (c, lab), r in zip(TEMPLATE_EXAMPLES, ex)]
    res["template_agreement"] = sum(r["got"] == r["expected"] for r in res["template_examples"])
    # feature medians per kind (documentation)
    kinds = np.array([c.kind for c in test])
    res["test_feature_medians"] = {
        k: {f: round(float(np.nanmedian(f_test[f][kinds == k])), 3) for f in
            ("junk_share", "dup_share", "cohesion", "vocab", "entries_per_caption", "mean_words")}
        for k in dict.fromkeys(kinds.tolist())}
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
