"""BG/NBD and Gamma-Gamma fits against published values, lifetimes and simulated truth."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from fixtures.cdnow import lifetimes_cdnow_summary
from oracles.btyd_sim import simulate_bgnbd, simulate_gamma_gamma

from models.bgnbd import BGNBDFit, bgnbd_loglik, fit_bgnbd
from models.gamma_gamma import GammaGammaFit, fit_gamma_gamma, gamma_gamma_loglik

lifetimes = pytest.importorskip("lifetimes")
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    return lifetimes_cdnow_summary()


def test_bgnbd_fit_reproduces_published_cdnow_values() -> None:
    from lifetimes.datasets import load_cdnow_summary

    df = load_cdnow_summary()  # lifetimes' 4-column CDNOW summary file
    fit = fit_bgnbd(df["frequency"], df["recency"], df["T"])
    assert isinstance(fit, BGNBDFit)
    published = {"r": 0.242593, "alpha": 4.413532, "a": 0.792886, "b": 2.425752}
    for name, value in published.items():
        assert fit.params[name] == pytest.approx(value, abs=1e-4), name
    assert fit.converged
    assert fit.n_customers == 2357
    assert fit.iterations > 0
    assert fit.seconds > 0


def test_gamma_gamma_fit_reproduces_published_cdnow_values(summary: dict) -> None:
    rep = summary["x"] > 0
    assert int(rep.sum()) == 946
    fit = fit_gamma_gamma(summary["x"][rep], summary["m"][rep])
    assert isinstance(fit, GammaGammaFit)
    for name, value in {"p": 6.2488, "q": 3.7446, "v": 15.4477}.items():
        assert fit.params[name] == pytest.approx(value, abs=1e-3), name
    assert fit.converged
    assert fit.n_customers == 946


def test_bgnbd_loglik_equals_lifetimes(summary: dict) -> None:
    from lifetimes import BetaGeoFitter

    x, t_x, big_t = summary["x"], summary["t_x"], summary["T"]
    for params in [(0.242593, 4.413532, 0.792886, 2.425752), (1.3, 0.7, 2.2, 0.4)]:
        ref = -BetaGeoFitter._negative_log_likelihood(
            np.log(params), x, t_x, big_t, np.ones_like(x), 0.0
        ) * x.shape[0]
        assert bgnbd_loglik(*params, x, t_x, big_t) == pytest.approx(ref, rel=1e-12)


def test_gamma_gamma_loglik_equals_lifetimes(summary: dict) -> None:
    from lifetimes import GammaGammaFitter

    rep = summary["x"] > 0
    x, m = summary["x"][rep], summary["m"][rep]
    for params in [(6.2488, 3.7446, 15.4477), (0.5, 9.0, 2.0)]:
        ref = -GammaGammaFitter._negative_log_likelihood(
            np.log(params), x, m, np.ones_like(x), 0.0
        ) * x.shape[0]
        assert gamma_gamma_loglik(*params, x, m) == pytest.approx(ref, rel=1e-12)


def test_bgnbd_weighted_fit_matches_lifetimes(summary: dict) -> None:
    """Fader & Hardie's weights: one row per (x, t_x, T) pattern with its customer count."""
    import pandas as pd
    from lifetimes import BetaGeoFitter

    df = pd.DataFrame({"x": summary["x"], "t_x": summary["t_x"], "T": summary["T"]})
    patterns = df.groupby(["x", "t_x", "T"]).size().reset_index(name="w")
    assert len(patterns) < len(df)
    ref = BetaGeoFitter().fit(patterns["x"], patterns["t_x"], patterns["T"],
                              weights=patterns["w"]).params_
    fit = fit_bgnbd(patterns["x"], patterns["t_x"], patterns["T"], weights=patterns["w"])
    assert fit.n_customers == len(df)
    for name in ("r", "alpha", "a", "b"):
        assert fit.params[name] == pytest.approx(float(ref[name]), rel=1e-4), name


