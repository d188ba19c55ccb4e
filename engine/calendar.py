"""Calendar arithmetic on epoch seconds in numba: month indices and month starts (UTC).

Trailing windows are kept in calendar-month buckets; a month index counts months since
1970-01 (0 = January 1970). The day/civil conversions follow the proleptic Gregorian
calendar (H. Hinnant's days_from_civil algorithm, re-derived here).
"""

from __future__ import annotations

from numba import njit

__all__ = ["civil_from_days", "days_from_civil", "month_index", "month_start"]

DAY_SECONDS = 86_400


@njit(cache=True, nogil=True)
def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    y = year - 1 if month <= 2 else year
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = month + 9 if month <= 2 else month - 3
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True)
def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


@njit(cache=True, nogil=True)
def month_index(ts: int) -> int:
    """Calendar month (months since 1970-01) containing epoch second ``ts``."""
    year, month, _ = civil_from_days(ts // DAY_SECONDS)
    return (year - 1970) * 12 + (month - 1)


@njit(cache=True, nogil=True)
def month_start(index: int) -> int:
    """Epoch second at which calendar month ``index`` begins."""
    year = 1970 + index // 12
    month = index % 12 + 1
    return days_from_civil(year, month, 1) * DAY_SECONDS
