"""The injected clock: services never read the wall clock directly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

#: Every calendar rule (month of a voucher, run day, cut-offs, due dates) is read in this zone.
HELSINKI = ZoneInfo("Europe/Helsinki")


class Clock(Protocol):
    """Source of the current time, always time-zone aware."""

    def now(self) -> datetime: ...


def today_in_helsinki(clock: Clock) -> date:
    """The calendar day it is in Finland now: the one way every service turns the clock into a date."""
    return clock.now().astimezone(HELSINKI).date()


class SystemClock:
    """The real clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stays where it is set: for tests, rehearsals and operators running any date."""

    def __init__(self, at: datetime) -> None:
        self._at = _aware(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = _aware(at)

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the clock only holds time-zone aware datetimes")
    return at