def test_bgnbd_penalizer_matches_lifetimes(summary: dict) -> None:
    from lifetimes import BetaGeoFitter

    x, t_x, big_t = summary["x"], summary["t_x"], summary["T"]
    # lifetimes fits on time scaled to max(T) = 1, so its penalty acts on alpha / max(T).
    # With weeks rescaled to max(T) = 1 up front both penalise the same parameter vector.
    scale = big_t.max()
    ref = BetaGeoFitter(penalizer_coef=0.01).fit(x, t_x / scale, big_t / scale).params_
    fit = fit_bgnbd(x, t_x / scale, big_t / scale, penalizer=0.01)
    for name in ("r", "alpha", "a", "b"):
        assert fit.params[name] == pytest.approx(float(ref[name]), rel=1e-4), name


@pytest.mark.parametrize("seed", [11, 12])
def test_bgnbd_recovers_simulated_parameters(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = {"r": 0.5, "alpha": 6.0, "a": 0.7, "b": 3.0}
    n = 20_000
    sim = simulate_bgnbd(n, *true.values(), rng.uniform(20.0, 80.0, n), rng)
    fit = fit_bgnbd(sim.frequency, sim.recency, sim.T)
    assert fit.converged
    # With 20k customers the sampling sd is ~3% (r, alpha) and ~10% (a, b).
    for name, rel in {"r": 0.08, "alpha": 0.08, "a": 0.25, "b": 0.3}.items():
        assert fit.params[name] == pytest.approx(true[name], rel=rel), name


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(1, 12, 20_000).astype(np.float64)
    m = simulate_gamma_gamma(x, 4.0, 3.0, 20.0, rng)
    fit = fit_gamma_gamma(x, m)
    assert fit.converged
    # p is learnt from within-customer spread, which averages hide: sd ~5% at this size.
    for name, (value, rel) in {"p": (4.0, 0.15), "q": (3.0, 0.08), "v": (20.0, 0.15)}.items():
        assert fit.params[name] == pytest.approx(value, rel=rel), name
    from lifetimes import GammaGammaFitter

    ref = GammaGammaFitter().fit(x, m).params_
    for name in ("p", "q", "v"):
        assert fit.params[name] == pytest.approx(float(ref[name]), rel=1e-4), name


def test_simulator_matches_model_expectation() -> None:
    """Mean simulated frequency equals BG/NBD E[X(T)] computed by lifetimes (independent)."""
    import pandas as pd
    from lifetimes import BetaGeoFitter

    rng = np.random.default_rng(3)
    sim = simulate_bgnbd(200_000, 0.5, 6.0, 0.7, 3.0, 30.0, rng)
    model = BetaGeoFitter()
    model.params_ = pd.Series({"r": 0.5, "alpha": 6.0, "a": 0.7, "b": 3.0})
    expected = float(model.expected_number_of_purchases_up_to_time(30.0))
    sem = sim.frequency.std() / np.sqrt(sim.frequency.shape[0])
    assert abs(sim.frequency.mean() - expected) < 4 * sem


@pytest.mark.parametrize(
    ("x", "t_x", "big_t", "match"),
    [
        ([0, 0, 0], [0, 0, 0], [5, 6, 7], "no repeat buyers"),
        ([1, -1], [1, 0], [2, 2], "non-negative"),
        ([1, 2], [3, 1], [2, 2], "recency > T"),
        ([1, 2], [-1, 1], [2, 2], "must not be negative"),
        ([1.5, 2], [1, 1], [2, 2], "whole number"),
        ([0, 2], [1, 1], [2, 2], "recency must be 0"),
        ([], [], [], "no customers"),
        ([1, np.nan], [1, 1], [2, 2], "NaN"),
    ],
)
def test_bgnbd_rejects_degenerate_input(x: list, t_x: list, big_t: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_bgnbd(x, t_x, big_t)


@pytest.mark.parametrize(
    ("x", "m", "match"),
    [
        ([], [], "no repeat buyers"),
        ([0, 1], [1.0, 2.0], "frequency must be > 0"),
        ([1, 2], [0.0, 2.0], "monetary_value must be > 0"),
        ([1, 2], [5.0, 5.0], "the same"),
        ([1, 2], [5.0], "expected 2"),
    ],
)
def test_gamma_gamma_rejects_degenerate_input(x: list, m: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_gamma_gamma(x, m)


def test_fit_results_are_frozen(summary: dict) -> None:
    fit = fit_bgnbd(summary["x"], summary["t_x"], summary["T"])
    with pytest.raises(AttributeError):
        fit.r = 1.0  # type: ignore[misc]
