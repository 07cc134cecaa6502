"""The template's five worked examples, read from the shipped template itself (not copied by hand).

They are the check of every judge backend (each must label them as the template does), never
calibration data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .prompt import load_template

__all__ = ["TemplateExample", "template_examples", "TEMPLATE_EXAMPLES"]


@dataclass(frozen=True)
class TemplateExample:
    closest: Tuple[str, ...]
    furthest: Optional[Tuple[str, ...]]
    reason: str
    label: str


_EX = re.compile(r"### Example (\d+)\nCluster data:\n(.*?)\nReason: (.*?)\nClassification: (.*?)\n", re.S)
_LIST = re.compile(r'"(closest_samples|furthest_samples)": (\[.*?\n  \])', re.S)


def template_examples(template: Optional[str] = None) -> List[TemplateExample]:
    """Parse the examples of the template (default: the shipped one)."""
    text = load_template(template)
    out = []
    for m in _EX.finditer(text):
        lists = {k: tuple(json.loads(v)) for k, v in _LIST.findall(m.group(2))}
        out.append(TemplateExample(lists["closest_samples"], lists.get("furthest_samples"), m.group(3).strip(),
                                   m.group(4).strip()))
    return out


#: (closest captions, label) of each example
TEMPLATE_EXAMPLES: List[Tuple[List[str], str]] = [(list(e.closest), e.label) for e in template_examples()]
