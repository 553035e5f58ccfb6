"""The GAN's own discriminator as a detector baseline: threshold on held-out reals, the detector folder
opens through load_detector (evaluation, scans), and a run that changed since is refused."""

import json

import numpy as np
import pytest
import torch
from synthscope.registry import load_detector
from synthscope.detectors.discriminator import (
    DiscriminatorDetector,
    make_discriminator_detector,
)
from synthscope.detectors.metrics import threshold_at_fpr
from synthscope.detectors.scan import scan_folder
from synthscope.detectors.assessment import evaluate_detector
from synthscope.detectors.data import load_labelled
from synthscope.registry import load_generator
from synthscope.generators.corpus import CorpusWriter
from synthscope.generators.training import train_generator
from synthscope.generators.workflow import new_generator

GAN = {"nz": 8, "width": 8, "batch_size": 16}


def train_gan(data, run_dir, steps=4, conditional=False):
    torch.manual_seed(0)
    model = new_generator("gan", data, conditional, **GAN)
    train_generator(model, data, run_dir, steps=steps, progress=False)
    return model


@pytest.fixture(scope="module")
def setup(digits16, small_digits, tmp_path_factory):
    """A GAN trained a few steps on 256 digits; held-out real digits; a corpus of its samples."""
    root = tmp_path_factory.mktemp("discriminator")
    model = train_gan(small_digits, root / "run")
    CorpusWriter(root / "real", {"generator": "real"}).append(digits16.images[1000:1100], [{"source": "real"}] * 100)
    CorpusWriter(root / "fake", {"generator": "gan"}).append(model.sample(40, seed=1), [{"source": "gan"}] * 40)
    run = make_discriminator_detector(root / "run", root / "real", root / "detector", target_fpr=0.05, device="cpu")
    return root, model, run


def test_threshold_comes_from_the_real_corpus_only(setup):
    root, model, run = setup
    saved = json.loads((root / "detector" / "detector.json").read_text())
    assert saved["model"]["kind"] == "gan-discriminator" and saved["model"]["size"] == 16
    assert saved["model"]["gan_run"] == str((root / "run").absolute())
    assert len(saved["model"]["gan_weights_sha256"]) == 64
    assert "100 held-out real" in saved["threshold_source"] and saved["training"]["n_val"] == 100
    # the reals that fixed the threshold stand for the training images in scans' out-of-domain check
    assert saved["training_domain"]["n_images"] == 100 and saved["training_domain"]["input_channels"] == 1
    reals = load_labelled(root / "real", [], size=16, channels=1).images
    scores = run.detector.score(reals)
    assert run.threshold == saved["threshold"] == threshold_at_fpr(scores, 0.05)
    # P(fake) = sigmoid(-D) = 1 - the GAN's own P(real)
    assert np.allclose(scores, 1 - model.discriminator_score(reals).double().numpy(), atol=1e-6)


def test_the_folder_opens_for_evaluation_and_scans(setup, tmp_path):
    root, _, run = setup
    detector, _ = load_detector(root / "detector")
    assert isinstance(detector, DiscriminatorDetector) and detector.channels == 1
    images = torch.rand(5, 1, 16, 16)
    assert np.array_equal(detector.score(images), run.detector.score(images))
    report = evaluate_detector(root / "detector", root / "real", [root / "fake"], n_boot=20, device="cpu")
    assert report.n_real == 100 and report.n_fake == 40 and report["roc_auc"] is not None
    table = scan_folder(root / "detector", root / "fake" / "images", tmp_path / "scan.csv", device="cpu",
                        progress=False)
    assert len(table) == 40 and table["score"].between(0, 1).all()
    assert set(table["decision"]) <= {"real", "fake"}


def test_a_share_of_the_reals_can_be_kept_for_testing(setup, tmp_path):
    root, _, _ = setup
    run = make_discriminator_detector(root / "run", root / "real", tmp_path, val_fraction=0.3, target_fpr=0.05,
                                      device="cpu")
    assert json.loads((tmp_path / "detector.json").read_text())["training"]["n_val"] == 30
    assert run.target_fpr == 0.05


def test_a_changed_run_or_a_run_without_discriminator_is_refused(small_digits, setup, tmp_path):
    root, _, _ = setup
    run_dir = tmp_path / "run"
    train_gan(small_digits, run_dir, steps=2)
    make_discriminator_detector(run_dir, root / "real", tmp_path / "detector", device="cpu")
    train_gan(small_digits, run_dir, steps=3)  # resumed: new weights in the same folder
    with pytest.raises(ValueError, match="has changed since this detector was calibrated"):
        load_detector(tmp_path / "detector")
    ae = new_generator("ae", small_digits, latent_dim=2, width=8, batch_size=16)
    train_generator(ae, small_digits, tmp_path / "ae", steps=1, progress=False)
    with pytest.raises(ValueError, match="has no discriminator"):
        make_discriminator_detector(tmp_path / "ae", root / "real", tmp_path / "d2", device="cpu")
    with pytest.raises(FileNotFoundError, match="not a trained GAN run"):
        make_discriminator_detector(tmp_path / "absent", root / "real", tmp_path / "d3", device="cpu")


def test_a_conditional_gan_is_scored_without_a_condition(small_digits, setup, tmp_path):
    root, _, _ = setup
    model = train_gan(small_digits, tmp_path / "run", steps=2, conditional=True)
    run = make_discriminator_detector(tmp_path / "run", root / "real", tmp_path / "detector", device="cpu")
    images = small_digits.images[:6]
    null = model.null_condition(6)
    with torch.no_grad():
        logits = load_generator(tmp_path / "run").eval().critic(images * 2 - 1, null)
    assert np.allclose(run.detector.score(images), torch.sigmoid(-logits).numpy(), atol=1e-6)
    assert json.loads((tmp_path / "detector" / "detector.json").read_text())["model"]["conditional"] is True


def test_cli_trains_the_baseline_and_refuses_bad_usage(setup, tmp_path, capsys):
    from synthscope.cli import main

    root, _, _ = setup
    out = tmp_path / "cli-detector"
    assert main(["detect", "train", "--kind", "gan-discriminator", "--gan-run", str(root / "run"),
                 "--real", str(root / "real"), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert json.loads((out / "detector.json").read_text())["model"]["kind"] == "gan-discriminator"
    assert main(["detect", "train", "--kind", "gan-discriminator", "--real", str(root / "real"),
                 "--out", str(out)]) == 2
    assert "--gan-run" in capsys.readouterr().err
    assert main(["detect", "train", "--kind", "cnn", "--real", str(root / "real"), "--out", str(out)]) == 2
    assert "needs --fake" in capsys.readouterr().err
