"""The event-time merge must not run past a batch that is in flight (docs/design.md, "Time").

Found by tests/cli/test_alert_replay.py: with every input on the broker before the worker
started and no idle bound expiring, purchases were still applied up to months after the
customer's clock had moved past them (late events the input did not have), and the alerts
they caused were evaluated at the wrong time.

The interleaving, replayed on the batch processor and a real Valkey: the agent's
``process()`` calls ``merge.observe()`` for its messages *before* it takes the partition lock;
the timer's ``release_held()`` holds the lock at that moment and computes the frontier with
heads and delivered offsets that already count the waiting batch, whose events are neither
applied nor held. It releases held events up to the batch's largest ``ts``, past the
batch's earlier events, which then arrive late.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fixtures.stack import run_async

from reliability.support import compare_alerts
from streams.merge import EventTimeMerge
from tests.streams.conftest import Feed, RecordingPublisher, make_processor

T0 = 852076800  # 1997-01-01
DAY = 86_400
TOPICS = ["customer.purchase", "customer.visit", "customer.complaint"]


def purchase(feed: Feed, event_id: str, day: int) -> Any:
    body = {"event_id": event_id, "customer_id": "zoe", "ts": (T0 + day * DAY) * 1000}
    return feed.msg("purchase", {**body, "amount": 20.0})


def visit(feed: Feed, event_id: str, day: int) -> Any:
    return feed.msg(
        "visit", {"event_id": event_id, "customer_id": "zoe", "ts": (T0 + day * DAY) * 1000}
    )


def _alerts(publisher: RecordingPublisher) -> dict[str, list[dict[str, Any]]]:
    return {t: publisher.on(t) for t in ("customer.segment-change", "customer.win-back")}


def test_a_timer_release_does_not_run_past_an_in_flight_batch(redis_url: str) -> None:
    async def body() -> list[str]:
        feed = Feed()
        first = [purchase(feed, "p1", 1), visit(feed, "v30", 30)]
        second = [purchase(feed, "p10", 10), purchase(feed, "p40", 40)]
        # reference: the same four events in one batch, no merge (exact event-time order)
        reference = RecordingPublisher()
        ref = make_processor(redis_url, f"mr{uuid.uuid4().hex[:8]}", reference)
        # the worker: both inputs still have data on the broker (high-water marks far ahead)
        published = RecordingPublisher()
        proc = make_processor(redis_url, f"mr{uuid.uuid4().hex[:8]}", published)
        proc.merge = EventTimeMerge(
            topics=TOPICS,
            idle_s=600.0,
            highwater=lambda topic, partition: 100 if topic != TOPICS[2] else 0,
        )
        try:
            await ref.process(first + second)
            await proc.process(first)  # p1 applied; v30 held (purchases may still precede it)
            async with proc.lock(0):
                release = asyncio.ensure_future(proc.release_held(0))
                await asyncio.sleep(0.01)  # the timer waits for the partition lock ...
                batch = asyncio.ensure_future(proc.process(second))
                await asyncio.sleep(0.01)  # ... and so does the next batch, observed already
            await asyncio.gather(release, batch)
            # the merge had nothing to wait for any more: release what is still held
            proc.merge.highwater = None
            await proc.release_held(0)
        finally:
            await ref.store._redis.aclose()
            await proc.store._redis.aclose()
        return compare_alerts(_alerts(published), _alerts(reference))

    diff = run_async(body())
    assert not diff, "\n".join(diff)
