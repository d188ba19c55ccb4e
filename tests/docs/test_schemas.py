"""The documented output contract holds for real messages of the real pipeline.

A story of a few customers is played through ``streams.processor.BatchProcessor`` on a real
Valkey with the recording publisher of ``tests/streams/conftest.py``: event-driven and
timer-driven segment changes of every scheme, silence / risk_rise / complaint win-backs,
score updates of buyers and prospects, and one dead letter per reason in
``streams.codec.REASONS``. Every recorded message is validated against ``docs/schemas``; the
schemas' enums are checked against ``engine.segments`` so that they cannot drift.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures.stack import run_async
from fixtures.streaming import control_group_holding_out
from jsonschema import Draft202012Validator

from engine.segments import (
    ABCD_NAMES,
    ACTIONS,
    CLOSED_BY_NAMES,
    GROUP_NAMES,
    LIFECYCLE_NAMES,
    NUDGE_OFFERS,
    NUDGE_REASON,
    QUADRANT_NAMES,
    REASON_NAMES,
    RFM_SEGMENT_NAMES,
    SCHEME_NAMES,
    TIER_NAMES,
)
from models.control_group import ControlGroup
from models.scorefile import SCORE_COLUMNS, format_time
from streams.alert_kinds import ALERT_KINDS
from streams.codec import REASONS, encode_envelope
from streams.keys import partition_for
from streams.processor import BatchProcessor, RawMessage
from tests.streams.conftest import (
    OUT,
    PARTITIONS,
    TOPICS,
    WALL,
    Feed,
    RecordingPublisher,
    make_processor,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"
ALERTS_MD = ROOT / "docs" / "alerts.md"
DAY = 86_400
T0 = 852_076_800  # 1997-01-01T00:00:00Z

# every output topic and its schema: one per registered alert kind, scores, dead letters
TOPIC_SCHEMA = {
    **{TOPICS.alerts[k.name]: k.schema.removesuffix(".schema.json") for k in ALERT_KINDS},
    OUT.scores: "scores",
    OUT.dead_letter: "dead-letter",
}
# the holdout topic carries every contact kind; a message's "kind" names its schema
CONTACT_SCHEMA = {k.name: k.schema.removesuffix(".schema.json") for k in ALERT_KINDS if k.contact}
STORY_CUSTOMERS = ("alice", "bob", "carl", "dana", "erin", "fred", "pacer", "zed")
HELD_OUT = "hugo"


def story_control_group() -> ControlGroup:
    """Half the customers held out: of the story's, only hugo."""
    return control_group_holding_out(HELD_OUT, STORY_CUSTOMERS, "story")


def schema_of(topic: str, message: dict[str, Any]) -> str:
    if topic == OUT.holdout:
        return CONTACT_SCHEMA[message["kind"]]
    return TOPIC_SCHEMA[topic]


SUMMARY_ENUMS = {
    "rfm_segment": RFM_SEGMENT_NAMES,
    "value_tier": TIER_NAMES,
    "abcd_class": ABCD_NAMES,
    "quadrant": QUADRANT_NAMES,
    "lifecycle": LIFECYCLE_NAMES,
}


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return schema


def validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# ----------------------------------------------------------------------------- the story


def ms(day: float) -> int:
    return int((T0 + day * DAY) * 1000)


def purchase(feed: Feed, eid: str, cust: str, day: float, amount: float, part: int) -> RawMessage:
    body = {"event_id": eid, "customer_id": cust, "ts": ms(day), "amount": amount}
    return feed.msg("purchase", body, part)


def visit(feed: Feed, eid: str, cust: str, day: float, part: int) -> RawMessage:
    return feed.msg("visit", {"event_id": eid, "customer_id": cust, "ts": ms(day)}, part)


def complaint(
    feed: Feed, eid: str, cust: str, day: float, severity: int, part: int, **extra: Any
) -> RawMessage:
    body = {"event_id": eid, "customer_id": cust, "ts": ms(day), "severity": severity, **extra}
    return feed.msg("complaint", body, part)


