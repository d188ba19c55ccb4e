"""End to end: the CDNOW sample through a real worker equals batch scoring, and a replay of
part of the same file changes nothing (same export, no alert published again).

The sample (the bundled 1/10 CDNOW log) keeps the suite inside CI's budget; the full log goes
through the same path in `make demo`, and is batch-scored against lifetimes in
tests/cli/test_score.py.

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

# The bundled 1/10 CDNOW sample (the full log goes through `make demo`, and through batch
# scoring in tests/cli/test_score.py): (events, customers)
SAMPLE = (6_919, 2_357)
REPLAYED = 2_000  # events replayed a second time
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


def test_cdnow_stream_equals_batch_and_replay_is_idempotent(
    worker_settings: tuple[Settings, WorkerWatch], tmp_path: Path
) -> None:
    settings, watch = worker_settings
    began = time.monotonic()
    events_csv = tmp_path / "cdnow.csv"
    write_cdnow_events(find_cdnow(sample=True), events_csv)
    log = read_event_csv(events_csv)
    assert not log.bad_rows
    CDNOW_EVENTS, CDNOW_CUSTOMERS = log.events.shape[0], len(log.customer_ids)
    assert (CDNOW_EVENTS, CDNOW_CUSTOMERS) == SAMPLE

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

    # --- second pass: the first REPLAYED events again, every one a duplicate; nothing changes
    # (a prefix: the dedupe path is the same for every event)
    again_log = read_event_csv(events_csv)
    keep = slice(0, REPLAYED)
    again_log.events = again_log.events[keep]
    again_log.event_ids = again_log.event_ids[keep]
    second = run_async(replay_events(settings, again_log, None))
    assert second.produced == REPLAYED
    again = watch.wait_consumed(CDNOW_EVENTS + REPLAYED, CONSUME_TIMEOUT_S)
    assert again.sample.events_in == CDNOW_EVENTS + REPLAYED
    assert again.sample.duplicates - settled.sample.duplicates == REPLAYED

    re_exported = tmp_path / "export-again.csv"
    result = run_script(settings, "export", "--out", str(re_exported))
    assert result.returncode == 0, result.stderr
    assert re_exported.read_bytes() == exported.read_bytes()
    # no alert was published again: every alert counter stands where the first pass left it
    assert again.sample.alerts == settled.sample.alerts
    print(
        f"\nCDNOW e2e: first pass (replay + settle) {first_pass_s:.1f} s, "
        f"whole test body {time.monotonic() - began:.1f} s, "
        f"{settled.sample.alerts_of('win_back'):,} win-backs, "
        f"{settled.sample.alerts_of('segment_change'):,} segment changes"
    )
