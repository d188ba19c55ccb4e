"""A real worker process on the embedded broker and Valkey: agent, timer, views, dead letters."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fixtures.stack import run_async
from fixtures.streaming import TOPIC_KINDS

from config.settings import Settings, load_settings
from custscore.processes import free_port
from custscore.stack import EmbeddedStack
from custscore.supervision import settings_env
from streams.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 852076800  # 1997-01-01
DAY = 86400
PARTITIONS = 4


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    ctype_json = body[:1] in (b"{", b"[")
    return status, json.loads(body) if ctype_json else body.decode()


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def worker(
    embedded_stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    token = uuid.uuid4().hex[:6]
    settings = load_settings(
        environ={},
        broker_port=embedded_stack.broker_port,
        redis_port=embedded_stack.redis_port,
        app_id=f"cs-worker-{token}",
        redis_key_prefix=f"w{token}",
        web_port=free_port(),
        partitions=PARTITIONS,
        sweep_interval_s=0.5,
        snapshot_interval_s=2.0,
        batch_within_s=0.1,
        session_timeout_s=10.0,  # the embedded broker holds the group join for half of it
        **{f"topic_{kind}": f"customer.{kind.replace('_', '-')}.{token}" for kind in TOPIC_KINDS},
    )
    run_async(ensure_topics(settings))
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "custscore", "worker", "--loglevel", "warning"],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                status, body = _get(f"http://127.0.0.1:{settings.web_port}/healthz")
                if status == 200 and body["partitions"]:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(
                "worker did not get its partitions: " + log_path.read_text()[-3000:]
            )
        yield settings
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _produce(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def _consume_all(
    settings: Settings, topic: str, expect_at_least: int, timeout: float
) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(out) < expect_at_least:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                out.extend(json.loads(m.value) for m in msgs if m.value is not None)
        return out
    finally:
        await consumer.stop()


def _purchase(
    settings: Settings, eid: str, cust: str, day: float, amount: float
) -> tuple[str, bytes, bytes]:
    body = {
        "event_id": eid,
        "customer_id": cust,
        "ts": int((T0 + day * DAY) * 1000),
        "amount": amount,
    }
    return settings.topic_purchase, cust.encode(), json.dumps(body).encode()


def test_worker_end_to_end(worker: Settings) -> None:
    s = worker
    base = f"http://127.0.0.1:{s.web_port}"

    def wait_consumed(count: int) -> str:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            _, text = _get(f"{base}/metrics")
            if _metric(text, "custscore_events_in_total") >= count:
                return str(text)
            time.sleep(0.3)
        raise AssertionError(f"worker consumed fewer than {count} messages")

    # hank buys once and goes silent: BG/NBD says P(alive) = 1, only silence can fire.
    # He is applied first, so the watermark is his own purchase time when he is scored.
    run_async(_produce(s, [_purchase(s, "h0", "hank", 0, 40.0)]))
    wait_consumed(1)
    # bad input in the same batches as good events
    records = [
        (s.topic_purchase, b"ivy", b"{broken json"),
        (
            s.topic_complaint,
            b"ivy",
            json.dumps(
                {"event_id": "c1", "customer_id": "ivy", "ts": T0 * 1000, "severity": 11}
            ).encode(),
        ),
        (
            s.topic_visit,
            b"ivy",
            json.dumps({"event_id": "v1", "customer_id": "ivy", "ts": T0 * 1000}).encode(),
        ),
    ]
    # other customers move the watermark 400 days on; hank sends nothing more
    records += [_purchase(s, f"o{d}", f"other{d % 7}", d, 15.0) for d in range(40, 400, 4)]
    total = len(records) + 1
    run_async(_produce(s, records))
    metrics = wait_consumed(total)
    assert _metric(metrics, "custscore_events_in_total") == total

    dead = run_async(_consume_all(s, s.topic_dead_letter, 2, 30))
    assert sorted(d["reason"] for d in dead) == ["bad_json", "bad_severity"]
    assert {d["source_topic"] for d in dead} == {s.topic_purchase, s.topic_complaint}

    wins = [
        w for w in run_async(_consume_all(s, s.topic_win_back, 1, 60)) if w["customer_id"] == "hank"
    ]
    assert [w["reason"] for w in wins] == ["silence"]
    assert wins[0]["cause"]["type"] == "timer"

    status, hank = _get(f"{base}/customers/hank")
    assert status == 200
    assert hank["scores"]["frequency"] == 0 and hank["state"]["purchase_days"] == 1
    assert hank["scores"]["p_alive"] == 1.0
    status, ivy = _get(f"{base}/customers/ivy")
    assert status == 200 and ivy["scores"]["lifecycle"] == "prospect"  # the visit was applied
    assert _get(f"{base}/customers/nobody")[0] == 404
    status, health = _get(f"{base}/healthz")
    assert (
        status == 200
        and health["redis"] is True
        and sorted(health["partitions"]) == list(range(PARTITIONS))
    )
    _, metrics = _get(f"{base}/metrics")
    for name in (
        "custscore_dead_letter_total",
        "custscore_batch_size_count",
        "custscore_kernel_seconds_count",
        "custscore_redis_seconds_count",
        "custscore_alerts_total",
        "custscore_watermark_seconds",
        "custscore_due_index_size",
        "custscore_fence_skipped_total",
    ):
        assert name in metrics, name
    assert _metric(metrics, 'custscore_dead_letter_total{reason="bad_json"}') == 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, stats = _get(f"{base}/stats")
        if stats["partitions_reporting"] == PARTITIONS and stats["buyers"] == 8:
            break
        time.sleep(0.5)
    assert status == 200 and stats["buyers"] == 8 and stats["customers"] == 9
    assert sum(stats["lifecycle"].values()) == 9
