"""streams.outcome_metrics: the marketing loop's Prometheus series.

Expected counts are summed by hand from the deltas the test feeds in; the uplift gauges are
checked against statsmodels' Newcombe interval (``confint_proportions_2indep``), not against
models.uplift.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from statsmodels.stats.proportion import confint_proportions_2indep

from models.uplift import outcome_table
from streams.metrics import build_metrics
from streams.outcome_metrics import OutcomeMetrics

V1, V2 = "0123456789ab", "ba9876543210"
CELL = ("nudge", "repurchase", "timely_reminder", "normal", "treated")
HELD = ("nudge", "repurchase", "timely_reminder", "normal", "holdout")
WB = ("win_back", "silence", "reminder_email", "small", "treated")


def _f(record: str, cell: tuple[str, ...], version: str = V1, stat: str | None = None) -> str:
    return "|".join([record, *cell, version, *([stat] if stat else [])])


def _labels(cell: tuple[str, ...], **extra: str) -> dict[str, str]:
    return dict(zip(("kind", "reason", "action", "tier", "group"), cell, strict=True)) | extra


def test_counts_what_batches_commit() -> None:
    registry = CollectorRegistry()
    build_metrics(registry)  # the worker's own metrics share the registry without a clash
    metrics = OutcomeMetrics(registry)
    metrics.count(
        {
            _f("contact", CELL): 3,
            _f("contact", HELD): 1,
            _f("outcome", CELL, stat="n"): 2,
            _f("outcome", CELL, stat="responded"): 1,
            _f("outcome", CELL, stat="spend_cents"): 1250,
            "suppressed|nudge|repurchase": 4,
            "complaint|delivery": 1,
        }
    )
    metrics.count(
        {
            _f("contact", CELL, version=V2): 2,  # the version is not a label: added up
            _f("outcome", CELL, stat="n"): 3,
            _f("outcome", CELL, stat="responded"): 0,
            _f("outcome", WB, stat="n"): 1,
            _f("outcome", WB, stat="responded"): 1,
            _f("outcome", WB, stat="spend_cents"): 99,
        }
    )
    get = registry.get_sample_value
    assert get("custscore_contacts_total", _labels(CELL)) == 5
    assert get("custscore_contacts_total", _labels(HELD)) == 1
    assert get("custscore_contact_outcomes_total", _labels(CELL, responded="true")) == 1
    assert get("custscore_contact_outcomes_total", _labels(CELL, responded="false")) == 1 + 3
    assert get("custscore_contact_outcomes_total", _labels(WB, responded="true")) == 1
    assert get("custscore_contact_outcomes_total", _labels(WB, responded="false")) == 0
    assert get("custscore_contact_response_spend_total", _labels(CELL)) == pytest.approx(12.50)
    assert get("custscore_contact_response_spend_total", _labels(WB)) == pytest.approx(0.99)
    text = generate_latest(registry).decode()
    assert "# TYPE custscore_contacts_total counter" in text
    assert "# TYPE custscore_uplift gauge" in text


def _counters(version: str, t: tuple[int, int], h: tuple[int, int]) -> dict[str, int]:
    return {
        _f("outcome", CELL, version, "n"): t[1],
        _f("outcome", CELL, version, "responded"): t[0],
        _f("outcome", HELD, version, "n"): h[1],
        _f("outcome", HELD, version, "responded"): h[0],
        _f("contact", WB, version): 5,  # win-backs made, none closed yet
    }


def test_uplift_gauges() -> None:
    registry = CollectorRegistry()
    metrics = OutcomeMetrics(registry)
    metrics.set_uplift(outcome_table(_counters(V1, (30, 100), (2, 10))))
    get = registry.get_sample_value
    low, high = confint_proportions_2indep(30, 100, 2, 10, method="newcomb", compare="diff")
    for kind in ("nudge", "all"):
        assert get("custscore_uplift", {"kind": kind}) == pytest.approx(0.3 - 0.2)
        assert get("custscore_uplift_low", {"kind": kind}) == pytest.approx(low, abs=1e-12)
        assert get("custscore_uplift_high", {"kind": kind}) == pytest.approx(high, abs=1e-12)
    for name in ("custscore_uplift", "custscore_uplift_low", "custscore_uplift_high"):
        assert math.isnan(get(name, {"kind": "win_back"}))

    # two versions: the one named is reported, never a mix of both
    both = _counters(V1, (30, 100), (2, 10)) | _counters(V2, (1, 4), (3, 4))
    metrics.set_uplift(outcome_table(both), holdout_version=V2)
    assert get("custscore_uplift", {"kind": "nudge"}) == pytest.approx(0.25 - 0.75)
    metrics.set_uplift(outcome_table(both))  # none named: undefined
    assert math.isnan(get("custscore_uplift", {"kind": "nudge"}))
    assert math.isnan(get("custscore_uplift", {"kind": "all"}))

    # a kind that is gone from the counters does not keep its old value
    metrics.set_uplift(outcome_table({}))
    assert math.isnan(get("custscore_uplift", {"kind": "nudge"}))
    assert math.isnan(get("custscore_uplift_high", {"kind": "all"}))
