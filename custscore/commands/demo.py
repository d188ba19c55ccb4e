"""``custscore demo``: embedded stack, topics, a worker, a CDNOW replay, then a live summary.

Steps: start the embedded broker and Valkey (run dir and ports from settings), create the
topics, start ``python -m custscore worker`` as a child process with the same settings (as
``CUSTSCORE_*`` variables), wait until it owns every partition, write the CDNOW event CSV,
replay it at max speed, wait until the worker's ``/metrics`` shows every event consumed and
the state writes settled (counts, never end offsets), wait for one population refresh, print
the summary (throughput, alerts, tiers, segments, KPIs, sample alerts), then stop the worker
and the stack. Ctrl-C (or SIGTERM) at any point stops every child.

The pieces (:class:`WorkerProcess`, :class:`WorkerWatch`, :func:`settings_env`,
:func:`read_alerts`) are public because the integration tests drive a worker the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from config.settings import ENV_PREFIX, Settings
from custscore.clients import ensure_topics_or_fail, kafka_options
from custscore.errors import CliError

if TYPE_CHECKING:
    from custscore.commands.replay import ReplayResult
    from custscore.stack import EmbeddedStack

__all__ = [
    "AlertSampler",
    "MetricsSample",
    "ProgressLine",
    "Settled",
    "WorkerProcess",
    "WorkerWatch",
    "parse_metrics",
    "read_alerts",
    "register",
    "run_demo",
    "settings_env",
]

_POLL_S = 0.2


# --------------------------------------------------------------------------- worker process


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
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


class WorkerProcess:
    """``python -m custscore worker`` as a child in its own process group, output to a log.

    The child gets SIGTERM if this process dies without stopping it (Linux), so no worker
    outlives a killed demo or test run.
    """

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @classmethod
    def start(cls, settings: Settings, log_path: Path, *, loglevel: str = "info") -> WorkerProcess:
        """Start a worker with ``settings``; topics must exist (it is started without creating)."""
        from custscore.processes import pdeathsig_preexec

        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "custscore", "worker", "--loglevel", loglevel]
        argv.append("--no-create-topics")
        with log_path.open("wb") as log_fh:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                env=settings_env(settings),
                start_new_session=True,
                preexec_fn=pdeathsig_preexec(),
            )
        return cls(proc, log_path)

    @property
    def pid(self) -> int:
        """Process id (also the process group id)."""
        return self.proc.pid

    def running(self) -> bool:
        """True while the child has not exited."""
        return self.proc.poll() is None

    def last_log_line(self) -> str:
        """The last meaningful line of the worker's log (for error messages)."""
        from custscore.processes import last_log_line

        return last_log_line(self.log_path)

    def check_alive(self) -> None:
        """Raise CliError naming the exit code and the log when the worker has exited."""
        code = self.proc.poll()
        if code is not None:
            last = self.last_log_line()
            raise CliError(
                f"the worker exited (code {code}); log {self.log_path}"
                + (f": {last}" if last else "")
            )

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM the worker's process group, SIGKILL after ``grace_s``; returns the exit code."""
        from custscore.processes import stop_process_group

        return stop_process_group(self.proc, grace_s)


# --------------------------------------------------------------------------- watching it


@dataclass(frozen=True)
class MetricsSample:
    """The counters of one ``/metrics`` scrape that the demo and the tests need."""

    at: float  # wall time of the scrape
    events_in: int
    state_writes: int
    batches_started: int  # custscore_batch_size_count: observed when a batch starts
    batches_done: int  # custscore_batch_seconds_count: observed when it is written
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, reason) -> n
    suppressed: dict[str, int] = field(default_factory=dict)
    dead_letter: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    snapshot_age_s: float | None = None

    def alerts_of(self, kind: str) -> int:
        """Alerts published of one kind (``segment_change`` or ``win_back``)."""
        return sum(n for (k, _), n in self.alerts.items() if k == kind)

    @property
    def idle(self) -> bool:
        """No batch is being processed right now."""
        return self.batches_started == self.batches_done


