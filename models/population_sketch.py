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

The issue-15 KPIs (docs/scoring.md, "KPIs") are counters, exact and additive, except the
Pareto share. That one needs the top ``pareto_top_share`` of all spends, which no fixed-size
counter of a partition gives exactly once partitions are merged; keeping every spend would
make a sketch grow with its partition (hundreds of KB per refresh, read by every worker).
It is read off the same log-bucket histogram instead (:func:`pareto_share`): whole buckets
above the boundary rank count exactly, and the r customers taken from the boundary bucket are
counted at that bucket's mean spend. Those r are the bucket's largest and every value in the
bucket lies in [edge, edge x (1 + EPS)), so the estimate is never above the exact share and
at most ``EPS`` (1 %) of it below: exact x (1 - EPS) <= estimate <= exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.ranking import DEFAULT_SHARES, ClassShares
from engine.scoring import PopulationCuts
from engine.scoring_params import DAY, ScoringParams, default_scoring_params
from engine.segments import (
    ABCD_NAMES,
    LIFECYCLE_NAMES,
    QUADRANT_NAMES,
    RFM_SEGMENT_NAMES,
    TIER_NAMES,
)
from engine.state import RING_MONTHS

__all__ = [
    "EPS",
    "MONTHS_REPORTED",
    "churn_counts",
    "cuts_from_sketches",
    "month_flows",
    "month_label",
    "months_of",
    "pareto_share",
    "population_kpis",
    "sketch_scores",
    "trailing_window_days",
]

MONTHS_REPORTED = 12  # new / returning / lost for the month of the watermark and 11 before
_DEFAULTS = default_scoring_params()

EPS = 0.01
_LOG_BASE = math.log1p(EPS)


def _bucket(value: float) -> int:
    return math.floor(math.log(value) / _LOG_BASE)


def _edge(bucket: int) -> float:
    return math.exp(bucket * _LOG_BASE)


def trailing_window_days(window_months: int) -> float:
    """The trailing window in days (a month is 365.25 / 12 days)."""
    return window_months * 365.25 / 12


def months_of(ts: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int64]:
    """Calendar month index (months since 1970-01, UTC) of each epoch second, as
    ``engine.calendar.month_index`` computes it one at a time."""
    seconds = np.asarray(ts, dtype=np.int64).astype("datetime64[s]")
    return seconds.astype("datetime64[M]").astype(np.int64)


def month_label(index: int) -> str:
    """``YYYY-MM`` of a month index."""
    return f"{1970 + index // 12:04d}-{index % 12 + 1:02d}"


def month_flows(
    states: npt.NDArray[np.void], watermark: int, lost_months: int
) -> dict[int, tuple[int, int, int]]:
    """(new, returning, lost) customers of each calendar month m from month(watermark) - 11
    to month(watermark) (docs/scoring.md, "KPIs"):

    - new: the first purchase is in m;
    - returning: a purchase day in m (the record's month ring, valid for the 12 months
      ending at ``ring_head``) and the first purchase in an earlier month;
    - lost: month(last purchase) + ``lost_months`` = m, the month start at which the customer
      becomes ``lost`` (``lost_months`` calendar months without a purchase).
    """
    if watermark <= 0:
        return {}
    current = int(months_of(np.array([watermark]))[0])
    first = states["first_purchase"].astype(np.int64)
    bought = first > 0
    first_month = np.where(bought, months_of(first), -1)
    last_month = np.where(bought, months_of(states["last_purchase"].astype(np.int64)), -1)
    head = states["ring_head"].astype(np.int64)
    ring = states["ring_count"]
    flows: dict[int, tuple[int, int, int]] = {}
    for month in range(max(current - MONTHS_REPORTED + 1, 0), current + 1):
        in_ring = (month <= head) & (month > head - RING_MONTHS)
        bought_in_month = in_ring & (ring[:, month % RING_MONTHS] > 0)
        new = np.count_nonzero(bought & (first_month == month))
        returning = np.count_nonzero(bought & bought_in_month & (first_month < month))
        lost = np.count_nonzero(bought & (last_month + lost_months == month))
        flows[month] = (int(new), int(returning), int(lost))
    return flows


