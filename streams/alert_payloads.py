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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

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
from models.scorefile import SUMMARY_COLUMNS, format_times, score_column, score_structs

__all__ = [
    "ALERT_SCORE_COLUMNS",
    "SCHEMA_VERSION",
    "AfterScores",
    "AlertContext",
    "alert_envelope",
    "alert_envelopes",
    "alert_id",
    "alert_ids",
    "alert_summaries",
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
# a score summary as a struct: encodes like the dict of SUMMARY_COLUMNS, cheaper to build
_Summary: Final = msgspec.defstruct("AlertSummary", SUMMARY_COLUMNS)

# one score column (of ALERT_SCORE_COLUMNS) of several alerts: each alert's value after its
# cause, JSON-ready (models.scorefile.score_column)
AfterScores = Callable[[str], Sequence[Any]]


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
    return alert_ids(model_version, [customer_id], [kind], [what], [frm], [to], [anchor])[0]


def alert_ids(
    model_version: str,
    customer_ids: Sequence[str],
    kinds: Sequence[int],
    whats: Sequence[int],
    frms: Sequence[int],
    tos: Sequence[int],
    anchors: Sequence[str],
) -> list[str]:
    """:func:`alert_id` of several alerts (entry i of each sequence is alert i)."""
    blake2b = hashlib.blake2b
    return [
        blake2b(f"{model_version}|{c}|{k}|{w}|{f}|{t}|{a}".encode(), digest_size=16).hexdigest()
        for c, k, w, f, t, a in zip(customer_ids, kinds, whats, frms, tos, anchors, strict=True)
    ]


def alert_summary(record: dict[str, Any]) -> msgspec.Raw:
    """The ``scores`` / ``before`` object of a segment change, encoded once per evaluation
    (several alerts of one evaluation share it)."""
    return msgspec.Raw(_encoder.encode({name: record[name] for name in SUMMARY_COLUMNS}))


def alert_summaries(scores: npt.NDArray[np.void]) -> list[msgspec.Raw]:
    """:func:`alert_summary` of several evaluations' scores (SCORES_DTYPE rows), built
    column-wise."""
    columns = [score_column(name, scores[name]) for name in SUMMARY_COLUMNS]
    encode = _encoder.encode
    return [msgspec.Raw(encode(_Summary(*row))) for row in zip(*columns, strict=True)]


def alert_envelope(ctx: AlertContext, kind: int, identity: tuple[int, int, int]) -> dict[str, Any]:
    """The fields every alert kind shares, in schema order; ``identity`` is the kind's
    (what, from, to) that enters the id next to the kind code and the cause."""
    what, frm, to = identity
    return alert_envelopes(
        ctx.model_version,
        ctx.emitted_at,
        [ctx.customer_id],
        [alert_id(ctx.model_version, ctx.customer_id, kind, what, frm, to, ctx.anchor)],
        [ctx.event_ts],
        [ctx.cause],
    )[0]


def alert_envelopes(
    model_version: str,
    emitted_at: str,
    customer_ids: Sequence[str],
    ids: Sequence[str],
    event_ts: Sequence[int],
    causes: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """:func:`alert_envelope` of several alerts (entry i of each sequence is alert i) that
    share a model version and an ``emitted_at``; ``ids`` are their :func:`alert_ids`."""
    times = format_times(np.asarray(event_ts, dtype=np.int64))
    return [
        {
            "alert_id": aid,
            "schema_version": SCHEMA_VERSION,
            "model_version": model_version,
            "customer_id": customer_id,
            "event_ts": when,
            "emitted_at": emitted_at,
            "cause": cause,
        }
        for aid, customer_id, when, cause in zip(ids, customer_ids, times, causes, strict=True)
    ]


def segment_change_fields(
    scheme: Sequence[int],
    frm: Sequence[int],
    to: Sequence[int],
    summaries: Sequence[tuple[msgspec.Raw, msgspec.Raw | None]],
) -> list[dict[str, Any]]:
    """What each of several segment changes says beyond the envelope: the scheme, from/to by
    name, and the encoded score summaries after and just before the cause."""
    return [
        {
            "scheme": SCHEME_NAMES[s],
            "from": _SCHEME_VALUES[s][f],
            "to": _SCHEME_VALUES[s][t],
            "scores": after,
            "before": before,
        }
        for s, f, t, (after, before) in zip(scheme, frm, to, summaries, strict=True)
    ]


def contact_action(kind: int, reason: int, tier: int, quadrant: int) -> str:
    """The suggested action of a contact: a win-back's by reason and value tier, a nudge's
    offer by quadrant and value tier (engine.segments.ACTIONS / NUDGE_OFFERS)."""
    if KIND_NAMES[kind] == "nudge":
        return NUDGE_OFFERS[QUADRANT_NAMES[quadrant]][TIER_NAMES[tier]]
    return ACTIONS[REASON_NAMES[reason]][TIER_NAMES[tier]]


def contact_fields(
    holdout_version: str, kind: Sequence[int], group: Sequence[int]
) -> list[dict[str, Any]]:
    """What each of several contacts (nudges or win-backs) says about its delivery: its
    kind, the customer's control group and the group assignment's version."""
    return [
        {"kind": KIND_NAMES[k], "group": GROUP_NAMES[g], "holdout_version": holdout_version}
        for k, g in zip(kind, group, strict=True)
    ]


def win_back_fields(
    reason: Sequence[int], tier: Sequence[int], after: AfterScores
) -> list[dict[str, Any]]:
    """What each of several win-backs says beyond the envelope: the reason, the risk and
    value fields a campaign decides on, and the suggested action for the reason and the
    emitted value tier (the tier segment-change alerts announce, ``tier``)."""
    names = [
        "churn_risk",
        "p_alive",
        "risk_adjustment",
        "rfm_segment",
        "lifecycle",
        "clv",
        "expected_avg_spend",
        "days_since_last_purchase",
        "usual_gap_days",
        "next_purchase_eta",
    ]
    columns = [after(name) for name in names]
    return [
        {
            "reason": REASON_NAMES[r],
            "churn_risk": churn,
            "p_alive": alive,
            "risk_adjustment": adjustment,
            "value_tier": TIER_NAMES[t],
            "rfm_segment": rfm,
            "lifecycle": lifecycle,
            "expected_value": clv,
            "expected_avg_spend": avg_spend,
            "days_since_last_purchase": since,
            "usual_gap_days": gap,
            "next_purchase_eta": eta,
            "suggested_action": ACTIONS[REASON_NAMES[r]][TIER_NAMES[t]],
        }
        for (
            r,
            t,
            churn,
            alive,
            adjustment,
            rfm,
            lifecycle,
            clv,
            avg_spend,
            since,
            gap,
            eta,
        ) in zip(reason, tier, *columns, strict=True)
    ]


def nudge_fields(
    tier: Sequence[int], quadrant: Sequence[int], after: AfterScores
) -> list[dict[str, Any]]:
    """What each of several repurchase nudges says beyond the envelope: when the customer is
    expected to buy, the rhythm and value behind it, and the offer for its quadrant and
    value tier."""
    names = [
        "next_purchase_eta",
        "nudge_at",
        "usual_gap_days",
        "days_since_last_purchase",
        "p_alive",
        "expected_avg_spend",
        "clv",
        "rfm_segment",
        "lifecycle",
    ]
    columns = [after(name) for name in names]
    return [
        {
            "reason": NUDGE_REASON,
            "predicted_purchase_at": eta,
            "nudge_at": nudge_at,
            "usual_gap_days": gap,
            "days_since_last_purchase": since,
            "p_alive": alive,
            "expected_avg_spend": avg_spend,
            "expected_value": clv,
            "value_tier": TIER_NAMES[t],
            "quadrant": QUADRANT_NAMES[q],
            "rfm_segment": rfm,
            "lifecycle": lifecycle,
            "suggested_offer": NUDGE_OFFERS[QUADRANT_NAMES[q]][TIER_NAMES[t]],
        }
        for (t, q, eta, nudge_at, gap, since, alive, avg_spend, clv, rfm, lifecycle) in zip(
            tier, quadrant, *columns, strict=True
        )
    ]


def outcome_fields(
    holdout_version: str,
    window_days: float,
    contact_id: Sequence[str | None],
    cause_ts: Sequence[int],
    contact_kind: Sequence[int],
    reason: Sequence[int],
    tier: Sequence[int],
    quadrant: Sequence[int],
    group: Sequence[int],
    contact_at: Sequence[int],
    closed_by: Sequence[int],
    responded: Sequence[int],
    cents: Sequence[int],
) -> list[dict[str, Any]]:
    """What each of several outcomes says: which contact it measures (``contact_id``, the
    alert id of that contact) and whether (and how much, and how soon after ``contact_at``)
    the customer bought inside the response window; ``cause_ts`` is the time of the cause
    that closed the window (the purchase, for a response)."""
    contact_times = format_times(np.asarray(contact_at, dtype=np.int64))
    out = []
    for cid, ts, kind, r, t, q, g, at, at_text, closed, resp, spend in zip(
        contact_id,
        cause_ts,
        contact_kind,
        reason,
        tier,
        quadrant,
        group,
        contact_at,
        contact_times,
        closed_by,
        responded,
        cents,
        strict=True,
    ):
        kind_name = KIND_NAMES[kind]
        responded_at = ts if resp else 0
        out.append(
            {
                "contact_id": cid,
                "contact_kind": kind_name,
                "contact_reason": NUDGE_REASON if kind_name == "nudge" else REASON_NAMES[r],
                "contact_at": at_text,
                "action": contact_action(kind, r, t, q),
                "value_tier": TIER_NAMES[t],
                "quadrant": QUADRANT_NAMES[q],
                "group": GROUP_NAMES[g],
                "holdout_version": holdout_version,
                "responded": bool(resp),
                "response_spend": spend / 100.0,
                "days_to_response": (responded_at - at) / _DAY if resp else None,
                "window_days": window_days,
                "closed_by": CLOSED_BY_NAMES[closed],
            }
        )
    return out


def encode_alert(body: dict[str, Any]) -> bytes:
    """The JSON bytes of an alert body (one shared encoder)."""
    return _encoder.encode(body)


def build_score_updates(
    model_version: str,
    customer_ids: Sequence[str],
    as_of: npt.NDArray[np.integer[Any]],
    scores: npt.NDArray[np.void],
) -> list[bytes]:
    """The compacted ``customer.scores`` values of several customers' scores (SCORES_DTYPE
    rows; the ``scores`` object is :func:`models.scorefile.score_records`'s record), each
    evaluated at its own ``as_of`` (epoch s)."""
    records = score_structs(customer_ids, scores)
    encode = _encoder.encode
    return [
        encode(
            {
                "schema_version": SCHEMA_VERSION,
                "model_version": model_version,
                "customer_id": customer_id,
                "as_of": when,
                "scores": record,
            }
        )
        for customer_id, when, record in zip(
            customer_ids, format_times(as_of), records, strict=True
        )
    ]
