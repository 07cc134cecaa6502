"""Per-cluster closest / furthest rows and ranks, streamed, against a brute-force sort."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcurate.errors import InputError
from fastcurate.kernels.cluster_rank import ClusterExtremes, ClusterRanker, rank_in_cluster


def _brute(labels, key, k, n):
    ranks = np.full(len(labels), -1)
    closest = np.full((k, n), -1)
    furthest = np.full((k, n), -1)
    for c in range(k):
        rows = [i for i in range(len(labels)) if labels[i] == c]
        rows.sort(key=lambda i: (float(key[i]), i))
        for r, i in enumerate(rows):
            ranks[i] = r
        closest[c, : min(n, len(rows))] = rows[:n]
        far = rows[::-1][:n]
        furthest[c, : len(far)] = far
    return ranks, closest, furthest


def _pieces(total, cuts):
    bounds = sorted({0, total, *[c % (total + 1) for c in cuts]})
    return list(zip(bounds[:-1], bounds[1:]))


@settings(max_examples=80, deadline=None)
@given(
    m=st.integers(0, 300),
    k=st.integers(1, 7),
    n=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    ties=st.booleans(),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_streamed_extremes_and_ranks_equal_brute_force(m, k, n, seed, ties, cuts):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, k, m)
    key = (rng.integers(0, 4, m) if ties else rng.standard_normal(m)).astype(np.float32)
    key[rng.random(m) < 0.1] = -0.0  # -0.0 and +0.0 are the same key
    ranks, closest, furthest = _brute(labels, key, k, n)
    ex = ClusterExtremes(k, n)
    ranker = ClusterRanker(k, memory_rows=1024)
    pieces = _pieces(m, cuts)
    for a, b in pieces[::-1]:  # extremes: any order of pieces
        ex.update(a, labels[a:b], key[a:b])
    for a, b in pieces:
        ranker.add(labels[a:b], key[a:b])
    res = ex.result()
    assert np.array_equal(res.closest, closest)
    assert np.array_equal(res.furthest, furthest)
    assert np.array_equal(res.sizes, np.bincount(labels[labels >= 0], minlength=k))
    got = list(ranker.ranks())
    assert [len(g) for g in got] == [b - a for a, b in pieces]
    assert np.array_equal(np.concatenate(got) if got else np.zeros(0), ranks)
    assert np.array_equal(rank_in_cluster(labels, key, k), ranks)
    sel = res.closest >= 0
    assert np.array_equal(res.closest_key[sel], key[res.closest[sel]] + np.float32(0))


def test_external_sort_with_many_runs(tmp_path):
    rng = np.random.default_rng(1)
    m, k = 60_000, 50
    labels = rng.integers(-1, k, m)
    key = rng.standard_normal(m).astype(np.float32)
    key[::7] = 0.5  # many ties
    ranker = ClusterRanker(k, memory_rows=5000, tmpdir=str(tmp_path))
    ranker.add(labels[:0], key[:0])  # empty pieces come back empty, in place
    for s in range(0, m, 3331):
        ranker.add(labels[s : s + 3331], key[s : s + 3331])
    ranker.add(labels[:0], key[:0])
    assert len(ranker._runs) > 5
    parts = list(ranker.ranks())
    assert [len(p) for p in parts] == [0] + [len(labels[s : s + 3331]) for s in range(0, m, 3331)] + [0]
    got = np.concatenate(parts)
    assert np.array_equal(got, rank_in_cluster(labels, key, k))
    assert list(tmp_path.iterdir()) == []  # the runs are deleted


def test_errors():
    with pytest.raises(InputError, match="labels must be in"):
        ClusterExtremes(3, 2).update(0, np.array([0, 3]), np.zeros(2, np.float32))
    with pytest.raises(InputError, match="NaN"):
        rank_in_cluster(np.array([0, 1]), np.array([0.0, np.nan], np.float32), 2)
    r = ClusterRanker(2, memory_rows=2048)
    r.add(np.array([0, 1]), np.zeros(2, np.float32))
    list(r.ranks())
    with pytest.raises(InputError, match="once"):
        list(r.ranks())
