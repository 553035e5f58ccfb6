"""Prompt adherence as a grouped result in a run folder: written, read back (also from the long table
with a ``level`` column that earlier versions wrote) and shown in the report with the same numbers."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from synthscope.generators.evaluation import ADHERENCE_FILE, RunEvaluation, adherence_counts
from synthscope.generators.quality import adherence_table
from synthscope.generators.report_section import run_subsection
from synthscope.reports import Metric, Table

# Written by prompt_adherence before it returned a grouped result (a judge on tinted digits, samples of a
# small conditional GAN and real images with part of their colours shuffled).
OLD_FORMAT = """\
level,attribute,requested,n,k,adherence,ci_low,ci_high,judge_accuracy,judge_recall
attribute,digit,,510,270,0.5294117647058824,0.4860343631880913,0.572349403798816,0.8787878787878788,
value,digit,0,47,47,1.0,0.9244423958360037,1.0,0.8787878787878788,1.0
value,digit,1,49,22,0.4489795918367347,0.31852841068686644,0.5868489178050209,0.8787878787878788,0.7647058823529411
value,digit,2,51,23,0.45098039215686275,0.3226751854937402,0.5861529144963119,0.8787878787878788,0.7368421052631579
value,digit,3,51,26,0.5098039215686274,0.37680923894569696,0.6414251410562926,0.8787878787878788,1.0
value,digit,4,47,23,0.48936170212765956,0.3527555503368215,0.6275754625177314,0.8787878787878788,1.0
value,digit,5,54,29,0.5370370370370371,0.40605356021011496,0.6631009888201891,0.8787878787878788,1.0
value,digit,6,52,28,0.5384615384615384,0.4050361132695787,0.6665952531824317,0.8787878787878788,0.9230769230769231
value,digit,7,52,28,0.5384615384615384,0.4050361132695787,0.6665952531824317,0.8787878787878788,1.0
value,digit,8,53,18,0.33962264150943394,0.22687039101324172,0.4740521336245169,0.8787878787878788,0.6428571428571429
value,digit,9,54,26,0.48148148148148145,0.3539397274661188,0.6114829980187293,0.8787878787878788,0.7368421052631579
attribute,colour,,300,244,0.8133333333333334,0.7653812201652491,0.8533625178673686,1.0,
value,colour,red,89,71,0.797752808988764,0.7028034801630848,0.8680621726737535,1.0,1.0
value,colour,green,96,79,0.8229166666666666,0.7345895948319192,0.8863949213433322,1.0,1.0
value,colour,blue,115,94,0.8173913043478261,0.7369174890728354,0.87734625965934,1.0,1.0
"""
OLD = pd.read_csv(io.StringIO(OLD_FORMAT), dtype={"requested": str})
NUMBERS = ["n", "k", "adherence", "ci_low", "ci_high", "judge_accuracy"]


def run_folder(tmp_path, adherence_text: str):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"kind": "gan"}}))
    (tmp_path / "quality.json").write_text(json.dumps({"step": 40}))
    (tmp_path / ADHERENCE_FILE).write_text(adherence_text)
    return RunEvaluation.load(tmp_path)


def assert_same(old: pd.DataFrame, new: pd.DataFrame, columns) -> None:
    interval = {"adherence_ci_low": "ci_low", "adherence_ci_high": "ci_high"}
    old, new = old.reset_index(drop=True), new.rename(columns=interval).reset_index(drop=True)
    assert new["attribute"].tolist() == old["attribute"].tolist()
    for column in columns:
        assert new[column].to_numpy(float) == pytest.approx(old[column].to_numpy(float), abs=1e-12, nan_ok=True)


def test_an_old_run_folder_reads_into_the_grouped_result_with_the_same_numbers(tmp_path):
    adherence = run_folder(tmp_path, OLD_FORMAT).adherence
    assert "level" not in adherence.by_group and adherence.keys == ["attribute", "requested"]
    values = OLD[OLD["level"] == "value"]
    assert adherence.by_group["requested"].tolist() == values["requested"].tolist()  # "0" stays text, order kept
    assert_same(values, adherence.by_group, [*NUMBERS, "judge_recall"])
    assert_same(OLD[OLD["level"] == "attribute"], adherence.overall(["requested"], keep=["judge_accuracy"]).by_group,
                NUMBERS)


def test_the_old_layout_is_converted_in_one_place_and_the_new_one_passes_through():
    counts = adherence_counts(OLD)
    assert "level" not in counts and len(counts) == (OLD["level"] == "value").sum()
    new = adherence_table(counts)
    assert adherence_counts(new.by_group) is new.by_group


def test_a_new_run_folder_round_trips(tmp_path):
    written = adherence_table(adherence_counts(OLD))
    assert "level" not in written.to_csv()
    back = run_folder(tmp_path, written.to_csv()).adherence
    pd.testing.assert_frame_equal(back.by_group, written.by_group)


def test_the_report_shows_what_it_showed_from_the_long_table(tmp_path):
    section = run_subsection(run_folder(tmp_path, OLD_FORMAT))
    metrics = [b for b in section.blocks if isinstance(b, Metric)]
    attributes = OLD[OLD["level"] == "attribute"]
    assert [m.label for m in metrics] == [f"Prompt adherence ({a})" for a in attributes["attribute"]]
    assert [m.note for m in metrics] == [f"n = {r.n}; judge accuracy {r.judge_accuracy:.2f}"
                                         for r in attributes.itertuples()]
    for metric, row in zip(metrics, attributes.itertuples()):
        assert (metric.value, metric.ci_low, metric.ci_high) == pytest.approx((row.adherence, row.ci_low, row.ci_high),
                                                                              abs=1e-12)
    table = next(b for b in section.blocks if isinstance(b, Table))
    assert table.title == "Prompt adherence per requested value"
    # The columns of the long table but its level column, which the report always dropped.
    assert list(table.dataframe.columns) == [c for c in OLD.columns if c != "level"]
    assert_same(OLD[OLD["level"] == "value"], table.dataframe, [*NUMBERS, "judge_recall"])
    assert table.formats == {"adherence": ".2f", "ci_low": ".2f", "ci_high": ".2f"}
