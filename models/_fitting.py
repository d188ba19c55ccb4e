"""Shared pieces of the maximum-likelihood fitters: input checks, row aggregation, optimiser."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

__all__ = ["as_float_array", "group_rows", "minimize_log_params"]

Objective = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]]


def as_float_array(name: str, values: ArrayLike, n: int | None = None) -> NDArray[np.float64]:
    """A 1-d float64 copy of ``values``; ValueError if it is not finite or has the wrong length."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values, expected {n}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(arr)


def group_rows(
    columns: tuple[NDArray[np.float64], ...], weights: NDArray[np.float64]
) -> tuple[tuple[NDArray[np.float64], ...], NDArray[np.float64]]:
    """Collapse identical rows (across all columns) into one row with the summed weight.

    The likelihood of n identical customers is n times one customer's: this is the
    "weights" trick of Fader & Hardie, and on real summaries (integer counts, rounded times)
    it removes most rows.
    """
    n = columns[0].shape[0]
    if n == 0:
        return columns, weights
    order = np.lexsort(columns[::-1])
    sorted_cols = tuple(c[order] for c in columns)
    new_group = np.zeros(n, dtype=bool)
    new_group[0] = True
    for c in sorted_cols:
        new_group[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(new_group)
    grouped = tuple(np.ascontiguousarray(c[starts]) for c in sorted_cols)
    summed = np.add.reduceat(weights[order], starts)
    return grouped, np.ascontiguousarray(summed)


def minimize_log_params(
    objective: Objective, x0: NDArray[np.float64], gtol: float
) -> tuple[NDArray[np.float64], float, int, bool, float]:
    """Minimise ``objective(log_params) -> (value, gradient)`` with L-BFGS-B, then polish.

    The polish is a few Newton steps with a Hessian from finite differences of the analytic
    gradient, which takes the optimum to full precision cheaply. Returns (log_params, value,
    iterations, converged, seconds).
    """
    start = time.perf_counter()
    res: Any = minimize(
        objective,
        x0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 2000, "gtol": gtol * 1e-2, "ftol": 1e-15, "maxcor": 20},
    )
    x = np.asarray(res.x, dtype=np.float64)
    value, grad = objective(x)
    iterations = int(res.nit)
    for _ in range(20):
        if not np.all(np.isfinite(grad)):
            break
        hess = _fd_hessian(objective, x)
        try:
            step = np.linalg.solve(hess, -grad)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)) or np.dot(step, grad) >= 0.0:
            break
        t = 1.0
        improved = False
        for _ in range(30):
            cand = x + t * step
            cv, cg = objective(cand)
            # Near the optimum the value moves less than its rounding noise: accept a step
            # that does not raise it beyond that noise, or that shrinks the gradient.
            noise = 1e-12 * max(1.0, abs(value))
            if np.isfinite(cv) and (cv <= value + noise or _norm(cg) < _norm(grad)):
                x, value, grad = cand, cv, cg
                improved = True
                break
            t *= 0.5
        iterations += 1
        if not improved or _norm(grad) <= gtol * 1e-3:
            break
    converged = bool(np.all(np.isfinite(grad)) and np.max(np.abs(grad)) <= gtol)
    return x, float(value), iterations, converged, time.perf_counter() - start


def _norm(g: NDArray[np.float64]) -> float:
    return float(np.max(np.abs(g))) if np.all(np.isfinite(g)) else np.inf


def _fd_hessian(objective: Objective, x: NDArray[np.float64]) -> NDArray[np.float64]:
    k = x.shape[0]
    hess = np.empty((k, k))
    for i in range(k):
        h = 1e-5 * max(1.0, abs(float(x[i])))
        up = x.copy()
        dn = x.copy()
        up[i] += h
        dn[i] -= h
        hess[i] = (objective(up)[1] - objective(dn)[1]) / (2.0 * h)
    return 0.5 * (hess + hess.T)
