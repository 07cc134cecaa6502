"""The registry of per-stage report sections.

A section renderer is a function ``(stage, run) -> Section | list[Section] | None`` registered for
one or more stage names with :func:`section`. The report calls the renderers of a stage's name for
every stage output it finds; a stage that is not known gets the generic parts only (funnel row,
statistics, drop examples, timings). Renderers live in this package (one module per stage, loaded
automatically) or in the stage's own folder as ``fastcurate/stages/<name>/report.py``: a new
stage plugs in its section without touching the report's core.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Union

__all__ = ["Section", "section", "renderers", "SectionFn"]


@dataclass
class Section:
    """A titled block of HTML in a stage's part of the report."""

    title: str
    html: str


SectionFn = Callable[[Any, Any], Union[None, Section, List[Section]]]
_REGISTRY: Dict[str, List[SectionFn]] = {}
_loaded = False


def section(*stages: str) -> Callable[[SectionFn], SectionFn]:
    """Register the decorated renderer for the given stage names (in registration order)."""

    def deco(fn: SectionFn) -> SectionFn:
        for s in stages:
            lst = _REGISTRY.setdefault(s, [])
            if fn not in lst:
                lst.append(fn)
        return fn

    return deco


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for m in pkgutil.iter_modules(__path__):  # type: ignore[name-defined]
        importlib.import_module(f"{__name__}.{m.name}")


def renderers(stage_name: str) -> List[SectionFn]:
    """The renderers of ``stage_name``: the built-in ones and those of
    ``fastcurate.stages.<name>.report`` when that module exists."""
    _load_builtin()
    mod = f"fastcurate.stages.{stage_name}.report"
    try:
        found = importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        importlib.import_module(mod)
    return list(_REGISTRY.get(stage_name, []))


def call(fn: SectionFn, stage: Any, run: Any) -> List[Section]:
    out = fn(stage, run)
    if out is None:
        return []
    return list(out) if isinstance(out, list) else [out]
