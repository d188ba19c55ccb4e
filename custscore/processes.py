"""Child processes and ports: the one home of the process plumbing custscore and its harnesses
share.

* :func:`spawn` is the one launcher of long-running children (the embedded broker and Valkey,
  workers of the demo, the benchmark, the soak and the tests): its own session, so it can be
  stopped as a process group; stdin from ``/dev/null``; stdout and stderr to a log file; and,
  unless told otherwise, tied to this process so that it gets SIGTERM when this one dies.
* :func:`stop_process_group` stops such a child and whatever it forked.
* :func:`last_log_line` is what an error message quotes from a child's log.
* :func:`free_port` and :func:`port_in_use` pick and check loopback ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from custscore.errors import CliError

__all__ = [
    "free_port",
    "hostport",
    "last_log_line",
    "pdeathsig_preexec",
    "port_in_use",
    "spawn",
    "stop_process_group",
]

_ANSI_RE: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def hostport(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound because something holds it.

    Any other bind failure (e.g. an address this machine does not have) is a CliError.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so a TIME_WAIT leftover is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise CliError(f"cannot bind {hostport(host, port)}: {exc.strerror}") from None
    return False


def pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec hook that makes the child get SIGTERM when its parent dies (Linux only).

    The kernel ties the child to the *thread* that forked it: spawn from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    tie_to_parent: bool = True,
    append: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (it leads its process group), output to ``log_path``.

    ``env`` replaces the environment when given; ``append`` keeps what the log already holds
    (a restarted worker); ``tie_to_parent`` sends the child SIGTERM when this process dies.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab" if append else "wb") as log_fh:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            close_fds=True,
            start_new_session=True,
            preexec_fn=pdeathsig_preexec() if tie_to_parent else None,
        )


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> int | None:
    """Stop the process group ``proc`` leads; its exit code.

    SIGCONT first (a paused group handles nothing else), then SIGTERM, SIGKILL after
    ``grace_s``. Ends with a SIGKILL to the group in any case, since helpers it forked must
    not be left behind, and reaps ``proc``.
    """
    for sig, wait_s in ((signal.SIGCONT, 0.0), (signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if wait_s:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5.0)
    return proc.poll()


def last_log_line(path: Path) -> str:
    """The last meaningful line of a log (colour codes and backtrace notes dropped), at most
    240 characters; empty when there is none or the file cannot be read."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [_ANSI_RE.sub("", ln).strip() for ln in tail.splitlines()]
    meaningful = [ln for ln in lines if ln and not ln.startswith(("note:", "stack backtrace"))]
    return meaningful[-1][:240] if meaningful else ""
