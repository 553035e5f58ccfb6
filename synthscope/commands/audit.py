"""``synthscope audit init|run|label-sheet|import-labels``: bias audits of text-to-image models, and the
human label sheets that check their annotators."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from synthscope.commands.common import (Subcommands, add_command, add_common, add_group, output_file, output_folder,
                                        positive_int, seed_value)


def register(commands: Subcommands) -> None:
    actions = add_group(commands, "audit", help="bias audits of text-to-image models",
                        description="Prompt a text-to-image model across professions, read who gets "
                                    "depicted (perceived attributes), compare with a reference.")
    init = add_command(actions, "init", init_handler, help="write a commented example spec")
    init.add_argument("--out", type=output_file, default=Path("audit.toml"), help="spec file (default: audit.toml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    run = add_command(actions, "run", run_handler, workload=workload, help="run an audit from a spec")
    run.add_argument("spec", type=Path, help="audit spec (TOML; 'synthscope audit init' writes an example)")
    run.add_argument("--out", required=True, type=output_folder, help="audit folder")
    run.add_argument("--force", action="store_true",
                     help="replace images made by another model or with other settings instead of refusing")
    run.add_argument("--device", help="override the spec's device (cpu, cuda, cuda:N, mps, auto)")
    add_common(run, device=False, seed=False)  # the spec sets both (--device above overrides its device)

    sheet = add_command(actions, "label-sheet", label_sheet_handler, help="export images for human labelling")
    sheet.add_argument("audit_dir", type=Path, help="an audit folder (its images) or any corpus")
    sheet.add_argument("--out", required=True, type=output_folder, help="sheet folder")
    sheet.add_argument("--attributes", nargs="+", default=["gender", "skin_tone", "age"],
                       help="attributes to label (default: gender skin_tone age)")
    sheet.add_argument("--sample", type=positive_int, help="label a random sample of this many images")
    sheet.add_argument("--seed", type=seed_value, default=0, help="seed of the sample and the shuffled order")
    sheet.add_argument("--force", action="store_true", help="overwrite a sheet that already holds labels")

    labels = add_command(actions, "import-labels", import_labels_handler, help="read completed label sheets back")
    labels.add_argument("sheet_dir", type=Path, help="the folder 'audit label-sheet' wrote")
    labels.add_argument("csv", type=Path, nargs="+", help="completed sheets")
    labels.add_argument("--out", required=True, type=output_file, help="annotations CSV to write")


def workload(args: argparse.Namespace) -> str:
    """LARGE when the spec's backend is a diffusers pipeline, TINY otherwise (read without parsing the
    spec fully: the command itself reports a bad one)."""
    from synthscope.runtime import LARGE, TINY

    try:
        text = Path(args.spec).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return TINY  # the command itself reports an unreadable spec
    if re.search(r"""^\s*kind\s*=\s*["']diffusers["']""", text, flags=re.MULTILINE):
        return LARGE
    return TINY


def init_handler(args: argparse.Namespace, progress: bool) -> None:
    """Write a commented example audit spec (TOML) to edit."""
    from synthscope.audits.spec import example_spec_text

    if args.out.exists() and not args.force:
        raise FileExistsError(f"{args.out} exists; use --force to overwrite it")
    args.out.write_text(example_spec_text())
    print(f"example spec -> {args.out} (edit it, then: synthscope audit run {args.out} --out AUDIT_DIR)")


def run_handler(args: argparse.Namespace, progress: bool) -> None:
    """Generate every image the spec asks for (resumable: a re-run adds only what is missing), annotate
    them, compute shares with 95 % intervals, compare with the reference and write an HTML report
    (AUDIT_DIR/index.html) with the tables beside it."""
    from synthscope.audits.audit import run_audit

    result = run_audit(args.spec, args.out, force=args.force, device=args.device, progress=progress)
    if result is not None:  # None on the other processes of a multi-process run: the main one reports
        made = f"{result.generation.total} images ({result.generation.generated} new)"
        print(f"{made}; report -> {result.report}" if result.report is not None else
              f"{made}; no report yet: nothing has read the images")
        if result.next_steps:
            print(result.next_steps)


def label_sheet_handler(args: argparse.Namespace, progress: bool) -> None:
    """Write labels.csv and a self-contained sheet.html (image ids and allowed values, never the prompt)
    for people to label perceived attributes."""
    from synthscope.audits.audit import corpus_folder
    from synthscope.audits.labels import export_label_sheet

    # An audit folder's corpus is AUDIT_DIR/images; an exported corpus has its manifest at the top.
    out = export_label_sheet(corpus_folder(args.audit_dir), args.out, attributes=tuple(args.attributes),
                             sample=args.sample, seed=args.seed, force=args.force)
    print(f"label sheet -> {out} (share sheet.html and a copy of labels.csv with each labeller; keep "
          f"label_sheet.json, which maps the sheet's ids to the images, to yourself)")


def import_labels_handler(args: argparse.Namespace, progress: bool) -> None:
    """Check completed sheets (one CSV per labeller, e.g. labels_alice.csv) and write them as annotations;
    every bad cell is reported as file:line: problem. Prints agreement between labellers (Cohen's and
    Fleiss' kappa, Krippendorff's alpha)."""
    from synthscope.audits.labels import agreement, import_labels, labeller_validity, read_label_sheet
    from synthscope.runtime import atomic_write_bytes
    from synthscope.tables import spreadsheet_safe

    labels = import_labels(args.csv, sheet_dir=args.sheet_dir)
    atomic_write_bytes(args.out, spreadsheet_safe(labels).to_csv(index=False).encode())
    print(f"{labels['image_id'].nunique()} images, {labels['annotator'].nunique()} labellers -> {args.out}")
    if labels["annotator"].nunique() > 1:
        for attribute in sorted(set(labels["attribute"])):
            print(agreement(labels, attribute).to_string(index=False, na_rep=""))
    corpus = Path(read_label_sheet(args.sheet_dir)["corpus"])
    validity = labeller_validity(labels, corpus) if corpus.is_dir() else None
    if validity is not None and len(validity):
        print(f"labellers against the known truth of {corpus} (accuracy with its 95 % Wilson interval; "
              f"'undetermined' counts as not correct):")
        print(validity.to_string(index=False))
