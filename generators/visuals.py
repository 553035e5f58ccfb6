"""Lecture visuals for the built-in generators, as matplotlib Figures.

Every function returns a :class:`matplotlib.figure.Figure` (built without pyplot, so nothing here
picks or needs a display backend); :func:`save_figure` writes one as a PNG and :func:`figure_png`
gives its PNG bytes, for an HTML report to embed. :func:`grid_array` gives an image grid as a
plain uint8 array for the same purpose.

One style for all of them (:func:`use_style`): seaborn's colour-blind-safe palette, readable font
sizes, constrained layout so that no text overlaps, titles and axis labels in plain words.
Greyscale images are drawn with the ``gray`` colour map on a fixed 0..1 range (so a dark sample
looks dark, not contrast-stretched), pixels unsmoothed (nearest interpolation), without axes.

The visuals:

- :func:`image_grid` — any batch of images;
- :func:`reconstruction_figure` — ground truth vs reconstructions (2-D vs 5-D latent), and the
  denoising / colourising story (corrupted input -> output -> clean);
- :func:`latent_scatter` — the latent means coloured by class (PCA when the latent has > 2 dims);
- :func:`interpolation_figure` — walking in a straight line through latent space;
- :func:`prior_samples_figure` — samples of any generator;
- :func:`training_progress_figure` — the snapshots a training run saved, side by side;
- :func:`forward_noising_figure` / :func:`reverse_strip_figure` — diffusion's two directions;
- :func:`loss_curve_figure` — the loss history of a training run.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from synthscope.errors import UserError
from synthscope.images import from_pil, to_uint8
from synthscope.reports import style as report_style
from synthscope.reports.style import figure_png, palette
from synthscope.runtime import atomic_write_bytes, evaluating

from .base import SNAPSHOTS

if TYPE_CHECKING:  # imported lazily at run time: a figure of one kind needs no other model code
    from .autoencoder import AutoEncoder
    from .base import Generator
    from .diffusion import Diffusion

__all__ = [
    "use_style", "style_rc", "save_figure", "figure_png", "grid_array", "image_grid",
    "reconstruction_figure", "latent_scatter", "interpolation_figure", "prior_samples_figure",
    "training_progress_figure", "forward_noising_figure", "reverse_strip_figure",
    "loss_curve_figure", "palette", "GRID_PADDING", "DPI",
]

GRID_PADDING = 2  # pixels of white between the tiles of an image grid
DPI = report_style.DPI
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
SNAPSHOT_PATTERN = re.compile(r"^step_(\d+)\.png$")
LOSS_NAMES = {
    "loss": "total", "loss_d": "discriminator", "loss_g": "generator",
    "kl": "KL divergence", "reconstruction": "reconstruction",
}
MODEL_NAMES = {"ae": "Autoencoder", "vae": "VAE", "gan": "GAN", "diffusion": "Diffusion"}


# -- style -----------------------------------------------------------------------------------------

def style_rc() -> dict[str, Any]:
    """The report style (``synthscope.reports.style``) plus what image grids need: grey colour map,
    slightly larger type for lecture slides."""
    return {
        **report_style.style_rc(),
        "figure.dpi": 100,
        "font.size": 11,
        "axes.labelsize": 11,
        "figure.titlesize": 13,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "legend.fontsize": 10,
        "legend.title_fontsize": 10,
        "legend.frameon": True,
        "axes.grid": False,
        "image.cmap": "gray",
    }


@contextlib.contextmanager
def use_style() -> Iterator[None]:
    """Context manager applying the synthscope style; figures made inside keep it.

    ``with use_style(): fig = ...`` — the previous settings come back on exit. To make the style
    global (e.g. in a notebook), use ``matplotlib.rcParams.update(style_rc())``.
    """
    with matplotlib.rc_context(style_rc()):
        yield


def _new_figure(width: float, height: float) -> Figure:
    """A constrained-layout Figure on its own Agg canvas: no pyplot, no display backend needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(max(width, 2.5), max(height, 1.5)), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plain(text: Any) -> str:
    """User or model text shown literally: a ``$`` must not switch matplotlib into math mode."""
    return str(text).replace("$", r"\$")