def parse_metrics(text: str, at: float) -> MetricsSample:
    """The counters of a Prometheus text exposition of the worker."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    alerts: dict[tuple[str, str], int] = {}
    suppressed: dict[str, int] = {}
    dead: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "custscore_events_in_total":
                values[name] = values.get(name, 0.0) + value
            elif name == "custscore_alerts_total":
                alerts[(labels["kind"], labels["reason"])] = int(value)
            elif name == "custscore_alerts_suppressed_total":
                suppressed[labels["reason"]] = int(value)
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

    def metrics(self) -> MetricsSample | None:
        """One scrape of ``/metrics``, or None when the worker does not answer."""
        reply = self.get("/metrics")
        if reply is None or reply[0] != 200:
            return None
        return parse_metrics(reply[1].decode("utf-8"), time.time())

    def json(self, path: str) -> Any:
        """The JSON body of a view, or None when it does not answer with 200."""
        reply = self.get(path)
        if reply is None or reply[0] != 200:
            return None
        return json.loads(reply[1])

    def _alive(self) -> None:
        if self.worker is not None:
            self.worker.check_alive()

    def wait_ready(self, partitions: int, timeout_s: float) -> float:
        """Wait until the worker owns ``partitions`` partitions (its group join); seconds taken."""
        began = time.monotonic()
        while True:
            self._alive()
            health = self.json("/healthz")
            if health is not None and len(health.get("partitions", ())) >= partitions:
                return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                owned = None if health is None else len(health.get("partitions", ()))
                what = "its web port does not answer" if owned is None else f"owns {owned}"
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


# --------------------------------------------------------------------------- alerts


async def read_alerts(
    settings: Settings,
    expected: dict[str, int],
    timeout_s: float = 60.0,
    *,
    enough: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Alerts on the given topics, from the beginning, by assigned partitions (no group).

    ``expected`` maps topic -> how many alerts to read (from the worker's counters); reading
    stops when every topic has that many, when ``enough(newly read alerts)`` returns True,
    or after ``timeout_s``. Returns topic -> alerts, in partition order.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    out: dict[str, list[dict[str, Any]]] = {topic: [] for topic in expected}
    if not any(expected.values()):
        return out
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="custscore-demo",
    )
    await consumer.start()
    try:
        consumer.assign(
            [TopicPartition(t, p) for t in expected for p in range(settings.partitions)]
        )
        await consumer.seek_to_beginning()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(len(out[t]) < n for t, n in expected.items()):
            if asyncio.get_running_loop().time() > deadline:
                break
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            fresh: list[dict[str, Any]] = []
            for tp, records in batches.items():
                decoded = [json.loads(r.value) for r in records if r.value is not None]
                out[tp.topic].extend(decoded)
                fresh.extend(decoded)
            if enough is not None and enough(fresh):
                break
    finally:
        await consumer.stop()
    return out


class AlertSampler:
    """Picks a varied handful of alerts: win-backs of distinct reasons, then segment changes
    of distinct schemes. Call it with batches of alerts; it returns True once it has enough."""

    def __init__(self, win_backs: int = 2, segment_changes: int = 1) -> None:
        self.wanted = {"reason": win_backs, "scheme": segment_changes}
        self.picked: dict[str, list[dict[str, Any]]] = {"reason": [], "scheme": []}
        self._seen: set[str] = set()

    def __call__(self, alerts: list[dict[str, Any]]) -> bool:
        """Consider ``alerts``; True when every wanted kind is filled."""
        for alert in alerts:
            field_name = "reason" if "reason" in alert else "scheme"
            what = f"{field_name}:{alert.get(field_name)}"
            picks = self.picked[field_name]
            if what not in self._seen and len(picks) < self.wanted[field_name]:
                self._seen.add(what)
                picks.append(alert)
        return self.done

    @property
    def done(self) -> bool:
        """Every wanted kind is filled."""
        return all(len(self.picked[k]) >= n for k, n in self.wanted.items())

    @property
    def samples(self) -> list[dict[str, Any]]:
        """The picks, win-backs first."""
        return self.picked["reason"] + self.picked["scheme"]


# --------------------------------------------------------------------------- the demo


@dataclass
class _Children:
    """What the demo started, so that every exit path can stop it."""

    stack: EmbeddedStack | None = None
    worker: WorkerProcess | None = None

    def stop(self, out: Callable[[str], None]) -> None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits
        try:
            if self.worker is not None:
                if self.worker.running():
                    out(f"stopping the worker (pid {self.worker.pid})")
                self.worker.stop()  # also reaps it and sweeps its process group
            if self.stack is not None:
                out("stopping the embedded broker and Valkey")
                self.stack.stop()
        finally:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _fmt_counts(counts: dict[str, int], order: tuple[str, ...] = ()) -> str:
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    return ", ".join(f"{k} {counts[k]:,}" for k in keys)


def _fmt_number(value: Any, spec: str = ",.2f") -> str:
    return "n/a" if value is None else format(value, spec)


def _print_summary(
    replay: ReplayResult,
    settled: Settled,
    stats: dict[str, Any] | None,
    samples: list[dict[str, Any]],
    watch: WorkerWatch,
) -> None:
    from engine.segments import RFM_SEGMENT_NAMES, TIER_NAMES
    from models.scorefile import format_time

    sample = settled.sample
    span = max(settled.last_write_at - replay.started_at, 1e-9)
    _say()
    _say("== throughput")
    _say(f"  replay       {replay.summary()}")
    _say(
        f"  end to end   {replay.produced:,} events from first produce to last state write "
        f"in {span:.1f} s: {replay.produced / span:,.0f} events/s"
    )
    _say(
        f"  worker       {sample.events_in:,} events consumed, {sample.state_writes:,} state "
        f"writes, {sample.batches_done:,} batches, {sample.duplicates:,} duplicates skipped"
    )
    dead = sum(sample.dead_letter.values())
    _say(f"  dead letter  {dead:,}" + (f" ({_fmt_counts(sample.dead_letter)})" if dead else ""))
    _say()
    _say("== alerts published (custscore_alerts_total)")
    for kind in ("win_back", "segment_change"):
        by_reason = {r: n for (k, r), n in sample.alerts.items() if k == kind}
        total = sum(by_reason.values())
        _say(f"  {kind:<15} {total:>9,}  ({_fmt_counts(by_reason) or 'none'})")
    if sample.suppressed:
        _say(
            f"  {'cooled down':<15} {sum(sample.suppressed.values()):>9,}  "
            f"({_fmt_counts(sample.suppressed)}; withheld by the per-customer cool-down)"
        )
    _say()
    if stats is None:
        _say("== population: /stats did not answer")
    else:
        age = float(stats.get("oldest_sketch_age_s", math.nan))
        _say(
            f"== population at {format_time(int(stats.get('watermark', 0)))} "
            f"(/stats; snapshot {age:.1f} s old)"
        )
        _say(
            f"  customers {stats.get('customers', 0):,}, buyers {stats.get('buyers', 0):,}, "
            f"effective members {stats.get('effective_members', 0):,}"
        )
        churn = stats.get("rolling_churn_rate")
        _say(
            f"  rolling churn rate {_fmt_number(churn, '.1%')}, repurchase frequency "
            f"{_fmt_number(stats.get('repurchase_frequency_per_year'))}/year, "
            f"avg {_fmt_number(stats.get('avg_days_between_purchases'), ',.1f')} days "
            "between purchases"
        )
        tiers = dict(stats.get("value_tiers", {}))
        tiers["not effective"] = tiers.pop("none", 0)
        _say(f"  value tiers   {_fmt_counts(tiers, (*TIER_NAMES[::-1], 'not effective'))}")
        _say(f"  RFM segments  {_fmt_counts(stats.get('rfm_segments', {}), RFM_SEGMENT_NAMES)}")
        _say(f"  lifecycle     {_fmt_counts(stats.get('lifecycle', {}))}")
    _say()
    _say(f"== {len(samples)} sample alerts")
    for alert in samples:
        _say(json.dumps(alert, indent=2, ensure_ascii=False))
    _say()
    _say(f"metrics: {watch.url('/metrics')}  (also /stats, /healthz, /customers/<id>)")


DEMO_SESSION_TIMEOUT_S = 10.0


def run_demo(
    settings: Settings,
    *,
    events_file: Path | None = None,
    timeout_s: float = 600.0,
    keep_running: bool = False,
) -> int:
    """The whole demo; returns the exit code. Children are stopped on every exit path."""
    from custscore.commands.replay import ProgressBar, describe_bad_rows, load_events, replay_events
    from custscore.processes import port_in_use
    from custscore.stack import EmbeddedStack

    if settings.kafka_bootstrap or settings.redis_url:
        raise CliError(
            "the demo runs its own embedded broker and Valkey: unset CUSTSCORE_KAFKA_BOOTSTRAP "
            "and CUSTSCORE_REDIS_URL (or run `custscore worker` and `custscore replay` instead)"
        )
    if port_in_use(settings.web_host, settings.web_port):
        raise CliError(
            f"worker web port {settings.web_port} on {settings.web_host} is already in use; "
            "choose another with CUSTSCORE_WEB_PORT or stop what uses it"
        )
    if events_file is not None and not events_file.is_file():
        raise CliError(f"event file not found: {events_file}", exit_code=1)
    if "session_timeout_s" not in settings.model_fields_set:
        # a one-worker group on the embedded broker: its join waits half the session timeout
        settings = settings.model_copy(update={"session_timeout_s": DEMO_SESSION_TIMEOUT_S})
    children = _Children()
    run_dir = Path(settings.run_dir)
    with _sigterm_as_interrupt():
        try:
            began = time.monotonic()
            stack = EmbeddedStack.from_settings(settings, tie_to_parent=True)
            info = stack.start()
            children.stack = stack
            _say(
                f"stack     broker {info.bootstrap_servers}, valkey {info.redis_url} "
                f"(run dir {info.run_dir}, {time.monotonic() - began:.1f} s)"
            )
            asyncio.run(ensure_topics_or_fail(settings))
            _say(f"topics    created, {settings.partitions} partitions each")
            worker = WorkerProcess.start(settings, run_dir / "worker.log")
            children.worker = worker
            watch = WorkerWatch.for_settings(settings, worker)
            _say(f"worker    pid {worker.pid}, log {worker.log_path}; waiting for its group join")
            if events_file is None:
                from custscore.commands.datasets import find_cdnow, write_cdnow_events

                events_file = run_dir / "cdnow_events.csv"
                cdnow = write_cdnow_events(find_cdnow(), events_file)
                _say(
                    f"dataset   CDNOW master log: {cdnow.events:,} purchases of "
                    f"{cdnow.customers:,} customers ({cdnow.first_day} to {cdnow.last_day}) "
                    f"-> {events_file}"
                )
            log = load_events(events_file)
            note = describe_bad_rows(log, events_file)
            if note:
                _say(f"          {note}")
            joined = watch.wait_ready(settings.partitions, timeout_s)
            _say(f"worker    owns all {settings.partitions} partitions after {joined:.1f} s")
            replay = asyncio.run(replay_events(settings, log, None, progress=ProgressBar()))
            _say(f"replay    {replay.summary()}")
            settled = watch.wait_consumed(
                replay.produced,
                timeout_s,
                quiet_s=max(2.0, 2 * settings.sweep_interval_s),
                progress=ProgressLine(replay.produced),
            )
            _say(f"worker    consumed everything; settled {settled.waited_s:.1f} s after replay")
            stats = _population(settings, watch, settled)
            expected = {
                settings.topic_win_back: settled.sample.alerts_of("win_back"),
                settings.topic_segment_change: settled.sample.alerts_of("segment_change"),
            }
            sampler = AlertSampler()
            asyncio.run(read_alerts(settings, expected, enough=sampler))
            samples = sampler.samples
            _print_summary(replay, settled, stats, samples, watch)
            if keep_running:
                _say(
                    "\nworker and stack keep running; try `custscore inspect <customer id>` "
                    "with the same settings. Ctrl-C stops everything."
                )
                while True:
                    worker.check_alive()
                    time.sleep(1.0)
        finally:
            children.stop(lambda text: print(text, file=sys.stderr, flush=True))
    return 0


class ProgressLine:
    """The worker's consumption as a progress line on stderr."""

    def __init__(self, expected: int) -> None:
        from custscore.commands.replay import ProgressBar

        self.bar = ProgressBar("worker", sys.stderr)
        self.expected = expected
        self.began = time.monotonic()

    def __call__(self, sample: MetricsSample) -> None:
        self.bar(min(sample.events_in, self.expected), self.expected, time.monotonic() - self.began)


def _population(settings: Settings, watch: WorkerWatch, settled: Settled) -> dict[str, Any] | None:
    wait_s = settings.snapshot_interval_s + 10.0
    _say(f"population waiting up to {wait_s:.0f} s for a snapshot refresh after the last write")
    stats = watch.wait_snapshot(settled.last_write_at, settings.partitions, wait_s)
    if stats is not None:
        age = float(stats.get("oldest_sketch_age_s", math.nan))
        computed = time.time() - age
        note = "after" if computed >= settled.last_write_at else "BEFORE"
        _say(f"population snapshot {age:.1f} s old, computed {note} the last state write")
    return stats


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``custscore demo``."""
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the summary, keep the stack and worker running until Ctrl-C",
    )
    parser.add_argument(
        "--events",
        type=Path,
        metavar="FILE",
        help="replay this event CSV instead of the CDNOW master log",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="longest wait for the worker's group join, and again for it to consume "
        "the replay (default 600)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.timeout <= 0:
        raise CliError(f"--timeout must be > 0, not {args.timeout:g}")
    return run_demo(
        settings, events_file=args.events, timeout_s=args.timeout, keep_running=args.keep_running
    )
