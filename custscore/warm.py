"""Compile the numba kernels once, ahead of use: ``python -m custscore.warm``.

numba compiles a kernel on its first call and caches the machine code next to the source
(``cache=True``), so the first worker, batch command or test of a fresh checkout waits for it
(about a minute on 2 cores for the timeline alone). CI runs this in the background while it
lints, so the compile is off the test run's clock; afterwards every process loads the cache.
"""

from __future__ import annotations

import sys
import time

import numpy as np

__all__ = ["main", "warm"]


def warm() -> float:
    """Compile the kernels the worker and the batch commands use; seconds taken."""
    from engine.batch_scoring import fold_events, score_states
    from engine.state import KIND_COMPLAINT, KIND_PURCHASE, KIND_VISIT, new_events
    from engine.timeline import warm_up
    from models.bundle import load_model

    began = time.monotonic()
    model = load_model(None)
    warm_up(model.scoring, model.cuts, model.rfm_map)
    events = new_events(4)
    events["row"] = [0, 0, 1, 1]
    events["kind"] = [KIND_PURCHASE, KIND_PURCHASE, KIND_VISIT, KIND_COMPLAINT]
    events["ts"] = [852_076_800, 854_755_200, 854_755_200, 854_841_600]
    events["cents"] = [1000, 1500, 0, 0]
    events["severity"] = [0, 0, 0, 3]
    events["complaint"] = [0, 0, 0, 1]
    states = fold_events(2, events, model.scoring)
    score_states(states, 854_841_600, model.scoring, model.rfm_map, np.arange(2, dtype=np.uint64))
    return time.monotonic() - began


def main() -> int:
    """Compile and say how long it took."""
    print(f"numba kernels compiled or loaded in {warm():.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
