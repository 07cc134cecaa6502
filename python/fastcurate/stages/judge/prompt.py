"""The cluster-quality prompt: DataComp's classifier template, shipped byte for byte, and its rendering.

The template (``cluster_quality_prompt.txt`` beside this file, identical to the project's seed) ends
with::

    Cluster data:
     "closest_samples": {cluster_data}
    Reason: 
    Classification:

:func:`render_prompt` fills ``{cluster_data}`` the way the template's own worked examples lay out
their data: a bracketed list of quoted samples, one per line, indented four spaces, the closing
bracket indented two; then, when the furthest samples are asked for, a ``"furthest_samples"`` list in
the same layout (an empty one renders as ``[`` / ``]``, as in Example 1).

Escaping (why: a caption is untrusted web text and must stay *data*): every sample is written as a
JSON string literal, so a quote, a backslash or a line break cannot end the sample, the list or the
line. Beyond JSON's mandatory escapes, every character that could move text to another line or
hide text from a human reader is written as a ``\\uXXXX`` escape: C0/C1 controls, DEL, the Unicode
line and paragraph separators, and every format character (Unicode category Cf: zero-width
characters, bidirectional overrides, the invisible "tag" characters U+E0000-E007F that can smuggle
ASCII instructions). Braces need no escape: the template is filled by one literal replacement of
its single ``{cluster_data}`` placeholder (never ``str.format``) and the inserted text is not scanned
again, so a caption holding ``{cluster_data}`` or ``{}`` stays literal text.

A caption longer than ``max_chars`` code points (default :data:`DEFAULT_MAX_CHARS` = 200, four times
the longest example sample) is cut there and ends with ``…`` (U+2026). The cut happens before
escaping, so an escape sequence is never split. ``None`` (a null caption) renders as ``""``.
"""

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterable, List, Optional, Pattern, Sequence

from ...errors import InputError, InputTypeError

__all__ = [
    "TEMPLATE_PATH",
    "DEFAULT_SAMPLES",
    "DEFAULT_MAX_CHARS",
    "load_template",
    "render_prompt",
    "render_cluster_data",
    "escape_sample",
    "prompt_sha256",
]

TEMPLATE_PATH = Path(__file__).with_name("cluster_quality_prompt.txt")
#: samples per side shown to the judge, as in the template's examples
DEFAULT_SAMPLES = 5
#: captions are cut to this many code points (the longest example sample is 50)
DEFAULT_MAX_CHARS = 200
PLACEHOLDER = "{cluster_data}"
ELLIPSIS = "\u2026"


@lru_cache(maxsize=None)
def load_template(path: Optional[str] = None) -> str:
    """The template text, read as bytes and decoded as UTF-8 (no newline translation, so the rendered
    prompt keeps the file's bytes). ``path`` None: the shipped DataComp template."""
    p = Path(path) if path is not None else TEMPLATE_PATH
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read the prompt template {p}: {e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"prompt template {p} is not UTF-8 ({e})") from e
    n = text.count(PLACEHOLDER)
    if n != 1:
        raise InputError(f"prompt template {p} must hold the placeholder {PLACEHOLDER} exactly once, found {n}")
    return text


@lru_cache(maxsize=1)
def _escape_re() -> Pattern[str]:
    # Computed once (about 0.1 s): the code points JSON must escape plus every line/paragraph
    # separator and format character, so the rendered sample is one visible line of plain text.
    bad: List[int] = []
    for cp in range(sys.maxunicode + 1):
        if cp < 0x20 or cp in (0x22, 0x5C, 0x7F):
            bad.append(cp)
            continue
        cat = unicodedata.category(chr(cp))
        if cat in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            bad.append(cp)
    # compress into ranges for the character class
    parts: List[str] = []
    i = 0
    while i < len(bad):
        j = i
        while j + 1 < len(bad) and bad[j + 1] == bad[j] + 1:
            j += 1
        a, b = bad[i], bad[j]
        parts.append(_cls(a) if a == b else f"{_cls(a)}-{_cls(b)}")
        i = j + 1
    return re.compile("[" + "".join(parts) + "]")


