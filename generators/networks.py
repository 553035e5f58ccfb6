"""Convolutional encoder/decoder stacks shared by the autoencoders and the GAN."""

from __future__ import annotations

import math

import torch
from torch import nn

from synthscope.errors import UserError


def _levels(size: int) -> int:
    """Number of stride-2 stages between ``size`` px and a 4x4 map."""
    levels = math.log2(size / 4)
    if size < 8 or levels != int(levels):
        raise UserError(f"image size must be a power of two >= 8 (got {size})")
    return int(levels)


class ConvEncoder(nn.Module):
    """Image (B, C, S, S) -> vector (B, out_dim) through stride-2 convolutions down to 4x4."""

    def __init__(self, channels: int, size: int, width: int, out_dim: int,
                 norm: bool = True, activation: type[nn.Module] = nn.ReLU, first_norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for level in range(_levels(size)):
            out_ch = width * 2**level
            layers.append(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=not norm))
            if norm and (level > 0 or first_norm):
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(activation(0.2) if activation is nn.LeakyReLU else activation())
            in_ch = out_ch
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = in_ch * 16
        self.head = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class ConvDecoder(nn.Module):
    """Vector (B, in_dim) -> image logits (B, C, S, S) through stride-2 transposed convolutions."""

    def __init__(self, in_dim: int, channels: int, size: int, width: int):
        super().__init__()
        levels = _levels(size)
        self.top = width * 2 ** (levels - 1)
        self.project = nn.Sequential(nn.Linear(in_dim, self.top * 16), nn.BatchNorm1d(self.top * 16), nn.ReLU())
        layers: list[nn.Module] = []
        in_ch = self.top
        for level in reversed(range(levels - 1)):
            out_ch = width * 2**level
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(out_ch), nn.ReLU()]
            in_ch = out_ch
        layers.append(nn.ConvTranspose2d(in_ch, channels, 4, stride=2, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z).view(-1, self.top, 4, 4))
