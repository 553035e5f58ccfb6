"""Detector throughput: `detect scan` and `detect eval` against a bare torchvision inference loop over
the same files and model, and the CLIP feature cache (second evaluation vs first).

Prints images per second for each and the ratios (targets: scan and eval >= 0.9 of the bare loop;
CLIP re-evaluation >= 5x faster than the first run). The bare loop opens each file with Pillow,
applies torchvision's Resize + CenterCrop + ToTensor and runs the same network in batches under
``torch.inference_mode`` — no manifest, no error handling, no CSV. "eval" is `detect eval`'s reading,
scoring and metrics (``evaluate_detector``); the stress tests it adds on request (format-shortcut
check, ``--robustness``) score the images again under each perturbation and are not throughput.

    python benchmarks/detector_throughput.py [--n 3000] [--image-size 256] [--clip-n 400]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from timing import best_of


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` random-content PNGs of ``size`` px (realistic decode cost, unlike tiny corpora)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    paths = []
    for i in range(n):
        array = np.roll(base, i, axis=1)
        array[: size // 8, : size // 8] = i % 256
        path = folder / f"{i:06d}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def bare_loop(network: torch.nn.Module, paths: list[Path], size: int, batch_size: int = 64) -> np.ndarray:
    """The baseline: Pillow + torchvision transforms + the raw network, nothing else."""
    from torchvision import transforms

    transform = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    scores = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start:start + batch_size]])
            scores.append(torch.sigmoid(network(batch)).numpy())
    return np.concatenate(scores)


def scan_and_eval(n: int, image_size: int, repeats: int, root: Path) -> None:
    from synthscope.registry import load_detector
    from synthscope.detectors.cnn import CNNDetector
    from synthscope.detectors.scan import scan_folder
    from synthscope.detectors.assessment import evaluate_detector

    size = 32
    detector = CNNDetector("small", channels=3, size=size)
    detector.save(root / "detector", extra={"threshold": 0.5, "target_fpr": 0.01})
    loaded, _ = load_detector(root / "detector", "cpu")
    paths = make_images(root / "images", n, image_size)
    network = loaded  # the same module: forward() includes the same input scaling in both loops

    bare = best_of(repeats, lambda: bare_loop(network, paths, size))
    scan = best_of(repeats, lambda: scan_folder(root / "detector", root / "images", root / "scores.csv",
                                                device="cpu", progress=False))
    evaluate = best_of(repeats, lambda: evaluate_detector(root / "detector", root / "images", [], n_boot=0,
                                                          device="cpu"))
    print(f"{n} PNGs of {image_size} px -> {size} px, small CNN, best of {repeats}")
    print(f"  bare torchvision loop : {n / bare:8.1f} img/s")
    print(f"  synthscope scan       : {n / scan:8.1f} img/s   ratio {bare / scan:.2f} (target >= 0.9)")
    print(f"  synthscope eval       : {n / evaluate:8.1f} img/s   ratio {bare / evaluate:.2f} (target >= 0.9)")


def clip_cache(n: int, root: Path, model: str) -> None:
    """A CLIP detector with the real ViT-B-32 architecture (random weights: no download here) evaluated
    twice; the second run reads features from the cache."""
    import open_clip
    from safetensors.torch import save_file

    from synthscope.detectors.clip import CACHE_ENV, train_clip_detector
    from synthscope.detectors.assessment import evaluate_detector
    from synthscope.generators.corpus import CorpusWriter
    from synthscope.generators.data import load_digits

    root.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_ENV] = str(root / "cache")
    torch.manual_seed(0)
    weights = root / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip.create_model(model).state_dict().items()}, str(weights))
    digits = load_digits(16).images.expand(-1, 3, -1, -1).contiguous()
    half = n // 2
    CorpusWriter(root / "real", {"generator": "real"}).append(digits[:half], [{"source": "real"}] * half)
    CorpusWriter(root / "fake", {"generator": "tint"}).append(
        (digits[half:n] * torch.tensor([1.0, 0.7, 0.4]).view(1, 3, 1, 1)).clamp(0, 1), [{"source": "tint"}] * half)
    cache = root / "cache" / "clip-features"
    train_clip_detector(root / "real", [root / "fake"], root / "clip-detector", model=model, pretrained=None,
                        checkpoint=weights, size=16, device="cpu", progress=False, cache_dir=cache)
    shutil.rmtree(cache)  # the detector keeps using this cache: empty it so the first evaluation starts cold
    cache.mkdir(parents=True)
    began = time.perf_counter()
    evaluate_detector(root / "clip-detector", root / "real", [root / "fake"], n_boot=0, device="cpu")
    first = time.perf_counter() - began
    began = time.perf_counter()
    evaluate_detector(root / "clip-detector", root / "real", [root / "fake"], n_boot=0, device="cpu")
    second = time.perf_counter() - began
    print(f"CLIP {model} detector, {n} images, evaluated twice")
    print(f"  first evaluation  : {first:6.2f} s (encodes every image)")
    print(f"  second evaluation : {second:6.2f} s (features from the cache)   speed-up {first / second:.1f}x "
          f"(target >= 5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="files to scan (default: 3000)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the test PNGs (default: 256)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clip-n", type=int, default=400, help="images for the CLIP cache run (default: 400)")
    parser.add_argument("--clip-model", default="ViT-B-32")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scan_and_eval(args.n, args.image_size, args.repeats, Path(tmp) / "scan")
        if args.clip_n:
            clip_cache(args.clip_n, Path(tmp) / "clip", args.clip_model)


if __name__ == "__main__":
    main()
