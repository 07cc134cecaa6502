"""Metadata expansion as a stage: content labels per image, each with its source and score
(docs/pairs.md#annotate). No row is dropped; every row gets ``labels``, a list (by source, then
best first) of ``{label, source, score}``:

* ``source = "metaclip"``: the metadata entries (MetaCLIP semantics; the shipped WordNet 3.0 list
  by default) that the caption matches, through :class:`fastcurate.kernels.matcher.Matcher`, ASCII
  case-insensitive by default. Score: the entry's inverse document frequency over the whole input,
  normalised to [0, 1], ``log(N / df) / log(N)`` (N captions, df of them matching the entry): an
  entry in every caption ("by", "in") scores 0, an entry in one caption scores 1, so the common
  words that WordNet also lists fall below ``min_text_score``; function words (:data:`STOPWORDS`:
  "a", "in", "by" ...) and entries with fewer than two letters ("8", "j") are never labels. The document frequencies need every shard: a global pass counts them.
* ``source = "imagenet"``: the top ImageNet classes of the image from an "image" bundle
  (EfficientNet-Lite0: ``fastcurate export --image-model efficientnet-lite0``), their softmax
  probabilities as scores; or, without ``image_bundle``, the ``image_labels`` column that
  ``fastcurate embed --labels K`` wrote with such a bundle.
* ``source = "clip"``: zero-shot CLIP labels over a label list: the softmax over the list of
  ``100 * cos(image, text("a photo of a {label}."))`` (CLIP's logit scale), top ``clip_labels``.

A row whose image cannot be read keeps its caption labels (the stage's statistics count it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_write_npy
from ...io.columns import Roles
from ...io.discover import ShardRef
from ...runner.stage import Batch, Context, Result, Stage

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["AnnotateStage", "LABEL_TYPE", "labels_column", "SOURCES", "CLIP_PROMPT"]

PathLike = Union[str, "os.PathLike[str]"]

SOURCES = ("metaclip", "imagenet", "clip")
CLIP_PROMPT = "a photo of a {}."
CLIP_LOGIT_SCALE = 100.0
IMAGE_LABELS_COLUMN = "image_labels"

#: English function words that WordNet also lists as nouns or verbs ("a" vitamin A, "in" indium,
#: "be" beryllium, "at" astatine, "it", "us", "do"...): never content labels, whatever their IDF.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves one two three four five six seven eight nine ten also get
go got let like made make may might must new old per put say see set since upon us via way well yet
""".split())


def LABEL_TYPE() -> "pa.DataType":
    """``list<struct<label: string, source: string, score: float>>``."""
    import pyarrow as pa

    return pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("source", pa.string()),
                               pa.field("score", pa.float32())]))


def labels_column(n: int, rows: np.ndarray, labels: Sequence[str], sources: np.ndarray, scores: np.ndarray) -> "pa.Array":
    """Flat (row, label, source index, score) tuples as a ``labels`` column of ``n`` rows, each
    row's labels ordered by source (:data:`SOURCES` order), then score descending, then label."""
    import pyarrow as pa

    rows = np.asarray(rows, np.int64)
    lab = np.asarray(list(labels), dtype=object)
    src = np.asarray(sources, np.int64)
    sc = np.asarray(scores, np.float32)
    if len(rows):
        order = np.lexsort((lab.astype(str), -sc.astype(np.float64), src, rows))
        rows, lab, src, sc = rows[order], lab[order], src[order], sc[order]
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    values = pa.StructArray.from_arrays(
        [pa.array(lab.tolist(), pa.string()), pa.array(np.asarray(SOURCES, dtype=object)[src].tolist(), pa.string()),
         pa.array(sc, pa.float32())], names=["label", "source", "score"])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=LABEL_TYPE())


