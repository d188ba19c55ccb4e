"""Crash, rebalance and zombie tests (docs/design.md, "State and guarantees"): real workers on
the embedded broker and Valkey, a seeded CDNOW subset, faults at seeded points of progress.

Progress is the number of events applied in Redis (sum of the applied-offset fences), so a kill
point "at 41 % of the events" lands at the same place of the stream on every run, whatever the
machine's speed; where inside a batch it lands is timing.

Every run must end with an export equal, cell for cell, to the clean run's export and to
``custscore score`` on the same CSV, and with exactly the clean run's alerts: the same set of
alert ids, none missing and none extra, each with the clean run's payload apart from
``emitted_at`` (docs/design.md: the alert stream is a function of the input; delivery at least once,
never phantom). Duplicates (redeliveries after a kill) are allowed and counted; a duplicate
must repeat its payload. Besides, the last segment change published for each
(customer, scheme) must be the segment the committed state recorded.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import redis

from config.settings import Settings
from engine.segments import SCHEME_NAMES
from reliability.conftest import SEED, Run, Subset, fault_settings, finish, replay
from reliability.support import (
    Worker,
    alert_table,
    applied,
    compare_alerts,
    compare_scores,
    wait_progress,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.timeout(900),
]


def kill_points(seed: int, total: int, n: int) -> list[int]:
    """``n`` sorted, distinct progress points (events applied) in the middle 80 % of the run."""
    rng = random.Random(seed)
    return sorted(rng.sample(range(total // 10, total * 9 // 10), n))


def final_segments(client: redis.Redis, settings: Settings) -> dict[tuple[str, str], str]:
    """(customer, scheme) -> the segment the stored state last recorded (seg_* bookkeeping)."""
    from engine.state import decode_states
    from streams.alert_payloads import _SCHEME_VALUES
    from streams.keys import PartitionKeys

    out: dict[tuple[str, str], str] = {}
    fields = ("seg_rfm", "seg_tier", "seg_abcd", "seg_quadrant", "seg_lifecycle")
    for p in range(settings.partitions):
        keys = PartitionKeys(settings.redis_key_prefix, p, settings.state_buckets)
        records = [
            (customer.decode(), blob)
            for name in client.scan_iter(match=keys.bucket_pattern, count=1000)
            for customer, blob in client.hgetall(name).items()
        ]
        if not records:
            continue
        states = decode_states([blob for _, blob in records])
        for (customer, _), st in zip(records, states, strict=True):
            for scheme, f in enumerate(fields, start=1):
                code = int(st[f]) - 1
                if code >= 0:
                    out[(customer, SCHEME_NAMES[scheme])] = _SCHEME_VALUES[scheme][code]
    return out


def check_against_clean(
    run: Run, clean: Run, subset: Subset, label: str, client: redis.Redis
) -> dict[str, int]:
    """Export == clean export == batch scores, exactly; alerts == the clean run's alerts."""
    diff = compare_scores(run.export, clean.export)
    assert not diff, f"{label}: export != clean export in {len(diff)} cells, e.g. {diff[:5]}"
    diff = compare_scores(run.export, subset.batch_scores)
    assert not diff, f"{label}: export != batch scores in {len(diff)} cells, e.g. {diff[:5]}"
    # At least once, checked against the run's own committed state: the last segment change
    # published for a (customer, scheme) -- topic order is publish order, one customer lives
    # in one partition -- is the segment the committed state recorded.
    last: dict[tuple[str, str], str] = {}
    for alert in run.alerts[run.settings.topic_segment_change]:
        last[(alert["customer_id"], alert["scheme"])] = alert["to"]
    recorded = final_segments(client, run.settings)
    stale = {k: (v, recorded.get(k)) for k, v in last.items() if recorded.get(k) != v}
    assert not stale, (
        f"{label}: {len(stale)} last alerts disagree with the state: {list(stale.items())[:5]}"
    )
    # Exactly the clean run's alerts: same ids (none missing, none extra), same payloads.
    got, want = alert_table(run.alerts), alert_table(clean.alerts)
    report: dict[str, int] = {
        "segment_changes_checked": len(last),
        "clean_ids": len(want),
        "missing": len(want.keys() - got.keys()),
        "extra": len(got.keys() - want.keys()),
        "emitted": sum(len(v) for v in run.alerts.values()),
        "emitted_distinct": len(got),
    }
    print(f"\n{label}: {report}")
    diff = compare_alerts(run.alerts, clean.alerts)
    assert not diff, f"{label}: {len(diff)} alerts differ from the clean run's, e.g.\n" + (
        "\n".join(diff[:20])
    )
    return report


