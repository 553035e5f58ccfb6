"""Unit tests of the four generators and the shared training loop (a few steps on tiny data)."""

import json

import pytest
import torch
from synthscope.registry import load_generator
from synthscope.generators.conditioning import PromptError
from synthscope.generators.training import STATE_FILE, train_generator
from synthscope.generators.workflow import new_generator

SMALL = {
    "ae": {"latent_dim": 2, "width": 8, "batch_size": 16},
    "vae": {"latent_dim": 4, "width": 8, "batch_size": 16},
    "gan": {"nz": 8, "width": 8, "batch_size": 16},
    "diffusion": {"block_out_channels": [8, 16], "norm_num_groups": 4, "batch_size": 16,
                  "sample_steps": 4, "train_timesteps": 100},
}
KINDS = list(SMALL)


def make(kind, data, conditional=False, **extra):
    torch.manual_seed(0)  # initial weights, as workflow.train_run seeds them
    return new_generator(kind, data, conditional, **{**SMALL[kind], **extra})


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", KINDS)
def test_sample_shape_range_and_seeded_determinism(kind, small_digits, tmp_path):
    model = make(kind, small_digits)
    train_generator(model, small_digits, tmp_path, steps=3, progress=False)
    a = model.sample(5, seed=1)
    assert a.shape == (5, 1, 16, 16)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, model.sample(5, seed=1))
    assert not torch.equal(a, model.sample(5, seed=2))


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_gives_identical_samples(kind, small_digits, tmp_path):
    model = make(kind, small_digits)
    train_generator(model, small_digits, tmp_path, steps=3, progress=False)
    again = load_generator(tmp_path)
    assert torch.equal(model.sample(4, seed=3), again.sample(4, seed=3))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["step"] == 3 and len(config["weights_sha256"]) == 64


@pytest.mark.parametrize("kind", KINDS)
def test_resume_continues_exactly_where_it_stopped(kind, small_digits, tmp_path):
    straight = make(kind, small_digits)
    run = train_generator(straight, small_digits, tmp_path / "straight", steps=6, progress=False)
    assert run.step == 6 and len(run.history) == 6

    torch.manual_seed(999)  # the global RNG state must come from the checkpoint, not from here
    first = make(kind, small_digits)
    train_generator(first, small_digits, tmp_path / "split", steps=3, progress=False)
    second = make(kind, small_digits)
    torch.manual_seed(999)
    resumed = train_generator(second, small_digits, tmp_path / "split", steps=6, progress=False)
    assert resumed.resumed_from == 3
    assert list(resumed.history["step"]) == [1, 2, 3, 4, 5, 6]
    expected, got = weights(straight), weights(second)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_finished_run_is_not_trained_again(small_digits, tmp_path):
    model = make("ae", small_digits)
    train_generator(model, small_digits, tmp_path, steps=3, progress=False)
    before = (tmp_path / STATE_FILE).stat().st_mtime_ns
    again = train_generator(make("ae", small_digits), small_digits, tmp_path, steps=3, progress=False)
    assert again.resumed_from == 3
    assert (tmp_path / STATE_FILE).stat().st_mtime_ns == before


def test_resume_refuses_another_model_config(small_digits, tmp_path):
    train_generator(make("ae", small_digits), small_digits, tmp_path, steps=2, progress=False)
    with pytest.raises(ValueError, match="different model"):
        train_generator(make("ae", small_digits, latent_dim=5), small_digits, tmp_path, steps=4, progress=False)


def test_resume_refuses_other_data(small_digits, digits16, tmp_path):
    train_generator(make("ae", small_digits), small_digits, tmp_path, steps=2, progress=False)
    other = digits16.subset(range(256, 512))
    with pytest.raises(ValueError, match="different data"):
        train_generator(make("ae", other), other, tmp_path, steps=4, progress=False)


def test_training_reduces_the_loss(small_digits, tmp_path):
    model = make("ae", small_digits, lr=3e-3)
    history = train_generator(model, small_digits, tmp_path, steps=40, progress=False).history
    assert history["loss"].iloc[-5:].mean() < 0.8 * history["loss"].iloc[:5].mean()


@pytest.mark.parametrize("kind", ["gan", "diffusion"])
def test_conditional_models_follow_prompts_and_reject_unknown_words(kind, small_digits, tmp_path):
    model = make(kind, small_digits, conditional=True)
    train_generator(model, small_digits, tmp_path, steps=3, progress=False)
    three = model.sample(4, prompt="a photo of the digit 3", seed=0)
    seven = model.sample(4, prompt="seven", seed=0)
    assert not torch.equal(three, seven)
    with pytest.raises(PromptError, match="giraffe"):
        model.sample(2, prompt="a giraffe")
    per_image = model.sample(2, prompt=["three", "seven"], seed=0)
    assert per_image.shape[0] == 2
    assert load_generator(tmp_path).conditional


