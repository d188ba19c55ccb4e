"""Worker supervision: start a worker process, watch its web views, read what it published.

The demo, the benchmark, the soak test and the integration tests all drive workers the same
way, through this module:

* :func:`settings_env` turns :class:`~config.settings.Settings` into the ``CUSTSCORE_*``
  environment a child loads exactly those settings from;
* :class:`WorkerProcess` is ``python -m custscore worker`` (or a baseline worker) as a child in
  its own process group, output to a log, launched by :func:`custscore.processes.spawn`;
* :class:`WorkerWatch` reads its ``/metrics``, ``/stats`` and ``/healthz`` and waits on them
  (group join, everything consumed, a population refresh), judging progress by counts, never
  by end offsets;
* :func:`metric_samples` / :func:`metric_totals` / :func:`parse_metrics` are the one reader
  of the Prometheus text a worker serves;
* :func:`alert_records` / :func:`read_alerts` are the one reader of the alert topics (every
  kind of :class:`streams.topics.TopicTable`).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from config.settings import ENV_PREFIX, Settings
from custscore.clients import kafka_options
from custscore.errors import CliError
from custscore.processes import last_log_line, spawn, stop_process_group
from streams.topics import TopicTable

__all__ = [
    "AlertRecord",
    "MetricsSample",
    "Settled",
    "WorkerProcess",
    "WorkerWatch",
    "alert_records",
    "metric_samples",
    "metric_totals",
    "parse_metrics",
    "read_alerts",
    "settings_env",
    "worker_command",
]

_POLL_S = 0.2


# --------------------------------------------------------------------------- the process


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a child process that loads exactly ``settings``.

    Every setting that has a value becomes ``CUSTSCORE_<FIELD>``; inherited ``CUSTSCORE_*``
    variables (and ``CUSTSCORE_CONFIG``) are dropped so nothing else leaks in.
    """
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith(ENV_PREFIX)
    }
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    return env


def worker_command(loglevel: str = "info") -> list[str]:
    """Arguments after ``python`` that run a custscore worker on existing topics."""
    return ["-m", "custscore", "worker", "--loglevel", loglevel, "--no-create-topics"]


class WorkerProcess:
    """A worker as a child in its own process group, output to a log.

    The child gets SIGTERM if this process dies without stopping it (Linux), so no worker
    outlives a killed demo, benchmark or test run.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], log_path: Path, name: str = "the worker"
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.name = name  # how error messages call it

    @classmethod
    def start(
        cls,
        settings: Settings,
        log_path: Path,
        *,
        loglevel: str = "info",
        command: Sequence[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        append: bool = False,
        name: str = "the worker",
    ) -> WorkerProcess:
        """Start ``python COMMAND`` (default :func:`worker_command`) with ``settings`` in its
        environment (plus ``extra_env``); topics must exist (a worker is started without
        creating them). ``append`` keeps the log of an earlier run."""
        env = settings_env(settings)
        env.update(extra_env or {})
        argv = [sys.executable, *(worker_command(loglevel) if command is None else command)]
        proc = spawn(argv, log_path, env=env, cwd=cwd, append=append)
        return cls(proc, log_path, name)

    @property
    def pid(self) -> int:
        """Process id (also the process group id)."""
        return self.proc.pid

    def running(self) -> bool:
        """True while the child has not exited."""
        return self.proc.poll() is None

    def last_log_line(self) -> str:
        """The last meaningful line of the worker's log (for error messages)."""
        return last_log_line(self.log_path)

    def check_alive(self) -> None:
        """Raise CliError naming the exit code and the log when the worker has exited."""
        code = self.proc.poll()
        if code is not None:
            last = self.last_log_line()
            raise CliError(
                f"{self.name} exited (code {code}); log {self.log_path}"
                + (f": {last}" if last else "")
            )

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM the worker's process group, SIGKILL after ``grace_s``; returns the exit code."""
        return stop_process_group(self.proc, grace_s)


# --------------------------------------------------------------------------- /metrics


def metric_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of every sample of a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def metric_totals(text: str) -> dict[str, float]:
    """Sample name -> the sum of its values over every label set."""
    out: dict[str, float] = {}
    for name, _, value in metric_samples(text):
        out[name] = out.get(name, 0.0) + value
    return out


@dataclass(frozen=True)
class MetricsSample:
    """The counters of one ``/metrics`` scrape that the demo and the tests need."""

    at: float  # wall time of the scrape
    events_in: int
    state_writes: int
    batches_started: int  # custscore_batch_size_count: observed when a batch starts
    batches_done: int  # custscore_batch_seconds_count: observed when it is written
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, reason) -> n
    suppressed: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, reason) -> n
    dead_letter: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    snapshot_age_s: float | None = None

    def alerts_of(self, kind: str) -> int:
        """Alerts published of one kind (a name of streams.alert_kinds.ALERT_KINDS)."""
        return sum(n for (k, _), n in self.alerts.items() if k == kind)

    def reasons_of(self, kind: str) -> dict[str, int]:
        """Alerts published of one kind, by reason label."""
        return {r: n for (k, r), n in self.alerts.items() if k == kind}

    @property
    def idle(self) -> bool:
        """No batch is being processed right now."""
        return self.batches_started == self.batches_done


