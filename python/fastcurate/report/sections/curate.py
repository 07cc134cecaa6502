"""MetaCLIP curation (and the bare matcher): the long tail before and after balancing, the entries
that balancing cut the most."""

from __future__ import annotations

import json
from typing import Any, List, Optional

import numpy as np

from ..html import esc, fmt_int, img, table
from ..plots import long_tail
from . import Section, section


def _entries(stage: Any, n: int) -> Optional[List[str]]:
    p = stage.file("metadata.json")
    if p is None:
        return None
    try:
        e = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return e if isinstance(e, list) and len(e) == n else None


@section("curate", "match")
def long_tail_section(stage: Any, run: Any) -> Optional[List[Section]]:
    before_p = stage.file("entry_counts.npy")
    if before_p is None:
        return None
    before = np.load(before_p)
    after_p = stage.file("entry_counts_curated.npy")
    after = np.load(after_p) if after_p is not None else None
    st = stage.stage_stats
    t = st.get("t")
    out = []
    lines = []
    if stage.name == "curate" and t is not None:
        exp = st.get("expected_size")
        lines.append(f"t = <b>{float(t):,.6g}</b> (from {esc(st.get('threshold_from', 't'))}), "
                     f"p = {st.get('p') if st.get('p') is None else round(float(st['p']), 4)}; expected size "
                     f"{fmt_int(exp)}, kept {fmt_int(stage.stats.get('rows_kept'))}")
        lines.append(f"entries matched: {fmt_int(st.get('entries_matched'))} of {fmt_int(st.get('n_entries'))} before "
                     f"balancing, {fmt_int(st.get('entries_matched_after'))} after")
    html = "".join(f"<p>{x}</p>" for x in lines)
    html += img(long_tail(before, after, float(t) if t is not None else None), "long tail", "plot")
    out.append(Section("The long tail" + (" before and after balancing" if after is not None else ""), html))
    # the entries balancing cut the most (or, for match, the most matched)
    names = _entries(stage, len(before))
    order = np.argsort(-before.astype(np.float64), kind="stable")[:15]
    top = [int(i) for i in order if before[i] > 0]
    if top:
        rows = []
        for i in top:
            b = int(before[i])
            a = int(after[i]) if after is not None else None
            rows.append((esc(names[i]) if names else f"entry {i}", fmt_int(b),
                         *((fmt_int(a), f"{100.0 * a / b:.1f}%") if a is not None else ())))
        hdr = ["entry", "matches before"] + (["after", "kept"] if after is not None else [])
        out.append(Section("Head entries", table(hdr, rows, raw=True)))
    return out
