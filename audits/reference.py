"""Reference statistics an audit compares its images with, and the map from prompt words to them.

The built-in reference, ``"bls-2022"``, is the U.S. Bureau of Labor Statistics, Current Population
Survey, table 11 (employed persons by detailed occupation, sex, race, and Hispanic or Latino
ethnicity, 2022 annual averages, https://www.bls.gov/cps/aa2022/cpsaat11.htm). The table ships whole,
byte for byte as BLS exports it, on the generators side (``generators/resources/bls/``, read by
:mod:`synthscope.generators.labour`, which the portraits world uses too). A prompt word maps to one
or more of its detailed rows (:data:`~synthscope.generators.labour.PROFESSION_ROWS`: "doctor" is the
four physician rows of the 2018 occupation codes, "engineer" every detailed engineer row); several
rows are combined, weighted by employment, and rows BLS does not publish (base under 50,000) are
skipped and named in the ``note``. Its figures are the published ones (``verified`` is true).

The earlier built-in ``"bls-2023"`` figures were transcribed from memory and never checked; they were
removed, and a spec or call that names them gets one error saying so (:data:`REMOVED_SOURCES`).

What the reference measures is not what an audit measures: BLS counts people by the sex and race
they report in a household survey, while an audit reads the *perceived* gender presentation (and
skin tone, age) of synthetic images. Comparing the two is what the literature does (Bloomberg 2023,
Luccioni et al. 2023), and a report must say so.

Every reference, built-in or the user's, becomes one tidy table (:data:`REFERENCE_COLUMNS`):
``profession`` (the prompt word), ``attribute``, ``value``, ``share`` (a fraction in [0, 1]),
``year``, ``source``, plus ``occupation`` (the table rows behind the figure, "; " between them),
``verified`` and ``note``. From the BLS layout the attributes are ``gender`` (female = percent women;
male the rest), ``race`` (white, black, asian and other: BLS shows no other race groups, so "other"
is the remainder, other races and several races together) and ``ethnicity`` (hispanic, not
hispanic: Hispanic or Latino people may be of any race). A word with no row, or whose rows are all
unpublished, gets no rows: :func:`reference_coverage` reports it, with the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from synthscope.errors import UserError
from synthscope.generators import labour

if TYPE_CHECKING:
    from synthscope.generators.portraits import PortraitDistribution

BUILTIN_SOURCES = ("bls-2022",)
REMOVED_SOURCES = {
    "bls-2023": "the 'bls-2023' reference figures were transcribed from memory, never checked against the "
                "published table, and have been removed; use \"bls-2022\" (BLS CPS table 11, 2022 annual "
                "averages, shipped as BLS publishes it) or the path of your own CSV",
}
STABLE_BIAS_FILE = "stable_bias_professions.txt"

REFERENCE_COLUMNS = ["profession", "attribute", "value", "share", "year", "source", "occupation", "verified",
                     "note"]
# A user's CSV in the tidy layout needs these; year, source, verified, note are optional.
TIDY_REQUIRED = ["profession", "attribute", "value", "share"]
# A user's CSV in the BLS layout (one row per occupation) needs these; the rest are optional.
BLS_REQUIRED = ["occupation", "percent_women", "percent_black", "percent_asian", "percent_hispanic"]
BLS_OPTIONAL = ["profession", "total_employed_thousands", "percent_white", "year", "source", "verified", "note"]
_PERCENTS = ["percent_women", "percent_white", "percent_black", "percent_asian", "percent_hispanic"]

# Bloomberg's 14 jobs ("Humans are biased. Generative AI is even worse", 2023): 7 higher- and 7
# lower-paying. Every one maps to rows of the table; "politician" (Legislators) is not published.
BLOOMBERG_JOBS = ["architect", "doctor", "engineer", "lawyer", "judge", "politician", "ceo",
                  "cashier", "dishwasher", "fast-food worker", "housekeeper", "janitor", "social worker",
                  "teacher"]

# reference_coverage statuses
COVERED = "ok"
NOT_PUBLISHED = "not published (base under 50,000)"
NO_VALUES = "no values in reference"
NO_ROW = "no row for this word"


class ReferenceDataError(UserError):
    """A reference source is unknown, or a reference CSV is unreadable or malformed (the message
    names the file, the line and the problem)."""


def normalise_profession(word: str) -> str:
    """Lower-case, collapse spaces and drop a leading article: ``" A  Doctor"`` -> ``"doctor"``."""
    text = re.sub(r"\s+", " ", str(word).strip().lower())
    return re.sub(r"^(a|an|the) ", "", text)


def occupations_for(profession: str) -> tuple[str, ...]:
    """The rows of BLS CPS table 11 (2022) a prompt word stands for (synonyms and plurals too), in
    the table's titles; empty when none. Some may be unpublished (see :func:`reference_coverage`)."""
    return labour.rows_for(profession)


