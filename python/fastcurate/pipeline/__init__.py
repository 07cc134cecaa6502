"""Pipelines: an ordered list of stages described once in a TOML file, validated as a whole,
run (and resumed) step by step, each step's output directory being the next step's input
(docs/pipeline.md). ``fastcurate run pipeline.toml`` / :func:`run_pipeline`."""

from __future__ import annotations

from .options import Option, stage_options
from .run import StepPlan, format_plan, plan, run_pipeline
from .spec import Pipeline, PipelineError, Step, find_example, list_examples, load_pipeline

__all__ = ["run_pipeline", "load_pipeline", "plan", "format_plan", "Pipeline", "Step", "StepPlan", "PipelineError",
           "stage_options", "Option", "list_examples", "find_example"]
