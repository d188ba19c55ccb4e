"""``custscore export / inspect / forget`` against state written to the real Valkey, and the
one-line errors of every streaming command when nothing runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from fixtures.stack import run_async
from fixtures.streaming import private_settings
from streaming_support import cli_env, offline_settings, write_events

from config.settings import Settings
from custscore.cli import main
from custscore.clients import kafka_options, state_store
from engine.batch_scoring import fold_events, score_states
from engine.segments import RFM_SEGMENT_NAMES, TIER_NAMES
from engine.state import STATE_DTYPE
from models.bundle import load_model
from models.events import EventLog, read_event_csv
from models.scorefile import format_time, write_scores_csv
from streams.keys import bucket_of, partition_for
from streams.store import Commit

EVENTS = [
    ("e1", "purchase", "alice", "1997-01-01T00:00:00Z", "120.50", ""),
    ("e2", "purchase", "alice", "1997-03-15T00:00:00Z", "80", ""),
    ("e3", "visit", "alice", "1997-06-01T00:00:00Z", "", ""),
    ("e4", "purchase", "bob", "1997-02-01T00:00:00Z", "15", ""),
    ("e5", "complaint", "bob", "1997-04-01T00:00:00Z", "", "4"),
    ("e6", "visit", "carol", "1997-05-01T00:00:00Z", "", ""),
    ("e7", "purchase", "dave", "1997-06-30T00:00:00Z", "42", ""),
    ("e8", "purchase", "erin", "1997-01-20T00:00:00Z", "300", ""),
    ("e9", "purchase", "erin", "1997-02-20T00:00:00Z", "310", ""),
]
# per-partition watermarks differ: the export evaluates at the largest one
LAST_TS = "1997-06-30T00:00:00Z"


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    return private_settings(kafka_bootstrap, redis_url, partitions=4)


def _fold(path: Path) -> tuple[EventLog, np.ndarray]:
    log = read_event_csv(path)
    bundle = load_model(None)
    return log, fold_events(len(log.customer_ids), log.events, bundle.scoring)


async def _store_states(settings: Settings, log: EventLog, states: np.ndarray) -> None:
    """Write folded states the way the worker does: per partition, with watermark and due."""
    client = aioredis.Redis.from_url(settings.redis_address)
    store = state_store(client, settings)
    try:
        by_partition: dict[int, list[int]] = {}
        for row, customer in enumerate(log.customer_ids):
            by_partition.setdefault(partition_for(customer, settings.partitions), []).append(row)
        for partition, rows in by_partition.items():
            watermark = max(int(states[r]["last_event"]) for r in rows)
            commit = Commit(partition=partition, generation=0, watermark=watermark)
            for r in rows:
                customer = log.customer_ids[r]
                commit.states[customer] = states[r : r + 1].tobytes()
                commit.due[customer] = watermark + 86_400
            await store.commit(commit)
    finally:
        await client.aclose()


@pytest.fixture
def stored(settings: Settings, tmp_path: Path) -> tuple[Settings, Path, EventLog, np.ndarray]:
    path = write_events(tmp_path / "events.csv", EVENTS)
    log, states = _fold(path)
    run_async(_store_states(settings, log, states))
    return settings, path, log, states


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# --------------------------------------------------------------------------- export


def test_export_equals_batch_scoring_at_the_largest_watermark(
    stored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    settings, _, log, states = stored
    cli_env(settings, monkeypatch)
    out = tmp_path / "export.csv"
    assert main(["export", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"exported 5 customers to {out} as of {LAST_TS}" in printed
    assert "largest partition watermark" in printed

    bundle = load_model(None)
    scores, _ = score_states(states, log.last_ts, bundle.scoring, bundle.rfm_map)
    expected = tmp_path / "batch.csv"
    write_scores_csv(expected, log.customer_ids, scores)
    assert out.read_bytes() == expected.read_bytes()


@pytest.mark.parametrize(
    "as_of", ["1998-01-01T00:00:00Z", "1998-01-01T01:00:00+01:00", "883612800000"]
)
def test_export_as_of_accepts_rfc3339_and_epoch_ms(
    stored, as_of: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    settings, _, log, states = stored
    cli_env(settings, monkeypatch)
    out = tmp_path / "export.csv"
    assert main(["export", "--out", str(out), "--as-of", as_of]) == 0
    assert "as of 1998-01-01T00:00:00Z (--as-of" in capsys.readouterr().out
    bundle = load_model(None)
    scores, _ = score_states(states, 883_612_800, bundle.scoring, bundle.rfm_map)
    expected = tmp_path / "batch.csv"
    write_scores_csv(expected, log.customer_ids, scores)
    assert out.read_bytes() == expected.read_bytes()


@pytest.mark.parametrize("as_of", ["yesterday", "1998-01-01T00:00:00", "1998-13-01T00:00:00Z"])
def test_export_bad_as_of_is_one_line(
    as_of: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cli_env(offline_settings(), monkeypatch)
    assert main(["export", "--out", str(tmp_path / "x.csv"), "--as-of", as_of]) == 2
    err = capsys.readouterr().err
    assert _lines(err) == [err.strip()] and err.startswith("custscore: error: --as-of: ")
    assert not (tmp_path / "x.csv").exists()


def test_export_with_no_state_is_one_line(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cli_env(settings, monkeypatch)
    assert main(["export", "--out", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "no customer state under key prefix" in err


# --------------------------------------------------------------------------- inspect


def test_inspect_shows_every_state_field_scores_and_segments(
    stored, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    settings, _, log, states = stored
    cli_env(settings, monkeypatch)
    assert main(["inspect", "erin"]) == 0
    view: dict[str, Any] = json.loads(capsys.readouterr().out)
    partition = partition_for("erin", settings.partitions)
    row = log.customer_ids.index("erin")
    assert view["customer_id"] == "erin" and view["partition"] == partition
    # evaluated at erin's own partition watermark, not the global one
    assert view["as_of"] == format_time(int(states[row]["last_event"]))
    assert set(view["state"]) == set(STATE_DTYPE.names or ())
    for name in ("purchase_days", "gross_cents", "first_purchase", "last_purchase"):
        assert view["state"][name] == int(states[row][name])
    assert view["state"]["ring_cents"] == states[row]["ring_cents"].tolist()
    assert view["state_times"]["first_purchase"] == "1997-01-20T00:00:00Z"
    assert view["record_bytes"] == STATE_DTYPE.itemsize
    assert view["due_index"] == format_time(int(states[row]["last_event"]) + 86_400)
    scores = view["scores"]
    assert scores["frequency"] == 1 and scores["window_monetary"] == pytest.approx(610.0)
    assert scores["rfm_segment"] in RFM_SEGMENT_NAMES[1:]
    assert scores["value_tier"] in TIER_NAMES[1:]
    assert view["population_cuts"]["source"] == "params file"


def test_inspect_unknown_customer_is_one_line_exit_1(
    stored, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    settings = stored[0]
    cli_env(settings, monkeypatch)
    assert main(["inspect", "nobody"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(_lines(err)) == 1
    assert err.startswith("custscore: error: unknown customer 'nobody'")


# --------------------------------------------------------------------------- forget


async def _tombstones(settings: Settings, customer: str) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    try:
        tp = TopicPartition(settings.topic_scores, partition_for(customer, settings.partitions))
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        for _ in range(20):
            batch = await consumer.getmany(tp, timeout_ms=500)
            found += [r for r in batch.get(tp, []) if r.key == customer.encode()]
            if found:
                break
    finally:
        await consumer.stop()
    return found


async def _keys_of(settings: Settings, customer: str) -> tuple[bool, float | None]:
    """(state stored, due bound of the customer's bucket)."""
    client = aioredis.Redis.from_url(settings.redis_address)
    store = state_store(client, settings)
    keys = store.keys(partition_for(customer, settings.partitions))
    try:
        exists = bool(await client.hexists(*keys.state(customer)))
        bucket = str(bucket_of(customer, store.buckets))
        return exists, await client.zscore(keys.due, bucket)
    finally:
        await client.aclose()


def test_forget_erases_state_and_tombstones_scores(
    stored, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    settings = stored[0]
    assert run_async(_keys_of(settings, "bob"))[0]
    assert run_async(_keys_of(settings, "bob"))[1] is not None
    cli_env(settings, monkeypatch)
    assert main(["forget", "bob"]) == 0
    out = capsys.readouterr().out
    partition = partition_for("bob", settings.partitions)
    assert out.startswith(
        f"forgot customer 'bob': deleted the state record (partition {partition}); "
        f"tombstone written to {settings.topic_scores} (partition {partition}, offset "
    )
    # the state is gone; the due index names buckets, never customers, so nothing of bob is left
    assert not run_async(_keys_of(settings, "bob"))[0]
    records = run_async(_tombstones(settings, "bob"))
    assert len(records) == 1 and records[0].value is None
    # the others are untouched
    assert run_async(_keys_of(settings, "alice"))[0]

    assert main(["inspect", "bob"]) == 1
    capsys.readouterr()
    assert main(["forget", "bob"]) == 0  # again: nothing stored, still a tombstone
    assert capsys.readouterr().out.startswith(
        f"nothing was stored for customer 'bob' (partition {partition}); tombstone written"
    )
    assert len(run_async(_tombstones(settings, "bob"))) >= 1


# --------------------------------------------------------------------------- no stack


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["export", "--out", "{tmp}/x.csv"], "no Redis answers at redis://127.0.0.1:"),
        (["inspect", "alice"], "no Redis answers at redis://127.0.0.1:"),
        (["forget", "alice"], "no Kafka broker answers at 127.0.0.1:"),
        (["replay", "{tmp}/events.csv"], "no Kafka broker answers at 127.0.0.1:"),
    ],
)
def test_commands_without_a_stack_fail_in_one_line(
    argv: list[str], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    write_events(tmp_path / "events.csv", EVENTS)
    cli_env(offline_settings(), monkeypatch)
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = _lines(err)
    assert len(lines) == 1 and lines[0].startswith("custscore: error: ") and needle in err
    assert "custscore stack up" in err and "Traceback" not in err
