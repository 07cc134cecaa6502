"""SemDeDup kernel against the naive numpy reference (exact) and the paper's torch loop."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcurate import _core
from fastcurate.errors import InputError
from fastcurate.kernels.semdedup import keep_order, semdedup
from fastcurate.kernels.semdedup_reference import naive_numpy, paper_loop_torch


def _pool(n, d, k, seed, dtype=np.float16, dup_share=0.5):
    """Unit rows in k groups, about half of them perturbed copies of another row (at scales from
    1e-4 to 0.3, so that every eps finds some duplicates and some near misses)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d))
    lab = rng.integers(0, k, n)
    x = centers[lab] + rng.standard_normal((n, d)) * 0.8
    for i in range(1, n):
        if rng.random() < dup_share:
            j = int(rng.integers(0, i))
            x[i] = x[j] + rng.standard_normal(d) * 10 ** rng.uniform(-4, -0.5)
            lab[i] = lab[j]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    centroids = np.stack([x[lab == c].mean(0) if (lab == c).any() else centers[c] for c in range(k)])
    # a cluster of opposite unit rows (d = 1: +1 and -1) has a zero mean, whose cosine would be NaN,
    # which the kernel rightly refuses: its first row stands in as the centroid
    for c in np.flatnonzero(np.linalg.norm(centroids, axis=1) < 1e-6):
        centroids[c] = x[lab == c][0] if (lab == c).any() else 1.0
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    xs = x.astype(dtype)
    x64 = xs.astype(np.float64)
    cos = (x64 @ centroids.T)[np.arange(n), lab] / np.linalg.norm(x64, axis=1)
    return xs, lab, cos.astype(np.float32), centroids.astype(np.float32)


def _same(res, eps, ref):
    tw, ms = res.twins(eps)
    rms, rtw = ref
    assert np.array_equal(tw, rtw)
    assert np.array_equal(np.isnan(ms), np.isnan(rms))
    assert np.array_equal(ms[~np.isnan(ms)], rms[~np.isnan(rms)])  # bit-identical cosines


@pytest.mark.parametrize("keep", ["hard", "easy", "random"])
@pytest.mark.parametrize("compare_to", ["all", "kept"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_equals_naive_reference(keep, compare_to, dtype):
    x, lab, cos, cent = _pool(400, 24, 5, 1, dtype)
    eps = [0.0005, 0.01, 0.08]
    res = semdedup(x, lab, cos, eps=eps, keep=keep, compare_to=compare_to, centroids=cent, seed=7)
    for e in eps:
        _same(res, e, naive_numpy(x, lab, cos, e, keep, compare_to, seed=7))
    assert res.removed_share(0.0005) < res.removed_share(0.08)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 150),
    d=st.integers(1, 40),
    k=st.integers(1, 6),
    seed=st.integers(0, 100_000),
    eps=st.sampled_from([0.0, 1e-5, 1e-3, 0.02, 0.3, 0.9]),
    compare_to=st.sampled_from(["all", "kept"]),
    dtype=st.sampled_from([np.float16, np.float32]),
    with_centroids=st.booleans(),
)
def test_property_equals_naive(n, d, k, seed, eps, compare_to, dtype, with_centroids):
    x, lab, cos, cent = _pool(n, d, k, seed, dtype)
    res = semdedup(x, lab, cos, eps=eps, compare_to=compare_to, centroids=cent if with_centroids else None,
                   batch_rows=64)
    _same(res, eps, naive_numpy(x, lab, cos, eps, "hard", compare_to))