def parse_metrics(text: str, at: float) -> MetricsSample:
    """The counters of a Prometheus text exposition of the worker."""
    values: dict[str, float] = {}
    alerts: dict[tuple[str, str], int] = {}
    suppressed: dict[tuple[str, str], int] = {}
    dead: dict[str, int] = {}
    for name, labels, value in metric_samples(text):
        if name == "custscore_events_in_total":
            values[name] = values.get(name, 0.0) + value
        elif name == "custscore_alerts_total":
            alerts[(labels["kind"], labels["reason"])] = int(value)
        elif name == "custscore_alerts_suppressed_total":
            suppressed[(labels["kind"], labels["reason"])] = int(value)
        elif name == "custscore_dead_letter_total":
            dead[labels["reason"]] = int(value)
        elif not labels:
            values[name] = value
    age = values.get("custscore_population_snapshot_age_seconds")
    return MetricsSample(
        at=at,
        events_in=int(values.get("custscore_events_in_total", 0)),
        state_writes=int(values.get("custscore_state_writes_total", 0)),
        batches_started=int(values.get("custscore_batch_size_count", 0)),
        batches_done=int(values.get("custscore_batch_seconds_count", 0)),
        alerts=alerts,
        suppressed=suppressed,
        dead_letter=dead,
        duplicates=int(values.get("custscore_duplicate_events_total", 0)),
        snapshot_age_s=age if age is not None and age >= 0 else None,
    )


# --------------------------------------------------------------------------- the web views


@dataclass(frozen=True)
class Settled:
    """When a worker had consumed everything and stopped writing."""

    sample: MetricsSample
    last_write_at: float  # wall time of the scrape that first showed the final write count
    waited_s: float


class WorkerWatch:
    """Reads a worker's web views (``/metrics``, ``/stats``, ``/healthz``) over HTTP."""

    def __init__(self, host: str, port: int, worker: WorkerProcess | None = None) -> None:
        self.host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
        self.port = port
        self.worker = worker

    @classmethod
    def for_settings(cls, settings: Settings, worker: WorkerProcess | None = None) -> WorkerWatch:
        """A watch of the worker web port configured in ``settings``."""
        return cls(settings.web_host, settings.web_port, worker)

    def url(self, path: str) -> str:
        """Full URL of a view, e.g. ``url('/metrics')``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, bytes] | None:
        """(status, body) of a GET, or None when nothing answers yet."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def metrics_text(self, timeout_s: float = 5.0) -> str | None:
        """The body of ``/metrics``, or None when the worker does not answer with 200."""
        reply = self.get("/metrics", timeout_s)
        if reply is None or reply[0] != 200:
            return None
        return reply[1].decode("utf-8", "replace")

    def metrics(self) -> MetricsSample | None:
        """One scrape of ``/metrics``, or None when the worker does not answer."""
        text = self.metrics_text()
        return None if text is None else parse_metrics(text, time.time())

    def json(self, path: str) -> Any:
        """The JSON body of a view, or None when it does not answer with 200."""
        reply = self.get(path)
        if reply is None or reply[0] != 200:
            return None
        return json.loads(reply[1])

    def owned(self) -> list[int] | None:
        """The partitions ``/healthz`` says the worker owns (None: it does not answer)."""
        health = self.json("/healthz")
        return None if health is None else list(health.get("partitions", ()))

    def _alive(self) -> None:
        if self.worker is not None:
            self.worker.check_alive()

    def wait_ready(self, partitions: int, timeout_s: float) -> float:
        """Wait until the worker owns ``partitions`` partitions (its group join); seconds taken."""
        began = time.monotonic()
        while True:
            self._alive()
            owned = self.owned()
            if owned is not None and len(owned) >= partitions:
                return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                what = "its web port does not answer" if owned is None else f"owns {len(owned)}"
                raise CliError(
                    f"the worker did not join its consumer group within {timeout_s:g} s "
                    f"({what} of {partitions} partitions){self._log_hint()}"
                )
            time.sleep(_POLL_S)

    def _log_hint(self) -> str:
        return f"; log {self.worker.log_path}" if self.worker is not None else ""

    def wait_consumed(
        self,
        expected_events: int,
        timeout_s: float,
        *,
        quiet_s: float = 2.0,
        progress: Callable[[MetricsSample], None] | None = None,
    ) -> Settled:
        """Wait until ``events_in_total`` reaches ``expected_events``, no batch is in flight
        and ``state_writes_total`` has not moved for ``quiet_s`` (timer sweeps settle too).

        Raises CliError when the worker exits or ``timeout_s`` passes first.
        """
        began = time.monotonic()
        last: MetricsSample | None = None
        last_change = time.time()
        quiet_since = time.monotonic()
        while True:
            self._alive()
            sample = self.metrics()
            if sample is not None:
                if last is None or sample.state_writes != last.state_writes:
                    last_change = sample.at
                if (
                    last is None
                    or (sample.state_writes, sample.events_in)
                    != (last.state_writes, last.events_in)
                    or not sample.idle
                ):
                    quiet_since = time.monotonic()
                last = sample
                if progress is not None:
                    progress(sample)
                if (
                    sample.events_in >= expected_events
                    and sample.idle
                    and time.monotonic() - quiet_since >= quiet_s
                ):
                    return Settled(sample, last_change, time.monotonic() - began)
            if time.monotonic() - began > timeout_s:
                consumed = 0 if last is None else last.events_in
                raise CliError(
                    f"the worker did not catch up: {consumed:,} of {expected_events:,} events "
                    f"consumed after {timeout_s:g} s{self._log_hint()}"
                )
            time.sleep(_POLL_S)

    def wait_snapshot(
        self, after: float, partitions: int, timeout_s: float
    ) -> dict[str, Any] | None:
        """Wait until every partition's population sketch was computed after wall time
        ``after``; returns ``/stats`` (the latest one seen, even on timeout)."""
        deadline = time.monotonic() + timeout_s
        stats: dict[str, Any] | None = None
        while True:
            self._alive()
            fresh = self.json("/stats")
            if fresh is not None:
                stats = fresh
                computed = time.time() - float(fresh.get("oldest_sketch_age_s", math.inf))
                if fresh.get("partitions_reporting", 0) >= partitions and computed >= after:
                    return stats
            if time.monotonic() > deadline:
                return stats
            time.sleep(_POLL_S * 2)


