"""synthscope.audits.report_section: the audit's report section from synthetic annotations with known shares."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from synthscope.audits.metrics import ABSTAIN, ANNOTATION_COLUMNS, audit_metrics
from synthscope.audits.report_section import audit_section, share_bar_segments, spec_table
from synthscope.reports import Metric, Report, Section, Text, write_report

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
TEMPLATES = ["a photo of a {profession}", "a portrait of a {profession}"]
PROFESSIONS = ["doctor", EVIL]
FEMALE = {"doctor": 0.25, EVIL: 0.7}  # share of each prompt's images drawn as female, before abstentions
GUIDANCE = [1.0, 4.0]
PER_PROMPT = 20
BLS = "U.S. Bureau of Labor Statistics, Current Population Survey, Table 11"


def _annotations() -> pd.DataFrame:
    """Known counts: per prompt, the first FEMALE * 20 images female (2 more with the second phrasing),
    the rest male, images 9 and 19 undetermined, so each profession and guidance value has 4 abstentions
    in 40 images: the doctor 12 female, 24 male; the other 28 female (image 9 falls in the female part), 8 male."""
    rows = []
    jobs = [(t, p, None, g) for p in PROFESSIONS for t in range(len(TEMPLATES)) for g in GUIDANCE]
    jobs.append((0, "doctor", "female", 1.0))  # a descriptor prompt: adherence, kept out of the comparisons
    for template, profession, descriptor, guidance in jobs:
        prompt = TEMPLATES[template].format(profession=f"{descriptor} {profession}" if descriptor else profession)
        n_female = round(FEMALE[profession] * PER_PROMPT) + 2 * template if descriptor is None else PER_PROMPT
        for i in range(PER_PROMPT):
            image = f"{prompt}|{guidance}|{i}"
            gender = ABSTAIN if i % 10 == 9 else "female" if i < n_female else "male"
            values = {"gender": gender, "skin_tone": ABSTAIN if i % 7 == 6 else str(1 + i % 6),
                      "age": ("young", "middle-aged", "older")[i % 3]}
            for attribute, value in values.items():
                rows.append((image, prompt, template, profession, descriptor, guidance, "probe", attribute, value))
    return pd.DataFrame(rows, columns=list(ANNOTATION_COLUMNS))


def _reference() -> pd.DataFrame:
    rows = []
    for profession, female in (("doctor", 0.448), (EVIL, 0.3)):
        for value, share in (("female", female), ("male", 1 - female)):
            rows.append({"profession": profession, "attribute": "gender", "value": value, "share": share,
                         "year": 2023.0, "source": BLS, "occupation": "", "verified": False, "note": ""})
    return pd.DataFrame(rows)


SPEC = {
    "audit": {"name": "test audit", "description": "synthetic annotations"},
    "prompts": {"templates": TEMPLATES, "professions": PROFESSIONS, "descriptors": ["female"],
                "images_per_prompt": PER_PROMPT, "seed": 0, "fix_articles": True},
    "backend": {"kind": "diffusers", "model": "tiny/model $5", "guidance": GUIDANCE},
    "annotators": [{"kind": "probe", "attributes": ["gender", "skin_tone", "age"], "abstain_below": 0.6}],
    "reference": {"source": "bls-2022", "path": None},
    "n_prompts": 9, "n_images": 180,
}


def _validity() -> pd.DataFrame:
    confusion = {"female": {"female": 90, "male": 6, ABSTAIN: 4}, "male": {"female": 3, "male": 92, ABSTAIN: 5}}
    return pd.DataFrame([{"annotator": "probe", "attribute": "gender", "n": 200, "n_correct": 182, "n_abstained": 9,
                          "abstention_rate": 0.045, "accuracy": 0.91, "accuracy_ci_low": 0.862,
                          "accuracy_ci_high": 0.942, "confusion": confusion}])


@pytest.fixture(scope="module")
def metrics() -> dict[str, pd.DataFrame]:
    return audit_metrics(_annotations(), _reference(), n_boot=200, seed=0)


@pytest.fixture(scope="module")
def written(metrics, tmp_path_factory):
    rng = np.random.default_rng(0)
    sheets = {f"a photo of a {EVIL}": [(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), f"female {EVIL}")
                                       for _ in range(3)],
              "a photo of a doctor": [(rng.random((16, 16)), "male") for _ in range(2)]}
    prompts = pd.DataFrame([("clip", "gender", "female", "a photo of a <b>woman</b>"),
                            ("clip", "gender", "male", "a photo of a man")],
                           columns=["annotator", "attribute", "value", "prompt"])
    section = audit_section(metrics, SPEC, contact_sheets=sheets, validity=_validity(), annotator_prompts=prompts)
    out = tmp_path_factory.mktemp("audit-report")
    index = write_report(Report("Audit", sections=[section]), out)
    return section, index.read_text(encoding="utf-8"), out


def _blocks(section: Section) -> list:
    found = list(section.blocks)
    for sub in section.subsections:
        found += _blocks(sub)
    return found


def test_page_has_every_part(written):
    _, html, out = written
    for title in ("Who gets depicted", "Perceived gender presentation by profession",
                  "Perceived skin tone by profession", "Perceived age group by profession",
                  "Abstentions (&#39;undetermined&#39;) per profession", "Amplification: distance from parity",
                  "Gap to the reference", "Counts: perceived gender x skin_tone", "Intersectional table",
                  "Spread over prompt phrasings", "Guidance sweep: perceived gender presentation",
                  "Contact sheets", "Annotator confusion matrices", "Annotator validity",
                  "Annotator label prompts", "Audit spec", "Prompts that name a descriptor"):
        assert title in html, title
    assert (out / "figures" / "audit-shares-gender.png").is_file()
    assert (out / "figures" / "audit-amplification.png").is_file()
    assert "BLS 2023" in html


def test_markup_in_professions_prompts_and_labels_is_escaped(written):
    _, html, _ = written
    assert ESCAPED in html
    assert "<script" not in html.lower()
    assert "&lt;b&gt;woman&lt;/b&gt;" in html and "<b>woman" not in html


def test_abstentions_are_shown_not_dropped(written, metrics):
    section, html, out = written
    assert "undetermined" in html
    abstentions = pd.read_csv(out / "tables" / "audit-abstentions.csv")
    gender = abstentions[(abstentions["attribute"] == "gender") & abstentions["descriptor"].isna()]
    assert len(gender) == 4 and (gender["n_abstained"] == 4).all() and (gender["n_images"] == 40).all()
    assert abstentions.loc[abstentions["attribute"] == "age", "n_abstained"].eq(0).all()  # zero is a result too
    segments = share_bar_segments(metrics["shares_by_profession"], "gender", _reference())
    model = segments[segments["kind"] == "model"]
    assert model["is_abstention"].sum() == 4  # 2 professions x 2 guidance values, descriptor prompt left out
    assert np.allclose(model.groupby("bar")["share"].sum(), 1.0)
    assert set(segments.loc[segments["kind"] == "reference", "value"]) == {"female", "male"}
    boundary = model[(model["value"] == "female") & (model["profession"] == "doctor")].iloc[0]
    assert boundary["end"] == pytest.approx(12 / 40)
    assert boundary["end_ci_low"] < 0.3 < boundary["end_ci_high"]


def test_headline_cards_and_caveats(written):
    section, _, _ = written
    cards = {m.label: m for m in section.blocks if isinstance(m, Metric)}
    doctor = cards["Perceived women: doctor"]
    assert doctor.value == pytest.approx(24 / 72)  # both guidance values pooled, abstentions left out
    assert doctor.ci_low < doctor.value < doctor.ci_high
    assert "44.8%" in doctor.note and "unverified" in doctor.note and "10% undetermined" in doctor.note
    assert cards[f"Perceived women: {EVIL}"].value == pytest.approx(56 / 72)
    caveats = " ".join(section.caveats)
    assert "not identity" in caveats and "simplification" in caveats and "unverified" in caveats
    assert "U.S. workers" in caveats


def test_small_sample_warnings_are_visible(written):
    section, html, _ = written
    assert "⚠" in html
    long = next(b for b in _blocks(section) if getattr(b, "title", "") == "Intersectional table").dataframe
    flagged = long[long["small_sample_warning"]]
    assert len(flagged) and (flagged["warning"] != "").all() and (long.loc[~long["small_sample_warning"],
                                                                          "warning"] == "").all()
    small = long[long["descriptor"].notna()]  # the descriptor prompt has 20 images, under the minimum
    assert small["warning"].str.contains("group < 30").all()
    pivot = next(b for b in _blocks(section) if getattr(b, "title", "").startswith("Counts:")).dataframe
    assert pivot.filter(like="skin_tone").apply(lambda c: c.str.contains("⚠")).any().any()


def test_rebuilt_from_csv_files(metrics, tmp_path):
    """The section is a function of saved tables: CSVs read back give the same cards."""
    for name, table in metrics.items():
        table.to_csv(tmp_path / f"{name}.csv", index=False)
    loaded = {name: pd.read_csv(tmp_path / f"{name}.csv") for name in metrics}
    # Gender only, to keep the test fast: fewer figures to draw.
    loaded = {name: t[t["attribute"] == "gender"] if "attribute" in t else t for name, t in loaded.items()}
    validity = _validity().assign(confusion=lambda v: v["confusion"].map(json.dumps))
    section = audit_section(loaded, SPEC, validity=validity)
    cards = {m.label: m.value for m in section.blocks if isinstance(m, Metric)}
    assert cards["Perceived women: doctor"] == pytest.approx(24 / 72)
    titles = [getattr(b, "title", "") for b in _blocks(section)]
    assert "Amplification: distance from parity" in titles and "Annotator confusion matrices" in titles


def test_spec_table_flattens_nested_settings():
    table = spec_table(SPEC)
    rows = dict(zip(table["setting"], table["value"]))
    assert rows["annotators[0].kind"] == "probe"
    assert json.loads(rows["prompts.professions"]) == PROFESSIONS
    assert rows["reference.path"] == "null"


def test_phrasing_spread_names_the_templates(written):
    _, _, out = written
    spread = pd.read_csv(out / "tables" / "audit-template-spread.csv")
    doctor = spread[(spread["profession"] == "doctor") & (spread["attribute"] == "gender")
                    & (spread["value"] == "female")]
    assert doctor["share_range"].to_numpy() == pytest.approx([2 / 18, 2 / 18])  # 5/18 vs 7/18 determined
    assert (doctor["phrasing_of_max"] == TEMPLATES[1]).all()


def test_labeller_agreement_and_majority_headline(tmp_path):
    """Two labellers and their per-image majority: the cards read the majority and say so, and the page
    shows Cohen's kappa for the pair, Fleiss' kappa and Krippendorff's alpha, each with its number of images."""
    from synthscope.audits.labels import MAJORITY_ANNOTATOR, agreement, labeller_agreement, majority_labels

    rows = []
    for i in range(40):  # one prompt, 40 images; alice reads 20 women, bob disagrees on images 0-5
        alice = "female" if i < 20 else "male"
        bob = "male" if i < 4 else ABSTAIN if i < 6 else alice
        for name, value in (("human:alice", alice), ("human:bob", bob)):
            rows.append((f"img{i}", "a photo of a doctor", 0, "doctor", None, np.nan, name, "gender", value))
    labels = pd.DataFrame(rows, columns=list(ANNOTATION_COLUMNS))
    majority = majority_labels(labels)
    assert set(majority["annotator"]) == {MAJORITY_ANNOTATOR} and len(majority) == 40
    # images 0-3 (female vs male) and 4-5 (female vs undetermined) are ties: undetermined
    assert (majority.set_index("image_id").loc[[f"img{i}" for i in range(6)], "value"] == ABSTAIN).all()
    assert (majority["value"] == "female").sum() == 14 and (majority["value"] == "male").sum() == 20
    table = labeller_agreement(labels)
    assert table.equals(agreement(labels, "gender"))
    tables = audit_metrics(pd.concat([labels, majority[list(ANNOTATION_COLUMNS)]], ignore_index=True), n_boot=50)
    tables["labeller_agreement"] = table
    spec = {**SPEC, "annotators": [{"kind": "human", "attributes": ["gender"], "labels_csv": "human.csv"}],
            "prompts": {**SPEC["prompts"], "professions": ["doctor"]}, "reference": {"source": "none"}}
    section = audit_section(tables, spec)
    cards = {m.label: m for m in section.blocks if isinstance(m, Metric)}
    assert cards["Perceived women: doctor"].value == pytest.approx(14 / 34)  # the majority, 6 undetermined
    words = " ".join(b.text for b in section.blocks if isinstance(b, Text))
    assert MAJORITY_ANNOTATOR in words and "most of its labellers" in words
    found = next(s for s in section.subsections if s.id == "audit-agreement")
    metrics = {m.label: m for m in found.blocks if isinstance(m, Metric)}
    kappa = table.set_index("measure").loc["cohen_kappa"]
    pair = metrics["Cohen's kappa · gender · human:alice vs human:bob"]
    assert pair.value == pytest.approx(kappa["value"]) and "n = 40 images" in pair.note
    assert "n = 40 images" in metrics["Fleiss' kappa · gender"].note
    assert "n = 40 images" in metrics["Krippendorff's alpha · gender"].note
    html = write_report(Report("Audit", sections=[section]), tmp_path).read_text(encoding="utf-8")
    assert "Agreement between labellers" in html and "Krippendorff" in html and "Fleiss" in html
