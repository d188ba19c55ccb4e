"""The Redis state store: batched reads, and an atomic conditional commit per partition.

One script call reads a partition's batch (states, forget markers, fence, outbox, dedupe
membership) and one commits it; a batch's partitions share one round trip each way. The
commit is a Lua script rather than MULTI/EXEC because it must also *check* the partition's
write generation: a worker that lost the partition (a zombie) read an older generation, so
its commit is refused instead of overwriting newer state.
Scripts run atomically, exactly like MULTI/EXEC, and all keys share the partition's hash
tag, so this works on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, TypeVar

import redis.asyncio as aioredis

from config.settings import Settings
from streams.keys import (
    DEFAULT_BUCKETS,
    PartitionKeys,
    buckets_of,
    event_digests,
)
from streams.redis_conn import reply_text

DEFAULT_DEDUPE_SHARDS = 4  # dedupe sets per partition and event day

__all__ = [
    "Commit",
    "FenceConflict",
    "PartitionRead",
    "ReadRequest",
    "RedisStateStore",
    "StateLayoutError",
]

DAY = 86_400
_V = TypeVar("_V")

# KEYS: fence, due, ddays, outbox, quarantine, held, counters, (state bucket)*,
#       (forget marker)* (one a state, bucket by bucket), dedupe keys...
# ARGV: expected gen, new gen, commit token, bucket count, n_fence, (field, value)*,
#       n_buckets, n_states, n_cutoffs, (bucket, n_states of it)*, (state index, cutoff read)*
#       (the states whose cutoff read is not 0, counting from 1), (customer, value, due)*
#       (bucket by bucket), n_exact, (bucket, due)*, n_dd, (day, n, member*)*,
#       outbox records ('' = none), n_quarantine, (customer, blob)*,
#       held mode ('0' unchanged, '1' replaced), held events ('' = none),
#       n_counters, (field, increment)*
# The outbox entry (the batch's alerts and score updates, under the commit token) is written
# with the states it describes: records are published only after this commit succeeded, and
# a worker that dies before publishing leaves them for the partition's next owner.
# A state whose forget marker changed since the batch read it was forgotten while the
# batch was in flight: the erasure wins and the state is not written back.
# The due index holds, per bucket, a lower bound of its customers' earliest due time: a write
# can only lower it (ZADD LT); the sweep, having read the whole bucket, sets it exactly.
# Each command is one call however many members it writes (a call from Lua costs more than
# the command itself): one MGET of the markers, one HSET per bucket of the states written,
# one ZADD LT of each such bucket's earliest due, one SADD per dedupe set. unpack() goes in
# chunks (Lua's C stack is limited to a few thousand values), of pairs where pairs are sent.
_COMMIT_LUA = """
local fence, due, ddays, outbox, quarantine = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local held, counters = KEYS[6], KEYS[7]
local current = redis.call('HGET', fence, 'gen') or '0'
if current ~= ARGV[1] then return {0, current, redis.call('HGET', fence, 'tok') or ''} end
local tonumber, unpack, min = tonumber, unpack, math.min
local function each_chunk(cmd, key, list, first, last, out)
  local s = first
  while s <= last do
    local e = min(s + 1999, last)
    if out then
      local reply = redis.call(cmd, unpack(list, s, e))
      local n = #out
      for i = 1, #reply do out[n + i] = reply[i] end
    else
      redis.call(cmd, key, unpack(list, s, e))
    end
    s = e + 1
  end
end
local n = tonumber(ARGV[5])
redis.call('HSET', fence, 'gen', ARGV[2], 'tok', ARGV[3], 'nb', ARGV[4])
each_chunk('HSET', fence, ARGV, 6, 5 + 2 * n)
local a = 6 + 2 * n
local nb, ns, nc = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
local groups = a + 3
a = groups + 2 * nb
local cutoffs = {}
for j = 1, nc do
  cutoffs[tonumber(ARGV[a])] = tonumber(ARGV[a + 1]); a = a + 2
