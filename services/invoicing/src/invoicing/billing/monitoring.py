"""The billing run's gauges, computed from the database and the clock so that every replica reports the same."""

from __future__ import annotations

import datetime as dt

from invoicing.billing.views import last_run_finished_at, latest_run_progress
from invoicing.calendar import HELSINKI, YearMonth, run_day
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.database import Sessions
from service_runtime.metrics import BillingRunMetrics

#: By when a run day's billing run must have completed (docs/operations.md, BillingRunNotFinished).
DUE_AT = dt.time(9, 0)


def due_timestamp(today: dt.date) -> float:
    """09:00 Helsinki of the latest run day (B-03) on or before `today`, as Unix time.

    A run day's deadline stays the latest until the next month's run day, so that a run that
    never completed keeps its alert firing on the days after.
    """
    month = YearMonth.of(today)
    day = run_day(month)
    if day > today:
        day = run_day(month.prev())
    return dt.datetime.combine(day, DUE_AT, tzinfo=HELSINKI).timestamp()


async def measure_billing_run(sessions: Sessions, clock: Clock, metrics: BillingRunMetrics) -> None:
    """`billing_run_payers{state}`, `billing_run_due_timestamp_seconds`, `…_last_completed_timestamp_seconds`."""
    async with sessions() as session:
        progress = await latest_run_progress(session)
        finished = await last_run_finished_at(session)
    metrics.due.set(due_timestamp(today_in_helsinki(clock)))
    metrics.last_completed.set(0 if finished is None else finished.timestamp())
    for state, count in (progress or {}).items():
        metrics.payers.labels(state=state).set(count)
