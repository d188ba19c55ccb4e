"""Every field of ``evaluate()`` against independent oracles.

- the plain-Python reference of docs/scoring.md (``oracles.fold_reference.reference``) for the
  window features, RFM, classes, lifecycle, complaint terms, rhythm, ETA and due time;
- lifetimes (``BetaGeoFitter`` / ``GammaGammaFitter`` with fixed parameters) for P(alive),
  expected purchases, Gamma-Gamma expected spend and CLV (built from lifetimes' conditional
  expectations as docs/scoring.md §3.9 defines it).

Covered for the 12-, 6- and 3-month windows, and for models in weeks and in days.
lifetimes is a dev dependency: a missing lifetimes is an error here, not a skip.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import lifetimes
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles.fold_reference import C_KIND, P_KIND, Ev, reference

from engine.batch_scoring import fold_events
from engine.scoring import SCORES_DTYPE, PopulationCuts, evaluate
from engine.scoring_params import DAY, ScoringParams, default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from tests.engine.test_fold import T0, event_lists, to_array

warnings.filterwarnings("ignore", category=FutureWarning)

BASE = default_scoring_params()
# The built-in model is in weeks; the same customers in days (the CDNOW fit's shape, scaled).
IN_DAYS = BASE._replace(unit_seconds=float(DAY), alpha=BASE.alpha * 7.0)
MODELS = {
    f"{unit}-{w}m": params._replace(window_months=w)
    for unit, params in (("weeks", BASE), ("days", IN_DAYS))
    for w in (12, 6, 3)
}

EXACT = (
    "frequency",
    "window_frequency",
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
    "value_tier",
    "abcd_class",
    "quadrant",
    "lifecycle",
    "effective",
    "overdue",
    "next_purchase_eta",
    "due",
    "spend_drop",
    "nudge_at",
)
CLOSE = (
    "net_spend",
    "recency",
    "T",
    "monetary_value",
    "days_since_last_purchase",
    "window_monetary",
    "window_avg_spend",
    "freq_per_year",
    "usual_gap_days",
    "unresolved_level",
)
ROUNDED = ("complaint_level", "risk_adjustment", "churn_risk")  # fixed-point complaint score
LIFETIMES = ("p_alive", "expected_purchases_90d", "expected_avg_spend", "clv")


def test_every_field_is_checked() -> None:
    assert set(EXACT + CLOSE + ROUNDED + LIFETIMES) == set(SCORES_DTYPE.names)


def _fitters(P: ScoringParams) -> tuple[Any, Any]:
    bgf = lifetimes.BetaGeoFitter()
    bgf.params_ = pd.Series({"r": P.r, "alpha": P.alpha, "a": P.a, "b": P.b})
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # as fit() does
    ggf = lifetimes.GammaGammaFitter()
    ggf.params_ = pd.Series({"p": P.p, "q": P.q, "v": P.v})
    return bgf, ggf


FITTERS = {name: _fitters(P) for name, P in MODELS.items()}


def lifetimes_btyd(
    P: ScoringParams, bgf: Any, ggf: Any, x: float, t_x: float, big_t: float, mbar: float
) -> dict[str, float]:
    """P(alive), expected purchases in 90 days, Gamma-Gamma spend and CLV from lifetimes."""
    unit_days = P.unit_seconds / DAY

    def expected(t: float) -> float:
        if t == 0.0:
            return 0.0
        value = bgf.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, big_t)
        return float(np.asarray(value).reshape(-1)[0])

    spend = float(np.asarray(ggf.conditional_expected_average_profit(x, mbar)).reshape(-1)[0])
    step = 365.25 / 12.0 / unit_days  # one month in the model unit
    steps = math.floor(P.clv_horizon_days / unit_days / step + 0.5)
    monthly = (1.0 + P.clv_annual_discount) ** (1.0 / 12.0) - 1.0
    clv = sum(
        spend * (expected(k * step) - expected((k - 1) * step)) / (1.0 + monthly) ** k
        for k in range(1, steps + 1)
    )
    alive = float(np.asarray(bgf.conditional_probability_alive(x, t_x, big_t)).reshape(-1)[0])
    return {
        "p_alive": alive,
        "expected_purchases_90d": expected(90.0 / unit_days),
        "expected_avg_spend": spend,
        "clv": clv,
    }


def check_every_field(evs: list[Ev], clock: int, model: str, cuts: PopulationCuts) -> None:
    P = MODELS[model]
    states = fold_events(1, to_array(evs), P)
    got = evaluate(states, clock, P, cuts, DEFAULT_RFM_MAP)[0]
    want = reference(evs, clock, P, cuts, DEFAULT_RFM_MAP)
    buyer = want["frequency"] > 0 or any(e.kind == P_KIND and e.cents > 0 for e in evs)
    for name in EXACT:
        assert int(got[name]) == int(want[name]), (name, int(got[name]), want[name])
    for name in CLOSE:
        if name == "days_since_last_purchase" and not buyer:
            assert math.isnan(got[name])
            continue
        assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name
    # the engine keeps complaint severity in fixed point (1/1000 per fold step)
    slack = 1e-3 * (sum(e.kind == C_KIND for e in evs) + 1)
    assert got["complaint_level"] == pytest.approx(want["complaint_level"], abs=slack)
    assert got["risk_adjustment"] == pytest.approx(
        want["risk_adjustment"], abs=slack * P.complaint_weight + 1e-12
    )
    if not buyer:
        for name in ("churn_risk", *LIFETIMES):
            assert math.isnan(got[name]), name
        return
    assert got["churn_risk"] == pytest.approx(
        want["churn_risk"], abs=slack * P.complaint_weight + 1e-12
    )
    bgf, ggf = FITTERS[model]
    ref = lifetimes_btyd(
        P, bgf, ggf, want["frequency"], want["recency"], want["T"], want["monetary_value"]
    )
    for name in LIFETIMES:
        assert got[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name
    assert got["p_alive"] == pytest.approx(want["p_alive"], rel=1e-12), "plain closed form"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(evs=event_lists, extra=st.integers(0, 900 * DAY))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_field_matches_the_oracles(model: str, evs: list[Ev], extra: int) -> None:
    clock = max([e.ts for e in evs], default=T0) + extra
    check_every_field(evs, clock, model, PopulationCuts.from_params(MODELS[model]))


def test_same_day_lines_are_one_occasion_and_zero_is_not_a_purchase() -> None:
    P = MODELS["weeks-12m"]
    evs = [
        Ev(P_KIND, T0 + 3600, 1000),
        Ev(P_KIND, T0 + 3600, 2000),  # same second
        Ev(P_KIND, T0 + 7200, 0),  # zero amount: nothing
        Ev(P_KIND, T0 + 10 * DAY, 500),
        Ev(P_KIND, T0 + 10 * DAY + 50, 700),  # same day
        Ev(P_KIND, T0 + 30 * DAY, 0),  # zero amount on a new day: not an occasion
    ]
    sc = evaluate(
        fold_events(1, to_array(evs), P),
        T0 + 20 * DAY,
        P,
        PopulationCuts.from_params(P),
        DEFAULT_RFM_MAP,
    )[0]
    assert int(sc["frequency"]) == 1
    assert sc["recency"] == pytest.approx(10 / 7, rel=1e-15)
    assert sc["T"] == pytest.approx(20 / 7, rel=1e-15)
    assert sc["monetary_value"] == pytest.approx(12.0)  # the repeat day's 5 + 7
    assert sc["usual_gap_days"] == pytest.approx(10.0)
    assert int(sc["window_frequency"]) == 2
    assert not sc["overdue"]
    check_every_field(evs, T0 + 20 * DAY, "weeks-12m", PopulationCuts.from_params(P))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_fixed_histories(model: str) -> None:
    """A few hand-picked customers through every window and unit (no hypothesis luck)."""
    cuts = PopulationCuts.from_params(MODELS[model])
    histories = [
        [Ev(P_KIND, T0, 5000)],
        [Ev(P_KIND, T0, 5000), Ev(P_KIND, T0 + 20 * DAY, 3000), Ev(P_KIND, T0 + 41 * DAY, 100)],
        [Ev(P_KIND, T0, 5000), Ev(P_KIND, T0 + 5 * DAY, 1000), Ev(P_KIND, T0 + 6 * DAY, -9000)],
        [
            Ev(P_KIND, T0, 5000),
            Ev(P_KIND, T0 + 2 * DAY, 5000),
            Ev(C_KIND, T0 + 3 * DAY, 0, 5, 0, 7),
            Ev(C_KIND, T0 + 4 * DAY, 0, 1, 1, 9, 0),  # filed resolved: cancels nothing
            Ev(C_KIND, T0 + 5 * DAY, 0, 2, 0, 8),
            Ev(C_KIND, T0 + 9 * DAY, 0, 1, 1, 8, 1),  # resolves complaint 8 only
        ],
        [Ev(2, T0), Ev(P_KIND, T0 + 5, -100)],  # a prospect with a refund
    ]
    for evs in histories:
        for days in (0, 1, 13, 45, 200, 400, 800):
            check_every_field(evs, max(e.ts for e in evs) + days * DAY + 3600, model, cuts)


# --- Gamma-Gamma and CLV are monotone in net repeat spend, at and below zero ---------------------


@settings(max_examples=200, deadline=None)
@given(
    repeat_days=st.integers(1, 8),
    spends=st.lists(st.integers(-200_000, 200_000), min_size=2, max_size=6),
    age_days=st.integers(0, 400),
)
def test_expected_spend_and_clv_are_monotone_in_net_repeat_spend(
    repeat_days: int, spends: list[int], age_days: int
) -> None:
    """Same purchase days, different net repeat spend (repeat purchases minus refunds):
    expected spend and CLV never fall as net repeat spend rises, including below zero."""
    P = BASE
    cuts = PopulationCuts.from_params(P)
    rows = []
    for net in sorted(spends):
        evs = [Ev(P_KIND, T0, 5000)]
        evs += [Ev(P_KIND, T0 + (k + 1) * 7 * DAY, 1000) for k in range(repeat_days)]
        delta = net - 1000 * repeat_days
        if delta > 0:
            evs.append(Ev(P_KIND, T0 + repeat_days * 7 * DAY + 60, delta))  # same day
        elif delta < 0:
            evs.append(Ev(P_KIND, T0 + repeat_days * 7 * DAY + 60, delta))  # a refund
        rows.append(evs)
    clock = T0 + (repeat_days * 7 + age_days) * DAY
    scores = [
        evaluate(fold_events(1, to_array(evs), P), clock, P, cuts, DEFAULT_RFM_MAP)[0]
        for evs in rows
    ]
    spend = [float(s["expected_avg_spend"]) for s in scores]
    clv = [float(s["clv"]) for s in scores]
    assert all(b >= a for a, b in itertools.pairwise(spend)), spend
    assert all(b >= a for a, b in itertools.pairwise(clv)), clv
    prior = P.p * P.v / (P.p * repeat_days + P.q - 1.0)
    for s, net in zip(scores, sorted(spends), strict=True):
        if net <= 0:  # no jump to the population mean: the model's prior-weighted value
            assert s["expected_avg_spend"] == pytest.approx(prior, rel=1e-14)