end
local markers = {}
each_chunk('MGET', false, KEYS, 8 + nb, 7 + nb + ns, markers)
local lows, nl, i = {}, 0, 0
for g = 0, nb - 1 do
  local fields, nf, low = {}, 0, 0
  for j = 1, tonumber(ARGV[groups + 2 * g + 1]) do
    i = i + 1
    if tonumber(markers[i] or '0') == (cutoffs[i] or 0) then
      fields[nf + 1] = ARGV[a]; fields[nf + 2] = ARGV[a + 1]; nf = nf + 2
      local when = tonumber(ARGV[a + 2])
      if when > 0 and (low == 0 or when < low) then low = when end
    end
    a = a + 3
  end
  if nf > 0 then each_chunk('HSET', KEYS[8 + g], fields, 1, nf) end
  if low > 0 then lows[nl + 1] = low; lows[nl + 2] = ARGV[groups + 2 * g]; nl = nl + 2 end
end
local s = 1
while s <= nl do
  local e = min(s + 1999, nl)
  redis.call('ZADD', due, 'LT', unpack(lows, s, e)); s = e + 1
end
n = tonumber(ARGV[a]); a = a + 1
local set, nset, gone, ngone = {}, 0, {}, 0
for j = 1, n do
  local bucket, when = ARGV[a], tonumber(ARGV[a + 1]); a = a + 2
  if when > 0 then
    set[nset + 1] = when; set[nset + 2] = bucket; nset = nset + 2
  else
    ngone = ngone + 1; gone[ngone] = bucket
  end
end
each_chunk('ZADD', due, set, 1, nset)
each_chunk('ZREM', due, gone, 1, ngone)
n = tonumber(ARGV[a]); a = a + 1
local k, days = 7 + nb + ns, {}
for j = 1, n do
  local m = tonumber(ARGV[a + 1])
  days[2 * j - 1] = ARGV[a]; days[2 * j] = ARGV[a]
  k = k + 1
  each_chunk('SADD', KEYS[k], ARGV, a + 2, a + 1 + m)
  a = a + 2 + m
end
each_chunk('ZADD', ddays, days, 1, 2 * n)
if ARGV[a] ~= '' then redis.call('HSET', outbox, ARGV[3], ARGV[a]) end
a = a + 1
n = tonumber(ARGV[a]); a = a + 1
each_chunk('HSET', quarantine, ARGV, a, a + 2 * n - 1)
a = a + 2 * n
if ARGV[a] == '1' then
  if ARGV[a + 1] == '' then redis.call('DEL', held) else redis.call('SET', held, ARGV[a + 1]) end
end
a = a + 2
n = tonumber(ARGV[a]); a = a + 1
for j = 1, n do
  redis.call('HINCRBY', counters, ARGV[a], ARGV[a + 1]); a = a + 2
end
return {1, ARGV[2], ARGV[3]}
"""

# Read: a batch's share of one partition in one call (a pipeline of HMGET, MGET and SMISMEMBER
# commands cost the client more to send and parse than the server to run). Only reads; the
# commands are those a pipeline would send (and the least-privilege ACL allows).
# KEYS: fence, outbox, (state bucket)*, (forget marker)*, (dedupe set)*
# ARGV: n_buckets, n_markers, n_sets, (customers of each bucket)*, customer* (bucket by
#       bucket), (digests of each set)*, digest* (set by set)
# Returns {fence HGETALL, outbox HGETALL, the HMGET replies in ARGV order, the MGET reply,
#          the SMISMEMBER replies in ARGV order}. unpack() goes in chunks: Lua's C stack is
# limited to a few thousand values. Flagged no-writes: a read-only script, so CLIENT PAUSE WRITE
# (a failover) and maxmemory's OOM refusal do not hold up reads, as they would plain commands'.
_READ_LUA = """#!lua flags=no-writes
local nb, nm, nd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function each_chunk(cmd, key, list, first, last, out)
  local s = first
  while s <= last do
    local e = math.min(s + 1999, last)
    local reply
    if key then
      reply = redis.call(cmd, key, unpack(list, s, e))
    else
      reply = redis.call(cmd, unpack(list, s, e))
    end
    local n = #out
    for i = 1, #reply do out[n + i] = reply[i] end
    s = e + 1
  end
