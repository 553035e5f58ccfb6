"""Detectors as estimators: hyperparameters in the constructor and back from get_params, fit then score,
a threshold fixed on held-out reals alone, and decision settings that are saved and read back in one
place; the command line's defaults and the lab's settings are the estimators' parameters."""

import argparse
import json

import numpy as np
import pytest
import torch

from synthscope.commands.detect import CNN_OPTIONS, add_training_options, training_options
from synthscope.detectors import defaults
from synthscope.detectors.clip import ClipEstimator
from synthscope.detectors.data import LabelledImages, stratified_split
from synthscope.detectors.discriminator import DiscriminatorEstimator
from synthscope.detectors.estimator import DecisionSettings, DetectorEstimator, ThresholdedDetector
from synthscope.detectors.metrics import threshold_at_fpr
from synthscope.detectors.training import CNNEstimator
from synthscope.errors import UserError
from synthscope.fingerprint import fingerprint
from synthscope.generators.data import load_digits
from synthscope.jsondata import canonical_json
from synthscope.lab import LAB_DETECTOR_TRAINING

FAST_CNN = {"size": 16, "epochs": 2, "batch_size": 32, "p_blur": 0.0, "p_jpeg": 0.0, "device": "cpu",
            "progress": False}


@pytest.fixture(scope="module")
def data():
    """Real digits, and 'fakes' carrying a faint checkerboard: 200 of each, one source each."""
    digits = load_digits(16).images[:400].expand(-1, 3, -1, -1).contiguous()
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 0.15
    images = torch.cat([digits[:200], (digits[200:] + checker).clamp(0, 1)])
    labels = np.repeat([0, 1], 200)
    return LabelledImages(images, labels, ["real"] * 200 + ["toygan"] * 200, [f"{i}.png" for i in range(400)])


class Brightness:
    """A detector fitted elsewhere: P(fake) is the mean pixel."""

    size, channels = 16, 3

    def score(self, images, batch_size=256):
        return images.mean(dim=(1, 2, 3)).double().numpy()


class MeanGap(DetectorEstimator):
    """The smallest estimator: learns whether fakes are brighter than reals, and scores by brightness."""

    kind = "test-mean-gap"

    def __init__(self, scale: float = 1.0, device: str = "cpu"):
        self.scale, self.device = scale, device

    def fit(self, train, held_out):
        images = train.images.mean(dim=(1, 2, 3))
        self.sign_ = 1.0 if images[train.labels == 1].mean() >= images[train.labels == 0].mean() else -1.0
        self.detector_ = Brightness()
        return self

    def score(self, images, batch_size=256):
        return 1 / (1 + np.exp(-self.sign_ * self.scale * super().score(images, batch_size)))

    def training_record(self, split):
        return {"sign": self.sign_, "n_train": split["n_train"]}


@pytest.mark.parametrize("estimator", [CNNEstimator(), CNNEstimator(arch="resnet18", epochs=3, blur_sigma=(0.0, 1.0)),
                                       ClipEstimator(), ClipEstimator(probe="knn", k=3),
                                       DiscriminatorEstimator("runs/gan"), MeanGap(scale=2.0)])
def test_get_params_round_trips_through_the_constructor(estimator):
    params = estimator.get_params()
    assert list(params) == type(estimator).param_names()
    again = type(estimator)(**params)
    assert again.get_params() == params
    json.loads(canonical_json(estimator.fingerprint_params()))  # plain JSON data
    assert "device" not in estimator.fingerprint_params()
    with pytest.raises(UserError, match="no parameter 'nope'"):
        estimator.set_params(nope=1)


def test_set_params_and_the_wrappers_nested_parameters():
    model = ThresholdedDetector(CNNEstimator(epochs=4), target_fpr=0.05)
    params = model.get_params()
    assert params["estimator__epochs"] == 4 and params["target_fpr"] == 0.05 and params["val_fraction"] == 0.2
    before = fingerprint(model.fingerprint_params())
    model.set_params(estimator__epochs=5, target_fpr=0.02)
    assert model.estimator.epochs == 5 and model.target_fpr == 0.02
    assert fingerprint(model.fingerprint_params()) != before
    model.set_params(estimator__device="cuda")  # how, not what: the same detector
    assert fingerprint(model.fingerprint_params()) == fingerprint(ThresholdedDetector(
        CNNEstimator(epochs=5), target_fpr=0.02).fingerprint_params())


def test_the_command_lines_defaults_are_the_estimators():
    parser = argparse.ArgumentParser()
    add_training_options(parser)
    options = training_options(parser.parse_args([]))
    cnn = CNNEstimator().get_params()
    assert {name: options[name] for name in CNN_OPTIONS} == {name: cnn[name] for name in CNN_OPTIONS}
    assert options["target_fpr"] == ThresholdedDetector(CNNEstimator()).target_fpr
    assert options["blur_sigma"] == defaults.CNN["blur_sigma"] and cnn["size"] == parser.get_default("size")


def test_the_labs_detector_settings_are_cnn_parameters():
    params = CNNEstimator(**LAB_DETECTOR_TRAINING).get_params()
    assert {name: params[name] for name in LAB_DETECTOR_TRAINING} == LAB_DETECTOR_TRAINING


def test_fit_then_score_with_the_threshold_from_held_out_reals(data):
    model = ThresholdedDetector(MeanGap(), target_fpr=0.1, seed=3).fit(data, {"real": "r"})
    _, held_out = stratified_split(data, 0.2, 3)
    reals = held_out.images[torch.from_numpy(held_out.labels == 0)]
    assert model.threshold == threshold_at_fpr(model.score(reals), 0.1)
    assert model.decision_.threshold_source == f"{len(reals)} held-out real images (no test labels)"
    scores = model.score(data.images)
    assert np.array_equal(model.decide(data.images), scores > model.threshold)
    assert model.training_ == {"real": "r", "fake_sources": ["toygan"], "sign": 1.0, "n_train": 320,
                               "seconds": model.training_["seconds"]}


def test_the_threshold_never_moves_with_fakes_or_test_labels(data):
    model = ThresholdedDetector(MeanGap(), target_fpr=0.1).fit(data)
    # other fakes (the held-out reals are the same): the same threshold
    other = LabelledImages(torch.cat([data.images[:200], torch.rand(200, 3, 16, 16)]), data.labels,
                           data.sources, data.files)
    assert ThresholdedDetector(MeanGap(), target_fpr=0.1).fit(other).threshold == model.threshold
    # labels of a test set are never read: decisions are the same whatever they say
    flipped = LabelledImages(data.images, 1 - data.labels, data.sources, data.files)
    assert np.array_equal(model.decide(flipped.images), model.decide(data.images))
    # a detector fitted elsewhere: only its threshold is fitted, on the reals of the held-out share
    prefit = ThresholdedDetector(Brightness(), target_fpr=0.1, val_fraction=1.0).fit(data)
    assert prefit.threshold == threshold_at_fpr(Brightness().score(data.images[:200]), 0.1)
    assert prefit.fit_threshold(data.images[:100], 0.2).threshold == threshold_at_fpr(
        Brightness().score(data.images[:100]), 0.2)


def test_a_cnn_is_fitted_saved_and_read_back_with_its_decision_settings(data, tmp_path):
    model = ThresholdedDetector(CNNEstimator(**FAST_CNN), target_fpr=0.05).fit(data, {"real": "r", "fakes": ["f"]})
    model.save(tmp_path)
    saved = json.loads((tmp_path / "detector.json").read_text())
    assert DecisionSettings.from_config(saved) == model.decision_
    assert saved["training"]["epochs_run"] == 2 and saved["training"]["n_val"] == 80
    assert (tmp_path / "history.csv").is_file()
    again = ThresholdedDetector.load(tmp_path)
    assert again.decision_ == model.decision_ and again.training_ == json.loads(json.dumps(model.training_))
    assert np.array_equal(again.decide(data.images), model.decide(data.images))
    assert again.seed == 0 and again.target_fpr == 0.05


def test_folders_saved_before_the_target_fpr_was_recorded_still_read():
    decision = DecisionSettings.from_config({"threshold": 0.25, "model": {}})
    assert decision == DecisionSettings(0.25, None, None)
    model = ThresholdedDetector.from_config(Brightness(), {"threshold": 0.25})
    assert model.threshold == 0.25 and model.target_fpr == defaults.THRESHOLD["target_fpr"]
    with pytest.raises(UserError, match="not fitted"):
        ThresholdedDetector(MeanGap()).detector
