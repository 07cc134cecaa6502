"""Benchmark: fastcurate.embed (ONNX Runtime) against open_clip in PyTorch eager, side by side.

ViT-B-32 with random weights (the cost is the same as with real ones; none can be downloaded here),
one model instance shared by both sides so the answers can be checked:

* tokenisation   ClipTokenizer vs open_clip's tokenizer, all >= 20k real captions, ids must be equal
* preprocess     decode + resize + crop + normalise of the COCO photos (same thread pool size)
* image model    ORT fp32 / int8 vs torch eager on the same preprocessed batch (cosine checked)
* text model     ORT variable-length fp32 / int8 vs torch eager (77 tokens) on real captions
* end to end     paths -> normalised embeddings (images), captions -> embeddings (texts)

Every measurement alternates A and B runs and reports the median; the machine load (getloadavg)
is printed before and after, since the development machines are shared. Run from the repository
root: ``python benchmarks/bench_embed.py [--quick]``. Needs the export extra (torch, open_clip).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import importlib.util
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("fastcurate") is None:  # a checkout run without installing the package
    sys.path.insert(0, str(ROOT / "python"))
DATA = ROOT.parent / "shared" / "data"


def load_captions() -> List[str]:
    import pyarrow.parquet as pq

    texts = [t or "" for t in pq.read_table(DATA / "captions" / "laion_10k.parquet").column("TEXT").to_pylist()]
    with open(DATA / "captions" / "cc3m_val.tsv", encoding="utf-8") as f:
        texts += [line.split("\t")[0] for line in f.read().split("\n") if line]
    return texts


def alternate(runs: Dict[str, Callable[[], float]], reps: int) -> Dict[str, float]:
    """Run each callable ``reps`` times, interleaved (A B A B ...); each returns its own seconds."""
    times: Dict[str, List[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for k, f in runs.items():
            times[k].append(f())
    return {k: statistics.median(v) for k, v in times.items()}


def timed(f: Callable[[], object]) -> Callable[[], float]:
    def g() -> float:
        t0 = time.perf_counter()
        f()
        return time.perf_counter() - t0

    return g


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one round (about 2 minutes)")
    ap.add_argument("--images", type=int, default=None, help="end-to-end images per engine (default 2000)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    # Batch sizes tuned on this 2-core machine: images 16 ~ 32 > 64 for both engines; texts 16 is
    # best for both (open_clip 16 > 64 > 256; ours, length-sorted, 16 > 32 > 64 > 128).
    ap.add_argument("--batch", type=int, default=32, help="image batch size (both engines)")
    ap.add_argument("--out", default=str(ROOT / ".bench" / "embed.json"))
    a = ap.parse_args()

    import torch
    from fastcurate.models.torch_compat import import_open_clip
    open_clip = import_open_clip()
    from PIL import Image

    from fastcurate.models import ClipEncoder, ClipTokenizer, Preprocessor, export_clip, load_bundle

    torch.set_num_threads(a.threads)
    if not DATA.exists():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    quick = a.quick
    n_e2e = a.images or (200 if quick else 2000)
    rounds_e2e = 1 if quick else 2
    reps = 1 if quick else 3
    n_model_img = 64 if quick else 128
    n_model_txt = 128 if quick else 256
    load0 = os.getloadavg()
    print(f"# bench_embed  threads={a.threads} quick={quick} loadavg(before)={load0}")

    # One random ViT-B-32 for both sides.
    torch.manual_seed(0)
    model, _, oc_pre = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    oc_tok = open_clip.get_tokenizer("ViT-B-32")
    bdir = ROOT / ".bench" / "vit-b-32-seed0"
    t0 = time.perf_counter()
    if not (bdir / "manifest.json").is_file() or "int8" not in load_bundle(bdir).variants:
        export_clip(model, bdir, variants=["int8"])
        print(f"export ViT-B-32 (fp32 + int8, with parity check): {time.perf_counter() - t0:.1f} s")
    parity = load_bundle(bdir).manifest["parity"]

    photos = sorted((DATA / "images" / "coco_mini_val").glob("*.jpg"))
    paths = [str(photos[i % len(photos)]) for i in range(max(n_e2e, len(photos)))]
    captions = load_captions()
    results: Dict[str, object] = {"threads": a.threads, "quick": quick, "loadavg_before": load0}

    # ---------------- tokenisation ----------------
    tok_json = bdir / "tokenizer.json"
    ours_ids = ClipTokenizer(tok_json)(captions)
    ref_ids = oc_tok(captions).numpy()
    assert np.array_equal(ours_ids, ref_ids), "token ids differ from open_clip"
    warm_oc = open_clip.get_tokenizer("ViT-B-32")
    warm_ours = ClipTokenizer(tok_json)
    warm_oc(captions)
    warm_ours(captions)
    def cold(factory):
        # A fresh tokenizer (empty cache) for every run; building it (loading the vocabulary, once
        # per process) is not timed for either side.
        def run() -> float:
            tok = factory()
            return timed(lambda: tok(captions))()

        return run

    tk = alternate({
        "open_clip cold": cold(lambda: open_clip.get_tokenizer("ViT-B-32")),
        "ours cold": cold(lambda: ClipTokenizer(tok_json)),
        "open_clip warm": timed(lambda: warm_oc(captions)),
        "ours warm": timed(lambda: warm_ours(captions)),
    }, reps)
    results["tokenize"] = {k: len(captions) / v for k, v in tk.items()}
    results["tokenize_n"] = len(captions)
    print(f"tokenise {len(captions)} captions (ids identical): " +
          ", ".join(f"{k} {len(captions) / v:,.0f}/s" for k, v in tk.items()))

    # ---------------- decode + preprocess ----------------
    pp_paths = paths[: (400 if quick else 1000)]
    ours_pre = Preprocessor(load_bundle(bdir).preprocess)
    pool = ThreadPoolExecutor(a.threads)

    def oc_preprocess(ps: List[str]):
        return torch.stack(list(pool.map(lambda p: oc_pre(Image.open(p)), ps)))

    # Both sides decode, resize and normalise each image in the pool's threads and stack a batch,
    # as the real pipelines do (stacking all images at once measures page faults, not decoding).
    def batched(f, ps: List[str], stack):
        return [stack(list(pool.map(f, ps[i:i + a.batch]))) for i in range(0, len(ps), a.batch)]

    def our_preprocess(ps: List[str]):
        return np.concatenate(batched(ours_pre, ps, np.stack))

    fast_pre = Preprocessor(load_bundle(bdir).preprocess, fast=True)

    pp = alternate({"open_clip": timed(lambda: batched(lambda p: oc_pre(Image.open(p)), pp_paths, torch.stack)),
                    "ours exact": timed(lambda: batched(ours_pre, pp_paths, np.stack)),
                    "ours fast": timed(lambda: batched(fast_pre, pp_paths, np.stack))}, reps)
    results["preprocess"] = {k: len(pp_paths) / v for k, v in pp.items()}
    print(f"decode+preprocess {len(pp_paths)} images ({a.threads} threads): " +
          ", ".join(f"{k} {len(pp_paths) / v:.0f}/s" for k, v in pp.items()))

    # ---------------- image model ----------------
    enc32 = ClipEncoder(bdir, device="cpu", precision="fp32", batch_size=a.batch, decode_threads=a.threads)
    enc8 = ClipEncoder(bdir, device="cpu", precision="int8", batch_size=a.batch, decode_threads=a.threads)
    xin = our_preprocess([str(p) for p in photos] * (n_model_img // len(photos) + 1))[:n_model_img]
    s32, s8 = enc32.image_session, enc8.image_session

    def torch_img(x):
        with torch.no_grad():
            return torch.cat([model.encode_image(torch.from_numpy(x[i:i + a.batch])) for i in range(0, len(x), a.batch)]).numpy()

    def ort_img(sess, x):
        return np.concatenate([sess.run({"pixel_values": x[i:i + a.batch]}) for i in range(0, len(x), a.batch)])

    ref = torch_img(xin)
    c32 = cos_rows(ort_img(s32, xin), ref)
    c8 = cos_rows(ort_img(s8, xin), ref)
    assert c32.min() >= 0.9999, c32.min()
    im = alternate({"open_clip": timed(lambda: torch_img(xin)), "ort fp32": timed(lambda: ort_img(s32, xin)),
                    "ort int8": timed(lambda: ort_img(s8, xin))}, reps)
    results["image_model"] = {k: n_model_img / v for k, v in im.items()}
    results["image_model_cos"] = {"fp32_min": float(c32.min()), "int8_mean": float(c8.mean()), "int8_min": float(c8.min())}
    print(f"image model {n_model_img} images, batch {a.batch}: " + ", ".join(f"{k} {n_model_img / v:.1f}/s" for k, v in im.items())
          + f"  | cos vs torch: fp32 min {c32.min():.6f}, int8 mean {c8.mean():.5f} min {c8.min():.5f}")

    # ---------------- text model ----------------
    rng = np.random.default_rng(0)
    sub = [captions[i] for i in rng.choice(len(captions), n_model_txt, replace=False)]

    def torch_txt(texts):
        ids = oc_tok(texts)
        with torch.no_grad():
            return torch.cat([model.encode_text(ids[i:i + 16]) for i in range(0, len(ids), 16)]).numpy()

    ref_t = torch_txt(sub)
    c32t = cos_rows(enc32.encode_texts(sub), ref_t)
    c8t = cos_rows(enc8.encode_texts(sub), ref_t)
    assert c32t.min() >= 0.9999, c32t.min()
    ids_sub = enc32.tokenizer(sub)
    tm = alternate({
        "open_clip (77 tokens)": timed(lambda: torch_txt(sub)),
        "ort fp32 variable length": timed(lambda: enc32.encode_texts(sub)),
        "ort int8 variable length": timed(lambda: enc8.encode_texts(sub)),
    }, reps)
    results["text_e2e"] = {k: n_model_txt / v for k, v in tm.items()}
    results["text_cos"] = {"fp32_min": float(c32t.min()), "int8_mean": float(c8t.mean()), "int8_min": float(c8t.min())}
    results["mean_tokens"] = float((ids_sub != 0).sum(1).mean())
    print(f"texts end to end (tokenise + model), {n_model_txt} real captions, mean {results['mean_tokens']:.1f} tokens: "
          + ", ".join(f"{k} {n_model_txt / v:.1f}/s" for k, v in tm.items())
          + f"  | cos vs torch: fp32 min {c32t.min():.6f}, int8 mean {c8t.mean():.5f} min {c8t.min():.5f}")

    # ---------------- fast preprocessing agreement ----------------
    encf = ClipEncoder(bdir, device="cpu", precision="fp32", fast_preprocess=True, batch_size=a.batch)
    uniq = [str(p) for p in photos]
    cf = cos_rows(encf.encode_images(uniq), enc32.encode_images(uniq))
    results["fast_preprocess_cos"] = {"mean": float(cf.mean()), "min": float(cf.min()), "n": len(uniq)}
    print(f"fast preprocess vs exact, {len(uniq)} real photos: embedding cos mean {cf.mean():.5f} min {cf.min():.5f}")

    # ---------------- end to end images ----------------
    per = n_e2e // rounds_e2e
    e2e_paths = paths[:per]

    def oc_e2e():
        out = []
        with torch.no_grad():
            for i in range(0, len(e2e_paths), a.batch):
                x = oc_preprocess(e2e_paths[i:i + a.batch])
                out.append(torch.nn.functional.normalize(model.encode_image(x), dim=-1))
        return torch.cat(out).numpy()

    enc8f = ClipEncoder(bdir, device="cpu", precision="int8", fast_preprocess=True, batch_size=a.batch,
                        decode_threads=a.threads)
    ee = alternate({"open_clip": timed(oc_e2e),
                    "ours fp32 exact": timed(lambda: enc32.encode_images(e2e_paths)),
                    "ours int8 exact": timed(lambda: enc8.encode_images(e2e_paths)),
                    "ours int8 fast": timed(lambda: enc8f.encode_images(e2e_paths))}, rounds_e2e)
    c8f = cos_rows(enc8f.encode_images(uniq), enc32.encode_images(uniq))
    results["int8_fast_vs_fp32_exact_cos"] = {"mean": float(c8f.mean()), "min": float(c8f.min())}
    print(f"int8 + fast preprocess vs fp32 exact, {len(uniq)} real photos: cos mean {c8f.mean():.5f} min {c8f.min():.5f}")
    results["image_e2e"] = {k: per / v for k, v in ee.items()}
    results["image_e2e_n"] = per * rounds_e2e
    check = cos_rows(enc32.encode_images(e2e_paths[:40]), oc_e2e_first(model, oc_pre, e2e_paths[:40]))
    assert check.min() >= 0.9999, check.min()
    print(f"images end to end, {per} x {rounds_e2e} rounds: " + ", ".join(f"{k} {per / v:.1f}/s" for k, v in ee.items()))

    load1 = os.getloadavg()
    results["loadavg_after"] = load1
    results["export_parity"] = parity
    print(f"loadavg(after)={load1}")
    print("\n| stage | open_clip eager | fastcurate fp32 | ratio | fastcurate int8 | ratio |\n|---|---|---|---|---|---|")
    r = results

    def row(name, oc, f32, i8=None, fmt="{:,.1f}"):
        s = f"| {name} | {fmt.format(oc)} | {fmt.format(f32)} | {f32 / oc:.2f}x |"
        s += f" {fmt.format(i8)} | {i8 / oc:.2f}x |" if i8 is not None else " - | - |"
        print(s)

    row("tokenise captions/s (cold cache)", r["tokenize"]["open_clip cold"], r["tokenize"]["ours cold"], fmt="{:,.0f}")
    row("tokenise captions/s (warm cache)", r["tokenize"]["open_clip warm"], r["tokenize"]["ours warm"], fmt="{:,.0f}")
    row("decode+preprocess images/s", r["preprocess"]["open_clip"], r["preprocess"]["ours exact"])
    row("image model images/s", r["image_model"]["open_clip"], r["image_model"]["ort fp32"], r["image_model"]["ort int8"])
    row("texts end to end texts/s", r["text_e2e"]["open_clip (77 tokens)"], r["text_e2e"]["ort fp32 variable length"],
        r["text_e2e"]["ort int8 variable length"])
    row("images end to end images/s", r["image_e2e"]["open_clip"], r["image_e2e"]["ours fp32 exact"],
        r["image_e2e"]["ours int8 exact"])
    row("images end to end, int8 column = int8 + fast preprocess", r["image_e2e"]["open_clip"],
        r["image_e2e"]["ours fp32 exact"], r["image_e2e"]["ours int8 fast"])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {a.out}")
    pool.shutdown()
    for e in (enc32, enc8, encf, enc8f):
        e.close()
    return 0


def oc_e2e_first(model, oc_pre, ps):
    import torch
    from PIL import Image, ImageOps

    with torch.no_grad():
        x = torch.stack([oc_pre(ImageOps.exif_transpose(Image.open(p))) for p in ps])
        return torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()


if __name__ == "__main__":
    sys.exit(main())
