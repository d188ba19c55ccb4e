"""The benchmark runner: embedded stack, workers as child processes, one stream, four systems.

    custscore bench [--quick] [--source cdnow|synthetic|FILE] [--workers N] ...

Phases (all in one run, on the same events):

1. **preload** — the stream is produced once, at max speed, to a fresh set of input topics
   (the producer's own rate is reported).
2. **drain** — each system in turn starts ``--workers`` worker processes in a fresh consumer
   group on those topics and consumes the whole backlog: custscore
   (``python -m custscore worker``), the bare Faust pass-through
   (``loadtest.worker_passthrough``), the naive GET/SET worker (``loadtest.worker_naive``)
   and raw aiokafka consumption (``loadtest.worker_raw``). Throughput = events / (last state
   write - last moment nothing was consumed yet), both read from the workers' ``/metrics``
   every ``poll_s`` (so each bound is conservative by at most one poll interval).
3. **live** — custscore on fresh topics, joined first, while the stream is produced at max
   speed: end-to-end events/s from the first produce to the last state write.
4. **paced** — custscore on fresh topics at half the measured max rate: event->alert latency
   from each alert's triggering input record's Kafka timestamp (producer create time, set
   explicitly by the harness) to the alert record's Kafka timestamp (the worker's producer
   create time). Alerts carry no ingest timestamp; their ``cause.event_id`` links them.
5. **profile** — optional: a custscore drain under ``py-spy record`` (separate from the
   measured runs so sampling does not slow them).

Every phase records time series (consumed, written, lag, CPU, RSS) used for the plots.
Results go to a JSON file that :mod:`loadtest.report` turns into the BENCHMARKS.md section.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from custscore.errors import CliError

if TYPE_CHECKING:
    from config.settings import Settings
    from custscore.stack import EmbeddedStack
    from loadtest.producer import ProduceResult, Stream

__all__ = ["SYSTEMS", "BenchConfig", "RunResult", "run_bench"]

SYSTEMS: dict[str, tuple[str, list[str]]] = {
    "custscore": (
        "custscore worker",
        ["-m", "custscore", "worker", "--loglevel", "warning", "--no-create-topics"],
    ),
    "faust": (
        "bare Faust pass-through (take_events, no work)",
        ["-m", "loadtest.worker_passthrough"],
    ),
    "naive": (
        "naive: per-event Redis GET + SET, plain-Python scoring",
        ["-m", "loadtest.worker_naive"],
    ),
    "raw": ("raw aiokafka consumption (count only)", ["-m", "loadtest.worker_raw"]),
}
DRAIN_ORDER = ("raw", "faust", "custscore", "naive")
REPEATED = ("faust", "custscore")  # drained ``repeats`` times, interleaved (the ratio target)


@dataclass
class BenchConfig:
    """What to run; ``quick`` picks a small CI-sized run."""

    quick: bool = False
    source: str = "synthetic"  # cdnow | synthetic | path to an event CSV
    customers: int = 50_000  # synthetic
    visit_rate: float = 0.25  # synthetic, per active customer per week
    complaint_rate: float = 0.01
    seed: int = 1
    limit: int | None = 100_000  # events taken from the stream (None = all)
    naive_limit: int | None = 25_000  # the naive baseline drains only this prefix
    workers: int = 1
    repeats: int = 3  # rounds of the faust and custscore drains (medians are reported)
    partitions: int = 8
    systems: tuple[str, ...] = DRAIN_ORDER
    live: bool = True
    live_limit: int | None = 60_000  # the live phase replays this prefix of the stream
    paced_seconds: float = 40.0
    paced_fraction: float = 0.5
    profile: bool = True
    profile_seconds: float = 30.0
    profile_systems: tuple[str, ...] = ("custscore",)
    warmup_events: int = 3000
    fetch_probe: bool = True  # how long the broker holds a fetch (latency context)
    poll_s: float = 0.5
    timeout_s: float = 600.0
    worker_settings: dict[str, str] = field(default_factory=dict)  # CUSTSCORE_* overrides
    # Only the group-join wait is shortened: the embedded broker holds a JoinGroup for half
    # the session timeout (60 s by default). Nothing on the data path changes.
    group_settings: dict[str, float] = field(default_factory=lambda: {"session_timeout_s": 10.0})
    out_dir: Path = Path("docs/bench")
    results: Path | None = None  # default: out_dir / results.json
    keep_run_dir: bool = False

    @classmethod
    def quick_config(cls, **overrides: Any) -> BenchConfig:
        values: dict[str, Any] = {
            "quick": True,
            "customers": 3_000,
            "limit": 12_000,
            "naive_limit": 3_000,
            "paced_seconds": 5.0,
            "profile": False,
            "partitions": 4,
            "poll_s": 0.25,
            "live": False,
            "warmup_events": 0,
            "repeats": 1,
            "fetch_probe": False,
            "timeout_s": 150.0,
        }
        values.update(overrides)
        return cls(**values)


# --------------------------------------------------------------------------- results


@dataclass
class Sample:
    """One poll of one run: counters summed over its workers, resources per process kind."""

    t: float
    events_in: int
    state_writes: int
    busy: bool
    lag_metric: float | None  # custscore_consumer_lag summed (custscore only)
    worker_cpu_s: float
    worker_rss: int
    broker_cpu_s: float
    redis_cpu_s: float
    alerts: int = 0
    worker_wait_s: float = 0.0  # run-queue wait (runnable, no CPU), /proc/<pid>/schedstat
    batch_s: float = 0.0  # custscore histogram sums: wall time in batches, kernels, Redis
    kernel_s: float = 0.0
    redis_s: float = 0.0
    batches: int = 0
    first_at: float = 0.0  # baselines: exact wall times of their first event / last write
    last_at: float = 0.0


@dataclass
class RunResult:
    """One measured run of one system."""

    system: str
    mode: str  # drain | live | paced | profile
    workers: int
    events: int
    started_at: float  # wall time the workers were started
    joined_s: float | None  # seconds until every partition was owned
    first_t: float | None  # start of the measured window (wall time)
    last_t: float | None  # last state write seen (wall time)
    samples: list[Sample] = field(default_factory=list)
    produce: dict[str, Any] | None = None
    latency_ms: list[float] | None = None
    alerts_read: int = 0
    redis: dict[str, Any] | None = None
    worker_log: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    note: str = ""
    round: int = 0

    @property
    def seconds(self) -> float | None:
        if self.first_t is None or self.last_t is None:
            return None
        return max(self.last_t - self.first_t, 1e-9)

    @property
    def events_per_s(self) -> float | None:
        s = self.seconds
        return self.events / s if s else None

    def window(self) -> list[Sample]:
        if self.first_t is None or self.last_t is None:
            return []
        return [s for s in self.samples if self.first_t <= s.t <= self.last_t]

    def cpu_percent(self, which: str = "worker") -> float | None:
        win = self.window()
        if len(win) < 2:
            return None
        a, b = win[0], win[-1]
        name = f"{which}_s" if which.endswith("_wait") else f"{which}_cpu_s"
        used = float(getattr(b, name)) - float(getattr(a, name))
        return 100.0 * used / max(b.t - a.t, 1e-9)

    def rss_max_mb(self) -> float | None:
        if not self.samples:
            return None
        return max(s.worker_rss for s in self.samples) / 2**20

    def summary(self) -> dict[str, Any]:
        out = {
            "system": self.system,
            "mode": self.mode,
            "round": self.round,
            "workers": self.workers,
            "events": self.events,
            "joined_s": self.joined_s,
            "seconds": self.seconds,
            "events_per_s": self.events_per_s,
            "worker_cpu_pct": self.cpu_percent("worker"),
            "worker_runqueue_wait_pct": self.cpu_percent("worker_wait"),
            "broker_cpu_pct": self.cpu_percent("broker"),
            "redis_cpu_pct": self.cpu_percent("redis"),
            "worker_rss_max_mb": self.rss_max_mb(),
            "note": self.note,
        }
        win = self.window()
        if len(win) >= 2 and win[-1].batches > win[0].batches:
            a, b = win[0], win[-1]
            n_b = b.batches - a.batches
            wall = max(b.t - a.t, 1e-9)
            out["batches"] = {
                "count": n_b,
                "events_per_batch": (b.events_in - a.events_in) / n_b,
                "in_batch_share": (b.batch_s - a.batch_s) / wall,
                "ms_per_batch": 1000 * (b.batch_s - a.batch_s) / n_b,
                "kernel_ms_per_batch": 1000 * (b.kernel_s - a.kernel_s) / n_b,
                "redis_ms_per_batch": 1000 * (b.redis_s - a.redis_s) / n_b,
            }
        if self.latency_ms:
            lat = np.asarray(self.latency_ms)
            out["latency_ms"] = {
                "n": int(lat.shape[0]),
                "p50": float(np.percentile(lat, 50)),
                "p95": float(np.percentile(lat, 95)),
                "p99": float(np.percentile(lat, 99)),
                "max": float(lat.max()),
            }
        if self.produce:
            out["produce"] = {k: v for k, v in self.produce.items() if k != "progress"}
        if self.redis:
            out["redis"] = self.redis
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary()
        return data


# --------------------------------------------------------------------------- processes


class WorkerProc:
    """One worker child process (own process group, dies with us), with its web port."""

    def __init__(
        self, system: str, settings: Settings, log_path: Path) -> None:
        from custscore.commands.demo import WorkerWatch, settings_env
        from custscore.processes import pdeathsig_preexec

        argv = [sys.executable, *SYSTEMS[system][1]]
        self.system = system
        self.settings = settings
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = settings_env(settings)
        env["PYTHONUNBUFFERED"] = "1"
        with log_path.open("wb") as fh:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=pdeathsig_preexec(),
            )
        self.watch = WorkerWatch.for_settings(settings)
        import psutil

        self.ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None:
            from custscore.processes import last_log_line

            raise CliError(
                f"{self.system} worker exited (code {code}); log {self.log_path}: "
                f"{last_log_line(self.log_path)}"
            )

    def stop(self, grace_s: float = 15.0) -> None:
        from custscore.processes import stop_process_group

        stop_process_group(self.proc, grace_s)


def _metric_values(text: str) -> dict[str, float]:
    """Sums of the few counters the bench reads, by metric name (labels summed)."""
    wanted = (
        "custscore_events_in_total",
        "custscore_state_writes_total",
        "custscore_batch_size_count",
        "custscore_batch_seconds_count",
        "custscore_consumer_lag",
        "custscore_alerts_total",
        "custscore_bench_alerts_total",
        "custscore_batch_seconds_sum",
        "custscore_kernel_seconds_sum",
        "custscore_redis_seconds_sum",
        "custscore_batch_size_sum",
        "custscore_bench_first_event_time",
        "custscore_bench_last_write_time",
    )
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            with contextlib.suppress(ValueError):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


class Poller:
    """Polls a run's workers every ``interval`` s in a thread and records :class:`Sample` s."""

    def __init__(
        self, workers: list[WorkerProc], stack_pids: dict[str, int], interval: float
    ) -> None:
        import psutil

        self.workers = workers
        self.interval = interval
        self.samples: list[Sample] = []
        self.stack = {k: psutil.Process(p) for k, p in stack_pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    @staticmethod
    def _runqueue_wait(pid: int) -> float:
        try:
            return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    def _cpu(self, proc: Any) -> float:
        try:
            t = proc.cpu_times()
            return float(t.user + t.system)
        except Exception:
            return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.samples.append(self.sample())
            except BaseException as exc:  # recorded; the run loop reports it
                self.error = exc
            self._stop.wait(max(self.interval - (time.monotonic() - began), 0.01))

    def sample(self) -> Sample:
        events = writes = alerts = batches = 0
        batch_s = kernel_s = redis_s = 0.0
        first_at = last_at = 0.0
        busy = False
        lag: float | None = None
        cpu = wait = 0.0
        rss = 0
        for w in self.workers:
            wait += self._runqueue_wait(w.pid)
            reply = w.watch.get("/metrics", timeout_s=2.0)
            if reply is not None and reply[0] == 200:
                v = _metric_values(reply[1].decode("utf-8", "replace"))
                events += int(v.get("custscore_events_in_total", 0))
                writes += int(v.get("custscore_state_writes_total", 0))
                alerts += int(
                    v.get("custscore_alerts_total", 0) + v.get("custscore_bench_alerts_total", 0)
                )
                busy |= v.get("custscore_batch_size_count", 0) != v.get(
                    "custscore_batch_seconds_count", 0
                )
                f_at = v.get("custscore_bench_first_event_time", 0.0)
                if f_at:
                    first_at = min(first_at, f_at) if first_at else f_at
                last_at = max(last_at, v.get("custscore_bench_last_write_time", 0.0))
                batch_s += v.get("custscore_batch_seconds_sum", 0.0)
                kernel_s += v.get("custscore_kernel_seconds_sum", 0.0)
                redis_s += v.get("custscore_redis_seconds_sum", 0.0)
                batches += int(v.get("custscore_batch_seconds_count", 0))
                if "custscore_consumer_lag" in v:
                    lag = (lag or 0.0) + v["custscore_consumer_lag"]
            cpu += self._cpu(w.ps)
            with contextlib.suppress(Exception):
                rss += int(w.ps.memory_info().rss)
        return Sample(
            t=time.time(),
            events_in=events,
            state_writes=writes,
            busy=busy,
            lag_metric=lag,
            worker_cpu_s=cpu,
            worker_rss=rss,
            worker_wait_s=wait,
            broker_cpu_s=self._cpu(self.stack["broker"]),
            redis_cpu_s=self._cpu(self.stack["redis"]),
            alerts=alerts,
            batch_s=batch_s,
            kernel_s=kernel_s,
            redis_s=redis_s,
            batches=batches,
            first_at=first_at,
            last_at=last_at,
        )


def window_bounds(samples: list[Sample], start: float | None) -> tuple[float, float]:
    """(first consumption or ``start``, last state write) from polled counters.

    Counters are polled, so each bound lies between two polls; it is placed inside that
    interval by the rate of the neighbouring interval (and never outside it).
    """
    if samples[-1].first_at and samples[-1].last_at:  # the worker timed itself exactly
        return (start if start is not None else samples[-1].first_at), samples[-1].last_at
    final = samples[-1].state_writes
    k = next(i for i, s in enumerate(samples) if s.state_writes >= final)
    last = samples[k].t
    if k >= 2 and samples[k - 1].state_writes > samples[k - 2].state_writes:
        a, b = samples[k - 2], samples[k - 1]
        rate = (b.state_writes - a.state_writes) / max(b.t - a.t, 1e-9)
        last = min(max(b.t + (final - b.state_writes) / rate, b.t), samples[k].t)
    if start is not None:
        return start, last
    j = next((i for i, s in enumerate(samples) if s.events_in > 0), 0)
    first = samples[j].t
    if j >= 1:
        lo = samples[j - 1].t
        if j + 1 < len(samples) and samples[j + 1].events_in > samples[j].events_in:
            rate = (samples[j + 1].events_in - samples[j].events_in) / max(
                samples[j + 1].t - samples[j].t, 1e-9
            )
            first = min(max(samples[j].t - samples[j].events_in / rate, lo), samples[j].t)
        else:
            first = lo
    return first, last


# --------------------------------------------------------------------------- the runner


class Bench:
    """State of one benchmark run (stack, settings, stream, results)."""

    def __init__(self, config: BenchConfig, say: Callable[[str], None]) -> None:
        self.config = config
        self.say = say
        self.token = uuid.uuid4().hex[:6]
        self.run_dir = Path(tempfile.mkdtemp(prefix="custscore-bench-"))
        self.stack: EmbeddedStack | None = None
        self.base: Settings | None = None
        self.results: list[RunResult] = []
        self.meta: dict[str, Any] = {}
        self.customer_ids: list[str] = []
        self._produced_create_ms: Any = None
        self._n = 0

    # -- setup ---------------------------------------------------------------------

    def start_stack(self) -> None:
        from config.settings import load_settings
        from custscore.stack import EmbeddedStack

        stack = EmbeddedStack.start_on_free_ports(
            self.run_dir / "stack", start_timeout_s=30.0, tie_to_parent=True
        )
        self.stack = stack
        overrides: dict[str, Any] = {
            "broker_port": stack.broker_port,
            "redis_port": stack.redis_port,
            "partitions": self.config.partitions,
            "run_dir": self.run_dir,
        }
        overrides.update(self.config.group_settings)
        overrides.update(self.config.worker_settings)
        self.base = load_settings(environ={}, **overrides)

    def stack_pids(self) -> dict[str, int]:
        assert self.stack is not None
        info = self.stack.read_state()
        assert info is not None
        return {"broker": info.broker.pid, "redis": info.redis.pid}

    def settings_for(self, label: str, inputs: str, **extra: Any) -> Settings:
        """Settings of one run: input topics of the set ``inputs``, everything else its own."""
        from custscore.processes import free_port

        assert self.base is not None
        self._n += 1
        run = f"{self.token}-{self._n}-{label}"
        update: dict[str, Any] = {
            "app_id": f"bench-{run}",
            "redis_key_prefix": f"b{self._n}",
            "web_port": free_port(),
        }
        for kind in ("purchase", "visit", "complaint"):
            update[f"topic_{kind}"] = f"bench.{self.token}.{inputs}.{kind}"
        for kind in ("segment_change", "win_back", "scores", "dead_letter"):
            update[f"topic_{kind}"] = f"bench.{run}.{kind.replace('_', '-')}"
        update.update(extra)
        return self.base.model_copy(update=update)

    def ensure_topics(self, settings: Settings) -> None:
        from custscore.clients import ensure_topics_or_fail

        asyncio.run(ensure_topics_or_fail(settings))

    # -- one run ---------------------------------------------------------------------

    def start_workers(self, system: str, settings: Settings, n: int) -> list[WorkerProc]:
        from custscore.processes import free_port

        workers = []
        for i in range(n):
            s = settings if i == 0 else settings.model_copy(update={"web_port": free_port()})
            log = self.run_dir / "logs" / f"{settings.app_id}-{i}.log"
            workers.append(WorkerProc(system, s, log))
        return workers

    def wait_joined(self, workers: list[WorkerProc], partitions: int, timeout_s: float) -> float:
        began = time.monotonic()
        while True:
            owned: set[int] = set()
            for w in workers:
                w.check()
                health = w.watch.json("/healthz") if w.system == "custscore" else None
                if health is None:
                    reply = w.watch.get("/healthz")
                    if reply is not None and reply[0] == 200:
                        health = json.loads(reply[1])
                if health:
                    owned.update(health.get("partitions", ()))
            if len(owned) >= partitions:
                return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                raise CliError(
                    f"{workers[0].system} workers own {len(owned)} of {partitions} partitions "
                    f"after {timeout_s:g} s; log {workers[0].log_path}"
                )
            time.sleep(0.2)

    def run_system(
        self,
        system: str,
        mode: str,
        settings: Settings,
        expected: int,
        *,
        produce: Callable[[Poller], ProduceResult] | None = None,
        profile_to: Path | None = None,
        note: str = "",
        customers: list[str] | None = None,
    ) -> RunResult:
        """Start ``system``'s workers, (optionally produce), wait until ``expected`` events
        were consumed and written; returns the measured run."""
        from loadtest.redis_memory import used_memory

        cfg = self.config
        n = 1 if mode in ("profile", "warmup") else cfg.workers
        mem_before = used_memory(settings)
        workers = self.start_workers(system, settings, n)
        started = time.time()
        result = RunResult(
            system=system,
            mode=mode,
            workers=n,
            events=expected,
            started_at=started,
            joined_s=None,
            first_t=None,
            last_t=None,
            note=note,
            worker_log=str(workers[0].log_path),
            settings={k: str(v) for k, v in cfg.worker_settings.items()},
        )
        spy: subprocess.Popen[bytes] | None = None
        spy_began = spy_ended = 0.0
        try:
            with Poller(workers, self.stack_pids(), cfg.poll_s) as poller:
                if produce is not None or mode == "profile":
                    result.joined_s = self.wait_joined(workers, cfg.partitions, cfg.timeout_s)
                if profile_to is not None:
                    # start sampling once batches flow (not the group join or the first
                    # kernel calls, which load numba's cache)
                    t_wait = time.monotonic() + cfg.timeout_s
                    while time.monotonic() < t_wait:
                        s0 = poller.latest()
                        if s0 is not None and s0.events_in >= min(expected // 20, 5000):
                            break
                        workers[0].check()
                        time.sleep(0.1)
                    spy = _start_py_spy(workers[0].pid, profile_to, cfg.profile_seconds)
                if produce is not None:
                    p = produce(poller)
                    result.produce = {
                        "produced": p.produced,
                        "started_at": p.started_at,
                        "finished_at": p.finished_at,
                        "events_per_s": p.events_per_s,
                        "progress": p.progress,
                    }
                    result.note = note
                    self._produced_create_ms = p.create_ms
                if spy is not None:
                    # sampled for profile_seconds; the rest of the backlog is not needed
                    spy_began = time.time()
                    _finish_py_spy(spy, cfg.profile_seconds + 60)
                    spy = None
                    spy_ended = time.time()
                else:
                    self._wait_done(workers, poller, result, expected)
                if poller.error is not None:
                    raise CliError(f"metrics polling failed: {poller.error!r}")
            result.samples = list(poller.samples)
            if mode == "profile":
                inside = [s for s in result.samples if spy_began <= s.t <= spy_ended]
                if len(inside) >= 2:
                    result.first_t, result.last_t = inside[0].t, inside[-1].t
                    result.events = inside[-1].events_in - inside[0].events_in
            else:
                self._window(result, mode)
        finally:
            if spy is not None:
                _finish_py_spy(spy)
            for w in workers:
                w.stop()
        if system in ("custscore", "naive") and mode == "drain":
            from loadtest.redis_memory import measure_run

            ids = customers if customers is not None else self.customer_ids
            result.redis = measure_run(settings, system, ids, mem_before)
        return result

    def _wait_done(
        self, workers: list[WorkerProc], poller: Poller, result: RunResult, expected: int
    ) -> None:
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout_s
        quiet_since = time.monotonic()
        last_key: tuple[int, int] | None = None
        while True:
            for w in workers:
                w.check()
            s = poller.latest()
            if s is not None:
                key = (s.events_in, s.state_writes)
                if key != last_key or s.busy:
                    quiet_since = time.monotonic()
                    last_key = key
                if result.joined_s is None and s.events_in > 0:
                    result.joined_s = s.t - result.started_at
                if s.events_in >= expected and not s.busy and time.monotonic() - quiet_since > 1.5:
                    return
            if time.monotonic() > deadline:
                got = 0 if s is None else s.events_in
                raise CliError(
                    f"{result.system} ({result.mode}) consumed {got:,} of {expected:,} events "
                    f"in {cfg.timeout_s:g} s; log {workers[0].log_path}"
                )
            time.sleep(cfg.poll_s)

    def _window(self, result: RunResult, mode: str) -> None:
        samples = result.samples
        if not samples:
            return
        result.first_t, result.last_t = window_bounds(
            samples,
            float(result.produce["started_at"])
            if mode in ("live", "paced") and result.produce is not None
            else None,
        )

    # -- phases ----------------------------------------------------------------------

    def preload(self, stream: Stream) -> RunResult:
        from loadtest.producer import produce

        settings = self.settings_for("preload", "drain")
        self.ensure_topics(settings)
        p = asyncio.run(produce(settings, stream, limit=len(stream)))
        self.say(
            f"preload   {p.produced:,} events produced in {p.seconds:.1f} s "
            f"({p.events_per_s:,.0f}/s, acks=all)"
        )
        r = RunResult(
            system="producer",
            mode="preload",
            workers=0,
            events=p.produced,
            started_at=p.started_at,
            joined_s=None,
            first_t=p.started_at,
            last_t=p.finished_at,
            produce={
                "produced": p.produced,
                "events_per_s": p.events_per_s,
                "started_at": p.started_at,
                "finished_at": p.finished_at,
                "progress": p.progress,
            },
        )
        return r

    def drain(
        self,
        system: str,
        expected: int,
        inputs: str = "drain",
        note: str = "",
        customers: list[str] | None = None,
    ) -> RunResult:
        settings = self.settings_for(system, inputs)
        self.ensure_topics(settings)
        self.say(f"drain     {system}: {self.config.workers} worker(s), {expected:,} events ...")
        r = self.run_system(system, "drain", settings, expected, note=note, customers=customers)
        self.say(
            f"drain     {system}: {r.events_per_s or 0:,.0f} events/s "
            f"({r.seconds or 0:.1f} s, joined after {r.joined_s or 0:.1f} s, "
            f"worker CPU {r.cpu_percent() or 0:.0f} %)"
        )
        return r

    def drain_prefix(self, system: str, stream: Stream, limit: int) -> RunResult:
        """Drain only the first ``limit`` events (preloaded to a topic set of their own)."""
        from loadtest.producer import produce

        inputs = f"prefix{limit}"
        settings = self.settings_for("preload-prefix", inputs)
        self.ensure_topics(settings)
        asyncio.run(produce(settings, stream, limit=limit))
        customers = sorted({k.decode() for k in stream.keys[:limit]})
        return self.drain(
            system,
            limit,
            inputs,
            note=f"first {limit:,} events of the stream",
            customers=customers,
        )

    def warmup(self, stream: Stream, limit: int) -> RunResult:
        """A short custscore drain that is not reported: numba compiles (or loads its cache)
        and every code path runs once before anything is measured."""
        from loadtest.producer import produce

        settings = self.settings_for("warmup", "warmup")
        self.ensure_topics(settings)
        asyncio.run(produce(settings, stream, limit=limit))
        began = time.monotonic()
        r = self.run_system("custscore", "warmup", settings, limit)
        self.say(
            f"warmup    custscore: {limit:,} events, {time.monotonic() - began:.1f} s "
            "(numba compile or cache load; not reported)"
        )
        return r

    def live(self, stream: Stream, rate: float | None, label: str, limit: int) -> RunResult:
        from loadtest.producer import produce

        settings = self.settings_for(label, label)
        self.ensure_topics(settings)
        pace = "max speed" if rate is None else f"{rate:,.0f} events/s"
        self.say(f"{label:<9} custscore: produce {limit:,} events at {pace} while it consumes ...")

        def go(poller: Poller) -> ProduceResult:
            return asyncio.run(produce(settings, stream, rate=rate, limit=limit))

        mode = "live" if rate is None else "paced"
        r = self.run_system("custscore", mode, settings, limit, produce=go)
        r.produce = r.produce or {}
        r.produce["rate_target"] = rate
        if mode == "paced":
            lat, n_alerts = asyncio.run(
                alert_latencies(settings, stream, self._produced_create_ms, limit)
            )
            r.latency_ms = lat
            r.alerts_read = n_alerts
        msg = f"{label:<9} custscore: {r.events_per_s or 0:,.0f} events/s end to end"
        if r.latency_ms:
            lat_a = np.asarray(r.latency_ms)
            msg += (
                f"; event->alert p50 {np.percentile(lat_a, 50):.0f} ms, "
                f"p95 {np.percentile(lat_a, 95):.0f} ms, p99 {np.percentile(lat_a, 99):.0f} ms "
                f"({lat_a.shape[0]:,} alerts)"
            )
        self.say(msg)
        return r

    def profile(self, expected: int, system: str = "custscore") -> RunResult:
        settings = self.settings_for(f"profile-{system}", "drain")
        self.ensure_topics(settings)
        out = self.config.out_dir / f"profile-{system}.txt"
        raw = self.run_dir / f"profile-{system}.raw"
        self.say(f"profile   {system} drain under py-spy ({self.config.profile_seconds:g} s) ...")
        r = self.run_system(system, "profile", settings, expected, profile_to=raw)
        if raw.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(raw, out)
        return r


def _start_py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise CliError("py-spy is not installed (pip install py-spy, or pip install -e '.[dev]')")
    argv = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--output",
        str(out),
        "--duration",
        str(int(seconds)),
        "--rate",
        "100",
        "--idle",
        "--threads",
        "--nonblocking",
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish_py_spy(spy: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """Wait for py-spy's own --duration to end; a failure is reported, not raised (the
    benchmark goes on without a profile, e.g. where ptrace is not permitted)."""
    try:
        _, err = spy.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        spy.send_signal(signal.SIGINT)
        try:
            _, err = spy.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
    if spy.returncode:
        tail = (err or b"").decode("utf-8", "replace").strip().splitlines()[-1:]
        print(f"profile   py-spy failed (exit {spy.returncode}): {' '.join(tail)}", flush=True)


async def alert_latencies(
    settings: Settings, stream: Stream, create_ms: Any, limit: int, timeout_s: float = 60.0
) -> tuple[list[float], int]:
    """Event->alert latencies (ms) of the alerts caused by input events of a paced run."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from custscore.clients import kafka_options

    index = {eid: i for i, eid in enumerate(stream.event_ids[:limit])}
    topics = [settings.topic_segment_change, settings.topic_win_back]
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[float] = []
    n = 0
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        idle_since = time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and time.monotonic() - idle_since < 3.0:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            if batches:
                idle_since = time.monotonic()
            for records in batches.values():
                for rec in records:
                    n += 1
                    if rec.value is None:
                        continue
                    cause = json.loads(rec.value).get("cause", {})
                    i = index.get(cause.get("event_id", ""))
                    if cause.get("type") == "event" and i is not None:
                        out.append(float(rec.timestamp - int(create_ms[i])))
    finally:
        await consumer.stop()
    return out, n


@contextlib.contextmanager
def _bench_context(config: BenchConfig, say: Callable[[str], None]) -> Iterator[Bench]:
    bench = Bench(config, say)
    try:
        bench.start_stack()
        yield bench
    finally:
        if bench.stack is not None:
            bench.stack.stop()
        if not config.keep_run_dir:
            shutil.rmtree(bench.run_dir, ignore_errors=True)


def machine_info() -> dict[str, Any]:
    """Cores, RAM, CPU model, versions, load average."""
    import aiokafka
    import faust
    import msgspec
    import numba
    import psutil
    import redis

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "faust": faust.__version__,
        "aiokafka": aiokafka.__version__,
        "redis_py": redis.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "msgspec": msgspec.__version__,
        "loadavg_start": os.getloadavg(),
    }


def build_stream(config: BenchConfig) -> Stream:
    from loadtest.generate import StreamSpec
    from loadtest.producer import Stream
    from models.params_file import default_params

    if config.source == "synthetic":
        spec = StreamSpec.from_params(
            default_params(),
            config.customers,
            seed=config.seed,
            visit_rate=config.visit_rate,
            complaint_rate=config.complaint_rate,
        )
        return Stream.synthetic(spec, limit=config.limit)
    if config.source == "cdnow":
        from custscore.commands.datasets import find_cdnow, write_cdnow_events

        path = Path(tempfile.mkdtemp(prefix="custscore-bench-cdnow-")) / "cdnow.csv"
        write_cdnow_events(find_cdnow(), path)
        stream = Stream.from_csv(path, "CDNOW master log")
        shutil.rmtree(path.parent, ignore_errors=True)
    else:
        stream = Stream.from_csv(Path(config.source))
    if config.limit is not None and config.limit < len(stream):
        stream = Stream(
            stream.name,
            stream.kinds[: config.limit],
            stream.event_ids[: config.limit],
            stream.keys[: config.limit],
            stream.values[: config.limit],
            len(set(stream.keys[: config.limit])),
            stream.source,
        )
    return stream


def run_bench(config: BenchConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every phase; returns (and writes) the results document."""
    began = time.time()
    meta = machine_info()
    say(
        f"machine   {meta['cores']} cores, {meta['ram_gib']} GiB, {meta['cpu']}; "
        f"load average {meta['loadavg_start'][0]:.2f}"
    )
    t0 = time.monotonic()
    stream = build_stream(config)
    counts = stream.counts()
    say(
        f"stream    {stream.name}: {len(stream):,} events of {stream.customers:,} customers "
        f"({counts}), built in {time.monotonic() - t0:.1f} s"
    )
    runs: list[RunResult] = []
    with _bench_context(config, say) as bench:
        bench.customer_ids = sorted({k.decode() for k in stream.keys})
        runs.append(bench.preload(stream))
        total = len(stream)
        if config.warmup_events > 0 and (
            "custscore" in config.systems or config.live or config.paced_seconds > 0
        ):
            runs.append(bench.warmup(stream, min(total, config.warmup_events)))
        cs_rates: list[float] = []
        for rnd in range(max(1, config.repeats)):
            for system in config.systems:
                if rnd > 0 and system not in REPEATED:
                    continue
                if system == "naive" and config.naive_limit and config.naive_limit < total:
                    r = bench.drain_prefix(system, stream, config.naive_limit)
                else:
                    r = bench.drain(system, total)
                r.round = rnd
                runs.append(r)
                if system == "custscore" and r.events_per_s:
                    cs_rates.append(r.events_per_s)
        max_rate = float(np.median(cs_rates)) if cs_rates else None
        live_rate = None
        if config.live:
            r = bench.live(stream, None, "live", min(total, config.live_limit or total))
            runs.append(r)
            live_rate = r.events_per_s
        if config.paced_seconds > 0:
            ref = min(x for x in (max_rate, live_rate) if x) if (max_rate or live_rate) else 2000.0
            rate = ref * config.paced_fraction
            limit = min(total, int(rate * config.paced_seconds))
            r = bench.live(stream, rate, "paced", limit)
            r.note = f"{config.paced_fraction:g} x max rate ({ref:,.0f}/s)"
            runs.append(r)
        if config.profile:
            for system in config.profile_systems:
                runs.append(bench.profile(total, system))
        fetch_probe = None
        if config.fetch_probe:
            from loadtest.fetch_probe import probe

            assert bench.base is not None
            say("probe     broker fetch wait: plain aiokafka latency at 1,000 events/s ...")
            fetch_probe = asyncio.run(
                probe(bench.base.bootstrap_servers, f"bench.{bench.token}.fetch-probe")
            )
            say(
                "probe     "
                + "; ".join(
                    f"fetch_max_wait_ms={t['fetch_max_wait_ms']}: p50 {t.get('p50', 0):.0f} ms, "
                    f"p99 {t.get('p99', 0):.0f} ms"
                    for t in fetch_probe["trials"]
                )
            )
    doc = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "machine": meta,
        "stream": {
            "name": stream.name,
            "source": stream.source,
            "events": len(stream),
            "customers": stream.customers,
            "counts": counts,
        },
        "runs": [r.to_json() for r in runs],
        "fetch_probe": fetch_probe,
        "started_at": began,
        "seconds": time.time() - began,
        "loadavg_end": os.getloadavg(),
    }
    out = config.results or (config.out_dir / "results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, separators=(",", ":"), default=float) + "\n")
    say(f"results   {out} ({doc['seconds']:.0f} s)")
    return doc
