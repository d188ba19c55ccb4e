"""Gamma-Gamma spend model fit (Fader, Hardie & Lee 2005b): numba log-likelihood with gradient.

For a repeat buyer with x purchases of average value m (Hardie's note 025, eq. 1a):

    ln L = ln G(p x + q) - ln G(p x) - ln G(q) + q ln v + (p x - 1) ln m + p x ln x
         - (p x + q) ln(x m + v)

Fit on customers with x > 0 and m > 0 only. Terms in x only are computed once per distinct x;
the sums of ln m and x (ln m + ln x) are constants, so each evaluation needs one logarithm per
distinct (x, m) row. The optimiser works on log-parameters (damped Newton, analytic Hessian).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from models._fitting import (
    as_float_array,
    distinct_values,
    fit_log_params,
    group_rows,
    to_log_space,
)
from models._special import digamma, trigamma

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
def _nll_derivs(
    log_params: NDArray[np.float64],
    xu: NDArray[np.float64],
    wu: NDArray[np.float64],
    xi: NDArray[np.int64],
    m: NDArray[np.float64],
    w: NDArray[np.float64],
    sum_log_m: float,
    sum_x_log_xm: float,
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Negative total log-likelihood, gradient and Hessian in log-parameters (p, q, v).

    ``sum_log_m`` = sum w ln m, ``sum_x_log_xm`` = sum w x (ln m + ln x) over the rows.
    """
    th = np.exp(log_params)
    p, q, v = th[0], th[1], th[2]
    log_v = math.log(v)
    lg_q = math.lgamma(q)
    ps_q = digamma(q)
    tg_q = trigamma(q)
    ll = p * sum_x_log_xm - sum_log_m
    g = np.zeros(3)
    h = np.zeros((3, 3))
    g[0] = sum_x_log_xm
    for j in range(xu.shape[0]):
        x = xu[j]
        wj = wu[j]
        px = p * x
        ps_pxq = digamma(px + q)
        tg_pxq = trigamma(px + q)
        ll += wj * (math.lgamma(px + q) - math.lgamma(px) - lg_q + q * log_v)
        g[0] += wj * x * (ps_pxq - digamma(px))
        g[1] += wj * (ps_pxq - ps_q + log_v)
        g[2] += wj * q / v
        h[0, 0] += wj * x * x * (tg_pxq - trigamma(px))
        h[0, 1] += wj * x * tg_pxq
        h[1, 1] += wj * (tg_pxq - tg_q)
        h[1, 2] += wj / v
        h[2, 2] -= wj * q / (v * v)
    for i in range(m.shape[0]):
        x = xu[xi[i]]
        wi = w[i]
        s = x * m[i] + v
        inv_s = 1.0 / s
        ls = math.log(s)
        pxq = p * x + q
        ll -= wi * pxq * ls
        g[0] -= wi * x * ls
        g[1] -= wi * ls
        g[2] -= wi * pxq * inv_s
        h[0, 2] -= wi * x * inv_s
        h[1, 2] -= wi * inv_s
        h[2, 2] += wi * pxq * inv_s * inv_s
    return to_log_space(ll, g, h, th)


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
    xu, wu, xi = distinct_values(x, w)
    log_m = np.log(m)
    consts = np.array([float(np.dot(w, log_m)), float(np.dot(w, x * (log_m + np.log(x))))])
    return xu, wu, xi, m, w, consts


def gamma_gamma_loglik(p: float, q: float, v: float, frequency: ArrayLike,
                       monetary_value: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Total Gamma-Gamma log-likelihood of repeat buyers at the given parameters."""
    xu, wu, xi, m, w, consts = _prepare(*_check(frequency, monetary_value, weights))
    logp = np.log(np.array([p, q, v], dtype=np.float64))
    nll, _, _ = _nll_derivs(logp, xu, wu, xi, m, w, consts[0], consts[1])
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
    slm, sxl = float(consts[0]), float(consts[1])

    def nll_derivs(
        logp: NDArray[np.float64],
    ) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
        return _nll_derivs(logp, xu, wu, xi, m, w, slm, sxl)

    if initial is None:
        # Mean spend p v / (q - 1) at the sample mean with p = 1, q = 2.
        initial = (1.0, 2.0, max(float(np.average(m, weights=w)), 1e-6))
    logp, iterations, converged = fit_log_params(nll_derivs, float(w.sum()), penalizer, initial)
    p, q, v = (float(val) for val in np.exp(logp))
    nll, _, _ = nll_derivs(logp)
    return GammaGammaFit(p=p, q=q, v=v, loglik=-float(nll), n_customers=n_customers,
                         iterations=iterations, seconds=time.perf_counter() - start,
                         converged=converged)
