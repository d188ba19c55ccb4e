"""The figures of a holdout backtest (``custscore evaluate``): ranking quality, response-rate
intervals, calibration of expected purchases, value capture and alert precision/recall.

Every function takes plain arrays (one entry per customer) and returns numbers; NaN marks a
figure that is undefined on the data (an empty class, a zero total), never an error. Scores and
outcomes must be finite and of one length (ValueError otherwise). Definitions and sources:

- **Ties in a ranking** (gains, lift, capture shares): customers are ranked by score,
  descending; a group of equal scores is spread evenly, i.e. contacting part ``f`` of a tied
  group captures part ``f`` of its positives (or value). This is the expected value over a
  random order within ties, so no figure depends on the row order. The curve is the linear
  interpolation through the group boundaries.
- ``roc_auc``: the probability that a random positive scores above a random negative, ties
  counting 1/2: the Mann-Whitney U over n1 n0 (Hanley & McNeil 1982), computed from average
  ranks; equals ``sklearn.metrics.roc_auc_score``. NaN when either class is empty.
- ``gains_curve``: the cumulative-gains chart of direct marketing (Berry & Linoff, *Data
  Mining Techniques*): share of all positives among the top share x of customers, x = 0..1.
- ``top_share_lift``: positive rate of the top ``share`` over the overall rate, which is
  gains(share) / share (top-decile lift for share = 0.1).
- ``wilson_interval``: the Wilson (1927) score interval for a binomial proportion, without
  continuity correction (Newcombe 1998, method 3; ``scipy.stats.binomtest(...).proportion_ci
  (method="wilson")``). NaN bounds when n = 0.
- ``rank_correlation``: Spearman's rho, the Pearson correlation of average ranks
  (``scipy.stats.spearmanr``); NaN when either side is constant or has fewer than 2 entries.
- ``capture_shares``: share of sum(value) held by the top ``share`` of customers by
  ``rank_by`` (ties as above), as the value pyramid's top 1/5/20 %; NaN when sum(value) = 0.
  With negative values (net refunds) a share can leave 0..1.
- ``calibration_buckets``: lifetimes' ``plot_calibration_purchases_vs_holdout_purchases(model,
  summary, kind="frequency_cal", n)``: customers grouped by calibration frequency, the mean
  expected and the mean actual holdout purchases of each group, the first ``n`` groups present
  in ascending order (no pooled "n+" group, unlike Fader, Hardie & Lee 2005, Figure 4).
- ``error_summary``: ``customers``; ``mae`` = mean |expected - actual|; ``rmse``;
  ``expected_total``, ``actual_total``; ``bias`` = (sum expected - sum actual) / sum actual, the
  relative aggregate bias (positive = over-prediction; NaN when sum actual = 0).
- ``precision_recall``: precision = |flagged and positive| / |flagged|, recall = |flagged and
  positive| / |positive| (NaN when the denominator is 0), and the number flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike
from scipy.stats import rankdata

__all__ = [
    "CalibrationBucket",
    "calibration_buckets",
    "capture_shares",
    "error_summary",
    "gains_curve",
    "precision_recall",
    "rank_correlation",
    "roc_auc",
    "top_share_lift",
    "wilson_interval",
]

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def _values(values: ArrayLike, name: str) -> Floats:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite numbers")
    return out


def _flags(values: ArrayLike, name: str) -> Bools:
    raw = np.asarray(values).reshape(-1)
    if raw.dtype != np.bool_:
        number = np.asarray(raw, dtype=np.float64)
        if not np.isin(number, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be 0/1 or booleans")
        return np.asarray(number == 1.0, dtype=np.bool_)
    return np.asarray(raw, dtype=np.bool_)


def _same_length(*arrays: npt.NDArray[np.generic]) -> None:
    if len({a.shape[0] for a in arrays}) > 1:
        raise ValueError(f"arrays of different lengths: {[a.shape[0] for a in arrays]}")


def _captured(score: Floats, weight: Floats, shares: Floats) -> Floats:
    """Sum of ``weight`` over the top ``shares`` of customers by score, ties spread evenly."""
    n = score.shape[0]
    order = np.argsort(-score, kind="stable")
    ranked = score[order]
    ends = np.append(np.flatnonzero(ranked[1:] != ranked[:-1]) + 1, n)  # group ends
    cumulative = np.cumsum(weight[order])[ends - 1]
    x = np.concatenate(([0.0], ends / n))
    y = np.concatenate(([0.0], cumulative))
    return np.interp(shares, x, y)


def roc_auc(score: ArrayLike, outcome: ArrayLike) -> float:
    """Mann-Whitney AUC of ``score`` for the binary ``outcome``, ties 1/2; NaN for one class."""
    s, y = _values(score, "score"), _flags(outcome, "outcome")
    _same_length(s, y)
    n1 = int(y.sum())
    n0 = y.shape[0] - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks of ties
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def gains_curve(score: ArrayLike, outcome: ArrayLike, points: int = 101) -> tuple[Floats, Floats]:
    """(share of customers contacted, 0..1 in ``points`` steps; share of positives captured)."""
    if points < 2:
        raise ValueError("a gains curve needs at least 2 points")
    s, y = _values(score, "score"), _flags(outcome, "outcome")
    _same_length(s, y)
    contacted = np.linspace(0.0, 1.0, points)
    positives = int(y.sum())
    if positives == 0:
        return contacted, np.full(points, np.nan)
    return contacted, _captured(s, y.astype(np.float64), contacted) / positives


def top_share_lift(score: ArrayLike, outcome: ArrayLike, share: float = 0.1) -> float:
    """Positive rate in the top ``share`` by score over the overall rate; NaN with no positive."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    s, y = _values(score, "score"), _flags(outcome, "outcome")
    _same_length(s, y)
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    captured = _captured(s, y.astype(np.float64), np.array([share]))[0] / positives
    return float(captured / share)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) of successes / n; (NaN, NaN) for n = 0."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def rank_correlation(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman's rho with average ranks for ties; NaN when undefined."""
    x, y = _values(a, "a"), _values(b, "b")
    _same_length(x, y)
    if x.shape[0] < 2:
        return float("nan")
    rx, ry = rankdata(x) - (x.shape[0] + 1) / 2, rankdata(y) - (y.shape[0] + 1) / 2
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    if denominator == 0:
        return float("nan")
    return float((rx * ry).sum() / denominator)


