"""The alert-kind registry: each kind of alert declared once.

A kind names its engine code (the rule in :mod:`engine.alert_rules` that emits it), its
name (the ``kind`` metric label and the key of its topic in :class:`streams.topics.TopicTable`),
the Settings field of its output topic, its JSON schema under docs/schemas/, what enters its
id, its payload fields and its metric reason label. Routing, topic creation, the schema tests,
the demo summary and the bench all iterate :data:`ALERT_KINDS`, so a new kind is its engine
rule, one registration here, its schema file and its topic setting (docs/design.md, "Adding
an alert kind").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec

from engine.alert_rules import (
    ALERT_DTYPE,
    KIND_NUDGE,
    KIND_OUTCOME,
    KIND_SEGMENT_CHANGE,
    KIND_WIN_BACK,
)
from engine.segments import CLOSED_BY_NAMES, NUDGE_REASON, REASON_NAMES, SCHEME_NAMES
from streams.alert_payloads import (
    AlertContext,
    alert_envelope,
    contact_fields,
    encode_alert,
    nudge_fields,
    outcome_fields,
    segment_change_fields,
    win_back_fields,
)

__all__ = [
    "ALERT_KINDS",
    "ALERT_ROW_COLUMNS",
    "AlertKind",
    "AlertRow",
    "BuiltAlert",
    "Summaries",
    "alert_kind",
    "build_alert",
]

Summaries = tuple[msgspec.Raw, msgspec.Raw | None]


class AlertRow(NamedTuple):
    """The fields of one engine alert row a kind reads (engine.alert_rules.ALERT_DTYPE, in
    that order after ``index``)."""

    kind: int
    scheme: int
    reason: int
    frm: int
    to: int
    suppressed: int = 0
    group: int = 0
    tier: int = 0
    quadrant: int = 0
    contact_kind: int = 0
    closed_by: int = 0
    responded: int = 0
    cents: int = 0
    contact_at: int = 0
    all_n: int = 0
    all_y: int = 0
    kind_n: int = 0
    kind_y: int = 0
    reason_n: int = 0
    reason_y: int = 0


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One kind of alert, as every consumer of alerts needs it."""

    code: int  # the engine's kind code
    name: str  # metric label, topic-table key, docs name
    topic_setting: str  # the Settings field naming its output topic
    schema: str  # file name under docs/schemas/
    identity: Callable[[AlertRow], tuple[int, int, int]]  # (what, from, to) in the alert id
    fields: Callable[[AlertRow, dict[str, Any], Summaries, AlertContext], dict[str, Any]]
    label: Callable[[AlertRow], str]  # the metric's reason label
    # a contact (nudge, win-back): under the contact budget, opens a response window, and a
    # held-out customer's goes to the holdout topic instead of the kind's own
    contact: bool = False


ALERT_KINDS: Final[tuple[AlertKind, ...]] = (
    AlertKind(
        code=KIND_SEGMENT_CHANGE,
        name="segment_change",
        topic_setting="topic_segment_change",
        schema="segment-change.schema.json",
        identity=lambda row: (row.scheme, row.frm, row.to),
        fields=lambda row, after, summaries, ctx: segment_change_fields(
            row.scheme, row.frm, row.to, after, summaries
        ),
        label=lambda row: SCHEME_NAMES[row.scheme],
    ),
    AlertKind(
        code=KIND_WIN_BACK,
        name="win_back",
        topic_setting="topic_win_back",
        schema="win-back.schema.json",
        identity=lambda row: (row.reason, 0, 0),
        fields=lambda row, after, summaries, ctx: {
            **contact_fields(ctx, row.kind, row.group),
            **win_back_fields(row.reason, row.tier, row.quadrant, after),
        },
        label=lambda row: REASON_NAMES[row.reason],
        contact=True,
    ),
    AlertKind(
        code=KIND_NUDGE,
        name="nudge",
        topic_setting="topic_nudge",
        schema="nudge.schema.json",
        identity=lambda row: (0, 0, 0),
        fields=lambda row, after, summaries, ctx: {
            **contact_fields(ctx, row.kind, row.group),
            **nudge_fields(row.tier, row.quadrant, after),
        },
        label=lambda row: NUDGE_REASON,
        contact=True,
    ),
    AlertKind(
        code=KIND_OUTCOME,
        name="outcome",
        topic_setting="topic_outcomes",
        schema="outcome.schema.json",
        # one window per contact: its kind, reason and time tell outcomes apart
        identity=lambda row: (row.closed_by, row.contact_kind * 16 + row.reason, row.contact_at),
        fields=lambda row, after, summaries, ctx: outcome_fields(
            ctx,
            row.contact_kind,
            row.reason,
            row.tier,
            row.quadrant,
            row.group,
            row.contact_at,
            row.closed_by,
            bool(row.responded),
            row.cents,
            ctx.response_window_days,
        ),
        label=lambda row: CLOSED_BY_NAMES[row.closed_by],
    ),
)

# the engine alert columns AlertRow is built from, in its field order
ALERT_ROW_COLUMNS: Final[list[str]] = [name for name in ALERT_DTYPE.names or () if name != "index"]
if len(ALERT_ROW_COLUMNS) != len(AlertRow._fields):
    raise RuntimeError("AlertRow must name every engine alert column after index")

_BY_CODE: Final = {kind.code: kind for kind in ALERT_KINDS}
if len(_BY_CODE) != len(ALERT_KINDS) or len({k.name for k in ALERT_KINDS}) != len(ALERT_KINDS):
    raise RuntimeError("alert kinds must have distinct codes and names")


def alert_kind(code: int) -> AlertKind:
    """The registered kind of an engine kind code (KeyError for an unregistered code)."""
    return _BY_CODE[code]


class BuiltAlert(NamedTuple):
    """One engine alert as published."""

    kind: AlertKind
    alert_id: str
    body: bytes  # JSON


def build_alert(
    ctx: AlertContext, row: AlertRow, after: dict[str, Any], summaries: Summaries
) -> BuiltAlert:
    """One engine alert: its kind, id and JSON bytes.

    ``after`` is the customer's score record (:func:`models.scorefile.score_records`) after the
    cause, ``summaries`` the encoded :func:`streams.alert_payloads.alert_summary` of the scores
    after and, where the kind shows it, just before the cause.
    """
    kind = _BY_CODE[row.kind]
    body = alert_envelope(ctx, kind.code, kind.identity(row))
    body.update(kind.fields(row, after, summaries, ctx))
    return BuiltAlert(kind, body["alert_id"], encode_alert(body))
