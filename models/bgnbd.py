"""BG/NBD maximum-likelihood fit (Fader, Hardie & Lee 2005): numba log-likelihood with gradient.

The log-likelihood of one customer with x repeat purchases, last at t_x, observed for T is

    ln L = ln G(r + x) - ln G(r) + r ln alpha
         + ln B(a, b + x) - ln B(a, b)
         + ln[ (alpha + T)^-(r + x) + [x > 0] a / (b + x - 1) (alpha + t_x)^-(r + x) ]

(Hardie's note 004). Terms that depend on x only are computed once per distinct x; identical
(x, t_x, T) rows are merged with a weight; gradient and Hessian are analytic, and the optimiser
takes damped Newton steps on log-parameters (L-BFGS-B as a fallback).
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

__all__ = ["BGNBDFit", "bgnbd_loglik", "fit_bgnbd"]


@dataclass(frozen=True)
class BGNBDFit:
    """Result of :func:`fit_bgnbd`; times (alpha) are in the unit of the input."""

    r: float
    alpha: float
    a: float
    b: float
    loglik: float  # total log-likelihood at the optimum (not the mean)
    n_customers: int
    iterations: int
    seconds: float
    converged: bool

    @property
    def params(self) -> dict[str, float]:
        """``{"r", "alpha", "a", "b"}``."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


