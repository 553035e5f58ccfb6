"""Text-to-image backends for audits: the built-in prompt-conditional diffusion model, and any diffusers
text-to-image pipeline by hub id or local folder, behind one small interface.

Every backend makes image ``j`` of a batch from ``prompts[j]`` with its own
``torch.Generator().manual_seed(seeds[j])`` (a CPU generator, so a seed means the same starting noise
on every device). Image ``j`` therefore depends only on its prompt, seed and guidance, never on the
batch it was drawn in: an audit can be resumed, re-batched or split across machines and still
produce the same images (up to the floating-point differences between devices and dtypes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from synthscope.errors import UserError
from synthscope.fingerprint import fingerprint
from synthscope.images import to_pil_list
from synthscope.jsondata import json_data
from synthscope.generators.base import CONFIG_FILE, WEIGHTS_FILE, Generator
from synthscope.generators.corpus import package_versions
from synthscope.registry import load_generator
from synthscope.runtime import (
    evaluating,
    package_version,
    read_json,
    resolve_device,
    seed_everything,
    sha256_file,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Generation:
    """What one ``generate`` call returns: the images, and per image whether the pipeline's safety
    checker replaced it by a black image (``None`` where the backend has no safety checker)."""

    images: list[Image.Image]
    nsfw_filtered: list[bool | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.nsfw_filtered:
            self.nsfw_filtered = [None] * len(self.images)
        if len(self.nsfw_filtered) != len(self.images):
            raise UserError(f"{len(self.images)} images but {len(self.nsfw_filtered)} nsfw flags")

    def __len__(self) -> int:
        return len(self.images)


class TextToImageBackend(ABC):
    """A text-to-image model an audit can prompt.

    ``name`` identifies the model in manifests (the ``source``/``backend`` columns); ``batch_size`` is
    how many images one ``generate`` call should get; ``default_guidance`` is the guidance used when a
    job gives none (``None`` when the backend cannot tell).
    """

    name: str
    batch_size: int = 1
    default_guidance: float | None = None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Provenance: backend kind, model id/path, checkpoint hash or hub revision, image-affecting
        ``options``, ``runtime`` settings (device, batch size) and package versions. JSON-ready."""

    @abstractmethod
    def generate(self, prompts: list[str], seeds: list[int], guidance: float | None = None) -> Generation:
        """Image ``j`` from ``prompts[j]``, drawn with its own generator seeded with ``seeds[j]``.

        ``guidance``: classifier-free guidance scale for the whole batch (None: ``default_guidance``).
        """

    def check_prompts(self, prompts: list[str]) -> None:
        """Raise a clear error for any prompt the model cannot follow, before anything is generated."""

    @staticmethod
    def _check_batch(prompts: list[str], seeds: list[int]) -> None:
        if len(prompts) != len(seeds):
            raise UserError(f"got {len(prompts)} prompts but {len(seeds)} seeds")