def test_three_sigkills_at_seeded_points(
    kafka_bootstrap: str, redis_url: str, subset: Subset, clean_run: Run, tmp_path: Path
) -> None:
    settings = fault_settings(kafka_bootstrap, redis_url)
    client = redis.Redis.from_url(redis_url)
    points = kill_points(SEED, subset.events, 3)
    workers: list[Worker] = []
    try:
        worker = Worker("w0", settings, tmp_path / "w0.log").start()
        workers.append(worker)
        worker.wait_owns(settings.partitions)
        began = time.monotonic()
        replay(settings, subset.log)
        for i, point in enumerate(points, start=1):
            at = wait_progress(client, settings, point, workers)
            worker.kill()
            print(f"SIGKILL {worker.name} at {at} applied (point {point} of {subset.events})")
            worker = Worker(f"w{i}", settings, tmp_path / f"w{i}.log").start()
            workers.append(worker)
        run = finish(settings, subset, workers, tmp_path, began, client)
        assert not [w for w in workers if w.expected_alive and not w.running()]
    finally:
        for w in workers:
            w.stop()
    check_against_clean(run, clean_run, subset, "3 x SIGKILL", client)


def test_rebalance_one_killed_another_started(
    kafka_bootstrap: str, redis_url: str, subset: Subset, clean_run: Run, tmp_path: Path
) -> None:
    settings = fault_settings(kafka_bootstrap, redis_url)
    client = redis.Redis.from_url(redis_url)
    kill_at, start_at = kill_points(SEED + 1, subset.events, 2)
    a = Worker("a", settings, tmp_path / "a.log").start()
    b = Worker("b", settings, tmp_path / "b.log").start()
    workers = [a, b]
    try:
        wait_until(
            lambda: len(set(a.owned()) | set(b.owned())) == settings.partitions, 180, "a+b own all"
        )
        owned = (a.owned(), b.owned())
        began = time.monotonic()
        replay(settings, subset.log)
        wait_progress(client, settings, kill_at, workers)
        a.kill()
        wait_progress(client, settings, start_at, workers)
        c = Worker("c", settings, tmp_path / "c.log").start()
        workers.append(c)
        run = finish(settings, subset, workers, tmp_path, began, client)
        conflicts = b.metric("custscore_fence_conflicts_total") + c.metric(
            "custscore_fence_conflicts_total"
        )
        print(
            f"\nrebalance: {conflicts:.0f} fence conflicts; a owned {owned[0]}, b {owned[1]}; "
            f"killed a at {kill_at}, "
            f"started c at {start_at}; c owns {c.owned()} b owns {b.owned()}"
        )
    finally:
        for w in workers:
            w.stop()
    # a batch of B in flight while its partition moves to C can be refused (and redone): a
    # refused commit writes nothing, its outbox entry included, so its alerts never go out
    check_against_clean(run, clean_run, subset, "rebalance", client)


