"""Shared fixtures of the fault tests: a seeded CDNOW subset, its batch scores, and one clean
streaming run (export + alert ids) that every fault run is compared with."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from fixtures.stack import run_async
from fixtures.streaming import private_settings, run_script

from config.settings import Settings
from custscore.commands.datasets import find_cdnow, write_cdnow_events
from custscore.commands.replay import replay_events
from models.events import EventLog, read_event_csv
from models.scorefile import format_time
from reliability.support import (
    PRODUCERS,
    Worker,
    cdnow_subset,
    compare_scores,
    expected_fences,
    read_alert_ids,
    wait_applied,
    wait_quiet,
    wait_settled,
)
from streams.topics import ensure_topics

# Subset size and seed (docs/reliability.md says why a subset): override for a longer run.
SUBSET_CUSTOMERS = int(os.environ.get("CUSTSCORE_FAULTS_CUSTOMERS", "1500"))
SEED = int(os.environ.get("CUSTSCORE_FAULTS_SEED", "20240707"))
APPLY_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Subset:
    csv: Path
    log: EventLog
    batch_scores: Path  # `custscore score` at the last event time

    @property
    def events(self) -> int:
        return int(self.log.events.shape[0])


@dataclass(frozen=True)
class Run:
    """What a streaming run left behind."""

    settings: Settings
    export: Path
    alerts: dict[str, list[dict[str, Any]]]
    seconds: float

    def ids(self) -> set[str]:
        return {a["alert_id"] for batch in self.alerts.values() for a in batch}


def fault_settings(kafka_bootstrap: str, redis_url: str, **overrides: Any) -> Settings:
    """Private topics (created here: a worker must never see them missing), prefix and group;
    quick timers so the runs settle fast."""
    # half the customers held out: the clean run's outcomes measure the (absent) uplift
    values: dict[str, Any] = {
        "snapshot_interval_s": 5.0,
        "sweep_interval_s": 0.5,
        "holdout_fraction": 0.5,
    }
    values.update(overrides)
    settings = private_settings(kafka_bootstrap, redis_url, **values)
    run_async(ensure_topics(settings))
    return settings


def replay(settings: Settings, log: EventLog, envelope: int = 0) -> dict[tuple[str, int], int]:
    """Replay ``log`` (as batch envelopes of up to ``envelope`` events when > 0); the last
    offset of each input topic-partition, as the worker's fences will end."""
    result = run_async(replay_events(settings, log, None, create_topics=False, envelope=envelope))
    assert result.produced == log.events.shape[0]
    return {tp: n - 1 for tp, n in result.messages.items()}


def finish(
    settings: Settings,
    subset: Subset,
    workers: list[Worker],
    out_dir: Path,
    began: float,
    client: redis.Redis,
    fences: dict[tuple[str, int], int] | None = None,
) -> Run:
    """Wait for every event to be applied and the run to settle; export; read alerts.

    Settled is exact (support.wait_settled): every outbox entry published, nothing held back,
    every due time up to each partition's watermark evaluated. The watermark ends at the
    partition's largest event time whatever the faults, so from then on the alert set is
    complete and must equal any other run's."""
    if fences is None:
        fences = expected_fences(settings, subset.log)
    wait_applied(client, settings, fences, APPLY_TIMEOUT_S, workers)
    seconds = time.monotonic() - began
    wait_settled(client, settings, APPLY_TIMEOUT_S, workers)
    wait_quiet([w for w in workers if w.running()])
    export = out_dir / "export.csv"
    result = run_script(settings, "export", "--out", str(export))
    assert result.returncode == 0, result.stderr
    assert f"as of {format_time(subset.log.last_ts)}" in result.stdout
    return Run(settings, export, read_alert_ids(settings), seconds)


@pytest.fixture(scope="session")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Subset:
    root = tmp_path_factory.mktemp("cdnow-subset")
    full = root / "cdnow.csv"
    write_cdnow_events(find_cdnow(), full)
    path = cdnow_subset(full, root / "subset.csv", SUBSET_CUSTOMERS, SEED)
    log = read_event_csv(path)
    assert not log.bad_rows
    scores = root / "batch.csv"
    # the batch scorer needs no stack: any settings will do
    settings = private_settings("127.0.0.1:1", "redis://127.0.0.1:1/0")
    as_of = format_time(log.last_ts)
    assert as_of is not None
    result = run_script(settings, "score", str(path), "--as-of", as_of, "--out", str(scores))
    assert result.returncode == 0, result.stderr
    return Subset(path, log, scores)


@pytest.fixture(scope="session")
def clean_run(
    kafka_bootstrap: str, redis_url: str, subset: Subset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    """The subset through one undisturbed worker: the reference of every fault test."""
    out = tmp_path_factory.mktemp("clean-run")
    settings = fault_settings(kafka_bootstrap, redis_url)
    client = redis.Redis.from_url(redis_url)
    worker = Worker("clean", settings, out / "worker.log").start()
    try:
        worker.wait_owns(settings.partitions)
        began = time.monotonic()
        replay(settings, subset.log)
        run = finish(settings, subset, [worker], out, began, client)
    finally:
        worker.stop()
        client.close()
    diff = compare_scores(run.export, subset.batch_scores)
    assert not diff, f"clean streaming run != batch scores: {len(diff)} cells, e.g. {diff[:5]}"
    yield run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: fault-injection tests (kill, pause, restart); `make faults` runs them"
    )


# --------------------------------------------------------------------------- least privilege

# Every command custscore sends to Redis (worker, export, inspect, forget), found by reading
# streams/ and custscore/commands/; commands run by the Lua scripts are checked too.
ACL_COMMANDS = (
    "mget",
    "get",
    "set",
    "del",
    "hget",
    "hset",
    "hmget",
    "hgetall",
    "hdel",  # forget
    "hincrby",  # the marketing-loop counters, inside the commit script
    "smismember",
    "sadd",
    "zadd",
    "zrem",
    "zrangebyscore",
    "zcard",
    "zscore",  # inspect
    "scan",
    "ping",
    "evalsha",
    "eval",
    "script|load",
    "script|exists",
    "multi",
    "exec",
    "client|setinfo",
)


def acl_rules(prefix: str, password: str) -> list[str]:
    """The ACL of custscore's Redis user: its own key prefix, only the commands it sends."""
    return [
        "reset",
        "on",
        f">{password}",
        f"~{prefix}:*",
        "resetchannels",
        "-@all",
        *(f"+{c}" for c in ACL_COMMANDS),
    ]


@dataclass(frozen=True)
class Secured:
    settings: Settings
    worker: Worker
    admin: redis.Redis  # the default (unrestricted) user, for inspection only


@pytest.fixture(scope="session")
def secured(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    """A worker that talks to Valkey as a least-privilege ACL user (password from settings)."""
    import secrets

    password = secrets.token_hex(16)
    probe = fault_settings(kafka_bootstrap, redis_url)
    user = f"cs-{probe.redis_key_prefix}"
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", user, *acl_rules(probe.redis_key_prefix, password))
    from pydantic import SecretStr

    settings = probe.model_copy(
        update={"redis_username": user, "redis_password": SecretStr(password)}
    )
    out = tmp_path_factory.mktemp("secured")
    worker = Worker("secured", settings, out / "worker.log").start()
    try:
        worker.wait_owns(settings.partitions)
        yield Secured(settings, worker, admin)
    finally:
        producer = PRODUCERS.pop(settings.app_id, None)
        if producer is not None:
            producer.close()
        worker.stop()
        admin.acl_deluser(user)
        admin.close()
