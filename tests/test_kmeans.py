"""fastcurate.kernels.kmeans: faiss k-means trained on a sample, streamed assignment, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fastcurate.errors import InputError, InputTypeError
from fastcurate.kernels.kmeans import Assignment, KMeans

pytest.importorskip("faiss")


def _blobs(n, d, k, seed, spread=0.3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d))
    lab = rng.integers(0, k, n)
    x = centers[lab] + rng.standard_normal((n, d)) * spread
    return x.astype(dtype), lab


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_deterministic_for_a_seed_and_any_thread_count(metric):
    x, _ = _blobs(3000, 24, 12, 0)
    a = KMeans(12, metric=metric, seed=5, threads=1).fit(x)
    b = KMeans(12, metric=metric, seed=5, threads=1).fit(x)
    c = KMeans(12, metric=metric, seed=5, threads=2).fit(x)
    assert np.array_equal(a.centroids_, b.centroids_)
    assert np.array_equal(a.centroids_, c.centroids_)
    assert not np.array_equal(a.centroids_, KMeans(12, metric=metric, seed=6).fit(x).centroids_)


def test_assignment_is_the_nearest_centroid():
    x, _ = _blobs(2000, 16, 8, 1)
    for metric in ("cosine", "euclidean"):
        km = KMeans(8, metric=metric, seed=0).fit(x)
        a = km.assign(x)
        c = km.centroids_.astype(np.float64)
        x64 = x.astype(np.float64)
        if metric == "cosine":
            xn = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
            sims = xn @ c.T
            assert np.allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)  # spherical: unit centroids
            best = sims.max(1)
            assert np.all(sims[np.arange(len(x)), a.labels] >= best - 1e-5)
            np.testing.assert_allclose(a.cos, best, atol=1e-5)
            np.testing.assert_allclose(a.sqdist, 2 - 2 * best, atol=1e-4)
        else:
            d2 = ((x64[:, None, :] - c[None]) ** 2).sum(-1)
            best = d2.min(1)
            assert np.all(d2[np.arange(len(x)), a.labels] <= best + 1e-3)
            np.testing.assert_allclose(a.sqdist, best, rtol=1e-4, atol=1e-3)
            cosv = (x64 * c[a.labels]).sum(1) / np.linalg.norm(x64, axis=1) / np.linalg.norm(c[a.labels], axis=1)
            np.testing.assert_allclose(a.cos, cosv, atol=1e-5)
        assert km.inertia(x) == pytest.approx(
            ((x64 / (np.linalg.norm(x64, axis=1, keepdims=True) if metric == "cosine" else 1) - c[a.labels]) ** 2).sum(),
            rel=1e-6,
        )


def test_recovers_well_separated_blobs():
    from sklearn.metrics import adjusted_rand_score

    x, lab = _blobs(4000, 32, 10, 2, spread=0.1)
    km = KMeans(10, seed=0, niter=30, nredo=3).fit(x)
    assert adjusted_rand_score(lab, km.assign(x).labels) > 0.95


def test_streaming_float16_memmap_equals_in_memory(tmp_path):
    x, _ = _blobs(5000, 20, 6, 3, dtype=np.float16)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    km = KMeans(6, seed=1, train_size=1500).fit(mm)
    assert len(km.train_rows_) == 1500 and np.all(np.diff(km.train_rows_) > 0)
    whole = km.assign(x)
    streamed = Assignment.concat(list(km.assign_chunks((mm[s : s + 777] for s in range(0, 5000, 777)))))
    assert np.array_equal(whole.labels, streamed.labels)
    assert np.array_equal(whole.cos, streamed.cos)
    parts = km.assign([mm[:1234], mm[1234:]], chunk_rows=500)
    assert np.array_equal(parts.labels, whole.labels)
    # the same sample whatever the chunking of the source
    assert np.array_equal(KMeans(6, seed=1, train_size=1500).fit([mm[:100], mm[100:]]).centroids_, km.centroids_)


def test_from_centroids_round_trip():
    x, _ = _blobs(1000, 8, 4, 4)
    km = KMeans(4, seed=0).fit(x)
    km2 = KMeans.from_centroids(km.centroids_ * 3.0)  # renormalised for the cosine metric
    assert np.array_equal(km.assign(x).labels, km2.assign(x).labels)


def test_empty_clusters_are_reseeded():
    # 10 distinct points, k = 8, many copies: random init picks duplicates, leaving clusters empty
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((10, 6))
    x = pts[rng.integers(0, 3, 400)].astype(np.float32)
    x[:5] = pts[3:8]
    km = KMeans(8, metric="euclidean", seed=3, niter=10).fit(x)
    assert km.n_reseeded_ > 0
    assert km.centroids_.shape == (8, 6) and np.isfinite(km.centroids_).all()


def test_bad_inputs_name_rows_and_fixes():
    x, _ = _blobs(300, 8, 3, 5)
    with pytest.raises(InputError, match="k=400 clusters need at least 400 training rows"):
        KMeans(400).fit(x)
    bad = x.copy()
    bad[123, 4] = np.nan
    with pytest.raises(InputError, match="row 123 column 4 is NaN"):
        KMeans(3, train_size=300).fit(bad)
    with pytest.raises(InputError, match="row 123 column 4 is NaN"):
        KMeans(3, seed=0).fit(x).assign(bad)
    zero = x.copy()
    zero[42] = 0
    with pytest.raises(InputError, match="row 42 is all zeros"):
        KMeans(3).fit(zero)
    KMeans(3, metric="euclidean").fit(zero)  # a zero row is a point like any other in Euclidean space
    km = KMeans(3, seed=0).fit(x)
    a = km.assign(zero, on_invalid="mark")
    assert a.labels[42] == -1 and np.isnan(a.cos[42]) and (a.labels[np.arange(300) != 42] >= 0).all()
    with pytest.raises(InputError, match="has 5 dims but the centroids have 8"):
        km.assign(np.zeros((4, 5), np.float32))
    with pytest.raises(InputError, match="mixed embedding widths"):
        KMeans(3).fit([x, np.zeros((10, 4), np.float32)])
    with pytest.raises(InputTypeError, match="float16, float32 or float64"):
        KMeans(3).fit(x.astype(np.int32))
    with pytest.raises(InputError, match="stack"):
        KMeans(3).fit([x[0]])
    with pytest.raises(InputError, match="not fitted"):
        KMeans(3).assign(x)
    with pytest.raises(InputError, match="metric"):
        KMeans(3, metric="l1")  # type: ignore[arg-type]


@pytest.mark.needs_shared
@pytest.mark.slow
def test_real_coco_captions_cluster_by_photo():
    """COCO has 5 human captions per photo: spherical k-means of their MiniLM embeddings should
    group captions of the same photo (NMI against the photo id)."""
    from cluster_fixtures import minilm_caption_embeddings
    from sklearn.metrics import normalized_mutual_info_score

    emb, _, src = minilm_caption_embeddings()
    coco = np.array([s.startswith("coco:") for s in src])
    x = emb[coco]
    photo = np.array([s for s in src if s.startswith("coco:")])
    km = KMeans(79, seed=0, niter=30, nredo=2).fit(x)
    nmi = normalized_mutual_info_score(photo, km.assign(x).labels)
    assert nmi > 0.75, nmi
