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

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec
import numpy as np

from engine.alert_rules import (
    ALERT_DTYPE,
    KIND_NUDGE,
    KIND_OUTCOME,
    KIND_SEGMENT_CHANGE,
    KIND_WIN_BACK,
)
from engine.segments import CLOSED_BY_NAMES, NUDGE_REASON, REASON_NAMES, SCHEME_NAMES
from streams.alert_payloads import (
    AfterScores,
    AlertContext,
    alert_envelopes,
    alert_ids,
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
    "AlertBatch",
    "AlertColumns",
    "AlertKind",
    "AlertRow",
    "BuiltAlert",
    "RowColumns",
    "Summaries",
    "alert_identities",
    "alert_kind",
    "alert_rows",
    "build_alert",
    "build_alerts",
]

Summaries = tuple[msgspec.Raw, msgspec.Raw | None]


class AlertRow(NamedTuple):
    """The fields of one engine alert row a kind reads (engine.alert_rules.ALERT_DTYPE, in
    that order after ``index``); or, from :func:`alert_rows`, the columns of several rows."""

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


class RowColumns(NamedTuple):
    """The fields of several engine alert rows (:class:`AlertRow`), each a column: entry i
    of every list is row i."""

    kind: list[int]
    scheme: list[int]
    reason: list[int]
    frm: list[int]
    to: list[int]
    suppressed: list[int]
    group: list[int]
    tier: list[int]
    quadrant: list[int]
    contact_kind: list[int]
    closed_by: list[int]
    responded: list[int]
    cents: list[int]
    contact_at: list[int]
    all_n: list[int]
    all_y: list[int]
    kind_n: list[int]
    kind_y: list[int]
    reason_n: list[int]
    reason_y: list[int]


if RowColumns._fields != AlertRow._fields:
    raise RuntimeError("RowColumns must name the fields of AlertRow, in its order")


def alert_rows(columns: Iterable[Any]) -> AlertRow:
    """An :class:`AlertRow` whose fields are numpy columns (of several rows), as
    :func:`alert_identities` passes them to a kind's ``identity``."""
    return AlertRow(*columns)


class AlertColumns(NamedTuple):
    """Several alerts of one kind, column by column: entry i of every list is alert i."""

    row: RowColumns
    after: AfterScores  # a score column (ALERT_SCORE_COLUMNS) of the scores after each cause
    # the encoded summaries after and (segment changes) before each cause, built on demand
    summaries: Callable[[], list[Summaries]]
    contact_id: list[str | None]  # outcomes: the alert id of the contact they measure
    cause_ts: list[int]  # the causing event's own ts, or the due time of a timer
    holdout_version: str  # the control group's (salt, fraction) version
    response_window_days: float  # the model's outcome window


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One kind of alert, as every consumer of alerts needs it."""

    code: int  # the engine's kind code
    name: str  # metric label, topic-table key, docs name
    topic_setting: str  # the Settings field naming its output topic
    schema: str  # file name under docs/schemas/
    # (what, from, to) in the alert id, of one row or (numpy columns) of many
    identity: Callable[[AlertRow], tuple[Any, Any, Any]]
    fields: Callable[[AlertColumns], list[dict[str, Any]]]  # each alert's payload fields
    label: Callable[[AlertRow], str]  # the metric's reason label
    # a contact (nudge, win-back): under the contact budget, opens a response window, and a
    # held-out customer's goes to the holdout topic instead of the kind's own
    contact: bool = False


def _merged(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each alert's fields of ``first`` followed by its fields of ``second``."""
    return [a | b for a, b in zip(first, second, strict=True)]


