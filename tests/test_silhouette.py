"""fastcurate.kernels.silhouette against sklearn.metrics.silhouette_samples / silhouette_score."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcurate import _core
from fastcurate.errors import InputError, InputTypeError
from fastcurate.kernels.silhouette import silhouette

sk_metrics = pytest.importorskip("sklearn.metrics")


def _clustered(n, d, k, seed, spread=1.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 2
    lab = rng.integers(0, k, n)
    lab[:k] = np.arange(k)  # every label present
    x = centers[lab] + rng.standard_normal((n, d)) * spread
    return x.astype(dtype), lab


def naive_samples(x, lab, metric):
    """The definition, with every pairwise distance computed directly in float64 (no Gram-matrix
    cancellation, unlike sklearn's Euclidean distances)."""
    x = np.asarray(x, dtype=np.float64)
    _, enc = np.unique(lab, return_inverse=True)
    if metric == "cosine":
        nrm = np.linalg.norm(x, axis=1, keepdims=True)
        xn = np.divide(x, nrm, out=np.zeros_like(x), where=nrm > 0)
        D = np.clip(1.0 - xn @ xn.T, 0.0, 2.0)
    else:
        D = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, 0.0)
    k = enc.max() + 1
    sums = np.stack([D[:, enc == c].sum(1) for c in range(k)], axis=1)
    cnt = np.bincount(enc, minlength=k)
    own = sums[np.arange(len(x)), enc]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = own / (cnt[enc] - 1)
        other = sums / cnt
        other[np.arange(len(x)), enc] = np.inf
        b = other.min(1)
        s = (b - a) / np.maximum(a, b)
    return np.nan_to_num(s)


# ---- tables: sklearn's conventions ---------------------------------------------------------------

TABLE = [
    # (rows, labels): singleton clusters, duplicate rows (a = b = 0), zero rows, string labels
    ([[0, 0], [0, 1], [5, 5], [5, 6], [9, 9]], [0, 0, 1, 1, 2]),
    ([[1, 1], [1, 1], [1, 1], [2, 2]], [7, 7, 9, 9]),
    ([[0, 0], [1, 0], [0, 1], [1, 1], [0, 0]], ["b", "a", "a", "b", "b"]),
    ([[0.0, 0.0, 0.0], [1, 2, 3], [3, 2, 1], [1, 1, 1]], [0, 0, 1, 1]),
    ([[1, 0], [0, 1], [-1, 0], [0, -1], [1, 1], [-1, -1]], [0, 1, 2, 0, 1, 2]),
]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("case", range(len(TABLE)))
def test_table_matches_sklearn(metric, case):
    x, lab = TABLE[case]
    x = np.asarray(x, dtype=np.float64)
    ref = sk_metrics.silhouette_samples(x, lab, metric=metric)
    r = silhouette(x, lab, metric=metric)
    np.testing.assert_allclose(r.samples, ref, rtol=0, atol=1e-12)
    assert r.score == pytest.approx(sk_metrics.silhouette_score(x, lab, metric=metric), abs=1e-12)
    assert r.exact and r.ci is None
    assert list(r.labels) == sorted(set(lab))


def test_singleton_and_duplicates_are_zero():
    x = np.array([[0.0, 0], [0, 1], [5, 5]])
    r = silhouette(x, [0, 0, 1], metric="euclidean")
    assert r.samples[2] == 0.0  # a cluster of one row
    r = silhouette(np.array([[1.0, 1], [0.1, 0.1], [3, 3], [7, 7], [1, 2]]), [0, 0, 1, 1, 2], metric="cosine")
    assert (r.samples[:4] == 0.0).all()  # a = b = 0: every pair at cosine distance 0


