"""``synthscope lab --quick``: every stage runs offline, the report is whole, a re-run reuses stages."""

from __future__ import annotations

import base64
import io
import json
import re
import time

import numpy as np
import pandas as pd
import pytest
from browser_harness import CHROMIUM, Chromium, Page, skip_reason
from PIL import Image

from synthscope.cli import main
from synthscope.lab import lab_parts, lab_stages, translation_stages


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab")
    assert main(["lab", "--quick", "--out", str(out), "--quiet", "--device", "cpu", "--jobs", "2"]) == 0
    return out


def test_the_lab_is_a_declared_list_of_parts():
    names = [part.name for part in lab_parts(quick=True)]
    sampled_digits = [stage.name for stage in lab_stages() if stage.data == "digits" and stage.corpus_size]
    lecture_digits = [stage.name for stage in lab_stages() if stage.data == "digits" and not stage.corpus_size]
    portraits = [stage.name for stage in lab_stages() if stage.data != "digits"]
    translators = [stage.name for stage in translation_stages()]
    # the portraits generators last: the second process, from the last part back, takes them first; the
    # digits generators the detectors need first, those they do not need after them
    assert sampled_digits == ["ae", "vae", "gan", "diffusion"] and lecture_digits == ["ae-2d", "ae-denoising"]
    assert names == ["real", *sampled_digits, *lecture_digits, "extras", "memorisation", "detectors-each", "detectors-left-out", "detectors",
                     *translators, "translation", "audit", *portraits]
    quick = {part.name: part.message for part in lab_parts(quick=True)}
    assert quick["vae"].endswith("(200 steps)") and lab_parts()[2].message.endswith("(2000 steps)")
    needs = {part.name: set(part.needs) for part in lab_parts()}
    sampled = {stage.name for stage in lab_stages() if stage.corpus_size}
    assert needs["detectors-each"] == needs["detectors-left-out"] == {"real"} | sampled
    assert needs["memorisation"] == sampled and needs["detectors"] == {"detectors-each", "detectors-left-out"}
    assert needs["pix2pix-ageing"] == needs["audit"] == needs["diffusion"] == set()  # a second process may make these
    # ... and, once their needs are made, the parts that read them from the lab folder
    assert needs["translation"] == {"pix2pix-ageing", "cyclegan-ageing"}
    assert [part.name for part in lab_parts() if part.from_disk] == ["detectors-each", "detectors-left-out",
                                                                     "translation"]


class _Part:
    def __init__(self, name, needs=(), fails=False, from_disk=False, unsendable=False):
        self.name, self.needs, self.fails, self.from_disk = name, needs, fails, from_disk
        self.unsendable = unsendable

    def run(self, run):
        if self.fails:
            raise ValueError(f"{self.name} went wrong")
        run.reused.append(self.name)
        run.extras.append(f"section of {self.name}")
        if self.unsendable:
            run.audit = lambda: None  # cannot be pickled


def _second_process_makes(monkeypatch, tmp_path, claimed_by_main=(), parts=None, made_later=()):
    import multiprocessing
    import queue
    import threading

    import synthscope.lab as lab

    parts = parts or [_Part("first"), _Part("needs-first", needs=("first",)), _Part("fails", fails=True),
                      _Part("last")]
    names = [part.name for part in parts]
    monkeypatch.setattr(lab, "lab_parts", lambda quick: parts)
    claims, done, messages = multiprocessing.Array("b", len(parts)), multiprocessing.Array("b", len(parts)), queue.Queue()
    for name in claimed_by_main:
        claims[names.index(name)] = lab.MAIN
    for name in made_later:  # the main process finishes these a moment after the second one starts
        threading.Timer(0.2, lambda index=names.index(name): done.__setitem__(index, 1)).start()
    settings = {"out": str(tmp_path), "quick": True, "force": False, "seed": 0, "device": "cpu"}
    lab._second_process(settings, claims, done, 1, messages, poll_seconds=0.02)
    said = []
    while not messages.empty():
        said.append(messages.get_nowait())
    return list(claims), said