def _top_k(rows: np.ndarray, scores: np.ndarray, tiebreak: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best (score desc, tiebreak asc) items of each row."""
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((tiebreak, -scores.astype(np.float64), rows))
    r = rows[order]
    first = np.concatenate([[True], r[1:] != r[:-1]])
    start = np.maximum.accumulate(np.where(first, np.arange(len(r)), 0))
    rank = np.arange(len(r)) - start
    return order[rank < k]


def _load_list(v: Union[None, PathLike, Sequence[str]], what: str) -> Optional[List[str]]:
    if v is None:
        return None
    if not isinstance(v, (str, os.PathLike)):  # a list (any sequence) of labels
        out = [str(x).strip() for x in v if str(x).strip()]
    else:
        p = Path(v)
        if not p.is_file():
            raise InputError(f"{what} {p}: no such file; give a text file with one label per line (or a list)")
        if p.suffix == ".json":
            import json

            out = [str(x).strip() for x in json.loads(p.read_text(encoding="utf-8")) if str(x).strip()]
        else:
            out = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not out:
        raise InputError(f"{what} holds no labels")
    return list(dict.fromkeys(out))


class AnnotateStage(Stage):
    """Adds ``labels`` (``[{label, source, score}]``) to every row; see the module docstring.

    Args:
        metadata: the entries matched in captions: a file (``.json`` list or one per line), a list,
            or None for the shipped WordNet 3.0 metadata.
        text_labels: at most this many caption (metaclip) labels per row, best first; 0: none.
        min_text_score: caption labels need at least this normalised IDF (0..1).
        case_sensitive: match case-sensitively (MetaCLIP's default); False (the default here)
            folds ASCII case, so "Leather Passport Holder" gives leather, passport, holder.
        image_bundle: an "image" bundle (EfficientNet-Lite0 exported by ``fastcurate export
            --image-model efficientnet-lite0``) whose top ImageNet classes become labels.
        image_labels: at most this many ImageNet labels per row.
        min_image_score: ImageNet labels need at least this softmax probability.
        clip_bundle: a CLIP bundle for zero-shot labels over ``label_list``.
        label_list: the zero-shot labels: a file (one per line, or a ``.json`` list) or a list.
        clip_labels: at most this many zero-shot labels per row.
        min_clip_score: zero-shot labels need at least this softmax probability over the list.
        device: "auto", "cpu" or "cuda" for the bundles.
        model_batch_size: images per model call.
    """

    name = "annotate"
    version = 1
    produces = ("labels",)
    reasons: ClassVar[Mapping[str, str]] = {}
    batch_size = 4096

    def __init__(
        self,
        *,
        metadata: Optional[Union[PathLike, Sequence[str]]] = None,
        text_labels: int = 5,
        min_text_score: float = 0.3,
        case_sensitive: bool = False,
        image_bundle: Optional[PathLike] = None,
        image_labels: int = 3,
        min_image_score: float = 0.1,
        clip_bundle: Optional[PathLike] = None,
        label_list: Optional[Union[PathLike, Sequence[str]]] = None,
        clip_labels: int = 3,
        min_clip_score: float = 0.1,
        device: str = "auto",
        model_batch_size: int = 32,
    ):
        from ...metadata import entries_of

        for name, v in (("text_labels", text_labels), ("image_labels", image_labels), ("clip_labels", clip_labels)):
            if int(v) < 0:
                raise InputError(f"{name} must be >= 0, got {v}")
        for name, f in (("min_text_score", min_text_score), ("min_image_score", min_image_score),
                        ("min_clip_score", min_clip_score)):
            if not 0.0 <= float(f) <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {f}")
        if clip_bundle is not None and label_list is None:
            raise InputError("clip_bundle needs label_list: the labels to choose from (a file, one per line)")
        if label_list is not None and clip_bundle is None:
            raise InputError("label_list is for zero-shot CLIP labels: give clip_bundle too")
        self.text_labels = int(text_labels)
        self.min_text_score = float(min_text_score)
        self.case_sensitive = bool(case_sensitive)
        self.entries: List[str] = []
        if self.text_labels:
            self.entries = entries_of(metadata)
            if not self.entries:
                raise InputError("the metadata holds no entries")
        self.image_bundle = None if image_bundle is None else Path(image_bundle).resolve()
        self.image_labels = int(image_labels)
        self.min_image_score = float(min_image_score)
        self.clip_bundle = None if clip_bundle is None else Path(clip_bundle).resolve()
        self.label_list = _load_list(label_list, "label_list")
        self.clip_labels = int(clip_labels)
        self.min_clip_score = float(min_clip_score)
        self.device = device
        self.model_batch_size = int(model_batch_size)
        for p, what in ((self.image_bundle, "image_bundle"), (self.clip_bundle, "clip_bundle")):
            if p is not None and not (p / "manifest.json").is_file():
                raise InputError(f"{what} {p}: not a model bundle (no manifest.json); export one with fastcurate export")
        self.scans = self.text_labels > 0
        uses_image = (self.image_bundle is not None and self.image_labels > 0) or self.clip_bundle is not None
        self.needs = (("text",) if self.text_labels else ()) + (("image",) if uses_image else ())
        self.wants = ()
        if uses_image:
            self.batch_size = 256
        self._matcher: Any = None
        self._letters: Optional[np.ndarray] = None
        self._idf: Optional[np.ndarray] = None
        self._img: Any = None
        self._clip: Any = None
        self._label_emb: Optional[np.ndarray] = None
        self._counts = {"rows": 0, "image_failed": 0, "from_image_labels_column": 0}

    def __getstate__(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        for k in ("_matcher", "_img", "_clip", "_label_emb", "_idf", "_letters"):
            d[k] = None
        return d

    def config(self) -> Dict[str, Any]:
        import hashlib
        import json

        from ...models.bundle import load_bundle

        def bundle_files(p: Optional[Path]) -> Any:
            return None if p is None else load_bundle(p).manifest.get("files", {})

        sha = hashlib.sha256(json.dumps(self.entries, ensure_ascii=False).encode("utf-8")).hexdigest()
        return {"metadata_sha256": sha if self.text_labels else None, "text_labels": self.text_labels,
                "min_text_score": self.min_text_score, "case_sensitive": self.case_sensitive,
                "image_bundle": bundle_files(self.image_bundle), "image_labels": self.image_labels,
                "min_image_score": self.min_image_score, "clip_bundle": bundle_files(self.clip_bundle),
                "label_list": self.label_list, "clip_labels": self.clip_labels, "min_clip_score": self.min_clip_score}

    def output_fields(self, schema: "pa.Schema", roles: Roles) -> List["pa.Field"]:
        import pyarrow as pa

        return [pa.field("labels", LABEL_TYPE())]

    def extra_columns(self) -> Sequence[str]:
        return ()

    def worker_resources(self) -> Dict[str, float]:
        uses_model = self.image_bundle is not None or self.clip_bundle is not None
        return {"GPU": 1.0} if uses_model and self.device != "cpu" else {}

    # ---- the caption matcher
    def _build_matcher(self) -> None:
        if self._matcher is None and self.text_labels:
            from ...kernels.matcher import Matcher

            self._matcher = Matcher(self.entries, mode="metaclip", case_sensitive=self.case_sensitive)
            # a label has two letters or more and is not a function word
            self._letters = np.array([sum(c.isalpha() for c in e) >= 2 and e.strip().lower() not in STOPWORDS
                                      for e in self.entries], bool)

    # ---- global pass: document frequencies of the entries
    def scan_roles(self) -> Sequence[str]:
        return ("text",)

    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        from ...kernels.balance import count_entries

        self._build_matcher()
        counts = np.zeros(len(self.entries), np.uint64)
        n_texts = 0
        for b in batches:
            t = b.require("text")
            n_texts += len(t) - t.null_count
            count_entries(self._matcher.match(t, threads=ctx.threads), len(self.entries), out=counts)
        atomic_write_npy(ctx.shard_work(shard) / "df.npy", counts)
        return {"texts": n_texts}

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        df = np.zeros(len(self.entries), np.uint64)
        n = 0
        for s, m in zip(ctx.inputs, summaries):
            if m is not None:
                df += np.load(ctx.shard_work(s) / "df.npy")
                n += int(m["texts"])
        atomic_write_npy(ctx.work / "df.npy", df)
        return {"texts": n, "entries_seen": int(np.count_nonzero(df))}

    # ---- per-shard pass
    def setup(self, ctx: Context, state: Optional[Dict[str, Any]]) -> None:
        if self.text_labels:
            assert state is not None
            self._build_matcher()
            df = np.load(ctx.work / "df.npy").astype(np.float64)
            n = float(state["texts"])
            with np.errstate(divide="ignore", invalid="ignore"):
                idf = np.where(df > 0, np.log(n / np.maximum(df, 1)) / np.log(n), 0.0) if n > 1 else np.ones_like(df)
            self._idf = np.clip(idf, 0.0, 1.0).astype(np.float32)
        if self.image_bundle is not None and self.image_labels and self._img is None:
            from ...models.encoder import ImageEncoder

            self._img = ImageEncoder(self.image_bundle, device=self.device, batch_size=self.model_batch_size)
        if self.clip_bundle is not None and self._clip is None:
            from ...models.encoder import ClipEncoder

            self._clip = ClipEncoder(self.clip_bundle, device=self.device, batch_size=self.model_batch_size)
            assert self.label_list is not None
            self._label_emb = self._clip.encode_texts([CLIP_PROMPT.format(x) for x in self.label_list])

    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        for b in batches:
            yield self.process_batch(ctx, b)

    def process_batch(self, ctx: Context, batch: Batch) -> Result:
        n = len(batch)
        rows: List[np.ndarray] = []
        labs: List[Sequence[str]] = []
        srcs: List[np.ndarray] = []
        scs: List[np.ndarray] = []
        self._counts["rows"] += n
        if self.text_labels:
            r = self._matcher.match(batch.require("text"), threads=ctx.threads).to_arrow()
            off = np.asarray(r.offsets.to_numpy(), np.int64) - int(r.offsets[0].as_py())
            ids = np.asarray(r.values.to_numpy(), np.int64) if len(r.values) else np.zeros(0, np.int64)
            row = np.repeat(np.arange(n), np.diff(off))
            assert self._idf is not None and self._letters is not None
            sc = self._idf[ids]
            ok = self._letters[ids] & (sc >= np.float32(self.min_text_score))
            row, ids, sc = row[ok], ids[ok], sc[ok]
            pick = _top_k(row, sc, ids, self.text_labels)
            rows.append(row[pick])
            labs.append([self.entries[i] for i in ids[pick]])
            srcs.append(np.zeros(len(pick), np.int64))
            scs.append(sc[pick])
        need_images = self._img is not None or self._clip is not None
        if need_images:
            from ...io.images import image_sources

            srcs_img = image_sources(batch.require("image"), batch.shard.path.parent)
            idx = np.flatnonzero([s is not None for s in srcs_img])
            failed = np.ones(n, bool)
            failed[idx] = False
            if self._img is not None:
                self._image_labels(srcs_img, idx, failed, rows, labs, srcs, scs)
            if self._clip is not None:
                self._clip_labels(srcs_img, idx, failed, rows, labs, srcs, scs)
            self._counts["image_failed"] += int(failed.sum())
        elif IMAGE_LABELS_COLUMN in batch.data.schema.names and self.image_labels:
            self._column_labels(batch, rows, labs, srcs, scs)
        if rows:
            col = labels_column(n, np.concatenate(rows), [x for ls in labs for x in ls], np.concatenate(srcs),
                                np.concatenate(scs))
        else:
            col = labels_column(n, np.zeros(0, np.int64), [], np.zeros(0, np.int64), np.zeros(0, np.float32))
        return Result(columns={"labels": col})

    def _image_labels(self, sources: List[Any], idx: np.ndarray, failed: np.ndarray, rows: List[np.ndarray],
                      labs: List[Sequence[str]], srcs: List[np.ndarray], scs: List[np.ndarray]) -> None:
        k = self.image_labels
        for ib in self._img.iter_image_batches((sources[i] for i in idx), top_k=k):
            at = idx[ib.start:ib.start + len(ib.ok)]
            failed[at[~ib.ok]] = True
            assert ib.top_ids is not None and ib.top_scores is not None
            ok = ib.ok[:, None] & (ib.top_ids >= 0) & (ib.top_scores >= np.float32(self.min_image_score))
            r, c = np.nonzero(ok)
            rows.append(at[r])
            labs.append([self._img.labels[int(i)] for i in ib.top_ids[r, c]])
            srcs.append(np.ones(len(r), np.int64))
            scs.append(ib.top_scores[r, c].astype(np.float32))

    def _clip_labels(self, sources: List[Any], idx: np.ndarray, failed: np.ndarray, rows: List[np.ndarray],
                     labs: List[Sequence[str]], srcs: List[np.ndarray], scs: List[np.ndarray]) -> None:
        assert self._label_emb is not None and self.label_list is not None
        k = min(self.clip_labels, len(self.label_list))
        if k == 0:
            return
        for ib in self._clip.iter_image_batches(sources[i] for i in idx):
            at = idx[ib.start:ib.start + len(ib.ok)]
            failed[at[~ib.ok]] = True
            good = np.flatnonzero(ib.ok)
            if not len(good):
                continue
            z = CLIP_LOGIT_SCALE * (ib.embeddings[good].astype(np.float64) @ self._label_emb.astype(np.float64).T)
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            order = np.argsort(-p, axis=1, kind="stable")[:, :k]
            top = np.take_along_axis(p, order, axis=1).astype(np.float32)
            ok = top >= np.float32(self.min_clip_score)
            r, c = np.nonzero(ok)
            rows.append(at[good[r]])
            labs.append([self.label_list[int(i)] for i in order[r, c]])
            srcs.append(np.full(len(r), 2, np.int64))
            scs.append(top[r, c])

    def _column_labels(self, batch: Batch, rows: List[np.ndarray], labs: List[Sequence[str]], srcs: List[np.ndarray],
                       scs: List[np.ndarray]) -> None:
        """ImageNet labels from embed's ``image_labels`` column (``[{label, score}]``)."""
        col = batch.data.column(IMAGE_LABELS_COLUMN)
        vals = col.to_pylist()
        r_, l_, s_ = [], [], []
        for i, ls in enumerate(vals):
            for d in (ls or [])[: self.image_labels]:
                if d and d.get("label") is not None and d.get("score") is not None and \
                        float(d["score"]) >= self.min_image_score:
                    r_.append(i)
                    l_.append(str(d["label"]))
                    s_.append(float(d["score"]))
        self._counts["from_image_labels_column"] += len(set(r_))
        rows.append(np.asarray(r_, np.int64))
        labs.append(l_)
        srcs.append(np.ones(len(r_), np.int64))
        scs.append(np.asarray(s_, np.float32))

    def shard_summary(self, ctx: Context, shard: ShardRef) -> Dict[str, Any]:
        out = dict(self._counts)
        self._counts = {k: 0 for k in self._counts}
        return out

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        tot = {k: sum(int(r["summary"].get(k, 0)) for r in shards) for k in ("rows", "image_failed",
                                                                              "from_image_labels_column")}
        import pyarrow.parquet as pq

        # label counts per source over the kept rows (the parts just written)
        per_source: Dict[str, int] = {s: 0 for s in SOURCES}
        rows_with: Dict[str, int] = {s: 0 for s in SOURCES}
        top: Dict[str, Dict[str, int]] = {s: {} for s in SOURCES}
        for p in sorted(ctx.out.glob("part-*.parquet")):
            t = pq.read_table(p, columns=["labels"])
            for ls in t.column("labels").to_pylist():
                seen = set()
                for d in ls or []:
                    per_source[d["source"]] += 1
                    seen.add(d["source"])
                    top[d["source"]][d["label"]] = top[d["source"]].get(d["label"], 0) + 1
                for s in seen:
                    rows_with[s] += 1
        common = {s: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))[:20]) for s, v in top.items()}
        out: Dict[str, Any] = {"labels": per_source, "rows_with_labels": rows_with, "most_common": common, **tot}
        if state:
            out["texts"] = state.get("texts")
        return {**out, "text_labels": self.text_labels, "min_text_score": self.min_text_score,
                "image_labels": self.image_labels if (self.image_bundle or tot["from_image_labels_column"]) else 0,
                "clip_labels": self.clip_labels if self.clip_bundle else 0}
