"""Clustering (issue 9's layout): cluster sizes, the t-SNE map coloured by cluster with hover
(caption and thumbnail), and the cluster table with the closest samples. Files read:
``clusters.parquet`` (``cluster``, ``size``, the closest / furthest samples' uids and captions),
``tsne.parquet`` (``uid``, ``x``, ``y`` [, ``cluster``]), the per-row ``cluster`` column of the
kept rows, and the stage's own PNGs (``tsne*.png``)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..html import card, esc, fmt_int, img, json_script, table, truncate
from ..plots import cluster_color, hist_with_thresholds
from . import Section, section
from .common import find_col, read_sample

MAX_POINTS = 2500  # points drawn on the interactive map
MAX_HOVER_THUMBS = 80  # points with a thumbnail on hover
MAX_HOVER_CAPTIONS = 600  # points with a caption on hover
MAX_TABLE = 40  # clusters in the table
THUMBS_PER_CLUSTER = 3


def cluster_table_rows(run: Any, stage_for_rows: Any, clusters: Any, judgments: Optional[Dict[int, Dict[str, Any]]],
                       limit: int = MAX_TABLE) -> str:
    """The cluster table (HTML): size, the judge's label and reason when given, the closest
    samples' captions and thumbnails."""
    names = clusters.column_names
    ccol = find_col(names, "cluster") or names[0]
    scol = find_col(names, "size|count")
    uid_col = find_col(names, "closest", "uid")
    cap_col = find_col(names, "closest", "caption|text")
    ids = clusters.column(ccol).to_pylist()
    sizes = clusters.column(scol).to_pylist() if scol else [None] * len(ids)
    order = list(range(len(ids)))
    if judgments:  # Low Value clusters first (what the judge removes), then by size
        order.sort(key=lambda i: (str((judgments.get(ids[i]) or {}).get("label", "")) != "Low Value", -(sizes[i] or 0)))
    else:
        order.sort(key=lambda i: -(sizes[i] or 0))
    order = order[:limit]
    uids_all: List[str] = []
    per: Dict[int, List[str]] = {}
    if uid_col:
        col = clusters.column(uid_col).to_pylist()
        for i in order:
            us = [u for u in (col[i] or [])][:THUMBS_PER_CLUSTER]
            per[i] = us
            uids_all += us
    rows_info = run.stage_rows(stage_for_rows, uids_all) if uids_all else {}
    caps = clusters.column(cap_col).to_pylist() if cap_col else [None] * len(ids)
    body = []
    for i in order:
        j = (judgments or {}).get(ids[i]) or {}
        label = j.get("label")
        pill = (f'<span class="pill {"low" if label == "Low Value" else "high" if label == "High Value" else ""}">'
                f'{esc(label)}</span>') if label else ""
        samples = []
        for k, u in enumerate(per.get(i, [])):
            r = rows_info.get(u)
            own: List[Any] = list(caps[i] or [])  # the caption stored in clusters.parquet, when the row is not found
            text = r.text if r and r.text is not None else (own[k] if k < len(own) else None)
            samples.append(card(r.thumb if r else None, text, ""))
        if not samples and caps[i]:
            samples = [card(None, c, "") for c in (caps[i] or [])[:THUMBS_PER_CLUSTER]]
        judged = [pill + (f"<div>{esc(truncate(j.get('reason'), 300))}</div>" if j.get("reason") else "")] \
            if judgments is not None else []
        body.append((esc(ids[i]), fmt_int(sizes[i]), *judged, f'<div class="cards">{"".join(samples)}</div>'))
    hdr = ["cluster", "size"] + (["judge: label and reason"] if judgments is not None else []) + ["closest samples"]
    more = f'<p class="muted">{len(ids) - len(order):,} more clusters in the files</p>' if len(ids) > len(order) else ""
    return table(hdr, body, raw=True) + more


def _row_group_lookup(loc: Dict[str, Any]) -> Any:
    import pyarrow.parquet as pq

    starts: Dict[Any, np.ndarray] = {}

    def rg(u: str) -> Any:
        f, row = loc[u]
        if f not in starts:
            md = pq.ParquetFile(f).metadata
            starts[f] = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
        return (str(f), int(np.searchsorted(starts[f], row, side="right") - 1))

    return rg


def _downscaled_png(p: Path, width: int = 900) -> Optional[str]:
    try:
        from PIL import Image

        im: Any = Image.open(p)
        if im.width > width:
            im = im.resize((width, int(im.height * width / im.width)))
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except Exception:  # noqa: BLE001 - a damaged plot file is left out
        return None


