"""``synthscope detect train|eval|matrix|scan``: train real-vs-fake detectors, assess them, scan folders.

``TRAINERS`` maps each detector kind of :mod:`synthscope.registry` to the function that trains it from
the command's arguments (a test keeps the two in step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from synthscope.commands.common import (Subcommands, UsageError, add_command, add_common, add_group, bounded,
                                        is_main_process, positive_int, probability)
from synthscope.detectors.defaults import ARCHS, CLIP, CNN, EXTERNAL, PROBES, THRESHOLD
from synthscope.registry import kind_names

# The CNN estimator's parameters that 'detect train' and 'detect matrix' take as options (the size is
# passed on its own; the rest keep the estimator's defaults), in the order they were passed before.
CNN_OPTIONS = ("arch", "pretrained", "epochs", "patience", "batch_size", "p_blur", "p_jpeg", "blur_sigma",
               "jpeg_quality")

# The robustness sweeps of synthscope.detectors.perturbations.SWEEPS (named here so that --help
# does not import torch; a test keeps the two in step).
SWEEP_NAMES = ("jpeg", "blur", "downscale", "crop", "noise", "social")


def register(commands: Subcommands) -> None:
    actions = add_group(commands, "detect", help="train and test AI-image detectors",
                        description="Train real-vs-fake detectors on corpora, evaluate them with "
                                    "deployment metrics, and scan folders.")
    train = add_command(
        actions, "train", train_handler, workload=workload,
        help="train a detector on a real corpus vs synthetic corpora")
    train.add_argument("--kind", choices=kind_names("detector"), default="cnn", help="detector kind (default: cnn)")
    train.add_argument("--real", required=True, type=Path, help="corpus (or image folder) of real images")
    train.add_argument("--fake", type=Path, nargs="+", default=[],
                       help="one or more synthetic corpora (cnn, clip; hf, python: optional, reported and used by "
                            "--calibrate)")
    train.add_argument("--out", required=True, type=Path, help="detector folder")
    add_training_options(train)
    clip = train.add_argument_group("clip detector (--kind clip)")
    clip.add_argument("--clip-model", default=CLIP["model"],
                      help=f"open_clip model name (default: {CLIP['model']})")
    clip.add_argument("--clip-pretrained", default=CLIP["pretrained"],
                      help=f"open_clip pretrained tag, downloaded once (default: {CLIP['pretrained']})")
    clip.add_argument("--clip-checkpoint", type=Path, help="local open_clip weight file (instead of a tag)")
    clip.add_argument("--probe", choices=list(PROBES), default=CLIP["probe"],
                      help=f"logistic regression (C by cross-validation) or k nearest neighbours "
                           f"(default: {CLIP['probe']})")
    clip.add_argument("--k", type=positive_int, default=CLIP["k"],
                      help=f"neighbours for --probe knn (default: {CLIP['k']})")
    clip.add_argument("--cache-dir", type=Path,
                      help="feature cache (clip) or score cache (hf, python), kept by the detector for eval and "
                           "scan (default: $SYNTHSCOPE_CACHE/clip-features or detector-scores, or ~/.cache/synthscope)")
    clip.add_argument("--no-cache", action="store_true",
                      help="do not read or write the feature or score cache (now, nor when evaluating or scanning)")
    external = train.add_argument_group(
        "a model trained elsewhere (--kind hf, python, scores): nothing is trained, the threshold is fixed on "
        "--real alone")
    external.add_argument("--model", metavar="ID_OR_FOLDER",
                          help="--kind hf: a transformers image classifier, a hub id or a folder written by "
                               "save_pretrained with its image processor")
    external.add_argument("--fake-label", metavar="NAME",
                          help="--kind hf: the label whose probability is P(fake) (default: the one that reads "
                               "fake, ai, generated or synthetic)")
    external.add_argument("--callable", metavar="MODULE:FUNCTION",
                          help="--kind python: a function taking a list of PIL images and returning one score per "
                               "image, higher meaning more likely fake (P(fake) unless --calibrate)")
    external.add_argument("--scores", type=Path, metavar="SCORES.csv",
                          help="--kind scores: a CSV (columns path, score) of a model synthscope cannot call; the "
                               "rows of --real's images fix the threshold. A row matches an image by its absolute "
                               "path, or its path relative to the CSV's folder")
    external.add_argument("--input-size", type=positive_int, metavar="PX",
                          help=f"the size images are read at (default: the hf model's own; "
                               f"{EXTERNAL['python_size']} for python)")
    external.add_argument("--calibrate", action="store_true",
                          help="fit a Platt (logistic) calibration of the scores on --real and --fake, so that "
                               "scores read as probabilities")
    gan = train.add_argument_group("GAN discriminator baseline (--kind gan-discriminator)")
    gan.add_argument("--gan-run", type=Path, help="a GAN run folder ('synthscope generate train --model gan')")
    add_common(train)

    evaluate = add_command(
        actions, "eval", eval_handler, workload=workload, help="deployment metrics of a detector on test corpora")
    evaluate.add_argument("detector_dir", type=Path)
    evaluate.add_argument("--real", type=Path, help="real test corpus")
    evaluate.add_argument("--fake", type=Path, nargs="*", default=[], help="synthetic test corpora")
    evaluate.add_argument("--out", required=True, type=Path, help="results folder")
    evaluate.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap resamples (default: 1000)")
    evaluate.add_argument("--scores", type=Path, metavar="SCORES.csv",
                          help="a detector made with --kind scores: the CSV holding the test images' scores "
                               "(default: the one given at train)")
    evaluate.add_argument("--robustness", nargs="*", metavar="SWEEP", choices=list(SWEEP_NAMES),
                          help=f"perturbation sweeps to run, applied alike to reals and fakes "
                               f"({', '.join(SWEEP_NAMES)}; no names: all of them)")
    add_common(evaluate)

    matrix = add_command(
        actions, "matrix", matrix_handler, workload=workload,
        help="cross-generator matrix and leave-one-generator-out")
    matrix.add_argument("--real", required=True, type=Path, help="corpus (or image folder) of real images")
    matrix.add_argument("--fake", required=True, type=Path, nargs="+",
                        help="synthetic corpora, each named by its folder")
    matrix.add_argument("--out", required=True, type=Path, help="results folder")
    matrix.add_argument("--test-fraction", type=bounded(float, 0.05, 0.95), default=0.3,
                        help="share of every corpus kept for testing (default: 0.3)")
    matrix.add_argument("--bootstrap", type=positive_int, default=200,
                        help="bootstrap resamples per cell (default: 200)")
    matrix.add_argument("--fixed", type=Path, nargs="+", default=[], metavar="DET_DIR",
                        help="saved detectors (e.g. --kind hf, python or scores) added as rows tested on every "
                             "corpus as they are: never trained here, at their own saved threshold")
    add_training_options(matrix)
    add_common(matrix)

    scan = add_command(actions, "scan", scan_handler, workload=workload, help="score every file of a folder (CSV)")
    scan.add_argument("detector_dir", type=Path)
    scan.add_argument("folder", type=Path)
    scan.add_argument("--out", required=True, type=Path, help="CSV file to write (not a folder)")
    add_common(scan, seed=False)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The CNN detector's training settings, shared by 'detect train' and 'detect matrix'; their defaults
    are the estimator's (synthscope.detectors.defaults, read without torch)."""
    low, high = CNN["blur_sigma"]
    parser.add_argument("--arch", choices=list(ARCHS), default=CNN["arch"],
                        help=f"network (default: {CNN['arch']}, trains in about a minute on a CPU)")
    parser.add_argument("--pretrained", choices=["none", "imagenet"], default=CNN["pretrained"] or "none",
                        help="start a ResNet from torchvision's ImageNet weights (needs them downloaded once)")
    parser.add_argument("--size", type=positive_int, default=CNN["size"],
                        help=f"input size in px (default: {CNN['size']})")
    parser.add_argument("--epochs", type=positive_int, default=CNN["epochs"],
                        help=f"at most this many epochs (default: {CNN['epochs']})")
    parser.add_argument("--patience", type=positive_int, default=CNN["patience"],
                        help=f"stop after this many epochs without a better validation loss "
                             f"(default: {CNN['patience']})")
    parser.add_argument("--batch-size", type=positive_int, default=CNN["batch_size"])
    parser.add_argument("--p-blur", type=probability, default=CNN["p_blur"],
                        help=f"blur augmentation probability (default: {CNN['p_blur']}; CNNDetection's other "
                             f"setting is 0.1)")
    parser.add_argument("--p-jpeg", type=probability, default=CNN["p_jpeg"],
                        help=f"JPEG augmentation probability (default: {CNN['p_jpeg']})")
    parser.add_argument("--blur-sigma", type=float, nargs=2, default=CNN["blur_sigma"], metavar=("LOW", "HIGH"),
                        help=f"blur sigma range in px (default: {low:g} {high:g}, made for 256 px images; scale it "
                             f"down for small ones)")
    parser.add_argument("--jpeg-quality", type=int, nargs=2, default=CNN["jpeg_quality"], metavar=("LOW", "HIGH"),
                        help="JPEG quality range (default: {} {})".format(*CNN["jpeg_quality"]))
    parser.add_argument("--target-fpr", type=probability, default=THRESHOLD["target_fpr"],
                        help=f"false-positive rate the threshold is set for, on held-out reals "
                             f"(default: {THRESHOLD['target_fpr']})")


