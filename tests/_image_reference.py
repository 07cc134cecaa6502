"""The naive numpy reference of fastcurate's pHash and dHash definitions (docs/dedup.md), written the
obvious way (dense weight matrices, integer matmuls) so that the C++ kernel can be checked bit for bit."""

from __future__ import annotations

import math

import numpy as np


def box_weights(length: int, n: int) -> np.ndarray:
    """w[k, i]: overlap of output cell k, [k*L/n, (k+1)*L/n), with pixel i, in units of 1/n pixel."""
    k = np.arange(n, dtype=np.int64)[:, None]
    i = np.arange(length, dtype=np.int64)[None, :]
    lo = np.maximum(k * length, i * n)
    hi = np.minimum((k + 1) * length, (i + 1) * n)
    return np.maximum(hi - lo, 0)


def box_sums(img: np.ndarray, rows: int, cols: int) -> np.ndarray:
    h, w = img.shape
    return box_weights(h, rows) @ img.astype(np.int64) @ box_weights(w, cols).T


DCT = np.array([[round(4096 * math.cos(math.pi * u * (2 * x + 1) / 64)) for x in range(32)] for u in range(8)], dtype=np.int64)


def _pack(bits: np.ndarray) -> int:
    value = 0
    for b in bits.ravel():
        value = (value << 1) | int(b)
    return value


def phash(img: np.ndarray) -> int:
    h, w = img.shape
    area = h * w
    s = box_sums(img, 32, 32)
    p = (256 * s + area // 2) // area
    c = DCT @ p @ DCT.T
    srt = np.sort(c.ravel())
    return _pack(2 * c > srt[31] + srt[32])


def dhash(img: np.ndarray) -> int:
    s = box_sums(img, 8, 9)
    return _pack(s[:, 1:] > s[:, :-1])


def popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x) if hasattr(np, "bitwise_count") else np.array([bin(int(v)).count("1") for v in x])


def brute_pairs(h: np.ndarray, radius: int, second=None, radius2: int = 64):
    """All (i < j) within the radius, the obvious way (small inputs only)."""
    out = []
    for i in range(len(h)):
        d = popcount(h[i] ^ h[i + 1 :])
        for k in np.flatnonzero(d <= radius):
            j = i + 1 + int(k)
            if second is not None and bin(int(second[i] ^ second[j])).count("1") > radius2:
                continue
            out.append((i, j, int(d[k])))
    return out
