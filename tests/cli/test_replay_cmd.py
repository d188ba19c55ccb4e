"""``custscore replay``: speed parsing, pacing math, wire format, order and pacing on a broker."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.stack import run_async
from fixtures.streaming import private_settings
from streaming_support import cli_env, offline_settings, write_events

from config.settings import Settings
from custscore.cli import main
from custscore.clients import kafka_options
from custscore.commands.replay import (
    ProgressBar,
    parse_speed,
    release_offsets,
    released_until,
    replay_events,
)
from custscore.errors import CliError
from engine.state import complaint_key
from models.events import read_event_csv
from streams.codec import DecodedEvent, EventDecoder, encode_event
from streams.keys import partition_for

DAY = 86_400


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("text", "speed"), [("max", None), ("MAX", None), ("100x", 100.0), ("2.5", 2.5), ("1x", 1.0)]
)
def test_parse_speed(text: str, speed: float | None) -> None:
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0x", "-3x", "fast", "x", "infx", "nan", ""])
def test_parse_speed_rejects(text: str) -> None:
    with pytest.raises(CliError, match="--speed"):
        parse_speed(text)


def test_release_offsets_scale_event_time_from_the_first_event() -> None:
    ts = np.array([1_000, 1_000, 1_100, 2_000, 11_000], dtype=np.int64)
    assert release_offsets(ts, 100.0).tolist() == [0.0, 0.0, 1.0, 10.0, 100.0]
    assert release_offsets(ts, None).tolist() == [0.0] * 5
    assert release_offsets(np.array([], dtype=np.int64), 10.0).shape == (0,)


def test_released_until_takes_due_events_up_to_the_batch() -> None:
    offsets = np.array([0.0, 0.0, 1.0, 10.0, 100.0])
    assert released_until(offsets, 0, 0.5, 100) == 2  # the two at 0 s
    assert released_until(offsets, 0, 1.0, 100) == 3  # due at exactly 1.0 s is released
    assert released_until(offsets, 0, 1.0, 2) == 2  # batch bound
    assert released_until(offsets, 2, 5.0, 100) == 3
    assert released_until(offsets, 3, 5.0, 100) == 3  # nothing due yet: no progress
    assert released_until(offsets, 3, 1e9, 100) == 5  # never past the end
    zeros = np.zeros(12)
    assert released_until(zeros, 0, 0.0, 5) == 5  # max speed: batch by batch
    assert released_until(zeros, 10, 0.0, 5) == 12


@pytest.mark.parametrize(
    ("kind", "cents", "severity", "fields"),
    [
        (1, 1234, 0, {"amount": 12.34}),
        (1, -500, 0, {"amount": -5.0}),
        (1, 0, 0, {"amount": 0.0}),
        (2, 0, 0, {}),
        (3, 0, 4, {"severity": 4}),
    ],
)
def test_encode_event_matches_the_input_contract(
    kind: int, cents: int, severity: int, fields: dict[str, Any]
) -> None:
    """The JSON has exactly the contract's fields and the stream decoder reads back the event."""
    value = encode_event(kind, "e-1", "cust-ü", 883_612_800, cents, severity, 0)
    body = json.loads(value)
    assert body == {"event_id": "e-1", "customer_id": "cust-ü", "ts": 883_612_800_000, **fields}
    topic = {1: "p", 2: "v", 3: "c"}[kind]
    decoder = EventDecoder(
        {"p": "purchase", "v": "visit", "c": "complaint"},
        max_payload_bytes=4096,
        max_future_skew_s=0,
    )
    decoded = decoder.decode(topic, "cust-ü".encode(), value, wall_now=2e9)
    # an open complaint is filed under its own event id (no complaint_id given)
    key = complaint_key("e-1") if kind == 3 else 0
    assert decoded == DecodedEvent("e-1", "cust-ü", kind, 883_612_800, cents, severity, 0, key, 0)


def test_progress_bar_on_a_pipe_prints_deciles_and_the_end_once() -> None:
    out = io.StringIO()
    bar = ProgressBar("replay", out)
    for done in range(0, 101, 5):
        bar(done, 100, done / 10)
    bar(100, 100, 10.0)  # repeated final call: nothing more
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("replay: 0% 0/100 events")
    assert lines[-1].startswith("replay: 100% 100/100 events")
    assert len(lines) == 11
    assert "\r" not in out.getvalue()


def test_progress_bar_on_a_terminal_redraws_one_line() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    bar = ProgressBar("replay", out, width=10)
    bar(0, 4, 0.0)
    bar(4, 4, 2.0)
    bar(4, 4, 3.0)
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "[##########] 100.0% 4/4 events" in text


# --------------------------------------------------------------------------- on the broker


async def _consume(settings: Settings, topics: list[str], count: int) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        consumer.assign([TopicPartition(t, p) for t in topics for p in range(settings.partitions)])
        await consumer.seek_to_beginning()
        for _ in range(60):
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
            if len(records) >= count:
                break
    finally:
        await consumer.stop()
    return records


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    return private_settings(kafka_bootstrap, redis_url, partitions=3)


