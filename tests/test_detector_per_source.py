"""Per-source detector results as one grouped result: k of n flagged per source and label, pooled
over sources (seen against unseen generators), differences between sources, the saved layout and
assessments saved in it loading back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synthscope.detectors.assessment import Assessment, split_by_training
from synthscope.detectors.metrics import (PER_SOURCE_SCHEMA, evaluate_scores, per_source_from_layout,
                                          per_source_layout)
from synthscope.detectors.report_section import assessment_summary
from synthscope.grouped import GroupedProportions
from synthscope.stats import wilson_interval


def scored(seed: int = 3):
    """300 reals, then fakes of three generators that the detector finds easy, harder, hardest."""
    rng = np.random.default_rng(seed)
    parts = [("real", 0, 300, 0.0), ("gan", 1, 120, 2.0), ("diffusion", 1, 80, 0.7), ("ae", 1, 50, 0.0)]
    scores = np.concatenate([rng.normal(mu, 1, n) for _, _, n, mu in parts])
    scores = 1 / (1 + np.exp(-scores))  # probabilities, as split_by_training passes them as probs
    labels = np.concatenate([np.full(n, label) for _, label, n, _ in parts])
    sources = np.concatenate([[name] * n for name, _, n, _ in parts])
    return labels, scores, sources, 0.77


def test_per_source_is_k_of_n_flagged_with_curves_carried():
    y, s, src, t = scored()
    report = evaluate_scores(y, s, t, sources=src, n_boot=0)
    results = report.per_source
    assert isinstance(results, GroupedProportions) and results.keys == ["source", "label"]
    table = results.by_group
    assert table["source"].tolist() == ["real", "ae", "diffusion", "gan"]  # reals first, then by name
    for name, row in table.set_index("source").iterrows():
        mask = src == name
        assert (row["n"], row["k"]) == (mask.sum(), (s[mask] > t).sum())
        assert (row["rate_ci_low"], row["rate_ci_high"]) == wilson_interval(row["k"], row["n"])
    assert table.loc[table["label"] == 0, ["ap", "roc_auc"]].isna().all().all()  # reals: no curve of their own
    assert evaluate_scores(y, s, t, n_boot=0).per_source is None


def test_pooling_over_sources_gives_the_class_rates():
    y, s, src, t = scored()
    report = evaluate_scores(y, s, t, sources=src, n_boot=0)
    pooled = report.per_source.overall(["source"]).by_group.set_index("label")
    for label, metric in ((1, "fake_accuracy"), (0, "fpr_at_threshold")):
        m = report.metrics[metric]
        assert (pooled.loc[label, "rate"], pooled.loc[label, "rate_ci_low"], pooled.loc[label, "rate_ci_high"]) \
            == (pytest.approx(m.value, abs=1e-15), m.ci_low, m.ci_high)
    spread = report.per_source.difference("source").set_index("label").loc[1]
    assert (spread["source_of_min"], spread["source_of_max"]) == ("ae", "gan")


def test_seen_and_unseen_generators_pool_apart_as_the_subset_reports_do():
    y, s, src, t = scored()
    report = evaluate_scores(y, s, t, sources=src, n_boot=0)
    scores = pd.DataFrame({"file": [f"{i}.png" for i in range(len(y))], "source": src, "label": y, "score": s})
    by_training, training = split_by_training(report, scores, {"training": {"fake_sources": ["gan"]}}, t, n_boot=0)
    assert training["unseen_test_sources"] == ["ae", "diffusion"]
    results = report.per_source
    assert results.keys == ["source", "label", "seen_in_training"]
    assert dict(zip(results.by_group["source"], results.by_group["seen_in_training"])) == {
        "real": None, "ae": False, "diffusion": False, "gan": True}
    pooled = results.overall(["source"]).by_group
    for name, flag in (("seen", True), ("unseen", False)):
        row = pooled[(pooled["label"] == 1) & (pooled["seen_in_training"] == flag)].iloc[0]
        m = by_training[name].metrics["fake_accuracy"]
        assert (row["rate"], row["rate_ci_low"], row["rate_ci_high"]) == (pytest.approx(m.value, abs=1e-15),
                                                                        m.ci_low, m.ci_high)
    assert pooled.loc[pooled["label"] == 0, "seen_in_training"].tolist() == [None]  # reals: one pooled row
    # the saved layout: the standard columns, then the mark; back from it, the same results
    layout = report.per_source_table()
    assert list(layout.columns) == [*PER_SOURCE_SCHEMA.names, "seen_in_training"]
    pd.testing.assert_frame_equal(per_source_from_layout(layout).by_group, results.by_group)


# What metrics.json held for a detector tested on three generators, one of them seen in training, as
# the per-source list of dicts written before per-source results were a grouped result.
OLD_PER_SOURCE = [
    {"ap": None, "fpr_at_threshold": 0.12333333333333334, "label": 0, "n": 300, "rate_ci_high": 0.1653737240288234,
     "rate_ci_low": 0.09081731429366795, "roc_auc": None, "seen_in_training": None, "source": "real",
     "tpr_at_threshold": None},
    {"ap": 0.1675476308164926, "fpr_at_threshold": None, "label": 1, "n": 50, "rate_ci_high": 0.30796053674300783,
     "rate_ci_low": 0.09770192670234178, "roc_auc": 0.5492, "seen_in_training": False, "source": "ae",
     "tpr_at_threshold": 0.18},
    {"ap": 0.40651499781383327, "fpr_at_threshold": None, "label": 1, "n": 80, "rate_ci_high": 0.45919993351192334,
     "rate_ci_low": 0.25454550534873466, "roc_auc": 0.7083333333333334, "seen_in_training": False,
     "source": "diffusion", "tpr_at_threshold": 0.35},
    {"ap": 0.8414766227830347, "fpr_at_threshold": None, "label": 1, "n": 120, "rate_ci_high": 0.8476327643584851,
     "rate_ci_low": 0.7014563746709164, "roc_auc": 0.9238333333333334, "seen_in_training": True, "source": "gan",
     "tpr_at_threshold": 0.7833333333333333},
]


def test_an_assessment_saved_with_per_source_rows_loads_as_a_grouped_result(tmp_path):
    doc = {"threshold": 0.7685247834990175, "n_real": 300, "n_fake": 250, "confidence": 0.95, "n_boot": 30,
           "seed": 1, "notes": [], "per_source": OLD_PER_SOURCE, "by_training": {},
           "metrics": {"fake_accuracy": {"value": 0.524, "ci_low": 0.46219788800433054,
                                         "ci_high": 0.5850757136198882, "method": "wilson", "note": None},
                       **{name: {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "method": "bootstrap", "note": None}
                          for name in ("ap", "fpr_at_threshold", "tpr_at_1pct_fpr")}},
           "detector": {"model": {"kind": "cnn"}},
           "training_sources": {"sources": ["gan"], "how": "recorded at training", "seen_test_sources": ["gan"],
                                "unseen_test_sources": ["ae", "diffusion"]}}
    (tmp_path / "metrics.json").write_text(json.dumps(doc))
    loaded = Assessment.load(tmp_path)
    results = loaded.report.per_source
    assert results.keys == ["source", "label", "seen_in_training"]
    assert results.by_group["k"].tolist() == [37, 9, 28, 94]  # the rates were k / n exactly
    # the intervals recomputed from k and n are the ones saved, to the last bit
    assert results.by_group["rate_ci_low"].tolist() == [row["rate_ci_low"] for row in OLD_PER_SOURCE]
    assert results.by_group["rate_ci_high"].tolist() == [row["rate_ci_high"] for row in OLD_PER_SOURCE]
    # written again, the rows are the ones read
    assert loaded.report.to_dict()["per_source"] == [{k: row[k] for k in per_source_layout(results).columns}
                                                    for row in OLD_PER_SOURCE]
    pooled = results.overall(["source"]).by_group
    assert pooled.loc[pooled["label"] == 1, "k"].sum() == 131  # 131 / 250: the saved fake_accuracy, 0.524
    weakest = "Weakest on ae (never seen in training): 18 % caught at its threshold [9.8 %, 31 %]."
    assert weakest in assessment_summary(loaded)


def test_rows_without_their_rate_are_refused():
    rows = [dict(OLD_PER_SOURCE[1], tpr_at_threshold=None)]
    with pytest.raises(ValueError, match="rows of ae: the rate"):
        per_source_from_layout(rows)
    with pytest.raises(ValueError, match="not k / n"):
        per_source_from_layout([dict(OLD_PER_SOURCE[1], tpr_at_threshold=0.181)])
    assert per_source_from_layout([]) is None
