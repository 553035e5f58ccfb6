"""CLIP detector (frozen open_clip encoder + probe): a tiny open_clip model built from a config and saved
as a local checkpoint stands in for downloaded weights, loaded through the same ``pretrained=`` path."""

import json
import pickle

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file
from synthscope.registry import load_detector
from synthscope.detectors.clip import (
    ClipDetector,
    ClipEncoder,
    FeatureCache,
    image_keys,
    train_clip_detector,
)
from synthscope.detectors.metrics import threshold_at_fpr
from synthscope.detectors.scan import scan_folder
from synthscope.detectors.assessment import evaluate_detector
from synthscope.detectors.data import load_labelled, stratified_split
from synthscope.generators.corpus import CorpusWriter
from synthscope.generators.data import load_digits
from tiny_clip import TINY, TINY_CONFIG, make_tiny_clip

FAST = {"model": TINY, "size": 16, "target_fpr": 0.05, "device": "cpu", "progress": False}




@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny open_clip architecture registered like a built-in one, and its weights as a local file."""
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Real grey digits; a 'generator' that tints them orange (trivially separable)."""
    root = tmp_path_factory.mktemp("clip-corpora")
    digits = load_digits(16).images.expand(-1, 3, -1, -1).contiguous()
    tint = torch.tensor([1.0, 0.6, 0.2]).view(1, 3, 1, 1)
    parts = {"real": digits[:120], "fake": digits[120:240] * tint + 0.1,
             "test-real": digits[240:300], "test-fake": digits[300:360] * tint + 0.1}
    for name, images in parts.items():
        source = "real" if "real" in name else "tintgan"
        CorpusWriter(root / name, {"generator": source}).append(images.clamp(0, 1), [{"source": source}] * len(images))
    return {name: root / name for name in parts}


