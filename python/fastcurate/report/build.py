"""``fastcurate report DIR``: one static HTML page for a pipeline run or one stage's output.

The page is self-contained (inline CSS and JS, plots as PNG data URIs, thumbnails as small JPEG
data URIs): it opens from disk with no server and requests nothing. It holds the funnel (rows in
and out of every stage, drop reasons with counts), one part per stage (its statistics, its
sections from the registry in :mod:`fastcurate.report.sections`, examples of dropped rows per
reason), and the timings. It reads samples, never whole columns of images, so it builds in
seconds for a run of any size (docs/report.md).
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from ..errors import FastcurateError
from .data import RunView, StageView, open_run
from .html import bar, card, cards, esc, fmt_int, fmt_pct, fmt_s, img, kv_table, page, table, truncate
from .plots import hbar
from .sections import Section, call, renderers

__all__ = ["build_report", "REPORT_NAME"]

PathLike = Union[str, "os.PathLike[str]"]
REPORT_NAME = "report.html"


def _funnel(run: RunView) -> Section:
    rows = []
    first_in = None
    for s in run.stages:
        st = s.stats
        if not s.finished:
            rows.append((f'<a href="#{s.anchor}">{esc(s.label)}</a>', "–", "–", "–", "unfinished", ""))
            continue
        rin, kept = st.get("rows_in", 0), st.get("rows_kept", 0)
        first_in = rin if first_in is None else first_in
        dropped = {k: v for k, v in st.get("rows_dropped", {}).items() if v}
        reasons = "<br>".join(f'<span title="{esc(st.get("reasons", {}).get(k, ""))}">{esc(k)}</span> '
                              f'{fmt_int(v)} ({fmt_pct(v, rin)})' for k, v in sorted(dropped.items(), key=lambda kv: -kv[1]))
        rows.append((f'<a href="#{s.anchor}">{esc(s.label)}</a>', fmt_int(rin), fmt_int(kept),
                     fmt_int(rin - kept), f"{fmt_pct(kept, rin)} {bar(kept / rin if rin else 0)}", reasons or "–"))
    done = [s for s in run.stages if s.finished]
    head = ""
    if done:
        last = done[-1].stats
        head = (f"<p><b>{fmt_int(done[0].stats.get('rows_in'))}</b> rows in → <b>{fmt_int(last.get('rows_kept'))}</b> "
                f"kept after {len(done)} stage{'s' if len(done) > 1 else ''} "
                f"({fmt_pct(last.get('rows_kept'), done[0].stats.get('rows_in'))} of the input).</p>")
    html = head + table(["stage", "rows in", "kept", "dropped", "kept share", "drop reasons (count, share of rows in)"],
                        rows, raw=True, cls="funnel")
    if len(done) > 1:
        labels = [s.label for s in done]
        kept = [s.stats.get("rows_kept", 0) for s in done]
        drop = [s.stats.get("rows_in", 0) - s.stats.get("rows_kept", 0) for s in done]
        html += img(hbar(labels, {"kept": kept, "dropped": drop}, "rows", "rows in and out of every stage"),
                    "funnel", "plot")
    return Section("Funnel", html)


def _drop_examples(run: RunView, s: StageView) -> Optional[Section]:
    samples = s.sample_drops(run.max_examples)
    if not any(samples.values()):
        return None
    inputs = s.input_files()
    reasons = s.stats.get("reasons", {})
    counts = s.stats.get("rows_dropped", {})
    html = []
    for reason, rows in sorted(samples.items(), key=lambda kv: -counts.get(kv[0], 0)):
        if not rows:
            continue
        by_file: Dict[Optional[int], List[str]] = {}
        for uid, _, idx in rows:
            by_file.setdefault(idx, []).append(uid)
        info = {}
        for idx, uids in by_file.items():
            files = [inputs[idx]] if idx is not None and idx < len(inputs) else inputs
            info.update(run.rows(uids, files, s.given_columns()))
        items = []
        for uid, detail, _ in rows:
            r = info.get(uid)
            meta = esc(uid) + (f" · {esc(truncate(detail, 120))}" if detail else "")
            items.append(card(r.thumb if r else None, r.text if r else None, meta, "dropped"))
        html.append(f"<h3>{esc(reason)} <span class=\"muted\">({fmt_int(counts.get(reason))} rows: "
                    f"{esc(reasons.get(reason, ''))})</span></h3>" + cards(items))
    return Section("Dropped rows, by reason", "".join(html))


def _timings(run: RunView) -> Section:
    phases = ["scan_s", "reduce_s", "process_s", "finalize_s"]
    rows = []
    labels: List[str] = []
    series: Dict[str, List[float]] = {p[:-2]: [] for p in phases}
    for s in run.stages:
        tm = s.timings
        if not tm:
            continue
        rows.append((esc(s.label), fmt_int(s.stats.get("rows_in")), *(fmt_s(tm.get(p)) if p in tm else "–" for p in phases),
                     fmt_s(tm.get("total_s")), f"{tm.get('rows_per_s', 0):,.0f}", "yes" if tm.get("resumed") else "no"))
        labels.append(s.label)
        for p in phases:
            series[p[:-2]].append(float(tm.get(p, 0.0) or 0.0))
    html = table(["stage", "rows in", "scan", "reduce", "process", "finalize", "total", "rows/s", "resumed"], rows,
                 raw=True)
    if labels:
        series = {k: v for k, v in series.items() if any(v)}
        html += img(hbar(labels, series, "seconds", "wall time per stage and phase"), "timings", "plot")
        total = sum(float(s.timings.get("total_s", 0) or 0) for s in run.stages)
        html += f"<p>total wall time {fmt_s(total)} (a resumed stage's time is that of its last run).</p>"
    return Section("Timings and throughput", html)


def _stage_header(s: StageView) -> str:
    st = s.stats
    if not s.finished:
        return '<p class="warn">unfinished: this stage has not written stats.json yet (rerun its command to resume)</p>'
    tm = s.timings
    bits = [f"{fmt_int(st.get('rows_in'))} rows in → {fmt_int(st.get('rows_kept'))} kept "
            f"({fmt_pct(st.get('rows_kept'), st.get('rows_in'))})",
            f"{st.get('shards_out', '?')} of {st.get('shards_in', '?')} shards"]
    if tm:
        bits.append(f"{fmt_s(tm.get('total_s'))}, {tm.get('rows_per_s', 0):,.0f} rows/s")
    html = f"<p>{' · '.join(bits)}</p>"
    cols = st.get("columns") or {}
    if cols:
        html += "<p class=\"muted\">columns: " + esc(", ".join(f"{k} = {v}" for k, v in cols.items())) + \
                (f"; ids from the {esc(st.get('id_source'))}" if st.get("id_source") else "") + "</p>"
    for w in st.get("warnings", []):
        html += f'<p class="warn">{esc(w)}</p>'
    for b in st.get("bad_shards", []):
        html += f'<p class="warn">bad shard skipped: {esc(b.get("file"))} ({fmt_int(b.get("rows"))} rows): {esc(b.get("error"))}</p>'
    if s.stage_stats:
        html += f"<details><summary>statistics of {esc(s.name)}</summary>{kv_table(s.stage_stats)}</details>"
    return html


def build_report(
    path: PathLike,
    out: Optional[PathLike] = None,
    *,
    max_examples: int = 6,
    thumb_px: int = 96,
    title: Optional[str] = None,
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> Path:
    """Write the HTML report of ``path`` (a ``fastcurate run`` directory or one stage's output
    directory) to ``out`` (default ``path/report.html``); returns its path.

    ``max_examples``: dropped rows shown per reason; ``thumb_px``: the thumbnails' size (JPEG).
    """
    from tqdm.auto import tqdm

    from ..io.atomic import atomic_write_bytes

    t0 = time.perf_counter()
    run = open_run(path, max_examples=max_examples, thumb_px=thumb_px)
    out_path = Path(out) if out is not None else run.root / REPORT_NAME
    body: List[str] = []
    nav: List[Tuple[str, str, int]] = []

    def add(anchor: str, sec: Section, level: int = 2) -> None:
        nav.append((anchor, sec.title, level))
        tag = "h2" if level == 1 else "h3"
        body.append(f'<section id="{esc(anchor)}"><{tag}>{esc(sec.title)}</{tag}>{sec.html}</section>')

    add("funnel", _funnel(run), 1)
    bar_ = tqdm(total=len(run.stages) + 1, desc="report", unit="stage", disable=not progress, leave=False)
    for s in run.stages:
        nav.append((s.anchor, f"{s.label}", 1))
        body.append(f'<section id="{esc(s.anchor)}"><h2>{esc(s.label)} <span class="muted">({esc(s.name)})</span></h2>'
                    f"{_stage_header(s)}</section>")
        secs: List[Section] = []
        if s.finished:
            for fn in renderers(s.name):
                try:
                    secs += call(fn, s, run)
                except (FastcurateError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
                    # a section that cannot read its files says so; the rest of the report stands
                    secs.append(Section(f"{fn.__name__}", f'<p class="warn">this section could not be built: '
                                                          f'{esc(type(e).__name__)}: {esc(e)}</p>'))
            d = _drop_examples(run, s)
            if d is not None:
                secs.append(d)
        for k, sec in enumerate(secs):
            add(f"{s.anchor}-{k}", sec, 2)
        bar_.update(1)
    add("timings", _timings(run), 1)
    bar_.update(1)
    bar_.close()
    name = run.meta.get("name") or run.root.name
    ttl = title or f"{name}: curation report"
    sub = esc(str(run.root.resolve()))
    if run.meta.get("description"):
        sub = esc(run.meta["description"]) + " · " + sub
    notes = "".join(f'<p class="warn">{esc(n)}</p>' for n in run.notes)
    took = time.perf_counter() - t0
    footer = (f"fastcurate report · built {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} in {took:.1f} s · "
              f"thumbnails {thumb_px} px JPEG, {max_examples} examples per drop reason")
    doc = page(ttl, sub, nav, notes + "".join(body), footer)
    data = doc.encode("utf-8")
    atomic_write_bytes(out_path, data)
    if log is not None:
        log(f"report: {out_path} ({len(data) / 1e6:.1f} MB, {len(run.stages)} stage{'s' if len(run.stages) > 1 else ''}, "
            f"{took:.1f} s)")
    return out_path