def seeded_generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU generator per image: CPU random streams are the same on every machine and device."""
    return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]


# --------------------------------------------------------------------------- built-in


BUILTIN_DEFAULT_SIZE = 16  # the DESIGN budget: built-in diffusion stays at 16 px on a CPU


class BuiltinBackend(TextToImageBackend):
    """The built-in prompt-conditional diffusion model (trained on the portraits world) as a backend.

    Give it a run folder (``synthscope generate train --model diffusion --conditional``), or use
    :meth:`from_training` to train one on first use and cache it. Prompts are parsed by the model's
    vocabulary ("a photo of a doctor"); an unknown word raises ``PromptError`` listing the vocabulary.

    Sampling: ``sampler`` "ddim" (deterministic given the initial noise) or "ddpm" (fresh noise at every
    step); both draw every random number of image ``j`` from its own generator, so batching never
    changes an image.
    """

    kind: ClassVar[str] = "builtin"

    def __init__(self, run_dir: Path | str, sampler: str | None = None, sample_steps: int | None = None,
                 batch_size: int = 64, device: str = "auto") -> None:
        self.run_dir = Path(run_dir)
        self.model: Generator = load_generator(self.run_dir, device=resolve_device(device))
        if self.model.kind != "diffusion" or not self.model.conditional:
            raise UserError(f"{self.run_dir}: holds a {'conditional ' if self.model.conditional else ''}"
                             f"{self.model.kind} model; an audit needs a prompt-conditional diffusion model "
                             f"(synthscope generate train --model diffusion --conditional)")
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        scheduler = self.model.make_sampler(sampler, sample_steps)  # validates both
        self.sampler = sampler or self.model.options["sampler"]
        self.sample_steps = len(scheduler.timesteps)
        self.batch_size = int(batch_size)
        self.default_guidance = float(self.model.options["guidance"])
        self.name = f"builtin:{self.model.kind}"
        self.checkpoint_sha256 = sha256_file(self.run_dir / WEIGHTS_FILE)

    @classmethod
    def from_training(cls, cache_dir: Path | str | None = None, distribution: Any = None, steps: int | None = None,
                      size: int = BUILTIN_DEFAULT_SIZE, n: int = 4000, seed: int = 0,
                      options: dict[str, Any] | None = None, device: str = "auto", progress: bool = True,
                      run_dir: Path | str | None = None, **backend_options: Any) -> BuiltinBackend:
        """Train a conditional diffusion model on the portraits world, or reuse the one cached for the
        same settings; ``backend_options`` go to the constructor (sampler, sample_steps, batch_size).

        The model lives in ``cache_dir/portraits-diffusion-<hash of the settings>``: the world
        (``distribution``, a PortraitDistribution, default the labour-statistics world; use
        ``with_skew`` for a skewed one), ``size``, ``n`` training images, ``seed``, ``steps`` and the model
        ``options``. A finished model is loaded without touching the data; an interrupted training
        resumes from its last checkpoint (generators.training). ``run_dir`` trains into (or loads a
        finished run from) that folder instead of the cache's.
        """
        from synthscope.generators.portraits import PortraitDistribution
        from synthscope.generators.workflow import DEFAULT_STEPS

        if distribution is None:
            distribution = PortraitDistribution.from_labour_statistics()
        if not isinstance(distribution, PortraitDistribution):
            raise TypeError(f"distribution must be a PortraitDistribution, got {type(distribution).__name__}")
        if cache_dir is None and run_dir is None:
            raise UserError("give a cache_dir (or a run_dir) to train the built-in model into")
        steps = int(DEFAULT_STEPS["diffusion"] if steps is None else steps)
        if steps < 1:
            raise UserError(f"steps must be at least 1, got {steps}")
        settings = {"kind": "diffusion", "conditional": True, "data": "portraits",
                    "distribution": distribution.to_dict(), "size": int(size), "n": int(n), "seed": int(seed),
                    "steps": steps, "options": dict(options or {})}
        key = fingerprint(settings)
        run_dir = Path(run_dir) if run_dir is not None else Path(cache_dir) / f"portraits-diffusion-{key[:16]}"
        config_path = run_dir / CONFIG_FILE
        config = read_json(config_path) if config_path.is_file() else {}
        _check_same_world(run_dir, config, settings)
        finished = config.get("step", 0) >= steps
        if not finished:
            _train_portraits_diffusion(run_dir, distribution, settings, key, device, progress)
        return cls(run_dir, device=device, **backend_options)

    def check_prompts(self, prompts: list[str]) -> None:
        """Parse every prompt with the model's vocabulary (PromptError names unknown words)."""
        self.model.conditions_for(len(prompts), list(prompts))

    def describe(self) -> dict[str, Any]:
        """Run folder, weights hash, model config, the world it was trained on, sampling options."""
        config = read_json(self.run_dir / CONFIG_FILE)
        return {
            "backend": self.kind, "name": self.name, "model": str(self.run_dir),
            "checkpoint_sha256": self.checkpoint_sha256, "config": self.model.config(),
            "training": {"data": config.get("data"), "steps": config.get("step"), "seed": config.get("seed"),
                         "data_sha256": config.get("data_sha256")},
            "options": {"sampler": self.sampler, "sample_steps": self.sample_steps,
                        "guidance": self.default_guidance},
            "runtime": {"device": str(self.model.device), "batch_size": self.batch_size},
            "package_versions": package_versions(),
        }

    def generate(self, prompts: list[str], seeds: list[int], guidance: float | None = None) -> Generation:
        """Images from the model's sampler; image ``j``'s initial noise and (DDPM) step noise come
        from its own generator."""
        self._check_batch(prompts, seeds)
        if not prompts:
            return Generation([])
        model = self.model
        guidance = self.default_guidance if guidance is None else float(guidance)
        condition = model.conditions_for(len(prompts), list(prompts))
        with evaluating(model):
            images = model.generate(len(prompts), condition, seeded_generators(seeds), sampler=self.sampler,
                                    steps=self.sample_steps, guidance=guidance)
        return Generation(to_pil_list(images.cpu()))