# -- saving ----------------------------------------------------------------------------------------

def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parent folders made, written atomically) and close it.

    Returns the path written.
    """
    path = Path(path)
    data = figure_png(fig, dpi=dpi)
    atomic_write_bytes(path, data)
    if "matplotlib.pyplot" in sys.modules:  # a figure made with pyplot is released; ours never were
        sys.modules["matplotlib.pyplot"].close(fig)
    return path


# -- images ----------------------------------------------------------------------------------------

def _check_images(images: torch.Tensor, what: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what}: expected a tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise UserError(f"{what}: expected a tensor (N, C, H, W) with 1 or 3 channels, "
                         f"got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise UserError(f"{what}: no images to show")
    return images.detach().float().cpu().clamp(0, 1)


def _grid_float(images: torch.Tensor, nrow: int) -> np.ndarray:
    """make_grid with white padding, as (H, W) for grey or (H, W, 3) for colour, floats in 0..1."""
    from torchvision.utils import make_grid

    images = _check_images(images)
    if nrow < 1:
        raise UserError(f"nrow must be at least 1, got {nrow}")
    grid = make_grid(images, nrow=nrow, padding=GRID_PADDING, pad_value=1.0)
    if images.shape[1] == 1:
        return grid[0].numpy()
    return grid.permute(1, 2, 0).numpy()


def grid_array(images: torch.Tensor, nrow: int = 8) -> np.ndarray:
    """A grid of ``images`` (N, C, H, W) in [0, 1] as a uint8 array (H', W', C), C as the input.

    Tiles are separated by ``GRID_PADDING`` white pixels, ``nrow`` tiles per row (as in
    torchvision's ``make_grid``). For PIL, greyscale grids need ``array[..., 0]``.
    """
    grid = _grid_float(images, nrow)
    if grid.ndim == 2:
        grid = grid[..., None]
    return to_uint8(torch.from_numpy(grid)).numpy()


def _show(ax: Axes, array: np.ndarray, title: str | None = None, ylabel: str | None = None) -> None:
    """Draw one image (H, W) grey or (H, W, 3) colour on ``ax`` without axes (labels kept)."""
    if array.ndim == 2:
        ax.imshow(array, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(array, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title)
    if ylabel is not None:
        ax.set_ylabel(ylabel, rotation=0, ha="right", va="center")


def _tile(image: torch.Tensor) -> np.ndarray:
    image = image.detach().float().cpu().clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def _image_table(rows: Sequence[torch.Tensor], column_titles: Sequence[str] | None = None,
                 row_labels: Sequence[str] | None = None, title: str | None = None,
                 cell: float = 1.0) -> Figure:
    """One axis per image: ``rows[i][j]`` (C, H, W) at row i, column j; titles on the top row."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    label_space = 1.4 if row_labels else 0.0
    title_space = (0.5 if title else 0.0) + (0.45 if column_titles else 0.0)
    fig = _new_figure(n_cols * cell + label_space, n_rows * cell + title_space)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(row):
                ax.set_visible(False)
                continue
            _show(ax, _tile(row[j]),
                  title=column_titles[j] if column_titles and i == 0 else None,
                  ylabel=row_labels[i] if row_labels and j == 0 else None)
    if title:
        fig.suptitle(_plain(title))
    return fig


def image_grid(images: torch.Tensor, nrow: int = 8, title: str | None = None,
               row_labels: Sequence[str] | None = None) -> Figure:
    """A grid of ``images`` (N, C, H, W) in [0, 1], ``nrow`` per row, drawn on one axis.

    ``row_labels``, if given, names each row of the grid (one label per row, left of it).
    """
    with use_style():
        grid = _grid_float(images, nrow)
        n = images.shape[0] if images.ndim == 4 else 1
        n_cols = min(nrow, n)
        n_rows = math.ceil(n / n_cols)
        if row_labels is not None and len(row_labels) != n_rows:
            raise UserError(f"row_labels: got {len(row_labels)} labels for {n_rows} rows of images")
        height_px, width_px = grid.shape[:2]
        width = float(np.clip(n_cols * 0.75, 2.5, 12.0))
        label_space = 1.4 if row_labels else 0.0
        fig = _new_figure(width + label_space, width * height_px / width_px + (0.5 if title else 0.1))
        ax = fig.subplots()
        _show(ax, grid)
        if row_labels is not None:
            tile = (height_px - GRID_PADDING) / n_rows
            centres = [GRID_PADDING / 2 + tile * (i + 0.5) for i in range(n_rows)]
            ax.set_yticks(centres, [_plain(label) for label in row_labels])
            ax.tick_params(axis="y", length=0)
        if title:
            ax.set_title(_plain(title))
        return fig


def image_rows_figure(rows: dict[str, torch.Tensor], title: str | None = None) -> Figure:
    """One labelled row per entry of ``rows`` (label -> images (N, C, H, W), the same N each): e.g.
    input / output / truth of the same people, column by column."""
    if not rows:
        raise UserError("image_rows_figure: no rows to show")
    lengths = {label: len(images) for label, images in rows.items()}
    if len(set(lengths.values())) != 1:
        raise UserError(f"image_rows_figure: every row needs as many images, got {lengths}")
    images = torch.cat([_check_images(images, label) for label, images in rows.items()])
    return image_grid(images, nrow=next(iter(lengths.values())), title=title, row_labels=list(rows))


# -- autoencoders ----------------------------------------------------------------------------------

def _check_fits(model: Generator, images: torch.Tensor, what: str) -> None:
    if images.shape[1] != model.channels or images.shape[-1] != model.size or images.shape[-2] != model.size:
        raise UserError(
            f"{what}: the images are {images.shape[1]}x{images.shape[-2]}x{images.shape[-1]} "
            f"(channels x height x width) but the model expects "
            f"{model.channels}x{model.size}x{model.size}"
        )


def _encode(model: AutoEncoder, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Latent codes (the posterior means for a VAE) of the model's own input for ``images``."""
    generator = torch.Generator(device=model.device).manual_seed(0)
    with evaluating(model):
        codes = [model.encode(model.corrupt(chunk.to(model.device), generator=generator)).cpu()
                 for chunk in images.split(batch)]
    return torch.cat(codes)


def reconstruction_figure(images: torch.Tensor, models: dict[str, AutoEncoder], n: int = 10,
                          seed: int = 0, title: str | None = None) -> Figure:
    """Ground truth and each model's reconstruction of the first ``n`` images, one row each.

    The rows are labelled with the ``models`` keys (e.g. ``{"latent 2-D": ae2, "latent 5-D": ae5}``).
    A denoising or colourising model also gets a row of its corrupted input (noise drawn with
    ``seed``), so it reads noisy / grey input -> output -> clean: when any model corrupts its
    input, the ground-truth row ("clean") comes last; otherwise it comes first.
    """
    if not models:
        raise UserError("reconstruction_figure: give at least one model")
    images = _check_images(images)[:n]
    corrupting = [name for name, m in models.items() if m.options["mode"] != "plain"]
    rows: list[tuple[str, torch.Tensor]] = []
    for name, model in models.items():
        _check_fits(model, images, f"reconstruction_figure (model {name!r})")
        mode = model.options["mode"]
        generator = torch.Generator(device=model.device).manual_seed(seed)
        with evaluating(model):
            x = images.to(model.device)
            inputs = model.corrupt(x, generator=generator)
            output = model.reconstruct(inputs).cpu()
        if mode == "plain":
            rows.append((str(name), output))
            continue
        kind = "noisy" if mode == "denoising" else "grey"
        suffix = f" ({name})" if len(corrupting) > 1 else ""
        rows.append((f"{kind} input{suffix}", inputs.cpu()))
        rows.append((f"{'denoised' if mode == 'denoising' else 'colourised'} ({name})", output))
    if corrupting:
        colour_only = all(models[c].options["mode"] == "colourising" for c in corrupting)
        rows.append(("colour original (ground truth)" if colour_only else "clean (ground truth)", images))
        default_title = ("Denoising: noisy input, output, clean" if all(
            models[c].options["mode"] == "denoising" for c in corrupting) else
            "Colourising: grey input, output, colour original" if all(
                models[c].options["mode"] == "colourising" for c in corrupting) else
            "Corrupted input, output, clean original")
    else:
        rows.insert(0, ("ground truth", images))
        default_title = "Reconstructions: the original, then each model's copy"

    with use_style():
        strip_width = float(np.clip(len(images) * 0.7, 2.5, 11.0))
        grid = _grid_float(images, len(images))
        strip_height = strip_width * grid.shape[0] / grid.shape[1]
        fig = _new_figure(strip_width + 2.0, len(rows) * (strip_height + 0.15) + 0.6)
        axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
        for ax, (label, batch) in zip(axes, rows):
            _show(ax, _grid_float(batch, len(images)), ylabel=_plain(label))
        fig.suptitle(_plain(title or default_title))
        return fig


def _natural_key(label: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(label)))


def latent_scatter(model: AutoEncoder, images: torch.Tensor, labels: Sequence[str],
                   max_points: int = 2000, seed: int = 0, title: str | None = None,
                   legend_title: str = "label") -> Figure:
    """The latent codes (means, for a VAE) of ``images`` as a 2-D scatter coloured by ``labels``.

    A latent with more than 2 dimensions is projected on its first two principal components (the
    axis labels say so, with the share of variance each explains). At most ``max_points`` images
    are drawn, chosen at random with ``seed``. Each class gets a colour of the colour-blind-safe
    palette and its own marker shape.
    """
    images = _check_images(images)
    labels = [str(label) for label in labels]
    if len(labels) != len(images):
        raise UserError(f"latent_scatter: {len(images)} images but {len(labels)} labels")
    _check_fits(model, images, "latent_scatter")
    if max_points < 1:
        raise UserError(f"max_points must be at least 1, got {max_points}")
    if len(images) > max_points:
        keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:max_points])
        images = images[torch.from_numpy(keep)]
        labels = [labels[i] for i in keep]
    z = _encode(model, images).numpy().astype(np.float64)
    dim = z.shape[1]
    if dim == 1:
        jitter = np.random.default_rng(seed).uniform(-0.5, 0.5, len(z))
        points = np.column_stack([z[:, 0], jitter])
        xlabel, ylabel = "latent value (1-D latent)", "random jitter (for legibility only)"
    elif dim == 2:
        points = z
        xlabel, ylabel = "latent dimension 1", "latent dimension 2"
    else:
        from sklearn.decomposition import PCA

        if len(z) < 2:
            raise UserError("latent_scatter: a PCA projection needs at least 2 images")
        pca = PCA(n_components=2, random_state=seed)
        points = pca.fit_transform(z)
        share = pca.explained_variance_ratio_
        xlabel = f"PCA 1 of the {dim}-D latent ({share[0]:.0%} of variance)"
        ylabel = f"PCA 2 of the {dim}-D latent ({share[1]:.0%} of variance)"

    classes = sorted(set(labels), key=_natural_key)
    colours = palette(len(classes))
    label_array = np.array(labels)
    with use_style():
        fig = _new_figure(7.0, 5.5)
        ax = fig.subplots()
        for k, name in enumerate(classes):
            mask = label_array == name
            ax.scatter(points[mask, 0], points[mask, 1], s=14, alpha=0.75, color=colours[k],
                       marker=MARKERS[k % len(MARKERS)], linewidths=0, label=_plain(name))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.25)
        kind = MODEL_NAMES.get(getattr(model, "kind", ""), type(model).__name__)
        ax.set_title(_plain(title or f"{kind} latent space: {len(points)} images, coloured by "
                                     f"{legend_title}"))
        legend = fig.legend(loc="outside right upper", title=_plain(legend_title), markerscale=1.6,
                            frameon=False)
        for handle in legend.legend_handles:
            handle.set_alpha(1.0)
        return fig


