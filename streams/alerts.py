"""Alert, score-update and their deterministic ids: the JSON downstream services consume.

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
import numpy as np

from engine.alerts import KIND_SEGMENT_CHANGE
from engine.segments import (
    ABCD_NAMES,
    ACTIONS,
    LIFECYCLE_NAMES,
    QUADRANT_NAMES,
    REASON_NAMES,
    RFM_SEGMENT_NAMES,
    SCHEME_NAMES,
    TIER_NAMES,
)
from models.scorefile import format_time

__all__ = [
    "SCHEMA_VERSION",
    "AlertContext",
    "alert_id",
    "build_alert",
    "build_score_updates",
]

SCHEMA_VERSION: Final = 1
_SCHEME_VALUES: Final = {
    1: RFM_SEGMENT_NAMES,
    2: TIER_NAMES,
    3: ABCD_NAMES,
    4: QUADRANT_NAMES,
    5: LIFECYCLE_NAMES,
}
_SUMMARY: Final = (
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
    "value_tier",
    "abcd_class",
    "quadrant",
    "lifecycle",
    "p_alive",
    "churn_risk",
    "window_frequency",
    "window_monetary",
    "days_since_last_purchase",
    "expected_purchases_90d",
    "clv",
)
_encoder: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What an alert says about where it came from."""

    model_version: str
    customer_id: str
    event_ts: int  # event time the customer was evaluated at (epoch s)
    cause: dict[str, Any]  # {"type": "event", "event_id": ...} or {"type": "timer", "due": ...}
    emitted_at: float  # wall time

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


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {name: record[name] for name in _SUMMARY}


def _wall(ts: float) -> str:
    return format_time(int(ts)) or ""


def build_alert(
    ctx: AlertContext,
    alert: np.void,
    after: dict[str, Any],
    before: dict[str, Any] | None,
) -> tuple[str, bytes]:
    """(topic kind, JSON bytes) of one engine alert (ALERT_DTYPE).

    ``after`` / ``before`` are the customer's score records (:func:`score_records`) after the
    change and, for segment changes, before it.
    """
    common: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model_version": ctx.model_version,
        "customer_id": ctx.customer_id,
        "event_ts": format_time(ctx.event_ts),
        "emitted_at": _wall(ctx.emitted_at),
        "cause": ctx.cause,
    }
    kind = int(alert["kind"])
    if kind == KIND_SEGMENT_CHANGE:
        scheme = int(alert["scheme"])
        frm, to = int(alert["from_code"]), int(alert["to_code"])
        names = _SCHEME_VALUES[scheme]
        body = {
            "alert_id": alert_id(
                ctx.model_version, ctx.customer_id, kind, scheme, frm, to, ctx.anchor
            ),
            **common,
            "scheme": SCHEME_NAMES[scheme],
            "from": names[frm],
            "to": names[to],
            "scores": _summary(after),
            "before": _summary(before) if before is not None else None,
        }
        return "segment_change", _encoder.encode(body)
    reason = int(alert["reason"])
    scores = after
    tier = scores["value_tier"]
    body = {
        "alert_id": alert_id(ctx.model_version, ctx.customer_id, kind, reason, 0, 0, ctx.anchor),
        **common,
        "reason": REASON_NAMES[reason],
        "churn_risk": scores["churn_risk"],
        "p_alive": scores["p_alive"],
        "risk_adjustment": scores["risk_adjustment"],
        "value_tier": tier,
        "rfm_segment": scores["rfm_segment"],
        "lifecycle": scores["lifecycle"],
        "expected_value": scores["clv"],
        "expected_avg_spend": scores["expected_avg_spend"],
        "days_since_last_purchase": scores["days_since_last_purchase"],
        "usual_gap_days": scores["usual_gap_days"],
        "next_purchase_eta": scores["next_purchase_eta"],
        "suggested_action": ACTIONS[REASON_NAMES[reason]][tier],
    }
    return "win_back", _encoder.encode(body)


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
