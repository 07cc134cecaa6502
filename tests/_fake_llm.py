"""A tiny OpenAI-compatible HTTP server for tests: scripted answers, errors, garbage and delays, or a
counting proxy in front of a real server. It records every request it receives.

``behaviour(req: dict, n: int) -> Reply | None``: ``req`` is the request JSON, ``n`` the number of
requests received so far for the same prompt (1 for the first). None forwards to ``upstream``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; str/bytes sent as is
    headers: Dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection without an answer


def completion(content: str, model: str = "fake-model", ptok: int = 100, ctok: int = 20) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": ptok, "completion_tokens": ctok, "total_tokens": ptok + ctok},
    }


def prompt_of(req: Dict[str, Any]) -> str:
    return req["messages"][-1]["content"]


def key_of(req: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()


class FakeLLMServer:
    def __init__(self, behaviour: Optional[Callable[[Dict[str, Any], int], Optional[Reply]]] = None,
                 upstream: Optional[str] = None) -> None:
        self.behaviour = behaviour or (lambda req, n: Reply(body=completion(
            json.dumps({"reason": "fine", "classification": "High Value"}))))
        self.upstream = upstream.rstrip("/") if upstream else None
        self.requests: List[Dict[str, Any]] = []
        self.counts: Dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self) -> None:
                n_bytes = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(n_bytes)
                try:
                    req = json.loads(raw)
                except ValueError:
                    self._send(400, {"error": {"message": "bad json"}})
                    return
                p = prompt_of(req)
                with outer.lock:
                    outer.requests.append(req)
                    outer.counts[p] = outer.counts.get(p, 0) + 1
                    n = outer.counts[p]
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    rep = outer.behaviour(req, n)
                    if rep is None:
                        self._proxy(raw)
                        return
                    if rep.delay:
                        time.sleep(rep.delay)
                    if rep.drop:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self._send(rep.status, rep.body, rep.headers)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def _proxy(self, raw: bytes) -> None:
                assert outer.upstream
                r = urllib.request.Request(outer.upstream + self.path.replace("/v1", "", 1) if outer.upstream.endswith("/v1")
                                           else outer.upstream + self.path, data=raw,
                                           headers={"content-type": "application/json"})
                try:
                    with urllib.request.urlopen(r, timeout=300) as resp:
                        self._send(resp.status, resp.read())
                except urllib.error.HTTPError as e:
                    self._send(e.code, e.read())
                except OSError:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass

            def _send(self, status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> None:
                data = json.dumps(body).encode() if isinstance(body, (dict, list)) else (
                    body.encode() if isinstance(body, str) else (body or b""))
                try:
                    self.send_response(status)
                    ctype = "application/json" if isinstance(body, (dict, list, bytes)) else "text/html"
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._t.start()

    def duplicates(self) -> Dict[str, int]:
        """Prompts received more than once."""
        return {p: n for p, n in self.counts.items() if n > 1}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "FakeLLMServer":
        return self

    def __exit__(self, *a: Any) -> None:
        self.close()


def package_root() -> str:
    """The directory that holds the fastcurate this process imported (site-packages when the
    package is installed, the checkout's python/ in a dev build), for a child's sys.path: a child
    must import the same build, with its compiled _core."""
    from pathlib import Path

    import fastcurate

    return str(Path(fastcurate.__file__).resolve().parents[1])