def _check_same_world(run_dir: Path, config: dict[str, Any], settings: dict[str, Any]) -> None:
    """Refuse a model trained on another world, size, sample or seed: reusing it would put its
    pictures next to the wrong training world. (More steps on the same world is a resume.)"""
    if not config:
        return
    data = config.get("data", {})
    had = {"world": data.get("distribution"), "size": data.get("size"), "n": data.get("n"), "seed": config.get("seed")}
    wanted = json_data({"world": settings["distribution"], "size": settings["size"], "n": settings["n"],
                        "seed": settings["seed"]})
    differ = [name for name in wanted if had[name] is not None and had[name] != wanted[name]]
    if differ:
        raise UserError(f"{run_dir}: holds a built-in model trained with another {', '.join(differ)}; "
                         f"delete that folder to train a new one, or audit into another --out")


def _train_portraits_diffusion(run_dir: Path, distribution: Any, settings: dict[str, Any], key: str,
                               device: str, progress: bool) -> None:
    """Train (or resume training) the cached built-in model, as workflow.train_run does for a data spec."""
    from synthscope.generators.portraits import generate_portraits
    from synthscope.generators.training import train_generator
    from synthscope.generators.workflow import new_generator

    seed = settings["seed"]
    seed_everything(seed)  # initial weights, as train_run seeds them
    data = generate_portraits(n=settings["n"], seed=seed, size=settings["size"], distribution=distribution)
    model = new_generator("diffusion", data, conditional=True, **settings["options"])
    train_generator(model, data, run_dir, steps=settings["steps"], seed=seed, device=resolve_device(device),
                    progress=progress,
                    run_info={"data": {"spec": "portraits", "size": settings["size"], "n": settings["n"],
                                       "train": len(data), "distribution": settings["distribution"]},
                              "command": "audit builtin backend", "cache_key": key})


# --------------------------------------------------------------------------- diffusers


