"""The standard event CSV (``event_id,type,customer_id,ts,amount,severity``) and value parsing.

Field rules here are shared with the stream decoder: timestamps are RFC 3339 strings or
epoch milliseconds and must fall in the engine's time range; amounts become integer cents
(negative = refund); complaint severity is 1..5; a complaint is known by its
``complaint_id`` or else its ``event_id`` (:func:`complaint_fields`). Optional columns after
the six standard ones, found by header name: ``status`` (``open``/``resolved``),
``complaint_id`` and ``category`` (one of :data:`COMPLAINT_CATEGORIES`). A bad row is reported
with its line number and reason and skipped, never fatal.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final, cast

import numpy as np
import numpy.typing as npt

from engine.state import (
    KIND_COMPLAINT,
    KIND_PURCHASE,
    KIND_VISIT,
    MAX_TS,
    complaint_key,
    new_events,
)

__all__ = [
    "COMPLAINT_CATEGORIES",
    "EVENT_COLUMNS",
    "KIND_BY_TYPE",
    "MAX_ABS_AMOUNT",
    "MAX_COMPLAINT_ID_LEN",
    "OPTIONAL_EVENT_COLUMNS",
    "TYPE_BY_KIND",
    "EventLog",
    "EventValueError",
    "amount_to_cents",
    "common_cents",
    "common_ts",
    "complaint_fields",
    "parse_severity",
    "parse_ts",
    "read_event_csv",
]

EVENT_COLUMNS = ("event_id", "type", "customer_id", "ts", "amount", "severity")
# anywhere after EVENT_COLUMNS, by name
OPTIONAL_EVENT_COLUMNS = ("status", "complaint_id", "category")
# what a complaint may name as its category (the input contract, docs/alerts.md)
COMPLAINT_CATEGORIES: Final = frozenset(
    {"product", "delivery", "service", "billing", "price", "website", "other"}
)
MAX_COMPLAINT_ID_LEN = 128
# the one event type <-> engine kind table (CSV ``type``, input topics, metrics, replay)
KIND_BY_TYPE = {"purchase": KIND_PURCHASE, "visit": KIND_VISIT, "complaint": KIND_COMPLAINT}
TYPE_BY_KIND = {kind: name for name, kind in KIND_BY_TYPE.items()}
MAX_ABS_AMOUNT = 10_000_000.0  # per event, currency units; larger is treated as bad input
_MS_MIN = 1000  # 1970-01-01T00:00:01Z, the earliest time the state record can hold


class EventValueError(ValueError):
    """A field value that breaks the input contract; ``reason`` is machine-readable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def parse_ts(value: object) -> int:
    """Event time in epoch seconds from an RFC 3339 string or epoch milliseconds."""
    if type(value) is int and _MS_MIN <= value and value // 1000 <= MAX_TS:
        return value // 1000  # the common case, epoch ms in range (what the rest concludes)
    if isinstance(value, bool):
        raise EventValueError("bad_ts", f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise EventValueError("bad_ts", f"not finite: {value!r}")
        ms = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isascii() and text.lstrip("-").isdigit():  # "²" is a digit too
            ms = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text)
                ms = int(parsed.timestamp() * 1000)
            except (ValueError, OverflowError, OSError):
                raise EventValueError("bad_ts", f"not RFC 3339 or epoch ms: {value!r}") from None
            if parsed.tzinfo is None:
                raise EventValueError("bad_ts", f"RFC 3339 time needs an offset: {value!r}")
    else:
        raise EventValueError("bad_ts", f"not a timestamp: {value!r}")
    if ms < _MS_MIN or ms // 1000 > MAX_TS:
        raise EventValueError("ts_out_of_range", f"{value!r} is outside 1970..2106")
    return ms // 1000


