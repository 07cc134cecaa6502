"""Image kernel benchmark: header sizes, perceptual hashes and content hashes against their peers,
side by side in one process on the same real photos, alternating engines, medians and ratios.

  sizes     fastcurate.image_sizes (C++ header parse) vs PIL Image.open(f).size (lazy: Python header
            parse) and PIL open + load (a full decode); every engine must return the same sizes.
  phash     fastcurate.perceptual_hashes (Pillow draft decode + C++ hash) vs imagehash.phash(PIL
            image) as users run it; reports the Hamming distances between the two definitions and
            checks fastcurate's hashes do not depend on the thread count.
  content   XXH3-128 per blob (xxhash package) vs hashlib.md5 per blob vs one XXH3 call over all
            the bytes at once (the floor: what the per-call overhead costs).

    python benchmarks/bench_images.py            # 5 rounds
    python benchmarks/bench_images.py --quick    # 2 rounds
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _images import alternate, encode, loadavg, med, real_photos, table, tar_images  # noqa: E402

from fastcurate.kernels import dedup  # noqa: E402
from fastcurate.kernels.images import decode_gray, gray_hashes, image_sizes, perceptual_hashes  # noqa: E402


def bench_sizes(photos, rounds):
    from PIL import Image

    rng = random.Random(0)
    extra = []
    for b in photos[::10]:  # re-encoded copies so that every format is in the mix
        im = Image.open(io.BytesIO(b)).convert("RGB")
        fmt = rng.choice(["PNG", "WEBP", "GIF", "BMP"])
        extra.append(encode(im, fmt, **({"compress_level": 1} if fmt == "PNG" else {})))
    blobs = photos + tar_images() + extra
    arrow = pa.array(blobs, type=pa.binary())

    def pil_open():
        return [Image.open(io.BytesIO(b)).size for b in blobs]

    def pil_decode():
        out = []
        for b in blobs:
            im = Image.open(io.BytesIO(b))
            im.load()
            out.append(im.size)
        return out

    expected = pil_open()
    for name, got in (("fastcurate", image_sizes(arrow)), ("decode", None)):
        if got is not None:
            assert got.ok.all() and list(zip(got.width.tolist(), got.height.tolist())) == expected, name
    assert pil_decode() == expected
    # The kernel splits rows into blocks of 8192, so threads only help on longer columns: the same
    # images 16 times over (19k rows; the list shares the bytes objects, nothing is copied).
    many = blobs * 16
    engines = {
        "fastcurate, Arrow binary, 1 thread": lambda: image_sizes(arrow, threads=1),
        "fastcurate, list of bytes, 1 thread": lambda: image_sizes(blobs, threads=1),
        "fastcurate, list x16 (19k rows), 1 thread": lambda: image_sizes(many, threads=1),
        "fastcurate, list x16 (19k rows), all cores": lambda: image_sizes(many),
        "PIL open (lazy, no decode)": pil_open,
        "PIL open + decode": pil_decode,
    }
    fast = {k: 50 for k in engines if k.startswith("fastcurate")}
    times = alternate(engines, rounds, fast)
    n = len(blobs)
    base = med(times["PIL open + decode"])
    lazy = med(times["PIL open (lazy, no decode)"])
    rows = []
    for name, ts in times.items():
        rows_per_call = len(many) if "x16" in name else n
        t = med(ts) / rows_per_call * n  # per pass over the n images
        rows.append((name, f"{n / t:,.0f}", f"{t / n * 1e6:.3f}", f"{base / t:,.0f}x", f"{lazy / t:,.1f}x"))
    return {
        "n": n,
        "formats": "1,083 JPEG + %d PNG/WebP/GIF/BMP" % len(extra),
        "table": table(rows, ("engine", "images/s", "µs/image", "vs PIL decode", "vs PIL open")),
        "times": times,
    }


def bench_phash(photos, rounds):
    import imagehash
    from PIL import Image

    def ih_one(b):
        return int(str(imagehash.phash(Image.open(io.BytesIO(b)))), 16)

    def ih_serial():
        return [ih_one(b) for b in photos]

    pool = ThreadPoolExecutor(os.cpu_count() or 1)

    def ih_threads():
        return list(pool.map(ih_one, photos))

    ours = perceptual_hashes(photos, threads=1)
    assert ours.ok.all()
    for threads in (2, 3, None):
        again = perceptual_hashes(photos, threads=threads)
        assert np.array_equal(again.phash, ours.phash) and np.array_equal(again.dhash, ours.dhash)
    theirs = np.array(ih_serial(), dtype=np.uint64)
    dist = np.bitwise_count(ours.phash ^ theirs)
    grays = [decode_gray(b) for b in photos]
    engines = {
        "imagehash.phash (PIL), 1 thread": ih_serial,
        "imagehash.phash (PIL), thread pool": ih_threads,
        "fastcurate.perceptual_hashes, 1 thread": lambda: perceptual_hashes(photos, threads=1),
        "fastcurate.perceptual_hashes, all cores": lambda: perceptual_hashes(photos),
        "  of which: draft decode only, 1 thread": lambda: [decode_gray(b) for b in photos],
        "  of which: C++ pHash+dHash of decoded, 1 thread": lambda: gray_hashes(grays, threads=1),
    }
    times = alternate(engines, rounds, {"  of which: C++ pHash+dHash of decoded, 1 thread": 10})
    n = len(photos)
    base = med(times["imagehash.phash (PIL), 1 thread"])
    rows = [(name, f"{n / med(ts):,.0f}", f"{med(ts) / n * 1e6:,.0f}", f"{base / med(ts):.1f}x") for name, ts in times.items()]
    hist = np.bincount(dist, minlength=17)
    pool.shutdown()
    return {
        "n": n,
        "table": table(rows, ("engine", "images/s", "µs/image", "vs imagehash 1 thread")),
        "distance_vs_imagehash": {
            "median": float(np.median(dist)),
            "mean": float(dist.mean()),
            "p90": float(np.percentile(dist, 90)),
            "max": int(dist.max()),
            "histogram_0_to_16": hist[:17].tolist(),
            "share_le_4": float((dist <= 4).mean()),
            "share_le_10": float((dist <= 10).mean()),
        },
        "decoded_shapes": sorted({g.shape for g in grays})[:3] + sorted({g.shape for g in grays})[-3:],
        "times": times,
    }


def bench_content(photos, rounds):
    import xxhash

    captions = pa.array([("caption number %d " % k) * (1 + k % 5) for k in range(100_000)])
    total = sum(len(b) for b in photos)
    joined = b"".join(photos)
    arrow = pa.array(photos, type=pa.binary())
    ref = dedup.content_hashes(photos)
    assert np.array_equal(dedup.content_hashes(arrow).digest, ref.digest)
    engines = {
        "content_hashes (XXH3-128 per blob), list": lambda: dedup.content_hashes(photos),
        "content_hashes (XXH3-128 per blob), Arrow": lambda: dedup.content_hashes(arrow),
        "hashlib.md5 per blob": lambda: [hashlib.md5(b).digest() for b in photos],
        "one XXH3-128 over all bytes (floor)": lambda: xxhash.xxh3_128_intdigest(joined),
        "text_hashes of 100k captions": lambda: dedup.text_hashes(captions),
    }
    times = alternate(engines, rounds, {"one XXH3-128 over all bytes (floor)": 10})
    rows = []
    for name, ts in times.items():
        t = med(ts)
        if name.startswith("text_hashes"):
            rows.append((name, f"{len(captions) / t:,.0f} rows/s", f"{t / len(captions) * 1e9:,.0f} ns/row", ""))
        else:
            rows.append((name, f"{len(photos) / t:,.0f} images/s", f"{t / len(photos) * 1e6:.1f} µs/image", f"{total / t / 1e9:.2f} GB/s"))
    return {"n": len(photos), "bytes": total, "table": table(rows, ("engine", "throughput", "per row", "bytes/s")), "times": times}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", choices=["sizes", "phash", "content"], default=None)
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    photos = real_photos()
    load0 = loadavg()
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "load_start": load0, "rounds": rounds}
    for part, fn in (("sizes", bench_sizes), ("phash", bench_phash), ("content", bench_content)):
        if args.only in (None, part):
            res[part] = fn(photos, rounds)
    res["load_end"] = loadavg()
    print(f"# bench_images: {res['machine']}, rounds={rounds}, load {res['load_start']} -> {res['load_end']}\n")
    if "sizes" in res:
        print(f"## Image size ({res['sizes']['n']} images: {res['sizes']['formats']})\n")
        print(res["sizes"]["table"] + "\n")
    if "phash" in res:
        print(f"## Perceptual hash ({res['phash']['n']} real photos)\n")
        print(res["phash"]["table"] + "\n")
        print("Hamming distance fastcurate pHash vs imagehash.phash:", json.dumps(res["phash"]["distance_vs_imagehash"]))
        print("decoded shapes (smallest, largest):", res["phash"]["decoded_shapes"], "\n")
    if "content" in res:
        print(f"## Content hash ({res['content']['n']} photos, {res['content']['bytes'] / 1e6:.1f} MB)\n")
        print(res["content"]["table"])
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
