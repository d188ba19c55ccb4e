"""models.backtest on small synthetic logs whose right answers are known by construction:
perfect separation, the fixed class orders (never learned from the holdout), the alert-rule
window to the second, the period checks, and the engine's BTYD inputs equal to the split's."""

from __future__ import annotations

import numpy as np
import pytest

from engine.btyd import expected_purchases_array
from engine.scoring import PopulationCuts
from engine.scoring_params import DAY, default_scoring_params
from engine.segments import (
    ABCD_NAMES,
    DEFAULT_RFM_MAP,
    LIFECYCLE_NAMES,
    QUADRANT_NAMES,
    RFM_SEGMENT_NAMES,
    TIER_NAMES,
)
from engine.state import KIND_PURCHASE, KIND_VISIT, new_events
from models.backtest import (
    ALERT_RULES,
    CLASS_ORDERS,
    FRAMEWORKS,
    Backtest,
    alert_flags,
    check_period,
    class_score,
    run_backtest,
)
from models.bundle import ModelBundle
from models.events import EventLog
from models.holdout import day_end, split_calibration_holdout

BASE = 1_577_836_800  # 2020-01-01T00:00:00Z
NOON = 12 * 3600
CAL_DAY = 400  # calibration end: day 400 after BASE (the whole day is calibration)
CAL_END = BASE + CAL_DAY * DAY
AS_OF = day_end(CAL_END)


def model(**changes: float) -> ModelBundle:
    """The engine's defaults (weeks; one-time buyers overdue after 2 x 90 days)."""
    params = default_scoring_params()._replace(**changes)
    return ModelBundle(params, DEFAULT_RFM_MAP, "test", PopulationCuts.from_params(params))


def make_log(purchases: list[tuple[str, int]], visits: list[tuple[str, int]] = ()) -> EventLog:
    """An EventLog of (customer, epoch second) purchases of 10.00 (and visits), customers
    numbered in order of first appearance in the lists."""
    ids: dict[str, int] = {}
    rows = [(c, ts, KIND_PURCHASE) for c, ts in purchases] + [(c, ts, KIND_VISIT)
                                                             for c, ts in visits]
    for c, _, _ in rows:
        ids.setdefault(c, len(ids))
    rows.sort(key=lambda r: r[1])
    events = new_events(len(rows))
    events["row"] = [ids[c] for c, _, _ in rows]
    events["ts"] = [ts for _, ts, _ in rows]
    events["kind"] = [k for _, _, k in rows]
    events["cents"] = [1000 if k == KIND_PURCHASE else 0 for _, _, k in rows]
    return EventLog(customer_ids=list(ids), event_ids=[f"e{i}" for i in range(len(rows))],
                    events=events, rows_read=len(rows))


def day(d: int, seconds: int = NOON) -> int:
    return BASE + d * DAY + seconds


def separated(buyers_come_back: bool = True) -> EventLog:
    """Ten recent frequent buyers and ten one-time buyers of long ago; only the first group
    buys in the holdout (or, inverted, only the second)."""
    purchases: list[tuple[str, int]] = []
    for i in range(10):
        purchases += [(f"a{i}", day(d)) for d in (100, 150, 200, 250, 390, 395 + i % 5)]
        purchases.append((f"b{i}", day(50)))
        purchases.append((f"a{i}" if buyers_come_back else f"b{i}", day(420 + i)))
    purchases.append(("a0" if buyers_come_back else "b0", day(480)))  # the holdout's last day
    return make_log(purchases)


def by_key(bt: Backtest) -> dict[str, object]:
    return {r.framework.key: r for r in bt.rankings}


