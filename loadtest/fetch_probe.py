"""How long the broker holds a consumer's fetch: plain aiokafka latency by ``fetch_max_wait_ms``.

Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` (hard-coded in
faust/transport/drivers/aiokafka.py). Apache Kafka answers a waiting fetch as soon as
``fetch.min.bytes`` (1) arrived; a broker that keeps it until the wait ends adds up to that wait
to every event's latency, whatever the worker does. This probe produces ``rate`` small records
per second round-robin over 8 partitions and consumes them with a bare ``AIOKafkaConsumer``
(no group), once per wait setting, and reports consume-time minus record-timestamp
percentiles (the first fifth of each trial is dropped as warm-up).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.admin import create_topics

__all__ = ["probe"]


async def _trial(
    bootstrap: str, topic: str, wait_ms: int, rate: float, seconds: float
) -> dict[str, Any]:

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        fetch_max_wait_ms=wait_ms,
        enable_auto_commit=False,
    )
    await consumer.start()
    parts = [TopicPartition(topic, p) for p in range(8)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def produce() -> None:
        sent = 0
        began = time.monotonic()
        while time.monotonic() < stop:
            due = int((time.monotonic() - began) * rate)
            while sent < due:
                await producer.send(
                    topic, b"x" * 100, partition=sent % 8, timestamp_ms=int(time.time() * 1000)
                )
                sent += 1
            await asyncio.sleep(0.005)

    async def consume() -> None:
        while time.monotonic() < stop + 2.0:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time() * 1000.0
            for records in batches.values():
                latencies.extend(now - r.timestamp for r in records)

    try:
        await asyncio.gather(produce(), consume())
    finally:
        await producer.stop()
        await consumer.stop()
    lat = np.asarray(latencies[len(latencies) // 5 :], dtype=float)
    if lat.size == 0:
        return {"fetch_max_wait_ms": wait_ms, "n": 0}
    return {
        "fetch_max_wait_ms": wait_ms,
        "n": int(lat.size),
        "p50": float(np.percentile(lat, 50)),
        "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)),
    }


async def probe(
    bootstrap: str,
    topic: str,
    waits: tuple[int, ...] = (1500, 100),
    rate: float = 1000.0,
    seconds: float = 12.0,
) -> dict[str, Any]:
    """Latency percentiles of plain consumption for each ``fetch_max_wait_ms`` in ``waits``."""

    await create_topics(bootstrap, {topic: 8})
    trials = [await _trial(bootstrap, topic, w, rate, seconds) for w in waits]
    return {"rate": rate, "seconds": seconds, "partitions": 8, "trials": trials}
