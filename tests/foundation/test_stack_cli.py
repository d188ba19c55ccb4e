"""``custscore stack up / down / status`` through the real console script, as users run it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis
from fixtures.stack import port_free
from fixtures.streaming import custscore_command

from custscore.processes import free_port
from custscore.stack import EmbeddedStack, kafka_brokers

pytestmark = pytest.mark.integration

UP_CONTRACT_S = 15.0  # docs/operations.md: `custscore stack up` prints both addresses within 15 s


@dataclass
class Cli:
    """A private run dir and ports, and a way to run ``custscore`` against them."""

    run_dir: Path
    broker_port: int
    redis_port: int

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTSCORE_")}
        env.update(
            CUSTSCORE_RUN_DIR=str(self.run_dir),
            CUSTSCORE_BROKER_PORT=str(self.broker_port),
            CUSTSCORE_REDIS_PORT=str(self.redis_port),
        )
        return env

    def run(
        self, *args: str, timeout: float = 60.0, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*custscore_command(), *args],
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def recorded_pids(self) -> list[int]:
        data = json.loads((self.run_dir / "stack.json").read_text())
        return [int(data["broker"]["pid"]), int(data["redis"]["pid"])]

    def cleanup(self) -> None:
        """Stop whatever this run dir recorded, whatever state the test left it in."""
        EmbeddedStack(self.run_dir, broker_port=self.broker_port, redis_port=self.redis_port).stop()


def _new_cli(tmp_path: Path) -> Cli:
    broker_port = free_port()
    redis_port = free_port()
    while redis_port == broker_port:
        redis_port = free_port()
    return Cli(tmp_path / "run", broker_port, redis_port)


def _gone(pid: int) -> bool:
    """Independent of custscore.stack: psutil's view, zombies (unreaped by init) count as gone."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("custscore: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


@dataclass
class UpResult:
    cli: Cli
    result: subprocess.CompletedProcess[str]
    elapsed_s: float


@pytest.fixture(scope="module")
def stack_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpResult]:
    cli = _new_cli(tmp_path_factory.mktemp("cli"))
    began = time.monotonic()
    try:
        result = cli.run("stack", "up", timeout=UP_CONTRACT_S)
        elapsed = time.monotonic() - began
        yield UpResult(cli, result, elapsed)
    finally:
        cli.cleanup()


def test_up_prints_both_addresses_within_15_s_and_returns(stack_up: UpResult) -> None:
    cli, result = stack_up.cli, stack_up.result
    assert result.returncode == 0, result.stderr
    assert stack_up.elapsed_s < UP_CONTRACT_S
    assert f"127.0.0.1:{cli.broker_port}" in result.stdout
    assert f"redis://127.0.0.1:{cli.redis_port}/0" in result.stdout
    # The command returned; the servers it started keep running and answer.
    assert kafka_brokers("127.0.0.1", cli.broker_port) == [f"127.0.0.1:{cli.broker_port}"]
    client = redis.Redis(host="127.0.0.1", port=cli.redis_port)
    try:
        assert client.ping() is True
    finally:
        client.close()
    assert not any(_gone(pid) for pid in cli.recorded_pids())


def test_second_up_fails_with_one_line(stack_up: UpResult) -> None:
    assert stack_up.result.returncode == 0
    cli = stack_up.cli
    pids = cli.recorded_pids()
    again = cli.run("stack", "up")
    _assert_one_line_error(
        again, "already running", f"127.0.0.1:{cli.broker_port} (pid {pids[0]})", str(pids[1])
    )
    assert cli.recorded_pids() == pids  # the running stack is untouched


def test_status_reports_both_servers(stack_up: UpResult) -> None:
    cli = stack_up.cli
    result = cli.run("stack", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    broker_pid, redis_pid = cli.recorded_pids()
    assert f"127.0.0.1:{cli.broker_port}  pid {broker_pid}: running, answers" in result.stdout
    assert f"redis://127.0.0.1:{cli.redis_port}/0  pid {redis_pid}: running, answers" in (
        result.stdout
    )

    as_json = json.loads(cli.run("stack", "status", "--json").stdout)
    assert as_json["healthy"] is True
    assert {s["name"]: s["pid"] for s in as_json["servers"]} == {
        "broker": broker_pid,
        "redis": redis_pid,
    }


def test_down_leaves_no_process_and_frees_the_ports(tmp_path: Path) -> None:
    cli = _new_cli(tmp_path)
    try:
        up = cli.run("stack", "up", timeout=UP_CONTRACT_S)
        assert up.returncode == 0, up.stderr
        pids = cli.recorded_pids()
        assert not any(_gone(pid) for pid in pids)

        down = cli.run("stack", "down")
        assert down.returncode == 0, down.stderr
        assert "stopped" in down.stdout
        assert all(_gone(pid) for pid in pids)
        assert not (cli.run_dir / "stack.json").exists()
        assert port_free(cli.broker_port) and port_free(cli.redis_port)

        status = cli.run("stack", "status")
        assert status.returncode != 0
        assert "not running" in status.stdout
        again = cli.run("stack", "down")  # idempotent
        assert again.returncode == 0
        assert "not running" in again.stdout
    finally:
        cli.cleanup()


@pytest.mark.parametrize("which", ["broker", "redis"])
def test_taken_port_gives_one_line_error(tmp_path: Path, which: str) -> None:
    cli = _new_cli(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        if which == "broker":
            cli.broker_port = taken
        else:
            cli.redis_port = taken
        try:
            result = cli.run("stack", "up")
            _assert_one_line_error(result, f"port {taken}", "already in use")
            # Nothing was started or recorded.
            assert not (cli.run_dir / "stack.json").exists()
            other = cli.redis_port if which == "broker" else cli.broker_port
            assert port_free(other)
        finally:
            cli.cleanup()
