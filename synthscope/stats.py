"""The one statistics module: intervals of proportions and agreement between raters.

It owns
- the Wilson score interval of a proportion, for one count (:func:`wilson_interval`) and for whole
  columns of counts (:func:`wilson_bounds`), both from ``statsmodels``' ``proportion_confint``;
- agreement beyond chance between raters of nominal labels: Cohen's kappa for a pair
  (:func:`cohen_kappa`, scikit-learn), Fleiss' kappa across raters who all rated every subject
  (:func:`fleiss_kappa` on a table of counts, :func:`fleiss_kappa_of_ratings` on the ratings,
  statsmodels) and Krippendorff's alpha, which allows missing ratings
  (:func:`krippendorff_alpha_nominal`, the ``krippendorff`` package).

Every other module calls these; the formulas are the libraries'. What this module decides itself is
only what the libraries leave undefined or get wrong at the edges, once for every caller:

- an interval of no trials (n = 0) is undefined, not zero-width: ``(None, None)`` for one count,
  NaN in columns (statsmodels would divide by zero);
- a Wilson bound at k = 0 or k = n is exactly 0 or 1 (the closed form gives it up to rounding, and
  a lower bound of 1e-17 would make "the interval excludes 0" true), and bounds are clipped to [0, 1];
- an agreement measure with nothing to compare (no shared subjects, nothing pairable) or with a single
  category throughout is NaN: chance agreement is then 1 and every formula is 0 / 0 (scikit-learn
  warns and returns NaN, statsmodels divides by zero, krippendorff raises).

The libraries are imported inside the functions: importing this module stays as cheap as numpy,
and a command that never computes an interval (``--help``) never loads statsmodels or scikit-learn.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from synthscope.errors import UserError

__all__ = ["wilson_interval", "wilson_bounds", "cohen_kappa", "fleiss_kappa", "fleiss_kappa_of_ratings",
           "krippendorff_alpha_nominal", "is_missing"]


# --------------------------------------------------------------------------------------------
# Proportions
# --------------------------------------------------------------------------------------------


def wilson_bounds(k: np.ndarray | pd.Series | Sequence[float], n: np.ndarray | pd.Series | Sequence[float],
                  confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score bounds (no continuity correction) for arrays of ``k`` successes in ``n`` trials.

    NaN where n is 0 (or missing); missing k counts as 0. Vectorised because an audit has thousands of
    groups.
    """
    from statsmodels.stats.proportion import proportion_confint

    k = np.asarray(pd.Series(k, dtype=float).fillna(0), dtype=float).ravel()
    n = np.asarray(pd.Series(n, dtype=float).fillna(0), dtype=float).ravel()
    empty = n <= 0
    low, high = np.full(n.shape, np.nan), np.full(n.shape, np.nan)
    if (~empty).any():
        lo, hi = proportion_confint(k[~empty], n[~empty], alpha=1.0 - confidence, method="wilson")
        low[~empty], high[~empty] = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
    # The closed form gives 0 and 1 at the ends only up to rounding; make them exact (see the module doc).
    low[~empty & (k <= 0)] = 0.0
    high[~empty & (k >= n)] = 1.0
    return low, high


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval for ``k`` successes in ``n`` trials; ``(None, None)`` when n is 0
    (an interval of nothing is undefined, not zero-width)."""
    k, n = int(k), int(n)
    if n <= 0:
        return (None, None)
    if not 0 <= k <= n:
        raise ValueError(f"k must be an integer between 0 and n inclusive, got k={k}, n={n}")
    low, high = wilson_bounds(np.array([k]), np.array([n]), confidence)
    return (float(low[0]), float(high[0]))


# --------------------------------------------------------------------------------------------
# Agreement between raters
# --------------------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """A rating that is not there: None, NaN or blank text."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa of two raters' labels of the same subjects (pairs in order, none missing).

    scikit-learn's ``cohen_kappa_score`` rather than statsmodels' ``cohens_kappa``: it takes the two
    label vectors as they are (any hashable labels, the categories being the union of both), where
    statsmodels wants a square contingency table built first, which is where category mismatches
    between the raters would creep in. NaN with no subjects or a single category in both.
    """
    from sklearn.metrics import cohen_kappa_score

    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"Cohen's kappa needs the two raters' labels of the same subjects ({len(a)} vs {len(b)})")
    if not a or len(set(a) | set(b)) < 2:
        return math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(a, b))


def fleiss_kappa(counts: np.ndarray | Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa of an (N subjects x K categories) table of counts, every subject rated by the same
    number n >= 2 of raters (statsmodels' ``fleiss_kappa``, method "fleiss").

    ``kappa = (P - P_e) / (1 - P_e)`` with ``P`` the mean agreement per subject and ``P_e = sum_j p_j^2``.
    NaN when there are no subjects or when a single category is used throughout (``P_e`` = 1).
    """
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        return math.nan
    n_raters = table.sum(axis=1)
    # statsmodels only asserts this; a user's table deserves an error that says what is wrong.
    if not np.allclose(n_raters, n_raters[0]) or n_raters[0] < 2:
        raise UserError("Fleiss' kappa needs every subject rated by the same number (>= 2) of raters")
    if (table.sum(axis=0) > 0).sum() < 2:
        return math.nan
    return float(statsmodels_fleiss_kappa(table, method="fleiss"))


def fleiss_kappa_of_ratings(ratings: np.ndarray | pd.DataFrame | Sequence[Sequence[Any]]) -> float:
    """Fleiss' kappa of an (N subjects x n raters) array of nominal ratings, none missing: the ratings
    are coded and counted per subject by statsmodels' ``aggregate_raters``, then :func:`fleiss_kappa`."""
    from statsmodels.stats.inter_rater import aggregate_raters

    values = np.asarray(ratings, dtype=object)
    if values.ndim != 2 or values.shape[0] == 0:
        return math.nan
    # Codes first: aggregate_raters sorts the raw values, which fails on mixed types.
    codes, categories = pd.factorize(pd.Series(values.ravel()), sort=False)
    counts, _ = aggregate_raters(codes.reshape(values.shape), n_cat=len(categories))
    return fleiss_kappa(counts)


def krippendorff_alpha_nominal(units: Sequence[Sequence[Any]]) -> float:
    """Krippendorff's alpha for nominal data (the ``krippendorff`` package).

    ``units`` lists the values each unit (image) got, one per coder; None/NaN/"" are missing. Units
    with fewer than two values are not pairable and do not count. With coincidences ``o_ck`` (each
    unit with m values adds 1 / (m - 1) per ordered pair of values from different coders),
    ``n_c = sum_k o_ck`` and ``n = sum_c n_c``:
    ``alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k``. NaN when nothing is pairable or
    all pairable values are one category (the package raises or divides by zero there).
    """
    import krippendorff

    codes: dict[Any, int] = {}
    rows = [[codes.setdefault(v, len(codes)) for v in unit if not is_missing(v)] for unit in units]
    pairable = [row for row in rows if len(row) >= 2]
    if not pairable or len({v for row in pairable for v in row}) < 2:
        return math.nan
    # The package wants (coders x units) floats with NaN for missing; which coder gave a value does
    # not matter to alpha, so each unit's values fill the first rows of its column.
    width = max(len(row) for row in pairable)
    data = np.full((width, len(pairable)), np.nan)
    for j, row in enumerate(pairable):
        data[: len(row), j] = row
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
