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

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.alert_rules import KIND_OUTCOME
from engine.segments import GROUP_NAMES, KIND_NAMES, TIER_NAMES
from engine.state import KIND_COMPLAINT, new_events
from engine.timeline import Timeline, customer_slices, order_events, run_timeline
from models.bundle import ModelBundle
from models.control_group import NO_CONTROL_GROUP, ControlGroup
from models.scorefile import format_time, score_column
from streams.alert_kinds import (
    ALERT_KINDS,
    ALERT_ROW_COLUMNS,
    AlertBatch,
    AlertRow,
    Summaries,
    alert_identities,
    alert_kind,
    alert_rows,
    build_alerts,
)
from streams.alert_payloads import (
    alert_ids,
    alert_summaries,
    build_score_updates,
    contact_action,
)
from streams.codec import UNCATEGORISED, DecodedEvent
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
    suppressed: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, reason)
    states: dict[str, bytes] = field(default_factory=dict)  # customer -> state record
    due: dict[str, int] = field(default_factory=dict)  # customer -> next due time (0 = none)
    # the marketing loop's counters (contacts, outcomes, suppressed contacts, complaints by
    # category), committed with the states: docs/outcomes.md, "Counters"
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


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
    control: ControlGroup = NO_CONTROL_GROUP,
) -> Outcome:
    """Evaluate ``timeline.rows`` of ``states`` (one row per customer; updated in place) up
    to ``watermark``; ``wall`` (epoch s) is the alerts' ``emitted_at``; ``control`` says
    which customers are held out."""
    holdout = control.held_out_many(customers).astype(np.uint8)
    prior_refs = states["contact_ref"].copy()
    # a customer's outcome counts (the cluster sums' inputs) belong to one holdout version
    version_tag = _version_tag(control.version)
    stale = states["resp_version"] != version_tag
    states["resp_n"][stale] = 0
    states["resp_y"][stale] = 0
    states["resp_version"] = version_tag
    line = run_timeline(
        states,
        timeline.events,
        timeline.starts,
        timeline.rows,
        watermark,
        model.scoring,
        model.cuts,
        model.rfm_map,
        holdout,
    )
    out = Outcome()
    for event in timeline.ordered:
        if event.kind == KIND_COMPLAINT and not event.resolved:
            out.count(f"complaint|{event.category or UNCATEGORISED}")
    alerts = line.alerts[line.alerts["suppressed"] == 0]
    for a in line.alerts[line.alerts["suppressed"] != 0][ALERT_ROW_COLUMNS].tolist():
        row = AlertRow(*a)
        kind = alert_kind(row.kind)
        reason = kind.label(row)
        out.suppressed[kind.name, reason] = out.suppressed.get((kind.name, reason), 0) + 1
        out.count(f"suppressed|{kind.name}|{reason}")
    if alerts.shape[0]:
        opened = _alert_records(
            model, customers, line, alerts, timeline.ordered, wall, topics, control, prior_refs, out
        )
        for at, contact_id in opened.items():
            if states["contact_at"][at] > 0:  # the contact's window is still open: remember it
                states["contact_ref"][at] = np.frombuffer(bytes.fromhex(contact_id), np.uint8)
    done = timeline.rows[line.evaluated]
    touched = [customers[row] for row in done.tolist()]
    updates = build_score_updates(
        model.model_version, touched, states["clock"][done], line.final[line.evaluated]
    )
    blob, size = states[done].tobytes(), states.dtype.itemsize
    for k, (customer, update, due) in enumerate(
        zip(touched, updates, states["due"][done].tolist(), strict=True)
    ):
        out.records.append((topics.scores, customer.encode(), update))
        out.states[customer] = blob[k * size : (k + 1) * size]
        out.due[customer] = due
    return out


