"""The batch read script against plain per-key commands, including reads larger than the
script's unpack chunks (many customers of one bucket, many events of one dedupe set)."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis
from fixtures.stack import run_async

from streams.keys import bucket_of, event_digest
from streams.redis_conn import HiredisPackedConnection
from streams.store import DAY, Commit, ReadRequest, RedisStateStore


async def _check(redis_url: str, buckets: int, shards: int, n: int) -> None:
    client = aioredis.Redis.from_url(redis_url, connection_class=HiredisPackedConnection)
    store = RedisStateStore(
        client,
        prefix=f"t{uuid.uuid4().hex[:8]}",
        dedupe_retention_days=3650,
        buckets=buckets,
        dedupe_shards=shards,
    )
    try:
        customers = [f"c{i}" for i in range(n)]
        events = [(f"e{i}", 100 * DAY + i) for i in range(n)]
        # every third customer has a state, every fifth event was applied
        await store.commit(
            Commit(
                partition=3,
                generation=0,
                offsets={"topic": 41},
                watermark=100 * DAY,
                states={c: f"state-{c}".encode() for c in customers[::3]},
                event_ids=events[::5],
                outbox=b"records",
            )
        )
        await store.forget(3, "c7")
        read, empty = await store.read_many(
            [ReadRequest(3, customers, events), ReadRequest(5, [], [])]
        )
        keys = store.keys(3)
        assert read.blobs == [
            await client.hget(keys.bucket(bucket_of(c, buckets)), c) for c in customers
        ]
        assert read.forgotten == [int(await client.get(keys.forgotten(c)) or 0) for c in customers]
        assert read.forgotten[7] == 100 * DAY and sum(map(bool, read.forgotten)) == 1
        assert read.seen == [
            bool(
                await client.sismember(
                    keys.dedupe(ts // DAY, event_digest(e) % shards), str(event_digest(e))
                )
            )
            for e, ts in events
        ]
        assert sum(read.seen) == len(events[::5])
        assert (read.offsets, read.watermark, read.generation) == ({"topic": 41}, 100 * DAY, 1)
        assert list(read.outbox.values()) == [b"records"]
        assert (empty.blobs, empty.seen, empty.forgotten, empty.generation) == ([], [], [], 0)
        assert (empty.offsets, empty.outbox, empty.watermark) == ({}, {}, 0)
    finally:
        await client.aclose()


def test_read_many_matches_per_key_commands(redis_url: str) -> None:
    run_async(_check(redis_url, buckets=1024, shards=4, n=300))


def test_read_many_beyond_the_scripts_unpack_chunk(redis_url: str) -> None:
    # one bucket and one dedupe set of 5000 members: several HMGET/SMISMEMBER/MGET chunks
    run_async(_check(redis_url, buckets=1, shards=1, n=5000))


def test_commit_arguments_are_the_same_after_a_read() -> None:
    # the commit reuses the marker keys and digests its partition's read computed
    store = RedisStateStore(aioredis.Redis(), prefix="t", dedupe_retention_days=30)
    customers = [f"c{i}" for i in range(50)]
    events = [(f"e{i}", 100 * DAY + 7_000 * i) for i in range(80)]
    commit = Commit(
        partition=2,
        generation=4,
        states={c: c.encode() for c in customers[::2]},
        due={c: 9 for c in customers[::4]},
        cutoffs={customers[2]: 5},
        event_ids=events[::3],
    )
    fresh = store._commit_args(commit)
    store._read_args(ReadRequest(2, customers, events))
    assert store._commit_args(commit) == fresh  # every id read: from the memo
    store._read_args(ReadRequest(2, customers[:10], events[:10]))
    assert store._commit_args(commit) == fresh  # some ids not read: computed
    store._read_args(ReadRequest(3, customers, events))
    assert store._commit_args(commit) == fresh  # another partition's read
