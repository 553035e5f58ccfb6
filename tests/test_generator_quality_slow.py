"""Brief real training runs: each generator must beat the noise reference by a wide margin.

Marked slow (minutes in total): run with ``python -m pytest -m slow``.
"""

import math

import pytest
from synthscope.generators.workflow import train_run

pytestmark = pytest.mark.slow

STEPS = {"ae": 600, "vae": 1500, "gan": 1200, "diffusion": 700}


def log_position(quality):
    """Where FD lies between real-vs-real (0) and noise (1) on a log scale."""
    return math.log(quality["fd"] / quality["fd_real_vs_real"]) / math.log(quality["fd_noise"] / quality["fd_real_vs_real"])


@pytest.mark.parametrize("kind", list(STEPS))
def test_generator_is_far_closer_to_real_than_noise(kind, tmp_path):
    evaluation = train_run(kind, "digits", tmp_path / kind, steps=STEPS[kind], progress=False, eval_samples=500)
    q = evaluation.quality
    assert q["fd"] < q["fd_noise"] / 10, q["summary"]
    assert log_position(q) < 0.6, q["summary"]
    assert q["prdc"]["precision"] > 0.3, q["summary"]


def test_conditional_diffusion_follows_the_digit_prompt(tmp_path):
    evaluation = train_run("diffusion", "digits", tmp_path / "cond", conditional=True, steps=900,
                           progress=False, eval_samples=300)
    overall = evaluation.adherence.overall(["requested"]).by_group.iloc[0]
    # Chance is 10 %: the lower end of the Wilson interval must be far above it.
    assert overall["adherence_ci_low"] > 0.5, evaluation.adherence.by_group
