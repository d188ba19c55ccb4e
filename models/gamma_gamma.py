"""Gamma-Gamma spend model fit (Fader, Hardie & Lee 2005b): numba log-likelihood with gradient.

For a repeat buyer with x purchases of average value m (Hardie's note 025, eq. 1a):

    ln L = ln G(p x + q) - ln G(p x) - ln G(q) + q ln v + (p x - 1) ln m + p x ln x
         - (p x + q) ln(x m + v)

Fit on customers with x > 0 and m > 0 only. Terms in x only are computed once per distinct x;
the sums of ln m and x (ln m + ln x) are constants, so each evaluation needs one logarithm per
distinct (x, m) row. The optimiser works on log-parameters (L-BFGS-B, then Newton polish).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from models._fitting import as_float_array, group_rows, minimize_log_params
from models._special import digamma

__all__ = ["GammaGammaFit", "fit_gamma_gamma", "gamma_gamma_loglik"]


@dataclass(frozen=True)
class GammaGammaFit:
    """Result of :func:`fit_gamma_gamma`; v is in currency units."""

    p: float
    q: float
    v: float
    loglik: float  # total log-likelihood at the optimum (not the mean)
    n_customers: int
    iterations: int
    seconds: float
    converged: bool

    @property
    def params(self) -> dict[str, float]:
        """``{"p", "q", "v"}``."""
        return {"p": self.p, "q": self.q, "v": self.v}


@njit(cache=True, nogil=True)
def _nll_grad(
    log_params: NDArray[np.float64],
    xu: NDArray[np.float64],
    wu: NDArray[np.float64],
    xi: NDArray[np.int64],
    m: NDArray[np.float64],
    w: NDArray[np.float64],
    sum_log_m: float,
    sum_x_log_xm: float,
) -> tuple[float, NDArray[np.float64]]:
    """Negative total log-likelihood and its gradient in log-parameters.

    ``sum_log_m`` = sum w ln m, ``sum_x_log_xm`` = sum w x (ln m + ln x) over the rows.
    """
    p = math.exp(log_params[0])
    q = math.exp(log_params[1])
    v = math.exp(log_params[2])
    log_v = math.log(v)
    lg_q = math.lgamma(q)
    ps_q = digamma(q)
    ll = p * sum_x_log_xm - sum_log_m
    g_p = sum_x_log_xm
    g_q = 0.0
    g_v = 0.0
    for j in range(xu.shape[0]):
        x = xu[j]
        wj = wu[j]
        px = p * x
        ps_pxq = digamma(px + q)
        ll += wj * (math.lgamma(px + q) - math.lgamma(px) - lg_q + q * log_v)
        g_p += wj * x * (ps_pxq - digamma(px))
        g_q += wj * (ps_pxq - ps_q + log_v)
        g_v += wj * q / v
    for i in range(m.shape[0]):
        x = xu[xi[i]]
        wi = w[i]
        s = x * m[i] + v
        ls = math.log(s)
        pxq = p * x + q
        ll -= wi * pxq * ls
        g_p -= wi * x * ls
        g_q -= wi * ls
        g_v -= wi * pxq / s
    grad = np.empty(3)
    grad[0] = -g_p * p
    grad[1] = -g_q * q
    grad[2] = -g_v * v
    return -ll, grad


def _check(frequency: ArrayLike, monetary_value: ArrayLike,
           weights: ArrayLike | None) -> tuple[NDArray[np.float64], ...]:
    x = as_float_array("frequency", frequency)
    n = x.shape[0]
    m = as_float_array("monetary_value", monetary_value, n)
    w = np.ones(n) if weights is None else as_float_array("weights", weights, n)
    if np.any(w < 0):
        raise ValueError("weights must not be negative")
    keep = w > 0
    x, m, w = x[keep], m[keep], w[keep]
    if x.shape[0] == 0:
        raise ValueError("no repeat buyers to fit the Gamma-Gamma model on")
    if np.any(x <= 0):
        raise ValueError("Gamma-Gamma is fitted on repeat buyers only: frequency must be > 0")
    if np.any(m <= 0):
        raise ValueError("monetary_value must be > 0 for every customer in the Gamma-Gamma fit")
    if np.unique(m).shape[0] < 2:
        raise ValueError("monetary_value is the same for every customer: spread not estimable")
    return x, m, w


def _prepare(
    x: NDArray[np.float64], m: NDArray[np.float64], w: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.float64],
           NDArray[np.float64], NDArray[np.float64]]:
    (x, m), w = group_rows((x, m), w)
    xu, xi = np.unique(x, return_inverse=True)
    wu = np.bincount(xi, weights=w, minlength=xu.shape[0]).astype(np.float64)
    log_m = np.log(m)
    consts = np.array([float(np.dot(w, log_m)), float(np.dot(w, x * (log_m + np.log(x))))])
    return xu, wu, xi.astype(np.int64), m, w, consts


def gamma_gamma_loglik(p: float, q: float, v: float, frequency: ArrayLike,
                       monetary_value: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Total Gamma-Gamma log-likelihood of repeat buyers at the given parameters."""
    xu, wu, xi, m, w, consts = _prepare(*_check(frequency, monetary_value, weights))
    logp = np.log(np.array([p, q, v], dtype=np.float64))
    nll, _ = _nll_grad(logp, xu, wu, xi, m, w, consts[0], consts[1])
    return -float(nll)


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary_value: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    penalizer: float = 0.0,
    initial: tuple[float, float, float] | None = None,
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters (p, q, v) from repeat buyers' spend.

    ``frequency`` = repeat purchases x (> 0), ``monetary_value`` = their average value (> 0).
    ``penalizer`` adds ``penalizer * sum(params^2)`` to the mean negative log-likelihood.
    Raises ValueError on degenerate input (no rows, x <= 0, m <= 0, all m equal).
    """
    start = time.perf_counter()
    x, m, w = _check(frequency, monetary_value, weights)
    n_customers = round(float(w.sum()))
    xu, wu, xi, m, w, consts = _prepare(x, m, w)
    total_w = float(w.sum())
    slm, sxl = float(consts[0]), float(consts[1])

    def objective(logp: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        nll, grad = _nll_grad(logp, xu, wu, xi, m, w, slm, sxl)
        value = nll / total_w
        grad = grad / total_w
        if penalizer > 0.0:
            par = np.exp(logp)
            value += penalizer * float(np.sum(par * par))
            grad = grad + 2.0 * penalizer * par * par
        return value, grad

    if initial is None:
        # Method of moments on the average spends: mean p v / (q - 1) with q = 2, p = 1.
        initial = (1.0, 2.0, max(float(np.average(m, weights=w)), 1e-6))
    x0 = np.log(np.asarray(initial, dtype=np.float64))
    logp, _, iterations, converged, _ = minimize_log_params(objective, x0, 1e-9)
    p, q, v = (float(val) for val in np.exp(logp))
    nll, _ = _nll_grad(logp, xu, wu, xi, m, w, slm, sxl)
    return GammaGammaFit(p=p, q=q, v=v, loglik=-float(nll), n_customers=n_customers,
                         iterations=iterations, seconds=time.perf_counter() - start,
                         converged=converged)