def test_a_framework_that_separates_buyers_perfectly_gets_auc_1() -> None:
    bt = run_backtest(separated(), model(), CAL_END, recent_days=90)
    assert (bt.customers, bt.holdout_buyers, bt.base_rate) == (20, 10, 0.5)
    rankings = by_key(bt)
    for key in ("days_since_last_purchase", "bought_90d", "r_score", "f_score", "rfm_segment",
                "expected_purchases_90d", "expected_purchases_holdout", "clv"):
        r = rankings[key]
        assert r.auc == 1.0, key
        assert r.top_decile_lift == pytest.approx(2.0), key  # top 10 %: all buyers, base 1/2
        assert r.captured_20 == pytest.approx(0.4), key  # 4 of the 10 buyers
        assert r.gains[1][-1] == pytest.approx(1.0)
    # BG/NBD gives one-time buyers P(alive) = 1: it ranks every never-again buyer first
    assert rankings["p_alive"].auc == 0.0
    assert rankings["churn_risk"].auc == 0.0
    assert bt.one_time == (10, 0) and bt.one_time_p_alive == 1.0
    yes, no = rankings["bought_90d"].classes
    assert (yes.name, yes.customers, yes.buyers, yes.rate) == ("yes", 10, 10, 1.0)
    assert (no.name, no.customers, no.buyers, no.rate) == ("no", 10, 0, 0.0)
    assert no.low == 0.0 < no.high < 0.35 and 0.65 < yes.low < yes.high == pytest.approx(1.0)


def test_no_ranking_is_learned_from_the_holdout() -> None:
    """The same calibration with the holdout outcome inverted: every framework keeps its
    scores and class order, so each AUC becomes exactly 1 - AUC."""
    one = run_backtest(separated(True), model(), CAL_END)
    other = run_backtest(separated(False), model(), CAL_END)
    assert [r.framework for r in one.rankings] == [r.framework for r in other.rankings]
    for a, b in zip(one.rankings, other.rankings, strict=True):
        assert a.auc + b.auc == pytest.approx(1.0), a.framework.key
        assert [c.name for c in a.classes] == [c.name for c in b.classes]
        assert [c.customers for c in a.classes] == [c.customers for c in b.classes]


def test_the_class_orders_are_fixed_and_total() -> None:
    assert CLASS_ORDERS["value_tier"] == ("vip", "major", "normal", "small", "none")
    assert CLASS_ORDERS["abcd_class"] == ("A", "B", "C", "D", "none")
    assert CLASS_ORDERS["quadrant"] == (
        "gold", "potential_high_frequency", "potential_high_spend", "maintain", "none")
    assert CLASS_ORDERS["lifecycle"] == (
        "active", "won_back", "new", "at_risk", "lapsed", "lost", "prospect", "none")
    assert CLASS_ORDERS["rfm_segment"] == (
        "Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention",
        "About to Sleep", "Can't Lose Them", "At Risk", "Hibernating", "Lost", "none")
    for key in ("r_score", "f_score", "m_score"):
        assert CLASS_ORDERS[key] == ("5", "4", "3", "2", "1", "none")
    assert CLASS_ORDERS["bought_90d"] == ("yes", "no")
    engine_names = {"rfm_segment": RFM_SEGMENT_NAMES, "value_tier": TIER_NAMES,
                    "abcd_class": ABCD_NAMES, "quadrant": QUADRANT_NAMES,
                    "lifecycle": LIFECYCLE_NAMES}
    for key, names in engine_names.items():  # every engine class has a place
        assert sorted(CLASS_ORDERS[key]) == sorted(names), key
        scores = class_score(key, np.arange(len(names)))
        ranked = [names[i] for i in np.argsort(-scores, kind="stable")]
        assert ranked == list(CLASS_ORDERS[key]), key
    assert class_score("r_score", np.array([5, 4, 3, 2, 1, 0])).tolist() == [6, 5, 4, 3, 2, 1]
    for fw in FRAMEWORKS:
        assert fw.classes == CLASS_ORDERS.get(fw.key, ()), fw.key


def test_the_class_order_not_the_outcome_decides_the_ranking() -> None:
    """A/B/C/D as an ordinal score: A ranks first even where D did better in the holdout."""
    scores = class_score("abcd_class", np.array([1, 2, 3, 4, 0]))  # A B C D none
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)
    assert len(set(scores.tolist())) == 5


# ------------------------------------------------------------------------- alert rules

WINDOW = 30  # --recent-days in these tests


