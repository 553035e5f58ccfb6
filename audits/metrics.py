"""Bias-audit metrics on a tidy table of annotations: who gets depicted, how sure we are, compared with what.

The input (:data:`ANNOTATION_COLUMNS`) has one row per image, annotator and attribute: ``image_id``,
``prompt``, ``template`` (index of the phrasing), ``profession``, ``descriptor`` (empty/NaN when the
prompt has none), ``guidance`` (NaN when not set), ``annotator`` (e.g. "probe", "clip", "human"),
``attribute`` (e.g. "gender") and ``value``. Values are **perceived** attributes (the gender
presentation, skin tone or age group an annotator reads in a synthetic image), never anyone's
identity. An annotator that is not sure writes the abstention label (:data:`ABSTAIN`); abstentions
are a category of their own here: counted, reported, never dropped.

Conventions shared by every table:

- Shares come two ways, named so: ``share_of_all`` (count / every image of the group, abstentions
  included) and ``share_of_determined`` (count / images with a value other than the abstention label).
  Distances to parity or to a reference use the determined shares; the abstention rate sits beside.
- Intervals are Wilson score intervals (95 % unless ``confidence`` says otherwise), from
  :mod:`synthscope.stats` (:func:`~synthscope.stats.wilson_bounds` for whole columns); an empty group
  has no interval (NaN).
- Every attribute value seen anywhere in the table (or declared via ``values``) appears in every
  group, with count 0 where it did not occur: "no women doctors in 200 images" is a result.
- Prompts that name a descriptor ("a female doctor") measure adherence to the prompt, not the
  model's default; they are kept apart (``descriptor`` is a grouping key) and left out of the
  comparisons with a reference unless asked for.

Formulas (p: determined shares over K values, r: the reference, u = 1/K parity, c: counts, n = sum c):

- normalised Shannon entropy ``H(p) / ln K`` (1 = every value equally often, 0 = one value only);
- ``L1(p, q) = sum_i |p_i - q_i|`` (0 .. 2) and ``MAD(p, q) = L1 / K``, the mean absolute deviation;
- ``KL(p || q)`` in nats with additive smoothing: ``p~_i = (c_i + a) / (n + K a)``, and the
  reference smoothed with the same pseudo-counts as if it were a sample of the same size,
  ``q~_i = (n q_i + a) / (n + K a)``; ``a = 0.5`` (Jeffreys) by default, 1 is Laplace. Smoothing keeps
  KL finite when a value never occurs and shrinks it towards 0 for small samples;
- gap ``p_v - r_v`` with the Wilson interval of ``p_v`` shifted by ``r_v`` (the reference is taken as
  exact: its sampling error is small next to that of a few hundred images);
- amplification ``L1(p, u) - L1(r, u)``: positive when the model is further from parity than the
  reference is (for two values, ``2 (|p - 1/2| - |r - 1/2|)``), with a percentile bootstrap interval
  over images (multinomial resampling of the group's determined counts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from synthscope.errors import UserError
from synthscope.generators.attributes import value_order
from synthscope.grouped import Column, GroupedCrossCounts, GroupedShares, Schema, cross_counts_schema, default_key_schema
from synthscope.stats import wilson_bounds

ANNOTATION_COLUMNS = ("image_id", "prompt", "template", "profession", "descriptor", "guidance", "annotator",
                      "attribute", "value")
ABSTAIN = "undetermined"
HUMAN_PREFIX = "human:"  # a labeller's annotator name is "human:<name>"
MAJORITY_ANNOTATOR = "human-majority"  # the labellers' per-image majority; no labeller's name can be this
PROMPT_KEYS = ("prompt", "template", "profession", "descriptor", "guidance")
PROFESSION_KEYS = ("profession", "descriptor", "guidance")
DEFAULT_ALPHA = 0.5  # Jeffreys pseudo-count for KL smoothing
MIN_GROUP_N = 30  # groups smaller than this get a small-sample warning
MIN_EXPECTED = 5.0  # intersectional cells expected (under independence) below this get a warning
REFERENCE_SUM_TOLERANCE = 0.01

# What each output column means, for reports and notebooks.
COLUMN_DOCS: dict[str, str] = {
    "annotator": "who read the images (probe, clip, human)",
    "attribute": "the perceived attribute read from the image (e.g. perceived gender presentation)",
    "value": "a perceived attribute value, or the abstention label",
    "is_abstention": "the row counts images the annotator was not sure about",
    "count": "images with this perceived value",
    "n_images": "images in the group (every one, abstentions included)",
    "n_abstained": "images the annotator abstained on",
    "n_determined": "images with a perceived value other than the abstention label",
    "abstention_rate": "n_abstained / n_images",
    "share_of_all": "count / n_images",
    "share_of_determined": "count / n_determined (NaN on the abstention row)",
    "normalised_entropy": "Shannon entropy of the determined shares / ln K (1 = balanced)",
    "l1_to_parity": "sum |share - 1/K| over the K values (0 .. 2(1 - 1/K))",
    "mad_to_parity": "mean |share - 1/K| over the K values",
    "kl_to_parity": "KL(smoothed shares || uniform), nats",
    "l1_to_reference": "sum |share - reference share|",
    "mad_to_reference": "mean |share - reference share|",
    "kl_to_reference": "KL(smoothed shares || smoothed reference), nats",
    "reference_share": "share of the value in the reference (e.g. BLS percent women / 100)",
    "reference_occupation": "the rows of the reference table behind the figure (several: combined, weighted by "
                            "employment)",
    "reference_note": "how the reference figure was made: rows combined, rows not published (base under 50,000)",
    "gap": "share_of_determined - reference_share",
    "amplification": "l1_to_parity(model) - l1_to_parity(reference); > 0: further from parity than the reference",
    "k_values": "number of perceived values the attribute has (seen or declared), abstention excluded",
    "gap_ci_low": "lower Wilson bound of share_of_determined - reference_share (the reference held exact)",
    "significant": "the gap's interval excludes 0",
    "verdict": "amplified / attenuated when the bootstrap interval of amplification excludes 0",
    "same_majority": "the model's most frequent perceived value is the reference's most frequent value",
    "expected": "cell count expected if the two perceived attributes were independent",
    "share_range": "max - min of a share over the template phrasings",
    "change_from_lowest_guidance": "share minus the same share at the lowest guidance of the sweep",
    "small_sample_warning": f"group below {MIN_GROUP_N} images, or an expected cell count below {MIN_EXPECTED:g}",
}

# The tables audit_metrics returns, and their second-reference variants (written as "<name>_labour").
METRIC_TABLES = ("shares_by_prompt", "shares_by_profession", "abstentions", "diversity", "template_spread",
                 "guidance_sweep", "intersectional", "reference_gap", "amplification")

# The columns of those tables whose type CSV does not carry (text that looks like a number, an empty
# descriptor, flags written as True/False), declared once: the tables are written with these types
# and read back to them. Numbers are read as numbers by CSV readers already.
AUDIT_COLUMNS = default_key_schema([*PROMPT_KEYS, "annotator", "attribute"]) + Schema((
    *(Column(name, "text", COLUMN_DOCS.get(name, "a perceived attribute value"))
      for name in ("value", "value_1", "value_2", "attribute_1", "attribute_2")),
    *(Column(name, "bool", COLUMN_DOCS.get(name, "")) for name in (
        "is_abstention", "significant", "reference_verified", "small_group", "low_expected",
        "small_sample_warning")),
))


def is_metric_table(name: str) -> bool:
    """Whether ``name`` is a table of :func:`audit_metrics` (or one against the second reference)."""
    return name.removesuffix("_labour") in METRIC_TABLES


def typed_table(table: pd.DataFrame | None) -> pd.DataFrame:
    """A metrics table with the declared types (:data:`AUDIT_COLUMNS`), fresh or read back from CSV."""
    return pd.DataFrame() if table is None else AUDIT_COLUMNS.apply(table)


# --------------------------------------------------------------------------------------------
# Scalar formulas (also used in tests)
# --------------------------------------------------------------------------------------------


def normalised_entropy(probabilities: Sequence[float]) -> float:
    """Shannon entropy of ``probabilities`` divided by ln K (K = their number); 0 ln 0 = 0; NaN for K < 2."""
    p = np.asarray(probabilities, dtype=float)
    if p.size < 2 or not np.isfinite(p).all() or p.sum() <= 0:
        return math.nan
    p = p / p.sum()
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum() / math.log(p.size))


def l1_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Sum of absolute differences between two distributions over the same values."""
    return float(np.abs(np.asarray(p, float) - np.asarray(q, float)).sum())