def test_second_process_makes_parts_from_the_last_and_carries_on_after_a_failure(monkeypatch, tmp_path):
    from synthscope.lab import MAIN, SECOND

    claims, said = _second_process_makes(monkeypatch, tmp_path)
    assert claims == [SECOND, 0, SECOND, SECOND]  # a part that needs another is left to the main process
    assert [(made.name, made.error) for made in said] == [("last", None), ("fails", "ValueError: fails went wrong"),
                                                        ("first", None)]
    assert said[0].reused == ("last",)
    # each part made on a run of its own: what it handed on, and nothing of the parts before it
    assert said[0].handed_on == {"extras": ["section of last"]} and said[2].handed_on == {"extras": ["section of first"]}
    # once the main process has claimed a part, everything before it is the main process's too
    claims, said = _second_process_makes(monkeypatch, tmp_path, claimed_by_main=("first", "fails"))
    assert claims == [MAIN, 0, MAIN, SECOND] and [made.name for made in said] == ["last"]


def test_second_process_makes_a_from_disk_part_once_its_needs_are_done(monkeypatch, tmp_path):
    from synthscope.lab import MAIN, SECOND

    parts = [_Part("early"), _Part("late"), _Part("reads-both", needs=("early", "late"), from_disk=True),
             _Part("reads-early", needs=("early",), from_disk=True)]
    # the main process made both needs: it waits for "late", then takes the last ready part first
    claims, said = _second_process_makes(monkeypatch, tmp_path, claimed_by_main=("early", "late"), parts=parts,
                                         made_later=("early", "late"))
    assert claims == [MAIN, MAIN, SECOND, SECOND] and [made.name for made in said] == ["reads-early", "reads-both"]
    # a from-disk part the main process claimed first is left to it
    claims, said = _second_process_makes(monkeypatch, tmp_path, claimed_by_main=("early", "late", "reads-both"),
                                         parts=parts, made_later=("early",))
    assert claims == [MAIN, MAIN, MAIN, SECOND] and [made.name for made in said] == ["reads-early"]


class _WarningPart(_Part):
    def run(self, run):
        import warnings

        warnings.warn(f"resuming {run.out} with different run_dir; recorded in corpus.json")
        super().run(run)


@pytest.mark.parametrize("from_the_command_line", [True, False])
def test_the_second_process_shows_warnings_as_the_main_one_does(from_the_command_line, monkeypatch, tmp_path,
                                                                 capsys):
    import contextlib
    import multiprocessing
    import queue
    import signal
    import warnings

    import synthscope.lab as lab
    from synthscope.errors import show_warning_line

    monkeypatch.setattr(lab, "lab_parts", lambda quick: [_WarningPart("warns")])
    python_s_own = warnings.showwarning
    monkeypatch.setattr(warnings, "showwarning", show_warning_line if from_the_command_line else python_s_own)
    settings = {"out": str(tmp_path), "quick": True, "force": False, "seed": 0, "device": "cpu",
                "warning_lines": warnings.showwarning is show_warning_line}  # as SecondProcess sends them
    warnings.showwarning = python_s_own  # as a spawned process starts (put back after the test)
    interrupt = signal.getsignal(signal.SIGINT)
    # Python code calling run_lab keeps Python's own warnings (here: pytest's record of them)
    expected = contextlib.nullcontext() if from_the_command_line else pytest.warns(UserWarning, match="run_dir")
    try:
        with expected:
            lab._second_process_main(settings, multiprocessing.Array("b", 1), multiprocessing.Array("b", 1), 1,
                                     queue.Queue())
    finally:
        signal.signal(signal.SIGINT, interrupt)
    err = capsys.readouterr().err
    if from_the_command_line:  # one line for a person, as the main process prints it
        assert f"synthscope: warning: resuming {tmp_path} with different run_dir" in err and "UserWarning" not in err
    else:
        assert "synthscope: warning" not in err


