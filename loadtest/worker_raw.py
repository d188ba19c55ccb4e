"""Baseline (c): raw aiokafka consumption of custscore's input topics — the practical Python limit.

    CUSTSCORE_... python -m loadtest.worker_raw

An ``AIOKafkaConsumer`` in the worker's consumer group (``app_id``), subscribed to the three
input topics from the earliest offset, draining ``getmany()`` and counting records (no
decoding, no state, no output; offsets auto-committed). aiokafka still builds one
``ConsumerRecord`` per message: that, the fetch and the record-batch parsing are the floor any
Python consumer on aiokafka pays, Faust included.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from aiokafka import AIOKafkaConsumer

from config.settings import Settings
from custscore.clients import kafka_options
from loadtest.baseline_kit import Counters, input_kinds, serve_http, settings_from_env

__all__ = ["main", "run"]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Consume until ``stop`` is set."""

    counters = Counters()
    consumer = AIOKafkaConsumer(
        *input_kinds(settings),
        **kafka_options(settings),
        group_id=settings.app_id,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        client_id=f"{settings.app_id}-raw",
    )

    def owned() -> list[int]:
        return sorted(
            tp.partition for tp in consumer.assignment() if tp.topic == settings.topic_purchase
        )

    server = await serve_http(settings.web_host, settings.web_port, counters, owned)
    await consumer.start()
    try:
        while not stop.is_set():
            asked = time.time()
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            if not counters.first_at:
                counters.first_at = asked  # the fetch that brought the first records counts
            counters.batches_started += 1
            n = 0
            for records in batches.values():
                n += len(records)
            counters.done(n, n)
            counters.batches_done += 1
    finally:
        await consumer.stop()
        server.close()


def main() -> None:
    settings = settings_from_env()

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


if __name__ == "__main__":
    main()
