"""Calibration / holdout split of an event log: the BTYD summary of each customer before a
calibration end, and what the customer actually did in the holdout period after it.

Definitions (whole UTC days, ``day = ts // 86400``, as custscore's purchase days, docs/scoring.md
§2 and §3.3, and lifetimes' ``freq="D"``):

- a *purchase* is an event of kind purchase with amount > 0; a *purchase day* is a distinct UTC
  day with at least one purchase; a *refund* is a purchase event with amount < 0;
- the calibration period is every day up to and including the day of ``calibration_end``
  (``cal_day``); the holdout period is the days after ``cal_day`` up to and including the day
  of ``holdout_end`` (``hold_day``). Any second of a day stands for the whole day: an event at
  23:00 on ``cal_day`` is calibration, whatever second ``calibration_end`` names;
- the customers are the calibration buyers: at least one purchase day <= ``cal_day``. A customer
  whose first purchase is in the holdout is absent, as in lifetimes;
- with ``unit_days = unit_seconds / 86400`` (lifetimes' ``freq_multiplier``):
  ``frequency_cal`` = calibration purchase days - 1; ``recency_cal`` = (last - first purchase
  day) / unit_days; ``T_cal`` = (cal_day - first purchase day) / unit_days;
  ``duration_holdout`` = (hold_day - cal_day) / unit_days;
- ``monetary_value_cal`` = max(calibration purchases - first-day purchases - calibration
  refunds, 0) / frequency_cal in currency units, 0 when frequency_cal = 0: the mean spend of
  the repeat purchase days, net of refunds, exactly the engine's m̄ (docs/scoring.md §3.3);
- ``frequency_holdout`` = holdout purchase days; ``spend_holdout`` = holdout purchases -
  holdout refunds (may be negative); ``monetary_value_holdout`` = max(spend_holdout, 0) /
  frequency_holdout, 0 when frequency_holdout = 0; ``bought_holdout`` = frequency_holdout >= 1.

To score the same customers with the engine, fold ``log.events[calibration_mask(log,
calibration_end)]`` and evaluate at ``day_end(calibration_end)``: every split customer is then a
buyer whose engine x, t_x, T and m̄ are the split's (tests/models/test_holdout.py). Folding
``ts <= calibration_end`` with a ``calibration_end`` before the end of its day would miss the
rest of that day, which the split counts as calibration.

Source: lifetimes 0.11.3 ``utils.calibration_and_holdout_data(transactions, "customer_id",
"date", calibration_period_end, observation_period_end, freq="D", freq_multiplier=unit_days,
monetary_value_col="amount")``. On the purchase lines (amount > 0) summed per customer and day,
with the two ends at the last second of their days, every column above equals lifetimes' for
every customer (tests/models/test_holdout.py, CDNOW). Differences from lifetimes on a raw log:

- amounts of 0 are not purchases (lifetimes counts every row as a transaction);
- refunds are not purchases and are netted out of the spends (lifetimes has no refunds);
- ``monetary_value_holdout`` is the mean spend per holdout purchase *day*; lifetimes takes the
  mean per holdout *row*, so it differs for a customer with several lines on one holdout day
  (464 of the 23,500 CDNOW customers; its ``monetary_value_cal`` is per day, as here);
- lifetimes compares raw timestamps with ``calibration_period_end``: given a midnight it puts a
  line at noon on that day in the holdout; here the whole day is calibration;
- an empty holdout is a result (nobody bought), not an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.state import KIND_PURCHASE
from models.events import EventLog

__all__ = ["DAY", "HoldoutSplit", "calibration_mask", "day_end", "split_calibration_holdout"]

DAY = 86_400
_DAY_BITS = 20  # days since 1970 fit in 20 bits until 4840; (row << 20) | day is a unique key


@dataclass(frozen=True)
class HoldoutSplit:
    """Per calibration buyer, in EventLog row order (see the module docstring)."""

    customer_ids: list[str]  # calibration buyers, in EventLog row order
    rows: npt.NDArray[np.int64]  # their rows in the EventLog (log.customer_ids index)
    frequency_cal: npt.NDArray[np.float64]  # repeat purchase days in the calibration period
    recency_cal: npt.NDArray[np.float64]  # last - first purchase day, in `unit`
    T_cal: npt.NDArray[np.float64]  # calibration end day - first purchase day, in `unit`
    monetary_value_cal: npt.NDArray[np.float64]  # mean net spend of the repeat purchase days
    frequency_holdout: npt.NDArray[np.float64]  # distinct purchase days in the holdout
    monetary_value_holdout: npt.NDArray[np.float64]  # net holdout spend per holdout purchase day
    spend_holdout: npt.NDArray[np.float64]  # total net spend in the holdout
    bought_holdout: npt.NDArray[np.bool_]  # at least one purchase day in the holdout
    duration_holdout: float  # holdout length in `unit`
    calibration_end: int  # epoch s, as given
    holdout_end: int  # epoch s, as given

    def __len__(self) -> int:
        return len(self.customer_ids)


def day_end(ts: int) -> int:
    """The last second (epoch s) of the UTC day of ``ts``: a clock that has seen the whole day."""
    return (ts // DAY) * DAY + DAY - 1


def calibration_mask(log: EventLog, calibration_end: int) -> npt.NDArray[np.bool_]:
    """Which of ``log.events`` (any kind) fall in the calibration period: day <= cal_day."""
    mask: npt.NDArray[np.bool_] = log.events["ts"] // DAY <= calibration_end // DAY
    return mask


def _sum_by(
    index: npt.NDArray[np.int64], weights: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.float64]:
    """Sum of integer ``weights`` per ``index`` (exact below 2**53 cents)."""
    sums = np.bincount(index, weights=weights.astype(np.float64), minlength=n)
    return sums.astype(np.float64, copy=False)


def _purchase_days(
    row: npt.NDArray[np.int64], day: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The distinct (row, day) pairs, sorted by row then day, as two arrays."""
    keys = np.unique((row << _DAY_BITS) | day)
    return keys >> _DAY_BITS, keys & ((1 << _DAY_BITS) - 1)


