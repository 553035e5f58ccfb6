"""GroupedShares: shares by group with Wilson intervals, pooled overall, differences between groups, and
its declared CSV schema (the audit's shares table is one)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from synthscope.audits.metrics import ABSTAIN, attribute_shares
from synthscope.grouped import Column, GroupedShares, Schema
from synthscope.stats import wilson_interval


def annotations():
    """doctor: F F M U (no descriptor, guidance 7.5); nurse: F F F M (no descriptor, no guidance);
    nurse with descriptor "male": M M."""
    rows = []
    for i, (profession, descriptor, guidance, value) in enumerate(
            [("doctor", None, 7.5, v) for v in ("female", "female", "male", ABSTAIN)]
            + [("nurse", None, np.nan, v) for v in ("female", "female", "female", "male")]
            + [("nurse", "male", np.nan, "male")] * 2):
        rows.append({"image_id": f"i{i}", "prompt": f"a {descriptor or ''} {profession}", "template": 0,
                     "profession": profession, "descriptor": descriptor, "guidance": guidance, "annotator": "probe",
                     "attribute": "gender", "value": value})
    return pd.DataFrame(rows)


KEYS = ["profession", "descriptor", "guidance", "annotator", "attribute"]


def shares():
    return GroupedShares.from_frame(attribute_shares(annotations()), KEYS)


def test_missing_keys_are_groups_of_their_own_and_numbers_are_the_counts():
    table = shares().by_group
    nurse = table[(table["profession"] == "nurse") & table["descriptor"].isna() & table["guidance"].isna()]
    female = nurse.set_index("value").loc["female"]
    assert (female["count"], female["n_images"], female["n_determined"]) == (3, 4, 4)
    assert female["share_of_determined"] == pytest.approx(0.75)
    assert (female["share_of_determined_ci_low"], female["share_of_determined_ci_high"]) == pytest.approx(
        wilson_interval(3, 4), abs=1e-12)
    described = table[table["descriptor"] == "male"].set_index("value")
    assert described.loc["male", "count"] == 2 and described.loc["female", "count"] == 0  # completed with 0
    assert np.isnan(table.loc[table["is_abstention"], "share_of_determined"]).all()


def test_csv_round_trip_keeps_values_and_types():
    grouped = shares()
    text = grouped.to_csv()
    assert text == grouped.by_group.to_csv(index=False)  # what the audit writes for this table
    back = GroupedShares.read_csv(io.StringIO(text), KEYS)
    pd.testing.assert_frame_equal(back.by_group, grouped.by_group)
    assert back.by_group["descriptor"].isna().sum() == grouped.by_group["descriptor"].isna().sum()


def test_overall_pools_groups_like_a_table_with_fewer_keys():
    pooled = shares().overall(["descriptor", "guidance"]).by_group
    direct = attribute_shares(annotations(), by=("profession",))
    pd.testing.assert_frame_equal(pooled, direct)
    with pytest.raises(ValueError, match="none of"):
        shares().overall(["colour"])


def test_difference_between_groups():
    no_descriptor = attribute_shares(annotations()[annotations()["descriptor"].isna()], by=("profession",))
    diff = GroupedShares.from_frame(no_descriptor, ["profession", "annotator", "attribute"]).difference("profession")
    female = diff.set_index("value").loc["female"]
    # doctor 2/3, nurse 3/4: difference 1/12, the nurse's share the larger
    assert female["difference"] == pytest.approx(0.75 - 2 / 3)
    assert (female["profession_of_min"], female["profession_of_max"], female["n_groups"]) == ("doctor", "nurse", 2)
    assert ABSTAIN not in set(diff["value"])  # no determined share on the abstention row
    with pytest.raises(ValueError, match="not a key"):
        GroupedShares.from_frame(no_descriptor, ["profession"]).difference("guidance")


def test_schema_declares_and_checks_columns():
    schema = Schema((Column("name", "text"), Column("n", "int"), Column("ok", "bool"), Column("note", "optional_text")))
    frame = schema.read_csv(io.StringIO("name,n,ok,note\na,1,True,\nb,2,False,x\n"))
    assert frame["name"].tolist() == ["a", "b"] and frame["n"].dtype == np.int64 and frame["ok"].dtype == bool
    assert frame["ok"].tolist() == [True, False]
    assert frame["note"].isna().tolist() == [True, False]
    with pytest.raises(ValueError, match="lacks column"):
        schema.coerce(frame.drop(columns=["n"]))
    with pytest.raises(ValueError, match="kind"):
        Column("x", "colour")
