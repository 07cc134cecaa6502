"""The pipeline stages. Each folder holds one stage: ``stage.py`` (its logic, on the contract of
:mod:`fastcurate.runner.stage`) and ``cli.py`` (its subcommand). This registry is what the CLI,
the pipeline file and the contract tests iterate over: a new stage is added here once."""

from __future__ import annotations

import importlib
from typing import Dict, List, Type

__all__ = ["STAGES", "CLI_MODULES", "stage_class"]

# stage name -> "module:Class"
STAGES: Dict[str, str] = {
    "curate": "fastcurate.stages.curate.stage:CurateStage",
    "match": "fastcurate.stages.match.stage:MatchStage",
    "embed": "fastcurate.stages.embed.stage:EmbedStage",
    "filter": "fastcurate.stages.filter.stage:FilterStage",
    "dedup": "fastcurate.stages.dedup.stage:DedupStage",
    "cluster": "fastcurate.stages.cluster.stage:ClusterStage",
    "semdedup": "fastcurate.stages.semdedup.stage:SemDedupStage",
    "judge": "fastcurate.stages.judge.stage:JudgeStage",
    "group": "fastcurate.stages.group.stage:GroupStage",
    "annotate": "fastcurate.stages.annotate.stage:AnnotateStage",
    "pairs": "fastcurate.stages.pairs.stage:PairsStage",
    "instruct": "fastcurate.stages.instruct.stage:InstructStage",
}

# modules with a ``register(subparsers)`` function, in the order of the CLI's help
CLI_MODULES: List[str] = [
    "fastcurate.stages.curate.cli",
    "fastcurate.stages.match.cli",
    "fastcurate.stages.filter.cli",
    "fastcurate.stages.embed.cli",
    "fastcurate.stages.dedup.cli",
    "fastcurate.stages.cluster.cli",
    "fastcurate.stages.semdedup.cli",
    "fastcurate.stages.judge.cli",
    "fastcurate.stages.cluster.noise_cli",  # a study over a clean set, not a per-row stage
    "fastcurate.stages.group.cli",
    "fastcurate.stages.annotate.cli",
    "fastcurate.stages.pairs.cli",
    "fastcurate.stages.instruct.cli",
]


def stage_class(name: str) -> Type:
    """The stage class registered under ``name``."""
    from ..errors import InputError

    if name not in STAGES:
        raise InputError(f"unknown stage {name!r}; the stages are {sorted(STAGES)}")
    mod, cls = STAGES[name].split(":")
    return getattr(importlib.import_module(mod), cls)
