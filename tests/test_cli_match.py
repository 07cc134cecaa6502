"""`fastcurate match` end to end through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

import fastcurate as fc


def _run(*args):
    return subprocess.run([sys.executable, "-m", "fastcurate", *args], capture_output=True, text=True)


def test_match_writes_ids(tmp_path):
    src = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"caption": ["a cat, a dog", "nothing here", None, "new york city"]}), src)
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps(["cat", "dog", "new york", "york city"]))
    out = tmp_path / "ids"
    r = _run("match", str(src), "--metadata", str(meta), "--out", str(out), "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert "match: 4 rows in -> 4 kept" in r.stdout and "matches: 4" in r.stdout
    ids = pq.read_table(out / "part-00000.parquet").column("entry_ids").to_pylist()
    assert ids == [[0, 1], [], [], [2, 3]]
    assert ids == fc.Matcher(str(meta)).match(pq.read_table(src).column("caption")).to_lists()


def test_match_missing_column_names_the_columns(tmp_path):
    src = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"alt": ["a cat"]}), src)
    meta = tmp_path / "m.txt"
    meta.write_text("cat\n")
    r = _run("match", str(src), "--metadata", str(meta), "--text-column", "TEXT", "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    assert "no caption (text) column 'TEXT'" in r.stderr and "['alt']" in r.stderr
