"""Detector stress tests: robustness sweeps, the format-shortcut check, the cross-generator matrix
with leave-one-out, the saved assessment and the report section."""

import numpy as np
import pandas as pd
import pytest
import torch
from synthscope.detectors import generalisation as generalisation_module
from synthscope.detectors.assessment import Assessment, assess_detector
from synthscope.registry import load_detector
from synthscope.detectors.generalisation import ALL, Generalisation, cross_generator, split_corpora
from synthscope.detectors.report_section import assessment_summary, describe_detector, detector_section
from synthscope.detectors.robustness import format_shortcut_check, robustness_sweeps
from synthscope.generators.corpus import CorpusWriter
from synthscope.generators.data import load_digits
from synthscope.reports import Report, write_report

# Ranges as tuples, as the command line passes them (saved as JSON lists: reuse must still match).
TRAIN = {"epochs": 6, "batch_size": 32, "p_blur": 0.0, "p_jpeg": 0.0, "blur_sigma": (0.0, 1.0),
         "jpeg_quality": (60, 100), "target_fpr": 0.05}


def _artefacts() -> dict[str, torch.Tensor]:
    """Three toy 'generators', each leaving its own faint trace on real digits."""
    grid = torch.arange(16)
    checker = ((grid[:, None] + grid[None, :]) % 2 * 0.15).expand(3, -1, -1)
    stripes = (grid[None, :] % 4 < 2).float().expand(16, -1) * 0.15
    stripes = stripes.expand(3, -1, -1)
    tint = torch.tensor([0.15, 0.0, 0.0]).view(3, 1, 1).expand(3, 16, 16)
    return {"checker-gan": checker, "stripe-vae": stripes, "tint-diffusion": tint}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("study-corpora")
    digits = load_digits(16).images.expand(-1, 3, -1, -1).contiguous()
    CorpusWriter(root / "real", {"generator": "real"}).append(digits[:400], [{"source": "real"}] * 400)
    fakes = []
    for number, (name, artefact) in enumerate(_artefacts().items()):
        start = 400 + 300 * number
        CorpusWriter(root / name, {"generator": name}).append((digits[start:start + 300] + artefact).clamp(0, 1),
                                                              [{"source": name}] * 300)
        fakes.append(root / name)
    return root / "real", fakes


@pytest.fixture(scope="module")
def study(corpora, tmp_path_factory):
    real, fakes = corpora
    out = tmp_path_factory.mktemp("study")
    split = split_corpora(real, fakes, size=16, test_fraction=0.3, seed=0)
    result = cross_generator(split, out, n_boot=50, seed=0, device="cpu", progress=False, **TRAIN)
    return split, result, out


def test_test_parts_are_never_trained_on(study):
    split, _, _ = study
    for name in ["real", *split.names]:
        assert not set(split.train[name].files) & set(split.test[name].files)
        assert len(split.test[name]) == pytest.approx(0.3 * (len(split.train[name]) + len(split.test[name])), abs=1)


def test_matrix_has_every_pair_and_the_diagonal_is_learnt(study):
    split, result, out = study
    names = split.names
    assert len(result.matrix) == (len(names) + 1) * len(names)  # one detector per corpus, plus all of them
    pivot = result.pivot("ap")
    assert list(pivot.index) == [*names, ALL] and list(pivot.columns) == names
    for name in names:
        assert pivot.loc[name, name] > 0.95, f"in-distribution AP for {name}"
        assert pivot.loc[ALL, name] > 0.9
    # the cells carry intervals and the class counts of the shared real test part
    assert (result.matrix["ap_low"] <= result.matrix["ap"]).all()
    assert (result.matrix["n_real"] == len(split.test["real"])).all()
    assert Generalisation.load(out).matrix.shape == result.matrix.shape


def test_leave_one_out_rows_test_on_the_held_out_generator(study):
    split, result, _ = study
    loo = result.leave_one_out
    assert sorted(loo["held_out"]) == sorted(split.names)
    for _, row in loo.iterrows():
        assert row["held_out"] not in row["trained_on"].split(", ")
        assert row["n_fake"] == len(split.test[row["held_out"]])
    # the detectors were trained on corpora whose traces differ: seen generators are caught more often
    assert (loo["fake_accuracy_seen"] >= loo["fake_accuracy"]).mean() >= 2 / 3


def test_detectors_are_reused_when_nothing_changed(study, monkeypatch):
    split, result, out = study

    def refuse(*args, **kwargs):
        raise AssertionError("retrained although the training set and settings are unchanged")

    monkeypatch.setattr(generalisation_module, "fit_detector", refuse)
    again = cross_generator(split, out, n_boot=50, seed=0, device="auto", progress=False, **TRAIN)
    pd.testing.assert_frame_equal(again.matrix, result.matrix)


