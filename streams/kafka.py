"""Kafka plumbing of the worker: security options, Faust's consumer tuned, batched publishing.

- :func:`faust_broker_options`: the security settings for Faust, from the same TLS context
  the plain aiokafka clients get (streams/topics.py).
- :class:`CustscoreApp`: a ``faust.App`` whose worker consumer waits at most
  ``fetch_max_wait_ms`` for data. Faust hard-codes 1500 ms there; a broker that holds a fetch
  until that timeout (the embedded one does, and Apache Kafka does when a fetch finds less than
  ``fetch.min.bytes``) puts that much delay between an event and its alert.
- :class:`KafkaBatchPublisher`: a batch's alerts, dead letters and score updates go out as one
  record batch per topic-partition through the app's own aiokafka producer, instead of one
  awaited ``send`` per record; it returns once the broker acknowledged all of them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from config.settings import Settings
from streams.keys import key_partition
from streams.record_batches import send_record_batches
from streams.topics import ssl_context

__all__ = [
    "CustscoreApp",
    "KafkaBatchPublisher",
    "faust_broker_options",
]


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """``faust.App`` keyword arguments carrying the same security settings."""
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return {
            "broker_credentials": faust.SASLCredentials(
                username=settings.kafka_sasl_username or "",
                password=password.get_secret_value() if password else "",
                mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                ssl_context=ssl_context(settings),
            )
        }
    if protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(ssl_context(settings))}
    return {}


class _TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when the consumer starts (it builds its fetcher then)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # type: ignore[attr-defined]
        return consumer


class _TunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _TunedTransport(faust_aiokafka.Transport):
    Consumer = _TunedConsumer


class CustscoreApp(faust.App):
    """``faust.App`` with the consumer's fetch wait configurable (``fetch_max_wait_ms``)."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _TunedTransport(self.conf.broker_consumer, self)


class KafkaBatchPublisher:
    """Sends records as record batches, one per topic-partition, and awaits every ack.

    Keys are partitioned as Kafka's default partitioner does (murmur2), so a customer's alerts
    and score updates land where any Kafka client would put them; records without a key are
    spread round robin.
    """

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._partitions: dict[str, int] = {}
        self._spread = itertools.count()

    def _producer(self) -> Any:
        return self._app.producer._ensure_producer()  # type: ignore[attr-defined]

    async def send_many(self, records: Sequence[tuple[str, bytes | None, bytes | None]]) -> None:
        producer = self._producer()
        placed: list[tuple[str, int, bytes | None, bytes | None]] = []
        for topic, key, value in records:
            count = self._partitions.get(topic)
            if count is None:
                count = self._partitions[topic] = len(await producer.partitions_for(topic))
            partition = key_partition(key, count) if key is not None else next(self._spread) % count
            placed.append((topic, partition, key, value))
        acks = await send_record_batches(producer, placed)
        await asyncio.gather(*acks)
