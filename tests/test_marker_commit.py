"""Deferred fsync and background markers (runner/commit.py): a shard's marker is written only
after every file the shard wrote was fsynced, whatever the order in which the threads run, and a
failed fsync fails the run without a marker."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import List

import numpy as np
import pytest

import fastcurate.io.atomic as atomic
import fastcurate.runner.commit as commit
from contract_cases import ENTRIES, caption_table, write_layout
from fastcurate.io.atomic import atomic_write_bytes, atomic_write_npy, deferred_fsync, fsync_files
from fastcurate.io.writer import AtomicParquetWriter
from fastcurate.runner.commit import MarkerCommitter
from fastcurate.runner.local import run_stage
from fastcurate.stages.curate.stage import CurateStage


@pytest.fixture
def fsynced(monkeypatch) -> List[str]:
    """The paths fsynced, in order (by inode: an fsync names an fd, not a path)."""
    done: List[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        done.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    return done


def test_atomic_write_fsyncs_before_the_rename_by_default(tmp_path, fsynced):
    atomic_write_bytes(tmp_path / "a.bin", b"abc")
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert len(fsynced) == 1 and Path(fsynced[0]).name.startswith(".a.bin.")  # the temp file, before its rename


def test_deferred_fsync_publishes_whole_files_and_lists_them(tmp_path, fsynced):
    import pyarrow as pa

    with deferred_fsync() as files:
        atomic_write_npy(tmp_path / "x.npy", np.arange(5))
        w = AtomicParquetWriter(tmp_path / "p.parquet", pa.schema([("a", pa.int64())]))
        w.write(pa.table({"a": [1, 2]}))
        w.commit()
        # published at once, whole, but nothing fsynced yet
        assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2, 3, 4]
        assert fsynced == []
    assert files == [tmp_path / "x.npy", tmp_path / "p.parquet"]
    atomic_write_bytes(tmp_path / "after.bin", b"z")  # outside the block: in line again
    assert len(fsynced) == 1
    fsync_files(files)
    assert fsynced[1:] == [str(tmp_path / "x.npy"), str(tmp_path / "p.parquet")]


def test_deferred_fsync_is_per_thread(tmp_path, fsynced):
    with deferred_fsync() as files:
        t = threading.Thread(target=atomic_write_bytes, args=(tmp_path / "other.bin", b"o"))
        t.start()
        t.join()
    assert files == [] and len(fsynced) == 1  # the other thread fsynced in line


def test_committer_writes_the_marker_after_the_files_are_fsynced(tmp_path, fsynced):
    c = MarkerCommitter(max_pending=1)
    files = []
    for i in range(3):
        with deferred_fsync() as f:
            atomic_write_bytes(tmp_path / f"d{i}.bin", b"x" * 100)
        files += f
        c.submit(f, tmp_path / f"m{i}.json", {"i": i})
    c.close()
    for i in range(3):
        assert json.loads((tmp_path / f"m{i}.json").read_text()) == {"i": i}
        data_at = fsynced.index(str(tmp_path / f"d{i}.bin"))
        marker_at = next(k for k, p in enumerate(fsynced) if Path(p).name.startswith(f".m{i}.json."))
        assert data_at < marker_at  # the marker's own fsync (before its rename) comes after its data's


def test_committer_error_reaches_the_caller_and_leaves_no_marker(tmp_path, monkeypatch):
    def fail(paths):
        raise OSError(5, "Input/output error (simulated)")

    monkeypatch.setattr(commit, "fsync_files", fail)
    c = MarkerCommitter()
    c.submit([tmp_path / "nothing"], tmp_path / "m.json", {"x": 1})
    with pytest.raises(OSError, match="simulated"):
        c.drain()
    c.close()
    assert not (tmp_path / "m.json").exists()


def test_run_whose_fsync_fails_stops_without_that_marker_and_resumes(tmp_path, monkeypatch):
    src = write_layout(caption_table(400), tmp_path / "in", 3, seed=0)
    ref = run_stage(CurateStage(ENTRIES, t=12), [src], tmp_path / "ref", progress=False)
    real = commit.fsync_files
    calls = {"n": 0}

    def flaky(paths):
        calls["n"] += 1
        if calls["n"] == 5:  # the second shard's done marker (3 scan markers come first)
            raise OSError(28, "No space left on device (simulated)")
        real(paths)

    monkeypatch.setattr(commit, "fsync_files", flaky)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="simulated"):
        run_stage(CurateStage(ENTRIES, t=12), [src], out, progress=False)
    done = sorted(p.name for p in (out / "_work" / "done").glob("*.json"))
    assert "00001.json" not in done and "00000.json" in done
    monkeypatch.setattr(commit, "fsync_files", real)
    logs: List[str] = []
    s = run_stage(CurateStage(ENTRIES, t=12), [src], out, progress=False, log=logs.append)
    assert any("resuming" in m for m in logs), logs
    assert s == ref
    for f in sorted((tmp_path / "ref").glob("part-*.parquet")):
        assert (out / f.name).read_bytes() == f.read_bytes()
