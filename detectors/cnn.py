"""CNN detectors: a small CNN that trains in a minute on a CPU, or a torchvision ResNet."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from synthscope.errors import UserError
from synthscope.runtime import channels_last, evaluating

from .base import TEXT, Field, SavedDetector
from .defaults import ARCHS  # torch-free, so that the command line lists the same ones

WEIGHTS_FILE = "detector.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def small_cnn(channels: int) -> nn.Module:
    """Three conv blocks and a global average pool: any input size, about 100k weights."""
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(*block(channels, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2),
                         *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 1))


def resnet(arch: str, pretrained: str | None) -> nn.Module:
    """A torchvision ResNet with a one-logit head; ``pretrained="imagenet"`` loads torchvision's
    weights (downloaded once into TORCH_HOME), and fails with one clear line when they cannot be had."""
    import torchvision

    builder = getattr(torchvision.models, arch)
    weights = None
    if pretrained == "imagenet":
        weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    elif pretrained not in (None, "none"):
        raise UserError(f"--pretrained {pretrained!r}: choose 'imagenet' or 'none'")
    try:
        network = builder(weights=weights)
    except Exception as error:  # a failed download surfaces as URLError, RuntimeError, OSError…
        raise UserError(
            f"--pretrained imagenet: could not load torchvision's ImageNet weights for {arch} ({error}). "
            f"Without network access, put the weight file ({weights.url.rsplit('/', 1)[-1]}) in "
            f"$TORCH_HOME/hub/checkpoints, or use --pretrained none") from None
    network.fc = nn.Linear(network.fc.in_features, 1)
    return network


class CNNDetector(nn.Module, SavedDetector):
    """Real-vs-fake image classifier; ``forward`` gives the logit of "fake" for images in [0, 1].
    Saved as ``detector.json`` and ``detector.safetensors``."""

    kind: ClassVar[str] = "cnn"
    weights_file: ClassVar[str] = WEIGHTS_FILE
    config_fields: ClassVar[list[Field]] = [("model.arch", ARCHS, True), ("weights_sha256", TEXT, False)]

    def __init__(self, arch: str = "small", channels: int = 3, size: int = 32, pretrained: str | None = None):
        super().__init__()
        if arch not in ARCHS:
            raise UserError(f"unknown detector architecture {arch!r}; choose from {', '.join(ARCHS)}")
        if channels not in (1, 3):
            raise UserError(f"channels must be 1 or 3, got {channels}")
        self.arch, self.channels, self.size, self.pretrained = arch, channels, size, pretrained
        self.network = small_cnn(channels) if arch == "small" else resnet(arch, pretrained)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        channels_last(self)  # 0.7x the time of a training step on a CPU (max-pooling above all)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.arch == "small":
            return self.network(images * 2 - 1).squeeze(1)
        if images.shape[1] == 1:  # ResNets take RGB
            images = images.expand(-1, 3, -1, -1)
        return self.network((images - self.mean) / self.std).squeeze(1)

    def score(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """P(fake) per image, in eval mode; the model's mode is restored afterwards."""
        device = next(self.parameters()).device
        with evaluating(self):
            parts = [torch.sigmoid(self(chunk.to(device))).cpu() for chunk in images.split(batch_size)]
        return torch.cat(parts).numpy().astype(np.float64) if parts else np.empty(0)

    def config(self) -> dict[str, Any]:
        """The ``model`` section of ``detector.json``."""
        return {"kind": self.kind, "arch": self.arch, "channels": self.channels, "size": self.size,
                "pretrained": self.pretrained}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str = "the config", directory: Path | None = None,
                    device: str | torch.device = "cpu", **options: Any) -> CNNDetector:
        """An untrained detector of the saved architecture. The saved weights replace any pretrained ones,
        so nothing is downloaded here."""
        return cls(config["arch"], int(config["channels"]), int(config["size"]), None)
