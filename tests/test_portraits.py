"""The portraits world: drawing, captions, the BLS-based distribution and injected skews."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from synthscope.generators.portraits import (
    AGES,
    GENDERS,
    PROFESSIONS,
    SKIN_TONES,
    PortraitDistribution,
    draw_portrait,
    generate_portraits,
    load_bls_reference,
    portrait_caption,
    portraits_vocabulary,
    race_shares_to_skin_tones,
)

Z_999 = 3.29  # two-sided 99.9 % normal quantile for binomial bounds


@pytest.fixture(scope="module")
def default_set():
    return generate_portraits(n=4000, seed=0, size=32)


def _binomial_ok(successes: int, trials: int, p: float) -> bool:
    sd = math.sqrt(max(p * (1 - p), 1e-12) / trials)
    return abs(successes / trials - p) <= Z_999 * sd + 1e-9


def test_same_seed_same_images_and_different_seed_differs():
    a = generate_portraits(n=24, seed=3, size=32)
    b = generate_portraits(n=24, seed=3, size=32)
    c = generate_portraits(n=24, seed=4, size=32)
    assert torch.equal(a.images, b.images)
    assert a.captions == b.captions
    pd.testing.assert_frame_equal(a.attributes, b.attributes)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("size", [16, 32])
def test_shapes_dtype_range_and_columns(size):
    data = generate_portraits(n=20, seed=1, size=size)
    assert data.name == "portraits"
    assert data.images.shape == (20, 3, size, size)
    assert data.images.dtype == torch.float32
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    assert float(data.images.std()) > 0.05  # pictures, not a flat fill
    assert list(data.attributes.columns) == ["profession", "gender", "skin_tone", "age"]
    assert set(data.attributes["profession"]) <= set(PROFESSIONS)
    assert set(data.attributes["gender"]) <= set(GENDERS)
    assert set(data.attributes["skin_tone"]) <= set(SKIN_TONES)
    assert set(data.attributes["age"]) <= set(AGES)
    assert data.vocabulary.names == ["profession", "gender", "skin_tone", "age"]
    assert data.condition_ids().shape == (20, 4)


def test_every_caption_parses_back_to_its_attributes(default_set):
    vocab = default_set.vocabulary
    for caption, row in zip(default_set.captions, default_set.attributes.to_dict("records")):
        assert vocab.parse(caption) == row, caption


def test_caption_wording_and_articles():
    assert portrait_caption({"profession": "nurse", "gender": "female", "skin_tone": "6",
                             "age": "older"}) == "a photo of an older female nurse with dark skin"
    assert portrait_caption({"profession": "chief executive", "gender": "male", "skin_tone": "1",
                             "age": "middle-aged"}) == (
        "a photo of a middle-aged male chief executive with very light skin")


def test_vocabulary_synonyms():
    vocab = portraits_vocabulary()
    assert vocab.names == ["profession", "gender", "skin_tone", "age"]
    assert vocab.attributes["skin_tone"] == ["1", "2", "3", "4", "5", "6"]
    assert vocab.parse("a photo of an elderly woman physician") == {
        "age": "older", "gender": "female", "profession": "doctor"}
    assert vocab.parse("a middle aged man, a programmer, with very light skin") == {
        "age": "middle-aged", "gender": "male", "profession": "software developer", "skin_tone": "1"}
    assert vocab.parse("CEO") == {"profession": "chief executive"}
    assert vocab.parse("maids") == {"profession": "housekeeper"}
    assert vocab.parse("a cleaner with light skin") == {"profession": "janitor", "skin_tone": "2"}
    assert vocab.parse("nurses with olive skin") == {"profession": "nurse", "skin_tone": "4"}
    assert vocab.parse("masculine developer") == {"gender": "male", "profession": "software developer"}


def test_labour_figures_of_the_drawn_professions_come_from_the_2022_table():
    table = load_bls_reference()
    for column in ["occupation", "profession", "total_employed_thousands", "percent_women",
                   "percent_white", "percent_black", "percent_asian", "percent_hispanic",
                   "year", "source", "verified", "note", "rows_not_published"]:
        assert column in table.columns
    assert (table["year"] == 2022).all()
    assert table["source"].str.contains("https://www.bls.gov/cps/aa2022/cpsaat11.htm", regex=False).all()
    assert table["verified"].dtype == bool and table["verified"].all()  # the published figures
    assert sorted(table["profession"]) == sorted(PROFESSIONS)  # exactly one row per profession
    for column in ["percent_women", "percent_white", "percent_black", "percent_asian", "percent_hispanic"]:
        assert table[column].between(0, 100).all()
    rows = table.set_index("profession")
    # One row of the table, as published: Chief executives 1,780 thousand, 29.2 % women.
    ceo = rows.loc["chief executive"]
    assert ceo["occupation"] == "Chief executives" and ceo["total_employed_thousands"] == 1780
    assert (ceo["percent_women"], ceo["percent_black"], ceo["percent_asian"], ceo["percent_hispanic"]) == (
        29.2, 5.9, 6.7, 6.8)
    # doctor: four physician rows, only "Other physicians" (933, 43.8 % women) is published.
    doctor = rows.loc["doctor"]
    assert doctor["occupation"] == "Other physicians" and doctor["percent_women"] == pytest.approx(43.8)
    assert doctor["rows_not_published"] == "Emergency medicine physicians; Radiologists; Surgeons"
    # teacher: the four school-teacher rows, weighted by employment (figures copied from the table).
    employed = {"Preschool and kindergarten teachers": (645, 97.4),
                "Elementary and middle school teachers": (3336, 79.7),
                "Secondary school teachers": (1000, 58.7), "Special education teachers": (369, 84.2)}
    women = sum(n * p for n, p in employed.values()) / sum(n for n, _ in employed.values())
    assert rows.loc["teacher", "percent_women"] == pytest.approx(women)  # 78.22
    assert rows.loc["teacher", "occupation"].split("; ") == list(employed)
    assert rows.loc["teacher", "total_employed_thousands"] == 5350


def test_default_world_follows_the_2022_table():
    world = PortraitDistribution.from_labour_statistics()
    assert world.p_female["chief executive"] == pytest.approx(0.292)
    assert world.p_female["doctor"] == pytest.approx(0.438)
    assert world.p_female["housekeeper"] == pytest.approx(0.881)  # Maids and housekeeping cleaners
    # race -> skin tone: P(tone 5 or 6) = percent Black (Janitors and building cleaners: 17.4 %)
    janitor = world.skin_tone["janitor"]
    assert janitor[4] + janitor[5] == pytest.approx(0.174)
    assert "BLS CPS table 11 (2022" in world.notes[0]


def test_default_share_of_women_matches_bls(default_set):
    table = load_bls_reference().set_index("profession")
    attrs = default_set.attributes
    for profession in PROFESSIONS:
        rows = attrs[attrs["profession"] == profession]
        assert len(rows) == 500  # professions are uniform by default, allocated exactly
        p = table.loc[profession, "percent_women"] / 100
        women = int((rows["gender"] == "female").sum())
        assert _binomial_ok(women, len(rows), p), (profession, women / len(rows), p)


def test_default_share_of_dark_tones_matches_percent_black(default_set):
    table = load_bls_reference().set_index("profession")
    attrs = default_set.attributes
    for profession in PROFESSIONS:
        rows = attrs[attrs["profession"] == profession]
        p = table.loc[profession, "percent_black"] / 100
        dark = int(rows["skin_tone"].isin(["5", "6"]).sum())
        assert _binomial_ok(dark, len(rows), p), (profession, dark / len(rows), p)


def test_injected_skew_shows_up_and_leaves_the_original_alone():
    base = PortraitDistribution.from_labour_statistics()
    skewed = base.with_skew(share_female={"doctor": 1.0, "engineer": 0.0}, share_dark={"nurse": 1.0})
    data = generate_portraits(n=400, seed=5, size=16, distribution=skewed)
    attrs = data.attributes
    assert (attrs.loc[attrs["profession"] == "doctor", "gender"] == "female").all()
    assert (attrs.loc[attrs["profession"] == "engineer", "gender"] == "male").all()
    assert attrs.loc[attrs["profession"] == "nurse", "skin_tone"].isin(["5", "6"]).all()
    assert base.p_female["doctor"] == pytest.approx(load_bls_reference().set_index("profession")
                                                    .loc["doctor", "percent_women"] / 100)
    assert any("share_female" in note for note in skewed.notes)
    # Profession shares: half the world nurses, the rest split evenly as before.
    nurse_world = base.with_skew(profession_shares={"nurse": 0.5})
    assert nurse_world.profession_weights["nurse"] == pytest.approx(0.5)
    assert nurse_world.profession_weights["doctor"] == pytest.approx(0.5 / 7)
    counts = generate_portraits(n=80, seed=1, size=8, distribution=nurse_world).attributes["profession"]
    assert int((counts == "nurse").sum()) == 40
    # A scalar skew applies to every profession.
    all_male = base.with_skew(share_female=0.0)
    assert all(v == 0.0 for v in all_male.p_female.values())


def test_unknown_profession_raises_listing_the_known_ones():
    base = PortraitDistribution.from_labour_statistics()
    with pytest.raises(ValueError) as info:
        base.with_skew(share_female={"astronaut": 0.5})
    message = str(info.value)
    assert "astronaut" in message
    for profession in PROFESSIONS:
        assert profession in message


@pytest.mark.parametrize("kwargs", [
    {"share_female": 1.5},
    {"share_female": {"doctor": -0.1}},
    {"share_dark": 2.0},
    {"skin_tone": [0.5, 0.5, 0.5, 0.0, 0.0, 0.0]},
    {"age": [0.5, 0.5]},
    {"profession_shares": {"nurse": -1.0}},
    {"profession_shares": {"nurse": 0.7, "doctor": 0.6}},
])
def test_bad_probabilities_raise(kwargs):
    with pytest.raises(ValueError):
        PortraitDistribution.from_labour_statistics().with_skew(**kwargs)


def test_bad_generate_arguments_raise():
    with pytest.raises(ValueError):
        generate_portraits(n=0)
    with pytest.raises(ValueError):
        generate_portraits(n=4, size=4)
    with pytest.raises(ValueError, match="unknown profession"):
        draw_portrait({"profession": "pilot", "gender": "male", "skin_tone": "1", "age": "young"},
                      np.random.default_rng(0), 32)


def test_expected_shares_are_the_truth_and_round_trip():
    dist = PortraitDistribution.from_labour_statistics().with_skew(age={"teacher": [0.1, 0.2, 0.7]})
    shares = dist.expected_shares()
    sums = shares.groupby(["profession", "attribute"])["expected_share"].sum()
    assert np.allclose(sums.values, 1.0)
    table = load_bls_reference().set_index("profession")
    women = shares.query("profession == 'nurse' and attribute == 'gender' and value == 'female'")
    assert float(women["expected_share"].iloc[0]) == pytest.approx(table.loc["nurse", "percent_women"] / 100)
    older = shares.query("profession == 'teacher' and attribute == 'age' and value == 'older'")
    assert float(older["expected_share"].iloc[0]) == pytest.approx(0.7)
    marginals = dist.expected_marginals()
    assert np.allclose(marginals.groupby("attribute")["expected_share"].sum().values, 1.0)
    restored = PortraitDistribution.from_dict(json.loads(json.dumps(dist.to_dict())))
    assert restored.to_dict() == dist.to_dict()


def test_race_to_tone_mapping_puts_percent_black_on_tones_5_and_6():
    probs = race_shares_to_skin_tones(13.0, 10.0, 20.0)
    assert len(probs) == 6 and sum(probs) == pytest.approx(1.0)
    assert probs[4] + probs[5] == pytest.approx(0.13)
    more_hispanic = race_shares_to_skin_tones(13.0, 10.0, 60.0)
    assert sum(more_hispanic[2:4]) > sum(probs[2:4])  # Hispanic share pushes weight to tones 3-4
    with pytest.raises(ValueError):
        race_shares_to_skin_tones(120.0, 0.0, 0.0)


def test_draw_portrait_returns_rgb_image_of_size():
    image = draw_portrait({"profession": "teacher", "gender": "female", "skin_tone": "3",
                           "age": "young"}, np.random.default_rng(0), 24)
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB" and image.size == (24, 24)


def test_load_data_dispatches_to_portraits():
    from synthscope.generators.data import load_data

    data = load_data("portraits", n=8, size=16, seed=2)
    assert data.images.shape == (8, 3, 16, 16)
    assert data.name == "portraits"


def test_a_linear_classifier_tells_professions_apart(default_set):
    from sklearn.linear_model import LogisticRegression

    subset = default_set.subset(np.arange(2000))
    x = F.avg_pool2d(subset.images, 2).flatten(1).numpy()  # 16x16 pixels
    x = x - x[:1500].mean(axis=0)  # centred features converge in a few dozen iterations
    y = subset.attributes["profession"].to_numpy()
    clf = LogisticRegression(max_iter=1000).fit(x[:1500], y[:1500])
    assert clf.score(x[1500:], y[1500:]) > 0.9
