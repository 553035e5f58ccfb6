"""Reference data for audits: the shipped BLS table, its parser, the prompt-word mapping, users' CSVs."""

from __future__ import annotations

import hashlib
import math
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from synthscope.audits.metrics import ABSTAIN, ANNOTATION_COLUMNS, audit_metrics
from synthscope.audits.reference import (
    BLOOMBERG_JOBS,
    COVERED,
    NO_ROW,
    NOT_PUBLISHED,
    REFERENCE_COLUMNS,
    ReferenceDataError,
    load_reference,
    occupation_for,
    occupations_for,
    reference_coverage,
    stable_bias_professions,
    training_world_reference,
)
from synthscope.audits.report_section import audit_section, reference_rows_table
from synthscope.generators import labour
from synthscope.generators.portraits import PROFESSIONS, PortraitDistribution
from synthscope.reports import Text

URL = "https://www.bls.gov/cps/aa2022/cpsaat11.htm"
PHYSICIANS_NOT_PUBLISHED = ["Emergency medicine physicians", "Radiologists", "Surgeons"]
# The published engineer rows of the 2022 table: (thousands employed, % women, % Black), copied by hand.
ENGINEERS = {"Aerospace engineers": (173, 17.4, 3.8), "Chemical engineers": (75, 27.9, 7.8),
             "Civil engineers": (482, 17.1, 6.5), "Computer hardware engineers": (90, 15.7, 9.3),
             "Electrical and electronics engineers": (296, 8.1, 6.0),
             "Industrial engineers, including health and safety": (221, 25.0, 7.1),
             "Mechanical engineers": (403, 8.5, 3.6), "Engineers, all other": (631, 14.9, 7.1)}


@pytest.fixture(scope="module")
def table():
    return labour.read_bls_table()


@pytest.fixture(scope="module")
def bls():
    return load_reference("bls-2022")


# ---- the shipped file and its parser ---------------------------------------------------------


def test_shipped_table_is_the_bls_export_byte_for_byte():
    data = labour.shipped_table_path().read_bytes()
    assert hashlib.sha256(data).hexdigest() == labour.BLS_TABLE_SHA256 == (
        "f751ef09487068c3a1e0928b020c0235b9cb33b1f698e9c411f89f8853d367a8")
    assert data.startswith(b"\xef\xbb\xbf")  # the byte-order mark BLS exports
    note = resources.files("synthscope.generators").joinpath("resources", "bls", "README.md").read_text("utf-8")
    assert labour.BLS_TABLE_SHA256 in note and URL in note


def test_parser_reads_every_row_of_the_table(table):
    assert list(table.columns) == labour.TABLE_COLUMNS
    # 595 occupation rows: the total, 29 group rows and 565 detailed occupations; the seven header
    # records, six blank separator rows and the closing NOTE are not rows.
    assert len(table) == 595
    assert int(table["is_aggregate"].sum()) == 30 and int((~table["is_aggregate"]).sum()) == 565
    assert int((~table["published"]).sum()) == 203  # dashes: base under 50,000
    assert table["occupation"].is_unique
    total = table.iloc[0]
    assert total["occupation"] == "Total, 16 years and over" and total["line"] == 14
    assert total["total_employed_thousands"] == 158291  # "158,291": thousands separator
    assert (total["percent_women"], total["percent_white"], total["percent_black"], total["percent_asian"],
            total["percent_hispanic"]) == (46.8, 77.0, 12.6, 6.7, 18.5)
    assert table.iloc[-1]["occupation"] == "Other material moving workers"
    assert not table["occupation"].str.startswith("NOTE").any()
    assert (table["year"] == 2022).all() and table["verified"].all()
    assert (table["source"] == labour.BLS_SOURCE).all() and URL in labour.BLS_SOURCE
    # whitespace inside titles collapsed ("Management,  professional, ..." in the export)
    assert "Management, professional, and related occupations" in set(table["occupation"])


