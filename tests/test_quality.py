"""Tests for synthscope.generators.quality: Fréchet distance, PRDC, the feature classifier, adherence."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from synthscope.generators.conditioning import Vocabulary
from synthscope.generators.data import load_digits
from synthscope.generators.imageset import ImageSet
from synthscope.generators.quality import (
    FeatureClassifier,
    QualityReport,
    evaluate_quality,
    frechet_distance,
    precision_recall_density_coverage,
    prompt_adherence,
    train_feature_classifier,
)
from synthscope.stats import wilson_interval

# --------------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------------


def _diagonal_set(mu: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Points mu ± c_i e_i: sample mean exactly mu, sample covariance exactly diagonal 2 c_i^2 / (n-1)."""
    d = len(mu)
    points = np.concatenate([np.diag(scales), -np.diag(scales)]) + mu
    assert points.shape == (2 * d, d)
    return points


def test_frechet_identical_sets_is_zero():
    feats = np.random.default_rng(0).normal(size=(300, 16))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_frechet_matches_hand_computed_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 0.0])
    c1, c2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    a, b = _diagonal_set(mu1, c1), _diagonal_set(mu2, c2)
    n = len(a)
    s1, s2 = 2 * c1**2 / (n - 1), 2 * c2**2 / (n - 1)  # np.cov with ddof=1, as in FID
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # Hand value, so that a shared mistake in the formula above cannot hide: |mu|^2 = 13.
    assert expected == pytest.approx(13 + (2 / 5) * ((1 - 3) ** 2 + (2 - 0.5) ** 2 + 0), rel=1e-12)


def test_frechet_one_dimensional():
    a = np.array([[0.0], [2.0]])  # mean 1, var 2
    b = np.array([[5.0], [13.0]])  # mean 9, var 32
    assert frechet_distance(a, b) == pytest.approx(64 + 2 + 32 - 2 * 8, rel=1e-12)


def test_frechet_symmetric_and_rotation_invariant():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8))  # correlated, full covariance
    b = rng.normal(loc=0.5, size=(300, 8))
    fd = frechet_distance(a, b)
    assert fd > 1.0
    assert frechet_distance(b, a) == pytest.approx(fd, rel=1e-8)
    # The distance only depends on geometry: an orthogonal change of basis keeps it (a diagonal-only
    # implementation would not).
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert frechet_distance(a @ q, b @ q) == pytest.approx(fd, rel=1e-6)


def test_frechet_singular_covariance_is_finite():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 50)), rng.normal(size=(20, 50)) + 1.0  # n < d: singular covariances
    a[:, :10] = 0.0  # dead units, as with ReLU features
    b[:, :10] = 0.0
    fd = frechet_distance(a, b)
    assert math.isfinite(fd) and fd > 30  # the mean shift alone contributes 40
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-5)


def test_frechet_rejects_bad_input():
    with pytest.raises(ValueError, match="dimensions"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# --------------------------------------------------------------------------------------------------
# Precision / recall / density / coverage
# --------------------------------------------------------------------------------------------------


def _prdc_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """A literal transcription of the clovaai ``prdc`` reference with full distance matrices."""

    def dist(x, y):
        return np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))

    def radii(x):
        return np.partition(dist(x, x), k, axis=1)[:, k]  # k-th smallest after the self-distance 0

    r_real, r_fake, d = radii(real), radii(fake), dist(real, fake)
    return {
        "precision": (d < r_real[:, None]).any(axis=0).mean(),
        "recall": (d < r_fake[None, :]).any(axis=1).mean(),
        "density": (1 / k) * (d < r_real[:, None]).sum(axis=0).mean(),
        "coverage": (d.min(axis=1) < r_real).mean(),
    }


def test_prdc_identical_sets():
    feats = np.random.default_rng(0).normal(size=(200, 5))
    m = precision_recall_density_coverage(feats, feats, k=5)
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["coverage"] == 1.0
    # Each real ball holds itself and its k-1 nearest neighbours, so the mean count is exactly k.
    assert m["density"] == pytest.approx(1.0, abs=1e-12)
    assert (m["k"], m["n_real"], m["n_fake"]) == (5, 200, 200)


