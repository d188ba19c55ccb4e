"""``custscore migrate [--dry-run]``: rewrite stored state records of an older layout version.

Scans every state record of every partition (SCAN + HGETALL, never KEYS, as ``export`` does),
decodes them with :func:`engine.state.decode_records` and writes back, as the current layout
(``engine.state.STATE_VERSION``), only the records it upgraded. Current records are left
alone; a record that cannot be decoded (unknown version, wrong size) is listed by customer id
and partition and left unchanged. Only the state bucket hashes are written: no fence,
due-index, dedupe or population key is touched.

Each partition's upgrades go out in one pipeline of compare-and-set script calls: a record is
replaced only if it still holds the bytes that were read. A record a worker rewrote (workers
upgrade records on read) or ``forget`` erased in the meantime is skipped and counted, never
overwritten, so migrating while workers run cannot lose an event or bring back a forgotten
customer. Running it twice is harmless: the second run finds only current records.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from custscore.errors import CliError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from config.settings import Settings

__all__ = ["MigrateResult", "migrate_states", "register"]

_CHUNK = 1000  # records per compare-and-set script call

# KEYS: state bucket per record. ARGV: (customer, blob read, new blob)*.
# Replaces each record only if it still holds the blob read; returns the 1-based positions
# of the records it left alone (changed or erased since they were read).
_UPGRADE_LUA = """
local skipped = {}
for i = 1, #KEYS do
  local a = 3 * (i - 1)
  if redis.call('HGET', KEYS[i], ARGV[a + 1]) == ARGV[a + 2] then
    redis.call('HSET', KEYS[i], ARGV[a + 1], ARGV[a + 3])
  else
    skipped[#skipped + 1] = i
  end
end
return skipped
"""


@dataclass
class MigrateResult:
    """What a migration found and did."""

    partitions: int
    dry_run: bool
    upgraded: int = 0  # older records rewritten as current (dry run: that would be)
    current: int = 0  # records already of the current layout, left alone
    changed: int = 0  # older records rewritten by someone else since read: left alone
    corrupt: list[tuple[str, int, str]] = field(default_factory=list)  # customer, partition, why

    def summary(self) -> str:
        """The last line of the report."""
        from engine.state import STATE_VERSION

        verb = "would upgrade" if self.dry_run else "upgraded"
        line = (
            f"{verb} {self.upgraded:,} state records to layout version {STATE_VERSION}; "
            f"{self.current:,} current; {len(self.corrupt):,} corrupt (left unchanged) "
            f"in {self.partitions} partitions"
        )
        if self.changed:
            line += f"; {self.changed:,} changed while migrating (left to the worker)"
        return line + (" (dry run: nothing written)" if self.dry_run else "")


async def migrate_states(settings: Settings, *, dry_run: bool = False) -> MigrateResult:
    """Upgrade every stored state record of an older layout in place (see module docstring)."""
    from redis.exceptions import RedisError

    from custscore.clients import open_redis, state_store
    from engine.state import decode_records, encode_state

    result = MigrateResult(settings.partitions, dry_run)
    async with open_redis(settings) as client:
        store = state_store(client, settings)
        script = client.register_script(_UPGRADE_LUA)
        try:
            for partition in range(settings.partitions):
                keys = store.keys(partition)
                await _check_layout(client, keys.fence, partition, store.buckets)
                pairs = list(await store.scan_states(partition))
                decoded = decode_records([blob for _, blob in pairs])
                bad = {i for i, _ in decoded.corrupt}
                result.corrupt += [(pairs[i][0], partition, why) for i, why in decoded.corrupt]
                result.current += len(pairs) - len(decoded.upgraded) - len(bad)
                writes = [
                    (*keys.state(pairs[i][0]), pairs[i][1], encode_state(decoded.states, i))
                    for i in decoded.upgraded
                ]
                if dry_run or not writes:
                    result.upgraded += len(writes)
                    continue
                skipped = await _write(client, script, writes)
                result.changed += skipped
                result.upgraded += len(writes) - skipped
        except RedisError as exc:
            raise CliError(
                f"Redis error at {settings.redis_address} while migrating: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    result.corrupt.sort(key=lambda c: (c[1], c[0]))
    return result


async def _check_layout(client: aioredis.Redis, fence: str, partition: int, buckets: int) -> None:
    """A partition written with another bucket count than configured is a usage error."""
    written_with = await client.hget(fence, "nb")
    if written_with is not None and int(written_with) != buckets:
        raise CliError(
            f"partition {partition} was written with {int(written_with)} state buckets, these "
            f"settings have {buckets} (CUSTSCORE_STATE_BUCKETS): run with the same value"
        )


async def _write(
    client: aioredis.Redis, script: Any, writes: list[tuple[str, str, bytes, bytes]]
) -> int:
    """One partition's upgrades as compare-and-set calls in one pipeline; how many were skipped."""
    import redis.asyncio as aioredis

    calls: list[tuple[list[str], list[Any]]] = []
    for start in range(0, len(writes), _CHUNK):
        chunk = writes[start : start + _CHUNK]
        argv: list[Any] = []
        for _, customer, old, new in chunk:
            argv += [customer, old, new]
        calls.append(([bucket for bucket, _, _, _ in chunk], argv))
    cluster = isinstance(client, aioredis.RedisCluster)
    if cluster:
        # cluster pipelines refuse EVALSHA (as in RedisStateStore.commit_many): the calls go to
        # the partition's node concurrently instead; all their keys share the partition's slot
        replies = await asyncio.gather(*(script(keys=k, args=a) for k, a in calls))
    else:
        async with client.pipeline(transaction=False) as pipe:
            for k, a in calls:
                await script(keys=k, args=a, client=pipe)
            replies = await pipe.execute()
    return sum(len(skipped) for skipped in replies)


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``custscore migrate``."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="count what would be upgraded, current and corrupt without writing anything",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    result = asyncio.run(migrate_states(settings, dry_run=args.dry_run))
    for customer, partition, why in result.corrupt:
        print(f"corrupt: customer {customer!r} partition {partition}: {why}")
    print(result.summary())
    return 0