def test_a_known_row_and_a_dash_row(table):
    rows = table.set_index("occupation")
    ceo = rows.loc["Chief executives"]
    assert ceo["total_employed_thousands"] == 1780
    assert [ceo[c] for c in labour.PERCENT_COLUMNS] == [29.2, 85.9, 5.9, 6.7, 6.8]
    assert ceo["published"] and not ceo["is_aggregate"]
    assert ceo["parent"] == "Management occupations" and ceo["depth"] == 4
    legislators = rows.loc["Legislators"]
    assert legislators["total_employed_thousands"] == 14  # employment is given, percentages are not
    assert all(math.isnan(legislators[c]) for c in labour.PERCENT_COLUMNS)
    assert not legislators["published"]
    # race groups do not sum to 100 (kept as published); Hispanic is a separate question
    assert ceo["percent_white"] + ceo["percent_black"] + ceo["percent_asian"] == pytest.approx(98.5)


def test_hierarchy_keeps_groups_apart_from_occupations(table):
    rows = table.set_index("occupation")
    assert rows.loc["Management occupations", "is_aggregate"]
    assert rows.loc["Management occupations", "parent"] == "Management, business, and financial operations occupations"
    assert rows.loc["Total, 16 years and over", "depth"] == 0 and rows.loc["Total, 16 years and over", "parent"] == ""
    # titles that end in "occupations" but are detailed rows
    for title in ("Computer occupations, all other", "Other mathematical science occupations",
                  "Other healthcare practitioners and technical occupations"):
        assert not rows.loc[title, "is_aggregate"]
    # each group's employment is the sum of its children's, up to rounding
    children = table.groupby("parent")["total_employed_thousands"].sum()
    for title in table.loc[table["is_aggregate"], "occupation"]:
        assert abs(children[title] - rows.loc[title, "total_employed_thousands"]) <= 4, title
    # the mapping names detailed rows only, and refuses a group row
    resolved = labour.check_mapping(table)
    aggregates = set(table.loc[table["is_aggregate"], "occupation"])
    assert not any(set(r) & aggregates for r in resolved.values())
    with pytest.raises(labour.LabourTableError, match="'Management occupations': a group row"):
        labour.combine_rows(table, ["Chief executives", "Management occupations"])


def test_parser_reads_the_export_without_a_byte_order_mark_and_rejects_other_files(tmp_path, table):
    data = labour.shipped_table_path().read_bytes()
    plain = tmp_path / "plain.csv"
    plain.write_bytes(data[3:])
    assert labour.read_bls_table(plain).drop(columns="source").equals(table.drop(columns="source"))

    bad_number = tmp_path / "bad.csv"
    bad_number.write_bytes(data.replace(b'Chief executives,"1,780",29.2', b'Chief executives,"1,780",29,2x'))
    with pytest.raises(labour.LabourTableError, match=r"bad\.csv: line 19: percent_white '2x' is not a number"):
        labour.read_bls_table(bad_number)
    no_group = tmp_path / "nogroup.csv"
    no_group.write_bytes(data.replace(b"Legal occupations,", b"Law occupations,"))
    with pytest.raises(labour.LabourTableError, match="not the layout of CPS table 11 .* 'Legal occupations'"):
        labour.read_bls_table(no_group)
    wrong_sum = tmp_path / "sum.csv"
    wrong_sum.write_bytes(data.replace(b'Chief executives,"1,780"', b'Chief executives,"2,780"'))
    with pytest.raises(labour.LabourTableError, match="rows under 'Management occupations' employ 21,201"):
        labour.read_bls_table(wrong_sum)
    other = tmp_path / "other.csv"
    other.write_text("occupation,percent_women\nPhysicians,40\n", encoding="utf-8")
    with pytest.raises(labour.LabourTableError, match=r"other\.csv: line 1: not BLS CPS table 11"):
        labour.read_bls_table(other)


# ---- prompt words -> rows, combined figures ---------------------------------------------------