def mean_absolute_deviation(p: Sequence[float], q: Sequence[float]) -> float:
    """Mean absolute difference between two distributions over the same K values (L1 / K)."""
    p = np.asarray(p, float)
    return l1_distance(p, q) / p.size


def kl_divergence(counts: Sequence[float], reference: Sequence[float] | None = None,
                  alpha: float = DEFAULT_ALPHA) -> float:
    """KL(observed || reference) in nats with additive smoothing (see the module docstring).

    ``counts``: observed counts over K values; ``reference``: shares over the same values (default
    uniform). Both get ``alpha`` pseudo-counts per value, the reference as if it were a sample of
    the same size n.
    """
    c = np.asarray(counts, dtype=float)
    k, n = c.size, c.sum()
    r = np.full(k, 1.0 / k) if reference is None else np.asarray(reference, dtype=float)
    if n + k * alpha <= 0:
        return math.nan
    p_s = (c + alpha) / (n + k * alpha)
    r_s = (n * r + alpha) / (n + k * alpha)
    mask = p_s > 0
    return float((p_s[mask] * np.log(p_s[mask] / r_s[mask])).sum())


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def prepare_annotations(annotations: pd.DataFrame, abstain_label: str = ABSTAIN) -> pd.DataFrame:
    """Check the columns, normalise types (text values, empty descriptor -> NaN, guidance float) and
    refuse two labels of one image, annotator and attribute. Returns a copy."""
    missing = [c for c in ANNOTATION_COLUMNS if c not in annotations.columns]
    if missing:
        raise UserError(f"annotations lack column(s) {', '.join(missing)}; expected {', '.join(ANNOTATION_COLUMNS)}")
    df = annotations.loc[:, list(ANNOTATION_COLUMNS)].copy()
    for column in ("prompt", "profession", "annotator", "attribute"):
        df[column] = df[column].astype(str)
    df["value"] = df["value"].where(df["value"].notna(), abstain_label).astype(str)
    descriptor = df["descriptor"].astype(object)
    blank = descriptor.isna() | (descriptor.astype(str).str.strip() == "")
    df["descriptor"] = descriptor.where(~blank, np.nan).astype(object)
    df["guidance"] = pd.to_numeric(df["guidance"], errors="raise").astype(float)
    df["template"] = pd.to_numeric(df["template"], errors="raise")
    doubled = df.duplicated(["image_id", "annotator", "attribute"])
    if doubled.any():
        row = df[doubled].iloc[0]
        raise UserError(f"image {row['image_id']!r} has two {row['attribute']} labels from annotator "
                         f"{row['annotator']!r}; give each labeller its own annotator name")
    return df


