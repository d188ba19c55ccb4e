"""Redis memory per customer at scale (``custscore bench memory --customers 1000000``).

Driving a million customers through a worker takes as long as the worker needs for all their
events, so this fills Redis *without Kafka*, through the worker's own store code: the
generated stream (loadtest.generate) is folded with the engine's kernels and written with
``RedisStateStore.commit`` (the same Lua script, keys and encodings the worker writes: packed
state records, the due index, event-id dedupe sets by day, fences). The benchmark's drain phase
measures the same quantities on the worker path at a smaller scale, which checks that the two
agree.

It then writes the same records (state and due time) in alternative layouts, to show what each
would cost, state and due index only:

* ``strings``: one ``SET`` key per customer and one due-index member per customer (the layout
  custscore used before the state hashes);
* ``hash-defaults``: custscore's state hashes on a server left at Valkey's default listpack
  limits (records over 64 bytes make every bucket a hash table).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from config.settings import load_settings
from custscore.processes import free_port
from custscore.stack import EmbeddedStack
from engine.kernels import apply_events
from engine.scoring import PopulationCuts, evaluate
from engine.segments import DEFAULT_RFM_MAP
from engine.state import EVENT_DTYPE, MAX_TS, new_states
from loadtest.generate import GenerationStats, StreamSpec, customer_id, generate
from loadtest.redis_memory import breakdown
from models.params_file import default_params
from streams.keys import DEFAULT_BUCKETS, bucket_of, partition_for
from streams.redis_conn import redis_client
from streams.store import Commit, RedisStateStore

__all__ = ["run_memory"]


def _say(text: str) -> None:
    print(text, flush=True)


async def _fill(settings: Any, spec: Any, say: Any) -> dict[str, Any]:
    """Fold the stream and commit it through the store; returns counts and timings."""

    params = default_params().scoring
    n = spec.customers
    ids = [customer_id(spec, i) for i in range(n)]
    part = np.fromiter((partition_for(c, settings.partitions) for c in ids), np.int16, n)
    states = new_states(n)
    client = redis_client(settings)
    store = RedisStateStore.from_settings(client, settings)
    stats = GenerationStats()
    began = time.perf_counter()
    seq_offset = 0
    watermark = 0
    # event-id digests go in with their slice: the worker writes them batch by batch too
    for sl in generate(spec, stats):
        ev = np.zeros(len(sl), dtype=EVENT_DTYPE)
        ev["row"] = sl.customer
        ev["kind"] = sl.kind
        ev["severity"] = sl.severity
        ev["ts"] = sl.ts_ms // 1000
        ev["cents"] = sl.cents
        apply_events(states, ev, params.complaint_halflife_days)
        watermark = int(ev["ts"][-1])
        ts = (sl.ts_ms // 1000).tolist()
        parts = part[sl.customer].tolist()
        by_part: dict[int, list[tuple[str, int]]] = {}
        for k, (p, t) in enumerate(zip(parts, ts, strict=True)):
            by_part.setdefault(p, []).append((f"g{spec.seed}-{sl.first_seq + k}", t))
        for p, events in by_part.items():
            _, gen = await store.fence(p)
            seq_offset += len(events)
            await store.commit(
                Commit(
                    partition=p,
                    generation=gen,
                    offsets={"bench": seq_offset},
                    watermark=watermark,
                    event_ids=events,
                )
            )
    fold_s = time.perf_counter() - began
    say(
        f"memory    folded and deduped {stats.events:,} events of {n:,} customers in {fold_s:.0f} s"
    )
    cuts = PopulationCuts.from_params(params)
    scores = evaluate(states, watermark, params, cuts, DEFAULT_RFM_MAP)
    due = np.clip(scores["due"], 0, MAX_TS).astype(np.int64)
    states["due"] = due
    t0 = time.perf_counter()
    order = np.argsort(part, kind="stable")
    chunk = 2000
    for p in range(settings.partitions):
        rows = order[part[order] == p]
        for i in range(0, rows.shape[0], chunk):
            sel = rows[i : i + chunk].tolist()
            _, gen = await store.fence(p)
            await store.commit(
                Commit(
                    partition=p,
                    generation=gen,
                    watermark=watermark,
                    states={ids[r]: states[r : r + 1].tobytes() for r in sel},
                    due={ids[r]: int(due[r]) for r in sel},
                )
            )
    write_s = time.perf_counter() - t0
    say(f"memory    wrote {n:,} states through RedisStateStore.commit in {write_s:.0f} s")
    await client.aclose()
    return {
        "events": stats.events,
        "purchases": stats.purchases,
        "visits": stats.visits,
        "complaints": stats.complaints,
        "fold_and_dedupe_s": fold_s,
        "state_write_s": write_s,
        "ids": ids,
        "states": states,
    }


def _layout_alternative(
    r: Any, ids: list[str], states: Any, partitions: int, kind: str
) -> dict[str, Any]:
    """Bytes per customer of the same records (and due times) in another layout."""

    original = r.config_get("hash-max-listpack-*")
    if kind == "hash-defaults":  # a server without custscore's listpack settings
        r.config_set("hash-max-listpack-value", 64)
        r.config_set("hash-max-listpack-entries", 128)
    n = len(ids)
    before = int(r.info("memory")["used_memory"])
    pipe = r.pipeline(transaction=False)
    record = states.dtype.itemsize
    raw = states.tobytes()
    dues = states["due"].tolist()
    for i, c in enumerate(ids):
        p = partition_for(c, partitions)
        blob = raw[i * record : (i + 1) * record]
        if kind == "strings":  # one key per customer and a due-index member per customer
            pipe.set(f"s:{{p{p}}}:s:{c}", blob)
            if dues[i] > 0:
                pipe.zadd(f"s:{{p{p}}}:due", {c: dues[i]})
        else:
            bucket = bucket_of(c, DEFAULT_BUCKETS)
            pipe.hset(f"h:{{p{p}}}:b:{bucket}", c, blob)
            if dues[i] > 0:
                pipe.zadd(f"h:{{p{p}}}:due", {str(bucket): dues[i]}, lt=True)
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    after = int(r.info("memory")["used_memory"])
    first = ids[0]
    p0 = partition_for(first, partitions)
    probe = (
        f"s:{{p{p0}}}:s:{first}"
        if kind == "strings"
        else f"h:{{p{p0}}}:b:{bucket_of(first, DEFAULT_BUCKETS)}"
    )
    encoding = r.object("encoding", probe)
    for key, value in original.items():
        r.config_set(key, value)
    r.execute_command("FLUSHDB", "SYNC")
    return {
        "bytes_per_customer": (after - before) / n,
        "vs_record": (after - before) / n / record,
        "encoding": encoding.decode() if isinstance(encoding, bytes) else str(encoding),
    }


def run_memory(
    customers: int, visit_rate: float, partitions: int, out: Path, seed: int = 5
) -> dict[str, Any]:
    """Fill an embedded Valkey with ``customers`` customers; measure; write ``out`` (JSON)."""

    run_dir = Path(tempfile.mkdtemp(prefix="custscore-memory-"))
    broker_port, redis_port = free_port(), free_port()
    stack = EmbeddedStack(
        run_dir,
        broker_port=broker_port,
        redis_port=redis_port,
        tie_to_parent=True,
        start_timeout_s=30.0,
    )
    stack.start()
    try:
        settings = load_settings(
            environ={},
            broker_port=broker_port,
            redis_port=redis_port,
            partitions=partitions,
            redis_key_prefix="cs",
        )
        spec = StreamSpec.from_params(default_params(), customers, seed=seed, visit_rate=visit_rate)
        r = redis.Redis.from_url(settings.redis_address, socket_timeout=600)
        before = int(r.info("memory")["used_memory"])
        filled = asyncio.run(_fill(settings, spec, _say))
        after = int(r.info("memory")["used_memory"])
        ids, states = filled.pop("ids"), filled.pop("states")
        layout = breakdown(r, "cs", partitions, ids, settings.dedupe_shards)
        layout["used_memory_delta"] = after - before
        layout["used_delta_per_customer"] = (after - before) / customers
        layout["used_delta_vs_record"] = (after - before) / customers / states.dtype.itemsize
        _say(
            f"memory    custscore layout: state hashes {layout['state_key_bytes']:.0f} B "
            f"({layout['state_vs_record']:.2f}x the {layout['record_bytes']} B record), "
            f"due {layout['due_bytes_per_customer']:.0f} B, dedupe "
            f"{layout['dedupe_bytes_per_customer']:.0f} B per customer; INFO delta "
            f"{layout['used_delta_per_customer']:.0f} B per customer"
        )
        alternatives = {}
        # in database 1, so the custscore layout in database 0 stays as measured
        alt = redis.Redis.from_url(settings.redis_address, db=1, socket_timeout=600)
        for kind, name in (
            ("strings", "one string key + due member per customer (the layout before)"),
            ("hash-defaults", "state hashes on a server with default listpack limits"),
        ):
            alternatives[name] = _layout_alternative(alt, ids, states, partitions, kind)
            _say(
                f"memory    {name}: {alternatives[name]['bytes_per_customer']:.0f} B per "
                f"customer ({alternatives[name]['vs_record']:.2f}x), "
                f"{alternatives[name]['encoding']}"
            )
        server = r.info("server")
        doc = {
            "customers": customers,
            "partitions": partitions,
            "spec": {"visit_rate": visit_rate, "seed": seed},
            "fill": filled,
            "custscore_layout": layout,
            "alternatives": alternatives,
            "server": {k: server.get(k) for k in ("redis_version", "valkey_version")},
            "allocator": r.info("memory").get("mem_allocator"),
        }
        r.close()
        alt.close()
    finally:
        stack.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    _say(f"memory    results in {out}")
    return doc
