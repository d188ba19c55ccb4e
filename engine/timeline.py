"""Per-customer event-time evaluation: every customer at its own event and due times.

The streaming worker and the timer sweep both hand a batch to :func:`run_timeline`: for
each customer (state row) it walks that customer's events in ``(ts, type, event_id)``
order and evaluates the customer

- at each of its own due times up to and including the next event's ``ts`` (a *timer*
  evaluation at exactly the due time, with the state of the events before it),
- at the ``ts`` of each event, right after folding it in (an *event* evaluation), and
- after its last event, at each due time up to the partition watermark.

A late event (older than the time the customer was already evaluated at) is folded in
exactly and evaluated at the customer's own clock, so it never rewrites what was said
before; its alerts are new ones anchored on it. Nothing here depends on where a batch was
cut: a due time between two of a customer's events is evaluated at that due time whether
the watermark passed it in one batch or the next event brings it along.

Each evaluation runs the alert step (:func:`engine.alert_rules.detect_one`); alerts come back
with their cause (the event's index, or the due time), the evaluation time and the scores
after (and, for segment changes, just before) the cause.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from engine.alert_rules import ALERT_DTYPE, KIND_SEGMENT_CHANGE, MAX_PER_EVALUATION, detect_one
from engine.kernels import apply_event
from engine.scoring import SCORES_DTYPE, PopulationCuts, _evaluate_core, _evaluate_one, _fill_value
from engine.scoring_params import DAY, ScoringParams
from engine.state import FLAG_NUDGE_SENT, FLAG_RISK_HIGH, KIND_COMPLAINT, KIND_PURCHASE, MAX_TS

__all__ = [
    "TIMELINE_ALERT_DTYPE",
    "Timeline",
    "customer_slices",
    "order_events",
    "run_timeline",
    "warm_up",
]

# An alert with where it came from; score indices point into Timeline.scores.
TIMELINE_ALERT_DTYPE = np.dtype(
    [
        *ALERT_DTYPE.descr,  # index is the customer's state row
        ("event", "i4"),  # index of the causing event in the events array, -1 = timer
        ("due", "i8"),  # timer: the due time evaluated (epoch s); 0 for events
        ("clock", "i8"),  # the event time the customer was evaluated at
        ("after", "i4"),  # scores after the cause
        ("before", "i4"),  # segment changes: scores just before the cause (-1 otherwise)
    ]
)
_MAX_DUE_STEPS = 10_000  # due times per customer and call (a guard, far above real chains)
_REARM_HORIZON_S = 730 * DAY  # how far ahead a risk re-arm is watched with no other due time


class Timeline(NamedTuple):
    """What one call produced."""

    alerts: npt.NDArray[np.void]  # TIMELINE_ALERT_DTYPE, in evaluation order per customer
    # SCORES_DTYPE rows referenced by the alerts (complete); rows no alert refers to lack the
    # value scores (expected_purchases_90d, clv: NaN), which cost most of an evaluation
    scores: npt.NDArray[np.void]
    final: npt.NDArray[np.void]  # SCORES_DTYPE, per processed row: its latest evaluation
    evaluated: npt.NDArray[np.bool_]  # per processed row: evaluated at all in this call


def order_events(
    rows: npt.NDArray[np.int32],
    ts: npt.NDArray[np.int64],
    kinds: npt.NDArray[np.uint8],
    event_ids: npt.NDArray[np.str_],
) -> npt.NDArray[np.intp]:
    """The permutation that sorts events by (row, ts, type, event_id)."""
    return np.lexsort((event_ids, kinds, ts, rows))


def customer_slices(
    sorted_rows: npt.NDArray[np.int32], process_rows: npt.NDArray[np.int32]
) -> npt.NDArray[np.int64]:
    """Start offsets (len(process_rows) + 1) of each processed row's events in a sorted array."""
    starts = np.searchsorted(sorted_rows, process_rows, side="left")
    ends = np.searchsorted(sorted_rows, process_rows, side="right")
    out = np.empty(process_rows.shape[0] + 1, dtype=np.int64)
    out[:-1] = starts
    out[-1] = ends[-1] if process_rows.shape[0] else 0
    if process_rows.shape[0] > 1 and not np.array_equal(starts[1:], ends[:-1]):
        raise ValueError("process_rows must list every row of the sorted events, in order")
    return out


