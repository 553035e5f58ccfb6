"""Human labels: label-sheet export and import round trip, HTML escaping, import errors with file and line,
agreement (Cohen's kappa, Fleiss' kappa, Krippendorff's alpha) against hand-computed values, confusion vs truth."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import cohen_kappa_score
from synthscope.audits.annotators import TABLE_COLUMNS
from synthscope.audits.labels import (
    AGREEMENT_SCHEMA,
    SHEET_CSV,
    SHEET_HTML,
    SHEET_JSON,
    LabelImportError,
    agreement,
    export_label_sheet,
    import_labels,
    labeller_agreement,
    read_agreement,
    truth_from_corpus,
)
from synthscope.audits.metrics import ABSTAIN, confusion, prepare_annotations
from synthscope.generators.corpus import CorpusWriter

from synthscope.stats import fleiss_kappa, krippendorff_alpha_nominal, wilson_interval

AGES = ["young", "middle-aged", "older"]


@pytest.fixture
def corpus(tmp_path):
    """12 images from two prompts, with prompt metadata and ground truth in the manifest."""
    rows = [{"key": f"{'ab' if i < 6 else 'cd'}#{i}", "prompt": "a photo of a nurse" if i < 6 else "a photo of a CEO",
             "profession": "nurse" if i < 6 else "chief executive", "template_index": "0", "guidance": "7.5",
             "gender": "female" if i % 3 else "male", "age": AGES[i % 3]} for i in range(12)]
    torch.manual_seed(0)
    CorpusWriter(tmp_path / "corpus", {"generator": "g"}).append(torch.rand(12, 3, 16, 16), rows)
    return tmp_path / "corpus"


def sheet_ids(sheet_dir):
    """sheet id -> the image's id in the corpus, as label_sheet.json records it."""
    return {r["sheet_id"]: r["image_id"] for r in json.loads((sheet_dir / SHEET_JSON).read_text())["images"]}