def bad_messages(feed: Feed, part: int) -> dict[str, RawMessage]:
    """One message per dead-letter reason (keys must equal streams.codec.REASONS)."""
    ok = {"event_id": "d", "customer_id": "zed", "ts": ms(1)}
    stranger = next(f"s{n}" for n in range(100) if partition_for(f"s{n}", PARTITIONS) != part)
    stray = {**ok, "event_id": "d-env", "customer_id": stranger}
    return {
        "oversize": feed.msg("visit", {**ok, "page": "x" * 5000}, part),
        "bad_encoding": feed.msg("visit", b'{"event_id": "\xff\xfe"}', part, key=b"zed"),
        "bad_json": feed.msg("purchase", b"{not json", part),  # no key: key_b64 is null
        "missing_field": feed.msg("purchase", ok, part),  # no amount
        "wrong_type": feed.msg("purchase", {**ok, "amount": "12.50"}, part),
        "bad_ts": feed.msg("visit", {**ok, "ts": "yesterday"}, part),
        "ts_out_of_range": feed.msg("visit", {**ok, "ts": "1960-01-01T00:00:00Z"}, part),
        "ts_in_future": feed.msg("visit", {**ok, "ts": int((WALL + 3 * DAY) * 1000)}, part),
        "bad_amount": feed.msg("purchase", {**ok, "amount": 1e12}, part),
        "bad_severity": feed.msg("complaint", {**ok, "severity": 9}, part),
        "bad_category": feed.msg("complaint", {**ok, "severity": 2, "category": "weather"}, part),
        "bad_status": feed.msg("complaint", {**ok, "severity": 2, "status": "pending"}, part),
        "bad_id": feed.msg("visit", {**ok, "customer_id": ""}, part, key=b"zed"),
        "key_mismatch": feed.msg("visit", ok, part, key=b"someone-else"),
        # an envelope whose one event's customer lives on another partition than its message
        "wrong_partition": feed.msg("visit", encode_envelope([json.dumps(stray).encode()]), part),
        "unknown_topic": feed.msg("returns", ok, part),
    }


async def story(proc: BatchProcessor) -> dict[str, RawMessage]:
    """Drive the processor through every kind of output; returns the bad messages sent."""
    feed = Feed()
    # partition 0, in event-time order, a sweep after each pacer visit (the pacer, a visiting
    # prospect, moves the watermark so the timer re-scores everyone):
    # - alice grows (every scheme changes on events), then goes silent (timer segment
    #   changes, silence and risk_rise win-backs);
    # - erin buys every 20 days four times: a nudge at her predicted next purchase (day 80)
    #   from the timer alone; she does not buy: the outcome closes with the window;
    # - hugo (held out) has erin's rhythm: his nudge goes to the holdout topic only; he buys
    #   on day 83, the outcome closes with that purchase;
    # - fred buys every 30 days for nine months, then stops: a spend drop in January 1998
    # (day, event id, customer, amount); None: a pacer visit and a sweep. Messages are made
    # in processing order: their offsets must grow as they are applied.
    timed: list[tuple[float, str, str, float | None]] = [
        (0, "a1", "alice", 100.0),
        (5, "a2", "alice", 500.0),
        (10, "a3", "alice", 50.0),
        (83, "h5", HELD_OUT, 42.0),
    ]
    for i in range(4):
        timed += [(20 * i, f"e{i}", "erin", 60.0), (20 * i, f"h{i}", HELD_OUT, 60.0)]
    timed += [(30 * i + 0.5, f"f{i}", "fred", 400.0) for i in range(9)]
    timed += [(day, f"v{day}", "pacer", None) for day in range(14, 420, 14)]
    for day, eid, customer, amount in sorted(timed, key=lambda item: item[0]):
        if amount is not None:
            await proc.process([purchase(feed, eid, customer, day, amount, 0)])
        else:
            await proc.process([visit(feed, eid, customer, day, 0)])
            await proc.sweep(0, limit=100)
    # partition 1: bob, a repeat buyer, files a severity-3 complaint: risk rises past 0.6
    await proc.process([purchase(feed, "b1", "bob", 0, 20.0, 1)])
    await proc.process([purchase(feed, "b2", "bob", 1, 20.0, 1)])
    await proc.process([complaint(feed, "b3", "bob", 2, 3, 1, category="delivery")])
    # partition 2: carl buys, refunds part of it, files a severity-5 complaint, then it is
    # resolved
    await proc.process([purchase(feed, "c1", "carl", 0, 80.0, 2)])
    await proc.process([purchase(feed, "c2", "carl", 1, -30.0, 2)])
    await proc.process([complaint(feed, "c3", "carl", 2, 5, 2, status="open")])
    await proc.process([complaint(feed, "c4", "carl", 3, 5, 2, status="resolved")])
    # partition 3: dana visits (prospect, null scores), then buys: prospect -> new
    await proc.process([visit(feed, "d1", "dana", 0, 3)])
    await proc.process([purchase(feed, "d2", "dana", 2, 45.0, 3)])
    # partition 4: one bad message per dead-letter reason, plus a null value
    bad = bad_messages(feed, 4)
    null_value = dataclasses.replace(feed.msg("visit", b"", 4, key=b"zed"), value=None)
    await proc.process([*bad.values(), null_value])
    return bad


