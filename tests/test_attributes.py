"""The attribute schema (synthscope.generators.attributes) is the one every user reads: values, order
and wording, as the portraits world, the audit spec, annotators, label sheets and reports see them."""

from __future__ import annotations

from synthscope.audits import annotators, labels, report_section, spec
from synthscope.generators import attributes as schema
from synthscope.generators.portraits import AGES, GENDERS, PROFESSIONS, SKIN_TONES, portraits_vocabulary


def test_portraits_world_draws_the_schema_values():
    assert (PROFESSIONS, GENDERS, SKIN_TONES, AGES) == (schema.PROFESSIONS, schema.GENDERS, schema.SKIN_TONES,
                                                       schema.AGES)
    vocabulary = portraits_vocabulary()
    for attribute, values in schema.ATTRIBUTE_VALUES.items():
        assert tuple(vocabulary.attributes[attribute]) == values
    assert len(schema.SKIN_TONE_WORDS) == len(schema.SKIN_TONES)


def test_audit_modules_read_the_schema():
    assert spec.PROBE_ATTRIBUTES == ("gender", "skin_tone", "age") == schema.PERCEIVED_ATTRIBUTES
    assert spec.HUMAN_ATTRIBUTES == ("gender", "skin_tone", "age", "profession")
    assert report_section.ATTRIBUTE_WORDS is schema.ATTRIBUTE_WORDS
    assert list(annotators.SKIN_TONE_LABELS) == list(schema.SKIN_TONES)
    assert annotators.SKIN_TONE_LABELS["1"] == ("a photo of a person with very light skin",)
    assert annotators.SKIN_TONE_LABELS["6"] == ("a photo of a person with dark skin",)
    for attribute, values in spec.DEFAULT_CLIP_LABELS.items():  # CLIP's prompts name schema values
        assert set(values) == set(schema.ATTRIBUTE_VALUES[attribute])
    assert labels.ATTRIBUTE_VALUES is schema.ATTRIBUTE_VALUES


def test_wording_is_unchanged():
    assert schema.ATTRIBUTE_WORDS == {"gender": "perceived gender presentation",
                                      "skin_tone": "perceived skin tone", "age": "perceived age group",
                                      "profession": "perceived profession"}
    assert schema.attribute_question("skin_tone") == "perceived skin tone (1 = lightest ... 6 = darkest)"
    assert schema.attribute_question("gender") == "perceived gender presentation"
    assert schema.attribute_question("hair_colour") == "perceived hair colour"


def test_value_and_attribute_order():
    assert schema.value_order("age", ["older", "young", "middle-aged", "young"]) == ["young", "middle-aged", "older"]
    assert schema.value_order("gender", ["male", "female"]) == ["female", "male"]
    assert schema.value_order("skin_tone", ["6", "2", "4"]) == ["2", "4", "6"]
    # outside the schema: numbers by value, then names
    assert schema.value_order("mood", ["b", "10", "a", "9"]) == ["9", "10", "a", "b"]
    assert schema.value_order("gender", ["x", "male", "female"]) == ["female", "male", "x"]
    assert schema.value_order("profession", ["teacher", "nurse", "doctor"]) == ["doctor", "nurse", "teacher"]
    assert schema.attribute_order(["mood", "age", "gender", "skin_tone", "age"]) == ["gender", "skin_tone", "age",
                                                                                     "mood"]