def test_mapping_resolves_synonyms_plurals_and_articles():
    assert occupations_for("doctors") == ("Emergency medicine physicians", "Radiologists", "Other physicians",
                                          "Surgeons")
    assert occupations_for("physician") == occupations_for("doctor")
    assert occupations_for("CEO") == ("Chief executives",) and occupation_for("CEO") == "Chief executives"
    assert occupations_for("a Software Developer") == ("Software developers",)
    assert occupations_for("fast-food workers") == ("Fast food and counter workers",)
    assert occupations_for("housekeeper") == occupations_for("maid") == ("Maids and housekeeping cleaners",)
    assert occupations_for("civil engineer") == ("Civil engineers",)
    assert occupations_for("astronaut") == () and occupation_for("astronaut") is None
    assert all(occupations_for(p) for p in PROFESSIONS)


def test_doctor_is_the_one_published_physician_row(bls):
    figures = labour.profession_figures(["doctor"]).iloc[0]
    # Only "Other physicians" is published: 933 thousand, 43.8 % women, 67.0 White, 8.4 Black, 22.4 Asian, 7.2 Hispanic.
    assert figures["occupation"] == "Other physicians" and figures["total_employed_thousands"] == 933
    assert [figures[c] for c in labour.PERCENT_COLUMNS] == pytest.approx([43.8, 67.0, 8.4, 22.4, 7.2])
    assert figures["rows_not_published"].split("; ") == PHYSICIANS_NOT_PUBLISHED
    assert figures["note"] == ("Emergency medicine physicians; Radiologists; Surgeons: not published "
                               "(base under 50,000)")
    doctor = bls[bls["profession"] == "doctor"].set_index(["attribute", "value"])["share"]
    assert doctor[("gender", "female")] == pytest.approx(0.438)
    assert doctor[("race", "other")] == pytest.approx(1 - 0.670 - 0.084 - 0.224)
    assert doctor[("ethnicity", "hispanic")] == pytest.approx(0.072)


def test_engineer_combines_the_published_engineer_rows_by_employment(bls):
    employed = sum(n for n, _, _ in ENGINEERS.values())
    women = sum(n * w for n, w, _ in ENGINEERS.values()) / employed
    black = sum(n * b for n, _, b in ENGINEERS.values()) / employed
    assert employed == 2371 and women == pytest.approx(14.9759, abs=1e-4)
    figures = labour.profession_figures(["engineer"]).iloc[0]
    assert figures["occupation"].split("; ") == list(ENGINEERS)
    assert figures["total_employed_thousands"] == employed
    assert figures["percent_women"] == pytest.approx(women) and figures["percent_black"] == pytest.approx(black)
    assert len(figures["rows_not_published"].split("; ")) == 8  # agricultural, nuclear, petroleum, ... engineers
    assert "Petroleum engineers" in figures["rows_not_published"]
    assert figures["note"].startswith("8 rows combined, weighted by employment. ")
    engineer = bls[(bls["profession"] == "engineer") & (bls["attribute"] == "gender")].set_index("value")["share"]
    assert engineer["female"] == pytest.approx(women / 100)
    civil = load_reference("bls-2022", professions=["civil engineer"])
    assert civil.loc[civil["value"] == "female", "share"].item() == pytest.approx(0.171)


def test_builtin_reference_is_tidy_sourced_and_verified(bls):
    assert list(bls.columns) == REFERENCE_COLUMNS
    assert set(PROFESSIONS) <= set(bls["profession"])
    assert set(bls["attribute"]) == {"gender", "race", "ethnicity"}
    assert (bls["year"] == 2022).all()
    assert bls["source"].str.contains(URL, regex=False).all()
    assert bls["verified"].all()  # the published figures
    sums = bls.groupby(["profession", "attribute"])["share"].sum()
    assert sums.to_numpy() == pytest.approx(1.0)
    assert "politician" not in set(bls["profession"])  # Legislators: not published


def test_removed_reference_gets_one_clear_error():
    with pytest.raises(ReferenceDataError, match=r"'bls-2023' reference figures were transcribed from memory.*"
                                                 r"removed; use \"bls-2022\""):
        load_reference("bls-2023")


