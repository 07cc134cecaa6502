"""The runtime encoders: :class:`ClipEncoder` (images and texts), :class:`TextEncoder` (texts only)
and :class:`ImageEncoder` (an image classifier's embeddings and, on request, its top-k classes).

None imports torch. Images are decoded and resized in a thread pool that runs ahead of the model
by a bounded number of batches, so decoding overlaps inference (ONNX Runtime releases the GIL) and
memory stays bounded however long the input stream is. :class:`ClipEncoder` and
:class:`ImageEncoder` share that pipeline (:class:`_ImagePipeline`), bad-image handling included.

Thread safety: an encoder may be shared by threads for ``encode_texts``; ``encode_images`` /
``iter_image_batches`` / ``classify`` each use the encoder's decode pool and should be called from
one thread at a time.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError, InputTypeError, ModelError
from .bundle import Bundle, load_bundle
from .preprocess import DEFAULT_MAX_PIXELS, ImageError, ImageSource, Preprocessor
from .score import l2_normalize
from .session import OrtSession, choose_providers
from .tokenizer import ClipTokenizer, HFTokenizer

__all__ = ["ClipEncoder", "TextEncoder", "ImageEncoder", "ImageBatch", "ImageClassification"]


@dataclass
class ImageBatch:
    """One streamed batch: ``embeddings[i]`` is valid where ``ok[i]``; else ``reasons[i]`` says why."""

    start: int  # index of the first item of this batch in the input stream
    embeddings: np.ndarray  # float32 [n, d]; NaN rows where not ok
    ok: np.ndarray  # bool [n]
    reasons: List[Optional[str]]  # None where ok, else "<code>: <message>"
    # ImageEncoder with top_k > 0: the k most probable classes, best first (ties: lower id first)
    top_ids: Optional[np.ndarray] = None  # int32 [n, k]; -1 where not ok
    top_scores: Optional[np.ndarray] = None  # float32 [n, k] softmax probabilities; NaN where not ok


@dataclass
class ImageClassification:
    """What :meth:`ImageEncoder.classify` returns: embeddings and the top-k classes of each image."""

    embeddings: np.ndarray  # float32 [n, d], L2-normalised; NaN rows for failed images
    top_ids: np.ndarray  # int32 [n, k] class ids, best first; -1 for failed images
    top_scores: np.ndarray  # float32 [n, k] softmax probabilities; NaN for failed images
    labels: List[str]  # the bundle's class names, indexed by id

    def top_labels(self, i: int) -> List[Tuple[str, float]]:
        """``[(label, probability), ...]`` for image ``i``, best first (empty if it failed)."""
        return [(self.labels[int(c)], float(p)) for c, p in zip(self.top_ids[i], self.top_scores[i]) if c >= 0]


def _pick_precision(bundle: Bundle, precision: str, on_gpu: bool) -> str:
    if precision == "auto":
        if on_gpu and "fp16" in bundle.variants:
            return "fp16"
        # On a CPU honour the exported default unless it is fp16, which CPUs run slower than fp32.
        default = bundle.manifest.get("default_precision", "fp32")
        if default in bundle.variants and default != "fp16":
            return default
        return "fp32" if "fp32" in bundle.variants else next(iter(bundle.variants))
    if precision not in bundle.variants:
        raise ModelError(
            f"bundle {bundle.root} has no {precision!r} variant (has {sorted(bundle.variants)}); "
            "re-export with --precision or choose another"
        )
    return precision


def _iter_sources(images: Any) -> Tuple[Iterator[Any], Optional[int]]:
    """Images as an iterator, plus the count when known. Accepts a pyarrow binary/string column."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        pa = None
    if pa is not None and isinstance(images, (pa.Array, pa.ChunkedArray)):
        t = images.type
        if not (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_string(t)
                or pa.types.is_large_string(t)):
            raise InputTypeError(
                f"image column must be binary (image bytes) or string (paths), got {t}"
            )
        n = len(images)

        def gen() -> Iterator[Any]:
            # Slices of 256 keep the Python-object conversion cheap and memory flat.
            for s in range(0, n, 256):
                yield from images.slice(s, 256).to_pylist()

        return gen(), n
    if isinstance(images, (str, bytes, os.PathLike)):
        raise InputTypeError("images must be a sequence of images; wrap a single path or bytes in a list")
    size = len(images) if hasattr(images, "__len__") else None
    return iter(images), size


