"""Issue-15 population KPIs of the merged sketches against plain-Python oracles written from
the definitions in docs/scoring.md ("KPIs"): second-purchase rate, monthly new / returning /
lost customers, the Pareto share (within the stated 1 %), complaint rate and repurchase after
a complaint, quadrant and A/B/C/D sizes; and the calibration shares taken from ScoringParams.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from engine.batch_scoring import fold_events
from engine.ranking import ClassShares, rank_classes, snapshot
from engine.scoring import SCORES_DTYPE, PopulationCuts, evaluate
from engine.scoring_params import default_scoring_params
from engine.segments import ABCD_NAMES, DEFAULT_RFM_MAP, QUADRANT_NAMES
from engine.state import KIND_COMPLAINT, KIND_PURCHASE, new_events, new_states
from models.population_sketch import (
    EPS,
    cuts_from_sketches,
    month_flows,
    months_of,
    pareto_share,
    population_kpis,
    sketch_scores,
)

P = default_scoring_params()
DAY = 86400
T0 = 852076800  # 1997-01-01


def _month(ts: int) -> int:
    d = datetime.fromtimestamp(ts, UTC)
    return (d.year - 1970) * 12 + d.month - 1


def _label(month: int) -> str:
    return f"{1970 + month // 12}-{month % 12 + 1:02d}"


class World:
    """Random purchases (some refunds), open and filed-resolved complaints, folded in order,
    with the per-customer event lists kept for the oracles."""

    def __init__(self, seed: int, customers: int = 1500, days: int = 1300) -> None:
        rng = np.random.default_rng(seed)
        n = customers * 4
        events = new_events(n)
        events["row"] = rng.integers(0, customers, n)
        kind = rng.choice([KIND_PURCHASE, KIND_COMPLAINT], n, p=[0.85, 0.15])
        events["kind"] = kind
        # customers are active over a stretch of their own, so some go lost within the window
        start = rng.integers(0, days, customers)
        span = rng.integers(1, days, customers)
        row = events["row"]
        events["ts"] = (
            T0
            + np.minimum(start[row] + rng.integers(0, span[row]), days) * DAY
            + rng.integers(0, DAY, n)
        )
        cents = (rng.lognormal(3.5, 1.0, n) * 100).astype(np.int64)
        refund = rng.random(n) < 0.05
        cents[refund] = -cents[refund] // 3
        events["cents"] = np.where(kind == KIND_PURCHASE, cents, 0)
        events["severity"] = rng.integers(1, 6, n)
        events["resolved"] = np.where(kind == KIND_COMPLAINT, rng.random(n) < 0.25, 0)
        events["complaint"] = rng.integers(1, 2**32 - 1, n, dtype=np.uint64)
        events.sort(order="ts", kind="stable")
        self.customers = customers
        self.events = events
        self.states = fold_events(customers, events, P)
        self.clock = int(events["ts"].max())
        self.purchases: dict[int, list[tuple[int, int]]] = {}  # row -> (ts, cents), cents != 0
        self.complaints: dict[int, list[int]] = {}  # row -> times of complaints filed open
        for ev in events.tolist():
            r, k, _sev, resolved, ts, c = ev[0], ev[1], ev[2], ev[3], ev[4], ev[5]
            if k == KIND_PURCHASE and c != 0:
                self.purchases.setdefault(r, []).append((ts, c))
            elif k == KIND_COMPLAINT and not resolved:
                self.complaints.setdefault(r, []).append(ts)
        # emitted classes (code + 1; 0 = never classified), set directly for the size counts
        self.states["seg_quadrant"] = rng.integers(0, 6, customers)
        self.states["seg_abcd"] = rng.integers(0, 6, customers)
        self.scores = evaluate(
            self.states, self.clock, P, PopulationCuts.from_params(P), DEFAULT_RFM_MAP
        )

    def buys(self, row: int) -> list[int]:
        return [ts for ts, c in self.purchases.get(row, []) if c > 0]

    def window_spend(self, row: int) -> float:
        """Net spend of the trailing window_months calendar months ending at the clock's."""
        current = _month(self.clock)
        lo = current - P.window_months + 1
        return sum(c for ts, c in self.purchases.get(row, []) if lo <= _month(ts) <= current) / 100

    def window_buyer(self, row: int) -> bool:
        current = _month(self.clock)
        return any(current - P.window_months < _month(ts) <= current for ts in self.buys(row))

    def sketches(self, parts: int, **kw: int) -> list[dict[str, Any]]:
        rows = np.array_split(np.arange(self.customers), parts)
        return [
            sketch_scores(self.scores[r], self.states[r], self.clock, 365.25, computed_at=1.0, **kw)
            for r in rows
        ]