def _value_sets(df: pd.DataFrame, values: Mapping[str, Sequence[str]] | None,
                abstain_label: str, with_abstention: bool = True) -> pd.DataFrame:
    """(attribute, value) pairs every group is completed with: seen ∪ declared (∪ the abstention label)."""
    pairs = df[["attribute", "value"]].drop_duplicates()
    extra = []
    for attribute in pairs["attribute"].unique():
        if with_abstention:
            extra.append((attribute, abstain_label))
        for value in (values or {}).get(attribute, ()):
            extra.append((attribute, str(value)))
    pairs = pd.concat([pairs, pd.DataFrame(extra, columns=["attribute", "value"])], ignore_index=True)
    return pairs.drop_duplicates().reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Shares
# --------------------------------------------------------------------------------------------


def attribute_shares(annotations: pd.DataFrame, by: Sequence[str] = PROFESSION_KEYS,
                     values: Mapping[str, Sequence[str]] | None = None, abstain_label: str = ABSTAIN,
                     confidence: float = 0.95) -> pd.DataFrame:
    """Share of each perceived attribute value per group, over all images and over determined ones.

    Groups: ``by`` (default profession, descriptor, guidance: templates pooled) x annotator x
    attribute. ``values``: attribute -> the values to report even if never seen (e.g. the portraits
    world's). Columns: the keys, value, is_abstention, count, n_images, n_abstained, n_determined,
    share_of_all (+ ci_low/ci_high), share_of_determined (+ ci_low/ci_high; NaN on the abstention row).
    """
    df = prepare_annotations(annotations, abstain_label)
    keys = [*by, "annotator", "attribute"]
    counts = df.groupby([*keys, "value"], sort=False, dropna=False).size().rename("count").reset_index()
    groups = counts[keys].drop_duplicates()
    full = groups.merge(_value_sets(df, values, abstain_label), on="attribute", how="inner")
    full = full.merge(counts, on=[*keys, "value"], how="left")
    full["count"] = full["count"].fillna(0).astype(np.int64)
    full["is_abstention"] = full["value"] == abstain_label
    return GroupedShares(full, keys, confidence).by_group


def prompt_shares(annotations: pd.DataFrame, **options) -> pd.DataFrame:
    """:func:`attribute_shares` per prompt (keys: prompt, template, profession, descriptor, guidance)."""
    return attribute_shares(annotations, by=PROMPT_KEYS, **options)


def profession_shares(annotations: pd.DataFrame, **options) -> pd.DataFrame:
    """:func:`attribute_shares` per profession, templates pooled (keys: profession, descriptor, guidance)."""
    return attribute_shares(annotations, by=PROFESSION_KEYS, **options)


