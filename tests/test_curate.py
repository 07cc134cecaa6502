"""The `curate` pipeline end to end: row accounting, determinism, resume after a kill, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcurate.kernels.balance import count_entries, entry_probs, p_to_t, expected_size
from fastcurate.stages.curate.stage import curate
from fastcurate.errors import FormatError, InputError, InputTypeError

from test_curate_reference import ReferenceMatcher

N_ENTRIES = 300
ENTRIES = [f"w{k}" for k in range(N_ENTRIES)] + ["new york", "york"]


def make_table(n: int, seed: int = 0) -> pa.Table:
    """Captions built from Zipf-distributed entry words (so balancing bites), with punctuation,
    filler words, and a few null/empty texts and null uids."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        k = int(rng.integers(0, 5))
        words = [f"w{(int(z) - 1) % N_ENTRIES}" for z in rng.zipf(1.4, size=k)]
        words += ["filler"] * int(rng.integers(0, 3))
        if rng.random() < 0.05:
            words.append("new york,")
        rng.shuffle(words)
        texts.append(" ".join(words))
    texts = [None if i % 97 == 5 else ("" if i % 101 == 7 else t) for i, t in enumerate(texts)]
    uids = [None if i % 89 == 3 else f"{(i * 2654435761) % (1 << 64):032x}" for i in range(n)]
    return pa.table({"uid": pa.array(uids, pa.string()), "TEXT": pa.array(texts, pa.string()),
                     "n": pa.array(np.arange(n, dtype=np.int64))})


def write_layout(table: pa.Table, d: Path, n_files: int, seed: int) -> Path:
    """The same rows split into n_files shards in a shuffled order."""
    d.mkdir(parents=True, exist_ok=True)
    perm = np.random.default_rng(seed).permutation(len(table))
    t = table.take(pa.array(perm))
    cuts = np.linspace(0, len(t), n_files + 1).astype(int)
    for j in range(n_files):
        pq.write_table(t.slice(cuts[j], cuts[j + 1] - cuts[j]), d / f"shard_{j:03d}.parquet", row_group_size=700)
    return d


def read_out(out: Path) -> pa.Table:
    parts = sorted(out.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts])


