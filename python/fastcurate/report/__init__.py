"""``fastcurate report DIR``: one static, self-contained HTML report of a pipeline run or of one
stage's output (docs/report.md). Sections are found by what the directory holds, through a
registry of per-stage renderers (:func:`section`)."""

from __future__ import annotations

from .build import REPORT_NAME, build_report
from .data import RowInfo, RunView, StageView, open_run, thumbnail
from .sections import Section, section

__all__ = ["build_report", "REPORT_NAME", "section", "Section", "open_run", "RunView", "StageView", "RowInfo",
           "thumbnail"]
