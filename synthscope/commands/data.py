"""``synthscope data export``: the built-in data sets (digits, portraits) written as corpora."""

from __future__ import annotations

import argparse

from synthscope.commands.common import (Subcommands, add_command, add_common, add_group, is_main_process,
                                        output_folder, positive_int)


def register(commands: Subcommands) -> None:
    actions = add_group(commands, "data", help="built-in data sets",
                        description="Work with the built-in data sets (no downloads).")
    export = add_command(actions, "export", export_handler, help="write built-in real images as a corpus")
    export.add_argument("dataset", choices=["digits", "portraits"])
    export.add_argument("--n", type=positive_int, help="number of images (digits: at most 1797; default: all / 4000)")
    export.add_argument("--size", type=positive_int, help="image size in px")
    export.add_argument("--out", required=True, type=output_folder, help="corpus folder")
    export.add_argument("--force", action="store_true", help="replace a corpus made differently instead of refusing")
    add_common(export, device=False)


def export_handler(args: argparse.Namespace, progress: bool) -> None:
    """Write digits or portraits as a corpus: the 'real' side for detectors and audits."""
    from synthscope.generators import workflow

    out = workflow.export_builtin(args.dataset, args.out, n=args.n, seed=args.seed, size=args.size,
                                  progress=progress, force=args.force)
    if is_main_process():
        print(f"corpus -> {out}")
