"""Event folding: apply purchase / visit / complaint events to state records, one at a time.

Purchases are counted the BTYD way: a purchase occasion is a distinct UTC purchase day, so
several order lines on one day add spend but one occasion (a bitmap of the last
``DAY_BITS`` purchase days makes a late line on a known day count once). A zero amount is
not a purchase; a negative one is a refund. An open complaint takes one of
``COMPLAINT_SLOTS`` slots under its id, and only a resolution naming that id frees it.

The worker applies each customer's events in ``(ts, type, event_id)`` order (see
:mod:`engine.timeline`); sums, minima and maxima do not depend on that order, the bitmap
and the complaint slots do only for events older than the window they remember.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from engine.calendar import month_index
from engine.state import (
    FLAG_NUDGE_SENT,
    FLAG_SILENCE_SENT,
    KIND_COMPLAINT,
    KIND_PURCHASE,
    KIND_VISIT,
    RING_MONTHS,
)

__all__ = ["COMPLAINT_SCALE", "apply_event", "apply_events", "decay_factor"]

DAY = 86_400
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
    if st.purchase_days == 0 and st.refund_cents == 0 and head == 0:
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
def _day_bit(st, back: int) -> bool:  # type: ignore[no-untyped-def]
    return bool((st.day_bits[back // 64] >> np.uint64(back % 64)) & np.uint64(1) != 0)


@njit(cache=True, nogil=True)
def _set_day_bit(st, back: int) -> None:  # type: ignore[no-untyped-def]
    st.day_bits[back // 64] |= np.uint64(1) << np.uint64(back % 64)


@njit(cache=True, nogil=True)
def _shift_days(st, steps: int) -> None:  # type: ignore[no-untyped-def]
    """Move the day bitmap ``steps`` days forward (the last purchase day moved on)."""
    words = st.day_bits.shape[0]
    if steps >= words * 64:
        for w in range(words):
            st.day_bits[w] = 0
        return
    word_steps = steps // 64
    bit_steps = steps % 64
    for w in range(words - 1, -1, -1):
        src = w - word_steps
        value = np.uint64(0)
        if src >= 0:
            value = st.day_bits[src] << np.uint64(bit_steps)
            if bit_steps and src >= 1:
                value |= st.day_bits[src - 1] >> np.uint64(64 - bit_steps)
        st.day_bits[w] = value


@njit(cache=True, nogil=True)
def _new_purchase_day(st, day: int) -> bool:  # type: ignore[no-untyped-def]
    """Record ``day`` as a purchase day; True if it was not one before.

    Days within DAY_BITS of the last purchase day are known exactly. An older day (a late
    event months behind the customer's newest purchase) is known only if it is the first or
    the previous purchase day; otherwise it is taken as new (documented in docs/scoring.md).
    """
    last_day = int(st.last_purchase) // DAY
    if day > last_day:
        _shift_days(st, day - last_day)
        _set_day_bit(st, 0)
        return True
    back = last_day - day
    if back < st.day_bits.shape[0] * 64:
        if _day_bit(st, back):
            return False
        _set_day_bit(st, back)
        return True
    known = (int(st.first_purchase) // DAY, int(st.prev_purchase) // DAY)
    return day != known[0] and day != known[1]


@njit(cache=True, nogil=True)
def _purchase(st, t: int, cents: int) -> None:  # type: ignore[no-untyped-def]
    if cents == 0:
        return  # not a purchase: a zero-amount line adds neither an occasion nor spend
    if cents < 0:
        _ring_add(st, t, cents, 0)
        st.refund_cents += -cents
        return
    day = t // DAY
    if st.purchase_days == 0:
        _ring_add(st, t, cents, 1)
        st.first_purchase = t
        st.first_day_cents = cents
        st.last_purchase = t
        st.prev_purchase = 0
        for w in range(st.day_bits.shape[0]):
            st.day_bits[w] = 0
        _set_day_bit(st, 0)
        st.purchase_days = 1
    else:
        last_day = int(st.last_purchase) // DAY
        fresh = _new_purchase_day(st, day)
        _ring_add(st, t, cents, 1 if fresh else 0)
        first_day = int(st.first_purchase) // DAY
        if day < first_day:
            st.first_purchase = t  # the old first day becomes a repeat purchase day
            st.first_day_cents = cents
        elif day == first_day:
            st.first_day_cents += cents
            if t < st.first_purchase:
                st.first_purchase = t
        if day > last_day:
            # a newer purchase day starts a new cycle: it re-arms the silence alert and the nudge
            st.flags &= ~(FLAG_SILENCE_SENT | FLAG_NUDGE_SENT)
            st.prev_purchase = st.last_purchase
            st.last_purchase = t
        elif day == last_day:
            if t > st.last_purchase:
                st.last_purchase = t
        elif day == int(st.prev_purchase) // DAY:
            if t > st.prev_purchase:
                st.prev_purchase = t
        elif day > int(st.prev_purchase) // DAY:
            st.prev_purchase = t
        if fresh and st.purchase_days < _U4_MAX:
            st.purchase_days += 1
    if st.purchase_lines < _U4_MAX:
        st.purchase_lines += 1
    st.gross_cents += cents


@njit(cache=True, nogil=True)
def _complaint(  # type: ignore[no-untyped-def]
    st, t: int, severity: int, resolved: int, key: int, refers: int, halflife_days: float
) -> None:
    if resolved:
        if refers:
            # a resolution notice: it cancels the open complaint it names, and only that one
            for s in range(st.complaint_ids.shape[0]):
                if st.complaint_ids[s] == key:
                    st.complaint_ids[s] = 0
                    st.complaint_opened[s] = 0
                    if st.complaints_resolved < _U2_MAX:
                        st.complaints_resolved += 1
                    break
        return  # a complaint filed already resolved leaves nothing open
    if st.complaints_open < _U2_MAX:
        st.complaints_open += 1
    # an open slot for matched resolutions; when all are taken the oldest gives way
    slot = 0
    for s in range(st.complaint_ids.shape[0]):
        if st.complaint_ids[s] == 0:
            slot = s
            break
        if st.complaint_opened[s] < st.complaint_opened[slot]:
            slot = s
    st.complaint_ids[slot] = key
    st.complaint_opened[slot] = t
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
def apply_event(st, ev, complaint_halflife_days: float) -> None:  # type: ignore[no-untyped-def]
    """Fold one event (an EVENT_DTYPE record) into one state record in place."""
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
        _complaint(
            st, t, ev.severity, ev.resolved, ev.complaint, ev.refers, complaint_halflife_days
        )


@njit(cache=True, nogil=True)
def apply_events(
    states: npt.NDArray[np.void],
    events: npt.NDArray[np.void],
    complaint_halflife_days: float,
) -> None:
    """Fold ``events`` (EVENT_DTYPE, in the order given) into ``states[events.row]`` in place."""
    for k in range(events.shape[0]):
        ev = events[k]
        apply_event(states[ev.row], ev, complaint_halflife_days)