def test_robustness_keeps_the_threshold_and_shows_where_it_fails(study):
    split, result, _ = study
    detector, config = load_detector(result.detectors["checker-gan"])
    threshold = float(config["threshold"])
    data = split.test_set(["checker-gan"])
    table = robustness_sweeps(detector, data, threshold, sweeps=["blur", "jpeg", "noise"], n_boot=50, progress=False)
    assert list(dict.fromkeys(table["sweep"])) == ["blur", "jpeg", "noise"]
    clean = table[table["step"] == 0]
    assert clean["ap"].nunique() == 1 and clean["fpr_at_threshold"].nunique() == 1  # every sweep starts clean
    blur = table[table["sweep"] == "blur"].set_index("level")
    assert blur.loc["blur 3", "ap"] < blur.loc["blur 0", "ap"] - 0.05  # a 1-px checkerboard does not survive blur
    again = robustness_sweeps(detector, data, threshold, sweeps=["noise"], n_boot=50, progress=False)
    pd.testing.assert_frame_equal(again.reset_index(drop=True),
                                  table[table["sweep"] == "noise"].reset_index(drop=True))
    with pytest.raises(ValueError, match="unknown robustness sweep 'rain'"):
        robustness_sweeps(detector, data, threshold, sweeps=["rain"])


def test_format_shortcut_check(study):
    split, result, _ = study
    detector, config = load_detector(result.detectors[ALL])
    data = split.test_set(split.names)
    table = format_shortcut_check(detector, data, float(config["threshold"]), n_boot=0)
    png = table[table["reencoding"] == "PNG (lossless)"]
    # the corpora are PNGs already: a lossless round trip must not move a single score
    assert (png["mean_abs_score_change"] < 1e-6).all() and (png["decisions_flipped"] == 0).all()
    jpeg = table[table["reencoding"] == "JPEG 75"]
    assert set(jpeg["class"]) == {"real", "fake"} and (jpeg["mean_abs_score_change"] > 0).all()


def test_assessment_round_trip_and_report_section(study, tmp_path):
    split, result, out = study
    data = split.test_set(split.names)
    assessment = assess_detector(result.detectors[ALL], data, sweeps=["blur"], n_boot=50, device="cpu",
                                 progress=False)
    assert assessment.report["ap"] > 0.9 and len(assessment.scores) == len(data)
    assessment.save(tmp_path / "eval")
    loaded = Assessment.load(tmp_path / "eval")
    assert loaded.report["ap"] == pytest.approx(assessment.report["ap"])
    assert loaded.report.metrics["fake_accuracy"].ci_low == pytest.approx(
        assessment.report.metrics["fake_accuracy"].ci_low)
    assert np.allclose(loaded.scores["score"], assessment.scores["score"])
    section = detector_section(loaded, result)
    write_report(Report(title="detectors", sections=[section]), tmp_path / "report")
    html = (tmp_path / "report" / "index.html").read_text()
    for expected in ("Cross-generator matrix", "Robustness", "Calibration", "Most confident mistakes",
                     "Leave one generator out", "ROC and precision-recall", "A CNN detector (small, random start)"):
        assert expected in html


def test_detectors_are_named_for_readers():
    assert describe_detector({"kind": "cnn", "arch": "resnet50", "pretrained": "imagenet"}) == \
        "A CNN detector (resnet50, ImageNet weights)"
    assert describe_detector({"kind": "clip", "model": "ViT-B-32", "probe": "knn"}) == \
        "A CLIP detector (ViT-B-32 features, knn probe)"
    assert "discriminator" in describe_detector({"kind": "gan-discriminator"})


