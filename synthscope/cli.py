"""The ``synthscope`` command line. Usage errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from synthscope import __version__

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad usage of the command line: reported as one line, exit status 2 (see also
    :class:`synthscope.errors.UserError`, for bad input met while a command runs)."""


def bounded(convert: type, low: float, high: float | None = None):
    """An argparse type: a number converted by ``convert`` and kept within [low, high]; anything
    else is bad usage (exit 2) with a message saying what was expected."""
    noun = "whole number" if convert is int else "number"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {noun}") from None
        if value < low or (high is not None and value > high):
            expected = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {expected}, got {value}")
        return value

    parse.__name__ = f"{noun} >= {low}" if high is None else f"{noun} in [{low}, {high}]"
    return parse


# The robustness sweeps of synthscope.detectors.perturbations.SWEEPS (named here so that --help
# does not import torch; a test keeps the two in step).
SWEEP_NAMES = ("jpeg", "blur", "downscale", "crop", "noise", "social")

def output_file(text: str) -> Path:
    """An argparse type for a file to write: an existing folder there is bad usage, found before any work."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the path of a file to write")
    return path


def output_folder(text: str) -> Path:
    """An argparse type for a folder to write into: an existing file there is bad usage."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return path


positive_int = bounded(int, 1)
seed_value = bounded(int, 0, 2**63 - 1)  # what every random-number generator we seed accepts
probability = bounded(float, 0, 1)


