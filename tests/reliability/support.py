"""Fault-test harness: worker processes that can be killed, paused and restarted; progress and
completion judged from the applied-offset fences in Redis (never from broker end offsets).

A replay of a fresh topic set gives every (input topic, partition) offsets 0..n-1, and the log
tells how many events went to each, so "everything applied" is exact: every fence in Redis equals
n-1. The same fences summed give "events applied so far", which is where the seeded kill points
are placed.
"""

from __future__ import annotations

import asyncio
import csv
import math
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from config.settings import Settings
from custscore.processes import free_port
from custscore.supervision import (
    MetricsSample,
    WorkerProcess,
    WorkerWatch,
    alert_records,
    metric_totals,
)
from models.events import EventLog
from models.scorefile import read_scores_csv
from streams.keys import PartitionKeys, partition_for
from streams.topics import TopicTable

__all__ = [
    "FAULT_SETTINGS",
    "PRODUCERS",
    "Worker",
    "alert_table",
    "applied",
    "bad_purchase_causes",
    "cdnow_subset",
    "compare_alerts",
    "compare_scores",
    "event_kinds",
    "expected_fences",
    "read_alert_ids",
    "settle_state",
    "wait_applied",
    "wait_progress",
    "wait_quiet",
    "wait_settled",
]

ROOT = Path(__file__).resolve().parents[2]
# A short session timeout lets a dead or paused member be evicted in seconds instead of the
# default 60 s (the heartbeat follows it: a fifth of it).
FAULT_SETTINGS = {"session_timeout_s": 6.0, "rebalance_timeout_s": 20.0}


# --------------------------------------------------------------------------- data


def cdnow_subset(src: Path, out: Path, customers: int, seed: int) -> Path:
    """A seeded sample of ``customers`` CDNOW customers with every event of theirs."""
    with src.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    ids = sorted({r[2] for r in body})
    keep = set(random.Random(seed).sample(ids, min(customers, len(ids))))
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(r for r in body if r[2] in keep)
    return out


def expected_fences(settings: Settings, log: EventLog) -> dict[tuple[str, int], int]:
    """(input topic, partition) -> last offset once ``log`` was replayed to fresh topics."""
    topic = TopicTable.from_settings(settings).input_topics_by_kind()
    counts: Counter[tuple[str, int]] = Counter()
    parts = [partition_for(c, settings.partitions) for c in log.customer_ids]
    for kind, row in zip(log.events["kind"].tolist(), log.events["row"].tolist(), strict=True):
        counts[(topic[kind], parts[row])] += 1
    return {tp: n - 1 for tp, n in counts.items()}


def fences(client: redis.Redis, settings: Settings) -> dict[tuple[str, int], int]:
    """Every applied-offset fence in Redis: (topic, partition) -> offset."""
    inputs = TopicTable.from_settings(settings).inputs
    out: dict[tuple[str, int], int] = {}
    for p in range(settings.partitions):
        raw = client.hgetall(PartitionKeys(settings.redis_key_prefix, p).fence)
        for k, v in raw.items():
            name = k.decode()
            if name in inputs:  # the hash also holds wm, gen and whatever else the store keeps
                out[(name, p)] = int(v)
    return out


def applied(client: redis.Redis, settings: Settings) -> int:
    """Events at or below the fences (= applied exactly once, dead letters included)."""
    return sum(o + 1 for o in fences(client, settings).values())


def wait_applied(
    client: redis.Redis,
    settings: Settings,
    expected: dict[tuple[str, int], int],
    timeout_s: float,
    workers: list[Worker] = (),  # type: ignore[assignment]
) -> float:
    """Wait until every fence equals ``expected``; returns seconds waited."""
    began = time.monotonic()
    while True:
        got = fences(client, settings)
        if all(got.get(tp, -1) >= off for tp, off in expected.items()):
            assert all(got.get(tp, -1) == off for tp, off in expected.items()), got
            return time.monotonic() - began
        for w in workers:
            if w.expected_alive and not w.running():
                raise AssertionError(f"worker {w.name} died: {w.tail()}")
        if time.monotonic() - began > timeout_s:
            missing = {
                tp: (got.get(tp, -1), off) for tp, off in expected.items() if got.get(tp, -1) < off
            }
            logs = "\n".join(f"--- {w.name}\n{w.tail()}" for w in workers)
            raise AssertionError(f"not applied within {timeout_s:g} s: {missing}\n{logs}")
        time.sleep(0.2)


