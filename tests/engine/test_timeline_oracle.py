"""The engine's alerts on generated single-customer histories equal the plain-Python oracle's.

``tests/oracles/alerts.py`` watches a customer continuously in event time and finds the
time-driven change points itself (month pieces and bisection on the reference scores, a day
grid for churn risk); the engine evaluates at its own, conservative, due times. The alerts
must be the same: kind, scheme or reason, from, to, anchor (event id or due time) and the
suppressed flag, in the same order.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from oracles.fold_reference import C_KIND, P_KIND, V_KIND

from engine.alert_rules import (
    KIND_SEGMENT_CHANGE,
    REASON_COMPLAINT,
    REASON_RISK_RISE,
    REASON_SILENCE,
)
from engine.scoring import PopulationCuts
from engine.scoring_params import ScoringParams, default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from engine.state import new_events, new_states
from engine.timeline import customer_slices, order_events, run_timeline
from tests.oracles.alerts import (
    COMPLAINT,
    RISK_RISE,
    SCHEMES,
    SEGMENT_CHANGE,
    SILENCE,
    WIN_BACK,
    Anchor,
    IdEv,
    OracleAlert,
    oracle_alerts,
)

P = default_scoring_params()
CUTS = PopulationCuts.from_params(P)
DAY = 86_400
T0 = 852_076_800  # 1997-01-01
SPAN = 3 * 365 * DAY
REASONS = {REASON_SILENCE: SILENCE, REASON_RISK_RISE: RISK_RISE, REASON_COMPLAINT: COMPLAINT}


def to_events(evs: list[IdEv], row: int = 0) -> np.ndarray:
    arr = new_events(len(evs))
    for i, e in enumerate(evs):
        arr[i] = (row, e.kind, e.severity, e.resolved, e.ts, e.cents, e.complaint, e.refers)
    return arr


def decode(alerts: np.ndarray, ids: np.ndarray) -> list[OracleAlert]:
    """Engine alerts in the oracle's terms (ids: event ids of the sorted events)."""
    out = []
    for a in alerts:
        anchor: Anchor
        if a["event"] >= 0:
            anchor = ("event", str(ids[a["event"]]))
        else:
            anchor = ("timer", int(a["due"]))
        sup = bool(a["suppressed"])
        if a["kind"] == KIND_SEGMENT_CHANGE:
            scheme = SCHEMES[int(a["scheme"]) - 1]
            out.append(
                OracleAlert(
                    SEGMENT_CHANGE, scheme, int(a["from_code"]), int(a["to_code"]), anchor, sup
                )
            )
        else:
            out.append(OracleAlert(WIN_BACK, REASONS[int(a["reason"])], 0, 0, anchor, sup))
    return out


def engine_alerts(
    evs: list[IdEv], watermark: int, params: ScoringParams = P, cuts: PopulationCuts = CUTS
) -> list[OracleAlert]:
    """One run_timeline call with every event of one customer."""
    arr = to_events(evs)
    ids = np.array([e.event_id for e in evs], dtype=str)
    order = order_events(arr["row"], arr["ts"], arr["kind"], ids)
    arr, ids = arr[order], ids[order]
    rows = np.zeros(1, dtype=np.int32)
    states = new_states(1)
    tl = run_timeline(
        states,
        arr,
        customer_slices(arr["row"], rows),
        rows,
        watermark,
        params,
        cuts,
        DEFAULT_RFM_MAP,
    )
    return decode(tl.alerts, ids)


# --- generated histories --------------------------------------------------------------------

amounts = st.one_of(st.integers(-50_000, 500_000), st.just(0), st.just(2500), st.integers(1, 9000))


