"""Opening the next shard ahead (runner/lookahead.py): the same batches in the same order, and an
error of the shard opened ahead is that shard's, raised at its turn."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_cases import ENTRIES, caption_table, write_layout
from fastcurate.errors import FormatError
from fastcurate.io.discover import ShardRef
from fastcurate.runner.lookahead import Lookahead
from fastcurate.runner.shard import open_for
from fastcurate.stages.curate.stage import CurateStage, curate


def _shards(d: Path):
    return [ShardRef(i, p, "parquet") for i, p in enumerate(sorted(d.glob("*.parquet")))]


def _rows(op) -> pa.Table:
    return pa.Table.from_batches(list(op.raw))


def test_lookahead_gives_the_same_batches_in_order(tmp_path):
    src = write_layout(caption_table(900), tmp_path / "in", 4, seed=1)
    shards = _shards(src)
    stage = CurateStage(ENTRIES)
    ahead = Lookahead("scan", stage, {}, 50, shards)
    try:
        for s in shards:
            got = _rows(ahead.open(s))
            want = _rows(open_for("scan", stage, s, {}, 50))
            assert got.equals(want) and got.num_rows == pq.ParquetFile(s.path).metadata.num_rows
            if s is not shards[-1]:
                assert ahead._pending is not None and ahead._pending[0] == s.index + 1  # opened ahead
    finally:
        ahead.close()


def test_a_shard_not_read_to_its_end_opens_the_next_in_line(tmp_path):
    src = write_layout(caption_table(400), tmp_path / "in", 2, seed=1)
    shards = _shards(src)
    ahead = Lookahead("scan", CurateStage(ENTRIES), {}, 50, shards)
    try:
        op = ahead.open(shards[0])
        next(op.raw)
        op.close()
        assert ahead._pending is None
        assert _rows(ahead.open(shards[1])).num_rows == pq.ParquetFile(shards[1].path).metadata.num_rows
    finally:
        ahead.close()


def _damage_data_pages(path: Path) -> None:
    """Overwrite bytes in the middle of the file (column data), keeping the footer readable."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid:mid + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def test_errors_of_a_shard_opened_ahead_are_its_own(tmp_path):
    src = write_layout(caption_table(900), tmp_path / "in", 3, seed=2)
    shards = _shards(src)
    bad = shards[1].path
    _damage_data_pages(bad)
    ahead = Lookahead("scan", CurateStage(ENTRIES), {}, 100, shards)
    try:
        _rows(ahead.open(shards[0]))  # fine, and opens shard 1 ahead, whose read fails
        op = ahead.open(shards[1])  # its footer is fine: the error comes from its batches
        with pytest.raises(FormatError, match=bad.name):
            _rows(op)
        assert _rows(ahead.open(shards[2])).num_rows > 0  # opened in line after the failure
    finally:
        ahead.close()
    # the same through a run: the damaged shard is the one skipped and recorded
    st = curate([src], tmp_path / "out", metadata=ENTRIES, t=12, on_error="skip", progress=False)
    assert [Path(b["file"]).name for b in st["bad_shards"]] == [bad.name]
    assert st["rows_in"] == st["rows_kept"] + sum(st["rows_dropped"].values())


def test_prefetch_closed_early_never_hangs():
    """A consumer that stops while the producer is blocked on a full queue (after its last item,
    on the end marker, or on an error) must get its close() back at once."""
    import threading

    from fastcurate.io.prefetch import prefetch

    def failing():
        yield 1
        yield 2
        raise ValueError("read error")

    for source in (lambda: iter(range(3)), lambda: iter(range(100)), failing):
        for taken in (0, 1):
            gen = prefetch(source(), depth=1)
            for _ in range(taken):
                next(gen)
            done = threading.Event()

            def close(g=gen):
                g.close()
                done.set()

            t = threading.Thread(target=close, daemon=True)
            import time

            time.sleep(0.05)  # let the producer fill the queue and block
            t.start()
            assert done.wait(5.0), "prefetch close() hung"
