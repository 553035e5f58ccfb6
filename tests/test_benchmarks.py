"""The benchmark scripts: each explains itself with --help (their runs are measurements, not tests)."""

import ast
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(path for path in BENCHMARKS.glob("*.py") if path.name != "timing.py")  # timing: shared code


def test_every_benchmark_is_listed():
    assert len(SCRIPTS) >= 10 and (BENCHMARKS / "lab_time.py") in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_each_benchmark_explains_itself_with_help(script, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/NAME.py` finds timing.py
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(script), run_name="__main__")
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    # the docstring's whole first paragraph, what the benchmark measures, not only its first line
    first_paragraph = ast.get_docstring(ast.parse(script.read_text()), clean=False).split("\n\n")[0]
    assert " ".join(first_paragraph.split()) in shown
    assert "usage:" in shown
