"""Alert and score-update payloads and their deterministic ids: the JSON downstream consumes.

The parts every alert shares (envelope, id) and each kind's own fields; which kind uses which
builder, topic and schema is declared once in :mod:`streams.alert_kinds`.

Schemas: docs/schemas/*.json (validated in tests against real alerts). ``alert_id`` is a
digest of the model version, the customer, the alert kind, the scheme or reason, from/to and
the cause: the causing event's ``event_id``, or the due time a timer evaluated. Each of these
is a function of the customer's own events (docs/alerts.md), so a replay of the same input in
any batch cut produces the same ids and downstream can de-duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from engine.segments import (
    ABCD_NAMES,
    ACTIONS,
    CLOSED_BY_NAMES,
    GROUP_NAMES,
    KIND_NAMES,
    LIFECYCLE_NAMES,
    NUDGE_OFFERS,
    NUDGE_REASON,
    QUADRANT_NAMES,
    REASON_NAMES,
    RFM_SEGMENT_NAMES,
    SCHEME_NAMES,
    TIER_NAMES,
)
from models.scorefile import SUMMARY_COLUMNS, format_time

__all__ = [
    "ALERT_SCORE_COLUMNS",
    "SCHEMA_VERSION",
    "AlertContext",
    "alert_envelope",
    "alert_id",
    "alert_summary",
    "build_score_updates",
    "contact_action",
    "contact_fields",
    "encode_alert",
    "nudge_fields",
    "outcome_fields",
    "segment_change_fields",
    "win_back_fields",
]

SCHEMA_VERSION: Final = 1
_SCHEME_VALUES: Final = {
    1: RFM_SEGMENT_NAMES,
    2: TIER_NAMES,
    3: ABCD_NAMES,
    4: QUADRANT_NAMES,
    5: LIFECYCLE_NAMES,
}
# every score column an alert payload reads (segment-change summaries and win-back fields)
ALERT_SCORE_COLUMNS: Final = (
    *SUMMARY_COLUMNS,
    "risk_adjustment",
    "expected_avg_spend",
    "usual_gap_days",
    "next_purchase_eta",
    "nudge_at",
)
_DAY: Final = 86_400
_encoder: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What an alert says about where it came from."""

    model_version: str
    customer_id: str
    event_ts: int  # event time the customer was evaluated at (epoch s)
    cause: dict[str, Any]  # {"type": "event", "event_id": ...} or {"type": "timer", "due": ...}
    emitted_at: str  # wall time, RFC 3339 (whole seconds)
    holdout_version: str = ""  # the control group's (salt, fraction) version
    contact_id: str | None = None  # outcomes: the alert id of the contact they measure
    cause_ts: int = 0  # the causing event's own ts (a late event's is before event_ts)
    response_window_days: float = 0.0  # the model's outcome window

    @property
    def anchor(self) -> str:
        """What the id says caused the alert: ``e:<event_id>`` or ``t:<due epoch s>``."""
        if self.cause["type"] == "event":
            return f"e:{self.cause['event_id']}"
        return f"t:{self.cause['due']}"


def alert_id(
    model_version: str, customer_id: str, kind: int, what: int, frm: int, to: int, anchor: str
) -> str:
    """Deterministic id: the same input replayed gives the same id."""
    text = f"{model_version}|{customer_id}|{kind}|{what}|{frm}|{to}|{anchor}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def alert_summary(record: dict[str, Any]) -> msgspec.Raw:
    """The ``scores`` / ``before`` object of a segment change, encoded once per evaluation
    (several alerts of one evaluation share it)."""
    return msgspec.Raw(_encoder.encode({name: record[name] for name in SUMMARY_COLUMNS}))


def alert_envelope(ctx: AlertContext, kind: int, identity: tuple[int, int, int]) -> dict[str, Any]:
    """The fields every alert kind shares, in schema order; ``identity`` is the kind's
    (what, from, to) that enters the id next to the kind code and the cause."""
    what, frm, to = identity
    return {
        "alert_id": alert_id(ctx.model_version, ctx.customer_id, kind, what, frm, to, ctx.anchor),
        "schema_version": SCHEMA_VERSION,
        "model_version": ctx.model_version,
        "customer_id": ctx.customer_id,
        "event_ts": format_time(ctx.event_ts),
        "emitted_at": ctx.emitted_at,
        "cause": ctx.cause,
    }


def segment_change_fields(
    scheme: int,
    frm: int,
    to: int,
    after: dict[str, Any],
    summaries: tuple[msgspec.Raw, msgspec.Raw | None],
) -> dict[str, Any]:
    """What a segment change says beyond the envelope: the scheme, from/to by name, and the
    encoded score summaries after and just before the cause."""
    names = _SCHEME_VALUES[scheme]
    return {
        "scheme": SCHEME_NAMES[scheme],
        "from": names[frm],
        "to": names[to],
        "scores": summaries[0],
        "before": summaries[1],
    }


