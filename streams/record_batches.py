"""Records sent as aiokafka record batches, one batch (or a few) per topic-partition.

Shared by the worker's publisher (streams/kafka.py) and ``custscore replay``: appending to a
``BatchBuilder`` and handing whole batches to the producer costs a fraction of one awaited
``send`` per record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["RecordTooLarge", "send_record_batches"]


class RecordTooLarge(ValueError):
    """One record is larger than the producer's record batch."""


async def send_record_batches(
    producer: Any,
    records: Iterable[tuple[str, int, bytes | None, bytes | None]],
    timestamp_ms: int | None = None,
) -> list[asyncio.Future[Any]]:
    """Queue (topic, partition, key, value) records as record batches; the ack futures.

    ``producer`` is an ``aiokafka.AIOKafkaProducer``; ``timestamp_ms`` None = wall time at
    append. Raises :class:`RecordTooLarge` for a record that does not fit an empty batch.
    """
    groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
    for topic, partition, key, value in records:
        groups.setdefault((topic, partition), []).append((key, value))
    futures: list[asyncio.Future[Any]] = []
    for (topic, partition), items in groups.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=timestamp_ms) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=timestamp_ms) is None:
                    size = len(value or b"") + len(key or b"")
                    raise RecordTooLarge(f"a record of {size} bytes does not fit a record batch")
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures
