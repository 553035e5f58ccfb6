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
# # 3. Generative adversarial networks: a forger and a critic
#
# A **GAN** trains two networks against each other:
#
# - the **generator** *G* turns random noise *z* into an image; it never sees a real image;
# - the **discriminator** *D* looks at an image and says how likely it is to be real.
#
# Each training step first shows *D* a batch of real digits and a batch of *G*'s fakes and teaches it
# to tell them apart (binary cross-entropy: real → 1, fake → 0). Then *G* is updated to make *D* say
# "real" about its fakes. The only thing *G* learns from is the gradient of *D*'s opinion: *D* is a
# learnt loss function that keeps getting stricter as *G* gets better.
#
# If both were perfect, *D* could do no better than a coin flip: *D(x) = 0.5* everywhere. That is the
# equilibrium the game is aiming for, and we rarely reach it exactly.

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
STEPS = 2000             # training steps of the unconditional GAN
STEPS_CONDITIONAL = 1500 # training steps of the class-conditional GAN
LEARNING_RATE = 2e-4     # Adam's learning rate, for both networks (DCGAN's choice)
SEED = 0
WORK_DIR = "lab-work/03_gans"  # where trained models are written

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np

from synthscope.generators import visuals
from synthscope.generators.data import load_data
from synthscope.generators.workflow import train_run
from synthscope.notebook import start_notebook

WORK = start_notebook(seed=SEED, work_dir=WORK_DIR)

digits = load_data("digits", size=16, seed=SEED)
train, heldout = digits.split(seed=SEED)  # the same split training uses

# %% [markdown]
# ## Training a DCGAN
#
# Both networks are small convolutional nets (the DCGAN recipe: strided convolutions, Adam with
# β₁ = 0.5). During training synthscope keeps a few *snapshots*: samples drawn from the same fixed
# noise vectors, so you can watch one noise vector's image evolve.

# %%
gan_run = train_run("gan", "digits", WORK / "gan", steps=STEPS, seed=SEED, force=True, evaluate=False,
                    snapshots=6, options={"lr": LEARNING_RATE})
gan = gan_run.model
print(f"{STEPS} steps in {gan_run.seconds:.0f} s")
visuals.training_progress_figure(gan_run.run_dir)

# %% [markdown]
# ## Training dynamics: the losses do not go to zero
#
# In most of machine learning a falling loss means progress. Not here: each network's loss depends on
# the other network, which keeps changing. The dashed lines mark the equilibrium values: when *D*
# outputs 0.5 for everything, its loss (real part + fake part) is 2 ln 2 ≈ 1.39 and *G*'s loss is
# ln 2 ≈ 0.69.
#
# - *D*'s loss near 0 and *G*'s rising: the discriminator wins outright and *G* gets almost no useful
#   gradient (training stalls).
# - Both losses swinging wildly: the two networks chase each other in circles.
# - Both hovering near the dashed lines while the snapshots improve: a healthy game.

# %%
history = gan_run.history
window = max(1, len(history) // 40)
fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
for column, name in (("loss_d", "discriminator"), ("loss_g", "generator")):
    ax.plot(history["step"], history[column], alpha=0.25)
    ax.plot(history["step"], history[column].rolling(window, min_periods=1).mean(), label=name,
            color=ax.lines[-1].get_color())
ax.axhline(2 * math.log(2), ls="--", color="grey", lw=1)
ax.axhline(math.log(2), ls=":", color="grey", lw=1)
ax.text(history["step"].iloc[-1], 2 * math.log(2), " D at equilibrium", va="bottom", ha="right")
ax.text(history["step"].iloc[-1], math.log(2), " G at equilibrium", va="bottom", ha="right")
ax.set_xlabel("training step")
ax.set_ylabel("loss (binary cross-entropy)")
ax.set_title("The generator and the discriminator, step by step")
ax.legend()
plt.show()

# %% [markdown]
# ## What does the discriminator believe?
#
# After training we show *D* held-out real digits (which it never saw) and fresh fakes. If *G* had won
# completely, the two histograms would lie on top of each other at 0.5. A discriminator that still
# separates them well is a ready-made *detector* of this generator's images: we come back to that in
# the detection lab.

# %%
fakes = gan.sample(len(heldout), seed=SEED)
p_real_real = gan.discriminator_score(heldout.images).numpy()
p_real_fake = gan.discriminator_score(fakes).numpy()
fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
bins = np.linspace(0, 1, 31)
ax.hist(p_real_real, bins=bins, alpha=0.6, label="held-out real digits")
ax.hist(p_real_fake, bins=bins, alpha=0.6, label="generated digits")
ax.axvline(0.5, color="grey", ls="--", lw=1)
ax.set_xlabel("D(x): the discriminator's probability that x is real")
ax.set_ylabel("images")
ax.legend()
plt.show()
print(f"mean D(x): real {p_real_real.mean():.2f}, fake {p_real_fake.mean():.2f}")

# %% [markdown]
# Samples from fresh noise. GAN samples are sharper than a VAE's: *G* is not punished for missing
# detail on average, only for being caught. Look for **mode collapse**: does every digit class appear,
# or has *G* found a few shapes that fool *D* and keeps drawing those?

# %%
visuals.prior_samples_figure(gan, n=64, seed=SEED + 1)

# %% [markdown]
# **Exercise:** set `LEARNING_RATE = 2e-3` (ten times larger) and rerun. What happens to the loss
# curves and to the snapshots? Then try `STEPS = 300`: at what point do the samples first look like
# digits?

# %% [markdown]
# ## A conditional GAN: asking for a digit
#
# So far *G* draws whatever digit its noise leads to. A **conditional GAN** also gives both networks
# the label: *G* gets noise *and* "draw a 7", and *D* judges whether the image is a real *7* (here with
# a projection discriminator: the label's embedding is compared with the image's features). Now *G*
# must produce the digit that was asked for, because a perfect 3 labelled "7" is easy to catch.
# synthscope's conditional generators understand prompts such as `"a photo of the digit 7"`.

# %%
cgan_run = train_run("gan", "digits", WORK / "gan-conditional", conditional=True, steps=STEPS_CONDITIONAL,
                     seed=SEED, force=True, evaluate=False, options={"lr": LEARNING_RATE})
cgan = cgan_run.model
per_digit = 10
prompts = [f"a photo of the digit {d}" for d in range(10) for _ in range(per_digit)]
samples = cgan.sample(len(prompts), prompt=prompts, seed=SEED)
visuals.image_grid(samples, nrow=per_digit, row_labels=[f"digit {d}" for d in range(10)],
                   title="Conditional GAN: one row per requested digit")

# %% [markdown]
# **Exercise:** the same noise with different labels: draw `cgan.sample(10, prompt=[f"{d}" for d in
# range(10)], seed=3)` twice with different seeds. Which properties (slant, thickness) follow the
# noise and which follow the label?
#
# ## What to take away
#
# - A GAN's generator learns only from a discriminator's judgement, never from the pixels of real
#   images directly.
# - GAN losses describe a game, not progress: look at samples, not at whether the loss falls.
# - Conditioning lets the user ask for a class; the discriminator checks that the answer matches the
#   question.