def test_prdc_disjoint_sets():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(100, 4)), rng.normal(size=(80, 4)) + 1000.0
    m = precision_recall_density_coverage(real, fake, k=3)
    assert (m["precision"], m["recall"], m["density"], m["coverage"]) == (0.0, 0.0, 0.0, 0.0)


def test_prdc_hand_built_case():
    # Real points on a line, k=1: every real ball has radius 1 except the one around 6 (radius 2).
    real = np.array([0, 1, 2, 3, 4, 6], dtype=float)[:, None]
    # Fake ball radii (k=1): 0.1, 0.1, 3.3 (3.9 -> 0.6), 1, 1.
    fake = np.array([0.5, 0.6, 3.9, 10, 11], dtype=float)[:, None]
    m = precision_recall_density_coverage(real, fake, k=1)
    assert m["precision"] == pytest.approx(3 / 5)  # 0.5, 0.6, 3.9 lie in real balls; 10, 11 do not
    assert m["recall"] == pytest.approx(5 / 6)  # all reals but 0 lie in the big ball around 3.9
    assert m["density"] == pytest.approx(6 / 5)  # each of 0.5, 0.6, 3.9 lies in two real balls
    assert m["coverage"] == pytest.approx(4 / 6)  # reals 2 and 6 have no fake inside their ball


@pytest.mark.parametrize("k", [1, 3, 7])
def test_prdc_matches_reference_implementation(k):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(150, 6))
    fake = rng.normal(scale=1.4, size=(90, 6)) + 0.4  # wider and shifted: all four metrics differ
    ours = precision_recall_density_coverage(real, fake, k=k, chunk_size=17)  # chunking exercised
    reference = _prdc_reference(real, fake, k)
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value), name
    assert 0 < ours["precision"] < 1 and ours["density"] != pytest.approx(1.0)  # not a trivial case


def test_prdc_rejects_too_few_points():
    with pytest.raises(ValueError, match="k=5"):
        precision_recall_density_coverage(np.zeros((5, 2)), np.ones((10, 2)), k=5)


# --------------------------------------------------------------------------------------------------
# Wilson interval
# --------------------------------------------------------------------------------------------------


def test_wilson_interval_known_values():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    low, high = wilson_interval(5, 10, confidence=0.99)
    assert low < 0.2366 and high > 0.7634
    assert wilson_interval(0, 0) == (None, None)  # undefined, not zero-width


# --------------------------------------------------------------------------------------------------
# The feature classifier on digits
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_split():
    train, heldout = load_digits(16).split(heldout_fraction=0.2, seed=123)
    return train, heldout


@pytest.fixture(scope="module")
def classifier(digits_split):
    train, _ = digits_split
    return train_feature_classifier(train, epochs=6, seed=0)


