"""Pair mining within groups as a stage (docs/pairs.md#pairs).

The stage's rows are images; the pairs are a stage-level file, ``pairs.parquet``:

* global pass, per shard: each row's uid hash, group, embeddings (``image_emb``, ``text_emb``
  from ``fastcurate embed``) and labels (``fastcurate annotate``) go to the shard's work
  directory;
* reduce, over all shards: rows are sorted into groups (:func:`fastcurate.kernels.pairs.group_rows`);
  each group's candidate pairs are enumerated and capped (``max_pairs_per_group``, the pairs of
  lowest priority, a pure function of the two uids and ``seed``) and scored by the C++ kernel
  (image-image, text-text and cross image-text cosines, label Jaccard); a pair is kept when its
  relevance is in the band ``[min_relevance, max_relevance]`` (related, not a near duplicate, not
  unrelated); then pair types are balanced (same entity: label overlap >= ``same_entity_overlap``;
  different entity: below; unlabeled pairs are not balanced);
* per-shard pass: an image row is kept when it is in at least one kept pair (``pair_count``);
  otherwise it is dropped with the first reason that applies: ``no_group``, ``no_embedding``,
  ``duplicate_uid``, ``singleton``, ``capped``, ``no_pair_in_band``, ``balanced_out``.

Pairs name their rows by uid (and group), so two rows with one uid in one group would make a
pair ambiguous (without an id column the uid is the image URL, and web pools repeat URLs with
different alt-texts): of such rows one is kept, the one whose relevance vector hashes lowest
(a choice by content, so it does not depend on the shard layout), and the others are dropped as
``duplicate_uid``.

So ``rows_in == rows_kept + sum(rows_dropped)`` counts images; the pair counts of every step
(possible, capped, unscored, unrelated, too similar, balanced out, kept) are in ``stats.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_copy, atomic_write_bytes, atomic_write_npy, atomic_write_table
from ...io.columns import Roles
from ...io.discover import ShardRef
from ...runner.stage import Batch, Context, Result, Stage
from .._rowstore import decided_results, read_strings, write_strings

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["PairsStage", "RELEVANCE", "PAIR_TYPES", "PAIRS_FILE", "pairs_schema"]

RELEVANCE = ("auto", "image", "text", "mean")
PAIR_TYPES = ("same_entity", "different_entity", "unlabeled")
PAIRS_FILE = "pairs.parquet"
CODES = ("", "no_group", "no_embedding", "duplicate_uid", "singleton", "capped", "no_pair_in_band", "balanced_out")
_C = {name: i for i, name in enumerate(CODES)}
_COLUMNS = ("group", "image_emb", "text_emb", "labels", "clip_score")
# relevance histogram: 0.05-wide bins over [-1, 1]
_HIST_EDGES = np.round(np.linspace(-1.0, 1.0, 41), 2)


def pairs_schema() -> "pa.Schema":
    """The columns of ``pairs.parquet``."""
    import pyarrow as pa

    f32 = pa.float32()
    return pa.schema([
        ("query_uid", pa.string()), ("target_uid", pa.string()), ("group", pa.string()), ("pair_type", pa.string()),
        ("relevance", f32), ("image_sim", f32), ("text_sim", f32), ("query_image_target_text", f32),
        ("query_text_target_image", f32), ("label_overlap", f32),
        ("labels", pa.list_(pa.struct([("label", pa.string()), ("side", pa.string())]))),
    ])


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **cast(Dict[str, Any], arrays))  # (numpy's stub matches ** against allow_pickle)
    return buf.getvalue()


def _hist(x: np.ndarray) -> Dict[str, int]:
    x = x[~np.isnan(x)]
    c, _ = np.histogram(np.clip(x, -1.0, 1.0), bins=_HIST_EDGES)
    return {f"{_HIST_EDGES[i]:.2f}": int(v) for i, v in enumerate(c) if v}


def _overlap_buckets(ov: np.ndarray) -> Dict[str, int]:
    lab = ~np.isnan(ov)
    o = ov[lab]
    return {"unlabeled": int((~lab).sum()), "0": int((o == 0).sum()), "(0, 0.25)": int(((o > 0) & (o < 0.25)).sum()),
            "[0.25, 0.5)": int(((o >= 0.25) & (o < 0.5)).sum()), "[0.5, 0.75)": int(((o >= 0.5) & (o < 0.75)).sum()),
            "[0.75, 1]": int((o >= 0.75).sum())}


class PairsStage(Stage):
    """Mines, scores, filters and balances image pairs within groups; see the module docstring.

    Args:
        max_pairs_per_group: at most this many candidate pairs per group, chosen by a priority that
            is a pure function of the two uids and the seed; <= 0: every pair.
        seed: the seed of the pair priority (and of the calibration sample).
        relevance: the score the band applies to: "image" (image-image cosine), "text" (text-text
            cosine), "mean" (their mean), or "auto" (image when the input has image embeddings, else
            text).
        min_relevance: pairs below it are unrelated; None: calibrated on the input, the
            ``unrelated_quantile`` of the relevance of random pairs of rows from different groups.
        unrelated_quantile: the quantile used when ``min_relevance`` is None (default 0.9: a kept
            pair is more related than 90 % of random cross-group pairs).
        max_relevance: pairs above it are near duplicates (default 0.95).
        balance: balance same-entity and different-entity pairs.
        same_entity_overlap: a pair whose label Jaccard index is at least this is "same entity".
        max_type_ratio: balancing keeps at most this many pairs of the larger of the two types per
            pair of the smaller (its pairs of lowest priority); 1.0: as many of each.
        calibration_pairs: random cross-group pairs drawn to calibrate ``min_relevance``.
    """

    name = "pairs"
    version = 2
    scans = True
    batch_size = 8192
    consumes: Tuple[str, ...] = ("group", "image_emb|text_emb")
    produces = ("pair_count", PAIRS_FILE)
    reasons = {
        "no_group": "the row has no group (its group column is null)",
        "no_embedding": "the row has no vector for the relevance score (image_emb / text_emb null)",
        "duplicate_uid": "another row of its group has the same uid (pairs name rows by uid): one of them is kept",
        "singleton": "no other row of its group can be paired with it",
        "capped": "the per-group cap (max_pairs_per_group) chose no pair of this row",
        "no_pair_in_band": "every candidate pair of this row is outside the relevance band (near duplicate or unrelated)",
        "balanced_out": "its in-band pairs were all removed by the pair-type balancing",
    }

    def __init__(
        self,
        *,
        max_pairs_per_group: int = 10,
        seed: int = 0,
        relevance: str = "auto",
        min_relevance: Optional[float] = None,
        unrelated_quantile: float = 0.9,
        max_relevance: float = 0.95,
        balance: bool = True,
        same_entity_overlap: float = 0.5,
        max_type_ratio: float = 3.0,
        calibration_pairs: int = 100_000,
    ):
        if relevance not in RELEVANCE:
            raise InputError(f"relevance must be one of {RELEVANCE}, got {relevance!r}")
        if not 0.0 < float(unrelated_quantile) < 1.0:
            raise InputError(f"unrelated_quantile must be in (0, 1), got {unrelated_quantile}")
        if min_relevance is not None and not float(min_relevance) <= float(max_relevance):
            raise InputError(f"min_relevance {min_relevance} > max_relevance {max_relevance}: the band is empty")
        if not 0.0 <= float(same_entity_overlap) <= 1.0:
            raise InputError(f"same_entity_overlap must be in [0, 1], got {same_entity_overlap}")
        if not float(max_type_ratio) >= 1.0:
            raise InputError(f"max_type_ratio must be >= 1, got {max_type_ratio}")
        if int(calibration_pairs) < 100:
            raise InputError(f"calibration_pairs must be >= 100, got {calibration_pairs}")
        if not isinstance(seed, int) or not 0 <= seed < 1 << 63:
            raise InputError(f"seed must be an int in [0, 2**63), got {seed!r}")
        self.max_pairs_per_group = int(max_pairs_per_group)
        self.seed = int(seed)
        self.relevance = relevance
        self.min_relevance = None if min_relevance is None else float(min_relevance)
        self.unrelated_quantile = float(unrelated_quantile)
        self.max_relevance = float(max_relevance)
        self.balance = bool(balance)
        self.same_entity_overlap = float(same_entity_overlap)
        self.max_type_ratio = float(max_type_ratio)
        self.calibration_pairs = int(calibration_pairs)
        if relevance == "image":
            self.consumes = ("group", "image_emb")
        elif relevance == "text":
            self.consumes = ("group", "text_emb")
        elif relevance == "mean":
            self.consumes = ("group", "image_emb", "text_emb")

    def config(self) -> Dict[str, Any]:
        return {"max_pairs_per_group": self.max_pairs_per_group, "seed": self.seed, "relevance": self.relevance,
                "min_relevance": self.min_relevance, "unrelated_quantile": self.unrelated_quantile,
                "max_relevance": self.max_relevance, "balance": self.balance,
                "same_entity_overlap": self.same_entity_overlap, "max_type_ratio": self.max_type_ratio,
                "calibration_pairs": self.calibration_pairs}

    def output_fields(self, schema: "pa.Schema", roles: Roles) -> List["pa.Field"]:
        import pyarrow as pa

        return [pa.field("pair_count", pa.int32())]

    def extra_columns(self) -> Sequence[str]:
        return _COLUMNS

    def scan_roles(self) -> Sequence[str]:
        return ()

    # ---- global pass
    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        import pyarrow as pa

        from ...kernels.balance import hash_keys
        from ...kernels.pairs import label_csr_arrow, label_strings, vectors

        uh: List[np.ndarray] = []
        gh: List[np.ndarray] = []
        gv: List[np.ndarray] = []
        emb: Dict[str, List[np.ndarray]] = {"image": [], "text": []}
        ok: Dict[str, List[np.ndarray]] = {"image": [], "text": []}
        loff: List[np.ndarray] = []
        lids: List[np.ndarray] = []
        uids: List["pa.Array"] = []
        groups: List["pa.Array"] = []
        labels: List["pa.Array"] = []
        has = {"image": None, "text": None, "labels": False, "clip_score": False}
        n = 0
        for b in batches:
            names = b.data.schema.names
            if "group" not in names:
                raise InputError(f"{b.shard.path}: no 'group' column; run `fastcurate group` first (its output "
                                 f"directory is this stage's input); the columns are {names}")
            g = b.data.column("group")
            if pa.types.is_dictionary(g.type):
                g = g.dictionary_decode()
            g = g.cast(pa.string())
            valid = np.asarray(g.is_valid().to_numpy(zero_copy_only=False), bool)
            uh.append(hash_keys(b.uid))
            gh.append(hash_keys(g.fill_null("")))
            gv.append(valid)
            uids.append(b.uid)
            groups.append(g)
            for kind in ("image", "text"):
                col = f"{kind}_emb"
                if col in names:
                    a, v = vectors(b.data.column(col))
                    emb[kind].append(a)
                    ok[kind].append(v)
                    has[kind] = a.shape[1]
                elif has[kind] is not None:
                    raise InputError(f"{b.shard.path}: {col} is missing in part of the shard")
            if "labels" in names:
                o, i = label_csr_arrow(b.data.column("labels"))
                loff.append(o[1:] + (sum(len(x) for x in lids)))
                lids.append(i)
                labels.append(label_strings(b.data.column("labels")))
                has["labels"] = True
            else:
                labels.append(pa.array([[]] * len(b), pa.list_(pa.string())))
            has["clip_score"] = has["clip_score"] or "clip_score" in names
            n += len(b)
        arrays: Dict[str, np.ndarray] = {
            "uid_hash": np.concatenate(uh) if uh else np.zeros(0, np.uint64),
            "group_hash": np.concatenate(gh) if gh else np.zeros(0, np.uint64),
            "group_valid": np.concatenate(gv) if gv else np.zeros(0, bool),
        }
        for kind in ("image", "text"):
            if emb[kind]:
                dt = emb[kind][0].dtype
                arrays[kind] = np.concatenate([a.astype(dt, copy=False) for a in emb[kind]])
                arrays[f"{kind}_valid"] = np.concatenate(ok[kind])
        if has["labels"]:
            if len(loff) != len(uids):
                raise InputError(f"{shard.path}: the labels column is missing in part of the shard")
            arrays["label_offsets"] = np.concatenate([[0], *loff]).astype(np.int64)
            arrays["label_ids"] = np.concatenate(lids) if lids else np.zeros(0, np.uint64)
        work = ctx.shard_work(shard)
        atomic_write_bytes(work / "pairs_rows.npz", _npz_bytes(**arrays))
        t = pa.table({"uid": pa.concat_arrays(uids) if uids else pa.array([], pa.string()),
                      "group": pa.concat_arrays(groups) if groups else pa.array([], pa.string()),
                      "labels": pa.concat_arrays(labels) if labels else pa.array([], pa.list_(pa.string()))})
        atomic_write_table(t, work / "pairs_rows.parquet")
        return {"rows": n, "image_dim": has["image"], "text_dim": has["text"], "labels": has["labels"],
                "clip_score": has["clip_score"]}

    # ---- the pairs, over all shards
    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ...kernels.pairs import group_rows, mine_pairs

        good = [(s, meta) for s, meta in zip(ctx.inputs, summaries) if meta is not None]
        loaded = [np.load(ctx.shard_work(s) / "pairs_rows.npz") for s, _ in good]
        sizes = [int(meta["rows"]) for _, meta in good]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(starts[-1])

        def cat(key: str, dtype: Any) -> np.ndarray:
            parts = [z[key] for z in loaded]
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        uid_hash = cat("uid_hash", np.uint64)
        group_hash = cat("group_hash", np.uint64)
        group_valid = cat("group_valid", bool)
        vec: Dict[str, Optional[np.ndarray]] = {}
        vok: Dict[str, np.ndarray] = {}
        for kind in ("image", "text"):
            dims = {meta[f"{kind}_dim"] for _, meta in good if meta[f"{kind}_dim"] is not None}
            if len(dims) > 1:
                raise InputError(f"{kind}_emb has different sizes {sorted(dims)} in different shards; embed them with "
                                 f"one model")
            if not dims:
                vec[kind] = None
                vok[kind] = np.zeros(n, bool)
                continue
            d = dims.pop()
            parts, oks = [], []
            for z, (_, m) in zip(loaded, good):
                if kind in z.files:
                    parts.append(z[kind])
                    oks.append(z[f"{kind}_valid"])
                else:  # a shard without this column: its rows have no vector
                    parts.append(np.zeros((int(m["rows"]), d), np.float16))
                    oks.append(np.zeros(int(m["rows"]), bool))
            dt = np.float16 if all(p.dtype == np.float16 for p in parts) else np.float32
            vec[kind] = np.concatenate([p.astype(dt, copy=False) for p in parts])
            vok[kind] = np.concatenate(oks)
        rel_kind = self.relevance
        if rel_kind == "auto":
            rel_kind = "image" if vec["image"] is not None and vok["image"].any() else "text"
        need = ("image", "text") if rel_kind == "mean" else (rel_kind,)
        for k in need:
            if vec[k] is None:
                raise InputError(f"relevance {rel_kind!r} needs the {k}_emb column, which the input lacks; run "
                                 f"`fastcurate embed` before this stage (or choose --relevance)")
        rel_ok = np.ones(n, bool)
        for k in need:
            rel_ok &= vok[k]
        cross = (all(m["clip_score"] for _, m in good) and bool(good) and vec["image"] is not None
                 and vec["text"] is not None and vec["image"].shape[1] == vec["text"].shape[1])
        has_labels = any(m["labels"] for _, m in good)
        # labels CSR over all rows (shards without labels: none)
        if has_labels:
            offs, ids = [np.zeros(1, np.int64)], []
            base = 0
            for z, (_, m) in zip(loaded, good):
                if "label_offsets" in z.files:
                    o, i = z["label_offsets"], z["label_ids"]
                else:
                    o, i = np.zeros(int(m["rows"]) + 1, np.int64), np.zeros(0, np.uint64)
                offs.append(o[1:] + base)
                ids.append(i)
                base += len(i)
            label_off = np.concatenate(offs).astype(np.int64)
            label_ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)

        code = np.zeros(n, np.uint8)
        code[~group_valid] = _C["no_group"]
        code[group_valid & ~rel_ok] = _C["no_embedding"]
        usable = np.flatnonzero(code == 0)
        order, gstarts = group_rows(group_hash[usable], uid_hash[usable])
        dup_rows = self._duplicate_uids(usable[order], group_hash, uid_hash, [vec[k] for k in need])
        if len(dup_rows):
            code[dup_rows] = _C["duplicate_uid"]
            usable = np.flatnonzero(code == 0)
            order, gstarts = group_rows(group_hash[usable], uid_hash[usable])
        rows = usable[order]  # sorted position -> global row
        gsz = np.diff(gstarts)  # rows per group
        gsize = np.repeat(gsz, gsz)
        code[rows[gsize < 2]] = _C["singleton"]

        lab = None
        if has_labels:
            lens = label_off[rows + 1] - label_off[rows]
            lo2 = np.zeros(len(rows) + 1, np.int64)
            np.cumsum(lens, out=lo2[1:])
            src = np.repeat(label_off[rows] - lo2[:-1], lens) + np.arange(int(lo2[-1]))
            lab = (lo2, np.ascontiguousarray(label_ids[src]))
        P = mine_pairs(gstarts, np.ascontiguousarray(uid_hash[rows]), seed=self.seed,
                       max_pairs_per_group=self.max_pairs_per_group,
                       image=vec["image"][rows] if vec["image"] is not None else None,
                       text=vec["text"][rows] if vec["text"] is not None else None, cross=bool(cross), labels=lab,
                       threads=ctx.threads)
        rel = self._relevance(rel_kind, P.image_sim, P.text_sim)
        lo_band, calib = self._min_relevance(rel_kind, rows, gstarts, vec)
        unscored = np.isnan(rel)
        unrelated = ~unscored & (rel < np.float32(lo_band))
        similar = ~unscored & (rel > np.float32(self.max_relevance))
        in_band = ~unscored & ~unrelated & ~similar
        ov = P.label_overlap
        ptype = np.full(len(P), 2, np.int8)  # unlabeled
        ptype[~np.isnan(ov) & (ov >= np.float32(self.same_entity_overlap))] = 0
        ptype[~np.isnan(ov) & (ov < np.float32(self.same_entity_overlap))] = 1
        kept = in_band.copy()
        balance_note = self._balance(kept, ptype, P.priority)
        # per row: candidate, in-band and kept pair counts (sorted positions)
        ns = len(rows)

        def count(mask: np.ndarray) -> np.ndarray:
            return (np.bincount(P.query[mask], minlength=ns) + np.bincount(P.target[mask], minlength=ns)).astype(np.int64)

        c_cand = count(np.ones(len(P), bool))
        c_band = count(in_band)
        c_kept = count(kept)
        c_sim = count(similar)
        c_unrel = count(unrelated)
        open_ = code[rows] == 0
        capped = open_ & (c_cand == 0)
        noband = open_ & (c_cand > 0) & (c_band == 0)
        balanced = open_ & (c_band > 0) & (c_kept == 0)
        code[rows[capped]] = _C["capped"]
        code[rows[noband]] = _C["no_pair_in_band"]
        code[rows[balanced]] = _C["balanced_out"]
        detail = np.full(n, None, dtype=object)
        for r in dup_rows.tolist():
            detail[r] = "another row of its group has this uid and was kept (the lower hash of the vector bytes)"
        n_pairs_group = gsz * (gsz - 1) // 2
        k_group = np.minimum(n_pairs_group, self.max_pairs_per_group) if self.max_pairs_per_group > 0 else n_pairs_group
        gidx = np.repeat(np.arange(len(gsz)), gsz)
        for p in np.flatnonzero(capped):
            g = gidx[p]
            detail[rows[p]] = f"{int(gsz[g])} rows in its group: {int(k_group[g])} of {int(n_pairs_group[g])} pairs chosen"
        for p in np.flatnonzero(noband):
            detail[rows[p]] = (f"{int(c_cand[p])} candidate pairs: {int(c_sim[p])} near duplicates (> {self.max_relevance:g}), "
                               f"{int(c_unrel[p])} unrelated (< {lo_band:.4g}), {int(c_cand[p] - c_sim[p] - c_unrel[p])} "
                               f"unscored")
        for p in np.flatnonzero(balanced):
            detail[rows[p]] = f"{int(c_band[p])} in-band pairs, all removed by balancing"
        pair_count = np.zeros(n, np.int32)
        pair_count[rows] = c_kept.astype(np.int32)
        assert ((code == 0) == (pair_count > 0)).all()
        # the rows' uids, groups and labels, for the pairs file
        tabs = [pq.read_table(ctx.shard_work(s) / "pairs_rows.parquet") for s, _ in good]
        rt = pa.concat_tables(tabs) if tabs else pairs_schema().empty_table()
        kp = np.flatnonzero(kept)
        q_rows, t_rows = rows[P.query[kp]], rows[P.target[kp]]
        table = self._pairs_table(rt, q_rows, t_rows, P, kp, rel, ptype)
        atomic_write_table(table, ctx.work / PAIRS_FILE, compression="zstd", compression_level=1)
        for (s, _), lo, hi in zip(good, starts[:-1], starts[1:]):
            atomic_write_npy(ctx.shard_work(s) / "pairs_code.npy", code[lo:hi])
            atomic_write_npy(ctx.shard_work(s) / "pair_count.npy", pair_count[lo:hi])
            write_strings(ctx.shard_work(s) / "pairs_detail.parquet", detail[lo:hi].tolist())
        def type_counts(mask: np.ndarray) -> Dict[str, int]:
            c = np.bincount(ptype[mask], minlength=3)
            return {t: int(c[i]) for i, t in enumerate(PAIR_TYPES)}

        return {
            "relevance": rel_kind, "band": {"min": float(lo_band), "max": self.max_relevance, "min_from": calib},
            "cross_scores": bool(cross), "labels": bool(has_labels),
            "groups": int((gsz >= 2).sum()), "rows_paired": int(len(rows)), "duplicate_uids": int(len(dup_rows)),
            "pairs": {"possible": int(P.possible), "capped": int(P.possible - len(P)), "candidates": int(len(P)),
                      "unscored": int(unscored.sum()), "near_duplicates": int(similar.sum()),
                      "unrelated": int(unrelated.sum()), "in_band": int(in_band.sum()),
                      "balanced_out": int(in_band.sum() - kept.sum()), "kept": int(kept.sum())},
            "distribution": {
                "candidates": {"types": type_counts(np.ones(len(P), bool)), "label_overlap": _overlap_buckets(ov)},
                "before_balancing": {"types": type_counts(in_band), "label_overlap": _overlap_buckets(ov[in_band])},
                "after_balancing": {"types": type_counts(kept), "label_overlap": _overlap_buckets(ov[kept])},
            },
            "balancing": balance_note,
            "relevance_histogram": {"candidates": _hist(rel), "kept": _hist(rel[kept])},
        }

    @staticmethod
    def _duplicate_uids(rows: np.ndarray, group_hash: np.ndarray, uid_hash: np.ndarray,
                        vectors: List[Optional[np.ndarray]]) -> np.ndarray:
        """Of the rows (in group order) that share their group and uid with another, all but one:
        per run of equal (group, uid), the kept row is the one whose relevance vectors' bytes
        hash lowest (then the earlier row: equal bytes give equal pairs whichever is kept)."""
        from ...kernels.balance import hash_keys

        g, u = group_hash[rows], uid_hash[rows]
        same = (g[1:] == g[:-1]) & (u[1:] == u[:-1])
        if not same.any():
            return np.zeros(0, np.int64)
        in_run = np.zeros(len(rows), bool)
        in_run[1:] |= same
        in_run[:-1] |= same
        pos = np.flatnonzero(in_run)
        run_id = np.cumsum(np.concatenate([[True], ~same]))[pos]  # equal for the rows of one run
        import pyarrow as pa

        content = np.zeros(len(pos), np.uint64)
        for v in vectors:
            if v is not None:
                h = hash_keys(pa.array([bytes(x) for x in np.ascontiguousarray(v[rows[pos]]).view(np.uint8)],
                                       pa.binary()))
                content = content * np.uint64(0x9E3779B97F4A7C15) ^ h
        o = np.lexsort((pos, content, run_id))
        first = np.concatenate([[True], run_id[o][1:] != run_id[o][:-1]])
        return np.sort(rows[pos[o[~first]]])

    @staticmethod
    def _relevance(kind: str, image_sim: np.ndarray, text_sim: np.ndarray) -> np.ndarray:
        if kind == "image":
            return image_sim
        if kind == "text":
            return text_sim
        return ((image_sim.astype(np.float64) + text_sim.astype(np.float64)) / 2).astype(np.float32)

    def _min_relevance(self, kind: str, rows: np.ndarray, gstarts: np.ndarray,
                       vec: Dict[str, Optional[np.ndarray]]) -> Tuple[float, str]:
        """The band's lower end: given, or the quantile of random cross-group pairs' relevance."""
        if self.min_relevance is not None:
            return self.min_relevance, "given"
        from ...kernels.pairs import splitmix64

        ns = len(rows)
        m = np.diff(gstarts)
        if ns < 2 or (m > 0).sum() < 2:
            return -1.0, "no calibration: fewer than two groups (nothing is unrelated)"
        gid = np.repeat(np.arange(len(m)), m)
        k = np.arange(4 * self.calibration_pairs, dtype=np.uint64)
        base = np.uint64(self.seed) * np.uint64(2654435761)
        a = (splitmix64(base ^ (k * np.uint64(2) + np.uint64(1))) % np.uint64(ns)).astype(np.int64)
        b = (splitmix64(base ^ (k * np.uint64(2) + np.uint64(2))) % np.uint64(ns)).astype(np.int64)
        sel = np.flatnonzero(gid[a] != gid[b])[: self.calibration_pairs]
        a, b = rows[a[sel]], rows[b[sel]]

        def cos(v: np.ndarray) -> np.ndarray:
            x = v[a].astype(np.float32)
            y = v[b].astype(np.float32)
            nx = np.linalg.norm(x, axis=1)
            ny = np.linalg.norm(y, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.einsum("ij,ij->i", x, y) / (nx * ny)

        if kind == "mean":
            assert vec["image"] is not None and vec["text"] is not None
            r = (cos(vec["image"]) + cos(vec["text"])) / 2
        else:
            v = vec[kind]
            assert v is not None
            r = cos(v)
        r = r[np.isfinite(r)]
        if len(r) < 100:
            return -1.0, f"no calibration: only {len(r)} cross-group pairs could be drawn (nothing is unrelated)"
        q = float(np.quantile(r.astype(np.float64), self.unrelated_quantile))
        return q, f"quantile {self.unrelated_quantile:g} of {len(r):,} random cross-group pairs"

    def _balance(self, kept: np.ndarray, ptype: np.ndarray, priority: np.ndarray) -> Dict[str, Any]:
        """Cuts the larger of the same-entity / different-entity types (in place on ``kept``) to
        ``max_type_ratio`` times the smaller, keeping its pairs of lowest priority (a uniform,
        score-blind choice). Unlabeled pairs are left alone."""
        if not self.balance:
            return {"applied": False, "why": "balance is off"}
        s_idx = np.flatnonzero(kept & (ptype == 0))
        d_idx = np.flatnonzero(kept & (ptype == 1))
        S, D = len(s_idx), len(d_idx)
        r = self.max_type_ratio
        if S == 0 or D == 0:
            return {"applied": False, "why": f"one type only ({S} same-entity, {D} different-entity pairs): "
                                             f"nothing to balance against"}
        if S > r * D:
            cut, name, keep_n = s_idx, "same_entity", int(np.floor(r * D))
        elif D > r * S:
            cut, name, keep_n = d_idx, "different_entity", int(np.floor(r * S))
        else:
            return {"applied": False, "why": f"within the ratio {r:g} ({S} same-entity, {D} different-entity pairs)"}
        order = np.lexsort((cut, priority[cut]))
        kept[cut[order[keep_n:]]] = False
        return {"applied": True, "cut": name, "kept_of_cut": keep_n, "of": int(len(cut)), "max_type_ratio": r}

    @staticmethod
    def _pairs_table(rt: "pa.Table", q_rows: np.ndarray, t_rows: np.ndarray, P: Any, kp: np.ndarray,
                     rel: np.ndarray, ptype: np.ndarray) -> "pa.Table":
        import pyarrow as pa

        uid = rt.column("uid")
        groups = rt.column("group")
        labels = rt.column("labels")
        ql = labels.take(pa.array(q_rows)).to_pylist()
        tl = labels.take(pa.array(t_rows)).to_pylist()
        side_lists = []
        for a, b in zip(ql, tl):
            qa = {x.strip().lower(): x for x in (a or []) if x and x.strip()}
            tb = {x.strip().lower(): x for x in (b or []) if x and x.strip()}
            out = [{"label": tb[k], "side": "both"} for k in tb if k in qa]
            out += [{"label": qa[k], "side": "query"} for k in qa if k not in tb]
            out += [{"label": tb[k], "side": "target"} for k in tb if k not in qa]
            side_lists.append(out)

        def f(x: np.ndarray) -> "pa.Array":
            v = x[kp]
            return pa.array(v, pa.float32(), mask=np.isnan(v))

        sch = pairs_schema()
        return pa.table({
            "query_uid": uid.take(pa.array(q_rows)), "target_uid": uid.take(pa.array(t_rows)),
            "group": groups.take(pa.array(q_rows)),
            "pair_type": pa.array(np.asarray(PAIR_TYPES, dtype=object)[ptype[kp]].tolist(), pa.string()),
            "relevance": f(rel), "image_sim": f(P.image_sim), "text_sim": f(P.text_sim),
            "query_image_target_text": f(P.query_image_target_text),
            "query_text_target_image": f(P.query_text_target_image), "label_overlap": f(P.label_overlap),
            "labels": pa.array(side_lists, sch.field("labels").type),
        }, schema=sch)

    # ---- per-shard pass
    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        d = ctx.shard_work(shard)
        return decided_results(batches, np.load(d / "pairs_code.npy"),
                               read_strings(d / "pairs_detail.parquet").to_pylist(), CODES,
                               columns={"pair_count": np.load(d / "pair_count.npy")})

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        assert state is not None
        atomic_copy(ctx.work / PAIRS_FILE, ctx.out / PAIRS_FILE)
        return {**self.config(), **state}
