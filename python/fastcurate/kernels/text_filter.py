"""DataComp's basic text filter plus the bad-alt-text rules: one call, one reason per row.

This is what ``fastcurate filter`` runs on the text column of each Arrow batch. Per row it gives
the *first* reason, in the fixed order of :data:`REASONS`, why the caption is dropped (0 = kept):

========  =====================  ===========================================================
code      reason                 test
========  =====================  ===========================================================
0         ``ok``                 kept
1         ``null text``          the caption is null
2         ``invalid utf-8``      its bytes are not UTF-8 (only possible for binary columns)
3         ``too few words``      ``len(text.split()) <= words_above`` (DataComp: 2)
4         ``too few characters`` ``len(text) <= chars_above`` (DataComp: 5)
5..9      ``url`` ... ``repeated``  the bad-alt-text rules, in :data:`~.text_rules.RULES` order
10        ``not <language>``     fastText's top-1 label is not ``language`` (DataComp: ``en``)
========  =====================  ===========================================================

Language ID, the costliest test, runs only on the rows that pass every other one (set
``language_all_rows=True`` to get a label for every row, e.g. for statistics).

>>> from fastcurate.kernels.text_filter import TextFilter
>>> f = TextFilter()
>>> r = f.classify(["a dog running on the beach", "IMG_0042.JPG", "un chien qui court sur la plage"])
>>> [r.reasons[c] for c in r.codes]
['ok', 'too few words', 'not en']

Thread safety: a :class:`TextFilter` is immutable; ``classify`` may run from many threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Tuple, Union

import numpy as np

from ..errors import InputError, InputTypeError
from .langid import LanguageIdentifier, LanguagePredictions, PathLike
from .text_reference import RULES, RuleConfig
from .text_rules import FLAG_INVALID_UTF8, FLAG_NULL, TextRules, TextStats, first_failing

__all__ = ["TextFilter", "TextFilterConfig", "TextFilterResult", "REASONS", "reason_names"]

REASONS: Tuple[str, ...] = (
    "ok",
    "null text",
    "invalid utf-8",
    "too few words",
    "too few characters",
) + RULES + ("not language",)

CODE_NULL, CODE_INVALID, CODE_WORDS, CODE_CHARS = 1, 2, 3, 4
CODE_RULE0 = 5
CODE_LANGUAGE = CODE_RULE0 + len(RULES)


def reason_names(language: Optional[str]) -> Tuple[str, ...]:
    """:data:`REASONS` with the language reason spelled for ``language`` (``"not en"``)."""
    return REASONS[:-1] + ((f"not {language}",) if language else ("not language",))


@dataclass(frozen=True)
class TextFilterConfig:
    """Thresholds of the text filter; the defaults are DataComp's basic filter plus every rule.

    ``rules=None`` turns the bad-alt-text rules off; ``language=None`` turns language ID off.
    ``model`` is ``"lite"`` (bundled lid.176.ftz) or the path of a fastText model.
    """

    words_above: int = 2
    chars_above: int = 5
    language: Optional[str] = "en"
    model: Union[str, PathLike] = "lite"
    rules: Optional[RuleConfig] = field(default_factory=RuleConfig)
    language_all_rows: bool = False


@dataclass(frozen=True)
class TextFilterResult:
    """Per-row outcome of :meth:`TextFilter.classify`.

    ``codes`` (uint8): index into ``reasons`` of the first failing test, 0 = kept. ``stats``: the
    counts and rule flags (:class:`~.text_rules.TextStats`). ``language``: the fastText
    predictions (code -1 on rows it did not evaluate), or None when language ID is off.
    """

    codes: np.ndarray
    reasons: Tuple[str, ...]
    stats: TextStats
    language: Optional[LanguagePredictions]

    @property
    def keep(self) -> np.ndarray:
        """Boolean mask of the kept rows."""
        return self.codes == 0

    def counts(self) -> dict:
        """``{reason: rows}`` for every reason that occurs (including ``ok``)."""
        c = np.bincount(self.codes, minlength=len(self.reasons))
        return {self.reasons[i]: int(c[i]) for i in range(len(self.reasons)) if c[i]}


class TextFilter:
    """DataComp's basic caption filter, the bad-alt-text rules and language ID in one call."""

    def __init__(self, config: Optional[TextFilterConfig] = None) -> None:
        cfg = TextFilterConfig() if config is None else config
        if not isinstance(cfg, TextFilterConfig):
            raise InputTypeError(f"config must be a TextFilterConfig, got {type(cfg).__name__}")
        for name in ("words_above", "chars_above"):
            v = getattr(cfg, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise InputTypeError(f"{name} must be an int, got {type(v).__name__}")
        self.config = cfg
        self._rules = TextRules(cfg.rules if cfg.rules is not None else RuleConfig(rules=()))
        self._lid: Optional[LanguageIdentifier] = None
        if cfg.language is not None:
            self._lid = LanguageIdentifier(cfg.model)
            if cfg.language not in self._lid.labels:
                raise InputError(
                    f"language {cfg.language!r} is not a label of {self._lid.path}; it knows e.g. {', '.join(self._lid.labels[:10])}"
                )
        self.reasons = reason_names(cfg.language)

    def classify(self, texts: Any, *, threads: Optional[int] = None) -> TextFilterResult:
        """Classifies every text (C++, GIL released; ``threads``: None or 0 = all cores)."""
        cfg = self.config
        stats = self._rules.run(texts, threads=threads)
        assert stats.words is not None and stats.chars is not None
        codes = np.zeros(len(stats.flags), dtype=np.uint8)
        rule = first_failing(stats.flags)
        # Assigned from the last reason to the first, so the first failing one is what remains.
        codes[rule > 0] = (rule[rule > 0] + (CODE_RULE0 - 1)).astype(np.uint8)
        codes[stats.chars <= cfg.chars_above] = CODE_CHARS
        codes[stats.words <= cfg.words_above] = CODE_WORDS
        codes[(stats.flags & FLAG_INVALID_UTF8) != 0] = CODE_INVALID
        codes[(stats.flags & FLAG_NULL) != 0] = CODE_NULL
        lang: Optional[LanguagePredictions] = None
        if self._lid is not None:
            skip = None if cfg.language_all_rows else (codes != 0).view(np.uint8)
            lang = self._lid.predict(texts, skip=skip, threads=threads)
            assert cfg.language is not None
            codes[(codes == 0) & ~lang.is_language(cfg.language)] = CODE_LANGUAGE
        return TextFilterResult(codes, self.reasons, stats, lang)
