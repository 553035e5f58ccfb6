"""A demonstration report with every kind of block, built from made-up numbers in a second.

``python -m synthscope.reports.demo OUT_DIR`` writes it; the tests use it as a realistic sample.
All numbers here are invented (seeded), and the report says so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from synthscope.stats import wilson_bounds

from .model import Figure, Gallery, GalleryImage, Metric, Report, Section, Table, Text
from .plots import interval_plot, line_plot
from .provenance import collect_provenance
from .store import write_report

__all__ = ["demo_report", "build_demo_report"]


def _blob_images(rng: np.random.Generator, count: int, size: int = 16) -> list[np.ndarray]:
    """Greyscale rings and bars, digit-sized: stand-ins for generated samples."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    images = []
    for index in range(count):
        cx, cy = rng.uniform(0.35, 0.65, 2)
        radius = rng.uniform(0.18, 0.32)
        distance = np.hypot(xx - cx, yy - cy)
        image = np.exp(-((distance - radius) ** 2) / 0.004)
        if index % 3 == 1:  # some look like a "1"
            image = np.exp(-((xx - cx) ** 2) / 0.004) * (np.abs(yy - 0.5) < 0.35)
        image = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1)
        images.append(image)
    return images


def _portrait_images(rng: np.random.Generator, count: int, size: int = 24) -> list[np.ndarray]:
    """Tiny coloured "people": a head of some skin tone over a shirt colour, on a pale background."""
    tones = np.array([[246, 221, 196], [224, 187, 149], [196, 149, 106], [160, 110, 72], [111, 74, 48],
                      [70, 46, 32]]) / 255
    shirts = np.array([[0.0, 0.45, 0.70], [0.84, 0.37, 0.0], [0.0, 0.62, 0.45], [0.8, 0.47, 0.65]])
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    images = []
    for _ in range(count):
        image = np.ones((size, size, 3)) * 0.94
        body = (np.abs(xx - 0.5) < 0.3) & (yy > 0.68)
        image[body] = shirts[rng.integers(len(shirts))]
        head = np.hypot(xx - 0.5, yy - 0.4) < 0.2
        image[head] = tones[rng.integers(len(tones))]
        images.append(image)
    return images


