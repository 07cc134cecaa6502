"""Plots for curation reports (matplotlib, headless, byte-reproducible PNGs)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["plot_long_tail"]


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
            ax.plot(np.arange(1, len(c) + 1), c, label=f"{label} ({int(c.sum()):,} matches)", lw=1.5)
    ax.axhline(t, color="gray", ls="--", lw=1, label=f"t = {t:,.6g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
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