def occupation_for(profession: str) -> str | None:
    """The table rows a prompt word stands for, as one text ("; " between rows), or None."""
    rows = occupations_for(profession)
    return "; ".join(rows) if rows else None


def stable_bias_professions() -> list[str]:
    """The profession words of the Stable Bias study (Luccioni et al. 2023), as shipped with their
    source in ``resources/stable_bias_professions.txt``."""
    text = resources.files(__package__).joinpath("resources", STABLE_BIAS_FILE).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_reference(source: str | Path = "bls-2022", professions: Sequence[str] | None = None) -> pd.DataFrame:
    """The reference as a tidy table (:data:`REFERENCE_COLUMNS`), one row per profession, attribute, value.

    ``source``: ``"bls-2022"`` (built in) or the path of a CSV, either tidy (columns profession,
    attribute, value, share as a fraction; optional year, source, verified, note) or in the BLS layout
    (one row per occupation: occupation, percent_women, percent_black, percent_asian,
    percent_hispanic; optional profession, total_employed_thousands, percent_white, year, source,
    verified, note). ``professions``: the prompt words to return rows for, labelled as given
    (synonyms and plurals resolve through :func:`occupations_for`; where a word stands for several
    rows of a BLS-layout table they are combined, weighted by ``total_employed_thousands``); a word
    without a row, or whose rows have no values, gets no rows (see :func:`reference_coverage`).
    None: every profession the source has. A malformed CSV raises :class:`ReferenceDataError` naming
    the file, the line and the problem; so does a removed source such as ``"bls-2023"``.
    """
    key = str(source).strip().lower()
    if key in REMOVED_SOURCES:
        raise ReferenceDataError(f"reference {str(source).strip()!r}: {REMOVED_SOURCES[key]}")
    if key in BUILTIN_SOURCES:
        words = labour.mapped_words() if professions is None else list(professions)
        figures = labour.profession_figures(words)
        records = [(row["profession"], row) for row in figures.to_dict("records")]
        return _wide_to_tidy(records)
    kind, table = _load_user_csv(Path(source))
    if kind == "bls":
        return _wide_to_tidy(_select_bls(table, professions, str(source)))
    return _select(table, professions)


def _load_user_csv(path: Path) -> tuple[str, pd.DataFrame]:
    """("bls", one checked row per occupation) or ("tidy", the tidy table)."""
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
        return "bls", _check_bls_rows(raw, str(path), first_line=2)
    missing = [c for c in TIDY_REQUIRED if c not in raw.columns]
    if missing:
        raise ReferenceDataError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; a reference CSV needs the "
            f"columns {', '.join(TIDY_REQUIRED)} (optional: year, source, verified, note), or the BLS "
            f"layout ({', '.join(BLS_REQUIRED)})")
    return "tidy", _check_tidy(raw, path)


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
        record = {"occupation": occupation, "profession": normalise_profession(row.get("profession", "") or ""),
                  "total_employed_thousands": _number(row.get("total_employed_thousands", ""), where, 0.0, math.inf,
                                                      "total_employed_thousands")}
        for column in _PERCENTS:
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


def _wide_to_tidy(records: Iterable[tuple[str, dict]]) -> pd.DataFrame:
    """(label, one row in the BLS layout) pairs -> tidy rows labelled as given; a missing percentage
    leaves its attribute out (a row with none published gives no rows)."""
    out = []
    for word, row in records:
        women, white, black, asian, hispanic = (float(row[c]) for c in _PERCENTS)
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
        for attribute, value, share in values:
            out.append({"profession": word, "attribute": attribute, "value": value, "share": share,
                        "year": row["year"], "source": row["source"], "occupation": row["occupation"],
                        "verified": bool(row["verified"]), "note": row["note"]})
    table = pd.DataFrame(out, columns=REFERENCE_COLUMNS)
    return table.astype({"share": float, "year": float, "verified": bool})


def _select_bls(rows: pd.DataFrame, professions: Sequence[str] | None, file: str) -> list[tuple[str, dict]]:
    """The rows of a BLS-layout CSV for each prompt word: the rows naming the word in their
    ``profession`` column, else the rows :func:`occupations_for` maps it to; several are combined,
    weighted by ``total_employed_thousands``. ``professions`` None: every row that names its word, or
    whose occupation is the single row of a prompt word."""
    records = rows.to_dict("records")
    titled = {labour.normalise_word(r["occupation"]): r for r in records}
    if professions is None:
        single = {}
        for word in labour.mapped_words():
            mapped = occupations_for(word)
            if len(mapped) == 1:
                single.setdefault(labour.normalise_word(mapped[0]), word)
        out = []
        for record in records:
            word = record["profession"] or single.get(labour.normalise_word(record["occupation"]), "")
            if word:
                out.append((word, record))
        return out
    out = []
    for word in professions:
        key = normalise_profession(word)
        mine = [r for r in records if r["profession"] and r["profession"] == key]
        if not mine:
            mine = [titled[t] for t in (labour.normalise_word(o) for o in occupations_for(word)) if t in titled]
        if mine:
            out.append((word, _combine_user_rows(mine, word, file)))
    return out


