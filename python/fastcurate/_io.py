"""Atomic file output: write to a temporary file beside the target, fsync, then rename, so that a
reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["write_bytes_atomic", "write_table_atomic"]


def _tmp_beside(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    return tmp


def _commit(tmp: str, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_bytes_atomic(data: Union[bytes, memoryview], path: Union[str, Path]) -> None:
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        _commit(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def write_table_atomic(table: pa.Table, path: Union[str, Path], **kwargs) -> None:
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        pq.write_table(table, tmp, **kwargs)
        _commit(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass
