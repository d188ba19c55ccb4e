"""Integration: real traffic through the embedded broker and the embedded Valkey."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2
from fixtures.stack import MakeTopic, run_async

pytestmark = pytest.mark.integration

N_MESSAGES = 1000
N_KEYS = 97
PARTITIONS = 4
# Generous bound so a broken broker fails the test instead of hanging it; not a speed check.
CONSUME_DEADLINE_S = 120.0


def _messages() -> list[tuple[bytes, bytes]]:
    return [
        (f"customer-{i % N_KEYS:03d}".encode(), f"event-{i:04d}|{'x' * (i % 50)}".encode())
        for i in range(N_MESSAGES)
    ]


async def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in messages]
        await producer.flush()
        return [(await fut).partition for fut in futures]
    finally:
        await producer.stop()


async def _consume(
    bootstrap: str, topic: str, group: str, expected: int
) -> list[tuple[int, int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[int, int, bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONSUME_DEADLINE_S
        while len(got) < expected and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                got += [(tp.partition, r.offset, r.key, r.value) for r in records]
        # One more poll: anything beyond `expected` is a duplicate or a stray.
        extra = await consumer.getmany(timeout_ms=1000)
        for tp, records in extra.items():
            got += [(tp.partition, r.offset, r.key, r.value) for r in records]
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


def test_group_consumer_receives_every_keyed_message_exactly_once(
    make_topic: MakeTopic, kafka_bootstrap: str
) -> None:
    topic = make_topic("foundation.roundtrip", PARTITIONS)
    sent = _messages()

    produced_partitions = run_async(_produce(kafka_bootstrap, topic, sent))
    received = run_async(_consume(kafka_bootstrap, topic, f"group-{topic}", len(sent)))

    assert len(received) == len(sent), f"received {len(received)} of {len(sent)} messages"
    assert Counter((k, v) for _, _, k, v in received) == Counter(sent)

    # Keys map to one partition each: the one the producer reported, i.e. Kafka's rule.
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for partition, _, key, _ in received:
        partitions_of_key[key].add(partition)
    reported: dict[bytes, set[int]] = defaultdict(set)
    for (key, _), partition in zip(sent, produced_partitions, strict=True):
        reported[key].add(partition)
    assert len(partitions_of_key) == N_KEYS
    for key, partitions in partitions_of_key.items():
        assert partitions == reported[key]
        assert partitions == {(murmur2(key) & 0x7FFFFFFF) % PARTITIONS}
    assert {partition for partition, _, _, _ in received} == set(range(PARTITIONS))

    # Per key, the order of arrival is the order of sending; offsets grow per partition.
    sent_order: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in sent:
        sent_order[key].append(value)
    got_order: dict[bytes, list[bytes]] = defaultdict(list)
    last_offset: dict[int, int] = {}
    for partition, offset, key, value in sorted(received, key=lambda r: (r[0], r[1])):
        assert offset > last_offset.get(partition, -1)
        last_offset[partition] = offset
        got_order[key].append(value)
    assert got_order == sent_order


def test_binary_value_round_trips_through_valkey_transaction(
    redis_client: redis.Redis,
) -> None:
    payload = bytes(range(256))
    field = b"\x00\xff\r\n"
    key, hkey = b"cs:{p3}:bin\x00key", b"cs:{p3}:hash"
    exec_calls_before = _exec_calls(redis_client)

    with redis_client.pipeline(transaction=True) as pipe:
        pipe.set(key, payload)
        pipe.hset(hkey, field, payload)
        pipe.get(key)
        pipe.hget(hkey, field)
        results = pipe.execute()

    assert results == [True, 1, payload, payload]
    assert redis_client.get(key) == payload
    assert redis_client.hgetall(hkey) == {field: payload}
    assert len(payload) == 256 and set(payload) == set(range(256))
    # The pipeline really went through MULTI/EXEC on the server.
    assert _exec_calls(redis_client) == exec_calls_before + 1


def _exec_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    entry = stats.get("cmdstat_exec", {"calls": 0})
    return int(entry["calls"])
