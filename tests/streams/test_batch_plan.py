"""streams.batch_plan.triage: what a partition's batch applies, holds or drops (no Redis)."""

from __future__ import annotations

from engine.state import KIND_PURCHASE
from streams.batch_plan import PartitionPlan, RawMessage, triage
from streams.codec import DecodedEvent, Rejected

P, V = "customer.purchase", "customer.visit"


def event(eid: str, cust: str, ts: int) -> DecodedEvent:
    return DecodedEvent(eid, cust, KIND_PURCHASE, ts, cents=100)


def test_each_message_lands_in_exactly_one_place() -> None:
    bad = Rejected("bad_json", "x")
    items = [
        (RawMessage(P, 0, 3, b"a", b""), event("old", "a", 10)),  # at the fence
        (RawMessage(P, 0, 4, b"a", b""), event("e1", "a", 20)),
        (RawMessage(P, 0, 5, b"b", b""), bad),
        (RawMessage(P, 0, 6, b"a", b""), event("e1", "a", 20)),  # same id in the batch
        (RawMessage(V, 0, 9, b"c", b""), event("e2", "c", 30)),  # seen before
        (RawMessage(V, 0, 10, b"d", b""), event("e3", "d", 5)),  # before d's forget cutoff
        (RawMessage(V, 0, 11, b"a", b""), event("e4", "a", 99)),  # past the frontier
    ]
    held = [event("h1", "a", 15), event("h2", "d", 4), event("h3", "c", 200)]
    plan = PartitionPlan(0, items, held, frontier=50)
    assert plan.customers == ["a", "c", "d"]
    seen = [e.event_id == "e2" for _, e in plan.valid]
    forgotten = [7 if c == "d" else 0 for c in plan.customers]
    out = triage(plan, {P: 3}, seen, forgotten)
    assert out.fence_skipped == 1 and out.duplicates == 2 and out.forgotten_skipped == 1
    assert out.rejected == [(items[2][0], bad)]
    assert [e.event_id for e in out.kept] == ["e1", "e4"]
    assert [e.event_id for e in out.due] == ["h1", "e1"]  # h2 is forgotten, h3 and e4 later
    assert [e.event_id for e in out.still_held] == ["h3", "e4"]
    assert out.offsets == {P: 6, V: 11} and out.cutoffs == {"d": 7}


def test_a_redelivery_below_the_fence_changes_nothing() -> None:
    items = [(RawMessage(P, 0, 2, b"a", b""), event("e1", "a", 20))]
    plan = PartitionPlan(0, items, [])
    out = triage(plan, {P: 2}, [True], [0])
    assert out.offsets == {} and out.kept == [] and out.due == [] and out.fence_skipped == 1
