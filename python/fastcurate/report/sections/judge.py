"""The cluster-quality judge (issue 10's layout): label counts, the unparsed rate, and the cluster
table with each cluster's label, reason, closest captions and thumbnails. Files read:
``judgments.parquet`` (``cluster, label, reason, backend, model, ...``) and the ``clusters.parquet``
of the judge's input (the cluster stage's output)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..html import esc, fmt_int, table
from . import Section, section
from .cluster import cluster_table_rows


@section("judge")
def judge_section(stage: Any, run: Any) -> Optional[List[Section]]:
    import pyarrow.parquet as pq

    jp = stage.file("judgments.parquet")
    if jp is None:
        return None
    j = pq.read_table(jp)
    cols = j.column_names
    labels = j.column("label").to_pylist() if "label" in cols else []
    counts: Dict[str, int] = {}
    for lab in labels:
        counts[str(lab)] = counts.get(str(lab), 0) + 1
    n = len(labels)
    rows = [(esc(k), fmt_int(v), f"{100.0 * v / max(n, 1):.1f}%") for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    info = ""
    for k in ("backend", "model"):
        if k in cols:
            vals = sorted({str(v) for v in j.column(k).to_pylist() if v is not None})
            if vals:
                info += f"<p>{k}: {esc(', '.join(vals[:3]))}</p>"
    out = [Section("Judgments", info + table(["label", "clusters", "share"], rows, raw=True))]
    by_cluster = {c: {"label": l, "reason": r} for c, l, r in zip(
        j.column("cluster").to_pylist(), labels,
        j.column("reason").to_pylist() if "reason" in cols else [None] * n)}
    cp = stage.find_file("clusters.parquet")
    if cp is not None:
        src = next((s for s in [stage] + stage.upstream() if s.file("clusters.parquet") is not None), stage)
        out.append(Section("Clusters with their judgment",
                           cluster_table_rows(run, src, pq.read_table(cp), by_cluster)))
    return out
