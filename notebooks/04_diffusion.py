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
# # 4. Diffusion models: learning to undo noise
#
# A diffusion model gets its images by reversing a process that is easy to describe:
#
# - **Forward process (fixed, nothing to learn).** Take a real image *x₀* and add a little Gaussian
#   noise, then a little more, for *T* = 1000 steps, until nothing of the image is left. Because sums
#   of Gaussians are Gaussian, we can jump straight to any step *t*:
#   *x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε*, with *ε ~ N(0, I)* and ᾱ_t falling from 1 to almost 0.
# - **Reverse process (learnt).** A network (here a small U-Net) is shown *x_t* and *t* and trained
#   to predict what was added, a plain regression loss. Knowing that, it can take a noisy image one
#   step back towards a clean one.
#
# To generate, start from pure noise *x_T* and apply the learnt step again and again: the **reverse
# chain**. With a prompt and **classifier-free guidance** we can push the chain towards what was
# asked for.
#
# This is the principle behind Stable Diffusion and its relatives; ours draws 16 px digits on a
# laptop CPU.

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
STEPS = 750              # training steps of the class-conditional diffusion model
SAMPLE_STEPS = 50        # DDIM steps of the reverse chain when sampling
GUIDANCES = [1.0, 3.0, 6.0]  # classifier-free guidance scales to compare
N_PER_DIGIT = 8          # samples per digit in the guidance grids
JUDGE_SAMPLES = 200      # samples per guidance scale to measure prompt adherence
SEED = 0
WORK_DIR = "lab-work/04_diffusion"  # where trained models are written

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from synthscope.generators import visuals
from synthscope.generators.data import load_data
from synthscope.generators.quality import prompt_adherence, train_feature_classifier
from synthscope.generators.workflow import new_generator, train_run
from synthscope.notebook import start_notebook

WORK = start_notebook(seed=SEED, work_dir=WORK_DIR)

digits = load_data("digits", size=16, seed=SEED)
train, heldout = digits.split(seed=SEED)  # the same split training uses

# %% [markdown]
# ## The forward process: destroying an image, step by step
#
# The forward process needs no training, so an untrained model can already show it. Each row is a
# digit; each column a later step *t*. Note how long the digit stays readable and how quickly it then
# dissolves: the noise schedule (here the cosine schedule) decides how the 1000 steps are spent.

# %%
untrained = new_generator("diffusion", digits, conditional=True)
visuals.forward_noising_figure(untrained, heldout.images[:4], timesteps=(0, 100, 250, 400, 550, 700, 850, 999),
                               seed=SEED)

# %%
alpha_bar = untrained.scheduler.alphas_cumprod.numpy()
fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
ax.plot(alpha_bar ** 0.5, label="√ᾱ_t: how much of the image is left")
ax.plot((1 - alpha_bar) ** 0.5, label="√(1 − ᾱ_t): how much noise is added")
ax.set_xlabel("step t")
ax.set_ylabel("weight in x_t")
ax.legend()
ax.set_title("The noise schedule")
plt.show()

# %% [markdown]
# ## Training: a denoiser for every noise level
#
# Each training step takes a batch of digits, picks a random step *t* for each, noises them with
# the formula above and asks the U-Net to predict the target (this model predicts *v*, a mix of the
# noise and the image that is easier to learn at high noise; the classic choice is the noise ε
# itself). The loss is the mean squared error. Because *t* is random, one network learns to denoise
# at every level.
#
# The model is **class-conditional**: it also gets the digit's label, except in 15 % of the steps,
# where the label is dropped. Those steps teach the *same* network to denoise without a label,
# which is what guidance needs below.

# %%
run = train_run("diffusion", "digits", WORK / "diffusion", conditional=True, steps=STEPS, seed=SEED,
                force=True, evaluate=False)
model = run.model
print(f"{STEPS} steps in {run.seconds:.0f} s")
visuals.loss_curve_figure(run.history, title="Diffusion training loss (mean squared error of the prediction)")

# %% [markdown]
# The loss falls fast and then flattens, while the samples keep improving for much longer: most
# of what is left is the irreducible error at high noise, where nobody can tell what the image was.

