"""Helpers for the streaming-command tests: private settings on the shared embedded stack."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from custscore.commands.demo import settings_env
from custscore.settings import Settings, load_settings
from custscore.stack import free_port

__all__ = [
    "cli_env",
    "custscore_command",
    "offline_settings",
    "private_settings",
    "run_script",
    "write_events",
]

EVENT_HEADER = "event_id,type,customer_id,ts,amount,severity\n"


def private_settings(kafka_bootstrap: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings on the shared stack with their own topics, key prefix, group and web port.

    Built from no environment at all, so a developer's CUSTSCORE_* variables cannot leak in.
    """
    token = uuid.uuid4().hex[:8]
    topics = {
        f"topic_{name}": f"t{token}.{name}"
        for name in (
            "purchase",
            "visit",
            "complaint",
            "segment_change",
            "win_back",
            "scores",
            "dead_letter",
        )
    }
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "redis_url": redis_url,
        "redis_key_prefix": f"t{token}",
        "app_id": f"custscore-test-{token}",
        "web_port": free_port(),
        "partitions": 8,
        **topics,
    }
    values.update(overrides)
    return load_settings(None, environ={}, **values)


def offline_settings(**overrides: Any) -> Settings:
    """Private settings whose broker and Redis addresses have nothing listening."""
    return private_settings(
        f"127.0.0.1:{free_port()}", f"redis://127.0.0.1:{free_port()}/0", **overrides
    )


def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make in-process ``custscore.cli.main`` load exactly ``settings``."""
    import os

    for key in list(os.environ):
        if key.startswith("CUSTSCORE_"):
            monkeypatch.delenv(key)
    for key, value in settings_env(settings, base={}).items():
        monkeypatch.setenv(key, value)


def custscore_command() -> list[str]:
    """The console script next to this interpreter (``python -m custscore`` without one)."""
    script = Path(sys.executable).with_name("custscore")
    return [str(script)] if script.exists() else [sys.executable, "-m", "custscore"]


def run_script(
    settings: Settings, *args: str, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """Run ``custscore ARGS`` as users do (console script), with ``settings`` in the env."""
    return subprocess.run(
        [*custscore_command(), *args],
        env=settings_env(settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_events(path: Path, rows: list[tuple[str, ...]]) -> Path:
    """An event CSV with the standard header and ``rows``."""
    path.write_text(EVENT_HEADER + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    return path
