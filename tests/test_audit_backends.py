"""Audit backends and the resumable runner: a tiny diffusers pipeline saved to disk, the built-in model."""

import json

import numpy as np
import pytest
from PIL import Image
from synthscope.audits.backends import (
    BuiltinBackend,
    DiffusersBackend,
    Generation,
    TextToImageBackend,
)
from synthscope.audits.runner import ImageJob, generate_corpus
from synthscope.generators.conditioning import PromptError
from synthscope.generators.corpus import read_corpus
from tiny_diffusers import save_tiny_pipeline

STEPS = 2  # denoising steps of the tiny pipeline: enough to run every code path
TINY_DIFFUSION = {"block_out_channels": [8, 16], "norm_num_groups": 4, "batch_size": 16,
                  "sample_steps": 4, "train_timesteps": 100}


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="module")
def diffusers_backend(tiny_pipeline):
    return DiffusersBackend(tiny_pipeline, num_inference_steps=STEPS, guidance_scale=3.0, batch_size=4,
                            device="cpu")


def jobs_for(prompts, per_prompt, guidance=None):
    """``per_prompt`` jobs per prompt, each with its own seed and a profession attribute."""
    return [ImageJob(key=f"{p}#{i}", prompt=p, seed=1000 * k + i, guidance=guidance,
                     attributes={"profession": p.split()[-1], "template": 0})
            for k, p in enumerate(prompts) for i in range(per_prompt)]


def pixels(corpus_dir):
    """A corpus's images as arrays, exactly as stored."""
    corpus = read_corpus(corpus_dir)
    return [np.asarray(Image.open(p)) for p in corpus.paths()]


class Interrupted(RuntimeError):
    """Stands for the process being killed."""


class FailsAfter(TextToImageBackend):
    """A backend that dies after ``batches`` calls, as a killed process would."""

    def __init__(self, inner, batches):
        self.inner, self.left = inner, batches
        self.name, self.batch_size, self.default_guidance = inner.name, inner.batch_size, inner.default_guidance

    def describe(self):
        return self.inner.describe()

    def generate(self, prompts, seeds, guidance=None):
        if self.left == 0:
            raise Interrupted("killed")
        self.left -= 1
        return self.inner.generate(prompts, seeds, guidance)


# --------------------------------------------------------------------------- diffusers


def test_tiny_pipeline_runs_end_to_end_through_the_runner(diffusers_backend, tmp_path):
    jobs = jobs_for(["a photo of a doctor", "a photo of a nurse"], 3)
    summary = generate_corpus(jobs, diffusers_backend, tmp_path / "corpus", progress=False)
    assert (summary.total, summary.generated, summary.already_done) == (6, 6, 0)

    corpus = read_corpus(tmp_path / "corpus")
    manifest = corpus.manifest
    assert list(manifest["key"]) == [j.key for j in jobs]
    assert set(manifest["source"]) == set(manifest["backend"]) == {"diffusers:tiny-sd"}
    assert list(manifest["seed"]) == [str(j.seed) for j in jobs]
    assert set(manifest["guidance"]) == {"3.0"}
    assert list(manifest["profession"]) == ["doctor"] * 3 + ["nurse"] * 3
    assert "nsfw_filtered" not in manifest.columns  # no safety checker: nothing to record
    images = corpus.load_images()
    assert images.shape == (6, 3, 16, 16)

    backend = corpus.provenance["backend"]
    assert backend["pipeline"] == "StableDiffusionPipeline" and backend["safety_checker"] is None
    assert backend["options"]["num_inference_steps"] == STEPS
    assert len(backend["checkpoint_sha256"]) == 64
    assert "unet/diffusion_pytorch_model.safetensors" in backend["files_sha256"]
    assert backend["package_versions"]["transformers"]

    again = generate_corpus(jobs, diffusers_backend, tmp_path / "corpus", progress=False)
    assert (again.generated, again.already_done) == (0, 6)
    assert len(read_corpus(tmp_path / "corpus")) == 6


def test_an_image_depends_only_on_its_own_seed_not_on_its_batch(diffusers_backend):
    prompts = ["a photo of a doctor", "a photo of a nurse", "a photo of a doctor", "a teacher"]
    seeds = [11, 12, 13, 14]
    batch = diffusers_backend.generate(prompts, seeds)
    assert len(batch) == 4 and batch.nsfw_filtered == [None] * 4
    for j in range(4):
        alone = diffusers_backend.generate([prompts[j]], [seeds[j]])
        assert np.array_equal(np.asarray(alone.images[0]), np.asarray(batch.images[j]))
    assert not np.array_equal(np.asarray(batch.images[0]), np.asarray(batch.images[2]))  # same prompt, other seed
    low = diffusers_backend.generate(prompts[:1], seeds[:1], guidance=1.0)
    assert not np.array_equal(np.asarray(low.images[0]), np.asarray(batch.images[0]))


