"""Deployment metrics for AI-image detectors.

Conventions used throughout:

* ``labels``: 1 = fake / synthetic, 0 = real.
* ``scores``: higher = more likely fake.  At a fixed operating threshold ``t`` an image is
  flagged as fake iff ``score > t`` (strictly greater; a tie with ``t`` counts as real).
* The operating threshold is fixed on *held-out real images only* (:func:`threshold_at_fpr`)
  and then passed to :func:`evaluate_scores`; it is never tuned on the test labels.  This is
  the difference from reporting "accuracy at 0.5" or at a threshold chosen on the test set.
* ``tpr_at_fpr`` and ``equal_error_rate`` are *curve summaries*: they pick the best
  operating point with the test labels (oracle) and are reported as such.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    brier_score_loss,
    roc_auc_score,
    roc_curve,
)

from synthscope.errors import UserError
from synthscope.grouped import Column, GroupedProportions, Schema
from synthscope.stats import wilson_interval

__all__ = [
    "InsufficientRealsWarning",
    "threshold_at_fpr",
    "tpr_at_fpr",
    "equal_error_rate",
    "expected_calibration_error",
    "reliability_curve",
    "brier_score",
    "wilson_interval",
    "bootstrap_ci",
    "MetricValue",
    "DetectionReport",
    "evaluate_scores",
    "PER_SOURCE_SCHEMA",
    "per_source_layout",
    "per_source_from_layout",
    "mark_seen_in_training",
]


class InsufficientRealsWarning(UserWarning):
    """Too few held-out reals to resolve the requested false-positive rate.

    With ``n`` reals, the smallest non-zero empirical FPR is ``1/n``; for ``target_fpr < 1/n`` the
    threshold falls back to the largest real score, and nothing certifies that the FPR on
    new reals is anywhere near the target.
    """


# --------------------------------------------------------------------------- validation


def _as_labels(labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise UserError(f"labels must be 1-D, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise UserError(f"labels must be 0 (real) or 1 (fake); found {bad.tolist()}")
    return y.astype(np.int64)


def _as_scores(scores: Any, n: int | None = None, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise UserError(f"{name} must be 1-D, got shape {s.shape}")
    if n is not None and s.shape[0] != n:
        raise UserError(f"{name} has {s.shape[0]} entries but labels has {n}")
    if not np.isfinite(s).all():
        raise UserError(f"{name} contains NaN or infinite values")
    return s


def _as_probs(probs: Any, n: int) -> np.ndarray:
    p = _as_scores(probs, n, name="probs")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise UserError("probs must lie in [0, 1] (predicted probability of 'fake')")
    return p


def _check_both_classes(y: np.ndarray, what: str) -> None:
    if y.size == 0 or y.min() == y.max():
        raise UserError(f"{what} needs both real (0) and fake (1) labels")


# --------------------------------------------------------------------------- thresholds


def threshold_at_fpr(real_scores: Sequence[float] | np.ndarray, target_fpr: float = 0.01) -> float:
    """Operating threshold from held-out *real* scores only, for a target false-positive rate.

    Convention: with ``n`` real scores sorted ascending ``s_(1) <= ... <= s_(n)``, the threshold
    is the ``k``-th order statistic with ``k = ceil((1 - target_fpr) * n)`` (1-indexed), i.e. the
    "inverted CDF" lower quantile.  Images are flagged fake iff ``score > threshold``, so at most
    ``n - k <= floor(target_fpr * n)`` of these reals are flagged (ties at the threshold are kept
    real, which can only lower the realised FPR).

    If ``target_fpr * n < 1`` (e.g. fewer than 1000 reals for 0.1 %), ``k = n`` and the threshold
    is the maximum real score: the realised FPR on these reals is 0 but the target is not
    resolvable, so an :class:`InsufficientRealsWarning` is issued.

    No labels are taken: the threshold cannot depend on the fake test images.
    """
    s = _as_scores(real_scores, name="real_scores")
    if s.size == 0:
        raise UserError("threshold_at_fpr needs at least one held-out real score")
    if not (0.0 <= float(target_fpr) < 1.0):
        raise UserError(f"target_fpr must be in [0, 1), got {target_fpr}")
    n = s.size
    # n - floor(fpr*n) == ceil((1-fpr)*n); the epsilon absorbs float error such as 0.29*100 = 28.999…
    allowed = math.floor(target_fpr * n + 1e-9)
    k = n - allowed
    if allowed < 1:
        warnings.warn(
            f"threshold_at_fpr: {n} held-out reals cannot resolve target_fpr={target_fpr:g} "
            f"(need at least {math.ceil(1 / target_fpr) if target_fpr > 0 else 'infinitely many'}); "
            "using the maximum real score, whose FPR on new reals is only known to ~1/n",
            InsufficientRealsWarning,
            stacklevel=2,
        )
    return float(np.sort(s)[k - 1])


# --------------------------------------------------------------------------- ROC summaries


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # drop_intermediate=False keeps every distinct threshold: needed for exact AP from the same curve
    return roc_curve(y, s, drop_intermediate=False)


def _resample_roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_roc`` of a bootstrap resample of labels and scores already checked (both classes present):
    the same arithmetic as scikit-learn's roc_curve (scores sorted descending, counts cumulated at
    the last of each run of tied scores, a (0, 0) point at threshold +inf), without the argument
    checks that make up most of a call's cost on a few hundred scores, a thousand times per report."""
    order = np.argsort(s, kind="stable")[::-1]  # ties stay together, and the counts at their ends do not
    ranked = s[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), s.size - 1]
    tps = np.cumsum(y[order], dtype=np.float64)[ends]
    fps = 1 + ends.astype(np.float64) - tps
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, ranked[ends].astype(np.float64)]
    return fps / fps[-1], tps / tps[-1], thresholds


