"""Numeric parameters the kernels need, as one flat immutable tuple numba can take.

`models.params_file` builds a :class:`ScoringParams` from a params JSON file; the engine never
reads files. Times inside the engine are integer epoch seconds; ``unit_seconds`` converts
them to the BTYD time unit the model was fitted in (days or weeks).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DAY", "THRESHOLD_FIELDS", "ScoringParams", "default_scoring_params"]

DAY = 86_400


class ScoringParams(NamedTuple):
    """Model parameters, calibrated cut points and scoring policy (all floats/ints, no arrays).

    Frequency and monetary cut points are ascending lower bounds: a value v scores
    1 + (number of cuts <= v). Recency cut points are descending upper bounds on days since
    the last purchase: d scores 1 + (number of cuts >= d), so more recent scores higher.
    """

    # BTYD time unit, in seconds (86400 = days, 604800 = weeks).
    unit_seconds: float
    # BG/NBD (Fader, Hardie & Lee 2005).
    r: float
    alpha: float
    a: float
    b: float
    # Gamma-Gamma spend model (Fader, Hardie & Lee 2005b), in currency units.
    p: float
    q: float
    v: float
    # RFM cut points (4 each -> scores 1..5). recency in days; frequency = purchases in the
    # trailing window; monetary = net spend in the trailing window (currency units).
    r_cut1: float
    r_cut2: float
    r_cut3: float
    r_cut4: float
    f_cut1: float
    f_cut2: float
    f_cut3: float
    f_cut4: float
    m_cut1: float
    m_cut2: float
    m_cut3: float
    m_cut4: float
    # Population-relative spend cut points on trailing-window net spend (currency units):
    # VIP >= tier_vip, major >= tier_major, normal >= tier_normal, else small.
    tier_vip: float
    tier_major: float
    tier_normal: float
    # A/B/C/D by cumulative share of sales: A >= abcd_a, B >= abcd_b, C >= abcd_c, else D.
    abcd_a: float
    abcd_b: float
    abcd_c: float
    # Quadrant split: population means of yearly repurchase frequency and average spend.
    quad_freq_mean: float
    quad_spend_mean: float
    # Population mean days between purchases (rhythm of customers with no repeat yet).
    mean_gap_days: float
    # Policy.
    window_months: int  # trailing window for RFM F/M, tiers and the effective flag (12/6/3)
    at_risk_ratio: float  # overdue when silence > ratio x own usual gap
    at_risk_p_alive: float  # repeat buyers are also at risk once raw P(alive) falls below
    lost_months: int  # lapsed after window_months of silence, lost after lost_months
    clv_horizon_days: float
    clv_annual_discount: float
    risk_threshold: float  # risk_rise win-back when adjusted churn risk crosses this upward
    risk_hysteresis: float  # must fall below threshold - hysteresis to re-arm
    complaint_halflife_days: float
    complaint_weight: float  # adjustment per unit of decayed open-complaint severity
    unresolved_weight: float  # per unresolved complaint
    visit_weight: float  # risk reduction when the customer visited since the last purchase
    intent_window_days: float  # a visit older than this no longer signals intent
    adjust_max_up: float  # bound on the complaint adjustment
    adjust_max_down: float  # bound on the visit adjustment
    complaint_alert_severity: int  # complaint win-back at or above this severity (buyers)
    cooldown_min_days: float  # win-back cool-down = own usual gap, clipped to [min, max]
    cooldown_max_days: float
    class_hysteresis: float  # relative margin before a tier/class/quadrant alert flips back
    # The marketing loop (docs/scoring.md §9): repurchase nudges, response windows, spend drop.
    effective_min_spend: float  # effective member: a window purchase and at least this spend
    nudge_lead_days: float  # nudge this many days before the predicted next purchase
    nudge_min_days: int  # distinct purchase days before a rhythm is trusted for a nudge
    nudge_min_p_alive: float  # raw P(alive) at the nudge time must be at least this
    nudge_min_tier: int  # emitted value tier code at least this (1 small .. 4 vip; 0 any)
    response_window_days: float  # a contact's outcome window (event time)
    spend_drop_ratio: float  # trailing 3 months below ratio x earlier run-rate: spend drop
    spend_drop_min_months: int  # months with spend in the earlier 8 before it can fire
    # Calibration shares (custscore fit and the exact ranking; not read by the kernels):
    # cumulative customer shares closing VIP, major, normal; cumulative sales shares closing
    # A, B, C; the top customer share of the Pareto KPI.
    tier_share_vip: float
    tier_share_major: float
    tier_share_normal: float
    abcd_share_a: float
    abcd_share_b: float
    abcd_share_c: float
    pareto_top_share: float


# Fields calibrated from history (`custscore fit`); the rest after the model is policy.
THRESHOLD_FIELDS = (
    "r_cut1",
    "r_cut2",
    "r_cut3",
    "r_cut4",
    "f_cut1",
    "f_cut2",
    "f_cut3",
    "f_cut4",
    "m_cut1",
    "m_cut2",
    "m_cut3",
    "m_cut4",
    "tier_vip",
    "tier_major",
    "tier_normal",
    "abcd_a",
    "abcd_b",
    "abcd_c",
    "quad_freq_mean",
    "quad_spend_mean",
    "mean_gap_days",
)


def default_scoring_params() -> ScoringParams:
    """Published CDNOW BG/NBD + Gamma-Gamma fit (weeks) with neutral cut points and policy."""
    return ScoringParams(
        unit_seconds=7 * DAY,
        r=0.242593,
        alpha=4.413532,
        a=0.792886,
        b=2.425752,
        p=6.2488,
        q=3.7446,
        v=15.4477,
        r_cut1=365.0,
        r_cut2=180.0,
        r_cut3=90.0,
        r_cut4=30.0,
        f_cut1=2.0,
        f_cut2=3.0,
        f_cut3=4.0,
        f_cut4=6.0,
        m_cut1=20.0,
        m_cut2=40.0,
        m_cut3=80.0,
        m_cut4=160.0,
        tier_vip=1000.0,
        tier_major=400.0,
        tier_normal=150.0,
        abcd_a=200.0,
        abcd_b=60.0,
        abcd_c=30.0,
        quad_freq_mean=2.0,
        quad_spend_mean=35.0,
        mean_gap_days=90.0,
        window_months=12,
        at_risk_ratio=2.0,
        at_risk_p_alive=0.4,
        lost_months=24,
        clv_horizon_days=365.0,
        clv_annual_discount=0.10,
        risk_threshold=0.6,
        risk_hysteresis=0.1,
        complaint_halflife_days=30.0,
        complaint_weight=0.15,
        unresolved_weight=0.3,
        visit_weight=0.1,
        intent_window_days=30.0,
        adjust_max_up=2.0,
        adjust_max_down=0.5,
        complaint_alert_severity=4,
        cooldown_min_days=7.0,
        cooldown_max_days=90.0,
        class_hysteresis=0.05,
        effective_min_spend=0.0,
        nudge_lead_days=0.0,
        nudge_min_days=3,
        nudge_min_p_alive=0.5,
        nudge_min_tier=1,
        response_window_days=30.0,
        spend_drop_ratio=0.1,
        spend_drop_min_months=3,
        tier_share_vip=0.01,
        tier_share_major=0.05,
        tier_share_normal=0.20,
        abcd_share_a=0.70,
        abcd_share_b=0.90,
        abcd_share_c=0.95,
        pareto_top_share=0.20,
    )
