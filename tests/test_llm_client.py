"""The OpenAI-compatible client against a scripted local HTTP server: retries, backoff, budget,
cache and resume, structured-output fallback, and a server that is down, slow or returns garbage."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("openai", reason="pip install openai (the LLM client's one dependency)")

from _fake_llm import FakeLLMServer, Reply, completion, package_root, prompt_of  # noqa: E402

from fastcurate.errors import FormatError, InputError  # noqa: E402
from fastcurate.llm import (  # noqa: E402
    LLMClient,
    LLMRequestError,
    LLMUnavailableError,
    RequestBudget,
    ResponseCache,
    request_key,
)
from fastcurate.stages.judge import ANSWER_SCHEMA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OK = json.dumps({"reason": "fine", "classification": "High Value"})


def client(url, **kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5)
    kw.setdefault("jitter_seed", 0)
    return LLMClient("fake-model", url, **kw)


def test_answers_in_order_with_tokens():
    with FakeLLMServer(lambda req, n: Reply(body=completion("answer to " + prompt_of(req), ptok=7, ctok=3))) as s:
        res = client(s.base_url).chat([f"p{i}" for i in range(10)])
    assert [r.text for r in res] == [f"answer to p{i}" for i in range(10)]
    assert all(r.ok and r.attempts == 1 and r.prompt_tokens == 7 and r.completion_tokens == 3 for r in res)
    assert all(s.requests[i]["temperature"] == 0.0 for i in range(10))  # temperature 0 by default


def test_concurrency_is_bounded():
    with FakeLLMServer(lambda req, n: Reply(body=completion("x"), delay=0.2)) as s:
        client(s.base_url, concurrency=3).chat([f"p{i}" for i in range(12)])
    assert s.max_in_flight == 3  # in parallel, never more than asked


def test_retries_on_429_and_5xx_with_backoff():
    def b(req, n):
        p = prompt_of(req)
        if p == "rate" and n <= 2:
            return Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "0.05"})
        if p == "boom" and n == 1:
            return Reply(503, {"error": {"message": "overloaded"}})
        if p == "drop" and n == 1:
            return Reply(drop=True)
        return Reply(body=completion("ok " + p))

    with FakeLLMServer(b) as s:
        c = client(s.base_url, max_retries=3)
        t0 = time.perf_counter()
        res = c.chat(["rate", "boom", "drop", "fine"])
        took = time.perf_counter() - t0
    assert [r.text for r in res] == ["ok rate", "ok boom", "ok drop", "ok fine"]
    assert [r.attempts for r in res] == [3, 2, 2, 1]
    assert c.stats["retries"] == 4 and c.stats["attempts"] == 8
    assert took >= 0.1  # Retry-After (0.05 s) was honoured twice


def test_persistent_failure_stops_the_run_with_a_clear_error(tmp_path):
    calls = []

    def b(req, n):
        calls.append(1)
        p = prompt_of(req)
        return Reply(body=completion("ok")) if p.startswith("good") else Reply(500, {"error": {"message": "broken"}})

    with FakeLLMServer(b) as s:
        c = client(s.base_url, max_retries=2, concurrency=1, cache=tmp_path / "c.sqlite")
        with pytest.raises(LLMUnavailableError, match=r"did not answer after 3 attempts.*500.*rerun to resume"):
            c.chat(["good 1", "good 2", "bad", "good 3", "good 4"])
        c.close()
    # the two answers before the failure are cached; nothing after it was sent
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 2
    assert len(calls) == 2 + 3


def test_server_down():
    from fastcurate.llm import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    t0 = time.perf_counter()
    with pytest.raises(LLMUnavailableError, match="did not answer after 2 attempts.*Connection"):
        client(url, max_retries=1).chat(["a", "b"])
    assert time.perf_counter() - t0 < 10


def test_slow_server_times_out():
    with FakeLLMServer(lambda req, n: Reply(body=completion("late"), delay=1.5)) as s:
        with pytest.raises(LLMUnavailableError, match="timeout 0.3s"):
            client(s.base_url, timeout=0.3, max_retries=1).chat(["a"])


@pytest.mark.parametrize("body", ["<html>502 Bad Gateway</html>", {"unexpected": True}, {"choices": []},
                                  {"choices": [{"message": {"role": "assistant", "content": None}}]}])
def test_garbage_is_recorded_not_raised(body):
    with FakeLLMServer(lambda req, n: Reply(body=body) if prompt_of(req) == "bad" else Reply(body=completion("ok"))) as s:
        res = client(s.base_url, max_retries=2).chat(["bad", "good"])
    assert res[0].text is None and "not a chat completion" in res[0].error or "no text content" in res[0].error
    assert res[0].attempts == 3 and res[1].text == "ok"


def test_refused_request_is_recorded_and_the_run_goes_on():
    def b(req, n):
        if prompt_of(req) == "too long":
            return Reply(400, {"error": {"message": "context length exceeded"}})
        return Reply(body=completion("ok"))

    with FakeLLMServer(b) as s:
        res = client(s.base_url).chat(["a", "too long", "b"])
    assert [r.text for r in res] == ["ok", None, "ok"]
    assert "HTTP 400" in res[1].error and "context length" in res[1].error and res[1].attempts == 1


@pytest.mark.parametrize("status,match", [(401, "API key"), (404, "check --base-url")])
def test_auth_and_not_found_raise_at_once(status, match):
    with FakeLLMServer(lambda req, n: Reply(status, {"error": {"message": "nope"}})) as s:
        with pytest.raises(LLMRequestError, match=match):
            client(s.base_url, concurrency=1).chat(["a", "b", "c"])
    assert len(s.requests) == 1


def test_request_budget():
    with FakeLLMServer(lambda req, n: Reply(body=completion("ok"))) as s:
        budget = RequestBudget(3)
        res = client(s.base_url, request_budget=budget, concurrency=2).chat([f"p{i}" for i in range(5)])
    assert len(s.requests) == 3 == budget.used and budget.left == 0
    assert sum(r.ok for r in res) == 3
    assert all("budget of 3 requests spent" in r.error for r in res if not r.ok)
    with pytest.raises(InputError):
        RequestBudget(-1)


def test_budget_counts_retries():
    with FakeLLMServer(lambda req, n: Reply(503, {}) if n == 1 else Reply(body=completion("ok"))) as s:
        res = client(s.base_url, request_budget=3, concurrency=1).chat(["a", "b"])
    assert [r.ok for r in res] == [True, False] and len(s.requests) == 3


def test_cache_rerun_sends_nothing_and_identical_prompts_go_once(tmp_path):
    with FakeLLMServer(lambda req, n: Reply(body=completion("ok " + prompt_of(req)))) as s:
        c = client(s.base_url, cache=tmp_path / "cache.sqlite")
        r1 = c.chat(["a", "b", "a", "c"])
        assert len(s.requests) == 3 and c.stats["unique"] == 3
        assert [r.cached for r in r1] == [False, False, True, False]
        r2 = c.chat(["c", "a", "b", "d"])
        assert len(s.requests) == 4 and s.duplicates() == {}
        assert [r.cached for r in r2] == [True, True, True, False]
        assert [r.text for r in r2] == ["ok c", "ok a", "ok b", "ok d"]
        c.close()
        # the cache key covers the sampling parameters: another temperature is another request
        c2 = client(s.base_url, cache=tmp_path / "cache.sqlite", temperature=0.7)
        c2.chat(["a"])
        assert len(s.requests) == 5
        c2.close()


def test_lazy_base_url_is_called_on_the_first_miss_only(tmp_path):
    """A base_url function (a server to start) is not called while every answer is cached, and is
    called once, whatever the concurrency, when one is not; bad URLs from it are an InputError."""
    with FakeLLMServer(lambda req, n: Reply(body=completion("ok " + prompt_of(req)))) as s:
        calls = []

        def connect():
            calls.append(1)
            return [s.base_url]

        with client(connect, cache=tmp_path / "c.sqlite", concurrency=4) as c:
            assert c.base_urls == []
            c.chat([f"p{i}" for i in range(8)])
            assert len(calls) == 1 and c.base_urls == [s.base_url] and len(s.requests) == 8
        with client(lambda: calls.append(1) or [s.base_url], cache=tmp_path / "c.sqlite") as c:
            res = c.chat([f"p{i}" for i in range(8)])  # all cached: the function is never called
            assert len(calls) == 1 and all(r.cached for r in res) and c.base_urls == []

        def broken():
            raise RuntimeError("the server would not start")

        with client(broken, cache=tmp_path / "c.sqlite") as c:
            assert c.chat(["p0"])[0].cached
            with pytest.raises(RuntimeError, match="would not start"):
                c.chat(["new prompt"])
        with client(lambda: "localhost:1", cache=tmp_path / "c.sqlite") as c:
            with pytest.raises(InputError, match="base_url"):
                c.chat(["another new prompt"])


def test_request_key_is_canonical():
    m = [{"role": "user", "content": "x"}]
    assert request_key("m", m, {"temperature": 0, "seed": None}) == request_key("m", m, {"temperature": 0})
    assert request_key("m", m, {"temperature": 0}) != request_key("m2", m, {"temperature": 0})
    assert request_key("m", m, {}, {"type": "json_object"}) != request_key("m", m, {})


def test_structured_auto_falls_back_to_json_object_after_one_probe():
    """llama-cpp-python refuses the json_schema form (422); auto finds json_object + schema with
    one refused request, not one per worker."""
    def b(req, n):
        rf = req.get("response_format")
        if rf and rf["type"] == "json_schema":
            return Reply(422, {"detail": [{"loc": ["body", "response_format", "type"],
                                           "msg": "Input should be 'text' or 'json_object'"}]})
        assert rf == {"type": "json_object", "schema": ANSWER_SCHEMA}
        return Reply(body=completion(OK))

    with FakeLLMServer(b) as s:
        c = client(s.base_url, concurrency=4)
        res = c.chat([f"p{i}" for i in range(8)], schema=ANSWER_SCHEMA)
        assert all(r.text == OK and r.structured == "json_object" for r in res)
        assert sum(1 for r in s.requests if r["response_format"]["type"] == "json_schema") == 1
        n = len(s.requests)
        c.chat(["q"], schema=ANSWER_SCHEMA)  # the form is remembered
        assert len(s.requests) == n + 1


def test_structured_json_schema_form():
    with FakeLLMServer(lambda req, n: Reply(body=completion(OK))) as s:
        res = client(s.base_url, structured="json_schema").chat(["a"], schema=ANSWER_SCHEMA, schema_name="j")
    rf = s.requests[0]["response_format"]
    assert rf == {"type": "json_schema", "json_schema": {"name": "j", "schema": ANSWER_SCHEMA, "strict": True}}
    assert res[0].structured == "json_schema"


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="base_url"):
        LLMClient("m", "localhost:8000")
    with pytest.raises(InputError, match="concurrency"):
        LLMClient("m", "http://x/v1", concurrency=0)
    with pytest.raises(InputError, match="structured"):
        LLMClient("m", "http://x/v1", structured="grammar")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FormatError, match="not a readable response cache"):
        ResponseCache(tmp_path / "junk.sqlite")
    with pytest.raises(InputError, match="is a directory"):
        ResponseCache(tmp_path)


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {py!r})
    from fastcurate.llm import LLMClient
    c = LLMClient("fake-model", {url!r}, cache={cache!r}, concurrency=2, timeout=30)
    c.chat([f"prompt {{i}}" for i in range({n})])
    print("finished")
""")