def abstentions(shares: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per group of a shares table: n_images, n_abstained, abstention_rate with its Wilson interval."""
    return GroupedShares.from_frame(shares, _group_keys(shares), confidence).abstentions()


def _typed_keys(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``frame`` with its key columns as the audit declares them (a missing descriptor stays text)."""
    return frame.assign(**default_key_schema(keys).coerce(frame))


def _group_keys(shares: pd.DataFrame) -> list[str]:
    """The grouping columns of a shares table (everything before ``value``)."""
    columns = list(shares.columns)
    return columns[: columns.index("value")]


# --------------------------------------------------------------------------------------------
# Diversity, distance to parity and to a reference
# --------------------------------------------------------------------------------------------


def _with_reference(determined: pd.DataFrame, keys: list[str], reference: pd.DataFrame) -> pd.DataFrame:
    """Determined rows outer-joined with the reference values of their (profession, attribute).

    A value the model never showed gets count 0; a value the reference lacks gets reference share 0
    when the reference's shares of that attribute sum to 1 (it is complete), else the group is
    marked incomparable (``comparable`` False)."""
    ref = reference[["profession", "attribute", "value", "share"]].rename(columns={"share": "reference_share"})
    ref = ref.assign(value=ref["value"].astype(str), profession=ref["profession"].astype(str))
    ref_total = ref.groupby(["profession", "attribute"])["reference_share"].sum().rename("reference_total")
    groups = determined[keys].drop_duplicates()
    ref_rows = groups.merge(ref, on=["profession", "attribute"], how="inner")
    merged = determined.merge(ref_rows, on=[*keys, "value"], how="outer")
    # An outer merge sorts its keys with missing ones last; the tables put them first, and the
    # amplification's bootstrap draws the groups in this order.
    merged = merged.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)
    merged["count"] = merged["count"].fillna(0)
    merged = merged.merge(ref_total.reset_index(), on=["profession", "attribute"], how="left")
    complete = (merged["reference_total"] - 1.0).abs() <= REFERENCE_SUM_TOLERANCE
    merged["reference_share"] = merged["reference_share"].where(
        merged["reference_share"].notna() | ~complete, 0.0)
    merged["comparable"] = merged.groupby(keys, sort=False, dropna=False)["reference_share"].transform(
        lambda s: bool(s.notna().all()))
    return merged


def _sum_by(frame: pd.DataFrame, keys: list[str], column: str) -> pd.Series:
    return frame.groupby(keys, sort=False, dropna=False)[column].sum()


