"""Composition root of metering: settings, clock, host, consumers, scheduler, HTTP app."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from fastapi import FastAPI

from billing_contracts.registry import topic_for
from metering.api import build_router
from metering.consumers import USAGE_CONTRACTS, UsageEventIntake
from metering.domain import month_of, previous_month
from metering.policies import ROUTE_POLICIES
from metering.service import MonthNotOverError, close_month
from metering.settings import MeteringSettings
from metering.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost, create_service_app
from service_runtime.ratelimit import RateLimitedLog

log = structlog.get_logger(__name__)


def create_app(settings: MeteringSettings, clock: Clock) -> FastAPI:
    host = ServiceHost(name="metering", settings=settings, clock=clock, tables=runtime_tables)
    host.consume({topic_for(c): c for c in USAGE_CONTRACTS}, UsageEventIntake(clock))
    grace = timedelta(hours=settings.close_grace_hours)
    warnings = RateLimitedLog(log)

    async def close_due_months() -> None:
        while True:
            month = previous_month(month_of(clock.now()))
            try:
                result = await close_month(host.sessions, clock, month, grace=grace)
                if result.closed_now:
                    host.relay.wake()
                warnings.recovered("month_close_failed")
            except MonthNotOverError:
                warnings.recovered("month_close_failed")
            except Exception:
                # During a database outage: once when it starts, then once a minute.
                warnings.warning("month_close_failed", exc_info=True, month=month)
            await asyncio.sleep(settings.close_check_seconds)

    if settings.auto_close:
        host.run_in_background(close_due_months)
    return create_service_app(
        host,
        title="Metering",
        description="Usage events from customer environments become exact, deduplicated monthly usage.",
        policies=ROUTE_POLICIES,
        routers=[build_router(host, grace=grace)],
    )
