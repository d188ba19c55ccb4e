"""streams.admin against the embedded broker: idempotent creation, shape checks, metadata waits."""

from __future__ import annotations

import re
import uuid

import pytest
from fixtures.stack import run_async

from streams.admin import TopicError, create_topics, describe_topics, wait_for_metadata


def _name(stem: str) -> str:
    return f"admin.{stem}.{uuid.uuid4().hex[:8]}"


def test_create_topics_is_idempotent(kafka_bootstrap: str) -> None:
    topics = {_name("in-a"): 4, _name("in-b"): 4, _name("scores"): 2}
    compacted = {name for name in topics if ".scores." in name}

    first = run_async(create_topics(kafka_bootstrap, topics, compacted=compacted))
    second = run_async(create_topics(kafka_bootstrap, topics, compacted=compacted))

    assert first == topics
    assert second == topics
    on_cluster = run_async(describe_topics(kafka_bootstrap))
    assert {name: on_cluster[name] for name in topics} == topics


def test_existing_topic_with_other_partition_count_is_refused(kafka_bootstrap: str) -> None:
    name = _name("mismatch")
    run_async(create_topics(kafka_bootstrap, {name: 3}))
    with pytest.raises(TopicError, match=re.escape(f"{name} exists with 3 partitions, 8 wanted")):
        run_async(create_topics(kafka_bootstrap, {name: 8}))


def test_wait_for_metadata_reports_counts_and_never_creates_topics(kafka_bootstrap: str) -> None:
    present, missing = _name("present"), _name("missing")
    run_async(create_topics(kafka_bootstrap, {present: 5}))

    assert run_async(wait_for_metadata(kafka_bootstrap, [present])) == {present: 5}
    assert run_async(wait_for_metadata(kafka_bootstrap, {present: 5})) == {present: 5}

    with pytest.raises(TimeoutError, match=re.escape(missing)):
        run_async(wait_for_metadata(kafka_bootstrap, [present, missing], timeout_s=1.0))
    with pytest.raises(TimeoutError, match=re.escape(present)):
        run_async(wait_for_metadata(kafka_bootstrap, {present: 6}, timeout_s=1.0))
    # Waiting for a topic must not have auto-created it.
    assert missing not in run_async(describe_topics(kafka_bootstrap))


@pytest.mark.parametrize(
    ("topics", "compacted", "replication", "fragment"),
    [
        ({"a": 0}, set(), 1, "partitions must be >= 1"),
        ({"a": 1}, {"b"}, 1, "not in the topic list: b"),
        ({"a": 1}, set(), 0, "replication factor"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    topics: dict[str, int], compacted: set[str], replication: int, fragment: str
) -> None:
    # An address nothing listens on: the checks must fail before connecting.
    with pytest.raises(TopicError, match=fragment):
        run_async(create_topics("127.0.0.1:1", topics, compacted, replication))


def test_unreachable_broker_times_out_with_the_address() -> None:
    with pytest.raises(TimeoutError, match=re.escape("127.0.0.1:1")):
        run_async(wait_for_metadata("127.0.0.1:1", ["x"], timeout_s=0.5))
