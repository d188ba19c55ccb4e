"""Wire formats: input event encoding, decoding and validation, dead-letter records.

This is the one place the JSON of the input topics is defined, both ways (the worker
decodes, ``custscore replay`` and the load generator encode); alert JSON is
:mod:`streams.alert_payloads`. Input values are decoded with
msgspec into typed structs (unknown fields are ignored, wrong types rejected); semantic
rules (time range, amount, severity, complaint id and key) come from :mod:`models.events` so
the CSV reader and the stream agree. A rejected message becomes a :class:`Rejected` with a
machine-readable reason; nothing raises out of :meth:`EventDecoder.decode`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

import msgspec

from engine.state import KIND_COMPLAINT, KIND_PURCHASE
from models.events import (
    COMPLAINT_CATEGORIES,
    KIND_BY_TYPE,
    EventValueError,
    amount_to_cents,
    common_cents,
    common_ts,
    complaint_fields,
    parse_severity,
    parse_ts,
)
from models.scorefile import format_time
from streams.keys import partitions_for

__all__ = [
    "COMPLAINT_CATEGORIES",
    "REASONS",
    "UNCATEGORISED",
    "DecodedEvent",
    "EventDecoder",
    "ProducerRecord",
    "Rejected",
    "dead_letter_record",
    "encode_envelope",
    "encode_event",
    "is_envelope",
    "pack_envelopes",
]


# Every dead-letter reason, for metrics and docs.
REASONS: Final = (
    "oversize",
    "bad_encoding",
    "bad_json",
    "missing_field",
    "wrong_type",
    "bad_ts",
    "ts_out_of_range",
    "ts_in_future",
    "bad_amount",
    "bad_severity",
    "bad_category",
    "bad_status",
    "bad_id",
    "key_mismatch",
    "wrong_partition",
    "unknown_topic",
)

_MAX_ID_LEN: Final = 128
_Time = str | int | float


class _Purchase(msgspec.Struct):
    event_id: str
    customer_id: str
    ts: _Time
    amount: float | int
    order_id: str | None = None
    currency: str | None = None
    items: int | None = None
    channel: str | None = None


class _Visit(msgspec.Struct):
    event_id: str
    customer_id: str
    ts: _Time
    channel: str | None = None
    duration_s: float | int | None = None
    page: str | None = None


class _Complaint(msgspec.Struct):
    event_id: str
    customer_id: str
    ts: _Time
    severity: int | float | str
    category: str | None = None
    status: str | None = None
    complaint_id: str | None = None  # the complaint this one is (or a resolution resolves)
    text: str | None = None  # validated as a string, never stored


_STRUCTS: Final = (_Purchase, _Visit, _Complaint)

UNCATEGORISED: Final = "uncategorised"  # the counter cell of a complaint with no category


class DecodedEvent(msgspec.Struct, frozen=True, gc=False):
    """A valid input event, reduced to what the engine needs.

    A frozen msgspec struct, not a dataclass: one is built per event, and a struct is
    built in C (a frozen dataclass pays an ``object.__setattr__`` per field); ``gc=False``
    as its fields are strings and integers only (no reference cycles to collect).
    """

    event_id: str
    customer_id: str
    kind: int
    ts: int  # epoch seconds
    cents: int = 0
    severity: int = 0
    resolved: int = 0
    # complaints: engine.state.complaint_key of the complaint this event is about (its
    # complaint_id, else its own event_id); refers = 1 for a resolution naming a complaint
    complaint: int = 0
    refers: int = 0
    category: str = ""  # complaints: the category given ("" = none)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message (or one event of an envelope) goes to the dead-letter topic."""

    reason: str
    detail: str
    index: int | None = None  # the event's position in its envelope (None: a whole message)
    raw: bytes | None = None  # that event's own bytes (None: the message value)


def _ids_ok(ids: Sequence[str]) -> bool:
    """Whether every id is 1.._MAX_ID_LEN printable characters (what :meth:`EventDecoder.
    _validate` asks of each), in three passes: printable is per character, so the ids are
    all printable exactly when their concatenation is."""
    lengths = list(map(len, ids))
    return min(lengths) >= 1 and max(lengths) <= _MAX_ID_LEN and "".join(ids).isprintable()


def is_envelope(value: bytes) -> bool:
    """A batch envelope: a JSON array (its first non-blank byte is ``[``); a single event is
    a JSON object."""
    return value.lstrip(b" \t\r\n")[:1] == b"["


