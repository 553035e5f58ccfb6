"""Reading any folder of the user's own images: decoding every common format safely into RGB.

Photos arrive in every mode Pillow knows (RGBA, palette with transparency, 16-bit, CMYK, rotated by
EXIF, animated GIFs, ...) and some files are corrupt. ``open_image`` turns each of them into a plain
8-bit image or raises one ``UnreadableImageError`` naming the file and the problem; ``load_folder``
reads a whole folder into an ImageSet, skipping (and reporting) what it cannot read.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps

from synthscope.errors import UserError
from synthscope.images import from_pil

from .imageset import ImageSet

# Lower-case suffixes (with the dot, as ``Path.suffix`` gives them); matching is case-insensitive.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

DEFAULT_MAX_PIXELS = 64_000_000
# Decoded bytes are limited too: at most this many bytes a pixel of the pixel limit (an RGB or RGBA
# image at the pixel limit, as Pillow holds it). Deeper modes (16-bit, 32-bit, float) count at their
# real size, so raising max_pixels for a trusted file raises this budget with it.
MAX_BYTES_PER_PIXEL = 4
_STRIP_PIXELS = 1 << 16  # pixels per strip when scaling deep images to 8 bits
PROGRESS_MIN_FILES = 500

# Modes that carry no colour: a grey corpus can stay one channel.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_ORIENTATION_TAG = 0x0112


class UnreadableImageError(UserError):
    """A file that cannot be decoded as an image (corrupt, truncated, empty, too large, not an image)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageTooLargeError(UnreadableImageError):
    """An image whose pixel count or decoded size in bytes exceeds the decoding limits
    (decompression-bomb protection)."""


@dataclass
class FolderReadReport:
    """What ``read_folder`` found: how many image files, and which were skipped and why."""

    root: Path
    found: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path relative to root, reason)

    @property
    def loaded(self) -> int:
        return self.found - len(self.skipped)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


DANGLING_LINK = "dangling symbolic link"
OUTSIDE_LINK = "symbolic link leads outside the folder"


def _inside(real: str, folder_real: str) -> bool:
    return real == folder_real or real.startswith(folder_real.rstrip(os.sep) + os.sep)


def link_problem(path: Path | str, within: Path | str | None = None) -> str | None:
    """Why ``path`` must not be read for its symbolic links, or None: a dangling link, or (with
    ``within``, the folder being read) a link anywhere on its way that leads outside that folder."""
    path = os.fspath(path)
    if os.path.islink(path) and not os.path.exists(path):
        return f"{DANGLING_LINK} (to {os.readlink(path)}, which does not exist)"
    if within is not None:
        real = os.path.realpath(path)
        if not _inside(real, os.path.realpath(within)):
            return f"{OUTSIDE_LINK} (to {real})"
    return None


def _skip(path: Path, root: Path, reason: str, skipped: list[tuple[str, str]] | None) -> None:
    if skipped is not None:
        skipped.append((path.relative_to(root).as_posix(), reason))
    warnings.warn(f"skipping {path}: {reason}", stacklevel=3)


