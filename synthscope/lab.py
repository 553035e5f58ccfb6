"""``synthscope lab``: the main job. Every stage on built-in data, offline, then one HTML report.

Stages are reused when their results exist (``force`` redoes them); training and corpus writing
resume by themselves, so an interrupted lab picks up where it stopped.
"""

from __future__ import annotations

import shutil
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from synthscope.errors import UserError, show_warning_line
from synthscope.fingerprint import Reuse, fingerprint
from synthscope.runtime import read_json, seed_everything

RUNS_DIR = "runs"
JUDGES_DIR = "judges"
CORPORA_DIR = "corpora"
DETECTORS_DIR = "detectors"
AUDIT_DIR = "audit"

# The lab's audit: a world where the gender split of each profession is pushed further than the
# labour statistics (and darker skin made rarer), so that students can see whether the model trained
# on it hands the skew back, amplifies it, or washes it out.
LAB_AUDIT_SPEC = """\
[audit]
name = "lab: professions in a skewed portraits world"
description = "The built-in diffusion model, trained on a deliberately skewed world, drawing eight professions."

[prompts]
templates = ["a photo of a {{profession}}", "a portrait of a {{profession}}"]
professions = ["doctor", "nurse", "engineer", "chief executive", "janitor", "teacher",
               "software developer", "housekeeper"]
images_per_prompt = {images_per_prompt}
seed = {seed}

[backend]
kind = "builtin"
train_steps = {train_steps}
steps = {sample_steps}
[backend.world_skew]
share_dark = 0.15
[backend.world_skew.share_female]
doctor = 0.15
nurse = 0.95
engineer = 0.05
"chief executive" = 0.1
janitor = 0.2
teacher = 0.9
"software developer" = 0.1
housekeeper = 0.95

[[annotators]]
kind = "probe"
attributes = ["gender", "skin_tone", "age"]
abstain_below = 0.6

[reference]
source = "bls-2022"
"""
# The audit model's training length: as short as still recovers the injected skew as a 1,500-step
# model does (benchmarks/lab_steps.py --audit: the same professions on the world's side of one half,
# the same rank correlation with the world).
LAB_AUDIT_STEPS = 600
REAL_DATA, REAL_CORPUS = "digits", "digits-real"  # what the generators sample and the detectors test
STAGE_RECORD = "lab_stage.json"  # in a run folder: what the finished stage was made from
STAGE_FORMAT = 1  # bumped when a stage's results change meaning, so that older ones are made again


@dataclass
class GeneratorStage:
    """One generator the lab trains, evaluates and samples a corpus from."""

    name: str
    kind: str
    title: str
    description: str
    data: str = "digits"
    conditional: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    quick_steps: int = 100
    corpus_size: int = 500  # 0: no corpus (lecture-only models)
    score: bool = True  # quality scores against held-out real images
    quick_options: dict[str, Any] = field(default_factory=dict)  # replace ``options`` under --quick

    def steps_for(self, quick: bool) -> int:
        return self.quick_steps if quick else self.steps

    def options_for(self, quick: bool) -> dict[str, Any]:
        return {**self.options, **self.quick_options} if quick else dict(self.options)




def lab_stages() -> list[GeneratorStage]:
    """The lab's generators. Each stage trains as few steps as keep its Fréchet distance within 10 %
    of a longer run's (measured by benchmarks/lab_steps.py, which keeps those longer references)."""
    return [
        GeneratorStage("ae-2d", "ae", "Autoencoder, 2-D latent",
                       "An autoencoder squeezes each digit through a bottleneck of only two numbers. "
                       "Compare its reconstructions with the 5-D one: two numbers cannot hold a digit.",
                       options={"latent_dim": 2}, steps=1500, quick_steps=150, corpus_size=0),
        GeneratorStage("ae", "ae", "Autoencoder, 5-D latent",
                       "The same autoencoder with five latent numbers. Its samples decode random points "
                       "from a Gaussian fitted to the training codes: an autoencoder has no prior of its own.",
                       options={"latent_dim": 5}, steps=1250, quick_steps=150),
        GeneratorStage("ae-denoising", "ae", "Denoising autoencoder",
                       "Trained to map noisy digits to clean ones.",
                       options={"latent_dim": 16, "mode": "denoising"}, steps=750, quick_steps=150,
                       corpus_size=0),
        GeneratorStage("ae-colourising", "ae", "Colourising autoencoder (portraits)",
                       "Trained to map grey portraits back to colour. Where colour is ambiguous "
                       "(skin tone, clothes), it has to guess from what it saw in training.",
                       # No distance to hold (not sampled). Batches of 64: 450 steps colour held-out
                       # portraits as closely (L1 0.047) as 300 of 128 (0.048), at 0.85x the time.
                       data="portraits", options={"latent_dim": 32, "mode": "colourising", "batch_size": 64},
                       steps=450, quick_steps=90, corpus_size=0, score=False),
        GeneratorStage("vae", "vae", "Variational autoencoder (VAE)",
                       "A VAE learns a latent space with a known prior, so sampling and interpolation "
                       "work by design.", steps=2000, quick_steps=200),
        GeneratorStage("gan", "gan", "GAN (DCGAN)",
                       "A generator and a discriminator trained against each other.",
                       steps=1250, quick_steps=200),
        GeneratorStage("diffusion", "diffusion", "Class-conditional diffusion",
                       "A small UNet learns to remove noise; sampling runs that in reverse from pure "
                       "noise, guided towards the requested digit (classifier-free guidance).",
                       conditional=True, steps=1000, quick_steps=120,
                       # DDIM in 25 steps draws samples as close to the real digits as in 50 (FD 9.5
                       # against 11.0) at half the cost. A quick run's samples are poor anyway: 20.
                       options={"sample_steps": 25}, quick_options={"sample_steps": 20}),
    ]


