"""The KPI and marketing-loop lines of the ``custscore demo`` summary, on hand-made /stats
and counters whose numbers are worked out here by hand."""

from __future__ import annotations

from custscore.commands.demo import kpi_lines, marketing_lines
from models.uplift import outcome_table

V = "0123456789ab"
OLD = "ba9876543210"


def test_kpi_lines() -> None:
    stats = {
        "second_purchase_rate": 0.25,
        "pareto_top_share": 0.2,
        "pareto_share": 0.6123,
        "monthly": [
            {"month": f"1998-0{m}", "new": m, "returning": 10 * m, "lost": 1000 + m}
            for m in range(1, 7)
        ],
        "complaint_rate": 0.0125,
        "complaints_per_100_purchase_days": 1.5,
        "repurchase_after_complaint": 0.5,
        "complaint_buyers": 8,
        "complaints_by_category": {"delivery": 3, "billing": 1},
        "quadrants": {"maintain": 5, "gold": 2},
        "abcd_classes": {"D": 9, "A": 1},
    }
    lines = kpi_lines(stats)
    assert lines[0] == (
        "  second-purchase rate 25.0% of buyers; Pareto share: the top 20% of customers hold "
        "61.2% of trailing-window spend"
    )
    assert lines[1] == (
        "  customers by month  1998-04 new 4, returning 40, lost 1,004 | 1998-05 new 5, "
        "returning 50, lost 1,005 | 1998-06 new 6, returning 60, lost 1,006"
    )
    assert lines[2] == (
        "  complaints    rate 1.25% of customers, 1.50 per 100 purchase days, repurchase after "
        "a complaint 50.0% (of 8 buyers); by category: billing 1, delivery 3"
    )
    assert lines[3] == "  quadrants     gold 2, maintain 5"
    assert lines[4] == "  A/B/C/D       A 1, D 9"


def test_kpi_lines_before_any_data() -> None:
    lines = kpi_lines({"pareto_top_share": 0.2})
    assert lines[0].startswith("  second-purchase rate n/a of buyers")
    assert "by category: none" in lines[1]


def _cell(kind: str, reason: str, group: str, version: str = V) -> str:
    return f"{kind}|{reason}|offer|normal|{group}|{version}"


def test_marketing_lines() -> None:
    counters = {
        f"contact|{_cell('nudge', 'repurchase', 'treated')}": 90,
        f"contact|{_cell('nudge', 'repurchase', 'holdout')}": 10,
        f"outcome|{_cell('nudge', 'repurchase', 'treated')}|n": 80,
        f"outcome|{_cell('nudge', 'repurchase', 'treated')}|responded": 20,
        f"outcome|{_cell('nudge', 'repurchase', 'holdout')}|n": 10,
        f"outcome|{_cell('nudge', 'repurchase', 'holdout')}|responded": 1,
        f"contact|{_cell('win_back', 'silence', 'treated')}": 5,
        f"contact|{_cell('win_back', 'silence', 'treated', OLD)}": 1000,  # another version
        "suppressed|nudge|repurchase": 7,
        "suppressed|win_back|silence": 3,
        "complaint|delivery": 4,
    }
    lines = marketing_lines(outcome_table(counters), V, 0.1)
    assert lines[0] == "  contacts sent   nudge 90 (+10 held out), win_back 5 (+0 held out)"
    assert lines[1] == "  suppressed by the contact budget 10 (nudge 7, win_back 3)"
    # 10 held-out contacts of 105 made
    assert lines[2] == (
        "  holdout share   10.0% of customers (holdout_fraction), 9.5% of contacts made "
        f"(version {V})"
    )
    # nudge: treated 20/80 = 25 %, holdout 1/10 = 10 %: uplift +15 pp
    assert lines[3].startswith(
        "  response rate   nudge: treated 25.0% of 80 closed, holdout 10.0% of 10 closed; "
        "uplift +15.0 pp (95 % "
    )
    assert lines[4] == (
        "  response rate   win_back: treated n/a of 0 closed, holdout n/a of 0 closed; uplift n/a"
    )


def test_marketing_lines_without_contacts() -> None:
    lines = marketing_lines(outcome_table({}), V, 0.0)
    assert lines == [
        "  contacts sent   none",
        "  suppressed by the contact budget 0",
        "  holdout share   0.0% of customers (holdout_fraction), n/a of contacts made "
        f"(version {V})",
        "  no contacts of the current holdout version counted yet",
    ]
