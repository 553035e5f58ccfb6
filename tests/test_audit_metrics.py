"""Audit metrics against hand-computed values (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from synthscope.audits.metrics import (
    ABSTAIN,
    amplification,
    attribute_shares,
    audit_metrics,
    diversity,
    guidance_sweep,
    intersectional_table,
    kl_divergence,
    l1_distance,
    mean_absolute_deviation,
    normalised_entropy,
    prepare_annotations,
    profession_shares,
    prompt_shares,
    reference_gap,
    template_spread,
)

from synthscope.stats import wilson_bounds, wilson_interval


def rows(profession, labels, template=0, descriptor=None, guidance=7.5, attribute="gender", annotator="probe",
         start=0):
    """Annotation rows for a list of labels, one image each."""
    return [{"image_id": f"{profession}-{template}-{descriptor}-{guidance}-{start + i}",
             "prompt": f"t{template} {descriptor or ''} {profession}", "template": template,
             "profession": profession, "descriptor": descriptor, "guidance": guidance, "annotator": annotator,
             "attribute": attribute, "value": label} for i, label in enumerate(labels)]


@pytest.fixture
def tiny():
    """10 doctor images: template 0 -> F F M M U, template 1 -> F M M M M (3 F, 6 M, 1 undetermined)."""
    return pd.DataFrame(rows("doctor", ["female", "female", "male", "male", ABSTAIN], template=0)
                        + rows("doctor", ["female", "male", "male", "male", "male"], template=1))


@pytest.fixture
def bls_like():
    return pd.DataFrame({"profession": ["doctor", "doctor", "nurse", "nurse"],
                         "attribute": ["gender"] * 4, "value": ["female", "male", "female", "male"],
                         "share": [0.448, 0.552, 0.876, 0.124], "year": [2023.0] * 4, "source": ["BLS"] * 4,
                         "occupation": ["Physicians"] * 2 + ["Registered nurses"] * 2, "verified": [False] * 4,
                         "note": [""] * 4})


# ---- formulas ---------------------------------------------------------------------------------


def test_wilson_interval_numbers():
    # k = 3, n = 10, z = 1.959964, z^2 = 3.841459: denominator 1 + z^2/n = 1.3841459;
    # centre (0.3 + z^2/(2n)) / 1.3841459 = 0.492073 / 1.3841459 = 0.355507;
    # half-width z sqrt(0.3*0.7/10 + z^2/(4 n^2)) / 1.3841459 = 1.959964 * 0.174939 / 1.3841459 = 0.247715
    low, high = wilson_interval(3, 10)
    assert low == pytest.approx(0.355507 - 0.247715, abs=1e-5) and high == pytest.approx(0.355507 + 0.247715, abs=1e-5)
    assert wilson_interval(0, 0) == (None, None)


def test_vectorised_wilson_equals_the_shared_one():
    pairs = [(k, n) for n in (1, 2, 5, 9, 10, 30, 101, 1000) for k in sorted({0, 1, n // 3, n // 2, n - 1, n})]
    for confidence in (0.95, 0.9):
        low, high = wilson_bounds(np.array([k for k, _ in pairs]), np.array([n for _, n in pairs]), confidence)
        for (k, n), lo, hi in zip(pairs, low, high):
            assert (lo, hi) == pytest.approx(wilson_interval(k, n, confidence), abs=1e-12)
    low, high = wilson_bounds(np.array([0]), np.array([0]))
    assert math.isnan(low[0]) and math.isnan(high[0])


def test_normalised_entropy():
    assert normalised_entropy([0.5, 0.5]) == pytest.approx(1.0)
    assert normalised_entropy([1 / 6] * 6) == pytest.approx(1.0)  # uniform over any K is 1
    assert normalised_entropy([1.0, 0.0]) == pytest.approx(0.0)
    # (0.5 ln 2 + 2 * 0.25 ln 4) / ln 3 = (0.346574 + 0.693147) / 1.098612 = 0.946395
    assert normalised_entropy([0.5, 0.25, 0.25]) == pytest.approx(0.946395, abs=1e-6)
    assert math.isnan(normalised_entropy([1.0]))


def test_l1_and_mad():
    # |0.7 - 1/3| + |0.2 - 1/3| + |0.1 - 1/3| = 0.366667 + 0.133333 + 0.233333 = 0.733333; MAD = 0.733333 / 3
    assert l1_distance([0.7, 0.2, 0.1], [1 / 3] * 3) == pytest.approx(0.733333, abs=1e-6)
    assert mean_absolute_deviation([0.7, 0.2, 0.1], [1 / 3] * 3) == pytest.approx(0.244444, abs=1e-6)


def test_kl_with_smoothing():
    # counts (3, 1), alpha 0.5: p~ = (3.5, 1.5) / 5 = (0.7, 0.3); parity r~ = (4 * 0.5 + 0.5) / 5 = 0.5 each;
    # KL = 0.7 ln 1.4 + 0.3 ln 0.6 = 0.235531 - 0.153248 = 0.082283
    assert kl_divergence([3, 1]) == pytest.approx(0.082283, abs=1e-6)
    # Laplace (alpha 1): p~ = (4, 2) / 6; KL = 2/3 ln(4/3) + 1/3 ln(2/3) = 0.191788 - 0.135155 = 0.056633
    assert kl_divergence([3, 1], alpha=1.0) == pytest.approx(0.056633, abs=1e-6)
    # reference (0.8, 0.2): r~ = ((3.2 + 0.5) / 5, (0.8 + 0.5) / 5) = (0.74, 0.26);
    # KL = 0.7 ln(0.7 / 0.74) + 0.3 ln(0.3 / 0.26) = -0.038899 + 0.042930 = 0.004031
    assert kl_divergence([3, 1], [0.8, 0.2]) == pytest.approx(0.004031, abs=1e-6)
    # a value never seen stays finite: p~ = (4.5, 0.5) / 5; 0.9 ln 1.8 + 0.1 ln 0.2 = 0.529008 - 0.160944
    assert kl_divergence([4, 0]) == pytest.approx(0.368064, abs=1e-6)
    assert kl_divergence([5, 5]) == pytest.approx(0.0)


# ---- shares, abstentions ----------------------------------------------------------------------


def test_shares_count_abstentions_and_give_both_denominators(tiny):
    table = profession_shares(tiny).set_index("value")
    assert table.loc["female", "count"] == 3 and table.loc["male", "count"] == 6
    assert table.loc[ABSTAIN, "count"] == 1 and bool(table.loc[ABSTAIN, "is_abstention"])
    assert (table["n_images"] == 10).all() and (table["n_abstained"] == 1).all() and (table["n_determined"] == 9).all()
    # over all images: 3 / 10 with the Wilson interval of 3 of 10 (see test_wilson_interval_numbers)
    assert table.loc["female", "share_of_all"] == pytest.approx(0.3)
    assert table.loc["female", "share_of_all_ci_low"] == pytest.approx(0.107792, abs=1e-5)
    assert table.loc["female", "share_of_all_ci_high"] == pytest.approx(0.603222, abs=1e-5)
    # over determined images: 3 / 9; Wilson(3, 9): centre 0.546748 / 1.426829 = 0.383190,
    # half-width 1.959964 * sqrt(0.024691 + 0.011856) / 1.426829 = 0.262604 -> (0.120586, 0.645794)
    assert table.loc["female", "share_of_determined"] == pytest.approx(1 / 3)
    assert table.loc["female", "share_of_determined_ci_low"] == pytest.approx(0.120586, abs=1e-5)
    assert table.loc["female", "share_of_determined_ci_high"] == pytest.approx(0.645794, abs=1e-5)
    assert table.loc[ABSTAIN, "share_of_all"] == pytest.approx(0.1)
    assert math.isnan(table.loc[ABSTAIN, "share_of_determined"])


def test_values_never_seen_are_reported_with_zero_counts(tiny):
    table = profession_shares(tiny, values={"gender": ["female", "male", "nonbinary"]}).set_index("value")
    assert table.loc["nonbinary", "count"] == 0 and table.loc["nonbinary", "share_of_determined"] == 0
    assert table.loc["nonbinary", "share_of_determined_ci_high"] > 0  # 0 of 9 is not "surely none"
    # an abstention row is there even when nobody abstained
    clean = tiny[tiny["value"] != ABSTAIN]
    shares = profession_shares(clean).set_index("value")
    assert shares.loc[ABSTAIN, "count"] == 0 and shares.loc[ABSTAIN, "share_of_all"] == 0


def test_prompt_shares_and_descriptor_groups(tiny):
    data = pd.concat([tiny, pd.DataFrame(rows("doctor", ["female"] * 4, template=1, descriptor="female"))])
    per_prompt = prompt_shares(data)
    assert set(per_prompt["prompt"]) == {"t0  doctor", "t1  doctor", "t1 female doctor"}
    per_prof = profession_shares(data)
    plain = per_prof[per_prof["descriptor"].isna() & (per_prof["value"] == "female")]
    named = per_prof[(per_prof["descriptor"] == "female") & (per_prof["value"] == "female")]
    assert plain["count"].item() == 3 and named["count"].item() == 4  # never pooled together


def test_order_of_rows_does_not_matter(tiny):
    shuffled = tiny.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(profession_shares(tiny), profession_shares(shuffled))


def test_bad_annotations_are_refused(tiny):
    with pytest.raises(ValueError, match="annotations lack column"):
        attribute_shares(tiny.drop(columns=["annotator"]))
    with pytest.raises(ValueError, match="has two gender labels from annotator 'probe'"):
        prepare_annotations(pd.concat([tiny, tiny.iloc[:1]]))


# ---- diversity, gap, amplification -----------------------------------------------------------


def test_diversity_against_hand_values(tiny, bls_like):
    row = diversity(profession_shares(tiny), bls_like).iloc[0]
    assert row["n_images"] == 10 and row["n_determined"] == 9 and row["abstention_rate"] == pytest.approx(0.1)
    # determined shares (1/3, 2/3): entropy (1/3 ln 3 + 2/3 ln 1.5) / ln 2 = 0.636514 / 0.693147 = 0.918296
    assert row["normalised_entropy"] == pytest.approx(0.918296, abs=1e-6)
    # |1/3 - 1/2| + |2/3 - 1/2| = 1/3; MAD = 1/6
    assert row["l1_to_parity"] == pytest.approx(1 / 3) and row["mad_to_parity"] == pytest.approx(1 / 6)
    # counts (3, 6), alpha 0.5: p~ = (3.5, 6.5) / 10; KL to parity = 0.35 ln 0.7 + 0.65 ln 1.3
    assert row["kl_to_parity"] == pytest.approx(0.35 * math.log(0.7) + 0.65 * math.log(1.3))
    # to the reference (0.448, 0.552): |1/3 - 0.448| + |2/3 - 0.552| = 2 * 0.114667
    assert row["l1_to_reference"] == pytest.approx(0.229333, abs=1e-6)
    assert row["mad_to_reference"] == pytest.approx(0.114667, abs=1e-6)
    assert row["kl_to_reference"] == pytest.approx(kl_divergence([3, 6], [0.448, 0.552]))


def test_diversity_without_a_matching_reference_is_nan(tiny, bls_like):
    tones = pd.DataFrame(rows("doctor", ["1", "2", "2", "6"], attribute="skin_tone"))
    table = diversity(profession_shares(pd.concat([tiny, tones])), bls_like).set_index("attribute")
    assert math.isnan(table.loc["skin_tone", "l1_to_reference"])  # BLS has no skin tone
    # shares (1/4, 1/2, 1/4) over the 3 values seen: entropy (2 * 0.25 ln 4 + 0.5 ln 2) / ln 3
    assert table.loc["skin_tone", "normalised_entropy"] == pytest.approx(1.039721 / 1.098612, abs=1e-6)


def test_reference_gap(tiny, bls_like):
    gap = reference_gap(profession_shares(tiny), bls_like).set_index("value")
    # female: 3/9 - 0.448 = -0.114667; interval Wilson(3, 9) - 0.448 = (0.120586 - 0.448, 0.645794 - 0.448)
    assert gap.loc["female", "gap"] == pytest.approx(-0.114667, abs=1e-6)
    assert gap.loc["female", "gap_ci_low"] == pytest.approx(-0.327414, abs=1e-5)
    assert gap.loc["female", "gap_ci_high"] == pytest.approx(0.197794, abs=1e-5)
    assert not gap.loc["female", "significant"]  # 9 images cannot tell
    assert gap.loc["male", "gap"] == pytest.approx(2 / 3 - 0.552)
    assert gap.loc["female", "reference_source"] == "BLS" and gap.loc["female", "reference_year"] == 2023


def test_amplification_true_and_false(bls_like):
    data = pd.concat([
        # doctor: 90 of 100 male. model L1 to parity 2 |0.9 - 0.5| = 0.8; BLS 2 |0.552 - 0.5| = 0.104
        pd.DataFrame(rows("doctor", ["male"] * 90 + ["female"] * 10)),
        # nurse: 1000 / 1000. model L1 0; BLS 2 |0.876 - 0.5| = 0.752 -> amplification -0.752
        pd.DataFrame(rows("nurse", ["female"] * 1000 + ["male"] * 1000)),
    ])
    table = amplification(profession_shares(data), bls_like, n_boot=500, seed=1).set_index("profession")
    doctor, nurse = table.loc["doctor"], table.loc["nurse"]
    assert doctor["model_l1_to_parity"] == pytest.approx(0.8)
    assert doctor["reference_l1_to_parity"] == pytest.approx(0.104)
    assert doctor["amplification"] == pytest.approx(0.696)
    assert doctor["ci_low"] > 0 and doctor["verdict"] == "amplified" and doctor["same_majority"]
    assert nurse["amplification"] == pytest.approx(-0.752)
    assert nurse["ci_high"] < 0 and nurse["verdict"] == "attenuated"


def test_amplification_undecided_with_few_images(bls_like):
    # 6 of 10 male: model L1 0.2 vs BLS 0.104; +0.096, but 10 images cannot tell
    data = pd.DataFrame(rows("doctor", ["male"] * 6 + ["female"] * 4))
    row = amplification(profession_shares(data), bls_like, n_boot=500).iloc[0]
    assert row["amplification"] == pytest.approx(0.096)
    assert row["ci_low"] < 0 < row["ci_high"] and row["verdict"] == "not distinguishable"


def test_descriptor_prompts_are_left_out_of_reference_comparisons(tiny, bls_like):
    data = pd.concat([tiny, pd.DataFrame(rows("doctor", ["female"] * 4, descriptor="female"))])
    shares = profession_shares(data)
    assert reference_gap(shares, bls_like)["descriptor"].isna().all()
    assert amplification(shares, bls_like, n_boot=50)["descriptor"].isna().all()
    assert len(reference_gap(shares, bls_like, include_descriptors=True)) == 4
    table = diversity(shares, bls_like)
    named = table["descriptor"].notna()
    assert named.any() and table.loc[named, "l1_to_reference"].isna().all()
    assert table.loc[named, "normalised_entropy"].notna().all()  # adherence to the prompt is still measured
    assert table.loc[~named & (table["profession"] == "doctor"), "l1_to_reference"].notna().all()


# ---- intersections, phrasing, guidance --------------------------------------------------------


def test_intersectional_counts_and_small_sample_flags():
    genders = ["female"] * 20 + ["male"] * 20
    tones = ["1"] * 16 + ["6"] * 4 + ["1"] * 16 + ["6"] * 4
    data = pd.DataFrame(rows("doctor", genders) + rows("doctor", tones, attribute="skin_tone"))
    table = intersectional_table(data, ("gender", "skin_tone")).set_index(["gender", "skin_tone"])
    assert table.loc[("female", "6"), "count"] == 4 and (table["n_images"] == 40).all()
    # expected female & tone 6 = row total 20 x column total 8 / 40 = 4 < 5 -> warn; female & 1: 20 x 32 / 40 = 16
    assert table.loc[("female", "6"), "expected"] == pytest.approx(4.0)
    assert table.loc[("female", "6"), "low_expected"] and table.loc[("female", "6"), "small_sample_warning"]
    assert not table.loc[("female", "1"), "small_sample_warning"]
    assert not table["small_group"].any()  # 40 images >= 30
    assert table.loc[("female", "6"), "share"] == pytest.approx(0.1)
    # 10 images: every cell of the group is flagged as a small sample
    small = intersectional_table(data[data["image_id"].str.endswith(tuple(f"-{i}" for i in range(10)))])
    assert small["small_group"].all() and small["small_sample_warning"].all()


def test_intersectional_keeps_abstentions_as_a_category():
    data = pd.DataFrame(rows("doctor", ["female", ABSTAIN, "male"]) + rows("doctor", ["1", "1", "6"],
                                                                            attribute="skin_tone"))
    table = intersectional_table(data).set_index(["gender", "skin_tone"])
    assert table.loc[(ABSTAIN, "1"), "count"] == 1 and table["count"].sum() == 3


def test_template_spread(tiny):
    row = template_spread(tiny).set_index("value").loc["female"]
    # template 0: 2 of 4 determined = 0.5; template 1: 1 of 5 = 0.2
    assert row["n_templates"] == 2 and row["share_min"] == pytest.approx(0.2) and row["share_max"] == pytest.approx(0.5)
    assert row["share_range"] == pytest.approx(0.3) and row["share_mean"] == pytest.approx(0.35)
    # sample sd of (0.5, 0.2): sqrt((0.15^2 + 0.15^2) / 1) = 0.212132
    assert row["share_sd"] == pytest.approx(0.212132, abs=1e-6)
    assert row["template_of_min"] == 1 and row["template_of_max"] == 0
    abstain = template_spread(tiny).set_index("value").loc[ABSTAIN]
    assert abstain["share_max"] == pytest.approx(0.2) and abstain["share_min"] == 0  # 1 of 5, 0 of 5


def test_guidance_sweep():
    data = pd.DataFrame(rows("doctor", ["female"] * 2 + ["male"] * 8, guidance=3.0)
                        + rows("doctor", ["female"] * 1 + ["male"] * 9, guidance=12.0))
    sweep = guidance_sweep(data)
    female = sweep[sweep["value"] == "female"]
    assert female["guidance"].tolist() == [3.0, 12.0]
    assert female["share_of_determined"].tolist() == pytest.approx([0.2, 0.1])
    assert female["change_from_lowest_guidance"].tolist() == pytest.approx([0.0, -0.1])


def test_missing_guidance_and_descriptor_are_groups_of_their_own(tiny):
    data = tiny.assign(guidance=np.nan)
    shares = profession_shares(data)
    assert shares["guidance"].isna().all() and shares["descriptor"].isna().all()
    assert shares.loc[shares["value"] == "female", "count"].item() == 3


def test_audit_metrics_bundle(tiny, bls_like):
    tones = pd.DataFrame(rows("doctor", ["1", "2", "2", "6", "6", "1", "1", "2", "3", "3"], attribute="skin_tone"))
    tones["image_id"] = tiny["image_id"].to_numpy()
    tables = audit_metrics(pd.concat([tiny, tones]), bls_like, n_boot=100)
    assert set(tables) == {"shares_by_prompt", "shares_by_profession", "abstentions", "diversity", "template_spread",
                           "guidance_sweep", "intersectional", "reference_gap", "amplification"}
    assert tables["abstentions"].set_index("attribute").loc["gender", "n_abstained"] == 1
    assert tables["intersectional"]["count"].sum() == 10
    assert set(tables["intersectional"]["attribute_1"]) == {"gender"}
    assert all(isinstance(t, pd.DataFrame) for t in tables.values())
