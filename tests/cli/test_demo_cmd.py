"""``custscore demo`` through the console script: the summary, a clean stop, Ctrl-C, taken ports.

Each run starts its own embedded broker, Valkey and worker on free ports in a private run dir,
so these tests do not touch the session's shared stack.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.stack import port_free
from fixtures.streaming import custscore_command
from streaming_support import write_events

from custscore.commands.datasets import find_cdnow, write_cdnow_events
from custscore.processes import free_port
from custscore.stack import process_running

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def _env(run_dir: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTSCORE_")}
    env.update(
        CUSTSCORE_RUN_DIR=str(run_dir),
        CUSTSCORE_BROKER_PORT=str(ports["broker"]),
        CUSTSCORE_REDIS_PORT=str(ports["redis"]),
        CUSTSCORE_WEB_PORT=str(ports["web"]),
        CUSTSCORE_SNAPSHOT_INTERVAL_S="2",
        CUSTSCORE_PARTITIONS="4",
    )
    return env


@pytest.fixture
def ports() -> dict[str, int]:
    chosen: dict[str, int] = {}
    for name in ("broker", "redis", "web"):
        port = free_port()
        while port in chosen.values():
            port = free_port()
        chosen[name] = port
    return chosen


def _events(path: Path) -> Path:
    rows = []
    for i in range(300):
        customer = f"c{i % 40:03d}"
        day = 1 + (i * 7) % 360
        ts = f"{1997 + day // 365}-{1 + (day % 365) // 31:02d}-{1 + day % 28:02d}T10:00:00Z"
        if i % 10 == 9:
            rows.append((f"e{i}", "complaint", customer, ts, "", "5"))
        elif i % 5 == 4:
            rows.append((f"e{i}", "visit", customer, ts, "", ""))
        else:
            rows.append((f"e{i}", "purchase", customer, ts, f"{5 + i % 90}.50", ""))
    return write_events(path, rows)


@pytest.fixture
def no_orphans() -> Iterator[list[int]]:
    """Pids the test learns about; each must be gone at the end."""
    pids: list[int] = []
    yield pids
    alive = [p for p in pids if process_running(p)]
    for pid in alive:  # do not leave them behind for the rest of the session
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"children left running: {alive}"


def test_demo_prints_the_summary_and_stops_everything(
    tmp_path: Path, ports: dict[str, int], no_orphans: list[int]
) -> None:
    """The CDNOW 1/10 sample (6,919 purchases of 2,357 customers) through the whole demo."""
    events = tmp_path / "cdnow-sample.csv"
    write_cdnow_events(find_cdnow(sample=True), events)
    began = time.monotonic()
    result = subprocess.run(
        [*custscore_command(), "demo", "--events", str(events), "--timeout", "240"],
        env=_env(tmp_path / "run", ports),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    out = result.stdout
    worker = re.search(r"^worker +pid (\d+)", out, re.M)
    if worker:
        no_orphans.append(int(worker.group(1)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert worker, out
    assert "replay    produced 6,919 events in" in out
    assert re.search(r"end to end +6,919 events from first produce to last state write", out)
    assert re.search(r"worker +6,919 events consumed", out)
    assert "dead letter  0" in out
    found = {k: re.search(rf"^  {k} +([\d,]+) ", out, re.M) for k in ("win_back", "segment_change")}
    counts = {k: int(m.group(1).replace(",", "")) for k, m in found.items() if m}
    assert len(counts) == 2 and all(n > 0 for n in counts.values()), counts
    assert "customers 2,357, buyers 2,349" in out  # 8 sample customers only have $0 lines
    assert re.search(r"value tiers +vip \d+, major \d+, normal [\d,]+, small [\d,]+", out)
    assert "RFM segments  " in out and "Champions" in out
    assert out.count('"alert_id": ') == 3
    assert f"metrics: http://127.0.0.1:{ports['web']}/metrics" in out
    assert "stopping the embedded broker and Valkey" in result.stderr
    assert not (tmp_path / "run" / "stack.json").exists()
    for port in ports.values():
        assert port_free(port), f"port {port} still taken after the demo"
    print(f"\ndemo on the CDNOW sample: {time.monotonic() - began:.1f} s")


def test_ctrl_c_stops_every_child(
    tmp_path: Path, ports: dict[str, int], no_orphans: list[int]
) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*custscore_command(), "demo", "--events", str(_events(tmp_path / "events.csv"))],
        env=_env(run_dir, ports),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        worker_pid = None
        for line in proc.stdout:  # up to the worker's start, while it waits for the join
            found = re.match(r"worker +pid (\d+)", line)
            if found:
                worker_pid = int(found.group(1))
                break
        assert worker_pid is not None
        stack = (run_dir / "stack.json").read_text()
        server_pids = [int(p) for p in re.findall(r'"pid": (\d+)', stack)]
        assert len(server_pids) == 2
        no_orphans += [worker_pid, *server_pids]
        assert process_running(worker_pid)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "custscore: interrupted" in err and "Traceback" not in err
    assert not (run_dir / "stack.json").exists()


def test_demo_with_a_taken_web_port_is_one_line(tmp_path: Path, ports: dict[str, int]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["web"]))
        holder.listen()
        result = subprocess.run(
            [*custscore_command(), "demo"],
            env=_env(tmp_path / "run", ports),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr == (
        f"custscore: error: worker web port {ports['web']} on 127.0.0.1 is already in use; "
        "choose another with CUSTSCORE_WEB_PORT or stop what uses it\n"
    )
    assert not (tmp_path / "run" / "stack.json").exists()
