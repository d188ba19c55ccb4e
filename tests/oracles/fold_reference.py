"""A plain-Python oracle for the engine: scores computed directly from a customer's full
event list, by the definitions in docs/scoring.md, with no incremental state, no numba and no
shared code beyond the parameter tuple and segment-map data. Tests compare the kernels with it
(and the BTYD quantities with lifetimes); the kernel benchmark uses it as the plain-Python
baseline.

Events are taken in the order given (the order the engine folds them: event time, then type
and event id); only the complaint slots depend on that order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.scoring import PopulationCuts
from engine.scoring_params import ScoringParams

__all__ = [
    "C_KIND",
    "P_KIND",
    "V_KIND",
    "Ev",
    "bgnbd_p_alive",
    "complaint_level",
    "month_net_cents",
    "reference",
    "spend_drop_at",
    "unresolved_level",
]

DAY = 86400
MAX_TS = 2**32 - 1
P_KIND, V_KIND, C_KIND = 1, 2, 3
SLOTS = 4  # open complaints tracked one by one (docs/scoring.md §2)


@dataclass(frozen=True)
class Ev:
    """One event: kind (1 purchase, 2 visit, 3 complaint), time, cents, severity, resolved,
    complaint key (complaints: the id it is filed under or, with ``refers``, the id of the
    complaint a resolution resolves; never 0) and refers (1 = a resolution naming a complaint).
    """

    kind: int
    ts: int
    cents: int = 0
    severity: int = 0
    resolved: int = 0
    complaint: int = 1
    refers: int = 0


def month_of(ts: int) -> int:
    """Calendar month index (months since 1970-01) of an epoch second."""
    d = datetime.fromtimestamp(ts, tz=UTC)
    return (d.year - 1970) * 12 + d.month - 1


def month_start(k: int) -> int:
    """Epoch second of the first day of month index ``k``."""
    return int(datetime(1970 + k // 12, k % 12 + 1, 1, tzinfo=UTC).timestamp())


def decay(age_s: float, halflife_days: float) -> float:
    """2^(-age / half-life); 1 for an age of zero or less."""
    return float(2.0 ** (-max(age_s, 0.0) / (halflife_days * DAY)))


def bgnbd_p_alive(x: int, t_x: float, big_t: float, P: ScoringParams) -> float:
    """BG/NBD P(alive) closed form (Fader, Hardie & Lee 2005), in plain floats; 1 for x = 0."""
    if x <= 0:
        return 1.0
    # the odds in logs: ((alpha + T) / (alpha + t_x)) ** (r + x) overflows a double for the
    # heaviest buyers (x in the hundreds); exp of more than ~709 is treated as infinite odds
    log_odds = (
        math.log(P.a)
        - math.log(P.b + x - 1)
        + (P.r + x) * math.log((P.alpha + big_t) / (P.alpha + t_x))
    )
    return 0.0 if log_odds > 709.0 else float(1.0 / (1.0 + math.exp(log_odds)))


def complaint_level(events: list[Ev], clock: int, halflife_days: float) -> float:
    """Exact decayed severity of complaints filed open (resolved or not since; the engine
    rounds to 1/1000 per step)."""
    return sum(
        e.severity * decay(clock - e.ts, halflife_days)
        for e in events
        if e.kind == C_KIND and not e.resolved
    )


def open_complaints(events: list[Ev]) -> list[tuple[int, int]]:
    """(key, filed at) of the complaints still open after ``events``, in slot order.

    An open complaint takes the first free slot of four; when all are taken it replaces the
    one filed earliest (the lowest slot among equals). A resolution naming a key frees the
    first slot holding that key; a complaint filed already resolved takes no slot.
    """
    slots: list[tuple[int, int]] = [(0, 0)] * SLOTS
    for e in events:
        if e.kind != C_KIND:
            continue
        if e.resolved:
            if e.refers:
                for i, (key, _) in enumerate(slots):
                    if key == e.complaint:
                        slots[i] = (0, 0)
                        break
            continue
        free = [i for i, (key, _) in enumerate(slots) if key == 0]
        if free:
            slot = free[0]
        else:
            earliest = min(opened for _, opened in slots)
            slot = next(i for i, (_, opened) in enumerate(slots) if opened == earliest)
        slots[slot] = (e.complaint, e.ts)
    return [s for s in slots if s[0] != 0]


def unresolved_level(events: list[Ev], clock: int, halflife_days: float) -> float:
    """Sum over open complaints of the decay since each was filed."""
    return sum(decay(clock - opened, halflife_days) for _, opened in open_complaints(events))


def month_net_cents(events: list[Ev]) -> dict[int, int]:
    """Net spend (purchases minus refunds, cents) per calendar month index, by event time."""
    out: dict[int, int] = {}
    for e in events:
        if e.kind == P_KIND and e.cents != 0:
            m = month_of(e.ts)
            out[m] = out.get(m, 0) + e.cents
    return out


def spend_drop_at(months: dict[int, int], cb: int, P: ScoringParams) -> bool:
    """The spend-drop condition at clock month ``cb`` (spec 15): recent = net spend of the
    three complete months cb-3..cb-1, earlier = net spend of the eight months cb-11..cb-4,
    run rate = earlier / 8 a month; true when at least ``spend_drop_min_months`` of the
    earlier months had net spend > 0, earlier > 0 and recent < ratio x run rate x 3."""
    recent = sum(months.get(k, 0) for k in range(cb - 3, cb)) / 100.0
    earlier_months = [months.get(k, 0) for k in range(cb - 11, cb - 3)]
    earlier = sum(earlier_months) / 100.0
    spending = sum(c > 0 for c in earlier_months)
    return (
        spending >= P.spend_drop_min_months
        and earlier > 0
        and recent < P.spend_drop_ratio * (earlier / 8.0) * 3.0
    )


def spend_drop_next(months: dict[int, int], cb: int, P: ScoringParams) -> int:
    """The first month start after month ``cb`` at which the condition differs from its value
    in month ``cb`` with no new event, 0 = never (it is false once every month with spend has
    left cb-11..cb-1, so twelve months past the last month with spend is far enough)."""
    now = spend_drop_at(months, cb, P)
    last = max(months, default=cb)
    for k in range(cb + 1, max(cb, last) + 13):
        if spend_drop_at(months, k, P) != now:
            return month_start(k)
    return 0


def _first_day(today: int, holds: Any) -> int | None:
    """First day after ``today`` on which the monotone predicate ``holds(day)`` is true."""
    last_day = MAX_TS // DAY
    if not holds(last_day):
        return None
    lo, hi = today, last_day  # holds(hi); not holds(lo) is assumed
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    return hi


def reference(
    events: list[Ev],
    clock: int,
    P: ScoringParams,
    cuts: PopulationCuts,
    rfm_map: npt.NDArray[np.uint8],
) -> dict[str, Any]:
    """Every score of one customer's events at ``clock`` except the BTYD expectations
    (expected purchases, Gamma-Gamma spend, CLV; the tests take those from lifetimes).

    Issue 15 (spec15): ``net_spend`` (lifetime purchases minus refunds, currency units),
    ``effective`` also needs window net spend >= ``effective_min_spend`` (unless that is 0),
    ``spend_drop`` (from the raw events' net spend per calendar month, :func:`spend_drop_at`) with
    ``spend_drop_due`` (the next month start at which it changes, 0 never; also a ``due``
    candidate, as ``spend_drop`` is a discrete output) and ``nudge_at`` (next purchase ETA
    minus the nudge lead, repeat buyers only, else 0)."""
    purchases = [e for e in events if e.kind == P_KIND and e.cents > 0]  # 0 is not a purchase
    refunds = [e for e in events if e.kind == P_KIND and e.cents < 0]
    visits = [e for e in events if e.kind == V_KIND]
    W = P.window_months
    cb = month_of(clock)

    def in_window(ts: int) -> bool:
        return cb - W < month_of(ts) <= cb

    # the window counts purchase days (distinct UTC days with a purchase) and net spend
    f_w = len({e.ts // DAY for e in purchases if in_window(e.ts)})
    m_w = sum(e.cents for e in purchases + refunds if in_window(e.ts)) / 100.0
    # spec15: "effective_min_spend | 0.0 | effective member also needs window net spend >= this
    # (0 = any purchase)": 0 switches the spend test off (a window with a purchase and net
    # refunds stays effective, as before issue 15)
    floor = P.effective_min_spend
    effective = f_w >= 1 and (floor == 0 or m_w >= floor)
    months = month_net_cents(events)
    drop = spend_drop_at(months, cb, P)
    drop_due = spend_drop_next(months, cb, P)
    out: dict[str, Any] = {
        "net_spend": sum(e.cents for e in purchases + refunds) / 100.0,
        "spend_drop": int(drop),
        "spend_drop_due": drop_due,
        "window_frequency": f_w,
        "window_monetary": m_w,
        "effective": int(effective),
        "freq_per_year": f_w * 12.0 / W,
        "window_avg_spend": m_w / f_w if f_w else 0.0,
    }
    halflife = P.complaint_halflife_days
    level = complaint_level(events, clock, halflife)
    unresolved = unresolved_level(events, clock, halflife)
    last_visit = max((e.ts for e in visits), default=0)
    last_purchase = max((e.ts for e in purchases), default=0)
    intent_s = P.intent_window_days * DAY
    intent = last_visit > last_purchase and clock - last_visit <= intent_s
    up = min(P.complaint_weight * level + P.unresolved_weight * unresolved, P.adjust_max_up)
    down = min(P.visit_weight, P.adjust_max_down) if intent else 0.0
    adj = up - down
    out["complaint_level"] = level
    out["unresolved_level"] = unresolved
    out["risk_adjustment"] = adj
    candidates: list[int] = [drop_due] if drop_due else []
    if intent:
        candidates.append(last_visit + math.floor(intent_s) + 1)

    def due() -> int:
        later = [c for c in candidates if c > clock]
        assert len(later) == len(candidates), "a due candidate at or before the clock"
        best = min(later, default=0)
        return best if 0 < best <= MAX_TS else 0

    if not purchases:
        out.update(
            frequency=0,
            recency=0.0,
            T=0.0,
            monetary_value=0.0,
            usual_gap_days=max(P.mean_gap_days, 1.0),
            r_score=0,
            f_score=0,
            m_score=0,
            rfm_segment=0,
            value_tier=0,
            abcd_class=0,
            quadrant=0,
            lifecycle=1 if events else 0,
            overdue=0,
            next_purchase_eta=0,
            nudge_at=0,
            due=due(),
        )
        return out

    days = sorted({e.ts // DAY for e in purchases})
    last = max(e.ts for e in purchases)
    first_day, last_day, today = days[0], days[-1], clock // DAY
    earlier = [e.ts for e in purchases if e.ts // DAY < last_day]
    prev = max(earlier, default=0)
    x = len(days) - 1
    unit_days = P.unit_seconds / DAY
    t_x = (last_day - first_day) / unit_days
    big_t = (max(today, last_day) - first_day) / unit_days
    first_day_spend = sum(e.cents for e in purchases if e.ts // DAY == first_day)
    repeat = sum(e.cents for e in purchases) - first_day_spend - sum(-e.cents for e in refunds)
    mbar = max(repeat, 0) / 100.0 / x if x else 0.0
    elapsed = max(clock - last, 0)
    gap = max((last_day - first_day) * DAY / x if x else P.mean_gap_days * DAY, DAY)
    overdue = elapsed > P.at_risk_ratio * gap
    r_cuts = (P.r_cut1, P.r_cut2, P.r_cut3, P.r_cut4)
    r = 1 + sum(elapsed <= c * DAY for c in r_cuts)
    f = 1 + sum(f_w >= c for c in (P.f_cut1, P.f_cut2, P.f_cut3, P.f_cut4))
    m = 1 + sum(m_w >= c for c in (P.m_cut1, P.m_cut2, P.m_cut3, P.m_cut4))
    fm = math.ceil((f + m) / 2)
    if effective:
        if m_w >= cuts.tier_vip:
            tier = 4
        elif m_w >= cuts.tier_major:
            tier = 3
        elif m_w >= cuts.tier_normal:
            tier = 2
        else:
            tier = 1
        if m_w >= cuts.abcd_a:
            abcd = 1
        elif m_w >= cuts.abcd_b:
            abcd = 2
        elif m_w >= cuts.abcd_c:
            abcd = 3
        else:
            abcd = 4
        hf = out["freq_per_year"] >= cuts.quad_freq_mean
        hs = out["window_avg_spend"] >= cuts.quad_spend_mean
        quad = {(True, True): 1, (False, True): 2, (False, False): 3, (True, False): 4}[(hf, hs)]
    else:
        tier = abcd = quad = 0
    p_alive = bgnbd_p_alive(x, t_x, big_t, P)
    fading = x >= 1 and p_alive < P.at_risk_p_alive
    months_since = cb - month_of(last)
    if months_since >= P.lost_months:
        stage = 6  # lost
    elif not effective:
        stage = 5  # lapsed
    elif overdue or fading:
        stage = 4  # at risk
    elif prev and month_of(last) - month_of(prev) >= W:
        stage = 7  # won back
    elif x == 0:
        stage = 2  # new
    else:
        stage = 3  # active
    risk = min(max(1.0 - p_alive * math.exp(-adj), 0.0), 1.0)

    # due: the earliest time after the clock at which a discrete output can change
    candidates += [last + math.floor(c * DAY) + 1 for c in r_cuts if elapsed <= c * DAY]
    filled = [month_of(e.ts) for e in purchases + refunds if in_window(e.ts)]
    if filled:
        candidates.append(month_start(min(filled) + W))
    if months_since < P.lost_months:
        candidates.append(month_start(month_of(last) + P.lost_months))
    if not overdue:
        candidates.append(last + math.floor(P.at_risk_ratio * gap) + 1)
    since = max(today, last_day)

    def alive_on(day: int) -> float:
        return bgnbd_p_alive(x, t_x, (day - first_day) / unit_days, P)

    if x >= 1 and not fading:
        day = _first_day(since, lambda d: alive_on(d) < P.at_risk_p_alive)
        if day is not None:
            candidates.append(day * DAY)
    if x >= 1 and risk < P.risk_threshold:
        # the adjustment held at its current value (it only decays until the next due time)
        day = _first_day(since, lambda d: 1.0 - alive_on(d) * math.exp(-adj) >= P.risk_threshold)
        if day is not None:
            candidates.append(day * DAY)

    out.update(
        frequency=x,
        recency=t_x,
        T=big_t,
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
        nudge_at=last + round(gap) - round(P.nudge_lead_days * DAY) if x >= 1 else 0,
        p_alive=p_alive,
        churn_risk=risk,
        due=due(),
    )
    return out
