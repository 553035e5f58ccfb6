"""The command line's structure: every command registered with a handler, kinds named by the registry,
and --help everywhere answered without importing torch or diffusers."""

import argparse
import json
import subprocess
import sys

from synthscope.cli import build_parser
from synthscope.registry import kind_names


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every command path of the parser, the top level (``()``) included, with its parser."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_paths(sub, (*prefix, name))


def runnable(parser: argparse.ArgumentParser) -> bool:
    return not any(isinstance(action, argparse._SubParsersAction) for action in parser._actions)


# One subprocess for all of them: `python -m synthscope --help`, then --help of every command path.
HELP_EVERYWHERE = r"""
import contextlib, io, json, runpy, sys
sys.path.insert(0, sys.argv[1])
from test_cli_commands import command_paths
from synthscope.cli import build_parser, main

codes, shown = {}, io.StringIO()
sys.argv = ["synthscope", "--help"]
with contextlib.redirect_stdout(shown):
    try:
        runpy.run_module("synthscope", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        codes["python -m synthscope --help"] = exit.code
    for path, _ in command_paths(build_parser()):
        try:
            main([*path, "--help"])
        except SystemExit as exit:
            codes[" ".join(path)] = exit.code
print(json.dumps({"codes": codes, "heavy": [name for name in ("torch", "diffusers") if name in sys.modules],
                  "text": shown.getvalue()}))
"""


def test_help_everywhere_imports_neither_torch_nor_diffusers():
    from pathlib import Path

    result = subprocess.run([sys.executable, "-c", HELP_EVERYWHERE, str(Path(__file__).parent)],
                            capture_output=True, text=True, check=True)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    paths = {" ".join(path) for path, _ in command_paths(build_parser())}
    assert set(found["codes"]) == paths | {"python -m synthscope --help"}
    assert {"generate train", "detect scan", "audit import-labels", "lab", "report", "data export"} <= paths
    assert set(found["codes"].values()) == {0}
    assert found["heavy"] == []
    # argparse expands %% in an option's help, never in a description (where a lone % is written)
    assert "%%" not in found["text"]


def test_every_command_has_a_handler():
    for path, parser in command_paths(build_parser()):
        if runnable(parser):
            assert callable(parser.get_default("handler")), path


def test_kind_choices_come_from_the_registry():
    from synthscope.commands.detect import TRAINERS

    choices = {" ".join(path): {action.dest: action.choices for action in parser._actions}
               for path, parser in command_paths(build_parser())}
    assert choices["generate train"]["model"] == sorted(kind_names("generator"))
    assert choices["detect train"]["kind"] == kind_names("detector") == list(TRAINERS)