end
local blobs, markers, seen = {}, {}, {}
local a = 4 + nb
for i = 1, nb do
  local n = tonumber(ARGV[3 + i])
  each_chunk('HMGET', KEYS[2 + i], ARGV, a, a + n - 1, blobs); a = a + n
end
local k = 2 + nb
each_chunk('MGET', false, KEYS, k + 1, k + nm, markers); k = k + nm
local counts = a
a = a + nd
for i = 1, nd do
  local n = tonumber(ARGV[counts + i - 1])
  each_chunk('SMISMEMBER', KEYS[k + i], ARGV, a, a + n - 1, seen); a = a + n
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), blobs, markers, seen}
"""

# Forget: erase the state record and leave a marker (keyed by a digest of the id, so the
# customer id itself is no longer stored) whose cutoff blocks replays of older events. The
# bucket's due bound may stay: it is only a lower bound (the sweep corrects it).
# KEYS: state bucket, marker. ARGV: customer, partition watermark. Returns {deleted, state}.
_FORGET_LUA = """
local cutoff = tonumber(ARGV[2])
local blob = redis.call('HGET', KEYS[1], ARGV[1])
local deleted = redis.call('HDEL', KEYS[1], ARGV[1])
local old = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('SET', KEYS[2], math.max(cutoff, old))
return {deleted, blob or false}
"""


class FenceConflict(RuntimeError):
    """The partition was written by someone else since it was read (we lost it)."""

    def __init__(self, message: str, partition: int = -1) -> None:
        super().__init__(message)
        self.partition = partition


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One partition's share of a batch read."""

    partition: int
    customers: Sequence[str]
    events: Sequence[tuple[str, int]]  # (event id, event ts)


@dataclass(slots=True)
class PartitionRead:
    """What a batch needs from Redis for one partition."""

    partition: int
    blobs: list[bytes | None]  # aligned with the requested customer ids
    offsets: dict[str, int]  # input topic -> last applied offset (-1 = none)
    watermark: int  # epoch s, 0 = none yet
    generation: int
    seen: list[bool]  # aligned with the requested event ids
    forgotten: list[int]  # aligned with customers: forget cutoff (epoch s), 0 = not forgotten
    outbox: dict[str, bytes] = field(default_factory=dict)  # committed, maybe unpublished


@dataclass(slots=True)
class Commit:
    """Everything one partition's batch writes, atomically."""

    partition: int
    generation: int  # the generation read; the commit fails if it changed
    offsets: dict[str, int] = field(default_factory=dict)
    watermark: int | None = None
    states: dict[str, bytes] = field(default_factory=dict)
    cutoffs: dict[str, int] = field(default_factory=dict)  # customer -> forget cutoff read
    due: dict[str, int] = field(default_factory=dict)  # customer -> due (0 = none)
    # bucket -> its exact earliest due (0 = none), from a sweep that read the whole bucket
    bucket_due: dict[int, int] = field(default_factory=dict)
    event_ids: list[tuple[str, int]] = field(default_factory=list)  # (event id, event ts)
    outbox: bytes = b""  # packed records to publish once committed (streams.outbox)
    quarantine: dict[str, bytes] = field(default_factory=dict)  # customer -> undecodable blob
    held: bytes | None = None  # the partition's held events after this commit (None: unchanged)
    counters: dict[str, int] = field(default_factory=dict)  # field -> increment (HINCRBY)
    # identifies this commit across retries: a retry after a lost reply finds its own token
    token: str = field(default_factory=lambda: secrets.token_hex(8))


class StateLayoutError(RuntimeError):
    """The partition's states were written with another bucket count than configured."""


