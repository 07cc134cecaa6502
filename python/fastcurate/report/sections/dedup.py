"""Duplicates (exact / near-duplicate images, SemDeDup): groups side by side, the kept twin
first, then the rows dropped as its duplicates. A duplicate's drop row names its kept twin in
``detail`` (docs/runner.md): the uid alone, ``UID cos=0.97``-style text (the first token is the
uid), or JSON with a ``twin``/``kept``/``uid`` key."""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

from ..html import card, esc
from . import Section, section

MAX_GROUPS = 10
PER_GROUP = 5


def parse_twin(detail: Optional[str]) -> Tuple[Optional[str], str]:
    """(the kept twin's uid, the rest of the detail) from a duplicate's drop detail."""
    if not detail:
        return None, ""
    d = detail.strip()
    if d.startswith("{"):
        try:
            obj = json.loads(d)
            for k in ("twin", "kept", "kept_uid", "duplicate_of", "uid"):
                if obj.get(k):
                    rest = ", ".join(f"{a}={b}" for a, b in obj.items() if a != k)
                    return str(obj[k]), rest
        except ValueError:
            pass
    m = re.match(r"^(?:duplicate of |dup of |twin[=: ]|kept[=: ])?\s*([^\s,;]+)[\s,;]*(.*)$", d)
    if m:
        return m.group(1), m.group(2)
    return d, ""


def _is_dup_reason(reason: str) -> bool:
    return "dup" in reason or "semantic" in reason or "near" in reason


@section("dedup", "semdedup")
def dedup_section(stage: Any, run: Any) -> Optional[Section]:
    reasons = [r for r, n in stage.stats.get("rows_dropped", {}).items() if n and _is_dup_reason(r)]
    if not reasons:
        return None
    samples = stage.sample_drops(PER_GROUP * MAX_GROUPS, reasons)
    groups: Dict[str, List[Tuple[str, str, str, Optional[int]]]] = {}
    for reason, rows in samples.items():
        for uid, detail, idx in rows:
            twin, rest = parse_twin(detail)
            if twin is None:
                continue
            g = groups.setdefault(twin, [])
            if len(g) < PER_GROUP:
                g.append((uid, reason, rest, idx))
            if len(groups) >= MAX_GROUPS and all(len(v) >= 1 for v in groups.values()):
                break
    chosen = list(groups.items())[:MAX_GROUPS]
    if not chosen:
        return None
    inputs = stage.input_files()
    uids = [t for t, _ in chosen] + [u for _, g in chosen for u, *_ in g]
    rows = run.rows(uids, stage.parts() + inputs, stage.given_columns())
    html = [f"<p>{sum(stage.stats['rows_dropped'][r] for r in reasons):,} rows dropped as duplicates "
            f"({', '.join(esc(r) for r in reasons)}); {len(chosen)} sampled groups, the kept row first (green).</p>"]
    for twin, g in chosen:
        r = rows.get(twin)
        items = [card(r.thumb if r else None, r.text if r else None, f"kept · {esc(twin)}", "kept", placeholder=True)]
        for uid, reason, rest, _ in g:
            d = rows.get(uid)
            items.append(card(d.thumb if d else None, d.text if d else None,
                              f"{esc(reason)} · {esc(uid)}" + (f" · {esc(rest)}" if rest else ""), "dropped",
                              placeholder=True))
        html.append(f'<div class="group"><div class="pair">{"".join(items)}</div></div>')
    return Section("Duplicate groups", "".join(html))