# The lab's image-to-image part: ageing portraits, with pairs (pix2pix) and without (CycleGAN).
LAB_TRANSLATION = "age:young->older"
TRANSLATION_PEOPLE = 600  # portraits drawn for training (80 %) and held-out measurement (20 %)
TRANSLATION_CORPUS_PEOPLE = 300  # further young people, translated by each model for the detector study
# Real portraits in that study: 70 % train a detector, of which 20 % fix its threshold, and a 1 %
# false-positive rate needs at least 100 of those.
TRANSLATION_REAL_PORTRAITS = 720
# Seed offset of the people in the detector study: none of them trained a translator.
TRANSLATION_CORPUS_SEED = 104729


@dataclass(frozen=True)
class TranslationStage:
    """One image-to-image model the lab trains on ageing portraits and translates a corpus with."""

    kind: str
    title: str
    steps: int
    quick_steps: int

    @property
    def name(self) -> str:
        return f"{self.kind}-ageing"

    def steps_for(self, quick: bool) -> int:
        return self.quick_steps if quick else self.steps


def translation_stages() -> list[TranslationStage]:
    """pix2pix learns ageing from pairs (the same person at both ages); CycleGAN from unpaired young and
    older people. A CycleGAN step costs about twice a pix2pix step (two generators, two critics)."""
    return [TranslationStage("pix2pix", "pix2pix (paired)", steps=1200, quick_steps=120),
            TranslationStage("cyclegan", "CycleGAN (unpaired)", steps=500, quick_steps=50)]


@dataclass
class TranslationResults:
    """The lab's translation part: each model's evaluation (``translation.json``) and visuals, and the
    detectors trained to tell translated portraits from drawn ones."""

    runs: dict[str, tuple[str, dict[str, Any], Path]]  # name -> (title, evaluation, visuals folder)
    corpora: dict[str, Path] = field(default_factory=dict)  # inputs, the real side, each model's outputs
    generalisation: Any = None


@dataclass
class LabResult:
    """Where the lab put things, and the three lines it prints at the end."""

    out: Path
    report: Path
    summary: list[str]
    seconds: float


@dataclass
class DetectorResults:
    """The lab's detector stage: the all-generators detector assessed, and the cross-generator study."""

    assessment: Any
    generalisation: Any


@dataclass
class LabRun:
    """One run of the lab: its settings, and what its parts hand on to the later ones and the report."""

    out: Path
    quick: bool
    force: bool
    seed: int
    device: str
    progress: bool
    corpora: dict[str, Path] = field(default_factory=dict)
    evaluations: list[Any] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    extras: list[Any] = field(default_factory=list)
    detectors: DetectorResults | None = None
    translation: TranslationResults | None = None
    audit: Any = None
    part_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each part, in order

    # What parts hand on to later parts and the report (the other fields are settings and bookkeeping).
    HANDED_ON: ClassVar[tuple[str, ...]] = ("corpora", "evaluations", "extras", "detectors", "translation", "audit")

    def handed_on(self) -> dict[str, Any]:
        """What the parts made in this run have handed on so far (the fields they filled)."""
        return {name: getattr(self, name) for name in self.HANDED_ON if getattr(self, name)}

    def take(self, handed_on: dict[str, Any]) -> None:
        """Add what parts made in another run of the same lab (the second process) handed on."""
        for name, value in handed_on.items():
            current = getattr(self, name)
            if isinstance(current, dict):
                current.update(value)
            elif isinstance(current, list):
                current.extend(value)
            else:
                setattr(self, name, value)


@dataclass(frozen=True)
class LabPart:
    """One step of the lab, in the order it runs: what it prints, what it does to the run, and which
    other parts' results it reads (``needs``)."""

    name: str
    message: str
    run: Callable[[LabRun], None]
    # A part that needs none may be made by the second process of ``run_lab(jobs=2)``; so may one
    # marked ``from_disk`` once its needs are made, as it reads them from the lab folder, not the run.
    needs: tuple[str, ...] = ()
    from_disk: bool = False


def lab_parts(quick: bool = False) -> list[LabPart]:
    """The lab, declared: real images, every generator stage, the lecture extras, the detectors and
    the audit; the report is written from what they leave in the :class:`LabRun`."""
    # The digits generators first and the portraits ones last: the second process starts from the last
    # part back, so the portraits parts fall to it, and the digits ones the detectors need to this one.
    # Among the digits, those whose corpora the detectors need come first, so that either process can
    # start on the detectors as soon as possible; the lecture-only ones (no corpus) after them, where
    # the second process, done with the portraits, takes them from the last back while this one is busy.
    stages = sorted(lab_stages(), key=lambda stage: (stage.data != REAL_DATA, not stage.corpus_size))
    generators = [LabPart(stage.name,
                          f"generator {number}/{len(stages)}: {stage.title} ({stage.steps_for(quick)} steps)",
                          partial(_generator_part, stage))
                  for number, stage in enumerate(stages, 1)]
    digits = [part for part, stage in zip(generators, stages) if stage.data == REAL_DATA]
    translation = translation_stages()
    translators = [LabPart(stage.name, f"image-to-image {number}/{len(translation)}: {stage.title}, ageing "
                                       f"portraits ({stage.steps_for(quick)} steps)", partial(_translator_part, stage))
                   for number, stage in enumerate(translation, 1)]
    sampled = tuple(stage.name for stage in stages if stage.corpus_size)
    return [
        LabPart("real", "real images", _real_part),
        *digits,
        LabPart("extras", "lecture figures across runs", _extras_part, needs=("ae-2d", "ae")),
        LabPart("memorisation", "memorisation: is each generator's corpus new, or copied from its training images?",
                _memorisation_part, needs=sampled),
        LabPart("detectors-each", "detectors: one per generator, one on all of them",
                partial(_train_detectors_part, left_out=False), needs=("real", *sampled), from_disk=True),
        LabPart("detectors-left-out", "detectors: one per left-out generator",
                partial(_train_detectors_part, left_out=True), needs=("real", *sampled), from_disk=True),
        LabPart("detectors", "detectors: the cross-generator matrix, then stress tests of the one on all",
                _detector_part, needs=("detectors-each", "detectors-left-out")),
        *translators,
        LabPart("translation", "image-to-image: further young people translated by each model, and detectors "
                               "of the translations", _translation_part,
                needs=tuple(part.name for part in translators), from_disk=True),
        LabPart("audit", "bias audit of a model trained on a skewed portraits world", _audit_part),
        *generators[len(digits):],
    ]


