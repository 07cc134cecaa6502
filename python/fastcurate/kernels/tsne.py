"""2-D t-SNE map of embeddings with openTSNE (FFT-accelerated interpolation, Linderman et al. 2019).

Why openTSNE: measured against ``sklearn.manifold.TSNE`` (Barnes-Hut) at comparable KL divergence
in benchmarks/bench_cluster.py (see benchmarks/RESULTS.md and docs/cluster.md): its FFT gradient
is O(n) per iteration where Barnes-Hut is O(n log n), and its neighbour search is approximate
(Annoy) where sklearn's is exact.

Input handling: rows are L2-normalised (the embeddings' geometry is angular: on unit vectors
squared Euclidean distance is 2 - 2 cos), then, with ``pca_dims`` (default 50), projected on their
top principal components -- the usual t-SNE preprocessing, which makes the neighbour search
cheaper and removes noise dimensions.

Determinism: for a seed and a thread count the map is bit-identical between runs (the PCA is an
exact SVD, openTSNE seeds Annoy and its initialisation with ``seed``); a different ``threads``
value changes the order of floating-point sums and therefore the map (not its quality).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import InputError, ModelError
from ._emb import EmbeddingSource, as_chunks, first_bad_row_message, total_rows

__all__ = ["tsne", "pca_project"]


def pca_project(x: np.ndarray, dims: int) -> np.ndarray:
    """Rows of ``x`` (float64) projected on their top ``dims`` principal components, with signs
    fixed (largest-magnitude loading positive) so that the result is deterministic."""
    xc = x - x.mean(axis=0)
    # The d x d covariance is small (d <= a few thousand) and its eigendecomposition is exact.
    cov = xc.T @ xc
    vals, vecs = np.linalg.eigh(cov)
    top = vecs[:, np.argsort(vals)[::-1][:dims]]
    signs = np.sign(top[np.argmax(np.abs(top), axis=0), np.arange(top.shape[1])])
    signs[signs == 0] = 1.0
    return xc @ (top * signs)


def tsne(
    emb: EmbeddingSource,
    seed: int = 0,
    perplexity: float = 30.0,
    n_iter: int = 500,
    early_exaggeration_iter: int = 250,
    pca_dims: Optional[int] = 50,
    threads: Optional[int] = None,
    verbose: bool = False,
    return_kl: bool = False,
    **opentsne_kwargs: Any,
) -> Any:
    """t-SNE map of the rows of ``emb``: float32 array (n, 2), or ``(map, kl_divergence)`` with
    ``return_kl=True`` (openTSNE's KL divergence of the final map). See the module docstring.

    Raises InputError for fewer than 3 * perplexity + 1 rows (perplexity needs neighbours),
    NaN / infinite or all-zero rows. Extra keyword arguments go to ``openTSNE.TSNE``.
    """
    try:
        import openTSNE  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover
        raise ModelError("tsne needs openTSNE: pip install openTSNE") from None
    chunks = as_chunks(emb)
    n = total_rows(chunks)
    if perplexity <= 0:
        raise InputError(f"perplexity must be > 0, got {perplexity}")
    if n < 3 * perplexity + 1:
        raise InputError(
            f"t-SNE with perplexity {perplexity} needs at least {int(3 * perplexity) + 1} rows, got {n}; "
            "lower the perplexity"
        )
    x = np.concatenate([np.asarray(c, dtype=np.float64) for c in chunks]) if len(chunks) > 1 else np.asarray(chunks[0], dtype=np.float64)
    ok = np.isfinite(x).all(axis=1) & np.any(x != 0, axis=1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise InputError(first_bad_row_message(x[i : i + 1], i, "embeddings", True))
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if pca_dims is not None and pca_dims < x.shape[1]:
        if pca_dims < 2:
            raise InputError(f"pca_dims must be >= 2 or None, got {pca_dims}")
        x = pca_project(x, int(pca_dims))
    n_jobs = 1 if threads == 1 else (-1 if threads is None else int(threads))
    if threads is not None and int(threads) < 1:
        raise InputError(f"threads must be >= 1 or None, got {threads}")
    model = openTSNE.TSNE(
        n_components=2,
        perplexity=perplexity,
        n_iter=n_iter,
        early_exaggeration_iter=early_exaggeration_iter,
        metric="euclidean",
        negative_gradient_method="fft",
        initialization="pca",
        random_state=int(seed),
        n_jobs=n_jobs,
        verbose=verbose,
        **opentsne_kwargs,
    )
    emb2 = model.fit(np.ascontiguousarray(x, dtype=np.float32))
    out = np.asarray(emb2, dtype=np.float32)
    if return_kl:
        return out, float(getattr(emb2, "kl_divergence", float("nan")))
    return out
