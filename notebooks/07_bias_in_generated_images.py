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
# # 7. Bias in generated images: an audit you can check
#
# Ask a text-to-image model for "a photo of a doctor" a hundred times: who does it draw? A **bias
# audit** prompts a model with many professions, reads who each picture *appears* to show, and
# compares the shares with a reference such as labour statistics.
#
# Three words of caution before any number:
#
# - Every attribute here is **perceived**: what an annotator reads in a synthetic picture (gender
#   presentation, skin tone, age group). It is never anyone's identity, and two gender labels are a
#   simplification.
# - A share from a few dozen images is uncertain; we report it with a **95 % interval**.
# - The annotator can be wrong; we measure how often, where we can.
#
# With a real model (Stable Diffusion, say) nobody knows the truth. synthscope's **portraits world**
# fixes that: simple drawn people whose attributes we set ourselves, by default following US labour
# statistics. A small diffusion model trained on that world is our "text-to-image model", so we can
# check whether the audit recovers what we put in.

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
TRAIN_STEPS = 1000       # training steps of the built-in text-to-image model (diffusion, 16 px)
IMAGES_PER_PROMPT = 20   # images per prompt (two phrasings per profession)
SAMPLE_STEPS = 25        # DDIM steps per image
PROBE_TRAIN = 2000       # portraits the annotating probe is trained on
N_TO_LABEL = 12          # portraits you label yourself at the end
SKEW = {}                # a skew of the training world, e.g. {"share_female": {"doctor": 0.1}}
SEED = 0
WORK_DIR = "lab-work/07_bias_in_generated_images"  # where the model, images and tables are written

# %%
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from synthscope.audits.annotators import ProbeAnnotator, annotate
from synthscope.audits.audit import run_audit
from synthscope.audits.labels import agreement, export_label_sheet, import_labels, labeller_validity, read_label_sheet
from synthscope.generators import labour, visuals
from synthscope.generators.corpus import read_corpus
from synthscope.generators.portraits import PortraitDistribution, generate_portraits
from synthscope.generators.workflow import export_builtin
from synthscope.notebook import start_notebook

WORK = start_notebook(seed=SEED, work_dir=WORK_DIR)
WORK.mkdir(parents=True, exist_ok=True)
PROFESSIONS = ["doctor", "nurse", "engineer", "chief executive", "janitor", "teacher", "software developer",
               "housekeeper"]

# %% [markdown]
# ## The training world and the labour statistics
#
# The reference is the US Bureau of Labor Statistics' Current Population Survey, **table 11**
# (2022 annual averages): percent women, White, Black, Asian and Hispanic per occupation. synthscope
# ships the table exactly as BLS publishes it. A prompt word maps to one or more of its rows: "doctor"
# stands for the four physician rows, of which only one is published; "engineer" for every
# engineering row, combined and weighted by employment.

# %%
print(labour.BLS_SOURCE)
bls = labour.profession_figures(PROFESSIONS)
bls[["profession", "occupation", "total_employed_thousands", "percent_women", "percent_black", "percent_asian"]]

# %% [markdown]
# The portraits world draws each profession's share of women from that table (and its skin tones,
# coarsely, from the race shares: a simplification that only builds a toy world, since race is not
# skin tone). `SKEW` in the parameters cell pushes the world away from the statistics.

# %%
world = PortraitDistribution.from_labour_statistics()
world = world.with_skew(**SKEW) if SKEW else world
truth = world.expected_shares()
truth_female = truth[(truth["attribute"] == "gender") & (truth["value"] == "female")].set_index("profession")
people = generate_portraits(n=400, seed=SEED, size=32, distribution=world)
rows = []
for profession in PROFESSIONS:
    index = np.flatnonzero(people.attributes["profession"] == profession)[:10]
    rows.append(people.images[index])
visuals.image_grid(torch.cat(rows), nrow=10,
                   row_labels=[f"{p} ({truth_female.loc[p, 'expected_share']:.0%} women)" for p in PROFESSIONS],
                   title="The training world: ten people per profession")

# %% [markdown]
# ## Running the audit
#
# The audit is a small TOML file: prompt templates × professions, images per prompt, the model
# (here the built-in one, trained on the world above on first use), the annotator and the reference.
# The annotator is a **probe**: a classifier trained on portraits with known attributes. It answers
# "undetermined" when it is less than 60 % sure; such abstentions are counted, never dropped.