def find_images(root: Path | str, skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """Every image file under ``root`` (recursive), skipping hidden files and folders.

    The order is deterministic: sorted by the path components relative to ``root``. Symlinked
    folders and files inside ``root`` are followed once (a link back up the tree is not followed
    again); a symbolic link that leads outside ``root`` is not followed, and a dangling one (named like
    an image, or without a suffix) cannot be read: each is left out with a warning and, when
    ``skipped`` is given, appended to it as (path relative to ``root``, reason).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    root_real = os.path.realpath(root)
    found: list[Path] = []
    problems: list[tuple[Path, str]] = []
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # symlink loop or a second link to the same folder
            dirnames[:] = []
            continue
        visited.add(real)
        kept = []
        for name in sorted(d for d in dirnames if not _is_hidden(d)):
            path = Path(dirpath) / name
            problem = link_problem(path, root_real) if os.path.islink(path) else None
            if problem:
                problems.append((path, problem))
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            if _is_hidden(name):
                continue
            path = Path(dirpath) / name
            suffix = os.path.splitext(name)[1].lower()
            is_image = suffix in IMAGE_EXTENSIONS
            if os.path.islink(path):
                # A dangling link without a suffix may have been a folder of images: say so.
                if not is_image and not (suffix == "" and not os.path.exists(path)):
                    continue
                problem = link_problem(path, root_real)
                if problem:
                    problems.append((path, problem))
                    continue
            if is_image and path.is_file():
                found.append(path)

    def order(path: Path) -> tuple[str, ...]:
        return path.relative_to(root).parts

    for path, problem in sorted(problems, key=lambda item: order(item[0])):
        _skip(path, root, problem, skipped)
    return sorted(found, key=order)


def _to_8bit_grey(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float images scaled (not clipped) to 8-bit grey.

    Worked through in strips of rows, so that the working arrays stay small: whole-image copies in
    float64 would cost 8 bytes a pixel each, several times the decoded image."""
    width, height = img.size
    rows = max(1, _STRIP_PIXELS // max(1, width))
    strips = [(top, min(height, top + rows)) for top in range(0, height, rows)]

    def strip(top: int, bottom: int) -> np.ndarray:
        arr = np.asarray(img.crop((0, top, width, bottom)))
        if img.mode == "F":
            arr = np.nan_to_num(arr.astype(np.float64), copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return arr

    # The range over the whole image first (NaN and infinities count as 0, as they are drawn).
    lo = hi = None
    for top, bottom in strips:
        arr = strip(top, bottom)
        if arr.size:
            lo = arr.min() if lo is None else min(lo, arr.min())
            hi = arr.max() if hi is None else max(hi, arr.max())
    lo, hi = float(lo if lo is not None else 0), float(hi if hi is not None else 0)
    if img.mode == "F":
        unit = lo >= 0.0 and hi <= 1.0  # float images are conventionally in [0, 1]
    else:
        unit = lo >= 0.0 and hi <= 65535.0  # 16-bit PNG/TIFF (Pillow opens some as "I"): full scale is 65535

    out = np.empty((height, width), np.uint8)
    for top, bottom in strips:
        arr = strip(top, bottom)
        if unit and img.mode != "F":
            # round(x * 255 / 65535) = round(x / 257), exactly, in integers (x / 257 is never a tie).
            work = arr.astype(np.uint32)
            work += 128
            work //= 257
            out[top:bottom] = work
            continue
        work = arr if img.mode == "F" else arr.astype(np.float64)  # this strip's own copy: changed in place
        if unit:
            work *= 255.0
        elif hi > lo:
            work -= lo
            work /= hi - lo
            work *= 255.0
        else:
            work[...] = 0.0
        np.rint(work, out=work)
        out[top:bottom] = np.clip(work, 0, 255, out=work)
    return Image.fromarray(out)


def _flatten(img: Image.Image, grey: bool) -> Image.Image:
    """Any Pillow mode to 8-bit "RGB" (or "L" when ``grey``); transparency composited on white."""
    if img.mode in _HIGH_DEPTH_MODES:
        img = _to_8bit_grey(img)
    has_alpha = img.mode in _ALPHA_MODES or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        # Transparent pixels hold arbitrary colours (often black); white is what viewers show.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("L" if grey else "RGB")


def decoded_bytes_per_pixel(mode: str) -> int:
    """Bytes a pixel of a decoded image of this Pillow mode takes in memory: 1 for 1-bit, grey and
    palette images, 2 for 16-bit grey, 4 for 32-bit grey, float and every multi-band mode (Pillow
    holds 3-band images in 4 bytes a pixel)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation of a decoded image (1 where EXIF is missing or cannot be parsed)."""
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block should not cost the pixels (they are decoded already)
        return 1
    return orientation if isinstance(orientation, int) else 1


def _decode(path: Path, max_pixels: int, grey: bool | None = False, draft: int | None = None,
            within: Path | str | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``path``; return the 8-bit image and its original (upright) width and height.

    ``grey=None`` keeps greyscale sources as "L" and everything else as "RGB". ``draft`` lets the
    JPEG decoder downscale by a power of two while keeping both sides at least ``draft`` pixels.
    ``within``: the folder being read; a symbolic link leading outside it is refused.
    """
    path = Path(path)
    problem = link_problem(path, within) if within is not None or os.path.islink(path) else None
    if problem:
        raise UnreadableImageError(path, problem)
    try:
        if path.stat().st_size == 0:
            raise UnreadableImageError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            # We apply our own (lower, configurable) limit below instead of Pillow's warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageTooLargeError(
                        path,
                        f"image is {width}x{height} = {width * height:,} pixels, above the limit "
                        f"of {max_pixels:,} (decompression-bomb protection; raise max_pixels if "
                        f"the file is trusted)",
                    )
                decoded = width * height * decoded_bytes_per_pixel(img.mode)
                if decoded > max_pixels * MAX_BYTES_PER_PIXEL:
                    raise ImageTooLargeError(
                        path,
                        f"image is {width}x{height} in mode {img.mode}, {decoded:,} bytes decoded, above "
                        f"the limit of {max_pixels * MAX_BYTES_PER_PIXEL:,} bytes ({MAX_BYTES_PER_PIXEL} "
                        f"a pixel of the {max_pixels:,}-pixel limit; decompression-bomb protection; "
                        f"raise max_pixels if the file is trusted)",
                    )
                # Animated GIF/WebP/APNG: Pillow opens on the first frame; make that explicit.
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                if draft and img.format == "JPEG":
                    img.draft(None, (draft, draft))
                # The pixels are decoded first, and their errors (truncation, corrupt data, a bad
                # checksum) always surface. Reading EXIF can decode too (a PNG's eXIf chunk may
                # follow the image data): were it first, the guard below would swallow a decoding
                # error and a later load() would hand back partly decoded pixels.
                img.load()
                orientation = _orientation(img)
                if orientation in (5, 6, 7, 8):
                    width, height = height, width
                source_grey = img.mode in _GREY_MODES
                upright = img
                if orientation != 1:
                    try:
                        upright = ImageOps.exif_transpose(img)
                    except Exception:  # a broken EXIF block should not cost the pixels
                        upright = img
                out = _flatten(upright, grey=source_grey if grey is None else grey)
                out.load()
                return out, (width, height)
    except UnreadableImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(path, f"refused by Pillow's decompression-bomb limit ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise UnreadableImageError(path, "not a recognised image (corrupt or not an image file)") from exc
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: no such file") from exc
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        raise UnreadableImageError(path, f"cannot decode ({type(exc).__name__}: {exc})") from exc


def open_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS, mode: str = "RGB",
               within: Path | str | None = None) -> Image.Image:
    """Decode one image file into an 8-bit ``mode`` ("RGB" or "L") Pillow image.

    Handles alpha (composited on white), palette transparency, 16-bit and float images (scaled to
    8 bits), CMYK, EXIF orientation and animated files (first frame). Raises
    ``UnreadableImageError`` for corrupt, truncated, empty or non-image files and
    ``ImageTooLargeError`` (a subclass) above ``max_pixels`` pixels or above ``max_pixels`` x
    ``MAX_BYTES_PER_PIXEL`` bytes decoded, both checked before any pixel is decoded. A dangling
    symbolic link is unreadable too, and so, when ``within`` names the folder being read, is a
    symbolic link that leads outside it (the reasons start with ``DANGLING_LINK`` and ``OUTSIDE_LINK``).
    """
    if mode not in ("RGB", "L"):
        raise UserError(f"mode must be 'RGB' or 'L', got {mode!r}")
    image, _ = _decode(Path(path), max_pixels, grey=(mode == "L"), within=within)
    return image


def fit_square(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and centre-crop to ``size`` x ``size`` (antialiased)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Crop first, so nothing outside the square bleeds in through the filter. Pillow's filters
    # antialias when shrinking; reducing_gap first box-reduces very large photos (much faster).
    square = image.crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)


def _progress(items: list, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", disable=len(items) <= PROGRESS_MIN_FILES, leave=False)


def read_folder(root: Path | str, size: int = 32, strict: bool = False, source: str | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[ImageSet, FolderReadReport]:
    """Like ``load_folder``, but also return a report of the files found and skipped."""
    root = Path(root)
    if size < 1:
        raise UserError(f"size must be a positive number of pixels, got {size}")
    links: list[tuple[str, str]] = []  # symbolic links not followed: dangling or leading out
    files = find_images(root, skipped=links)
    if links and strict:
        raise UnreadableImageError(root / links[0][0], links[0][1])
    if not files and not links:
        raise UserError(
            f"no images found in {root} (looked recursively for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}; hidden files are ignored)"
        )
    report = FolderReadReport(root=root, found=len(files) + len(links), skipped=links)
    tensors: list[torch.Tensor] = []
    rows: list[dict] = []
    for path in _progress(files, desc=f"reading {root.name or root}"):
        rel = path.relative_to(root)
        try:
            image, (width, height) = _decode(path, max_pixels, grey=False, draft=size, within=root)
        except UnreadableImageError as exc:
            if strict:
                raise
            report.skipped.append((rel.as_posix(), exc.reason))
            warnings.warn(f"skipping {path}: {exc.reason}", stacklevel=2)
            continue
        tensors.append(from_pil(fit_square(image, size)))
        folder = rel.parts[0] if len(rel.parts) > 1 else ""
        rows.append({
            "file": rel.as_posix(),
            "source": source if source is not None else (folder or "real"),
            "folder": folder,
            "width": width,
            "height": height,
        })
    if not tensors:
        first = report.skipped[0]
        raise UserError(
            f"none of the {report.found} image files in {root} could be read "
            f"(first: {first[0]}: {first[1]})"
        )
    attributes = pd.DataFrame(rows)
    # Also kept on the DataFrame so callers that only see the ImageSet (e.g. load_data) can find it.
    attributes.attrs["skipped"] = list(report.skipped)
    data = ImageSet(
        name=root.resolve().name,
        images=torch.stack(tensors),
        attributes=attributes,
        captions=[""] * len(tensors),
    )
    return data, report


def load_folder(root: Path | str, size: int = 32, strict: bool = False, source: str | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageSet:
    """Every image under ``root`` as an RGB ImageSet of ``size`` x ``size`` images.

    Attributes: ``file`` (posix path relative to ``root``), ``source`` (``source`` if given, else
    the first sub-folder, else "real"), ``folder`` (first sub-folder or ""), ``width``/``height``
    (original, upright). Unreadable files (and symbolic links that dangle or lead outside ``root``)
    raise with ``strict``; otherwise each is skipped with a warning and listed in
    ``attributes.attrs["skipped"]`` as (file, reason) pairs.
    """
    data, _ = read_folder(root, size=size, strict=strict, source=source, max_pixels=max_pixels)
    return data