def test_a_killed_run_resumes_without_loss_or_duplicates(diffusers_backend, tmp_path):
    # Mixed guidance (two groups, interleaved) and a batch size that does not divide the groups.
    jobs = [ImageJob(key=f"k{i}", prompt=["a doctor", "a nurse"][i % 2], seed=i,
                     guidance=None if i % 3 else 1.5, attributes={"i": i}) for i in range(7)]
    full = generate_corpus(jobs, diffusers_backend, tmp_path / "full", batch_size=2, progress=False)
    assert full.generated == 7

    with pytest.raises(Interrupted):
        generate_corpus(jobs, FailsAfter(diffusers_backend, batches=2), tmp_path / "resumed", batch_size=2,
                        progress=False)
    assert len(read_corpus(tmp_path / "resumed")) == 3  # two whole batches (2 + 1) committed, nothing else
    with pytest.raises(Interrupted):  # killed again, this time before its first batch
        generate_corpus(jobs, FailsAfter(diffusers_backend, batches=0), tmp_path / "resumed", batch_size=3,
                        progress=False)
    summary = generate_corpus(jobs, diffusers_backend, tmp_path / "resumed", batch_size=3, progress=False)
    assert (summary.generated, summary.already_done) == (4, 3)

    a, b = read_corpus(tmp_path / "full"), read_corpus(tmp_path / "resumed")
    assert not b.manifest["key"].duplicated().any()
    assert a.manifest.equals(b.manifest)  # same rows, same order, same files
    assert all(np.array_equal(x, y) for x, y in zip(pixels(tmp_path / "full"), pixels(tmp_path / "resumed")))
    assert b.provenance["resumed"]


def test_a_corpus_of_another_model_or_options_is_refused_unless_forced(tiny_pipeline, diffusers_backend, tmp_path):
    jobs = jobs_for(["a doctor"], 2)
    generate_corpus(jobs, diffusers_backend, tmp_path / "c", progress=False)
    other = DiffusersBackend(tiny_pipeline, num_inference_steps=STEPS + 1, guidance_scale=3.0, device="cpu",
                             hash_weights=False)
    with pytest.raises(ValueError, match="sample_options"):
        generate_corpus(jobs, other, tmp_path / "c", progress=False)
    assert len(read_corpus(tmp_path / "c")) == 2  # untouched
    summary = generate_corpus(jobs, other, tmp_path / "c", force=True, progress=False)
    assert summary.generated == 2
    assert read_corpus(tmp_path / "c").provenance["backend"]["options"]["num_inference_steps"] == STEPS + 1

    changed = [ImageJob(key=j.key, prompt=j.prompt, seed=j.seed + 1) for j in jobs]
    with pytest.raises(ValueError, match="seed"):
        generate_corpus(changed, other, tmp_path / "c", progress=False)


def test_bad_jobs_are_refused_before_anything_is_written(diffusers_backend, tmp_path):
    good = ImageJob(key="a", prompt="a doctor", seed=0)
    for jobs, message in [([good, good], "twice"),
                          ([ImageJob(key="b", prompt="x", seed=-1)], "seed"),
                          ([ImageJob(key="c", prompt="x", seed=0, attributes={"prompt": "y"})], "prompt")]:
        with pytest.raises(ValueError, match=message):
            generate_corpus(jobs, diffusers_backend, tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()


def test_nsfw_flags_are_written_to_the_manifest(diffusers_backend, tmp_path, monkeypatch):
    def flagged(prompts, seeds, guidance=None):
        result = DiffusersBackend.generate(diffusers_backend, prompts, seeds, guidance)
        return Generation(result.images, [seed % 2 == 1 for seed in seeds])

    monkeypatch.setattr(diffusers_backend, "generate", flagged)
    summary = generate_corpus(jobs_for(["a doctor"], 4), diffusers_backend, tmp_path / "c", progress=False)
    assert summary.nsfw_filtered == 2
    assert list(read_corpus(tmp_path / "c").manifest["nsfw_filtered"]) == ["False", "True", "False", "True"]


def test_a_model_that_cannot_be_loaded_is_one_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match=r"(?s)no-such-model.*no such folder.*save_pretrained.*HF_HUB_OFFLINE"):
        DiffusersBackend(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no model_index.json"):
        DiffusersBackend(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"(?s)cannot load.*broken.*save_pretrained"):
        DiffusersBackend(broken)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match=r"(?s)'nobody/no-such-model'.*not in the local Hugging Face cache"):
        DiffusersBackend("nobody/no-such-model")
    with pytest.raises(ValueError, match="dtype"):
        DiffusersBackend(missing, dtype="float8")


