"""Lecture visuals: each figure has the panels, labels and pixels it claims, and saves as a PNG."""

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from synthscope.generators import visuals
from synthscope.generators.autoencoder import VAE, AutoEncoder
from synthscope.generators.diffusion import Diffusion
from synthscope.generators.gan import GAN
from synthscope.generators.training import train_generator

SMALL_AE = {"width": 8, "batch_size": 32}
SMALL_DIFFUSION = {"block_out_channels": [8, 16], "norm_num_groups": 4, "batch_size": 16,
                   "train_timesteps": 1000}


# -- helpers ---------------------------------------------------------------------------------------

def image_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.images]


def grid_of_axes(fig):
    """Visible image axes as rows of columns, by their position on the figure."""
    fig.canvas.draw()
    axes = image_axes(fig)
    rows = {}
    for ax in axes:
        box = ax.get_position()
        rows.setdefault(round(box.y0, 3), []).append(ax)
    return [sorted(row, key=lambda a: a.get_position().x0) for _, row in sorted(rows.items(), reverse=True)]


def shown(ax):
    return np.asarray(ax.images[0].get_array(), dtype=np.float64)


def tile(image):
    image = image.detach().float().clamp(0, 1)
    return (image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy()


def assert_no_overlapping_text(fig):
    """No two visible, non-empty texts (titles, labels, tick labels, legend) overlap on the canvas."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    undrawn = set()  # tick labels outside the axis range exist but are not drawn
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = sorted(limits)
            for tick in axis.get_major_ticks():
                if not low <= tick.get_loc() <= high:
                    undrawn.update({id(tick.label1), id(tick.label2)})
    boxes, seen = [], set()
    for text in fig.findobj(matplotlib.text.Text):
        if id(text) in seen:  # findobj may reach one text along two paths
            continue
        seen.add(id(text))
        if not text.get_visible() or not str(text.get_text()).strip() or id(text) in undrawn:
            continue
        if text.axes is not None and not text.axes.get_visible():
            continue
        box = text.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            boxes.append((text.get_text(), box))
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            (a, box_a), (b, box_b) = boxes[i], boxes[j]
            overlap_w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            overlap_h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            assert not (overlap_w > 1 and overlap_h > 1), f"texts overlap: {a!r} and {b!r}"


def test_the_overlap_check_itself_catches_overlapping_text():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(3, 2))
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, "a long title")
    fig.text(0.52, 0.5, "another title")
    with pytest.raises(AssertionError, match="overlap"):
        assert_no_overlapping_text(fig)


def assert_grey_display(ax):
    image = ax.images[0]
    assert image.get_cmap().name == "gray"
    assert image.get_clim() == (0.0, 1.0)
    assert image.get_interpolation() == "nearest"


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits(small_digits):
    return small_digits


@pytest.fixture(scope="module")
def trained_aes(digits, tmp_path_factory):
    models = {}
    for name, options in {"latent 2-D": {"latent_dim": 2}, "latent 5-D": {"latent_dim": 5},
                          "denoising": {"latent_dim": 5, "mode": "denoising"}}.items():
        model = AutoEncoder(channels=1, size=16, **SMALL_AE, **options)
        train_generator(model, digits, tmp_path_factory.mktemp("ae"), steps=5, progress=False)
        models[name] = model
    return models


@pytest.fixture(scope="module")
def vae16(digits, tmp_path_factory):
    model = VAE(channels=1, size=16, latent_dim=16, **SMALL_AE)
    train_generator(model, digits, tmp_path_factory.mktemp("vae"), steps=5, progress=False)
    return model


@pytest.fixture(scope="module")
def diffusion():
    torch.manual_seed(0)
    return Diffusion(channels=1, size=16, **SMALL_DIFFUSION).eval()


@pytest.fixture(scope="module")
def gan_run(digits, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gan")
    model = GAN(channels=1, size=16, nz=8, width=8, batch_size=32)
    train_generator(model, digits, run_dir, steps=3, snapshot_every=1, progress=False)
    return model, run_dir


def colour_images(n=24, size=16):
    try:
        from synthscope.generators.portraits import generate_portraits
    except ImportError:
        generator = torch.Generator().manual_seed(0)
        coarse = torch.rand(n, 3, 4, 4, generator=generator)
        return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                               align_corners=False).clamp(0, 1)
    return generate_portraits(n, seed=0, size=size).images


# -- style, saving, grids --------------------------------------------------------------------------

def test_style_sets_the_colour_blind_palette_and_restores_afterwards():
    import matplotlib
    import seaborn as sns

    before = matplotlib.rcParams["axes.prop_cycle"]
    with visuals.use_style():
        colours = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
        assert np.allclose(colours, sns.color_palette("colorblind", 10))
        assert matplotlib.rcParams["figure.constrained_layout.use"]
        assert matplotlib.rcParams["font.size"] >= 10
    assert matplotlib.rcParams["axes.prop_cycle"] == before


def test_grid_array_shape_and_pixels():
    images = torch.rand(10, 1, 16, 16)
    grid = visuals.grid_array(images, nrow=4)
    pad = visuals.GRID_PADDING
    assert grid.dtype == np.uint8
    assert grid.shape == (3 * (16 + pad) + pad, 4 * (16 + pad) + pad, 1)
    # the 6th image sits in row 1, column 1; padding is white
    top, left = pad + (16 + pad), pad + (16 + pad)
    np.testing.assert_array_equal(grid[top:top + 16, left:left + 16, 0],
                                  (images[5, 0] * 255).round().to(torch.uint8).numpy())
    assert (grid[:pad] == 255).all()

    colour = visuals.grid_array(torch.rand(3, 3, 8, 8), nrow=8)
    assert colour.shape == (8 + 2 * pad, 3 * (8 + pad) + pad, 3)
    with pytest.raises(ValueError, match="channels"):
        visuals.grid_array(torch.rand(2, 2, 8, 8))


def test_image_grid_draws_the_grid_with_row_labels(digits):
    images = digits.images[:16]
    fig = visuals.image_grid(images, nrow=8, title="Digits", row_labels=["first eight", "next eight"])
    assert isinstance(fig, Figure)
    (ax,) = image_axes(fig)
    np.testing.assert_allclose(shown(ax), visuals.grid_array(images, 8)[..., 0] / 255, atol=1 / 255)
    assert_grey_display(ax)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["first eight", "next eight"]
    assert ax.get_title() == "Digits"
    assert_no_overlapping_text(fig)
    with pytest.raises(ValueError, match="row_labels"):
        visuals.image_grid(images, nrow=8, row_labels=["only one"])


def test_save_figure_writes_a_real_png(digits, tmp_path):
    fig = visuals.image_grid(digits.images[:32], title="thirty-two digits")
    path = visuals.save_figure(fig, tmp_path / "deep" / "grid.png")
    assert path == tmp_path / "deep" / "grid.png" and path.stat().st_size > 1000
    with Image.open(path) as image:
        image.load()
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # not one flat colour
    assert pixels.shape[1] > 300  # written at ~150 dpi, not a thumbnail


# -- autoencoders ----------------------------------------------------------------------------------

def test_reconstruction_figure_plain_latents(digits, trained_aes):
    images = digits.images[:20]
    models = {k: trained_aes[k] for k in ("latent 2-D", "latent 5-D")}
    fig = visuals.reconstruction_figure(images, models, n=10)
    axes = image_axes(fig)
    assert [ax.get_ylabel() for ax in axes] == ["ground truth", "latent 2-D", "latent 5-D"]
    np.testing.assert_allclose(shown(axes[0]), visuals.grid_array(images[:10], 10)[..., 0] / 255, atol=1 / 255)
    for ax, model in zip(axes[1:], models.values()):
        with torch.no_grad():
            expected = model.eval().reconstruct(images[:10])
        np.testing.assert_allclose(shown(ax), visuals.grid_array(expected, 10)[..., 0] / 255, atol=1 / 255)
        assert_grey_display(ax)
    assert_no_overlapping_text(fig)


def test_reconstruction_figure_denoising_shows_noisy_input_then_output_then_clean(digits, trained_aes):
    model = trained_aes["denoising"]
    model.train()  # the figure must switch to eval mode itself, and switch back
    images = digits.images[:8]
    fig = visuals.reconstruction_figure(images, {"denoising AE": model}, n=8)
    assert model.training
    axes = image_axes(fig)
    assert [ax.get_ylabel() for ax in axes] == ["noisy input", "denoised (denoising AE)",
                                                "clean (ground truth)"]
    noisy, clean = shown(axes[0]), shown(axes[2])
    assert np.abs(noisy - clean).mean() > 0.1  # the input row really is noisy
    rows_h = noisy.shape[0]
    noisy_images = torch.from_numpy(noisy[2:rows_h - 2]).float()  # undo the grid: 8 tiles in a row
    tiles = torch.stack([noisy_images[:, 2 + k * 18: 2 + k * 18 + 16] for k in range(8)]).unsqueeze(1)
    with torch.no_grad():
        expected = model.eval().reconstruct(tiles)
    model.train()
    np.testing.assert_allclose(shown(axes[1]), visuals.grid_array(expected, 8)[..., 0] / 255, atol=2 / 255)
    assert "Denoising" in fig._suptitle.get_text()


def test_reconstruction_figure_colourising(tmp_path):
    images = colour_images()
    model = AutoEncoder(channels=3, size=16, latent_dim=8, mode="colourising", **SMALL_AE)
    from synthscope.generators.imageset import ImageSet

    data = ImageSet("colour", images, pd.DataFrame(index=range(len(images))), [""] * len(images))
    train_generator(model, data, tmp_path, steps=3, progress=False)
    fig = visuals.reconstruction_figure(images, {"colouriser": model}, n=6)
    axes = image_axes(fig)
    assert [ax.get_ylabel() for ax in axes] == ["grey input", "colourised (colouriser)",
                                                "colour original (ground truth)"]
    grey = shown(axes[0])
    assert grey.ndim == 3 and np.allclose(grey[..., 0], grey[..., 1], atol=1e-6)  # grey, 3 channels
    clean = shown(axes[2])
    assert not np.allclose(clean[..., 0], clean[..., 1], atol=1e-3)
    with pytest.raises(ValueError, match="expects"):
        visuals.reconstruction_figure(torch.rand(4, 1, 16, 16), {"colouriser": model})


def test_latent_scatter_2d_plots_the_codes_themselves(digits, trained_aes):
    model = trained_aes["latent 2-D"]
    images, labels = digits.images[:150], list(digits.attributes["digit"][:150])
    fig = visuals.latent_scatter(model, images, labels)
    (ax,) = fig.axes
    assert "PCA" not in ax.get_xlabel() and ax.get_xlabel() == "latent dimension 1"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 150
    with torch.no_grad():
        codes = model.eval().encode(images).numpy()
    threes = np.array(labels) == "3"
    collection = next(c for c in ax.collections if c.get_label() == "3")
    np.testing.assert_allclose(np.sort(collection.get_offsets(), axis=0), np.sort(codes[threes], axis=0),
                               atol=1e-5)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == sorted(set(labels), key=int)
    assert_no_overlapping_text(fig)


def test_latent_scatter_16d_uses_pca_and_caps_the_points(digits, vae16):
    labels = list(digits.attributes["digit"])
    fig = visuals.latent_scatter(vae16, digits.images, labels, max_points=200)
    (ax,) = fig.axes
    assert "PCA 1 of the 16-D latent" in ax.get_xlabel() and "PCA 2" in ax.get_ylabel()
    assert sum(len(c.get_offsets()) for c in ax.collections) == 200
    colours = {tuple(np.round(c.get_facecolor()[0][:3], 4)) for c in ax.collections}
    assert len(colours) == len(ax.collections) == 10  # one distinct colour per digit
    with pytest.raises(ValueError, match="labels"):
        visuals.latent_scatter(vae16, digits.images[:10], labels[:9])


def test_interpolation_figure_rows_columns_and_endpoints(digits, vae16):
    images = digits.images
    pairs = [(images[0], images[1]), (images[2], images[3])]
    fig = visuals.interpolation_figure(vae16, pairs, steps=5, labels=["0 to 1", "2 to 3"])
    rows = grid_of_axes(fig)
    assert [len(r) for r in rows] == [7, 7]
    titles = [ax.get_title() for ax in rows[0]]
    assert titles[0].startswith("start") and "original" in titles[0]
    assert "model's copy" in titles[1] and "model's copy" in titles[5] and titles[3] == "50 %"
    assert [r[0].get_ylabel() for r in rows] == ["0 to 1", "2 to 3"]
    with torch.no_grad():
        recon = vae16.eval().reconstruct(images[2:4])
    np.testing.assert_allclose(shown(rows[1][1]), tile(recon[0]), atol=1e-5)
    np.testing.assert_allclose(shown(rows[1][5]), tile(recon[1]), atol=1e-5)
    np.testing.assert_allclose(shown(rows[1][0]), tile(images[2]), atol=1e-6)
    assert_no_overlapping_text(fig)
    with pytest.raises(ValueError, match="steps"):
        visuals.interpolation_figure(vae16, pairs, steps=1)


# -- any generator ---------------------------------------------------------------------------------

def test_prior_samples_figure_for_vae_gan_and_diffusion(vae16, gan_run, diffusion):
    fig = visuals.prior_samples_figure(vae16, n=16, seed=3, nrow=4)
    (ax,) = image_axes(fig)
    np.testing.assert_allclose(shown(ax), visuals.grid_array(vae16.sample(16, seed=3), 4)[..., 0] / 255,
                               atol=1 / 255)
    assert "prior" in ax.get_title()
    gan, _ = gan_run
    assert "GAN" in image_axes(visuals.prior_samples_figure(gan, n=8))[0].get_title()
    fig = visuals.prior_samples_figure(diffusion, n=2, steps=3)
    assert "3 steps" in image_axes(fig)[0].get_title()


def test_training_progress_figure_shows_snapshots_by_step(gan_run, tmp_path):
    _, run_dir = gan_run
    fig = visuals.training_progress_figure(run_dir)
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == ["step 1", "step 2", "step 3"]
    with Image.open(run_dir / "snapshots" / "step_000002.png") as image:
        expected = np.asarray(image.convert("L"), dtype=np.float64) / 255
    np.testing.assert_allclose(shown(axes[1]), expected, atol=1e-6)
    assert_grey_display(axes[1])
    few = visuals.training_progress_figure(run_dir, max_columns=2)
    assert [ax.get_title() for ax in image_axes(few)] == ["step 1", "step 3"]
    assert_no_overlapping_text(fig)


def test_training_progress_figure_without_snapshots_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training snapshots.*snapshot_every"):
        visuals.training_progress_figure(tmp_path)
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / "notes.txt").write_text("not a snapshot")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "snapshots")):
        visuals.training_progress_figure(tmp_path)


# -- diffusion -------------------------------------------------------------------------------------

def test_forward_noising_figure_columns_are_timesteps(digits, diffusion):
    images = digits.images[:3]
    timesteps = (0, 50, 100, 200, 400, 600, 800, 999)
    fig = visuals.forward_noising_figure(diffusion, images, timesteps=timesteps, seed=1)
    rows = grid_of_axes(fig)
    assert len(rows) == 3 and all(len(r) == len(timesteps) for r in rows)
    assert [ax.get_title() for ax in rows[0]] == [f"t = {t}" for t in timesteps]
    assert all(ax.get_title() == "" for ax in rows[1])
    strips = diffusion.forward_noising(images, list(timesteps), seed=1)
    np.testing.assert_allclose(shown(rows[2][4]), tile(strips[4, 2]), atol=1e-6)
    clean = tile(images[0])
    assert np.abs(shown(rows[0][0]) - clean).mean() < 0.05
    assert np.abs(shown(rows[0][-1]) - clean).mean() > 0.2
    assert_grey_display(rows[0][-1])
    assert_no_overlapping_text(fig)
    with pytest.raises(ValueError, match="outside 0..999"):
        visuals.forward_noising_figure(diffusion, images, timesteps=(0, 1000))


def test_reverse_strip_figure_goes_from_noise_to_the_sample(diffusion):
    fig = visuals.reverse_strip_figure(diffusion, n=2, seed=4, columns=4, steps=6)
    rows = grid_of_axes(fig)
    assert len(rows) == 2 and all(len(r) == 4 for r in rows)
    titles = [ax.get_title() for ax in rows[0]]
    schedule = [int(t) for t in diffusion.make_sampler("ddim", 6).timesteps]
    # the first state shown is the one after the first step, i.e. at the schedule's second timestep
    assert titles[0] == f"t = {schedule[1]}" and titles[-1] == "final image"
    assert all(t.startswith("t = ") for t in titles[:-1])
    final = diffusion.sample(2, seed=4, sampler="ddim", steps=6)
    np.testing.assert_allclose(shown(rows[1][-1]), tile(final[1]), atol=1e-5)
    assert_no_overlapping_text(fig)
    more = visuals.reverse_strip_figure(diffusion, n=1, columns=20, steps=3)
    assert len(image_axes(more)) == 3  # never more columns than states


# -- training curves -------------------------------------------------------------------------------

def test_loss_curve_figure_one_panel_per_loss():
    steps = np.arange(1, 101)
    rng = np.random.default_rng(0)
    history = pd.DataFrame({"step": steps, "loss_d": 1.4 - steps / 200 + rng.normal(0, 0.1, 100),
                            "loss_g": 0.7 + steps / 200 + rng.normal(0, 0.1, 100)})
    fig = visuals.loss_curve_figure(history, window=10)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_ylabel() for ax in axes] == ["loss (discriminator)", "loss (generator)"]
    assert all(ax.get_xlabel() == "training step" for ax in axes)
    raw, smooth = axes[0].lines
    np.testing.assert_allclose(raw.get_ydata(), history["loss_d"])
    np.testing.assert_allclose(smooth.get_ydata(), history["loss_d"].rolling(10, min_periods=1).mean())
    np.testing.assert_array_equal(smooth.get_xdata(), steps)
    assert raw.get_alpha() < smooth.get_alpha() if smooth.get_alpha() is not None else raw.get_alpha() < 1
    assert_no_overlapping_text(fig)
    with pytest.raises(ValueError, match="empty"):
        visuals.loss_curve_figure(pd.DataFrame())