def test_kill_9_mid_run_then_resume_sends_no_answered_request_again(tmp_path):
    """A client process killed with SIGKILL mid-run: every answer it had received is in the cache,
    and the resumed run sends only the prompts that were never answered."""
    n = 40

    def b(req, k):
        time.sleep(0.05)
        return Reply(body=completion("ok " + prompt_of(req)))

    cache = tmp_path / "cache.sqlite"
    with FakeLLMServer(b) as s:
        code = CHILD.format(py=package_root(), url=s.base_url, cache=str(cache), n=n)
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:
            if cache.exists():
                try:
                    with sqlite3.connect(str(cache), timeout=5) as db:
                        if db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] >= 10:
                            break
                except sqlite3.OperationalError:
                    pass
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL
        with ResponseCache(cache) as rc:
            before = set(rc.keys())
            in_flight = rc.in_flight_keys()
        assert 10 <= len(before) < n
        assert len(in_flight) <= 2  # at most `concurrency` requests were in flight at the kill
        sent_first = dict(s.counts)
        c = client(s.base_url, cache=cache)
        res = c.chat([f"prompt {i}" for i in range(n)])
        c.close()
        assert [r.text for r in res] == [f"ok prompt {i}" for i in range(n)]
        assert sum(r.cached for r in res) == len(before)
        assert c.stats["resent_in_flight"] == len(in_flight)
        # no prompt whose answer had been stored was sent again
        answered = {f"prompt {i}" for i, r in enumerate(res) if r.cached}
        assert all(s.counts[p] == 1 for p in answered)
        dup = s.duplicates()
        assert set(dup) <= set(sent_first) - answered and len(dup) <= 2


def test_structured_auto_falls_back_to_no_schema():
    """A server that takes no response format at all: the run goes on unconstrained (the parser
    then reads the template's lines), after one probe per form."""
    def b(req, n):
        if "response_format" in req:
            return Reply(400, {"error": {"message": f"unsupported response_format {req['response_format']['type']}"}})
        return Reply(body=completion("Reason: varied\nClassification: High Value"))

    with FakeLLMServer(b) as s:
        c = client(s.base_url, concurrency=3)
        res = c.chat([f"p{i}" for i in range(5)], schema=ANSWER_SCHEMA)
    assert all(r.ok and r.structured is None for r in res)
    assert sum(1 for r in s.requests if "response_format" in r) == 2  # one probe per refused form
    assert len(s.requests) == 2 + 5
