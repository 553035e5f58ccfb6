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
# # 5. Image-to-image translation: pix2pix and CycleGAN
#
# The generators so far start from noise (or from a prompt). An **image-to-image** model starts from
# a picture and changes one thing about it: a sketch into a photo, summer into winter, a young face
# into an older one. Two classic recipes:
#
# - **pix2pix** (Isola et al. 2017) is trained with **pairs**: the same scene in both domains. Its
#   generator is a U-Net (an encoder-decoder whose skip connections carry the input's layout straight
#   to the output), and its loss is an L1 distance to the true target plus a GAN loss from a
#   *PatchGAN* discriminator, which judges small patches of the (input, output) pair so that the
#   output is sharp where L1 alone would blur.
# - **CycleGAN** (Zhu et al. 2017) needs **no pairs**: only a pile of pictures from each domain. It
#   trains two generators, A → B and B → A, each with its own discriminator, and adds a
#   **cycle-consistency** loss: translating A → B → A must give back the input. Without it, the
#   generator could draw any convincing older person, not *this* person older.
#
# Real data sets rarely let you check a translation against the truth: nobody has a photo of you at
# 70. synthscope's portraits world can draw the *same* person at two ages (only hair colour, baldness
# and wrinkles change), so here we can.

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
STEPS_PIX2PIX = 1200   # training steps of pix2pix
STEPS_CYCLEGAN = 500   # training steps of CycleGAN (each step trains two generators and two critics)
PEOPLE = 600           # people drawn for training (80 %) and held-out measurement (20 %)
SHOWN = 8              # held-out people shown in the grids
SEED = 0
WORK_DIR = "lab-work/05_image_to_image"  # where trained models are written

# %%
# %matplotlib inline
from synthscope.generators import visuals
from synthscope.generators.pairs import portrait_pairs
from synthscope.generators.translate_run import train_translation
from synthscope.generators.translation_eval import l1
from synthscope.notebook import start_notebook

WORK = start_notebook(seed=SEED, work_dir=WORK_DIR)

# %% [markdown]
# ## The same people, young and older
#
# Each column is one person, drawn twice. Everything but age comes from the same random draws, so the
# two pictures differ only where ageing is drawn. Which grey, and whether a man goes bald, are drawn
# at random: ageing has more than one right answer.

# %%
young, older = portrait_pairs(SHOWN, "age:young->older", seed=SEED + 999, size=32)
visuals.image_rows_figure({"young": young.images, "older": older.images},
                          title="Held-out people (never used in training)")

# %% [markdown]
# ## pix2pix: learning from pairs
#
# `train_translation` draws `PEOPLE` people, trains on 80 % of the pairs and measures the model on
# the other 20 %: the per-pixel L1 distance of each output to the true older picture, against the
# **identity baseline** (the L1 of the unchanged input: what a model that does nothing scores).

# %%
def train(kind, steps):
    """Train one translation model to age portraits, and print what its held-out people showed."""
    run = train_translation(kind, "portraits", WORK / kind, translate="age:young->older", steps=steps, n=PEOPLE,
                            seed=SEED, force=True)
    print(f"{kind}: {steps} steps in {run.seconds:.0f} s")
    print("\n".join(run.evaluation.summary_lines()))
    return run


pix2pix_run = train("pix2pix", STEPS_PIX2PIX)
pix2pix = pix2pix_run.model

# %%
aged_by_pix2pix = pix2pix.translate(young.images)
visuals.image_rows_figure({"input": young.images, "pix2pix": aged_by_pix2pix, "truth": older.images},
                          title="pix2pix ageing held-out people")

# %% [markdown]
# Where did the model look? The difference between output and input shows what pix2pix chose to
# change: it should be hair, brows and a few lines on the face, and nothing else.

# %%
changed = (aged_by_pix2pix - young.images).abs().amax(dim=1, keepdim=True)
visuals.image_rows_figure({"input": young.images, "what changed": (changed / changed.max()).expand(-1, 3, -1, -1)},
                          title="Where pix2pix changed the picture (brighter: more)")

