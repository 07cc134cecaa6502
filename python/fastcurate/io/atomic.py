"""Atomic writes: readers see either the old file or the whole new one, never a partial file."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Iterator, List, Optional, Union

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = ["atomic_path", "atomic_target", "publish", "deferred_fsync", "fsync_files", "atomic_open", "atomic_write_bytes", "atomic_write_table", "atomic_write_json", "atomic_write_npy", "read_json",
           "npy_bytes", "remove_stale_temps"]

PathLike = Union[str, "os.PathLike[str]"]

# The files this thread's atomic writes published without waiting for fsync, inside
# ``deferred_fsync``; None (the default, and in every new thread) means fsync before the rename.
_DEFERRED: "ContextVar[Optional[List[Path]]]" = ContextVar("fastcurate_deferred_fsync", default=None)


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


@contextmanager
def atomic_target(path: PathLike) -> Iterator[Path]:
    """A temp path to write ``path`` through, beside it: when the ``with`` block ends normally the
    temp file is fsynced and renamed into place; when it raises, the temp file is removed. Readers
    see either the old file or the whole new one."""
    path = Path(path)
    tmp = atomic_path(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish(tmp: PathLike, path: PathLike) -> None:
    """Rename the finished temp file ``tmp`` to ``path``, fsyncing it first; inside
    :func:`deferred_fsync`, rename at once and leave the fsync to the block's owner."""
    pending = _DEFERRED.get()
    if pending is None:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if pending is not None:
        pending.append(Path(path))


@contextmanager
def deferred_fsync() -> Iterator[List[Path]]:
    """Inside the block, this thread's atomic writes rename their file into place without waiting
    for it to reach the disk, and list it in the yielded list. Readers still see whole files only
    (the rename is atomic, the data is in the page cache); only durability is deferred. The owner
    must :func:`fsync_files` the list before it records the files as finished (a shard's marker),
    so that after a machine crash a marker still implies its files: the local runner uses this to
    flush one shard's outputs while the next shard is computed (docs/runner.md)."""
    files: List[Path] = []
    token = _DEFERRED.set(files)
    try:
        yield files
    finally:
        _DEFERRED.reset(token)


def fsync_files(paths: Iterable[PathLike]) -> None:
    """fsync each file (opened read-only: Linux flushes the file's data whatever the open mode)."""
    for p in paths:
        with open(p, "rb") as f:
            os.fsync(f.fileno())


@contextmanager
def atomic_open(path: PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through (:func:`atomic_target`)."""
    with atomic_target(path) as tmp, open(tmp, "wb") as f:
        yield f


def atomic_write_bytes(path: PathLike, data: Union[bytes, memoryview]) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_copy(src: PathLike, dst: PathLike) -> None:
    """Copy ``src`` to ``dst`` atomically (a stage's work file published into its output)."""
    with atomic_target(dst) as tmp:
        shutil.copyfile(src, tmp)


def atomic_write_table(table: "pa.Table", path: PathLike, **kwargs: Any) -> None:
    """Write a Parquet file atomically (:func:`atomic_target`)."""
    import pyarrow.parquet as pq

    with atomic_target(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """JSON with sorted keys and a trailing newline (the same object gives the same bytes)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


def read_json(path: PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def npy_bytes(a: "np.ndarray") -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def atomic_write_npy(path: PathLike, a: "np.ndarray") -> None:
    """``np.save`` to ``path`` atomically, straight from the array's buffer (no in-memory copy of
    the file first: the stages' work files are tens of MB per shard)."""
    import numpy as np

    with atomic_open(path) as f:
        np.save(f, a, allow_pickle=False)


def remove_stale_temps(*dirs: Path) -> int:
    """Remove the temp files (``.NAME.XXXX.tmp``, see :func:`atomic_path`) a killed run left in
    ``dirs`` (not recursive): they were never renamed into place, so they are garbage."""
    n = 0
    for d in dirs:
        if d.is_dir():
            for f in d.glob(".*.tmp"):
                f.unlink(missing_ok=True)
                n += 1
    return n
