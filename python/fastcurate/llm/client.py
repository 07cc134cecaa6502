"""A generic client for OpenAI-compatible chat servers (vLLM, llama.cpp's server, hosted APIs).

It is built on the official ``openai`` package (``base_url`` points it at any compatible server) and
adds what a batch job over millions of prompts needs and the SDK does not give as one policy:

- bounded concurrency (a thread pool of ``concurrency`` workers; each worker is bound to one
  ``base_url`` when several are given, e.g. llama.cpp replicas);
- a per-request timeout;
- retries with exponential backoff and jitter on 408/409/429, 5xx, connection errors, timeouts and
  bodies that are not a chat completion, honouring ``Retry-After`` (capped);
- a global request budget counted in HTTP attempts (what a hosted API bills);
- temperature 0 by default;
- a persistent :class:`~fastcurate.llm.cache.ResponseCache`: an answered request is never sent
  again, in this run (identical prompts are sent once) or any later one;
- structured output: a JSON schema sent as the OpenAI ``json_schema`` response format (vLLM,
  hosted APIs, llama.cpp's ``llama-server``) or as llama-cpp-python's ``json_object`` + ``schema``
  form; ``"auto"`` picks the form from the server's answer to the first request.

Failure policy (why: one sick request must not sink a job, a sick server must not be hammered):

- a request refused for itself (400, 413, 422: e.g. a prompt longer than the context) is recorded
  as an error on its result and the run goes on;
- a retryable failure that outlasts its retries means the server is down, overloaded or too slow:
  the run stops issuing requests, lets the ones in flight finish (their answers are cached), and
  raises :class:`LLMUnavailableError` saying how many were answered and that a rerun resumes;
- 401/403/404 (bad key, wrong model name or URL) raise :class:`LLMRequestError` at once;
- a spent budget records the error "request budget ... spent" on every result left unanswered.

Thread safety: one client may be used by one batch call at a time (``chat`` is not reentrant); it
runs its own worker threads.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import FastcurateError, InputError
from .cache import CachedResponse, ResponseCache, request_key

__all__ = [
    "LLMClient",
    "ChatResult",
    "RequestBudget",
    "LLMError",
    "LLMUnavailableError",
    "LLMRequestError",
    "STRUCTURED_MODES",
]

#: ``structured`` values: "auto" (try ``json_schema``, fall back to ``json_object`` + schema, then
#: to no constraint), one of the two forms, or "off"
STRUCTURED_MODES = ("auto", "json_schema", "json_object", "off")
_RETRY_STATUS = {408, 409, 429}


class LLMError(FastcurateError, RuntimeError):
    """Base of the LLM client's errors."""


class LLMUnavailableError(LLMError):
    """The server did not answer (connection refused, timeouts, 429/5xx) within the retries."""


class LLMRequestError(LLMError):
    """The server refused every request for the same reason (bad key, unknown model, wrong URL)."""


class RequestBudget:
    """A global, thread-safe cap on HTTP attempts (retries count: a hosted API bills them).
    Share one instance between clients to cap a whole pipeline."""

    def __init__(self, max_requests: Optional[int]) -> None:
        if max_requests is not None and max_requests < 0:
            raise InputError(f"request budget must be >= 0 or None, got {max_requests}")
        self.max_requests = max_requests
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.max_requests is not None and self.used >= self.max_requests:
                return False
            self.used += 1
            return True

    @property
    def left(self) -> Optional[int]:
        return None if self.max_requests is None else max(0, self.max_requests - self.used)


@dataclass
class ChatResult:
    """The outcome of one prompt. ``text`` is None exactly when ``error`` is set.

    ``attempts`` and ``latency_ms`` (all attempts and backoff waits) describe the run that got the
    answer, also when it comes from the cache (``cached`` then says so)."""

    key: str
    text: Optional[str] = None
    error: Optional[str] = None
    attempts: int = 0
    latency_ms: float = 0.0
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    finish_reason: Optional[str] = None
    model: Optional[str] = None
    cached: bool = False
    structured: Optional[str] = None  # the response format the answer was generated under

    @property
    def ok(self) -> bool:
        return self.error is None