def play(redis_url: str) -> tuple[RecordingPublisher, dict[str, RawMessage]]:
    recorder = RecordingPublisher()

    async def main() -> dict[str, RawMessage]:
        proc = make_processor(
            redis_url, f"d{uuid.uuid4().hex[:8]}", recorder, story_control_group()
        )
        try:
            return await story(proc)
        finally:
            await proc.store._redis.aclose()

    bad = run_async(main())
    return recorder, bad


@pytest.fixture(scope="module")
def played(redis_url: str) -> Iterator[tuple[RecordingPublisher, dict[str, RawMessage]]]:
    yield play(redis_url)


@pytest.fixture(scope="module")
def recorded(played: tuple[RecordingPublisher, dict[str, RawMessage]]) -> RecordingPublisher:
    return played[0]


def on(recorder: RecordingPublisher, topic: str) -> list[dict[str, Any]]:
    return recorder.on(topic)


# ----------------------------------------------------------------------------- validation


def test_every_record_goes_to_a_documented_topic_with_a_value(recorded) -> None:
    assert recorded.records
    assert {t for t, _, _ in recorded.records} == {*TOPIC_SCHEMA, OUT.holdout}
    assert all(v is not None for _, _, v in recorded.records)  # no tombstones in this story


@pytest.mark.parametrize("topic", [*TOPIC_SCHEMA, OUT.holdout])
def test_every_message_of_the_topic_matches_its_schema(recorded, topic: str) -> None:
    messages = on(recorded, topic)
    assert messages, f"the story produced nothing on {topic}"
    for message in messages:
        check = validator(schema_of(topic, message))
        errors = sorted(check.iter_errors(message), key=lambda e: list(e.path))
        assert not errors, f"{topic}: {errors[0].message} at {list(errors[0].path)}: {message}"


def test_segment_changes_cover_every_scheme_and_both_causes(recorded) -> None:
    changes = on(recorded, OUT.segment_change)
    assert {c["scheme"] for c in changes} == set(SCHEME_NAMES[1:])
    assert {c["cause"]["type"] for c in changes} == {"event", "timer"}
    # a prospect's first purchase: "before" carries the prospect's null BTYD scores
    dana = [c for c in changes if c["customer_id"] == "dana"]
    assert [(c["scheme"], c["from"], c["to"]) for c in dana] == [("lifecycle", "prospect", "new")]
    assert dana[0]["before"]["p_alive"] is None and dana[0]["scores"]["p_alive"] is not None
    # X -> none is published when a customer stops being an effective member
    assert any(c["to"] == "none" for c in changes)


def test_win_backs_cover_every_reason(recorded) -> None:
    wins = on(recorded, OUT.win_back)
    assert {w["reason"] for w in wins} == set(REASON_NAMES[1:])
    by_reason = {w["reason"]: w for w in wins}
    assert by_reason["complaint"]["customer_id"] == "carl"
    assert by_reason["complaint"]["cause"] == {"type": "event", "event_id": "c3"}
    assert "bob" in {w["customer_id"] for w in wins if w["reason"] == "risk_rise"}
    assert by_reason["silence"]["cause"]["type"] == "timer"
    assert by_reason["spend_drop"]["customer_id"] == "fred"
    # fred's last purchase is in August 1997: from December the three months before spend
    # nothing against a steady run-rate over January..August
    december = int(datetime(1997, 12, 1, tzinfo=UTC).timestamp())
    assert by_reason["spend_drop"]["cause"] == {"type": "timer", "due": december}
    for w in wins:
        assert w["suggested_action"] == ACTIONS[w["reason"]][w["value_tier"]]
        assert (w["kind"], w["group"]) == ("win_back", "treated")
    assert HELD_OUT not in {w["customer_id"] for w in wins}