def output_bytes(out: Path) -> dict:
    """Every output file's bytes (timings.json, the only file that holds wall times, aside)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "timings.json"}


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return make_table(6000, seed=1)


def test_counts_and_stats_add_up(tmp_path, table):
    src = write_layout(table, tmp_path / "in", 4, seed=0)
    out = tmp_path / "out"
    stats = curate([src], out, metadata=ENTRIES, t=15, progress=False)
    # rows in = rows kept + sum of the drop reasons
    assert stats["rows_in"] == len(table)
    assert stats["rows_in"] == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    assert set(stats["rows_dropped"]) >= {"null_text", "null_id", "no_match", "not_sampled", "bad_shard"}

    # every stage recomputed independently with MetaCLIP's reference matcher
    ref = ReferenceMatcher(ENTRIES)
    texts = table.column("TEXT").to_pylist()
    uids = table.column("uid").to_pylist()
    # the runner takes rows without an id out before the stage sees them: null_id comes first
    null_id = sum(u is None for u in uids)
    null_text = sum(t is None and u is not None for t, u in zip(texts, uids))
    valid = [i for i in range(len(texts)) if texts[i] is not None and uids[i] is not None]
    matches = {i: ref.match_one(texts[i]) for i in valid}
    no_match = sum(1 for i in valid if not matches[i])
    assert stats["rows_dropped"]["null_text"] == null_text > 0
    assert stats["rows_dropped"]["null_id"] == null_id > 0
    assert stats["rows_dropped"]["no_match"] == no_match > 0
    assert stats["rows_dropped"]["not_sampled"] > 0
    ref_counts = np.zeros(len(ENTRIES), np.uint64)
    for ids in matches.values():
        ref_counts[ids] += 1
    assert np.array_equal(np.load(out / "entry_counts.npy"), ref_counts)

    # the output: input columns + entry_ids, exactly the kept rows, each with its match set
    res = read_out(out)
    assert res.column_names == ["uid", "TEXT", "n", "entry_ids"]
    assert len(res) == stats["rows_kept"]
    n_col = res.column("n").to_pylist()
    assert len(set(n_col)) == len(n_col)
    for n_i, ids in zip(n_col, res.column("entry_ids").to_pylist()):
        assert ids == matches[n_i]
        assert ids  # every kept row had a match
    kept_counts = np.zeros(len(ENTRIES), np.uint64)
    for ids in res.column("entry_ids").to_pylist():
        kept_counts[ids] += 1
    assert np.array_equal(np.load(out / "entry_counts_curated.npy"), kept_counts)
    # balancing flattened the head (the top entry lost over half its rows, though co-occurring
    # tail entries keep many of them), and the tail kept all its rows
    head = int(np.argmax(ref_counts))
    assert kept_counts[head] < ref_counts[head] / 2
    tail = (ref_counts > 0) & (ref_counts < 15)
    assert (kept_counts[tail] >= 1).all()
    assert json.loads((out / "metadata.json").read_text()) == ENTRIES
    assert (out / "long_tail.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "stats.json").read_text()) == stats
    assert not list(out.rglob("*.tmp"))


def test_subset_identical_across_layouts_orders_and_threads(tmp_path, table):
    kept = []
    counts = []
    for n_files, seed, threads, batch in [(1, 0, 1, 131072), (5, 1, 2, 500), (13, 2, None, 977)]:
        src = write_layout(table, tmp_path / f"in{n_files}", n_files, seed)
        out = tmp_path / f"out{n_files}"
        stats = curate([src], out, metadata=ENTRIES, t=10, seed=7, threads=threads, batch_size=batch, progress=False)
        kept.append(sorted(read_out(out).column("uid").to_pylist()))
        counts.append(np.load(out / "entry_counts_curated.npy"))
        assert stats["rows_kept"] == len(kept[-1])
    assert kept[0] == kept[1] == kept[2]
    assert np.array_equal(counts[0], counts[1]) and np.array_equal(counts[0], counts[2])
    # another seed: another subset of about the same size
    out = tmp_path / "seed8"
    curate([tmp_path / "in1"], out, metadata=ENTRIES, t=10, seed=8, progress=False)
    other = sorted(read_out(out).column("uid").to_pylist())
    assert other != kept[0]


def test_p_and_target_size(tmp_path, table):
    src = write_layout(table, tmp_path / "in", 3, seed=0)
    s_p = curate([src], tmp_path / "p", metadata=ENTRIES, p=0.3, progress=False)
    c = np.load(tmp_path / "p" / "entry_counts.npy")
    assert s_p["curate"]["t"] == p_to_t(c, 0.3) and s_p["curate"]["threshold_from"] == "p"
    s_n = curate([src], tmp_path / "n", metadata=ENTRIES, target_size=1500, progress=False)
    assert s_n["curate"]["expected_size"] == pytest.approx(1500, rel=1e-6)
    sigma = np.sqrt(1500)
    assert abs(s_n["rows_kept"] - 1500) < 4 * sigma
    with pytest.raises(InputError, match="at most one"):
        curate([src], tmp_path / "x", metadata=ENTRIES, t=5, p=0.1, progress=False)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import pyarrow.parquet as pq
    from fastcurate.stages.curate.stage import curate
    src, out, mode, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    entries = [f"w{i}" for i in range(300)] + ["new york", "york"]
    calls = {"n": 0}
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "write":  # die in the middle of writing an output shard (a temp file is open)
        orig = pq.ParquetWriter.write_table
        def write_table(self, *a, **kw):
            calls["n"] += 1
            if calls["n"] == k:
                die()
            return orig(self, *a, **kw)
        pq.ParquetWriter.write_table = write_table
    if mode == "final":  # die while writing the run-level outputs
        import fastcurate.plots as rp
        def boom(*a, **kw):
            die()
        rp.plot_long_tail = boom
    def after(stage, i):
        if mode == stage and i == k:
            die()
    curate([src], out, metadata=entries, t=12, seed=3, batch_size=400, progress=False, _after_shard=after)
    print("finished")
    """
)


@pytest.mark.parametrize("mode,k", [("scan", 2), ("write", 3), ("process", 1), ("final", 0)])
def test_killed_run_resumes_to_identical_outputs(tmp_path, table, mode, k):
    src = write_layout(table, tmp_path / "in", 5, seed=4)
    ref_out = tmp_path / "ref"
    curate([src], ref_out, metadata=ENTRIES, t=12, seed=3, batch_size=400, progress=False)
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(script), str(src), str(out), mode, str(k)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout, p.stderr)
    assert not (out / "stats.json").exists()
    curate([src], out, metadata=ENTRIES, t=12, seed=3, batch_size=400, progress=False)
    assert output_bytes(out) == output_bytes(ref_out)
    assert not list(out.rglob("*.tmp"))
    # running the finished command again changes nothing
    curate([src], out, metadata=ENTRIES, t=12, seed=3, batch_size=400, progress=False)
    assert output_bytes(out) == output_bytes(ref_out)


