"""Tables that let the C++ tokenizer prove ``ftfy.fix_text`` and ``html.unescape`` leave a caption alone.

open_clip cleans every caption with ``ftfy.fix_text`` and then ``html.unescape`` twice. For most
non-ASCII web captions ("café", "東京", "—") both are no-ops, yet they cost ~50 µs per caption, more
than everything else together. ``fix_text`` changes a text only if one of its steps does, and
(ftfy 6, default configuration) each step acts only on specific characters:

* ``unescape_html`` and ``html.unescape``: need an ``&`` followed by something other than
  whitespace or the end (an entity or character reference);
* ``fix_encoding``: returns the text unchanged unless ``ftfy.badness.is_bad`` is true, i.e. unless
  ``BADNESS_RE`` matches. Every alternative of that regex needs at least one character from an
  explicit non-ASCII set; the C++ side evaluates a superset of the regex (generic items such as
  ``\\s``, ``[a-z]`` or ``.`` match anything, ``^`` matches anywhere), so "no match" is exact;
* ``fix_c1_controls``, ``fix_latin_ligatures``, ``fix_character_width``, ``uncurl_quotes``,
  ``fix_line_breaks``, ``fix_surrogates``, ``remove_terminal_escapes``, ``remove_control_chars``:
  translate tables / regexes over fixed characters, listed here as "unsafe";
* NFC: the Unicode quick check. A text is NFC when every character's NFC_Quick_Check is Yes and
  the non-zero canonical combining classes never decrease; characters whose quick check is No
  or Maybe are "unsafe" (derived here from ``unicodedata``, the module ftfy normalises with).

The tables are derived at run time from the installed ftfy and unicodedata, so they follow their
versions. If ftfy's structure differs from what this analysis covers (another major version,
another set of fixers, other defaults), :func:`build` returns None and every non-ASCII caption
goes through ftfy as before. tests/test_embed_tokenizer.py checks the tables exhaustively over all
code points and with hypothesis against ftfy itself.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import FrozenSet, List, Optional, Set

import numpy as np

try:  # Python >= 3.11
    import re._constants as _sre_c  # type: ignore[import-not-found]
    import re._parser as _sre_p  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python 3.9 / 3.10
    import sre_constants as _sre_c  # type: ignore[no-redef]
    import sre_parse as _sre_p  # type: ignore[no-redef]

__all__ = ["NoopTables", "build", "unsafe_code_points"]

# What this analysis covers: ftfy 6's fixers and their defaults.
_FIXERS = {
    "unescape_html", "remove_terminal_escapes", "restore_byte_a0", "replace_lossy_sequences",
    "decode_inconsistent_utf8", "fix_c1_controls", "fix_latin_ligatures", "fix_character_width",
    "uncurl_quotes", "fix_line_breaks", "fix_surrogates", "remove_control_chars",
}
_DEFAULTS = {
    "unescape_html": "auto", "remove_terminal_escapes": True, "fix_encoding": True, "restore_byte_a0": True,
    "replace_lossy_sequences": True, "decode_inconsistent_utf8": True, "fix_c1_controls": True,
    "fix_latin_ligatures": True, "fix_character_width": True, "uncurl_quotes": True, "fix_line_breaks": True,
    "fix_surrogates": True, "remove_control_chars": True, "normalization": "NFC",
}
# The per-character fixers fix_text runs after fix_encoding, in its order.
_CHAR_FIXERS = ("fix_c1_controls", "fix_latin_ligatures", "fix_character_width", "uncurl_quotes",
                "fix_line_breaks", "fix_surrogates", "remove_terminal_escapes", "remove_control_chars")

Item = Optional[FrozenSet[int]]  # None: matches any character (a superset of the real item)


@dataclass(frozen=True)
class NoopTables:
    """Arrays for ``_core.ClipBpe.set_ftfy_tables`` (non-ASCII code points with non-default info)."""

    code_points: np.ndarray  # uint32, sorted
    unsafe: np.ndarray  # uint8: 1 = a fixer or NFC may change this character
    ccc: np.ndarray  # uint8: canonical combining class
    masks: np.ndarray  # uint64: bit k = member of BADNESS_RE's k-th explicit character set
    alt_offsets: np.ndarray  # int64: alternative a is alt_items[alt_offsets[a]:alt_offsets[a + 1]]
    alt_items: np.ndarray  # uint64: a set's bit, or 0 for "any character"


def _in_items(av: list) -> Item:
    chars: Set[int] = set()
    for op, v in av:
        if op is _sre_c.LITERAL:
            chars.add(v)
        elif op is _sre_c.RANGE:
            chars.update(range(v[0], v[1] + 1))
        else:  # NEGATE, CATEGORY (\s, \w), ...: take any character
            return None
    return frozenset(chars)


def _single(op, av) -> Item:
    if op is _sre_c.LITERAL:
        return frozenset([av])
    if op is _sre_c.IN:
        return _in_items(av)
    if op is _sre_c.ANY:
        return None
    raise ValueError(f"unsupported regex item {op}")


def badness_alternatives(pattern: "re.Pattern[str]") -> List[List[Item]]:
    """BADNESS_RE as a list of alternatives, each a sequence of character sets (None = any).

    A superset of the regex: ``^`` is dropped, ``x?`` becomes two alternatives, and any set that
    holds an ASCII character is widened to "any" (the C++ side looks up non-ASCII code points
    only). Raises ValueError on any construct this does not model.
    """
    if pattern.flags & re.IGNORECASE:
        raise ValueError("BADNESS_RE is case-insensitive")
    parsed = list(_sre_p.parse(pattern.pattern, pattern.flags))
    branches = parsed[0][1][1] if len(parsed) == 1 and parsed[0][0] is _sre_c.BRANCH else [parsed]
    out: List[List[Item]] = []
    for br in branches:
        seqs: List[List[Item]] = [[]]
        for op, av in br:
            if op is _sre_c.AT:
                continue
            if op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT):
                lo, hi, sub = av
                sub = list(sub)
                if (lo, hi) != (0, 1) or len(sub) != 1:
                    raise ValueError(f"unsupported repeat {lo}..{hi}")
                inner = _single(*sub[0])
                seqs = [s + [inner] for s in seqs] + [list(s) for s in seqs]
                continue
            item = _single(op, av)
            seqs = [s + [item] for s in seqs]
        out.extend(seqs)
    widened: List[List[Item]] = []
    for seq in out:
        w = [None if (it is None or any(c < 0x80 for c in it)) else it for it in seq]
        if all(it is None for it in w):
            raise ValueError("an alternative of BADNESS_RE has no non-ASCII character set")
        widened.append(w)
    return widened


@functools.lru_cache(maxsize=1)
def _unicode_tables() -> tuple:
    """(ccc of every code point with a non-zero class, code points whose NFC quick check is not Yes)."""
    ccc = {}
    not_yes: Set[int] = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # Hangul V and T jamo: Maybe
    combining, decomposition, normalize = unicodedata.combining, unicodedata.decomposition, unicodedata.normalize
    for cp in range(0x80, 0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        k = combining(ch)
        if k:
            ccc[cp] = k
        d = decomposition(ch)
        if d and d[0] != "<":  # a canonical decomposition
            if normalize("NFC", ch) != ch:
                not_yes.add(cp)  # Quick check No: singleton, excluded, or non-starter decomposition
            else:
                parts = d.split()
                if len(parts) == 2:
                    not_yes.add(int(parts[1], 16))  # may compose with the character before: Maybe
    return ccc, frozenset(not_yes)


def unsafe_code_points() -> Set[int]:
    """Non-ASCII code points that one of ftfy's character fixers or NFC may change."""
    from ftfy import chardata

    unsafe: Set[int] = set(range(0x80, 0xA0))  # C1 controls (fix_c1_controls; U+0085 also a line break)
    unsafe.update(k for k in chardata.LIGATURES if k >= 0x80)
    unsafe.update(k for k in chardata.WIDTH_MAP if k >= 0x80)
    unsafe.update(k for k in chardata.CONTROL_CHARS if k >= 0x80)
    for rx in (chardata.SINGLE_QUOTE_RE, chardata.DOUBLE_QUOTE_RE, chardata.C1_CONTROL_RE):
        for op, av in _sre_p.parse(rx.pattern, rx.flags):
            item = _single(op, av)
            if item is None:
                raise ValueError(f"unexpected pattern {rx.pattern!r}")
            unsafe.update(c for c in item if c >= 0x80)
    unsafe.update((0x2028, 0x2029, 0x85))  # fix_line_breaks (\r is an ASCII control)
    unsafe.update(_unicode_tables()[1])
    return unsafe