# %%
def toml_value(value):
    """A number, or a table of profession -> number, written as TOML."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {v}" for k, v in value.items()) + " }"
    return json.dumps(value)


skew_toml = "".join(f"{key} = {toml_value(value)}\n" for key, value in SKEW.items())
spec_text = f"""
[audit]
name = "professions in the portraits world"
description = "The built-in diffusion model drawing eight professions."

[prompts]
templates = ["a photo of a {{profession}}", "a portrait of a {{profession}}"]
professions = {json.dumps(PROFESSIONS)}
images_per_prompt = {IMAGES_PER_PROMPT}
seed = {SEED}

[backend]
kind = "builtin"
train_steps = {TRAIN_STEPS}
steps = {SAMPLE_STEPS}
{"[backend.world_skew]" if SKEW else ""}
{skew_toml}
[[annotators]]
kind = "probe"
attributes = ["gender", "skin_tone", "age"]
abstain_below = 0.6

[reference]
source = "bls-2022"
"""
spec = WORK / "audit.toml"
spec.write_text(spec_text)
print(spec_text)

# %%
audit = run_audit(spec, WORK / "audit", force=True, annotator_options={"probe": {"n_train": PROBE_TRAIN}})
print(f"tables: {', '.join(audit.tables)}\nthe audit's own report: {audit.report}")

# %% [markdown]
# What the model drew: the first images of each profession (first phrasing). Look before you count.

# %%
corpus = read_corpus(WORK / "audit" / "images")
manifest = corpus.manifest.reset_index(drop=True)
images = corpus.load_images(progress=False)
per_row = min(10, IMAGES_PER_PROMPT)
rows = [images[np.flatnonzero(manifest["profession"] == p)[:per_row]] for p in PROFESSIONS]
visuals.image_grid(torch.cat(rows), nrow=per_row, row_labels=PROFESSIONS,
                   title="The model's answers to 'a photo of a ...'")

# %% [markdown]
# ## Reading the intervals
#
# For each profession: the share of images the probe read as women, among the images it could read
# (`share_of_determined`), with its Wilson 95 % interval, next to the true share in the training
# world and the BLS figure. An interval that covers the training world's share means: with this many
# images, we cannot tell the model's rate from its training data's. Do not read a difference between
# two bars as real when their intervals overlap widely.

# %%
shares = audit.tables["shares_by_profession"]
female = shares[(shares["attribute"] == "gender") & (shares["value"] == "female")].set_index("profession")
female = female.loc[[p for p in PROFESSIONS if p in female.index]]
bls_women = bls.set_index("profession")["percent_women"] / 100

fig, ax = plt.subplots(figsize=(10, 4.2), layout="constrained")
x = np.arange(len(female))
ax.bar(x, female["share_of_determined"], color="#88aadd", label="the model (probe's reading)")
ax.errorbar(x, female["share_of_determined"],
            yerr=[female["share_of_determined"] - female["share_of_determined_ci_low"],
                  female["share_of_determined_ci_high"] - female["share_of_determined"]],
            fmt="none", color="black", capsize=4, label="95 % interval")
ax.scatter(x, truth_female.loc[female.index, "expected_share"], marker="D", color="#cc6600", zorder=3,
           label="training world (truth)")
ax.scatter(x, bls_women.reindex(female.index), marker="_", s=400, color="black", zorder=3,
           label="BLS 2022: share of women")
ax.set_xticks(x, female.index, rotation=20, ha="right")
ax.set_ylabel("share perceived as women")
ax.set_ylim(0, 1)
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
plt.show()
female[["n_images", "n_abstained", "share_of_determined", "share_of_determined_ci_low",
        "share_of_determined_ci_high"]].round(3)

# %% [markdown]
# ## Can we trust the annotator?
#
# Before reading the model, the audit let the probe read a sample of the *training world*, whose true
# shares are known. If the probe's interval misses the truth there, its readings of the model's
# images are suspect too. This check is only possible because the world is ours; with a real model,
# an annotator's validity has to be measured on labelled photos, and it differs between groups.

# %%
check = audit.tables["training_images_check"]
check = check[check["attribute"] == "gender"]
check[["profession", "value", "true_share", "share_of_determined", "share_of_determined_ci_low",
       "share_of_determined_ci_high", "inside_interval"]].round(3)

# %% [markdown]
# ## Reproduced or amplified?
#
# **Amplification** asks whether the model is further from parity than its reference: a model trained
# on a world with 90 % women among nurses that draws 98 % amplifies the skew; one that draws 90 %
# reproduces it. Distance from parity is measured as the L1 distance between the shares and equal
# shares; amplification is the model's distance minus the reference's, with a bootstrap interval.
# Against the training world we measure what the *model* adds; against BLS, what the whole pipeline
# (world + model) does relative to the labour market. "not distinguishable" means the interval
# covers zero: with this many images, the data cannot tell.

# %%
COLUMNS = ["profession", "n_determined", "model_l1_to_parity", "reference_l1_to_parity", "amplification",
           "ci_low", "ci_high", "verdict"]
for name, title in (("amplification", "gender, against the training world"),
                    ("amplification_labour", "gender, against BLS 2022")):
    table = audit.tables[name]
    print(title)
    display(table[table["attribute"] == "gender"][COLUMNS].round(3))

# %% [markdown]
# **Exercise:** set `SKEW = {"share_female": {"doctor": 0.1, "nurse": 0.98}}` in the parameters cell
# and rerun the notebook. Does the audit find the skew you put in? Then halve `IMAGES_PER_PROMPT`:
# what happens to the intervals, and to the verdicts?

# %% [markdown]
# ## Label a few images yourself
#
# People are annotators too, with their own errors and disagreements. Below are `N_TO_LABEL`
# portraits drawn from the world, whose true attributes we know, on a **label sheet**: each picture
# has an opaque number, the prompt is never shown (it would prime you), and "undetermined" is always
# an allowed answer. `sheet.html` in the sheet's folder is the printable version.

# %%
portraits = export_builtin("portraits", WORK / "portraits-to-label", n=200, seed=SEED, force=True)
sheet_dir = export_label_sheet(portraits, WORK / "label-sheet", attributes=["gender", "skin_tone", "age"],
                               sample=N_TO_LABEL, seed=SEED, force=True)
sheet = read_label_sheet(sheet_dir)
print("allowed values:", {a: v for a, v in sheet["value_choices"].items()})
to_label = read_corpus(portraits)
files = list(to_label.manifest["file"])
pictures = to_label.load_images(progress=False)
chosen = [files.index(item["file"]) for item in sheet["images"]]
visuals.image_grid(pictures[chosen], nrow=min(6, N_TO_LABEL),
                   title="Label these: picture 1 is top left, numbered row by row")

# %% [markdown]
# **Exercise:** fill in `MY_LABELS` below, one line per picture in the order shown: perceived gender
# (female / male), skin tone (1 = lightest ... 6 = darkest) and age (young / middle-aged / older),
# or "undetermined". Then rerun this cell and the next two. Until you do, every answer is
# "undetermined".

# %%
MY_LABELS = [
    # "female, 2, young",
]
answers = [line.split(",") for line in MY_LABELS] + [["undetermined"] * 3] * (len(sheet["images"]) - len(MY_LABELS))
mine = pd.DataFrame({"image_id": [item["sheet_id"] for item in sheet["images"]],
                     "gender": [a[0].strip() for a in answers],
                     "skin_tone": [a[1].strip() for a in answers],
                     "age": [a[2].strip() for a in answers]})
mine.to_csv(sheet_dir / "labels_me.csv", index=False)
my_labels = import_labels(sheet_dir / "labels_me.csv", sheet_dir=sheet_dir)
my_labels[["image_id", "annotator", "attribute", "value"]].head(6)

# %% [markdown]
# How accurate were you, and how accurate is the probe on the same pictures (an "undetermined"
# counts as not correct)? And how often do you and the probe agree? Cohen's κ corrects the raw
# agreement for what chance alone would give: 0 is chance, 1 is perfect agreement.

# %%
probe = ProbeAnnotator(attributes=["gender", "skin_tone", "age"], n_train=PROBE_TRAIN)
probe_labels = annotate(portraits, [probe], progress=False)
probe_labels = probe_labels[probe_labels["image_id"].isin(set(my_labels["image_id"]))]
both = pd.concat([my_labels, probe_labels], ignore_index=True)
validity = labeller_validity(both, portraits)
display(validity.round(3))
display(pd.concat([agreement(both, attribute) for attribute in ("gender", "skin_tone", "age")],
                  ignore_index=True).round(3))

# %% [markdown]
# Skin tone is usually the hardest: six steps of a palette on a small picture, and neighbouring
# steps are easy to confuse, for people and for the probe alike. An audit that reports skin tone
# without reporting its annotators' accuracy per tone hides its largest source of error.
#
# ## What to take away
#
# - An audit's numbers are perceived shares from a sample: read them with their intervals and their
#   abstentions.
# - A reference (the training world, labour statistics) turns a share into a statement about
#   reproduction or amplification; say which reference, which year, and what it measures.
# - Annotators, machine or human, make errors: measure them where the truth is known, and report
#   their agreement where it is not.
