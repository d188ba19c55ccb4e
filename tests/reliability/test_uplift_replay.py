"""A replay invents no uplift (docs/outcomes.md; issue 15).

The clean CDNOW run (tests/reliability/conftest.py: a seeded subset replayed through one
worker, half the customers held out) contacts nobody for real: treated and held-out customers
only differ in the topic their contacts are recorded on. Their response rates must therefore
agree within the uplift interval; an interval that excludes 0 would mean the machinery, not a
campaign, made a difference (a group-dependent rule, a leak of group into scoring, or
outcomes counted differently per group).

The rates are taken from the outcome messages on the topic and the interval from statsmodels
(an independent implementation of Newcombe's interval); the worker's own Redis counters, read
by ``custscore outcomes --json``, must count exactly the same outcomes.
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
    from statsmodels.stats.proportion import confint_proportions_2indep

    counts = outcome_counts(clean_run)
    n = {
        g: sum(v for (_, group, s), v in counts.items() if group == g and s == "n")
        for g in ("treated", "holdout")
    }
    hit = {
        g: sum(v for (_, group, s), v in counts.items() if group == g and s == "responded")
        for g in ("treated", "holdout")
    }
    print(f"\nreplay outcomes: {dict(sorted(counts.items()))}")
    assert n["treated"] >= 200 and n["holdout"] >= 200, n
    low, high = confint_proportions_2indep(
        hit["treated"], n["treated"], hit["holdout"], n["holdout"], method="newcomb", compare="diff"
    )
    rates = {g: hit[g] / n[g] for g in n}
    print(f"response rates {rates}, uplift interval [{low:.4f}, {high:.4f}]")
    assert low <= 0.0 <= high, (rates, low, high)


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