def training_options(args: argparse.Namespace) -> dict:
    """The CNN training settings of 'detect train' and 'detect matrix', as keyword arguments: the CNN
    estimator's parameters that are options, and the target FPR."""
    from synthscope.detectors.perturbations import BlurJpegAugment

    try:  # check the ranges before any image is read
        BlurJpegAugment(args.p_blur, args.p_jpeg, sigma=args.blur_sigma, quality=args.jpeg_quality)
    except ValueError as error:
        raise UsageError(f"--blur-sigma/--jpeg-quality: {error}") from None
    options = {name: getattr(args, name) for name in CNN_OPTIONS}
    options.update(pretrained=None if args.pretrained == "none" else args.pretrained,
                   blur_sigma=tuple(args.blur_sigma), jpeg_quality=tuple(args.jpeg_quality), target_fpr=args.target_fpr)
    return options


def workload(args: argparse.Namespace) -> str:
    """LARGE for a CLIP detector or a ResNet (asked for, or the saved detector's kind for eval and scan),
    TINY otherwise; judged without importing torch models."""
    from synthscope.runtime import LARGE, TINY

    if getattr(args, "kind", None) in ("clip", "hf") or str(getattr(args, "arch", "small")).startswith("resnet"):
        return LARGE
    detector_dir = getattr(args, "detector_dir", None)
    if detector_dir is not None:  # eval and scan: the saved detector's kind
        model = _saved_model(detector_dir)
        if model.get("kind") in ("clip", "hf") or str(model.get("arch", "")).startswith("resnet"):
            return LARGE
    return TINY


