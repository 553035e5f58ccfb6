"""Reference statistics an audit compares its images with, and the map from prompt words to them.

The built-in reference, ``"bls-2023"``, is the U.S. Bureau of Labor Statistics, Current Population
Survey, Table 11 (employed persons by detailed occupation, sex, race, and Hispanic or Latino
ethnicity, 2023 annual averages, https://www.bls.gov/cps/cpsaat11.htm). Its rows ship as two CSVs:
the eight occupations the portraits world draws (``generators/resources/bls_cpsaat11_2023.csv``, read
through :func:`synthscope.generators.portraits.load_bls_reference`) and the further occupations of the
Bloomberg (2023) Stable Diffusion analysis (``audits/resources/bls_cpsaat11_2023_more_occupations.csv``).
Every row carries its year, source and a ``verified`` flag: these files were written without network
access, so no figure has been checked against the live table yet (``verified`` is false and the
``note`` says how each was obtained). Check them before citing.

What the reference measures is not what an audit measures: BLS counts people by the sex and race
they report in a household survey, while an audit reads the *perceived* gender presentation (and
skin tone, age) of synthetic images. Comparing the two is what the literature does (Bloomberg 2023,
Luccioni et al. 2023), and a report must say so.

Every reference, built-in or the user's, becomes one tidy table (:data:`REFERENCE_COLUMNS`):
``profession`` (the prompt word), ``attribute``, ``value``, ``share`` (a fraction in [0, 1]),
``year``, ``source``, plus ``occupation`` (the BLS row), ``verified`` and ``note``. From the BLS
layout the attributes are ``gender`` (female = percent women; male the rest), ``race`` (white, black,
asian and other: BLS shows no other race groups, so "other" is the remainder, other races and
several races together) and ``ethnicity`` (hispanic, not hispanic: Hispanic or Latino people may
be of any race).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from synthscope.generators.portraits import PortraitDistribution

BUILTIN_SOURCES = ("bls-2023",)
MORE_OCCUPATIONS_CSV = "bls_cpsaat11_2023_more_occupations.csv"

REFERENCE_COLUMNS = ["profession", "attribute", "value", "share", "year", "source", "occupation", "verified",
                     "note"]
# A user's CSV in the tidy layout needs these; year, source, verified, note are optional.
TIDY_REQUIRED = ["profession", "attribute", "value", "share"]
# A user's CSV in the BLS layout (as the shipped files) needs these; the rest are optional.
BLS_REQUIRED = ["occupation", "percent_women", "percent_black", "percent_asian", "percent_hispanic"]
BLS_OPTIONAL = ["profession", "total_employed_thousands", "percent_white", "year", "source", "verified", "note"]

# Prompt word -> BLS CPS Table 11 occupation row. The first word of each occupation is its canonical
# prompt word (the `profession` of the tidy table when no professions are asked for).
# Choices that need a reason:
#   engineer       -> Civil engineers: BLS has no all-engineers row among its detailed occupations
#                     ("Engineers, all other" is a residual of the unlisted kinds); civil engineering
#                     is one of the largest engineering occupations, and the portraits world (hard
#                     hat, hi-vis vest) draws a site engineer. Same row as generators/resources.
#   teacher        -> Elementary and middle school teachers, the largest teaching row.
#   janitor        -> Janitors and building cleaners; housekeeper/maid -> Maids and housekeeping cleaners.
#   politician     -> Legislators (Bloomberg's "politician"); judge -> Judges, magistrates, and other
#                     judicial workers; social worker -> Child, family, and school social workers (BLS
#                     splits social workers over several rows; this is the largest).
#   fast-food worker -> Fast food and counter workers.
OCCUPATION_WORDS: dict[str, list[str]] = {
    "Physicians": ["doctor", "physician", "medical doctor"],
    "Registered nurses": ["nurse", "registered nurse"],
    "Civil engineers": ["engineer", "civil engineer"],
    "Chief executives": ["chief executive", "ceo", "chief executive officer", "executive"],
    "Janitors and building cleaners": ["janitor", "cleaner", "custodian", "building cleaner"],
    "Elementary and middle school teachers": ["teacher", "schoolteacher", "school teacher"],
    "Software developers": ["software developer", "software engineer", "developer", "programmer"],
    "Maids and housekeeping cleaners": ["housekeeper", "maid", "housekeeping cleaner"],
    "Architects, except landscape and naval": ["architect"],
    "Lawyers": ["lawyer", "attorney"],
    "Judges, magistrates, and other judicial workers": ["judge", "magistrate"],
    "Legislators": ["politician", "legislator"],
    "Cashiers": ["cashier"],
    "Dishwashers": ["dishwasher"],
    "Fast food and counter workers": ["fast-food worker", "fast food worker", "counter worker"],
    "Child, family, and school social workers": ["social worker"],
}
PROFESSION_TO_OCCUPATION: dict[str, str] = {word: occ for occ, words in OCCUPATION_WORDS.items() for word in words}
# Bloomberg's 14 jobs ("Humans are biased. Generative AI is even worse", 2023): 7 higher- and 7
# lower-paying; every one maps to a row above (judge and politician rows carry no values yet).
BLOOMBERG_JOBS = ["architect", "doctor", "engineer", "lawyer", "judge", "politician", "ceo",
                  "cashier", "dishwasher", "fast-food worker", "housekeeper", "janitor", "social worker",
                  "teacher"]


class ReferenceDataError(ValueError):
    """A reference source is unknown, or a reference CSV is unreadable or malformed (the message
    names the file, the line and the problem)."""


def normalise_profession(word: str) -> str:
    """Lower-case, collapse spaces and drop a leading article: ``" A  Doctor"`` -> ``"doctor"``."""
    text = re.sub(r"\s+", " ", str(word).strip().lower())
    return re.sub(r"^(a|an|the) ", "", text)


def occupation_for(profession: str) -> str | None:
    """The BLS occupation row a prompt word maps to (plurals too), or None when there is none."""
    word = normalise_profession(profession)
    for candidate in (word, word[:-1] if word.endswith("s") else None, word[:-2] if word.endswith("es") else None):
        if candidate and candidate in PROFESSION_TO_OCCUPATION:
            return PROFESSION_TO_OCCUPATION[candidate]
    return None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_reference(source: str | Path = "bls-2023", professions: Sequence[str] | None = None) -> pd.DataFrame:
    """The reference as a tidy table (:data:`REFERENCE_COLUMNS`), one row per profession, attribute, value.

    ``source``: ``"bls-2023"`` (built in) or the path of a CSV, either tidy (columns profession,
    attribute, value, share as a fraction; optional year, source, verified, note) or in the BLS layout
    of the shipped files (occupation, percent_women, percent_black, percent_asian, percent_hispanic;
    optional profession, percent_white, year, source, verified, note). ``professions``: the prompt
    words to return rows for, labelled as given (synonyms and plurals resolve through
    :data:`PROFESSION_TO_OCCUPATION`); a word without a row, or whose row has no values, gets no
    rows (see :func:`reference_coverage`). None: every profession the source has. A malformed CSV
    raises :class:`ReferenceDataError` naming the file, the line and the problem.
    """
    key = str(source).strip()
    if key.lower() in BUILTIN_SOURCES:
        table = _bls_to_tidy(_builtin_bls_rows(), "bls-2023")
    else:
        table = _load_user_csv(Path(source))
    return _select(table, professions)


def _builtin_bls_rows() -> pd.DataFrame:
    from synthscope.generators.portraits import BLS_COLUMNS, load_bls_reference

    shipped = load_bls_reference()
    path = resources.files(__package__).joinpath("resources", MORE_OCCUPATIONS_CSV)
    with path.open("r", encoding="utf-8") as handle:
        more = pd.read_csv(handle, keep_default_na=False, dtype=str)
    missing = [c for c in BLS_COLUMNS if c not in more.columns]
    if missing:  # a packaging error, not the user's
        raise ReferenceDataError(f"{MORE_OCCUPATIONS_CSV}: missing columns {missing}")
    rows = pd.concat([shipped.astype(str), more], ignore_index=True)
    return _check_bls_rows(rows, MORE_OCCUPATIONS_CSV, first_line=2)


def _load_user_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ReferenceDataError(f"{path}: reference file not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ReferenceDataError(f"{path}: not a readable CSV file ({error})") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if raw.empty:
        raise ReferenceDataError(f"{path}: the file has a header but no rows")
    looks_bls = "occupation" in raw.columns or any(c.startswith("percent_") for c in raw.columns)
    if looks_bls:
        missing = [c for c in BLS_REQUIRED if c not in raw.columns]
        if missing:
            raise ReferenceDataError(
                f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} for the BLS layout "
                f"(needs {', '.join(BLS_REQUIRED)}; optional {', '.join(BLS_OPTIONAL)})")
        rows = _check_bls_rows(raw, str(path), first_line=2)
        return _bls_to_tidy(rows, str(path))
    missing = [c for c in TIDY_REQUIRED if c not in raw.columns]
    if missing:
        raise ReferenceDataError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; a reference CSV needs the "
            f"columns {', '.join(TIDY_REQUIRED)} (optional: year, source, verified, note), or the BLS "
            f"layout ({', '.join(BLS_REQUIRED)})")
    return _check_tidy(raw, path)


def _number(text: str, where: str, low: float, high: float, what: str) -> float:
    """Parse one numeric cell; empty is NaN; outside [low, high] or not a number raises."""
    text = str(text).strip().replace(",", "")
    if text in ("", "-", "–", "—"):  # BLS prints a dash where it publishes no figure
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ReferenceDataError(f"{where}: {what} {text!r} is not a number") from None
    if not (low <= value <= high) or math.isnan(value):
        hint = " (shares are fractions in [0, 1]; was a percentage given?)" if what == "share" and value > 1 else ""
        raise ReferenceDataError(f"{where}: {what} {value:g} is outside [{low:g}, {high:g}]{hint}")
    return value


def _flag(text: str) -> bool:
    return str(text).strip().lower() in ("true", "1", "yes")


def _year(text: str, where: str) -> float:
    text = str(text).strip()
    if not text:
        return math.nan
    try:
        return float(int(float(text)))
    except ValueError:
        raise ReferenceDataError(f"{where}: year {text!r} is not a year") from None


def _check_bls_rows(rows: pd.DataFrame, file: str, first_line: int) -> pd.DataFrame:
    """Numeric percentages in [0, 100] (or empty), a non-empty occupation, optional columns filled."""
    out = []
    for i, row in enumerate(rows.to_dict("records")):
        where = f"{file}: line {first_line + i}"
        occupation = str(row.get("occupation", "")).strip()
        if not occupation:
            raise ReferenceDataError(f"{where}: empty occupation")
        record = {"occupation": occupation, "profession": normalise_profession(row.get("profession", "") or "")}
        for column in ("percent_women", "percent_white", "percent_black", "percent_asian", "percent_hispanic"):
            record[column] = _number(row.get(column, ""), where, 0.0, 100.0, column)
        race = [record[c] for c in ("percent_white", "percent_black", "percent_asian")]
        if not any(math.isnan(v) for v in race) and sum(race) > 100.5:
            raise ReferenceDataError(f"{where}: percent_white + percent_black + percent_asian = {sum(race):.1f} > 100")
        record["year"] = _year(row.get("year", ""), where)
        record["source"] = str(row.get("source", "") or file)
        record["verified"] = _flag(row.get("verified", ""))
        record["note"] = str(row.get("note", "") or "")
        out.append(record)
    return pd.DataFrame(out)


def _bls_to_tidy(rows: pd.DataFrame, file: str) -> pd.DataFrame:
    """BLS layout -> tidy rows labelled with the row's own profession word, else the canonical prompt
    word of its occupation (rows of occupations no prompt word maps to are left out)."""
    canonical = {occ.lower(): words[0] for occ, words in OCCUPATION_WORDS.items()}
    records = []
    for row in rows.to_dict("records"):
        word = row["profession"] or canonical.get(row["occupation"].lower(), "")
        words = [word] if word else []
        women, white, black, asian, hispanic = (row[c] for c in ("percent_women", "percent_white",
                                                                 "percent_black", "percent_asian",
                                                                 "percent_hispanic"))
        values: list[tuple[str, str, float]] = []
        if not math.isnan(women):
            values += [("gender", "female", women / 100), ("gender", "male", 1 - women / 100)]
        if not any(math.isnan(v) for v in (white, black, asian)):
            # BLS shows white, Black and Asian only: the remainder is other races and several races.
            other = max(0.0, 100.0 - white - black - asian)
            values += [("race", "white", white / 100), ("race", "black", black / 100),
                       ("race", "asian", asian / 100), ("race", "other", other / 100)]
        if not math.isnan(hispanic):
            values += [("ethnicity", "hispanic", hispanic / 100), ("ethnicity", "not hispanic", 1 - hispanic / 100)]
        for word in words:
            for attribute, value, share in values:
                records.append({"profession": word, "attribute": attribute, "value": value, "share": share,
                                "year": row["year"], "source": row["source"], "occupation": row["occupation"],
                                "verified": row["verified"], "note": row["note"]})
    table = pd.DataFrame(records, columns=REFERENCE_COLUMNS)
    return table.astype({"share": float, "year": float, "verified": bool})


def _check_tidy(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    records = []
    seen: dict[tuple[str, str, str], int] = {}
    for i, row in enumerate(raw.to_dict("records")):
        line = i + 2  # line 1 is the header
        where = f"{path}: line {line}"
        key = []
        for column in ("profession", "attribute", "value"):
            text = str(row[column]).strip()
            if not text:
                raise ReferenceDataError(f"{where}: empty {column}")
            key.append(text)
        key[0] = normalise_profession(key[0])
        key_t = (key[0], key[1], key[2])
        if key_t in seen:
            raise ReferenceDataError(f"{where}: duplicate row for profession {key[0]!r}, {key[1]}={key[2]!r} "
                                     f"(first on line {seen[key_t]})")
        seen[key_t] = line
        share = _number(row["share"], where, 0.0, 1.0, "share")
        if math.isnan(share):
            raise ReferenceDataError(f"{where}: empty share")
        records.append({"profession": key[0], "attribute": key[1], "value": key[2], "share": share,
                        "year": _year(row.get("year", ""), where),
                        "source": str(row.get("source", "") or path),
                        "occupation": str(row.get("occupation", "") or ""),
                        "verified": _flag(row.get("verified", "")), "note": str(row.get("note", "") or ""),
                        "_line": line})
    table = pd.DataFrame(records)
    sums = table.groupby(["profession", "attribute"], sort=False)["share"].sum()
    over = sums[sums > 1.0 + 1e-6]
    if len(over):
        (profession, attribute), total = next(iter(over.items()))
        lines = table.loc[(table.profession == profession) & (table.attribute == attribute), "_line"].tolist()
        raise ReferenceDataError(f"{path}: lines {', '.join(map(str, lines))}: the shares of {attribute} for "
                                 f"profession {profession!r} sum to {total:.4g}, more than 1")
    return table.drop(columns="_line")[REFERENCE_COLUMNS].astype({"share": float, "year": float, "verified": bool})


def _select(table: pd.DataFrame, professions: Sequence[str] | None) -> pd.DataFrame:
    if professions is None:
        return table.reset_index(drop=True)
    own = set(table["profession"])
    parts = []
    for word in professions:
        key = normalise_profession(word)
        if key in own:
            rows = table[table["profession"] == key]
        else:
            occupation = occupation_for(word)
            rows = table[table["occupation"] == occupation] if occupation else table.iloc[:0]
            # One copy of the occupation's values, relabelled with the caller's word.
            rows = rows.drop_duplicates(["attribute", "value"])
        parts.append(rows.assign(profession=word))
    if not parts:
        return table.iloc[:0].reset_index(drop=True)
    return pd.concat(parts, ignore_index=True)


def reference_coverage(reference: pd.DataFrame, professions: Iterable[str]) -> pd.DataFrame:
    """Which prompt words the reference covers: columns profession, occupation (BLS row or empty),
    attributes (comma list) and status ("ok", "no BLS row for this word", "no values in reference")."""
    rows = []
    for word in professions:
        mine = reference[reference["profession"] == word]
        occupation = occupation_for(word) or ""
        if len(mine):
            status = "ok"
            occupation = str(mine["occupation"].iloc[0]) or occupation
        elif occupation:
            status = "no values in reference"
        else:
            status = "no BLS row for this word"
        rows.append({"profession": word, "occupation": occupation,
                     "attributes": ", ".join(dict.fromkeys(mine["attribute"])), "status": status})
    return pd.DataFrame(rows, columns=["profession", "occupation", "attributes", "status"])


def training_world_reference(distribution: PortraitDistribution | None = None) -> pd.DataFrame:
    """The true attribute shares of a portraits training world, as a tidy reference table.

    ``distribution``: a :class:`~synthscope.generators.portraits.PortraitDistribution` (default: the
    BLS-based world). Use it to ask whether a model amplifies the skew of its own training data, the
    other amplification the audit reports. ``verified`` is true: the shares are exact by construction.
    """
    from synthscope.generators.portraits import PortraitDistribution

    world = PortraitDistribution.from_labour_statistics() if distribution is None else distribution
    shares = world.expected_shares().rename(columns={"expected_share": "share"})
    notes = "; ".join(world.notes)
    shares["year"] = math.nan
    shares["source"] = "portraits training world"
    shares["occupation"] = ""
    shares["verified"] = True
    shares["note"] = notes
    return shares[REFERENCE_COLUMNS].astype({"share": float, "year": float, "verified": bool})