def test_a_conditional_snapshot_has_one_column_per_class(small_digits):
    from synthscope.generators.base import SNAPSHOT_CLASS_ROWS, SNAPSHOT_IMAGES

    model = make("gan", small_digits, conditional=True)
    asked = []
    drawn = model.sample
    model.sample = lambda n, prompt=None, **kwargs: asked.append(prompt) or drawn(n, prompt=prompt, **kwargs)
    images, per_row = model.snapshot(small_digits, seed=0)
    digits = model.vocabulary.attributes["digit"]
    assert per_row == len(digits) == 10 and images.shape[0] == SNAPSHOT_CLASS_ROWS * 10
    # row-major: image i lies in column i % 10, which is digit i % 10 on every row
    assert asked[0] == [digits[i % 10] for i in range(SNAPSHOT_CLASS_ROWS * 10)]
    images, per_row = make("gan", small_digits).snapshot(small_digits, seed=0)
    assert images.shape[0] == SNAPSHOT_IMAGES and per_row == 8


@pytest.mark.parametrize("conditional", [True, False])
def test_the_progress_figure_says_when_each_column_is_a_class(conditional, small_digits, tmp_path):
    from synthscope.generators.evaluation import lecture_figures

    model = make("gan", small_digits, conditional=conditional)
    run = train_generator(model, small_digits, tmp_path, steps=2, snapshot_every=1, progress=False)
    title = lecture_figures(model, run, small_digits)["training_progress"]._suptitle.get_text()
    assert title.startswith("Samples from fixed noise as training goes on")
    assert ("(one digit a column)" in title) == conditional


def test_guidance_scale_changes_diffusion_samples(small_digits, tmp_path):
    model = make("diffusion", small_digits, conditional=True)
    train_generator(model, small_digits, tmp_path, steps=3, progress=False)
    low = model.sample(3, prompt="three", seed=0, guidance=1.0)
    high = model.sample(3, prompt="three", seed=0, guidance=5.0)
    assert not torch.allclose(low, high)
    ddpm = model.sample(2, prompt="three", seed=0, sampler="ddpm", steps=5)
    assert ddpm.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="sampler"):
        model.sample(1, sampler="euler")


def test_unconditional_model_refuses_prompts(small_digits):
    with pytest.raises(ValueError, match="without --conditional"):
        make("gan", small_digits).sample(2, prompt="three")


def test_unknown_model_option_lists_the_known_ones(small_digits):
    with pytest.raises(ValueError, match="latent_dim"):
        make("ae", small_digits, latnet_dim=3)


def test_autoencoder_modes(small_digits):
    noisy = make("ae", small_digits, mode="denoising")
    images = small_digits.images[:8]
    corrupted = noisy.corrupt(images)
    assert corrupted.shape == images.shape and not torch.equal(corrupted, images)
    assert corrupted.min() >= 0 and corrupted.max() <= 1
    with pytest.raises(ValueError, match="colour"):
        make("ae", small_digits, mode="colourising")
    with pytest.raises(ValueError, match="mode"):
        make("ae", small_digits, mode="sideways")


def test_colourising_input_is_grey():
    from synthscope.generators.autoencoder import to_grey

    rgb = torch.rand(2, 3, 8, 8)
    grey = to_grey(rgb)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])


def test_vae_interpolation_ends_at_the_reconstructions(small_digits, tmp_path):
    model = make("vae", small_digits)
    train_generator(model, small_digits, tmp_path, steps=3, progress=False)
    a, b = small_digits.images[0], small_digits.images[1]
    path = model.interpolate(a, b, steps=5)
    assert path.shape == (5, 1, 16, 16)
    assert torch.allclose(path[0], model.reconstruct(a[None])[0], atol=1e-5)
    assert torch.allclose(path[-1], model.reconstruct(b[None])[0], atol=1e-5)