def _looks_like_path(model: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else with a path shape is meant as a folder.
    return model.startswith(("/", "./", "../", "~", ".\\")) or "\\" in model or model.count("/") > 1 \
        or Path(model).expanduser().exists()


def _load_error(model: str, reason: str) -> ValueError:
    return ValueError(
        f"cannot load the text-to-image model {model!r}: {reason}. Give either a local folder written by "
        f"pipeline.save_pretrained(...), or a Hugging Face hub id; without network access the hub id must "
        f"already be in the local cache (download it where there is a network, e.g. `hf download {model}`, "
        f"then set HF_HUB_OFFLINE=1)"
    )


def _folder_digest(root: Path) -> tuple[str, dict[str, str]]:
    """SHA-256 of every file of a pipeline folder (model_index.json and its components' sub-folders),
    and one digest over them all."""
    index = read_json(root / "model_index.json")
    files = [root / "model_index.json"]
    for component in sorted(k for k in index if not k.startswith("_")):
        folder = root / component
        if folder.is_dir():
            files.extend(sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")))
    hashes = {p.relative_to(root).as_posix(): sha256_file(p) for p in files}
    combined = fingerprint(hashes)
    return combined, hashes


class DiffusersBackend(TextToImageBackend):
    """Any diffusers text-to-image pipeline (Stable Diffusion, SDXL, ...) by hub id or local folder.

    Loaded with ``AutoPipelineForText2Image.from_pretrained`` on construction, so a model that cannot be
    loaded fails before an audit writes anything. Options: ``num_inference_steps``, ``guidance_scale``
    (the default when a job gives none; None keeps the pipeline's own), ``negative_prompt``,
    ``height``/``width``, ``dtype`` ("float32", "float16", "bfloat16"; None or "auto": float16 on CUDA,
    else float32), ``device``, ``batch_size``, ``revision`` and ``variant`` (hub file variants such as "fp16").
    The pipeline's safety checker is left as the pipeline has it; images it blacked out are flagged
    in ``Generation.nsfw_filtered``. ``hash_weights`` hashes every file of the model folder for the
    provenance (seconds per GB); hub models also record their cached revision.
    """

    kind: ClassVar[str] = "diffusers"

    def __init__(self, model: str | Path, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt: str | None = None,
                 height: int | None = None, width: int | None = None, dtype: str | None = None,
                 device: str = "auto", batch_size: int = 4, revision: str | None = None,
                 variant: str | None = None, hash_weights: bool = True) -> None:
        self.model_id = str(model)
        self.device = resolve_device(device)
        if dtype in (None, "auto"):
            dtype = "float16" if self.device.type == "cuda" else "float32"
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        self.dtype, self.batch_size = dtype, int(batch_size)
        self.options = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                        "negative_prompt": negative_prompt, "height": height, "width": width}
        self.default_guidance = None if guidance_scale is None else float(guidance_scale)
        self.revision, self.variant = revision, variant
        self.local = _looks_like_path(self.model_id)
        self.pipeline = self._load()
        self.pipeline.set_progress_bar_config(disable=True)  # the audit runner shows one bar
        if self.default_guidance is None:
            default = _call_default(self.pipeline, "guidance_scale")
            self.default_guidance = float(default) if isinstance(default, (int, float)) else None
        self.name = f"diffusers:{Path(self.model_id).expanduser().resolve().name if self.local else self.model_id}"
        self._revision, root = self._resolve_source()
        self._digest, self._files = _folder_digest(root) if hash_weights and root is not None else (None, {})

    def _load(self):
        from diffusers import AutoPipelineForText2Image

        if self.local:
            path = Path(self.model_id).expanduser()
            if not path.is_dir():
                raise _load_error(self.model_id, "no such folder")
            if not (path / "model_index.json").is_file():
                raise _load_error(self.model_id, "the folder holds no model_index.json, so it is not a "
                                  "saved diffusers pipeline")
        else:
            from huggingface_hub import constants, try_to_load_from_cache

            if constants.HF_HUB_OFFLINE and not isinstance(
                    try_to_load_from_cache(self.model_id, "model_index.json", revision=self.revision), str):
                raise _load_error(self.model_id, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                                  "forbids downloading it")
        # The dtype keyword was renamed in diffusers 0.42 (torch_dtype still works there, with a warning).
        dtype_key = "dtype" if _diffusers_at_least("0.42") else "torch_dtype"
        kwargs = {dtype_key: DTYPES[self.dtype], "revision": self.revision, "variant": self.variant}
        try:
            pipeline = AutoPipelineForText2Image.from_pretrained(
                str(Path(self.model_id).expanduser()) if self.local else self.model_id,
                **{k: v for k, v in kwargs.items() if v is not None})
        except Exception as error:  # OSError, hub errors, bad configs: all mean "cannot load this"
            raise _load_error(self.model_id, f"{type(error).__name__}: {str(error).strip().rstrip('.')}") from error
        return pipeline.to(self.device)

    def _resolve_source(self) -> tuple[str | None, Path | None]:
        """(hub commit, folder holding the files): the folder itself for a local model, the cached
        snapshot for a hub one (None, None where the cache cannot tell)."""
        if self.local:
            return None, Path(self.model_id).expanduser()
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(self.model_id, "model_index.json", revision=self.revision)
        if not isinstance(cached, str):
            return None, None
        snapshot = Path(cached).parent  # .../snapshots/<commit>/model_index.json
        return snapshot.name, snapshot

    def describe(self) -> dict[str, Any]:
        """Model id or folder, hub revision, file hashes, pipeline and scheduler classes, options."""
        pipeline = self.pipeline
        safety = getattr(pipeline, "safety_checker", None)
        return {
            "backend": self.kind, "name": self.name,
            "model": str(Path(self.model_id).expanduser().resolve()) if self.local else self.model_id,
            "local": self.local, "revision": self._revision or self.revision,
            "checkpoint_sha256": self._digest, "files_sha256": self._files,
            "pipeline": type(pipeline).__name__, "scheduler": type(pipeline.scheduler).__name__,
            "scheduler_config": dict(pipeline.scheduler.config),
            "safety_checker": type(safety).__name__ if safety is not None else None,
            "options": {**self.options, "guidance_scale": self.default_guidance, "dtype": self.dtype,
                        "variant": self.variant},
            "runtime": {"device": str(self.device), "batch_size": self.batch_size},
            "package_versions": {**package_versions(), "transformers": package_version("transformers")},
        }

    def generate(self, prompts: list[str], seeds: list[int], guidance: float | None = None) -> Generation:
        """One pipeline call with one generator per image; ``nsfw_filtered`` from the pipeline's
        ``nsfw_content_detected`` where it has a safety checker."""
        self._check_batch(prompts, seeds)
        if not prompts:
            return Generation([])
        guidance = self.default_guidance if guidance is None else float(guidance)
        kwargs = {k: v for k, v in {**self.options, "guidance_scale": guidance}.items() if v is not None}
        with torch.inference_mode():
            output = self.pipeline(prompt=list(prompts), generator=seeded_generators(seeds), output_type="pil",
                                   **kwargs)
        flags = getattr(output, "nsfw_content_detected", None)
        nsfw = [None if f is None else bool(f) for f in flags] if flags is not None else None
        return Generation(list(output.images), nsfw or [])


def _call_default(pipeline: Any, parameter: str) -> Any:
    """The default of one keyword of the pipeline's ``__call__`` (e.g. its guidance scale)."""
    import inspect

    default = inspect.signature(type(pipeline).__call__).parameters.get(parameter)
    return None if default is None or default.default is inspect.Parameter.empty else default.default


def _diffusers_at_least(version: str) -> bool:
    from packaging.version import Version

    return Version(package_version("diffusers") or "0") >= Version(version)

