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
from .generalisation import ALL, Generalisation
from .metrics import RATE, SEEN_IN_TRAINING, MetricValue, reliability_curve

METRIC_TITLES = {
    "ap": "Average precision", "roc_auc": "ROC-AUC", "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy",
    "real_accuracy": "Real images passed", "fake_accuracy": "Fakes caught", "fpr_at_threshold": "False-positive rate",
    "tpr_at_1pct_fpr": "TPR at 1 % FPR", "tpr_at_0.1pct_fpr": "TPR at 0.1 % FPR", "eer": "Equal error rate",
    "ece": "Calibration error (ECE)", "brier": "Brier score",
}
HEADLINE = ("ap", "fake_accuracy", "fpr_at_threshold", "tpr_at_1pct_fpr")
PERCENT = {"accuracy", "balanced_accuracy", "real_accuracy", "fake_accuracy", "fpr_at_threshold",
           "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "eer"}
SEEN_UNSEEN_METRICS = ("ap", "roc_auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "fake_accuracy",
                       "fpr_at_threshold", "eer")
THRESHOLD_CAVEAT = (
    "The decision threshold was fixed on held-out real images before testing; no test label chose it. "
    "TPR at a fixed FPR and the EER are read off the test ROC curve and describe the best the scores "
    "allow, not what the deployed threshold achieves.")


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


def _names(names: list[str], limit: int = 4) -> str:
    names = [str(n) for n in names]
    if len(names) > limit:
        return f"{', '.join(names[:limit])} and {len(names) - limit} more"
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else (names[0] if names else "none")


def _value(metric: MetricValue | None, percent: bool) -> str:
    """``0.76 [0.72, 0.80]`` or ``18 % [14 %, 23 %]``; "n/a" when undefined."""
    if metric is None or metric.value is None:
        return "n/a"

    def one(x: float) -> str:
        return _percent(x) if percent else f"{x:.2f}"

    interval = f" [{one(metric.ci_low)}, {one(metric.ci_high)}]" if metric.ci_low is not None else ""
    return one(metric.value) + interval


def _percent(x: float) -> str:
    """A share as a percentage: one decimal below 10 % (a false-positive rate of 0.4 % is not 0 %)."""
    return f"{x * 100:.1f} %" if abs(x) < 0.1 else f"{x * 100:.0f} %"


def _trained_on(assessment: Assessment) -> str:
    sources, how = assessment.training.get("sources"), assessment.training.get("how")
    if sources is None:
        return "trained on synthetic images of generators it does not record"
    note = "" if how == "recorded at training" else f" ({how})"
    return f"trained on real images against synthetic images from {_names(sources)}{note}"


def _from_training_folders(assessment: Assessment) -> str:
    inside = assessment.training.get("test_images_from_training_folders")
    if inside is None:
        return ""
    return ", none of them from the folders it was trained on" if inside == 0 else ""


def seen_unseen_table(assessment: Assessment) -> pd.DataFrame:
    """Metric by metric: all test images, the generators seen in training, those never seen (text
    cells: value and interval); empty unless both kinds were tested."""
    if not {"seen", "unseen"} <= set(assessment.by_training):
        return pd.DataFrame()
    training = assessment.training
    columns = {f"all ({assessment.report.n_fake} synthetic)": assessment.report,
               f"seen: {_names(training.get('seen_test_sources', []))} "
               f"({assessment.by_training['seen'].n_fake})": assessment.by_training["seen"],
               f"never seen: {_names(training.get('unseen_test_sources', []))} "
               f"({assessment.by_training['unseen'].n_fake})": assessment.by_training["unseen"]}
    rows = [{"metric": METRIC_TITLES.get(name, name),
             **{column: _value(report.metrics.get(name), name in PERCENT) for column, report in columns.items()}}
            for name in SEEN_UNSEEN_METRICS if name in assessment.report.metrics]
    return pd.DataFrame(rows)


def _catch_rate(report: Any) -> str:
    """How many fakes a report's detector catches: at 1 % FPR on the ROC curve when defined, else at
    the threshold."""
    curve = report.metrics.get("tpr_at_1pct_fpr")
    if curve is not None and curve.value is not None:
        return f"{_value(curve, True)} caught at 1 % FPR"
    return f"{_value(report.metrics.get('fake_accuracy'), True)} caught at its threshold"


def assessment_summary(assessment: Assessment) -> list[str]:
    """A few plain sentences: what was evaluated, the headline figures with intervals, seen against
    unseen generators, and where the detector fails."""
    report, training = assessment.report, assessment.training
    m = report.metrics
    model = assessment.detector.get("model", {})
    target = assessment.detector.get("target_fpr")
    tested = _names(training.get("seen_test_sources", []) + training.get("unseen_test_sources", [])
                    or sorted(set(_per_source_fakes(report)["source"])))
    lines = [f"{describe_detector(model)}, {_trained_on(assessment)}, was tested on {report.n_real} real and "
             f"{report.n_fake} synthetic images" + (f" (from {tested})." if report.n_fake else ".")]
    inside = training.get("test_images_from_training_folders")
    if inside:
        lines.append(f"{inside} of the test images come from folders it was trained on: its figures on them "
                     f"are optimistic.")
    at = (f"at its threshold (fixed on held-out real images for a {target * 100:g} % false-positive rate)"
          if target is not None else "at its threshold (fixed on held-out real images)")
    if report.n_real and report.n_fake:
        lines.append(f"Over all test images: average precision {_value(m['ap'], False)}; {at} it caught "
                     f"{_value(m['fake_accuracy'], True)} of the synthetic images and flagged "
                     f"{_value(m['fpr_at_threshold'], True)} of the real ones; "
                     f"{_value(m['tpr_at_1pct_fpr'], True)} of the synthetic images are caught at 1 % FPR.")
    elif report.n_real:
        lines.append(f"Only real images were tested: {at} it flagged {_value(m['fpr_at_threshold'], True)} of them.")
    else:
        lines.append(f"Only synthetic images were tested: {at} it caught {_value(m['fake_accuracy'], True)}.")
    seen, unseen = assessment.by_training.get("seen"), assessment.by_training.get("unseen")
    seen_names = _names(training.get("seen_test_sources", []))
    unseen_names = _names(training.get("unseen_test_sources", []))
    if seen is not None and unseen is not None:
        lines.append(f"On the generators it was trained on ({seen_names}): AP {_value(seen.metrics['ap'], False)}, "
                     f"{_catch_rate(seen)}. On the generators it never saw ({unseen_names}): AP "
                     f"{_value(unseen.metrics['ap'], False)}, {_catch_rate(unseen)}; the pooled figures mix the two.")
    elif seen is not None:
        lines.append(f"Every synthetic test image comes from a generator it was trained on ({seen_names}): these "
                     f"figures are in-distribution and say nothing of generators it never saw.")
    elif unseen is not None:
        lines.append(f"None of the test generators ({unseen_names}) was in its training data: these figures "
                     f"measure how it carries over to generators it never saw.")
    elif report.n_fake and training.get("sources") is None:
        lines.append("It does not record which generators it was trained on, so seen and unseen generators "
                     "cannot be told apart here.")
    lines += _weaknesses(assessment)
    return lines


def _per_source_fakes(report: Any) -> pd.DataFrame:
    """The per-source results of the synthetic sources (empty without per-source results)."""
    if report.per_source is None:
        return pd.DataFrame(columns=["source", RATE])
    table = report.per_source.by_group
    return table[(table["label"] == 1) & table[RATE].notna()]


def _weaknesses(assessment: Assessment) -> list[str]:
    """Where the detector fails: its weakest generator, false positives above target, the perturbation
    that hurts most and decisions flipped by re-encoding."""
    report, found = assessment.report, []
    fakes = _per_source_fakes(report)
    if len(fakes):
        worst = fakes.loc[fakes[RATE].idxmin()]  # the first of equally weak ones, in the table's order
        best = fakes[RATE].max()
        if worst[RATE] < 0.9 or worst[RATE] < best - 0.05:
            seen = {True: " (seen in training)", False: " (never seen in training)"}.get(
                worst.get(SEEN_IN_TRAINING.name), "")
            found.append(f"Weakest on {worst['source']}{seen}: {_percent(worst[RATE])} caught at its "
                         f"threshold [{_percent(worst[f'{RATE}_ci_low'])}, {_percent(worst[f'{RATE}_ci_high'])}].")
    target, fpr = assessment.detector.get("target_fpr"), report.metrics.get("fpr_at_threshold")
    if target is not None and fpr is not None and fpr.ci_low is not None and fpr.ci_low > target:
        found.append(f"It flags {_value(fpr, True)} of real images, above its {target * 100:g} % target.")
    robustness = assessment.robustness
    if len(robustness) and robustness["ap"].notna().any():
        perturbed = robustness[robustness["step"] > 0].dropna(subset=["ap"])
        clean = robustness.loc[robustness["step"] == 0, "ap"].dropna()
        if len(perturbed) and len(clean):
            row = perturbed.loc[perturbed["ap"].idxmin()]
            if row["ap"] < clean.iloc[0] - 0.05:
                found.append(f"Perturbed, its AP falls furthest under {row['level']}: {row['ap']:.2f} "
                             f"(clean {clean.iloc[0]:.2f}).")
    shortcut = assessment.shortcut
    if len(shortcut) and (shortcut["decisions_flipped"] > 0.05).any():
        row = shortcut.loc[shortcut["decisions_flipped"].idxmax()]
        found.append(f"Re-encoding both classes as {row['reencoding']} flips {_percent(row['decisions_flipped'])} of "
                     f"the {row['class']} decisions: it partly keys on how files are encoded.")
    return found


def generalisation_summary(generalisation: Generalisation) -> list[str]:
    """A few plain sentences on the cross-generator study: seen against unseen generators, and the
    leave-one-out result."""
    matrix = generalisation.matrix
    single = matrix[matrix["train"] != ALL]
    names = list(dict.fromkeys(matrix["test"]))
    lines = [f"{len(names)} synthetic corpora ({_names(names)}): one detector trained per corpus"
             + (", one on all of them" if (matrix["train"] == ALL).any() else "")
             + ", each tested on every corpus's held-out images."]
    diagonal = single[single["train"] == single["test"]].dropna(subset=["ap"])
    off = single[single["train"] != single["test"]].dropna(subset=["ap"])
    if len(diagonal):
        lines.append(f"Tested on the generator it was trained on, a detector reached an AP of "
                     f"{diagonal['ap'].mean():.2f} on average (lowest {diagonal['ap'].min():.2f}).")
    if len(off):
        worst = off.loc[off["ap"].idxmin()]
        lines.append(f"On generators it never saw: {off['ap'].mean():.2f} on average, and "
                     f"{_percent(worst['fake_accuracy'])} caught at its threshold at worst (trained on "
                     f"{worst['train']}, tested on {worst['test']}, AP {worst['ap']:.2f}).")
    loo = generalisation.leave_one_out
    if len(loo):
        worst = loo.loc[loo["fake_accuracy"].idxmin()]
        lines.append(f"Trained on every generator but one, a detector caught {_percent(worst['fake_accuracy'])} of "
                     f"the left-out {worst['held_out']} at its threshold, against "
                     f"{_percent(worst['fake_accuracy_seen'])} of the generators it saw.")
    return lines


def detector_caveats(assessment: Assessment | None = None, generalisation: Generalisation | None = None) -> list[str]:
    """The caveats that hold for these results, in words true of what was tested."""
    caveats = [THRESHOLD_CAVEAT]
    if assessment is not None:
        training = assessment.training
        seen, unseen = training.get("seen_test_sources", []), training.get("unseen_test_sources", [])
        if training.get("sources") is None:
            caveats.append("The detector does not record which generators it was trained on, so these results "
                           "cannot say which test generators it saw. Scores on generators a detector was trained "
                           "on say little about generators it never saw.")
        elif seen and unseen:
            caveats.append(f"The detector was trained on images from {_names(training['sources'])}; of the test "
                           f"generators it had seen {_names(seen)} and never {_names(unseen)}. The pooled figures mix "
                           f"the two: read the seen and unseen columns apart. Images from a new generator will be "
                           f"unseen ones.")
        elif seen:
            caveats.append(f"Every synthetic test image comes from a generator the detector was trained on "
                           f"({_names(seen)}): the figures are in-distribution and say nothing of generators it never "
                           f"saw, which is what new generators will be.")
        elif unseen:
            caveats.append(f"The detector never saw the test generators ({_names(unseen)}) in training: these "
                           f"figures measure how it carries over to new generators, at this image size.")
        if training.get("sources") is not None and (seen or unseen):
            caveats.append("Seen or unseen is judged by source name (the generator a corpus's manifest names, else "
                           "its folder): images of another model that goes by the same name count as seen.")
        if len(assessment.robustness) == 0:
            caveats.append("No perturbation sweep was run: how the scores hold up under JPEG, blur or resizing "
                           "was not measured here.")
    if generalisation is not None:
        caveats.append("On the diagonal of the cross-generator matrix a detector is tested on the generator it "
                       "was trained on; off the diagonal it meets one it never saw. The off-diagonal cells, not "
                       "the diagonal, predict how a detector fares on a new generator.")
    return caveats


def assessment_section(assessment: Assessment, title: str = "Detector", intro: str = "",
                       section_id: str = "detector", summary: bool = True) -> Section:
    """One detector on one test set, from its saved :class:`Assessment`. ``summary``: open with the
    headline sentences of :func:`assessment_summary` (leave them out where the report's own summary
    already holds them)."""
    report, scores = assessment.report, assessment.scores
    threshold = float(report.threshold)
    detector = assessment.detector.get("model", {})
    target = assessment.detector.get("target_fpr")
    section = Section(id=section_id, title=title, intro=intro or (
        f"{describe_detector(detector)}, {_trained_on(assessment)}, tested on {report.n_real} real and "
        f"{report.n_fake} synthetic images{_from_training_folders(assessment)}. Its threshold "
        f"({threshold:.3g}) was fixed on held-out real images"
        + (f" for a {target:.1%} false-positive rate." if target is not None else ".")))
    if summary:  # what the intro does not say already: the headline figures, seen against unseen, failures
        section.add(Text(" ".join(assessment_summary(assessment)[1:]), kind="note"))
    section.add(*(_metric(report, name, percent=name != "ap") for name in HEADLINE if name in report.metrics))
    unseen = assessment.by_training.get("unseen")
    if unseen is not None and "seen" in assessment.by_training:
        section.add(*(Metric(f"{METRIC_TITLES[name]}, generators it never saw", unseen.metrics[name].value,
                             unseen.metrics[name].ci_low, unseen.metrics[name].ci_high,
                             fmt=".1%" if name in PERCENT else ".3f")
                      for name in ("ap", "tpr_at_1pct_fpr") if unseen.metrics[name].value is not None))
    if report.n_real and report.n_fake:
        section.add(Figure.from_matplotlib(roc_pr_figure(scores, threshold), "ROC and precision-recall curves",
                                           name="detector-curves",
                                           caption="One curve per generator against all reals; the star is "
                                                   "the deployed threshold."))
    table = report.table()
    table.insert(0, "what", [METRIC_TITLES.get(m, m) for m in table["metric"]])
    section.add(Table("All metrics, with 95 % intervals", table.drop(columns=["metric"]), name="detector-metrics",
                      caption="Bootstrap intervals for curve metrics, Wilson intervals for rates at the threshold."))
    seen_unseen = seen_unseen_table(assessment)
    if len(seen_unseen):
        section.add(Table("Seen and unseen generators", seen_unseen, name="detector-seen-unseen",
                          caption="The same metrics on the synthetic images of generators the detector was "
                                  "trained on and of generators it never saw, each against all real test "
                                  "images, beside the pooled figures; 95 % intervals in brackets. New "
                                  "generators will be unseen ones."))
    per_source = report.per_source_table()
    if len(per_source):
        section.add(Table("Per source", per_source, name="detector-per-source",
                          caption="Fakes: share caught at the threshold (tpr) and AP against all reals; "
                                  "seen_in_training: whether the detector was trained on that source. "
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


def generalisation_section(generalisation: Generalisation, section_id: str = "detector-generalisation",
                           title: str = "Does it generalise to other generators?",
                           intro: str = "One detector per training set, each tested on every generator's held-out "
                                        "images. The diagonal is in-distribution; off the diagonal, a detector "
                                        "meets a generator it never saw.") -> Section:
    """The cross-generator matrix and leave-one-generator-out, as heatmaps and tables."""
    section = Section(id=section_id, title=title, intro=intro)
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
                     title: str = "AI-image detectors", intro: str = "", summary: bool = True) -> Section:
    """The detectors' report section: an assessment, a cross-generator study, or both. ``summary``:
    the assessment opens with its headline sentences (see :func:`assessment_section`)."""
    subsections = []
    if assessment is not None:
        subsections.append(assessment_section(
            assessment, title="Detector trained on all generators" if generalisation is not None else "Detector",
            summary=summary))
    if generalisation is not None:
        subsections.append(generalisation_section(generalisation))
    return Section(id="detectors", title=title, intro=intro, caveats=detector_caveats(assessment, generalisation),
                   subsections=subsections)
