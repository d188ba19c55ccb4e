"""streams.contact_counters.read_counters on the real embedded Valkey.

The expected totals are summed by hand in the test from what it wrote; the hashes are
written with plain HINCRBY, as the worker's commit does, under the key layout of
docs/outcomes.md ("<prefix>:{p<p>}:counters"), spelled out here rather than taken from the
module.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis
from fixtures.stack import run_async

from streams.contact_counters import counters_key, read_counters
from streams.redis_conn import HiredisPackedConnection

V = "0123456789ab"
NUDGE = f"contact|nudge|repurchase|timely_reminder|normal|treated|{V}"
NUDGE_N = f"outcome|nudge|repurchase|timely_reminder|normal|treated|{V}|n"
WINBACK = f"contact|win_back|silence|reminder_email|small|holdout|{V}"


async def _write(url: str, writes: list[tuple[str, str, int]]) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        for key, field, amount in writes:
            await client.hincrby(key, field, amount)
    finally:
        await client.aclose()


async def _read(url: str, prefix: str, **options: int) -> dict[str, int]:
    client = aioredis.Redis.from_url(url, connection_class=HiredisPackedConnection)
    try:
        return await read_counters(client, prefix, **options)
    finally:
        await client.aclose()


def test_sums_every_partition_and_nothing_else(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writes = [
        (f"{prefix}:{{p0}}:counters", NUDGE, 3),
        (f"{prefix}:{{p0}}:counters", NUDGE, 2),  # HINCRBY adds: 5 in p0
        (f"{prefix}:{{p0}}:counters", NUDGE_N, 4),
        (f"{prefix}:{{p1}}:counters", NUDGE, 7),
        (f"{prefix}:{{p1}}:counters", "suppressed|nudge|repurchase", 1),
        (f"{prefix}:{{p7}}:counters", WINBACK, 11),
        (f"{prefix}:{{p12}}:counters", NUDGE_N, 6),
        (f"{prefix}:{{p12}}:counters", "complaint|delivery", 2),
        # not counters of this prefix: another prefix that starts like it, another key of
        # the same partition, and a longer key SCAN's glob would match
        (f"{prefix}x:{{p0}}:counters", NUDGE, 1000),
        (f"{prefix}:{{p0}}:fence", "gen", 1000),
        (f"{prefix}:{{p1}}:x:{{p2}}:counters", NUDGE, 1000),
        (f"{prefix}:{{q1}}:counters", NUDGE, 1000),
    ]
    run_async(_write(redis_url, writes))
    expected = {
        NUDGE: 3 + 2 + 7,
        NUDGE_N: 4 + 6,
        "suppressed|nudge|repurchase": 1,
        WINBACK: 11,
        "complaint|delivery": 2,
    }
    assert run_async(_read(redis_url, prefix)) == expected
    # a SCAN page of 1 key walks the same keys
    assert run_async(_read(redis_url, prefix, scan_count=1)) == expected


def test_many_partitions_span_pipeline_batches(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writes = [(f"{prefix}:{{p{p}}}:counters", NUDGE, p + 1) for p in range(150)]
    run_async(_write(redis_url, writes))
    assert run_async(_read(redis_url, prefix)) == {NUDGE: sum(range(1, 151))}


def test_glob_characters_in_the_prefix_match_only_themselves(redis_url: str) -> None:
    token = uuid.uuid4().hex[:8]
    prefix = f"t{token}*[ab]?"
    writes = [
        (f"{prefix}:{{p0}}:counters", NUDGE, 2),
        (f"t{token}zzzb1:{{p0}}:counters", NUDGE, 1000),  # matches the unescaped glob
    ]
    run_async(_write(redis_url, writes))
    assert run_async(_read(redis_url, prefix)) == {NUDGE: 2}


def test_nothing_written_is_empty(redis_url: str) -> None:
    assert run_async(_read(redis_url, f"t{uuid.uuid4().hex[:8]}")) == {}


def test_counters_key_layout() -> None:
    assert counters_key("cs", 3) == "cs:{p3}:counters"
