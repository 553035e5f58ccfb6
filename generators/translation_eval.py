"""How well a translation model translates, measured on held-out subjects whose true target is known.

* **Distance to the truth**: per-pixel L1 of each output to its true target, against the identity
  baseline (the input's own L1 to the target: a model that changes nothing), and the quality judge's
  Fréchet distance of the outputs to the true targets (the inputs' as the baseline). For CycleGAN also
  the round trip A -> B -> A, in L1 to the input, and the way back on its own: the true targets
  translated B -> A (e.g. de-ageing), in L1 to the true inputs.
* **Did it translate?** The share of outputs the judge reads with the target value of the changed
  attribute (e.g. perceived as older), with its Wilson interval, beside the same share for the inputs
  (what changing nothing scores) and for the true targets (the judge's own ceiling). L1 to one true
  target rewards a blurred average of what ageing might draw; this asks whether the change was made.
* **Attribute preservation**: does ageing keep the perceived gender presentation, skin tone and
  profession? The judge (trained on the run's real portraits) reads each input and its output; per
  attribute, the share of images whose reading is unchanged with its Wilson interval, and the
  confusion of what changed (input reading -> output reading counts). The judge's own held-out
  accuracy is carried beside each share: a preservation rate cannot be read more precisely than the
  judge reads the attribute. ``truth_preserved`` is the same share for the true targets (which keep
  every attribute by construction): the ceiling the judge's own noise leaves a perfect model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthscope.errors import UserError
from synthscope.grouped import Column, GroupedCrossCounts, GroupedProportions, Schema
from synthscope.runtime import atomic_write_bytes, atomic_write_json

from .base import TRANSLATION_SNAPSHOTS
from .pairs import parse_translation

RESULT_FILE = "translation.json"
PRESERVATION_FILE = "attribute_preservation.csv"
CHANGES_FILE = "attribute_changes.csv"
GRID_PEOPLE = 8  # held-out people shown in the lecture grids

PRESERVATION_KEYS = Schema((Column("attribute", "text", "the attribute the judge reads on input and output"),))
PRESERVATION_CARRIED = Schema((
    Column("judge_accuracy", "float", "accuracy of the attribute's head on real held-out images"),
    Column("truth_preserved", "float", "the same share for the true targets: what judge noise leaves a "
                                       "perfect model"),
))
CHANGE_CATEGORIES = ("input_value", "output_value")
REACHED_KEYS = Schema((Column("images", "text", "which images the judge read: outputs, inputs or true targets"),))


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference per pixel and channel, images in [0, 1]."""
    return float((a.float() - b.float()).abs().mean())


