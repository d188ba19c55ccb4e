"""models.uplift: the outcome table and the uplift interval (docs/outcomes.md).

Oracles:
- the interval against statsmodels' ``confint_proportions_2indep(..., method="newcomb",
  compare="diff")`` (and the Wilson bounds against ``proportion_confint(method="wilson")``),
  and against the worked examples of Newcombe (1998), Statistics in Medicine 17:873-890,
  Table II, method 10 (hybrid score, no continuity correction), to the 4 decimals printed;
- the interval's coverage of a true uplift of 0 (the replay case: nobody is contacted, both
  groups respond at one rate) by simulation from the binomial definition;
- the table's counts, rates and pooled uplifts computed by hand in the test.
"""

from __future__ import annotations

import json
import random

import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from models.uplift import (
    ALL,
    Z95,
    format_outcome_lines,
    newcombe_interval,
    outcome_stats,
    outcome_table,
    wilson_bounds,
)

V1, V2 = "0123456789ab", "ba9876543210"

# Newcombe 1998, Table II, method 10: (x1, n1, x2, n2) -> (lower, upper), 4 decimals
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE_TABLE_II)
def test_interval_reproduces_newcombe_table_ii(
    counts: tuple[int, int, int, int], published: tuple[float, float]
) -> None:
    interval = newcombe_interval(*counts)
    assert interval is not None
    assert interval == pytest.approx(published, abs=5e-5)


def _grid() -> list[tuple[int, int, int, int]]:
    rng = random.Random(15)
    cases = [(0, 1, 0, 1), (1, 1, 0, 1), (1, 1, 1, 1), (0, 3, 3, 3), (7, 7, 0, 1000)]
    cases += [(5, 1000, 6, 100), (1, 2, 1, 3), (499, 1000, 501, 1000), (3, 40_000, 1, 4000)]
    for _ in range(200):
        n1, n2 = rng.randint(1, 3000), rng.randint(1, 500)
        cases.append((rng.randint(0, n1), n1, rng.randint(0, n2), n2))
    return cases


def test_interval_matches_statsmodels_newcomb() -> None:
    for x1, n1, x2, n2 in _grid():
        low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
        got = newcombe_interval(x1, n1, x2, n2)
        assert got is not None
        assert got == pytest.approx((float(low), float(high)), abs=1e-12), (x1, n1, x2, n2)


def test_wilson_bounds_match_statsmodels() -> None:
    for x1, n1, _, _ in _grid():
        low, high = proportion_confint(x1, n1, alpha=0.05, method="wilson")
        assert wilson_bounds(x1, n1) == pytest.approx((float(low), float(high)), abs=1e-12)
    with pytest.raises(ValueError):
        wilson_bounds(0, 0)
    with pytest.raises(ValueError):
        wilson_bounds(3, 2)


def test_no_interval_without_both_groups() -> None:
    assert newcombe_interval(0, 0, 1, 2) is None
    assert newcombe_interval(1, 2, 0, 0) is None


def test_interval_covers_a_zero_uplift_about_95_percent() -> None:
    """A replay contacts nobody: treated and holdout respond at one rate, the true uplift is 0.
    Over 4000 simulated experiments the interval must contain 0 about 95 % of the time (the
    hybrid score interval is slightly conservative; a Wald interval at n = 30, p = 0.1 would
    fall near 0.90)."""
    rng = random.Random(1998)
    trials, covered = 4000, 0
    for i in range(trials):
        p = (0.05, 0.1, 0.3, 0.5)[i % 4]
        n1, n2 = 300, 30
        x1 = sum(rng.random() < p for _ in range(n1))
        x2 = sum(rng.random() < p for _ in range(n2))
        interval = newcombe_interval(x1, n1, x2, n2)
        assert interval is not None
        covered += interval[0] <= 0.0 <= interval[1]
    # binomial(4000, 0.95) has sd 0.0034: [0.93, 0.985] is far outside chance
    assert 0.93 <= covered / trials <= 0.985


# --------------------------------------------------------------------------- the table