def test_duplicate_rows_twin_is_first_and_cosine_is_one():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 16))
    x = np.repeat(base, 4, axis=0).astype(np.float32)  # rows 4i..4i+3 identical
    lab = np.zeros(12, np.int64)
    cos = np.repeat(np.array([0.2, 0.5, 0.9], np.float32), 4)
    res = semdedup(x, lab, cos, eps=1e-9)
    keep = res.keep()
    assert keep.sum() == 3 and list(np.flatnonzero(keep)) == [0, 4, 8]  # first of each group (hard)
    tw, ms = res.twins()
    assert list(tw[[1, 2, 3]]) == [0, 0, 0] and (ms[~keep] == 1.0).all()
    # eps = 0: a cosine can never exceed 1, so nothing is removed even for exact duplicates
    assert semdedup(x, lab, cos, eps=0.0).keep().all()


def test_hard_keeps_the_row_furthest_from_the_centroid():
    x = np.array([[1.0, 0.0], [1.0, 0.001], [1.0, 0.002]], np.float32)
    cos = np.array([0.9, 0.5, 0.7], np.float32)  # row 1 is the furthest from the centroid
    order, offsets, clusters = keep_order(np.zeros(3, int), cos, "hard")
    assert list(order) == [1, 2, 0] and list(offsets) == [0, 3]
    assert list(keep_order(np.zeros(3, int), cos, "easy")[0]) == [0, 2, 1]
    res = semdedup(x, np.zeros(3, int), cos, eps=0.01)
    assert list(res.keep()) == [False, True, False]
    assert list(res.twins()[0]) == [1, -1, 1]
    assert list(res.keep_rank) == [2, 0, 1]


def test_kept_mode_keeps_a_superset_and_twins_are_kept():
    x, lab, cos, cent = _pool(500, 20, 4, 3)
    for e in (0.005, 0.05):
        a = semdedup(x, lab, cos, eps=e, compare_to="all")
        g = semdedup(x, lab, cos, eps=e, compare_to="kept")
        assert (g.keep(e) | ~a.keep(e)).all() and g.keep(e).sum() >= a.keep(e).sum()
        tw, _ = g.twins(e)
        assert g.keep(e)[tw[tw >= 0]].all()


def test_unclustered_rows_and_singletons_are_kept():
    x, lab, cos, _ = _pool(60, 8, 3, 4)
    lab = lab.copy()
    lab[:10] = -1
    lab[10] = 99  # a cluster of one row
    res = semdedup(x, lab, cos, eps=0.5)
    assert res.keep()[:11].all() and res.n_clustered == 50
    assert (res.keep_rank[:10] == -1).all()


def test_threads_simd_centroids_and_batches_do_not_change_the_result(simd_mode):
    x, lab, cos, cent = _pool(900, 40, 3, 5)
    ref = semdedup(x, lab, cos, eps=[0.001, 0.03], threads=1)
    runs = [semdedup(x, lab, cos, eps=[0.001, 0.03], **kw)
            for kw in (dict(threads=2), dict(centroids=cent), dict(batch_rows=100, centroids=cent))]
    # chunked sources (the shards of a pool) give the same result
    runs += [semdedup(src, lab, cos, eps=[0.001, 0.03]) for src in ([x[:333], x[333:]], [x[:1], x[1:500], x[500:]])]
    for r in runs:
        assert np.array_equal(r.twin, ref.twin)
        assert np.array_equal(np.nan_to_num(r.max_sim, nan=-7), np.nan_to_num(ref.max_sim, nan=-7))


def test_centroid_bound_skips_tiles_on_sorted_clusters():
    x, lab, cos, cent = _pool(3000, 32, 2, 6, dup_share=0.1)
    res = semdedup(x, lab, cos, eps=0.001, centroids=cent)
    assert res.stats["tiles_skipped"] > 0.3 * res.stats["tiles_total"]
    assert np.array_equal(res.twin, semdedup(x, lab, cos, eps=0.001).twin)


