"""The exact definitions of the text filters, written as plain (slow) Python.

This module is the specification: the C++ kernel behind :mod:`fastcurate.kernels.text_rules` must
give the same answer for every string, and the tests hold it to that (table tests, hypothesis
property tests over arbitrary Unicode, and every caption in ``../shared/data``). Read it to know
exactly what a rule does; docs/filter.md explains why each rule is defined the way it is.

DataComp's caption filter (``baselines/utils.py`` / ``apply_filter.py`` in mlfoundations/datacomp)::

    len(text.split()) > 2 and len(text) > 5

Bad-alt-text rules work on two tokenizations of the caption:

* *whitespace tokens*: ``text.split()`` (the url rule);
* *word tokens*: maximal runs of letters (``str.isalpha()`` or a combining mark, category M*) or
  of digits (``str.isalnum()`` and not ``isalpha()``), ASCII letters lower-cased. A letter run and
  a digit run next to each other are two tokens: ``"IMG_0042.JPG"`` -> ``img 0042 jpg``,
  ``"DSC01234"`` -> ``dsc 01234``.

The word lists (extensions, camera prefixes, boilerplate phrases, ...) are tokenized the same way.
Invalid UTF-8 cannot occur in a Python ``str``; the kernel counts an invalid byte as one code point
that is neither a space nor a letter (what ``bytes.decode("utf-8", "surrogateescape")`` gives) and
sets the ``invalid_utf8`` flag.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

__all__ = [
    "RULES",
    "RuleConfig",
    "DEFAULT_EXTENSIONS",
    "DEFAULT_CAMERA_PREFIXES",
    "DEFAULT_CAMERA_FILLERS",
    "DEFAULT_BOILERPLATE_PHRASES",
    "DEFAULT_BOILERPLATE_PREFIXES",
    "DEFAULT_STOPWORDS",
    "GENERIC_TLDS",
    "datacomp_words",
    "datacomp_chars",
    "word_tokens",
    "is_url_token",
    "rule_flags",
]

# Rule names in bit order: bit i of the flags is RULES[i].
RULES: Tuple[str, ...] = ("url", "filename", "boilerplate", "non_letters", "repeated")

DEFAULT_EXTENSIONS: Tuple[str, ...] = (
    "jpg", "jpeg", "jpe", "jfif", "png", "gif", "webp", "bmp", "tif", "tiff", "heic", "heif", "avif",
    "svg", "ico", "psd", "raw", "nef", "arw", "dng", "orf", "eps", "ai", "pdf",
)

# Names that cameras, phones and tools give files: a caption that is one of these followed by
# numbers (and the fillers below) is a file name, not a description.
DEFAULT_CAMERA_PREFIXES: Tuple[str, ...] = (
    "img", "image", "imag", "dsc", "dscn", "dscf", "dsci", "mg", "pict", "pic", "picture", "photo",
    "p", "gopr", "gp", "mvi", "vid", "mov", "pxl", "cimg", "hpim", "sam", "dji", "wp", "scan",
    "snapshot", "screenshot", "screen shot", "whatsapp image", "whatsapp video", "unnamed",
    "untitled", "file", "dcim", "photo edited",
)
DEFAULT_CAMERA_FILLERS: Tuple[str, ...] = (
    "at", "am", "pm", "wa", "hdr", "edited", "edit", "copy", "burst", "pano", "cover", "mp",
    "portrait", "final", "x", "v", "e", "s", "raw", "jpg", "jpeg", "png",
)

# Words and phrases that describe nothing in the image. A caption made of these alone (plus
# numbers, stopwords and single letters) is boilerplate; one word of content anywhere keeps it.
DEFAULT_BOILERPLATE_PHRASES: Tuple[str, ...] = (
    # what the thing is, not what it shows
    "image", "images", "img", "photo", "photos", "photograph", "photographs", "photography",
    "picture", "pictures", "pic", "pics", "foto", "fotos", "thumbnail", "thumbnails", "thumb",
    "preview", "screenshot", "screenshots", "screen shot", "snapshot", "icon", "icons", "logo",
    "banner", "avatar", "placeholder", "default", "spacer", "blank", "loading", "graphic",
    "graphics", "clipart", "clip art", "wallpaper", "wallpapers", "file", "attachment", "upload",
    "uploaded", "gallery", "slideshow",
    # empty or missing
    "untitled", "unnamed", "unknown", "no title", "no name", "null", "none", "undefined", "nan",
    "n a", "tbd", "no image", "no image available", "image not available", "not available",
    "image not found", "not found", "no description", "no description available", "no photo",
    "description", "alt", "alt text", "caption", "title", "name", "file name", "filename",
    # stock sites
    "stock", "stock photo", "stock photos", "stock image", "stock images", "stock photography",
    "stock vector", "stock vectors", "stock footage", "stock illustration", "royalty free",
    "royalty", "free", "vector", "vectors", "illustration", "copyright", "all rights reserved",
    "watermark", "premium", "sddefault", "hqdefault", "maxresdefault", "mqdefault",
    # navigation and commerce
    "click", "click here", "click to enlarge", "enlarge", "zoom", "view larger", "larger image",
    "full size", "see more", "read more", "more info", "learn more",
    "download", "free download", "subscribe", "buy now", "shop now", "add to cart", "order now",
    "sold out", "coming soon", "product image", "featured image", "main image", "hero image",
    "post image",
    # file types and camera names
    "jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "svg", "heic", "dsc", "dscn",
    "dscf", "pict", "gopr", "mvi", "pxl", "cimg",
)

# Templates whose caption is machine-written whatever follows ("image may contain: ..." is
# Facebook's automatic alt text; "Google Image Result for http://..." an old image-search page).
DEFAULT_BOILERPLATE_PREFIXES: Tuple[str, ...] = (
    "image may contain", "this image may contain", "photo may contain",
    "google image result for", "no description available", "no photo description available",
)

DEFAULT_STOPWORDS: Tuple[str, ...] = (
    "a", "an", "the", "of", "for", "to", "and", "or", "on", "in", "at", "by", "with", "from",
    "this", "that", "is", "are", "be", "it", "its", "as", "our", "your", "my", "here", "there",
    "more", "see", "about",
)

# Top-level domains accepted for bare domains ("example.com"), besides every two-letter one.
GENERIC_TLDS: FrozenSet[str] = frozenset(
    (
        "com net org edu gov mil int info biz io co app dev xyz online site store shop blog club "
        "top ai tv me ly mobi pro name asia museum travel jobs tech news live life world space "
        "website email cloud art design"
    ).split()
)

_URL_LSTRIP = "\"'([<{"
_URL_RSTRIP = "\"')]>},.;:!?"


@dataclass(frozen=True)
class RuleConfig:
    """Thresholds and word lists of the bad-alt-text rules (the defaults are the documented ones)."""

    rules: Tuple[str, ...] = RULES
    url_min_other_words: int = 2
    min_letter_share: float = 1.0 / 3.0
    repeat_min_tokens: int = 8
    repeat_min_dup_share: float = 0.4
    repeat_min_tokens_distinct: int = 4
    extensions: Tuple[str, ...] = DEFAULT_EXTENSIONS
    camera_prefixes: Tuple[str, ...] = DEFAULT_CAMERA_PREFIXES
    camera_fillers: Tuple[str, ...] = DEFAULT_CAMERA_FILLERS
    boilerplate_phrases: Tuple[str, ...] = DEFAULT_BOILERPLATE_PHRASES
    boilerplate_prefixes: Tuple[str, ...] = DEFAULT_BOILERPLATE_PREFIXES
    stopwords: Tuple[str, ...] = DEFAULT_STOPWORDS


# -- DataComp ------------------------------------------------------------------------------------


def datacomp_words(text: str) -> int:
    """DataComp's word count: ``len(text.split())``."""
    return len(text.split())


