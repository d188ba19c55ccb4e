"""Stored records of another layout on a real Valkey: upgraded on read, or quarantined.

A record written by layout version 1 is upgraded when its customer's next event arrives; a
record that cannot be decoded is moved to the partition's quarantine hash (bytes and
customer id kept, a metric counted) and the customer starts afresh, while the rest of the
batch applies and the fence moves on: a bad record is never a poison message.
"""

from __future__ import annotations

import numpy as np

from engine.state import STATE_DTYPE_V1, STATE_VERSION, decode_states
from streams.processor import BatchProcessor
from tests.streams.conftest import Feed
from tests.streams.test_processor import purchase

DAY = 86400
T0 = 852076800  # 1997-01-01


def v1_record() -> bytes:
    """A version-1 customer: two purchases (10 and 30 days in), 70.00 spent, seen since T0."""
    old = np.zeros(1, dtype=STATE_DTYPE_V1)
    r = old[0]
    r["version"] = 1
    r["first_seen"] = T0 + 10 * DAY
    r["first_purchase"] = T0 + 10 * DAY
    r["prev_purchase"] = T0 + 10 * DAY
    r["last_purchase"] = T0 + 30 * DAY
    r["last_event"] = T0 + 30 * DAY
    r["n_purchases"] = 2
    r["gross_cents"] = 7000
    r["first_amount_cents"] = 3000
    r["ring_head"] = 324  # 1997-01
    r["ring_cents"][0] = 7000
    r["ring_count"][0] = 2
    r["seg_lifecycle"] = 4  # active, as v1 recorded it
    return old.tobytes()


def test_old_layout_is_upgraded_and_a_corrupt_record_quarantined(scenario, recorder) -> None:
    feed = Feed()
    corrupt = b"\x07" + b"\x00" * 40  # an unknown version and size
    batch = [
        purchase(feed, "o1", "old", 40, 25.0),
        purchase(feed, "b1", "broken", 40, 15.0),
        purchase(feed, "n1", "new", 40, 10.0),
    ]

    async def body(proc: BatchProcessor):
        redis = proc.store._redis
        keys = proc.store.keys(0)
        for customer, blob in (("old", v1_record()), ("broken", corrupt)):
            await redis.hset(*keys.state(customer), blob)
        await proc.process(batch)
        stored = {c: await redis.hget(*keys.state(c)) for c in ("old", "broken", "new")}
        quarantined = await redis.hgetall(keys.quarantine)
        fence = await redis.hgetall(keys.fence)
        return stored, quarantined, fence, proc.metrics

    stored, quarantined, fence, metrics = scenario(body)
    old = decode_states([stored["old"]])[0]
    assert int(old["version"]) == STATE_VERSION and len(stored["old"]) != len(v1_record())
    # the v1 history carried over, then the new purchase day applied on top
    assert int(old["purchase_days"]) == 3 and int(old["gross_cents"]) == 9500
    assert int(old["first_day_cents"]) == 3000 and int(old["last_purchase"]) == T0 + 40 * DAY
    # the corrupt record's bytes are kept under its customer id; the customer starts afresh
    assert quarantined == {b"broken": corrupt}
    broken = decode_states([stored["broken"]])[0]
    assert int(broken["purchase_days"]) == 1 and int(broken["gross_cents"]) == 1500
    assert int(decode_states([stored["new"]])[0]["purchase_days"]) == 1
    assert int(fence[b"customer.purchase"]) == 2  # the whole batch was applied
    assert metrics.state_upgraded._value.get() == 1
    assert metrics.state_quarantined._value.get() == 1
    scores = {u["customer_id"]: u for u in recorder.on("customer.scores")}
    assert set(scores) == {"old", "broken", "new"}


def test_the_sweep_survives_a_corrupt_record_in_a_due_bucket(scenario) -> None:
    """The timer reads whole due buckets: an undecodable record there does not stop it, the
    due customers beside it are still evaluated, and the record is quarantined when its
    customer's next event needs it."""
    feed = Feed()

    async def body(proc: BatchProcessor):
        redis = proc.store._redis
        keys = proc.store.keys(0)
        await proc.process([purchase(feed, "a1", "ava", 0, 20.0)])
        bucket_key, _ = keys.state("ava")
        await redis.hset(*keys.state("bad"), b"\x09garbage")
        await redis.hset(bucket_key, "stray", b"\x09garbage")  # in ava's due bucket
        await proc.process([purchase(feed, "z1", "zed", 400, 5.0)])  # the watermark moves on
        swept = await proc.sweep(0, limit=100)
        ava = decode_states([await redis.hget(bucket_key, "ava")])[0]
        untouched = await redis.hgetall(keys.quarantine)
        await proc.process([purchase(feed, "b1", "bad", 401, 5.0)])
        return swept, ava, untouched, await redis.hgetall(keys.quarantine)

    swept, ava, untouched, quarantined = scenario(body)
    assert swept >= 1 and untouched == {}
    assert int(ava["clock"]) > T0 + 300 * DAY  # evaluated at its own due times since
    assert quarantined == {b"bad": b"\x09garbage"}
