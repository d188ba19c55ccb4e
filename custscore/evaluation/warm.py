"""Compile the timeline kernels in a child process while ``custscore evaluate`` reads and fits.

numba compiles the engine's kernels on first use and keeps them in its on-disk cache
(``cache=True``). The first ``custscore evaluate`` after an install would compile the
scoring kernels (for the fit and the scores) and then, one after the other, the timeline
kernels (for the win-back rules): about a minute on two cores. Started first, this child
compiles the timeline on the other core meanwhile (``engine.timeline.warm_up`` with the
built-in model, whose parameter types are those of every params file), and the parent loads
it from the cache when it gets there. With a warm cache the child only loads it. Nothing
depends on the child: if it fails, is late or the cache is not writable, the parent compiles
the timeline itself.

``python -m custscore.evaluation.warm`` is the child.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

__all__ = ["main", "start", "stop", "wait"]


def start() -> subprocess.Popen[bytes] | None:
    """The warm-up child, started in the background (None if it cannot start)."""
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "custscore.evaluation.warm"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None


def wait(child: subprocess.Popen[bytes] | None, timeout: float = 120.0) -> None:
    """Wait for the child to finish (at most ``timeout`` seconds; then go on without it)."""
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout)


def stop(child: subprocess.Popen[bytes] | None) -> None:
    """End the child if it still runs, and reap it."""
    if child is not None and child.poll() is None:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
        if child.poll() is None:
            child.kill()
            child.wait()


def main() -> int:
    """Compile (or load from numba's cache) the timeline kernels for the params-file types."""
    from engine.timeline import warm_up
    from models.bundle import load_model

    model = load_model(None)
    warm_up(model.scoring, model.cuts, model.rfm_map)
    return 0


if __name__ == "__main__":
    sys.exit(main())
