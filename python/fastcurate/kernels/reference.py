"""Naive, obviously-correct Python references of the semantics in docs/curate.md.

These are the definitions the C++ kernels are tested against (and that users can read to know
exactly what fastcurate computes). They are slow on purpose: clarity over speed.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence

__all__ = ["spacing", "metaclip_match", "substring_find_all"]

PUNCTS_TO_WRAP = (",", ".", ";", ":", "?", "!", "`")
CHARS_TO_SPACE = ("\t", "\n", "\r")


def spacing(text: str) -> str:
    """MetaCLIP's ``spacing``: the text the keys are searched in."""
    s = f" {text} "
    for p in PUNCTS_TO_WRAP:
        s = s.replace(p, f" {p} ")
    for c in CHARS_TO_SPACE:
        s = s.replace(c, " ")
    return s


def _fold(s: str) -> str:
    # ASCII-only case folding: non-ASCII letters are left alone, as in the C++ kernels.
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def metaclip_match(entries: Sequence[str], text: str, case_sensitive: bool = True) -> List[int]:
    """Sorted ids of the entries whose key ``" " + entry + " "`` occurs in ``spacing(text)``.

    When the same key occurs several times, only the last id is reported (MetaCLIP's automaton
    overwrites the value of a repeated key).
    """
    fold = (lambda s: s) if case_sensitive else _fold
    last: Dict[str, int] = {}
    for i, e in enumerate(entries):
        last[fold(e)] = i
    s = fold(spacing(text))
    return sorted(i for key, i in last.items() if f" {key} " in s)


def substring_find_all(entries: Sequence[str], text: bytes, case_sensitive: bool = True) -> List[tuple]:
    """Every (id, start, end) occurrence of every entry's UTF-8 bytes in ``text``, sorted."""
    fold = (lambda b: b) if case_sensitive else (lambda b: b.translate(_BYTE_FOLD))
    t = fold(text)
    out = []
    for i, e in enumerate(entries):
        k = fold(e.encode("utf-8"))
        start = t.find(k)
        while start != -1:
            out.append((i, start, start + len(k)))
            start = t.find(k, start + 1)
    return sorted(out)


_BYTE_FOLD = bytes(b + 32 if 65 <= b <= 90 else b for b in range(256))


def iter_metaclip(entries: Sequence[str], texts: Iterable[str]) -> Iterable[List[int]]:
    for t in texts:
        yield metaclip_match(entries, t)
