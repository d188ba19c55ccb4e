"""Fuzzing the input decoder (streams.codec.EventDecoder) with hypothesis.

The contract (docs/design.md, "Contracts"; codec docstring): nothing raises out of ``decode``; every
message is either a valid event that satisfies the input contract or a ``Rejected`` with one of the
documented machine-readable reasons. Three strategies: arbitrary bytes, structured JSON built from
hostile field values (NaN strings, huge and negative numbers, non-ASCII digits, nested values,
unknown fields), and byte mutations of valid events. Runs in CI (a few seconds).
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.state import KIND_COMPLAINT, KIND_PURCHASE, MAX_TS
from models.events import MAX_ABS_AMOUNT
from streams.codec import REASONS, DecodedEvent, EventDecoder, Rejected

TOPICS = ("customer.purchase", "customer.visit", "customer.complaint")
WALL = 1_900_000_000.0
SKEW = 86_400
MAX_PAYLOAD = 4096
DECODER = EventDecoder(
    {TOPICS[0]: "purchase", TOPICS[1]: "visit", TOPICS[2]: "complaint"},
    max_payload_bytes=MAX_PAYLOAD,
    max_future_skew_s=SKEW,
)
FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # CI: the same examples every run; a failure is reproducible
)


def check(topic: str, key: bytes | None, value: bytes | None) -> DecodedEvent | Rejected:
    """Decode and assert the contract holds for whatever came out."""
    out = DECODER.decode(topic, key, value, WALL)
    if isinstance(out, Rejected):
        assert out.reason in REASONS, out
        assert isinstance(out.detail, str)
        return out
    assert isinstance(out, DecodedEvent)
    assert value is not None and len(value) <= MAX_PAYLOAD
    assert 1 <= out.ts <= min(WALL + SKEW, MAX_TS)
    for ident in (out.event_id, out.customer_id):
        assert 1 <= len(ident) <= 128 and ident.isprintable()
    if key is not None:
        assert key == out.customer_id.encode("utf-8")
    assert abs(out.cents) <= round(MAX_ABS_AMOUNT * 100)
    if out.kind == KIND_COMPLAINT:
        assert 1 <= out.severity <= 5 and out.resolved in (0, 1)
    else:
        assert out.severity == 0
    if out.kind != KIND_PURCHASE:
        assert out.cents == 0
    return out


@FUZZ
@given(
    topic=st.sampled_from(TOPICS),
    key=st.none() | st.binary(max_size=40),
    value=st.none() | st.binary(max_size=MAX_PAYLOAD + 64),
)
def test_arbitrary_bytes_never_raise(topic: str, key: bytes | None, value: bytes | None) -> None:
    check(topic, key, value)


# ---------------------------------------------------------------- structured JSON

HOSTILE_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        1,
        5,
        6,
        0.5,
        -0.0,
        1e308,
        -1e308,
        2**63,
        -(2**63) - 1,
        10**40,
        999,
        1000,
        852076800000,
        4294967295000,
        4294967296000,
        1.5e12,
    ]
)
HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e999",
        "-1e999",
        "²",
        "١٢٣",
        "٣",
        "0x10",
        "1_000",
        "  42 ",
        "-5",
        "3",
        "3.0",
        "3.5",
        "1997-01-01",
        "1997-01-01T00:00:00",
        "1997-01-01T00:00:00Z",
        "1997-01-01T00:00:00+25:00",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "\u0000",
        "\ud800",
        "a\nb",
        "x" * 200,
        "open",
        "resolved",
        "delivery",
        "DELIVERY",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | HOSTILE_NUMBERS
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | HOSTILE_TEXT
    | st.text(max_size=30)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = (
    "event_id",
    "customer_id",
    "ts",
    "amount",
    "severity",
    "category",
    "status",
    "text",
    "order_id",
    "currency",
    "items",
    "channel",
    "duration_s",
    "page",
)


@st.composite
def hostile_objects(draw: st.DrawFn) -> tuple[dict[str, object], bytes | None]:
    customer = draw(st.sampled_from(["c1", "c 2", "ünï", "", "x" * 129]) | st.text(max_size=10))
    body: dict[str, object] = {
        "event_id": draw(st.sampled_from(["e1", "", "é" * 128]) | st.text(max_size=10)),
        "customer_id": customer,
        "ts": draw(VALUES),
        "amount": draw(VALUES),
        "severity": draw(VALUES),
    }
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6)):
        if draw(st.booleans()):
            body.pop(name, None)  # missing fields
        else:
            body[name] = draw(VALUES)  # wrong types anywhere
    body.update(draw(st.dictionaries(st.text(max_size=8), SCALARS, max_size=2)))  # unknown fields
    key = draw(st.sampled_from([None, "same", "other"]))
    raw_key = (
        None
        if key is None
        else (customer.encode("utf-8", "surrogatepass") if key == "same" else b"zz")
    )
    return body, raw_key


def _encode(body: dict[str, object]) -> bytes:
    # allow_nan writes the NaN / Infinity literals that strict JSON forbids; surrogatepass keeps
    # lone surrogates as (invalid) UTF-8 bytes
    return json.dumps(body, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


@FUZZ
@given(topic=st.sampled_from(TOPICS), obj=hostile_objects())
@example(
    topic=TOPICS[2],
    obj=({"event_id": "e", "customer_id": "c", "ts": 10**6, "severity": "nan"}, None),
)
@example(
    topic=TOPICS[2],
    obj=({"event_id": "e", "customer_id": "c", "ts": 10**6, "severity": "inf"}, None),
)
@example(
    topic=TOPICS[2],
    obj=({"event_id": "e", "customer_id": "c", "ts": 10**6, "severity": "1e999"}, None),
)
@example(topic=TOPICS[1], obj=({"event_id": "e", "customer_id": "c", "ts": "²"}, None))
@example(
    topic=TOPICS[0],
    obj=({"event_id": "e", "customer_id": "c", "ts": 10**6, "amount": "1e999"}, None),
)
def test_structured_hostile_json_never_raises(
    topic: str, obj: tuple[dict[str, object], bytes | None]
) -> None:
    body, key = obj
    out = check(topic, key, _encode(body))
    if isinstance(out, DecodedEvent):
        # an accepted event really carried the required fields with usable values
        assert body["event_id"] == out.event_id and body["customer_id"] == out.customer_id
        if topic == TOPICS[0]:
            amount = body["amount"]
            assert not isinstance(amount, bool)
            assert math.isfinite(float(amount))  # type: ignore[arg-type]


@FUZZ
@given(
    topic=st.sampled_from(TOPICS),
    cuts=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
    truncate=st.integers(0, 200),
)
def test_mutated_valid_events_never_raise(
    topic: str, cuts: list[tuple[int, int]], truncate: int
) -> None:
    body = {
        "event_id": "evt-1",
        "customer_id": "cust-1",
        "ts": 852076800000,
        "amount": 12.5,
        "severity": 3,
        "status": "open",
        "category": "delivery",
        "text": "late again",
    }
    raw = bytearray(json.dumps(body).encode())
    assert isinstance(check(topic, b"cust-1", bytes(raw)), DecodedEvent)
    for pos, byte in cuts:
        raw[pos % len(raw)] = byte
    check(topic, b"cust-1", bytes(raw[: len(raw) - truncate % len(raw)]))
