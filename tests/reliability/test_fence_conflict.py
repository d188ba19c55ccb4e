"""A refused commit must not lose the batch (docs/design.md, "State and guarantees":
exactly-once effect on state).

The interleaving the zombie test (test_crash.py) produced on real workers, replayed on the batch
processor with a real Valkey: worker B owns partition 0 and is applying offsets 2..5; the zombie
A (which had applied 0..1) wakes up with offsets 2..3 buffered and commits them first. B's
commit is refused (the generation moved). Before the fix B dropped its share and the agent
acked it; B's next batch moved the fence past 4..5, which were then lost for good.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import numpy as np
import pytest
from fixtures.stack import run_async

from engine.state import decode_states
from streams.processor import RawMessage
from tests.streams.conftest import RecordingPublisher, make_processor

T0 = 852076800  # 1997-01-01
DAY = 86400
TOPIC = "customer.purchase"


def msg(offset: int) -> RawMessage:
    body = {
        "event_id": f"e{offset}",
        "customer_id": "zoe",
        "ts": (T0 + offset * DAY) * 1000,
        "amount": 10.0 + offset,
    }
    return RawMessage(TOPIC, 0, offset, b"zoe", json.dumps(body).encode())


@pytest.fixture
def prefix() -> str:
    return f"fc{uuid.uuid4().hex[:8]}"


def test_a_refused_commit_is_redone_not_dropped(redis_url: str, prefix: str) -> None:
    async def body() -> tuple[np.void, float, float]:
        owner = make_processor(redis_url, prefix, RecordingPublisher())
        zombie = make_processor(redis_url, prefix, RecordingPublisher())
        try:
            await zombie.process([msg(0), msg(1)])  # A applied 0..1, then was paused
            real_read = owner.store.read_many
            gate = asyncio.Event()
            reads = 0

            async def stalled_read(*args, **kwargs):  # type: ignore[no-untyped-def]
                nonlocal reads
                reads += 1
                result = await real_read(*args, **kwargs)
                if reads == 1:
                    await gate.wait()  # B read generation g, then A commits first
                return result

            owner.store.read_many = stalled_read  # type: ignore[method-assign]
            in_flight = asyncio.ensure_future(owner.process([msg(o) for o in range(2, 6)]))
            await asyncio.sleep(0.05)
            await zombie.process([msg(2), msg(3)])  # the zombie's buffered batch lands first
            gate.set()
            await in_flight
            await owner.process([msg(6)])
            blob = await owner.store._redis.hget(*owner.store.keys(0).state("zoe"))
            conflicts = owner.metrics.fence_conflicts._value.get()
            skipped = owner.metrics.fence_skipped._value.get()
            return decode_states([blob])[0], conflicts, skipped
        finally:
            await owner.store._redis.aclose()
            await zombie.store._redis.aclose()

    state, conflicts, skipped = run_async(body())
    assert conflicts == 1  # B's first commit was refused ...
    assert skipped == 2  # ... and its redo skipped 2..3, which the zombie had applied
    assert int(state["purchase_days"]) == 7  # every offset 0..6 applied exactly once
    assert int(state["gross_cents"]) == sum(1000 + 100 * o for o in range(7))
