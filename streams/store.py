"""The Redis state store: batched reads, and an atomic conditional commit per partition.

One round trip reads a partition's batch (states, fence, dedupe membership); one script
call commits it. The commit is a Lua script rather than MULTI/EXEC because it must also
*check* the partition's write generation: a worker that lost the partition (a zombie)
read an older generation, so its commit is refused instead of overwriting newer state.
Scripts run atomically, exactly like MULTI/EXEC, and all keys share the partition's hash
tag, so this works on Redis Cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis

from streams.keys import PartitionKeys, event_digest

__all__ = [
    "Commit",
    "FenceConflict",
    "PartitionRead",
    "RedisStateStore",
    "StateStore",
]

DAY = 86_400

# KEYS: fence, due, ddays, state keys..., dedupe keys...
# ARGV: expected gen, new gen, n_fence, (field, value)*, n_states, value*, n_due_add,
#       (score, member)*, n_due_rem, member*, n_dd, (day, n, member*)*
_COMMIT_LUA = """
local fence, due, ddays = KEYS[1], KEYS[2], KEYS[3]
local current = redis.call('HGET', fence, 'gen') or '0'
if current ~= ARGV[1] then return {0, current} end
local a = 3
local n = tonumber(ARGV[a]); a = a + 1
redis.call('HSET', fence, 'gen', ARGV[2])
for i = 1, n do
  redis.call('HSET', fence, ARGV[a], ARGV[a + 1]); a = a + 2
end
n = tonumber(ARGV[a]); a = a + 1
for i = 1, n do
  redis.call('SET', KEYS[3 + i], ARGV[a]); a = a + 1
end
local k = 3 + n
n = tonumber(ARGV[a]); a = a + 1
for i = 1, n do
  redis.call('ZADD', due, ARGV[a], ARGV[a + 1]); a = a + 2
end
n = tonumber(ARGV[a]); a = a + 1
for i = 1, n do
  redis.call('ZREM', due, ARGV[a]); a = a + 1
end
n = tonumber(ARGV[a]); a = a + 1
for i = 1, n do
  local day = ARGV[a]; local m = tonumber(ARGV[a + 1]); a = a + 2
  k = k + 1
  for j = 1, m do
    redis.call('SADD', KEYS[k], ARGV[a]); a = a + 1
  end
  redis.call('ZADD', ddays, day, day)
end
return {1, ARGV[2]}
"""


class FenceConflict(RuntimeError):
    """The partition was written by someone else since it was read (we lost it)."""


@dataclass(slots=True)
class PartitionRead:
    """What a batch needs from Redis for one partition."""

    partition: int
    blobs: list[bytes | None]  # aligned with the requested customer ids
    offsets: dict[str, int]  # input topic -> last applied offset (-1 = none)
    watermark: int  # epoch s, 0 = none yet
    generation: int
    seen: list[bool]  # aligned with the requested event ids


@dataclass(slots=True)
class Commit:
    """Everything one partition's batch writes, atomically."""

    partition: int
    generation: int  # the generation read; the commit fails if it changed
    offsets: dict[str, int] = field(default_factory=dict)
    watermark: int | None = None
    states: dict[str, bytes] = field(default_factory=dict)
    due: dict[str, int] = field(default_factory=dict)  # customer -> due (0 = remove)
    event_ids: list[tuple[str, int]] = field(default_factory=list)  # (event id, event ts)


class StateStore(Protocol):
    """What the worker needs of a state backend."""

    async def read(
        self, partition: int, customers: Sequence[str], events: Sequence[tuple[str, int]]
    ) -> PartitionRead: ...

    async def commit(self, commit: Commit) -> int: ...

    async def due_customers(self, partition: int, until: int, limit: int) -> list[str]: ...