def split_calibration_holdout(
    log: EventLog, calibration_end: int, holdout_end: int, *, unit_seconds: float = DAY
) -> HoldoutSplit:
    """Summarise ``log`` over [.., day of calibration_end] and (that day, day of holdout_end].

    Raises ValueError when the holdout has no day (holdout_end's day <= calibration_end's day)
    or unit_seconds is not positive. No calibration buyer gives an empty split.
    """
    cal_day, hold_day = calibration_end // DAY, holdout_end // DAY
    if hold_day <= cal_day:
        raise ValueError("the holdout end must fall on a UTC day after the calibration end")
    if not unit_seconds > 0:  # NaN too
        raise ValueError(f"unit_seconds must be positive, got {unit_seconds}")
    unit_days = unit_seconds / DAY
    n = len(log.customer_ids)
    ev = log.events
    row = ev["row"].astype(np.int64)
    day = ev["ts"].astype(np.int64) // DAY
    cents = ev["cents"].astype(np.int64)
    is_purchase = ev["kind"] == KIND_PURCHASE
    buy, refund = is_purchase & (cents > 0), is_purchase & (cents < 0)
    in_cal, in_hold = day <= cal_day, (day > cal_day) & (day <= hold_day)

    # calibration: purchase days, first / last day, first-day spend
    c_row, c_day = _purchase_days(row[buy & in_cal], day[buy & in_cal])
    days_cal = np.bincount(c_row, minlength=n)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, c_row, c_day)
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, c_row, c_day)
    sel = buy & in_cal
    gross_cal = _sum_by(row[sel], cents[sel], n)
    on_first = sel & (day == first[row])
    first_day_cal = _sum_by(row[on_first], cents[on_first], n)
    sel = refund & in_cal
    refunds_cal = -_sum_by(row[sel], cents[sel], n)

    # holdout: purchase days and net spend
    h_row, _ = _purchase_days(row[buy & in_hold], day[buy & in_hold])
    days_hold = np.bincount(h_row, minlength=n)
    sel = (buy | refund) & in_hold
    spend_hold = _sum_by(row[sel], cents[sel], n) / 100.0

    rows = np.flatnonzero(days_cal >= 1).astype(np.int64)
    x = (days_cal[rows] - 1).astype(np.float64)
    repeat = np.maximum(gross_cal[rows] - first_day_cal[rows] - refunds_cal[rows], 0.0) / 100.0
    x_hold = days_hold[rows].astype(np.float64)
    spend = spend_hold[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        m_cal = np.where(x > 0, repeat / x, 0.0)
        m_hold = np.where(x_hold > 0, np.maximum(spend, 0.0) / x_hold, 0.0)
    return HoldoutSplit(
        customer_ids=[log.customer_ids[i] for i in rows],
        rows=rows,
        frequency_cal=x,
        recency_cal=(last[rows] - first[rows]) / unit_days,
        T_cal=(cal_day - first[rows]) / unit_days,
        monetary_value_cal=m_cal,
        frequency_holdout=x_hold,
        monetary_value_holdout=m_hold,
        spend_holdout=spend,
        bought_holdout=x_hold >= 1,
        duration_holdout=(hold_day - cal_day) / unit_days,
        calibration_end=int(calibration_end),
        holdout_end=int(holdout_end),
    )
