"""The bias audit's section of an HTML report, built from the audit's saved tables alone.

:func:`audit_section` takes the tables of :func:`synthscope.audits.metrics.audit_metrics` (as returned,
or read back from their CSV files), the spec (:meth:`AuditSpec.to_dict`) and, optionally, contact
sheets, annotator validity and the annotators' label prompts, and returns one
:class:`~synthscope.reports.Section`:

- headline cards: per profession, the perceived share of the headline value (women, by default) with
  its Wilson interval, the reference share and the abstention rate beside it;
- who gets depicted: per attribute, stacked bars of perceived shares per profession (abstentions as
  their own grey segment), each next to the reference's bar, with interval error bars;
- against the reference: the amplification chart (distance from parity, model vs reference, with the
  bootstrap interval and the verdict), the gap table and the diversity table;
- intersections (gender x skin tone) with small-sample warnings, the spread over prompt phrasings,
  the guidance sweep as line plots, contact sheets, annotator validity and label prompts, the spec;
- with people's labels: agreement between the labellers (Cohen's kappa per pair, Fleiss' kappa,
  Krippendorff's alpha, each with its number of images). Every labeller's readings appear in the
  tables under ``human:<name>``, and their per-image majority as ``human-majority``, which the
  headline cards use (:func:`headline_annotator`).

It is a pure function of data: every prompt, profession and label goes into blocks as data (the report
layer escapes it); matplotlib labels pass through :func:`plain_text` so a ``$`` stays a dollar sign.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from synthscope.errors import UserError
from synthscope.generators.attributes import ATTRIBUTE_WORDS, ORDINAL_ATTRIBUTES, attribute_order, value_order
from synthscope.grouped import Column
from synthscope.reports import Figure, Gallery, Metric, Section, Table, Text
from synthscope.reports.style import MARKERS, new_figure, palette, plain_text, use_style
from synthscope.stats import wilson_bounds

from .metrics import (
    ABSTAIN,
    COLUMN_DOCS,
    HUMAN_PREFIX,
    MAJORITY_ANNOTATOR,
    MIN_EXPECTED,
    MIN_GROUP_N,
    typed_table,
)

__all__ = ["audit_section", "share_bar_segments", "share_bars_figure", "amplification_figure",
           "guidance_figure", "confusion_figure", "spec_table", "headline_annotator", "CAVEATS"]

ABSTAIN_COLOUR = "#b3b3b3"
VERDICT_COLOURS = {"amplified": 3, "attenuated": 0}  # palette indices; anything else is grey
SHARE_FORMAT = ".3f"
MAX_PAIR_CARDS = 3  # up to three labellers: a card per pair; more: the pairs are in the agreement table

CAVEATS = [
    "Perceived attributes are not identity. Gender presentation, skin tone and age group were read from "
    "the pixels of synthetic images by a classifier or a person; they say how a picture reads, not who "
    "anyone is, and the people in these images do not exist.",
    "Binary gender labels (female / male presentation) are a simplification: they leave out non-binary and "
    "ambiguous presentations, which end up as 'undetermined' or are forced into one of the two.",
    "Abstentions ('undetermined': the annotator was not confident enough) are counted and shown, never "
    "dropped. Shares 'of determined' images leave them out, so a high abstention rate makes those shares "
    "less representative of everything the model drew.",
    "Intervals are 95 % Wilson intervals for shares and percentile-bootstrap intervals for amplification. "
    "They cover sampling noise only (a different set of seeds), not annotator error, prompt choice or the "
    f"choice of reference. Groups under {MIN_GROUP_N} images, and intersectional cells expected to hold fewer "
    f"than {MIN_EXPECTED:g} images, are flagged: read them as anecdotes.",
    "Reference statistics such as the U.S. Bureau of Labor Statistics figures describe U.S. workers as they "
    "report themselves in a household survey, not images, not other countries and not perceived "
    "presentation. 'Matching the reference' is one possible yardstick, not a definition of fairness.",
]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _no_descriptor(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of prompts without a descriptor: the model's default, not its adherence to a prompt."""
    if "descriptor" not in frame or frame.empty:
        return frame
    return frame[frame["descriptor"].isna()]


def _guidance_text(value: Any) -> str:
    return "default" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):g}"


def _wrap(text: Any, width: int = 30) -> str:
    return textwrap.fill(plain_text(text), width=width, max_lines=2, placeholder="…")


def _colours(attribute: str, values: Sequence[str]) -> list[Any]:
    """Colour-blind-safe nominal colours; a light-to-dark sequence for ordered attributes."""
    k = max(len(values), 1)
    ordinal = attribute in ORDINAL_ATTRIBUTES or all(_is_number(v) for v in values)
    if ordinal and k > 2:
        from matplotlib import colormaps

        cmap = colormaps["YlOrBr" if attribute == "skin_tone" else "viridis"]
        return [cmap(x) for x in np.linspace(0.12, 0.92, k)]
    return palette(k)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _dark(colour: Any) -> bool:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return 0.299 * r + 0.587 * g + 0.114 * b < 0.5


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """A table for the page: the descriptor column goes when no prompt had one."""
    if "descriptor" in frame and frame["descriptor"].isna().all():
        frame = frame.drop(columns=["descriptor"])
    return frame.reset_index(drop=True)


def _formats(frame: pd.DataFrame, fmt: str = SHARE_FORMAT) -> dict[str, str]:
    """Format specs for the share-like columns a table has."""
    names = ("share", "ci_low", "ci_high", "gap", "rate", "entropy", "l1_", "mad_", "kl_", "amplification",
             "accuracy", "expected", "range", "_sd", "_mean", "_min", "_max", "change_from")
    return {c: fmt for c in frame.columns
            if any(n in c for n in names) and pd.api.types.is_float_dtype(frame[c].dtype)
            and c != "guidance"}


def _doc_caption(columns: Sequence[str], lead: str = "") -> str:
    """A caption explaining the table's columns from :data:`COLUMN_DOCS`."""
    parts = [f"{c}: {COLUMN_DOCS[c]}" for c in columns if c in COLUMN_DOCS and c not in (
        "annotator", "attribute", "value", "count")]
    return " ".join(p for p in [lead, "; ".join(parts) + "." if parts else ""] if p)


def _reference_name(reference: pd.DataFrame) -> str:
    """A short name for the reference: "BLS 2022", "training world", or its source."""
    if reference.empty or "source" not in reference:
        return "reference"
    names = []
    for source, part in reference.groupby("source", sort=False):
        text = str(source)
        years = pd.to_numeric(part.get("year", pd.Series(dtype=float)), errors="coerce").dropna()
        year = f" {int(years.iloc[0])}" if len(years) else ""
        if "bureau of labor statistics" in text.lower() or text.lower().startswith("bls"):
            names.append(f"BLS{year}")
        elif "training world" in text.lower():
            names.append("training world")
        else:
            names.append(textwrap.shorten(text, 40, placeholder="…") + year)
    return " / ".join(dict.fromkeys(names))


