"""``synthscope audit run``: from a spec to images, annotations, metrics and a report.

Every stage writes into the audit folder as it goes and the generation resumes, so an audit that is
killed and started again loses nothing and duplicates nothing.

Launched as several processes (``accelerate launch ... -m synthscope audit run``), every process
generates and annotates the images it owns (:mod:`synthscope.distributed`); the main process trains
the builtin model first, merges the parts, and alone measures and writes the report.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from synthscope.distributed import Shard, current_shard
from synthscope.generators.corpus import MANIFEST_NAME, read_corpus
from synthscope.errors import UserError
from synthscope.fingerprint import fingerprint
from synthscope.reports import Report, Section, Table, collect_provenance, write_report
from synthscope.runtime import atomic_write_bytes, atomic_write_json
from synthscope.tables import spreadsheet_safe

from .annotators import annotate, annotator_from_spec
from .backends import BuiltinBackend, DiffusersBackend, TextToImageBackend
from .labels import import_labels, labeller_agreement, majority_labels, read_agreement
from .metrics import (ABSTAIN, amplification, attribute_shares, audit_metrics, is_metric_table, reference_gap,
                      typed_table)
from .reference import load_reference, training_world_reference
from .report_section import audit_section, headline_annotator, reference_rows_table
from .runner import GenerationSummary, ImageJob, generate_corpus
from .spec import PROBE_ATTRIBUTES, AuditSpec, BuiltinBackendSpec, HumanAnnotatorSpec, load_spec

IMAGES_DIR = "images"
MODEL_DIR = "model"
SPEC_FILE = "spec.json"
TABLES_DIR = "audit_tables"


def corpus_folder(folder: Path | str) -> Path:
    """The corpus to read for ``folder``: the folder itself when it holds a manifest.csv (an exported
    corpus keeps its images in ``images/`` beside its manifest), an audit folder's ``images/`` when that
    holds the manifest, else the folder itself, read as a plain folder of images."""
    folder = Path(folder)
    if (folder / MANIFEST_NAME).is_file():
        return folder
    if (folder / IMAGES_DIR / MANIFEST_NAME).is_file():
        return folder / IMAGES_DIR
    return folder


def image_jobs(spec: AuditSpec) -> list[ImageJob]:
    """One job per image of the spec, keyed and seeded so that image i of a prompt never changes."""
    jobs = []
    for prompt in spec.expand():
        attributes = {"profession": prompt.profession, "template": prompt.template,
                      "template_index": prompt.template_index, "descriptor": prompt.descriptor or ""}
        key = prompt.key  # a hash: computed once per prompt, not per image
        jobs += [ImageJob(f"{key}#{i}", prompt.prompt, seed, prompt.guidance, attributes)
                 for i, seed in enumerate(prompt.seeds)]
    return jobs


def make_backend(spec: AuditSpec, out: Path, device: str | None = None, progress: bool = True) -> TextToImageBackend:
    """The spec's text-to-image backend. The builtin model is trained on first use (into the spec's
    checkpoint folder, or the audit's ``model/``) and reused afterwards."""
    backend = spec.backend
    device = device or backend.device
    if isinstance(backend, BuiltinBackendSpec):
        return BuiltinBackend.from_training(run_dir=backend.checkpoint or out / MODEL_DIR,
                                            distribution=backend.world(), steps=backend.train_steps,
                                            device=device, progress=progress, sample_steps=backend.steps)
    return DiffusersBackend(backend.model, num_inference_steps=backend.steps,
                            negative_prompt=backend.negative_prompt or None, height=backend.size,
                            width=backend.size, dtype=backend.resolved_dtype(device), device=device,
                            batch_size=backend.batch_size)


def generate_images(spec_path: Path | str, out: Path | str, force: bool = False, device: str | None = None,
                    progress: bool = True, shard: Shard | None = None) -> tuple[AuditSpec, GenerationSummary]:
    """Validate the spec, record it, and generate (or finish generating) every image it asks for.

    ``shard``: this process's place when several run the audit together (None: alone)."""
    shard = shard or Shard()
    spec = load_spec(spec_path)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: exists and is not a folder")
    if shard.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / SPEC_FILE, spec.to_dict())
        atomic_write_bytes(out / "spec.toml", Path(spec_path).read_bytes())
    device = str(shard.device(device or spec.backend.device))
    with shard.main_first():  # the builtin model is trained once, by the main process, then read
        backend = make_backend(spec, out, device=device, progress=shard.progress(progress))
    summary = generate_corpus(image_jobs(spec), backend, out / IMAGES_DIR, force=force, progress=progress,
                              shard=shard)
    return spec, summary


