"""After training: quality scores and lecture visuals for one run, written into its folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from synthscope.fingerprint import Reuse, fingerprint
from synthscope.grouped import GroupedProportions
from synthscope.runtime import atomic_write_bytes, atomic_write_json

from .imageset import ImageSet
from .training import TrainingRun

QUALITY_FILE = "quality.json"
ADHERENCE_FILE = "prompt_adherence.csv"
JUDGE_DIR = "judge"
JUDGE_RECORD = "trained_on.json"  # beside a judge: the data and seed it was trained with
JUDGE_LOCK = ".trained_on.lock"  # held while a judge is looked up or trained
JUDGE_FORMAT = 1  # bumped when judges change meaning, so that older ones are trained again
VISUALS_DIR = "visuals"


@dataclass
class RunEvaluation:
    """Quality numbers and visual files of one trained generator (what a report section shows)."""

    run_dir: Path
    kind: str
    quality: dict[str, Any]
    adherence: GroupedProportions | None
    visuals: dict[str, Path] = field(default_factory=dict)
    name: str = ""
    title: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or Path(self.run_dir).name

    @classmethod
    def load(cls, run_dir: Path, name: str = "", title: str = "", description: str = "") -> "RunEvaluation":
        """Read back what evaluate_run wrote into a run folder."""
        from synthscope.runtime import read_json

        run_dir = Path(run_dir)
        quality = read_json(run_dir / QUALITY_FILE)
        config = read_json(run_dir / "config.json")
        adherence = read_adherence(run_dir / ADHERENCE_FILE) if (run_dir / ADHERENCE_FILE).exists() else None
        visuals = {p.stem: p for p in sorted((run_dir / VISUALS_DIR).glob("*.png"))}
        return cls(run_dir, config["model"]["kind"], quality, adherence, visuals, name, title, description)


def read_adherence(path: Path) -> GroupedProportions:
    """The prompt adherence a run folder holds, whichever layout wrote it (see
    :func:`adherence_counts`)."""
    from .quality import adherence_table

    # Read as text: the grouped result gives each column its declared type (values such as "0" stay text).
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return adherence_table(adherence_counts(frame))


def adherence_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Adherence counts, one row per requested value, from a table in either layout. Run folders
    written before adherence was a grouped result hold one long table with a ``level`` column:
    its "value" rows are the groups (with the judge's accuracy and recall); its "attribute" rows are
    their pooled sums, which the grouped result computes itself, so they are dropped."""
    if "level" not in frame.columns:
        return frame
    return frame[frame["level"] == "value"].drop(columns="level").reset_index(drop=True)


def judge_for(folder: Path, train: ImageSet | Callable[[], ImageSet], seed: int = 0,
              drawn_from: dict[str, Any] | None = None):
    """The feature classifier that judges generators of ``train``'s kind, trained once on the real
    training images and kept in ``folder`` (reused only if it was trained on the same pixels with
    the same seed).

    ``drawn_from``: for images drawn deterministically (the audit probe's portraits), what they are
    drawn from, including a hash of a few drawn the same way, which any change to the drawing shows
    in. A judge recorded with the same is reused without drawing its images: ``train`` may then be a
    function that draws them, called only when a judge must be trained."""
    from synthscope.registry import load_judge

    from .quality import train_feature_classifier
    from .training import data_fingerprint

    if drawn_from is None and callable(train):
        train = train()
    reuse = Reuse(folder, JUDGE_RECORD)
    made_from = fingerprint({"format": JUDGE_FORMAT, "seed": seed, **(
        {"drawn_from": drawn_from} if drawn_from is not None else {"data_sha256": data_fingerprint(train)})})
    Path(folder).mkdir(parents=True, exist_ok=True)
    # Runs in two processes (the lab's) may share a judge: one trains it, the other waits, then reads it.
    with FileLock(Path(folder) / JUDGE_LOCK):
        if reuse.matches(made_from):
            try:
                return load_judge(folder)
            except (ValueError, OSError):
                pass  # an unreadable judge is trained again, not trusted
        reuse.forget()
        train = train() if callable(train) else train
        judge = train_feature_classifier(train, seed=seed)
        judge.save(folder)
        reuse.record(made_from, n_images=len(train), seed=seed)
    return judge