def settle_state(client: redis.Redis, settings: Settings) -> dict[int, tuple[int, int, int]]:
    """Partitions that are not settled: partition -> (outbox entries not yet published,
    events held back by the event-time merge, due buckets at or before the watermark)."""
    out: dict[int, tuple[int, int, int]] = {}
    for p in range(settings.partitions):
        keys = PartitionKeys(settings.redis_key_prefix, p)
        wm = int(client.hget(keys.fence, "wm") or 0)
        outbox = int(client.hlen(keys.outbox))
        held = 1 if client.get(keys.held) else 0
        due = int(client.zcount(keys.due, "-inf", wm)) if wm > 0 else 0
        if outbox or held or due:
            out[p] = (outbox, held, due)
    return out


def wait_progress(
    client: redis.Redis,
    settings: Settings,
    point: int,
    workers: list[Worker],
    timeout_s: float = 300.0,
) -> int:
    """Wait until at least ``point`` events are applied; the count then. A worker that died
    unexpectedly, or a timeout, fails with the workers' log tails (what stalled it)."""
    began = time.monotonic()
    while (done := applied(client, settings)) < point:
        for w in workers:
            if w.expected_alive and not w.running():
                raise AssertionError(f"worker {w.name} died at {done} applied: {w.tail()}")
        if time.monotonic() - began > timeout_s:
            logs = "\n".join(f"--- {w.name}\n{w.tail()}" for w in workers)
            left = settle_state(client, settings)
            raise AssertionError(f"{done} of {point} applied after {timeout_s:g} s: {left}\n{logs}")
        time.sleep(0.05)
    return done


def wait_settled(
    client: redis.Redis,
    settings: Settings,
    timeout_s: float,
    workers: list[Worker] = (),  # type: ignore[assignment]
) -> float:
    """Wait until every partition is settled, exactly: no outbox entry left to publish (every
    alert of a committed change is acknowledged by the broker), no event held back, and no
    due bucket at or before the partition watermark (the timer sweep has evaluated every
    customer at each of its due times up to the watermark). Call it once every event is
    applied (:func:`wait_applied`): from then on the alert set can no longer grow."""
    began = time.monotonic()
    while True:
        left = settle_state(client, settings)
        if not left:
            return time.monotonic() - began
        for w in workers:
            if w.expected_alive and not w.running():
                raise AssertionError(f"worker {w.name} died: {w.tail()}")
        if time.monotonic() - began > timeout_s:
            raise AssertionError(
                f"not settled within {timeout_s:g} s: partition -> (outbox, held, due) {left}"
            )
        time.sleep(0.2)


def wait_quiet(workers: list[Worker], quiet_s: float = 2.0, timeout_s: float = 60.0) -> None:
    """Wait until no live worker has a batch in flight and state writes stopped moving."""
    began = time.monotonic()
    last: tuple[int, ...] | None = None
    since = time.monotonic()
    while time.monotonic() - began < timeout_s:
        samples = [w.metrics() for w in workers if w.running()]
        key = tuple(s.state_writes if s else -1 for s in samples)
        idle = all(s is not None and s.idle for s in samples)
        if key != last or not idle:
            last, since = key, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)
    raise AssertionError("workers did not settle")


