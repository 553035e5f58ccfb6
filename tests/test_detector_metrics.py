import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from synthscope.detectors import metrics as M


def _scores(n_real, n_fake, sep=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_real, int), np.ones(n_fake, int)]
    s = np.r_[rng.normal(0, 1, n_real), rng.normal(sep, 1, n_fake)]
    return y, s


# ----------------------------------------------------------------- thresholds


def test_threshold_is_the_ceil_order_statistic_and_realised_fpr_within_target():
    reals = np.arange(1, 201, dtype=float)[::-1]  # 1..200, unsorted on purpose
    t = M.threshold_at_fpr(reals, 0.05)
    # k = ceil(0.95 * 200) = 190 -> 190th smallest = 190.0; exactly 10 reals above it
    assert t == 190.0
    assert np.mean(reals > t) == pytest.approx(0.05)
    for fpr in (0.01, 0.03, 0.07, 0.29, 0.5):
        t = M.threshold_at_fpr(reals, fpr)
        assert np.mean(reals > t) <= fpr
        assert t == np.sort(reals)[math.ceil(round((1 - fpr) * 200, 9)) - 1]


def test_threshold_with_ties_never_exceeds_target():
    reals = np.r_[np.zeros(95), np.ones(5)]
    t = M.threshold_at_fpr(reals, 0.01)
    assert t == 1.0 and np.mean(reals > t) == 0.0
    t = M.threshold_at_fpr(reals, 0.05)
    assert np.mean(reals > t) <= 0.05


def test_threshold_warns_when_too_few_reals():
    reals = np.linspace(0, 1, 50)
    with pytest.warns(M.InsufficientRealsWarning):
        t = M.threshold_at_fpr(reals, 0.001)
    assert t == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.threshold_at_fpr(np.linspace(0, 1, 1000), 0.001)  # 1000 reals resolve 0.1 %: no warning


def test_threshold_uses_no_test_label():
    y, s = _scores(300, 300, seed=1)
    held_out_reals = np.random.default_rng(2).normal(0, 1, 500)
    t = M.threshold_at_fpr(held_out_reals, 0.01)
    # the API takes only real scores: changing the fake test set cannot move the threshold
    assert M.threshold_at_fpr(held_out_reals, 0.01) == t
    with pytest.raises(TypeError):
        M.threshold_at_fpr(held_out_reals, 0.01, labels=y)  # no way to pass labels in
    r1 = M.evaluate_scores(y, s, t, n_boot=0)
    y2, s2 = y.copy(), s.copy()
    s2[y2 == 1] = s2[y2 == 1] + 10.0  # fakes become trivially separable
    r2 = M.evaluate_scores(y2, s2, t, n_boot=0)
    assert r1.threshold == r2.threshold == t  # used as given, not re-tuned
    assert r1["fpr_at_threshold"] == r2["fpr_at_threshold"]
    assert r2["fake_accuracy"] == 1.0 and r1["fake_accuracy"] < 1.0


# ----------------------------------------------------------------- curve metrics


def test_ap_auc_match_sklearn_on_random_vectors():
    rng = np.random.default_rng(3)
    for _ in range(3):
        y = rng.integers(0, 2, 400)
        s = rng.normal(size=400) + 0.5 * y
        s[:50] = np.round(s[:50])  # some ties
        r = M.evaluate_scores(y, s, 0.0, n_boot=20)
        assert r["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert r["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        # the bootstrap's single-curve AP equals sklearn's too
        f, t, _ = M._roc(y, s)
        assert M._ap_from_curve(f, t, int(y.sum()), int((1 - y).sum())) == pytest.approx(
            average_precision_score(y, s), abs=1e-12
        )


def test_tpr_at_fpr_and_eer_on_tiny_cases():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    sep = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    assert M.tpr_at_fpr(y, sep, 0.01) == 1.0
    eer, thr = M.equal_error_rate(y, sep)
    assert eer == 0.0 and 0.4 < thr <= 0.6
    same = np.full(8, 0.5)
    assert roc_auc_score(y, same) == 0.5
    assert M.equal_error_rate(y, same)[0] == pytest.approx(0.5)
    assert M.tpr_at_fpr(y, same, 0.01) == 0.0
    # hand case: reals 1,2,3,4 ; fakes 3.5,5,0,6
    s = np.array([1, 2, 3, 4, 3.5, 5, 0, 6.0])
    # threshold >=5: FPR 0, TPR 2/4; >=3.5: FPR 1/4, TPR 3/4
    assert M.tpr_at_fpr(y, s, 0.0) == 0.5
    assert M.tpr_at_fpr(y, s, 0.25) == 0.75
    # ROC points (fpr, fnr): (0, .5) at 5, (.25, .5) at 4, (.25, .25) at 3.5, (.5, .25) at 3
    # FPR - FNR crosses 0 exactly at (.25, .25): EER 0.25 at threshold 3.5
    eer, thr = M.equal_error_rate(y, s)
    assert eer == pytest.approx(0.25) and thr == pytest.approx(3.5)


def test_eer_interpolates_between_roc_points():
    y = np.array([0, 0, 1, 1, 1])
    s = np.array([1.0, 3.0, 2.0, 4.0, 5.0])
    # points (fpr, fnr): thr 4 -> (0, 1/3); thr 3 -> (1/2, 1/3) ; crossing on segment
    # (0, 1/3)->(1/2, 1/3): d from -1/3 to 1/6, alpha 2/3 -> EER = 1/3, thr = 4 + 2/3*(3-4)
    eer, thr = M.equal_error_rate(y, s)
    assert eer == pytest.approx(1 / 3)
    assert thr == pytest.approx(4 - 2 / 3)


# ----------------------------------------------------------------- calibration


def test_ece_zero_for_perfect_calibration_and_hand_value_two_bins():
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.25] * 4 + [0.75] * 4)
    assert M.expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.0)
    assert M.expected_calibration_error(y, p, n_bins=15) == pytest.approx(0.0)
    # bin 0: conf .2, fake share .5 -> .3 ; bin 1: conf .8, share 1.0 -> .2 ; each half the data
    y2, p2 = np.array([0, 1, 1, 1]), np.array([0.2, 0.2, 0.8, 0.8])
    assert M.expected_calibration_error(y2, p2, n_bins=2) == pytest.approx(0.25)
    assert M.expected_calibration_error(y2, p2, n_bins=2, strategy="quantile") == pytest.approx(0.25)


