"""models.holdout against lifetimes' calibration_and_holdout_data (CDNOW, every customer; a
random intra-day log) and hand-computed edge cases (day boundaries, same-day lines, refunds)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from holdout_support import CAL_END, HOLD_END, cdnow_frames, epoch, lifetimes_split

from models.events import EventLog, read_event_csv
from models.holdout import (
    DAY,
    HoldoutSplit,
    calibration_mask,
    day_end,
    split_calibration_holdout,
)

COLUMNS = (
    "frequency_cal",
    "recency_cal",
    "T_cal",
    "monetary_value_cal",
    "frequency_holdout",
    "monetary_value_holdout",
)


def as_frame(split: HoldoutSplit) -> pd.DataFrame:
    frame = pd.DataFrame({c: getattr(split, c) for c in COLUMNS}, index=split.customer_ids)
    frame["duration_holdout"] = split.duration_holdout
    return frame


def assert_equal_to_lifetimes(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert sorted(ours.index) == sorted(theirs.index)
    theirs = theirs.loc[ours.index]
    for column in (
        "frequency_cal",
        "recency_cal",
        "T_cal",
        "frequency_holdout",
        "duration_holdout",
    ):
        np.testing.assert_array_equal(ours[column], theirs[column], err_msg=column)
    for column in ("monetary_value_cal", "monetary_value_holdout"):
        np.testing.assert_allclose(
            ours[column], theirs[column], rtol=1e-12, atol=1e-12, err_msg=column
        )


def write_events(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """Event CSV of (type, customer_id, ts ISO without offset (UTC), amount) rows."""
    lines = ["event_id,type,customer_id,ts,amount,severity"]
    for i, (kind, customer, ts, amount) in enumerate(rows):
        severity = "3" if kind == "complaint" else ""
        lines.append(f"e{i},{kind},{customer},{ts}+00:00,{amount},{severity}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- CDNOW master log, every customer -----------------------------------------------------------


@pytest.fixture
def cdnow(cdnow_holdout: dict[str, Any]) -> dict[str, Any]:
    return cdnow_holdout


def test_cdnow_split_equals_lifetimes_for_every_customer(cdnow: dict[str, Any]) -> None:
    """On the purchase lines summed per customer and day, every column of every customer is
    lifetimes' (x, t_x, T, holdout days and duration exactly; spends to 1e-12)."""
    split: HoldoutSplit = cdnow["split"]
    assert len(split) == len(cdnow["lifetimes"]) == 23_500
    assert split.duration_holdout == 273.0
    assert_equal_to_lifetimes(as_frame(split), cdnow["lifetimes"])


