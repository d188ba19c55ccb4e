"""Shared pieces of the baseline workers: settings, a Faust app configured like custscore's,
and the counters the benchmark reads.

Every baseline exposes ``/metrics`` with the same counter names the custscore worker uses for
what the benchmark watches (``custscore_events_in_total``, ``custscore_state_writes_total``,
``custscore_batch_size_count`` / ``custscore_batch_seconds_count``) and ``/healthz`` with the
owned partitions, so one watcher (custscore.supervision.WorkerWatch) drives all of them.
Counters are plain integers here: a baseline must not pay for Prometheus client calls per event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings, load_settings
from streams.topics import TopicTable

__all__ = [
    "FAUST_CONF_KEYS",
    "Counters",
    "FaustBaseline",
    "faust_app_like_custscore",
    "faust_baseline",
    "input_kinds",
    "run_faust_worker",
    "serve_http",
    "settings_from_env",
]

# Consumer / producer / stream knobs copied from the custscore app, so a baseline consumes
# exactly as custscore does, even after those settings are tuned in streams/worker.py.
FAUST_CONF_KEYS = (
    "broker_commit_every",
    "broker_commit_interval",
    "broker_max_poll_records",
    "broker_max_poll_interval",
    "broker_session_timeout",
    "broker_heartbeat_interval",
    "broker_rebalance_timeout",
    "broker_request_timeout",
    "broker_check_crcs",
    "consumer_max_fetch_size",
    "consumer_auto_offset_reset",
    "stream_buffer_maxsize",
    "stream_wait_empty",
    "stream_processing_timeout",
    "producer_acks",
    "producer_linger",
    "producer_max_batch_size",
    "producer_max_request_size",
    "topic_partitions",
    "topic_allow_declare",
    "topic_disable_leader",
    "value_serializer",
    "key_serializer",
    "store",
    "web_in_thread",
)


def settings_from_env() -> Settings:
    """The worker's settings from CUSTSCORE_* variables (as ``custscore worker`` reads them)."""
    return load_settings()


def input_kinds(settings: Settings) -> dict[str, str]:
    """The input topics, each with the event type it carries (the worker's topic table)."""
    return TopicTable.from_settings(settings).inputs


@dataclass
class Counters:
    """What a baseline counts; rendered as Prometheus text with custscore's metric names."""

    events_in: dict[str, int] = field(default_factory=dict)  # type -> messages
    state_writes: int = 0
    batches_started: int = 0
    batches_done: int = 0
    alerts: int = 0
    first_at: float = 0.0  # wall time the first event was counted
    last_at: float = 0.0  # wall time the last state write (or event, for pass-throughs) ended

    def done(self, events: int, writes: int) -> None:
        """Count ``events`` consumed and ``writes`` written by one batch, with the times."""
        now = time.time()
        if not self.first_at and events:
            self.first_at = now
        self.events_in["all"] = self.events_in.get("all", 0) + events
        self.state_writes += writes
        if writes or events:
            self.last_at = now

    def render(self) -> str:
        lines = ["# TYPE custscore_events_in_total counter"]
        for kind, n in sorted(self.events_in.items()):
            lines.append(f'custscore_events_in_total{{type="{kind}"}} {n}')
        lines += [
            "# TYPE custscore_state_writes_total counter",
            f"custscore_state_writes_total {self.state_writes}",
            "# TYPE custscore_batch_size histogram",
            f"custscore_batch_size_count {self.batches_started}",
            "# TYPE custscore_batch_seconds histogram",
            f"custscore_batch_seconds_count {self.batches_done}",
            "# TYPE custscore_bench_alerts_total counter",
            f"custscore_bench_alerts_total {self.alerts}",
            "# TYPE custscore_bench_first_event_time gauge",
            f"custscore_bench_first_event_time {self.first_at:.6f}",
            "# TYPE custscore_bench_last_write_time gauge",
            f"custscore_bench_last_write_time {self.last_at:.6f}",
        ]
        return "\n".join(lines) + "\n"


def faust_app_like_custscore(settings: Settings, app_id: str) -> Any:
    """A Faust app with the consumer, producer and stream settings of the custscore worker."""
    from streams.worker import create_app  # only the Faust baselines (not worker_raw) load it

    reference = create_app(settings)
    conf = {key: getattr(reference.conf, key) for key in FAUST_CONF_KEYS}
    return type(reference)(  # the same app class: the same consumer (fetch wait)
        app_id,
        fetch_max_wait_ms=reference.fetch_max_wait_ms,
        broker=f"kafka://{settings.bootstrap_servers}",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        env={},
        **conf,
    )


def add_views(app: Any, counters: Counters, partitions: Callable[[], list[int]]) -> None:
    """``/metrics`` and ``/healthz`` on a Faust app."""

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(counters.render().encode(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")  # type: ignore[untyped-decorator]
    async def health_view(web: Any, request: Any) -> Any:
        return web.json({"partitions": partitions()})


@dataclass
class FaustBaseline:
    """A baseline's Faust app with its counters, served at ``/metrics`` and ``/healthz``."""

    app: Any
    counters: Counters
    kinds: dict[str, str]  # input topic -> event type (:func:`input_kinds`)
    source: Any  # the three input topics as one Faust topic of raw bytes


def faust_baseline(settings: Settings) -> FaustBaseline:
    """The app (id = ``settings.app_id`` = consumer group) and source every Faust baseline
    starts from; ``/healthz`` reports the owned partitions of the purchase topic."""
    app = faust_app_like_custscore(settings, settings.app_id)
    counters = Counters()
    kinds = input_kinds(settings)
    source = app.topic(*kinds, key_type=bytes, value_type=bytes, partitions=settings.partitions)

    def owned() -> list[int]:
        return sorted(
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == settings.topic_purchase
        )

    add_views(app, counters, owned)
    return FaustBaseline(app, counters, kinds, source)


def run_faust_worker(build_app: Callable[[Settings], Any]) -> None:
    """``main`` of a Faust baseline: the app for the CUSTSCORE_* settings, run as a worker."""
    import faust  # as above: the raw-aiokafka baseline never imports Faust

    settings = settings_from_env()
    app = build_app(settings)
    logging.getLogger("faust").setLevel(logging.WARNING)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


async def serve_http(
    host: str, port: int, counters: Counters, partitions: Callable[[], list[int]]
) -> asyncio.Server:
    """A minimal HTTP/1.0 server for ``/metrics`` and ``/healthz`` (the raw-aiokafka worker)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode() if request.count(b" ") >= 2 else "/"
            if path.startswith("/metrics"):
                body, ctype, status = counters.render().encode(), "text/plain", "200 OK"
            elif path.startswith("/healthz"):
                body = json.dumps({"partitions": partitions()}).encode()
                ctype, status = "application/json", "200 OK"
            else:
                body, ctype, status = b"not found", "text/plain", "404 Not Found"
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
