"""The ``synthscope`` command line. Usage errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from synthscope import __version__

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (anything else is bad usage, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_common(parser: argparse.ArgumentParser, device: bool = True, seed: bool = True) -> None:
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    if device:
        parser.add_argument("--device", default="auto",
                            help="cpu, cuda, cuda:N, mps or auto (default: auto = best available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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
    train.add_argument("--out", required=True, type=Path, help="run folder")
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
    sample.add_argument("--out", required=True, type=Path, help="corpus folder")
    sample.add_argument("--prompt", action="append",
                        help="prompt, repeatable (conditional models), e.g. 'a photo of a female doctor'")
    sample.add_argument("--guidance", type=float, help="classifier-free guidance scale (diffusion)")
    sample.add_argument("--sampler", choices=["ddim", "ddpm"], help="diffusion sampler (default: ddim)")
    sample.add_argument("--sample-steps", type=positive_int, help="diffusion sampling steps (default: 50 ddim, 1000 ddpm)")
    sample.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default: 64)")
    sample.add_argument("--force", action="store_true",
                        help="replace a corpus made differently (other run, seed or options) instead of refusing")
    _add_common(sample)

    # lab --------------------------------------------------------------------------------------
    lab = commands.add_parser(
        "lab", help="the main job: every stage on built-in data, then an HTML report",
        description="Train the built-in generators on built-in data (offline), write their corpora and "
                    "one self-contained HTML report (DIR/index.html). Re-running into the same DIR reuses "
                    "finished stages; --force redoes them.")
    lab.add_argument("--out", type=Path, default=Path("lab-report"), help="output folder (default: lab-report)")
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
    export.add_argument("--out", required=True, type=Path, help="corpus folder")
    export.add_argument("--force", action="store_true", help="replace a corpus made differently instead of refusing")
    _add_common(export, device=False)
    return parser


def run(args: argparse.Namespace) -> int:
    from synthscope.generators import workflow

    progress = not getattr(args, "quiet", False)
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
        print(f"corpus -> {out}")
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
        print(f"corpus -> {out}")
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings for a person at a terminal: one line, no source location."""
    print(f"synthscope: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    if argv is None:  # a real command line (not a call from Python code or a test)
        warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError, FileExistsError) as error:
        # Anticipated problems with the user's input: one clear line, no traceback.
        message = str(error).strip() or error.__class__.__name__
        print(f"synthscope: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("synthscope: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
