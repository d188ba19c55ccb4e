"""Copy every customer's state to a new partition count under a new key prefix.

A customer's partition is ``murmur2(customer_id) % partitions`` and is part of each of its
keys (``<prefix>:{p<n>}:...``), so a new partition count moves most customers to other
keys. This copies, from the layout of the current settings (``redis_key_prefix``,
``partitions``) to ``--to-prefix`` / ``--to-partitions``:

* every state record, to the customer's new partition;
* every due-index entry, with its due time;
* every forget marker, into every new partition (a marker is named by a digest of the id, so
  its new partition cannot be computed; markers are few);
* a fence per new partition holding the largest old watermark, generation 0 and no input
  offsets (the new topics start empty);
* the marketing loop's counters (contacts, outcomes, complaints by category), summed over the
  old partitions into new partition 0 (readers sum every partition's hash).

De-duplication sets and population sketches are not copied (docs/operations.md, section 6,
says why). The old keys are left untouched, for a rollback. Run it while no worker runs::

    CUSTSCORE_PARTITIONS=8 CUSTSCORE_REDIS_KEY_PREFIX=cs \\
        python -m custscore.repartition --to-prefix cs2 --to-partitions 24

Works on standalone Redis and on Redis / Valkey Cluster (``CUSTSCORE_REDIS_CLUSTER``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from custscore.errors import CliError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from config.settings import Settings

__all__ = ["RepartitionResult", "main", "repartition"]

_CHUNK = 1000


@dataclass
class RepartitionResult:
    """What was copied."""

    states: int = 0
    due_entries: int = 0
    forget_markers: int = 0
    counters: int = 0  # counter fields carried over
    watermark: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)  # new partition -> states

    def summary(self, to_prefix: str, to_partitions: int) -> str:
        return (
            f"copied {self.states:,} state records and {self.due_entries:,} due entries into "
            f"{to_partitions} partitions under prefix {to_prefix!r}; "
            f"{self.forget_markers} forget markers copied to every partition; "
            f"fences set to watermark {self.watermark}; {self.counters} counter fields carried over"
        )


async def _scan_any(client: aioredis.Redis, pattern: str) -> bool:
    async for _ in client.scan_iter(match=pattern, count=1000):
        return True
    return False


async def repartition(settings: Settings, to_prefix: str, to_partitions: int) -> RepartitionResult:
    """Copy the state of ``settings``' layout to ``to_prefix`` with ``to_partitions``."""
    from custscore.clients import open_redis, state_store
    from engine.state import decode_states
    from streams.contact_counters import read_counters
    from streams.keys import PartitionKeys, bucket_of, partition_for

    if to_partitions < 1:
        raise CliError(f"--to-partitions must be >= 1, not {to_partitions}")
    if to_prefix == settings.redis_key_prefix:
        raise CliError("--to-prefix must differ from the current key prefix")
    result = RepartitionResult()
    async with open_redis(settings) as client:
        if await _scan_any(client, f"{to_prefix}:*"):
            raise CliError(f"keys with prefix {to_prefix!r} exist already: choose a new prefix")
        store = state_store(client, settings)
        markers: dict[str, int] = {}  # marker key suffix (fg:<digest>) -> cutoff
        for old in range(settings.partitions):
            keys = store.keys(old)
            watermark, _ = await store.fence(old)
            result.watermark = max(result.watermark, watermark)
            pairs = list(await store.scan_states(old))
            for start in range(0, len(pairs), _CHUNK):
                chunk = pairs[start : start + _CHUNK]
                dues = decode_states([blob for _, blob in chunk])["due"].tolist()
                async with client.pipeline(transaction=False) as pipe:
                    for (customer, blob), due in zip(chunk, dues, strict=True):
                        new = PartitionKeys(
                            to_prefix, partition_for(customer, to_partitions), store.buckets
                        )
                        bucket_key, field = new.state(customer)
                        pipe.hset(bucket_key, field, blob)
                        if due > 0:
                            bucket = bucket_of(customer, store.buckets)
                            pipe.zadd(new.due, {str(bucket): due}, lt=True)
                            result.due_entries += 1
                        result.per_partition[new.partition] = (
                            result.per_partition.get(new.partition, 0) + 1
                        )
                    await pipe.execute()
                result.states += len(chunk)
            fg_keys = [k async for k in client.scan_iter(match=f"{keys.tag}:fg:*", count=1000)]
            for key in fg_keys:
                name = key.decode() if isinstance(key, bytes) else str(key)
                value = await client.get(name)
                suffix = name[len(keys.tag) + 1 :]
                markers[suffix] = max(markers.get(suffix, 0), int(value or 0))
        for new_partition in range(to_partitions):
            new = PartitionKeys(to_prefix, new_partition)
            async with client.pipeline(transaction=False) as pipe:
                pipe.hset(new.fence, mapping={"wm": result.watermark, "gen": 0})
                for suffix, cutoff in markers.items():
                    pipe.set(f"{new.tag}:{suffix}", cutoff)
                await pipe.execute()
        result.forget_markers = len(markers)
        counters = await read_counters(client, settings.redis_key_prefix)
        if counters:
            target = PartitionKeys(to_prefix, 0).counters
            async with client.pipeline(transaction=False) as pipe:
                for name, count in counters.items():
                    pipe.hincrby(target, name, count)
                await pipe.execute()
        result.counters = len(counters)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m custscore.repartition --to-prefix P --to-partitions N``."""
    from config.settings import SettingsError, load_settings

    parser = argparse.ArgumentParser(
        prog="python -m custscore.repartition",
        description="Copy the state to a new partition count under a new key prefix "
        "(docs/operations.md, section 6). Source: the current settings.",
    )
    parser.add_argument("--to-prefix", required=True)
    parser.add_argument("--to-partitions", required=True, type=int)
    parser.add_argument("--config", help="settings TOML file (default: $CUSTSCORE_CONFIG)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        result = asyncio.run(repartition(settings, args.to_prefix, args.to_partitions))
    except (CliError, SettingsError) as exc:
        print(f"custscore repartition: {exc}", file=sys.stderr)
        return 1
    print(result.summary(args.to_prefix, args.to_partitions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