def compare_scores(a: Path, b: Path) -> list[str]:
    """Cells that differ between two scores CSVs (exact string comparison)."""
    left, right = read_scores_csv(a), read_scores_csv(b)
    out: list[str] = []
    if left.keys() != right.keys():
        out.append(f"customers differ: {len(left.keys() ^ right.keys())} only on one side")
    for customer in left.keys() & right.keys():
        for column, cell in left[customer].items():
            if right[customer].get(column) != cell:
                out.append(f"{customer}.{column}: {cell!r} != {right[customer].get(column)!r}")
    return out


def read_alert_ids(settings: Settings, idle_polls: int = 4) -> dict[str, list[dict[str, Any]]]:
    """Every alert on the alert topics (topic -> alerts), read from the beginning until
    ``idle_polls`` one-second polls bring nothing (call it once the workers are quiet)."""
    from fixtures.stack import run_async

    records = run_async(
        alert_records(
            settings,
            timeout_s=math.inf,
            idle_s=float(idle_polls),
            poll_ms=1000,
            max_records=20_000,
        )
    )
    table = TopicTable.from_settings(settings)
    out: dict[str, list[dict[str, Any]]] = {
        topic: [] for topic in (*table.alerts.values(), table.holdout)
    }
    for record in records:
        if record.alert is not None:
            out[record.topic].append(record.alert)
    return out


Alerts = dict[str, list[dict[str, Any]]]  # topic -> alerts as read, in topic order


def alert_table(alerts: Alerts) -> dict[str, dict[str, Any]]:
    """alert id -> payload without ``emitted_at`` (wall time). A redelivered alert must repeat
    its payload exactly; a mismatch is an AssertionError."""
    out: dict[str, dict[str, Any]] = {}
    for batch in alerts.values():
        for alert in batch:
            body = {k: v for k, v in alert.items() if k != "emitted_at"}
            seen = out.setdefault(alert["alert_id"], body)
            assert seen == body, f"alert {alert['alert_id']} redelivered with another payload"
    return out


def compare_alerts(got: Alerts, want: Alerts) -> list[str]:
    """How two runs' alert sets differ: ids only in one of them, and payloads (``emitted_at``
    aside) that differ for the same id. Empty when they are the same set."""
    a, b = alert_table(got), alert_table(want)
    out: list[str] = []
    for name, ids in (("extra", a.keys() - b.keys()), ("missing", b.keys() - a.keys())):
        for alert_id in sorted(ids):
            body = a.get(alert_id) or b[alert_id]
            out.append(f"{name}: {_describe(body)}")
    for alert_id in sorted(a.keys() & b.keys()):
        if a[alert_id] != b[alert_id]:
            fields = sorted(
                k
                for k in a[alert_id].keys() | b[alert_id].keys()
                if a[alert_id].get(k) != b[alert_id].get(k)
            )
            out.append(f"payload differs in {fields}: {_describe(a[alert_id])}")
    return out


def _describe(alert: dict[str, Any]) -> str:
    if "scheme" in alert:
        what = f"{alert['scheme']} {alert['from']}->{alert['to']}"
    elif "closed_by" in alert:
        what = f"outcome of {alert['contact_kind']} {alert['contact_id']} by {alert['closed_by']}"
    else:
        what = f"{alert['kind']} {alert['reason']}"
    where = f"at {alert['event_ts']} ({alert['cause']})"
    return f"{alert['alert_id'][:12]} {alert['customer_id']} {what} {where}"


_BAD_AFTER_PURCHASE = frozenset({"at_risk", "lapsed", "lost"})


def bad_purchase_causes(alerts: Alerts, event_kinds: dict[str, int]) -> list[str]:
    """Alerts a purchase must never cause: any contact, and a lifecycle move into at_risk,
    lapsed or lost. ``event_kinds`` maps event id -> EVENT_DTYPE kind (1 = purchase); an
    event-caused alert naming an unknown event id is reported too."""
    out: list[str] = []
    for alert in alert_table(alerts).values():
        cause = alert["cause"]
        if cause["type"] != "event":
            continue
        kind = event_kinds.get(cause["event_id"])
        if kind is None:
            out.append(f"unknown cause: {_describe(alert)}")
        elif kind == 1 and (
            "reason" in alert  # a win-back or a nudge (an outcome has no reason: a purchase
            # is exactly what closes a response window)
            or (alert.get("scheme") == "lifecycle" and alert["to"] in _BAD_AFTER_PURCHASE)
        ):
            out.append(_describe(alert))
    return out