# --------------------------------------------------------------------------- alert topics


@dataclass(frozen=True)
class AlertRecord:
    """One record of an alert topic."""

    kind: str  # the alert kind (streams.alert_kinds), from the topic it was read on
    topic: str
    timestamp_ms: int  # the record's Kafka timestamp (the worker producer's create time)
    alert: dict[str, Any] | None  # the decoded JSON; None for a record without a value


async def alert_records(
    settings: Settings,
    *,
    kinds: Iterable[str] | None = None,
    timeout_s: float = 60.0,
    idle_s: float | None = None,
    stop: Callable[[list[AlertRecord]], bool] | None = None,
    poll_ms: int = 500,
    max_records: int = 10_000,
    client_id: str = "custscore-alerts",
) -> list[AlertRecord]:
    """Every record of the alert topics (``kinds``, default all and the holdout topic), read
    from the beginning by
    assigned partitions (no consumer group), in partition order.

    Reading ends after ``timeout_s``, after ``idle_s`` seconds in which no record came, or
    once ``stop(records of the last poll)`` returns True, whichever is first.
    """
    # imported when used, like custscore.clients does: the demo module (and so this one) is
    # loaded by `custscore --help`
    from aiokafka import AIOKafkaConsumer, TopicPartition

    table = TopicTable.from_settings(settings)
    alerts = table.alerts
    wanted = list(alerts) if kinds is None else list(kinds)
    kind_of = {alerts[kind]: kind for kind in wanted}
    if kinds is None:
        kind_of[table.holdout] = "holdout"  # held-out customers' contacts, of either kind
    out: list[AlertRecord] = []
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=client_id,
    )
    await consumer.start()
    try:
        consumer.assign(
            [TopicPartition(t, p) for t in kind_of for p in range(settings.partitions)]
        )
        await consumer.seek_to_beginning()
        clock = asyncio.get_running_loop().time
        deadline = clock() + timeout_s
        last_record = clock()
        while clock() < deadline and (idle_s is None or clock() - last_record < idle_s):
            batches = await consumer.getmany(timeout_ms=poll_ms, max_records=max_records)
            fresh = [
                AlertRecord(
                    kind_of[tp.topic],
                    tp.topic,
                    int(r.timestamp),
                    None if r.value is None else json.loads(r.value),
                )
                for tp, records in batches.items()
                for r in records
            ]
            if fresh:
                last_record = clock()
                out.extend(fresh)
            if stop is not None and stop(fresh):
                break
    finally:
        await consumer.stop()
    return out


async def read_alerts(
    settings: Settings,
    expected: dict[str, int],
    timeout_s: float = 60.0,
    *,
    enough: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Alerts on the given alert topics, from the beginning (see :func:`alert_records`).

    ``expected`` maps topic -> how many alerts to read (from the worker's counters); reading
    stops when every topic has that many, when ``enough(newly read alerts)`` returns True,
    or after ``timeout_s``. Returns topic -> alerts, in partition order.
    """
    out: dict[str, list[dict[str, Any]]] = {topic: [] for topic in expected}
    if not any(expected.values()):
        return out
    kinds = [k for k, t in TopicTable.from_settings(settings).alerts.items() if t in expected]

    def done(fresh: list[AlertRecord]) -> bool:
        decoded = [r.alert for r in fresh if r.alert is not None]
        for record in fresh:
            if record.alert is not None:
                out[record.topic].append(record.alert)
        if enough is not None and enough(decoded):
            return True
        return all(len(out[t]) >= n for t, n in expected.items())

    await alert_records(settings, kinds=kinds, timeout_s=timeout_s, stop=done)
    return out