def _spend_hist(spend: npt.NDArray[np.floating[Any]]) -> dict[str, list[float]]:
    hist: dict[int, list[float]] = {}
    for value in spend[spend > 0].tolist():
        entry = hist.setdefault(_bucket(value), [0, 0.0])
        entry[0] += 1
        entry[1] += value
    return {str(k): v for k, v in hist.items()}


def _class_counts(seg: npt.NDArray[np.uint8], names: tuple[str, ...]) -> dict[str, int]:
    """Counts by name of emitted codes stored as code + 1 (0 = never classified: "none")."""
    codes = np.maximum(seg.astype(np.int64) - 1, 0)
    return _counts(codes, names)


def sketch_scores(
    scores: npt.NDArray[np.void],
    states: npt.NDArray[np.void],
    watermark: int,
    window_days: float,
    *,
    computed_at: float,
    lost_months: int = _DEFAULTS.lost_months,
) -> dict[str, Any]:
    """One partition's sketch from its evaluated scores (SCORES_DTYPE) and states, as of
    ``watermark`` (event time) and ``computed_at`` (wall time, for the staleness KPI).

    ``lost_months`` is the model's (``ScoringParams.lost_months``), for the monthly lost
    customers."""
    effective = scores["effective"] == 1
    members = scores[effective]
    spend = members["window_monetary"]
    # positive window spend of customers who are not effective members (only when the
    # model's effective_min_spend > 0): outside the cuts, inside the Pareto share
    others = scores["window_monetary"][~effective]
    repeat = scores[(scores["frequency"] >= 1)]
    churned, retained, undecided = churn_counts(states, watermark, int(window_days * DAY))
    first = states["first_purchase"].astype(np.int64)
    last = states["last_purchase"].astype(np.int64)
    complained_at = states["complaint_ts"].astype(np.int64)
    after_complaint = (complained_at > 0) & (first > 0) & (first < complained_at)
    flows = month_flows(states, watermark, lost_months)
    member_states = states[effective]
    return {
        "watermark": watermark,
        "computed_at": computed_at,
        "customers": int(scores.shape[0]),
        "buyers": int(np.count_nonzero(states["purchase_days"] > 0)),
        "effective": int(members.shape[0]),
        "nonpositive": int(np.count_nonzero(spend <= 0)),
        "hist": _spend_hist(spend),
        "hist_others": _spend_hist(others),
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
        # issue-15 KPIs (docs/scoring.md, "KPIs"): plain counters, added up when merged
        "buyers_2plus": int(np.count_nonzero(states["purchase_days"] >= 2)),
        "purchase_days": int(states["purchase_days"].astype(np.int64).sum()),
        "complainants": int(np.count_nonzero(states["complaints_open"] > 0)),
        "complaints": int(states["complaints_open"].astype(np.int64).sum()),
        "complaint_buyers": int(np.count_nonzero(after_complaint)),
        "complaint_repurchased": int(np.count_nonzero(after_complaint & (last > complained_at))),
        "months": {str(m): list(v) for m, v in flows.items()},
        "quadrants": _class_counts(member_states["seg_quadrant"], QUADRANT_NAMES),
        "abcd": _class_counts(member_states["seg_abcd"], ABCD_NAMES),
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


def _merge_hist(
    sketches: Iterable[dict[str, Any]], names: Sequence[str] = ("hist",)
) -> list[tuple[int, int, float]]:
    """(bucket, count, sum) of the named histograms of every sketch, largest bucket first."""
    merged: dict[int, list[float]] = {}
    for sketch in sketches:
        for name in names:
            for key, (count, total) in sketch.get(name, {}).items():
                entry = merged.setdefault(int(key), [0, 0.0])
                entry[0] += count
                entry[1] += total
    return sorted(((k, int(c), s) for k, (c, s) in merged.items()), reverse=True)


def _top_count(n: int, share: float) -> int:
    """ceil(share x n) in whole basis points, at least 1 (n > 0): as engine.ranking counts."""
    return max(-(-n * round(share * 10_000) // 10_000), 1) if n else 0


def cuts_from_sketches(
    sketches: list[dict[str, Any]], shares: ClassShares | None = None
) -> PopulationCuts | None:
    """Merged cut points, or None when no partition has effective members yet.

    ``shares`` are the model's (``ClassShares.from_params(params)``); default: the default
    params' 1 / 5 / 20 % and 70 / 90 / 95 %."""
    shares = shares or DEFAULT_SHARES
    n = sum(s["effective"] for s in sketches)
    if n == 0:
        return None
    buckets = _merge_hist(sketches)
    tiers = []
    for share in shares.tier:
        rank = _top_count(n, share)
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
    for share in shares.abcd:
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


def pareto_share(sketches: Sequence[dict[str, Any]], top_share: float) -> float | None:
    """Share of the positive trailing-window spend held by the top ``top_share`` of the
    customers with positive window spend (ceil(top_share x n) of n customers), from the
    merged histograms; None when nobody has positive spend.

    Within 1 %: exact x (1 - EPS) <= result <= exact (module docstring)."""
    buckets = _merge_hist(sketches, ("hist", "hist_others"))
    n = sum(count for _, count, _ in buckets)
    total = math.fsum(bucket_sum for _, _, bucket_sum in buckets)
    if n == 0 or total <= 0:
        return None
    k = _top_count(n, top_share)
    parts: list[float] = []
    seen = 0
    for _, count, bucket_sum in buckets:
        if seen + count <= k:
            parts.append(bucket_sum)
            seen += count
            if seen == k:
                break
        else:
            parts.append((k - seen) * bucket_sum / count)  # the bucket's largest, at its mean
            break
    return min(math.fsum(parts) / total, 1.0)


def _merged_months(sketches: Sequence[dict[str, Any]], watermark: int) -> list[dict[str, Any]]:
    """new / returning / lost for the ``MONTHS_REPORTED`` months ending at month(watermark),
    oldest first, summed over the sketches."""
    if watermark <= 0:
        return []
    current = int(months_of(np.array([watermark]))[0])
    months = range(max(current - MONTHS_REPORTED + 1, 0), current + 1)
    sums = {m: [0, 0, 0] for m in months}
    for sketch in sketches:
        for key, values in sketch.get("months", {}).items():
            entry = sums.get(int(key))
            if entry is not None:
                for i, v in enumerate(values):
                    entry[i] += int(v)
    return [
        {"month": month_label(m), "new": v[0], "returning": v[1], "lost": v[2]}
        for m, v in sums.items()
    ]


def population_kpis(
    sketches: Sequence[dict[str, Any]], now: float, params: ScoringParams | None = None
) -> dict[str, Any]:
    """Population KPIs merged over partitions' sketches, as of wall time ``now`` (the age of
    the oldest sketch); rates and means are None while their denominator is zero.

    ``params`` (the model's; default: the default params) gives the Pareto top share. The
    monthly flows are reported for the 12 months ending at the month of the latest watermark.
    Sketches stored by an older worker, without the issue-15 counters, count as zeros there.
    """
    params = params or _DEFAULTS

    def total(name: str) -> int:
        return int(sum(s.get(name, 0) for s in sketches))

    def merged(name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in sketches:
            for k, v in s.get(name, {}).items():
                out[k] = out.get(k, 0) + v
        return out

    def ratio(numerator: float, denominator: float) -> float | None:
        return numerator / denominator if denominator else None

    effective = total("effective")
    churned, retained = total("churned"), total("retained")
    undecided = total("churn_undecided")
    repeat = total("repeat_buyers")
    buyers = total("buyers")
    customers = total("customers")
    watermark = max((s["watermark"] for s in sketches), default=0)
    return {
        "partitions_reporting": len(sketches),
        "watermark": watermark,
        "oldest_sketch_age_s": now - min((s["computed_at"] for s in sketches), default=now),
        "customers": customers,
        "buyers": buyers,
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
        "second_purchase_rate": ratio(total("buyers_2plus"), buyers),
        "monthly": _merged_months(sketches, watermark),
        "pareto_top_share": params.pareto_top_share,
        "pareto_share": pareto_share(sketches, params.pareto_top_share),
        "complaint_rate": ratio(total("complainants"), customers),
        "complaints": total("complaints"),
        "complaints_per_100_purchase_days": ratio(
            100 * total("complaints"), total("purchase_days")
        ),
        "complaint_buyers": total("complaint_buyers"),
        "repurchase_after_complaint": ratio(
            total("complaint_repurchased"), total("complaint_buyers")
        ),
        "quadrants": merged("quadrants"),
        "abcd_classes": merged("abcd"),
    }
