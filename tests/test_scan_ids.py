"""A scan that uses no uid (Stage.scan_uses_uid = False) skips reading the id column where the
shard's footer proves no id is null, and gives the same result as reading it (docs/runner.md)."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastcurate.errors import FastcurateError
from fastcurate.io.discover import ShardRef
from fastcurate.io.readers import ParquetReader, open_shard
from fastcurate.runner.local import run_stage
from fastcurate.runner.stage import Batch, Context, Result, Stage
from fastcurate.stages.curate.stage import curate

WORDS = ["cat", "dog", "a photo of", "red", "car", "the", "tree", "zzz", "on", "blue sky"]
ENTRIES = ["cat", "dog", "red", "car", "tree", "blue sky"]


def _table(n: int, null_ids: bool = False, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    text = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 6)))) if i % 53 else None for i in range(n)]
    uid = [f"{int(rng.integers(0, 2**63)):016x}{int(rng.integers(0, 2**63)):016x}" for _ in range(n)]
    if null_ids:
        uid = [None if i % 37 == 3 else u for i, u in enumerate(uid)]
    return pa.table({"uid": pa.array(uid, pa.string()), "TEXT": pa.array(text, pa.string())})


class _Spy(Stage):
    """Records whether each scan batch came with its uids."""

    name = "spy"
    needs = ("text",)
    scans = True
    scan_uses_uid = False
    seen: List[bool] = []
    touch_uid = False

    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        n = 0
        for b in batches:
            type(self).seen.append(b.has_uid)
            if self.touch_uid:
                b.uid
            n += len(b)
        return {"n": n}

    def reduce(self, ctx: Context, summaries: List[Any]) -> Dict[str, Any]:
        return {}

    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        for _ in batches:
            yield Result()


@pytest.mark.parametrize("statistics,null_ids,expect_uid", [(True, False, False), (False, False, True), (True, True, True)])
def test_scan_reads_ids_only_when_the_footer_cannot_rule_out_a_null(tmp_path, statistics, null_ids, expect_uid):
    f = tmp_path / "s.parquet"
    pq.write_table(_table(500, null_ids), f, row_group_size=128, write_statistics=statistics)
    assert ParquetReader(ShardRef(0, f, "parquet"), 100).never_null("uid") is (statistics and not null_ids)
    _Spy.seen = []
    s = run_stage(_Spy(), [f], tmp_path / "out", progress=False, batch_size=100)
    assert _Spy.seen and set(_Spy.seen) == {expect_uid}
    assert s["rows_in"] == 500 and s["rows_dropped"]["null_id"] == (14 if null_ids else 0)


def test_a_scan_that_said_it_uses_no_uid_cannot_read_one(tmp_path):
    f = tmp_path / "s.parquet"
    pq.write_table(_table(50), f)
    stage = _Spy()
    stage.touch_uid = True
    with pytest.raises(FastcurateError, match="scan_uses_uid"):
        run_stage(stage, [f], tmp_path / "out", progress=False)


def test_other_formats_and_no_id_column_prove_nothing(tmp_path):
    p = tmp_path / "pool.tsv"
    p.write_text("a cat\thttp://x/1\n")
    assert not open_shard(ShardRef(0, p, "tsv"), 10).never_null("url")
    f = tmp_path / "s.parquet"
    pq.write_table(pa.table({"TEXT": ["a"], "l": pa.array([[1]], pa.list_(pa.int64()))}), f)
    r = ParquetReader(ShardRef(0, f, "parquet"), 10)
    assert not r.never_null("missing") and not r.never_null("l")


@pytest.mark.parametrize("output", ["rows", "index"])
def test_curate_same_rows_with_and_without_footer_statistics(tmp_path, output):
    t = _table(3000)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    pq.write_table(t, a / "s.parquet", row_group_size=700)  # the scan skips the ids
    pq.write_table(t, b / "s.parquet", row_group_size=700, write_statistics=False)  # the scan reads them
    sa = curate([a / "s.parquet"], tmp_path / "oa", metadata=ENTRIES, t=40, progress=False, plot=False,
                output=output, batch_size=500)
    sb = curate([b / "s.parquet"], tmp_path / "ob", metadata=ENTRIES, t=40, progress=False, plot=False,
                output=output, batch_size=500)
    assert sa["rows_kept"] == sb["rows_kept"] > 0 and sa["rows_dropped"] == sb["rows_dropped"]
    ka = pq.read_table(tmp_path / "oa" / "part-00000.parquet")
    kb = pq.read_table(tmp_path / "ob" / "part-00000.parquet")
    assert ka.equals(kb)


def test_curate_fails_loudly_when_statistics_hide_a_null_id(tmp_path, monkeypatch):
    # A footer that counts no null where there is one would pair rows with other rows' matches in
    # the per-shard pass; the stage checks that it saw every row the scan counted.
    f = tmp_path / "s.parquet"
    pq.write_table(_table(1000, null_ids=True), f, row_group_size=300)
    monkeypatch.setattr(ParquetReader, "never_null", lambda self, column: True)
    with pytest.raises(FastcurateError, match="statistics count no null id"):
        curate([f], tmp_path / "o", metadata=ENTRIES, t=40, progress=False, plot=False, batch_size=200)
