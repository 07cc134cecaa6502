"""The pair-mining kernel (fastcurate.kernels.pairs, cpp/src/pairs.cpp) against its numpy reference:
table tests, hypothesis properties, thread independence, layout independence of the grouping, and
the errors bad inputs get."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcurate import _core
from fastcurate.errors import InputError
from fastcurate.kernels.pairs import (SCORE_NAMES, group_rows, label_csr, label_csr_arrow, label_strings, mine_pairs,
                                      mine_pairs_reference, pair_priority, splitmix64, vectors)


def _same(a, b, atol=2e-6):
    for f in ("query", "target", "group", "priority"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    for f in SCORE_NAMES:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert np.array_equal(np.isnan(x), np.isnan(y)), f
        assert np.allclose(x, y, atol=atol, equal_nan=True), (f, x, y)
    assert a.possible == b.possible


def test_priority_matches_numpy_and_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, size=1000, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=1000, dtype=np.int64).astype(np.uint64)
    for seed in (0, 1, 2**64 - 1):
        p = pair_priority(a, b, seed)
        assert np.array_equal(p, _core.pair_priority(a, b, seed))
        assert np.array_equal(p, pair_priority(b, a, seed))
    assert not np.array_equal(pair_priority(a, b, 0), pair_priority(a, b, 1))
    # SplitMix64's published first outputs for state 0 (the generator adds the constant first)
    assert int(splitmix64(np.array([0], np.uint64))[0]) == 0xE220A8397B1DCDAF


def test_half_floats_exhaustive():
    bits = np.arange(65536, dtype=np.uint64)
    ref = bits.astype(np.uint16).view(np.float16).astype(np.float64)
    got = _core.half_to_float(bits)
    assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(got[~np.isnan(ref)], ref[~np.isnan(ref)])


def test_table_one_group_of_three():
    uh = np.array([10, 20, 30], np.uint64)
    img = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    starts = np.array([0, 3], np.int64)
    full = mine_pairs(starts, uh, seed=7, max_pairs_per_group=0, image=img)
    assert full.possible == 3 and len(full) == 3
    # every unordered pair once, in priority order
    pr = pair_priority(np.array([10, 10, 20], np.uint64), np.array([20, 30, 30], np.uint64), 7)
    assert np.array_equal(np.sort(full.priority), np.sort(pr)) and np.all(np.diff(full.priority.astype(np.float64)) >= 0)
    assert {frozenset(p) for p in zip(full.query.tolist(), full.target.tolist())} == {frozenset({0, 1}), frozenset({0, 2}),
                                                                                        frozenset({1, 2})}
    for q, t, s, p in zip(full.query, full.target, full.image_sim, full.priority):
        lo, hi = (q, t) if uh[q] < uh[t] else (t, q)
        assert q == (hi if int(p) >> 63 else lo)
        assert s == pytest.approx(float(img[q] @ img[t] / np.linalg.norm(img[q]) / np.linalg.norm(img[t])), abs=1e-6)
    one = mine_pairs(starts, uh, seed=7, max_pairs_per_group=1, image=img)
    assert len(one) == 1 and one.priority[0] == full.priority[0] and one.possible == 3
    assert np.isnan(one.text_sim).all() and np.isnan(one.label_overlap).all()


def test_table_labels_cross_and_bad_vectors():
    uh = np.array([1, 2, 3, 4], np.uint64)
    starts = np.array([0, 2, 4], np.int64)
    img = np.array([[1, 0], [1, 0], [0, 0], [1, 2]], np.float32)  # row 2: zero vector
    txt = np.array([[0, 1], [1, 0], [1, 0], [np.nan, 1]], np.float32)  # row 3: not finite
    lab = label_csr([["a", "b"], ["B", "c"], [], ["a"]])
    r = mine_pairs(starts, uh, image=img, text=txt, cross=True, labels=lab, max_pairs_per_group=5)
    ref = mine_pairs_reference(starts, uh, image=img, text=txt, cross=True, labels=lab, max_pairs_per_group=5)
    _same(r, ref)
    assert len(r) == 2
    first = {frozenset((q, t)): k for k, (q, t) in enumerate(zip(r.query.tolist(), r.target.tolist()))}
    k01, k23 = first[frozenset({0, 1})], first[frozenset({2, 3})]
    assert r.image_sim[k01] == pytest.approx(1.0) and r.text_sim[k01] == pytest.approx(0.0, abs=1e-7)
    assert r.label_overlap[k01] == pytest.approx(1 / 3)  # {a, b} vs {b, c}: "B" folds to "b"
    assert np.isnan(r.image_sim[k23]) and np.isnan(r.text_sim[k23]) and np.isnan(r.label_overlap[k23])


def _random_case(rng, n, n_groups, d, f16, dup):
    gh = rng.integers(0, n_groups, size=n).astype(np.uint64)
    uh = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    if dup and n > 3:
        uh[1] = uh[2]
        gh[1] = gh[2]
    order, starts = group_rows(gh, uh)
    img = rng.normal(size=(n, d)).astype(np.float16 if f16 else np.float32)
    txt = rng.normal(size=(n, d)).astype(np.float32)
    if n > 4:
        img[3] = 0
        txt[4, 0] = np.nan
    labs = [[str(x) for x in rng.integers(0, 8, size=int(rng.integers(0, 4)))] for _ in range(n)]
    lab = label_csr([labs[i] for i in order])
    return starts, np.ascontiguousarray(uh[order]), img[order], txt[order], lab


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 120), n_groups=st.integers(1, 30), d=st.integers(1, 20), cap=st.integers(-1, 8),
       seed=st.integers(0, 2**64 - 1), f16=st.booleans(), dup=st.booleans(), cross=st.booleans(),
       with_labels=st.booleans(), rs=st.integers(0, 2**32 - 1))
def test_kernel_equals_reference(n, n_groups, d, cap, seed, f16, dup, cross, with_labels, rs):
    rng = np.random.default_rng(rs)
    starts, uh, img, txt, lab = _random_case(rng, n, n_groups, d, f16, dup)
    kw = dict(seed=seed, max_pairs_per_group=cap, image=img, text=txt, cross=cross, labels=lab if with_labels else None)
    got = mine_pairs(starts, uh, threads=1, **kw)
    _same(got, mine_pairs_reference(starts, uh, **kw), atol=1e-5)
    # the cap is min(cap, m(m-1)/2) per group, the order (group, priority)
    m = np.diff(starts)
    allp = m * (m - 1) // 2
    assert len(got) == (np.minimum(allp, cap).sum() if cap > 0 else allp.sum()) and got.possible == allp.sum()
    assert np.all(np.diff(got.group) >= 0)


def test_threads_and_big_groups_give_the_same_bytes():
    rng = np.random.default_rng(3)
    starts, uh, img, txt, lab = _random_case(rng, 30000, 2000, 32, True, False)
    # plus one large group (the heap path)
    a = mine_pairs(starts, uh, image=img, text=txt, labels=lab, max_pairs_per_group=7, threads=1)
    b = mine_pairs(starts, uh, image=img, text=txt, labels=lab, max_pairs_per_group=7, threads=3)
    _same(a, b, atol=0)
    big = np.array([0, 700], np.int64)
    x = mine_pairs(big, uh[:700], image=img[:700], max_pairs_per_group=50, seed=5)
    y = mine_pairs_reference(big, uh[:700], image=img[:700], max_pairs_per_group=50, seed=5)
    _same(x, y)
    assert len(x) == 50 and x.possible == 700 * 699 // 2


def test_grouping_does_not_depend_on_row_order():
    rng = np.random.default_rng(5)
    n = 500
    gh = rng.integers(0, 40, size=n).astype(np.uint64)
    uh = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    img = rng.normal(size=(n, 8)).astype(np.float32)
    o1, s1 = group_rows(gh, uh)
    perm = rng.permutation(n)
    o2, s2 = group_rows(gh[perm], uh[perm])
    assert np.array_equal(s1, s2) and np.array_equal(perm[o2], o1)
    r1 = mine_pairs(s1, uh[o1], image=img[o1], max_pairs_per_group=3)
    r2 = mine_pairs(s2, uh[perm][o2], image=img[perm][o2], max_pairs_per_group=3)
    _same(r1, r2, atol=0)


def test_label_csr_arrow_equals_python_and_vectors():
    t = pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("source", pa.string()),
                            pa.field("score", pa.float32())]))
    rows = [[{"label": "Dog", "source": "x", "score": 1.0}, {"label": " dog", "source": "y", "score": 0.5}], None, [],
            [{"label": "cat", "source": "x", "score": 0.2}, {"label": None, "source": "x", "score": 0.1}]]
    col = pa.array(rows, t)
    py = label_csr([[d["label"] for d in (r or []) if d["label"] is not None] for r in rows])
    ar = label_csr_arrow(col)
    assert np.array_equal(py[0], ar[0]) and np.array_equal(py[1], ar[1])
    assert list(np.diff(ar[0])) == [1, 0, 0, 1]
    assert label_strings(col.slice(1)).to_pylist() == [[], [], ["cat", None]]
    e = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.float16)), 3, mask=pa.array([False, True,
                                                                                                      False, False]))
    a, v = vectors(e.slice(1))
    assert a.dtype == np.float16 and a.shape == (3, 3) and v.tolist() == [False, True, True]
    assert a[0].tolist() == [0, 0, 0] and a[1].tolist() == [6, 7, 8]
    a2, v2 = vectors(pa.array([[1.0, 2.0], None, [3.0, 4.0]], pa.list_(pa.float32())))
    assert a2.tolist() == [[1, 2], [0, 0], [3, 4]] and v2.tolist() == [True, False, True]
    with pytest.raises(InputError, match="different lengths"):
        vectors(pa.array([[1.0], [1.0, 2.0]]))


def test_bad_inputs_are_named():
    uh = np.arange(4, dtype=np.uint64)
    ok = np.array([0, 2, 4], np.int64)
    with pytest.raises(InputError, match="uint64"):
        mine_pairs(ok, np.arange(4))
    with pytest.raises(InputError, match="end at the number of rows"):
        mine_pairs(np.array([0, 3], np.int64), uh)
    with pytest.raises(InputError, match="non-decreasing"):
        mine_pairs(np.array([0, 3, 2, 4], np.int64), uh)
    with pytest.raises(InputError, match="float32 or float16"):
        mine_pairs(ok, uh, image=np.zeros((4, 2), np.float64))
    with pytest.raises(InputError, match="n = 4 rows"):
        mine_pairs(ok, uh, image=np.zeros((3, 2), np.float32))
    with pytest.raises(InputError, match="one size"):
        mine_pairs(ok, uh, image=np.zeros((4, 2), np.float32), text=np.zeros((4, 3), np.float32), cross=True)
    with pytest.raises(InputError, match="cross scores need"):
        mine_pairs(ok, uh, image=np.zeros((4, 2), np.float32), cross=True)
    with pytest.raises(InputError, match="sorted and unique"):
        mine_pairs(ok, uh, labels=(np.array([0, 2, 2, 2, 2], np.int64), np.array([5, 3], np.uint64)))
    with pytest.raises(InputError, match="n \\+ 1"):
        mine_pairs(ok, uh, labels=(np.array([0, 0], np.int64), np.zeros(0, np.uint64)))
    with pytest.raises(InputError, match="C-contiguous"):
        _core.mine_pairs(ok, uh, 0, 1, image=np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(InputError, match="seed"):
        mine_pairs(ok, uh, seed=-1)
    with pytest.raises(InputError, match="threads"):
        mine_pairs(ok, uh, threads=-2)


def test_vector_paths_give_identical_scores():
    """The AVX2/F16C path (when the CPU has it) and the scalar path do the same float operations in
    the same order: bit-identical scores."""
    rng = np.random.default_rng(8)
    starts, uh, img, txt, lab = _random_case(rng, 3000, 300, 77, True, False)
    kw = dict(image=img, text=txt.astype(np.float32), cross=True, labels=lab, max_pairs_per_group=6)
    try:
        _core.set_simd(True)
        a = mine_pairs(starts, uh, **kw)
        _core.set_simd(False)
        b = mine_pairs(starts, uh, **kw)
    finally:
        _core.set_simd(True)
    _same(a, b, atol=0)
    for f in SCORE_NAMES:
        assert getattr(a, f).tobytes() == getattr(b, f).tobytes()
