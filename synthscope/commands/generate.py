"""``synthscope generate train|sample|translate|memorisation``: train the built-in generators into run
folders, sample corpora, translate images with a translation model, and check samples for copies of
training images."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthscope.commands.common import (Subcommands, add_command, add_common, add_group, bounded, is_main_process,
                                        output_folder, positive_int)
from synthscope.registry import kind_names


def register(commands: Subcommands) -> None:
    actions = add_group(commands, "generate", help="train built-in generators and sample from them",
                        description="Train the built-in generators (AE, VAE, GAN, diffusion) "
                                    "and sample corpora from them.")

    train = add_command(
        actions, "train", train_handler, help="train a generator into a run folder (resumes an interrupted run)")
    train.add_argument("--model", required=True, choices=sorted(kind_names("generator")), help="generator kind")
    train.add_argument("--data", default="digits",
                       help="digits, portraits, or a folder of your own images (default: digits)")
    train.add_argument("--out", required=True, type=output_folder, help="run folder")
    train.add_argument("--conditional", action="store_true",
                       help="condition on labels/prompts (gan, diffusion; needs digits or portraits)")
    train.add_argument("--steps", type=positive_int, help="optimiser steps in total (default: per model, ~2 min on CPU)")
    train.add_argument("--size", type=positive_int, help="image size in px (default: 16 for digits, 32 otherwise)")
    train.add_argument("--n", type=positive_int, help="use at most N images (portraits: how many to draw)")
    train.add_argument("--translate", metavar="ATTRIBUTE:FROM->TO",
                       help="what a translation model (pix2pix, cyclegan) learns to change in portraits: "
                            "'age:young->older', 'age:older->young', colour (grey -> colour); quote it, "
                            "or the shell reads '>' as a redirect")
    train.add_argument("--set", dest="options", action="append", metavar="KEY=VALUE",
                       help="model option, repeatable (e.g. --set latent_dim=2 --set mode=denoising)")
    train.add_argument("--snapshot-every", type=positive_int, help="save a sample grid every N steps")
    train.add_argument("--no-eval", action="store_true",
                       help="skip lecture visuals and quality scores (translation models: L1 to the truth and "
                            "attribute preservation on held-out people)")
    train.add_argument("--force", action="store_true", help="start over instead of resuming")
    train.add_argument("--strict", action="store_true", help="a corrupt image in --data is an error")
    add_common(train)

    sample = add_command(actions, "sample", sample_handler, help="sample a trained generator into a corpus")
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
    add_common(sample)

    translate = add_command(actions, "translate", translate_handler,
                            help="translate images with a trained pix2pix or cyclegan into a corpus")
    translate.add_argument("run_dir", type=Path, help="run folder of a translation model ('generate train')")
    translate.add_argument("input", type=Path, help="a folder of images or a corpus to translate")
    translate.add_argument("--out", required=True, type=output_folder,
                           help="corpus folder; its manifest names each output's input (input_file)")
    translate.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default: 64)")
    translate.add_argument("--force", action="store_true", help="replace a corpus made differently instead of refusing")
    add_common(translate)

    memo = add_command(actions, "memorisation", memorisation_handler,
                       help="flag generated images that copy a training image")
    memo.add_argument("source", type=Path,
                      help="a run folder (its samples against its own training images) or a corpus / image folder")
    memo.add_argument("--train", help="the training set a corpus is checked against: digits, portraits, a "
                                      "folder or a corpus (needed for a corpus; a run folder knows its own)")
    memo.add_argument("--out", required=True, type=output_folder,
                      help="folder for memorisation.csv, memorisation.json and the closest-pairs figures")
    memo.add_argument("--n", type=positive_int, default=500, help="samples drawn from a run (default: 500)")
    memo.add_argument("--k", type=positive_int, default=50,
                      help="neighbours whose mean distance divides the nearest one (default: 50, Carlini et al. 2023)")
    memo.add_argument("--threshold", type=bounded(float, 0, 1), default=1 / 6,
                      help="flag a sample whose ratio is below this (default: 1/6, Carlini et al.'s CIFAR-10 setting)")
    add_common(memo)


def train_handler(args: argparse.Namespace, progress: bool) -> None:
    """Train a generator. Re-running with the same --out resumes from the last checkpoint; a larger
    --steps trains further. The run folder gets weights (safetensors + JSON), the loss history, lecture
    visuals and quality scores."""
    from synthscope.generators import translate_run, workflow

    if args.model in translate_run.TRANSLATION_KINDS or args.translate is not None:
        _train_translation(args, progress)
        return
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


def _train_translation(args: argparse.Namespace, progress: bool) -> None:
    from synthscope.commands.common import UsageError
    from synthscope.generators import translate_run, workflow

    if args.conditional:
        raise UsageError(f"--conditional: not for a translation model ({args.model})")
    run = translate_run.train_translation(
        args.model, args.data, args.out, translate=args.translate, steps=args.steps, seed=args.seed,
        size=args.size, n=args.n, device=args.device, options=workflow.parse_options(args.options),
        force=args.force, progress=progress, strict=args.strict, evaluate=not args.no_eval,
        snapshot_every=args.snapshot_every)
    print(f"trained {args.model} to step {run.step} in {run.seconds:.0f} s -> {args.out}")
    if run.evaluation is not None:
        print("\n".join(run.evaluation.summary_lines()))


def translate_handler(args: argparse.Namespace, progress: bool) -> None:
    """Translate every image of a folder or corpus with a trained translation model; the corpus's manifest
    names each output's input file. Re-running resumes and never duplicates images."""
    from synthscope.generators import translate_run

    out = translate_run.translate_to_corpus(args.run_dir, args.input, args.out, batch_size=args.batch_size,
                                            device=args.device, progress=progress, force=args.force)
    print(f"corpus -> {out}")