def test_missing_and_corrupt_weights_give_clear_errors(small_digits, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        load_generator(tmp_path / "nowhere")
    train_generator(make("ae", small_digits), small_digits, tmp_path, steps=1, progress=False)
    (tmp_path / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_generator(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing weight file"):
        load_generator(tmp_path)


def test_diffusion_forward_noising_goes_from_image_to_noise(small_digits):
    model = make("diffusion", small_digits)
    strip = model.forward_noising(small_digits.images[:2], [0, 99], seed=0)
    assert strip.shape == (2, 2, 1, 16, 16)
    assert (strip[0] - small_digits.images[:2]).abs().mean() < 0.03
    assert (strip[1] - small_digits.images[:2]).abs().mean() > 0.2


def test_gan_discriminator_scores_are_probabilities(small_digits, tmp_path):
    model = make("gan", small_digits)
    train_generator(model, small_digits, tmp_path, steps=2, progress=False)
    scores = model.discriminator_score(small_digits.images[:10])
    assert scores.shape == (10,) and ((scores >= 0) & (scores <= 1)).all()


def test_multi_attribute_model_round_trips_through_its_run_folder(tmp_path):
    from synthscope.generators.portraits import generate_portraits

    portraits = generate_portraits(n=48, seed=0, size=16)
    model = make("diffusion", portraits, conditional=True)
    train_generator(model, portraits, tmp_path, steps=2, progress=False)
    again = load_generator(tmp_path)
    assert again.vocabulary.names == portraits.vocabulary.names
    prompt = "a photo of a female doctor with dark skin"
    assert torch.equal(model.sample(2, prompt=prompt, seed=0), again.sample(2, prompt=prompt, seed=0))


def test_tuple_options_resume(small_digits, tmp_path):
    options = {"block_out_channels": (8, 16)}
    train_generator(make("diffusion", small_digits, **options), small_digits, tmp_path, steps=1, progress=False)
    resumed = train_generator(make("diffusion", small_digits, **options), small_digits, tmp_path, steps=2,
                              progress=False)
    assert resumed.resumed_from == 1 and resumed.step == 2


def test_a_failed_sample_leaves_the_training_mode_alone(small_digits):
    model = make("gan", small_digits, conditional=True).train()
    with pytest.raises(PromptError):
        model.sample(2, prompt="a giraffe")
    assert model.training
    model.discriminator_score(small_digits.images[:2])
    assert model.training


def test_weights_that_do_not_match_their_config_hash_are_refused(small_digits, tmp_path):
    model = make("ae", small_digits)
    train_generator(model, small_digits, tmp_path, steps=1, progress=False)
    other = make("ae", small_digits)
    other.save(tmp_path / "other")
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="weights_sha256"):
        load_generator(tmp_path)


def test_snapshots_never_cost_more_than_the_run(small_digits, tmp_path):
    from synthscope.generators.base import SNAPSHOTS
    from synthscope.generators.training import SNAPSHOT_SHARE, snapshot_interval
    from synthscope.generators.workflow import train_run

    diffusion = new_generator("diffusion", small_digits)
    assert diffusion.sampling_cost(64) == pytest.approx(64 * 50 / (3 * 64))  # about 17 training steps
    def drawn(model, steps, **kwargs):  # grids every `every` steps, and one at the final step
        every = snapshot_interval(model, steps, **kwargs)
        return len(range(every, steps + 1, every)) + (steps % every != 0)

    # a short run draws only its final grid; a long one exactly as many as its progress figure shows
    assert snapshot_interval(diffusion, 20) > 20 and drawn(diffusion, 20) == 1
    assert snapshot_interval(diffusion, 1600) == 267
    ae = new_generator("ae", small_digits)
    assert snapshot_interval(ae, 800) == 134 and snapshot_interval(ae, 20, snapshots=4) == 5
    assert snapshot_interval(ae, 20) == 4  # one network pass a grid: at most a quarter of the run
    for steps in (26, 100, 450, 750, 1000, 1250, 1999, 2000):
        assert drawn(ae, steps) == SNAPSHOTS and drawn(ae, steps, snapshots=4) == 4
        assert drawn(diffusion, steps) <= SNAPSHOTS
    assert drawn(diffusion, 1000) == SNAPSHOTS
    for steps in (20, 100, 1000):
        # the grids along the way take at most a quarter of the run; the final grid comes on top
        assert (drawn(diffusion, steps) - 1) * diffusion.sampling_cost(64) <= SNAPSHOT_SHARE * steps + 1e-9
    run = train_run("diffusion", "digits", tmp_path / "run", steps=4, n=64, size=16, device="cpu",
                    evaluate=False, progress=False, options={"block_out_channels": [8, 16], "norm_num_groups": 4,
                                                             "sample_steps": 4})
    assert sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir()) == ["step_000004.png"]
    assert run.step == 4


@pytest.mark.parametrize("kind, option, value, message", [
    ("ae", "latent_dim", -1, "option latent_dim=-1: must be between 1 and 4096"),
    ("vae", "beta", "abc", 'option beta="abc": expected a number'),
    ("ae", "latent_dim", 2.5, "expected a whole number"),
    ("gan", "discriminator_norm", 1, "expected true or false"),
    ("diffusion", "block_out_channels", [8, 0], "every value must be between 1 and 2048"),
    ("diffusion", "guidance", float("nan"), "expected a finite number"),
])
def test_options_are_checked_before_anything_is_built(kind, option, value, message, small_digits):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        new_generator(kind, small_digits, **{option: value})


def test_run_files_read_back_are_checked_with_one_clear_error(small_digits, tmp_path):
    model = new_generator("ae", small_digits, latent_dim=2)
    run = train_generator(model, small_digits, tmp_path / "run", steps=2, progress=False)
    config_path = run.run_dir / "config.json"
    good = json.loads(config_path.read_text())
    for change, message in ((lambda c: c["model"].__setitem__("size", "big"), "model.size must be a positive"),
                            (lambda c: c["model"].__setitem__("options", [1]), "model.options must be a JSON object"),
                            (lambda c: c["model"]["options"].__setitem__("latent_dim", -3), "latent_dim=-3"),
                            (lambda c: c.__setitem__("model", "ae"), "the model section must be a JSON object")):
        config = json.loads(json.dumps(good))
        change(config)
        config_path.write_text(json.dumps(config))
        with pytest.raises(ValueError, match=f"config.json: .*{message}"):
            load_generator(run.run_dir)
    config_path.write_text(json.dumps(good))
    state_path = run.run_dir / STATE_FILE
    state = torch.load(state_path, weights_only=True)
    for broken, message in (([1, 2], "not a training state"),
                            ({k: v for k, v in state.items() if k != "optimizers"}, "lacks 'optimizers'"),
                            ({**state, "step": "two"}, "'step' is a str"),
                            ({**state, "model": {k: torch.zeros(3) for k in state["model"]}},
                             "does not match this run's model")):
        torch.save(broken, state_path)
        again = new_generator("ae", small_digits, latent_dim=2)
        with pytest.raises(ValueError, match=f"training_state.pt: .*{message}"):
            train_generator(again, small_digits, run.run_dir, steps=4, progress=False)


def test_bad_sizes_and_counts_are_refused_before_any_work(tmp_path, monkeypatch):
    from synthscope.generators.data import load_data
    from synthscope.generators.workflow import train_run

    with pytest.raises(ValueError, match=r"--size 100000 \(digits\) needs about .* TB of memory; this machine has"):
        load_data("digits", size=100_000)
    with pytest.raises(ValueError, match=r"--n 1000000000000 portraits .* PB of memory"):
        load_data("portraits", n=10**12)
    with pytest.raises(ValueError, match="training needs at least 2"):
        train_run("ae", "digits", tmp_path / "run", steps=2, n=1, evaluate=False, progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_sampling_refuses_what_cannot_be_done_before_writing(small_digits, tmp_path):
    from synthscope.generators.workflow import sample_to_corpus

    model = new_generator("diffusion", small_digits, block_out_channels=[8, 16], norm_num_groups=4, sample_steps=2)
    run = train_generator(model, small_digits, tmp_path / "run", steps=1, progress=False)
    with pytest.raises(ValueError, match="--guidance must be between 0 and 100"):
        sample_to_corpus(run.run_dir, tmp_path / "c", n=4, guidance=-5, progress=False)
    with pytest.raises(ValueError, match=r"--n 1000000000000 needs about .* of memory"):
        sample_to_corpus(run.run_dir, tmp_path / "c", n=10**12, progress=False)
    assert not (tmp_path / "c").exists()


def test_a_larger_export_adds_only_the_missing_images_when_it_can(tmp_path):
    import hashlib

    from synthscope.generators.corpus import read_corpus
    from synthscope.generators.workflow import export_builtin

    def hashes(root):
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in read_corpus(root).paths()]

    export_builtin("digits", tmp_path / "grown", n=12, progress=False)
    with pytest.warns(UserWarning, match="different n"):
        export_builtin("digits", tmp_path / "grown", n=20, progress=False)
    export_builtin("digits", tmp_path / "fresh", n=20, progress=False)
    assert hashes(tmp_path / "grown") == hashes(tmp_path / "fresh") and len(hashes(tmp_path / "fresh")) == 20
    # portraits are drawn as a whole: another --n is another draw, never mixed with the first
    export_builtin("portraits", tmp_path / "people", n=12, progress=False)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="another --n is another draw"):
        export_builtin("portraits", tmp_path / "people", n=20, progress=False)
    assert len(read_corpus(tmp_path / "people")) == 12
