"""top_fraction_threshold equals DataComp's -np.sort(-scores)[int(n * fraction)] over all shards."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastcurate.errors import InputError, InputTypeError
from fastcurate.kernels.score_threshold import keep_at_least, order_keys, top_fraction_threshold


def datacomp(shards, fraction):
    """DataComp's get_threshold, on the concatenated scores (pandas widens mixed floats)."""
    scores = np.concatenate([np.asarray(s) for s in shards])
    n = int(len(scores) * fraction)
    return -np.sort(-scores)[n]


def _same(a, b) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fraction", [0.0, 1e-9, 0.1, 0.3, 0.5, 0.9, 0.999999])
@pytest.mark.parametrize("limit", [1, 7, 1 << 24])
def test_matches_datacomp(dtype, fraction, limit):
    rng = np.random.default_rng(7)
    shards = [rng.normal(0.3, 0.05, size=n).astype(dtype) for n in (0, 1, 1000, 5003, 17)]
    shards.append(np.round(rng.normal(0.3, 0.05, size=3000), 2).astype(dtype))  # many ties
    shards.append(np.array([-0.0, 0.0, np.inf, -np.inf, 0.3, 0.3], dtype=dtype))
    got = top_fraction_threshold(shards, fraction, collect_limit=limit)
    want = datacomp(shards, fraction)
    assert got.dtype == dtype
    assert got == want
    assert np.array_equal(keep_at_least(np.concatenate(shards), got), np.concatenate(shards) >= want)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(hnp.arrays(st.sampled_from([np.float32, np.float64]), st.integers(0, 40), elements=st.floats(width=32, allow_nan=False)), min_size=1, max_size=5),
    st.floats(0, 1, exclude_max=True),
    st.integers(1, 50),
)
def test_property(shards, fraction, limit):
    if sum(len(s) for s in shards) == 0:
        with pytest.raises(InputError, match="no CLIP scores"):
            top_fraction_threshold(shards, fraction)
        return
    got = top_fraction_threshold(shards, fraction, collect_limit=limit)
    want = datacomp(shards, fraction)
    assert got.dtype == want.dtype
    assert got == want


def test_nan_scores_sort_last_like_numpy():
    s = np.array([0.5, np.nan, 0.1, 0.3, np.nan, 0.2], dtype=np.float32)
    for fraction in (0.0, 0.2, 0.5, 0.6):
        assert top_fraction_threshold([s], fraction) == datacomp([s], fraction)
    # Index 4 of the descending order is a NaN: DataComp would keep nothing; that is an error here.
    with pytest.raises(InputError, match="NaN"):
        top_fraction_threshold([s], 0.7)


def test_float16_and_mixed_dtypes():
    a = np.array([0.1, 0.2, 0.3, 0.25], dtype=np.float16)
    assert top_fraction_threshold([a], 0.5) == datacomp([a.astype(np.float32)], 0.5)
    b = np.array([0.15, 0.35], dtype=np.float64)
    got = top_fraction_threshold([a, b], 0.5)
    assert got.dtype == np.float64 and got == datacomp([a.astype(np.float64), b], 0.5)


def test_callable_shards_are_reread_each_pass():
    rng = np.random.default_rng(1)
    data = [rng.random(1000).astype(np.float32) for _ in range(4)]
    calls = []

    def shards():
        calls.append(1)
        return (d for d in data)

    assert top_fraction_threshold(shards, 0.3, collect_limit=10) == datacomp(data, 0.3)
    assert len(calls) >= 2


def test_errors():
    s = [np.array([0.1, 0.2], dtype=np.float32)]
    for bad in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(InputError, match="fraction"):
            top_fraction_threshold(s, bad)
    with pytest.raises(InputTypeError):
        top_fraction_threshold(s, "0.3")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="one-shot"):
        top_fraction_threshold(iter(s), 0.3)
    with pytest.raises(InputTypeError, match="dtype"):
        top_fraction_threshold([np.array([1, 2])], 0.3)
    with pytest.raises(InputError, match="one-dimensional"):
        top_fraction_threshold([np.zeros((2, 2), dtype=np.float32)], 0.3)
    state = {"n": 0}

    def changing():
        state["n"] += 1
        return [np.zeros(3 + state["n"], dtype=np.float32)]

    with pytest.raises(InputError, match="changed"):
        top_fraction_threshold(changing, 0.3)


def test_order_keys_sort_like_floats():
    x = np.array([-np.inf, -1.5, -1e-30, -0.0, 0.0, 1e-45, 0.3, 2.0, np.inf], dtype=np.float32)
    k = order_keys(x)
    assert (np.diff(k.astype(np.int64)) > 0).all()
    y = x.astype(np.float64)
    assert (np.diff(order_keys(y)) > 0).all()


def test_keep_at_least_compares_in_the_scores_dtype():
    s = np.array([0.3, 0.29999998, 0.31], dtype=np.float32)
    # float32(0.3) == 0.3000000119...: DataComp's pandas comparison also happens in float32.
    assert keep_at_least(s, 0.3).tolist() == (s >= np.float32(0.3)).tolist() == [True, False, True]
    assert keep_at_least(np.array([np.nan, 1.0]), 0.5).tolist() == [False, True]
    with pytest.raises(InputError):
        keep_at_least(s, float("nan"))
