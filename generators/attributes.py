"""The attribute schema of the portraits world, defined once: which attributes a person has, their
values, the order they are shown in and the words tables and reports use for them.

Everything that names an attribute value reads it from here: the portraits renderer and its prompt
vocabulary (:mod:`.portraits`), the audit's spec, annotators, label sheets, metrics and report
section. The module imports only the standard library, so any module (an audit's, the CLI's) may import it at the top
without pulling in torch or creating an import cycle.

The attributes are *perceived*: how a drawn or generated person reads (gender presentation, skin tone,
age group), never anyone's identity. "female"/"male" are the presentation values of the drawn world
(long vs short hair, narrower vs broader shoulders); skin tones are six steps of a light-to-dark
palette, named by number.
"""

from __future__ import annotations

from collections.abc import Iterable

PROFESSIONS: tuple[str, ...] = (
    "doctor",
    "nurse",
    "engineer",
    "chief executive",
    "janitor",
    "teacher",
    "software developer",
    "housekeeper",
)
GENDERS: tuple[str, ...] = ("female", "male")
SKIN_TONES: tuple[str, ...] = ("1", "2", "3", "4", "5", "6")  # lightest to darkest
SKIN_TONE_WORDS: tuple[str, ...] = ("very light", "light", "medium", "olive", "brown", "dark")  # one per tone
AGES: tuple[str, ...] = ("young", "middle-aged", "older")

# Every attribute with its values in their natural order (light to dark, young to old): the order of
# rows and columns in tables, of segments in charts and of choices on a label sheet.
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "gender": GENDERS,
    "skin_tone": SKIN_TONES,
    "age": AGES,
    "profession": PROFESSIONS,
}
# The attributes read from a person's appearance (a profession is read from attire and props), in the
# order reports show them.
PERCEIVED_ATTRIBUTES: tuple[str, ...] = ("gender", "skin_tone", "age")
# Attributes whose values are ordered (drawn as a light-to-dark sequence, not as unrelated colours).
ORDINAL_ATTRIBUTES: tuple[str, ...] = ("skin_tone", "age")

# How tables and reports name an attribute: worded as perception, not identity.
ATTRIBUTE_WORDS: dict[str, str] = {
    "gender": "perceived gender presentation",
    "skin_tone": "perceived skin tone",
    "age": "perceived age group",
    "profession": "perceived profession",
}
# What a label sheet adds to an attribute's words so that a labeller reads the values the same way.
ATTRIBUTE_HINTS: dict[str, str] = {"skin_tone": f"{SKIN_TONES[0]} = lightest ... {SKIN_TONES[-1]} = darkest"}


def attribute_question(attribute: str) -> str:
    """The question a label sheet asks for ``attribute``, e.g. "perceived skin tone (1 = lightest ...
    6 = darkest)"; an attribute outside the schema is asked as "perceived <its name>"."""
    words = ATTRIBUTE_WORDS.get(attribute, f"perceived {attribute.replace('_', ' ')}")
    hint = ATTRIBUTE_HINTS.get(attribute)
    return f"{words} ({hint})" if hint else words


def value_order(attribute: str, values: Iterable[str]) -> list[str]:
    """``values`` (duplicates dropped) in the schema's order for ``attribute``; values outside the schema
    follow, numbers by value, then the rest by name."""

    known = ATTRIBUTE_VALUES.get(attribute, ())

    def key(value: str) -> tuple[int, int, float, str]:
        if value in known:
            return (0, known.index(value), 0.0, value)
        try:
            return (1, 0, float(value), value)
        except ValueError:
            return (2, 0, 0.0, value)

    return sorted(dict.fromkeys(values), key=key)


def attribute_order(attributes: Iterable[str]) -> list[str]:
    """``attributes`` (duplicates dropped) in report order: the perceived attributes first, as
    :data:`PERCEIVED_ATTRIBUTES` lists them, then any other by name."""
    rank = {a: i for i, a in enumerate(PERCEIVED_ATTRIBUTES)}
    return sorted(dict.fromkeys(attributes), key=lambda a: (rank.get(a, len(rank)), a))