@dataclass
class TranslationEvaluation:
    """What :func:`evaluate_translation` measured on ``n`` held-out subjects."""

    kind: str
    n: int
    l1: float | None
    l1_identity: float | None
    round_trip_l1: float | None = None
    backward_l1: float | None = None
    frechet: float | None = None
    frechet_identity: float | None = None
    preservation: GroupedProportions | None = None
    changes: GroupedCrossCounts | None = None
    judge_accuracy: dict[str, float] = field(default_factory=dict)
    translation: str | None = None
    reached: GroupedProportions | None = None  # share read with the target value: outputs, inputs, truth

    def to_dict(self) -> dict[str, Any]:
        """The numbers (preservation per attribute included), for ``translation.json``."""
        preserved = None
        if self.preservation is not None:
            preserved = {row["attribute"]: {"preserved": row["preserved"], "ci_low": row["preserved_ci_low"],
                                            "ci_high": row["preserved_ci_high"], "k": int(row["k"]),
                                            "n": int(row["n"]), "judge_accuracy": row["judge_accuracy"],
                                            "truth_preserved": row["truth_preserved"]}
                         for row in self.preservation.by_group.to_dict("records")}
        return {"kind": self.kind, "translation": self.translation, "n_heldout": self.n,
                "l1_to_target": self.l1, "l1_identity_baseline": self.l1_identity,
                "round_trip_l1": self.round_trip_l1, "backward_l1_to_input": self.backward_l1,
                "judge_frechet_to_targets": self.frechet,
                "judge_frechet_identity_baseline": self.frechet_identity, "attribute_preservation": preserved,
                "changed": None if self.changes is None else self.changed().to_dict("records"),
                "read_as_target": None if self.reached is None else {
                    row["images"]: {"share": row["reached"], "ci_low": row["reached_ci_low"],
                                    "ci_high": row["reached_ci_high"], "k": int(row["k"]), "n": int(row["n"])}
                    for row in self.reached.by_group.to_dict("records")}}

    def changed(self) -> pd.DataFrame:
        """The confusion's off-diagonal cells that occurred: attribute, input_value, output_value, count."""
        if self.changes is None:
            return pd.DataFrame(columns=["attribute", *CHANGE_CATEGORIES, "count"])
        table = self.changes.by_group
        moved = table[(table["input_value"] != table["output_value"]) & (table["count"] > 0)]
        return moved[["attribute", *CHANGE_CATEGORIES, "count"]].reset_index(drop=True)

    def to_csv(self, path: str | Path | None = None) -> str:
        """The attribute preservation table as CSV text (written to ``path`` when given); empty without
        a judge."""
        if self.preservation is None:
            return ""
        return self.preservation.to_csv(path)

    def summary_lines(self) -> list[str]:
        """Plain lines: distances against their baselines, then preservation per attribute."""
        lines = []
        if self.l1 is not None:
            lines.append(f"L1 to the true target {self.l1:.4f} (identity baseline {self.l1_identity:.4f}), "
                         f"{self.n} held-out")
        if self.round_trip_l1 is not None:
            lines.append(f"round trip A -> B -> A: L1 {self.round_trip_l1:.4f}")
        if self.backward_l1 is not None:
            lines.append(f"the way back, true B -> A: L1 to the true A {self.backward_l1:.4f} "
                         f"(identity baseline {self.l1_identity:.4f})")
        if self.frechet is not None:
            lines.append(f"judge's Fréchet distance to the targets {self.frechet:.2f} "
                         f"(identity baseline {self.frechet_identity:.2f})")
        if self.reached is not None:
            rows = {row["images"]: row for row in self.reached.by_group.to_dict("records")}
            out = rows["outputs"]
            others = "; ".join(f"{name} {row['reached']:.0%}" for name, row in rows.items() if name != "outputs")
            lines.append(f"read as {self.target_value()} by the judge: {out['reached']:.0%} "
                         f"[{out['reached_ci_low']:.0%}, {out['reached_ci_high']:.0%}] of outputs ({others})")
        if self.preservation is not None:
            for row in self.preservation.by_group.to_dict("records"):
                lines.append(f"{row['attribute']} preserved {row['preserved']:.0%} "
                             f"[{row['preserved_ci_low']:.0%}, {row['preserved_ci_high']:.0%}] "
                             f"(true targets {row['truth_preserved']:.0%}; judge accuracy {row['judge_accuracy']:.0%})")
        return lines

    def target_value(self) -> str | None:
        """The value the translation changes its attribute to (``older`` for ``age:young->older``)."""
        return None if self.translation is None else parse_translation(self.translation).target

    def write(self, folder: Path | str) -> dict[str, Path]:
        """``attribute_preservation.csv`` and ``attribute_changes.csv`` (with a judge) and
        ``translation.json`` (last: its presence marks a finished evaluation) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = {}
        if self.preservation is not None and self.changes is not None:
            atomic_write_bytes(folder / PRESERVATION_FILE, self.to_csv().encode())
            atomic_write_bytes(folder / CHANGES_FILE, self.changes.to_csv().encode())
            written.update(preservation=folder / PRESERVATION_FILE, changes=folder / CHANGES_FILE)
        atomic_write_json(folder / RESULT_FILE, self.to_dict())
        written["result"] = folder / RESULT_FILE
        return written


def attribute_preservation(judge, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor | None = None,
                           changed: str | None = None,
                           confidence: float = 0.95) -> tuple[GroupedProportions, GroupedCrossCounts]:
    """Per attribute of the judge (all but ``changed``, the one the translation is meant to change),
    the share of ``outputs`` the judge reads with the value it reads on their ``inputs``, and the
    complete input -> output cross-count of its readings. ``targets``: the true targets, read the same
    way for the ``truth_preserved`` reference (NaN without them)."""
    if len(inputs) != len(outputs) or (targets is not None and len(targets) != len(inputs)):
        raise UserError(f"{len(inputs)} inputs, {len(outputs)} outputs"
                        + ("" if targets is None else f" and {len(targets)} targets") + ": one each per subject")
    attributes = [a for a in judge.vocabulary.names if a != changed]
    read_in, read_out = judge.predict(inputs), judge.predict(outputs)
    read_truth = judge.predict(targets) if targets is not None else None
    rows, cells = [], []
    for attribute in attributes:
        before, after = np.asarray(read_in[attribute][0]), np.asarray(read_out[attribute][0])
        truth = np.nan if read_truth is None else float(np.mean(np.asarray(read_truth[attribute][0]) == before))
        rows.append({"attribute": attribute, "n": len(before), "k": int((before == after).sum()),
                     "judge_accuracy": judge.heldout_accuracy.get(attribute, np.nan), "truth_preserved": truth})
        observed = pd.crosstab(pd.Series(before, name="i"), pd.Series(after, name="o"))
        values = list(judge.vocabulary.attributes[attribute])
        observed = observed.reindex(index=values, columns=values, fill_value=0)
        cells += [{"attribute": attribute, "input_value": i, "output_value": o, "count": int(observed.loc[i, o])}
                  for i in values for o in values]
    preservation = GroupedProportions(pd.DataFrame(rows), ["attribute"], "preserved", confidence,
                                      PRESERVATION_KEYS, PRESERVATION_CARRIED)
    changes = GroupedCrossCounts(pd.DataFrame(cells, columns=["attribute", *CHANGE_CATEGORIES, "count"]),
                                 ["attribute"], CHANGE_CATEGORIES, confidence, PRESERVATION_KEYS)
    return preservation, changes


def read_as_target(judge, attribute: str, value: str, images: dict[str, torch.Tensor],
                   confidence: float = 0.95) -> GroupedProportions:
    """Per named set of ``images`` (outputs, inputs, true targets), the share the judge reads with
    ``value`` of ``attribute``."""
    rows = []
    for name, batch in images.items():
        read = np.asarray(judge.predict(batch)[attribute][0])
        rows.append({"images": name, "n": len(read), "k": int((read == value).sum())})
    return GroupedProportions(pd.DataFrame(rows), ["images"], "reached", confidence, REACHED_KEYS)


def evaluate_translation(model, inputs: torch.Tensor, targets: torch.Tensor | None, judge=None,
                         changed: str | None = None, translation: str | None = None,
                         outputs: torch.Tensor | None = None, confidence: float = 0.95) -> TranslationEvaluation:
    """Translate ``inputs`` with ``model`` (anything with ``translate``; ``translate_back`` too for the
    round trip) and measure the outputs against the true ``targets`` (row i the same subject; None when
    unknown) and, with a ``judge``, attribute preservation (every judge attribute but ``changed``) and
    the judge's Fréchet distances. ``outputs``: translations already made (skips translating)."""
    from .quality import frechet_distance

    outputs = model.translate(inputs) if outputs is None else outputs
    if outputs.shape != inputs.shape:
        raise UserError(f"{getattr(model, 'kind', 'the model')}: outputs {tuple(outputs.shape)} do not match the "
                        f"inputs {tuple(inputs.shape)}")
    kind = str(getattr(model, "kind", type(model).__name__))
    result = TranslationEvaluation(kind, len(inputs), None, None, translation=translation)
    if targets is not None:
        result.l1, result.l1_identity = l1(outputs, targets), l1(inputs, targets)
    if hasattr(model, "translate_back"):
        result.round_trip_l1 = l1(model.translate_back(outputs), inputs)
        if targets is not None:
            result.backward_l1 = l1(model.translate_back(targets), inputs)
    if judge is not None:
        result.judge_accuracy = dict(judge.heldout_accuracy)
        result.preservation, result.changes = attribute_preservation(judge, inputs, outputs, targets, changed,
                                                                     confidence)
        target_value = result.target_value()
        if changed in judge.vocabulary.names and target_value in judge.vocabulary.attributes[changed]:
            sets = {"outputs": outputs, "inputs": inputs, **({} if targets is None else {"true targets": targets})}
            result.reached = read_as_target(judge, changed, target_value, sets, confidence)
        if targets is not None and len(inputs) >= 2:
            truth = judge.features(targets)
            result.frechet = frechet_distance(judge.features(outputs), truth)
            result.frechet_identity = frechet_distance(judge.features(inputs), truth)
    return result


