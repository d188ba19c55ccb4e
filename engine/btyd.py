"""BG/NBD and Gamma-Gamma closed forms as numba kernels: P(alive), expected purchases, spend, CLV.

Every scalar function is ``@njit(cache=True, nogil=True)`` so other kernels can call it; the
``*_array`` functions loop over customers. Only numpy, numba and the standard library are used.

Formulas (Fader, Hardie & Lee 2005; Hardie's notes 004, 021, 025):

- ``P(alive | x, t_x, T) = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x))``
- ``E[Y(t) | x, t_x, T] = (a + b + x - 1) / (a - 1)
  * (1 - ((alpha + T) / (alpha + T + t))^(r + x) 2F1(r + x, b + x; a + b + x - 1; z)) * P(alive)``
  with ``z = t / (alpha + T + t)``. By Euler's transformation the bracket equals
  ``1 - (1 - z)^(a - 1) 2F1(a + b - 1 - r, a - 1; a + b + x - 1; z)``, whose parameters stay
  small however large x is; that form is what is evaluated here (no overflow for big x).
- ``E[X(t)]`` for a new customer is the same bracket with x = 0, T = 0.
- Gamma-Gamma: ``E[M | x, mbar] = p (v + x mbar) / (p x + q - 1)``, mbar floored at 0.

The removable singularity of the BG/NBD expectation at a = 1 is handled by interpolating through
nodes at a = 1 +- 1e-3, 1 +- 2e-3 (cubic; error about 1e-12 relative).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "clv",
    "clv_array",
    "expected_purchases",
    "expected_purchases_array",
    "gg_expected_spend",
    "gg_expected_spend_array",
    "hyp2f1",
    "hyp2f1_array",
    "p_alive",
    "p_alive_array",
    "unconditional_expected_purchases",
    "unconditional_expected_purchases_array",
]

_EPS = 2.0**-56  # series stop: remaining tail below this fraction of the sum
_MAX_TERMS = 2_000_000  # hard cap of a Gauss series (never reached on the paths that use it)
_Z_DIRECT = 0.75  # at or below this the Gauss series is always used
_Z_SERIES = 0.995  # one-sign Gauss series up to here (< ~8000 terms)...
_M_DIRECT = 6.0  # ...or anywhere when c - a - b >= this (power-law decay is then fast)
_CONNECTION_REACH = 0.1  # 1 - z connection formula when (1 - z) * size is below this...
_M_CONNECTION = 20.0  # ...and c - a - b is below this...
_DEGENERATE = 0.1  # ...and at least this far from an integer; else Taylor continuation
_TAYLOR_STEP = 0.5  # a Taylor step covers at most this fraction of the distance to z = 1
_A_ONE = 1e-3  # half-width of the interpolation window around a = 1


@njit(cache=True, nogil=True)
def _lgamma_sign(x: float) -> tuple[float, float]:
    """(log|Gamma(x)|, sign of Gamma(x)); sign 0.0 at the poles (so 1/Gamma(x) = 0)."""
    if x > 0.0:
        return math.lgamma(x), 1.0
    if x == math.floor(x):
        return 0.0, 0.0
    sign = 1.0 if math.floor(-x) % 2 == 1 else -1.0
    return math.lgamma(x), sign


@njit(cache=True, nogil=True)
def _series(a: float, b: float, c: float, z: float, max_terms: int) -> tuple[float, bool]:
    """Gauss series sum_n (a)_n (b)_n / ((c)_n n!) z^n for |z| < 1; (sum, converged).

    Stops when a bound on the remaining tail is below ``_EPS`` of the sum: a geometric bound
    from the sup of the term ratio over the rest of the series (each of its two Moebius factors
    is monotone in n), and, far out, the power-law bound n / (c - a - b) that matters near z = 1.
    """
    s = 1.0
    t = 1.0
    m = c - a - b
    big = 4.0 * (abs(a) + abs(b) + abs(c)) + 10.0
    for n in range(max_terms):
        fn = float(n)
        t *= (a + fn) * (b + fn) / ((c + fn) * (fn + 1.0)) * z
        s += t
        if t == 0.0:
            return s, True
        k = fn + 2.0  # index of the next ratio's factors
        if k + a <= 0.0 or k + b <= 0.0 or k + c <= 0.0:
            continue
        at = abs(t)
        if at > _EPS * abs(s):
            continue
        f1 = (k - 1.0 + a) / k  # (j + a) / (j + 1) at j = n + 1
        f2 = (k - 1.0 + b) / (k - 1.0 + c)
        sup = abs(z) * max(f1, 1.0) * max(f2, 1.0)
        tail = math.inf
        if sup < 1.0:
            tail = at * sup / (1.0 - sup)
        if m > 0.0 and fn > big:
            tail = min(tail, at * (fn + 1.0) / m)
        if tail <= _EPS * abs(s):
            return s, True
    return s, False


@njit(cache=True, nogil=True)
def _connection(a: float, b: float, c: float, y: float) -> tuple[float, float]:
    """2F1(a, b; c; 1 - y) by the 1 - z connection formula (A&S 15.3.6); m = c-a-b not integer.

    Returns (value, log_scale) with 2F1 = value * exp(log_scale).
    """
    m = c - a - b
    lc, sc = _lgamma_sign(c)
    lm, sm = _lgamma_sign(m)
    lnm, snm = _lgamma_sign(-m)
    lca, sca = _lgamma_sign(c - a)
    lcb, scb = _lgamma_sign(c - b)
    la, sa = _lgamma_sign(a)
    lb, sb = _lgamma_sign(b)
    sign1 = sc * sm * sca * scb
    sign2 = sc * snm * sa * sb
    l1 = lc + lm - lca - lcb
    l2 = m * math.log(y) + lc + lnm - la - lb
    if sign1 == 0.0:
        l1 = -math.inf
    if sign2 == 0.0:
        l2 = -math.inf
    lmax = max(l1, l2)
    value = 0.0
    if sign1 != 0.0:
        s1, _ = _series(a, b, 1.0 - m, y, _MAX_TERMS)
        value += sign1 * math.exp(l1 - lmax) * s1
    if sign2 != 0.0:
        s2, _ = _series(c - a, c - b, 1.0 + m, y, _MAX_TERMS)
        value += sign2 * math.exp(l2 - lmax) * s2
    return value, lmax


@njit(cache=True, nogil=True)
def _taylor(a: float, b: float, c: float, z: float, y: float, size: float) -> float:
    """2F1(a, b; c; z), 0.5 < z < 1, by analytic continuation from z0 = 0.5.

    Re-expands the solution of the hypergeometric ODE in Taylor series around points that
    approach z = 1: each step covers half the remaining distance (inside the radius of
    convergence min(z0, 1 - z0)) and at most 1 / size, the scale on which solutions with
    parameters of that size vary. Works whatever c - a - b is, integers included.
    """
    y0 = 0.5  # distance to z = 1; every coefficient is written in it (no 1 - z0 cancellation)
    f, _ = _series(a, b, c, 0.5, _MAX_TERMS)
    fp, _ = _series(a + 1.0, b + 1.0, c + 1.0, 0.5, _MAX_TERMS)
    fp *= a * b / c
    ab1 = a + b + 1.0
    m1 = c - a - b - 1.0
    h_size = 1.0 / max(size, 1.0)
    while True:
        h_max = min(_TAYLOR_STEP * y0, h_size)
        last = y0 - y <= h_max
        h = y0 - y if last else h_max
        p0 = (1.0 - y0) * y0  # z0 (1 - z0)
        p1 = 2.0 * y0 - 1.0  # 1 - 2 z0
        q0 = m1 + ab1 * y0  # c - (a + b + 1) z0
        g0 = f
        g1 = fp * h
        val = g0 + g1
        der = g1
        for n in range(10_000):
            fn = float(n)
            g2 = ((fn + a) * (fn + b) * g0 * h * h - (fn + 1.0) * (p1 * fn + q0) * g1 * h) / (
                p0 * (fn + 1.0) * (fn + 2.0)
            )
            val += g2
            der += (fn + 2.0) * g2
            if n > 4 and abs(g1) + abs(g2) <= _EPS * abs(val):
                break
            g0 = g1
            g1 = g2
        f = val
        fp = der / h
        if last:
            return f
        y0 -= h


@njit(cache=True, nogil=True)
def _hyp2f1_unit(a: float, b: float, c: float, z: float, y: float) -> tuple[float, float]:
    """2F1(a, b; c; z) for 0 <= z < 1 with y = 1 - z given exactly; (value, log_scale).

    Picks, of F and its Euler transform, the one with c - a - b >= 0 (finite at z = 1). Then:
    the Gauss series for z <= 0.75, or when its terms keep one sign (no cancellation) and it
    converges in a few thousand terms; else the 1 - z connection formula where it converges in
    a few terms and c - a - b is not near an integer; else analytic continuation by Taylor
    steps, which is accurate everywhere (errors ~1e-14) but costs more.
    """
    log_scale = 0.0
    m = c - a - b
    if m < 0.0:  # Euler: F = (1-z)^m F(c-a, c-b; c; z), whose own c-a-b is -m > 0
        log_scale = m * math.log(y)
        a, b = c - a, c - b
        m = -m
    if z <= _Z_DIRECT:
        s, _ = _series(a, b, c, z, _MAX_TERMS)
        return s, log_scale
    frac = abs(m - math.floor(m + 0.5))
    size = max(max(abs(a), abs(b)), max(abs(c - a), abs(c - b)))
    # Terms of one sign from n = 1 on: the series has no cancellation worth the name.
    one_sign = a > -1.0 and b > -1.0 and c > -1.0
    if one_sign and (z <= _Z_SERIES or m >= _M_DIRECT):
        s, converged = _series(a, b, c, z, _MAX_TERMS)
        if converged:
            return s, log_scale
    if frac >= _DEGENERATE and y * size <= _CONNECTION_REACH and m < _M_CONNECTION:
        v, ls = _connection(a, b, c, y)
        return v, log_scale + ls
    return _taylor(a, b, c, z, y, max(size, abs(c))), log_scale


@njit(cache=True, nogil=True)
def _is_nonpos_int(x: float) -> bool:
    return x <= 0.0 and x == math.floor(x)


@njit(cache=True, nogil=True)
def _hyp2f1_parts(a: float, b: float, c: float, z: float, y: float) -> tuple[float, float]:
    """2F1(a, b; c; z) = value * exp(log_scale) for z < 1, with y = 1 - z; NaN if undefined."""
    if _is_nonpos_int(c):
        return math.nan, 0.0
    if z == 0.0 or a == 0.0 or b == 0.0:
        return 1.0, 0.0
    if _is_nonpos_int(a) or _is_nonpos_int(b):  # polynomial
        if z >= -1.0:
            s, _ = _series(a, b, c, z, _MAX_TERMS)
            return s, 0.0
    if z < 0.0:  # Pfaff: F = (1-z)^-a F(a, c-b; c; z/(z-1)), argument in (0, 1)
        w = z / (z - 1.0)
        v, ls = _hyp2f1_unit(a, c - b, c, w, 1.0 / y)
        return v, ls - a * math.log(y)
    return _hyp2f1_unit(a, b, c, z, y)


@njit(cache=True, nogil=True)
def hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """Gauss hypergeometric function 2F1(a, b; c; z) for real parameters and z < 1.

    At z = 1 returns Gauss's sum when c - a - b > 0 (else inf); z > 1 gives NaN.
    """
    if z > 1.0 or math.isnan(z):
        return math.nan
    if z == 1.0:
        m = c - a - b
        if m <= 0.0:
            return math.inf
        lc, sc = _lgamma_sign(c)
        lm, sm = _lgamma_sign(m)
        lca, sca = _lgamma_sign(c - a)
        lcb, scb = _lgamma_sign(c - b)
        return sc * sm * sca * scb * math.exp(lc + lm - lca - lcb)
    v, ls = _hyp2f1_parts(a, b, c, z, 1.0 - z)
    return v * math.exp(ls)


@njit(cache=True, nogil=True)
def p_alive(x: float, t_x: float, T: float, r: float, alpha: float, a: float, b: float) -> float:
    """BG/NBD probability that a customer with history (x, t_x, T) is still alive; 1 if x == 0."""
    if x <= 0.0:
        return 1.0
    # log of a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x)
    log_odds = math.log(a) - math.log(b + x - 1.0) + (r + x) * math.log1p((T - t_x) / (alpha + t_x))
    if log_odds > 0.0:
        e = math.exp(-log_odds)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(log_odds))


@njit(cache=True, nogil=True)
def _bracket(t: float, x: float, T: float, r: float, alpha: float, a: float, b: float) -> float:
    """(a+b+x-1)/(a-1) * (1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)), z = t/(alpha+T+t)."""
    span = alpha + T + t
    z = t / span
    y = (alpha + T) / span
    c = a + b + x - 1.0
    v, ls = _hyp2f1_parts(a + b - 1.0 - r, a - 1.0, c, z, y)
    log_rest = (a - 1.0) * math.log(y) + ls
    if v > 0.0:
        second = -math.expm1(log_rest + math.log(v))
    else:
        second = 1.0 - v * math.exp(log_rest)
    return c / (a - 1.0) * second


@njit(cache=True, nogil=True)
def _purchases_alive(
    t: float, x: float, T: float, r: float, alpha: float, a: float, b: float
) -> float:
    """Expected purchases in (T, T + t] of a customer known to be alive (the bracket)."""
    if t <= 0.0:
        return 0.0
    if abs(a - 1.0) >= _A_ONE:
        return _bracket(t, x, T, r, alpha, a, b)
    # Removable singularity at a = 1: cubic Lagrange interpolation in a through 4 nodes.
    h = _A_ONE
    u = (a - 1.0) / h  # in (-1, 1); nodes at u = -2, -1, 1, 2
    f_m2 = _bracket(t, x, T, r, alpha, 1.0 - 2.0 * h, b)
    f_m1 = _bracket(t, x, T, r, alpha, 1.0 - h, b)
    f_p1 = _bracket(t, x, T, r, alpha, 1.0 + h, b)
    f_p2 = _bracket(t, x, T, r, alpha, 1.0 + 2.0 * h, b)
    l_m2 = (u + 1.0) * (u - 1.0) * (u - 2.0) / ((-1.0) * (-3.0) * (-4.0))
    l_m1 = (u + 2.0) * (u - 1.0) * (u - 2.0) / (1.0 * (-2.0) * (-3.0))
    l_p1 = (u + 2.0) * (u + 1.0) * (u - 2.0) / (3.0 * 2.0 * (-1.0))
    l_p2 = (u + 2.0) * (u + 1.0) * (u - 1.0) / (4.0 * 3.0 * 1.0)
    return l_m2 * f_m2 + l_m1 * f_m1 + l_p1 * f_p1 + l_p2 * f_p2


@njit(cache=True, nogil=True)
def expected_purchases(
    t: float, x: float, t_x: float, T: float, r: float, alpha: float, a: float, b: float
) -> float:
    """BG/NBD conditional expected number of purchases in (T, T + t] given (x, t_x, T)."""
    if t <= 0.0:
        return 0.0
    return _purchases_alive(t, x, T, r, alpha, a, b) * p_alive(x, t_x, T, r, alpha, a, b)


@njit(cache=True, nogil=True)
def unconditional_expected_purchases(t: float, r: float, alpha: float, a: float, b: float) -> float:
    """BG/NBD E[X(t)]: expected repeat purchases in (0, t] of a newly acquired customer."""
    if t <= 0.0:
        return 0.0
    return _purchases_alive(t, 0.0, 0.0, r, alpha, a, b)


@njit(cache=True, nogil=True)
def gg_expected_spend(x: float, mbar: float, p: float, q: float, v: float) -> float:
    """Gamma-Gamma conditional expected average spend per purchase.

    ``p (v + x m) / (p x + q - 1)`` with ``m = max(mbar, 0)``: the prior-weighted mean of the
    model (the prior mean ``p v / (q - 1)`` when x == 0). A non-positive mean repeat spend
    (refunds at least as large as the repeat purchases) counts as 0, so the expectation is
    non-decreasing in mbar everywhere, 0 and below included: ``p v / (p x + q - 1)`` there,
    with no jump to the population mean. NaN when q <= 1 (the population mean is infinite).
    """
    if q <= 1.0:
        return math.nan
    if x <= 0.0:
        return p * v / (q - 1.0)
    return p * (v + x * max(mbar, 0.0)) / (p * x + q - 1.0)


@njit(cache=True, nogil=True)
def clv(
    x: float,
    t_x: float,
    T: float,
    mbar: float,
    r: float,
    alpha: float,
    a: float,
    b: float,
    p: float,
    q: float,
    v: float,
    horizon_units: float,
    step_units: float,
    discount_per_step: float,
) -> float:
    """Discounted customer lifetime value over ``horizon_units`` in steps of ``step_units``.

    ``sum_{k=1..K} spend * (E[N(k s)] - E[N((k-1) s)]) / (1 + d)^k`` with
    K = round(horizon / step), E[N] the BG/NBD conditional expectation and spend the Gamma-Gamma
    expected average spend. lifetimes' ``customer_lifetime_value(time=K, discount_rate=d,
    freq=...)`` is the case step = 30 (days), 4.345 (weeks) or 1 (months).
    """
    if step_units <= 0.0 or horizon_units <= 0.0:
        return 0.0
    steps = math.floor(horizon_units / step_units + 0.5)
    spend = gg_expected_spend(x, mbar, p, q, v)
    alive = p_alive(x, t_x, T, r, alpha, a, b)
    total = 0.0
    prev = 0.0
    disc = 1.0
    for k in range(1, steps + 1):
        cur = _purchases_alive(k * step_units, x, T, r, alpha, a, b)
        disc /= 1.0 + discount_per_step
        total += (cur - prev) * disc
        prev = cur
    return spend * alive * total


@njit(cache=True, nogil=True)
def hyp2f1_array(a: np.ndarray, b: np.ndarray, c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Element-wise :func:`hyp2f1` over four arrays of one length."""
    out = np.empty(z.shape[0])
    for i in range(z.shape[0]):
        out[i] = hyp2f1(a[i], b[i], c[i], z[i])
    return out