def _tpr_at_fpr_from_curve(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def _eer_from_curve(fpr: np.ndarray, tpr: np.ndarray, thr: np.ndarray) -> tuple[float, float]:
    fnr = 1.0 - tpr
    d = fpr - fnr  # non-decreasing along the curve: -1 at the first point, +1 at the last
    i = int(np.argmax(d >= 0))
    if d[i] == 0 or i == 0:
        return float(fpr[i]), float(thr[i] if np.isfinite(thr[i]) else thr[min(i + 1, thr.size - 1)])
    alpha = -d[i - 1] / (d[i] - d[i - 1])
    eer = fpr[i - 1] + alpha * (fpr[i] - fpr[i - 1])
    # sklearn's first threshold is +inf; interpolating towards it is meaningless, use the finite end
    if np.isfinite(thr[i - 1]):
        t = thr[i - 1] + alpha * (thr[i] - thr[i - 1])
    else:
        t = thr[i]
    return float(eer), float(t)


def _ap_from_curve(fpr: np.ndarray, tpr: np.ndarray, n_pos: int, n_neg: int) -> float:
    # Same step-wise AP as sklearn.average_precision_score, computed from the ROC points so a
    # bootstrap resample needs one curve, not two. Recall steps are summed as whole counts and
    # divided once, so a perfect ranking is exactly 1.0 (a sum of float recall steps can land one
    # ulp either side of it, and then outside its own bootstrap interval).
    tps = np.rint(tpr * n_pos)
    fps = np.rint(fpr * n_neg)
    denom = tps + fps
    precision = np.divide(tps, denom, out=np.ones_like(tps), where=denom > 0)
    return float(np.sum(np.diff(tps) * precision[1:]) / n_pos)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (sklearn's step-wise definition), exactly as every bootstrap resample
    computes it; labels must hold both classes."""
    f, t, _ = _roc(labels, scores)
    n_pos = int(np.sum(labels == 1))
    return _ap_from_curve(f, t, n_pos, len(labels) - n_pos)


def tpr_at_fpr(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, fpr: float) -> float:
    """Oracle curve summary: the highest TPR on the ROC curve with FPR <= ``fpr``.

    The operating point is chosen with the test labels (this is "TPR at x % FPR" as a property
    of the ROC curve, not a deployable threshold — use :func:`threshold_at_fpr` for that).
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.size)
    _check_both_classes(y, "tpr_at_fpr")
    f, t, _ = _roc(y, s)
    return _tpr_at_fpr_from_curve(f, t, float(fpr))


def equal_error_rate(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Equal error rate (FPR = FNR) and the score threshold where it occurs.

    Linear interpolation between the two adjacent ROC points where FPR - FNR changes sign;
    the threshold is interpolated the same way.  Oracle curve summary (uses the test labels).
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.size)
    _check_both_classes(y, "equal_error_rate")
    return _eer_from_curve(*_roc(y, s))


# --------------------------------------------------------------------------- calibration


def _bin_edges(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    if n_bins < 1:
        raise UserError(f"n_bins must be >= 1, got {n_bins}")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        edges = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
        return edges
    raise UserError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")


def _bin_stats(y: np.ndarray, p: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Same assignment as sklearn.calibration.calibration_curve: bins (lo, hi], the first closed.
    idx = np.searchsorted(edges[1:-1], p)
    nb = edges.size - 1
    count = np.bincount(idx, minlength=nb).astype(np.float64)
    sum_p = np.bincount(idx, weights=p, minlength=nb)
    sum_y = np.bincount(idx, weights=y, minlength=nb)
    return count, sum_p, sum_y


def expected_calibration_error(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    n_bins: int = 15,
    strategy: str = "uniform",
) -> float:
    """Binned ECE: ``sum_b (n_b / n) * |observed fake share_b - mean P(fake)_b|``.

    ``strategy`` is ``"uniform"`` (equal-width bins on [0, 1]) or ``"quantile"`` (equal-count
    bins).  Bins are ``(lo, hi]`` with the first closed, as in sklearn's ``calibration_curve``.
    """
    y = _as_labels(labels)
    p = _as_probs(probs, y.size)
    if y.size == 0:
        raise UserError("expected_calibration_error needs at least one sample")
    count, sum_p, sum_y = _bin_stats(y, p, _bin_edges(p, n_bins, strategy))
    return float(np.abs(sum_y - sum_p).sum() / y.size)  # |n_b·acc_b − n_b·conf_b| summed, / n


def reliability_curve(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    n_bins: int = 10,
    strategy: str = "uniform",
) -> pd.DataFrame:
    """Reliability diagram data: one row per bin (empty bins kept, with NaN means and count 0).

    Columns: ``bin, bin_low, bin_high, mean_predicted, observed_fraction, count``.
    """
    y = _as_labels(labels)
    p = _as_probs(probs, y.size)
    edges = _bin_edges(p, n_bins, strategy) if p.size else np.linspace(0.0, 1.0, n_bins + 1)
    count, sum_p, sum_y = _bin_stats(y, p, edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        frac = np.where(count > 0, sum_y / count, np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(edges.size - 1),
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "mean_predicted": mean_p,
            "observed_fraction": frac,
            "count": count.astype(np.int64),
        }
    )


def brier_score(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> float:
    """Brier score, mean squared error of P(fake) against the label (sklearn ``brier_score_loss``)."""
    y = _as_labels(labels)
    p = _as_probs(probs, y.size)
    return float(brier_score_loss(y, p, pos_label=1))


# --------------------------------------------------------------------------- intervals


def _resample_indices(y: np.ndarray, n_boot: int, seed: int, stratified: bool) -> np.ndarray:
    """(n_boot, n) index matrix, drawn in one go."""
    rng = np.random.default_rng(seed)
    if not stratified:
        return rng.integers(0, y.size, size=(n_boot, y.size))
    # Resample each class within itself: every resample keeps the class counts (so both
    # classes are always present and curve metrics are always defined).
    parts = []
    for cls in (0, 1):
        members = np.flatnonzero(y == cls)
        if members.size:
            parts.append(members[rng.integers(0, members.size, size=(n_boot, members.size))])
    return np.concatenate(parts, axis=1)


def _percentile_ci(values: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (None, None)
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return (float(lo), float(hi))


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    stratified: bool = True,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of ``metric_fn(labels, scores)``.

    Stratified (default): reals and fakes are resampled separately with replacement, so every
    resample has the original class counts.  Unstratified resamples where the metric raises
    ``ValueError`` or returns NaN (e.g. a single class drawn) are skipped.  Deterministic for a given ``seed``.
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.size)
    if y.size == 0:
        raise UserError("bootstrap_ci needs at least one sample")
    if not (0.0 < confidence < 1.0):
        raise UserError(f"confidence must be in (0, 1), got {confidence}")
    idx = _resample_indices(y, int(n_boot), seed, stratified)
    ys, ss = y[idx], s[idx]  # gathered once for all resamples
    vals = np.full(idx.shape[0], np.nan)
    with warnings.catch_warnings():
        # sklearn (>= 1.6) warns and returns NaN on a single-class resample; those are dropped below
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for b in range(idx.shape[0]):
            try:
                vals[b] = metric_fn(ys[b], ss[b])
            except ValueError:
                continue
    return _percentile_ci(vals, confidence)


# --------------------------------------------------------------------------- report


@dataclass
class MetricValue:
    """One reported number with its interval.

    ``value`` is None when the metric is undefined on this data; ``note`` then says why.
    ``method`` names the interval: ``"bootstrap"`` (stratified percentile), ``"wilson"``
    (binomial proportion) or ``"none"``.
    """

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    method: str = "none"
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _json_float(self.value),
            "ci_low": _json_float(self.ci_low),
            "ci_high": _json_float(self.ci_high),
            "method": self.method,
            "note": self.note,
        }


def _json_float(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _json_float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


@dataclass
class DetectionReport:
    """Detector evaluation at a threshold fixed elsewhere (on held-out reals).

    ``metrics`` maps a metric name to a :class:`MetricValue`; keys: ``ap, roc_auc, accuracy,
    balanced_accuracy, real_accuracy, fake_accuracy, fpr_at_threshold, tpr_at_1pct_fpr,
    tpr_at_0.1pct_fpr, eer`` and, when probabilities were given, ``ece, brier``.
    ``per_source`` holds the per-source results, a :class:`~synthscope.grouped.GroupedProportions`
    keyed by source and label (None when no sources were given; see :data:`PER_SOURCE_KEYS`).
    ``report["ap"]`` returns the value.
    """

    threshold: float
    n_real: int
    n_fake: int
    metrics: dict[str, MetricValue]
    per_source: GroupedProportions | None = None
    confidence: float = 0.95
    n_boot: int = 1000
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> float | None:
        return self.metrics[name].value

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (no NaN/inf, no numpy types)."""
        return _json_safe(
            {
                "threshold": self.threshold,
                "threshold_rule": "fake iff score > threshold; threshold fixed on held-out reals",
                "n_real": self.n_real,
                "n_fake": self.n_fake,
                "confidence": self.confidence,
                "n_boot": self.n_boot,
                "seed": self.seed,
                "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
                "per_source": self.per_source_table().to_dict("records"),
                "notes": list(self.notes),
            }
        )

    def table(self) -> pd.DataFrame:
        """One row per metric: ``metric, value, ci_low, ci_high, method, note``."""
        rows = [
            {"metric": k, "value": v.value, "ci_low": v.ci_low, "ci_high": v.ci_high, "method": v.method, "note": v.note}
            for k, v in self.metrics.items()
        ]
        return pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high", "method", "note"])

    def per_source_table(self) -> pd.DataFrame:
        """The per-source results in their saved layout (:data:`PER_SOURCE_SCHEMA`, one row per source
        and label; ``seen_in_training`` last when the sources were marked); no rows without sources."""
        if self.per_source is None:
            return pd.DataFrame(columns=PER_SOURCE_SCHEMA.names)
        return per_source_layout(self.per_source)


# Per-source results are one GroupedProportions keyed by source and label (and seen_in_training once
# the sources are marked, see detectors.assessment): n images, k of them flagged fake at the
# threshold, the rate k / n with its Wilson interval, and the source's AP and ROC-AUC against all
# test reals carried as declared columns (they cannot be pooled from per-source values). Pooled
# rates (e.g. every unseen generator: ``overall(["source"])``) and differences between sources come
# from the one object.
PER_SOURCE_KEYS = Schema((
    Column("source", "text", "the generator an image came from (reals: their corpus's source)"),
    # grouped by label too: a mislabelled source never silently mixes classes
    Column("label", "int", "1 = fake, 0 = real"),
))
SEEN_IN_TRAINING = Column("seen_in_training", "optional_bool",
                          "whether the detector was trained on the source's synthetic images; missing for "
                          "reals and when the detector does not record its training sources")
PER_SOURCE_CURVES = Schema((
    Column("ap", "float", "average precision of the source's fakes against all test reals"),
    Column("roc_auc", "float", "ROC-AUC of the source's fakes against all test reals"),
))
RATE = "rate"
# The layout the per-source table is saved in (per_source.csv, metrics.json, the report's
# detector-per-source table): the rate is named by label (share of fakes caught, share of reals
# flagged), as readers of the saved files know it.
_LAYOUT_VALUES = Schema((
    Column("n", "int", "images of the source with this label"), *PER_SOURCE_CURVES.columns,
    Column("tpr_at_threshold", "float", "fakes: share flagged fake at the threshold (k / n)"),
    Column("fpr_at_threshold", "float", "reals: share flagged fake at the threshold (k / n)"),
    Column("rate_ci_low", "float", "lower Wilson bound of the rate"),
    Column("rate_ci_high", "float", "upper Wilson bound of the rate"),
))
PER_SOURCE_SCHEMA = PER_SOURCE_KEYS + _LAYOUT_VALUES
_CURVE_FPRS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}


def _per_source_grouped(counts: pd.DataFrame, keys: Schema, confidence: float) -> GroupedProportions:
    return GroupedProportions(counts, keys.names, RATE, confidence, keys, PER_SOURCE_CURVES)


def _per_source(y: np.ndarray, s: np.ndarray, src: np.ndarray, threshold: float,
                confidence: float) -> GroupedProportions:
    flagged = s > threshold
    real = y == 0
    rows = []
    keys = sorted({(str(a), int(b)) for a, b in zip(src, y)}, key=lambda k: (k[1], k[0]))  # reals first
    for name, lab in keys:
        m = (src == name) & (y == lab)
        row: dict[str, Any] = {"source": name, "label": lab, "n": int(m.sum()), "k": int(flagged[m].sum()),
                               "ap": np.nan, "roc_auc": np.nan}
        if lab == 1 and real.any():  # this generator's fakes vs all reals
            sel = m | real
            row["ap"] = average_precision(y[sel], s[sel])
            row["roc_auc"] = float(roc_auc_score(y[sel], s[sel]))
        rows.append(row)
    return _per_source_grouped(pd.DataFrame(rows), PER_SOURCE_KEYS, confidence)


def per_source_layout(results: GroupedProportions) -> pd.DataFrame:
    """Per-source results (a :class:`GroupedProportions` as :func:`evaluate_scores` gives) in the saved
    layout: :data:`PER_SOURCE_SCHEMA`, then ``seen_in_training`` when the sources are marked."""
    table = results.by_group
    fake = table["label"] == 1
    layout = table.assign(tpr_at_threshold=table[RATE].where(fake), fpr_at_threshold=table[RATE].where(~fake),
                          rate_ci_low=table[f"{RATE}_ci_low"], rate_ci_high=table[f"{RATE}_ci_high"])
    extra = [c for c in results.keys if c not in PER_SOURCE_SCHEMA.names]
    return layout[[*PER_SOURCE_SCHEMA.names, *extra]].reset_index(drop=True)


def per_source_from_layout(rows: pd.DataFrame | Sequence[dict[str, Any]],
                           confidence: float = 0.95) -> GroupedProportions | None:
    """Per-source results from their saved layout (:func:`per_source_layout`: metrics.json's
    ``per_source`` rows or per_source.csv), None for no rows. The rate is read exactly as k / n, so
    k is recovered and the intervals recomputed are the ones saved; ``seen_in_training`` comes back
    as a key when present."""
    frame = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows
    if not len(frame):
        return None
    keys = PER_SOURCE_KEYS + (Schema((SEEN_IN_TRAINING,)) if SEEN_IN_TRAINING.name in frame else Schema(()))
    frame = (keys + _LAYOUT_VALUES).apply(frame)
    rate = frame["tpr_at_threshold"].where(frame["label"] == 1, frame["fpr_at_threshold"])
    k = (rate * frame["n"]).round()
    bad = rate.isna() | ((rate * frame["n"] - k).abs() > 1e-6)
    if bad.any():
        raise UserError(f"per-source rows of {', '.join(map(str, frame.loc[bad, 'source']))}: the rate "
                        "(tpr_at_threshold for fakes, fpr_at_threshold for reals) is missing or not k / n")
    counts = frame.assign(k=k.astype(np.int64))
    return _per_source_grouped(counts, keys, confidence)


def mark_seen_in_training(results: GroupedProportions, seen: Mapping[str, bool]) -> GroupedProportions:
    """The per-source results keyed by ``seen_in_training`` too: ``seen[source]`` for synthetic
    sources, missing for reals and for sources ``seen`` does not name, so that seen and unseen
    generators pool apart (``overall(["source"])``)."""
    table = results.by_group.drop(columns=[SEEN_IN_TRAINING.name], errors="ignore")
    flags = [seen.get(source) if label == 1 else None for source, label in zip(table["source"], table["label"])]
    keys = PER_SOURCE_KEYS + Schema((SEEN_IN_TRAINING,))
    return _per_source_grouped(table.assign(**{SEEN_IN_TRAINING.name: flags}), keys, results.confidence)


def evaluate_scores(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    probs: Sequence[float] | np.ndarray | None = None,
    sources: Sequence[str] | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> DetectionReport:
    """Evaluate detector scores on a labelled test set at an already-fixed threshold.

    ``threshold`` must come from elsewhere — normally :func:`threshold_at_fpr` on held-out real
    images — and is used as given (fake iff ``score > threshold``).  Curve metrics (AP, ROC-AUC,
    EER, TPR at 1 % / 0.1 % FPR) and accuracies get stratified percentile-bootstrap intervals;
    the class-conditional rates at the threshold (FPR, real accuracy = TNR, fake accuracy = TPR)
    get Wilson intervals, which stay honest at 0 or 1.  Single-class sets are allowed: metrics
    that need both classes are ``None`` with a note.
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.size)
    if y.size == 0:
        raise UserError("evaluate_scores needs at least one sample")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise UserError("threshold must be finite")
    p = _as_probs(probs, y.size) if probs is not None else None
    src = None
    if sources is not None:
        src = np.asarray([str(v) for v in sources], dtype=object)
        if src.size != y.size:
            raise UserError(f"sources has {src.size} entries but labels has {y.size}")

    n_fake = int(y.sum())
    n_real = int(y.size - n_fake)
    both = n_real > 0 and n_fake > 0
    flagged = s > threshold
    fp, tp = int(flagged[y == 0].sum()), int(flagged[y == 1].sum())
    metrics: dict[str, MetricValue] = {}
    notes: list[str] = []
    no_fakes, no_reals = "no fake images in the test set", "no real images in the test set"
    missing = no_fakes if n_fake == 0 else no_reals

    # Rates at the fixed threshold: binomial proportions with Wilson intervals.
    if n_real:
        lo, hi = wilson_interval(fp, n_real, confidence)
        metrics["fpr_at_threshold"] = MetricValue(fp / n_real, lo, hi, "wilson")
        lo, hi = wilson_interval(n_real - fp, n_real, confidence)
        metrics["real_accuracy"] = MetricValue(1 - fp / n_real, lo, hi, "wilson")
    else:
        metrics["fpr_at_threshold"] = MetricValue(None, note=no_reals)
        metrics["real_accuracy"] = MetricValue(None, note=no_reals)
    if n_fake:
        lo, hi = wilson_interval(tp, n_fake, confidence)
        metrics["fake_accuracy"] = MetricValue(tp / n_fake, lo, hi, "wilson")
    else:
        metrics["fake_accuracy"] = MetricValue(None, note=no_fakes)

    idx = _resample_indices(y, int(n_boot), seed, stratified=True) if n_boot > 0 else None

    def boot(vals: np.ndarray) -> tuple[float | None, float | None]:
        return _percentile_ci(vals, confidence) if idx is not None else (None, None)

    method = "bootstrap" if idx is not None else "none"
    if both:
        correct = (flagged == (y == 1)).astype(np.float64)
        lo, hi = boot(correct[idx].mean(axis=1) if idx is not None else np.array([]))
        metrics["accuracy"] = MetricValue(float(correct.mean()), lo, hi, method,
                                          note="depends on the real/fake mix of the test set")
        # per-class means of a stratified resample: class sizes are fixed, so this is exact
        bal = 0.5 * ((n_real - fp) / n_real + tp / n_fake)
        if idx is not None:
            fl, yy = flagged[idx], y[idx]
            tnr_b = ((~fl) & (yy == 0)).sum(axis=1) / n_real
            tpr_b = (fl & (yy == 1)).sum(axis=1) / n_fake
            lo, hi = boot(0.5 * (tnr_b + tpr_b))
        else:
            lo = hi = None
        metrics["balanced_accuracy"] = MetricValue(bal, lo, hi, method)
    else:
        metrics["accuracy"] = MetricValue(None, note=f"single-class set ({missing}); see the class rates")
        metrics["balanced_accuracy"] = MetricValue(None, note=missing)

    # Curve metrics: one ROC curve per resample serves AUC, AP, TPR@FPR and EER.
    curve_names = ["ap", "roc_auc", *_CURVE_FPRS, "eer"]
    if both:
        f, t, th = _roc(y, s)
        point = {
            "ap": _ap_from_curve(f, t, n_fake, n_real),  # as in every resample below
            "roc_auc": float(roc_auc_score(y, s)),
            **{k: _tpr_at_fpr_from_curve(f, t, v) for k, v in _CURVE_FPRS.items()},
            "eer": _eer_from_curve(f, t, th)[0],
        }
        boots = {k: np.full(idx.shape[0] if idx is not None else 0, np.nan) for k in curve_names}
        if idx is not None:
            ys, ss = y[idx], s[idx]
            for b in range(idx.shape[0]):
                fb, tb, hb = _resample_roc(ys[b], ss[b])
                boots["ap"][b] = _ap_from_curve(fb, tb, n_fake, n_real)
                boots["roc_auc"][b] = float(trapezoid(tb, fb))  # sklearn.metrics.auc's sum, fpr rising
                for k, v in _CURVE_FPRS.items():
                    boots[k][b] = _tpr_at_fpr_from_curve(fb, tb, v)
                boots["eer"][b] = _eer_from_curve(fb, tb, hb)[0]
        eer_thr = _eer_from_curve(f, t, th)[1]
        for k in curve_names:
            lo, hi = boot(boots[k])
            note = None
            if k in _CURVE_FPRS:
                note = "oracle ROC summary (operating point chosen on test labels)"
                if n_real * _CURVE_FPRS[k] < 1:
                    note += f"; only {n_real} reals, so this is TPR at FPR = 0"
            elif k == "eer":
                note = f"oracle ROC summary; EER threshold {eer_thr:.6g} (not the deployment threshold)"
            metrics[k] = MetricValue(point[k], lo, hi, method, note)
    else:
        for k in curve_names:
            metrics[k] = MetricValue(None, note=f"needs both classes ({missing})")

    if p is not None:
        point_ece = expected_calibration_error(y, p)
        point_brier = brier_score(y, p)
        if idx is not None:
            ece_b = np.array([expected_calibration_error(y[r], p[r]) for r in idx])
            brier_b = ((p - y) ** 2)[idx].mean(axis=1)  # vectorised; equals brier_score_loss
        else:
            ece_b = brier_b = np.array([])
        lo, hi = boot(ece_b)
        metrics["ece"] = MetricValue(point_ece, lo, hi, method, note="15 uniform bins; percentile intervals of binned ECE are biased upward")
        lo, hi = boot(brier_b)
        metrics["brier"] = MetricValue(point_brier, lo, hi, method)

    if n_real and n_real * 0.01 < 10:  # fewer than 10 expected false positives at 1 % FPR
        notes.append(f"only {n_real} reals in the test set: an FPR near 1 % rests on a handful of false positives; see its Wilson interval")
    if not both:
        notes.append(f"single-class test set ({missing}): only the rate at the threshold is meaningful")

    per_source = _per_source(y, s, src, threshold, confidence) if src is not None else None
    order = ["ap", "roc_auc", "accuracy", "balanced_accuracy", "real_accuracy", "fake_accuracy",
             "fpr_at_threshold", *_CURVE_FPRS, "eer", "ece", "brier"]
    metrics = {k: metrics[k] for k in order if k in metrics}
    return DetectionReport(threshold, n_real, n_fake, metrics, per_source, confidence, int(n_boot), seed, notes)
