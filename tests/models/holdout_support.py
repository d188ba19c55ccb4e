"""Shared by the holdout and evaluation-metric tests: UTC epoch helper, lifetimes' split as the
oracle, and the CDNOW logs as custscore reads them and as pandas reads them."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from custscore.commands.datasets import find_cdnow, write_cdnow_events
from models.events import read_event_csv

CAL_END, HOLD_END = "1997-09-30", "1998-06-30"  # Fader, Hardie & Lee (2005)


def epoch(text: str) -> int:
    """Epoch seconds of an ISO time without offset, read as UTC."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def lifetimes_split(
    tx: pd.DataFrame, cal_end: str, obs_end: str, *, per_day: bool, unit_days: int = 1
) -> pd.DataFrame:
    """lifetimes' calibration_and_holdout_data (freq "D") on the positive lines of ``tx``
    (columns customer_id, date, amount); ``per_day`` first sums each customer's lines per day."""
    from lifetimes.utils import calibration_and_holdout_data

    positive = tx[tx["amount"] > 0]
    if per_day:
        positive = (
            positive.assign(date=positive["date"].dt.floor("D"))
            .groupby(["customer_id", "date"], as_index=False)["amount"]
            .sum()
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifetimes' own SettingWithCopyWarning
        return calibration_and_holdout_data(
            positive,
            "customer_id",
            "date",
            calibration_period_end=cal_end,
            observation_period_end=obs_end,
            freq="D",
            freq_multiplier=unit_days,
            monetary_value_col="amount",
        )


def cdnow_frames(sample: bool, directory: Path) -> dict[str, Any]:
    """``log`` (EventLog) and ``tx`` (the same CSV as a frame, naive UTC ``date``) of CDNOW."""
    events = directory / "events.csv"
    write_cdnow_events(find_cdnow(sample=sample), events)
    tx = pd.read_csv(events, dtype={"customer_id": str})
    tx["date"] = pd.to_datetime(tx["ts"]).dt.tz_localize(None)
    return {"log": read_event_csv(events), "tx": tx}
