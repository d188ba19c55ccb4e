"""The alert stream is a function of the input (docs/alerts.md), on the real stack.

The same generated stream (purchases, visits and complaints of 600 customers, 1997 to mid
1998) is replayed twice, to two workers on the embedded broker and Valkey with their own
topics, key prefix and consumer group: one takes batches of 50 events, the other of 1,000.
Both must publish exactly the same set of alert ids, each with the same payload apart from
``emitted_at``, with none missing and none extra.

What makes the comparison exact, timer alerts included: every customer is evaluated at its
own event times and at its own due times (never at the partition watermark), so the alerts
up to any event time are fixed by the input; the watermark only decides how far the timer
sweep has got. The stream ends with one *sentinel* event per partition, 400 days after the
last real event (a visit of a customer of its own), so each partition's final watermark is
the same in both runs and far enough out that every silent customer walks through its due
chain (P(alive) and risk crossings, lifecycle stages, silence win-backs) on the timer alone.
A run is compared once it is settled, judged exactly from Redis (support.wait_settled):
every event applied (fences), no outbox entry left unpublished, nothing held back by the
event-time merge, and no due time at or before the watermark left unevaluated.

The same alerts are checked for purchase causes: no purchase causes a win-back or a
lifecycle move into at_risk, lapsed or lost.

They found an event-time merge race (a timer release running past a batch waiting for the
partition lock, tests/reliability/test_merge_race.py), fixed in streams/processor.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from fixtures.stack import run_async
from fixtures.streaming import private_settings
from reliability.support import (
    Worker,
    alert_table,
    bad_purchase_causes,
    compare_alerts,
    event_kinds,
    expected_fences,
    read_alert_ids,
    wait_applied,
    wait_settled,
)

from config.settings import Settings
from custscore.commands.replay import replay_events
from loadtest.generate import StreamSpec, write_csv
from models.events import EventLog, read_event_csv
from models.scorefile import format_time
from streams.keys import partition_for
from streams.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

DAY = 86_400
SPEC = StreamSpec(customers=600, seed=20240707, visit_rate=0.05, complaint_rate=0.01)
SENTINEL_AFTER_DAYS = 400
BATCH_SIZES = (50, 1_000)
# How long each run waits to fill a batch: with the default 50 ms the large run's batches close
# on time long before 1,000 events on a loaded machine (a mean of 88 against 45 in one CI run),
# so the two runs would be cut alike; half a second lets the large run's batches grow.
BATCH_WITHIN_S = {50: 0.05, 1_000: 0.5}
APPLY_TIMEOUT_S = 300.0
# The event-time merge gives up waiting for an input that still has data on the broker after
# max_task_idle_ms; from then on that input's events arrive late and the alerts depend on
# timing (docs/alerts.md names it as the exception). A 500 ms bound expired 2 to 7 times per
# run of this test on a loaded 2-core machine (docs/reliability.md); the default is 10 s,
# and the test sets a bound that does not expire and asserts that it did not.
MAX_TASK_IDLE_MS = 60_000


def sentinel_customers(partitions: int) -> list[str]:
    """One customer id per partition, of no generated customer."""
    out: dict[int, str] = {}
    k = 0
    while len(out) < partitions:
        customer = f"sentinel-{k}"
        out.setdefault(partition_for(customer, partitions), customer)
        k += 1
    return [out[p] for p in range(partitions)]


def write_stream(path: Path, partitions: int) -> EventLog:
    """The generated stream, then one sentinel visit per partition far past its end."""
    with path.open("w", encoding="utf-8") as fh:
        write_csv(SPEC, fh)
        ts_ms = (SPEC.end_ts + SENTINEL_AFTER_DAYS * DAY) * 1000
        for p, customer in enumerate(sentinel_customers(partitions)):
            fh.write(f"sentinel-event-{p},visit,{customer},{ts_ms},,\n")
    log = read_event_csv(path)
    assert not log.bad_rows
    return log


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> EventLog:
    return write_stream(tmp_path_factory.mktemp("alert-replay") / "events.csv", 8)


@dataclass
class Run:
    batch_size: int
    settings: Settings
    worker: Worker
    alerts: dict[str, list[dict[str, Any]]]
    metrics: dict[str, float]

    @property
    def mean_batch(self) -> float:
        return self.metrics["batch_size_sum"] / max(self.metrics["batch_size_count"], 1)


@pytest.fixture(scope="module")
def runs(
    kafka_bootstrap: str,
    redis_url: str,
    stream: EventLog,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[int, Run]]:
    """The stream through one worker per batch size, side by side, each run settled."""
    tmp_path = tmp_path_factory.mktemp("alert-replay-runs")
    out: dict[int, Run] = {}
    for n in BATCH_SIZES:
        settings = private_settings(
            kafka_bootstrap,
            redis_url,
            prefix=f"ar{n}x",
            app=f"alert-replay-{n}",
            batch_size=n,
            batch_within_s=BATCH_WITHIN_S[n],
            sweep_interval_s=0.5,
            max_task_idle_ms=MAX_TASK_IDLE_MS,
        )
        run_async(ensure_topics(settings))
        worker = Worker(f"batch{n}", settings, tmp_path / f"batch{n}.log")
        out[n] = Run(n, settings, worker, {}, {})
    client = redis.Redis.from_url(redis_url)
    workers = [r.worker for r in out.values()]
    try:
        # The whole stream is on the broker before a worker starts: the event-time merge
        # waits for an input only while the worker knows it has data there. An input that is
        # caught up as far as the worker's last fetch knows does not hold the others back
        # (Kafka Streams with max.task.idle.ms = 0), so events produced *while* a worker
        # consumes can arrive late, and then alerts depend on that timing (docs/alerts.md).
        for r in out.values():
            result = run_async(replay_events(r.settings, stream, None, create_topics=False))
            assert result.produced == stream.events.shape[0]
        began = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.wait_owns(w.settings.partitions)
        for r in out.values():
            expected = expected_fences(r.settings, stream)
            wait_applied(client, r.settings, expected, APPLY_TIMEOUT_S, workers)
            wait_settled(client, r.settings, APPLY_TIMEOUT_S, workers)
        settled_s = time.monotonic() - began
        for r in out.values():
            r.alerts = read_alert_ids(r.settings)
            r.metrics = {
                name: r.worker.metric(f"custscore_{name}")
                for name in (
                    "batch_size_count",
                    "batch_size_sum",
                    "merge_idle_expired_total",
                    "fence_conflicts_total",
                    "swept_customers_total",
                    "alerts_total",
                    "alerts_suppressed_total",
                )
            }
        print(f"\nalert replay: both runs applied and settled {settled_s:.1f} s after the start")
        yield out
    finally:
        for w in workers:
            w.stop()
        client.close()


def _causes(alerts: dict[str, dict[str, Any]], kinds: dict[str, int]) -> Counter[str]:
    names = {1: "purchase", 2: "visit", 3: "complaint"}
    out: Counter[str] = Counter()
    for alert in alerts.values():
        cause = alert["cause"]
        by = "timer" if cause["type"] == "timer" else names[kinds[cause["event_id"]]]
        out[f"{'win_back' if 'reason' in alert else 'segment_change'} by {by}"] += 1
    return out


def late_evaluations(alerts: dict[str, list[dict[str, Any]]], log: EventLog) -> int:
    """Event-caused alerts evaluated at a time other than their event's ``ts``: the event
    reached the customer after its clock had passed it, which an in-order input never does
    unless the merge let another input run ahead."""
    ts_of = dict(zip(log.event_ids, log.events["ts"].tolist(), strict=True))
    return sum(
        1
        for a in alert_table(alerts).values()
        if a["cause"]["type"] == "event"
        and a["event_ts"] != format_time(ts_of[a["cause"]["event_id"]])
    )


def test_batch_sizes_50_and_1000_publish_the_same_alerts(
    runs: dict[int, Run], stream: EventLog
) -> None:
    small, large = runs[50], runs[1_000]
    for r in (small, large):
        print(
            f"batch_size {r.batch_size}: {sum(len(v) for v in r.alerts.values()):,} alerts read, "
            f"metrics {r.metrics}"
        )
    for r in (small, large):
        assert r.metrics["merge_idle_expired_total"] == 0, "the merge gave up waiting"
    # the two runs really were cut differently (batches also close after batch_within_s)
    assert small.metrics["batch_size_sum"] <= 50 * small.metrics["batch_size_count"]
    assert large.mean_batch > 2 * small.mean_batch
    table = alert_table(large.alerts)  # also: redeliveries repeat their payload exactly
    alert_table(small.alerts)
    causes = _causes(table, event_kinds(stream))
    print(f"{len(table):,} distinct alerts: {dict(sorted(causes.items()))}")
    # the comparison covers what it should: alerts of every cause, timer ones included
    for what in (
        "segment_change by purchase",
        "segment_change by timer",
        "win_back by complaint",
        "win_back by timer",
    ):
        assert causes[what] > 0, f"no {what} alert: the stream no longer exercises it"

    diff = compare_alerts(small.alerts, large.alerts)
    late = {r.batch_size: late_evaluations(r.alerts, stream) for r in (small, large)}
    print(f"event-caused alerts evaluated after their event (late events): {late}")
    assert not diff, f"batch 50 vs 1,000: {len(diff)} differences, e.g.\n" + "\n".join(diff[:20])


def test_no_purchase_causes_a_win_back_or_a_lifecycle_fall(
    runs: dict[int, Run], stream: EventLog
) -> None:
    kinds = event_kinds(stream)
    for r in runs.values():
        bad = bad_purchase_causes(r.alerts, kinds)
        assert not bad, f"batch {r.batch_size}: {len(bad)} caused by a purchase, e.g. {bad[:10]}"
