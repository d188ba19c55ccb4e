"""Shared pieces of the maximum-likelihood fitters: input checks, row aggregation, optimiser."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

__all__ = [
    "GTOL",
    "as_float_array",
    "distinct_values",
    "fit_log_params",
    "group_rows",
    "minimize_log_params",
    "minimize_newton",
    "to_log_space",
]

Objective = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]]
Objective2 = Callable[
    [NDArray[np.float64]], tuple[float, NDArray[np.float64], NDArray[np.float64]]
]

GTOL = 1e-9  # converged when every |d mean NLL / d log-parameter| is at most this


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
    it removes most rows. Rows are keyed by a 64-bit hash of their bit patterns (one sort
    instead of a multi-key lexsort); a hash collision is detected and falls back to lexsort.
    Without duplicates the input is returned as it is.
    """
    n = columns[0].shape[0]
    if n < 2:
        return columns, weights
    bits = np.stack(columns, axis=1).view(np.uint64)
    key = np.zeros(n, dtype=np.uint64)
    for j in range(bits.shape[1]):
        key ^= bits[:, j] * np.uint64(_HASH_MULTIPLIERS[j % len(_HASH_MULTIPLIERS)])
        key = (key << np.uint64(27)) | (key >> np.uint64(37))
    sorted_key = np.sort(key)
    if np.all(sorted_key[1:] != sorted_key[:-1]):
        return columns, weights
    order = np.argsort(key, kind="stable")
    key = key[order]
    sorted_cols = tuple(c[order] for c in columns)
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    group_of_row = np.repeat(starts, np.diff(np.append(starts, n)))
    if any(np.any(c != c[group_of_row]) for c in sorted_cols):  # hash collision
        order = np.lexsort(columns[::-1])
        sorted_cols = tuple(c[order] for c in columns)
        change = np.zeros(n, dtype=bool)
        change[0] = True
        for c in sorted_cols:
            change[1:] |= c[1:] != c[:-1]
        starts = np.flatnonzero(change)
    grouped = tuple(np.ascontiguousarray(c[starts]) for c in sorted_cols)
    summed = np.add.reduceat(weights[order], starts)
    return grouped, np.ascontiguousarray(summed)


_HASH_MULTIPLIERS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)


def distinct_values(
    x: NDArray[np.float64], weights: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """(distinct values of ``x``, the summed weight of each, the index of every row's value):
    the terms of a likelihood that depend on x alone are computed once per distinct x."""
    xu, xi = np.unique(x, return_inverse=True)
    wu = np.bincount(xi, weights=weights, minlength=xu.shape[0]).astype(np.float64)
    return xu, wu, xi.astype(np.int64)


def fit_log_params(
    nll_derivs: Objective2,
    total_weight: float,
    penalizer: float,
    initial: tuple[float, ...],
    gtol: float = GTOL,
) -> tuple[NDArray[np.float64], int, bool]:
    """Maximum-likelihood log-parameters from ``nll_derivs(log_params)`` = (negative total
    log-likelihood, its gradient, its Hessian), starting at the parameters ``initial``.

    Minimises the mean over ``total_weight`` customers plus ``penalizer * sum(params^2)`` (as
    lifetimes does) by damped Newton steps; when Newton fails (rare), by quasi-Newton from the
    same start, then polish. Returns (log_params, iterations, converged).
    """

    def objective(
        logp: NDArray[np.float64],
    ) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
        nll, grad, hess = nll_derivs(logp)
        value = nll / total_weight
        grad = grad / total_weight
        hess = hess / total_weight
        if penalizer > 0.0:
            par = np.exp(logp)
            value += penalizer * float(np.sum(par * par))
            grad = grad + 2.0 * penalizer * par * par
            hess = hess + np.diag(4.0 * penalizer * par * par)
        return value, grad, hess

    x0 = np.log(np.asarray(initial, dtype=np.float64))
    logp, _, iterations, converged = minimize_newton(objective, x0, gtol)
    if not converged:
        logp, _, more, converged, _ = minimize_log_params(lambda u: objective(u)[:2], x0, gtol)
        iterations += more
    return logp, iterations, converged


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
    for _ in range(20 if _norm(grad) > gtol else 0):
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


def minimize_newton(
    objective: Objective2, x0: NDArray[np.float64], gtol: float, max_iter: int = 200
) -> tuple[NDArray[np.float64], float, int, bool]:
    """Minimise ``objective(x) -> (value, gradient, Hessian)`` by damped Newton steps.

    Levenberg-Marquardt damping keeps ``H + lambda I`` positive definite away from the optimum
    and vanishes near it (quadratic convergence); steps are capped at 2 in each coordinate
    (a factor e^2 on a log-parameter). Returns (x, value, iterations, converged), converged
    meaning max |gradient| <= gtol.
    """
    x = np.asarray(x0, dtype=np.float64).copy()
    value, grad, hess = objective(x)
    if not (np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
        return x, float(value), 0, False
    lam = 0.0
    k = x.shape[0]
    iterations = 0
    for iterations in range(1, max_iter + 1):
        if _norm(grad) <= gtol:
            return x, float(value), iterations - 1, True
        scale = max(1e-12, float(np.max(np.abs(np.diag(hess)))))
        accepted = False
        for _ in range(60):
            try:
                chol = np.linalg.cholesky(hess + lam * np.eye(k))
            except np.linalg.LinAlgError:
                lam = max(4.0 * lam, 1e-8 * scale)
                continue
            step = -np.linalg.solve(chol.T, np.linalg.solve(chol, grad))
            biggest = float(np.max(np.abs(step)))
            if biggest > 2.0:
                step *= 2.0 / biggest
            cand = x + step
            cv, cg, ch = objective(cand)
            noise = 1e-12 * max(1.0, abs(value))
            ok = np.isfinite(cv) and np.all(np.isfinite(cg)) and np.all(np.isfinite(ch))
            if ok and (cv < value or (cv <= value + noise and _norm(cg) < _norm(grad))):
                x, value, grad, hess = cand, float(cv), cg, ch
                lam = 0.0 if lam < 1e-6 * scale else lam / 8.0
                accepted = True
                break
            lam = max(10.0 * lam, 1e-3 * scale)
        if not accepted:
            break
    return x, float(value), iterations, _norm(grad) <= gtol


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


@njit(cache=True, nogil=True)
def to_log_space(
    ll: float, g: NDArray[np.float64], h: NDArray[np.float64], th: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """(-ll, gradient, Hessian) of -ll in u = ln(theta), from the log-likelihood's gradient
    ``g`` and upper-triangular Hessian ``h`` in theta."""
    n = th.shape[0]
    grad = np.empty(n)
    hess = np.empty((n, n))
    for i in range(n):
        grad[i] = -g[i] * th[i]
    for i in range(n):
        for j in range(i, n):
            v = -h[i, j] * th[i] * th[j]
            if i == j:
                v += grad[i]
            hess[i, j] = v
            hess[j, i] = v
    return -ll, grad, hess
