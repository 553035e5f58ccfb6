"""US labour statistics shipped with the package, and the map from prompt words to their rows.

The table is BLS CPS table 11, "Employed persons by detailed occupation, sex, race, and Hispanic or
Latino ethnicity", 2022 annual averages (https://www.bls.gov/cps/aa2022/cpsaat11.htm), shipped byte
for byte as BLS exports it in ``resources/bls/cpsaat11_2022.csv`` with its provenance note
(``resources/bls/README.md``). :func:`read_bls_table` parses that export (or another year's, same
layout); :data:`PROFESSION_ROWS` says which rows a prompt word stands for; :func:`combine_rows` and
:func:`profession_figures` turn one or several rows into one figure per word.

Reading the export takes care of its quirks: a UTF-8 byte-order mark; a header whose title and column
names span several lines inside quoted cells; thousands separators ("1,780"); an en dash ("–") where
BLS publishes no figure (an employment base under 50,000); blank separator rows; the closing NOTE
row. Race groups do not sum to 100 (other races and several races are not shown) and Hispanic or
Latino people may be of any race; both are kept as published.

The table mixes aggregate rows ("Total, 16 years and over", "Management occupations", ...) with
detailed occupations. The export does not mark which is which (the web page indents them), so the
aggregate titles and their parents are listed here (:data:`AGGREGATE_PARENTS`, the layout of the
2018 occupation codes used from 2020 on) and checked against the figures: each aggregate's employment
must equal the sum of its children's up to rounding. Prompt words map to detailed rows only.

These figures count people by the sex and race they report in a household survey; they say nothing
about how anyone looks. Mapping them onto a picture (as the portraits world does) is a
simplification that must be stated wherever it is used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from synthscope.errors import UserError

BLS_TABLE_FILE = "cpsaat11_2022.csv"
BLS_TABLE_YEAR = 2022
BLS_TABLE_URL = "https://www.bls.gov/cps/aa2022/cpsaat11.htm"
BLS_TABLE_SHA256 = "f751ef09487068c3a1e0928b020c0235b9cb33b1f698e9c411f89f8853d367a8"
BLS_TABLE_TITLE = "Employed persons by detailed occupation, sex, race, and Hispanic or Latino ethnicity"
BLS_SOURCE = (f"U.S. Bureau of Labor Statistics, Current Population Survey, table 11: {BLS_TABLE_TITLE}, "
              f"{BLS_TABLE_YEAR} annual averages, {BLS_TABLE_URL}")
NOT_PUBLISHED = "not published (base under 50,000)"

PERCENT_COLUMNS = ["percent_women", "percent_white", "percent_black", "percent_asian", "percent_hispanic"]
TABLE_COLUMNS = ["line", "occupation", "total_employed_thousands", *PERCENT_COLUMNS, "published", "is_aggregate",
                 "depth", "parent", "year", "source", "verified"]
FIGURE_COLUMNS = ["profession", "occupation", "total_employed_thousands", *PERCENT_COLUMNS, "year", "source",
                  "verified", "note", "rows_not_published"]

# The column headings of the export, whitespace collapsed (they span lines inside quoted cells).
_HEADINGS = ["Total employed", "Women", "White", "Black or African American", "Asian", "Hispanic or Latino"]
_DASHES = ("–", "—", "-")

# Aggregate rows of table 11 (2018 occupation codes, tables for 2020 on) -> the aggregate they belong
# to. Every other row is a detailed occupation, a child of the aggregate row above it.
_TOTAL = "Total, 16 years and over"
_MPR = "Management, professional, and related occupations"
_MBF = "Management, business, and financial operations occupations"
_PRO = "Professional and related occupations"
_SERVICE = "Service occupations"
_SALES_OFFICE = "Sales and office occupations"
_NRCM = "Natural resources, construction, and maintenance occupations"
_PTM = "Production, transportation, and material moving occupations"
AGGREGATE_PARENTS: dict[str, str | None] = {
    _TOTAL: None,
    _MPR: _TOTAL,
    _MBF: _MPR,
    "Management occupations": _MBF,
    "Business and financial operations occupations": _MBF,
    _PRO: _MPR,
    "Computer and mathematical occupations": _PRO,
    "Architecture and engineering occupations": _PRO,
    "Life, physical, and social science occupations": _PRO,
    "Community and social service occupations": _PRO,
    "Legal occupations": _PRO,
    "Education, training, and library occupations": _PRO,
    "Arts, design, entertainment, sports, and media occupations": _PRO,
    "Healthcare practitioners and technical occupations": _PRO,
    _SERVICE: _TOTAL,
    "Healthcare support occupations": _SERVICE,
    "Protective service occupations": _SERVICE,
    "Food preparation and serving related occupations": _SERVICE,
    "Building and grounds cleaning and maintenance occupations": _SERVICE,
    "Personal care and service occupations": _SERVICE,
    _SALES_OFFICE: _TOTAL,
    "Sales and related occupations": _SALES_OFFICE,
    "Office and administrative support occupations": _SALES_OFFICE,
    _NRCM: _TOTAL,
    "Farming, fishing, and forestry occupations": _NRCM,
    "Construction and extraction occupations": _NRCM,
    "Installation, maintenance, and repair occupations": _NRCM,
    _PTM: _TOTAL,
    "Production occupations": _PTM,
    "Transportation and material moving occupations": _PTM,
}


class LabourTableError(UserError):
    """A labour table is unreadable or not laid out as BLS CPS table 11 (the message names the file,
    the line and the problem)."""


def _squash(text: str) -> str:
    """Whitespace (line breaks inside quoted cells, doubled spaces) collapsed to single spaces."""
    return re.sub(r"\s+", " ", str(text)).strip()


# --------------------------------------------------------------------------------------------
# Reading the export
# --------------------------------------------------------------------------------------------


def shipped_table_path():
    """The shipped export (a :mod:`importlib.resources` traversable; ``.read_bytes()`` reads it)."""
    return resources.files(__package__).joinpath("resources", "bls", BLS_TABLE_FILE)


def shipped_table_sha256() -> str:
    """The SHA-256 of the shipped export (it must be :data:`BLS_TABLE_SHA256`)."""
    return hashlib.sha256(shipped_table_path().read_bytes()).hexdigest()


def read_bls_table(path: str | Path | None = None) -> pd.DataFrame:
    """BLS CPS table 11 as a data frame, one row per occupation row of the export, in its order.

    ``path``: a CSV export of the table as BLS publishes it (default: the shipped 2022 table).
    Columns (:data:`TABLE_COLUMNS`): ``line`` (where the row is in the file), ``occupation`` (the row
    title, whitespace collapsed), ``total_employed_thousands``, the five ``percent_*`` columns (NaN
    where BLS prints a dash), ``published`` (all five percentages given), ``is_aggregate`` (a total or
    group row, not a detailed occupation), ``depth`` (0 for the total), ``parent`` (the aggregate
    row it belongs to), ``year``, ``source`` and ``verified`` (true: the figures are the published
    table's). Raises :class:`LabourTableError` naming the file and line when the file is not this
    table or a cell is not a number.
    """
    if path is None:
        return _shipped_table().copy()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LabourTableError(f"{path}: cannot read the labour table ({error.strerror or error})") from None
    return _parse(data, str(path), source=None)


@lru_cache(maxsize=1)
def _shipped_table() -> pd.DataFrame:
    return _parse(shipped_table_path().read_bytes(), BLS_TABLE_FILE, source=BLS_SOURCE)


def _parse(data: bytes, name: str, source: str | None) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")  # the export starts with a byte-order mark
    except UnicodeDecodeError as error:
        raise LabourTableError(f"{name}: not UTF-8 text ({error})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []  # (first line of the record, cells)
    line = 1
    try:
        for cells in reader:
            records.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as error:
        raise LabourTableError(f"{name}: line {line}: not readable as CSV ({error})") from None
    year, start = _check_header(records, name)
    source = source or f"BLS CPS table 11 ({year} annual averages), {name}"
    rows: list[dict] = []
    parents: dict[str, str | None] = {}
    current: str | None = None
    for line, cells in records[start:]:
        if not any(c.strip() for c in cells):
            continue  # blank separator rows
        title = _squash(cells[0])
        if title.upper().startswith("NOTE"):
            break  # the closing note: race groups do not sum to totals, Hispanic of any race, dashes
        if len(cells) < 7:
            raise LabourTableError(f"{name}: line {line}: expected 7 columns (occupation, total employed, "
                                   f"5 percentages), found {len(cells)}")
        where = f"{name}: line {line}"
        total = _cell(cells[1], where, "total employed", 0.0, math.inf)
        if math.isnan(total):
            raise LabourTableError(f"{where}: total employed is missing for {title!r}")
        percents = [_cell(cells[i], where, column, 0.0, 100.0) for i, column in enumerate(PERCENT_COLUMNS, start=2)]
        aggregate = title in AGGREGATE_PARENTS
        if aggregate:
            parent = AGGREGATE_PARENTS[title]
            if parent is not None and parent not in parents:
                raise LabourTableError(f"{where}: group {title!r} comes before its group {parent!r}")
            parents[title] = parent
            current = title
        else:
            if current is None:
                raise LabourTableError(f"{where}: occupation {title!r} comes before the first group row")
            parent = current
        rows.append({"line": line, "occupation": title, "total_employed_thousands": total,
                     **dict(zip(PERCENT_COLUMNS, percents)),
                     "published": not any(math.isnan(p) for p in percents), "is_aggregate": aggregate,
                     "parent": parent or "", "year": year, "source": source, "verified": True})
    missing = [t for t in AGGREGATE_PARENTS if t not in parents]
    if missing:
        raise LabourTableError(f"{name}: not the layout of CPS table 11 (2018 occupation codes) this reader knows: "
                               f"no row for {', '.join(repr(m) for m in missing[:3])}"
                               + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    table = pd.DataFrame(rows)
    doubled = table["occupation"][table["occupation"].duplicated()]
    if len(doubled):
        raise LabourTableError(f"{name}: occupation {doubled.iloc[0]!r} appears twice")
    depth = {title: 0 for title in parents}
    for title in parents:  # parents come first, so one pass in table order suffices
        depth[title] = 0 if parents[title] is None else depth[parents[title]] + 1
    table["depth"] = [depth[o] if a else depth[p] + 1 for o, a, p in
                      zip(table["occupation"], table["is_aggregate"], table["parent"])]
    _check_sums(table, name)
    return table[TABLE_COLUMNS]


def _check_header(records: list[tuple[int, list[str]]], name: str) -> tuple[int, int]:
    """The year of the table and the index of the first record after the header."""
    if not records:
        raise LabourTableError(f"{name}: the file is empty")
    if BLS_TABLE_TITLE.lower() not in _squash(" ".join(records[0][1])).lower():
        raise LabourTableError(f"{name}: line 1: not BLS CPS table 11 (the title should read "
                               f"'11. {BLS_TABLE_TITLE}')")
    for i, (line, cells) in enumerate(records[:12]):
        if cells and _squash(cells[0]) == "Occupation":
            year_text = _squash(cells[1]) if len(cells) > 1 else ""
            if not re.fullmatch(r"\d{4}", year_text):
                raise LabourTableError(f"{name}: line {line}: expected the year after 'Occupation', found "
                                       f"{year_text!r}")
            names = [_squash(c) for r in records[i + 1:i + 3] for c in r[1] if _squash(c)]
            names = [n for n in names if n != "Percent of total employed"]
            if names != _HEADINGS:
                raise LabourTableError(f"{name}: line {records[i + 1][0]}: expected the columns "
                                       f"{', '.join(_HEADINGS)}; found {', '.join(names) or 'none'}")
            return int(year_text), i + 3
    raise LabourTableError(f"{name}: no header row starting with 'Occupation' in the first lines")


def _cell(text: str, where: str, what: str, low: float, high: float) -> float:
    text = str(text).strip()
    if text in _DASHES:
        return math.nan  # BLS publishes no figure (base under 50,000)
    try:
        value = float(text.replace(",", ""))  # thousands separators: "1,780"
    except ValueError:
        raise LabourTableError(f"{where}: {what} {text!r} is not a number") from None
    if not low <= value <= high:
        raise LabourTableError(f"{where}: {what} {value:g} is outside [{low:g}, {high:g}]")
    return value


def _check_sums(table: pd.DataFrame, name: str) -> None:
    """Each aggregate's employment is the sum of its children's, up to rounding (each figure is
    rounded to the nearest thousand, so the sum of n children may be off by (n + 1) / 2)."""
    children = table.groupby("parent")["total_employed_thousands"].agg(["sum", "count"])
    for row in table[table["is_aggregate"]].itertuples():
        if row.occupation not in children.index:
            raise LabourTableError(f"{name}: line {row.line}: group {row.occupation!r} has no rows under it")
        total, count = children.loc[row.occupation]
        if abs(total - row.total_employed_thousands) > (count + 1) / 2:
            raise LabourTableError(f"{name}: line {row.line}: the {int(count)} rows under {row.occupation!r} "
                                   f"employ {total:,.0f} thousand, the group row says "
                                   f"{row.total_employed_thousands:,.0f}; not the layout this reader knows")


# --------------------------------------------------------------------------------------------
# Prompt words -> rows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowsMatching:
    """Every detailed row under the aggregate ``group`` whose title matches ``pattern`` (a regular
    expression, case-insensitive): for generic words such as "manager" or "clerk"."""

    group: str
    pattern: str

    def resolve(self, table: pd.DataFrame) -> tuple[str, ...]:
        detailed = table[~table["is_aggregate"]]
        under = set(_descendants(table, self.group))
        found = [o for o in detailed["occupation"] if o in under and re.search(self.pattern, o, re.IGNORECASE)]
        return tuple(found)


def _descendants(table: pd.DataFrame, group: str) -> list[str]:
    children: dict[str, list[str]] = {}
    for occupation, parent in zip(table["occupation"], table["parent"]):
        children.setdefault(parent, []).append(occupation)
    out, todo = [], [group]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


_PHYSICIANS = ("Emergency medicine physicians", "Radiologists", "Other physicians", "Surgeons")
_SOCIAL_WORKERS = ("Child, family, and school social workers", "Healthcare social workers",
                   "Mental health and substance abuse social workers", "Social workers, all other")
_WAITERS = ("Waiters and waitresses",)
_HOSTS = ("Hosts and hostesses, restaurant, lounge, and coffee shop",)

# Prompt word -> the detailed rows of table 11 (2018 codes) it stands for. Several rows are combined,
# weighted by their employment (total employed); rows BLS does not publish are skipped and listed.
# Choices that need a reason:
#   doctor      -> all four physician rows: the 2018 codes have no single physicians row.
#   engineer    -> every detailed engineer row of "Architecture and engineering occupations": no row
#                  counts all engineers, and a prompt saying "engineer" names none of the kinds, so
#                  the honest figure is all of them together, each weighted by how many people it
#                  employs ("Engineers, all other", the residual of unlisted kinds, is one of them).
#                  Technicians and drafters are not engineers; sales, stationary, locomotive and ship
#                  engineers are other occupations elsewhere in the table. A named kind maps to its
#                  own row ("civil engineer" -> Civil engineers). The portraits world draws its
#                  engineer with a hard hat, but its shares follow this all-engineers figure.
#   nurse       -> registered, licensed practical / vocational, practitioner, anesthetist and midwife
#                  nurses: everyday "nurse" covers them all; "registered nurse" is the one row.
#   teacher     -> the four school-teacher rows (preschool and kindergarten, elementary and middle,
#                  secondary, special education); postsecondary teachers are what a prompt calls a
#                  professor, and "Other teachers and instructors" are mostly not school teachers.
#   manager, supervisor, clerk, designer, scientist, therapist, aide, office worker: generic words,
#                  every detailed row whose title names them (see RowsMatching below).
#   mechanic    -> the vehicle mechanic rows; "machinery mechanic" and "plane mechanic" have their own.
#   painter     -> Painters and paperhangers (the trade); an artist who paints is under "artist".
#   director    -> Producers and directors (film and stage), the row that names directors generally.
#   politician  -> Legislators, whose figures BLS does not publish (base under 50,000).
PROFESSION_ROWS: dict[str, tuple[str, ...] | RowsMatching] = {
    # the portraits world's eight professions
    "doctor": _PHYSICIANS,
    "nurse": ("Registered nurses", "Licensed practical and licensed vocational nurses", "Nurse practitioners",
              "Nurse anesthetists", "Nurse midwives"),
    "engineer": ("Aerospace engineers", "Agricultural engineers", "Bioengineers and biomedical engineers",
                 "Chemical engineers", "Civil engineers", "Computer hardware engineers",
                 "Electrical and electronics engineers", "Environmental engineers",
                 "Industrial engineers, including health and safety", "Marine engineers and naval architects",
                 "Materials engineers", "Mechanical engineers",
                 "Mining and geological engineers, including mining safety engineers", "Nuclear engineers",
                 "Petroleum engineers", "Engineers, all other"),
    "chief executive": ("Chief executives",),
    "janitor": ("Janitors and building cleaners",),
    "teacher": ("Preschool and kindergarten teachers", "Elementary and middle school teachers",
                "Secondary school teachers", "Special education teachers"),
    "software developer": ("Software developers",),
    "housekeeper": ("Maids and housekeeping cleaners",),
    # further words of the Bloomberg (2023) and Stable Bias (2023) analyses
    "accountant": ("Accountants and auditors",),
    "aerospace engineer": ("Aerospace engineers",),
    "aide": RowsMatching(_TOTAL, r"\baides\b"),
    "air conditioning installer": ("Heating, air conditioning, and refrigeration mechanics and installers",),
    "architect": ("Architects, except landscape and naval",),
    "artist": ("Artists and related workers",),
    "author": ("Writers and authors",),
    "baker": ("Bakers",),
    "bartender": ("Bartenders",),
    "bus driver": ("Bus drivers, transit and intercity", "Bus drivers, school"),
    "butcher": ("Butchers and other meat, poultry, and fish processing workers",),
    "career counselor": ("Educational, guidance, and career counselors and advisors",),
    "carpenter": ("Carpenters",),
    "carpet installer": ("Carpet, floor, and tile installers and finishers",),
    "cashier": ("Cashiers",),
    "childcare worker": ("Childcare workers",),
    "civil engineer": ("Civil engineers",),
    "claims appraiser": ("Claims adjusters, appraisers, examiners, and investigators",),
    "cleaner": ("Janitors and building cleaners", "Maids and housekeeping cleaners",
                "Cleaners of vehicles and equipment"),
    "clergy": ("Clergy",),
    "clerk": RowsMatching(_TOTAL, r"\bclerks\b"),
    "coach": ("Coaches and scouts",),
    "compliance officer": ("Compliance officers",),
    "computer programmer": ("Computer programmers",),
    "computer support specialist": ("Computer support specialists",),
    "computer systems analyst": ("Computer systems analysts",),
    "construction worker": ("Construction laborers",),
    "cook": ("Cooks",),
    "correctional officer": ("Correctional officers and jailers",),
    "courier": ("Couriers and messengers",),
    "credit counselor": ("Credit counselors and loan officers",),
    "customer service representative": ("Customer service representatives",),
    "data entry keyer": ("Data entry keyers",),
    "dental assistant": ("Dental assistants",),
    "dental hygienist": ("Dental hygienists",),
    "dentist": ("Dentists",),
    "designer": RowsMatching(_TOTAL, r"\bdesigners\b"),
    "detective": ("Detectives and criminal investigators", "Private detectives and investigators"),
    "director": ("Producers and directors",),
    "dishwasher": ("Dishwashers",),
    "dispatcher": ("Dispatchers, except police, fire, and ambulance", "Public safety telecommunicators"),
    "drywall installer": ("Drywall installers, ceiling tile installers, and tapers",),
    "electrical engineer": ("Electrical and electronics engineers",),
    "electrician": ("Electricians",),
    "event planner": ("Meeting, convention, and event planners",),
    "executive assistant": ("Executive secretaries and executive administrative assistants",),
    "facilities manager": ("Facilities managers",),
    "farmer": ("Farmers, ranchers, and other agricultural managers",),
    "fast food worker": ("Fast food and counter workers",),
    "file clerk": ("File Clerks",),
    "financial advisor": ("Personal financial advisors",),
    "financial analyst": ("Financial and investment analysts",),
    "financial manager": ("Financial managers",),
    "firefighter": ("Firefighters",),
    "fitness instructor": ("Exercise trainers and group fitness instructors",),
    "graphic designer": ("Graphic designers",),
    "groundskeeper": ("Landscaping and groundskeeping workers",),
    "hairdresser": ("Hairdressers, hairstylists, and cosmetologists",),
    "head cook": ("Chefs and head cooks",),
    "health technician": ("Miscellaneous health technologists and technicians",),
    "host": _HOSTS,
    "hostess": _HOSTS,
    "industrial engineer": ("Industrial engineers, including health and safety",),
    "insurance agent": ("Insurance sales agents",),
    "interior designer": ("Interior designers",),
    "interviewer": ("Interviewers, except eligibility and loan", "Eligibility interviewers, government programs",
                    "Loan interviewers and clerks"),
    "inventory clerk": ("Shipping, receiving, and inventory clerks",),
    "it specialist": ("Computer support specialists", "Network and computer systems administrators",
                      "Information security analysts"),
    "jailer": ("Correctional officers and jailers",),
    "judge": ("Judges, magistrates, and other judicial workers",),
    "laboratory technician": ("Clinical laboratory technologists and technicians",),
    "language pathologist": ("Speech-language pathologists",),
    "lawyer": ("Lawyers",),
    "librarian": ("Librarians and media collections specialists",),
    "logistician": ("Logisticians",),
    "machinery mechanic": ("Industrial and refractory machinery mechanics",),
    "machinist": ("Machinists",),
    "manager": RowsMatching("Management occupations", r"\bmanagers\b"),
    "manicurist": ("Manicurists and pedicurists",),
    "market research analyst": ("Market research analysts and marketing specialists",),
    "marketing manager": ("Marketing managers",),
    "massage therapist": ("Massage therapists",),
    "mechanic": ("Automotive service technicians and mechanics",
                 "Bus and truck mechanics and diesel engine specialists",
                 "Heavy vehicle and mobile equipment service technicians and mechanics", "Small engine mechanics",
                 "Miscellaneous vehicle and mobile equipment mechanics, installers, and repairers"),
    "mechanical engineer": ("Mechanical engineers",),
    "medical records specialist": ("Medical records specialists",),
    "mental health counselor": ("Mental health counselors",),
    "metal worker": ("Sheet metal workers", "Structural iron and steel workers",
                     "Structural metal fabricators and fitters",
                     "Other metal workers and plastic workers"),
    "mover": ("Laborers and freight, stock, and material movers, hand",),
    "musician": ("Musicians and singers",),
    "network administrator": ("Network and computer systems administrators",),
    "nursing assistant": ("Nursing assistants",),
    "nutritionist": ("Dietitians and nutritionists",),
    "occupational therapist": ("Occupational therapists",),
    "office clerk": ("Office clerks, general",),
    "office worker": RowsMatching("Office and administrative support occupations", r""),
    "painter": ("Painters and paperhangers",),
    "paralegal": ("Paralegals and legal assistants",),
    "payroll clerk": ("Payroll and timekeeping clerks",),
    "pharmacist": ("Pharmacists",),
    "pharmacy technician": ("Pharmacy technicians",),
    "photographer": ("Photographers",),
    "physical therapist": ("Physical therapists",),
    "pilot": ("Aircraft pilots and flight engineers",),
    "plane mechanic": ("Aircraft mechanics and service technicians",),
    "plumber": ("Plumbers, pipefitters, and steamfitters",),
    "police officer": ("Police officers",),
    "politician": ("Legislators",),
    "postal worker": ("Postal service clerks", "Postal service mail carriers",
                      "Postal service mail sorters, processors, and processing machine operators"),
    "printing press operator": ("Printing press operators",),
    "producer": ("Producers and directors",),
    "professor": ("Postsecondary teachers",),
    "psychologist": ("Clinical and counseling psychologists", "School psychologists", "Other psychologists"),
    "public relations specialist": ("Public relations specialists",),
    "purchasing agent": ("Purchasing agents, except wholesale, retail, and farm products",
                         "Buyers and purchasing agents, farm products"),
    "radiologic technician": ("Radiologic technologists and technicians",),
    "real estate broker": ("Real estate brokers and sales agents",),
    "receptionist": ("Receptionists and information clerks",),
    "registered nurse": ("Registered nurses",),
    "repair worker": ("Maintenance and repair workers, general",),
    "roofer": ("Roofers",),
    "sales manager": ("Sales managers",),
    "salesperson": ("Retail salespersons", "Parts salespersons"),
    "school bus driver": ("Bus drivers, school",),
    "scientist": RowsMatching(_TOTAL, r"\bscientists\b"),
    "security guard": ("Security guards and gambling surveillance officers",),
    "sheet metal worker": ("Sheet metal workers",),
    "singer": ("Musicians and singers",),
    "social assistant": ("Social and human service assistants",),
    "social worker": _SOCIAL_WORKERS,
    "stocker": ("Stockers and order fillers",),
    "supervisor": RowsMatching(_TOTAL, r"^(first-line )?supervisors\b"),
    "tailor": ("Tailors, dressmakers, and sewers",),
    "taxi driver": ("Taxi drivers",),
    "teaching assistant": ("Teaching assistants",),
    "teller": ("Tellers",),
    "therapist": RowsMatching(_TOTAL, r"\btherapists\b"),
    "tractor operator": ("Industrial truck and tractor operators",),
    "truck driver": ("Driver/sales workers and truck drivers",),
    "tutor": ("Tutors",),
    "underwriter": ("Insurance underwriters",),
    "veterinarian": ("Veterinarians",),
    "waiter": _WAITERS,
    "waitress": _WAITERS,
    "welder": ("Welding, soldering, and brazing workers",),
    "wholesale buyer": ("Wholesale and retail buyers, except farm products",),
    "writer": ("Writers and authors",),
}

# Other words for the same rows (after normalisation: lower case, hyphens as spaces, no article).
SYNONYMS: dict[str, str] = {
    "physician": "doctor", "medical doctor": "doctor",
    "ceo": "chief executive", "chief executive officer": "chief executive", "executive": "chief executive",
    "custodian": "janitor", "building cleaner": "janitor",
    "schoolteacher": "teacher", "school teacher": "teacher",
    "software engineer": "software developer", "developer": "software developer",
    "programmer": "computer programmer",
    "maid": "housekeeper", "housekeeping cleaner": "housekeeper",
    "attorney": "lawyer", "magistrate": "judge", "legislator": "politician",
    "counter worker": "fast food worker", "chef": "head cook", "cosmetologist": "hairdresser",
    "mail carrier": "postal worker",
}

# Words of the studies' lists that no row of the table fits, and why (reported, never dropped).
NO_ROW_REASONS: dict[str, str] = {
    "community manager": "no row fits: the word names an online-community role, not 'Social and community service "
                         "managers' or community association managers",
}


def normalise_word(word: str) -> str:
    """Lower case, hyphens as spaces, spaces collapsed, no leading article: ``" A Fast-food Worker"`` ->
    ``"fast food worker"``."""
    text = re.sub(r"[\s\-]+", " ", str(word).strip().lower()).strip()
    return re.sub(r"^(a|an|the) ", "", text)


def canonical_word(word: str) -> str | None:
    """The :data:`PROFESSION_ROWS` key a prompt word (synonyms and plurals too) stands for, or None."""
    text = normalise_word(word)
    candidates = [text]
    if text.endswith("s"):
        candidates.append(text[:-1])
    if text.endswith("es"):
        candidates.append(text[:-2])
    for candidate in candidates:
        candidate = SYNONYMS.get(candidate, candidate)
        if candidate in PROFESSION_ROWS:
            return candidate
    return None


def rows_for(word: str, table: pd.DataFrame | None = None) -> tuple[str, ...]:
    """The detailed rows a prompt word stands for (empty when none), resolved in ``table`` (default
    the shipped one) where the map names rows by a pattern."""
    key = canonical_word(word)
    if key is None:
        return ()
    spec = PROFESSION_ROWS[key]
    if isinstance(spec, RowsMatching):
        return spec.resolve(_shipped_table() if table is None else table)
    return tuple(spec)


# --------------------------------------------------------------------------------------------
# Combining rows into one figure
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CombinedFigures:
    """One figure from one or several rows: each percentage is the employment-weighted mean over the
    published rows (``used``); ``not_published`` rows are skipped; ``total_employed_thousands`` is
    the employment of the used rows."""

    rows: tuple[str, ...]
    used: tuple[str, ...]
    not_published: tuple[str, ...]
    total_employed_thousands: float
    percent: dict[str, float] = field(default_factory=dict)

    @property
    def published(self) -> bool:
        return bool(self.used)

    def note(self) -> str:
        """How the figure was made, for a report: rows combined, and rows skipped."""
        parts = []
        if len(self.used) > 1:
            parts.append(f"{len(self.used)} rows combined, weighted by employment")
        if self.not_published:
            parts.append(f"{'; '.join(self.not_published)}: {NOT_PUBLISHED}")
        return ". ".join(parts)


def combine_rows(table: pd.DataFrame, rows: Sequence[str]) -> CombinedFigures:
    """Combine detailed ``rows`` of ``table`` (from :func:`read_bls_table`) into one figure.

    Percentages are weighted by total employed; a row whose percentages BLS does not publish is
    skipped and listed. Naming an aggregate row or a row the table lacks raises :class:`LabourTableError`.
    """
    indexed = table.set_index("occupation")
    missing = [r for r in rows if r not in indexed.index]
    if missing:
        raise LabourTableError(f"no row {', '.join(repr(m) for m in missing)} in the labour table")
    aggregates = [r for r in rows if bool(indexed.loc[r, "is_aggregate"])]
    if aggregates:
        raise LabourTableError(f"{', '.join(repr(a) for a in aggregates)}: a group row, not a detailed occupation")
    part = indexed.loc[list(rows)]
    used = part[part["published"]]
    skipped = tuple(part.index[~part["published"]])
    weights = used["total_employed_thousands"].astype(float)
    total = float(weights.sum())
    if total > 0:
        percent = {c: float((used[c].astype(float) * weights).sum() / total) for c in PERCENT_COLUMNS}
    else:
        percent = {c: math.nan for c in PERCENT_COLUMNS}
    return CombinedFigures(tuple(rows), tuple(used.index), skipped, total, percent)


def profession_figures(words: Iterable[str] | None = None, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per prompt word (:data:`FIGURE_COLUMNS`): the combined figure of its rows.

    ``words``: prompt words, labelled as given (default: every word of :data:`PROFESSION_ROWS`).
    ``occupation`` lists the rows used ("; " between them), ``rows_not_published`` the rows skipped;
    a word without rows, or whose rows are all unpublished, gets NaN percentages and says why in
    ``note``. ``table``: default the shipped 2022 table.
    """
    table = _shipped_table() if table is None else table
    words = list(PROFESSION_ROWS) if words is None else list(words)
    year = int(table["year"].iloc[0]) if len(table) else BLS_TABLE_YEAR
    source = str(table["source"].iloc[0]) if len(table) else BLS_SOURCE
    records = []
    for word in words:
        rows = rows_for(word, table)
        if rows:
            combined = combine_rows(table, rows)
            note = combined.note() if combined.published else f"{'; '.join(rows)}: {NOT_PUBLISHED}"
            records.append({"profession": word, "occupation": "; ".join(combined.used),
                            "total_employed_thousands": combined.total_employed_thousands if combined.published
                            else math.nan, **combined.percent, "note": note,
                            "rows_not_published": "; ".join(combined.not_published)})
        else:
            key = normalise_word(word)
            records.append({"profession": word, "occupation": "", "total_employed_thousands": math.nan,
                            **{c: math.nan for c in PERCENT_COLUMNS},
                            "note": NO_ROW_REASONS.get(key, "no row of the table for this word"),
                            "rows_not_published": ""})
    out = pd.DataFrame(records, columns=[c for c in FIGURE_COLUMNS if c not in ("year", "source", "verified")])
    out["year"] = year
    out["source"] = source
    out["verified"] = True
    return out[FIGURE_COLUMNS]


def mapped_words() -> list[str]:
    """Every prompt word the map knows (not counting synonyms), in its order."""
    return list(PROFESSION_ROWS)


def check_mapping(table: pd.DataFrame | None = None) -> dict[str, tuple[str, ...]]:
    """Resolve every word of :data:`PROFESSION_ROWS` in ``table``; raises :class:`LabourTableError`
    when a word names a row the table lacks, a group row, or (by pattern) no row at all."""
    table = _shipped_table() if table is None else table
    resolved = {}
    known = set(table["occupation"])
    aggregate = set(table.loc[table["is_aggregate"], "occupation"])
    for word in PROFESSION_ROWS:
        rows = rows_for(word, table)
        if not rows:
            raise LabourTableError(f"{word!r}: its pattern matches no row")
        bad = [r for r in rows if r not in known or r in aggregate]
        if bad:
            raise LabourTableError(f"{word!r}: {', '.join(repr(b) for b in bad)} is not a detailed row of the table")
        resolved[word] = rows
    return resolved

