"""The report's plots: matplotlib (headless), PNG as data URIs, small (80-100 dpi)."""

from __future__ import annotations

import base64
import io
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..plots import log_log_decades, rank_curve

__all__ = ["png_uri", "figure", "hist_with_thresholds", "long_tail", "hbar", "scatter_clusters", "cluster_color"]


def figure(w: float = 7.0, h: float = 3.6) -> Tuple[Any, Any]:
    """A figure on the Agg canvas through matplotlib's object API (no pyplot: no global state,
    a lighter import)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=90)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def png_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def cluster_color(c: int) -> str:
    """A distinct colour per cluster id (golden-angle hues), the same in the PNG and the SVG."""
    return f"hsl({(int(c) * 137.508) % 360:.1f},65%,48%)"


def _rgb(c: int) -> Tuple[float, float, float]:
    import colorsys

    return colorsys.hls_to_rgb(((int(c) * 137.508) % 360) / 360.0, 0.48, 0.65)


def hist_with_thresholds(values: np.ndarray, thresholds: Sequence[Tuple[float, str]], xlabel: str, title: str,
                         bins: int = 60) -> str:
    fig, ax = figure()
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    ax.hist(v, bins=bins, color="#5b8def", alpha=0.9)
    for x, label in thresholds:
        kept = float(np.mean(v >= x)) if len(v) else 0.0
        ax.axvline(x, color="#d9534f", ls="--", lw=1.5, label=f"{label} = {x:.4g} ({100 * kept:.1f}% at or above)")
    if thresholds:
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.15)
    return png_uri(fig)


def long_tail(before: np.ndarray, after: Optional[np.ndarray], t: Optional[float]) -> str:
    fig, ax = figure(7, 4)
    for counts, label in ((before, "before balancing"), (after, "after balancing")):
        if counts is None:
            continue
        c = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
        c = c[c > 0]
        if len(c):
            ax.plot(*rank_curve(c), lw=1.5, label=f"{label} ({int(c.sum()):,} matches, {len(c):,} entries)")
    if t is not None:
        ax.axhline(t, color="gray", ls="--", lw=1, label=f"t = {t:,.6g}")
    log_log_decades(ax)
    ax.set_xlabel("entry rank (by count)")
    ax.set_ylabel("matched texts")
    ax.set_title("MetaCLIP entry counts: the long tail", fontsize=11)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="major", alpha=0.3)
    fig.subplots_adjust(left=0.11, right=0.97, top=0.91, bottom=0.13)
    return png_uri(fig)


def hbar(labels: Sequence[str], series: Mapping[str, Sequence[float]], xlabel: str, title: str,
         stacked: bool = True) -> str:
    """Horizontal bars, one row per label; several series stacked (or side by side)."""
    fig, ax = figure(7, 0.9 + 0.38 * max(1, len(labels)))
    y = np.arange(len(labels))
    left = np.zeros(len(labels))
    colors = ["#5b8def", "#f0a33a", "#3b9b5a", "#a05bd6", "#d9534f", "#7f8c8d"]
    h = 0.7 / (1 if stacked else max(1, len(series)))
    for k, (name, vals) in enumerate(series.items()):
        v = np.asarray(vals, dtype=np.float64)
        if stacked:
            ax.barh(y, v, left=left, color=colors[k % len(colors)], label=name, height=0.6)
            left += v
        else:
            ax.barh(y - 0.35 + h * (k + 0.5), v, height=h, color=colors[k % len(colors)], label=name)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=11)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    fig.subplots_adjust(left=0.22, right=0.97, top=1 - 0.45 / fig.get_figheight(), bottom=0.55 / fig.get_figheight())
    return png_uri(fig)


def scatter_clusters(x: np.ndarray, y: np.ndarray, c: np.ndarray, title: str) -> str:
    fig, ax = figure(6.5, 5)
    cols = np.array([_rgb(int(k)) for k in c]) if len(c) else None
    ax.scatter(x, y, s=4, c=cols, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=11)
    fig.subplots_adjust(left=0.03, right=0.97, top=0.93, bottom=0.03)
    return png_uri(fig)