@pytest.mark.parametrize("delay", [0.9, 1.3, 1.8])
def test_cli_killed_at_a_random_moment_resumes_to_identical_outputs(tmp_path, table, delay):
    """SIGKILL the CLI after a wall-clock delay (wherever it happens to be: imports, counting,
    selecting, final writes or already done), then run the same command again."""
    import time

    src = write_layout(table, tmp_path / "in", 6, seed=5)
    meta = tmp_path / "meta.txt"
    meta.write_text("\n".join(ENTRIES) + "\n")
    args = [str(src), "--metadata", str(meta), "--t", "9", "--seed", "11", "--batch-size", "300", "--no-progress"]
    ref = tmp_path / "ref"
    from fastcurate.cli import main

    assert main(["curate", *args, "--out", str(ref)]) == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fastcurate", "curate", *args, "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=60) in (-signal.SIGKILL, 0)  # killed, or finished first: never crashed
    assert main(["curate", *args, "--out", str(out)]) == 0
    assert output_bytes(out) == output_bytes(ref)
    assert not list(out.rglob("*.tmp"))


def test_different_run_in_same_out_is_refused(tmp_path, table):
    src = write_layout(table, tmp_path / "in", 2, seed=0)
    out = tmp_path / "out"
    curate([src], out, metadata=ENTRIES, t=12, progress=False)
    with pytest.raises(InputError, match="other inputs or options"):
        curate([src], out, metadata=ENTRIES, t=13, progress=False)
    s = curate([src], out, metadata=ENTRIES, t=13, progress=False, overwrite=True)
    assert s["curate"]["t"] == 13
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(InputError, match="not a fastcurate"):
        curate([src], tmp_path / "other", metadata=ENTRIES, progress=False)


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _corrupt_middle(path: Path) -> None:
    """Garbage over the TEXT column's page header in the second row group: the footer stays
    readable (so the row count is known) and reading fails half-way, deterministically."""
    md = pq.ParquetFile(path).metadata
    assert md.num_row_groups >= 2
    rg = md.row_group(1)
    col = next(rg.column(j) for j in range(rg.num_columns) if rg.column(j).path_in_schema == "TEXT")
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + 24] = b"\xff" * 24
    path.write_bytes(bytes(data))


def test_bad_shards_raise_or_are_skipped_and_recorded(tmp_path, table):
    src = write_layout(table, tmp_path / "in", 4, seed=0)
    files = sorted(src.glob("*.parquet"))
    truncated, corrupted = files[1], files[2]
    rows_corrupted = pq.ParquetFile(corrupted).metadata.num_rows
    _truncate(truncated, 0.6)
    _corrupt_middle(corrupted)
    with pytest.raises(FormatError, match=str(truncated.name)):
        curate([src], tmp_path / "o1", metadata=ENTRIES, progress=False)
    stats = curate([src], tmp_path / "o2", metadata=ENTRIES, t=12, on_error="skip", progress=False)
    bad = {Path(b["file"]).name: b for b in stats["bad_shards"]}
    assert set(bad) == {truncated.name, corrupted.name}
    assert bad[truncated.name]["rows"] == 0  # footer gone: row count unknown
    assert bad[corrupted.name]["rows"] == rows_corrupted
    assert bad[truncated.name]["phase"] == bad[corrupted.name]["phase"] == "scan"
    assert stats["rows_dropped"]["bad_shard"] == rows_corrupted
    assert stats["rows_in"] == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    assert stats["shards_out"] == 2 and len(stats["outputs"]) == 2


def test_damage_in_a_column_only_the_select_pass_reads(tmp_path, table):
    """The counting pass reads only text + id; a damaged other column surfaces in the select pass."""
    src = write_layout(table, tmp_path / "in", 3, seed=0)
    victim = sorted(src.glob("*.parquet"))[1]
    t = pq.read_table(victim)
    blob = pa.array([os.urandom(64) for _ in range(len(t))], pa.binary())  # only the page header is damaged
    pq.write_table(t.append_column("blob", blob), victim, compression="zstd", use_dictionary=False,
                   row_group_size=len(t))
    md = pq.ParquetFile(victim).metadata.row_group(0)
    col = next(md.column(j) for j in range(md.num_columns) if md.column(j).path_in_schema == "blob")
    data = bytearray(victim.read_bytes())
    start = col.data_page_offset  # the page header: garbage there fails to parse, every time
    data[start:start + 24] = b"\xff" * 24
    victim.write_bytes(bytes(data))
    rows_victim = len(t)
    with pytest.raises(FormatError, match=victim.name + ".*unreadable Parquet data"):
        curate([src], tmp_path / "o1", metadata=ENTRIES, t=12, progress=False)
    out = tmp_path / "o2"
    s = curate([src], out, metadata=ENTRIES, t=12, on_error="skip", progress=False)
    assert [b["phase"] for b in s["bad_shards"]] == ["process"]
    assert s["rows_dropped"]["bad_shard"] == rows_victim
    assert s["rows_in"] == s["rows_kept"] + sum(s["rows_dropped"].values())
    assert len(read_out(out)) == s["rows_kept"] and s["shards_out"] == 2
    assert curate([src], out, metadata=ENTRIES, t=12, on_error="skip", progress=False) == s


