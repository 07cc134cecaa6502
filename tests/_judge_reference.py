"""Plain-Python references of the offline judge's caption keys, shared by its tests and by
benchmarks/bench_judge.py (which checks the fast path against them)."""

from __future__ import annotations

import unicodedata
from typing import List


def lower_ref(s: str) -> str:
    # Unicode simple case mapping, one code point to one (as Arrow's utf8_lower): "İ" -> "i", where
    # Python's str.lower gives "i" + U+0307
    return "".join(ch.lower()[0] for ch in s)


def norm_ref(s: str) -> str:
    """The duplicate key: lower-cased, each digit run as "0", every other non-letter run a space."""
    out = []
    prev_num = False
    for ch in lower_ref(s):
        if unicodedata.category(ch).startswith("N"):
            if not prev_num:
                out.append("0")
            prev_num = True
            continue
        prev_num = False
        out.append(ch if unicodedata.category(ch).startswith("L") else " ")
    return " ".join("".join(out).split())


def words_ref(s: str) -> List[str]:
    """Maximal runs of letters and digits, lower-cased."""
    w, cur = [], []
    for ch in lower_ref(s):
        if unicodedata.category(ch)[0] in "LN":
            cur.append(ch)
        elif cur:
            w.append("".join(cur))
            cur = []
    if cur:
        w.append("".join(cur))
    return w
