"""The memorisation check: nearest training images and Carlini et al.'s ratio criterion."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from synthscope.cli import main
from synthscope.errors import UserError
from synthscope.generators.memorisation import (FEATURES, FLAGGED, PIXELS, check_memorisation,
                                                nearest_training)
from synthscope.stats import wilson_interval


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(120, 1, 8, 8, generator=g), torch.rand(6, 1, 8, 8, generator=g)


def test_an_exact_copy_is_flagged_and_a_new_image_is_not(images):
    train, new = images
    check = check_memorisation(torch.cat([train[[3, 7]], new]), train)
    rows = check.per_image.set_index("sample")
    assert rows.loc[0, "nearest"] == 3 and rows.loc[1, "nearest"] == 7
    assert rows.loc[0, "ratio"] == 0.0 and rows.loc[0, "flagged"] and rows.loc[1, "flagged"]
    assert not rows.loc[2:, "flagged"].any() and (rows.loc[2:, "ratio"] > 0.5).all()
    share, low, high = check.flagged_share(PIXELS)
    assert share == pytest.approx(2 / 8) and (low, high) == pytest.approx(wilson_interval(2, 8, 0.95))


def test_a_slightly_changed_copy_is_still_flagged(images):
    train, _ = images
    near_copy = (train[[5]] + 0.01 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    check = check_memorisation(near_copy.clamp(0, 1), train)
    assert bool(check.per_image["flagged"].iloc[0]) and check.per_image["ratio"].iloc[0] < 0.05


def test_nearest_training_matches_a_brute_force_search(images):
    train, new = images
    distances, indices = nearest_training(new, train, k=5)
    brute = np.linalg.norm(new.reshape(6, 1, -1).numpy() - train.reshape(1, 120, -1).numpy(), axis=2)
    assert (indices == np.argsort(brute, axis=1)[:, :5]).all()
    assert distances == pytest.approx(np.sort(brute, axis=1)[:, :5], abs=1e-5)


def test_k_is_capped_for_a_few_dozen_training_images(images):
    train, new = images
    check = check_memorisation(new, train[:20], k=50)
    assert check.k == 19 and check.n_train == 20


def test_the_judge_s_feature_space_is_checked_too(images):
    train, new = images

    class Judge:  # any object with features(images) -> (N, D)
        def features(self, x):
            return x.reshape(len(x), -1)[:, :10].numpy()

    check = check_memorisation(torch.cat([train[:1], new]), train, judge=Judge())
    assert set(check.per_image["space"]) == {PIXELS, FEATURES}
    by_group = check.shares.by_group
    assert by_group[by_group["value"] == FLAGGED]["count"].tolist() == [1, 1]


def test_bad_input_is_one_clear_error(images):
    train, new = images
    with pytest.raises(UserError, match="same size"):
        check_memorisation(torch.rand(2, 3, 8, 8), train)
    with pytest.raises(UserError, match="between 0 and 1"):
        check_memorisation(new, train, threshold=2.0)
    with pytest.raises(UserError, match="at least 2"):
        check_memorisation(new, train[:1])


def test_the_command_flags_a_corpus_of_training_images_and_not_a_run_s_samples(tmp_path, capsys):
    # Real digits exported as a corpus are the training images themselves: every one is a copy.
    assert main(["data", "export", "digits", "--n", "30", "--out", str(tmp_path / "real"), "--quiet"]) == 0
    assert main(["generate", "memorisation", str(tmp_path / "real"), "--train", "digits",
                 "--out", str(tmp_path / "copies"), "--quiet"]) == 0
    assert "pixels: 100%" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "copies" / "memorisation.csv")
    # (not 0: the corpus holds the digits rounded to 8 bits)
    assert len(table) == 30 and table["flagged"].all() and (table["ratio"] < 0.02).all()

    assert main(["generate", "train", "--model", "ae", "--data", "digits", "--n", "60", "--steps", "3",
                 "--no-eval", "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu"]) == 0
    assert main(["generate", "memorisation", str(tmp_path / "run"), "--n", "20",
                 "--out", str(tmp_path / "check"), "--quiet", "--device", "cpu"]) == 0
    result = json.loads((tmp_path / "check" / "memorisation.json").read_text())
    assert result["n_samples"] == 20 and result["k"] == 47 and result["n_train"] == 48
    assert set(result["flagged"]) == {PIXELS, FEATURES}
    assert (tmp_path / "check" / "closest-pairs-pixels.png").is_file()
    # other samples (--seed 3) are judged by the same judge: the one trained with the run's own seed
    judge = tmp_path / "run" / "judge" / "model.safetensors"
    trained = judge.stat().st_mtime_ns
    assert main(["generate", "memorisation", str(tmp_path / "run"), "--n", "20", "--seed", "3",
                 "--out", str(tmp_path / "check3"), "--quiet", "--device", "cpu"]) == 0
    assert judge.stat().st_mtime_ns == trained


def test_a_corpus_without_a_training_set_is_bad_usage(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    assert main(["generate", "memorisation", str(tmp_path / "images"), "--out", str(tmp_path / "o")]) == 2
    assert "give --train" in capsys.readouterr().err
    assert main(["generate", "memorisation", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
