"""The stage contract, checked on every registered stage (docs/runner.md):

* row accounting: every input row is in the output or in the drop files, exactly once, with a
  declared reason, and ``rows_in == rows_kept + sum(rows_dropped)``;
* a kill -9 at a random point, then a rerun of the same command, gives byte-identical outputs;
* a corrupt shard is skipped and recorded with ``on_error="skip"`` and named without it;
* the same output for 1 and 2 threads (bytes) and for two shard layouts of the same rows.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_cases import BUNDLE_ENV, CASES, run_case, write_layout
from fastcurate.errors import FormatError
from fastcurate.stages import STAGES

NAMES = sorted(STAGES)


@pytest.fixture(autouse=True, scope="module")
def _bundle_for_embed():
    """The embed case needs a CLIP bundle: the tiny one the embed tests export (once a session)."""
    if os.environ.get(BUNDLE_ENV):
        yield
        return
    try:
        from embed_fixtures import tiny_bundle

        os.environ[BUNDLE_ENV] = str(tiny_bundle())
    except BaseException:  # no torch/open_clip: the embed case skips below
        pass
    yield
    os.environ.pop(BUNDLE_ENV, None)


def _case(name: str):
    if name == "embed" and not os.environ.get(BUNDLE_ENV):
        pytest.skip("the embed case needs torch + open_clip to export its tiny bundle")
    return CASES[name]()


def output_bytes(out: Path) -> dict:
    """Every output file's bytes (timings.json, the one file with wall times, aside)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "timings.json"}


def read_parts(out: Path, sub: str = "") -> pa.Table:
    parts = sorted((out / sub).glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]) if parts else pa.table({})


def test_every_registered_stage_has_a_contract_case():
    assert set(CASES) == set(STAGES), "add a case for each new stage to tests/contract_cases.py"


@pytest.mark.parametrize("name", NAMES)
def test_row_accounting(name, tmp_path):
    c = _case(name)
    src = write_layout(c.table, tmp_path / "in", 3, seed=0)
    out = tmp_path / "out"
    stats = run_case(name, src, out)
    assert json.loads((out / "stats.json").read_text()) == stats
    assert not (out / "_work").exists() and not list(out.rglob("*.tmp"))
    n = len(c.table)
    assert stats["rows_in"] == n == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    kept = read_parts(out)
    drops = read_parts(out, "drops")
    assert kept.num_rows == stats["rows_kept"]
    assert kept.column_names[0] == "uid" and kept.schema.field("uid").type == pa.string()
    assert drops.column_names == ["uid", "stage", "reason", "detail"]
    assert drops.num_rows == sum(stats["rows_dropped"].values()) - stats["rows_dropped"]["bad_shard"]
    assert set(drops.column("reason").to_pylist()) <= set(stats["reasons"]) and set(drops.column("stage").to_pylist()) <= {name}
    for reason, count in stats["rows_dropped"].items():
        assert drops.column("reason").to_pylist().count(reason) == count or reason == "bad_shard"
    # every input row exactly once: kept (by uid) or dropped (by uid; rows without id by file:row)
    uids = c.table.column("uid").to_pylist()
    kept_uids = kept.column("uid").to_pylist()
    dropped_uids = [u for u in drops.column("uid").to_pylist() if u is not None]
    assert len(set(kept_uids)) == len(kept_uids) and not set(kept_uids) & set(dropped_uids)
    assert sorted(kept_uids + dropped_uids) == sorted(u for u in uids if u is not None)
    null_rows = drops.filter(pa.compute.equal(drops.column("reason"), "null_id"))
    assert null_rows.num_rows == sum(u is None for u in uids)
    assert all(d and ":" in d for d in null_rows.column("detail").to_pylist())
    # a stage output directory is a valid input of the next stage: the kept rows read back as is
    again = run_case(name, out, tmp_path / "again")
    assert again["rows_in"] == stats["rows_kept"]


@pytest.mark.parametrize("name", NAMES)
def test_same_output_for_threads_and_layouts(name, tmp_path):
    c = _case(name)
    src = write_layout(c.table, tmp_path / "in", 3, seed=0)
    one = run_case(name, src, tmp_path / "t1", threads=1)
    two = run_case(name, src, tmp_path / "t2", threads=2)
    assert output_bytes(tmp_path / "t1") == output_bytes(tmp_path / "t2")
    assert {k: v for k, v in one.items() if k != "manifest"} == {k: v for k, v in two.items() if k != "manifest"}
    # another layout of the same rows: the same rows kept with the same added values, the same drops
    src2 = write_layout(c.table, tmp_path / "in2", 5, seed=9)
    run_case(name, src2, tmp_path / "l2")
    a = read_parts(tmp_path / "t1").sort_by("uid")
    b = read_parts(tmp_path / "l2").sort_by("uid")
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    for col in a.column_names:
        x, y = a.column(col).to_pylist(), b.column(col).to_pylist()
        if col in c.float_columns:
            assert [v is None for v in x] == [v is None for v in y]
            for u, v in zip(x, y):
                if u is not None:
                    assert np.allclose(np.asarray(u, np.float64), np.asarray(v, np.float64), atol=2e-3)
        else:
            assert x == y, col

    def drop_set(out: Path) -> set:
        d = read_parts(out, "drops")
        return {(u, r) for u, r in zip(d.column("uid").to_pylist(), d.column("reason").to_pylist()) if u is not None}

    assert drop_set(tmp_path / "t1") == drop_set(tmp_path / "l2")


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_shard_is_named_or_skipped_and_recorded(name, tmp_path):
    c = _case(name)
    src = write_layout(c.table, tmp_path / "in", 3, seed=0)
    victim = sorted(src.glob("*.parquet"))[1]
    victim_rows = pq.ParquetFile(victim).metadata.num_rows
    _truncate(victim, 0.5)
    with pytest.raises(FormatError, match=victim.name + ".*--on-error skip"):
        run_case(name, src, tmp_path / "o1")
    stats = run_case(name, src, tmp_path / "o2", on_error="skip")
    assert [Path(b["file"]).name for b in stats["bad_shards"]] == [victim.name]
    assert stats["rows_in"] == len(c.table) - victim_rows  # the footer is gone: its rows are unknown
    assert stats["rows_in"] == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    assert stats["shards_out"] == 2 and not (tmp_path / "o2" / "part-00001.parquet").exists()
    # rerunning the same command finds the finished run
    assert run_case(name, src, tmp_path / "o2", on_error="skip") == stats


