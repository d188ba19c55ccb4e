"""Soak test: a real worker on its own embedded stack, fed at a steady rate for a long time,
sampling worker RSS, Redis memory and lag; reports growth after warm-up.

    python -m loadtest.soak [--minutes 10] [--rate N | --measure-s 30] [--json OUT]

Without ``--rate`` the worker's maximum rate is measured first (a burst of synthetic events at
full speed, throughput counted from the worker's own ``custscore_events_in_total``), and the
soak runs at half of it. Lag is counted, never taken from end offsets: events produced minus
events the worker consumed. Growth is the least-squares slope of each series after the warm-up
(the first ``--warmup`` fraction of the run), in MiB per minute, plus first/last values.

The stream: ``--customers`` synthetic customers (a fixed pool, so state stops growing once all
were seen), purchases and visits with a few complaints, event time advancing one hour per 100
events; every event id is new (the dedupe sets grow until their event-time retention).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
from aiokafka import AIOKafkaProducer

from config.settings import Settings, load_settings
from custscore.clients import kafka_options
from custscore.processes import free_port
from custscore.stack import EmbeddedStack
from custscore.supervision import WorkerProcess, WorkerWatch
from streams.keys import partition_for
from streams.topics import TopicTable, ensure_topics

__all__ = ["Sample", "SoakReport", "main", "run_soak"]

T0 = 852076800  # 1997-01-01, event time of the first event


@dataclass
class Sample:
    at_s: float  # seconds since the soak phase began
    produced: int
    consumed: int
    rss_mib: float
    redis_mib: float
    redis_keys: int

    @property
    def lag(self) -> int:
        return self.produced - self.consumed


@dataclass
class SoakReport:
    max_rate: float | None
    rate: float
    minutes: float
    warmup_s: float
    samples: list[Sample] = field(default_factory=list)

    def slope(self, name: str) -> float:
        """Least-squares slope per minute of a sample field after the warm-up."""
        pts = [(s.at_s, float(getattr(s, name))) for s in self.samples if s.at_s >= self.warmup_s]
        if len(pts) < 2:
            return float("nan")
        n = len(pts)
        mx = sum(x for x, _ in pts) / n
        my = sum(y for _, y in pts) / n
        var = sum((x - mx) ** 2 for x, _ in pts)
        cov = sum((x - mx) * (y - my) for x, y in pts)
        return cov / var * 60.0 if var else float("nan")

    def after_warmup(self) -> list[Sample]:
        return [s for s in self.samples if s.at_s >= self.warmup_s]

    def summary(self) -> dict[str, Any]:
        warm = self.after_warmup() or self.samples
        first, last = warm[0], warm[-1]
        return {
            "max_rate_events_per_s": self.max_rate,
            "soak_rate_events_per_s": self.rate,
            "minutes": self.minutes,
            "warmup_s": self.warmup_s,
            "events_produced": self.samples[-1].produced if self.samples else 0,
            "rss_mib_after_warmup": [round(first.rss_mib, 1), round(last.rss_mib, 1)],
            "rss_mib_per_min": round(self.slope("rss_mib"), 3),
            "redis_mib_after_warmup": [round(first.redis_mib, 1), round(last.redis_mib, 1)],
            "redis_mib_per_min": round(self.slope("redis_mib"), 3),
            "redis_keys_after_warmup": [first.redis_keys, last.redis_keys],
            "lag_max_after_warmup": max(s.lag for s in warm),
            "lag_last": last.lag,
        }


class Synthetic:
    """An endless synthetic event stream over a fixed customer pool."""

    def __init__(self, customers: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        self.n = 0

    def next(self) -> tuple[str, bytes, bytes]:
        self.n += 1
        rng = self.rng
        customer = f"soak-{rng.randrange(self.customers):07d}"
        ts_ms = (T0 + self.n * 36) * 1000  # one hour of event time per 100 events
        roll = rng.random()
        body: dict[str, Any] = {"event_id": f"soak-{self.n}", "customer_id": customer, "ts": ts_ms}
        if roll < 0.55:
            kind = "purchase"
            body["amount"] = round(rng.lognormvariate(3.0, 0.8), 2)
        elif roll < 0.98:
            kind = "visit"
        else:
            kind = "complaint"
            body["severity"] = rng.randint(1, 5)
        return kind, customer.encode(), json.dumps(body).encode()


async def _produce(
    settings: Settings,
    source: Synthetic,
    count: int | None,
    rate: float | None,
    seconds: float | None,
    produced: list[int],
) -> None:
    """Produce ``count`` events at full speed, or ``rate`` events/s for ``seconds``."""
    topics = {name: topic for topic, name in TopicTable.from_settings(settings).inputs.items()}
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", linger_ms=5)
    await producer.start()
    try:
        began = time.monotonic()
        pending: list[Any] = []
        sent = 0
        while True:
            elapsed = time.monotonic() - began
            if count is not None:
                due = count
            else:
                assert rate is not None and seconds is not None
                if elapsed >= seconds:
                    break
                due = int(rate * elapsed)
            step = min(due - sent, 2000)
            if step <= 0:
                if count is not None:
                    break
                await asyncio.sleep(0.02)
                continue
            for _ in range(step):
                kind, key, value = source.next()
                p = partition_for(key.decode(), settings.partitions)
                pending.append(await producer.send(topics[kind], value, key=key, partition=p))
            await asyncio.gather(*pending)
            pending = []
            sent += step
            produced[0] += step
    finally:
        await producer.stop()


def run_soak(
    minutes: float,
    rate: float | None,
    measure_s: float,
    customers: int,
    warmup: float,
    sample_s: float,
    workdir: Path,
    seed: int = 7,
    say: Any = print,
) -> SoakReport:
    import psutil  # an optional dependency (the dev extra)

    stack = EmbeddedStack(
        workdir / "stack",
        broker_port=free_port(),
        redis_port=free_port(),
        start_timeout_s=30.0,
        tie_to_parent=True,
    )
    info = stack.start()
    worker: WorkerProcess | None = None
    try:
        settings = load_settings(
            environ={},
            kafka_bootstrap=info.bootstrap_servers,
            redis_url=info.redis_url,
            app_id="custscore-soak",
            redis_key_prefix="soak",
            web_port=free_port(),
        )
        asyncio.run(ensure_topics(settings))
        worker = WorkerProcess.start(settings, workdir / "worker.log", loglevel="warning")
        watch = WorkerWatch.for_settings(settings, worker)
        say(f"worker pid {worker.pid}; joining its group")
        watch.wait_ready(settings.partitions, 180)
        client = redis.Redis.from_url(info.redis_url)
        proc = psutil.Process(worker.pid)
        source = Synthetic(customers, seed)
        produced = [0]

        def consumed() -> int:
            m = watch.metrics()
            return m.events_in if m else -1

        max_rate: float | None = None
        if rate is None:
            burst = max(int(measure_s * 3000), 10_000)
            say(f"measuring the maximum rate with a burst of {burst:,} events")
            t0 = time.monotonic()
            asyncio.run(_produce(settings, source, burst, None, None, produced))
            while consumed() < produced[0]:
                worker.check_alive()
                time.sleep(0.2)
            max_rate = produced[0] / (time.monotonic() - t0)
            rate = max_rate / 2
            say(f"maximum {max_rate:,.0f} events/s end to end; soaking at {rate:,.0f} events/s")
        report = SoakReport(max_rate, rate, minutes, warmup * minutes * 60)
        base = produced[0]
        began = time.monotonic()

        def sample() -> None:
            worker.check_alive()
            mem = client.info("memory")
            rss = proc.memory_info().rss + sum(
                c.memory_info().rss for c in proc.children(recursive=True)
            )
            report.samples.append(
                Sample(
                    round(time.monotonic() - began, 1),
                    produced[0] - base,
                    consumed() - base,
                    rss / 2**20,
                    float(mem["used_memory"]) / 2**20,
                    int(client.dbsize()),
                )
            )

        async def soak() -> None:
            task = asyncio.create_task(
                _produce(settings, source, None, rate, minutes * 60, produced)
            )
            while not task.done():
                await asyncio.to_thread(sample)
                s = report.samples[-1]
                say(
                    f"{s.at_s:7.0f} s  produced {s.produced:>9,}  lag {s.lag:>7,}  "
                    f"rss {s.rss_mib:7.1f} MiB  redis {s.redis_mib:7.1f} MiB  keys {s.redis_keys:,}"
                )
                await asyncio.wait({task}, timeout=sample_s)
            await task

        asyncio.run(soak())
        sample()
        return report
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    parser.add_argument("--rate", type=float, help="events/s (default: half the measured maximum)")
    parser.add_argument(
        "--measure-s",
        type=float,
        default=20.0,
        help="size of the max-rate burst in seconds of ~3k events/s",
    )
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run ignored")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="write samples and summary here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="custscore-soak-") as tmp:
        report = run_soak(
            args.minutes,
            args.rate,
            args.measure_s,
            args.customers,
            args.warmup,
            args.sample_s,
            Path(tmp),
        )
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"summary": summary, "samples": [asdict(s) for s in report.samples]}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