# %% [markdown]
# ## CycleGAN: no pairs at all
#
# CycleGAN gets young people and *other* older people. It never learns which older face belongs to
# which young one, so it cannot copy the true picture; it must learn what "older" looks like and keep
# the person through the cycle loss. Its evaluation uses new people drawn in pairs, so that each has a
# true older picture to compare with.

# %%
cyclegan_run = train("cyclegan", STEPS_CYCLEGAN)
cyclegan = cyclegan_run.model

# %%
aged = cyclegan.translate(young.images)
visuals.image_rows_figure({"input": young.images, "CycleGAN": aged, "back again": cyclegan.translate_back(aged),
                           "truth": older.images}, title="CycleGAN: ageing, and the round trip A -> B -> A")

# %% [markdown]
# CycleGAN's second generator is a **de-ageing** model for free: give it the true older pictures.

# %%
visuals.image_rows_figure({"older (true)": older.images, "de-aged": cyclegan.translate_back(older.images),
                           "young (true)": young.images}, title="CycleGAN de-ageing held-out people")

# %% [markdown]
# ## Which is closer to the truth, and did it age at all?
#
# L1 to one true picture rewards a careful average of all the ways ageing could go, so it favours
# pix2pix, which saw the pairs. The quality judge (a small classifier trained on real portraits)
# answers a second question: does the output *look* older? Both are measured on held-out people,
# with 95 % Wilson intervals on the shares.

# %%
for name, run in (("pix2pix", pix2pix_run), ("CycleGAN", cyclegan_run)):
    evaluation = run.evaluation
    reached = evaluation.reached.by_group.set_index("images")
    print(f"{name:9s} L1 {evaluation.l1:.4f} (identity {evaluation.l1_identity:.4f}); read as older: "
          f"outputs {reached.loc['outputs', 'reached']:.0%} "
          f"[{reached.loc['outputs', 'reached_ci_low']:.0%}, {reached.loc['outputs', 'reached_ci_high']:.0%}], "
          f"inputs {reached.loc['inputs', 'reached']:.0%}, true older {reached.loc['true targets', 'reached']:.0%}")
print(f"on the pictures above: pix2pix {l1(aged_by_pix2pix, older.images):.4f}, "
      f"CycleGAN {l1(aged, older.images):.4f}, unchanged {l1(young.images, older.images):.4f}")

# %% [markdown]
# ## Does ageing keep who the person is?
#
# An image-to-image model can change more than it was asked to. The judge reads each person's
# perceived profession, gender presentation and skin tone before and after translation; the table
# gives the share read the same. `truth_preserved` is the same share for the true older pictures,
# which keep every attribute by construction: the judge's own noise. A model that lightens skin or
# changes gender presentation while ageing is a **bias finding**, and this is how one shows up.
# (All attributes here are *perceived* by the judge, not facts about a person.)

# %%
for name, run in (("pix2pix", pix2pix_run), ("CycleGAN", cyclegan_run)):
    table = run.evaluation.preservation.by_group
    print(name)
    print(table[["attribute", "n", "k", "preserved", "preserved_ci_low", "preserved_ci_high",
                 "truth_preserved", "judge_accuracy"]].round(3).to_string(index=False))
    moved = run.evaluation.changed()
    print("changed:", "; ".join(f"{r.attribute} {r.input_value} -> {r.output_value} x{r.count}"
                                 for r in moved.itertuples()) or "nothing", "\n")

# %% [markdown]
# **Exercise:** train pix2pix with `options={"lambda_l1": 0.0}` (only the GAN loss) and then with
# `options={"residual": False}` (the paper's plain U-Net, which must redraw the whole picture). How do
# L1 and the share read as older change? Which outputs look sharper, and which are closer to the truth?
#
# **Exercise:** de-ageing with pix2pix: train with `translate="age:older->young"`. Is it easier or
# harder than ageing? (Hint: which direction has to invent hair colour?)
#
# ## What to take away
#
# - pix2pix needs pairs and gets close to the truth; CycleGAN needs none and learns the look of the
#   other domain, kept on a leash by the cycle loss.
# - A translation leaves most of its input alone: look at *what changed*, not only at the output.
# - Measure what else a translation changed. "Ageing" that also shifts perceived skin tone or gender
#   presentation is a bias, even when the pictures look good.
