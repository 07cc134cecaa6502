"""A synthetic pipeline run directory in the layouts of every stage the report knows, for the
report tests and benchmarks/bench_report.py (the 10M-row run).

Stages and files (their layouts as documented in docs/runner.md and in the stage issues):
01-curate (entry_counts.npy, entry_counts_curated.npy, metadata.json), 02-embed (clip_score),
03-filter (stats: clip_score_threshold), 04-dedup (drops: near_duplicate, detail = "TWIN_UID
hamming=N"), 05-cluster (cluster, cos_to_centroid, rank_in_cluster; clusters.parquet,
tsne.parquet), 06-judge (judgments.parquet; drops: low_value_cluster), 07-pairs (pairs.parquet),
08-instruct (triplets.parquet). Rows are made shard by shard (bounded memory at any size); the
images are paths to the real photos in ../shared/data/images when present, else small generated
JPEGs. The numbers are synthetic: only the layout is real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WORDS = ("red blue green small large old new wooden metal glass dog cat bird horse car bike boat house tree "
         "flower beach city street mountain river table chair lamp shirt dress shoes hat person woman man child "
         "photo of a the on in with near at").split()
STAGES = ["curate", "embed", "filter", "dedup", "cluster", "judge", "pairs", "instruct"]


def _images(root: Path, n: int = 40) -> List[str]:
    photos = sorted((DATA / "images").rglob("*.jpg")) if (DATA / "images").is_dir() else []
    if photos:
        return [str(p) for p in photos]
    from PIL import Image

    d = root / "_images"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
        a[:, :, i % 3] = 200
        p = d / f"img{i:03d}.jpg"
        Image.fromarray(a).save(p, "JPEG", quality=80)
        out.append(str(p))
    return out


def _captions(rng: np.random.Generator, n: int = 4000) -> pa.Array:
    caps = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]
    return pa.array(caps, pa.string())


def _write(path: Path, t: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, path, compression="zstd", compression_level=1, row_group_size=65536)


def make_run(root: Path, n_rows: int, n_shards: int = 3, k: int = 12, seed: int = 0, n_entries: int = 5000,
             tsne_max: int = 50_000, with_images: bool = True) -> Path:
    """Write the run under ``root`` (``root/pipeline.json``, ``root/NN-stage/``) and return it."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    imgs = pa.array(_images(root), pa.string()) if with_images else None
    caps = _captions(rng)
    dirs = {s: root / f"{i + 1:02d}-{s}" for i, s in enumerate(STAGES)}
    raw = root / "_raw"
    reasons = {"curate": {"no_match": "the caption matches no metadata entry", "not_sampled": "balancing did not draw it"},
               "embed": {"undecodable": "the image bytes are not an image"}, "filter": {"clip_score": "CLIP score below the threshold"},
               "dedup": {"near_duplicate": "a near-duplicate image of a kept row (detail: its uid)"}, "cluster": {},
               "judge": {"low_value_cluster": "its cluster was judged Low Value"}, "pairs": {}, "instruct": {}}
    acc = {s: {"rows_in": 0, "kept": 0, "dropped": {r: 0 for r in reasons[s]}} for s in STAGES}
    inputs: Dict[str, List[str]] = {s: [] for s in STAGES}
    low = set(rng.choice(k, size=max(1, k // 5), replace=False).tolist())
    cluster_size = np.zeros(k, np.int64)
    closest: Dict[int, List[tuple]] = {}
    tsne_parts = []
    pairs_rows: List[tuple] = []
    per = -(-n_rows // n_shards)
    for sh in range(n_shards):
        lo, hi = sh * per, min(n_rows, (sh + 1) * per)
        n = hi - lo
        if n <= 0:
            break
        srng = np.random.default_rng([seed, sh])
        uid = pc.binary_join_element_wise(pa.array(["u"] * n), pc.cast(pa.array(np.arange(lo, hi)), pa.string()), "")
        cols = {"uid": uid, "caption": caps.take(pa.array(srng.integers(0, len(caps), n)))}
        if imgs is not None:
            idx = srng.integers(0, len(imgs), n)
            dup = np.flatnonzero((np.arange(lo, hi) % 33 == 1) & (np.arange(n) > 0))
            idx[dup] = idx[dup - 1]  # near-duplicates: the same photo as the row before
            cols["image"] = imgs.take(pa.array(idx))
        t = pa.table(cols)
        name = f"part-{sh:05d}.parquet"
        _write(raw / f"shard-{sh:05d}.parquet", t)
        prev = raw / f"shard-{sh:05d}.parquet"
        for s in STAGES:
            inputs[s].append(str(prev))
            m = t.num_rows
            code = np.zeros(m, np.int8)  # 0 keep, else index into the stage's reasons (1-based)
            detail = None
            added: Dict[str, pa.Array] = {}
            if s == "curate":
                u = srng.random(m)
                code[u < 0.40] = 1
                code[(u >= 0.40) & (u < 0.55)] = 2
            elif s == "embed":
                code[srng.random(m) < 0.005] = 1
                added["clip_score"] = pa.array(np.clip(srng.normal(0.28, 0.045, m), -1, 1).astype(np.float32))
            elif s == "filter":
                code[t.column("clip_score").to_numpy() < 0.25] = 1
            elif s == "dedup":
                nums = pc.cast(pc.utf8_slice_codeunits(t.column("uid"), 1), pa.int64()).to_numpy()
                d = np.flatnonzero((nums % 33 == 1) & (np.arange(m) > 0))
                d = d[nums[d - 1] == nums[d] - 1]  # its twin (the row before) is still there
                code[d] = 1
                detail = np.full(m, None, dtype=object)
                tw = t.column("uid").take(pa.array(d - 1)).to_pylist()
                detail[d] = [f"{a} hamming={h}" for a, h in zip(tw, srng.integers(0, 8, len(d)))]
            elif s == "cluster":
                c = srng.integers(0, k, m)
                cos = np.clip(srng.normal(0.7, 0.1, m), 0, 1).astype(np.float32)
                added["cluster"] = pa.array(c.astype(np.int32))
                added["cos_to_centroid"] = pa.array(cos)
                added["rank_in_cluster"] = pa.array(srng.integers(0, 1000, m).astype(np.int32))
                np.add.at(cluster_size, c, 1)
                if sh == 0:
                    order = np.argsort(-cos)
                    for j in order:
                        lst = closest.setdefault(int(c[j]), [])
                        if len(lst) < 5:
                            lst.append((t.column("uid")[int(j)].as_py(), t.column("caption")[int(j)].as_py()))
                take = min(m, max(1, tsne_max // n_shards))
                sel = np.linspace(0, m - 1, take).astype(np.int64)
                ang = c[sel] * (2 * np.pi / k)
                tsne_parts.append(pa.table({"uid": t.column("uid").take(pa.array(sel)),
                                            "x": (10 * np.cos(ang) + srng.normal(0, 1.2, take)).astype(np.float32),
                                            "y": (10 * np.sin(ang) + srng.normal(0, 1.2, take)).astype(np.float32)}))
            elif s == "judge":
                code[np.isin(t.column("cluster").to_numpy(), list(low))] = 1
                detail = np.full(m, None, dtype=object)
                cl = t.column("cluster").to_numpy()
                detail[code == 1] = [f"cluster {x}" for x in cl[code == 1]]
            elif s == "pairs" and sh == 0:
                cl = t.column("cluster").to_numpy()
                u = t.column("uid").to_pylist()
                for j in range(1, min(m, 400)):
                    if cl[j] == cl[j - 1] or j % 7 == 0:
                        pairs_rows.append((u[j - 1], u[j], int(cl[j]), float(srng.uniform(0.5, 0.9)),
                                           float(srng.uniform(0.3, 0.8))))
            keep = code == 0
            names = list(reasons[s])
            drops = np.flatnonzero(~keep)
            dr = pa.table({"uid": t.column("uid").take(pa.array(drops)),
                           "stage": pa.array([s] * len(drops), pa.string()),
                           "reason": pa.array([names[int(x) - 1] for x in code[drops]] if len(drops) else [], pa.string()),
                           "detail": pa.array(detail[drops].tolist() if detail is not None else [None] * len(drops),
                                              pa.string())})
            _write(dirs[s] / "drops" / name, dr)
            for col, arr in added.items():
                t = t.append_column(col, arr)
            t = t.filter(pa.array(keep))
            _write(dirs[s] / name, t)
            prev = dirs[s] / name
            a = acc[s]
            a["rows_in"] += m
            a["kept"] += int(keep.sum())
            for r_i, r in enumerate(names):
                a["dropped"][r] += int((code == r_i + 1).sum())
    # stage files
    counts = np.sort(rng.zipf(1.3, n_entries).astype(np.uint64))[::-1] * 10
    np.save(dirs["curate"] / "entry_counts.npy", counts)
    np.save(dirs["curate"] / "entry_counts_curated.npy", np.minimum(counts, 200).astype(np.uint64))
    (dirs["curate"] / "metadata.json").write_text(json.dumps([f"entry {i}" for i in range(n_entries)]))
    _write(dirs["cluster"] / "clusters.parquet", pa.table({
        "cluster": pa.array(np.arange(k, dtype=np.int32)), "size": pa.array(cluster_size),
        "closest_uids": pa.array([[u for u, _ in closest.get(c, [])] for c in range(k)], pa.list_(pa.string())),
        "closest_captions": pa.array([[x for _, x in closest.get(c, [])] for c in range(k)], pa.list_(pa.string())),
        "furthest_uids": pa.array([[] for _ in range(k)], pa.list_(pa.string())),
        "furthest_captions": pa.array([[] for _ in range(k)], pa.list_(pa.string()))}))
    _write(dirs["cluster"] / "tsne.parquet", pa.concat_tables(tsne_parts))
    lab = ["Low Value" if c in low else "High Value" for c in range(k)]
    _write(dirs["judge"] / "judgments.parquet", pa.table({
        "cluster": pa.array(np.arange(k, dtype=np.int32)), "label": lab,
        "reason": [("Captions are file names and boilerplate." if c in low else "Varied, descriptive captions.")
                   for c in range(k)],
        "backend": ["offline"] * k, "model": ["offline-v1"] * k}))
    pairs = pa.table({"query_uid": [p[0] for p in pairs_rows], "target_uid": [p[1] for p in pairs_rows],
                      "group": pa.array([p[2] for p in pairs_rows], pa.int32()),
                      "image_cos": pa.array([p[3] for p in pairs_rows], pa.float32()),
                      "text_cos": pa.array([p[4] for p in pairs_rows], pa.float32())})
    _write(dirs["pairs"] / "pairs.parquet", pairs)
    _write(dirs["instruct"] / "triplets.parquet", pa.table({
        "query_uid": pairs.column("query_uid"), "target_uid": pairs.column("target_uid"),
        "instruction": [f"make it {WORDS[i % 10]}" for i in range(pairs.num_rows)],
        "backend": ["offline"] * pairs.num_rows, "raw": [None] * pairs.num_rows}))
    stage_stats = {"curate": {"t": 200.0, "p": 0.2, "threshold_from": "t", "expected_size": acc["curate"]["kept"],
                              "n_entries": n_entries, "entries_matched": int(np.count_nonzero(counts)),
                              "entries_matched_after": int(np.count_nonzero(counts)), "seed": 0},
                   "filter": {"clip_score_threshold": 0.25}, "cluster": {"k": k, "silhouette": 0.12},
                   "judge": {"labels": {"High Value": k - len(low), "Low Value": len(low)}}}
    for i, s in enumerate(STAGES):
        a = acc[s]
        dropped = {"null_id": 0, "bad_shard": 0, **a["dropped"]}
        stats = {"stage": s, "rows_in": a["rows_in"], "rows_kept": a["kept"], "rows_dropped": dropped,
                 "reasons": {"null_id": "no id", "bad_shard": "unreadable shard", **reasons[s]},
                 "shards_in": n_shards, "shards_out": n_shards, "bad_shards": [], "outputs": [],
                 "columns": {"id": "uid", "text": "caption", **({"image": "image"} if imgs is not None else {})},
                 "id_source": "column", "warnings": [], s: stage_stats.get(s, {}),
                 "manifest": {"stage": s, "inputs": [{"file": f} for f in inputs[s]], "columns": {}}}
        (dirs[s] / "stats.json").write_text(json.dumps(stats, indent=2))
        tot = a["rows_in"] / (2e5 if s != "embed" else 2e3)
        (dirs[s] / "timings.json").write_text(json.dumps({"process_s": tot, "total_s": tot * 1.05,
                                                          "rows_per_s": a["rows_in"] / (tot * 1.05) if tot else 0,
                                                          "resumed": False}))
    (root / "pipeline.json").write_text(json.dumps({"name": "synthetic", "description": "synthetic layout test run",
                                                    "steps": [{"dir": dirs[s].name, "stage": s} for s in STAGES]}))
    return root
