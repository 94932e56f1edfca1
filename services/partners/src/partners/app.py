"""Composition root of partners."""

from __future__ import annotations

from fastapi import FastAPI

from partners.api import build_router
from partners.benefits import load_benefit_book
from partners.consumers import subscribe_consumers
from partners.policies import ROUTE_POLICIES
from partners.service import keep_standings_current
from partners.settings import PartnersSettings
from partners.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost, create_service_app


def create_app(settings: PartnersSettings, clock: Clock) -> FastAPI:
    host = ServiceHost(name="partners", settings=settings, clock=clock, tables=runtime_tables)
    benefits = load_benefit_book(settings.benefits_file)
    subscribe_consumers(host, clock, benefits)
    host.run_in_background(
        lambda: keep_standings_current(host.sessions, clock, every_seconds=settings.refresh_every_seconds)
    )
    return create_service_app(
        host,
        title="Partners",
        description=(
            "The accounting-firm partner program (P-01…P-09): tiers computed from contract state, "
            "agreements and exam results; benefits; commission statements; the public directory."
        ),
        routers=[build_router(host, benefits)],
        policies=ROUTE_POLICIES,
    )