def run_lab(out: Path | str, quick: bool = False, force: bool = False, seed: int = 0,
            device: str = "auto", progress: bool = True, jobs: int = 1) -> LabResult:
    """Run every part of the lab (:func:`lab_parts`) into ``out`` and write ``out/index.html``.

    ``jobs=2``: a second process makes parts that need no other part, starting from the last (the
    audit, the translation models, ...) while this process works from the first, then helps with parts
    that read what they need from the lab folder (detectors) once that is made; when this one reaches
    a part the other has made, it takes what that part handed on (sent back pickled), or, if that could
    not be sent, reads the part back through the same reuse a re-run relies on. Each process computes
    with one thread while the other runs (runtime.ThreadGovernor): two one-thread processes do more on
    2 cores than one process with two threads."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: exists and is not a folder")
    if jobs not in (1, 2):
        raise UserError(f"--jobs must be 1 or 2, got {jobs}")
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    seed_everything(seed)
    run = LabRun(out, quick, force, seed, device, progress)
    parts = {part.name: part for part in lab_parts(quick)}
    with SecondProcess(run, list(parts.values()), start=jobs > 1) as second:
        def make(part: LabPart) -> None:
            there = second.claimed_there(part.name)
            _say(progress, f"[lab] {part.message}" + (" (made alongside, by the second process)" if there else ""))
            made_there = second.take_back(part.name) if there else None
            if made_there is not None and made_there.handed_on is not None:  # sent back: taken as it is
                run.take(made_there.handed_on)
                run.reused.extend(made_there.reused)
                seconds = made_there.seconds
            else:
                seconds, reused = _run_part(part, run)
                if made_there is not None:  # read back: what the second process made now is not a reuse
                    seconds += made_there.seconds
                    run.reused = [name for name in run.reused if name not in reused or name in made_there.reused]
            run.part_seconds[part.name] = seconds
            by = " (by the second process)" if made_there is not None else ""
            _say(progress, f"[lab]   done in {seconds:.0f} s{by}")
            second.mark_done(part.name)

        deferred = []  # parts the second process claimed, read back when needed or at the end
        for part in parts.values():
            for need in [need for need in part.needs if need in deferred]:
                deferred.remove(need)
                make(parts[need])
            if second.claim(part.name):
                make(part)
            else:
                deferred.append(part.name)
        for name in deferred:
            make(parts[name])
    order = [stage.name for stage in lab_stages()]  # the report's order, whichever process made them
    run.evaluations.sort(key=lambda evaluation: order.index(evaluation.name))
    _say(progress, "[lab] report")
    seconds = time.perf_counter() - began
    report_path = write_lab_report(out, run.evaluations, run.corpora, quick=quick, seed=seed, seconds=seconds,
                                   extras=run.extras, reused=run.reused, detectors=run.detectors,
                                   audit=run.audit, translation=run.translation, part_seconds=run.part_seconds,
                                   alongside=second.made_there())
    summary = lab_summary(run.evaluations, run.corpora, report_path, seconds, run.reused, run.detectors,
                          run.audit, run.translation)
    return LabResult(out, report_path, summary, seconds)


@dataclass(frozen=True)
class MadeAlongside:
    """What the second process reports of one part: its seconds there, which of its stages it
    reused (from an earlier lab) rather than made, and what the part handed on (:meth:`LabRun.handed_on`;
    None when that could not be sent, and the part is read back from the lab folder instead);
    ``error`` when it failed there."""

    name: str
    seconds: float = 0.0
    reused: tuple[str, ...] = ()
    handed_on: dict[str, Any] | None = None
    error: str | None = None


MAIN, SECOND = 1, 2  # who claimed a part


class SecondProcess:
    """The second process of ``run_lab(jobs=2)`` (spawned, not forked: a forked copy of a process
    holding torch's threads can hang). The two processes share one claim per part, so each part is
    made once: this one claims from the first part on (:meth:`claim`), the other from the last part
    that needs no other, then the ``from_disk`` parts whose needs are done (:meth:`mark_done`).
    :meth:`take_back` waits for a part the other made. A part that failed there, or a second process
    that died, is simply made here, so its error surfaces as any other would. With ``start=False``
    there is no second process and every claim succeeds."""

    def __init__(self, run: LabRun, parts: Sequence[LabPart], start: bool = True) -> None:
        self.run, self.names, self.start = run, [part.name for part in parts], start
        self.claims = self.done_flags = self.process = self.messages = None
        self.done: dict[str, MadeAlongside] = {}

    def __enter__(self) -> SecondProcess:
        if self.start:
            import multiprocessing

            import torch

            from synthscope.runtime import threads_are_automatic

            context = multiprocessing.get_context("spawn")
            self.claims, self.done_flags = context.Array("b", len(self.names)), context.Array("b", len(self.names))
            self.messages = context.Queue()
            threads = None if threads_are_automatic() else torch.get_num_threads()
            settings = {"out": str(self.run.out), "quick": self.run.quick, "force": self.run.force,
                        "seed": self.run.seed, "device": self.run.device,
                        # a command line's warnings are one line each in this process: in the other too
                        "warning_lines": warnings.showwarning is show_warning_line}
            self.process = context.Process(target=_second_process_main,
                                           args=(settings, self.claims, self.done_flags, threads, self.messages),
                                           name="synthscope-lab-second")
            self.process.start()
        return self

    def claim(self, name: str) -> bool:
        """Whether this process makes part ``name`` (False: the other one has claimed it)."""
        return self.claims is None or claim_part(self.claims, self.names.index(name), MAIN)

    def mark_done(self, name: str) -> None:
        """Tell the second process that part ``name`` is made (it may be waiting to build on it)."""
        if self.done_flags is not None:
            self.done_flags[self.names.index(name)] = 1

    def claimed_there(self, name: str) -> bool:
        """Whether the second process has claimed part ``name``."""
        return self.claims is not None and self.claims[self.names.index(name)] == SECOND

    def take_back(self, name: str) -> MadeAlongside | None:
        """How the second process made part ``name``, once it has; None if this process claimed it,
        or the other failed at it or died first (then this one makes it)."""
        import queue

        if not self.claimed_there(name):
            return None
        while name not in self.done:
            try:
                message = self.messages.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive() and self.messages.empty():
                    return None
                continue
            self.done[message.name] = message
        made = self.done[name]
        if made.error is not None:
            _say(self.run.progress, f"[lab]   the second process failed at {name} ({made.error}); making it here")
            return None
        return made

    def made_there(self) -> list[str]:
        """The parts the second process made (in the lab's order)."""
        return [name for name in self.names if name in self.done and self.done[name].error is None]

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            if self.process.is_alive():  # this process stopped early (an error, Ctrl-C): so does the other
                self.process.terminate()
            self.process.join()
            self.messages.close()
            # Dropped now, not when an interrupted run's traceback lets go of them, so that their
            # semaphores are released before the interpreter exits.
            self.claims = self.done_flags = self.messages = None


def claim_part(claims, index: int, who: int) -> bool:
    """Claim part ``index`` for ``who`` unless the other process has; shared by both processes."""
    with claims.get_lock():
        if claims[index] == 0:
            claims[index] = who
        return claims[index] == who


def _second_process_main(*args: Any) -> None:
    """The spawned process's entry point. Ctrl-C reaches both processes; the main one stops this one
    (SecondProcess.__exit__), so this one ignores it rather than print a second traceback. A main
    process killed outright cannot stop it: a watcher thread ends it when the main process is gone."""
    import multiprocessing
    import os
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = args[0]  # as _second_process takes it
    if settings.get("warning_lines"):  # started from the command line: its warnings are one line each
        warnings.showwarning = show_warning_line
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True,
                         name="synthscope-lab-parent-watch").start()
    _second_process(*args)


def _second_process(settings: dict[str, Any], claims, done, threads: int | None, messages,
                    poll_seconds: float = 0.5) -> None:
    """Make, quietly and from the last, each part that needs no other, until one is claimed by the
    main process (which works from the first, so every part before it is claimed too); then each
    ``from_disk`` part, from the last, as soon as its needs are done, until all are claimed."""
    from synthscope.runtime import choose_threads, use_threads

    use_threads(threads or choose_threads(), automatic=threads is None)
    seed_everything(settings["seed"])
    parts = lab_parts(settings["quick"])
    names = [part.name for part in parts]

    def make(index: int) -> None:
        # A run of its own per part: the parts made here read nothing from the run (they need no other
        # part, or read it from the lab folder), so what it holds afterwards is what this part handed on.
        run = LabRun(Path(settings["out"]), settings["quick"], settings["force"], settings["seed"],
                     settings["device"], progress=False)
        try:
            seconds, reused = _run_part(parts[index], run)
        except Exception as error:  # made again by the main process, which reports it properly
            messages.put(MadeAlongside(names[index], error=f"{type(error).__name__}: {error}"))
            return
        done[index] = 1
        messages.put(MadeAlongside(names[index], seconds, reused, _sendable(run.handed_on())))

    for index in reversed(range(len(parts))):
        if parts[index].needs:
            continue
        if not claim_part(claims, index, SECOND):
            break
        make(index)
    while True:
        open_parts = [index for index, part in enumerate(parts) if part.from_disk and claims[index] == 0]
        if not open_parts:
            return
        ready = [index for index in open_parts if all(done[names.index(need)] for need in parts[index].needs)]
        if ready and claim_part(claims, ready[-1], SECOND):
            make(ready[-1])
        else:
            time.sleep(poll_seconds)


def _sendable(handed_on: dict[str, Any]) -> dict[str, Any] | None:
    """``handed_on`` if it can be sent to the main process (pickled), else None: the main process then
    reads the part back from the lab folder. Checked here, as the queue would only fail in its own
    thread, where the main process never hears of it."""
    import pickle

    try:
        pickle.dumps(handed_on)
    except Exception:  # noqa: BLE001 - whatever a result cannot pickle with, reading it back works
        return None
    return handed_on


def _run_part(part: LabPart, run: LabRun) -> tuple[float, tuple[str, ...]]:
    """Make one part: its seconds, and the stages it reused from an earlier lab."""
    started, reused_before = time.perf_counter(), len(run.reused)
    part.run(run)
    return round(time.perf_counter() - started, 2), tuple(run.reused[reused_before:])


def _real_part(run: LabRun) -> None:
    from synthscope.generators.workflow import export_builtin

    run.corpora[REAL_CORPUS] = export_builtin(REAL_DATA, run.out / CORPORA_DIR / REAL_CORPUS, seed=run.seed,
                                              progress=run.progress, force=run.force)


def _generator_part(stage: GeneratorStage, run: LabRun) -> None:
    """Train and evaluate one generator (reused when its finished run was made the same way), then
    sample its corpus."""
    from synthscope.generators.base import SNAPSHOTS
    from synthscope.generators.evaluation import RunEvaluation
    from synthscope.generators.workflow import sample_to_corpus, train_run
    from synthscope.registry import load_generator

    steps = stage.steps_for(run.quick)
    run_dir = run.out / RUNS_DIR / stage.name
    eval_samples = 200 if run.quick else 1000
    reuse, made_from = Reuse(run_dir, STAGE_RECORD), stage_fingerprint(stage, steps, run.seed, eval_samples,
                                                                        quick=run.quick)
    if not run.force and reuse.matches(made_from):
        evaluation = RunEvaluation.load(run_dir)
        run.reused.append(stage.name)
    else:
        reuse.forget()
        evaluation = train_run(stage.kind, stage.data, run_dir, conditional=stage.conditional, steps=steps,
                               seed=run.seed, device=run.device, options=stage.options_for(run.quick),
                               force=run.force,
                               progress=run.progress, judge_dir=run.out / JUDGES_DIR / stage.data,
                               snapshots=4 if run.quick else SNAPSHOTS, eval_samples=eval_samples, score=stage.score)
        reuse.record(made_from, stage=stage.name, steps=steps, seed=run.seed)
    evaluation.name, evaluation.title, evaluation.description = stage.name, stage.title, stage.description
    run.evaluations.append(evaluation)
    if stage.corpus_size:
        n = max(50, stage.corpus_size // 5) if run.quick else stage.corpus_size
        prompts = None
        if stage.conditional:  # an equal share of every class, like the real set
            vocabulary = load_generator(run_dir).vocabulary
            prompts = vocabulary.balanced_prompts(vocabulary.sizes()[0])
            n = max(1, n // len(prompts))
        run.corpora[stage.name] = sample_to_corpus(run_dir, run.out / CORPORA_DIR / stage.name, n=n,
                                                   prompts=prompts, seed=run.seed, device=run.device,
                                                   progress=run.progress, force=run.force)


def _extras_part(run: LabRun) -> None:
    if {"ae-2d", "ae"} <= {evaluation.name for evaluation in run.evaluations}:
        run.extras.append(compression_section(run.out / RUNS_DIR, run.seed))


def _memorisation_part(run: LabRun) -> None:
    """Each sampled corpus checked against its generator's training images (in pixels and in the
    judge's features); results in the run folder's memorisation/ and a section of the report."""
    from synthscope.generators.corpus import read_corpus
    from synthscope.generators.memorisation import PIXELS, check_run_samples
    from synthscope.generators.report_section import memorisation_section

    stages = {stage.name: stage for stage in lab_stages()}
    checks = {}
    for evaluation in run.evaluations:
        stage = stages.get(evaluation.name)
        if stage is None or evaluation.name not in run.corpora:
            continue
        run_dir = run.out / RUNS_DIR / stage.name
        samples = read_corpus(run.corpora[stage.name]).load_images(progress=False)  # as sampled: the run's size
        check, figures = check_run_samples(run_dir, samples, run_dir / "memorisation",
                                           judge_dir=run.out / JUDGES_DIR / stage.data,
                                           source=str(run.corpora[stage.name]))
        checks[stage.name] = (stage.title, check, figures[PIXELS])
    if checks:
        run.extras.append(memorisation_section(checks))


def lab_corpora(out: Path) -> dict[str, Path]:
    """The digits corpora the lab writes (the real one first, then each sampled generator's in the
    stages' order), where it writes them: the same for both processes, whichever made them."""
    sampled = [stage.name for stage in lab_stages() if stage.corpus_size]
    return {name: out / CORPORA_DIR / name for name in (REAL_CORPUS, *sampled)}


def _train_detectors_part(run: LabRun, left_out: bool) -> None:
    """Part of the detector study's detectors, trained (or reused) as detector_stage will read them."""
    from synthscope.detectors.generalisation import train_study_detectors

    split = _detector_split(lab_corpora(run.out), run.seed, run.progress)
    train_study_detectors(split, run.out / DETECTORS_DIR, left_out=left_out, seed=run.seed, device=run.device,
                          progress=run.progress, **detector_training(run.quick))


def _detector_part(run: LabRun) -> None:
    run.detectors = detector_stage(run.out / DETECTORS_DIR, lab_corpora(run.out), quick=run.quick, seed=run.seed,
                                   device=run.device, progress=run.progress)


def _translator_part(stage: TranslationStage, run: LabRun) -> None:
    train_translator(stage, run.out, quick=run.quick, seed=run.seed, device=run.device, progress=run.progress,
                     force=run.force)


def _translation_part(run: LabRun) -> None:
    run.translation = translation_stage(run.out, quick=run.quick, seed=run.seed, device=run.device,
                                        progress=run.progress, force=run.force)


def translator_fingerprint(stage: TranslationStage, quick: bool, seed: int) -> str:
    """What a finished translation model of the lab was made from (its run folder's ``lab_stage.json``)."""
    return fingerprint({"format": STAGE_FORMAT, "kind": stage.kind, "translate": LAB_TRANSLATION,
                        "steps": stage.steps_for(quick), "people": 200 if quick else TRANSLATION_PEOPLE,
                        "seed": seed})


def train_translator(stage: TranslationStage, out: Path, quick: bool, seed: int = 0, device: str = "auto",
                     progress: bool = True, force: bool = False) -> Path:
    """Train one of the lab's image-to-image models to age portraits, measured on held-out people
    against the true older picture (distance, whether it reads as older, what else it changed);
    reused when its finished run was made the same way. Returns its run folder."""
    from synthscope.generators.translate_run import train_translation
    from synthscope.generators.translation_eval import RESULT_FILE

    run_dir = out / RUNS_DIR / stage.name
    reuse, made_from = Reuse(run_dir, STAGE_RECORD), translator_fingerprint(stage, quick, seed)
    if not force and reuse.matches(made_from) and (run_dir / RESULT_FILE).is_file():
        return run_dir
    reuse.forget()
    # A retrained model's corpus is made again: its old translations came from other weights.
    shutil.rmtree(out / CORPORA_DIR / stage.name, ignore_errors=True)
    steps = stage.steps_for(quick)
    train_translation(stage.kind, "portraits", run_dir, translate=LAB_TRANSLATION, steps=steps, seed=seed,
                      n=200 if quick else TRANSLATION_PEOPLE, device=device, force=force, progress=progress,
                      judge_dir=out / JUDGES_DIR / "portraits-ageing")
    reuse.record(made_from, stage=stage.name, steps=steps, seed=seed)
    return run_dir


def translation_stage(out: Path, quick: bool, seed: int = 0, device: str = "auto", progress: bool = True,
                      force: bool = False) -> TranslationResults:
    """With the lab's translation models trained (:func:`train_translator`), translate further young
    people with each into a corpus, and train detectors to tell those translations from portraits
    drawn by the portraits world (other people, of every age)."""
    from synthscope.detectors.generalisation import cross_generator, split_corpora
    from synthscope.generators.data import load_data
    from synthscope.generators.pairs import portrait_pairs
    from synthscope.generators.translate_run import translate_to_corpus
    from synthscope.generators.translation_eval import RESULT_FILE
    from synthscope.generators.workflow import write_image_set

    corpus_people = 100 if quick else TRANSLATION_CORPUS_PEOPLE
    corpus_seed = seed + TRANSLATION_CORPUS_SEED
    young, _ = portrait_pairs(corpus_people, LAB_TRANSLATION, seed=corpus_seed, size=32)
    corpus_dir = out / CORPORA_DIR
    made = {"command": "synthscope lab", "size": 32, "seed": corpus_seed, "generator": "real"}
    inputs = write_image_set(young, corpus_dir / "portraits-young", {**made, "data": "portraits age=young"},
                             key="portraits-young", progress=progress, force=force)
    # The real side: other people of every age. Against older people alone, a model that failed to age
    # its inputs would be caught for looking young, not for how it draws.
    real = write_image_set(load_data("portraits", size=32, n=TRANSLATION_REAL_PORTRAITS, seed=corpus_seed + 1),
                           corpus_dir / "portraits-real", {**made, "seed": corpus_seed + 1, "data": "portraits"},
                           key="portraits-real", progress=progress, force=force)
    runs, translated = {}, []
    for stage in translation_stages():
        run_dir = out / RUNS_DIR / stage.name
        if not Reuse(run_dir, STAGE_RECORD).matches(translator_fingerprint(stage, quick, seed)):
            raise RuntimeError(f"{run_dir}: the lab's {stage.name} model is not trained yet (train_translator)")
        runs[stage.name] = (stage.title, read_json(run_dir / RESULT_FILE), run_dir / "visuals")
        translated.append(translate_to_corpus(run_dir, inputs, corpus_dir / stage.name, device=device,
                                              progress=progress, force=force))
    split = split_corpora(real, translated, size=32, test_fraction=0.3, seed=seed, progress=progress)
    generalisation = cross_generator(split, out / DETECTORS_DIR / "translation", n_boot=200, seed=seed,
                                     device=device, progress=progress,
                                     **detector_training(quick, base=LAB_TRANSLATION_DETECTOR_TRAINING))
    corpora = {path.name: path for path in (inputs, real, *translated)}
    return TranslationResults(runs, corpora, generalisation)


def _audit_part(run: LabRun) -> None:
    run.audit = audit_stage(run.out / AUDIT_DIR, quick=run.quick, seed=run.seed, device=run.device,
                            progress=run.progress)


# The lab's CNN detectors: parameters of synthscope.detectors.training.CNNEstimator by name (the rest
# keep its defaults); their get_params() is what decides whether a trained one is reused.
# CNNDetection's milder augmentation (p = 0.1): at 16 px, blur up to sigma 3 leaves little to learn
# from; with p = 0.5 the validation loss swung so much that training stopped early (AP 0.88).
# Patience 5: the all-generators detector's AP is the same (0.9998) as with 8, at 0.71x the time
# (benchmarks/detector_accuracy.py --patience).
LAB_DETECTOR_TRAINING = {"epochs": 40, "patience": 5, "p_blur": 0.1, "p_jpeg": 0.1}
# Telling a translated portrait from a drawn one is harder and its validation loss noisier: with
# patience 5 the all-translators detector stopped early (AP 0.69 on pix2pix's outputs, against 0.88).
LAB_TRANSLATION_DETECTOR_TRAINING = {**LAB_DETECTOR_TRAINING, "patience": 8}
QUICK_DETECTOR_TRAINING = {"epochs": 4, "patience": 2}  # --quick: enough to show every table and figure


def detector_stage(out: Path, corpora: dict[str, Path], quick: bool, seed: int = 0, device: str = "auto",
                   progress: bool = True, training: dict[str, Any] | None = None) -> DetectorResults:
    """Small CNN detectors on the lab's corpora: the cross-generator matrix with leave-one-out, and
    the detector trained on every generator assessed on held-out images (robustness included).
    Detectors already trained on the same images and settings are reused."""
    from synthscope.detectors.assessment import assess_detector
    from synthscope.detectors.generalisation import ALL, cross_generator

    split = _detector_split(corpora, seed, progress)
    generalisation = cross_generator(split, out, n_boot=200, seed=seed, device=device, progress=progress,
                                     **detector_training(quick, training))
    assessment = assess_detector(generalisation.detectors[ALL], split.test_set(split.names),
                                 n_boot=200 if quick else 1000,
                                 seed=seed, device=device, progress=progress)
    assessment.save(out / "assessment")
    return DetectorResults(assessment, generalisation)


def detector_training(quick: bool, overrides: dict[str, Any] | None = None,
                      base: dict[str, Any] = LAB_DETECTOR_TRAINING) -> dict[str, Any]:
    """The training settings (CNNEstimator parameters) of the lab's detectors: ``base`` (the digits
    detectors' by default), shortened under ``quick``, then ``overrides``."""
    return {**base, **(QUICK_DETECTOR_TRAINING if quick else {}), **(overrides or {})}


def _detector_split(corpora: dict[str, Path], seed: int, progress: bool):
    """The digits corpora split once for every detector (70 % to train, 30 % to test)."""
    from synthscope.detectors.generalisation import split_corpora

    fakes = [path for name, path in corpora.items() if name != REAL_CORPUS]
    return split_corpora(corpora[REAL_CORPUS], fakes, size=16, test_fraction=0.3, seed=seed, progress=progress)


def audit_stage(out: Path, quick: bool, seed: int = 0, device: str = "auto", progress: bool = True) -> Any:
    """The built-in audit: train the portraits model on the skewed world, draw every profession, read
    the pictures with the probe, compare with the training world and the labour statistics."""
    from synthscope.audits.audit import run_audit
    from synthscope.runtime import atomic_write_bytes

    spec = out / "audit.toml"
    text = LAB_AUDIT_SPEC.format(images_per_prompt=6 if quick else 20, seed=seed,
                                 train_steps=150 if quick else LAB_AUDIT_STEPS, sample_steps=20 if quick else 25)
    out.mkdir(parents=True, exist_ok=True)
    if not spec.is_file() or spec.read_text() != text:
        atomic_write_bytes(spec, text.encode())
    return run_audit(spec, out, device=device, progress=progress,
                     annotator_options={"probe": {"n_train": 1000}} if quick else None)


def stage_fingerprint(stage: GeneratorStage, steps: int, seed: int, eval_samples: int, quick: bool = False) -> str:
    """What a generator stage's run, evaluation and scores depend on; the stage is reused only when
    its finished run recorded the same."""
    return fingerprint({"format": STAGE_FORMAT, "kind": stage.kind, "data": stage.data,
                        "conditional": stage.conditional, "options": stage.options_for(quick), "steps": steps,
                        "seed": seed, "eval_samples": eval_samples, "score": stage.score})


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, flush=True)


def _best(evaluations, corpora: dict[str, Path]) -> Any:
    """The sampling generator closest to the real data (lecture-only models are not candidates)."""
    scored = [ev for ev in evaluations if ev.name in corpora and ev.quality.get("fd") is not None]
    return min(scored, key=lambda ev: ev.quality["fd"]) if scored else None


def lab_summary(evaluations, corpora: dict[str, Path], report: Path, seconds: float,
                reused: Sequence[str] = (), detectors: DetectorResults | None = None, audit: Any = None,
                translation: TranslationResults | None = None) -> list[str]:
    """A few plain lines: what was trained, what was best, how the detector did, where the report is."""
    best = _best(evaluations, corpora)
    synthetic = [name for name in corpora if name != REAL_CORPUS]
    minutes, secs = divmod(int(round(seconds)), 60)
    again = f" ({len(reused)} reused from an earlier run)" if reused else ""
    lines = [f"{len(evaluations)} generators trained{again}, {len(synthetic)} synthetic corpora "
             f"and the real digits written in {minutes} min {secs:02d} s."]
    if best is not None:
        q = best.quality
        lines.append(f"Closest to real digits: {best.title} with Fréchet distance {q['fd']:.1f} "
                     f"(real vs real {q['fd_real_vs_real']:.1f}, noise {q['fd_noise']:.0f}).")
    else:
        lines.append("No quality score could be computed.")
    if detectors is not None:
        lines.append(detector_summary(detectors))
    if translation is not None:
        lines.append(translation_summary_line(translation))
    if audit is not None:
        lines.append(audit_summary_line(audit))
    lines.append(f"Report: {report}")
    return lines


def detector_summary(detectors: DetectorResults) -> str:
    """One line: the all-generators detector in distribution, and its worst unseen generator."""
    metrics = detectors.assessment.report.metrics
    ap, caught = metrics["ap"], metrics["fake_accuracy"]
    line = (f"Detector on all generators: AP {ap.value:.3f} [{ap.ci_low:.3f}, {ap.ci_high:.3f}], "
            f"{caught.value:.0%} of held-out fakes caught at a {metrics['fpr_at_threshold'].value:.1%} "
            f"false-positive rate")
    loo = detectors.generalisation.leave_one_out
    if len(loo):
        worst = loo.loc[loo["fake_accuracy"].idxmin()]
        line += f"; trained without {worst['held_out']}, it catches {worst['fake_accuracy']:.0%} of those"
    return line + "."


def translation_summary_line(translation: TranslationResults) -> str:
    """One line: how close each translator's ageing came to the truth, and how often it reads as older."""
    parts = []
    for title, result, _ in translation.runs.values():
        part = f"{title} L1 {result['l1_to_target']:.3f} (unchanged input {result['l1_identity_baseline']:.3f})"
        reached = (result.get("read_as_target") or {}).get("outputs")
        if reached is not None:
            part += f", {reached['share']:.0%} read as older"
        parts.append(part)
    return f"Ageing held-out portraits: {'; '.join(parts)}."


def audit_summary_line(audit: Any) -> str:
    """One line: the perceived share of women among the model's doctors, against its training world."""
    shares = audit.tables["shares_by_profession"]
    row = shares[(shares["profession"] == "doctor") & (shares["attribute"] == "gender")
                 & (shares["value"] == "female")].iloc[0]
    check = audit.tables["training_images_check"]
    truth = check[(check["profession"] == "doctor") & (check["attribute"] == "gender")
                  & (check["value"] == "female")]["true_share"].iloc[0]
    amplification = audit.tables.get("amplification")
    line = (f"Audit: the model trained on a world where {truth:.0%} of doctors are women drew "
            f"{row['share_of_determined']:.0%} [{row['share_of_determined_ci_low']:.0%}, "
            f"{row['share_of_determined_ci_high']:.0%}] perceived women among its doctors")
    if amplification is not None and len(amplification):
        counts = amplification["verdict"].value_counts()
        line += (f"; {counts.get('amplified', 0)} of {len(amplification)} comparisons with the training world "
                 f"show amplification")
    return line + "."


def compression_section(runs: Path, seed: int = 0):
    """The lecture comparison: the same digits through a 2-D and a 5-D bottleneck."""
    from synthscope.generators import visuals
    from synthscope.registry import load_generator
    from synthscope.generators.data import load_data
    from synthscope.reports import Figure, Section

    small, large = load_generator(runs / "ae-2d"), load_generator(runs / "ae")
    data = load_data("digits", size=small.size, seed=seed)
    _, heldout = data.split(seed=seed)
    comparison = visuals.reconstruction_figure(heldout.images[:12], {"2-D latent": small, "5-D latent": large})
    scatter = visuals.latent_scatter(small, heldout.images, list(heldout.attributes["digit"]),
                                     legend_title="digit")
    return Section(
        id="compression", title="Compression: a 2-D vs a 5-D latent",
        intro="The same held-out digits, squeezed through two numbers or through five. Two numbers are "
              "enough to draw a map of the digits (below), but not to redraw them faithfully.",
        blocks=[Figure.from_matplotlib(comparison, "Ground truth vs reconstructions", name="compression",
                                       caption="Top row: real held-out digits. Below: the 2-D and the 5-D "
                                               "autoencoder's reconstructions."),
                Figure.from_matplotlib(scatter, "The 2-D latent space", name="latent-2d",
                                       caption="Every held-out digit placed by its two latent numbers, "
                                               "coloured by its true label.")])


def write_lab_report(out: Path, evaluations, corpora: dict[str, Path], quick: bool, seed: int,
                     seconds: float, extras=(), reused: Sequence[str] = (),
                     detectors: DetectorResults | None = None, audit: Any = None,
                     translation: TranslationResults | None = None,
                     part_seconds: dict[str, float] | None = None, alongside: Sequence[str] = ()) -> Path:
    """Assemble the lab report from the stages' results."""
    import pandas as pd

    from synthscope import __version__
    from synthscope.generators.corpus import read_corpus
    from synthscope.generators.report_section import generator_section
    from synthscope.reports import Report, collect_provenance, write_report

    corpus_rows = []
    for name, path in {**corpora, **(translation.corpora if translation is not None else {})}.items():
        corpus = read_corpus(path)
        corpus_rows.append({"corpus": name, "images": len(corpus), "folder": str(path.relative_to(out)),
                            "source": ", ".join(sorted(set(corpus.manifest["source"])))})
    from synthscope.reports import Section, Table

    corpora_section = Section(
        id="corpora", title="Corpora written",
        intro="Each corpus is a folder of lossless PNGs with manifest.csv and corpus.json (provenance). "
              "Detectors and audits read them; so can any other tool.",
        blocks=[Table("Corpora", pd.DataFrame(corpus_rows), name="corpora")],
    )
    summary = lab_summary(evaluations, corpora, out / "index.html", seconds, reused, detectors, audit,
                          translation)[:-1]
    summary.append("Every number here comes from built-in data on this machine; nothing was downloaded.")
    provenance = collect_provenance({
        "run": {"command": "synthscope lab" + (" --quick" if quick else ""), "seed": seed,
                "seconds": round(seconds, 1), "part_seconds": dict(part_seconds or {}),
                "parts_alongside": list(alongside),
                "synthscope": __version__},
        "generators": {ev.name: _run_provenance(ev) for ev in evaluations},
    })
    sections = [generator_section(evaluations, extra=extras), corpora_section]
    if detectors is not None:
        from synthscope.detectors.report_section import detector_section

        sections.append(detector_section(
            detectors.assessment, detectors.generalisation,
            intro="Small CNN detectors trained to tell the real digits from the generators' samples (as "
                  f"CNNDetection does, with blur and JPEG augmentation, each applied to "
                  f"{LAB_DETECTOR_TRAINING['p_blur'] * 100:.0f} % of the training images). 30 % of every corpus is "
                  "kept aside for testing; each threshold is fixed on held-out real images for a 1 % "
                  "false-positive rate."))
    if translation is not None:
        sections.append(translation_report_section(translation))
    if audit is not None:
        sections.append(audit.section)
    report = Report(
        title="synthscope lab", subtitle="Synthetic images, made and measured on this machine",
        summary=summary, sections=sections, provenance=provenance,
        caveats=["--quick runs train for a tenth of the steps: expect poor samples."] if quick else [],
    )
    return write_report(report, out)


def translation_report_section(translation: TranslationResults):
    """The translation part's section: the models, then detectors on their outputs."""
    from synthscope.detectors.report_section import generalisation_section
    from synthscope.generators.report_section import translation_section

    detectors = None
    if translation.generalisation is not None:
        detectors = generalisation_section(
            translation.generalisation, section_id="translation-detectors",
            title="Can a detector tell a translated portrait from a drawn one?",
            intro="Further young people, never seen in training, aged by each model; the real side is other "
                  "people of every age, drawn by the portraits world. Translation leaves much of the input "
                  "untouched: the detectors (the same small CNN as above, threshold fixed on held-out real "
                  "pictures for a 1 % false-positive rate) must find what the model drew.")
    return translation_section(translation.runs, detectors, LAB_TRANSLATION)


def _run_provenance(evaluation) -> dict[str, Any]:
    """What a reader needs to trace a model: its kind, options, training length and hashes."""
    config = read_json(Path(evaluation.run_dir) / "config.json")
    return {"kind": evaluation.kind, "steps": config.get("step"), "seed": config.get("seed"),
            "data": config.get("data"), "options": config["model"].get("options"),
            "train_seconds": config.get("train_seconds"),
            "weights_sha256": config.get("weights_sha256"), "data_sha256": config.get("data_sha256")}
