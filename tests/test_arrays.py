"""io/arrays.py: numpy -> Arrow without pa.array, and a curate run that never imports pandas."""

from __future__ import annotations

import importlib.util
import os
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

import fastcurate
from fastcurate.io.arrays import bool_array, from_numpy, null_mask, repeat_string, string_array


@given(st.lists(st.booleans(), max_size=200), st.integers(0, 7))
@settings(max_examples=200, deadline=None)
def test_bool_array_equals_pa_array(bits, skip):
    m = np.array(bits, dtype=bool)[skip:]  # also an offset view, whose bits do not start at byte 0
    got = bool_array(m)
    assert got.type == pa.bool_() and got.null_count == 0
    assert got.equals(pa.array(m))
    # the use it exists for: a filter mask
    t = pa.RecordBatch.from_arrays([pa.array(np.arange(len(m)))], names=["x"])
    assert t.filter(got).column(0).to_pylist() == np.flatnonzero(m).tolist()


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"])
def test_from_numpy_equals_pa_array(dtype):
    a = (np.arange(-5, 20) if dtype[0] in "if" else np.arange(0, 25)).astype(dtype)
    got = from_numpy(a)
    assert got.equals(pa.array(a))
    # strided and big-endian inputs are made contiguous, native-endian
    assert from_numpy(a[::3]).equals(pa.array(a[::3]))
    assert from_numpy(a.astype(np.dtype(dtype).newbyteorder(">"))).equals(pa.array(a))


def test_from_numpy_casts_within_kind():
    assert from_numpy(np.arange(4, dtype=np.int64), pa.int32()).equals(pa.array([0, 1, 2, 3], pa.int32()))
    assert from_numpy(np.array([0.5, 2.0]), pa.float32()).equals(pa.array([0.5, 2.0], pa.float32()))
    assert from_numpy(np.array([1, 2], np.int32), pa.float64()).equals(pa.array([1.0, 2.0]))
    assert from_numpy(np.array([True, False])).equals(pa.array([True, False]))
    with pytest.raises(TypeError):
        from_numpy(np.array([0.5]), pa.int32())  # would truncate
    with pytest.raises(TypeError):
        from_numpy(np.array(["a"]))
    with pytest.raises(TypeError):
        from_numpy(np.array([1]), pa.string())
    with pytest.raises(ValueError):
        from_numpy(np.zeros((2, 2)))


@given(st.lists(st.text(max_size=12), max_size=30))
@settings(max_examples=100, deadline=None)
def test_string_array_equals_pa_array(values):
    assert string_array(values).equals(pa.array(values, pa.string()))


@pytest.mark.parametrize("value,n", [("curate", 0), ("curate", 1), ("not_sampled", 1000), ("", 5), ("é–", 3)])
def test_repeat_string(value, n):
    assert repeat_string(value, n).equals(pa.array([value] * n, pa.string()))


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas is not installed: nothing to check")
def test_curate_run_does_not_import_pandas(tmp_path):
    # pa.array / pa.scalar import pandas (0.15-0.25 s) in every process that has it installed; the
    # runner and curate build their Arrow arrays from buffers instead. A stray pa.array in either
    # hot path brings the import back and fails this test.
    rng = np.random.default_rng(0)
    n = 3000
    words = ["cat", "dog", "a photo of", "red", "car", "the", "tree", "zzz"]
    text = [" ".join(rng.choice(words, size=4)) if i % 97 else None for i in range(n)]
    uid = [None if i % 211 == 5 else f"{rng.integers(0, 2**63):016x}{rng.integers(0, 2**63):016x}" for i in range(n)]
    pq.write_table(pa.table({"uid": uid, "TEXT": text}), tmp_path / "s.parquet", row_group_size=1000)
    code = textwrap.dedent(f"""
        import sys
        from fastcurate.stages.curate.stage import curate
        for output in ("rows", "index"):
            s = curate([{str(tmp_path / 's.parquet')!r}], {str(tmp_path)!r} + "/out-" + output, t=5,
                       metadata=["cat", "dog", "red", "car", "tree"], progress=False, plot=False, output=output,
                       batch_size=700)
            assert s["rows_in"] == s["rows_kept"] + sum(s["rows_dropped"].values()), s
            assert s["rows_dropped"]["null_id"] and s["rows_dropped"]["null_text"], s["rows_dropped"]
        print("pandas" in sys.modules)
    """)
    env = dict(os.environ)  # the interpreter imports this test's fastcurate (installed or the source tree)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(fastcurate.__file__).parents[1])] + env.get("PYTHONPATH", "").split(os.pathsep))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1] == "False", "a curate run imported pandas"


@given(st.lists(st.one_of(st.none(), st.booleans()), max_size=100), st.integers(0, 9))
@settings(max_examples=200, deadline=None)
def test_null_mask(values, skip):
    arr = pa.array(values, pa.bool_()).slice(min(skip, len(values)))  # sliced: bitmaps at an offset
    assert null_mask(arr).tolist() == [v is None for v in arr.to_pylist()]
    s = pa.array([None if v is None else str(v) for v in values], pa.string()).slice(min(skip, len(values)))
    assert null_mask(s).tolist() == [v is None for v in s.to_pylist()]
    assert null_mask(pa.nulls(3)).tolist() == [True] * 3


def test_runner_column_conversion_matches_pa_array():
    # stage columns given as numpy: from buffers where numpy's same-kind cast reaches the field's
    # type, else pa.array as before (its own errors included)
    from fastcurate.runner.shard import _to_arrow

    cases = [(np.array([1, 2, 3], np.int64), pa.int32()), (np.array([0.5, 1.5]), pa.float32()),
             (np.array([1, 2], np.uint8), pa.int64()), (np.array([True, False, True]), pa.bool_()),
             (np.array([1.0, 2.0]), pa.int64())]
    for values, t in cases:
        assert _to_arrow(values, pa.field("x", t)).equals(pa.array(values, type=t))
    with pytest.raises(pa.ArrowInvalid):
        _to_arrow(np.array([1.5]), pa.field("x", pa.int32()))  # pa.array refuses to truncate


def test_package_root_imports_lazily_and_every_public_name_resolves():
    """`import fastcurate` (every command pays it) leaves the ONNX encoders, the embed stage, the
    judge, clustering, pipeline and report unimported until first used; each name in __all__ then
    resolves."""
    code = textwrap.dedent("""
        import sys
        import fastcurate
        heavy = ("fastcurate.models", "fastcurate.stages.embed.stage", "fastcurate.stages.judge",
                 "fastcurate.kernels.kmeans", "fastcurate.pipeline", "fastcurate.report")
        print(sorted(m for m in heavy if m in sys.modules))
        missing = [n for n in fastcurate.__all__ if getattr(fastcurate, n, None) is None]
        print(missing)
        print(fastcurate.models.ClipEncoder is fastcurate.ClipEncoder)
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(fastcurate.__file__).parents[1])] + env.get("PYTHONPATH", "").split(os.pathsep))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines() == ["[]", "[]", "True"], p.stdout
