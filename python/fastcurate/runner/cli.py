"""The command-line flags every stage shares, and the one-line summary every stage prints.

A stage's CLI module adds its own flags after :func:`add_runner_args`, builds its stage from the
parsed arguments and hands it to :func:`run_from_args`; the flags for inputs, output, column roles,
error policy, threads and resume are therefore the same for every subcommand.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, Optional, Sequence

from ..io.columns import ROLE_CANDIDATES, ROLE_FLAGS

__all__ = ["add_runner_args", "run_from_args", "runner_kwargs", "engine_from_args", "format_summary", "positive_int",
           "nonneg_int", "fraction"]


def _int_at_least(s: str, low: int) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {s}")
    return v


def positive_int(s: str) -> int:
    return _int_at_least(s, 1)


def nonneg_int(s: str) -> int:
    return _int_at_least(s, 0)


def fraction(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not (0.0 < v <= 1.0):
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {s}")
    return v


_ROLE_HELP = {
    "id": "row id column",
    "text": "caption column",
    "image": "image column (bytes, {bytes, path} structs, or paths)",
    "url": "image URL column (the row id when there is no id column)",
    "width": "image width column (original size)",
    "height": "image height column (original size)",
}


def add_runner_args(p: argparse.ArgumentParser, roles: Sequence[str]) -> None:
    """Inputs, ``--out``, one flag per column role the stage reads (plus ``--id-column``) and the
    runner's options."""
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="shards (Parquet, WebDataset .tar, CSV/TSV, JSONL), directories (a stage's output "
                        "directory gives its part files) or globs")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory; a killed run resumes here, a finished one is not redone")
    g = p.add_argument_group("columns (default: the first present of the names shown)")
    for role in dict.fromkeys(["id", *roles]):
        g.add_argument(ROLE_FLAGS[role], dest=f"col_{role}", default=None, metavar="NAME",
                       help=f"{_ROLE_HELP[role]} (default: {', '.join(ROLE_CANDIDATES[role])})")
    r = p.add_argument_group("run")
    r.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="an unreadable shard or one missing a column: stop (fail, the default) or skip it and "
                        "record it in stats.json (skip)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace a finished run of other inputs or options found in --out")
    r.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads for the kernels (default: all cores); results do not depend on it")
    r.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="rows per batch and per output row group (default: the stage's; 65536 for text stages)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    e = p.add_argument_group("engine (docs/scale.md)")
    e.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where the per-shard work runs: here, shard after shard (local, the default), or in Ray "
                        "workers (ray; pip install 'fastcurate[ray]'). Same output bytes; a killed run resumes "
                        "under either")
    e.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --engine ray: the cluster to join (host:port of its head, ray://host:port, auto); "
                        "default: RAY_ADDRESS, else a new local Ray on this machine's cores")
    e.add_argument("--ray-cpus-per-worker", type=float, default=1.0, metavar="N",
                   help="CPUs each Ray worker reserves (and kernel threads it uses unless --threads); default 1")
    e.add_argument("--ray-gpus-per-worker", type=float, default=None, metavar="N",
                   help="GPUs each Ray worker reserves (default: 1 for a model stage when the cluster has GPUs, "
                        "else 0)")
    e.add_argument("--ray-workers", type=positive_int, default=None, metavar="N",
                   help="at most N Ray workers (default: as many as the cluster's CPUs, or GPUs, allow)")


def runner_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    cols = {k[4:]: v for k, v in vars(args).items() if k.startswith("col_")}
    return {"columns": cols, "on_error": args.on_error, "overwrite": args.overwrite, "threads": args.threads,
            "batch_size": args.batch_size, "progress": not args.no_progress, "engine": engine_from_args(args)}


def engine_from_args(args: argparse.Namespace) -> Any:
    """``"local"``, or a RayExecutor built from the ``--ray-*`` flags (ray itself is imported only
    when the run starts)."""
    from ..errors import InputError

    ray_flags = [f for f, v in (("--ray-address", args.ray_address), ("--ray-gpus-per-worker", args.ray_gpus_per_worker),
                                ("--ray-workers", args.ray_workers)) if v is not None]
    if args.ray_cpus_per_worker != 1.0:
        ray_flags.append("--ray-cpus-per-worker")
    if args.engine == "local":
        if ray_flags:
            raise InputError(f"{', '.join(ray_flags)} given but the engine is local: add --engine ray")
        return "local"
    from .ray import RayExecutor

    return RayExecutor(args.ray_address, cpus_per_worker=args.ray_cpus_per_worker,
                       gpus_per_worker=args.ray_gpus_per_worker, workers=args.ray_workers)


def format_summary(stats: Dict[str, Any], out: str) -> str:
    """``STAGE: N rows in -> K kept (x%) in DIR`` and the non-zero drop reasons."""
    rin = stats["rows_in"]
    kept = stats["rows_kept"]
    lines = [f"{stats['stage']}: {rin:,} rows in -> {kept:,} kept ({100.0 * kept / max(rin, 1):.1f}%) in {out}/"]
    drops = [f"{k} {v:,}" for k, v in stats["rows_dropped"].items() if v]
    if drops:
        lines.append("dropped: " + ", ".join(drops) + f" (rows listed in {out}/drops/)")
    if stats.get("bad_shards"):
        lines.append(f"bad shards skipped: {len(stats['bad_shards'])} (see stats.json)")
    return "\n".join(lines)


def run_from_args(args: argparse.Namespace, stage: Any,
                  describe: Optional[Callable[[Dict[str, Any]], Sequence[str]]] = None) -> int:
    """Run ``stage`` with the shared flags of ``args``; print the summary; exit status 0."""
    from .local import run_stage

    stats = run_stage(stage, args.inputs, args.out, **runner_kwargs(args))
    print(format_summary(stats, args.out))
    if describe is not None:
        for line in describe(stats.get(stats["stage"], {}) or {}):
            print(line)
    sys.stdout.flush()
    return 0
