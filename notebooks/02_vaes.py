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
# # 2. Variational autoencoders: a latent space you can sample from
#
# The autoencoder of the last lab gave every image a point in latent space, but had no opinion about
# the space *between* those points: decode a random point and you often get a smudge. A
# **variational autoencoder (VAE)** changes two things:
#
# 1. The encoder no longer gives one point per image but a small cloud: a mean and a spread (a
#    Gaussian *q(z | x)*). During training the decoder gets a random draw from that cloud, so
#    nearby points must all decode to something like the image.
# 2. A second term in the loss, the **KL divergence**, pulls every cloud towards one fixed
#    distribution, the **prior** *N(0, I)* (a standard normal in every latent dimension). The clouds
#    of all training images then fill the prior together, without big holes.
#
# The loss is *reconstruction + β · KL* (with β = 1 it is the negative evidence lower bound, the
# ELBO). After training, sampling is simple: draw *z* from *N(0, I)* and decode it.

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
STEPS = 3000             # training steps of the VAE (beta = 1)
STEPS_BETA = 1200        # training steps of each VAE in the beta comparison
BETAS = [0.2, 4.0]       # the other values of beta to compare with beta = 1
LATENT_DIM = 16          # numbers in the latent code
SEED = 0
WORK_DIR = "lab-work/02_vaes"  # where trained models are written

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from synthscope.generators import visuals
from synthscope.generators.data import load_data
from synthscope.generators.workflow import train_run
from synthscope.notebook import start_notebook
from synthscope.runtime import evaluating

WORK = start_notebook(seed=SEED, work_dir=WORK_DIR)

digits = load_data("digits", size=16, seed=SEED)
train, heldout = digits.split(seed=SEED)  # the same split training uses

# %% [markdown]
# ## Training: two forces pulling against each other
#
# We train a convolutional VAE on the 16 px digits. The training log records both parts of the loss:
#
# - **reconstruction**: how badly the decoder redraws the image from a draw of its cloud (lower is
#   better);
# - **KL divergence**: how far, in nats, the encoder's clouds are from the prior. It is zero only
#   when every image gets exactly *N(0, I)*, that is, when the code says nothing about the image.
#
# The reconstruction term wants informative, sharply separated codes; the KL term wants every code to
# look like the prior. Watch the KL rise early (the encoder starts to use the latent) while the
# reconstruction error falls.

# %%
vae_run = train_run("vae", "digits", WORK / "vae", steps=STEPS, seed=SEED, force=True, evaluate=False,
                    options={"latent_dim": LATENT_DIM})
vae = vae_run.model
print(f"{STEPS} steps in {vae_run.seconds:.0f} s")
visuals.loss_curve_figure(vae_run.history, title="VAE training: total = reconstruction + beta x KL")

# %% [markdown]
# ## Sampling from the prior
#
# This is what the KL term buys: every grid cell below is the decoder's drawing of a *random* point
# *z ~ N(0, I)*. No training image was encoded. Compare with the smudges the plain autoencoder drew
# from random points in the last lab. The samples are blurry: a VAE's decoder averages over
# everything its cloud could have meant, which is the price of a smooth latent space.

# %%
visuals.prior_samples_figure(vae, n=64, seed=SEED)

# %% [markdown]
# ## Interpolation
#
# Because the latent space has no holes, a straight line between the codes of two images passes
# through codes that decode to plausible digits all the way. Each row starts at one held-out digit
# and ends at another; the columns in between are evenly spaced points on the line between their
# latent means.

# %%
labels = list(heldout.attributes["digit"])
first = {d: labels.index(d) for d in "0123456789"}  # the first held-out image of each digit
pairs = [(heldout.images[first[a]], heldout.images[first[b]]) for a, b in (("1", "7"), ("3", "8"), ("4", "9"), ("0", "6"))]
visuals.interpolation_figure(vae, pairs, steps=8, labels=["1 → 7", "3 → 8", "4 → 9", "0 → 6"])

# %% [markdown]
# The latent means of all held-out digits, projected on their two main directions (PCA of the
# 16-D codes). The classes form overlapping regions around the origin: the prior's shape.

# %%
visuals.latent_scatter(vae, heldout.images, labels, legend_title="digit")

# %% [markdown]
# ## What β does
#
# β weighs the KL term against reconstruction. With **β < 1** the encoder may put more information
# in the code: sharper reconstructions, but clouds that drift from the prior, so prior samples land
# in regions the decoder never saw. With **β > 1** (the β-VAE) the prior wins: codes carry less
# information, reconstructions get vaguer, and many latent dimensions are switched off entirely:
# the encoder gives them exactly the prior whatever the image (the KL of such a dimension is ~0).
# We train one VAE per β for a shorter run and compare.

# %%
models = {1.0: vae}
for beta in BETAS:
    run = train_run("vae", "digits", WORK / f"vae-beta{beta:g}", steps=STEPS_BETA, seed=SEED, force=True,
                    evaluate=False, options={"latent_dim": LATENT_DIM, "beta": float(beta)})
    models[float(beta)] = run.model
models = dict(sorted(models.items()))


def kl_per_dimension(model, images):
    """The average KL of each latent dimension to the prior on ``images`` (nats)."""
    with evaluating(model):
        mean, log_var = model.posterior(images)
    return (0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var)).mean(0).numpy()


rows = []
for beta, model in models.items():
    with evaluating(model):
        error = (model.reconstruct(heldout.images) - heldout.images).pow(2).mean().item()
    kl = kl_per_dimension(model, heldout.images)
    rows.append((beta, error, kl.sum(), int((kl > 0.1).sum())))
    print(f"beta = {beta:>4g}: pixel error {error:.4f}, KL {kl.sum():5.1f} nats, "
          f"{int((kl > 0.1).sum())} of {LATENT_DIM} latent dimensions in use (KL > 0.1)")

# %%
fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3), sharey=True, layout="constrained")
for ax, (beta, model) in zip(np.atleast_1d(axes), models.items()):
    kl = np.sort(kl_per_dimension(model, heldout.images))[::-1]
    ax.bar(range(1, len(kl) + 1), kl)
    ax.set_title(f"beta = {beta:g}")
    ax.set_xlabel("latent dimension (sorted)")
np.atleast_1d(axes)[0].set_ylabel("KL to the prior (nats)")
fig.suptitle("How much each latent dimension carries about the image")
plt.show()

# %% [markdown]
# Reconstructions and prior samples side by side: more β, vaguer copies; less β, sharper copies
# but prior samples that look less like digits.

# %%
visuals.reconstruction_figure(heldout.images[:12], {f"beta = {b:g}": m for b, m in models.items()})

# %%
for beta, model in models.items():
    display(visuals.prior_samples_figure(model, n=32, seed=SEED, title=f"Prior samples, beta = {beta:g}"))

# %% [markdown]
# **Exercise:** set `BETAS = [0.05, 10.0]` in the parameters cell and rerun. At which β does the
# decoder stop caring about the input (look at the number of dimensions in use)? Then set
# `LATENT_DIM = 2`: a 2-D VAE's latent can be drawn directly; how does its map differ from the plain
# autoencoder's in the last lab?
#
# ## What to take away
#
# - A VAE encodes each image as a distribution and pulls all of them towards a fixed prior with the
#   KL term; that is why random draws from the prior decode into plausible images.
# - Reconstruction and KL pull in opposite directions; β sets the exchange rate between them.
# - Smoothness costs sharpness: VAE samples are blurry because the decoder is trained to be right on
#   average over a cloud of codes.
