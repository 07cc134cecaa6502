"""A persistent response cache (SQLite), so that a rerun or a resume never sends a request twice.

Why SQLite: every stored answer is one committed transaction in write-ahead-log mode with
``synchronous=FULL``, i.e. fsynced before :meth:`ResponseCache.put` returns; a process killed with
``kill -9`` (or a power cut) at any instant leaves the file holding every answer whose ``put``
returned and nothing half-written, and the next open recovers it. Lookups are by primary key, and
several processes may share one cache file (SQLite locks it).

The key is the SHA-256 of a canonical JSON of everything that determines the answer: the model
name, the messages, the sampling parameters and the response format (schema) — see
:func:`request_key`. The server's address is deliberately not part of it: the same model served by
vLLM or llama.cpp answers the same request, and moving a job to another server must not re-pay it.

Besides answers the cache keeps a journal of requests *sent* (one row per key with the number of
HTTP attempts), written and fsynced before each attempt goes out. After a crash, the keys that were
sent but never answered are the requests that were in flight at the moment of the kill: a resume
sends those again (their answers never reached us) and reports how many
(:meth:`ResponseCache.in_flight_keys`); every answered key is served from the cache.

Thread safety: one instance may be shared by many threads (one connection behind a lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from ..errors import FormatError, InputError

__all__ = ["ResponseCache", "CachedResponse", "request_key", "CACHE_VERSION"]

CACHE_VERSION = 1
PathLike = Union[str, "os.PathLike[str]"]


def request_key(model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                response_format: Optional[Mapping[str, Any]] = None) -> str:
    """SHA-256 (hex) of the canonical JSON of (model, messages, sampling params, response format).

    Canonical: keys sorted, no insignificant whitespace, non-ASCII kept as UTF-8; ``None`` params are
    dropped so that "not given" and "given as None" are the same request."""
    doc = {
        "v": CACHE_VERSION,
        "model": model,
        "messages": [dict(m) for m in messages],
        "params": {k: v for k, v in sorted(params.items()) if v is not None},
        "response_format": response_format,
    }
    s = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class CachedResponse:
    """One stored answer."""

    key: str
    model: str
    text: str
    finish_reason: Optional[str]
    prompt_tokens: Optional[int]
    completion_tokens: Optional[int]
    attempts: int
    latency_ms: float
    created: float
    structured: Optional[str]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    attempts INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    created REAL NOT NULL,
    structured TEXT,
    request TEXT
);
CREATE TABLE IF NOT EXISTS sent (
    key TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL,
    first REAL NOT NULL,
    last REAL NOT NULL
);
"""


class ResponseCache:
    """Answers by request key, durable across crashes. Use as a context manager or call
    :meth:`close`.

    Args:
        path: the SQLite file (created with its parent directory if absent).
        store_requests: also store each request's JSON (messages and params) beside its answer, for
            audits; costs disk (a judge prompt is about 3 kB).
    """

    def __init__(self, path: PathLike, *, store_requests: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"cache path {self.path} is a directory; give a file name such as {self.path / 'llm_cache.sqlite'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store_requests = store_requests
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT v FROM meta WHERE k='version'").fetchone()
            if row is None:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (str(CACHE_VERSION),))
            elif row[0] != str(CACHE_VERSION):
                raise FormatError(f"{self.path}: response cache version {row[0]}, this fastcurate reads version "
                                  f"{CACHE_VERSION}; use a new cache file")
        except sqlite3.DatabaseError as e:
            raise FormatError(f"{self.path} is not a readable response cache ({e}); move it away or pass another "
                              f"cache path") from e

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise InputError(f"response cache {self.path} is closed")
        return self._db

    # -- answers ---------------------------------------------------------------------------------
    def get(self, key: str) -> Optional[CachedResponse]:
        with self._lock:
            row = self._conn().execute(
                "SELECT key, model, text, finish_reason, prompt_tokens, completion_tokens, attempts, latency_ms, "
                "created, structured FROM responses WHERE key=?", (key,)).fetchone()
        return CachedResponse(*row) if row else None

    def get_many(self, keys: Sequence[str]) -> Dict[str, CachedResponse]:
        out: Dict[str, CachedResponse] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            db = self._conn()
            for s in range(0, len(uniq), 500):
                chunk = uniq[s:s + 500]
                q = ("SELECT key, model, text, finish_reason, prompt_tokens, completion_tokens, attempts, latency_ms, "
                     "created, structured FROM responses WHERE key IN (%s)" % ",".join("?" * len(chunk)))
                for row in db.execute(q, chunk):
                    out[row[0]] = CachedResponse(*row)
        return out

    def put(self, resp: CachedResponse, request: Optional[Mapping[str, Any]] = None) -> None:
        """Store an answer durably (committed and fsynced when this returns). A second put of the
        same key keeps the first answer."""
        req = json.dumps(request, sort_keys=True, ensure_ascii=False) if (request is not None and self.store_requests) else None
        with self._lock:
            self._conn().execute(
                "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (resp.key, resp.model, resp.text, resp.finish_reason, resp.prompt_tokens, resp.completion_tokens,
                 resp.attempts, resp.latency_ms, resp.created, resp.structured, req))

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return self._conn().execute("SELECT 1 FROM responses WHERE key=?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def keys(self) -> List[str]:
        with self._lock:
            return [r[0] for r in self._conn().execute("SELECT key FROM responses ORDER BY rowid")]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    # -- journal of requests sent ----------------------------------------------------------------
    def mark_sent(self, key: str) -> None:
        """Record, durably, that one HTTP attempt for ``key`` is about to go out."""
        now = time.time()
        with self._lock:
            self._conn().execute(
                "INSERT INTO sent VALUES (?, 1, ?, ?) ON CONFLICT(key) DO UPDATE SET attempts=attempts+1, last=?",
                (key, now, now, now))

    def sent_attempts(self, key: str) -> int:
        with self._lock:
            row = self._conn().execute("SELECT attempts FROM sent WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def in_flight_keys(self) -> List[str]:
        """Keys sent at least once but never answered: in flight when a previous run died (or
        failed for good). A resume sends these again."""
        with self._lock:
            return [r[0] for r in self._conn().execute(
                "SELECT key FROM sent WHERE key NOT IN (SELECT key FROM responses) ORDER BY first")]

    def stats(self) -> Dict[str, int]:
        with self._lock:
            db = self._conn()
            n = int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
            s = db.execute("SELECT COUNT(*), COALESCE(SUM(attempts), 0) FROM sent").fetchone()
            pend = int(db.execute("SELECT COUNT(*) FROM sent WHERE key NOT IN (SELECT key FROM responses)").fetchone()[0])
        return {"answers": n, "keys_sent": int(s[0]), "attempts_sent": int(s[1]), "sent_unanswered": pend}

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"
