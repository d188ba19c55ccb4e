"""Population sketches, merged: cut points within the stated 1 % of the exact snapshot,
and the rolling churn counts against a brute-force definition."""

from __future__ import annotations

import numpy as np
import pytest

from engine.batch_scoring import fold_events
from engine.ranking import snapshot
from engine.scoring import PopulationCuts, evaluate
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from engine.state import KIND_PURCHASE, new_events
from models.population_sketch import (
    EPS,
    churn_counts,
    cuts_from_sketches,
    population_kpis,
    sketch_scores,
)

P = default_scoring_params()
DAY = 86400
T0 = 852076800


def population(seed: int, customers: int = 3000) -> tuple[np.ndarray, np.ndarray, dict, int]:
    rng = np.random.default_rng(seed)
    n_events = customers * 4
    events = new_events(n_events)
    events["row"] = rng.integers(0, customers, n_events)
    events["kind"] = KIND_PURCHASE
    events["ts"] = T0 + rng.integers(0, 900, n_events) * DAY
    events["cents"] = (rng.lognormal(3.5, 1.0, n_events) * 100).astype(np.int64)
    events.sort(order="ts", kind="stable")
    states = fold_events(customers, events, P)
    clock = int(events["ts"].max())
    history: dict[int, list[int]] = {}
    for row, ts in zip(events["row"].tolist(), events["ts"].tolist(), strict=True):
        history.setdefault(row, []).append(ts)
    return states, events, history, clock


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merged_sketches_give_cuts_within_one_percent(seed: int) -> None:
    states, _, _, clock = population(seed)
    scores = evaluate(states, clock, P, PopulationCuts.from_params(P), DEFAULT_RFM_MAP)
    exact = snapshot(scores)
    # four "partitions" sketched separately, then merged
    parts = np.array_split(np.arange(states.shape[0]), 4)
    sketches = [sketch_scores(scores[p], states[p], clock, 365.25, computed_at=0.0) for p in parts]
    merged = cuts_from_sketches(sketches)
    assert merged is not None
    for name in ("tier_vip", "tier_major", "tier_normal", "abcd_a", "abcd_b", "abcd_c"):
        got, want = getattr(merged, name), getattr(exact, name)
        assert want * (1 - EPS) <= got <= want * (1 + 1e-12), name
    assert merged.quad_freq_mean == pytest.approx(exact.quad_freq_mean, rel=1e-12)
    assert merged.quad_spend_mean == pytest.approx(exact.quad_spend_mean, rel=1e-12)


def test_churn_counts_bracket_the_definition() -> None:
    states, _, history, clock = population(4)
    window = 365 * DAY
    lo, hi = clock - 2 * window, clock - window
    members_then = {r for r, ts in history.items() if any(lo < t <= hi for t in ts)}
    churned_true = sum(1 for r in members_then if max(history[r]) <= hi)
    retained_true = len(members_then) - churned_true
    churned, retained, undecided = churn_counts(states, clock, window)
    assert churned == churned_true
    assert retained <= retained_true <= retained + undecided
    assert retained_true > 0 and churned_true > 0


def test_kpis_of_partition_sketches_are_those_of_the_whole() -> None:
    states, _, _, clock = population(5, customers=1000)
    scores = evaluate(states, clock, P, PopulationCuts.from_params(P), DEFAULT_RFM_MAP)
    whole = population_kpis([sketch_scores(scores, states, clock, 365.25, computed_at=10.0)], 15.0)
    parts = np.array_split(np.arange(states.shape[0]), 3)
    sketches = [
        sketch_scores(scores[p], states[p], clock, 365.25, computed_at=10.0 + i)
        for i, p in enumerate(parts)
    ]
    merged = population_kpis(sketches, 15.0)
    assert merged.pop("partitions_reporting") == 3
    assert whole.pop("partitions_reporting") == 1
    assert merged.pop("oldest_sketch_age_s") == 5.0
    assert whole.pop("oldest_sketch_age_s") == 5.0
    for name in ("repurchase_frequency_per_year", "avg_days_between_purchases", "pareto_share"):
        assert merged.pop(name) == pytest.approx(whole.pop(name), rel=1e-12)
    assert merged == whole
    assert whole["effective_members"] > 0


def test_kpis_without_sketches_have_no_rates() -> None:
    kpis = population_kpis([], 7.0)
    assert kpis["partitions_reporting"] == 0 and kpis["oldest_sketch_age_s"] == 0.0
    assert kpis["rolling_churn_rate"] is None and kpis["repurchase_frequency_per_year"] is None
    assert kpis["value_tiers"] == {}