def test_zombie_paused_past_session_timeout_cannot_overwrite(
    kafka_bootstrap: str, redis_url: str, subset: Subset, clean_run: Run, tmp_path: Path
) -> None:
    # small batches: a batch is nearly always in flight when the zombie is stopped
    settings = fault_settings(kafka_bootstrap, redis_url, batch_size=200)
    client = redis.Redis.from_url(redis_url)
    (pause_at,) = kill_points(SEED + 2, subset.events, 1)
    zombie = Worker("zombie", settings, tmp_path / "zombie.log").start()
    workers = [zombie]
    try:
        zombie.wait_owns(settings.partitions)
        began = time.monotonic()
        replay(settings, subset.log)
        wait_progress(client, settings, pause_at, workers)

        def in_flight() -> bool:
            m = zombie.metrics()
            return m is not None and not m.idle

        # Catch the zombie between its read and its commit, for certain: with writes paused its
        # commit script blocks in Valkey; stopped there, its connections are dropped (the queued
        # commit with them), so once resumed it must retry that commit against a generation the
        # heir has moved. (Stopping it at a random instant often lands between batches: a batch
        # takes a few milliseconds.)
        client.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
        try:
            wait_until(in_flight, 15, "a batch in flight")
            time.sleep(1.0)  # still in flight: its commit is the blocked one
            assert in_flight()
            zombie.signal(signal.SIGSTOP)
            client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
        paused_at = applied(client, settings)
        heir = Worker("heir", settings, tmp_path / "heir.log").start()
        workers.append(heir)
        heir.wait_owns(settings.partitions, timeout_s=180)  # the zombie's session expired
        ahead = paused_at + min(200, (subset.events - paused_at) // 2)
        wait_until(lambda: applied(client, settings) > ahead, 120, "the heir moves on")
        zombie.signal(signal.SIGCONT)
        wait_until(
            lambda: zombie.metric("custscore_fence_conflicts_total") >= 1,
            60,
            "the zombie's stale commit to be refused",
        )
        run = finish(settings, subset, workers, tmp_path, began, client)
        conflicts = zombie.metric("custscore_fence_conflicts_total")
        print(
            f"\nzombie: paused at {paused_at} applied; fence conflicts {conflicts}; "
            f"zombie owns {zombie.owned()}, heir {heir.owned()}"
        )
    finally:
        for w in workers:
            w.stop()
    # The zombie's refused commits published nothing (the outbox is written by the commit and
    # published after it), so no alert computed from its stale read may reach a topic.
    assert conflicts >= 1
    check_against_clean(run, clean_run, subset, "zombie", client)


def test_sigkill_mid_envelope_backfill(
    kafka_bootstrap: str, redis_url: str, subset: Subset, clean_run: Run, tmp_path: Path
) -> None:
    """The same stream as batch envelopes (issue 17) while the worker is SIGKILLed once in the
    middle: one envelope offset is applied all or nothing, so the export equals the clean
    run's and ``custscore score``, and the alerts are exactly the clean run's."""
    # small envelopes and small batches (20 envelopes): many commits, so the kill lands
    # between two of them, with envelopes of the batch in flight
    settings = fault_settings(kafka_bootstrap, redis_url, batch_size=20)
    client = redis.Redis.from_url(redis_url)
    workers: list[Worker] = []
    try:
        worker = Worker("e0", settings, tmp_path / "e0.log").start()
        workers.append(worker)
        worker.wait_owns(settings.partitions)
        began = time.monotonic()
        fences = replay(settings, subset.log, envelope=5)
        envelopes = sum(n + 1 for n in fences.values())
        assert envelopes < subset.events // 3  # they really are envelopes
        point = kill_points(SEED + 1, envelopes, 1)[0]
        at = wait_progress(client, settings, point, workers)
        assert at < envelopes, "the worker had applied everything before the kill"
        worker.kill()
        print(f"SIGKILL at {at} envelopes applied (point {point} of {envelopes})")
        workers.append(Worker("e1", settings, tmp_path / "e1.log").start())
        run = finish(settings, subset, workers, tmp_path, began, client, fences)
    finally:
        for w in workers:
            w.stop()
    check_against_clean(run, clean_run, subset, "SIGKILL mid envelope backfill", client)