def alert_log() -> EventLog:
    """One customer per case; names say when the rules reach them (D = calibration day)."""
    start = AS_OF - WINDOW * DAY  # the window is (start, AS_OF]
    return make_log([
        ("engine_in", day(CAL_DAY - 185)),   # overdue (> 180 d) at about D - 5: engine flags
        ("engine_out", day(CAL_DAY - 250)),  # overdue at about D - 70: before the window
        ("naive_in", day(CAL_DAY - 100)),    # 90 days reached at D - 10
        ("naive_out", day(CAL_DAY - 150)),   # 90 days reached at D - 60
        ("naive_back", day(CAL_DAY - 100)),  # 90 days reached at D - 10, bought again at D - 5
        ("naive_back", day(CAL_DAY - 5)),
        ("quiet", day(CAL_DAY - 50)),        # nothing reached
        ("edge_out", start - 90 * DAY),      # 90 days reached exactly at the window's start
        ("edge_in", start - 90 * DAY + 1),   # one second later: inside
        ("engine_in", day(CAL_DAY + 10)),    # holdout purchases
        ("naive_in", day(CAL_DAY + 20)),
        ("quiet", day(CAL_DAY + 60)),        # the holdout's last day
    ])


def test_the_alert_rules_flag_exactly_inside_the_window() -> None:
    log = alert_log()
    flags = alert_flags(log, model(), AS_OF, WINDOW)
    assert set(flags) == {r.key for r in ALERT_RULES}
    flagged = {key: {log.customer_ids[i] for i in np.flatnonzero(f)} for key, f in flags.items()}
    assert flagged["silence"] == {"engine_in"}
    assert flagged["risk_rise"] == set()  # one-time buyers never get risk_rise
    assert flagged["win_back"] == {"engine_in"}
    assert flagged["naive_silence"] == {"naive_in", "naive_back", "edge_in"}
    assert flagged["naive_silent_at_end"] == {
        "engine_in", "engine_out", "naive_in", "naive_out", "edge_out", "edge_in"}


def test_a_longer_window_reaches_further_back() -> None:
    log = alert_log()
    flags = alert_flags(log, model(), AS_OF, 80)
    flagged = {key: {log.customer_ids[i] for i in np.flatnonzero(f)} for key, f in flags.items()}
    assert flagged["silence"] == {"engine_in", "engine_out"}
    assert flagged["naive_silence"] == {"naive_in", "naive_back", "edge_in", "edge_out",
                                        "naive_out"}


def test_alert_precision_and_recall() -> None:
    bt = run_backtest(alert_log(), model(), CAL_END, recent_days=WINDOW)
    result = {a.rule.key: a for a in bt.alerts}
    # 8 customers; engine_in, naive_in and quiet bought in the holdout; 5 were lost
    assert (bt.customers, bt.holdout_buyers) == (8, 3)
    naive = result["naive_silence"]
    assert (naive.flagged, naive.came_back, naive.lost, naive.lost_flagged) == (3, 1, 5, 2)
    assert naive.precision == pytest.approx(1 / 3) and naive.recall == pytest.approx(2 / 5)
    assert naive.precision_ci[0] < 1 / 3 < naive.precision_ci[1]
    silence = result["silence"]
    assert (silence.flagged, silence.came_back, silence.precision, silence.recall) == (
        1, 1, 1.0, 0.0)
    at_end = result["naive_silent_at_end"]
    assert (at_end.flagged, at_end.came_back, at_end.lost_flagged) == (6, 2, 4)


def test_risk_rise_flags_a_repeat_buyer_gone_quiet() -> None:
    """A weekly buyer who stops: churn risk crosses 0.6 as P(alive) falls, at a due time the
    timeline evaluates; within a window that covers it, the rule flags the customer."""
    purchases = [("weekly", day(CAL_DAY - 200 + 7 * k)) for k in range(10)]
    purchases += [("other", day(CAL_DAY - 10)), ("other", day(CAL_DAY + 30))]
    log = make_log(purchases)
    flags = alert_flags(log, model(), AS_OF, 200)
    assert flags["risk_rise"].tolist() == [True, False]
    assert flags["win_back"].tolist() == [True, False]
    # a week after its last purchase the customer is still in rhythm: nothing yet
    assert not alert_flags(log, model(), AS_OF - 130 * DAY, 200)["win_back"].any()


# ------------------------------------------------------------------------- checks, inputs