def test_bad_columns_and_empty_input(tmp_path, table):
    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(table.rename_columns(["uid", "caption_text", "n"]), d / "a.parquet")
    with pytest.raises(InputError, match=r"a\.parquet.*no caption \(text\) column 'TEXT'.*\['uid', 'caption_text', 'n'\].*--text-column"):
        curate([d], tmp_path / "o1", metadata=ENTRIES, text_column="TEXT", progress=False)
    with pytest.raises(InputError, match=r"none of the usual caption \(text\) columns.*caption_text.*--text-column"):
        curate([d], tmp_path / "o2", metadata=ENTRIES, progress=False)
    s = curate([d], tmp_path / "o3", metadata=ENTRIES, text_column="caption_text", progress=False)
    assert s["columns"]["text"] == "caption_text" and s["columns"]["id"] == "uid"

    e = tmp_path / "ints"
    e.mkdir()
    pq.write_table(pa.table({"uid": ["a", "b"], "TEXT": [1, 2]}), e / "b.parquet")
    with pytest.raises(InputTypeError, match=r"b\.parquet.*'TEXT' has type int64, not string"):
        curate([e], tmp_path / "o4", metadata=ENTRIES, progress=False)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no shard files"):
        curate([empty], tmp_path / "o5", metadata=ENTRIES, progress=False)
    pq.write_table(table.slice(0, 0), empty / "zero.parquet")
    s0 = curate([empty], tmp_path / "o6", metadata=ENTRIES, progress=False)  # valid, and said
    assert s0["rows_in"] == 0 and any("no rows" in w for w in s0["warnings"])
    with pytest.raises(InputError, match="no such file"):
        curate([tmp_path / "missing.parquet"], tmp_path / "o7", metadata=ENTRIES, progress=False)
    # a shard that misses the column among good ones: named, and skippable
    mixed = tmp_path / "mixed"
    write_layout(table, mixed, 2, seed=0)
    pq.write_table(pa.table({"uid": ["x"], "other": ["y"]}), mixed / "z_bad.parquet")
    with pytest.raises(InputError, match=r"z_bad\.parquet.*\['uid', 'other'\]"):
        curate([mixed], tmp_path / "o8", metadata=ENTRIES, progress=False)
    s = curate([mixed], tmp_path / "o9", metadata=ENTRIES, on_error="skip", progress=False)
    assert s["rows_dropped"]["bad_shard"] == 1 and s["rows_in"] == len(table) + 1


def test_output_inside_input_dir_is_not_read_back(tmp_path, table):
    src = write_layout(table, tmp_path / "in", 2, seed=0)
    s1 = curate([src], src / "curated", metadata=ENTRIES, t=12, progress=False)
    s2 = curate([src], src / "curated", metadata=ENTRIES, t=12, progress=False)  # finished run: same stats
    assert s1 == s2 and s1["shards_in"] == 2


def test_integer_ids_and_globs(tmp_path, table):
    t = table.drop_columns(["uid"]).append_column("key", pa.array(np.arange(len(table), dtype=np.int64)))
    d = tmp_path / "in"
    write_layout(t, d, 3, seed=0)
    s = curate([str(d / "shard_*.parquet")], tmp_path / "o", metadata=ENTRIES, t=12, progress=False)
    assert s["columns"]["id"] == "key" and s["shards_in"] == 3
    assert s["rows_dropped"]["null_id"] == 0
    assert all(u.isdigit() for u in read_out(tmp_path / "o").column("uid").to_pylist())


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LAION = SHARED / "captions" / "laion_10k.parquet"
CC3M = SHARED / "captions" / "cc3m_val.tsv"