def _alert_records(
    model: ModelBundle,
    customers: Sequence[str],
    line: Timeline,
    alerts: npt.NDArray[np.void],
    ordered: Sequence[DecodedEvent],
    wall: float,
    topics: TopicTable,
    control: ControlGroup,
    prior_refs: npt.NDArray[np.uint8],
    out: Outcome,
) -> dict[int, str]:
    """The published alerts of one timeline run, in its order, into ``out``; returns the id
    of the last contact each customer (state row) was sent in this run."""
    index = alerts["index"].tolist()
    customer_ids = [customers[i] for i in index]
    rows = alert_rows(alerts[name].astype(np.int64) for name in ALERT_ROW_COLUMNS)
    # the cause of each alert: the event (alerts of one event share its cause) or the timer
    causes: list[dict[str, Any]] = []
    anchors: list[str] = []
    cause_ts: list[int] = []
    event_cause: dict[int, dict[str, Any]] = {}
    for event, due in zip(alerts["event"].tolist(), alerts["due"].tolist(), strict=True):
        if event >= 0:
            decoded = ordered[event]
            cause = event_cause.get(event)
            if cause is None:
                cause = event_cause[event] = {"type": "event", "event_id": decoded.event_id}
            causes.append(cause)
            anchors.append(f"e:{decoded.event_id}")
            cause_ts.append(decoded.ts)
        else:
            causes.append({"type": "timer", "due": due})
            anchors.append(f"t:{due}")
            cause_ts.append(due)
    codes = alerts["kind"].tolist()
    ids = alert_ids(model.model_version, customer_ids, codes, *alert_identities(rows), anchors)
    # an outcome measures the customer's last contact: sent earlier in this run, or before
    contact_codes = {kind.code for kind in ALERT_KINDS if kind.contact}
    contact_ids: list[str | None] = [None] * len(ids)
    opened: dict[int, str] = {}
    for i in np.flatnonzero(np.isin(rows.kind, [*contact_codes, KIND_OUTCOME])).tolist():
        if codes[i] in contact_codes:
            opened[index[i]] = ids[i]
            continue
        contact_id = opened.get(index[i]) or (bytes(prior_refs[index[i]]).hex() or None)
        contact_ids[i] = None if contact_id == "0" * 32 else contact_id
    # one score row per evaluation an alert refers to (several alerts of one evaluation
    # share it); its encoded summary and the score columns a kind's fields read are built
    # column-wise, for the alerts of the kinds that show them only
    refs = np.concatenate((alerts["after"], alerts["before"]))
    used = np.unique(refs[refs >= 0])
    scores = line.scores[used]
    before = alerts["before"]
    before_at = np.where(before >= 0, np.searchsorted(used, before), -1).tolist()
    after_at = np.searchsorted(used, alerts["after"]).tolist()

    def score(name: str, at: Sequence[int]) -> list[Any]:
        return score_column(name, scores[name][np.asarray(at, dtype=np.intp)])

    def summaries(at: Sequence[int]) -> list[Summaries]:
        pairs = [(after_at[i], before_at[i]) for i in at]
        needed = sorted({k for pair in pairs for k in pair if k >= 0})
        encoded = dict(zip(needed, alert_summaries(scores[needed]), strict=True))
        return [(encoded[a], encoded[b] if b >= 0 else None) for a, b in pairs]

    bodies = build_alerts(
        AlertBatch(
            model.model_version,
            format_time(int(wall)) or "",
            control.version,
            float(model.scoring.response_window_days),
            rows,
            ids,
            customer_ids,
            alerts["clock"].tolist(),
            causes,
            cause_ts,
            contact_ids,
            summaries,
            score,
            after_at,
        )
    )
    # a kind's label (and the row's topic) is a function of the row: once per distinct row
    labels: dict[tuple[int, ...], tuple[str, tuple[str, str]]] = {}
    row_fields = zip(*(np.asarray(column).tolist() for column in rows), strict=True)
    for fields, customer, body in zip(row_fields, customer_ids, bodies, strict=True):
        code = fields[0]
        if code in contact_codes or code == KIND_OUTCOME:
            _count_contact(out, AlertRow(*fields), control.version)
        routed = labels.get(fields)
        if routed is None:
            alert = AlertRow(*fields)
            kind = alert_kind(code)
            topic = topics.holdout if kind.contact and alert.group else topics.alerts[kind.name]
            # the kind label counts what its own topic carries: held-out contacts apart
            label = (
                ("holdout", f"{kind.name}:{kind.label(alert)}")
                if topic == topics.holdout
                else (kind.name, kind.label(alert))
            )
            routed = labels[fields] = (topic, label)
        topic, label = routed
        out.records.append((topic, customer.encode(), body))
        out.alerts[label] = out.alerts.get(label, 0) + 1
    return opened


