"""HTML building blocks of the report: one self-contained page (inline CSS, inline JS, images as
data URIs), so it opens from disk with no server and makes no request."""

from __future__ import annotations

import html
import json
from typing import Any, Iterable, List, Optional, Sequence

__all__ = ["esc", "table", "card", "cards", "img", "page", "fmt_int", "fmt_pct", "fmt_s", "bar", "kv_table",
           "json_script", "truncate"]


def esc(s: Any) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def truncate(s: Optional[str], n: int = 160) -> str:
    if s is None:
        return ""
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def fmt_int(v: Any) -> str:
    try:
        return f"{int(v):,}"
    except (TypeError, ValueError):
        return "–"


def fmt_pct(a: Any, b: Any) -> str:
    try:
        return f"{100.0 * float(a) / float(b):.1f}%" if float(b) else "–"
    except (TypeError, ValueError):
        return "–"


def fmt_s(v: Any) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.2f} s" if v < 100 else f"{v / 60:.1f} min"


def img(uri: str, alt: str = "", cls: str = "", width: Optional[int] = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="{uri}" alt="{esc(alt)}" class="{cls}"{w}>'


def bar(frac: float, cls: str = "") -> str:
    frac = max(0.0, min(1.0, float(frac)))
    return f'<div class="bar {cls}"><span style="width:{100 * frac:.2f}%"></span></div>'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "", raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (then they are HTML already)."""
    h = "".join(f"<th>{esc(x)}</th>" for x in headers)
    body = []
    for r in rows:
        body.append("<tr>" + "".join(f"<td>{c if raw else esc(c)}</td>" for c in r) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def kv_table(d: dict, skip: Sequence[str] = ()) -> str:
    """The scalar entries of a stage's statistics (lists and tables are summarised by size)."""
    rows = []
    for k, v in d.items():
        if k in skip:
            continue
        if isinstance(v, float):
            v = f"{v:,.6g}"
        elif isinstance(v, int) and not isinstance(v, bool):
            v = f"{v:,}"
        elif isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v)) if len(v) <= 8 and all(not isinstance(x, (dict, list)) for x in v) else f"({len(v)} items)"
        elif isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in list(v.items())[:8]) if len(v) <= 8 and all(
                not isinstance(x, (dict, list)) for x in v.values()) else f"({len(v)} entries)"
        rows.append((k, truncate(str(v), 200)))
    return table(["statistic", "value"], rows, cls="kv") if rows else ""


def card(thumb: Optional[str], caption: Optional[str], meta: str = "", cls: str = "", placeholder: bool = False) -> str:
    """One example: its thumbnail (when it has an image; else a "no image" box if ``placeholder``),
    caption and a line of metadata (HTML)."""
    pic = img(thumb, alt=truncate(caption, 80)) if thumb else ('<div class="noimg">no image</div>' if placeholder else "")
    cap = f'<figcaption>{esc(truncate(caption, 180)) if caption is not None else "<i>no caption</i>"}</figcaption>'
    m = f'<div class="meta">{meta}</div>' if meta else ""
    return f'<figure class="card {cls}">{pic}{cap}{m}</figure>'


def cards(items: List[str]) -> str:
    return f'<div class="cards">{"".join(items)}</div>' if items else '<p class="muted">no examples</p>'