def test_nudges_fire_at_the_predicted_purchase_from_the_timer(recorded) -> None:
    nudges = on(recorded, OUT.nudge)
    erin = [n for n in nudges if n["customer_id"] == "erin"]
    # from her third purchase day (40) on, at last purchase + usual gap of 20 days (lead 0):
    # day 60 (she buys that very day: the timer comes first), then day 80
    predicted = [T0 + 60 * DAY, T0 + 80 * DAY]
    assert [n["cause"] for n in erin] == [{"type": "timer", "due": t} for t in predicted]
    for nudge, at in zip(erin, predicted, strict=True):
        assert nudge["predicted_purchase_at"] == nudge["event_ts"] == format_time(at)
        assert nudge["usual_gap_days"] == 20.0
        assert nudge["suggested_offer"] == NUDGE_OFFERS[nudge["quadrant"]][nudge["value_tier"]]
    assert {n["group"] for n in nudges} == {"treated"}
    assert HELD_OUT not in {n["customer_id"] for n in nudges}


def test_held_out_contacts_go_to_the_holdout_topic_only(recorded) -> None:
    held = on(recorded, OUT.holdout)
    assert held and {m["customer_id"] for m in held} == {HELD_OUT}
    assert {m["group"] for m in held} == {"holdout"}
    assert [m["cause"] for m in held if m["kind"] == "nudge"][:2] == [
        {"type": "timer", "due": T0 + 60 * DAY},
        {"type": "timer", "due": T0 + 80 * DAY},
    ]


def test_outcomes_close_by_purchase_and_by_window(recorded) -> None:
    outcomes = {(o["customer_id"], o["contact_at"]): o for o in on(recorded, OUT.outcome)}
    nudge_at = format_time(T0 + 80 * DAY)
    erin = outcomes[("erin", nudge_at)]
    erin_nudge = next(n for n in on(recorded, OUT.nudge) if n["event_ts"] == nudge_at)
    assert erin["contact_id"] == erin_nudge["alert_id"]
    # the silence win-back (twice her 20-day gap after day 60, a second past day 100) comes
    # inside the nudge's 30-day window and supersedes it; its own window then runs out
    silence_at = T0 + 100 * DAY + 1
    assert (erin["closed_by"], erin["responded"], erin["response_spend"]) == (
        "superseded",
        False,
        0,
    )
    assert erin["cause"] == {"type": "timer", "due": silence_at}
    erin_win_back = next(w for w in on(recorded, OUT.win_back) if w["customer_id"] == "erin")
    after = outcomes[("erin", format_time(silence_at))]
    assert after["contact_id"] == erin_win_back["alert_id"]
    assert (after["contact_kind"], after["contact_reason"]) == ("win_back", "silence")
    assert (after["closed_by"], after["responded"]) == ("window", False)
    assert after["cause"] == {"type": "timer", "due": silence_at + 30 * DAY + 1}
    hugo = outcomes[(HELD_OUT, nudge_at)]
    hugo_nudge = next(n for n in on(recorded, OUT.holdout) if n["event_ts"] == nudge_at)
    assert hugo["contact_id"] == hugo_nudge["alert_id"]
    assert (hugo["closed_by"], hugo["responded"], hugo["response_spend"]) == (
        "purchase",
        True,
        42.0,
    )
    assert hugo["group"] == "holdout" and hugo["days_to_response"] == 3.0
    assert hugo["cause"] == {"type": "event", "event_id": "h5"}


def test_score_updates_cover_prospects_and_buyers(recorded) -> None:
    updates = on(recorded, OUT.scores)
    for update in updates:
        assert update["scores"]["customer_id"] == update["customer_id"]
        assert list(update["scores"]) == list(SCORE_COLUMNS)
    prospects = [u for u in updates if u["scores"]["lifecycle"] == "prospect"]
    buyers = [u for u in updates if u["scores"]["frequency"] >= 1]
    assert prospects and buyers
    assert all(u["scores"]["p_alive"] is None for u in prospects)
    assert all(u["scores"]["next_purchase_eta"] is None for u in prospects)


