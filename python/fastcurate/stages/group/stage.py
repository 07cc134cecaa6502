"""Page grouping and within-group cleaning as one stage (docs/pairs.md#group).

MagicLens mines its image pairs from images that occur on the same web page. This stage gives each
row its group (a page URL, a document id or an explicit ``group`` column, or with ``group_by =
"url-dir"`` the image URL's host plus parent path), drops the groups that cannot give pairs or are
too large to be one page, and cleans each group with the rules of two other stages:

* the caption and image-size tests of :class:`~fastcurate.stages.filter.stage.FilterStage` (its
  ``process_batch``, unchanged: the bad-alt-text rules, too few words or characters, images too
  small or too elongated);
* the exact and near-duplicate search of :class:`~fastcurate.stages.dedup.stage.DedupStage` (its
  ``scan`` and :meth:`~fastcurate.stages.dedup.stage.DedupStage.decide`), restricted to the rows
  that passed the tests above and compared only within a group.

Why one stage and not a pipeline ``group -> dedup(within=group) -> filter``: the group's size is
known only after cleaning, and a group left with one row cannot give a pair. In a pipeline,
``group_size`` would be the size before cleaning and the rows left alone would go on silently.
Here every row gets exactly one reason, the first that applies, in this order:

1. ``no_group``: the key is null or empty (no URL, no key value);
2. ``oversized_group``: the group has more than ``max_group_size`` rows (a gallery or a CDN
   directory rather than a page), counted before cleaning;
3. ``singleton``: the group has one row;
4. the filter's reasons (``too_few_words``, ``filename``, ``image_too_small`` ...);
5. ``duplicate`` / ``near_duplicate`` of another row of the same group (detail: the kept twin);
6. ``singleton_after_cleaning``: the cleaning left one row of the group.

Kept rows get ``group`` (the key, a string) and ``group_size`` (the number of kept rows of the
group, >= 2). ``stats.json`` holds the rows, groups and possible pairs (sum of m(m-1)/2) after
each step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast
from urllib.parse import urlsplit

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_write_bytes, atomic_write_npy
from ...io.columns import Roles
from ...io.discover import ShardRef
from ...runner.stage import Batch, Context, Result, Stage
from .._rowstore import decided_results, read_strings, write_strings
from ..dedup.stage import EXACT_KEYS, DedupStage
from ..filter.defaults import CAPTION_RULES, CHARS_ABOVE, MAX_ASPECT_RATIO, MIN_IMAGE_SIZE, WORDS_ABOVE
from ..filter.stage import CODES as FILTER_CODES, FilterStage

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["GroupStage", "url_dir", "KEY_COLUMNS", "GROUP_BY"]

#: ``group_by = "column"`` without ``key_column``: the first present of these columns
KEY_COLUMNS = ("group", "page_url", "page", "document_id", "doc_id", "source_url")
GROUP_BY = ("column", "url-dir")

_FILTER_REASONS = tuple(c for c in FILTER_CODES[1:] if c not in ("no_clip_score", "low_clip_score"))
CODES: Tuple[str, ...] = ("", "no_group", "oversized_group", "singleton", *_FILTER_REASONS, "duplicate",
                          "near_duplicate", "singleton_after_cleaning")
_C = {name: i for i, name in enumerate(CODES)}
_FROM_FILTER = np.zeros(len(FILTER_CODES), np.uint8)
for _i, _name in enumerate(FILTER_CODES):
    if _name in _C:
        _FROM_FILTER[_i] = _C[_name]


def url_dir(url: Optional[str]) -> Optional[str]:
    """The image URL's host (lower-cased, without user info) plus its parent path, ending in "/":
    ``https://Img.Example.com/a/b/c.jpg?x=1`` -> ``img.example.com/a/b/``. Query and fragment are
    ignored. A string without a host (a local path) gives its directory (``dress/x.jpg`` ->
    ``dress/``). None or an empty string gives None."""
    if url is None:
        return None
    u = url.strip()
    if not u:
        return None
    plain = u.split("?", 1)[0].split("#", 1)[0]
    try:
        s = urlsplit(u)
        host = s.hostname or ""  # lower-cased, user info removed
        if host and s.port is not None:
            host = f"{host}:{s.port}"
        path = s.path if (s.scheme or s.netloc) else plain
    except ValueError:  # an invalid port or a malformed IPv6 host: treat it as a path
        host, path = "", plain
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if host:
        return f"{host}{parent}/"
    return f"{parent}/" if parent else "./"


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **cast(Dict[str, Any], arrays))  # (numpy's stub matches ** against allow_pickle)
    return buf.getvalue()


class GroupStage(Stage):
    """Groups rows by page (or URL directory) and cleans each group; see the module docstring.

    Args:
        group_by: "column" (the ``key_column``) or "url-dir" (the image URL's host + parent path).
        key_column: the group key column with ``group_by = "column"`` (default: the first present
            of group, page_url, page, document_id, doc_id, source_url).
        max_group_size: groups with more rows than this (before cleaning) are dropped as
            ``oversized_group``: a gallery, a listing or a CDN directory rather than a page.
        alt_text: apply the filter stage's caption tests (words, characters, bad-alt-text rules).
        rules: the bad-alt-text rules (default: all of url, filename, boilerplate, non_letters,
            repeated; an empty list turns them off).
        words_above: keep captions with more than this many words (DataComp: 2).
        chars_above: keep captions with more than this many characters (DataComp: 5).
        language: keep captions whose fastText top-1 language is this; None (default): off.
        image_size: the filter stage's image-size test: "auto" (where the size is known), "on", "off".
        min_image_size: keep images whose shorter side is at least this (low-resolution images go).
        max_aspect_ratio: keep images whose long/short side ratio is at most this.
        dedup: exact-duplicate keys compared within a group: any of "image", "caption", "url"
            (all must be equal); empty: no exact step. Text-only pools use ["caption"].
        near_duplicates: also drop near-duplicate images within a group (pHash and dHash).
        radius: the pHash Hamming radius in bits.
        dhash_radius: the dHash radius a near pair must also meet (None: pHash alone).
    """

    name = "group"
    version = 1
    scans = True
    batch_size = 2048  # image bytes may travel with the rows
    produces = ("group", "group_size")
    reasons = {
        "no_group": "the group key is null or empty (no URL or no key value)",
        "oversized_group": "the group has more than max_group_size rows (before cleaning): not one page",
        "singleton": "the group has a single row: it cannot give a pair",
        **{k: v for k, v in FilterStage.reasons.items() if k in _FILTER_REASONS},
        "duplicate": "the same content as the kept row of its group named in detail (exact keys)",
        "near_duplicate": "the same image as the kept row of its group named in detail (perceptual hashes)",
        "singleton_after_cleaning": "the cleaning left this row alone in its group",
    }

    def __init__(
        self,
        *,
        group_by: str = "column",
        key_column: Optional[str] = None,
        max_group_size: int = 100,
        alt_text: bool = True,
        rules: Optional[Sequence[str]] = CAPTION_RULES,
        words_above: int = WORDS_ABOVE,
        chars_above: int = CHARS_ABOVE,
        language: Optional[str] = None,
        image_size: str = "auto",
        min_image_size: int = MIN_IMAGE_SIZE,
        max_aspect_ratio: float = MAX_ASPECT_RATIO,
        dedup: Sequence[str] = ("image",),
        near_duplicates: bool = True,
        radius: int = 10,
        dhash_radius: Optional[int] = 10,
    ):
        if group_by not in GROUP_BY:
            raise InputError(f"group_by must be one of {GROUP_BY}, got {group_by!r}")
        if group_by == "url-dir" and key_column is not None:
            raise InputError("key_column is for group_by='column'; group_by='url-dir' reads the URL column "
                             "(choose it with --url-column)")
        if int(max_group_size) < 2:
            raise InputError(f"max_group_size must be >= 2 (a pair needs two rows), got {max_group_size}")
        self.group_by = group_by
        self.key_column = key_column
        self.max_group_size = int(max_group_size)
        self.alt_text = bool(alt_text)
        self.dedup_keys = tuple(dict.fromkeys(dedup or ()))
        bad = [k for k in self.dedup_keys if k not in EXACT_KEYS]
        if bad:
            raise InputError(f"unknown dedup keys {bad}; choose among {list(EXACT_KEYS)}")
        self.near_duplicates = bool(near_duplicates)
        # the two stages whose rules this one applies, built with this stage's options
        self._filter: Optional[FilterStage] = None
        if self.alt_text or image_size != "off":
            self._filter = FilterStage(words_above=words_above, chars_above=chars_above, rules=rules,
                                       language=language if self.alt_text else None, image_size=image_size,
                                       min_image_size=min_image_size, max_aspect_ratio=max_aspect_ratio,
                                       text=self.alt_text)
        self._filter_config = {"alt_text": self.alt_text, "rules": list(rules or ()), "words_above": int(words_above),
                               "chars_above": int(chars_above), "language": language, "image_size": image_size,
                               "min_image_size": int(min_image_size), "max_aspect_ratio": float(max_aspect_ratio)}
        self._dedup: Optional[DedupStage] = None
        if self.dedup_keys or self.near_duplicates:
            self._dedup = DedupStage(exact=self.dedup_keys, near=self.near_duplicates, radius=radius,
                                     dhash_radius=dhash_radius)
        self._dedup_config = self._dedup.config() if self._dedup else None
        needs: List[str] = []
        if group_by == "url-dir":
            needs.append("url")
        if self._filter is not None:
            needs += list(self._filter.needs)
        if self._dedup is not None:
            needs += list(self._dedup.needs)
        self.needs = tuple(dict.fromkeys(needs))
        wants = ["image", "width", "height"] if image_size != "off" or self._dedup is not None else []
        self.wants = tuple(w for w in dict.fromkeys(wants) if w not in self.needs)
        self.batch_size = 2048 if "image" in self.needs + self.wants else 65536

    def config(self) -> Dict[str, Any]:
        return {"group_by": self.group_by, "key_column": self.key_column, "max_group_size": self.max_group_size,
                "filter": self._filter_config, "dedup": self._dedup_config}

    def output_fields(self, schema: "pa.Schema", roles: Roles) -> List["pa.Field"]:
        import pyarrow as pa

        return [pa.field("group", pa.string()), pa.field("group_size", pa.int32())]

    def extra_columns(self) -> Sequence[str]:
        if self.group_by == "url-dir":
            return ()
        return (self.key_column,) if self.key_column else KEY_COLUMNS

    # ---- the group key of each row
    def _key_name(self, b: Batch) -> str:
        names = b.data.schema.names
        if self.key_column is not None:
            if self.key_column not in names:
                raise InputError(f"{b.shard.path}: no group key column {self.key_column!r}; the columns are {names} "
                                 f"(pass --key-column NAME, or --group-by url-dir to group by the image URL's directory)")
            return self.key_column
        for k in KEY_COLUMNS:
            if k in names:
                return k
        raise InputError(f"{b.shard.path}: none of the group key columns {list(KEY_COLUMNS)} is present; the columns are "
                         f"{names}: pass --key-column NAME, or --group-by url-dir to group by the image URL's host and "
                         f"parent path")

    def keys(self, b: Batch) -> "pa.Array":
        """The group key of each row of ``b`` (a string array; null where there is none)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.group_by == "url-dir":
            col = b.require("url")
            d = col.dictionary_encode()
            vals = [url_dir(u) for u in d.dictionary.to_pylist()]
            return pa.array(vals, pa.string()).take(d.indices)
        col = b.data.column(self._key_name(b))
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        t = col.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            col = pa.array([None if v is None else v.hex() for v in col.to_pylist()], pa.string())
        elif not pa.types.is_string(t):
            try:
                col = pc.cast(col, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(f"{b.shard.path}: the group key column has type {t}; give a string or integer "
                                 f"column (--key-column)") from None
        # an empty key is no key (it would group every row without one together)
        empty = pc.equal(pc.utf8_length(col), 0)
        return pc.if_else(empty, pa.scalar(None, pa.string()), col)

    # ---- global pass: keys, filter decisions and dedup keys of every row
    def scan_roles(self) -> Sequence[str]:
        return tuple(self.needs) + tuple(self.wants)

    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        from ...kernels.dedup import text_hashes

        digests: List[np.ndarray] = []
        valid: List[np.ndarray] = []
        fcodes: List[np.ndarray] = []
        fdetail: List[Optional[str]] = []

        def tap(it: Iterator[Batch]) -> Iterator[Batch]:
            for b in it:
                h = text_hashes(self.keys(b))
                digests.append(h.digest)
                valid.append(h.valid)
                if self._filter is not None:
                    r = self._filter.process_batch(ctx, b)
                    codes = np.asarray(r.codes, np.uint8)
                    det = list(r.detail or [])
                    full: List[Optional[str]] = [None] * len(b)
                    for i, d in zip(np.flatnonzero(codes).tolist(), det):
                        full[i] = d
                    fcodes.append(codes)
                    fdetail.extend(full)
                else:
                    fcodes.append(np.zeros(len(b), np.uint8))
                    fdetail.extend([None] * len(b))
                yield b

        summary: Dict[str, Any] = {}
        if self._dedup is not None:
            summary["dedup"] = self._dedup.scan(ctx, shard, tap(batches))
        else:
            for _ in tap(batches):
                pass
        d = np.concatenate(digests) if digests else np.zeros((0, 2), np.uint64)
        v = np.concatenate(valid) if valid else np.zeros(0, bool)
        fc = np.concatenate(fcodes) if fcodes else np.zeros(0, np.uint8)
        work = ctx.shard_work(shard)
        atomic_write_bytes(work / "group_keys.npz", _npz_bytes(digest=d, valid=v, filter_code=fc))
        write_strings(work / "filter_detail.parquet", fdetail)
        return summary

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        import pyarrow.parquet as pq

        good = [s for s, m in zip(ctx.inputs, summaries) if m is not None]
        loaded = [np.load(ctx.shard_work(s) / "group_keys.npz") for s in good]
        sizes = [len(z["valid"]) for z in loaded]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(starts[-1])
        digest = np.concatenate([z["digest"] for z in loaded]) if loaded else np.zeros((0, 2), np.uint64)
        valid = np.concatenate([z["valid"] for z in loaded]) if loaded else np.zeros(0, bool)
        fcode = np.concatenate([z["filter_code"] for z in loaded]) if loaded else np.zeros(0, np.uint8)
        fdetail = np.empty(n, dtype=object)
        for s, lo in zip(good, starts[:-1]):
            vals = pq.read_table(ctx.shard_work(s) / "filter_detail.parquet").column(0).to_pylist()
            fdetail[lo:lo + len(vals)] = vals

        # group index per row (-1: no key): the 128-bit digests, ordered, so it does not depend on layout
        gid = np.full(n, -1, np.int64)
        rows = np.flatnonzero(valid)
        if len(rows):
            _, inv = np.unique(digest[rows], axis=0, return_inverse=True)
            gid[rows] = inv.reshape(-1)
        n_groups = int(gid.max()) + 1 if len(rows) else 0

        def sizes_of(mask: np.ndarray) -> np.ndarray:
            return np.bincount(gid[mask & (gid >= 0)], minlength=n_groups)

        def summary(mask: np.ndarray) -> Dict[str, int]:
            s = sizes_of(mask)
            return {"rows": int(s.sum()), "groups": int((s >= 2).sum()), "rows_in_groups_of_2_or_more": int(s[s >= 2].sum()),
                    "pairs": int((s * (s - 1) // 2).sum())}

        code = np.zeros(n, np.uint8)
        detail = np.full(n, None, dtype=object)
        code[~valid] = _C["no_group"]
        raw = sizes_of(valid)
        steps: Dict[str, Dict[str, int]] = {"grouped": summary(valid)}
        big = valid & (raw[np.maximum(gid, 0)] > self.max_group_size)
        code[big] = _C["oversized_group"]
        for i in np.flatnonzero(big):
            detail[i] = f"{int(raw[gid[i]])} rows > max_group_size {self.max_group_size}"
        single = valid & ~big & (raw[np.maximum(gid, 0)] < 2)
        code[single] = _C["singleton"]
        open_ = code == 0
        steps["size_limited"] = summary(open_)
        # the filter's tests, decided in the scan; applied to the rows still open
        f = open_ & (fcode > 0)
        code[f] = _FROM_FILTER[fcode[f]]
        detail[f] = fdetail[f]
        open_ = code == 0
        steps["filtered"] = summary(open_)
        dedup_stats: Dict[str, Any] = {}
        if self._dedup is not None:
            dd = self._dedup.decide(ctx, summaries, within=gid.astype(np.uint64), eligible=open_)
            dup = open_ & (dd.code > 0)
            code[dup & (dd.code == 1)] = _C["duplicate"]
            code[dup & (dd.code == 2)] = _C["near_duplicate"]
            detail[dup] = dd.detail[dup]
            dedup_stats = {k: v for k, v in dd.stats.items() if k != "rows"}
            open_ = code == 0
        steps["deduplicated"] = summary(open_)
        left = sizes_of(open_)
        alone = open_ & (left[np.maximum(gid, 0)] < 2)
        code[alone] = _C["singleton_after_cleaning"]
        for i in np.flatnonzero(alone):
            detail[i] = f"{int(raw[gid[i]])} rows before cleaning"
        open_ = code == 0
        steps["cleaned"] = summary(open_)
        size = np.where(open_, left[np.maximum(gid, 0)], 0).astype(np.int32)
        for s, lo, hi in zip(good, starts[:-1], starts[1:]):
            atomic_write_npy(ctx.shard_work(s) / "group_code.npy", code[lo:hi])
            atomic_write_npy(ctx.shard_work(s) / "group_size.npy", size[lo:hi])
            write_strings(ctx.shard_work(s) / "group_detail.parquet", detail[lo:hi].tolist())
        kept_sizes = left[left >= 2]
        return {"steps": steps, "dedup": dedup_stats, "groups_with_a_key": n_groups,
                "group_sizes_before": _hist(raw[raw >= 1]), "group_sizes_after": _hist(kept_sizes),
                "largest_group_before": int(raw.max()) if n_groups else 0}

    # ---- per-shard pass
    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        d = ctx.shard_work(shard)
        return decided_results(batches, np.load(d / "group_code.npy"),
                               read_strings(d / "group_detail.parquet").to_pylist(), CODES,
                               columns={"group_size": np.load(d / "group_size.npy")},
                               batch_columns=lambda b: {"group": self.keys(b)})

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        assert state is not None
        return {**self.config(), **state}


def _hist(sizes: np.ndarray) -> Dict[str, int]:
    """Group sizes in buckets: 1, 2, 3, 4, 5-9, 10-19, 20-49, 50-99, 100+."""
    edges = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 9), (10, 19), (20, 49), (50, 99), (100, None)]
    out: Dict[str, int] = {}
    for lo, hi in edges:
        m = (sizes >= lo) if hi is None else (sizes >= lo) & (sizes <= hi)
        name = str(lo) if hi == lo else (f"{lo}+" if hi is None else f"{lo}-{hi}")
        out[name] = int(m.sum())
    return out