def tsne_map(run: Any, stage: Any) -> Optional[Section]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = stage.find_file("tsne.parquet")
    if p is None:
        return None
    t = read_sample(p, ["uid", "x", "y", "cluster"], MAX_POINTS)
    if t.num_rows == 0 or "x" not in t.column_names:
        return None
    uids = t.column("uid").to_pylist()
    parts = stage.parts()
    loc = run.locate(parts, uids)  # where each point's row is (cached uid columns)
    if "cluster" in t.column_names:
        cl = t.column("cluster").to_pylist()
    else:  # the per-row cluster column of the kept rows, read at the located rows only
        by_file: Dict[Any, List[int]] = {}
        for u in uids:
            if u in loc:
                by_file.setdefault(loc[u][0], []).append(loc[u][1])
        found: Dict[str, int] = {}
        for f, rows in by_file.items():
            pf = pq.ParquetFile(f)
            if "cluster" not in pf.schema_arrow.names:
                continue
            col = pf.read(columns=["cluster"]).column(0)
            vals = col.take(pa.array(rows)).to_pylist()
            inv = {r: u for u, (ff, r) in loc.items() if ff == f}
            found.update({inv[r]: v for r, v in zip(rows, vals)})
        cl = [found.get(u, -1) for u in uids]
    x = np.asarray(t.column("x").to_numpy(zero_copy_only=False), np.float64)
    y = np.asarray(t.column("y").to_numpy(zero_copy_only=False), np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    W, H, m = 640.0, 480.0, 12.0
    x0, x1, y0, y1 = x[ok].min(), x[ok].max(), y[ok].min(), y[ok].max()
    sx = (W - 2 * m) / (x1 - x0 or 1.0)
    sy = (H - 2 * m) / (y1 - y0 or 1.0)
    # Captions (and thumbnails) for the points of the few row groups holding most of the sample:
    # each row group read costs the same, whatever number of points it serves.
    groups: Dict[Any, List[int]] = {}
    rg_of = _row_group_lookup(loc)
    for i, u in enumerate(uids):
        if u in loc:
            groups.setdefault(rg_of(u), []).append(i)
    hover: List[int] = []
    for g in sorted(groups, key=lambda k: (-len(groups[k]), str(k))):
        if len(hover) >= MAX_HOVER_CAPTIONS:
            break
        hover += groups[g]
    hover.sort()
    thumb_idx = set(hover[:: max(1, len(hover) // MAX_HOVER_THUMBS)][:MAX_HOVER_THUMBS])
    with_thumbs = run.stage_rows(stage, [uids[i] for i in sorted(thumb_idx)], include_inputs=False)
    no_thumbs = run.stage_rows(stage, [uids[i] for i in hover if i not in thumb_idx], thumbs=False,
                               include_inputs=False)
    thumbs: List[str] = []
    points = []
    circles = []
    for i, u in enumerate(uids):
        if not ok[i]:
            continue
        r = with_thumbs.get(u) or no_thumbs.get(u)
        ti = None
        if r is not None and r.thumb and i in thumb_idx:
            ti = len(thumbs)
            thumbs.append(r.thumb)
        px, py = m + (x[i] - x0) * sx, H - m - (y[i] - y0) * sy
        points.append([round(px, 1), round(py, 1), int(cl[i]) if cl[i] is not None else -1,
                       truncate(r.text, 200) if r and r.text is not None else None, ti])
        circles.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{3.2 if ti is not None else 2.4}" '
                       f'fill="{cluster_color(int(cl[i]) if cl[i] is not None else -1)}" data-i="{len(points) - 1}"/>')
    svg = (f'<div id="tsne"><svg width="{int(W)}" height="{int(H)}" viewBox="0 0 {int(W)} {int(H)}" '
           f'xmlns="http://www.w3.org/2000/svg">{"".join(circles)}</svg><div id="tip"></div></div>')
    html = (f"<p>{len(points):,} of {pq.ParquetFile(p).metadata.num_rows:,} points (an even sample), coloured by "
            f"cluster; hover a point for its cluster, and for {sum(1 for q in points if q[3] is not None):,} of them "
            f"its caption (larger points: a thumbnail too).</p>" + svg
            + json_script({"points": points, "thumbs": thumbs}, "tsne-data"))
    for name in sorted(q.name for q in stage.dir.glob("tsne*.png")):
        uri = _downscaled_png(stage.dir / name)
        if uri:
            html += f"<h3>{esc(name)}</h3>" + img(uri, name, "plot")
    return Section("t-SNE map", html)


@section("cluster")
def cluster_section(stage: Any, run: Any) -> Optional[List[Section]]:
    import pyarrow.parquet as pq

    out: List[Section] = []
    cp = stage.file("clusters.parquet")
    if cp is not None:
        clusters = pq.read_table(cp)
        scol = find_col(clusters.column_names, "size|count")
        if scol:
            sizes = np.asarray(clusters.column(scol).to_numpy(zero_copy_only=False), np.float64)
            out.append(Section("Cluster sizes", f"<p>{len(sizes):,} clusters; sizes {int(sizes.min()):,} to "
                                                f"{int(sizes.max()):,}, median {int(np.median(sizes)):,}</p>"
                               + img(hist_with_thresholds(sizes, [], "rows in the cluster", "cluster sizes",
                                                          bins=min(50, max(5, len(sizes) // 2))), "sizes", "plot")))
    m = tsne_map(run, stage)
    if m is not None:
        out.append(m)
    judged_later = any(s.name == "judge" for s in run.after(stage))
    if cp is not None and not judged_later:
        out.append(Section("Clusters", cluster_table_rows(run, stage, clusters, None)))
    return out
