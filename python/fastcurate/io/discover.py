"""Input discovery: files, directories and globs become an ordered list of shards.

One rule for every stage (docs/runner.md): a directory that holds a fastcurate stage output
(``stats.json`` or ``_work/manifest.json`` beside ``part-*.parquet``) contributes only its
``part-*.parquet`` files, so a stage's output directory is a valid input of the next stage; any
other directory is searched recursively for shard files. Names starting with ``.`` or ``_`` are
skipped (temp files, ``_work/``). The order is by resolved path, so it does not depend on the order
the user lists inputs or the file system returns them; a shard's position in that order is its
index, which names its output part (``part-00003.parquet``).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set, Union

from ..errors import InputError

__all__ = ["ShardRef", "discover_shards", "shard_format", "SHARD_SUFFIXES", "is_stage_output"]

PathLike = Union[str, "os.PathLike[str]"]

# suffix -> format. Compressed CSV/JSONL are read by pyarrow's streaming readers transparently.
SHARD_SUFFIXES = {
    ".parquet": "parquet",
    ".tar": "webdataset",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "tsv",
    ".tsv.gz": "tsv",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
}


@dataclass(frozen=True)
class ShardRef:
    """One input shard: its position in the run's sorted input list, its path and its format."""

    index: int
    path: Path
    format: str

    @property
    def part_name(self) -> str:
        """The name of this shard's output part and drop file."""
        return f"part-{self.index:05d}.parquet"

    def __str__(self) -> str:
        return str(self.path)


def shard_format(path: Path) -> Optional[str]:
    """The shard format of ``path`` by its suffix, or None when it is not a shard file."""
    name = path.name.lower()
    for suffix, fmt in SHARD_SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def is_stage_output(d: Path) -> bool:
    """True when ``d`` is the output directory of a fastcurate stage (finished or not)."""
    return (d / "stats.json").is_file() or (d / "_work" / "manifest.json").is_file()


def _hidden(p: Path, root: Path) -> bool:
    rel = p.relative_to(root).parts
    return any(part.startswith((".", "_")) for part in rel)


def _from_dir(d: Path) -> List[Path]:
    if is_stage_output(d):
        hits = sorted(q for q in d.glob("part-*.parquet") if q.is_file())
        if not hits and not (d / "stats.json").is_file():
            raise InputError(f"{d}: holds an unfinished fastcurate run (no stats.json); finish it first "
                             "(rerun its command) before using it as an input")
        return hits
    hits = [q for q in d.rglob("*") if q.is_file() and shard_format(q) and not _hidden(q, d)]
    if not hits:
        raise InputError(f"{d}: directory holds no shard files (*.parquet, *.tar, *.csv, *.tsv, *.jsonl)")
    return hits


def discover_shards(inputs: Union[PathLike, Sequence[PathLike]], exclude: Iterable[Path] = ()) -> List[ShardRef]:
    """Expand files, directories (recursively) and globs into the run's ordered shard list.

    Files named explicitly must have a known suffix (or the error says which are known).
    ``exclude``: directories whose files are never inputs (the run's own output directory, so an
    output inside an input directory does not feed its own shards back in).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    excl = [Path(e).resolve() for e in exclude]
    found: Set[Path] = set()
    for item in inputs:
        s = os.fspath(item)
        p = Path(s)
        if p.is_dir():
            hits = _from_dir(p)
        elif p.is_file():
            if shard_format(p) is None:
                raise InputError(f"{p}: not a known shard format (by its suffix); fastcurate reads "
                                 f"{', '.join(sorted(SHARD_SUFFIXES))}; rename or convert it")
            hits = [p]
        elif glob.has_magic(s):
            hits = [Path(q) for q in glob.glob(s, recursive=True) if Path(q).is_file() and shard_format(Path(q))]
            if not hits:
                raise InputError(f"{s}: glob matches no shard files")
        else:
            raise InputError(f"{s}: no such file or directory")
        found.update(q.resolve() for q in hits)
    files = sorted(f for f in found if not any(e == f or e in f.parents for e in excl))
    if not files:
        if found:
            raise InputError("every input file lies inside the output directory; give another --out")
        raise InputError("no input files given")
    return [ShardRef(i, f, shard_format(f) or "parquet") for i, f in enumerate(files)]