def _counters() -> dict[str, int]:
    """Two holdout versions; nudges and win-backs; treated and held-out groups."""
    c = {
        # version 1, nudge / repurchase / timely_reminder / normal
        f"contact|nudge|repurchase|timely_reminder|normal|treated|{V1}": 120,
        f"outcome|nudge|repurchase|timely_reminder|normal|treated|{V1}|n": 100,
        f"outcome|nudge|repurchase|timely_reminder|normal|treated|{V1}|responded": 30,
        f"outcome|nudge|repurchase|timely_reminder|normal|treated|{V1}|spend_cents": 123_456,
        f"contact|nudge|repurchase|timely_reminder|normal|holdout|{V1}": 13,
        f"outcome|nudge|repurchase|timely_reminder|normal|holdout|{V1}|n": 10,
        f"outcome|nudge|repurchase|timely_reminder|normal|holdout|{V1}|responded": 2,
        f"outcome|nudge|repurchase|timely_reminder|normal|holdout|{V1}|spend_cents": 5_000,
        # version 1, nudge, another tier/action (treated only)
        f"contact|nudge|repurchase|account_manager_call|vip|treated|{V1}": 4,
        f"outcome|nudge|repurchase|account_manager_call|vip|treated|{V1}|n": 4,
        f"outcome|nudge|repurchase|account_manager_call|vip|treated|{V1}|responded": 4,
        f"outcome|nudge|repurchase|account_manager_call|vip|treated|{V1}|spend_cents": 80_000,
        # version 1, win-back silence: no outcome closed yet
        f"contact|win_back|silence|reminder_email|small|treated|{V1}": 50,
        f"contact|win_back|silence|reminder_email|small|holdout|{V1}": 6,
        # version 1, win-back complaint
        f"contact|win_back|complaint|service_recovery_offer|major|treated|{V1}": 20,
        f"outcome|win_back|complaint|service_recovery_offer|major|treated|{V1}|n": 20,
        f"outcome|win_back|complaint|service_recovery_offer|major|treated|{V1}|responded": 5,
        f"outcome|win_back|complaint|service_recovery_offer|major|treated|{V1}|spend_cents": 999,
        f"outcome|win_back|complaint|service_recovery_offer|major|holdout|{V1}|n": 8,
        f"outcome|win_back|complaint|service_recovery_offer|major|holdout|{V1}|responded": 1,
        # version 2: a different salt or fraction, counted apart
        f"contact|nudge|repurchase|timely_reminder|normal|treated|{V2}": 7,
        f"outcome|nudge|repurchase|timely_reminder|normal|treated|{V2}|n": 5,
        f"outcome|nudge|repurchase|timely_reminder|normal|treated|{V2}|responded": 1,
        f"outcome|nudge|repurchase|timely_reminder|normal|holdout|{V2}|n": 3,
        f"outcome|nudge|repurchase|timely_reminder|normal|holdout|{V2}|responded": 0,
        # suppressions, complaints (ignored), junk
        "suppressed|nudge|repurchase": 9,
        "suppressed|win_back|silence": 2,
        "complaint|delivery": 11,
        "outcome|nudge|repurchase|a|b|treated|v": 1,  # too short
        f"outcome|nudge|repurchase|a|b|control|{V1}|n": 1,  # unknown group
        f"outcome|nudge|repurchase|a|b|treated|{V1}|median": 1,  # unknown stat
    }
    return c


def test_cells_count_rate_and_spend_by_hand() -> None:
    table = outcome_table(_counters())
    assert table.versions == (V1, V2)
    cells = {(c.holdout_version, c.kind, c.action, c.tier, c.group): c for c in table.cells}
    nudge = cells[(V1, "nudge", "timely_reminder", "normal", "treated")]
    assert (nudge.contacts, nudge.closed, nudge.responded, nudge.spend_cents) == (
        120,
        100,
        30,
        123_456,
    )
    assert nudge.response_rate == 0.3
    assert nudge.spend_per_contact == pytest.approx(1234.56 / 100)
    held = cells[(V1, "nudge", "timely_reminder", "normal", "holdout")]
    assert (held.contacts, held.closed, held.responded) == (13, 10, 2)
    assert held.spend_per_contact == pytest.approx(5.0)
    silent = cells[(V1, "win_back", "reminder_email", "small", "treated")]
    assert silent.contacts == 50 and silent.closed == 0
    assert silent.response_rate is None and silent.spend_per_contact is None
    # complaint-recovery holdout closed windows without a contact counted in this read
    assert cells[(V1, "win_back", "service_recovery_offer", "major", "holdout")].contacts == 0
    assert len(table.cells) == 9
    # treated before holdout within a (version, kind, reason, action, tier)
    first = [c.group for c in table.cells if c.action == "timely_reminder"]
    assert first == ["treated", "holdout", "treated", "holdout"]
    assert table.suppressed == (("nudge", "repurchase", 9), ("win_back", "silence", 2))
    assert len(table.skipped) == 3 and not any(s.startswith("complaint") for s in table.skipped)


