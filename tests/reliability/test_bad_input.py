"""The bad-input corpus (tests/data/bad_inputs.json) through a real worker.

The worker runs as the least-privilege Valkey user (conftest ``secured``). Each case is produced
to its input topic and partition. Cases expected to be dead-lettered go out together and their
outcome is read from the dead-letter topic by source position (reason and original bytes);
every other case goes alone and, once its offset is under the applied-offset fence in Redis,
the worker's counters say what happened to it (applied = a state write, duplicate, forgotten
skip, or a dead letter). The
worker must never exit. docs/reliability.md carries the table of cases and outcomes; a test
checks it is the one this file renders (CUSTSCORE_WRITE_DOCS=1 rewrites it).
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from custscore.clients import kafka_options
from reliability.conftest import Secured
from reliability.support import PRODUCERS, Producer, fences, run_coro, wait_until
from streams.keys import partition_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.timeout(600),
]

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "bad_inputs.json"
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- bad-input table: begin -->", "<!-- bad-input table: end -->"


def load_cases() -> list[dict[str, Any]]:
    return list(json.loads(CORPUS.read_text(encoding="utf-8"))["cases"])


def case_value(case: dict[str, Any]) -> bytes | None:
    if "value_b64" in case:
        return base64.b64decode(case["value_b64"])
    if case["value"] is None:
        return None
    text = str(case["value"]).replace("@PAD@", "x" * int(case.get("pad", 0)))
    return text.encode("utf-8", "surrogatepass")


def case_key(case: dict[str, Any]) -> bytes | None:
    return None if case["key"] is None else str(case["key"]).encode("utf-8")


def render_table(cases: list[dict[str, Any]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| # | case | topic | outcome | note |", "|---|---|---|---|---|"]
    for i, c in enumerate(cases, start=1):
        outcome = c["expect"]
        if outcome.startswith("dead_letter:"):
            outcome = f"dead letter, reason `{outcome.split(':', 1)[1]}`"
        else:
            outcome = {
                "applied": "applied",
                "duplicate": "skipped: duplicate event id",
                "forgotten_skipped": "skipped: forgotten customer",
            }[outcome]
        lines.append(f"| {i} | {cell(c['name'])} | {c['topic']} | {outcome} | {cell(c['note'])} |")
    return "\n".join(lines)


def test_docs_table_matches_the_corpus() -> None:
    table = render_table(load_cases())
    text = DOC.read_text(encoding="utf-8")
    if os.environ.get("CUSTSCORE_WRITE_DOCS") == "1":
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")
        text = DOC.read_text(encoding="utf-8")
    inside = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert inside == table, "docs/reliability.md table is stale: rerun with CUSTSCORE_WRITE_DOCS=1"


def _topic(settings: Any, kind: str) -> str:
    return {
        "purchase": settings.topic_purchase,
        "visit": settings.topic_visit,
        "complaint": settings.topic_complaint,
    }[kind]


def _partition(case: dict[str, Any], partitions: int) -> int:
    try:
        customer = json.loads(case_value(case) or b"null")["customer_id"]
        if isinstance(customer, str):
            return partition_for(customer, partitions)
    except (ValueError, TypeError, KeyError):
        pass
    key = case_key(case)
    return partition_for(key.decode("utf-8", "replace"), partitions) if key else 0


async def _send(
    settings: Any, topic: str, partition: int, key: bytes | None, value: bytes | None
) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **kafka_options(settings), acks="all", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value=value, key=key, partition=partition)
        return int(meta.offset)
    finally:
        await producer.stop()


async def _dead_letters(settings: Any, n: int, timeout_s: float) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        consumer.assign(
            [TopicPartition(settings.topic_dead_letter, p) for p in range(settings.partitions)]
        )
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=500)
            out += [json.loads(r.value) for rs in got.values() for r in rs]
    finally:
        await consumer.stop()
    return out


def send_and_settle(
    secured: Secured, topic: str, partition: int, key: bytes | None, value: bytes | None
) -> int:
    """Produce one message and wait until the worker's fence covers it; its offset."""
    s = secured.settings
    producer = PRODUCERS.get(s.app_id)
    if producer is None:
        producer = PRODUCERS[s.app_id] = Producer(s)
    offset = producer.send(topic, partition, key, value)
    wait_until(
        lambda: fences(secured.admin, s).get((topic, partition), -1) >= offset,
        60,
        f"{topic}/{partition}@{offset} applied",
        poll_s=0.02,
    )
    assert secured.worker.running(), secured.worker.tail()
    return offset


