"""BG/NBD maximum-likelihood fit (Fader, Hardie & Lee 2005): numba log-likelihood with gradient.

The log-likelihood of one customer with x repeat purchases, last at t_x, observed for T is

    ln L = ln G(r + x) - ln G(r) + r ln alpha
         + ln B(a, b + x) - ln B(a, b)
         + ln[ (alpha + T)^-(r + x) + [x > 0] a / (b + x - 1) (alpha + t_x)^-(r + x) ]

(Hardie's note 004). Terms that depend on x only are computed once per distinct x; identical
(x, t_x, T) rows are merged with a weight; the gradient is analytic. The optimiser works on
log-parameters (L-BFGS-B, then Newton polish).
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
def _nll_grad(
    log_params: NDArray[np.float64],
    xu: NDArray[np.float64],
    wu: NDArray[np.float64],
    xi: NDArray[np.int64],
    tx: NDArray[np.float64],
    T: NDArray[np.float64],
    w: NDArray[np.float64],
) -> tuple[float, NDArray[np.float64]]:
    """Negative total log-likelihood and its gradient in log-parameters.

    ``xu`` are the distinct x values with total weights ``wu``; row i has x = xu[xi[i]].
    """
    r = math.exp(log_params[0])
    alpha = math.exp(log_params[1])
    a = math.exp(log_params[2])
    b = math.exp(log_params[3])
    k = xu.shape[0]
    log_alpha = math.log(alpha)
    lg_r = math.lgamma(r)
    lg_b = math.lgamma(b)
    lg_ab = math.lgamma(a + b)
    ps_r = digamma(r)
    ps_b = digamma(b)
    ps_ab = digamma(a + b)
    # Per distinct x: the ln A4 constant and the d/db of it.
    c4 = np.empty(k)
    c4_db = np.empty(k)
    ll = 0.0
    g_r = 0.0
    g_alpha = 0.0
    g_a = 0.0
    g_b = 0.0
    for j in range(k):
        x = xu[j]
        wj = wu[j]
        ll += wj * (math.lgamma(r + x) - lg_r + r * log_alpha)
        g_r += wj * (digamma(r + x) - ps_r + log_alpha)
        g_alpha += wj * r / alpha
        if x > 0.0:
            ll += wj * (lg_ab + math.lgamma(b + x) - lg_b - math.lgamma(a + b + x))
            ps_abx = digamma(a + b + x)
            g_a += wj * (ps_ab - ps_abx)
            g_b += wj * (ps_ab + digamma(b + x) - ps_b - ps_abx)
            c4[j] = math.log(a) - math.log(b + x - 1.0)
            c4_db[j] = -1.0 / (b + x - 1.0)
        else:
            c4[j] = 0.0
            c4_db[j] = 0.0
    for i in range(tx.shape[0]):
        j = xi[i]
        x = xu[j]
        wi = w[i]
        rx = r + x
        lat = math.log(alpha + T[i])
        l3 = -rx * lat
        if x > 0.0:
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
            g_r -= wi * (p3 * lat + p4 * lar)
            g_alpha -= wi * rx * (p3 / (alpha + T[i]) + p4 / (alpha + tx[i]))
            g_a += wi * p4 / a
            g_b += wi * p4 * c4_db[j]
        else:
            ll += wi * l3
            g_r -= wi * lat
            g_alpha -= wi * rx / (alpha + T[i])
    grad = np.empty(4)
    grad[0] = -g_r * r
    grad[1] = -g_alpha * alpha
    grad[2] = -g_a * a
    grad[3] = -g_b * b
    return -ll, grad


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
    xu, xi = np.unique(x, return_inverse=True)
    wu = np.bincount(xi, weights=w, minlength=xu.shape[0]).astype(np.float64)
    return xu, wu, xi.astype(np.int64), tx, age, w


def bgnbd_loglik(r: float, alpha: float, a: float, b: float, frequency: ArrayLike,
                 recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Total BG/NBD log-likelihood of the customers at the given parameters."""
    x, tx, age, w = _check(frequency, recency, T, weights)
    xu, wu, xi, tx, age, w = _prepare(x, tx, age, w)
    logp = np.log(np.array([r, alpha, a, b], dtype=np.float64))
    nll, _ = _nll_grad(logp, xu, wu, xi, tx, age, w)
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
    total_w = float(w.sum())

    def objective(logp: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        nll, grad = _nll_grad(logp, xu, wu, xi, tx, age, w)
        value = nll / total_w
        grad = grad / total_w
        if penalizer > 0.0:
            p = np.exp(logp)
            value += penalizer * float(np.sum(p * p))
            grad = grad + 2.0 * penalizer * p * p
        return value, grad

    if initial is None:
        # r = 1, a = b = 1 and alpha at the scale of the observation window.
        initial = (1.0, max(float(np.average(age, weights=w)), 1e-6), 1.0, 1.0)
    x0 = np.log(np.asarray(initial, dtype=np.float64))
    logp, _, iterations, converged, _ = minimize_log_params(objective, x0, 1e-9)
    r, alpha, a, b = (float(v) for v in np.exp(logp))
    nll, _ = _nll_grad(logp, xu, wu, xi, tx, age, w)
    return BGNBDFit(r=r, alpha=alpha, a=a, b=b, loglik=-float(nll), n_customers=n_customers,
                    iterations=iterations, seconds=time.perf_counter() - start,
                    converged=converged)
