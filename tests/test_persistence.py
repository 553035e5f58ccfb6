"""The one save/load protocol: format version, options added since a model was saved, the weights' hash,
and errors that name the file, key and fix; the registry builds and opens every family through it."""

import json

import pytest
import torch

from synthscope.detectors.cnn import CNNDetector
from synthscope.errors import UserError
from synthscope.generators.autoencoder import AutoEncoder
from synthscope.generators.diffusion import Diffusion
from synthscope.persistence import FORMAT_KEY, FORMAT_VERSION, fill_added
from synthscope.registry import build, load, load_detector, load_generator


def _edit(path, change):
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


@pytest.fixture
def run(tmp_path):
    torch.manual_seed(0)
    model = AutoEncoder(channels=1, size=8, latent_dim=2, width=4)
    model.save(tmp_path / "run", extra={"step": 1})
    return model, tmp_path / "run"


def test_the_format_version_is_written_and_an_old_config_without_it_loads(run):
    model, folder = run
    assert json.loads((folder / "config.json").read_text())[FORMAT_KEY] == FORMAT_VERSION
    _edit(folder / "config.json", lambda c: c.pop(FORMAT_KEY))
    assert torch.equal(load_generator(folder).sample(2, seed=0), model.sample(2, seed=0))


def test_a_config_from_a_newer_format_is_refused_with_the_fix(run):
    _, folder = run
    _edit(folder / "config.json", lambda c: c.__setitem__(FORMAT_KEY, FORMAT_VERSION + 1))
    with pytest.raises(UserError, match=r"run/config.json: saved in format 2, newer .*; upgrade synthscope"):
        load_generator(folder)


def test_an_option_added_later_gets_the_value_that_reproduces_the_old_model(tmp_path):
    torch.manual_seed(0)
    model = Diffusion(channels=1, size=8, block_out_channels=[4, 8], norm_num_groups=4, sample_steps=2)
    model.save(tmp_path)
    added = Diffusion.added_config["options"]

    def as_if_saved_before(config):
        for name in added:
            config["model"]["options"].pop(name)

    _edit(tmp_path / "config.json", as_if_saved_before)
    old = load_generator(tmp_path)
    assert {name: old.options[name] for name in added} == added
    assert old.options["prediction_type"] == "epsilon" != model.options["prediction_type"]


def test_fill_added_fills_only_what_is_missing_and_copies():
    saved = {"options": {"a": 1}, "bad": [1]}
    filled = fill_added(saved, {"options": {"a": 0, "b": 2}, "bad": {"x": 1}, "new": {"y": 3}})
    assert filled == {"options": {"a": 1, "b": 2}, "bad": [1], "new": {"y": 3}}
    assert saved == {"options": {"a": 1}, "bad": [1]}


def test_tampered_weights_are_refused_for_every_family(run, tmp_path):
    _, folder = run
    detector = CNNDetector("small", channels=1, size=8)
    detector.save(tmp_path / "detector", extra={"threshold": 0.5})
    for weights, opener in ((folder / "model.safetensors", load_generator),
                            (tmp_path / "detector" / "detector.safetensors", load_detector)):
        data = weights.read_bytes()
        weights.write_bytes(data[:-4] + bytes(4 * [data[-1] ^ 0xFF]))  # the last weight changed
        with pytest.raises(UserError, match=f"{weights.name}: does not match the weights_sha256"):
            opener(weights.parent)


def test_an_unknown_kind_names_the_file_and_the_known_kinds(run):
    _, folder = run
    _edit(folder / "config.json", lambda c: c["model"].__setitem__("kind", "gann"))
    with pytest.raises(UserError, match=r"run/config.json \('model.kind'\): unknown generator kind 'gann'; "
                                        r"known: ae, vae, gan, diffusion"):
        load_generator(folder)
    with pytest.raises(UserError, match=r"holds a 'gann' model, not a 'ae' one"):
        AutoEncoder.load(folder)


def test_a_judge_saved_under_its_former_kind_name_loads(tmp_path):
    from synthscope.generators.conditioning import Vocabulary
    from synthscope.generators.quality import FeatureClassifier

    judge = FeatureClassifier(Vocabulary({"digit": ["0", "1"]}), channels=1, size=8, feature_dim=4, widths=(2, 2))
    judge.save(tmp_path)

    def as_saved_before(config):  # as the first versions wrote it: no weights hash, the old kind name
        config.pop("weights_sha256")
        config["kind"] = "synthscope.FeatureClassifier"

    _edit(tmp_path / "config.json", as_saved_before)
    assert isinstance(load("judge", tmp_path), FeatureClassifier)
    assert isinstance(FeatureClassifier.load(tmp_path), FeatureClassifier)


def test_build_makes_an_untrained_model_of_the_kind_a_config_names(run):
    model, _ = run
    again = build("generator", model.config(), where="spec")
    assert type(again) is AutoEncoder and again.config() == model.config()
    with pytest.raises(UserError, match="spec: the model section must be a JSON object"):
        build("generator", "ae", where="spec")


def test_missing_folders_and_files_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such detector folder .no detector.json."):
        load_detector(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: not a run folder .no config.json.; train it with"):
        load_generator(tmp_path / "empty")


def _channels_last_weights(module: torch.nn.Module) -> list[bool]:
    weights = [p for p in module.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2:] != (1, 1)]
    assert weights, "no 3x3 convolution to check"
    return [w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in weights]


@pytest.mark.parametrize("make", [
    lambda: AutoEncoder(channels=1, size=16, latent_dim=2, width=4),
    lambda: Diffusion(channels=1, size=8, block_out_channels=[8, 8], norm_num_groups=4),
    lambda: CNNDetector("small", channels=1, size=8),
    lambda: __import__("synthscope.generators.quality", fromlist=["_"]).FeatureClassifier(
        __import__("synthscope.generators.data", fromlist=["_"]).load_data("digits", size=8, n=20).vocabulary, 1, 8),
], ids=["autoencoder", "diffusion", "detector", "judge"])
def test_networks_train_channels_last_and_save_and_load_the_same_weights(make, tmp_path):
    from safetensors.torch import load_file

    from synthscope.runtime import load_weights, save_weights

    torch.manual_seed(0)
    model = make()
    assert all(_channels_last_weights(model))  # even from a 1-channel input, every activation is NHWC
    save_weights(model, tmp_path / "w.safetensors")
    saved = load_file(str(tmp_path / "w.safetensors"))
    assert all(saved[name].is_contiguous() and torch.equal(saved[name], value)
               for name, value in model.state_dict().items())
    torch.manual_seed(1)
    again = make()
    load_weights(again, tmp_path / "w.safetensors")
    assert all(_channels_last_weights(again))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
