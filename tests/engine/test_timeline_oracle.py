"""The engine's alerts on generated single-customer histories equal the plain-Python oracle's.

``tests/oracles/alerts.py`` watches a customer continuously in event time and finds the
time-driven change points itself (month pieces and bisection on the reference scores, a day
grid for churn risk); the engine evaluates at its own, conservative, due times. The alerts
must be the same: kind, scheme or reason, from, to, anchor (event id or due time) and the
suppressed flag, in the same order; for contacts (win-backs, nudges) also the group, tier and
quadrant, and for outcomes the contact's kind, reason, time, group, tier and quadrant,
responded, cents and closed_by (issue 15, spec15).

Two kinds of histories: the general ones (scattered events or a purchase rhythm with events
sprinkled in) and marketing-loop ones built so nudges, responses, windows running out,
superseded windows, suppressed contacts and spend drops occur (``event`` statistics show
they do: run with ``--hypothesis-show-statistics``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from oracles.fold_reference import C_KIND, P_KIND, V_KIND

from engine.alert_rules import (
    CLOSED_BY_PURCHASE,
    CLOSED_BY_SUPERSEDED,
    CLOSED_BY_WINDOW,
    KIND_NUDGE,
    KIND_OUTCOME,
    KIND_SEGMENT_CHANGE,
    KIND_WIN_BACK,
    REASON_COMPLAINT,
    REASON_RISK_RISE,
    REASON_SILENCE,
    REASON_SPEND_DROP,
)
from engine.scoring import PopulationCuts
from engine.scoring_params import ScoringParams, default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from engine.state import new_events, new_states
from engine.timeline import customer_slices, order_events, run_timeline
from tests.oracles.alerts import (
    BY_PURCHASE,
    BY_SUPERSEDED,
    BY_WINDOW,
    COMPLAINT,
    NUDGE,
    OUTCOME,
    REPURCHASE,
    RISK_RISE,
    SCHEMES,
    SEGMENT_CHANGE,
    SILENCE,
    SPEND_DROP,
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
REASONS = {
    REASON_SILENCE: SILENCE,
    REASON_RISK_RISE: RISK_RISE,
    REASON_COMPLAINT: COMPLAINT,
    REASON_SPEND_DROP: SPEND_DROP,
}
CLOSED_BY = {
    CLOSED_BY_PURCHASE: BY_PURCHASE,
    CLOSED_BY_WINDOW: BY_WINDOW,
    CLOSED_BY_SUPERSEDED: BY_SUPERSEDED,
}
CONTACT_KINDS = {KIND_WIN_BACK: WIN_BACK, KIND_NUDGE: NUDGE}


def to_events(evs: list[IdEv], row: int = 0) -> np.ndarray:
    arr = new_events(len(evs))
    for i, e in enumerate(evs):
        arr[i] = (row, e.kind, e.severity, e.resolved, e.ts, e.cents, e.complaint, e.refers)
    return arr


# The alert fields decode() reads besides kind/scheme/reason/from/to/suppressed/event/due:
# an array built by a caller without them decodes contacts and outcomes with zeros there.
DECODED_FIELDS = (
    "group",
    "tier",
    "quadrant",
    "contact_kind",
    "closed_by",
    "responded",
    "cents",
    "contact_at",
)


def decode(alerts: np.ndarray, ids: np.ndarray) -> list[OracleAlert]:
    """Engine alerts in the oracle's terms (ids: event ids of the sorted events). Fields an
    alert array lacks (callers building their own) read as 0."""
    names = set(alerts.dtype.names or ())

    def get(a: np.void, name: str) -> int:
        return int(a[name]) if name in names else 0

    out = []
    for a in alerts:
        anchor: Anchor
        if a["event"] >= 0:
            anchor = ("event", str(ids[a["event"]]))
        else:
            anchor = ("timer", int(a["due"]))
        sup = bool(a["suppressed"])
        kind = int(a["kind"])
        if kind == KIND_SEGMENT_CHANGE:
            scheme = SCHEMES[int(a["scheme"]) - 1]
            out.append(
                OracleAlert(
                    SEGMENT_CHANGE, scheme, int(a["from_code"]), int(a["to_code"]), anchor, sup
                )
            )
            continue
        contact = {"group": get(a, "group"), "tier": get(a, "tier"), "quadrant": get(a, "quadrant")}
        if kind == KIND_WIN_BACK:
            out.append(
                OracleAlert(WIN_BACK, REASONS[int(a["reason"])], 0, 0, anchor, sup, **contact)
            )
        elif kind == KIND_NUDGE:
            out.append(OracleAlert(NUDGE, REPURCHASE, 0, 0, anchor, sup, **contact))
        else:
            assert kind == KIND_OUTCOME, kind
            of = get(a, "contact_kind")
            out.append(
                OracleAlert(
                    OUTCOME,
                    REPURCHASE if of == KIND_NUDGE else REASONS.get(int(a["reason"]), "?"),
                    int(a["from_code"]),
                    int(a["to_code"]),
                    anchor,
                    sup,
                    **contact,
                    responded=bool(get(a, "responded")),
                    cents=get(a, "cents"),
                    closed_by=CLOSED_BY.get(get(a, "closed_by"), "?"),
                    contact_at=get(a, "contact_at"),
                    contact_kind=CONTACT_KINDS.get(of, "?"),
                )
            )
    return out


def engine_alerts(
    evs: list[IdEv],
    watermark: int,
    params: ScoringParams = P,
    cuts: PopulationCuts = CUTS,
    holdout: bool | None = None,
) -> list[OracleAlert]:
    """One run_timeline call with every event of one customer (``holdout`` None: the
    engine's default, all treated)."""
    arr = to_events(evs)
    ids = np.array([e.event_id for e in evs], dtype=str)
    order = order_events(arr["row"], arr["ts"], arr["kind"], ids)
    arr, ids = arr[order], ids[order]
    rows = np.zeros(1, dtype=np.int32)
    states = new_states(1)
    flags = None if holdout is None else np.array([int(holdout)], dtype=np.uint8)
    tl = run_timeline(
        states,
        arr,
        customer_slices(arr["row"], rows),
        rows,
        watermark,
        params,
        cuts,
        DEFAULT_RFM_MAP,
        flags,
    )
    return decode(tl.alerts, ids)


def describe(a: OracleAlert) -> str:
    """One alert as a hypothesis ``event`` label (what kinds of alerts the runs exercise)."""
    if a.kind == OUTCOME:
        return f"outcome of {a.contact_kind} {a.what}: {a.closed_by} (group {a.group})"
    sup = ", suppressed" if a.suppressed else ""
    if a.kind == SEGMENT_CHANGE:
        return f"{a.kind}: {a.what} ({a.anchor[0]}{sup})"
    return f"{a.kind}: {a.what} ({a.anchor[0]}{sup}, group {a.group})"


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


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=histories(), extra=st.integers(0, 900 * DAY), holdout=st.booleans())
def test_engine_alerts_equal_the_oracle(evs: list[IdEv], extra: int, holdout: bool) -> None:
    watermark = max((e.ts for e in evs), default=T0) + extra
    want = oracle_alerts(evs, watermark, P, CUTS, DEFAULT_RFM_MAP, holdout=holdout)
    got = engine_alerts(evs, watermark, holdout=holdout)
    for a in want:
        event(describe(a))
    assert got == want