def encode_envelope(events: Sequence[bytes]) -> bytes:
    """One envelope of already encoded events (:func:`encode_event`) of one input topic."""
    return b"[" + b",".join(events) + b"]"


ProducerRecord = tuple[str, int, bytes | None, bytes]  # (topic, partition, key, value)


def pack_envelopes(
    records: Sequence[ProducerRecord], max_events: int, max_bytes: int = 1_000_000
) -> list[ProducerRecord]:
    """Single-event records as envelopes: per (topic, partition), in the records' order, up
    to ``max_events`` events and ``max_bytes`` bytes each, keyed by their first event's key
    (every customer of one envelope is of that partition, so the key routes it there too)."""
    groups: dict[tuple[str, int], list[ProducerRecord]] = {}
    for record in records:
        groups.setdefault((record[0], record[1]), []).append(record)
    out: list[ProducerRecord] = []
    for (topic, partition), group in groups.items():
        chunk: list[bytes] = []
        size = 2
        key: bytes | None = None
        for _, _, event_key, value in group:
            if chunk and (len(chunk) >= max_events or size + len(value) + 1 > max_bytes):
                out.append((topic, partition, key, encode_envelope(chunk)))
                chunk, size = [], 2
            if not chunk:
                key = event_key
            chunk.append(value)
            size += len(value) + 1
        if chunk:
            out.append((topic, partition, key, encode_envelope(chunk)))
    return out