@njit(cache=True, nogil=True)
def _nll_derivs(
    log_params: NDArray[np.float64],
    xu: NDArray[np.float64],
    wu: NDArray[np.float64],
    xi: NDArray[np.int64],
    tx: NDArray[np.float64],
    T: NDArray[np.float64],
    w: NDArray[np.float64],
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Negative total log-likelihood, gradient and Hessian in log-parameters (r, alpha, a, b).

    ``xu`` are the distinct x values with total weights ``wu``; row i has x = xu[xi[i]].
    Per row, ln[e^l3 + e^l4] has gradient p3 g3 + p4 g4 and Hessian
    p3 H3 + p4 H4 + p3 p4 (g3 - g4)(g3 - g4)^T (p3, p4 the mixture weights).
    """
    th = np.exp(log_params)
    r, alpha, a, b = th[0], th[1], th[2], th[3]
    log_alpha = math.log(alpha)
    lg_r = math.lgamma(r)
    lg_b = math.lgamma(b)
    lg_ab = math.lgamma(a + b)
    ps_r, ps_b, ps_ab = digamma(r), digamma(b), digamma(a + b)
    tg_r, tg_b, tg_ab = trigamma(r), trigamma(b), trigamma(a + b)
    k = xu.shape[0]
    c4 = np.empty(k)  # ln a - ln(b + x - 1)
    inv_bx = np.empty(k)  # 1 / (b + x - 1)
    ll = 0.0
    g = np.zeros(4)  # d ll / d natural params
    h = np.zeros((4, 4))  # d2 ll / d natural params
    for j in range(k):
        x = xu[j]
        wj = wu[j]
        ll += wj * (math.lgamma(r + x) - lg_r + r * log_alpha)
        g[0] += wj * (digamma(r + x) - ps_r + log_alpha)
        g[1] += wj * r / alpha
        h[0, 0] += wj * (trigamma(r + x) - tg_r)
        h[0, 1] += wj / alpha
        h[1, 1] -= wj * r / (alpha * alpha)
        if x > 0.0:
            ll += wj * (lg_ab + math.lgamma(b + x) - lg_b - math.lgamma(a + b + x))
            ps_abx = digamma(a + b + x)
            tg_abx = trigamma(a + b + x)
            g[2] += wj * (ps_ab - ps_abx)
            g[3] += wj * (ps_ab + digamma(b + x) - ps_b - ps_abx)
            h[2, 2] += wj * (tg_ab - tg_abx)
            h[2, 3] += wj * (tg_ab - tg_abx)
            h[3, 3] += wj * (tg_ab + trigamma(b + x) - tg_b - tg_abx)
            c4[j] = math.log(a) - math.log(b + x - 1.0)
            inv_bx[j] = 1.0 / (b + x - 1.0)
        else:
            c4[j] = 0.0
            inv_bx[j] = 0.0
    inv_a = 1.0 / a
    for i in range(tx.shape[0]):
        j = xi[i]
        x = xu[j]
        wi = w[i]
        rx = r + x
        inv_t = 1.0 / (alpha + T[i])
        lat = math.log(alpha + T[i])
        l3 = -rx * lat
        if x > 0.0:
            inv_r = 1.0 / (alpha + tx[i])
            lar = math.log(alpha + tx[i])
            l4 = c4[j] - rx * lar
            if l3 >= l4:
                e = math.exp(l4 - l3)
                ll += wi * (l3 + math.log1p(e))
                p4 = e / (1.0 + e)
            else:
                e = math.exp(l3 - l4)
                ll += wi * (l4 + math.log1p(e))
                p4 = 1.0 / (1.0 + e)
            p3 = 1.0 - p4
            ib = inv_bx[j]
            g[0] -= wi * (p3 * lat + p4 * lar)
            g[1] -= wi * rx * (p3 * inv_t + p4 * inv_r)
            g[2] += wi * p4 * inv_a
            g[3] -= wi * p4 * ib
            # p3 H3 + p4 H4
            h[0, 1] -= wi * (p3 * inv_t + p4 * inv_r)
            h[1, 1] += wi * rx * (p3 * inv_t * inv_t + p4 * inv_r * inv_r)
            h[2, 2] -= wi * p4 * inv_a * inv_a
            h[3, 3] += wi * p4 * ib * ib
            # p3 p4 d d^T with d = g3 - g4
            d0 = lar - lat
            d1 = rx * (inv_r - inv_t)
            d2 = -inv_a
            d3 = ib
            c = wi * p3 * p4
            h[0, 0] += c * d0 * d0
            h[0, 1] += c * d0 * d1
            h[0, 2] += c * d0 * d2
            h[0, 3] += c * d0 * d3
            h[1, 1] += c * d1 * d1
            h[1, 2] += c * d1 * d2
            h[1, 3] += c * d1 * d3
            h[2, 2] += c * d2 * d2
            h[2, 3] += c * d2 * d3
            h[3, 3] += c * d3 * d3
        else:
            ll += wi * l3
            g[0] -= wi * lat
            g[1] -= wi * rx * inv_t
            h[0, 1] -= wi * inv_t
            h[1, 1] += wi * rx * inv_t * inv_t
    return to_log_space(ll, g, h, th)


def _check(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike,
           weights: ArrayLike | None) -> tuple[NDArray[np.float64], ...]:
    x = as_float_array("frequency", frequency)
    n = x.shape[0]
    if n == 0:
        raise ValueError("no customers to fit")
    tx = as_float_array("recency", recency, n)
    age = as_float_array("T", T, n)
    w = np.ones(n) if weights is None else as_float_array("weights", weights, n)
    if np.any(x < 0) or np.any(x != np.floor(x)):
        raise ValueError("frequency must be a non-negative whole number of repeat purchases")
    if np.any(tx < 0) or np.any(age < 0):
        raise ValueError("recency and T must not be negative")
    if np.any(tx > age):
        raise ValueError(f"recency > T for {int(np.sum(tx > age))} customer(s)")
    if np.any((x == 0) & (tx != 0)):
        raise ValueError("recency must be 0 for customers with frequency 0")
    if np.any(w < 0):
        raise ValueError("weights must not be negative")
    if not np.any((x > 0) & (w > 0)):
        raise ValueError("no repeat buyers (frequency > 0): BG/NBD a, b cannot be estimated")
    keep = w > 0
    return x[keep], tx[keep], age[keep], w[keep]


def _prepare(
    x: NDArray[np.float64], tx: NDArray[np.float64], age: NDArray[np.float64],
    w: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.float64],
           NDArray[np.float64], NDArray[np.float64]]:
    (x, tx, age), w = group_rows((x, tx, age), w)
    xu, wu, xi = distinct_values(x, w)
    return xu, wu, xi, tx, age, w


def bgnbd_loglik(r: float, alpha: float, a: float, b: float, frequency: ArrayLike,
                 recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Total BG/NBD log-likelihood of the customers at the given parameters."""
    x, tx, age, w = _check(frequency, recency, T, weights)
    xu, wu, xi, tx, age, w = _prepare(x, tx, age, w)
    logp = np.log(np.array([r, alpha, a, b], dtype=np.float64))
    nll, _, _ = _nll_derivs(logp, xu, wu, xi, tx, age, w)
    return -float(nll)


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    penalizer: float = 0.0,
    initial: tuple[float, float, float, float] | None = None,
) -> BGNBDFit:
    """Maximum-likelihood BG/NBD parameters (r, alpha, a, b) for RFM summary arrays.

    ``frequency`` = repeat purchases x, ``recency`` = t_x, ``T`` = age, all in one time unit;
    ``weights`` = number of customers per row. ``penalizer`` adds ``penalizer * sum(params^2)``
    to the mean negative log-likelihood (as lifetimes does); 0 gives the plain MLE.
    Raises ValueError on degenerate input (no customers or no repeat buyers, negative values,
    non-integer frequency, recency > T).
    """
    start = time.perf_counter()
    x, tx, age, w = _check(frequency, recency, T, weights)
    n_customers = round(float(w.sum()))
    xu, wu, xi, tx, age, w = _prepare(x, tx, age, w)

    def nll_derivs(
        logp: NDArray[np.float64],
    ) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
        return _nll_derivs(logp, xu, wu, xi, tx, age, w)

    if initial is None:
        # r = 1, a = b = 1 and alpha at the scale of the observation window.
        initial = (1.0, max(float(np.average(age, weights=w)), 1e-6), 1.0, 1.0)
    logp, iterations, converged = fit_log_params(nll_derivs, float(w.sum()), penalizer, initial)
    r, alpha, a, b = (float(v) for v in np.exp(logp))
    nll, _, _ = nll_derivs(logp)
    return BGNBDFit(r=r, alpha=alpha, a=a, b=b, loglik=-float(nll), n_customers=n_customers,
                    iterations=iterations, seconds=time.perf_counter() - start,
                    converged=converged)
