"""Image-to-image translation: pix2pix (Isola et al. 2017), a U-Net generator and a PatchGAN
discriminator trained with an adversarial and an L1 loss on paired images; CycleGAN (Zhu et al. 2017),
two generators and two discriminators with a cycle-consistency loss, trained on unpaired images.

A translation model is trained by the same loop as the other generators: its training set is a
:class:`~.pairs.PairedImageSet`, whose ``images`` are the targets (domain B) and whose ``inputs``
(domain A) the loop hands the model where a conditional model gets its class ids.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from synthscope.errors import UserError
from synthscope.runtime import evaluating

from .base import Generator
from .imageset import ImageSet

# How far from the ends of [-1, 1] a residual model's input is pulled before ``atanh`` (atanh(1) is
# infinite): a saturated pixel passed through unchanged comes out 0.0025 off, in [0, 1] terms.
RESIDUAL_LIMIT = 0.995
SNAPSHOT_SUBJECTS = 4  # training inputs a snapshot shows (few, so each stays legible beside the others)


class UNet(nn.Module):
    """Encoder-decoder with skip connections between mirrored levels (Ronneberger et al. 2015), as
    pix2pix uses it: the skips carry the input's layout straight to the output, so the bottleneck
    need only carry what changes."""

    def __init__(self, in_channels: int, out_channels: int, width: int, levels: int, dropout: float):
        super().__init__()
        chans = [min(width * 2**i, width * 8) for i in range(levels)]
        self.downs = nn.ModuleList()
        previous = in_channels
        for i, ch in enumerate(chans):
            # No normalisation on the outermost level (the raw image) nor the innermost (a 1x1 map
            # at the smallest size), as in the paper.
            norm = 0 < i < levels - 1
            layers: list[nn.Module] = [nn.Conv2d(previous, ch, 4, stride=2, padding=1, bias=not norm)]
            if norm:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(0.2))
            self.downs.append(nn.Sequential(*layers))
            previous = ch
        self.ups = nn.ModuleList()
        for j, i in enumerate(reversed(range(levels))):
            ch_in = chans[i] if i == levels - 1 else 2 * chans[i]
            if i == 0:
                self.ups.append(nn.ConvTranspose2d(ch_in, out_channels, 4, stride=2, padding=1))
                continue
            layers = [nn.ConvTranspose2d(ch_in, chans[i - 1], 4, stride=2, padding=1, bias=False),
                      nn.BatchNorm2d(chans[i - 1])]
            if j < 3 and dropout > 0:  # the paper's noise: dropout in the three innermost decoder levels
                layers.append(nn.Dropout(dropout))
            layers.append(nn.ReLU())
            self.ups.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        for j, up in enumerate(self.ups):
            if j > 0:
                x = torch.cat([x, skips[len(skips) - 1 - j]], dim=1)
            x = up(x)
        return x


class PatchDiscriminator(nn.Module):
    """PatchGAN: a real/fake logit per overlapping patch of the (input, output) pair, so the
    adversarial loss judges local texture while L1 takes care of the low frequencies."""

    def __init__(self, in_channels: int, width: int, layers: int):
        super().__init__()
        body: list[nn.Module] = []
        previous = in_channels
        for i in range(layers):
            ch = min(width * 2**i, width * 8)
            body.append(nn.Conv2d(previous, ch, 4, stride=2, padding=1, bias=i == 0))
            if i > 0:
                body.append(nn.BatchNorm2d(ch))
            body.append(nn.LeakyReLU(0.2))
            previous = ch
        body.append(nn.Conv2d(previous, 1, 3, stride=1, padding=1))
        self.body = nn.Sequential(*body)

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        """Logits for one image, or for an (input, output) pair stacked along the channels."""
        return self.body(torch.cat(images, dim=1))


class ImagePool:
    """The history of generated images a CycleGAN discriminator learns from (Shrivastava et al. 2017,
    as Zhu et al. use it). Until ``size`` images are stored, a query returns its images and stores
    them; after that each image is, with even odds, returned as it is or swapped for a stored older one
    (which it replaces). The discriminators thus judge what the generators drew over many recent
    steps, not only at the last, which damps the two sides chasing each other."""

    def __init__(self, size: int):
        self.size = int(size)
        self.images: torch.Tensor | None = None  # (stored, C, H, W), at most ``size``

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (detached), some swapped for older ones once the pool is full; draws from torch's
        global random stream, which the training checkpoints save."""
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            stored = 0 if self.images is None else len(self.images)
            if stored < self.size:
                self.images = image[None].clone() if self.images is None else torch.cat([self.images, image[None]])
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                index = int(torch.randint(stored, ()))
                out.append(self.images[index].clone())
                self.images[index] = image
            else:
                out.append(image)
        return torch.stack(out)