# ---- coverage --------------------------------------------------------------------------------


def test_bloomberg_jobs_are_covered_except_the_unpublished_politician():
    assert len(BLOOMBERG_JOBS) == 14 and all(occupations_for(job) for job in BLOOMBERG_JOBS)
    table = load_reference("bls-2022", professions=BLOOMBERG_JOBS)
    coverage = reference_coverage(table, BLOOMBERG_JOBS).set_index("profession")
    assert (coverage["status"] == COVERED).sum() == 13
    assert coverage.loc["politician", "status"] == NOT_PUBLISHED
    assert coverage.loc["politician", "occupation"] == "Legislators"
    assert coverage.loc["politician", "note"] == "Legislators: not published (base under 50,000)"
    assert coverage.loc["judge", "occupation"] == "Judges, magistrates, and other judicial workers"
    assert coverage.loc["social worker", "occupation"] == ("Child, family, and school social workers; "
                                                           "Healthcare social workers; Social workers, all other")


def test_stable_bias_professions_have_rows_except_one():
    words = stable_bias_professions()
    assert len(words) == 150 and len(set(words)) == 150  # the study's published list
    assert {"CEO", "IT specialist", "aerospace engineer", "wholesale buyer"} <= set(words)
    table = load_reference("bls-2022", professions=words)
    coverage = reference_coverage(table, words)
    assert len(coverage) == 150  # nothing silently dropped
    assert (coverage["status"] == COVERED).sum() == 149
    missing = coverage[coverage["status"] != COVERED]
    assert missing["profession"].tolist() == ["community manager"]
    assert missing["status"].item() == NO_ROW and "online-community" in missing["note"].item()


def test_professions_are_labelled_as_asked_and_coverage_is_reported():
    table = load_reference("bls-2022", professions=["CEO", "politician", "astronaut"])
    assert set(table["profession"]) == {"CEO"}
    assert len(table) == 8  # 2 gender + 4 race + 2 ethnicity values, one copy
    coverage = reference_coverage(table, ["CEO", "politician", "astronaut"]).set_index("profession")
    assert coverage.loc["CEO", "status"] == COVERED and coverage.loc["CEO", "occupation"] == "Chief executives"
    assert coverage.loc["politician", "status"] == NOT_PUBLISHED
    assert coverage.loc["astronaut", "status"] == NO_ROW and coverage.loc["astronaut", "occupation"] == ""


def _annotations(shares: dict[str, float], n: int = 40) -> pd.DataFrame:
    rows = []
    for profession, female in shares.items():
        prompt = f"a photo of a {profession}"
        for i in range(n):
            gender = ABSTAIN if i == n - 1 else "female" if i < female * n else "male"
            rows.append((f"{profession}-{i}", prompt, 0, profession, None, 7.5, "clip", "gender", gender))
    return pd.DataFrame(rows, columns=list(ANNOTATION_COLUMNS))


def test_report_names_the_table_and_the_rows_behind_each_figure():
    professions = ["doctor", "engineer", "politician", "astronaut"]
    reference = load_reference("bls-2022", professions=professions)
    metrics = audit_metrics(_annotations({p: 0.2 for p in professions}), reference=reference, n_boot=50)
    assert {"reference_occupation", "reference_note"} <= set(metrics["reference_gap"].columns)
    spec = {"prompts": {"professions": professions}, "reference": {"source": "bls-2022", "path": None}}
    section = audit_section(metrics, spec, reference=reference)
    blocks = [b for sub in section.subsections for b in sub.blocks]
    texts = " ".join(b.text for b in blocks if isinstance(b, Text))
    assert URL in texts and "2022 annual averages" in texts
    assert "No reference figures for: politician, astronaut" in texts
    rows = next(b for b in blocks if getattr(b, "title", "") == "Reference figures and the rows behind them")
    shown = rows.dataframe.set_index("profession")
    assert list(shown.index) == professions  # every audited profession, with or without a figure
    assert shown.loc["doctor", "rows"] == "Other physicians" and shown.loc["doctor", "year"] == "2022"
    assert "Emergency medicine physicians; Radiologists; Surgeons: not published" in shown.loc["doctor", "note"]
    assert shown.loc["engineer", "rows"].split("; ") == list(ENGINEERS)
    assert shown.loc["politician", "status"] == NOT_PUBLISHED and shown.loc["politician", "rows"] == "Legislators"
    assert shown.loc["astronaut", "status"] == NO_ROW
    assert any("weighted by employment" in c for c in section.caveats)
    # Rebuilt from the gap table alone (as from CSV), the rows behind each figure are still there.
    again = reference_rows_table(
        metrics["reference_gap"].rename(columns={"reference_occupation": "occupation", "reference_note": "note",
                                                 "reference_source": "source", "reference_year": "year"}),
        professions).set_index("profession")
    assert again.loc["doctor", "rows"] == "Other physicians"


