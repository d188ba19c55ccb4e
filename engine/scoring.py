"""Scores, classes, lifecycle stage, churn risk and due time of customers at a clock.

``evaluate(states, clock, params, cuts, rfm_map)`` is the one contract both the streaming
worker and batch scoring use. It is a pure function of the folded state (not of the alert
bookkeeping fields), the clock (event time, epoch seconds), the model/policy parameters and
the population cut points, so the same events give the same scores however they arrived.

Discrete outputs (R/F/M scores, segments, classes, stage, effective, overdue, risk above the
threshold) change only at event arrivals or at times this module can compute; ``due`` is the
earliest such time after the clock (0 = never). Continuous outputs (P(alive), expected
purchases, CLV, churn risk) drift between those times and are re-evaluated on demand.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from engine.btyd import clv as btyd_clv
from engine.btyd import expected_purchases, gg_expected_spend, p_alive
from engine.calendar import month_index, month_start
from engine.kernels import COMPLAINT_SCALE, decay_factor
from engine.scoring_params import DAY, ScoringParams
from engine.state import MAX_TS, RING_MONTHS

__all__ = [
    "SCORES_DTYPE",
    "PopulationCuts",
    "abcd_code",
    "evaluate",
    "quadrant_code",
    "tier_code",
]

_NAN = math.nan
_MONTH_DAYS = 365.25 / 12.0
_LAST_DAY = MAX_TS // DAY  # last UTC day a u4 epoch second reaches


class PopulationCuts(NamedTuple):
    """Population-relative cut points (currency units; frequency in purchases per year)."""

    tier_vip: float
    tier_major: float
    tier_normal: float
    abcd_a: float
    abcd_b: float
    abcd_c: float
    quad_freq_mean: float
    quad_spend_mean: float

    @classmethod
    def from_params(cls, params: ScoringParams) -> PopulationCuts:
        """The calibrated cut points shipped in the params file."""
        return cls(*(getattr(params, name) for name in cls._fields))


SCORES_DTYPE = np.dtype(
    [
        ("frequency", "i4"),  # BTYD x: repeat purchases
        ("recency", "f8"),  # BTYD t_x: last purchase - first purchase (params time unit)
        ("T", "f8"),  # BTYD T: clock - first purchase (params time unit)
        ("monetary_value", "f8"),  # mean spend of repeat purchases, net of refunds
        ("days_since_last_purchase", "f8"),
        ("window_frequency", "i4"),  # purchases in the trailing window
        ("window_monetary", "f8"),  # net spend in the trailing window
        ("window_avg_spend", "f8"),  # window_monetary / window_frequency
        ("freq_per_year", "f8"),  # window_frequency scaled to a year
        ("usual_gap_days", "f8"),  # own mean inter-purchase gap (population's if < 2 purchases)
        ("r_score", "u1"),
        ("f_score", "u1"),
        ("m_score", "u1"),
        ("rfm_segment", "u1"),
        ("value_tier", "u1"),
        ("abcd_class", "u1"),
        ("quadrant", "u1"),
        ("lifecycle", "u1"),
        ("effective", "u1"),
        ("overdue", "u1"),  # silence > at_risk_ratio x usual gap
        ("p_alive", "f8"),  # raw BG/NBD P(alive)
        ("complaint_level", "f8"),  # decayed open-complaint severity
        ("unresolved_level", "f8"),  # unresolved complaints, each decayed since it was filed
        ("risk_adjustment", "f8"),  # complaint/unresolved up, visit intent down (bounded)
        ("churn_risk", "f8"),  # 1 - P(alive) x exp(-adjustment), clipped to [0, 1]
        ("expected_purchases_90d", "f8"),
        ("expected_avg_spend", "f8"),  # Gamma-Gamma E[M | x, mbar]
        ("clv", "f8"),
        ("next_purchase_eta", "i8"),  # epoch s, 0 for prospects
        ("net_spend", "f8"),  # lifetime purchases minus refunds (currency units)
        ("spend_drop", "u1"),  # trailing 3 months far below the earlier run-rate (§9.4)
        ("nudge_at", "i8"),  # epoch s a repurchase nudge is due (repeat buyers; 0 none)
        ("due", "i8"),  # epoch s of the next time-driven change, 0 = never
    ]
)


@njit(cache=True, nogil=True)
def tier_code(spend: float, vip: float, major: float, normal: float) -> int:
    """Value tier of an effective member: 4 vip, 3 major, 2 normal, 1 small."""
    if spend >= vip:
        return 4
    if spend >= major:
        return 3
    if spend >= normal:
        return 2
    return 1


@njit(cache=True, nogil=True)
def abcd_code(spend: float, cut_a: float, cut_b: float, cut_c: float) -> int:
    """A/B/C/D class of an effective member: 1 A .. 4 D."""
    if spend >= cut_a:
        return 1
    if spend >= cut_b:
        return 2
    if spend >= cut_c:
        return 3
    return 4


@njit(cache=True, nogil=True)
def quadrant_code(high_frequency: bool, high_spend: bool) -> int:
    """1 gold, 2 potential (high spend), 3 maintain, 4 potential (high frequency)."""
    if high_frequency and high_spend:
        return 1
    if high_spend:
        return 2
    if high_frequency:
        return 4
    return 3


@njit(cache=True, nogil=True)
def _at_or_after(threshold_s: float) -> int:
    """First whole second strictly greater than a real-valued threshold."""
    return math.floor(threshold_s) + 1


@njit(cache=True, nogil=True)
def _alive_at_day(
    day: int, x: int, first_day: int, t_x: float, unit_days: float, P: ScoringParams
) -> float:
    """BG/NBD P(alive) on the UTC day ``day`` (T = whole days since the first purchase day)."""
    return p_alive(x, t_x, (day - first_day) / unit_days, P.r, P.alpha, P.a, P.b)


@njit(cache=True, nogil=True)
def _holds(pa: float, mode: int, adj: float, P: ScoringParams) -> bool:
    """Mode 0: P(alive) below ``at_risk_p_alive`` (fading); mode 1: churn risk at or above
    ``risk_threshold`` with the adjustment held at ``adj`` (the same arithmetic as the scores)."""
    if mode == 0:
        return pa < P.at_risk_p_alive
    risk = min(max(1.0 - pa * math.exp(-adj), 0.0), 1.0)
    return risk >= P.risk_threshold


@njit(cache=True, nogil=True)
def _p_alive_day(
    x: int,
    first_day: int,
    t_x: float,
    unit_days: float,
    today: int,
    mode: int,
    adj: float,
    P: ScoringParams,
) -> int:
    """First UTC day after ``today`` on which :func:`_holds` becomes true; -1 for never.

    P(alive) of a repeat buyer falls with T, and T moves in whole days, so the crossing is at
    a midnight. The closed form 1 / (1 + A ((alpha + T) / (alpha + t_x))^(r + x)) = q with
    A = a / (b + x - 1) gives the real-valued T; the day is then settled with the very
    arithmetic the scores use, so the due time agrees with evaluate() to the last bit.
    """
    if x < 1:
        return -1
    q = P.at_risk_p_alive if mode == 0 else (1.0 - P.risk_threshold) * math.exp(adj)
    if q <= 0.0:
        return -1
    day = today + 1
    if q < 1.0:
        big_a = P.a / (P.b + x - 1.0)
        ratio = ((1.0 / q - 1.0) / big_a) ** (1.0 / (P.r + x))
        t_star = (P.alpha + t_x) * ratio - P.alpha  # model units since the first purchase
        approx = first_day + t_star * unit_days
        if not approx < _LAST_DAY:  # never within the record's time range (or NaN)
            return -1
        day = max(math.floor(approx), today + 1)
    for _ in range(64):
        if _holds(_alive_at_day(day, x, first_day, t_x, unit_days, P), mode, adj, P):
            break
        day += 1
    else:
        return -1
    while day - 1 > today and _holds(
        _alive_at_day(day - 1, x, first_day, t_x, unit_days, P), mode, adj, P
    ):
        day -= 1
    return day


@njit(cache=True, nogil=True)
def _month_cents(st, month: int) -> int:  # type: ignore[no-untyped-def]
    """Net spend of calendar month ``month`` from the ring (0 outside the ring's 12 months)."""
    head = int(st.ring_head)
    if month > head or month <= head - RING_MONTHS:
        return 0
    return int(st.ring_cents[month % RING_MONTHS])


@njit(cache=True, nogil=True)
def _spend_drop(st, cb: int, P: ScoringParams) -> bool:  # type: ignore[no-untyped-def]
    """Spend drop at calendar month ``cb``: the three complete months before it spent less
    than ``spend_drop_ratio`` x the run-rate of the eight months before those, which need
    ``spend_drop_min_months`` months with spend (docs/scoring.md §9.4)."""
    earlier = 0
    months = 0
    for m in range(cb - 11, cb - 3):
        cents = _month_cents(st, m)
        earlier += cents
        if cents > 0:
            months += 1
    if months < P.spend_drop_min_months or earlier <= 0:
        return False
    recent = 0
    for m in range(cb - 3, cb):
        recent += _month_cents(st, m)
    return recent < P.spend_drop_ratio * earlier / 8.0 * 3.0


@njit(cache=True, nogil=True)
def _spend_drop_change(st, cb: int, now: bool, P: ScoringParams) -> int:  # type: ignore[no-untyped-def]
    """The first month after ``cb`` whose start changes the spend-drop condition with no new
    event (0 = none: after 12 months every month the ring knows has left both windows)."""
    if int(st.ring_head) < cb - RING_MONTHS:
        return 0
    for m in range(cb + 1, cb + RING_MONTHS + 1):
        if _spend_drop(st, m, P) != now:
            return m
    return 0


@njit(cache=True, nogil=True)
def _evaluate_one(st, clock: int, P: ScoringParams, cuts, rfm_map, out) -> None:  # type: ignore[no-untyped-def]
    """Every score of ``st`` at event time ``clock`` into ``out`` (a SCORES_DTYPE record)."""
    _evaluate_core(st, clock, P, cuts, rfm_map, out)
    _fill_value(st, clock, P, out)


@njit(cache=True, nogil=True)
def _btyd_inputs(st, clock: int, P: ScoringParams) -> tuple[int, float, float, float, float]:  # type: ignore[no-untyped-def]
    """BTYD inputs of a buyer (``st.purchase_days >= 1``) as lifetimes'
    summary_data_from_transaction_data(freq="D") computes them: x distinct purchase days after
    the first, t_x and T in whole UTC days, in the model unit; and the mean repeat spend."""
    x = int(st.purchase_days) - 1
    first_day = int(st.first_purchase) // DAY
    last_day = int(st.last_purchase) // DAY
    unit_days = P.unit_seconds / DAY
    t_x = (last_day - first_day) / unit_days
    big_t = (max(clock // DAY, last_day) - first_day) / unit_days
    repeat_cents = int(st.gross_cents) - int(st.first_day_cents) - int(st.refund_cents)
    mbar = max(repeat_cents, 0) / 100.0 / x if x >= 1 else 0.0
    return x, t_x, big_t, mbar, unit_days


@njit(cache=True, nogil=True)
def _fill_value(st, clock: int, P: ScoringParams, out) -> None:  # type: ignore[no-untyped-def]
    """The value scores :func:`_evaluate_core` leaves out: expected purchases in 90 days and
    the discounted CLV (a dozen hypergeometric series, most of an evaluation's cost). The
    timeline computes them only for the evaluations someone reads: an alert's, and each
    customer's last of a call (its score update)."""
    if int(st.purchase_days) == 0:
        return  # no purchase: _evaluate_core wrote NaN
    x, t_x, big_t, mbar, unit_days = _btyd_inputs(st, clock, P)
    out.expected_purchases_90d = expected_purchases(
        90.0 / unit_days, x, t_x, big_t, P.r, P.alpha, P.a, P.b
    )
    step = _MONTH_DAYS / unit_days
    out.clv = btyd_clv(
        x,
        t_x,
        big_t,
        mbar,
        P.r,
        P.alpha,
        P.a,
        P.b,
        P.p,
        P.q,
        P.v,
        P.clv_horizon_days / unit_days,
        step,
        (1.0 + P.clv_annual_discount) ** (1.0 / 12.0) - 1.0,
    )


@njit(cache=True, nogil=True)
def _evaluate_core(st, clock: int, P: ScoringParams, cuts, rfm_map, out) -> None:  # type: ignore[no-untyped-def]
    """Every score but the value scores of :func:`_fill_value` (NaN here): segments, P(alive),
    churn risk and the due time, which is all the alert step and the due-time search read."""
    n_days = int(st.purchase_days)
    cb = month_index(clock)
    W = P.window_months
    head = int(st.ring_head)
    # trailing window sums and its oldest non-empty bucket
    f_w = 0
    cents_w = 0
    oldest = -1
    for b in range(max(cb - W + 1, 0), cb + 1):
        if b > head or b <= head - RING_MONTHS:
            continue
        slot = b % RING_MONTHS
        cnt = int(st.ring_count[slot])
        cents = int(st.ring_cents[slot])
        if oldest < 0 and (cnt != 0 or cents != 0):
            oldest = b
        f_w += cnt
        cents_w += cents
    m_w = cents_w / 100.0
    effective = f_w >= 1 and (P.effective_min_spend <= 0.0 or m_w >= P.effective_min_spend)
    out.window_frequency = f_w
    out.window_monetary = m_w
    out.window_avg_spend = m_w / f_w if f_w > 0 else 0.0
    out.freq_per_year = f_w * 12.0 / W
    out.effective = effective

    # complaint level, unresolved complaints (each decaying from when it was filed) and the
    # bounded risk adjustment
    halflife = P.complaint_halflife_days
    level = 0.0
    if st.complaint_ts > 0:
        level = (
            st.complaint_score
            / COMPLAINT_SCALE
            * decay_factor(float(clock - int(st.complaint_ts)), halflife)
        )
    unresolved = 0.0
    for s in range(st.complaint_ids.shape[0]):
        if st.complaint_ids[s] != 0:
            unresolved += decay_factor(float(clock - int(st.complaint_opened[s])), halflife)
    up = min(P.complaint_weight * level + P.unresolved_weight * unresolved, P.adjust_max_up)
    intent_window_s = P.intent_window_days * DAY
    intent = (
        st.last_visit > 0
        and st.last_visit > st.last_purchase
        and clock - int(st.last_visit) <= intent_window_s
    )
    down = min(P.visit_weight, P.adjust_max_down) if intent else 0.0
    adj = up - down
    out.complaint_level = level
    out.unresolved_level = unresolved
    out.risk_adjustment = adj

    due = MAX_TS + 1
    if intent:
        due = min(due, int(st.last_visit) + _at_or_after(intent_window_s))
    out.net_spend = (int(st.gross_cents) - int(st.refund_cents)) / 100.0
    drop = _spend_drop(st, cb, P)
    out.spend_drop = drop
    change = _spend_drop_change(st, cb, drop, P)
    if change > 0:
        due = min(due, month_start(change))
    out.nudge_at = 0

    if n_days == 0:
        out.frequency = 0
        out.recency = 0.0
        out.T = 0.0
        out.monetary_value = 0.0
        out.days_since_last_purchase = _NAN
        out.usual_gap_days = max(P.mean_gap_days, 1.0)
        out.r_score = 0
        out.f_score = 0
        out.m_score = 0
        out.rfm_segment = 0
        out.value_tier = 0
        out.abcd_class = 0
        out.quadrant = 0
        out.lifecycle = 1 if st.first_seen > 0 else 0
        out.overdue = False
        out.p_alive = _NAN
        out.churn_risk = _NAN
        out.expected_purchases_90d = _NAN
        out.expected_avg_spend = _NAN
        out.clv = _NAN
        out.next_purchase_eta = 0
        out.due = due if due <= MAX_TS else 0
        return

    x, t_x, big_t, mbar, unit_days = _btyd_inputs(st, clock, P)
    last = int(st.last_purchase)
    first_day = int(st.first_purchase) // DAY
    last_day = last // DAY
    today = clock // DAY
    elapsed = max(clock - last, 0)
    # the customer's rhythm: mean days between purchase days (the population's before a repeat)
    gap_s = (last_day - first_day) * DAY / x if x >= 1 else P.mean_gap_days * DAY
    gap_s = max(gap_s, float(DAY))
    overdue_s = P.at_risk_ratio * gap_s
    overdue = elapsed > overdue_s
    out.frequency = x
    out.recency = t_x
    out.T = big_t
    out.monetary_value = mbar
    out.days_since_last_purchase = elapsed / DAY
    out.usual_gap_days = gap_s / DAY
    out.overdue = overdue
    out.next_purchase_eta = last + round(gap_s)
    if x >= 1:
        out.nudge_at = max(out.next_purchase_eta - round(P.nudge_lead_days * DAY), 1)

    # RFM scores: recency cut points are upper bounds in days, the others lower bounds
    r = 1
    for cut in (P.r_cut1, P.r_cut2, P.r_cut3, P.r_cut4):
        limit = cut * DAY
        if elapsed <= limit:
            r += 1
            due = min(due, last + _at_or_after(limit))
    f = 1
    for cut in (P.f_cut1, P.f_cut2, P.f_cut3, P.f_cut4):
        if f_w >= cut:
            f += 1
    m = 1
    for cut in (P.m_cut1, P.m_cut2, P.m_cut3, P.m_cut4):
        if m_w >= cut:
            m += 1
    out.r_score = r
    out.f_score = f
    out.m_score = m
    out.rfm_segment = rfm_map[r - 1, (f + m + 1) // 2 - 1]

    if effective:
        out.value_tier = tier_code(m_w, cuts.tier_vip, cuts.tier_major, cuts.tier_normal)
        out.abcd_class = abcd_code(m_w, cuts.abcd_a, cuts.abcd_b, cuts.abcd_c)
        out.quadrant = quadrant_code(
            out.freq_per_year >= cuts.quad_freq_mean, out.window_avg_spend >= cuts.quad_spend_mean
        )
    else:
        out.value_tier = 0
        out.abcd_class = 0
        out.quadrant = 0
    if oldest >= 0:
        due = min(due, month_start(oldest + W))

    # BTYD first: a falling P(alive) is part of "at risk"; it steps at midnights only
    pa = p_alive(x, t_x, big_t, P.r, P.alpha, P.a, P.b)
    out.p_alive = pa
    fading = x >= 1 and pa < P.at_risk_p_alive
    if x >= 1 and not fading:
        day = _p_alive_day(x, first_day, t_x, unit_days, max(today, last_day), 0, adj, P)
        if day >= 0:
            due = min(due, day * DAY)

    months_since = cb - month_index(last)
    if months_since >= P.lost_months:
        stage = 6
    elif not effective:
        stage = 5
    elif overdue or fading:
        stage = 4
    elif st.prev_purchase > 0 and month_index(last) - month_index(int(st.prev_purchase)) >= W:
        stage = 7
    elif x == 0:
        stage = 2
    else:
        stage = 3
    out.lifecycle = stage
    if months_since < P.lost_months:
        due = min(due, month_start(month_index(last) + P.lost_months))
    if not overdue:
        due = min(due, last + _at_or_after(overdue_s))

    # BTYD: Gamma-Gamma spend; expected purchases and CLV are _fill_value's
    out.expected_purchases_90d = _NAN
    out.expected_avg_spend = gg_expected_spend(x, mbar, P.p, P.q, P.v)
    out.clv = _NAN
    risk = 1.0 - pa * math.exp(-adj)
    risk = min(max(risk, 0.0), 1.0)
    out.churn_risk = risk
    if risk < P.risk_threshold and x >= 1:
        # Until the next due time the adjustment can only fall (complaint terms decay; the end
        # of visit intent is itself a due time), so holding it gives an upper bound on risk and
        # a crossing day that is never later than the true one.
        day = _p_alive_day(x, first_day, t_x, unit_days, max(today, last_day), 1, adj, P)
        if day >= 0:
            due = min(due, day * DAY)
    if due <= clock:  # by construction every candidate is later; keep the caller's loop safe
        due = clock + 1
    out.due = due if due <= MAX_TS else 0


@njit(cache=True, nogil=True)
def _evaluate_rows(states, rows, clock, P, cuts, rfm_map, out) -> None:  # type: ignore[no-untyped-def]
    for k in range(rows.shape[0]):
        _evaluate_one(states[rows[k]], clock, P, cuts, rfm_map, out[k])


def evaluate(
    states: npt.NDArray[np.void],
    clock: int,
    params: ScoringParams,
    cuts: PopulationCuts,
    rfm_map: npt.NDArray[np.uint8],
    rows: npt.NDArray[np.int32] | None = None,
) -> npt.NDArray[np.void]:
    """Scores of ``states[rows]`` (all rows by default) at event time ``clock`` (epoch s)."""
    if rows is None:
        rows = np.arange(states.shape[0], dtype=np.int32)
    out = np.zeros(rows.shape[0], dtype=SCORES_DTYPE)
    _evaluate_rows(states, rows, np.int64(clock), params, cuts, rfm_map, out)
    return out
