"""The error type every command raises for a one-line, user-facing failure."""

from __future__ import annotations

__all__ = ["CliError"]


class CliError(Exception):
    """A failure the user can fix; printed as one line, exit code ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
