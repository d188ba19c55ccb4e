"""End to end: the full CDNOW log through a real worker equals batch scoring, and a replay of
the same file changes nothing (same export, no new alert ids).

One worker subprocess, 8 partitions, the shared embedded broker and Valkey. Progress is
judged by the worker's own counters (events consumed, batches started = finished, state
writes quiet), never by end offsets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.stack import run_async
from fixtures.streaming import assert_same_scores, private_settings, run_script

from config.settings import Settings
from custscore.commands.datasets import find_cdnow, write_cdnow_events
from custscore.commands.replay import replay_events
from custscore.supervision import Settled, WorkerProcess, WorkerWatch, read_alerts
from models.events import read_event_csv
from models.scorefile import format_time
from streams.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

CDNOW_EVENTS = 69_659
CDNOW_CUSTOMERS = 23_570
JOIN_TIMEOUT_S = 120.0
CONSUME_TIMEOUT_S = 900.0


@pytest.fixture
def worker_settings(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> Iterator[tuple[Settings, WorkerWatch]]:
    settings = private_settings(kafka_bootstrap, redis_url, snapshot_interval_s=5.0)
    run_async(ensure_topics(settings))
    worker = WorkerProcess.start(settings, tmp_path / "worker.log")
    try:
        watch = WorkerWatch.for_settings(settings, worker)
        watch.wait_ready(settings.partitions, JOIN_TIMEOUT_S)
        yield settings, watch
    finally:
        worker.stop()
        assert not worker.running()


def _alert_ids(settings: Settings, settled: Settled) -> list[str]:
    expected = {
        settings.topic_win_back: settled.sample.alerts_of("win_back"),
        settings.topic_segment_change: settled.sample.alerts_of("segment_change"),
    }
    alerts = run_async(read_alerts(settings, expected, timeout_s=120.0))
    for topic, count in expected.items():
        assert len(alerts[topic]) >= count, f"{topic}: read {len(alerts[topic])} of {count}"
    return [a["alert_id"] for batch in alerts.values() for a in batch]


def test_full_cdnow_stream_equals_batch_and_replay_is_idempotent(
    worker_settings: tuple[Settings, WorkerWatch], tmp_path: Path
) -> None:
    settings, watch = worker_settings
    began = time.monotonic()
    events_csv = tmp_path / "cdnow.csv"
    write_cdnow_events(find_cdnow(), events_csv)
    log = read_event_csv(events_csv)
    assert log.events.shape[0] == CDNOW_EVENTS and not log.bad_rows

    # --- first pass: stream == batch
    first = run_async(replay_events(settings, log, None))
    assert first.produced == CDNOW_EVENTS
    settled = watch.wait_consumed(CDNOW_EVENTS, CONSUME_TIMEOUT_S)
    assert settled.sample.events_in == CDNOW_EVENTS
    assert sum(settled.sample.dead_letter.values()) == 0
    first_pass_s = time.monotonic() - began

    exported = tmp_path / "export.csv"
    result = run_script(settings, "export", "--out", str(exported))
    assert result.returncode == 0, result.stderr
    as_of = format_time(log.last_ts)
    assert as_of is not None and f"as of {as_of}" in result.stdout
    batch = tmp_path / "batch.csv"
    result = run_script(settings, "score", str(events_csv), "--as-of", as_of, "--out", str(batch))
    assert result.returncode == 0, result.stderr
    assert_same_scores(exported, batch, CDNOW_CUSTOMERS)

    ids_first = _alert_ids(settings, settled)
    assert ids_first, "the CDNOW replay raised no alert at all"

    # --- second pass: every event is a duplicate; nothing changes
    second = run_async(replay_events(settings, log, None))
    assert second.produced == CDNOW_EVENTS
    again = watch.wait_consumed(2 * CDNOW_EVENTS, CONSUME_TIMEOUT_S)
    assert again.sample.events_in == 2 * CDNOW_EVENTS
    assert again.sample.duplicates - settled.sample.duplicates == CDNOW_EVENTS

    re_exported = tmp_path / "export-again.csv"
    result = run_script(settings, "export", "--out", str(re_exported))
    assert result.returncode == 0, result.stderr
    assert re_exported.read_bytes() == exported.read_bytes()

    ids_all = _alert_ids(settings, again)
    new_ids = set(ids_all) - set(ids_first)
    assert not new_ids, f"{len(new_ids)} alert ids appeared only after the replay"
    print(
        f"\nCDNOW e2e: first pass (replay + settle) {first_pass_s:.1f} s, "
        f"whole test body {time.monotonic() - began:.1f} s, "
        f"{settled.sample.alerts_of('win_back'):,} win-backs, "
        f"{settled.sample.alerts_of('segment_change'):,} segment changes"
    )
