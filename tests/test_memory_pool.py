"""fastcurate.io.memory_pool: a run uses jemalloc for Arrow's buffers unless the user chose a pool."""

import pyarrow as pa
import pytest

from fastcurate.io.memory_pool import jemalloc_pool, prefer_jemalloc


def _has_jemalloc() -> bool:
    return jemalloc_pool() is not None


@pytest.fixture
def restore_pool(monkeypatch):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    before = pa.default_memory_pool()
    yield
    pa.set_memory_pool(before)


@pytest.mark.skipif(not _has_jemalloc(), reason="this pyarrow is built without jemalloc")
def test_switches_pyarrows_default_mimalloc_to_jemalloc(restore_pool):
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    assert prefer_jemalloc() == "jemalloc"
    assert pa.default_memory_pool().backend_name == "jemalloc"
    assert pa.array(["a", "bc"]).buffers()[2] is not None  # allocations work from the new pool


def test_a_pool_named_in_the_environment_is_kept(restore_pool, monkeypatch):
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    assert prefer_jemalloc() == "mimalloc"
    assert pa.default_memory_pool().backend_name == "mimalloc"


def test_a_pool_set_by_the_caller_is_kept(restore_pool):
    pa.set_memory_pool(pa.system_memory_pool())
    assert prefer_jemalloc() == "system"
    assert pa.default_memory_pool().backend_name == "system"


def test_a_run_records_its_pool(tmp_path, restore_pool):
    import json

    import pyarrow.parquet as pq

    from fastcurate.stages.curate.stage import curate

    pq.write_table(pa.table({"uid": ["a", "b"], "TEXT": ["a cat", "a dog"]}), tmp_path / "s.parquet")
    curate([tmp_path / "s.parquet"], tmp_path / "out", t=1.0, progress=False, plot=False)
    timings = json.loads((tmp_path / "out" / "timings.json").read_text())
    assert timings["arrow_memory_pool"] == pa.default_memory_pool().backend_name
    if _has_jemalloc():
        assert timings["arrow_memory_pool"] == "jemalloc"


def test_a_pyarrow_without_jemalloc_keeps_its_default(restore_pool, monkeypatch):
    pa.set_memory_pool(pa.mimalloc_memory_pool())

    def unavailable():
        raise pa.ArrowNotImplementedError("built without jemalloc")

    monkeypatch.setattr(pa, "jemalloc_memory_pool", unavailable)
    assert prefer_jemalloc() == "mimalloc"
    assert pa.default_memory_pool().backend_name == "mimalloc"
