"""The hf detector wrapper's overhead against calling the same transformers pipeline directly.

(a) synthscope: the image folder read as a corpus at the model's size (``load_corpus``) and scored by
    :class:`synthscope.detectors.external.HFDetector` (score cache off, so the model runs every time) in
    batches of ``--batch-size``;
(b) bare: the same files opened with Pillow and given to ``transformers.pipeline("image-classification",
    model=folder)`` with the same batch size (``top_k`` all labels, as P(fake) needs).

Both run alternately ``--repeats`` times; the best of each is kept (``benchmarks/timing.best_of``). Prints
images per second for both and their ratio, synthscope / bare (target: >= 0.95). The model is a small ViT
classifier with random weights built from a config (``--image-size``, ``--hidden``, ``--layers``) and saved
with ``save_pretrained`` with its image processor, as the tests do. ``--threads`` defaults to 1: on CPUs
shared with other work, thread pools spinning on contended cores make timings noise.

    python benchmarks/external_overhead.py [--n 128] [--batch-size 16] [--image-size 64] [--hidden 64]
                                           [--layers 2] [--repeats 3] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of  # noqa: E402

from synthscope.detectors.data import load_corpus  # noqa: E402
from synthscope.detectors.external import HFDetector  # noqa: E402


def save_vit(folder: Path, image_size: int, hidden: int, layers: int) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=image_size, patch_size=8, num_hidden_layers=layers, hidden_size=hidden,
                       num_attention_heads=4, intermediate_size=4 * hidden, num_labels=2,
                       id2label={0: "real", 1: "fake"}, label2id={"real": 0, "fake": 1})
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def write_images(folder: Path, n: int, size: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [folder / f"{i:05d}.png" for i in range(n)]
    for file in files:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(file)
    return files


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model = save_vit(Path(tmp) / "model", args.image_size, args.hidden, args.layers)
        files = write_images(Path(tmp) / "images", args.n, args.image_size)
        detector = HFDetector(str(model), device=args.device, cache=False)
        pipe = pipeline("image-classification", model=str(model), device=args.device)

        def wrapped() -> np.ndarray:
            images = load_corpus(files[0].parent, 0, size=detector.size, progress=False).images
            return detector.score(images, batch_size=args.batch_size)

        def bare() -> list:
            images = [Image.open(file).convert("RGB") for file in files]
            return pipe(images, batch_size=args.batch_size, top_k=2)

        ours = np.sort(wrapped())
        theirs = np.sort([next(d["score"] for d in out if d["label"] == "fake") for out in bare()])
        assert np.allclose(ours, theirs, atol=1e-5), "the wrapper and the pipeline disagree on P(fake)"
        times = {"synthscope": [], "bare": []}
        for _ in range(args.repeats):  # alternately, so a slow spell on a shared machine hits both
            times["synthscope"].append(best_of(1, wrapped))
            times["bare"].append(best_of(1, bare))
    best = {name: min(values) for name, values in times.items()}
    for name, seconds in best.items():
        print(f"{name:>10}: {args.n / seconds:8.1f} images/s ({seconds:.3f} s for {args.n} images, batch "
              f"{args.batch_size})")
    ratio = best["bare"] / best["synthscope"]
    print(f"throughput ratio synthscope / bare: {ratio:.3f} (target >= 0.95)")
    return ratio


if __name__ == "__main__":
    main()