def test_reliability_curve_matches_sklearn_and_brier_hand_value():
    rng = np.random.default_rng(4)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p).astype(int)
    df = M.reliability_curve(y, p, n_bins=10)
    assert list(df.columns) == ["bin", "bin_low", "bin_high", "mean_predicted", "observed_fraction", "count"]
    assert len(df) == 10 and df["count"].sum() == 500
    frac, mean = calibration_curve(y, p, n_bins=10)
    nz = df[df["count"] > 0]
    np.testing.assert_allclose(nz["observed_fraction"], frac)
    np.testing.assert_allclose(nz["mean_predicted"], mean)
    # ECE from the same bins
    ece = (df["count"] * (df["observed_fraction"] - df["mean_predicted"]).abs()).sum() / 500
    assert M.expected_calibration_error(y, p, n_bins=10) == pytest.approx(ece)
    # Brier: ((.1-0)^2 + (.4-1)^2 + (.8-1)^2 + (.3-0)^2) / 4 = (.01+.36+.04+.09)/4 = .125
    assert M.brier_score([0, 1, 1, 0], [0.1, 0.4, 0.8, 0.3]) == pytest.approx(0.125)
    assert M.brier_score([0, 1, 1, 0], [0.1, 0.4, 0.8, 0.3]) == pytest.approx(
        brier_score_loss([0, 1, 1, 0], [0.1, 0.4, 0.8, 0.3])
    )
    with pytest.raises(ValueError):
        M.expected_calibration_error([0, 1], [0.5, 1.5])


# ----------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_point_deterministic_and_narrows():
    y, s = _scores(60, 60, seed=5)
    point = roc_auc_score(y, s)
    lo, hi = M.bootstrap_ci(roc_auc_score, y, s, n_boot=300, seed=7)
    assert lo < point < hi
    assert M.bootstrap_ci(roc_auc_score, y, s, n_boot=300, seed=7) == (lo, hi)
    assert M.bootstrap_ci(roc_auc_score, y, s, n_boot=300, seed=8) != (lo, hi)
    yb, sb = _scores(1500, 1500, seed=5)
    lob, hib = M.bootstrap_ci(roc_auc_score, yb, sb, n_boot=300, seed=7)
    assert (hib - lob) < 0.5 * (hi - lo)
    assert lob < roc_auc_score(yb, sb) < hib


def test_stratified_bootstrap_keeps_both_classes_on_unbalanced_data():
    y, s = _scores(300, 3, seed=6)
    seen = []

    def fn(yy, ss):
        seen.append((int(yy.sum()), int((1 - yy).sum())))
        return roc_auc_score(yy, ss)

    lo, hi = M.bootstrap_ci(fn, y, s, n_boot=50, seed=0)
    assert set(seen) == {(3, 300)}
    assert lo is not None and lo <= hi


def test_unstratified_bootstrap_skips_single_class_resamples():
    y = np.array([0] * 9 + [1])
    s = np.arange(10.0)
    lo, hi = M.bootstrap_ci(roc_auc_score, y, s, n_boot=200, seed=0, stratified=False)
    assert lo == hi == 1.0  # resamples without the fake raise in sklearn and are skipped


