"""Batch envelopes (docs/alerts.md, "Batch envelopes"; issue 17): many events in one message.

The decoder splits an envelope and validates each event on its own, exactly as it would the
same event sent alone (the oracle here is :meth:`EventDecoder.decode` of each event as a
single message); a bad event, a duplicate and an event of another partition's customer do
not stop the others. On a real Valkey one envelope offset is applied all or nothing and
fenced as one, dead letters carry the event's index and own bytes, and the states equal
those of the same events sent one per message.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.batch_scoring import fold_events
from engine.scoring_params import default_scoring_params
from engine.state import KIND_PURCHASE, new_events
from streams.codec import (
    DecodedEvent,
    EventDecoder,
    Rejected,
    encode_envelope,
    is_envelope,
    pack_envelopes,
)
from streams.keys import partition_for
from streams.processor import BatchProcessor
from tests.streams.conftest import OUT, PARTITIONS, TOPICS, WALL, Feed, RecordingPublisher
from tests.streams.test_processor import T0, stored_state

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "input" / "envelope.schema.json"
PURCHASES = TOPICS.input_topic("purchase")
DECODER = EventDecoder(
    TOPICS.inputs, max_payload_bytes=4096, max_future_skew_s=86400, partitions=PARTITIONS
)
DAY = 86_400


def customers_of(partition: int, n: int) -> list[str]:
    """``n`` customer ids whose partition is ``partition``."""
    out = [f"c{k}" for k in range(10_000) if partition_for(f"c{k}", PARTITIONS) == partition]
    return out[:n]


def purchase(eid: str, customer: str, day: int, amount: Any = 10.0, ms: bool = True) -> bytes:
    ts: Any = (T0 + day * DAY) * 1000 if ms else f"1997-01-{1 + day:02d}T00:00:00Z"
    return json.dumps(
        {"event_id": eid, "customer_id": customer, "ts": ts, "amount": amount}
    ).encode()


def test_every_event_is_judged_as_if_sent_alone() -> None:
    here = customers_of(3, 3)
    stranger = customers_of(5, 1)[0]
    events = [
        purchase("e0", here[0], 1),  # good, epoch ms
        purchase("e1", here[1], 2, ms=False),  # good, RFC 3339
        b'{"event_id": "e2", "customer_id": "%s", "ts": 852076800000}' % here[2].encode(),
        purchase("e3", here[0], 3, amount="12.50"),  # wrong type
        purchase("e4", stranger, 4),  # good on its own, but another partition's customer
        purchase("e0", here[0], 1),  # a duplicate: decoded; the batch plan skips it
    ]
    value = encode_envelope(events)
    assert is_envelope(value) and is_envelope(b"  \n" + value) and not is_envelope(events[0])
    got = DECODER.decode_message(PURCHASES, 3, None, value, WALL)
    assert len(got) == len(events)
    for index, (result, raw) in enumerate(zip(got, events, strict=True)):
        alone = DECODER.decode(PURCHASES, None, raw, WALL)
        if index == 4:
            assert isinstance(alone, DecodedEvent)
            assert isinstance(result, Rejected) and result.reason == "wrong_partition"
        elif isinstance(alone, Rejected):
            assert isinstance(result, Rejected)
            assert (result.reason, result.index, result.raw) == (alone.reason, index, raw)
        else:
            assert result == alone
    assert [r.reason for r in got if isinstance(r, Rejected)] == [
        "missing_field",
        "wrong_type",
        "wrong_partition",
    ]


def test_events_that_decode_but_fail_validation_keep_their_index_and_bytes() -> None:
    # every event decodes as the topic's struct (the decoder's one-call path), some are
    # refused by the value rules: each judged as if alone, with its own bytes
    here = customers_of(3, 20)
    stranger = customers_of(5, 1)[0]
    events = [purchase(f"e{i}", here[i], 1 + i % 5) for i in range(20)]
    events[2] = purchase("e2", here[2], 1, amount=1e12)  # bad_amount
    events[7] = purchase("e7", stranger, 1)  # wrong_partition
    events[11] = purchase("", here[11], 1)  # bad_id
    events[19] = b'{"event_id": "e19", "customer_id": "%s", "ts": 5, "amount": 1}' % (
        here[19].encode()
    )  # ts_out_of_range
    value = b" [ " + b" ,\n ".join(events) + b" ] "
    got = DECODER.decode_message(PURCHASES, 3, None, value, WALL)
    assert len(got) == len(events)
    for index, (result, raw) in enumerate(zip(got, events, strict=True)):
        alone = DECODER.decode(PURCHASES, None, raw, WALL)
        if index == 7:
            assert isinstance(result, Rejected) and result.reason == "wrong_partition"
            assert (result.index, result.raw) == (7, raw)
        elif isinstance(alone, Rejected):
            assert result == Rejected(alone.reason, alone.detail, index, raw)
        else:
            assert result == alone
    assert [(r.reason, r.index) for r in got if isinstance(r, Rejected)] == [
        ("bad_amount", 2),
        ("wrong_partition", 7),
        ("bad_id", 11),
        ("ts_out_of_range", 19),
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"[]", "bad_json"),
        (b"[1, 2", "bad_json"),
        (b'[{"event_id": "\xff"}]', "bad_encoding"),
        (b"[" + b",".join([purchase(f"e{i}", "c0", 1) for i in range(3)]) + b"]", None),
    ],
)
def test_an_envelope_that_cannot_be_split_is_one_dead_letter(
    value: bytes, reason: str | None
) -> None:
    small = EventDecoder(
        TOPICS.inputs,
        max_payload_bytes=4096,
        max_future_skew_s=86400,
        partitions=0,
        max_envelope_events=2,
    )
    got = small.decode_message(PURCHASES, 0, None, value, WALL)
    assert len(got) == 1 and isinstance(got[0], Rejected) and got[0].index is None
    assert got[0].reason == (reason or "oversize")


def test_pack_envelopes_groups_by_topic_and_partition_in_order() -> None:
    records = []
    for i in range(25):
        customer = f"c{i % 7}"
        part = partition_for(customer, PARTITIONS)
        records.append((PURCHASES, part, customer.encode(), purchase(f"e{i}", customer, i)))
    packed = pack_envelopes(records, max_events=3)
    unpacked: dict[tuple[str, int], list[bytes]] = {}
    for topic, part, key, value in packed:
        events = [json.dumps(e).encode() for e in json.loads(value)]
        assert 1 <= len(events) <= 3
        assert key is not None and partition_for(key.decode(), PARTITIONS) == part
        assert {partition_for(json.loads(e)["customer_id"], PARTITIONS) for e in events} == {part}
        unpacked.setdefault((topic, part), []).extend(events)
    expected: dict[tuple[str, int], list[bytes]] = {}
    for topic, part, _, value in records:
        expected.setdefault((topic, part), []).append(json.dumps(json.loads(value)).encode())
    assert unpacked == expected
    # a byte bound: never over it (unless one event alone is)
    small = pack_envelopes(records, max_events=100, max_bytes=300)
    assert all(len(v) <= 300 for _, _, _, v in small)
    check = Draft202012Validator(json.loads(SCHEMA.read_text()))
    for _, _, _, value in packed + small:
        assert check.is_valid(json.loads(value))
    assert not check.is_valid([])
    assert not check.is_valid([{"event_id": "x", "customer_id": "c1"}])  # no ts


def test_an_envelope_is_applied_fenced_and_dead_lettered_per_event(
    scenario: Any, recorder: RecordingPublisher
) -> None:
    here = customers_of(0, 2)
    stranger = customers_of(2, 1)[0]
    events = [
        purchase("a1", here[0], 1, 20.0),
        purchase("a2", here[0], 5, 30.0),
        purchase("b1", here[1], 2, 15.0),
        purchase("bad", here[1], 3, amount=1e12),  # bad_amount
        purchase("a1", here[0], 1, 20.0),  # duplicate of the first
        purchase("x1", stranger, 4, 50.0),  # wrong partition
    ]
    feed = Feed()
    envelope = feed.msg("purchase", encode_envelope(events), 0, key=here[0].encode())

    async def body(proc: BatchProcessor) -> Any:
        await proc.process([envelope])
        states = [await stored_state(proc, 0, c) for c in here]
        published = len(recorder.records)
        await proc.process([envelope])  # redelivered: the whole envelope is at the fence
        again = [await stored_state(proc, 0, c) for c in here]
        return states, again, published, proc.metrics

    states, again, published, metrics = scenario(body)
    assert [s.tobytes() for s in states] == [s.tobytes() for s in again]
    assert len(recorder.records) == published
    assert metrics.fence_skipped._value.get() == len(events)
    assert metrics.duplicates._value.get() == 1
    assert metrics.events_in.labels("purchase")._value.get() == 2 * len(events)
    dead = recorder.on(OUT.dead_letter)
    assert [(d["reason"], d["envelope_index"], d["offset"]) for d in dead] == [
        ("bad_amount", 3, envelope.offset),
        ("wrong_partition", 5, envelope.offset),
    ]
    assert [base64.b64decode(d["value_b64"]) for d in dead] == [events[3], events[5]]

    # the good events, folded by the batch kernel (tests/streams/test_processor.py does the
    # same for single messages): the envelope's states are theirs
    for customer, state, good in (
        (here[0], states[0], [(1, 2000), (5, 3000)]),
        (here[1], states[1], [(2, 1500)]),
    ):
        ev = new_events(len(good))
        for k, (day, cents) in enumerate(good):
            ev[k] = (0, KIND_PURCHASE, 0, 0, T0 + day * DAY, cents, 0, 0)
        want = fold_events(1, ev, default_scoring_params())[0]
        for name in (
            "purchase_days",
            "first_purchase",
            "last_purchase",
            "gross_cents",
            "ring_cents",
        ):
            assert state[name].tolist() == want[name].tolist(), (customer, name)


def test_a_large_taken_batch_is_applied_in_slices_of_whole_messages(
    redis_url: str, prefix: str
) -> None:
    """``max_batch_events`` cuts a taken batch at message boundaries: the same states and
    records (in order) as one application of the whole batch, and a redelivery of the whole
    batch changes nothing (every slice fenced its own messages)."""
    from tests.fixtures.stack import run_async
    from tests.streams.conftest import make_processor

    here = customers_of(0, 3)
    feed = Feed()
    messages = [
        feed.msg(
            "purchase",
            encode_envelope([purchase(f"e{k}-{j}", here[j], k + j, 10.0 + k) for j in range(3)]),
            0,
            key=here[0].encode(),
        )
        for k in range(5)
    ] + [feed.msg("purchase", purchase("single", here[1], 9, 42.0), 0)]

    def run(max_events: int, tag: str) -> tuple[list[Any], list[bytes]]:
        async def main() -> tuple[list[Any], list[bytes]]:
            recorder = RecordingPublisher()
            proc = make_processor(redis_url, f"{prefix}{tag}", recorder)
            proc.max_batch_events = max_events
            try:
                await proc.process(messages)
                states = [(await stored_state(proc, 0, c)).tobytes() for c in here]
                published = len(recorder.records)
                await proc.process(messages)  # redelivered whole
                assert len(recorder.records) == published
                assert [(await stored_state(proc, 0, c)).tobytes() for c in here] == states
                return recorder.records, states
            finally:
                await proc.store._redis.aclose()

        return run_async(main())

    whole_records, whole_states = run(10_000, "w")
    sliced_records, sliced_states = run(4, "s")  # 3 events a message: one message a slice
    assert sliced_states == whole_states

    # alerts are a function of the input, whatever the cut: per customer the same bytes in
    # the same order (score updates are one per customer per application, so a slice adds
    # its own)
    def alerts_by_customer(records: list[Any]) -> dict[bytes, list[Any]]:
        out: dict[bytes, list[Any]] = {}
        for topic, key, value in records:
            if topic != OUT.scores:
                out.setdefault(key, []).append((topic, value))
        return out

    assert alerts_by_customer(sliced_records) == alerts_by_customer(whole_records)
    assert alerts_by_customer(whole_records)
    assert len([r for r in sliced_records if r[0] == OUT.scores]) > len(
        [r for r in whole_records if r[0] == OUT.scores]
    )
