"""Data for image-to-image translation: two domains A (inputs) and B (targets), paired or unpaired.

The portraits world draws the *same* person twice: at two ages (young -> older, with the same face,
clothes and background, only hair colour, baldness and wrinkles changed), or in grey and in colour.
Paired sets hold the same person in row i of A and of B (what pix2pix trains on); unpaired sets hold
different people in A and in B (what CycleGAN trains on: the pairs are never shown). A user's own
folder with sub-folders ``A/`` and ``B/`` is paired when their file names match, else unpaired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from synthscope.errors import UserError
from synthscope.images import to_float

from .attributes import AGES
from .imageset import ImageSet

# The attributes a translation may change, and their values (the first is the default source).
TRANSLATABLE: dict[str, tuple[str, ...]] = {"age": AGES, "colour": ("grey", "colour")}
# ITU-R BT.601 luma weights: how a colour picture is turned grey.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Translation:
    """Which attribute a translation changes, from which value to which (``age:young->older``)."""

    attribute: str
    source: str
    target: str

    def __str__(self) -> str:
        return f"{self.attribute}:{self.source}->{self.target}"

    def reversed(self) -> Translation:
        """The way back (``age:older->young`` for ``age:young->older``)."""
        return Translation(self.attribute, self.target, self.source)


def parse_translation(text: str) -> Translation:
    """``age:young->older``, ``age:older->young``, ``colour`` (grey -> colour) or ``colour:colour->grey``;
    anything else is one error listing what is known."""
    known = "; ".join(f"{a} ({', '.join(v)})" for a, v in TRANSLATABLE.items())
    attribute, _, change = str(text).strip().partition(":")
    attribute = attribute.strip()
    if attribute not in TRANSLATABLE:
        raise UserError(f"--translate {text!r}: unknown attribute {attribute!r}; known: {known}. "
                        f"Write ATTRIBUTE:FROM->TO, e.g. age:young->older")
    values = TRANSLATABLE[attribute]
    if not change:
        if attribute != "colour":
            raise UserError(f"--translate {text!r}: say which {attribute}s, e.g. {attribute}:{values[0]}->{values[-1]}")
        return Translation(attribute, values[0], values[-1])
    source, arrow, target = change.partition("->")
    source, target = source.strip(), target.strip()
    if not arrow and change.endswith("-"):  # what is left after a shell took '>...' for a redirect
        raise UserError(f"--translate {text!r}: cut short at '>': quote the value, e.g. "
                        f"--translate '{attribute}:{change}>{values[-1] if change[:-1] != values[-1] else values[0]}'")
    if not arrow or source not in values or target not in values or source == target:
        raise UserError(f"--translate {text!r}: expected {attribute}:FROM->TO with two different values "
                        f"of {', '.join(values)}")
    return Translation(attribute, source, target)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """Colour images (N, 3, H, W) as grey ones, still 3 channels (so both domains share a shape)."""
    weights = torch.tensor(LUMA, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()


def _draw_people(attributes: pd.DataFrame, image_seeds: np.ndarray, age_seeds: np.ndarray, size: int,
                 age: str | None) -> torch.Tensor:
    """Each row drawn from its own two streams; ``age`` (if given) replaces every row's age."""
    from .portraits import draw_portrait

    pixels = np.empty((len(attributes), size, size, 3), dtype=np.uint8)
    for i, attrs in enumerate(attributes.to_dict("records")):
        if age is not None:
            attrs["age"] = age
        pixels[i] = np.asarray(draw_portrait(attrs, np.random.default_rng(int(image_seeds[i])), size,
                                             age_rng=np.random.default_rng(int(age_seeds[i]))))
    return to_float(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())


