import pytest
import torch
from synthscope.generators.conditioning import PromptError, Vocabulary
from synthscope.generators.data import digits_vocabulary


def test_digit_prompts_parse_in_all_spellings():
    vocab = digits_vocabulary()
    assert vocab.parse("a photo of the digit 3") == {"digit": "3"}
    assert vocab.parse("Seven!") == {"digit": "7"}
    assert vocab.parse("a photo") == {}


def test_unknown_word_names_it_and_lists_vocabulary():
    with pytest.raises(PromptError) as info:
        digits_vocabulary().parse("a photo of a giraffe")
    assert "'giraffe'" in str(info.value)
    assert "seven" in str(info.value)


def test_multi_word_phrases_win_and_contradictions_fail():
    vocab = Vocabulary(
        attributes={"job": ["developer", "software developer"], "gender": ["female", "male"]},
        phrases={"woman": ("gender", "female"), "man": ("gender", "male")},
    )
    assert vocab.parse("a software developer who is a woman") == {"job": "software developer", "gender": "female"}
    with pytest.raises(PromptError, match="two values of gender"):
        vocab.parse("a man and a woman")


def test_encode_marks_unspecified_with_the_null_id():
    vocab = Vocabulary(attributes={"job": ["nurse", "doctor"], "gender": ["female", "male"]})
    ids = vocab.encode(["a doctor", "a female nurse", "a photo"])
    assert ids.tolist() == [[1, 2], [0, 0], [2, 2]]
    assert ids.dtype == torch.long


def test_round_trip_through_dict():
    vocab = digits_vocabulary()
    again = Vocabulary.from_dict(vocab.to_dict())
    assert again.parse("nine") == {"digit": "9"}
    assert again.attributes == vocab.attributes


def test_phrase_pointing_to_unknown_value_is_rejected():
    with pytest.raises(ValueError, match="unknown"):
        Vocabulary(attributes={"a": ["x"]}, phrases={"y": ("a", "y")})


def test_attribute_order_survives_json_with_sorted_keys():
    import json

    vocab = Vocabulary(attributes={"profession": ["nurse"], "gender": ["female", "male"], "age": ["young"]})
    again = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict(), sort_keys=True)))
    assert again.names == ["profession", "gender", "age"]
    assert again.encode(["a male nurse"]).tolist() == vocab.encode(["a male nurse"]).tolist()