class _Fatal(Exception):
    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind


class _Refused(Exception):
    """The server refused this one request (4xx); recorded on its result."""

    def __init__(self, status: Optional[int], msg: str) -> None:
        super().__init__(msg)
        self.status = status


def _status_of(e: BaseException) -> Optional[int]:
    return getattr(e, "status_code", None)


def _retry_after(e: BaseException) -> Optional[float]:
    resp = getattr(e, "response", None)
    if resp is None:
        return None
    try:
        v = resp.headers.get("retry-after")
        return float(v) if v is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def _body_text(e: BaseException) -> str:
    resp = getattr(e, "response", None)
    try:
        return resp.text if resp is not None else ""
    except Exception:  # a streamed or closed body: the status line says enough
        return ""


def _short(e: BaseException, n: int = 300) -> str:
    s = f"{type(e).__name__}: {e}"
    body = _body_text(e)
    if body and body not in s:
        s += f" {body}"
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + "…"


class LLMClient:
    """Batch chat completions against an OpenAI-compatible server.

    Args:
        model: the model name the server serves (``/v1/models``).
        base_url: the server's ``/v1`` URL, or a list of them (workers are spread over them), or a
            function returning them, called once, when the first request is to be sent: a run
            whose every answer is cached then never starts the server the function would start.
        api_key: the key; None reads the environment variable ``api_key_env`` and, for a local server
            that needs none, falls back to a dummy key.
        api_key_env: where to read the key from (default ``OPENAI_API_KEY``).
        concurrency: requests in flight at once.
        timeout: seconds per HTTP attempt.
        max_retries: retries per request after the first attempt, for retryable failures.
        backoff: first backoff in seconds; attempt k waits ``min(backoff_max, backoff * 2**(k-1))``
            times a uniform jitter factor in [0.5, 1].
        request_budget: cap on HTTP attempts for this client (an int) or a shared
            :class:`RequestBudget`; None: no cap.
        temperature, max_tokens, top_p, seed: sampling parameters (part of the cache key).
        cache: a :class:`ResponseCache`, a path to one, or None (no cache: nothing survives the run).
        structured: see :data:`STRUCTURED_MODES`.
        extra_body: extra JSON fields sent with every request (part of the cache key), e.g. vLLM's
            ``{"top_k": 1}``.
        jitter_seed: seed of the jitter's random generator (tests).
    """

    def __init__(
        self,
        model: str,
        base_url: Union[str, Sequence[str], Callable[[], Union[str, Sequence[str]]]],
        *,
        api_key: Optional[str] = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        request_budget: Union[None, int, RequestBudget] = None,
        temperature: float = 0.0,
        max_tokens: int = 384,
        top_p: Optional[float] = None,
        seed: Optional[int] = None,
        cache: Union[None, str, "os.PathLike[str]", ResponseCache] = None,
        structured: str = "auto",
        extra_body: Optional[Mapping[str, Any]] = None,
        jitter_seed: Optional[int] = None,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise LLMError("the LLM client needs the openai package: pip install 'fastcurate[llm]'") from None
        self._openai = openai
        if not model:
            raise InputError("model must name the served model (see GET /v1/models on the server)")
        # a function: called on the first cache miss (see _connect); its URLs are checked then
        self._connect_fn = base_url if callable(base_url) else None
        urls = [] if self._connect_fn is not None else _check_urls(base_url)  # type: ignore[arg-type]
        if concurrency < 1:
            raise InputError(f"concurrency must be >= 1, got {concurrency}")
        if timeout <= 0:
            raise InputError(f"timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise InputError(f"max_retries must be >= 0, got {max_retries}")
        if structured not in STRUCTURED_MODES:
            raise InputError(f"structured must be one of {STRUCTURED_MODES}, got {structured!r}")
        if api_key is None:
            api_key = os.environ.get(api_key_env) or "sk-no-key-needed"
        self._api_key = api_key
        self.model = model
        self.base_urls: List[str] = urls  # empty until a base_url function has been called
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.budget = request_budget if isinstance(request_budget, RequestBudget) else RequestBudget(request_budget)
        self.params: Dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p,
                                       "seed": seed}
        self.extra_body = dict(extra_body) if extra_body else None
        self.structured = structured
        self._structured_form: Optional[str] = None if structured == "auto" else structured
        self._form_lock = threading.Lock()
        self._own_cache = not isinstance(cache, ResponseCache) and cache is not None
        self.cache: Optional[ResponseCache] = (cache if isinstance(cache, ResponseCache) or cache is None
                                               else ResponseCache(cache))
        self._rng = random.Random(jitter_seed)
        self._rng_lock = threading.Lock()
        # the SDK's own retries are off: this class owns the retry policy and counts every attempt
        self._clients = [openai.OpenAI(base_url=u, api_key=api_key, max_retries=0, timeout=self.timeout) for u in urls]
        self._connect_lock = threading.Lock()
        self.stats: Dict[str, int] = {}
        self._stats_lock = threading.Lock()
        self._reset_stats()

    def _bump(self, name: str, by: int = 1) -> None:
        with self._stats_lock:
            self.stats[name] += by

    def _reset_stats(self) -> None:
        self.stats = {"prompts": 0, "unique": 0, "cache_hits": 0, "sent": 0, "attempts": 0, "retries": 0,
                      "answered": 0, "errors": 0, "resent_in_flight": 0}

    # -- lifecycle -------------------------------------------------------------------------------
    def _connect(self) -> None:
        """The HTTP clients, from the base_url function on first use (a started server's URLs)."""
        with self._connect_lock:
            if self._clients:
                return
            assert self._connect_fn is not None
            self.base_urls = _check_urls(self._connect_fn())
            self._clients = [self._openai.OpenAI(base_url=u, api_key=self._api_key, max_retries=0,
                                                 timeout=self.timeout) for u in self.base_urls]

    def close(self) -> None:
        for c in self._clients:
            c.close()
        if self._own_cache and self.cache is not None:
            self.cache.close()

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------
    def response_format(self, schema: Optional[Mapping[str, Any]], name: str = "answer",
                        form: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The ``response_format`` field for ``schema`` in the given (or current) form."""
        form = form or self._structured_form or ("json_schema" if self.structured == "auto" else self.structured)
        if schema is None or form == "off":
            return None
        if form == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": True}}
        return {"type": "json_object", "schema": dict(schema)}

    def messages_for(self, prompt: str, system: Optional[str] = None) -> List[Dict[str, str]]:
        msgs = [{"role": "system", "content": system}] if system else []
        msgs.append({"role": "user", "content": prompt})
        return msgs

    def key_for(self, messages: Sequence[Mapping[str, Any]], response_format: Optional[Mapping[str, Any]]) -> str:
        params = dict(self.params)
        if self.extra_body:
            params["extra_body"] = self.extra_body
        return request_key(self.model, messages, params, response_format)

    def chat(
        self,
        prompts: Sequence[str],
        *,
        schema: Optional[Mapping[str, Any]] = None,
        schema_name: str = "answer",
        system: Optional[str] = None,
        progress: bool = False,
        on_result: Optional[Callable[[int, ChatResult], None]] = None,
    ) -> List[ChatResult]:
        """Send every prompt (as one user message, after an optional system message) and return one
        :class:`ChatResult` per prompt, in order. Cached answers are returned without a request;
        identical prompts are sent once.

        Raises:
            LLMUnavailableError: the server stopped answering (every answer received so far is cached).
            LLMRequestError: the server refused for a reason that no retry can fix (401/403/404).
        """
        self._reset_stats()
        n = len(prompts)
        self.stats["prompts"] = n
        results: List[Optional[ChatResult]] = [None] * n
        if n == 0:
            return []
        if schema is None or self.structured == "off":
            forms: Tuple[Optional[str], ...] = (None,)
        elif self.structured == "auto" and self._structured_form is None:
            forms = ("json_schema", "json_object", "off")  # "off": the server takes no schema at all
        else:
            forms = (self._structured_form,)
        # the key of each prompt under each form the run may use; a cached answer under any of them counts
        keyed: List[List[Tuple[str, Optional[Dict[str, Any]], Optional[str]]]] = []
        for p in prompts:
            if not isinstance(p, str):
                raise InputError(f"prompts must be str, got {type(p).__name__}")
            msgs = self.messages_for(p, system)
            opts = []
            for f in forms:
                rf = self.response_format(schema, schema_name, f) if f and f != "off" else None
                opts.append((self.key_for(msgs, rf), rf, None if f == "off" else f))
            keyed.append(opts)
        hits: Dict[str, CachedResponse] = {}
        if self.cache is not None:
            hits = self.cache.get_many([k for opts in keyed for k, _, _ in opts])
            in_flight = set(self.cache.in_flight_keys())
        else:
            in_flight = set()
        todo: Dict[str, List[int]] = {}
        for i, opts in enumerate(keyed):
            hit = next((hits[k] for k, _, _ in opts if k in hits), None)
            if hit is not None:
                results[i] = self._from_cache(hit)
                self.stats["cache_hits"] += 1
                if on_result:
                    on_result(i, results[i])  # type: ignore[arg-type]
                continue
            todo.setdefault(opts[0][0], []).append(i)
        self.stats["unique"] = len(todo)
        self.stats["resent_in_flight"] = sum(1 for k in todo if k in in_flight)
        if todo:
            self._run(todo, keyed, prompts, system, schema, schema_name, results, progress, on_result)
        out = [r for r in results if r is not None]
        assert len(out) == n
        self.stats["errors"] = sum(1 for r in out if r.error)
        return out

    def _from_cache(self, hit: CachedResponse) -> ChatResult:
        return ChatResult(key=hit.key, text=hit.text, attempts=hit.attempts, latency_ms=hit.latency_ms,
                          prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens,
                          finish_reason=hit.finish_reason, model=hit.model, cached=True, structured=hit.structured)

    def _run(self, todo: Dict[str, List[int]], keyed: List[List[Tuple[str, Optional[Dict[str, Any]], Optional[str]]]],
             prompts: Sequence[str], system: Optional[str], schema: Optional[Mapping[str, Any]], schema_name: str,
             results: List[Optional[ChatResult]], progress: bool,
             on_result: Optional[Callable[[int, ChatResult], None]]) -> None:
        self._connect()  # the first request of this client: a lazy base_url starts its server now
        stop = threading.Event()
        fatal: List[_Fatal] = []
        items = list(todo.items())
        bar = None
        if progress:
            try:
                from tqdm import tqdm

                bar = tqdm(total=len(items), unit="req", desc="llm")
            except ImportError:  # pragma: no cover - tqdm is a runtime dependency
                bar = None
        worker_ids = threading.local()
        counter = iter(range(1 << 62))
        counter_lock = threading.Lock()

        def client_for_thread() -> Any:
            if not hasattr(worker_ids, "i"):
                with counter_lock:
                    worker_ids.i = next(counter)
            return self._clients[worker_ids.i % len(self._clients)]

        def work(item: Tuple[str, List[int]]) -> ChatResult:
            key, idx = item
            if stop.is_set():
                return ChatResult(key=key, error="not sent: the run stopped after a fatal error")
            msgs = self.messages_for(prompts[idx[0]], system)
            try:
                return self._one(client_for_thread(), key, msgs, schema, schema_name, keyed[idx[0]], stop)
            except _Fatal:
                stop.set()  # before this worker takes its next item
                raise

        def deliver(item: Tuple[str, List[int]], res: ChatResult) -> None:
            for j, i in enumerate(item[1]):
                r = res if j == 0 else ChatResult(**{**res.__dict__, "cached": res.text is not None})
                results[i] = r
                if on_result:
                    on_result(i, r)
            if bar is not None:
                bar.update(1)

        it = iter(items)
        if schema is not None and self.structured == "auto" and self._structured_form is None:
            # find the server's response format with one request before the others go out, so that
            # a server without json_schema sees one refused request, not `concurrency` of them
            first = next(it)
            try:
                deliver(first, work(first))
            except _Fatal as e:
                fatal.append(e)
                stop.set()
                deliver(first, ChatResult(key=first[0], error=str(e)))
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="llm") as pool:
            pending: Dict[Future, Tuple[str, List[int]]] = {}
            # keep at most 2x concurrency futures queued so a fatal error stops the run quickly
            def refill() -> None:
                while len(pending) < 2 * self.concurrency and not stop.is_set():
                    nxt = next(it, None)
                    if nxt is None:
                        return
                    pending[pool.submit(work, nxt)] = nxt

            refill()
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for f in done:
                    item = pending.pop(f)
                    try:
                        res = f.result()
                    except _Fatal as e:
                        fatal.append(e)
                        stop.set()
                        res = ChatResult(key=item[0], error=str(e))
                    deliver(item, res)
                refill()
        if bar is not None:
            bar.close()
        for item in items:  # never submitted because the run stopped
            if results[item[1][0]] is None:
                deliver(item, ChatResult(key=item[0], error="not sent: the run stopped after a fatal error"))
        if fatal:
            fe = fatal[0]
            answered = sum(1 for r in results if r is not None and r.text is not None)
            where = f"; the {answered} answers received are cached in {self.cache.path}, rerun to resume" if self.cache \
                else "; no cache was given, so nothing is kept"
            msg = f"{fe}{where} ({answered} of {len(results)} prompts answered)"
            if fe.kind == "unavailable":
                raise LLMUnavailableError(msg)
            raise LLMRequestError(msg)

    def _sleep_backoff(self, attempt: int, stop: threading.Event, retry_after: Optional[float]) -> None:
        d = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        with self._rng_lock:
            d *= 0.5 + 0.5 * self._rng.random()
        if retry_after is not None:
            d = max(d, min(self.backoff_max, retry_after))
        stop.wait(d)

    def _one(self, client: Any, key: str, msgs: List[Dict[str, str]], schema: Optional[Mapping[str, Any]],
             schema_name: str, opts: List[Tuple[str, Optional[Dict[str, Any]], Optional[str]]],
             stop: threading.Event) -> ChatResult:
        openai = self._openai
        t0 = time.perf_counter()
        attempts = 0
        failures = 0
        last_err = ""
        form_i = 0
        with self._form_lock:
            if self._structured_form is not None and schema is not None:
                want = None if self._structured_form == "off" else self._structured_form
                form_i = next((j for j, o in enumerate(opts) if o[2] == want), 0)
        while True:
            key_f, rf, form = opts[form_i]
            if not self.budget.take():
                return ChatResult(key=key, error=f"request budget of {self.budget.max_requests} requests spent",
                                  attempts=attempts, latency_ms=(time.perf_counter() - t0) * 1e3)
            attempts += 1
            self._bump("attempts")
            if attempts == 1:
                self._bump("sent")
            if self.cache is not None:
                self.cache.mark_sent(key_f)
            kw: Dict[str, Any] = {k: v for k, v in self.params.items() if v is not None}
            if rf is not None:
                kw["response_format"] = rf
            if self.extra_body:
                kw["extra_body"] = self.extra_body
            err: Optional[BaseException] = None
            try:
                resp = client.chat.completions.create(model=self.model, messages=msgs, **kw)
                text, finish, ptok, ctok, served = self._unpack(resp)
            except openai.APIStatusError as e:
                err = e
                st = _status_of(e)
                if st in (401, 403):
                    raise _Fatal("request", f"the server refused the API key (HTTP {st}): {_short(e)}; set the "
                                 f"key's environment variable (--api-key-env)") from None
                if st == 404:
                    raise _Fatal("request", f"HTTP 404 from {client.base_url}: {_short(e)}; check --base-url "
                                 f"(it must end in /v1) and --model {self.model!r}") from None
                if (rf is not None and form_i + 1 < len(opts) and st not in (408, 409, 429) and _mentions_format(e)):
                    # the server does not take this response format (llama-cpp-python answers its own
                    # validation error with a 500): try the next form
                    form_i += 1
                    continue
                if st is not None and 400 <= st < 500 and st not in _RETRY_STATUS:
                    return ChatResult(key=key, error=f"refused (HTTP {st}): {_short(e)}", attempts=attempts,
                                      latency_ms=(time.perf_counter() - t0) * 1e3)
            except (openai.APIConnectionError, openai.APIResponseValidationError) as e:
                err = e
            except _Garbage as e:
                err = e
            if err is None:
                if schema is not None and self._structured_form is None:
                    with self._form_lock:
                        self._structured_form = form or "off"  # remembered for the rest of the run
                lat = (time.perf_counter() - t0) * 1e3
                res = ChatResult(key=key_f, text=text, attempts=attempts, latency_ms=lat, prompt_tokens=ptok,
                                 completion_tokens=ctok, finish_reason=finish, model=served, structured=form)
                if self.cache is not None:
                    self.cache.put(CachedResponse(key_f, served or self.model, text, finish, ptok, ctok, attempts, lat,
                                                  time.time(), form),
                                   request={"model": self.model, "messages": msgs, **kw})
                self._bump("answered")
                return res
            failures += 1
            last_err = _short(err)
            if failures > self.max_retries:
                if isinstance(err, _Garbage):
                    return ChatResult(key=key, error=f"no valid answer after {attempts} attempts: {last_err}",
                                      attempts=attempts, latency_ms=(time.perf_counter() - t0) * 1e3)
                raise _Fatal("unavailable", f"the LLM server at {client.base_url} did not answer after {attempts} "
                             f"attempts (timeout {self.timeout:g}s each): {last_err}")
            if stop.is_set():
                return ChatResult(key=key, error=f"not retried: the run stopped ({last_err})", attempts=attempts,
                                  latency_ms=(time.perf_counter() - t0) * 1e3)
            self._bump("retries")
            self._sleep_backoff(failures, stop, _retry_after(err))

    def _unpack(self, resp: Any) -> Tuple[str, Optional[str], Optional[int], Optional[int], Optional[str]]:
        # A server that answers 200 with something other than a chat completion (an HTML error
        # page from a proxy, truncated JSON) gets here as a str / dict / half-built object.
        try:
            ch = resp.choices[0]
            text = ch.message.content
            finish = getattr(ch, "finish_reason", None)
        except (AttributeError, IndexError, TypeError, KeyError):
            raise _Garbage(f"the response is not a chat completion: {str(resp)[:200]!r}") from None
        if not isinstance(text, str):
            raise _Garbage(f"the response's message has no text content: {str(resp)[:200]!r}")
        usage = getattr(resp, "usage", None)
        ptok = getattr(usage, "prompt_tokens", None) if usage is not None else None
        ctok = getattr(usage, "completion_tokens", None) if usage is not None else None
        served = getattr(resp, "model", None)
        return text, finish, ptok if isinstance(ptok, int) else None, ctok if isinstance(ctok, int) else None, \
            served if isinstance(served, str) else None


def _check_urls(base_url: Union[str, Sequence[str]]) -> List[str]:
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
        raise InputError(f"base_url must be one or more http(s) URLs such as http://127.0.0.1:8000/v1, got {base_url!r}")
    return urls


class _Garbage(Exception):
    """A 200 answer whose body is not a chat completion."""


def _mentions_format(e: BaseException) -> bool:
    s = (str(e) + " " + _body_text(e)).lower()
    return "response_format" in s or "json_schema" in s or "schema" in s