class EventDecoder:
    """Decodes the three input topics' values; configured once, used per message.

    A value is one event (a JSON object) or a *batch envelope*, a JSON array of events of the
    topic's type whose customers all belong to the message's partition (docs/alerts.md,
    "Batch envelopes"): :meth:`decode_message` returns one result per event.
    """

    def __init__(
        self,
        inputs: Mapping[str, str],
        *,
        max_payload_bytes: int,
        max_future_skew_s: int,
        partitions: int = 0,
        max_envelope_events: int = 10_000,
        max_envelope_bytes: int = 1_000_000,
    ) -> None:
        """``inputs``: input topic -> event type name (:attr:`streams.topics.TopicTable.inputs`);
        ``partitions``: the input topics' partition count (0: envelopes' partitions unchecked)."""
        structs: dict[str, type[msgspec.Struct]] = {
            "purchase": _Purchase,
            "visit": _Visit,
            "complaint": _Complaint,
        }
        self._decoders: dict[str, tuple[int, msgspec.json.Decoder[object]]] = {
            topic: (KIND_BY_TYPE[name], msgspec.json.Decoder(structs[name]))
            for topic, name in inputs.items()
        }
        # an envelope of the topic's events decoded in one call (its fast path)
        self._envelopes: dict[str, msgspec.json.Decoder[list[object]]] = {
            topic: msgspec.json.Decoder(list[structs[name]])  # type: ignore[valid-type]
            for topic, name in inputs.items()
        }
        self._max_payload = max_payload_bytes
        self._max_skew = max_future_skew_s
        self._partitions = partitions
        self._max_envelope_events = max_envelope_events
        self._max_envelope_bytes = max_envelope_bytes
        self._array = msgspec.json.Decoder(list[msgspec.Raw])

    def decode_message(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        wall_now: float,
    ) -> list[DecodedEvent | Rejected]:
        """Validate one message: one result for a single event, one per event of an envelope
        (in envelope order); an envelope that cannot be split gives one Rejected."""
        if value is None or not is_envelope(value) or topic not in self._decoders:
            return [self.decode(topic, key, value, wall_now)]
        if len(value) > self._max_envelope_bytes:
            limit = self._max_envelope_bytes
            return [Rejected("oversize", f"envelope of {len(value)} bytes > {limit}")]
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [Rejected("bad_encoding", f"invalid UTF-8 at byte {exc.start}")]
        # Fast path: the whole array into the topic's structs in one call. Any event that
        # does not decode fails it, and the per-event path below says which and why.
        try:
            msgs = self._envelopes[topic].decode(value)
        except msgspec.MsgspecError:
            return self._decode_parts(topic, partition, value, wall_now)
        if not msgs:
            return [Rejected("bad_json", "an envelope needs at least one event")]
        if len(msgs) > self._max_envelope_events:
            limit = self._max_envelope_events
            return [Rejected("oversize", f"envelope of {len(msgs)} events > {limit}")]
        kind = self._decoders[topic][0]
        events = self._validate_all(kind, msgs, wall_now)
        if events is not None and (not self._partitions or self._all_of(partition, events)):
            return list(events)
        out: list[DecodedEvent | Rejected] = []
        for msg in msgs:
            try:
                out.append(self._validate(kind, msg, None, wall_now))
            except EventValueError as exc:
                out.append(Rejected(exc.reason, str(exc)))
        return self._envelope_results(partition, value, out, None)

    def _validate_all(
        self, kind: int, msgs: Sequence[object], wall_now: float
    ) -> list[DecodedEvent] | None:
        """An envelope's events when every one of them is valid (what :meth:`_validate` gives
        each), checked a field at a time over the whole envelope: its common case, in a few
        passes instead of a few calls per event. None when any event may be invalid (or is a
        complaint): the per-event path then says which and why."""
        if kind == KIND_COMPLAINT:
            return None
        structs = cast("Sequence[_Purchase | _Visit]", msgs)
        event_ids = [m.event_id for m in structs]
        customer_ids = [m.customer_id for m in structs]
        if not _ids_ok(event_ids) or not _ids_ok(customer_ids):
            return None
        ts = common_ts([m.ts for m in structs])
        if ts is None or max(ts) > wall_now + self._max_skew:
            return None
        if kind != KIND_PURCHASE:
            return [
                DecodedEvent(e, c, kind, t)
                for e, c, t in zip(event_ids, customer_ids, ts, strict=True)
            ]
        cents = common_cents([cast("_Purchase", m).amount for m in structs])
        if cents is None:
            return None
        return [
            DecodedEvent(e, c, kind, t, x)
            for e, c, t, x in zip(event_ids, customer_ids, ts, cents, strict=True)
        ]

    def _all_of(self, partition: int, events: Sequence[DecodedEvent]) -> bool:
        """Whether every one of ``events``' customers belongs to ``partition``."""
        homes = partitions_for([e.customer_id for e in events], self._partitions)
        return homes.count(partition) == len(homes)

    def _decode_parts(
        self, topic: str, partition: int, value: bytes, wall_now: float
    ) -> list[DecodedEvent | Rejected]:
        """An envelope (valid UTF-8) event by event: its bad events' own reasons."""
        try:
            parts = self._array.decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return [Rejected("bad_json", f"envelope: {exc}")]
        if not parts:
            return [Rejected("bad_json", "an envelope needs at least one event")]
        if len(parts) > self._max_envelope_events:
            limit = self._max_envelope_events
            return [Rejected("oversize", f"envelope of {len(parts)} events > {limit}")]
        # each part is valid UTF-8: a slice of the (valid) envelope between ASCII delimiters
        results = [self._decode_utf8(topic, None, bytes(part), wall_now) for part in parts]
        return self._envelope_results(partition, value, results, parts)

    def _envelope_results(
        self,
        partition: int,
        value: bytes,
        results: list[DecodedEvent | Rejected],
        parts: list[msgspec.Raw] | None,
    ) -> list[DecodedEvent | Rejected]:
        """``results`` (one per event of the envelope ``value``) with the partition check
        applied and each Rejected given its index and raw bytes (``parts``: the envelope's
        events, split on demand when None)."""
        if self._partitions:
            valid = [i for i, r in enumerate(results) if isinstance(r, DecodedEvent)]
            homes = partitions_for(
                [results[i].customer_id for i in valid],  # type: ignore[union-attr]
                self._partitions,
            )
            for i, home in zip(valid, homes, strict=True):
                if home != partition:
                    results[i] = Rejected(
                        "wrong_partition", f"customer's partition is {home}, not {partition}"
                    )
        for index, result in enumerate(results):
            if isinstance(result, Rejected):
                if parts is None:
                    parts = self._array.decode(value)
                raw = bytes(parts[index])
                results[index] = Rejected(result.reason, result.detail, index, raw)
        return results

    def decode(
        self, topic: str, key: bytes | None, value: bytes | None, wall_now: float
    ) -> DecodedEvent | Rejected:
        """Validate one single-event message of ``topic``; ``wall_now`` bounds future
        timestamps."""
        if topic not in self._decoders:
            return Rejected("unknown_topic", topic)
        if value is None:
            return Rejected("bad_json", "empty value")
        if len(value) > self._max_payload:
            return Rejected("oversize", f"{len(value)} bytes > {self._max_payload}")
        return self._decode_one(topic, key, value, wall_now)

    def _decode_one(
        self, topic: str, key: bytes | None, value: bytes, wall_now: float
    ) -> DecodedEvent | Rejected:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejected("bad_encoding", f"invalid UTF-8 at byte {exc.start}")
        return self._decode_utf8(topic, key, value, wall_now)

    def _decode_utf8(
        self, topic: str, key: bytes | None, value: bytes, wall_now: float
    ) -> DecodedEvent | Rejected:
        """:meth:`_decode_one` of a value known to be valid UTF-8."""
        kind, decoder = self._decoders[topic]
        try:
            msg = decoder.decode(value)
        except msgspec.ValidationError as exc:
            text = str(exc)
            reason = (
                "missing_field"
                if text.startswith("Object missing required field")
                else "wrong_type"
            )
            return Rejected(reason, text)
        except msgspec.DecodeError as exc:
            return Rejected("bad_json", str(exc))
        try:
            return self._validate(kind, msg, key, wall_now)
        except EventValueError as exc:
            return Rejected(exc.reason, str(exc))

    def _validate(
        self, kind: int, msg: object, key: bytes | None, wall_now: float
    ) -> DecodedEvent | Rejected:
        assert isinstance(msg, _STRUCTS)
        event_id, customer_id = msg.event_id, msg.customer_id
        if not event_id or len(event_id) > _MAX_ID_LEN or not event_id.isprintable():
            return Rejected("bad_id", f"event_id must be 1..{_MAX_ID_LEN} printable characters")
        if not customer_id or len(customer_id) > _MAX_ID_LEN or not customer_id.isprintable():
            return Rejected("bad_id", f"customer_id must be 1..{_MAX_ID_LEN} printable characters")
        if key is not None and key != customer_id.encode("utf-8"):
            return Rejected("key_mismatch", "message key differs from customer_id")
        ts = parse_ts(msg.ts)
        if ts > wall_now + self._max_skew:
            return Rejected("ts_in_future", f"{ts - int(wall_now)} s ahead of wall time")
        if isinstance(msg, _Purchase):
            return DecodedEvent(event_id, customer_id, kind, ts, amount_to_cents(msg.amount))
        if isinstance(msg, _Visit):
            return DecodedEvent(event_id, customer_id, kind, ts)
        severity = parse_severity(msg.severity)
        if msg.category is not None and msg.category not in COMPLAINT_CATEGORIES:
            return Rejected("bad_category", f"unknown category {msg.category[:40]!r}")
        if msg.status not in (None, "open", "resolved"):
            return Rejected("bad_status", "status must be open or resolved")
        resolved = msg.status == "resolved"
        complaint, refers = complaint_fields(msg.event_id, msg.complaint_id, resolved=resolved)
        return DecodedEvent(
            msg.event_id,
            msg.customer_id,
            kind,
            ts,
            severity=severity,
            resolved=int(resolved),
            complaint=complaint,
            refers=refers,
            category=msg.category or "",
        )


