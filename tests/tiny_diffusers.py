"""A tiny Stable-Diffusion-style pipeline built from configs, for tests that must not reach a model hub.

``save_tiny_pipeline(path)`` writes a complete ``StableDiffusionPipeline`` folder (UNet, VAE, CLIP text
encoder, CLIP tokenizer, scheduler) with ``save_pretrained``; it loads with
``AutoPipelineForText2Image.from_pretrained(path)`` exactly as a hub model would. The weights are
random (seeded), so the images are noise, but every code path of a real pipeline runs. The
tokenizer is a byte-level BPE with no merges (every character is a token): enough for the pipeline
to tokenize any prompt, without the 49k-token CLIP vocabulary that lives on the hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

TEXT_LENGTH = 32  # the tokenizer pads/truncates prompts to this many tokens


def byte_level_alphabet() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable-character map, as a list indexed by byte value."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:  # control and space bytes are shifted past 255, as in CLIP's tokenizer
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def write_tokenizer_files(folder: Path) -> int:
    """Write a minimal CLIP tokenizer (vocab.json, merges.txt, tokenizer_config.json); return its size.

    Vocabulary: every byte-level character, alone and as a word end ("x</w>"), plus CLIP's start
    and end tokens. No merges, so a word is tokenized character by character.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = byte_level_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": TEXT_LENGTH, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "do_lower_case": True,
    }), encoding="utf-8")
    return len(vocab)


def build_tiny_pipeline(sample_size: int = 8, seed: int = 0, scheduler: str = "ddim") -> StableDiffusionPipeline:
    """A randomly initialised ``StableDiffusionPipeline`` of a few hundred thousand parameters.

    ``sample_size`` is the latent size; images are 2x larger (one VAE down-sampling level).
    ``scheduler``: "ddim" or "pndm". No safety checker.
    """
    import tempfile

    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)  # the weights are random; seeded so two builds are identical
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), layers_per_block=1,
        norm_num_groups=32, sample_size=sample_size * 2,
    )
    with tempfile.TemporaryDirectory() as folder:
        vocab_size = write_tokenizer_files(Path(folder))
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=TEXT_LENGTH, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
    schedule = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000, "steps_offset": 1}
    if scheduler == "ddim":
        noise_scheduler = DDIMScheduler(**schedule, clip_sample=False, set_alpha_to_one=False)
    elif scheduler == "pndm":
        noise_scheduler = PNDMScheduler(**schedule, skip_prk_steps=True)
    else:
        raise ValueError(f"scheduler must be 'ddim' or 'pndm', got {scheduler!r}")
    return StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=noise_scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def save_tiny_pipeline(path: Path | str, **options: Any) -> Path:
    """Build the tiny pipeline (``build_tiny_pipeline(**options)``) and ``save_pretrained`` it to ``path``."""
    path = Path(path)
    build_tiny_pipeline(**options).save_pretrained(path)
    return path