def test_messages_are_keyed_as_documented(recorded) -> None:
    for topic, key, value in recorded.records:
        assert value is not None
        body = json.loads(value)
        if topic == OUT.dead_letter:
            expected = base64.b64encode(key).decode() if key is not None else None
            assert body["key_b64"] == expected
        else:
            assert key == body["customer_id"].encode()


def test_every_dead_letter_reason_is_produced_by_its_trigger(played) -> None:
    recorded, bad = played
    assert list(bad) == list(REASONS)  # one documented trigger per reason, in REASONS order
    dead = on(recorded, OUT.dead_letter)
    by_position = {(d["source_topic"], d["offset"]): d for d in dead}
    for reason, msg in bad.items():
        record = by_position[(msg.topic, msg.offset)]
        assert record["reason"] == reason, (reason, record)
        assert record["partition"] == msg.partition
        original = base64.b64decode(record["value_b64"])
        if reason == "wrong_partition":  # one event of an envelope: its index and own bytes
            assert record["envelope_index"] == 0
            assert msg.value is not None and original == msg.value[1:-1]
        else:
            assert record["envelope_index"] is None and original == msg.value
    null_values = [d for d in dead if d["value_b64"] is None]
    assert [d["reason"] for d in null_values] == ["bad_json"]
    assert any(d["key_b64"] is None for d in dead)


def test_replaying_the_same_input_gives_the_same_alert_ids(recorded, redis_url: str) -> None:
    again, _ = play(redis_url)
    for topic in (OUT.segment_change, OUT.win_back, OUT.nudge, OUT.outcome, OUT.holdout):
        first = [m["alert_id"] for m in on(recorded, topic)]
        second = [m["alert_id"] for m in on(again, topic)]
        assert first == second and len(set(first)) == len(first)


@pytest.mark.parametrize(
    ("topic", "mutate"),
    [
        (OUT.segment_change, lambda m: m.pop("alert_id")),
        (OUT.segment_change, lambda m: m.update(extra=1)),
        (OUT.segment_change, lambda m: m.update(scheme="rfm", to="gold")),
        (OUT.segment_change, lambda m: m.update(scheme="lifecycle", **{"from": "Champions"})),
        (OUT.segment_change, lambda m: m["scores"].update(p_alive="high")),
        (OUT.win_back, lambda m: m.update(reason="bored")),
        (OUT.win_back, lambda m: m.update(churn_risk=None)),
        (OUT.win_back, lambda m: m.update(event_ts=1234567890)),
        (OUT.win_back, lambda m: m.update(cause={"type": "timer", "event_id": "x"})),
        (OUT.scores, lambda m: m["scores"].pop("clv")),
        (OUT.scores, lambda m: m["scores"].update(value_tier="gold")),
        (OUT.scores, lambda m: m["scores"].update(effective=1)),
        (OUT.dead_letter, lambda m: m.update(reason="cosmic_ray")),
        (OUT.dead_letter, lambda m: m.update(offset=-1)),
        (OUT.dead_letter, lambda m: m.update(value_b64="not base64!")),
    ],
)
def test_the_schemas_reject_what_the_code_never_produces(recorded, topic: str, mutate) -> None:
    check = validator(TOPIC_SCHEMA[topic])
    message = copy.deepcopy(on(recorded, topic)[-1])
    assert check.is_valid(message)
    mutate(message)
    assert not check.is_valid(message)


# ----------------------------------------------------------------------------- no drift


