"""The cluster-quality judge as a stage (docs/judge.md, "The stage"): ``fastcurate judge``.

Its input is the output directory of ``fastcurate cluster``: part files whose rows carry a
``cluster`` column, and the stage file ``clusters.parquet`` (each cluster's closest and furthest
samples' captions and embeddings).

* global pass: each shard's distinct cluster ids and its rows without one (a light read: ``uid``
  and ``cluster`` only), so that a part file that does not match ``clusters.parquet`` is an error
  before any request is sent, and clusters without a row are not paid for;
* reduce: ``clusters.parquet`` is read and every cluster that has a row in the input is judged by
  :func:`~.judge.judge_clusters` (the offline rules, or an OpenAI-compatible LLM whose answers
  go to a crash-safe response cache in the work directory, so a resumed run sends no answered
  request again); the judgments are written atomically;
* per-shard pass: rows of Low Value clusters are dropped (``low_value_cluster``, the detail names
  the cluster and the judge's reason, :func:`~.judge.low_value_filter`); rows of clusters without
  a verdict (``unparsed``/``error``) and rows without a cluster are kept, or dropped with
  ``drop_unjudged`` (``unjudged_cluster``, ``no_cluster``);
* finalize: ``judgments.parquet`` into the output directory; the report (labels, unparsed rate,
  tokens, rows per label) into ``stats.json``; wall times and request counters into
  ``timings.json`` (they differ between runs; ``stats.json`` and ``judgments.parquet`` do not).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Literal, Mapping, Optional,
                    Sequence, Tuple, Union)

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_write_bytes, atomic_write_table
from ...io.discover import ShardRef
from ...runner.stage import Batch, Context, Result, Stage
from .parse import ERROR, HIGH, LOW, UNPARSED
from .prompt import DEFAULT_MAX_CHARS, DEFAULT_SAMPLES

if TYPE_CHECKING:
    import pyarrow as pa

    from .judge import ClusterRecord

__all__ = ["JudgeStage", "judge_dir", "CLUSTERS_FILE", "JUDGMENTS_FILE", "CODES", "STAGE_JUDGMENT_COLUMNS"]

CLUSTERS_FILE = "clusters.parquet"
JUDGMENTS_FILE = "judgments.parquet"
CLUSTER_COLUMN = "cluster"
# per-row drop codes (0: kept)
CODES = ("", "low_value_cluster", "unjudged_cluster", "no_cluster")
# the labels rows are counted under in the stage's statistics (index 4: rows without a cluster)
_ROW_LABELS = (HIGH, LOW, UNPARSED, ERROR, "no cluster")
# judgments.parquet: judge_clusters' table without ``cached`` (true on a resumed run only: the file
# must not depend on whether the run was interrupted; cache hits are counted in timings.json)
STAGE_JUDGMENT_COLUMNS = ("cluster", "label", "reason", "backend", "model", "prompt_sha256", "raw", "attempts",
                          "latency_ms", "prompt_tokens", "completion_tokens", "features")
_OFFLINE_EMBEDDINGS = ("cluster", "minilm", "none")
_STRUCTURED = ("auto", "json_schema", "json_object", "off")

PathLike = Union[str, "os.PathLike[str]"]


class JudgeStage(Stage):
    """Labels each cluster "High Value" or "Low Value" and drops the rows of Low Value clusters.

    Args:
        backend: "offline" (rules over measurable features, no network) or "openai" (the DataComp
            prompt sent to an OpenAI-compatible server: vLLM, llama.cpp's server, a hosted API).
        model: the served model (openai; required there).
        base_url: the server's /v1 URL, or a list of them (replicas; openai; required there).
        api_key_env: the environment variable holding the API key (a local server needs none).
        concurrency: requests in flight at once (openai).
        timeout: seconds per HTTP attempt (openai).
        retries: retries per request after the first attempt, for retryable failures (openai).
        budget: cap on HTTP attempts for the run, retries included (openai; None: no cap). Clusters
            left when it is spent are judged ``error`` (kept unless drop_unjudged).
        cache: the response cache (SQLite) to use and keep (openai); default: one in the run's
            work directory, which a resumed run reuses and a finished run removes.
        structured: "auto" (JSON schema, in the form the server takes), "json_schema",
            "json_object" or "off" (parse the template's "Classification:" lines).
        temperature: sampling temperature (openai; 0: the same answer for the same prompt).
        max_tokens: answer length cap (openai); keep it above ~330 so a reason is never cut.
        with_furthest: also show (and, offline, score) each cluster's furthest samples.
        n_samples: samples per side shown to the judge (the template's examples use 5).
        max_chars: a caption is cut after this many characters in the prompt.
        drop_unjudged: also drop the rows of clusters without a verdict (unparsed answer or no
            answer: request refused, budget spent, empty sample list) and rows without a cluster;
            default False: the judge never guesses, such rows are kept.
        clusters_file: the clusters table to judge; default: clusters.parquet of the input (the
            output directory of `fastcurate cluster`).
        offline_embeddings: where the offline judge's topic-narrowness feature gets embeddings:
            "cluster" (those in clusters.parquet, the clustering's own space; default), "minilm"
            (embed the captions with all-MiniLM-L6-v2, the space the rules were calibrated in;
            pip install 'fastcurate[judge]' onnxruntime) or "none" (no narrow-topic rule).
        offline_baseline: the embedding space's mean cosine between unrelated samples for the
            narrow-topic rule: "auto" (estimated from the clusters when there are at least 20),
            "batch" (always estimated) or a number.
        offline_thresholds: overrides of the offline rules' thresholds, e.g. {"cohesion": 0.2}
            (names: junk_share, dup_share, cohesion, vocab, matched_share; docs/judge.md).
        offline_narrow: when the narrow-topic rule fires: "outlier" (default: only for clusters
            whose cohesion stands out among this run's clusters, by ``offline_outlier_z`` robust
            standard deviations) or "absolute" (at the calibrated threshold, which on a real
            k-means clustering fires on nearly every cluster: the samples closest to a centroid
            are alike by construction; docs/judge.md).
        offline_outlier_z: the robust z-score of an outlier (default 3).
    """

    name = "judge"
    version = 2  # 2: the narrow-topic rule fires on outliers of the run by default
    scans = True
    batch_size = 65536
    consumes: Tuple[str, ...] = (CLUSTER_COLUMN, CLUSTERS_FILE)
    produces = (JUDGMENTS_FILE,)
    reasons = {
        "low_value_cluster": "its cluster was judged Low Value (detail: the cluster and the judge's reason)",
        "unjudged_cluster": "--drop-unjudged: its cluster has no verdict (the answer was unparsed, or there was no "
                            "answer: request refused, budget spent, no samples); detail: what went wrong",
        "no_cluster": "--drop-unjudged: the row has no cluster id (its cluster column is null)",
    }

    def __init__(self, *, backend: Literal["offline", "openai"] = "offline", model: Optional[str] = None,
                 base_url: Optional[Union[str, Sequence[str]]] = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 4, timeout: float = 60.0, retries: int = 4, budget: Optional[int] = None,
                 cache: Optional[PathLike] = None, structured: str = "auto", temperature: float = 0.0,
                 max_tokens: int = 384, with_furthest: bool = False, n_samples: int = DEFAULT_SAMPLES,
                 max_chars: int = DEFAULT_MAX_CHARS, drop_unjudged: bool = False,
                 clusters_file: Optional[PathLike] = None, offline_embeddings: str = "cluster",
                 offline_baseline: Union[str, float] = "auto",
                 offline_thresholds: Optional[Mapping[str, float]] = None, offline_narrow: str = "outlier",
                 offline_outlier_z: float = 3.0):
        if backend not in ("offline", "openai"):
            raise InputError(f"backend must be 'offline' or 'openai', got {backend!r}")
        if int(n_samples) < 1:
            raise InputError(f"n_samples must be >= 1, got {n_samples}")
        if int(max_chars) < 1:
            raise InputError(f"max_chars must be >= 1, got {max_chars}")
        self.backend = backend
        self.with_furthest, self.n_samples, self.max_chars = bool(with_furthest), int(n_samples), int(max_chars)
        self.drop_unjudged = bool(drop_unjudged)
        self.clusters_file = None if clusters_file is None else str(clusters_file)
        urls: Optional[List[str]] = None
        if base_url is not None:
            urls = [base_url] if isinstance(base_url, str) else [str(u) for u in base_url]
        if backend == "openai":
            if not model:
                raise InputError("backend 'openai' needs model: the name the server serves (GET /v1/models), "
                                 "e.g. --model meta-llama/Llama-3.1-8B-Instruct")
            if not urls or not all(u.startswith(("http://", "https://")) for u in urls):
                raise InputError(f"backend 'openai' needs base_url: the server's /v1 URL such as "
                                 f"http://127.0.0.1:8000/v1, got {base_url!r}")
            if int(concurrency) < 1:
                raise InputError(f"concurrency must be >= 1, got {concurrency}")
            if float(timeout) <= 0:
                raise InputError(f"timeout must be > 0 seconds, got {timeout}")
            if int(retries) < 0:
                raise InputError(f"retries must be >= 0, got {retries}")
            if budget is not None and int(budget) < 0:
                raise InputError(f"budget must be >= 0, got {budget}")
            if structured not in _STRUCTURED:
                raise InputError(f"structured must be one of {_STRUCTURED}, got {structured!r}")
            if int(max_tokens) < 1:
                raise InputError(f"max_tokens must be >= 1, got {max_tokens}")
        else:
            given = [k for k, v in (("model", model), ("base_url", base_url), ("budget", budget), ("cache", cache))
                     if v is not None]
            if given:
                raise InputError(f"{', '.join(given)} go with backend 'openai', but the backend is 'offline'")
        if offline_embeddings not in _OFFLINE_EMBEDDINGS:
            raise InputError(f"offline_embeddings must be one of {_OFFLINE_EMBEDDINGS}, got {offline_embeddings!r}")
        if isinstance(offline_baseline, str):
            if offline_baseline not in ("auto", "batch"):
                try:
                    offline_baseline = float(offline_baseline)
                except ValueError:
                    raise InputError(f"offline_baseline must be 'auto', 'batch' or a cosine, got "
                                     f"{offline_baseline!r}") from None
        if not isinstance(offline_baseline, str) and not -1.0 <= float(offline_baseline) < 1.0:
            raise InputError(f"offline_baseline must be a cosine in [-1, 1), got {offline_baseline}")
        from .offline import OfflineThresholds

        known = set(OfflineThresholds().as_dict())
        bad = sorted(set(offline_thresholds or {}) - known)
        if bad:
            raise InputError(f"offline_thresholds: unknown rule(s) {bad}; the rules are {sorted(known)}")
        self.offline_thresholds = {k: float(v) for k, v in sorted((offline_thresholds or {}).items())}
        OfflineThresholds(**self.offline_thresholds)  # checks the values
        self.offline_embeddings = offline_embeddings
        if offline_narrow not in ("outlier", "absolute"):
            raise InputError(f"offline_narrow must be 'outlier' or 'absolute', got {offline_narrow!r}")
        if not float(offline_outlier_z) > 0:
            raise InputError(f"offline_outlier_z must be > 0, got {offline_outlier_z}")
        self.offline_narrow, self.offline_outlier_z = offline_narrow, float(offline_outlier_z)
        self.offline_baseline: Union[str, float] = (offline_baseline if isinstance(offline_baseline, str)
                                                    else float(offline_baseline))
        self.model = model
        self.base_urls = urls
        self.api_key_env = api_key_env
        self.concurrency, self.timeout, self.retries = int(concurrency), float(timeout), int(retries)
        self.budget = None if budget is None else int(budget)
        self.cache = None if cache is None else str(cache)
        self.structured = structured
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        if clusters_file is not None:
            # a given clusters table need not sit in the input directory: only the column is consumed
            # (an instance narrowing its class's declaration, as runner/stage.py allows)
            self.consumes = (CLUSTER_COLUMN,)
        self._judgments: Optional[Dict[str, Any]] = None
        self._row_counts: Dict[int, np.ndarray] = {}

    def __getstate__(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d["_judgments"] = None  # reloaded by setup where the stage runs
        d["_row_counts"] = {}
        return d

    # ---- declarations
    def config(self) -> Dict[str, Any]:
        """What changes the verdicts or the kept rows (the manifest). Server addresses, concurrency,
        timeouts, retries, the budget and the cache path change neither the prompts nor the
        answers' meaning, so a killed run resumes on another server or with a new budget."""
        cfg: Dict[str, Any] = {"backend": self.backend, "with_furthest": self.with_furthest,
                               "n_samples": self.n_samples, "max_chars": self.max_chars,
                               "drop_unjudged": self.drop_unjudged, "clusters_file": self.clusters_file}
        if self.clusters_file is not None:
            # a given file is not covered by the input parts' fingerprint: a changed file is another run
            p = Path(self.clusters_file)
            st = p.stat() if p.is_file() else None
            cfg["clusters_file_fingerprint"] = None if st is None else {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if self.backend == "openai":
            cfg.update(model=self.model, structured=self.structured, temperature=self.temperature,
                       max_tokens=self.max_tokens)
        else:
            cfg.update(offline_embeddings=self.offline_embeddings, offline_baseline=self.offline_baseline,
                       offline_thresholds=dict(self.offline_thresholds), offline_narrow=self.offline_narrow,
                       offline_outlier_z=self.offline_outlier_z)
        return cfg

    def extra_columns(self) -> Sequence[str]:
        return (CLUSTER_COLUMN,)

    def scan_roles(self) -> Sequence[str]:
        return ()

    # ---- the global pass: which clusters have rows
    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        import pyarrow as pa
        import pyarrow.compute as pc

        seen: List[pa.Array] = []
        rows = nulls = 0
        for b in batches:
            col = _cluster_column(b)
            rows += len(col)
            nulls += col.null_count
            seen.append(pc.unique(col.drop_null()))
        ids = pc.unique(pa.concat_arrays(seen)) if seen else pa.array([], pa.null())
        ids = ids.take(pc.sort_indices(ids))  # a file that does not depend on the batch order
        atomic_write_table(pa.table({CLUSTER_COLUMN: ids}), ctx.shard_work(shard) / "cluster_ids.parquet")
        return {"rows": rows, "no_cluster": nulls, "clusters": len(ids)}

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from .judge import judge_clusters

        path = self._clusters_path(ctx)
        clusters = _read_clusters(path, self._columns_needed())
        ids = clusters.column(CLUSTER_COLUMN).combine_chunks()
        # the distinct ids the rows carry, shard by shard: each must be a cluster of the table
        with_rows = []
        for shard, summ in zip(ctx.inputs, summaries):
            if summ is None:
                continue
            got = pq.read_table(ctx.shard_work(shard) / "cluster_ids.parquet").column(0).combine_chunks()
            got_c, ids_c = _comparable(got, ids, f"{shard.path} (cluster column)", str(path))
            unknown = got.filter(pc.invert(pc.is_in(got_c, value_set=ids_c)))
            if len(unknown):
                raise InputError(f"{shard.path}: rows of cluster {unknown[0].as_py()!r}"
                                 f"{f' (and {len(unknown) - 1} more ids)' if len(unknown) > 1 else ''}, which "
                                 f"{path} does not list: the part files and {CLUSTERS_FILE} come from different "
                                 f"`fastcurate cluster` runs; judge a cluster output directory as it was written")
            with_rows.append(got_c)
        ids_c = _comparable(ids, ids, str(path), str(path))[0]
        have = pc.unique(pa.concat_arrays(with_rows)) if with_rows else pa.array([], ids_c.type)
        mask = pc.is_in(ids_c, value_set=have)
        todo = clusters.filter(mask)
        skipped = clusters.num_rows - todo.num_rows
        recs = self._records(todo, path)
        backend, close = self._backend(ctx)
        caught: List[str] = []
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                res = judge_clusters(recs, backend, with_furthest=self.with_furthest, n_samples=self.n_samples,
                                     max_chars=self.max_chars, progress=ctx.progress)
            caught = list(dict.fromkeys(str(x.message) for x in w))
        finally:
            close()
        elapsed = time.perf_counter() - t0
        for msg in caught:
            ctx.log(f"warning: {msg}")
        table = res.table.select(list(STAGE_JUDGMENT_COLUMNS))
        if self.backend == "offline":
            # the offline judge times batches, not clusters: the wall time goes to timings.json so
            # that judgments.parquet is the same bytes in every run
            i = table.column_names.index("latency_ms")
            table = table.set_column(i, "latency_ms", pa.nulls(table.num_rows, pa.float64()))
        atomic_write_table(table, ctx.work / JUDGMENTS_FILE, compression="zstd")
        report = dict(res.report)
        volatile: Dict[str, Any] = {"judge_s": round(elapsed, 3),
                                    "clusters_per_s": round(len(recs) / elapsed, 1) if elapsed > 0 else None,
                                    "cache_hits": report.pop("cached", 0)}
        for k in ("time_s", "clusters_per_s", "backend"):
            report.pop(k, None)
        report["models"] = report.pop("model", [])  # as the server names them (config: the name asked for)
        if "requests" in report:
            volatile["requests"] = report.pop("requests")
        return {"clusters_file": str(path), "report": report, "clusters_without_rows": skipped,
                "warnings": caught, "volatile": volatile}

    def _columns_needed(self) -> List[str]:
        cols = [CLUSTER_COLUMN, "closest"] + (["furthest"] if self.with_furthest else [])
        if self.backend == "offline" and self.offline_embeddings == "cluster":
            cols += ["closest_emb"] + (["furthest_emb"] if self.with_furthest else [])
        return cols

    def _clusters_path(self, ctx: Context) -> Path:
        if self.clusters_file is not None:
            p = Path(self.clusters_file)
            if not p.is_file():
                raise InputError(f"clusters_file {p} does not exist; give the {CLUSTERS_FILE} written by "
                                 f"`fastcurate cluster`")
            return p
        found = ctx.input_file(CLUSTERS_FILE)
        if found is None:
            where = ", ".join(sorted({str(s.path.parent) for s in ctx.inputs})[:3])
            raise InputError(f"no {CLUSTERS_FILE} in the input ({where}): the judge reads the output directory of "
                             f"`fastcurate cluster` (its part files and {CLUSTERS_FILE}); give that directory, or the "
                             f"table with --clusters-file PATH")
        return found

    def _records(self, table: "pa.Table", path: Path) -> List["ClusterRecord"]:
        from .judge import ClusterRecord

        ids = table.column(CLUSTER_COLUMN).to_pylist()
        closest = _caption_lists(table, "closest", path)
        furthest = _caption_lists(table, "furthest", path) if self.with_furthest else [None] * len(ids)
        n_caps = sum(len(c) for c in closest) + sum(len(f or []) for f in furthest)
        n_null = sum(x is None for c in closest for x in c) + sum(x is None for f in furthest for x in (f or []))
        if n_caps and n_null == n_caps:
            raise InputError(f"{path}: every sample caption is null (the cluster stage found no caption column); "
                             "the judge judges captions: rerun `fastcurate cluster` with --text-column NAME")
        embs_c: List[Optional[np.ndarray]] = [None] * len(ids)
        embs_f: List[Optional[np.ndarray]] = [None] * len(ids)
        if "closest_emb" in table.column_names:
            embs_c = _emb_lists(table.column("closest_emb"), f"{path}: closest_emb")
            if self.with_furthest:
                embs_f = _emb_lists(table.column("furthest_emb"), f"{path}: furthest_emb")
        return [ClusterRecord(i, c, f, ec, ef) for i, c, f, ec, ef in zip(ids, closest, furthest, embs_c, embs_f)]

    def _backend(self, ctx: Context) -> Tuple[Any, Callable[[], None]]:
        """The backend and what closes it (the LLM client's connections and cache)."""
        from .judge import OfflineBackend, OpenAIBackend
        from .offline import OfflineJudge, OfflineThresholds

        if self.backend == "offline":
            judge = OfflineJudge(OfflineThresholds(**self.offline_thresholds),
                                 encoder="auto" if self.offline_embeddings == "minilm" else None,
                                 baseline=self.offline_baseline, narrow=self.offline_narrow,
                                 outlier_z=self.offline_outlier_z)
            return OfflineBackend(judge), lambda: None
        from ...llm import LLMClient

        assert self.model is not None and self.base_urls is not None
        cache = self.cache if self.cache is not None else ctx.work / "llm_cache.sqlite"
        client = LLMClient(self.model, self.base_urls, api_key_env=self.api_key_env, concurrency=self.concurrency,
                           timeout=self.timeout, max_retries=self.retries, request_budget=self.budget,
                           temperature=self.temperature, max_tokens=self.max_tokens, cache=cache,
                           structured=self.structured)
        return OpenAIBackend(client, structured=self.structured != "off"), client.close

    # ---- the per-shard pass
    def setup(self, ctx: Context, state: Optional[Dict[str, Any]]) -> None:
        import pyarrow.parquet as pq

        from .judge import low_value_filter

        t = pq.read_table(ctx.work / JUDGMENTS_FILE, columns=[CLUSTER_COLUMN, "label", "reason"])
        jc = t.column(CLUSTER_COLUMN).combine_chunks()
        labels = t.column("label").to_pylist()
        unjudged = (UNPARSED, ERROR)
        drop_labels = (LOW,) + (unjudged if self.drop_unjudged else ())
        # the library's filter, once over the judged clusters: which clusters go, and the detail
        # ("judge: Low Value cluster 11: <reason>") every row of such a cluster gets
        keep, why = low_value_filter(jc, t, drop_labels=drop_labels)
        code = np.where(keep, 0, np.array([1 if lab == LOW else 2 for lab in labels], np.int8)).astype(np.int8)
        label_ix = np.array([_ROW_LABELS.index(lab) for lab in labels], np.int8)
        self._judgments = {"ids": jc, "code": code, "label": label_ix, "why": why}

    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        import pyarrow.compute as pc

        j = self._judgments
        assert j is not None, "setup was not called"
        counts = np.zeros(len(_ROW_LABELS), np.int64)
        for b in batches:
            col = _cluster_column(b)
            rc, ids = _comparable(col, j["ids"], f"{shard.path} (cluster column)", "the judgments")
            idx = pc.index_in(rc, value_set=ids)
            has = idx.is_valid().to_numpy(zero_copy_only=False)
            unknown = has != col.is_valid().to_numpy(zero_copy_only=False)
            if unknown.any():  # the scan checked every id against clusters.parquet: inputs changed meanwhile
                bad = int(np.flatnonzero(unknown)[0])
                raise InputError(f"{shard.path}: cluster {col[bad].as_py()!r} has no judgment")
            pos = idx.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            codes = np.where(has, j["code"][pos] if len(j["code"]) else 0,
                             3 if self.drop_unjudged else 0).astype(np.int8)
            lab = np.where(has, j["label"][pos] if len(j["label"]) else 4, 4)
            counts += np.bincount(lab, minlength=len(_ROW_LABELS))
            dropped = np.flatnonzero(codes)
            detail: List[Optional[str]] = []
            if len(dropped):
                why = j["why"].take(pos[dropped]).to_pylist()
                detail = [w if h else "judge: the row has no cluster id" for w, h in zip(why, has[dropped])]
            yield Result.from_codes(codes, CODES, detail=detail)
        self._row_counts[shard.index] = counts

    def shard_summary(self, ctx: Context, shard: ShardRef) -> Dict[str, Any]:
        counts = self._row_counts.pop(shard.index, np.zeros(len(_ROW_LABELS), np.int64))
        return {"rows_by_label": {k: int(v) for k, v in zip(_ROW_LABELS, counts)}}

    # ---- stage files
    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        assert state is not None
        atomic_write_bytes(ctx.out / JUDGMENTS_FILE, (ctx.work / JUDGMENTS_FILE).read_bytes())
        rows = {k: 0 for k in _ROW_LABELS}
        for rec in shards:
            for k, v in (rec.get("summary") or {}).get("rows_by_label", {}).items():
                rows[k] = rows.get(k, 0) + int(v)
        ctx.timings.update(state.get("volatile", {}))
        return {**self.config(), **state["report"], "clusters_file": state["clusters_file"],
                "clusters_without_rows": state["clusters_without_rows"], "rows_by_label": rows,
                "warnings": state["warnings"]}


# ------------------------------------------------------------------------------------------ helpers

def _cluster_column(b: Batch) -> "pa.Array":
    import pyarrow as pa

    if CLUSTER_COLUMN not in b.data.schema.names:
        raise InputError(f"{b.shard.path}: no {CLUSTER_COLUMN!r} column; the judge reads the output of "
                         f"`fastcurate cluster` (its columns here: {b.data.schema.names[:8]})")
    col = b.data.column(CLUSTER_COLUMN)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if not (pa.types.is_integer(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise InputError(f"{b.shard.path}: the {CLUSTER_COLUMN!r} column has type {col.type}; cluster ids are "
                         "integers or strings")
    return col


def _comparable(a: "pa.Array", b: "pa.Array", where_a: str, where_b: str) -> Tuple["pa.Array", "pa.Array"]:
    """``a`` and ``b`` cast to one type for lookups: int64 for integers, string for strings."""
    import pyarrow as pa

    def kind(x: "pa.Array") -> str:
        t = x.type
        if pa.types.is_integer(t) or pa.types.is_null(t):
            return "int"
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return "str"
        return str(t)

    ka, kb = kind(a), kind(b)
    if pa.types.is_null(a.type):  # no ids at all (a shard without rows): any type will do
        ka = kb
    if ka != kb or ka not in ("int", "str"):
        raise InputError(f"{where_a} holds cluster ids of type {a.type} but {where_b} of type {b.type}; the ids "
                         "must be both integers or both strings")
    target = pa.int64() if ka == "int" else pa.string()
    return a.cast(target), b.cast(target)


def _read_clusters(path: Path, columns: List[str]) -> "pa.Table":
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ...errors import FormatError

    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (OSError, pa.ArrowInvalid) as e:
        raise FormatError(f"{path}: not a readable Parquet file ({e}); give the {CLUSTERS_FILE} written by "
                          f"`fastcurate cluster`") from None
    missing = [c for c in columns if c not in names]
    if missing:
        fix = ""
        if any(c.endswith("_emb") for c in missing):
            fix = ("; without embeddings use --offline-embeddings minilm (embed the captions) or none "
                   "(no narrow-topic rule)")
        elif "furthest" in missing:
            fix = "; drop --with-furthest"
        raise InputError(f"{path}: no column {', '.join(missing)} (it has {names}){fix}. The judge reads the "
                         f"{CLUSTERS_FILE} of `fastcurate cluster`")
    t = pq.read_table(path, columns=columns)
    if t.column(CLUSTER_COLUMN).null_count:
        raise InputError(f"{path}: null cluster ids; each row of {CLUSTERS_FILE} is one cluster with its id")
    return t


def _caption_lists(table: "pa.Table", name: str, path: Path) -> List[List[Optional[str]]]:
    import pyarrow as pa

    col = table.column(name)
    t = col.type
    if not ((pa.types.is_list(t) or pa.types.is_large_list(t)) and
            (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type) or
             pa.types.is_null(t.value_type))):
        raise InputError(f"{path}: column {name!r} has type {t}; expected list<string> (the samples' captions)")
    return [v or [] for v in col.to_pylist()]


def _emb_lists(col: Any, where: str) -> List[Optional[np.ndarray]]:
    """A list<list<float>> column as one [n, d] float32 array per row (None for a null row),
    without going through Python lists."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .._embeddings import _matrix

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise InputError(f"{where} has type {arr.type}; expected a list of embeddings per cluster")
    lens = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    x, valid = _matrix(arr.flatten(), where)
    if not valid.all():
        raise InputError(f"{where}: null embeddings among the samples")
    ends = np.cumsum(lens)
    starts = ends - lens
    ok = arr.is_valid().to_numpy(zero_copy_only=False)
    return [x[s:e] if v else None for s, e, v in zip(starts.tolist(), ends.tolist(), ok)]


def judge_dir(
    inputs: Union[PathLike, Sequence[PathLike]],
    out: PathLike,
    *,
    backend: Literal["offline", "openai"] = "offline",
    columns: Optional[Mapping[str, Optional[str]]] = None,
    threads: Optional[int] = None,
    on_error: str = "fail",
    overwrite: bool = False,
    progress: bool = True,
    engine: str = "local",
    **options: Any,
) -> Dict[str, Any]:
    """Judge the clusters of a ``fastcurate cluster`` output directory and drop the rows of Low
    Value clusters; returns the ``stats.json`` content (the judge's report under ``stats["judge"]``).

    ``inputs``: the cluster stage's output directory (its parts and ``clusters.parquet``). ``out``:
    the output directory (kept rows, ``drops/``, ``judgments.parquet``, ``stats.json``).
    ``options``: the :class:`JudgeStage` options (``model``, ``base_url``, ``drop_unjudged``, ...).
    """
    from ...runner.local import run_stage

    stage = JudgeStage(backend=backend, **options)
    return run_stage(stage, inputs, out, columns=columns, threads=threads, on_error=on_error, overwrite=overwrite,
                     progress=progress, engine=engine)
