"""The demo's worker watch: metric parsing against the worker's real metric names, and the
count-based wait (events consumed, no batch in flight, state writes quiet) with its timeout."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest

from config.settings import load_settings
from custscore.commands.demo import AlertSampler
from custscore.errors import CliError
from custscore.supervision import WorkerProcess, WorkerWatch, parse_metrics, settings_env
from streams.metrics import WorkerMetrics, build_metrics


@pytest.fixture
def served() -> Iterator[tuple[WorkerMetrics, WorkerWatch]]:
    """A fresh worker metrics registry served on /metrics like the worker's web view."""
    metrics = build_metrics()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = generate_latest(metrics.registry)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield metrics, WorkerWatch("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _batch(metrics: WorkerMetrics, events: int, writes: int) -> None:
    metrics.batch_size.observe(events)
    metrics.events_in.labels("purchase").inc(events)
    metrics.state_writes.inc(writes)
    metrics.batch_seconds.observe(0.01)


def test_parse_metrics_reads_the_worker_counters(
    served: tuple[WorkerMetrics, WorkerWatch],
) -> None:
    metrics, watch = served
    metrics.events_in.labels("purchase").inc(5)
    metrics.events_in.labels("visit").inc(2)
    metrics.state_writes.inc(4)
    metrics.batch_size.observe(7)  # started, not finished
    metrics.alerts.labels("win_back", "silence").inc(3)
    metrics.alerts.labels("segment_change", "rfm").inc(2)
    metrics.alerts.labels("segment_change", "value_tier").inc(1)
    metrics.alerts_suppressed.labels("win_back", "silence").inc()
    metrics.dead_letter.labels("bad_json").inc(2)
    metrics.duplicates.inc(6)
    sample = watch.metrics()
    assert sample is not None
    assert (sample.events_in, sample.state_writes, sample.duplicates) == (7, 4, 6)
    assert (sample.batches_started, sample.batches_done, sample.idle) == (1, 0, False)
    assert sample.alerts_of("win_back") == 3 and sample.alerts_of("segment_change") == 3
    assert sample.alerts[("segment_change", "rfm")] == 2
    assert sample.suppressed == {("win_back", "silence"): 1}
    assert sample.dead_letter == {"bad_json": 2}
    assert watch.url("/metrics") == f"http://127.0.0.1:{watch.port}/metrics"


def test_parse_metrics_of_an_empty_worker() -> None:
    sample = parse_metrics(generate_latest(build_metrics().registry).decode(), 0.0)
    assert (sample.events_in, sample.state_writes, sample.alerts, sample.idle) == (0, 0, {}, True)


def test_wait_consumed_returns_once_counts_are_reached_and_writes_are_quiet(
    served: tuple[WorkerMetrics, WorkerWatch],
) -> None:
    metrics, watch = served

    def work() -> None:
        for _ in range(5):
            _batch(metrics, 20, 20)
            time.sleep(0.1)
        time.sleep(0.3)
        metrics.state_writes.inc(7)  # a timer sweep after the last batch

    feeder = threading.Thread(target=work)
    began = time.time()
    feeder.start()
    settled = watch.wait_consumed(100, timeout_s=20, quiet_s=1.0)
    feeder.join()
    assert settled.sample.events_in == 100 and settled.sample.state_writes == 107
    assert settled.last_write_at >= began + 0.7  # the sweep's write, not the last batch's
    assert time.time() - settled.last_write_at >= 1.0  # quiet for quiet_s before returning


def test_wait_consumed_times_out_with_a_clear_message(
    served: tuple[WorkerMetrics, WorkerWatch],
) -> None:
    metrics, watch = served
    _batch(metrics, 40, 40)
    with pytest.raises(CliError, match=r"did not catch up: 40 of 100 events consumed after 1 s"):
        watch.wait_consumed(100, timeout_s=1.0, quiet_s=0.2)


def test_wait_ready_without_a_worker_times_out(served: tuple[WorkerMetrics, WorkerWatch]) -> None:
    _, watch = served  # answers /metrics but has no /healthz
    with pytest.raises(CliError, match=r"did not join its consumer group within 0.5 s"):
        watch.wait_ready(4, timeout_s=0.5)


def test_alert_sampler_picks_distinct_reasons_then_a_scheme() -> None:
    sampler = AlertSampler()
    alerts = [
        {"alert_id": "1", "reason": "silence"},
        {"alert_id": "2", "reason": "silence"},
        {"alert_id": "3", "scheme": "rfm"},
        {"alert_id": "4", "scheme": "abcd"},
    ]
    assert sampler(alerts) is False  # only one win-back reason so far
    assert sampler([{"alert_id": "5", "reason": "complaint"}]) is True
    assert [a["alert_id"] for a in sampler.samples] == ["1", "5", "3"]


def test_settings_env_round_trips_every_setting() -> None:
    settings = load_settings(
        None,
        environ={},
        kafka_sasl_password="s3cret",
        redis_cluster=True,
        partitions=3,
        run_dir="/tmp/x",
    )
    env = settings_env(settings, base={"PATH": "/bin", "CUSTSCORE_APP_ID": "leak"})
    assert env["PATH"] == "/bin" and env["CUSTSCORE_APP_ID"] == "custscore"
    assert env["CUSTSCORE_REDIS_CLUSTER"] == "true" and "CUSTSCORE_REDIS_URL" not in env
    assert load_settings(None, environ=env) == settings


def test_a_worker_that_exits_is_reported_with_its_log(tmp_path) -> None:
    settings = load_settings(None, environ={}, params_file=str(tmp_path / "missing.json"))
    worker = WorkerProcess.start(settings, tmp_path / "worker.log")
    try:
        worker.proc.wait(timeout=120)
        with pytest.raises(CliError) as caught:
            WorkerWatch.for_settings(settings, worker).wait_ready(8, timeout_s=5)
    finally:
        worker.stop()
    message = str(caught.value)
    assert message.startswith(f"the worker exited (code 2); log {tmp_path / 'worker.log'}: ")
    assert "missing.json" in message and "\n" not in message