def test_cli_matrix_and_eval_write_results_and_a_report(corpora, study, tmp_path):
    from synthscope.cli import SWEEP_NAMES, main
    from synthscope.detectors.perturbations import SWEEPS

    assert tuple(SWEEPS) == SWEEP_NAMES
    real, fakes = corpora
    out = tmp_path / "matrix"
    assert main(["detect", "matrix", "--real", str(real), "--fake", *map(str, fakes[:2]), "--out", str(out),
                 "--size", "16", "--epochs", "3", "--bootstrap", "20", "--device", "cpu", "--quiet"]) == 0
    matrix = pd.read_csv(out / "matrix.csv")
    assert len(matrix) == 3 * 2 and (out / "index.html").is_file()
    page = (out / "index.html").read_text()
    assert "No summary was given" not in page and "On generators it never saw" in page
    _, result, _ = study
    evaluation = tmp_path / "eval"
    assert main(["detect", "eval", str(result.detectors[ALL]), "--real", str(real), "--fake", str(fakes[0]),
                 "--out", str(evaluation), "--robustness", "blur", "--bootstrap", "50", "--device", "cpu",
                 "--quiet"]) == 0
    robustness = pd.read_csv(evaluation / "robustness.csv")
    assert set(robustness["sweep"]) == {"blur"} and (evaluation / "format_shortcut.csv").is_file()
    assert "Robustness" in (evaluation / "index.html").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", "eval", str(result.detectors[ALL]), "--real", str(real), "--out", str(evaluation),
              "--robustness", "rain"])
    assert exit_info.value.code == 2


def test_eval_report_says_which_generators_the_detector_saw_and_scores_them_apart(corpora, tmp_path):
    import json

    import torchvision.transforms.functional as TF

    from synthscope.cli import main

    real, fakes = corpora
    checker = fakes[0]
    det = tmp_path / "det"
    assert main(["detect", "train", "--real", str(real), "--fake", str(checker), "--out", str(det), "--size", "16",
                 "--epochs", "4", "--p-blur", "0", "--p-jpeg", "0", "--target-fpr", "0.05", "--device", "cpu",
                 "--quiet"]) == 0
    assert json.loads((det / "detector.json").read_text())["training"]["fake_sources"] == ["checker-gan"]
    # new images: held-out reals, the generator it was trained on, and one it never saw (smooth, no trace)
    digits = load_digits(16).images.expand(-1, 3, -1, -1).contiguous()
    tests = {"test-real": ("real", digits[1300:1500]),
             "test-checker": ("checker-gan", (digits[1500:1650] + _artefacts()["checker-gan"]).clamp(0, 1)),
             "test-blur": ("blur-ae", TF.gaussian_blur(digits[1650:1797], 3, 0.8))}
    for name, (source, images) in tests.items():
        CorpusWriter(tmp_path / name, {"generator": source}).append(images, [{"source": source}] * len(images))
    results = tmp_path / "eval"
    assert main(["detect", "eval", str(det), "--real", str(tmp_path / "test-real"), "--fake",
                 str(tmp_path / "test-checker"), str(tmp_path / "test-blur"), "--out", str(results),
                 "--bootstrap", "100", "--device", "cpu", "--quiet"]) == 0

    per_source = pd.read_csv(results / "per_source.csv", keep_default_na=False).set_index("source")
    assert per_source.loc["checker-gan", "seen_in_training"] == "True"
    assert per_source.loc["blur-ae", "seen_in_training"] == "False"
    assert per_source.loc["real", "seen_in_training"] == ""  # reals: not a generator
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert set(scores.loc[scores["source"] == "blur-ae", "seen_in_training"]) == {"False"}

    # seen and unseen generators measured apart, each with intervals, beside the pooled figures
    split = pd.read_csv(results / "seen_unseen.csv").set_index(["subset", "metric"])
    assert set(split.index.get_level_values("subset")) == {"all", "seen", "unseen"}
    assert split.loc[("seen", "ap"), "sources"] == "checker-gan"
    assert split.loc[("unseen", "ap"), "sources"] == "blur-ae"
    assert split.loc[("unseen", "ap"), "n_fake"] == 147 and split.loc[("unseen", "ap"), "n_real"] == 200
    for subset in ("all", "seen", "unseen"):
        for metric in ("ap", "tpr_at_1pct_fpr", "fake_accuracy"):
            row = split.loc[(subset, metric)]
            assert row["ci_low"] - 1e-9 <= row["value"] <= row["ci_high"] + 1e-9, (subset, metric)
    ap = {subset: split.loc[(subset, "ap"), "value"] for subset in ("all", "seen", "unseen")}
    assert ap["unseen"] < ap["all"] - 0.05 and ap["unseen"] < ap["seen"] - 0.2  # the pooled figure hides it
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["training_sources"]["sources"] == ["checker-gan"]
    assert metrics["by_training"]["unseen"]["metrics"]["ap"]["value"] == pytest.approx(ap["unseen"])

    html = (results / "index.html").read_text()
    assert "No summary was given" not in html
    assert "images it never saw" not in html and "has learnt these generators" not in html
    assert "trained on real images against synthetic images from checker-gan" in html
    assert "On the generators it never saw (blur-ae): AP" in html and "Seen and unseen generators" in html
    assert "Weakest on blur-ae (never seen in training)" in html
    assert "none of them from the folders it was trained on" in html

    # tested on the very folders it was trained on: the report says its figures are optimistic
    again = assess_detector(det, real=real, fakes=[checker], sweeps=(), shortcut=False, n_boot=20, device="cpu",
                            progress=False)
    assert again.training["test_images_from_training_folders"] == 700
    assert any("700 of the test images come from folders it was trained on" in line
               for line in assessment_summary(again))


