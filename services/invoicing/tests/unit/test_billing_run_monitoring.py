"""The billing run's deadline gauge: 09:00 Helsinki of the latest run day (B-03), kept until the next one."""

from __future__ import annotations

import datetime as dt

from invoicing.billing.monitoring import due_timestamp
from invoicing.calendar import HELSINKI


def nine_in_helsinki(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(9), tzinfo=HELSINKI).timestamp()


def test_on_a_run_day_the_deadline_is_nine_that_morning_in_helsinki() -> None:
    # 1 November 2026 is a Sunday: Monday the 2nd is the first business day (B-03).
    assert due_timestamp(dt.date(2026, 11, 2)) == nine_in_helsinki(dt.date(2026, 11, 2))


def test_after_the_run_day_the_deadline_stays_so_an_unfinished_run_keeps_alerting() -> None:
    assert due_timestamp(dt.date(2026, 11, 20)) == nine_in_helsinki(dt.date(2026, 11, 2))


def test_before_the_months_run_day_the_previous_months_deadline_holds() -> None:
    # 1 January 2027 is a holiday (New Year's Day): the run day is Monday 4 January.
    assert due_timestamp(dt.date(2027, 1, 1)) == nine_in_helsinki(dt.date(2026, 12, 1))
    assert due_timestamp(dt.date(2027, 1, 4)) == nine_in_helsinki(dt.date(2027, 1, 4))


def test_the_deadline_follows_helsinki_summer_time() -> None:
    # 1 June 2026 (a Monday) 09:00 EEST is 06:00 UTC.
    assert due_timestamp(dt.date(2026, 6, 1)) == dt.datetime(2026, 6, 1, 6, tzinfo=dt.UTC).timestamp()