def test_what_a_part_hands_on_can_be_sent_and_taken_into_another_run_of_the_lab(monkeypatch, tmp_path):
    from synthscope.lab import LabRun

    made_there = LabRun(tmp_path, True, False, 0, "cpu", False)
    assert made_there.handed_on() == {}
    made_there.corpora["gan"], made_there.audit = tmp_path / "gan", {"shares": [0.1]}
    made_there.evaluations.append("gan evaluation")
    here = LabRun(tmp_path, True, False, 0, "cpu", False)
    here.corpora["real"], here.evaluations = tmp_path / "real", ["ae evaluation"]
    here.take(made_there.handed_on())
    assert here.corpora == {"real": tmp_path / "real", "gan": tmp_path / "gan"}
    assert here.evaluations == ["ae evaluation", "gan evaluation"] and here.audit == {"shares": [0.1]}
    # a result that cannot be pickled is not sent: the main process reads that part back instead
    _, said = _second_process_makes(monkeypatch, tmp_path, parts=[_Part("odd", unsendable=True), _Part("plain")])
    assert [(made.name, made.handed_on) for made in said] == [("plain", {"extras": ["section of plain"]}),
                                                             ("odd", None)]


class _Gone:
    def is_alive(self):
        return False


def test_a_part_the_second_process_failed_or_never_made_is_made_here(tmp_path, capsys):
    import multiprocessing
    import queue

    from synthscope.lab import SECOND, LabRun, MadeAlongside, SecondProcess, lab_parts

    parts = lab_parts(quick=True)
    second = SecondProcess(LabRun(tmp_path, True, False, 0, "cpu", True), parts, start=False)
    assert second.claim("audit") and second.take_back("audit") is None  # no second process: all made here
    second.claims, second.process, second.messages = multiprocessing.Array("b", len(parts)), _Gone(), queue.Queue()
    names = [part.name for part in parts]
    second.claims[names.index("audit")] = second.claims[names.index("translation")] = SECOND
    assert not second.claim("audit") and second.claim("detectors")
    second.messages.put(MadeAlongside("audit", error="OSError: disk full"))
    assert second.take_back("audit") is None
    assert "failed at audit (OSError: disk full); making it here" in capsys.readouterr().out
    assert second.take_back("translation") is None  # it died before making it
    assert second.take_back("detectors") is None  # claimed here
    assert second.made_there() == []


def test_lab_checks_each_sampled_generator_for_copies(lab_dir):
    html = (lab_dir / "index.html").read_text()
    assert 'id="memorisation"' in html
    for stage in lab_stages():
        result = lab_dir / "runs" / stage.name / "memorisation" / "memorisation.json"
        assert result.is_file() == bool(stage.corpus_size), stage.name
        if stage.corpus_size:
            flagged = json.loads(result.read_text())["flagged"]
            assert set(flagged) == {"pixels", "judge features"}
            # short --quick runs draw blurry digits, none a copy of a training image
            assert flagged["pixels"]["share"] < 0.1 and flagged["pixels"]["ci_low"] == 0.0, stage.name
    table = pd.read_csv(lab_dir / "tables" / "memorisation.csv")
    assert len(table) == sum(1 for stage in lab_stages() if stage.corpus_size)