def _version_tag(version: str) -> int:
    """The 32-bit tag of a holdout version kept in the state record (never 0)."""
    return int(version[:8], 16) or 1


def _count_contact(out: Outcome, alert: AlertRow, holdout_version: str) -> None:
    """The counters of a contact, or of an outcome and its group's cluster sums."""
    counters = out.counters
    cells = _contact_cells(alert, holdout_version)
    if alert.kind != KIND_OUTCOME:
        name = _contact_counter(cells)
        counters[name] = counters.get(name, 0) + 1
        return
    n, responded, spend, clusters = _outcome_counters(cells)
    for name, k in ((n, 1), (responded, alert.responded), (spend, alert.cents)):
        counters[name] = counters.get(name, 0) + k
    for names, n_after, y_after in zip(
        clusters,
        (alert.all_n, alert.kind_n, alert.reason_n),
        (alert.all_y, alert.kind_y, alert.reason_y),
        strict=True,
    ):
        _count_cluster(counters, names, n_after, y_after, alert.responded)


@functools.lru_cache(maxsize=4096)
def _contact_counter(cells: tuple[str, ...]) -> str:
    """The counter of a contact with ``cells`` (:func:`_contact_cells`)."""
    return "|".join(("contact", *cells))


@functools.lru_cache(maxsize=4096)
def _outcome_counters(
    cells: tuple[str, ...],
) -> tuple[str, str, str, tuple[tuple[str, str, str, str], ...]]:
    """The counters of an outcome with ``cells`` (:func:`_contact_cells`): outcomes,
    responses and response spend, and per cluster scope (all, the contact's kind, its kind
    and reason) of its group the cluster sums' m, n2, yn and y2."""
    prefix = "|".join(("outcome", *cells))
    kind_name, reason_name, _action, _tier, group, holdout_version = cells

    def sums(scope: str) -> tuple[str, str, str, str]:
        cell = f"cluster|{scope}|{group}|{holdout_version}"
        return f"{cell}|m", f"{cell}|n2", f"{cell}|yn", f"{cell}|y2"

    clusters = tuple(sums(scope) for scope in ("all", kind_name, f"{kind_name}:{reason_name}"))
    return f"{prefix}|n", f"{prefix}|responded", f"{prefix}|spend_cents", clusters


def _count_cluster(
    counters: dict[str, int],
    names: tuple[str, str, str, str],
    n_after: int,
    y_after: int,
    dy: int,
) -> None:
    """The change one outcome (``dy``: it was a response) makes to its group's cluster sums
    (docs/outcomes.md); ``names`` are the counters of the sums m, n2, yn and y2.

    A customer is the unit the control group randomises, so the uplift's variance is taken
    over customers: per group the number of customers with an outcome (m) and the sums over
    customers of n_i^2, y_i n_i and y_i^2 (n_i outcomes, y_i responses of customer i).
    ``n_after``/``y_after`` are the customer's counts with this outcome; the increments are
    the differences of the squares.
    """
    n, y = n_after - 1, y_after - dy
    if n_after >= 65535:
        return  # the customer's count saturated: leave the sums as they are
    m, n2, yn, y2 = names
    if n == 0:
        counters[m] = counters.get(m, 0) + 1
    counters[n2] = counters.get(n2, 0) + 2 * n + 1
    counters[yn] = counters.get(yn, 0) + y + dy * (n + 1)
    counters[y2] = counters.get(y2, 0) + 2 * y * dy + dy


def _contact_cells(alert: AlertRow, holdout_version: str) -> tuple[str, ...]:
    """kind, reason, action, tier, group and holdout version of a contact (or of the
    contact an outcome measures): the cells its counters are kept by."""
    kind = alert.contact_kind if alert.kind == KIND_OUTCOME else alert.kind
    reason = alert_kind(kind).label(alert if kind == alert.kind else AlertRow(kind, *alert[1:]))
    return (
        KIND_NAMES[kind],
        reason,
        _contact_action(kind, alert.reason, alert.tier, alert.quadrant),
        TIER_NAMES[alert.tier],
        GROUP_NAMES[alert.group],
        holdout_version,
    )


_contact_action: Final = functools.lru_cache(maxsize=4096)(contact_action)
