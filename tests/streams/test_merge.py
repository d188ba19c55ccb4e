"""The event-time merge of a partition's three inputs, on a real Valkey.

A purchase topic that runs ahead of the visit topic must not make the customer's earlier
visit a late event: the purchase waits (held in Redis with the fenced commit) until the
visit input has caught up, or until it was idle for the bound.
"""

from __future__ import annotations

import json
import math

import msgspec
from fixtures.stack import run_async

from engine.state import KIND_COMPLAINT, KIND_PURCHASE
from streams.codec import DecodedEvent
from streams.merge import EventTimeMerge, pack_held, unpack_held
from streams.processor import BatchProcessor
from tests.streams.conftest import OUT, Feed, RecordingPublisher, make_processor
from tests.streams.test_processor import purchase, stored_state

DAY = 86400
T0 = 852076800


class Broker:
    """High-water marks the test controls, and a monotonic clock it moves."""

    def __init__(self) -> None:
        self.high: dict[tuple[str, int], int] = {}
        self.now = 1000.0

    def highwater(self, topic: str, partition: int) -> int | None:
        return self.high.get((topic, partition))


def visit(feed: Feed, eid: str, cust: str, day: float):
    return feed.msg(
        "visit", {"event_id": eid, "customer_id": cust, "ts": int((T0 + day * DAY) * 1000)}
    )


def with_merge(proc: BatchProcessor, broker: Broker, idle_s: float = 0.5) -> BatchProcessor:
    proc.merge = EventTimeMerge(
        topics=list(proc.topics.inputs),
        idle_s=idle_s,
        highwater=broker.highwater,
        monotonic=lambda: broker.now,
    )
    return proc


def test_frontier_is_the_head_of_an_input_with_data_on_the_broker() -> None:
    broker = Broker()
    merge = EventTimeMerge(["a", "b"], 0.5, broker.highwater, lambda: broker.now)
    broker.high = {("a", 0): 3, ("b", 0): 10}
    merge.observe("a", 0, 2, 500)  # a delivered everything it has
    merge.observe("b", 0, 4, 200)  # b has offsets 5..9 still on the broker
    assert merge.frontier(0, {}) == 200
    broker.high[("c", 0)] = 1  # an input never heard of, with data: its head is unknown
    assert EventTimeMerge(["a", "c"], 0.5, broker.highwater, lambda: 0.0).frontier(0, {}) == -1
    broker.now += 0.6  # b stays idle past the bound: the others run ahead
    assert merge.frontier(0, {}) == math.inf
    assert merge.expired == 1
    merge.observe("b", 0, 9, 300)  # b caught up
    assert merge.frontier(0, {}) == math.inf
    # nothing known of the broker: no waiting at all
    assert EventTimeMerge(["a"], 0.5).frontier(0, {}) == math.inf


def test_purchase_waits_for_the_lagging_visit_input(redis_url: str, prefix: str) -> None:
    feed = Feed()
    broker = Broker()
    recorder = RecordingPublisher()
    p1 = purchase(feed, "p1", "ann", 0, 20.0)
    v1 = visit(feed, "v1", "ann", 5)
    p2 = purchase(feed, "p2", "ann", 10, 30.0)

    async def main() -> tuple:
        proc = with_merge(make_processor(redis_url, prefix, recorder), broker)
        try:
            # the visit topic has data (v1) the worker has not fetched yet
            broker.high = {
                ("customer.purchase", 0): 2,
                ("customer.visit", 0): 1,
                ("customer.complaint", 0): 0,  # empty: nothing to wait for
            }
            await proc.process([p1, p2])
            held_after_first, _ = await proc.store.held(0)
            state = await stored_state(proc, 0, "ann")
            await proc.process([v1])
            return held_after_first, state, await stored_state(proc, 0, "ann"), proc.metrics
        finally:
            await proc.store._redis.aclose()

    held, before, after, metrics = run_async(main())
    # the visit input's head is unknown: both purchases wait, durably
    assert held and int(before["purchase_days"]) == 0
    # once the visit arrived, all three applied in event-time order: none was late
    assert int(after["purchase_days"]) == 2 and int(after["n_visits"]) == 1
    assert int(after["clock"]) == T0 + 10 * DAY
    causes = [
        json.loads(v)["cause"]["event_id"]
        for t, _, v in recorder.records
        if t == OUT.segment_change and v is not None
    ]
    assert causes and set(causes) <= {"p1", "v1", "p2"}
    assert metrics.merge_held.labels("0")._value.get() == 0


def test_held_events_survive_a_new_worker(redis_url: str, prefix: str) -> None:
    """Held events are in Redis with the fence: a worker that dies while holding them loses
    nothing, although the fence (and so the consumer offset) moved past them."""
    feed = Feed()
    broker = Broker()
    p1 = purchase(feed, "p1", "bea", 0, 20.0)

    async def main() -> tuple:
        first = with_merge(make_processor(redis_url, prefix), broker)
        broker.high = {("customer.purchase", 0): 1, ("customer.visit", 0): 5}
        await first.process([p1])
        await first.store._redis.aclose()
        second = with_merge(make_processor(redis_url, prefix), broker)
        try:
            await second.process([p1])  # the redelivery is at the fence: skipped
            held, _ = await second.store.held(0)
            broker.now += 1.0  # the visit input idles past the bound
            await second.release_held(0)  # (the timer calls this)
            broker.now += 1.0
            await second.release_held(0)
            return held, await stored_state(second, 0, "bea")
        finally:
            await second.store._redis.aclose()

    held, state = run_async(main())
    assert held
    assert int(state["purchase_days"]) == 1 and int(state["gross_cents"]) == 2000


def test_held_events_keep_every_field_through_redis_and_read_older_values() -> None:
    """A held complaint keeps its category when it is stored (the complaint counters by
    category are counted when it is released, possibly by another worker); a stored value of
    events with no category is the 9-field array per event it always was, both ways."""
    events = [
        DecodedEvent("c1", "ann", KIND_COMPLAINT, 900, 0, 3, 0, 77, 0, "delivery"),
        DecodedEvent("c2", "ann", KIND_COMPLAINT, 901, 0, 2, 1, 78, 1),
        DecodedEvent("p1", "bob", KIND_PURCHASE, 902, 1250),
    ]
    assert unpack_held(pack_held(events)) == events
    old = [
        ("c2", "ann", KIND_COMPLAINT, 901, 0, 2, 1, 78, 1),
        ("p1", "bob", 1, 902, 1250, 0, 0, 0, 0),
    ]
    old_blob = msgspec.msgpack.encode(old)
    assert pack_held(events[1:]) == old_blob
    assert unpack_held(old_blob) == events[1:]
    assert unpack_held(old_blob)[0].category == ""
    assert pack_held([]) == b"" and unpack_held(b"") == []
