"""Line numbers of the keys and tables of a TOML document.

``tomllib`` parses TOML but keeps no positions, and a pipeline error must name the line to fix.
:func:`key_lines` walks the text of a document that ``tomllib`` already accepted and records the
line of every table header and every key, under the same path ``tomllib`` gives the value:
``("pipeline", "out")``, ``("stage", 2)`` for the third ``[[stage]]`` header, ``("stage", 2, "t")``,
``("stage", 2, "columns", "text")`` for a key inside an inline table or a ``[stage.columns]``
sub-table. It understands every TOML 1.0 construct that can hide a ``key =`` or a bracket: basic,
literal and multi-line strings, comments, nested arrays and inline tables, dotted and quoted keys.
Since it only runs on valid TOML, it never has to report a syntax error itself.
"""

from __future__ import annotations

from typing import Dict, List, Tuple, Union

__all__ = ["key_lines", "Path"]

Path = Tuple[Union[str, int], ...]

_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    def __init__(self, text: str):
        self.s = text
        self.i = 0
        self.line = 1
        self.out: Dict[Path, int] = {}
        self.arrays: Dict[Path, int] = {}  # array-of-tables path -> index of its last element

    # ---- low level
    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def adv(self, k: int = 1) -> None:
        for _ in range(k):
            if self.i < len(self.s):
                if self.s[self.i] == "\n":
                    self.line += 1
                self.i += 1

    def skip_ws(self, newlines: bool) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.adv()
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.adv()
            else:
                return

    # ---- strings and keys
    def string(self) -> str:
        """Consume a string of any of the four kinds; return its (approximately unescaped) value."""
        q = self.peek()
        if self.s.startswith(q * 3, self.i):
            self.adv(3)
            start = self.i
            while self.i < len(self.s):
                if q == '"' and self.peek() == "\\":
                    self.adv(2)
                    continue
                if self.s.startswith(q * 3, self.i):
                    # a closing delimiter may be followed by up to two more quotes that belong to the text
                    k = 3
                    while self.peek(k) == q and k < 5:
                        k += 1
                    val = self.s[start:self.i + k - 3]
                    self.adv(k)
                    return val
                self.adv()
            return self.s[start:]
        self.adv()
        buf: List[str] = []
        while self.i < len(self.s) and self.peek() != q:
            if q == '"' and self.peek() == "\\":
                nxt = self.peek(1)
                buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, nxt))
                self.adv(2)
                continue
            buf.append(self.peek())
            self.adv()
        self.adv()
        return "".join(buf)

    def key(self) -> Tuple[Tuple[str, ...], int]:
        """A (dotted) key; returns its parts and the line it starts on."""
        line = self.line
        parts: List[str] = []
        while True:
            self.skip_ws(False)
            c = self.peek()
            if c in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.i
                while self.peek() in _BARE and self.peek():
                    self.adv()
                parts.append(self.s[start:self.i])
            self.skip_ws(False)
            if self.peek() == ".":
                self.adv()
                continue
            return tuple(parts), line

    # ---- values
    def value(self, path: Path) -> None:
        self.skip_ws(False)
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.adv()
            k = 0
            while True:
                self.skip_ws(True)
                if self.peek() == "]" or not self.peek():
                    self.adv()
                    return
                self.record(path + (k,), self.line)
                self.value(path + (k,))
                k += 1
                self.skip_ws(True)
                if self.peek() == ",":
                    self.adv()
        elif c == "{":
            self.adv()
            while True:
                self.skip_ws(True)
                if self.peek() == "}" or not self.peek():
                    self.adv()
                    return
                parts, line = self.key()
                self.record(path + parts, line)
                self.skip_ws(False)
                self.adv()  # '='
                self.value(path + parts)
                self.skip_ws(True)
                if self.peek() == ",":
                    self.adv()
        else:  # numbers, booleans, dates: up to a delimiter
            while self.peek() and self.peek() not in ",]}\n#":
                self.adv()

    def record(self, path: Path, line: int) -> None:
        # a dotted key also defines its parents: they point at the first line that does
        for k in range(1, len(path) + 1):
            self.out.setdefault(path[:k], line)
        self.out[path] = line

    # ---- document
    def run(self) -> Dict[Path, int]:
        table: Path = ()
        while True:
            self.skip_ws(True)
            if self.i >= len(self.s):
                return self.out
            if self.peek() == "[":
                line = self.line
                is_array = self.peek(1) == "["
                self.adv(2 if is_array else 1)
                parts, _ = self.key()
                self.skip_ws(False)
                self.adv(2 if is_array else 1)
                table = self._resolve(parts, is_array)
                self.record(table, line)
            else:
                parts, line = self.key()
                self.record(table + parts, line)
                self.skip_ws(False)
                self.adv()  # '='
                self.value(table + parts)

    def _resolve(self, parts: Tuple[str, ...], is_array: bool) -> Path:
        """A header's path, with the current index of every array of tables it passes through
        (``[stage.columns]`` after the third ``[[stage]]`` is ``("stage", 2, "columns")``); for
        ``[[x]]`` a new element of ``x``."""
        out: List[Union[str, int]] = []
        for k, p in enumerate(parts):
            out.append(p)
            if tuple(out) in self.arrays and not (is_array and k == len(parts) - 1):
                out.append(self.arrays[tuple(out)])
        if is_array:
            idx = self.arrays.get(tuple(out), -1) + 1
            self.arrays[tuple(out)] = idx
            out.append(idx)
        return tuple(out)


def key_lines(text: str) -> Dict[Path, int]:
    """Map every table and key path of the TOML ``text`` to its 1-based line (see the module
    docstring for the paths). Call only on text that parses."""
    return _Scanner(text).run()
