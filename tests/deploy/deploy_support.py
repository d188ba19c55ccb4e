"""Helpers of the deploy tests: the deploy/ files, PromQL metric names, workers, Prometheus.

Nothing here talks to a network other than loopback. Prometheus is Debian's ``prometheus``
package; :func:`prometheus_binaries` installs it with apt-get when it is missing (CI runs as
root) and skips only when apt-get itself is not there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fixtures.apt import apt_install
from fixtures.streaming import custscore_command

from config.settings import Settings
from custscore.processes import free_port, pdeathsig_preexec
from custscore.supervision import MetricsSample, WorkerProcess, parse_metrics, settings_env

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "rules.test.yml"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "custscore.json"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
OPERATIONS = REPO / "docs" / "operations.md"

# Series Prometheus makes itself for every target (not exported by the worker).
PROMETHEUS_SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


# --------------------------------------------------------------------------- deploy files


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``path``."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def rule_list() -> list[dict[str, Any]]:
    """Every rule of deploy/prometheus/rules.yml."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of the dashboard."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                out.append((panel["title"], target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard()["panels"])
    return out


def grafana_to_promql(expr: str, rate_interval: str = "1m") -> str:
    """A dashboard expression with Grafana's variables replaced for a plain Prometheus query."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$__interval", rate_interval)
        .replace("$job", "custscore")
    )


# --------------------------------------------------------------------------- PromQL names

_FUNCTIONS_AND_KEYWORDS = frozenset(
    """
    abs absent absent_over_time avg avg_over_time bool bottomk by ceil changes clamp clamp_max
    clamp_min count count_over_time count_values day_of_month day_of_week delta deriv exp floor
    group group_left group_right histogram_quantile holt_winters idelta ignoring increase irate
    label_join label_replace last_over_time ln log10 log2 max max_over_time min min_over_time
    offset on or and unless predict_linear quantile quantile_over_time rate resets round scalar
    sgn sort sort_desc sqrt stddev stddev_over_time stdvar sum sum_over_time time timestamp topk
    vector without inf nan
    """.split()
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label names, functions and keywords excluded)."""
    text = _STRING.sub('""', grafana_to_promql(expr))
    text = _BRACES.sub("{}", text)
    text = _BRACKETS.sub("[]", text)
    text = _GROUPING.sub(r"\1()", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _FUNCTIONS_AND_KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", name) or re.fullmatch(r"e\d+", name):
            continue
        names.add(name)
    return names


def exposition_names(text: str) -> tuple[set[str], set[str]]:
    """(sample names with at least one sample, every declared name) of a /metrics text.

    A declared family (``# TYPE``) counts with all the sample names its type produces
    (``_total``, ``_bucket``/``_count``/``_sum``...), even when it has no labelled child yet.
    """
    from prometheus_client.parser import text_string_to_metric_families

    sampled: set[str] = set()
    declared: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "gauge": ("",),
    }
    for family in text_string_to_metric_families(text):
        for suffix in suffixes.get(family.type, ("",)):
            declared.add(family.name + suffix)
        for sample in family.samples:
            sampled.add(sample.name)
    return sampled, declared


# --------------------------------------------------------------------------- workers


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes] | None:
    """(status, body), or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None


@dataclass
class Worker:
    """``custscore worker`` in its own process group and working directory."""

    settings: Settings
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, settings: Settings, workdir: Path, name: str = "worker") -> Worker:
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / f"{name}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [*custscore_command(), "worker", "--loglevel", "warning", "--no-create-topics"],
                env=settings_env(settings),
                cwd=workdir,  # Faust's data directory goes here, not into the repository
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pdeathsig_preexec(),
            )
        return cls(settings, proc, log)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"worker exited with {self.proc.returncode}: {tail}")

    def json(self, path: str) -> Any:
        reply = http_get(self.base + path)
        if reply is None or reply[0] != 200:
            return None
        return json.loads(reply[1])

    def metrics_text(self) -> str:
        reply = http_get(self.base + "/metrics")
        assert reply is not None and reply[0] == 200, "no /metrics"
        return reply[1].decode()

    def sample(self) -> MetricsSample | None:
        reply = http_get(self.base + "/metrics")
        if reply is None or reply[0] != 200:
            return None
        return parse_metrics(reply[1].decode(), time.time())

    def partitions(self) -> list[int] | None:
        health = self.json("/healthz")
        return None if health is None else list(health["partitions"])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker process so far."""
        raw = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = raw[raw.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float | None:
        """Peak resident memory of the worker process (VmHWM), MiB."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL after ``grace_s`` (as the demo stops its worker)."""
        WorkerProcess(self.proc, self.log).stop(grace_s)


def wait_group(workers: list[Worker], partitions: int, timeout_s: float = 150.0) -> float:
    """Wait until the workers own every partition between them, each one some; seconds taken."""
    began = time.monotonic()
    while True:
        owned = []
        for w in workers:
            w.check_alive()
            owned.append(w.partitions())
        if all(o for o in owned):
            flat = [p for o in owned for p in o or []]
            if sorted(flat) == list(range(partitions)):
                return time.monotonic() - began
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"workers did not share the {partitions} partitions: {owned}")
        time.sleep(0.5)