def _structure_ok() -> bool:
    try:
        import ftfy
        from ftfy import badness  # noqa: F401
    except ImportError:
        return False
    if not str(getattr(ftfy, "__version__", "")).startswith("6."):
        return False
    if set(getattr(ftfy, "FIXERS", {})) != _FIXERS:
        return False
    defaults = ftfy.TextFixerConfig()._asdict()
    return all(defaults.get(k) == v for k, v in _DEFAULTS.items())


def _cache_path() -> Optional[Path]:
    """Where the tables of this ftfy, this Unicode database and this analysis are cached: building
    them walks all 1.1M code points (~0.2 s of every process that tokenizes). The key holds
    everything they are a function of, so a stale file is never read."""
    import hashlib

    import ftfy
    from ftfy import badness

    h = hashlib.sha256()
    for part in (Path(__file__).read_bytes(), str(ftfy.__version__).encode(), unicodedata.unidata_version.encode(),
                 badness.BADNESS_RE.pattern.encode()):
        h.update(part)
        h.update(b"\0")
    base = Path(os.environ.get("FASTCURATE_CACHE") or Path.home() / ".cache" / "fastcurate")
    return base / f"ftfy_noop_{h.hexdigest()[:24]}.npz"


@functools.lru_cache(maxsize=1)
def build() -> Optional[NoopTables]:
    """The tables, or None when the installed ftfy is not one this analysis covers (cached on disk,
    see :func:`_cache_path`)."""
    if not _structure_ok():
        return None
    try:
        path = _cache_path()
    except OSError:
        path = None
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                return NoopTables(**{f.name: z[f.name] for f in fields(NoopTables)})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable or partial: rebuild and rewrite
    t = _build()
    if t is not None and path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.savez(fh, **{f.name: getattr(t, f.name) for f in fields(NoopTables)})
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home: build every time
    return t


