"""Alert detection: pure comparisons of the last emitted segments with freshly evaluated scores.

One call of :func:`detect_one` is one evaluation of one customer (the driver is
:mod:`engine.timeline`, which evaluates each customer at each of its event and due times, so
every transition is seen). It emits at most one change per scheme, at most one win-back and
one nudge, and the outcomes they close, and updates the record's bookkeeping (``seg_*``,
``flags``, ``last_contact``, ``contact_*``) so the same condition does not fire twice:

- segment changes for rfm, value_tier, abcd, quadrant and lifecycle. The population-relative
  schemes (value_tier, abcd, quadrant) move only when the value clears the cut by the
  relative ``class_hysteresis`` margin, so a customer whose spend wobbles around a boundary
  does not flap (the margin is relative to the cut's magnitude, so
  it also holds for cuts at or below zero). A customer's very first classification is
  recorded silently (there is no "from"), and ``none`` counts as "not classified yet" until
  a real class is first recorded (a prospect's first purchase alerts its lifecycle only);
  later moves to and from ``none`` (e.g. a member lapsing out of the value tiers and coming
  back) are alerted like any other change.
- win-back, one reason by priority: ``complaint`` (the evaluation is caused by an open
  complaint of at least ``complaint_alert_severity``, of a customer who has bought), ``risk_rise``
  (adjusted churn risk crossed ``risk_threshold`` upward; repeat buyers only, because BG/NBD
  gives one-time buyers P(alive) = 1 (docs/scoring.md); re-armed below threshold minus
  hysteresis), ``spend_drop`` (the last three complete months far below the customer's own
  earlier run-rate; once per episode), ``silence`` (overdue relative to the customer's own
  rhythm, or to the population's for one-time buyers; once per last purchase day). An
  evaluation caused by a purchase never emits a win-back (a purchase is evidence of life;
  conditions it leaves standing are marked handled).
- repurchase nudge: at the customer's predicted next purchase minus the lead time, once per
  purchase cycle, for a trusted rhythm (``nudge_min_days`` purchase days), P(alive) at least
  ``nudge_min_p_alive`` and the emitted tier at least ``nudge_min_tier``.
- win-backs and nudges are *contacts* under one budget: inside the customer's cool-down (own
  usual gap clipped to [cooldown_min_days, cooldown_max_days], on the customer's own clock,
  since the last contact sent) a contact is marked suppressed: the caller counts it and does
  not publish it. A contact sent opens a response window; its *outcome* row is emitted when
  the window closes: by the first purchase inside it, by the timer at its end, or by a newer
  contact (docs/scoring.md §9).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.scoring import abcd_code, quadrant_code, tier_code
from engine.scoring_params import DAY
from engine.state import FLAG_NUDGE_SENT, FLAG_RISK_HIGH, FLAG_SILENCE_SENT, FLAG_SPEND_DROP

__all__ = [
    "ALERT_DTYPE",
    "CLOSED_BY_PURCHASE",
    "CLOSED_BY_SUPERSEDED",
    "CLOSED_BY_WINDOW",
    "GROUP_HOLDOUT",
    "GROUP_TREATED",
    "KIND_NUDGE",
    "KIND_OUTCOME",
    "KIND_SEGMENT_CHANGE",
    "KIND_WIN_BACK",
    "MAX_PER_EVALUATION",
    "REASON_COMPLAINT",
    "REASON_RISK_RISE",
    "REASON_SILENCE",
    "REASON_SPEND_DROP",
    "SCHEME_ABCD",
    "SCHEME_LIFECYCLE",
    "SCHEME_QUADRANT",
    "SCHEME_RFM",
    "SCHEME_TIER",
    "detect_one",
]

KIND_SEGMENT_CHANGE = 1
KIND_WIN_BACK = 2
KIND_NUDGE = 3
KIND_OUTCOME = 4
SCHEME_RFM, SCHEME_TIER, SCHEME_ABCD, SCHEME_QUADRANT, SCHEME_LIFECYCLE = 1, 2, 3, 4, 5
REASON_SILENCE, REASON_RISK_RISE, REASON_COMPLAINT, REASON_SPEND_DROP = 1, 2, 3, 4
CLOSED_BY_PURCHASE, CLOSED_BY_WINDOW, CLOSED_BY_SUPERSEDED = 1, 2, 3
GROUP_TREATED, GROUP_HOLDOUT = 0, 1
# five schemes, one outcome closed, a win-back (and the outcome it supersedes), a nudge (and
# the outcome it supersedes)
MAX_PER_EVALUATION = 10

ALERT_DTYPE = np.dtype(
    [
        ("index", "i4"),  # position in the evaluated rows / scores
        ("kind", "u1"),  # KIND_*
        ("scheme", "u1"),  # SCHEME_* for segment changes
        ("reason", "u1"),  # REASON_* for win-backs (and for an outcome: its contact's)
        ("from_code", "u1"),
        ("to_code", "u1"),
        ("suppressed", "u1"),  # 1 = a contact over the budget: count, do not publish
        ("group", "u1"),  # contacts and outcomes: GROUP_TREATED or GROUP_HOLDOUT
        ("tier", "u1"),  # contacts and outcomes: emitted value tier code at the contact
        ("quadrant", "u1"),  # contacts and outcomes: emitted quadrant code at the contact
        ("contact_kind", "u1"),  # outcomes: KIND_NUDGE or KIND_WIN_BACK
        ("closed_by", "u1"),  # outcomes: CLOSED_BY_*
        ("responded", "u1"),  # outcomes: 1 = bought inside the window
        ("cents", "i8"),  # outcomes: the responding purchase's amount (cents)
        ("contact_at", "i8"),  # outcomes: event time of the contact (epoch s)
        # outcomes: the customer's outcomes closed and responded so far, this one included,
        # over all contacts and over contacts of this kind (cluster sums, docs/outcomes.md)
        ("all_n", "u2"),
        ("all_y", "u2"),
        ("kind_n", "u2"),
        ("kind_y", "u2"),
        ("reason_n", "u2"),  # ... and over contacts of this kind and reason
        ("reason_y", "u2"),
    ]
)


@njit(cache=True, nogil=True)
def _sticky(prev: int, plain: int, strict: int, lenient: int) -> int:
    """Schmitt trigger on an ordinal class where a smaller code is the better class.

    ``strict`` is the class with every cut raised by the margin (never better than
    ``plain``), ``lenient`` with every cut lowered (never worse). The class moves only when
    even the stricter reading says better, or even the more lenient one says worse.
    """
    if prev == 0:
        return plain
    if strict < prev:
        return strict
    if lenient > prev:
        return lenient
    return prev


@njit(cache=True, nogil=True)
def _sticky_quadrant(
    prev: int, fy: float, spend: float, fmean: float, smean: float, h: float
) -> int:
    if prev == 0:
        return quadrant_code(fy >= fmean, spend >= smean)
    prev_high_f = prev == 1 or prev == 4
    prev_high_s = prev == 1 or prev == 2
    high_f = fy >= _laxer(fmean, h) if prev_high_f else fy >= _stricter(fmean, h)
    high_s = spend >= _laxer(smean, h) if prev_high_s else spend >= _stricter(smean, h)
    return quadrant_code(high_f, high_s)


@njit(cache=True, nogil=True)
def _stricter(cut: float, h: float) -> float:
    """A cut moved up by the relative margin (by |cut|, so negative cuts move up too)."""
    return cut + h * abs(cut)


@njit(cache=True, nogil=True)
def _laxer(cut: float, h: float) -> float:
    """A cut moved down by the relative margin."""
    return cut - h * abs(cut)


@njit(cache=True, nogil=True)
def _emit(  # type: ignore[no-untyped-def]
    out, n: int, index: int, kind: int, scheme: int, reason: int, frm: int, to: int, sup: int
) -> int:
    a = out[n]
    a.index = index
    a.kind = kind
    a.scheme = scheme
    a.reason = reason
    a.from_code = frm
    a.to_code = to
    a.suppressed = sup
    a.group = 0
    a.tier = 0
    a.quadrant = 0
    a.contact_kind = 0
    a.closed_by = 0
    a.responded = 0
    a.cents = 0
    a.contact_at = 0
    a.all_n = 0
    a.all_y = 0
    a.kind_n = 0
    a.kind_y = 0
    a.reason_n = 0
    a.reason_y = 0
    return n + 1


@njit(cache=True, nogil=True)
def _count_response(closed, responded, scope: int, hit: int) -> None:  # type: ignore[no-untyped-def]
    """One more outcome of a customer in ``scope`` (saturating at the u2 range)."""
    if closed[scope] < 65535:
        closed[scope] += 1
        if hit:
            responded[scope] += 1


@njit(cache=True, nogil=True)
def _close_outcome(st, out, n: int, index: int, closed_by: int, cents: int) -> int:  # type: ignore[no-untyped-def]
    """Emit the outcome of the open contact window and close it."""
    n = _emit(out, n, index, KIND_OUTCOME, 0, int(st.contact_reason), 0, 0, 0)
    a = out[n - 1]
    a.group = st.contact_group
    a.tier = st.contact_tier
    a.quadrant = st.contact_quadrant
    a.contact_kind = st.contact_kind
    a.closed_by = closed_by
    a.responded = 1 if closed_by == CLOSED_BY_PURCHASE else 0
    a.cents = cents
    a.contact_at = st.contact_at
    scope = 1 if st.contact_kind == KIND_NUDGE else 2
    reason_scope = scope if st.contact_kind == KIND_NUDGE else 2 + int(st.contact_reason)
    _count_response(st.resp_n, st.resp_y, 0, a.responded)
    _count_response(st.resp_n, st.resp_y, scope, a.responded)
    if reason_scope != scope:
        _count_response(st.resp_n, st.resp_y, reason_scope, a.responded)
    a.all_n = st.resp_n[0]
    a.all_y = st.resp_y[0]
    a.kind_n = st.resp_n[scope]
    a.kind_y = st.resp_y[scope]
    a.reason_n = st.resp_n[reason_scope]
    a.reason_y = st.resp_y[reason_scope]
    st.contact_at = 0
    st.contact_kind = 0
    st.contact_reason = 0
    st.contact_group = 0
    st.contact_tier = 0
    st.contact_quadrant = 0
    for b in range(st.contact_ref.shape[0]):
        st.contact_ref[b] = 0
    return n


@njit(cache=True, nogil=True)
def _contact(  # type: ignore[no-untyped-def]
    st, sc, clock: int, P, kind: int, reason: int, group: int, tier: int, quad: int, out, n, index
) -> int:
    """One contact (a nudge or a win-back) under the customer's contact budget.

    Inside the cool-down (own usual gap clipped to [cooldown_min_days, cooldown_max_days], on
    the customer's clock, since the last contact sent) it is emitted suppressed and changes
    nothing else. Otherwise it is sent: an open response window is closed as superseded and
    the contact opens its own.
    """
    cooldown_s = min(max(sc.usual_gap_days, P.cooldown_min_days), P.cooldown_max_days) * DAY
    if st.last_contact > 0 and clock - int(st.last_contact) < cooldown_s:
        n = _emit(out, n, index, kind, 0, reason, 0, 0, 1)
        out[n - 1].group = group
        out[n - 1].tier = tier
        out[n - 1].quadrant = quad
        return int(n)
    if st.contact_at > 0:
        n = _close_outcome(st, out, n, index, CLOSED_BY_SUPERSEDED, 0)
    st.last_contact = clock
    st.contact_at = clock
    st.contact_kind = kind
    st.contact_reason = reason
    st.contact_group = group
    st.contact_tier = tier
    st.contact_quadrant = quad
    n = _emit(out, n, index, kind, 0, reason, 0, 0, 0)
    out[n - 1].group = group
    out[n - 1].tier = tier
    out[n - 1].quadrant = quad
    return int(n)


@njit(cache=True, nogil=True)
def detect_one(  # type: ignore[no-untyped-def]
    st,
    sc,
    clock: int,
    P,
    cuts,
    complaint_sev: int,
    purchase_ts: int,
    purchase_cents: int,
    group: int,
    out,
    n: int,
    index: int,
) -> int:
    """Alerts of one customer evaluated at ``clock`` (scores ``sc``), appended to ``out``.

    Updates the record's bookkeeping. ``complaint_sev`` is the severity of the open complaint
    that caused this evaluation (0 otherwise). ``purchase_ts`` is the event time of the
    purchase (amount ``purchase_cents`` > 0) that caused it, 0 otherwise: a purchase is
    evidence of life, so it never raises a win-back or a nudge (a condition it leaves
    standing is marked handled without an alert), and it is the response to an open contact
    window it falls in. ``group`` is the customer's holdout group, recorded with a contact.
    Order within one evaluation: segment changes, the open outcome closed (by this purchase
    or by the end of its window), the win-back, the nudge. Returns the new alert count.
    """
    h = P.class_hysteresis
    spend = sc.window_monetary
    # stored codes are class + 1; 0 = never classified (first classification is silent)
    old = np.empty(5, dtype=np.int64)
    new = np.empty(5, dtype=np.int64)
    old[0] = int(st.seg_rfm) - 1
    old[1] = int(st.seg_tier) - 1
    old[2] = int(st.seg_abcd) - 1
    old[3] = int(st.seg_quadrant) - 1
    old[4] = int(st.seg_lifecycle) - 1
    tier = 0
    abcd = 0
    quad = 0
    if sc.effective:
        # tier codes grow with value (4 = vip): flip them so smaller is better
        prev_tier = 5 - old[1] if old[1] > 0 else 0
        tier = 5 - _sticky(
            prev_tier,
            5 - int(sc.value_tier),
            5
            - tier_code(
                spend,
                _stricter(cuts.tier_vip, h),
                _stricter(cuts.tier_major, h),
                _stricter(cuts.tier_normal, h),
            ),
            5
            - tier_code(
                spend,
                _laxer(cuts.tier_vip, h),
                _laxer(cuts.tier_major, h),
                _laxer(cuts.tier_normal, h),
            ),
        )
        abcd = _sticky(
            max(old[2], 0),
            int(sc.abcd_class),
            abcd_code(
                spend,
                _stricter(cuts.abcd_a, h),
                _stricter(cuts.abcd_b, h),
                _stricter(cuts.abcd_c, h),
            ),
            abcd_code(
                spend, _laxer(cuts.abcd_a, h), _laxer(cuts.abcd_b, h), _laxer(cuts.abcd_c, h)
            ),
        )
        quad = _sticky_quadrant(
            max(old[3], 0),
            sc.freq_per_year,
            sc.window_avg_spend,
            cuts.quad_freq_mean,
            cuts.quad_spend_mean,
            h,
        )
    new[0] = int(sc.rfm_segment)
    new[1] = tier
    new[2] = abcd
    new[3] = quad
    new[4] = int(sc.lifecycle)
    for s in range(5):
        if old[s] >= 0 and new[s] != old[s]:
            n = _emit(out, n, index, KIND_SEGMENT_CHANGE, s + 1, 0, old[s], new[s], 0)
        elif old[s] < 0 and new[s] == 0:
            new[s] = -1  # not in the scheme yet (e.g. a prospect's RFM): stay unclassified
    st.seg_rfm = new[0] + 1
    st.seg_tier = new[1] + 1
    st.seg_abcd = new[2] + 1
    st.seg_quadrant = new[3] + 1
    st.seg_lifecycle = new[4] + 1

    # --- the open contact's outcome ---
    if st.contact_at > 0:
        opened = int(st.contact_at)
        end = opened + round(P.response_window_days * DAY)
        if purchase_ts > 0 and opened <= purchase_ts <= end:
            n = _close_outcome(st, out, n, index, CLOSED_BY_PURCHASE, purchase_cents)
        elif clock > end:
            n = _close_outcome(st, out, n, index, CLOSED_BY_WINDOW, 0)

    # --- win-back ---
    if st.purchase_days == 0:
        return n
    purchase = purchase_ts > 0
    reason = 0
    if complaint_sev >= P.complaint_alert_severity:
        reason = REASON_COMPLAINT
    risk = sc.churn_risk
    if st.flags & FLAG_RISK_HIGH:
        if risk < P.risk_threshold - P.risk_hysteresis:
            st.flags &= ~FLAG_RISK_HIGH
    elif sc.frequency >= 1 and risk >= P.risk_threshold:
        st.flags |= FLAG_RISK_HIGH
        if reason == 0:
            reason = REASON_RISK_RISE
    if not sc.spend_drop:
        st.flags &= ~FLAG_SPEND_DROP
    elif not (st.flags & FLAG_SPEND_DROP):
        st.flags |= FLAG_SPEND_DROP
        if reason == 0:
            reason = REASON_SPEND_DROP
    if not (st.flags & FLAG_SILENCE_SENT) and (sc.overdue or not sc.effective):
        st.flags |= FLAG_SILENCE_SENT
        if reason == 0:
            reason = REASON_SILENCE
    if reason != 0 and not purchase:
        n = _contact(st, sc, clock, P, KIND_WIN_BACK, reason, group, tier, quad, out, n, index)

    # --- repurchase nudge: at the predicted next purchase (minus the lead), once a cycle ---
    if (
        not (st.flags & FLAG_NUDGE_SENT)
        and st.purchase_days >= P.nudge_min_days
        and sc.nudge_at > 0
        and clock >= sc.nudge_at
    ):
        st.flags |= FLAG_NUDGE_SENT
        if (
            not purchase
            and sc.p_alive >= P.nudge_min_p_alive
            and (P.nudge_min_tier == 0 or tier >= P.nudge_min_tier)
        ):
            n = _contact(st, sc, clock, P, KIND_NUDGE, 0, group, tier, quad, out, n, index)
    return n