def test_older_detectors_fall_back_to_their_training_corpora_for_the_sources_they_saw(corpora, study, tmp_path):
    import json
    import shutil

    from synthscope.detectors.assessment import training_sources

    real, fakes = corpora
    _, result, _ = study
    config = json.loads((result.detectors["checker-gan"] / "detector.json").read_text())
    assert config["training"]["fake_sources"] == ["checker-gan"]  # the study's detectors record theirs too
    older = {"model": config["model"], "threshold": 0.5,
             "training": {"real": str(real), "fakes": [str(fakes[0]), str(tmp_path / "gone-corpus")]}}
    # sources from the training corpora's manifests where they are still there, else their folder names
    assert training_sources(older) == (["checker-gan", "gone-corpus"], "read from its training corpora")
    del older["training"]["fakes"]
    assert training_sources(older) == (None, "not recorded")
    # a study detector of an older synthscope: its assessment says it cannot tell what it saw
    folder = tmp_path / "old-study-detector"
    shutil.copytree(result.detectors["checker-gan"], folder)
    del config["training"]["fake_sources"]
    (folder / "detector.json").write_text(json.dumps(config))
    split, _, _ = study
    assessment = assess_detector(folder, split.test_set(split.names), sweeps=(), shortcut=False, n_boot=20,
                                 device="cpu", progress=False)
    assert assessment.by_training == {} and assessment.report.per_source_table()["seen_in_training"].isna().all()
    section = detector_section(assessment)
    assert any("does not record which generators" in caveat for caveat in section.caveats)


def test_robustness_numbers_do_not_depend_on_where_the_corpora_lie():
    from synthscope.detectors.data import LabelledImages

    g = torch.Generator().manual_seed(0)
    images = torch.rand(24, 1, 8, 8, generator=g)
    labels = np.r_[np.zeros(12, dtype=int), np.ones(12, dtype=int)]

    class Brightness:  # any object that scores images
        def score(self, x, batch_size=256):
            return x.mean(dim=(1, 2, 3)).numpy()

    tables = []
    for root in ("/data/lab-a", "/elsewhere/lab-b"):
        data = LabelledImages(images, labels, ["real"] * 12 + ["gan"] * 12,
                              [f"{root}/corpora/{i:06d}.png" for i in range(24)])
        tables.append(robustness_sweeps(Brightness(), data, threshold=0.5, sweeps=["noise"], n_boot=20,
                                        progress=False))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_a_study_without_leave_one_out_loads_back(tmp_path):
    # Two corpora have no leave-one-out: its table is saved empty, without a header.
    matrix = pd.DataFrame([{"train": "a", "test": "a", "ap": 1.0}])
    Generalisation(matrix, pd.DataFrame()).save(tmp_path)
    loaded = Generalisation.load(tmp_path)
    assert loaded.leave_one_out.empty
    pd.testing.assert_frame_equal(loaded.matrix, matrix)


def test_study_detectors_trained_in_two_parts_are_the_study_s_own(corpora, tmp_path, monkeypatch):
    from synthscope.detectors.generalisation import study_plan, train_study_detectors

    real, fakes = corpora
    split = split_corpora(real, fakes, size=16, test_fraction=0.3, seed=0)
    plan = study_plan(split.names, tmp_path)
    assert [planned.held_out for planned in plan] == [None] * 4 + split.names  # each, all, then one per left-out
    left_out = train_study_detectors(split, tmp_path, left_out=True, seed=0, device="cpu", progress=False, **TRAIN)
    each = train_study_detectors(split, tmp_path, left_out=False, seed=0, device="cpu", progress=False, **TRAIN)
    assert each + left_out == [planned.folder for planned in plan]

    def refuse(*args, **kwargs):
        raise AssertionError("retrained a detector that a part had trained with the same images and settings")

    monkeypatch.setattr(generalisation_module, "fit_detector", refuse)
    result = cross_generator(split, tmp_path, n_boot=50, seed=0, device="cpu", progress=False, **TRAIN)
    assert len(result.leave_one_out) == 3 and set(result.matrix["train"]) == {*split.names, ALL}
