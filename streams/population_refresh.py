"""Population snapshot and KPIs for the live worker, from a mergeable per-partition sketch.

Method: every ``snapshot_interval_s`` each worker re-reads the state of the partitions it
owns (SCAN + MGET), evaluates window features at that partition's watermark and stores a
sketch in ``<prefix>:{p<p>}:pop``: a histogram of trailing-window spend in log buckets of
relative width ``EPS`` (1 %) with per-bucket counts and sums, exact sums for the quadrant
means, and KPI counters. Any worker merges all partitions' sketches into cut points.

Error: a tier or A/B/C/D cut is the lower edge of the bucket that holds the exact cut, so it
is low by less than 1 % of its value; customers within 1 % of a cut may sit one class
higher than the exact batch snapshot (``custscore score``/``export`` compute it exactly).
Quadrant means are exact. Staleness: at most one refresh interval plus the slowest
partition's sketch age, reported as ``custscore_population_snapshot_age_seconds``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from engine.ranking import ABCD_SHARES, TIER_SHARES
from engine.scoring import PopulationCuts, evaluate
from engine.scoring_params import DAY
from engine.segments import LIFECYCLE_NAMES, RFM_SEGMENT_NAMES, TIER_NAMES
from engine.state import decode_records
from streams.metrics import WorkerMetrics
from streams.processor import Model
from streams.store import RedisStateStore

__all__ = ["EPS", "PopulationTracker", "cuts_from_sketches", "sketch_scores"]

EPS = 0.01
_LOG_BASE = math.log1p(EPS)


def _bucket(value: float) -> int:
    return math.floor(math.log(value) / _LOG_BASE)


def _edge(bucket: int) -> float:
    return math.exp(bucket * _LOG_BASE)


def sketch_scores(
    scores: npt.NDArray[np.void], states: npt.NDArray[np.void], watermark: int, window_days: float
) -> dict[str, Any]:
    """One partition's sketch from its evaluated scores (SCORES_DTYPE) and states."""
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
        "computed_at": time.time(),
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


class PopulationTracker:
    """Refreshes owned partitions' sketches, the live population snapshot and KPIs.

    The snapshot's cut points are reported next to the cuts in force (``/stats``) so their
    drift is visible; alerts are judged against the model's calibrated cuts, which are a
    function of the model version alone (an alert must not depend on when this timer fired).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        store: RedisStateStore,
        model: Model,
        partitions: int,
        metrics: WorkerMetrics,
    ) -> None:
        self._redis = redis
        self._store = store
        self._model = model
        self._partitions = partitions
        self._metrics = metrics
        self.snapshot_cuts: PopulationCuts | None = None
        self.snapshot_at = 0.0  # wall time of the last merge; 0 = none yet

    async def sketch_partition(self, partition: int) -> dict[str, Any]:
        """Compute and store the sketch of one partition."""
        watermark, _ = await self._store.fence(partition)
        pairs = list(await self._store.scan_states(partition))
        states = decode_records([blob for _, blob in pairs]).states
        model = self._model
        scores = evaluate(states, max(watermark, 1), model.params, model.cuts, model.rfm_map)
        window_days = model.params.window_months * 365.25 / 12
        sketch = sketch_scores(scores, states, watermark, window_days)
        await self._redis.set(self._store.keys(partition).population, json.dumps(sketch))
        return sketch

    async def sketches(self) -> list[dict[str, Any]]:
        """Every partition's last stored sketch."""
        keys = [self._store.keys(p).population for p in range(self._partitions)]
        blobs = await self._redis.mget(keys)
        return [json.loads(b) for b in blobs if b]

    async def refresh(self, owned: Iterable[int]) -> None:
        """Re-sketch owned partitions, then merge all sketches into the live snapshot."""
        for partition in owned:
            await self.sketch_partition(partition)
        cuts = cuts_from_sketches(await self.sketches())
        if cuts is not None:
            self.snapshot_cuts = cuts
            self.snapshot_at = time.time()
        self._set_gauges(await self.stats())

    def _set_gauges(self, stats: dict[str, Any]) -> None:
        """Export the merged KPIs as Prometheus gauges (every known class, 0 when empty)."""
        m = self._metrics
        m.pop_customers.set(stats["customers"])
        m.pop_effective.set(stats["effective_members"])
        churn, freq = stats["rolling_churn_rate"], stats["repurchase_frequency_per_year"]
        m.pop_churn_rate.set(math.nan if churn is None else churn)
        m.pop_repurchase_frequency.set(math.nan if freq is None else freq)
        for gauge, names, key in (
            (m.pop_value_tier, TIER_NAMES, "value_tiers"),
            (m.pop_rfm_segment, RFM_SEGMENT_NAMES, "rfm_segments"),
            (m.pop_lifecycle, LIFECYCLE_NAMES, "lifecycle"),
        ):
            for name in names:
                gauge.labels(name).set(stats[key].get(name, 0))

    async def stats(self) -> dict[str, Any]:
        """Population KPIs merged over all partitions' sketches."""
        sketches = await self.sketches()

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
        model = self._model
        return {
            "partitions_reporting": len(sketches),
            "watermark": max((s["watermark"] for s in sketches), default=0),
            "oldest_sketch_age_s": time.time()
            - min((s["computed_at"] for s in sketches), default=time.time()),
            "customers": total("customers"),
            "buyers": total("buyers"),
            "effective_members": effective,
            # undecided customers were either retained members or not members: the rate lies
            # between the two readings
            "rolling_churn_rate": (
                churned / (churned + retained + undecided)
                if churned + retained + undecided
                else None
            ),
            "rolling_churn_rate_max": churned / (churned + retained)
            if churned + retained
            else None,
            "repurchase_frequency_per_year": (
                math.fsum(s["sum_freq_per_year"] for s in sketches) / effective
                if effective
                else None
            ),
            "avg_days_between_purchases": (
                math.fsum(s["sum_gap_days"] for s in sketches) / repeat if repeat else None
            ),
            "value_tiers": merged("tiers"),
            "rfm_segments": merged("segments"),
            "lifecycle": merged("lifecycle"),
            "cuts": model.cuts._asdict(),
            "snapshot_cuts": self.snapshot_cuts._asdict() if self.snapshot_cuts else None,
            "snapshot_computed_at": self.snapshot_at or None,
            "model_version": model.version,
        }
