"""Kernel throughput on the CDNOW master log: numba fold + scoring vs the plain-Python oracle.

    python -m pytest -p no:cacheprovider -m benchmark tests/loadtest/test_kernel_bench.py -s

A benchmark, not a load test, and kept here on purpose: the honest yardstick for the kernels is
the test oracle (tests/oracles/fold_reference.py), the same rules written out by definition in
plain Python, and the load-test harness (loadtest/) must not import test code. Both sides
compute the same thing in the same run on the same events: every customer's state folded from
its events and its discrete scores at the last event time (the oracle leaves out the BTYD
expectations, so the real gap is larger than shown). Prints the markdown table of BENCHMARKS.md
(median of ``CUSTSCORE_KERNEL_BENCH_REPEAT`` runs, default 5, after one warm-up; the oracle
runs once) and checks only that both sides ran.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest
from oracles.fold_reference import Ev, reference

from custscore.commands.datasets import find_cdnow, write_cdnow_events
from engine.batch_scoring import fold_events
from engine.scoring import PopulationCuts, evaluate
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from models.events import read_event_csv

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: JIT compile or load from cache
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(path: Path, repeat: int = 5) -> dict[str, Any]:
    """Seconds and rates of the numba kernels and the oracle on the events of ``path``."""
    log = read_event_csv(path)
    params = default_scoring_params()
    cuts = PopulationCuts.from_params(params)
    n_customers = len(log.customer_ids)
    n_events = int(log.events.shape[0])
    clock = log.last_ts
    fold_s = _median_seconds(lambda: fold_events(n_customers, log.events, params), repeat)
    states = fold_events(n_customers, log.events, params)
    score_s = _median_seconds(
        lambda: evaluate(states, clock, params, cuts, DEFAULT_RFM_MAP), repeat
    )
    per_customer: dict[int, list[Ev]] = defaultdict(list)
    for row, kind, sev, resolved, ts, cents, complaint, refers in log.events.tolist():
        per_customer[row].append(Ev(kind, ts, cents, sev, resolved, complaint or 1, refers))
    t0 = time.perf_counter()
    for evs in per_customer.values():
        reference(evs, clock, params, cuts, DEFAULT_RFM_MAP)
    oracle_s = time.perf_counter() - t0
    numba_s = fold_s + score_s
    return {
        "events": n_events,
        "customers": n_customers,
        "fold_s": fold_s,
        "score_s": score_s,
        "numba_s": numba_s,
        "oracle_s": oracle_s,
        "fold_events_per_s": n_events / fold_s,
        "score_customers_per_s": n_customers / score_s,
        "numba_events_per_s": n_events / numba_s,
        "oracle_events_per_s": n_events / oracle_s,
        "speedup": oracle_s / numba_s,
    }


def table(m: dict[str, Any]) -> str:
    """The markdown table of BENCHMARKS.md, with the versions line above it."""
    fold_rate = f"{m['fold_events_per_s']:,.0f} events/s"
    return "\n".join(
        [
            f"{m['events']:,} events, {m['customers']:,} customers; "
            f"Python {platform.python_version()}, numpy {np.__version__}, "
            f"numba {numba.__version__}",
            "| path | seconds | rate |",
            "|---|---:|---:|",
            f"| numba fold (apply_events) | {m['fold_s']:.4f} | {fold_rate} |",
            f"| numba scoring (evaluate, incl. BTYD) | {m['score_s']:.4f} | "
            f"{m['score_customers_per_s']:,.0f} customers/s |",
            f"| numba fold + scoring | {m['numba_s']:.4f} | "
            f"{m['numba_events_per_s']:,.0f} events/s |",
            f"| plain-Python oracle (fold + discrete scores, no BTYD) | {m['oracle_s']:.4f} | "
            f"{m['oracle_events_per_s']:,.0f} events/s |",
            f"| speed-up | | {m['speedup']:.0f}x |",
        ]
    ).rstrip()


def test_kernels_against_the_plain_python_oracle(tmp_path: Path) -> None:
    events = write_cdnow_events(find_cdnow(), tmp_path / "cdnow.csv")
    assert events.events > 0
    repeat = int(os.environ.get("CUSTSCORE_KERNEL_BENCH_REPEAT", "5"))
    m = measure(tmp_path / "cdnow.csv", repeat)
    print("\n" + table(m))
    assert m["numba_s"] > 0 and m["oracle_s"] > 0
