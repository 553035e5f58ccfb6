# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Autoencoders: compression, denoising, colourising
#
# An **autoencoder** is two networks glued together at a narrow waist. The *encoder* squeezes an
# image into a handful of numbers, the **latent code** *z*; the *decoder* has to redraw the image
# from *z* alone. Nobody tells the network what the numbers should mean: it is only punished when
# the redrawing differs from the original. Whatever survives the squeeze is what the network found
# most worth keeping.
#
# In this lab we
#
# 1. squeeze 16 × 16 handwritten digits (256 pixel values) through a latent of **two** numbers and
#    through one of **five**, and look at what is lost;
# 2. draw the 2-D latent as a map, and walk across it;
# 3. train the same architecture to remove noise (**denoising**) and to put colour back into grey
#    portraits (**colourising**): the same idea, a different question.
#
# Everything runs on a laptop CPU in a few minutes, offline, on data that ships with synthscope.

# %%
# Set-up, as in the README (pip install -e): install synthscope from this repository, unless it is
# installed already (then this cell does nothing and needs no network).
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("synthscope") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-e", ".."], check=True)

# %% tags=["parameters"]
# Sizes of this lab. The values below are the lecture's; smaller ones run faster but learn less.
STEPS_2D = 1200          # training steps of the 2-D autoencoder
STEPS_5D = 1200          # ... of the 5-D one
STEPS_DENOISE = 1000     # ... of the denoising autoencoder
STEPS_COLOUR = 300       # ... of the colourising autoencoder (32 px colour portraits: slower steps)
N_PORTRAITS = 2000       # portraits drawn for the colourising autoencoder
NOISE_STD = 0.35         # how much noise the denoising autoencoder learns to remove
SEED = 0
WORK_DIR = "lab-work/01_autoencoders"  # where trained models are written

# %%
# %matplotlib inline
import torch

from synthscope.generators import visuals
from synthscope.generators.data import load_data
from synthscope.generators.workflow import train_run
from synthscope.notebook import start_notebook
from synthscope.runtime import evaluating

# One thread per free core (and one only beside other jobs); the same seed gives the same figures.
WORK = start_notebook(seed=SEED, work_dir=WORK_DIR)

# %% [markdown]
# ## The data: handwritten digits
#
# scikit-learn ships 1,797 small scans of handwritten digits. synthscope enlarges them to 16 × 16
# pixels, so each image is 256 numbers between 0 (black) and 1 (white). We keep 20 % aside: the
# autoencoder never trains on these *held-out* digits, so how well it redraws them tells us what it
# learnt in general, not what it memorised.

# %%
digits = load_data("digits", size=16, seed=SEED)
train, heldout = digits.split(seed=SEED)  # the same split training uses
print(f"{len(train)} training and {len(heldout)} held-out digits, each {tuple(digits.images.shape[1:])}")
visuals.image_grid(heldout.images[:32], nrow=16, title="Some held-out digits")

# %% [markdown]
# ## Compression: a 2-D latent against a 5-D latent
#
# Both autoencoders have the same encoder and decoder; only the waist differs. The loss is the
# **reconstruction error**: how far the redrawn pixels lie from the originals (here a binary
# cross-entropy per pixel, summed). Training nudges all the weights, of encoder and decoder at once,
# to make that number smaller.

# %%
runs = {}
for dim, steps in ((2, STEPS_2D), (5, STEPS_5D)):
    runs[dim] = train_run("ae", "digits", WORK / f"ae-{dim}d", options={"latent_dim": dim}, steps=steps,
                          seed=SEED, force=True, evaluate=False)
    print(f"{dim}-D latent: {steps} steps in {runs[dim].seconds:.0f} s, "
          f"final loss {runs[dim].history['loss'].tail(50).mean():.1f}")
ae2, ae5 = runs[2].model, runs[5].model

# %% [markdown]
# Top row: held-out digits. Below: what each autoencoder redraws from its latent code. Two numbers
# per digit is a brutal compression (256 → 2): the 2-D model draws the *typical* shape of a class,
# and mixes up classes that look alike. Five numbers already keep the slant, the stroke width and
# most of the identity.

# %%
visuals.reconstruction_figure(heldout.images[:12], {"2-D latent": ae2, "5-D latent": ae5})

# %%
with evaluating(ae2), evaluating(ae5):
    x = heldout.images
    for name, model in (("2-D", ae2), ("5-D", ae5)):
        error = (model.reconstruct(x) - x).pow(2).mean().item()
        print(f"{name} latent: mean squared pixel error on held-out digits {error:.4f}")