def interpolation_figure(vae: AutoEncoder, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
                         steps: int = 10, show_originals: bool = True,
                         labels: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """One row per pair (a, b) of images (C, H, W): decoded points on the line from z(a) to z(b).

    The row's first and last decoded images are the reconstructions of a and b (titled "model's
    copy"); with ``show_originals`` the original images flank them. Columns between are titled
    with how far along the line they are. Works for a VAE (its ``interpolate``) and a plain autoencoder.
    """
    if steps < 2:
        raise UserError(f"interpolation_figure: steps must be at least 2, got {steps}")
    if not pairs:
        raise UserError("interpolation_figure: give at least one pair of images")
    if labels is not None and len(labels) != len(pairs):
        raise UserError(f"interpolation_figure: {len(labels)} labels for {len(pairs)} pairs")
    rows = []
    for start, end in pairs:
        ends = _check_images(torch.stack([torch.as_tensor(start), torch.as_tensor(end)]), "pair")
        _check_fits(vae, ends, "interpolation_figure")
        with evaluating(vae):
            if hasattr(vae, "interpolate"):
                path = vae.interpolate(ends[0], ends[1], steps).cpu()
            else:
                z = vae.encode(ends.to(vae.device))
                w = torch.linspace(0, 1, steps, device=vae.device).unsqueeze(1)
                path = vae.decode(z[0] * (1 - w) + z[1] * w).cpu()
        rows.append(([ends[0]] if show_originals else []) + list(path) + ([ends[1]] if show_originals else []))
    middle = [f"{round(100 * k / (steps - 1))} %" for k in range(1, steps - 1)]
    titles = ["start\n(model's copy)"] + middle + ["end\n(model's copy)"]
    if show_originals:
        titles = ["start\n(original)"] + titles + ["end\n(original)"]
    row_labels = [_plain(label) for label in labels] if labels is not None else None
    kind = MODEL_NAMES.get(getattr(vae, "kind", ""), type(vae).__name__)
    with use_style():
        return _image_table(rows, column_titles=titles, row_labels=row_labels, cell=1.2,
                            title=title or f"{kind}: a straight line through the latent space "
                                           f"(percent of the way from start to end)")


# -- any generator ---------------------------------------------------------------------------------

def prior_samples_figure(model: Generator, n: int = 64, seed: int = 0, prompt: str | list[str] | None = None,
                         nrow: int = 8, title: str | None = None, **sample_kwargs: Any) -> Figure:
    """A grid of ``n`` samples of any built-in generator (``model.sample(n, prompt, seed, ...)``).

    The title says where the samples come from: a VAE's N(0, I) prior, a Gaussian fitted to an
    autoencoder's training latents, a GAN's noise, or diffusion's reverse process.
    """
    if n < 1:
        raise UserError(f"prior_samples_figure: n must be at least 1, got {n}")
    samples = model.sample(n, prompt=prompt, seed=seed, **sample_kwargs)
    if title is None:
        kind = getattr(model, "kind", "")
        if kind == "vae":
            title = "VAE: decoded draws from the prior N(0, I)"
        elif kind == "ae":
            title = "Autoencoder: decoded draws from a Gaussian fitted to the training latents"
        elif kind == "gan":
            title = "GAN: generator outputs for random noise"
        elif kind == "diffusion":
            sampler = sample_kwargs.get("sampler") or model.options["sampler"]
            steps = sample_kwargs.get("steps") or (
                model.options["sample_steps"] if sampler == "ddim" else model.options["train_timesteps"])
            title = f"Diffusion: {sampler.upper()} sampling from noise, {steps} steps"
        else:
            title = f"{type(model).__name__}: samples"
        if isinstance(prompt, str):
            title += f"\nprompt: \u201c{prompt}\u201d"
    return image_grid(samples, nrow=nrow, title=title)


def training_progress_figure(run_dir: str | Path, max_columns: int = SNAPSHOTS, title: str | None = None,
                             column_attribute: str | None = None) -> Figure:
    """The sample grids a training run saved (``run_dir/snapshots/step_*.png``), side by side.

    With more snapshots than ``max_columns``, evenly spaced ones are shown, always including the
    first and the last. ``column_attribute``: a conditional model's, whose snapshots have one value
    of it a column (Generator.snapshot); the default title says so. Raises FileNotFoundError naming
    the folder when there are none.
    """
    from PIL import Image

    if max_columns < 1:
        raise UserError(f"max_columns must be at least 1, got {max_columns}")
    folder = Path(run_dir) / "snapshots"
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = SNAPSHOT_PATTERN.match(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
    if not found:
        raise FileNotFoundError(
            f"{folder}: no training snapshots (step_*.png) found; train with snapshot_every set "
            f"(e.g. snapshot_every=100) to record samples during training"
        )
    found.sort()
    if len(found) > max_columns:
        picks = np.unique(np.linspace(0, len(found) - 1, max_columns).round().astype(int))
        found = [found[i] for i in picks]
    tiles = []
    for step, path in found:
        try:
            with Image.open(path) as image:
                image.draft("RGB", (2048, 2048))
                array = from_pil(image.convert("RGB")).permute(1, 2, 0).numpy()
        except Exception as error:  # PIL raises many error types for a broken file
            raise UserError(f"{path}: not a readable PNG snapshot ({error})") from None
        if array.shape[2] == 3 and np.allclose(array[..., 0], array[..., 1]) and np.allclose(
                array[..., 0], array[..., 2]):
            array = array[..., 0]  # a greyscale grid saved as RGB: draw it with the grey map
        tiles.append((step, array))
    with use_style():
        cell = 2.2 if len(tiles) > 3 else 2.8
        aspect = max(array.shape[0] / array.shape[1] for _, array in tiles)  # wide grids get short panels
        fig = _new_figure(cell * len(tiles), cell * aspect + 0.9)
        axes = fig.subplots(1, len(tiles), squeeze=False)[0]
        for ax, (step, array) in zip(axes, tiles):
            _show(ax, array, title=f"step {step:,}")
        columns = f" (one {column_attribute} a column)" if column_attribute else ""
        fig.suptitle(_plain(title or f"Samples from fixed noise as training goes on{columns}"))
        return fig


# -- diffusion -------------------------------------------------------------------------------------

def forward_noising_figure(diffusion: Diffusion, images: torch.Tensor,
                           timesteps: Sequence[int] = (0, 50, 100, 200, 400, 600, 800, 999),
                           seed: int = 0, title: str | None = None) -> Figure:
    """The forward process q(x_t | x_0): rows are ``images``, columns are ``timesteps`` ("t = ...")."""
    images = _check_images(images)
    _check_fits(diffusion, images, "forward_noising_figure")
    total = int(diffusion.scheduler.config.num_train_timesteps)
    timesteps = [int(t) for t in timesteps]
    if not timesteps:
        raise UserError("forward_noising_figure: give at least one timestep")
    bad = [t for t in timesteps if not 0 <= t < total]
    if bad:
        raise UserError(f"forward_noising_figure: timesteps {bad} are outside 0..{total - 1} "
                         f"(this model was trained with {total} noise steps)")
    strips = diffusion.forward_noising(images, timesteps, seed=seed)  # (T, N, C, H, W)
    rows = [[strips[j, i] for j in range(len(timesteps))] for i in range(len(images))]
    with use_style():
        return _image_table(rows, column_titles=[f"t = {t}" for t in timesteps],
                            title=title or f"Forward noising: more Gaussian noise at each step "
                                           f"(t out of {total})")


def reverse_strip_figure(diffusion: Diffusion, n: int = 4, prompt: str | list[str] | None = None,
                         seed: int = 0, columns: int = 8, sampler: str = "ddim", steps: int = 50,
                         guidance: float | None = None, title: str | None = None) -> Figure:
    """The reverse (denoising) chain from noise to image for ``n`` samples, one row each.

    ``columns`` evenly spaced states of the sampler's trajectory are shown, always including the
    first (almost pure noise) and the final image; each column is titled with the timestep of its
    state. The final column equals ``diffusion.sample(n, prompt, seed, sampler=..., steps=...)``.
    """
    if n < 1 or columns < 1:
        raise UserError(f"reverse_strip_figure: n and columns must be at least 1 (got {n}, {columns})")
    trajectory: list[tuple[int, torch.Tensor]] = []
    diffusion.sample(n, prompt=prompt, seed=seed, batch_size=n, sampler=sampler, steps=steps,
                     guidance=guidance, trajectory=trajectory)
    if not trajectory:
        raise UserError("reverse_strip_figure: the sampler produced no steps")
    times = [t for t, _ in trajectory]
    # trajectory[k] is the state after the step at times[k]: the sample at the next timestep.
    labels = [f"t = {times[k + 1]}" for k in range(len(times) - 1)] + ["final image"]
    picks = np.unique(np.linspace(0, len(trajectory) - 1, min(columns, len(trajectory))).round().astype(int))
    rows = [[trajectory[k][1][i] for k in picks] for i in range(n)]
    row_labels = None
    if isinstance(prompt, (list, tuple)):
        row_labels = [_plain(p) for p in prompt]
    name = "DDIM" if sampler == "ddim" else sampler.upper()
    default = f"Reverse diffusion: from noise to an image ({name}, {len(times)} steps)"
    if isinstance(prompt, str):
        default += f"\nprompt: \u201c{prompt}\u201d"  # escaped once, with the title
    with use_style():
        return _image_table(rows, column_titles=[labels[k] for k in picks], row_labels=row_labels,
                            title=title or default)


# -- training --------------------------------------------------------------------------------------

def loss_curve_figure(history: pd.DataFrame, window: int | None = None, title: str | None = None) -> Figure:
    """Every loss column of a training ``history`` against the step, one panel each.

    The raw values are drawn faint, a rolling mean over ``window`` steps (default: a twentieth of
    the run, at least 1) on top. The x axis is the ``step`` column (or the row number).
    """
    if not isinstance(history, pd.DataFrame) or history.empty:
        raise UserError("loss_curve_figure: the history is empty (was the model trained?)")
    steps = history["step"].to_numpy() if "step" in history.columns else np.arange(1, len(history) + 1)
    columns = [c for c in history.columns
               if c != "step" and pd.api.types.is_numeric_dtype(history[c])]
    if not columns:
        raise UserError(f"loss_curve_figure: no numeric loss columns in {list(history.columns)}")
    window = int(window or max(1, len(history) // 20))
    with use_style():
        n_cols = min(3, len(columns))
        n_rows = math.ceil(len(columns) / n_cols)
        fig = _new_figure(4.2 * n_cols, 3.2 * n_rows + 0.4)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        colours = palette(len(columns))
        for k, column in enumerate(columns):
            ax = axes.flat[k]
            values = history[column].astype(float)
            smooth = values.rolling(window, min_periods=1).mean()
            ax.plot(steps, values.to_numpy(), color=colours[k], alpha=0.3, linewidth=1.0, label="raw")
            ax.plot(steps, smooth.to_numpy(), color=colours[k],
                    label=f"mean of {window} steps" if window > 1 else "value")
            ax.set_xlabel("training step")
            ax.set_ylabel(f"loss ({LOSS_NAMES.get(column, column.replace('_', ' '))})")
            ax.grid(True, alpha=0.25)
            ax.legend(frameon=False)
        for ax in list(axes.flat)[len(columns):]:
            ax.set_visible(False)
        fig.suptitle(_plain(title or "Training losses"))
        return fig
