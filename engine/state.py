"""The per-customer state record: one packed numpy structured dtype, its units and helpers.

The record is what Redis stores per customer (``STATE_DTYPE.itemsize`` bytes). Times are
unsigned 32-bit epoch seconds (UTC, valid 1970-01-01T00:00:01 .. 2106-02-07); 0 means
"never". Money is in integer cents so that sums are exact and independent of event order.
Everything in the record is folded by :mod:`engine.kernels` from the customer's events; the
``seg_*`` / ``flags`` / ``last_winback`` / ``due`` fields are written by the alert step.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "EVENT_DTYPE",
    "FIELD_DOCS",
    "FLAG_RISK_HIGH",
    "FLAG_SILENCE_SENT",
    "KIND_COMPLAINT",
    "KIND_PURCHASE",
    "KIND_VISIT",
    "MAX_TS",
    "RING_MONTHS",
    "STATE_DTYPE",
    "STATE_VERSION",
    "decode_states",
    "encode_state",
    "new_events",
    "new_states",
]

STATE_VERSION: Final = 1
RING_MONTHS: Final = 12  # trailing windows of up to 12 calendar months
MAX_TS: Final = 2**32 - 1

# flags bits (alert bookkeeping, not scores)
FLAG_SILENCE_SENT: Final = 1  # a silence win-back was handled for the current last purchase
FLAG_RISK_HIGH: Final = 2  # churn risk is above the threshold; re-armed below thr - hysteresis

KIND_PURCHASE: Final = 1
KIND_VISIT: Final = 2
KIND_COMPLAINT: Final = 3

# (name, numpy type, shape, unit and meaning). Order is the byte layout.
_FIELDS: Final[list[tuple[str, str, tuple[int, ...], str]]] = [
    ("version", "u1", (), "record layout version (STATE_VERSION)"),
    ("flags", "u1", (), "alert bookkeeping bits: 1 silence handled, 2 risk high"),
    ("seg_rfm", "u1", (), "last emitted RFM segment code + 1 (0 = never classified)"),
    ("seg_tier", "u1", (), "last emitted value tier code + 1, with hysteresis"),
    ("seg_abcd", "u1", (), "last emitted A/B/C/D class code + 1, with hysteresis"),
    ("seg_quadrant", "u1", (), "last emitted quadrant code + 1, with hysteresis"),
    ("seg_lifecycle", "u1", (), "last emitted lifecycle stage code + 1"),
    ("complaints_open", "u2", (), "complaints reported with status open (count, saturating)"),
    ("complaints_resolved", "u2", (), "resolution notices received (count, saturating)"),
    ("first_seen", "u4", (), "earliest event time of any kind (epoch s)"),
    ("first_purchase", "u4", (), "earliest purchase time (epoch s)"),
    ("last_purchase", "u4", (), "latest purchase time (epoch s)"),
    ("prev_purchase", "u4", (), "second-latest purchase time (epoch s; 0 if < 2 purchases)"),
    ("last_visit", "u4", (), "latest visit time (epoch s)"),
    ("last_event", "u4", (), "latest event time of any kind (epoch s)"),
    ("complaint_ts", "u4", (), "time complaint_score refers to (epoch s)"),
    ("last_winback", "u4", (), "event time of the last win-back alert (epoch s, cool-down)"),
    ("due", "u4", (), "next time a time-driven score or alert can change (epoch s, 0 never)"),
    ("n_purchases", "u4", (), "purchase events, lifetime (refunds excluded); BTYD x = n - 1"),
    ("n_visits", "u4", (), "visit events, lifetime"),
    ("complaint_score", "u4", (), "decayed open-complaint severity x 1000 at complaint_ts"),
    ("ring_head", "i4", (), "month index (months since 1970-01) of the newest ring bucket"),
    ("gross_cents", "i8", (), "sum of purchase amounts, lifetime (cents)"),
    ("refund_cents", "i8", (), "sum of refund amounts as a positive number, lifetime (cents)"),
    ("first_amount_cents", "i8", (), "amount of the first purchase (largest if tied) (cents)"),
    ("ring_cents", "i4", (RING_MONTHS,), "net spend per calendar month, ring (cents)"),
    ("ring_count", "u1", (RING_MONTHS,), "purchases per calendar month, ring (saturates at 255)"),
]

STATE_DTYPE: Final = np.dtype([(name, kind, shape) for name, kind, shape, _ in _FIELDS])
FIELD_DOCS: Final[dict[str, str]] = {name: doc for name, _, _, doc in _FIELDS}

# One input event, already validated and resolved to a state row by the caller.
EVENT_DTYPE: Final = np.dtype(
    [
        ("row", "i4"),  # index into the states array
        ("kind", "u1"),  # KIND_*
        ("severity", "u1"),  # complaints: 1..5
        ("resolved", "u1"),  # complaints: 1 = resolution notice, 0 = open complaint
        ("ts", "i8"),  # event time, epoch seconds
        ("cents", "i8"),  # purchases: amount in cents (negative = refund)
    ]
)


def new_states(n: int) -> npt.NDArray[np.void]:
    """``n`` empty records of the current version."""
    states = np.zeros(n, dtype=STATE_DTYPE)
    states["version"] = STATE_VERSION
    return states


def new_events(n: int) -> npt.NDArray[np.void]:
    """``n`` zeroed event rows."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def encode_state(states: npt.NDArray[np.void], i: int) -> bytes:
    """The packed bytes of record ``i`` (what the store writes)."""
    return states[i : i + 1].tobytes()


def decode_states(blobs: list[bytes | None]) -> npt.NDArray[np.void]:
    """Records from stored blobs; ``None`` (unknown customer) becomes an empty record.

    Raises ValueError for a blob of the wrong size or version.
    """
    states = new_states(len(blobs))
    size = STATE_DTYPE.itemsize
    for i, blob in enumerate(blobs):
        if blob is None:
            continue
        if len(blob) != size:
            raise ValueError(f"state record has {len(blob)} bytes, expected {size}")
        states[i] = np.frombuffer(blob, dtype=STATE_DTYPE)[0]
        if states[i]["version"] != STATE_VERSION:
            raise ValueError(f"state record version {states[i]['version']} != {STATE_VERSION}")
    return states
