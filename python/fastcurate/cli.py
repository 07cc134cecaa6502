"""The ``fastcurate`` command-line tool: one ``main`` for every subcommand.

Each stage's ``cli.py`` registers its subcommand (fastcurate.stages.CLI_MODULES); heavy imports
happen inside the subcommand that needs them, so the tool starts fast. Exit status: 0 success,
1 a :class:`~fastcurate.errors.FastcurateError` (its message says what to fix), 2 a usage error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from .errors import FastcurateError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .stages import CLI_MODULES

    parser = argparse.ArgumentParser(
        prog="fastcurate",
        description="Fast, exact curation of image-text pools into CLIP training sets. Every stage reads "
        "shards (or the previous stage's output directory), writes the kept rows, records every dropped row "
        "with its reason, and resumes where a killed run stopped.",
    )
    parser.add_argument("--version", action="version", version=f"fastcurate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in list(CLI_MODULES) + ["fastcurate.pipeline.cli", "fastcurate.report.cli"]:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit 2 here
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except FastcurateError as e:
        print(f"fastcurate {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fastcurate: interrupted (rerun the same command to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
