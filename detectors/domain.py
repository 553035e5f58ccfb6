"""What a detector's training images looked like, and whether an image to score looks like them.

A detector trained on 16 px greyscale digits still gives a confident P(fake) for a 4000 x 3000
colour photo; that number says nothing. At training time :func:`training_profile` records, for the
images the detector learnt from and calibrated on (real and synthetic alike):

* their native size: the shorter side of each file, as stored (a sample of the files);
* whether they are in colour: an image is in colour when its channels differ by more than
  ``COLOUR_SPREAD`` on average (a greyscale picture saved as RGB counts as greyscale);
* simple statistics of the detector's own input (the image after resizing to the detector's size):
  brightness (mean), contrast (standard deviation) and, for colour detectors, colourfulness (mean
  spread between channels), each as the range of the middle 99.8 % of training images.

:class:`DomainCheck` then says, for one image, what differs: a shorter side more than twice as large
or less than half as small as any training image's, colour where training had none (or the other
way round), or a statistic outside its training range widened by a quarter of that range (at least
``MIN_MARGIN``). It is a coarse check for gross mismatches, not a guarantee: an image that passes
may still be unlike anything the detector saw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from synthscope.images import from_pil

PROFILE_FORMAT = "synthscope-training-domain/1"
MAX_FILES = 500  # files whose native size (and, for greyscale detectors, colour) is read at training
COLOUR_SPREAD = 0.02  # mean spread between channels (0..1) above which an image is in colour
SIZE_FACTOR = 2.0  # a shorter side this many times beyond the training range is out of domain
TAIL = 0.1  # percent of training images left out at each end of a statistic's range
MIN_MARGIN = 0.02  # the least a statistic's range is widened by, on the 0..1 pixel scale
RARE = 0.01  # colour (or greyscale) is out of domain when fewer training images than this share had it
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
THUMBNAIL = 64  # px: the size a file is reduced to when only its colour is wanted


def colourfulness(images: torch.Tensor) -> np.ndarray:
    """Mean spread between the largest and smallest channel value per pixel, per image (0 for grey)."""
    if images.shape[1] == 1:
        return np.zeros(len(images))
    spread = images.max(dim=1).values - images.min(dim=1).values
    return spread.flatten(1).mean(dim=1).double().numpy()


def input_statistics(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image statistics of a detector's input (N, C, H, W) in [0, 1]: brightness, contrast and,
    for colour input, colourfulness."""
    flat = images.flatten(1).double()
    statistics = {"brightness": flat.mean(dim=1).numpy(), "contrast": flat.std(dim=1, unbiased=False).numpy()}
    if images.shape[1] == 3:
        statistics["colourfulness"] = colourfulness(images)
    return statistics


def file_shape(path: str | os.PathLike, colour: bool = False) -> tuple[int, int, bool | None] | None:
    """Width and height of an image file as stored (read from its header), and with ``colour``
    whether its content is in colour (from a reduced copy; None when not asked); None when the file
    cannot be opened as an image."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            in_colour = None
            if colour:
                in_colour = False
                if image.mode not in GREY_MODES:
                    image.draft("RGB", (THUMBNAIL, THUMBNAIL))  # JPEG: decode at a fraction of the size
                    image.thumbnail((THUMBNAIL, THUMBNAIL))
                    pixels = from_pil(image.convert("RGB"))
                    in_colour = bool(colourfulness(pixels[None])[0] > COLOUR_SPREAD)
            return width, height, in_colour
    except Exception:  # noqa: BLE001 (any file Pillow cannot read: the check is skipped, not the image)
        return None


def training_profile(images: torch.Tensor, files: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """What the training images looked like (see the module docstring), as saved in ``detector.json``
    under ``training_domain``. ``files`` are the images' files (a sample of up to ``MAX_FILES`` is read
    for native sizes; missing files are left out)."""
    channels = int(images.shape[1])
    statistics = {}
    for name, values in input_statistics(images).items():
        low, high = np.percentile(values, [TAIL, 100 - TAIL])
        statistics[name] = {"low": float(low), "high": float(high), "min": float(values.min()),
                            "max": float(values.max())}
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(len(files), size=min(MAX_FILES, len(files)), replace=False).tolist())
    # A colour detector's input shows its colour; a greyscale detector's does not: read the files.
    shapes = [file_shape(files[i], colour=channels == 1) for i in sample]
    shapes = [shape for shape in shapes if shape is not None]
    if channels == 3:
        colour_share = float((colourfulness(images) > COLOUR_SPREAD).mean())
    else:
        colour_share = float(np.mean([shape[2] for shape in shapes])) if shapes else None
    native = None
    if shapes:
        sides = np.array([min(w, h) for w, h, _ in shapes])
        sizes, counts = np.unique([f"{w}x{h}" for w, h, _ in shapes], return_counts=True)
        common = sorted(zip(counts.tolist(), sizes.tolist()), reverse=True)[:5]
        native = {"n_files_read": len(shapes), "min_side": int(sides.min()), "max_side": int(sides.max()),
                  "common_sizes": {size: count for count, size in common}}
    return {"format": PROFILE_FORMAT, "n_images": int(len(images)), "input_size": int(images.shape[-1]),
            "input_channels": channels, "colour_share": colour_share, "native": native,
            "statistics": statistics}


class DomainCheck:
    """Checks images against a detector's recorded training profile (``detector.json``'s
    ``training_domain``); built from None (an older detector), it checks nothing."""

    def __init__(self, profile: dict[str, Any] | None):
        self.profile = profile if isinstance(profile, dict) and profile.get("format") == PROFILE_FORMAT else None

    @property
    def active(self) -> bool:
        return self.profile is not None

    def reasons(self, path: str | os.PathLike, image: torch.Tensor) -> list[str]:
        """Why one image (its file, and the detector's input made from it, (C, H, W)) looks unlike the
        training images; empty when nothing differs or nothing was recorded."""
        if self.profile is None:
            return []
        found = []
        channels = int(image.shape[0])
        shape = file_shape(path, colour=channels == 1)
        native = self.profile.get("native")
        if shape is not None and native:
            side, low, high = min(shape[:2]), native["min_side"], native["max_side"]
            if side > SIZE_FACTOR * high or side < low / SIZE_FACTOR:
                seen = f"{low} px" if low == high else f"{low} to {high} px"
                found.append(f"size {shape[0]}x{shape[1]} px (training images: {seen} on the shorter side)")
        colour = (bool(colourfulness(image[None])[0] > COLOUR_SPREAD) if channels == 3
                  else (shape[2] if shape is not None else None))
        share = self.profile.get("colour_share")
        if colour is not None and share is not None:
            if colour and share < RARE:
                found.append("in colour (training images: greyscale)")
            elif not colour and 1 - share < RARE:
                found.append("greyscale (training images: in colour)")
        values = input_statistics(image[None])
        for name, recorded in self.profile.get("statistics", {}).items():
            if name not in values or (name == "colourfulness" and any(r.startswith("in colour") for r in found)):
                continue  # colour already said
            value, low, high = float(values[name][0]), recorded["low"], recorded["high"]
            margin = max((high - low) / 4, MIN_MARGIN)
            if value < low - margin or value > high + margin:
                found.append(f"{name} {value:.2f} (training images: {low:.2f} to {high:.2f})")
        return found


def kind_of_reason(reason: str) -> str:
    """The check a reason comes from: size, colour or statistics (for counting)."""
    if reason.startswith("size"):
        return "size"
    if reason.startswith(("in colour", "greyscale")):
        return "colour"
    return "pixel statistics"
