"""``synthscope report DIR``: re-render a report folder's index.html from its saved data."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthscope.commands.common import Subcommands, add_command


def register(commands: Subcommands) -> None:
    report = add_command(commands, "report", handler,
                         help="re-render a report folder's index.html from its saved data")
    report.add_argument("dir", type=Path, help="a folder written by lab (or another command with a report)")


def handler(args: argparse.Namespace, progress: bool) -> None:
    """Rebuild DIR/index.html from DIR/report.json and the CSV/PNG files beside it."""
    from synthscope.reports import rerender

    print(f"report -> {rerender(args.dir)}")
