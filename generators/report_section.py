"""The generators' section of an HTML report, built from evaluated runs (see evaluation.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd
from synthscope.reports import Figure, Metric, Section, Table, Text

from synthscope.stats import wilson_interval

from .evaluation import RunEvaluation

if TYPE_CHECKING:
    from .memorisation import MemorisationCheck

MODEL_TITLES = {"ae": "Autoencoder", "vae": "Variational autoencoder (VAE)", "gan": "GAN (DCGAN)",
                "diffusion": "Diffusion (DDPM/DDIM)"}
VISUAL_TITLES = {
    "samples": ("Samples", "What the model generates from fresh random inputs."),
    "reconstructions": ("Reconstructions", "Top: real images; below: the model's copy after squeezing "
                        "each image through the latent bottleneck."),
    "latent_scatter": ("Latent space", "Each dot is a real image placed by its latent code, coloured by its label."),
    "interpolation": ("Interpolation", "Walking in a straight line between the latent codes of two real images."),
    "training_progress": ("Samples during training", "The same random inputs, decoded at several points of training."),
    "forward_noising": ("Forward process: adding noise", "What the model is trained to undo: an image drowning "
                        "in noise as the timestep t grows."),
    "reverse_strip": ("Reverse process: removing noise", "Sampling: starting from pure noise and denoising step by step."),
    "loss_curve": ("Training loss", "Loss per step (faint) and its moving average."),
}
CAVEATS = [
    "Quality scores use features of a small classifier trained on the real training images, not an "
    "ImageNet network: they are comparable between runs on the same data and sample size only.",
    "Precision, recall and coverage are shares of samples and carry Wilson 95 % intervals; Fréchet "
    "distances are point estimates whose size depends on the number of images compared.",
]


def _share_metric(label: str, share: float | None, n: int, note: str) -> Metric:
    if share is None or n == 0 or (isinstance(share, float) and math.isnan(share)):
        return Metric(label, None, note=note)
    low, high = wilson_interval(round(share * n), n)
    return Metric(label, share, low, high, note=note, fmt=".2f")


def quality_table(evaluations: Sequence[RunEvaluation]) -> pd.DataFrame:
    """One row per run: training cost and the quality scores with their references."""
    rows = []
    for ev in evaluations:
        q = ev.quality
        if q.get("fd") is None:
            continue  # a lecture-only model, not scored
        prdc = q.get("prdc", {})
        rows.append({
            "model": ev.title or MODEL_TITLES.get(ev.kind, ev.name), "steps": q.get("step"), "train seconds": q.get("train_seconds"),
            "FD": q.get("fd"), "FD real vs real": q.get("fd_real_vs_real"), "FD noise": q.get("fd_noise"),
            "precision": prdc.get("precision"), "recall": prdc.get("recall"),
            "coverage": prdc.get("coverage"), "n": q.get("n"),
        })
    return pd.DataFrame(rows)


def run_subsection(ev: RunEvaluation) -> Section:
    """One model: its scores with references, then its lecture visuals."""
    q = ev.quality
    title = ev.title or MODEL_TITLES.get(ev.kind, ev.kind)
    section = Section(id=f"gen-{ev.name}", title=title, intro=ev.description)
    if "fd" in q:
        n = int(q["n"])
        section.add(
            Metric("Fréchet distance", q["fd"], note=f"real vs real {q['fd_real_vs_real']:.1f} · "
                   f"noise {q['fd_noise']:.0f} · lower is better · n = {n}"),
            _share_metric("Precision", q["prdc"].get("precision"), n, "share of samples that look real"),
            _share_metric("Recall", q["prdc"].get("recall"), n, "share of real images the samples cover"),
        )
    if ev.adherence is not None and len(ev.adherence.by_group):
        # The report's tables have always called the interval ci_low/ci_high.
        interval = {"adherence_ci_low": "ci_low", "adherence_ci_high": "ci_high"}
        overall = ev.adherence.overall(["requested"], keep=["judge_accuracy"]).by_group.rename(columns=interval)
        for _, row in overall.iterrows():
            section.add(Metric(f"Prompt adherence ({row['attribute']})", row["adherence"], row["ci_low"],
                               row["ci_high"], fmt=".2f",
                               note=f"n = {int(row['n'])}; judge accuracy {row['judge_accuracy']:.2f}"))
        section.add(Table("Prompt adherence per requested value", ev.adherence.by_group.rename(columns=interval),
                          caption="Share of samples the judge assigns to the prompted value, with Wilson 95 % "
                                  "intervals and the judge's recall for that value on real held-out images.",
                          formats={"adherence": ".2f", "ci_low": ".2f", "ci_high": ".2f"}))
    for stem in VISUAL_TITLES:
        path = ev.visuals.get(stem)
        if path and Path(path).exists():
            fig_title, caption = VISUAL_TITLES[stem]
            section.add(Figure(fig_title, Path(path), caption=caption, name=f"{ev.name}-{stem}"))
    return section


def generator_section(evaluations: Sequence[RunEvaluation], extra: Sequence[Section] = (),
                      intro: str | None = None) -> Section:
    """The report section of the built-in generators: a comparison table, then one part per run."""
    section = Section(
        id="generators", title="Generators",
        intro=intro or "Four families of image generators, trained on the built-in data on a CPU. "
                       "Each is scored against held-out real images, next to two reference points: "
                       "real images against real images (what a perfect generator would score) and "
                       "random noise (what a useless one would score).",
        caveats=list(CAVEATS),
    )
    table = quality_table(evaluations)
    if len(table):
        section.add(Table("Quality of each generator", table, name="generator-quality",
                          formats={"FD": ".1f", "FD real vs real": ".1f", "FD noise": ".0f",
                                   "precision": ".2f", "recall": ".2f", "coverage": ".2f",
                                   "train seconds": ".0f"},
                          caption="FD: Fréchet distance to held-out real images in the judge's feature "
                                  "space (lower is better). Precision/recall/coverage: k-NN manifold "
                                  "estimates (Kynkäänniemi et al. 2019; Naeem et al. 2020)."))
    for ev in evaluations:
        section.subsections.append(run_subsection(ev))
    section.subsections.extend(extra)
    if not evaluations and not extra:
        section.add(Text("No generator was trained in this run.", kind="note"))
    return section


def memorisation_section(checks: dict[str, tuple[str, "MemorisationCheck", Path]]) -> Section:
    """New, or copied? One row per generator: the share of its samples flagged as likely copies of a
    training image, in pixels and in the judge's features, with Wilson intervals; and each one's
    closest pairs. ``checks`` maps a generator's name to (its title, its check, its closest-pairs PNG
    in pixels, as written by ``memorisation.write_check``)."""
    from .memorisation import FEATURES, PIXELS

    rows = []
    for name, (title, check, _) in checks.items():
        row = {"generator": title, "samples": int(check.per_image["sample"].nunique()),
               "training images": check.n_train, "k": check.k}
        for space, label in ((PIXELS, "pixels"), (FEATURES, "features")):
            if space in set(check.per_image["space"]):
                share, low, high = check.flagged_share(space)
                row[f"flagged ({label})"], row[f"{label} ci low"], row[f"{label} ci high"] = share, low, high
        row["median ratio (pixels)"] = float(check.per_image.query("space == @PIXELS")["ratio"].median())
        rows.append(row)
    threshold = next(iter(checks.values()))[1].threshold if checks else 1 / 6
    share_format = {c: ".1%" for row in rows for c in row if c.startswith("flagged") or " ci " in c}
    blocks: list = [
        Text("For every sample, its nearest training image and the ratio of that distance to the mean "
             f"distance to its k nearest (Carlini et al. 2023). A sample below {threshold:.3g} is flagged as a "
             "likely copy: a copy lies far nearer to its original than to that image's neighbours (ratio "
             "near 0), a new image about as near to several (ratio near 1). Checked in pixels and in the "
             "quality judge's features; 95 % Wilson intervals."),
        Table("Samples flagged as likely copies of a training image", pd.DataFrame(rows),
              formats={**share_format, "median ratio (pixels)": ".2f"}, name="memorisation"),
    ]
    for name, (title, check, figure) in checks.items():
        blocks.append(Figure(f"{title}: its samples closest to a training image", figure,
                             name=f"memorisation-{name}",
                             caption="Top: generated; below: the nearest training image."))
    return Section(id="memorisation", title="New, or copied? Memorisation check",
                   intro="Did the generators make new digits, or hand back their training images?",
                   blocks=blocks)


TRANSLATION_VISUALS = {
    "translations": ("Held-out people, translated", "Rows: the input, the model's output, and the true picture "
                     "of the same person at the target age."),
    "backward": ("The way back", "CycleGAN's second generator, given the true older picture: rows input, "
                 "output, and the true younger picture."),
    "round_trip": ("Round trip", "A -> B -> A: the cycle-consistency CycleGAN is trained on."),
    "training_progress": ("During training", "The same training inputs translated at several points of training."),
}


def translation_table(runs: dict[str, tuple[str, dict]]) -> pd.DataFrame:
    """One row per translation model: its distances to the true targets against the unchanged input
    (and CycleGAN's round trip and way back)."""
    return pd.DataFrame([{
        "model": title, "L1 to truth": result["l1_to_target"], "unchanged": result["l1_identity_baseline"],
        "round trip": result.get("round_trip_l1"), "way back": result.get("backward_l1_to_input"),
        "Fréchet": result.get("judge_frechet_to_targets"),
        "Fréchet unchanged": result.get("judge_frechet_identity_baseline")} for title, result in runs.values()])


def perceived_table(runs: dict[str, tuple[str, dict]], target: str) -> pd.DataFrame:
    """What the judge perceives, one row per model and question: the share of outputs read as
    ``target``, then per attribute the share read the same as on the input, each with its Wilson
    interval, beside the same share for the true targets (the inputs' for ``target``: what changing
    nothing scores)."""
    rows = []
    for title, result in runs.values():
        reached = result.get("read_as_target") or {}
        if "outputs" in reached:
            out = reached["outputs"]
            rows.append({"model": title, "question": f"perceived as {target}", "share": out["share"],
                         "ci low": out["ci_low"], "ci high": out["ci_high"], "n": out["n"],
                         "true pictures": reached.get("true targets", {}).get("share"),
                         "unchanged input": reached.get("inputs", {}).get("share")})
        for attribute, kept in (result.get("attribute_preservation") or {}).items():
            rows.append({"model": title, "question": f"same perceived {attribute.replace('_', ' ')}",
                         "share": kept["preserved"], "ci low": kept["ci_low"], "ci high": kept["ci_high"],
                         "n": kept["n"], "true pictures": kept["truth_preserved"], "unchanged input": 1.0})
    return pd.DataFrame(rows)


def translation_section(runs: dict[str, tuple[str, dict, Path]], detectors: Section | None = None,
                        translation: str = "age:young->older") -> Section:
    """Image-to-image translation: each model's numbers on held-out people (from ``translation.json``),
    what it changed besides the translated attribute, its lecture visuals (from its ``visuals/``), and
    ``detectors``, a subsection on telling its outputs from drawn pictures."""
    from .pairs import parse_translation

    results = {name: (title, result) for name, (title, result, _) in runs.items()}
    target = parse_translation(translation).target
    perceived = perceived_table(results, target)
    section = Section(
        id="translation", title=f"Image-to-image translation: {translation}",
        intro="The portraits world can draw the same person young and older. pix2pix learns ageing from such "
              "pairs; CycleGAN only sees young people and older people, never the same person twice, and "
              "learns a second generator back with a cycle-consistency loss. Both are measured on held-out "
              "people against the true older picture.",
        blocks=[
            Text("L1: mean per-pixel distance to the true picture, beside what the unchanged input scores; the "
                 "round trip (A -> B -> A) and CycleGAN's way back (the true older picture made young again) "
                 "in L1 to the true input. Fréchet distances to the true pictures use the quality judge's "
                 "features. The held-out people measured are counted in the next table (n)."),
            Table("How close to the true picture", translation_table(results), name="translation",
                  formats={"L1 to truth": ".4f", "unchanged": ".4f", "round trip": ".4f", "way back": ".4f",
                           "Fréchet": ".1f", "Fréchet unchanged": ".1f"}),
            Text(f"Ageing is partly chance (which grey, whether a man goes bald), so one true picture is one of "
                 f"several right answers. The quality judge answers two other questions: is the output perceived "
                 f"as {target}, and are the person's perceived profession, gender presentation and skin tone "
                 f"the same as on the input? A model that lightens skin or changes gender presentation while "
                 f"ageing is a bias finding. 'true pictures' is the same share for the true {target} pictures "
                 f"(the judge's own noise: the best a model can score); all attributes are as perceived by "
                 f"the judge; 95 % Wilson intervals."),
            Table("What the judge perceives", perceived, name="translation-perceived",
                  formats={"share": ".0%", "ci low": ".0%", "ci high": ".0%", "true pictures": ".0%",
                           "unchanged input": ".0%"}),
        ])
    for name, (title, result, visuals) in runs.items():
        sub = Section(id=f"translation-{name}", title=title)
        changed = [row for row in (result.get("changed") or []) if row["count"] > 0]
        if changed:
            sub.add(Text("Changed besides the translation (input reading -> output reading, people): "
                         + "; ".join(f"{row['attribute']} {row['input_value']} -> {row['output_value']} "
                                     f"x{row['count']}" for row in changed) + "."))
        for stem, (label, caption) in TRANSLATION_VISUALS.items():
            path = Path(visuals) / f"{stem}.png"
            if path.is_file():
                sub.add(Figure(f"{title}: {label}", path, name=f"translation-{name}-{stem}", caption=caption))
        section.subsections.append(sub)
    if detectors is not None:
        section.subsections.append(detectors)
    return section