def test_replay_produces_in_event_time_order_keyed_and_partitioned(
    settings: Settings, tmp_path: Path
) -> None:
    # File order is not time order; one bad row is skipped.
    rows = []
    for i in range(60):
        day = (i * 37) % 60
        customer = f"c{i % 7}"
        kind = ("purchase", "visit", "complaint")[i % 3]
        amount = f"{i}.25" if kind == "purchase" else ""
        severity = str(1 + i % 5) if kind == "complaint" else ""
        ts_ms = str((1_000_000 + day * DAY) * 1000)
        rows.append((f"e{i}", kind, customer, ts_ms, amount, severity))
    rows.append(("bad", "purchase", "c1", "not-a-time", "1", ""))
    path = write_events(tmp_path / "events.csv", rows)
    log = read_event_csv(path)
    result = run_async(replay_events(settings, log, None, batch=7))
    assert result.produced == 60
    assert result.by_type == {"purchase": 20, "visit": 20, "complaint": 20}

    topics = [settings.topic_purchase, settings.topic_visit, settings.topic_complaint]
    records = run_async(_consume(settings, topics, 60))
    assert len(records) == 60
    seen = set()
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for record in records:
        body = json.loads(record.value)
        assert record.key == body["customer_id"].encode()
        assert record.partition == partition_for(body["customer_id"], settings.partitions)
        kind = {settings.topic_purchase: 0, settings.topic_visit: 1, settings.topic_complaint: 2}
        assert int(body["event_id"][1:]) % 3 == kind[record.topic]
        seen.add(body["event_id"])
        by_partition.setdefault((record.topic, record.partition), []).append(
            (record.offset, body["ts"])
        )
    assert seen == {f"e{i}" for i in range(60)}
    for stamps in by_partition.values():
        ts_in_offset_order = [ts for _, ts in sorted(stamps)]
        assert ts_in_offset_order == sorted(ts_in_offset_order)


def test_paced_replay_sends_each_event_at_its_scaled_time(
    settings: Settings, tmp_path: Path
) -> None:
    # 0, 0, 0.5, 1 and 2 days of event time at 1 day per second.
    days = [0.0, 0.0, 0.5, 1.0, 2.0]
    rows = [
        (f"p{i}", "visit", "same-customer", str(int((1_000_000 + d * DAY) * 1000)), "", "")
        for i, d in enumerate(days)
    ]
    log = read_event_csv(write_events(tmp_path / "paced.csv", rows))
    result = run_async(replay_events(settings, log, float(DAY), batch=100))
    assert 2.0 <= result.seconds < 3.0
    records = sorted(
        run_async(_consume(settings, [settings.topic_visit], 5)), key=lambda r: r.offset
    )
    assert [json.loads(r.value)["event_id"] for r in records] == [f"p{i}" for i in range(5)]
    sent = [(r.timestamp - records[0].timestamp) / 1000 for r in records]  # wall ms at append
    for got, want in zip(sent, days, strict=True):
        assert want - 0.02 <= got <= want + 0.3, (sent, days)


# --------------------------------------------------------------------------- the command


def test_replay_command_reports_bad_rows_and_the_rate(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    path = write_events(
        tmp_path / "events.csv",
        [
            ("a", "purchase", "c1", "1997-01-01T00:00:00Z", "10", ""),
            ("b", "purchase", "c2", "1997-01-02T00:00:00Z", "oops", ""),
            ("c", "visit", "c1", "1997-01-03T00:00:00Z", "", ""),
        ],
    )
    cli_env(settings, monkeypatch)
    assert main(["replay", str(path), "--speed", "max", "--batch", "1"]) == 0
    out, err = capsys.readouterr()
    assert "skipped 1 bad row(s) of 3" in err and "line 3" in err and "bad_amount" in err
    assert "100% 2/2 events" in err
    first, last = out.splitlines()
    target = settings.bootstrap_servers
    assert first == f"replaying 2 events of 1 customer(s) to {target} at max speed"
    assert last.startswith("produced 2 events in ") and last.endswith("events/s)")


def test_replay_missing_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cli_env(offline_settings(), monkeypatch)
    assert main(["replay", str(tmp_path / "nope.csv")]) == 1
    _, err = capsys.readouterr()
    assert err == f"custscore: error: event file not found: {tmp_path / 'nope.csv'}\n"


def test_replay_bad_speed_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cli_env(offline_settings(), monkeypatch)
    assert main(["replay", str(tmp_path / "x.csv"), "--speed", "warp"]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "--speed must be 'max' or a positive factor" in err


def test_encoded_resolution_carries_its_complaint_id() -> None:
    """A replayed resolution names the complaint it resolves, as the decoder expects."""
    from streams.codec import DecodedEvent, EventDecoder, encode_event

    decoder = EventDecoder(
        {"p": "purchase", "v": "visit", "c": "complaint"},
        max_payload_bytes=4096,
        max_future_skew_s=86400,
    )
    opened = decoder.decode("c", b"k", encode_event(3, "c-1", "k", 883_612_800, 0, 4, 0), 2e9)
    value = encode_event(3, "r-1", "k", 883_612_900, 0, 1, 1, complaint_id="c-1")
    assert json.loads(value)["complaint_id"] == "c-1"
    resolution = decoder.decode("c", b"k", value, 2e9)
    assert isinstance(opened, DecodedEvent) and isinstance(resolution, DecodedEvent)
    assert resolution.refers == 1 and resolution.complaint == opened.complaint
