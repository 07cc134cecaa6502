"""The cluster-quality judge (issue 10): DataComp's classifier prompt through an OpenAI-compatible
LLM server, or an offline judge from measurable features. See docs/judge.md.

Entry points (also reachable as ``fastcurate.judge``):

- :func:`render_prompt` (closest, furthest=None) -> str: the shipped template, filled;
- :func:`offline` (closest, furthest=None, embeddings=None) -> :class:`Judgment`;
- :func:`judge_clusters` (clusters, backend) -> :class:`JudgeResult` (judgments table + report),
  with the backends :class:`OfflineBackend` and :class:`OpenAIBackend`;
- :func:`judge_report`, :func:`low_value_filter`, :func:`parse_answer`;
- the stage: :class:`JudgeStage` (``fastcurate judge``) and :func:`judge_dir` (cluster output
  directory -> judged, filtered output directory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# `offline` is both a submodule and a function of it: the function must be bound here, after the
# submodule's import (which sets the package attribute `offline` to the module), so it is not lazy.
from .offline import (
    FEATURES,
    MINILM_BASELINE,
    OFFLINE_MODEL,
    Judgment,
    OfflineJudge,
    OfflineThresholds,
    minilm_encoder,
    offline,
)

if TYPE_CHECKING:
    from .examples import TEMPLATE_EXAMPLES, TemplateExample, template_examples
    from .judge import (
        FEATURES_TYPE,
        JUDGMENT_SCHEMA,
        ClusterRecord,
        JudgeResult,
        OfflineBackend,
        OpenAIBackend,
        judge_clusters,
        judge_report,
        low_value_filter,
    )
    from .junk import JUNK_RULES, is_junk, junk_flags
    from .parse import ANSWER_SCHEMA, ERROR, HIGH, LABELS, LOW, UNPARSED, ParsedAnswer, parse_answer
    from .stage import JudgeStage, judge_dir
    from .prompt import (
        DEFAULT_MAX_CHARS,
        DEFAULT_SAMPLES,
        TEMPLATE_PATH,
        escape_sample,
        load_template,
        prompt_sha256,
        render_prompt,
    )

# Names resolve on first use (PEP 562): importing this package (every `fastcurate` command does, to
# register `fastcurate judge`) must not import the judge's dependencies.
_LAZY = {
    "TEMPLATE_EXAMPLES": ".examples",
    "TemplateExample": ".examples",
    "template_examples": ".examples",
    "FEATURES_TYPE": ".judge",
    "JUDGMENT_SCHEMA": ".judge",
    "ClusterRecord": ".judge",
    "JudgeResult": ".judge",
    "OfflineBackend": ".judge",
    "OpenAIBackend": ".judge",
    "judge_clusters": ".judge",
    "judge_report": ".judge",
    "low_value_filter": ".judge",
    "JUNK_RULES": ".junk",
    "is_junk": ".junk",
    "junk_flags": ".junk",
    "ANSWER_SCHEMA": ".parse",
    "ERROR": ".parse",
    "HIGH": ".parse",
    "LABELS": ".parse",
    "LOW": ".parse",
    "UNPARSED": ".parse",
    "ParsedAnswer": ".parse",
    "parse_answer": ".parse",
    "JudgeStage": ".stage",
    "judge_dir": ".stage",
    "DEFAULT_MAX_CHARS": ".prompt",
    "DEFAULT_SAMPLES": ".prompt",
    "TEMPLATE_PATH": ".prompt",
    "escape_sample": ".prompt",
    "load_template": ".prompt",
    "prompt_sha256": ".prompt",
    "render_prompt": ".prompt",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "render_prompt", "escape_sample", "load_template", "prompt_sha256", "TEMPLATE_PATH", "DEFAULT_SAMPLES",
    "DEFAULT_MAX_CHARS", "parse_answer", "ParsedAnswer", "ANSWER_SCHEMA", "HIGH", "LOW", "LABELS", "UNPARSED",
    "ERROR", "offline", "OfflineJudge", "OfflineThresholds", "Judgment", "FEATURES", "MINILM_BASELINE",
    "OFFLINE_MODEL", "minilm_encoder", "junk_flags", "is_junk", "JUNK_RULES", "judge_clusters", "judge_report",
    "low_value_filter", "ClusterRecord", "JudgeResult", "OfflineBackend", "OpenAIBackend", "JUDGMENT_SCHEMA",
    "FEATURES_TYPE", "template_examples", "TemplateExample", "TEMPLATE_EXAMPLES", "JudgeStage", "judge_dir",
]
