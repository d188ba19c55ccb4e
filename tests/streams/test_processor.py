"""The batch pipeline on a real Valkey: fence, de-duplication, dead letters, timer, zombies."""

from __future__ import annotations

import json

import numpy as np

from engine.batch_scoring import fold_events
from engine.scoring_params import default_scoring_params
from engine.state import KIND_PURCHASE, decode_states, new_events
from streams.processor import BatchProcessor
from tests.streams.conftest import OUT, Feed, RecordingPublisher

DAY = 86400
T0 = 852076800  # 1997-01-01


def purchase(feed: Feed, eid: str, cust: str, day: float, amount: float, partition: int = 0):
    return feed.msg(
        "purchase",
        {
            "event_id": eid,
            "customer_id": cust,
            "ts": int((T0 + day * DAY) * 1000),
            "amount": amount,
        },
        partition,
    )


async def stored_state(proc: BatchProcessor, partition: int, customer: str) -> np.void:
    blob = await proc.store._redis.hget(*proc.store.keys(partition).state(customer))
    return decode_states([blob])[0]


def test_batch_is_applied_like_the_batch_fold(scenario, recorder: RecordingPublisher) -> None:
    feed = Feed()
    msgs = [purchase(feed, f"e{i}", "alice", i * 10, 20.0 + i) for i in range(5)]

    async def body(proc: BatchProcessor):
        await proc.process(msgs[:2])
        await proc.process(msgs[2:])
        return await stored_state(proc, 0, "alice")

    state = scenario(body)
    ev = new_events(5)
    for i in range(5):
        ev[i] = (0, KIND_PURCHASE, 0, 0, T0 + i * 10 * DAY, round((20.0 + i) * 100), 0, 0)
    expected = fold_events(1, ev, default_scoring_params())[0]
    for name in ("purchase_days", "first_purchase", "last_purchase", "gross_cents", "ring_cents"):
        assert np.array_equal(state[name], expected[name]), name
    updates = recorder.on(OUT.scores)
    assert updates[-1]["scores"]["frequency"] == 4
    assert updates[-1]["as_of"] == "1997-02-10T00:00:00Z"


def test_redelivered_offsets_and_retried_event_ids_change_nothing(scenario, recorder) -> None:
    feed = Feed()
    first = [purchase(feed, f"e{i}", "bob", i, 10.0) for i in range(3)]
    # a producer retry: same event ids, new offsets
    retried = [purchase(feed, f"e{i}", "bob", i, 10.0) for i in range(3)]

    async def body(proc: BatchProcessor):
        await proc.process(first)
        before = await stored_state(proc, 0, "bob")
        published = len(recorder.records)
        await proc.process(first)  # redelivery after a crash: at or below the fence
        await proc.process(retried)
        after = await stored_state(proc, 0, "bob")
        return before, after, published, proc.metrics

    before, after, published, metrics = scenario(body)
    assert before.tobytes() == after.tobytes()
    assert int(after["purchase_days"]) == 3
    assert len(recorder.records) == published  # nothing new was published
    assert metrics.fence_skipped._value.get() == 3
    assert metrics.duplicates._value.get() == 3


def test_bad_events_are_dead_lettered_and_good_ones_applied(scenario, recorder) -> None:
    feed = Feed()
    msgs = [
        purchase(feed, "ok1", "carol", 1, 15.0),
        feed.msg("purchase", b"{not json", key=b"carol"),
        feed.msg(
            "purchase", {"event_id": "x", "customer_id": "carol", "ts": "yesterday", "amount": 1}
        ),
        feed.msg(
            "complaint", {"event_id": "c", "customer_id": "carol", "ts": T0 * 1000, "severity": 9}
        ),
        feed.msg("visit", {"event_id": "v", "customer_id": "dave", "ts": T0 * 1000}, key=b"carol"),
        purchase(feed, "ok2", "carol", 2, 25.0),
    ]

    async def body(proc: BatchProcessor):
        await proc.process(msgs)
        return await stored_state(proc, 0, "carol"), proc.metrics

    state, metrics = scenario(body)
    assert int(state["purchase_days"]) == 2
    dead = recorder.on(OUT.dead_letter)
    assert [d["reason"] for d in dead] == ["bad_json", "bad_ts", "bad_severity", "key_mismatch"]
    assert {d["offset"] for d in dead} == {1, 2, 0}  # offsets per source topic
    assert all(d["source_topic"].startswith("customer.") for d in dead)
    assert metrics.dead_letter.labels("bad_json")._value.get() == 1


