"""Judge clusters: the library function behind the ``judge`` stage, its two backends, the report and
the drop filter.

:func:`judge_clusters` takes cluster records (an id, the closest samples' captions, optionally the
furthest samples' captions and the samples' embeddings) and returns one judgment per cluster as an
Arrow table with :data:`JUDGMENT_SCHEMA`:

``cluster``            the cluster id, as given
``label``              "High Value", "Low Value", "unparsed" (an answer that is neither, kept in
                       ``raw``), or "error" (no answer: empty cluster, request refused, budget spent)
``reason``             the judge's reason; for unparsed / error rows, what went wrong
``backend``, ``model`` "openai" and the served model, or "offline" and :data:`~.offline.OFFLINE_MODEL`
``prompt_sha256``      SHA-256 of the rendered prompt (LLM backend; null offline and for empty clusters)
``raw``                the model's answer text, unparsed (LLM backend)
``attempts``           HTTP attempts that produced the answer (0 offline)
``latency_ms``         wall time of those attempts including backoff (offline: the batch's time / clusters)
``prompt_tokens``, ``completion_tokens``  as reported by the server (null when it reports none)
``cached``             the answer came from the response cache (a rerun or resume)
``features``           the offline judge's features (null for the LLM backend)

Both backends see the same samples: the first ``n_samples`` closest (and, ``with_furthest``, the
first ``n_samples`` furthest) captions of each cluster.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import InputError, InputTypeError
from .offline import FEATURES, OFFLINE_MODEL, OfflineJudge
from .parse import ANSWER_SCHEMA, ERROR, HIGH, LABELS, LOW, UNPARSED, parse_answer
from .prompt import DEFAULT_MAX_CHARS, DEFAULT_SAMPLES, prompt_sha256, render_prompt

__all__ = [
    "JUDGMENT_SCHEMA",
    "FEATURES_TYPE",
    "ClusterRecord",
    "OfflineBackend",
    "OpenAIBackend",
    "judge_clusters",
    "judge_report",
    "low_value_filter",
]

FEATURES_TYPE = pa.struct([(f, pa.float64()) for f in FEATURES] + [("junk_kind", pa.string())])
JUDGMENT_SCHEMA = pa.schema([
    ("cluster", pa.int64()),  # replaced by the ids' own type when they are not integers
    ("label", pa.string()),
    ("reason", pa.string()),
    ("backend", pa.string()),
    ("model", pa.string()),
    ("prompt_sha256", pa.string()),
    ("raw", pa.string()),
    ("attempts", pa.int32()),
    ("latency_ms", pa.float64()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("cached", pa.bool_()),
    ("features", FEATURES_TYPE),
])


@dataclass
class ClusterRecord:
    """One cluster to judge. ``closest_emb`` / ``furthest_emb``: [n, d] embeddings of those samples
    (rows aligned with the captions), used by the offline backend."""

    cluster: Any
    closest: Sequence[Optional[str]]
    furthest: Optional[Sequence[Optional[str]]] = None
    closest_emb: Optional[np.ndarray] = None
    furthest_emb: Optional[np.ndarray] = None


def _records(clusters: Any) -> List[ClusterRecord]:
    if isinstance(clusters, pa.Table):
        if "closest" not in clusters.column_names or "cluster" not in clusters.column_names:
            raise InputError(f"the clusters table needs columns 'cluster' and 'closest' (list<string>); it has "
                             f"{clusters.column_names}")
        cols = {c: clusters.column(c).to_pylist() for c in clusters.column_names
                if c in ("cluster", "closest", "furthest", "closest_emb", "furthest_emb")}
        n = clusters.num_rows
        return [ClusterRecord(cols["cluster"][i], cols["closest"][i] or [],
                              cols["furthest"][i] if "furthest" in cols else None,
                              None if cols.get("closest_emb") is None or cols["closest_emb"][i] is None
                              else np.asarray(cols["closest_emb"][i], dtype=np.float32),
                              None if cols.get("furthest_emb") is None or cols["furthest_emb"][i] is None
                              else np.asarray(cols["furthest_emb"][i], dtype=np.float32))
                for i in range(n)]
    out = []
    for i, r in enumerate(clusters):
        if isinstance(r, ClusterRecord):
            out.append(r)
        elif isinstance(r, Mapping):
            if "cluster" not in r or "closest" not in r:
                raise InputError(f"cluster record {i} needs keys 'cluster' and 'closest', has {sorted(r)}")
            out.append(ClusterRecord(r["cluster"], r["closest"] if r["closest"] is not None else [],
                                     r.get("furthest"), r.get("closest_emb"), r.get("furthest_emb")))
        else:
            raise InputTypeError(f"cluster record {i} must be a ClusterRecord or a mapping, got {type(r).__name__}")
    for i, r in enumerate(out):
        if isinstance(r.closest, (str, bytes)):
            raise InputTypeError(f"cluster {r.cluster!r} (record {i}): closest must be a list of captions, not a "
                                 f"single string")
    return out


def _cluster_ids(recs: Sequence[ClusterRecord]) -> pa.Array:
    ids = [r.cluster for r in recs]
    try:
        arr = pa.array(ids)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputTypeError(f"cluster ids must be all integers or all strings: {e}") from None
    if arr.null_count:
        raise InputError(f"cluster ids must not be null (record {ids.index(None)})")
    if pa.types.is_integer(arr.type) or pa.types.is_null(arr.type):  # null type: no clusters at all
        arr = arr.cast(pa.int64())
    seen = pc.count_distinct(arr).as_py()
    if seen != len(arr):
        dup = next(x for x, c in Counter(ids).items() if c > 1)
        raise InputError(f"cluster id {dup!r} appears more than once; each cluster must be judged once")
    return arr


class OfflineBackend:
    """The ``offline`` backend: :class:`~.offline.OfflineJudge` (no network)."""

    name = "offline"

    def __init__(self, judge: Optional[OfflineJudge] = None) -> None:
        self.judge = judge or OfflineJudge()
        self.model = OFFLINE_MODEL

    def run(self, recs: Sequence[ClusterRecord], with_furthest: bool, n_samples: int, max_chars: int,
            progress: bool) -> List[Dict[str, Any]]:
        closest = [list(r.closest)[:n_samples] for r in recs]
        furthest = [list(r.furthest or [])[:n_samples] for r in recs] if with_furthest else None
        have = [r.closest_emb is not None and (not with_furthest or not r.furthest or r.furthest_emb is not None)
                for r in recs]
        embs = None
        if any(have):
            if not all(have):
                miss = next(r.cluster for r, h in zip(recs, have) if not h)
                raise InputError(f"cluster {miss!r} has no embeddings while others have: give embeddings for every "
                                 f"cluster or for none (then captions are embedded with MiniLM)")
            embs = []
            for r, c in zip(recs, closest):
                parts = [("closest", np.asarray(r.closest_emb), len(c), len(r.closest))]
                if furthest is not None and r.furthest:
                    parts.append(("furthest", np.asarray(r.furthest_emb), min(len(r.furthest), n_samples),
                                  len(r.furthest)))
                e = []
                for side, arr, n_use, n_caps in parts:
                    if arr.ndim != 2 or arr.shape[0] != n_caps:
                        raise InputError(f"cluster {r.cluster!r}: {side}_emb has shape {arr.shape}, expected "
                                         f"({n_caps}, d): one row per {side} caption")
                    e.append(arr[:n_use])
                embs.append(np.concatenate(e) if len(e) > 1 else e[0])
        t0 = time.perf_counter()
        t = self.judge.judge(closest, furthest, embs)
        per = (time.perf_counter() - t0) * 1e3 / max(1, len(recs))
        feats = t.select(list(FEATURES) + ["junk_kind"]).to_struct_array() if len(recs) else pa.array([], FEATURES_TYPE)
        feats_l = feats.to_pylist()
        rows = []
        for i, (lab, why) in enumerate(zip(t.column("label").to_pylist(), t.column("reason").to_pylist())):
            rows.append({"label": lab, "reason": why, "backend": self.name, "model": self.model, "prompt_sha256": None,
                         "raw": None, "attempts": 0, "latency_ms": per, "prompt_tokens": None,
                         "completion_tokens": None, "cached": False,
                         "features": None if lab == ERROR else feats_l[i]})
        return rows


class OpenAIBackend:
    """The ``openai`` backend: the rendered template sent through an :class:`~fastcurate.llm.LLMClient`.

    With ``structured=True`` (default) the request carries :data:`~.parse.ANSWER_SCHEMA` (in the
    form the client's ``structured`` setting picks), and only JSON answers are accepted; with
    False, the template's ``Reason: / Classification:`` lines are parsed."""

    name = "openai"

    def __init__(self, client: Any, *, structured: bool = True, template: Optional[str] = None) -> None:
        self.client = client
        self.structured = structured and getattr(client, "structured", "auto") != "off"
        self.template = template
        self.model = client.model
        self.last_stats: Dict[str, int] = {}

    def run(self, recs: Sequence[ClusterRecord], with_furthest: bool, n_samples: int, max_chars: int,
            progress: bool) -> List[Dict[str, Any]]:
        rows: List[Optional[Dict[str, Any]]] = [None] * len(recs)
        prompts: List[str] = []
        where: List[int] = []
        for i, r in enumerate(recs):
            if len(r.closest) == 0:
                rows[i] = _error_row(self, "empty cluster: no samples to judge")
                continue
            p = render_prompt(r.closest, (r.furthest or []) if with_furthest else None, n_samples=n_samples,
                              max_chars=max_chars, template=self.template)
            prompts.append(p)
            where.append(i)
        if prompts:
            res = self.client.chat(prompts, schema=ANSWER_SCHEMA if self.structured else None,
                                   schema_name="cluster_judgment", progress=progress)
            for k, stat in self.client.stats.items():
                self.last_stats[k] = self.last_stats.get(k, 0) + stat
            for i, p, r in zip(where, prompts, res):
                base = {"backend": self.name, "model": r.model or self.model, "prompt_sha256": prompt_sha256(p),
                        "attempts": r.attempts, "latency_ms": r.latency_ms, "prompt_tokens": r.prompt_tokens,
                        "completion_tokens": r.completion_tokens, "cached": r.cached, "features": None}
                if r.error is not None:
                    rows[i] = {**base, "label": ERROR, "reason": r.error, "raw": None}
                    continue
                parsed = parse_answer(r.text, structured=r.structured in ("json_schema", "json_object"))
                why = parsed.why
                if not parsed.ok and r.finish_reason == "length":
                    why = f"the answer was cut at max_tokens ({why}); raise max_tokens"
                rows[i] = {**base, "label": parsed.label, "reason": parsed.reason if parsed.ok else why,
                           "raw": r.text}
        return [r for r in rows if r is not None]


def _error_row(backend: Any, why: str) -> Dict[str, Any]:
    return {"label": ERROR, "reason": why, "backend": backend.name, "model": backend.model, "prompt_sha256": None,
            "raw": None, "attempts": 0, "latency_ms": 0.0, "prompt_tokens": None, "completion_tokens": None,
            "cached": False, "features": None}


@dataclass
class JudgeResult:
    """The judgments table and the run's report (:func:`judge_report`)."""

    table: pa.Table
    report: Dict[str, Any] = field(default_factory=dict)


def judge_clusters(
    clusters: Union[pa.Table, Iterable[Union[ClusterRecord, Mapping[str, Any]]]],
    backend: Union[OfflineBackend, OpenAIBackend, Any],
    *,
    with_furthest: bool = False,
    n_samples: int = DEFAULT_SAMPLES,
    max_chars: int = DEFAULT_MAX_CHARS,
    chunk_size: int = 4096,
    progress: bool = False,
) -> JudgeResult:
    """Judge every cluster with ``backend``; one row of :data:`JUDGMENT_SCHEMA` per cluster, in order.

    Args:
        clusters: an Arrow table with columns ``cluster``, ``closest`` (list<string>) and optionally
            ``furthest``, ``closest_emb``, ``furthest_emb`` (list<list<float>>), or an iterable of
            :class:`ClusterRecord` / mappings with those keys.
        backend: :class:`OfflineBackend` or :class:`OpenAIBackend` (anything with ``name``, ``model``
            and ``run``).
        with_furthest: show (and score) the furthest samples too.
        n_samples: samples per side; max_chars: caption cut in the prompt (see :mod:`.prompt`).
        chunk_size: clusters per batch (bounds memory: a prompt is about 3 kB).

    Raises:
        InputError / InputTypeError: malformed records, duplicate or null cluster ids.
        LLMUnavailableError / LLMRequestError: the LLM server stopped answering or refused (every
            answer received so far is cached: rerun to resume).
    """
    if n_samples < 1:
        raise InputError(f"n_samples must be >= 1, got {n_samples}")
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    recs = _records(clusters)
    ids = _cluster_ids(recs)
    t0 = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    for s in range(0, len(recs), chunk_size):
        part = recs[s:s + chunk_size]
        nonempty = [r for r in part if len(r.closest) > 0]
        got = iter(backend.run(nonempty, with_furthest, n_samples, max_chars, progress) if nonempty else [])
        for r in part:
            rows.append(next(got) if len(r.closest) > 0 else _error_row(backend, "empty cluster: no samples to judge"))
    elapsed = time.perf_counter() - t0
    schema = JUDGMENT_SCHEMA.set(0, pa.field("cluster", ids.type))
    cols: Dict[str, Any] = {"cluster": ids}
    for f in schema:
        if f.name != "cluster":
            cols[f.name] = pa.array([r[f.name] for r in rows], f.type)
    table = pa.table(cols, schema=schema)
    rep = judge_report(table, elapsed)
    stats = getattr(backend, "last_stats", None)
    if stats:
        rep["requests"] = dict(stats)
    return JudgeResult(table, rep)


def judge_report(table: pa.Table, elapsed_s: Optional[float] = None) -> Dict[str, Any]:
    """Summary of a judgments table: label counts, unparsed rate (unparsed / answered), errors,
    cache hits, tokens (total and per answered cluster) and time."""
    n = table.num_rows
    labels = Counter(table.column("label").to_pylist())
    answered = labels.get(HIGH, 0) + labels.get(LOW, 0) + labels.get(UNPARSED, 0)
    pt = pc.sum(table.column("prompt_tokens")).as_py() or 0
    ct = pc.sum(table.column("completion_tokens")).as_py() or 0
    with_tokens = n - table.column("prompt_tokens").null_count
    rep: Dict[str, Any] = {
        "clusters": n,
        "labels": {k: labels.get(k, 0) for k in (HIGH, LOW, UNPARSED, ERROR)},
        "answered": answered,
        "unparsed_rate": (labels.get(UNPARSED, 0) / answered) if answered else 0.0,
        "errors": labels.get(ERROR, 0),
        "cached": int(pc.sum(table.column("cached")).as_py() or 0),
        "prompt_tokens": int(pt),
        "completion_tokens": int(ct),
        "prompt_tokens_per_cluster": (pt / with_tokens) if with_tokens else None,
        "backend": sorted(set(table.column("backend").to_pylist())),
        "model": sorted(set(table.column("model").to_pylist())),
    }
    if elapsed_s is not None:
        rep["time_s"] = round(elapsed_s, 3)
        rep["clusters_per_s"] = round(n / elapsed_s, 1) if elapsed_s > 0 else None
    return rep


def low_value_filter(row_clusters: Union[pa.Array, pa.ChunkedArray, Sequence[Any], np.ndarray], judgments: pa.Table,
                     *, drop_labels: Sequence[str] = (LOW,), missing: str = "error") -> Tuple[np.ndarray, pa.Array]:
    """Which rows to keep given their cluster ids and the judgments: ``(keep, reason)`` where
    ``reason`` (string, null for kept rows) is "judge: <label> cluster <id>: <judge's reason>" for a
    dropped row. Rows of clusters labelled ``unparsed`` or ``error`` are kept unless those labels
    are in ``drop_labels`` (the judge never guesses). ``missing``: what to do with a row whose cluster
    has no judgment: "error" (raise), "keep" or "drop"."""
    if missing not in ("error", "keep", "drop"):
        raise InputError(f"missing must be 'error', 'keep' or 'drop', got {missing!r}")
    bad = [x for x in drop_labels if x not in (*LABELS, UNPARSED, ERROR)]
    if bad:
        raise InputError(f"drop_labels {bad} are not judge labels {[*LABELS, UNPARSED, ERROR]}")
    rc = row_clusters if isinstance(row_clusters, (pa.Array, pa.ChunkedArray)) else pa.array(row_clusters)
    jc = judgments.column("cluster")
    if pa.types.is_integer(rc.type) and pa.types.is_integer(jc.type):
        rc = rc.cast(pa.int64())
        jc = jc.cast(pa.int64())
    idx = pc.index_in(rc, value_set=jc.combine_chunks() if isinstance(jc, pa.ChunkedArray) else jc)
    idx_np = idx.to_numpy(zero_copy_only=False)
    has = ~np.isnan(idx_np.astype(np.float64)) if idx.null_count else np.ones(len(idx_np), bool)
    if not has.all() and missing == "error":
        first = int(np.flatnonzero(~has)[0])
        raise InputError(f"row {first} belongs to cluster {rc[first].as_py()!r}, which has no judgment "
                         f"({int((~has).sum())} rows in all); judge every cluster, or pass missing='keep'/'drop'")
    labels = judgments.column("label").to_pylist()
    reasons = judgments.column("reason").to_pylist()
    cl_ids = jc.to_pylist()
    drop_cluster = np.array([lab in drop_labels for lab in labels], dtype=bool)
    pos = np.where(has, np.nan_to_num(idx_np.astype(np.float64), nan=0).astype(np.int64), 0)
    drop = np.where(has, drop_cluster[pos] if len(drop_cluster) else False, missing == "drop")
    why: List[Optional[str]] = [None] * len(drop)
    for r in np.flatnonzero(drop):
        if has[r]:
            j = pos[r]
            why[r] = f"judge: {labels[j]} cluster {cl_ids[j]}: {reasons[j]}"
        else:
            why[r] = f"judge: cluster {rc[int(r)].as_py()} has no judgment"
    return ~drop, pa.array(why, pa.string())
