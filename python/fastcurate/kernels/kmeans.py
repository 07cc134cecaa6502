"""k-means over embeddings with faiss: train on a sample, then assign any number of rows in chunks.

* ``metric="cosine"`` (default): spherical k-means. Rows are L2-normalised (in float32) before
  training and assignment, centroids are renormalised after every iteration (faiss
  ``spherical=True``), a row goes to the centroid of largest inner product, and its score is
  the cosine to that centroid. This is what SemDeDup and the cluster judge use.
* ``metric="euclidean"``: plain Lloyd k-means on the rows as given (squared L2).

Training reads ``train_size`` rows drawn uniformly without replacement with ``seed`` (all rows
when the pool is smaller), so a 10^9-row pool is clustered from a sample that fits in memory;
:meth:`KMeans.assign_chunks` then streams every row, chunk by chunk (float16 rows are converted
one chunk at a time, so a memory-mapped pool is never all in RAM).

Empty clusters: when an iteration leaves a centroid without rows, faiss re-seeds it by splitting a
populated cluster: it draws a cluster with probability proportional to (size - 1), copies its
centroid and perturbs the two copies in opposite directions by a factor 1 +- 1/1024 on alternate
coordinates. ``n_reseeded_`` counts these splits. A cluster can still be empty when the whole pool
is assigned (its training rows were not representative); assignment reports sizes, zeros included.

Determinism: the sample, the initialisation (faiss's own RNG seeded with ``seed``) and every
iteration are fixed for a seed; with the same faiss version, data and thread count two fits give
bit-identical centroids. faiss splits work across threads by rows / centroids and its BLAS does
not split the inner dimension, so on the CPU the result is also the same for any thread count
(checked in the tests for 1 and 2 threads); on GPUs faiss does not promise bitwise
reproducibility. ``threads`` sets faiss's OpenMP thread count for the duration of a call only.

Thread safety: a fitted :class:`KMeans` may assign from several threads only if faiss's global
OpenMP setting is not changed concurrently (pass ``threads=None`` there).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError, InputTypeError, ModelError
from ._emb import EmbeddingSource, as_chunks, first_bad_row_message, iter_chunks, take_rows, total_rows

__all__ = ["KMeans", "Assignment", "gpu_available"]

Metric = Literal["cosine", "euclidean"]
OnInvalid = Literal["raise", "mark"]


def _faiss() -> Any:
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - faiss is a declared dependency of the cluster extra
        raise ModelError("k-means needs faiss: pip install faiss-cpu (or faiss-gpu where CUDA is present)") from None
    return faiss


def gpu_available() -> bool:
    """True when the installed faiss has GPU support and sees at least one GPU."""
    faiss = _faiss()
    return bool(hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)


@contextlib.contextmanager
def _faiss_threads(threads: Optional[int]) -> Iterator[None]:
    faiss = _faiss()
    if threads is None:
        yield
        return
    if int(threads) < 1:
        raise InputError(f"threads must be >= 1 or None, got {threads!r}")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@dataclass
class Assignment:
    """Assignment of a run of rows (global rows ``start .. start + len(labels) - 1``).

    ``labels`` (int32) is the cluster of each row, -1 for a row rejected with
    ``on_invalid="mark"`` (NaN / infinite, or all-zero under the cosine metric); ``cos`` (float32)
    the cosine to the assigned centroid (NaN when undefined); ``sqdist`` (float32) the squared L2
    distance to it (of the normalised row under the cosine metric, i.e. 2 - 2 cos).
    """

    start: int
    labels: np.ndarray
    cos: np.ndarray
    sqdist: np.ndarray

    def __len__(self) -> int:
        return int(len(self.labels))

    def closeness_key(self, metric: Metric) -> np.ndarray:
        """Smaller = closer to the centroid: -cos for cosine, sqdist for Euclidean (ranking key)."""
        return -self.cos if metric == "cosine" else self.sqdist

    @staticmethod
    def concat(parts: Sequence["Assignment"]) -> "Assignment":
        if not parts:
            z = np.zeros(0, np.float32)
            return Assignment(0, np.zeros(0, np.int32), z, z.copy())
        return Assignment(
            parts[0].start,
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.cos for p in parts]),
            np.concatenate([p.sqdist for p in parts]),
        )


class KMeans:
    """Spherical (cosine) or Euclidean k-means, trained with faiss on a sample of the rows.

    Parameters
    ----------
    k: number of clusters (>= 1, and at most the number of training rows).
    metric: ``"cosine"`` (spherical, default) or ``"euclidean"``.
    niter: Lloyd iterations (faiss default 25; 20 here, enough for the sampled fit to settle).
    seed: fixes the training sample and faiss's initialisation.
    train_size: rows to train on (default: min(n, 256 * k), faiss's own cap); all rows if larger
        than the pool.
    nredo: runs from different initialisations; the best objective is kept.
    init: ``"random"`` (faiss default: k distinct training rows) or ``"k-means++"``.
    threads: faiss OpenMP threads during fit / assign (None = faiss's current setting).
    gpu: ``"auto"`` (use faiss-gpu when it sees a GPU), True or False.
    """

    def __init__(
        self,
        k: int,
        metric: Metric = "cosine",
        niter: int = 20,
        seed: int = 0,
        train_size: Optional[int] = None,
        nredo: int = 1,
        init: Literal["random", "k-means++"] = "random",
        threads: Optional[int] = None,
        gpu: Union[bool, Literal["auto"]] = "auto",
        verbose: bool = False,
    ) -> None:
        if metric not in ("cosine", "euclidean"):
            raise InputError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
        if int(k) < 1:
            raise InputError(f"k must be >= 1, got {k}")
        if int(niter) < 1 or int(nredo) < 1:
            raise InputError("niter and nredo must be >= 1")
        if train_size is not None and int(train_size) < 1:
            raise InputError(f"train_size must be >= 1, got {train_size}")
        if init not in ("random", "k-means++"):
            raise InputError(f"init must be 'random' or 'k-means++', got {init!r}")
        self.k = int(k)
        self.metric: Metric = metric
        self.niter = int(niter)
        self.seed = int(seed)
        self.train_size = None if train_size is None else int(train_size)
        self.nredo = int(nredo)
        self.init = init
        self.threads = threads
        self.gpu = gpu
        self.verbose = verbose
        self.centroids_: Optional[np.ndarray] = None
        self.train_rows_: Optional[np.ndarray] = None
        self.objective_: List[float] = []
        self.n_reseeded_: int = 0
        self.used_gpu_: bool = False
        self._index: Any = None

    # -- construction from saved centroids ------------------------------------------------------
    @classmethod
    def from_centroids(cls, centroids: np.ndarray, metric: Metric = "cosine", **kwargs: Any) -> "KMeans":
        """A model that assigns with given centroids (e.g. a saved ``centroids.npy``)."""
        c = np.asarray(centroids)
        if c.ndim != 2 or len(c) < 1:
            raise InputError(f"centroids must be a non-empty 2-D array, got shape {c.shape}")
        if not np.isfinite(c).all():
            raise InputError("centroids hold NaN or infinite values; recompute them")
        m = cls(len(c), metric=metric, **kwargs)
        c = np.ascontiguousarray(c, dtype=np.float32)
        if metric == "cosine":
            norms = np.linalg.norm(c, axis=1)
            if (norms == 0).any():
                raise InputError(f"centroid {int(np.flatnonzero(norms == 0)[0])} is all zeros")
            c = c / norms[:, None]
        m.centroids_ = c
        return m

    # -- training -------------------------------------------------------------------------------
    def _use_gpu(self) -> bool:
        if self.gpu == "auto":
            return gpu_available()
        if self.gpu and not gpu_available():
            raise ModelError("gpu=True but faiss sees no GPU (install faiss-gpu on a CUDA machine, or gpu='auto')")
        return bool(self.gpu)

    def _prepare(self, x: np.ndarray, start: int, on_invalid: OnInvalid, what: str) -> Tuple[np.ndarray, np.ndarray]:
        """float32 rows ready for faiss (normalised for cosine) and the mask of valid rows."""
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        ok: np.ndarray = np.asarray(np.isfinite(x32).all(axis=1))
        if self.metric == "cosine":
            ok &= np.any(x32 != 0, axis=1)
        if not ok.all():
            if on_invalid == "raise":
                raise InputError(first_bad_row_message(x32, start, what, self.metric == "cosine"))
            x32 = x32.copy() if x32 is x else x32
            x32[~ok] = 0.0
        if self.metric == "cosine":
            if x32 is x:
                x32 = x32.copy()  # never normalise the caller's array in place
            norms = np.sqrt(np.einsum("ij,ij->i", x32, x32))
            norms[~ok] = 1.0
            x32 /= norms[:, None]
        return x32, ok

    def fit(self, emb: EmbeddingSource, init_centroids: Optional[np.ndarray] = None) -> "KMeans":
        """Train on a seeded uniform sample of ``train_size`` rows of ``emb``. Returns self.

        ``init_centroids`` (k x d) starts Lloyd's iterations from those centroids instead of the
        seeded initialisation (a warm start; ``init`` is then unused and ``nredo`` must be 1): from
        converged centroids of the same rows, the fit returns them unchanged. The noise study
        (docs/cluster.md) uses it to separate the pull of injected rows from k-means's dependence
        on its initialisation.
        """
        faiss = _faiss()
        chunks = as_chunks(emb)
        n = total_rows(chunks)
        d = int(chunks[0].shape[1])
        init_c = None
        if init_centroids is not None:
            init_c = np.ascontiguousarray(init_centroids, dtype=np.float32)
            if init_c.shape != (self.k, d):
                raise InputError(f"init_centroids must have shape (k, d) = ({self.k}, {d}), got {init_c.shape}")
            if not np.isfinite(init_c).all():
                raise InputError("init_centroids hold NaN or infinite values")
            if self.nredo != 1:
                raise InputError(f"a warm start (init_centroids) runs once: nredo must be 1, got {self.nredo}")
            if self.metric == "cosine":
                norms = np.linalg.norm(init_c, axis=1)
                if (norms == 0).any():
                    raise InputError(f"init_centroids row {int(np.flatnonzero(norms == 0)[0])} is all zeros")
                init_c = np.ascontiguousarray(init_c / norms[:, None], dtype=np.float32)
        size = self.train_size if self.train_size is not None else 256 * self.k
        size = min(size, n)
        if self.k > size:
            raise InputError(
                f"k={self.k} clusters need at least {self.k} training rows, but only {size} are available "
                f"({n} rows in the input, train_size={self.train_size}); lower k or pass more rows"
            )
        rng = np.random.default_rng(self.seed)
        rows = np.arange(n, dtype=np.int64) if size == n else np.sort(rng.choice(n, size=size, replace=False))
        x = take_rows(chunks, rows)
        bad = ~np.isfinite(x.astype(np.float32, copy=False)).all(axis=1)
        if self.metric == "cosine":
            bad |= ~np.any(x != 0, axis=1)
        if bad.any():
            # Name the row in the caller's numbering, not the sample's.
            i = int(np.flatnonzero(bad)[0])
            msg = first_bad_row_message(x[i : i + 1].astype(np.float32), int(rows[i]), "embeddings", self.metric == "cosine")
            raise InputError(msg)
        xt, _ = self._prepare(x, 0, "raise", "embeddings")
        del x
        use_gpu = self._use_gpu()
        cp: dict = dict(
            niter=self.niter,
            nredo=self.nredo,
            seed=self.seed,
            spherical=self.metric == "cosine",
            verbose=self.verbose,
            # the sample is ours: stop faiss from subsampling again or warning about its size
            max_points_per_centroid=max(256, math.ceil(size / self.k) + 1),
            min_points_per_centroid=1,
        )
        if self.init == "k-means++":
            cp["init_method"] = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
        km = faiss.Kmeans(d, self.k, gpu=use_gpu, **cp)
        with _faiss_threads(self.threads):
            if init_c is None:
                km.train(xt)
            else:
                km.train(xt, init_centroids=init_c)
        self.centroids_ = np.ascontiguousarray(km.centroids, dtype=np.float32)
        self.train_rows_ = rows
        stats = km.iteration_stats or []
        self.objective_ = [float(s["obj"]) for s in stats]
        self.n_reseeded_ = int(sum(int(s.get("nsplit", 0)) for s in stats))
        self.used_gpu_ = use_gpu
        self._index = None
        return self

    # -- assignment -----------------------------------------------------------------------------
    def _get_index(self) -> Any:
        if self.centroids_ is None:
            raise InputError("this KMeans is not fitted: call fit() or KMeans.from_centroids() first")
        if self._index is None:
            faiss = _faiss()
            d = self.centroids_.shape[1]
            index = faiss.IndexFlatIP(d) if self.metric == "cosine" else faiss.IndexFlatL2(d)
            index.add(self.centroids_)
            if self._use_gpu():
                index = faiss.index_cpu_to_all_gpus(index)
            self._index = index
        return self._index

    def assign_chunks(
        self,
        chunks: Iterable[np.ndarray],
        start: int = 0,
        on_invalid: OnInvalid = "raise",
    ) -> Iterator[Assignment]:
        """Assign each chunk of rows (any iterable of 2-D arrays; memory-mapped float16 works) and
        yield one :class:`Assignment` per chunk. Memory: one chunk converted to float32 at a time.
        ``start`` is the global index of the first row (for messages and ``Assignment.start``)."""
        if on_invalid not in ("raise", "mark"):
            raise InputError(f"on_invalid must be 'raise' or 'mark', got {on_invalid!r}")
        index = self._get_index()
        assert self.centroids_ is not None
        d = self.centroids_.shape[1]
        pos = int(start)
        for ci, chunk in enumerate(chunks):
            if not isinstance(chunk, np.ndarray) or chunk.ndim != 2:
                raise InputTypeError(f"chunk {ci} (rows from {pos}) must be a 2-D numpy array")
            if chunk.shape[1] != d:
                raise InputError(
                    f"chunk {ci} (rows {pos}..{pos + len(chunk) - 1}) has {chunk.shape[1]} dims but the centroids "
                    f"have {d}: embeddings from a different encoder? re-embed or refit"
                )
            x, ok = self._prepare(chunk, pos, on_invalid, "embeddings")
            m = len(x)
            labels = np.full(m, -1, np.int32)
            cos = np.full(m, np.nan, np.float32)
            sq = np.full(m, np.nan, np.float32)
            if m:
                with _faiss_threads(self.threads):
                    D, I = index.search(x, 1)
                lab = I[:, 0].astype(np.int32)
                c = self.centroids_[lab]
                if self.metric == "cosine":
                    cs = D[:, 0].astype(np.float32)
                    sqd = np.maximum(0.0, 2.0 - 2.0 * cs).astype(np.float32)
                else:
                    sqd = np.maximum(0.0, D[:, 0]).astype(np.float32)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        cs = (np.einsum("ij,ij->i", x, c) / (np.linalg.norm(x, axis=1) * np.linalg.norm(c, axis=1))).astype(np.float32)
                labels[ok] = lab[ok]
                cos[ok] = cs[ok]
                sq[ok] = sqd[ok]
            yield Assignment(pos, labels, cos, sq)
            pos += m

    def assign(self, emb: EmbeddingSource, chunk_rows: int = 65536, on_invalid: OnInvalid = "raise") -> Assignment:
        """Assign every row of ``emb`` (array or list of chunks), streamed ``chunk_rows`` at a time;
        the per-row results (10 bytes a row) are concatenated."""
        chunks = as_chunks(emb)
        parts = [a for a in self.assign_chunks((c for _, c in iter_chunks(chunks, chunk_rows)), 0, on_invalid)]
        return Assignment.concat(parts)

    def inertia(self, emb: EmbeddingSource, chunk_rows: int = 65536) -> float:
        """sklearn's ``inertia_`` over every row of ``emb``: the sum of squared L2 distances to the
        assigned centroids (of the normalised rows under the cosine metric), streamed and summed
        in float64 from the differences (no cancellation)."""
        assert self.centroids_ is not None or self._get_index() is not None
        total = 0.0
        chunks = as_chunks(emb)
        pieces = iter_chunks(chunks, chunk_rows)
        for (start, x), a in zip(iter_chunks(chunks, chunk_rows), self.assign_chunks((c for _, c in pieces))):
            xp, _ = self._prepare(x, start, "raise", "embeddings")
            diff = xp.astype(np.float64) - self.centroids_[a.labels].astype(np.float64)  # type: ignore[index]
            total += float(np.einsum("ij,ij->", diff, diff))
        return total