@njit(cache=True, nogil=True)
def _evaluate_at(  # type: ignore[no-untyped-def]
    st,
    before,
    clock,
    cause_event,
    due,
    sev,
    purchase_ts,
    purchase_cents,
    group,
    P,
    cuts,
    rfm_map,
    alerts,
    n_alerts,
    scores,
    n_scores,
    row,
    final,
    fi,
    final_filled,
):
    """One evaluation: scores, alert step, bookkeeping. Returns (n_alerts, n_scores), or
    (-1, -1) when an output array is full."""
    # room for the scores after, before, and a scratch row (the risk re-arm watch)
    if n_scores + 3 > scores.shape[0] or n_alerts + MAX_PER_EVALUATION > alerts.shape[0]:
        return -1, -1
    sc = scores[n_scores]
    _evaluate_core(st, clock, P, cuts, rfm_map, sc)
    first = n_alerts
    n_alerts = detect_one(
        st, sc, clock, P, cuts, sev, purchase_ts, purchase_cents, group, alerts, n_alerts, row
    )
    filled = n_alerts > first
    if filled:  # the alerts show these scores (the alert step changes no BTYD input)
        _fill_value(st, clock, P, sc)
    after = n_scores
    n_scores += 1
    before_at = -1
    for j in range(first, n_alerts):
        a = alerts[j]
        if a.kind == KIND_SEGMENT_CHANGE and before_at < 0:
            before_at = n_scores
            if cause_event >= 0:
                _evaluate_one(before, clock, P, cuts, rfm_map, scores[n_scores])
            else:
                _evaluate_one(st, max(clock - 1, 1), P, cuts, rfm_map, scores[n_scores])
            n_scores += 1
        a.event = cause_event
        a.due = due
        a.clock = clock
        a.after = after
        a.before = before_at if a.kind == KIND_SEGMENT_CHANGE else -1
    st.clock = clock
    st.due = min(max(sc.due, 0), MAX_TS)
    # the due times of the contact bookkeeping: this cycle's nudge, the open window's end
    if (
        not (st.flags & FLAG_NUDGE_SENT)
        and st.purchase_days >= P.nudge_min_days
        and clock < sc.nudge_at <= MAX_TS
    ):
        st.due = _earlier_due(st.due, sc.nudge_at)
    if st.contact_at > 0:
        closes = int(st.contact_at) + round(P.response_window_days * DAY) + 1
        if clock < closes <= MAX_TS:
            st.due = _earlier_due(st.due, closes)
    if st.flags & FLAG_RISK_HIGH:
        rearm = _risk_rearm_time(st, sc, clock, P, cuts, rfm_map, scores[n_scores])
        if rearm > 0 and (st.due == 0 or rearm < st.due):
            st.due = rearm
    final[fi] = sc
    final_filled[fi] = filled
    return n_alerts, n_scores


@njit(cache=True, nogil=True)
def _earlier_due(due: int, when: int) -> int:
    """``when`` if it comes before ``due`` (0 = no due time yet)."""
    return when if due == 0 or when < due else due


@njit(cache=True, nogil=True)
def _risk_below(st, t, level, P, cuts, rfm_map, scratch) -> bool:  # type: ignore[no-untyped-def]
    _evaluate_core(st, t, P, cuts, rfm_map, scratch)
    return bool(scratch.churn_risk < level)


