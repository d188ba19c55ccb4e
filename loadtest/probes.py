"""The benchmark's probes: worker processes and what is measured on them.

* :class:`WorkerProc`: one worker of a measured system (:data:`loadtest.bench_records.SYSTEMS`)
  as a child process, with its web port and its ``psutil`` handle;
* :class:`Poller`: a thread that polls every worker's ``/metrics`` (through the one metrics
  parser, :func:`custscore.supervision.metric_totals`) and the CPU, RSS and run-queue wait of
  the workers, the broker and Valkey, as :class:`~loadtest.bench_records.Sample` s;
* :func:`window_bounds`: the measured window of a run from those polls;
* :func:`start_py_spy` / :func:`finish_py_spy`: the sampling profile of one worker;
* :func:`alert_latencies`: event->alert latency from the alert topics (the one reader,
  :func:`custscore.supervision.alert_records`), counted per alert kind;
* :func:`machine_info`: what the figures were measured on.

``psutil`` is imported where it is used: it is an optional dependency (the dev extra).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiokafka
import faust
import msgspec
import numba
import numpy as np
import redis

from config.settings import Settings
from custscore.errors import CliError
from custscore.supervision import WorkerProcess, WorkerWatch, alert_records, metric_totals
from loadtest.bench_records import SYSTEMS, Sample
from loadtest.producer import Stream

__all__ = [
    "Poller",
    "WorkerProc",
    "alert_latencies",
    "finish_py_spy",
    "machine_info",
    "start_py_spy",
    "window_bounds",
]


class WorkerProc:
    """One worker of a measured system: a child process in its own process group that dies
    with us, its web views and its ``psutil`` handle."""

    def __init__(self, system: str, settings: Settings, log_path: Path) -> None:
        import psutil

        self.system = system
        self.settings = settings
        self.log_path = log_path
        self.process = WorkerProcess.start(
            settings,
            log_path,
            command=SYSTEMS[system][1],
            extra_env={"PYTHONUNBUFFERED": "1"},
            name=f"{system} worker",
        )
        self.watch = WorkerWatch.for_settings(settings, self.process)
        self.ps = psutil.Process(self.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        """Raise CliError (exit code and the log's last line) when the worker has exited."""
        self.process.check_alive()

    def owned(self) -> list[int]:
        """The partitions it owns now (none while its web port does not answer)."""
        return self.watch.owned() or []

    def stop(self, grace_s: float = 15.0) -> None:
        self.process.stop(grace_s)


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
        # each worker's last answered /metrics totals: counters only grow, so a scrape that
        # gets no answer (a batch holding the event loop, a worker stopping) keeps them
        # rather than reading as zero (which had put a backfill's last write before its start)
        self._last_totals: dict[int, dict[str, float]] = {}

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
            text = w.watch.metrics_text(timeout_s=2.0)
            if text is not None:
                self._last_totals[w.pid] = metric_totals(text)
            v = self._last_totals.get(w.pid)
            if v is not None:
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


def stage_histograms(text: str) -> dict[str, dict[str, Any]]:
    """The worker's ``custscore_stage_seconds`` histogram per stage, from a /metrics text:
    count, sum and cumulative (upper bound, count) buckets."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "custscore_stage_seconds":
            continue
        for sample in family.samples:
            stage = out.setdefault(
                sample.labels["stage"], {"count": 0.0, "sum": 0.0, "buckets": []}
            )
            if sample.name.endswith("_bucket"):
                stage["buckets"].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                stage["count"] = sample.value
            elif sample.name.endswith("_sum"):
                stage["sum"] = sample.value
    return out


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


def start_py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
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


def finish_py_spy(spy: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
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
) -> tuple[list[float], Counter[str]]:
    """Event->alert latencies (ms) of the alerts caused by input events of a paced run, and
    the alert records read per alert kind (every kind of the topic table)."""
    index = {eid: i for i, eid in enumerate(stream.event_ids[:limit])}
    records = await alert_records(
        settings, timeout_s=timeout_s, idle_s=3.0, max_records=20_000, client_id="custscore-bench"
    )
    out: list[float] = []
    for rec in records:
        if rec.alert is None:
            continue
        cause = rec.alert.get("cause", {})
        i = index.get(cause.get("event_id", ""))
        if cause.get("type") == "event" and i is not None:
            out.append(float(rec.timestamp_ms - int(create_ms[i])))
    return out, Counter(rec.kind for rec in records)


def machine_info() -> dict[str, Any]:
    """Cores, RAM, CPU model, versions, load average."""
    import psutil

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