@pytest.fixture(scope="module")
def world() -> World:
    return World(11)


def test_months_of_is_the_calendar_month() -> None:
    ts = np.random.default_rng(3).integers(1, 2**32 - 1, 2000)
    assert months_of(ts).tolist() == [_month(int(t)) for t in ts]


def test_second_purchase_rate(world: World) -> None:
    buyers = [r for r in range(world.customers) if world.buys(r)]
    two_days = [r for r in buyers if len({t // DAY for t in world.buys(r)}) >= 2]
    kpis = population_kpis(world.sketches(3), 5.0)
    assert kpis["second_purchase_rate"] == pytest.approx(len(two_days) / len(buyers), rel=1e-12)
    assert 0 < len(two_days) < len(buyers)


@pytest.mark.parametrize("lost_months", [24, 6])
def test_monthly_new_returning_lost(world: World, lost_months: int) -> None:
    current = _month(world.clock)
    want: list[dict[str, Any]] = []
    for month in range(current - 11, current + 1):
        new = returning = lost = 0
        for row in range(world.customers):
            buys = world.buys(row)
            if not buys:
                continue
            first, last = _month(min(buys)), _month(max(buys))
            new += first == month
            returning += first < month and any(_month(t) == month for t in buys)
            lost += last + lost_months == month
        want.append({"month": _label(month), "new": new, "returning": returning, "lost": lost})
    kpis = population_kpis(world.sketches(4, lost_months=lost_months), 5.0)
    assert kpis["monthly"] == want
    assert sum(m["lost"] for m in want) > 0 and sum(m["returning"] for m in want) > 0
    one = month_flows(world.states, world.clock, lost_months)
    assert [list(one[m]) for m in sorted(one)] == [
        [w["new"], w["returning"], w["lost"]] for w in want
    ]


def test_monthly_flows_of_partitions_at_older_watermarks_merge_by_calendar_month(
    world: World,
) -> None:
    """A partition behind the others reports its own 12 months; the merge adds by month."""
    rows = np.arange(world.customers)
    early = world.clock - 70 * DAY
    behind = sketch_scores(
        world.scores[rows < 500], world.states[rows < 500], early, 365.25, computed_at=1.0
    )
    ahead = sketch_scores(
        world.scores[rows >= 500], world.states[rows >= 500], world.clock, 365.25, computed_at=1.0
    )
    merged = population_kpis([behind, ahead], 5.0)["monthly"]
    assert merged[-1]["month"] == _label(_month(world.clock))
    by_month = {_label(int(k)): v for k, v in behind["months"].items()}
    for entry in merged:
        own = ahead["months"][
            str(
                next(
                    m
                    for m in range(_month(world.clock) - 11, _month(world.clock) + 1)
                    if _label(m) == entry["month"]
                )
            )
        ]
        extra = by_month.get(entry["month"], [0, 0, 0])
        assert [entry["new"], entry["returning"], entry["lost"]] == [
            own[i] + extra[i] for i in range(3)
        ]


def _exact_pareto(spends: list[float], share: float) -> float:
    positive = sorted((s for s in spends if s > 0), reverse=True)
    k = max(math.ceil(Fraction(str(share)) * len(positive)), 1)
    return math.fsum(positive[:k]) / math.fsum(positive)


@pytest.mark.parametrize("share", [0.2, 0.1, 0.3, 0.05])
def test_pareto_share_within_the_bucket_width(world: World, share: float) -> None:
    exact = _exact_pareto([world.window_spend(r) for r in range(world.customers)], share)
    params = P._replace(pareto_top_share=share)
    for parts in (1, 5):
        got = population_kpis(world.sketches(parts), 5.0, params)["pareto_share"]
        assert exact * (1 - EPS) - 1e-12 <= got <= exact + 1e-12
    assert 0 < exact < 1


def test_pareto_share_of_tied_and_tiny_populations() -> None:
    """Equal spends: the top k of n hold exactly k / n; one customer holds everything."""

    def sketch(spends: list[float]) -> dict[str, Any]:
        scores = np.zeros(len(spends), dtype=SCORES_DTYPE)
        scores["effective"] = 1
        scores["window_monetary"] = spends
        return sketch_scores(scores, new_states(len(spends)), 0, 365.25, computed_at=0.0)

    assert pareto_share([sketch([50.0] * 10)], 0.2) == pytest.approx(0.2, rel=1e-12)
    assert pareto_share([sketch([50.0] * 11)], 0.2) == pytest.approx(3 / 11, rel=1e-12)
    assert pareto_share([sketch([50.0] * 6), sketch([50.0] * 5)], 0.2) == pytest.approx(3 / 11)
    assert pareto_share([sketch([80.0])], 0.2) == pytest.approx(1.0)
    assert pareto_share([sketch([-5.0, 0.0])], 0.2) is None
    assert pareto_share([], 0.2) is None


def test_complaint_kpis(world: World) -> None:
    complainants = [r for r in range(world.customers) if world.complaints.get(r)]
    complaints = sum(len(v) for v in world.complaints.values())
    purchase_days = sum(len({t // DAY for t in world.buys(r)}) for r in range(world.customers))
    after = []
    for row in complainants:
        buys, latest = world.buys(row), max(world.complaints[row])
        if buys and min(buys) < latest:
            after.append(max(buys) > latest)
    kpis = population_kpis(world.sketches(3), 5.0)
    assert kpis["complaint_rate"] == pytest.approx(len(complainants) / world.customers)
    assert kpis["complaints"] == complaints
    assert kpis["complaints_per_100_purchase_days"] == pytest.approx(
        100 * complaints / purchase_days
    )
    assert kpis["complaint_buyers"] == len(after)
    assert kpis["repurchase_after_complaint"] == pytest.approx(sum(after) / len(after))
    assert 0 < sum(after) < len(after)


def test_quadrant_and_abcd_sizes_count_effective_members(world: World) -> None:
    quadrants: dict[str, int] = {}
    abcd: dict[str, int] = {}
    for row in range(world.customers):
        if not world.window_buyer(row):
            continue
        q, a = int(world.states["seg_quadrant"][row]), int(world.states["seg_abcd"][row])
        qn = QUADRANT_NAMES[q - 1] if q else "none"
        an = ABCD_NAMES[a - 1] if a else "none"
        quadrants[qn] = quadrants.get(qn, 0) + 1
        abcd[an] = abcd.get(an, 0) + 1
    kpis = population_kpis(world.sketches(4), 5.0)
    assert kpis["quadrants"] == quadrants
    assert kpis["abcd_classes"] == abcd
    assert sum(quadrants.values()) == kpis["effective_members"]


def test_sketches_without_the_new_counters_still_merge(world: World) -> None:
    """A sketch stored by an older worker lacks the issue-15 keys: they count as zero."""
    old = world.sketches(1)[0]
    for key in (
        "buyers_2plus",
        "purchase_days",
        "complainants",
        "complaints",
        "months",
        "complaint_buyers",
        "complaint_repurchased",
        "quadrants",
        "abcd",
        "hist_others",
    ):
        old.pop(key)
    kpis = population_kpis([old], 5.0)
    assert kpis["second_purchase_rate"] == 0.0
    assert kpis["complaints_per_100_purchase_days"] is None
    assert kpis["quadrants"] == {}


# ---------------------------------------------------------------- calibration shares


def _members_desc(world: World) -> list[float]:
    return sorted(
        (world.window_spend(r) for r in range(world.customers) if world.window_buyer(r)),
        reverse=True,
    )


@pytest.mark.parametrize("vip_share", [0.01, 0.03, 0.05])
def test_the_vip_share_moves_the_vip_cut(world: World, vip_share: float) -> None:
    params = P._replace(tier_share_vip=vip_share)
    shares = ClassShares.from_params(params)
    spends = _members_desc(world)
    k = max(math.ceil(Fraction(str(vip_share)) * len(spends)), 1)
    want = spends[k - 1]
    exact = snapshot(world.scores, shares=shares)
    assert exact.tier_vip == pytest.approx(want, abs=1e-9)
    merged = cuts_from_sketches(world.sketches(3), shares)
    assert merged is not None
    assert want * (1 - EPS) <= merged.tier_vip <= want * (1 + 1e-12)
    ranked = world.scores.copy()
    rank_classes(ranked, shares=shares)
    assert int(np.count_nonzero(ranked["value_tier"] == 4)) == k


def test_the_a_share_moves_the_a_cut(world: World) -> None:
    params = P._replace(abcd_share_a=0.5)
    spends = _members_desc(world)
    cents = [round(s * 100) for s in spends]
    total = sum(c for c in cents if c > 0)
    before = 0
    a_class = []
    for s, c in zip(spends, cents, strict=True):
        if c > 0 and Fraction(before, total) < Fraction(1, 2):
            a_class.append(s)
        before += max(c, 0)
    got = snapshot(world.scores, shares=ClassShares.from_params(params))
    assert got.abcd_a == pytest.approx(a_class[-1], abs=1e-9)
    assert got.abcd_a > snapshot(world.scores).abcd_a  # A is smaller at 50 % than at 70 %


def test_calibrate_takes_the_shares_from_the_params() -> None:
    from models.calibrate import History, calibrate

    world = World(12, customers=600)
    buyers = world.scores[world.states["purchase_days"] > 0]
    history = History(
        as_of=world.clock,
        frequency=buyers["frequency"].astype(float),
        recency=buyers["recency"].astype(float),
        T=buyers["T"].astype(float),
        monetary_value=buyers["monetary_value"].astype(float),
        scores=world.scores,
        cuts=snapshot(world.scores),
    )
    spends = _members_desc(world)
    for share in (0.01, 0.1):
        params = P._replace(tier_share_vip=share, tier_share_major=0.2, tier_share_normal=0.4)
        got = calibrate(history, params)
        k = max(math.ceil(Fraction(str(share)) * len(spends)), 1)
        assert got.tier_vip == pytest.approx(spends[k - 1], abs=1e-9)
        k_major = math.ceil(Fraction(1, 5) * len(spends))
        assert got.tier_major == pytest.approx(spends[k_major - 1], abs=1e-9)
        assert got.tier_share_vip == share


def test_shares_must_ascend() -> None:
    with pytest.raises(ValueError, match="tier shares"):
        ClassShares.from_params(P._replace(tier_share_vip=0.3))


def test_summarize_log_ranks_at_the_params_shares() -> None:
    from models.calibrate import summarize_log
    from models.events import EventLog

    world = World(13, customers=500)
    log = EventLog(
        customer_ids=[f"c{i}" for i in range(world.customers)],
        event_ids=[f"e{i}" for i in range(world.events.shape[0])],
        events=world.events,
        rows_read=world.events.shape[0],
    )
    spends = _members_desc(world)
    params = P._replace(tier_share_vip=0.04, tier_share_major=0.3, tier_share_normal=0.5)
    history = summarize_log(log, params, DEFAULT_RFM_MAP)
    k = math.ceil(Fraction(4, 100) * len(spends))
    assert history.cuts.tier_vip == pytest.approx(spends[k - 1], abs=1e-9)
    assert int(np.count_nonzero(history.scores["value_tier"] == 4)) == k
    assert int(np.count_nonzero(history.scores["value_tier"] >= 3)) == math.ceil(
        Fraction(3, 10) * len(spends)
    )
