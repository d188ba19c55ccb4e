"""Kafka and Redis clients of the command line and its harnesses, with one-line errors.

``replay``, ``export``, ``inspect``, ``forget``, ``migrate``, the demo, worker supervision and
the load tests talk to the same broker and Redis the worker uses; this module builds their
clients from :class:`~config.settings.Settings` and turns "nothing answers there" into a
:class:`~custscore.errors.CliError` that says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from custscore.errors import CliError

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from aiokafka import AIOKafkaProducer

    from config.settings import Settings
    from streams.store import RedisStateStore

__all__ = [
    "ensure_topics_or_fail",
    "kafka_options",
    "open_redis",
    "open_store",
    "send_envelopes",
    "send_records",
    "started_producer",
    "state_store",
]

_NO_STACK_HINT = "start one with `custscore stack up`, or configure"


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients: bootstrap servers and security settings."""
    from streams.topics import kafka_security_options

    return {"bootstrap_servers": settings.bootstrap_servers, **kafka_security_options(settings)}


def _no_broker(settings: Settings) -> CliError:
    return CliError(
        f"no Kafka broker answers at {settings.bootstrap_servers}: "
        f"{_NO_STACK_HINT} CUSTSCORE_KAFKA_BOOTSTRAP"
    )


@contextlib.asynccontextmanager
async def started_producer(settings: Settings, **overrides: Any) -> AsyncIterator[AIOKafkaProducer]:
    """A started aiokafka producer (acks=all); a broker that does not answer is a CliError.

    Starting only bootstraps with a Metadata request for all topics, which never auto-creates
    one; call :func:`ensure_topics_or_fail` before the first send.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    producer = AIOKafkaProducer(
        **kafka_options(settings), client_id="custscore-cli", acks="all", **overrides
    )
    try:
        await producer.start()
    except KafkaConnectionError:
        await producer.stop()
        raise _no_broker(settings) from None
    try:
        yield producer
    finally:
        await producer.stop()


async def ensure_topics_or_fail(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create missing topics (streams.topics.ensure_topics); failures become one line."""
    from streams.admin import TopicError
    from streams.topics import ensure_topics

    try:
        await ensure_topics(settings, timeout_s=timeout_s)
    except TopicError as exc:
        raise CliError(str(exc)) from None
    except TimeoutError as exc:
        if str(exc).startswith("no Kafka broker answers"):
            raise _no_broker(settings) from None
        raise CliError(str(exc)) from None


@contextlib.asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """The worker's asyncio Redis client, after a PING; an unreachable Redis is a CliError."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from streams.redis_conn import redis_client

    client = redis_client(settings)
    try:
        try:
            await client.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            raise CliError(
                f"no Redis answers at {settings.redis_address}: "
                f"{_NO_STACK_HINT} CUSTSCORE_REDIS_URL"
            ) from None
        yield client
    finally:
        await client.aclose()


def state_store(client: aioredis.Redis, settings: Settings) -> RedisStateStore:
    """The worker's state store on ``client`` (same key prefix and dedupe retention)."""
    from streams.store import RedisStateStore

    return RedisStateStore.from_settings(client, settings)


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[RedisStateStore]:
    """:func:`state_store` on a client from :func:`open_redis`."""
    async with open_redis(settings) as client:
        yield state_store(client, settings)


async def send_records(
    producer: AIOKafkaProducer,
    records: Sequence[tuple[str, int, bytes | None, bytes]],
    timestamp_ms: int | None = None,
) -> list[asyncio.Future[Any]]:
    """Append (topic, partition, key, value) records to per-partition record batches and
    queue them; returns the ack futures. ``timestamp_ms`` None = wall time at append."""
    from streams.record_batches import RecordTooLarge, send_record_batches

    try:
        return await send_record_batches(producer, records, timestamp_ms)
    except RecordTooLarge as exc:
        raise CliError(f"an event does not fit: {exc}") from None


async def send_envelopes(
    producer: AIOKafkaProducer,
    topic: str,
    events: Sequence[tuple[str, bytes]],
    partitions: int,
    *,
    max_events: int = 1_000,
    max_bytes: int = 1_000_000,
) -> int:
    """Send ``events`` ((customer id, encoded event JSON), in order) of one input topic as
    batch envelopes: grouped by the customers' partitions, up to ``max_events`` events and
    ``max_bytes`` bytes each; waits for the broker's acks. Returns the envelopes sent.

    The public producer helper of the envelope contract (docs/alerts.md, "Batch envelopes");
    events of one customer keep their order.
    """
    from streams.codec import pack_envelopes
    from streams.keys import partition_for

    records = [
        (topic, partition_for(customer, partitions), customer.encode("utf-8"), value)
        for customer, value in events
    ]
    envelopes = pack_envelopes(records, max_events, max_bytes)
    await asyncio.gather(*await send_records(producer, envelopes))
    return len(envelopes)
