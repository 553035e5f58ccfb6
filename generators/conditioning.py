"""Prompt vocabularies for the built-in conditional generators.

A prompt such as "a photo of an older female nurse with dark skin" is parsed into one value (or
"unspecified") per attribute. The models embed each attribute separately, with a null entry for
"unspecified", so a prompt may name any subset of attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from synthscope.errors import UserError

# Words that carry no attribute: they may appear in any prompt.
FILLER_WORDS = frozenset(
    "a an the of photo picture image portrait person people someone with and who is as in "
    "skin skinned tone digit number handwritten".split()
)


class PromptError(UserError):
    """A prompt contains words outside the model's vocabulary, or contradicts itself."""


@dataclass
class Vocabulary:
    """Attributes a conditional model knows, their values, and the phrases that name them.

    ``attributes`` maps an attribute name to its ordered values (the index is the class id);
    ``phrases`` maps a lower-case phrase (one or more words) to ``(attribute, value)``.
    """

    attributes: dict[str, list[str]]
    phrases: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attribute, values in self.attributes.items():
            for value in values:
                self.phrases.setdefault(value.lower(), (attribute, value))
        for phrase, (attribute, value) in self.phrases.items():
            if attribute not in self.attributes or value not in self.attributes[attribute]:
                raise UserError(f"phrase {phrase!r} points to unknown {attribute}={value}")

    @property
    def names(self) -> list[str]:
        return list(self.attributes)

    def sizes(self) -> list[int]:
        return [len(values) for values in self.attributes.values()]

    def describe(self) -> str:
        """The vocabulary as one human-readable line per attribute (for error messages)."""
        lines = []
        for attribute, values in self.attributes.items():
            words = sorted(p for p, (a, _) in self.phrases.items() if a == attribute)
            lines.append(f"  {attribute}: {', '.join(words)}")
        return "\n".join(lines)

    def parse(self, prompt: str) -> dict[str, str]:
        """Return ``{attribute: value}`` for every attribute the prompt names.

        Raises PromptError naming the unknown words and listing the vocabulary.
        """
        text = " " + re.sub(r"[^a-z0-9\- ]+", " ", prompt.lower()) + " "
        text = re.sub(r"\s+", " ", text)
        found: dict[str, str] = {}
        # Longest phrases first so that "software developer" wins over "developer".
        for phrase in sorted(self.phrases, key=len, reverse=True):
            pattern = f" {phrase} "
            while pattern in text:
                attribute, value = self.phrases[phrase]
                if attribute in found and found[attribute] != value:
                    raise PromptError(
                        f"prompt {prompt!r} names two values of {attribute}: "
                        f"{found[attribute]!r} and {value!r}"
                    )
                found[attribute] = value
                text = text.replace(pattern, " ", 1)
        unknown = [w for w in text.split() if w not in FILLER_WORDS]
        if unknown:
            raise PromptError(
                f"prompt {prompt!r} has words outside the model's vocabulary: "
                f"{', '.join(repr(w) for w in unknown)}. Known words:\n{self.describe()}"
            )
        return found

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Class ids, shape (len(prompts), n_attributes); ``len(values)`` means unspecified."""
        rows = []
        for prompt in prompts:
            parsed = self.parse(prompt)
            rows.append(self.encode_values(parsed))
        return torch.tensor(rows, dtype=torch.long).reshape(len(prompts), len(self.attributes))

    def encode_values(self, values: dict[str, str]) -> list[int]:
        """Class ids for one ``{attribute: value}`` dict (missing attributes are unspecified)."""
        row = []
        for attribute, options in self.attributes.items():
            value = values.get(attribute)
            row.append(len(options) if value is None else options.index(str(value)))
        return row

    def balanced_prompts(self, n: int, seed: int | None = None) -> list[str]:
        """``n`` prompts cycling through every value of the first attribute (each digit, each
        profession), in a seeded random order when ``seed`` is given, so samples match the class
        balance of the real data."""
        values = next(iter(self.attributes.values()))
        order = range(n) if seed is None else np.random.default_rng(seed).permutation(n)
        return [values[i % len(values)] for i in order]

    def to_dict(self) -> dict:
        # Attributes as an ordered list of pairs: their order is the models' input layout, and JSON
        # writers may sort object keys.
        return {"attributes": [[name, list(values)] for name, values in self.attributes.items()],
                "phrases": {k: list(v) for k, v in self.phrases.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        attributes = data["attributes"]
        pairs = attributes.items() if isinstance(attributes, dict) else attributes
        return cls(
            attributes={name: list(values) for name, values in pairs},
            phrases={k: (v[0], v[1]) for k, v in data.get("phrases", {}).items()},
        )
