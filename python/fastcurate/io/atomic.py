"""Input discovery and atomic output helpers for the curation pipeline."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

if TYPE_CHECKING:
    import pyarrow as pa

from ..errors import InputError

__all__ = ["discover_inputs", "pick_column", "atomic_write_bytes", "atomic_write_table", "atomic_path"]

PathLike = Union[str, "os.PathLike[str]"]


def discover_inputs(inputs: Sequence[PathLike]) -> List[Path]:
    """Expand files, directories (recursively, ``*.parquet``) and globs into a sorted, de-duplicated
    list of Parquet files. The order is by resolved path so that it does not depend on the order the
    user lists them or the file system returns them."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found = set()
    for item in inputs:
        s = os.fspath(item)
        p = Path(s)
        if p.is_dir():
            hits = [q for q in p.rglob("*.parquet") if q.is_file() and not q.name.startswith((".", "_"))]
            if not hits:
                raise InputError(f"{p}: directory holds no *.parquet files")
        elif p.is_file():
            hits = [p]
        elif glob.has_magic(s):
            hits = [Path(q) for q in glob.glob(s, recursive=True) if Path(q).is_file()]
            if not hits:
                raise InputError(f"{s}: glob matches no files")
        else:
            raise InputError(f"{s}: no such file or directory")
        found.update(q.resolve() for q in hits)
    if not found:
        raise InputError("no input files given")
    return sorted(found)


def pick_column(names: Sequence[str], given: Optional[str], candidates: Sequence[str], what: str, path: PathLike,
                flag: str, required: bool = True) -> Optional[str]:
    """The column to read: ``given`` if the file has it, else the first of ``candidates`` present.
    Errors name the file, the columns it has and the flag that picks one; when nothing fits and
    ``required`` is false, returns None."""
    names = list(names)
    if given is not None:
        if given not in names:
            raise InputError(f"{path}: no {what} column {given!r}; the columns are {names}; pass {flag} NAME")
        return given
    for c in candidates:
        if c in names:
            return c
    if not required:
        return None
    raise InputError(
        f"{path}: none of the usual {what} columns {list(candidates)} is present; the columns are {names}; "
        f"pass {flag} NAME"
    )


def atomic_path(path: Path) -> Path:
    """A temp path in the same directory (same file system, so os.replace is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the final file the usual permissions (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def atomic_write_bytes(path: PathLike, data: Union[bytes, memoryview]) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one:
    write a temp file beside it, fsync, then os.replace."""
    path = Path(path)
    tmp = atomic_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_table(table: "pa.Table", path: PathLike, **kwargs: Any) -> None:
    """Write a Parquet file atomically (temp file beside it, fsync, os.replace)."""
    import pyarrow.parquet as pq

    path = Path(path)
    tmp = atomic_path(path)
    try:
        pq.write_table(table, tmp, **kwargs)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