# --------------------------------------------------------------------------- built-in


def _skewed():
    from synthscope.generators.portraits import PortraitDistribution

    return PortraitDistribution.from_labour_statistics().with_skew(share_female={"doctor": 0.0})


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    return BuiltinBackend.from_training(tmp_path_factory.mktemp("cache"), distribution=_skewed(), steps=2, n=48,
                                        options=TINY_DIFFUSION, progress=False, device="cpu")


def test_builtin_backend_trains_once_caches_and_generates_a_corpus(builtin, tmp_path, monkeypatch):
    assert builtin.run_dir.name.startswith("portraits-diffusion-")
    description = builtin.describe()
    assert description["training"]["data"]["distribution"]["p_female"]["doctor"] == 0.0
    assert description["options"] == {"sampler": "ddim", "sample_steps": 4, "guidance": 2.0}

    from synthscope.generators import portraits

    monkeypatch.setattr(portraits, "generate_portraits", lambda *a, **k: pytest.fail("trained again"))
    cached = BuiltinBackend.from_training(builtin.run_dir.parent, distribution=_skewed(), steps=2, n=48,
                                          options=TINY_DIFFUSION, device="cpu")
    assert cached.run_dir == builtin.run_dir and cached.checkpoint_sha256 == builtin.checkpoint_sha256

    jobs = jobs_for(["a photo of a doctor", "a photo of a female nurse with dark skin"], 3, guidance=3.0)
    summary = generate_corpus(jobs, builtin, tmp_path / "c", progress=False)
    corpus = read_corpus(tmp_path / "c")
    assert summary.generated == 6 and set(corpus.manifest["source"]) == {"builtin:diffusion"}
    assert corpus.load_images().shape == (6, 3, 16, 16)
    assert corpus.provenance["checkpoint_sha256"] == builtin.checkpoint_sha256


def test_builtin_model_trained_on_another_world_is_refused(builtin):
    from synthscope.generators.portraits import PortraitDistribution

    # The same folder asked for with the unskewed world: reusing it would mislabel its training world.
    with pytest.raises(ValueError, match="another world"):
        BuiltinBackend.from_training(run_dir=builtin.run_dir, distribution=PortraitDistribution.from_labour_statistics(),
                                     steps=2, n=48, options=TINY_DIFFUSION, progress=False, device="cpu")


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_builtin_images_depend_only_on_their_own_seed(builtin, sampler):
    backend = BuiltinBackend(builtin.run_dir, sampler=sampler, sample_steps=5, device="cpu")
    prompts = ["a doctor", "a nurse", "a doctor", "an older teacher"]
    batch = backend.generate(prompts, [5, 6, 7, 8], guidance=2.5)
    for j in (0, 3):
        alone = backend.generate([prompts[j]], [5 + j], guidance=2.5)
        assert np.array_equal(np.asarray(alone.images[0]), np.asarray(batch.images[j]))
    assert not np.array_equal(np.asarray(batch.images[0]), np.asarray(batch.images[2]))


def test_builtin_unknown_prompt_word_is_refused_before_writing(builtin, tmp_path):
    jobs = [ImageJob(key="x", prompt="a photo of a giraffe", seed=0)]
    with pytest.raises(PromptError, match=r"(?s)giraffe.*profession"):
        generate_corpus(jobs, builtin, tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()


def test_interrupted_builtin_training_resumes(tmp_path, monkeypatch):
    from synthscope.generators import training

    real, resumed_from = training.train_generator, []

    def killed_after_one_step(model, data, run_dir, steps, **kwargs):
        real(model, data, run_dir, steps=1, **kwargs)
        raise Interrupted("killed")

    monkeypatch.setattr(training, "train_generator", killed_after_one_step)
    with pytest.raises(Interrupted):
        BuiltinBackend.from_training(tmp_path, steps=2, n=32, options=TINY_DIFFUSION, progress=False, device="cpu")

    def recording(*args, **kwargs):
        run = real(*args, **kwargs)
        resumed_from.append(run.resumed_from)
        return run

    monkeypatch.setattr(training, "train_generator", recording)
    backend = BuiltinBackend.from_training(tmp_path, steps=2, n=32, options=TINY_DIFFUSION, progress=False,
                                           device="cpu")
    assert resumed_from == [1]
    assert json.loads((backend.run_dir / "config.json").read_text())["step"] == 2

    # An explicit run folder is trained into (here: resumed from the cached run, copied) as given.
    import shutil

    shutil.copytree(backend.run_dir, tmp_path / "mine")
    mine = BuiltinBackend.from_training(run_dir=tmp_path / "mine", steps=3, n=32, options=TINY_DIFFUSION,
                                        progress=False, device="cpu")
    assert resumed_from == [1, 2] and mine.run_dir == tmp_path / "mine"
