"""Benchmark inputs from the real photos in ../shared/data: the 1,079 JPEGs (COCO + clothing), the
WebDataset tar members, and deterministic transformed copies for the near-duplicate quality study."""

from __future__ import annotations

import io
import os
import random
import statistics
import tarfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def real_photo_paths() -> List[Path]:
    paths = sorted((SHARED / "images").rglob("*.jpg"))
    if not paths:
        raise SystemExit(f"no photos under {SHARED / 'images'}: the benchmark needs ../shared/data")
    return paths


def real_photos() -> List[bytes]:
    return [p.read_bytes() for p in real_photo_paths()]


def tar_images() -> List[bytes]:
    out = []
    for t in sorted((SHARED / "webdataset").glob("*.tar")):
        with tarfile.open(t) as tf:
            for m in tf.getmembers():
                if m.name.lower().endswith((".jpg", ".jpeg", ".png", ".webp")):
                    out.append(tf.extractfile(m).read())  # type: ignore[union-attr]
    return out


def encode(im, fmt: str, **kw) -> bytes:
    bio = io.BytesIO()
    im.save(bio, fmt, **kw)
    return bio.getvalue()


TRANSFORMS = ("jpeg_q30_95", "resize_0.3_2x", "crop_le_5pct", "brightness_pm10", "png", "webp")


def transformed(blob: bytes, name: str, rng: random.Random) -> bytes:
    """One copy of a photo under a named transform (parameters drawn from rng)."""
    from PIL import Image, ImageEnhance

    im = Image.open(io.BytesIO(blob)).convert("RGB")
    if name == "jpeg_q30_95":
        return encode(im, "JPEG", quality=rng.randint(30, 95))
    if name == "resize_0.3_2x":
        s = rng.uniform(0.3, 2.0)
        return encode(im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS), "JPEG", quality=90)
    if name == "crop_le_5pct":
        f = rng.uniform(0.01, 0.05)  # share of width and of height removed, split between the sides
        cw, ch = round(im.width * f), round(im.height * f)
        x0, y0 = rng.randint(0, cw), rng.randint(0, ch)
        return encode(im.crop((x0, y0, im.width - (cw - x0), im.height - (ch - y0))), "JPEG", quality=90)
    if name == "brightness_pm10":
        factor = 1 + rng.choice((-1, 1)) * rng.uniform(0.02, 0.10)
        return encode(ImageEnhance.Brightness(im).enhance(factor), "JPEG", quality=90)
    if name == "png":
        return encode(im, "PNG", compress_level=1)
    if name == "webp":
        return encode(im, "WEBP", quality=80)
    raise ValueError(name)


def loadavg() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover
        return "n/a"


def alternate(engines: Dict[str, Callable[[], object]], rounds: int, reps: Dict[str, int] = {}) -> Dict[str, List[float]]:
    """Runs every engine once per round, in turn (A B C A B C ...); returns the wall time of one
    pass over the input. Engines named in ``reps`` run that many passes per turn (timed together,
    divided), so that sub-millisecond calls are not lost in timer and scheduling noise."""
    times: Dict[str, List[float]] = {k: [] for k in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            r = reps.get(name, 1)
            t0 = time.perf_counter()
            for _ in range(r):
                fn()
            times[name].append((time.perf_counter() - t0) / r)
    return times


def med(xs: List[float]) -> float:
    return statistics.median(xs)


def table(rows: List[Tuple[str, ...]], header: Tuple[str, ...]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