def _combine_user_rows(rows: list[dict], word: str, file: str) -> dict:
    """One row from several rows of a user's BLS-layout table, weighted by employment."""
    if len(rows) == 1:
        return rows[0]
    published = [r for r in rows if not all(math.isnan(r[c]) for c in _PERCENTS)]
    skipped = [r["occupation"] for r in rows if r not in published]
    unweighted = [r["occupation"] for r in published if math.isnan(r["total_employed_thousands"])]
    if unweighted:
        titles = "; ".join(r["occupation"] for r in rows)
        raise ReferenceDataError(f"{file}: {len(rows)} rows stand for {word!r} ({titles}) "
                                 f"and {'; '.join(unweighted)} has no total_employed_thousands to weight them by")
    combined = dict(published[0]) if published else dict(rows[0])
    for column in _PERCENTS:
        part = [(r[column], r["total_employed_thousands"]) for r in published if not math.isnan(r[column])]
        weight = sum(w for _, w in part)
        combined[column] = sum(v * w for v, w in part) / weight if weight > 0 else math.nan
    notes = [f"{len(published)} rows combined, weighted by employment"] if len(published) > 1 else []
    if skipped:
        notes.append(f"{'; '.join(skipped)}: no figures")
    notes += [r["note"] for r in published if r["note"]]
    combined.update(occupation="; ".join(r["occupation"] for r in published), note=". ".join(notes),
                    total_employed_thousands=sum(r["total_employed_thousands"] for r in published),
                    verified=all(r["verified"] for r in published) if published else False)
    return combined


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
    """Rows of a tidy table for each prompt word: its own rows, else those of the one occupation the
    word maps to (when the table names occupations), relabelled with the caller's word."""
    if professions is None:
        return table.reset_index(drop=True)
    own = set(table["profession"])
    parts = []
    for word in professions:
        key = normalise_profession(word)
        if key in own:
            rows = table[table["profession"] == key]
        else:
            mapped = {labour.normalise_word(o) for o in occupations_for(word)}
            titles = table["occupation"].astype(str).map(labour.normalise_word)
            rows = table[titles.isin(mapped) & (titles != "")] if mapped else table.iloc[:0]
            if rows["occupation"].nunique() > 1:  # several occupations and no weights: not combined
                rows = rows.iloc[:0]
            # One copy of the occupation's values, relabelled with the caller's word.
            rows = rows.drop_duplicates(["attribute", "value"])
        parts.append(rows.assign(profession=word))
    if not parts:
        return table.iloc[:0].reset_index(drop=True)
    return pd.concat(parts, ignore_index=True)


def reference_coverage(reference: pd.DataFrame, professions: Iterable[str],
                       builtin: bool | None = None) -> pd.DataFrame:
    """Which prompt words the reference covers, and why not where it does not.

    Columns: profession; occupation (the table rows behind the figure, or the rows the word maps to
    when it has no figure); attributes (comma list); status: :data:`COVERED` ("ok"),
    :data:`NOT_PUBLISHED` (the word's rows of the built-in BLS table are all unpublished, e.g.
    "politician": Legislators), :data:`NO_VALUES` (the word maps to table rows, but this reference has
    no values for it) or :data:`NO_ROW` (no row of the table stands for the word); note: how the
    figure was made (rows combined, rows skipped), or the reason there is none. ``builtin``: whether
    ``reference`` is the built-in table (None: judged from its ``source`` column; an empty table counts
    as built in).
    """
    if builtin is None:
        builtin = reference.empty or set(reference["source"].astype(str)) <= {labour.BLS_SOURCE}
    shipped = labour.read_bls_table().set_index("occupation")["published"]
    rows = []
    for word in professions:
        mine = reference[reference["profession"] == word]
        mapped = occupations_for(word)
        if len(mine):
            first = mine.iloc[0]
            status = COVERED
            occupation = str(first["occupation"]) if "occupation" in mine and pd.notna(first["occupation"]) else ""
            note = str(first["note"]) if "note" in mine and pd.notna(first["note"]) else ""
        elif mapped:
            occupation = "; ".join(mapped)
            unpublished = not any(bool(shipped.get(row, False)) for row in mapped)
            if builtin and unpublished:
                status, note = NOT_PUBLISHED, f"{occupation}: {labour.NOT_PUBLISHED}"
            else:
                status, note = NO_VALUES, ""
        else:
            occupation = ""
            status = NO_ROW
            note = labour.NO_ROW_REASONS.get(labour.normalise_word(word), "")
        rows.append({"profession": word, "occupation": occupation,
                     "attributes": ", ".join(dict.fromkeys(mine["attribute"])), "status": status, "note": note})
    return pd.DataFrame(rows, columns=["profession", "occupation", "attributes", "status", "note"])


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
