"""The backfill scenario: a large synthetic history produced as batch envelopes while one
worker consumes it (``custscore bench``, phase *backfill*).

Users replay history to load a new shop, to rebuild state after a model change, or to size
the system. This phase generates the stream slice by slice (:func:`loadtest.generate.generate`,
memory O(customers), never the whole stream in memory), packs each producer step into
envelopes per topic-partition (:func:`streams.codec.pack_envelopes`) and sends it, with one
step in flight, while the worker (joined before the first produce) consumes. The visit rate
is chosen so that the spec yields a little more than the wanted number of events; the stream
is cut at exactly that many.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import numpy as np

from config.settings import Settings
from loadtest.generate import StreamSpec, customer_id, encode_slice, generate
from loadtest.producer import ProduceResult
from models.params_file import default_params

__all__ = ["backfill_spec", "produce_backfill"]

_STEP_EVENTS = 50_000  # events per producer step (one in flight while the next is built)


def backfill_spec(customers: int, events: int, seed: int = 7) -> StreamSpec:
    """A synthetic spec of ``customers`` customers that yields more than ``events`` events (the
    estimate is rough; the phase counts what was sent):
    the CDNOW BG/NBD + Gamma-Gamma purchases, visits at the rate that makes up the rest, 1 %
    complaints."""
    base = StreamSpec.from_params(default_params(), customers, seed=seed, complaint_rate=0.01)
    per_visit_rate = replace(base, visit_rate=1.0).expected_events() - base.expected_events()
    missing = max(events * 1.5 - base.expected_events(), 0.0)
    return replace(base, visit_rate=missing / per_visit_rate if per_visit_rate > 0 else 0.0)


async def produce_backfill(
    settings: Settings, spec: StreamSpec, limit: int, envelope: int
) -> tuple[ProduceResult, list[str]]:
    """Generate ``spec`` to the input topics of ``settings`` as envelopes of up to
    ``envelope`` events, cut at ``limit`` events; the result and the ids of the customers
    sent."""
    from custscore.clients import send_records, started_producer
    from streams.codec import pack_envelopes
    from streams.keys import partition_for
    from streams.topics import TopicTable

    topics = TopicTable.from_settings(settings).input_topics_by_kind()
    seen = np.zeros(spec.customers, dtype=bool)
    part_of: dict[bytes, int] = {}
    sent = 0
    progress: list[tuple[float, int]] = []
    step: list[tuple[str, int, bytes | None, bytes]] = []
    async with started_producer(
        settings, linger_ms=5, max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024
    ) as producer:
        started_at = time.time()
        in_flight: list[asyncio.Future[Any]] = []
        in_flight_n = 0
        acked = 0

        async def flush() -> None:
            nonlocal in_flight, in_flight_n, acked, step
            records = pack_envelopes(step, envelope, settings.max_envelope_bytes)
            futures = await send_records(producer, records)
            await asyncio.gather(*in_flight)
            acked += in_flight_n
            progress.append((time.time(), acked))
            in_flight, in_flight_n, step = futures, len(step), []

        for sl in generate(spec):
            take = min(len(sl), limit - sent)
            seen[sl.customer[:take]] = True
            for kind, _eid, key, value in encode_slice(spec, sl)[:take]:
                part = part_of.get(key)
                if part is None:
                    part = part_of[key] = partition_for(key.decode(), settings.partitions)
                step.append((topics[kind], part, key, value))
            sent += take
            if len(step) >= _STEP_EVENTS:
                await flush()
            if sent >= limit:
                break
        if step:
            await flush()
        await asyncio.gather(*in_flight)
        acked += in_flight_n
        finished_at = time.time()
        progress.append((finished_at, acked))
    result = ProduceResult(
        produced=sent,
        started_at=started_at,
        finished_at=finished_at,
        create_ms=np.zeros(0, dtype=np.int64),
        progress=progress,
    )
    return result, [customer_id(spec, int(i)) for i in np.flatnonzero(seen)]
