"""The strict answer parser: exactly "High Value" or "Low Value", plus the reason, or ``unparsed``.

Two answer forms are accepted and nothing else:

1. Structured output (the JSON schema of :data:`ANSWER_SCHEMA`): one JSON object, optionally
   surrounded by whitespace or a single Markdown code fence, holding a non-empty string ``reason``
   and ``classification`` equal to one of the two labels. Extra keys are refused.
2. The template's own lines: an optional ``Reason: ...`` part (the prompt ends with ``Reason: `` so a
   completion may start with the reason text itself) and exactly one line ``Classification: LABEL``.
   The label may carry Markdown emphasis (``**High Value**``), quotes or a final period, and its
   case is ignored; those are typography, not content. Two classification lines, a label other
   than the two (``Medium Value``, ``High``), a label inside a sentence ("this is of high value") or
   a missing reason make the answer ``unparsed``.

The parser never guesses: anything else is :data:`UNPARSED` with the raw text kept by the caller.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional

__all__ = [
    "HIGH",
    "LOW",
    "LABELS",
    "UNPARSED",
    "ERROR",
    "ANSWER_SCHEMA",
    "REASON_MAX_CHARS",
    "ParsedAnswer",
    "parse_answer",
    "parse_json_answer",
    "parse_text_answer",
]

HIGH = "High Value"
LOW = "Low Value"
LABELS = (HIGH, LOW)
#: label of an answer that is neither of the two labels in an accepted form
UNPARSED = "unparsed"
#: label of a cluster that got no answer at all (empty cluster, request refused, budget spent)
ERROR = "error"
#: the longest reason the JSON schema allows; it lets a grammar-constrained model close the string.
#: The template's own reasons are 150-230 characters. Keep the request's max_tokens above this plus
#: ~30 (a token is at least one character) so that the answer can never be cut short.
REASON_MAX_CHARS = 300

#: JSON schema of a structured answer: the reason first (the template asks for it first, so the
#: model writes its reason before it commits to a label), then exactly one of the two labels.
ANSWER_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": REASON_MAX_CHARS},
        "classification": {"type": "string", "enum": list(LABELS)},
    },
    "required": ["reason", "classification"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class ParsedAnswer:
    """``label`` is "High Value", "Low Value" or "unparsed"; ``reason`` is None when unparsed,
    ``why`` then says what was wrong (for the judgment's reason column)."""

    label: str
    reason: Optional[str]
    form: Optional[str] = None  # "json" or "text"
    why: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.label in LABELS


def _fail(why: str) -> ParsedAnswer:
    return ParsedAnswer(UNPARSED, None, None, why)


_FENCE = re.compile(r"\A```(?:json)?[ \t]*\n(.*)\n```\Z", re.S)


def parse_json_answer(text: str) -> ParsedAnswer:
    """Parse a structured answer (a JSON object with ``reason`` and ``classification``)."""
    s = text.strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    try:
        obj = json.loads(s)
    except ValueError as e:
        return _fail(f"not JSON: {e}")
    if not isinstance(obj, dict):
        return _fail(f"JSON answer is a {type(obj).__name__}, not an object")
    extra = sorted(set(obj) - {"reason", "classification"})
    if extra:
        return _fail(f"JSON answer has unexpected keys {extra}")
    label, reason = obj.get("classification"), obj.get("reason")
    if label not in LABELS:
        return _fail(f"classification {label!r} is not one of {list(LABELS)}")
    if not isinstance(reason, str) or not reason.strip():
        return _fail("JSON answer has no reason")
    return ParsedAnswer(label, reason.strip(), "json")


_CLS_LINE = re.compile(r"^[ \t>*_#-]*classification[ \t*_]*:(.*)$", re.I | re.M)
_REASON_HEAD = re.compile(r"^[ \t>*_#-]*reason[ \t*_]*:[ \t*_]*", re.I | re.M)
_DECOR = " \t*_\"'`."


def _norm_label(v: str) -> Optional[str]:
    v = v.strip().strip(_DECOR).strip()
    v = " ".join(v.split())
    for lab in LABELS:
        if v.lower() == lab.lower():
            return lab
    return None


def parse_text_answer(text: str) -> ParsedAnswer:
    """Parse the template's ``Reason: ... / Classification: ...`` lines."""
    lines = list(_CLS_LINE.finditer(text))
    if not lines:
        return _fail("no 'Classification:' line")
    if len(lines) > 1:
        return _fail(f"{len(lines)} 'Classification:' lines (the answer must hold exactly one)")
    m = lines[0]
    label = _norm_label(m.group(1))
    if label is None:
        return _fail(f"classification {m.group(1).strip()!r} is not one of {list(LABELS)}")
    after = text[m.end():].strip()
    if after:
        return _fail("text follows the classification line")
    head = text[: m.start()]
    r = list(_REASON_HEAD.finditer(head))
    if len(r) > 1:
        return _fail(f"{len(r)} 'Reason:' lines (the answer must hold at most one)")
    if r:
        if head[: r[0].start()].strip():
            return _fail("text precedes the 'Reason:' line")
        reason = head[r[0].end():]
    else:
        reason = head  # a completion of the prompt's open "Reason: " line
    reason = " ".join(reason.split())
    if not reason:
        return _fail("no reason before the classification")
    return ParsedAnswer(label, reason, "text")


def parse_answer(text: Optional[str], structured: bool = False) -> ParsedAnswer:
    """Parse a model answer. ``structured``: the request asked for the JSON schema, so only JSON is
    accepted; otherwise a JSON object or the template's lines are (whichever the text is)."""
    if text is None or not text.strip():
        return _fail("empty answer")
    if structured:
        return parse_json_answer(text)
    s = text.strip()
    if s.startswith("{") or s.startswith("```"):
        return parse_json_answer(s)
    return parse_text_answer(text)