def common_ts(values: Sequence[object]) -> list[int] | None:
    """:func:`parse_ts` of each of ``values`` when all are its common case (epoch ms, an int
    in range), in a few passes over them; None when any is not (then parse each)."""
    if not values or set(map(type, values)) != {int}:
        return None
    ms = cast("Sequence[int]", values)
    if min(ms) < _MS_MIN or max(ms) // 1000 > MAX_TS:
        return None
    return [v // 1000 for v in ms]


def common_cents(values: Sequence[object]) -> list[int] | None:
    """:func:`amount_to_cents` of each of ``values`` when all are its common case (a float
    within ±MAX_ABS_AMOUNT, not NaN); None when any is not (then convert each)."""
    if not values or set(map(type, values)) != {float}:
        return None
    amounts = cast("Sequence[float]", values)
    if not bool(np.all(np.abs(np.array(amounts, dtype=np.float64)) <= MAX_ABS_AMOUNT)):
        return None
    return [round(v * 100) for v in amounts]


def amount_to_cents(value: object) -> int:
    """Integer cents of a finite amount (negative = refund)."""
    if type(value) is float and -MAX_ABS_AMOUNT <= value <= MAX_ABS_AMOUNT:  # not NaN either
        return round(value * 100)  # the common case (what the rest concludes)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EventValueError("bad_amount", f"not a number: {value!r}")
    try:
        amount = float(value)
    except ValueError:
        raise EventValueError("bad_amount", f"not a number: {value!r}") from None
    if not math.isfinite(amount) or abs(amount) > MAX_ABS_AMOUNT:
        raise EventValueError("bad_amount", f"out of range: {value!r}")
    return round(amount * 100)


def parse_severity(value: object) -> int:
    """Complaint severity, an integer 1..5."""
    if isinstance(value, bool):
        raise EventValueError("bad_severity", f"not an integer: {value!r}")
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise EventValueError("bad_severity", f"not an integer: {value!r}") from None
    if not isinstance(number, int | float) or not 1 <= number <= 5 or number != int(number):
        raise EventValueError("bad_severity", f"must be 1..5: {value!r}")
    return int(number)


def complaint_fields(event_id: str, complaint_id: str | None, *, resolved: bool) -> tuple[int, int]:
    """(complaint key, refers) of a complaint event, as EVENT_DTYPE ``complaint``/``refers``.

    An open complaint is known by its ``complaint_id`` if it has one, else by its
    ``event_id``; a resolved one with a ``complaint_id`` is a resolution of that complaint
    (refers = 1); a resolved one without is a complaint filed already resolved (refers = 0).
    ``complaint_id``, when given, must be 1..MAX_COMPLAINT_ID_LEN printable characters.
    """
    if complaint_id is not None and (
        not complaint_id
        or len(complaint_id) > MAX_COMPLAINT_ID_LEN
        or not complaint_id.isprintable()
    ):
        raise EventValueError(
            "bad_id", f"complaint_id must be 1..{MAX_COMPLAINT_ID_LEN} printable characters"
        )
    return complaint_key(complaint_id or event_id), int(resolved and complaint_id is not None)


@dataclass
class EventLog:
    """Validated events of a CSV, in event-time order (stable), with customer rows assigned."""

    customer_ids: list[str]
    event_ids: list[str]
    events: npt.NDArray[np.void]
    rows_read: int
    bad_rows: list[tuple[int, str]] = field(default_factory=list)
    # complaint_id of each event that has one, by position in ``events`` (for replay)
    complaint_ids: dict[int, str] = field(default_factory=dict)
    # category of each complaint that has one, by position in ``events`` (for replay)
    categories: dict[int, str] = field(default_factory=dict)

    @property
    def last_ts(self) -> int:
        """Largest event time (epoch s), 0 when empty."""
        return int(self.events["ts"].max()) if self.events.shape[0] else 0


def _rows(path: Path, optional: dict[str, int]) -> Iterator[tuple[int, list[str]]]:
    """Data rows with line numbers; fills ``optional`` with OPTIONAL_EVENT_COLUMNS positions."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise EventValueError("empty_file", f"{path} is empty")
        if [h.strip() for h in header[: len(EVENT_COLUMNS)]] != list(EVENT_COLUMNS):
            raise EventValueError(
                "bad_header", f"{path}: header must start with {','.join(EVENT_COLUMNS)}"
            )
        extra = [h.strip() for h in header[len(EVENT_COLUMNS) :]]
        optional.update(
            {
                name: len(EVENT_COLUMNS) + extra.index(name)
                for name in OPTIONAL_EVENT_COLUMNS
                if name in extra
            }
        )
        for row in reader:
            yield reader.line_num, row


def read_event_csv(path: str | Path) -> EventLog:
    """Read and validate an event CSV; bad rows are collected in ``bad_rows`` and skipped.

    Raises EventValueError for a file that cannot be read as an event CSV at all, and
    OSError / UnicodeDecodeError as raised by the file system.
    """
    path = Path(path)
    index: dict[str, int] = {}
    customer_ids: list[str] = []
    event_ids: list[str] = []
    rows: list[tuple[int, int, int, int, int, int, int, int]] = []
    cids: dict[int, str] = {}
    cats: dict[int, str] = {}
    optional: dict[str, int] = {}
    bad: list[tuple[int, str]] = []
    seen_ids: set[str] = set()
    read = 0
    for line, row in _rows(path, optional):
        read += 1
        try:
            if len(row) < len(EVENT_COLUMNS):
                raise EventValueError("missing_field", f"{len(row)} columns")
            event_id, kind_name, customer, ts_text, amount_text, severity_text = row[:6]
            if not event_id or not customer:
                raise EventValueError("missing_field", "event_id and customer_id are required")
            kind = KIND_BY_TYPE.get(kind_name.strip())
            if kind is None:
                raise EventValueError("bad_type", f"unknown type {kind_name!r}")
            ts = parse_ts(ts_text)
            cents = severity = resolved = complaint = refers = 0
            complaint_id = category = None
            if kind == KIND_PURCHASE:
                if not amount_text.strip():
                    raise EventValueError("missing_field", "purchase needs an amount")
                cents = amount_to_cents(amount_text)
            elif kind == KIND_COMPLAINT:
                severity = parse_severity(severity_text)
                status = _cell(row, optional.get("status")).strip()
                if status not in ("", "open", "resolved"):
                    raise EventValueError("bad_status", "status must be open or resolved")
                resolved = int(status == "resolved")
                complaint_id = _cell(row, optional.get("complaint_id")) or None
                category = _cell(row, optional.get("category")).strip() or None
                if category is not None and category not in COMPLAINT_CATEGORIES:
                    raise EventValueError("bad_category", f"unknown category {category[:40]!r}")
                complaint, refers = complaint_fields(
                    event_id, complaint_id, resolved=bool(resolved)
                )
        except EventValueError as exc:
            bad.append((line, str(exc)))
            continue
        if event_id in seen_ids:
            bad.append((line, f"duplicate_event_id: {event_id}"))
            continue
        seen_ids.add(event_id)
        cust_row = index.get(customer)
        if cust_row is None:
            cust_row = index[customer] = len(customer_ids)
            customer_ids.append(customer)
        if complaint_id is not None:
            cids[len(event_ids)] = complaint_id
        if category is not None:
            cats[len(event_ids)] = category
        event_ids.append(event_id)
        rows.append((cust_row, kind, severity, resolved, ts, cents, complaint, refers))
    events = new_events(len(rows))
    if rows:
        columns = list(zip(*rows, strict=True))
        names = ("row", "kind", "severity", "resolved", "ts", "cents", "complaint", "refers")
        for name, values in zip(names, columns, strict=True):
            events[name] = values
    order = np.argsort(events["ts"], kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(order.shape[0])
    return EventLog(
        customer_ids=customer_ids,
        event_ids=[event_ids[i] for i in order],
        events=events[order],
        rows_read=read,
        bad_rows=bad,
        complaint_ids={int(position[i]): cid for i, cid in cids.items()},
        categories={int(position[i]): cat for i, cat in cats.items()},
    )


def _cell(row: list[str], index: int | None) -> str:
    """The cell at ``index`` of ``row``, "" when the column or cell is absent."""
    return row[index] if index is not None and index < len(row) else ""
