"""``fastcurate judge``: label each cluster High or Low Value and drop the rows of Low Value clusters."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional, Tuple

from ...runner.cli import add_runner_args, nonneg_int, positive_int, run_from_args

__all__ = ["register"]


def _threshold(s: str) -> Tuple[str, float]:
    name, eq, value = s.partition("=")
    if not eq:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. cohesion=0.2), got {s!r}")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number after {name}=, got {value!r}") from None


def _baseline(s: str) -> Any:
    if s in ("auto", "batch"):
        return s
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, batch or a cosine, got {s!r}") from None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "judge",
        help="label each cluster High or Low Value (an LLM with DataComp's prompt, or offline rules) and drop the "
             "rows of Low Value clusters",
        description="Reads the output directory of `fastcurate cluster` (its parts and clusters.parquet), judges "
        "every cluster that has rows from its closest (and --with-furthest furthest) samples' captions, writes "
        "judgments.parquet and drops the rows of Low Value clusters (reason low_value_cluster, detail: the cluster "
        "and the judge's reason). Clusters without a verdict (unparsed answer, no answer) keep their rows unless "
        "--drop-unjudged. An LLM run killed or stopped by a server failure resumes from its response cache: "
        "rerun the same command. See docs/judge.md.",
    )
    add_runner_args(p, roles=())
    j = p.add_argument_group("judge")
    j.add_argument("--backend", choices=("offline", "openai"), default="offline",
                   help="offline: rules over measurable features, no network (default); openai: the prompt sent to "
                        "an OpenAI-compatible server (--base-url, --model)")
    j.add_argument("--with-furthest", action="store_true",
                   help="also show (offline: score) each cluster's furthest samples")
    j.add_argument("--n-samples", type=positive_int, default=5, metavar="N",
                   help="samples per side shown to the judge (default 5, as the prompt's examples)")
    j.add_argument("--max-chars", type=positive_int, default=200, metavar="N",
                   help="a caption is cut after N characters in the prompt (default 200)")
    u = j.add_mutually_exclusive_group()
    u.add_argument("--keep-unjudged", dest="drop_unjudged", action="store_false", default=False,
                   help="keep the rows of clusters without a verdict (unparsed answer, no answer) and rows without "
                        "a cluster (default: the judge never guesses)")
    u.add_argument("--drop-unjudged", dest="drop_unjudged", action="store_true",
                   help="drop them too (reasons unjudged_cluster, no_cluster): keep only rows of High Value clusters")
    j.add_argument("--clusters-file", default=None, metavar="PATH",
                   help="the clusters table (default: clusters.parquet of the input directory)")
    o = p.add_argument_group("openai backend (docs/judge.md)")
    o.add_argument("--base-url", action="append", default=None, metavar="URL",
                   help="the server's /v1 URL, e.g. http://127.0.0.1:8000/v1 (repeat for replicas)")
    o.add_argument("--model", default=None, help="the served model's name (GET /v1/models)")
    o.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="environment variable holding the API key (default OPENAI_API_KEY; a local server needs none)")
    o.add_argument("--concurrency", type=positive_int, default=4, metavar="N", help="requests in flight (default 4)")
    o.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds per HTTP attempt (default 60)")
    o.add_argument("--retries", type=nonneg_int, default=4, metavar="N",
                   help="retries per request on 429/5xx/timeouts (default 4)")
    o.add_argument("--budget", type=nonneg_int, default=None, metavar="N",
                   help="at most N HTTP attempts in all (retries count); clusters left are judged 'error'")
    o.add_argument("--cache", default=None, metavar="PATH",
                   help="response cache (SQLite) to use and keep (default: one in --out/_work, reused by a resumed "
                        "run and removed when the run finishes)")
    o.add_argument("--structured", choices=("auto", "json_schema", "json_object", "off"), default="auto",
                   help="constrain answers to the JSON schema (auto: in the form the server takes; off: parse the "
                        "prompt's Classification: line)")
    o.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    o.add_argument("--max-tokens", type=positive_int, default=384, metavar="N", help="answer length cap (default 384)")
    f = p.add_argument_group("offline backend (docs/judge.md)")
    f.add_argument("--offline-embeddings", choices=("cluster", "minilm", "none"), default="cluster",
                   help="embeddings for the narrow-topic rule: those in clusters.parquet (cluster, default), the "
                        "captions embedded with MiniLM (minilm, the calibrated space), or none (rule off)")
    f.add_argument("--offline-baseline", type=_baseline, default="auto", metavar="auto|batch|COS",
                   help="mean cosine of unrelated samples in that space (default auto: estimated from >= 20 clusters)")
    f.add_argument("--offline-narrow", choices=("outlier", "absolute"), default="outlier",
                   help="narrow-topic rule: only clusters whose cohesion is an outlier among this run's (outlier, "
                        "default) or every cluster above the calibrated threshold (absolute; fires on most k-means "
                        "clusters of a real pool)")
    f.add_argument("--offline-outlier-z", type=float, default=3.0, metavar="Z",
                   help="robust z-score (median + Z x 1.4826 MAD) above which a cohesion is an outlier (default 3)")
    f.add_argument("--offline-threshold", type=_threshold, action="append", default=[], metavar="NAME=VALUE",
                   help="override a rule's threshold (junk_share, dup_share, cohesion, vocab, matched_share); repeat")
    p.set_defaults(func=_run)


def _describe(s: Dict[str, Any]) -> List[str]:
    lab = s.get("labels", {})
    rows = s.get("rows_by_label", {})
    out = [f"{s.get('clusters', 0):,} clusters judged ({s.get('backend')}): " +
           ", ".join(f"{k} {v:,}" for k, v in lab.items()) +
           f"; unparsed rate {100.0 * float(s.get('unparsed_rate') or 0):.1f}%; judgments in judgments.parquet"]
    out.append("rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items() if v))
    if s.get("prompt_tokens"):
        out.append(f"tokens: {s['prompt_tokens']:,} prompt, {s['completion_tokens']:,} completion")
    for w in s.get("warnings", []):
        out.append(f"warning: {w}")
    return out


def _run(a: argparse.Namespace) -> int:
    from ...errors import InputError
    from .stage import JudgeStage

    if a.backend == "offline":
        given = [flag for flag, v in (("--base-url", a.base_url), ("--model", a.model), ("--budget", a.budget),
                                      ("--cache", a.cache)) if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} go with --backend openai")
    base_url: Optional[Any] = a.base_url[0] if a.base_url and len(a.base_url) == 1 else a.base_url
    stage = JudgeStage(backend=a.backend, model=a.model, base_url=base_url, api_key_env=a.api_key_env,
                       concurrency=a.concurrency, timeout=a.timeout, retries=a.retries, budget=a.budget,
                       cache=a.cache, structured=a.structured, temperature=a.temperature, max_tokens=a.max_tokens,
                       with_furthest=a.with_furthest, n_samples=a.n_samples, max_chars=a.max_chars,
                       drop_unjudged=a.drop_unjudged, clusters_file=a.clusters_file,
                       offline_embeddings=a.offline_embeddings, offline_baseline=a.offline_baseline,
                       offline_narrow=a.offline_narrow, offline_outlier_z=a.offline_outlier_z,
                       offline_thresholds=dict(a.offline_threshold))
    return run_from_args(a, stage, _describe)
