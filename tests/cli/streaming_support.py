"""Helpers for the streaming-command tests: offline settings, the CLI environment, event CSVs.

Private settings on the shared stack and the console script are in ``fixtures.streaming``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fixtures.streaming import private_settings

from config.settings import Settings
from custscore.processes import free_port
from custscore.supervision import settings_env

__all__ = ["cli_env", "offline_settings", "write_events"]

EVENT_HEADER = "event_id,type,customer_id,ts,amount,severity\n"


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


def write_events(path: Path, rows: list[tuple[str, ...]]) -> Path:
    """An event CSV with the standard header and ``rows``."""
    path.write_text(EVENT_HEADER + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    return path
