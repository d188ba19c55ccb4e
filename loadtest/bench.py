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

This module is the runner (the phases, in order); what to run and what a run measured are
:mod:`loadtest.bench_records`, the measurements :mod:`loadtest.probes`. A little over 500
lines because every phase works on the one :class:`Bench` state (stack, topic sets, runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from config.settings import Settings, load_settings
from custscore.clients import ensure_topics_or_fail
from custscore.commands.datasets import find_cdnow, write_cdnow_events
from custscore.errors import CliError
from custscore.processes import free_port
from custscore.stack import EmbeddedStack
from loadtest.backfill import backfill_spec, produce_backfill
from loadtest.bench_records import REPEATED, BenchConfig, RunResult
from loadtest.fetch_probe import probe
from loadtest.generate import StreamSpec
from loadtest.probes import (
    Poller,
    WorkerProc,
    alert_latencies,
    finish_py_spy,
    machine_info,
    stage_histograms,
    start_py_spy,
    window_bounds,
)
from loadtest.process_bench import ProcessResult, measure_process
from loadtest.producer import ProduceResult, Stream, produce
from loadtest.redis_memory import measure_run, used_memory
from models.params_file import default_params
from streams.topics import INPUT_TOPIC_SETTINGS, topic_settings

__all__ = ["Bench", "build_stream", "run_bench"]


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
        assert self.base is not None
        self._n += 1
        run = f"{self.token}-{self._n}-{label}"
        update: dict[str, Any] = {
            "app_id": f"bench-{run}",
            "redis_key_prefix": f"b{self._n}",
            "web_port": free_port(),
        }
        for event_type, setting in INPUT_TOPIC_SETTINGS.items():
            update[setting] = f"bench.{self.token}.{inputs}.{event_type}"
        for setting in topic_settings():  # every output topic is the run's own
            name = setting.removeprefix("topic_").replace("_", "-")
            update.setdefault(setting, f"bench.{run}.{name}")
        update.update(extra)
        return self.base.model_copy(update=update)

    def ensure_topics(self, settings: Settings) -> None:
        asyncio.run(ensure_topics_or_fail(settings))

    # -- one run ---------------------------------------------------------------------

    def start_workers(self, system: str, settings: Settings, n: int) -> list[WorkerProc]:
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
                owned.update(w.owned())
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
        producing: Callable[[Poller], ProduceResult] | None = None,
        profile_to: Path | None = None,
        note: str = "",
        customers: list[str] | None = None,
        timeout_s: float | None = None,
    ) -> RunResult:
        """Start ``system``'s workers, (optionally produce with ``producing``), wait until
        ``expected`` events were consumed and written (within ``timeout_s``, default the
        config's); returns the measured run."""
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
                if producing is not None or mode == "profile":
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
                    spy = start_py_spy(workers[0].pid, profile_to, cfg.profile_seconds)
                if producing is not None:
                    p = producing(poller)
                    # a generated stream may end short of the events asked for
                    expected = result.events = min(expected, p.produced)
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
                    finish_py_spy(spy, cfg.profile_seconds + 60)
                    spy = None
                    spy_ended = time.time()
                else:
                    self._wait_done(workers, poller, result, expected, timeout_s or cfg.timeout_s)
                    if mode == "paced":
                        text = workers[0].watch.metrics_text(timeout_s=5.0)
                        result.stages = stage_histograms(text) if text else {}
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
                finish_py_spy(spy)
            for w in workers:
                w.stop()
        if system in ("custscore", "naive") and mode == "drain":
            ids = customers if customers is not None else self.customer_ids
            result.redis = measure_run(settings, system, ids, mem_before)
        return result

    def _wait_done(
        self,
        workers: list[WorkerProc],
        poller: Poller,
        result: RunResult,
        expected: int,
        timeout_s: float,
    ) -> None:
        deadline = time.monotonic() + timeout_s
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
                    f"in {timeout_s:g} s; log {workers[0].log_path}"
                )
            time.sleep(self.config.poll_s)

    def _window(self, result: RunResult, mode: str) -> None:
        samples = result.samples
        if not samples:
            return
        result.first_t, result.last_t = window_bounds(
            samples,
            float(result.produce["started_at"])
            if mode in ("live", "paced", "backfill") and result.produce is not None
            else None,
        )

    # -- phases ----------------------------------------------------------------------

    def preload(self, stream: Stream, inputs: str = "drain", envelope: int = 0) -> RunResult:
        """Produce the stream once to the input topic set ``inputs`` (as batch envelopes of
        up to ``envelope`` events when > 0)."""
        settings = self.settings_for("preload", inputs)
        self.ensure_topics(settings)
        p = asyncio.run(produce(settings, stream, limit=len(stream), envelope=envelope))
        form = f"envelopes of up to {envelope:,}" if envelope else "single events"
        self.say(
            f"preload   {p.produced:,} events produced in {p.seconds:.1f} s "
            f"({p.events_per_s:,.0f}/s, acks=all, {form})"
        )
        r = RunResult(
            system="producer",
            mode="preload" if not envelope else "preload-envelope",
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
        mode: str = "drain",
    ) -> RunResult:
        settings = self.settings_for(system, inputs)
        self.ensure_topics(settings)
        self.say(f"{mode:<9} {system}: {self.config.workers} worker(s), {expected:,} events ...")
        r = self.run_system(system, mode, settings, expected, note=note, customers=customers)
        self.say(
            f"{mode:<9} {system}: {r.events_per_s or 0:,.0f} events/s "
            f"({r.seconds or 0:.1f} s, joined after {r.joined_s or 0:.1f} s, "
            f"worker CPU {r.cpu_percent() or 0:.0f} %)"
        )
        return r

    def drain_prefix(self, system: str, stream: Stream, limit: int) -> RunResult:
        """Drain only the first ``limit`` events (preloaded to a topic set of their own)."""
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

    def live(
        self,
        stream: Stream,
        rate: float | None,
        label: str,
        limit: int,
        extra: dict[str, Any] | None = None,
    ) -> RunResult:
        """custscore on fresh topics while ``stream`` is produced at ``rate`` (None: max
        speed); ``extra``: worker settings of this run only."""
        settings = self.settings_for(label, label, **(extra or {}))
        self.ensure_topics(settings)
        pace = "max speed" if rate is None else f"{rate:,.0f} events/s"
        self.say(f"{label:<9} custscore: produce {limit:,} events at {pace} while it consumes ...")

        def go(poller: Poller) -> ProduceResult:
            return asyncio.run(produce(settings, stream, rate=rate, limit=limit))

        mode = "live" if rate is None else "paced"
        r = self.run_system("custscore", mode, settings, limit, producing=go)
        r.produce = r.produce or {}
        r.produce["rate_target"] = rate
        if mode == "paced":
            lat, by_kind = asyncio.run(
                alert_latencies(settings, stream, self._produced_create_ms, limit)
            )
            r.latency_ms = lat
            r.alerts_read = sum(by_kind.values())
            r.alerts_by_kind = dict(by_kind)
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

    def backfill(self, customers: int, events: int, envelope: int) -> RunResult:
        """A synthetic history of ``customers`` / ``events`` produced as envelopes while one
        worker consumes it (:mod:`loadtest.backfill`): end to end, CPU, Redis per customer."""
        settings = self.settings_for("backfill", "backfill")
        self.ensure_topics(settings)
        spec = backfill_spec(customers, events)
        self.say(
            f"backfill  custscore: {events:,} events of {customers:,} customers as envelopes "
            f"of up to {envelope:,}, generated while it consumes ..."
        )
        mem_before = used_memory(settings)
        seen: list[str] = []

        def go(poller: Poller) -> ProduceResult:
            nonlocal seen
            result, seen = asyncio.run(produce_backfill(settings, spec, events, envelope))
            return result

        r = self.run_system(
            "custscore",
            "backfill",
            settings,
            events,
            producing=go,
            note=f"envelopes of up to {envelope:,} events",
            timeout_s=max(self.config.timeout_s, events / 1000.0),
        )
        r.redis = measure_run(settings, "custscore", seen, mem_before)
        delta = r.redis["used_delta_per_customer"]
        self.say(
            f"backfill  custscore: {r.events_per_s or 0:,.0f} events/s end to end "
            f"({r.seconds or 0:.0f} s, worker CPU {r.cpu_percent() or 0:.0f} %); Redis "
            f"{delta:,.0f} B per customer ({len(seen):,} customers)"
        )
        return r

    def process(self, stream: Stream, envelope: int) -> ProcessResult:
        """``BatchProcessor.process`` in this process on the bench's Valkey, null publisher."""
        settings = self.settings_for("process", "process")
        form = f"envelopes of up to {envelope:,}" if envelope else "single events"
        self.say(f"process   BatchProcessor.process in-process, {form}, null publisher ...")
        r = measure_process(settings, stream, envelope)
        self.say(
            f"process   {r.cpu_us_per_event:.1f} µs CPU/event, {r.wall_us_per_event:.1f} µs "
            f"wall/event ({r.events:,} events in {r.batches:,} batches, {r.alerts:,} alerts)"
        )
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