def json_script(obj: Any, id_: str) -> str:
    """Data for the page's script, safe inside ``<script>`` (no ``</`` can close it)."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).replace("</", "<\\/")
    return f'<script type="application/json" id="{id_}">{s}</script>'


_CSS = """
:root{--fg:#1d2430;--muted:#667085;--line:#e4e7ec;--bg:#fff;--side:#f6f7f9;--acc:#2f6fde;--drop:#d9534f;--keep:#3b9b5a}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
nav{position:fixed;top:0;left:0;bottom:0;width:230px;overflow:auto;background:var(--side);border-right:1px solid var(--line);padding:16px 12px}
nav a{display:block;color:var(--fg);text-decoration:none;padding:3px 6px;border-radius:4px}nav a:hover{background:#e8ecf3}
nav .sub{padding-left:18px;color:var(--muted);font-size:13px}
main{margin-left:230px;padding:20px 32px 60px;max-width:1250px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 8px;padding-top:10px;border-top:2px solid var(--line)}
h3{font-size:15px;margin:20px 0 6px}.muted{color:var(--muted)}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}th,td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left;vertical-align:top}
th{background:var(--side);font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv td:first-child{color:var(--muted)}
.bar{width:180px;height:12px;background:#f0d7d6;border-radius:3px;overflow:hidden;display:inline-block;vertical-align:middle}
.bar span{display:block;height:100%;background:var(--keep)}.bar.plain{background:#eef1f5}.bar.plain span{background:var(--acc)}
.cards{display:flex;flex-wrap:wrap;align-items:flex-start;gap:10px;margin:8px 0 16px}
.card{margin:0;width:168px;border:1px solid var(--line);border-radius:6px;padding:6px;background:#fff}
.card img{display:block;max-width:100%;height:auto;margin:0 auto 4px;border-radius:3px}
.card figcaption{font-size:12px;word-wrap:break-word}.card .meta{font-size:11px;color:var(--muted);margin-top:3px;word-wrap:break-word}
.noimg{height:60px;display:flex;align-items:center;justify-content:center;background:#f3f4f6;color:var(--muted);font-size:11px;border-radius:3px;margin-bottom:4px}
.pair{display:flex;gap:8px;align-items:stretch;margin:6px 0 14px;flex-wrap:wrap}.pair .arrow{align-self:center;font-size:20px;color:var(--muted)}
.group{border-left:3px solid var(--acc);padding-left:10px;margin:10px 0}
.kept{border-color:var(--keep);box-shadow:0 0 0 1px var(--keep)}.dropped{border-color:var(--drop)}
.plot{max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px;margin:6px 0}
.warn{background:#fff6e5;border:1px solid #f3d19c;padding:6px 10px;border-radius:4px;margin:6px 0}
.pill{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;background:#eef1f5}
.pill.high{background:#dff3e5;color:#1e6b3a}.pill.low{background:#fbe3e2;color:#9a2c28}
.instr{font-style:italic;margin:4px 0 0}
#tsne{position:relative;display:inline-block}#tsne svg{border:1px solid var(--line);border-radius:4px;background:#fcfcfd}
#tsne circle{cursor:pointer}#tip{position:absolute;pointer-events:none;display:none;background:#fff;border:1px solid #c8ced8;border-radius:6px;
padding:6px;max-width:240px;font-size:12px;box-shadow:0 2px 8px rgba(0,0,0,.15);z-index:5}#tip img{display:block;margin-bottom:4px}
details>summary{cursor:pointer;color:var(--acc)}footer{margin-top:40px;color:var(--muted);font-size:12px}
"""

_JS = """
(function(){
  var box=document.getElementById('tsne');
  if(!box){return;}
  var data=JSON.parse(document.getElementById('tsne-data').textContent);
  var tip=document.getElementById('tip');
  function show(ev){
    var i=ev.target.getAttribute('data-i');
    if(i===null){return;}
    var p=data.points[+i];
    while(tip.firstChild){tip.removeChild(tip.firstChild);}
    if(p[4]!==null&&data.thumbs[p[4]]){var im=document.createElement('img');im.src=data.thumbs[p[4]];im.width=96;tip.appendChild(im);}
    if(p[3]!==null){var t=document.createElement('div');t.textContent=p[3];tip.appendChild(t);}
    var c=document.createElement('div');c.className='muted';c.textContent='cluster '+p[2];tip.appendChild(c);
    var r=box.getBoundingClientRect();
    tip.style.left=(ev.clientX-r.left+12)+'px';tip.style.top=(ev.clientY-r.top+12)+'px';tip.style.display='block';
  }
  box.addEventListener('mouseover',show);
  box.addEventListener('mousemove',function(ev){if(tip.style.display==='block'){var r=box.getBoundingClientRect();
    tip.style.left=(ev.clientX-r.left+12)+'px';tip.style.top=(ev.clientY-r.top+12)+'px';}});
  box.addEventListener('mouseout',function(ev){if(ev.target.tagName==='circle'){tip.style.display='none';}});
})();
"""


def page(title: str, subtitle: str, nav: List[tuple], body: str, footer: str) -> str:
    """The whole document. ``nav``: (anchor, text, level) entries."""
    links = "".join(f'<a href="#{esc(a)}" class="{"sub" if lvl > 1 else ""}">{esc(t)}</a>' for a, t, lvl in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        # an empty icon: no favicon request
        "<link rel=\"icon\" href=\"data:,\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<nav><div style=\"font-weight:600;margin:0 6px 8px\">fastcurate report</div>{links}</nav>"
        f"<main><h1>{esc(title)}</h1><div class=\"muted\">{subtitle}</div>{body}"
        f"<footer>{footer}</footer></main><script>{_JS}</script></body></html>\n"
    )
