"""Bad input gets a clear FastcurateError naming what is wrong; files are checked on load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pytest

import fastcurate as fc


def test_empty_entry_list():
    with pytest.raises(fc.InputError, match="empty"):
        fc.Matcher([])


def test_empty_entry_string():
    with pytest.raises(fc.InputError, match="entry 1 is an empty string"):
        fc.Matcher(["cat", ""])


def test_non_string_entry():
    with pytest.raises(fc.InputTypeError, match=r"entries\[1\] is a int"):
        fc.Matcher(["cat", 3])


def test_null_entry_in_arrow():
    with pytest.raises(fc.InputError, match="null"):
        fc.Matcher(pa.array(["cat", None]))


def test_bad_mode():
    with pytest.raises(fc.InputError, match="mode must be"):
        fc.Matcher(["cat"], mode="regex")


def test_never_match_warning():
    with pytest.warns(fc.MatcherWarning, match=r"2 of 3 entries can never match.*'u\.s\.'"):
        fc.Matcher(["cat", "u.s.", "a\tb"])


def test_duplicate_warning():
    with pytest.warns(fc.MatcherWarning, match="1 entries repeat a later entry"):
        fc.Matcher(["cat", "dog", "cat"])


def test_non_string_text():
    m = fc.Matcher(["cat"])
    with pytest.raises(fc.InputTypeError, match=r"texts\[2\] is a float"):
        m.match(["cat", None, 1.5])


def test_single_string_is_rejected():
    m = fc.Matcher(["cat"])
    with pytest.raises(fc.InputTypeError, match="not a single string"):
        m.match("cat")


def test_wrong_arrow_type():
    m = fc.Matcher(["cat"])
    with pytest.raises(fc.InputTypeError, match="int64"):
        m.match(pa.array([1, 2]))


def test_2d_numpy():
    m = fc.Matcher(["cat"])
    with pytest.raises(fc.InputTypeError, match="one-dimensional"):
        m.match(np.array([["cat"]]))


def test_negative_threads():
    m = fc.Matcher(["cat"])
    with pytest.raises(fc.InputError, match="threads"):
        m.match(["cat"], threads=-1)


def test_lone_surrogate():
    m = fc.Matcher(["cat"])
    with pytest.raises(fc.InputError, match=r"texts\[1\].*surrogate"):
        m.match(["cat", "a\ud800b"])


def test_invalid_utf8_bytes_are_matched_as_bytes():
    m = fc.Matcher(["cat"])
    arr = pa.array([b"\xff\xfe cat \xc3", b"\xffcat"], type=pa.binary())
    assert m.match(arr).to_lists() == [[0], []]
    assert m.match([b"\xff cat", b"cat\x80"]).to_lists() == [[0], []]


def test_numpy_unicode_and_object():
    m = fc.Matcher(["cat", "dog"])
    assert m.match(np.array(["a cat", "dog"])).to_lists() == [[0], [1]]
    assert m.match(np.array(["a cat", None], dtype=object)).to_lists() == [[0], []]


def test_arrow_c_data_interface_producer():
    class Producer:
        def __init__(self, arr):
            self.arr = arr

        def __arrow_c_array__(self, requested_schema=None):
            return self.arr.__arrow_c_array__(requested_schema)

    m = fc.Matcher(["cat"])
    assert m.match(Producer(pa.array(["cat", "dog"]))).to_lists() == [[0], []]


def test_entries_from_files(tmp_path):
    j = tmp_path / "metadata.json"
    j.write_text(json.dumps(["cat", "new york"]))
    t = tmp_path / "entries.txt"
    t.write_text("cat\nnew york\n")
    for p in (j, t, str(t)):
        assert fc.Matcher(p).entries == ["cat", "new york"]
    bad = tmp_path / "bad.json"
    bad.write_text('["cat", 3]')
    with pytest.raises(fc.FormatError, match="entry 1 is int"):
        fc.Matcher(bad)
    with pytest.raises(fc.InputError, match="not found"):
        fc.Matcher(tmp_path / "missing.txt")


# -- persistence ---------------------------------------------------------------------------------


@pytest.fixture(params=["metaclip", "substring"])
def saved(request, tmp_path):
    m = fc.Matcher(["cat", "new york", "york", ", dog"], mode=request.param)
    p = tmp_path / "m.fcm"
    m.save(p)
    return m, p


def test_roundtrip(saved):
    m, p = saved
    m2 = fc.Matcher.load(p)
    assert (m2.mode, m2.entries, len(m2)) == (m.mode, m.entries, len(m))
    texts = ["new york cat", "a, dog", None]
    assert m2.match(texts).to_lists() == m.match(texts).to_lists()


def test_truncated_file(saved):
    _, p = saved
    data = p.read_bytes()
    for cut in (0, 4, 20, 40, len(data) // 2, len(data) - 1):
        p.write_bytes(data[:cut])
        with pytest.raises(fc.FormatError):
            fc.Matcher.load(p)


def test_corrupted_file(saved):
    _, p = saved
    data = bytearray(p.read_bytes())
    for pos in range(32, len(data), max(1, len(data) // 50)):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        p.write_bytes(bytes(bad))
        with pytest.raises(fc.FormatError, match="checksum"):
            fc.Matcher.load(p)


def test_foreign_and_future_files(saved, tmp_path):
    _, p = saved
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(fc.FormatError, match="not a fastcurate matcher file"):
        fc.Matcher.load(foreign)
    data = bytearray(p.read_bytes())
    data[8] = 99  # format version
    p.write_bytes(bytes(data))
    with pytest.raises(fc.FormatError, match="version 99"):
        fc.Matcher.load(p)
    with pytest.raises(fc.FormatError, match="cannot open"):
        fc.Matcher.load(tmp_path / "missing.fcm")


def test_save_is_atomic(saved, tmp_path, monkeypatch):
    m, p = saved
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        m.save(p)
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir() if x.name.endswith(".tmp")] == []


# -- threads and interruption ----------------------------------------------------------------------


def test_identical_for_every_thread_count():
    rng = np.random.default_rng(0)
    vocab = ["cat", "dog", "new", "york", "city", "a", ",", ".", "red", "car"]
    texts = [" ".join(rng.choice(vocab, size=rng.integers(0, 12))) for _ in range(50_000)]
    m = fc.Matcher(["cat", "new york", "york city", "red car", "a", ", dog", "city ."])
    base = m.match(texts, threads=1)
    for threads in (2, 3, 8, 0, None):
        r = m.match(pa.array(texts), threads=threads)
        assert np.array_equal(r.offsets, base.offsets) and np.array_equal(r.ids, base.ids)


def test_ctrl_c_stops_a_long_call_promptly():
    script = textwrap.dedent(
        """
        import signal, sys, time, pyarrow as pa, fastcurate as fc
        # a shell that starts us in the background ignores SIGINT; restore Python's handler
        signal.signal(signal.SIGINT, signal.default_int_handler)
        m = fc.Matcher(["cat", "dog"])
        texts = pa.array(["a cat and a dog " * 20] * 400_000)
        print("ready", flush=True)
        t = time.time()
        try:
            for _ in range(1000):
                m.match(texts, threads=1)
        except KeyboardInterrupt:
            print(f"interrupted {time.time() - t:.3f}", flush=True)
            sys.exit(0)
        print("not interrupted", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    elapsed = time.monotonic() - sent
    assert out.startswith("interrupted"), out
    assert elapsed < 5.0, f"took {elapsed:.2f}s to stop after SIGINT"


def test_worker_thread_error_reaches_python():
    """Corrupt offsets deep inside a large array: the worker that meets them raises, the error
    crosses the thread pool and arrives as a FastcurateError naming the row."""
    n = 100_000
    good = pa.array(["a cat"] * n)
    offsets = np.frombuffer(good.buffers()[1], dtype=np.int32).copy()
    offsets[77_777] = offsets[-1] + 1000  # points past the end of the data buffer
    bad = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), good.buffers()[2]])
    m = fc.Matcher(["cat"])
    for threads in (1, 2):
        with pytest.raises(fc.InputError, match="corrupt string offsets at row 7777[67]"):
            m.match(bad, threads=threads)