def _add_common(parser: argparse.ArgumentParser, device: bool = True, seed: bool = True) -> None:
    if seed:
        parser.add_argument("--seed", type=seed_value, default=0, help="random seed (default: 0)")
    if device:
        parser.add_argument("--device", default="auto",
                            help="cpu, cuda, cuda:N, mps or auto (default: auto = best available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_threads(parser)


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads for torch (default: 1 for the built-in models and small CNNs, which "
                             "run fastest that way; the usable CPUs for CLIP, ResNets and diffusers pipelines)")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """The CNN detector's training settings, shared by 'detect train' and 'detect matrix'."""
    parser.add_argument("--arch", choices=["small", "resnet18", "resnet50"], default="small",
                        help="network (default: small, trains in about a minute on a CPU)")
    parser.add_argument("--pretrained", choices=["none", "imagenet"], default="none",
                        help="start a ResNet from torchvision's ImageNet weights (needs them downloaded once)")
    parser.add_argument("--size", type=positive_int, default=32, help="input size in px (default: 32)")
    parser.add_argument("--epochs", type=positive_int, default=30, help="at most this many epochs (default: 30)")
    parser.add_argument("--patience", type=positive_int, default=5,
                        help="stop after this many epochs without a better validation loss (default: 5)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--p-blur", type=probability, default=0.5,
                        help="blur augmentation probability (default: 0.5; CNNDetection's other setting is 0.1)")
    parser.add_argument("--p-jpeg", type=probability, default=0.5, help="JPEG augmentation probability (default: 0.5)")
    parser.add_argument("--blur-sigma", type=float, nargs=2, default=(0.0, 3.0), metavar=("LOW", "HIGH"),
                        help="blur sigma range in px (default: 0 3, made for 256 px images; scale it down "
                             "for small ones)")
    parser.add_argument("--jpeg-quality", type=int, nargs=2, default=(30, 100), metavar=("LOW", "HIGH"),
                        help="JPEG quality range (default: 30 100)")
    parser.add_argument("--target-fpr", type=probability, default=0.01,
                        help="false-positive rate the threshold is set for, on held-out reals (default: 0.01)")


def _training_options(args: argparse.Namespace) -> dict:
    from synthscope.detectors.perturbations import BlurJpegAugment

    try:  # check the ranges before any image is read
        BlurJpegAugment(args.p_blur, args.p_jpeg, sigma=args.blur_sigma, quality=args.jpeg_quality)
    except ValueError as error:
        raise UsageError(f"--blur-sigma/--jpeg-quality: {error}") from None
    return {"arch": args.arch, "pretrained": None if args.pretrained == "none" else args.pretrained,
            "epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size,
            "p_blur": args.p_blur, "p_jpeg": args.p_jpeg, "blur_sigma": tuple(args.blur_sigma),
            "jpeg_quality": tuple(args.jpeg_quality), "target_fpr": args.target_fpr}


def build_parser() -> argparse.ArgumentParser:
    from synthscope.generators.registry import GENERATORS

    parser = argparse.ArgumentParser(
        prog="synthscope",
        description="Synthetic images for responsible-AI work: generators, detectors, bias audits, reports.",
    )
    parser.add_argument("--version", action="version", version=f"synthscope {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # generate ---------------------------------------------------------------------------------
    generate = commands.add_parser("generate", help="train built-in generators and sample from them",
                                   description="Train the built-in generators (AE, VAE, GAN, diffusion) "
                                               "and sample corpora from them.")
    generate_commands = generate.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = generate_commands.add_parser(
        "train", help="train a generator into a run folder (resumes an interrupted run)",
        description="Train a generator. Re-running with the same --out resumes from the last checkpoint; "
                    "a larger --steps trains further. The run folder gets weights (safetensors + JSON), "
                    "the loss history, lecture visuals and quality scores.")
    train.add_argument("--model", required=True, choices=sorted(GENERATORS), help="generator kind")
    train.add_argument("--data", default="digits",
                       help="digits, portraits, or a folder of your own images (default: digits)")
    train.add_argument("--out", required=True, type=output_folder, help="run folder")
    train.add_argument("--conditional", action="store_true",
                       help="condition on labels/prompts (gan, diffusion; needs digits or portraits)")
    train.add_argument("--steps", type=positive_int, help="optimiser steps in total (default: per model, ~2 min on CPU)")
    train.add_argument("--size", type=positive_int, help="image size in px (default: 16 for digits, 32 otherwise)")
    train.add_argument("--n", type=positive_int, help="use at most N images (portraits: how many to draw)")
    train.add_argument("--set", dest="options", action="append", metavar="KEY=VALUE",
                       help="model option, repeatable (e.g. --set latent_dim=2 --set mode=denoising)")
    train.add_argument("--snapshot-every", type=positive_int, help="save a sample grid every N steps")
    train.add_argument("--no-eval", action="store_true", help="skip lecture visuals and quality scores")
    train.add_argument("--force", action="store_true", help="start over instead of resuming")
    train.add_argument("--strict", action="store_true", help="a corrupt image in --data is an error")
    _add_common(train)

    sample = generate_commands.add_parser(
        "sample", help="sample a trained generator into a corpus",
        description="Sample images from a trained run into a corpus folder (images/, manifest.csv, "
                    "corpus.json). Re-running resumes and never duplicates images.")
    sample.add_argument("run_dir", type=Path, help="run folder written by 'generate train'")
    sample.add_argument("--n", type=positive_int, required=True, help="images (per prompt)")
    sample.add_argument("--out", required=True, type=output_folder, help="corpus folder")
    sample.add_argument("--prompt", action="append",
                        help="prompt, repeatable (conditional models), e.g. 'a photo of a female doctor'")
    sample.add_argument("--guidance", type=bounded(float, 0, 100),
                        help="classifier-free guidance scale, 0 to 100 (diffusion)")
    sample.add_argument("--sampler", choices=["ddim", "ddpm"], help="diffusion sampler (default: ddim)")
    sample.add_argument("--sample-steps", type=positive_int, help="diffusion sampling steps (default: 50 ddim, 1000 ddpm)")
    sample.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default: 64)")
    sample.add_argument("--force", action="store_true",
                        help="replace a corpus made differently (other run, seed or options) instead of refusing")
    _add_common(sample)

    # detect -----------------------------------------------------------------------------------
    detect = commands.add_parser("detect", help="train and test AI-image detectors",
                                 description="Train real-vs-fake detectors on corpora, evaluate them with "
                                             "deployment metrics, and scan folders.")
    detect_commands = detect.add_subparsers(dest="action", metavar="ACTION", required=True)
    dtrain = detect_commands.add_parser(
        "train", help="train a detector on a real corpus vs synthetic corpora",
        description="Train a detector: a CNN (balanced batches, blur+JPEG augmentation), a probe on frozen "
                    "CLIP features (UnivFD), or a trained GAN's own discriminator as a baseline. The decision "
                    "threshold is fixed on held-out real images for --target-fpr, never on test labels.")
    dtrain.add_argument("--kind", choices=["cnn", "clip", "gan-discriminator"], default="cnn",
                        help="detector kind (default: cnn)")
    dtrain.add_argument("--real", required=True, type=Path, help="corpus (or image folder) of real images")
    dtrain.add_argument("--fake", type=Path, nargs="+", default=[],
                        help="one or more synthetic corpora (cnn, clip)")
    dtrain.add_argument("--out", required=True, type=Path, help="detector folder")
    _add_training_options(dtrain)
    clip = dtrain.add_argument_group("clip detector (--kind clip)")
    clip.add_argument("--clip-model", default="ViT-B-32", help="open_clip model name (default: ViT-B-32)")
    clip.add_argument("--clip-pretrained", default="laion2b_s34b_b79k",
                      help="open_clip pretrained tag, downloaded once (default: laion2b_s34b_b79k)")
    clip.add_argument("--clip-checkpoint", type=Path, help="local open_clip weight file (instead of a tag)")
    clip.add_argument("--probe", choices=["logistic", "knn"], default="logistic",
                      help="logistic regression (C by cross-validation) or k nearest neighbours (default: logistic)")
    clip.add_argument("--k", type=positive_int, default=10, help="neighbours for --probe knn (default: 10)")
    clip.add_argument("--cache-dir", type=Path,
                      help="feature cache, kept by the detector for eval and scan "
                           "(default: $SYNTHSCOPE_CACHE/clip-features or ~/.cache/synthscope)")
    clip.add_argument("--no-cache", action="store_true",
                      help="do not read or write the feature cache (now, nor when evaluating or scanning)")
    gan = dtrain.add_argument_group("GAN discriminator baseline (--kind gan-discriminator)")
    gan.add_argument("--gan-run", type=Path, help="a GAN run folder ('synthscope generate train --model gan')")
    _add_common(dtrain)
    deval = detect_commands.add_parser(
        "eval", help="deployment metrics of a detector on test corpora",
        description="AP, ROC-AUC, accuracy at the saved threshold, TPR at 1 %% and 0.1 %% FPR, EER, calibration, "
                    "each with a 95 %% interval, a per-generator breakdown (each generator marked as seen or unseen in "
                    "the detector's training, the two measured apart) and a format-shortcut check; with "
                    "--robustness, perturbation sweeps too. Writes metrics.json, metrics.csv, per_source.csv, "
                    "seen_unseen.csv, scores.csv, robustness.csv, format_shortcut.csv and an HTML report "
                    "(index.html) into --out.")
    deval.add_argument("detector_dir", type=Path)
    deval.add_argument("--real", type=Path, help="real test corpus")
    deval.add_argument("--fake", type=Path, nargs="*", default=[], help="synthetic test corpora")
    deval.add_argument("--out", required=True, type=Path, help="results folder")
    deval.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap resamples (default: 1000)")
    deval.add_argument("--robustness", nargs="*", metavar="SWEEP", choices=list(SWEEP_NAMES),
                       help=f"perturbation sweeps to run, applied alike to reals and fakes "
                            f"({', '.join(SWEEP_NAMES)}; no names: all of them)")
    _add_common(deval)
    dmatrix = detect_commands.add_parser(
        "matrix", help="cross-generator matrix and leave-one-generator-out",
        description="Split every corpus once into training and test parts; train one detector per synthetic "
                    "corpus, one on all of them and one per left-out corpus; test each on every corpus. "
                    "Writes matrix.csv, leave_one_out.csv, the detectors and an HTML report into --out. "
                    "Detectors trained before on the same images and settings are reused.")
    dmatrix.add_argument("--real", required=True, type=Path, help="corpus (or image folder) of real images")
    dmatrix.add_argument("--fake", required=True, type=Path, nargs="+",
                         help="synthetic corpora, each named by its folder")
    dmatrix.add_argument("--out", required=True, type=Path, help="results folder")
    dmatrix.add_argument("--test-fraction", type=bounded(float, 0.05, 0.95), default=0.3,
                         help="share of every corpus kept for testing (default: 0.3)")
    dmatrix.add_argument("--bootstrap", type=positive_int, default=200,
                         help="bootstrap resamples per cell (default: 200)")
    _add_training_options(dmatrix)
    _add_common(dmatrix)
    dscan = detect_commands.add_parser(
        "scan", help="score every file of a folder (CSV)",
        description="One CSV row per file of the folder, hidden ones included: path, P(fake), decision at the "
                    "detector's threshold, or why the file could not be read (a symbolic link leading out of the "
                    "folder is never read), and out_of_domain: why an image looks unlike the detector's training "
                    "images (size, colour, pixel statistics). A corrupt, empty or non-image file never stops the "
                    "scan.")
    dscan.add_argument("detector_dir", type=Path)
    dscan.add_argument("folder", type=Path)
    dscan.add_argument("--out", required=True, type=Path, help="CSV file to write (not a folder)")
    _add_common(dscan, seed=False)

    # audit ------------------------------------------------------------------------------------
    audit = commands.add_parser("audit", help="bias audits of text-to-image models",
                                description="Prompt a text-to-image model across professions, read who gets "
                                            "depicted (perceived attributes), compare with a reference.")
    audit_commands = audit.add_subparsers(dest="action", metavar="ACTION", required=True)
    ainit = audit_commands.add_parser("init", help="write a commented example spec",
                                      description="Write a commented example audit spec (TOML) to edit.")
    ainit.add_argument("--out", type=output_file, default=Path("audit.toml"), help="spec file (default: audit.toml)")
    ainit.add_argument("--force", action="store_true", help="overwrite an existing file")
    arun = audit_commands.add_parser(
        "run", help="run an audit from a spec",
        description="Generate every image the spec asks for (resumable: a re-run adds only what is missing), "
                    "annotate them, compute shares with 95 %% intervals, compare with the reference and write "
                    "an HTML report (AUDIT_DIR/index.html) with the tables beside it.")
    arun.add_argument("spec", type=Path, help="audit spec (TOML; 'synthscope audit init' writes an example)")
    arun.add_argument("--out", required=True, type=output_folder, help="audit folder")
    arun.add_argument("--force", action="store_true",
                      help="replace images made by another model or with other settings instead of refusing")
    arun.add_argument("--device", help="override the spec's device (cpu, cuda, cuda:N, mps, auto)")
    arun.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_threads(arun)
    asheet = audit_commands.add_parser(
        "label-sheet", help="export images for human labelling",
        description="Write labels.csv and a self-contained sheet.html (image ids and allowed values, never the "
                    "prompt) for people to label perceived attributes.")
    asheet.add_argument("audit_dir", type=Path, help="an audit folder (its images) or any corpus")
    asheet.add_argument("--out", required=True, type=output_folder, help="sheet folder")
    asheet.add_argument("--attributes", nargs="+", default=["gender", "skin_tone", "age"],
                        help="attributes to label (default: gender skin_tone age)")
    asheet.add_argument("--sample", type=positive_int, help="label a random sample of this many images")
    asheet.add_argument("--seed", type=seed_value, default=0, help="seed of the sample and the shuffled order")
    asheet.add_argument("--force", action="store_true", help="overwrite a sheet that already holds labels")
    aimport = audit_commands.add_parser(
        "import-labels", help="read completed label sheets back",
        description="Check completed sheets (one CSV per labeller, e.g. labels_alice.csv) and write them as "
                    "annotations; every bad cell is reported as file:line: problem. Prints agreement between "
                    "labellers (Cohen's and Fleiss' kappa, Krippendorff's alpha).")
    aimport.add_argument("sheet_dir", type=Path, help="the folder 'audit label-sheet' wrote")
    aimport.add_argument("csv", type=Path, nargs="+", help="completed sheets")
    aimport.add_argument("--out", required=True, type=output_file, help="annotations CSV to write")

    # lab --------------------------------------------------------------------------------------
    lab = commands.add_parser(
        "lab", help="the main job: every stage on built-in data, then an HTML report",
        description="Train the built-in generators on built-in data (offline), write their corpora and "
                    "one self-contained HTML report (DIR/index.html). Re-running into the same DIR reuses "
                    "finished stages; --force redoes them.")
    lab.add_argument("--out", type=output_folder, default=Path("lab-report"), help="output folder (default: lab-report)")
    lab.add_argument("--quick", action="store_true", help="a tenth of the training, same stages (about a minute)")
    lab.add_argument("--force", action="store_true", help="redo finished stages")
    _add_common(lab)

    report = commands.add_parser("report", help="re-render a report folder's index.html from its saved data",
                                 description="Rebuild DIR/index.html from DIR/report.json and the CSV/PNG "
                                             "files beside it.")
    report.add_argument("dir", type=Path, help="a folder written by lab (or another command with a report)")

    # data -------------------------------------------------------------------------------------
    data = commands.add_parser("data", help="built-in data sets",
                               description="Work with the built-in data sets (no downloads).")
    data_commands = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = data_commands.add_parser("export", help="write built-in real images as a corpus",
                                      description="Write digits or portraits as a corpus: the 'real' side "
                                                  "for detectors and audits.")
    export.add_argument("dataset", choices=["digits", "portraits"])
    export.add_argument("--n", type=positive_int, help="number of images (digits: at most 1797; default: all / 4000)")
    export.add_argument("--size", type=positive_int, help="image size in px")
    export.add_argument("--out", required=True, type=output_folder, help="corpus folder")
    export.add_argument("--force", action="store_true", help="replace a corpus made differently instead of refusing")
    _add_common(export, device=False)
    return parser


def _is_main_process() -> bool:
    """False on the other processes of a command launched as several (only the main one reports)."""
    from synthscope.distributed import current_shard, launched_processes

    return launched_processes() <= 1 or current_shard().is_main


def _workload(args: argparse.Namespace) -> str:
    """Whether a command runs the tiny built-in models (one thread is fastest) or a large network
    (CLIP, a ResNet, a diffusers pipeline: every usable CPU), judged without importing torch models."""
    from synthscope.runtime import LARGE, TINY

    if args.command == "detect":
        if getattr(args, "kind", None) == "clip" or str(getattr(args, "arch", "small")).startswith("resnet"):
            return LARGE
        detector_dir = getattr(args, "detector_dir", None)
        if detector_dir is not None:  # eval and scan: the saved detector's kind
            try:
                model = json.loads((Path(detector_dir) / "detector.json").read_text()).get("model", {})
            except (OSError, ValueError, AttributeError):
                return TINY  # the command itself reports a missing or broken detector
            if isinstance(model, dict) and (model.get("kind") == "clip"
                                            or str(model.get("arch", "")).startswith("resnet")):
                return LARGE
    if args.command == "audit" and getattr(args, "action", None) == "run":
        try:
            text = Path(args.spec).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return TINY  # the command itself reports an unreadable spec
        if re.search(r"""^\s*kind\s*=\s*["']diffusers["']""", text, flags=re.MULTILINE):
            return LARGE
    return TINY


def run(args: argparse.Namespace) -> int:
    from synthscope.generators import workflow

    from synthscope.runtime import choose_threads, resolve_device, use_threads

    progress = not getattr(args, "quiet", False)
    if getattr(args, "device", None):
        resolve_device(args.device)  # an absent device stops here, before anything is written
    if hasattr(args, "threads"):
        automatic = args.threads is None and not os.environ.get("OMP_NUM_THREADS", "").strip()
        use_threads(choose_threads(_workload(args), args.threads), automatic=automatic)
    if args.command == "generate" and args.action == "train":
        result = workflow.train_run(
            args.model, args.data, args.out, conditional=args.conditional, steps=args.steps,
            seed=args.seed, size=args.size, n=args.n, device=args.device,
            options=workflow.parse_options(args.options), force=args.force,
            snapshot_every=args.snapshot_every, evaluate=not args.no_eval, progress=progress,
            strict=args.strict)
        if args.no_eval:
            print(f"trained {args.model} to step {result.step} in {result.seconds:.0f} s -> {args.out}")
        else:
            quality = result.quality
            print(f"trained {args.model} to step {quality['step']} in {quality['train_seconds']:.0f} s -> {args.out}")
            if "summary" in quality:
                print(f"quality: {quality['summary']}")
    elif args.command == "generate" and args.action == "sample":
        options = {k: v for k, v in {"guidance": args.guidance, "sampler": args.sampler,
                                     "steps": args.sample_steps}.items() if v is not None}
        out = workflow.sample_to_corpus(args.run_dir, args.out, n=args.n, prompts=args.prompt,
                                        seed=args.seed, batch_size=args.batch_size, device=args.device,
                                        progress=progress, force=args.force, **options)
        if _is_main_process():
            print(f"corpus -> {out}")
    elif args.command == "audit":
        run_audit_command(args, progress)
    elif args.command == "detect":
        run_detect(args, progress)
    elif args.command == "lab":
        from synthscope.lab import run_lab

        result = run_lab(args.out, quick=args.quick, force=args.force, seed=args.seed, device=args.device,
                         progress=progress)
        print("\n".join(result.summary))
    elif args.command == "report":
        from synthscope.reports import rerender

        print(f"report -> {rerender(args.dir)}")
    elif args.command == "data" and args.action == "export":
        out = workflow.export_builtin(args.dataset, args.out, n=args.n, seed=args.seed, size=args.size,
                                      progress=progress, force=args.force)
        if _is_main_process():
            print(f"corpus -> {out}")
    return 0


def run_detect(args: argparse.Namespace, progress: bool) -> None:
    if args.action in ("train", "eval", "matrix"):  # before any image is read or any detector trained
        from synthscope.detectors.base import check_output_folder

        check_output_folder(args.out)

    def write_detectors_report(section, summary: list[str], command: str) -> None:
        from synthscope.reports import Report, collect_provenance, write_report

        write_report(Report(title="synthscope detectors", subtitle=command, summary=summary, sections=[section],
                            provenance=collect_provenance({"command": f"synthscope {command}"})), args.out)
        print("\n".join(summary))
        print(f"results and report -> {args.out}")

    if args.action == "train":
        run = _train_detector(args, progress)
        if run is None:  # another process of a multi-process run: the main one reports
            return
        print(f"detector -> {args.out} (threshold {run.threshold:.4g} for {run.target_fpr:.1%} FPR on held-out "
              f"reals; {run.seconds:.0f} s)")
    elif args.action == "eval":
        if args.real is None and not args.fake:
            raise UsageError("give --real, --fake or both")
        from synthscope.detectors.assessment import assess_detector
        from synthscope.detectors.report_section import assessment_summary, detector_section

        sweeps = [] if args.robustness is None else (args.robustness or list(SWEEP_NAMES))
        assessment = assess_detector(args.detector_dir, real=args.real, fakes=args.fake, sweeps=sweeps,
                                     n_boot=args.bootstrap, seed=args.seed, device=args.device, progress=progress)
        if assessment is None:  # another process of a multi-process run: the main one assesses
            return
        assessment.save(args.out)
        print(assessment.report.table()[["metric", "value", "ci_low", "ci_high"]].to_string(index=False))
        # the summary heads the report, so the section need not repeat it
        write_detectors_report(detector_section(assessment, summary=False), assessment_summary(assessment),
                     f"detect eval {args.detector_dir}")
    elif args.action == "matrix":
        from synthscope.detectors.generalisation import cross_generator, split_corpora
        from synthscope.detectors.report_section import detector_section, generalisation_summary

        split = split_corpora(args.real, args.fake, size=args.size, test_fraction=args.test_fraction,
                              seed=args.seed, progress=progress)
        result = cross_generator(split, args.out, n_boot=args.bootstrap, seed=args.seed, device=args.device,
                                 progress=progress, size=args.size, **_training_options(args))
        print(result.pivot("ap").round(3).to_string())
        write_detectors_report(detector_section(generalisation=result), generalisation_summary(result), "detect matrix")
    elif args.action == "scan":
        from synthscope.detectors.scan import scan_folder

        table = scan_folder(args.detector_dir, args.folder, args.out, device=args.device, progress=progress)
        failed = int((table["error"] != "").sum())
        if _is_main_process():
            print(f"{len(table)} files scored -> {args.out}" + (f" ({failed} could not be read)" if failed else ""))


def run_audit_command(args: argparse.Namespace, progress: bool) -> None:
    if args.action == "init":
        from synthscope.audits.spec import example_spec_text

        if args.out.exists() and not args.force:
            raise FileExistsError(f"{args.out} exists; use --force to overwrite it")
        args.out.write_text(example_spec_text())
        print(f"example spec -> {args.out} (edit it, then: synthscope audit run {args.out} --out AUDIT_DIR)")
    elif args.action == "run":
        from synthscope.audits.audit import run_audit

        result = run_audit(args.spec, args.out, force=args.force, device=args.device, progress=progress)
        if result is not None:  # None on the other processes of a multi-process run: the main one reports
            made = f"{result.generation.total} images ({result.generation.generated} new)"
            print(f"{made}; report -> {result.report}" if result.report is not None else
                  f"{made}; no report yet: nothing has read the images")
            if result.next_steps:
                print(result.next_steps)
    elif args.action == "label-sheet":
        from synthscope.audits.audit import corpus_folder
        from synthscope.audits.labels import export_label_sheet

        # An audit folder's corpus is AUDIT_DIR/images; an exported corpus has its manifest at the top.
        out = export_label_sheet(corpus_folder(args.audit_dir), args.out, attributes=tuple(args.attributes),
                                 sample=args.sample, seed=args.seed, force=args.force)
        print(f"label sheet -> {out} (share sheet.html and a copy of labels.csv with each labeller; keep "
              f"label_sheet.json, which maps the sheet's ids to the images, to yourself)")
    elif args.action == "import-labels":
        from synthscope.audits.labels import agreement, import_labels, labeller_validity, read_label_sheet
        from synthscope.runtime import atomic_write_bytes

        from synthscope.tables import spreadsheet_safe

        labels = import_labels(args.csv, sheet_dir=args.sheet_dir)
        atomic_write_bytes(args.out, spreadsheet_safe(labels).to_csv(index=False).encode())
        print(f"{labels['image_id'].nunique()} images, {labels['annotator'].nunique()} labellers -> {args.out}")
        if labels["annotator"].nunique() > 1:
            for attribute in sorted(set(labels["attribute"])):
                print(agreement(labels, attribute).to_string(index=False))
        corpus = Path(read_label_sheet(args.sheet_dir)["corpus"])
        validity = labeller_validity(labels, corpus) if corpus.is_dir() else None
        if validity is not None and len(validity):
            print(f"labellers against the known truth of {corpus} (accuracy with its 95 % Wilson interval; "
                  f"'undetermined' counts as not correct):")
            print(validity.to_string(index=False))


def _train_detector(args: argparse.Namespace, progress: bool):
    from synthscope.detectors import training

    if args.kind != "gan-discriminator" and not args.fake:
        raise UsageError(f"--kind {args.kind} needs --fake: one or more synthetic corpora")
    if args.kind == "cnn":
        return training.train_detector(args.real, args.fake, args.out, size=args.size, seed=args.seed,
                                       device=args.device, progress=progress, **_training_options(args))
    if args.kind == "clip":
        from synthscope.detectors.clip import train_clip_detector

        return train_clip_detector(
            args.real, args.fake, args.out, model=args.clip_model,
            pretrained=None if args.clip_checkpoint else args.clip_pretrained, checkpoint=args.clip_checkpoint,
            probe=args.probe, k=args.k, size=args.size, target_fpr=args.target_fpr, seed=args.seed,
            device=args.device, cache_dir=args.cache_dir, cache=not args.no_cache, progress=progress)
    from synthscope.detectors.discriminator import make_discriminator_detector

    if args.gan_run is None:
        raise UsageError("--kind gan-discriminator needs --gan-run RUN_DIR")
    if args.fake:
        raise UsageError("--kind gan-discriminator takes no --fake: only reals fix its threshold")
    return make_discriminator_detector(args.gan_run, args.real, args.out, target_fpr=args.target_fpr,
                                       seed=args.seed, device=args.device, progress=progress)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings for a person at a terminal: one line, no source location."""
    print(f"synthscope: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    from synthscope.errors import UserError

    if argv is None:  # a real command line (not a call from Python code or a test)
        warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (UsageError, UserError, FileNotFoundError, NotADirectoryError, FileExistsError, IsADirectoryError) as error:
        # Problems with the user's input: one clear line, no traceback. Anything else (a ValueError
        # from deep inside a library included) is a bug and keeps its traceback.
        message = str(error).strip() or error.__class__.__name__
        print(f"synthscope: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("synthscope: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
