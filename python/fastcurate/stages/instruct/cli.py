"""``fastcurate instruct``: an instruction per mined pair (LLM or the offline template baseline)."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ...runner.cli import add_runner_args, positive_int, run_from_args

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "instruct",
        help="write an instruction per mined pair (query -> target) with an LLM or the offline template",
        description="For every pair of pairs.parquet (the input directory's, from `fastcurate pairs`, or --pairs) "
        "write an open-ended instruction that turns the query image into the target image: through an "
        "OpenAI-compatible server (the shipped few-shot prompt; brief reasoning, then an Instruction: line, of "
        "which only that line is kept; retries, a response cache and resume), or the offline template baseline "
        "(labels the target adds or lacks). Writes triplets.parquet. See docs/pairs.md.",
    )
    add_runner_args(p, roles=("text",))
    b = p.add_argument_group("backend")
    b.add_argument("--backend", choices=("offline", "openai"), default="offline",
                   help="offline: the label-difference template (a baseline); openai: an OpenAI-compatible server")
    b.add_argument("--model", default=None, help="the served model's name (openai)")
    b.add_argument("--base-url", action="append", default=None, metavar="URL",
                   help="the server's /v1 URL (repeat for several replicas)")
    b.add_argument("--serve", default=None, metavar="GGUF",
                   help="start a local llama.cpp server for the run: a .gguf file, or 'smollm2' (needs "
                        "llama-cpp-python[server])")
    b.add_argument("--serve-replicas", type=positive_int, default=1, metavar="N", help="server processes with --serve")
    b.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR", help="where the API key is read from")
    b.add_argument("--concurrency", type=positive_int, default=4, metavar="N", help="requests in flight (4)")
    b.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per HTTP attempt (120)")
    b.add_argument("--max-retries", type=int, default=4, metavar="N", help="retries per request (4)")
    b.add_argument("--request-budget", type=int, default=None, metavar="N", help="at most N HTTP attempts")
    b.add_argument("--max-tokens", type=int, default=160, metavar="N", help="answer token limit (160)")
    b.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0)")
    b.add_argument("--cache", default=None, metavar="FILE",
                   help="response cache (default: llm_cache.sqlite in --out; reruns never pay twice)")
    b.add_argument("--structured", action="store_true",
                   help="ask for JSON {reasoning, instruction} through the server's structured output")
    g = p.add_argument_group("prompt")
    g.add_argument("--template", default=None, metavar="FILE", help="a prompt template (default: the shipped one)")
    g.add_argument("--max-chars", type=positive_int, default=200, metavar="N", help="alt-texts cut at N characters")
    g.add_argument("--max-labels", type=int, default=8, metavar="N", help="labels per image in the prompt (8)")
    g.add_argument("--pairs", default=None, metavar="FILE", help="the pairs file (default: the input's pairs.parquet)")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    p = s["pairs"]
    out = [f"pairs: {p['asked']:,} asked -> {p['instructed']:,} instructed, {p['failed']:,} failed "
           f"({p['rows_missing']:,} of the file's {p['in_file']:,} pairs name rows not in the input)"]
    if s.get("failed_by_reason"):
        out.append("failed: " + ", ".join(f"{k} {v:,}" for k, v in s["failed_by_reason"].items()))
    return out


def _run(a: argparse.Namespace) -> int:
    from .stage import InstructStage

    base = a.base_url[0] if a.base_url and len(a.base_url) == 1 else a.base_url
    stage = InstructStage(backend=a.backend, model=a.model, base_url=base, serve=a.serve,
                          serve_replicas=a.serve_replicas, api_key_env=a.api_key_env, concurrency=a.concurrency,
                          timeout=a.timeout, max_retries=a.max_retries, request_budget=a.request_budget,
                          max_tokens=a.max_tokens, temperature=a.temperature, cache=a.cache, structured=a.structured,
                          template=a.template, max_chars=a.max_chars, max_labels=a.max_labels, pairs=a.pairs)
    return run_from_args(a, stage, _describe)