class Translator(Generator):
    """Base of the image-to-image models: they translate given images rather than sample new ones."""

    paired_only: ClassVar[bool] = False
    # Runs saved before ``residual`` existed drew the whole output (no residual).
    added_config: ClassVar[dict[str, Any]] = {"options": {"residual": False}}

    def __init__(self, channels: int, size: int, vocabulary=None, conditional: bool = False, **options: Any):
        if conditional:
            raise UserError(f"{self.kind}: a translation model is conditioned on its input image, "
                            f"not on labels; drop --conditional")
        super().__init__(channels, size, None, False, **options)

    def training_inputs(self, data: ImageSet) -> torch.Tensor:
        """The input image of every training image: what the training loop conditions each step on."""
        inputs = getattr(data, "inputs", None)
        if inputs is None:
            raise UserError(f"{self.kind} translates images: train it on a translation set (domains A and B, "
                            f"e.g. --data portraits --translate 'age:young->older')")
        if self.paired_only and not getattr(data, "paired", False):
            raise UserError(f"{self.kind} learns from pairs (the same subject in A and B), but {data.name} "
                            f"is unpaired; give paired data (A/ and B/ with matching file names)")
        if tuple(inputs.shape[1:]) != (self.channels, self.size, self.size):
            raise UserError(f"{data.name}: inputs of shape {tuple(inputs.shape[1:])}, but this {self.kind} "
                            f"takes {(self.channels, self.size, self.size)}")
        return inputs

    def _halvings(self) -> tuple[int, int]:
        """The U-Net's ``levels`` and the PatchGAN's ``d_layers``, each checked to halve the image evenly."""
        levels, d_layers = int(self.options["levels"]), int(self.options["d_layers"])
        for name, count in (("levels", levels), ("d_layers", d_layers)):
            if self.size % 2**count:
                raise UserError(f"{self.kind}: option {name}={count} halves the image {count} times, "
                                f"which a {self.size} px image does not allow")
        return levels, d_layers

    def snapshot(self, data: ImageSet, seed: int) -> tuple[torch.Tensor, int]:
        """Rows: the first training inputs (the same all through training), their translations, then the
        true targets (paired data) or, for a model that translates back, the round trip A -> B -> A."""
        inputs = self.training_inputs(data)[:SNAPSHOT_SUBJECTS]
        outputs = self.translate(inputs)
        rows = [inputs, outputs]
        if getattr(data, "paired", False):
            rows.append(data.images[:len(inputs)])
        elif hasattr(self, "translate_back"):
            rows.append(self.translate_back(outputs))
        return torch.cat(rows), len(inputs)

    def generate(self, n, condition, generator, **kwargs) -> torch.Tensor:
        raise UserError(f"{self.kind} translates images instead of drawing new ones: use "
                        f"'synthscope generate translate RUN_DIR INPUT --out CORPUS_DIR'")

    def forward_translate(self, inputs: torch.Tensor) -> torch.Tensor:
        """Inputs in [-1, 1] -> outputs in [-1, 1] (in training mode when the model is)."""
        raise NotImplementedError

    def _output(self, network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """``tanh`` of what ``network`` makes of ``inputs`` in [-1, 1]. With the ``residual`` option the
        network's output is added to the input before the ``tanh`` (in its pre-activation space), so an
        untrained model starts at the identity and learns only what the translation changes: at 32 px a
        stride-2 U-Net otherwise spends most of its training learning to redraw what stays the same
        (held-out ageing L1 0.039 plain against 0.019 residual, identity 0.047, in 3000 steps)."""
        out = network(inputs)
        if self.options["residual"]:
            out = out + torch.atanh(inputs.clamp(-RESIDUAL_LIMIT, RESIDUAL_LIMIT))
        return torch.tanh(out)

    def translate(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """``images`` (N, C, H, W) in [0, 1] translated to the other domain, in [0, 1] on the CPU;
        deterministic (evaluation mode: no dropout)."""
        return self._translate_with(self.forward_translate, images, batch_size)

    def _translate_with(self, network, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.channels, self.size, self.size):
            raise UserError(f"{self.kind}: expected images (N, {self.channels}, {self.size}, {self.size}), "
                            f"got {tuple(images.shape)}")
        parts = []
        with evaluating(self):
            for chunk in images.split(batch_size):
                out = network(chunk.to(self.device) * 2 - 1)
                parts.append(((out + 1) / 2).clamp(0, 1).cpu())
        return torch.cat(parts) if parts else images.new_empty((0, *images.shape[1:]))


class Pix2Pix(Translator):
    """pix2pix (Isola et al. 2017): paired translation with a U-Net generator, a PatchGAN discriminator
    that sees the input with the output, and loss = adversarial + ``lambda_l1`` * L1 to the target."""

    kind = "pix2pix"
    paired_only = True
    default_config: ClassVar[dict[str, Any]] = {
        "width": 16, "levels": 4, "dropout": 0.5, "d_width": 16, "d_layers": 2,
        "lambda_l1": 100.0, "lr": 2e-4, "beta1": 0.5, "batch_size": 16, "residual": True,
    }
    option_ranges: ClassVar[dict[str, tuple[float, float]]] = {
        "width": (1, 1024), "levels": (1, 10), "dropout": (0, 0.99), "d_width": (1, 1024), "d_layers": (1, 8),
        "lambda_l1": (0, 1e6), "lr": (1e-8, 10), "beta1": (0, 0.999), "batch_size": (2, 65536),
    }

    def build(self) -> None:
        levels, d_layers = self._halvings()
        self.generator_net = UNet(self.channels, self.channels, int(self.options["width"]), levels,
                                  float(self.options["dropout"]))
        self.discriminator = PatchDiscriminator(2 * self.channels, int(self.options["d_width"]), d_layers)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.options["beta1"], 0.999)
        return {"generator": torch.optim.Adam(self.generator_net.parameters(), lr=self.options["lr"], betas=betas),
                "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=self.options["lr"],
                                                  betas=betas)}

    def forward_translate(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._output(self.generator_net, inputs)

    def training_step(self, images, condition, optimizers) -> dict[str, float]:
        target, source = images * 2 - 1, condition * 2 - 1
        fake = self.forward_translate(source)

        real_logits = self.discriminator(source, target)
        fake_logits = self.discriminator(source, fake.detach())
        # Halved, as in the paper, so the discriminator learns more slowly than the generator.
        d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                        + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()

        logits = self.discriminator(source, fake)
        adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        l1 = F.l1_loss(fake, target)
        g_loss = adversarial + float(self.options["lambda_l1"]) * l1
        optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers["generator"].step()
        return {"loss_d": d_loss.item(), "loss_g": adversarial.item(), "loss_l1": l1.item()}


class CycleGAN(Translator):
    """CycleGAN (Zhu et al. 2017): generators A->B and B->A, a discriminator per domain (least-squares
    GAN loss), and a cycle-consistency loss (A -> B -> A returns the input) weighted ``lambda_cycle``;
    ``lambda_identity`` (a share of ``lambda_cycle``, 0 to switch it off) asks each generator to leave an
    image already in its target domain alone; each discriminator learns from a pool of the last
    ``pool_size`` generated images (:class:`ImagePool`). It never needs to know which A goes with which B."""

    kind = "cyclegan"
    default_config: ClassVar[dict[str, Any]] = {
        "width": 16, "levels": 4, "d_width": 16, "d_layers": 2, "lambda_cycle": 10.0,
        "lambda_identity": 0.5, "lr": 2e-4, "beta1": 0.5, "batch_size": 16, "residual": True, "pool_size": 50,
    }
    option_ranges: ClassVar[dict[str, tuple[float, float]]] = {
        "width": (1, 1024), "levels": (1, 10), "d_width": (1, 1024), "d_layers": (1, 8),
        "lambda_cycle": (0, 1e6), "lambda_identity": (0, 1e3), "lr": (1e-8, 10), "beta1": (0, 0.999),
        "batch_size": (2, 65536), "pool_size": (0, 100_000),
    }
    # Runs saved before these options existed: no residual, no image pool.
    added_config: ClassVar[dict[str, Any]] = {"options": {"residual": False, "pool_size": 0}}

    def build(self) -> None:
        levels, d_layers = self._halvings()
        width, d_width = int(self.options["width"]), int(self.options["d_width"])
        self.a_to_b = UNet(self.channels, self.channels, width, levels, 0.0)
        self.b_to_a = UNet(self.channels, self.channels, width, levels, 0.0)
        self.critic_a = PatchDiscriminator(self.channels, d_width, d_layers)
        self.critic_b = PatchDiscriminator(self.channels, d_width, d_layers)
        # Generated images of each domain, for its discriminator: ``pool_size`` of them (0: none).
        self.pools = {"a": ImagePool(int(self.options["pool_size"])), "b": ImagePool(int(self.options["pool_size"]))}

    def training_state(self) -> dict[str, torch.Tensor]:
        return {f"pool_{name}": pool.images for name, pool in self.pools.items() if pool.images is not None}

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, pool in self.pools.items():
            images = state.get(f"pool_{name}")
            pool.images = None if images is None else images.to(self.device)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas, lr = (self.options["beta1"], 0.999), self.options["lr"]
        generators = [*self.a_to_b.parameters(), *self.b_to_a.parameters()]
        critics = [*self.critic_a.parameters(), *self.critic_b.parameters()]
        return {"generator": torch.optim.Adam(generators, lr=lr, betas=betas),
                "discriminator": torch.optim.Adam(critics, lr=lr, betas=betas)}

    def forward_translate(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._output(self.a_to_b, inputs)

    def backward_translate(self, inputs: torch.Tensor) -> torch.Tensor:
        """B -> A, inputs and outputs in [-1, 1]."""
        return self._output(self.b_to_a, inputs)

    def translate_back(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Domain-B ``images`` in [0, 1] translated to domain A (the second half of a round trip)."""
        return self._translate_with(self.backward_translate, images, batch_size)

    def training_step(self, images, condition, optimizers) -> dict[str, float]:
        real_b, real_a = images * 2 - 1, condition * 2 - 1
        fake_b, fake_a = self.forward_translate(real_a), self.backward_translate(real_b)

        def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
            return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))

        adversarial = gan_loss(self.critic_b(fake_b), True) + gan_loss(self.critic_a(fake_a), True)
        cycle = (F.l1_loss(self.backward_translate(fake_b), real_a)
                 + F.l1_loss(self.forward_translate(fake_a), real_b))
        g_loss = adversarial + float(self.options["lambda_cycle"]) * cycle
        identity_weight = float(self.options["lambda_cycle"]) * float(self.options["lambda_identity"])
        identity = torch.zeros((), device=images.device)
        if identity_weight > 0:
            identity = (F.l1_loss(self.forward_translate(real_b), real_b)
                        + F.l1_loss(self.backward_translate(real_a), real_a))
            g_loss = g_loss + identity_weight * identity
        optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers["generator"].step()

        # Each discriminator halved, as in the paper, so they learn more slowly than the generators; each
        # judges fakes from its pool of recent ones.
        pooled_a, pooled_b = self.pools["a"].query(fake_a), self.pools["b"].query(fake_b)
        d_loss = 0.5 * (gan_loss(self.critic_a(real_a), True) + gan_loss(self.critic_a(pooled_a), False)
                        + gan_loss(self.critic_b(real_b), True) + gan_loss(self.critic_b(pooled_b), False))
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()
        return {"loss_d": d_loss.item(), "loss_g": adversarial.item(), "loss_cycle": cycle.item(),
                "loss_identity": identity.item()}
