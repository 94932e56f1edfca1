"""Billing calendar: business days, run days and Helsinki months (B-03, B-04, B-09)."""

from __future__ import annotations

import datetime as dt

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.calendar import (
    HELSINKI,
    YearMonth,
    billing_month_for_run,
    first_business_day,
    helsinki_month_of,
    is_business_day,
    month_bounds_utc,
    run_day,
)

# finnish-invoicing.md §6: first business day of each month, computed independently.
FIRST_BUSINESS_DAYS = {
    2025: [2, 3, 3, 1, 2, 2, 1, 1, 1, 1, 3, 1],
    2026: [2, 2, 2, 1, 4, 1, 1, 3, 1, 1, 2, 1],
    2027: [4, 1, 1, 1, 3, 1, 1, 2, 1, 1, 1, 1],
}


@pytest.mark.parametrize(
    ("year", "month", "day"),
    [(y, m + 1, d) for y, days in FIRST_BUSINESS_DAYS.items() for m, d in enumerate(days)],
)
def test_b03_run_day_is_the_first_business_day_of_the_month(year: int, month: int, day: int) -> None:
    assert first_business_day(year, month) == dt.date(year, month, day)
    assert run_day(YearMonth(year, month)) == dt.date(year, month, day)


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (dt.date(2026, 1, 1), "New Year's Day"),
        (dt.date(2026, 1, 6), "Epiphany"),
        (dt.date(2026, 4, 3), "Good Friday"),
        (dt.date(2026, 4, 6), "Easter Monday"),
        (dt.date(2026, 5, 1), "May Day"),
        (dt.date(2026, 5, 14), "Ascension Day"),
        (dt.date(2026, 6, 19), "Midsummer Eve"),
        (dt.date(2026, 12, 24), "Christmas Eve"),
        (dt.date(2026, 12, 25), "Christmas Day"),
        (dt.date(2025, 12, 26), "St Stephen's Day"),
        (dt.date(2024, 12, 6), "Independence Day"),
        (dt.date(2025, 6, 20), "Midsummer Eve 2025"),
        (dt.date(2025, 12, 24), "Christmas Eve 2025"),
    ],
)
def test_b03_weekday_holidays_and_both_eves_are_not_business_days(day: dt.date, name: str) -> None:
    assert day.weekday() < 5, f"{name} should fall on a weekday in this example"
    assert not is_business_day(day), name


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2026, 4, 2),  # Maundy Thursday
        dt.date(2026, 4, 7),  # Tuesday after Easter
        dt.date(2026, 12, 31),  # New Year's Eve is a business day
        dt.date(2026, 6, 18),  # Thursday before Midsummer Eve
        dt.date(2026, 12, 23),
    ],
)
def test_b03_ordinary_weekdays_next_to_holidays_are_business_days(day: dt.date) -> None:
    assert is_business_day(day)


def test_b03_weekends_are_never_business_days() -> None:
    assert not is_business_day(dt.date(2026, 10, 3))  # Saturday
    assert not is_business_day(dt.date(2026, 10, 4))  # Sunday


def test_b04_a_run_bills_the_month_before() -> None:
    assert billing_month_for_run(dt.date(2026, 5, 4)) == YearMonth(2026, 4)
    assert billing_month_for_run(dt.date(2027, 1, 4)) == YearMonth(2026, 12)


def test_year_month_parses_prints_and_steps_across_years() -> None:
    month = YearMonth.parse("2026-10")
    assert month == YearMonth(2026, 10)
    assert str(month) == "2026-10"
    assert str(YearMonth(987, 3)) == "0987-03"
    assert YearMonth(2026, 12).next() == YearMonth(2027, 1)
    assert YearMonth(2027, 1).prev() == YearMonth(2026, 12)
    assert YearMonth(2024, 2).last_day == dt.date(2024, 2, 29)
    assert YearMonth(2026, 12).last_day == dt.date(2026, 12, 31)
    assert YearMonth(2026, 12).first_day == dt.date(2026, 12, 1)
    assert YearMonth(2026, 12) < YearMonth(2027, 1) < YearMonth(2027, 2)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-01", "2026-01-01", " 2026-01"])
def test_year_month_refuses_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        YearMonth.parse(text)


def test_year_month_refuses_an_impossible_month() -> None:
    with pytest.raises(ValueError, match="month"):
        YearMonth(2026, 13)


@given(st.dates(min_value=dt.date(1900, 2, 1), max_value=dt.date(2200, 11, 30)))
def test_year_month_next_and_prev_are_inverse_and_contiguous(day: dt.date) -> None:
    month = YearMonth.of(day)
    assert month.next().prev() == month
    assert month.prev().next() == month
    assert month.next().first_day == month.last_day + dt.timedelta(days=1)
    assert month.contains(day)
    assert YearMonth.parse(str(month)) == month


