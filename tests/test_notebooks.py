"""The lecture notebooks (notebooks/*.ipynb) run top to bottom, and each matches its plain-text source.

Each notebook is executed in a fresh kernel with its working directory in notebooks/ and one torch
thread (OMP_NUM_THREADS=1). As papermill does, a cell tagged ``injected-parameters`` is inserted
after the cell tagged ``parameters``: the quick sizes below (every notebook needs an entry; the
whole file should take about two and a half minutes), and a temporary ``WORK_DIR`` so that nothing is written into the repository. A cell that raises fails the test with
nbclient's CellExecutionError, which shows the cell and the traceback. The full-size run of every
notebook is the slow test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
IDS = [path.stem for path in NOTEBOOKS]

# Quick sizes per notebook: enough steps for every cell to have something to show.
QUICK: dict[str, dict[str, object]] = {
    "01_autoencoders": {"STEPS_2D": 40, "STEPS_5D": 40, "STEPS_DENOISE": 40, "STEPS_COLOUR": 5,
                        "N_PORTRAITS": 200},
    "02_vaes": {"STEPS": 60, "STEPS_BETA": 40},
    "03_gans": {"STEPS": 40, "STEPS_CONDITIONAL": 30},
    "04_diffusion": {"STEPS": 20, "SAMPLE_STEPS": 10, "N_PER_DIGIT": 4, "JUDGE_SAMPLES": 40},
    "05_image_to_image": {"STEPS_PIX2PIX": 20, "STEPS_CYCLEGAN": 10, "PEOPLE": 60, "SHOWN": 4},
    "06_detecting_ai_images": {"GENERATOR_STEPS": 30, "N_FAKE": 120, "N_REAL": 360, "EPOCHS": 2,
                               "N_BOOT": 20},
    "07_bias_in_generated_images": {"TRAIN_STEPS": 20, "IMAGES_PER_PROMPT": 3, "SAMPLE_STEPS": 5,
                                    "PROBE_TRAIN": 300, "N_TO_LABEL": 6},
}
FULL_TIMEOUT = 600  # seconds per cell at full size (a notebook should take at most about 3 minutes)
QUICK_TIMEOUT = 120
MIN_PICTURES = 3  # figures every notebook shows, whatever its sizes


def parameters_index(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


def inject_parameters(nb: nbformat.NotebookNode, parameters: dict[str, object]) -> None:
    """Insert, after the ``parameters`` cell, a cell that overrides them (papermill's convention)."""
    source = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(parameters_index(nb) + 1, cell)


@dataclass
class Run:
    """What a student would see of one run: the cells that did not run or show an error, how many
    pictures were drawn, the files written into WORK_DIR, and the seconds it took."""

    unrun: list[int]
    errors: list[int]
    pictures: int
    written: list[Path]
    seconds: float


def execute(path: Path, parameters: dict[str, object], work: Path, timeout: int) -> Run:
    """Run the notebook top to bottom with ``parameters`` and ``WORK_DIR`` = ``work``."""
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, {**parameters, "WORK_DIR": str(work)})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    began = time.perf_counter()
    client.execute()  # raises CellExecutionError (the cell and its traceback) when a cell fails
    seconds = time.perf_counter() - began
    code = [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    outputs = [output for _, cell in code for output in cell.get("outputs", [])]
    return Run(unrun=[i for i, cell in code if not cell.get("execution_count")],
               errors=[i for i, cell in code if any(o.get("output_type") == "error" for o in cell.get("outputs", []))],
               pictures=sum("image/png" in o.get("data", {}) for o in outputs),
               written=[p for p in work.rglob("*") if p.is_file()], seconds=seconds)


@pytest.fixture
def one_thread(monkeypatch):
    """The kernel inherits this environment: one torch thread (the machine may be shared)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_notebooks_found():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_has_quick_parameters(path):
    nb = nbformat.read(path, as_version=4)
    source = nb.cells[parameters_index(nb)].source
    assert "WORK_DIR" in source, f"{path.name}: the parameters cell must define WORK_DIR"
    assert path.stem in QUICK, f"{path.name}: give it quick parameters in QUICK (tests/test_notebooks.py)"
    missing = [name for name in QUICK[path.stem] if f"{name} =" not in source]
    assert not missing, f"{path.name}: quick parameters {missing} are not in its parameters cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_matches_its_source(path):
    """The .ipynb holds the same cells as the .py it is built from (jupytext --to ipynb), without outputs."""
    source = path.with_suffix(".py")
    assert source.is_file(), f"{path.name} has no plain-text source {source.name}"
    built, text = jupytext.read(path), jupytext.read(source)
    assert [(c.cell_type, c.source) for c in built.cells] == [(c.cell_type, c.source) for c in text.cells], (
        f"{path.name} differs from {source.name}; rebuild it: jupytext --to ipynb {source}")
    assert [c.get("metadata", {}).get("tags", []) for c in built.cells] == \
        [c.get("metadata", {}).get("tags", []) for c in text.cells]
    stored = nbformat.read(path, as_version=4)
    with_outputs = [i for i, c in enumerate(stored.cells)
                    if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not with_outputs, f"{path.name}: cells {with_outputs} hold outputs; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_quick(path, tmp_path, one_thread):
    run = execute(path, QUICK.get(path.stem, {}), tmp_path / "work", QUICK_TIMEOUT)
    print(f"{path.name}: {run.seconds:.1f} s with quick parameters")
    assert not run.unrun and not run.errors, (run.unrun, run.errors)
    assert run.pictures >= MIN_PICTURES and run.written, (run.pictures, len(run.written))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_full(path, tmp_path, one_thread):
    run = execute(path, {}, tmp_path / "work", FULL_TIMEOUT)
    print(f"{path.name}: {run.seconds:.1f} s at full size")
    assert not run.unrun and not run.errors, (run.unrun, run.errors)
    assert run.pictures >= MIN_PICTURES and run.written, (run.pictures, len(run.written))


def test_start_notebook_seeds_styles_and_names_the_work_folder(tmp_path):
    import matplotlib.pyplot as plt
    import torch

    from synthscope.generators.visuals import style_rc
    from synthscope.notebook import start_notebook

    work = start_notebook(seed=3, work_dir=tmp_path / "work")
    first = torch.rand(3)
    assert start_notebook(seed=3, work_dir=str(tmp_path / "work")) == work == tmp_path / "work"
    assert torch.equal(first, torch.rand(3))  # seeded again: the same draws
    assert not work.exists()  # training calls make their own folders
    for key, value in style_rc().items():
        assert plt.rcParams[key] == value, key
