"""The offline template backend: an instruction composed from the pair's metadata difference, with
no model. It is a baseline (what any LLM-written instruction should beat), not a substitute: it
says which content labels the target adds or lacks, nothing about relations the labels miss.

Rules, in order (labels compared case-insensitively; each list best first, at most ``max_each``):
``added`` = the target's labels the query lacks, ``removed`` = the query's labels the target lacks,
``shared`` = labels of both.

* added and removed: ``"show {added} instead of {removed}"``
* added only: ``"the same, with {added}"``
* removed only: ``"the same, without {removed}"``
* neither, something shared: ``"another view of the same {shared[0]}"``
* no labels at all: ``"another image from the same page"``

Lists are joined as "a", "a and b", "a, b and c". The reasoning names the three lists; ``raw`` is
their JSON.
"""

from __future__ import annotations

import json
from typing import List, Optional, Sequence, Tuple

__all__ = ["offline_instruction", "label_difference", "OFFLINE_BACKEND"]

OFFLINE_BACKEND = "offline-template"


def _dedupe(labels: Optional[Sequence[str]]) -> List[str]:
    out: List[str] = []
    seen = set()
    for x in labels or ():
        if x is None:
            continue
        s = " ".join(str(x).split())
        if s and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
    return out


def label_difference(query: Optional[Sequence[str]], target: Optional[Sequence[str]]) -> Tuple[List[str], List[str], List[str]]:
    """(added, removed, shared): target-only, query-only and common labels, each in its own order."""
    q, t = _dedupe(query), _dedupe(target)
    ql, tl = {x.lower() for x in q}, {x.lower() for x in t}
    return [x for x in t if x.lower() not in ql], [x for x in q if x.lower() not in tl], [x for x in t if x.lower() in ql]


def _join(xs: Sequence[str]) -> str:
    if len(xs) == 1:
        return xs[0]
    return ", ".join(xs[:-1]) + " and " + xs[-1]


def offline_instruction(query_labels: Optional[Sequence[str]], target_labels: Optional[Sequence[str]],
                        max_each: int = 3) -> Tuple[str, str, str]:
    """(instruction, reasoning, raw) for a pair from its labels (see the module docstring)."""
    added, removed, shared = label_difference(query_labels, target_labels)
    a, r = added[:max_each], removed[:max_each]
    if a and r:
        ins = f"show {_join(a)} instead of {_join(r)}"
    elif a:
        ins = f"the same, with {_join(a)}"
    elif r:
        ins = f"the same, without {_join(r)}"
    elif shared:
        ins = f"another view of the same {shared[0]}"
    else:
        ins = "another image from the same page"
    reasoning = (f"target-only labels: {', '.join(added) or '-'}; query-only labels: {', '.join(removed) or '-'}; "
                 f"shared: {', '.join(shared) or '-'}")
    raw = json.dumps({"added": added, "removed": removed, "shared": shared}, ensure_ascii=False, sort_keys=True)
    return ins, reasoning, raw