def test_lab_writes_runs_corpora_and_report(lab_dir):
    html = (lab_dir / "index.html").read_text()
    for stage in lab_stages():
        assert (lab_dir / "runs" / stage.name / "model.safetensors").exists(), stage.name
        assert f'id="gen-{stage.name}"' in html, stage.name
        if stage.corpus_size:
            manifest = pd.read_csv(lab_dir / "corpora" / stage.name / "manifest.csv")
            assert len(manifest) > 0 and set(manifest["source"]) == {stage.kind}
    real = pd.read_csv(lab_dir / "corpora" / "digits-real" / "manifest.csv")
    assert len(real) == 1797 and set(real["source"]) == {"real"}
    saved = json.loads((lab_dir / "report.json").read_text())
    assert saved["provenance"]["run"]["command"] == "synthscope lab --quick"
    run = saved["provenance"]["run"]
    # with --jobs 2 a second process made the last parts, starting with the audit; the report keeps the stages' order
    assert "audit" in run["parts_alongside"] and "detectors" not in run["parts_alongside"]
    assert run["part_seconds"]["audit"] > 1 and set(run["part_seconds"]) == {part.name for part in lab_parts()}
    places = [html.index(f'id="gen-{stage.name}"') for stage in lab_stages()]
    assert places == sorted(places)
    assert "reused" not in " ".join(saved["summary"])  # made in this run, by whichever process


def test_lab_audit_stage(lab_dir):
    html = (lab_dir / "index.html").read_text()
    assert 'id="audit"' in html and "does the audit recover the bias" in html
    shares = pd.read_csv(lab_dir / "audit" / "audit_tables" / "shares_by_profession.csv")
    assert set(shares["profession"]) == {"doctor", "nurse", "engineer", "chief executive", "janitor", "teacher",
                                         "software developer", "housekeeper"}
    assert (lab_dir / "audit" / "index.html").is_file()  # the audit's own report, beside the lab's


def test_lab_detector_stage(lab_dir):
    html = (lab_dir / "index.html").read_text()
    for anchor in ('id="detectors"', "Cross-generator matrix", "Robustness", "Most confident mistakes"):
        assert anchor in html
    matrix = pd.read_csv(lab_dir / "detectors" / "matrix.csv")
    generators = [stage.name for stage in lab_stages() if stage.corpus_size]
    assert sorted(set(matrix["test"])) == sorted(generators) and "all generators" in set(matrix["train"])
    assert len(pd.read_csv(lab_dir / "detectors" / "leave_one_out.csv")) == len(generators)
    metrics = json.loads((lab_dir / "detectors" / "assessment" / "metrics.json").read_text())
    assert metrics["metrics"]["ap"]["value"] > 0.8  # even the quick lab's detector sees its generators
    assert "held-out real" in metrics["detector"]["threshold_source"]


def test_lab_translation_stage(lab_dir):
    html = (lab_dir / "index.html").read_text()
    assert 'id="translation"' in html and "Can a detector tell a translated portrait from a drawn one?" in html
    assert "as perceived by the judge" in html
    young = pd.read_csv(lab_dir / "corpora" / "portraits-young" / "manifest.csv")
    for stage in translation_stages():
        result = json.loads((lab_dir / "runs" / stage.name / "translation.json").read_text())
        assert result["translation"] == "age:young->older" and result["n_heldout"] == 40
        assert set(result["attribute_preservation"]) == {"profession", "gender", "skin_tone"}
        assert set(result["read_as_target"]) == {"outputs", "inputs", "true targets"}
        assert f'id="translation-{stage.name}"' in html
        manifest = pd.read_csv(lab_dir / "corpora" / stage.name / "manifest.csv")
        assert len(manifest) == len(young) == 100 and set(manifest["source"]) == {stage.kind}
        linked = {name.rsplit("/", 1)[-1] for name in manifest["input_file"]}
        assert linked == set(young["file"].map(lambda name: name.rsplit("/", 1)[-1]))  # every output names its input
    matrix = pd.read_csv(lab_dir / "detectors" / "translation" / "matrix.csv")
    assert set(matrix["test"]) == {stage.name for stage in translation_stages()}
    assert "all generators" in set(matrix["train"])
    corpora = pd.read_csv(lab_dir / "tables" / "corpora.csv")
    assert {"portraits-young", "portraits-real", "pix2pix-ageing", "cyclegan-ageing"} <= set(corpora["corpus"])


