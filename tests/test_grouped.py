"""GroupedShares: shares by group with Wilson intervals, pooled overall, differences between groups, and
its declared CSV schema (the audit's shares table is one)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from synthscope.audits.metrics import ABSTAIN, attribute_shares
from synthscope.grouped import Column, GroupedCrossCounts, GroupedProportions, GroupedShares, Schema
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


def test_optional_bool_keeps_true_false_and_missing_through_csv():
    schema = Schema((Column("source", "text"), Column("seen", "optional_bool")))
    fresh = schema.coerce(pd.DataFrame({"source": ["real", "gan", "vae"], "seen": [None, True, False]}))
    assert fresh["seen"].tolist() == [None, True, False] and fresh["seen"].dtype == object
    text = schema.to_csv(fresh)
    assert text == "source,seen\nreal,\ngan,True\nvae,False\n"  # missing is an empty cell
    back = schema.read_csv(io.StringIO(text))
    assert back["seen"].tolist() == [None, True, False]
    pd.testing.assert_frame_equal(back, fresh)
    with pytest.raises(ValueError, match="not true, false or empty"):
        schema.read_csv(io.StringIO("source,seen\ngan,maybe\n"))


def test_abstentions_one_row_per_group_with_the_rate_and_its_interval():
    table = shares().abstentions().set_index("profession")
    doctor = table.loc["doctor"]
    assert (doctor["n_images"], doctor["n_abstained"]) == (4, 1) and doctor["abstention_rate"] == pytest.approx(0.25)
    assert (doctor["abstention_rate_ci_low"], doctor["abstention_rate_ci_high"]) == pytest.approx(
        wilson_interval(1, 4), abs=1e-12)
    assert len(table) == 3  # doctor, nurse, nurse described as male: one row each


def test_spread_and_change_along_a_key():
    no_descriptor = annotations()[annotations()["descriptor"].isna()].assign(guidance=7.5)
    grouped = GroupedShares.from_frame(attribute_shares(no_descriptor, by=("guidance", "profession")),
                                       ["guidance", "profession", "annotator", "attribute"])
    spread = grouped.spread("profession").set_index("value")
    assert spread.loc["female", "n_groups"] == 2 and spread.loc["female", "mean"] == pytest.approx((2 / 3 + 0.75) / 2)
    assert spread.loc[ABSTAIN, "maximum"] == pytest.approx(0.25)  # the abstention row compares shares of all
    change = grouped.change("profession")
    assert list(change.columns[:4]) == ["guidance", "annotator", "attribute", "profession"]
    female = change[change["value"] == "female"]
    assert female["profession"].tolist() == ["doctor", "nurse"]
    assert female["change_from_lowest_profession"].tolist() == pytest.approx([0.0, 0.75 - 2 / 3])


def test_cross_counts_expected_counts_flags_and_csv_round_trip():
    counts = pd.DataFrame({"profession": ["doctor"] * 4, "gender": ["female", "female", "male", "male"],
                           "tone": ["1", "6", "1", "6"], "count": [6, 2, 2, 0]})
    cells = GroupedCrossCounts(counts, ["profession"], ("gender", "tone"), min_n=5, min_expected=2.0)
    table = cells.by_group.set_index(["gender", "tone"])
    assert (table["n_images"] == 10).all() and table.loc[("female", "6"), "expected"] == pytest.approx(8 * 2 / 10)
    assert table.loc[("female", "6"), "low_expected"] and not table["small_group"].any()
    assert table.loc[("female", "1"), "share"] == pytest.approx(0.6)
    back = GroupedCrossCounts.read_csv(io.StringIO(cells.to_csv()), ["profession"], ("gender", "tone"), min_n=5,
                                       min_expected=2.0)
    pd.testing.assert_frame_equal(back.by_group, cells.by_group)


CARRIED = Schema((Column("accuracy", "float"), Column("recall", "float")))


def proportions():
    """colour: red 3 of 4, blue 0 of 2 (listed red first); digit: 7 2 of 2. accuracy per attribute,
    recall per value."""
    counts = pd.DataFrame({"attribute": ["colour", "colour", "digit"], "requested": ["red", "blue", "7"],
                           "n": [4, 2, 2], "k": [3, 0, 2], "accuracy": [0.9, 0.9, 0.8],
                           "recall": [1.0, np.nan, 0.5]})
    return GroupedProportions(counts, ["attribute", "requested"], "adherence", carried=CARRIED)


def test_proportions_by_group_keep_the_order_given_with_wilson_intervals():
    table = proportions().by_group
    assert list(table.columns) == ["attribute", "requested", "n", "k", "adherence", "adherence_ci_low",
                                   "adherence_ci_high", "accuracy", "recall"]
    assert table["requested"].tolist() == ["red", "blue", "7"]  # not sorted: the caller's order
    assert table["adherence"].tolist() == pytest.approx([0.75, 0.0, 1.0])
    for row in table.itertuples():
        assert (row.adherence_ci_low, row.adherence_ci_high) == pytest.approx(wilson_interval(row.k, row.n), abs=1e-12)
    assert np.isnan(table.loc[1, "recall"])


def test_proportions_overall_pools_counts_and_keeps_what_describes_the_remaining_keys():
    pooled = proportions().overall(["requested"], keep=["accuracy"])
    table = pooled.by_group
    assert pooled.keys == ["attribute"] and list(table.columns) == ["attribute", "n", "k", "adherence",
                                                                     "adherence_ci_low", "adherence_ci_high",
                                                                     "accuracy"]
    assert table["attribute"].tolist() == ["colour", "digit"]
    assert table[["n", "k"]].to_numpy().tolist() == [[6, 3], [2, 2]]
    assert (table.loc[0, "adherence_ci_low"], table.loc[0, "adherence_ci_high"]) == pytest.approx(
        wilson_interval(3, 6), abs=1e-12)
    assert table["accuracy"].tolist() == [0.9, 0.8]
    assert "recall" not in proportions().overall(["requested"]).by_group  # not kept unless asked
    everything = proportions().overall(["attribute", "requested"]).by_group
    assert everything[["n", "k"]].to_numpy().tolist() == [[8, 5]]
    with pytest.raises(ValueError, match="recall differs"):
        proportions().overall(["requested"], keep=["recall"])
    with pytest.raises(ValueError, match="not carried"):
        proportions().overall(["requested"], keep=["colour"])
    with pytest.raises(ValueError, match="none of"):
        proportions().overall(["guidance"])


def test_proportions_difference_between_groups():
    diff = proportions().difference("requested").set_index("attribute")
    colour = diff.loc["colour"]
    assert (colour["n_groups"], colour["minimum"], colour["maximum"]) == (2, 0.0, 0.75)
    assert colour["difference"] == pytest.approx(0.75)
    assert (colour["requested_of_min"], colour["requested_of_max"]) == ("blue", "red")
    assert diff.loc["digit", "difference"] == 0.0 and diff.loc["digit", "n_groups"] == 1
    with pytest.raises(ValueError, match="not a key"):
        proportions().difference("colour")


def test_proportions_csv_round_trip_keeps_values_types_and_order():
    grouped = proportions()
    back = GroupedProportions.read_csv(io.StringIO(grouped.to_csv()), ["attribute", "requested"], "adherence",
                                       carried=CARRIED)
    pd.testing.assert_frame_equal(back.by_group, grouped.by_group)
    assert back.by_group["requested"].tolist() == ["red", "blue", "7"]  # "7" stays text

