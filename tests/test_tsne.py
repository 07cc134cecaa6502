"""fastcurate.kernels.tsne: openTSNE map, deterministic for a seed and thread count."""

from __future__ import annotations

import numpy as np
import pytest

from fastcurate.errors import InputError
from fastcurate.kernels.tsne import pca_project, tsne

pytest.importorskip("openTSNE")


def _blobs(n=240, d=20, k=3, seed=0):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, k, n)
    x = rng.standard_normal((k, d))[lab] * 3 + rng.standard_normal((n, d))
    return x.astype(np.float16), lab


@pytest.mark.slow
def test_deterministic_and_separates_blobs():
    x, lab = _blobs()
    a, kl = tsne(x, seed=3, threads=1, n_iter=150, early_exaggeration_iter=100, pca_dims=10, return_kl=True)
    b = tsne(x, seed=3, threads=1, n_iter=150, early_exaggeration_iter=100, pca_dims=10)
    assert a.shape == (240, 2) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.isfinite(kl) and kl > 0
    # blobs stay apart: each point's nearest map neighbour is in its own blob
    d = ((a[:, None] - a[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (lab[d.argmin(1)] == lab).mean() > 0.95


def test_pca_projection_is_deterministic_up_to_nothing():
    x, _ = _blobs(100, 12)
    p = pca_project(x.astype(np.float64), 4)
    q = pca_project(x.astype(np.float64)[::-1].copy(), 4)[::-1]
    np.testing.assert_allclose(p, q, atol=1e-9)  # same signs whatever the row order
    assert np.allclose(p.mean(0), 0, atol=1e-9)


def test_bad_inputs():
    x, _ = _blobs(60, 5)
    with pytest.raises(InputError, match="at least 91 rows"):
        tsne(x, perplexity=30)
    y = x.astype(np.float32)
    y[4] = 0
    with pytest.raises(InputError, match="row 4 is all zeros"):
        tsne(y, perplexity=5)
    with pytest.raises(InputError, match="pca_dims"):
        tsne(x, perplexity=5, pca_dims=1)