def _saved_model(detector_dir: Path) -> dict:
    """The ``model`` section of a saved detector.json, read without torch; empty when it cannot be read (the
    command itself then reports the missing or broken detector)."""
    try:
        model = json.loads((Path(detector_dir) / "detector.json").read_text()).get("model", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return model if isinstance(model, dict) else {}


def _check_output_folder(args: argparse.Namespace) -> None:
    """Before any image is read or any detector trained."""
    from synthscope.detectors.base import check_output_folder

    check_output_folder(args.out)


def _write_report(args: argparse.Namespace, section, summary: list[str], command: str) -> None:
    from synthscope.reports import Report, collect_provenance, write_report

    write_report(Report(title="synthscope detectors", subtitle=command, summary=summary, sections=[section],
                        provenance=collect_provenance({"command": f"synthscope {command}"})), args.out)
    print("\n".join(summary))
    print(f"results and report -> {args.out}")


def _require_fakes(args: argparse.Namespace) -> None:
    if not args.fake:
        raise UsageError(f"--kind {args.kind} needs --fake: one or more synthetic corpora")


def _train_cnn(args: argparse.Namespace, progress: bool):
    _require_fakes(args)
    from synthscope.detectors import training

    return training.train_detector(args.real, args.fake, args.out, size=args.size, seed=args.seed,
                                   device=args.device, progress=progress, **training_options(args))


def _train_clip(args: argparse.Namespace, progress: bool):
    _require_fakes(args)
    from synthscope.detectors.clip import train_clip_detector

    return train_clip_detector(
        args.real, args.fake, args.out, model=args.clip_model,
        pretrained=None if args.clip_checkpoint else args.clip_pretrained, checkpoint=args.clip_checkpoint,
        probe=args.probe, k=args.k, size=args.size, target_fpr=args.target_fpr, seed=args.seed,
        device=args.device, cache_dir=args.cache_dir, cache=not args.no_cache, progress=progress)


def _train_discriminator(args: argparse.Namespace, progress: bool):
    if args.gan_run is None:
        raise UsageError("--kind gan-discriminator needs --gan-run RUN_DIR")
    if args.fake:
        raise UsageError("--kind gan-discriminator takes no --fake: only reals fix its threshold")
    from synthscope.detectors.discriminator import make_discriminator_detector

    return make_discriminator_detector(args.gan_run, args.real, args.out, target_fpr=args.target_fpr,
                                       seed=args.seed, device=args.device, progress=progress)


# Where each external kind's model comes from: its option, the attribute argparse gives it, what it names.
EXTERNAL_SOURCES = {"hf": ("--model", "model", "ID_OR_FOLDER"), "python": ("--callable", "callable", "MODULE:FUNCTION"),
                    "scores": ("--scores", "scores", "SCORES.csv")}


def _train_external(args: argparse.Namespace, progress: bool):
    flag, attribute, metavar = EXTERNAL_SOURCES[args.kind]
    source = getattr(args, attribute)
    if not source:
        raise UsageError(f"--kind {args.kind} needs {flag} {metavar}")
    others = [other for kind, (other, name, _) in EXTERNAL_SOURCES.items() if kind != args.kind and getattr(args, name)]
    if others:
        raise UsageError(f"--kind {args.kind} takes {flag}, not {', '.join(others)}")
    from synthscope.detectors.external import make_external_detector

    run, report = make_external_detector(
        args.kind, str(source), args.real, args.out, args.fake, fake_label=args.fake_label, size=args.input_size,
        calibrate=args.calibrate, target_fpr=args.target_fpr, seed=args.seed, batch_size=args.batch_size,
        device=args.device, cache_dir=args.cache_dir, cache=not args.no_cache, progress=progress)
    if report is not None:
        print("on --real and --fake at the threshold (the reals fixed it, so their false-positive rate is the "
              "target by construction; test on other images with 'synthscope detect eval'):")
        print(report.table()[["metric", "value", "ci_low", "ci_high"]].to_string(index=False))
    return run


# How 'detect train' trains each detector kind; it returns the training run, or None on the other
# processes of a multi-process run.
TRAINERS = {"cnn": _train_cnn, "clip": _train_clip, "gan-discriminator": _train_discriminator,
            "hf": _train_external, "python": _train_external, "scores": _train_external}


def train_handler(args: argparse.Namespace, progress: bool) -> None:
    """Train a detector: a CNN (balanced batches, blur+JPEG augmentation), a probe on frozen CLIP features
    (UnivFD), or a trained GAN's own discriminator as a baseline; or bring a model trained elsewhere (a
    transformers classifier, a Python function, or a CSV of its scores), of which only the threshold is
    fixed. The decision threshold is fixed on held-out real images for --target-fpr, never on test labels."""
    _check_output_folder(args)
    run = TRAINERS[args.kind](args, progress)
    if run is None:  # another process of a multi-process run: the main one reports
        return
    print(f"detector -> {args.out} (threshold {run.threshold:.4g} for {run.target_fpr:.1%} FPR on held-out "
          f"reals; {run.seconds:.0f} s)")


def eval_handler(args: argparse.Namespace, progress: bool) -> None:
    """AP, ROC-AUC, accuracy at the saved threshold, TPR at 1 % and 0.1 % FPR, EER, calibration, each with
    a 95 % interval, a per-generator breakdown (each generator marked as seen or unseen in the detector's
    training, the two measured apart) and a format-shortcut check; with --robustness, perturbation sweeps
    too. Writes metrics.json, metrics.csv, per_source.csv, seen_unseen.csv, scores.csv, robustness.csv,
    format_shortcut.csv and an HTML report (index.html) into --out. A detector made with --kind scores reads
    the test images' scores from --scores (default: its own CSV); it runs no sweep (no model to call)."""
    _check_output_folder(args)
    if args.real is None and not args.fake:
        raise UsageError("give --real, --fake or both")
    from synthscope.detectors.assessment import assess_detector
    from synthscope.detectors.report_section import assessment_summary, detector_section

    from_csv = _saved_model(args.detector_dir).get("kind") == "scores"
    if args.scores is not None and not from_csv:
        raise UsageError(f"--scores: {args.detector_dir} is not a detector made with 'synthscope detect train --kind "
                         f"scores'; make one from the CSV with it, or leave --scores out")
    notes = []
    if from_csv:
        from synthscope.detectors.external import NEEDS_MODEL, assess_scores

        if not is_main_process():  # the main process joins the scores and assesses
            return
        assessment = assess_scores(args.detector_dir, args.scores, args.real, args.fake, n_boot=args.bootstrap,
                                   seed=args.seed, progress=progress)
        notes.append(f"Scores read from a CSV: {NEEDS_MODEL}; "
                     + ("the --robustness sweeps were not run." if args.robustness is not None else "none was run."))
    else:
        sweeps = [] if args.robustness is None else (args.robustness or list(SWEEP_NAMES))
        assessment = assess_detector(args.detector_dir, real=args.real, fakes=args.fake, sweeps=sweeps,
                                     n_boot=args.bootstrap, seed=args.seed, device=args.device, progress=progress)
    if assessment is None:  # another process of a multi-process run: the main one assesses
        return
    assessment.save(args.out)
    print(assessment.report.table()[["metric", "value", "ci_low", "ci_high"]].to_string(index=False))
    # the summary heads the report, so the section need not repeat it
    _write_report(args, detector_section(assessment, summary=False), assessment_summary(assessment) + notes,
                  f"detect eval {args.detector_dir}")


def matrix_handler(args: argparse.Namespace, progress: bool) -> None:
    """Split every corpus once into training and test parts; train one detector per synthetic corpus, one
    on all of them and one per left-out corpus; test each on every corpus. Writes matrix.csv,
    leave_one_out.csv, the detectors and an HTML report into --out. Detectors trained before on the same
    images and settings are reused. --fixed adds saved detectors (a team's own model, say) as rows tested
    on the same test parts as they are, at their own threshold."""
    _check_output_folder(args)
    from synthscope.detectors.generalisation import cross_generator, fixed_summary, split_corpora
    from synthscope.detectors.report_section import detector_section, generalisation_summary

    split = split_corpora(args.real, args.fake, size=args.size, test_fraction=args.test_fraction,
                          seed=args.seed, progress=progress)
    result = cross_generator(split, args.out, n_boot=args.bootstrap, seed=args.seed, device=args.device,
                             progress=progress, fixed=args.fixed, size=args.size, **training_options(args))
    print(result.pivot("ap").round(3).to_string())
    trained, lines = fixed_summary(result)  # the summary's seen/unseen sentences are about trained rows only
    _write_report(args, detector_section(generalisation=result), generalisation_summary(trained) + lines,
                  "detect matrix")


def scan_handler(args: argparse.Namespace, progress: bool) -> None:
    """One CSV row per file of the folder, hidden ones included: path, P(fake), decision at the detector's
    threshold, or why the file could not be read (a symbolic link leading out of the folder is never
    read), and out_of_domain: why an image looks unlike the detector's training images (size, colour,
    pixel statistics). A corrupt, empty or non-image file never stops the scan."""
    from synthscope.detectors.scan import scan_folder

    table = scan_folder(args.detector_dir, args.folder, args.out, device=args.device, progress=progress)
    failed = int((table["error"] != "").sum())
    if is_main_process():
        print(f"{len(table)} files scored -> {args.out}" + (f" ({failed} could not be read)" if failed else ""))
