"""Alert detection: pure comparisons of the last emitted segments with freshly evaluated scores.

One call of :func:`detect_one` is one evaluation of one customer (the driver is
:mod:`engine.timeline`, which evaluates each customer at each of its event and due times, so
every transition is seen). It emits at most one change per scheme and at most one win-back,
and updates the record's bookkeeping (``seg_*``, ``flags``, ``last_winback``) so the same
condition does not fire twice:

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
  hysteresis), ``silence`` (overdue relative to the customer's own rhythm, or to the
  population's for one-time buyers; once per last purchase day). An evaluation caused by a
  purchase never emits a win-back (a purchase is evidence of life; conditions it leaves
  standing are marked handled). A win-back inside the customer's cool-down (own usual gap
  clipped to [cooldown_min, cooldown_max] days, on the customer's own clock) is marked
  suppressed: the caller counts it and does not publish it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from engine.scoring import abcd_code, quadrant_code, tier_code
from engine.scoring_params import DAY, ScoringParams
from engine.state import FLAG_RISK_HIGH, FLAG_SILENCE_SENT

__all__ = [
    "ALERT_DTYPE",
    "KIND_SEGMENT_CHANGE",
    "KIND_WIN_BACK",
    "MAX_PER_EVALUATION",
    "REASON_COMPLAINT",
    "REASON_RISK_RISE",
    "REASON_SILENCE",
    "SCHEME_ABCD",
    "SCHEME_LIFECYCLE",
    "SCHEME_QUADRANT",
    "SCHEME_RFM",
    "SCHEME_TIER",
    "detect_alerts",
    "detect_one",
]

KIND_SEGMENT_CHANGE = 1
KIND_WIN_BACK = 2
SCHEME_RFM, SCHEME_TIER, SCHEME_ABCD, SCHEME_QUADRANT, SCHEME_LIFECYCLE = 1, 2, 3, 4, 5
REASON_SILENCE, REASON_RISK_RISE, REASON_COMPLAINT = 1, 2, 3
MAX_PER_EVALUATION = 6  # five schemes and one win-back

ALERT_DTYPE = np.dtype(
    [
        ("index", "i4"),  # position in the evaluated rows / scores
        ("kind", "u1"),  # KIND_*
        ("scheme", "u1"),  # SCHEME_* for segment changes
        ("reason", "u1"),  # REASON_* for win-backs
        ("from_code", "u1"),
        ("to_code", "u1"),
        ("suppressed", "u1"),  # 1 = inside the cool-down: count, do not publish
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
    return n + 1


@njit(cache=True, nogil=True)
def detect_one(  # type: ignore[no-untyped-def]
    st, sc, clock: int, P, cuts, complaint_sev: int, purchase: bool, out, n: int, index: int
) -> int:
    """Alerts of one customer evaluated at ``clock`` (scores ``sc``), appended to ``out``.

    Updates the record's bookkeeping. ``complaint_sev`` is the severity of the open complaint
    that caused this evaluation (0 otherwise). ``purchase`` says a purchase caused it: a
    purchase is evidence of life, so it never raises a win-back; a risk or silence condition
    it leaves standing is marked handled without an alert. Returns the new alert count.
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

    # --- win-back ---
    if st.purchase_days == 0:
        return n
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
    if not (st.flags & FLAG_SILENCE_SENT) and (sc.overdue or not sc.effective):
        st.flags |= FLAG_SILENCE_SENT
        if reason == 0:
            reason = REASON_SILENCE
    if reason == 0 or purchase:
        return n
    cooldown_s = min(max(sc.usual_gap_days, P.cooldown_min_days), P.cooldown_max_days) * DAY
    suppressed = st.last_winback > 0 and clock - int(st.last_winback) < cooldown_s
    if not suppressed:
        st.last_winback = clock
    return _emit(out, n, index, KIND_WIN_BACK, 0, reason, 0, 0, 1 if suppressed else 0)


@njit(cache=True, nogil=True)
def _detect(states, rows, scores, clock, P, cuts, complaint_sev, out) -> int:  # type: ignore[no-untyped-def]
    n = 0
    for k in range(rows.shape[0]):
        n = detect_one(
            states[rows[k]], scores[k], clock, P, cuts, int(complaint_sev[k]), False, out, n, k
        )
    return n


def detect_alerts(
    states: npt.NDArray[np.void],
    rows: npt.NDArray[np.int32],
    scores: npt.NDArray[np.void],
    clock: int,
    params: ScoringParams,
    cuts: tuple[float, ...],
    complaint_sev: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.void]:
    """Alerts for ``states[rows]`` given their ``scores`` at ``clock``; updates bookkeeping.

    ``complaint_sev`` (aligned with ``rows``) is the severity of an open complaint causing
    each evaluation, 0 for none. The streaming driver (:mod:`engine.timeline`) calls
    :func:`detect_one` per evaluation instead.
    """
    if complaint_sev is None:
        complaint_sev = np.zeros(rows.shape[0], dtype=np.uint8)
    out = np.zeros(rows.shape[0] * MAX_PER_EVALUATION, dtype=ALERT_DTYPE)
    count = _detect(states, rows, scores, np.int64(clock), params, cuts, complaint_sev, out)
    return out[:count]
