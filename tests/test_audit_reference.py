"""Reference data for audits: the shipped BLS table, the prompt-word mapping, users' CSVs."""

from __future__ import annotations

import math
from importlib import resources

import pandas as pd
import pytest
from synthscope.audits.reference import (
    BLOOMBERG_JOBS,
    MORE_OCCUPATIONS_CSV,
    REFERENCE_COLUMNS,
    ReferenceDataError,
    load_reference,
    occupation_for,
    reference_coverage,
    training_world_reference,
)
from synthscope.generators.portraits import BLS_COLUMNS, PROFESSIONS, PortraitDistribution, load_bls_reference


@pytest.fixture(scope="module")
def bls():
    return load_reference("bls-2023")


def test_mapping_covers_the_builtin_professions_as_the_shipped_table_does():
    shipped = load_bls_reference()
    rows = shipped[shipped["profession"] != ""].set_index("profession")["occupation"]
    for profession in PROFESSIONS:
        assert occupation_for(profession) == rows[profession]


def test_mapping_resolves_synonyms_plurals_and_bloomberg_jobs():
    assert occupation_for("CEO") == "Chief executives"
    assert occupation_for("a Software Developer") == "Software developers"
    assert occupation_for("doctors") == "Physicians"
    assert occupation_for("fast-food workers") == "Fast food and counter workers"
    assert occupation_for("housekeeper") == "Maids and housekeeping cleaners"
    assert occupation_for("astronaut") is None
    assert len(BLOOMBERG_JOBS) == 14 and all(occupation_for(job) for job in BLOOMBERG_JOBS)


def test_builtin_reference_is_tidy_and_sourced(bls):
    assert list(bls.columns) == REFERENCE_COLUMNS
    assert set(PROFESSIONS) <= set(bls["profession"])
    assert set(bls["attribute"]) == {"gender", "race", "ethnicity"}
    assert (bls["year"] == 2023).all()
    assert bls["source"].str.contains("https://www.bls.gov/cps/cpsaat11.htm", regex=False).all()
    assert not bls["verified"].any()  # nothing was checked against the live table (no network here)
    sums = bls.groupby(["profession", "attribute"])["share"].sum()
    assert sums.to_numpy() == pytest.approx(1.0)
    doctor = bls[bls["profession"] == "doctor"].set_index(["attribute", "value"])["share"]
    assert doctor[("gender", "female")] == pytest.approx(0.448)  # percent_women 44.8
    # race: white 68.5, Black 8.3, Asian 21.0 -> other = 100 - 97.8 = 2.2 %
    assert doctor[("race", "other")] == pytest.approx(0.022)
    assert doctor[("ethnicity", "hispanic")] == pytest.approx(0.079)


def test_extra_occupations_csv_matches_the_shipped_layout():
    path = resources.files("synthscope.audits").joinpath("resources", MORE_OCCUPATIONS_CSV)
    with path.open("r", encoding="utf-8") as handle:
        table = pd.read_csv(handle, keep_default_na=False)
    assert list(table.columns) == [*BLS_COLUMNS, "verified", "note"]
    assert (table["verified"].astype(str).str.lower() == "false").all()
    assert (table["note"].str.len() > 20).all()


def test_professions_are_labelled_as_asked_and_coverage_is_reported():
    table = load_reference("bls-2023", professions=["CEO", "judge", "astronaut"])
    assert set(table["profession"]) == {"CEO"}
    assert len(table) == 8  # 2 gender + 4 race + 2 ethnicity values, one copy
    coverage = reference_coverage(table, ["CEO", "judge", "astronaut"]).set_index("profession")
    assert coverage.loc["CEO", "status"] == "ok"
    assert coverage.loc["CEO", "occupation"] == "Chief executives"
    assert coverage.loc["judge", "status"] == "no values in reference"
    assert coverage.loc["astronaut", "status"] == "no BLS row for this word"


def test_user_tidy_csv(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("profession,attribute,value,share,year,source\n"
                    "Pilot,gender,female,0.1,2022,my survey\n"
                    "pilot,gender,male,0.9,2022,my survey\n", encoding="utf-8")
    table = load_reference(path)
    assert list(table.columns) == REFERENCE_COLUMNS
    assert table["profession"].tolist() == ["pilot", "pilot"]
    assert table["share"].tolist() == [0.1, 0.9] and (table["year"] == 2022).all()
    assert load_reference(path, professions=["pilots"]).empty  # the user's words are matched exactly
    assert len(load_reference(path, professions=["Pilot"])) == 2


def test_user_bls_layout_csv(tmp_path):
    path = tmp_path / "bls2024.csv"
    path.write_text("occupation,percent_women,percent_white,percent_black,percent_asian,percent_hispanic,year,source\n"
                    "Physicians,46.0,67.0,9.0,21.0,8.0,2024,BLS 2024\n"
                    "Legislators,–,–,–,–,–,2024,BLS 2024\n", encoding="utf-8")
    table = load_reference(path, professions=["doctor", "politician"])
    assert set(table["profession"]) == {"doctor"}
    female = table[(table["attribute"] == "gender") & (table["value"] == "female")]["share"].item()
    assert female == pytest.approx(0.46)


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
