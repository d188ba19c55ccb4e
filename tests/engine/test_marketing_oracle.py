"""Hand-made histories for the issue-15 rules of the plain-Python oracles (spec15): the
reference's new scores (net spend, effective minimum spend, spend drop, nudge time) and the
alert oracle's nudges, contact budget, holdout group and outcome rows, each checked against
numbers worked out by hand from the spec. No engine code is run here (see
test_timeline_oracle.py for the engine against the oracle).
"""

from __future__ import annotations

from oracles.fold_reference import C_KIND, P_KIND, Ev, month_of, month_start, reference

from engine.scoring import PopulationCuts
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from tests.oracles.alerts import (
    BY_PURCHASE,
    BY_SUPERSEDED,
    BY_WINDOW,
    NUDGE,
    OUTCOME,
    REPURCHASE,
    SILENCE,
    SPEND_DROP,
    WIN_BACK,
    IdEv,
    OracleAlert,
    oracle_alerts,
)

P = default_scoring_params()
CUTS = PopulationCuts.from_params(P)
DAY = 86_400
T0 = 852_076_800  # 1997-01-01
NOON = T0 + DAY // 2
# the rhythm's emitted classes at its contacts: 200.00-250.00 in the window is a normal tier
# (2); 4-5 purchase days a year at 50.00 each is gold (1)
AT_CONTACT = {"tier": 2, "quadrant": 1}


def rhythm(n: int = 4, gap_days: int = 10, cents: int = 5000) -> list[IdEv]:
    """A customer buying every ``gap_days`` days, ``n`` times, each purchase an hour earlier
    in the day than the last: always an hour before the predicted time (the usual gap counts
    whole purchase days), so no nudge fires until the customer stops."""
    return [
        IdEv(P_KIND, NOON + k * gap_days * DAY - k * 3600, cents, event_id=f"p{k}")
        for k in range(n)
    ]


def contacts(alerts: list[OracleAlert]) -> list[OracleAlert]:
    return [a for a in alerts if a.kind in (NUDGE, WIN_BACK, OUTCOME)]


# --- the reference's new scores -------------------------------------------------------------


def test_reference_net_spend_and_nudge_time() -> None:
    evs: list[Ev] = [*rhythm(), Ev(P_KIND, NOON + 31 * DAY, -1500)]
    last = NOON + 30 * DAY - 3 * 3600
    sc = reference(evs, last + DAY, P, CUTS, DEFAULT_RFM_MAP)
    assert sc["net_spend"] == 185.0
    assert sc["next_purchase_eta"] == last + 10 * DAY
    assert sc["nudge_at"] == last + 10 * DAY
    lead = P._replace(nudge_lead_days=2.5)
    assert reference(evs, last + DAY, lead, CUTS, DEFAULT_RFM_MAP)["nudge_at"] == (
        last + 10 * DAY - 216_000
    )
    one = [Ev(P_KIND, NOON, 5000)]  # one purchase day: no rhythm, no nudge time
    assert reference(one, NOON + DAY, P, CUTS, DEFAULT_RFM_MAP)["nudge_at"] == 0


def test_reference_effective_needs_the_minimum_window_spend() -> None:
    evs = [Ev(P_KIND, NOON, 5000), Ev(P_KIND, NOON + DAY, -3000)]  # net 20.00 in the window
    at = NOON + 2 * DAY
    assert reference(evs, at, P, CUTS, DEFAULT_RFM_MAP)["effective"] == 1
    assert (
        reference(evs, at, P._replace(effective_min_spend=20.0), CUTS, DEFAULT_RFM_MAP)["effective"]
        == 1
    )
    sc = reference(evs, at, P._replace(effective_min_spend=25.0), CUTS, DEFAULT_RFM_MAP)
    assert (sc["effective"], sc["value_tier"], sc["lifecycle"]) == (0, 0, 5)  # lapsed
    # 0 = any purchase: a window with a purchase stays effective even with net refunds
    refunded = [*evs, Ev(P_KIND, NOON + DAY, -5000)]
    assert reference(refunded, at, P, CUTS, DEFAULT_RFM_MAP)["effective"] == 1