def portrait_pairs(n: int, translation: Translation | str, seed: int = 0, size: int = 32, paired: bool = True,
                   distribution=None) -> tuple[ImageSet, ImageSet]:
    """Domains A and B of ``n`` portraits each, for ``translation``, in matching order.

    Paired: row i of A and of B is the same person (same draws for everything but the translated
    attribute). Unpaired: A and B are ``2n`` different people, the first n in A, the rest in B.
    Attributes hold each picture's own values (the age it is drawn at; ``colour`` grey or colour).
    """
    from .portraits import PortraitDistribution, portrait_caption, portraits_vocabulary

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError(f"n must be a positive integer, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise UserError(f"size must be an integer of at least 8 px, got {size!r}")
    translation = parse_translation(translation) if isinstance(translation, str) else translation
    distribution = distribution or PortraitDistribution.from_labour_statistics()
    people = int(n) * (1 if paired else 2)
    rng = np.random.default_rng(seed)
    attributes = distribution.sample(people, rng)
    image_seeds = rng.integers(0, 2**63 - 1, size=people, dtype=np.int64)
    age_seeds = rng.integers(0, 2**63 - 1, size=people, dtype=np.int64)
    rows = {"A": slice(0, int(n)), "B": slice(0 if paired else int(n), people)}

    def domain(name: str, value: str) -> ImageSet:
        part = attributes.iloc[rows[name]].reset_index(drop=True)
        if translation.attribute == "age":
            images = _draw_people(part, image_seeds[rows[name]], age_seeds[rows[name]], int(size), value)
            part = part.assign(age=value)
        else:
            images = _draw_people(part, image_seeds[rows[name]], age_seeds[rows[name]], int(size), None)
            images = to_grey(images) if value == "grey" else images
            part = part.assign(colour=value)
        captions = [portrait_caption(a) for a in part.to_dict("records")]
        return ImageSet(name=f"portraits {translation.attribute}={value}", images=images, attributes=part,
                        captions=captions, vocabulary=portraits_vocabulary())

    return domain("A", translation.source), domain("B", translation.target)


@dataclass
class PairedImageSet(ImageSet):
    """A translation training set: ``images`` are domain B (what the model learns to draw), ``inputs``
    domain A, one input per image; ``paired`` says whether row i of both shows the same subject.

    The training loop hands a translation model ``inputs[batch]`` where a conditional model gets its
    class ids, so pairs stay aligned through batching, checkpoints and resume.
    """

    inputs: torch.Tensor | None = None
    input_attributes: pd.DataFrame | None = None
    paired: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.inputs is None or tuple(self.inputs.shape) != tuple(self.images.shape):
            shape = None if self.inputs is None else tuple(self.inputs.shape)
            raise UserError(f"{self.name}: the inputs {shape} must match the targets {tuple(self.images.shape)}")
        if self.input_attributes is None:
            self.input_attributes = pd.DataFrame(index=range(len(self)))
        self.input_attributes = self.input_attributes.reset_index(drop=True)

    def subset(self, index) -> PairedImageSet:
        index = np.asarray(index, dtype=np.int64)
        targets = super().subset(index)
        return PairedImageSet(name=targets.name, images=targets.images, attributes=targets.attributes,
                              captions=targets.captions, vocabulary=targets.vocabulary,
                              inputs=self.inputs[torch.from_numpy(index)],
                              input_attributes=self.input_attributes.iloc[index], paired=self.paired)


def translation_set(a: ImageSet, b: ImageSet, paired: bool) -> PairedImageSet:
    """Domains A and B (same length, same order) as one training set."""
    if len(a) != len(b):
        raise UserError(f"domain A has {len(a)} images but domain B {len(b)}; a translation set needs one "
                        f"input per target")
    return PairedImageSet(name=f"{a.name} -> {b.name}", images=b.images, attributes=b.attributes,
                          captions=b.captions, vocabulary=b.vocabulary, inputs=a.images,
                          input_attributes=a.attributes, paired=paired)


def folder_pairs(root: Path | str, size: int = 32, strict: bool = False) -> PairedImageSet:
    """A user's own translation set: ``root/A`` (inputs) and ``root/B`` (targets). Paired when both hold
    the same file names (matched by name); otherwise unpaired, each side in its own order, cut to the
    shorter one."""
    from .folder import load_folder

    root = Path(root)
    missing = [side for side in ("A", "B") if not (root / side).is_dir()]
    if missing:
        raise UserError(f"--data {root}: a translation set needs the sub-folders A/ (inputs) and B/ (targets); "
                        f"missing {', '.join(f'{m}/' for m in missing)}")
    a, b = load_folder(root / "A", size=size, strict=strict), load_folder(root / "B", size=size, strict=strict)
    names_a, names_b = list(a.attributes["file"]), list(b.attributes["file"])
    if sorted(names_a) == sorted(names_b):
        order = {name: i for i, name in enumerate(names_b)}
        b = b.subset([order[name] for name in names_a])
        return translation_set(a, b, paired=True)
    n = min(len(a), len(b))
    return translation_set(a.subset(range(n)), b.subset(range(n)), paired=False)
