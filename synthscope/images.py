"""Images crossing the API: float tensors in [0, 1] <-> 8-bit tensors <-> Pillow images, in one place.

Inside the toolkit an image is a float tensor (C, H, W) (or a batch (N, C, H, W)) with values in
[0, 1]; files and viewers hold 8-bit pixels. Every conversion between the two goes through here, so
that a picture written to a corpus, shown in a report and re-encoded by a robustness sweep lands on
the same 8-bit values:

- float -> 8-bit rounds to the nearest of the 256 levels, computed in float64 (a float32 product
  ``x * 255`` can round across a half-way point; float64 holds it exactly), after clamping to
  [0, 1] (samplers overshoot slightly; clamping is what any viewer shows);
- 8-bit -> float divides by 255, so an image read back from a PNG is exactly what was written;
- Pillow conversions use ``torchvision.transforms.v2.functional`` (1 channel <-> "L", 3 <-> "RGB",
  4 <-> "RGBA").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] (any shape) as 8-bit values, rounded to the nearest level; 8-bit
    images are returned as they are."""
    if images.dtype == torch.uint8:
        return images
    exact = images.detach().to(torch.float64).clamp(0, 1).mul(255).round_()
    return exact.to(torch.uint8).to(images.device)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """8-bit images as float32 in [0, 1] (``k / 255``); float images are returned as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def to_pil(image: torch.Tensor) -> Image.Image:
    """One image (C, H, W), float in [0, 1] or 8-bit, as a Pillow image ("L", "RGB" or "RGBA")."""
    if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(f"expected one image (C, H, W) with C in 1, 3, 4; got {tuple(image.shape)}")
    return F.to_pil_image(to_uint8(image).cpu())


def to_pil_list(images: torch.Tensor | Sequence[torch.Tensor]) -> list[Image.Image]:
    """A batch (N, C, H, W), or a sequence of (C, H, W) images, as Pillow images."""
    return [to_pil(image) for image in images]


def from_pil(image: Image.Image) -> torch.Tensor:
    """An 8-bit "L" or "RGB" (or "RGBA") Pillow image as a float tensor (C, H, W) in [0, 1]."""
    return to_float(F.pil_to_tensor(image))