def diversity(shares: pd.DataFrame, reference: pd.DataFrame | None = None, alpha: float = DEFAULT_ALPHA,
              include_descriptors: bool = True) -> pd.DataFrame:
    """Per group of a shares table: normalised entropy, L1 / MAD / KL to parity, and to ``reference``.

    Computed on the determined shares over the attribute's K values (seen or declared); n_images,
    n_determined and abstention_rate are reported beside. ``reference``: a tidy table from
    :mod:`synthscope.audits.reference` (profession, attribute, value, share); a group whose
    reference is missing or does not cover its values gets NaN there, and so does a prompt that
    names a descriptor. With ``include_descriptors`` False, those prompts are left out altogether.
    """
    keys = _group_keys(shares)
    table = shares if include_descriptors or "descriptor" not in shares else shares[shares["descriptor"].isna()]
    # Groups by number from here: keys may be missing (NaN), which index alignment does not match.
    table = table.assign(_g=table.groupby(keys, sort=False, dropna=False).ngroup())
    det = table[~table["is_abstention"]][["_g", *keys, "value", "count", "n_determined"]].copy()
    first = table[table["is_abstention"]].set_index("_g")[[*keys, "n_images", "n_abstained", "n_determined"]]
    k = det.groupby("_g", sort=False)["value"].count().rename("k_values")
    n = det.groupby("_g", sort=False)["count"].sum()
    det = det.join(k, on="_g").join(n.rename("n"), on="_g")
    det["p"] = det["count"] / det["n"].where(det["n"] > 0)
    det["u"] = 1.0 / det["k_values"]
    det["plogp"] = np.where(det["p"] > 0, det["p"] * np.log(det["p"].where(det["p"] > 0, 1.0)), 0.0)
    det["abs_u"] = (det["p"] - det["u"]).abs()
    det["ps"] = (det["count"] + alpha) / (det["n"] + det["k_values"] * alpha)
    det["kl_u"] = det["ps"] * np.log(det["ps"] / det["u"])
    out = first.join(k)
    out["abstention_rate"] = out["n_abstained"] / out["n_images"].where(out["n_images"] > 0)
    entropy = -_sum_by(det, ["_g"], "plogp")
    out["normalised_entropy"] = entropy / np.log(out["k_values"].where(out["k_values"] > 1))
    out["l1_to_parity"] = _sum_by(det, ["_g"], "abs_u")
    out["mad_to_parity"] = out["l1_to_parity"] / out["k_values"]
    out["kl_to_parity"] = _sum_by(det, ["_g"], "kl_u")
    no_data = out["n_determined"] <= 0
    for column in ("normalised_entropy", "l1_to_parity", "mad_to_parity", "kl_to_parity"):
        out.loc[no_data, column] = np.nan
    if reference is not None and "profession" in keys:
        merged = _with_reference(det[["_g", *keys, "value", "count"]], ["_g", *keys], reference)
        kk = merged.groupby("_g", sort=False)["value"].count()
        nn = merged.groupby("_g", sort=False)["count"].sum()
        merged = merged.join(kk.rename("kk"), on="_g").join(nn.rename("nn"), on="_g")
        merged["p"] = merged["count"] / merged["nn"].where(merged["nn"] > 0)
        merged["abs_r"] = (merged["p"] - merged["reference_share"]).abs()
        denom = merged["nn"] + merged["kk"] * alpha
        merged["ps"] = (merged["count"] + alpha) / denom
        merged["rs"] = (merged["nn"] * merged["reference_share"] + alpha) / denom
        merged["kl_r"] = merged["ps"] * np.log(merged["ps"] / merged["rs"])
        comparable = merged.groupby("_g", sort=False)["comparable"].all() & (nn > 0)
        if "descriptor" in keys:  # a prompt that names a descriptor is not the model's default
            comparable &= first["descriptor"].reindex(comparable.index).isna()
        out["l1_to_reference"] = _sum_by(merged, ["_g"], "abs_r").where(comparable)
        out["mad_to_reference"] = (out["l1_to_reference"] / kk).where(comparable)
        out["kl_to_reference"] = _sum_by(merged, ["_g"], "kl_r").where(comparable)
    out = out.reset_index(drop=True)
    return out.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)


def reference_gap(shares: pd.DataFrame, reference: pd.DataFrame, include_descriptors: bool = False) -> pd.DataFrame:
    """Measured minus reference share for every value the reference has, with the shifted Wilson interval.

    Columns: the keys, value, count, n_determined, share_of_determined (+ ci), reference_share, gap,
    gap_ci_low, gap_ci_high, significant (the interval excludes 0), reference_year, reference_source,
    reference_verified, and where the reference has them, reference_occupation (the table rows behind
    the figure) and reference_note (how it was made: rows combined, rows not published). Prompts with
    a descriptor are left out unless ``include_descriptors``.
    """
    keys = _group_keys(shares)
    table = shares[~shares["is_abstention"]]
    if not include_descriptors and "descriptor" in table:
        table = table[table["descriptor"].isna()]
    ref = reference.rename(columns={"share": "reference_share", "year": "reference_year",
                                    "source": "reference_source", "verified": "reference_verified",
                                    "occupation": "reference_occupation", "note": "reference_note"})
    described = [c for c in ("reference_occupation", "reference_note") if c in ref]
    ref = ref[["profession", "attribute", "value", "reference_share", "reference_year", "reference_source",
               "reference_verified", *described]].assign(value=lambda r: r["value"].astype(str),
                                                         profession=lambda r: r["profession"].astype(str))
    merged = table.merge(ref, on=["profession", "attribute", "value"], how="inner")
    merged["gap"] = merged["share_of_determined"] - merged["reference_share"]
    merged["gap_ci_low"] = merged["share_of_determined_ci_low"] - merged["reference_share"]
    merged["gap_ci_high"] = merged["share_of_determined_ci_high"] - merged["reference_share"]
    merged["significant"] = (merged["gap_ci_low"] > 0) | (merged["gap_ci_high"] < 0)
    columns = [*keys, "value", "count", "n_determined", "share_of_determined", "share_of_determined_ci_low",
               "share_of_determined_ci_high", "reference_share", "gap", "gap_ci_low", "gap_ci_high",
               "significant", "reference_year", "reference_source", "reference_verified", *described]
    return merged[columns].reset_index(drop=True)


