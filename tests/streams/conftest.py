"""Shared pieces for stream tests: a processor on real Valkey with a recording publisher."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis
from fixtures.stack import run_async

from config.settings import Settings
from engine.scoring import PopulationCuts
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from models.bundle import ModelBundle
from models.control_group import ControlGroup
from streams.codec import EventDecoder
from streams.metrics import build_metrics
from streams.processor import BatchProcessor, RawMessage, Retry
from streams.redis_conn import HiredisPackedConnection
from streams.store import RedisStateStore
from streams.topics import TopicTable

# the default topic names (customer.purchase, ..., customer.dead-letter), from the settings
TOPICS = TopicTable.from_settings(Settings.model_construct())
# the output topics by role: OUT.<alert kind name>, OUT.scores, OUT.dead_letter
OUT = SimpleNamespace(
    **TOPICS.alerts, holdout=TOPICS.holdout, scores=TOPICS.scores, dead_letter=TOPICS.dead_letter
)
WALL = 1_900_000_000.0  # a fixed wall clock (2030) for deterministic tests
PARTITIONS = 8  # the input topics' partition count an envelope's customers are checked against


@dataclass
class RecordingPublisher:
    """Keeps what would have been sent; can be told to fail the next N sends."""

    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    fail_next: int = 0

    async def send_many(self, records: Sequence[tuple[str, bytes | None, bytes | None]]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unavailable (test)")
        self.records.extend(records)

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for t, _, v in self.records if t == topic and v is not None]


def make_processor(
    redis_url: str,
    prefix: str,
    publisher: RecordingPublisher | None = None,
    control: ControlGroup | None = None,
) -> BatchProcessor:
    params = default_scoring_params()
    client = aioredis.Redis.from_url(redis_url, connection_class=HiredisPackedConnection)
    return BatchProcessor(
        store=RedisStateStore(client, prefix=prefix, dedupe_retention_days=3650),
        publisher=publisher or RecordingPublisher(),
        metrics=build_metrics(),
        model=ModelBundle(
            params, DEFAULT_RFM_MAP, "test-model", PopulationCuts.from_params(params)
        ),
        decoder=EventDecoder(
            TOPICS.inputs, max_payload_bytes=4096, max_future_skew_s=86400, partitions=PARTITIONS
        ),
        topics=TOPICS,
        wall_clock=lambda: WALL,
        retry=Retry(first_s=0.01, max_s=0.05),
        control=control,
    )


class Feed:
    """Builds raw messages with increasing offsets per (topic, partition)."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = {}

    def msg(
        self, kind: str, body: dict[str, Any] | bytes, partition: int = 0, key: bytes | None = None
    ) -> RawMessage:
        topic = f"customer.{kind}"
        offset = self.offsets.get((topic, partition), -1) + 1
        self.offsets[(topic, partition)] = offset
        value = body if isinstance(body, bytes) else json.dumps(body).encode()
        if key is None and isinstance(body, dict):
            key = str(body.get("customer_id", "")).encode()
        return RawMessage(topic, partition, offset, key, value)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def recorder() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def scenario(redis_url: str, prefix: str, recorder: RecordingPublisher) -> Iterator[Any]:
    """Runs ``async def body(processor)`` on a fresh loop with a processor bound to it."""

    def run(body: Any, publisher: RecordingPublisher | None = None) -> Any:
        async def main() -> Any:
            proc = make_processor(redis_url, prefix, publisher or recorder)
            try:
                return await body(proc)
            finally:
                await proc.store._redis.aclose()

        return run_async(main())

    yield run
