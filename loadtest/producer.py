"""Producing a prepared stream to the input topics: at max speed or at a target rate.

The benchmark encodes its events once (:class:`Stream`) and produces the same bytes to every
system it measures. Each record carries an explicit Kafka timestamp (producer create time,
epoch ms) taken when its step is appended; event->alert latency is measured from it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from config.settings import Settings
from custscore.clients import send_records, started_producer
from loadtest.generate import StreamSpec, encode_slice, generate
from models.events import TYPE_BY_KIND, read_event_csv
from streams.codec import ProducerRecord, encode_event, pack_envelopes
from streams.keys import partition_for
from streams.topics import TopicTable

__all__ = ["ProduceResult", "Stream", "produce"]

_STEP = 2000  # records per producer step at max speed


@dataclass
class Stream:
    """A prepared event stream: (kind, event id, key, value) in event-time order."""

    name: str
    kinds: npt.NDArray[np.uint8]
    event_ids: list[str]
    keys: list[bytes]
    values: list[bytes]
    customers: int
    source: str = ""

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_records(
        cls,
        name: str,
        records: Sequence[tuple[int, str, bytes, bytes]],
        customers: int,
        source: str = "",
    ) -> Stream:
        return cls(
            name=name,
            kinds=np.fromiter((r[0] for r in records), dtype=np.uint8, count=len(records)),
            event_ids=[r[1] for r in records],
            keys=[r[2] for r in records],
            values=[r[3] for r in records],
            customers=customers,
            source=source,
        )

    @classmethod
    def synthetic(cls, spec: StreamSpec, limit: int | None = None) -> Stream:
        """The generator's stream for ``spec`` (first ``limit`` events if given)."""
        records: list[tuple[int, str, bytes, bytes]] = []
        for sl in generate(spec):
            records.extend(encode_slice(spec, sl))
            if limit is not None and len(records) >= limit:
                del records[limit:]
                break
        customers = len({r[2] for r in records})
        return cls.from_records(
            f"synthetic {spec.customers:,} customers (seed {spec.seed})",
            records,
            customers,
            source=f"loadtest.generate customers={spec.customers} seed={spec.seed} "
            f"visit_rate={spec.visit_rate} complaint_rate={spec.complaint_rate}",
        )

    @classmethod
    def from_csv(cls, path: Path, name: str | None = None) -> Stream:
        """Every valid event of a standard event CSV, in the input-topic JSON format."""
        log = read_event_csv(path)
        ev = log.events
        records = [
            (
                kind,
                log.event_ids[k],
                log.customer_ids[row].encode(),
                encode_event(kind, log.event_ids[k], log.customer_ids[row], ts, cents, sev, res),
            )
            for k, (row, kind, sev, res, ts, cents) in enumerate(ev.tolist())
        ]
        return cls.from_records(
            name or Path(path).name, records, len(log.customer_ids), source=str(path)
        )

    def counts(self) -> dict[str, int]:
        """Events per event type."""
        return {name: int(np.count_nonzero(self.kinds == k)) for k, name in TYPE_BY_KIND.items()}

    def head(self, limit: int) -> Stream:
        """The first ``limit`` events (the whole stream when it is not longer)."""
        if limit >= len(self):
            return self
        return Stream(
            self.name,
            self.kinds[:limit],
            self.event_ids[:limit],
            self.keys[:limit],
            self.values[:limit],
            len(set(self.keys[:limit])),
            self.source,
        )


@dataclass
class ProduceResult:
    """What :func:`produce` sent and when."""

    produced: int
    started_at: float  # wall time of the first append
    finished_at: float  # wall time of the last ack
    create_ms: npt.NDArray[np.int64]  # Kafka timestamp given to each record (stream order)
    progress: list[tuple[float, int]] = field(default_factory=list)  # (wall time, acked)

    @property
    def seconds(self) -> float:
        return max(self.finished_at - self.started_at, 1e-9)

    @property
    def events_per_s(self) -> float:
        return self.produced / self.seconds


async def produce(
    settings: Settings,
    stream: Stream,
    *,
    rate: float | None = None,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    envelope: int = 0,
) -> ProduceResult:
    """Produce ``stream`` (or its first ``limit`` events) to the input topics of ``settings``;
    ``envelope`` > 0 sends batch envelopes of up to that many events per topic-partition.

    ``rate`` = events per wall second (None = as fast as the broker acks, one step in flight
    while the next is built). Paced mode sends every 10 ms the events due by then.
    """
    topics = TopicTable.from_settings(settings).input_topics_by_kind()
    total = len(stream) if limit is None else min(limit, len(stream))
    part_of: dict[bytes, int] = {}
    parts = []
    for key in stream.keys[:total]:
        p = part_of.get(key)
        if p is None:
            p = part_of[key] = partition_for(key.decode(), settings.partitions)
        parts.append(p)
    kinds = stream.kinds[:total].tolist()
    # an envelope step holds enough events for every partition's envelopes to fill
    step_events = max(_STEP, envelope * settings.partitions)
    create_ms = np.zeros(total, dtype=np.int64)
    progress: list[tuple[float, int]] = []
    async with started_producer(
        settings,
        linger_ms=5 if rate is None else 0,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    ) as producer:
        acked = 0
        began_mono = time.monotonic()
        started_at = time.time()
        pending: list[tuple[list[asyncio.Future[Any]], int]] = []
        i = 0
        while i < total:
            if rate is None:
                end = min(i + step_events, total)
            else:
                elapsed = time.monotonic() - began_mono
                due = min(int(elapsed * rate) + 1, total)
                if due <= i:
                    await asyncio.sleep(max((i + 1) / rate - elapsed, 0.0))
                    continue
                end = due
            now_ms = int(time.time() * 1000)
            create_ms[i:end] = now_ms
            records: list[ProducerRecord] = [
                (topics[kinds[k]], parts[k], stream.keys[k], stream.values[k])
                for k in range(i, end)
            ]
            if envelope:
                records = pack_envelopes(records, envelope, settings.max_envelope_bytes)
            step = await send_records(producer, records, now_ms)
            if rate is None:
                # one step in flight while the next one is built
                for futures, n in pending:
                    await asyncio.gather(*futures)
                    acked += n
                pending = [(step, end - i)]
            else:
                pending.append((step, end - i))
                while pending and all(f.done() for f in pending[0][0]):
                    futures, n = pending.pop(0)
                    await asyncio.gather(*futures)
                    acked += n
                await asyncio.sleep(0.01)
            progress.append((time.time(), acked))
            if on_progress is not None:
                on_progress(acked)
            i = end
        for futures, n in pending:
            await asyncio.gather(*futures)
            acked += n
        finished_at = time.time()
        progress.append((finished_at, acked))
        if on_progress is not None:
            on_progress(acked)
    return ProduceResult(
        produced=total,
        started_at=started_at,
        finished_at=finished_at,
        create_ms=create_ms,
        progress=progress,
    )
