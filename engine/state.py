"""The per-customer state record: one packed numpy structured dtype, its units and helpers.

The record is what Redis stores per customer (``STATE_DTYPE.itemsize`` bytes). Times are
unsigned 32-bit epoch seconds (UTC, valid 1970-01-01T00:00:01 .. 2106-02-07); 0 means
"never". Money is in integer cents so that sums are exact and independent of event order.
Everything in the record is folded by :mod:`engine.kernels` from the customer's events; the
``seg_*`` / ``flags`` / ``last_contact`` / ``contact_*`` / ``due`` / ``clock`` fields are written
by the per-customer evaluation (:mod:`engine.timeline`); ``contact_ref`` (the open contact's
alert id) by the streaming layer, which makes the ids. Records of layout versions 1 and 2 are
upgraded on read (:func:`decode_records`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "COMPLAINT_SLOTS",
    "CONTACT_REF_BYTES",
    "DAY_BITS",
    "EVENT_DTYPE",
    "FIELD_DOCS",
    "FLAG_NUDGE_SENT",
    "FLAG_RISK_HIGH",
    "FLAG_SILENCE_SENT",
    "FLAG_SPEND_DROP",
    "KIND_COMPLAINT",
    "KIND_PURCHASE",
    "KIND_VISIT",
    "MAX_TS",
    "RESPONSE_SCOPES",
    "RING_MONTHS",
    "STATE_DTYPE",
    "STATE_DTYPE_V1",
    "STATE_DTYPE_V2",
    "STATE_VERSION",
    "DecodedRecords",
    "complaint_key",
    "decode_records",
    "decode_states",
    "encode_state",
    "new_events",
    "new_states",
    "upgrade_v1",
    "upgrade_v2",
]

STATE_VERSION: Final = 3
RING_MONTHS: Final = 12  # trailing windows of up to 12 calendar months
DAY_BITS: Final = 128  # purchase days remembered exactly, ending at the last purchase day
COMPLAINT_SLOTS: Final = 4  # open complaints tracked one by one (for matched resolutions)
MAX_TS: Final = 2**32 - 1

# flags bits (alert bookkeeping, not scores)
FLAG_SILENCE_SENT: Final = 1  # a silence win-back was handled for the current last purchase
FLAG_RISK_HIGH: Final = 2  # churn risk is above the threshold; re-armed below thr - hysteresis
FLAG_SPEND_DROP: Final = 4  # the spend-drop condition holds and was handled
FLAG_NUDGE_SENT: Final = 8  # this purchase cycle's nudge was handled (re-armed by a new day)
CONTACT_REF_BYTES: Final = 16  # an alert id: 16 bytes (32 hex characters)
# per-customer outcome counts: all contacts, nudges, win-backs, then win-backs of each reason
# (silence, risk_rise, complaint, spend_drop: 2 + the reason code)
RESPONSE_SCOPES: Final = 7

KIND_PURCHASE: Final = 1
KIND_VISIT: Final = 2
KIND_COMPLAINT: Final = 3

# (name, numpy type, shape, unit and meaning). Order is the byte layout.
_FIELDS: Final[list[tuple[str, str, tuple[int, ...], str]]] = [
    ("version", "u1", (), "record layout version (STATE_VERSION)"),
    (
        "flags",
        "u1",
        (),
        "alert bookkeeping bits: 1 silence handled, 2 risk high, 4 spend drop handled, "
        "8 nudge handled",
    ),
    ("seg_rfm", "u1", (), "last emitted RFM segment code + 1 (0 = never classified)"),
    ("seg_tier", "u1", (), "last emitted value tier code + 1, with hysteresis"),
    ("seg_abcd", "u1", (), "last emitted A/B/C/D class code + 1, with hysteresis"),
    ("seg_quadrant", "u1", (), "last emitted quadrant code + 1, with hysteresis"),
    ("seg_lifecycle", "u1", (), "last emitted lifecycle stage code + 1"),
    ("complaints_open", "u2", (), "complaints reported with status open (count, saturating)"),
    ("complaints_resolved", "u2", (), "resolutions that matched an open complaint (count)"),
    ("first_seen", "u4", (), "earliest event time of any kind (epoch s)"),
    ("first_purchase", "u4", (), "earliest purchase time (epoch s)"),
    ("last_purchase", "u4", (), "latest purchase time (epoch s)"),
    ("prev_purchase", "u4", (), "latest purchase on a day before last_purchase's day (0 none)"),
    ("last_visit", "u4", (), "latest visit time (epoch s)"),
    ("last_event", "u4", (), "latest event time of any kind (epoch s)"),
    ("complaint_ts", "u4", (), "time complaint_score refers to (epoch s)"),
    ("last_contact", "u4", (), "event time of the last contact sent (epoch s, contact budget)"),
    ("due", "u4", (), "next time a time-driven score or alert can change (epoch s, 0 never)"),
    ("clock", "u4", (), "event time the customer was last evaluated at (epoch s, 0 never)"),
    ("purchase_days", "u4", (), "distinct UTC purchase days, lifetime; BTYD x = days - 1"),
    ("purchase_lines", "u4", (), "purchase events with a positive amount, lifetime"),
    ("n_visits", "u4", (), "visit events, lifetime"),
    ("complaint_score", "u4", (), "decayed open-complaint severity x 1000 at complaint_ts"),
    ("ring_head", "i4", (), "month index (months since 1970-01) of the newest ring bucket"),
    ("gross_cents", "i8", (), "sum of purchase amounts, lifetime (cents)"),
    ("refund_cents", "i8", (), "sum of refund amounts as a positive number, lifetime (cents)"),
    ("first_day_cents", "i8", (), "spend on the first purchase day (cents)"),
    ("day_bits", "u8", (DAY_BITS // 64,), "purchase days: bit i = last purchase day - i"),
    ("complaint_ids", "u4", (COMPLAINT_SLOTS,), "open complaints: id digest (0 = free slot)"),
    ("complaint_opened", "u4", (COMPLAINT_SLOTS,), "open complaints: time filed (epoch s)"),
    ("ring_cents", "i4", (RING_MONTHS,), "net spend per calendar month, ring (cents)"),
    ("ring_count", "u1", (RING_MONTHS,), "purchase days per calendar month, ring (saturates)"),
    ("contact_at", "u4", (), "event time of the contact whose response window is open (0 none)"),
    ("contact_kind", "u1", (), "open contact: alert kind code (nudge or win-back)"),
    ("contact_reason", "u1", (), "open contact: win-back reason code (0 for a nudge)"),
    ("contact_group", "u1", (), "open contact: 0 treated, 1 held out"),
    ("contact_tier", "u1", (), "open contact: emitted value tier code at the contact"),
    ("contact_quadrant", "u1", (), "open contact: emitted quadrant code at the contact"),
    (
        "contact_ref",
        "u1",
        (CONTACT_REF_BYTES,),
        "open contact: its alert id (16 bytes; 0 = not yet known)",
    ),
    ("resp_version", "u4", (), "holdout version the outcome counts below belong to (digest)"),
    ("resp_n", "u2", (RESPONSE_SCOPES,), "outcomes closed: all, nudges, win-backs, by reason"),
    ("resp_y", "u2", (RESPONSE_SCOPES,), "of those, responded (same scopes)"),
]

STATE_DTYPE: Final = np.dtype([(name, kind, shape) for name, kind, shape, _ in _FIELDS])
FIELD_DOCS: Final[dict[str, str]] = {name: doc for name, _, _, doc in _FIELDS}
# Layout version 2 (sessions 3-4): no contact fields; the cool-down clock was last_winback.
STATE_DTYPE_V2: Final = np.dtype(
    [
        ("last_winback" if name == "last_contact" else name, kind, shape)
        for name, kind, shape, _ in _FIELDS
        if not name.startswith(("contact_", "resp_"))
    ]
)

# One input event, already validated and resolved to a state row by the caller.
EVENT_DTYPE: Final = np.dtype(
    [
        ("row", "i4"),  # index into the states array
        ("kind", "u1"),  # KIND_*
        ("severity", "u1"),  # complaints: 1..5
        ("resolved", "u1"),  # complaints: 1 = filed resolved / resolution notice, 0 = open
        ("ts", "i8"),  # event time, epoch seconds
        ("cents", "i8"),  # purchases: amount in cents (negative = refund)
        # complaints: digest of the complaint this event is about (its complaint_id, else its
        # own event_id); never 0 (see complaint_key)
        ("complaint", "u4"),
        ("refers", "u1"),  # complaints: 1 = carries a complaint_id naming another complaint
    ]
)


def complaint_key(identity: str) -> int:
    """The 32-bit slot key of a complaint id (never 0, which marks a free slot).

    An open complaint is known by its ``complaint_id`` if it has one, else by its
    ``event_id``; a resolution names it by ``complaint_id``.
    """
    digest = int.from_bytes(hashlib.blake2b(identity.encode("utf-8"), digest_size=4).digest())
    return digest or 1


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


# Layout version 1 (sessions 1-2): one count per purchase *event*, one unmatched counter of
# resolutions. Kept to upgrade stored records on read (see upgrade_v1).
STATE_DTYPE_V1: Final = np.dtype(
    [
        ("version", "u1"),
        ("flags", "u1"),
        ("seg_rfm", "u1"),
        ("seg_tier", "u1"),
        ("seg_abcd", "u1"),
        ("seg_quadrant", "u1"),
        ("seg_lifecycle", "u1"),
        ("complaints_open", "u2"),
        ("complaints_resolved", "u2"),
        ("first_seen", "u4"),
        ("first_purchase", "u4"),
        ("last_purchase", "u4"),
        ("prev_purchase", "u4"),
        ("last_visit", "u4"),
        ("last_event", "u4"),
        ("complaint_ts", "u4"),
        ("last_winback", "u4"),
        ("due", "u4"),
        ("n_purchases", "u4"),
        ("n_visits", "u4"),
        ("complaint_score", "u4"),
        ("ring_head", "i4"),
        ("gross_cents", "i8"),
        ("refund_cents", "i8"),
        ("first_amount_cents", "i8"),
        ("ring_cents", "i4", (RING_MONTHS,)),
        ("ring_count", "u1", (RING_MONTHS,)),
    ]
)
_V1_COMPLAINT_ID: Final = 0xFFFFFFFF  # an upgraded open complaint: no resolution can name it
_COPIED_FROM_V1: Final = (
    "flags seg_rfm seg_tier seg_abcd seg_quadrant seg_lifecycle complaints_open "
    "complaints_resolved first_seen first_purchase last_purchase prev_purchase last_visit "
    "last_event complaint_ts last_winback due n_visits complaint_score ring_head gross_cents "
    "refund_cents ring_cents ring_count"
).split()


def upgrade_v1(old: np.void) -> npt.NDArray[np.void]:
    """A version-1 record as a one-element current-version array (through version 2).

    Version 1 counted purchase events, not purchase days, and did not keep the days
    themselves: the upgrade keeps the counts it has (an over-count where one day had several
    order lines; replaying the event log into fresh state is exact), marks the days it knows
    (first, previous and last purchase) and turns each unresolved complaint into a slot no
    resolution can name, filed at the complaint time, so its term decays.
    """
    new = np.zeros(1, dtype=STATE_DTYPE_V2)
    new["version"] = 2
    row = new[0]
    for name in _COPIED_FROM_V1:
        row[name] = old[name]
    n = int(old["n_purchases"])
    row["purchase_days"] = n
    row["purchase_lines"] = n
    row["first_day_cents"] = old["first_amount_cents"]
    row["clock"] = old["last_event"]
    last_day = int(old["last_purchase"]) // 86_400
    bits = np.zeros(DAY_BITS // 64, dtype=np.uint64)
    for ts in (int(old["first_purchase"]), int(old["prev_purchase"]), int(old["last_purchase"])):
        back = last_day - ts // 86_400
        if ts > 0 and 0 <= back < DAY_BITS:
            bits[back // 64] |= np.uint64(1) << np.uint64(back % 64)
    row["day_bits"] = bits
    unresolved = max(int(old["complaints_open"]) - int(old["complaints_resolved"]), 0)
    for slot in range(min(unresolved, COMPLAINT_SLOTS)):
        row["complaint_ids"][slot] = _V1_COMPLAINT_ID
        row["complaint_opened"][slot] = old["complaint_ts"]
    return upgrade_v2(new[0])


def upgrade_v2(old: np.void) -> npt.NDArray[np.void]:
    """A version-2 record as a one-element version-3 array.

    Version 3 adds the contact fields of the marketing loop; the win-back cool-down clock
    becomes the contact budget's (``last_winback`` -> ``last_contact``). No contact window
    is open after an upgrade: contacts sent before it have no measured outcome.
    """
    new = new_states(1)
    row = new[0]
    for name in STATE_DTYPE_V2.names or ():
        if name == "version":
            continue
        row["last_contact" if name == "last_winback" else name] = old[name]
    return new


class DecodedRecords(NamedTuple):
    """Stored blobs as current-version records, with what had to be done to them."""

    states: npt.NDArray[np.void]
    upgraded: list[int]  # positions of records upgraded from an older layout
    corrupt: list[tuple[int, str]]  # positions that could not be decoded, and why


def decode_records(blobs: Sequence[bytes | None]) -> DecodedRecords:
    """Records from stored blobs; never raises on a bad blob.

    ``None`` (unknown customer) becomes an empty record, an older layout is upgraded, and a
    blob of unknown version or wrong size is reported as corrupt (its record is left empty:
    the caller quarantines it instead of using it).
    """
    states = new_states(len(blobs))
    size = STATE_DTYPE.itemsize
    upgraded: list[int] = []
    corrupt: list[tuple[int, str]] = []
    for i, blob in enumerate(blobs):
        if blob is None:
            continue
        version = blob[0] if blob else -1
        if version == STATE_VERSION and len(blob) == size:
            states[i] = np.frombuffer(blob, dtype=STATE_DTYPE)[0]
        elif version == 2 and len(blob) == STATE_DTYPE_V2.itemsize:
            states[i] = upgrade_v2(np.frombuffer(blob, dtype=STATE_DTYPE_V2)[0])[0]
            upgraded.append(i)
        elif version == 1 and len(blob) == STATE_DTYPE_V1.itemsize:
            states[i] = upgrade_v1(np.frombuffer(blob, dtype=STATE_DTYPE_V1)[0])[0]
            upgraded.append(i)
        else:
            corrupt.append((i, f"state record version {version}, {len(blob)} bytes"))
    return DecodedRecords(states, upgraded, corrupt)


def decode_states(blobs: Sequence[bytes | None]) -> npt.NDArray[np.void]:
    """Records from stored blobs (older layouts upgraded); ``None`` becomes an empty record.

    Raises ValueError for a blob that cannot be decoded (callers that must not fail use
    :func:`decode_records` and quarantine it).
    """
    decoded = decode_records(blobs)
    if decoded.corrupt:
        raise ValueError(decoded.corrupt[0][1])
    return decoded.states
