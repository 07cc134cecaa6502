"""The instruction prompt: the shipped template (``instruction_prompt.txt``: a task paragraph, four
few-shot demonstrations written for this project, each with brief reasoning and a final
``Instruction:`` line, then the pair) and its renderer.

The template holds four placeholders, each exactly once: ``{query_text}``, ``{query_labels}``,
``{target_text}``, ``{target_labels}``. They are replaced by slicing, in one left-to-right pass,
never with ``str.format``: inserted text is never scanned again, so an alt-text holding
``{target_text}`` stays literal. Alt-texts are written as one-line JSON string literals (the judge's
:func:`~fastcurate.stages.judge.prompt.escape_sample`: quotes, line breaks, control and invisible
format characters escaped), so web text cannot end its line and pose as a new instruction; labels
are joined with ", " after the same escaping (without the quotes).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from ...errors import InputError
from ..judge.prompt import escape_sample

__all__ = ["TEMPLATE_PATH", "PLACEHOLDERS", "load_template", "render_prompt", "template_sha256", "demo_instructions",
           "DEFAULT_MAX_CHARS", "DEFAULT_MAX_LABELS"]

TEMPLATE_PATH = Path(__file__).with_name("instruction_prompt.txt")
PLACEHOLDERS = ("{query_text}", "{query_labels}", "{target_text}", "{target_labels}")
DEFAULT_MAX_CHARS = 200
DEFAULT_MAX_LABELS = 8


@lru_cache(maxsize=8)
def _read(path: str) -> str:
    return Path(path).read_bytes().decode("utf-8")


def load_template(path: Optional[Union[str, Path]] = None) -> str:
    """The template's text (the shipped one by default); checks that each placeholder occurs once."""
    p = Path(path) if path is not None else TEMPLATE_PATH
    if not p.is_file():
        raise InputError(f"instruction template {p}: no such file")
    text = _read(str(p.resolve()))
    for ph in PLACEHOLDERS:
        k = text.count(ph)
        if k != 1:
            raise InputError(f"instruction template {p} holds {ph} {k} times; it needs each of "
                             f"{', '.join(PLACEHOLDERS)} exactly once")
    return text


def template_sha256(path: Optional[Union[str, Path]] = None) -> str:
    return hashlib.sha256(load_template(path).encode("utf-8")).hexdigest()


def _labels(labels: Optional[Sequence[str]], max_labels: int) -> str:
    seen: List[str] = []
    low = set()
    for x in labels or ():
        if x is None:
            continue
        k = str(x).strip()
        if k and k.lower() not in low:
            low.add(k.lower())
            seen.append(k)
        if len(seen) >= max_labels:
            break
    if not seen:
        return "(none)"
    return ", ".join(escape_sample(s, 60)[1:-1] for s in seen)


def render_prompt(query_text: Optional[str], query_labels: Optional[Sequence[str]], target_text: Optional[str],
                  target_labels: Optional[Sequence[str]], *, template: Optional[str] = None,
                  max_chars: int = DEFAULT_MAX_CHARS, max_labels: int = DEFAULT_MAX_LABELS) -> str:
    """The template with the pair filled in (alt-texts cut at ``max_chars`` code points, at most
    ``max_labels`` labels per image, best first)."""
    t = template if template is not None else load_template()
    values = {"{query_text}": escape_sample(query_text, max_chars), "{query_labels}": _labels(query_labels, max_labels),
              "{target_text}": escape_sample(target_text, max_chars),
              "{target_labels}": _labels(target_labels, max_labels)}
    spots: List[Tuple[int, str]] = sorted((t.index(ph), ph) for ph in PLACEHOLDERS)
    out: List[str] = []
    pos = 0
    for at, ph in spots:
        out.append(t[pos:at])
        out.append(values[ph])
        pos = at + len(ph)
    out.append(t[pos:])
    return "".join(out)


def demo_instructions(template: str) -> List[str]:
    """The instructions of the template's demonstrations (its ``Instruction:`` lines before the
    pair's placeholders): an answer that repeats one of them copied a demonstration."""
    from .parse import _LINE, _clean

    head = template[: min(template.index(ph) for ph in PLACEHOLDERS)]
    out = []
    for line in head.splitlines():
        m = _LINE.match(line)
        if m and _clean(m.group(1)):
            out.append(_clean(m.group(1)))
    return out
