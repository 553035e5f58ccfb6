"""Grouped results: counts of categories per group, the shares they make with their intervals, by
group and overall, the differences between groups, and a declared schema for CSV.

Learnt from Fairlearn's ``MetricFrame``: one object holds a result per group (``by_group``), the
same result pooled over groups (``overall``) and how far groups lie apart (``difference``), so
every table of shares is laid out, pooled and compared the same way. What it keeps from synthscope:
abstentions are a category of their own (counted, never dropped), with shares over all and over
determined items side by side, and intervals are Wilson intervals from :mod:`synthscope.stats`.

Group keys may be missing (a prompt without a descriptor, a run without a guidance value): groups
are formed with missing keys as keys of their own (pandas' ``dropna=False``), never replaced by
placeholder values. The columns and their types are declared (:data:`SHARES_SCHEMA`, key columns
declared by the caller), so a table read back from CSV has the types of the one written.

Three tables follow this protocol (``by_group``, ``keys``, ``schema``, ``confidence``, ``to_csv``,
``read_csv``, ``from_frame``): :class:`GroupedShares` (one category per item, abstentions apart),
:class:`GroupedCrossCounts` (combinations of two categories per item, with the counts expected if the
two were independent) and :class:`GroupedProportions` (an outcome an item has or lacks, e.g. a sample
that shows what its prompt asked for: one row per group with k of n and the proportion).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from synthscope.stats import wilson_bounds

COLUMN_KINDS = ("text", "optional_text", "int", "float", "number", "bool", "optional_bool")


@dataclass(frozen=True)
class Column:
    """One declared column: its name, its kind (:data:`COLUMN_KINDS`) and what it means.

    ``optional_text`` is text that may be missing (empty in CSV, NaN in the frame); ``number`` is
    integer or float as the values allow (a template index, missing for people's labels);
    ``optional_bool`` is True, False or missing (None in the frame, empty in CSV), e.g. whether a
    detector saw a source in training, which has no answer for real images."""

    name: str
    kind: str
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in COLUMN_KINDS:
            raise ValueError(f"column {self.name!r}: kind {self.kind!r} is not one of {', '.join(COLUMN_KINDS)}")

    def coerce(self, series: pd.Series) -> pd.Series:
        """``series`` as this column's type, whether fresh or read back from CSV text."""
        if self.kind == "text":
            return series.astype(str)
        if self.kind == "optional_text":
            values = series.astype(object)
            blank = values.isna() | (values.astype(str).str.strip() == "")
            return values.where(~blank, np.nan).astype(object)
        if self.kind == "int":
            return pd.to_numeric(series, errors="raise").astype(np.int64)
        if self.kind == "float":
            return pd.to_numeric(series, errors="coerce").astype(float)
        if self.kind == "number":
            return pd.to_numeric(series, errors="coerce")
        if self.kind == "optional_bool":
            # None, not NaN, for missing: the column stays Python bools and None, as fresh rows hold them.
            return pd.Series([_optional_bool(v) for v in series], index=series.index, dtype=object)
        if pd.api.types.is_bool_dtype(series.dtype):
            return series.astype(bool)
        return series.map(lambda v: str(v).strip().lower() in ("true", "1", "yes")).astype(bool)


def _optional_bool(value: object) -> bool | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{value!r} is not true, false or empty")
        return text in ("true", "1", "yes")
    return bool(value)


@dataclass(frozen=True)
class Schema:
    """The declared columns of a table, in order."""

    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """The column names, in order."""
        return [c.name for c in self.columns]

    def __add__(self, other: Schema) -> Schema:
        return Schema((*self.columns, *other.columns))

    def coerce(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame``'s declared columns, in order, each as its declared type; a missing column is an error
        that names it."""
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise ValueError(f"the table lacks column(s) {', '.join(missing)}; expected {', '.join(self.names)}")
        return pd.DataFrame({c.name: c.coerce(frame[c.name]) for c in self.columns}, index=frame.index)

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` with each declared column it has as its declared type; its other columns,
        and the column order, as they are (for tables that declare only some of their columns)."""
        out = frame.copy()
        for column in self.columns:
            if column.name in out:
                out[column.name] = column.coerce(out[column.name])
        return out

    def to_csv(self, frame: pd.DataFrame) -> str:
        """The table as CSV text: the declared columns in order, no index."""
        return frame[self.names].to_csv(index=False)

    def read_csv(self, source: str | Path | io.StringIO) -> pd.DataFrame:
        """A table written by :meth:`to_csv` (a path, or a text buffer), with the declared types."""
        frame = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
        return self.coerce(frame)


def share_columns(name: str, doc: str) -> tuple[Column, Column, Column]:
    """A share and its Wilson interval: ``name``, ``name_ci_low``, ``name_ci_high``."""
    return (Column(name, "float", doc), Column(f"{name}_ci_low", "float", f"lower Wilson bound of {name}"),
            Column(f"{name}_ci_high", "float", f"upper Wilson bound of {name}"))


N_IMAGES = Column("n_images", "int", "items in the group (every one, abstentions included)")
N_ABSTAINED = Column("n_abstained", "int", "items abstained on")

# The per-group columns a shares table adds after its keys (the keys are declared by the caller).
SHARES_SCHEMA = Schema((
    Column("value", "text", "the category counted, or the abstention label"),
    Column("is_abstention", "bool", "the row counts items the reader was not sure about"),
    Column("count", "int", "items in the category"), N_IMAGES, N_ABSTAINED,
    Column("n_determined", "int", "items with a category other than the abstention label"),
    *share_columns("share_of_all", "count / n_images"),
    *share_columns("share_of_determined", "count / n_determined (NaN on the abstention row)"),
))


class GroupedTable:
    """What every grouped result shares: key columns (``keys``, declared in ``key_schema``), one row
    per group and category in ``by_group`` with the columns of ``schema``, the confidence of its
    intervals, and CSV written in the declared column order."""

    keys: list[str]
    key_schema: Schema
    schema: Schema
    confidence: float
    by_group: pd.DataFrame

    def to_csv(self, path: str | Path | None = None) -> str:
        """The table as CSV text (declared columns in order, no index); written to ``path`` when given."""
        text = self.schema.to_csv(self.by_group)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def _grouped(self, frame: pd.DataFrame, by: Sequence[str]):
        # Missing keys are groups of their own (a prompt without a descriptor), never dropped.
        return frame.groupby(list(by), sort=False, dropna=False)


class GroupedShares(GroupedTable):
    """Counts of categories per group and their shares, with Wilson intervals.

    ``counts``: one row per group and category, complete (a category a group never showed has a row
    with count 0), with the ``keys``, ``value``, ``is_abstention`` and ``count`` columns. Key columns
    are declared in ``key_schema`` (their kinds); by default text, with ``descriptor`` optional text and
    ``guidance``/``template`` numbers, as the audit's keys are.
    """

    def __init__(self, counts: pd.DataFrame, keys: Sequence[str], confidence: float = 0.95,
                 key_schema: Schema | None = None) -> None:
        self.keys = list(keys)
        self.confidence = float(confidence)
        self.key_schema = key_schema or default_key_schema(self.keys)
        self.schema = self.key_schema + SHARES_SCHEMA
        self.by_group = self._shares(counts)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, keys: Sequence[str], confidence: float = 0.95,
                   key_schema: Schema | None = None) -> GroupedShares:
        """A shares table already computed (e.g. read back from CSV) as a :class:`GroupedShares`."""
        return cls(frame, keys, confidence, key_schema)

    @classmethod
    def read_csv(cls, source: str | Path | io.StringIO, keys: Sequence[str], confidence: float = 0.95,
                 key_schema: Schema | None = None) -> GroupedShares:
        """A shares table written by :meth:`to_csv`; the counts are read and the shares recomputed (they
        are the same numbers: the CSV holds them to full precision)."""
        key_schema = key_schema or default_key_schema(keys)
        return cls((key_schema + SHARES_SCHEMA).read_csv(source), keys, confidence, key_schema)

    def _shares(self, counts: pd.DataFrame) -> pd.DataFrame:
        keys = self.keys
        full = counts[[*keys, "value", "is_abstention", "count"]].copy()
        full["count"] = full["count"].fillna(0).astype(np.int64)
        full["is_abstention"] = full["is_abstention"].astype(bool)
        grouped = self._grouped(full, keys)
        full["n_images"] = grouped["count"].transform("sum").astype(np.int64)
        abstained = full["count"] * full["is_abstention"]
        full["n_abstained"] = abstained.groupby([full[k] for k in keys], sort=False, dropna=False) \
            .transform("sum").astype(np.int64)
        full["n_determined"] = full["n_images"] - full["n_abstained"]
        full["share_of_all"] = full["count"] / full["n_images"].where(full["n_images"] > 0)
        full["share_of_all_ci_low"], full["share_of_all_ci_high"] = wilson_bounds(full["count"], full["n_images"],
                                                                                    self.confidence)
        det_n = full["n_determined"].where(~full["is_abstention"], 0)
        full["share_of_determined"] = (full["count"] / det_n.where(det_n > 0)).where(~full["is_abstention"])
        low, high = wilson_bounds(full["count"], det_n, self.confidence)
        full["share_of_determined_ci_low"], full["share_of_determined_ci_high"] = low, high
        order = [*keys, "is_abstention", "value"]
        full = full.sort_values(order, na_position="first", kind="stable").reset_index(drop=True)
        return self.schema.coerce(full)

    def overall(self, over: Sequence[str]) -> GroupedShares:
        """The same shares with the groups of the keys ``over`` pooled (their counts added), e.g. every
        profession together: a :class:`GroupedShares` keyed by the remaining keys."""
        rest = [k for k in self.keys if k not in over]
        if len(rest) == len(self.keys):
            raise ValueError(f"none of {', '.join(over)} is a key of this table ({', '.join(self.keys)})")
        if rest:
            pooled = self.by_group.groupby([*rest, "value", "is_abstention"], sort=False, dropna=False)["count"] \
                .sum().reset_index()
        else:
            pooled = self.by_group.groupby(["value", "is_abstention"], sort=False)["count"].sum().reset_index()
        schema = Schema(tuple(c for c in self.key_schema.columns if c.name in rest))
        return GroupedShares(pooled, rest, self.confidence, schema)

    def abstentions(self) -> pd.DataFrame:
        """One row per group: n_images, n_abstained and abstention_rate with its Wilson interval
        (columns :data:`ABSTENTIONS_SCHEMA` after the keys)."""
        rows = self.by_group[self.by_group["is_abstention"]].copy()
        rows["abstention_rate"] = rows["n_abstained"] / rows["n_images"].where(rows["n_images"] > 0)
        rows["abstention_rate_ci_low"], rows["abstention_rate_ci_high"] = wilson_bounds(
            rows["n_abstained"], rows["n_images"], self.confidence)
        return (self.key_schema + ABSTENTIONS_SCHEMA).coerce(rows.reset_index(drop=True))

    def compared_share(self) -> pd.Series:
        """The share groups are compared on, row by row: of determined items, and on the abstention row
        (which has no determined share) of all items."""
        table = self.by_group
        return table["share_of_determined"].where(~table["is_abstention"], table["share_of_all"])

    def spread(self, over: str, column: str | None = None) -> pd.DataFrame:
        """How a share moves across the groups of key ``over`` (e.g. the phrasings of a prompt): per
        remaining keys and value, n_groups, mean, sd (sample sd, NaN for one group), minimum, maximum,
        difference (maximum - minimum), the groups of ``over`` giving the minimum and the maximum, and
        min_n_images (the smallest group). ``column``: a share column, by default
        :meth:`compared_share`. Groups where the share is NaN (no data) do not count."""
        if over not in self.keys:
            raise ValueError(f"{over!r} is not a key of this table ({', '.join(self.keys)})")
        rest = [k for k in self.keys if k != over]
        share = self.compared_share() if column is None else self.by_group[column]
        table = self.by_group.assign(_share=share)[share.notna()]
        grouped = self._grouped(table, [*rest, "value", "is_abstention"])
        out = grouped["_share"].agg(n_groups="count", mean="mean", sd="std", minimum="min", maximum="max")
        out["difference"] = out["maximum"] - out["minimum"]
        out[f"{over}_of_min"] = table.loc[grouped["_share"].idxmin(), over].to_numpy()
        out[f"{over}_of_max"] = table.loc[grouped["_share"].idxmax(), over].to_numpy()
        out["min_n_images"] = grouped["n_images"].min()
        out = out.reset_index()
        # Grouping leaves an all-missing key column typed as numbers; it keeps its declared type.
        return out.assign(**Schema(tuple(c for c in self.key_schema.columns if c.name in rest)).coerce(out))

    def difference(self, over: str, column: str = "share_of_determined") -> pd.DataFrame:
        """How far the groups of key ``over`` lie apart: per remaining keys and value, the largest minus
        the smallest ``column`` among them (Fairlearn's "between_groups"), with the groups giving the
        minimum and the maximum. Groups where the column is NaN (no data) do not count."""
        rest = [k for k in self.keys if k != over]
        return self.spread(over, column)[[*rest, "value", "is_abstention", "n_groups", "minimum", "maximum",
                                          "difference", f"{over}_of_min", f"{over}_of_max"]]

    def change(self, over: str) -> pd.DataFrame:
        """The shares along key ``over`` (e.g. guidance): ``by_group`` with ``over`` as the last key,
        sorted by it within each remaining group and value, plus ``change_from_lowest_<over>``: the
        :meth:`compared_share` minus the first one available along ``over`` (missing ``over`` sorts
        first)."""
        if over not in self.keys:
            raise ValueError(f"{over!r} is not a key of this table ({', '.join(self.keys)})")
        rest = [k for k in self.keys if k != over]
        table = self.by_group.assign(_share=self.compared_share())
        table = table.sort_values([*rest, "value", over], na_position="first", kind="stable").reset_index(drop=True)
        first = self._grouped(table, [*rest, "value"])["_share"].transform("first")
        table[f"change_from_lowest_{over}"] = table["_share"] - first
        columns = [*rest, over, *[c for c in table.columns if c not in (*self.keys, "_share")]]
        return table[columns]


class GroupedCrossCounts(GroupedTable):
    """Counts of each combination of two categories per group (e.g. perceived gender x skin tone).

    ``counts``: one row per group and combination, complete (a combination a group never showed has
    count 0), with the ``keys``, the two ``categories`` columns and ``count``. ``by_group`` adds
    n_images (items of the group), share (of the group, with its Wilson interval), expected (the count
    expected if the two categories were independent: row total x column total / n_images), and the
    small-sample flags: small_group (n_images < ``min_n``), low_expected (expected < ``min_expected``)
    and small_sample_warning (either)."""

    def __init__(self, counts: pd.DataFrame, keys: Sequence[str], categories: tuple[str, str],
                 confidence: float = 0.95, key_schema: Schema | None = None, min_n: int = 30,
                 min_expected: float = 5.0) -> None:
        self.keys = list(keys)
        self.categories = tuple(categories)
        self.confidence = float(confidence)
        self.min_n, self.min_expected = int(min_n), float(min_expected)
        self.key_schema = key_schema or default_key_schema(self.keys)
        self.schema = cross_counts_schema(self.key_schema, self.categories)
        self.by_group = self._cells(counts)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, keys: Sequence[str], categories: tuple[str, str],
                   confidence: float = 0.95, key_schema: Schema | None = None, min_n: int = 30,
                   min_expected: float = 5.0) -> GroupedCrossCounts:
        """A table already computed (e.g. read back from CSV) as a :class:`GroupedCrossCounts`."""
        return cls(frame, keys, categories, confidence, key_schema, min_n, min_expected)

    @classmethod
    def read_csv(cls, source: str | Path | io.StringIO, keys: Sequence[str], categories: tuple[str, str],
                 confidence: float = 0.95, key_schema: Schema | None = None, min_n: int = 30,
                 min_expected: float = 5.0) -> GroupedCrossCounts:
        """A table written by :meth:`to_csv`; the counts are read and the rest recomputed."""
        key_schema = key_schema or default_key_schema(keys)
        frame = cross_counts_schema(key_schema, tuple(categories)).read_csv(source)
        return cls(frame, keys, categories, confidence, key_schema, min_n, min_expected)

    def _cells(self, counts: pd.DataFrame) -> pd.DataFrame:
        keys, (c1, c2) = self.keys, self.categories
        full = counts[[*keys, c1, c2, "count"]].copy()
        full["count"] = full["count"].fillna(0).astype(np.int64)
        full["n_images"] = self._grouped(full, keys)["count"].transform("sum")
        row_total = self._grouped(full, [*keys, c1])["count"].transform("sum")
        col_total = self._grouped(full, [*keys, c2])["count"].transform("sum")
        full["share"] = full["count"] / full["n_images"]
        full["share_ci_low"], full["share_ci_high"] = wilson_bounds(full["count"], full["n_images"], self.confidence)
        full["expected"] = row_total * col_total / full["n_images"]
        full["small_group"] = full["n_images"] < self.min_n
        full["low_expected"] = full["expected"] < self.min_expected
        full["small_sample_warning"] = full["small_group"] | full["low_expected"]
        full = full.sort_values([*keys, c1, c2], na_position="first", kind="stable").reset_index(drop=True)
        return self.schema.coerce(full)