def counters(secured: Secured) -> dict[str, float]:
    """The worker's outcome counters, from one /metrics scrape."""
    reply = secured.worker.watch.get("/metrics")
    assert reply is not None
    wanted = {
        f"custscore_{n}"
        for n in ("state_writes_total", "duplicate_events_total", "forgotten_skipped_total")
    }
    out: dict[str, float] = {}
    for line in reply[1].decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            out[name[len("custscore_") :]] = float(value)
        elif name.startswith("custscore_dead_letter_total{"):
            reason = name.split('reason="', 1)[1].split('"', 1)[0]
            out[f"dl:{reason}"] = float(value)
    return out


def outcome(before: dict[str, float], after: dict[str, float]) -> str:
    moved = {k for k in after if after[k] != before.get(k, 0.0)}
    dead = sorted(k for k in moved if k.startswith("dl:"))
    if dead:
        return "dead_letter:" + ",".join(k[3:] for k in dead)
    if "duplicate_events_total" in moved:
        return "duplicate"
    if "forgotten_skipped_total" in moved:
        return "forgotten_skipped"
    if "state_writes_total" in moved:
        return "applied"
    return "nothing"


def test_every_case_is_applied_or_dead_lettered_and_the_worker_survives(
    secured: Secured, tmp_path: Path
) -> None:
    from fixtures.streaming import run_script

    s = secured.settings
    cases = load_cases()
    # the forgotten customer: one event, then `custscore forget` (as the ACL user)
    gone = {"purchase": s.topic_purchase}["purchase"]
    part = partition_for("bi-gone", s.partitions)
    send_and_settle(
        secured,
        gone,
        part,
        b"bi-gone",
        json.dumps(
            {"event_id": "bi-gone-0", "customer_id": "bi-gone", "ts": 852163200000, "amount": 5}
        ).encode(),
    )
    result = run_script(s, "forget", "bi-gone")
    assert result.returncode == 0, result.stderr
    # Cases expected to be dead-lettered go out together (their outcome is read back from
    # the dead-letter topic by source position); the others one at a time, judged by the
    # worker's counters, in corpus order (the duplicate needs its original first).
    observed: list[tuple[str, str, str]] = []
    positions: dict[tuple[str, int, int], tuple[str, str]] = {}
    producer = PRODUCERS.get(s.app_id) or PRODUCERS.setdefault(s.app_id, Producer(s))
    dead_cases = [c for c in cases if c["expect"].startswith("dead_letter:")]
    for case in dead_cases:
        topic = _topic(s, case["topic"])
        partition = _partition(case, s.partitions)
        offset = producer.send(topic, partition, case_key(case), case_value(case))
        positions[(topic, partition, offset)] = (case["name"], case["expect"])
    for topic, partition, offset in positions:
        wait_until(
            lambda t=topic, p=partition, o=offset: fences(secured.admin, s).get((t, p), -1) >= o,
            60,
            f"{topic}/{partition}@{offset} applied",
        )
    for case in cases:
        if case in dead_cases:
            continue
        topic = _topic(s, case["topic"])
        before = counters(secured)
        send_and_settle(
            secured, topic, _partition(case, s.partitions), case_key(case), case_value(case)
        )
        observed.append((case["name"], case["expect"], outcome(before, counters(secured))))
    # each dead letter names its source position and reason, and carries the original bytes
    dead = run_coro(_dead_letters(s, len(positions), 60))
    by_pos = {(d["source_topic"], d["partition"], d["offset"]): d for d in dead}
    for pos, (name, expect) in positions.items():
        got = by_pos.get(pos)
        observed.append(
            (name, expect, f"dead_letter:{got['reason']}" if got else "not dead-lettered")
        )
        if got is not None:
            raw = base64.b64decode(got["value_b64"]) if got["value_b64"] is not None else None
            case = next(c for c in cases if c["name"] == name)
            value = case_value(case)
            if got["envelope_index"] is None:
                assert raw == value, name
            else:  # one event of an envelope: its own bytes
                assert value is not None and raw is not None, name
                assert json.loads(raw) == json.loads(value)[got["envelope_index"]], name
    wrong = [o for o in observed if o[1] != o[2]]
    assert len(observed) == len(cases)
    assert not wrong, f"{len(wrong)} cases with another outcome: {wrong}"
    assert secured.worker.running()
    assert secured.worker.metric("custscore_redis_errors_total") == 0  # ACL allowed everything
    r = redis.Redis.from_url(s.redis_address)
    r.close()
    print(f"\nbad-input corpus: {len(cases)} cases, {len(positions)} dead letters, worker alive")