def dead_letter_record(
    *,
    rejected: Rejected,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    wall_now: float,
) -> bytes:
    """The dead-letter JSON: reason, source position and the original bytes (base64): the
    event's own bytes and its index for one event of an envelope, else the message value."""
    original = rejected.raw if rejected.raw is not None else value
    return msgspec.json.encode(
        {
            "schema_version": 1,
            "reason": rejected.reason,
            "detail": rejected.detail[:500],
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "envelope_index": rejected.index,
            "key_b64": base64.b64encode(key).decode() if key is not None else None,
            "value_b64": base64.b64encode(original).decode() if original is not None else None,
            "dead_lettered_at": format_time(int(wall_now)),
        }
    )


def encode_event(
    kind: int,
    event_id: str,
    customer_id: str,
    ts: int,
    cents: int,
    severity: int,
    resolved: int,
    complaint_id: str | None = None,
    *,
    ts_ms: int | None = None,
    category: str | None = None,
) -> bytes:
    """The input-topic JSON of one event: ``ts`` epoch seconds, written as epoch milliseconds
    (``ts_ms`` instead, when the caller has millisecond precision), ``amount`` in units."""
    body: dict[str, object] = {
        "event_id": event_id,
        "customer_id": customer_id,
        "ts": ts * 1000 if ts_ms is None else ts_ms,
    }
    if kind == KIND_PURCHASE:
        body["amount"] = cents / 100
    elif kind == KIND_COMPLAINT:
        body["severity"] = severity
        if resolved:
            body["status"] = "resolved"
        if complaint_id is not None:
            body["complaint_id"] = complaint_id
        if category is not None:
            body["category"] = category
    return msgspec.json.encode(body)