class RedisStateStore:
    """State, fences, due index and dedupe sets in Redis (standalone or cluster)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        dedupe_retention_days: int,
        buckets: int = DEFAULT_BUCKETS,
        dedupe_shards: int = DEFAULT_DEDUPE_SHARDS,
    ) -> None:
        self._redis = client
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._prefix = prefix
        self._buckets = buckets
        self._shards = dedupe_shards
        # per partition, the forget marker keys and event digests its last read computed,
        # for the commit that follows it (both are pure functions of the ids: a stale entry
        # is as good as a fresh one, a miss is computed again)
        self._read_memo: dict[int, tuple[dict[str, str], dict[str, int]]] = {}
        self._retention_days = dedupe_retention_days
        self._read_script = client.register_script(_READ_LUA)
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._forget_script = client.register_script(_FORGET_LUA)

    @classmethod
    def from_settings(cls, client: aioredis.Redis, settings: Settings) -> RedisStateStore:
        """The store the worker uses: key prefix, bucket and shard counts, retention."""
        return cls(
            client,
            prefix=settings.redis_key_prefix,
            dedupe_retention_days=settings.dedupe_retention_days,
            buckets=settings.state_buckets,
            dedupe_shards=settings.dedupe_shards,
        )

    @property
    def prefix(self) -> str:
        """The key prefix every key of this store starts with."""
        return self._prefix

    @property
    def buckets(self) -> int:
        """State buckets per partition."""
        return self._buckets

    def keys(self, partition: int) -> PartitionKeys:
        """Key layout of ``partition``."""
        return PartitionKeys(self._prefix, partition, self._buckets)

    async def read(
        self, partition: int, customers: Sequence[str], events: Sequence[tuple[str, int]]
    ) -> PartitionRead:
        """States of ``customers``, the fence, and which (event id, ts) were applied before."""
        return (await self.read_many([ReadRequest(partition, customers, events)]))[0]

    async def read_many(self, requests: Sequence[ReadRequest]) -> list[PartitionRead]:
        """Several partitions' reads in one round trip (a pipeline of one script call each)."""
        calls = [self._read_args(req) for req in requests]
        if self._cluster:
            # cluster pipelines refuse EVALSHA: the scripts go one by one, each to the node of
            # its partition's slot (the Script loads itself there if needed). Not concurrently:
            # the read is a batch's first call, so it opens the connections, and redis-py's
            # cluster client, when one connect times out on a loaded machine, resets the
            # node's connections under the other callers' feet (AttributeError on a closed
            # writer)
            replies = [
                await self._read_script(keys=key_list, args=argv) for key_list, argv, _, _ in calls
            ]
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key_list, argv, _, _ in calls:
                    await self._read_script(keys=key_list, args=argv, client=pipe)
                replies = await pipe.execute()
        return [
            self._parse_read(req, blob_order, seen_order, reply)
            for req, (_, _, blob_order, seen_order), reply in zip(
                requests, calls, replies, strict=True
            )
        ]

    def _read_args(self, req: ReadRequest) -> tuple[list[str], list[Any], list[int], list[int]]:
        """KEYS and ARGV of the read script for ``req``, and the customer and event indices
        in the order of the script's HMGET and SMISMEMBER replies (by bucket, by set)."""
        keys = self.keys(req.partition)
        customers, shards = req.customers, self._shards
        buckets = buckets_of(customers, self._buckets)
        blob_order = sorted(range(len(customers)), key=buckets.__getitem__)
        per_bucket = Counter(buckets)
        bucket_list = sorted(per_bucket)
        event_ids = [event_id for event_id, _ in req.events]
        digests = event_digests(event_ids)
        markers = keys.forgotten_many(customers)
        self._read_memo[req.partition] = (
            dict(zip(customers, markers, strict=True)),
            dict(zip(event_ids, digests, strict=True)),
        )
        # a dedupe set as one sortable number: day * shards + shard
        sets = [
            ts // DAY * shards + digest % shards
            for (_, ts), digest in zip(req.events, digests, strict=True)
        ]
        seen_order = sorted(range(len(sets)), key=sets.__getitem__)
        per_set = Counter(sets)
        set_list = sorted(per_set)
        key_list = [keys.fence, keys.outbox]
        key_list += keys.bucket_keys(bucket_list)
        key_list += markers
        key_list += [keys.dedupe(*divmod(s, shards)) for s in set_list]
        argv: list[Any] = [len(bucket_list), len(customers), len(set_list)]
        argv += [per_bucket[b] for b in bucket_list]
        argv += map(customers.__getitem__, blob_order)
        argv += [per_set[s] for s in set_list]
        argv += map(digests.__getitem__, seen_order)
        return key_list, argv, blob_order, seen_order

    def _parse_read(
        self, req: ReadRequest, blob_order: list[int], seen_order: list[int], reply: Any
    ) -> PartitionRead:
        fence_flat, outbox_flat, blob_replies, markers, hits = reply
        fence: dict[bytes, bytes] = dict(zip(fence_flat[::2], fence_flat[1::2], strict=True))
        self._check_layout(req.partition, fence.get(b"nb"))
        blobs: list[bytes | None] = [None] * len(req.customers)
        for i, blob in zip(blob_order, blob_replies, strict=True):
            blobs[i] = blob
        seen = [False] * len(req.events)
        for i, hit in zip(seen_order, hits, strict=True):
            seen[i] = bool(hit)
        offsets = {
            k.decode(): int(v) for k, v in fence.items() if k not in (b"wm", b"gen", b"tok", b"nb")
        }
        return PartitionRead(
            partition=req.partition,
            blobs=blobs,
            offsets=offsets,
            watermark=int(fence.get(b"wm", 0)),
            generation=int(fence.get(b"gen", 0)),
            seen=seen,
            forgotten=[int(m) if m is not None else 0 for m in markers],
            outbox={
                reply_text(token): blob
                for token, blob in zip(outbox_flat[::2], outbox_flat[1::2], strict=True)
            },
        )

    def _check_layout(self, partition: int, written_with: bytes | None) -> None:
        if written_with is not None and int(written_with) != self._buckets:
            raise StateLayoutError(
                f"partition {partition} was written with {int(written_with)} state buckets, "
                f"this worker is configured with {self._buckets} (CUSTSCORE_STATE_BUCKETS): "
                "run with the same value, or move the states with custscore.repartition"
            )

    def _commit_args(self, commit: Commit) -> tuple[list[str], list[Any]]:
        keys = self.keys(commit.partition)
        known_markers, known_digests = self._read_memo.pop(commit.partition, ({}, {}))
        fence_fields: list[Any] = []
        for topic, offset in commit.offsets.items():
            fence_fields += (topic, offset)
        if commit.watermark is not None:
            fence_fields += ("wm", commit.watermark)
        key_list = [
            keys.fence,
            keys.due,
            keys.dedupe_days,
            keys.outbox,
            keys.quarantine,
            keys.held,
            keys.counters,
        ]
        argv: list[Any] = [
            commit.generation,
            commit.generation + 1,
            commit.token,
            self._buckets,
            len(fence_fields) // 2,
        ]
        argv += fence_fields
        # states bucket by bucket: the bucket keys, each state's marker, and (bucket, count)*,
        # the cutoffs read that are not 0 (almost never any) by position, then
        # (customer, value, due)* in that order
        states = commit.states
        customers = list(states)
        buckets = buckets_of(customers, self._buckets)
        order = sorted(range(len(customers)), key=buckets.__getitem__)
        per_bucket = Counter(buckets)
        bucket_list = sorted(per_bucket)
        key_list += keys.bucket_keys(bucket_list)
        markers = _memoised(customers, known_markers, keys.forgotten_many)
        key_list += map(markers.__getitem__, order)
        ordered = list(map(customers.__getitem__, order))
        cutoffs = commit.cutoffs
        read_cutoffs = (
            [(i, cutoffs[c]) for i, c in enumerate(ordered, 1) if cutoffs.get(c)] if cutoffs else []
        )
        argv += (len(bucket_list), len(customers), len(read_cutoffs))
        argv += chain.from_iterable((b, per_bucket[b]) for b in bucket_list)
        argv += chain.from_iterable(read_cutoffs)
        values = list(states.values())
        argv += chain.from_iterable(
            zip(
                ordered,
                map(values.__getitem__, order),
                map(commit.due.get, ordered, repeat(0)),
                strict=True,
            )
        )
        argv.append(len(commit.bucket_due))
        for bucket, when in commit.bucket_due.items():
            argv += (bucket, when)
        by_set: dict[tuple[int, int], list[int]] = {}
        shards = self._shards
        for (_, ts), digest in zip(
            commit.event_ids,
            _memoised([event_id for event_id, _ in commit.event_ids], known_digests, event_digests),
            strict=True,
        ):
            where = (ts // DAY, digest % shards)
            digests = by_set.get(where)
            if digests is None:
                by_set[where] = [digest]
            else:
                digests.append(digest)
        argv.append(len(by_set))
        for (day, shard), digests in by_set.items():
            key_list.append(keys.dedupe(day, shard))
            argv += (day, len(digests))
            argv += digests
        argv.append(commit.outbox)
        argv.append(len(commit.quarantine))
        for customer, blob in commit.quarantine.items():
            argv += (customer, blob)
        argv += ("0", "") if commit.held is None else ("1", commit.held)
        counters = [(name, n) for name, n in commit.counters.items() if n]
        argv.append(len(counters))
        for name, n in counters:
            argv += (name, n)
        return key_list, argv

    async def commit(self, commit: Commit) -> int:
        """Write one partition's batch atomically; returns the new generation.

        Raises FenceConflict if the partition's generation moved since it was read.
        """
        refused = await self.commit_many([commit])
        if refused:
            raise refused[0]
        return commit.generation + 1

    async def commit_many(self, commits: Sequence[Commit]) -> list[FenceConflict]:
        """Each partition's commit atomically, all in one round trip; the refused ones.

        Every commit carries a random token that the script stores with the generation, so
        a commit retried after a lost reply recognises its own earlier success instead of
        taking it for another worker's write.
        """
        if self._cluster:
            # cluster pipelines refuse EVALSHA: the scripts go out concurrently instead, each
            # to the node of its partition's slot (the Script loads itself there if needed)
            replies = await asyncio.gather(
                *(
                    self._commit_script(keys=key_list, args=argv)
                    for key_list, argv in map(self._commit_args, commits)
                )
            )
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for commit in commits:
                    key_list, argv = self._commit_args(commit)
                    await self._commit_script(keys=key_list, args=argv, client=pipe)
                replies = await pipe.execute()
        refused = []
        for commit, (ok, gen, current) in zip(commits, replies, strict=True):
            if int(ok) != 1 and reply_text(current) != commit.token:
                refused.append(
                    FenceConflict(
                        f"partition {commit.partition}: generation {int(gen)} != "
                        f"{commit.generation} read",
                        commit.partition,
                    )
                )
        return refused

    async def held(self, partition: int) -> tuple[bytes, int]:
        """The partition's events held back by the event-time merge (packed; b"" = none) and
        the partition's generation they belong to, read atomically."""
        keys = self.keys(partition)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.held)
            pipe.hget(keys.fence, "gen")
            blob, gen = await pipe.execute()
        return (_raw(blob) if blob else b""), int(gen or 0)

    async def pending_outbox(self, partition: int) -> dict[str, bytes]:
        """Outbox entries of ``partition`` (token -> packed records) not yet acknowledged."""
        entries = await self._redis.hgetall(self.keys(partition).outbox)
        return {reply_text(token): _raw(blob) for token, blob in entries.items()}

    async def ack_outbox(self, acks: Sequence[tuple[int, str]]) -> None:
        """Drop published outbox entries, given as (partition, token), in one round trip."""
        if not acks:
            return
        by_partition: dict[int, list[str]] = {}
        for partition, token in acks:
            by_partition.setdefault(partition, []).append(token)
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition, tokens in by_partition.items():
                pipe.hdel(self.keys(partition).outbox, *tokens)
            await pipe.execute()

    async def forget(self, partition: int, customer_id: str) -> tuple[bool, bytes | None]:
        """Erase a customer's state record and block replays of their past events.

        Returns (state deleted, the erased state blob or None).
        """
        keys = self.keys(partition)
        watermark, _ = await self.fence(partition)
        bucket_key, _ = keys.state(customer_id)
        deleted, blob = await self._forget_script(
            keys=[bucket_key, keys.forgotten(customer_id)], args=[customer_id, watermark]
        )
        return bool(deleted), blob if isinstance(blob, bytes) else None

    async def due_buckets(self, partition: int, until: int, limit: int) -> list[int]:
        """Buckets of ``partition`` that may hold a customer due at or before ``until``."""
        members = await self._redis.zrangebyscore(
            self.keys(partition).due, "-inf", until, start=0, num=limit
        )
        return [int(reply_text(m)) for m in members]

    async def read_buckets(
        self, partition: int, buckets: Sequence[int]
    ) -> tuple[int, list[list[tuple[str, bytes]]]]:
        """(generation, every (customer, state blob) of each bucket), in one round trip."""
        keys = self.keys(partition)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.fence, ["gen", "nb"])
            for bucket in buckets:
                pipe.hgetall(keys.bucket(bucket))
            replies = await pipe.execute()
        (gen, nb), contents = replies[0], replies[1:]
        self._check_layout(partition, nb)
        return int(gen or 0), [
            [(reply_text(customer), blob) for customer, blob in content.items()]
            for content in contents
        ]

    async def fence(self, partition: int) -> tuple[int, int]:
        """(watermark, generation) of ``partition``."""
        wm, gen = await self._redis.hmget(self.keys(partition).fence, ["wm", "gen"])
        return int(wm or 0), int(gen or 0)

    async def due_size(self, partition: int) -> int:
        """Buckets of ``partition`` with an entry in the due index."""
        return int(await self._redis.zcard(self.keys(partition).due))

    async def expire_dedupe(self, partition: int, watermark: int) -> int:
        """Drop dedupe sets of event days older than the retention; how many days went."""
        keys = self.keys(partition)
        oldest_kept = watermark // DAY - self._retention_days
        days = await self._redis.zrangebyscore(keys.dedupe_days, "-inf", f"({oldest_kept}")
        if not days:
            return 0
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(
                *[keys.dedupe(int(reply_text(d)), s) for d in days for s in range(self._shards)]
            )
            pipe.zrem(keys.dedupe_days, *days)
            await pipe.execute()
        return len(days)

    async def scan_states(self, partition: int, count: int = 1000) -> Iterable[tuple[str, bytes]]:
        """Every (customer id, state blob) of ``partition`` (SCAN + HGETALL, no KEYS)."""
        keys = self.keys(partition)
        out: list[tuple[str, bytes]] = []
        async for batch in _chunks(
            self._redis.scan_iter(match=keys.bucket_pattern, count=count), 64
        ):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.hgetall(key)
                contents = await pipe.execute()
            for content in contents:
                out.extend((reply_text(customer), blob) for customer, blob in content.items())
        return out


def _memoised(
    ids: list[str], known: dict[str, _V], compute: Callable[[list[str]], list[_V]]
) -> list[_V]:
    """``compute(ids)``, from ``known`` when it has every id."""
    found = list(map(known.get, ids))
    return compute(ids) if None in found else found  # type: ignore[return-value]


def _raw(reply: bytes | str) -> bytes:
    """A Redis reply item as bytes."""
    return reply if isinstance(reply, bytes) else reply.encode()


async def _chunks(source: Any, size: int) -> Any:
    chunk: list[bytes] = []
    async for item in source:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
