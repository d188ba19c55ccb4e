"""Scores as the outside world sees them: named columns, one row per customer.

Shared by ``custscore score`` and ``custscore export`` (the scores CSV), the
``customer.scores`` topic and the worker's customer lookup, so every surface uses the same
names and formats. Floats are written with ``repr`` (round-trip exact); missing values
(BTYD scores of prospects) are empty cells / JSON null; times are RFC 3339 UTC.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from engine.segments import (
    ABCD_NAMES,
    LIFECYCLE_NAMES,
    QUADRANT_NAMES,
    RFM_SEGMENT_NAMES,
    TIER_NAMES,
)

__all__ = [
    "CLASS_NAMES",
    "SCORE_COLUMNS",
    "SUMMARY_COLUMNS",
    "format_time",
    "format_times",
    "read_scores_csv",
    "score_column",
    "score_record",
    "score_records",
    "score_structs",
    "write_scores_csv",
]

# score columns that hold a class code, and the name of each code (the CSV/JSON value)
CLASS_NAMES: Final = {
    "rfm_segment": RFM_SEGMENT_NAMES,
    "value_tier": TIER_NAMES,
    "abcd_class": ABCD_NAMES,
    "quadrant": QUADRANT_NAMES,
    "lifecycle": LIFECYCLE_NAMES,
}
_TIMES: Final = ("next_purchase_eta", "due", "nudge_at")
_BOOLS: Final = ("effective", "overdue", "spend_drop")

# Contract columns first (docs/design.md, "Contracts"), then the extras that explain them.
SCORE_COLUMNS: Final = (
    "customer_id",
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
    "value_tier",
    "abcd_class",
    "quadrant",
    "lifecycle",
    "effective",
    "p_alive",
    "churn_risk",
    "expected_purchases_90d",
    "expected_avg_spend",
    "clv",
    "next_purchase_eta",
    "days_since_last_purchase",
    "window_frequency",
    "window_monetary",
    "window_avg_spend",
    "freq_per_year",
    "usual_gap_days",
    "overdue",
    "complaint_level",
    "risk_adjustment",
    "due",
    "net_spend",
    "spend_drop",
    "nudge_at",
)
# The scores a segment-change alert shows after and before its cause: a selection of
# SCORE_COLUMNS (the discrete segments and the numbers that explain them).
SUMMARY_COLUMNS: Final = (
    *SCORE_COLUMNS[SCORE_COLUMNS.index("r_score") : SCORE_COLUMNS.index("lifecycle") + 1],
    "p_alive",
    "churn_risk",
    "window_frequency",
    "window_monetary",
    "days_since_last_purchase",
    "expected_purchases_90d",
    "clv",
)
if not set(SUMMARY_COLUMNS) <= set(SCORE_COLUMNS):
    raise RuntimeError("SUMMARY_COLUMNS must be score columns")


@functools.lru_cache(maxsize=4096)  # a batch repeats its clock, watermark and wall second
def format_time(epoch_s: int) -> str | None:
    """RFC 3339 UTC of an epoch second; None for 0 (never)."""
    if epoch_s <= 0:
        return None
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# the time of day of an RFC 3339 text, by minute of the day and by second of the minute
_HOURS_MINUTES: Final = [f"T{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECONDS: Final = [f"{s:02d}Z" for s in range(60)]


@functools.lru_cache(maxsize=4096)
def _day_text(day: int) -> str:
    """The date (YYYY-MM-DD) of a day since the epoch."""
    return str(np.datetime64(day, "D"))


def format_times(epoch_s: npt.NDArray[Any]) -> list[str | None]:
    """:func:`format_time` of many epoch seconds at once (each day's date formatted once)."""
    flat = np.asarray(epoch_s).astype(np.int64).reshape(-1)
    minutes, second = np.divmod(flat, 60)
    day, minute = np.divmod(minutes, 1440)
    day_text, hours_minutes, seconds = _day_text, _HOURS_MINUTES, _SECONDS
    return [
        day_text(d) + hours_minutes[m] + seconds[s] if t > 0 else None
        for t, d, m, s in zip(
            flat.tolist(), day.tolist(), minute.tolist(), second.tolist(), strict=True
        )
    ]


def score_column(name: str, values: npt.NDArray[Any]) -> list[Any]:
    """One score column as JSON-ready values: names, RFC 3339 times, bools, numbers, None."""
    if name in CLASS_NAMES:
        names = np.asarray(CLASS_NAMES[name], dtype=object)
        return names[values.astype(np.intp)].tolist()  # type: ignore[no-any-return]
    if name in _TIMES:
        return format_times(values)
    if name in _BOOLS:
        return values.astype(bool).tolist()  # type: ignore[no-any-return]
    if values.dtype.kind == "f" and np.isnan(values).any():
        return [None if v != v else v for v in values.tolist()]  # v != v: NaN
    return values.tolist()  # type: ignore[no-any-return]


@functools.cache
def _record_type(names: tuple[str, ...]) -> type[msgspec.Struct]:
    """A struct of ``customer_id`` and ``names``: encodes like the dict of those keys."""
    return msgspec.defstruct("ScoreRecord", ("customer_id", *names))


def score_records(
    customer_ids: Sequence[str],
    scores: npt.NDArray[np.void],
    names: Sequence[str] = SCORE_COLUMNS[1:],
) -> list[dict[str, Any]]:
    """Every customer's scores (``names``, default every score column) as JSON-ready named
    values, built column by column."""
    keys = ("customer_id", *names)
    columns = [list(customer_ids)]
    columns += [score_column(name, scores[name]) for name in names]
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


def score_structs(
    customer_ids: Sequence[str],
    scores: npt.NDArray[np.void],
    names: Sequence[str] = SCORE_COLUMNS[1:],
) -> list[msgspec.Struct]:
    """:func:`score_records` as msgspec structs (fields ``customer_id`` and ``names``, in
    order): they encode to the same JSON and are much cheaper to build than dicts."""
    record = _record_type(tuple(names))
    columns = [score_column(name, scores[name]) for name in names]
    return [record(*row) for row in zip(customer_ids, *columns, strict=True)]


def score_record(customer_id: str, row: np.void) -> dict[str, Any]:
    """One customer's scores as JSON-ready named values (SCORES_DTYPE row in)."""
    return score_records([customer_id], np.asarray([row], dtype=row.dtype))[0]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_scores_csv(
    path: str | Path, customer_ids: Sequence[str], scores: npt.NDArray[np.void]
) -> int:
    """Write one row per customer, sorted by customer id; returns the row count."""
    order = np.array(sorted(range(len(customer_ids)), key=customer_ids.__getitem__), dtype=np.intp)
    ordered = scores[order]
    columns = [[customer_ids[i] for i in order.tolist()]]
    columns += [[_cell(v) for v in score_column(name, ordered[name])] for name in SCORE_COLUMNS[1:]]
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(SCORE_COLUMNS)
        writer.writerows(zip(*columns, strict=True))
    return len(order)


def read_scores_csv(path: str | Path) -> dict[str, dict[str, str]]:
    """customer_id -> raw cells of a scores CSV (for comparisons and tests)."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows: Iterable[dict[str, str]] = csv.DictReader(fh)
        return {row["customer_id"]: row for row in rows}
