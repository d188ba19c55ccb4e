"""Population snapshot and KPIs for the live worker: the I/O and scheduling of the sketches.

Every ``snapshot_interval_s`` each worker re-reads the state of the partitions it owns
(SCAN + MGET), evaluates window features at that partition's watermark and stores the
partition's sketch (:func:`models.population_sketch.sketch_scores`) in
``<prefix>:{p<p>}:pop``. Any worker reads all partitions' sketches (MGET) and merges them into
cut points and KPIs (:mod:`models.population_sketch`, which also states the error bound).
Staleness: at most one refresh interval plus the slowest partition's sketch age, reported as
``custscore_population_snapshot_age_seconds``.

The KPIs of docs/scoring.md, "KPIs" come from the merged sketches, except complaints by
category: the batch commit counts every complaint filed in its partition's counters hash
(``<prefix>:{p<p>}:counters``, fields ``complaint|<category>``), which :meth:`stats` reads
for every partition. Tier / A/B/C/D shares and the Pareto top share are the model's.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from engine.ranking import ClassShares
from engine.scoring import PopulationCuts, evaluate
from engine.segments import (
    ABCD_NAMES,
    LIFECYCLE_NAMES,
    QUADRANT_NAMES,
    RFM_SEGMENT_NAMES,
    TIER_NAMES,
)
from engine.state import decode_records
from models.bundle import ModelBundle
from models.control_group import NO_CONTROL_GROUP, ControlGroup
from models.population_sketch import (
    MONTHS_REPORTED,
    cuts_from_sketches,
    population_kpis,
    sketch_scores,
    trailing_window_days,
)
from models.uplift import OutcomeTable, outcome_stats, outcome_table
from streams.codec import COMPLAINT_CATEGORIES
from streams.contact_counters import read_counters
from streams.metrics import WorkerMetrics
from streams.outcome_metrics import OutcomeMetrics
from streams.store import RedisStateStore

__all__ = ["COMPLAINT_FIELD", "PopulationTracker", "complaints_by_category"]

COMPLAINT_FIELD = "complaint|"  # counters-hash field prefix: complaint|<category> -> filed


def complaints_by_category(hashes: Iterable[dict[Any, Any]]) -> dict[str, int]:
    """Complaints filed by category, summed over partitions' counters hashes (HGETALL
    replies; other fields are the marketing loop's and are skipped)."""
    out: dict[str, int] = {}
    for content in hashes:
        for raw_field, value in content.items():
            name = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
            if name.startswith(COMPLAINT_FIELD):
                category = name[len(COMPLAINT_FIELD) :]
                out[category] = out.get(category, 0) + int(value)
    return dict(sorted(out.items()))


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


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
        model: ModelBundle,
        partitions: int,
        metrics: WorkerMetrics,
        control: ControlGroup | None = None,
        outcome_metrics: OutcomeMetrics | None = None,
    ) -> None:
        self._control = control or NO_CONTROL_GROUP
        self._outcome_metrics = outcome_metrics
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
        scores = evaluate(states, max(watermark, 1), model.scoring, model.cuts, model.rfm_map)
        window_days = trailing_window_days(model.scoring.window_months)
        sketch = sketch_scores(
            scores,
            states,
            watermark,
            window_days,
            computed_at=time.time(),
            lost_months=model.scoring.lost_months,
        )
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
        cuts = cuts_from_sketches(
            await self.sketches(), ClassShares.from_params(self._model.scoring)
        )
        if cuts is not None:
            self.snapshot_cuts = cuts
            self.snapshot_at = time.time()
        stats, table = await self._stats_and_outcomes()
        self._set_gauges(stats)
        if self._outcome_metrics is not None:
            self._outcome_metrics.set_uplift(table, self._control.version)

    async def counters(self) -> dict[str, int]:
        """Every partition's counters (complaints by category, contacts, outcomes), summed."""
        return await read_counters(self._redis, self._store.prefix)

    def _set_gauges(self, stats: dict[str, Any]) -> None:
        """Export the merged KPIs as Prometheus gauges (every known class, 0 when empty)."""
        m = self._metrics
        m.pop_customers.set(stats["customers"])
        m.pop_effective.set(stats["effective_members"])
        m.pop_churn_rate.set(_nan_if_none(stats["rolling_churn_rate"]))
        m.pop_repurchase_frequency.set(_nan_if_none(stats["repurchase_frequency_per_year"]))
        for gauge, names, key in (
            (m.pop_value_tier, TIER_NAMES, "value_tiers"),
            (m.pop_rfm_segment, RFM_SEGMENT_NAMES, "rfm_segments"),
            (m.pop_lifecycle, LIFECYCLE_NAMES, "lifecycle"),
            (m.pop_quadrant, QUADRANT_NAMES, "quadrants"),
            (m.pop_abcd, ABCD_NAMES, "abcd_classes"),
        ):
            for name in names:
                gauge.labels(name).set(stats[key].get(name, 0))
        m.pop_second_purchase_rate.set(_nan_if_none(stats["second_purchase_rate"]))
        m.pop_pareto_share.set(_nan_if_none(stats["pareto_share"]))
        m.pop_complaint_rate.set(_nan_if_none(stats["complaint_rate"]))
        m.pop_complaints_per_100_purchase_days.set(
            _nan_if_none(stats["complaints_per_100_purchase_days"])
        )
        m.pop_repurchase_after_complaint.set(_nan_if_none(stats["repurchase_after_complaint"]))
        months = stats["monthly"][::-1]  # newest first: index = months ago
        for ago in range(MONTHS_REPORTED):
            entry = months[ago] if ago < len(months) else {}
            for flow in ("new", "returning", "lost"):
                m.pop_month_customers.labels(flow, str(ago)).set(entry.get(flow, 0))
        by_category = stats["complaints_by_category"]
        for category in sorted(COMPLAINT_CATEGORIES | set(by_category)):
            m.pop_complaints.labels(category).set(by_category.get(category, 0))

    async def stats(self) -> dict[str, Any]:
        """Population KPIs merged over all partitions' sketches, next to the cuts in force
        and the live snapshot's, and the contacts' outcomes and uplift (docs/outcomes.md)."""
        stats, _ = await self._stats_and_outcomes()
        return stats

    async def _stats_and_outcomes(self) -> tuple[dict[str, Any], OutcomeTable]:
        model = self._model
        counters = await self.counters()
        table = outcome_table(counters)
        stats = {
            **population_kpis(await self.sketches(), time.time(), model.scoring),
            "complaints_by_category": complaints_by_category([counters]),
            "outcomes": outcome_stats(table, self._control.version),
            "cuts": model.cuts._asdict(),
            "snapshot_cuts": self.snapshot_cuts._asdict() if self.snapshot_cuts else None,
            "snapshot_computed_at": self.snapshot_at or None,
            "model_version": model.model_version,
        }
        return stats, table
