"""A billing run's period and tallies, pure (B-03, B-04): which month a run date bills and whether it
may run, the run record's id, and the counts of what it decided."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from invoicing.billing.domain import SettlementKind
from invoicing.calendar import YearMonth, billing_month_for_run, run_day


class NotABillingDayError(Exception):
    """B-03: a run bills the month before its date, and never before that month's first business day."""


class AdvanceBillingError(Exception):
    """B-04: a run date after today would bill a month that has not ended: nothing is billed in advance."""


@dataclass(frozen=True, slots=True)
class RunPeriod:
    """What a run on `run_date` bills: the month before (B-04), under one run record per period."""

    run_date: dt.date
    month: YearMonth

    @property
    def run_id(self) -> str:
        """One run record per billing period; every attempt (rerun, concurrent run) updates it."""
        return f"run-{self.month}"


def billing_period(run_date: dt.date) -> RunPeriod:
    """B-03: the month a run on `run_date` bills, refused before that month's first business day."""
    first = run_day(YearMonth.of(run_date))
    if run_date < first:
        raise NotABillingDayError(
            f"{run_date.isoformat()} is before {first.isoformat()}, the first Finnish business day of "
            "its month, when the billing of the month before may run (B-03)"
        )
    return RunPeriod(run_date, billing_month_for_run(run_date))


def run_period(run_date: dt.date, today: dt.date) -> RunPeriod:
    """B-03 and B-04: the period a run on `run_date` bills, given today's date in Helsinki."""
    period = billing_period(run_date)
    if run_date > today:
        raise AdvanceBillingError(
            f"run date {run_date.isoformat()} is after today ({today.isoformat()} in Helsinki): "
            "nothing is billed in advance (B-04)"
        )
    return period


@dataclass
class RunTally:
    """How many payers a run (a batch, an attempt, the whole period) decided, by outcome."""

    issued: int = 0
    held: int = 0
    zero: int = 0
    nothing: int = 0

    def add(self, kind: SettlementKind) -> None:
        if kind is SettlementKind.ISSUE:
            self.issued += 1
        elif kind is SettlementKind.HOLD:
            self.held += 1
        elif kind is SettlementKind.ZERO:
            self.zero += 1
        else:
            self.nothing += 1

    def __iadd__(self, other: RunTally) -> RunTally:
        self.issued += other.issued
        self.held += other.held
        self.zero += other.zero
        self.nothing += other.nothing
        return self

    @property
    def decided(self) -> int:
        return self.issued + self.held + self.zero + self.nothing