class _Base:
    def __init__(self, bundle: Union[str, Path, Bundle], device: str, precision: str,
                 intra_op_threads: Optional[int], verify: bool) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=verify)
        self._providers_req = choose_providers(device)
        on_gpu = self._providers_req[0] != "CPUExecutionProvider"
        self.precision = _pick_precision(self.bundle, precision, on_gpu)
        self.intra_op_threads = intra_op_threads
        self.embed_dim = self.bundle.embed_dim

    def _session(self, tower: str) -> OrtSession:
        return OrtSession(self.bundle.model_path(tower, self.precision), self._providers_req,
                          intra_op_threads=self.intra_op_threads, fp16=self.precision == "fp16")


class _ImagePipeline(_Base):
    """The image side shared by :class:`ClipEncoder` and :class:`ImageEncoder`: a decode/resize
    thread pool that runs at most ``prefetch`` batches ahead of the model, bad images reported per
    item (never raised mid-stream), and the image session. Subclasses say how a batch of pixels
    becomes embeddings (:meth:`_run_pixels`)."""

    def _init_images(self, *, fast_preprocess: bool, exif_transpose: bool, max_pixels: int,
                     decode_threads: Optional[int], batch_size: int, prefetch: int) -> None:
        if batch_size < 1 or prefetch < 1:
            raise InputError("batch_size and prefetch must be >= 1")
        self.batch_size = int(batch_size)
        self.prefetch = int(prefetch)
        assert self.bundle.preprocess is not None  # load_bundle reads it for clip and image bundles
        self.preprocessor = Preprocessor(self.bundle.preprocess, fast=fast_preprocess,
                                         exif_transpose=exif_transpose, max_pixels=max_pixels)
        self.decode_threads = int(decode_threads or os.cpu_count() or 1)
        self._image_sess: Optional[OrtSession] = None
        self._pool: Optional[ThreadPoolExecutor] = None

    # Sessions are created lazily: a text-only run never pays for loading the image tower.
    @property
    def image_session(self) -> OrtSession:
        if self._image_sess is None:
            self._image_sess = self._session("image")
        return self._image_sess

    @property
    def providers(self) -> List[str]:
        """The execution providers actually in use (of the image tower, loading it if needed)."""
        return self.image_session.providers

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _get_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="fastcurate-decode")
        return self._pool

    def _decode_one(self, src: ImageSource, name: str) -> Tuple[Optional[np.ndarray], Optional[str]]:
        try:
            return self.preprocessor.load_uint8(src, name=name), None
        except ImageError as e:
            return None, f"{e.reason}: {e}"
        except InputTypeError:
            raise
        except Exception as e:  # a decoder bug must drop the image, not kill a billion-row run
            return None, f"undecodable: {name}: {type(e).__name__}: {e}"

    def _run_pixels(self, x: np.ndarray, want_logits: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """``float32 [n, 3, H, W]`` -> (L2-normalised embeddings, logits or None)."""
        raise NotImplementedError

    def _iter_batches(self, images: Iterable[ImageSource], names: Optional[Iterable[str]],
                      batch_size: Optional[int], top_k: int) -> Iterator[ImageBatch]:
        bs = int(batch_size or self.batch_size)
        it, _ = _iter_sources(images)
        name_it = iter(names) if names is not None else None
        pool = self._get_pool()
        inflight: deque = deque()
        start = 0
        exhausted = False
        while True:
            while not exhausted and len(inflight) < self.prefetch + 1:
                chunk = list(islice(it, bs))
                if not chunk:
                    exhausted = True
                    break
                nm = [next(name_it) if name_it is not None else f"image[{start + i}]" for i in range(len(chunk))]
                inflight.append((start, [pool.submit(self._decode_one, s, n) for s, n in zip(chunk, nm)]))
                start += len(chunk)
            if not inflight:
                return
            b_start, futs = inflight.popleft()
            results = [f.result() for f in futs]
            ok = np.array([r[0] is not None for r in results], dtype=bool)
            n = len(results)
            emb = np.full((n, self.embed_dim), np.nan, dtype=np.float32)
            ids = np.full((n, top_k), -1, dtype=np.int32) if top_k else None
            scores = np.full((n, top_k), np.nan, dtype=np.float32) if top_k else None
            if ok.any():
                u8 = np.stack([r[0] for r in results if r[0] is not None])
                e, logits = self._run_pixels(self.preprocessor.normalize(u8), want_logits=top_k > 0)
                emb[ok] = e
                if ids is not None and scores is not None and logits is not None:
                    ids[ok], scores[ok] = top_k_softmax(logits, top_k)
            yield ImageBatch(b_start, emb, ok, [r[1] for r in results], top_ids=ids, top_scores=scores)

    def _collect(self, images: Any, batch_size: Optional[int], on_error: str, progress: bool,
                 top_k: int) -> List[ImageBatch]:
        if on_error not in ("raise", "nan"):
            raise InputError(f"on_error must be 'raise' or 'nan', got {on_error!r}")
        it, n = _iter_sources(images)
        out: List[ImageBatch] = []
        bar = _bar(n, "images", progress)
        for b in self._iter_batches(it, None, batch_size, top_k):
            if on_error == "raise" and not b.ok.all():
                i = int(np.flatnonzero(~b.ok)[0])
                from ..errors import FormatError

                raise FormatError(f"{b.reasons[i]} (use on_error='nan' to keep going)")
            out.append(b)
            bar.update(len(b.ok))
        bar.close()
        return out

    def encode_images(self, images: Any, batch_size: Optional[int] = None, on_error: str = "raise",
                      progress: bool = False) -> np.ndarray:
        """Embed ``images`` (paths, bytes, PIL images, or a pyarrow binary column) to ``float32 [n, d]``.

        Rows are L2-normalised. ``on_error="raise"`` raises :class:`~fastcurate.errors.FormatError`
        naming the first bad image; ``on_error="nan"`` leaves NaN rows for images that fail.
        """
        out = self._collect(images, batch_size, on_error, progress, 0)
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate([b.embeddings for b in out])


def top_k_softmax(logits: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable classes of each row of ``logits``: (int32 ids [n, k], float32
    softmax probabilities [n, k]), best first (by logit); equal logits keep the lower id first."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    k = min(int(k), z.shape[1])
    # Rank by logit, not by probability: tiny probabilities underflow to equal zeros, logits keep
    # their order. A stable sort keeps exact ties in id order, so the result never depends on the batch.
    order = np.argsort(-z, axis=1, kind="stable")[:, :k]
    p = np.exp(np.take_along_axis(z, order, axis=1))
    p /= np.exp(z).sum(axis=1, keepdims=True)
    return order.astype(np.int32), p.astype(np.float32)


class ClipEncoder(_ImagePipeline):
    """Image and text embeddings from a CLIP bundle made by :func:`fastcurate.export_clip`.

    Args:
        bundle: bundle directory.
        device: "auto" (CUDA if onnxruntime-gpu sees a GPU, else CPU), "cpu", "cuda", "tensorrt".
        precision: "auto" (fp16 on GPU, fp32 on CPU), "fp32", "fp16" or "int8" (if exported).
        fast_preprocess: JPEG draft decoding before the resize (not bitwise equal to open_clip; see
            benchmarks/RESULTS.md for its agreement).
        decode_threads: threads that decode and resize images (default: CPU count).
        batch_size: images per model call.
        text_batch_size: texts per model call. Small is fast here: texts are sorted by length, so a
            small batch wastes little on padding (measured on 2 CPU cores: 16 > 32 > 64 > 128).
        prefetch: how many batches the decoder may run ahead (bounds memory).
    """

    def __init__(
        self,
        bundle: Union[str, Path, Bundle],
        device: str = "auto",
        precision: str = "auto",
        *,
        fast_preprocess: bool = False,
        exif_transpose: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode_threads: Optional[int] = None,
        batch_size: int = 32,
        text_batch_size: int = 16,
        prefetch: int = 2,
        intra_op_threads: Optional[int] = None,
        verify: bool = False,
    ) -> None:
        super().__init__(bundle, device, precision, intra_op_threads, verify)
        self.text_batch_size = int(text_batch_size)
        if self.bundle.kind != "clip":
            use = "ImageEncoder" if self.bundle.kind == "image" else "TextEncoder"
            raise ModelError(f"{self.bundle.root} is a {self.bundle.kind!r} bundle; use {use} for it")
        self._init_images(fast_preprocess=fast_preprocess, exif_transpose=exif_transpose, max_pixels=max_pixels,
                          decode_threads=decode_threads, batch_size=batch_size, prefetch=prefetch)
        tcfg = self.bundle.manifest.get("text", {})
        self.context_length = int(tcfg.get("context_length", 77))
        self.text_variable_length = bool(tcfg.get("variable_length", False))
        self.tokenizer = ClipTokenizer(self.bundle.tokenizer_path, context_length=self.context_length)
        self._text_sess: Optional[OrtSession] = None

    @property
    def text_session(self) -> OrtSession:
        if self._text_sess is None:
            self._text_sess = self._session("text")
        return self._text_sess

    def _run_pixels(self, x: np.ndarray, want_logits: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        sess = self.image_session
        return l2_normalize(sess.run({sess.input_names[0]: x})), None

    def iter_image_batches(self, images: Iterable[ImageSource], names: Optional[Iterable[str]] = None,
                           batch_size: Optional[int] = None) -> Iterator[ImageBatch]:
        """Stream images through decode (thread pool) and the image tower, batch by batch.

        At most ``prefetch`` batches are decoded ahead of the model, so memory is bounded. Images
        that fail to decode are reported in ``ImageBatch.reasons`` and never stop the stream.
        """
        return self._iter_batches(images, names, batch_size, 0)

    def encode_texts(self, texts: Sequence[str], batch_size: Optional[int] = None,
                     progress: bool = False) -> np.ndarray:
        """Embed ``texts`` to ``float32 [n, d]`` (L2-normalised), tokenised exactly as open_clip.

        With a variable-length text tower, texts are sorted by token count and each batch is cut
        to its longest row; since CLIP's text attention is causal and pooling takes the end token,
        this gives the same embeddings as padding to the full context, for less compute.
        """
        bs = int(batch_size or self.text_batch_size)
        ids, lens = self.tokenizer.tokenize_with_lengths(texts)
        n = ids.shape[0]
        out = np.empty((n, self.embed_dim), dtype=np.float32)
        if n == 0:
            return out
        sess = self.text_session
        # The tokenizer's own lengths: id 0 is a real token, so counting non-zero ids would cut a
        # row like "!%" before its end token, the position the tower pools at.
        order = np.argsort(lens, kind="stable") if self.text_variable_length else np.arange(n)
        bar = _bar(n, "texts", progress)
        for s in range(0, n, bs):
            idx = order[s : s + bs]
            batch = ids[idx]
            if self.text_variable_length:
                batch = np.ascontiguousarray(batch[:, : int(lens[idx].max())])
            out[idx] = l2_normalize(sess.run({sess.input_names[0]: batch}))
            bar.update(len(idx))
        bar.close()
        return out


class ImageEncoder(_ImagePipeline):
    """Embeddings, and on request the top-k classes, from an "image" bundle: an image classifier
    exported by :func:`fastcurate.export_image_model` (e.g. EfficientNet-Lite0 on ImageNet).

    The embedding is the classifier's pooled features (its penultimate layer), L2-normalised; the
    classes come from its logits (softmax probabilities) and the bundle's ``labels.json``. Images
    go through the bundle's own preprocessing, with the same decode pool, EXIF handling and bad-image
    reasons as :class:`ClipEncoder`.

    Args:
        bundle: an "image" bundle directory.
        device, precision, fast_preprocess, exif_transpose, max_pixels, decode_threads, batch_size,
            prefetch, intra_op_threads, verify: as for :class:`ClipEncoder`.
    """

    def __init__(
        self,
        bundle: Union[str, Path, Bundle],
        device: str = "auto",
        precision: str = "auto",
        *,
        fast_preprocess: bool = False,
        exif_transpose: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode_threads: Optional[int] = None,
        batch_size: int = 32,
        prefetch: int = 2,
        intra_op_threads: Optional[int] = None,
        verify: bool = False,
    ) -> None:
        super().__init__(bundle, device, precision, intra_op_threads, verify)
        if self.bundle.kind != "image":
            use = "ClipEncoder" if self.bundle.kind == "clip" else "TextEncoder"
            raise ModelError(f"{self.bundle.root} is a {self.bundle.kind!r} bundle, not an image classifier; "
                             f"use {use} for it")
        self._init_images(fast_preprocess=fast_preprocess, exif_transpose=exif_transpose, max_pixels=max_pixels,
                          decode_threads=decode_threads, batch_size=batch_size, prefetch=prefetch)
        outs = self.bundle.manifest["outputs"]
        self.features_output = str(outs["features"])
        self.logits_output = str(outs["logits"])
        self.normalize = bool(self.bundle.manifest.get("image", {}).get("normalize", True))
        self.labels: List[str] = self.bundle.labels
        self.num_classes = len(self.labels)
        declared = self.bundle.manifest.get("num_classes")
        if declared is not None and int(declared) != self.num_classes:
            raise ModelError(f"bundle {self.bundle.root}: labels.json has {self.num_classes} names but the manifest "
                             f"declares {declared} classes; re-export the bundle")

    def _run_pixels(self, x: np.ndarray, want_logits: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        sess = self.image_session
        feeds = {sess.input_names[0]: x}
        if not want_logits:
            f = sess.run(feeds, output=self.features_output)
            return (l2_normalize(f) if self.normalize else f), None
        f, logits = sess.run_many(feeds, [self.features_output, self.logits_output])
        if logits.shape[1] != self.num_classes:
            raise ModelError(f"bundle {self.bundle.root}: the model gives {logits.shape[1]} logits for "
                             f"{self.num_classes} labels; re-export the bundle")
        return (l2_normalize(f) if self.normalize else f), logits

    def iter_image_batches(self, images: Iterable[ImageSource], names: Optional[Iterable[str]] = None,
                           batch_size: Optional[int] = None, top_k: int = 0) -> Iterator[ImageBatch]:
        """Stream images through decode (thread pool) and the model, batch by batch.

        With ``top_k > 0`` each batch also carries ``top_ids`` / ``top_scores`` (the k most probable
        classes; names in :attr:`labels`). Bad images are reported in ``ImageBatch.reasons`` and never
        stop the stream.
        """
        if top_k < 0:
            raise InputError(f"top_k must be >= 0, got {top_k}")
        return self._iter_batches(images, names, batch_size, int(top_k))

    def classify(self, images: Any, k: int = 5, batch_size: Optional[int] = None, on_error: str = "raise",
                 progress: bool = False) -> ImageClassification:
        """Embeddings and the ``k`` most probable classes (softmax probabilities) of ``images``.

        ``on_error`` is as for :meth:`encode_images`: failed images get NaN embeddings, ids -1 and
        NaN scores with ``"nan"``.
        """
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        k = min(int(k), self.num_classes)
        out = self._collect(images, batch_size, on_error, progress, k)
        if not out:
            return ImageClassification(np.zeros((0, self.embed_dim), np.float32), np.zeros((0, k), np.int32),
                                       np.zeros((0, k), np.float32), self.labels)
        return ImageClassification(
            np.concatenate([b.embeddings for b in out]),
            np.concatenate([b.top_ids for b in out if b.top_ids is not None]),
            np.concatenate([b.top_scores for b in out if b.top_scores is not None]),
            self.labels,
        )


class TextEncoder(_Base):
    """Text embeddings from any ONNX text encoder plus its ``tokenizer.json`` (a "text" bundle).

    Typical use: caption-only pools with a sentence-transformers model such as all-MiniLM-L6-v2
    (see :func:`fastcurate.make_text_bundle`). A CLIP bundle also works (its text tower).
    """

    def __init__(self, bundle: Union[str, Path, Bundle], device: str = "auto", precision: str = "auto",
                 *, batch_size: int = 16, intra_op_threads: Optional[int] = None, verify: bool = False) -> None:
        super().__init__(bundle, device, precision, intra_op_threads, verify)
        self.batch_size = int(batch_size)
        self._clip: Optional[ClipEncoder] = None
        if self.bundle.kind == "image":
            raise ModelError(f"{self.bundle.root} is an 'image' bundle (no text tower); use ImageEncoder for it")
        if self.bundle.kind == "clip":
            self._clip = ClipEncoder(self.bundle, device=device, precision=self.precision, text_batch_size=batch_size)
            return
        tcfg = self.bundle.manifest.get("text", {})
        self.pooling = tcfg.get("pooling", "mean")
        self.normalize = bool(tcfg.get("normalize", True))
        self.output_name = tcfg.get("output")
        self.tokenizer = HFTokenizer(self.bundle.tokenizer_path, max_length=int(tcfg.get("max_length", 256)))
        self.session = self._session("text")
        if self.pooling not in ("mean", "cls", "none"):
            raise ModelError(f"{self.bundle.root}: unknown pooling {self.pooling!r}")

    @property
    def providers(self) -> List[str]:
        return self._clip.text_session.providers if self._clip else self.session.providers

    def encode_texts(self, texts: Sequence[str], batch_size: Optional[int] = None,
                     progress: bool = False) -> np.ndarray:
        """Embed ``texts`` to ``float32 [n, d]``; texts are length-sorted into batches."""
        if self._clip is not None:
            return self._clip.encode_texts(texts, batch_size=batch_size, progress=progress)
        bs = int(batch_size or self.batch_size)
        texts = list(texts)
        n = len(texts)
        out = np.empty((n, self.embed_dim), dtype=np.float32)
        order = sorted(range(n), key=lambda i: len(texts[i]) if isinstance(texts[i], str) else 0)
        bar = _bar(n, "texts", progress)
        sess = self.session
        for s in range(0, n, bs):
            idx = order[s : s + bs]
            feeds = self.tokenizer([texts[i] for i in idx])
            feeds = {k: v for k, v in feeds.items() if k in sess.input_names}
            h = sess.run(feeds, output=self.output_name)
            if self.pooling == "mean":
                m = feeds["attention_mask"][..., None].astype(np.float32)
                # sentence-transformers: sum(h * mask) / clamp(sum(mask), 1e-9)
                e = (h * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            elif self.pooling == "cls":
                e = h[:, 0]
            else:
                e = h
            out[idx] = l2_normalize(e) if self.normalize else e
            bar.update(len(idx))
        bar.close()
        return out


def _bar(total: Optional[int], unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=not enabled, dynamic_ncols=True)