def judge_set(data):
    """The images a translation run's judge learns from: both domains of its training set (inputs with
    their own attributes), so it reads inputs and outputs alike; None when the set has no labels."""
    from .imageset import ImageSet

    vocabulary = data.vocabulary
    if vocabulary is None or any(name not in data.input_attributes.columns for name in vocabulary.names):
        return None
    attributes = pd.concat([data.input_attributes, data.attributes], ignore_index=True)
    return ImageSet(f"{data.name} (both domains)", torch.cat([data.inputs, data.images]), attributes,
                    [""] * len(attributes), vocabulary)


def evaluate_translation_run(run, train, inputs: torch.Tensor, targets: torch.Tensor | None,
                             changed: str | None = None, translation: str | None = None, seed: int = 0,
                             judge_dir: Path | None = None, judged_by=None) -> TranslationEvaluation:
    """After training: the evaluation of ``run`` on held-out ``inputs`` (with their true ``targets``,
    if known) written into its folder (``translation.json``, ``attribute_preservation.csv``,
    ``attribute_changes.csv``) with its lecture visuals in ``visuals/``. The judge learns from both
    domains of ``judged_by`` (default ``train``, the run's own training set)."""
    from . import visuals
    from .evaluation import JUDGE_DIR, VISUALS_DIR, judge_for

    model, run_dir = run.model, Path(run.run_dir)
    labelled = judge_set(train if judged_by is None else judged_by)
    judge = None
    if labelled is not None and len(labelled) >= 10:  # too few images train no judge
        judge = judge_for(judge_dir or run_dir / JUDGE_DIR, labelled, seed)
    outputs = model.translate(inputs)
    result = evaluate_translation(model, inputs, targets, judge, changed, translation, outputs=outputs)
    out = run_dir / VISUALS_DIR
    figures = {}
    if len(run.history):
        figures["loss_curve"] = visuals.loss_curve_figure(run.history)
    shown = slice(0, GRID_PEOPLE)
    what = translation or "A -> B"
    rows = {"input": inputs[shown], "output": outputs[shown]}
    if targets is not None:
        rows["truth"] = targets[shown]
    figures["translations"] = visuals.image_rows_figure(rows, title=f"{model.kind} {what}, held-out people")
    if (run_dir / "snapshots").is_dir():
        rows_shown = "input, output, truth" if train.paired else "input, output, round trip"
        figures["training_progress"] = visuals.training_progress_figure(
            run_dir, max_columns=TRANSLATION_SNAPSHOTS,
            title=f"The first training inputs translated as training goes on (rows: {rows_shown})")
    if hasattr(model, "translate_back"):
        figures["round_trip"] = visuals.image_rows_figure(
            {"A": inputs[shown], "A -> B": outputs[shown], "A -> B -> A": model.translate_back(outputs[shown])},
            title=f"{model.kind} round trip, held-out people")
        if targets is not None:
            back = "B -> A" if translation is None else str(parse_translation(translation).reversed())
            figures["backward"] = visuals.image_rows_figure(
                {"input (true B)": targets[shown], "output (B -> A)": model.translate_back(targets[shown]),
                 "truth (A)": inputs[shown]},
                title=f"{model.kind} the way back, {back}, held-out people")
    for name, figure in figures.items():
        visuals.save_figure(figure, out / f"{name}.png")
    result.write(run_dir)
    return result
