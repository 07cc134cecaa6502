"""The stage contract (:mod:`.stage`) and the runners that execute it (:mod:`.local`; Ray later).
Stages import only the contract, never a runner."""

from .local import run_stage
from .stage import RUNNER_REASONS, Batch, Context, MissingDependencyError, Result, Stage

__all__ = ["Stage", "Batch", "Result", "Context", "RUNNER_REASONS", "MissingDependencyError", "run_stage"]
