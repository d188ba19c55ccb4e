"""streams.population_refresh on the real embedded Valkey: the issue-15 KPIs in /stats and
their gauges, complaints by category from the partitions' counters hashes.

State records are folded by the engine and written with plain HSET under the key layout of
docs/design.md (``<prefix>:{p<p>}:b:<bucket>``, fence ``wm``) and the counters with HINCRBY
(``<prefix>:{p<p>}:counters``, spelled out here); the expected values are computed in the
test from the events it generated, by the definitions of docs/scoring.md ("KPIs").
"""

from __future__ import annotations

import math
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from fixtures.stack import run_async

from engine.batch_scoring import fold_events
from engine.scoring import PopulationCuts
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from engine.state import KIND_COMPLAINT, KIND_PURCHASE, encode_state, new_events
from models.bundle import ModelBundle
from streams.metrics import build_metrics
from streams.population_refresh import PopulationTracker, complaints_by_category
from streams.redis_conn import HiredisPackedConnection
from streams.store import RedisStateStore

DAY = 86400
T0 = 852076800  # 1997-01-01
BUCKETS = 16
PARTITIONS = 2


def _month(ts: int) -> int:
    d = datetime.fromtimestamp(ts, UTC)
    return (d.year - 1970) * 12 + d.month - 1


def _world(customers: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    n = customers * 4
    events = new_events(n)
    events["row"] = rng.integers(0, customers, n)
    kind = rng.choice([KIND_PURCHASE, KIND_COMPLAINT], n, p=[0.9, 0.1])
    events["kind"] = kind
    events["ts"] = T0 + rng.integers(0, 1000 * DAY, n)
    events["cents"] = np.where(
        kind == KIND_PURCHASE, (rng.lognormal(3.5, 1.0, n) * 100).astype(np.int64), 0
    )
    events["severity"] = 2
    events["complaint"] = rng.integers(1, 2**31, n)
    events.sort(order="ts", kind="stable")
    return events, fold_events(customers, events, default_scoring_params())


async def _store_world(
    url: str, prefix: str, states: np.ndarray, watermark: int, counters: list[tuple[int, str, int]]
) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        for row in range(states.shape[0]):
            cid = f"c{row}"
            part = row % PARTITIONS
            bucket = zlib.crc32(cid.encode()) % BUCKETS
            await client.hset(f"{prefix}:{{p{part}}}:b:{bucket}", cid, encode_state(states, row))
        for part in range(PARTITIONS):
            await client.hset(f"{prefix}:{{p{part}}}:fence", mapping={"wm": watermark, "gen": 1})
        for part, field, amount in counters:
            await client.hincrby(f"{prefix}:{{p{part}}}:counters", field, amount)
    finally:
        await client.aclose()


async def _refresh_and_stats(
    url: str, prefix: str, model: ModelBundle
) -> tuple[dict[str, Any], Any]:
    client = aioredis.Redis.from_url(url, connection_class=HiredisPackedConnection)
    metrics = build_metrics()
    store = RedisStateStore(client, prefix=prefix, dedupe_retention_days=30, buckets=BUCKETS)
    tracker = PopulationTracker(client, store, model, PARTITIONS, metrics)
    try:
        await tracker.refresh(range(PARTITIONS))
        return await tracker.stats(), metrics.registry
    finally:
        await client.aclose()


def test_complaints_by_category_sums_complaint_fields_only() -> None:
    hashes = [
        {b"complaint|delivery": b"2", b"contact|nudge|x|y|z|treated|v": b"9"},
        {},
        {"complaint|delivery": "3", "complaint|billing": "1", "suppressed|nudge|repurchase": 4},
    ]
    assert complaints_by_category(hashes) == {"billing": 1, "delivery": 5}


@pytest.mark.parametrize("pareto_top_share", [0.2, 0.1])
def test_stats_and_gauges_carry_the_kpis(redis_url: str, pareto_top_share: float) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    events, states = _world()
    watermark = int(events["ts"].max())
    counters = [
        (0, "complaint|delivery", 3),
        (1, "complaint|delivery", 2),
        (1, "complaint|uncategorised", 1),
        (0, "contact|nudge|repurchase|timely_reminder|normal|treated|0123456789ab", 5),
    ]
    run_async(_store_world(redis_url, prefix, states, watermark, counters))
    params = default_scoring_params()._replace(pareto_top_share=pareto_top_share)
    model = ModelBundle(params, DEFAULT_RFM_MAP, "test-model", PopulationCuts.from_params(params))
    stats, registry = run_async(_refresh_and_stats(redis_url, prefix, model))

    # oracles from the events
    days: dict[int, set[int]] = {}
    complained: set[int] = set()
    for ev in events.tolist():
        row, kind, ts, cents = ev[0], ev[1], ev[4], ev[5]
        if kind == KIND_PURCHASE and cents > 0:
            days.setdefault(row, set()).add(ts // DAY)
        elif kind == KIND_COMPLAINT:
            complained.add(row)
    buyers = len(days)
    two = sum(1 for d in days.values() if len(d) >= 2)
    assert stats["partitions_reporting"] == PARTITIONS
    assert stats["customers"] == states.shape[0]
    assert stats["second_purchase_rate"] == pytest.approx(two / buyers)
    assert stats["complaint_rate"] == pytest.approx(len(complained) / states.shape[0])
    assert stats["complaints_by_category"] == {"delivery": 5, "uncategorised": 1}
    assert stats["pareto_top_share"] == pareto_top_share
    current = _month(watermark)
    assert stats["monthly"][-1]["month"] == f"{1970 + current // 12}-{current % 12 + 1:02d}"
    new_now = sum(1 for d in days.values() if _month(min(d) * DAY) == current)
    assert stats["monthly"][-1]["new"] == new_now

    get = registry.get_sample_value
    assert get("custscore_pop_second_purchase_rate") == pytest.approx(two / buyers)
    assert get("custscore_pop_pareto_share") == pytest.approx(stats["pareto_share"])
    assert 0 < stats["pareto_share"] < 1
    assert get("custscore_pop_complaints", {"category": "delivery"}) == 5
    assert get("custscore_pop_complaints", {"category": "billing"}) == 0
    assert get("custscore_pop_complaint_rate") == pytest.approx(stats["complaint_rate"])
    assert get("custscore_pop_repurchase_after_complaint") == pytest.approx(
        stats["repurchase_after_complaint"]
    )
    assert get("custscore_pop_complaints_per_100_purchase_days") == pytest.approx(
        stats["complaints_per_100_purchase_days"]
    )
    for ago in range(12):
        entry = stats["monthly"][-1 - ago]
        for flow in ("new", "returning", "lost"):
            labels = {"flow": flow, "months_ago": str(ago)}
            assert get("custscore_pop_month_customers", labels) == entry[flow]
    for name, count in stats["quadrants"].items():
        assert get("custscore_pop_quadrant", {"quadrant": name}) == count
    for name, count in stats["abcd_classes"].items():
        assert get("custscore_pop_abcd", {"class": name}) == count
    assert not math.isnan(get("custscore_pop_second_purchase_rate") or math.nan)