def event_kinds(log: EventLog) -> dict[str, int]:
    """event id -> kind (1 purchase, 2 visit, 3 complaint) of every event of ``log``."""
    return dict(zip(log.event_ids, log.events["kind"].tolist(), strict=True))


# --------------------------------------------------------------------------- workers


@dataclass
class Worker:
    """``python -m custscore worker`` in its own process group, with its own web port."""

    name: str
    settings: Settings
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    loglevel: str = "info"
    process: WorkerProcess | None = None
    expected_alive: bool = True

    def __post_init__(self) -> None:
        self.settings = self.settings.model_copy(update={"web_port": free_port(), **FAULT_SETTINGS})
        self.watch = WorkerWatch.for_settings(self.settings)

    def start(self) -> Worker:
        env = dict(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        # this checkout's code whatever the cwd (the venv may point at another checkout)
        inherited = env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), inherited]))
        self.process = WorkerProcess.start(
            self.settings,
            self.log_path,
            loglevel=self.loglevel,
            extra_env=env,
            # Faust's data directory (<app id>-data) goes next to the log, not into the repo
            cwd=self.log_path.parent,
            append=True,
            name=f"worker {self.name}",
        )
        self.expected_alive = True
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.running()

    def signal(self, sig: signal.Signals) -> None:
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.expected_alive = False
        os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the worker and reap it."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.proc.wait(10)

    def stop(self) -> None:
        self.expected_alive = False
        if self.process is not None:
            self.process.stop()

    def metrics(self) -> MetricsSample | None:
        return self.watch.metrics()

    def metric(self, name: str) -> float:
        """Sum of every sample named ``name`` over its labels (0 when absent, NaN when the
        worker does not answer)."""
        text = self.watch.metrics_text()
        if text is None:
            return float("nan")
        return metric_totals(text).get(name, 0.0)

    def owned(self) -> list[int]:
        return self.watch.owned() or []

    def wait_owns(self, n: int, timeout_s: float = 120.0) -> float:
        """Wait until it owns at least ``n`` partitions; seconds taken."""
        began = time.monotonic()
        while len(self.owned()) < n:
            if not self.running():
                raise AssertionError(f"worker {self.name} exited: {self.tail()}")
            if time.monotonic() - began > timeout_s:
                raise AssertionError(f"worker {self.name} owns {self.owned()} after {timeout_s} s")
            time.sleep(0.2)
        return time.monotonic() - began

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_until(pred: Any, timeout_s: float, what: str, poll_s: float = 0.05) -> float:
    began = time.monotonic()
    while not pred():
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - began


def run_coro(coro: Any) -> Any:
    from fixtures.stack import run_async

    return run_async(coro)


_ = asyncio  # re-exported for tests that build coroutines


class Producer:
    """One started aiokafka producer on a background event loop, for many small sends."""

    def __init__(self, settings: Settings) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.producer = self._call(self._start(settings))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _start(self, settings: Settings) -> Any:
        from aiokafka import AIOKafkaProducer

        from custscore.clients import kafka_options

        producer = AIOKafkaProducer(
            **kafka_options(settings), acks="all", max_request_size=4 * 1024 * 1024
        )
        await producer.start()
        return producer

    def send(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> int:
        """Send one record and wait for its ack; its offset."""
        meta = self._call(
            self.producer.send_and_wait(topic, value=value, key=key, partition=partition)
        )
        return int(meta.offset)

    def close(self) -> None:
        self._call(self.producer.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# one producer per secured worker (app id), shared by the bad-input tests and closed by the
# fixture that started the worker
PRODUCERS: dict[str, Producer] = {}