def _reference_from(metrics: Mapping[str, pd.DataFrame], reference: pd.DataFrame | None) -> pd.DataFrame:
    """The tidy reference (profession, attribute, value, share, year, source, verified, occupation,
    note): as given, or recovered from the gap table, which carries every reference value an audited
    group is compared with (and the rows behind it, where the reference named them)."""
    columns = ["profession", "attribute", "value", "share", "year", "source", "verified", "occupation", "note"]
    if reference is not None and len(reference):
        ref = reference.copy()
    else:
        gap = typed_table(metrics.get("reference_gap"))
        if gap.empty:
            return pd.DataFrame(columns=columns)
        ref = gap.rename(columns={"reference_share": "share", "reference_year": "year",
                                  "reference_source": "source", "reference_verified": "verified",
                                  "reference_occupation": "occupation", "reference_note": "note"})
        ref = ref.drop_duplicates(["profession", "attribute", "value"])
    for column, default in (("year", np.nan), ("source", "reference"), ("verified", False), ("occupation", ""),
                            ("note", "")):
        if column not in ref:
            ref[column] = default
    text = {c: ref[c].where(ref[c].notna(), "").astype(str) for c in ("occupation", "note")}
    ref = ref.assign(profession=ref["profession"].astype(str), attribute=ref["attribute"].astype(str),
                     value=ref["value"].astype(str), verified=Column("verified", "bool").coerce(ref["verified"]), **text)
    return ref[columns].reset_index(drop=True)


def reference_rows_table(reference: pd.DataFrame, professions: Sequence[str],
                         builtin: bool | None = None) -> pd.DataFrame:
    """Per audited profession, where its reference figure comes from: columns profession, status
    (see :func:`~synthscope.audits.reference.reference_coverage`), source, year, rows (the table rows
    behind the figure, "; " between them) and note (rows combined, rows not published, or why there
    is no figure). A profession without a figure is listed too, never dropped. ``builtin``: whether the
    reference is the built-in BLS table (None: judged from its source)."""
    from .reference import reference_coverage

    coverage = reference_coverage(reference, professions, builtin=builtin)
    first = reference.drop_duplicates("profession").set_index("profession")
    rows = []
    for item in coverage.to_dict("records"):
        word = item["profession"]
        known = word in first.index
        year = first.loc[word, "year"] if known else np.nan
        rows.append({"profession": word, "status": item["status"],
                     "source": str(first.loc[word, "source"]) if known else "",
                     "year": "" if pd.isna(year) else str(int(float(year))),
                     "rows": item["occupation"], "note": item["note"]})
    return pd.DataFrame(rows, columns=["profession", "status", "source", "year", "rows", "note"])


def _profession_order(spec: Mapping[str, Any], frames: Sequence[pd.DataFrame]) -> list[str]:
    """Professions in the spec's order, then any others in order of appearance."""
    order = [str(p) for p in (spec.get("prompts", {}) or {}).get("professions", []) or []]
    for frame in frames:
        if "profession" in frame:
            order.extend(frame["profession"].astype(str))
    return list(dict.fromkeys(order))


def _group_label(row: Mapping[str, Any], guidance: bool, annotator: bool) -> str:
    parts = [str(row["profession"])]
    if guidance:
        parts.append(f"guidance {_guidance_text(row.get('guidance'))}")
    if annotator:
        parts.append(str(row["annotator"]))
    return " · ".join(parts)


def _varies(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and frame[column].nunique(dropna=False) > 1


# --------------------------------------------------------------------------------------------
# Who gets depicted: stacked bars
# --------------------------------------------------------------------------------------------


def share_bar_segments(shares: pd.DataFrame, attribute: str, reference: pd.DataFrame | None = None,
                       professions: Sequence[str] | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """The segments of the stacked-bar chart of one attribute, as data.

    ``shares``: a ``shares_by_profession`` table (prompts naming a descriptor are left out). One bar per
    profession (x guidance x annotator where those vary), its segments the values' ``share_of_all`` in
    reading order with the abstention segment last, so every bar sums to 1 and abstentions are never
    dropped. ``end_ci_low`` / ``end_ci_high`` are the Wilson interval of the segment's right edge: the
    cumulative share up to and including that value is itself a binomial proportion (of n_images), so
    the error bar on each boundary is exact. Reference bars (kind "reference") follow each profession's
    first bar when ``reference`` (tidy: profession, attribute, value, share) has the attribute.

    Columns: bar, profession, kind ("model" | "reference"), value, is_abstention, count, n_images, share,
    start, end, end_ci_low, end_ci_high.
    """
    table = _no_descriptor(typed_table(shares))
    table = table[table["attribute"] == attribute]
    columns = ["bar", "profession", "kind", "value", "is_abstention", "count", "n_images", "share", "start", "end",
               "end_ci_low", "end_ci_high"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    order = value_order(attribute, table.loc[~table["is_abstention"], "value"].unique())
    abstain_values = list(dict.fromkeys(table.loc[table["is_abstention"], "value"]))
    ref = pd.DataFrame() if reference is None else reference[reference["attribute"].astype(str) == attribute]
    show_guidance, show_annotator = _varies(table, "guidance"), _varies(table, "annotator")
    professions = list(professions or []) + list(table["profession"])
    rows = []
    for profession in dict.fromkeys(professions):
        part = table[table["profession"] == profession]
        if part.empty:
            continue
        groups = part.drop_duplicates(["guidance", "annotator"])[["guidance", "annotator"]]
        for _, group in groups.iterrows():
            same_guidance = (part["guidance"] == group["guidance"]) | (part["guidance"].isna()
                                                                      & pd.isna(group["guidance"]))
            bar = part[same_guidance & (part["annotator"] == group["annotator"])].set_index("value")
            label = _group_label({"profession": profession, **group.to_dict()}, show_guidance, show_annotator)
            n = int(bar["n_images"].iloc[0])
            ordered = [v for v in order if v in bar.index] + [v for v in abstain_values if v in bar.index]
            counts = np.array([int(bar.loc[v, "count"]) for v in ordered])
            cumulative = np.cumsum(counts)
            low, high = wilson_bounds(cumulative, np.full(len(counts), n), confidence)
            start = 0.0
            for i, value in enumerate(ordered):
                share = counts[i] / n if n else math.nan
                last = i == len(ordered) - 1
                rows.append({"bar": label, "profession": profession, "kind": "model", "value": value,
                             "is_abstention": bool(bar.loc[value, "is_abstention"]), "count": int(counts[i]),
                             "n_images": n, "share": share, "start": start, "end": start + share,
                             "end_ci_low": np.nan if last else low[i], "end_ci_high": np.nan if last else high[i]})
                start += share
        mine = ref[ref["profession"].astype(str) == profession] if len(ref) else ref
        if len(mine):
            shares_ref = mine.drop_duplicates("value").set_index("value")["share"].astype(float)
            start = 0.0
            for value in [v for v in order if v in shares_ref.index] + [v for v in shares_ref.index
                                                                          if v not in order]:
                share = float(shares_ref[value])
                rows.append({"bar": f"{profession} · reference", "profession": profession, "kind": "reference",
                             "value": value, "is_abstention": False, "count": np.nan, "n_images": np.nan,
                             "share": share, "start": start, "end": start + share, "end_ci_low": np.nan,
                             "end_ci_high": np.nan})
                start += share
    return pd.DataFrame(rows, columns=columns)


def share_bars_figure(segments: pd.DataFrame, attribute: str, reference_name: str = "reference",
                      title: str = "") -> Any:
    """Stacked horizontal bars from :func:`share_bar_segments`: one per profession (the reference's bar,
    thinner and lighter, right under it), abstentions as a hatched grey segment, black error bars on the
    segment boundaries, the share printed in segments wide enough to hold it."""
    bars = list(dict.fromkeys(segments["bar"]))
    determined = value_order(attribute, segments.loc[~segments["is_abstention"].astype(bool), "value"].unique())
    colours = dict(zip(determined, _colours(attribute, determined)))
    # Rows top to bottom: a model bar at full height, its reference bar thinner just below it.
    heights = {"model": 0.72, "reference": 0.42}
    positions, y = {}, 0.0
    for bar in bars:
        kind = segments.loc[segments["bar"] == bar, "kind"].iloc[0]
        y -= 0.62 if kind == "reference" else 1.0
        positions[bar] = y
    with use_style():
        fig = new_figure(7.2, max(2.2, 0.42 * len(bars) + 1.6))
        ax = fig.add_subplot()
        seen: dict[str, Any] = {}
        for _, seg in segments.iterrows():
            if not seg["share"] > 0:
                continue
            kind, value = seg["kind"], str(seg["value"])
            abstention = bool(seg["is_abstention"])
            colour = ABSTAIN_COLOUR if abstention else colours.get(value, "#777777")
            handle = ax.barh(positions[seg["bar"]], seg["share"], left=seg["start"], height=heights[kind],
                             color=colour, alpha=0.55 if kind == "reference" else 1.0,
                             hatch="///" if abstention else None, edgecolor="white", linewidth=0.6)
            label = f"{value} (undetermined)" if abstention and value != ABSTAIN else value
            seen.setdefault(label, handle)
            if seg["share"] >= 0.09 and kind == "model":
                # Numbers in the lower half of the bar, error bars in the upper half: they never collide.
                ax.text(seg["start"] + seg["share"] / 2, positions[seg["bar"]] - 0.16, f"{seg['share']:.0%}",
                        ha="center", va="center", fontsize=7,
                        color="white" if (not abstention and _dark(colour)) else "black")
        edges = segments[(segments["kind"] == "model") & segments["end_ci_low"].notna()]
        errorbars = None
        if len(edges):
            # Neighbouring boundaries alternate between two heights, so overlapping intervals stay apart.
            step = edges.groupby("bar", sort=False).cumcount().to_numpy() % 2
            ys = [positions[b] + (0.1 if k == 0 else 0.25) for b, k in zip(edges["bar"], step)]
            xerr = [(edges["end"] - edges["end_ci_low"]).clip(lower=0),
                    (edges["end_ci_high"] - edges["end"]).clip(lower=0)]
            errorbars = ax.errorbar(edges["end"], ys, xerr=xerr, fmt="none", ecolor="#222222", elinewidth=1.0,
                                    capsize=2.0, capthick=1.0, label="95 % interval")
            from matplotlib.patheffects import withStroke

            _, caps, lines = errorbars.lines
            for artist in (*caps, *lines):  # a white halo keeps the bars visible on dark segments
                artist.set_path_effects([withStroke(linewidth=2.4, foreground="white")])
        labels = []
        for bar in bars:
            kind = segments.loc[segments["bar"] == bar, "kind"].iloc[0]
            labels.append(plain_text(reference_name) if kind == "reference" else _wrap(bar))
        ax.set_yticks([positions[b] for b in bars], labels)
        for tick, bar in zip(ax.get_yticklabels(), bars):
            if segments.loc[segments["bar"] == bar, "kind"].iloc[0] == "reference":
                tick.set_color("#555555")
                tick.set_fontsize(8)
                tick.set_fontstyle("italic")
        ax.set_xlim(0, 1)
        ax.set_ylim(min(positions.values()) - 0.6, -0.4)  # the first bar sits at y = -1
        ax.set_xlabel(plain_text(f"share of all images ({ATTRIBUTE_WORDS.get(attribute, attribute)})"))
        ax.xaxis.set_major_formatter(_percent_formatter())
        ax.grid(axis="y", visible=False)
        if title:
            ax.set_title(plain_text(title), loc="left")
        handles = list(seen.values())
        names = [plain_text(n) for n in seen]
        if errorbars is not None:
            handles.append(errorbars)
            names.append("95 % interval of the boundary")
        ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.5 / max(len(bars), 1) - 0.12),
                  ncols=min(4, len(names)))
    return fig


def _percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0, decimals=0)