@pytest.mark.parametrize(
    ("cal_end", "hold_end", "message"),
    [
        (BASE - DAY, None, "is before the first event"),
        (BASE + 480 * DAY, None, "there is no holdout period"),
        (CAL_END, CAL_END + 3600, "is not on a day after the calibration end"),
        (CAL_END, BASE + 481 * DAY, "the log does not cover the holdout period"),
    ],
)
def test_periods_the_log_does_not_cover_are_one_line_errors(
    cal_end: int, hold_end: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as err:
        run_backtest(separated(), model(), cal_end, hold_end)
    assert "\n" not in str(err.value)


def test_check_period_defaults_to_the_last_event_and_accepts_its_day() -> None:
    log = separated()
    assert check_period(log, CAL_END, None) == log.last_ts
    assert check_period(log, CAL_END, BASE + 480 * DAY + DAY - 1) == BASE + 480 * DAY + DAY - 1


def test_nobody_to_judge_is_an_error() -> None:
    only_visits = make_log([("late", day(CAL_DAY + 5))], [("v", day(10)), ("v", day(CAL_DAY))])
    with pytest.raises(ValueError, match="no purchases up to the calibration end"):
        run_backtest(only_visits, model(), CAL_END)
    nobody_back = make_log([("a", day(10)), ("b", day(20)), ("new", day(CAL_DAY + 5))])
    with pytest.raises(ValueError, match="none of the 2 calibration buyers bought"):
        run_backtest(nobody_back, model(), CAL_END)
    with pytest.raises(ValueError, match="at least 1 day"):
        run_backtest(separated(), model(), CAL_END, recent_days=0)


@pytest.mark.parametrize("unit_days", [7, 1])
def test_expected_purchases_use_the_splits_btyd_inputs(unit_days: int) -> None:
    """The engine scores the split's customers with the split's x, t_x and T: the expected
    holdout purchases equal the closed form on the split's own columns (intra-day lines and
    a purchase late on the calibration day included)."""
    purchases = [(f"c{i}", day(d, s)) for i in range(6)
                 for d, s in ((10 * i, 3600), (10 * i, 80000), (100 + i, 0), (CAL_DAY, 86000))]
    purchases += [("c1", day(CAL_DAY + 40)), ("c2", day(CAL_DAY + 41)), ("n", day(CAL_DAY + 50))]
    log = make_log(purchases)
    m = model(unit_seconds=unit_days * DAY)
    bt = run_backtest(log, m, CAL_END)
    split = split_calibration_holdout(log, CAL_END, log.last_ts, unit_seconds=unit_days * DAY)
    P = m.scoring
    expected = expected_purchases_array(split.duration_holdout, split.frequency_cal,
                                        split.recency_cal, split.T_cal, P.r, P.alpha, P.a, P.b)
    assert bt.purchases.expected_total == pytest.approx(expected.sum(), rel=1e-12)
    assert bt.purchases.actual_total == 2.0
    assert bt.purchases.duration == pytest.approx(50 / unit_days)
    assert [b.customers for b in bt.purchases.buckets] == [6]  # x = 2 for everyone
    assert bt.new_in_holdout == 1
    assert bt.purchases.time_unit == ("weeks" if unit_days == 7 else "days")


def test_the_customers_order_in_the_log_does_not_matter() -> None:
    log = alert_log()
    order = np.arange(len(log.customer_ids))[::-1]  # renumber the customers backwards
    renumbered = log.events.copy()
    renumbered["row"] = order[log.events["row"]]
    ids = [log.customer_ids[i] for i in np.argsort(order)]
    flipped = EventLog(ids, log.event_ids, renumbered, log.rows_read)
    one = run_backtest(log, model(), CAL_END, recent_days=WINDOW)
    two = run_backtest(flipped, model(), CAL_END, recent_days=WINDOW)
    assert [r.auc for r in one.rankings] == [r.auc for r in two.rankings]
    assert [r.classes for r in one.rankings] == [r.classes for r in two.rankings]
    assert repr(one.alerts) == repr(two.alerts)  # repr: NaN (nobody flagged) equals NaN
    assert one.spend.by_clv == two.spend.by_clv
