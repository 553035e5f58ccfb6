"""Portraits: a procedurally drawn world of simple people images with known attributes.

Every image shows one person, head and shoulders, whose **profession** is told by attire, props
and background (a doctor's white coat and stethoscope, an engineer's hard hat and hi-vis vest, a
teacher in front of a chalkboard, ...). Each person also has a perceived **gender** presentation
(long hair falling beside the face and narrower shoulders vs short hair and broader shoulders), a
**skin tone** on a 6-step Fitzpatrick-like palette, and an **age** group (hair colour, wrinkles).

Because we draw the images ourselves we know the ground truth of every one, and the joint
distribution of the attributes is a parameter (:class:`PortraitDistribution`). By default it follows
the shipped U.S. labour statistics (BLS CPS table 11, 2022, see :mod:`.labour`); a lab can inject any
skew. That makes
a bias audit honest offline: a model trained on this world can be checked against the truth.

Perceived attributes drawn by a program are not anyone's identity: "female"/"male" here means long
vs short hair on a cartoon, and skin tone is a colour, not a race.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

from synthscope.errors import UserError
from synthscope.images import to_float

from .attributes import AGES, GENDERS, PROFESSIONS, SKIN_TONE_WORDS, SKIN_TONES
from .conditioning import Vocabulary
from .imageset import ImageSet
from .labour import profession_figures

# --------------------------------------------------------------------------------------------
# Caption words (the attributes and their values are the schema's, see .attributes)
# --------------------------------------------------------------------------------------------

# Default age mix (young, middle-aged, older); the labour table has no age columns, so this is a
# plain world-building choice, the same for every profession unless a lab skews it.
DEFAULT_AGE_PROBS: tuple[float, float, float] = (0.35, 0.40, 0.25)

# Columns of :func:`load_bls_reference` (it adds verified, note and rows_not_published).
BLS_COLUMNS = [
    "occupation",
    "profession",
    "total_employed_thousands",
    "percent_women",
    "percent_white",
    "percent_black",
    "percent_asian",
    "percent_hispanic",
    "year",
    "source",
]

# Synonyms and plurals a prompt may use; the attribute values themselves are added by Vocabulary.
_SYNONYMS: dict[str, tuple[str, str]] = {
    # gender
    "woman": ("gender", "female"),
    "women": ("gender", "female"),
    "feminine": ("gender", "female"),
    "females": ("gender", "female"),
    "man": ("gender", "male"),
    "men": ("gender", "male"),
    "masculine": ("gender", "male"),
    "males": ("gender", "male"),
    # age
    "old": ("age", "older"),
    "elderly": ("age", "older"),
    "middle aged": ("age", "middle-aged"),
    "younger": ("age", "young"),
    # professions, their plurals and everyday names
    "doctors": ("profession", "doctor"),
    "physician": ("profession", "doctor"),
    "physicians": ("profession", "doctor"),
    "nurses": ("profession", "nurse"),
    "engineers": ("profession", "engineer"),
    "chief executives": ("profession", "chief executive"),
    "ceo": ("profession", "chief executive"),
    "ceos": ("profession", "chief executive"),
    "executive": ("profession", "chief executive"),
    "executives": ("profession", "chief executive"),
    "janitors": ("profession", "janitor"),
    "cleaner": ("profession", "janitor"),
    "cleaners": ("profession", "janitor"),
    "teachers": ("profession", "teacher"),
    "software developers": ("profession", "software developer"),
    "developer": ("profession", "software developer"),
    "developers": ("profession", "software developer"),
    "programmer": ("profession", "software developer"),
    "programmers": ("profession", "software developer"),
    "housekeepers": ("profession", "housekeeper"),
    "maid": ("profession", "housekeeper"),
    "maids": ("profession", "housekeeper"),
}


def portraits_vocabulary() -> Vocabulary:
    """The prompt vocabulary of the portraits world (profession, gender, skin_tone, age)."""
    phrases = dict(_SYNONYMS)
    for tone, word in zip(SKIN_TONES, SKIN_TONE_WORDS):
        phrases[word] = ("skin_tone", tone)
    return Vocabulary(
        attributes={
            "profession": list(PROFESSIONS),
            "gender": list(GENDERS),
            "skin_tone": list(SKIN_TONES),
            "age": list(AGES),
        },
        phrases=phrases,
    )


def portrait_caption(attrs: Mapping[str, str]) -> str:
    """E.g. "a photo of an older female nurse with dark skin" (the article agrees with the age word)."""
    age = str(attrs["age"])
    article = "an" if age[0] in "aeiou" else "a"
    tone_word = SKIN_TONE_WORDS[SKIN_TONES.index(str(attrs["skin_tone"]))]
    return f"a photo of {article} {age} {attrs['gender']} {attrs['profession']} with {tone_word} skin"


# --------------------------------------------------------------------------------------------
# Reference statistics
# --------------------------------------------------------------------------------------------


def load_bls_reference() -> pd.DataFrame:
    """The labour statistics of the eight professions drawn, from the shipped BLS CPS table 11 (2022).

    One row per profession (:data:`PROFESSIONS`), made by :func:`.labour.profession_figures`: the
    table's rows a profession stands for (``occupation``, "; " between rows) combined, weighted by
    employment, where it stands for several ("doctor" is four physician rows, three of them not
    published). Columns: occupation, profession, total_employed_thousands (of the rows used),
    percent_women/white/black/asian/hispanic, year, source, verified (true: the published figures),
    note (rows combined, rows skipped) and rows_not_published.
    """
    table = profession_figures(PROFESSIONS)
    return table[[*BLS_COLUMNS, "verified", "note", "rows_not_published"]]


# Spread of the non-Black remainder over tones 1-4 (world-building constants, see
# race_shares_to_skin_tones). Hispanic and Asian shares push weight towards the middle tones.
_TONES_1_4_DEFAULT = np.array([0.30, 0.40, 0.22, 0.08])
_TONES_1_4_HISPANIC = np.array([0.05, 0.20, 0.40, 0.35])
_TONES_1_4_ASIAN = np.array([0.10, 0.35, 0.40, 0.15])


def race_shares_to_skin_tones(percent_black: float, percent_asian: float,
                              percent_hispanic: float) -> list[float]:
    """Skin-tone probabilities (tones 1..6) for a toy world, from race/ethnicity shares.

    A deliberate world-building simplification, not a claim about people: race is not skin tone,
    and people of every race have every tone. We only need *some* documented, reproducible link
    so that the built-in world inherits the skew of the labour table. The rule:
    P(tone 5 or 6) = percent_black / 100, split evenly between 5 and 6; the rest is spread over
    tones 1-4, with the Hispanic and then the Asian share (capped by what is left) weighted
    towards tones 2-4 and the remainder towards tones 1-2.
    """
    for name, value in (("percent_black", percent_black), ("percent_asian", percent_asian),
                        ("percent_hispanic", percent_hispanic)):
        if not 0.0 <= float(value) <= 100.0:
            raise UserError(f"{name} must be in [0, 100], got {value}")
    black = float(percent_black) / 100.0
    rest = 1.0 - black
    hispanic = min(float(percent_hispanic) / 100.0, rest)
    asian = min(float(percent_asian) / 100.0, rest - hispanic)
    other = rest - hispanic - asian
    light = other * _TONES_1_4_DEFAULT + hispanic * _TONES_1_4_HISPANIC + asian * _TONES_1_4_ASIAN
    probs = np.concatenate([light, [black / 2.0, black / 2.0]])
    return list(probs / probs.sum())


# --------------------------------------------------------------------------------------------
# The joint distribution
# --------------------------------------------------------------------------------------------


def _check_probability(name: str, value: float) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise UserError(f"{name} must be a probability in [0, 1], got {value}")
    return value


def _check_vector(name: str, values: Sequence[float], length: int) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != length:
        raise UserError(f"{name} needs {length} probabilities, got {len(values)}")
    for v in values:
        _check_probability(name, v)
    total = sum(values)
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"{name} must sum to 1, got {total:.6f}")
    # Renormalise only visible rounding, so that to_dict/from_dict round-trips exactly.
    return values if abs(total - 1.0) < 1e-12 else [v / total for v in values]


def _check_professions(name: str, keys) -> None:
    unknown = [k for k in keys if k not in PROFESSIONS]
    if unknown:
        raise UserError(
            f"{name}: unknown profession(s) {', '.join(repr(k) for k in unknown)}; "
            f"known professions: {', '.join(PROFESSIONS)}"
        )


def _per_profession(name: str, value, check) -> dict:
    """Expand one value (every profession's, a number or a vector) or a {profession: value} dict,
    validating both."""
    if isinstance(value, Mapping):
        _check_professions(name, value.keys())
        return {p: check(f"{name}[{p!r}]", v) for p, v in value.items()}
    return {p: check(name, value) for p in PROFESSIONS}


@dataclass
class PortraitDistribution:
    """The joint distribution of the portraits world: which people get drawn in which profession.

    Given the profession, gender, skin tone and age are drawn independently:
    ``profession_weights[p]`` is P(profession = p), ``p_female[p]`` is P(female | p),
    ``skin_tone[p]`` the 6 probabilities of tones "1".."6" given p, ``age[p]`` the 3 probabilities
    of young / middle-aged / older given p. ``notes`` records where the numbers came from and every
    skew applied since, for provenance.
    """

    profession_weights: dict[str, float]
    p_female: dict[str, float]
    skin_tone: dict[str, list[float]]
    age: dict[str, list[float]]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, table in (("profession_weights", self.profession_weights),
                            ("p_female", self.p_female), ("skin_tone", self.skin_tone),
                            ("age", self.age)):
            _check_professions(name, table.keys())
            missing = [p for p in PROFESSIONS if p not in table]
            if missing:
                raise UserError(f"{name} lacks profession(s) {', '.join(missing)}")
        weights = {p: float(self.profession_weights[p]) for p in PROFESSIONS}
        for p, w in weights.items():
            if w < 0 or math.isnan(w):
                raise UserError(f"profession_weights[{p!r}] must be >= 0, got {w}")
        total = sum(weights.values())
        if total <= 0:
            raise UserError("profession_weights must give at least one profession a positive weight")
        # Normalise the weights (they may be given as counts); keep everything in canonical order.
        self.profession_weights = (weights if abs(total - 1.0) < 1e-12
                                   else {p: w / total for p, w in weights.items()})
        self.p_female = {p: _check_probability(f"p_female[{p!r}]", self.p_female[p]) for p in PROFESSIONS}
        self.skin_tone = {p: _check_vector(f"skin_tone[{p!r}]", self.skin_tone[p], len(SKIN_TONES))
                          for p in PROFESSIONS}
        self.age = {p: _check_vector(f"age[{p!r}]", self.age[p], len(AGES)) for p in PROFESSIONS}
        self.notes = list(self.notes)

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def from_labour_statistics(cls, table: pd.DataFrame | None = None) -> "PortraitDistribution":
        """The default world: the shipped BLS CPS table 11 (2022) figures, professions uniform.

        P(female | profession) = percent_women / 100. Skin tone comes from the race/ethnicity
        columns through :func:`race_shares_to_skin_tones`, a documented simplification that maps
        race statistics onto a skin-tone palette only to build a toy world (race is not skin tone).
        Age is not in the table; every profession gets ``DEFAULT_AGE_PROBS``. ``table``: one row per
        profession with its ``percent_*`` columns (default :func:`load_bls_reference`).
        """
        table = load_bls_reference() if table is None else table
        rows = table[table["profession"].astype(str).str.len() > 0]
        doubled = sorted(set(rows["profession"][rows["profession"].duplicated()]))
        if doubled:
            raise UserError(f"labour table has several rows for profession(s) {', '.join(doubled)}")
        rows = rows.set_index("profession")
        missing = [p for p in PROFESSIONS if p not in rows.index]
        if missing:
            raise UserError(f"labour table has no row for profession(s) {', '.join(missing)}")
        p_female, tones = {}, {}
        for p in PROFESSIONS:
            row = rows.loc[p]
            p_female[p] = float(row["percent_women"]) / 100.0
            tones[p] = race_shares_to_skin_tones(row["percent_black"], row["percent_asian"],
                                                 row["percent_hispanic"])
        years = sorted({int(y) for y in rows["year"]})
        return cls(
            profession_weights={p: 1.0 for p in PROFESSIONS},
            p_female=p_female,
            skin_tone=tones,
            age={p: list(DEFAULT_AGE_PROBS) for p in PROFESSIONS},
            notes=[f"from BLS CPS table 11 ({', '.join(map(str, years))}; a profession that stands for several "
                   "rows combines them, weighted by employment): P(female) = percent_women; "
                   "skin tone from race shares via race_shares_to_skin_tones (a toy-world mapping); "
                   "age mix default; professions uniform"],
        )

    @classmethod
    def uniform(cls) -> "PortraitDistribution":
        """Parity world: every profession, gender, tone and age equally likely."""
        return cls(
            profession_weights={p: 1.0 for p in PROFESSIONS},
            p_female={p: 0.5 for p in PROFESSIONS},
            skin_tone={p: [1.0 / len(SKIN_TONES)] * len(SKIN_TONES) for p in PROFESSIONS},
            age={p: [1.0 / len(AGES)] * len(AGES) for p in PROFESSIONS},
            notes=["uniform (parity) world"],
        )

    def with_skew(
        self,
        share_female: float | Mapping[str, float] | None = None,
        share_dark: float | Mapping[str, float] | None = None,
        skin_tone: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
        age: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
        profession_shares: Mapping[str, float] | None = None,
    ) -> "PortraitDistribution":
        """A copy with some probabilities replaced; this one is left unchanged.

        ``share_female``: P(female), for every profession (a float) or some (``{"doctor": 0.0}``
        makes all doctors male). ``share_dark``: P(tone 5 or 6), keeping the split inside tones
        5-6 and inside tones 1-4 as they were. ``skin_tone`` / ``age``: full probability vectors
        (6 / 3 values). ``profession_shares``: P(profession) of the professions named
        (``{"nurse": 0.5}`` makes half the world nurses); the others share the rest in proportion
        to their current weights. Unknown professions and probabilities outside [0, 1] raise
        ValueError.
        """
        new = copy.deepcopy(self)
        described = []
        if share_female is not None:
            values = _per_profession("share_female", share_female, _check_probability)
            new.p_female.update(values)
            described.append(f"share_female={_describe(share_female)}")
        if skin_tone is not None:
            tone_vector = partial(_check_vector, length=len(SKIN_TONES))
            new.skin_tone.update(_per_profession("skin_tone", skin_tone, tone_vector))
            described.append(f"skin_tone={_describe(skin_tone)}")
        if share_dark is not None:
            values = _per_profession("share_dark", share_dark, _check_probability)
            for p, dark in values.items():
                new.skin_tone[p] = _rescale_dark(new.skin_tone[p], dark)
            described.append(f"share_dark={_describe(share_dark)}")
        if age is not None:
            new.age.update(_per_profession("age", age, partial(_check_vector, length=len(AGES))))
            described.append(f"age={_describe(age)}")
        if profession_shares is not None:
            _check_professions("profession_shares", profession_shares.keys())
            named = {p: _check_probability(f"profession_shares[{p!r}]", v)
                     for p, v in profession_shares.items()}
            new.profession_weights = _set_shares(new.profession_weights, named)
            described.append(f"profession_shares={_describe(profession_shares)}")
        if described:
            new.notes.append("skew: " + "; ".join(described))
        new.__post_init__()
        return new

    # ---- provenance ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-ready dict; ``PortraitDistribution.from_dict`` restores it exactly."""
        return {
            "professions": list(PROFESSIONS),
            "profession_weights": dict(self.profession_weights),
            "p_female": dict(self.p_female),
            "skin_tone": {p: list(v) for p, v in self.skin_tone.items()},
            "age": {p: list(v) for p, v in self.age.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "PortraitDistribution":
        for key in ("profession_weights", "p_female", "skin_tone", "age"):
            if key not in data:
                raise UserError(f"portrait distribution dict lacks {key!r}")
        return cls(
            profession_weights=dict(data["profession_weights"]),
            p_female=dict(data["p_female"]),
            skin_tone={p: list(v) for p, v in data["skin_tone"].items()},
            age={p: list(v) for p, v in data["age"].items()},
            notes=list(data.get("notes", [])),
        )

    # ---- the truth an audit should recover ------------------------------------------------

    def expected_shares(self) -> pd.DataFrame:
        """True expected share of every attribute value within each profession (long format).

        Columns: profession, attribute (gender / skin_tone / age), value, expected_share. Within a
        (profession, attribute) the shares sum to 1.
        """
        rows = []
        for p in PROFESSIONS:
            rows.append((p, "gender", "female", self.p_female[p]))
            rows.append((p, "gender", "male", 1.0 - self.p_female[p]))
            rows.extend((p, "skin_tone", t, s) for t, s in zip(SKIN_TONES, self.skin_tone[p]))
            rows.extend((p, "age", a, s) for a, s in zip(AGES, self.age[p]))
        return pd.DataFrame(rows, columns=["profession", "attribute", "value", "expected_share"])

    def expected_marginals(self) -> pd.DataFrame:
        """Expected share of every attribute value over the whole world (professions weighted)."""
        shares = self.expected_shares()
        shares["weight"] = shares["profession"].map(self.profession_weights)
        shares["expected_share"] = shares["expected_share"] * shares["weight"]
        marg = shares.groupby(["attribute", "value"], sort=False)["expected_share"].sum().reset_index()
        prof = pd.DataFrame({"attribute": "profession", "value": PROFESSIONS,
                             "expected_share": [self.profession_weights[p] for p in PROFESSIONS]})
        return pd.concat([prof, marg], ignore_index=True)

    # ---- sampling --------------------------------------------------------------------------

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """``n`` attribute rows (profession, gender, skin_tone, age), vectorised.

        Profession counts are allocated exactly by weight (largest remainder) and shuffled, so
        a uniform world of 4,000 has 500 of each; the other attributes are drawn per row.
        """
        n = int(n)
        weights = np.array([self.profession_weights[p] for p in PROFESSIONS])
        exact = weights * n
        counts = np.floor(exact).astype(np.int64)
        short = n - counts.sum()
        if short > 0:
            # Largest remainder first; ties broken by a seeded shuffle, not by list order.
            order = rng.permutation(len(PROFESSIONS))
            remainders = (exact - counts)[order]
            counts[order[np.argsort(-remainders, kind="stable")[:short]]] += 1
        prof_idx = rng.permutation(np.repeat(np.arange(len(PROFESSIONS)), counts))

        p_female = np.array([self.p_female[p] for p in PROFESSIONS])[prof_idx]
        female = rng.random(n) < p_female
        tone_cdf = np.cumsum(np.array([self.skin_tone[p] for p in PROFESSIONS]), axis=1)[prof_idx]
        tone_idx = np.minimum((rng.random(n)[:, None] >= tone_cdf).sum(axis=1), len(SKIN_TONES) - 1)
        age_cdf = np.cumsum(np.array([self.age[p] for p in PROFESSIONS]), axis=1)[prof_idx]
        age_idx = np.minimum((rng.random(n)[:, None] >= age_cdf).sum(axis=1), len(AGES) - 1)
        return pd.DataFrame({
            "profession": np.array(PROFESSIONS, dtype=object)[prof_idx],
            "gender": np.where(female, "female", "male").astype(object),
            "skin_tone": np.array(SKIN_TONES, dtype=object)[tone_idx],
            "age": np.array(AGES, dtype=object)[age_idx],
        })


def _describe(value) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"{float(v):.3g}" for v in value) + "]"
    return f"{float(value):.3g}"


def _set_shares(weights: Mapping[str, float], named: Mapping[str, float]) -> dict[str, float]:
    """Give the named professions these shares; the rest split what is left as they were."""
    total_named = sum(named.values())
    if total_named > 1.0 + 1e-9:
        raise UserError(f"profession_shares sum to {total_named:.4f}, more than 1")
    others = [p for p in PROFESSIONS if p not in named]
    if not others and abs(total_named - 1.0) > 1e-9:
        raise UserError(f"profession_shares name every profession but sum to {total_named:.4f}, not 1")
    rest = max(0.0, 1.0 - total_named)
    other_total = sum(weights[p] for p in others)
    result = dict(named)
    for p in others:
        result[p] = rest * (weights[p] / other_total if other_total > 0 else 1.0 / len(others))
    return {p: result[p] for p in PROFESSIONS}


def _rescale_dark(probs: Sequence[float], dark: float) -> list[float]:
    """Set P(tone 5 or 6) to ``dark``, keeping the shape inside tones 1-4 and inside 5-6."""
    probs = np.asarray(probs, dtype=float)
    light, deep = probs[:4], probs[4:]
    light = light / light.sum() if light.sum() > 0 else np.full(4, 0.25)
    deep = deep / deep.sum() if deep.sum() > 0 else np.full(2, 0.5)
    return list(np.concatenate([light * (1.0 - dark), deep * dark]))


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------

# A 6-step light-to-dark skin palette (Fitzpatrick-like), sRGB, one colour per tone of the schema.
SKIN_PALETTE: dict[str, tuple[int, int, int]] = dict(zip(SKIN_TONES, (
    (247, 221, 198), (234, 190, 155), (209, 156, 112), (178, 129, 84), (126, 82, 52), (74, 47, 31))))
# Natural hair colours for young people (black, dark brown, brown, light brown, auburn, blonde),
# with weights by skin tone so that darker tones mostly get darker hair, as in life.
_HAIR_COLOURS = np.array([(26, 22, 20), (58, 38, 26), (100, 66, 40), (150, 108, 66),
                          (146, 62, 30), (222, 178, 96)], dtype=float)
_HAIR_WEIGHTS_LIGHT = np.array([0.15, 0.25, 0.22, 0.13, 0.10, 0.15])
_HAIR_WEIGHTS_DARK = np.array([0.60, 0.30, 0.08, 0.02, 0.0, 0.0])
_GREY_HAIR = np.array([(196, 196, 198), (218, 218, 218), (238, 236, 232), (182, 182, 186)], dtype=float)

SUPERSAMPLE = 4  # draw at 4x and downsample, so thin details (ties, stethoscopes) stay legible


def _rgb(colour) -> tuple[int, int, int]:
    # Unrolled: called for every shape of every portrait (about 65 a picture).
    r, g, b = colour
    return int(min(255, max(0, round(r)))), int(min(255, max(0, round(g)))), int(min(255, max(0, round(b))))


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return _rgb([c * factor for c in colour])


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return _rgb([x * (1 - t) + y * t for x, y in zip(a, b)])


class _Painter:
    """ImageDraw in unit coordinates ([0, 1] across the canvas), with an offset for the figure."""

    def __init__(self, draw: ImageDraw.ImageDraw, canvas: int, dx: float = 0.0, dy: float = 0.0):
        self.d, self.s, self.dx, self.dy = draw, canvas, dx, dy

    def _xy(self, x, y):
        return ((x + self.dx) * self.s, (y + self.dy) * self.s)

    def _box(self, x0, y0, x1, y1):
        (a, b), (c, d) = self._xy(x0, y0), self._xy(x1, y1)
        return [min(a, c), min(b, d), max(a, c), max(b, d)]

    def rect(self, x0, y0, x1, y1, fill):
        self.d.rectangle(self._box(x0, y0, x1, y1), fill=_rgb(fill))

    def rrect(self, x0, y0, x1, y1, radius, fill):
        self.d.rounded_rectangle(self._box(x0, y0, x1, y1), radius=radius * self.s, fill=_rgb(fill))

    def ellipse(self, cx, cy, rx, ry, fill, outline=None, width=0.0):
        self.d.ellipse(self._box(cx - rx, cy - ry, cx + rx, cy + ry), fill=_rgb(fill) if fill else None,
                       outline=_rgb(outline) if outline else None, width=max(1, round(width * self.s)))

    def chord(self, x0, y0, x1, y1, start, end, fill):
        self.d.chord(self._box(x0, y0, x1, y1), start, end, fill=_rgb(fill))

    def poly(self, points, fill):
        self.d.polygon([self._xy(x, y) for x, y in points], fill=_rgb(fill))

    def line(self, points, fill, width):
        self.d.line([self._xy(x, y) for x, y in points], fill=_rgb(fill),
                    width=max(1, round(width * self.s)), joint="curve")


# ---- backgrounds (no figure offset: the room stays put while the person moves) ----------------


def _bg_doctor(p: _Painter, rng, f):
    p.rect(0, 0, 1, 1, _shade((206, 227, 243), f))
    p.rect(0, 0.6, 1, 0.63, _shade((230, 240, 250), f))
    # A red-cross sign on the wall.
    x = 0.09 + rng.uniform(-0.03, 0.03)
    p.rrect(x, 0.06, x + 0.16, 0.22, 0.02, (250, 250, 250))
    p.rect(x + 0.06, 0.085, x + 0.10, 0.195, (214, 30, 40))
    p.rect(x + 0.025, 0.12, x + 0.135, 0.16, (214, 30, 40))


def _bg_nurse(p: _Painter, rng, f):
    p.rect(0, 0, 1, 1, _shade((229, 221, 242), f))
    for x in np.arange(0.04, 1.0, 0.11) + rng.uniform(0, 0.05):  # curtain folds
        p.rect(x, 0, x + 0.025, 1, _shade((212, 201, 232), f))


def _bg_engineer(p: _Painter, rng, f):
    p.rect(0, 0, 1, 1, _shade((132, 188, 236), f))
    p.rect(0, 0.55, 1, 1, _shade((160, 205, 240), f))
    y = 0.12 + rng.uniform(-0.03, 0.03)  # a rust-red steel girder across the sky
    p.rect(0, y, 1, y + 0.07, (178, 78, 44))
    for x in np.arange(-0.05, 1.0, 0.1):
        p.line([(x, y + 0.07), (x + 0.05, y)], (140, 56, 30), 0.012)


def _bg_chief_executive(p: _Painter, rng, f):
    p.rect(0, 0, 1, 1, _shade((24, 32, 62), f))
    x = -0.05
    while x < 1.0:  # night skyline behind an office window
        w = rng.uniform(0.1, 0.2)
        top = rng.uniform(0.12, 0.5)
        p.rect(x, top, x + w - 0.01, 1, _shade((42, 52, 88), f))
        for wy in np.arange(top + 0.04, 0.95, 0.07):
            for wx in np.arange(x + 0.025, x + w - 0.04, 0.05):
                if rng.random() < 0.45:
                    p.rect(wx, wy, wx + 0.02, wy + 0.025, (236, 206, 120))
        x += w


def _bg_janitor(p: _Painter, rng, f):
    p.rect(0, 0, 1, 1, _shade((214, 218, 216), f))
    off = rng.uniform(0, 0.125)
    for t in np.arange(off, 1.0, 0.125):  # bathroom tiles
        p.rect(t, 0, t + 0.008, 1, _shade((168, 174, 172), f))
        p.rect(0, t, 1, t + 0.008, _shade((168, 174, 172), f))


def _bg_teacher(p: _Painter, rng, f):
    p.rect(0, 0, 1, 1, (120, 84, 48))  # wooden frame
    p.rect(0, 0.04, 1, 1, _shade((44, 98, 66), f))  # green chalkboard
    chalk = (232, 236, 228)
    for x0 in (0.05 + rng.uniform(0, 0.04), 0.73 + rng.uniform(0, 0.04)):  # scribbles left and right
        for row in range(3):
            y = 0.12 + row * 0.1 + rng.uniform(-0.01, 0.01)
            p.line([(x0, y), (x0 + rng.uniform(0.1, 0.18), y + rng.uniform(-0.01, 0.01))], chalk, 0.014)


def _bg_software_developer(p: _Painter, rng, f):
    p.rect(0, 0, 1, 1, _shade((22, 22, 38), f))
    colours = [(52, 140, 88), (52, 120, 170), (140, 74, 150), (170, 150, 60)]
    for x0 in (0.03, 0.76):  # lines of code on monitors left and right
        for row in range(8):
            y = 0.06 + row * 0.065
            indent = 0.025 * rng.integers(0, 3)
            length = rng.uniform(0.06, 0.18)
            p.rect(x0 + indent, y, x0 + indent + length, y + 0.022, colours[rng.integers(len(colours))])


def _bg_housekeeper(p: _Painter, rng, f):
    p.rect(0, 0, 1, 1, _shade((242, 224, 196), f))
    off = rng.uniform(0, 0.1)
    for x in np.arange(off - 0.1, 1.0, 0.1):  # striped wallpaper
        p.rect(x, 0, x + 0.035, 1, _shade((228, 202, 170), f))


_BACKGROUNDS = {
    "doctor": _bg_doctor, "nurse": _bg_nurse, "engineer": _bg_engineer,
    "chief executive": _bg_chief_executive, "janitor": _bg_janitor, "teacher": _bg_teacher,
    "software developer": _bg_software_developer, "housekeeper": _bg_housekeeper,
}

# Main garment colour of each profession (jittered slightly per image).
_GARMENT = {
    "doctor": (243, 245, 247),
    "nurse": (22, 150, 152),
    "engineer": (255, 118, 0),
    "chief executive": (38, 40, 54),
    "janitor": (150, 160, 172),
    "teacher": (132, 44, 62),
    "software developer": (86, 90, 104),
    "housekeeper": (234, 122, 168),
}


def _torso_details(p: _Painter, profession: str, g, cx, ty, w, skin, rng):
    """Collars, ties, vests, aprons: everything drawn on the torso of ``profession``."""
    if profession == "doctor":
        p.poly([(cx - 0.09, ty), (cx + 0.09, ty), (cx, ty + 0.2)], (140, 182, 226))  # blue shirt
        p.line([(cx - 0.09, ty), (cx - 0.015, ty + 0.3)], (180, 182, 190), 0.012)  # lapels
        p.line([(cx + 0.09, ty), (cx + 0.015, ty + 0.3)], (180, 182, 190), 0.012)
        p.rect(cx + 0.12, ty + 0.13, cx + 0.22, ty + 0.135, (180, 182, 190))  # pocket + pen
        p.rect(cx + 0.15, ty + 0.09, cx + 0.165, ty + 0.14, (40, 70, 170))
        tube = (40, 40, 50)  # stethoscope around the neck
        p.line([(cx - 0.085, ty - 0.01), (cx - 0.13, ty + 0.1), (cx - 0.09, ty + 0.2)], tube, 0.022)
        p.line([(cx + 0.085, ty - 0.01), (cx + 0.12, ty + 0.09)], tube, 0.022)
        p.ellipse(cx - 0.09, ty + 0.225, 0.035, 0.035, (176, 180, 190), outline=tube, width=0.012)
    elif profession == "nurse":
        p.poly([(cx - 0.07, ty - 0.01), (cx + 0.07, ty - 0.01), (cx, ty + 0.1)], _shade(skin, 0.92))
        p.line([(cx - 0.07, ty - 0.01), (cx, ty + 0.1), (cx + 0.07, ty - 0.01)], _shade(g, 0.8), 0.014)
        p.rect(cx - 0.2, ty + 0.12, cx - 0.11, ty + 0.13, _shade(g, 0.8))  # chest pocket
        p.rect(cx + 0.12, ty + 0.1, cx + 0.19, ty + 0.145, (245, 245, 245))  # name badge
    elif profession == "engineer":
        p.rect(cx - 0.075, ty - 0.01, cx + 0.075, 1.05, (62, 96, 160))  # denim shirt between vest panels
        p.poly([(cx - 0.075, ty - 0.01), (cx, ty + 0.06), (cx + 0.075, ty - 0.01)], (48, 78, 136))
        for y in (ty + 0.12, ty + 0.22):  # reflective stripes
            p.rect(cx - w + 0.03, y, cx - 0.075, y + 0.035, (232, 232, 210))
            p.rect(cx + 0.075, y, cx + w - 0.03, y + 0.035, (232, 232, 210))
    elif profession == "chief executive":
        p.poly([(cx - 0.08, ty - 0.01), (cx + 0.08, ty - 0.01), (cx, ty + 0.26)], (248, 248, 250))
        tie = _shade((204, 24, 36), rng.uniform(0.9, 1.05))
        p.poly([(cx - 0.022, ty), (cx + 0.022, ty), (cx + 0.034, ty + 0.2), (cx, ty + 0.26),
                (cx - 0.034, ty + 0.2)], tie)
        p.line([(cx - 0.085, ty - 0.01), (cx - 0.02, ty + 0.3)], (20, 20, 28), 0.016)  # lapels
        p.line([(cx + 0.085, ty - 0.01), (cx + 0.02, ty + 0.3)], (20, 20, 28), 0.016)
        p.rect(cx + 0.15, ty + 0.12, cx + 0.21, ty + 0.14, (240, 240, 240))  # pocket square
    elif profession == "janitor":
        bib = _shade((64, 92, 128), rng.uniform(0.92, 1.08))  # grey-blue overalls over a grey shirt
        p.rect(cx - 0.15, ty + 0.12, cx + 0.15, 1.05, bib)
        p.rect(cx - w + 0.03, ty + 0.24, cx + w - 0.03, 1.05, bib)
        p.line([(cx - 0.19, ty), (cx - 0.12, ty + 0.13)], bib, 0.045)  # straps
        p.line([(cx + 0.19, ty), (cx + 0.12, ty + 0.13)], bib, 0.045)
        for x in (cx - 0.11, cx + 0.11):
            p.ellipse(x, ty + 0.145, 0.014, 0.014, (236, 196, 60))
        p.rect(cx - 0.06, ty + 0.17, cx + 0.06, ty + 0.2, _shade(bib, 0.75))  # bib pocket
    elif profession == "teacher":
        p.poly([(cx - 0.1, ty - 0.01), (cx + 0.1, ty - 0.01), (cx, ty + 0.26)], (242, 234, 214))  # blouse
        for y in (ty + 0.2, ty + 0.26, ty + 0.32):  # cardigan buttons
            p.ellipse(cx - 0.035, y, 0.012, 0.012, _shade(g, 0.6))
    elif profession == "software developer":
        p.ellipse(cx, ty + 0.01, 0.17, 0.06, _shade(g, 0.78))  # the hood bunched behind the neck
        p.line([(cx - 0.045, ty + 0.03), (cx - 0.05, ty + 0.16)], (236, 236, 236), 0.01)  # drawstrings
        p.line([(cx + 0.045, ty + 0.03), (cx + 0.05, ty + 0.16)], (236, 236, 236), 0.01)
    elif profession == "housekeeper":
        p.poly([(cx - 0.09, ty - 0.01), (cx, ty + 0.06), (cx - 0.02, ty + 0.01)], (250, 250, 250))  # collar
        p.poly([(cx + 0.09, ty - 0.01), (cx, ty + 0.06), (cx + 0.02, ty + 0.01)], (250, 250, 250))
        apron = (250, 250, 248)
        p.rect(cx - 0.12, ty + 0.1, cx + 0.12, 1.05, apron)
        p.line([(cx - 0.12, ty + 0.1), (cx - 0.17, ty)], apron, 0.02)
        p.line([(cx + 0.12, ty + 0.1), (cx + 0.17, ty)], apron, 0.02)
        p.rect(cx - 0.07, ty + 0.2, cx + 0.07, ty + 0.21, (220, 200, 210))  # apron pocket


def _front_props(p: _Painter, profession: str, cx, rng):
    """Props in front of the figure (drawn last)."""
    if profession == "janitor":
        x = 0.86 + rng.uniform(-0.03, 0.03)  # mop handle with its head on the floor
        p.line([(x + 0.05, 0.2), (x - 0.02, 1.0)], (156, 108, 60), 0.03)
        for k in range(7):
            sx = x - 0.09 + k * 0.03
            p.line([(x - 0.015, 0.86), (sx, 1.0)], (200, 200, 192), 0.022)
        bx = 0.03 + rng.uniform(-0.02, 0.02)  # yellow bucket
        p.poly([(bx, 0.84), (bx + 0.19, 0.84), (bx + 0.17, 1.0), (bx + 0.02, 1.0)], (238, 192, 28))
        p.rect(bx - 0.01, 0.83, bx + 0.2, 0.855, (196, 150, 20))
    elif profession == "software developer":
        # An open laptop seen from the side, its screen glowing cyan.
        p.poly([(cx - 0.3, 0.79), (cx + 0.3, 0.79), (cx + 0.33, 1.0), (cx - 0.33, 1.0)], (34, 34, 42))
        p.poly([(cx - 0.26, 0.82), (cx + 0.26, 0.82), (cx + 0.285, 0.99), (cx - 0.285, 0.99)],
               (96, 214, 255))
        for row in range(3):
            y = 0.85 + row * 0.045
            p.rect(cx - 0.22, y, cx - 0.22 + rng.uniform(0.1, 0.3), y + 0.015, (30, 110, 160))
    elif profession == "housekeeper":
        x = 0.15 + rng.uniform(-0.03, 0.03)  # feather duster
        p.line([(x - 0.02, 1.0), (x + 0.03, 0.62)], (120, 80, 40), 0.026)
        for k in range(9):
            angle = 2 * math.pi * k / 9
            p.ellipse(x + 0.04 + 0.05 * math.cos(angle), 0.52 + 0.07 * math.sin(angle), 0.045, 0.05,
                      (96 + 12 * (k % 3), 78 + 10 * (k % 2), 70))
        p.ellipse(x + 0.04, 0.52, 0.05, 0.06, (128, 104, 88))


def draw_portrait(attrs: Mapping[str, str], rng: np.random.Generator, size: int = 32,
                  age_rng: np.random.Generator | None = None) -> Image.Image:
    """Draw one portrait of ``attrs`` (profession, gender, skin_tone, age) as an RGB image.

    ``rng`` supplies the nuisance variation (position, hair colour, shades, background details);
    the same rng state gives the same picture. Drawn at 4x ``size`` and downsampled (Lanczos).
    ``age_rng`` (default: ``rng``) supplies the draws only some ages make (which grey, whether an
    older man is bald): given its own stream, one person drawn at two ages shares every other draw,
    so the two pictures differ only where ageing is drawn.
    """
    age_rng = rng if age_rng is None else age_rng
    profession, gender = str(attrs["profession"]), str(attrs["gender"])
    tone, age = str(attrs["skin_tone"]), str(attrs["age"])
    for name, value, known in (("profession", profession, PROFESSIONS), ("gender", gender, GENDERS),
                               ("skin_tone", tone, SKIN_TONES), ("age", age, AGES)):
        if value not in known:
            raise UserError(f"unknown {name} {value!r}; known: {', '.join(known)}")
    if int(size) < 8:
        raise UserError(f"size must be at least 8 px, got {size}")
    canvas = int(size) * SUPERSAMPLE
    image = Image.new("RGB", (canvas, canvas))
    draw = ImageDraw.Draw(image)

    _BACKGROUNDS[profession](_Painter(draw, canvas), rng, rng.uniform(0.9, 1.06))

    # Nuisance: the figure's position, head size and build vary a little.
    p = _Painter(draw, canvas, rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03))
    female = gender == "female"
    k = rng.uniform(0.95, 1.05)
    cx, cy = 0.5, 0.39
    rx, ry = (0.135 * k, 0.168 * k) if female else (0.145 * k, 0.178 * k)
    ty = 0.67
    w = (0.30 if female else 0.38) * rng.uniform(0.96, 1.04)
    skin = _shade(SKIN_PALETTE[tone], rng.uniform(0.97, 1.03))
    garment = _shade(_GARMENT[profession], rng.uniform(0.93, 1.05))

    # Hair colour carries the age: natural colours when young, salt-and-pepper in middle age,
    # grey/white when older.
    tone_i = SKIN_TONES.index(tone)
    weights = _HAIR_WEIGHTS_LIGHT if tone_i < 3 else _HAIR_WEIGHTS_DARK
    base_hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=weights / weights.sum())]
    if age == "young":
        hair = _rgb(base_hair)
        temple = hair
    elif age == "middle-aged":
        hair = _mix(base_hair, (150, 150, 152), 0.35)
        temple = (178, 178, 180)
    else:
        hair = _rgb(_GREY_HAIR[age_rng.integers(len(_GREY_HAIR))])
        temple = hair
    bald = (not female) and age == "older" and age_rng.random() < 0.6

    # Torso and garment.
    p.rrect(cx - w, ty, cx + w, 1.15, 0.11, garment)
    if female:  # long hair falling beside the face onto the shoulders
        p.ellipse(cx, cy - 0.01, rx + 0.045, ry + 0.035, hair)
        p.rrect(cx - rx - 0.045, cy, cx + rx + 0.045, ty + 0.08 + rng.uniform(0, 0.06), 0.04, hair)
    _torso_details(p, profession, garment, cx, ty, w, skin, rng)
    if female:  # hair in front of the shoulders, beside the neck
        p.rrect(cx - rx - 0.045, cy + 0.05, cx - rx + 0.035, ty + 0.07, 0.03, hair)
        p.rrect(cx + rx - 0.035, cy + 0.05, cx + rx + 0.045, ty + 0.07, 0.03, hair)

    # Neck, ears, head.
    p.rect(cx - 0.052, cy + ry * 0.55, cx + 0.052, ty + 0.02, _shade(skin, 0.9))
    if profession in ("doctor", "chief executive", "teacher"):  # collars sit over the neck base
        _collar(p, profession, cx, ty)
    if not female:
        p.ellipse(cx - rx, cy + 0.01, 0.025, 0.035, _shade(skin, 0.95))
        p.ellipse(cx + rx, cy + 0.01, 0.025, 0.035, _shade(skin, 0.95))
    p.ellipse(cx, cy, rx, ry, skin)

    # Face.
    eye_y = cy + 0.005
    ex = 0.056 * k
    brow = _shade(hair, 0.8) if age != "older" else _shade(hair, 0.7)
    for s in (-1, 1):
        p.ellipse(cx + s * ex, eye_y, 0.017, 0.017, (34, 26, 26))
        p.line([(cx + s * (ex - 0.03), eye_y - 0.045), (cx + s * (ex + 0.03), eye_y - 0.05)], brow, 0.013)
    p.line([(cx, cy + 0.03), (cx + 0.012, cy + 0.065)], _shade(skin, 0.78), 0.01)  # nose
    mouth_y = cy + 0.105 * k
    if female:
        p.ellipse(cx, mouth_y, 0.038, 0.014, _mix(skin, (196, 52, 72), 0.7))
    else:
        p.line([(cx - 0.04, mouth_y), (cx + 0.04, mouth_y)], _shade(skin, 0.6), 0.013)
    if age != "young":  # smile lines, deeper with age
        fold = _shade(skin, 0.8 if age == "middle-aged" else 0.68)
        for s in (-1, 1):
            p.line([(cx + s * 0.055, cy + 0.045), (cx + s * 0.07, cy + 0.11)], fold, 0.011)
        if age == "older":
            for s in (-1, 1):  # crow's feet and under-eye lines
                p.line([(cx + s * (ex - 0.02), eye_y + 0.03), (cx + s * (ex + 0.02), eye_y + 0.03)], fold, 0.009)
                p.line([(cx + s * (ex + 0.03), eye_y - 0.005), (cx + s * (ex + 0.05), eye_y + 0.01)], fold, 0.009)

    # Hair on top.
    if female:
        p.chord(cx - rx - 0.02, cy - ry - 0.04, cx + rx + 0.02, cy + ry * 0.25, 180, 360, hair)
        for s in (-1, 1):  # strands framing the face
            p.poly([(cx + s * (rx + 0.02), cy - 0.06), (cx + s * (rx - 0.035), cy - 0.05),
                    (cx + s * (rx - 0.012), cy + 0.09), (cx + s * (rx + 0.02), cy + 0.12)], hair)
    elif bald:
        for s in (-1, 1):
            p.ellipse(cx + s * (rx - 0.005), cy - 0.04, 0.03, 0.065, hair)
    else:
        p.chord(cx - rx - 0.014, cy - ry - 0.032, cx + rx + 0.014, cy + ry * 0.3, 180, 360, hair)
        for s in (-1, 1):  # sideburns, grey at the temples in middle age
            p.rect(cx + s * (rx + 0.006), cy - 0.07, cx + s * (rx - 0.028), cy + 0.01, temple)
    if not female and age == "middle-aged" and not bald:
        p.chord(cx - rx - 0.014, cy - ry - 0.032, cx + rx + 0.014, cy + ry * 0.3, 200, 225, temple)
        p.chord(cx - rx - 0.014, cy - ry - 0.032, cx + rx + 0.014, cy + ry * 0.3, 315, 340, temple)
    if female and age == "middle-aged":  # grey streak at the parting
        p.chord(cx - rx - 0.02, cy - ry - 0.04, cx + rx + 0.02, cy + ry * 0.25, 250, 275, temple)

    _headwear(p, profession, garment, cx, cy, rx, ry)
    _front_props(p, profession, cx, rng)

    return image.resize((int(size), int(size)), Image.LANCZOS)