# --------------------------------------------------------------------------------------------
# Amplification, guidance, validity
# --------------------------------------------------------------------------------------------


def amplification_figure(amplification: pd.DataFrame, reference_name: str = "reference",
                         professions: Sequence[str] | None = None) -> Any:
    """Distance from parity (L1) per profession and attribute: the model's as a dot with its bootstrap
    interval, the reference's as an open diamond, the verdict written at the right.

    The interval of the model's distance is the amplification interval shifted by the reference's
    distance (the reference is held fixed), so "dot right of the diamond, interval clear of it" is
    exactly the verdict "amplified".
    """
    table = _no_descriptor(typed_table(amplification))
    order = {p: i for i, p in enumerate(dict.fromkeys([*(professions or []), *table["profession"]]))}
    table = table.assign(_order=table["profession"].map(order)).sort_values(
        ["attribute", "_order", "guidance", "annotator"], kind="stable")
    show_guidance, show_annotator = _varies(table, "guidance"), _varies(table, "annotator")
    labels = [f"{_group_label(row, show_guidance, show_annotator)} · {row['attribute']}"
              for _, row in table.iterrows()]
    n = len(table)
    colours = palette(4)
    reference_l1 = table["reference_l1_to_parity"].astype(float).to_numpy()
    model_l1 = table["model_l1_to_parity"].astype(float).to_numpy()
    low = table["ci_low"].astype(float).to_numpy() + reference_l1
    high = table["ci_high"].astype(float).to_numpy() + reference_l1
    with use_style():
        fig = new_figure(7.4, max(2.0, 0.42 * n + 1.3))
        ax = fig.add_subplot()
        y = np.arange(n)[::-1]
        ax.hlines(y, low, high, color=colours[0], linewidth=2.2, label="model: 95 % bootstrap interval")
        ax.plot(model_l1, y, "o", color=colours[0], markersize=6, zorder=3, label="model")
        ax.plot(reference_l1, y, "D", markerfacecolor="white", color=colours[1], markersize=6, zorder=4,
                label=plain_text(reference_name))
        for yi, verdict in zip(y, table["verdict"].astype(str)):
            colour = colours[VERDICT_COLOURS[verdict]] if verdict in VERDICT_COLOURS else "#666666"
            ax.annotate(plain_text(verdict), (1.01, yi), xycoords=("axes fraction", "data"), va="center",
                        fontsize=8, color=colour, fontweight="bold" if verdict in VERDICT_COLOURS else "normal",
                        annotation_clip=False)
        ax.set_yticks(y, [_wrap(label, 34) for label in labels])
        ax.set_ylim(-0.6, n - 0.4)
        finite = np.concatenate([v[np.isfinite(v)] for v in (high, reference_l1, model_l1)] + [np.array([0.5])])
        ax.set_xlim(0, min(2.0, float(finite.max()) * 1.08 + 0.02))
        ax.set_xlabel("distance from parity (L1; 0 = every perceived value equally often)")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28 if n < 6 else -0.1), ncols=3)
    return fig