class GroupedProportions(GroupedTable):
    """Per group, how many of its ``n`` items have an outcome (``k``) and the proportion ``k / n`` with
    its Wilson interval: the shares of a two-category outcome (adherent or not), one row per group.

    ``counts``: one row per group with the ``keys``, ``n``, ``k`` and the declared ``carried`` columns:
    facts about the group that are not counts (e.g. how reliably the judge recognises the group's
    value), carried as given and never pooled. The proportion's columns are ``name``,
    ``name_ci_low`` and ``name_ci_high``. Rows keep the order given (e.g. a vocabulary's order of
    values), so a table shows its groups as its caller lists them; pooled groups come in the order
    they first appear.
    """

    def __init__(self, counts: pd.DataFrame, keys: Sequence[str], name: str = "proportion",
                 confidence: float = 0.95, key_schema: Schema | None = None,
                 carried: Schema = Schema(())) -> None:
        self.keys = list(keys)
        self.name = name
        self.confidence = float(confidence)
        self.key_schema = key_schema or default_key_schema(self.keys)
        self.carried = carried
        self.schema = proportions_schema(self.key_schema, name, carried)
        table = counts.reset_index(drop=True)
        n = pd.to_numeric(table["n"]).astype(np.int64)
        k = pd.to_numeric(table["k"]).astype(np.int64)
        table = table.assign(n=n, k=k, **{name: k / n.where(n > 0)})
        table[f"{name}_ci_low"], table[f"{name}_ci_high"] = wilson_bounds(k, n, self.confidence)
        self.by_group = self.schema.coerce(table)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, keys: Sequence[str], name: str = "proportion",
                   confidence: float = 0.95, key_schema: Schema | None = None,
                   carried: Schema = Schema(())) -> GroupedProportions:
        """A table already computed (e.g. read back from CSV) as a :class:`GroupedProportions`."""
        return cls(frame, keys, name, confidence, key_schema, carried)

    @classmethod
    def read_csv(cls, source: str | Path | io.StringIO, keys: Sequence[str], name: str = "proportion",
                 confidence: float = 0.95, key_schema: Schema | None = None,
                 carried: Schema = Schema(())) -> GroupedProportions:
        """A table written by :meth:`to_csv`; the counts and carried columns are read, the proportions
        recomputed (the same numbers: the CSV holds the counts exactly)."""
        key_schema = key_schema or default_key_schema(keys)
        frame = proportions_schema(key_schema, name, carried).read_csv(source)
        return cls(frame, keys, name, confidence, key_schema, carried)

    def overall(self, over: Sequence[str], keep: Sequence[str] = ()) -> GroupedProportions:
        """The proportions with the groups of the keys ``over`` pooled (n and k added), e.g. every
        requested value of an attribute together. ``keep``: carried columns that describe the
        remaining keys (one value within each pooled group, checked); the others have no pooled value
        and are left out."""
        rest = [k for k in self.keys if k not in over]
        if len(rest) == len(self.keys):
            raise ValueError(f"none of {', '.join(over)} is a key of this table ({', '.join(self.keys)})")
        unknown = [c for c in keep if c not in self.carried.names]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not carried by this table ({', '.join(self.carried.names)})")
        # With no key left, every row is one group.
        by = [self.by_group[k] for k in rest] or np.zeros(len(self.by_group), dtype=int)
        grouped = self.by_group.groupby(by, sort=False, dropna=False)
        varying = [c for c in keep if (grouped[c].nunique(dropna=False) > 1).any()]
        if varying:
            raise ValueError(f"{', '.join(varying)} differs within the pooled groups: it does not describe "
                             f"{', '.join(rest) or 'the whole table'}")
        pooled = grouped.agg(**{c: (c, "sum") for c in ("n", "k")}, **{c: (c, "first") for c in keep})
        pooled = pooled.reset_index(drop=not rest)
        carried = Schema(tuple(c for c in self.carried.columns if c.name in keep))
        key_schema = Schema(tuple(c for c in self.key_schema.columns if c.name in rest))
        return GroupedProportions(pooled, rest, self.name, self.confidence, key_schema, carried)

    def difference(self, over: str) -> pd.DataFrame:
        """How far the groups of key ``over`` lie apart, per remaining keys: n_groups, the smallest and
        the largest proportion, their difference (Fairlearn's "between_groups") and the groups of
        ``over`` giving them. Groups without items (no proportion) do not count."""
        if over not in self.keys:
            raise ValueError(f"{over!r} is not a key of this table ({', '.join(self.keys)})")
        rest = [k for k in self.keys if k != over]
        table = self.by_group[self.by_group[self.name].notna()].sort_values(self.name, kind="stable")
        by = [table[k] for k in rest] or np.zeros(len(table), dtype=int)
        ends = table.groupby(by, sort=False, dropna=False).agg(
            n_groups=(self.name, "size"), minimum=(self.name, "first"), maximum=(self.name, "last"),
            **{f"{over}_of_min": (over, lambda s: s.iloc[0]), f"{over}_of_max": (over, lambda s: s.iloc[-1])})
        ends.insert(3, "difference", ends["maximum"] - ends["minimum"])
        return ends.reset_index(drop=not rest)