# %% [markdown]
# ## The latent space as a map
#
# With two numbers per image we can draw every held-out digit as a point. Nobody told the encoder
# which digit is which, yet digits of one class land near each other: to redraw a digit from two
# numbers, the cheapest code is one where similar images get similar numbers. Where two clouds
# overlap (often 4 and 9, or 3, 5 and 8) the decoder cannot tell them apart either.

# %%
visuals.latent_scatter(ae2, heldout.images, list(heldout.attributes["digit"]), legend_title="digit")

# %% [markdown]
# The decoder can draw *any* point of that map, not only the ones the encoder produced. Below we
# decode a regular grid of latent points spanning the map: the digits morph into each other. This
# is the first hint of a generative model, and also of its problem: an autoencoder never learnt what
# lies *between* or *outside* its clouds, so many points decode into shapes that are no digit at all.
# (The next lab's VAE fixes this.)

# %%
with evaluating(ae2):
    z = ae2.encode(heldout.images)
    lo, hi = z.quantile(0.02, dim=0), z.quantile(0.98, dim=0)
    steps = 12
    xs, ys = torch.linspace(lo[0], hi[0], steps), torch.linspace(hi[1], lo[1], steps)
    grid = torch.stack([torch.stack([a, b]) for b in ys for a in xs])
    walk = ae2.decode(grid)
visuals.image_grid(walk, nrow=steps, title="Decoding a grid of points of the 2-D latent space")

# %% [markdown]
# **Exercise:** set `STEPS_2D = 200` in the parameters cell and rerun the notebook. How does the
# map change when the autoencoder has trained less? Then try a latent of 1 number
# (`options={"latent_dim": 1}` in the training cell): what can one number still tell apart?

# %% [markdown]
# ## Denoising: a different question for the same network
#
# A **denoising autoencoder** gets a corrupted input (here: Gaussian noise of standard deviation
# `NOISE_STD` added to every pixel) but is scored against the *clean* original. To win, it must learn
# what digits look like, because the noise carries no information about the digit. The waist is
# wider (16 numbers): the point is no longer compression but learning what to throw away.

# %%
denoise = train_run("ae", "digits", WORK / "ae-denoising", steps=STEPS_DENOISE, seed=SEED, force=True,
                    evaluate=False, options={"latent_dim": 16, "mode": "denoising", "noise_std": NOISE_STD})
visuals.reconstruction_figure(heldout.images[:12], {"denoising": denoise.model}, seed=SEED)

# %% [markdown]
# **Exercise:** set `NOISE_STD = 0.8` and rerun the denoising cell. At what noise level does the
# model start to "repair" a digit into the wrong one? That is a model replacing evidence with its
# expectations: keep it in mind for the bias lab.

# %% [markdown]
# ## Colourising: filling in what the input does not say
#
# The same architecture on the built-in **portraits** world (32 px colour images of people at
# work): the input is a grey version of the portrait, the target its colour original. Brightness
# is in the input; hue is not. Where the grey value does not determine the colour (a shirt, a
# background, a skin tone) the model must *guess*, and a network trained to minimise average error
# guesses the average colour it saw in training. A model that fills in missing information does so
# from the statistics of its training data.

# %%
colour = train_run("ae", "portraits", WORK / "ae-colourising", steps=STEPS_COLOUR, seed=SEED, force=True,
                   evaluate=False, n=N_PORTRAITS, options={"latent_dim": 32, "mode": "colourising"})
portraits = load_data("portraits", n=N_PORTRAITS, seed=SEED)
_, portraits_heldout = portraits.split(seed=SEED)
visuals.reconstruction_figure(portraits_heldout.images[:10], {"colourising": colour.model})

# %% [markdown]
# **Exercise:** the colourised portraits are blurrier than the originals, and some colours are off.
# Which details are lost first? Raise `STEPS_COLOUR` (e.g. to 600) and compare. Would more training
# ever recover the colour of a shirt that appears in grey only?
#
# ## What to take away
#
# - An autoencoder's latent code is a compressed description it invented itself; how many numbers
#   it gets decides what survives.
# - Similar images get nearby codes, so the latent space is a map of the data, but an autoencoder
#   has no idea what lies between the points it saw.
# - Denoising and colourising are the same machine asked a different question; both fill in
#   missing information from what the training data made typical.
