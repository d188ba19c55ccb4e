"""Special functions numba lacks (digamma, trigamma) as ``@njit`` scalars for the likelihoods."""

from __future__ import annotations

import math

from numba import njit

__all__ = ["digamma", "trigamma"]


@njit(cache=True, nogil=True)
def digamma(x: float) -> float:
    """psi(x) for x > 0: recurrence up to x >= 10, then the asymptotic series (error < 1e-15)."""
    acc = 0.0
    while x < 10.0:
        acc -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    tail = f * (
        1.0 / 12.0
        - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f * (
            1.0 / 132.0 - f * (691.0 / 32760.0 - f / 12.0)))))
    )
    return acc + math.log(x) - 0.5 / x - tail


@njit(cache=True, nogil=True)
def trigamma(x: float) -> float:
    """psi'(x) for x > 0: recurrence up to x >= 10, then the asymptotic series (error < 1e-15)."""
    acc = 0.0
    while x < 10.0:
        acc += 1.0 / (x * x)
        x += 1.0
    f = 1.0 / (x * x)
    tail = (1.0 / x) * (
        1.0 + 0.5 / x + f * (1.0 / 6.0 - f * (1.0 / 30.0 - f * (1.0 / 42.0 - f * (1.0 / 30.0 - f * (
            5.0 / 66.0 - f * (691.0 / 2730.0 - f * (7.0 / 6.0)))))))
    )
    return acc + tail