def test_silence_win_back_comes_from_the_timer_alone(scenario, recorder) -> None:
    feed = Feed()

    async def body(proc: BatchProcessor):
        # erin buys every 10 days, then stops
        await proc.process([purchase(feed, f"e{i}", "erin", i * 10, 30.0) for i in range(3)])
        # other customers' events move the partition's watermark forward
        for day in range(25, 80, 5):
            await proc.process([purchase(feed, f"o{day}", f"other{day}", day, 5.0)])
            await proc.sweep(0, limit=100)
        return await stored_state(proc, 0, "erin")

    state = scenario(body)
    wins = [w for w in recorder.on(OUT.win_back) if w["customer_id"] == "erin"]
    assert len(wins) == 1
    win = wins[0]
    assert win["reason"] == "silence"
    assert win["cause"]["type"] == "timer"
    assert win["usual_gap_days"] == 10.0
    assert win["days_since_last_purchase"] > 20.0
    assert int(state["last_contact"]) > 0
    # time-driven segment changes carry the scores from just before their due time
    timed = [
        c
        for c in recorder.on(OUT.segment_change)
        if c["customer_id"] == "erin"
        and c["cause"]["type"] == "timer"
        and c["scheme"] in ("rfm", "lifecycle")
    ]
    assert timed
    for change in timed:
        field = "rfm_segment" if change["scheme"] == "rfm" else "lifecycle"
        assert change["before"][field] == change["from"]
        assert change["scores"][field] == change["to"]


def test_a_zombie_cannot_overwrite_newer_state(scenario, redis_url, prefix) -> None:
    feed = Feed()
    old_batch = [purchase(feed, "z1", "frank", 1, 10.0)]
    new_batch = [purchase(feed, "z2", "frank", 2, 99.0)]

    async def body(proc: BatchProcessor):
        from tests.streams.conftest import make_processor

        zombie = make_processor(redis_url, prefix, RecordingPublisher())
        read_zombie = zombie.store.read_many
        gate = __import__("asyncio").Event()

        async def slow_read(*args, **kwargs):
            result = await read_zombie(*args, **kwargs)
            await gate.wait()  # the zombie stalls after reading (GC pause, SIGSTOP...)
            return result

        zombie.store.read_many = slow_read  # type: ignore[method-assign]
        import asyncio

        stalled = asyncio.ensure_future(zombie.process(old_batch + new_batch))
        await asyncio.sleep(0.05)
        await proc.process(old_batch)  # the new owner moves on
        gate.set()
        await stalled
        state = await stored_state(proc, 0, "frank")
        conflicts = zombie.metrics.fence_conflicts._value.get()
        skipped = zombie.metrics.fence_skipped._value.get()
        await zombie.store._redis.aclose()
        return state, conflicts, skipped

    state, conflicts, skipped = scenario(body)
    assert conflicts == 1  # the zombie's commit from its stale read was refused ...
    # ... and redone on a fresh read: z1, applied by the new owner, is under the fence now
    # and skipped; z2 is applied on top of the owner's state, once (a refused batch must not
    # be dropped: tests/reliability/test_fence_conflict.py shows the loss that would cause)
    assert skipped == 1
    assert int(state["purchase_days"]) == 2 and int(state["gross_cents"]) == 1000 + 9900


def test_publish_failure_is_retried_before_anything_is_written(scenario) -> None:
    feed = Feed()
    flaky = RecordingPublisher(fail_next=2)

    async def body(proc: BatchProcessor):
        await proc.process([purchase(feed, "p1", "gina", 1, 10.0)])
        return await stored_state(proc, 0, "gina")

    state = scenario(body, publisher=flaky)
    assert int(state["purchase_days"]) == 1
    assert flaky.fail_next == 0 and flaky.on(OUT.scores)