def evaluate_run(run: TrainingRun, train: ImageSet, heldout: ImageSet, seed: int = 0,
                 n_samples: int = 1000, judge_dir: Path | None = None, score: bool = True) -> RunEvaluation:
    """Score a trained run against held-out real images and draw its lecture visuals.

    ``score=False`` draws the visuals only (for lecture models whose samples are not the point,
    e.g. a colourising autoencoder)."""
    from . import visuals
    from .quality import evaluate_quality, prompt_adherence

    model, run_dir = run.model, Path(run.run_dir)
    n = min(n_samples, len(heldout))
    adherence = None
    judge = None
    if score and train.vocabulary is not None:
        judge = judge_for(judge_dir or run_dir / JUDGE_DIR, train, seed)
    if judge is None:
        generated = None
    elif model.conditional:
        prompts = model.vocabulary.balanced_prompts(n, seed=seed)
        generated = model.sample(n, prompt=prompts, seed=seed + 1)
        adherence = prompt_adherence(judge, generated, [model.vocabulary.parse(p) for p in prompts])
        atomic_write_bytes(run_dir / ADHERENCE_FILE, adherence.to_csv().encode())
    else:
        generated = model.sample(n, seed=seed + 1)
    quality: dict[str, Any] = {}
    if judge is not None:
        report = evaluate_quality(judge, heldout, train, generated, seed=seed)
        quality = report.to_dict()
        quality["summary"] = report.summary()
    quality["step"] = run.step
    quality["train_seconds"] = round(run.seconds, 1)
    quality["evaluation"] = {"seed": seed, "n_samples": n_samples, "scored": judge is not None}

    out = run_dir / VISUALS_DIR
    figures = lecture_figures(model, run, train, seed)
    paths = {name: visuals.save_figure(figure, out / f"{name}.png") for name, figure in figures.items()}
    # Written last: its presence marks a finished evaluation (figures included).
    atomic_write_json(run_dir / QUALITY_FILE, quality)
    return RunEvaluation(run_dir, model.kind, quality, adherence, paths)


def lecture_figures(model, run: TrainingRun, data: ImageSet, seed: int = 0) -> dict[str, Any]:
    """The lecture visuals that fit this model kind, by file stem."""
    from . import visuals

    figures: dict[str, Any] = {}
    if len(run.history):
        figures["loss_curve"] = visuals.loss_curve_figure(run.history)
    if (Path(run.run_dir) / "snapshots").is_dir():
        figures["training_progress"] = visuals.training_progress_figure(
            run.run_dir, column_attribute=next(iter(model.vocabulary.attributes)) if model.conditional else None)
    prompts = None
    if model.conditional:  # one row per value of the first attribute
        values = next(iter(model.vocabulary.attributes.values()))
        per_value = max(1, 64 // len(values))
        prompts = [value for value in values for _ in range(per_value)]
    figures["samples"] = visuals.prior_samples_figure(model, n=len(prompts) if prompts else 64, seed=seed,
                                                      prompt=prompts, nrow=per_value if prompts else 8)
    examples = data.images[:10]
    if model.kind in ("ae", "vae"):
        label = {"ae": "autoencoder", "vae": "VAE"}[model.kind]
        figures["reconstructions"] = visuals.reconstruction_figure(
            examples, {f"{label}, {model.options['latent_dim']}-D latent": model})
        if data.vocabulary is not None:
            first = data.vocabulary.names[0]
            figures["latent_scatter"] = visuals.latent_scatter(model, data.images, list(data.attributes[first]))
    if model.kind == "vae":
        figures["interpolation"] = visuals.interpolation_figure(
            model, [(data.images[i], data.images[i + 1]) for i in range(0, 6, 2)])
    if model.kind == "diffusion":
        steps = model.scheduler.config.num_train_timesteps
        timesteps = sorted({int(round(f * (steps - 1))) for f in (0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)})
        figures["forward_noising"] = visuals.forward_noising_figure(model, examples[:4], timesteps=timesteps,
                                                                    seed=seed)
        figures["reverse_strip"] = visuals.reverse_strip_figure(
            model, n=4, prompt=prompts[:: max(1, len(prompts) // 4)][:4] if prompts else None, seed=seed)
    return figures
