"""Plots for curation reports (matplotlib, headless, byte-reproducible PNGs)."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

__all__ = ["log_log_decades", "plot_long_tail", "plot_tsne", "plot_tsne_thumbnails", "preload", "rank_curve"]

_preloading: Optional[threading.Thread] = None


def _import_matplotlib() -> None:
    try:
        import matplotlib.backends.backend_agg  # noqa: F401  (what savefig draws with)
        import matplotlib.figure  # noqa: F401
    except Exception:  # a broken install: the plot call itself raises it, where it is handled
        pass


def preload() -> None:
    """Import matplotlib on a background thread, once per process: its import (~0.25-0.35 s, more
    than drawing a plot) then overlaps a stage's work instead of adding to its end. A plot call
    made before it finishes simply waits on Python's import lock."""
    global _preloading
    if _preloading is None:
        _preloading = threading.Thread(target=_import_matplotlib, name="fastcurate-preload-matplotlib", daemon=True)
        _preloading.start()


def rank_curve(sorted_desc: np.ndarray, points: int = 2048) -> "tuple[np.ndarray, np.ndarray]":
    """``(rank, value)`` of a curve sorted in decreasing order, at about ``points`` log-spaced ranks
    (first and last included). On a log rank axis a few hundred pixels wide this draws the same
    picture as every rank; matplotlib spent ~0.1 s on 2 x 86k points per long-tail plot."""
    c = np.asarray(sorted_desc)
    n = len(c)
    if n <= points:
        return np.arange(1, n + 1), c
    r = np.unique(np.rint(np.geomspace(1, n, points)).astype(np.int64))
    return r, c[r - 1]


def _decade_label(v: float, _pos: object = None) -> str:
    """1, 10, 100, 1k, ... 1M, 1G as plain text: matplotlib's default 10^k labels are mathtext,
    whose parse and font lookups cost more than the rest of a log-log figure (and print a
    "findfont" warning per font when a stale font cache lacks matplotlib's own fonts)."""
    if not v > 0:
        return ""
    e = int(round(float(np.log10(v))))
    if abs(v - 10.0**e) > 1e-9 * v:
        return ""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def log_log_decades(ax: Any) -> None:
    """Call after plotting. Log scales on both axes with a labelled tick per decade and no minor ticks (each minor tick
    is an object matplotlib builds and lays out on every draw: ~400 of them on a long-tail plot)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if not hi >= 10 * lo:  # less than a decade in view: matplotlib's own ticks label it, ours might not
            continue
        axis.set_major_locator(LogLocator(base=10.0))
        axis.set_major_formatter(FuncFormatter(_decade_label))
        axis.set_minor_locator(NullLocator())


def plot_long_tail(
    counts_before: np.ndarray,
    counts_after: np.ndarray,
    t: float,
    path: Union[str, "os.PathLike[str]"],
    title: Optional[str] = None,
) -> Path:
    """Entry counts sorted in decreasing order against rank, log-log, before and after balancing,
    with the threshold ``t`` drawn across (MetaCLIP's figure). Written atomically; the PNG carries
    no timestamp or software tag, so a rerun gives the same bytes."""
    # The object-oriented API without pyplot: no global figure state, no backend switching, and a
    # second or more less import time (pyplot pulls in much more than drawing needs).
    from matplotlib.figure import Figure

    from .io.atomic import atomic_write_bytes

    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.subplots()
    for counts, label in ((counts_before, "before balancing"), (counts_after, "after balancing")):
        c = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
        c = c[c > 0]  # log scale: entries never matched are not drawn (their number is in stats.json)
        if len(c):
            ax.plot(*rank_curve(c), label=f"{label} ({int(c.sum()):,} matches)", lw=1.5)
    ax.axhline(t, color="gray", ls="--", lw=1, label=f"t = {t:,.6g}")
    log_log_decades(ax)
    ax.set_xlabel("entry rank (by count)")
    ax.set_ylabel("number of matched texts")
    # fig.text, not ax.set_title: placing an axes title measures every tick label of the log axes
    fig.text(0.5, 0.955, title or "Metadata entry counts (long tail)", ha="center", va="center", fontsize=12)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.12)  # fixed: tight_layout costs ~0.3 s
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out


def plot_tsne(xy: np.ndarray, labels: np.ndarray, path: Union[str, "os.PathLike[str]"],
              title: Optional[str] = None) -> Path:
    """The t-SNE map, one point per row, coloured by cluster (tab20 cycled). Atomic, no timestamp."""
    from matplotlib.figure import Figure

    from .io.atomic import atomic_write_bytes

    fig = Figure(figsize=(7, 7), dpi=100)
    ax = fig.subplots()
    lab = np.asarray(labels)
    cmap = _cluster_colours(lab)
    ax.scatter(xy[:, 0], xy[:, 1], s=4 if len(xy) > 2000 else 10, c=cmap, linewidths=0, alpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    k = len(np.unique(lab))
    fig.text(0.5, 0.965, title or f"t-SNE map of {len(xy):,} rows, {k} clusters", ha="center", va="center",
             fontsize=12)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.93, bottom=0.02)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out


def _cluster_colours(labels: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    tab = colormaps["tab20"].colors  # type: ignore[attr-defined]  # a ListedColormap
    return np.asarray([tab[int(c) % len(tab)] for c in labels])


def plot_tsne_thumbnails(xy: np.ndarray, images: list, path: Union[str, "os.PathLike[str]"],
                         size: Optional[int] = None, thumb: int = 40, max_images: int = 800) -> bool:
    """Thumbnails of the images at their t-SNE positions on a white canvas (the seed study's
    picture). ``images``: bytes or paths per row (None skipped); at most ``max_images`` drawn, in
    row order. Returns False when no image could be decoded (nothing written)."""
    from PIL import Image

    from .io.atomic import atomic_write_bytes

    if size is None:  # about 2.5 thumbnails of room per image across, within 400..1600 px
        size = int(min(1600, max(400, np.sqrt(min(len(xy), max_images)) * thumb * 2.5)))
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    pos = ((xy - lo) / span * (size - thumb)).astype(int)
    canvas = Image.new("RGB", (size, size), "white")
    drawn = 0
    for (x, y), src in zip(pos, images):
        if src is None or drawn >= max_images:
            continue
        try:
            opened = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else src)
            opened.draft("RGB", (thumb, thumb))
            im = opened.convert("RGB")
            im.thumbnail((thumb, thumb))
        except Exception:  # an undecodable image is simply not drawn
            continue
        canvas.paste(im, (int(x), int(size - thumb - y)))
        drawn += 1
    if not drawn:
        return False
    buf = io.BytesIO()
    canvas.save(buf, "PNG", optimize=False)
    atomic_write_bytes(Path(path), buf.getvalue())
    return True