ALERT_KINDS: Final[tuple[AlertKind, ...]] = (
    AlertKind(
        code=KIND_SEGMENT_CHANGE,
        name="segment_change",
        topic_setting="topic_segment_change",
        schema="segment-change.schema.json",
        identity=lambda row: (row.scheme, row.frm, row.to),
        fields=lambda cols: segment_change_fields(
            cols.row.scheme, cols.row.frm, cols.row.to, cols.summaries()
        ),
        label=lambda row: SCHEME_NAMES[row.scheme],
    ),
    AlertKind(
        code=KIND_WIN_BACK,
        name="win_back",
        topic_setting="topic_win_back",
        schema="win-back.schema.json",
        identity=lambda row: (row.reason, 0, 0),
        fields=lambda cols: _merged(
            contact_fields(cols.holdout_version, cols.row.kind, cols.row.group),
            win_back_fields(cols.row.reason, cols.row.tier, cols.after),
        ),
        label=lambda row: REASON_NAMES[row.reason],
        contact=True,
    ),
    AlertKind(
        code=KIND_NUDGE,
        name="nudge",
        topic_setting="topic_nudge",
        schema="nudge.schema.json",
        identity=lambda row: (0, 0, 0),
        fields=lambda cols: _merged(
            contact_fields(cols.holdout_version, cols.row.kind, cols.row.group),
            nudge_fields(cols.row.tier, cols.row.quadrant, cols.after),
        ),
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
        fields=lambda cols: outcome_fields(
            cols.holdout_version,
            cols.response_window_days,
            cols.contact_id,
            cols.cause_ts,
            cols.row.contact_kind,
            cols.row.reason,
            cols.row.tier,
            cols.row.quadrant,
            cols.row.group,
            cols.row.contact_at,
            cols.row.closed_by,
            cols.row.responded,
            cols.row.cents,
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


@dataclass(frozen=True, slots=True)
class AlertBatch:
    """Several engine alerts to build, column by column: entry i of every list (and of
    every column of ``rows``) is alert i."""

    model_version: str
    emitted_at: str  # wall time, RFC 3339 (whole seconds)
    holdout_version: str  # the control group's (salt, fraction) version
    response_window_days: float  # the model's outcome window
    rows: AlertRow  # each field: the alerts' column (int64 array)
    alert_id: Sequence[str]  # streams.alert_payloads.alert_ids of their alert_identities
    customer_id: Sequence[str]
    event_ts: Sequence[int]  # event time the customer was evaluated at (epoch s)
    cause: Sequence[dict[str, Any]]  # {"type": "event", "event_id": ...} or timer's due
    cause_ts: Sequence[int]  # the causing event's own ts (a late event's is before event_ts)
    contact_id: Sequence[str | None]  # outcomes: the alert id of the contact they measure
    # the encoded summaries after and just before the cause of the alerts at some positions
    summaries: Callable[[Sequence[int]], list[Summaries]]
    # the JSON-ready values of a score column (ALERT_SCORE_COLUMNS) at some score rows
    scores: Callable[[str, Sequence[int]], Sequence[Any]]
    after_at: Sequence[int]  # each alert's score row after its cause


def alert_identities(rows: AlertRow) -> tuple[list[int], list[int], list[int]]:
    """The (what, from, to) of several engine alerts (``rows``: each field a column) that
    enter their ids, each by its kind's ``identity``, computed column-wise."""
    codes = np.asarray(rows.kind)
    unknown = set(np.unique(codes).tolist()) - _BY_CODE.keys()
    if unknown:
        raise KeyError(min(unknown))
    parts = np.zeros((3, codes.shape[0]), dtype=np.int64)
    for kind in ALERT_KINDS:
        at = np.flatnonzero(codes == kind.code)
        if at.shape[0]:
            sub = alert_rows(np.asarray(column, dtype=np.int64)[at] for column in rows)
            for part, value in zip(parts, kind.identity(sub), strict=True):
                part[at] = value
    what, frm, to = parts.tolist()
    return what, frm, to


def build_alerts(batch: AlertBatch) -> list[bytes]:
    """The JSON bytes of several engine alerts: each the common envelope, then its kind's
    fields (built column-wise for all alerts of the kind at once)."""
    bodies = alert_envelopes(
        batch.model_version,
        batch.emitted_at,
        batch.customer_id,
        batch.alert_id,
        batch.event_ts,
        batch.cause,
    )
    codes = np.asarray(batch.rows.kind)
    unknown = set(np.unique(codes).tolist()) - _BY_CODE.keys()
    if unknown:
        raise KeyError(min(unknown))
    for kind in ALERT_KINDS:
        at = np.flatnonzero(codes == kind.code)
        if not at.shape[0]:
            continue
        where = at.tolist()
        after_at = [batch.after_at[i] for i in where]

        def after(name: str, after_at: list[int] = after_at) -> Sequence[Any]:
            return batch.scores(name, after_at)

        columns = AlertColumns(
            RowColumns(*(np.asarray(column)[at].tolist() for column in batch.rows)),
            after,
            functools.partial(batch.summaries, where),
            [batch.contact_id[i] for i in where],
            [batch.cause_ts[i] for i in where],
            batch.holdout_version,
            batch.response_window_days,
        )
        for i, fields in zip(where, kind.fields(columns), strict=True):
            bodies[i].update(fields)
    return [encode_alert(body) for body in bodies]


def build_alert(
    ctx: AlertContext, row: AlertRow, after: dict[str, Any], summaries: Summaries
) -> BuiltAlert:
    """One engine alert: its kind, id and JSON bytes (:func:`build_alerts` of one).

    ``after`` is the customer's score record (:func:`models.scorefile.score_records`) after the
    cause, ``summaries`` the encoded :func:`streams.alert_payloads.alert_summary` of the scores
    after and, where the kind shows it, just before the cause.
    """
    kind = _BY_CODE[row.kind]
    rows = alert_rows(np.array([value], dtype=np.int64) for value in row)
    what, frm, to = alert_identities(rows)
    (aid,) = alert_ids(
        ctx.model_version, [ctx.customer_id], [kind.code], what, frm, to, [ctx.anchor]
    )
    batch = AlertBatch(
        ctx.model_version,
        ctx.emitted_at,
        ctx.holdout_version,
        ctx.response_window_days,
        rows,
        [aid],
        [ctx.customer_id],
        [ctx.event_ts],
        [ctx.cause],
        [ctx.cause_ts],
        [ctx.contact_id],
        lambda at: [summaries for _ in at],
        lambda name, at: [after[name] for _ in at],
        [0],
    )
    return BuiltAlert(kind, aid, build_alerts(batch)[0])
