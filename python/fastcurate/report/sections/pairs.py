"""Mined pairs and their instructions (issue 11's layout): ``pairs.parquet`` (``query_uid,
target_uid, group``, scores, labels) and ``triplets.parquet`` (``query_uid, instruction,
target_uid, backend, raw``): sampled pairs side by side with their scores and instruction."""

from __future__ import annotations

from typing import Any, List, Optional

from ..html import card, esc, fmt_int
from . import Section, section
from .common import read_sample

MAX_PAIRS = 12


def _pairs_html(run: Any, stage: Any, t: Any, title: str, total: int) -> str:
    names = t.column_names
    q = t.column("query_uid").to_pylist()
    g = t.column("target_uid").to_pylist()
    instr = t.column("instruction").to_pylist() if "instruction" in names else [None] * len(q)
    score_cols = [c for c in names if c not in ("query_uid", "target_uid", "instruction", "raw", "reasoning")
                  and t.schema.field(c).type.__class__.__name__ != "ListType" and str(t.schema.field(c).type) in
                  ("float", "double", "float32", "float64", "halffloat", "int32", "int64")]
    other = [c for c in names if c in ("group", "labels", "backend", "pair_type", "type")]
    files = stage.parts() + stage.input_files()
    for s in stage.upstream():
        files += s.parts() + s.input_files()
    rows = run.rows(q + g, files, stage.given_columns())
    out = [f"<p>{total:,} {title}; {len(q)} shown (an even sample).</p>"]
    for i in range(len(q)):
        a, b = rows.get(q[i]), rows.get(g[i])
        meta = "; ".join(f"{esc(c)} {float(t.column(c)[i].as_py()):.3f}" for c in score_cols
                         if t.column(c)[i].as_py() is not None)
        meta2 = "; ".join(f"{esc(c)}: {esc(t.column(c)[i].as_py())}" for c in other if t.column(c)[i].as_py() is not None)
        ins = f'<p class="instr">“{esc(instr[i])}”</p>' if instr[i] else ""
        out.append(f'<div class="group"><div class="pair">'
                   f'{card(a.thumb if a else None, a.text if a else None, "query · " + esc(q[i]), placeholder=True)}'
                   f'<div class="arrow">→</div>'
                   f'{card(b.thumb if b else None, b.text if b else None, "target · " + esc(g[i]), placeholder=True)}'
                   f'</div>{ins}<div class="muted">{meta}{" · " if meta and meta2 else ""}{meta2}</div></div>')
    return "".join(out)


@section("pairs", "instruct")
def pairs_section(stage: Any, run: Any) -> Optional[List[Section]]:
    import pyarrow.parquet as pq

    out = []
    for fname, title in (("triplets.parquet", "instructed pairs (query, instruction, target)"),
                         ("pairs.parquet", "mined pairs")):
        p = stage.file(fname)
        if p is None:
            continue
        n = pq.ParquetFile(p).metadata.num_rows
        t = read_sample(p, [c for c in pq.ParquetFile(p).schema_arrow.names], MAX_PAIRS)
        if t.num_rows == 0 or "query_uid" not in t.column_names or "target_uid" not in t.column_names:
            continue
        out.append(Section("Instructions" if fname.startswith("triplets") else "Mined pairs",
                           _pairs_html(run, stage, t, title, n)))
        break  # triplets include the pairs
    return out or None


@section("group")
def group_section(stage: Any, run: Any) -> Optional[Section]:
    """Group sizes and a few groups' members."""
    import numpy as np
    import pyarrow.parquet as pq

    parts = stage.parts()
    if not parts or "group" not in pq.ParquetFile(parts[0]).schema_arrow.names:
        return None
    t = pq.read_table(parts[0], columns=["uid", "group"])
    groups = t.column("group").to_pylist()
    uids = t.column("uid").to_pylist()
    members: dict = {}
    for u, gname in zip(uids, groups):
        members.setdefault(gname, []).append(u)
    sizes = np.array([len(v) for v in members.values()])
    html = [f"<p>{len(members):,} groups in the first part; sizes {int(sizes.min()) if len(sizes) else 0} to "
            f"{int(sizes.max()) if len(sizes) else 0}, mean {sizes.mean() if len(sizes) else 0:.1f}</p>"]
    shown = [k for k, v in members.items() if len(v) >= 2][:4]
    for k in shown:
        us = members[k][:6]
        rows = run.stage_rows(stage, us)
        html.append(f'<h3>group {esc(k)} ({fmt_int(len(members[k]))} rows)</h3><div class="cards">'
                    + "".join(card(rows[u].thumb if u in rows else None, rows[u].text if u in rows else None, esc(u))
                              for u in us) + "</div>")
    return Section("Groups", "".join(html))