def build_stream(config: BenchConfig) -> Stream:
    """The stream every system is measured on: synthetic, CDNOW or an event CSV."""
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
        path = Path(tempfile.mkdtemp(prefix="custscore-bench-cdnow-")) / "cdnow.csv"
        write_cdnow_events(find_cdnow(), path)
        stream = Stream.from_csv(path, "CDNOW master log")
        shutil.rmtree(path.parent, ignore_errors=True)
    else:
        stream = Stream.from_csv(Path(config.source))
    if config.limit is not None:
        stream = stream.head(config.limit)
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
        if config.envelope > 0 and "custscore" in config.systems:
            runs.append(bench.preload(stream, inputs="envelope", envelope=config.envelope))
            runs.append(
                bench.drain(
                    "custscore",
                    total,
                    inputs="envelope",
                    note=f"envelopes of up to {config.envelope:,} events",
                    mode="envelope",
                )
            )
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
        process: list[ProcessResult] = []
        if config.process:
            for envelope in (0, config.envelope):
                if envelope or not process:
                    process.append(bench.process(stream, envelope))
        if config.profile:
            for system in config.profile_systems:
                runs.append(bench.profile(total, system))
        fetch_probe = None
        if config.fetch_probe:
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
        # last: it leaves the shared Valkey with a million customers and a large AOF, and
        # what was measured after it was slower (the process phase, on that Valkey, took
        # 1.5x the wall per event of `custscore bench process` run alone minutes before)
        if config.backfill_events > 0:
            runs.append(
                bench.backfill(config.backfill_customers, config.backfill_events, config.envelope)
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
        "process": [p.to_json() for p in process],
        "started_at": began,
        "seconds": time.time() - began,
        "loadavg_end": os.getloadavg(),
    }
    out = config.results or (config.out_dir / "results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, separators=(",", ":"), default=float) + "\n")
    say(f"results   {out} ({doc['seconds']:.0f} s)")
    return doc


def run_latency_sweep(
    config: BenchConfig,
    grid: list[tuple[int, float]],
    rate: float,
    seconds: float,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Event->alert latency at ``rate`` for each (fetch_max_wait_ms, batch_within_s) of
    ``grid``, one fresh worker and topic set each, on one embedded stack."""
    stream = build_stream(config)
    limit = min(len(stream), int(rate * seconds))
    trials: list[dict[str, Any]] = []
    with _bench_context(config, say) as bench:
        bench.customer_ids = sorted({k.decode() for k in stream.keys})
        bench.warmup(stream, min(len(stream), config.warmup_events))
        for n, (fetch_ms, within_s) in enumerate(grid):
            extra = {"fetch_max_wait_ms": fetch_ms, "batch_within_s": within_s}
            say(f"latency   fetch_max_wait_ms={fetch_ms}, batch_within_s={within_s:g}")
            r = bench.live(stream, rate, f"latency{n}", limit, extra=extra)
            summary = r.summary()
            trials.append(
                {
                    "fetch_max_wait_ms": fetch_ms,
                    "batch_within_s": within_s,
                    "rate": rate,
                    "events": r.events,
                    "events_per_s": summary.get("events_per_s"),
                    "worker_cpu_pct": summary.get("worker_cpu_pct"),
                    "latency_ms": summary.get("latency_ms"),
                    "stages": r.stages,
                }
            )
    return {"trials": trials, "machine": machine_info(), "stream": stream.name}