# ----------------------------------------------------------------- evaluate_scores


def test_evaluate_scores_full_report():
    y, s = _scores(400, 100, sep=2.0, seed=9)
    held_out = np.random.default_rng(10).normal(0, 1, 1000)
    t = M.threshold_at_fpr(held_out, 0.01)
    probs = 1 / (1 + np.exp(-(s - 1)))
    r = M.evaluate_scores(y, s, t, probs=probs, n_boot=200, seed=1)
    assert (r.n_real, r.n_fake) == (400, 100)
    flagged = s > t
    assert r["accuracy"] == pytest.approx(np.mean(flagged == (y == 1)))
    assert r["real_accuracy"] == pytest.approx(np.mean(~flagged[y == 0]))
    assert r["fake_accuracy"] == pytest.approx(np.mean(flagged[y == 1]))
    assert r["fpr_at_threshold"] == pytest.approx(np.mean(flagged[y == 0]))
    assert r["tpr_at_1pct_fpr"] == M.tpr_at_fpr(y, s, 0.01)
    assert r["tpr_at_0.1pct_fpr"] == M.tpr_at_fpr(y, s, 0.001)
    assert r["eer"] == M.equal_error_rate(y, s)[0]
    assert r["ece"] == M.expected_calibration_error(y, probs)
    assert r["brier"] == pytest.approx(brier_score_loss(y, probs))
    for name, m in r.metrics.items():
        assert m.value is not None, name
        assert m.ci_low <= m.value + 1e-12 and m.value - 1e-12 <= m.ci_high or name == "ece", name
    assert r.metrics["fpr_at_threshold"].method == "wilson"
    assert r.metrics["roc_auc"].method == "bootstrap"
    # 400 reals can't resolve 0.1 % FPR: said so
    assert "FPR = 0" in r.metrics["tpr_at_0.1pct_fpr"].note
    tab = r.table()
    assert list(tab.columns[:4]) == ["metric", "value", "ci_low", "ci_high"]
    assert set(tab["metric"]) == set(r.metrics)
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["metrics"]["ap"]["value"] == pytest.approx(average_precision_score(y, s))
    # deterministic for a seed
    r2 = M.evaluate_scores(y, s, t, probs=probs, n_boot=200, seed=1)
    assert r2.to_dict() == d


def test_real_only_gives_fpr_with_wilson_and_no_ap():
    reals = np.random.default_rng(11).normal(size=200)
    y = np.zeros(200, int)
    r = M.evaluate_scores(y, reals, 1.5, n_boot=50)
    k = int(np.sum(reals > 1.5))
    assert r["fpr_at_threshold"] == pytest.approx(k / 200)
    m = r.metrics["fpr_at_threshold"]
    assert m.method == "wilson"
    assert (m.ci_low, m.ci_high) == pytest.approx(M.wilson_interval(k, 200))
    assert m.ci_low < k / 200 < m.ci_high
    for name in ("ap", "roc_auc", "eer", "tpr_at_1pct_fpr", "fake_accuracy", "accuracy"):
        assert r[name] is None and r.metrics[name].note, name
    json.dumps(r.to_dict(), allow_nan=False)


def test_fake_only_gives_tpr_at_threshold():
    fakes = np.array([0.2, 0.6, 0.9, 0.95])
    r = M.evaluate_scores(np.ones(4, int), fakes, 0.5, n_boot=20)
    assert r["fake_accuracy"] == 0.75
    assert r.metrics["fake_accuracy"].ci_low < 0.75 < r.metrics["fake_accuracy"].ci_high
    assert r["fpr_at_threshold"] is None and r["ap"] is None


def test_wilson_zero_successes_is_not_degenerate():
    lo, hi = M.wilson_interval(0, 100)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.02 < hi < 0.05
    assert M.wilson_interval(0, 0) == (None, None)