class RedisStateStore:
    """State, fences, due index and dedupe sets in Redis (standalone or cluster)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, dedupe_retention_days: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._retention_days = dedupe_retention_days
        self._commit_script = client.register_script(_COMMIT_LUA)

    def keys(self, partition: int) -> PartitionKeys:
        """Key layout of ``partition``."""
        return PartitionKeys(self._prefix, partition)

    async def read(
        self, partition: int, customers: Sequence[str], events: Sequence[tuple[str, int]]
    ) -> PartitionRead:
        """States of ``customers``, the fence, and which (event id, ts) were applied before."""
        keys = self.keys(partition)
        by_day: dict[int, list[int]] = {}
        for i, (_, ts) in enumerate(events):
            by_day.setdefault(ts // DAY, []).append(i)
        async with self._redis.pipeline(transaction=False) as pipe:
            if customers:
                pipe.mget([keys.state(c) for c in customers])
            pipe.hgetall(keys.fence)
            for day, idx in by_day.items():
                pipe.smismember(keys.dedupe(day), [event_digest(events[i][0]) for i in idx])
            replies = await pipe.execute()
        blobs: list[bytes | None] = replies.pop(0) if customers else []
        fence: dict[bytes, bytes] = replies.pop(0)
        seen = [False] * len(events)
        for (_, idx), flags in zip(by_day.items(), replies, strict=True):
            for i, hit in zip(idx, flags, strict=True):
                seen[i] = bool(hit)
        offsets = {k.decode(): int(v) for k, v in fence.items() if k not in (b"wm", b"gen")}
        return PartitionRead(
            partition=partition,
            blobs=blobs,
            offsets=offsets,
            watermark=int(fence.get(b"wm", 0)),
            generation=int(fence.get(b"gen", 0)),
            seen=seen,
        )

    def _commit_args(self, commit: Commit) -> tuple[list[str], list[Any]]:
        keys = self.keys(commit.partition)
        fence_fields: list[Any] = []
        for topic, offset in commit.offsets.items():
            fence_fields += [topic, offset]
        if commit.watermark is not None:
            fence_fields += ["wm", commit.watermark]
        key_list = [keys.fence, keys.due, keys.dedupe_days]
        argv: list[Any] = [commit.generation, commit.generation + 1, len(fence_fields) // 2]
        argv += fence_fields
        key_list += [keys.state(c) for c in commit.states]
        argv.append(len(commit.states))
        argv += list(commit.states.values())
        adds = [(d, c) for c, d in commit.due.items() if d > 0]
        removes = [c for c, d in commit.due.items() if d <= 0]
        argv.append(len(adds))
        for d, c in adds:
            argv += [d, c]
        argv.append(len(removes))
        argv += removes
        by_day: dict[int, list[bytes]] = {}
        for event_id, ts in commit.event_ids:
            by_day.setdefault(ts // DAY, []).append(event_digest(event_id))
        argv.append(len(by_day))
        for day, digests in by_day.items():
            key_list.append(keys.dedupe(day))
            argv += [day, len(digests), *digests]
        return key_list, argv

    async def commit(self, commit: Commit) -> int:
        """Write one partition's batch atomically; returns the new generation.

        Raises FenceConflict if the partition's generation moved since it was read.
        """
        key_list, argv = self._commit_args(commit)
        ok, gen = await self._commit_script(keys=key_list, args=argv)
        if int(ok) != 1:
            raise FenceConflict(
                f"partition {commit.partition}: generation {int(gen)} != {commit.generation} read"
            )
        return int(gen)

    async def due_customers(self, partition: int, until: int, limit: int) -> list[str]:
        """Customers of ``partition`` due at or before ``until`` (earliest first)."""
        members = await self._redis.zrangebyscore(
            self.keys(partition).due, "-inf", until, start=0, num=limit
        )
        return [_text(m) for m in members]

    async def fence(self, partition: int) -> tuple[int, int]:
        """(watermark, generation) of ``partition``."""
        wm, gen = await self._redis.hmget(self.keys(partition).fence, ["wm", "gen"])
        return int(wm or 0), int(gen or 0)

    async def due_size(self, partition: int) -> int:
        """Entries in the due index of ``partition``."""
        return int(await self._redis.zcard(self.keys(partition).due))

    async def expire_dedupe(self, partition: int, watermark: int) -> int:
        """Drop dedupe sets of event days older than the retention; returns how many."""
        keys = self.keys(partition)
        oldest_kept = watermark // DAY - self._retention_days
        days = await self._redis.zrangebyscore(keys.dedupe_days, "-inf", f"({oldest_kept}")
        if not days:
            return 0
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*[keys.dedupe(int(_text(d))) for d in days])
            pipe.zrem(keys.dedupe_days, *days)
            await pipe.execute()
        return len(days)

    async def scan_states(self, partition: int, count: int = 1000) -> Iterable[tuple[str, bytes]]:
        """Every (customer id, state blob) of ``partition`` (SCAN + MGET, no full-key KEYS)."""
        keys = self.keys(partition)
        out: list[tuple[str, bytes]] = []
        async for batch in _chunks(
            self._redis.scan_iter(match=keys.state_pattern, count=count), count
        ):
            blobs = await self._redis.mget(batch)
            for key, blob in zip(batch, blobs, strict=True):
                if isinstance(blob, bytes):
                    out.append((keys.customer_from_state_key(_text(key)), blob))
        return out


def _text(reply: object) -> str:
    """A Redis reply item as text (clients return bytes unless decode_responses is set)."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, str):
        return reply
    raise TypeError(f"unexpected Redis reply item {type(reply).__name__}")


async def _chunks(source: Any, size: int) -> Any:
    chunk: list[bytes] = []
    async for item in source:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def wall_clock() -> float:
    """Wall time in epoch seconds (injected where tests need another clock)."""
    return time.time()
