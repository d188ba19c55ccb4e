"""Alert detection: win-back reasons, once-only flags, cool-down, segment changes, hysteresis."""

from __future__ import annotations

import numpy as np
from oracles.fold_reference import C_KIND, P_KIND, Ev

from engine.alert_rules import (
    KIND_SEGMENT_CHANGE,
    KIND_WIN_BACK,
    REASON_COMPLAINT,
    REASON_RISK_RISE,
    REASON_SILENCE,
    SCHEME_LIFECYCLE,
    SCHEME_TIER,
)
from engine.scoring import PopulationCuts, evaluate
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP, LIFECYCLE_NAMES
from engine.state import new_states
from engine.timeline import customer_slices, order_events, run_timeline
from tests.engine.test_fold import T0, to_array

P = default_scoring_params()
CUTS = PopulationCuts.from_params(P)
DAY = 86400
ROW = np.array([0], dtype=np.int32)


class Customer:
    """One customer driven through the worker's path (engine.timeline): each event evaluated
    at its own time, due times in between, then due times up to ``clock``."""

    def __init__(self, params=P, cuts=CUTS) -> None:
        self.states = new_states(1)
        self.params = params
        self.cuts = cuts
        self.n = 0

    def step(self, clock: int, *events: Ev) -> list[tuple]:
        arr = to_array(list(events))
        ids = np.array([f"e{self.n + i:06d}" for i in range(len(events))])
        self.n += len(events)
        arr = arr[order_events(arr["row"], arr["ts"], arr["kind"], ids)]
        line = run_timeline(
            self.states,
            arr,
            customer_slices(arr["row"], ROW),
            ROW,
            clock,
            self.params,
            self.cuts,
            DEFAULT_RFM_MAP,
        )
        self.scores = evaluate(self.states, clock, self.params, self.cuts, DEFAULT_RFM_MAP, ROW)
        return [
            tuple(
                int(a[f])
                for f in ("kind", "scheme", "reason", "from_code", "to_code", "suppressed")
            )
            for a in line.alerts
        ]


def winbacks(alerts: list[tuple]) -> list[tuple[int, int]]:
    return [(a[2], a[5]) for a in alerts if a[0] == KIND_WIN_BACK]


def test_silence_fires_once_when_overdue_and_rearms_on_purchase() -> None:
    c = Customer()
    assert c.step(T0, Ev(P_KIND, T0, 5000)) == []
    c.step(T0 + 10 * DAY, Ev(P_KIND, T0 + 10 * DAY, 5000))  # usual gap 10 days
    assert winbacks(c.step(T0 + 30 * DAY)) == []  # silent exactly 2 x gap: not yet overdue
    assert winbacks(c.step(T0 + 31 * DAY)) == [(REASON_SILENCE, 0)]
    assert winbacks(c.step(T0 + 40 * DAY)) == []  # once per last purchase
    c.step(T0 + 50 * DAY, Ev(P_KIND, T0 + 50 * DAY, 5000))
    # new gap: (50 days) / 2 = 25 days, overdue after 50 days of silence
    assert winbacks(c.step(T0 + 100 * DAY)) == []
    assert winbacks(c.step(T0 + 101 * DAY)) == [(REASON_SILENCE, 0)]


def test_one_time_buyer_gets_silence_from_population_rhythm_not_p_alive() -> None:
    c = Customer()
    c.step(T0, Ev(P_KIND, T0, 5000))
    limit = int(P.at_risk_ratio * P.mean_gap_days)
    for day in range(1, limit + 1):
        alerts = c.step(T0 + day * DAY)
        assert c.scores["p_alive"][0] == 1.0
        assert winbacks(alerts) == [], day
    assert winbacks(c.step(T0 + (limit + 1) * DAY)) == [(REASON_SILENCE, 0)]


