"""Built-in data sets (no downloads) and the dispatcher that turns ``--data`` into an ImageSet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from synthscope.errors import UserError
from synthscope.runtime import check_memory

from .conditioning import Vocabulary
from .imageset import ImageSet

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
BUILTIN_SETS = ("digits", "portraits")
DIGITS_COUNT = 1797  # images in scikit-learn's bundled set


def digits_vocabulary() -> Vocabulary:
    """Digits are prompted as "3", "three" or "a photo of the digit 3"."""
    values = [str(d) for d in range(10)]
    phrases = {name: ("digit", str(d)) for d, name in enumerate(DIGIT_NAMES)}
    return Vocabulary(attributes={"digit": values}, phrases=phrases)


def load_digits(size: int = 16) -> ImageSet:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), resized to ``size`` px, grey."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = images.clamp(0, 1)
    labels = [str(int(t)) for t in bunch.target]
    return ImageSet(
        name="digits",
        images=images,
        attributes=pd.DataFrame({"digit": labels}),
        captions=[f"a photo of the digit {d}" for d in labels],
        vocabulary=digits_vocabulary(),
    )


def load_data(spec: str, size: int | None = None, n: int | None = None, seed: int = 0,
              strict: bool = False) -> ImageSet:
    """``digits``, ``portraits`` or a folder path, as an ImageSet of ``size`` px images."""
    if size is not None and size < 1:
        raise UserError(f"--size must be a positive number of pixels, got {size}")
    if n is not None and n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if spec == "digits":
        check_memory(min(n or DIGITS_COUNT, DIGITS_COUNT) * (size or 16) ** 2 * 4 * 2, f"--size {size or 16} (digits)")
        data = load_digits(size or 16)
    elif spec == "portraits":
        from .portraits import generate_portraits

        check_memory((n or 4000) * 3 * (size or 32) ** 2 * 4 * 2, f"--n {n or 4000} portraits at --size {size or 32}")
        data = generate_portraits(n=n or 4000, seed=seed, size=size or 32)
        return data
    else:
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(
                f"--data {spec!r}: not a built-in set ({', '.join(BUILTIN_SETS)}) and no such folder"
            )
        from .folder import load_folder

        data = load_folder(path, size=size or 32, strict=strict)
    if n is not None and n < len(data):
        data = data.subset(np.random.default_rng(seed).permutation(len(data))[:n])
    return data
