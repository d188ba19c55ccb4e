"""``complaint_id`` in the input contract: the stream decoder and the event CSV reader agree.

An open complaint is known by its ``complaint_id`` if present, else by its own ``event_id``; a
resolved complaint with a ``complaint_id`` is a resolution of that complaint (``refers`` = 1);
a resolved complaint without one was filed already resolved (``refers`` = 0, its own key).
Real JSON messages go through ``EventDecoder.decode`` with both ``ts`` formats; the same
events as a CSV go through ``read_event_csv``; both are folded by the engine kernel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.kernels import apply_events
from engine.state import EVENT_DTYPE, KIND_COMPLAINT, complaint_key, new_events, new_states
from models.events import read_event_csv
from streams.codec import REASONS, DecodedEvent, EventDecoder, Rejected

TOPIC = "customer.complaint"
WALL = 1_900_000_000.0
DECODER = EventDecoder(
    {"customer.purchase": "purchase", "customer.visit": "visit", TOPIC: "complaint"},
    max_payload_bytes=65_536,
    max_future_skew_s=86_400,
)
RFC3339 = "1997-04-01T10:00:00Z"
EPOCH_MS = 859_888_800_000  # the same instant
TS = 859_888_800


def decode(body: dict[str, Any], customer: str = "bob") -> DecodedEvent | Rejected:
    value = json.dumps({"customer_id": customer, "severity": 3, **body}).encode()
    return DECODER.decode(TOPIC, customer.encode(), value, WALL)


def accepted(body: dict[str, Any]) -> DecodedEvent:
    out = decode(body)
    assert isinstance(out, DecodedEvent), out
    return out


@pytest.mark.parametrize("ts", [RFC3339, EPOCH_MS], ids=["rfc3339", "epoch_ms"])
@pytest.mark.parametrize(
    ("extra", "key_of", "resolved", "refers"),
    [
        ({}, "c-ev", 0, 0),  # open, no complaint_id: known by its own event_id
        ({"status": "open"}, "c-ev", 0, 0),
        ({"complaint_id": "T-17"}, "T-17", 0, 0),  # open, known by its complaint_id
        ({"status": "open", "complaint_id": "T-17"}, "T-17", 0, 0),
        ({"status": "resolved", "complaint_id": "T-17"}, "T-17", 1, 1),  # a resolution
        ({"status": "resolved"}, "c-ev", 1, 0),  # filed already resolved
    ],
)
def test_decoder_fills_complaint_key_and_refers(
    ts: object, extra: dict[str, str], key_of: str, resolved: int, refers: int
) -> None:
    out = accepted({"event_id": "c-ev", "ts": ts, **extra})
    assert out.kind == KIND_COMPLAINT
    assert out.ts == TS
    assert out.severity == 3
    assert (out.complaint, out.resolved, out.refers) == (complaint_key(key_of), resolved, refers)
    assert out.complaint != 0


@pytest.mark.parametrize("ts", [RFC3339, EPOCH_MS], ids=["rfc3339", "epoch_ms"])
@pytest.mark.parametrize(
    ("complaint_id", "reason"),
    [
        ("", "bad_id"),
        ("x" * 129, "bad_id"),
        ("T\n17", "bad_id"),
        ("T\x0017", "bad_id"),
        (17, "wrong_type"),
        (["T-17"], "wrong_type"),
        (True, "wrong_type"),
    ],
)
def test_a_bad_complaint_id_is_a_dead_letter(ts: object, complaint_id: object, reason: str) -> None:
    out = decode({"event_id": "c-ev", "ts": ts, "status": "resolved", "complaint_id": complaint_id})
    assert isinstance(out, Rejected)
    assert out.reason == reason and reason in REASONS
    if reason == "bad_id":
        assert "complaint_id" in out.detail


def test_complaint_id_at_the_length_bound_is_accepted() -> None:
    out = accepted({"event_id": "c-ev", "ts": RFC3339, "complaint_id": "x" * 128})
    assert out.complaint == complaint_key("x" * 128)


def test_complaint_id_null_is_absent() -> None:
    out = accepted({"event_id": "c-ev", "ts": EPOCH_MS, "status": "resolved", "complaint_id": None})
    assert (out.complaint, out.resolved, out.refers) == (complaint_key("c-ev"), 1, 0)


def test_complaint_id_on_other_topics_is_ignored() -> None:
    value = json.dumps(
        {"event_id": "v1", "customer_id": "bob", "ts": RFC3339, "complaint_id": ""}
    ).encode()
    out = DECODER.decode("customer.visit", b"bob", value, WALL)
    assert isinstance(out, DecodedEvent)
    assert (out.complaint, out.refers) == (0, 0)


# --------------------------------------------------------------------------- CSV path

CSV_HEADER = "event_id,type,customer_id,ts,amount,severity,status,complaint_id\n"
# bob: two open complaints (one named T-1, one known by its event id), a separately filed
# already-resolved severity-1 complaint, then the resolution of T-1 (as epoch ms)
CSV_ROWS = [
    f"c1,complaint,bob,{RFC3339},,5,open,T-1",
    "c2,complaint,bob,1997-04-02T10:00:00Z,,2,,",
    "c3,complaint,bob,1997-04-03T10:00:00Z,,1,resolved,",
    "c4,complaint,bob,859975200000,,5,resolved,T-1",
    "p1,purchase,bob,1997-03-01T00:00:00Z,10,,,",
]
# the same events as input-topic messages
MESSAGES = [
    {"event_id": "c1", "ts": RFC3339, "severity": 5, "status": "open", "complaint_id": "T-1"},
    {"event_id": "c2", "ts": "1997-04-02T10:00:00Z", "severity": 2},
    {"event_id": "c3", "ts": "1997-04-03T10:00:00Z", "severity": 1, "status": "resolved"},
    {
        "event_id": "c4",
        "ts": 859_975_200_000,
        "severity": 5,
        "status": "resolved",
        "complaint_id": "T-1",
    },
]


def _csv(tmp_path: Path, header: str, rows: list[str]) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def test_csv_reader_fills_the_same_fields_as_the_decoder(tmp_path: Path) -> None:
    log = read_event_csv(_csv(tmp_path, CSV_HEADER, CSV_ROWS))
    assert log.bad_rows == []
    complaints = {
        eid: ev
        for eid, ev in zip(log.event_ids, log.events, strict=True)
        if ev["kind"] == KIND_COMPLAINT
    }
    for body in MESSAGES:
        decoded = accepted(body)
        row = complaints[decoded.event_id]
        got = tuple(int(row[f]) for f in ("ts", "severity", "resolved", "complaint", "refers"))
        want = (decoded.ts, decoded.severity, decoded.resolved, decoded.complaint, decoded.refers)
        assert got == want, decoded.event_id
    # the complaint ids themselves are kept for replay, by position in the sorted events
    assert {log.event_ids[i]: cid for i, cid in log.complaint_ids.items()} == {
        "c1": "T-1",
        "c4": "T-1",
    }
    purchase = log.events[log.event_ids.index("p1")]
    assert (int(purchase["complaint"]), int(purchase["refers"])) == (0, 0)


def test_csv_optional_columns_in_any_order_or_absent(tmp_path: Path) -> None:
    header = "event_id,type,customer_id,ts,amount,severity,channel,complaint_id,status\n"
    log = read_event_csv(
        _csv(tmp_path, header, ["c4,complaint,bob,859975200000,,5,web,T-1,resolved"])
    )
    ev = log.events[0]
    assert (int(ev["resolved"]), int(ev["refers"]), int(ev["complaint"])) == (
        1,
        1,
        complaint_key("T-1"),
    )
    # the standard six columns only: every complaint is open and known by its event id
    plain = "event_id,type,customer_id,ts,amount,severity\n"
    log = read_event_csv(_csv(tmp_path, plain, ["c9,complaint,bob,859975200000,,5"]))
    ev = log.events[0]
    assert (int(ev["resolved"]), int(ev["refers"]), int(ev["complaint"])) == (
        0,
        0,
        complaint_key("c9"),
    )


def test_csv_bad_status_or_complaint_id_is_a_bad_row(tmp_path: Path) -> None:
    rows = [
        "c1,complaint,bob,859975200000,,5,pending,",
        f"c2,complaint,bob,859975200000,,5,resolved,{'x' * 129}",
        "c3,complaint,bob,859975200000,,5,resolved,ok",
    ]
    log = read_event_csv(_csv(tmp_path, CSV_HEADER, rows))
    assert [(line, text.split(":")[0]) for line, text in log.bad_rows] == [
        (2, "bad_status"),
        (3, "bad_id"),
    ]
    assert log.event_ids == ["c3"]


def _fold(kinds_rows: list[tuple[int, int, int, int, int, int]]) -> np.void:
    events = new_events(len(kinds_rows))
    for i, (ts, severity, resolved, complaint, refers, kind) in enumerate(kinds_rows):
        events[i]["row"] = 0
        events[i]["kind"] = kind
        events[i]["ts"] = ts
        events[i]["severity"] = severity
        events[i]["resolved"] = resolved
        events[i]["complaint"] = complaint
        events[i]["refers"] = refers
    states = new_states(1)
    apply_events(states, events, 30.0)
    return states[0]


def test_decoded_resolution_cancels_the_complaint_it_names(tmp_path: Path) -> None:
    """Through the kernel: the resolution of T-1 frees T-1's slot, not c2's (issue 13)."""
    decoded = [accepted(body) for body in MESSAGES]
    state = _fold([(d.ts, d.severity, d.resolved, d.complaint, d.refers, d.kind) for d in decoded])
    open_ids = sorted(int(k) for k in state["complaint_ids"] if k)
    assert open_ids == [complaint_key("c2")]
    assert int(state["complaints_open"]) == 2
    assert int(state["complaints_resolved"]) == 1
    # the CSV path folds to the same record
    log = read_event_csv(_csv(tmp_path, CSV_HEADER, CSV_ROWS[:4]))
    states = new_states(1)
    apply_events(states, log.events, 30.0)
    assert states[0].tobytes() == state.tobytes()
    assert log.events.dtype == EVENT_DTYPE


def test_category_goes_through_encode_and_decode() -> None:
    """What ``replay`` writes for a complaint with a category the worker reads back as it was
    written (its counter cell, ``complaint|<category>``); none stays none."""
    from streams.codec import encode_event

    for category in ("billing", None):
        raw = encode_event(
            KIND_COMPLAINT, "c9", "bob", 852_076_800, 0, 3, 0, None, category=category
        )
        body = json.loads(raw)
        assert body.get("category") == category
        got = accepted(body)
        assert got.category == (category or "")
