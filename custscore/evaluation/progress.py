"""A progress line over the named steps of a long command, on stderr.

Like ``custscore replay``'s ProgressBar: on a terminal, one carriage-return line redrawn at
most 10 times a second (steps done, the current step and its share, elapsed time); otherwise
one plain line per finished step, so logs and CI output stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

__all__ = ["StepProgress"]


class StepProgress:
    """Progress over ``steps`` (names, in order); call :meth:`update` within a step and
    :meth:`done` at its end."""

    def __init__(self, steps: Sequence[str], label: str = "evaluate",
                 stream: TextIO | None = None, width: int = 30) -> None:
        self.steps = list(steps)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.width = width
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()
        self._step_started = self._started
        self._last_draw = 0.0
        self._open = False  # a terminal line is drawn and not ended yet

    def update(self, step: str, done: int = 0, total: int = 1) -> None:
        """``step`` is under way, ``done`` of ``total`` (drawn on a terminal only)."""
        if not self.tty or step not in self.steps:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.1 and done < total:
            return
        self._last_draw = now
        index = self.steps.index(step)
        share = (index + (done / total if total else 1.0)) / len(self.steps)
        filled = int(share * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self._started
        self.stream.write(f"\r{self.label} [{bar}] {index + 1}/{len(self.steps)} {step:<9} "
                          f"{elapsed:6.1f} s")
        self.stream.flush()
        self._open = True

    def done(self, step: str) -> float:
        """``step`` has finished; returns its duration in seconds."""
        now = time.perf_counter()
        seconds = self.seconds[step] = now - self._step_started
        self._step_started = now
        if self.tty:
            self.update(step, 1, 1)
            if step == self.steps[-1]:
                self.close()
        else:
            index = self.steps.index(step) + 1 if step in self.steps else 0
            self.stream.write(f"{self.label}: {index}/{len(self.steps)} {step} done in "
                              f"{seconds:.1f} s\n")
        self.stream.flush()
        return seconds

    def close(self) -> None:
        """End a terminal line left open (after the last step, or before an error message)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False

    def skip(self, step: str) -> None:
        """Leave ``step`` out (e.g. no fit when a params file is given)."""
        if step in self.steps:
            self.steps.remove(step)
