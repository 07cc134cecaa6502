"""The multi-pattern matcher: which metadata entries does each caption contain?

``mode="metaclip"`` equals MetaCLIP's reference ``substr_matching`` byte for byte (see
docs/curate.md, "Matching semantics", and :mod:`fastcurate.kernels.reference` for the naive definition);
``mode="substring"`` is a classic Aho-Corasick that reports every overlapping occurrence.
"""

from __future__ import annotations

import mmap
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, List, Optional, Union

import numpy as np
import pyarrow as pa

from .. import _core
from ._texts import to_columns
from ..errors import FormatError, InputError, InputTypeError
from ..metadata import load_metadata
from ..io.atomic import atomic_write_bytes

__all__ = ["Matcher", "MatchResult", "SpanResult", "MatcherWarning"]

PathLike = Union[str, "os.PathLike[str]"]


class MatcherWarning(UserWarning):
    """Entries that can never match, or that repeat an earlier entry."""


class MatchResult:
    """Matched entry ids per text, as CSR arrays.

    ``ids[offsets[i]:offsets[i + 1]]`` are the ids of text ``i``, sorted and unique. The arrays
    are owned by numpy (no copy was made from the C++ result).
    """

    __slots__ = ("offsets", "ids")

    def __init__(self, offsets: np.ndarray, ids: np.ndarray) -> None:
        self.offsets: np.ndarray = offsets
        self.ids: np.ndarray = ids

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"text index {i} out of range for {n} texts")
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.ids[self.offsets[i] : self.offsets[i + 1]]

    def counts(self) -> np.ndarray:
        """Number of matched entries per text (int64)."""
        return np.diff(self.offsets)

    def to_lists(self) -> List[List[int]]:
        """The ids as plain Python lists (slow for large results; meant for small ones and tests)."""
        return [row.tolist() for row in self]

    def to_arrow(self) -> pa.LargeListArray:
        """A ``large_list<int32>`` Arrow array sharing this result's buffers (no copy)."""
        return pa.LargeListArray.from_arrays(pa.array(self.offsets), pa.array(self.ids))

    def __repr__(self) -> str:
        return f"MatchResult(texts={len(self)}, matches={len(self.ids)})"


