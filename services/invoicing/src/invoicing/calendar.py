"""Billing calendar in Europe/Helsinki: months, business days and the run day (B-03, B-04, B-09)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

HELSINKI = ZoneInfo("Europe/Helsinki")

_YEAR_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, order=True, slots=True)
class YearMonth:
    """A calendar month; ordering is chronological because fields compare year first."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"month must be 1..12, got {self.month}")
        if not dt.MINYEAR <= self.year <= dt.MAXYEAR:
            raise ValueError(f"year out of range: {self.year}")

    @classmethod
    def parse(cls, text: str) -> YearMonth:
        """Parse the wire form `YYYY-MM` (the contracts' `YearMonth`)."""
        match = _YEAR_MONTH.fullmatch(text)
        if match is None:
            raise ValueError(f"not a YYYY-MM month: {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, day: dt.date) -> YearMonth:
        """The month containing a calendar date."""
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> YearMonth:
        if self.month == 12:
            return YearMonth(self.year + 1, 1)
        return YearMonth(self.year, self.month + 1)

    def prev(self) -> YearMonth:
        if self.month == 1:
            return YearMonth(self.year - 1, 12)
        return YearMonth(self.year, self.month - 1)

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def last_day(self) -> dt.date:
        if self.month == 12:
            return dt.date(self.year, 12, 31)
        return dt.date(self.year, self.month + 1, 1) - dt.timedelta(days=1)

    def contains(self, day: dt.date) -> bool:
        return self.first_day <= day <= self.last_day


@lru_cache(maxsize=64)
def _finnish_public_holidays(year: int) -> frozenset[dt.date]:
    # B-03: a maintained calendar, not a hand-written list. Its PUBLIC category
    # includes Midsummer Eve and Christmas Eve, which is exactly the B-03 decision.
    calendar = holidays.country_holidays("FI", categories=(holidays.PUBLIC,), years=year)
    return frozenset(calendar.keys())


def is_business_day(day: dt.date) -> bool:
    """Mon–Fri and not a Finnish public holiday, Midsummer Eve or Christmas Eve (B-03)."""
    return day.weekday() < 5 and day not in _finnish_public_holidays(day.year)


def first_business_day(year: int, month: int) -> dt.date:
    """The billing run day of a month: its first business day (B-03)."""
    day = YearMonth(year, month).first_day
    while not is_business_day(day):
        day += dt.timedelta(days=1)
    return day


def run_day(month: YearMonth) -> dt.date:
    """The run day of `month` (B-03); it bills the month before (B-04)."""
    return first_business_day(month.year, month.month)


def billing_month_for_run(run_date: dt.date) -> YearMonth:
    """The month a run on `run_date` bills: the month before, in arrears (B-04)."""
    return YearMonth.of(run_date).prev()


def month_bounds_utc(month: YearMonth) -> tuple[dt.datetime, dt.datetime]:
    """The Helsinki month as a half-open UTC interval `[start, end)` (B-09).

    Half-open so that consecutive months tile without gaps or overlaps; the
    offsets differ at the ends of months that cross a DST change.
    """
    start = dt.datetime.combine(month.first_day, dt.time(), tzinfo=HELSINKI)
    end = dt.datetime.combine(month.next().first_day, dt.time(), tzinfo=HELSINKI)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def helsinki_month_of(ts: dt.datetime) -> YearMonth:
    """The Helsinki calendar month of an instant, e.g. a voucher's creation time (B-09).

    Naive datetimes are refused: guessing their zone would move events across
    month ends.
    """
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("naive datetime: an aware timestamp is required (B-09)")
    local = ts.astimezone(HELSINKI)
    return YearMonth(local.year, local.month)
