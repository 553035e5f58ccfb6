"""The detectors' section of an HTML report: curves, metrics with intervals, the cross-generator
heatmap, robustness curves, calibration, per-source results and the most confident mistakes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from synthscope.reports import Figure, Gallery, Metric, Section, Table, Text
from synthscope.reports.style import MARKERS, new_figure, palette, plain_text, use_style

from .assessment import Assessment
from .generalisation import Generalisation
from .metrics import reliability_curve

METRIC_TITLES = {
    "ap": "Average precision", "roc_auc": "ROC-AUC", "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy",
    "real_accuracy": "Real images passed", "fake_accuracy": "Fakes caught", "fpr_at_threshold": "False-positive rate",
    "tpr_at_1pct_fpr": "TPR at 1 % FPR", "tpr_at_0.1pct_fpr": "TPR at 0.1 % FPR", "eer": "Equal error rate",
    "ece": "Calibration error (ECE)", "brier": "Brier score",
}
HEADLINE = ("ap", "fake_accuracy", "fpr_at_threshold", "tpr_at_1pct_fpr")
CAVEATS = [
    "The decision threshold was fixed on held-out real images before testing; no test label chose it. "
    "TPR at a fixed FPR and the EER are read off the test ROC curve and describe the best the scores "
    "allow, not what the deployed threshold achieves.",
    "A detector that scores well here has learnt these generators at this size: the cross-generator and "
    "robustness results show how quickly that breaks.",
]


def roc_pr_figure(scores: pd.DataFrame, threshold: float) -> Any:
    """ROC and precision-recall curves, one per synthetic source against all reals, with the
    deployed operating point marked."""
    real = scores[scores["label"] == 0]
    sources = list(dict.fromkeys(scores.loc[scores["label"] == 1, "source"]))
    colours = palette(max(len(sources) + 1, 2))
    with use_style():
        fig = new_figure(8.6, 3.6)
        roc_ax, pr_ax = fig.subplots(1, 2)
        curves = [("all fakes", scores)] + ([(s, pd.concat([real, scores[scores["source"] == s]])) for s in sources]
                                            if len(sources) > 1 else [])
        for index, (name, part) in enumerate(curves):
            y, s = part["label"].to_numpy(), part["score"].to_numpy()
            fpr, tpr, _ = roc_curve(y, s)
            precision, recall, _ = precision_recall_curve(y, s)
            style = {"color": colours[index], "linewidth": 2.4 if index == 0 else 1.4, "label": plain_text(name)}
            roc_ax.plot(fpr, tpr, **style)
            pr_ax.plot(recall, precision, **style)
        y, s = scores["label"].to_numpy(), scores["score"].to_numpy()
        flagged = s > threshold
        point_fpr, point_tpr = flagged[y == 0].mean(), flagged[y == 1].mean()
        roc_ax.plot([point_fpr], [point_tpr], "k*", markersize=11, label="deployed threshold")
        roc_ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
        roc_ax.set(xscale="symlog", xlabel="false-positive rate (log scale below 1 %)",
                   ylabel="true-positive rate (fakes caught)", title="ROC", ylim=(0, 1.02))
        roc_ax.set_xscale("symlog", linthresh=0.01)
        roc_ax.set_xlim(0, 1)
        pr_ax.set(xlabel="recall (fakes caught)", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
        roc_ax.legend(loc="lower right")
    return fig


def reliability_figure(scores: pd.DataFrame) -> Any:
    """Observed share of fakes against the detector's stated P(fake), per bin."""
    curve = reliability_curve(scores["label"].to_numpy(), scores["score"].to_numpy(), n_bins=10)
    curve = curve[curve["count"] > 0]
    with use_style():
        fig = new_figure(4.4, 3.8)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
        ax.plot(curve["mean_predicted"], curve["observed_fraction"], marker="o", label="detector")
        for _, row in curve.iterrows():
            ax.annotate(f"{int(row['count'])}", (row["mean_predicted"], row["observed_fraction"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7, color="grey")
        ax.set(xlabel="stated P(fake), bin mean", ylabel="observed share of fakes", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left")
    return fig


def generalisation_heatmap(generalisation: Generalisation) -> Any:
    """AP and the share of fakes caught at each detector's threshold, train (rows) x test (columns)."""
    import seaborn as sns

    with use_style():
        pivots = [(generalisation.pivot("ap"), "average precision"),
                  (generalisation.pivot("fake_accuracy"), "fakes caught at the threshold")]
        rows, cols = pivots[0][0].shape
        fig = new_figure(max(7.0, 2.2 + 1.6 * cols), 1.4 + 0.55 * rows)
        for ax, (table, label) in zip(fig.subplots(1, 2), pivots):
            sns.heatmap(table.astype(float), ax=ax, vmin=0, vmax=1, cmap="viridis",
                        annot=True, fmt=".2f", cbar=False, linewidths=0.5, square=False)
            ax.set(xlabel="tested on", ylabel="trained on", title=label)
            ax.set_xticklabels([plain_text(t.get_text()) for t in ax.get_xticklabels()], rotation=30, ha="right")
            ax.set_yticklabels([plain_text(t.get_text()) for t in ax.get_yticklabels()], rotation=0)
    return fig


def robustness_figure(robustness: pd.DataFrame) -> Any:
    """Small multiples, one per sweep: AP (with its interval), fakes caught and false positives at
    the fixed threshold, along the perturbation strength."""
    sweeps = list(dict.fromkeys(robustness["sweep"]))
    columns = min(3, len(sweeps))
    rows = int(np.ceil(len(sweeps) / columns))
    colours = palette(3)
    with use_style():
        fig = new_figure(3.4 * columns, 2.9 * rows)
        axes = np.atleast_1d(fig.subplots(rows, columns, sharey=True)).ravel()
        for ax, sweep in zip(axes, sweeps):
            part = robustness[robustness["sweep"] == sweep].sort_values("step")
            x = np.arange(len(part))
            series = [("ap", "average precision"), ("fake_accuracy", "fakes caught"),
                      ("fpr_at_threshold", "false-positive rate")]
            for index, (column, label) in enumerate(series):
                ax.plot(x, part[column].astype(float), marker=MARKERS[index], color=colours[index], label=label)
            ax.fill_between(x, part["ap_low"].astype(float), part["ap_high"].astype(float), color=colours[0],
                            alpha=0.18, linewidth=0)
            ax.set_xticks(x, [plain_text(level) for level in part["level"]], rotation=35, ha="right", fontsize=7)
            ax.set_title(plain_text(sweep), loc="left")
            ax.set_ylim(-0.02, 1.02)
        for ax in axes[len(sweeps):]:
            ax.set_visible(False)
        axes[0].set_ylabel("rate or AP")
        axes[0].legend(loc="lower left", fontsize=7)
    return fig


def mistakes_gallery(scores: pd.DataFrame, threshold: float, per_class: int = 8) -> Gallery | Text:
    """The reals scored most confidently as fake and the fakes scored most confidently as real."""
    false_alarms = scores[(scores["label"] == 0) & (scores["score"] > threshold)].nlargest(per_class, "score")
    misses = scores[(scores["label"] == 1) & (scores["score"] <= threshold)].nsmallest(per_class, "score")
    if false_alarms.empty and misses.empty:
        return Text("No test image was misclassified at the deployed threshold.")
    tiles = [(row["file"], f"real, P(fake) {row['score']:.2f}") for _, row in false_alarms.iterrows()]
    tiles += [(row["file"], f"{row['source']}, P(fake) {row['score']:.2f}") for _, row in misses.iterrows()]
    return Gallery("Most confident mistakes", tiles, name="detector-mistakes",
                   caption=f"{len(false_alarms)} real images flagged as fake (highest scores first), then "
                           f"{len(misses)} synthetic images passed as real (lowest scores first).")


def _metric(report: Any, name: str, percent: bool) -> Metric:
    value = report.metrics[name]
    note = value.note or ""
    return Metric(METRIC_TITLES.get(name, name), value.value, value.ci_low, value.ci_high, note=note,
                  fmt=".1%" if percent else ".3f")


def describe_detector(model: dict[str, Any]) -> str:
    """A reader's name for a detector from the ``model`` part of its config."""
    kind = model.get("kind")
    if kind == "cnn":
        start = "ImageNet weights" if model.get("pretrained") == "imagenet" else "random start"
        return f"A CNN detector ({model.get('arch', '?')}, {start})"
    if kind == "clip":
        return f"A CLIP detector ({model.get('model', '?')} features, {model.get('probe', '?')} probe)"
    if kind == "gan-discriminator":
        return "A trained GAN's discriminator used as a detector"
    return f"A {kind or 'saved'} detector"


def assessment_section(assessment: Assessment, title: str = "Detector", intro: str = "",
                       section_id: str = "detector") -> Section:
    """One detector on one test set, from its saved :class:`Assessment`."""
    report, scores = assessment.report, assessment.scores
    threshold = float(report.threshold)
    detector = assessment.detector.get("model", {})
    target = assessment.detector.get("target_fpr")
    section = Section(id=section_id, title=title, intro=intro or (
        f"{describe_detector(detector)}, tested on "
        f"{report.n_real} real and {report.n_fake} synthetic images it never saw. Its threshold "
        f"({threshold:.3g}) was fixed on held-out real images"
        + (f" for a {target:.1%} false-positive rate." if target is not None else ".")))
    section.add(*(_metric(report, name, percent=name != "ap") for name in HEADLINE if name in report.metrics))
    if report.n_real and report.n_fake:
        section.add(Figure.from_matplotlib(roc_pr_figure(scores, threshold), "ROC and precision-recall curves",
                                           name="detector-curves",
                                           caption="One curve per generator against all reals; the star is "
                                                   "the deployed threshold."))
    table = report.table()
    table.insert(0, "what", [METRIC_TITLES.get(m, m) for m in table["metric"]])
    section.add(Table("All metrics, with 95 % intervals", table.drop(columns=["metric"]), name="detector-metrics",
                      caption="Bootstrap intervals for curve metrics, Wilson intervals for rates at the threshold."))
    per_source = report.per_source_table()
    if len(per_source):
        section.add(Table("Per source", per_source, name="detector-per-source",
                          caption="Fakes: share caught at the threshold (tpr) and AP against all reals. "
                                  "Reals: share wrongly flagged (fpr). Intervals are Wilson 95 % for the rate."))
    if report.n_real and report.n_fake:
        section.add(Figure.from_matplotlib(reliability_figure(scores), "Calibration (reliability diagram)",
                                           name="detector-reliability",
                                           caption="Points on the diagonal mean the stated P(fake) can be read "
                                                   "as a probability; numbers give the images per bin."))
    if len(assessment.robustness):
        section.add(Figure.from_matplotlib(
            robustness_figure(assessment.robustness), "Robustness: the same test images, perturbed",
            name="detector-robustness",
            caption="Every perturbation is applied identically to real and synthetic images; the threshold "
                    "stays the deployed one. The band is AP's 95 % interval."))
        shown = ["sweep", "level", "ap", "ap_low", "ap_high", "fake_accuracy", "fpr_at_threshold"]
        section.add(Table("Robustness sweeps", assessment.robustness[shown], name="detector-robustness-table",
                          max_rows=12, caption="fake_accuracy: share of fakes caught; fpr_at_threshold: share of "
                                               "reals flagged, both at the deployed threshold."))
    if len(assessment.shortcut):
        section.add(Table("Format-shortcut check", assessment.shortcut, name="detector-format-shortcut",
                          caption="Both classes re-encoded the same way. Large score changes or flipped "
                                  "decisions mean the detector keys on how files are encoded, not on what "
                                  "they show."))
    if len(scores) and "file" in scores:
        section.add(mistakes_gallery(scores, threshold))
    return section


def generalisation_section(generalisation: Generalisation, section_id: str = "detector-generalisation") -> Section:
    """The cross-generator matrix and leave-one-generator-out, as heatmaps and tables."""
    section = Section(id=section_id, title="Does it generalise to other generators?",
                      intro="One detector per training set, each tested on every generator's held-out "
                            "images. The diagonal is in-distribution; off the diagonal, a detector meets a "
                            "generator it never saw.")
    section.add(Figure.from_matplotlib(generalisation_heatmap(generalisation), "Cross-generator matrix",
                                       name="detector-matrix",
                                       caption="Rows: what the detector was trained on; columns: the "
                                               "generator it is tested on (with the same real test images)."))
    shown = ["train", "test", "n_real", "n_fake", "ap", "ap_low", "ap_high", "fake_accuracy", "fpr_at_threshold"]
    section.add(Table("Cross-generator results", generalisation.matrix[shown], name="detector-matrix-table",
                      max_rows=20))
    if len(generalisation.leave_one_out):
        section.add(Table("Leave one generator out", generalisation.leave_one_out, name="detector-leave-one-out",
                          caption="Trained on every other generator, tested on the one left out (ap, "
                                  "fake_accuracy) and on the ones it saw (ap_seen, fake_accuracy_seen)."))
    else:
        section.add(Text("Leave-one-generator-out needs at least three synthetic corpora."))
    return section


def detector_section(assessment: Assessment | None = None, generalisation: Generalisation | None = None,
                     title: str = "AI-image detectors", intro: str = "") -> Section:
    """The detectors' report section: an assessment, a cross-generator study, or both."""
    subsections = []
    if assessment is not None:
        subsections.append(assessment_section(
            assessment, title="Detector trained on all generators" if generalisation is not None else "Detector"))
    if generalisation is not None:
        subsections.append(generalisation_section(generalisation))
    return Section(id="detectors", title=title, intro=intro, caveats=list(CAVEATS), subsections=subsections)