class SpanResult:
    """Every occurrence of every pattern: for text ``i``, occurrences ``offsets[i]:offsets[i+1]``
    of ``ids`` / ``starts`` / ``ends`` (byte offsets into the text's UTF-8), ordered by end."""

    __slots__ = ("offsets", "ids", "starts", "ends")

    def __init__(self, offsets: np.ndarray, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.offsets, self.ids, self.starts, self.ends = offsets, ids, starts, ends

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> List[tuple]:
        b, e = int(self.offsets[i]), int(self.offsets[i + 1])
        return list(zip(self.ids[b:e].tolist(), self.starts[b:e].tolist(), self.ends[b:e].tolist()))

    def __repr__(self) -> str:
        return f"SpanResult(texts={len(self)}, occurrences={len(self.ids)})"


def _entries_list(entries: Any) -> List[str]:
    if isinstance(entries, (str, os.PathLike)):
        return load_metadata(entries)
    if isinstance(entries, (pa.Array, pa.ChunkedArray)):
        if entries.null_count:
            raise InputError(f"entries has {entries.null_count} null value(s); drop them with pyarrow.compute.drop_null")
        return entries.to_pylist()
    if isinstance(entries, np.ndarray):
        return entries.tolist()
    if isinstance(entries, (list, tuple)):
        return list(entries)
    raise InputTypeError(f"entries must be a list of str, a pyarrow string array or a path, not {type(entries).__name__}")


class Matcher:
    """Finds, for every text, the ids of all metadata entries it contains.

    Args:
        entries: the metadata entries: a list of str, a pyarrow string array, or a path to a
            ``metadata.json`` (JSON list) or a text file with one entry per line. The id of an
            entry is its index.
        mode: ``"metaclip"`` (MetaCLIP's ``substr_matching``, exactly: an entry matches when
            ``" " + entry + " "`` occurs in the spaced text) or ``"substring"`` (every overlapping
            occurrence of every entry, as bytes).
        case_sensitive: ``False`` compares ASCII letters case-insensitively.

    Entries that can never match in metaclip mode (a tab, CR or LF, or one of ``, . ; : ? ! ```
    glued to other characters, such as ``"u.s."``) and entries that repeat a later entry (the
    later id wins, as in MetaCLIP) are reported with a :class:`MatcherWarning`.

    Thread safety: a Matcher is immutable; ``match`` may be called from many threads at once, and
    it releases the GIL while it works.
    """

    def __init__(self, entries: Any, mode: str = "metaclip", case_sensitive: bool = True) -> None:
        if isinstance(entries, _core.Matcher):  # internal: wrap a loaded matcher
            self._m = entries
            return
        items = _entries_list(entries)
        if not items:
            raise InputError("the entry list is empty: give at least one metadata entry")
        self._m = _core.Matcher(items, mode, case_sensitive)
        rep = self._m.report
        if rep["never_match"]:
            first = items[rep["first_never_match"]]
            warnings.warn(
                f"{rep['never_match']} of {len(items)} entries can never match in metaclip mode "
                f"(e.g. entry {rep['first_never_match']}: {first!r}); an entry matches only if each of "
                "`, . ; : ? ! `` stands alone between spaces and it holds no tab, CR or LF",
                MatcherWarning,
                stacklevel=2,
            )
        if rep["shadowed"]:
            first = items[rep["first_shadowed"]]
            warnings.warn(
                f"{rep['shadowed']} entries repeat a later entry and will never be reported "
                f"(e.g. entry {rep['first_shadowed']}: {first!r}); as in MetaCLIP, the last id of a repeated entry wins",
                MatcherWarning,
                stacklevel=2,
            )

    # -- matching -------------------------------------------------------------------------------

    def match(self, texts: Any, threads: Optional[int] = None) -> MatchResult:
        """Matches every text; returns the sorted, unique entry ids per text as a :class:`MatchResult`.

        ``texts`` may be a list of str (``None`` items are nulls), a pyarrow ``string`` /
        ``large_string`` Array or ChunkedArray (read in place, no copy), any object exporting
        ``__arrow_c_array__``, or a numpy str / object array. Nulls and empty strings match
        nothing; invalid UTF-8 is matched as bytes. ``threads``: None or 0 = all cores. The result
        is identical for every thread count.
        """
        kind, payload, _ = to_columns(texts)
        offsets, ids = self._m.match(kind, payload, _threads(threads))
        return MatchResult(offsets, ids)

    def find_all(self, texts: Any, threads: Optional[int] = None) -> SpanResult:
        """Every occurrence of every entry with its byte span (``mode="substring"`` only)."""
        kind, payload, _ = to_columns(texts)
        return SpanResult(*self._m.find_all(kind, payload, _threads(threads)))

    # -- introspection --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._m)

    @property
    def mode(self) -> str:
        """``"metaclip"`` or ``"substring"``."""
        return self._m.mode

    @property
    def case_sensitive(self) -> bool:
        return self._m.case_sensitive

    @property
    def entries(self) -> List[str]:
        """The entries, in id order."""
        return self._m.entries()

    @property
    def memory_bytes(self) -> int:
        """Bytes of memory held by the automaton and the entries."""
        return self._m.memory_bytes

    def __repr__(self) -> str:
        return f"Matcher(entries={len(self)}, mode={self.mode!r}, case_sensitive={self.case_sensitive})"

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Writes the built matcher to ``path`` atomically (a temporary file, then a rename)."""
        atomic_write_bytes(path, self._m.to_bytes().data)

    @classmethod
    def load(cls, path: PathLike) -> "Matcher":
        """Loads a matcher written by :meth:`save`. The file is memory-mapped and checked (magic,
        version, checksum, every index); anything truncated, corrupted or foreign raises
        :class:`~fastcurate.FormatError`."""
        p = Path(path)
        try:
            f = open(p, "rb")
        except OSError as e:
            raise FormatError(f"cannot open matcher file {p}: {e.strerror}") from e
        with f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise FormatError(f"matcher file {p} is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                try:
                    core = _core.Matcher.from_buffer(mm)
                except FormatError as e:
                    raise FormatError(f"{p}: {e}") from None
        return cls(core)


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return 0
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool):
        raise InputTypeError(f"threads must be an int or None, got {type(threads).__name__}")
    if threads < 0:
        raise InputError(f"threads must be >= 0 (0 or None = all cores), got {threads}")
    return int(threads)
