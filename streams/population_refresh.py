"""Population snapshot and KPIs for the live worker: the I/O and scheduling of the sketches.

Every ``snapshot_interval_s`` each worker re-reads the state of the partitions it owns
(SCAN + MGET), evaluates window features at that partition's watermark and stores the
partition's sketch (:func:`models.population_sketch.sketch_scores`) in
``<prefix>:{p<p>}:pop``. Any worker reads all partitions' sketches (MGET) and merges them into
cut points and KPIs (:mod:`models.population_sketch`, which also states the error bound).
Staleness: at most one refresh interval plus the slowest partition's sketch age, reported as
``custscore_population_snapshot_age_seconds``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from engine.scoring import PopulationCuts, evaluate
from engine.segments import LIFECYCLE_NAMES, RFM_SEGMENT_NAMES, TIER_NAMES
from engine.state import decode_records
from models.bundle import ModelBundle
from models.population_sketch import (
    cuts_from_sketches,
    population_kpis,
    sketch_scores,
    trailing_window_days,
)
from streams.metrics import WorkerMetrics
from streams.store import RedisStateStore

__all__ = ["PopulationTracker"]


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
        scores = evaluate(states, max(watermark, 1), model.scoring, model.cuts, model.rfm_map)
        window_days = trailing_window_days(model.scoring.window_months)
        sketch = sketch_scores(scores, states, watermark, window_days, computed_at=time.time())
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
        """Population KPIs merged over all partitions' sketches, next to the cuts in force
        and the live snapshot's."""
        model = self._model
        return {
            **population_kpis(await self.sketches(), time.time()),
            "cuts": model.cuts._asdict(),
            "snapshot_cuts": self.snapshot_cuts._asdict() if self.snapshot_cuts else None,
            "snapshot_computed_at": self.snapshot_at or None,
            "model_version": model.model_version,
        }
