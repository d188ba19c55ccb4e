"""Event folding: apply a batch of purchase / visit / complaint events to state records.

Every rule is a commutative update (min, max, top-2, integer sums, saturating counts), so
the resulting scores do not depend on the order of events — in particular on the order in
which the three input topics interleave, nor on how a stream is cut into batches. The one
exception is the decayed complaint score, whose fixed-point rounding depends on the order
of complaints with *different* timestamps (they arrive in one topic, so their order is
stable); complaints with equal timestamps commute exactly.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from engine.calendar import month_index
from engine.state import (
    FLAG_SILENCE_SENT,
    KIND_COMPLAINT,
    KIND_PURCHASE,
    KIND_VISIT,
    RING_MONTHS,
)

__all__ = ["COMPLAINT_SCALE", "apply_events", "decay_factor"]

COMPLAINT_SCALE = 1000  # complaint_score is severity x 1000, fixed point
_U4_MAX = 4294967295
_U2_MAX = 65535
_I4_MAX = 2147483647
_I4_MIN = -2147483648


@njit(cache=True, nogil=True)
def decay_factor(elapsed_s: float, halflife_days: float) -> float:
    """Weight left of a complaint ``elapsed_s`` seconds old (half-life decay)."""
    if elapsed_s <= 0.0:
        return 1.0
    return math.pow(2.0, -elapsed_s / (halflife_days * 86400.0))


@njit(cache=True, nogil=True)
def _ring_add(st, t: int, cents: int, count: int) -> None:  # type: ignore[no-untyped-def]
    """Add to the calendar-month bucket of ``t``; advance (and clear) the ring if newer."""
    k = month_index(t)
    head = st.ring_head
    if st.n_purchases == 0 and st.refund_cents == 0 and head == 0:
        head = k  # first monetary event: the ring starts here
        st.ring_head = k
    if k > head:
        steps = min(k - head, RING_MONTHS)
        for j in range(1, steps + 1):
            slot = (head + j) % RING_MONTHS
            st.ring_cents[slot] = 0
            st.ring_count[slot] = 0
        st.ring_head = k
    elif k <= head - RING_MONTHS:
        return  # older than the ring: counts only in lifetime totals
    slot = k % RING_MONTHS
    total = st.ring_cents[slot] + cents
    st.ring_cents[slot] = max(min(total, _I4_MAX), _I4_MIN)
    if count > 0 and st.ring_count[slot] < 255:
        st.ring_count[slot] += 1


@njit(cache=True, nogil=True)
def _touch(st, t: int) -> None:  # type: ignore[no-untyped-def]
    if st.first_seen == 0 or t < st.first_seen:
        st.first_seen = t
    if t > st.last_event:
        st.last_event = t


@njit(cache=True, nogil=True)
def _purchase(st, t: int, cents: int) -> None:  # type: ignore[no-untyped-def]
    if cents < 0:
        _ring_add(st, t, cents, 0)
        st.refund_cents += -cents
        return
    _ring_add(st, t, cents, 1)
    if st.n_purchases == 0:
        st.first_purchase = t
        st.first_amount_cents = cents
        st.last_purchase = t
        st.prev_purchase = 0
    else:
        if t < st.first_purchase:
            st.first_purchase = t
            st.first_amount_cents = cents
        elif t == st.first_purchase and cents > st.first_amount_cents:
            st.first_amount_cents = cents
        if t >= st.last_purchase:
            if t > st.last_purchase:
                st.flags &= ~FLAG_SILENCE_SENT  # a newer purchase re-arms the silence alert
            st.prev_purchase = st.last_purchase
            st.last_purchase = t
        elif t > st.prev_purchase:
            st.prev_purchase = t
    if st.n_purchases < _U4_MAX:
        st.n_purchases += 1
    st.gross_cents += cents


@njit(cache=True, nogil=True)
def _complaint(st, t: int, severity: int, resolved: int, halflife_days: float) -> None:  # type: ignore[no-untyped-def]
    if resolved:
        if st.complaints_resolved < _U2_MAX:
            st.complaints_resolved += 1
        return
    if st.complaints_open < _U2_MAX:
        st.complaints_open += 1
    add = severity * COMPLAINT_SCALE
    if st.complaint_ts == 0:
        score = add
        st.complaint_ts = t
    elif t >= st.complaint_ts:
        kept = round(st.complaint_score * decay_factor(float(t - st.complaint_ts), halflife_days))
        score = kept + add
        st.complaint_ts = t
    else:
        score = st.complaint_score + round(
            add * decay_factor(float(st.complaint_ts - t), halflife_days)
        )
    st.complaint_score = min(score, _U4_MAX)


@njit(cache=True, nogil=True)
def apply_events(
    states: npt.NDArray[np.void],
    events: npt.NDArray[np.void],
    complaint_halflife_days: float,
) -> npt.NDArray[np.uint8]:
    """Fold ``events`` (EVENT_DTYPE, in arrival order) into ``states`` in place.

    Returns, per state row, the largest severity of an open complaint in this batch (0 if
    none): the alert step uses it for complaint win-backs.
    """
    complaint_sev = np.zeros(states.shape[0], dtype=np.uint8)
    for k in range(events.shape[0]):
        ev = events[k]
        st = states[ev.row]
        t = ev.ts
        _touch(st, t)
        if ev.kind == KIND_PURCHASE:
            _purchase(st, t, ev.cents)
        elif ev.kind == KIND_VISIT:
            if st.n_visits < _U4_MAX:
                st.n_visits += 1
            if t > st.last_visit:
                st.last_visit = t
        elif ev.kind == KIND_COMPLAINT:
            _complaint(st, t, ev.severity, ev.resolved, complaint_halflife_days)
            if not ev.resolved and ev.severity > complaint_sev[ev.row]:
                complaint_sev[ev.row] = ev.severity
    return complaint_sev
