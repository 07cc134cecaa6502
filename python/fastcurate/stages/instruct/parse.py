"""The answer parser: brief reasoning, then a last ``Instruction:`` line. Only that line is kept as
the instruction; the text before it is the reasoning (stored separately, never used as the
instruction).

Accepted: the last line that starts (after optional spaces, ``*``/``#`` markdown and quotes) with
``Instruction`` followed by ``:`` (case-insensitive), with a non-empty text of at most
:data:`MAX_INSTRUCTION_CHARS` characters after it; surrounding quotes and markdown emphasis are
stripped. A JSON answer (structured mode) must be an object with a string ``instruction``
(and optionally ``reasoning``). Anything else is unparsed, with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Optional

__all__ = ["ParsedInstruction", "parse_instruction", "INSTRUCTION_SCHEMA", "MAX_INSTRUCTION_CHARS"]

MAX_INSTRUCTION_CHARS = 300

#: structured mode: the JSON object the server is asked for
INSTRUCTION_SCHEMA = {
    "type": "object",
    "properties": {"reasoning": {"type": "string", "maxLength": 400},
                   "instruction": {"type": "string", "minLength": 3, "maxLength": 200}},
    "required": ["reasoning", "instruction"],
    "additionalProperties": False,
}

_LINE = re.compile(r"""^[\s*#>"'`_-]*instruction[\s*_"'`]*[:：]\s*(.*)$""", re.IGNORECASE)
_REASONING = re.compile(r"""^[\s*#"'`_-]*reasoning[\s*_"'`]*[:：]\s*""", re.IGNORECASE)
_STRIP = " \t\"'`*_“”‘’"


@dataclass(frozen=True)
class ParsedInstruction:
    ok: bool
    instruction: Optional[str] = None
    reasoning: Optional[str] = None
    why: Optional[str] = None  # why it is not ok


def _clean(s: str) -> str:
    return " ".join(s.split()).strip(_STRIP).strip()


def parse_instruction(text: Optional[str], structured: bool = False,
                      forbidden: Iterable[str] = ()) -> ParsedInstruction:
    """Parse one answer (see the module docstring). An instruction equal (case and spacing aside)
    to one in ``forbidden`` (the prompt's demonstrations) is refused: the model copied an example."""
    p = _parse(text, structured)
    if p.ok and p.instruction is not None:
        low = " ".join(p.instruction.lower().split())
        if any(low == " ".join(f.lower().split()) for f in forbidden):
            return ParsedInstruction(False, reasoning=p.reasoning,
                                     why="copied a demonstration's instruction from the prompt")
    return p


def _parse(text: Optional[str], structured: bool) -> ParsedInstruction:
    if text is None:
        return ParsedInstruction(False, why="no answer")
    if structured:
        try:
            obj = json.loads(text)
        except ValueError as e:
            return ParsedInstruction(False, why=f"not JSON: {e}")
        if not isinstance(obj, dict) or not isinstance(obj.get("instruction"), str):
            return ParsedInstruction(False, why="the JSON answer has no string 'instruction'")
        ins = _clean(obj["instruction"])
        reasoning = obj.get("reasoning")
        rs = _clean(reasoning) if isinstance(reasoning, str) else None
        return _check(ins, rs)
    lines = text.splitlines()
    for k in range(len(lines) - 1, -1, -1):
        m = _LINE.match(lines[k])
        if m:
            ins = _clean(m.group(1))
            before = "\n".join(lines[:k]).strip()
            before = _REASONING.sub("", before, count=1).strip()
            return _check(ins, before or None)
    return ParsedInstruction(False, why="no line starting with 'Instruction:'")


def _check(ins: str, reasoning: Optional[str]) -> ParsedInstruction:
    if not ins:
        return ParsedInstruction(False, reasoning=reasoning, why="the Instruction: line is empty")
    if len(ins) > MAX_INSTRUCTION_CHARS:
        return ParsedInstruction(False, reasoning=reasoning,
                                 why=f"the instruction has {len(ins)} characters (> {MAX_INSTRUCTION_CHARS})")
    return ParsedInstruction(True, instruction=ins, reasoning=reasoning)
