"""What every command module shares: argparse types, the options many commands take, the parser helpers
that tie a command to its handler, and :class:`UsageError`.

Torch-free at import (``--help`` imports this module); :func:`is_main_process` imports the distributed
helpers only when a command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

# A command's work: the parsed arguments and whether to show progress bars.
Handler = Callable[[argparse.Namespace, bool], None]
# Which thread count suits a command (synthscope.runtime.TINY or LARGE), judged from its arguments.
Workload = Callable[[argparse.Namespace], str]
# The subparsers that commands join (argparse names no public type for it).
Subcommands = argparse._SubParsersAction


class UsageError(Exception):
    """Bad usage of the command line: reported as one line, exit status 2 (see also
    :class:`synthscope.errors.UserError`, for bad input met while a command runs)."""


def bounded(convert: type, low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a number converted by ``convert`` and kept within [low, high]; anything
    else is bad usage (exit 2) with a message saying what was expected."""
    noun = "whole number" if convert is int else "number"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {noun}") from None
        if value < low or (high is not None and value > high):
            expected = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {expected}, got {value}")
        return value

    parse.__name__ = f"{noun} >= {low}" if high is None else f"{noun} in [{low}, {high}]"
    return parse


def output_file(text: str) -> Path:
    """An argparse type for a file to write: an existing folder there is bad usage, found before any work."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the path of a file to write")
    return path


def output_folder(text: str) -> Path:
    """An argparse type for a folder to write into: an existing file there is bad usage."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return path


positive_int = bounded(int, 1)
seed_value = bounded(int, 0, 2**63 - 1)  # what every random-number generator we seed accepts
probability = bounded(float, 0, 1)


def add_group(commands: Subcommands, name: str, help: str, description: str) -> Subcommands:
    """A command group (``synthscope NAME ACTION``): its parser, and the subparsers its actions join."""
    group = commands.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest="action", metavar="ACTION", required=True)


def add_command(commands: Subcommands, name: str, handler: Handler, help: str,
                workload: Workload | None = None) -> argparse.ArgumentParser:
    """A runnable command: its parser, which remembers the handler (and workload) that serve it. The
    handler's docstring is the command's description in --help (argparse folds its line breaks)."""
    parser = commands.add_parser(name, help=help, description=handler.__doc__)
    parser.set_defaults(handler=handler)
    if workload is not None:
        parser.set_defaults(workload=workload)
    return parser


def add_common(parser: argparse.ArgumentParser, device: bool = True, seed: bool = True) -> None:
    """--seed, --device, --quiet and --threads, as most commands take them."""
    if seed:
        parser.add_argument("--seed", type=seed_value, default=0, help="random seed (default: 0)")
    if device:
        parser.add_argument("--device", default="auto",
                            help="cpu, cuda, cuda:N, mps or auto (default: auto = best available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads for torch (default: 1 for the built-in models and small CNNs, which "
                             "run fastest that way; the usable CPUs for CLIP, ResNets and diffusers pipelines)")


def is_main_process() -> bool:
    """False on the other processes of a command launched as several (only the main one reports)."""
    from synthscope.distributed import current_shard, launched_processes

    return launched_processes() <= 1 or current_shard().is_main
