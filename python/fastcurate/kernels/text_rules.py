"""DataComp's caption counts and the bad-alt-text rules, over a whole batch in one C++ pass.

What each rule means, exactly, is written out as plain Python in
:mod:`fastcurate.kernels.text_reference` (the specification the tests hold the kernel to);
docs/filter.md explains the choices and lists real captions each rule removes.

>>> import pyarrow as pa
>>> from fastcurate.kernels.text_rules import TextRules, first_failing, RULES
>>> stats = TextRules().run(pa.array(["IMG_0042.JPG", "a red bike leaning on a wall", None]))
>>> stats.words.tolist(), stats.chars.tolist()
([1, 7, 0], [12, 28, 0])
>>> [RULES[c - 1] if c else "ok" for c in first_failing(stats.flags).tolist()]
['filename', 'ok', 'ok']
>>> stats.null.tolist()
[False, False, True]

Texts may be a pyarrow ``string`` / ``large_string`` Array or ChunkedArray (read in place, no
copy; slices and nulls honoured), anything exporting ``__arrow_c_array__``, a list of ``str``
(``None`` = null) or a numpy str / object array.

Thread safety: a :class:`TextRules` is immutable; ``run`` may be called from many threads at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional, Tuple

import numpy as np

from .. import _core
from ..errors import InputError, InputTypeError
from ._texts import to_columns
from .text_reference import RULES, RuleConfig

__all__ = [
    "RULES",
    "RuleConfig",
    "TextRules",
    "TextStats",
    "FLAG_INVALID_UTF8",
    "FLAG_NULL",
    "first_failing",
    "caption_counts",
    "datacomp_caption_mask",
]

FLAG_INVALID_UTF8 = 64
FLAG_NULL = 128
_RULE_BITS = {name: 1 << i for i, name in enumerate(RULES)}

# first_failing's lookup: the 1-based index of the lowest rule bit set, 0 when none is.
_FIRST = np.zeros(256, dtype=np.uint8)
for _v in range(256):
    for _i in range(len(RULES)):
        if _v >> _i & 1:
            _FIRST[_v] = _i + 1
            break


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return 0
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool):
        raise InputTypeError(f"threads must be an int or None, got {type(threads).__name__}")
    if threads < 0:
        raise InputError(f"threads must be >= 0 (0 or None = all cores), got {threads}")
    return int(threads)


@dataclass(frozen=True)
class TextStats:
    """Per-row results of :meth:`TextRules.run` (numpy arrays, one item per text).

    ``words``: ``len(text.split())``; ``chars``: ``len(text)`` (both int32, 0 for a null text,
    saturating at 2**31 - 1; ``None`` when ``run(counts=False)``). ``flags`` (uint8): bit i set when
    rule ``RULES[i]`` fails, plus :data:`FLAG_INVALID_UTF8` (64) for bytes that are not UTF-8 and
    :data:`FLAG_NULL` (128) for a null text.
    """

    words: Optional[np.ndarray]
    chars: Optional[np.ndarray]
    flags: np.ndarray

    @property
    def null(self) -> np.ndarray:
        """Boolean mask of null texts."""
        return (self.flags & FLAG_NULL) != 0

    @property
    def invalid_utf8(self) -> np.ndarray:
        """Boolean mask of texts whose bytes are not valid UTF-8."""
        return (self.flags & FLAG_INVALID_UTF8) != 0

    def failed(self, rule: str) -> np.ndarray:
        """Boolean mask of the texts that fail ``rule`` (one of :data:`RULES`)."""
        if rule not in _RULE_BITS:
            raise InputError(f"unknown rule {rule!r}; the rules are {', '.join(RULES)}")
        return (self.flags & _RULE_BITS[rule]) != 0


def first_failing(flags: np.ndarray) -> np.ndarray:
    """Per row, the 1-based index into :data:`RULES` of the first rule that fails, 0 when none
    does (uint8). The null and invalid-UTF-8 bits are ignored here."""
    flags = np.asarray(flags)
    if flags.dtype != np.uint8:
        raise InputTypeError(f"flags must be uint8 (TextStats.flags), got {flags.dtype}")
    return _FIRST[flags]


class TextRules:
    """The caption counts and the bad-alt-text rules, with their thresholds and word lists.

    Args:
        config: thresholds, word lists and which rules run (``config.rules``, a tuple of names
            from :data:`RULES`; the others are not evaluated and never set their bit). The
            defaults are the documented ones (docs/filter.md).
    """

    def __init__(self, config: Optional[RuleConfig] = None) -> None:
        cfg = RuleConfig() if config is None else config
        if not isinstance(cfg, RuleConfig):
            raise InputTypeError(f"config must be a RuleConfig, got {type(cfg).__name__}")
        mask = 0
        for name in cfg.rules:
            if name not in _RULE_BITS:
                raise InputError(f"unknown rule {name!r} in config.rules; the rules are {', '.join(RULES)}")
            mask |= _RULE_BITS[name]
        lists = {f.name: getattr(cfg, f.name) for f in fields(cfg) if isinstance(getattr(cfg, f.name), tuple)}
        for name, value in lists.items():
            if name != "rules" and any(not isinstance(v, str) for v in value):
                raise InputTypeError(f"config.{name} must hold only str")
        self.config = cfg
        self._k = _core.TextRules(
            rules=mask,
            url_min_other_words=int(cfg.url_min_other_words),
            min_letter_share=float(cfg.min_letter_share),
            repeat_min_tokens=int(cfg.repeat_min_tokens),
            repeat_min_dup_share=float(cfg.repeat_min_dup_share),
            repeat_min_tokens_distinct=int(cfg.repeat_min_tokens_distinct),
            extensions=list(cfg.extensions),
            camera_prefixes=list(cfg.camera_prefixes),
            camera_fillers=list(cfg.camera_fillers),
            boilerplate_phrases=list(cfg.boilerplate_phrases),
            boilerplate_prefixes=list(cfg.boilerplate_prefixes),
            stopwords=list(cfg.stopwords),
        )

    def run(self, texts: Any, *, counts: bool = True, threads: Optional[int] = None) -> TextStats:
        """Counts and rule flags of every text (one pass over the bytes, GIL released).

        ``counts=False`` leaves ``words`` / ``chars`` out (saves 8 bytes per row). ``threads``:
        None or 0 = all cores; the result does not depend on it.
        """
        kind, payload, _ = to_columns(texts)
        words, chars, flags = self._k.run(kind, payload, bool(counts), _threads(threads))
        return TextStats(words, chars, flags)

    def __repr__(self) -> str:
        return f"TextRules(rules={self.config.rules})"


_COUNTS_ONLY: Optional[TextRules] = None


def caption_counts(texts: Any, *, threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(words, chars, null)``: ``len(text.split())`` and ``len(text)`` per text (int32) and the
    null mask, with Python's semantics exactly (every ``str.isspace()`` code point splits words;
    lengths in code points)."""
    global _COUNTS_ONLY
    if _COUNTS_ONLY is None:
        _COUNTS_ONLY = TextRules(RuleConfig(rules=()))
    s = _COUNTS_ONLY.run(texts, threads=threads)
    assert s.words is not None and s.chars is not None
    return s.words, s.chars, s.null


def datacomp_caption_mask(
    texts: Any, *, words_above: int = 2, chars_above: int = 5, threads: Optional[int] = None
) -> np.ndarray:
    """DataComp's caption-length filter: ``len(text.split()) > words_above and len(text) >
    chars_above`` (defaults 2 and 5, as in DataComp's ``baselines``). Null texts fail."""
    for name, v in (("words_above", words_above), ("chars_above", chars_above)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise InputTypeError(f"{name} must be an int, got {type(v).__name__}")
    words, chars, null = caption_counts(texts, threads=threads)
    return (words > words_above) & (chars > chars_above) & ~null