def _collar(p: _Painter, profession: str, cx, ty):
    if profession == "doctor":
        p.poly([(cx - 0.06, ty - 0.02), (cx, ty + 0.05), (cx - 0.075, ty + 0.03)], (150, 190, 232))
        p.poly([(cx + 0.06, ty - 0.02), (cx, ty + 0.05), (cx + 0.075, ty + 0.03)], (150, 190, 232))
    elif profession == "chief executive":
        p.poly([(cx - 0.06, ty - 0.02), (cx - 0.005, ty + 0.04), (cx - 0.07, ty + 0.03)], (250, 250, 252))
        p.poly([(cx + 0.06, ty - 0.02), (cx + 0.005, ty + 0.04), (cx + 0.07, ty + 0.03)], (250, 250, 252))
        p.poly([(cx - 0.02, ty + 0.005), (cx + 0.02, ty + 0.005), (cx, ty + 0.035)], (180, 18, 30))  # knot
    elif profession == "teacher":
        p.poly([(cx - 0.06, ty - 0.02), (cx, ty + 0.05), (cx - 0.08, ty + 0.03)], (242, 234, 214))
        p.poly([(cx + 0.06, ty - 0.02), (cx, ty + 0.05), (cx + 0.08, ty + 0.03)], (242, 234, 214))


