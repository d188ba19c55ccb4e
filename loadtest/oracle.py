"""A plain-Python oracle for the engine: scores computed directly from a customer's full
event list, by definition, with no incremental state, no numba and no shared code beyond the
parameter tuple and segment-map data. Tests compare the kernels with it; the kernel
benchmark uses it as the plain-Python baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.params import ScoringParams
from engine.scoring import PopulationCuts

__all__ = ["C_KIND", "P_KIND", "V_KIND", "Ev", "bgnbd_p_alive", "complaint_level", "reference"]

DAY = 86400
P_KIND, V_KIND, C_KIND = 1, 2, 3


@dataclass(frozen=True)
class Ev:
    """One event: kind (1 purchase, 2 visit, 3 complaint), time, cents, severity, resolved."""

    kind: int
    ts: int
    cents: int = 0
    severity: int = 0
    resolved: int = 0


def month_of(ts: int) -> int:
    """Calendar month index (months since 1970-01) of an epoch second."""
    d = datetime.fromtimestamp(ts, tz=UTC)
    return (d.year - 1970) * 12 + d.month - 1


def month_start(k: int) -> int:
    """Epoch second of the first day of month index ``k``."""
    return int(datetime(1970 + k // 12, k % 12 + 1, 1, tzinfo=UTC).timestamp())


def bgnbd_p_alive(x: int, last: int, first: int, clock: int, P: ScoringParams) -> float:
    """DOMAIN.md §5 closed form, in plain floats (x >= 1)."""
    t_x = (last - first) / P.unit_seconds
    big_t = (max(clock, last) - first) / P.unit_seconds
    odds = P.a / (P.b + x - 1) * ((P.alpha + big_t) / (P.alpha + t_x)) ** (P.r + x)
    return float(1.0 / (1.0 + odds))


def complaint_level(events: list[Ev], clock: int, halflife_days: float) -> float:
    """Exact decayed severity of open complaints (the engine rounds to 1/1000 per step)."""
    total = 0.0
    for e in events:
        if e.kind == C_KIND and not e.resolved:
            age = max(clock - e.ts, 0)
            total += e.severity * 2.0 ** (-age / (halflife_days * DAY))
    return total


def reference(
    events: list[Ev],
    clock: int,
    P: ScoringParams,
    cuts: PopulationCuts,
    rfm_map: npt.NDArray[np.uint8],
) -> dict[str, Any]:
    """Discrete scores and window features of one customer's events at ``clock``."""
    purchases = [e for e in events if e.kind == P_KIND and e.cents >= 0]
    refunds = [e for e in events if e.kind == P_KIND and e.cents < 0]
    visits = [e for e in events if e.kind == V_KIND]
    complaints = [e for e in events if e.kind == C_KIND]
    W = P.window_months
    cb = month_of(clock)
    in_window = [e for e in purchases + refunds if cb - W < month_of(e.ts) <= cb]
    f_w = 0
    by_month: dict[int, int] = {}
    for e in in_window:
        if e.cents >= 0 and e.kind == P_KIND and e in purchases:
            by_month[month_of(e.ts)] = by_month.get(month_of(e.ts), 0) + 1
    f_w = sum(min(c, 255) for c in by_month.values())
    m_w = sum(e.cents for e in in_window) / 100.0
    effective = f_w >= 1
    out: dict[str, Any] = {
        "window_frequency": f_w,
        "window_monetary": m_w,
        "effective": int(effective),
        "freq_per_year": f_w * 12.0 / W,
        "window_avg_spend": m_w / f_w if f_w else 0.0,
    }
    level = complaint_level(events, clock, P.complaint_halflife_days)
    unresolved = max(
        sum(1 for e in complaints if not e.resolved) - sum(1 for e in complaints if e.resolved), 0
    )
    last_visit = max((e.ts for e in visits), default=0)
    last_purchase = max((e.ts for e in purchases), default=0)
    intent = last_visit > last_purchase and clock - last_visit <= P.intent_window_days * DAY
    up = min(P.complaint_weight * level + P.unresolved_weight * unresolved, P.adjust_max_up)
    down = min(P.visit_weight, P.adjust_max_down) if intent else 0.0
    out["complaint_level"] = level
    out["risk_adjustment"] = up - down
    if not purchases:
        out.update(
            frequency=0,
            r_score=0,
            f_score=0,
            m_score=0,
            rfm_segment=0,
            value_tier=0,
            abcd_class=0,
            quadrant=0,
            lifecycle=1 if events else 0,
            overdue=0,
        )
        return out
    times = sorted(e.ts for e in purchases)
    first, last = times[0], times[-1]
    prev = times[-2] if len(times) > 1 else 0
    x = len(purchases) - 1
    first_amount = max(e.cents for e in purchases if e.ts == first)
    repeat = sum(e.cents for e in purchases) - first_amount - sum(-e.cents for e in refunds)
    mbar = max(repeat, 0) / 100.0 / x if x else 0.0
    elapsed = max(clock - last, 0)
    gap = max((last - first) / x if x else P.mean_gap_days * DAY, DAY)
    overdue = elapsed > P.at_risk_ratio * gap
    r = 1 + sum(elapsed <= c * DAY for c in (P.r_cut1, P.r_cut2, P.r_cut3, P.r_cut4))
    f = 1 + sum(f_w >= c for c in (P.f_cut1, P.f_cut2, P.f_cut3, P.f_cut4))
    m = 1 + sum(m_w >= c for c in (P.m_cut1, P.m_cut2, P.m_cut3, P.m_cut4))
    fm = math.ceil((f + m) / 2)
    if effective:
        tier = (
            4
            if m_w >= cuts.tier_vip
            else 3
            if m_w >= cuts.tier_major
            else (2 if m_w >= cuts.tier_normal else 1)
        )
        abcd = (
            1
            if m_w >= cuts.abcd_a
            else 2
            if m_w >= cuts.abcd_b
            else (3 if m_w >= cuts.abcd_c else 4)
        )
        hf = out["freq_per_year"] >= cuts.quad_freq_mean
        hs = out["window_avg_spend"] >= cuts.quad_spend_mean
        quad = {(True, True): 1, (False, True): 2, (False, False): 3, (True, False): 4}[(hf, hs)]
    else:
        tier = abcd = quad = 0
    months_since = cb - month_of(last)
    if months_since >= P.lost_months:
        stage = 6
    elif not effective:
        stage = 5
    elif overdue or (x >= 1 and bgnbd_p_alive(x, last, first, clock, P) < P.at_risk_p_alive):
        stage = 4
    elif prev and month_of(last) - month_of(prev) >= W:
        stage = 7
    elif x == 0:
        stage = 2
    else:
        stage = 3
    out.update(
        frequency=x,
        recency=(last - first) / P.unit_seconds,
        T=(max(clock, last) - first) / P.unit_seconds,
        monetary_value=mbar,
        usual_gap_days=gap / DAY,
        days_since_last_purchase=elapsed / DAY,
        r_score=r,
        f_score=f,
        m_score=m,
        rfm_segment=int(rfm_map[r - 1, fm - 1]),
        value_tier=tier,
        abcd_class=abcd,
        quadrant=quad,
        lifecycle=stage,
        overdue=int(overdue),
        next_purchase_eta=last + round(gap),
    )
    return out
