"""The command line: conventions (--help, exit 2 on bad usage) and the generator jobs end to end."""

import subprocess
import sys

import pandas as pd
import pytest

from synthscope.cli import main

TINY_AE = ["--set", "width=8", "--set", "latent_dim=2", "--set", "batch_size=16", "--n", "64"]


def test_help_everywhere():
    for argv in (["--help"], ["generate", "--help"], ["generate", "train", "--help"],
                 ["generate", "sample", "--help"], ["data", "export", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "synthscope", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "synthscope" in result.stdout


@pytest.mark.parametrize("argv", [
    ["generate", "train", "--model", "transformer", "--out", "x"],
    ["generate", "train", "--model", "ae"],
    ["nonsense"],
])
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_input_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["generate", "train", "--model", "ae", "--out", str(tmp_path / "r"), "--data",
                 str(tmp_path / "missing-folder"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "missing-folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["generate", "train", "--model", "ae", "--out", str(tmp_path / "r"), "--set", "latnet_dim=2",
                 "--quiet"]) == 2
    assert "latnet_dim" in capsys.readouterr().err


def test_train_sample_resume_and_export(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["generate", "train", "--model", "ae", "--steps", "3", "--out", str(run), "--no-eval",
                 "--quiet", "--device", "cpu", *TINY_AE]) == 0
    assert (run / "model.safetensors").exists() and (run / "config.json").exists()

    corpus = tmp_path / "fake"
    assert main(["generate", "sample", str(run), "--n", "10", "--batch-size", "4", "--out", str(corpus), "--quiet"]) == 0
    manifest = pd.read_csv(corpus / "manifest.csv")
    assert len(manifest) == 10 and set(manifest["source"]) == {"ae"}
    first = [(corpus / f).read_bytes() for f in manifest["file"]]
    # Re-running the same command resumes: nothing is written twice.
    assert main(["generate", "sample", str(run), "--n", "10", "--batch-size", "4", "--out", str(corpus), "--quiet"]) == 0
    again = pd.read_csv(corpus / "manifest.csv")
    assert len(again) == 10 and [(corpus / f).read_bytes() for f in again["file"]] == first

    assert main(["generate", "sample", str(run), "--n", "2", "--out", str(tmp_path / "p"), "--prompt", "three",
                 "--quiet"]) == 2
    assert "without --conditional" in capsys.readouterr().err

    real = tmp_path / "real"
    assert main(["data", "export", "digits", "--n", "20", "--out", str(real), "--quiet"]) == 0
    exported = pd.read_csv(real / "manifest.csv", dtype=str)
    assert len(exported) == 20 and set(exported["source"]) == {"real"}
    assert exported["digit"].str.fullmatch(r"\d").all()


def test_interrupted_sampling_resumes_to_the_same_images(tmp_path):
    run = tmp_path / "run"
    main(["generate", "train", "--model", "ae", "--steps", "2", "--out", str(run), "--no-eval", "--quiet", *TINY_AE])
    whole, split = tmp_path / "whole", tmp_path / "split"
    main(["generate", "sample", str(run), "--n", "12", "--batch-size", "4", "--out", str(whole), "--quiet"])
    main(["generate", "sample", str(run), "--n", "4", "--batch-size", "4", "--out", str(split), "--quiet"])
    main(["generate", "sample", str(run), "--n", "12", "--batch-size", "4", "--out", str(split), "--quiet"])
    a, b = pd.read_csv(whole / "manifest.csv"), pd.read_csv(split / "manifest.csv")
    assert len(b) == 12 and list(a["key"]) == list(b["key"])
    assert [(whole / f).read_bytes() for f in a["file"]] == [(split / f).read_bytes() for f in b["file"]]


def test_unavailable_device_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["generate", "train", "--model", "ae", "--steps", "1", "--out", str(tmp_path / "r"),
                 "--device", "cuda", "--no-eval", "--quiet", *TINY_AE]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    # every command checks the device before it writes anything
    assert main(["lab", "--quick", "--out", str(tmp_path / "lab"), "--device", "cuda", "--quiet"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err and not (tmp_path / "lab").exists()


def test_train_on_a_folder_of_own_images_reports_broken_files(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "mine" / "cats"
    folder.mkdir(parents=True)
    rng = __import__("numpy").random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype="uint8")).save(folder / f"{i}.jpg")
    (folder / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.png"):
        assert main(["generate", "train", "--model", "vae", "--data", str(tmp_path / "mine"), "--size", "16",
                     "--steps", "2", "--out", str(tmp_path / "run"), "--no-eval", "--quiet",
                     "--set", "width=8", "--set", "batch_size=4"]) == 0
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert main(["generate", "train", "--model", "vae", "--data", str(tmp_path / "mine"), "--size", "16",
                 "--steps", "2", "--out", str(tmp_path / "run2"), "--no-eval", "--quiet", "--strict"]) == 2
    assert "broken.png" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="broken.png"):
        assert main(["generate", "train", "--model", "gan", "--conditional", "--data", str(tmp_path / "mine"),
                     "--size", "16", "--steps", "1", "--out", str(tmp_path / "run3"), "--no-eval", "--quiet"]) == 2
    assert "needs a data set with labels" in capsys.readouterr().err


def test_asking_for_more_samples_later_adds_only_the_missing_ones(tmp_path):
    run = tmp_path / "run"
    main(["generate", "train", "--model", "ae", "--steps", "2", "--out", str(run), "--no-eval", "--quiet", *TINY_AE])
    corpus = tmp_path / "fake"
    main(["generate", "sample", str(run), "--n", "3", "--batch-size", "8", "--out", str(corpus), "--quiet"])
    main(["generate", "sample", str(run), "--n", "10", "--batch-size", "8", "--out", str(corpus), "--quiet"])
    manifest = pd.read_csv(corpus / "manifest.csv")
    assert len(manifest) == 10 and manifest["key"].is_unique


def test_train_with_evaluation_prints_quality(tmp_path, capsys):
    assert main(["generate", "train", "--model", "ae", "--steps", "2", "--out", str(tmp_path / "run"),
                 "--quiet", "--n", "120", "--set", "width=8", "--set", "batch_size=16"]) == 0
    out = capsys.readouterr().out
    assert "trained ae to step 2" in out and "quality: FD" in out
    assert (tmp_path / "run" / "quality.json").exists() and (tmp_path / "run" / "visuals" / "samples.png").exists()


@pytest.mark.parametrize("argv", [
    ["generate", "train", "--model", "ae", "--out", "x", "--steps", "-3"],
    ["generate", "train", "--model", "ae", "--out", "x", "--steps", "0"],
    ["generate", "sample", "run", "--n", "4", "--out", "x", "--batch-size", "0"],
    ["data", "export", "digits", "--out", "x", "--n", "zero"],
])
def test_non_positive_numbers_are_bad_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "at least 1" in err or "not a whole number" in err


def test_diffusion_size_that_does_not_fit_the_unet_is_a_clear_error(tmp_path, capsys):
    assert main(["generate", "train", "--model", "diffusion", "--size", "10", "--steps", "1", "--no-eval",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "multiple of 4" in capsys.readouterr().err


def test_corpus_from_another_origin_is_refused_unless_forced(tmp_path, capsys):
    run = tmp_path / "run"
    main(["generate", "train", "--model", "ae", "--steps", "2", "--out", str(run), "--no-eval", "--quiet", *TINY_AE])
    corpus = tmp_path / "fake"
    assert main(["generate", "sample", str(run), "--n", "4", "--out", str(corpus), "--quiet"]) == 0
    first = (corpus / "images" / "000000.png").read_bytes()
    assert main(["generate", "sample", str(run), "--n", "4", "--out", str(corpus), "--seed", "1", "--quiet"]) == 2
    assert "seed" in capsys.readouterr().err
    assert (corpus / "images" / "000000.png").read_bytes() == first  # nothing already written is lost
    assert main(["generate", "sample", str(run), "--n", "4", "--out", str(corpus), "--seed", "1", "--force",
                 "--quiet"]) == 0
    assert len(pd.read_csv(corpus / "manifest.csv")) == 4
    assert (corpus / "images" / "000000.png").read_bytes() != first
    assert main(["generate", "sample", str(run), "--n", "4", "--out", str(tmp_path / "g"), "--guidance", "2",
                 "--quiet"]) == 2
    assert "only diffusion" in capsys.readouterr().err


def test_resume_with_another_seed_names_the_seed(tmp_path, capsys):
    run = tmp_path / "run"
    main(["generate", "train", "--model", "ae", "--steps", "2", "--out", str(run), "--no-eval", "--quiet", *TINY_AE])
    assert main(["generate", "train", "--model", "ae", "--steps", "4", "--out", str(run), "--no-eval", "--quiet",
                 "--seed", "3", *TINY_AE]) == 2
    assert "--seed 0" in capsys.readouterr().err


def test_an_output_of_the_wrong_kind_is_bad_usage_before_any_work(tmp_path, capsys):
    folder, file = tmp_path / "folder", tmp_path / "file.csv"
    folder.mkdir()
    file.write_text("x")
    for argv, message in ((["audit", "import-labels", str(tmp_path / "sheet"), "x.csv", "--out", str(folder)],
                           "is a folder; give the path of a file to write"),
                          (["audit", "init", "--out", str(folder)], "is a folder"),
                          (["data", "export", "digits", "--out", str(file)], "exists and is not a folder"),
                          (["generate", "train", "--model", "ae", "--out", str(file)], "exists and is not a folder")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert file.read_text() == "x" and list(folder.iterdir()) == []


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, monkeypatch, capsys):
    from synthscope.errors import UserError
    from synthscope.generators import workflow

    def user_problem(*args, **kwargs):
        raise UserError("corpus/manifest.csv: line 3 lists ../x.png, which is outside the corpus folder")

    monkeypatch.setattr(workflow, "export_builtin", user_problem)
    assert main(["data", "export", "digits", "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip() == ("synthscope: error: corpus/manifest.csv: line 3 lists ../x.png, "
                                               "which is outside the corpus folder")

    def bug(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")  # as numpy would

    monkeypatch.setattr(workflow, "export_builtin", bug)
    with pytest.raises(ValueError, match="broadcast"):
        main(["data", "export", "digits", "--out", str(tmp_path / "b")])


@pytest.mark.parametrize("argv", [
    ["generate", "sample", "run", "--n", "4", "--out", "c", "--seed", "-1"],
    ["generate", "train", "--model", "ae", "--out", "r", "--seed", str(2**80)],
    ["audit", "label-sheet", "audit", "--out", "sheet", "--seed", "-1"],
])
def test_a_seed_out_of_range_is_bad_usage_naming_the_option(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "argument --seed: must be between 0 and" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing was created
