"""Topic administration with aiokafka's admin client: idempotent creation and metadata waits.

Metadata is always read for *all* topics: a Metadata request that names a missing topic
makes brokers with automatic topic creation (the embedded Tansu broker among them)
create it with their default partition count, which would break co-partitioning.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from typing import Any, Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code

__all__ = ["TopicError", "create_topics", "describe_topics", "wait_for_metadata"]

_TOPIC_ALREADY_EXISTS: Final = 36
_RETRY_S: Final = 0.1


class TopicError(RuntimeError):
    """A topic that cannot be created or exists with the wrong shape; one-line message."""


@contextlib.asynccontextmanager
async def _admin(
    bootstrap: str, deadline: float, client_options: Mapping[str, Any] | None
) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; retries the bootstrap until ``deadline`` (loop time)."""
    loop = asyncio.get_running_loop()
    options = {"client_id": "custscore-admin", **(client_options or {})}
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            await admin.close()
            if loop.time() >= deadline:
                raise TimeoutError(f"no Kafka broker answers at {bootstrap}") from None
            await asyncio.sleep(_RETRY_S)
    try:
        yield admin
    finally:
        await admin.close()


async def _all_topics(admin: AIOKafkaAdminClient) -> dict[str, dict[str, Any]]:
    """Metadata of every topic, by name (never names a topic, so never auto-creates one)."""
    return {str(t["topic"]): t for t in await admin.describe_topics()}


def _ready_partitions(meta: dict[str, Any] | None) -> int | None:
    """Partition count of a fully usable topic (no error, every partition has a leader)."""
    if meta is None or meta.get("error_code", 0) != 0:
        return None
    partitions = meta.get("partitions") or []
    if not partitions or any(p.get("leader", -1) < 0 for p in partitions):
        return None
    return len(partitions)


async def describe_topics(
    bootstrap: str,
    *,
    timeout_s: float = 30.0,
    client_options: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Partition count of every usable topic on the cluster."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with _admin(bootstrap, deadline, client_options) as admin:
        found = await _all_topics(admin)
    return {name: n for name, meta in found.items() if (n := _ready_partitions(meta)) is not None}


async def wait_for_metadata(
    bootstrap: str,
    topics: Mapping[str, int] | Iterable[str],
    *,
    timeout_s: float = 30.0,
    client_options: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Wait until every topic is visible with a leader for each partition.

    ``topics`` is a list of names, or ``{name: partitions}`` to also wait for that
    partition count. Returns ``{name: partition count}``; raises :class:`TimeoutError`
    naming what is still missing after ``timeout_s``.
    """
    expected: dict[str, int | None] = (
        {name: int(n) for name, n in topics.items()}
        if isinstance(topics, Mapping)
        else dict.fromkeys(topics)
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with _admin(bootstrap, deadline, client_options) as admin:
        while True:
            try:
                found = await _all_topics(admin)
            except KafkaError:
                found = {}
            counts = {name: _ready_partitions(found.get(name)) for name in expected}
            missing = [
                name
                for name, want in expected.items()
                if counts[name] is None or (want is not None and counts[name] != want)
            ]
            if not missing:
                return {name: int(n or 0) for name, n in counts.items()}
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"topic metadata not ready after {timeout_s:g} s: {', '.join(sorted(missing))}"
                )
            await asyncio.sleep(_RETRY_S)


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    compacted: Collection[str] = frozenset(),
    replication: int = 1,
    *,
    timeout_s: float = 30.0,
    client_options: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Create the topics that do not exist yet, then wait until all are usable.

    ``topics`` maps names to partition counts; names in ``compacted`` get
    ``cleanup.policy=compact``. Existing topics are fine when their partition count
    matches; a different count raises :class:`TopicError` (co-partitioned inputs must
    agree). ``client_options`` are passed to ``AIOKafkaAdminClient`` (security settings).
    Returns ``{name: partitions}``.
    """
    for name, partitions in topics.items():
        if partitions < 1:
            raise TopicError(f"topic {name}: partitions must be >= 1, got {partitions}")
    stray = sorted(set(compacted) - set(topics))
    if stray:
        raise TopicError(f"compacted topic(s) not in the topic list: {', '.join(stray)}")
    if replication < 1:
        raise TopicError(f"replication factor must be >= 1, got {replication}")
    if not topics:
        return {}

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with _admin(bootstrap, deadline, client_options) as admin:
        existing = await _all_topics(admin)
        _check_counts(topics, {n: len(m.get("partitions") or []) for n, m in existing.items()})
        new = [
            NewTopic(
                name,
                partitions,
                replication,
                topic_configs={"cleanup.policy": "compact"} if name in compacted else None,
            )
            for name, partitions in topics.items()
            if name not in existing
        ]
        if new:
            timeout_ms = max(1, int((deadline - loop.time()) * 1000))
            response = await admin.create_topics(new, timeout_ms=timeout_ms)
            for entry in response.to_object().get("topic_errors", []):
                code = int(entry.get("error_code", 0))
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    reason = entry.get("error_message") or for_code(code).__name__
                    raise TopicError(f"cannot create topic {entry.get('topic')}: {reason}")
    remaining = max(0.0, deadline - loop.time())
    ready = await wait_for_metadata(
        bootstrap, list(topics), timeout_s=remaining, client_options=client_options
    )
    # A concurrent creator may have won the race with another partition count.
    _check_counts(topics, ready)
    return ready


def _check_counts(wanted: Mapping[str, int], have_counts: Mapping[str, int]) -> None:
    for name, partitions in wanted.items():
        have = have_counts.get(name, 0)
        if have and have != partitions:
            raise TopicError(
                f"topic {name} exists with {have} partitions, {partitions} wanted; "
                "delete it or configure the same partition count"
            )