def test_forget_erases_everything_and_old_events_do_not_resurrect(scenario, recorder) -> None:
    feed = Feed()

    async def body(proc: BatchProcessor):
        redis = proc.store._redis
        await proc.process([purchase(feed, f"b{i}", "bob", i * 5, 25.0) for i in range(3)])
        await proc.process([purchase(feed, "x1", "xena", 30, 5.0)])  # watermark: day 30
        deleted, blob = await proc.store.forget(0, "bob")
        assert deleted and blob is not None
        keys = [k async for k in redis.scan_iter(match=f"{proc.store._prefix}:*")]
        found = [k for k in keys if b"bob" in k]
        found += [
            k for k in keys if await redis.type(k) == b"hash" and await redis.hexists(k, "bob")
        ]
        members = await redis.zrange(proc.store.keys(0).due, 0, -1)
        # a replay of bob's past (re-sent with new ids, so dedupe cannot catch it)
        await proc.process([purchase(feed, f"r{i}", "bob", i * 5, 25.0) for i in range(3)])
        after_replay = await redis.hget(*proc.store.keys(0).state("bob"))
        # something new from bob after the forget starts a fresh record
        await proc.process([purchase(feed, "new", "bob", 40, 7.0)])
        fresh = await stored_state(proc, 0, "bob")
        return found, members, after_replay, fresh, proc.metrics

    found, members, after_replay, fresh, metrics = scenario(body)
    assert found == [] and b"bob" not in members
    assert after_replay is None
    assert metrics.forgotten_skipped._value.get() == 3
    assert int(fresh["purchase_days"]) == 1 and int(fresh["gross_cents"]) == 700


def test_a_batch_in_flight_cannot_write_back_a_forgotten_customer(scenario) -> None:
    import asyncio

    feed = Feed()

    async def body(proc: BatchProcessor):
        await proc.process([purchase(feed, "c1", "cora", 1, 10.0)])
        real_read = proc.store.read_many
        gate = asyncio.Event()

        async def stalled_read(*args, **kwargs):
            result = await real_read(*args, **kwargs)
            await gate.wait()
            return result

        proc.store.read_many = stalled_read  # type: ignore[method-assign]
        in_flight = asyncio.ensure_future(proc.process([purchase(feed, "c2", "cora", 2, 10.0)]))
        await asyncio.sleep(0.05)
        await proc.store.forget(0, "cora")
        gate.set()
        await in_flight
        return await proc.store._redis.hget(*proc.store.keys(0).state("cora"))

    assert scenario(body) is None


def test_a_commit_retried_after_a_lost_reply_is_not_taken_for_a_zombie(scenario) -> None:
    from streams.store import Commit

    async def body(proc: BatchProcessor):
        store = proc.store
        commit = Commit(partition=3, generation=0, offsets={"customer.purchase": 7}, watermark=5)
        assert await store.commit_many([commit]) == []  # applied, but say the reply was lost
        again = await store.commit_many([commit])  # the retry of the very same commit
        other = Commit(partition=3, generation=0, offsets={"customer.purchase": 9})
        stale = await store.commit_many([other])  # a different writer with the old generation
        return again, stale, await store.fence(3)

    again, stale, fence = scenario(body)
    assert again == []
    assert len(stale) == 1 and "generation 1 != 0" in str(stale[0])
    assert fence == (5, 1)