@njit(cache=True, nogil=True)
def p_alive_array(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, r: float, alpha: float, a: float, b: float
) -> np.ndarray:
    """:func:`p_alive` for every customer."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = p_alive(x[i], t_x[i], T[i], r, alpha, a, b)
    return out


@njit(cache=True, nogil=True)
def expected_purchases_array(
    t: float,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    r: float,
    alpha: float,
    a: float,
    b: float,
) -> np.ndarray:
    """:func:`expected_purchases` over the horizon t for every customer."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = expected_purchases(t, x[i], t_x[i], T[i], r, alpha, a, b)
    return out


@njit(cache=True, nogil=True)
def unconditional_expected_purchases_array(
    t: np.ndarray, r: float, alpha: float, a: float, b: float
) -> np.ndarray:
    """:func:`unconditional_expected_purchases` for every horizon in t."""
    out = np.empty(t.shape[0])
    for i in range(t.shape[0]):
        out[i] = unconditional_expected_purchases(t[i], r, alpha, a, b)
    return out


@njit(cache=True, nogil=True)
def gg_expected_spend_array(
    x: np.ndarray, mbar: np.ndarray, p: float, q: float, v: float
) -> np.ndarray:
    """:func:`gg_expected_spend` for every customer."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = gg_expected_spend(x[i], mbar[i], p, q, v)
    return out


@njit(cache=True, nogil=True)
def clv_array(
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    mbar: np.ndarray,
    r: float,
    alpha: float,
    a: float,
    b: float,
    p: float,
    q: float,
    v: float,
    horizon_units: float,
    step_units: float,
    discount_per_step: float,
) -> np.ndarray:
    """:func:`clv` for every customer."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = clv(
            x[i],
            t_x[i],
            T[i],
            mbar[i],
            r,
            alpha,
            a,
            b,
            p,
            q,
            v,
            horizon_units,
            step_units,
            discount_per_step,
        )
    return out