def _check_uplift(table, version, kind, reason, t, h) -> None:  # type: ignore[no-untyped-def]
    u = table.uplift(version, kind, reason)
    assert u is not None
    assert (u.treated_responded, u.treated_closed) == t
    assert (u.holdout_responded, u.holdout_closed) == h
    assert u.uplift == pytest.approx(t[0] / t[1] - h[0] / h[1])
    low, high = confint_proportions_2indep(*t, *h, method="newcomb", compare="diff")
    assert u.interval == pytest.approx((float(low), float(high)), abs=1e-12)


def test_uplift_pooled_by_kind_reason_and_overall() -> None:
    table = outcome_table(_counters())
    # nudge: treated 30/100 + 4/4, holdout 2/10
    _check_uplift(table, V1, "nudge", ALL, (34, 104), (2, 10))
    _check_uplift(table, V1, "nudge", "repurchase", (34, 104), (2, 10))
    # win-back: only the complaint reason has closed windows
    _check_uplift(table, V1, "win_back", ALL, (5, 20), (1, 8))
    _check_uplift(table, V1, "win_back", "complaint", (5, 20), (1, 8))
    _check_uplift(table, V1, ALL, ALL, (39, 124), (3, 18))
    _check_uplift(table, V2, ALL, ALL, (1, 5), (0, 3))
    silence = table.uplift(V1, "win_back", "silence")
    assert silence is not None
    assert silence.uplift is None and silence.interval is None
    assert silence.treated_rate is None and silence.holdout_rate is None
    assert table.uplift(V2, "win_back") is None  # nothing of that kind in version 2


def test_empty_table() -> None:
    table = outcome_table({"complaint|x": 3})
    assert table.cells == () and table.uplifts == () and table.versions == ()
    stats = outcome_stats(table)
    assert stats["versions"] == [] and stats["suppressed"] == []


def test_stats_json() -> None:
    stats = outcome_stats(outcome_table(_counters()), current_version=V2)
    json.dumps(stats, allow_nan=False)  # plain JSON: None, never NaN
    assert [v["holdout_version"] for v in stats["versions"]] == [V2, V1]  # current first
    assert stats["versions"][0]["current"] and not stats["versions"][1]["current"]
    v1 = stats["versions"][1]
    overall = next(u for u in v1["uplift"] if u["kind"] == ALL)
    assert overall["treated"] == {"closed": 124, "responded": 39, "rate": 39 / 124}
    assert overall["holdout"] == {"closed": 18, "responded": 3, "rate": 3 / 18}
    assert overall["uplift"] == pytest.approx(39 / 124 - 3 / 18)
    low, high = confint_proportions_2indep(39, 124, 3, 18, method="newcomb", compare="diff")
    assert (overall["low"], overall["high"]) == pytest.approx((low, high), abs=1e-12)
    silence = next(u for u in v1["uplift"] if u["reason"] == "silence")
    assert silence["uplift"] is None and silence["low"] is None and silence["high"] is None
    cell = next(c for c in v1["cells"] if c["tier"] == "vip")
    assert cell == {
        "kind": "nudge",
        "reason": "repurchase",
        "action": "account_manager_call",
        "tier": "vip",
        "group": "treated",
        "contacts": 4,
        "closed": 4,
        "responded": 4,
        "response_rate": 1.0,
        "spend_cents": 80_000,
        "spend_per_contact": 200.0,
    }
    assert stats["suppressed"][0] == {"kind": "nudge", "reason": "repurchase", "count": 9}
    assert len(stats["skipped_fields"]) == 3