def _headwear(p: _Painter, profession: str, garment, cx, cy, rx, ry):
    if profession == "engineer":  # yellow hard hat with a brim
        top, bottom = cy - ry - 0.075, cy + ry * 0.2
        p.chord(cx - rx - 0.035, top, cx + rx + 0.035, bottom, 180, 360, (250, 200, 16))
        brim = (top + bottom) / 2
        p.rrect(cx - rx - 0.065, brim - 0.02, cx + rx + 0.065, brim + 0.018, 0.015, (232, 180, 8))
        p.rect(cx - 0.012, top + 0.01, cx + 0.012, brim - 0.02, (222, 172, 6))
    elif profession == "nurse":  # scrub cap in the colour of the scrubs
        p.chord(cx - rx - 0.022, cy - ry - 0.04, cx + rx + 0.022, cy + ry * 0.15, 180, 360,
                _shade(garment, 1.12))
        p.rect(cx - rx - 0.022, cy - ry * 0.42 - 0.02, cx + rx + 0.022, cy - ry * 0.42, _shade(garment, 0.85))
    elif profession == "housekeeper":  # white frilled headband
        y = cy - ry + 0.01
        p.rrect(cx - rx * 0.85, y - 0.03, cx + rx * 0.85, y + 0.02, 0.02, (252, 252, 252))
        for x in np.linspace(cx - rx * 0.75, cx + rx * 0.75, 5):
            p.ellipse(x, y - 0.03, 0.018, 0.014, (252, 252, 252))