@given(st.integers(min_value=2000, max_value=2100), st.integers(min_value=1, max_value=12))
def test_b03_first_business_day_is_a_business_day_with_none_before_it(year: int, month: int) -> None:
    day = first_business_day(year, month)
    assert is_business_day(day)
    assert day.month == month
    first = dt.date(year, month, 1)
    assert all(not is_business_day(first + dt.timedelta(days=i)) for i in range((day - first).days))


def _helsinki(year: int, month: int, day: int, hour: int, minute: int, second: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=HELSINKI)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        # Ordinary month end, winter time (UTC+2).
        (_helsinki(2026, 1, 31, 23, 59, 59), YearMonth(2026, 1)),
        (_helsinki(2026, 2, 1, 0, 0, 0), YearMonth(2026, 2)),
        # March month end after the switch to summer time on the last Sunday (29 March 2026).
        (_helsinki(2026, 3, 31, 23, 59, 59), YearMonth(2026, 3)),
        (_helsinki(2026, 4, 1, 0, 0, 0), YearMonth(2026, 4)),
        # October month end after the switch back on the last Sunday (25 October 2026).
        (_helsinki(2026, 10, 31, 23, 59, 59), YearMonth(2026, 10)),
        (_helsinki(2026, 11, 1, 0, 0, 0), YearMonth(2026, 11)),
        # Same instants given in UTC: 21:59:59Z / 22:00:00Z in winter, 20:59:59Z / 21:00Z in summer.
        (dt.datetime(2026, 1, 31, 21, 59, 59, tzinfo=dt.UTC), YearMonth(2026, 1)),
        (dt.datetime(2026, 1, 31, 22, 0, 0, tzinfo=dt.UTC), YearMonth(2026, 2)),
        (dt.datetime(2026, 3, 31, 20, 59, 59, tzinfo=dt.UTC), YearMonth(2026, 3)),
        (dt.datetime(2026, 3, 31, 21, 0, 0, tzinfo=dt.UTC), YearMonth(2026, 4)),
        (dt.datetime(2026, 10, 31, 21, 59, 59, tzinfo=dt.UTC), YearMonth(2026, 10)),
        (dt.datetime(2026, 10, 31, 22, 0, 0, tzinfo=dt.UTC), YearMonth(2026, 11)),
        # The DST switch nights themselves stay inside their month.
        (dt.datetime(2026, 3, 29, 1, 0, 0, tzinfo=dt.UTC), YearMonth(2026, 3)),
        (dt.datetime(2026, 10, 25, 0, 30, 0, tzinfo=dt.UTC), YearMonth(2026, 10)),
        # A September month end in summer time: 20:59:59Z is 23:59:59 local.
        (dt.datetime(2026, 9, 30, 20, 59, 59, tzinfo=dt.UTC), YearMonth(2026, 9)),
        (dt.datetime(2026, 9, 30, 21, 0, 0, tzinfo=dt.UTC), YearMonth(2026, 10)),
    ],
)
def test_b09_helsinki_month_of_follows_local_time_at_month_ends(ts: dt.datetime, expected: YearMonth) -> None:
    assert helsinki_month_of(ts) == expected


def test_b09_helsinki_month_of_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        helsinki_month_of(dt.datetime(2026, 1, 31, 23, 59, 59))  # noqa: DTZ001


def test_b09_month_bounds_use_the_offset_in_force_at_each_end() -> None:
    # March 2026 starts in winter time (UTC+2) and ends in summer time (UTC+3).
    start, end = month_bounds_utc(YearMonth(2026, 3))
    assert start == dt.datetime(2026, 2, 28, 22, 0, tzinfo=dt.UTC)
    assert end == dt.datetime(2026, 3, 31, 21, 0, tzinfo=dt.UTC)
    assert start.utcoffset() == dt.timedelta(0)
    # October 2026 goes the other way.
    start, end = month_bounds_utc(YearMonth(2026, 10))
    assert start == dt.datetime(2026, 9, 30, 21, 0, tzinfo=dt.UTC)
    assert end == dt.datetime(2026, 10, 31, 22, 0, tzinfo=dt.UTC)


@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),  # noqa: DTZ001
        max_value=dt.datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(dt.UTC),
    )
)
def test_b09_every_instant_falls_in_the_bounds_of_its_helsinki_month(ts: dt.datetime) -> None:
    month = helsinki_month_of(ts)
    start, end = month_bounds_utc(month)
    assert start <= ts < end
    assert month_bounds_utc(month.next())[0] == end


def test_b03_the_holiday_calendar_public_category_includes_both_eves() -> None:
    # B-03 relies on this: if a holidays release moved the Eves out of PUBLIC,
    # Midsummer Eve and Christmas Eve would silently become run days.
    public = holidays.country_holidays("FI", categories=(holidays.PUBLIC,), years=range(2024, 2031))
    for year in range(2024, 2031):
        assert any(d.month == 6 and public[d] == "Midsummer Eve" for d in public if d.year == year)
        assert dt.date(year, 12, 24) in public
