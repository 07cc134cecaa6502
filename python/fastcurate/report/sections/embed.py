"""Embedding: the CLIP-score histogram with the thresholds later stages applied; the CLIP-score
filter (``filter`` with a CLIP-score threshold) shows the same histogram when no embed stage is in
the report."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ..html import esc, img
from ..plots import hist_with_thresholds
from . import Section, section
from .common import read_column

# Keys of a stage's statistics that hold a CLIP-score threshold it applied (docs/report.md).
THRESHOLD_KEYS = ("clip_score_threshold", "clip_score_min")


def thresholds(stages: List[Any]) -> List[Tuple[float, str]]:
    out = []
    for s in stages:
        st = s.stage_stats
        for k in THRESHOLD_KEYS:
            v = st.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((float(v), f"{s.label} threshold"))
                break
    return out


def _hist(files: List[Any], ths: List[Tuple[float, str]], where: str) -> Optional[Section]:
    v = read_column(files, "clip_score")
    if v is None or not len(v):
        return None
    import numpy as np

    v = v[np.isfinite(v)]
    if not len(v):
        return None
    html = (f"<p>{len(v):,} scores ({esc(where)}): min {v.min():.4f}, median {np.median(v):.4f}, "
            f"max {v.max():.4f}</p>")
    for x, label in ths:
        html += f"<p>{esc(label)} = {x:.4g}: {100.0 * float(np.mean(v >= x)):.1f}% of these rows at or above it</p>"
    html += img(hist_with_thresholds(v, ths, "CLIP score (image-text cosine)", "CLIP score"), "CLIP score histogram",
                "plot")
    return Section("CLIP score", html)


@section("embed")
def clip_score_section(stage: Any, run: Any) -> Optional[Section]:
    return _hist(stage.parts(), thresholds(run.after(stage)), "kept rows")


@section("filter")
def filter_clip_section(stage: Any, run: Any) -> Optional[Section]:
    ths = thresholds([stage])
    if not ths:
        return None
    before = run.stages[: run.stages.index(stage)] if stage in run.stages else []
    if any(s.name == "embed" for s in before):
        return None  # the embed section shows it, with this threshold
    return _hist(stage.input_files(), ths, "this stage's input")