def test_per_source_breakdown_one_row_per_source():
    rng = np.random.default_rng(12)
    n = 150
    s = np.r_[rng.normal(0, 1, n), rng.normal(3, 1, n), rng.normal(0.5, 1, n)]
    y = np.r_[np.zeros(n, int), np.ones(2 * n, int)]
    src = ["real"] * n + ["gan"] * n + ["diffusion"] * n
    t = 1.0
    r = M.evaluate_scores(y, s, t, sources=src, n_boot=0)
    df = r.per_source_table()
    assert isinstance(df, pd.DataFrame)
    assert sorted(df["source"]) == ["diffusion", "gan", "real"] and len(df) == 3
    by = df.set_index("source")
    reals = s[:n]
    for name, sl in (("gan", slice(n, 2 * n)), ("diffusion", slice(2 * n, 3 * n))):
        yy = np.r_[np.zeros(n), np.ones(n)]
        ss = np.r_[reals, s[sl]]
        assert by.loc[name, "ap"] == pytest.approx(average_precision_score(yy, ss))
        assert by.loc[name, "roc_auc"] == pytest.approx(roc_auc_score(yy, ss))
        k = int(np.sum(s[sl] > t))
        assert by.loc[name, "tpr_at_threshold"] == pytest.approx(k / n)
        assert (by.loc[name, "rate_ci_low"], by.loc[name, "rate_ci_high"]) == pytest.approx(M.wilson_interval(k, n))
    assert by.loc["gan", "roc_auc"] > by.loc["diffusion", "roc_auc"]
    assert by.loc["real", "fpr_at_threshold"] == pytest.approx(np.mean(reals > t))
    assert pd.isna(by.loc["real", "ap"])
    json.dumps(r.to_dict(), allow_nan=False)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="labels"):
        M.evaluate_scores([0, 2], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match="entries"):
        M.evaluate_scores([0, 1], [0.1], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        M.threshold_at_fpr([0.1, np.nan])
    with pytest.raises(ValueError, match="both"):
        M.tpr_at_fpr([0, 0], [0.1, 0.2], 0.01)


# ----------------------------------------------------------------- CSV cells a spreadsheet would run


def test_spreadsheet_safe_neutralises_formula_text_and_keeps_numbers():
    from synthscope.tables import spreadsheet_safe

    frame = pd.DataFrame({
        "path": ["=HYPERLINK(\"http://x\")", "+1.png", "-cmd.png", "@SUM(A1).png", "\tx.png", "\rx.png",
                 "ok.png", "", None],
        "score": [-0.5, -math.inf, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
        "count": [-1, 2, 3, 4, 5, 6, 7, 8, 9],
    })
    safe = spreadsheet_safe(frame)
    assert list(safe["path"][:6]) == ["'=HYPERLINK(\"http://x\")", "'+1.png", "'-cmd.png", "'@SUM(A1).png",
                                      "'\tx.png", "'\rx.png"]
    assert list(safe["path"][6:8]) == ["ok.png", ""] and pd.isna(safe["path"][8])
    # numbers stay numbers, negative or infinite ones included
    assert safe["score"].dtype == float and safe["score"][0] == -0.5 and safe["score"][1] == -math.inf
    assert safe["count"].dtype == frame["count"].dtype and safe["count"][0] == -1
    assert frame["path"][0].startswith("=")  # the caller's frame is left alone
    # a text column that mixes numbers: only its text cells change
    mixed = spreadsheet_safe(pd.DataFrame({"cell": [-3, "-3", 2.5]}))
    assert list(mixed["cell"]) == [-3, "'-3", 2.5]


def test_a_perfect_ranking_reads_exactly_one_inside_its_interval():
    # Summed as float recall steps, AP lands one ulp off 1.0 for some sizes (sklearn: 1.0000000000000002
    # with 9 fakes), and a resample can then read above its point estimate.
    assert average_precision_score(np.r_[np.zeros(50), np.ones(9)],
                                   np.r_[np.linspace(0, 0.4, 50), np.linspace(0.6, 1, 9)]) != 1.0
    for n_fake in range(1, 60):
        y = np.r_[np.zeros(50), np.ones(n_fake)]
        s = np.r_[np.linspace(0, 0.4, 50), np.linspace(0.6, 1, n_fake)]
        ap = M.evaluate_scores(y, s, 0.5, n_boot=20, seed=0).metrics["ap"]
        assert ap.value == ap.ci_low == ap.ci_high == 1.0, n_fake


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resample_curve_is_sklearns_roc_curve_exactly(dtype):
    from scipy.integrate import trapezoid
    from sklearn.metrics import auc, roc_curve

    rng = np.random.default_rng(3)
    for n, levels in [(7, 3), (60, 5), (400, 1000), (400, 10**9)]:  # heavy ties to none
        y = np.r_[np.zeros(n // 2, dtype=int), np.ones(n - n // 2, dtype=int)]
        s = (rng.integers(0, levels, n) / levels).astype(dtype)
        expected = roc_curve(y, s, drop_intermediate=False)
        got = M._resample_roc(y, s)
        for want, have in zip(expected, got):
            assert have.dtype == want.dtype and np.array_equal(have, want)
        assert float(trapezoid(got[1], got[0])) == auc(expected[0], expected[1])


def test_bootstrap_intervals_are_those_of_sklearns_curve(monkeypatch):
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(150, dtype=int), np.ones(90, dtype=int)]
    s = np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1).round(2)  # ties, as a small CNN's scores have
    fast = M.evaluate_scores(y, s, 0.5, n_boot=300, seed=1)
    monkeypatch.setattr(M, "_resample_roc", M._roc)
    slow = M.evaluate_scores(y, s, 0.5, n_boot=300, seed=1)
    assert fast.metrics == slow.metrics