def test_cdnow_holdout_outcomes_from_the_raw_lines(cdnow: dict[str, Any]) -> None:
    """spend_holdout is the plain sum of each customer's holdout amounts; bought_holdout is
    frequency_holdout >= 1; the customers are the log's rows of their ids, in row order."""
    split: HoldoutSplit = cdnow["split"]
    tx = cdnow["tx"]
    holdout = tx[(tx["date"] > CAL_END) & (tx["date"] <= HOLD_END)]
    spend = holdout.groupby("customer_id")["amount"].sum().reindex(split.customer_ids).fillna(0)
    np.testing.assert_allclose(split.spend_holdout, spend.to_numpy(), rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(split.bought_holdout, split.frequency_holdout >= 1)
    assert int(split.bought_holdout.sum()) == 7_056
    assert split.frequency_holdout.sum() == 19_674
    assert [cdnow["log"].customer_ids[i] for i in split.rows] == split.customer_ids
    assert np.all(np.diff(split.rows) > 0)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The CDNOW 1/10th sample (2,357 customers): where a second lifetimes run is enough."""
    frames = cdnow_frames(True, tmp_path_factory.mktemp("cdnow_sample"))
    frames["split"] = split_calibration_holdout(frames["log"], epoch(CAL_END), epoch(HOLD_END))
    return frames


def test_cdnow_sample_split_in_weeks_equals_lifetimes_freq_multiplier_7(
    sample: dict[str, Any],
) -> None:
    """unit_seconds = 1 week is lifetimes' freq "D" with freq_multiplier 7."""
    split = split_calibration_holdout(
        sample["log"], epoch(CAL_END), epoch(HOLD_END), unit_seconds=7 * DAY
    )
    theirs = lifetimes_split(sample["tx"], CAL_END, HOLD_END, per_day=True, unit_days=7)
    assert len(split) == len(theirs) > 2_000
    assert_equal_to_lifetimes(as_frame(split), theirs)
    assert split.duration_holdout == 39.0


def test_cdnow_sample_raw_lines_differ_only_in_holdout_spend_of_multi_line_days(
    sample: dict[str, Any],
) -> None:
    """On the raw purchase lines lifetimes' monetary_value_holdout is a mean per line; ours is
    per purchase day. Every other column is equal, and that one differs exactly for the
    customers with several lines on one holdout day."""
    split: HoldoutSplit = sample["split"]
    ours = as_frame(split)
    raw = lifetimes_split(sample["tx"], CAL_END, HOLD_END, per_day=False).loc[ours.index]
    for column in ("frequency_cal", "recency_cal", "T_cal", "frequency_holdout"):
        np.testing.assert_array_equal(ours[column], raw[column], err_msg=column)
    np.testing.assert_allclose(ours["monetary_value_cal"], raw["monetary_value_cal"], rtol=1e-12)
    tx = sample["tx"]
    holdout = tx[(tx["amount"] > 0) & (tx["date"] > CAL_END) & (tx["date"] <= HOLD_END)]
    lines_per_day = holdout.groupby(["customer_id", "date"]).size()
    multi = set(lines_per_day[lines_per_day > 1].index.get_level_values(0))
    differs = ~np.isclose(
        ours["monetary_value_holdout"], raw["monetary_value_holdout"], rtol=1e-12, atol=0
    )
    assert set(ours.index[differs]) == multi & set(ours.index)
    assert differs.sum() == 49  # of 2,357 customers (464 of 23,570 in the master log)


# --- a random log with times inside the day -----------------------------------------------------


def test_random_intraday_log_equals_lifetimes_with_ends_at_the_last_second(
    tmp_path: Path,
) -> None:
    """Lines at any second, several per day, visits in between: lifetimes given the ends at
    23:59:59 (its raw-timestamp cut then keeps whole days) agrees for every customer."""
    rng = np.random.default_rng(16)
    start = epoch("1997-01-01")
    rows = []
    for customer in range(300):
        for _ in range(int(rng.integers(1, 12))):
            ts = start + int(rng.integers(0, 500 * DAY))
            kind = "visit" if rng.random() < 0.15 else "purchase"
            amount = f"{rng.integers(1, 20_000) / 100:.2f}" if kind == "purchase" else ""
            iso = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            rows.append((kind, f"c{customer}", iso, amount))
            if rng.random() < 0.2:  # a second line later the same day
                later = min(day_end(ts), ts + int(rng.integers(0, 6 * 3600)))
                iso = datetime.fromtimestamp(later, UTC).strftime("%Y-%m-%dT%H:%M:%S")
                rows.append(("purchase", f"c{customer}", iso, "7.50"))
    events = write_events(tmp_path / "random.csv", rows)
    log = read_event_csv(events)
    assert not log.bad_rows
    cal_end, hold_end = "1997-08-14", "1998-01-31"
    split = split_calibration_holdout(log, epoch(cal_end) + 3_600, epoch(hold_end) + 60)
    tx = pd.read_csv(events, dtype={"customer_id": str})
    tx = tx[tx["type"] == "purchase"]
    tx["date"] = pd.to_datetime(tx["ts"]).dt.tz_localize(None)
    theirs = lifetimes_split(tx, f"{cal_end} 23:59:59", f"{hold_end} 23:59:59", per_day=True)
    assert len(split) > 200
    assert_equal_to_lifetimes(as_frame(split), theirs)


# --- hand-made edge cases -----------------------------------------------------------------------


@pytest.fixture
def edge_log(tmp_path: Path) -> EventLog:
    rows = [
        # a: one line exactly at the calibration end second, one later that day: one day
        ("purchase", "a", "1997-03-01T10:00:00", "10.00"),
        ("purchase", "a", "1997-09-30T00:00:00", "20.00"),
        ("purchase", "a", "1997-09-30T23:59:59", "5.00"),
        # b: two days of two lines each; a visit and a complaint change nothing
        ("purchase", "b", "1997-03-01T08:00:00", "10.00"),
        ("purchase", "b", "1997-03-01T20:00:00", "5.00"),
        ("visit", "b", "1997-03-15T12:00:00", ""),
        ("purchase", "b", "1997-04-01T09:00:00", "20.00"),
        ("purchase", "b", "1997-04-01T09:30:00", "30.00"),
        ("complaint", "b", "1997-10-02T00:00:00", ""),
        # c: first purchase in the holdout: absent
        ("purchase", "c", "1997-10-01T00:00:00", "12.00"),
        # d: refunds in both periods, never purchase days; netted out of the spends
        ("purchase", "d", "1997-02-01T12:00:00", "40.00"),
        ("purchase", "d", "1997-03-01T12:00:00", "30.00"),
        ("purchase", "d", "1997-03-05T12:00:00", "-10.00"),
        ("purchase", "d", "1997-11-01T12:00:00", "25.00"),
        ("purchase", "d", "1997-12-01T12:00:00", "-5.00"),
        # e: a $0 line is not a purchase; holdout lines on its first and last second
        ("purchase", "e", "1997-01-05T00:00:00", "0.00"),
        ("purchase", "e", "1997-01-10T00:00:00", "8.00"),
        ("purchase", "e", "1997-10-01T00:00:00", "4.00"),
        ("purchase", "e", "1998-06-30T23:59:59", "6.00"),
        ("purchase", "e", "1998-07-01T00:00:00", "99.00"),
        # f: only a refund and a $0 line in calibration: not a buyer
        ("purchase", "f", "1997-02-01T00:00:00", "-3.00"),
        ("purchase", "f", "1997-02-02T00:00:00", "0"),
        ("purchase", "f", "1997-11-02T00:00:00", "3.00"),
        # g: a refund-only holdout: negative spend, no purchase day
        ("purchase", "g", "1997-05-01T00:00:00", "9.00"),
        ("purchase", "g", "1998-01-01T00:00:00", "-9.00"),
    ]
    return read_event_csv(write_events(tmp_path / "edge.csv", rows))


@pytest.fixture
def edge_split(edge_log: EventLog) -> HoldoutSplit:
    return split_calibration_holdout(edge_log, epoch("1997-09-30"), epoch("1998-06-30T12:00:00"))


def test_edge_cases_by_hand(edge_split: HoldoutSplit) -> None:
    s = edge_split
    assert s.customer_ids == ["a", "b", "d", "e", "g"]
    at = {c: i for i, c in enumerate(s.customer_ids)}
    cal_day = epoch("1997-09-30") // DAY

    def days(date: str) -> int:
        return epoch(date) // DAY

    expect = {  # x, t_x, T, m_cal, x_hold, m_hold, spend_hold
        "a": (
            1,
            days("1997-09-30") - days("1997-03-01"),
            cal_day - days("1997-03-01"),
            25.0,
            0,
            0.0,
            0.0,
        ),
        "b": (1, 31, cal_day - days("1997-03-01"), 50.0, 0, 0.0, 0.0),
        "d": (1, 28, cal_day - days("1997-02-01"), 20.0, 1, 20.0, 20.0),
        "e": (0, 0, cal_day - days("1997-01-10"), 0.0, 2, 5.0, 10.0),
        "g": (0, 0, cal_day - days("1997-05-01"), 0.0, 0, 0.0, -9.0),
    }
    for customer, (x, t_x, big_t, m, x_h, m_h, spend) in expect.items():
        i = at[customer]
        got = (
            s.frequency_cal[i],
            s.recency_cal[i],
            s.T_cal[i],
            s.monetary_value_cal[i],
            s.frequency_holdout[i],
            s.monetary_value_holdout[i],
            s.spend_holdout[i],
        )
        assert got == pytest.approx((x, t_x, big_t, m, x_h, m_h, spend), abs=1e-12), customer
    assert s.bought_holdout.tolist() == [False, False, True, True, False]
    assert s.duration_holdout == 273.0
    assert (s.calibration_end, s.holdout_end) == (epoch("1997-09-30"), epoch("1998-06-30T12:00:00"))


def test_edge_cases_without_refunds_equal_lifetimes(tmp_path: Path, edge_split) -> None:
    """Customers a, b, e (no refunds) as lifetimes sees their positive lines, ends at 23:59:59."""
    ours = as_frame(edge_split).loc[["a", "b", "e"]]
    tx = pd.DataFrame(
        [
            ("a", "1997-03-01 10:00:00", 10.0),
            ("a", "1997-09-30 00:00:00", 20.0),
            ("a", "1997-09-30 23:59:59", 5.0),
            ("b", "1997-03-01 08:00:00", 10.0),
            ("b", "1997-03-01 20:00:00", 5.0),
            ("b", "1997-04-01 09:00:00", 20.0),
            ("b", "1997-04-01 09:30:00", 30.0),
            ("e", "1997-01-05 00:00:00", 0.0),
            ("e", "1997-01-10 00:00:00", 8.0),
            ("e", "1997-10-01 00:00:00", 4.0),
            ("e", "1998-06-30 23:59:59", 6.0),
            ("e", "1998-07-01 00:00:00", 99.0),
        ],
        columns=["customer_id", "date", "amount"],
    )
    tx["date"] = pd.to_datetime(tx["date"])
    theirs = lifetimes_split(tx, "1997-09-30 23:59:59", "1998-06-30 23:59:59", per_day=True)
    assert_equal_to_lifetimes(ours, theirs)


@pytest.mark.parametrize("unit", [DAY, 7 * DAY])
def test_split_is_what_the_engine_scores_at_the_calibration_day_end(
    edge_log: EventLog, unit: int
) -> None:
    """Not an oracle, the contract the backtest relies on: folding the calibration events
    (calibration_mask) and scoring at day_end(calibration_end) gives every split customer the
    split's x, t_x, T and m (refunds, intra-day lines, $0 lines included), and a P(alive)."""
    from engine.batch_scoring import fold_events, score_states
    from engine.segments import DEFAULT_RFM_MAP
    from models.params_file import default_params

    params = default_params().scoring._replace(unit_seconds=float(unit))
    cal_end = epoch("1997-09-30T08:00:00")
    split = split_calibration_holdout(edge_log, cal_end, epoch("1998-06-30"), unit_seconds=unit)
    calibration = edge_log.events[calibration_mask(edge_log, cal_end)]
    states = fold_events(len(edge_log.customer_ids), calibration, params)
    scores, _ = score_states(states, day_end(cal_end), params, DEFAULT_RFM_MAP)
    scores = scores[split.rows]
    for engine_name, ours in (
        ("frequency", split.frequency_cal),
        ("recency", split.recency_cal),
        ("T", split.T_cal),
        ("monetary_value", split.monetary_value_cal),
    ):
        np.testing.assert_allclose(scores[engine_name], ours, rtol=1e-12, err_msg=engine_name)
    assert np.isfinite(scores["p_alive"]).all()


def test_calibration_mask_and_day_end(tmp_path: Path) -> None:
    rows = [
        ("visit", "a", "1997-09-30T23:59:59", ""),
        ("visit", "a", "1997-10-01T00:00:00", ""),
        ("purchase", "a", "1997-09-29T00:00:00", "1.00"),
    ]
    log = read_event_csv(write_events(tmp_path / "m.csv", rows))
    mask = calibration_mask(log, epoch("1997-09-30T06:00:00"))
    assert mask.tolist() == [True, True, False]  # the log is in time order
    assert day_end(epoch("1997-09-30T06:00:00")) == epoch("1997-09-30T23:59:59")
    assert day_end(epoch("1997-09-30")) == epoch("1997-09-30T23:59:59")


def test_empty_holdout_and_no_buyers(tmp_path: Path) -> None:
    log = read_event_csv(
        write_events(tmp_path / "v.csv", [("visit", "a", "1997-01-01T00:00:00", "")])
    )
    split = split_calibration_holdout(log, epoch("1997-09-30"), epoch("1998-06-30"))
    assert len(split) == 0 and split.rows.shape == split.T_cal.shape == (0,)
    log = read_event_csv(
        write_events(tmp_path / "p.csv", [("purchase", "a", "1997-01-01T00:00:00", "1")])
    )
    split = split_calibration_holdout(log, epoch("1997-09-30"), epoch("1998-06-30"))
    assert split.customer_ids == ["a"] and not split.bought_holdout.any()


@pytest.mark.parametrize(
    ("cal_end", "hold_end", "unit"),
    [
        ("1997-09-30", "1997-09-30T23:59:59", DAY),
        ("1997-09-30", "1997-09-01", DAY),
        ("1997-09-30", "1998-06-30", 0),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, cal_end: str, hold_end: str, unit: int) -> None:
    log = read_event_csv(
        write_events(tmp_path / "p.csv", [("purchase", "a", "1997-01-01T00:00:00", "1")])
    )
    with pytest.raises(ValueError):
        split_calibration_holdout(log, epoch(cal_end), epoch(hold_end), unit_seconds=unit)
