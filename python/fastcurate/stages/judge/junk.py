"""Which captions are file names, URLs or boilerplate instead of descriptions: the filter stage's
bad-alt-text rules, so the judge scores clusters with exactly the rules that filter rows.

:func:`junk_flags` runs :class:`fastcurate.kernels.text_rules.TextRules` (one C++ pass over the
caption bytes; docs/filter.md defines each rule) and returns one boolean array per rule:

``url``          the caption is a URL, or a URL with fewer than two other words
``filename``     a file name: an image/document extension, or a camera/phone default name
                 (``IMG_0042``, ``DSC01234``, ``Screenshot_2019...``)
``boilerplate``  a placeholder phrase (``image``, ``untitled``, ``click to enlarge``, ...)
``non_letters``  under a third of the characters are letters (numbers, symbols, empty)
``repeated``     the same tokens over and over (keyword stuffing)
``null``         no caption at all

The judge runs them with the filter's default :class:`~fastcurate.kernels.text_rules.RuleConfig`;
pass another one to :class:`~.offline.OfflineJudge` to score with the thresholds your filter uses.
"""

from __future__ import annotations

from typing import Dict, Optional, Union

import numpy as np
import pyarrow as pa

__all__ = ["JUNK_RULES", "junk_flags", "is_junk"]

#: the rule names :func:`junk_flags` reports, in order
JUNK_RULES = ("url", "filename", "boilerplate", "non_letters", "repeated", "null")

_RULES_CACHE: Dict[int, object] = {}


def _rules(config: Optional[object]) -> object:
    from ...kernels.text_rules import TextRules

    key = id(config)
    r = _RULES_CACHE.get(key)
    if r is None:
        r = TextRules(config)  # type: ignore[arg-type]
        _RULES_CACHE[key] = r
    return r


def junk_flags(texts: Union[pa.Array, pa.ChunkedArray], config: Optional[object] = None) -> Dict[str, np.ndarray]:
    """One boolean array per rule of :data:`JUNK_RULES` (True: the caption is junk by that rule).
    ``config``: a :class:`~fastcurate.kernels.text_rules.RuleConfig` (default: the filter's)."""
    from ...kernels.text_rules import FLAG_NULL, RULES

    stats = _rules(config).run(texts, counts=False)  # type: ignore[attr-defined]
    flags = stats.flags
    out = {name: (flags & np.uint8(1 << i)) != 0 for i, name in enumerate(RULES) if name in JUNK_RULES}
    out["null"] = (flags & np.uint8(FLAG_NULL)) != 0
    return {name: out[name] for name in JUNK_RULES}


def is_junk(texts: Union[pa.Array, pa.ChunkedArray], config: Optional[object] = None) -> np.ndarray:
    """True where a caption is junk by any rule of :data:`JUNK_RULES`."""
    acc = np.zeros(len(texts), dtype=bool)
    for v in junk_flags(texts, config).values():
        acc |= v
    return acc