@dataclass(frozen=True)
class Settled:
    events_in: int
    state_writes: int
    last_write_at: float  # wall time of the first scrape that showed the final write count
    samples: list[MetricsSample]


def wait_settled(
    workers: list[Worker], expected: int, timeout_s: float, quiet_s: float = 3.0
) -> Settled:
    """Wait until the workers together consumed ``expected`` messages, none has a batch in
    flight, and the state-write count has not moved for ``quiet_s``."""
    began = time.monotonic()
    last_key: tuple[int, int] | None = None
    last_change_wall = time.time()
    quiet_since = time.monotonic()
    while True:
        samples = []
        for w in workers:
            w.check_alive()
            s = w.sample()
            if s is not None:
                samples.append(s)
        if len(samples) == len(workers):
            events = sum(s.events_in for s in samples)
            writes = sum(s.state_writes for s in samples)
            idle = all(s.idle for s in samples)
            if (events, writes) != last_key:
                if last_key is None or writes != last_key[1]:
                    last_change_wall = max(s.at for s in samples)
                last_key = (events, writes)
                quiet_since = time.monotonic()
            if not idle:
                quiet_since = time.monotonic()
            if events >= expected and idle and time.monotonic() - quiet_since >= quiet_s:
                return Settled(events, writes, last_change_wall, samples)
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"not settled after {timeout_s} s: {last_key} of {expected}")
        time.sleep(0.25)


# --------------------------------------------------------------------------- Prometheus


def prometheus_binaries() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``; installs Debian's package when missing."""
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if prom and tool:
        return prom, tool
    apt_install("prometheus", what="Prometheus", no_services=True)
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    assert prom and tool, "the prometheus package installed no prometheus/promtool"
    return prom, tool


def scrape_config(targets: list[str], interval: str = "1s") -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the test's targets, intervals and rule path."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(RULES)]
    (job,) = config["scrape_configs"]
    job["scrape_interval"] = interval
    job["scrape_timeout"] = interval
    job["static_configs"] = [{"targets": targets}]
    return dict(config)


@dataclass
class Prometheus:
    """A real Prometheus server on a loopback port, its TSDB in a temporary directory."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @classmethod
    @contextlib.contextmanager
    def running(cls, binary: str, config: Path, workdir: Path) -> Iterator[Prometheus]:
        port = free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pdeathsig_preexec(),
            )
        server = cls(proc, port, log)
        try:
            server.wait_ready()
            yield server
        finally:
            for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait_s)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            reply = http_get(f"http://127.0.0.1:{self.port}/-/ready")
            if reply is not None and reply[0] == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready: {self.log.read_text()[-2000:]}")

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        reply = http_get(f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}")
        assert reply is not None, f"prometheus does not answer {path}"
        body = json.loads(reply[1])
        return body

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.api("query", query=expr)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        return list(body["data"]["result"])