def amplification(shares: pd.DataFrame, reference: pd.DataFrame, n_boot: int = 2000, seed: int = 0,
                  confidence: float = 0.95, include_descriptors: bool = False) -> pd.DataFrame:
    """Is the model further from parity than the reference? One row per group the reference covers.

    ``model_l1_to_parity`` and ``reference_l1_to_parity`` over the union of the values of both
    (K of them); ``amplification`` is their difference (> 0: further from parity than the reference,
    e.g. for two values 2 (|p - 1/2| - |r - 1/2|)). The interval is a percentile bootstrap
    (``n_boot`` multinomial resamples of the group's determined counts; the reference is held
    fixed). ``verdict``: "amplified" when the interval lies above 0, "attenuated" below, else
    "not distinguishable". ``same_majority``: the model's most frequent value is the reference's.
    Note that a value with count 0 stays 0 in every resample, so with few images the interval is
    too narrow; see ``n_determined``.
    """
    keys = _group_keys(shares)
    table = shares
    if not include_descriptors and "descriptor" in table:
        table = table[table["descriptor"].isna()]
    kt = table[~table["is_abstention"]]
    merged = _with_reference(kt[[*keys, "value", "count"]], keys, reference)
    rng = np.random.default_rng(seed)
    tail = (1.0 - confidence) / 2.0
    rows = []
    for group, part in merged.groupby(keys, sort=False, dropna=False):
        if not part["comparable"].all():
            continue
        counts = part["count"].to_numpy(dtype=np.int64)
        ref = part["reference_share"].to_numpy(dtype=float)
        n, k = int(counts.sum()), len(counts)
        row = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        row.update(k_values=k, n_determined=n)
        r_l1 = float(np.abs(ref - 1.0 / k).sum())
        if n == 0:
            row.update(model_l1_to_parity=np.nan, reference_l1_to_parity=r_l1, amplification=np.nan,
                       ci_low=np.nan, ci_high=np.nan, verdict="no data", same_majority=np.nan)
            rows.append(row)
            continue
        p = counts / n
        m_l1 = float(np.abs(p - 1.0 / k).sum())
        draws = rng.multinomial(n, p, size=int(n_boot)) / n
        boot = np.abs(draws - 1.0 / k).sum(axis=1) - r_l1
        low, high = (float(np.quantile(boot, tail)), float(np.quantile(boot, 1.0 - tail))) if n_boot else (np.nan,
                                                                                                            np.nan)
        verdict = "amplified" if low > 0 else "attenuated" if high < 0 else "not distinguishable"
        values = part["value"].to_numpy()
        row.update(model_l1_to_parity=m_l1, reference_l1_to_parity=r_l1, amplification=m_l1 - r_l1,
                   ci_low=low, ci_high=high, verdict=verdict,
                   same_majority=bool(values[np.argmax(p)] == values[np.argmax(ref)]))
        rows.append(row)
    columns = [*keys, "k_values", "n_determined", "model_l1_to_parity", "reference_l1_to_parity", "amplification",
               "ci_low", "ci_high", "verdict", "same_majority"]
    return _typed_keys(pd.DataFrame(rows, columns=columns), keys)


# --------------------------------------------------------------------------------------------
# Intersections, phrasing, guidance
# --------------------------------------------------------------------------------------------


def intersectional_table(annotations: pd.DataFrame, attributes: tuple[str, str] = ("gender", "skin_tone"),
                         by: Sequence[str] = PROFESSION_KEYS, min_n: int = MIN_GROUP_N,
                         min_expected: float = MIN_EXPECTED, values: Mapping[str, Sequence[str]] | None = None,
                         abstain_label: str = ABSTAIN, confidence: float = 0.95) -> pd.DataFrame:
    """Counts of each combination of two perceived attributes (e.g. gender x skin tone) per group.

    Only images an annotator labelled for both attributes count; abstentions are a category of their
    own on either side (present when any image has one). Columns: the keys, annotator, the two
    attributes, count, n_images, share (of the group, + Wilson ci), expected (count expected if the two
    were independent: row total x column total / n), small_group (n_images < ``min_n``), low_expected
    (expected < ``min_expected``), small_sample_warning (either).
    """
    a1, a2 = attributes
    if a1 == a2:
        raise UserError("intersectional_table needs two different attributes")
    df = prepare_annotations(annotations, abstain_label)
    keys = [*by, "annotator"]
    meta = df.drop_duplicates(["annotator", "image_id"])[["image_id", *keys]]
    left = df[df["attribute"] == a1][["annotator", "image_id", "value"]].rename(columns={"value": a1})
    right = df[df["attribute"] == a2][["annotator", "image_id", "value"]].rename(columns={"value": a2})
    images = meta.merge(left, on=["annotator", "image_id"]).merge(right, on=["annotator", "image_id"])
    if images.empty:
        return pd.DataFrame(columns=cross_counts_schema(default_key_schema(keys), attributes).names)
    counts = images.groupby([*keys, a1, a2], sort=False, dropna=False).size().rename("count").reset_index()
    # Abstention cells only where some image has one: an always-empty category would only add
    # zero expected counts (and warnings) to every table.
    sets = _value_sets(df[df["attribute"].isin([a1, a2])], values, abstain_label, with_abstention=False)
    v1 = sets[sets["attribute"] == a1][["value"]].rename(columns={"value": a1})
    v2 = sets[sets["attribute"] == a2][["value"]].rename(columns={"value": a2})
    full = counts[keys].drop_duplicates().merge(v1, how="cross").merge(v2, how="cross")
    full = full.merge(counts, on=[*keys, a1, a2], how="left")
    return GroupedCrossCounts(full, keys, (a1, a2), confidence, min_n=min_n, min_expected=min_expected).by_group