def describe_summary(summary: GenerationSummary) -> dict[str, Any]:
    """The generation counts, for the report's provenance."""
    return {"images": summary.total, "generated_now": summary.generated, "already_done": summary.already_done,
            "nsfw_filtered": summary.nsfw_filtered}


def references(spec: AuditSpec) -> tuple[pd.DataFrame | None, str | None, pd.DataFrame | None]:
    """The main reference for the comparison charts, its name, and a second one.

    For the builtin model the main reference is its own training world (did the model amplify what it
    was shown?), and the labour statistics come second; for any other model, the labour statistics
    (or the user's CSV) are the reference."""
    source = spec.reference.path or spec.reference.source
    professions = list(spec.prompts.professions)
    labour = None if source == "none" else load_reference(source, professions=professions)
    if isinstance(spec.backend, BuiltinBackendSpec):
        return training_world_reference(spec.backend.world()), "training world", labour
    return labour, None, None


def run_audit(spec_path: Path | str, out: Path | str, force: bool = False, device: str | None = None,
              progress: bool = True, annotator_options: dict[str, dict[str, Any]] | None = None) -> AuditResult | None:
    """Generate, annotate, measure and report: ``out/index.html`` and the tables beside it.

    ``annotator_options`` maps an annotator kind to extra options for it (e.g.
    ``{"probe": {"n_train": 1000}}`` for a quicker probe). Launched as several processes, each one
    generates and annotates its share; the main process writes the tables and the report and returns
    the result, the others return None."""
    out = Path(out)
    shard = current_shard(device or load_spec(spec_path).backend.device)
    spec, summary = generate_images(spec_path, out, force=force, device=device, progress=progress, shard=shard)
    size = _image_size(out / IMAGES_DIR)
    annotators = [annotator_from_spec(a, size=size, **(annotator_options or {}).get(a.kind, {}))
                  for a in spec.annotators if a.kind != "human"]
    annotations = (annotate(out / IMAGES_DIR, annotators, out_dir=out, progress=progress, shard=shard)
                   if annotators else None)
    if not shard.is_main:
        return None  # measuring and reporting happen once, on the main process
    labels, waiting = human_labels(spec, out / IMAGES_DIR)
    steps = next_steps(spec, spec_path, out, waiting) if waiting else ""
    if labels is not None:
        if labels["annotator"].nunique() > 1:  # several labellers: their majority is one more annotator
            labels = pd.concat([labels, majority_labels(labels)], ignore_index=True)
        annotations = pd.concat([annotations, labels], ignore_index=True)  # labels carry the prompt metadata
    if annotations is None or annotations.empty:
        if steps:  # the images are written; people label them next
            return AuditResult(out, None, summary, {}, None, next_steps=steps)
        raise UserError(f"{spec_path}: no annotator produced labels (add a probe or clip annotator, or a "
                         f"human annotator with labels_csv)")
    reference, reference_name, second = references(spec)
    tables = audit_metrics(annotations, reference=reference, seed=spec.prompts.seed)
    if second is not None:
        shares = tables["shares_by_profession"]
        tables["reference_gap_labour"] = reference_gap(shares, second)
        tables["amplification_labour"] = amplification(shares, second, seed=spec.prompts.seed)
    agreement = labeller_agreement(labels) if labels is not None else None
    if agreement is not None and len(agreement):
        tables["labeller_agreement"] = agreement
    else:
        (out / TABLES_DIR / "labeller_agreement.csv").unlink(missing_ok=True)  # from an earlier run
    for name, table in tables.items():
        write_table(out, name, table)
    validity = pd.concat([a.validity() for a in annotators if hasattr(a, "validity")] or [pd.DataFrame()],
                         ignore_index=True)
    headline = headline_annotator(spec.to_dict(), list(dict.fromkeys(annotations["annotator"])))
    sheets = contact_sheets(out / IMAGES_DIR, annotations, annotator=headline)
    section = audit_section(tables, spec, contact_sheets=sheets, validity=validity,
                            annotator_prompts=pd.read_csv(out / "annotator_prompts.csv")
                            if (out / "annotator_prompts.csv").is_file() else None,
                            reference=reference, reference_name=reference_name, annotator=headline)
    if second is not None:
        section.subsections.append(labour_section(tables, second, list(spec.prompts.professions)))
    if isinstance(spec.backend, BuiltinBackendSpec) and annotators:
        check = training_images_check(spec, out, annotators, size, progress=progress)
        tables["training_images_check"] = check
        write_table(out, "training_images_check", check)
        section.subsections.insert(0, training_check_section(check))
    provenance = collect_provenance({"audit": spec.to_dict(), "generation": describe_summary(summary),
                                     "images": read_corpus(out / IMAGES_DIR).provenance})
    write_report(Report(title=f"Bias audit: {spec.name}", subtitle=spec.description, sections=[section],
                        summary=audit_summary(tables, summary, reference_name or "the reference"),
                        provenance=provenance), out)
    return AuditResult(out, out / "index.html", summary, tables, section, next_steps=steps)


