"""CLIP (or text-only, or image-only) embedding as a stage (docs/embed.md).

Each kept row gets ``image_emb`` and ``text_emb`` (float16, L2-normalised, fixed-size lists) and
``clip_score`` (float32, the cosine of the two, DataComp's CLIP score); a text-only run (a "text"
bundle, or ``text_only=True``) writes ``text_emb`` alone; an image-only run (an "image" bundle: an
image classifier such as EfficientNet-Lite0) writes ``image_emb`` alone, plus ``image_labels``
(the classifier's ``labels`` most probable classes, ``[{label, score}]``) when asked. Rows whose
image cannot be read are dropped with the decoder's reason; an image+text pool keeps an image
without caption (its ``text_emb`` and ``clip_score`` are null), a text-only run drops a row without
caption.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import InputError
from ...io.columns import Roles
from ...io.images import image_sources
from ...runner.stage import Batch, Context, Result, Stage

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["EmbedStage", "embed_shards"]

PathLike = Union[str, "os.PathLike[str]"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

# decoder reason (fastcurate.models.preprocess.ImageError.reason) -> drop reason
_IMAGE_REASONS = {"empty": "empty_image", "undecodable": "undecodable", "truncated": "truncated_image",
                  "too_large": "too_large", "unreadable": "missing_file", "missing": "missing_file"}


def LABELS_TYPE() -> "pa.DataType":
    """The type of ``image_labels``: a list (best first) of ``{label, score}``."""
    import pyarrow as pa

    return pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float32())]))


def label_lists(ids: np.ndarray, scores: np.ndarray, names: Sequence[str]) -> "pa.Array":
    """``[n, k]`` class ids and scores as an ``image_labels`` column; a row whose ids are -1 (an
    image that failed, which the stage drops) gets an empty list."""
    import pyarrow as pa

    n, k = ids.shape
    valid = ids >= 0
    counts = valid.sum(axis=1)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    flat_ids = ids[valid]
    label = pa.array(list(names), pa.string()).take(pa.array(flat_ids, pa.int32()))
    values = pa.StructArray.from_arrays([label, pa.array(scores[valid], pa.float32())], names=["label", "score"])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=LABELS_TYPE())


def f16_list(emb: np.ndarray, valid: Optional[np.ndarray] = None) -> "pa.Array":
    """``[n, d]`` floats as a ``fixed_size_list<float16, d>`` column (null where not ``valid``)."""
    import pyarrow as pa

    d = emb.shape[1]
    flat = pa.array(np.ascontiguousarray(emb, dtype=np.float16).reshape(-1), type=pa.float16())
    if valid is None or valid.all():
        return pa.FixedSizeListArray.from_arrays(flat, d)
    return pa.FixedSizeListArray.from_arrays(flat, d, mask=pa.array(~valid))


class EmbedStage(Stage):
    """Embeds images and captions with an ONNX bundle (``fastcurate export``)."""

    name = "embed"
    version = 2
    needs: Tuple[str, ...] = ("image",)
    wants: Tuple[str, ...] = ("text",)
    batch_size = 1024  # rows (with their image bytes) per batch: bounds memory
    produces: Tuple[str, ...] = ("image_emb", "text_emb", "clip_score")
    reasons = {
        "no_image": "the row has no image (null image column, or a tar sample without an image member)",
        "empty_image": "the image is 0 bytes",
        "undecodable": "the image bytes are not an image the decoder can read",
        "truncated_image": "the image file is truncated",
        "too_large": "the image has more pixels than the decoder's limit (a decompression bomb guard)",
        "missing_file": "the image path does not exist or cannot be read",
        "no_text": "a text-only run got a row without a caption",
    }
    requires = {"onnxruntime": "pip install 'fastcurate[embed-cpu]' (or [embed-gpu] on a CUDA machine)",
                "PIL": "pip install 'fastcurate[embed]'", "tokenizers": "pip install 'fastcurate[embed]'"}

    def __init__(self, bundle: PathLike, *, text_only: bool = False, device: str = "auto", precision: str = "auto",
                 model_batch_size: int = 32, fast_preprocess: bool = False, labels: int = 0):
        """
        Args:
            bundle: a model bundle directory (``fastcurate export``).
            text_only: embed captions only (a "text" bundle implies it); rows without one drop.
            labels: with an "image" bundle (an image classifier), also write ``image_labels``: the
                ``labels`` most probable classes of each image with their softmax probabilities.
            device: ``auto`` (CUDA when onnxruntime-gpu sees a GPU, else CPU), ``cpu``, ``cuda``
                or ``tensorrt``.
            precision: ``auto`` (fp16 on GPU, the bundle's default on CPU), ``fp32``, ``fp16``
                or ``int8``.
            model_batch_size: images per model call.
            fast_preprocess: JPEG draft decoding (approximate preprocessing, faster).
        """
        from ...models.bundle import load_bundle

        self.check_requires()
        self.bundle_path = Path(bundle)
        self._bundle = load_bundle(bundle)
        self.image_only = self._bundle.kind == "image"
        if self.image_only and text_only:
            raise InputError(f"{bundle} is an image classifier bundle (no text tower): it cannot embed captions; "
                             "drop --text-only or pass a CLIP or text bundle")
        if labels < 0:
            raise InputError(f"labels must be >= 0, got {labels}")
        if labels and not self.image_only:
            raise InputError(f"--labels needs an image classifier bundle (fastcurate export --image-model ...); "
                             f"{bundle} is a {self._bundle.kind!r} bundle")
        self.labels = int(labels)
        self.text_only = bool(text_only or self._bundle.kind == "text")
        if self.text_only:
            self.needs = ("text",)
            self.wants = ()
            self.produces = ("text_emb",)
        elif self.image_only:
            self.wants = ()
            self.produces = ("image_emb", "image_labels") if self.labels else ("image_emb",)
        self.device = device
        self.precision = precision
        if model_batch_size < 1:
            raise InputError(f"model_batch_size must be >= 1, got {model_batch_size}")
        self.model_batch_size = model_batch_size
        self.fast_preprocess = fast_preprocess
        self.dim = int(self._bundle.embed_dim)
        self._enc: Any = None

    def __getstate__(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d["_enc"] = None
        return d

    def worker_resources(self) -> Dict[str, float]:
        # Ray engine: one GPU per worker where the cluster has GPUs (unless told to use the CPU)
        return {} if self.device == "cpu" else {"GPU": 1.0}

    def config(self) -> Dict[str, Any]:
        return {"bundle_files": self._bundle.manifest.get("files", {}), "text_only": self.text_only,
                "precision": self.precision, "fast_preprocess": self.fast_preprocess, "labels": self.labels}

    def output_fields(self, schema: "pa.Schema", roles: Roles) -> List["pa.Field"]:
        import pyarrow as pa

        emb = pa.list_(pa.float16(), self.dim)
        if self.text_only:
            return [pa.field("text_emb", emb)]
        if self.image_only:
            return [pa.field("image_emb", emb)] + ([pa.field("image_labels", LABELS_TYPE())] if self.labels else [])
        return [pa.field("image_emb", emb), pa.field("text_emb", emb), pa.field("clip_score", pa.float32())]

    def setup(self, ctx: Context, state: Optional[Dict[str, Any]]) -> None:
        from ...models.encoder import ClipEncoder, ImageEncoder, TextEncoder

        if self.text_only:
            self._enc = TextEncoder(self._bundle, device=self.device, precision=self.precision)
        elif self.image_only:
            self._enc = ImageEncoder(self._bundle, device=self.device, precision=self.precision,
                                     batch_size=self.model_batch_size, fast_preprocess=self.fast_preprocess)
        else:
            self._enc = ClipEncoder(self._bundle, device=self.device, precision=self.precision,
                                    batch_size=self.model_batch_size, fast_preprocess=self.fast_preprocess)

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        providers = list(getattr(self._enc, "providers", []) or [])
        return {"bundle": str(self.bundle_path), "kind": self._bundle.kind, "embed_dim": self.dim,
                "text_only": self.text_only, "labels": self.labels,
                "precision": getattr(self._enc, "precision", self.precision), "providers": providers}

    def teardown(self) -> None:
        if self._enc is not None and hasattr(self._enc, "close"):
            self._enc.close()
        self._enc = None

    def process_batch(self, ctx: Context, batch: Batch) -> Result:
        from ...models.score import clip_score

        n = len(batch)
        text_arr = batch.column("text")
        texts: List[Optional[str]] = text_arr.to_pylist() if text_arr is not None else [None] * n
        has_text = np.array([isinstance(t, str) for t in texts], dtype=bool)
        reason = np.full(n, None, dtype=object)
        detail = np.full(n, None, dtype=object)
        cols: Dict[str, Any] = {}
        txt_emb = np.zeros((n, self.dim), np.float32)
        if self.text_only:
            reason[~has_text] = "no_text"
        else:
            srcs = image_sources(batch.require("image"), batch.shard.path.parent)
            uids = batch.uid.to_pylist()
            img_emb = np.zeros((n, self.dim), np.float32)
            top_ids = np.full((n, self.labels), -1, np.int32)
            top_scores = np.zeros((n, self.labels), np.float32)
            present = np.array([s is not None for s in srcs], dtype=bool)
            reason[~present] = "no_image"
            idx = np.flatnonzero(present)
            names = (f"{batch.shard.path.name}:{uids[i]}" for i in idx)
            kw = {"top_k": self.labels} if self.labels else {}
            for ib in self._enc.iter_image_batches((srcs[i] for i in idx), names=names, **kw):
                rows = idx[ib.start:ib.start + len(ib.ok)]
                img_emb[rows[ib.ok]] = ib.embeddings[ib.ok]
                if ib.top_ids is not None and ib.top_scores is not None:
                    top_ids[rows[ib.ok]] = ib.top_ids[ib.ok]
                    top_scores[rows[ib.ok]] = ib.top_scores[ib.ok]
                for j in np.flatnonzero(~ib.ok):
                    code, _, msg = (ib.reasons[j] or "undecodable: ").partition(":")
                    reason[rows[j]] = _IMAGE_REASONS.get(code.strip(), "undecodable")
                    # object reprs carry memory addresses: drop them so reruns write the same bytes
                    detail[rows[j]] = _ADDRESS.sub("", msg).strip() or None
        keep = np.array([r is None for r in reason], dtype=bool)
        if self.image_only:
            cols["image_emb"] = f16_list(img_emb)
            if self.labels:
                cols["image_labels"] = label_lists(top_ids, top_scores, self._enc.labels)
            return Result(keep=keep, reason=reason[~keep], detail=detail[~keep].tolist(), columns=cols)
        sel = keep & has_text
        if sel.any():
            txt_emb[sel] = self._enc.encode_texts([texts[i] for i in np.flatnonzero(sel)])
        cols["text_emb"] = f16_list(txt_emb, valid=sel if not self.text_only else None)
        if not self.text_only:
            cols["image_emb"] = f16_list(img_emb)
            import pyarrow as pa

            score = np.zeros(n, np.float32)
            if sel.any():
                score[sel] = clip_score(img_emb[sel], txt_emb[sel])
            cols["clip_score"] = pa.array(score, type=pa.float32(), mask=~sel)
        return Result(keep=keep, reason=reason[~keep], detail=detail[~keep].tolist(), columns=cols)


def embed_shards(
    inputs: Union[PathLike, Sequence[PathLike]],
    bundle: PathLike,
    out_dir: PathLike,
    *,
    text_only: bool = False,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 32,
    fast_preprocess: bool = False,
    labels: int = 0,
    image_col: Optional[str] = None,
    text_col: Optional[str] = None,
    uid_col: Optional[str] = None,
    progress: bool = True,
    on_error: str = "fail",
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Embed every shard of ``inputs`` (WebDataset tars, Parquet, ... or directories of them) into
    ``out_dir`` with the bundle's model; returns the ``stats.json`` content.

    ``batch_size`` is the number of images per model call. With a "text" bundle, or
    ``text_only=True``, only captions are embedded (rows without one are dropped). With an "image"
    bundle only images are embedded, and ``labels=K`` adds each image's top-K classes.
    """
    from ...runner.local import run_stage

    stage = EmbedStage(bundle, text_only=text_only, device=device, precision=precision,
                       model_batch_size=batch_size, fast_preprocess=fast_preprocess, labels=labels)
    return run_stage(stage, inputs, out_dir, columns={"image": image_col, "text": text_col, "id": uid_col},
                     progress=progress, on_error=on_error, overwrite=overwrite)