def template_spread(annotations: pd.DataFrame, by: Sequence[str] = PROFESSION_KEYS,
                    values: Mapping[str, Sequence[str]] | None = None, abstain_label: str = ABSTAIN) -> pd.DataFrame:
    """How much a share moves with the phrasing: per profession (and descriptor, guidance), annotator,
    attribute and value, the determined share of each template summarised as n_templates, share_mean,
    share_sd (sample sd, NaN for one template), share_min, share_max, share_range and the templates
    giving the min / max. The abstention rate gets the same summary (its row has is_abstention)."""
    per = attribute_shares(annotations, by=[*by, "template"], values=values, abstain_label=abstain_label)
    keys = [*by, "annotator", "attribute", "value", "is_abstention"]
    spread = GroupedShares.from_frame(per, _group_keys(per)).spread("template")
    spread = spread.rename(columns={"n_groups": "n_templates", "mean": "share_mean", "sd": "share_sd",
                                    "minimum": "share_min", "maximum": "share_max", "difference": "share_range",
                                    "min_n_images": "min_images_per_template"})
    return spread.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)


def guidance_sweep(annotations: pd.DataFrame, by: Sequence[str] = ("profession", "descriptor"),
                   values: Mapping[str, Sequence[str]] | None = None, abstain_label: str = ABSTAIN,
                   confidence: float = 0.95) -> pd.DataFrame:
    """Share versus guidance: :func:`attribute_shares` with guidance as the last key, sorted by it, plus
    ``change_from_lowest_guidance`` (share_of_determined minus its value at the lowest guidance of the
    group; for the abstention row, the change of share_of_all)."""
    shares = attribute_shares(annotations, by=[*by, "guidance"], values=values, abstain_label=abstain_label,
                              confidence=confidence)
    return GroupedShares.from_frame(shares, _group_keys(shares), confidence).change("guidance")


def audit_metrics(annotations: pd.DataFrame, reference: pd.DataFrame | None = None,
                  values: Mapping[str, Sequence[str]] | None = None,
                  intersections: Sequence[tuple[str, str]] = (("gender", "skin_tone"),), n_boot: int = 2000,
                  seed: int = 0, alpha: float = DEFAULT_ALPHA, abstain_label: str = ABSTAIN) -> dict[str, pd.DataFrame]:
    """Every table of an audit, by name: shares_by_prompt, shares_by_profession, abstentions, diversity,
    template_spread, guidance_sweep, intersectional (one per pair, stacked, with the pair named), and,
    with a ``reference``, reference_gap and amplification."""
    common = {"values": values, "abstain_label": abstain_label}
    by_profession = attribute_shares(annotations, by=PROFESSION_KEYS, **common)
    tables = {
        "shares_by_prompt": attribute_shares(annotations, by=PROMPT_KEYS, **common),
        "shares_by_profession": by_profession,
        "abstentions": abstentions(by_profession),
        "diversity": diversity(by_profession, reference, alpha=alpha),
        "template_spread": template_spread(annotations, **common),
        "guidance_sweep": guidance_sweep(annotations, **common),
    }
    present = set(prepare_annotations(annotations, abstain_label)["attribute"])
    parts = []
    for a1, a2 in intersections:
        if a1 in present and a2 in present:
            table = intersectional_table(annotations, (a1, a2), **common)
            parts.append(table.rename(columns={a1: "value_1", a2: "value_2"}).assign(attribute_1=a1, attribute_2=a2))
    tables["intersectional"] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if reference is not None:
        tables["reference_gap"] = reference_gap(by_profession, reference)
        tables["amplification"] = amplification(by_profession, reference, n_boot=n_boot, seed=seed)
    return tables


# --------------------------------------------------------------------------------------------
# Validity against known truth
# --------------------------------------------------------------------------------------------