def _cls(cp: int) -> str:
    return f"\\U{cp:08x}"


_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _esc_char(m: "re.Match[str]") -> str:
    c = m.group(0)
    s = _SHORT.get(c)
    if s is not None:
        return s
    cp = ord(c)
    if cp > 0xFFFF:  # JSON writes astral code points as a UTF-16 surrogate pair
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"
    return f"\\u{cp:04x}"


def escape_sample(text: Optional[str], max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """One sample as the template shows it: a double-quoted JSON string literal on one line, cut to
    ``max_chars`` code points (plus ``…``) before escaping. ``None`` renders as ``""``."""
    if text is None:
        text = ""
    elif not isinstance(text, str):
        raise InputTypeError(f"a sample must be a str or None, got {type(text).__name__}: {text!r:.80}")
    if max_chars < 1:
        raise InputError(f"max_chars must be >= 1, got {max_chars}")
    if len(text) > max_chars:
        text = text[:max_chars] + ELLIPSIS
    return '"' + _escape_re().sub(_esc_char, text) + '"'


def _as_list(samples: Optional[Iterable[Optional[str]]], what: str) -> List[Optional[str]]:
    if samples is None:
        return []
    if isinstance(samples, (str, bytes)):
        raise InputTypeError(f"{what} must be a sequence of captions, not a single {type(samples).__name__}; "
                             f"wrap it in a list")
    return list(samples)


def _block(samples: Sequence[Optional[str]], max_chars: int) -> str:
    # The examples: "[" then one sample per line indented 4 with a comma after all but the last,
    # then "  ]"; an empty list is "[" newline "  ]" (Example 1's furthest_samples).
    if not samples:
        return "[\n  ]"
    return "[\n" + ",\n".join("    " + escape_sample(s, max_chars) for s in samples) + "\n  ]"


def render_cluster_data(
    closest: Sequence[Optional[str]],
    furthest: Optional[Sequence[Optional[str]]] = None,
    *,
    n_samples: int = DEFAULT_SAMPLES,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """The text that replaces ``{cluster_data}``: the closest samples' list and, when ``furthest`` is
    not None, the ``"furthest_samples"`` list (the first ``n_samples`` of each)."""
    if n_samples < 1:
        raise InputError(f"n_samples must be >= 1, got {n_samples}")
    c = _as_list(closest, "closest")[:n_samples]
    if not c:
        raise InputError("the cluster has no closest samples: an empty cluster cannot be judged")
    out = _block(c, max_chars)
    if furthest is not None:
        f = _as_list(furthest, "furthest")[:n_samples]
        out += '\n  "furthest_samples": ' + _block(f, max_chars)
    return out


def render_prompt(
    closest: Sequence[Optional[str]],
    furthest: Optional[Sequence[Optional[str]]] = None,
    *,
    n_samples: int = DEFAULT_SAMPLES,
    max_chars: int = DEFAULT_MAX_CHARS,
    template: Optional[str] = None,
) -> str:
    """The full judge prompt for one cluster: the shipped template with ``{cluster_data}`` filled.

    Args:
        closest: captions of the samples closest to the cluster centroid (nearest first).
        furthest: captions of the furthest samples; None leaves the ``"furthest_samples"`` part
            out, an empty list renders it empty (as the template's Example 1 does).
        n_samples: samples shown per side (the first ``n_samples``); the examples show 5.
        max_chars: captions are cut to this many code points and end with ``…``.
        template: path of another template with one ``{cluster_data}`` placeholder.

    Raises:
        InputError: an empty ``closest`` list, ``n_samples`` or ``max_chars`` below 1.
        InputTypeError: a sample that is neither str nor None.
    """
    t = load_template(None if template is None else str(template))
    data = render_cluster_data(closest, furthest, n_samples=n_samples, max_chars=max_chars)
    # one literal replacement: the inserted captions are never scanned for placeholders
    i = t.index(PLACEHOLDER)
    return t[:i] + data + t[i + len(PLACEHOLDER):]


def prompt_sha256(prompt: str) -> str:
    """Hex SHA-256 of the prompt's UTF-8 bytes (the ``prompt_sha256`` column of a judgment)."""
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