def write_table(out: Path, name: str, table: pd.DataFrame) -> Path:
    """``out/audit_tables/<name>.csv``, for spreadsheets: a prompt or profession that begins like a
    formula (``=``, ``+``, ``-``, ``@``) is written with a leading quote so that it stays text. A table
    of :func:`audit_metrics` is written with its declared column types
    (:data:`~synthscope.audits.metrics.AUDIT_COLUMNS`)."""
    path = out / TABLES_DIR / f"{name}.csv"
    typed = typed_table(table) if is_metric_table(name) else table
    atomic_write_bytes(path, spreadsheet_safe(typed).to_csv(index=False).encode())
    return path


def read_table(out: Path, name: str) -> pd.DataFrame:
    """A table :func:`write_table` wrote, read back with the declared column types of a metrics table
    (an empty descriptor missing, True/False flags as booleans, values as text)."""
    path = out / TABLES_DIR / f"{name}.csv"
    if name == "labeller_agreement":
        return read_agreement(path)
    table = pd.read_csv(path)
    return typed_table(table) if is_metric_table(name) else table


@dataclass
class AuditResult:
    """Where an audit wrote its results, and its tables.

    ``report`` and ``section`` are None (and ``tables`` empty) when the images are made but nothing has
    read them yet: the audit's only annotators are people who have not labelled them. ``next_steps``
    then says what to do (export a label sheet, import the labels, run again); it is also set when
    other annotators made a report but some people's labels are still missing."""

    out: Path
    report: Path | None
    generation: GenerationSummary
    tables: dict[str, pd.DataFrame]
    section: Section | None
    next_steps: str = ""


def human_labels(spec: AuditSpec, corpus_dir: Path) -> tuple[pd.DataFrame | None, list[HumanAnnotatorSpec]]:
    """People's labels from each human annotator of the spec whose ``labels_csv`` exists (each read for
    its own attributes), and the human annotators still waiting for labels (no ``labels_csv``, or no
    file there yet). A labeller who labels one image's attribute in two of the files is an error."""
    parts, waiting = [], []
    for block in spec.annotators:
        if not isinstance(block, HumanAnnotatorSpec):
            continue
        if block.labels_csv is None or not block.labels_csv.exists():
            waiting.append(block)
            continue
        parts.append(import_labels([block.labels_csv], corpus_dir=corpus_dir, attributes=block.attributes)
                     .assign(_source=str(block.labels_csv)))
    if not parts:
        return None, waiting
    labels = pd.concat(parts, ignore_index=True)
    doubled = labels.duplicated(["image_id", "annotator", "attribute"], keep=False)
    if doubled.any():
        rows = labels[doubled]
        first = rows.iloc[0]
        files = " and ".join(dict.fromkeys(rows.loc[(rows["image_id"] == first["image_id"])
                                                    & (rows["annotator"] == first["annotator"]), "_source"]))
        raise UserError(f"{first['annotator']} labelled the {first['attribute']} of image {first['image_id']!r} "
                         f"in {files}; give each labeller's labels once")
    return labels.drop(columns="_source"), waiting