@dataclass
class Confusion:
    """An annotator against known truth for one attribute.

    ``matrix``: counts, rows = true values, columns = annotated values (:data:`ABSTAIN` always a column).
    ``accuracy`` = correct / n (an abstention counts as not correct) with its Wilson interval
    (``ci_low``, ``ci_high``); ``accuracy_of_determined`` = correct / (n - abstained) with its own.
    """

    attribute: str
    annotator: str
    matrix: pd.DataFrame
    n: int
    n_correct: int
    n_abstained: int
    accuracy: float
    ci_low: float
    ci_high: float
    accuracy_of_determined: float
    determined_ci_low: float
    determined_ci_high: float
    confidence: float = 0.95

    @property
    def abstention_rate(self) -> float:
        """n_abstained / n."""
        return self.n_abstained / self.n if self.n else math.nan

    def summary(self) -> dict[str, Any]:
        """The numbers as one flat dict (for a table row or JSON)."""
        return {"annotator": self.annotator, "attribute": self.attribute, "n": self.n, "n_correct": self.n_correct,
                "n_abstained": self.n_abstained, "abstention_rate": self.abstention_rate, "accuracy": self.accuracy,
                "accuracy_ci_low": self.ci_low, "accuracy_ci_high": self.ci_high,
                "accuracy_of_determined": self.accuracy_of_determined,
                "accuracy_of_determined_ci_low": self.determined_ci_low,
                "accuracy_of_determined_ci_high": self.determined_ci_high, "confidence_level": self.confidence}


def confusion(annotations: pd.DataFrame, truth: pd.DataFrame, attribute: str, annotator: str | None = None,
              confidence: float = 0.95) -> Confusion:
    """Compare one annotator's labels of ``attribute`` with known truth.

    ``truth``: image_id plus a column named ``attribute`` (wide, e.g. :func:`truth_from_corpus`), or the
    tidy form (image_id, attribute, value). Images with an empty truth or no label are left out.
    ``annotator`` picks one when the table holds several.
    """
    table = annotations[annotations["attribute"] == attribute]
    names = list(dict.fromkeys(table["annotator"]))
    if annotator is None:
        if len(names) != 1:
            raise UserError(f"the annotations hold {len(names)} annotators of {attribute!r} "
                             f"({', '.join(map(str, names)) or 'none'}); pass annotator=")
        annotator = names[0]
    table = table[table["annotator"] == annotator]
    if table["image_id"].duplicated().any():
        raise UserError(f"annotator {annotator!r} labelled an image twice for {attribute!r}")
    if attribute in truth.columns:
        known = truth[["image_id", attribute]].rename(columns={attribute: "truth"})
    elif {"attribute", "value"} <= set(truth.columns):
        known = truth[truth["attribute"] == attribute][["image_id", "value"]].rename(columns={"value": "truth"})
    else:
        raise UserError(f"truth has no column {attribute!r} (nor attribute/value columns)")
    known = known[known["truth"].notna()].assign(truth=lambda t: t["truth"].astype(str).str.strip())
    known = known[known["truth"] != ""]
    if known["image_id"].duplicated().any():
        raise UserError(f"truth gives image {known['image_id'][known['image_id'].duplicated()].iloc[0]!r} twice")
    pairs = table[["image_id", "value"]].merge(known, on="image_id", how="inner")
    pairs["value"] = pairs["value"].fillna(ABSTAIN).astype(str)
    rows = value_order(attribute, set(pairs["truth"]))
    extra = value_order(attribute, set(pairs["value"]) - set(rows) - {ABSTAIN})
    columns = [*rows, *extra, ABSTAIN]
    matrix = pd.crosstab(pairs["truth"], pairs["value"]).reindex(index=rows, columns=columns, fill_value=0)
    matrix = matrix.astype(np.int64)
    matrix.index.name, matrix.columns.name = "true", "annotated"
    n = len(pairs)
    correct = int((pairs["value"] == pairs["truth"]).sum())
    abstained = int((pairs["value"] == ABSTAIN).sum())
    determined = n - abstained
    # NaN bounds (not None) where nothing was compared: the fields are floats.
    (low, d_low), (high, d_high) = (map(float, b) for b in wilson_bounds([correct, correct], [n, determined],
                                                                          confidence))
    return Confusion(attribute=attribute, annotator=str(annotator), matrix=matrix, n=n, n_correct=correct,
                     n_abstained=abstained, accuracy=correct / n if n else math.nan, ci_low=low, ci_high=high,
                     accuracy_of_determined=correct / determined if determined else math.nan,
                     determined_ci_low=d_low, determined_ci_high=d_high, confidence=confidence)
