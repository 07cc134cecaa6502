"""A generic client for OpenAI-compatible LLM servers, its persistent response cache, and a local
llama.cpp server for tests and demos. Used by the ``judge`` stage and reusable by any stage that
asks an LLM (e.g. instruction generation).

Names: :class:`LLMClient`, :class:`ChatResult`, :class:`RequestBudget`, :class:`ResponseCache`,
:func:`request_key`, :class:`LlamaServer`, :func:`smollm2_gguf`, and the errors
:class:`LLMError`, :class:`LLMUnavailableError`, :class:`LLMRequestError`. See docs/judge.md.
"""

from __future__ import annotations

from .cache import CachedResponse, ResponseCache, request_key
from .client import (
    STRUCTURED_MODES,
    ChatResult,
    LLMClient,
    LLMError,
    LLMRequestError,
    LLMUnavailableError,
    RequestBudget,
)
from .server import LlamaServer, free_port, llama_server_available, smollm2_gguf

__all__ = [
    "LLMClient",
    "ChatResult",
    "RequestBudget",
    "STRUCTURED_MODES",
    "LLMError",
    "LLMUnavailableError",
    "LLMRequestError",
    "ResponseCache",
    "CachedResponse",
    "request_key",
    "LlamaServer",
    "smollm2_gguf",
    "free_port",
    "llama_server_available",
]
