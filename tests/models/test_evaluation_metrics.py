"""models.evaluation_metrics against independent oracles: scikit-learn, scipy, published
values, plain-Python references written from the definitions, and lifetimes' calibration plot
on CDNOW."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, spearmanr
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from engine.btyd import expected_purchases_array
from models.evaluation_metrics import (
    CalibrationBucket,
    calibration_buckets,
    capture_shares,
    error_summary,
    gains_curve,
    precision_recall,
    rank_correlation,
    roc_auc,
    top_share_lift,
    wilson_interval,
)
from models.holdout import DAY, HoldoutSplit, split_calibration_holdout
from models.params_file import default_params

matplotlib.use("Agg")

# scores with many ties (small integers) or none, and a binary outcome of the same length
scored = st.integers(min_value=2, max_value=60).flatmap(
    lambda n: st.tuples(
        st.one_of(
            st.lists(st.integers(0, 4), min_size=n, max_size=n),
            st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n, unique=True),
        ),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)
small = st.integers(min_value=1, max_value=6).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(-5, 20), min_size=n, max_size=n),
    )
)


# --- plain-Python references from the definitions ------------------------------------------------


def auc_by_pairs(score: list[float], outcome: list[bool]) -> float:
    """P(score of a positive > score of a negative) + 1/2 P(equal), over all pairs."""
    pos = [s for s, y in zip(score, outcome, strict=True) if y]
    neg = [s for s, y in zip(score, outcome, strict=True) if not y]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def top_sum_over_tie_orders(score: list[int], weight: list[float], share: float) -> float:
    """Mean, over every descending order of ``score`` (each order of tied customers equally
    likely), of the weight of the first share * n customers (a fractional customer counting
    by its fraction)."""
    n = len(score)
    cut = share * n
    k = math.floor(cut)
    frac = cut - k
    totals = []
    for order in itertools.permutations(range(n)):
        if any(score[order[i]] < score[order[i + 1]] for i in range(n - 1)):
            continue
        top = sum(weight[j] for j in order[:k])
        if frac:
            top += frac * weight[order[k]]
        totals.append(top)
    return sum(totals) / len(totals)


# --- ROC AUC --------------------------------------------------------------------------------------


def test_auc_known_values() -> None:
    assert roc_auc([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.9, 0.8, 0.3, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5  # all tied
    # Hanley & McNeil's form: one tie between classes counts 1/2
    assert roc_auc([3, 2, 2, 1], [True, True, False, False]) == pytest.approx(0.875)
    assert math.isnan(roc_auc([1, 2, 3], [0, 0, 0]))
    assert math.isnan(roc_auc([], []))


@settings(max_examples=80, deadline=None)
@given(scored)
def test_auc_equals_sklearn_and_pairs(case: tuple[list[float], list[bool]]) -> None:
    score, outcome = case
    if len(set(outcome)) < 2:
        assert math.isnan(roc_auc(score, outcome))
        return
    ours = roc_auc(score, outcome)
    assert ours == pytest.approx(roc_auc_score(outcome, score), abs=1e-12)
    assert ours == pytest.approx(auc_by_pairs(score, outcome), abs=1e-12)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="lengths"):
        top_share_lift([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="share"):
        top_share_lift([0.1, 0.2], [0, 1], share=0.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


# --- gains, lift, capture shares ------------------------------------------------------------------


def test_gains_and_lift_without_ties_by_sorting() -> None:
    """1,000 distinct scores: the curve at k/n is the positives among the k best, over all."""
    rng = np.random.default_rng(7)
    score = rng.permutation(1000).astype(float)
    outcome = rng.random(1000) < 0.05 + 0.3 * score / 1000
    contacted, captured = gains_curve(score, outcome, points=11)
    ranked = outcome[np.argsort(-score)]
    by_sorting = [ranked[: round(x * 1000)].sum() / outcome.sum() for x in contacted]
    np.testing.assert_allclose(contacted, np.linspace(0, 1, 11))
    np.testing.assert_allclose(captured, by_sorting, atol=1e-12)
    rate_top = ranked[:100].mean()
    assert top_share_lift(score, outcome, 0.1) == pytest.approx(rate_top / outcome.mean())


@settings(max_examples=60, deadline=None)
@given(small)
def test_gains_lift_and_capture_equal_the_mean_over_tie_orders(
    case: tuple[list[int], list[int]],
) -> None:
    score, value = case
    outcome = [v > 6 for v in value]
    contacted, captured = gains_curve(score, outcome, points=13)
    positives = sum(outcome)
    for x, y in zip(contacted, captured, strict=True):
        if positives == 0:
            assert math.isnan(y)
        else:
            ref = top_sum_over_tie_orders(score, [float(o) for o in outcome], x) / positives
            assert y == pytest.approx(ref, abs=1e-12)
    for share in (0.25, 0.5, 1.0):
        lift = top_share_lift(score, outcome, share)
        if positives:
            top = top_sum_over_tie_orders(score, [float(o) for o in outcome], share)
            ref = (top / (share * len(score))) / (positives / len(score))
            assert lift == pytest.approx(ref, abs=1e-12)
    total = sum(value)
    shares = capture_shares(score, value, (0.2, 0.5, 0.9))
    for share, held in shares.items():
        if total == 0:
            assert math.isnan(held)
        else:
            ref = top_sum_over_tie_orders(score, [float(v) for v in value], share) / total
            assert held == pytest.approx(ref, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(scored, st.randoms(use_true_random=False))
def test_no_figure_depends_on_row_order(case: tuple[list[float], list[bool]], rnd: Any) -> None:
    score, outcome = case
    order = list(range(len(score)))
    rnd.shuffle(order)
    s2, o2 = [score[i] for i in order], [outcome[i] for i in order]
    np.testing.assert_allclose(gains_curve(score, outcome)[1], gains_curve(s2, o2)[1], atol=1e-12)
    a, b = top_share_lift(score, outcome, 0.3), top_share_lift(s2, o2, 0.3)
    assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)
    value = [float(i % 7) for i in range(len(score))]
    v2 = [value[i] for i in order]
    for share, held in capture_shares(score, value).items():
        assert held == pytest.approx(capture_shares(s2, v2)[share], abs=1e-12)


def test_capture_shares_value_pyramid_without_ties() -> None:
    """100 customers with spends 1..100 ranked by spend: the top 1 % holds 100 / 5050."""
    spend = np.arange(1, 101, dtype=float)
    shares = capture_shares(spend, spend)
    assert shares == pytest.approx(
        {0.01: 100 / 5050, 0.05: sum(range(96, 101)) / 5050, 0.20: sum(range(81, 101)) / 5050}
    )
    assert capture_shares(-spend, spend)[0.01] == pytest.approx(1 / 5050)  # worst first
    assert math.isnan(capture_shares(spend, np.zeros(100))[0.2])


# --- Wilson interval ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (Wilson score)
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0000),
    ],
)
def test_wilson_published_values(k: int, n: int, low: float, high: float) -> None:
    ours = wilson_interval(k, n)
    assert ours == pytest.approx((low, high), abs=5e-5)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 100_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_equals_scipy(case: tuple[int, int]) -> None:
    k, n = case
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), rel=1e-7, abs=1e-12)


def test_wilson_empty_is_nan() -> None:
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


# --- rank correlation, precision / recall, error summary ----------------------------------------


@settings(max_examples=80, deadline=None)
@given(scored)
def test_rank_correlation_equals_scipy_spearman(case: tuple[list[float], list[bool]]) -> None:
    a, flags = case
    b = [x * (2 if f else -1) + (i % 3) for i, (x, f) in enumerate(zip(a, flags, strict=True))]
    ours = rank_correlation(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a constant input, then returns NaN
        theirs = spearmanr(a, b).statistic
    if np.isnan(theirs):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(theirs, abs=1e-12)


def test_rank_correlation_textbook_formula_without_ties() -> None:
    a, b = [1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]
    d2 = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    assert rank_correlation(a, b) == pytest.approx(1 - 6 * d2 / (6 * (36 - 1)))
    assert math.isnan(rank_correlation([1, 1, 1], [1, 2, 3]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=50))
def test_precision_recall_equal_sklearn(pairs: list[tuple[bool, bool]]) -> None:
    flagged, positive = [f for f, _ in pairs], [p for _, p in pairs]
    precision, recall, n_flagged = precision_recall(flagged, positive)
    assert n_flagged == sum(flagged)
    for ours, theirs in (
        (precision, precision_score(positive, flagged, zero_division=np.nan)),
        (recall, recall_score(positive, flagged, zero_division=np.nan)),
    ):
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == pytest.approx(theirs)


def test_error_summary_by_hand() -> None:
    got = error_summary([1.0, 2.0, 3.0], [1.0, 1.0, 5.0])
    assert got == pytest.approx(
        {
            "customers": 3.0,
            "mae": 1.0,
            "rmse": math.sqrt(5 / 3),
            "expected_total": 6.0,
            "actual_total": 7.0,
            "bias": -1 / 7,
        }
    )
    assert math.isnan(error_summary([1.0], [0.0])["bias"])


def test_calibration_buckets_by_hand() -> None:
    got = calibration_buckets([2, 0, 0, 5, 2, 9], [1, 2, 3, 4, 5, 6], [0, 0, 1, 1, 2, 3], n=3)
    assert got == [
        CalibrationBucket(0, 2, 2.5, 0.5),
        CalibrationBucket(2, 2, 3.0, 1.0),
        CalibrationBucket(5, 1, 4.0, 1.0),
    ]


# --- the calibration plot on CDNOW, against lifetimes ---------------------------------------------


def bgnbd_in(unit_seconds: float) -> tuple[float, float, float, float]:
    """custscore's built-in CDNOW BG/NBD parameters converted to ``unit_seconds``: alpha is a
    rate (lambda per unit ~ Gamma(r, rate alpha): lambda / 7 per day ~ Gamma(r, 7 alpha)); r, a
    and b have no unit."""
    p = default_params().scoring
    return p.r, p.alpha * p.unit_seconds / unit_seconds, p.a, p.b


def lifetimes_calibration_plot(frame: pd.DataFrame, n: int = 7) -> pd.DataFrame:
    """The two lines lifetimes draws, read off the axes, by calibration frequency."""
    import matplotlib.pyplot as plt
    from lifetimes import BetaGeoFitter
    from lifetimes.plotting import plot_calibration_purchases_vs_holdout_purchases

    r, alpha, a, b = bgnbd_in(DAY)
    model = BetaGeoFitter()
    model.params_ = pd.Series({"r": r, "alpha": alpha, "a": a, "b": b})
    ax = plot_calibration_purchases_vs_holdout_purchases(model, frame, kind="frequency_cal", n=n)
    lines = {line.get_label(): line for line in ax.get_lines()}
    out = pd.DataFrame(
        {
            "actual": lines["frequency_holdout"].get_ydata(),
            "expected": lines["model_predictions"].get_ydata(),
        },
        index=lines["frequency_holdout"].get_xdata(),
    )
    plt.close("all")
    return out


def test_cdnow_calibration_buckets_equal_lifetimes_plot(cdnow_holdout: dict[str, Any]) -> None:
    """Fed by engine.btyd on our split, the buckets are the lines of lifetimes' calibration plot
    on its own split, with the built-in parameters in days (no fitting)."""
    split: HoldoutSplit = cdnow_holdout["split"]
    theirs = lifetimes_calibration_plot(cdnow_holdout["lifetimes"])
    r, alpha, a, b = bgnbd_in(DAY)
    expected = expected_purchases_array(
        split.duration_holdout, split.frequency_cal, split.recency_cal, split.T_cal, r, alpha, a, b
    )
    ours = calibration_buckets(split.frequency_cal, expected, split.frequency_holdout, n=7)
    assert [bucket.frequency_cal for bucket in ours] == list(range(7)) == list(theirs.index)
    np.testing.assert_allclose([bk.actual for bk in ours], theirs["actual"], rtol=1e-12)
    np.testing.assert_allclose([bk.expected for bk in ours], theirs["expected"], rtol=1e-9)
    sizes = cdnow_holdout["lifetimes"].groupby("frequency_cal").size().iloc[:7]
    assert [bk.customers for bk in ours] == sizes.tolist()
    # the figures, for the record: close at x = 0, BG/NBD under-predicts the one-repeat buyers
    assert ours[0].customers == 14_051 and ours[0].actual == pytest.approx(0.2516, abs=5e-5)
    assert ours[0].expected == pytest.approx(0.2471, abs=5e-5)
    assert ours[1].customers == 4_441 and ours[1].actual == pytest.approx(0.7838, abs=5e-5)
    assert ours[1].expected == pytest.approx(0.6477, abs=5e-5)
    assert ours[6].customers == 272 and ours[6].actual == pytest.approx(3.7978, abs=5e-5)
    assert ours[6].expected == pytest.approx(4.0511, abs=5e-5)

    # the same numbers in weeks, the built-in model's own unit
    in_weeks = split_calibration_holdout(
        cdnow_holdout["log"], split.calibration_end, split.holdout_end, unit_seconds=7 * DAY
    )
    expected_w = expected_purchases_array(
        in_weeks.duration_holdout,
        in_weeks.frequency_cal,
        in_weeks.recency_cal,
        in_weeks.T_cal,
        *bgnbd_in(7 * DAY),
    )
    np.testing.assert_allclose(expected_w, expected, rtol=1e-9)


def test_cdnow_error_summary_equals_pandas_on_lifetimes_numbers(
    cdnow_holdout: dict[str, Any],
) -> None:
    """MAE and aggregate bias of lifetimes' own conditional expectations against its holdout
    counts, computed with pandas, equal error_summary on our split fed by engine.btyd."""
    from lifetimes import BetaGeoFitter

    frame: pd.DataFrame = cdnow_holdout["lifetimes"]
    r, alpha, a, b = bgnbd_in(DAY)
    model = BetaGeoFitter()
    model.params_ = pd.Series({"r": r, "alpha": alpha, "a": a, "b": b})
    predicted = model.conditional_expected_number_of_purchases_up_to_time(
        frame["duration_holdout"], frame["frequency_cal"], frame["recency_cal"], frame["T_cal"]
    )
    error = predicted - frame["frequency_holdout"]
    split: HoldoutSplit = cdnow_holdout["split"]
    expected = expected_purchases_array(
        split.duration_holdout, split.frequency_cal, split.recency_cal, split.T_cal, r, alpha, a, b
    )
    ours = error_summary(expected, split.frequency_holdout)
    assert ours["customers"] == len(frame) == 23_500
    assert ours["mae"] == pytest.approx(error.abs().mean(), rel=1e-9)
    assert ours["rmse"] == pytest.approx(math.sqrt((error**2).mean()), rel=1e-9)
    assert ours["actual_total"] == frame["frequency_holdout"].sum() == 19_674
    assert ours["bias"] == pytest.approx(error.sum() / frame["frequency_holdout"].sum(), rel=1e-9)
    assert ours["mae"] == pytest.approx(0.8501, abs=5e-5)
    assert ours["bias"] == pytest.approx(-0.0133, abs=5e-5)  # 1.3 % fewer than happened
