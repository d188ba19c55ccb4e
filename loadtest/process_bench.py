"""``BatchProcessor.process`` in-process: CPU and wall µs per event, by stage, no broker.

    custscore bench process [--events N] [--envelope N]   (its own embedded Valkey)

The worker's batch pipeline (:class:`streams.processor.BatchProcessor`) is driven directly
with the bench stream, on a real Valkey, with a publisher that drops what it is given (a
null publisher: no broker, no acks). The messages are built as the worker would see them
(single events, or envelopes packed step by step as :func:`loadtest.producer.produce` packs
them) and handed over in batches of ``batch_size`` messages, as ``take_events`` does. The
figures say what custscore itself costs per event, apart from Faust and the broker; the
worker's own histograms split them by stage (Redis round trips, the evaluation section,
the rest: decode, triage, metrics).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from config.settings import Settings
from loadtest.producer import Stream

__all__ = ["ProcessResult", "measure_process", "raw_messages"]

_STEP = 2000  # events per producer step (as loadtest.producer)


@dataclass
class ProcessResult:
    """One in-process measurement."""

    form: str  # "single events" | "envelopes of up to N events"
    events: int
    messages: int
    batches: int
    alerts: int  # records published other than score updates and dead letters
    records: int  # every record the null publisher was given
    wall_s: float
    cpu_s: float
    redis_s: float  # histogram sums: Redis read + commit round trips
    kernel_s: float  # the evaluation section (state decode, numba, alert and score records)

    @property
    def wall_us_per_event(self) -> float:
        return self.wall_s / max(self.events, 1) * 1e6

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s / max(self.events, 1) * 1e6

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["wall_us_per_event"] = self.wall_us_per_event
        doc["cpu_us_per_event"] = self.cpu_us_per_event
        return doc


class _NullPublisher:
    """Counts what it would send."""

    def __init__(self, scores_topic: str, dead_letter_topic: str) -> None:
        self.records = 0
        self.alerts = 0
        self._not_alerts = {scores_topic, dead_letter_topic}

    async def send_many(self, records: Sequence[tuple[str, bytes | None, bytes | None]]) -> None:
        self.records += len(records)
        self.alerts += sum(1 for topic, _, _ in records if topic not in self._not_alerts)


def raw_messages(stream: Stream, settings: Settings, envelope: int = 0) -> list[Any]:
    """The stream as the worker's consumer hands it over: (topic, partition, offset, key,
    value) per message, envelopes packed per producer step of ``envelope`` × partitions
    events (so they keep the stream's rough event-time order)."""
    from streams.codec import pack_envelopes
    from streams.keys import partition_for
    from streams.processor import RawMessage
    from streams.topics import TopicTable

    topics = TopicTable.from_settings(settings).input_topics_by_kind()
    part_of: dict[bytes, int] = {}
    records: list[tuple[str, int, bytes | None, bytes]] = []
    for kind, key, value in zip(stream.kinds.tolist(), stream.keys, stream.values, strict=True):
        p = part_of.get(key)
        if p is None:
            p = part_of[key] = partition_for(key.decode(), settings.partitions)
        records.append((topics[kind], p, key, value))
    if envelope:
        step = max(_STEP, envelope * settings.partitions)
        packed = []
        for i in range(0, len(records), step):
            packed += pack_envelopes(records[i : i + step], envelope, settings.max_envelope_bytes)
        records = packed
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for topic, p, raw_key, value in records:
        offset = offsets.get((topic, p), -1) + 1
        offsets[topic, p] = offset
        out.append(RawMessage(topic, p, offset, raw_key, value))
    return out


def measure_process(settings: Settings, stream: Stream, envelope: int = 0) -> ProcessResult:
    """Run ``stream`` through a fresh :class:`BatchProcessor` on ``settings``' Redis (under
    its key prefix, which should be unused) with a null publisher."""
    return asyncio.run(_measure(settings, stream, envelope))


async def _measure(settings: Settings, stream: Stream, envelope: int) -> ProcessResult:
    from engine.timeline import warm_up
    from models.bundle import load_model
    from models.control_group import ControlGroup
    from streams.codec import EventDecoder
    from streams.metrics import build_metrics
    from streams.processor import BatchProcessor
    from streams.redis_conn import redis_client
    from streams.store import RedisStateStore
    from streams.topics import TopicTable

    bundle = load_model(settings.params_file, window_months=settings.effective_window_months)
    warm_up(bundle.scoring, bundle.cuts, bundle.rfm_map)
    gc.freeze()  # as the worker does after its warm-up (streams/worker.py)
    messages = raw_messages(stream, settings, envelope)
    topics = TopicTable.from_settings(settings)
    redis = redis_client(settings)
    metrics = build_metrics()
    publisher = _NullPublisher(topics.scores, topics.dead_letter)
    processor = BatchProcessor(
        store=RedisStateStore.from_settings(redis, settings),
        publisher=publisher,
        metrics=metrics,
        model=bundle,
        decoder=EventDecoder(
            topics.inputs,
            max_payload_bytes=settings.max_payload_bytes,
            # the bench's event times are history: no future-skew rejection
            max_future_skew_s=10**10,
            partitions=settings.partitions,
            max_envelope_events=settings.max_envelope_events,
            max_envelope_bytes=settings.max_envelope_bytes,
        ),
        topics=topics,
        control=ControlGroup(settings.holdout_salt, settings.holdout_fraction),
        max_batch_events=settings.max_batch_events,
    )
    size = settings.batch_size
    batches = [messages[i : i + size] for i in range(0, len(messages), size)]
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for batch in batches:
            await processor.process(batch)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        await redis.aclose()
    reg = metrics.registry
    return ProcessResult(
        form=f"envelopes of up to {envelope:,} events" if envelope else "single events",
        events=len(stream),
        messages=len(messages),
        batches=len(batches),
        alerts=publisher.alerts,
        records=publisher.records,
        wall_s=wall,
        cpu_s=cpu,
        redis_s=float(reg.get_sample_value("custscore_redis_seconds_sum") or 0.0),
        kernel_s=float(reg.get_sample_value("custscore_kernel_seconds_sum") or 0.0),
    )
