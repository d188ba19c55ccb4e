"""Kernel throughput on a real event log: numba fold + scoring vs the plain-Python oracle.

    python -m loadtest.kernel_bench EVENTS.csv [--repeat 5]

Both sides compute the same thing in the same run on the same events: every customer's
state folded from its events and its discrete scores at the last event time. Prints a
markdown table (median of ``--repeat`` runs after one warm-up; the oracle runs once).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import numba
import numpy as np
from oracles.fold_reference import Ev, reference

from engine.batch_scoring import fold_events
from engine.scoring import PopulationCuts, evaluate
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from models.events import read_event_csv

__all__ = ["main", "measure"]


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: JIT compile or load from cache
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(path: str, repeat: int = 5) -> dict[str, float]:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    m = measure(args.events, args.repeat)
    print(
        f"{m['events']:,} events, {m['customers']:,} customers; "
        f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}"
    )
    print("| path | seconds | rate |")
    print("|---|---:|---:|")
    fold_rate = f"{m['fold_events_per_s']:,.0f} events/s"
    print(f"| numba fold (apply_events) | {m['fold_s']:.4f} | {fold_rate} |")
    print(
        f"| numba scoring (evaluate, incl. BTYD) | {m['score_s']:.4f} | "
        f"{m['score_customers_per_s']:,.0f} customers/s |"
    )
    print(
        f"| numba fold + scoring | {m['numba_s']:.4f} | {m['numba_events_per_s']:,.0f} events/s |"
    )
    print(
        f"| plain-Python oracle (fold + discrete scores, no BTYD) | {m['oracle_s']:.4f} | "
        f"{m['oracle_events_per_s']:,.0f} events/s |"
    )
    print(f"| speed-up | | {m['speedup']:.0f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