def build_demo_report(seed: int = 7) -> Report:
    """The demo :class:`Report` (in memory): every block type, a subsection, long and short tables."""
    rng = np.random.default_rng(seed)

    samples = Gallery(
        "Diffusion samples, 16 × 16 px",
        [GalleryImage(img, f"sample {i + 1}") for i, img in enumerate(_blob_images(rng, 12))],
        caption="Each tile is one sample, drawn at 6× its size so single pixels stay visible.",
        display_size=80,
    )
    generators = Section(
        "generators", "Synthetic images",
        intro="What the built-in generator produced, and how close it came to the real images.",
        blocks=[
            Metric("Fréchet distance to real digits", 22.4, 19.8, 25.3, note="Lower is closer; "
                   "held-out real digits score 3.5."),
            Metric("Images generated", 2000, unit="images"),
            Metric("Sampling time", 4.6, unit="s", note="DDIM, 50 steps, 200 images, CPU."),
            samples,
            Text("The samples are recognisable shapes but noisier than the real set.\n\n"
                 "A lower Fréchet distance would need longer training (see the design budgets)."),
        ],
    )

    quality = [95, 90, 75, 50, 30]
    cnn = np.array([0.93, 0.92, 0.86, 0.77, 0.68])
    clip = np.array([0.89, 0.89, 0.88, 0.85, 0.81])
    robustness = line_plot(
        quality, {"CNN detector": cnn, "CLIP detector": clip},
        bands={"CNN detector": (cnn - 0.03, cnn + 0.03), "CLIP detector": (clip - 0.025, clip + 0.025)},
        xlabel="JPEG quality applied to both classes (higher = less compression)", ylabel="ROC-AUC (0–1)",
        title="Detection under JPEG compression", ylim=(0.5, 1.0),
    )
    breakdown = pd.DataFrame({
        "generator": ["GAN", "VAE", "diffusion", "autoencoder"],
        "images": [500, 500, 500, 500],
        "AP": [0.951, 0.902, 0.812, 0.975],
        "TPR at 1 % FPR": [0.62, 0.48, 0.31, 0.77],
        "threshold source": ["held-out reals"] * 4,
    })
    scores = pd.DataFrame({
        "file": [f"images/{i:06d}.png" for i in range(240)],
        "source": rng.choice(["real", "GAN", "VAE", "diffusion"], 240),
        "score": rng.uniform(0, 1, 240).round(4),
    })
    detectors = Section(
        "detectors", "AI-image detection",
        intro="Two detectors were trained to tell real digits from synthetic ones and tested on "
              "images they had not seen.",
        blocks=[
            Metric("ROC-AUC, CNN detector", 0.8734, 0.8211, 0.9102, note="Bootstrap, 1,000 resamples."),
            Metric("TPR at 1 % FPR", 0.5412, 0.4801, 0.6003, fmt=".1%",
                   note="Threshold fixed on held-out real images."),
            Figure.from_matplotlib(robustness, "Robustness to JPEG compression",
                                   caption="Shaded bands are 95 % bootstrap intervals.",
                                   alt="Line chart: ROC-AUC falls from 0.93 to 0.68 for the CNN detector "
                                       "and from 0.89 to 0.81 for the CLIP detector as JPEG quality drops."),
            Table("Per-generator breakdown", breakdown, caption="Average precision and true-positive rate "
                  "for each generator's images against the same real images.",
                  formats={"AP": ".3f", "TPR at 1 % FPR": ".0%"}),
        ],
        caveats=["A detector that scores well on these generators can fail on a generator it never saw."],
        subsections=[Section(
            "detector-scores", "Scores per image",
            intro="The detector's score for every test image (1 = surely synthetic).",
            blocks=[Table("Scores", scores, max_rows=8, name="scores")],
        )],
    )

    professions = ["nurse", "software developer", "chief executive", "teacher", "construction worker"]
    share = np.array([0.91, 0.17, 0.22, 0.80, 0.02])
    reference = np.array([0.87, 0.22, 0.30, 0.73, 0.04])
    n = 200
    low, high = wilson_bounds(np.round(share * n), np.full(len(share), n))
    audit_plot = interval_plot(
        professions, share, low, high,
        xlabel="Share of images depicting women (0–1)", reference=reference,
        reference_label="US labour statistics (BLS CPS table 11)", xlim=(0, 1),
    )
    audit_table = pd.DataFrame({
        "prompt": [f"a photo of a {p}" for p in professions],
        "images": [n] * 5,
        "share women": share,
        "reference": reference,
        "amplification": share - reference,
    })
    audits = Section(
        "audit", "Who gets depicted",
        intro="The built-in prompt-conditional generator was asked for 200 images per profession; "
              "a probe labelled the perceived gender presentation of each.",
        blocks=[
            Figure.from_matplotlib(audit_plot, "Perceived women per profession",
                                   caption="Dots: share in generated images with 95 % Wilson intervals. "
                                           "Diamonds: the reference share.",
                                   alt="Dot plot of the share of women per profession with reference values."),
            Table("Shares by prompt", audit_table,
                  formats={"share women": ".2f", "reference": ".2f", "amplification": "+.2f"}),
            Gallery("Examples for “a photo of a nurse”",
                    [(img, f"seed {1000 + i}") for i, img in enumerate(_portrait_images(rng, 8))],
                    display_size=72),
            Text("Amplification is the generated share minus the reference share; positive values mean "
                 "the model over-represents women relative to the labour statistics.", kind="note"),
        ],
        caveats=["Perceived gender presentation is not gender identity; the labels describe images, "
                 "not people."],
    )

    return Report(
        title="synthscope demo report",
        subtitle="Invented numbers that show every part of a report",
        summary=[
            "The built-in diffusion model produced recognisable but noisy digits (Fréchet distance 22).",
            "The CNN detector separates real from synthetic images well (ROC-AUC 0.87) but loses much of "
            "that under strong JPEG compression; the CLIP detector is steadier.",
            "The audit shows the generator reproduces, and for nurses and teachers amplifies, the gender skew "
            "of the labour statistics.",
        ],
        highlights=[
            Metric("ROC-AUC, CNN detector", 0.8734, 0.8211, 0.9102),
            Metric("Largest amplification", 0.07, 0.01, 0.13, note="Teachers: share of women above reference."),
            Metric("Images audited", 1000, unit="images"),
        ],
        sections=[generators, detectors, audits],
        provenance=collect_provenance({
            "command": "synthscope lab --quick",
            "seeds": {"data": seed, "training": seed + 1, "sampling": seed + 2},
            "config": {"image_size": 16, "steps": 1300, "sampler": "DDIM", "sampler_steps": 50},
            "data": {"digits": "sha256:" + "0" * 64},
            "checkpoints": {"diffusion": "sha256:" + "1" * 64},
            "note": "all numbers in this demo are invented",
        }),
        caveats=["This demo report uses invented numbers; do not cite them."],
    )


def demo_report(out_dir: str | os.PathLike[str]) -> Path:
    """Write the demo report to ``out_dir``; returns the path of its ``index.html``."""
    return write_report(build_demo_report(), out_dir)


if __name__ == "__main__":  # pragma: no cover - convenience entry point
    print(demo_report(sys.argv[1] if len(sys.argv) > 1 else "demo-report"))
