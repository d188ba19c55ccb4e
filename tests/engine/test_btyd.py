"""engine.btyd against independent oracles: scipy, closed forms, lifetimes, published values."""

from __future__ import annotations

import itertools
import subprocess
import sys
import warnings
from typing import Any

import lifetimes  # a dev dependency: missing lifetimes fails these tests, it does not skip them
import numpy as np
import pytest
import scipy.special as sp
from fixtures.cdnow import lifetimes_cdnow_summary
from hypothesis import given
from hypothesis import strategies as st

from engine.btyd import (
    clv,
    clv_array,
    expected_purchases,
    expected_purchases_array,
    gg_expected_spend,
    gg_expected_spend_array,
    hyp2f1,
    hyp2f1_array,
    p_alive,
    p_alive_array,
    unconditional_expected_purchases,
    unconditional_expected_purchases_array,
)

assert lifetimes.__version__ == "0.11.3"  # the version the published values below were checked with
warnings.filterwarnings("ignore", category=FutureWarning)

# Published fits: lifetimes 0.11.3 on the CDNOW 1/10th sample, weeks (BG/NBD as in
# Fader, Hardie & Lee 2005; Gamma-Gamma as in lifetimes' documentation; docs/scoring.md).
R, ALPHA, A, B = 0.242593, 4.413532, 0.792886, 2.425752
P, Q, V = 6.2488, 3.7446, 15.4477


@pytest.fixture(scope="module")
def cdnow() -> dict[str, Any]:
    return lifetimes_cdnow_summary()


@pytest.fixture(scope="module")
def bgf() -> object:
    from lifetimes import BetaGeoFitter

    model = BetaGeoFitter()
    model.params_ = __import__("pandas").Series({"r": R, "alpha": ALPHA, "a": A, "b": B})
    model.predict = model.conditional_expected_number_of_purchases_up_to_time  # as fit() does
    return model


@pytest.fixture(scope="module")
def ggf() -> object:
    from lifetimes import GammaGammaFitter

    model = GammaGammaFitter()
    model.params_ = __import__("pandas").Series({"p": P, "q": Q, "v": V})
    return model


# --- hyp2f1 -------------------------------------------------------------------------------------


