"""What caused each alert of the clean CDNOW run (docs/alerts.md; docs/design.md, "Time"; issue 12).

The clean run replays a seeded CDNOW subset (purchases only, in event-time order) through one
worker. Every alert names its cause: an event id, or the due time a timer evaluated. Then:

* no purchase causes a win-back, or a lifecycle move into at_risk, lapsed or lost (a purchase
  makes a customer more recent, never less);
* an event-caused alert is evaluated at its event's own ``ts`` (nothing in an in-order replay
  is late), and a timer-caused one at exactly its due time, never at the partition watermark;
* every cause is an event of the input.

The full CDNOW log gives the same result (docs/reliability.md, "Alert stream before and after
per-customer evaluation": 0 of 256,205 alerts).
"""

from __future__ import annotations

from collections import Counter

import pytest

from models.scorefile import format_time
from reliability.conftest import Run, Subset
from reliability.support import alert_table, bad_purchase_causes, event_kinds

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]


def test_no_purchase_causes_a_win_back_or_a_lifecycle_fall(clean_run: Run, subset: Subset) -> None:
    bad = bad_purchase_causes(clean_run.alerts, event_kinds(subset.log))
    assert not bad, f"{len(bad)} alerts caused by a purchase: {bad[:10]}"


def test_alerts_are_evaluated_at_their_cause(clean_run: Run, subset: Subset) -> None:
    ts_of = dict(zip(subset.log.event_ids, subset.log.events["ts"].tolist(), strict=True))
    causes: Counter[str] = Counter()
    wrong: list[str] = []
    for alert in alert_table(clean_run.alerts).values():
        cause = alert["cause"]
        kind = alert.get("kind", "outcome" if "closed_by" in alert else "segment_change")
        if cause["type"] == "event":
            assert cause["event_id"] in ts_of, f"unknown cause {cause}"
            at = ts_of[cause["event_id"]]
        else:
            assert cause["type"] == "timer", cause
            at = int(cause["due"])
        causes[f"{kind} by {cause['type']}"] += 1
        if alert["event_ts"] != format_time(at):
            wrong.append(f"{alert['alert_id'][:12]} {cause} evaluated at {alert['event_ts']}")
    print(f"\nclean run alerts by cause: {dict(sorted(causes.items()))}")
    assert causes["segment_change by event"] and causes["segment_change by timer"]
    assert causes["win_back by timer"]
    assert not wrong, f"{len(wrong)} alerts not evaluated at their cause: {wrong[:10]}"
