"""Read an RFM summary CSV (``customer_id,frequency,recency,T[,monetary_value]``) into arrays.

``frequency`` is the number of repeat purchases, ``recency`` the time of the last purchase and
``T`` the age, both measured from the first purchase in one time unit; ``monetary_value`` the
average spend of the repeat purchases. lifetimes' column names are accepted too (``ID``;
``x, t_x, T, zbar`` in its CDNOW file). Every problem is reported as one line naming the file
and, where it applies, the line.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["SUMMARY_COLUMNS", "RFMSummary", "SummaryError", "read_summary", "summary_header"]

SUMMARY_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")

# accepted header spelling (lower-cased) -> canonical column
_ALIASES = {
    "customer_id": "customer_id",
    "id": "customer_id",
    "frequency": "frequency",
    "x": "frequency",
    "recency": "recency",
    "t_x": "recency",
    "t": "T",
    "monetary_value": "monetary_value",
    "zbar": "monetary_value",
}


class SummaryError(ValueError):
    """An RFM summary file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class RFMSummary:
    """Columns of an RFM summary, one entry per customer, in file order."""

    customer_id: NDArray[np.str_]
    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    T: NDArray[np.float64]
    monetary_value: NDArray[np.float64] | None  # None when the file has no such column

    def __len__(self) -> int:
        return int(self.frequency.shape[0])


def summary_header(header: list[str]) -> dict[str, int] | None:
    """Column positions by canonical name if ``header`` is an RFM summary header, else None."""
    found: dict[str, int] = {}
    for pos, name in enumerate(header):
        canon = _ALIASES.get(name.strip().lower())
        if canon is not None and canon not in found:
            found[canon] = pos
    if {"frequency", "recency", "T"} <= found.keys():
        return found
    return None


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SummaryError(f"{where}: bad number in column {column}: {text.strip()!r}") from None
    if not math.isfinite(value):
        raise SummaryError(f"{where}: column {column} is not a finite number: {text.strip()!r}")
    return value


def read_summary(path: str | Path) -> RFMSummary:
    """Read and validate an RFM summary CSV; raises :class:`SummaryError` with one line."""
    name = str(path)
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise SummaryError(f"cannot read {name}: {exc.strerror or exc}") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise SummaryError(f"{name}: empty file (a header line is required)") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SummaryError(f"{name} line 1: not a CSV header: {exc}") from None
        cols = summary_header(header)
        if cols is None:
            have = {_ALIASES.get(h.strip().lower()) for h in header}
            missing = [c for c in ("frequency", "recency", "T") if c not in have]
            raise SummaryError(
                f"{name}: missing column {missing[0]!r} (header: {','.join(header)}; "
                f"expected customer_id,frequency,recency,T[,monetary_value])"
            )
        has_id = "customer_id" in cols
        has_m = "monetary_value" in cols
        width = len(header)
        ids: list[str] = []
        freq: list[float] = []
        rec: list[float] = []
        age: list[float] = []
        money: list[float] = []
        try:
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                where = f"{name} line {line}"
                if len(row) != width:
                    raise SummaryError(f"{where}: {len(row)} fields, header has {width}")
                x = _number(row[cols["frequency"]], "frequency", where)
                tx = _number(row[cols["recency"]], "recency", where)
                t = _number(row[cols["T"]], "T", where)
                if x < 0 or x != math.floor(x):
                    raise SummaryError(f"{where}: frequency must be a whole number >= 0, got {x:g}")
                if tx < 0 or t < 0:
                    raise SummaryError(f"{where}: recency and T must be >= 0")
                if tx > t:
                    raise SummaryError(f"{where}: recency {tx:g} > T {t:g}")
                if x == 0 and tx != 0:
                    raise SummaryError(f"{where}: recency must be 0 when frequency is 0")
                if has_m:
                    mv = _number(row[cols["monetary_value"]], "monetary_value", where)
                    if mv < 0:
                        raise SummaryError(f"{where}: monetary_value must be >= 0, got {mv:g}")
                    money.append(mv)
                ids.append(row[cols["customer_id"]].strip() if has_id else str(len(ids) + 1))
                freq.append(x)
                rec.append(tx)
                age.append(t)
        except csv.Error as exc:
            raise SummaryError(f"{name} line {reader.line_num}: {exc}") from None
        except UnicodeDecodeError:
            raise SummaryError(f"{name}: not UTF-8 text") from None
    if not freq:
        raise SummaryError(f"{name}: no customer rows after the header")
    return RFMSummary(
        customer_id=np.asarray(ids, dtype=np.str_),
        frequency=np.asarray(freq, dtype=np.float64),
        recency=np.asarray(rec, dtype=np.float64),
        T=np.asarray(age, dtype=np.float64),
        monetary_value=np.asarray(money, dtype=np.float64) if has_m else None,
    )
