"""The marketing loop on the real stack (docs/outcomes.md, docs/scoring.md §8; issue 15).

One worker on the embedded broker and Valkey, one partition, a control group of half the
customers. Five customers, each a story the worker must tell from the input alone:

* ``steady`` buys on days 0, 40 and 80: a nudge at its predicted next purchase (day 120),
  caused by the timer alone; no purchase follows, so the nudge's 30-day window closes by the
  timer (outcome ``window``) before the silence win-back at twice the gap (day 160);
* ``canceller`` has the same rhythm and buys on day 110: the day-120 nudge never comes (its
  next one is due a new gap after day 110);
* ``responder`` has the same rhythm and buys on day 125, five days after its nudge: the
  outcome closes by that purchase with its amount;
* ``held`` is in the control group: its contacts (the same nudge and win-back) go to the
  holdout topic only, never to the nudge or win-back topic, and its outcome is published
  like everyone's;
* a sentinel visit a year later moves the partition's watermark, so the timer walks everyone
  through their due times.

The replay is on the broker before the worker starts (docs/alerts.md: then the alert stream
is exactly a function of the input).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fixtures.streaming import control_group_holding_out

from config.settings import Settings
from models.control_group import ControlGroup
from models.events import EventLog, read_event_csv
from models.scorefile import format_time
from reliability.conftest import fault_settings, replay
from reliability.support import (
    Worker,
    expected_fences,
    read_alert_ids,
    wait_applied,
    wait_settled,
)
from streams.topics import TopicTable

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

DAY = 86_400
T0 = 852_076_800  # 1997-01-01T00:00:00Z
TREATED = ("steady", "canceller", "responder", "pacer")
HELD = "held"
NUDGE_DAY = 120  # last purchase day 80 + usual gap 40 days (lead 0)


def control_group() -> ControlGroup:
    """Half the customers held out: of this test's, only ``held``."""
    return control_group_holding_out(HELD, TREATED, "loop")


def event_log(path: Path) -> EventLog:
    rows: list[tuple[str, str, str, int, str]] = []
    for customer in ("steady", "canceller", "responder", HELD):
        rows += [(f"{customer}-{d}", "purchase", customer, d, "50.00") for d in (0, 40, 80)]
    rows += [
        ("canceller-110", "purchase", "canceller", 110, "35.00"),
        ("responder-125", "purchase", "responder", 125, "42.50"),
        ("pacer-470", "visit", "pacer", 470, ""),
    ]
    lines = ["event_id,type,customer_id,ts,amount,severity"]
    lines += [
        f"{eid},{kind},{cust},{format_time(T0 + day * DAY)},{amount},"
        for eid, kind, cust, day, amount in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = read_event_csv(path)
    assert not log.bad_rows
    return log


@pytest.fixture(scope="module")
def loop_run(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, list[dict[str, Any]]]]]:
    out = tmp_path_factory.mktemp("marketing-loop")
    group = control_group()
    settings = fault_settings(
        kafka_bootstrap,
        redis_url,
        partitions=1,
        holdout_fraction=group.fraction,
        holdout_salt=group.salt,
    )
    log = event_log(out / "events.csv")
    replay(settings, log)
    client = redis.Redis.from_url(redis_url)
    worker = Worker("loop", settings, out / "worker.log").start()
    try:
        wait_applied(client, settings, expected_fences(settings, log), 120.0, [worker])
        wait_settled(client, settings, 120.0, [worker])
        time.sleep(1.0)
        alerts = read_alert_ids(settings)
    finally:
        worker.stop()
        client.close()
    yield settings, alerts


def of(alerts: dict[str, list[dict[str, Any]]], topic: str, customer: str) -> list[dict[str, Any]]:
    return [a for a in alerts[topic] if a["customer_id"] == customer]


def test_a_steady_rhythm_gets_a_nudge_from_the_timer_alone(loop_run) -> None:
    settings, alerts = loop_run
    topics = TopicTable.from_settings(settings)
    nudges = of(alerts, topics.alerts["nudge"], "steady")
    due = T0 + NUDGE_DAY * DAY
    assert nudges, alerts[topics.alerts["nudge"]]
    first = nudges[0]
    assert first["cause"] == {"type": "timer", "due": due}
    assert first["event_ts"] == first["predicted_purchase_at"] == format_time(due)
    assert (first["usual_gap_days"], first["group"]) == (40.0, "treated")
    assert [n["cause"]["due"] for n in nudges] == [due]  # one per purchase cycle


def test_a_purchase_cancels_the_pending_nudge(loop_run) -> None:
    settings, alerts = loop_run
    nudges = of(alerts, TopicTable.from_settings(settings).alerts["nudge"], "canceller")
    assert all(n["cause"]["due"] != T0 + NUDGE_DAY * DAY for n in nudges)
    # the new cycle's nudge: day 110 + the new usual gap, 110 / 3 days
    assert [n["cause"]["due"] for n in nudges] == [T0 + 110 * DAY + round(110 / 3 * DAY)]


def test_a_held_out_customers_contacts_never_reach_the_action_topics(loop_run) -> None:
    settings, alerts = loop_run
    topics = TopicTable.from_settings(settings)
    for kind in ("nudge", "win_back"):
        assert not of(alerts, topics.alerts[kind], HELD), kind
        assert of(alerts, topics.alerts[kind], "steady"), kind  # the treated twin got it
    held = of(alerts, topics.holdout, HELD)
    assert {(m["kind"], m["group"]) for m in held} == {
        ("nudge", "holdout"),
        ("win_back", "holdout"),
    }
    steady = of(alerts, topics.holdout, "steady")
    assert not steady
    twin = [m["cause"] for m in of(alerts, topics.alerts["nudge"], "steady")]
    assert [m["cause"] for m in held if m["kind"] == "nudge"] == twin


def test_outcomes_are_published_when_their_windows_close(loop_run) -> None:
    settings, alerts = loop_run
    topics = TopicTable.from_settings(settings)
    outcomes = alerts[topics.alerts["outcome"]]
    nudge_at = format_time(T0 + NUDGE_DAY * DAY)

    def outcome(customer: str) -> dict[str, Any]:
        return next(
            o for o in outcomes if o["customer_id"] == customer and o["contact_at"] == nudge_at
        )

    steady = outcome("steady")
    steady_nudge = of(alerts, topics.alerts["nudge"], "steady")[0]
    assert steady["contact_id"] == steady_nudge["alert_id"]
    assert (steady["closed_by"], steady["responded"], steady["group"]) == (
        "window",
        False,
        "treated",
    )
    assert steady["cause"] == {"type": "timer", "due": T0 + (NUDGE_DAY + 30) * DAY + 1}
    responder = outcome("responder")
    assert (responder["closed_by"], responder["responded"]) == ("purchase", True)
    assert (responder["response_spend"], responder["days_to_response"]) == (42.5, 5.0)
    assert responder["cause"] == {"type": "event", "event_id": "responder-125"}
    held = outcome(HELD)
    held_nudge = next(m for m in of(alerts, topics.holdout, HELD) if m["kind"] == "nudge")
    assert (held["contact_id"], held["group"]) == (held_nudge["alert_id"], "holdout")
    assert held["closed_by"] == "window"
