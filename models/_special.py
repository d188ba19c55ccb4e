"""Special functions numba lacks (digamma), as ``@njit`` scalars for the likelihood kernels."""

from __future__ import annotations

import math

from numba import njit

__all__ = ["digamma"]


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
        - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f * (1.0 / 132.0))))
    )
    return acc + math.log(x) - 0.5 / x - tail
