"""The ``synthscope`` command line: the top-level parser, the run of a command and its errors.

The commands live in :mod:`synthscope.commands`, one module per group, each registering its parsers
and handlers; this module lists them in the order ``--help`` shows them. Before a handler runs, the
device is checked and torch's threads are chosen for the command's workload. Usage errors
(:class:`UsageError`, :class:`synthscope.errors.UserError` and missing or misplaced files) print one
line and exit with status 2; any other exception is a bug and keeps its traceback.

Nothing here or in the command modules imports torch at the top, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from synthscope import __version__
from synthscope.commands import audit, data, detect, generate, lab, report
from synthscope.commands.common import (UsageError, bounded, output_file, output_folder, positive_int,
                                        probability, seed_value)
from synthscope.commands.detect import SWEEP_NAMES

__all__ = ["EXIT_USAGE", "SWEEP_NAMES", "UsageError", "bounded", "build_parser", "main", "output_file",
           "output_folder", "positive_int", "probability", "run", "seed_value"]

EXIT_USAGE = 2

# The command groups, in the order --help lists them.
COMMAND_GROUPS = (generate, detect, audit, lab, report, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthscope",
        description="Synthetic images for responsible-AI work: generators, detectors, bias audits, reports.",
    )
    parser.add_argument("--version", action="version", version=f"synthscope {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def _workload(args: argparse.Namespace) -> str:
    """Whether a command runs the tiny built-in models (one thread is fastest) or a large network
    (CLIP, a ResNet, a diffusers pipeline: every usable CPU), judged without importing torch models.
    A command that may run a large network says so with its ``workload``; the others are tiny."""
    from synthscope.runtime import TINY

    workload = getattr(args, "workload", None)
    return TINY if workload is None else workload(args)


def run(args: argparse.Namespace) -> int:
    """Run a parsed command: check the device, choose the threads, call the command's handler."""
    from synthscope.runtime import choose_threads, resolve_device, use_threads

    progress = not getattr(args, "quiet", False)
    if getattr(args, "device", None):
        resolve_device(args.device)  # an absent device stops here, before anything is written
    if hasattr(args, "threads"):
        automatic = args.threads is None and not os.environ.get("OMP_NUM_THREADS", "").strip()
        use_threads(choose_threads(_workload(args), args.threads), automatic=automatic)
    args.handler(args, progress)
    return 0


def main(argv: list[str] | None = None) -> int:
    import warnings

    from synthscope.errors import UserError, show_warning_line

    if argv is None:  # a real command line (not a call from Python code or a test)
        warnings.showwarning = show_warning_line
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (UsageError, UserError, FileNotFoundError, NotADirectoryError, FileExistsError, IsADirectoryError) as error:
        # Problems with the user's input: one clear line, no traceback. Anything else (a ValueError
        # from deep inside a library included) is a bug and keeps its traceback.
        message = str(error).strip() or error.__class__.__name__
        print(f"synthscope: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("synthscope: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
