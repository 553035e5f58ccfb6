"""Image perturbations for robustness sweeps, the format-shortcut check and training augmentation.

Conventions used throughout:

* Images are float tensors in ``[0, 1]``, shaped ``(N, C, H, W)`` or ``(C, H, W)``, with
  ``C = 1`` (grey) or ``C = 3`` (RGB).  Outputs have the input's shape, dtype and device.
* All image operations come from torchvision: ``gaussian_blur``, ``resize`` and ``center_crop``
  from ``torchvision.transforms.v2.functional``; JPEG / PNG round trips encode and decode in
  memory on the CPU, and the result is moved back to the input's device.  JPEG goes through
  torchvision's libjpeg a batch at a time (7x faster than an image object per picture), with the
  same bytes as Pillow's defaults (4:2:0 chroma subsampling for RGB, baseline); where a
  torchvision release no longer has its image codecs (deprecated since 0.29), Pillow does it.
  PNG goes through Pillow.  Grey images are encoded as 1-channel ("L") files.  A codec round trip quantises to 8 bits
  (``round(x * 255) / 255``), exactly as saving the image to a file would.
* **Same input size.**  ``downscale f`` resizes to ``round(f * H) x round(f * W)`` (bilinear with
  antialiasing) *and back up* to ``H x W``, so a detector sees its usual input size and only the
  lost detail differs.  ``crop f`` takes the central ``f``-fraction of each side and resizes it
  back to ``H x W`` (a zoom).
* **Identity levels are exact.**  ``blur 0``, ``downscale 1``, ``crop 1``, ``noise 0`` and
  ``identity`` return an unchanged copy of the input (bit for bit).  ``JPEG 100`` is *not* an
  identity (it still quantises and subsamples), which is why the JPEG sweep starts with an
  explicit ``identity`` level.
* **Noise seeding rule.**  Additive Gaussian noise for one image is drawn from its own
  ``torch.Generator`` seeded with ``sha256(seed, key)``, where ``key`` identifies the image:

  - ``keys=None`` (default): the key is a SHA-256 digest of the image's pixels.  An image gets
    the same noise whether processed alone or in any batch, and two different images (a real and
    a fake at the same position, say) never share noise by accident; pixel-identical images get
    identical noise, which is the "identical treatment" a fair comparison wants.
  - ``keys=[...]`` (one ``int`` or ``str`` per image): use caller-supplied keys, e.g. file paths
    or row numbers of the *combined* real+fake manifest.  Keys must be unique across the whole
    evaluation set: passing ``0..N-1`` separately for the real and the fake batch makes image
    ``i`` of both classes share its noise.

  The noise level is not part of the seed: ``noise 0.05`` is exactly 5x the noise of
  ``noise 0.01`` before clipping (common random numbers make a sweep smoother).  Noisy pixels are
  clipped to ``[0, 1]``.  All other perturbations are deterministic and ignore ``seed``.
* Perturbations are applied identically to every image, whatever its class: nothing here knows
  about labels.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional import InterpolationMode

from synthscope.errors import UserError
from synthscope.images import from_pil, to_float, to_pil_list, to_uint8

try:  # deprecated since torchvision 0.29, to be removed: then Pillow makes the same bytes, more slowly
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
except ImportError:  # pragma: no cover - depends on the installed torchvision
    encode_jpeg = None

__all__ = [
    "KINDS",
    "SWEEPS",
    "BlurJpegAugment",
    "Chain",
    "Perturbation",
    "parse_perturbation",
    "reencode",
]

Key = int | str

# kind -> (what the strength means, low, high, low inclusive, identity strength or None)
KINDS: dict[str, tuple[str, float, float, bool, float | None]] = {
    "jpeg": ("quality, integer", 1, 100, True, None),
    "blur": ("Gaussian sigma in px", 0, 10, True, 0.0),
    "downscale": ("scale factor", 0, 1, False, 1.0),
    "crop": ("central fraction kept", 0, 1, False, 1.0),
    "noise": ("Gaussian std", 0, 1, True, 0.0),
    "identity": ("no strength", 0, 0, True, 0.0),
}

_ALIASES = {
    "jpg": "jpeg",
    "clean": "identity",
    "none": "identity",
    "resize": "downscale",
    "scale": "downscale",
    "gaussian_blur": "blur",
}

_LABELS = {"jpeg": "JPEG"}


def _range_text(kind: str) -> str:
    meaning, lo, hi, lo_incl, _ = KINDS[kind]
    if kind == "identity":
        return "identity (no strength)"
    return f"{kind} ({meaning} in {'[' if lo_incl else '('}{lo:g}, {hi:g}])"


def _valid_kinds_text() -> str:
    return "valid kinds: " + ", ".join(_range_text(k) for k in KINDS)


def _fmt(x: float) -> str:
    return f"{x:g}"


# ---------------------------------------------------------------------------------- helpers


def _as_batch(images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Validate ``images`` and return it as (N, C, H, W) plus whether it was unbatched."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a float tensor in [0, 1], got dtype {images.dtype}")
    if images.ndim not in (3, 4):
        raise UserError(f"images must be (N, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
    batch = images if images.ndim == 4 else images.unsqueeze(0)
    if batch.shape[1] not in (1, 3):
        raise UserError(f"images must have 1 (grey) or 3 (RGB) channels, got shape {tuple(images.shape)}")
    if batch.numel() and (not torch.isfinite(batch).all() or batch.min() < 0 or batch.max() > 1):
        raise UserError("images must be finite and lie in [0, 1]")
    return batch, images.ndim == 3


def _codec_round_trip(batch: torch.Tensor, fmt: str, **save_kwargs) -> torch.Tensor:
    if batch.shape[0] == 0:
        return batch.clone()
    decoded = []
    for img in to_pil_list(batch.cpu()):
        buf = io.BytesIO()
        img.save(buf, format=fmt, **save_kwargs)
        buf.seek(0)
        with Image.open(buf) as back:
            back.load()
            decoded.append(from_pil(back.convert(img.mode)))
    return torch.stack(decoded).to(batch.dtype).to(batch.device)


def _jpeg(batch: torch.Tensor, quality: int) -> torch.Tensor:
    # torchvision's libjpeg round trip, a batch at a time: the same bytes as Pillow's (checked in the
    # tests), without an image object and a file buffer per picture, which cost 7x as much.
    if batch.shape[0] == 0:
        return batch.clone()
    if encode_jpeg is None:
        return _codec_round_trip(batch, "JPEG", quality=int(quality))
    with warnings.catch_warnings():
        # Its deprecation notice comes with every call (thousands in a robustness sweep); the
        # fallback above is what replaces it.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        encoded = encode_jpeg(list(to_uint8(batch.cpu())), quality=int(quality))
        decoded = decode_jpeg(encoded, mode=ImageReadMode.UNCHANGED)
    return to_float(torch.stack(decoded)).to(batch.dtype).to(batch.device)


def _png(batch: torch.Tensor) -> torch.Tensor:
    return _codec_round_trip(batch, "PNG")


def _blur(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    h, w = batch.shape[-2:]
    k = 2 * math.ceil(3 * sigma) + 1
    # reflect padding needs pad < side, i.e. kernel <= 2 * side - 1 (matters for tiny images)
    k = min(k, 2 * min(h, w) - 1)
    if k < 3:
        return batch.clone()
    return TF.gaussian_blur(batch, kernel_size=[k, k], sigma=[sigma, sigma]).clamp_(0, 1)


def _resize(batch: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return TF.resize(batch, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)


def _downscale(batch: torch.Tensor, factor: float) -> torch.Tensor:
    h, w = batch.shape[-2:]
    small = (max(1, round(h * factor)), max(1, round(w * factor)))
    if small == (h, w):
        return batch.clone()
    return _resize(_resize(batch, small), (h, w)).clamp_(0, 1)


def _crop(batch: torch.Tensor, fraction: float) -> torch.Tensor:
    h, w = batch.shape[-2:]
    size = (max(1, round(h * fraction)), max(1, round(w * fraction)))
    if size == (h, w):
        return batch.clone()
    return _resize(TF.center_crop(batch, list(size)), (h, w)).clamp_(0, 1)


def _derive_seed(seed: int, key: Key, salt: str = "") -> int:
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"noise keys must be int or str, got {type(key).__name__}")
    tag = f"{int(seed)}|{salt}|{type(key).__name__}:{key}"
    return int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "little") & (2**63 - 1)


def _content_key(image: torch.Tensor) -> str:
    data = image.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()
    shape = "x".join(map(str, image.shape))
    return "px:" + shape + ":" + hashlib.sha256(data).hexdigest()


def _normalise_keys(keys, n: int) -> list[Key] | None:
    if keys is None:
        return None
    if isinstance(keys, (int, str)):
        keys = [keys]
    elif isinstance(keys, torch.Tensor):
        keys = keys.reshape(-1).tolist()
    keys = list(keys)
    if len(keys) != n:
        raise UserError(f"got {len(keys)} noise keys for {n} images; pass one key per image")
    return keys


def _noise(batch: torch.Tensor, std: float, seed: int, keys: list[Key] | None, salt: str) -> torch.Tensor:
    out = batch.clone()
    for i in range(batch.shape[0]):
        key = keys[i] if keys is not None else _content_key(batch[i])
        g = torch.Generator().manual_seed(_derive_seed(seed, key, salt))
        eps = torch.randn(batch.shape[1:], generator=g, dtype=torch.float64)
        out[i] = (batch[i].double() + std * eps.to(batch.device)).clamp_(0, 1).to(batch.dtype)
    return out


# ------------------------------------------------------------------------------ perturbations


@dataclass(frozen=True)
class Perturbation:
    """One perturbation at one strength.

    ``kind`` is one of :data:`KINDS`; ``strength`` is the JPEG quality, blur sigma, downscale
    factor, crop fraction or noise std (ignored, and 0, for ``identity``).  ``name`` is the
    readable label ("JPEG 75", "blur 1.5"); left empty it is derived.  Call it as
    ``p(images, seed=0, keys=None)``; see the module docstring for the seeding rule.
    """

    kind: str
    strength: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        kind = _ALIASES.get(str(self.kind).lower(), str(self.kind).lower())
        if kind not in KINDS:
            raise UserError(f"unknown perturbation kind {self.kind!r}; {_valid_kinds_text()}")
        try:
            strength = float(self.strength)
        except (TypeError, ValueError):
            raise UserError(f"strength for {kind} must be a number, got {self.strength!r}; {_range_text(kind)}") from None
        _, lo, hi, lo_incl, _ = KINDS[kind]
        ok = math.isfinite(strength) and (lo <= strength if lo_incl else lo < strength) and strength <= hi
        if kind == "jpeg" and ok and strength != int(strength):
            ok = False
        if not ok:
            raise UserError(f"strength {self.strength!r} out of range for {kind}; expected {_range_text(kind)}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "strength", strength)
        if not self.name:
            label = "identity" if kind == "identity" else f"{_LABELS.get(kind, kind)} {_fmt(strength)}"
            object.__setattr__(self, "name", label)

    @property
    def spec(self) -> str:
        """Machine-readable form accepted by :func:`parse_perturbation` ("jpeg:75")."""
        return "identity" if self.kind == "identity" else f"{self.kind}:{_fmt(self.strength)}"

    @property
    def is_identity(self) -> bool:
        """True when this level returns its input unchanged (exactly)."""
        return self.strength == KINDS[self.kind][4]

    def __call__(self, images: torch.Tensor, seed: int = 0, keys: Sequence[Key] | Key | None = None,
                 *, _salt: str = "") -> torch.Tensor:
        batch, unbatched = _as_batch(images)
        keys = _normalise_keys(keys, batch.shape[0])
        if self.is_identity:
            out = batch.clone()
        elif self.kind == "jpeg":
            out = _jpeg(batch, int(self.strength))
        elif self.kind == "blur":
            out = _blur(batch, self.strength)
        elif self.kind == "downscale":
            out = _downscale(batch, self.strength)
        elif self.kind == "crop":
            out = _crop(batch, self.strength)
        elif self.kind == "noise":
            out = _noise(batch, self.strength, seed, keys, _salt)
        else:  # pragma: no cover - guarded by __post_init__
            raise AssertionError(self.kind)
        return out[0] if unbatched else out

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Chain:
    """Several perturbations applied in order, e.g. ``Chain([downscale 0.5, JPEG 75])``.

    Nested chains are flattened.  Noise steps after the first position draw from a stream salted
    with their position, so two noise steps in one chain do not repeat the same noise.
    """

    perturbations: tuple[Perturbation, ...]

    def __post_init__(self) -> None:
        flat: list[Perturbation] = []
        for p in self.perturbations:
            if isinstance(p, Chain):
                flat.extend(p.perturbations)
            elif isinstance(p, Perturbation):
                flat.append(p)
            else:
                raise TypeError(f"Chain takes Perturbation objects, got {type(p).__name__}")
        if not flat:
            raise UserError("Chain needs at least one perturbation")
        object.__setattr__(self, "perturbations", tuple(flat))

    @property
    def name(self) -> str:
        return " → ".join(p.name for p in self.perturbations)

    @property
    def spec(self) -> str:
        return "+".join(p.spec for p in self.perturbations)

    @property
    def kind(self) -> str:
        return "chain"

    @property
    def is_identity(self) -> bool:
        return all(p.is_identity for p in self.perturbations)

    def __call__(self, images: torch.Tensor, seed: int = 0, keys: Sequence[Key] | Key | None = None) -> torch.Tensor:
        out = images
        for j, p in enumerate(self.perturbations):
            out = p(out, seed, keys, _salt="" if j == 0 else f"step{j}")
        return out.clone() if out is images else out

    def __str__(self) -> str:
        return self.name


def _social() -> list[Perturbation | Chain]:
    pairs = [(0.75, 90), (0.5, 75), (0.5, 60), (0.25, 45)]
    return [Perturbation("identity")] + [
        Chain((Perturbation("downscale", f), Perturbation("jpeg", q))) for f, q in pairs
    ]


#: Default robustness sweeps; each starts with its clean / identity level.
SWEEPS: dict[str, list[Perturbation | Chain]] = {
    "jpeg": [Perturbation("identity")] + [Perturbation("jpeg", q) for q in (100, 90, 75, 60, 45, 30)],
    "blur": [Perturbation("blur", s) for s in (0, 0.5, 1, 1.5, 2, 3)],
    "downscale": [Perturbation("downscale", f) for f in (1, 0.75, 0.5, 0.25)],
    "crop": [Perturbation("crop", f) for f in (1, 0.9, 0.75, 0.5)],
    "noise": [Perturbation("noise", s) for s in (0, 0.01, 0.02, 0.05, 0.1)],
    "social": _social(),
}

_TOKEN = re.compile(r"^\s*([A-Za-z_]+)\s*(?:[:=\s]\s*(\S+))?\s*$")


def parse_perturbation(text: str) -> Perturbation | Chain:
    """Parse a CLI string: "jpeg:75", "blur:1.5", "downscale:0.5+jpeg:75", "identity".

    Steps are separated by ``+``, ``->`` or ``→``; each step is ``kind:strength`` (``kind
    strength`` and ``kind=strength`` also work, so readable names like "downscale 0.5 → JPEG 75"
    round-trip).  Raises ``ValueError`` naming the valid kinds and ranges.
    """
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"empty perturbation {text!r}; write e.g. 'jpeg:75' or 'downscale:0.5+jpeg:75'; "
                         f"{_valid_kinds_text()}")
    steps = [s for s in re.split(r"\+|->|→", text)]
    out: list[Perturbation] = []
    for step in steps:
        m = _TOKEN.match(step)
        if not m:
            raise UserError(f"cannot parse {step.strip()!r} in {text!r}; write kind:strength, e.g. 'jpeg:75'; "
                             f"{_valid_kinds_text()}")
        kind, strength = m.group(1).lower(), m.group(2)
        kind = _ALIASES.get(kind, kind)
        if kind not in KINDS:
            raise UserError(f"unknown perturbation kind {m.group(1)!r} in {text!r}; {_valid_kinds_text()}")
        if kind == "identity":
            if strength is not None:
                raise UserError(f"identity takes no strength (got {strength!r} in {text!r}); {_valid_kinds_text()}")
            out.append(Perturbation("identity"))
            continue
        if strength is None:
            raise UserError(f"{kind} needs a strength in {text!r}, e.g. '{kind}:{_fmt(KINDS[kind][2])}'; "
                             f"expected {_range_text(kind)}; {_valid_kinds_text()}")
        try:
            value = float(strength)
        except ValueError:
            raise UserError(f"strength {strength!r} for {kind} in {text!r} is not a number; "
                             f"expected {_range_text(kind)}; {_valid_kinds_text()}") from None
        try:
            out.append(Perturbation(kind, value))
        except ValueError as e:
            raise UserError(f"{e} (in {text!r}); {_valid_kinds_text()}") from None
    return out[0] if len(out) == 1 else Chain(tuple(out))


# ------------------------------------------------------------------------------ augmentation


class BlurJpegAugment:
    """The blur+JPEG training augmentation of CNNDetection (Wang et al., CVPR 2020).

    For each image independently: with probability ``p_blur`` apply a Gaussian blur with
    ``sigma ~ U[sigma]``, then with probability ``p_jpeg`` a JPEG round trip with an integer
    quality ``~ U{quality}``.  All random draws come from the ``generator`` passed to the call
    (four uniforms per image, drawn up front), so a generator seed fixes the result.
    """

    def __init__(self, p_blur: float = 0.5, p_jpeg: float = 0.5,
                 sigma: tuple[float, float] = (0.0, 3.0), quality: tuple[int, int] = (30, 100)) -> None:
        for nm, p in (("p_blur", p_blur), ("p_jpeg", p_jpeg)):
            if not (isinstance(p, (int, float)) and 0.0 <= float(p) <= 1.0):
                raise UserError(f"{nm} must be a probability in [0, 1], got {p!r}")
        s_lo, s_hi = (float(v) for v in sigma)
        if not (0 <= s_lo <= s_hi <= KINDS["blur"][2]):
            raise UserError(f"sigma range must satisfy 0 <= low <= high <= {KINDS['blur'][2]:g}, got {sigma!r}")
        q_lo, q_hi = quality
        if not (int(q_lo) == q_lo and int(q_hi) == q_hi and 1 <= q_lo <= q_hi <= 100):
            raise UserError(f"quality range must be integers with 1 <= low <= high <= 100, got {quality!r}")
        self.p_blur, self.p_jpeg = float(p_blur), float(p_jpeg)
        self.sigma = (s_lo, s_hi)
        self.quality = (int(q_lo), int(q_hi))

    def __repr__(self) -> str:
        return (f"BlurJpegAugment(p_blur={self.p_blur:g}, p_jpeg={self.p_jpeg:g}, "
                f"sigma={self.sigma}, quality={self.quality})")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, unbatched = _as_batch(images)
        n = batch.shape[0]
        u = torch.rand(n, 4, generator=generator, dtype=torch.float64).tolist()
        s_lo, s_hi = self.sigma
        q_lo, q_hi = self.quality
        out = batch.clone()
        # Only the few images drawn for a perturbation are touched: each blurred with its own sigma,
        # then all those of one JPEG quality in one round trip.
        for i, (blur, sigma, _, _) in enumerate(u):
            if blur < self.p_blur:
                out[i : i + 1] = _blur(out[i : i + 1], s_lo + (s_hi - s_lo) * sigma)
        by_quality: dict[int, list[int]] = {}
        for i, (_, _, jpeg, quality) in enumerate(u):
            if jpeg < self.p_jpeg:
                by_quality.setdefault(min(q_hi, q_lo + int(quality * (q_hi - q_lo + 1))), []).append(i)
        for quality, chosen in by_quality.items():
            out[chosen] = _jpeg(out[chosen], quality)
        return out[0] if unbatched else out


# ------------------------------------------------------------------------------- re-encoding


def reencode(images: torch.Tensor, format: str = "png", quality: int = 95) -> torch.Tensor:
    """Round-trip images through an image codec, identically for every image (format-shortcut check).

    ``format="png"`` is lossless for images on the 8-bit grid (values ``k / 255``; anything else
    is rounded to it, as saving would); ``format="jpeg"`` uses ``quality`` (1–100).  Re-encode
    real and fake images the same way and compare detector scores before and after: a large
    shift means the detector keys on file format rather than content.
    """
    batch, unbatched = _as_batch(images)
    fmt = str(format).lower()
    if fmt == "png":
        out = _png(batch)
    elif fmt in ("jpeg", "jpg"):
        if isinstance(quality, bool) or int(quality) != quality or not 1 <= quality <= 100:
            raise UserError(f"JPEG quality must be an integer in [1, 100], got {quality!r}")
        out = _jpeg(batch, int(quality))
    else:
        raise UserError(f"unknown format {format!r}; use 'png' or 'jpeg'")
    return out[0] if unbatched else out
