"""A replay invents no uplift (docs/outcomes.md; issue 15).

The clean CDNOW run (tests/reliability/conftest.py: a seeded subset replayed through one
worker, half the customers held out) contacts nobody for real: treated and held-out customers
only differ in the topic their contacts are recorded on. Their response rates must therefore
agree within the uplift interval; an interval that excludes 0 would mean the machinery, not a
campaign, made a difference (a group-dependent rule, a leak of group into scoring, or
outcomes counted differently per group).

The control group randomises customers, and a customer's contacts are not independent trials,
so the interval is clustered by customer (docs/outcomes.md). The worker's interval, kept from
running sums in its Redis counters and read by ``custscore outcomes --json``, is checked
against statsmodels' cluster-robust regression on the published outcome messages, and its
counters must count exactly the published outcomes.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from fixtures.streaming import run_script

from reliability.conftest import Run
from reliability.support import alert_table

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]


def outcome_counts(run: Run) -> Counter[tuple[str, str, str]]:
    """(contact kind, group, "n" | "responded") -> outcomes, from the published messages."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for alert in alert_table(run.alerts).values():
        if "closed_by" not in alert:
            continue
        counts[alert["contact_kind"], alert["group"], "n"] += 1
        counts[alert["contact_kind"], alert["group"], "responded"] += int(alert["responded"])
    return counts


def test_treated_and_held_out_respond_alike_in_a_replay(clean_run: Run) -> None:
    """The worker's uplift interval (``custscore outcomes --json``, from its Redis counters)
    contains 0, and equals a cluster-robust regression on the published outcomes."""
    import numpy as np
    import statsmodels.api as sm

    outcomes = [a for a in alert_table(clean_run.alerts).values() if "closed_by" in a]
    responded = np.array([float(a["responded"]) for a in outcomes])
    treated = np.array([float(a["group"] == "treated") for a in outcomes])
    customers = np.unique([a["customer_id"] for a in outcomes], return_inverse=True)[1]
    # response ~ treated, standard errors clustered by customer (the randomised unit)
    fit = sm.OLS(responded, sm.add_constant(treated)).fit(
        cov_type="cluster", cov_kwds={"groups": customers}
    )
    uplift, se = float(fit.params[1]), float(fit.bse[1])
    print(f"\nreplay outcomes: {dict(sorted(outcome_counts(clean_run).items()))}")
    print(f"uplift {uplift:+.4f}, cluster-robust se {se:.4f} over {customers.max() + 1} customers")

    result = run_script(clean_run.settings, "outcomes", "--json")
    assert result.returncode == 0, result.stderr
    (version,) = json.loads(result.stdout)["versions"]
    pooled = next(u for u in version["uplift"] if u["kind"] == u["reason"] == "all")
    assert pooled["interval_method"] == "cluster"
    assert pooled["treated"]["closed"] >= 200 and pooled["holdout"]["closed"] >= 200
    assert pooled["uplift"] == pytest.approx(uplift, abs=1e-12)
    # statsmodels' small-sample factor is G/(G-1) (N-1)/(N-K) over both groups, the worker's
    # m/(m-1) per group: the same interval to within a percent
    half = (pooled["high"] - pooled["low"]) / 2
    assert half == pytest.approx(1.959963984540054 * se, rel=0.01)
    print(f"worker's interval [{pooled['low']:.4f}, {pooled['high']:.4f}]")
    assert pooled["low"] <= 0.0 <= pooled["high"], pooled


def test_the_workers_counters_count_the_published_outcomes(clean_run: Run) -> None:
    result = run_script(clean_run.settings, "outcomes", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    (version,) = stats["versions"]
    assert version["current"]
    counted: Counter[tuple[str, str, str]] = Counter()
    for cell in version["cells"]:
        counted[cell["kind"], cell["group"], "n"] += cell["closed"]
        counted[cell["kind"], cell["group"], "responded"] += cell["responded"]
    published = outcome_counts(clean_run)
    assert +counted == +published