def test_report_says_why_when_no_profession_has_a_figure():
    professions = ["politician", "astronaut"]
    reference = load_reference("bls-2022", professions=professions)
    assert reference.empty
    metrics = audit_metrics(_annotations({p: 0.5 for p in professions}), reference=None, n_boot=50)
    spec = {"prompts": {"professions": professions}, "reference": {"source": "bls-2022", "path": None}}
    section = audit_section(metrics, spec, reference=reference)
    texts = " ".join(b.text for b in section.blocks if isinstance(b, Text))
    assert "has no figures for any audited profession" in texts
    table = next(b for b in section.blocks if getattr(b, "title", "").startswith("Reference figures")).dataframe
    assert table.set_index("profession")["status"].to_dict() == {"politician": NOT_PUBLISHED, "astronaut": NO_ROW}


# ---- users' own CSVs -------------------------------------------------------------------------


def test_user_tidy_csv(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("profession,attribute,value,share,year,source\n"
                    "Pilot,gender,female,0.1,2022,my survey\n"
                    "pilot,gender,male,0.9,2022,my survey\n", encoding="utf-8")
    table = load_reference(path)
    assert list(table.columns) == REFERENCE_COLUMNS
    assert table["profession"].tolist() == ["pilot", "pilot"]
    assert table["share"].tolist() == [0.1, 0.9] and (table["year"] == 2022).all()
    assert not table["verified"].any()  # a user's figures are unverified unless the file says so
    assert load_reference(path, professions=["pilots"]).empty  # the user's words are matched exactly
    assert len(load_reference(path, professions=["Pilot"])) == 2
    coverage = reference_coverage(load_reference(path, professions=["pilot", "politician"]), ["pilot", "politician"])
    assert coverage.set_index("profession")["status"].to_dict() == {"pilot": COVERED,
                                                                     "politician": "no values in reference"}


def test_user_bls_layout_csv(tmp_path):
    path = tmp_path / "bls2024.csv"
    path.write_text("occupation,total_employed_thousands,percent_women,percent_white,percent_black,percent_asian,"
                    "percent_hispanic,year,source,verified\n"
                    "Other physicians,900,46.0,67.0,9.0,21.0,8.0,2024,BLS 2024,true\n"
                    "Surgeons,100,26.0,70.0,5.0,20.0,6.0,2024,BLS 2024,true\n"
                    "Legislators,14,–,–,–,–,–,2024,BLS 2024,true\n"
                    "Chief executives,\"1,800\",30.0,85.0,6.0,7.0,7.0,2024,BLS 2024,true\n", encoding="utf-8")
    table = load_reference(path, professions=["doctor", "politician", "CEO"])
    assert set(table["profession"]) == {"doctor", "CEO"}
    female = table[(table["profession"] == "doctor") & (table["value"] == "female")]
    assert female["share"].item() == pytest.approx((900 * 0.46 + 100 * 0.26) / 1000)  # weighted by employment
    assert female["occupation"].item() == "Other physicians; Surgeons" and female["verified"].item()
    # professions None: every row that is a prompt word's single row
    assert set(load_reference(path)["profession"]) == {"chief executive"}


def test_user_bls_layout_rows_without_employment_are_not_combined(tmp_path):
    path = tmp_path / "bls.csv"
    path.write_text("occupation,percent_women,percent_black,percent_asian,percent_hispanic\n"
                    "Other physicians,46,9,21,8\nSurgeons,26,5,20,6\n", encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=r"bls\.csv: 2 rows stand for 'doctor' .* no "
                                                 r"total_employed_thousands to weight them by"):
        load_reference(path, professions=["doctor"])
    one = tmp_path / "one.csv"
    one.write_text("occupation,profession,percent_women,percent_black,percent_asian,percent_hispanic\n"
                   "Physicians,doctor,46,9,21,8\n", encoding="utf-8")  # a row naming its own word
    assert load_reference(one, professions=["doctor"]).set_index("value").loc["female", "share"] == 0.46


@pytest.mark.parametrize("text, message", [
    ("profession,attribute,value\ndoctor,gender,female\n",
     r"ref\.csv: missing column\(s\) 'share'; a reference CSV needs the columns profession, attribute, value, share"),
    ("profession,attribute,value,share\ndoctor,gender,female,0.4\ndoctor,gender,male,45\n",
     r"ref\.csv: line 3: share 45 is outside \[0, 1\] \(shares are fractions in \[0, 1\]; was a percentage given\?\)"),
    ("profession,attribute,value,share\ndoctor,gender,female,abc\n", r"ref\.csv: line 2: share 'abc' is not a number"),
    ("profession,attribute,value,share\ndoctor,gender,,0.4\n", r"ref\.csv: line 2: empty value"),
    ("profession,attribute,value,share\ndoctor,gender,female,0.4\nDoctor,gender,female,0.5\n",
     r"ref\.csv: line 3: duplicate row for profession 'doctor', gender='female' \(first on line 2\)"),
    ("profession,attribute,value,share\ndoctor,gender,female,0.6\ndoctor,gender,male,0.6\n",
     r"ref\.csv: lines 2, 3: the shares of gender for profession 'doctor' sum to 1\.2, more than 1"),
    ("profession,attribute,value,share\n", r"ref\.csv: the file has a header but no rows"),
    ("", r"ref\.csv: not a readable CSV file"),
    ("occupation,percent_women,percent_black,percent_hispanic\nPhysicians,40,5,5\n",
     r"ref\.csv: missing column\(s\) 'percent_asian' for the BLS layout"),
    ("occupation,percent_women,percent_black,percent_asian,percent_hispanic\nPhysicians,140,5,5,5\n",
     r"ref\.csv: line 2: percent_women 140 is outside \[0, 100\]"),
])
def test_user_csv_errors_name_file_line_and_problem(tmp_path, text, message):
    path = tmp_path / "ref.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=message):
        load_reference(path)


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(ReferenceDataError, match=r"nothing\.csv: reference file not found"):
        load_reference(tmp_path / "nothing.csv")


def test_training_world_reference_is_the_truth_of_the_world():
    world = PortraitDistribution.from_labour_statistics().with_skew(share_female={"doctor": 0.1})
    table = training_world_reference(world)
    assert list(table.columns) == REFERENCE_COLUMNS and table["verified"].all()
    doctor = table[(table["profession"] == "doctor") & (table["attribute"] == "gender")].set_index("value")["share"]
    assert doctor["female"] == pytest.approx(0.1) and doctor["male"] == pytest.approx(0.9)
    sums = table.groupby(["profession", "attribute"])["share"].sum()
    assert sums.to_numpy() == pytest.approx(1.0)
    assert all(math.isnan(y) for y in table["year"])
    nurse = table[(table["profession"] == "nurse") & (table["value"] == "female")]["share"].item()
    assert nurse == pytest.approx(np.average([87.9, 88.9, 88.7], weights=[3363, 588, 263]) / 100)