def capture_shares(
    rank_by: ArrayLike, value: ArrayLike, shares: tuple[float, ...] = (0.01, 0.05, 0.20)
) -> dict[float, float]:
    """{share: part of sum(value) held by the top ``share`` of customers by ``rank_by``}."""
    s, v = _values(rank_by, "rank_by"), _values(value, "value")
    _same_length(s, v)
    wanted = np.asarray(shares, dtype=np.float64)
    if ((wanted < 0) | (wanted > 1)).any():
        raise ValueError(f"shares must be in [0, 1], got {shares}")
    total = float(v.sum())
    if s.shape[0] == 0 or total == 0:
        return {float(share): float("nan") for share in shares}
    held = _captured(s, v, wanted) / total
    return {float(share): float(h) for share, h in zip(shares, held, strict=True)}


@dataclass(frozen=True)
class CalibrationBucket:
    """Customers with one calibration frequency: mean expected and actual holdout purchases."""

    frequency_cal: int
    customers: int
    expected: float
    actual: float


def calibration_buckets(
    frequency_cal: ArrayLike, expected_holdout: ArrayLike, actual_holdout: ArrayLike, n: int = 7
) -> list[CalibrationBucket]:
    """The first ``n`` calibration frequencies present, ascending, with the group means."""
    x = _values(frequency_cal, "frequency_cal")
    e, a = _values(expected_holdout, "expected_holdout"), _values(actual_holdout, "actual_holdout")
    _same_length(x, e, a)
    groups, index, counts = np.unique(x, return_inverse=True, return_counts=True)
    mean_e = np.bincount(index, weights=e, minlength=groups.shape[0]) / counts
    mean_a = np.bincount(index, weights=a, minlength=groups.shape[0]) / counts
    return [
        CalibrationBucket(int(groups[i]), int(counts[i]), float(mean_e[i]), float(mean_a[i]))
        for i in range(min(n, groups.shape[0]))
    ]


def error_summary(expected: ArrayLike, actual: ArrayLike) -> dict[str, float]:
    """customers, mae, rmse, expected_total, actual_total, bias (see the module docstring)."""
    e, a = _values(expected, "expected"), _values(actual, "actual")
    _same_length(e, a)
    n = e.shape[0]
    error = e - a
    expected_total, actual_total = float(e.sum()), float(a.sum())
    return {
        "customers": float(n),
        "mae": float(np.abs(error).mean()) if n else float("nan"),
        "rmse": float(np.sqrt((error * error).mean())) if n else float("nan"),
        "expected_total": expected_total,
        "actual_total": actual_total,
        "bias": (expected_total - actual_total) / actual_total if actual_total else float("nan"),
    }


def precision_recall(flagged: ArrayLike, positive: ArrayLike) -> tuple[float, float, int]:
    """(precision, recall, number flagged) of ``flagged`` against ``positive``."""
    f, p = _flags(flagged, "flagged"), _flags(positive, "positive")
    _same_length(f, p)
    hits, n_flagged, n_positive = int((f & p).sum()), int(f.sum()), int(p.sum())
    precision = hits / n_flagged if n_flagged else float("nan")
    recall = hits / n_positive if n_positive else float("nan")
    return precision, recall, n_flagged