def monthly(months: int, cents: int = 5000) -> list[IdEv]:
    """One purchase on the 15th of each month from 1997-01 on."""
    m0 = month_of(T0)
    return [
        IdEv(P_KIND, month_start(m0 + k) + 14 * DAY + DAY // 2, cents, event_id=f"m{k:02d}")
        for k in range(months)
    ]


def test_reference_spend_drop_by_calendar_month() -> None:
    evs = monthly(8)  # 1997-01 .. 1997-08, 50.00 each; nothing after
    m0 = month_of(T0)
    seen = {
        k: reference(evs, month_start(m0 + k), P, CUTS, DEFAULT_RFM_MAP)["spend_drop"]
        for k in range(8, 24)
    }
    # recent = the three months before: zero from 1997-12 (k = 11) on; earlier = the eight
    # months k-11 .. k-4 need >= 3 with spend: until 1998-05 (k = 16, months 5 .. 12 hold
    # 5, 6, 7); at k = 17 only 6 and 7 are left
    assert [k for k, v in seen.items() if v] == list(range(11, 17))
    sc = reference(evs, month_start(m0 + 9), P, CUTS, DEFAULT_RFM_MAP)
    assert sc["spend_drop_due"] == month_start(m0 + 11)
    sc = reference(evs, month_start(m0 + 11) + 5 * DAY, P, CUTS, DEFAULT_RFM_MAP)
    assert sc["spend_drop_due"] == month_start(m0 + 17)
    # a small purchase keeps it off only while recent spend is at least 3 x 10 % of the rate
    late = [*evs, IdEv(P_KIND, month_start(m0 + 10) + DAY, 1500, event_id="x")]
    assert not reference(late, month_start(m0 + 11), P, CUTS, DEFAULT_RFM_MAP)["spend_drop"]
    small = [*evs, IdEv(P_KIND, month_start(m0 + 10) + DAY, 1499, event_id="x")]
    assert reference(small, month_start(m0 + 11), P, CUTS, DEFAULT_RFM_MAP)["spend_drop"]


# --- nudges and outcomes --------------------------------------------------------------------


def test_nudge_at_the_predicted_next_purchase() -> None:
    evs = rhythm()
    last = evs[-1].ts
    nudge_at = last + 10 * DAY
    got = contacts(oracle_alerts(evs, nudge_at, P, CUTS, DEFAULT_RFM_MAP))
    assert got == [OracleAlert(NUDGE, REPURCHASE, 0, 0, ("timer", nudge_at), False, **AT_CONTACT)]
    assert contacts(oracle_alerts(evs, nudge_at - 1, P, CUTS, DEFAULT_RFM_MAP)) == []


def test_two_purchase_days_are_not_a_rhythm() -> None:
    evs = rhythm(3)[:2]
    assert not [
        a
        for a in oracle_alerts(evs, evs[-1].ts + 60 * DAY, P, CUTS, DEFAULT_RFM_MAP)
        if a.kind == NUDGE
    ]


def test_a_purchase_three_days_after_the_nudge_is_a_response() -> None:
    evs = rhythm()
    nudge_at = evs[-1].ts + 10 * DAY
    buy = IdEv(P_KIND, nudge_at + 3 * DAY, 4200, event_id="r")
    got = contacts(oracle_alerts([*evs, buy], buy.ts, P, CUTS, DEFAULT_RFM_MAP))
    assert got == [
        OracleAlert(NUDGE, REPURCHASE, 0, 0, ("timer", nudge_at), False, **AT_CONTACT),
        OracleAlert(
            OUTCOME,
            REPURCHASE,
            0,
            0,
            ("event", "r"),
            False,
            responded=True,
            cents=4200,
            closed_by=BY_PURCHASE,
            contact_at=nudge_at,
            contact_kind=NUDGE,
            tier=2,  # 250.00 in the window: normal
            quadrant=1,  # 5 purchase days a year, 50.00 each: gold
        ),
    ]


def test_a_purchase_at_the_last_second_of_the_window_still_counts() -> None:
    evs = rhythm()
    nudge_at = evs[-1].ts + 10 * DAY
    quiet = P._replace(cooldown_min_days=60.0)  # the silence win-back is suppressed
    buy = IdEv(P_KIND, nudge_at + 30 * DAY, 100, event_id="r")
    got = [a for a in oracle_alerts([*evs, buy], buy.ts, quiet, CUTS, DEFAULT_RFM_MAP)]
    outcome = [a for a in got if a.kind == OUTCOME]
    assert [(a.closed_by, a.anchor, a.cents) for a in outcome] == [
        (BY_PURCHASE, ("event", "r"), 100)
    ]
    late = IdEv(P_KIND, nudge_at + 30 * DAY + 1, 100, event_id="r")
    got = [a for a in oracle_alerts([*evs, late], late.ts, quiet, CUTS, DEFAULT_RFM_MAP)]
    outcome = [a for a in got if a.kind == OUTCOME]
    assert [(a.closed_by, a.anchor, a.cents) for a in outcome] == [
        (BY_WINDOW, ("timer", nudge_at + 30 * DAY + 1), 0)
    ]


def test_no_purchase_closes_the_window_at_its_end() -> None:
    """Silence (overdue at last + 20 days + 1 s) comes inside the 60-day budget: a suppressed
    win-back that opens no window, so the nudge's window runs out."""
    evs = rhythm()
    nudge_at = evs[-1].ts + 10 * DAY
    quiet = P._replace(cooldown_min_days=60.0)
    end = nudge_at + 30 * DAY + 1
    got = contacts(oracle_alerts(evs, end, quiet, CUTS, DEFAULT_RFM_MAP))
    assert got == [
        OracleAlert(NUDGE, REPURCHASE, 0, 0, ("timer", nudge_at), False, **AT_CONTACT),
        OracleAlert(
            WIN_BACK, SILENCE, 0, 0, ("timer", nudge_at + 10 * DAY + 1), True, **AT_CONTACT
        ),
        OracleAlert(
            OUTCOME,
            REPURCHASE,
            0,
            0,
            ("timer", end),
            False,
            closed_by=BY_WINDOW,
            contact_at=nudge_at,
            contact_kind=NUDGE,
            tier=2,
            quadrant=1,
        ),
    ]
    assert contacts(oracle_alerts(evs, end - 1, quiet, CUTS, DEFAULT_RFM_MAP)) == got[:2]


def test_a_published_win_back_supersedes_the_nudge() -> None:
    """Budget = usual gap, 10 days: silence at nudge + 10 days + 1 s is published and closes
    the nudge's window as superseded before opening its own."""
    evs = rhythm()
    nudge_at = evs[-1].ts + 10 * DAY
    silence = nudge_at + 10 * DAY + 1
    got = contacts(oracle_alerts(evs, silence, P, CUTS, DEFAULT_RFM_MAP))
    assert got == [
        OracleAlert(NUDGE, REPURCHASE, 0, 0, ("timer", nudge_at), False, **AT_CONTACT),
        OracleAlert(
            OUTCOME,
            REPURCHASE,
            0,
            0,
            ("timer", silence),
            False,
            closed_by=BY_SUPERSEDED,
            contact_at=nudge_at,
            contact_kind=NUDGE,
            tier=2,
            quadrant=1,
        ),
        OracleAlert(WIN_BACK, SILENCE, 0, 0, ("timer", silence), False, **AT_CONTACT),
    ]


def test_a_holdout_customer_is_contacted_the_same_way_in_group_1() -> None:
    evs = rhythm()
    nudge_at = evs[-1].ts + 10 * DAY
    buy = IdEv(P_KIND, nudge_at + 3 * DAY, 4200, event_id="r")
    treated = oracle_alerts([*evs, buy], buy.ts, P, CUTS, DEFAULT_RFM_MAP)
    held = oracle_alerts([*evs, buy], buy.ts, P, CUTS, DEFAULT_RFM_MAP, holdout=True)
    assert [a._replace(group=0) for a in held] == treated
    assert [(a.kind, a.group) for a in contacts(held)] == [(NUDGE, 1), (OUTCOME, 1)]
    assert all(a.group == 0 for a in held if a.kind not in (NUDGE, OUTCOME, WIN_BACK))


def test_a_purchase_before_the_nudge_cancels_it() -> None:
    """A purchase on a new day before nudge_at moves the cycle on: the nudge comes at the new
    predicted time (gap now 32 / 4 = 8 days), not at the old one."""
    evs = rhythm()
    early = IdEv(P_KIND, evs[-1].ts + 2 * DAY, 5000, event_id="early")
    new_at = early.ts + 8 * DAY
    got = [
        a for a in oracle_alerts([*evs, early], new_at, P, CUTS, DEFAULT_RFM_MAP) if a.kind == NUDGE
    ]
    assert [a.anchor for a in got] == [("timer", new_at)]


def test_the_nudge_filters() -> None:
    evs = rhythm()
    at = evs[-1].ts + 10 * DAY
    for params in (
        P._replace(nudge_min_days=5),
        P._replace(nudge_min_tier=3),  # tier normal
        P._replace(nudge_min_p_alive=0.9999),
    ):
        got = oracle_alerts(evs, at + DAY, params, CUTS, DEFAULT_RFM_MAP)
        assert not [a for a in got if a.kind == NUDGE], params
    # the flag is handled at the nudge time even when filtered: no nudge later either
    p_alive = reference(evs, at, P, CUTS, DEFAULT_RFM_MAP)["p_alive"]
    assert 0.5 <= p_alive < 0.9999
    assert [
        a.anchor
        for a in oracle_alerts(evs, at, P._replace(nudge_min_tier=0), CUTS, DEFAULT_RFM_MAP)
        if a.kind == NUDGE
    ] == [("timer", at)]


def test_a_purchase_evaluation_at_the_nudge_time_sends_nothing() -> None:
    """A new purchase day starts a new cycle; with a lead longer than the gap its nudge time
    is already past at the purchase, which handles it without a contact."""
    long_lead = P._replace(nudge_lead_days=15.0)
    evs = rhythm()
    got = oracle_alerts(evs, evs[-1].ts + 5 * DAY, long_lead, CUTS, DEFAULT_RFM_MAP)
    assert not [a for a in got if a.kind == NUDGE]


def test_spend_drop_win_back_at_the_month_start() -> None:
    evs = monthly(8)
    m0 = month_of(T0)
    drop = month_start(m0 + 11)
    got = [a for a in oracle_alerts(evs, drop + 40 * DAY, P, CUTS, DEFAULT_RFM_MAP)]
    drops = [a for a in got if a.kind == WIN_BACK and a.what == SPEND_DROP]
    assert [(a.anchor, a.suppressed) for a in drops] == [(("timer", drop), False)]
    # the flag is cleared where the condition turns false, so a second drop fires again
    back = [
        *evs,
        *(IdEv(P_KIND, month_start(m0 + k) + DAY, 5000, event_id=f"b{k}") for k in (12, 13, 14)),
    ]
    got = oracle_alerts(back, month_start(m0 + 20), P, CUTS, DEFAULT_RFM_MAP)
    drops = [a.anchor for a in got if a.kind == WIN_BACK and a.what == SPEND_DROP]
    assert drops == [("timer", drop), ("timer", month_start(m0 + 18))]


def test_complaint_outranks_spend_drop_and_both_are_handled() -> None:
    evs = monthly(8)
    m0 = month_of(T0)
    drop = month_start(m0 + 11)
    angry = IdEv(C_KIND, drop, 0, 5, 0, 7, 0, event_id="c")  # at the very second
    got = oracle_alerts([*evs, angry], drop + 40 * DAY, P, CUTS, DEFAULT_RFM_MAP)
    wins = [(a.what, a.anchor) for a in got if a.kind == WIN_BACK]
    # the timer at the month start comes first (spend_drop), the complaint is then inside
    # the budget: suppressed
    assert (SPEND_DROP, ("timer", drop)) in wins
    sup = [a for a in got if a.kind == WIN_BACK and a.anchor == ("event", "c")]
    assert [(a.what, a.suppressed) for a in sup] == [("complaint", True)]


def test_a_purchase_at_the_nudge_second_responds_to_it() -> None:
    """Exactly on rhythm: the nudge is due at the very second of the fourth purchase; the
    timer's evaluation comes before the event's, and the purchase closes the window."""
    evs = [IdEv(P_KIND, NOON + k * 10 * DAY, 5000, event_id=f"p{k}") for k in range(4)]
    got = contacts(oracle_alerts(evs, evs[-1].ts, P, CUTS, DEFAULT_RFM_MAP))
    assert [(a.kind, a.anchor, a.closed_by, a.cents) for a in got] == [
        (NUDGE, ("timer", evs[-1].ts), "", 0),
        (OUTCOME, ("event", "p3"), BY_PURCHASE, 5000),
    ]