def datacomp_chars(text: str) -> int:
    """DataComp's character count: ``len(text)`` (code points)."""
    return len(text)


# -- tokenization ----------------------------------------------------------------------------------


def _kind(c: str) -> str:
    """'L' for a letter or combining mark, 'D' for another alphanumeric, '' for a separator."""
    if c.isalpha() or unicodedata.category(c).startswith("M"):
        return "L"
    if c.isalnum():
        return "D"
    return ""


def _ascii_lower(s: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def word_tokens(text: str) -> List[Tuple[str, str, int]]:
    """Word tokens as ``(lower-cased token, kind 'L' or 'D', index of its first code point)``."""
    out: List[Tuple[str, str, int]] = []
    cur: List[str] = []
    cur_kind = ""
    start = 0
    for i, c in enumerate(text):
        k = _kind(c)
        if k != cur_kind:
            if cur:
                out.append((_ascii_lower("".join(cur)), cur_kind, start))
            cur, cur_kind, start = [], k, i
        if k:
            cur.append(c)
    if cur:
        out.append((_ascii_lower("".join(cur)), cur_kind, start))
    return out


@functools.lru_cache(maxsize=64)
def _phrase_set(phrases: Tuple[str, ...]) -> FrozenSet[Tuple[str, ...]]:
    out = set()
    for p in phrases:
        toks = tuple(t for t, _, _ in word_tokens(p))
        if not toks:
            raise ValueError(f"phrase {p!r} has no letters or digits")
        out.add(toks)
    return frozenset(out)


def _is_content(tok: str, kind: str, stop: Set[str]) -> bool:
    """A word of content: letters, not a stopword, and not a single ASCII letter."""
    if kind != "L" or tok in stop:
        return False
    return len(tok) >= 2 or ord(tok[0]) >= 0x80


# -- rules -------------------------------------------------------------------------------------------


def is_url_token(tok: str) -> bool:
    """Whether a whitespace token looks like a URL: ``scheme://...``, ``www....``, or a bare
    domain ``label.label.tld[/...]`` (ASCII labels, the last one a two-letter or generic TLD and
    the one before it at least two characters), after stripping surrounding quotes and brackets."""
    t = tok.lstrip(_URL_LSTRIP).rstrip(_URL_RSTRIP)
    t = _ascii_lower(t)
    if "://" in t or t.startswith("www."):
        return True
    host = t
    for sep in "/?#:":
        j = host.find(sep)
        if j >= 0:
            host = host[:j]
    labels = host.split(".")
    if len(labels) < 2:
        return False
    ok = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    if any(not lab or any(c not in ok for c in lab) for lab in labels):
        return False
    tld = labels[-1]
    if not tld.isalpha() or not (len(tld) == 2 or tld in GENERIC_TLDS):
        return False
    return len(labels[-2]) >= 2


def _url(text: str, cfg: RuleConfig) -> bool:
    urls = 0
    other_words = 0
    for t in text.split():
        if is_url_token(t):
            urls += 1
        elif any(_kind(c) == "L" for c in t):
            other_words += 1
    return urls > 0 and other_words < cfg.url_min_other_words


def _filename(text: str, toks: List[Tuple[str, str, int]], cfg: RuleConfig) -> bool:
    ws = text.split()
    exts = {_ascii_lower(e) for e in cfg.extensions}
    if len(ws) == 1:
        t = _ascii_lower(ws[0])
        dot = t.rfind(".")
        if dot > 0 and t[dot + 1 :] in exts:
            return True
    # A camera / device name: a camera prefix, then only numbers and fillers, at least one number.
    seq = list(toks)
    if seq and seq[-1][0] in exts and seq[-1][2] > 0 and text[seq[-1][2] - 1] == ".":
        seq = seq[:-1]
    words = [t for t, _, _ in seq]
    prefixes = _phrase_set(cfg.camera_prefixes)
    fillers = {t for p in _phrase_set(cfg.camera_fillers) for t in p}
    best = 0
    for p in prefixes:
        if len(p) > best and tuple(words[: len(p)]) == p:
            best = len(p)
    if best == 0:
        return False
    rest = seq[best:]
    if not any(k == "D" for _, k, _ in rest):
        return False
    return all(k == "D" or t in fillers for t, k, _ in rest)


def _boilerplate(toks: List[Tuple[str, str, int]], cfg: RuleConfig) -> bool:
    words = [t for t, _, _ in toks]
    for p in _phrase_set(cfg.boilerplate_prefixes):
        if tuple(words[: len(p)]) == p:
            return True
    phrases = _phrase_set(cfg.boilerplate_phrases)
    stop = {t for p in _phrase_set(cfg.stopwords) for t in p} if cfg.stopwords else set()
    covered = [False] * len(words)
    any_phrase = False
    for p in phrases:
        n = len(p)
        for i in range(len(words) - n + 1):
            if tuple(words[i : i + n]) == p:
                any_phrase = True
                for j in range(i, i + n):
                    covered[j] = True
    if not any_phrase:
        return False
    return all(covered[i] or not _is_content(t, k, stop) for i, (t, k, _) in enumerate(toks))


def _non_letters(text: str, cfg: RuleConfig) -> bool:
    nonspace = sum(1 for c in text if not c.isspace())
    letters = sum(1 for c in text if c.isalpha() or unicodedata.category(c).startswith("M"))
    return letters == 0 or letters < cfg.min_letter_share * nonspace


def _repeated(toks: List[Tuple[str, str, int]], cfg: RuleConfig) -> bool:
    words = [t for t, _, _ in toks]
    n = len(words)
    if n >= cfg.repeat_min_tokens_distinct and len(set(words)) * 3 <= n:
        return True
    if n >= cfg.repeat_min_tokens:
        seen: Set[Tuple[str, str]] = set()
        dup = 0
        for i in range(n - 1):
            b = (words[i], words[i + 1])
            if b in seen:
                dup += 1
            seen.add(b)
        return dup >= cfg.repeat_min_dup_share * (n - 1)
    return False


def rule_flags(text: Optional[str], cfg: RuleConfig = RuleConfig()) -> int:
    """The bitmask of failed rules of one caption (bit i = ``RULES[i]``); a null caption gives 0
    here (the kernel reports nulls with a flag of their own)."""
    if text is None:
        return 0
    toks = word_tokens(text)
    checks: Dict[str, bool] = {}
    enabled = set(cfg.rules)
    if "url" in enabled:
        checks["url"] = _url(text, cfg)
    if "filename" in enabled:
        checks["filename"] = _filename(text, toks, cfg)
    if "boilerplate" in enabled:
        checks["boilerplate"] = _boilerplate(toks, cfg)
    if "non_letters" in enabled:
        checks["non_letters"] = _non_letters(text, cfg)
    if "repeated" in enabled:
        checks["repeated"] = _repeated(toks, cfg)
    return sum(1 << i for i, name in enumerate(RULES) if checks.get(name, False))