def test_bad_inputs():
    x, lab, cos, cent = _pool(50, 8, 2, 0, np.float32)
    bad = x.copy()
    bad[7] = 0.0
    with pytest.raises(InputError, match="row 7 is all zeros"):
        semdedup(bad, lab, cos)
    bad[7, 3] = np.nan
    with pytest.raises(InputError, match="row 7 column 3 is NaN"):
        semdedup(bad, lab, cos)
    with pytest.raises(InputError, match=r"eps must be in \[0, 1\)"):
        semdedup(x, lab, cos, eps=1.0)
    with pytest.raises(InputError, match="float16 or float32"):
        semdedup(x.astype(np.float64), lab, cos)
    with pytest.raises(InputError, match="one value per row"):
        semdedup(x, lab[:-1], cos)
    with pytest.raises(InputError, match="compare_to"):
        semdedup(x, lab, cos, compare_to="some")
    with pytest.raises(InputError, match="centroids must be"):
        semdedup(x, lab, cos, centroids=cent[:, :3])
    with pytest.raises(InputError, match="mixed embedding widths"):
        semdedup([x[:20], np.zeros((30, 5), np.float32)], lab, cos)
    res = semdedup(x, lab, cos, eps=0.05)
    with pytest.raises(InputError, match="above the largest evaluated"):
        res.keep(0.2)


def test_kernel_rejects_bad_offsets():
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(InputError, match="offsets"):
        _core.semdedup(x, np.array([0, 3], np.int64), None, 0.9)
    with pytest.raises(InputError, match="non-decreasing"):
        _core.semdedup(x, np.array([0, 3, 2, 4], np.int64), None, 0.9)


def test_torch_port_of_the_paper_loop_agrees():
    pytest.importorskip("torch")
    import torch

    x, lab, cos, _ = _pool(700, 32, 4, 9)
    order, offsets, _ = keep_order(lab, cos, "hard")
    xn = x.astype(np.float64)
    xn /= np.linalg.norm(xn, axis=1, keepdims=True)
    eps = [0.001, 0.01, 0.1]
    res = semdedup(x, lab, cos, eps=eps)
    port64 = paper_loop_torch(xn, order, offsets, eps, dtype=torch.float64)
    for e in eps:
        assert np.array_equal(port64["remove"][e], ~res.keep(e))
        drop = port64["remove"][e]
        assert np.array_equal(port64["twin"][drop], res.twin[drop])
    # In float32, as the reference runs, only pairs within float32 rounding of 1 - eps may differ.
    port32 = paper_loop_torch(xn.astype(np.float32), order, offsets, eps)
    for e in eps:
        diff = port32["remove"][e] != ~res.keep(e)
        assert diff.sum() <= 2
        if diff.any():
            assert np.all(np.abs(port32["M"][diff] - (1 - e)) < 1e-6)


@pytest.mark.needs_shared
@pytest.mark.slow
def test_real_minilm_embeddings_equal_naive_and_paper_loop():
    from cluster_fixtures import minilm_caption_embeddings

    from fastcurate.kernels.kmeans import KMeans

    emb, texts, _ = minilm_caption_embeddings()
    km = KMeans(12, seed=0).fit(emb)
    a = km.assign(emb)
    eps = [0.001, 0.01, 0.05, 0.1]
    res = semdedup(emb, a.labels, a.cos, eps=eps, centroids=km.centroids_)
    for e in eps:
        _same(res, e, naive_numpy(emb, a.labels, a.cos, e))
    # LAION alt-texts repeat: identical texts are removed at every eps, their twins are the same text
    tw, ms = res.twins(0.001)
    dup = np.flatnonzero(tw >= 0)
    assert len(dup) > 0
    assert sum(texts[i] == texts[tw[i]] for i in dup) >= 1
    order, offsets, _ = keep_order(a.labels, a.cos, "hard")
    xn = emb.astype(np.float64)
    xn /= np.linalg.norm(xn, axis=1, keepdims=True)
    port = paper_loop_torch(xn.astype(np.float32), order, offsets, eps)
    for e in eps:
        diff = port["remove"][e] != ~res.keep(e)
        assert np.all(np.abs(port["M"][diff] - (1 - e)) < 1e-6)