KILL = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[5])
    import pyarrow.parquet as pq
    from contract_cases import run_case
    name, src, out, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    kind, _, arg = mode.partition(":")
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "write":  # in the middle of writing a part (its temp file open)
        calls = {"n": 0}
        orig = pq.ParquetWriter.write_table
        def write_table(self, *a, **kw):
            calls["n"] += 1
            if calls["n"] == int(arg):
                die()
            return orig(self, *a, **kw)
        pq.ParquetWriter.write_table = write_table
    def after(phase, i):
        if kind == "after" and f"{phase}/{i}" == arg:
            die()
    if kind == "finalize":  # after every shard, while writing the run-level outputs
        import fastcurate.runner.local as L
        orig_w = L.atomic_write_json
        def w(path, obj):
            if path.name == "timings.json":
                die()
            return orig_w(path, obj)
        L.atomic_write_json = w
    run_case(name, src, out, after=after)
    print("finished")
    """
)


@pytest.mark.parametrize("name", NAMES)
def test_kill_at_random_points_then_resume_gives_identical_bytes(name, tmp_path):
    c = _case(name)
    n_files = 4
    src = write_layout(c.table, tmp_path / "in", n_files, seed=4)
    ref = tmp_path / "ref"
    run_case(name, src, ref)
    stage = c.make_stage()
    phases = (["scan"] if stage.scans else []) + ["process"]
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # str hash() changes with every process
    modes = [f"after:{rng.choice(phases)}/{int(rng.integers(0, n_files))}", f"write:{int(rng.integers(1, 6))}",
             "finalize:"]
    script = tmp_path / "kill.py"
    script.write_text(KILL)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for k, mode in enumerate(modes):
        out = tmp_path / f"out{k}"
        p = subprocess.run([sys.executable, str(script), name, str(src), str(out), mode, str(Path(__file__).parent)],
                           capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == -signal.SIGKILL, (mode, p.returncode, p.stdout, p.stderr[-2000:])
        assert not (out / "stats.json").exists() or mode == "finalize:"
        run_case(name, src, out)  # the same command again
        assert output_bytes(out) == output_bytes(ref), mode
        assert not (out / "_work").exists() and not list(out.rglob("*.tmp"))


# ------------------------------------------------------------------ engines (docs/scale.md)

@pytest.mark.parametrize("name", NAMES)
def test_stage_pickles_after_a_run(name, tmp_path):
    """The Ray engine sends the stage to its workers by pickling it: every stage must pickle after
    a run built its compiled objects (matchers, sessions), and a clone gives the same bytes."""
    import pickle

    c = _case(name)
    src = write_layout(c.table, tmp_path / "in", 2, seed=0)
    stage = c.make_stage()
    run_case(name, src, tmp_path / "a", stage=stage)
    blobs = [pickle.dumps(stage)]
    for mod in ("cloudpickle", "ray.cloudpickle"):  # what Ray uses
        try:
            blobs.append(importlib.import_module(mod).dumps(stage))
            break
        except ImportError:
            pass
    for blob in blobs:
        clone = pickle.loads(blob)
        assert type(clone) is type(stage) and clone.config() == stage.config()
    run_case(name, src, tmp_path / "b", stage=pickle.loads(blobs[0]))
    assert output_bytes(tmp_path / "a") == output_bytes(tmp_path / "b")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_ray_engine_gives_the_local_bytes(name, tmp_path, ray_cluster):
    """The same run on the local engine and on Ray (2 CPUs): byte-identical outputs, also with a
    bad shard skipped; the same error naming the bad shard without --on-error skip."""
    c = _case(name)
    src = write_layout(c.table, tmp_path / "in", 4, seed=1)
    run_case(name, src, tmp_path / "local")
    stats = run_case(name, src, tmp_path / "ray", engine="ray")
    assert output_bytes(tmp_path / "local") == output_bytes(tmp_path / "ray")
    assert json.loads((tmp_path / "ray" / "stats.json").read_text()) == stats
    timings = json.loads((tmp_path / "ray" / "timings.json").read_text())
    assert timings["engine"] == "ray" and timings["ray_workers"] >= 1
    assert not (tmp_path / "ray" / "_work").exists() and not list((tmp_path / "ray").rglob("*.tmp"))

    victim = sorted(src.glob("*.parquet"))[2]
    _truncate(victim, 0.5)
    with pytest.raises(FormatError, match=victim.name + ".*--on-error skip"):
        run_case(name, src, tmp_path / "ray_fail", engine="ray")
    run_case(name, src, tmp_path / "local_skip", on_error="skip")
    skipped = run_case(name, src, tmp_path / "ray_skip", on_error="skip", engine="ray")
    assert [Path(b["file"]).name for b in skipped["bad_shards"]] == [victim.name]
    assert output_bytes(tmp_path / "local_skip") == output_bytes(tmp_path / "ray_skip")
