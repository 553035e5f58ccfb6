"""Autoencoder (plain, denoising, colourising) and variational autoencoder."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from synthscope.errors import UserError

from .base import Generator, evaluating
from .networks import ConvDecoder, ConvEncoder

AE_MODES = ("plain", "denoising", "colourising")


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601) repeated over the channels, so the input keeps the model's shape."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True).expand_as(images)


class AutoEncoder(Generator):
    """Convolutional autoencoder with a configurable latent size.

    ``mode="denoising"`` trains noisy input -> clean target; ``mode="colourising"`` trains grey ->
    colour. Sampling decodes draws from a Gaussian fitted to the training latents (an AE has no prior
    of its own; the lecture point is how poor such samples are next to a VAE's).
    """

    kind = "ae"
    encoder_outputs: ClassVar[int] = 1  # the VAE's encoder gives a mean and a log-variance
    default_config: ClassVar[dict[str, Any]] = {
        "latent_dim": 8, "width": 32, "mode": "plain", "noise_std": 0.35,
        "lr": 2e-3, "batch_size": 128,
    }
    option_ranges: ClassVar[dict[str, tuple[float, float]]] = {
        "latent_dim": (1, 4096), "width": (1, 1024), "noise_std": (0, 10), "lr": (1e-8, 10),
        "batch_size": (1, 65536), "beta": (0, 1e4),
    }

    def build(self) -> None:
        if self.options["mode"] not in AE_MODES:
            raise UserError(f"ae: mode must be one of {AE_MODES}, got {self.options['mode']!r}")
        if self.options["mode"] == "colourising" and self.channels != 3:
            raise UserError("ae: colourising needs colour images (e.g. --data portraits)")
        z, w = int(self.options["latent_dim"]), int(self.options["width"])
        self.encoder = ConvEncoder(self.channels, self.size, w, z * self.encoder_outputs)
        self.decoder = ConvDecoder(z, self.channels, self.size, w)
        self.register_buffer("latent_mean", torch.zeros(z))
        self.register_buffer("latent_scale", torch.eye(z))  # Cholesky factor of the latent covariance

    def corrupt(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The model's input for clean ``images`` under its mode."""
        mode = self.options["mode"]
        if mode == "denoising":
            noise = torch.randn(images.shape, generator=generator, device=images.device)
            return (images + self.options["noise_std"] * noise).clamp(0, 1)
        if mode == "colourising":
            return to_grey(images)
        return images

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images * 2 - 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Clean output for (already corrupted, if the mode wants it) input images."""
        return self.decode(self.encode(images))

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=self.options["lr"])}

    def training_step(self, images, condition, optimizers) -> dict[str, float]:
        logits = self.decoder(self.encode(self.corrupt(images)))
        loss = F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / images.shape[0]
        optimizers["model"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["model"].step()
        return {"loss": loss.item()}

    def finish_training(self, images: torch.Tensor) -> None:
        """Fit the latent Gaussian used for sampling."""
        with evaluating(self):
            z = torch.cat([self.encode(chunk.to(self.device)) for chunk in images.split(512)])
            self.latent_mean.copy_(z.mean(0))
            cov = torch.cov(z.T).reshape(z.shape[1], z.shape[1]) + 1e-4 * torch.eye(z.shape[1], device=z.device)
            self.latent_scale.copy_(torch.linalg.cholesky(cov))

    def generate(self, n, condition, generator, **kwargs) -> torch.Tensor:
        eps = torch.randn(n, self.latent_mean.numel(), generator=generator, device=self.device)
        return self.decode(self.latent_mean + eps @ self.latent_scale.T)


class VAE(AutoEncoder):
    """Variational autoencoder: Bernoulli reconstruction + beta-weighted KL to a N(0, I) prior."""

    kind = "vae"
    encoder_outputs: ClassVar[int] = 2
    default_config: ClassVar[dict[str, Any]] = {
        "latent_dim": 16, "width": 32, "beta": 1.0, "mode": "plain", "noise_std": 0.35,
        "lr": 2e-3, "batch_size": 128,
    }

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = super().encode(images).chunk(2, dim=1)
        return mean, log_var.clamp(-10, 10)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The posterior mean (used for scatter plots, interpolation and reconstructions)."""
        return self.posterior(images)[0]

    def training_step(self, images, condition, optimizers) -> dict[str, float]:
        mean, log_var = self.posterior(self.corrupt(images))
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        logits = self.decoder(z)
        batch = images.shape[0]
        reconstruction = F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / batch
        kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp()) / batch
        loss = reconstruction + self.options["beta"] * kl
        optimizers["model"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["model"].step()
        return {"loss": loss.item(), "reconstruction": reconstruction.item(), "kl": kl.item()}

    def finish_training(self, images: torch.Tensor) -> None:
        """A VAE samples from its prior; nothing to fit."""

    def generate(self, n, condition, generator, **kwargs) -> torch.Tensor:
        z = torch.randn(n, self.latent_mean.numel(), generator=generator, device=self.device)
        return self.decode(z)

    def interpolate(self, start: torch.Tensor, end: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decoded images along the straight line between the latents of two images."""
        with evaluating(self):
            z = self.encode(torch.stack([start, end]).to(self.device))
            weights = torch.linspace(0, 1, steps, device=self.device).unsqueeze(1)
            return self.decode(z[0] * (1 - weights) + z[1] * weights).cpu()
