"""Simulate RFM summaries from the BG/NBD and Gamma-Gamma models (for recovery tests, benchmarks).

Exact and vectorised: customer i has purchase rate lambda ~ Gamma(r, rate alpha) and dropout
probability p ~ Beta(a, b). Repeat purchases form a Poisson process on (0, T]; after each repeat
purchase the customer drops out with probability p, so the purchase at which they die is
D ~ Geometric(p). With N = number of arrivals in (0, T], x = min(N, D), and given N the arrival
times are uniform order statistics, so t_x = T * Beta(x, N - x + 1) for x > 0.
Gamma-Gamma: nu ~ Gamma(q, rate v) per customer, each purchase ~ Gamma(p, rate nu), so the mean
of x purchases is Gamma(p x, rate nu) / x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["SimulatedSummary", "simulate_bgnbd", "simulate_gamma_gamma"]


@dataclass(frozen=True)
class SimulatedSummary:
    """BG/NBD draws: the observable summary plus the latent traits."""

    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    T: NDArray[np.float64]
    rate: NDArray[np.float64]  # lambda
    dropout: NDArray[np.float64]  # p
    alive: NDArray[np.bool_]  # still active at T


def simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, T: ArrayLike,
                   rng: np.random.Generator) -> SimulatedSummary:
    """``n`` customers from BG/NBD(r, alpha, a, b) observed for ``T`` (scalar or n values)."""
    age = np.broadcast_to(np.asarray(T, dtype=np.float64), (n,)).copy()
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    arrivals = rng.poisson(lam * age)
    death = rng.geometric(np.clip(p, 1e-300, 1.0))
    x = np.minimum(arrivals, death)
    recency = np.zeros(n)
    rep = x > 0
    recency[rep] = age[rep] * rng.beta(x[rep], arrivals[rep] - x[rep] + 1)
    return SimulatedSummary(
        frequency=x.astype(np.float64),
        recency=recency,
        T=age,
        rate=lam,
        dropout=p,
        alive=death > arrivals,
    )


def simulate_gamma_gamma(frequency: ArrayLike, p: float, q: float, v: float,
                         rng: np.random.Generator) -> NDArray[np.float64]:
    """Average spend of each customer's ``frequency`` purchases (0 where frequency is 0)."""
    x = np.asarray(frequency, dtype=np.float64)
    nu: NDArray[np.float64] = np.asarray(rng.gamma(q, 1.0 / v, x.shape[0]), dtype=np.float64)
    out = np.zeros(x.shape[0])
    rep = x > 0
    out[rep] = rng.gamma(p * x[rep], 1.0 / nu[rep]) / x[rep]
    return out
