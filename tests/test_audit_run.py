"""An audit end to end: spec -> builtin model trained on a skewed world -> images -> probe annotations ->
metrics with intervals -> report; re-running adds nothing; the CLI's audit commands."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
from synthscope.audits.audit import IMAGES_DIR, TABLES_DIR, image_jobs, run_audit
from synthscope.audits.spec import load_spec
from synthscope.cli import main

SPEC = """
[audit]
name = "skewed <b>doctors</b>"
description = "two professions, a world with a strong gender skew"

[prompts]
templates = ["a photo of a {profession}", "a portrait of a {profession}"]
professions = ["doctor", "nurse"]
images_per_prompt = 4
seed = 3

[backend]
kind = "builtin"
train_steps = 20
steps = 10
device = "cpu"
[backend.world_skew]
share_female = { doctor = 0.1, nurse = 0.9 }

[[annotators]]
kind = "probe"
attributes = ["gender", "skin_tone"]
abstain_below = 0.6

[reference]
source = "bls-2022"
"""




@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    spec = root / "audit.toml"
    spec.write_text(SPEC)
    result = run_audit(spec, root / "out", progress=False, annotator_options={"probe": {"n_train": 400}})
    return spec, result


def test_jobs_have_one_reproducible_seed_per_image(audit):
    spec, _ = audit
    jobs = image_jobs(load_spec(spec))
    assert len(jobs) == 2 * 2 * 4 and len({job.key for job in jobs}) == len(jobs)
    assert [job.seed for job in jobs] == [job.seed for job in image_jobs(load_spec(spec))]


def test_audit_writes_images_tables_and_report(audit):
    _, result = audit
    manifest = pd.read_csv(result.out / IMAGES_DIR / "manifest.csv")
    assert len(manifest) == 16 and {"prompt", "seed", "profession", "backend"} <= set(manifest.columns)
    shares = pd.read_csv(result.out / TABLES_DIR / "shares_by_profession.csv")
    gender = shares[(shares["attribute"] == "gender")]
    for profession in ("doctor", "nurse"):
        rows = gender[gender["profession"] == profession]
        # every image is counted once: the values and the abstentions add up to the images
        assert rows["count"].sum() == 8
        assert (rows["share_of_all_ci_low"] <= rows["share_of_all"]).all()
    assert "amplification" in result.tables and "reference_gap_labour" in result.tables
    # the annotator reads the training world first: the injected skew must come back
    check = result.tables["training_images_check"]
    women = check[(check["attribute"] == "gender") & (check["value"] == "female")].set_index("profession")
    assert women.loc["doctor", "true_share"] == pytest.approx(0.1) and women.loc["nurse", "true_share"] == 0.9
    assert women.loc["doctor", "share_of_determined"] < 0.3 < 0.7 < women.loc["nurse", "share_of_determined"]
    html = (result.out / "index.html").read_text()
    assert "training world" in html and "Compared with US labour statistics" in html
    # the labour comparison names its table and, per profession, the rows behind the figure
    labour = html[html.index("Compared with US labour statistics"):]
    assert "https://www.bls.gov/cps/aa2022/cpsaat11.htm" in labour and "Other physicians" in labour
    assert "Surgeons" in labour and "Registered nurses" in labour  # skipped as unpublished; combined
    assert "Reference figures and the table rows behind them" in labour
    assert "skewed &lt;b&gt;doctors&lt;/b&gt;" in html and "<b>doctors" not in html
    # contact-sheet tiles say what the annotator read, and the check names the annotator
    assert re.search(r"(female|male|gender \?) · tone (\d|\?)", html)
    assert re.search(r"probe read \d+ images; for \d of 2 professions", html)


def test_rerun_generates_nothing_new(audit):
    spec, result = audit
    again = run_audit(spec, result.out, progress=False, annotator_options={"probe": {"n_train": 400}})
    assert again.generation.generated == 0 and again.generation.already_done == 16
    pd.testing.assert_frame_equal(again.tables["shares_by_profession"], result.tables["shares_by_profession"])


def test_cli_audit_commands(audit, tmp_path, capsys):
    _, result = audit
    spec = tmp_path / "audit.toml"
    assert main(["audit", "init", "--out", str(spec)]) == 0
    assert load_spec(spec).n_images > 0
    assert main(["audit", "init", "--out", str(spec)]) == 2  # never overwrites without --force
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace('"doctor", "nurse"', '"doctor", "astronaut"'))
    assert main(["audit", "run", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "astronaut" in capsys.readouterr().err
    sheet = tmp_path / "sheet"
    assert main(["audit", "label-sheet", str(result.out), "--out", str(sheet), "--attributes", "gender"]) == 0
    labels = pd.read_csv(sheet / "labels.csv", dtype=str)
    assert len(labels) == 16 and "prompt" not in labels.columns
    for name, value in (("alice", "female"), ("bob", "male")):
        filled = labels.assign(gender=value)
        filled.loc[0, "gender"] = "undetermined"
        filled.to_csv(tmp_path / f"labels_{name}.csv", index=False)
    out = tmp_path / "human.csv"
    assert main(["audit", "import-labels", str(sheet), str(tmp_path / "labels_alice.csv"),
                 str(tmp_path / "labels_bob.csv"), "--out", str(out)]) == 0
    imported = pd.read_csv(out, dtype=str)
    assert set(imported["annotator"]) == {"human:alice", "human:bob"} and len(imported) == 32
    broken = labels.assign(gender="purple")
    broken.to_csv(tmp_path / "labels_carol.csv", index=False)
    assert main(["audit", "import-labels", str(sheet), str(tmp_path / "labels_carol.csv"), "--out", str(out)]) == 2
    assert "labels_carol.csv:2" in capsys.readouterr().err


def test_human_labels_in_the_spec_join_the_annotations(audit, tmp_path):
    from synthscope.audits.labels import export_label_sheet, import_labels

    spec, result = audit
    sheet = tmp_path / "sheet"
    export_label_sheet(result.out / IMAGES_DIR, sheet, attributes=["gender"])
    labels = pd.read_csv(sheet / "labels.csv", dtype=str).assign(gender="female")
    labels.to_csv(tmp_path / "labels_alice.csv", index=False)
    import_labels(tmp_path / "labels_alice.csv", sheet_dir=sheet).to_csv(tmp_path / "human.csv", index=False)
    human = spec.read_text().replace("[reference]", '[[annotators]]\nkind = "human"\nattributes = ["gender"]\n'
                                     f'labels_csv = "{tmp_path / "human.csv"}"\n\n[reference]')
    (tmp_path / "human.toml").write_text(human)
    again = run_audit(tmp_path / "human.toml", result.out, progress=False,
                      annotator_options={"probe": {"n_train": 400}})
    shares = again.tables["shares_by_profession"]
    alice = shares[(shares["annotator"] == "human:alice") & (shares["value"] == "female")]
    assert sorted(alice["profession"]) == ["doctor", "nurse"]  # each label found its image's prompt
    assert (alice["share_of_determined"] == 1.0).all() and (alice["count"] == 8).all()


def test_a_diffusers_audit_read_by_clip_zero_shot(tmp_path):
    from tiny_clip import TINY_TEXT, TINY_TEXT_CONFIG, make_tiny_clip
    from tiny_diffusers import save_tiny_pipeline

    pipeline = save_tiny_pipeline(tmp_path / "pipeline")
    weights = make_tiny_clip(tmp_path / "clip", TINY_TEXT, TINY_TEXT_CONFIG)
    spec = tmp_path / "audit.toml"
    spec.write_text(f"""
