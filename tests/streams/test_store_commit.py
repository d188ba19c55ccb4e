"""The commit script against a per-key model of what it must write: states grouped by bucket
(one HSET per bucket, one ZADD LT of each bucket's earliest due) must write exactly what one
HSET and one ZADD LT per state would, skip states forgotten since their read, and write
nothing when the generation moved; including commits larger than the script's unpack chunks
(many states of one bucket, more than a chunk of due buckets, many events of one set)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis
from fixtures.stack import run_async

from streams.keys import bucket_of, event_digest
from streams.redis_conn import HiredisPackedConnection, reply_text
from streams.store import DAY, Commit, FenceConflict, RedisStateStore


async def _dump(client: aioredis.Redis, prefix: str) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    async for key in client.scan_iter(match=f"{prefix}:*"):
        kind = reply_text(await client.type(key))
        if kind == "hash":
            out[key] = await client.hgetall(key)
        elif kind == "zset":
            out[key] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            out[key] = await client.smembers(key)
        else:
            out[key] = await client.get(key)
    return out


async def _check(redis_url: str, buckets: int, n: int) -> None:
    client = aioredis.Redis.from_url(redis_url, connection_class=HiredisPackedConnection)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = RedisStateStore(
        client, prefix=prefix, dedupe_retention_days=3650, buckets=buckets, dedupe_shards=1
    )
    keys = store.keys(1)
    try:
        customers = [f"c{i}" for i in range(n)]
        # generation 0 -> 1: every other customer, with a due time for every third
        first = {c: b"old-" + c.encode() for c in customers[::2]}
        first_due = {c: 5_000 + i for i, c in enumerate(customers) if c in first and i % 3 == 0}
        await store.commit(
            Commit(partition=1, generation=0, states=first, due=first_due, offsets={"t": 1})
        )
        # forgotten before the next batch read them (cutoff read = the marker) or while
        # it was in flight (cutoff read 0, marker set since): only the first is written back
        forgotten_before, forgotten_during = customers[1:50:7], customers[3:50:7]
        for c in forgotten_before + forgotten_during:
            await store.forget(1, c)
        # (the watermark is 0: set markers distinguishable from "never forgotten")
        for c in forgotten_before + forgotten_during:
            await client.set(keys.forgotten(c), 77)
        cutoffs = dict.fromkeys(forgotten_before, 77)
        before = await _dump(client, prefix)

        states = {c: b"new-" + c.encode() for c in customers}
        due = {c: (4_000 + 13 * i) % 9_000 for i, c in enumerate(customers) if i % 4 != 1}
        # one dedupe set beyond a chunk, and a few more days
        events = [(f"e{i}", 100 * DAY + 20 * i) for i in range(n)]
        events += [(f"x{j}", (101 + j) * DAY) for j in range(3)]
        exact = {0: 123, 1 % buckets: 0} if buckets > 1 else {0: 123}
        commit = Commit(
            partition=1,
            generation=1,
            offsets={"t": 9, "u": 4},
            watermark=100 * DAY,
            states=states,
            cutoffs=cutoffs,
            due=due,
            bucket_due=exact,
            event_ids=events,
            outbox=b"records",
            quarantine={"q1": b"bad1", "q2": b"bad2"},
            held=b"held-events",
            counters={"a": 2, "b": 0, "c": -1},
        )
        # a stale generation is refused and writes nothing
        with pytest.raises(FenceConflict):
            await store.commit(replace(commit, generation=0))
        assert await _dump(client, prefix) == before

        assert await store.commit(commit) == 2
        after = await _dump(client, prefix)

        # the model: one HSET and one ZADD LT per state written, then the exact bounds
        expected = dict(before)
        skipped = set(forgotten_during)
        due_index = {int(m): s for m, s in before.get(keys.due.encode(), [])}
        for c, value in states.items():
            if c in skipped:
                continue
            bucket = bucket_of(c, buckets)
            bkey = keys.bucket(bucket).encode()
            expected[bkey] = {**expected.get(bkey, {}), c.encode(): value}
            if due.get(c, 0) > 0:
                due_index[bucket] = min(due_index.get(bucket, due[c]), due[c])
        for bucket, when in exact.items():
            if when > 0:
                due_index[bucket] = when
            else:
                due_index.pop(bucket, None)
        expected[keys.due.encode()] = sorted(
            ((str(b).encode(), float(s)) for b, s in due_index.items()),
            key=lambda pair: (pair[1], pair[0]),
        )
        sets: dict[bytes, set[bytes]] = {}
        for e, ts in events:
            digest = event_digest(e)
            sets.setdefault(keys.dedupe(ts // DAY, 0).encode(), set()).add(str(digest).encode())
        expected.update(sets)
        days = sorted({ts // DAY for _, ts in events})
        expected[keys.dedupe_days.encode()] = [(str(d).encode(), float(d)) for d in days]
        expected[keys.quarantine.encode()] = {b"q1": b"bad1", b"q2": b"bad2"}
        expected[keys.held.encode()] = b"held-events"
        expected[keys.counters.encode()] = {b"a": b"2", b"c": b"-1"}
        fence = after[keys.fence.encode()]
        assert fence[b"gen"] == b"2" and fence[b"nb"] == str(buckets).encode()
        assert (fence[b"t"], fence[b"u"], fence[b"wm"]) == (b"9", b"4", str(100 * DAY).encode())
        assert after.pop(keys.outbox.encode()) == {commit.token.encode(): b"records"}
        expected.pop(keys.outbox.encode(), None)
        expected[keys.fence.encode()] = fence
        assert after == expected
        assert any(due.get(c, 0) for c in forgotten_during)  # the skip did matter
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("buckets", "n"),
    [
        (4, 300),  # several states per bucket
        (1, 2_500),  # one bucket: HSET and MGET beyond one unpack chunk
        (4096, 3_000),  # more due buckets than one ZADD chunk of pairs
    ],
)
def test_commit_matches_per_state_writes(redis_url: str, buckets: int, n: int) -> None:
    run_async(_check(redis_url, buckets, n))