def read_sheet(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_sheet(path, rows, fieldnames):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def test_export_fill_in_import_round_trip(corpus, tmp_path):
    sheet_dir = export_label_sheet(corpus, tmp_path / "sheet", attributes=("gender", "age"))
    rows = read_sheet(sheet_dir / SHEET_CSV)
    # no file column: files are numbered in generation order, which groups the images of a prompt
    assert list(rows[0]) == ["image_id", "gender", "age"] and len(rows) == 12
    assert all(r["gender"] == r["age"] == "" for r in rows)
    real = sheet_ids(sheet_dir)
    assert sorted(real.values()) == sorted(f"{'ab' if i < 6 else 'cd'}#{i}" for i in range(12))
    assert [real[r["image_id"]] for r in rows] != [f"{'ab' if i < 6 else 'cd'}#{i}" for i in range(12)]  # shuffled
    # opaque ids: nothing in a sheet id tells which images share a prompt
    for sheet_id in real:
        assert re.fullmatch(r"img-[0-9a-f]{8}", sheet_id)
    html = (sheet_dir / SHEET_HTML).read_text()
    assert "perceived" in html and ABSTAIN in html and "image-rendering: pixelated" in html
    assert html.count("data:image/png;base64,") == 12 and "http" not in html.replace("http-equiv", "")
    for hidden in ("nurse", "CEO", "chief executive", "a photo of", "ab#", "cd#", "images/0"):
        assert hidden not in html  # neither prompts nor real ids nor file names are shown

    # alice writes canonical values; bob mixes case and spaces, abstains once and skips one cell
    written = {}
    alice = [dict(r, gender="female", age=AGES[i % 3]) for i, r in enumerate(rows)]
    bob = [dict(r, gender=[" Male", "FEMALE "][i % 2], age="older") for i, r in enumerate(rows)]
    bob[0]["gender"], bob[1]["age"] = "Undetermined", ""
    for name, filled in (("alice", alice), ("bob", bob)):
        write_sheet(tmp_path / f"labels_{name}.csv", filled, list(rows[0]))
        for r in filled:
            for attribute in ("gender", "age"):
                if r[attribute].strip():
                    written[(f"human:{name}", real[r["image_id"]], attribute)] = r[attribute].strip().lower()
    table = import_labels([tmp_path / "labels_alice.csv", tmp_path / "labels_bob.csv"], sheet_dir=sheet_dir)
    assert list(table.columns) == list(TABLE_COLUMNS)
    got = {(a, i, t): v for a, i, t, v in zip(table["annotator"], table["image_id"], table["attribute"],
                                              table["value"])}
    assert got == written and len(table) == 2 * 12 * 2 - 1
    assert table.attrs["n_unlabelled"] == {"human:bob": {"age": 1}}
    assert (table.loc[table["image_id"] == "ab#0", "profession"] == "nurse").all()  # metadata from the corpus
    assert table["file"].str.startswith("images/").all() and table["confidence"].isna().all()
    prepare_annotations(table)  # ready for the metrics as it is
    kappa = agreement(table, "gender").set_index("measure").loc["cohen_kappa"]
    assert (kappa["annotator_a"], kappa["annotator_b"], kappa["n_shared"]) == ("human:alice", "human:bob", 12)


def test_sample_is_seeded_and_filled_sheets_are_not_overwritten(corpus, tmp_path):
    a = export_label_sheet(corpus, tmp_path / "a", attributes=("gender",), sample=5, seed=3)
    b = export_label_sheet(corpus, tmp_path / "b", attributes=("gender",), sample=5, seed=3)
    ids = [sheet_ids(a)[r["image_id"]] for r in read_sheet(a / SHEET_CSV)]
    assert len(ids) == 5 and ids == [sheet_ids(b)[r["image_id"]] for r in read_sheet(b / SHEET_CSV)]
    assert json.loads((a / SHEET_JSON).read_text())["n_images"] == 5
    rows = read_sheet(a / SHEET_CSV)
    rows[0]["gender"] = "male"
    write_sheet(a / SHEET_CSV, rows, list(rows[0]))
    with pytest.raises(FileExistsError, match="already holds labels"):
        export_label_sheet(corpus, a, attributes=("gender",))
    export_label_sheet(corpus, a, attributes=("gender",), force=True)
    # a label for an image that is in the corpus but not on the sampled sheet is refused
    outside = next(i for i in (f"{'ab' if k < 6 else 'cd'}#{k}" for k in range(12)) if i not in ids)
    write_sheet(tmp_path / "carol.csv", [{"image_id": outside, "gender": "male"}], ["image_id", "gender"])
    with pytest.raises(LabelImportError, match="not in the label sheet"):
        import_labels(tmp_path / "carol.csv", sheet_dir=b)


def test_html_escapes_markup_in_image_ids_and_values(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    image = torch.rand(1, 3, 8, 8)
    CorpusWriter(tmp_path / "tmp", {"generator": "g"}).append(image, [{}])
    evil = "<img src=x onerror=alert(1)>.png"
    (folder / evil).write_bytes((tmp_path / "tmp" / "images" / "000000.png").read_bytes())
    out = export_label_sheet(folder, tmp_path / "sheet", attributes=("mood",),
                             value_choices={"mood": ["<script>alert('x')</script>", "<b>calm</b>"]})
    html = (out / SHEET_HTML).read_text()
    assert "<img src=x" not in html and "<script>" not in html and "<b>calm" not in html
    assert "onerror" not in html  # the file name is not shown at all: the sheet shows its own ids
    assert "&lt;b&gt;calm&lt;/b&gt;" in html and "&lt;script&gt;" in html
    assert "Content-Security-Policy" in html
    sheet_id = read_sheet(out / SHEET_CSV)[0]["image_id"]
    assert sheet_ids(out)[sheet_id] == evil  # label_sheet.json maps the sheet's id to the image's own


def test_import_errors_name_file_line_and_problem(corpus, tmp_path):
    sheet_dir = export_label_sheet(corpus, tmp_path / "sheet", attributes=("gender", "age"))
    ids = [r["image_id"] for r in read_sheet(sheet_dir / SHEET_CSV)]
    rows = [{"image_id": ids[0], "gender": "female", "age": "young"},           # line 2: fine
            {"image_id": "zz#99", "gender": "female", "age": "young"},         # line 3: unknown id
            {"image_id": ids[1], "gender": "femal", "age": "young"},           # line 4: bad value
            {"image_id": ids[0], "gender": "male", "age": "older"},            # line 5: duplicate of line 2
            {"image_id": ids[2], "gender": "undetermined", "age": "ancient"}]  # line 6: bad age
    path = tmp_path / "dave.csv"
    write_sheet(path, rows, ["image_id", "gender", "age"])
    with pytest.raises(LabelImportError) as caught:
        import_labels(path, sheet_dir=sheet_dir)
    errors = caught.value.errors
    assert len(errors) == 4
    assert errors[0].startswith(f"{path}:3: unknown image id 'zz#99'")
    assert errors[1].startswith(f"{path}:4: gender value 'femal' is not allowed") and "'female'" in errors[1]
    assert errors[2].startswith(f"{path}:5: duplicate row") and f"{path}:2" in errors[2]
    assert errors[3].startswith(f"{path}:6: age value 'ancient' is not allowed")
    assert str(path) in str(caught.value)
    write_sheet(tmp_path / "eve.csv", [{"id": ids[0], "gender": "male"}], ["id", "gender"])
    with pytest.raises(LabelImportError, match=r"eve\.csv:1: no 'image_id' column"):
        import_labels(tmp_path / "eve.csv", sheet_dir=sheet_dir)


def test_labeller_column_and_semicolon_sheets_from_a_spreadsheet(corpus, tmp_path):
    sheet_dir = export_label_sheet(corpus, tmp_path / "sheet", attributes=("gender",))
    ids = [r["image_id"] for r in read_sheet(sheet_dir / SHEET_CSV)]
    text = "\ufeffimage_id;labeller;gender\n" + f"{ids[0]};Frank;MALE\n{ids[0]};Grace;female\n"
    (tmp_path / "shared.csv").write_text(text, encoding="utf-8")
    table = import_labels(tmp_path / "shared.csv", sheet_dir=sheet_dir)
    assert sorted(zip(table["annotator"], table["value"])) == [("human:Frank", "male"), ("human:Grace", "female")]
    assert set(table["image_id"]) == {sheet_ids(sheet_dir)[ids[0]]}
    # without a sheet, a CSV names images by their ids in the corpus
    text = "image_id;labeller;gender\n" + "ab#0;Frank;MALE\nab#0;Grace;female\n"
    (tmp_path / "by_corpus_id.csv").write_text(text, encoding="utf-8")
    table = import_labels(tmp_path / "by_corpus_id.csv", corpus_dir=corpus,
                          value_choices={"gender": ["female", "male"]})
    assert sorted(zip(table["annotator"], table["value"])) == [("human:Frank", "male"), ("human:Grace", "female")]


def test_label_sheet_of_an_exported_corpus_keeps_its_ids_and_truth(tmp_path, capsys):
    # An exported corpus holds manifest.csv beside images/; the sheet must read that manifest (its keys
    # and truth columns), not infer a new corpus from the bare images/ folder.
    from synthscope.cli import main

    corpus = tmp_path / "pt"
    assert main(["data", "export", "portraits", "--n", "12", "--out", str(corpus), "--quiet"]) == 0
    sheet = tmp_path / "sheet"
    assert main(["audit", "label-sheet", str(corpus), "--out", str(sheet), "--sample", "4",
                 "--attributes", "gender", "age"]) == 0
    real = sheet_ids(sheet)
    assert len(real) == 4 and all(i.startswith("portraits#") for i in real.values())
    truth = truth_from_corpus(corpus).set_index("image_id")
    rows = read_sheet(sheet / SHEET_CSV)
    alice = [dict(r, gender=truth.loc[real[r["image_id"]], "gender"], age=truth.loc[real[r["image_id"]], "age"])
             for r in rows]
    bob = [dict(r, gender="female", age="undetermined") for r in rows]
    write_sheet(tmp_path / "labels_alice.csv", alice, list(rows[0]))
    write_sheet(tmp_path / "labels_bob.csv", bob, list(rows[0]))
    capsys.readouterr()
    out = tmp_path / "human.csv"
    assert main(["audit", "import-labels", str(sheet), str(tmp_path / "labels_alice.csv"),
                 str(tmp_path / "labels_bob.csv"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    imported = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert set(imported["image_id"]) == set(real.values())  # mapped back to the corpus's ids
    assert (imported["profession"] != "").all()  # metadata from the corpus's own manifest
    check = confusion(imported, truth.reset_index(), "gender", annotator="human:alice")
    assert (check.n, check.n_correct) == (4, 4)
    # import-labels checks each labeller against the truth the corpus knows
    assert re.search(r"human:alice\s+gender\s+4\s+4\s+0\s+1\.0", printed), printed
    n_female = int((truth.loc[list(real.values()), "gender"] == "female").sum())
    assert re.search(rf"human:bob\s+gender\s+4\s+{n_female}\s", printed), printed


@pytest.mark.parametrize("break_it, problem", [
    (lambda d: d.pop("images"), "missing 'images'"),
    (lambda d: d.update(images="x"), "'images' must be a list"),
    (lambda d: d["images"][1].pop("sheet_id"), "images[1]: missing 'sheet_id'"),
    (lambda d: d["images"][0].update(image_id=3), "images[0]: 'image_id' must be text"),
    (lambda d: d.update(value_choices=["female"]), "'value_choices' must be an object"),
    (lambda d: d["value_choices"].update(gender="female"), "'value_choices.gender' must be a list"),
    (lambda d: d.update(corpus=None), "'corpus' must be text"),
    (lambda d: d["images"][2].update(sheet_id=d["images"][0]["sheet_id"]), "appears twice"),
    (lambda d: d.update(format="something else"), "not a synthscope label sheet"),
])
def test_a_broken_label_sheet_json_is_one_error_naming_it(corpus, tmp_path, break_it, problem):
    sheet_dir = export_label_sheet(corpus, tmp_path / "sheet", attributes=("gender",))
    data = json.loads((sheet_dir / SHEET_JSON).read_text())
    break_it(data)
    (sheet_dir / SHEET_JSON).write_text(json.dumps(data))
    write_sheet(tmp_path / "labels_a.csv", read_sheet(sheet_dir / SHEET_CSV), ["image_id", "gender"])
    with pytest.raises(ValueError) as caught:
        import_labels(tmp_path / "labels_a.csv", sheet_dir=sheet_dir)
    message = str(caught.value)
    assert message.startswith(str(sheet_dir / SHEET_JSON)) and problem in message and "\n" not in message


def test_a_label_sheet_json_that_is_not_an_object_or_absent(corpus, tmp_path):
    sheet_dir = export_label_sheet(corpus, tmp_path / "sheet", attributes=("gender",))
    write_sheet(tmp_path / "labels_a.csv", read_sheet(sheet_dir / SHEET_CSV), ["image_id", "gender"])
    (sheet_dir / SHEET_JSON).write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"label_sheet\.json: expected a JSON object, got a list"):
        import_labels(tmp_path / "labels_a.csv", sheet_dir=sheet_dir)
    (sheet_dir / SHEET_JSON).unlink()
    with pytest.raises(ValueError, match="no label_sheet.json"):
        import_labels(tmp_path / "labels_a.csv", sheet_dir=sheet_dir)


def test_a_folder_with_nothing_readable_gets_no_sheet(tmp_path, capsys):
    from synthscope.cli import main

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a png")
    (folder / "b.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="could not be read"), pytest.raises(ValueError, match="no image") as caught:
        export_label_sheet(folder, tmp_path / "sheet", attributes=("gender",))
    assert str(folder) in str(caught.value)
    assert not (tmp_path / "sheet").exists()
    capsys.readouterr()
    with pytest.warns(UserWarning, match="could not be read"):
        assert main(["audit", "label-sheet", str(folder), "--out", str(tmp_path / "sheet2")]) == 2
    assert "no image" in capsys.readouterr().err and not (tmp_path / "sheet2").exists()


def tidy(labels_by_annotator, attribute="gender"):
    rows = []
    for annotator, labels in labels_by_annotator.items():
        for i, value in enumerate(labels):
            if value is not None:
                rows.append({"image_id": f"img{i}", "annotator": annotator, "attribute": attribute, "value": value})
    return pd.DataFrame(rows)


def test_cohen_kappa_matches_sklearn_and_the_hand_computed_value():
    # 50 images: both "yes" 20, A yes/B no 5, A no/B yes 10, both "no" 15.
    # p_o = (20 + 15) / 50 = 0.7; A says yes 25/50 = 0.5, B says yes 30/50 = 0.6;
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    result = agreement(tidy({"A": a, "B": b}), "gender").set_index("measure")
    assert result.loc["cohen_kappa", "value"] == pytest.approx(0.4)
    assert result.loc["cohen_kappa", "value"] == pytest.approx(cohen_kappa_score(a, b))
    assert result.loc["cohen_kappa", "n_shared"] == 50 and result.loc["cohen_kappa", "observed_agreement"] == 0.7
    # only images both labelled count; three categories including the abstention label
    rng = np.random.default_rng(0)
    x = list(rng.choice(["female", "male", ABSTAIN], 40))
    y = list(rng.choice(["female", "male", ABSTAIN], 40))
    y[:5] = [None] * 5
    result = agreement(tidy({"A": x, "B": y}), "gender").set_index("measure")
    assert result.loc["cohen_kappa", "n_shared"] == 35
    assert result.loc["cohen_kappa", "value"] == pytest.approx(cohen_kappa_score(x[5:], y[5:]))
    kept = [(p, q) for p, q in zip(x[5:], y[5:]) if ABSTAIN not in (p, q)]
    without = agreement(tidy({"A": x, "B": y}), "gender", include_abstentions=False).set_index("measure")
    assert without.loc["cohen_kappa", "value"] == pytest.approx(cohen_kappa_score(*zip(*kept)))


def test_agreement_table_reads_back_as_written_with_no_pair_missing():
    rng = np.random.default_rng(1)
    labels = tidy({name: list(rng.choice(["female", "male", ABSTAIN], 20)) for name in ("A", "B", "C")})
    fresh = agreement(labels, "gender")
    overall = fresh[fresh["measure"] != "cohen_kappa"]
    assert overall[["annotator_a", "annotator_b"]].isna().all().all()  # no pair: missing, not ""
    text = fresh.to_csv(index=False)
    assert "\ngender,fleiss_kappa,,,3,20," in text  # an empty cell in CSV, as before
    back = read_agreement(io.StringIO(text))
    pd.testing.assert_frame_equal(back, fresh)
    assert back["n_shared"].dtype == np.int64 and back["value"].dtype == float
    none = labeller_agreement(labels.assign(annotator="human:one"))  # one labeller: no agreement
    assert len(none) == 0 and list(none.columns) == list(AGREEMENT_SCHEMA.names)


FLEISS_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def test_fleiss_kappa_on_the_textbook_example():
    # Fleiss (1971) as worked on Wikipedia: N = 10 subjects, n = 14 raters, 5 categories.
    # Column totals 20, 28, 39, 21, 32 of N n = 140: p_j = 1/7, 1/5, 39/140, 3/20, 8/35;
    # P_e = sum p_j^2 = 417/1960 = 0.21276.
    # Row sums of n_ij^2: 196, 60, 70, 94, 74, 98, 58, 46, 66, 66; P_i = (that - 14) / (14 * 13):
    # 1, 23/91, 4/13, 40/91, 30/91, 6/13, 22/91, 16/91, 2/7, 2/7; P = mean = 172/455 = 0.37802.
    # kappa = (172/455 - 417/1960) / (1 - 417/1960) = 4211/20059 = 0.20993 (Wikipedia: 0.210).
    expected = Fraction(172, 455) - Fraction(417, 1960)
    expected /= 1 - Fraction(417, 1960)
    assert expected == Fraction(4211, 20059)
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(float(expected), abs=1e-12)
    # the same through agreement(): 14 annotators, each rating subject i as the table's counts say
    categories = list("abcde")
    labels = {f"r{k}": [] for k in range(14)}
    for counts in FLEISS_TABLE:
        ratings = [c for c, n in zip(categories, counts) for _ in range(n)]
        for k, value in enumerate(ratings):
            labels[f"r{k}"].append(value)
    result = agreement(tidy(labels, "mood"), "mood").set_index("measure")
    assert result.loc["fleiss_kappa", "value"] == pytest.approx(float(expected))
    assert result.loc["fleiss_kappa", "n_shared"] == 10 and result.loc["fleiss_kappa", "n_annotators"] == 14
    assert len(result.loc["cohen_kappa"]) == 14 * 13 // 2
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[1, 1], [2, 1]])
    assert math.isnan(fleiss_kappa([[2, 0], [2, 0]]))  # one category throughout: kappa undefined


def test_krippendorff_alpha_on_krippendorffs_example_with_missing_values():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 coders x 12 units with missing
    # values, nominal alpha = 0.743 (coincidence arithmetic in krippendorff_alpha_nominal's docstring).
    coders = {"A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
              "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
              "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
              "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]}
    units = list(zip(*coders.values()))
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)
    as_text = {k: [None if v is None else str(v) for v in vs] for k, vs in coders.items()}
    result = agreement(tidy(as_text, "mood"), "mood").set_index("measure")
    assert result.loc["krippendorff_alpha", "value"] == pytest.approx(krippendorff_alpha_nominal(units))
    assert result.loc["krippendorff_alpha", "n_shared"] == 11  # unit 12 has one value: not pairable
    assert result.loc["fleiss_kappa", "n_shared"] == 8  # units 2-9: every coder rated them


def test_confusion_against_known_truth_with_a_wilson_interval(corpus):
    truth = truth_from_corpus(corpus, ("gender", "age"))
    assert list(truth.columns) == ["image_id", "gender", "age"]
    truth_gender = dict(zip(truth["image_id"], truth["gender"]))
    # right on 8 images, wrong on 2, abstains on 2
    ids = list(truth["image_id"])
    labels = [truth_gender[i] for i in ids[:8]]
    labels += [{"female": "male", "male": "female"}[truth_gender[i]] for i in ids[8:10]] + [ABSTAIN] * 2
    annotations = pd.DataFrame({"image_id": ids, "annotator": "human:x", "attribute": "gender", "value": labels})
    result = confusion(annotations, truth, "gender")
    assert (result.n, result.n_correct, result.n_abstained) == (12, 8, 2)
    assert result.accuracy == pytest.approx(8 / 12) and result.accuracy_of_determined == pytest.approx(8 / 10)
    assert (result.ci_low, result.ci_high) == pytest.approx(wilson_interval(8, 12))
    assert (result.determined_ci_low, result.determined_ci_high) == pytest.approx(wilson_interval(8, 10))
    assert list(result.matrix.index) == ["female", "male"]
    assert list(result.matrix.columns) == ["female", "male", ABSTAIN]
    assert result.matrix.to_numpy().sum() == 12 and int(np.trace(result.matrix.to_numpy()[:, :2])) == 8
    assert result.summary()["abstention_rate"] == pytest.approx(2 / 12)
    tidy_truth = truth.melt(id_vars="image_id", var_name="attribute", value_name="value")
    assert confusion(annotations, tidy_truth, "gender").matrix.equals(result.matrix)
    two = pd.concat([annotations, annotations.assign(annotator="human:y")])
    with pytest.raises(ValueError, match="pass annotator="):
        confusion(two, truth, "gender")


def test_imported_labels_are_written_formula_safe_and_still_read_back(tmp_path):
    from synthscope.cli import main

    rows = [{"key": f"k#{i}", "prompt": "=HYPERLINK(\"http://x\",\"a doctor\")", "profession": "doctor"}
            for i in range(4)]
    CorpusWriter(tmp_path / "corpus", {"generator": "g"}).append(torch.rand(4, 3, 16, 16), rows)
    sheet = export_label_sheet(tmp_path / "corpus", tmp_path / "sheet", attributes=("gender",))
    filled = [{"image_id": r["image_id"], "gender": "female"} for r in read_sheet(sheet / SHEET_CSV)]
    write_sheet(tmp_path / "labels_alice.csv", filled, ["image_id", "gender"])
    out = tmp_path / "human.csv"
    assert main(["audit", "import-labels", str(sheet), str(tmp_path / "labels_alice.csv"), "--out", str(out)]) == 0
    written = read_sheet(out)
    assert {r["prompt"] for r in written} == {"'=HYPERLINK(\"http://x\",\"a doctor\")"}  # inert in a spreadsheet
    back = import_labels(out, corpus_dir=tmp_path / "corpus")  # the prompt comes from the corpus again
    assert set(back["prompt"]) == {rows[0]["prompt"]} and len(back) == 4 and set(back["value"]) == {"female"}
