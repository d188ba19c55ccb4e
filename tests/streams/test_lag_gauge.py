"""custscore_consumer_lag: every owned partition's lag is refreshed, revoked ones disappear."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust

from streams.metrics import build_metrics
from streams.worker import _update_lag


def _event(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


class _App:
    """The two things _update_lag reads of a Faust app: assignment and high-water marks."""

    def __init__(self, owned: list[tuple[str, int]], highwater: dict[tuple[str, int], int]):
        self.owned = owned
        self.high = highwater
        self.assignor = SimpleNamespace(
            assigned_actives=lambda: {faust.types.TP(t, p) for t, p in self.owned}
        )
        self.consumer = SimpleNamespace(highwater=lambda tp: self.high[(tp.topic, tp.partition)])


def _lag(metrics: Any) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in metrics.consumer_lag.collect()
        for s in family.samples
    }


def test_a_partition_missing_from_the_batch_still_shows_its_growing_lag() -> None:
    metrics = build_metrics()
    app = _App([("p", 0), ("p", 1)], {("p", 0): 10, ("p", 1): 10})
    applied: dict[tuple[str, int], int] = {}
    _update_lag(app, metrics, [_event("p", 0, 9), _event("p", 1, 4)], applied)  # type: ignore[arg-type]
    assert _lag(metrics) == {("p", "0"): 0.0, ("p", "1"): 5.0}
    # more events arrive on partition 1, but the next batch holds only partition 0
    app.high[("p", 1)] = 50
    app.high[("p", 0)] = 12
    _update_lag(app, metrics, [_event("p", 0, 11)], applied)  # type: ignore[arg-type]
    assert _lag(metrics) == {("p", "0"): 0.0, ("p", "1"): 45.0}


def test_a_revoked_partition_loses_its_series() -> None:
    metrics = build_metrics()
    app = _App([("p", 0), ("p", 1)], {("p", 0): 5, ("p", 1): 5})
    applied: dict[tuple[str, int], int] = {}
    _update_lag(app, metrics, [_event("p", 0, 1), _event("p", 1, 1)], applied)  # type: ignore[arg-type]
    app.owned = [("p", 0)]
    _update_lag(app, metrics, [_event("p", 0, 2)], applied)  # type: ignore[arg-type]
    assert _lag(metrics) == {("p", "0"): 2.0}
    assert applied == {("p", 0): 2}