# The columns of GroupedShares.abstentions() after the keys.
ABSTENTIONS_SCHEMA = Schema((N_IMAGES, N_ABSTAINED, *share_columns("abstention_rate", "n_abstained / n_images"),
))


def cross_counts_schema(key_schema: Schema, categories: tuple[str, str]) -> Schema:
    """The columns of a :class:`GroupedCrossCounts` table: the keys, the two categories, then the cells'."""
    return key_schema + Schema((
        *(Column(name, "text", "a category") for name in categories),
        Column("count", "int", "items with this combination"), N_IMAGES, *share_columns("share", "count / n_images"),
        Column("expected", "float", "count expected if the two categories were independent"),
        Column("small_group", "bool", "n_images below the smallest group size"),
        Column("low_expected", "bool", "expected below the smallest expected count"),
        Column("small_sample_warning", "bool", "small_group or low_expected"),
    ))


def default_key_schema(keys: Sequence[str], kinds: Mapping[str, str] | None = None) -> Schema:
    """Key columns as the audit declares them: ``descriptor`` optional text, ``guidance`` float,
    ``template`` a number, anything else text; ``kinds`` overrides any of them."""
    known = {"descriptor": "optional_text", "guidance": "float", "template": "number", **dict(kinds or {})}
    return Schema(tuple(Column(k, known.get(k, "text")) for k in keys))


def proportions_schema(key_schema: Schema, name: str, carried: Schema = Schema(())) -> Schema:
    """The columns of a :class:`GroupedProportions` table: the keys, n, k, the proportion ``name`` with
    its interval, then the carried columns."""
    return key_schema + Schema((
        Column("n", "int", "items in the group"), Column("k", "int", "items with the outcome"),
        *share_columns(name, "k / n"),
    )) + carried
