"""The runner and the shared I/O: input formats, the uid rule, the output directory's life cycle,
and the rough edges a new user met before the stages shared one runner (issue 7)."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_cases import ENTRIES, caption_table, write_layout
from fastcurate.cli import build_parser, main
from fastcurate.errors import FormatError, InputError
from fastcurate.io.columns import resolve_roles
from fastcurate.io.discover import ShardRef, discover_shards
from fastcurate.io.readers import open_shard
from fastcurate.runner.local import run_stage
from fastcurate.stages.curate.stage import CurateStage, curate
from fastcurate.stages.match.stage import MatchStage

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CC3M = SHARED / "captions" / "cc3m_val.tsv"


def _rows(path: Path, fmt: str) -> pa.Table:
    r = open_shard(ShardRef(0, path, fmt), batch_size=3)
    return pa.Table.from_batches(list(r.batches()), schema=r.schema)


# ------------------------------------------------------------------------------------- readers

def test_tsv_without_header_reads_as_text_and_url(tmp_path):
    p = tmp_path / "pool.tsv"
    p.write_text('a "quoted" caption\thttp://x.org/1.jpg\nsecond one, with comma\thttps://y.org/2.png\n'
                 "123\thttp://z/3\n")
    t = _rows(p, "tsv")
    assert t.column_names == ["text", "url"]
    assert t.column("text").to_pylist() == ['a "quoted" caption', "second one, with comma", "123"]
    roles = resolve_roles(t.schema, {}, ("text",), (), str(p))
    assert roles.columns == {"text": "text", "id": "url"} and roles.id_source == "url"


def test_csv_with_header_gz_and_jsonl(tmp_path):
    p = tmp_path / "pool.csv.gz"
    with gzip.open(p, "wt") as f:
        f.write('uid,caption,width\n7,"a, b",640\n8,c,480\n')
    t = _rows(p, "csv")
    assert t.column_names == ["uid", "caption", "width"]
    assert t.column("uid").to_pylist() == ["7", "8"]  # ids stay strings
    assert t.column("width").to_pylist() == [640, 480]
    j = tmp_path / "pool.jsonl"
    j.write_text('{"key": "a", "text": "x y z"}\n{"key": "b", "text": null}\n')
    t = _rows(j, "jsonl")
    assert t.column("text").to_pylist() == ["x y z", None]


@pytest.mark.skipif(not CC3M.exists(), reason="needs ../shared/data")
def test_real_cc3m_tsv_curates_directly(tmp_path):
    s = curate([CC3M], tmp_path / "o", t=20, progress=False)
    assert s["rows_in"] == 15833 and s["columns"] == {"text": "text", "id": "url"}
    assert s["rows_kept"] > 0


def _tar(path: Path, members) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def test_webdataset_rows(tmp_path):
    p = tmp_path / "s.tar"
    _tar(p, [("a.jpg", b"J1"), ("a.txt", b"cap a"), ("b.png", b"P2"),
             ("b.json", json.dumps({"uid": "U-b", "caption": "cap b", "width": 5, "url": "http://b"}).encode()),
             ("c.txt", b"no image")])
    t = _rows(p, "webdataset")
    assert t.column("uid").to_pylist() == ["a", "U-b", "c"]
    assert t.column("txt").to_pylist() == ["cap a", "cap b", "no image"]
    assert t.column("image").to_pylist() == [b"J1", b"P2", None]
    assert t.column("image_format").to_pylist() == ["jpg", "png", None]
    assert t.column("width").to_pylist() == [None, 5, None] and t.column("url").to_pylist()[1] == "http://b"
    bad = tmp_path / "bad.tar"
    bad.write_bytes(p.read_bytes()[:700])
    with pytest.raises(FormatError, match="bad.tar"):
        _rows(bad, "webdataset")


def test_discovery(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    for name in ("b.parquet", "sub/a.tsv", "_hidden.parquet", ".x.parquet", "notes.txt"):
        (d / name).write_bytes(b"x")
    got = [(s.path.name, s.format) for s in discover_shards([d])]
    assert got == [("b.parquet", "parquet"), ("a.tsv", "tsv")] or got == [("a.tsv", "tsv"), ("b.parquet", "parquet")]
    assert [s.index for s in discover_shards([d])] == [0, 1]
    with pytest.raises(InputError, match="not a known shard format"):
        discover_shards([d / "notes.txt"])
    with pytest.raises(InputError, match="glob matches no shard files"):
        discover_shards([str(d / "*.csv")])


# ------------------------------------------------------------------- the output directory's life

def _pool(tmp_path: Path, n_files: int = 2) -> Path:
    return write_layout(caption_table(400), tmp_path / "in", n_files, seed=0)


def test_out_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file, not a directory"):
        curate([_pool(tmp_path)], f, metadata=ENTRIES, progress=False)


def test_failed_run_then_corrected_rerun_is_not_refused(tmp_path):
    src = _pool(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="no caption"):
        curate([src], out, metadata=ENTRIES, text_column="nope", progress=False)
    assert (out / "_work" / "manifest.json").exists()
    logs = []
    s = run_stage(CurateStage(ENTRIES, t=12), [src], out, progress=False, log=logs.append)
    assert s["rows_in"] == 400 and any("discarding the unfinished curate run" in m for m in logs)
    assert not (out / "_work").exists()


def test_resume_is_announced_and_cleanup_is_finished(tmp_path):
    src = _pool(tmp_path, 3)
    out = tmp_path / "out"

    def stop(phase: str, i: int) -> None:
        if phase == "process" and i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(CurateStage(ENTRIES, t=12), [src], out, progress=False, _after_shard=stop)
    logs = []
    s = run_stage(CurateStage(ENTRIES, t=12), [src], out, progress=False, log=logs.append)
    assert any("resuming" in m and "3 of 3 shards scanned, 2 of 3 processed" in m for m in logs), logs
    # a kill after stats.json but before _work is removed: the rerun finishes the clean-up
    (out / "_work" / "shards" / "00000").mkdir(parents=True)
    (out / "_work" / "shards" / "00000" / "offsets.npy").write_bytes(b"x" * 1000)
    assert curate([src], out, metadata=ENTRIES, t=12, progress=False) == s
    assert not (out / "_work").exists()


def test_all_null_caption_column_warns(tmp_path):
    t = pa.table({"uid": ["a", "b", "c"], "TEXT": pa.nulls(3, pa.string()), "caption": ["w1", "w2", "w3"]})
    pq.write_table(t, tmp_path / "p.parquet")
    s = curate([tmp_path / "p.parquet"], tmp_path / "o", metadata=ENTRIES, progress=False)
    assert s["rows_kept"] == 0
    assert any("'TEXT' is null in all 3 rows" in w and "--text-column" in w for w in s["warnings"])
    assert any("no row was kept" in w for w in s["warnings"])


def test_skip_messages(tmp_path, capsys):
    src = _pool(tmp_path, 2)
    for f in src.glob("*.parquet"):
        f.write_bytes(b"garbage")
    with pytest.raises(InputError, match="no input shard could be read .*shard_000.*shard_001"):
        curate([src], tmp_path / "o", metadata=ENTRIES, on_error="skip", progress=False)
    rc = main(["curate", str(src), "--out", str(tmp_path / "o2"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "pass --on-error skip" in err
    rc = main(["curate", str(src), "--out", str(tmp_path / "o3"), "--no-progress", "--on-error", "skip"])
    err = capsys.readouterr().err
    assert rc == 1 and "pass --on-error skip" not in err.split("error:")[-1] and "no input shard" in err


def test_match_takes_directories_globs_and_tsv(tmp_path):
    src = _pool(tmp_path, 3)
    meta = tmp_path / "m.txt"
    meta.write_text("\n".join(ENTRIES))
    assert main(["match", str(src / "shard_00*.parquet"), "--metadata", str(meta), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    s = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert s["shards_in"] == 3 and s["rows_kept"] + s["rows_dropped"]["null_id"] == 400


def test_every_option_has_help_and_no_phantom_subcommand():
    parser = build_parser()
    assert "inspect" not in parser.format_help()

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    walk(sp, f"{path} {name}")
            elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
                assert a.help, f"{path}: option {a.option_strings or a.dest} has no help text"

    walk(parser, "fastcurate")


def test_exit_codes(tmp_path, capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as e:
        main(["curate", "--no-such-flag"])
    assert e.value.code == 2
    assert main(["curate", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o")]) == 1
    assert main(["match", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o")]) == 1
    assert main(["embed", str(tmp_path / "missing.tar"), "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert main(["metadata", "build", "--wordnet", str(tmp_path), "--out", str(tmp_path / "m.json")]) == 1
    assert "error:" in capsys.readouterr().err


def test_uid_rule(tmp_path):
    t = pa.table({"key": pa.array([5, 6], pa.int64()), "URL": ["u1", "u2"], "TEXT": ["w1", "w2"]})
    pq.write_table(t, tmp_path / "ints.parquet")
    run_stage(MatchStage(ENTRIES), [tmp_path / "ints.parquet"], tmp_path / "o1", progress=False)
    assert pq.read_table(tmp_path / "o1" / "part-00000.parquet").column("uid").to_pylist() == ["5", "6"]
    pq.write_table(t.drop_columns(["key"]), tmp_path / "urls.parquet")
    run_stage(MatchStage(ENTRIES), [tmp_path / "urls.parquet"], tmp_path / "o2", progress=False)
    assert pq.read_table(tmp_path / "o2" / "part-00000.parquet").column("uid").to_pylist() == ["u1", "u2"]
    pq.write_table(t.drop_columns(["key", "URL"]), tmp_path / "bare.parquet")
    s = run_stage(MatchStage(ENTRIES), [tmp_path / "bare.parquet"], tmp_path / "o3", progress=False)
    assert pq.read_table(tmp_path / "o3" / "part-00000.parquet").column("uid").to_pylist() == ["bare:0", "bare:1"]
    assert any("re-sharding" in w for w in s["warnings"])
    # the same rows keyed by URL in curate and in match: outputs join on uid
    curate([tmp_path / "urls.parquet"], tmp_path / "c", metadata=ENTRIES, progress=False)
    a = set(pq.read_table(tmp_path / "c" / "part-00000.parquet").column("uid").to_pylist())
    assert a <= {"u1", "u2"}


def test_atomic_open_publishes_whole_files_or_nothing(tmp_path):
    from fastcurate.io.atomic import atomic_open, atomic_write_npy

    f = tmp_path / "x.bin"
    f.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(f) as fh:
            fh.write(b"half of the new")
            raise RuntimeError("killed mid-write")
    assert f.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]  # no temp left
    with atomic_open(f) as fh:
        fh.write(b"new")
    assert f.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]
    a = np.arange(10, dtype=np.int32)
    atomic_write_npy(tmp_path / "a.npy", a)
    assert np.array_equal(np.load(tmp_path / "a.npy"), a)