@st.composite
def histories(draw: st.DrawFn, max_events: int = 30) -> list[IdEv]:
    """One customer's purchases (same-day lines, refunds, zero amounts), visits and
    complaints (open ones under a complaint id, resolutions naming one) over up to ~3 years:
    either scattered, or a purchase rhythm with events sprinkled in."""
    raw: list[tuple[int, int, int, int, int, int, int]] = []  # kind ts cents sev res key refers
    if draw(st.booleans()):
        start = draw(st.integers(T0, T0 + 365 * DAY))
        gap = draw(st.integers(1, 150)) * DAY
        n = draw(st.integers(1, 12))
        for k in range(n):
            t = start + k * gap + draw(st.integers(-gap // 3, gap // 3))
            raw.append((P_KIND, t, draw(amounts), 0, 0, 1, 0))
    n_other = draw(st.integers(0, max_events - len(raw)))
    for _ in range(n_other):
        kind = draw(st.sampled_from((P_KIND, P_KIND, V_KIND, C_KIND, C_KIND)))
        t = draw(st.integers(T0, T0 + SPAN))
        if kind == P_KIND:
            raw.append((P_KIND, t, draw(amounts), 0, 0, 1, 0))
        elif kind == V_KIND:
            raw.append((V_KIND, t, 0, 0, 0, 1, 0))
        else:
            resolved = draw(st.integers(0, 1))
            key = draw(st.integers(1, 5))  # few keys: resolutions often name an open one
            refers = draw(st.integers(0, 1)) if resolved else 0
            raw.append((C_KIND, t, 0, draw(st.integers(1, 5)), resolved, key, refers))
    buys = [r for r in raw if r[0] == P_KIND]
    for _ in range(draw(st.integers(0, 3)) if buys else 0):  # more lines on a purchase day
        base = draw(st.sampled_from(buys))[1]
        day0 = base - base % DAY
        t = draw(st.sampled_from((base, day0, day0 + DAY - 1, base + 1)))
        raw.append((P_KIND, min(max(t, day0), day0 + DAY - 1), draw(amounts), 0, 0, 1, 0))
    order = draw(st.permutations(range(len(raw))))  # event ids decide ties
    return [
        IdEv(kind, max(ts, 1), cents, sev, res, key, refers, event_id=f"e{order[i]:03d}")
        for i, (kind, ts, cents, sev, res, key, refers) in enumerate(raw)
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=histories(), extra=st.integers(0, 900 * DAY))
def test_engine_alerts_equal_the_oracle(evs: list[IdEv], extra: int) -> None:
    watermark = max((e.ts for e in evs), default=T0) + extra
    want = oracle_alerts(evs, watermark, P, CUTS, DEFAULT_RFM_MAP)
    got = engine_alerts(evs, watermark)
    for a in want:
        event(f"{a.kind}: {a.what} ({a.anchor[0]}{', suppressed' if a.suppressed else ''})")
    assert got == want


def _rearm_history(second_day: int, severity: int) -> list[IdEv]:
    """A won-back repeat buyer with a complaint (risk_rise), then a second complaint after
    risk has decayed below threshold - hysteresis with no evaluation in between."""
    return [
        IdEv(P_KIND, T0, 2500, event_id="p1"),
        IdEv(P_KIND, T0 + 10 * DAY, 2500, event_id="p2"),
        IdEv(P_KIND, T0 + 440 * DAY, 3000, event_id="p3"),
        IdEv(C_KIND, T0 + 663 * DAY, 0, 3, 0, 11, 0, event_id="c1"),
        IdEv(C_KIND, T0 + second_day * DAY, 0, severity, 0, 12, 0, event_id="c2"),
    ]


def test_oracle_rearms_where_risk_falls() -> None:
    """The oracle's reading of the rule: the flag re-arms at the second risk falls below
    threshold - hysteresis, so the second complaint is a new crossing (and outside the
    90-day cool-down, a published one)."""
    evs = _rearm_history(760, 3)
    want = oracle_alerts(evs, evs[-1].ts, P, CUTS, DEFAULT_RFM_MAP)
    rises = [a for a in want if a.what == RISK_RISE]
    assert [(a.anchor, a.suppressed) for a in rises][-2:] == [
        (("event", "c1"), False),
        (("event", "c2"), False),
    ]
    late = oracle_alerts(evs, evs[-1].ts, P, CUTS, DEFAULT_RFM_MAP, watch_rearm=False)
    assert late == [a for a in want if a.anchor != ("event", "c2")]


def test_risk_rearm_is_watched() -> None:
    evs = _rearm_history(760, 3)
    watermark = evs[-1].ts
    assert engine_alerts(evs, watermark) == oracle_alerts(evs, watermark, P, CUTS, DEFAULT_RFM_MAP)