# --- marketing-loop histories (issue 15) ----------------------------------------------------

MARKETING_PARAMS = st.builds(
    lambda lead, tier, alive, days, window, floor, cool: P._replace(
        nudge_lead_days=lead,
        nudge_min_tier=tier,
        nudge_min_p_alive=alive,
        nudge_min_days=days,
        response_window_days=window,
        effective_min_spend=floor,
        cooldown_min_days=cool,
    ),
    st.sampled_from((0.0, 0.0, 2.5, 7.0)),
    st.sampled_from((1, 1, 0, 3)),
    st.sampled_from((0.5, 0.5, 0.0, 0.9)),
    st.sampled_from((3, 3, 2, 5)),
    st.sampled_from((30.0, 30.0, 7.5, 90.0)),
    st.sampled_from((0.0, 0.0, 0.0, 30.0)),
    st.sampled_from((7.0, 7.0, 1.0, 45.0)),
)


@st.composite
def marketing_histories(draw: st.DrawFn) -> list[IdEv]:
    """A purchase rhythm of >= 3 purchase days (to the second, or jittered), then phases
    that each start from the rhythm's predicted next purchase: a purchase inside the
    response window (at the predicted second, a few days after, at the window's last
    second or one second after it), well outside it, or none; refunds, visits and
    complaints sprinkled over the whole span. Monthly rhythms that stop make spend drops."""
    raw: list[tuple[int, int, int, int, int, int, int]] = []  # kind ts cents sev res key refers
    start = draw(st.integers(T0, T0 + 200 * DAY))
    gap = draw(st.sampled_from((7, 10, 14, 30, 31, 45))) * DAY
    jitter = draw(st.sampled_from((0, 0, 3600, gap // 4)))
    n = draw(st.integers(3, 9))
    t = start
    cents = draw(st.sampled_from((2500, 5000, 20_000, 60_000)))
    for k in range(n):
        t = start + k * gap + (draw(st.integers(-jitter, jitter)) if jitter else 0)
        raw.append((P_KIND, t, cents, 0, 0, 1, 0))
    last = max(r[1] for r in raw)
    for _ in range(draw(st.integers(0, 4))):
        window = draw(st.sampled_from((30, 30, 7, 90))) * DAY
        offset = draw(
            st.one_of(
                st.just(0),
                st.integers(1, 5 * DAY),
                st.just(window),
                st.just(window + 1),
                st.integers(window + 2, window + 200 * DAY),
                st.integers(-3 * DAY, -1),
            )
        )
        skip = draw(st.booleans())  # no purchase this phase: only move time on
        t = last + gap + offset
        if skip:
            last = t + draw(st.integers(0, 120 * DAY))
            continue
        raw.append((P_KIND, t, draw(st.sampled_from((1, 2500, 5000, 40_000))), 0, 0, 1, 0))
        last = t
    span_end = last + 30 * DAY
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from((P_KIND, V_KIND, C_KIND, C_KIND)))
        at = draw(st.integers(start, span_end))
        if kind == P_KIND:  # refunds, zero lines, odd purchases
            raw.append((P_KIND, at, draw(st.sampled_from((-1500, -60_000, 0, 900))), 0, 0, 1, 0))
        elif kind == V_KIND:
            raw.append((V_KIND, at, 0, 0, 0, 1, 0))
        else:
            resolved = draw(st.integers(0, 1))
            key = draw(st.integers(1, 3))
            refers = draw(st.integers(0, 1)) if resolved else 0
            raw.append((C_KIND, at, 0, draw(st.integers(1, 5)), resolved, key, refers))
    order = draw(st.permutations(range(len(raw))))
    return [
        IdEv(kind, max(ts, 1), c, sev, res, key, refers, event_id=f"e{order[i]:03d}")
        for i, (kind, ts, c, sev, res, key, refers) in enumerate(raw)
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    evs=marketing_histories(),
    extra=st.sampled_from((0, 45 * DAY, 400 * DAY)),
    holdout=st.booleans(),
    params=st.one_of(st.just(P), MARKETING_PARAMS),
)
def test_engine_contacts_and_outcomes_equal_the_oracle(
    evs: list[IdEv], extra: int, holdout: bool, params: ScoringParams
) -> None:
    watermark = max(e.ts for e in evs) + extra
    want = oracle_alerts(evs, watermark, params, CUTS, DEFAULT_RFM_MAP, holdout=holdout)
    got = engine_alerts(evs, watermark, params, holdout=holdout)
    for a in want:
        if a.kind != SEGMENT_CHANGE:
            event(describe(a))
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
    90-day cool-down, a published one). Nudges are off here: with them the repurchase nudge
    at day 660 (three purchase days, usual gap 220 days) takes the shared contact budget and
    the risk_rise at c1 is suppressed (checked at the end)."""
    evs = _rearm_history(760, 3)
    no_nudge = P._replace(nudge_min_days=99)
    want = oracle_alerts(evs, evs[-1].ts, no_nudge, CUTS, DEFAULT_RFM_MAP)
    rises = [a for a in want if a.kind == WIN_BACK and a.what == RISK_RISE]
    assert [(a.anchor, a.suppressed) for a in rises][-2:] == [
        (("event", "c1"), False),
        (("event", "c2"), False),
    ]
    late = oracle_alerts(evs, evs[-1].ts, no_nudge, CUTS, DEFAULT_RFM_MAP, watch_rearm=False)
    assert late == [a for a in want if a.anchor != ("event", "c2")]
    with_nudge = oracle_alerts(evs, evs[-1].ts, P, CUTS, DEFAULT_RFM_MAP)
    contacts = [(a.kind, a.anchor, a.suppressed) for a in with_nudge if a.kind in (NUDGE, WIN_BACK)]
    assert contacts[-3:] == [
        (NUDGE, ("timer", T0 + 660 * DAY), False),
        (WIN_BACK, ("event", "c1"), True),
        (WIN_BACK, ("event", "c2"), False),
    ]


def test_risk_rearm_is_watched() -> None:
    evs = _rearm_history(760, 3)
    watermark = evs[-1].ts
    for params in (P, P._replace(nudge_min_days=99)):
        want = oracle_alerts(evs, watermark, params, CUTS, DEFAULT_RFM_MAP)
        assert engine_alerts(evs, watermark, params) == want


def test_one_evaluation_orders_outcome_win_back_nudge() -> None:
    """A timer evaluation with a closing window, a win-back and a nudge (rare in generated
    histories: it needs the nudge time on the midnight risk rises). Purchases at midnight on
    days 0, 1 and 20 and an open severity-2 complaint: silence is published at day 40 + 1 s
    and its window is still open when risk crosses the threshold at midnight on day 70, where
    a nudge lead of -40 days (30 days after the predicted day 30) puts the nudge too. In order:
    the silence window closes as superseded, the risk_rise win-back is published and the
    nudge is suppressed by the budget the win-back has just used."""
    evs = [
        IdEv(P_KIND, T0, 5000, event_id="p0"),
        IdEv(P_KIND, T0 + DAY, 5000, event_id="p1"),
        IdEv(P_KIND, T0 + 20 * DAY, 5000, event_id="p2"),
        IdEv(C_KIND, T0 + 20 * DAY + 3600, 0, 2, 0, 5, 0, event_id="c1"),
    ]
    params = P._replace(nudge_lead_days=-40.0, nudge_min_p_alive=0.0)
    watermark = T0 + 120 * DAY
    want = oracle_alerts(evs, watermark, params, CUTS, DEFAULT_RFM_MAP, holdout=True)
    at = ("timer", T0 + 70 * DAY)
    assert [
        (a.kind, a.what, a.suppressed, a.closed_by, a.group) for a in want if a.anchor == at
    ] == [
        (OUTCOME, SILENCE, False, BY_SUPERSEDED, 1),
        (WIN_BACK, RISK_RISE, False, "", 1),
        (NUDGE, REPURCHASE, True, "", 1),
    ]
    assert engine_alerts(evs, watermark, params, holdout=True) == want