def sample_handler(args: argparse.Namespace, progress: bool) -> None:
    """Sample images from a trained run into a corpus folder (images/, manifest.csv, corpus.json).
    Re-running resumes and never duplicates images."""
    from synthscope.generators import workflow

    options = {k: v for k, v in {"guidance": args.guidance, "sampler": args.sampler,
                                 "steps": args.sample_steps}.items() if v is not None}
    out = workflow.sample_to_corpus(args.run_dir, args.out, n=args.n, prompts=args.prompt,
                                    seed=args.seed, batch_size=args.batch_size, device=args.device,
                                    progress=progress, force=args.force, **options)
    if is_main_process():
        print(f"corpus -> {out}")


def memorisation_handler(args: argparse.Namespace, progress: bool) -> None:
    """For every generated image, its nearest training images (in pixels and, for a run, in the quality
    judge's features) and Carlini et al.'s (2023) criterion: the distance to the nearest divided by the
    mean distance to the k nearest; a sample below the threshold is flagged as a likely copy. Prints
    the share flagged with its 95 % Wilson interval; writes the per-image table and the closest pairs."""
    from synthscope.commands.common import UsageError
    from synthscope.generators import memorisation

    if not args.source.is_dir():
        raise UsageError(f"{args.source}: no such folder (give a run folder, or a corpus with --train)")
    is_run = (args.source / "config.json").is_file() and (args.source / "model.safetensors").is_file()
    if is_run:
        check = memorisation.check_run(args.source, args.out, n=args.n, seed=args.seed, k=args.k,
                                       threshold=args.threshold, device=args.device)
    elif args.train is None:
        raise UsageError(f"{args.source}: not a run folder, so give --train (the images it may have copied)")
    else:
        check = memorisation.check_corpus(args.source, args.train, args.out, k=args.k, threshold=args.threshold,
                                          seed=args.seed, progress=progress)
    print("\n".join(memorisation.summary_lines(check)))
    print(f"per-image table and closest pairs -> {args.out}")