def test_complaint_winback_for_buyers_only_and_cooldown() -> None:
    prospect = Customer()
    assert winbacks(prospect.step(T0, Ev(C_KIND, T0, 0, 5, 0))) == []
    c = Customer()
    c.step(T0, Ev(P_KIND, T0, 5000), Ev(P_KIND, T0 + 30 * DAY, 5000))
    # a mild complaint (below the alert severity) that keeps risk under the threshold
    assert winbacks(c.step(T0 + 31 * DAY, Ev(C_KIND, T0 + 31 * DAY, 0, 1, 0))) == []
    assert c.scores["churn_risk"][0] < P.risk_threshold
    assert winbacks(c.step(T0 + 32 * DAY, Ev(C_KIND, T0 + 32 * DAY, 0, 4, 0))) == [
        (REASON_COMPLAINT, 0)
    ]
    # usual gap 30 days -> cool-down 30 days: a second complaint inside it is suppressed
    assert winbacks(c.step(T0 + 40 * DAY, Ev(C_KIND, T0 + 40 * DAY, 0, 5, 0))) == [
        (REASON_COMPLAINT, 1)
    ]
    assert winbacks(c.step(T0 + 63 * DAY, Ev(C_KIND, T0 + 63 * DAY, 0, 5, 0))) == [
        (REASON_COMPLAINT, 0)
    ]


def test_risk_rise_needs_a_repeat_buyer_and_rearms_below_hysteresis() -> None:
    params = default_scoring_params()._replace(at_risk_ratio=1e6)  # keep silence out of it
    c = Customer(params)
    c.step(
        T0, Ev(P_KIND, T0, 5000), Ev(P_KIND, T0 + 7 * DAY, 5000), Ev(P_KIND, T0 + 14 * DAY, 5000)
    )
    fired_at = None
    for day in range(15, 2000, 5):
        alerts = winbacks(c.step(T0 + day * DAY))
        risk = float(c.scores["churn_risk"][0])
        if alerts:
            assert alerts == [(REASON_RISK_RISE, 0)]
            assert risk >= params.risk_threshold
            fired_at = day
            break
        assert risk < params.risk_threshold
    assert fired_at is not None
    # stays high: no second alert
    assert winbacks(c.step(T0 + (fired_at + 30) * DAY)) == []


def test_lifecycle_change_is_alerted_but_first_classification_is_silent() -> None:
    c = Customer()
    first = c.step(T0, Ev(P_KIND, T0, 5000))
    assert [a for a in first if a[0] == KIND_SEGMENT_CHANGE] == []
    second = c.step(T0 + 5 * DAY, Ev(P_KIND, T0 + 5 * DAY, 5000))
    life = [a for a in second if a[0] == KIND_SEGMENT_CHANGE and a[1] == SCHEME_LIFECYCLE]
    assert [(LIFECYCLE_NAMES[a[3]], LIFECYCLE_NAMES[a[4]]) for a in life] == [("new", "active")]


def test_tier_does_not_flap_when_spend_wobbles_around_a_cut() -> None:
    spend = 1000.0  # exactly on the VIP cut
    c = Customer(cuts=CUTS._replace(tier_vip=spend))
    c.step(T0, Ev(P_KIND, T0, int(spend * 100)))
    assert c.states["seg_tier"][0] == 4 + 1  # stored as code + 1
    changes = 0
    for i in range(20):
        # refunds and re-purchases move the trailing spend 2 % either side of the cut
        t = T0 + (i + 1) * DAY
        cents = 2000 if i % 2 else -2000
        alerts = c.step(t, Ev(P_KIND, t, cents))
        changes += sum(1 for a in alerts if a[0] == KIND_SEGMENT_CHANGE and a[1] == SCHEME_TIER)
    assert changes == 0
    t = T0 + 30 * DAY
    alerts = c.step(t, Ev(P_KIND, t, -10000))  # a real move beyond the 5 % margin
    assert [(a[3], a[4]) for a in alerts if a[1] == SCHEME_TIER] == [(4, 3)]


def test_a_lapsed_member_leaving_and_rejoining_the_tiers_is_alerted_both_ways() -> None:
    c = Customer()
    c.step(T0, Ev(P_KIND, T0, 5000))
    left = c.step(T0 + 400 * DAY)  # 13 months of silence: no longer an effective member
    assert (SCHEME_TIER, 1, 0) in [(a[1], a[3], a[4]) for a in left if a[0] == KIND_SEGMENT_CHANGE]
    back = c.step(T0 + 401 * DAY, Ev(P_KIND, T0 + 401 * DAY, 5000))
    assert (SCHEME_TIER, 0, 1) in [(a[1], a[3], a[4]) for a in back if a[0] == KIND_SEGMENT_CHANGE]
    lifecycle = [(a[3], a[4]) for a in back if a[1] == SCHEME_LIFECYCLE]
    assert [(LIFECYCLE_NAMES[f], LIFECYCLE_NAMES[t]) for f, t in lifecycle] == [
        ("lapsed", "won_back")
    ]
