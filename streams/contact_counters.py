"""Reading the worker's contact and outcome counters back from Redis.

Each batch commit adds its contacts, outcomes, suppressions and complaints to its partition's
hash ``<prefix>:{p<p>}:counters`` (HINCRBY; the field layout is in :mod:`models.uplift` and
docs/outcomes.md, "Redis counters"). :func:`read_counters` sums every partition's hash into
one field -> count mapping, the input of :func:`models.uplift.outcome_table`.

The hashes are found with SCAN (never KEYS, which blocks the server) and read with HGETALL in
one pipeline per 64 keys. On a Redis Cluster, redis-py's cluster client scans every primary
and routes each HGETALL to the node of its key's slot. Reads of different partitions are not
one snapshot: a commit landing in between is counted in one partition and not yet in another,
which is harmless for counters that only grow.
"""

from __future__ import annotations

import re
from typing import Any

import redis.asyncio as aioredis

from streams.redis_conn import reply_text

__all__ = ["counters_key", "counters_pattern", "read_counters"]

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def counters_key(prefix: str, partition: int) -> str:
    """The counters hash of one partition: ``<prefix>:{p<partition>}:counters``."""
    return f"{prefix}:{{p{partition}}}:counters"


def counters_pattern(prefix: str) -> str:
    """SCAN MATCH pattern of every partition's counters hash (glob characters of the prefix
    escaped, so a prefix such as ``a*`` matches only itself)."""
    escaped = _GLOB_SPECIAL.sub(r"\\\1", prefix)
    return f"{escaped}:{{p*}}:counters"


async def read_counters(
    client: aioredis.Redis, prefix: str, *, scan_count: int = 1000
) -> dict[str, int]:
    """Every partition's counters under ``prefix``, summed field by field.

    Only keys exactly of the form ``<prefix>:{p<digits>}:counters`` count: SCAN's glob would
    also match longer keys such as ``<prefix>:{p1}:x:{p2}:counters``.
    """
    exact = re.compile(rf"{re.escape(prefix)}:\{{p\d+\}}:counters")
    keys = sorted(
        {
            name
            async for raw in client.scan_iter(match=counters_pattern(prefix), count=scan_count)
            if exact.fullmatch(name := reply_text(raw))
        }
    )
    totals: dict[str, int] = {}
    for start in range(0, len(keys), 64):
        batch = keys[start : start + 64]
        async with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.hgetall(key)
            contents: list[dict[Any, Any]] = await pipe.execute()
        for content in contents:
            for field, value in content.items():
                name = reply_text(field)
                totals[name] = totals.get(name, 0) + int(value)
    return totals