def next_steps(spec: AuditSpec, spec_path: Path | str, out: Path, waiting: list[HumanAnnotatorSpec]) -> str:
    """What to do when the spec's people have not labelled the images yet: the commands, in order, with
    this audit's folders filled in."""
    sheet = out / "label_sheet"
    attributes = list(dict.fromkeys(a for block in waiting for a in block.attributes))
    target = next((block.labels_csv for block in waiting if block.labels_csv is not None), None)
    why = "the spec's human annotator has no labels_csv" if target is None else f"{target} does not exist yet"
    q = shlex.quote
    flags = "" if tuple(attributes) == PROBE_ATTRIBUTES else " --attributes " + " ".join(map(q, attributes))
    lines = [f"no human labels yet: {why}. The images are in {out / IMAGES_DIR}; next:",
             f"  1. export a label sheet:  synthscope audit label-sheet {q(str(out))} --out {q(str(sheet))}{flags}",
             f"  2. give each labeller {sheet / 'sheet.html'} and a copy of {sheet / 'labels.csv'}; each returns "
             "it filled in as labels_<name>.csv (keep label_sheet.json to yourself)",
             f"  3. import the labels:  synthscope audit import-labels {q(str(sheet))} labels_alice.csv "
             f"labels_bob.csv --out {q(str(target or Path(spec_path).parent / 'human.csv'))}"]
    if target is None:
        lines.append(f'  4. set labels_csv = "human.csv" in the human annotator of {spec_path} (a path relative '
                     "to the spec's folder), then")
    lines.append(f"  {len(lines)}. run the audit again:  synthscope audit run {q(str(spec_path))} --out {q(str(out))}")
    return "\n".join(lines)


TRAINING_SAMPLE = 1600  # training-world images the check annotates (about 200 per built-in profession)


def training_images_check(spec: AuditSpec, out: Path, annotators: list, size: int,
                          n: int = TRAINING_SAMPLE, progress: bool = True) -> pd.DataFrame:
    """Does the measurement recover a bias we know? Annotate a sample of the model's training world and
    put each perceived share (with its Wilson interval) next to the world's true share.

    One row per annotator, profession and attribute value: true share, measured share of determined
    images with its interval, abstentions, and whether the interval holds the truth."""
    from synthscope.generators.corpus import CorpusWriter
    from synthscope.generators.portraits import generate_portraits

    world = spec.backend.world()
    provenance = {"generator": "real", "data": "portraits training world", "world": world.to_dict(), "n": n,
                  "size": size, "seed": spec.prompts.seed}
    # One folder per world and sample: a spec whose world changed must not reuse the old images.
    digest = fingerprint(provenance)[:12]
    corpus_dir = out / f"training_sample-{digest}"
    writer = CorpusWriter(corpus_dir, provenance)
    if len(writer) < n:
        sample = generate_portraits(n=n, seed=spec.prompts.seed, size=size, distribution=world)
        rows = sample.attributes.astype(str).assign(source="real", prompt=sample.captions).to_dict("records")
        writer.append(sample.images[len(writer):], rows[len(writer):])
    # The manifest's profession column is the truth, so the shares are per true profession.
    shares = attribute_shares(annotate(corpus_dir, annotators, progress=progress), by=("profession",))
    shares = shares[~shares["is_abstention"] & shares["profession"].isin(spec.prompts.professions)]
    expected = world.expected_shares().rename(columns={"expected_share": "true_share"})
    check = shares.merge(expected, on=["profession", "attribute", "value"], how="inner")
    check["inside_interval"] = ((check["share_of_determined_ci_low"] <= check["true_share"])
                                & (check["true_share"] <= check["share_of_determined_ci_high"]))
    columns = ["annotator", "profession", "attribute", "value", "true_share", "share_of_determined",
               "share_of_determined_ci_low", "share_of_determined_ci_high", "n_determined", "n_abstained",
               "inside_interval"]
    # Gender first: it is what the page shows before the "full table" link.
    order = check["attribute"].map({"gender": 0}).fillna(1)
    return check.assign(_order=order).sort_values(["_order", "attribute", "profession", "value"],
                                                  kind="stable")[columns].reset_index(drop=True)