@njit(cache=True, nogil=True)
def _risk_rearm_time(st, sc, clock, P, cuts, rfm_map, scratch) -> int:  # type: ignore[no-untyped-def]
    """First second after ``clock`` (before the next due time) at which a risk above the
    threshold falls below threshold minus hysteresis with no new event: the risk_rise alert
    re-arms there, so it must be evaluated there (0 = not before the next due time).

    Between events, P(alive) only falls (at UTC midnights) and a visit's intent credit only
    expires; the one thing that lowers risk is complaints decaying. Without a complaint term,
    or when even a fully decayed one would leave the risk above the re-arm level, nothing
    can happen. Otherwise risk falls within a day and can only jump up at midnight, so the
    last second of each day is checked, and the crossing day is bisected to the second.
    """
    level = P.risk_threshold - P.risk_hysteresis
    up = P.complaint_weight * sc.complaint_level + P.unresolved_weight * sc.unresolved_level
    if up <= 0.0 or sc.frequency < 1:
        return 0
    down = min(up, P.adjust_max_up) - sc.risk_adjustment  # the visit-intent credit, >= 0
    if 1.0 - sc.p_alive * math.exp(down) >= level:
        return 0  # even with every complaint decayed away the risk stays above the level
    limit = int(st.due) if st.due != 0 else clock + _REARM_HORIZON_S
    day_end = (clock // DAY + 1) * DAY - 1
    while day_end < limit:
        if _risk_below(st, day_end, level, P, cuts, rfm_map, scratch):
            lo = max(clock, day_end - DAY + 1)  # risk is above the level at lo (or lo is clock)
            hi = day_end
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _risk_below(st, mid, level, P, cuts, rfm_map, scratch):
                    hi = mid
                else:
                    lo = mid
            return int(hi)
        day_end += DAY
    return 0


@njit(cache=True, nogil=True)
def _run_dues(  # type: ignore[no-untyped-def]
    st,
    scratch,
    until,
    group,
    P,
    cuts,
    rfm_map,
    alerts,
    n_alerts,
    scores,
    n_scores,
    row,
    final,
    fi,
    final_filled,
):
    steps = 0
    while st.due != 0 and st.due <= until and steps < _MAX_DUE_STEPS:
        d = int(st.due)
        n_alerts, n_scores = _evaluate_at(
            st,
            scratch,
            d,
            -1,
            d,
            0,
            0,
            0,
            group,
            P,
            cuts,
            rfm_map,
            alerts,
            n_alerts,
            scores,
            n_scores,
            row,
            final,
            fi,
            final_filled,
        )
        if n_alerts < 0:
            return -1, -1, steps
        if st.due != 0 and st.due <= d:
            st.due = d + 1  # a due time must move forward; never loop on one second
        steps += 1
    return n_alerts, n_scores, steps


@njit(cache=True, nogil=True)
def _run(  # type: ignore[no-untyped-def]
    states,
    events,
    starts,
    process_rows,
    watermark,
    P,
    cuts,
    rfm_map,
    halflife,
    holdout,
    alerts,
    scores,
    final,
    evaluated,
):
    scratch = np.zeros(1, dtype=states.dtype)
    final_filled = np.zeros(process_rows.shape[0], dtype=np.bool_)  # final has its value scores
    n_alerts = 0
    n_scores = 0
    for i in range(process_rows.shape[0]):
        row = process_rows[i]
        st = states[row]
        group = int(holdout[row])
        for k in range(starts[i], starts[i + 1]):
            ev = events[k]
            t = int(ev.ts)
            if st.clock == 0 or t >= st.clock:
                n_alerts, n_scores, steps = _run_dues(
                    st,
                    scratch[0],
                    t,
                    group,
                    P,
                    cuts,
                    rfm_map,
                    alerts,
                    n_alerts,
                    scores,
                    n_scores,
                    row,
                    final,
                    i,
                    final_filled,
                )
                if n_alerts < 0:
                    return -1, -1
                clock = t
            else:
                clock = int(st.clock)  # late: evaluated at the customer's own clock
            scratch[0] = st
            apply_event(st, ev, halflife)
            sev = 0
            if ev.kind == KIND_COMPLAINT and ev.resolved == 0:
                sev = int(ev.severity)
            bought = ev.kind == KIND_PURCHASE and ev.cents > 0
            n_alerts, n_scores = _evaluate_at(
                st,
                scratch[0],
                clock,
                k,
                0,
                sev,
                t if bought else 0,
                int(ev.cents) if bought else 0,
                group,
                P,
                cuts,
                rfm_map,
                alerts,
                n_alerts,
                scores,
                n_scores,
                row,
                final,
                i,
                final_filled,
            )
            if n_alerts < 0:
                return -1, -1
            evaluated[i] = True
        n_alerts, n_scores, steps = _run_dues(
            st,
            scratch[0],
            watermark,
            group,
            P,
            cuts,
            rfm_map,
            alerts,
            n_alerts,
            scores,
            n_scores,
            row,
            final,
            i,
            final_filled,
        )
        if n_alerts < 0:
            return -1, -1
        if steps > 0:
            evaluated[i] = True
        if evaluated[i] and not final_filled[i]:  # the score update, at the last evaluation
            _fill_value(st, int(st.clock), P, final[i])
    return n_alerts, n_scores


def run_timeline(
    states: npt.NDArray[np.void],
    events: npt.NDArray[np.void],
    starts: npt.NDArray[np.int64],
    process_rows: npt.NDArray[np.int32],
    watermark: int,
    params: ScoringParams,
    cuts: PopulationCuts,
    rfm_map: npt.NDArray[np.uint8],
    holdout: npt.NDArray[np.uint8] | None = None,
) -> Timeline:
    """Evaluate ``states[process_rows]`` at their own times; updates ``states`` in place.

    ``holdout`` (u1 per state row, 1 = held out; default all treated) is each customer's
    control group, recorded with its contacts and their outcomes.

    ``events`` (EVENT_DTYPE) are sorted by (row, ts, type, event_id) (see
    :func:`order_events`); the events of ``process_rows[i]`` are
    ``events[starts[i]:starts[i + 1]]`` (see :func:`customer_slices`). A row with no events
    is evaluated only at its due times up to ``watermark`` (the timer sweep).
    """
    work = states.copy()
    if holdout is None:
        holdout = np.zeros(states.shape[0], dtype=np.uint8)
    capacity = 8 * (events.shape[0] + process_rows.shape[0]) + 64
    while True:
        alerts = np.zeros(capacity * MAX_PER_EVALUATION // 4 + 16, dtype=TIMELINE_ALERT_DTYPE)
        scores = np.zeros(capacity, dtype=SCORES_DTYPE)
        final = np.zeros(process_rows.shape[0], dtype=SCORES_DTYPE)
        evaluated = np.zeros(process_rows.shape[0], dtype=np.bool_)
        n_alerts, n_scores = _run(
            work,
            events,
            starts,
            process_rows,
            np.int64(watermark),
            params,
            cuts,
            rfm_map,
            params.complaint_halflife_days,
            holdout,
            alerts,
            scores,
            final,
            evaluated,
        )
        if n_alerts >= 0:
            break
        work[:] = states  # an output array was full: start again with room to spare
        capacity *= 4
    states[:] = work
    return Timeline(alerts[:n_alerts], scores[:n_scores], final, evaluated)


def warm_up(params: ScoringParams, cuts: PopulationCuts, rfm_map: npt.NDArray[np.uint8]) -> None:
    """Compile (or load from numba's cache) the timeline kernels on a one-event batch, so the
    first real batch does not stall the worker's event loop while they compile."""
    from engine.state import new_events, new_states

    states = new_states(1)
    events = new_events(1)
    events["kind"] = KIND_PURCHASE
    events["ts"] = 86_400
    events["cents"] = 100
    rows = np.zeros(1, dtype=np.int32)
    run_timeline(
        states, events, customer_slices(events["row"], rows), rows, 86_400, params, cuts, rfm_map
    )
