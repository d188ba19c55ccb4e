"""The mergeable population sketch: its arithmetic, free of I/O and of clocks.

A partition's sketch is a histogram of trailing-window spend in log buckets of relative width
``EPS`` (1 %) with per-bucket counts and sums, exact sums for the quadrant means, and KPI
counters (:func:`sketch_scores`). Sketches of disjoint partitions merge by adding them up:
:func:`cuts_from_sketches` turns the merged histogram into cut points and
:func:`population_kpis` the merged counters into the population KPIs.

Error: a tier or A/B/C/D cut is the lower edge of the bucket that holds the exact cut, so it
is low by less than 1 % of its value; customers within 1 % of a cut may sit one class
higher than the exact batch snapshot (:func:`engine.ranking.snapshot`). Quadrant means are
exact. Reading and storing sketches is :mod:`streams.population_refresh`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.ranking import ABCD_SHARES, TIER_SHARES
from engine.scoring import PopulationCuts
from engine.scoring_params import DAY
from engine.segments import LIFECYCLE_NAMES, RFM_SEGMENT_NAMES, TIER_NAMES

__all__ = [
    "EPS",
    "churn_counts",
    "cuts_from_sketches",
    "population_kpis",
    "sketch_scores",
    "trailing_window_days",
]

EPS = 0.01
_LOG_BASE = math.log1p(EPS)


def _bucket(value: float) -> int:
    return math.floor(math.log(value) / _LOG_BASE)


def _edge(bucket: int) -> float:
    return math.exp(bucket * _LOG_BASE)


def trailing_window_days(window_months: int) -> float:
    """The trailing window in days (a month is 365.25 / 12 days)."""
    return window_months * 365.25 / 12


def sketch_scores(
    scores: npt.NDArray[np.void],
    states: npt.NDArray[np.void],
    watermark: int,
    window_days: float,
    *,
    computed_at: float,
) -> dict[str, Any]:
    """One partition's sketch from its evaluated scores (SCORES_DTYPE) and states, as of
    ``watermark`` (event time) and ``computed_at`` (wall time, for the staleness KPI)."""
    members = scores[scores["effective"] == 1]
    spend = members["window_monetary"]
    hist: dict[int, list[float]] = {}
    for value in spend[spend > 0].tolist():
        entry = hist.setdefault(_bucket(value), [0, 0.0])
        entry[0] += 1
        entry[1] += value
    repeat = scores[(scores["frequency"] >= 1)]
    churned, retained, undecided = churn_counts(states, watermark, int(window_days * DAY))
    return {
        "watermark": watermark,
        "computed_at": computed_at,
        "customers": int(scores.shape[0]),
        "buyers": int(np.count_nonzero(states["purchase_days"] > 0)),
        "effective": int(members.shape[0]),
        "nonpositive": int(np.count_nonzero(spend <= 0)),
        "hist": {str(k): v for k, v in hist.items()},
        "sum_freq_per_year": math.fsum(members["freq_per_year"].tolist()),
        "sum_avg_spend": math.fsum(members["window_avg_spend"].tolist()),
        "sum_gap_days": math.fsum(repeat["usual_gap_days"].tolist()),
        "repeat_buyers": int(repeat.shape[0]),
        "churned": churned,
        "retained": retained,
        "churn_undecided": undecided,
        "tiers": _counts(scores["value_tier"], TIER_NAMES),
        "segments": _counts(scores["rfm_segment"], RFM_SEGMENT_NAMES),
        "lifecycle": _counts(scores["lifecycle"], LIFECYCLE_NAMES),
    }


def churn_counts(
    states: npt.NDArray[np.void], watermark: int, window_s: int
) -> tuple[int, int, int]:
    """Members effective at t - W that bought again by t (retained) or not (churned).

    Effective at t - W means a purchase in (t - 2W, t - W]. The record keeps the first, the
    second-latest and the latest purchase, which decides it for everyone except customers
    whose first purchase is before t - 2W and whose two latest are both after t - W: they
    are counted as ``undecided`` (retained if they were members then, else not members).
    """
    first = states["first_purchase"].astype(np.int64)
    last = states["last_purchase"].astype(np.int64)
    prev = states["prev_purchase"].astype(np.int64)
    lo, hi = watermark - 2 * window_s, watermark - window_s
    bought = states["purchase_days"] > 0
    churned = bought & (last > lo) & (last <= hi)
    came_back = bought & (last > hi)
    member_then = ((prev > lo) & (prev <= hi)) | ((first > lo) & (first <= hi))
    undecided = came_back & ~member_then & (first <= lo) & (prev > hi)
    retained = came_back & member_then
    return int(churned.sum()), int(retained.sum()), int(undecided.sum())


def _counts(codes: npt.NDArray[np.uint8], names: tuple[str, ...]) -> dict[str, int]:
    values, counts = np.unique(codes, return_counts=True)
    return {names[int(v)]: int(c) for v, c in zip(values, counts, strict=True)}


def _merge_hist(sketches: Iterable[dict[str, Any]]) -> list[tuple[int, int, float]]:
    merged: dict[int, list[float]] = {}
    for sketch in sketches:
        for key, (count, total) in sketch["hist"].items():
            entry = merged.setdefault(int(key), [0, 0.0])
            entry[0] += count
            entry[1] += total
    return sorted(((k, int(c), s) for k, (c, s) in merged.items()), reverse=True)


def cuts_from_sketches(sketches: list[dict[str, Any]]) -> PopulationCuts | None:
    """Merged cut points, or None when no partition has effective members yet."""
    n = sum(s["effective"] for s in sketches)
    if n == 0:
        return None
    buckets = _merge_hist(sketches)
    tiers = []
    for share in TIER_SHARES:
        rank = max(math.ceil(share * n), 1)
        seen = 0
        cut = math.inf
        for bucket, count, _ in buckets:
            seen += count
            if seen >= rank:
                cut = _edge(bucket)
                break
        else:
            cut = 0.0  # the rank falls among non-positive spends: everyone qualifies
        tiers.append(cut)
    total = math.fsum(s for _, _, s in buckets)
    abcd = []
    for share in ABCD_SHARES:
        before = 0.0
        cut = math.inf
        for bucket, _, bucket_sum in buckets:
            if total <= 0 or before / total >= share:
                break
            cut = _edge(bucket)
            before += bucket_sum
        abcd.append(cut)
    freq = math.fsum(s["sum_freq_per_year"] for s in sketches) / n
    spend = math.fsum(s["sum_avg_spend"] for s in sketches) / n
    return PopulationCuts(tiers[0], tiers[1], tiers[2], abcd[0], abcd[1], abcd[2], freq, spend)


def population_kpis(sketches: Sequence[dict[str, Any]], now: float) -> dict[str, Any]:
    """Population KPIs merged over partitions' sketches, as of wall time ``now`` (the age of
    the oldest sketch); rates and means are None while their denominator is zero."""

    def total(name: str) -> int:
        return int(sum(s[name] for s in sketches))

    def merged(name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in sketches:
            for k, v in s[name].items():
                out[k] = out.get(k, 0) + v
        return out

    effective = total("effective")
    churned, retained = total("churned"), total("retained")
    undecided = int(sum(s.get("churn_undecided", 0) for s in sketches))
    repeat = total("repeat_buyers")
    return {
        "partitions_reporting": len(sketches),
        "watermark": max((s["watermark"] for s in sketches), default=0),
        "oldest_sketch_age_s": now - min((s["computed_at"] for s in sketches), default=now),
        "customers": total("customers"),
        "buyers": total("buyers"),
        "effective_members": effective,
        # undecided customers were either retained members or not members: the rate lies
        # between the two readings
        "rolling_churn_rate": (
            churned / (churned + retained + undecided) if churned + retained + undecided else None
        ),
        "rolling_churn_rate_max": churned / (churned + retained) if churned + retained else None,
        "repurchase_frequency_per_year": (
            math.fsum(s["sum_freq_per_year"] for s in sketches) / effective if effective else None
        ),
        "avg_days_between_purchases": (
            math.fsum(s["sum_gap_days"] for s in sketches) / repeat if repeat else None
        ),
        "value_tiers": merged("tiers"),
        "rfm_segments": merged("segments"),
        "lifecycle": merged("lifecycle"),
    }
