"""Redis memory per customer: what custscore's key layout costs, measured two ways.

* ``MEMORY USAGE`` (exact, ``SAMPLES 0``) of every state hash (bucket), of every
  partition's due index and of every dedupe set, divided by the customers;
* the ``INFO memory`` ``used_memory`` delta over the run, divided by the customers (this
  includes everything the run wrote: states, due index, dedupe sets, fences, sketches, and the
  allocator's rounding).

Both are compared with the packed record size (``engine.state.STATE_DTYPE.itemsize``).
"""

from __future__ import annotations

import random
from typing import Any

import redis

from config.settings import Settings
from engine.state import STATE_DTYPE
from streams.keys import PartitionKeys

__all__ = ["breakdown", "client", "measure_run", "used_memory"]


def client(settings: Settings) -> redis.Redis:
    """A synchronous client of the settings' Redis."""

    return redis.Redis.from_url(settings.redis_address)


def used_memory(settings: Settings) -> int:
    """``INFO memory`` used_memory in bytes."""
    with client(settings) as r:
        return int(r.info("memory")["used_memory"])


def _usage(r: redis.Redis, keys: list[str]) -> list[int]:
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.execute_command("MEMORY", "USAGE", k, "SAMPLES", "0")  # type: ignore[no-untyped-call]
    return [int(v) for v in pipe.execute() if v is not None]


def breakdown(
    r: redis.Redis,
    prefix: str,
    partitions: int,
    customer_ids: list[str],
    dedupe_shards: int,
) -> dict[str, Any]:
    """Bytes per customer of custscore's layout under ``prefix`` (see the module doc)."""

    n = len(customer_ids)
    bucket_keys = [
        k.decode() if isinstance(k, bytes) else str(k)
        for p in range(partitions)
        for k in r.scan_iter(match=PartitionKeys(prefix, p).bucket_pattern, count=1000)
    ]
    state = _usage(r, bucket_keys)
    due_bytes = due_members = dedupe_bytes = dedupe_members = dedupe_keys = other = 0
    for p in range(partitions):
        keys = PartitionKeys(prefix, p)
        due = _usage(r, [keys.due])
        due_bytes += sum(due)
        due_members += int(r.zcard(keys.due))
        days = [int(d) for d in r.zrange(keys.dedupe_days, 0, -1)]  # type: ignore[arg-type]
        dd_keys = [keys.dedupe(d, s) for d in days for s in range(dedupe_shards)]
        dedupe_bytes += sum(_usage(r, dd_keys))
        dedupe_keys += len(dd_keys)
        pipe = r.pipeline(transaction=False)
        for k in dd_keys:
            pipe.scard(k)
        dedupe_members += sum(int(x) for x in pipe.execute())
        other += sum(_usage(r, [keys.fence, keys.dedupe_days, keys.population]))
    record = STATE_DTYPE.itemsize
    state_mean = sum(state) / max(n, 1)  # per customer
    per_customer_layout = state_mean + (due_bytes + dedupe_bytes + other) / max(n, 1)
    return {
        "customers": n,
        "record_bytes": record,
        "state_hashes": len(state),
        "state_key_bytes": state_mean,
        "due_bytes_per_customer": due_bytes / max(n, 1),
        "due_members": due_members,
        "dedupe_bytes_per_customer": dedupe_bytes / max(n, 1),
        "dedupe_members": dedupe_members,
        "dedupe_keys": dedupe_keys,
        "dedupe_bytes_per_event_id": dedupe_bytes / max(dedupe_members, 1),
        "other_bytes_per_customer": other / max(n, 1),
        "layout_bytes_per_customer": per_customer_layout,
        "state_vs_record": state_mean / record,
        "state_and_due_vs_record": (state_mean + due_bytes / max(n, 1)) / record,
        "layout_vs_record": per_customer_layout / record,
    }


def measure_run(
    settings: Settings, system: str, customer_ids: list[str], used_before: int
) -> dict[str, Any]:
    """Memory of one drained run: INFO delta per customer and (custscore) the breakdown."""

    with client(settings) as r:
        used_after = int(r.info("memory")["used_memory"])
        n = len(customer_ids)
        delta = used_after - used_before
        out: dict[str, Any] = {
            "customers": n,
            "used_memory_delta": delta,
            "used_delta_per_customer": delta / max(n, 1),
            "record_bytes": STATE_DTYPE.itemsize,
        }
        if system == "custscore":
            out.update(
                breakdown(
                    r,
                    settings.redis_key_prefix,
                    settings.partitions,
                    customer_ids,
                    settings.dedupe_shards,
                )
            )
            out["used_delta_vs_record"] = out["used_delta_per_customer"] / STATE_DTYPE.itemsize
        elif system == "naive":
            rng = random.Random(1)
            picked = rng.sample(customer_ids, min(2000, n))
            usage = _usage(r, [f"{settings.redis_key_prefix}:naive:{c}" for c in picked])
            out["state_key_bytes"] = sum(usage) / len(usage) if usage else 0.0
    return out
