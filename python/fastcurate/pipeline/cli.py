"""``fastcurate run``: a whole pipeline from a TOML file (docs/pipeline.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a pipeline of stages described in a TOML file (validate, plan, run, resume)",
        description="Run the stages of PIPELINE (a TOML file, or the name of a shipped example) one after another, "
        "each step's output directory being the next step's input, in one run directory (01-curate/, 02-embed/, "
        "...). The whole file is validated first and every problem is reported with its line. Rerunning resumes: "
        "finished steps are skipped, an unfinished one resumes at its first unfinished shard, a step whose options "
        "changed reruns with every step after it. See docs/pipeline.md.",
    )
    p.add_argument("pipeline", nargs="?", metavar="PIPELINE", help="pipeline file (.toml) or shipped example name")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and print the plan (steps, inputs, outputs, options with their defaults, status, "
                        "expected sizes); run nothing")
    p.add_argument("--from", dest="from_step", metavar="STEP", default=None,
                   help="rerun from STEP (its number, directory name, id or stage name) and every step after it")
    p.add_argument("--engine", choices=("local", "ray"), default=None,
                   help="run every step on this engine (default: each step's engine, else local)")
    p.add_argument("--input", nargs="+", default=None, metavar="PATH", help="replace the pipeline's input")
    p.add_argument("--out", default=None, metavar="DIR", help="replace the pipeline's run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--examples", action="store_true", help="list the shipped example pipelines and exit")
    p.add_argument("--stages", action="store_true", help="list every stage's pipeline options and exit")
    p.set_defaults(func=_run)


def _print_stages() -> None:
    from ..stages import STAGES, stage_class
    from .options import RESERVED_KEYS, RUNNER_OPTIONS, stage_options

    print("Every [[stage]] table takes:")
    for k, v in RESERVED_KEYS.items():
        print(f"  {k}: {v}")
    for k, (t, d) in RUNNER_OPTIONS.items():
        print(f"  {k} ({t}): {d}")
    for name in sorted(STAGES):
        try:
            cls = stage_class(name)
        except Exception as e:  # a missing optional dependency
            print(f"\nstage = \"{name}\": unavailable ({e})")
            continue
        print(f"\nstage = \"{name}\": {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}")
        for o in stage_options(cls).values():
            d = "required" if o.required else f"default {o.default!r}"
            print(f"  {o.name} ({o.type}, {d})" + (f": {o.doc}" if o.doc else ""))
        cons, prod = getattr(cls, "consumes", ()), getattr(cls, "produces", ())
        if cons or prod:
            print(f"  reads {', '.join(cons) or '-'}; adds {', '.join(prod) or '-'}")


def _run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from .spec import list_examples

    if args.examples:
        for name, what in list_examples().items():
            print(f"{name}: {what}")
        return 0
    if args.stages:
        _print_stages()
        return 0
    if not args.pipeline:
        raise InputError("name a pipeline file (or a shipped example: fastcurate run --examples)")
    from .run import run_pipeline

    run_pipeline(args.pipeline, dry_run=args.dry_run, from_step=args.from_step, engine=args.engine,
                 input=args.input, out=args.out, progress=not args.no_progress)
    sys.stdout.flush()
    return 0