def training_check_section(check: pd.DataFrame) -> Section:
    """The training-images check as a short section: does the audit see the bias that was put in?"""
    women = check[(check["attribute"] == "gender") & (check["value"] == "female")]
    results = []
    for annotator, rows in women.groupby("annotator", sort=False):  # each annotator read every image once
        n_read = int(rows["n_determined"].sum() + rows["n_abstained"].sum())
        results.append(f"{annotator} read {n_read} images; for {int(rows['inside_interval'].sum())} of "
                       f"{len(rows)} professions the true share of women lies inside the 95 % interval of "
                       f"the perceived share")
    return Section(
        id="audit-training-check", title="Check: does the audit recover the bias put into the training data?",
        intro="Before reading the model, each annotator read images of the world the model was trained on, "
              f"whose true shares are known: {'; '.join(results)} (about 95 % is what intervals promise). "
              "Where the truth falls outside, the annotator, not the model, is off, and the model's numbers "
              "below inherit that error.",
        blocks=[Table("Perceived vs true shares on training images", check, name="audit-training-check",
                      max_rows=16)])


def _image_size(corpus_dir: Path) -> int:
    """The side of the audit's images (the probe is trained at that size)."""
    corpus = read_corpus(corpus_dir)
    with Image.open(corpus.paths()[0]) as image:
        return min(image.size)


def contact_sheets(corpus_dir: Path, annotations: pd.DataFrame | None = None,
                   per_prompt: int = 16, annotator: str | None = None) -> dict[str, list[tuple[Path, str]]]:
    """Up to ``per_prompt`` images of every prompt (at its first guidance value), each labelled with
    what ``annotator`` (default: the first in ``annotations``) read (e.g. "female · tone 3 · age ?",
    "?" where it abstained), or with its seed when unread."""
    corpus = read_corpus(corpus_dir)
    manifest = corpus.manifest.assign(path=corpus.paths())
    readings: dict[str, str] = {}
    if annotations is not None and not annotations.empty and "file" in annotations:
        first = annotations[annotations["annotator"] == (annotator or annotations["annotator"].iloc[0])]
        names = first["attribute"].replace({"skin_tone": "tone"})
        values = first["value"].astype(str)
        words = values.where(first["attribute"] != "skin_tone", names + " " + values)  # "tone 3"
        words = words.where(values != ABSTAIN, names + " ?")  # the annotator abstained: "age ?"
        readings = words.groupby(first["file"], sort=False).agg(" · ".join).to_dict()
    sheets = {}
    for prompt, rows in manifest.groupby("prompt", sort=False):
        rows = rows[rows["guidance"] == rows["guidance"].iloc[0]].head(per_prompt)
        sheets[str(prompt)] = [(path, readings.get(file, f"seed {seed}"))
                               for path, file, seed in zip(rows["path"], rows["file"], rows["seed"])]
    return sheets


def labour_section(tables: dict[str, pd.DataFrame], reference: pd.DataFrame, professions: list[str]) -> Section:
    """The builtin model against US labour statistics (its world follows them unless skewed), with
    the table rows behind each profession's figure and the professions that have none."""
    source = str(reference["source"].iloc[0]) if len(reference) else "the labour statistics"
    return Section(
        id="audit-labour", title="Compared with US labour statistics",
        intro=f"The same measured shares against {source}. The built-in world follows these figures "
              "unless the spec skews it, so a gap here can come from the world or from the model; the "
              "comparison with the training world above separates the two.",
        blocks=[Table("Reference figures and the table rows behind them", reference_rows_table(reference, professions),
                      name="audit-labour-reference-rows"),
                Table("Gap to labour statistics", tables["reference_gap_labour"], name="audit-labour-gap"),
                Table("Amplification against labour statistics", tables["amplification_labour"],
                      name="audit-labour-amplification")])


def audit_summary(tables: dict[str, pd.DataFrame], generation: GenerationSummary, reference_name: str) -> list[str]:
    """Plain lines for the report's summary box."""
    lines = [f"{generation.total} images generated and annotated ({generation.generated} new in this run)."]
    amplified = tables.get("amplification")
    if amplified is not None and len(amplified):
        counts = amplified["verdict"].value_counts()
        lines.append(f"Against {reference_name}: {counts.get('amplified', 0)} of {len(amplified)} comparisons "
                     f"show the model further from parity (amplified), {counts.get('attenuated', 0)} closer.")
    lines.append("Attributes are perceived by annotators, not anyone's identity; every share has a 95 % interval.")
    return lines