# %% [markdown]
# ## The reverse chain: from noise to a digit
#
# Sampling starts from pure Gaussian noise and runs the denoiser backwards. We use **DDIM**, a
# deterministic sampler that skips through the 1000 training steps in `SAMPLE_STEPS` larger ones.
# Each row is one sample; the columns show intermediate states. The coarse shape is decided in the
# first, noisiest steps; the last steps only sharpen edges.

# %%
visuals.reverse_strip_figure(model, n=4, prompt=[f"a photo of the digit {d}" for d in (0, 3, 7, 9)],
                             seed=SEED, columns=8, steps=SAMPLE_STEPS)

# %% [markdown]
# **Exercise:** compare `steps=10` with `steps=SAMPLE_STEPS` in the cell above, and then
# `sampler="ddpm", steps=1000` (the original sampler, which adds fresh noise at every step). Which
# sampler gives the better digits for the time it takes?

# %% [markdown]
# ## Classifier-free guidance
#
# At each step the network makes two predictions, one with the prompt and one without, and
# guidance moves further in the direction of their difference:
# *out = out_unconditional + g · (out_conditional − out_unconditional)*.
# With *g* = 1 that is just the conditional model; with *g* > 1 the sample is pushed towards
# whatever makes the prompt *more* likely, at the price of variety (and, for large *g*, of
# realism). synthscope applies guidance only below 70 % of the noise schedule and rescales the
# result, so that a small model is not pushed off the data.
#
# First, no prompt at all: the model draws whatever digit its noise leads to.

# %%
visuals.prior_samples_figure(model, n=40, seed=SEED, nrow=10, steps=SAMPLE_STEPS,
                             title="No prompt: unconditional samples")

# %%
prompts = [f"a photo of the digit {d}" for d in range(10) for _ in range(N_PER_DIGIT)]
for g in GUIDANCES:
    samples = model.sample(len(prompts), prompt=prompts, seed=SEED, guidance=g, steps=SAMPLE_STEPS)
    display(visuals.image_grid(samples, nrow=N_PER_DIGIT, row_labels=[f"digit {d}" for d in range(10)],
                               title=f"Guidance g = {g:g}"))

# %% [markdown]
# ## Measuring prompt adherence
#
# Does the model draw the digit it is asked for? Looking is not measuring. We train a small
# classifier on the real training digits (the *judge*) and let it read each sample. The judge is
# itself imperfect: its accuracy on held-out real digits is the ceiling of what we can measure.
# Intervals are Wilson 95 % intervals: with a few hundred samples, differences of a few points are
# noise.

# %%
judge = train_feature_classifier(train, seed=SEED)
rows = []
balanced = model.vocabulary.balanced_prompts(JUDGE_SAMPLES, seed=SEED)
for g in GUIDANCES:
    samples = model.sample(len(balanced), prompt=balanced, seed=SEED + 1, guidance=g, steps=SAMPLE_STEPS)
    result = prompt_adherence(judge, samples, [model.vocabulary.parse(p) for p in balanced])
    pooled = result.overall(["requested"], keep=["judge_accuracy"]).by_group.iloc[0]
    rows.append({"guidance": g, "adherence": pooled["adherence"], "low": pooled["adherence_ci_low"],
                 "high": pooled["adherence_ci_high"], "judge accuracy": pooled["judge_accuracy"]})
adherence = pd.DataFrame(rows)
adherence

# %%
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.errorbar(adherence["guidance"], adherence["adherence"],
            yerr=[adherence["adherence"] - adherence["low"], adherence["high"] - adherence["adherence"]],
            marker="o", capsize=4, label="samples showing the requested digit")
ax.axhline(adherence["judge accuracy"].iloc[0], ls="--", color="grey", label="judge's accuracy on real digits")
ax.set_xlabel("guidance scale g")
ax.set_ylabel("share (95 % interval)")
ax.set_ylim(0, 1.05)
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# **Exercise:** add `0.0` and `10.0` to `GUIDANCES` and rerun the last three cells. Where does more
# guidance stop helping? Look at the grids as well as the numbers: what does strong guidance do to
# the *variety* of the 7s?
#
# ## What to take away
#
# - The forward process only adds noise; all the learning is in a denoiser trained at every noise
#   level with a simple regression loss.
# - Generation runs that denoiser backwards from pure noise; the first steps decide the layout.
# - Classifier-free guidance trades variety for adherence to the prompt, and adherence has to be
#   measured, with an honest judge and intervals, not eyeballed.
