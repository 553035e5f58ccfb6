"""CNN detector: trains on real vs synthetic corpora, fixes its threshold on held-out reals only,
saves/loads safely and reports deployment metrics."""

import json

import numpy as np
import pytest
import torch
from synthscope.detectors.cnn import CNNDetector
from synthscope.detectors.metrics import threshold_at_fpr
from synthscope.detectors.assessment import evaluate_detector
from synthscope.detectors.data import load_labelled, stratified_split
from synthscope.detectors.training import train_detector
from synthscope.generators.corpus import CorpusWriter
from synthscope.registry import load_detector
from synthscope.generators.data import load_digits


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Real digits, and a 'generator' whose images carry a faint checkerboard artefact."""
    root = tmp_path_factory.mktemp("corpora")
    digits = load_digits(16).images.expand(-1, 3, -1, -1).contiguous()
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 0.15
    real, fake, test_real, test_fake = root / "real", root / "fake", root / "test-real", root / "test-fake"
    CorpusWriter(real, {"generator": "real"}).append(digits[:300], [{"source": "real"}] * 300)
    CorpusWriter(fake, {"generator": "toygan"}).append((digits[300:600] + checker).clamp(0, 1),
                                                       [{"source": "toygan"}] * 300)
    CorpusWriter(test_real, {"generator": "real"}).append(digits[600:800], [{"source": "real"}] * 200)
    CorpusWriter(test_fake, {"generator": "toygan"}).append((digits[800:900] + checker).clamp(0, 1),
                                                            [{"source": "toygan"}] * 100)
    return real, fake, test_real, test_fake


@pytest.fixture(scope="module")
def trained(corpora, tmp_path_factory):
    real, fake, _, _ = corpora
    out = tmp_path_factory.mktemp("detector")
    run = train_detector(real, [fake], out, size=16, epochs=6, batch_size=32, p_blur=0.0, p_jpeg=0.0, target_fpr=0.05,
                         seed=0, device="cpu", progress=False)
    return run, out


def test_threshold_comes_from_held_out_reals_only(corpora, trained):
    run, out = trained
    real, fake, _, _ = corpora
    data = load_labelled(real, [fake], size=16)
    _, val = stratified_split(data, 0.2, seed=0)
    val_scores = run.detector.score(val.images)
    assert run.threshold == threshold_at_fpr(val_scores[val.labels == 0], 0.05)
    saved = json.loads((out / "detector.json").read_text())
    assert saved["threshold"] == run.threshold and "held-out real" in saved["threshold_source"]


def test_detector_separates_and_reports_at_the_fixed_threshold(corpora, trained):
    _, out = trained
    _, _, test_real, test_fake = corpora
    report = evaluate_detector(out, test_real, [test_fake], n_boot=200, device="cpu")
    assert report["ap"] > 0.95 and report["roc_auc"] > 0.95
    assert report.n_real == 200 and report.n_fake == 100
    per_source = report.per_source_table()
    assert set(per_source["source"]) == {"real", "toygan"}
    real_only = evaluate_detector(out, test_real, [], n_boot=50, device="cpu")
    assert real_only["ap"] is None and real_only["fpr_at_threshold"] is not None


def test_save_load_round_trip_gives_identical_scores(corpora, trained):
    run, out = trained
    again, config = load_detector(out)
    images = torch.rand(8, 3, 16, 16)
    assert np.array_equal(run.detector.score(images), again.score(images))
    assert config["model"]["arch"] == "small"


def test_bad_inputs_are_clear_errors(corpora, tmp_path):
    real, _, _, _ = corpora
    with pytest.raises(ValueError, match="at least one synthetic"):
        train_detector(real, [], tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="unknown detector architecture"):
        CNNDetector("vgg")
    with pytest.raises(FileNotFoundError, match="detector.json"):
        CNNDetector.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        load_labelled(tmp_path / "empty", [real])


def test_imagenet_weights_offline_fail_with_one_clear_line(monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    with pytest.raises(ValueError, match="--pretrained none"):
        CNNDetector("resnet18", pretrained="imagenet")


def test_command_line_train_eval_and_scan(corpora, tmp_path, capsys):
    import pandas as pd
    from PIL import Image

    from synthscope.cli import main

    real, fake, test_real, test_fake = corpora
    det = tmp_path / "det"
    assert main(["detect", "train", "--real", str(real), "--fake", str(fake), "--out", str(det), "--size", "16",
                 "--epochs", "2", "--patience", "1", "--blur-sigma", "0", "1", "--jpeg-quality", "60", "100",
                 "--p-blur", "0.1", "--target-fpr", "0.05", "--quiet", "--device", "cpu"]) == 0
    assert "held-out reals" in capsys.readouterr().out
    training = json.loads((det / "detector.json").read_text())["training"]
    assert (training["blur_sigma"], training["jpeg_quality"]) == ([0.0, 1.0], [60, 100])
    assert (training["p_blur"], training["p_jpeg"], training["patience"]) == (0.1, 0.5, 1)
    results = tmp_path / "results"
    assert main(["detect", "eval", str(det), "--real", str(test_real), "--fake", str(test_fake), "--out",
                 str(results), "--bootstrap", "50", "--quiet"]) == 0
    metrics = pd.read_csv(results / "metrics.csv")
    assert {"ap", "roc_auc", "tpr_at_1pct_fpr", "eer", "ece"} <= set(metrics["metric"])
    assert len(pd.read_csv(results / "scores.csv")) == 300

    folder = tmp_path / "inbox"
    (folder / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 70, 4), dtype="uint8"), "RGBA").save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype="uint8"), "L").save(folder / "nested" / "b.jpg")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "scores.csv"
    assert main(["detect", "scan", str(det), str(folder), "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 5
    readable = table[table["error"] == ""]
    assert set(readable["path"]) == {"a.png", "nested/b.jpg"}
    assert readable["decision"].isin(["real", "fake"]).all()
    assert (table.set_index("path").loc[["corrupt.png", "empty.jpg", "notes.txt"], "error"] != "").all()


def test_command_line_rejects_bad_detector_options(capsys):
    from synthscope.cli import main

    with pytest.raises(SystemExit) as info:
        main(["detect", "train", "--real", "r", "--fake", "f", "--out", "o", "--p-blur", "1.5"])
    assert info.value.code == 2
    assert main(["detect", "train", "--real", "r", "--out", "o"]) == 2  # a CNN needs synthetic corpora
    assert "--fake" in capsys.readouterr().err
    # Augmentation ranges are checked before any image is read ("r" does not exist).
    assert main(["detect", "train", "--real", "r", "--fake", "f", "--out", "o", "--blur-sigma", "2", "1"]) == 2
    assert "sigma range" in capsys.readouterr().err
    assert main(["detect", "train", "--real", "r", "--fake", "f", "--out", "o", "--jpeg-quality", "0", "50"]) == 2
    assert "quality range" in capsys.readouterr().err
    assert main(["detect", "eval", "nowhere", "--out", "o"]) == 2
    assert "--real" in capsys.readouterr().err


def _digit_png(path, index=0, colour=False, size=16):
    """A real digit (as the detector was trained on) saved as a PNG file."""
    from PIL import Image

    digit = load_digits(16).images[900 + index, 0].numpy()
    array = (digit * 255).round().astype("uint8")
    image = Image.fromarray(array, "L")
    if size != 16:
        image = image.resize((size, size))
    if colour:
        image = image.convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def test_scan_and_eval_csvs_never_hold_a_live_spreadsheet_formula(corpora, trained, tmp_path):
    import pandas as pd

    from synthscope.detectors.assessment import assess_detector
    from synthscope.detectors.scan import scan_folder

    _, out = trained
    test_real = corpora[2]
    folder = tmp_path / "inbox"
    names = ['=HYPERLINK("evil","x").png', "+1.png", "-2.png", "@x.png", "plain.png"]
    for index, name in enumerate(names):
        _digit_png(folder / name, index)
    scan_folder(out, folder, tmp_path / "scores.csv", device="cpu", progress=False)
    table = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False)
    assert sorted(table["path"]) == sorted(["'" + n if n[0] in "=+-@" else n for n in names])
    assert pd.api.types.is_float_dtype(table["score"])  # scores are still numbers

    # a manifest's source is text from outside too
    sneaky = tmp_path / "sneaky"
    images = load_digits(16).images[:20].expand(-1, 3, -1, -1).contiguous()
    CorpusWriter(sneaky, {"generator": "x"}).append(images, [{"source": "=1+1"}] * 20)
    assessment = assess_detector(out, real=test_real, fakes=[sneaky], sweeps=(), shortcut=False, n_boot=20,
                                 device="cpu", progress=False)
    assessment.save(tmp_path / "eval")
    for name in ("scores.csv", "per_source.csv"):
        saved = pd.read_csv(tmp_path / "eval" / name, keep_default_na=False)
        assert "=1+1" not in set(saved["source"]) and "'=1+1" in set(saved["source"]), name


@pytest.mark.parametrize("change, problem", [
    (lambda c: [c], "a JSON array"),
    (lambda c: {k: v for k, v in c.items() if k != "threshold"}, "'threshold' is missing"),
    (lambda c: {**c, "threshold": "high"}, "'threshold' must be a number"),
    (lambda c: {**c, "threshold": None}, "'threshold' must be a number"),
    (lambda c: {k: v for k, v in c.items() if k != "model"}, "'model' is missing"),
    (lambda c: {**c, "model": "cnn"}, "'model' must be an object"),
    (lambda c: {**c, "model": {**c["model"], "kind": None}}, "'model.kind'"),
    (lambda c: {**c, "model": {k: v for k, v in c["model"].items() if k != "arch"}}, "'model.arch' is missing"),
    (lambda c: {**c, "model": {**c["model"], "size": "16"}}, "'model.size' must be a positive whole number"),
    (lambda c: {**c, "model": {**c["model"], "channels": 4}}, "'model.channels' must be one of 1, 3"),
    (lambda c: {**c, "target_fpr": "1%"}, "'target_fpr' must be a number"),
    (lambda c: {**c, "training": []}, "'training' must be an object"),
])
def test_a_broken_detector_json_is_one_line_naming_the_file_and_the_field(trained, tmp_path, capsys, change,
                                                                        problem):
    import shutil

    from synthscope.cli import main
    from synthscope.registry import load_detector

    _, out = trained
    broken = tmp_path / "det"
    shutil.copytree(out, broken)
    config = json.loads((out / "detector.json").read_text())
    (broken / "detector.json").write_text(json.dumps(change(config)))
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        load_detector(broken)
    (tmp_path / "inbox").mkdir()
    _digit_png(tmp_path / "inbox" / "a.png")
    assert main(["detect", "scan", str(broken), str(tmp_path / "inbox"), "--out", str(tmp_path / "s.csv"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(broken / "detector.json") in err and problem in err
    assert not (tmp_path / "s.csv").exists()


def test_training_on_too_few_readable_images_or_on_one_folder_twice_is_refused(corpora, tmp_path, capsys):
    from synthscope.cli import main
    from synthscope.detectors.clip import train_clip_detector
    from synthscope.detectors.generalisation import split_corpora

    real, fake, _, _ = corpora
    # a real corpus whose manifest lists four files, of which only one can be read
    few = tmp_path / "few"
    CorpusWriter(few, {"generator": "real"}).append(load_digits(16).images[:4], [{"source": "real"}] * 4)
    for file in sorted((few / "images").iterdir())[1:]:
        file.write_bytes(b"not a png")
    args = ["--size", "16", "--epochs", "1", "--quiet", "--device", "cpu"]
    assert main(["detect", "train", "--real", str(few), "--fake", str(fake), "--out", str(tmp_path / "d1"),
                 *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no real images" in err and "1 readable real image" in err and str(few) in err
    assert not (tmp_path / "d1" / "detector.json").exists()

    for fakes in ([real], [fake, real], [fake, fake]):
        assert main(["detect", "train", "--real", str(real), "--fake", *map(str, fakes),
                     "--out", str(tmp_path / "d2"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "given twice" in err, err
    # the images of the real corpus, read as a plain folder: the same images again
    assert main(["detect", "train", "--real", str(real), "--fake", str(real / "images"),
                 "--out", str(tmp_path / "d2"), *args]) == 2
    assert "inside" in capsys.readouterr().err
    with pytest.raises(ValueError, match="given twice"):
        train_clip_detector(real, [real], tmp_path / "clip", checkpoint=tmp_path / "never-read.pt", device="cpu")
    with pytest.raises(ValueError, match="given twice"):
        split_corpora(real, [fake, real], size=16)
    # a plain folder of images holding the synthetic folder would read the fakes as real too
    plain = tmp_path / "plain"
    for index in range(3):
        _digit_png(plain / "own" / f"{index}.png", index)
    _digit_png(plain / "generated" / "0.png")
    assert main(["detect", "train", "--real", str(plain), "--fake", str(plain / "generated"),
                 "--out", str(tmp_path / "d3"), *args]) == 2
    assert "inside" in capsys.readouterr().err


def test_outputs_that_cannot_be_written_stop_the_command_before_any_work(corpora, trained, tmp_path, capsys,
                                                                         monkeypatch):
    from synthscope.cli import main
    from synthscope import registry

    real, fake, test_real, _ = corpora
    _, det = trained
    inbox = tmp_path / "inbox"
    _digit_png(inbox / "a.png")
    taken = tmp_path / "taken"
    taken.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")

    def no_work(*args, **kwargs):
        raise AssertionError("a detector was opened before the output was checked")

    monkeypatch.setattr(registry, "open_saved", no_work)  # what opens any saved folder
    for out in (taken, a_file / "scores.csv"):
        assert main(["detect", "scan", str(det), str(inbox), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--out" in err and str(out) in err, err
    assert not list(tmp_path.glob("*.parts"))
    for command in (["detect", "eval", str(det), "--real", str(test_real)],
                    ["detect", "train", "--real", str(real), "--fake", str(fake)],
                    ["detect", "matrix", "--real", str(real), "--fake", str(fake)]):
        assert main([*command, "--out", str(a_file), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--out" in err and "not a folder" in err, err


def test_scan_gives_every_entry_of_the_folder_a_row_and_reads_nothing_outside_it(trained, tmp_path):
    import os

    import pandas as pd

    from synthscope.detectors.scan import scan_folder

    _, det = trained
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    _digit_png(inbox / "a.png", 0)
    _digit_png(inbox / ".hidden.png", 1)  # hidden files are scanned like any other
    _digit_png(inbox / ".cache" / "c.png", 2)
    _digit_png(outside / "secret.png", 3)
    (inbox / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (inbox / "leak.png").symlink_to(outside / "secret.png")
    (inbox / "alias.png").symlink_to(inbox / "a.png")
    (inbox / "linked-folder").symlink_to(outside, target_is_directory=True)
    (inbox / "inner-link").symlink_to(inbox / ".cache", target_is_directory=True)
    os.mkfifo(inbox / "pipe")  # opening it would wait for a writer forever
    out = inbox / "scores.csv"  # the scan's own output (and its parts) inside the scanned folder
    first = scan_folder(det, inbox, out, device="cpu", progress=False)
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert sorted(table.index) == sorted([".cache/c.png", ".hidden.png", "a.png", "alias.png", "gone.png",
                                          "inner-link", "leak.png", "linked-folder", "pipe"])
    scored = table[table["error"] == ""]
    assert sorted(scored.index) == [".cache/c.png", ".hidden.png", "a.png", "alias.png"]
    assert scored.loc["alias.png", "score"] == scored.loc["a.png", "score"]
    assert "dangling symbolic link" in table.loc["gone.png", "error"]
    for name in ("leak.png", "linked-folder"):
        assert "outside" in table.loc[name, "error"] and table.loc[name, "score"] == "", name
    assert "folder" in table.loc["inner-link", "error"]
    assert "not a regular file" in table.loc["pipe", "error"]
    # run again: the earlier scores.csv is not a file of the folder to scan, so the rows are the same
    again = scan_folder(det, inbox, out, device="cpu", progress=False)
    pd.testing.assert_frame_equal(again, first)


def test_training_records_its_images_and_a_scan_flags_images_unlike_them(trained, tmp_path):
    import shutil

    import pandas as pd
    from PIL import Image

    from synthscope.detectors.scan import scan_folder

    _, det = trained
    domain = json.loads((det / "detector.json").read_text())["training_domain"]
    # 16 px digits saved as RGB: greyscale pictures, whatever the file's colour mode
    assert domain["native"]["min_side"] == domain["native"]["max_side"] == 16
    assert domain["colour_share"] == 0 and domain["input_channels"] == 3 and domain["n_images"] == 600
    assert set(domain["statistics"]) == {"brightness", "contrast", "colourfulness"}

    inbox = tmp_path / "inbox"
    for index in range(3):
        _digit_png(inbox / f"digit{index}.png", index)  # greyscale PNGs ("L"), like the training digits
    _digit_png(inbox / "big-digit.png", 3, size=20)  # a little larger: still in the training domain
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (12, 16, 3)), np.ones((40, 40, 1))).astype("uint8")
    Image.fromarray(smooth).save(inbox / "photo.jpg")  # a 640 x 480 colour "photo"
    tinted = (np.asarray(Image.open(inbox / "digit0.png").convert("RGB")) * [1.0, 0.6, 0.2]).astype("uint8")
    Image.fromarray(tinted).save(inbox / "tinted.png")
    Image.new("L", (16, 16), 255).save(inbox / "white.png")
    (inbox / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"3 of 7 images .*\(1 by size, 2 by colour, 2 by pixel statistics\)"):
        table = scan_folder(det, inbox, tmp_path / "scores.csv", device="cpu", progress=False)
    flags = table.set_index("path")["out_of_domain"]
    assert (flags[["digit0.png", "digit1.png", "digit2.png", "big-digit.png", "notes.txt"]] == "").all()
    assert "size 640x480 px (training images: 16 px" in flags["photo.jpg"] and "in colour" in flags["photo.jpg"]
    assert flags["tinted.png"].startswith("in colour (training images: greyscale)")
    assert flags["white.png"].startswith("brightness 1.00 (training images: ")
    saved = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False)
    assert list(saved.columns) == ["path", "score", "decision", "error", "out_of_domain"]

    older = tmp_path / "older"  # a detector saved before training images were recorded
    shutil.copytree(det, older)
    config = json.loads((older / "detector.json").read_text())
    del config["training_domain"]
    (older / "detector.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="records nothing about its training images"):
        table = scan_folder(older, inbox, tmp_path / "older.csv", device="cpu", progress=False)
    assert (table["out_of_domain"] == "").all()