def enums(node: Any, path: str = "") -> Iterator[tuple[str, list[Any]]]:
    """(JSON pointer, values) of every ``enum`` in a schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "enum":
                yield path, value
            else:
                yield from enums(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from enums(value, f"{path}/{i}")


def expected_enums() -> dict[str, dict[str, list[str]]]:
    summary = {
        f"/$defs/summary/properties/{field}": list(names) for field, names in SUMMARY_ENUMS.items()
    }
    segment = {"/properties/scheme": list(SCHEME_NAMES[1:]), **summary}
    # each scheme's values, in scheme order: rfm, value_tier, abcd, quadrant, lifecycle
    for i, names in enumerate(SUMMARY_ENUMS.values()):
        segment[f"/allOf/{i}/then/properties/from"] = list(names)
        segment[f"/allOf/{i}/then/properties/to"] = list(names)
    actions = sorted({a for row in ACTIONS.values() for a in row.values()})
    offers = sorted({a for row in NUDGE_OFFERS.values() for a in row.values()})
    contact = {"/properties/group": list(GROUP_NAMES)}
    return {
        "nudge": {
            "/properties/kind": ["nudge"],
            **contact,
            "/properties/reason": [NUDGE_REASON],
            "/properties/value_tier": list(TIER_NAMES),
            "/properties/quadrant": list(QUADRANT_NAMES),
            "/properties/rfm_segment": list(RFM_SEGMENT_NAMES),
            "/properties/lifecycle": list(LIFECYCLE_NAMES),
            "/properties/suggested_offer": offers,
        },
        "outcome": {
            "/properties/contact_kind": ["nudge", "win_back"],
            "/properties/contact_reason": [NUDGE_REASON, *REASON_NAMES[1:]],
            "/properties/action": sorted({*actions, *offers}),
            "/properties/value_tier": list(TIER_NAMES),
            "/properties/quadrant": list(QUADRANT_NAMES),
            **contact,
            "/properties/closed_by": list(CLOSED_BY_NAMES[1:]),
        },
        "segment-change": segment,
        "win-back": {
            "/properties/kind": ["win_back"],
            **contact,
            "/properties/reason": list(REASON_NAMES[1:]),
            "/properties/value_tier": list(TIER_NAMES),
            "/properties/rfm_segment": list(RFM_SEGMENT_NAMES),
            "/properties/lifecycle": list(LIFECYCLE_NAMES),
            "/properties/suggested_action": actions,
        },
        "scores": {
            f"/properties/scores/properties/{field}": list(names)
            for field, names in SUMMARY_ENUMS.items()
        },
        "dead-letter": {"/properties/reason": list(REASONS)},
    }


@pytest.mark.parametrize("name", list(TOPIC_SCHEMA.values()))
def test_schema_enums_equal_the_engine_names(name: str) -> None:
    found = dict(enums(load_schema(name)))
    assert found == expected_enums()[name]


def test_segment_change_branches_pair_each_scheme_with_its_names() -> None:
    branches = load_schema("segment-change")["allOf"]
    schemes = [b["if"]["properties"]["scheme"]["const"] for b in branches]
    assert schemes == list(SCHEME_NAMES[1:])
    assert set(ACTIONS) == set(REASON_NAMES[1:])
    assert all(set(row) == set(TIER_NAMES) for row in ACTIONS.values())


def test_every_schema_file_belongs_to_an_output_topic() -> None:
    files = sorted(p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json"))
    assert files == sorted(TOPIC_SCHEMA.values())
    assert len(set(TOPIC_SCHEMA.values())) == len(TOPIC_SCHEMA)


def test_schemas_fix_the_shape_the_code_builds() -> None:
    for name in TOPIC_SCHEMA.values():
        schema = load_schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False
        assert schema["required"] == list(schema["properties"])
    scores = load_schema("scores")["properties"]["scores"]
    assert scores["required"] == list(SCORE_COLUMNS)


def documented_examples() -> dict[str, Any]:
    """The JSON example after each ``<!-- example: NAME -->`` marker of docs/alerts.md."""
    pattern = re.compile(r"<!-- example: ([a-z-]+) -->\s*```json\n(.*?)\n```", re.DOTALL)
    return {name: json.loads(body) for name, body in pattern.findall(ALERTS_MD.read_text())}


def test_the_documented_examples_match_the_schemas() -> None:
    examples = documented_examples()
    assert sorted(examples) == sorted(TOPIC_SCHEMA.values())
    for name, example in examples.items():
        errors = list(validator(name).iter_errors(example))
        assert not errors, f"docs/alerts.md example {name}: {errors[0].message}"


def test_every_dead_letter_reason_is_documented() -> None:
    schema_reasons = load_schema("dead-letter")["properties"]["reason"]["enum"]
    assert set(REASONS) <= set(schema_reasons)
    text = ALERTS_MD.read_text()
    missing = [r for r in REASONS if not re.search(rf"`{re.escape(r)}`", text)]
    assert not missing, f"docs/alerts.md does not document {missing}"