def test_report_is_self_contained(lab_dir):
    html = (lab_dir / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", html)
    assert "@import" not in html and not re.search(r"url\(\s*['\"]?https?:", html)
    uris = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(uris) > 20
    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri))).load()


def test_rerun_reuses_finished_stages(lab_dir, capsys):
    weights = lab_dir / "runs" / "vae" / "model.safetensors"
    detector = lab_dir / "detectors" / "detectors" / "04-all-generators" / "detector.safetensors"
    translator = lab_dir / "runs" / "cyclegan-ageing" / "model.safetensors"
    before, detector_before = weights.stat().st_mtime_ns, detector.stat().st_mtime_ns
    translator_before = translator.stat().st_mtime_ns
    started = time.perf_counter()
    assert main(["lab", "--quick", "--out", str(lab_dir), "--quiet"]) == 0
    assert weights.stat().st_mtime_ns == before and detector.stat().st_mtime_ns == detector_before
    assert translator.stat().st_mtime_ns == translator_before
    assert time.perf_counter() - started < 60  # only the report is rebuilt
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 6 and out[-1].endswith("index.html")
    assert out[2].startswith("Detector on all generators") and out[3].startswith("Ageing held-out portraits")
    assert out[4].startswith("Audit:") and "a world where 15% of doctors are women" in out[4]  # LAB_AUDIT_SPEC


def test_report_rerenders_from_saved_data(lab_dir):
    original = (lab_dir / "index.html").read_text()
    (lab_dir / "index.html").unlink()
    assert main(["report", str(lab_dir)]) == 0
    assert (lab_dir / "index.html").read_text() == original


@pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
def test_lab_report_in_a_browser(lab_dir, tmp_path):
    browser = Chromium(CHROMIUM, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        page = Page(browser, (lab_dir / "index.html").resolve().as_uri())
        network = [url for url in page.requests if not url.startswith(("file:", "data:", "about:"))]
        assert network == []
        assert page.errors == []
        shot = page.screenshot()
        assert shot.std() > 10 and len(np.unique(shot.reshape(-1, shot.shape[-1]), axis=0)) > 50
        Image.fromarray(shot).save(tmp_path / "lab.png")
        page.close()
    finally:
        browser.close()


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:  # bad usage, found by the argument parser
        main(["lab", "--quick", "--out", str(target), "--quiet"])
    assert exit_info.value.code == 2
    assert "is not a folder" in capsys.readouterr().err and target.read_text() == "keep me"


def test_jobs_is_one_or_two(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "--quick", "--out", str(tmp_path / "lab"), "--jobs", "3"])
    assert exit_info.value.code == 2 and "--jobs" in capsys.readouterr().err
    assert not (tmp_path / "lab").exists()


def test_a_retrained_translator_drops_its_old_corpus_and_detection_waits_for_trained_models(lab_dir, tmp_path):
    import shutil

    from synthscope.lab import STAGE_RECORD, train_translator, translation_stage

    out = tmp_path / "lab"
    shutil.copytree(lab_dir / "runs", out / "runs")
    shutil.copytree(lab_dir / "corpora", out / "corpora")
    stage = translation_stages()[0]
    corpus = out / "corpora" / stage.name
    assert train_translator(stage, out, quick=True, device="cpu", progress=False) == out / "runs" / stage.name
    assert corpus.is_dir()  # the finished model is reused, and so are its translations
    (out / "runs" / stage.name / STAGE_RECORD).unlink()  # no longer known to be the lab's model
    with pytest.raises(RuntimeError, match=f"the lab's {stage.name} model is not trained yet"):
        translation_stage(out, quick=True, device="cpu", progress=False)
    shutil.rmtree(out / "runs" / stage.name / "visuals")
    train_translator(stage, out, quick=True, device="cpu", progress=False)
    assert not corpus.exists()  # made by other weights: translated again by the detection part
    assert (out / "runs" / stage.name / "visuals" / "translations.png").is_file()
