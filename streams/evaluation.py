"""The pure core of a batch and of a timer sweep: evaluate customers, say what to write and send.

:func:`evaluate` runs :func:`engine.timeline.run_timeline` over some customers and turns its
alert rows, scores and final states into the records to publish (alerts routed by their kind
through the topic table, then one score update per evaluated customer), the alert and
suppression counts by metric label, and the states and due times to write. It does no I/O,
reads no clock and touches no metric: :class:`streams.processor.BatchProcessor` decodes and
reads states, calls it, and commits, publishes and counts what it returns.

A batch evaluates the customers of its events (:func:`events_input`), a sweep the stored
customers that are due (:func:`due_input`); both then call :func:`evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.state import new_events
from engine.timeline import Timeline, customer_slices, order_events, run_timeline
from models.bundle import ModelBundle
from models.scorefile import format_time, score_records
from streams.alert_kinds import AlertRow, alert_kind, build_alert
from streams.alert_payloads import (
    ALERT_SCORE_COLUMNS,
    AlertContext,
    alert_summary,
    build_score_updates,
)
from streams.codec import DecodedEvent
from streams.topics import TopicTable

__all__ = ["Outcome", "Record", "TimelineInput", "due_input", "evaluate", "events_input"]

Record = tuple[str, bytes | None, bytes | None]  # (topic, key, value)


class TimelineInput(NamedTuple):
    """The customers to evaluate and their events, as :func:`engine.timeline.run_timeline`
    takes them."""

    events: npt.NDArray[np.void]  # EVENT_DTYPE, sorted by (row, ts, type, event_id)
    ordered: Sequence[DecodedEvent]  # the decoded event of each row of ``events``
    rows: npt.NDArray[np.int32]  # the state rows to evaluate, ascending
    starts: npt.NDArray[np.int64]  # events of rows[i]: events[starts[i]:starts[i + 1]]


@dataclass
class Outcome:
    """What one evaluation writes and publishes."""

    records: list[Record] = field(default_factory=list)  # alerts, then score updates
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, reason label)
    suppressed: dict[str, int] = field(default_factory=dict)  # reason label -> alerts
    states: dict[str, bytes] = field(default_factory=dict)  # customer -> state record
    due: dict[str, int] = field(default_factory=dict)  # customer -> next due time (0 = none)


def events_input(customers: Sequence[str], kept: Sequence[DecodedEvent]) -> TimelineInput:
    """A batch's events (of ``customers``, the state rows) in timeline order; only the
    customers with an event are evaluated."""
    row_of = {c: i for i, c in enumerate(customers)}
    events = new_events(len(kept))
    events["row"] = [row_of[e.customer_id] for e in kept]
    events["kind"] = [e.kind for e in kept]
    events["severity"] = [e.severity for e in kept]
    events["resolved"] = [e.resolved for e in kept]
    events["ts"] = [e.ts for e in kept]
    events["cents"] = [e.cents for e in kept]
    events["complaint"] = [e.complaint for e in kept]
    events["refers"] = [e.refers for e in kept]
    order = order_events(
        events["row"], events["ts"], events["kind"], np.array([e.event_id for e in kept])
    )
    events = events[order]
    ordered = [kept[i] for i in order.tolist()]
    rows = np.unique(events["row"]).astype(np.int32)
    return TimelineInput(events, ordered, rows, customer_slices(events["row"], rows))


def due_input(states: npt.NDArray[np.void]) -> TimelineInput:
    """A sweep: every stored customer of ``states`` (a first event seen), with no events, so
    each is evaluated only at its own due times."""
    present = np.flatnonzero(states["first_seen"] > 0).astype(np.int32)
    return TimelineInput(new_events(0), [], present, np.zeros(present.shape[0] + 1, np.int64))


def evaluate(
    model: ModelBundle,
    customers: Sequence[str],
    states: npt.NDArray[np.void],
    timeline: TimelineInput,
    watermark: int,
    wall: float,
    topics: TopicTable,
) -> Outcome:
    """Evaluate ``timeline.rows`` of ``states`` (one row per customer; updated in place) up
    to ``watermark``; ``wall`` (epoch s) is the alerts' ``emitted_at``."""
    line = run_timeline(
        states,
        timeline.events,
        timeline.starts,
        timeline.rows,
        watermark,
        model.scoring,
        model.cuts,
        model.rfm_map,
    )
    out = Outcome()
    alerts = line.alerts[line.alerts["suppressed"] == 0]
    for a in line.alerts[line.alerts["suppressed"] != 0].tolist():
        reason = alert_kind(a[1]).label(AlertRow(*a[1:6]))
        out.suppressed[reason] = out.suppressed.get(reason, 0) + 1
    if alerts.shape[0]:
        _alert_records(model, customers, line, alerts, timeline.ordered, wall, topics, out)
    done = timeline.rows[line.evaluated]
    touched = [customers[row] for row in done.tolist()]
    records = score_records(touched, line.final[line.evaluated])
    updates = build_score_updates(model.model_version, states["clock"][done].tolist(), records)
    for k, (row, customer) in enumerate(zip(done.tolist(), touched, strict=True)):
        out.records.append((topics.scores, customer.encode(), updates[k]))
        out.states[customer] = states[row : row + 1].tobytes()
        out.due[customer] = int(states["due"][row])
    return out


def _alert_records(
    model: ModelBundle,
    customers: Sequence[str],
    line: Timeline,
    alerts: npt.NDArray[np.void],
    ordered: Sequence[DecodedEvent],
    wall: float,
    topics: TopicTable,
    out: Outcome,
) -> None:
    """The published alerts of one timeline run, in its order, into ``out``."""
    # one score record per evaluation an alert refers to (several alerts of one evaluation
    # share it), built column-wise in one go and encoded once
    refs = np.concatenate((alerts["after"], alerts["before"]))
    used, first = np.unique(refs, return_index=True)
    owners = np.concatenate((alerts["index"], alerts["index"]))[first[used >= 0]]
    used = used[used >= 0]
    built = score_records(
        [customers[i] for i in owners.tolist()], line.scores[used], ALERT_SCORE_COLUMNS
    )
    record_at = dict(zip(used.tolist(), built, strict=True))
    summary_at = {i: alert_summary(r) for i, r in record_at.items()}
    stamp = format_time(int(wall)) or ""
    for (
        row,
        kind_code,
        scheme,
        reason,
        frm,
        to,
        _,
        event,
        due,
        clock,
        after,
        before,
    ) in alerts.tolist():
        customer = customers[row]
        cause: dict[str, Any] = (
            {"type": "event", "event_id": ordered[event].event_id}
            if event >= 0
            else {"type": "timer", "due": due}
        )
        ctx = AlertContext(model.model_version, customer, clock, cause, stamp)
        alert = AlertRow(kind_code, scheme, reason, frm, to)
        kind, body = build_alert(
            ctx, alert, record_at[after], (summary_at[after], summary_at.get(before))
        )
        out.records.append((topics.alerts[kind.name], customer.encode(), body))
        label = (kind.name, kind.label(alert))
        out.alerts[label] = out.alerts.get(label, 0) + 1