def _build() -> Optional[NoopTables]:
    from ftfy import badness

    try:
        alts = badness_alternatives(badness.BADNESS_RE)
    except ValueError:
        return None
    sets: List[FrozenSet[int]] = []
    for seq in alts:
        for it in seq:
            if it is not None and it not in sets:
                sets.append(it)
    if len(sets) > 64:
        return None
    bit = {s: np.uint64(1) << np.uint64(k) for k, s in enumerate(sets)}
    ccc, _ = _unicode_tables()
    unsafe = unsafe_code_points()
    masks: dict = {}
    for s, b in bit.items():
        for c in s:
            masks[c] = masks.get(c, np.uint64(0)) | b
    cps = np.array(sorted(set(ccc) | unsafe | set(masks)), dtype=np.uint32)
    cl = cps.tolist()
    offsets = np.cumsum([0] + [len(seq) for seq in alts]).astype(np.int64)
    items = np.array([0 if it is None else int(bit[it]) for seq in alts for it in seq], dtype=np.uint64)
    return NoopTables(
        code_points=cps,
        unsafe=np.array([1 if c in unsafe else 0 for c in cl], dtype=np.uint8),
        ccc=np.array([ccc.get(c, 0) for c in cl], dtype=np.uint8),
        masks=np.array([int(masks.get(c, 0)) for c in cl], dtype=np.uint64),
        alt_offsets=offsets,
        alt_items=items,
    )