@pytest.fixture(scope="module")
def logistic(corpora, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("clip-logistic")
    return train_clip_detector(corpora["real"], [corpora["fake"]], out, checkpoint=checkpoint, **FAST)


def test_logistic_probe_threshold_comes_from_held_out_reals_only(logistic, corpora):
    saved = json.loads((logistic.out / "detector.json").read_text())
    assert saved["model"]["kind"] == "clip" and saved["model"]["probe"] == "logistic"
    assert saved["model"]["size"] == 16 and saved["model"]["channels"] == 3
    assert saved["model"]["pretrained"] is None and len(saved["model"]["checkpoint_sha256"]) == 64
    assert saved["model"]["probe_options"]["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)
    assert len(saved["probe_sha256"]) == 64 and "held-out real" in saved["threshold_source"]
    # what the training images looked like, for scans to compare with: 240 grey and orange 16 px images
    domain = saved["training_domain"]
    assert domain["n_images"] == 240 and domain["native"]["min_side"] == 16 and domain["colour_share"] == 0.5
    data = load_labelled(corpora["real"], [corpora["fake"]], size=16)
    _, val = stratified_split(data, 0.2, seed=0)
    val_scores = logistic.detector.score(val.images)
    assert logistic.threshold == saved["threshold"] == threshold_at_fpr(val_scores[val.labels == 0], 0.05)
    assert (logistic.out / "history.csv").is_file() and len(logistic.history) == 5


def test_evaluate_and_scan_open_a_clip_detector_folder(logistic, corpora, tmp_path):
    report, table = evaluate_detector(logistic.out, corpora["test-real"], [corpora["test-fake"]], n_boot=50,
                                      device="cpu", return_scores=True)
    assert report["ap"] > 0.95 and report.n_real == 60 and report.n_fake == 60
    assert set(report.per_source_table()["source"]) == {"real", "tintgan"}
    folder = tmp_path / "scan"
    (folder / "sub").mkdir(parents=True)
    fakes = sorted((corpora["test-fake"] / "images").iterdir())[:3]
    for file in fakes:
        (folder / "sub" / file.name).write_bytes(file.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    rows = scan_folder(logistic.out, folder, tmp_path / "scores.csv", device="cpu", progress=False)
    assert len(rows) == 4 and (tmp_path / "scores.csv").is_file()
    assert rows.set_index("path").loc["notes.txt", "error"] != ""
    images = rows[rows["error"] == ""]
    assert len(images) == 3 and images["score"].between(0, 1).all()
    # the scan's PNGs are the test corpus's pixels: the same scores as in the evaluation
    expected = table.set_index("file")["score"]
    for file, score in zip(fakes, images["score"]):
        assert score == pytest.approx(expected[str(file.absolute())], abs=1e-6)


def test_save_load_round_trip_gives_identical_scores_and_never_unpickles(logistic, monkeypatch):
    images = torch.rand(6, 3, 16, 16)
    before = logistic.detector.score(images)

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    again, config = load_detector(logistic.out)
    assert isinstance(again, ClipDetector) and config["model"]["kind"] == "clip"
    assert np.array_equal(before, again.score(images))
    saved = sorted(p.name for p in logistic.out.rglob("*") if p.is_file())
    assert not [name for name in saved if name.endswith((".pt", ".pth", ".bin", ".pkl", ".pickle"))]
    assert set(load_file(str(logistic.out / "probe.safetensors"))) == {"coef", "intercept"}


def test_second_evaluation_and_other_probes_reuse_cached_features(logistic, checkpoint, corpora, tmp_path):
    # the k-NN probe on the same corpora: every feature comes from the logistic run's cache
    run = train_clip_detector(corpora["real"], [corpora["fake"]], tmp_path / "knn", checkpoint=checkpoint,
                              probe="knn", k=5, **FAST)
    assert run.detector.encoder.images_encoded == 0
    assert set(load_file(str(tmp_path / "knn" / "probe.safetensors"))) == {"features", "labels"}
    first = evaluate_detector(tmp_path / "knn", corpora["test-real"], [corpora["test-fake"]], n_boot=20, device="cpu")
    assert first["roc_auc"] > 0.95
    detector, _ = load_detector(tmp_path / "knn")  # a fresh detector: only the on-disk cache can help it
    test = load_labelled(corpora["test-real"], [corpora["test-fake"]], size=16)
    scores = detector.score(test.images)
    assert detector.encoder.images_encoded == 0 and detector.cache.hits == len(test) and detector.cache.misses == 0
    assert np.array_equal(scores, run.detector.score(test.images))  # save/load round trip


def test_evaluation_uses_the_feature_cache_training_was_told_to_use(checkpoint, corpora, tmp_path):
    own = tmp_path / "own-cache"
    train_clip_detector(corpora["real"], [corpora["fake"]], tmp_path / "own", checkpoint=checkpoint,
                        cache_dir=own, **FAST)
    reopened, _ = load_detector(tmp_path / "own")
    assert reopened.cache.folder.parent == own
    test = load_labelled(corpora["test-real"], [corpora["test-fake"]], size=16)
    reopened.score(test.images)  # first evaluation: encodes the test images into the own cache
    again, _ = load_detector(tmp_path / "own")
    again.score(test.images)
    assert again.cache.hits == len(test) and again.cache.misses == 0 and again.encoder.images_encoded == 0
    train_clip_detector(corpora["real"], [corpora["fake"]], tmp_path / "none", checkpoint=checkpoint,
                        cache=False, **FAST)
    assert load_detector(tmp_path / "none")[0].cache is None


def test_corrupt_or_partial_shards_are_recomputed(checkpoint, tmp_path):
    encoder = ClipEncoder(TINY, checkpoint=checkpoint)
    images = torch.rand(10, 3, 16, 16)
    first = ClipDetector(encoder, None, 16, 3, FeatureCache(tmp_path, encoder.model_id))
    features = first.features(images, batch_size=4)  # three shards: 4 + 4 + 2 images
    shards = sorted(first.cache.folder.glob("*.safetensors"))
    assert len(shards) == 3 and encoder.images_encoded == 10
    broken = sum(len(load_file(str(shard))["keys"]) for shard in shards[:2])
    shards[0].write_bytes(shards[0].read_bytes()[:50])  # partial (an interrupted copy)
    data = bytearray(shards[1].read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the stored features
    shards[1].write_bytes(bytes(data))
    fresh = ClipDetector(encoder, None, 16, 3, FeatureCache(tmp_path, encoder.model_id))
    with pytest.warns(UserWarning, match="unreadable feature-cache shard"):
        again = fresh.features(images, batch_size=4)
    assert torch.allclose(features, again, atol=1e-6)
    assert fresh.cache.misses == broken and fresh.cache.hits == 10 - broken
    assert encoder.images_encoded == 10 + broken
    later = ClipDetector(encoder, None, 16, 3, FeatureCache(tmp_path, encoder.model_id))
    later.features(images)
    assert later.cache.hits == 10 and encoder.images_encoded == 10 + broken


def test_greyscale_input_is_expanded_and_duplicates_are_encoded_once(logistic):
    grey = torch.rand(3, 1, 16, 16)
    batch = torch.cat([grey, grey])  # the same three images twice
    encoded = logistic.detector.encoder.images_encoded
    scores = logistic.detector.score(batch)
    assert logistic.detector.encoder.images_encoded == encoded + 3
    assert np.array_equal(scores[:3], scores[3:])
    assert np.allclose(scores[:3], logistic.detector.score(grey.expand(-1, 3, -1, -1)), atol=1e-6)
    assert len(set(image_keys(batch))) == 3


def test_weights_that_cannot_be_had_are_one_clear_error(checkpoint, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no such file") as missing:
        ClipEncoder(TINY, checkpoint=tmp_path / "absent.safetensors")
    assert "--clip-checkpoint" in str(missing.value)

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download file (open_clip_pytorch_model.bin): no network\nlong detail")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(ValueError) as error:
        ClipEncoder("ViT-B-32", "laion2b_s34b_b79k")
    message = str(error.value)
    assert "ViT-B-32/laion2b_s34b_b79k" in message and "HF_HUB_OFFLINE" in message
    assert "--clip-checkpoint" in message and "\n" not in message
    assert error.value.__cause__ is None and error.value.__suppress_context__
    with pytest.raises(ValueError, match="unknown pretrained tag 'nope'.*laion2b_s34b_b79k"):
        ClipEncoder("ViT-B-32", "nope")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        ClipEncoder("no-such-model", checkpoint=checkpoint)
    state = load_file(str(checkpoint))
    state.pop("visual.proj")  # weights of another architecture
    save_file(state, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match=f"could not be loaded as open_clip model '{TINY}'"):
        ClipEncoder(TINY, checkpoint=tmp_path / "other.safetensors")


def test_a_changed_checkpoint_or_unknown_architecture_is_handled(logistic, checkpoint, tmp_path, monkeypatch):
    # a fresh process knows nothing of the tiny architecture: the detector folder brings it along
    monkeypatch.delitem(open_clip.factory._MODEL_CONFIGS, TINY)
    detector, _ = load_detector(logistic.out)
    assert detector.encoder.feature_dim == TINY_CONFIG["embed_dim"]
    moved = tmp_path / "weights.safetensors"
    state = load_file(str(checkpoint))
    state["logit_scale"] = state["logit_scale"] + 1
    save_file(state, str(moved))
    config = json.loads((logistic.out / "detector.json").read_text())
    config["model"]["checkpoint"] = str(moved)
    with pytest.raises(ValueError, match="has changed since the detector was trained"):
        ClipDetector.from_config(config["model"], directory=logistic.out)


def test_cli_trains_a_clip_detector_from_a_local_checkpoint(checkpoint, corpora, tmp_path):
    from synthscope.cli import main

    out = tmp_path / "cli-clip"
    assert main(["detect", "train", "--kind", "clip", "--clip-model", TINY, "--clip-checkpoint", str(checkpoint),
                 "--probe", "knn", "--k", "5", "--real", str(corpora["real"]), "--fake", str(corpora["fake"]),
                 "--size", "16", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    saved = json.loads((out / "detector.json").read_text())
    assert saved["model"]["kind"] == "clip" and saved["model"]["probe"] == "knn"
    results = tmp_path / "eval"
    assert main(["detect", "eval", str(out), "--real", str(corpora["test-real"]), "--fake",
                 str(corpora["test-fake"]), "--out", str(results), "--bootstrap", "20", "--quiet"]) == 0
    assert json.loads((results / "metrics.json").read_text())["metrics"]["ap"]["value"] > 0.9
