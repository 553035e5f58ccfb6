"""What every lecture notebook does before its first lesson: one call sets torch's threads (one per
free core), seeds every random generator, gives figures the package's style, and names the folder
where the notebook's models and corpora go.

    from synthscope.notebook import start_notebook
    WORK = start_notebook(seed=SEED, work_dir=WORK_DIR)
"""

from __future__ import annotations

import warnings
from pathlib import Path

from synthscope.runtime import choose_threads, seed_everything, use_threads


def start_notebook(seed: int = 0, work_dir: str | Path = "lab-work") -> Path:
    """Threads, seeds and figure style for a notebook; returns ``work_dir`` as a path (not created:
    each training call makes its own folder)."""
    import matplotlib.pyplot as plt

    from synthscope.generators.visuals import style_rc

    # Without ipywidgets, tqdm warns once and prints text progress bars, which are enough here.
    warnings.filterwarnings("ignore", message="IProgress not found")
    use_threads(choose_threads(), automatic=True)  # one thread per free core
    seed_everything(seed)
    plt.rcParams.update(style_rc())
    return Path(work_dir)