def test_classifier_accuracy_on_digits(classifier, digits_split):
    _, heldout = digits_split
    assert classifier.heldout_accuracy["digit"] > 0.9
    labels, probs = classifier.predict(heldout.images)["digit"]
    truth = heldout.attributes["digit"].tolist()
    assert np.mean([p == t for p, t in zip(labels, truth)]) > 0.9
    assert probs.shape == (len(heldout), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert set(classifier.heldout_recall["digit"]) == {str(d) for d in range(10)}
    assert classifier.train_info["n_train"] + classifier.train_info["n_heldout"] == len(digits_split[0])


def test_features_shape_and_batch_independence(classifier, digits_split):
    _, heldout = digits_split
    images = heldout.images[:100]
    full = classifier.features(images)
    assert full.shape == (100, classifier.feature_dim)
    # Eval mode: a sample's features do not depend on which batch it is in.
    np.testing.assert_allclose(classifier.features(images, batch_size=7), full, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="trained on"):
        classifier.features(torch.rand(4, 1, 32, 32))


def test_real_vs_real_much_closer_than_noise(classifier, digits_split):
    train, heldout = digits_split
    real_vs_real = frechet_distance(classifier.features(train.images[: len(heldout)]),
                                    classifier.features(heldout.images))
    noise = classifier.features(torch.rand(len(heldout), 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    noise_fd = frechet_distance(noise, classifier.features(heldout.images))
    assert real_vs_real * 20 < noise_fd


def test_evaluate_quality_reference_points(classifier, digits_split):
    train, heldout = digits_split
    # A "perfect generator": other real digits. It should score like real vs real.
    good = evaluate_quality(classifier, heldout, train, train.images[-300:], seed=0)
    assert isinstance(good, QualityReport)
    assert good.n == 300 and good.n_generated == 300 and good.n_heldout == len(heldout)
    assert good.fd_real_vs_real * 20 < good.fd_noise
    assert good.fd < good.fd_noise / 10
    assert good.prdc["precision"] > 0.8 and good.prdc["coverage"] > 0.8
    assert good.prdc["n_real"] == good.prdc["n_fake"] == 300
    # A useless generator: noise of another seed scores like the noise reference and has no fidelity.
    bad = evaluate_quality(classifier, heldout, train, torch.rand(300, 1, 16, 16), seed=0)
    assert bad.fd > 10 * good.fd_real_vs_real
    assert bad.fd == pytest.approx(bad.fd_noise, rel=0.3)
    assert bad.prdc["precision"] < 0.05
    # Reference points do not depend on the generated images.
    assert bad.fd_real_vs_real == pytest.approx(good.fd_real_vs_real)
    text = json.dumps(good.to_dict())
    assert json.loads(text)["classifier_accuracy"]["digit"] == classifier.heldout_accuracy["digit"]
    assert "FD" in good.summary() and "n=300" in good.summary()


def test_seeded_training_is_deterministic(digits_split):
    small = digits_split[0].subset(np.arange(400))
    a = train_feature_classifier(small, epochs=2, seed=3)
    state = torch.random.get_rng_state()
    b = train_feature_classifier(small, epochs=2, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is left alone
    c = train_feature_classifier(small, epochs=2, seed=4)
    images = digits_split[1].images[:50]
    np.testing.assert_array_equal(a.features(images), b.features(images))
    assert not np.allclose(a.features(images), c.features(images))


def test_save_load_round_trip(classifier, digits_split, tmp_path):
    images = digits_split[1].images[:64]
    classifier.save(tmp_path / "judge")
    assert sorted(p.name for p in (tmp_path / "judge").iterdir()) == ["config.json", "model.safetensors"]
    loaded = FeatureClassifier.load(tmp_path / "judge")
    np.testing.assert_array_equal(loaded.features(images), classifier.features(images))
    assert loaded.predict(images)["digit"][0] == classifier.predict(images)["digit"][0]
    assert loaded.heldout_accuracy == classifier.heldout_accuracy
    assert loaded.vocabulary.attributes == classifier.vocabulary.attributes
    assert loaded.train_info == classifier.train_info
    (tmp_path / "judge" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        FeatureClassifier.load(tmp_path / "judge")


# --------------------------------------------------------------------------------------------------
# Prompt adherence
# --------------------------------------------------------------------------------------------------


def test_prompt_adherence_own_labels_high_shuffled_low(classifier, digits_split):
    _, heldout = digits_split
    labels = heldout.attributes["digit"].tolist()
    own = prompt_adherence(classifier, heldout.images, [{"digit": d} for d in labels])
    assert own.keys == ["attribute", "requested"] and "level" not in own.by_group
    overall = own.overall(["requested"], keep=["judge_accuracy"]).by_group.iloc[0]
    assert overall.attribute == "digit" and overall.n == len(heldout)
    assert overall.adherence > 0.9
    assert overall.adherence_ci_low < overall.adherence < overall.adherence_ci_high
    assert overall.judge_accuracy == classifier.heldout_accuracy["digit"]
    per_value = own.by_group
    assert list(per_value.requested) == [str(d) for d in range(10)]
    assert per_value.n.sum() == len(heldout) and per_value.k.sum() == overall.k
    assert per_value.judge_recall.notna().all()
    assert (per_value.judge_accuracy == classifier.heldout_accuracy["digit"]).all()

    shuffled = list(np.random.default_rng(0).permutation(labels))
    wrong = prompt_adherence(classifier, heldout.images, [{"digit": d} for d in shuffled])
    assert wrong.overall(["requested"]).by_group.iloc[0].adherence < 0.2  # chance is about 1/10


def test_prompt_adherence_skips_unspecified_and_validates(classifier, digits_split):
    _, heldout = digits_split
    images = heldout.images[:40]
    labels = heldout.attributes["digit"].tolist()[:40]
    requested = [{"digit": d} if i % 2 == 0 else {} for i, d in enumerate(labels)]
    table = prompt_adherence(classifier, images, requested)
    assert table.overall(["requested"]).by_group.iloc[0].n == 20
    nothing = prompt_adherence(classifier, images, [{}] * 40)
    assert nothing.by_group.empty and list(nothing.by_group.columns) == nothing.schema.names
    assert nothing.overall(["requested"], keep=["judge_accuracy"]).by_group.empty
    with pytest.raises(ValueError, match="unknown attribute"):
        prompt_adherence(classifier, images[:1], [{"colour": "red"}])
    with pytest.raises(ValueError, match="not a value"):
        prompt_adherence(classifier, images[:1], [{"digit": "eleven"}])
    with pytest.raises(ValueError, match="40 images"):
        prompt_adherence(classifier, images, requested[:3])


# --------------------------------------------------------------------------------------------------
# Multi-attribute sets
# --------------------------------------------------------------------------------------------------


def _tinted_digits(n: int = 900) -> ImageSet:
    """3-channel digits tinted red/green/blue: two attributes, one with missing values."""
    digits = load_digits(16).subset(np.arange(n))
    colours = ["red", "green", "blue"]
    colour_ids = np.random.default_rng(0).integers(0, 3, size=n)
    images = torch.zeros(n, 3, 16, 16)
    for i, c in enumerate(colour_ids):
        images[i, c] = digits.images[i, 0]
    colour = [colours[c] for c in colour_ids]
    digit = [None if i % 10 == 0 else d for i, d in enumerate(digits.attributes["digit"])]  # some unlabelled
    vocabulary = Vocabulary(attributes={"digit": [str(d) for d in range(10)], "colour": colours})
    return ImageSet("tinted", images, pd.DataFrame({"digit": digit, "colour": colour}),
                    [""] * n, vocabulary)


def test_multi_head_classifier_with_missing_labels():
    data = _tinted_digits()
    model = train_feature_classifier(data, epochs=4, seed=0)
    assert set(model.heldout_accuracy) == {"digit", "colour"}
    assert model.heldout_accuracy["colour"] > 0.95
    assert model.heldout_accuracy["digit"] > 0.8
    predictions = model.predict(data.images[:10])
    assert predictions["colour"][1].shape == (10, 3) and predictions["digit"][1].shape == (10, 10)
    requested = data.attributes.iloc[:200].to_dict("records")
    table = prompt_adherence(model, data.images[:200], requested)
    counts = table.overall(["requested"]).by_group.set_index("attribute").n
    assert counts["colour"] == 200 and counts["digit"] == 180  # unlabelled digits are not counted


def test_portraits_multi_attribute():
    portraits = pytest.importorskip("synthscope.generators.portraits")
    data = portraits.generate_portraits(800, seed=0, size=16)
    model = train_feature_classifier(data, epochs=4, seed=0)
    assert set(model.heldout_accuracy) == set(data.vocabulary.names)
    chance = {name: 1 / len(values) for name, values in data.vocabulary.attributes.items()}
    # The drawn attributes are learnable: every head beats chance clearly.
    assert all(model.heldout_accuracy[a] > chance[a] + 0.1 for a in chance), model.heldout_accuracy
    assert model.features(data.images[:5]).shape == (5, model.feature_dim)