# ---- properties ------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 70),
    d=st.integers(1, 24),
    kfrac=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
    metric=st.sampled_from(["cosine", "euclidean"]),
    spread=st.sampled_from([0.0, 0.01, 1.0, 10.0]),
    zeros=st.booleans(),
)
def test_property_matches_sklearn(n, d, kfrac, seed, metric, spread, zeros):
    k = 2 + int(kfrac * (n - 3))
    x, lab = _clustered(n, d, k, seed, spread)
    if zeros:
        x[seed % n] = 0.0
    r = silhouette(x, lab, metric=metric)
    np.testing.assert_allclose(r.samples, naive_samples(x, lab, metric), rtol=0, atol=1e-9)
    # sklearn computes Euclidean distances as sqrt(|x|^2 + |y|^2 - 2 x.y): identical rows come out
    # ~1e-8 apart, so it is itself only that close to the exact value.
    ref = sk_metrics.silhouette_samples(x, lab, metric=metric)
    np.testing.assert_allclose(r.samples, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_float16_float32_within_1e6_of_sklearn(metric, dtype):
    x, lab = _clustered(600, 40, 9, 3, 1.5, dtype)
    # sklearn computes float32 input in float32: compare the scores (the 1e-6), and the
    # samples against sklearn on the same values in float64.
    assert silhouette(x, lab, metric=metric).score == pytest.approx(
        sk_metrics.silhouette_score(x.astype(np.float32), lab, metric=metric), abs=1e-6
    )
    np.testing.assert_allclose(
        silhouette(x, lab, metric=metric).samples,
        sk_metrics.silhouette_samples(x.astype(np.float64), lab, metric=metric),
        atol=1e-12,
    )


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_chunks_threads_and_paths_agree(metric, simd_mode):
    x, lab = _clustered(700, 33, 6, 5, 2.0, np.float32)
    full = silhouette(x, lab, metric=metric, threads=1)
    two = silhouette(x, lab, metric=metric, threads=2)
    assert np.array_equal(full.samples, two.samples)  # deterministic whatever the thread count
    chunked = silhouette([x[:123], x[123:400], x[400:]], lab, metric=metric, chunk_rows=77)
    np.testing.assert_allclose(chunked.samples, full.samples, atol=1e-13)
    ref = sk_metrics.silhouette_samples(x.astype(np.float64), lab, metric=metric)
    np.testing.assert_allclose(full.samples, ref, atol=1e-12)


def test_euclidean_symmetric_and_row_block_kernels_agree():
    x, lab = _clustered(500, 20, 7, 8, 1.0, np.float64)
    enc = lab.astype(np.int32)
    s1, a1, b1 = _core.silhouette_euclidean_full(x, enc, 7, 0, 1 << 30)
    s2, a2, b2 = _core.silhouette_euclidean_full(x, enc, 7, 0, 0)  # budget 0: the row-block path
    np.testing.assert_allclose(s1, s2, atol=1e-13)
    np.testing.assert_allclose(a1, a2, rtol=1e-13)


def test_per_cluster_values():
    x, lab = _clustered(300, 10, 4, 2)
    r = silhouette(x, lab, metric="euclidean")
    ref = sk_metrics.silhouette_samples(x, lab, metric="euclidean")
    for j, c in enumerate(r.labels):
        assert r.per_cluster[j] == pytest.approx(ref[lab == c].mean(), abs=1e-12)
        assert r.cluster_sizes[j] == (lab == c).sum()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_sampled_estimate_and_interval(metric):
    x, lab = _clustered(3000, 16, 12, 4, 3.0, np.float32)
    exact = silhouette(x, lab, metric=metric)
    est = silhouette(x, lab, metric=metric, sample_size=400, seed=1)
    assert not est.exact and est.sample_index is not None and len(est.samples) == 400
    # each sampled s(i) is exact against all rows
    np.testing.assert_allclose(est.samples, exact.samples[est.sample_index], atol=1e-12)
    lo, hi = est.ci
    assert lo < est.score < hi and hi - lo < 0.2
    # coverage: the 95% interval holds the exact score in most of 40 seeds
    hits = 0
    for seed in range(40):
        e = silhouette(x, lab, metric=metric, sample_size=200, seed=seed)
        hits += e.ci[0] <= exact.score <= e.ci[1]
    assert hits >= 33
    assert silhouette(x, lab, metric=metric, sample_size=5000).exact  # >= n: exact


# ---- errors ----------------------------------------------------------------------------------------


def test_bad_inputs_name_the_row_and_the_fix():
    x, lab = _clustered(50, 4, 3, 0)
    bad = x.copy()
    bad[17, 2] = np.nan
    with pytest.raises(InputError, match="row 17 column 2 is NaN"):
        silhouette(bad, lab)
    bad[17, 2] = np.inf
    with pytest.raises(InputError, match="row 17 column 2 is infinite"):
        silhouette(bad, lab, metric="euclidean")
    tail = x[40:].copy()
    tail[7, 0] = np.nan
    with pytest.raises(InputError, match="row 47 column 0 is NaN"):  # global row numbers across chunks
        silhouette([x[:40], tail], lab)
    with pytest.raises(InputError, match="2 <= number of labels"):
        silhouette(x, np.zeros(50, int))
    with pytest.raises(InputError, match="2 <= number of labels"):
        silhouette(x, np.arange(50))
    with pytest.raises(InputError, match="one label per row"):
        silhouette(x, lab[:-1])
    with pytest.raises(InputError, match="mixed embedding widths"):
        silhouette([x[:20], np.zeros((30, 5))], lab)
    with pytest.raises(InputTypeError, match="float16, float32 or float64"):
        silhouette(x.astype(np.int64), lab)
    with pytest.raises(InputError, match="metric"):
        silhouette(x, lab, metric="manhattan")


# ---- real data ---------------------------------------------------------------------------------------


@pytest.mark.needs_shared
@pytest.mark.slow
def test_real_minilm_embeddings_match_sklearn():
    from cluster_fixtures import minilm_caption_embeddings

    from fastcurate.kernels.kmeans import KMeans

    emb, _, _ = minilm_caption_embeddings()
    lab = KMeans(20, seed=0).fit(emb).assign(emb).labels
    for metric in ("cosine", "euclidean"):
        r = silhouette(emb, lab, metric=metric)
        assert r.score == pytest.approx(sk_metrics.silhouette_score(emb.astype(np.float32), lab, metric=metric), abs=1e-6)
        np.testing.assert_allclose(
            r.samples, sk_metrics.silhouette_samples(emb.astype(np.float64), lab, metric=metric), atol=1e-12
        )
