"""Near-duplicate benchmark: quality on real photos and speed of the Hamming-radius search.

Quality. The 1,079 real photos of ../shared/data/images (79 COCO, 1,000 clothing photos, many on
the same backdrop) and one copy of each under every transform: JPEG re-encode (q 30-95), resize
(0.3-2x, LANCZOS), crop (1-5 % of width and height), brightness (+-2-10 %), PNG, WebP (q 80). For
each transform the set is the originals plus their copies; a pair is true when both images come
from the same source photo (sources with identical decoded pixels, such as the photo labels.csv
lists under two labels, count as one). Reported per method: recall (share of original-copy pairs
found), false-pair rate (share of reported pairs that are false), and rows the keep rule would
drop in favour of a different photo. Methods: imagehash.phash <= 10 (what imagededup's PHash with
its default threshold reports), fastcurate pHash, dHash, and both (the default).

Speed. Synthetic hashes with planted near-duplicates (5 % of rows are copies of other rows with
0-10 flipped bits): uniformly random words, and words drawn bit by bit with the bit frequencies of
the real photos' pHashes (real hashes are not uniform: the DC bit is always set). fastcurate's
multi-index search against the brute force in C++ and a blocked numpy brute force (measured on a
sample of rows, extrapolated to all pairs). At 200k the search must equal the C++ brute force; at
10M, the neighbours of 300 random rows must equal a numpy brute force over all 10M. Peak RSS of the
10M search is measured in a child process.

    python benchmarks/bench_dedup.py                    # quality + speed at 200k and 10M
    python benchmarks/bench_dedup.py --quick            # quality + speed at 200k and 2M
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _images import ROOT, TRANSFORMS, loadavg, med, real_photo_paths, table, transformed  # noqa: E402

from fastcurate.kernels import dedup  # noqa: E402
from fastcurate.kernels.images import perceptual_hashes  # noqa: E402

RADIUS = dedup.DEFAULT_RADIUS
CACHE = ROOT / ".bench" / "dedup_copies"


# -- quality -----------------------------------------------------------------------------------


def copies_for(photos: List[bytes], name: str) -> List[bytes]:
    """Deterministic copies (seeded per transform), cached under .bench/ between runs."""
    d = CACHE / name
    if d.is_dir() and len(list(d.iterdir())) == len(photos):
        return [(d / f"{k:05d}").read_bytes() for k in range(len(photos))]
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"fastcurate-{name}")
    out = []
    for k, b in enumerate(photos):
        c = transformed(b, name, rng)
        (d / f"{k:05d}").write_bytes(c)
        out.append(c)
    return out


def sources(photos: List[bytes], ph: np.ndarray, dh: np.ndarray) -> np.ndarray:
    """Source id per original: two files are one source when they decode to the same size and
    differ by less than 2 levels per channel on average (the same photo saved twice, as the
    clothing photo listed under two labels: 0.5 levels apart). Candidates: pHash within 4 bits."""
    from PIL import Image

    src = np.arange(len(photos))
    pairs = dedup.hamming_pairs(ph, 4)
    for i, j in zip(pairs.i.tolist(), pairs.j.tolist()):
        a = np.asarray(Image.open(io.BytesIO(photos[i])).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(io.BytesIO(photos[j])).convert("RGB"), dtype=np.int16)
        if a.shape == b.shape and np.abs(a - b).mean() < 2:
            src[src == src[j]] = src[i]
    return src


def imagehash_phash(blobs: List[bytes]) -> np.ndarray:
    import imagehash
    from PIL import Image

    return np.array([int(str(imagehash.phash(Image.open(io.BytesIO(b)))), 16) for b in blobs], dtype=np.uint64)


def evaluate(methods: Dict[str, dict], src: np.ndarray, n_orig: int) -> dict:
    """Recall / false pairs / wrong drops of each method on one set (originals first, then copies)."""
    out = {}
    n = len(src)
    for name, m in methods.items():
        p = dedup.hamming_pairs(m["h"], m["r"], second=m.get("h2"), second_radius=m.get("r2", 64))
        same = src[p.i] == src[p.j]
        # Original-copy pairs: row k (original) and row n_orig + k (its copy), for every copy set.
        found = set(zip(p.i.tolist(), p.j.tolist()))
        expected = [(k, c) for c in range(n_orig, n) for k in [c % n_orig]]
        hits = sum((min(a, b), max(a, b)) in found for a, b in expected)
        labels = dedup.connected_components(n, p.i, p.j)
        keep = dedup.keep_one_per_group(labels)
        wrong_drop = int(((~keep.keep) & (src[keep.twin] != src)).sum())
        grouped = sum(labels[a] == labels[b] for a, b in expected)
        out[name] = {
            "pairs": len(p),
            "false_pairs": int((~same).sum()),
            "false_pair_rate": float((~same).mean()) if len(p) else 0.0,
            "recall": hits / len(expected),
            "group_recall": grouped / len(expected),
            "wrong_drops": wrong_drop,
        }
    return out


def bench_quality() -> dict:
    paths = real_photo_paths()
    photos = [p.read_bytes() for p in paths]
    n = len(photos)
    ours = perceptual_hashes(photos)
    assert ours.ok.all()
    src0 = sources(photos, ours.phash, ours.dhash)
    ih0 = imagehash_phash(photos)
    per: Dict[str, dict] = {}
    all_sets = {"ph": [ours.phash], "dh": [ours.dhash], "ih": [ih0]}
    for t in TRANSFORMS:
        copies = copies_for(photos, t)
        h = perceptual_hashes(copies)
        assert h.ok.all(), t
        ih = imagehash_phash(copies)
        ph = np.concatenate([ours.phash, h.phash])
        dh = np.concatenate([ours.dhash, h.dhash])
        ihh = np.concatenate([ih0, ih])
        for k, v in (("ph", h.phash), ("dh", h.dhash), ("ih", ih)):
            all_sets[k].append(v)
        per[t] = evaluate(_methods(ph, dh, ihh), np.concatenate([src0, src0]), n)
    ph = np.concatenate(all_sets["ph"])
    dh = np.concatenate(all_sets["dh"])
    ihh = np.concatenate(all_sets["ih"])
    together = evaluate(_methods(ph, dh, ihh), np.tile(src0, len(TRANSFORMS) + 1), n)
    # Pairs among the originals alone at the default rule: what a user would see on this set.
    p = dedup.hamming_pairs(ours.phash, RADIUS, second=ours.dhash, second_radius=dedup.DEFAULT_DHASH_RADIUS)
    root = paths[0].parents[1]
    orig_pairs = [
        (str(paths[i].relative_to(root)), str(paths[j].relative_to(root)), int(d), int(d2), bool(src0[i] == src0[j]))
        for i, j, d, d2 in zip(p.i, p.j, p.distance, p.distance2)
    ]
    return {"n_originals": n, "n_sources": int(len(set(src0.tolist()))), "per_transform": per, "all_transforms": together, "original_pairs": orig_pairs}


def _methods(ph, dh, ih) -> Dict[str, dict]:
    return {
        "imagehash pHash <= 10 (imagededup default)": {"h": ih, "r": 10},
        "fastcurate pHash <= 10": {"h": ph, "r": 10},
        "fastcurate dHash <= 10": {"h": dh, "r": 10},
        "fastcurate pHash <= 10 and dHash <= 10 (default)": {"h": ph, "r": 10, "h2": dh, "r2": 10},
        "fastcurate pHash <= 8": {"h": ph, "r": 8},
    }


def quality_tables(q: dict) -> str:
    methods = list(next(iter(q["per_transform"].values())).keys())
    rows = []
    for m in methods:
        recalls = [q["per_transform"][t][m]["recall"] for t in TRANSFORMS]
        false = sum(q["per_transform"][t][m]["false_pairs"] for t in TRANSFORMS)
        pairs = sum(q["per_transform"][t][m]["pairs"] for t in TRANSFORMS)
        cells = [f"{r:.3f}" for r in recalls]
        rows.append((m, *cells, f"{np.mean(recalls):.3f}", f"{false / max(pairs, 1):.2%}", f"{1 - false / max(pairs, 1):.2%}"))
    t1 = table(rows, ("method", *TRANSFORMS, "mean recall", "false-pair rate", "pairs true"))
    rows2 = []
    for m in methods:
        cells = [f"{q['per_transform'][t][m]['false_pairs']}/{q['per_transform'][t][m]['pairs']}" for t in TRANSFORMS]
        rows2.append((m, *cells, str(sum(q["per_transform"][t][m]["wrong_drops"] for t in TRANSFORMS))))
    t2 = table(rows2, ("false / reported pairs", *TRANSFORMS, "rows dropped for another photo"))
    a = q["all_transforms"]
    rows3 = [
        (m, f"{a[m]['recall']:.3f}", f"{a[m]['group_recall']:.3f}", f"{a[m]['false_pairs']}/{a[m]['pairs']}", f"{a[m]['false_pair_rate']:.2%}", str(a[m]["wrong_drops"]))
        for m in methods
    ]
    t3 = table(rows3, ("all 7 versions together", "pair recall", "group recall", "false/reported", "false-pair rate", "wrong drops"))
    return t1 + "\n\n" + t2 + "\n\n" + t3


# -- speed -------------------------------------------------------------------------------------


def real_bit_frequencies() -> np.ndarray:
    photos = [p.read_bytes() for p in real_photo_paths()]
    ph = perceptual_hashes(photos).phash
    bits = (ph[:, None] >> np.arange(64, dtype=np.uint64)[None, :]) & np.uint64(1)
    return bits.mean(axis=0)


def synthetic(n: int, seed: int, freq: np.ndarray = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if freq is None:
        h = rng.integers(0, 2**64, n, dtype=np.uint64)
    else:
        h = np.empty(n, dtype=np.uint64)
        weights = (np.uint64(1) << np.arange(64, dtype=np.uint64))
        step = 200_000
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            bits = rng.random((hi - lo, 64)) < freq[None, :]
            h[lo:hi] = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    # 5 % planted near-duplicates of other rows, 0-10 bits away.
    k = n // 20
    dst = rng.choice(n, k, replace=False)
    srcs = rng.integers(0, n, k)
    flips = np.zeros(k, dtype=np.uint64)
    nflip = rng.integers(0, 11, k)
    for f in range(10):
        sel = nflip > f
        flips[sel] ^= np.uint64(1) << rng.integers(0, 64, int(sel.sum())).astype(np.uint64)
    h[dst] = h[srcs] ^ flips
    return h


def numpy_brute_rate(h: np.ndarray, radius: int, sample_rows: int, col_block: int = 1 << 17) -> float:
    """Seconds per pair of a blocked numpy brute force (64 query rows x col_block columns at once)."""
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(len(h), sample_rows, replace=False))
    t0 = time.perf_counter()
    pairs = 0
    found = 0
    for q0 in range(0, len(rows), 64):
        q = h[rows[q0 : q0 + 64]]
        for c0 in range(0, len(h), col_block):
            d = np.bitwise_count(q[:, None] ^ h[None, c0 : c0 + col_block])
            found += int(np.count_nonzero(d <= radius))
            pairs += d.size
    return (time.perf_counter() - t0) / pairs


def neighbours_numpy(h: np.ndarray, rows: np.ndarray, radius: int) -> set:
    out = set()
    for r in rows.tolist():
        d = np.bitwise_count(h ^ h[r])
        for j in np.flatnonzero(d <= radius).tolist():
            if j != r:
                out.add((min(r, j), max(r, j)))
    return out


# The search runs in a fresh process so that its peak RSS is its own. Read from VmHWM (the peak of
# this process image): getrusage's ru_maxrss would include the parent's RSS at fork time on Linux.
CHILD = r"""
import json, sys, time
import numpy as np
from fastcurate.kernels import dedup

def hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")

h = np.load(sys.argv[1])
rss0 = hwm_mb()
t0 = time.perf_counter()
p = dedup.hamming_pairs(h, int(sys.argv[2]))
t = time.perf_counter() - t0
np.save(sys.argv[3], np.stack([p.i, p.j]))
print(json.dumps({"seconds": t, "pairs": len(p), "rss_before_mb": rss0, "peak_rss_mb": hwm_mb()}))
"""


def search_in_child(h: np.ndarray, radius: int, tmp: Path) -> dict:
    np.save(tmp / "h.npy", h)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp / "h.npy"), str(radius), str(tmp / "pairs.npy")],
                         env=env, check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    ij = np.load(tmp / "pairs.npy")
    res["i"], res["j"] = ij[0], ij[1]
    return res


def bench_speed(n_small: int, n_big: int, rounds: int) -> dict:
    freq = real_bit_frequencies()
    res: Dict[str, dict] = {"bit_frequency_range": [float(freq.min()), float(freq.max())]}
    for kind, f in (("uniform", None), ("real bit frequencies", freq)):
        h = synthetic(n_small, 7, f)
        mih1 = dedup.hamming_pairs(h, RADIUS, threads=1)
        brute = dedup.hamming_pairs(h, RADIUS, method="brute")
        assert np.array_equal(mih1.i, brute.i) and np.array_equal(mih1.j, brute.j), "MIH != brute force"
        times: Dict[str, List[float]] = {"mih, 1 thread": [], "mih, all cores": [], "C++ brute force, all cores": []}
        for _ in range(rounds):
            for name, fn in (("mih, 1 thread", lambda: dedup.hamming_pairs(h, RADIUS, threads=1)),
                             ("mih, all cores", lambda: dedup.hamming_pairs(h, RADIUS)),
                             ("C++ brute force, all cores", lambda: dedup.hamming_pairs(h, RADIUS, method="brute"))):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        all_pairs = n_small * (n_small - 1) / 2
        np_rate = numpy_brute_rate(h, RADIUS, 512)
        cpp_rate = med(times["C++ brute force, all cores"]) / all_pairs
        small = {name: med(ts) for name, ts in times.items()}
        small["numpy blocked brute force (extrapolated)"] = np_rate * all_pairs
        res[f"{kind}, n={n_small:,}"] = {"pairs": len(mih1), "seconds": small, "plan": dedup.search_plan(n_small, RADIUS)}

        hb = synthetic(n_big, 8, f)
        big_pairs = n_big * (n_big - 1) / 2
        with tempfile.TemporaryDirectory() as tmp:
            runs = [search_in_child(hb, RADIUS, Path(tmp)) for _ in range(max(1, rounds // 2))]
        first = runs[0]
        for r in runs[1:]:
            assert np.array_equal(r["i"], first["i"]) and np.array_equal(r["j"], first["j"])
        # Exactness at scale: the neighbours of random rows, by brute force over all rows.
        rows = np.random.default_rng(9).choice(n_big, 300, replace=False)
        truth = neighbours_numpy(hb, rows, RADIUS)
        rowset = set(rows.tolist())
        got = {(a, b) for a, b in zip(first["i"].tolist(), first["j"].tolist()) if a in rowset or b in rowset}
        assert got == truth, f"10M exactness check failed: {len(got)} vs {len(truth)}"
        np_rate_big = numpy_brute_rate(hb, RADIUS, 128)
        t_mih = med([r["seconds"] for r in runs])
        res[f"{kind}, n={n_big:,}"] = {
            "pairs": int(first["pairs"]),
            "checked_rows": len(rows),
            "checked_pairs": len(truth),
            "seconds": {
                "mih, all cores": t_mih,
                "C++ brute force, all cores (extrapolated)": cpp_rate * big_pairs,
                "numpy blocked brute force (extrapolated)": np_rate_big * big_pairs,
            },
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "rss_before_search_mb": first["rss_before_mb"],
            "plan": dedup.search_plan(n_big, RADIUS),
        }
    return res


def speed_table(s: dict) -> str:
    rows = []
    for key, v in s.items():
        if not isinstance(v, dict) or "seconds" not in v:
            continue
        secs = v["seconds"]
        np_t = secs["numpy blocked brute force (extrapolated)"]
        for name, t in secs.items():
            extra = ""
            if name.startswith("mih, all") and "peak_rss_mb" in v:
                extra = f"peak RSS {v['peak_rss_mb']:.0f} MB (before the search, hashes loaded: {v['rss_before_search_mb']:.0f} MB)"
            rows.append((key, name, f"{t:,.2f}", f"{np_t / t:,.0f}x", f"{v['pairs']:,}", extra))
    return table(rows, ("hashes", "engine", "seconds", "vs numpy brute", "pairs <= 10", "memory"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--big", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "load_start": loadavg()}
    if not args.skip_quality:
        res["quality"] = bench_quality()
    if not args.skip_speed:
        res["speed"] = bench_speed(200_000, args.big or (2_000_000 if args.quick else 10_000_000), rounds)
    res["load_end"] = loadavg()
    print(f"# bench_dedup: {res['machine']}, load {res['load_start']} -> {res['load_end']}\n")
    if "quality" in res:
        q = res["quality"]
        print(f"## Quality ({q['n_originals']} originals, {q['n_sources']} sources; radius {RADIUS})\n")
        print(quality_tables(q) + "\n")
        print("pairs among the originals at the default rule (pHash, dHash, same source):")
        for row in q["original_pairs"]:
            print("  ", row)
        print()
    if "speed" in res:
        print("## Search speed\n")
        print(speed_table(res["speed"]))
        for key, v in res["speed"].items():
            if isinstance(v, dict) and "plan" in v:
                print(f"  {key}: plan blocks={v['plan']['bits']} radii={v['plan']['radius']}" +
                      (f", exactness checked on {v['checked_rows']} rows ({v['checked_pairs']} pairs)" if "checked_rows" in v else ""))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