# --------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------


def generate_portraits(n: int = 4000, seed: int = 0, size: int = 32,
                       distribution: PortraitDistribution | None = None) -> ImageSet:
    """``n`` portraits of ``size`` px drawn from ``distribution`` (default: the BLS-based world).

    Returns an ImageSet named "portraits": images float32 (n, 3, size, size) in [0, 1]; attributes
    with columns profession, gender, skin_tone, age; one caption per image; the portraits
    vocabulary. The same seed gives the same images.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError(f"n must be a positive integer, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise UserError(f"size must be an integer of at least 8 px, got {size!r}")
    if distribution is None:
        distribution = PortraitDistribution.from_labour_statistics()
    elif not isinstance(distribution, PortraitDistribution):
        raise UserError(f"distribution must be a PortraitDistribution, got {type(distribution).__name__}")

    rng = np.random.default_rng(seed)
    attributes = distribution.sample(int(n), rng)
    # One independent stream per image, so an image depends only on (seed, its index).
    image_seeds = rng.integers(0, 2**63 - 1, size=int(n), dtype=np.int64)
    pixels = np.empty((int(n), int(size), int(size), 3), dtype=np.uint8)
    records = attributes.to_dict("records")
    for i, attrs in enumerate(records):
        pixels[i] = np.asarray(draw_portrait(attrs, np.random.default_rng(int(image_seeds[i])), int(size)))
    images = to_float(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())
    return ImageSet(
        name="portraits",
        images=images,
        attributes=attributes,
        captions=[portrait_caption(a) for a in records],
        vocabulary=portraits_vocabulary(),
    )