def test_text_table() -> None:
    lines = format_outcome_lines(outcome_table(_counters()), current_version=V1)
    assert lines[0] == f"holdout version {V1} (current)"
    rows = [line.split() for line in lines]
    # a cell: kind reason action tier group contacts closed responded rate spend/closed
    nudge = ["nudge", "repurchase", "timely_reminder", "normal", "treated"]
    assert [*nudge, "120", "100", "30", "30.00%", "12.35"] in rows  # 1234.56 over 100 closed
    silence = ["win_back", "silence", "reminder_email", "small", "treated"]
    assert [*silence, "50", "0", "0", "-", "-"] in rows
    # the pooled uplift of version 1, in percentage points, with Newcombe's interval
    up = 39 / 124 - 3 / 18
    low, high = confint_proportions_2indep(39, 124, 3, 18, method="newcomb", compare="diff")
    pooled = ["all", "all", "39/124", f"{100 * 39 / 124:.2f}%", "3/18", f"{100 * 3 / 18:.2f}%"]
    assert [*pooled, f"{100 * up:+.2f}pp", f"{100 * low:+.2f}pp", f"{100 * high:+.2f}pp"] in rows
    assert ["win_back", "silence", "0/0", "-", "0/0", "-", "-", "-", "-"] in rows
    # one block per version, the current one first, then the suppressions
    second = lines.index(f"holdout version {V2}")
    assert second > lines.index(f"holdout version {V1} (current)")
    assert lines.index("suppressed by the contact budget") > second
    assert ["nudge", "repurchase", "9"] in rows
    # fixed width: the last column is right-aligned, so a grid's lines end in one column
    grid = lines[
        1 : lines.index(
            "  uplift: treated - holdout response rate, 95 % interval clustered by customer"
        )
    ]
    assert len(grid) == 8 and len({len(line) for line in grid}) == 1
    assert format_outcome_lines(outcome_table({})) == ["no contacts counted yet"]


def test_cluster_interval_matches_a_cluster_robust_regression() -> None:
    """Customers with several outcomes each: the pooled uplift's interval, from the cluster
    sums alone, equals statsmodels' customer-clustered OLS of response on group to within
    the two small-sample factors (m/(m-1) per group here, G/(G-1)(N-1)/(N-K) pooled there)."""
    import numpy as np
    import statsmodels.api as sm

    rng = np.random.default_rng(11)
    version = "0123456789ab"
    counters: dict[str, int] = {}
    rows: list[tuple[int, int, int]] = []  # (customer, treated, responded)
    for customer in range(600):
        group = "treated" if customer % 2 else "holdout"
        n = int(rng.integers(1, 6))
        propensity = rng.beta(2, 5)  # customers differ: their outcomes are correlated
        y = int(rng.binomial(n, propensity))
        for k in range(n):
            rows.append((customer, int(group == "treated"), int(k < y)))
        cell = f"outcome|nudge|repurchase|timely_reminder|small|{group}|{version}"
        counters[f"{cell}|n"] = counters.get(f"{cell}|n", 0) + n
        counters[f"{cell}|responded"] = counters.get(f"{cell}|responded", 0) + y
        for scope in ("all", "nudge"):
            sums = f"cluster|{scope}|{group}|{version}"
            for stat, value in (("m", 1), ("n2", n * n), ("yn", y * n), ("y2", y * y)):
                counters[f"{sums}|{stat}"] = counters.get(f"{sums}|{stat}", 0) + value
    data = np.array(rows, dtype=float)
    fit = sm.OLS(data[:, 2], sm.add_constant(data[:, 1])).fit(
        cov_type="cluster", cov_kwds={"groups": data[:, 0].astype(int)}
    )
    table = outcome_table(counters)
    for kind in (ALL, "nudge"):
        pooled = table.uplift(version, kind)
        assert pooled is not None and pooled.interval_method == "cluster"
        assert pooled.uplift == pytest.approx(fit.params[1], abs=1e-12)
        low, high = pooled.interval or (0.0, 0.0)
        assert (high - low) / 2 == pytest.approx(Z95 * fit.bse[1], rel=0.01)
        # and wider than the contact-level interval, which ignores the clustering
        naive = newcombe_interval(
            pooled.treated_responded,
            pooled.treated_closed,
            pooled.holdout_responded,
            pooled.holdout_closed,
        )
        assert naive is not None and high - low > naive[1] - naive[0]