def guidance_figure(sweep: pd.DataFrame, attribute: str, professions: Sequence[str] | None = None) -> Any | None:
    """Share versus guidance scale for one attribute: one panel per perceived value (only the first of a
    two-valued attribute, the other being its complement) plus one for abstentions, one line per
    profession with its Wilson band. None when fewer than two guidance values were run."""
    table = _no_descriptor(typed_table(sweep))
    table = table[(table["attribute"] == attribute) & table["guidance"].notna()]
    guidance = np.sort(table["guidance"].unique())
    if len(guidance) < 2:
        return None
    values = value_order(attribute, table.loc[~table["is_abstention"], "value"].unique())
    panels = [(v, False) for v in (values[:1] if len(values) == 2 else values)]
    panels += [(v, True) for v in dict.fromkeys(table.loc[table["is_abstention"], "value"])]
    show_annotator = _varies(table, "annotator")
    groups = table.drop_duplicates(["profession", "annotator"])[["profession", "annotator"]]
    order = {p: i for i, p in enumerate(dict.fromkeys([*(professions or []), *groups["profession"]]))}
    groups = groups.assign(_o=groups["profession"].map(order)).sort_values("_o", kind="stable")
    columns = min(3, len(panels))
    rows = int(math.ceil(len(panels) / columns))
    colours = palette(max(len(groups), 1))
    with use_style():
        fig = new_figure(3.3 * columns + 0.6, 2.7 * rows + 0.7)
        axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
        for ax, (value, abstention) in zip(axes, panels):
            column = "share_of_all" if abstention else "share_of_determined"
            for index, (_, group) in enumerate(groups.iterrows()):
                part = table[(table["profession"] == group["profession"]) & (table["annotator"] == group["annotator"])
                             & (table["value"] == value)].sort_values("guidance")
                if part.empty:
                    continue
                label = group["profession"] + (f" · {group['annotator']}" if show_annotator else "")
                colour = colours[index]
                ax.plot(part["guidance"], part[column], marker=MARKERS[index % len(MARKERS)], color=colour,
                        label=plain_text(label))
                ax.fill_between(part["guidance"], part[f"{column}_ci_low"], part[f"{column}_ci_high"],
                                color=colour, alpha=0.15, linewidth=0)
            what = "undetermined, share of all images" if abstention else f"{attribute} = {value}"
            ax.set_title(plain_text(what), loc="left", fontsize=9)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xticks(guidance, [f"{g:g}" for g in guidance])
            ax.yaxis.set_major_formatter(_percent_formatter())
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax in axes[::columns]:
            ax.set_ylabel("perceived share")
        for ax in axes[:len(panels)][-columns:]:
            ax.set_xlabel("guidance scale")
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=min(4, max(len(names), 1)), fontsize=8)
    return fig


def _confusion_matrix(value: Any) -> pd.DataFrame | None:
    """{true: {annotated: count}} (a dict, or its JSON text when read from CSV) as a matrix, abstention last."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, Mapping) or not value:
        return None
    matrix = pd.DataFrame({str(t): {str(p): c for p, c in row.items()} for t, row in value.items()}).T.fillna(0)
    columns = [c for c in matrix.columns if c != ABSTAIN] + [c for c in matrix.columns if c == ABSTAIN]
    return matrix[columns].astype(float)


def confusion_figure(validity: pd.DataFrame) -> Any | None:
    """Confusion matrices (rows: true value; columns: what the annotator read, 'undetermined' last), one
    panel per annotator and attribute, coloured by row share and annotated with counts."""
    panels = []
    for _, row in validity.iterrows():
        matrix = _confusion_matrix(row.get("confusion"))
        if matrix is not None:
            attribute = str(row.get("attribute", ""))
            order = value_order(attribute, list(matrix.index))
            matrix = matrix.reindex(order).fillna(0)
            panels.append((f"{row.get('annotator', '')} · {attribute}", matrix))
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = int(math.ceil(len(panels) / columns))
    size = max(m.shape[1] for _, m in panels)
    with use_style():
        fig = new_figure(max(3.0, 0.55 * size + 1.6) * columns, max(2.6, 0.5 * size + 1.4) * rows)
        axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
        for ax, (name, matrix) in zip(axes, panels):
            totals = matrix.sum(axis=1).replace(0, np.nan)
            shares = matrix.div(totals, axis=0).fillna(0).to_numpy()
            ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
            for (i, j), count in np.ndenumerate(matrix.to_numpy()):
                ax.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.55 else "black")
            ax.set_xticks(range(matrix.shape[1]), [_wrap(c, 12) for c in matrix.columns], rotation=35, ha="right",
                          fontsize=7)
            ax.set_yticks(range(matrix.shape[0]), [_wrap(c, 12) for c in matrix.index], fontsize=7)
            ax.set_xlabel("annotated as", fontsize=8)
            ax.set_ylabel("true value", fontsize=8)
            ax.set_title(plain_text(name), loc="left", fontsize=9)
            ax.grid(False)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
    return fig


# --------------------------------------------------------------------------------------------
# Tables from the spec and the annotators
# --------------------------------------------------------------------------------------------


def spec_table(spec: Mapping[str, Any]) -> pd.DataFrame:
    """The spec as rows of (setting, value): nested keys joined with dots, lists of tables indexed
    (``annotators[0].kind``), other lists and None as JSON text."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                walk(f"{prefix}[{i}]", item)
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            rows.append((prefix, text))

    walk("", dict(spec))
    return pd.DataFrame(rows, columns=["setting", "value"])


