"""DCGAN with optional class/prompt conditioning (projection discriminator)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import ConditionEmbedding, Generator, evaluating
from .networks import ConvDecoder, ConvEncoder


class GAN(Generator):
    """DCGAN (Radford et al. 2016) for 8-64 px images.

    Conditional variant: the generator sees noise concatenated with the condition embedding; the
    discriminator adds a projection term (Miyato & Koyama 2018). Attributes are dropped at random so
    partial prompts work, as in the other conditional generators.
    """

    kind = "gan"
    default_config: ClassVar[dict[str, Any]] = {
        "nz": 64, "width": 32, "lr": 2e-4, "beta1": 0.5, "batch_size": 128,
        "p_drop_attribute": 0.2, "discriminator_norm": False,
    }
    option_ranges: ClassVar[dict[str, tuple[float, float]]] = {
        "nz": (1, 4096), "width": (1, 1024), "lr": (1e-8, 10), "beta1": (0, 0.999), "batch_size": (2, 65536),
        "p_drop_attribute": (0, 1),
    }

    def build(self) -> None:
        nz, w = int(self.options["nz"]), int(self.options["width"])
        cond_dim = nz if self.conditional else 0
        self.generator_net = ConvDecoder(nz + cond_dim, self.channels, self.size, w)
        # No batch norm in the discriminator: with separate real and fake batches it would normalise
        # away a constant offset (a grey background) that the generator then never learns to fix.
        self.discriminator = ConvEncoder(self.channels, self.size, w, 0, activation=nn.LeakyReLU,
                                         norm=bool(self.options["discriminator_norm"]))
        self.critic_head = nn.Linear(self.discriminator.feature_dim, 1)
        if self.conditional:
            sizes = self.vocabulary.sizes()
            self.g_embedding = ConditionEmbedding(sizes, nz)
            self.d_embedding = ConditionEmbedding(sizes, self.discriminator.feature_dim)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.options["beta1"], 0.999)
        g_params = list(self.generator_net.parameters())
        d_params = list(self.discriminator.parameters()) + list(self.critic_head.parameters())
        if self.conditional:
            g_params += list(self.g_embedding.parameters())
            d_params += list(self.d_embedding.parameters())
        return {"generator": torch.optim.Adam(g_params, lr=self.options["lr"], betas=betas),
                "discriminator": torch.optim.Adam(d_params, lr=self.options["lr"], betas=betas)}

    def _generate_raw(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        if self.conditional:
            z = torch.cat([z, self.g_embedding(condition)], dim=1)
        return torch.tanh(self.generator_net(z))

    def critic(self, images: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """Real/fake logit for images in [-1, 1]."""
        h = self.discriminator(images)
        logit = self.critic_head(h).squeeze(1)
        if self.conditional:
            logit = logit + (self.d_embedding(condition) * h).sum(1)
        return logit

    def training_step(self, images, condition, optimizers) -> dict[str, float]:
        batch = images.shape[0]
        real = images * 2 - 1
        if self.conditional:
            condition = self.g_embedding.drop(condition, self.options["p_drop_attribute"], 0.0)
        z = torch.randn(batch, int(self.options["nz"]), device=images.device)
        fake = self._generate_raw(z, condition)
        ones, zeros = torch.ones(batch, device=images.device), torch.zeros(batch, device=images.device)

        d_loss = (F.binary_cross_entropy_with_logits(self.critic(real, condition), ones)
                  + F.binary_cross_entropy_with_logits(self.critic(fake.detach(), condition), zeros))
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()

        g_loss = F.binary_cross_entropy_with_logits(self.critic(fake, condition), ones)
        optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers["generator"].step()
        return {"loss_d": d_loss.item(), "loss_g": g_loss.item()}

    def generate(self, n, condition, generator, **kwargs) -> torch.Tensor:
        z = torch.randn(n, int(self.options["nz"]), generator=generator, device=self.device)
        return (self._generate_raw(z, condition) + 1) / 2

    def discriminator_logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The discriminator's "real" logit D(x) per image in [0, 1], unconditional, on the CPU."""
        parts = []
        with evaluating(self):
            for chunk in images.split(batch_size):
                chunk = chunk.to(self.device) * 2 - 1  # the GAN works in [-1, 1]
                condition = self.null_condition(chunk.shape[0]) if self.conditional else None
                parts.append(self.critic(chunk, condition).cpu())
        return torch.cat(parts) if parts else torch.empty(0)

    def discriminator_score(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """P(real) by the trained discriminator, unconditional (a detector baseline)."""
        return torch.sigmoid(self.discriminator_logits(images, batch_size))
