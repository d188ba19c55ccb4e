"""Population snapshot against DOMAIN.md's published shares (10/40/150/800; 70/20/5/5)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.population import snapshot
from engine.scoring import SCORES_DTYPE, abcd_code, tier_code


def population(spends: list[float], freqs: list[float] | None = None) -> np.ndarray:
    scores = np.zeros(len(spends), dtype=SCORES_DTYPE)
    scores["effective"] = 1
    scores["window_monetary"] = spends
    scores["window_frequency"] = 1
    scores["freq_per_year"] = freqs if freqs is not None else 1.0
    scores["window_avg_spend"] = spends
    return scores


def test_value_tiers_of_1000_customers_are_10_40_150_800() -> None:
    rng = np.random.default_rng(7)
    spends = rng.permutation(np.arange(1, 1001, dtype=float) * 3.5)  # distinct spends
    cuts = snapshot(population(list(spends)))
    tiers = [tier_code(s, cuts.tier_vip, cuts.tier_major, cuts.tier_normal) for s in spends]
    counts = {t: tiers.count(t) for t in (4, 3, 2, 1)}
    assert counts == {4: 10, 3: 40, 2: 150, 1: 800}


def test_abcd_follows_cumulative_share_of_sales() -> None:
    # 100 customers with spend proportional to a long tail
    spends = [1000.0 / (i + 1) for i in range(100)]
    cuts = snapshot(population(spends))
    total = sum(spends)
    ordered = sorted(spends, reverse=True)
    running = 0.0
    for s in ordered:
        klass = abcd_code(s, cuts.abcd_a, cuts.abcd_b, cuts.abcd_c)
        share_before = running / total
        expected = (
            1
            if share_before < 0.70
            else 2
            if share_before < 0.90
            else (3 if share_before < 0.95 else 4)
        )
        assert klass == expected, (s, share_before)
        running += s


def test_non_members_do_not_count_and_means_ignore_order() -> None:
    scores = population([10.0, 20.0, 30.0, 1e9], [1.0, 2.0, 3.0, 100.0])
    scores["effective"][3] = 0
    cuts = snapshot(scores)
    assert cuts.quad_freq_mean == pytest.approx(2.0)
    assert cuts.quad_spend_mean == pytest.approx(20.0)
    assert cuts.tier_vip == 30.0
    assert snapshot(scores[::-1].copy()) == cuts


def test_empty_population_has_unreachable_cuts() -> None:
    cuts = snapshot(population([]))
    assert all(v == float("inf") for v in cuts)
