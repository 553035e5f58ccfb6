"""A team's own detector (a Hugging Face classifier or a Python function) goes through 'detect train'
(only a threshold, fixed on reals alone), 'detect eval' and 'detect scan' like synthscope's own kinds;
its scores are cached by image content and model; bad models, labels and paths are one clear error."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from synthscope.cli import main
from synthscope.detectors.metrics import threshold_at_fpr
from synthscope.generators.corpus import CorpusWriter
from synthscope.generators.data import load_digits

TEAM_MODULE = '''
import numpy as np

CALLS = []


def brightness(images):
    """The team's detector: the mean pixel of each image (fakes carry a brighter checkerboard)."""
    CALLS.append(len(images))
    return [float(np.asarray(image, dtype=float).mean() / 255) for image in images]


def logit(images):
    return [10 * s - 5 for s in brightness(images)]


def one_score(images):
    return [0.5]
'''


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Real digits, and 'fakes' carrying a faint checkerboard; training and test corpora apart."""
    root = tmp_path_factory.mktemp("corpora")
    digits = load_digits(16).images.expand(-1, 3, -1, -1).contiguous()
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 0.15
    parts = {"real": digits[:60], "fake": (digits[60:100] + checker).clamp(0, 1), "other-fake": digits[100:120] * 0.5,
             "test-real": digits[200:240], "test-fake": (digits[240:270] + checker).clamp(0, 1)}
    for name, images in parts.items():
        source = "real" if "real" in name else "toygan"
        CorpusWriter(root / name, {"generator": source}).append(images, [{"source": source}] * len(images))
    return {name: root / name for name in parts}


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    """A randomly initialised ViT classifier saved as a team would share it (model and image processor)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    def save(labels):
        torch.manual_seed(0)
        config = ViTConfig(image_size=16, patch_size=8, num_hidden_layers=1, hidden_size=16, num_attention_heads=2,
                           intermediate_size=32, num_labels=len(labels), id2label=dict(enumerate(labels)),
                           label2id={name: i for i, name in enumerate(labels)})
        folder = tmp_path_factory.mktemp("vit")
        ViTForImageClassification(config).save_pretrained(folder)
        ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
        return folder

    return save(["real", "fake"]), save(["LABEL_0", "LABEL_1"])


@pytest.fixture(scope="module")
def team_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("team")
    (folder / "team_detector.py").write_text(TEAM_MODULE)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        yield __import__("team_detector")
    sys.modules.pop("team_detector", None)


def _inbox(folder):
    """A folder to scan: two images and a broken file."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype="uint8"), "RGB").save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype="uint8"), "L").save(folder / "b.jpg")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return folder


def _train(kind, source, real, out, *extra):
    flag = "--model" if kind == "hf" else "--callable"
    return main(["detect", "train", "--kind", kind, flag, str(source), "--real", str(real), "--out", str(out),
                 "--target-fpr", "0.05", "--device", "cpu", "--quiet", *map(str, extra)])


def _vit_p_fake(folder, images):
    """P(fake) straight from transformers, as a team would compute it."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from synthscope.images import to_pil_list

    model, processor = AutoModelForImageClassification.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)
    with torch.inference_mode():
        logits = model(**processor(images=to_pil_list(images), return_tensors="pt")).logits
    return logits.float().softmax(-1)[:, 1].double().numpy()


def test_hf_model_threshold_on_reals_alone_then_eval_and_scan(corpora, tiny_vit, tmp_path, capsys):
    from synthscope.detectors.data import load_corpus

    vit, _ = tiny_vit
    det = tmp_path / "det"
    assert _train("hf", vit, corpora["real"], det, "--fake", corpora["fake"]) == 0
    assert "held-out reals" in capsys.readouterr().out
    saved = json.loads((det / "detector.json").read_text())
    reals = load_corpus(corpora["real"], 0, size=16, progress=False).images
    assert saved["threshold"] == threshold_at_fpr(_vit_p_fake(vit, reals), 0.05)
    model = saved["model"]
    assert (model["kind"], model["fake_label"], model["model"], model["size"]) == ("hf", "fake", str(vit), 16)
    assert len(model["folder_sha256"]) == 64 and saved["training"]["reported"]["ap"] is not None

    # other fakes, or none: the threshold does not move (only the reals fix it)
    for extra in (["--fake", corpora["other-fake"]], []):
        again = tmp_path / f"again{len(extra)}"
        assert _train("hf", vit, corpora["real"], again, *extra) == 0
        assert json.loads((again / "detector.json").read_text())["threshold"] == saved["threshold"]

    results = tmp_path / "results"
    assert main(["detect", "eval", str(det), "--real", str(corpora["test-real"]), "--fake", str(corpora["test-fake"]),
                 "--out", str(results), "--bootstrap", "20", "--quiet", "--device", "cpu",
                 "--robustness", "jpeg", "blur"]) == 0
    scores = pd.read_csv(results / "scores.csv")
    assert len(scores) == 70 and scores["score"].between(0, 1).all()
    sweeps = pd.read_csv(results / "robustness.csv")
    assert set(sweeps["sweep"]) == {"jpeg", "blur"} and sweeps["ap"].between(0, 1).all()
    seen = pd.read_csv(results / "scores.csv")["seen_in_training"]
    assert seen.isna().all()  # what the team's model was trained on is not known: nothing marked seen

    out = tmp_path / "scan.csv"
    assert main(["detect", "scan", str(det), str(_inbox(tmp_path / "inbox")), "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert table.loc[["a.png", "b.jpg"], "decision"].isin(["real", "fake"]).all()
    assert table.loc["corrupt.png", "error"] != "" and table.loc["corrupt.png", "decision"] == ""


def test_python_callable_train_eval_scan_and_a_second_eval_calls_it_no_more(corpora, team_module, tmp_path):
    det = tmp_path / "det"
    assert _train("python", "team_detector:brightness", corpora["real"], det, "--input-size", 16) == 0
    saved = json.loads((det / "detector.json").read_text())
    reals = load_digits(16).images[:60]
    expected = [float((r.expand(3, -1, -1) * 255).round().mean() / 255) for r in reals]
    assert saved["threshold"] == pytest.approx(threshold_at_fpr(np.array(expected), 0.05))
    assert saved["model"]["callable"] == "team_detector:brightness" and len(saved["model"]["source_sha256"]) == 64

    evaluate = ["detect", "eval", str(det), "--real", str(corpora["test-real"]), "--fake", str(corpora["test-fake"]),
                "--bootstrap", "20", "--quiet"]
    assert main([*evaluate, "--out", str(tmp_path / "first")]) == 0
    calls = len(team_module.CALLS)
    assert main([*evaluate, "--out", str(tmp_path / "second")]) == 0
    assert len(team_module.CALLS) == calls  # every score came from the cache: no call at all
    first, second = (pd.read_csv(tmp_path / name / "scores.csv") for name in ("first", "second"))
    assert first["score"].tolist() == second["score"].tolist()
    # a robustness sweep scores new (perturbed) images once; run again, it calls the function no more
    assert main([*evaluate, "--out", str(tmp_path / "third"), "--robustness", "jpeg"]) == 0
    assert len(team_module.CALLS) > calls
    calls = len(team_module.CALLS)
    assert main([*evaluate, "--out", str(tmp_path / "fourth"), "--robustness", "jpeg"]) == 0
    assert len(team_module.CALLS) == calls
    assert not pd.read_csv(tmp_path / "fourth" / "robustness.csv").empty

    out = tmp_path / "scan.csv"
    assert main(["detect", "scan", str(det), str(_inbox(tmp_path / "inbox")), "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert table.loc["corrupt.png", "error"] != "" and table.loc["a.png", "error"] == ""


def test_platt_calibration_maps_any_score_to_a_probability(corpora, team_module, tmp_path, capsys):
    det = tmp_path / "det"
    # a score that is not a probability: refused as it is, read as one once calibrated
    assert _train("python", "team_detector:logit", corpora["real"], det, "--input-size", 16) == 2
    err = capsys.readouterr().err
    assert "outside [0, 1]" in err and "--calibrate" in err
    assert _train("python", "team_detector:logit", corpora["real"], det, "--input-size", 16, "--calibrate") == 2
    assert "--fake" in capsys.readouterr().err
    assert _train("python", "team_detector:logit", corpora["real"], det, "--input-size", 16, "--calibrate",
                  "--fake", corpora["fake"]) == 0
    saved = json.loads((det / "detector.json").read_text())
    assert set(saved["model"]["calibration"]) == {"a", "b"} and "Platt" in saved["training"]["calibration"]
    results = tmp_path / "results"
    assert main(["detect", "eval", str(det), "--real", str(corpora["test-real"]), "--fake", str(corpora["test-fake"]),
                 "--out", str(results), "--bootstrap", "20", "--quiet"]) == 0
    assert pd.read_csv(results / "scores.csv")["score"].between(0, 1).all()


def test_labels_callables_and_models_that_cannot_be_used_are_one_clear_error(corpora, tiny_vit, team_module,
                                                                               tmp_path, capsys, monkeypatch):
    vit, unnamed = tiny_vit
    out = tmp_path / "det"
    assert _train("hf", vit, corpora["real"], out, "--fake-label", "synthetic") == 2
    assert "no such label; its labels: 'real', 'fake'" in capsys.readouterr().err
    assert _train("hf", unnamed, corpora["real"], out) == 2
    assert "--fake-label NAME; its labels: 'LABEL_0', 'LABEL_1'" in capsys.readouterr().err
    assert _train("hf", unnamed, corpora["real"], out, "--fake-label", "label_1") == 0  # any case

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 does at start
    assert _train("hf", "nobody/no-such-detector", corpora["real"], tmp_path / "hub") == 2
    err = capsys.readouterr().err
    assert "--model nobody/no-such-detector: could not load" in err and "--model FOLDER" in err
    assert len(err.strip().splitlines()) == 1, err
    assert _train("hf", tmp_path / "missing", corpora["real"], tmp_path / "hub") == 2
    assert "no such folder" in capsys.readouterr().err

    for path, message in (("team_detector:nothing", "team_detector has no 'nothing'"),
                          ("no_such_team_module:score", "cannot import no_such_team_module"),
                          ("team_detector", "give it as package.module:function"),
                          ("team_detector:one_score", "returned 1 scores (shape (1,)) for")):
        assert _train("python", path, corpora["real"], tmp_path / "python", "--input-size", 16) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert main(["detect", "train", "--kind", "python", "--real", str(corpora["real"]), "--out", str(out)]) == 2
    assert "--kind python needs --callable" in capsys.readouterr().err


def _corpus_files(folder):
    """The image files of a corpus, relative to it (as its manifest lists them)."""
    return pd.read_csv(folder / "manifest.csv", dtype=str)["file"].tolist()


def _write_scores(path, rows):
    pd.DataFrame(rows, columns=["path", "score"]).to_csv(path, index=False)
    return path


def _team_scores(corpora, csv_folder, seed=0):
    """A team's scores: reals low, fakes high; training reals by their path relative to the CSV's folder,
    test images by their absolute path."""
    import os

    rng = np.random.default_rng(seed)
    rows = [(os.path.relpath(corpora["real"] / f, csv_folder), rng.uniform(0, 0.6))
            for f in _corpus_files(corpora["real"])]
    rows += [(str((corpora[name] / f).absolute()), rng.uniform(*span))
             for name, span in (("test-real", (0, 0.6)), ("test-fake", (0.4, 1)))
             for f in _corpus_files(corpora[name])]
    return rows


def test_scores_csv_threshold_on_reals_rows_alone_then_eval_without_sweeps(corpora, tmp_path, capsys):
    rows = _team_scores(corpora, tmp_path)
    csv = _write_scores(tmp_path / "scores.csv", rows)
    det = tmp_path / "det"
    train = ["detect", "train", "--kind", "scores", "--real", str(corpora["real"]), "--target-fpr", "0.05", "--quiet"]
    assert main([*train, "--scores", str(csv), "--out", str(det)]) == 0
    saved = json.loads((det / "detector.json").read_text())
    reals = np.array([score for _, score in rows[:60]])
    assert saved["threshold"] == threshold_at_fpr(reals, 0.05)
    assert saved["model"]["kind"] == "scores" and saved["model"]["scores_csv"] == str(csv.absolute())
    # other test scores (their labels, their values) never move the threshold: only the reals' rows fix it
    moved = _write_scores(tmp_path / "moved.csv", rows[:60] + [(p, 1 - s) for p, s in rows[60:]])
    assert main([*train, "--scores", str(moved), "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "detector.json").read_text())["threshold"] == saved["threshold"]
    capsys.readouterr()

    results = tmp_path / "results"
    assert main(["detect", "eval", str(det), "--real", str(corpora["test-real"]), "--fake", str(corpora["test-fake"]),
                 "--out", str(results), "--bootstrap", "20", "--robustness", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "need a model synthscope can call" in out and "--robustness sweeps were not run" in out
    table = pd.read_csv(results / "scores.csv")
    assert dict(zip(table["file"], table["score"])) == pytest.approx(dict(rows[60:]))
    assert (table["decision"] == np.where(table["score"] > saved["threshold"], "fake", "real")).all()
    assert (results / "robustness.csv").read_text().strip() == ""
    assert "need a model synthscope can call" in (results / "index.html").read_text()

    # another CSV for the test images (--scores at eval) with the moved scores
    assert main(["detect", "eval", str(det), "--fake", str(corpora["test-fake"]), "--scores", str(moved),
                 "--out", str(tmp_path / "moved-results"), "--bootstrap", "20", "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "moved-results" / "scores.csv")
    assert table["score"].tolist() == pytest.approx([1 - s for _, s in rows[100:]])

    # the training CSV changed since the threshold was fixed: said, and the saved threshold is kept
    _write_scores(csv, rows[:60] + [(p, min(1.0, s + 0.01)) for p, s in rows[60:]])
    with pytest.warns(UserWarning, match="changed since its real images' rows fixed the threshold"):
        assert main(["detect", "eval", str(det), "--fake", str(corpora["test-fake"]),
                     "--out", str(tmp_path / "changed"), "--bootstrap", "20", "--quiet"]) == 0


def test_scores_csv_missing_extra_and_repeated_paths_are_clear_messages(corpora, tmp_path, capsys):
    rows = _team_scores(corpora, tmp_path)
    csv = _write_scores(tmp_path / "scores.csv", rows)
    det = tmp_path / "det"
    assert main(["detect", "train", "--kind", "scores", "--scores", str(csv), "--real", str(corpora["real"]),
                 "--out", str(det), "--quiet"]) == 0
    evaluate = ["detect", "eval", str(det), "--real", str(corpora["test-real"]), "--fake", str(corpora["test-fake"]),
                "--bootstrap", "20", "--quiet"]
    # missing: a test image without a score is one error with the count and the first few
    short = _write_scores(tmp_path / "short.csv", rows[:-5])
    capsys.readouterr()
    assert main([*evaluate, "--scores", str(short), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "5 of the 70 images have no score" in err and "relative to the folder the CSV lies in" in err
    assert len(err.strip().splitlines()) == 1, err
    # extra: a score for no test image is a warning with the count
    extra = _write_scores(tmp_path / "extra.csv", rows + [("/nowhere/x.png", 0.5), ("elsewhere/y.png", 0.1)])
    with pytest.warns(UserWarning, match="62 of its 132 rows match no image"):  # the 60 training reals and 2
        assert main([*evaluate, "--scores", str(extra), "--out", str(tmp_path / "b")]) == 0
    # a path given twice (once relative to the CSV's folder, once absolute) with two scores
    twice = _write_scores(tmp_path / "twice.csv", rows + [(str((tmp_path / rows[0][0]).resolve()), 0.99)])
    assert main([*evaluate, "--scores", str(twice), "--out", str(tmp_path / "c")]) == 2
    assert "name the same image with different scores" in capsys.readouterr().err
    # bad CSVs, a flag for another kind, and what only a callable model can do
    _write_scores(tmp_path / "nan.csv", [("a.png", "high")])
    (tmp_path / "cols.csv").write_text("file,p\na.png,0.5\n")
    for name, message in (("nan.csv", "line 2 (path 'a.png', score 'high') needs a path and a finite number"),
                          ("cols.csv", "no column path, score (found: file, p)"), ("none.csv", "no such file")):
        assert main([*evaluate, "--scores", str(tmp_path / name), "--out", str(tmp_path / "d")]) == 2
        assert message in capsys.readouterr().err
    assert main(["detect", "scan", str(det), str(_inbox(tmp_path / "inbox")), "--out", str(tmp_path / "s.csv"),
                 "--quiet"]) == 2
    assert "scans need a model synthscope can call" in capsys.readouterr().err
    assert main(["detect", "train", "--kind", "scores", "--model", "x", "--scores", str(csv), "--real",
                 str(corpora["real"]), "--out", str(tmp_path / "e")]) == 2
    assert "--kind scores takes --scores, not --model" in capsys.readouterr().err


def test_matrix_adds_a_saved_detector_as_a_fixed_row(corpora, team_module, tmp_path, capsys):
    det = tmp_path / "team"
    assert _train("python", "team_detector:brightness", corpora["real"], det, "--input-size", 16) == 0
    threshold = json.loads((det / "detector.json").read_text())["threshold"]
    out = tmp_path / "matrix"
    calls = len(team_module.CALLS)
    assert main(["detect", "matrix", "--real", str(corpora["test-real"]), "--fake", str(corpora["fake"]),
                 str(corpora["other-fake"]), "--fixed", str(det), "--out", str(out), "--size", "8", "--epochs", "1",
                 "--bootstrap", "10", "--quiet"]) == 0
    assert "team (fixed): a saved detector tested as it is" in capsys.readouterr().out
    assert len(team_module.CALLS) > calls  # read at its own 16 px, scored by the team's function
    matrix = pd.read_csv(out / "matrix.csv")
    fixed = matrix[matrix["fixed"]]
    assert fixed["train"].tolist() == ["team (fixed)"] * 2 and fixed["test"].tolist() == ["fake", "other-fake"]
    assert (fixed["threshold"] == threshold).all()
    assert (fixed[["n_real", "n_fake"]].to_numpy() == matrix.loc[matrix["train"] == "fake", ["n_real", "n_fake"]]
            .to_numpy()).all()  # the same test parts as the trained rows
    assert not matrix.loc[~matrix["fixed"], "train"].str.contains("fixed").any()
    assert main(["detect", "matrix", "--real", str(corpora["test-real"]), "--fake", str(corpora["fake"]),
                 "--fixed", str(det), str(tmp_path / "other" / "team"), "--out", str(tmp_path / "m2"),
                 "--size", "8", "--epochs", "1", "--quiet"]) == 2
    assert "two detector folders are named team" in capsys.readouterr().err