@pytest.mark.skipif(not LAION.exists(), reason=f"real data not found at {LAION} (needs ../shared beside the checkout)")
def test_real_laion_end_to_end_cli(tmp_path, capsys):
    from fastcurate.cli import main
    from fastcurate.metadata import load_metadata

    out = tmp_path / "laion"
    assert main(["curate", str(LAION), "--out", str(out), "--t", "20", "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert "curate: 10,000 rows in" in summary
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows_in"] == 10000 == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    assert stats["columns"]["text"] == "TEXT" and stats["columns"]["id"] == "URL" and stats["id_source"] == "url"
    # counts equal MetaCLIP's reference matcher over the default metadata
    entries = load_metadata()
    texts = pq.read_table(LAION, columns=["TEXT"]).column("TEXT").to_pylist()
    r = ReferenceMatcher(entries).match(texts)
    assert np.array_equal(np.load(out / "entry_counts.npy"), count_entries(r, len(entries)))
    assert stats["curate"]["expected_size"] == pytest.approx(expected_size(r, count_entries(r, len(entries)), 20.0), rel=1e-9)
    res = read_out(out)
    # uid (here the URL) first, the input's columns without the pandas index column, entry_ids last
    assert "__index_level_0__" in pq.ParquetFile(LAION).schema_arrow.names
    assert len(res) == stats["rows_kept"] and res.column_names == ["uid", "URL", "TEXT", "entry_ids"]
    assert res.schema.metadata is None
    assert res.column("uid").to_pylist() == res.column("URL").to_pylist()
    # default metadata and default t (20000 keeps every matched caption of a small pool)
    out2 = tmp_path / "laion_default"
    assert main(["curate", str(LAION), "--out", str(out2), "--no-progress"]) == 0
    s2 = json.loads((out2 / "stats.json").read_text())
    assert s2["rows_dropped"]["not_sampled"] == 0 and s2["rows_kept"] == 10000 - s2["rows_dropped"]["no_match"]


@pytest.mark.skipif(not CC3M.exists(), reason=f"real data not found at {CC3M} (needs ../shared beside the checkout)")
def test_real_cc3m_end_to_end(tmp_path):
    import pyarrow.csv as pacsv

    tbl = pacsv.read_csv(CC3M, read_options=pacsv.ReadOptions(column_names=["caption", "url"]),
                         parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False))
    tbl = tbl.append_column("key", pa.array(np.arange(len(tbl), dtype=np.int64)))
    d = tmp_path / "cc3m"
    write_layout(tbl, d, 3, seed=0)
    stats = curate([d], tmp_path / "out", p=0.2, progress=False)  # img2dataset-style columns, default metadata
    assert stats["columns"]["text"] == "caption" and stats["columns"]["id"] == "key"
    assert stats["rows_in"] == len(tbl) == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    assert 0 < stats["rows_kept"] < stats["rows_in"]
    c = np.load(tmp_path / "out" / "entry_counts.npy")
    cs = stats["curate"]
    assert cs["t"] == p_to_t(c, 0.2)
    probs = entry_probs(c, cs["t"])
    assert abs(stats["rows_kept"] - cs["expected_size"]) < 4 * np.sqrt(cs["expected_size"])
    assert probs.min() < 1.0


def test_metadata_build_cli(tmp_path, capsys):
    from fastcurate.cli import main

    uni = tmp_path / "uni.txt"
    uni.write_text("zebra 500\ncat 50\n")
    out = tmp_path / "m.json"
    assert main(["metadata", "build", "--no-wordnet", "--unigram-counts", str(uni), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == [str(i) for i in range(100)] + ["zebra"]
    assert "wrote 101 entries" in capsys.readouterr().out
    assert main(["metadata", "build", "--wordnet", str(tmp_path), "--out", str(out)]) == 1
    assert "wordnet-base" in capsys.readouterr().err


def test_index_output_equals_rows_output_and_writes_datacomps_subset(tmp_path, table):
    from fastcurate.kernels.balance import uniform_draws, keep_probabilities

    src = write_layout(table, tmp_path / "in", 3, seed=0)
    rows = curate([src], tmp_path / "rows", metadata=ENTRIES, t=12, seed=5, progress=False)
    idx = curate([src], tmp_path / "idx", metadata=ENTRIES, t=12, seed=5, progress=False, output="index")
    assert idx["rows_dropped"] == rows["rows_dropped"] and idx["rows_kept"] == rows["rows_kept"]
    r, i = read_out(tmp_path / "rows"), read_out(tmp_path / "idx")
    assert i.column_names == ["uid", "entry_ids", "draw"]
    assert r.column("uid").to_pylist() == i.column("uid").to_pylist()
    assert r.column("entry_ids").to_pylist() == i.column("entry_ids").to_pylist()
    # the draw is the row's uniform: below its keep probability for every kept row
    draws = i.column("draw").to_numpy()
    assert np.array_equal(draws, uniform_draws(i.column("uid"), seed=5))
    probs = entry_probs(np.load(tmp_path / "idx" / "entry_counts.npy"), 12.0)
    ent = i.column("entry_ids").to_pylist()
    offs = np.concatenate([[0], np.cumsum([len(e) for e in ent])]).astype(np.int64)
    kp = keep_probabilities((offs, np.array([x for e in ent for x in e], np.int32)), probs)
    assert (draws < kp).all()
    # DataComp's subset file: sorted (u8, u8) halves of the 128-bit hex uids, as its baselines write it
    sub = np.load(tmp_path / "idx" / "subset.npy")
    ref = np.array([(int(u[:16], 16), int(u[16:32], 16)) for u in i.column("uid").to_pylist()], np.dtype("u8,u8"))
    ref.sort()
    assert sub.dtype == np.dtype("u8,u8") and np.array_equal(sub, ref)
    assert idx["curate"]["subset_file"] == "subset.npy" and rows["curate"]["subset_file"] is None


def test_hex128_pairs_equal_pythons_int_parse_for_every_string_layout():
    import secrets

    import numpy as np
    import pyarrow as pa

    from fastcurate.errors import InputError
    from fastcurate.stages.curate.stage import hex128_pairs

    u = [secrets.token_hex(16) for _ in range(500)] + ["F" * 16 + "0" * 15 + "1", "0" * 16 + "0123456789AbCdEf"]
    ref = np.array([(int(x[:16], 16), int(x[16:], 16)) for x in u], dtype="u8,u8")
    for arr in (pa.array(u), pa.array(u, pa.large_string())):
        assert (hex128_pairs(arr) == ref).all()
        assert (hex128_pairs(arr.slice(7, 100)) == ref[7:107]).all()
    with pytest.raises(InputError):
        hex128_pairs(pa.array(["g" * 32]))


def test_hex128_pairs_of_kept_rows_equal_the_filtered_rows_and_name_the_bad_row():
    import secrets

    import numpy as np
    import pyarrow as pa

    from fastcurate.errors import InputError
    from fastcurate.stages.curate.stage import hex128_pairs

    u = [secrets.token_hex(16) for _ in range(300)]
    keep = np.random.default_rng(0).random(len(u)) < 0.6
    for arr in (pa.array(u), pa.array(u, pa.large_string()).slice(0)):
        assert (hex128_pairs(arr, keep) == hex128_pairs(arr.filter(pa.array(keep)))).all()
        assert len(hex128_pairs(arr, np.zeros(len(u), bool))) == 0
    # a bad uid in a dropped row does not matter; in a kept row it is named
    bad = list(u)
    bad[5], bad[9] = "x" * 32, None
    k = np.ones(len(u), bool)
    k[[5, 9]] = False
    assert (hex128_pairs(pa.array(bad), k) == hex128_pairs(pa.array(u), k)).all()
    k[9] = True
    with pytest.raises(InputError, match="row 9 is null"):
        hex128_pairs(pa.array(bad), k)
    k[5] = True
    with pytest.raises(InputError, match="row 5 holds a character that is not a hex digit"):
        hex128_pairs(pa.array(bad[:9]), k[:9])
    with pytest.raises(InputError, match="row 2 is 31 bytes long"):
        hex128_pairs(pa.array(u[:2] + ["a" * 31]))
    with pytest.raises(InputError, match="keep"):
        hex128_pairs(pa.array(u), keep[:-1])


def test_hex128_pairs_reject_other_lengths_and_nulls():
    import pyarrow as pa

    from fastcurate.errors import InputError
    from fastcurate.stages.curate.stage import hex128_pairs

    for bad in (["a" * 31], ["a" * 33], ["a" * 32, "a" * 31 + "bb"], ["a" * 32, None], ["a" * 30 + "é"]):
        with pytest.raises(InputError):
            hex128_pairs(pa.array(bad))
    assert len(hex128_pairs(pa.array([], pa.string()))) == 0


def test_subset_pairs_sort_equals_numpy_structured_sort_with_ties():
    from fastcurate.stages.curate.stage import _sort_pairs

    rng = np.random.default_rng(3)
    for n, hi in ((0, 10), (1, 10), (1000, 2**64 - 1), (1000, 7)):  # 7: many equal f0 halves
        p = np.empty(n, np.dtype("u8,u8"))
        p["f0"] = rng.integers(0, hi, n, dtype=np.uint64, endpoint=True)
        p["f1"] = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        assert np.array_equal(_sort_pairs(p), np.sort(p))


def test_index_output_writes_no_subset_file_when_one_shards_uids_are_not_datacomps(tmp_path, table):
    src = write_layout(table, tmp_path / "in", 3, seed=0)
    # the last shard's uids lose their last hex digit: no longer DataComp uids
    last = sorted(src.glob("*.parquet"))[-1]
    t = pq.read_table(last)
    i = t.schema.get_field_index("uid")
    t = t.set_column(i, "uid", pa.array([None if u is None else u[:-1] for u in t.column("uid").to_pylist()], pa.string()))
    pq.write_table(t, last)
    st = curate([src], tmp_path / "idx", metadata=ENTRIES, t=12, seed=5, progress=False, output="index")
    assert st["rows_kept"] > 0 and st["curate"]["subset_file"] is None
    assert not (tmp_path / "idx" / "subset.npy").exists()


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=6), hi=st.sampled_from([0, 3, 50, 2**64 - 1]),
       chunk=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_merge_sorted_pairs_equals_one_sort_in_bounded_chunks(tmp_path_factory, sizes, hi, chunk, seed):
    """The subset file's bounded-memory k-way merge of per-shard sorted pairs equals numpy's sort
    of them all, for every chunk size, with many equal halves (hi small) and empty parts."""
    from fastcurate.stages.curate.stage import _sort_pairs, merge_sorted_pairs

    rng = np.random.default_rng(seed)
    parts = []
    for n in sizes:
        p = np.empty(n, np.dtype("u8,u8"))
        p["f0"] = rng.integers(0, hi, n, dtype=np.uint64, endpoint=True)
        p["f1"] = rng.integers(0, 3 if hi < 100 else 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        parts.append(_sort_pairs(p))
    d = tmp_path_factory.mktemp("merge")
    paths = []
    for i, p in enumerate(parts):
        np.save(d / f"p{i}.npy", p)
        paths.append(d / f"p{i}.npy")
    f = d / "s.npy"
    with open(f, "wb") as fh:
        assert merge_sorted_pairs(paths, fh, budget_rows=chunk * len(parts)) == sum(sizes)
    got = np.load(f)
    assert got.dtype == np.dtype("u8,u8")
    assert np.array_equal(got, np.sort(np.concatenate(parts)))


def test_merge_pair_runs_checks_its_inputs_and_refuses_an_unsorted_run():
    """The merge kernel's binding names what is wrong (shape, dtype, room, overlap), and a run out of
    order raises instead of writing a wrong subset file; on 1 and 2 threads it equals one sort."""
    from fastcurate import _core
    from fastcurate.errors import FastcurateError, InputError

    rng = np.random.default_rng(3)
    runs = []
    for n in (70_000, 0, 90_000, 5):
        a = rng.integers(0, 2**64 - 1, (n, 2), dtype=np.uint64, endpoint=True)
        a[:, 0] %= 1000  # many equal first halves
        runs.append(np.ascontiguousarray(a[np.lexsort((a[:, 1], a[:, 0]))]))
    total = sum(len(r) for r in runs)
    want = np.concatenate(runs)
    want = want[np.lexsort((want[:, 1], want[:, 0]))]
    for threads in (1, 2):
        out, scratch = np.zeros((total, 2), np.uint64), np.zeros((total + 3, 2), np.uint64)
        assert _core.merge_pair_runs(runs, out, scratch, threads=threads) == total
        assert np.array_equal(out, want)
    out, scratch = np.zeros((total, 2), np.uint64), np.zeros((total, 2), np.uint64)
    with pytest.raises(InputError, match=r"runs\[0\] must be a C-contiguous \(rows, 2\) uint64"):
        _core.merge_pair_runs([runs[0].astype(np.int64)], out, scratch)
    with pytest.raises(InputError, match="need room for"):
        _core.merge_pair_runs(runs, out[:10], scratch)
    with pytest.raises(InputError, match="overlaps out or scratch"):
        _core.merge_pair_runs([out[5:10]], out, scratch)
    with pytest.raises(InputError, match="out and scratch overlap"):
        _core.merge_pair_runs(runs, out, out)
    bad = [r.copy() for r in runs]
    bad[2][[10, 11]] = bad[2][[11, 10]]
    if not np.array_equal(bad[2], runs[2]):
        with pytest.raises(FastcurateError, match="not sorted"):
            _core.merge_pair_runs(bad, out, scratch)


# ---- shards scanned at once (Stage.concurrent_scan; runner/executor.py LocalExecutor.scan_width)

def _scan_width(monkeypatch, width):
    from fastcurate.runner.executor import LocalExecutor

    seen = []

    def fixed(self, n_shards):
        w = min(width, n_shards)
        seen.append(w)
        return w

    monkeypatch.setattr(LocalExecutor, "scan_width", fixed)
    return seen


@pytest.mark.parametrize("width", [2, 3, 7])
def test_shards_scanned_at_once_give_the_same_bytes(tmp_path, table, monkeypatch, width):
    src = write_layout(table, tmp_path / "in", 7, seed=2)
    _scan_width(monkeypatch, 1)
    for output in ("rows", "index"):
        curate([src], tmp_path / f"ref_{output}", metadata=ENTRIES, t=12, seed=3, batch_size=300, progress=False,
               output=output)
    seen = _scan_width(monkeypatch, width)
    for output in ("rows", "index"):
        out = tmp_path / f"w{width}_{output}"
        s = curate([src], out, metadata=ENTRIES, t=12, seed=3, batch_size=300, progress=False, output=output)
        assert s["rows_in"] == s["rows_kept"] + sum(s["rows_dropped"].values())
        assert output_bytes(out) == output_bytes(tmp_path / f"ref_{output}")
    assert seen and all(w == width for w in seen)


def test_scan_width_follows_the_stage_and_the_threads(tmp_path):
    from fastcurate.runner.executor import LocalExecutor
    from fastcurate.runner.stage import Context
    from fastcurate.stages.curate.stage import CurateStage

    def width(stage, threads, n_shards):
        ex = LocalExecutor()
        ex.start(stage, Context(stage=stage.name, out=tmp_path, work=tmp_path, inputs=[], input_dirs=[],
                                threads=threads, progress=False, log=print), {}, 100)
        return ex.scan_width(n_shards)

    cur = CurateStage(ENTRIES, t=5)
    assert width(cur, 1, 10) == 1  # one thread asked for: one shard at a time
    assert width(cur, 2, 10) == 2
    assert width(cur, 8, 10) == 4  # half the cores
    assert width(cur, 64, 100) == 8  # bounded: shards in memory
    assert width(cur, 64, 3) == 3
    assert width(cur, 4, 1) == 1

    class Serial(CurateStage):
        concurrent_scan = False

    assert width(Serial(ENTRIES, t=5), 8, 10) == 1


def test_bad_shards_among_shards_scanned_at_once(tmp_path, table, monkeypatch):
    src = write_layout(table, tmp_path / "in", 6, seed=0)
    files = sorted(src.glob("*.parquet"))
    _truncate(files[1], 0.6)
    _corrupt_middle(files[4])
    _scan_width(monkeypatch, 3)
    with pytest.raises(FormatError, match=files[1].name):
        curate([src], tmp_path / "o1", metadata=ENTRIES, progress=False)
    stats = curate([src], tmp_path / "o2", metadata=ENTRIES, t=12, on_error="skip", progress=False)
    assert {Path(b["file"]).name for b in stats["bad_shards"]} == {files[1].name, files[4].name}
    assert stats["shards_out"] == 4
    assert stats["rows_in"] == stats["rows_kept"] + sum(stats["rows_dropped"].values())


def test_an_error_in_one_scan_stops_the_run_and_a_rerun_resumes(tmp_path, table, monkeypatch):
    """A stage error (not a bad shard) in one of the shards scanned at once: raised, the shards
    that finished keep their markers, the others are redone on the rerun, same bytes."""
    from fastcurate.stages.curate.stage import CurateStage

    src = write_layout(table, tmp_path / "in", 6, seed=6)
    ref = tmp_path / "ref"
    curate([src], ref, metadata=ENTRIES, t=12, seed=3, batch_size=300, progress=False)
    _scan_width(monkeypatch, 3)
    victim = sorted(src.glob("*.parquet"))[3]
    orig = CurateStage.scan

    def scan(self, ctx, shard, batches):
        if shard.path == victim:
            raise RuntimeError("boom in the scan")
        return orig(self, ctx, shard, batches)

    monkeypatch.setattr(CurateStage, "scan", scan)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom in the scan"):
        curate([src], out, metadata=ENTRIES, t=12, seed=3, batch_size=300, progress=False)
    markers = sorted(p.name for p in (out / "_work" / "scan").glob("*.json"))
    assert "00003.json" not in markers and {"00000.json", "00001.json", "00002.json"} <= set(markers)
    monkeypatch.setattr(CurateStage, "scan", orig)
    curate([src], out, metadata=ENTRIES, t=12, seed=3, batch_size=300, progress=False)
    assert output_bytes(out) == output_bytes(ref)


def test_progress_counts_every_row_when_shards_are_scanned_at_once(tmp_path, table, monkeypatch):
    import fastcurate.runner.local as local

    bars = []

    class Bar:
        def __init__(self, total, desc):
            self.n, self.desc = 0, desc
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(local, "_progress", lambda total, desc, enabled: Bar(total, desc))
    src = write_layout(table, tmp_path / "in", 5, seed=1)
    _scan_width(monkeypatch, 3)
    curate([src], tmp_path / "out", metadata=ENTRIES, t=12, batch_size=200, progress=True)
    scan = [b for b in bars if b.desc.endswith("scan")]
    assert len(scan) == 1 and scan[0].n == len(table)


@pytest.mark.parametrize("threads,width,per_shard", [(4, 2, 2), (2, 2, 1), (3, 2, 1), (8, 3, 2)])
def test_shards_scanned_at_once_share_the_threads(tmp_path, table, monkeypatch, threads, width, per_shard):
    from fastcurate.stages.curate.stage import CurateStage

    _scan_width(monkeypatch, width)
    seen = []
    orig = CurateStage.scan

    def scan(self, ctx, shard, batches):
        seen.append(ctx.threads)
        return orig(self, ctx, shard, batches)

    monkeypatch.setattr(CurateStage, "scan", scan)
    src = write_layout(table, tmp_path / "in", 4, seed=1)
    curate([src], tmp_path / "out", metadata=ENTRIES, t=12, threads=threads, progress=False)
    assert seen == [per_shard] * 4
