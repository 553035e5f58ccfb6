"""synthscope.stats against the libraries it wraps, on random data, and its degenerate cases
(no trials, nothing shared, one category throughout, missing ratings)."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from synthscope.stats import (
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_of_ratings,
    is_missing,
    krippendorff_alpha_nominal,
    wilson_bounds,
    wilson_interval,
)


# ---- Wilson ------------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_wilson_bounds_equal_statsmodels_on_random_counts(confidence):
    rng = np.random.default_rng(0)
    n = rng.integers(1, 5000, 2000)
    k = np.minimum((rng.random(2000) * (n + 1)).astype(int), n)
    low, high = wilson_bounds(k, n, confidence)
    lo, hi = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    assert np.allclose(low, lo, rtol=0, atol=1e-12) and np.allclose(high, hi, rtol=0, atol=1e-12)
    for i in range(50):
        assert wilson_interval(k[i], n[i], confidence) == pytest.approx((lo[i], hi[i]), abs=1e-12)


def test_wilson_hand_computed_and_the_edges():
    # k = 3, n = 10, z = 1.959964: centre 0.355507, half-width 0.247715 (test_audit_metrics has the sums).
    assert wilson_interval(3, 10) == pytest.approx((0.107792, 0.603222), abs=1e-6)
    assert wilson_interval(0, 0) == (None, None)  # undefined, not zero-width
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0  # exact, not 1e-17 off
    assert isinstance(wilson_interval(2, 7)[0], float)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    low, high = wilson_bounds(np.array([0, 0, 5, 7]), np.array([0, 9, 5, 0]))
    assert np.isnan(low[[0, 3]]).all() and np.isnan(high[[0, 3]]).all()
    assert low[1] == 0.0 and high[2] == 1.0
    assert ((low[1:3] >= 0) & (high[1:3] <= 1)).all()
    low, high = wilson_bounds([np.nan, 1], [np.nan, 2])  # missing n is no trials, as in an outer join
    assert np.isnan(low[0]) and low[1] == pytest.approx(wilson_interval(1, 2)[0], abs=1e-15)


# ---- agreement ---------------------------------------------------------------------------------


def test_cohen_kappa_equals_sklearn_and_is_nan_when_undefined():
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = rng.choice(list("xyz"), 30), rng.choice(list("xyz"), 30)
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert math.isnan(cohen_kappa([], []))
    assert math.isnan(cohen_kappa(["x"] * 5, ["x"] * 5))  # one category: chance agreement is 1
    assert cohen_kappa(["x"] * 3, ["y"] * 3) == 0.0  # two categories, never agreeing beyond chance
    with pytest.raises(ValueError):
        cohen_kappa(["x"], ["x", "y"])


def test_fleiss_kappa_equals_statsmodels_on_random_ratings():
    rng = np.random.default_rng(2)
    for _ in range(100):
        n_subjects, n_raters, k = rng.integers(1, 30), rng.integers(2, 9), rng.integers(2, 6)
        ratings = rng.integers(0, k, (n_subjects, n_raters))
        counts, _ = aggregate_raters(ratings)
        if (counts.sum(axis=0) > 0).sum() < 2:
            continue
        expected = statsmodels_fleiss_kappa(counts, method="fleiss")
        assert fleiss_kappa(counts) == pytest.approx(expected, abs=1e-12)
        labels = np.array(["cat", "dog", "owl", "fox", "yak"], dtype=object)[ratings]
        assert fleiss_kappa_of_ratings(labels) == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_degenerate_cases():
    assert math.isnan(fleiss_kappa(np.zeros((0, 3))))  # no subjects
    assert math.isnan(fleiss_kappa([[2, 0], [2, 0]]))  # one category throughout
    assert math.isnan(fleiss_kappa_of_ratings([["a", "a"], ["a", "a"]]))
    assert math.isnan(fleiss_kappa_of_ratings(np.empty((0, 2), dtype=object)))
    assert fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)  # all agree, two categories
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[1, 1], [2, 1]])
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[1, 0], [0, 1]])  # one rater each
    # mixed value types are coded, not sorted
    assert fleiss_kappa_of_ratings([[1, "1"], [1, "1"], ["1", 1]]) == pytest.approx(
        statsmodels_fleiss_kappa([[1, 1], [1, 1], [1, 1]]))


def test_krippendorff_alpha_equals_the_package_on_random_data_with_missing_values():
    rng = np.random.default_rng(3)
    for _ in range(100):
        n_coders, n_units = rng.integers(2, 6), rng.integers(2, 40)
        data = rng.integers(0, 4, (n_coders, n_units)).astype(float)
        data[rng.random(data.shape) < 0.3] = np.nan
        pairable = (~np.isnan(data)).sum(axis=0) >= 2
        if not pairable.any() or len(np.unique(data[:, pairable][~np.isnan(data[:, pairable])])) < 2:
            continue
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
        words = np.array(["female", "male", "undetermined", "x"], dtype=object)
        units = [[None if np.isnan(v) else words[int(v)] for v in data[:, j]] for j in range(n_units)]
        assert krippendorff_alpha_nominal(units) == pytest.approx(expected, abs=1e-12)


def test_krippendorff_alpha_degenerate_cases():
    assert math.isnan(krippendorff_alpha_nominal([]))
    assert math.isnan(krippendorff_alpha_nominal([["a", None], [None, "b"]]))  # nothing pairable
    assert math.isnan(krippendorff_alpha_nominal([["a", "a"], ["a", "a", "a"], ["b"]]))  # pairable: one category
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b", ""]]) == pytest.approx(1.0)  # all agree
    # units of different lengths (coders who did not see an image at all) are fine
    assert krippendorff_alpha_nominal([["a", "b"], ["a", "a", "b"], ["b", "b"]]) == pytest.approx(
        krippendorff.alpha(reliability_data=[[0, 0, 1], [1, 0, 1], [np.nan, 1, np.nan]],
                           level_of_measurement="nominal"), abs=1e-12)


def test_missing_ratings():
    assert all(is_missing(v) for v in (None, np.nan, float("nan"), "", "  "))
    assert not any(is_missing(v) for v in (0, "0", "undetermined", False))
