"""Population snapshot against the published shares of the customer pyramid and A/B/C/D
(10/40/150/800; 70/20/5/5).

Threshold cut points (what the live worker and params files use) and the exact rank-based
classes of ``custscore score`` / ``export``, ties included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.ranking import rank_classes, snapshot, tier_counts
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


# --- exact snapshot by rank (custscore score / export) ------------------------------------------


def _digests(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)


def _counts(codes: np.ndarray, values: tuple[int, ...]) -> dict[int, int]:
    return {v: int(np.count_nonzero(codes == v)) for v in values}


@pytest.mark.parametrize("spend", [0.0, 25.0, -3.0])
def test_identical_spends_do_not_collapse_the_pyramid(spend: float) -> None:
    scores = population([spend] * 1000)
    rank_classes(scores, _digests(1000))
    assert _counts(scores["value_tier"], (4, 3, 2, 1)) == {4: 10, 3: 40, 2: 150, 1: 800}
    abcd = _counts(scores["abcd_class"], (1, 2, 3, 4))
    if spend > 0:
        assert abcd == {1: 700, 2: 200, 3: 50, 4: 50}
    else:  # no positive sales: everyone is D
        assert abcd == {1: 0, 2: 0, 3: 0, 4: 1000}


def test_tier_counts_are_ceilings_of_the_shares() -> None:
    assert tier_counts(0) == (0, 0, 0)
    assert tier_counts(1) == (1, 1, 1)
    assert tier_counts(1000) == (10, 50, 200)
    assert tier_counts(1001) == (11, 51, 201)
    assert tier_counts(8332) == (84, 417, 1667)


def test_ties_are_broken_by_the_digest_not_the_order_of_customers() -> None:
    rng = np.random.default_rng(3)
    spends = rng.choice([10.0, 20.0, 50.0, 99.99], 500)
    digests = _digests(500, 9)
    scores = population(list(spends))
    rank_classes(scores, digests)
    perm = rng.permutation(500)
    shuffled = population(list(spends[perm]))
    rank_classes(shuffled, digests[perm])
    np.testing.assert_array_equal(shuffled["value_tier"], scores["value_tier"][perm])
    np.testing.assert_array_equal(shuffled["abcd_class"], scores["abcd_class"][perm])
    # among equal spends the smaller digest ranks first
    top = scores["value_tier"] == 4
    assert np.unique(spends[top]).tolist() == [99.99]
    tied = (spends == 99.99) & ~top
    assert digests[top].max() < digests[tied].min()


@given(
    spends=st.lists(
        st.one_of(st.sampled_from([0.0, 5.0, 12.5, 100.0]), st.integers(-50, 5000).map(float)),
        min_size=1,
        max_size=300,
    )
)
def test_rank_classes_follow_the_shares(spends: list[float]) -> None:
    n = len(spends)
    scores = population(spends)
    rank_classes(scores, _digests(n))
    tiers = scores["value_tier"]
    vip, major, normal = tier_counts(n)
    assert _counts(tiers, (4, 3, 2, 1)) == {4: vip, 3: major - vip, 2: normal - major,
                                            1: n - normal}
    # a higher tier never has a lower spend
    for hi, lo in ((4, 3), (3, 2), (2, 1)):
        if (tiers == hi).any() and (tiers == lo).any():
            assert scores["window_monetary"][tiers == hi].min() >= (
                scores["window_monetary"][tiers == lo].max()
            )
    # A/B/C/D: each class's share of positive sales exceeds its target by less than one
    # customer (the one whose purchase crosses the boundary), and none falls short
    cents = np.maximum(np.rint(np.array(spends) * 100).astype(np.int64), 0)
    total = int(cents.sum())
    klass = scores["abcd_class"]
    if total == 0:
        assert (klass == 4).all()
        return
    running = 0
    for k, bound in ((1, 0.70), (2, 0.90), (3, 0.95)):
        members = klass == k
        running += int(cents[members].sum())
        biggest = int(cents[members].max()) if members.any() else 0
        assert running >= bound * total or not (klass > k).any() or (
            cents[klass > k] == 0
        ).all()
        assert running - biggest < bound * total or not members.any()
    assert (klass[cents == 0] == 4).all()


def test_threshold_cuts_reproduce_ranks_without_ties() -> None:
    rng = np.random.default_rng(11)
    spends = rng.permutation(np.arange(1, 2001, dtype=float) * 1.25)
    scores = population(list(spends))
    cuts = snapshot(scores, _digests(2000))
    rank_classes(scores, _digests(2000))
    for s, tier, klass in zip(spends, scores["value_tier"], scores["abcd_class"], strict=True):
        assert tier_code(s, cuts.tier_vip, cuts.tier_major, cuts.tier_normal) == tier
        assert abcd_code(s, cuts.abcd_a, cuts.abcd_b, cuts.abcd_c) == klass


def test_score_states_ranks_identical_customers() -> None:
    """Through the batch driver: 1,000 customers with identical histories."""
    from engine.batch_scoring import fold_events, score_states
    from engine.scoring_params import default_scoring_params
    from engine.segments import DEFAULT_RFM_MAP
    from engine.state import new_events
    from models.customers import customer_digests

    params = default_scoring_params()
    t0 = 852076800
    events = new_events(1000)
    events["row"] = np.arange(1000)
    events["kind"] = 1
    events["ts"] = t0
    events["cents"] = 4200
    states = fold_events(1000, events, params)
    ids = [f"c{i:04d}" for i in range(1000)]
    scores, cuts = score_states(states, t0 + 86400, params, DEFAULT_RFM_MAP,
                                customer_digests(ids))
    assert _counts(scores["value_tier"], (4, 3, 2, 1)) == {4: 10, 3: 40, 2: 150, 1: 800}
    assert _counts(scores["abcd_class"], (1, 2, 3, 4)) == {1: 700, 2: 200, 3: 50, 4: 50}
    assert cuts.tier_vip == 42.0
    # the same customers in another order get the same classes
    order = np.random.default_rng(5).permutation(1000)
    again, _ = score_states(states[order], t0 + 86400, params, DEFAULT_RFM_MAP,
                            customer_digests([ids[i] for i in order]))
    np.testing.assert_array_equal(again["value_tier"], scores["value_tier"][order])
    np.testing.assert_array_equal(again["abcd_class"], scores["abcd_class"][order])
