"""Fit time against lifetimes on one synthetic 100k-customer summary (run: pytest -m benchmark).

Both fitters get the same arrays; lifetimes' time is the best of 3 runs, ours is measured by
pytest-benchmark (the JIT is warmed first). Speed is reported (extra_info), not asserted;
the design target (>= 10x) is checked in BENCHMARKS.md.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from oracles.btyd_sim import simulate_bgnbd, simulate_gamma_gamma

from models.bgnbd import fit_bgnbd
from models.gamma_gamma import fit_gamma_gamma

pytestmark = pytest.mark.benchmark
lifetimes = pytest.importorskip("lifetimes")
warnings.filterwarnings("ignore", category=FutureWarning)

N = 100_000


@pytest.fixture(scope="module")
def synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240601)
    sim = simulate_bgnbd(N, 0.5, 6.0, 0.7, 3.0, rng.uniform(20.0, 80.0, N), rng)
    money = simulate_gamma_gamma(sim.frequency, 4.0, 3.0, 20.0, rng)
    return {"x": sim.frequency, "t_x": sim.recency, "T": sim.T, "m": money}


def _best_of(fn: Callable[[], Any], rounds: int = 3) -> float:
    best = np.inf
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return float(best)


def test_bgnbd_fit_speed_vs_lifetimes(benchmark: Any, synthetic: dict) -> None:
    from lifetimes import BetaGeoFitter

    x, t_x, big_t = synthetic["x"], synthetic["t_x"], synthetic["T"]
    fit_bgnbd(x[:100], t_x[:100], big_t[:100])  # load the JIT cache
    ours = benchmark.pedantic(fit_bgnbd, args=(x, t_x, big_t), rounds=5, iterations=1)
    theirs_model = BetaGeoFitter().fit(x, t_x, big_t)
    theirs = _best_of(lambda: BetaGeoFitter().fit(x, t_x, big_t))
    mine = float(benchmark.stats.stats.min)
    benchmark.extra_info.update(lifetimes_s=theirs, custscore_s=mine, speedup=theirs / mine)
    for name in ("r", "alpha", "a", "b"):
        assert ours.params[name] == pytest.approx(float(theirs_model.params_[name]), rel=1e-4)


def test_gamma_gamma_fit_speed_vs_lifetimes(benchmark: Any, synthetic: dict) -> None:
    from lifetimes import GammaGammaFitter

    rep = synthetic["x"] > 0
    x, m = synthetic["x"][rep], synthetic["m"][rep]
    fit_gamma_gamma(x[:100], m[:100])
    ours = benchmark.pedantic(fit_gamma_gamma, args=(x, m), rounds=5, iterations=1)
    theirs_model = GammaGammaFitter().fit(x, m)
    theirs = _best_of(lambda: GammaGammaFitter().fit(x, m))
    mine = float(benchmark.stats.stats.min)
    benchmark.extra_info.update(lifetimes_s=theirs, custscore_s=mine, speedup=theirs / mine)
    for name in ("p", "q", "v"):
        assert ours.params[name] == pytest.approx(float(theirs_model.params_[name]), rel=1e-4)


def test_cdnow_fit_speed_vs_lifetimes(benchmark: Any) -> None:
    from lifetimes import BetaGeoFitter
    from lifetimes.datasets import load_cdnow_summary

    df = load_cdnow_summary()
    x, t_x, big_t = (df[c].to_numpy(np.float64) for c in ("frequency", "recency", "T"))
    fit_bgnbd(x, t_x, big_t)
    benchmark.pedantic(fit_bgnbd, args=(x, t_x, big_t), rounds=10, iterations=1)
    theirs = _best_of(lambda: BetaGeoFitter().fit(x, t_x, big_t))
    mine = float(benchmark.stats.stats.min)
    benchmark.extra_info.update(lifetimes_s=theirs, custscore_s=mine, speedup=theirs / mine)