def _bgnbd_grid(seed: int, n: int, z_lo: float, z_hi: float) -> tuple[np.ndarray, ...]:
    """2F1 arguments as BG/NBD's expectation uses them: (r+x, b+x; a+b+x-1; t/(alpha+T+t))."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.05, 3.0, n)
    a = rng.uniform(0.2, 4.0, n)
    b = 10 ** rng.uniform(-0.3, 2.0, n)
    x = rng.choice([0, 1, 2, 3, 5, 8, 13, 30, 100], n).astype(np.float64)
    z = rng.uniform(z_lo, z_hi, n)
    return r + x, b + x, a + b + x - 1.0, z


def test_hyp2f1_matches_scipy_on_bgnbd_range() -> None:
    args = _bgnbd_grid(2024, 3000, 0.0, 0.95)
    np.testing.assert_allclose(hyp2f1_array(*args), sp.hyp2f1(*args), rtol=1e-12, atol=0)


def test_hyp2f1_matches_scipy_near_one() -> None:
    # scipy itself is good to ~4e-12 here (checked against 40-digit mpmath while writing this).
    args = _bgnbd_grid(7, 2000, 0.95, 0.999)
    np.testing.assert_allclose(hyp2f1_array(*args), sp.hyp2f1(*args), rtol=1e-11, atol=0)


def test_hyp2f1_matches_scipy_generic_grid_including_negative_z() -> None:
    rows = [
        (a, b, c, z)
        for a in (-2.5, 0.3, 1.0, 2.7, 6.0)
        for b in (-1.5, 0.5, 3.3, 8.0)
        for c in (0.7, 1.5, 4.2, 12.0)
        for z in (-50.0, -5.0, -1.5, -0.9, -0.3, -0.01, 0.2, 0.5, 0.7, 0.9)
    ]
    arr = np.array(rows)
    ref = sp.hyp2f1(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
    keep = np.abs(ref) > 1e-8  # relative error is meaningless at a zero of F
    mine = hyp2f1_array(*(np.ascontiguousarray(arr[:, i]) for i in range(4)))
    np.testing.assert_allclose(mine[keep], ref[keep], rtol=1e-11, atol=0)


@pytest.mark.parametrize(
    ("abc", "closed_form"),
    [
        # c - a - b = 0: the logarithmic (degenerate) case of the 1 - z connection formula
        ((1.0, 1.0, 2.0), lambda z, y: -np.log(y) / z),
        # c - a - b = 1
        ((1.0, 1.0, 3.0), lambda z, y: 2.0 * (y * np.log(y) + z) / z**2),
        # c - a - b = -3: (1 - z)^-3
        ((2.5, 3.0, 2.5), lambda z, y: y**-3.0),
        # arcsin(sqrt z) / sqrt z, c - a - b = 1/2
        ((0.5, 0.5, 1.5), lambda z, y: np.arctan2(np.sqrt(z), np.sqrt(y)) / np.sqrt(z)),
    ],
)
def test_hyp2f1_closed_forms_up_to_z_near_one(abc: tuple[float, float, float],
                                             closed_form: object) -> None:
    ys = 2.0 ** -np.arange(1, 45)  # z = 1 - 2^-k, exact in binary, so 1 - z is exact too
    zs = np.concatenate([np.linspace(0.1, 0.5, 5), 1.0 - ys])
    for z in zs:
        expected = closed_form(z, 1.0 - z)  # type: ignore[operator]
        assert hyp2f1(*abc, z) == pytest.approx(expected, rel=1e-13), z


@pytest.mark.parametrize(
    ("a", "b", "c", "z", "expected"),
    [
        # 40-digit mpmath 1.4.1 values: large parameters (BG/NBD with b in the hundreds or
        # thousands) close to z = 1, and integer / near-integer c - a - b, where scipy's
        # hyp2f1 loses digits (off by 25% at the fifth row, 1e-9 at the last).
        (19999.5, -0.2, 20000.3, 1.0 - 9.5367431640625e-07, 0.120684011683386035),
        (156.29, -0.94, 156.33, 1.0 - 1.52587890625e-05, 0.000386694644675547282),
        (499.5, -0.2, 499.8, 1.0 - 0.0009765625, 0.2691260017045937),
        (2.0, -0.2, 2.22, 1.0 - 9.094947017729282e-13, 0.450039671782511899),
        (3.0, 2.4, 5.4, 1.0 - 0.0009765625, 76.1133036437976681),
        (6.0, 105.0, 108.0, 0.95, 9262326.31073418255),
    ],
)
def test_hyp2f1_high_precision_reference_values(a: float, b: float, c: float, z: float,
                                                expected: float) -> None:
    assert hyp2f1(a, b, c, z) == pytest.approx(expected, rel=1e-12)


def test_hyp2f1_closed_forms_negative_z() -> None:
    for z in -(10.0 ** np.linspace(-1, 8, 40)):
        s = np.sqrt(-z)
        assert hyp2f1(0.5, 1.0, 1.5, z) == pytest.approx(np.arctan(s) / s, rel=1e-13)
        assert hyp2f1(1.0, 1.0, 2.0, z) == pytest.approx(-np.log1p(-z) / z, rel=1e-13)


def test_hyp2f1_special_values() -> None:
    assert hyp2f1(1.3, 2.1, 3.7, 0.0) == 1.0
    assert hyp2f1(0.0, 2.1, 3.7, 0.9) == 1.0
    # a = -2: the polynomial 1 + 2 (-2)(b)/c z ... exactly
    b, c, z = 1.5, 2.5, -3.0
    poly = 1 + (-2) * b / c * z + (-2) * (-1) * b * (b + 1) / (c * (c + 1) * 2) * z**2
    assert hyp2f1(-2.0, b, c, z) == pytest.approx(poly, rel=1e-14)
    # Gauss's sum at z = 1
    gauss = sp.gamma(3.7) * sp.gamma(3.7 - 1.3 - 2.1) / (sp.gamma(3.7 - 1.3) * sp.gamma(3.7 - 2.1))
    assert hyp2f1(1.3, 2.1, 3.7, 1.0) == pytest.approx(gauss, rel=1e-13)
    assert np.isnan(hyp2f1(1.0, 1.0, 2.0, 1.5))


# --- BG/NBD against lifetimes, every CDNOW customer ---------------------------------------------


def test_p_alive_matches_lifetimes_every_customer(cdnow: dict, bgf: object) -> None:
    ref = bgf.conditional_probability_alive(cdnow["x"], cdnow["t_x"], cdnow["T"])  # type: ignore[attr-defined]
    mine = p_alive_array(cdnow["x"], cdnow["t_x"], cdnow["T"], R, ALPHA, A, B)
    np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=0)
    assert np.all(mine[cdnow["x"] == 0] == 1.0)


@pytest.mark.parametrize("t", [39.0, 90.0 / 7.0, 1.0, 52.0, 520.0])
def test_expected_purchases_matches_lifetimes_every_customer(cdnow: dict, bgf: object,
                                                             t: float) -> None:
    ref = bgf.conditional_expected_number_of_purchases_up_to_time(  # type: ignore[attr-defined]
        t, cdnow["x"], cdnow["t_x"], cdnow["T"]
    )
    mine = expected_purchases_array(t, cdnow["x"], cdnow["t_x"], cdnow["T"], R, ALPHA, A, B)
    np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=0)


def test_unconditional_expected_purchases_matches_lifetimes(bgf: object) -> None:
    ts = np.array([0.1, 1.0, 10.0, 39.0, 78.0, 500.0, 1e4])
    ref = bgf.expected_number_of_purchases_up_to_time(ts)  # type: ignore[attr-defined]
    np.testing.assert_allclose(
        unconditional_expected_purchases_array(ts, R, ALPHA, A, B), ref, rtol=1e-9, atol=0
    )
    assert unconditional_expected_purchases(0.0, R, ALPHA, A, B) == 0.0


def test_domain_spot_values(cdnow: dict) -> None:
    assert p_alive(2, 30.43, 38.86, R, ALPHA, A, B) == pytest.approx(0.726609, abs=5e-7)
    assert expected_purchases(39, 2, 30.43, 38.86, R, ALPHA, A, B) == pytest.approx(
        1.2259, abs=5e-5
    )
    # The spend values were computed with lifetimes' unrounded Gamma-Gamma fit (p, q, v above
    # are rounded to 1e-4, which moves the fourth decimal): refit it here as the oracle does.
    from lifetimes import GammaGammaFitter

    rep = cdnow["x"] > 0
    gg = GammaGammaFitter().fit(cdnow["x"][rep], cdnow["m"][rep])
    p, q, v = (float(gg.params_[k]) for k in ("p", "q", "v"))
    assert gg_expected_spend(2, 22.35, p, q, v) == pytest.approx(24.6586, abs=5e-5)
    assert gg_expected_spend(1, 11.77, p, q, v) == pytest.approx(18.9115, abs=5e-5)
    assert gg_expected_spend(7, 73.74, p, q, v) == pytest.approx(71.4629, abs=5e-5)
    assert gg_expected_spend(0, 0.0, p, q, v) == pytest.approx(35.1710, abs=5e-5)


def test_expected_purchases_large_frequency_does_not_overflow() -> None:
    # x = 2000 makes 2F1(r+x, b+x; a+b+x-1; z) ~ 1e600; the Euler form keeps it finite.
    from lifetimes import BetaGeoFitter

    model = BetaGeoFitter()
    model.params_ = __import__("pandas").Series({"r": R, "alpha": ALPHA, "a": A, "b": B})
    x, t_x, big_t = 2000.0, 300.0, 310.0
    mine = expected_purchases(39.0, x, t_x, big_t, R, ALPHA, A, B)
    ref = float(model.conditional_expected_number_of_purchases_up_to_time(39.0, x, t_x, big_t))
    assert np.isfinite(mine)
    assert mine == pytest.approx(ref, rel=1e-9)


def test_expected_purchases_continuous_through_a_equal_one() -> None:
    """At a = 1 the closed form is 0/0; compare with lifetimes on both sides (mean of a = 1 +- h
    is within O(h^2) of the value at 1)."""
    from lifetimes import BetaGeoFitter

    pd = __import__("pandas")
    h = 1e-4
    vals = []
    for a in (1.0 - h, 1.0 + h):
        model = BetaGeoFitter()
        model.params_ = pd.Series({"r": R, "alpha": ALPHA, "a": a, "b": B})
        vals.append(float(model.conditional_expected_number_of_purchases_up_to_time(
            39.0, 3.0, 20.0, 40.0)))
    assert expected_purchases(39.0, 3.0, 20.0, 40.0, R, ALPHA, 1.0, B) == pytest.approx(
        sum(vals) / 2, rel=1e-7
    )
    for a in (1.0 - 5e-4, 1.0 + 2.5e-3):  # inside and outside the interpolation window
        model = BetaGeoFitter()
        model.params_ = pd.Series({"r": R, "alpha": ALPHA, "a": a, "b": B})
        ref = float(model.conditional_expected_number_of_purchases_up_to_time(39.0, 3.0, 20.0,
                                                                              40.0))
        assert expected_purchases(39.0, 3.0, 20.0, 40.0, R, ALPHA, a, B) == pytest.approx(
            ref, rel=1e-9
        )


# --- Gamma-Gamma and CLV --------------------------------------------------------------------------


def test_gg_expected_spend_matches_lifetimes_every_customer(cdnow: dict, ggf: object) -> None:
    ref = ggf.conditional_expected_average_profit(cdnow["x"], cdnow["m"])  # type: ignore[attr-defined]
    mine = gg_expected_spend_array(cdnow["x"], cdnow["m"], P, Q, V)
    np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=0)


def test_gg_prior_weighted_at_and_below_zero_spend(ggf: object) -> None:
    """x >= 1 with no net repeat spend: the model's prior-weighted p v / (p x + q - 1), as
    lifetimes gives for m = 0 (not the population mean p v / (q - 1))."""
    for x in (1, 3, 10):
        ref = float(ggf.conditional_expected_average_profit(x, 0.0))  # type: ignore[attr-defined]
        assert gg_expected_spend(x, 0.0, P, Q, V) == pytest.approx(ref, rel=1e-14)
        assert gg_expected_spend(x, 0.0, P, Q, V) == pytest.approx(P * V / (P * x + Q - 1))
        assert gg_expected_spend(x, -5.0, P, Q, V) == gg_expected_spend(x, 0.0, P, Q, V)
    assert gg_expected_spend(0, 0.0, P, Q, V) == pytest.approx(P * V / (Q - 1), rel=1e-15)
    assert np.isnan(gg_expected_spend(3, 10.0, P, 0.9, V))


@given(
    x=st.integers(0, 200),
    m=st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=2, max_size=8),
)
def test_gg_and_clv_monotone_in_mean_repeat_spend(x: int, m: list[float]) -> None:
    ms = sorted(m)
    spend = [gg_expected_spend(x, v, P, Q, V) for v in ms]
    value = [clv(x, 20.0, 40.0, v, R, ALPHA, A, B, P, Q, V, 52.0, 4.345, 0.01) for v in ms]
    assert all(b >= a for a, b in itertools.pairwise(spend))
    assert all(b >= a for a, b in itertools.pairwise(value))


@pytest.mark.parametrize(("freq", "step"), [("W", 4.345), ("D", 30.0)])
def test_clv_matches_lifetimes_every_customer(cdnow: dict, bgf: object, ggf: object, freq: str,
                                              step: float) -> None:
    df = cdnow["df"]
    ref = ggf.customer_lifetime_value(  # type: ignore[attr-defined]
        bgf, df["frequency"], df["recency"], df["T"], df["monetary_value"],
        time=12, discount_rate=0.01, freq=freq,
    ).to_numpy()
    mine = clv_array(cdnow["x"], cdnow["t_x"], cdnow["T"], cdnow["m"], R, ALPHA, A, B, P, Q, V,
                     12 * step, step, 0.01)
    np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=0)
    assert clv(2, 30.43, 38.86, 22.35, R, ALPHA, A, B, P, Q, V, 12 * step, step, 0.01) == (
        pytest.approx(mine[0], rel=1e-15)
    )


def test_engine_btyd_imports_only_numpy_numba_stdlib() -> None:
    import ast
    from pathlib import Path

    import engine.btyd

    tree = ast.parse(Path(engine.btyd.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots - {"numpy", "numba"} <= set(sys.stdlib_module_names) | {"__future__"}
    code = (
        "import sys, engine.btyd; "
        "bad = [m for m in ('pandas', 'lifetimes', 'models', 'streams', 'faust', 'redis') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
