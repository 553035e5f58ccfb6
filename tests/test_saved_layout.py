"""The on-disk layout of everything saved as config + safetensors: the files and JSON keys a generator
run, a quality judge and each detector kind write. Folders saved by earlier versions hold exactly these,
so a change to them must stay readable: these tests pin them, and check that each folder loads back to
a model giving the same numbers."""

import json

import numpy as np
import torch

from synthscope.detectors.clip import ClipDetector, ClipEncoder, LogisticProbe
from synthscope.detectors.cnn import CNNDetector
from synthscope.detectors.discriminator import make_discriminator_detector
from synthscope.generators.autoencoder import AutoEncoder
from synthscope.generators.conditioning import Vocabulary
from synthscope.generators.corpus import CorpusWriter
from synthscope.generators.gan import GAN
from synthscope.generators.quality import FeatureClassifier
from synthscope.registry import load_detector, load_generator, load_judge
from tiny_clip import TINY, make_tiny_clip

# Keys a later version may add beside those pinned here (an old folder lacks them and still loads).
ADDED_KEYS = {"format_version", "weights_sha256"}


def _keys(path, pinned, added=frozenset()):
    """The JSON at ``path``, after checking it holds every pinned key and nothing but ``added`` besides."""
    saved = json.loads(path.read_text())
    assert pinned <= set(saved), sorted(pinned - set(saved))
    assert set(saved) - pinned <= set(added), sorted(set(saved) - pinned)
    return saved


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_generator_run_folder(tmp_path):
    torch.manual_seed(0)
    model = AutoEncoder(channels=1, size=8, latent_dim=2, width=4)
    model.save(tmp_path, extra={"step": 3, "seed": 0})
    assert _files(tmp_path) == ["config.json", "model.safetensors"]
    saved = _keys(tmp_path / "config.json", {"model", "weights_sha256", "step", "seed"}, ADDED_KEYS)
    assert saved["model"] == {
        "kind": "ae", "channels": 1, "size": 8, "conditional": False, "vocabulary": None,
        "options": {**AutoEncoder.default_config, "latent_dim": 2, "width": 4}}
    again = load_generator(tmp_path)
    assert torch.equal(again.sample(3, seed=1), model.sample(3, seed=1))


def test_a_conditional_gan_run_folder(tmp_path):
    vocabulary = Vocabulary({"digit": ["0", "1"]})
    model = GAN(channels=1, size=8, vocabulary=vocabulary, conditional=True, nz=4, width=4)
    model.save(tmp_path)
    saved = _keys(tmp_path / "config.json", {"model", "weights_sha256"}, ADDED_KEYS)
    assert set(saved["model"]) == {"kind", "channels", "size", "conditional", "vocabulary", "options"}
    assert saved["model"]["vocabulary"] == vocabulary.to_dict()
    again = load_generator(tmp_path)
    assert torch.equal(again.sample(2, prompt="1", seed=0), model.sample(2, prompt="1", seed=0))


def test_a_judge_folder(tmp_path):
    torch.manual_seed(0)
    judge = FeatureClassifier(Vocabulary({"digit": ["0", "1", "2"]}), channels=1, size=8, feature_dim=8,
                              widths=(4, 4))
    judge.heldout_accuracy = {"digit": 0.5}
    judge.save(tmp_path)
    assert _files(tmp_path) == ["config.json", "model.safetensors"]
    saved = _keys(tmp_path / "config.json", {"format_version", "kind", "vocabulary", "channels", "size",
                                             "feature_dim", "widths", "heldout_accuracy", "heldout_recall",
                                             "train_info"}, ADDED_KEYS)
    assert saved["widths"] == [4, 4] and saved["format_version"] == 1
    again = load_judge(tmp_path)
    images = torch.rand(4, 1, 8, 8)
    np.testing.assert_array_equal(again.features(images), judge.features(images))
    assert again.heldout_accuracy == {"digit": 0.5}


def test_a_cnn_detector_folder(tmp_path):
    torch.manual_seed(0)
    detector = CNNDetector("small", channels=1, size=8)
    detector.save(tmp_path, extra={"threshold": 0.5, "target_fpr": 0.01})
    assert _files(tmp_path) == ["detector.json", "detector.safetensors"]
    saved = _keys(tmp_path / "detector.json", {"model", "weights_sha256", "threshold", "target_fpr"}, ADDED_KEYS)
    assert saved["model"] == {"kind": "cnn", "arch": "small", "channels": 1, "size": 8, "pretrained": None}
    again, config = load_detector(tmp_path)
    images = torch.rand(4, 1, 8, 8)
    assert np.array_equal(again.score(images), detector.score(images)) and config["threshold"] == 0.5


def test_a_clip_detector_folder(tmp_path):
    checkpoint = make_tiny_clip(tmp_path / "weights")
    encoder = ClipEncoder(TINY, checkpoint=checkpoint)
    probe = LogisticProbe(encoder.feature_dim)
    probe.coef.copy_(torch.linspace(-1, 1, encoder.feature_dim, dtype=torch.float64))
    probe.options = {"C": 1.0}
    detector = ClipDetector(encoder, probe, size=8, channels=3)
    out = tmp_path / "detector"
    detector.save(out, extra={"threshold": 0.5, "target_fpr": 0.01})
    assert _files(out) == ["detector.json", f"open_clip_config/{TINY}.json", "probe.safetensors"]
    saved = _keys(out / "detector.json", {"model", "probe_sha256", "threshold", "target_fpr"}, ADDED_KEYS)
    assert set(saved["model"]) == {"kind", "model", "pretrained", "checkpoint", "checkpoint_sha256", "model_id",
                                   "feature_dim", "encoder_image_size", "probe", "probe_options", "size",
                                   "channels", "feature_cache"}
    assert saved["model"]["kind"] == "clip" and saved["model"]["probe_options"] == {"C": 1.0}
    again, _ = load_detector(out)
    images = torch.rand(4, 3, 8, 8)
    assert np.array_equal(again.score(images), detector.score(images))


def test_a_gan_discriminator_detector_folder(tmp_path):
    torch.manual_seed(0)
    GAN(channels=1, size=8, nz=4, width=4).save(tmp_path / "run")
    CorpusWriter(tmp_path / "real", {"generator": "real"}).append(torch.rand(6, 1, 8, 8), [{"source": "real"}] * 6)
    run = make_discriminator_detector(tmp_path / "run", tmp_path / "real", tmp_path / "detector", target_fpr=0.5,
                                      device="cpu",
                                      progress=False)
    assert _files(tmp_path / "detector") == ["detector.json"]
    saved = _keys(tmp_path / "detector" / "detector.json", {"model", "threshold", "target_fpr", "threshold_source",
                                                             "training_domain", "training"}, ADDED_KEYS)
    assert set(saved["model"]) == {"kind", "gan_run", "gan_weights_sha256", "size", "channels", "conditional",
                                   "scoring"}
    assert saved["model"]["gan_run"] == str((tmp_path / "run").absolute())
    again, _ = load_detector(tmp_path / "detector")
    images = torch.rand(4, 1, 8, 8)
    assert np.array_equal(again.score(images), run.detector.score(images))