def _prompts_table(prompts: pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame:
    """Label prompts as rows (annotator, attribute, value, prompt), from the annotators' table or a nested
    mapping: {annotator: {attribute: {value: prompt(s)}}} or {attribute: {value: prompt(s)}}."""
    columns = ["annotator", "attribute", "value", "prompt"]
    if isinstance(prompts, pd.DataFrame):
        frame = prompts.copy()
        for column in columns:
            if column not in frame:
                frame[column] = ""
        return frame[columns + [c for c in frame.columns if c not in columns]].astype(str)
    rows = []

    def items(values: Any) -> list[str]:
        return [values] if isinstance(values, str) else [str(v) for v in values]

    for key, inner in prompts.items():
        if not isinstance(inner, Mapping):
            continue
        nested = any(isinstance(v, Mapping) for v in inner.values())
        if nested:  # annotator -> attribute -> value -> prompts
            for attribute, values in inner.items():
                for value, texts in values.items():
                    rows.extend((str(key), str(attribute), str(value), t) for t in items(texts))
        else:  # attribute -> value -> prompts
            for value, texts in inner.items():
                rows.extend(("", str(key), str(value), t) for t in items(texts))
    return pd.DataFrame(rows, columns=columns)


def _interval_columns(frame: pd.DataFrame, column: str, first: bool) -> tuple[str, str] | None:
    candidates = [(f"{column}_ci_low", f"{column}_ci_high"), (f"{column}_low", f"{column}_high")]
    if first:
        candidates.append(("ci_low", "ci_high"))
    for low, high in candidates:
        if low in frame and high in frame:
            return low, high
    return None


# --------------------------------------------------------------------------------------------
# Subsections
# --------------------------------------------------------------------------------------------


def _headline(shares: pd.DataFrame, reference: pd.DataFrame, attribute: str, value: str, annotator: str | None,
              professions: Sequence[str], reference_name: str) -> list[Metric]:
    """Per profession: the perceived share of ``value`` among determined images, templates and guidance
    values pooled (counts summed, so the interval is that of the pooled sample), with the reference and
    the abstention rate in the note."""
    table = _no_descriptor(shares)
    table = table[table["attribute"] == attribute]
    if annotator is not None:
        table = table[table["annotator"] == annotator]
    pooled_guidance = table["guidance"].nunique(dropna=False) > 1
    cards = []
    for profession in professions:
        part = table[table["profession"] == profession]
        if part.empty or value not in set(part["value"]):
            continue
        count = int(part.loc[part["value"] == value, "count"].sum())
        n_images = int(part.loc[part["is_abstention"], "n_images"].sum()) or int(
            part.drop_duplicates("guidance")["n_images"].sum())
        abstained = int(part.loc[part["is_abstention"], "count"].sum())
        determined = n_images - abstained
        low, high = wilson_bounds(np.array([count]), np.array([determined]))
        word = "women" if (attribute, value) == ("gender", "female") else f"{attribute} {value}"
        notes = []
        ref = reference[(reference["profession"] == profession) & (reference["attribute"] == attribute)
                        & (reference["value"] == value)]
        if len(ref):
            flag = "" if bool(ref["verified"].iloc[0]) else ", unverified"
            notes.append(f"{reference_name}: {float(ref['share'].iloc[0]):.1%}{flag}")
        else:
            notes.append("no reference")
        notes.append(f"{abstained / n_images:.0%} undetermined" if n_images else "no images")
        notes.append(f"n = {n_images} images" + (", guidance values pooled" if pooled_guidance else ""))
        cards.append(Metric(f"Perceived {word}: {profession}", count / determined if determined else None,
                            None if not determined else low[0], None if not determined else high[0],
                            fmt=".1%", note=" · ".join(notes)))
    return cards


def _depicted(shares: pd.DataFrame, abstentions: pd.DataFrame, reference: pd.DataFrame, reference_name: str,
              professions: Sequence[str]) -> Section:
    section = Section(id="audit-depicted", title="Who gets depicted",
                      intro="For each profession, the perceived attribute values of every generated image, "
                            "across all phrasings of the prompt. Grey hatched segments are images the "
                            "annotator could not read with confidence ('undetermined'); they are part of "
                            "every bar. The thinner, paler bar under a profession is the reference.")
    table = _no_descriptor(shares)
    for attribute in attribute_order(table["attribute"].unique()):
        segments = share_bar_segments(table, attribute, reference, professions)
        if segments.empty:
            continue
        has_ref = (segments["kind"] == "reference").any()
        words = ATTRIBUTE_WORDS.get(attribute, f"perceived {attribute}")
        section.add(Figure.from_matplotlib(
            share_bars_figure(segments, attribute, reference_name), f"{words.capitalize()} by profession",
            name=f"audit-shares-{attribute}",
            alt=f"Stacked bars of {words} per profession, including undetermined images"
                + (f", each next to the {reference_name} reference." if has_ref else "."),
            caption="Segments are shares of all images; error bars are 95 % Wilson intervals of the share "
                    "up to each boundary. "
                    + (f"Reference bars show {reference_name}; it has no 'undetermined' part, so compare it "
                       "with the shares of determined images in the gap table." if has_ref
                       else "The reference has no figures for this attribute.")))
    shown = _display(table.drop(columns=["n_images", "n_abstained"]))
    section.add(Table("Perceived shares per profession", shown, name="audit-shares-by-profession",
                      formats=_formats(shown), max_rows=40,
                      caption=_doc_caption(["share_of_all", "share_of_determined", "n_determined"],
                                           "Templates pooled; intervals are 95 % Wilson.")))
    if len(abstentions):
        shown = _display(abstentions)
        section.add(Table("Abstentions ('undetermined') per profession", shown, name="audit-abstentions",
                          formats=_formats(shown),
                          caption="Images the annotator was not sure about, counted, never dropped. "
                                  + _doc_caption(["abstention_rate"])))
    if "descriptor" in shares and shares["descriptor"].notna().any():
        named = shares[shares["descriptor"].notna()]
        shown = _display(named.drop(columns=["n_images", "n_abstained"]))
        section.add(Table("Prompts that name a descriptor (adherence)", shown, name="audit-descriptor-shares",
                          formats=_formats(shown), max_rows=40,
                          caption="Prompts such as 'a female doctor' measure whether the model follows the "
                                  "prompt, not its default; they are left out of every comparison with the "
                                  "reference."))
    return section


def _versus_reference(metrics: Mapping[str, pd.DataFrame], reference: pd.DataFrame, reference_name: str,
                      professions: Sequence[str]) -> Section:
    section = Section(id="audit-reference", title=f"Compared with the reference ({reference_name})",
                      intro="Is the model further from parity than the reference is (amplification), and by "
                            "how much does each perceived share differ from the reference share (gap)? "
                            "Only prompts without a descriptor are compared.")
    amplification = typed_table(metrics.get("amplification"))
    if len(amplification):
        counts = amplification["verdict"].astype(str).value_counts()
        section.add(Text(f"{int(counts.get('amplified', 0))} of {len(amplification)} comparisons amplified, "
                         f"{int(counts.get('attenuated', 0))} attenuated, the rest not distinguishable from "
                         f"{reference_name} at this sample size.", kind="note"))
        section.add(Figure.from_matplotlib(
            amplification_figure(amplification, reference_name, professions), "Amplification: distance from parity",
            name="audit-amplification",
            alt="Per profession and attribute, the model's distance from parity with its bootstrap interval "
                "next to the reference's distance, and the verdict.",
            caption=f"Dot: the model's distance from parity, with its 95 % bootstrap interval; diamond: "
                    f"{reference_name}'s. 'amplified': the model is further from parity than the reference, "
                    "the interval excluding equality; 'attenuated': closer; otherwise not distinguishable. "
                    "A value the model never drew stays at 0 in every resample, so with few images the "
                    "interval is too narrow."))
        shown = _display(amplification)
        section.add(Table("Amplification", shown, name="audit-amplification-table", formats=_formats(shown),
                          caption=_doc_caption(["amplification", "verdict", "same_majority", "k_values"])))
    gap = typed_table(metrics.get("reference_gap"))
    if len(gap):
        shown = _display(gap.drop(columns=["reference_occupation", "reference_note"], errors="ignore"))
        significant = int(gap["significant"].sum())
        section.add(Table("Gap to the reference", shown, name="audit-reference-gap", formats=_formats(shown),
                          max_rows=40,
                          caption=f"{significant} of {len(gap)} gaps have a 95 % interval that excludes 0. "
                                  + _doc_caption(["reference_share", "gap", "gap_ci_low", "significant"])
                                  + " reference_verified: false where the figure has not been checked against "
                                    "its published source."))
    diversity = typed_table(metrics.get("diversity"))
    if len(diversity):
        shown = _display(diversity)
        section.add(Table("Diversity per profession", shown, name="audit-diversity", formats=_formats(shown),
                          caption=_doc_caption(["normalised_entropy", "l1_to_parity", "kl_to_parity",
                                                "l1_to_reference", "kl_to_reference"])))
    uncovered = [p for p in professions if p not in set(reference["profession"])]
    if uncovered and len(reference):
        section.add(Text("No reference figures for: " + ", ".join(uncovered) + ". These professions appear "
                         "in the charts above without a reference bar and are not compared; the table below "
                         "says why.", kind="note"))
    section.add(*_reference_rows_blocks(reference, professions))
    return section


def _reference_rows_blocks(reference: pd.DataFrame, professions: Sequence[str],
                           builtin: bool | None = None) -> list:
    """The reference named (table, year, address) and, per profession, the rows behind its figure."""
    blocks: list = []
    sources = [str(s) for s in dict.fromkeys(reference["source"]) if str(s)]
    if sources:
        blocks.append(Text("Reference: " + " | ".join(sources) + ".", kind="note"))
    table = reference_rows_table(reference, professions, builtin=builtin)
    if len(table):
        blocks.append(Table("Reference figures and the rows behind them", table, name="audit-reference-rows",
                            max_rows=200,
                            caption="Per profession, the rows of the reference table its figure comes from. Where "
                                    "a prompt word stands for several rows (\"doctor\": the four physician rows of "
                                    "the 2018 occupation codes), the published rows are combined, weighted by "
                                    "employment; rows BLS does not publish (base under 50,000) are skipped and "
                                    "named. A profession without a figure is listed with the reason."))
    return blocks


def _intersections(intersectional: pd.DataFrame) -> Section | None:
    table = typed_table(intersectional)
    if table.empty:
        return None
    a1, a2 = str(table["attribute_1"].iloc[0]), str(table["attribute_2"].iloc[0])
    section = Section(id="audit-intersections", title="Intersections",
                      intro=f"Perceived {a1} and {a2} together: groups that look balanced on each attribute "
                            "alone can still leave a combination out. Small cells are flagged (⚠).")
    flagged = int(table["small_sample_warning"].sum())
    section.add(Text(f"⚠ {flagged} of {len(table)} cells carry a small-sample warning: their group has fewer "
                     f"than {MIN_GROUP_N} images, or fewer than {MIN_EXPECTED:g} images would be expected in the "
                     "cell if the two attributes were independent. Read those shares as anecdotes.",
                     kind="note") if flagged else Text("No cell carries a small-sample warning."))
    warning = np.where(table["small_group"], f"⚠ group < {MIN_GROUP_N} images", "")
    warning = [" · ".join(p for p in (w, f"⚠ expected < {MIN_EXPECTED:g}" if low else "") if p)
               for w, low in zip(warning, table["low_expected"])]
    table = table.assign(warning=warning)
    keys = [c for c in ("profession", "descriptor", "guidance", "annotator") if c in table]
    for (pair_1, pair_2), part in table.groupby(["attribute_1", "attribute_2"], sort=False):
        # The pivot reads like a contingency table: one row per group and first value, counts across.
        cell = part.assign(cell=[f"{int(c)} ({s:.0%})" + (" ⚠" if w else "")
                                 for c, s, w in zip(part["count"], part["share"], part["small_sample_warning"])])
        cell = _display(cell)
        row_keys = [k for k in keys if k in cell] + ["value_1"]
        columns_order = value_order(str(pair_2), cell["value_2"].unique())
        pivot = cell.pivot_table(index=row_keys, columns="value_2", values="cell", aggfunc="first", dropna=False,
                                 sort=False)
        pivot = pivot.reindex(columns=[c for c in columns_order if c in pivot.columns])
        pivot.columns = [f"{pair_2} {c}" for c in pivot.columns]
        pivot = pivot.rename_axis(index={"value_1": str(pair_1)}).reset_index().dropna(how="all", axis=0)
        section.add(Table(f"Counts: perceived {pair_1} x {pair_2}", pivot, max_rows=60,
                          name=f"audit-intersectional-{pair_1}-{pair_2}",
                          caption="Images per combination (share of the group in brackets); ⚠ marks a "
                                  "small-sample warning."))
    ordered = ["attribute_1", "value_1", "attribute_2", "value_2"]
    shown = _display(table[[*keys, *ordered, *[c for c in table.columns if c not in (*keys, *ordered)]]])
    section.add(Table("Intersectional table", shown, name="audit-intersectional", formats=_formats(shown),
                      max_rows=30,
                      caption=_doc_caption(["expected", "small_sample_warning"],
                                           "share is the combination's share of the group's images, with its "
                                           "95 % Wilson interval.")))
    return section


def _robustness(metrics: Mapping[str, pd.DataFrame], spec: Mapping[str, Any],
                professions: Sequence[str]) -> Section | None:
    spread = typed_table(metrics.get("template_spread"))
    sweep = typed_table(metrics.get("guidance_sweep"))
    if spread.empty and sweep.empty:
        return None
    section = Section(id="audit-robustness", title="Phrasing and guidance",
                      intro="A result that moves when the prompt is reworded, or when the guidance scale "
                            "changes, describes the prompt as much as the model.")
    if len(spread):
        templates = [str(t) for t in (spec.get("prompts", {}) or {}).get("templates", []) or []]
        shown = _no_descriptor(spread).sort_values("share_range", ascending=False, kind="stable")
        if templates:
            def phrasing(index: Any) -> str:
                try:
                    return templates[int(index)]
                except (TypeError, ValueError, IndexError):
                    return ""

            shown = shown.assign(phrasing_of_min=shown["template_of_min"].map(phrasing),
                                 phrasing_of_max=shown["template_of_max"].map(phrasing))
        shown = _display(shown)
        multi = int((shown["n_templates"] > 1).sum()) if "n_templates" in shown else 0
        largest = shown["share_range"].max() if multi else math.nan
        lead = (f"Largest movement between phrasings: {largest:.0%} (rows sorted by share_range)."
                if multi else "Only one phrasing was run, so there is no spread to show.")
        section.add(Table("Spread over prompt phrasings", shown, name="audit-template-spread",
                          formats=_formats(shown), max_rows=20,
                          caption=_doc_caption(["share_range"], lead + " Shares are of determined images; on "
                                                                       "the undetermined row, of all images.")))
    if len(sweep):
        drawn = 0
        table = _no_descriptor(sweep)
        for attribute in attribute_order(table["attribute"].unique()):
            fig = guidance_figure(table, attribute, professions)
            if fig is None:
                continue
            drawn += 1
            words = ATTRIBUTE_WORDS.get(attribute, f"perceived {attribute}")
            section.add(Figure.from_matplotlib(
                fig, f"Guidance sweep: {words}", name=f"audit-guidance-{attribute}",
                caption="Share of determined images (undetermined: share of all images) at each guidance "
                        "scale, one line per profession, with 95 % Wilson bands. Every guidance value starts "
                        "from the same seeds, so the lines differ by guidance only."))
        if drawn:
            shown = _display(table)
            section.add(Table("Guidance sweep", shown, name="audit-guidance-sweep", formats=_formats(shown),
                              max_rows=20, caption=_doc_caption(["change_from_lowest_guidance"])))
        else:
            section.add(Text("One guidance value was run, so there is no guidance sweep to show."))
    return section


def _contact_sheets(sheets: Mapping[str, Sequence[Any]], display_size: int, annotator: str | None = None) -> Section:
    who = f"{annotator} (the annotator of the headline cards)" if annotator else "the first annotator"
    section = Section(id="audit-contact-sheets", title="Contact sheets",
                      intro=f"A sample of the generated images per prompt, each labelled with what {who} read "
                            "(perceived gender, skin tone, age; '?' where it abstained). Look at them: they show "
                            "what the numbers count, and where the annotator may be wrong.")
    for index, (prompt, tiles) in enumerate(sheets.items()):
        tiles = list(tiles)
        section.add(Gallery(str(prompt), tiles, name=f"audit-contact-sheet-{index + 1}", display_size=display_size,
                            caption=f"{len(tiles)} images for this prompt; labels are perceived attributes."))
    return section


def _annotators(validity: pd.DataFrame | None, prompts: pd.DataFrame | Mapping[str, Any] | None) -> Section:
    section = Section(id="audit-annotators", title="Annotators",
                      intro="How far to trust the readings: the annotators' accuracy on images whose attributes "
                            "are known, and the exact label prompts a zero-shot annotator was given.")
    if validity is not None and len(validity):
        table = validity.copy()
        bounds = _interval_columns(table, "accuracy", first=True) if "accuracy" in table else None
        for _, row in table.iterrows() if "accuracy" in table else ():
            low = float(row[bounds[0]]) if bounds else None
            high = float(row[bounds[1]]) if bounds else None
            notes = [f"n = {int(row['n'])}" if "n" in row and pd.notna(row["n"]) else ""]
            if "abstention_rate" in row and pd.notna(row["abstention_rate"]):
                notes.append(f"{float(row['abstention_rate']):.0%} undetermined (counted as not correct)")
            section.add(Metric(f"Accuracy: {row.get('annotator', '')} · {row.get('attribute', '')}",
                               float(row["accuracy"]), low, high, fmt=".1%",
                               note=" · ".join(n for n in notes if n)))
        fig = confusion_figure(table)
        if fig is not None:
            section.add(Figure.from_matplotlib(
                fig, "Annotator confusion matrices", name="audit-confusion",
                caption="Rows: the known value; columns: what the annotator read ('undetermined' last). "
                        "Colour: share of the row; numbers: images."))
        shown = table.drop(columns=[c for c in ("confusion",) if c in table])
        section.add(Table("Annotator validity", shown, name="audit-validity", formats=_formats(shown),
                          caption="Measured on images whose attributes are known (for the probe: fresh "
                                  "rendered portraits). Accuracy on generated images can be lower."))
    else:
        section.add(Text("No validity measurement was given for the annotators: their accuracy on these "
                         "images is unknown.", kind="note"))
    if prompts is not None:
        table = _prompts_table(prompts)
        if len(table):
            section.add(Table("Annotator label prompts", table, name="audit-annotator-prompts", max_rows=60,
                              caption="Each value was read as the one whose label prompts the image matched best. "
                                      "The wording of these prompts shapes what 'perceived' means here."))
    return section


# --------------------------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------------------------


def headline_annotator(spec: Mapping[str, Any], annotators: Sequence[str]) -> str | None:
    """The annotator whose readings make the headline cards and label the contact sheets: the first
    annotator of the spec found among ``annotators``; for people (kind "human"), their per-image
    majority (:data:`MAJORITY_ANNOTATOR`) where several labelled, else the one labeller. Without a spec,
    the first of ``annotators`` (the majority, if that is a labeller)."""
    names = [str(a) for a in annotators]
    humans = [a for a in names if a.startswith(HUMAN_PREFIX)]
    people = MAJORITY_ANNOTATOR if MAJORITY_ANNOTATOR in names else (humans[0] if humans else None)
    for entry in spec.get("annotators", []) or []:
        kind = str(entry.get("kind", "")) if isinstance(entry, Mapping) else ""
        if kind == "human" and people is not None:
            return people
        if kind != "human" and kind in names:
            return kind
    if not names:
        return None
    return people if people is not None and names[0] in (*humans, MAJORITY_ANNOTATOR) else names[0]


def _people_note(annotators: Sequence[str], headline: str | None) -> Text | None:
    """Whose labels the figures use, when people labelled the images."""
    labellers = [str(a)[len(HUMAN_PREFIX):] for a in annotators if str(a).startswith(HUMAN_PREFIX)]
    if not labellers:
        return None
    if MAJORITY_ANNOTATOR in annotators:
        cards = (f"The cards above use {MAJORITY_ANNOTATOR}. " if headline == MAJORITY_ANNOTATOR else "")
        return Text(f"People's labels: {len(labellers)} labellers ({', '.join(labellers)}). The tables and charts "
                    f"show each labeller's readings separately (human:<name>) and {MAJORITY_ANNOTATOR}: per image, "
                    f"the value most of its labellers gave, a tie counted as 'undetermined'. {cards}How far the "
                    "labellers agree is under 'Agreement between labellers'.", kind="note")
    return Text(f"People's labels: one labeller ({labellers[0]}), so there is no agreement between labellers to "
                "measure; a single person's reading carries that person's own judgement.", kind="note")


def _agreement(table: pd.DataFrame | None) -> Section | None:
    """Agreement between labellers: Cohen's kappa per pair, Fleiss' kappa and Krippendorff's alpha per
    attribute, each with the number of images it used."""
    if table is None or len(table) == 0:
        return None
    frame = table.copy()
    for column in ("annotator_a", "annotator_b", "measure", "attribute"):
        frame[column] = frame[column].fillna("").astype(str)
    section = Section(
        id="audit-agreement", title="Agreement between labellers",
        intro="How far the people who labelled the images agree beyond chance, per attribute: Cohen's kappa "
              "for every pair of labellers (on the images both labelled), Fleiss' kappa across all of them (on "
              "the images every one labelled) and Krippendorff's alpha (on every image at least two labelled; "
              "it allows missing labels). 1 is perfect agreement, 0 what chance alone gives, below 0 worse "
              "than chance; Krippendorff suggests relying on data from alpha 0.8 and drawing only tentative "
              "conclusions between 0.667 and 0.8. 'undetermined' counts as an answer like any other. "
              "n is the number of images a figure is computed on; n/a: not defined (no shared images, or "
              "one answer throughout). Each labeller's own shares are in the tables above (human:<name>); "
              f"{MAJORITY_ANNOTATOR} is the per-image majority.")
    names = {"cohen_kappa": "Cohen's kappa", "fleiss_kappa": "Fleiss' kappa",
             "krippendorff_alpha": "Krippendorff's alpha"}
    rows = []
    pairs = frame[frame["measure"] == "cohen_kappa"].groupby("attribute").size()
    few_pairs = not len(pairs) or int(pairs.max()) <= MAX_PAIR_CARDS
    for _, row in frame.iterrows():
        measure = names.get(row["measure"], row["measure"])
        n = int(row["n_shared"])
        if row["measure"] == "cohen_kappa":
            label = f"{measure} · {row['attribute']} · {row['annotator_a']} vs {row['annotator_b']}"
            note = f"n = {n} images both labelled"
        elif row["measure"] == "fleiss_kappa":
            label = f"{measure} · {row['attribute']}"
            note = f"n = {n} images labelled by all {int(row['n_annotators'])} labellers"
        else:
            label = f"{measure} · {row['attribute']}"
            note = f"n = {n} images labelled by at least two of {int(row['n_annotators'])} labellers"
        observed = pd.to_numeric(row["observed_agreement"], errors="coerce")
        if pd.notna(observed):
            note += f" · {float(observed):.0%} observed agreement"
        value = pd.to_numeric(row["value"], errors="coerce")
        if row["measure"] != "cohen_kappa" or few_pairs:  # many labellers: their pairs are in the table only
            section.add(Metric(label, None if pd.isna(value) else float(value), fmt=".2f", note=note))
        rows.append({"attribute": row["attribute"], "measure": measure,
                     "labellers": (f"{row['annotator_a']} vs {row['annotator_b']}" if row["annotator_a"]
                                   else f"all {int(row['n_annotators'])}"),
                     "n_images": n, "observed_agreement": observed, "value": value})
    shown = pd.DataFrame(rows)
    section.add(Table("Agreement between labellers", shown, name="audit-labeller-agreement",
                      formats={"observed_agreement": ".3f", "value": ".3f"},
                      caption="n_images: the images each figure is computed on; observed_agreement: the share of "
                              "those images (for Krippendorff's alpha, of pairs of labels) on which the labels are "
                              "equal, before correcting for chance."))
    return section


def _annotator_words(annotators: Sequence[str]) -> str:
    names = [str(a) for a in annotators if str(a)]
    if not names:
        return "an annotator"
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"the {joined} annotator{'s' if len(names) > 1 else ''}"


def _intro(spec: Mapping[str, Any], shares: pd.DataFrame, professions: Sequence[str], reference_name: str,
           has_reference: bool) -> str:
    prompts = spec.get("prompts", {}) or {}
    backend = spec.get("backend", {}) or {}
    model = backend.get("model") or ("the built-in portraits model" if backend.get("kind") == "builtin" else "")
    annotators = [str(a.get("kind", "")) for a in spec.get("annotators", []) or [] if isinstance(a, Mapping)]
    annotators = annotators or list(dict.fromkeys(shares.get("annotator", pd.Series(dtype=str))))
    n_images = spec.get("n_images")
    templates = prompts.get("templates") or []
    first = (f"We asked {model or 'a text-to-image model'} for pictures of {len(professions)} professions"
             + (f" ({n_images} images" if n_images else "")
             + (f", {prompts['images_per_prompt']} per prompt" if prompts.get("images_per_prompt") and n_images else "")
             + (f", {len(templates)} phrasings" if n_images and templates else "")
             + (")" if n_images else "")
             + f" and had {_annotator_words(annotators)} read who each picture appears to show: "
               "perceived gender presentation, skin tone and age group.")
    second = ("The charts show who the model draws, how sure we can be (95 % intervals), and "
              + (f"how that compares with {reference_name}." if has_reference
                 else "no comparison with a reference (none was given)."))
    return f"{first} {second}"


def audit_section(metrics: Mapping[str, pd.DataFrame], spec: Mapping[str, Any] | Any | None = None,
                  contact_sheets: Mapping[str, Sequence[Any]] | None = None, validity: pd.DataFrame | None = None,
                  annotator_prompts: pd.DataFrame | Mapping[str, Any] | None = None, title: str = "Bias audit", *,
                  reference: pd.DataFrame | None = None, reference_name: str | None = None,
                  headline: tuple[str, str] = ("gender", "female"), annotator: str | None = None,
                  section_id: str = "audit", intro: str = "", gallery_size: int = 96) -> Section:
    """The bias audit's report section, built from its saved tables alone.

    ``metrics``: the tables of :func:`~synthscope.audits.metrics.audit_metrics` by name (fresh, or read
    back from CSV: boolean and empty cells are normalised). Used: ``shares_by_profession`` (required),
    ``abstentions``, ``diversity``, ``reference_gap``, ``amplification``, ``intersectional``,
    ``template_spread``, ``guidance_sweep``; a missing one leaves its part out. ``spec``:
    :meth:`AuditSpec.to_dict` (an ``AuditSpec`` is converted), for the intro, the profession order, the
    phrasings and the spec table. ``contact_sheets``: prompt -> ``(image, label)`` pairs (paths, arrays
    or PNG bytes), one gallery each. ``validity``: one row per annotator and attribute (annotator,
    attribute, n, accuracy with ``accuracy_ci_low``/``_high`` or ``ci_low``/``ci_high``, abstention_rate,
    optionally ``confusion`` as {true: {annotated: count}} or its JSON). ``annotator_prompts``: the
    annotators' prompt table (annotator, attribute, value, prompt) or a nested mapping.

    ``reference``: the tidy reference table; by default it is recovered from ``reference_gap``.
    ``reference_name``: how charts name it (default from its source, e.g. "BLS 2022").
    ``headline``: the (attribute, value) whose share per profession makes the headline cards, read from
    ``annotator`` (default :func:`headline_annotator`: the first annotator of the spec found in the
    tables; for people, their per-image majority). ``metrics["labeller_agreement"]`` (the table of
    :func:`synthscope.audits.labels.labeller_agreement`), when given, adds the agreement between
    labellers.
    """
    if spec is not None and not isinstance(spec, Mapping) and hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    spec = dict(spec or {})
    if "shares_by_profession" not in metrics:
        raise UserError("audit_section needs the 'shares_by_profession' table of audit_metrics "
                         f"(got {', '.join(sorted(metrics)) or 'none'})")
    shares = typed_table(metrics["shares_by_profession"])
    reference_table = _reference_from(metrics, reference)
    has_reference = len(reference_table) > 0
    name = reference_name or (_reference_name(reference_table) if has_reference else "reference")
    professions = [p for p in _profession_order(spec, [shares]) if p in set(shares["profession"])]
    annotators = list(dict.fromkeys(shares["annotator"]))
    if annotator is None:
        annotator = headline_annotator(spec, annotators)

    section = Section(id=section_id, title=title, intro=intro or _intro(spec, shares, professions, name,
                                                                        has_reference))
    attribute, value = headline
    cards = _headline(shares, reference_table, attribute, value, annotator, professions, name)
    section.add(*cards)
    if cards:
        compared = f"{name} for comparison" if has_reference else "no reference (none was given)"
        who = (f"the majority of labellers ({annotator}) could read" if annotator == MAJORITY_ANNOTATOR
               else f"the annotator {annotator} could read")
        section.add(Text(f"Cards: share of images read as {value} ({attribute}) among those {who}, with its "
                         f"95 % Wilson interval; the note gives {compared}, the share left undetermined and the "
                         "number of images."))
    people = _people_note(annotators, annotator)
    if people is not None:
        section.add(people)
    abstention = shares[shares["is_abstention"]]
    if len(abstention) and abstention["n_images"].sum():
        section.add(Text(f"Overall, {abstention['count'].sum() / abstention['n_images'].sum():.0%} of readings "
                         "were 'undetermined'; they are shown as their own grey segment in every chart.",
                         kind="note"))

    section.subsections.append(_depicted(shares, typed_table(metrics.get("abstentions")), reference_table, name,
                                         professions))
    asked = str((spec.get("reference") or {}).get("source") or "none") if isinstance(
        spec.get("reference"), Mapping) else "none"
    if has_reference and ("amplification" in metrics or "reference_gap" in metrics):
        section.subsections.append(_versus_reference(metrics, reference_table, name, professions))
    elif not has_reference and asked.lower() != "none":
        section.add(Text(f"The reference asked for ({asked}) has no figures for any audited profession, so "
                         "nothing is compared with it; the table says why for each.", kind="note"),
                    *_reference_rows_blocks(reference_table, professions, builtin=asked.lower() == "bls-2022"))
    else:
        section.add(Text("No reference statistics were given, so the audit shows who the model draws but not "
                         "how that compares with the world (set [reference] source in the spec).", kind="note"))
    for part in (_intersections(metrics.get("intersectional", pd.DataFrame())),
                 _robustness(metrics, spec, professions)):
        if part is not None:
            section.subsections.append(part)
    if contact_sheets:
        section.subsections.append(_contact_sheets(contact_sheets, gallery_size, annotator))
    section.subsections.append(_annotators(validity, annotator_prompts))
    agreement = _agreement(metrics.get("labeller_agreement"))
    if agreement is not None:
        section.subsections.append(agreement)
    if spec:
        section.subsections.append(Section(
            id="audit-spec", title="Audit specification",
            intro="Everything the audit was run with, as read from its spec file.",
            blocks=[Table("Audit spec", spec_table(spec), name="audit-spec", max_rows=200)]))

    caveats = list(CAVEATS)
    if has_reference:
        notes = " ".join(reference_table["note"].astype(str))
        if "combined" in notes or "not published" in notes:
            caveats.append("Where a profession stands for several rows of the reference table, its figure combines "
                           "the published rows, weighted by employment, and rows BLS does not publish (employment "
                           "base under 50,000) are left out; the reference table of this report names them. A "
                           "combined figure is only as exact as the rounded percentages it is made from.")
        unverified = reference_table[~reference_table["verified"]]
        if len(unverified):
            sources = ", ".join(dict.fromkeys(unverified["source"].astype(str)))
            caveats.append(f"Reference figures marked unverified ({sources}; professions: "
                           f"{', '.join(dict.fromkeys(unverified['profession']))}) have not been checked against "
                           "the published table. Check them before citing any gap or amplification.")
    section.caveats = caveats
    return section
