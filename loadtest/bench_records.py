"""The benchmark's records: what to run (:class:`BenchConfig`, the measured systems) and what
one run measured (:class:`Sample` polls, :class:`RunResult`), as written to results.json.

:mod:`loadtest.bench` runs the phases, :mod:`loadtest.probes` takes the measurements and
:mod:`loadtest.report` turns the results into the BENCHMARKS.md section.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from custscore.supervision import worker_command

__all__ = ["DRAIN_ORDER", "REPEATED", "SYSTEMS", "BenchConfig", "RunResult", "Sample"]

# system -> (what it is, the arguments after ``python`` that start one of its workers)
SYSTEMS: dict[str, tuple[str, list[str]]] = {
    "custscore": ("custscore worker", worker_command("warning")),
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
    envelope: int = 1000  # events per batch envelope of the envelope drain (0 = no such run)
    # the backfill scenario: this many synthetic events of this many customers as envelopes
    # (0 events: skipped)
    backfill_customers: int = 1_000_000
    backfill_events: int = 20_000_000
    process: bool = True  # BatchProcessor.process in-process (null publisher), µs per event
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
            "customers": 2_000,
            "limit": 8_000,
            "naive_limit": 2_000,
            "paced_seconds": 4.0,
            "profile": False,
            "partitions": 4,
            "poll_s": 0.25,
            "live": False,
            "warmup_events": 0,
            "repeats": 1,
            "fetch_probe": False,
            "timeout_s": 150.0,
            "backfill_events": 0,
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
    alerts_by_kind: dict[str, int] = field(default_factory=dict)  # alerts read, per alert kind
    redis: dict[str, Any] | None = None
    stages: dict[str, Any] = field(default_factory=dict)  # paced: custscore_stage_seconds
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