def contact_action(kind: int, reason: int, tier: int, quadrant: int) -> str:
    """The suggested action of a contact: a win-back's by reason and value tier, a nudge's
    offer by quadrant and value tier (engine.segments.ACTIONS / NUDGE_OFFERS)."""
    if KIND_NAMES[kind] == "nudge":
        return NUDGE_OFFERS[QUADRANT_NAMES[quadrant]][TIER_NAMES[tier]]
    return ACTIONS[REASON_NAMES[reason]][TIER_NAMES[tier]]


def contact_fields(ctx: AlertContext, kind: int, group: int) -> dict[str, Any]:
    """What every contact (nudge or win-back) says about its delivery: its kind, the
    customer's control group and the group assignment's version."""
    return {
        "kind": KIND_NAMES[kind],
        "group": GROUP_NAMES[group],
        "holdout_version": ctx.holdout_version,
    }


def win_back_fields(reason: int, tier: int, quadrant: int, after: dict[str, Any]) -> dict[str, Any]:
    """What a win-back says beyond the envelope: the reason, the risk and value fields a
    campaign decides on, and the suggested action for the reason and the emitted value tier
    (the tier segment-change alerts announce, ``tier``)."""
    name = REASON_NAMES[reason]
    return {
        "reason": name,
        "churn_risk": after["churn_risk"],
        "p_alive": after["p_alive"],
        "risk_adjustment": after["risk_adjustment"],
        "value_tier": TIER_NAMES[tier],
        "rfm_segment": after["rfm_segment"],
        "lifecycle": after["lifecycle"],
        "expected_value": after["clv"],
        "expected_avg_spend": after["expected_avg_spend"],
        "days_since_last_purchase": after["days_since_last_purchase"],
        "usual_gap_days": after["usual_gap_days"],
        "next_purchase_eta": after["next_purchase_eta"],
        "suggested_action": ACTIONS[name][TIER_NAMES[tier]],
    }


def nudge_fields(tier: int, quadrant: int, after: dict[str, Any]) -> dict[str, Any]:
    """What a repurchase nudge says beyond the envelope: when the customer is expected to
    buy, the rhythm and value behind it, and the offer for its quadrant and value tier."""
    return {
        "reason": NUDGE_REASON,
        "predicted_purchase_at": after["next_purchase_eta"],
        "nudge_at": after["nudge_at"],
        "usual_gap_days": after["usual_gap_days"],
        "days_since_last_purchase": after["days_since_last_purchase"],
        "p_alive": after["p_alive"],
        "expected_avg_spend": after["expected_avg_spend"],
        "expected_value": after["clv"],
        "value_tier": TIER_NAMES[tier],
        "quadrant": QUADRANT_NAMES[quadrant],
        "rfm_segment": after["rfm_segment"],
        "lifecycle": after["lifecycle"],
        "suggested_offer": NUDGE_OFFERS[QUADRANT_NAMES[quadrant]][TIER_NAMES[tier]],
    }


def outcome_fields(
    ctx: AlertContext,
    contact_kind: int,
    reason: int,
    tier: int,
    quadrant: int,
    group: int,
    contact_at: int,
    closed_by: int,
    responded: bool,
    cents: int,
    window_days: float,
) -> dict[str, Any]:
    """What an outcome says: which contact it measures and whether (and how much, and how
    soon) the customer bought inside the response window."""
    kind_name = KIND_NAMES[contact_kind]
    responded_at = ctx.cause_ts if responded else 0
    return {
        "contact_id": ctx.contact_id,
        "contact_kind": kind_name,
        "contact_reason": NUDGE_REASON if kind_name == "nudge" else REASON_NAMES[reason],
        "contact_at": format_time(contact_at),
        "action": contact_action(contact_kind, reason, tier, quadrant),
        "value_tier": TIER_NAMES[tier],
        "quadrant": QUADRANT_NAMES[quadrant],
        "group": GROUP_NAMES[group],
        "holdout_version": ctx.holdout_version,
        "responded": responded,
        "response_spend": cents / 100.0,
        "days_to_response": (responded_at - contact_at) / _DAY if responded else None,
        "window_days": window_days,
        "closed_by": CLOSED_BY_NAMES[closed_by],
    }


def encode_alert(body: dict[str, Any]) -> bytes:
    """The JSON bytes of an alert body (one shared encoder)."""
    return _encoder.encode(body)


def build_score_updates(
    model_version: str, as_of: Sequence[int], records: Sequence[dict[str, Any]]
) -> list[bytes]:
    """The compacted ``customer.scores`` values of several customers' score records, each
    evaluated at its own ``as_of`` (epoch s)."""
    return [
        _encoder.encode(
            {
                "schema_version": SCHEMA_VERSION,
                "model_version": model_version,
                "customer_id": record["customer_id"],
                "as_of": format_time(when),
                "scores": record,
            }
        )
        for when, record in zip(as_of, records, strict=True)
    ]