[audit]
name = "tiny diffusers"
[prompts]
templates = ["a photo of a {{profession}}"]
professions = ["doctor", "<i>nurse</i>"]
images_per_prompt = 3
[backend]
kind = "diffusers"
model = "{pipeline}"
steps = 2
guidance = [1.0, 5.0]
batch_size = 2
device = "cpu"
[[annotators]]
kind = "clip"
model = "{TINY_TEXT}"
pretrained = "{weights}"
[reference]
source = "bls-2022"
""")
    result = run_audit(spec, tmp_path / "out", progress=False)
    manifest = pd.read_csv(result.out / IMAGES_DIR / "manifest.csv")
    assert len(manifest) == 2 * 2 * 3 and sorted(set(manifest["guidance"])) == [1.0, 5.0]
    shares = result.tables["shares_by_profession"]
    assert set(shares["annotator"]) == {"clip"} and set(shares["guidance"]) == {1.0, 5.0}
    assert len(pd.read_csv(result.out / "annotator_prompts.csv")) > 0
    html = (result.out / "index.html").read_text()
    assert "&lt;i&gt;nurse&lt;/i&gt;" in html and "<i>nurse" not in html
    # corpus.json records the guidance values the images were made with, not the pipeline's default
    provenance = json.loads((result.out / IMAGES_DIR / "corpus.json").read_text())
    assert provenance["sample_options"]["guidance_scale"] == [1.0, 5.0]
    again = run_audit(spec, tmp_path / "out", progress=False)  # the same spec resumes: nothing new
    assert again.generation.generated == 0 and again.generation.already_done == 12


HUMAN_ONLY = """
[[annotators]]
kind = "human"
attributes = ["gender"]
labels_csv = "human.csv"
"""


def test_the_human_label_flow_through_the_cli(audit, tmp_path, capsys):
    """README's flow: run an audit whose annotator is people (it stops after the images and says what to
    do next), export a sheet, two people label it, import their labels, run again: a report on their
    labels with their agreement, its cards on their majority."""
    from sklearn.metrics import cohen_kappa_score
    from synthscope.audits.labels import MAJORITY_ANNOTATOR

    _, result = audit
    probe = SPEC[SPEC.index("[[annotators]]"):SPEC.index("[reference]")]
    spec = tmp_path / "audit.toml"
    spec.write_text(SPEC.replace(probe, HUMAN_ONLY).replace(  # the fixture's trained model, reused
        'kind = "builtin"', f'kind = "builtin"\ncheckpoint = "{result.out / "model"}"'))
    out = tmp_path / "audit"
    capsys.readouterr()
    assert main(["audit", "run", str(spec), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert len(pd.read_csv(out / IMAGES_DIR / "manifest.csv")) == 16 and not (out / "index.html").exists()
    assert "no human labels yet" in printed and f"{tmp_path / 'human.csv'} does not exist yet" in printed
    command = next(line for line in printed.splitlines() if "synthscope audit label-sheet" in line)
    args = shlex.split(command[command.index("synthscope audit label-sheet"):])[1:]
    assert args[:2] == ["audit", "label-sheet"] and str(out) in args and "gender" in args
    assert main(args) == 0  # the printed command, as printed
    sheet = Path(args[args.index("--out") + 1])
    assert f"synthscope audit import-labels {sheet}" in printed and f"--out {tmp_path / 'human.csv'}" in printed
    assert f"synthscope audit run {spec} --out {out}" in printed

    rows = pd.read_csv(sheet / "labels.csv", dtype=str)
    assert len(rows) == 16 and not rows["image_id"].str.contains("#").any()  # opaque ids
    alice = ["female"] * 8 + ["male"] * 8
    bob = ["male"] + alice[1:15] + ["undetermined"]  # disagrees on the first and last image
    rows.assign(gender=alice).to_csv(tmp_path / "labels_alice.csv", index=False)
    rows.assign(gender=bob).to_csv(tmp_path / "labels_bob.csv", index=False)
    assert main(["audit", "import-labels", str(sheet), str(tmp_path / "labels_alice.csv"),
                 str(tmp_path / "labels_bob.csv"), "--out", str(tmp_path / "human.csv")]) == 0
    capsys.readouterr()
    assert main(["audit", "run", str(spec), "--out", str(out), "--quiet"]) == 0
    assert "0 new" in capsys.readouterr().out and (out / "index.html").is_file()

    shares = pd.read_csv(out / TABLES_DIR / "shares_by_profession.csv")
    assert set(shares["annotator"]) == {"human:alice", "human:bob", MAJORITY_ANNOTATOR}
    majority = shares[shares["annotator"] == MAJORITY_ANNOTATOR].groupby("value")["count"].sum()
    assert majority.to_dict() == {"female": 7, "male": 7, "undetermined": 2}  # the two ties are undetermined
    agreement = pd.read_csv(out / TABLES_DIR / "labeller_agreement.csv", keep_default_na=False).set_index("measure")
    assert agreement.loc["cohen_kappa", "value"] == pytest.approx(cohen_kappa_score(alice, bob))
    assert (agreement["n_shared"] == 16).all()
    html = (out / "index.html").read_text()
    assert "Agreement between labellers" in html and "Krippendorff" in html and "Fleiss" in html
    assert "Cohen&#39;s kappa · gender · human:alice vs human:bob" in html
    assert MAJORITY_ANNOTATOR in html and "most of its labellers" in html


def test_human_blocks_each_read_their_file_and_a_label_given_twice_is_refused(audit, tmp_path):
    from synthscope.audits.audit import human_labels
    from synthscope.audits.spec import parse_spec

    _, result = audit
    ids = list(pd.read_csv(result.out / IMAGES_DIR / "manifest.csv", dtype=str)["key"])
    pd.DataFrame({"image_id": ids[:3], "labeller": "alice", "gender": "female", "age": "older"}).to_csv(
        tmp_path / "alice.csv", index=False)
    pd.DataFrame({"image_id": ids[2:5], "labeller": "alice", "gender": "male"}).to_csv(tmp_path / "more.csv",
                                                                                    index=False)
    blocks = ('[[annotators]]\nkind = "human"\nattributes = ["gender"]\nlabels_csv = "alice.csv"\n'
              '[[annotators]]\nkind = "human"\nlabels_csv = "not-yet.csv"\n')
    spec = parse_spec(SPEC.replace(SPEC[SPEC.index("[[annotators]]"):SPEC.index("[reference]")], blocks),
                      base=tmp_path)
    with pytest.warns(UserWarning, match="ignoring column"):
        labels, waiting = human_labels(spec, result.out / IMAGES_DIR)
    assert set(labels["attribute"]) == {"gender"} and len(labels) == 3  # each block reads its own attributes
    assert [w.labels_csv for w in waiting] == [tmp_path / "not-yet.csv"]
    spec = parse_spec(SPEC.replace(SPEC[SPEC.index("[[annotators]]"):SPEC.index("[reference]")],
                                   blocks.replace("not-yet.csv", "more.csv")), base=tmp_path)
    with pytest.raises(ValueError, match=r"human:alice labelled the gender of image .* in .*alice\.csv and "
                                         r".*more\.csv"), pytest.warns(UserWarning, match="ignoring column"):
        human_labels(spec, result.out / IMAGES_DIR)


def test_audit_tables_keep_formula_like_text_inert(tmp_path):
    from synthscope.audits.audit import write_table

    table = pd.DataFrame({"prompt": ["=HYPERLINK(\"http://x\")", "a photo of a nurse", "+1", "@SUM(A1)"],
                          "share": [0.5, -0.25, 0.0, 1.0], "count": [1, 2, 3, 4]})
    path = write_table(tmp_path, "shares_by_prompt", table)
    back = pd.read_csv(path)
    assert list(back["prompt"]) == ["'=HYPERLINK(\"http://x\")", "a photo of a nurse", "'+1", "'@SUM(A1)"]
    assert list(back["share"]) == [0.5, -0.25, 0.0, 1.0] and list(back["count"]) == [1, 2, 3, 4]


def test_tables_read_back_with_their_declared_types(audit):
    from synthscope.audits.audit import read_table
    from synthscope.audits.metrics import AUDIT_COLUMNS, is_metric_table

    spec, result = audit
    # Written afresh: earlier tests re-run other specs into the same folder (nothing is generated again).
    result = run_audit(spec, result.out, progress=False, annotator_options={"probe": {"n_train": 400}})
    for name, table in result.tables.items():
        if not is_metric_table(name) or table.empty:
            continue
        back = read_table(result.out, name)
        assert back.to_csv(index=False) == (result.out / TABLES_DIR / f"{name}.csv").read_text()
        for column in AUDIT_COLUMNS.names:  # text, missing descriptors and flags come back as written
            if column in table:
                pd.testing.assert_series_equal(back[column], table[column], obj=f"{name}.{column}")