def test_a_batch_during_a_sweeps_publish_neither_conflicts_nor_repeats_it(
    scenario, recorder
) -> None:
    """The sweep releases its partition locks once its commit is written, before its publish
    and the wait for broker acks. A batch on the same partition in that window reads the
    sweep's committed state (no fence conflict, nothing redone), leaves the sweep's outbox
    entry to the sweep (not published twice) and publishes after it (commit order)."""
    import asyncio

    feed = Feed()

    async def body(proc: BatchProcessor):
        sweep, release_sweep = await sweep_held_in_its_publish(proc, feed, recorder)
        before = len(recorder.records)  # the sweep's records are not sent yet
        batch = asyncio.ensure_future(proc.process([purchase(feed, "z61", "zoe", 61, 12.0)]))
        for _ in range(50):  # the batch reads, evaluates and commits meanwhile ...
            await asyncio.sleep(0.01)
            if proc.metrics.state_writes._value.get() and await stored_exists(proc, "zoe"):
                break
        committed_during_publish = await stored_exists(proc, "zoe")
        waiting = not batch.done()  # ... and publishes only after the sweep
        release_sweep.set()
        swept = await sweep
        await batch
        return (
            swept,
            committed_during_publish,
            waiting,
            proc.metrics.fence_conflicts._value.get(),
            recorder.records[before:],
        )

    swept, committed_during_publish, waiting, conflicts, records = scenario(body)
    assert swept >= 1 and conflicts == 0
    assert committed_during_publish and waiting
    alerts = [json.loads(v) for t, _, v in records if t != OUT.scores and v is not None]
    ids = [a["alert_id"] for a in alerts]
    assert len(ids) == len(set(ids)), "an alert was published twice"
    customers = [json.loads(v)["customer_id"] for _, _, v in records if v is not None]
    assert "erin" in customers and "zoe" in customers
    first_zoe = customers.index("zoe")
    assert all(c == "erin" for c in customers[:first_zoe])  # the sweep's records came first
    wins = [a for a in alerts if a["customer_id"] == "erin" and a.get("kind") == "win_back"]
    assert len(wins) == 1 and wins[0]["cause"]["type"] == "timer"


def test_a_sweep_entry_acknowledged_while_a_batch_reads_is_not_published_again(
    scenario, recorder
) -> None:
    """The batch's read returns the sweep's outbox entry as pending, but the sweep publishes
    and acknowledges it while that read is on its way: the batch must still leave it alone
    (it once checked what was in flight after the read, and published the entry again)."""

    feed = Feed()

    async def body(proc: BatchProcessor):
        sweep, release_sweep = await sweep_held_in_its_publish(proc, feed, recorder)
        before = len(recorder.records)  # the sweep's records are not sent yet
        read_many = proc.store.read_many

        async def read_while_the_sweep_finishes(requests):
            result = await read_many(requests)  # the sweep's entry is pending in it
            release_sweep.set()
            await sweep  # published and acknowledged before the batch looks at the result
            return result

        proc.store.read_many = read_while_the_sweep_finishes  # type: ignore[method-assign]
        await proc.process([purchase(feed, "z61", "zoe", 61, 12.0)])
        return (
            proc.metrics.outbox_recovered._value.get(),
            recorder.records[before:],
        )

    recovered, records = scenario(body)
    assert recovered == 0
    alerts = [json.loads(v) for t, _, v in records if t != OUT.scores and v is not None]
    ids = [a["alert_id"] for a in alerts]
    assert ids and len(ids) == len(set(ids)), "an alert was published twice"


async def stored_exists(proc: BatchProcessor, customer: str) -> bool:
    return bool(await proc.store._redis.hexists(*proc.store.keys(0).state(customer)))


async def sweep_held_in_its_publish(proc: BatchProcessor, feed: Feed, recorder):
    """erin due by the watermark, then a sweep started and held inside its publish (its acks
    are slow) until the returned event is set; returns (the sweep task, that event)."""
    import asyncio

    await proc.process([purchase(feed, f"e{i}", "erin", i * 10, 30.0) for i in range(3)])
    await proc.process([purchase(feed, "o60", "otto", 60, 5.0)])  # erin is due by now
    sweep_publishing, release_sweep = asyncio.Event(), asyncio.Event()
    send_many = recorder.send_many

    async def slow_first_send(records):
        if not sweep_publishing.is_set():  # the sweep's publish
            sweep_publishing.set()
            await release_sweep.wait()
        await send_many(records)

    recorder.send_many = slow_first_send
    sweep = asyncio.ensure_future(proc.sweep(0, limit=100))
    await sweep_publishing.wait()
    return sweep, release_sweep
